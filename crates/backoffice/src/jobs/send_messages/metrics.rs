//! The metrics of one `send-messages` run: the run's totals, then one document per kind
//! (dimensions `Function`, `Kind`) and one per kind and skip reason (`Function`, `Kind`,
//! `Reason`), so the dashboard shows each kind's sent, failed, unknown and skipped. Due
//! entries of a kind this version does not know are skipped under `Kind=unknown`.

use super::{FUNCTION_NAME, SendMessagesResponse};
use crate::messages::engine::UNKNOWN_KIND;
use crate::runtime::metrics::{Metric, MetricDocument, Unit, function_dimension};

pub fn metrics(response: &SendMessagesResponse) -> Vec<MetricDocument> {
    if response.dry_run {
        return Vec::new();
    }
    let report = &response.report;
    let mut documents = vec![MetricDocument {
        dimensions: function_dimension(FUNCTION_NAME),
        metrics: vec![
            Metric::count("MessagesSent", report.sent),
            Metric::count("MessagesFailed", report.failed),
            Metric::count("MessagesReleased", report.released),
            Metric::count("MessagesUnknown", report.unknown),
            Metric::count("MessagesSkipped", report.skipped.values().sum()),
            Metric::count("MessagesHeld", report.held),
            Metric::count("MessagesAwaitingReconciliation", report.awaiting_reconciliation),
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
    for (kind, counts) in &report.by_kind {
        let mut dimensions = function_dimension(FUNCTION_NAME);
        dimensions.push(("Kind", kind.as_str().to_owned()));
        documents.push(MetricDocument {
            dimensions: dimensions.clone(),
            metrics: vec![
                Metric::count("MessagesSent", counts.sent),
                Metric::count("MessagesFailed", counts.failed),
                Metric::count("MessagesUnknown", counts.unknown),
                Metric::count("MessagesSkipped", counts.skipped.values().sum()),
                Metric::count("MessagesHeld", counts.held),
            ],
        });
        for (reason, count) in &counts.skipped {
            let mut dimensions = dimensions.clone();
            dimensions.push(("Reason", (*reason).to_owned()));
            documents.push(MetricDocument {
                dimensions,
                metrics: vec![Metric::count("MessagesSkipped", *count)],
            });
        }
    }
    if let Some(count) = report.skipped.get(UNKNOWN_KIND) {
        let mut dimensions = function_dimension(FUNCTION_NAME);
        dimensions.push(("Kind", "unknown".to_owned()));
        dimensions.push(("Reason", UNKNOWN_KIND.to_owned()));
        documents.push(MetricDocument {
            dimensions,
            metrics: vec![Metric::count("MessagesSkipped", *count)],
        });
    }
    documents
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::messages::engine::DispatchReport;
    use crate::runtime::trigger::TriggerSource;

    #[test]
    fn entries_of_an_unknown_kind_are_a_skip_reason_of_their_own() {
        let report = DispatchReport {
            skipped: BTreeMap::from([(UNKNOWN_KIND, 2)]),
            ..DispatchReport::default()
        };
        let response = SendMessagesResponse {
            success: true,
            sent: 0,
            failed: 0,
            total: report.total(),
            timestamp: "2026-12-03T10:00:00Z".into(),
            dry_run: false,
            trigger: TriggerSource::Scheduler,
            due_before: "2026-12-03T10:00:00Z".into(),
            duration_ms: 5,
            report,
            function: FUNCTION_NAME,
        };
        let documents = metrics(&response);
        let unknown = documents
            .iter()
            .find(|document| {
                document
                    .dimensions
                    .iter()
                    .any(|(name, value)| *name == "Reason" && value == UNKNOWN_KIND)
            })
            .expect("a document for the reason");
        assert!(unknown.dimensions.contains(&("Kind", "unknown".to_owned())));
        assert_eq!(unknown.metrics[0].value, 2);
    }
}
