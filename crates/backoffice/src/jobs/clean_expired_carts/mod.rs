//! `clean-expired-carts`: deletes the carts whose `expiresAt` has passed and that DynamoDB
//! TTL has not removed yet (TTL can take days, and expired items still show in reads).

pub mod dynamo;
mod item;
#[cfg(any(test, feature = "fakes"))]
pub mod memory;
pub mod metrics;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use futures::{SinkExt, StreamExt};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;

use crate::jobs::clean_expired_carts::store::{CartStore, DeleteOutcome, ExpiredCart};
use crate::runtime::clock::Clock;
use crate::runtime::config::{ConfigError, EnvSource, parse_var, required_var};
use crate::runtime::job::{Deadline, JobError, begin_run, finish_run, read_payload};
use crate::runtime::trigger::{JobPayload, TriggerSource};
use crate::store::StoreError;
use crate::store::shard::all_shards;

pub const JOB_NAME: &str = "clean-expired-carts";

#[derive(Debug, Clone, PartialEq)]
pub struct SweeperConfig {
    pub carts_table: String,
    /// Index entries per Query page; bounds the memory a run holds.
    pub page_size: i32,
    /// Deletes in flight at once.
    pub concurrency: usize,
    /// Stop taking new work this long before the invocation's deadline.
    pub stop_margin: Duration,
}

impl SweeperConfig {
    /// `CARTS_TABLE` (required), `SWEEP_PAGE_SIZE` (500), `SWEEP_CONCURRENCY` (32),
    /// `STOP_MARGIN_MS` (10000).
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        let config = Self {
            carts_table: required_var(env, "CARTS_TABLE")?,
            page_size: parse_var(env, "SWEEP_PAGE_SIZE")?.unwrap_or(500),
            concurrency: parse_var(env, "SWEEP_CONCURRENCY")?.unwrap_or(32),
            stop_margin: parse_var(env, "STOP_MARGIN_MS")?
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_secs(10)),
        };
        if !(1..=1000).contains(&config.page_size) {
            return Err(ConfigError::Invalid {
                name: "SWEEP_PAGE_SIZE",
                value: config.page_size.to_string(),
                reason: "must be between 1 and 1000".into(),
            });
        }
        if config.concurrency == 0 {
            return Err(ConfigError::Invalid {
                name: "SWEEP_CONCURRENCY",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(config)
    }
}

/// What one sweep did. Serialised into the result and the run's summary log line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// In the response as the contract's `deletedCount`.
    #[serde(skip)]
    pub deleted: u64,
    /// Expired entries a dry run found (it deletes nothing).
    pub would_delete: u64,
    /// Already deleted by TTL or a concurrent run: not an error, not counted as deleted.
    pub already_gone: u64,
    /// Extended after the index was read: kept.
    pub not_expired: u64,
    pub malformed: u64,
    pub malformed_reasons: BTreeMap<&'static str, u64>,
    /// Deletes that failed after the SDK's retries; the next run tries again.
    pub failed: u64,
    /// Items DynamoDB read from the index.
    pub items_read: u64,
    /// True when the run stopped at its deadline with work left.
    pub more: bool,
}

/// A sweep that could not read the index. `report` holds what was done before.
#[derive(Debug, thiserror::Error)]
#[error("sweep aborted: {cause}")]
pub struct SweepAborted {
    pub report: SweepReport,
    pub cause: StoreError,
}

pub struct SweepOptions {
    pub page_size: i32,
    pub concurrency: usize,
    pub dry_run: bool,
}

/// Visits every expiry shard page by page and deletes the due carts, each under a
/// condition that re-checks its expiry.
///
/// Reading and deleting overlap: while the deletes of one page are in flight, the next
/// page is already being read, so the deletes never stop to wait for a Query and the
/// number in flight stays at `concurrency` across page boundaries. At most three pages of
/// keys are held at a time (one being deleted, one handed over, one being read), whatever
/// the number of expired carts.
pub async fn sweep<S: CartStore>(
    store: &S,
    clock: &dyn Clock,
    deadline: Deadline,
    options: &SweepOptions,
) -> Result<SweepReport, SweepAborted> {
    let query_now = clock.now().timestamp();
    let (pages_tx, pages_rx) = futures::channel::mpsc::channel(0);
    let (read, deleted) = futures::join!(
        read_due_pages(store, query_now, deadline, options.page_size, pages_tx),
        delete_due(store, clock, deadline, options, pages_rx),
    );
    let mut report = deleted;
    report.items_read = read.items_read;
    report.malformed = read.malformed;
    report.malformed_reasons = read.malformed_reasons;
    report.more |= read.more;
    match read.aborted {
        None => Ok(report),
        Some(cause) => Err(SweepAborted { report, cause }),
    }
}

