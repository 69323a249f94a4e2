//! The run over every due order: claim, send, settle; park what is unsure for reconciliation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use serde::Serialize;

use super::store::{Claim, ClaimOutcome, DueOrder, RequestStatus, ReviewRequestStore, Settlement, SkipReason};
use super::{FUNCTION_NAME, ReviewMessenger, ReviewWindow};
use crate::runtime::clock::Clock;
use crate::runtime::job::{Aborted, Deadline};
use crate::store::StoreError;
use crate::store::walk::{Walked, walk_shards};
use crate::twilio::{SendError, SentMessage};

/// What one run did. Serialised into the result and the run summary log line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewReport {
    /// In the response as the contract's top-level `sent`.
    #[serde(skip)]
    pub sent: u64,
    /// Refused by Twilio for good (invalid or unsubscribed number...), not retried.
    /// In the response as the contract's top-level `failed`.
    #[serde(skip)]
    pub failed: u64,
    pub failed_reasons: BTreeMap<String, u64>,
    /// Not delivered and retryable (429, 5xx, network): back in line for the next run.
    pub released: u64,
    /// Twilio may have the message: parked for reconciliation, not resent.
    pub unknown: u64,
    /// Due orders that got no message, by reason (too_old, has_review, invalid_phone...).
    pub skipped: BTreeMap<&'static str, u64>,
    /// A dry run's count of the messages it would send.
    pub would_send: u64,
    /// Claims left by a run that died, parked for reconciliation by this run.
    pub stale_claims_parked: u64,
    /// Orders waiting for a person to reconcile, after this run.
    pub awaiting_reconciliation: u64,
    /// DynamoDB errors on single orders; those orders are retried by the next run.
    pub store_errors: u64,
    pub items_read: u64,
    /// True when the run stopped at its deadline (or on a configuration error) with work left.
    pub more: bool,
}

impl ReviewReport {
    /// Due orders this run looked at.
    pub fn total(&self) -> u64 {
        self.sent + self.failed + self.released + self.unknown + self.would_send + self.skipped.values().sum::<u64>()
    }

    fn skip(&mut self, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += 1;
    }
}

pub struct ReviewOptions {
    pub window: ReviewWindow,
    pub page_size: i32,
    pub concurrency: usize,
    pub dry_run: bool,
    /// Written on every claim of this run, so only this run settles them.
    pub claim_id: String,
    pub stale_claim_after: Duration,
}

/// A review run that could not read or update the store. `report` holds what was done before.
pub type ReviewRunAborted = Aborted<ReviewReport>;

