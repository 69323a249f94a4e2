//! What every function shares: the invocation deadline, and the errors that reach
//! Lambda (typed so that CloudWatch shows whether a retry can help).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lambda_runtime::{Context, Diagnostic};
use serde_json::Value;
use tokio::time::Instant;

use crate::runtime::clock::{Clock, FixedClock};
use crate::runtime::config::ConfigError;
use crate::runtime::metrics::MetricDocument;
use crate::runtime::trigger::{JobPayload, PayloadError, RunRequest};
use crate::store::StoreError;

/// When a run must stop taking new work so it can finish what is in flight, log, and
/// answer before Lambda kills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    stop_at: Instant,
}

/// Epoch milliseconds below this (2001-09-09) cannot be an absolute deadline.
const EARLIEST_ABSOLUTE_DEADLINE_MS: u64 = 1_000_000_000_000;

/// How long the invocation has left, per its context.
///
/// Lambda sends the deadline as epoch milliseconds. `cargo lambda watch` sends the
/// timeout itself (e.g. `600000`), which read as a date is in 1970 and would leave no
/// time at all; such a value is taken as relative to now.
pub fn time_left(context: &Context) -> Duration {
    if context.deadline < EARLIEST_ABSOLUTE_DEADLINE_MS {
        return Duration::from_millis(context.deadline);
    }
    context.deadline().duration_since(SystemTime::now()).unwrap_or_default()
}

impl Deadline {
    /// `margin` before the invocation's own deadline.
    pub fn from_context(context: &Context, margin: Duration) -> Self {
        Self::after(time_left(context).saturating_sub(margin))
    }

    pub fn after(duration: Duration) -> Self {
        Self {
            stop_at: Instant::now() + duration,
        }
    }

    /// No deadline in practice: tools and tests that run to completion.
    pub fn unbounded() -> Self {
        Self::after(Duration::from_secs(365 * 24 * 3600))
    }

    pub fn reached(&self) -> bool {
        Instant::now() >= self.stop_at
    }

    /// The earlier of the two.
    pub fn earliest(self, other: Deadline) -> Deadline {
        Self {
            stop_at: self.stop_at.min(other.stop_at),
        }
    }

    /// Whether something started now and lasting `work` would end before the deadline.
    pub fn leaves(&self, work: Duration) -> bool {
        Instant::now() + work < self.stop_at
    }
}

/// Reads the payload Lambda handed over as JSON the jobs can use; one that serde_json
/// cannot hold is refused by name and logged, like any other bad payload.
pub fn read_payload(function: &'static str, payload: &JobPayload) -> Result<Value, JobError> {
    payload.parse().map_err(|error| refused(function, error))
}

fn refused(function: &'static str, error: PayloadError) -> JobError {
    tracing::error!(function, %error, "refused payload");
    JobError::InvalidPayload(error)
}

/// The start of every run: reads the payload (a bad one is refused by name and logged)
/// and picks the clock that says what is due (`as_of`: a manual `now` stands in for the
/// real one). Whatever the run stores is stamped with the real clock, never `as_of`.
pub fn begin_run(
    function: &'static str,
    payload: &Value,
    clock: &Arc<dyn Clock>,
) -> Result<(RunRequest, Arc<dyn Clock>), JobError> {
    let request = RunRequest::from_payload(payload, clock.now()).map_err(|error| refused(function, error))?;
    let as_of: Arc<dyn Clock> = match request.now_override {
        // A manual `now` may run a little ahead of the real clock (a laptop's skew); a run
        // that acts never goes by a time that has not come (a cart not yet expired, a
        // message not yet due): the real clock stands in for it. A dry run previews as asked.
        Some(now) if now > clock.now() && !request.dry_run => clock.clone(),
        Some(now) => Arc::new(FixedClock(now)),
        None => clock.clone(),
    };
    Ok((request, as_of))
}

/// A run that stopped on a store error; `report` holds what it did before.
#[derive(Debug, thiserror::Error)]
#[error("run aborted: {cause}")]
pub struct Aborted<Report> {
    pub report: Report,
    pub cause: StoreError,
}

