//! Demo and test data, written through the library's writer functions, plus the few
//! deliberately malformed items that only a test would write.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use backoffice::domain::phone::PhoneNumber;
use backoffice::jobs::clean_expired_carts::dynamo::DynamoCarts;
use backoffice::jobs::clean_expired_carts::store::{CART_LIFETIME, Cart, expiry_shard_for};
use backoffice::jobs::request_reviews::dynamo::{DynamoOrders, pending_attributes};
use backoffice::jobs::request_reviews::store::{Order, OrderStatus, PaymentStatus};
use backoffice::store::StoreError;
use chrono::{DateTime, TimeDelta, Utc};

/// What [`seed_carts`] wrote, by what the sweeper should do with it.
#[derive(Debug, Default, Clone)]
pub struct SeededCarts {
    pub expired: Vec<String>,
    pub live: Vec<String>,
    /// In the index but unusable: skipped and counted by the sweeper.
    pub malformed: Vec<String>,
}

fn demo_phone(i: usize) -> PhoneNumber {
    PhoneNumber::parse(&format!("+3361{:07}", i % 10_000_000)).expect("a valid demo number")
}

/// `expired` carts created 25 h to 3 days before `now`, `live` ones created within the
/// last 23 h, all through [`DynamoCarts::put`].
pub async fn seed_carts(
    carts: &DynamoCarts,
    now: DateTime<Utc>,
    expired: usize,
    live: usize,
) -> Result<SeededCarts, StoreError> {
    let mut seeded = SeededCarts::default();
    for i in 0..expired {
        let created = now - CART_LIFETIME - TimeDelta::minutes(60 + (i as i64 * 37) % 2880);
        let cart = Cart::new(format!("cart-expired-{i:05}"), demo_phone(i), created);
        carts.put(&cart).await?;
        seeded.expired.push(cart.cart_id);
    }
    for i in 0..live {
        let created = now - TimeDelta::minutes((i as i64 * 13) % (23 * 60));
        let cart = Cart::new(format!("cart-live-{i:05}"), demo_phone(expired + i), created);
        carts.put(&cart).await?;
        seeded.live.push(cart.cart_id);
    }
    Ok(seeded)
}

/// PutItem with no condition and no contract: what a buggy writer does.
async fn put_item_as_given(client: &Client, table: &str, item: HashMap<String, AttributeValue>) -> Result<(), String> {
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())
}

/// An item written exactly as given: what a person editing the table by hand, or a buggy
/// writer, leaves.
pub async fn put_item(client: &Client, table: &str, attributes: &[(&str, AttributeValue)]) -> Result<(), String> {
    let item = attributes
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect();
    put_item_as_given(client, table, item).await
}

/// Writes a cart item exactly as given (plus its key and, unless given, its shard).
pub async fn put_raw_cart(
    client: &Client,
    table: &str,
    cart_id: &str,
    attributes: &[(&str, AttributeValue)],
) -> Result<(), String> {
    let mut item: HashMap<String, AttributeValue> = attributes
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect();
    item.insert("cartId".into(), AttributeValue::S(cart_id.into()));
    item.entry("expiryShard".into())
        .or_insert_with(|| AttributeValue::S(expiry_shard_for(cart_id)));
    put_item_as_given(client, table, item).await
}

/// Two malformed carts that sit in the expiry index (a fractional and a pre-2001
/// `expiresAt`), as a buggy writer would leave them.
pub async fn seed_malformed_carts(client: &Client, table: &str) -> Result<Vec<String>, String> {
    let cases = [
        ("cart-malformed-fraction", AttributeValue::N("1700000000.5".into())),
        ("cart-malformed-days-not-seconds", AttributeValue::N("86400".into())),
    ];
    for (cart_id, expires_at) in &cases {
        put_raw_cart(client, table, cart_id, &[("expiresAt", expires_at.clone())]).await?;
    }
    Ok(cases.iter().map(|(id, _)| id.to_string()).collect())
}

/// Number of items in a table (a full scan: for tests and the demo only).
pub async fn count_items(client: &Client, table: &str) -> Result<u64, String> {
    let mut count = 0u64;
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .select(aws_sdk_dynamodb::types::Select::Count)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())?;
        count += u64::try_from(page.count).unwrap_or_default();
        start = page.last_evaluated_key.filter(|k| !k.is_empty());
        if start.is_none() {
            return Ok(count);
        }
    }
}

