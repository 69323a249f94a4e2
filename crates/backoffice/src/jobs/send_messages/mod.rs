//! `send-messages`: every minute, every message of the Messages table whose time has come
//! (order confirmation, payment and pickup reminders, ready for pickup, satisfaction
//! check, review reminder, abandoned cart) goes out through the one message engine
//! ([`crate::messages::engine`]): claimed together with a check that its order or cart
//! still qualifies, sent once, settled, or parked for reconciliation when unsure.

mod config;
mod metrics;

use std::sync::Arc;
use std::time::Instant;

use chrono::SecondsFormat;
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;

use crate::messages::engine::{DispatchOptions, DispatchReport, Messenger, Outbox, dispatch};
use crate::runtime::clock::Clock;
use crate::runtime::job::{Deadline, JobError, begin_run, end_run, read_payload, report_of};
use crate::runtime::trigger::{JobPayload, TriggerSource};
use crate::store::StoreError;

pub use config::{OutboxTablesConfig, SendMessagesConfig};

pub const FUNCTION_NAME: &str = "send-messages";

/// The function's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessagesResponse {
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
    pub report: DispatchReport,
}

/// What `main.rs` builds once per cold start.
pub struct SendMessagesDeps<O, M> {
    pub outbox: O,
    pub messenger: M,
    pub clock: Arc<dyn Clock>,
    pub config: SendMessagesConfig,
}

pub async fn handle<O: Outbox, M: Messenger>(
    deps: &SendMessagesDeps<O, M>,
    event: LambdaEvent<JobPayload>,
) -> Result<SendMessagesResponse, JobError> {
    let deadline = Deadline::from_context(&event.context, deps.config.stop_margin);
    let payload = read_payload(FUNCTION_NAME, &event.payload)?;
    run(deps, &payload, deadline, &event.context.request_id).await
}

/// One run, for the handler and for local tools. `run_id` tags this run's claims.
pub async fn run<O: Outbox, M: Messenger>(
    deps: &SendMessagesDeps<O, M>,
    payload: &Value,
    deadline: Deadline,
    run_id: &str,
) -> Result<SendMessagesResponse, JobError> {
    let started = Instant::now();
    let (request, as_of) = begin_run(FUNCTION_NAME, payload, &deps.clock)?;
    let config = &deps.config;
    // Due as of the run's `now` (a manual catch-up may look ahead); claims, send times and
    // the too-late check use the real clock.
    let due_before = as_of.now();
    let options = DispatchOptions {
        due_before,
        too_old_before: None,
        page_size: config.page_size,
        concurrency: config.concurrency,
        dry_run: request.dry_run,
        claim_id: run_id.to_owned(),
        stale_claim_after: config.stale_claim_after,
        function: FUNCTION_NAME,
    };
    let outcome = dispatch(&deps.outbox, &deps.messenger, deps.clock.as_ref(), deadline, &options).await;
    let (report, abort) = report_of(outcome);
    let response = SendMessagesResponse {
        success: abort.is_none() && report.store_errors == 0,
        sent: report.sent,
        failed: report.failed,
        total: report.total(),
        timestamp: deps.clock.now().to_rfc3339_opts(SecondsFormat::Secs, true),
        dry_run: request.dry_run,
        trigger: request.source,
        due_before: due_before.to_rfc3339_opts(SecondsFormat::Secs, true),
        duration_ms: started.elapsed().as_millis() as u64,
        report,
    };
    let store_errors = response.report.store_errors;
    end_run(response, abort, store_errors, log_summary, metrics::metrics)
}

fn log_summary(response: &SendMessagesResponse, abort: Option<&StoreError>) {
    let report = &response.report;
    tracing::info!(
        function = FUNCTION_NAME,
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
        by_kind = serde_json::to_string(&report.by_kind).unwrap_or_default(),
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