/// What a run did, and the error that stopped it, if one did.
pub fn report_of<Report>(outcome: Result<Report, Aborted<Report>>) -> (Report, Option<StoreError>) {
    match outcome {
        Ok(report) => (report, None),
        Err(Aborted { report, cause }) => (report, Some(cause)),
    }
}

/// The end of every scheduled run: its one summary line, its metrics (EMF), then its
/// answer to Lambda.
pub fn end_run<Response>(
    response: Response,
    abort: Option<StoreError>,
    failed_items: u64,
    log_summary: impl FnOnce(&Response, Option<&StoreError>),
    metrics: impl FnOnce(&Response) -> Vec<MetricDocument>,
) -> Result<Response, JobError> {
    log_summary(&response, abort.as_ref());
    crate::runtime::metrics::emit(&metrics(&response));
    finish_run(response, abort, failed_items)
}

/// How a finished run answers Lambda, once its summary is logged: an aborted run is an
/// error, and so is one where single items failed, so Lambda records it; the next run
/// retries those items.
fn finish_run<T>(response: T, abort: Option<StoreError>, failed_items: u64) -> Result<T, JobError> {
    if let Some(cause) = abort {
        return Err(cause.into());
    }
    if failed_items > 0 {
        return Err(JobError::ItemsFailed { failed: failed_items });
    }
    Ok(response)
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("refused payload: {0}")]
    InvalidPayload(#[from] PayloadError),
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The run finished but some items failed; they are picked up by the next run.
    #[error("{failed} item(s) failed after retries (see the run summary log line); the next run retries them")]
    ItemsFailed { failed: u64 },
}

impl JobError {
    pub fn retryable(&self) -> bool {
        match self {
            Self::InvalidPayload(_) | Self::Config(_) => false,
            Self::Store(error) => error.retryable,
            Self::ItemsFailed { .. } => true,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::InvalidPayload(_) => "InvalidPayload",
            Self::Config(_) => "Configuration",
            Self::Store(_) => "DynamoDb",
            Self::ItemsFailed { .. } => "ItemsFailed",
        }
    }
}

impl From<JobError> for Diagnostic {
    fn from(error: JobError) -> Self {
        let class = if error.retryable() { "Retryable" } else { "NonRetryable" };
        Diagnostic {
            error_type: format!("{class}.{}", error.kind()),
            error_message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diagnostic_says_whether_a_retry_can_help() {
        let bad_payload: Diagnostic = JobError::InvalidPayload(PayloadError::NotAnObject("an array")).into();
        assert_eq!(bad_payload.error_type, "NonRetryable.InvalidPayload");
        assert!(bad_payload.error_message.contains("JSON object"));

        let throttled: Diagnostic = JobError::Store(StoreError {
            operation: "Query",
            table: "carts".into(),
            message: "ProvisionedThroughputExceededException".into(),
            retryable: true,
        })
        .into();
        assert_eq!(throttled.error_type, "Retryable.DynamoDb");
    }

    fn context_with_deadline(deadline: u64) -> Context {
        let mut context = Context::default();
        context.deadline = deadline;
        context
    }

    #[test]
    fn reads_an_absolute_deadline_and_the_emulators_relative_one() {
        let in_a_minute = SystemTime::now() + Duration::from_secs(60);
        let epoch_ms = in_a_minute.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64;
        let left = time_left(&context_with_deadline(epoch_ms));
        assert!(
            left > Duration::from_secs(55) && left <= Duration::from_secs(60),
            "{left:?}"
        );
        assert_eq!(time_left(&context_with_deadline(600_000)), Duration::from_secs(600));
        let past = SystemTime::now() - Duration::from_secs(5);
        let past_ms = past.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64;
        assert_eq!(time_left(&context_with_deadline(past_ms)), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_is_reached_when_its_time_has_passed() {
        let deadline = Deadline::after(Duration::from_secs(2));
        assert!(!deadline.reached());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(deadline.reached());
    }
}
