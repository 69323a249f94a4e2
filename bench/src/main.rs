//! `bench`: the benchmark behind `make bench` (see docs/benchmarks.md).
//!
//! - `bench run [--carts N] [--expired-pct P] [--scale K] [--orders N] [--mps N]
//!   [--init-starts N] [--function NAME=PATH]... [--bootstrap NAME=PATH]... [--out FILE]`:
//!   starts dynoxide over HTTP in this process, seeds the data sets, runs every measurement
//!   (the sweeps and the ceiling in child processes, so their memory is their own) and
//!   writes the results.
//! - `bench sweep-only --table T`: one sweep as the function runs it, against the
//!   endpoint in `AWS_ENDPOINT_URL_DYNAMODB`; prints one JSON line (counts, rate, peak RSS).
//! - `bench ceiling --table T --prefix P --start S --count N --concurrency C`: the
//!   emulator's raw delete rate: N concurrent plain `DeleteItem` calls on known keys.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_dynamodb::types::AttributeValue;
use backoffice::aws::{SdkSettings, load_sdk_config};
use backoffice::jobs::record_review_reply::SignatureValidator;
use backoffice::jobs::request_reviews::dynamo::DynamoOrders;
use backoffice::jobs::request_reviews::{self, ReviewDeps, ReviewJobConfig};
use backoffice::runtime::clock::SystemClock;
use backoffice::runtime::job::Deadline;
use backoffice::twilio::{AuthToken, TwilioClient, TwilioConfig};
use bench::{
    CartSet, Failure, RequestCounter, counted_client, cpu_ms, create_table, import_carts, live_cart_id,
    local_sdk_config, measure_sweep, peak_rss_kib, peak_rss_kib_of, rss_kib,
};
use chrono::{TimeDelta, Utc};
use devstack::embedded::EmbeddedDynamo;
use devstack::seed::put_completed_order;
use devstack::twilio_standin::{
    LOCAL_ACCOUNT_SID, LOCAL_AUTH_TOKEN, LOCAL_TEMPLATE_SID, LOCAL_WHATSAPP_FROM, TwilioStandIn,
};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn flags(args: &[String], name: &str) -> Vec<String> {
    args.windows(2).filter(|w| w[0] == name).map(|w| w[1].clone()).collect()
}

fn number<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, Failure> {
    match flag(args, name) {
        Some(value) => value
            .parse()
            .map_err(|_| format!("{name}: not a number: {value}").into()),
        None => Ok(default),
    }
}

fn required(args: &[String], name: &str) -> Result<String, Failure> {
    flag(args, name).ok_or_else(|| format!("{name} is required").into())
}

