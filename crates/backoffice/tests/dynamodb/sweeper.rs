//! The sweeper against a real DynamoDB API: the embedded dynoxide server by default,
//! the moto server with `AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:5055`, or real AWS
//! with `DYNAMODB_TARGET=aws` (tables are created and deleted by each test).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use backoffice::domain::phone::PhoneNumber;
use backoffice::jobs::clean_expired_carts::dynamo::DynamoCarts;
use backoffice::jobs::clean_expired_carts::store::{
    BatchedDelete, Cart, CartStore, DeleteOutcome, ExpiredPage, expiry_shard_for,
};
use backoffice::jobs::clean_expired_carts::{SweepOptions, SweeperConfig, SweeperDeps, run, sweep};
use backoffice::runtime::clock::FixedClock;
use backoffice::runtime::job::Deadline;
use backoffice::store::StoreError;
use chrono::{DateTime, TimeDelta, Utc};
use devstack::seed::{count_items, put_raw_cart, seed_carts, seed_malformed_carts};
use devstack::stack::Stack;
use serde_json::json;

fn now() -> DateTime<Utc> {
    // Whole seconds: the sweeper compares epoch seconds.
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
}

fn deps(carts: DynamoCarts, now: DateTime<Utc>, page_size: i32) -> SweeperDeps<DynamoCarts> {
    SweeperDeps {
        config: SweeperConfig {
            carts_table: carts.table().to_owned(),
            page_size,
            concurrency: 8,
            batch_size: 25,
            stop_margin: Duration::ZERO,
        },
        store: carts,
        clock: Arc::new(FixedClock(now)),
    }
}

#[tokio::test]
async fn sweeps_expired_carts_and_leaves_live_and_malformed_ones() {
    let stack = Stack::from_env("mix").await.unwrap();
    let now = now();
    let carts = DynamoCarts::new(stack.client.clone(), stack.tables.carts.clone());
    let seeded = seed_carts(&carts, now, 12, 7).await.unwrap();
    let malformed = seed_malformed_carts(&stack.client, &stack.tables.carts).await.unwrap();
    // No expiresAt: outside the index, so neither TTL nor the sweeper ever sees it.
    put_raw_cart(&stack.client, &stack.tables.carts, "cart-without-expiry", &[])
        .await
        .unwrap();
    let deps = deps(carts, now, 500);
    let response = run(&deps, &json!({}), Deadline::unbounded()).await.unwrap();

    assert!(response.success);
    assert_eq!(response.deleted_count, 12);
    assert_eq!(response.report.malformed, malformed.len() as u64);
    assert_eq!(
        response.report.malformed_reasons.get("expiry_not_whole_seconds"),
        Some(&1)
    );
    assert_eq!(response.report.malformed_reasons.get("expiry_implausible"), Some(&1));
    for id in seeded.expired.iter() {
        assert_eq!(deps.store.get(id).await.unwrap(), None, "{id} should be gone");
    }
    for id in seeded.live.iter() {
        assert!(deps.store.get(id).await.unwrap().is_some(), "{id} should be kept");
    }
    let left = count_items(&stack.client, &stack.tables.carts).await.unwrap();
    assert_eq!(left, 7 + malformed.len() as u64 + 1);
    assert_eq!(
        response.report.items_read,
        12 + response.report.malformed,
        "reads only what is due"
    );

    // A second run finds nothing new to delete.
    let again = run(&deps, &json!({}), Deadline::unbounded()).await.unwrap();
    assert_eq!(again.deleted_count, 0);
    stack.cleanup().await;
}

