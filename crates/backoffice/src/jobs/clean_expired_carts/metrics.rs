//! The metrics of one `clean-expired-carts` run.

use super::{FUNCTION_NAME, SweepResponse};
use crate::runtime::metrics::{Metric, MetricDocument, Unit, function_dimension};

/// `clean-expired-carts`: what one run did. Empty for a dry run.
pub fn metrics(response: &SweepResponse) -> Vec<MetricDocument> {
    if response.dry_run {
        return Vec::new();
    }
    let report = &response.report;
    vec![MetricDocument {
        dimensions: function_dimension(FUNCTION_NAME),
        metrics: vec![
            Metric::count("CartsDeleted", report.deleted),
            Metric::count("CartsAlreadyGone", report.already_gone),
            Metric::count("CartsMalformed", report.malformed),
            Metric::count("DeleteFailures", report.failed),
            Metric::count("DeletesRetriedAlone", report.retried_alone),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::SweepReport;
    use super::*;
    use crate::runtime::metrics::testing::{declared, emitted};
    use crate::runtime::trigger::TriggerSource;

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
                batches: 1,
                retried_alone: 2,
                items_read: 19,
                more: true,
            },
        }
    }

    #[test]
    fn a_sweep_emits_one_line_with_every_metric_and_its_value() {
        let lines = emitted(&metrics(&sweep_response(false)));
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        let expected = [
            ("CartsDeleted", "Count", 12),
            ("CartsAlreadyGone", "Count", 3),
            ("CartsMalformed", "Count", 2),
            ("DeleteFailures", "Count", 1),
            ("DeletesRetriedAlone", "Count", 2),
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
        let lines = emitted(&metrics(&response));
        assert_eq!(lines[0]["RunLeftWork"], 0);
    }

    #[test]
    fn a_dry_run_emits_nothing() {
        assert!(metrics(&sweep_response(true)).is_empty());
    }
}