fn named_paths(args: &[String], name: &str) -> Result<BTreeMap<String, PathBuf>, Failure> {
    flags(args, name)
        .into_iter()
        .map(|pair| {
            let (function, path) = pair
                .split_once('=')
                .ok_or_else(|| format!("{name} wants NAME=PATH: {pair}"))?;
            Ok((function.to_string(), PathBuf::from(path)))
        })
        .collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let outcome = runtime.block_on(async {
        match args.first().map(String::as_str) {
            Some("run") => run_all(&args[1..]).await,
            Some("sweep-only") => sweep_only(&args[1..]).await,
            Some("ceiling") => ceiling(&args[1..]).await,
            Some("table") => table(&args[1..]),
            _ => {
                Err("usage: bench run [options] | bench sweep-only --table T | bench ceiling ... | bench table".into())
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// Child processes: what is measured on its own.
// ---------------------------------------------------------------------------------------

/// The sweep in a process of its own, with the function's SDK configuration (read from
/// the environment, as `clean-expired-carts` does), so that its peak RSS is the job's.
async fn sweep_only(args: &[String]) -> Result<(), Failure> {
    let table = required(args, "--table")?;
    let rss_at_start_kib = rss_kib();
    let cpu_at_start_ms = cpu_ms();
    let sdk_config = load_sdk_config(&SdkSettings::from_env(&backoffice::runtime::config::ProcessEnv)?).await;
    let counter = RequestCounter::default();
    let client = counted_client(&sdk_config, &counter);
    let mut out = measure_sweep(client, &counter, &table).await?.to_json();
    out["peak_rss_kib"] = json!(peak_rss_kib());
    out["rss_at_start_kib"] = json!(rss_at_start_kib);
    out["cpu_ms"] = json!(cpu_ms() - cpu_at_start_ms);
    println!("{out}");
    Ok(())
}

/// The emulator's own delete rate: plain `DeleteItem` on keys known in advance, through the
/// same SDK client configuration as the sweeper, `--concurrency` in flight.
async fn ceiling(args: &[String]) -> Result<(), Failure> {
    let table = required(args, "--table")?;
    let prefix = required(args, "--prefix")?;
    let start: usize = number(args, "--start", 0)?;
    let count: usize = number(args, "--count", 10_000)?;
    let concurrency: usize = number(args, "--concurrency", 32)?;
    let sdk_config = load_sdk_config(&SdkSettings::from_env(&backoffice::runtime::config::ProcessEnv)?).await;
    let counter = RequestCounter::default();
    let client = counted_client(&sdk_config, &counter);
    let started = Instant::now();
    let failures = futures::stream::iter(start..start + count)
        .map(|i| {
            let client = &client;
            let table = &table;
            let prefix = &prefix;
            async move {
                client
                    .delete_item()
                    .table_name(table)
                    .key("cartId", AttributeValue::S(live_cart_id(prefix, i)))
                    .send()
                    .await
                    .is_err()
            }
        })
        .buffer_unordered(concurrency)
        .filter(|failed| futures::future::ready(*failed))
        .count()
        .await;
    let elapsed_s = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "deleted": count - failures,
            "failed": failures,
            "concurrency": concurrency,
            "elapsed_s": elapsed_s,
            "deleted_per_s": (count - failures) as f64 / elapsed_s,
            "requests_total": counter.total(),
        })
    );
    Ok(())
}

/// Runs this binary again with `args`, with the environment a function would have against
/// the emulator, and reads the JSON line it prints.
async fn child(endpoint: &str, args: &[&str]) -> Result<Value, Failure> {
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .args(args)
        .env_remove("AWS_PROFILE")
        .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
        .env("AWS_REGION", "eu-west-3")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stderr(Stdio::inherit())
        .output()
        .await?;
    if !output.status.success() {
        return Err(format!("bench {} failed: {}", args.join(" "), output.status).into());
    }
    let stdout = String::from_utf8(output.stdout)?;
    let line = stdout.lines().last().ok_or("no output from child")?;
    Ok(serde_json::from_str(line)?)
}

// ---------------------------------------------------------------------------------------
// The whole benchmark.
// ---------------------------------------------------------------------------------------

fn f(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

fn kib_to_mb(kib: &Value) -> f64 {
    f(kib) / 1024.0
}

fn log(started: Instant, message: impl AsRef<str>) {
    eprintln!("[{:6.1}s] {}", started.elapsed().as_secs_f64(), message.as_ref());
}

async fn run_all(args: &[String]) -> Result<(), Failure> {
    let started = Instant::now();
    let carts: usize = number(args, "--carts", 200_000)?;
    let expired_pct: usize = number(args, "--expired-pct", 10)?;
    let scale: usize = number(args, "--scale", 5)?;
    let large_carts: usize = number(args, "--large-carts", 0)?;
    let orders: usize = number(args, "--orders", 2_000)?;
    let mps: u32 = number(args, "--mps", 80)?;
    let init_starts: usize = number(args, "--init-starts", 20)?;
    let ceiling_keys: usize = number(args, "--ceiling-keys", 10_000)?;
    let out = PathBuf::from(flag(args, "--out").unwrap_or_else(|| "bench/results.json".into()));
    let functions = named_paths(args, "--function")?;
    let bootstraps = named_paths(args, "--bootstrap")?;

    let emulator = EmbeddedDynamo::start()?;
    let endpoint = emulator.endpoint.clone();
    let admin = aws_sdk_dynamodb::Client::new(&local_sdk_config(&endpoint).await);
    let now = Utc::now();
    log(started, format!("dynoxide at {endpoint}"));

    // ---- Sweep, 10 %: the ceiling first, on keys of the same table, then the job. ----
    let expired = carts * expired_pct / 100;
    let ceiling_levels = [32usize, 64, 128];
    let table_a = "bench-a-carts";
    create_table(&admin, "CartsTable", table_a).await?;
    import_carts(
        &emulator.database,
        table_a,
        now,
        CartSet {
            prefix: "a",
            expired,
            live: carts - expired + ceiling_keys * ceiling_levels.len(),
        },
    )?;
    log(
        started,
        format!("seeded {table_a}: {expired} expired of {carts} (+ ceiling keys)"),
    );
    let mut ceiling_by_concurrency = BTreeMap::new();
    for (k, concurrency) in ceiling_levels.iter().enumerate() {
        let start = (k * ceiling_keys).to_string();
        let count = ceiling_keys.to_string();
        let concurrency_arg = concurrency.to_string();
        let result = child(
            &endpoint,
            &[
                "ceiling",
                "--table",
                table_a,
                "--prefix",
                "a",
                "--start",
                &start,
                "--count",
                &count,
                "--concurrency",
                &concurrency_arg,
            ],
        )
        .await?;
        log(
            started,
            format!(
                "ceiling at {concurrency} in flight: {:.0} deletes/s",
                f(&result["deleted_per_s"])
            ),
        );
        ceiling_by_concurrency.insert(concurrency.to_string(), result);
    }
    let ceiling_per_s = ceiling_by_concurrency
        .values()
        .map(|r| f(&r["deleted_per_s"]))
        .fold(0.0, f64::max);
    let sweep_a = child(&endpoint, &["sweep-only", "--table", table_a]).await?;
    check_sweep(&sweep_a, expired)?;
    log(
        started,
        format!(
            "sweep {table_a}: {} deleted at {:.0}/s, peak RSS {:.1} MB",
            sweep_a["deleted"],
            f(&sweep_a["deleted_per_s"]),
            kib_to_mb(&sweep_a["peak_rss_kib"])
        ),
    );

    // ---- Sweep, K times more expired carts in a table of the same size. ----
    let expired_b = (expired * scale).min(carts);
    let table_b = "bench-b-carts";
    create_table(&admin, "CartsTable", table_b).await?;
    import_carts(
        &emulator.database,
        table_b,
        now,
        CartSet {
            prefix: "b",
            expired: expired_b,
            live: carts - expired_b,
        },
    )?;
    log(started, format!("seeded {table_b}: {expired_b} expired of {carts}"));
    let sweep_b = child(&endpoint, &["sweep-only", "--table", table_b]).await?;
    check_sweep(&sweep_b, expired_b)?;
    log(
        started,
        format!(
            "sweep {table_b}: {} deleted at {:.0}/s, peak RSS {:.1} MB",
            sweep_b["deleted"],
            f(&sweep_b["deleted_per_s"]),
            kib_to_mb(&sweep_b["peak_rss_kib"])
        ),
    );

    // ---- Optional: a larger table at the same expired share. ----
    let sweep_large = if large_carts > 0 {
        let expired_c = large_carts * expired_pct / 100;
        let table_c = "bench-c-carts";
        create_table(&admin, "CartsTable", table_c).await?;
        import_carts(
            &emulator.database,
            table_c,
            now,
            CartSet {
                prefix: "c",
                expired: expired_c,
                live: large_carts - expired_c,
            },
        )?;
        log(
            started,
            format!("seeded {table_c}: {expired_c} expired of {large_carts}"),
        );
        let sweep_c = child(&endpoint, &["sweep-only", "--table", table_c]).await?;
        check_sweep(&sweep_c, expired_c)?;
        log(
            started,
            format!(
                "sweep {table_c}: {} deleted at {:.0}/s, peak RSS {:.1} MB",
                sweep_c["deleted"],
                f(&sweep_c["deleted_per_s"]),
                kib_to_mb(&sweep_c["peak_rss_kib"])
            ),
        );
        Some(json!({"table_carts": large_carts, "expired_carts": expired_c, "run": sweep_c}))
    } else {
        None
    };

    // ---- Reviews against a Twilio stand-in that answers after 150 ms. ----
    let reviews = bench_reviews(&endpoint, orders, mps, now).await?;
    log(
        started,
        format!(
            "reviews: {} sent at {:.2}/s (configured {mps})",
            reviews["sent"],
            f(&reviews["achieved_mps"])
        ),
    );

    // ---- Init: exec to the first poll of the Runtime API. ----
    let mut init_by_function = BTreeMap::new();
    for (name, binary) in &functions {
        let env = function_env(&endpoint);
        let samples = time_to_first_poll(binary, &env, init_starts).await?;
        let first_invocation = cold_and_warm_invocations(binary, &env, name).await?;
        log(
            started,
            format!(
                "init {name}: median {:.2} ms to the first poll; invocations {first_invocation}",
                median(&samples)
            ),
        );
        init_by_function.insert(
            name.clone(),
            json!({
                "median_ms": median(&samples),
                "min_ms": samples.iter().copied().fold(f64::INFINITY, f64::min),
                "max_ms": samples.iter().copied().fold(0.0, f64::max),
                "samples_ms": samples,
                "host_binary_bytes": std::fs::metadata(binary)?.len(),
                "invocations": first_invocation,
            }),
        );
    }
    // ---- The webhook under an unauthenticated many-parameter flood. ----
    let webhook = match functions
        .iter()
        .find(|(name, _)| name.as_str() == "record-review-reply")
    {
        Some((_, binary)) => {
            let flood = webhook_flood_rss(binary, &function_env(&endpoint)).await?;
            log(started, format!("webhook flood: {flood}"));
            Some(flood)
        }
        None => None,
    };
    let ms_to_first_poll = init_by_function
        .values()
        .map(|v| f(&v["median_ms"]))
        .fold(0.0, f64::max);

    // ---- Binary sizes (built by scripts/bench.sh). ----
    let mut bootstrap_bytes = BTreeMap::new();
    for (name, path) in &bootstraps {
        bootstrap_bytes.insert(name.clone(), std::fs::metadata(path)?.len());
    }

    let rss_a = kib_to_mb(&sweep_a["peak_rss_kib"]);
    let rss_b = kib_to_mb(&sweep_b["peak_rss_kib"]);
    let deleted_per_s = f(&sweep_a["deleted_per_s"]);
    let results = json!({
        "sweep": {
            "table_carts": carts,
            "expired_carts": expired,
            "items_read_per_deleted": sweep_a["items_read_per_deleted"],
            "requests_per_deleted": sweep_a["requests_per_deleted"],
            "deleted_per_s": deleted_per_s,
            "emulator_delete_ceiling_per_s": ceiling_per_s,
            "ceiling_ratio": deleted_per_s / ceiling_per_s,
            "peak_rss_mb": rss_a,
            "expired_carts_5x": expired_b,
            "peak_rss_mb_5x": rss_b,
            "rss_growth_ratio": rss_b / rss_a,
            "items_read_per_deleted_5x": sweep_b["items_read_per_deleted"],
            "requests_per_deleted_5x": sweep_b["requests_per_deleted"],
            "deleted_per_s_5x": sweep_b["deleted_per_s"],
            "ceiling_ratio_5x": f(&sweep_b["deleted_per_s"]) / ceiling_per_s,
            "cpu_ms_per_1000_deleted": f(&sweep_a["cpu_ms"]) * 1000.0 / f(&sweep_a["deleted"]),
            "cpu_ms_per_1000_deleted_5x": f(&sweep_b["cpu_ms"]) * 1000.0 / f(&sweep_b["deleted"]),
            "ceiling_by_concurrency": ceiling_by_concurrency,
            "run_10pct": sweep_a,
            "run_5x": sweep_b,
            "large": sweep_large,
        },
        "reviews": reviews,
        "webhook": webhook,
        "binary": {
            "bootstrap_bytes": bootstrap_bytes.values().copied().max(),
            "bootstrap_bytes_by_function": bootstrap_bytes,
            "target": flag(args, "--bootstrap-target").unwrap_or_else(|| "aarch64-unknown-linux-gnu".into()),
            "opt_level": flag(args, "--opt-level"),
        },
        "init": {
            "ms_to_first_poll": ms_to_first_poll,
            "starts_per_function": init_starts,
            "by_function": init_by_function,
        },
        "machine": machine(),
        "measured_binaries": {
            "profile": flag(args, "--host-profile"),
            "emulator": flag(args, "--emulator"),
        },
        "bench_duration_s": started.elapsed().as_secs_f64(),
        "build_s": flag(args, "--build-s").and_then(|s| s.parse::<f64>().ok()),
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&results)? + "\n")?;
    print!("\n{}", results_table(&results));
    log(started, format!("wrote {}", out.display()));
    drop(emulator);
    Ok(())
}

fn check_sweep(run: &Value, expected: usize) -> Result<(), Failure> {
    let response = &run["response"];
    if run["deleted"].as_u64() != Some(expected as u64) || response["failed"].as_u64() != Some(0) {
        return Err(format!(
            "the sweep deleted {} of {expected} expired carts: {response}",
            run["deleted"]
        )
        .into());
    }
    Ok(())
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn machine() -> Value {
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
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gib": mem_kib.map(|k| (k as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        "kernel": kernel.trim(),
        "arch": std::env::consts::ARCH,
    })
}

// ---------------------------------------------------------------------------------------
// Reviews.
// ---------------------------------------------------------------------------------------

/// How long the Twilio stand-in takes to accept a message (issue #5: 150 ms).
const TWILIO_STANDIN_DELAY: Duration = Duration::from_millis(150);

async fn bench_reviews(endpoint: &str, orders: usize, mps: u32, now: chrono::DateTime<Utc>) -> Result<Value, Failure> {
    let sdk_config = local_sdk_config(endpoint).await;
    let admin = aws_sdk_dynamodb::Client::new(&sdk_config);
    let (orders_table, reviews_table) = ("bench-r-orders", "bench-r-reviews");
    create_table(&admin, "OrdersTable", orders_table).await?;
    create_table(&admin, "ReviewsTable", reviews_table).await?;
    let writer = DynamoOrders::new(admin.clone(), orders_table, reviews_table);
    let completed_at = now - TimeDelta::days(8);
    let seeded = futures::stream::iter(0..orders)
        .map(|i| {
            let writer = &writer;
            async move {
                put_completed_order(
                    writer,
                    &format!("ord-{i:06}"),
                    &format!("+3362{i:07}"),
                    Some("Ana Lopez"),
                    completed_at,
                )
                .await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    seeded.into_iter().collect::<Result<Vec<()>, _>>()?;

    let twilio = TwilioStandIn::start_with_delay(TWILIO_STANDIN_DELAY).await?;
    let env: HashMap<String, String> = [
        ("ORDERS_TABLE", orders_table.to_string()),
        ("REVIEWS_TABLE", reviews_table.to_string()),
        ("TWILIO_ACCOUNT_SID", LOCAL_ACCOUNT_SID.to_string()),
        ("TWILIO_AUTH_TOKEN", LOCAL_AUTH_TOKEN.to_string()),
        ("TWILIO_API_BASE_URL", twilio.uri()),
        ("TWILIO_WHATSAPP_FROM", LOCAL_WHATSAPP_FROM.to_string()),
        ("REVIEW_TEMPLATE_SID", LOCAL_TEMPLATE_SID.to_string()),
        ("TWILIO_MAX_MPS", mps.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = ReviewJobConfig::from_env(&env)?;
    let concurrency = config.concurrency;
    let counter = RequestCounter::default();
    let deps = ReviewDeps {
        store: DynamoOrders::new(counted_client(&sdk_config, &counter), orders_table, reviews_table),
        messenger: TwilioClient::new(TwilioConfig::from_env(&env)?)?,
        clock: Arc::new(SystemClock),
        config,
    };
    let started = Instant::now();
    let response = request_reviews::run(&deps, &json!({}), Deadline::unbounded(), "bench-run").await?;
    let whole_run_s = started.elapsed().as_secs_f64();
    let mut arrivals: Vec<Instant> = twilio.messages().iter().map(|m| m.received_at).collect();
    arrivals.sort();
    let sent = response.sent;
    if sent != orders as u64 {
        return Err(format!(
            "the review run sent {sent} of {orders}: {}",
            serde_json::to_string(&response)?
        )
        .into());
    }
    let span_s = match (arrivals.first(), arrivals.last()) {
        (Some(first), Some(last)) => last.duration_since(*first).as_secs_f64(),
        _ => f64::NAN,
    };
    // Sends between the first and the last request: (n - 1) intervals.
    let achieved = (arrivals.len() as f64 - 1.0) / span_s;
    let mut max_in_1s = 0;
    let mut low = 0;
    for high in 0..arrivals.len() {
        while arrivals[high].duration_since(arrivals[low]) >= Duration::from_secs(1) {
            low += 1;
        }
        max_in_1s = max_in_1s.max(high - low + 1);
    }
    let first_send_after_s = arrivals
        .first()
        .map(|t| t.duration_since(started).as_secs_f64())
        .unwrap_or(f64::NAN);
    Ok(json!({
        "due_orders": orders,
        "sent": sent,
        "configured_mps": mps,
        "achieved_mps": achieved,
        "rate_ratio": achieved / f64::from(mps),
        "achieved_mps_definition": "(sends - 1) / time from the first to the last request received by the stand-in",
        "whole_run_s": whole_run_s,
        "whole_run_mps": sent as f64 / whole_run_s,
        "first_send_after_s": first_send_after_s,
        "max_sends_in_any_1s": max_in_1s,
        "standin_delay_ms": TWILIO_STANDIN_DELAY.as_millis(),
        "review_concurrency": concurrency,
        "dynamodb_requests": counter.by_operation(),
        "dynamodb_requests_per_sent": counter.total() as f64 / sent.max(1) as f64,
        "items_read": response.report.items_read,
    }))
}

// ---------------------------------------------------------------------------------------
// Init: a stand-in of the Lambda Runtime API.
// ---------------------------------------------------------------------------------------

fn function_env(endpoint: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("AWS_LAMBDA_FUNCTION_NAME", "bench".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench".into()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO".into()),
        ("AWS_REGION", "eu-west-3".into()),
        ("AWS_DEFAULT_REGION", "eu-west-3".into()),
        ("AWS_ACCESS_KEY_ID", "local".into()),
        ("AWS_SECRET_ACCESS_KEY", "local".into()),
        ("AWS_SESSION_TOKEN", "local".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.into()),
        ("CARTS_TABLE", "bench-b-carts".into()),
        ("ORDERS_TABLE", "bench-r-orders".into()),
        ("REVIEWS_TABLE", "bench-r-reviews".into()),
        ("TWILIO_ACCOUNT_SID", LOCAL_ACCOUNT_SID.into()),
        ("TWILIO_AUTH_TOKEN", LOCAL_AUTH_TOKEN.into()),
        ("TWILIO_WHATSAPP_FROM", LOCAL_WHATSAPP_FROM.into()),
        ("TWILIO_API_BASE_URL", "http://127.0.0.1:9".into()),
        ("REVIEW_TEMPLATE_SID", LOCAL_TEMPLATE_SID.into()),
        ("REPLY_WEBHOOK_URL", REPLY_URL.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Ok(home) = std::env::var("HOME") {
        env.push(("HOME".into(), home));
    }
    env
}

/// One HTTP request the function made to the Runtime API stand-in.
struct RuntimeRequest {
    method: String,
    path: String,
    at: Instant,
    reply: oneshot::Sender<Vec<u8>>,
}

/// Serves the Runtime API on `listener`: every request is handed to the caller, who
/// decides the reply (or holds it, as Lambda holds `/next` until there is an event).
fn serve_runtime_api(listener: TcpListener) -> (mpsc::UnboundedReceiver<RuntimeRequest>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = serve_connection(stream, tx).await;
            });
        }
    });
    (rx, handle)
}

async fn serve_connection(mut stream: TcpStream, tx: mpsc::UnboundedSender<RuntimeRequest>) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::new();
    loop {
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..n]);
        };
        let at = Instant::now();
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        let mut request_line = head.lines().next().unwrap_or_default().split_whitespace();
        let method = request_line.next().unwrap_or_default().to_string();
        let path = request_line.next().unwrap_or_default().to_string();
        let content_length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())
                    .flatten()
            })
            .unwrap_or(0);
        while buffer.len() < head_end + content_length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
        buffer.drain(..head_end + content_length);
        let (reply_tx, reply_rx) = oneshot::channel();
        if tx
            .send(RuntimeRequest {
                method,
                path,
                at,
                reply: reply_tx,
            })
            .is_err()
        {
            return Ok(());
        }
        match reply_rx.await {
            Ok(reply) => stream.write_all(&reply).await?,
            Err(_) => return Ok(()),
        }
    }
}

