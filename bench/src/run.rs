//! `bench run`: starts dynoxide over HTTP in this process, runs every measurement (the
//! sweeps and the ceiling in child processes, so their memory is their own), writes the
//! results and prints their table.

use std::collections::BTreeMap;
use std::time::Instant;

use bench::Failure;
use bench::results::{Binary, Float, FunctionInit, Init, Machine, MeasuredBinaries, Messages, Results, results_table};
use chrono::Utc;
use devstack::embedded::EmbeddedDynamo;

use crate::cli::RunOptions;
use crate::closing::{bench_reconciliation, bench_report_reads};
use crate::functions::{cold_and_warm_invocations, function_env, median, time_to_first_poll, webhook_flood_rss};
use crate::lifecycle::bench_lifecycle;
use crate::reviews::bench_reviews;
use crate::sweep::{Stack, measure_sweeps};

pub fn log(started: Instant, message: impl AsRef<str>) {
    eprintln!("[{:6.1}s] {}", started.elapsed().as_secs_f64(), message.as_ref());
}

pub async fn run_all(options: &RunOptions) -> Result<(), Failure> {
    let started = Instant::now();
    let emulator = EmbeddedDynamo::start()?;
    let endpoint = emulator.endpoint.clone();
    let admin = aws_sdk_dynamodb::Client::new(&bench::local_sdk_config(&endpoint).await);
    let now = Utc::now();
    log(started, format!("dynoxide at {endpoint}"));

    let stack = Stack {
        emulator: &emulator,
        admin: &admin,
        now,
        started,
    };
    let sweep = measure_sweeps(&stack, options).await?;

    // ---- Reviews against a Twilio stand-in that answers after 150 ms. ----
    let mps = options.mps;
    let reviews = bench_reviews(&endpoint, options.orders, mps, now).await?;
    log(
        started,
        format!(
            "reviews: {} sent at {:.2}/s (configured {mps})",
            reviews.sent, reviews.achieved_mps
        ),
    );

    // ---- Every kind of message, through the streams, against the same stand-in. ----
    let lifecycle = bench_lifecycle(
        &endpoint,
        options.lifecycle_orders,
        options.lifecycle_orders * 2,
        options.lifecycle_orders / 2,
        mps,
        now,
    )
    .await?;
    log(
        started,
        format!(
            "lifecycle: {:.3} requests per stream record, {:.3} items read per delayed message, {:.2}/s mixed (configured {mps})",
            lifecycle.requests_per_stream_record, lifecycle.items_read_per_delayed_sent, lifecycle.achieved_mps
        ),
    );

    // ---- Closing the loop: reconciliation's Twilio lookups, the report's reads. ----
    let reconciliation = bench_reconciliation(&endpoint, options.reconcile_parked, now).await?;
    log(
        started,
        format!(
            "reconciliation: {:.3} list requests per unknown message ({} found, {} requeued)",
            reconciliation.list_requests_per_unknown, reconciliation.found, reconciliation.requeued
        ),
    );
    let report = bench_report_reads(&endpoint, options.report_events / 10, options.report_events, now).await?;
    log(
        started,
        format!(
            "report: {} DynamoDB requests after {} events, {} after {}",
            report.requests_small, report.events_small, report.requests_large, report.events_large
        ),
    );

    // ---- Init: exec to the first poll of the Runtime API. ----
    let mut by_function = BTreeMap::new();
    for (name, binary) in &options.functions {
        let env = function_env(&endpoint);
        let samples = time_to_first_poll(binary, &env, options.init_starts).await?;
        let invocations = cold_and_warm_invocations(binary, &env, name).await?;
        log(
            started,
            format!(
                "init {name}: median {:.2} ms to the first poll; invocations {}",
                median(&samples),
                serde_json::to_string(&invocations)?
            ),
        );
        let init = FunctionInit {
            median_ms: Float(median(&samples)),
            min_ms: Float(samples.iter().copied().fold(f64::INFINITY, f64::min)),
            max_ms: Float(samples.iter().copied().fold(0.0, f64::max)),
            samples_ms: samples,
            host_binary_bytes: std::fs::metadata(binary)?.len(),
            invocations,
        };
        by_function.insert(name.clone(), init);
    }
    // ---- The webhook under an unauthenticated many-parameter flood. ----
    let webhook = match options.functions.get("record-review-reply") {
        Some(binary) => {
            let flood = webhook_flood_rss(binary, &function_env(&endpoint)).await?;
            log(started, format!("webhook flood: {}", serde_json::to_string(&flood)?));
            Some(flood)
        }
        None => None,
    };
    let ms_to_first_poll = by_function.values().map(|v| v.median_ms.0).fold(0.0, f64::max);

    // ---- Binary sizes (built by scripts/bench.sh). ----
    let mut bootstrap_bytes = BTreeMap::new();
    for (name, path) in &options.bootstraps {
        bootstrap_bytes.insert(name.clone(), std::fs::metadata(path)?.len());
    }

    let results = Results {
        sweep,
        reviews,
        messages: Some(Messages::of(&lifecycle)),
        lifecycle: Some(lifecycle),
        reconciliation: Some(reconciliation),
        report: Some(report),
        webhook,
        binary: Binary {
            bootstrap_bytes: bootstrap_bytes.values().copied().max(),
            bootstrap_bytes_by_function: bootstrap_bytes,
            target: options.bootstrap_target.clone(),
            opt_level: options.opt_level.clone(),
        },
        init: Init {
            ms_to_first_poll: Float(ms_to_first_poll),
            starts_per_function: options.init_starts,
            by_function,
        },
        machine: machine(),
        measured_binaries: MeasuredBinaries {
            profile: options.host_profile.clone(),
            emulator: options.emulator.clone(),
        },
        bench_duration_s: Float(started.elapsed().as_secs_f64()),
        build_s: options.build_s,
    };
    let out = &options.out;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&results)? + "\n")?;
    print!("\n{}", results_table(&results));
    log(started, format!("wrote {}", out.display()));
    drop(emulator);
    Ok(())
}

/// The machine the benchmark ran on, from /proc.
fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: Option<u64> = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        memory_gib: mem_kib.map(|k| (k as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        kernel: kernel.trim().to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
    }
}
