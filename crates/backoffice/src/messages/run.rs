//! The end of a run of the engine, the same for every job that sends: its answer, its
//! `run summary` line, its metrics.

use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::engine::{DispatchAborted, DispatchReport};
use crate::runtime::job::{JobError, end_run, report_of};
use crate::runtime::metrics::MetricDocument;
use crate::runtime::trigger::{RunRequest, TriggerSource};
use crate::store::StoreError;

/// A sending job's answer: the contract's fields first, then the details.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchResponse {
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
    /// The job's name, for its summary line.
    #[serde(skip)]
    pub function: &'static str,
}

/// Answers a run: logs its summary, emits `metrics`, and reports a run that aborted or
/// failed on single messages as an error, so that Lambda records it.
pub fn finish_dispatch(
    function: &'static str,
    request: &RunRequest,
    outcome: Result<DispatchReport, DispatchAborted>,
    due_before: DateTime<Utc>,
    now: DateTime<Utc>,
    started: Instant,
    metrics: impl FnOnce(&DispatchResponse) -> Vec<MetricDocument>,
) -> Result<DispatchResponse, JobError> {
    let (report, abort) = report_of(outcome);
    let response = DispatchResponse {
        success: abort.is_none() && report.store_errors == 0,
        sent: report.sent,
        failed: report.failed,
        total: report.total(),
        timestamp: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        dry_run: request.dry_run,
        trigger: request.source,
        due_before: due_before.to_rfc3339_opts(SecondsFormat::Secs, true),
        duration_ms: started.elapsed().as_millis() as u64,
        report,
        function,
    };
    let store_errors = response.report.store_errors;
    end_run(response, abort, store_errors, log_summary, metrics)
}

fn log_summary(response: &DispatchResponse, abort: Option<&StoreError>) {
    let report = &response.report;
    tracing::info!(
        function = response.function,
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
