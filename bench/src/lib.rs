//! The benchmark's building blocks, shared by the `bench` binary (`make bench`) and the
//! cheap regression test that CI runs (`tests/counts.rs`).
//!
//! Everything goes through the real AWS SDK and HTTP stack against dynoxide served over
//! HTTP ([`devstack::embedded::EmbeddedDynamo`]); only bulk seeding writes straight into
//! the emulator's database, because seeding is not what is measured.

pub mod results;

pub use devstack::counter::RequestCounter;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use backoffice::domain::phone::PhoneNumber;
use backoffice::jobs::clean_expired_carts::dynamo::DynamoCarts;
use backoffice::jobs::clean_expired_carts::store::{CART_LIFETIME, Cart};
use backoffice::jobs::clean_expired_carts::{self, SweeperConfig, SweeperDeps};
use backoffice::runtime::clock::SystemClock;
use backoffice::runtime::job::Deadline;
use chrono::{DateTime, TimeDelta, Utc};
use devstack::template::{default_template_path, table_definitions};
use serde_json::{Value, json};

use crate::results::{Float, SweepMeasurement};

pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The DynamoDB client the functions build (`SdkConfig` from `aws::load_sdk_config`),
/// with the request counter added and nothing else changed.
pub fn counted_client(sdk_config: &SdkConfig, counter: &RequestCounter) -> Client {
    let config = aws_sdk_dynamodb::config::Builder::from(sdk_config)
        .interceptor(counter.clone())
        .build();
    Client::from_conf(config)
}

/// An `SdkConfig` for a local endpoint with the functions' timeouts and retries.
pub async fn local_sdk_config(endpoint: &str) -> SdkConfig {
    let settings = backoffice::aws::SdkSettings::default();
    backoffice::aws::config_loader(&settings)
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("eu-west-3"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local", "local", None, None, "bench",
        ))
        .load()
        .await
}

/// Creates one of the template's tables (`CartsTable`, `OrdersTable`, `ReviewsTable`)
/// under `name`, indexes and TTL included.
///
/// Without the table's stream: the emulator keeps a stream in the same database and each
/// write slows as it grows, which a DynamoDB stream never does to the table's writes; the
/// sweep and the review run are measured on what they do, not on that.
pub async fn create_table(client: &Client, logical_id: &str, name: &str) -> Result<(), Failure> {
    create(client, logical_id, name, false).await
}

/// [`create_table`] with the template's stream, for what reads it (derive-schedule).
pub async fn create_table_with_stream(client: &Client, logical_id: &str, name: &str) -> Result<(), Failure> {
    create(client, logical_id, name, true).await
}

async fn create(client: &Client, logical_id: &str, name: &str, with_stream: bool) -> Result<(), Failure> {
    let definitions = table_definitions(&default_template_path())?;
    let mut definition = definitions
        .into_iter()
        .find(|d| d.logical_id == logical_id)
        .ok_or_else(|| format!("template.yaml has no {logical_id}"))?;
    if !with_stream {
        definition.stream_specification = None;
    }
    definition.create(client, name).await?;
    Ok(())
}

fn phone(i: usize) -> PhoneNumber {
    PhoneNumber::parse(&format!("+3361{:07}", i % 10_000_000)).expect("a valid number")
}

/// The item [`DynamoCarts::put`] writes for `cart`, as dynoxide stores it.
fn cart_item(cart: &Cart) -> Result<dynoxide::Item, Failure> {
    let item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> = serde_dynamo::to_item(cart)?;
    item.into_iter()
        .map(|(name, value)| {
            let value = match value {
                aws_sdk_dynamodb::types::AttributeValue::S(s) => dynoxide::AttributeValue::S(s),
                aws_sdk_dynamodb::types::AttributeValue::N(n) => dynoxide::AttributeValue::N(n),
                other => return Err(format!("unexpected attribute {name}: {other:?}").into()),
            };
            Ok((name, value))
        })
        .collect()
}

/// The carts of one data set. Ids are `{prefix}-x-NNNNNNN` (expired) and
/// `{prefix}-l-NNNNNNN` (live), so the deletes of the ceiling run know their keys.
#[derive(Debug, Clone, Copy)]
pub struct CartSet<'a> {
    pub prefix: &'a str,
    pub expired: usize,
    pub live: usize,
}

pub fn live_cart_id(prefix: &str, i: usize) -> String {
    format!("{prefix}-l-{i:07}")
}

