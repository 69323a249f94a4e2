//! `request-reviews`: once a day, every order completed `REVIEW_DELAY_DAYS` ago (in the
//! shop's calendar) without a review gets one WhatsApp review request.
//!
//! Exactly once: each order is claimed with a conditional write before its message is
//! sent, so concurrent runs, a duplicate EventBridge delivery or a Lambda retry cannot
//! send twice. When the outcome of a send is unknown (Twilio may have accepted it, or the
//! run died between claim and send), the order is parked for reconciliation and never
//! resent by itself: a missing review request is cheaper than a customer messaged twice.

mod config;
pub mod dynamo;
mod item;
#[cfg(any(test, feature = "fakes"))]
pub mod memory;
mod messenger;
pub mod metrics;
mod outbox;
pub mod store;
mod window;
mod writers;

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use store::ReviewRequestStore;

use crate::messages::engine::{DispatchOptions, DispatchReport, dispatch};
use crate::messages::run::{DispatchResponse, finish_dispatch};
use crate::runtime::clock::Clock;
use crate::runtime::job::{Deadline, JobError, begin_run, read_payload};
use crate::runtime::trigger::{JobPayload, PayloadError};

pub use config::ReviewJobConfig;
pub use messenger::{ReviewMessenger, review_variables};
pub use outbox::{ReviewOutbox, ReviewSender};

/// What a review run did: the engine's report.
pub type ReviewReport = DispatchReport;
pub use window::{ReviewWindow, review_window};

pub const FUNCTION_NAME: &str = "request-reviews";

/// The function's answer.
pub type ReviewResponse = DispatchResponse;

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
    let payload = read_payload(FUNCTION_NAME, &event.payload)?;
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
    let (request, as_of) = begin_run(FUNCTION_NAME, payload, &deps.clock)?;
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
    let options = DispatchOptions {
        due_before: window.due_before,
        too_old_before: Some(window.too_old_before),
        page_size: config.page_size,
        concurrency: config.concurrency,
        dry_run: request.dry_run,
        claim_id: run_id.to_owned(),
        stale_claim_after: config.stale_claim_after,
        function: FUNCTION_NAME,
        quiet: config.quiet.clone(),
    };
    // Claims, send times and the stale-claim cutoff use the real clock: a run as of a past
    // `now` beside a scheduled run leaves claims that look as fresh as they are.
    let outcome = dispatch(
        &ReviewOutbox::new(&deps.store, deps.config.caps),
        &ReviewSender(&deps.messenger),
        deps.clock.as_ref(),
        deadline,
        &options,
    )
    .await;
    finish_dispatch(
        FUNCTION_NAME,
        &request,
        outcome,
        window.due_before,
        deps.clock.now(),
        started,
        metrics::metrics,
    )
}

#[cfg(test)]
mod tests;
