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
    pub fn count(name: &'static str, value: u64) -> Self {
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

/// The `Function` dimension every document carries.
pub fn function_dimension(function: &str) -> Vec<(&'static str, String)> {
    vec![("Function", function.to_owned())]
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

/// What the jobs' metrics tests share: the lines a set of documents makes, parsed back.
#[cfg(test)]
pub(crate) mod testing {
    use serde_json::{Value, json};

    use super::*;

    pub(crate) const TS: u64 = 1_795_000_000_123;

    /// The lines written, each parsed back from JSON.
    pub(crate) fn emitted(documents: &[MetricDocument]) -> Vec<Value> {
        let mut out = Vec::new();
        emit_to(&mut out, documents, TS).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'));
        // `_aws` comes first, as in the EMF specification's examples.
        assert!(text.lines().all(|line| line.starts_with(r#"{"_aws":{"#)), "{text}");
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    /// (name, unit) of each metric a line declares, and checks the declaration's shape.
    pub(crate) fn declared(line: &Value, dimensions: &[&str]) -> Vec<(String, String)> {
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
}

#[cfg(test)]
mod tests {
    use super::testing::emitted;

    #[test]
    fn no_documents_no_lines() {
        assert!(emitted(&[]).is_empty());
    }
}
