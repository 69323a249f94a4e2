//! derive-schedule on a real stream: the shop's app writes carts and orders with business
//! attributes only, the records the DynamoDB API keeps for them (Streams API: DescribeStream,
//! GetShardIterator, GetRecords) are handed to the consumer as Lambda's DynamoDB event, and
//! the jobs then find the items through their indexes.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use backoffice::jobs::clean_expired_carts::dynamo::DynamoCarts;
use backoffice::jobs::clean_expired_carts::store::CartStore;
use backoffice::jobs::derive_schedule::dynamo::DynamoSchedule;
use backoffice::jobs::derive_schedule::{DeriveConfig, DeriveDeps, process};
use backoffice::jobs::request_reviews::dynamo::DynamoOrders;
use backoffice::jobs::request_reviews::store::ReviewRequestStore;
use backoffice::messages::kind::KindsConfig;
use backoffice::messages::outbox::{DynamoOutbox, OutboxTables};
use backoffice::messages::quiet::QuietHours;
use backoffice::runtime::clock::SystemClock;
use backoffice::store::shard::all_shards;
use devstack::stack::Stack;

use devstack::streams::stream_batch;

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn consumer(stack: &Stack) -> DeriveDeps<DynamoSchedule> {
    DeriveDeps {
        store: DynamoSchedule {
            carts: DynamoCarts::new(stack.client.clone(), stack.tables.carts.clone()),
            orders: DynamoOrders::new(stack.client.clone(), &stack.tables.orders, &stack.tables.reviews),
            outbox: DynamoOutbox::new(
                stack.client.clone(),
                OutboxTables {
                    messages: stack.tables.messages.clone(),
                    orders: stack.tables.orders.clone(),
                    carts: stack.tables.carts.clone(),
                    reviews: stack.tables.reviews.clone(),
                    consent: stack.tables.consent.clone(),
                },
                KindsConfig::all_disabled(),
                std::sync::Arc::new(SystemClock),
            ),
            tally: None,
        },
        config: DeriveConfig {
            carts_table: stack.tables.carts.clone(),
            orders_table: stack.tables.orders.clone(),
            messages_table: stack.tables.messages.clone(),
            kinds: KindsConfig::all_disabled(),
            quiet: QuietHours::never(jiff::tz::TimeZone::UTC),
        },
    }
}

#[tokio::test]
async fn items_written_with_business_attributes_only_reach_the_jobs_indexes() {
    let stack = Stack::from_env("streams").await.unwrap();
    let now = chrono::Utc::now();
    let created = (now - chrono::TimeDelta::hours(30)).to_rfc3339();
    // As the shop's storefront writes them: no shard, no expiry, no review status.
    stack
        .client
        .put_item()
        .table_name(&stack.tables.carts)
        .item("cartId", s("cart-app-1"))
        .item("customerPhone", s("+33612345678"))
        .item("createdAt", s(&created))
        .send()
        .await
        .unwrap();
    let completed = (now - chrono::TimeDelta::days(8)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for (order_id, status) in [("order-app-1", "ready_pickup"), ("order-app-2", "pending")] {
        stack
            .client
            .put_item()
            .table_name(&stack.tables.orders)
            .item("orderId", s(order_id))
            .item("customerPhone", s("+33612345679"))
            .item("customerName", s("Ana"))
            .item("status", s(status))
            .item("paymentStatus", s("paid"))
            .item("createdAt", s(&created))
            .send()
            .await
            .unwrap();
    }
    stack
        .client
        .update_item()
        .table_name(&stack.tables.orders)
        .key("orderId", s("order-app-1"))
        .update_expression("SET #status = :completed, completedAt = :completedAt")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":completed", s("completed"))
        .expression_attribute_values(":completedAt", s(&completed))
        .send()
        .await
        .unwrap();

    let deps = consumer(&stack);
    let carts = stream_batch(&stack, &stack.tables.carts).await.unwrap();
    let orders = stream_batch(&stack, &stack.tables.orders).await.unwrap();
    let (cart_report, cart_failures) = process(&deps, &carts).await;
    let (order_report, order_failures) = process(&deps, &orders).await;
    assert!(cart_failures.batch_item_failures.is_empty() && order_failures.batch_item_failures.is_empty());
    assert_eq!(cart_report.derived, 1);
    assert_eq!(order_report.derived, 1, "the completion; the two inserts need nothing");

    // The sweep finds the cart through expiry-index (24 h after creation, 30 h ago).
    let mut expired = 0;
    for shard in all_shards() {
        let page = deps
            .store
            .carts
            .expired_page(&shard, now.timestamp(), None, 100)
            .await
            .unwrap();
        expired += page.entries.iter().filter(|entry| entry.is_ok()).count();
    }
    assert_eq!(expired, 1);
    // request-reviews finds the order through review-pending-index.
    let mut pending = Vec::new();
    for shard in all_shards() {
        let page = deps
            .store
            .orders
            .pending_page(&shard, now.timestamp(), None, 100)
            .await
            .unwrap();
        pending.extend(page.entries.into_iter().map(|entry| match entry {
            Ok(due) => due.order_id,
            Err(skipped) => panic!("the derived order is read as due, not skipped: {skipped:?}"),
        }));
    }
    assert_eq!(pending, vec!["order-app-1".to_owned()]);

    // The consumer's own writes come back on the stream, and a replay of everything
    // (duplicates, old images included) writes nothing more.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (replayed_carts, _) = process(&deps, &stream_batch(&stack, &stack.tables.carts).await.unwrap()).await;
    let (replayed_orders, _) = process(&deps, &stream_batch(&stack, &stack.tables.orders).await.unwrap()).await;
    assert_eq!(
        (replayed_carts.derived, replayed_orders.derived),
        (0, 0),
        "{replayed_carts:?} {replayed_orders:?}"
    );
    assert!(replayed_orders.unusable.is_empty(), "{replayed_orders:?}");
    stack.cleanup().await;
}
