//! erase-customer on a real DynamoDB API: one customer's personal data leaves every table,
//! another customer's stays, a second run finds nothing, a malformed number is refused.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use backoffice::jobs::erase_customer::{self, DynamoErasure, EraseDeps, ErasureTables};
use backoffice::runtime::clock::FixedClock;
use devstack::stack::Stack;
use serde_json::json;

use crate::utc;

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

async fn put(stack: &Stack, table: &str, item: &[(&str, &str)]) {
    let item: Vec<(&str, AttributeValue)> = item.iter().map(|(name, value)| (*name, s(value))).collect();
    devstack::seed::put_item(&stack.client, table, &item).await.unwrap();
}

async fn get(stack: &Stack, table: &str, key: &str, value: &str) -> HashMap<String, AttributeValue> {
    stack
        .client
        .get_item()
        .table_name(table)
        .key(key, s(value))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_default()
}

#[tokio::test]
async fn a_customer_s_personal_data_leaves_every_table_and_a_second_run_finds_nothing() {
    let stack = Stack::from_env("erasure").await.unwrap();
    let t = &stack.tables;
    for (phone, suffix) in [("+33612345600", "gone"), ("+33612345601", "kept")] {
        put(
            &stack,
            &t.orders,
            &[
                ("orderId", &format!("o-{suffix}")),
                ("customerPhone", phone),
                ("customerName", "Ana Lima"),
                ("status", "completed"),
            ],
        )
        .await;
        put(
            &stack,
            &t.carts,
            &[("cartId", &format!("c-{suffix}")), ("customerPhone", phone)],
        )
        .await;
        put(
            &stack,
            &t.reviews,
            &[
                ("orderId", &format!("o-{suffix}")),
                ("customerPhone", phone),
                ("comment", "Très bon pain, merci Ana"),
            ],
        )
        .await;
        put(
            &stack,
            &t.messages,
            &[
                ("messageId", &format!("payment_reminder#o-{suffix}")),
                ("customerPhone", phone),
                ("customerName", "Ana Lima"),
                ("status", "pending"),
                ("dueShard", "03"),
            ],
        )
        .await;
        put(&stack, &t.consent, &[("phone", phone), ("optOut", "marketing")]).await;
    }
    // The same number written with spaces around it (the functions trim it), and a longer
    // number that holds it, which is someone else's.
    put(
        &stack,
        &t.orders,
        &[
            ("orderId", "o-spaced"),
            ("customerPhone", " +33612345600 "),
            ("customerName", "Ana Lima"),
        ],
    )
    .await;
    put(
        &stack,
        &t.orders,
        &[
            ("orderId", "o-longer"),
            ("customerPhone", "+336123456001"),
            ("customerName", "Bo Li"),
        ],
    )
    .await;
    let deps = EraseDeps {
        store: DynamoErasure::new(
            stack.client.clone(),
            ErasureTables {
                orders: t.orders.clone(),
                carts: t.carts.clone(),
                reviews: t.reviews.clone(),
                messages: t.messages.clone(),
                consent: t.consent.clone(),
            },
        ),
        clock: Arc::new(FixedClock(utc("2026-12-03T10:00:00Z"))),
    };

    let preview = erase_customer::run(&deps, &json!({"phone": "+33612345600", "dryRun": true}))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&preview.erased).unwrap(),
        json!({"orders": 2, "carts": 1, "reviews": 1, "messages": 1, "consent": 1})
    );
    assert!(
        get(&stack, &t.orders, "orderId", "o-gone")
            .await
            .contains_key("customerPhone"),
        "a dry run changes nothing"
    );

    let erased = erase_customer::run(&deps, &json!({"phone": "+33612345600"}))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&erased.erased).unwrap(),
        json!({"orders": 2, "carts": 1, "reviews": 1, "messages": 1, "consent": 1})
    );
    assert_eq!(erased.phone, "+33*******00", "the answer masks the number");
    let order = get(&stack, &t.orders, "orderId", "o-gone").await;
    assert!(!order.contains_key("customerPhone") && !order.contains_key("customerName"));
    assert_eq!(order.get("status"), Some(&s("completed")), "what is anonymous stays");
    assert!(
        !get(&stack, &t.orders, "orderId", "o-spaced")
            .await
            .contains_key("customerName")
    );
    assert_eq!(
        get(&stack, &t.orders, "orderId", "o-longer").await.get("customerName"),
        Some(&s("Bo Li")),
        "another number that holds this one is another customer"
    );
    assert!(
        !get(&stack, &t.carts, "cartId", "c-gone")
            .await
            .contains_key("customerPhone")
    );
    let review = get(&stack, &t.reviews, "orderId", "o-gone").await;
    assert!(!review.contains_key("comment") && !review.contains_key("customerPhone"));
    let message = get(&stack, &t.messages, "messageId", "payment_reminder#o-gone").await;
    assert_eq!(
        (message.get("status"), message.get("skipReason")),
        (Some(&s("skipped")), Some(&s("erased")))
    );
    assert!(!message.contains_key("customerPhone") && !message.contains_key("dueShard"));
    assert!(get(&stack, &t.consent, "phone", "+33612345600").await.is_empty());
    // The other customer is untouched.
    assert_eq!(
        get(&stack, &t.orders, "orderId", "o-kept").await.get("customerName"),
        Some(&s("Ana Lima"))
    );
    assert_eq!(
        get(&stack, &t.reviews, "orderId", "o-kept").await.get("comment"),
        Some(&s("Très bon pain, merci Ana"))
    );

    let again = erase_customer::run(&deps, &json!({"phone": "+33612345600"}))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&again.erased).unwrap(),
        json!({"orders": 0, "carts": 0, "reviews": 0, "messages": 0, "consent": 0})
    );

    for bad in [
        json!({"phone": "0612345600"}),
        json!({"number": "+33612345600"}),
        json!({"phone": 33612345600_u64}),
        json!(null),
        json!(["+33612345600"]),
    ] {
        let error = erase_customer::run(&deps, &bad).await.unwrap_err().to_string();
        assert!(error.contains("erasure payload"), "{error}");
        assert!(!error.contains("EraseRequest"), "no type name of the code: {error}");
        assert!(!error.contains("12345600"), "the refused number is masked: {error}");
    }
    let error = erase_customer::run(&deps, &json!({"phone": "0612345600"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("`phone`"), "{error}");
    stack.cleanup().await;
}
