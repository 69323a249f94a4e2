//! The benchmark's machine-independent counts, as a cheap regression check for CI (it runs
//! with `cargo test --workspace`, in the debug profile; counts do not depend on the build
//! profile nor on the machine):
//!
//! - a sweep of a table reads about one index item per cart it deletes
//!   (`items_read_per_deleted`), and deletes them 25 to a request (`requests_per_deleted`),
//!   whatever the table's size;
//! - the committed `bench/results.json` meets the count and size targets, and reads into
//!   the typed results ([`bench::results::Results`]) without losing or reordering a key.
//!
//! Timings are not checked here: they depend on the machine. `make bench` measures them.

use std::path::Path;

use bench::results::Results;
use bench::{CartSet, RequestCounter, counted_client, create_table, import_carts, local_sdk_config, measure_sweep};
use chrono::Utc;
use devstack::embedded::EmbeddedDynamo;
use serde_json::Value;

/// The benchmark's targets for the counts (see docs/benchmarks.md).
const MAX_ITEMS_READ_PER_DELETED: f64 = 1.05;
const MAX_REQUESTS_PER_DELETED: f64 = 0.06;
/// The target for a function's stripped arm64 `bootstrap` (docs/benchmarks.md). The committed
/// results must meet it; `scripts/test.sh` checks the same limit on what `sam build` makes.
const MAX_BOOTSTRAP_BYTES: u64 = 6 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_reads_once_per_deleted_cart_and_deletes_them_25_to_a_request() {
    let emulator = EmbeddedDynamo::start().expect("dynoxide");
    let sdk_config = local_sdk_config(&emulator.endpoint).await;
    let admin = aws_sdk_dynamodb::Client::new(&sdk_config);
    let table = "counts-carts";
    create_table(&admin, "CartsTable", table).await.expect("table");
    // 10 % expired, as in the benchmark, at a tenth of its size.
    let (expired, live) = (2_000, 18_000);
    import_carts(
        &emulator.database,
        table,
        Utc::now(),
        CartSet {
            prefix: "t",
            expired,
            live,
        },
    )
    .expect("seed");

    let counter = RequestCounter::default();
    let run = measure_sweep(counted_client(&sdk_config, &counter), &counter, table, None)
        .await
        .expect("sweep");

    assert_eq!(run.deleted, expired as u64, "{:?}", run.response);
    // A page's last cart alone goes as one DeleteItem: at most one per shard here.
    assert!(
        counter.get("DeleteItem") <= 16,
        "due carts deleted in batches, not alone: {:?}",
        run.requests
    );
    // Each shard's page in batches of 25 (125 carts per shard: 5 batches).
    assert!(
        counter.get("BatchExecuteStatement") <= (expired as u64).div_ceil(25) + 16,
        "{:?}",
        run.requests
    );
    assert!(
        run.items_read_per_deleted() <= MAX_ITEMS_READ_PER_DELETED,
        "items read per deleted cart: {} (items read {}, deleted {}); the sweep must read only what is due",
        run.items_read_per_deleted(),
        run.items_read,
        run.deleted
    );
    assert!(
        run.requests_per_deleted() <= MAX_REQUESTS_PER_DELETED,
        "DynamoDB requests per deleted cart: {} ({:?})",
        run.requests_per_deleted(),
        run.requests
    );
    // 16 shards, 125 due carts each: one Query page per shard.
    assert!(counter.get("Query") <= 16 * 2, "{:?}", run.requests);
}

fn committed_results_text() -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("results.json");
    std::fs::read_to_string(&path).ok()
}

fn committed_results() -> Option<Results> {
    let text = committed_results_text()?;
    Some(serde_json::from_str(&text).expect("bench/results.json reads as bench::results::Results"))
}

#[test]
fn the_committed_results_meet_the_count_and_size_targets() {
    let Some(results) = committed_results() else {
        eprintln!("no bench/results.json yet: run `make bench`");
        return;
    };
    let (sweep, reviews) = (&results.sweep, &results.reviews);
    let items = sweep.items_read_per_deleted.0;
    assert!(
        items <= MAX_ITEMS_READ_PER_DELETED,
        "sweep.items_read_per_deleted {items}"
    );
    let requests = sweep.requests_per_deleted.0;
    assert!(
        requests <= MAX_REQUESTS_PER_DELETED,
        "sweep.requests_per_deleted {requests}"
    );
    assert!(sweep.table_carts >= 200_000);
    assert!(reviews.due_orders >= 2_000);
    // An unauthenticated flood of tiny parameters costs the event's own copies only.
    let webhook = results.webhook.as_ref().expect("webhook: measured by `make bench`");
    let flood = webhook.flood_extra_rss_per_body_byte.0;
    assert!(flood <= 4.0, "webhook.flood_extra_rss_per_body_byte {flood} > 4");
    // The dispatcher reads what is due, not the messages table.
    let lifecycle = results.lifecycle.as_ref().expect("lifecycle: measured by `make bench`");
    let per_sent = lifecycle.items_read_per_delayed_sent.0;
    assert!(
        per_sent <= MAX_ITEMS_READ_PER_DELETED,
        "lifecycle.items_read_per_delayed_sent {per_sent}"
    );
    assert!(lifecycle.delayed_sent > 0 && lifecycle.messages_in_table > 2 * lifecycle.delayed_sent);
    let by_function = &results.binary.bootstrap_bytes_by_function;
    assert!(by_function.len() >= 3, "one bootstrap per function: {by_function:?}");
    for (function, &bytes) in by_function {
        assert!(
            bytes <= MAX_BOOTSTRAP_BYTES,
            "{function}: bootstrap is {bytes} bytes, over the 6 MiB target ({MAX_BOOTSTRAP_BYTES})"
        );
    }
}

/// The typed results write exactly what the file holds: every key, at the same place, in
/// the same order, with the same numbers (both sides print the same parsed f64s).
#[test]
fn the_typed_results_keep_every_key_of_the_committed_file() {
    let Some(text) = committed_results_text() else {
        eprintln!("no bench/results.json yet: run `make bench`");
        return;
    };
    let typed: Results = serde_json::from_str(&text).expect("bench/results.json reads as bench::results::Results");
    let untyped: Value = serde_json::from_str(&text).expect("bench/results.json is JSON");
    assert_eq!(
        serde_json::to_string_pretty(&typed).expect("serialized"),
        serde_json::to_string_pretty(&untyped).expect("serialized")
    );
}