const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";

fn spawn_function(
    binary: &PathBuf,
    env: &[(String, String)],
    runtime_api: &str,
) -> std::io::Result<tokio::process::Child> {
    tokio::process::Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

/// From exec to the first `GET /runtime/invocation/next`, `starts` times, in ms.
async fn time_to_first_poll(binary: &PathBuf, env: &[(String, String)], starts: usize) -> Result<Vec<f64>, Failure> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let runtime_api = listener.local_addr()?.to_string();
    let (mut requests, server) = serve_runtime_api(listener);
    let mut samples = Vec::with_capacity(starts);
    for _ in 0..starts {
        let spawned_at = Instant::now();
        let mut function = spawn_function(binary, env, &runtime_api)?;
        let first = tokio::time::timeout(Duration::from_secs(10), requests.recv())
            .await
            .map_err(|_| format!("{} never polled the Runtime API", binary.display()))?
            .ok_or("Runtime API stand-in stopped")?;
        if first.method != "GET" || first.path != NEXT_PATH {
            return Err(format!("unexpected first request {} {}", first.method, first.path).into());
        }
        samples.push(first.at.duration_since(spawned_at).as_secs_f64() * 1000.0);
        function.kill().await?;
        drop(first);
    }
    server.abort();
    Ok(samples)
}

