//! Per-run metrics in CloudWatch Embedded Metric Format (EMF).
//!
//! At the end of each run, the job writes one JSON object per line to stdout. Each has an
//! `_aws` key that tells CloudWatch Logs which fields are metrics. CloudWatch extracts them
//! from the function's log group: there is no `PutMetricData` call, no extra permission and
//! no added latency. The format is
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>.
//!
//! The lines are written with `println!`, not through `tracing`: the tracing subscriber
//! would wrap them in its own JSON object (`{"level":…,"fields":{…}}`), and CloudWatch
//! only extracts metrics from a log event whose top-level object has `_aws`. The functions
//! run on a custom runtime (`provided.al2023`), where Lambda passes stdout lines through
//! unchanged in both log formats (JSON and Text).
//!
//! Namespace [`NAMESPACE`], dimension `Function` (the job name), plus one document per
//! failure reason with the dimensions `Function` and `Reason`. Dry runs emit nothing: they
//! change nothing, and their counts stay in the run summary log line. Outside Lambda
//! (no `AWS_LAMBDA_FUNCTION_NAME`: the demo, the tests) nothing is written either: no
//! CloudWatch reads those lines. `cargo lambda watch` sets the variable, so local runs
//! through it show them.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::json;

use crate::review_requests::{self, ReviewResponse};
use crate::sweeper::{self, SweepResponse};

/// The CloudWatch namespace of every metric the jobs emit.
pub const NAMESPACE: &str = "ShopBackOffice";

/// A CloudWatch unit, as EMF spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: Unit,
    pub value: u64,
}

impl Metric {
    fn count(name: &'static str, value: u64) -> Self {
        Self {
            name,
            unit: Unit::Count,
            value,
        }
    }
}

/// One EMF object: its metrics share one dimension set (the dimension names, in order,
/// with their values).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDocument {
    pub dimensions: Vec<(&'static str, String)>,
    pub metrics: Vec<Metric>,
}

/// A document as one EMF object: `_aws` first, then the dimensions' values, then the
/// metrics' values, in the document's order.
struct Emf<'a> {
    document: &'a MetricDocument,
    timestamp_ms: u64,
}

impl Serialize for Emf<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let document = self.document;
        let dimension_names: Vec<&str> = document.dimensions.iter().map(|(name, _)| *name).collect();
        let definitions: Vec<serde_json::Value> = document
            .metrics
            .iter()
            .map(|metric| json!({"Name": metric.name, "Unit": metric.unit.as_str()}))
            .collect();
        let aws = json!({
            "Timestamp": self.timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimension_names],
                "Metrics": definitions,
            }],
        });
        let mut map = serializer.serialize_map(Some(1 + document.dimensions.len() + document.metrics.len()))?;
        map.serialize_entry("_aws", &aws)?;
        for (name, value) in &document.dimensions {
            map.serialize_entry(name, value)?;
        }
        for metric in &document.metrics {
            map.serialize_entry(metric.name, &metric.value)?;
        }
        map.end()
    }
}

fn function_dimension(job: &str) -> Vec<(&'static str, String)> {
    vec![("Function", job.to_owned())]
}

/// `clean-expired-carts`: what one run did. Empty for a dry run.
pub fn sweep_metrics(response: &SweepResponse) -> Vec<MetricDocument> {
    if response.dry_run {
        return Vec::new();
    }
    let report = &response.report;
    vec![MetricDocument {
        dimensions: function_dimension(sweeper::JOB_NAME),
        metrics: vec![
            Metric::count("CartsDeleted", report.deleted),
            Metric::count("CartsAlreadyGone", report.already_gone),
            Metric::count("CartsMalformed", report.malformed),
            Metric::count("DeleteFailures", report.failed),
            Metric::count("SweepItemsRead", report.items_read),
            Metric::count("RunLeftWork", u64::from(report.more)),
            Metric {
                name: "RunDuration",
                unit: Unit::Milliseconds,
                value: response.duration_ms,
            },
        ],
    }]
}

