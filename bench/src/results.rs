//! The benchmark's results as types: what `bench run` writes to bench/results.json, what
//! the child processes print, and the Markdown table of docs/benchmarks.md.
//!
//! Fields are declared in alphabetical order, the order in which the file has always had
//! its keys (serde_json writes a map's keys sorted), so a new run diffs cleanly against the
//! committed one. Open-ended maps (requests by operation, sizes by function) are BTreeMaps.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A measured real number. A ratio or a median over nothing is NaN or infinite, which
/// serde_json writes as `null`; `null` reads back as NaN, and the table shows `NaN`.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Float(pub f64);

impl<'de> Deserialize<'de> for Float {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Float(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN)))
    }
}

/// As the number itself, precision included (`{:.3}`).
impl fmt::Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// bench/results.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub bench_duration_s: Float,
    pub binary: Binary,
    /// `--build-s`: how long scripts/bench.sh's release builds took.
    pub build_s: Option<f64>,
    pub init: Init,
    /// `null` in results written before it was measured.
    #[serde(default)]
    pub lifecycle: Option<Lifecycle>,
    pub machine: Machine,
    pub measured_binaries: MeasuredBinaries,
    /// send-messages' cost per message, from the lifecycle runs; `null` without them.
    #[serde(default)]
    pub messages: Option<Messages>,
    /// `null` in results written before it was measured.
    #[serde(default)]
    pub reconciliation: Option<Reconciliation>,
    /// `null` in results written before it was measured.
    #[serde(default)]
    pub report: Option<ReportReads>,
    pub reviews: Reviews,
    pub sweep: Sweep,
    /// `null` when record-review-reply was not among the `--function`s.
    pub webhook: Option<Webhook>,
}

/// The sweeps: `run_10pct` on the table of `--carts` with `--expired-pct` expired, `run_5x`
/// with `--scale` times more expired carts, `large` on `--large-carts` (`null` without).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sweep {
    /// The emulator's plain `DeleteItem` rate, by concurrency ("32", "64", "128").
    pub ceiling_by_concurrency: BTreeMap<String, Ceiling>,
    /// The emulator's delete rate by request shape ("delete-item", "batch-write",
    /// "partiql-batch", "transaction"), the same number of carts each, 8 requests in flight.
    #[serde(default)]
    pub ceiling_by_shape: BTreeMap<String, Ceiling>,
    pub ceiling_ratio: Float,
    pub ceiling_ratio_5x: Float,
    pub cpu_ms_per_1000_deleted: Float,
    pub cpu_ms_per_1000_deleted_5x: Float,
    /// CPU per deleted cart of the batched sweep over that of one `DeleteItem` per cart
    /// (`per_item`), on the same data.
    #[serde(default)]
    pub cpu_ratio_vs_per_item: Float,
    pub deleted_per_s: Float,
    pub deleted_per_s_5x: Float,
    pub emulator_delete_ceiling_per_s: Float,
    pub expired_carts: usize,
    pub expired_carts_5x: usize,
    pub items_read_per_deleted: Float,
    pub items_read_per_deleted_5x: Float,
    pub large: Option<LargeSweep>,
    /// The job and a naive Scan + BatchWriteItem sweep on identical tables of
    /// `naive_table_carts` carts, 5 % and 100 % expired.
    #[serde(default)]
    pub naive_100pct: Option<SweepPair>,
    #[serde(default)]
    pub naive_5pct: Option<SweepPair>,
    #[serde(default)]
    pub naive_table_carts: usize,
    pub peak_rss_mb: Float,
    pub peak_rss_mb_5x: Float,
    /// The same sweep as `run_10pct` with `SWEEP_BATCH_SIZE=1` (one `DeleteItem` a cart).
    #[serde(default)]
    pub per_item: Option<SweepMeasurement>,
    pub requests_per_deleted: Float,
    pub requests_per_deleted_5x: Float,
    pub rss_growth_ratio: Float,
    pub run_10pct: SweepMeasurement,
    pub run_5x: SweepMeasurement,
    pub table_carts: usize,
    /// The job's rate over the naive sweep's, 100 % expired.
    #[serde(default)]
    pub vs_naive_100pct: Float,
    /// The job's rate over the naive sweep's, 5 % expired.
    #[serde(default)]
    pub vs_naive_5pct: Float,
}