fn event_reply(request_id: &str, payload: &Value) -> Vec<u8> {
    let body = payload.to_string();
    let deadline_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        + 300_000;
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: {request_id}\r\n\
         Lambda-Runtime-Deadline-Ms: {deadline_ms}\r\n\
         Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:eu-west-3:000000000000:function:bench\r\n\
         Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000;Sampled=0\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The flood body: `a&a&…`, tiny parameters that cost the most once decoded.
const FLOOD_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Peak RSS of one record-review-reply process after a signed reply, then after 3 MB
/// many-parameter bodies without a signature and with a well-formed wrong one. What the
/// floods add over the signed reply is the event itself (the runtime's copy of the JSON
/// and the body string), nothing per parameter: before the body limits, the same flood
/// decoded 1.5 million parameters and added about 130 MB.
async fn webhook_flood_rss(binary: &PathBuf, env: &[(String, String)]) -> Result<Value, Failure> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let runtime_api = listener.local_addr()?.to_string();
    let (mut requests, server) = serve_runtime_api(listener);
    let mut function = spawn_function(binary, env, &runtime_api)?;
    let pid = function.id().ok_or("record-review-reply exited")?;
    let (signed, _) = invocation_payload("record-review-reply");
    let flood = |signature: Option<&str>| {
        let mut event = signed.clone();
        event["body"] = json!("a&".repeat(FLOOD_BODY_BYTES / 2));
        match signature {
            Some(signature) => event["headers"]["x-twilio-signature"] = json!(signature),
            None => {
                event["headers"].as_object_mut().map(|h| h.remove("x-twilio-signature"));
            }
        }
        event
    };
    let mut peaks_kib = Vec::new();
    for (invocation, event) in [signed.clone(), flood(None), flood(Some("RSOYDt4T1cUTdK1PDd93/VVr8B8="))]
        .iter()
        .enumerate()
    {
        let next = tokio::time::timeout(Duration::from_secs(10), requests.recv())
            .await
            .map_err(|_| "record-review-reply did not poll")?
            .ok_or("stand-in stopped")?;
        let request_id = format!("flood-{invocation}");
        let _ = next.reply.send(event_reply(&request_id, event));
        let answer = tokio::time::timeout(Duration::from_secs(60), requests.recv())
            .await
            .map_err(|_| "record-review-reply did not answer")?
            .ok_or("stand-in stopped")?;
        if !answer.path.ends_with(&format!("{request_id}/response")) {
            return Err(format!("webhook flood: invocation failed: {} {}", answer.method, answer.path).into());
        }
        peaks_kib.push(peak_rss_kib_of(pid));
        let _ = answer
            .reply
            .send(b"HTTP/1.1 202 Accepted\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n".to_vec());
    }
    function.kill().await?;
    server.abort();
    let extra_kib = peaks_kib[2].saturating_sub(peaks_kib[0]);
    Ok(json!({
        "flood_body_bytes": FLOOD_BODY_BYTES,
        "flood_params": FLOOD_BODY_BYTES / 2,
        "peak_rss_kib_signed_reply": peaks_kib[0],
        "peak_rss_kib_after_floods": peaks_kib[2],
        "flood_extra_rss_kib": extra_kib,
        "flood_extra_rss_per_body_byte": (extra_kib * 1024) as f64 / FLOOD_BODY_BYTES as f64,
    }))
}

