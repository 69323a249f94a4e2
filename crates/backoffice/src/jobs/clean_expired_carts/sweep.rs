//! The sweep: read the due index pages, delete the carts in batches, each under its own
//! condition, count what happened to each.

use std::collections::BTreeMap;

use futures::{FutureExt, SinkExt, StreamExt};
use serde::Serialize;

use super::FUNCTION_NAME;
use super::store::{BatchedDelete, CartStore, DeleteOutcome, ExpiredCart};
use crate::runtime::clock::Clock;
use crate::runtime::job::{Aborted, Deadline};
use crate::store::StoreError;
use crate::store::walk::{Walked, walk_shards};

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
    /// Delete requests that carried a batch of conditional deletes.
    pub batches: u64,
    /// Deletes a batch could not do (throttled, failed alone, or the whole batch refused),
    /// done again one by one.
    pub retried_alone: u64,
    /// Items DynamoDB read from the index.
    pub items_read: u64,
    /// True when the run stopped at its deadline with work left.
    pub more: bool,
}

/// A sweep that could not read the index. `report` holds what was done before.
pub type SweepAborted = Aborted<SweepReport>;

pub struct SweepOptions {
    pub page_size: i32,
    /// Delete requests in flight at once (a batch is one request).
    pub concurrency: usize,
    /// Carts per delete request; 1: one `DeleteItem` each.
    pub batch_size: usize,
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
        // Boxed: the reading side's nested stream types would otherwise make the
        // function's future too deep for the compiler's layout computation.
        read_due_pages(store, query_now, deadline, options.page_size, pages_tx).boxed(),
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
    let walk = walk_shards(
        |shard, cursor| async move { store.expired_page(&shard, query_now, cursor, page_size).await },
        || deadline.reached(),
    );
    let mut walk = std::pin::pin!(walk);
    while let Some(walked) = walk.next().await {
        let page = match walked {
            Ok(Walked::Page(page)) => page,
            Ok(Walked::StoppedEarly) => {
                read.more = true;
                break;
            }
            Err(cause) => {
                read.aborted = Some(cause);
                break;
            }
        };
        read.items_read += page.items_read;
        let mut due = Vec::with_capacity(page.entries.len());
        for entry in page.entries {
            match entry {
                Ok(cart) => due.push(cart),
                Err(malformed) => {
                    tracing::warn!(function = FUNCTION_NAME, cart_id = %malformed.key, reason = %malformed.reason, "skipping malformed cart");
                    read.malformed += 1;
                    *read.malformed_reasons.entry(malformed.reason.label()).or_default() += 1;
                }
            }
        }
        // Waits while the deleting side still holds the previous page (back-pressure).
        if pages.send(due).await.is_err() {
            break;
        }
    }
    read
}

/// Deletes the carts of every page it is handed, in batches of `batch_size`,
/// `concurrency` requests in flight without a pause between pages; a dry run only counts
/// them.
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
    let batch_size = options.batch_size.max(1);
    let in_flight = options.concurrency.max(1);
    // Once a backend refuses a whole batch for good (no PartiQL, as moto), the rest of the
    // run deletes one by one instead of asking again. A batch that failed for a passing
    // reason (throttled beyond the SDK's retries) is done alone, and the next still batch.
    let batches_refused = std::sync::atomic::AtomicBool::new(false);
    let batches_refused = &batches_refused;
    let mut outcomes = pages
        .flat_map(move |due| {
            let mut batches = Vec::with_capacity(due.len().div_ceil(batch_size));
            let mut due = due.into_iter().peekable();
            while due.peek().is_some() {
                batches.push(due.by_ref().take(batch_size).collect::<Vec<_>>());
            }
            futures::stream::iter(batches)
        })
        .map(|carts| async move {
            if deadline.reached() {
                return BatchDone {
                    outcomes: carts.into_iter().map(|cart| (cart, None)).collect(),
                    batched: false,
                    retried_alone: 0,
                };
            }
            delete_batch(store, clock, deadline, carts, batches_refused).await
        })
        .buffer_unordered(in_flight);
    while let Some(done) = outcomes.next().await {
        report.batches += u64::from(done.batched);
        report.retried_alone += done.retried_alone;
        for (cart, outcome) in done.outcomes {
            match outcome {
                None => report.more = true,
                Some(Ok(DeleteOutcome::Deleted)) => report.deleted += 1,
                Some(Ok(DeleteOutcome::AlreadyGone)) => report.already_gone += 1,
                Some(Ok(DeleteOutcome::NotExpired)) => report.not_expired += 1,
                Some(Err(error)) => {
                    tracing::warn!(function = FUNCTION_NAME, cart_id = %cart.cart_id, %error, "delete failed");
                    report.failed += 1;
                }
            }
        }
    }
    report
}

