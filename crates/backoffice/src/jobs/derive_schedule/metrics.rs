//! The metrics of one `derive-schedule` batch.

use super::{BatchReport, FUNCTION_NAME};
use crate::runtime::metrics::{Metric, MetricDocument, function_dimension};

pub fn metrics(report: &BatchReport) -> Vec<MetricDocument> {
    vec![MetricDocument {
        dimensions: function_dimension(FUNCTION_NAME),
        metrics: vec![
            Metric::count("RecordsDerived", report.derived),
            Metric::count("MessagesScheduled", report.messages),
            Metric::count("RecordsUnchanged", report.unchanged),
            Metric::count("RecordsSuperseded", report.superseded),
            Metric::count("RecordsUnusable", report.unusable.values().sum()),
            Metric::count("RecordsFailed", report.failed),
        ],
    }]
}