/// The webhook URL the reply's signature is computed for (`REPLY_WEBHOOK_URL`), and its host.
const REPLY_HOST: &str = "bench.lambda-url.eu-west-3.on.aws";
const REPLY_URL: &str = "https://bench.lambda-url.eu-west-3.on.aws/";

/// What `cold_and_warm_invocations` sends each function, and how the results name it. The
/// scheduled jobs get a dry run, which changes nothing. The webhook gets a reply signed as
/// Twilio signs it, from a number with no pending review request: one DynamoDB query,
/// nothing written, answered 200.
fn invocation_payload(name: &str) -> (Value, Value) {
    if name != "record-review-reply" {
        let dry_run = json!({"dryRun": true});
        return (dry_run.clone(), dry_run);
    }
    let params: Vec<(String, String)> = [
        ("AccountSid", LOCAL_ACCOUNT_SID.to_owned()),
        ("Body", "5".to_owned()),
        ("From", "whatsapp:+33699999999".to_owned()),
        ("MessageSid", format!("SM{}", "0".repeat(32))),
        ("NumMedia", "0".to_owned()),
        ("To", format!("whatsapp:{LOCAL_WHATSAPP_FROM}")),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    let signature = SignatureValidator::new(AuthToken::new(LOCAL_AUTH_TOKEN)).sign(REPLY_URL, &params);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let event = json!({
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/x-www-form-urlencoded",
            "host": REPLY_HOST,
            "x-twilio-signature": signature,
        },
        "body": body,
        "isBase64Encoded": false,
        "requestContext": {"domainName": REPLY_HOST, "http": {"method": "POST"}},
    });
    let summary = json!("signed Twilio webhook POST, Body=5, from a number with no pending review request");
    (event, summary)
}