/// `request-reviews`: what one run did, then one document per failure reason (dimensions
/// `Function` and `Reason`). Empty for a dry run.
pub fn review_metrics(response: &ReviewResponse) -> Vec<MetricDocument> {
    if response.dry_run {
        return Vec::new();
    }
    let report = &response.report;
    let mut documents = vec![MetricDocument {
        dimensions: function_dimension(review_requests::JOB_NAME),
        metrics: vec![
            Metric::count("ReviewRequestsSent", report.sent),
            Metric::count("ReviewRequestsFailed", report.failed),
            Metric::count("ReviewRequestsReleased", report.released),
            Metric::count("ReviewRequestsUnknown", report.unknown),
            Metric::count("ReviewRequestsSkipped", report.skipped.values().sum()),
            Metric::count("ReviewsAwaitingReconciliation", report.awaiting_reconciliation),
            Metric::count("RunLeftWork", u64::from(report.more)),
            Metric {
                name: "RunDuration",
                unit: Unit::Milliseconds,
                value: response.duration_ms,
            },
        ],
    }];
    documents.extend(report.failed_reasons.iter().map(|(reason, count)| {
        let mut dimensions = function_dimension(review_requests::JOB_NAME);
        dimensions.push(("Reason", reason.clone()));
        MetricDocument {
            dimensions,
            metrics: vec![Metric::count("ReviewRequestsFailed", *count)],
        }
    }));
    documents
}

