//! The sweep with an in-memory store: what is deleted, kept and counted, paging,
//! read-ahead, faults and the handler's payloads.

use std::time::Duration;

use serde_json::json;

use super::memory::InMemoryCarts;
use super::store::{BatchedDelete, DeleteOutcome, ExpiredPage, MalformedCart, MalformedReason, expiry_shard_for};
use super::*;
use crate::runtime::clock::FixedClock;
use crate::runtime::config::ConfigError;

const NOW: i64 = 1_795_000_000;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW, 0).unwrap()
}

fn options(page_size: i32) -> SweepOptions {
    SweepOptions {
        page_size,
        concurrency: 4,
        batch_size: 25,
        dry_run: false,
    }
}

fn add(store: &InMemoryCarts, id: &str, expires_at: i64) {
    store.insert(id, &expiry_shard_for(id), expires_at);
}

fn deps(store: InMemoryCarts) -> SweeperDeps<InMemoryCarts> {
    SweeperDeps {
        store,
        clock: Arc::new(FixedClock(now())),
        config: SweeperConfig {
            carts_table: "carts".into(),
            page_size: 2,
            concurrency: 4,
            batch_size: 25,
            stop_margin: Duration::ZERO,
        },
    }
}

#[tokio::test]
async fn deletes_expired_carts_keeps_live_ones_and_counts_malformed() {
    let store = InMemoryCarts::default();
    for i in 0..5 {
        add(&store, &format!("expired-{i}"), NOW - 60 * i);
    }
    add(&store, "expires-exactly-now", NOW);
    add(&store, "live", NOW + 1);
    store.insert_malformed(
        "03",
        MalformedCart {
            key: "bad".into(),
            reason: MalformedReason::NotWholeSeconds("1.5".into()),
        },
    );

    let report = sweep(&store, &FixedClock(now()), Deadline::unbounded(), &options(100))
        .await
        .unwrap();

    assert_eq!(report.deleted, 6);
    assert_eq!(report.malformed, 1);
    assert_eq!(report.malformed_reasons.get("expiry_not_whole_seconds"), Some(&1));
    assert!(store.contains("live"));
    assert!(store.contains("bad"), "a malformed cart is skipped, not deleted");
    assert_eq!(store.len(), 2);
    assert!(!report.more);
}

#[tokio::test]
async fn pages_through_every_shard() {
    let store = InMemoryCarts::default();
    for i in 0..200 {
        add(&store, &format!("cart-{i}"), NOW - 10);
    }
    let report = sweep(&store, &FixedClock(now()), Deadline::unbounded(), &options(3))
        .await
        .unwrap();
    assert_eq!(report.deleted, 200);
    assert!(store.is_empty());
    assert!(
        store.pages_read() > 64,
        "200 carts in 16 shards at 3 per page need many pages"
    );
    assert_eq!(report.items_read, 200);
}

/// A cart store whose reads and deletes a test can script: `between` runs after each
/// index read that found carts, before their deletes (what another writer or DynamoDB
/// TTL may do in that gap); every delete is held until the index has been read
/// `reads_before_deletes` times (after a second it fails instead); the index read
/// number `failing_read` (from 1) fails.
struct Scripted {
    inner: InMemoryCarts,
    between: Box<dyn Fn(&InMemoryCarts) + Send + Sync>,
    reads: std::sync::atomic::AtomicU32,
    reads_before_deletes: u32,
    failing_read: Option<u32>,
}

impl Scripted {
    fn new(inner: InMemoryCarts) -> Self {
        Self {
            inner,
            between: Box::new(|_| {}),
            reads: Default::default(),
            reads_before_deletes: 0,
            failing_read: None,
        }
    }
}

impl CartStore for Scripted {
    type Cursor = String;

    async fn expired_page(
        &self,
        shard: &str,
        now: i64,
        cursor: Option<String>,
        limit: i32,
    ) -> Result<ExpiredPage<String>, StoreError> {
        let read = self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if self.failing_read == Some(read) {
            return Err(StoreError {
                operation: "Query",
                table: "scripted".into(),
                message: format!("read {read} fails"),
                retryable: true,
            });
        }
        let page = self.inner.expired_page(shard, now, cursor, limit).await;
        if page.as_ref().is_ok_and(|page| !page.entries.is_empty()) {
            (self.between)(&self.inner);
        }
        page
    }