/// Two invocations in a row of one process (dry runs, so they change nothing): the first
/// pays for the clients' lazy set-up and first connection, the second is warm. Their
/// difference is what a warm-up call during init could move out of the first invocation.
async fn cold_and_warm_invocations(binary: &PathBuf, env: &[(String, String)], name: &str) -> Result<Value, Failure> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let runtime_api = listener.local_addr()?.to_string();
    let (mut requests, server) = serve_runtime_api(listener);
    let (payload, payload_summary) = invocation_payload(name);
    let runs = 5;
    let mut per_process = Vec::new();
    for _ in 0..runs {
        let mut function = spawn_function(binary, env, &runtime_api)?;
        let mut durations = Vec::new();
        for invocation in 0..2 {
            let next = tokio::time::timeout(Duration::from_secs(10), requests.recv())
                .await
                .map_err(|_| format!("{name} did not poll"))?
                .ok_or("stand-in stopped")?;
            if next.path != NEXT_PATH {
                return Err(format!("{name}: unexpected {} {}", next.method, next.path).into());
            }
            let request_id = format!("bench-{invocation}");
            let sent_at = Instant::now();
            let _ = next.reply.send(event_reply(&request_id, &payload));
            let answer = tokio::time::timeout(Duration::from_secs(60), requests.recv())
                .await
                .map_err(|_| format!("{name} did not answer"))?
                .ok_or("stand-in stopped")?;
            if !answer.path.ends_with(&format!("{request_id}/response")) {
                return Err(format!("{name}: invocation failed: {} {}", answer.method, answer.path).into());
            }
            durations.push(answer.at.duration_since(sent_at).as_secs_f64() * 1000.0);
            let _ = answer
                .reply
                .send(b"HTTP/1.1 202 Accepted\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n".to_vec());
        }
        per_process.push(durations);
        function.kill().await?;
        // Drop the pending `/next` of the killed process.
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), requests.recv()).await {}
    }
    server.abort();
    let first: Vec<f64> = per_process.iter().map(|d| d[0]).collect();
    let second: Vec<f64> = per_process.iter().map(|d| d[1]).collect();
    Ok(json!({
        "payload": payload_summary,
        "first_invocation_median_ms": median(&first),
        "second_invocation_median_ms": median(&second),
        "processes": runs,
    }))
}