/// How one due order ended in this run.
enum Outcome {
    Sent,
    Failed(String),
    Released,
    Unknown,
    Skipped(&'static str),
    WouldSend,
    NotStarted,
    StoreError,
}

/// Runs the review job over every pending shard.
pub async fn request_reviews<S: ReviewRequestStore, M: ReviewMessenger>(
    store: &S,
    messenger: &M,
    clock: &dyn Clock,
    deadline: Deadline,
    options: &ReviewOptions,
) -> Result<ReviewReport, ReviewRunAborted> {
    let mut report = ReviewReport::default();
    let aborted = |report: ReviewReport, cause| ReviewRunAborted { report, cause };
    if !options.dry_run {
        match park_stale_claims(store, clock, options.stale_claim_after).await {
            Ok(parked) => report.stale_claims_parked = parked,
            Err(cause) => return Err(aborted(report, cause)),
        }
    }
    // A configuration error (bad credentials, unknown sender) fails every send: stop.
    let halted = AtomicBool::new(false);
    let stopped_early = AtomicBool::new(false);
    let items_read = AtomicU64::new(0);
    // One stream over every page of every shard feeds one pool of in-flight orders, so
    // sends go on while the next page is read: the rate limiter never waits on a page
    // boundary. Pages are read only as the pool needs more, so memory stays at one page
    // plus the orders in flight.
    let due_before = options.window.due_before.timestamp();
    let entries = walk_shards(
        |shard, cursor| async move { store.pending_page(&shard, due_before, cursor, options.page_size).await },
        || deadline.reached() || halted.load(Ordering::Relaxed),
    )
    .map(|walked| {
        let entries = match walked {
            Ok(Walked::Page(page)) => {
                items_read.fetch_add(page.items_read, Ordering::Relaxed);
                page.entries.into_iter().map(Ok).collect()
            }
            Ok(Walked::StoppedEarly) => {
                stopped_early.store(true, Ordering::Relaxed);
                Vec::new()
            }
            Err(cause) => vec![Err(cause)],
        };
        futures::stream::iter(entries)
    })
    .flatten();
    let mut abort = None;
    let outcomes = entries
        .map(|entry| {
            let halted = &halted;
            async move {
                match entry {
                    Ok(entry) => Ok(handle_entry(store, messenger, clock, deadline, options, halted, entry).await),
                    Err(cause) => Err(cause),
                }
            }
        })
        .buffer_unordered(options.concurrency);
    let mut outcomes = std::pin::pin!(outcomes);
    while let Some(outcome) = outcomes.next().await {
        match outcome {
            Ok(Outcome::Sent) => report.sent += 1,
            Ok(Outcome::Failed(reason)) => {
                report.failed += 1;
                *report.failed_reasons.entry(reason).or_default() += 1;
            }
            Ok(Outcome::Released) => report.released += 1,
            Ok(Outcome::Unknown) => report.unknown += 1,
            Ok(Outcome::Skipped(reason)) => report.skip(reason),
            Ok(Outcome::WouldSend) => report.would_send += 1,
            Ok(Outcome::NotStarted) => report.more = true,
            Ok(Outcome::StoreError) => report.store_errors += 1,
            Err(cause) => abort = Some(cause),
        }
    }
    report.items_read = items_read.load(Ordering::Relaxed);
    if stopped_early.load(Ordering::Relaxed) || halted.load(Ordering::Relaxed) {
        report.more = true;
    }
    if let Some(cause) = abort {
        return Err(aborted(report, cause));
    }
    match store.awaiting_reconciliation().await {
        Ok(count) => report.awaiting_reconciliation = count,
        Err(cause) => return Err(aborted(report, cause)),
    }
    Ok(report)
}

async fn park_stale_claims<S: ReviewRequestStore>(
    store: &S,
    clock: &dyn Clock,
    stale_after: Duration,
) -> Result<u64, StoreError> {
    let cutoff = clock.now() - TimeDelta::from_std(stale_after).unwrap_or(TimeDelta::MAX);
    let mut parked = 0;
    for claim in store.in_flight().await? {
        if claim.claimed_at.is_none_or(|at| at < cutoff) {
            tracing::warn!(
                function = FUNCTION_NAME,
                order_id = %claim.order_id,
                claimed_at = ?claim.claimed_at,
                "a run died between claim and outcome: parked for reconciliation, not resent"
            );
            store
                .park_stale_claim(
                    &claim,
                    "claimed by a run that did not finish; message may have been sent",
                )
                .await?;
            parked += 1;
        }
    }
    Ok(parked)
}

fn close_reason(reason: &SkipReason) -> RequestStatus {
    match reason {
        SkipReason::NotCompleted(_) => RequestStatus::NotCompleted,
        _ => RequestStatus::Invalid,
    }
}

async fn handle_entry<S: ReviewRequestStore, M: ReviewMessenger>(
    store: &S,
    messenger: &M,
    clock: &dyn Clock,
    deadline: Deadline,
    options: &ReviewOptions,
    halted: &AtomicBool,
    entry: Result<DueOrder, super::store::SkippedOrder>,
) -> Outcome {
    if deadline.reached() || halted.load(Ordering::Relaxed) {
        return Outcome::NotStarted;
    }
    let order = match entry {
        Ok(order) => order,
        Err(skipped) => {
            tracing::warn!(function = FUNCTION_NAME, order_id = %skipped.order_id, reason = %skipped.reason, "skipping order");
            if !options.dry_run
                && let Err(error) = store
                    .close(
                        &skipped.order_id,
                        close_reason(&skipped.reason),
                        &skipped.reason.to_string(),
                    )
                    .await
            {
                tracing::warn!(function = FUNCTION_NAME, order_id = %skipped.order_id, %error, "could not close skipped order");
            }
            return Outcome::Skipped(skipped.reason.label());
        }
    };
    if order.completed_at < options.window.too_old_before {
        if !options.dry_run
            && let Err(error) = store
                .close(&order.order_id, RequestStatus::Expired, "completed too long ago")
                .await
        {
            tracing::warn!(function = FUNCTION_NAME, order_id = %order.order_id, %error, "could not close expired request");
            return Outcome::StoreError;
        }
        return Outcome::Skipped("too_old");
    }
    match store.has_review(&order.order_id).await {
        Ok(true) => {
            if !options.dry_run
                && let Err(error) = store
                    .close(&order.order_id, RequestStatus::Reviewed, "already reviewed")
                    .await
            {
                tracing::warn!(function = FUNCTION_NAME, order_id = %order.order_id, %error, "could not close reviewed order");
                return Outcome::StoreError;
            }
            return Outcome::Skipped("has_review");
        }
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(function = FUNCTION_NAME, order_id = %order.order_id, %error, "could not check for a review");
            return Outcome::StoreError;
        }
    }
    if options.dry_run {
        return Outcome::WouldSend;
    }
    let claim = Claim {
        claim_id: options.claim_id.clone(),
        claimed_at: clock.now(),
    };
    match store.claim(&order.order_id, &claim).await {
        Ok(ClaimOutcome::Claimed) => {}
        Ok(ClaimOutcome::TakenElsewhere) => return Outcome::Skipped("claimed_elsewhere"),
        Ok(ClaimOutcome::NotCompleted) => {
            let _ = store
                .close(&order.order_id, RequestStatus::NotCompleted, "no longer completed")
                .await;
            return Outcome::Skipped("not_completed");
        }
        Err(error) => {
            tracing::warn!(function = FUNCTION_NAME, order_id = %order.order_id, %error, "could not claim order");
            return Outcome::StoreError;
        }
    }