/// `expiresAt` is the index's range key, so DynamoDB itself refuses a cart whose
/// `expiresAt` is not a number: no such cart can reach the sweeper. (The moto server does
/// not enforce index key types and then fails its own queries; the test script sets
/// `DYNAMODB_EMULATOR=moto` there, and this one check is not made.)
#[tokio::test]
async fn a_non_numeric_expiry_is_refused_at_write() {
    if devstack::stack::emulator_is_moto() {
        eprintln!("moto does not enforce GSI key types; check not made on this target");
        return;
    }
    let stack = Stack::from_env("string-expiry").await.unwrap();
    let refused = put_raw_cart(
        &stack.client,
        &stack.tables.carts,
        "cart-string-expiry",
        &[("expiresAt", AttributeValue::S("1700000000".into()))],
    )
    .await
    .unwrap_err();
    assert!(refused.contains("ValidationException"), "{refused}");
    stack.cleanup().await;
}

#[tokio::test]
async fn pages_through_many_pages_per_shard() {
    let stack = Stack::from_env("pages").await.unwrap();
    let now = now();
    let carts = DynamoCarts::new(stack.client.clone(), stack.tables.carts.clone());
    seed_carts(&carts, now, 120, 0).await.unwrap();

    // 120 carts over 16 shards at 2 per page: several pages in every shard.
    let deps = deps(carts, now, 2);
    let response = run(&deps, &json!({}), Deadline::unbounded()).await.unwrap();

    assert_eq!(response.deleted_count, 120);
    assert_eq!(count_items(&stack.client, &stack.tables.carts).await.unwrap(), 0);
    stack.cleanup().await;
}

/// DynamoCarts, with something done to the table right after each non-empty index read.
struct AfterRead<F> {
    carts: DynamoCarts,
    action: F,
}

impl<F, Fut> CartStore for AfterRead<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: std::future::Future<Output = ()> + Send,
{
    type Cursor = <DynamoCarts as CartStore>::Cursor;

    async fn expired_page(
        &self,
        shard: &str,
        now: i64,
        cursor: Option<Self::Cursor>,
        limit: i32,
    ) -> Result<ExpiredPage<Self::Cursor>, StoreError> {
        let page = self.carts.expired_page(shard, now, cursor, limit).await?;
        if !page.entries.is_empty() {
            (self.action)().await;
        }
        Ok(page)
    }

    async fn delete_if_expired(&self, cart_id: &str, now: i64) -> Result<DeleteOutcome, StoreError> {
        self.carts.delete_if_expired(cart_id, now).await
    }

    async fn delete_batch_if_expired(&self, cart_ids: &[String], now: i64) -> Result<Vec<BatchedDelete>, StoreError> {
        self.carts.delete_batch_if_expired(cart_ids, now).await
    }
}

/// Each cart of a batch gets its own outcome, on every backend: deleted, already gone (the
/// PartiQL delete of a missing item answers success; the returned old item tells), kept
/// because it was extended. A backend without PartiQL conditions (moto) refuses the batch,
/// and the sweep then deletes one by one.
#[tokio::test]
async fn a_batch_of_conditional_deletes_answers_for_each_cart() {
    let stack = Stack::from_env("batch").await.unwrap();
    let now = now();
    let carts = DynamoCarts::new(stack.client.clone(), stack.tables.carts.clone());
    let phone = PhoneNumber::parse("+33612345678").unwrap();
    for (id, created) in [
        ("expired", now - TimeDelta::hours(30)),
        ("live", now - TimeDelta::hours(1)),
        ("expired-too", now - TimeDelta::hours(25)),
    ] {
        carts
            .put(&Cart::new(id.to_owned(), phone.clone(), created))
            .await
            .unwrap();
    }
    let ids: Vec<String> = ["expired", "gone", "live", "expired-too", "it's \"quoted\""]
        .iter()
        .map(|id| (*id).to_owned())
        .collect();

    match carts.delete_batch_if_expired(&ids, now.timestamp()).await {
        Ok(answers) => assert_eq!(
            answers,
            [
                BatchedDelete::Done(DeleteOutcome::Deleted),
                BatchedDelete::Done(DeleteOutcome::AlreadyGone),
                BatchedDelete::Done(DeleteOutcome::NotExpired),
                BatchedDelete::Done(DeleteOutcome::Deleted),
                BatchedDelete::Done(DeleteOutcome::AlreadyGone),
            ]
        ),
        Err(error) => {
            assert!(devstack::stack::emulator_is_moto(), "{error}");
            // moto's PartiQL cannot read the conditions: the sweep falls back.
            let report = sweep(
                &carts,
                &FixedClock(now),
                Deadline::unbounded(),
                &SweepOptions {
                    page_size: 100,
                    concurrency: 4,
                    batch_size: 25,
                    dry_run: false,
                },
            )
            .await
            .unwrap();
            assert_eq!((report.deleted, report.batches), (2, 0));
        }
    }
    assert_eq!(carts.get("expired").await.unwrap(), None);
    assert_eq!(carts.get("expired-too").await.unwrap(), None);
    assert!(carts.get("live").await.unwrap().is_some());
    stack.cleanup().await;
}