// ---------------------------------------------------------------------------------------
// The table.
// ---------------------------------------------------------------------------------------

/// The results as the Markdown table of docs/benchmarks.md (`bench table` prints it from
/// bench/results.json; CI checks the doc against it).
fn results_table(results: &Value) -> String {
    let rows: Vec<(&str, String, &str)> = vec![
        (
            "sweep.table_carts / expired_carts",
            format!(
                "{} / {}",
                results["sweep"]["table_carts"], results["sweep"]["expired_carts"]
            ),
            "≥ 200,000 / 10 %",
        ),
        (
            "sweep.items_read_per_deleted",
            format!("{:.4}", f(&results["sweep"]["items_read_per_deleted"])),
            "≤ 1.05",
        ),
        (
            "sweep.requests_per_deleted",
            format!("{:.4}", f(&results["sweep"]["requests_per_deleted"])),
            "(1 DeleteItem + Query pages)",
        ),
        (
            "sweep.deleted_per_s",
            format!("{:.0}", f(&results["sweep"]["deleted_per_s"])),
            "",
        ),
        (
            "sweep.emulator_delete_ceiling_per_s",
            format!("{:.0}", f(&results["sweep"]["emulator_delete_ceiling_per_s"])),
            "",
        ),
        (
            "sweep.ceiling_ratio",
            format!("{:.3}", f(&results["sweep"]["ceiling_ratio"])),
            "≥ 0.8",
        ),
        (
            "sweep.cpu_ms_per_1000_deleted (10 % / 5×)",
            format!(
                "{:.0} / {:.0}",
                f(&results["sweep"]["cpu_ms_per_1000_deleted"]),
                f(&results["sweep"]["cpu_ms_per_1000_deleted_5x"])
            ),
            "(noisy on a shared machine; see make bench-instructions)",
        ),
        (
            "sweep.peak_rss_mb (10 %)",
            format!("{:.1}", f(&results["sweep"]["peak_rss_mb"])),
            "≤ 40",
        ),
        (
            "sweep.peak_rss_mb_5x",
            format!(
                "{:.1} ({} expired)",
                f(&results["sweep"]["peak_rss_mb_5x"]),
                results["sweep"]["expired_carts_5x"]
            ),
            "≤ 40",
        ),
        (
            "sweep.rss_growth_ratio",
            format!("{:.3}", f(&results["sweep"]["rss_growth_ratio"])),
            "≤ 1.2",
        ),
        (
            "reviews.due_orders",
            format!("{}", results["reviews"]["due_orders"]),
            "≥ 2,000",
        ),
        (
            "reviews.configured / achieved mps",
            format!(
                "{} / {:.2}",
                results["reviews"]["configured_mps"],
                f(&results["reviews"]["achieved_mps"])
            ),
            "",
        ),
        (
            "reviews.rate_ratio",
            format!("{:.3}", f(&results["reviews"]["rate_ratio"])),
            "0.95 – 1.02",
        ),
        (
            "reviews.dynamodb_requests_per_sent",
            format!("{:.3}", f(&results["reviews"]["dynamodb_requests_per_sent"])),
            "(has-review check, claim, settle)",
        ),
        (
            "reviews.max_sends_in_any_1s",
            format!("{}", results["reviews"]["max_sends_in_any_1s"]),
            "≤ configured mps",
        ),
        (
            "webhook.flood_extra_rss_per_body_byte",
            format!(
                "{:.2} ({:.1} → {:.1} MB, 3 MB of tiny parameters)",
                f(&results["webhook"]["flood_extra_rss_per_body_byte"]),
                f(&results["webhook"]["peak_rss_kib_signed_reply"]) / 1024.0,
                f(&results["webhook"]["peak_rss_kib_after_floods"]) / 1024.0
            ),
            "≤ 4 (the event's own copies, nothing per parameter)",
        ),
    ];
    let mut table = String::from("| metric | value | target |\n|---|---|---|\n");
    for (metric, value, target) in rows {
        table.push_str(&format!("| {metric} | {value} | {target} |\n"));
    }
    // One row each, the functions in name order.
    let per_function = |by_function: &Value, value: &dyn Fn(&Value) -> String| {
        let (names, values): (Vec<String>, Vec<String>) = by_function
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, entry)| (name.clone(), value(entry)))
            .unzip();
        (names.join(" / "), values.join(" / "))
    };
    let (names, sizes) = per_function(&results["binary"]["bootstrap_bytes_by_function"], &|bytes| {
        format!("{:.2} MiB", f(bytes) / 1048576.0)
    });
    table.push_str(&format!(
        "| binary.bootstrap_bytes ({names}) | {sizes} | ≤ 6 MiB each |\n"
    ));
    let (names, init) = per_function(&results["init"]["by_function"], &|init| {
        format!("{:.2}", f(&init["median_ms"]))
    });
    table.push_str(&format!(
        "| init.ms_to_first_poll, median ({names}) | {init} | ≤ 25 ms each |\n"
    ));
    table
}