    let sent = messenger.send_review_request(&order).await;
    let (settlement, outcome) = settlement_for(&order, sent, clock.now(), halted);
    if let Err(error) = store.settle(&order.order_id, &claim, &settlement).await {
        // The claim stays in `sending`; the next run parks it for reconciliation, so
        // this order is never sent twice.
        tracing::error!(function = FUNCTION_NAME, order_id = %order.order_id, ?settlement, %error, "could not record the outcome");
        return Outcome::StoreError;
    }
    outcome
}

fn settlement_for(
    order: &DueOrder,
    sent: Result<SentMessage, SendError>,
    now: DateTime<Utc>,
    halted: &AtomicBool,
) -> (Settlement, Outcome) {
    let to = order.customer_phone.masked();
    match sent {
        Ok(message) => {
            tracing::info!(function = FUNCTION_NAME, order_id = %order.order_id, %to, message_sid = %message.sid, "review request sent");
            (
                Settlement::Sent {
                    message_sid: message.sid,
                    requested_at: now,
                },
                Outcome::Sent,
            )
        }
        Err(error) if error.may_have_been_delivered() => {
            tracing::warn!(function = FUNCTION_NAME, order_id = %order.order_id, %to, %error, "outcome unknown: parked for reconciliation");
            (
                Settlement::Unknown {
                    reason: error.to_string(),
                },
                Outcome::Unknown,
            )
        }
        Err(error) if error.is_configuration_error() => {
            tracing::error!(function = FUNCTION_NAME, order_id = %order.order_id, %error, "Twilio configuration error: stopping the run");
            halted.store(true, Ordering::Relaxed);
            (
                Settlement::Released {
                    reason: error.to_string(),
                },
                Outcome::Released,
            )
        }
        Err(error) if error.is_retryable() => {
            tracing::warn!(function = FUNCTION_NAME, order_id = %order.order_id, %to, %error, "not sent, released for the next run");
            (
                Settlement::Released {
                    reason: error.to_string(),
                },
                Outcome::Released,
            )
        }
        Err(error) => {
            let label = match error.twilio_code() {
                Some(code) => format!("twilio_{code}"),
                None => "rejected".to_string(),
            };
            tracing::warn!(function = FUNCTION_NAME, order_id = %order.order_id, %to, %error, "Twilio refused the message for good");
            (
                Settlement::Failed {
                    code: error.twilio_code(),
                    reason: error.to_string(),
                },
                Outcome::Failed(label),
            )
        }
    }
}
