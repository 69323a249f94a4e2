use std::sync::Mutex;

use serde_json::json;

use super::derive::Derivation;
use super::store::{Applied, ScheduleStore};
use super::*;
use crate::domain::cart::expiry_shard_for;
use crate::messages::kind::KindsConfig;
use crate::runtime::config::env_of;
use crate::store::StoreError;

const CARTS_ARN: &str = "arn:aws:dynamodb:eu-west-3:123456789012:table/shop-carts/stream/2026-11-29T10:00:00.000";
const ORDERS_ARN: &str = "arn:aws:dynamodb:eu-west-3:123456789012:table/shop-orders/stream/2026-11-29T10:00:00.000";

/// Records what it is asked to write; fails the `fail_on`-th write (0-based).
#[derive(Default)]
struct RecordingStore {
    applied: Mutex<Vec<Derivation>>,
    fail_on: Option<usize>,
}

impl ScheduleStore for RecordingStore {
    async fn apply(&self, derivation: &Derivation) -> Result<Applied, StoreError> {
        let mut applied = self.applied.lock().unwrap();
        if Some(applied.len()) == self.fail_on {
            return Err(StoreError {
                operation: "UpdateItem",
                table: "shop-orders".into(),
                message: "throttled".into(),
                retryable: true,
            });
        }
        applied.push(derivation.clone());
        Ok(Applied::Written)
    }
}

fn deps(store: RecordingStore) -> DeriveDeps<RecordingStore> {
    DeriveDeps {
        store,
        config: DeriveConfig::from_env(&env_of(&[
            ("CARTS_TABLE", "shop-carts"),
            ("ORDERS_TABLE", "shop-orders"),
            ("MESSAGES_TABLE", "shop-messages"),
        ]))
        .map(|config| DeriveConfig {
            kinds: KindsConfig::all_disabled(),
            ..config
        })
        .unwrap(),
    }
}

/// One record as Lambda delivers it.
fn record(arn: &str, event_name: &str, sequence: &str, new_image: serde_json::Value) -> serde_json::Value {
    json!({
        "eventID": format!("id-{sequence}"),
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-3",
        "eventSourceARN": arn,
        "dynamodb": {
            "ApproximateCreationDateTime": 1_795_000_000,
            "Keys": {},
            "NewImage": new_image,
            "SequenceNumber": sequence,
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        }
    })
}

fn batch(records: Vec<serde_json::Value>) -> StreamBatch {
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn new_cart() -> serde_json::Value {
    json!({"cartId": {"S": "cart-1"}, "customerPhone": {"S": "+33612345678"}, "createdAt": {"S": "2026-11-29T09:00:00Z"}})
}

fn completed_order(order_id: &str) -> serde_json::Value {
    json!({"orderId": {"S": order_id}, "status": {"S": "completed"}, "completedAt": {"S": "2026-11-22T10:00:00Z"}})
}

#[tokio::test]
async fn business_attributes_are_completed_and_everything_else_is_counted_by_reason() {
    let deps = deps(RecordingStore::default());
    let batch = batch(vec![
        record(CARTS_ARN, "INSERT", "1", new_cart()),
        record(ORDERS_ARN, "MODIFY", "2", completed_order("order-1")),
        record(
            ORDERS_ARN,
            "INSERT",
            "3",
            json!({"orderId": {"S": "order-2"}, "status": {"S": "pending"}}),
        ),
        record(ORDERS_ARN, "REMOVE", "4", json!({})),
        json!({"eventName": 42}),
        record(
            "arn:aws:dynamodb:eu-west-3:1:table/other/stream/x",
            "INSERT",
            "6",
            new_cart(),
        ),
        record(
            ORDERS_ARN,
            "MODIFY",
            "7",
            json!({"orderId": {"S": "order-3"}, "status": {"S": "completed"}}),
        ),
    ]);
    let (report, response) = process(&deps, &batch).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report.derived, 2);
    assert_eq!(report.unchanged, 2, "the pending order and the removal");
    assert_eq!(
        report.unusable,
        BTreeMap::from([
            ("completed_without_time", 1),
            ("unknown_table", 1),
            ("unreadable_record", 1)
        ])
    );
    let applied = deps.store.applied.lock().unwrap();
    assert_eq!(
        applied[0],
        Derivation::CartExpiry {
            cart_id: "cart-1".into(),
            expiry_shard: expiry_shard_for("cart-1"),
            expires_at_if_absent: Some(
                "2026-11-30T09:00:00Z"
                    .parse::<chrono::DateTime<chrono::Utc>>()
                    .unwrap()
                    .timestamp()
            ),
        }
    );
    assert!(matches!(&applied[1], Derivation::ReviewQueue { order_id, .. } if order_id == "order-1"));
}