/// Writes the carts straight into the emulator's database (one SQLite transaction per
/// chunk, index entries maintained), exactly as `DynamoCarts::put` would shape them:
/// expired carts created 25 h to 73 h before `now`, live ones within the last 23 h.
pub fn import_carts(db: &dynoxide::Database, table: &str, now: DateTime<Utc>, set: CartSet<'_>) -> Result<(), Failure> {
    const CHUNK: usize = 20_000;
    let mut chunk = Vec::with_capacity(CHUNK);
    let total = set.expired + set.live;
    for n in 0..total {
        let cart = if n < set.expired {
            let created = now - CART_LIFETIME - TimeDelta::minutes(60 + (n as i64 * 37) % 2880);
            Cart::new(format!("{}-x-{n:07}", set.prefix), phone(n), created)
        } else {
            let i = n - set.expired;
            let created = now - TimeDelta::minutes((i as i64 * 13) % (23 * 60));
            Cart::new(live_cart_id(set.prefix, i), phone(n), created)
        };
        chunk.push(cart_item(&cart)?);
        if chunk.len() == CHUNK || n + 1 == total {
            db.import_items(table, std::mem::take(&mut chunk), dynoxide::ImportOptions::default())?;
        }
    }
    Ok(())
}

/// What one sweep run measured.
#[derive(Debug, Clone)]
pub struct SweepRun {
    pub response: Value,
    pub deleted: u64,
    pub items_read: u64,
    pub requests: BTreeMap<String, u64>,
    pub requests_total: u64,
    pub elapsed_s: f64,
}

impl SweepRun {
    pub fn items_read_per_deleted(&self) -> f64 {
        self.items_read as f64 / self.deleted.max(1) as f64
    }

    pub fn requests_per_deleted(&self) -> f64 {
        self.requests_total as f64 / self.deleted.max(1) as f64
    }

    pub fn deleted_per_s(&self) -> f64 {
        self.deleted as f64 / self.elapsed_s
    }

    /// What `bench sweep-only` prints (one line of JSON), with the child's own readings.
    pub fn measurement(self, peak_rss_kib: u64, rss_at_start_kib: u64, cpu_ms: u64) -> SweepMeasurement {
        SweepMeasurement {
            cpu_ms,
            deleted: self.deleted,
            deleted_per_s: Float(self.deleted_per_s()),
            elapsed_s: Float(self.elapsed_s),
            items_read: self.items_read,
            items_read_per_deleted: Float(self.items_read_per_deleted()),
            peak_rss_kib,
            requests_per_deleted: Float(self.requests_per_deleted()),
            requests_total: self.requests_total,
            rss_at_start_kib,
            requests: self.requests,
            response: self.response,
        }
    }
}

/// One run of the clean-expired-carts job as the handler runs it (`clean_expired_carts::run`, the
/// function's default settings: `SWEEP_PAGE_SIZE` 500, `SWEEP_CONCURRENCY` 32), with a
/// client whose requests are counted.
pub async fn measure_sweep(
    client: Client,
    counter: &RequestCounter,
    table: &str,
    batch_size: Option<usize>,
) -> Result<SweepRun, Failure> {
    let mut env: std::collections::HashMap<String, String> = [("CARTS_TABLE".to_string(), table.to_string())].into();
    if let Some(batch_size) = batch_size {
        env.insert("SWEEP_BATCH_SIZE".into(), batch_size.to_string());
    }
    let deps = SweeperDeps {
        store: DynamoCarts::new(client, table),
        clock: Arc::new(SystemClock),
        config: SweeperConfig::from_env(&env)?,
    };
    let before = counter.total();
    let started = Instant::now();
    let response = clean_expired_carts::run(&deps, &json!({}), Deadline::unbounded()).await?;
    let elapsed_s = started.elapsed().as_secs_f64();
    let requests_total = counter.total() - before;
    Ok(SweepRun {
        deleted: response.report.deleted,
        items_read: response.report.items_read,
        response: serde_json::to_value(&response)?,
        requests: counter.by_operation(),
        requests_total,
        elapsed_s,
    })
}

/// `VmHWM` (peak resident set) of this process, in KiB.
pub fn peak_rss_kib() -> u64 {
    proc_status_kib("VmHWM:")
}

/// `VmRSS` (current resident set) of this process, in KiB.
pub fn rss_kib() -> u64 {
    proc_status_kib("VmRSS:")
}

/// `VmHWM` (peak resident set) of another process, in KiB.
pub fn peak_rss_kib_of(pid: u32) -> u64 {
    status_kib(&format!("/proc/{pid}/status"), "VmHWM:")
}

fn proc_status_kib(field: &str) -> u64 {
    status_kib("/proc/self/status", field)
}

fn status_kib(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) this process has used so far, in ms (`/proc/self/stat`,
/// clock ticks of 10 ms).
pub fn cpu_ms() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) * 10)
        })
        .unwrap_or(0)
}
