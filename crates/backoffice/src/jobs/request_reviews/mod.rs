//! `request-reviews`: once a day, every order completed `REVIEW_DELAY_DAYS` ago (in the
//! shop's calendar) without a review gets one WhatsApp review request.
//!
//! Exactly once: each order is claimed with a conditional write before its message is
//! sent, so concurrent runs, a duplicate EventBridge delivery or a Lambda retry cannot
//! send twice. When the outcome of a send is unknown (Twilio may have accepted it, or the
//! run died between claim and send), the order is parked for reconciliation and never
//! resent by itself: a missing review request is cheaper than a customer messaged twice.

pub mod dynamo;
mod item;
#[cfg(any(test, feature = "fakes"))]
pub mod memory;
pub mod metrics;
pub mod store;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures::StreamExt;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;

use crate::jobs::request_reviews::store::{
    Claim, ClaimOutcome, DueOrder, RequestStatus, ReviewRequestStore, Settlement, SkipReason,
};
use crate::runtime::clock::Clock;
use crate::runtime::config::{ConfigError, EnvSource, parse_var, required_var};
use crate::runtime::job::{Deadline, JobError, begin_run, finish_run, read_payload};
use crate::runtime::trigger::{JobPayload, PayloadError, TriggerSource};
use crate::store::StoreError;
use crate::store::shard::all_shards;
use crate::twilio::{RetryPolicy, SendError, SentMessage, TwilioClient};

pub const JOB_NAME: &str = "request-reviews";

#[derive(Debug, Clone, PartialEq)]
pub struct ReviewJobConfig {
    pub orders_table: String,
    pub reviews_table: String,
    pub shop_timezone: TimeZone,
    pub delay_days: u32,
    pub max_age_days: u32,
    pub page_size: i32,
    /// Orders in progress at once (the Twilio rate limit paces the sends).
    pub concurrency: usize,
    pub stop_margin: Duration,
    /// A claim older than this belongs to a run that died: it is parked for reconciliation.
    pub stale_claim_after: Duration,
}

impl ReviewJobConfig {
    /// `ORDERS_TABLE`, `REVIEWS_TABLE` (required), `SHOP_TIMEZONE` (Europe/Paris),
    /// `REVIEW_DELAY_DAYS` (7), `REVIEW_MAX_AGE_DAYS` (30), `REVIEW_PAGE_SIZE` (200),
    /// `REVIEW_CONCURRENCY` (40), `STOP_MARGIN_MS` (60000), `STALE_CLAIM_MINUTES` (20).
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        let timezone_name = env.var("SHOP_TIMEZONE").unwrap_or_else(|| "Europe/Paris".into());
        let shop_timezone = jiff::tz::db().get(&timezone_name).map_err(|_| ConfigError::Invalid {
            name: "SHOP_TIMEZONE",
            value: timezone_name.clone(),
            reason: "not an IANA time zone name such as Europe/Paris".into(),
        })?;
        let config = Self {
            orders_table: required_var(env, "ORDERS_TABLE")?,
            reviews_table: required_var(env, "REVIEWS_TABLE")?,
            shop_timezone,
            delay_days: parse_var(env, "REVIEW_DELAY_DAYS")?.unwrap_or(7),
            max_age_days: parse_var(env, "REVIEW_MAX_AGE_DAYS")?.unwrap_or(30),
            page_size: parse_var(env, "REVIEW_PAGE_SIZE")?.unwrap_or(200),
            concurrency: parse_var(env, "REVIEW_CONCURRENCY")?.unwrap_or(40),
            stop_margin: parse_var(env, "STOP_MARGIN_MS")?
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_secs(60)),
            stale_claim_after: parse_var(env, "STALE_CLAIM_MINUTES")?
                .map(|minutes: u64| Duration::from_secs(minutes * 60))
                .unwrap_or(Duration::from_secs(20 * 60)),
        };
        let invalid = |name, value: String, reason: &str| ConfigError::Invalid {
            name,
            value,
            reason: reason.into(),
        };
        if config.max_age_days < config.delay_days {
            return Err(invalid(
                "REVIEW_MAX_AGE_DAYS",
                config.max_age_days.to_string(),
                "must be at least REVIEW_DELAY_DAYS",
            ));
        }
        if !(1..=1000).contains(&config.page_size) {
            return Err(invalid(
                "REVIEW_PAGE_SIZE",
                config.page_size.to_string(),
                "must be between 1 and 1000",
            ));
        }
        if config.concurrency == 0 {
            return Err(invalid("REVIEW_CONCURRENCY", "0".into(), "must be at least 1"));
        }
        Ok(config)
    }
}