#[tokio::test]
async fn the_consumer_s_own_write_read_back_from_the_stream_writes_nothing() {
    let deps = deps(RecordingStore::default());
    let mut completed = completed_order("order-1");
    completed["reviewRequestStatus"] = json!({"S": "pending"});
    let cart = json!({
        "cartId": {"S": "cart-1"},
        "expiresAt": {"N": "1795000000"},
        "expiryShard": {"S": expiry_shard_for("cart-1")}
    });
    let batch = batch(vec![
        record(ORDERS_ARN, "MODIFY", "1", completed),
        record(CARTS_ARN, "MODIFY", "2", cart),
    ]);
    let (report, _) = process(&deps, &batch).await;
    assert_eq!((report.derived, report.unchanged), (0, 2));
    assert!(deps.store.applied.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_write_is_reported_by_sequence_number_and_nothing_after_it_is_written() {
    let deps = deps(RecordingStore {
        fail_on: Some(1),
        ..Default::default()
    });
    let batch = batch(vec![
        record(ORDERS_ARN, "MODIFY", "100", completed_order("order-1")),
        record(ORDERS_ARN, "MODIFY", "200", completed_order("order-2")),
        record(ORDERS_ARN, "MODIFY", "300", completed_order("order-3")),
    ]);
    let (report, response) = process(&deps, &batch).await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_deref())
        .collect();
    assert_eq!(failed, vec![Some("200")]);
    assert_eq!((report.derived, report.failed), (1, 2));
    assert_eq!(deps.store.applied.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_event_without_records_is_an_empty_batch() {
    let deps = deps(RecordingStore::default());
    let empty: StreamBatch = serde_json::from_str("{}").unwrap();
    let (report, response) = process(&deps, &empty).await;
    assert_eq!(report, BatchReport::default());
    assert!(response.batch_item_failures.is_empty());
}

#[tokio::test]
async fn a_change_time_no_calendar_can_hold_is_refused_not_a_crash() {
    let deps = deps(RecordingStore::default());
    let mut far = record(
        ORDERS_ARN,
        "INSERT",
        "1",
        json!({"orderId": {"S": "order-far"}, "status": {"S": "pending"}, "customerPhone": {"S": "+33612345678"}}),
    );
    // Within chrono's range, past any date a time can be added to.
    far["dynamodb"]["ApproximateCreationDateTime"] = json!(8_210_000_000_000_i64);
    let batch = batch(vec![far, record(CARTS_ARN, "INSERT", "2", new_cart())]);

    let (report, response) = process(&deps, &batch).await;

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report.unusable, BTreeMap::from([("implausible_change_time", 1)]));
    assert_eq!(report.derived, 1, "the next record is still derived");
}

#[tokio::test]
async fn an_id_too_long_for_any_key_is_refused_and_the_batch_goes_on() {
    let deps = deps(RecordingStore::default());
    let long_id = "o".repeat(2000);
    let batch = batch(vec![
        record(ORDERS_ARN, "MODIFY", "1", completed_order(&long_id)),
        record(CARTS_ARN, "INSERT", "2", new_cart()),
    ]);

    let (report, response) = process(&deps, &batch).await;

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report.unusable, BTreeMap::from([("id_too_long", 1)]));
    assert_eq!(report.derived, 1, "the next record is still derived");
}
