//! `clean-expired-carts`: deletes the carts whose `expiresAt` has passed and that DynamoDB
//! TTL has not removed yet (TTL can take days, and expired items still show in reads).

mod config;
pub mod dynamo;
mod item;
#[cfg(any(test, feature = "fakes"))]
pub mod memory;
pub mod metrics;
pub mod store;
mod sweep;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;
use store::CartStore;

use crate::runtime::clock::Clock;
use crate::runtime::job::{Deadline, JobError, begin_run, end_run, read_payload, report_of};
use crate::runtime::trigger::{JobPayload, TriggerSource};
use crate::store::StoreError;

pub use config::SweeperConfig;
pub use sweep::{SweepAborted, SweepOptions, SweepReport, sweep};

pub const FUNCTION_NAME: &str = "clean-expired-carts";

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
        function = FUNCTION_NAME,
        time_left_ms = crate::runtime::job::time_left(&event.context).as_millis() as u64,
        "invoked"
    );
    run(deps, &read_payload(FUNCTION_NAME, &event.payload)?, deadline).await
}

/// One run, for the handler and for local tools.
pub async fn run<S: CartStore>(
    deps: &SweeperDeps<S>,
    payload: &Value,
    deadline: Deadline,
) -> Result<SweepResponse, JobError> {
    let started = Instant::now();
    let (request, as_of) = begin_run(FUNCTION_NAME, payload, &deps.clock)?;
    let options = SweepOptions {
        page_size: deps.config.page_size,
        concurrency: deps.config.concurrency,
        batch_size: deps.config.batch_size,
        dry_run: request.dry_run,
    };
    // Deletes are conditional on `expiresAt <= as_of`: a past `as_of` deletes only what
    // was due then, and nothing the sweep stores carries a time.
    let outcome = sweep(&deps.store, as_of.as_ref(), deadline, &options).await;
    let (report, abort) = report_of(outcome);
    let response = SweepResponse {
        success: abort.is_none() && report.failed == 0,
        deleted_count: report.deleted,
        timestamp: deps.clock.now().to_rfc3339_opts(SecondsFormat::Secs, true),
        dry_run: request.dry_run,
        trigger: request.source,
        duration_ms: started.elapsed().as_millis() as u64,
        report,
    };
    let failed = response.report.failed;
    end_run(
        response,
        abort,
        failed,
        |response, abort| log_summary(response, request.scheduled_time, abort),
        metrics::metrics,
    )
}

/// The run's one summary line: flat fields, so Logs Insights can filter on them.
fn log_summary(response: &SweepResponse, scheduled_time: Option<DateTime<Utc>>, abort: Option<&StoreError>) {
    let report = &response.report;
    let malformed_reasons = serde_json::to_string(&report.malformed_reasons).unwrap_or_default();
    tracing::info!(
        function = FUNCTION_NAME,
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
        batches = report.batches,
        retried_alone = report.retried_alone,
        items_read = report.items_read,
        more = report.more,
        duration_ms = response.duration_ms,
        error = abort.map(|e| e.to_string()),
        "run summary"
    );
}