/// Writes each document as one EMF line to `out`.
pub fn emit_to(out: &mut impl Write, documents: &[MetricDocument], timestamp_ms: u64) -> io::Result<()> {
    for document in documents {
        serde_json::to_writer(&mut *out, &Emf { document, timestamp_ms })?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Writes the documents to stdout when running in Lambda, stamped with the wall clock
/// (not a manual run's `now`: CloudWatch refuses metrics more than two weeks old). An
/// error is logged, never returned: metrics must not fail a run.
pub fn emit(documents: &[MetricDocument]) {
    if documents.is_empty() || std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_none() {
        return;
    }
    let timestamp_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default();
    let mut lines = Vec::new();
    if let Err(error) = emit_to(&mut lines, documents, timestamp_ms) {
        tracing::warn!(%error, "could not encode the run's metrics");
        return;
    }
    // One `print!` of the whole buffer: the lines reach stdout together, and each ends
    // with its newline, so no tracing output can land inside one of them.
    print!("{}", String::from_utf8_lossy(&lines));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::*;
    use crate::review_requests::ReviewReport;
    use crate::sweeper::SweepReport;
    use crate::trigger::TriggerSource;

    const TS: u64 = 1_795_000_000_123;

    fn sweep_response(dry_run: bool) -> SweepResponse {
        SweepResponse {
            success: false,
            deleted_count: 12,
            timestamp: "2026-11-24T10:00:00Z".into(),
            dry_run,
            trigger: TriggerSource::Scheduler,
            duration_ms: 4321,
            report: SweepReport {
                deleted: 12,
                would_delete: 0,
                already_gone: 3,
                not_expired: 1,
                malformed: 2,
                malformed_reasons: BTreeMap::from([("expiry_implausible", 2)]),
                failed: 1,
                items_read: 19,
                more: true,
            },
        }
    }

    fn review_response(dry_run: bool) -> ReviewResponse {
        let report = ReviewReport {
            sent: 7,
            failed: 3,
            failed_reasons: BTreeMap::from([("twilio_63016".to_string(), 2), ("rejected".to_string(), 1)]),
            released: 4,
            unknown: 1,
            skipped: BTreeMap::from([("too_old", 2), ("has_review", 5)]),
            would_send: 0,
            stale_claims_parked: 1,
            awaiting_reconciliation: 2,
            store_errors: 0,
            items_read: 25,
            more: false,
        };
        ReviewResponse {
            success: true,
            sent: report.sent,
            failed: report.failed,
            total: report.total(),
            timestamp: "2026-11-24T09:00:00Z".into(),
            dry_run,
            trigger: TriggerSource::Scheduler,
            due_before: "2026-11-17T09:00:00Z".into(),
            duration_ms: 987,
            report,
        }
    }

    /// The lines written, each parsed back from JSON.
    fn emitted(documents: &[MetricDocument]) -> Vec<Value> {
        let mut out = Vec::new();
        emit_to(&mut out, documents, TS).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'));
        // `_aws` comes first, as in the EMF specification's examples.
        assert!(text.lines().all(|line| line.starts_with(r#"{"_aws":{"#)), "{text}");
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    /// (name, unit) of each metric a line declares, and checks the declaration's shape.
    fn declared(line: &Value, dimensions: &[&str]) -> Vec<(String, String)> {
        let aws = &line["_aws"];
        assert_eq!(aws["Timestamp"], TS);
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        assert_eq!(directives[0]["Namespace"], "ShopBackOffice");
        assert_eq!(directives[0]["Dimensions"], json!([dimensions]));
        directives[0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["Name"].as_str().unwrap().to_owned(),
                    m["Unit"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn a_sweep_emits_one_line_with_every_metric_and_its_value() {
        let lines = emitted(&sweep_metrics(&sweep_response(false)));
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        let expected = [
            ("CartsDeleted", "Count", 12),
            ("CartsAlreadyGone", "Count", 3),
            ("CartsMalformed", "Count", 2),
            ("DeleteFailures", "Count", 1),
            ("SweepItemsRead", "Count", 19),
            ("RunLeftWork", "Count", 1),
            ("RunDuration", "Milliseconds", 4321),
        ];
        let names: Vec<(String, String)> = expected
            .iter()
            .map(|(n, u, _)| (n.to_string(), u.to_string()))
            .collect();
        assert_eq!(declared(line, &["Function"]), names);
        assert_eq!(line["Function"], "clean-expired-carts");
        for (name, _, value) in expected {
            assert_eq!(line[name], value, "{name}");
        }
        // Only the envelope, the dimension and the metrics: nothing else is logged.
        assert_eq!(line.as_object().unwrap().len(), 2 + expected.len());
    }

    #[test]
    fn run_left_work_is_zero_when_the_run_finished() {
        let mut response = sweep_response(false);
        response.report.more = false;
        let lines = emitted(&sweep_metrics(&response));
        assert_eq!(lines[0]["RunLeftWork"], 0);
    }

    #[test]
    fn a_review_run_emits_its_totals_then_one_line_per_failure_reason() {
        let lines = emitted(&review_metrics(&review_response(false)));
        assert_eq!(lines.len(), 3);
        let totals = &lines[0];
        let expected = [
            ("ReviewRequestsSent", "Count", 7),
            ("ReviewRequestsFailed", "Count", 3),
            ("ReviewRequestsReleased", "Count", 4),
            ("ReviewRequestsUnknown", "Count", 1),
            ("ReviewRequestsSkipped", "Count", 7),
            ("ReviewsAwaitingReconciliation", "Count", 2),
            ("RunLeftWork", "Count", 0),
            ("RunDuration", "Milliseconds", 987),
        ];
        let names: Vec<(String, String)> = expected
            .iter()
            .map(|(n, u, _)| (n.to_string(), u.to_string()))
            .collect();
        assert_eq!(declared(totals, &["Function"]), names);
        assert_eq!(totals["Function"], "request-reviews");
        for (name, _, value) in expected {
            assert_eq!(totals[name], value, "{name}");
        }

        // BTreeMap order: "rejected" before "twilio_63016".
        for (line, reason, count) in [(&lines[1], "rejected", 1), (&lines[2], "twilio_63016", 2)] {
            assert_eq!(
                declared(line, &["Function", "Reason"]),
                vec![("ReviewRequestsFailed".to_string(), "Count".to_string())]
            );
            assert_eq!(line["Function"], "request-reviews");
            assert_eq!(line["Reason"], reason);
            assert_eq!(line["ReviewRequestsFailed"], count);
        }
    }

    #[test]
    fn a_review_run_without_failures_emits_only_its_totals() {
        let mut response = review_response(false);
        response.report.failed = 0;
        response.report.failed_reasons.clear();
        let lines = emitted(&review_metrics(&response));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["ReviewRequestsFailed"], 0);
    }

    #[test]
    fn dry_runs_emit_nothing() {
        assert!(sweep_metrics(&sweep_response(true)).is_empty());
        assert!(review_metrics(&review_response(true)).is_empty());
        assert!(emitted(&[]).is_empty());
    }
}