/// The job's sweep and the naive one, each on its own copy of the same table: the round
/// with the median ratio of several, each on a fresh emulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepPair {
    pub expired_carts: usize,
    pub naive: SweepMeasurement,
    pub ours: SweepMeasurement,
    /// The job's rate over the naive sweep's in this round.
    #[serde(default)]
    pub ratio: Float,
    /// Every round's ratio, lowest first.
    #[serde(default)]
    pub ratios_by_round: Vec<Float>,
}

/// One sweep in a process of its own: the line `bench sweep-only` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepMeasurement {
    pub cpu_ms: u64,
    pub deleted: u64,
    pub deleted_per_s: Float,
    pub elapsed_s: Float,
    pub items_read: u64,
    pub items_read_per_deleted: Float,
    pub peak_rss_kib: u64,
    /// HTTP requests by DynamoDB operation, retries included.
    pub requests: BTreeMap<String, u64>,
    pub requests_per_deleted: Float,
    pub requests_total: u64,
    /// The function's response, as it returns it.
    pub response: Value,
    pub rss_at_start_kib: u64,
}

/// The optional sweep of a larger table (`--large-carts`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LargeSweep {
    pub expired_carts: usize,
    pub run: SweepMeasurement,
    pub table_carts: usize,
}

/// The emulator's own delete rate at one concurrency: the line `bench ceiling` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ceiling {
    pub concurrency: usize,
    pub deleted: usize,
    pub deleted_per_s: Float,
    pub elapsed_s: Float,
    pub failed: usize,
    pub requests_total: u64,
}

/// The review job against the Twilio stand-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reviews {
    pub achieved_mps: Float,
    pub achieved_mps_definition: String,
    pub configured_mps: u32,
    pub due_orders: usize,
    /// HTTP requests by DynamoDB operation, retries included.
    pub dynamodb_requests: BTreeMap<String, u64>,
    pub dynamodb_requests_per_sent: Float,
    pub first_send_after_s: Float,
    pub items_read: u64,
    pub max_sends_in_any_1s: usize,
    pub rate_ratio: Float,
    pub review_concurrency: usize,
    pub sent: u64,
    pub standin_delay_ms: u64,
    pub whole_run_mps: Float,
    pub whole_run_s: Float,
}

/// Every kind of message: derive-schedule on the streams, send-messages on what is due.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lifecycle {
    pub achieved_mps: Float,
    pub configured_mps: u32,
    /// derive-schedule's HTTP requests by DynamoDB operation, over every stream record.
    pub consumer_requests: BTreeMap<String, u64>,
    pub delayed_items_read: u64,
    pub delayed_sent: u64,
    /// send-messages' HTTP requests by DynamoDB operation, both runs.
    pub dispatcher_requests: BTreeMap<String, u64>,
    pub items_read_per_delayed_sent: Float,
    /// Messages the consumer scheduled: the table the delayed run reads a part of.
    pub messages_in_table: u64,
    pub mixed_kinds: Vec<String>,
    pub mixed_run_s: Float,
    pub mixed_sent: u64,
    pub rate_ratio: Float,
    pub requests_per_stream_record: Float,
    pub stream_records: usize,
}

/// send-messages in the lifecycle runs (both runs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Messages {
    /// DynamoDB requests per message sent: claims, batched settles, index pages.
    pub requests_per_sent: Float,
    pub sent: u64,
}

impl Messages {
    pub fn of(lifecycle: &Lifecycle) -> Self {
        let sent = lifecycle.mixed_sent + lifecycle.delayed_sent;
        let requests: u64 = lifecycle.dispatcher_requests.values().sum();
        Self {
            requests_per_sent: Float(requests as f64 / sent.max(1) as f64),
            sent,
        }
    }
}

