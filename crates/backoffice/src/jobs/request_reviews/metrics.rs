//! The metrics of one `request-reviews` run.

use super::{FUNCTION_NAME, ReviewResponse};
use crate::runtime::metrics::{Metric, MetricDocument, Unit, function_dimension};

/// `request-reviews`: what one run did, then one document per failure reason (dimensions
/// `Function` and `Reason`). Empty for a dry run.
pub fn metrics(response: &ReviewResponse) -> Vec<MetricDocument> {
    if response.dry_run {
        return Vec::new();
    }
    let report = &response.report;
    let mut documents = vec![MetricDocument {
        dimensions: function_dimension(FUNCTION_NAME),
        metrics: vec![
            Metric::count("ReviewRequestsSent", report.sent),
            Metric::count("ReviewRequestsFailed", report.failed),
            Metric::count("ReviewRequestsReleased", report.released),
            Metric::count("ReviewRequestsUnknown", report.unknown),
            Metric::count("ReviewRequestsSkipped", report.skipped.values().sum()),
            Metric::count("ReviewsAwaitingReconciliation", report.awaiting_reconciliation),
            Metric::count("ReconciledFound", report.reconciliation.found),
            Metric::count("ReconciledRequeued", report.reconciliation.requeued),
            Metric::count("ReconcileListRequests", report.reconciliation.list_requests),
            Metric::count("RunLeftWork", u64::from(report.more)),
            Metric {
                name: "RunDuration",
                unit: Unit::Milliseconds,
                value: response.duration_ms,
            },
        ],
    }];
    // Skipped by reason (opted out, capped, has a review...): the suppressed requests.
    documents.extend(report.skipped.iter().map(|(reason, count)| {
        let mut dimensions = function_dimension(FUNCTION_NAME);
        dimensions.push(("Reason", (*reason).to_owned()));
        MetricDocument {
            dimensions,
            metrics: vec![Metric::count("ReviewRequestsSkipped", *count)],
        }
    }));
    documents.extend(report.failed_reasons.iter().map(|(reason, count)| {
        let mut dimensions = function_dimension(FUNCTION_NAME);
        dimensions.push(("Reason", reason.clone()));
        MetricDocument {
            dimensions,
            metrics: vec![Metric::count("ReviewRequestsFailed", *count)],
        }
    }));
    documents
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::ReviewReport;
    use super::*;
    use crate::runtime::metrics::testing::{declared, emitted};
    use crate::runtime::trigger::TriggerSource;

    fn review_response(dry_run: bool) -> ReviewResponse {
        let report = ReviewReport {
            sent: 7,
            failed: 3,
            failed_reasons: BTreeMap::from([("twilio_63016".to_string(), 2), ("rejected".to_string(), 1)]),
            released: 4,
            unknown: 1,
            skipped: BTreeMap::from([("too_old", 2), ("has_review", 5)]),
            would_send: 0,
            held: 0,
            stale_claims_parked: 1,
            awaiting_reconciliation: 2,
            store_errors: 0,
            items_read: 25,
            more: false,
            by_kind: BTreeMap::new(),
            reconciliation: crate::messages::reconcile::ReconcileReport {
                found: 1,
                list_requests: 3,
                ..Default::default()
            },
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
            function: FUNCTION_NAME,
        }
    }

    #[test]
    fn a_review_run_emits_its_totals_then_one_line_per_skip_and_failure_reason() {
        let lines = emitted(&metrics(&review_response(false)));
        assert_eq!(lines.len(), 5);
        let totals = &lines[0];
        let expected = [
            ("ReviewRequestsSent", "Count", 7),
            ("ReviewRequestsFailed", "Count", 3),
            ("ReviewRequestsReleased", "Count", 4),
            ("ReviewRequestsUnknown", "Count", 1),
            ("ReviewRequestsSkipped", "Count", 7),
            ("ReviewsAwaitingReconciliation", "Count", 2),
            ("ReconciledFound", "Count", 1),
            ("ReconciledRequeued", "Count", 0),
            ("ReconcileListRequests", "Count", 3),
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

        // BTreeMap order: "has_review" before "too_old", "rejected" before "twilio_63016".
        for (line, reason, count) in [(&lines[1], "has_review", 5), (&lines[2], "too_old", 2)] {
            assert_eq!(
                declared(line, &["Function", "Reason"]),
                vec![("ReviewRequestsSkipped".to_string(), "Count".to_string())]
            );
            assert_eq!(line["Reason"], reason);
            assert_eq!(line["ReviewRequestsSkipped"], count);
        }
        for (line, reason, count) in [(&lines[3], "rejected", 1), (&lines[4], "twilio_63016", 2)] {
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
    fn a_review_run_without_failures_or_skips_emits_only_its_totals() {
        let mut response = review_response(false);
        response.report.failed = 0;
        response.report.failed_reasons.clear();
        response.report.skipped.clear();
        let lines = emitted(&metrics(&response));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["ReviewRequestsFailed"], 0);
    }

    #[test]
    fn a_dry_run_emits_nothing() {
        assert!(metrics(&review_response(true)).is_empty());
    }
}
