//! The sweeps of clean-expired-carts and the emulator's delete ceiling. Each is measured in
//! a child process (this binary again: `bench sweep-only`, `bench ceiling`), so that its
//! memory and CPU time are its own.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Instant;

use aws_sdk_dynamodb::types::AttributeValue;
use backoffice::aws::{SdkSettings, load_sdk_config};
use bench::results::{Ceiling, Float, LargeSweep, Sweep, SweepMeasurement, SweepPair};
use bench::{
    CartSet, Failure, RequestCounter, counted_client, cpu_ms, create_table, import_carts, live_cart_id, measure_sweep,
    peak_rss_kib, rss_kib,
};
use chrono::{DateTime, Utc};
use devstack::embedded::EmbeddedDynamo;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::cli::{CeilingOptions, DeleteShape, RunOptions};
use crate::run::log;

/// `bench sweep-only`: the sweep in a process of its own, with the function's SDK
/// configuration (read from the environment, as `clean-expired-carts` does), so that its
/// peak RSS is the job's. Prints one line of JSON.
pub async fn sweep_only(table: &str, batch_size: Option<usize>) -> Result<(), Failure> {
    let rss_at_start_kib = rss_kib();
    let cpu_at_start_ms = cpu_ms();
    let sdk_config = load_sdk_config(&SdkSettings::from_env(&backoffice::runtime::config::ProcessEnv)?).await;
    let counter = RequestCounter::default();
    let client = counted_client(&sdk_config, &counter);
    let run = measure_sweep(client, &counter, table, batch_size).await?;
    let measurement = run.measurement(peak_rss_kib(), rss_at_start_kib, cpu_ms() - cpu_at_start_ms);
    println!("{}", serde_json::to_string(&measurement)?);
    Ok(())
}