/// What one batch did to each of its carts.
struct BatchDone {
    /// `None`: not started (the deadline).
    outcomes: Vec<(ExpiredCart, Option<Result<DeleteOutcome, StoreError>>)>,
    /// Sent as one batch request.
    batched: bool,
    retried_alone: u64,
}

/// One request for the whole batch; what it could not do is done again cart by cart.
async fn delete_batch<S: CartStore>(
    store: &S,
    clock: &dyn Clock,
    deadline: Deadline,
    carts: Vec<ExpiredCart>,
    batches_refused: &std::sync::atomic::AtomicBool,
) -> BatchDone {
    use std::sync::atomic::Ordering;
    let mut done = BatchDone {
        outcomes: Vec::with_capacity(carts.len()),
        batched: false,
        retried_alone: 0,
    };
    let answers = if carts.len() == 1 || batches_refused.load(Ordering::Relaxed) {
        vec![BatchedDelete::Retry(String::new()); carts.len()]
    } else {
        let ids: Vec<String> = carts.iter().map(|cart| cart.cart_id.clone()).collect();
        match store.delete_batch_if_expired(&ids, clock.now().timestamp()).await {
            Ok(answers) if answers.len() == ids.len() => {
                done.batched = true;
                answers
            }
            outcome => {
                let (reason, for_good) = match outcome {
                    Ok(answers) => (format!("{} answers for {} deletes", answers.len(), ids.len()), true),
                    Err(error) => (error.to_string(), !error.retryable),
                };
                if !for_good {
                    tracing::warn!(function = FUNCTION_NAME, %reason, "a batch of deletes failed: deleting its carts one by one");
                } else if !batches_refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(function = FUNCTION_NAME, %reason, "a batch of deletes was refused: deleting one by one");
                }
                vec![BatchedDelete::Retry(reason); ids.len()]
            }
        }
    };
    for (cart, answer) in carts.into_iter().zip(answers) {
        let outcome = match answer {
            BatchedDelete::Done(outcome) => Ok(outcome),
            // One by one, each delete may take the SDK's whole retry budget: none starts
            // past the deadline, so the run still answers, with what it left.
            BatchedDelete::Retry(_) if deadline.reached() => {
                done.outcomes.push((cart, None));
                continue;
            }
            BatchedDelete::Retry(reason) => {
                if !reason.is_empty() {
                    done.retried_alone += 1;
                    tracing::debug!(function = FUNCTION_NAME, cart_id = %cart.cart_id, %reason, "retrying a delete alone");
                }
                delete_alone(store, clock, &cart.cart_id).await
            }
        };
        done.outcomes.push((cart, Some(outcome)));
    }
    done
}

/// A single conditional delete: the SDK retries it with backoff while its error is
/// retryable (throttling, a 5xx), as for any call.
async fn delete_alone<S: CartStore>(store: &S, clock: &dyn Clock, cart_id: &str) -> Result<DeleteOutcome, StoreError> {
    store.delete_if_expired(cart_id, clock.now().timestamp()).await
}