#[tokio::test]
async fn a_cart_extended_after_the_read_survives_and_a_vanished_one_is_not_counted() {
    let stack = Stack::from_env("race").await.unwrap();
    let now = now();
    let carts = DynamoCarts::new(stack.client.clone(), stack.tables.carts.clone());
    // Three carts of one shard, so one index read returns them all before the action.
    let same_shard: Vec<String> = (0..)
        .map(|i| format!("race-{i}"))
        .filter(|id| expiry_shard_for(id) == "07")
        .take(3)
        .collect();
    for id in &same_shard {
        let phone = PhoneNumber::parse("+33612345678").unwrap();
        carts
            .put(&Cart::new(id.clone(), phone, now - TimeDelta::hours(30)))
            .await
            .unwrap();
    }
    let (extended, vanished, plain) = (&same_shard[0], &same_shard[1], &same_shard[2]);
    let new_expiry = (now + TimeDelta::hours(24)).timestamp();

    let store = AfterRead {
        carts: carts.clone(),
        action: || {
            let carts = carts.clone();
            let client = stack.client.clone();
            let (extended, vanished) = (extended.clone(), vanished.clone());
            async move {
                // Both are idempotent, so doing them after every page is harmless.
                let _ = carts.extend(&extended, new_expiry).await;
                let _ = client
                    .delete_item()
                    .table_name(carts.table())
                    .key("cartId", AttributeValue::S(vanished))
                    .send()
                    .await;
            }
        },
    };
    let options = SweepOptions {
        page_size: 100,
        concurrency: 4,
        batch_size: 25,
        dry_run: false,
    };
    let report = sweep(&store, &FixedClock(now), Deadline::unbounded(), &options)
        .await
        .unwrap();

    assert_eq!(report.deleted, 1);
    assert_eq!(report.not_expired + report.already_gone, 2);
    assert_eq!(
        report.already_gone, 1,
        "the vanished cart is not an error and not counted as deleted"
    );
    assert_eq!(report.not_expired, 1);
    assert_eq!(
        carts.get(extended).await.unwrap().map(|c| c.expires_at),
        Some(new_expiry)
    );
    assert_eq!(carts.get(plain).await.unwrap(), None);
    assert_eq!(
        report.batches + report.retried_alone,
        if devstack::stack::emulator_is_moto() { 3 } else { 1 }
    );
    stack.cleanup().await;
}

#[tokio::test]
async fn a_dry_run_counts_and_deletes_nothing() {
    let stack = Stack::from_env("dry").await.unwrap();
    let now = now();
    let carts = DynamoCarts::new(stack.client.clone(), stack.tables.carts.clone());
    seed_carts(&carts, now, 5, 2).await.unwrap();
    let deps = deps(carts, now, 500);

    let response = run(&deps, &json!({"dryRun": true}), Deadline::unbounded())
        .await
        .unwrap();

    assert_eq!((response.deleted_count, response.report.would_delete), (0, 5));
    assert_eq!(count_items(&stack.client, &stack.tables.carts).await.unwrap(), 7);
    stack.cleanup().await;
}