/// What the reading side of a sweep saw.
#[derive(Default)]
struct PagesRead {
    items_read: u64,
    malformed: u64,
    malformed_reasons: BTreeMap<&'static str, u64>,
    /// Stopped at the deadline with shards or pages left.
    more: bool,
    /// The Query that failed; every page read before it is still deleted.
    aborted: Option<StoreError>,
}

/// Reads the due entries shard by shard, page by page, and hands each page's valid carts
/// to the deleting side; malformed entries are logged, counted and skipped here.
async fn read_due_pages<S: CartStore>(
    store: &S,
    query_now: i64,
    deadline: Deadline,
    page_size: i32,
    mut pages: futures::channel::mpsc::Sender<Vec<ExpiredCart>>,
) -> PagesRead {
    let mut read = PagesRead::default();
    for shard in all_shards() {
        let mut cursor = None;
        loop {
            if deadline.reached() {
                read.more = true;
                return read;
            }
            let page = match store.expired_page(&shard, query_now, cursor.take(), page_size).await {
                Ok(page) => page,
                Err(cause) => {
                    read.aborted = Some(cause);
                    return read;
                }
            };
            read.items_read += page.items_read;
            let mut due = Vec::with_capacity(page.entries.len());
            for entry in page.entries {
                match entry {
                    Ok(cart) => due.push(cart),
                    Err(malformed) => {
                        tracing::warn!(job = JOB_NAME, cart_id = %malformed.key, reason = %malformed.reason, "skipping malformed cart");
                        read.malformed += 1;
                        *read.malformed_reasons.entry(malformed.reason.label()).or_default() += 1;
                    }
                }
            }
            // Waits while the deleting side still holds the previous page (back-pressure).
            if pages.send(due).await.is_err() {
                return read;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    read
}

/// Deletes the carts of every page it is handed, `concurrency` at a time without a pause
/// between pages; a dry run only counts them.
async fn delete_due<S: CartStore>(
    store: &S,
    clock: &dyn Clock,
    deadline: Deadline,
    options: &SweepOptions,
    pages: futures::channel::mpsc::Receiver<Vec<ExpiredCart>>,
) -> SweepReport {
    let mut report = SweepReport::default();
    if options.dry_run {
        report.would_delete = pages
            .map(|due| due.len() as u64)
            .fold(0, |sum, n| async move { sum + n })
            .await;
        return report;
    }
    let mut outcomes = pages
        .flat_map(futures::stream::iter)
        .map(|cart| async move {
            if deadline.reached() {
                return (cart, None);
            }
            let outcome = store.delete_if_expired(&cart.cart_id, clock.now().timestamp()).await;
            (cart, Some(outcome))
        })
        .buffer_unordered(options.concurrency);
    while let Some((cart, outcome)) = outcomes.next().await {
        match outcome {
            None => report.more = true,
            Some(Ok(DeleteOutcome::Deleted)) => report.deleted += 1,
            Some(Ok(DeleteOutcome::AlreadyGone)) => report.already_gone += 1,
            Some(Ok(DeleteOutcome::NotExpired)) => report.not_expired += 1,
            Some(Err(error)) => {
                tracing::warn!(job = JOB_NAME, cart_id = %cart.cart_id, %error, "delete failed");
                report.failed += 1;
            }
        }
    }
    report
}

/// The function's answer: the contract's three fields, then the details.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepResponse {
    pub success: bool,
    pub deleted_count: u64,
    pub timestamp: String,
    pub dry_run: bool,
    pub trigger: TriggerSource,
    pub duration_ms: u64,
    #[serde(flatten)]
    pub report: SweepReport,
}

/// What `main.rs` builds once per cold start.
pub struct SweeperDeps<S> {
    pub store: S,
    pub clock: Arc<dyn Clock>,
    pub config: SweeperConfig,
}

/// The Lambda handler.
pub async fn handle<S: CartStore>(
    deps: &SweeperDeps<S>,
    event: LambdaEvent<JobPayload>,
) -> Result<SweepResponse, JobError> {
    let deadline = Deadline::from_context(&event.context, deps.config.stop_margin);
    tracing::debug!(
        job = JOB_NAME,
        time_left_ms = crate::runtime::job::time_left(&event.context).as_millis() as u64,
        "invoked"
    );
    run(deps, &read_payload(JOB_NAME, &event.payload)?, deadline).await
}

/// One run, for the handler and for local tools.
pub async fn run<S: CartStore>(
    deps: &SweeperDeps<S>,
    payload: &Value,
    deadline: Deadline,
) -> Result<SweepResponse, JobError> {
    let started = Instant::now();
    let (request, as_of) = begin_run(JOB_NAME, payload, &deps.clock)?;
    let options = SweepOptions {
        page_size: deps.config.page_size,
        concurrency: deps.config.concurrency,
        dry_run: request.dry_run,
    };
    // Deletes are conditional on `expiresAt <= as_of`: a past `as_of` deletes only what
    // was due then, and nothing the sweep stores carries a time.
    let outcome = sweep(&deps.store, as_of.as_ref(), deadline, &options).await;
    let (report, abort) = match outcome {
        Ok(report) => (report, None),
        Err(SweepAborted { report, cause }) => (report, Some(cause)),
    };
    let response = SweepResponse {
        success: abort.is_none() && report.failed == 0,
        deleted_count: report.deleted,
        timestamp: deps.clock.now().to_rfc3339_opts(SecondsFormat::Secs, true),
        dry_run: request.dry_run,
        trigger: request.source,
        duration_ms: started.elapsed().as_millis() as u64,
        report,
    };
    log_summary(&response, request.scheduled_time, abort.as_ref());
    crate::runtime::metrics::emit(&metrics::metrics(&response));
    let failed = response.report.failed;
    finish_run(response, abort, failed)
}

/// The run's one summary line: flat fields, so Logs Insights can filter on them.
fn log_summary(response: &SweepResponse, scheduled_time: Option<DateTime<Utc>>, abort: Option<&StoreError>) {
    let report = &response.report;
    let malformed_reasons = serde_json::to_string(&report.malformed_reasons).unwrap_or_default();
    tracing::info!(
        job = JOB_NAME,
        success = response.success,
        trigger = ?response.trigger,
        scheduled_time = scheduled_time.map(|t| t.to_rfc3339()),
        dry_run = response.dry_run,
        deleted = report.deleted,
        would_delete = report.would_delete,
        already_gone = report.already_gone,
        not_expired = report.not_expired,
        malformed = report.malformed,
        malformed_reasons,
        failed = report.failed,
        items_read = report.items_read,
        more = report.more,
        duration_ms = response.duration_ms,
        error = abort.map(|e| e.to_string()),
        "run summary"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::clean_expired_carts::memory::InMemoryCarts;
    use crate::jobs::clean_expired_carts::store::{ExpiredPage, MalformedCart, MalformedReason, expiry_shard_for};
    use crate::runtime::clock::FixedClock;
    use serde_json::json;

    const NOW: i64 = 1_795_000_000;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(NOW, 0).unwrap()
    }

    fn options(page_size: i32) -> SweepOptions {
        SweepOptions {
            page_size,
            concurrency: 4,
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
        add(&deps.store, "flaky", NOW - 1);
        add(&deps.store, "fine", NOW - 1);
        deps.store.fail_next_delete_of("flaky");

        let error = run(&deps, &json!({}), Deadline::unbounded()).await.unwrap_err();
        assert!(matches!(error, JobError::ItemsFailed { failed: 1 }), "{error}");
        assert!(error.retryable());
        assert!(deps.store.contains("flaky") && !deps.store.contains("fine"));

        let second = run(&deps, &json!({}), Deadline::unbounded()).await.unwrap();
        assert_eq!(second.deleted_count, 1);
        assert!(deps.store.is_empty());
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
}