/// Which completion times are due at a given moment, in the shop's calendar: an order
/// completed on local day D is due from the run of day D + delay, whatever the time of
/// day and however long that day was (DST), and too old after day D + max age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReviewWindow {
    /// Orders completed strictly before this are due.
    pub due_before: DateTime<Utc>,
    /// Orders completed strictly before this are too old to ask.
    pub too_old_before: DateTime<Utc>,
}

pub fn review_window(
    now: DateTime<Utc>,
    zone: &TimeZone,
    delay_days: u32,
    max_age_days: u32,
) -> Result<ReviewWindow, jiff::Error> {
    let today = Timestamp::new(now.timestamp(), 0)?
        .to_zoned_datetime(zone.clone())
        .date();
    let first_not_due_day = today.checked_add((1 - i64::from(delay_days)).days())?;
    let first_day_in_range = today.checked_sub(i64::from(max_age_days).days())?;
    Ok(ReviewWindow {
        due_before: start_of_local_day(first_not_due_day, zone)?,
        too_old_before: start_of_local_day(first_day_in_range, zone)?,
    })
}

/// The first instant of a local day. Midnight falls in a DST gap in some zones (Santiago,
/// Havana); the day then starts at the first instant that exists.
fn start_of_local_day(day: Date, zone: &TimeZone) -> Result<DateTime<Utc>, jiff::Error> {
    let start = day.to_zoned_datetime(zone.clone())?.start_of_day()?.timestamp();
    // jiff's range (years -9999 to 9999) lies inside chrono's: the fallback is never taken.
    Ok(DateTime::from_timestamp(start.as_second(), 0).unwrap_or(DateTime::<Utc>::MIN_UTC))
}

/// Sends one review request. Twilio in production; a fake in unit tests.
pub trait ReviewMessenger: Send + Sync {
    fn send_review_request(&self, order: &DueOrder) -> impl Future<Output = Result<SentMessage, SendError>> + Send;
}

/// Template variables of the review request: `{{1}}` the customer's first name (or
/// "client"), `{{2}}` the order id.
pub fn review_variables(order: &DueOrder) -> BTreeMap<String, String> {
    let name = order
        .customer_name
        .as_deref()
        .and_then(|n| n.split_whitespace().next())
        .unwrap_or("client");
    BTreeMap::from([
        ("1".to_string(), name.to_string()),
        ("2".to_string(), order.order_id.clone()),
    ])
}

impl ReviewMessenger for TwilioClient {
    async fn send_review_request(&self, order: &DueOrder) -> Result<SentMessage, SendError> {
        let variables = review_variables(order);
        let content = self.review_content(variables.clone(), || {
            format!(
                "Hello {}, thank you for your order {}! How would you rate it from 1 to 5? \
                 Reply with a number, and a comment if you like.",
                variables["1"], variables["2"]
            )
        });
        self.send_with_retry(&order.customer_phone, &content, &RetryPolicy::default())
            .await
    }
}

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