/// One send-messages run reconciling messages whose outcome was unknown, half of them at
/// Twilio and half never created, against the Twilio stand-in's Messages list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reconciliation {
    /// send-messages' HTTP requests by DynamoDB operation in that run.
    pub dynamodb_requests: BTreeMap<String, u64>,
    pub found: u64,
    pub list_requests: u64,
    pub list_requests_per_unknown: Float,
    pub parked: u64,
    pub requeued: u64,
    /// Requeued and sent again by the same run.
    pub resent: u64,
}

/// The daily report's DynamoDB requests after a small and a large day of order events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportReads {
    pub events_large: u64,
    pub events_small: u64,
    pub requests_large: u64,
    pub requests_small: u64,
    /// derive-schedule's requests to count one order (customer, marker, counters).
    pub tally_requests_per_event: Float,
}

/// Peak RSS of one record-review-reply process under the many-parameter flood.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Webhook {
    pub flood_body_bytes: usize,
    pub flood_extra_rss_kib: u64,
    pub flood_extra_rss_per_body_byte: Float,
    pub flood_params: usize,
    pub peak_rss_kib_after_floods: u64,
    pub peak_rss_kib_signed_reply: u64,
}

/// The deployed bootstraps (`--bootstrap`, `--bootstrap-target`, `--opt-level`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Binary {
    /// The largest of them; `null` without `--bootstrap`.
    pub bootstrap_bytes: Option<u64>,
    pub bootstrap_bytes_by_function: BTreeMap<String, u64>,
    pub opt_level: Option<String>,
    pub target: String,
}

/// From exec to the first poll of the Runtime API, per function (`--function`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Init {
    pub by_function: BTreeMap<String, FunctionInit>,
    /// The largest of the functions' medians.
    pub ms_to_first_poll: Float,
    pub starts_per_function: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionInit {
    pub host_binary_bytes: u64,
    pub invocations: Invocations,
    pub max_ms: Float,
    pub median_ms: Float,
    pub min_ms: Float,
    pub samples_ms: Vec<f64>,
}

/// Two invocations in a row of one process, over several processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invocations {
    pub first_invocation_median_ms: Float,
    /// What the function was sent: the event itself (`{"dryRun": true}`) or a summary.
    pub payload: Value,
    pub processes: usize,
    pub second_invocation_median_ms: Float,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub arch: String,
    pub cores: usize,
    pub cpu: Option<String>,
    pub kernel: String,
    pub memory_gib: Option<f64>,
}

/// `--host-profile` and `--emulator`: how the measured host binaries were built.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeasuredBinaries {
    pub emulator: Option<String>,
    pub profile: Option<String>,
}

/// Microseconds per deleted cart for each request shape, cheapest first.
fn shape_row(by_shape: &BTreeMap<String, Ceiling>) -> String {
    let mut costs: Vec<(f64, &str)> = by_shape
        .iter()
        .map(|(shape, run)| (1e6 / run.deleted_per_s.0, shape.as_str()))
        .collect();
    costs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let costs: Vec<String> = costs.iter().map(|(us, shape)| format!("{shape} {us:.0}")).collect();
    if costs.is_empty() {
        "not measured".into()
    } else {
        costs.join(", ")
    }
}