/// `bench table [--results PATH]`: the table of a results file (default bench/results.json).
fn table(args: &[String]) -> Result<(), Failure> {
    let path = flag(args, "--results")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("results.json"));
    let results: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    print!("{}", results_table(&results));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use backoffice::jobs::record_review_reply::memory::{MemoryReplies, RecordingAlerts};
    use backoffice::jobs::record_review_reply::{FunctionUrlRequest, ReplyConfig, ReplyDeps};
    use backoffice::runtime::config::EnvSource;

    use super::*;

    /// The webhook's invocation in the benchmark must be one the function accepts (signed
    /// for the URL it checks), or the benchmark would time a 403.
    #[tokio::test]
    async fn the_reply_invocation_passes_the_functions_signature_check() {
        let env: HashMap<String, String> = function_env("http://127.0.0.1:1").into_iter().collect();
        let request: FunctionUrlRequest =
            serde_json::from_value(invocation_payload("record-review-reply").0).expect("a Function URL event");
        let token = env.var("TWILIO_AUTH_TOKEN").expect("the Twilio token is set");
        let deps = ReplyDeps {
            store: MemoryReplies::default(),
            alerts: RecordingAlerts::default(),
            validator: SignatureValidator::new(AuthToken::new(token)),
            clock: Arc::new(SystemClock),
            config: ReplyConfig::from_env(&env).expect("the benchmark's environment is a valid reply config"),
        };
        let response = backoffice::jobs::record_review_reply::respond(&deps, &request)
            .await
            .expect("answered");
        assert_eq!(response.status_code, 200, "{}", response.body);
    }

    #[test]
    fn the_scheduled_jobs_are_invoked_as_dry_runs() {
        for name in ["clean-expired-carts", "request-reviews"] {
            assert_eq!(invocation_payload(name).0, json!({"dryRun": true}));
        }
    }
}