#[derive(Debug, thiserror::Error)]
#[error("review run aborted: {cause}")]
pub struct ReviewRunAborted {
    pub report: ReviewReport,
    pub cause: StoreError,
}

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
    let walk = PageWalk {
        shards: all_shards().collect(),
        shard: None,
        cursor: None,
        failed: false,
    };
    let entries = futures::stream::unfold(walk, |mut walk| {
        let (halted, stopped_early, items_read) = (&halted, &stopped_early, &items_read);
        async move {
            if walk.failed {
                return None;
            }
            if deadline.reached() || halted.load(Ordering::Relaxed) {
                stopped_early.store(true, Ordering::Relaxed);
                return None;
            }
            let shard = match walk.shard.take() {
                Some(shard) => shard,
                None => walk.shards.pop_front()?,
            };
            let page = store
                .pending_page(&shard, due_before(options), walk.cursor.take(), options.page_size)
                .await;
            let entries = match page {
                Ok(page) => {
                    items_read.fetch_add(page.items_read, Ordering::Relaxed);
                    if let Some(next) = page.next {
                        walk.shard = Some(shard);
                        walk.cursor = Some(next);
                    }
                    page.entries.into_iter().map(Ok).collect()
                }
                Err(cause) => {
                    walk.failed = true;
                    vec![Err(cause)]
                }
            };
            Some((futures::stream::iter(entries), walk))
        }
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

/// Where the walk over the pending index stands: shards still to read, the shard being
/// paged and its cursor.
struct PageWalk<Cursor> {
    shards: std::collections::VecDeque<String>,
    shard: Option<String>,
    cursor: Option<Cursor>,
    failed: bool,
}

fn due_before(options: &ReviewOptions) -> i64 {
    options.window.due_before.timestamp()
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
                job = JOB_NAME,
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
    entry: Result<DueOrder, crate::jobs::request_reviews::store::SkippedOrder>,
) -> Outcome {
    if deadline.reached() || halted.load(Ordering::Relaxed) {
        return Outcome::NotStarted;
    }
    let order = match entry {
        Ok(order) => order,
        Err(skipped) => {
            tracing::warn!(job = JOB_NAME, order_id = %skipped.order_id, reason = %skipped.reason, "skipping order");
            if !options.dry_run
                && let Err(error) = store
                    .close(
                        &skipped.order_id,
                        close_reason(&skipped.reason),
                        &skipped.reason.to_string(),
                    )
                    .await
            {
                tracing::warn!(job = JOB_NAME, order_id = %skipped.order_id, %error, "could not close skipped order");
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
            tracing::warn!(job = JOB_NAME, order_id = %order.order_id, %error, "could not close expired request");
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
                tracing::warn!(job = JOB_NAME, order_id = %order.order_id, %error, "could not close reviewed order");
                return Outcome::StoreError;
            }
            return Outcome::Skipped("has_review");
        }
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(job = JOB_NAME, order_id = %order.order_id, %error, "could not check for a review");
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
            tracing::warn!(job = JOB_NAME, order_id = %order.order_id, %error, "could not claim order");
            return Outcome::StoreError;
        }
    }

    let sent = messenger.send_review_request(&order).await;
    let (settlement, outcome) = settlement_for(&order, sent, clock.now(), halted);
    if let Err(error) = store.settle(&order.order_id, &claim, &settlement).await {
        // The claim stays in `sending`; the next run parks it for reconciliation, so
        // this order is never sent twice.
        tracing::error!(job = JOB_NAME, order_id = %order.order_id, ?settlement, %error, "could not record the outcome");
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
            tracing::info!(job = JOB_NAME, order_id = %order.order_id, %to, message_sid = %message.sid, "review request sent");
            (
                Settlement::Sent {
                    message_sid: message.sid,
                    requested_at: now,
                },
                Outcome::Sent,
            )
        }
        Err(error) if error.may_have_been_delivered() => {
            tracing::warn!(job = JOB_NAME, order_id = %order.order_id, %to, %error, "outcome unknown: parked for reconciliation");
            (
                Settlement::Unknown {
                    reason: error.to_string(),
                },
                Outcome::Unknown,
            )
        }
        Err(error) if error.is_configuration_error() => {
            tracing::error!(job = JOB_NAME, order_id = %order.order_id, %error, "Twilio configuration error: stopping the run");
            halted.store(true, Ordering::Relaxed);
            (
                Settlement::Released {
                    reason: error.to_string(),
                },
                Outcome::Released,
            )
        }
        Err(error) if error.is_retryable() => {
            tracing::warn!(job = JOB_NAME, order_id = %order.order_id, %to, %error, "not sent, released for the next run");
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
            tracing::warn!(job = JOB_NAME, order_id = %order.order_id, %to, %error, "Twilio refused the message for good");
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

/// The function's answer: the contract's fields first, then the details.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewResponse {
    pub success: bool,
    pub sent: u64,
    pub failed: u64,
    pub total: u64,
    pub timestamp: String,
    pub dry_run: bool,
    pub trigger: TriggerSource,
    pub due_before: String,
    pub duration_ms: u64,
    #[serde(flatten)]
    pub report: ReviewReport,
}

/// What `main.rs` builds once per cold start.
pub struct ReviewDeps<S, M> {
    pub store: S,
    pub messenger: M,
    pub clock: Arc<dyn Clock>,
    pub config: ReviewJobConfig,
}

/// The Lambda handler.
pub async fn handle<S: ReviewRequestStore, M: ReviewMessenger>(
    deps: &ReviewDeps<S, M>,
    event: LambdaEvent<JobPayload>,
) -> Result<ReviewResponse, JobError> {
    let deadline = Deadline::from_context(&event.context, deps.config.stop_margin);
    let payload = read_payload(JOB_NAME, &event.payload)?;
    run(deps, &payload, deadline, &event.context.request_id).await
}

/// One run, for the handler and for local tools. `run_id` tags this run's claims.
pub async fn run<S: ReviewRequestStore, M: ReviewMessenger>(
    deps: &ReviewDeps<S, M>,
    payload: &Value,
    deadline: Deadline,
    run_id: &str,
) -> Result<ReviewResponse, JobError> {
    let started = Instant::now();
    let (request, as_of) = begin_run(JOB_NAME, payload, &deps.clock)?;
    let config = &deps.config;
    let window_at = |now: DateTime<Utc>| {
        review_window(now, &config.shop_timezone, config.delay_days, config.max_age_days).map_err(|error| {
            JobError::from(PayloadError::NowOutOfCalendar {
                now,
                reason: error.to_string(),
            })
        })
    };
    // Due as of the run's `now`; too old by the later of that and the real clock, so a
    // backfill never reaches an order that today's run would no longer ask.
    let mut window = window_at(as_of.now())?;
    window.too_old_before = window.too_old_before.max(window_at(deps.clock.now())?.too_old_before);
    let options = ReviewOptions {
        window,
        page_size: config.page_size,
        concurrency: config.concurrency,
        dry_run: request.dry_run,
        claim_id: run_id.to_owned(),
        stale_claim_after: config.stale_claim_after,
    };
    // Claims, send times and the stale-claim cutoff use the real clock: a run as of a past
    // `now` beside a scheduled run leaves claims that look as fresh as they are.
    let outcome = request_reviews(&deps.store, &deps.messenger, deps.clock.as_ref(), deadline, &options).await;
    let (report, abort) = match outcome {
        Ok(report) => (report, None),
        Err(ReviewRunAborted { report, cause }) => (report, Some(cause)),
    };
    let response = ReviewResponse {
        success: abort.is_none() && report.store_errors == 0,
        sent: report.sent,
        failed: report.failed,
        total: report.total(),
        timestamp: deps.clock.now().to_rfc3339_opts(SecondsFormat::Secs, true),
        dry_run: request.dry_run,
        trigger: request.source,
        due_before: window.due_before.to_rfc3339_opts(SecondsFormat::Secs, true),
        duration_ms: started.elapsed().as_millis() as u64,
        report,
    };
    log_summary(&response, abort.as_ref());
    crate::runtime::metrics::emit(&metrics::metrics(&response));
    let store_errors = response.report.store_errors;
    finish_run(response, abort, store_errors)
}

fn log_summary(response: &ReviewResponse, abort: Option<&StoreError>) {
    let report = &response.report;
    tracing::info!(
        job = JOB_NAME,
        success = response.success,
        trigger = ?response.trigger,
        dry_run = response.dry_run,
        due_before = %response.due_before,
        sent = report.sent,
        failed = report.failed,
        failed_reasons = serde_json::to_string(&report.failed_reasons).unwrap_or_default(),
        released = report.released,
        unknown = report.unknown,
        skipped = serde_json::to_string(&report.skipped).unwrap_or_default(),
        would_send = report.would_send,
        total = response.total,
        stale_claims_parked = report.stale_claims_parked,
        awaiting_reconciliation = report.awaiting_reconciliation,
        store_errors = report.store_errors,
        items_read = report.items_read,
        more = report.more,
        duration_ms = response.duration_ms,
        error = abort.map(|e| e.to_string()),
        "run summary"
    );
}

#[cfg(test)]
mod tests;