/// `bench naive-sweep`: what a naive port of the sweep does, for comparison: `Scan` the
/// whole table with a filter on `expiresAt`, and delete what it finds with
/// `BatchWriteItem` (25 unconditional deletes a request, 8 requests in flight, unprocessed
/// items sent again). Same SDK configuration as the job; prints one line of JSON.
pub async fn naive_sweep(table: &str) -> Result<(), Failure> {
    use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
    let rss_at_start_kib = rss_kib();
    let cpu_at_start_ms = cpu_ms();
    let sdk_config = load_sdk_config(&SdkSettings::from_env(&backoffice::runtime::config::ProcessEnv)?).await;
    let counter = RequestCounter::default();
    let client = counted_client(&sdk_config, &counter);
    let now = Utc::now().timestamp();
    let started = Instant::now();
    let (mut deleted, mut items_read) = (0u64, 0u64);
    let mut start_key = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .filter_expression("expiresAt <= :now")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .projection_expression("cartId")
            .set_exclusive_start_key(start_key.take())
            .send()
            .await?;
        items_read += u64::try_from(page.scanned_count).unwrap_or_default();
        let keys: Vec<_> = page.items().to_vec();
        let batches: Vec<Vec<WriteRequest>> = keys
            .chunks(25)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|key| {
                        let delete = DeleteRequest::builder().set_key(Some(key.clone())).build()?;
                        Ok(WriteRequest::builder().delete_request(delete).build())
                    })
                    .collect::<Result<Vec<_>, aws_sdk_dynamodb::error::BuildError>>()
            })
            .collect::<Result<_, _>>()?;
        let written = futures::stream::iter(batches)
            .map(|mut requests| {
                let client = &client;
                async move {
                    let count = requests.len() as u64;
                    while !requests.is_empty() {
                        let output = client.batch_write_item().request_items(table, requests).send().await?;
                        requests = output
                            .unprocessed_items
                            .and_then(|mut left| left.remove(table))
                            .unwrap_or_default();
                    }
                    Ok::<u64, Failure>(count)
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        for count in written {
            deleted += count?;
        }
        match page.last_evaluated_key.filter(|key| !key.is_empty()) {
            Some(key) => start_key = Some(key),
            None => break,
        }
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let run = bench::SweepRun {
        response: serde_json::json!({"naive": "Scan + BatchWriteItem", "failed": 0}),
        deleted,
        items_read,
        requests: counter.by_operation(),
        requests_total: counter.total(),
        elapsed_s,
    };
    let measurement = run.measurement(peak_rss_kib(), rss_at_start_kib, cpu_ms() - cpu_at_start_ms);
    println!("{}", serde_json::to_string(&measurement)?);
    Ok(())
}

/// `bench ceiling`: the emulator's own delete rate on keys known in advance, in requests
/// of one shape (`--shape`), through the same SDK client configuration as the sweeper,
/// `concurrency` requests in flight. Prints one line of JSON.
///
/// Each conditional shape carries the job's condition with a bound every cart meets, so
/// that every key is deleted and each shape does the same work per cart.
pub async fn ceiling(options: &CeilingOptions) -> Result<(), Failure> {
    let CeilingOptions {
        table,
        prefix,
        start,
        count,
        concurrency,
        shape,
    } = options;
    let sdk_config = load_sdk_config(&SdkSettings::from_env(&backoffice::runtime::config::ProcessEnv)?).await;
    let counter = RequestCounter::default();
    let client = counted_client(&sdk_config, &counter);
    let keys: Vec<String> = (*start..start + count).map(|i| live_cart_id(prefix, i)).collect();
    let bound = Utc::now().timestamp() + 365 * 24 * 3600;
    let started = Instant::now();
    let deleted: usize = futures::stream::iter(keys.chunks(shape.keys_per_request()))
        .map(|chunk| delete_keys(&client, table, *shape, chunk, bound))
        .buffer_unordered(*concurrency)
        .fold(0, |sum, deleted| futures::future::ready(sum + deleted))
        .await;
    let elapsed_s = started.elapsed().as_secs_f64();
    let result = Ceiling {
        deleted,
        failed: count - deleted,
        concurrency: *concurrency,
        elapsed_s: Float(elapsed_s),
        deleted_per_s: Float(deleted as f64 / elapsed_s),
        requests_total: counter.total(),
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// One request of `shape` deleting `keys`; how many it deleted (none when it failed).
async fn delete_keys(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    shape: DeleteShape,
    keys: &[String],
    bound: i64,
) -> usize {
    use aws_sdk_dynamodb::types::{Delete, DeleteRequest, TransactWriteItem, WriteRequest};
    use backoffice::jobs::clean_expired_carts::dynamo::DynamoCarts;
    use backoffice::jobs::clean_expired_carts::store::{BatchedDelete, CartStore, DeleteOutcome};
    let key = |id: &String| AttributeValue::S(id.clone());
    match shape {
        DeleteShape::DeleteItem => {
            let sent = client
                .delete_item()
                .table_name(table)
                .key("cartId", key(&keys[0]))
                .send();
            usize::from(sent.await.is_ok())
        }
        DeleteShape::BatchWrite => {
            let requests = keys.iter().filter_map(|id| {
                let delete = DeleteRequest::builder().key("cartId", key(id)).build().ok()?;
                Some(WriteRequest::builder().delete_request(delete).build())
            });
            let sent = client
                .batch_write_item()
                .request_items(table, requests.collect())
                .send();
            match sent.await {
                Ok(output) => {
                    keys.len()
                        - output
                            .unprocessed_items()
                            .and_then(|left| left.get(table))
                            .map_or(0, Vec::len)
                }
                Err(_) => 0,
            }
        }
        DeleteShape::PartiqlBatch => {
            let answers = DynamoCarts::new(client.clone(), table)
                .delete_batch_if_expired(keys, bound)
                .await
                .unwrap_or_default();
            answers
                .iter()
                .filter(|answer| matches!(answer, BatchedDelete::Done(DeleteOutcome::Deleted)))
                .count()
        }
        DeleteShape::Transaction => {
            let deletes = keys.iter().filter_map(|id| {
                let delete = Delete::builder()
                    .table_name(table)
                    .key("cartId", key(id))
                    .condition_expression("attribute_exists(cartId) AND #expiresAt <= :now")
                    .expression_attribute_names("#expiresAt", "expiresAt")
                    .expression_attribute_values(":now", AttributeValue::N(bound.to_string()))
                    .build()
                    .ok()?;
                Some(TransactWriteItem::builder().delete(delete).build())
            });
            let sent = client
                .transact_write_items()
                .set_transact_items(Some(deletes.collect()))
                .send();
            if sent.await.is_ok() { keys.len() } else { 0 }
        }
    }
}

/// Runs this binary again with `args`, with the environment a function would have against
/// the emulator, and reads the JSON line it prints.
async fn child<T: DeserializeOwned>(endpoint: &str, args: &[&str]) -> Result<T, Failure> {
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

/// The emulator the sweeps run against, and what seeds its tables.
pub struct Stack<'a> {
    pub emulator: &'a EmbeddedDynamo,
    pub admin: &'a aws_sdk_dynamodb::Client,
    pub now: DateTime<Utc>,
    pub started: Instant,
}

impl Stack<'_> {
    async fn seed(&self, table: &str, set: CartSet<'_>) -> Result<(), Failure> {
        create_table(self.admin, "CartsTable", table).await?;
        import_carts(&self.emulator.database, table, self.now, set)
    }

    /// A table of `carts` carts of which `expired` are due, then one sweep of it.
    async fn seed_and_sweep(
        &self,
        table: &str,
        prefix: &str,
        expired: usize,
        carts: usize,
    ) -> Result<SweepMeasurement, Failure> {
        let set = CartSet {
            prefix,
            expired,
            live: carts - expired,
        };
        self.seed(table, set).await?;
        log(self.started, format!("seeded {table}: {expired} expired of {carts}"));
        self.sweep(table, expired).await
    }

    /// One sweep of `table` in a child process, which must delete the `expected` carts.
    async fn sweep(&self, table: &str, expected: usize) -> Result<SweepMeasurement, Failure> {
        self.sweep_with(table, expected, &["sweep-only", "--table", table])
            .await
    }

    /// A child process's sweep (`args`), which must delete the `expected` carts.
    async fn sweep_with(&self, table: &str, expected: usize, args: &[&str]) -> Result<SweepMeasurement, Failure> {
        let run: SweepMeasurement = child(&self.emulator.endpoint, args).await?;
        check_sweep(&run, expected)?;
        log(
            self.started,
            format!(
                "{} {table}: {} deleted at {:.0}/s, {} ms CPU, {:.3} requests per deleted, peak RSS {:.1} MB",
                args[0],
                run.deleted,
                run.deleted_per_s,
                run.cpu_ms,
                run.requests_per_deleted,
                kib_to_mb(run.peak_rss_kib)
            ),
        );
        Ok(run)
    }

    /// The job and the naive sweep on identical tables of `carts` with `expired` due,
    /// [`NAIVE_ROUNDS`] times. Each round has an emulator of its own, so that neither side
    /// pays for what earlier measurements left in the database, and the side that goes
    /// first alternates. The round with the median ratio is kept, with every round's ratio.
    async fn compare_with_naive(&self, label: &str, expired: usize, carts: usize) -> Result<SweepPair, Failure> {
        let mut rounds = Vec::with_capacity(NAIVE_ROUNDS);
        for round in 0..NAIVE_ROUNDS {
            let emulator = EmbeddedDynamo::start()?;
            let admin = aws_sdk_dynamodb::Client::new(&bench::local_sdk_config(&emulator.endpoint).await);
            let stack = Stack {
                emulator: &emulator,
                admin: &admin,
                now: self.now,
                started: self.started,
            };
            let set = |prefix| CartSet {
                prefix,
                expired,
                live: carts - expired,
            };
            let ours_table = format!("bench-{label}-ours");
            let naive_table = format!("bench-{label}-naive");
            stack.seed(&ours_table, set("o")).await?;
            stack.seed(&naive_table, set("n")).await?;
            log(
                self.started,
                format!(
                    "round {}: seeded {ours_table} and {naive_table} on a fresh emulator: {expired} expired of {carts}",
                    round + 1
                ),
            );
            let naive_args = ["naive-sweep", "--table", naive_table.as_str()];
            let (ours, naive) = if round % 2 == 0 {
                let ours = stack.sweep(&ours_table, expired).await?;
                (ours, stack.sweep_with(&naive_table, expired, &naive_args).await?)
            } else {
                let naive = stack.sweep_with(&naive_table, expired, &naive_args).await?;
                (stack.sweep(&ours_table, expired).await?, naive)
            };
            rounds.push((ours.deleted_per_s.0 / naive.deleted_per_s.0, ours, naive));
        }
        rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let ratios_by_round = rounds.iter().map(|(ratio, ..)| Float(*ratio)).collect();
        let (ratio, ours, naive) = rounds.swap_remove(rounds.len() / 2);
        Ok(SweepPair {
            expired_carts: expired,
            ratio: Float(ratio),
            ratios_by_round,
            naive,
            ours,
        })
    }
}

/// `bench ceiling` in a child process: the live carts `keys` of `table` (prefix `a`)
/// deleted in requests of `shape`, `concurrency` in flight.
async fn ceiling_run(
    endpoint: &str,
    table: &str,
    keys: std::ops::Range<usize>,
    concurrency: usize,
    shape: DeleteShape,
) -> Result<Ceiling, Failure> {
    let (start, count, concurrency) = (keys.start.to_string(), keys.len().to_string(), concurrency.to_string());
    let args = [
        "ceiling",
        "--table",
        table,
        "--prefix",
        "a",
        "--start",
        &start,
        "--count",
        &count,
        "--concurrency",
        &concurrency,
        "--shape",
        shape.name(),
    ];
    child(endpoint, &args).await
}

/// Rounds of each comparison with the naive sweep (odd, for a median).
const NAIVE_ROUNDS: usize = 3;

fn kib_to_mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn check_sweep(run: &SweepMeasurement, expected: usize) -> Result<(), Failure> {
    let response = &run.response;
    if run.deleted != expected as u64 || response["failed"].as_u64() != Some(0) {
        return Err(format!(
            "the sweep deleted {} of {expected} expired carts: {response}",
            run.deleted
        )
        .into());
    }
    Ok(())
}

/// The emulator's ceiling at 32, 64 and 128 deletes in flight, then a sweep of a table
/// with `--expired-pct` expired carts, one with `--scale` times more, and optionally one of
/// `--large-carts` carts.
pub async fn measure_sweeps(stack: &Stack<'_>, options: &RunOptions) -> Result<Sweep, Failure> {
    let &RunOptions {
        carts,
        expired_pct,
        scale,
        large_carts,
        ceiling_keys,
        ..
    } = options;
    let endpoint = stack.emulator.endpoint.as_str();

    // ---- Sweep, 10 %: the ceiling first, on keys of the same table, then the job. ----
    let expired = carts * expired_pct / 100;
    let ceiling_levels = [32usize, 64, 128];
    let table_a = "bench-a-carts";
    let live = carts - expired + ceiling_keys * (ceiling_levels.len() + DeleteShape::ALL.len());
    stack
        .seed(
            table_a,
            CartSet {
                prefix: "a",
                expired,
                live,
            },
        )
        .await?;
    log(
        stack.started,
        format!("seeded {table_a}: {expired} expired of {carts} (+ ceiling keys)"),
    );
    let mut ceiling_by_concurrency = BTreeMap::new();
    for (k, concurrency) in ceiling_levels.iter().enumerate() {
        let keys = k * ceiling_keys..(k + 1) * ceiling_keys;
        let result = ceiling_run(endpoint, table_a, keys, *concurrency, DeleteShape::DeleteItem).await?;
        log(
            stack.started,
            format!(
                "ceiling at {concurrency} in flight: {:.0} deletes/s",
                result.deleted_per_s
            ),
        );
        ceiling_by_concurrency.insert(concurrency.to_string(), result);
    }
    // The same number of carts deleted by each request shape a sweep could use, at equal
    // requests in flight: what a delete costs the emulator, condition and batch included.
    let mut ceiling_by_shape = BTreeMap::new();
    for (k, shape) in DeleteShape::ALL.iter().enumerate() {
        let first = (ceiling_levels.len() + k) * ceiling_keys;
        let result = ceiling_run(endpoint, table_a, first..first + ceiling_keys, 8, *shape).await?;
        if result.failed > 0 {
            return Err(format!("ceiling --shape {}: {} deletes failed", shape.name(), result.failed).into());
        }
        log(
            stack.started,
            format!(
                "{}: {:.1} µs of emulator per deleted cart",
                shape.name(),
                1e6 / result.deleted_per_s.0
            ),
        );
        ceiling_by_shape.insert(shape.name().to_string(), result);
    }
    let ceiling_per_s = ceiling_by_concurrency
        .values()
        .map(|r| r.deleted_per_s.0)
        .fold(0.0, f64::max);
    let sweep_a = stack.sweep(table_a, expired).await?;

    // ---- Sweep, K times more expired carts in a table of the same size. ----
    let expired_b = (expired * scale).min(carts);
    let sweep_b = stack.seed_and_sweep("bench-b-carts", "b", expired_b, carts).await?;

    // ---- The same sweep as the 10 % one, one DeleteItem per cart: the CPU baseline. ----
    let table_p = "bench-p-carts";
    stack
        .seed(
            table_p,
            CartSet {
                prefix: "p",
                expired,
                live: carts - expired,
            },
        )
        .await?;
    let per_item = stack
        .sweep_with(
            table_p,
            expired,
            &["sweep-only", "--table", table_p, "--batch-size", "1"],
        )
        .await?;
    let cpu_per_deleted = |run: &SweepMeasurement| run.cpu_ms as f64 / run.deleted.max(1) as f64;

    // ---- Against a naive Scan + BatchWriteItem sweep, 5 % and 100 % expired. ----
    let naive_carts = options.naive_carts;
    let naive_5pct = stack
        .compare_with_naive("n5", naive_carts * 5 / 100, naive_carts)
        .await?;
    let naive_100pct = stack.compare_with_naive("n100", naive_carts, naive_carts).await?;

    // ---- Optional: a larger table at the same expired share. ----
    let large = if large_carts > 0 {
        let expired_c = large_carts * expired_pct / 100;
        let run = stack
            .seed_and_sweep("bench-c-carts", "c", expired_c, large_carts)
            .await?;
        Some(LargeSweep {
            table_carts: large_carts,
            expired_carts: expired_c,
            run,
        })
    } else {
        None
    };

    let rss_a = kib_to_mb(sweep_a.peak_rss_kib);
    let rss_b = kib_to_mb(sweep_b.peak_rss_kib);
    let deleted_per_s = sweep_a.deleted_per_s.0;
    Ok(Sweep {
        table_carts: carts,
        expired_carts: expired,
        items_read_per_deleted: sweep_a.items_read_per_deleted,
        requests_per_deleted: sweep_a.requests_per_deleted,
        deleted_per_s: Float(deleted_per_s),
        emulator_delete_ceiling_per_s: Float(ceiling_per_s),
        ceiling_ratio: Float(deleted_per_s / ceiling_per_s),
        peak_rss_mb: Float(rss_a),
        expired_carts_5x: expired_b,
        peak_rss_mb_5x: Float(rss_b),
        rss_growth_ratio: Float(rss_b / rss_a),
        items_read_per_deleted_5x: sweep_b.items_read_per_deleted,
        requests_per_deleted_5x: sweep_b.requests_per_deleted,
        deleted_per_s_5x: sweep_b.deleted_per_s,
        ceiling_ratio_5x: Float(sweep_b.deleted_per_s.0 / ceiling_per_s),
        cpu_ms_per_1000_deleted: Float(sweep_a.cpu_ms as f64 * 1000.0 / sweep_a.deleted as f64),
        cpu_ms_per_1000_deleted_5x: Float(sweep_b.cpu_ms as f64 * 1000.0 / sweep_b.deleted as f64),
        ceiling_by_concurrency,
        ceiling_by_shape,
        cpu_ratio_vs_per_item: Float(cpu_per_deleted(&sweep_a) / cpu_per_deleted(&per_item)),
        vs_naive_5pct: naive_5pct.ratio,
        vs_naive_100pct: naive_100pct.ratio,
        naive_table_carts: naive_carts,
        naive_5pct: Some(naive_5pct),
        naive_100pct: Some(naive_100pct),
        per_item: Some(per_item),
        run_10pct: sweep_a,
        run_5x: sweep_b,
        large,
    })
}