/// The results as the Markdown table of docs/benchmarks.md (`bench table` prints it from
/// bench/results.json; CI checks the doc against it).
pub fn results_table(results: &Results) -> String {
    let (sweep, reviews) = (&results.sweep, &results.reviews);
    let webhook = |value: fn(&Webhook) -> f64| results.webhook.as_ref().map_or(f64::NAN, value);
    let rows: Vec<(&str, String, &str)> = vec![
        (
            "sweep.table_carts / expired_carts",
            format!("{} / {}", sweep.table_carts, sweep.expired_carts),
            "≥ 200,000 / 10 %",
        ),
        (
            "sweep.items_read_per_deleted",
            format!("{:.4}", sweep.items_read_per_deleted),
            "≤ 1.05",
        ),
        (
            "sweep.requests_per_deleted",
            format!("{:.4}", sweep.requests_per_deleted),
            "≤ 0.06 (25 deletes a request + Query pages)",
        ),
        ("sweep.deleted_per_s", format!("{:.0}", sweep.deleted_per_s), ""),
        (
            "sweep.emulator_delete_ceiling_per_s",
            format!("{:.0}", sweep.emulator_delete_ceiling_per_s),
            "",
        ),
        ("sweep.ceiling_ratio", format!("{:.3}", sweep.ceiling_ratio), "≥ 0.8"),
        (
            "sweep.cpu_ms_per_1000_deleted (10 % / 5×)",
            format!(
                "{:.0} / {:.0}",
                sweep.cpu_ms_per_1000_deleted, sweep.cpu_ms_per_1000_deleted_5x
            ),
            "(noisy on a shared machine; see make bench-instructions)",
        ),
        (
            "sweep.cpu_ratio_vs_per_item",
            format!(
                "{:.3} ({} ms against {} ms with one DeleteItem a cart)",
                sweep.cpu_ratio_vs_per_item,
                sweep.run_10pct.cpu_ms,
                sweep.per_item.as_ref().map_or(0, |run| run.cpu_ms)
            ),
            "≤ 0.3",
        ),
        (
            "sweep.vs_naive_5pct",
            naive_row(sweep.vs_naive_5pct, sweep.naive_5pct.as_ref(), sweep.naive_table_carts),
            "≥ 3",
        ),
        (
            "sweep.vs_naive_100pct",
            naive_row(
                sweep.vs_naive_100pct,
                sweep.naive_100pct.as_ref(),
                sweep.naive_table_carts,
            ),
            "≥ 1",
        ),
        (
            "sweep.ceiling_by_shape (µs of emulator per deleted cart)",
            shape_row(&sweep.ceiling_by_shape),
            "(explains vs_naive: see docs/decisions)",
        ),
        ("sweep.peak_rss_mb (10 %)", format!("{:.1}", sweep.peak_rss_mb), "≤ 40"),
        (
            "sweep.peak_rss_mb_5x",
            format!("{:.1} ({} expired)", sweep.peak_rss_mb_5x, sweep.expired_carts_5x),
            "≤ 40",
        ),
        (
            "sweep.rss_growth_ratio",
            format!("{:.3}", sweep.rss_growth_ratio),
            "≤ 1.2",
        ),
        ("reviews.due_orders", format!("{}", reviews.due_orders), "≥ 2,000"),
        (
            "reviews.configured / achieved mps",
            format!("{} / {:.2}", reviews.configured_mps, reviews.achieved_mps),
            "",
        ),
        (
            "reviews.rate_ratio",
            format!("{:.3}", reviews.rate_ratio),
            "0.95 – 1.02",
        ),
        (
            "reviews.dynamodb_requests_per_sent",
            format!("{:.3}", reviews.dynamodb_requests_per_sent),
            "(review and consent checks, claim, settle, caps record)",
        ),
        (
            "reviews.max_sends_in_any_1s",
            format!("{}", reviews.max_sends_in_any_1s),
            "≤ configured mps",
        ),
        (
            "webhook.flood_extra_rss_per_body_byte",
            format!(
                "{:.2} ({:.1} → {:.1} MB, 3 MB of tiny parameters)",
                webhook(|w| w.flood_extra_rss_per_body_byte.0),
                webhook(|w| w.peak_rss_kib_signed_reply as f64) / 1024.0,
                webhook(|w| w.peak_rss_kib_after_floods as f64) / 1024.0
            ),
            "≤ 4 (the event's own copies, nothing per parameter)",
        ),
    ];
    let mut rows = rows;
    match &results.lifecycle {
        Some(lifecycle) => rows.extend([
            (
                "lifecycle.requests_per_stream_record",
                format!(
                    "{:.3} ({} records)",
                    lifecycle.requests_per_stream_record, lifecycle.stream_records
                ),
                "(one write per derived attribute set or message)",
            ),
            (
                "messages.requests_per_sent",
                match &results.messages {
                    Some(messages) => format!(
                        "{:.3} ({} sent; claims, batched settles, index pages)",
                        messages.requests_per_sent, messages.sent
                    ),
                    None => "not measured yet: run make bench".into(),
                },
                "≤ 1.5",
            ),
            (
                "lifecycle.items_read_per_delayed_sent",
                format!(
                    "{:.3} ({} sent, {} messages in the table)",
                    lifecycle.items_read_per_delayed_sent, lifecycle.delayed_sent, lifecycle.messages_in_table
                ),
                "≤ 1.05",
            ),
            (
                "lifecycle.rate_ratio (kinds mixed)",
                format!(
                    "{:.3} ({} / {:.2} mps, {})",
                    lifecycle.rate_ratio,
                    lifecycle.configured_mps,
                    lifecycle.achieved_mps,
                    lifecycle.mixed_kinds.join(", ")
                ),
                "0.95 – 1.02",
            ),
        ]),
        None => rows.push(("lifecycle.*", "not measured yet: run make bench".into(), "")),
    }
    match &results.reconciliation {
        Some(reconciliation) => rows.push((
            "reconciliation.list_requests_per_unknown",
            format!(
                "{:.3} ({} parked: {} found at Twilio, {} requeued and sent again)",
                reconciliation.list_requests_per_unknown,
                reconciliation.parked,
                reconciliation.found,
                reconciliation.requeued
            ),
            "1 (one page per customer)",
        )),
        None => rows.push(("reconciliation.*", "not measured yet: run make bench".into(), "")),
    }
    match &results.report {
        Some(report) => rows.extend([
            (
                "report.dynamodb_requests",
                format!(
                    "{} after {} order events / {} after {}",
                    report.requests_small, report.events_small, report.requests_large, report.events_large
                ),
                "the same whatever the day's size",
            ),
            (
                "report.tally_requests_per_event",
                format!("{:.3}", report.tally_requests_per_event),
                "(customer, marker, counters)",
            ),
        ]),
        None => rows.push(("report.*", "not measured yet: run make bench".into(), "")),
    }
    let mut table = String::from("| metric | value | target |\n|---|---|---|\n");
    for (metric, value, target) in rows {
        table.push_str(&format!("| {metric} | {value} | {target} |\n"));
    }
    let (names, sizes) = per_function(&results.binary.bootstrap_bytes_by_function, |bytes| {
        format!("{:.2} MiB", *bytes as f64 / 1048576.0)
    });
    table.push_str(&format!(
        "| binary.bootstrap_bytes ({names}) | {sizes} | ≤ 6 MiB each |\n"
    ));
    let (names, init) = per_function(&results.init.by_function, |init| format!("{:.2}", init.median_ms));
    table.push_str(&format!(
        "| init.ms_to_first_poll, median ({names}) | {init} | ≤ 25 ms each |\n"
    ));
    table
}

/// The job's rate over the naive sweep's, with both rates, the table and every round.
fn naive_row(ratio: Float, pair: Option<&SweepPair>, carts: usize) -> String {
    match pair {
        Some(pair) => {
            let rounds: Vec<String> = pair.ratios_by_round.iter().map(|r| format!("{r:.2}")).collect();
            format!(
                "{ratio:.2}, median of {} rounds ({}) ({:.0} / {:.0} deleted per s, {} of {carts} carts)",
                rounds.len(),
                rounds.join(", "),
                pair.ours.deleted_per_s,
                pair.naive.deleted_per_s,
                pair.expired_carts
            )
        }
        None => "not measured yet: run make bench".into(),
    }
}

/// One row's names and values, the functions in name order, each joined with " / ".
fn per_function<T>(by_function: &BTreeMap<String, T>, value: impl Fn(&T) -> String) -> (String, String) {
    let (names, values): (Vec<&str>, Vec<String>) = by_function
        .iter()
        .map(|(name, entry)| (name.as_str(), value(entry)))
        .unzip();
    (names.join(" / "), values.join(" / "))
}