/// A completed order, written through [`DynamoOrders::put_new`] (in line for its review).
pub async fn put_completed_order(
    orders: &DynamoOrders,
    order_id: &str,
    phone: &str,
    name: Option<&str>,
    completed_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let order = Order {
        order_id: order_id.into(),
        customer_phone: PhoneNumber::parse(phone).map_err(|e| StoreError {
            operation: "PutItem",
            table: orders.orders_table().into(),
            message: e.to_string(),
            retryable: false,
        })?,
        customer_name: name.map(String::from),
        status: OrderStatus::Completed,
        payment_status: PaymentStatus::Paid,
        created_at: completed_at - TimeDelta::hours(2),
        completed_at: Some(completed_at),
    };
    orders.put_new(&order).await
}

/// An order item exactly as given plus the review-pending attributes for
/// `pending_since`: how a buggy writer would leave a completed order.
pub async fn put_raw_order(
    client: &Client,
    table: &str,
    order_id: &str,
    pending_since: DateTime<Utc>,
    attributes: &[(&str, &str)],
) -> Result<(), String> {
    let mut item: HashMap<String, AttributeValue> = attributes
        .iter()
        .map(|(name, value)| (name.to_string(), AttributeValue::S(value.to_string())))
        .collect();
    item.insert("orderId".into(), AttributeValue::S(order_id.into()));
    item.extend(pending_attributes(order_id, pending_since));
    put_item_as_given(client, table, item).await
}

/// A review, as the reply function (or a person) records it.
pub async fn put_review(client: &Client, table: &str, order_id: &str, rating: u8) -> Result<(), String> {
    client
        .put_item()
        .table_name(table)
        .item("orderId", AttributeValue::S(order_id.into()))
        .item("rating", AttributeValue::N(rating.to_string()))
        .item("comment", AttributeValue::S("Très bien".into()))
        .item("createdAt", AttributeValue::S(Utc::now().to_rfc3339()))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())
}

/// Demo orders: `due` completed 7 to 9 days ago, plus one not yet due, one too old,
/// one already reviewed and one with an unusable phone number.
pub async fn seed_demo_orders(
    client: &Client,
    orders: &DynamoOrders,
    reviews_table: &str,
    now: DateTime<Utc>,
    due: usize,
) -> Result<(), String> {
    let days = |d: i64| now - TimeDelta::days(d) - TimeDelta::hours(1);
    for i in 0..due {
        let id = format!("order-due-{i:04}");
        let phone = format!("+3362{:07}", i);
        put_completed_order(orders, &id, &phone, Some("Ana Lopez"), days(7 + (i as i64 % 3)))
            .await
            .map_err(|e| e.to_string())?;
    }
    put_completed_order(orders, "order-not-yet-due", "+33630000001", Some("Léa"), days(3))
        .await
        .map_err(|e| e.to_string())?;
    put_completed_order(orders, "order-too-old", "+33630000002", None, days(45))
        .await
        .map_err(|e| e.to_string())?;
    put_completed_order(orders, "order-reviewed", "+33630000003", Some("Omar"), days(8))
        .await
        .map_err(|e| e.to_string())?;
    put_review(client, reviews_table, "order-reviewed", 5).await?;
    put_raw_order(
        client,
        orders.orders_table(),
        "order-bad-phone",
        days(8),
        &[
            ("status", "completed"),
            ("customerPhone", "06 12 34 56 78"),
            ("completedAt", &days(8).to_rfc3339()),
        ],
    )
    .await
}

/// A completed order whose review request went out at `requested_at`, written the way
/// request-reviews does it (put in line, claimed, settled as sent), so it sits in
/// `review-reply-index` for the reply function.
pub async fn put_sent_review_request(
    orders: &DynamoOrders,
    order_id: &str,
    phone: &str,
    requested_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    use backoffice::jobs::request_reviews::store::{Claim, ReviewRequestStore, Settlement};

    put_completed_order(orders, order_id, phone, Some("Ana"), requested_at - TimeDelta::days(7)).await?;
    let claim = Claim {
        claim_id: format!("seed-{order_id}"),
        claimed_at: requested_at,
    };
    orders.claim(order_id, &claim).await?;
    orders
        .settle(
            order_id,
            &claim,
            &Settlement::Sent {
                message_sid: format!("SM-seed-{order_id}"),
                sent_at: requested_at,
            },
        )
        .await
}