    async fn delete_if_expired(&self, cart_id: &str, now: i64) -> Result<DeleteOutcome, StoreError> {
        let waited = tokio::time::timeout(Duration::from_secs(1), async {
            while self.reads.load(std::sync::atomic::Ordering::SeqCst) < self.reads_before_deletes {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        if waited.is_err() {
            return Err(StoreError {
                operation: "DeleteItem",
                table: "scripted".into(),
                message: format!("{cart_id} was deleted before the next page was read"),
                retryable: true,
            });
        }
        self.inner.delete_if_expired(cart_id, now).await
    }
}

/// Four due carts in the first shard read: two pages at a page size of 2.
fn two_pages_of_two_due_carts() -> InMemoryCarts {
    let carts = InMemoryCarts::default();
    for id in ["a", "b", "c", "d"] {
        carts.insert(id, "00", NOW - 100);
    }
    carts
}

#[tokio::test]
async fn the_next_page_is_read_while_the_deletes_of_the_previous_one_are_in_flight() {
    let inner = two_pages_of_two_due_carts();
    // Page one's deletes complete only once page two has been asked for: a sweep
    // that waits for them before reading on would time them out.
    let store = Scripted {
        reads_before_deletes: 2,
        ..Scripted::new(inner)
    };

    let report = sweep(&store, &FixedClock(now()), Deadline::unbounded(), &options(2))
        .await
        .unwrap();

    assert_eq!((report.deleted, report.failed), (4, 0), "{report:?}");
    assert!(store.inner.is_empty());
}

#[tokio::test]
async fn a_failed_read_after_some_pages_still_deletes_what_was_read_and_fails_the_run() {
    let inner = two_pages_of_two_due_carts();
    let store = Scripted {
        failing_read: Some(2),
        ..Scripted::new(inner)
    };

    let aborted = sweep(&store, &FixedClock(now()), Deadline::unbounded(), &options(2))
        .await
        .unwrap_err();

    assert_eq!(aborted.cause.message, "read 2 fails");
    assert_eq!(
        aborted.report.deleted, 2,
        "the first page is deleted: {:?}",
        aborted.report
    );
    assert_eq!(aborted.report.items_read, 2);
    assert_eq!(store.inner.len(), 2, "the second page waits for the next run");
}

#[tokio::test]
async fn a_cart_extended_after_the_read_survives_and_one_already_gone_is_not_counted() {
    let inner = InMemoryCarts::default();
    // One shard, so a single index read returns all three.
    for id in ["extended", "taken-by-ttl", "plain"] {
        inner.insert(id, "05", NOW - 100);
    }
    let store = Scripted {
        between: Box::new(|carts: &InMemoryCarts| {
            carts.set_expiry("extended", NOW + 86_400);
            carts.remove("taken-by-ttl");
        }),
        ..Scripted::new(inner)
    };

    let report = sweep(&store, &FixedClock(now()), Deadline::unbounded(), &options(10))
        .await
        .unwrap();

    assert_eq!(report.deleted, 1);
    assert_eq!(report.not_expired, 1);
    assert_eq!(report.already_gone, 1);
    assert!(store.inner.contains("extended"));
}

#[tokio::test]
async fn a_dry_run_counts_and_deletes_nothing() {
    let store = InMemoryCarts::default();
    add(&store, "a", NOW - 1);
    add(&store, "b", NOW - 1);
    add(&store, "live", NOW + 1);
    let dry = SweepOptions {
        dry_run: true,
        ..options(10)
    };
    let report = sweep(&store, &FixedClock(now()), Deadline::unbounded(), &dry)
        .await
        .unwrap();
    assert_eq!((report.would_delete, report.deleted), (2, 0));
    assert_eq!(store.len(), 3);
}

#[tokio::test]
async fn stops_at_the_deadline_and_says_work_is_left() {
    let store = InMemoryCarts::default();
    add(&store, "a", NOW - 1);
    let report = sweep(
        &store,
        &FixedClock(now()),
        Deadline::after(Duration::ZERO),
        &options(10),
    )
    .await
    .unwrap();
    assert!(report.more);
    assert_eq!(report.deleted, 0);
    assert!(store.contains("a"));
}

#[tokio::test]
async fn a_failed_delete_is_counted_reported_as_error_and_retried_next_run() {
    let deps = deps(InMemoryCarts::default());
    // One shard and one page: the two carts go in one batch.
    let ids: Vec<String> = (0..)
        .map(|i| format!("cart-{i}"))
        .filter(|id| expiry_shard_for(id) == "09")
        .take(2)
        .collect();
    let (flaky, fine) = (&ids[0], &ids[1]);
    add(&deps.store, flaky, NOW - 1);
    add(&deps.store, fine, NOW - 1);
    // In its batch, then alone.
    for _ in 0..2 {
        deps.store.fail_next_delete_of(flaky);
    }

    let error = run(&deps, &json!({}), Deadline::unbounded()).await.unwrap_err();
    assert!(matches!(error, JobError::ItemsFailed { failed: 1 }), "{error}");
    assert!(error.retryable());
    assert!(deps.store.contains(flaky) && !deps.store.contains(fine));

    let second = run(&deps, &json!({}), Deadline::unbounded()).await.unwrap();
    assert_eq!(second.deleted_count, 1);
    assert!(deps.store.is_empty());
}

#[tokio::test]
async fn a_delete_its_batch_could_not_do_is_retried_alone() {
    let store = InMemoryCarts::default();
    // One shard, so one page and one batch hold them all.
    let ids: Vec<String> = (0..)
        .map(|i| format!("cart-{i}"))
        .filter(|id| expiry_shard_for(id) == "05")
        .take(3)
        .collect();
    for id in &ids {
        add(&store, id, NOW - 1);
    }
    store.fail_next_delete_of(&ids[1]);

    let report = sweep(&store, &FixedClock(now()), Deadline::unbounded(), &options(100))
        .await
        .unwrap();

    assert_eq!((report.deleted, report.failed), (3, 0));
    assert_eq!((report.batches, report.retried_alone), (1, 1));
    assert!(store.is_empty());
}

/// An in-memory store whose batch requests fail as scripted: the first `failing` of them
/// with an error `retryable` or not.
struct FailingBatches {
    inner: InMemoryCarts,
    failing: u32,
    retryable: bool,
    batch_requests: std::sync::atomic::AtomicU32,
    /// How long a delete alone takes (a throttled one, through the SDK's retries).
    alone_takes: Duration,
}

impl CartStore for FailingBatches {
    type Cursor = String;

    async fn expired_page(
        &self,
        shard: &str,
        now: i64,
        cursor: Option<String>,
        limit: i32,
    ) -> Result<ExpiredPage<String>, StoreError> {
        self.inner.expired_page(shard, now, cursor, limit).await
    }

    async fn delete_if_expired(&self, cart_id: &str, now: i64) -> Result<DeleteOutcome, StoreError> {
        tokio::time::sleep(self.alone_takes).await;
        self.inner.delete_if_expired(cart_id, now).await
    }

    async fn delete_batch_if_expired(&self, cart_ids: &[String], now: i64) -> Result<Vec<BatchedDelete>, StoreError> {
        let request = self.batch_requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if request <= self.failing {
            return Err(StoreError {
                operation: "BatchExecuteStatement",
                table: "carts".into(),
                message: format!("batch request {request} fails"),
                retryable: self.retryable,
            });
        }
        self.inner.delete_batch_if_expired(cart_ids, now).await
    }
}

/// Six due carts of one shard, swept in batches of two, one batch in flight at a time.
async fn sweep_six_carts_in_batches_of_two(failing: u32, retryable: bool) -> (SweepReport, FailingBatches) {
    let store = six_due_carts(failing, retryable, Duration::ZERO);
    let options = SweepOptions {
        concurrency: 1,
        batch_size: 2,
        ..options(100)
    };
    let report = sweep(&store, &FixedClock(now()), Deadline::unbounded(), &options)
        .await
        .unwrap();
    (report, store)
}

fn six_due_carts(failing: u32, retryable: bool, alone_takes: Duration) -> FailingBatches {
    let inner = InMemoryCarts::default();
    for id in (0..)
        .map(|i| format!("cart-{i}"))
        .filter(|id| expiry_shard_for(id) == "05")
        .take(6)
    {
        add(&inner, &id, NOW - 1);
    }
    FailingBatches {
        inner,
        failing,
        retryable,
        batch_requests: Default::default(),
        alone_takes,
    }
}

#[tokio::test(start_paused = true)]
async fn deletes_done_alone_stop_at_the_deadline_and_the_run_says_work_is_left() {
    // One batch of six fails; each delete alone then takes 100 ms, and 250 ms are left.
    let store = six_due_carts(1, true, Duration::from_millis(100));
    let options = SweepOptions {
        concurrency: 1,
        batch_size: 6,
        ..options(100)
    };

    let report = sweep(
        &store,
        &FixedClock(now()),
        Deadline::after(Duration::from_millis(250)),
        &options,
    )
    .await
    .unwrap();

    assert_eq!((report.deleted, report.failed), (3, 0), "{report:?}");
    assert!(report.more, "the three left are for the next run");
    assert_eq!(store.inner.len(), 3);
}

#[tokio::test]
async fn a_batch_that_failed_for_a_passing_reason_is_done_alone_and_the_next_still_batch() {
    let (report, store) = sweep_six_carts_in_batches_of_two(1, true).await;

    assert_eq!((report.deleted, report.failed), (6, 0));
    assert_eq!((report.batches, report.retried_alone), (2, 2));
    assert_eq!(store.batch_requests.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert!(store.inner.is_empty());
}

#[tokio::test]
async fn a_backend_that_refuses_batches_is_not_asked_again_in_the_run() {
    let (report, store) = sweep_six_carts_in_batches_of_two(u32::MAX, false).await;

    assert_eq!((report.deleted, report.failed), (6, 0));
    assert_eq!(report.batches, 0);
    assert_eq!(store.batch_requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(store.inner.is_empty());
}

#[tokio::test]
async fn an_unreadable_index_fails_the_run_with_a_retryable_error() {
    let deps = deps(InMemoryCarts::default());
    add(&deps.store, "a", NOW - 1);
    deps.store.fail_next_queries(1);
    let error = run(&deps, &json!({}), Deadline::unbounded()).await.unwrap_err();
    assert!(matches!(error, JobError::Store(_)), "{error}");
    assert!(error.retryable());
    assert!(deps.store.contains("a"));
}

#[tokio::test]
async fn the_response_has_the_contract_fields() {
    let deps = deps(InMemoryCarts::default());
    add(&deps.store, "a", NOW - 1);
    let response = run(&deps, &json!({}), Deadline::unbounded()).await.unwrap();
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(json["success"], true);
    assert_eq!(json["deletedCount"], 1);
    assert_eq!(json["timestamp"], now().to_rfc3339_opts(SecondsFormat::Secs, true));
    assert_eq!(json["more"], false);
    assert_eq!(json["trigger"], "manual");
}

#[tokio::test]
async fn a_manual_now_a_little_ahead_never_deletes_a_cart_not_yet_expired() {
    let deps = deps(InMemoryCarts::default());
    add(&deps.store, "due", NOW - 1);
    add(&deps.store, "in-thirty-seconds", NOW + 30);
    let ahead = DateTime::from_timestamp(NOW + 59, 0).unwrap().to_rfc3339();

    let response = run(&deps, &json!({"now": ahead}), Deadline::unbounded()).await.unwrap();

    assert_eq!(response.deleted_count, 1);
    assert!(
        deps.store.contains("in-thirty-seconds"),
        "not expired by the real clock"
    );
}

#[tokio::test]
async fn a_manual_now_in_the_past_deletes_only_what_was_due_then() {
    let deps = deps(InMemoryCarts::default());
    add(&deps.store, "old", NOW - 7200);
    add(&deps.store, "recent", NOW - 60);
    let an_hour_ago = DateTime::from_timestamp(NOW - 3600, 0).unwrap().to_rfc3339();
    let response = run(
        &deps,
        &json!({"now": an_hour_ago, "backfill": true}),
        Deadline::unbounded(),
    )
    .await
    .unwrap();
    assert_eq!(response.deleted_count, 1);
    assert!(deps.store.contains("recent"));
}

#[tokio::test]
async fn a_bad_manual_payload_is_refused_and_changes_nothing() {
    let deps = deps(InMemoryCarts::default());
    add(&deps.store, "a", NOW - 1);
    let error = run(&deps, &json!({"dryrun": true}), Deadline::unbounded())
        .await
        .unwrap_err();
    assert!(matches!(error, JobError::InvalidPayload(_)));
    assert!(error.to_string().contains("unknown field `dryrun`"), "{error}");
    assert!(deps.store.contains("a"));
}

#[test]
fn config_refuses_out_of_range_values_by_name() {
    let env: std::collections::HashMap<String, String> = [("CARTS_TABLE", "carts"), ("SWEEP_PAGE_SIZE", "5000")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let err = SweeperConfig::from_env(&env).unwrap_err();
    assert!(err.to_string().contains("SWEEP_PAGE_SIZE"), "{err}");
    let missing = SweeperConfig::from_env(&std::collections::HashMap::new()).unwrap_err();
    assert_eq!(missing, ConfigError::Missing("CARTS_TABLE"));
}
