//! `derive-schedule`: the DynamoDB Streams consumer of the carts and orders tables. The
//! shop's app writes business attributes only; this function adds what the jobs' indexes
//! need (`expiryShard`, a missing `expiresAt`, a completed order's place in line for its
//! review request), so no writer computes a shard.
//!
//! Each record is applied with a conditional write against the item as it is now, so a
//! duplicated, replayed or out-of-order record changes nothing, and an item this function
//! has completed derives nothing more: its own writes, read back from the stream, end there.
//! A record that cannot be read is counted with its reason and skipped; a failed write
//! is reported as the batch's first failure so that Lambda retries from it.

pub mod config;
pub mod derive;
pub mod dynamo;
mod metrics;
pub mod store;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::{Error, LambdaEvent};
use serde::Deserialize;
use serde_json::value::RawValue;

pub use self::config::{DeriveConfig, SourceTable};
use self::derive::{derive_cart, derive_order};
use self::store::{Applied, ScheduleStore};
use crate::runtime::metrics::emit;
use crate::store::dynamo::Item;

pub const FUNCTION_NAME: &str = "derive-schedule";

pub struct DeriveDeps<S> {
    pub store: S,
    pub config: DeriveConfig,
}

/// Lambda's DynamoDB Streams event, each record kept raw so that one that cannot be read
/// is skipped alone.
#[derive(Debug, Default, Deserialize)]
pub struct StreamBatch {
    #[serde(rename = "Records", default)]
    pub records: Vec<Box<RawValue>>,
}

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// Derived attributes written.
    pub derived: u64,
    /// Nothing to derive: complete already (this function's own writes included), not
    /// completed, or a removal.
    pub unchanged: u64,
    /// The item changed or went away since the record: a later record carries it.
    pub superseded: u64,
    /// Records that cannot be used, by reason.
    pub unusable: BTreeMap<&'static str, u64>,
    /// Records left for Lambda to retry (the first failure and all after it).
    pub failed: u64,
}

pub async fn handle<S: ScheduleStore>(
    deps: &DeriveDeps<S>,
    event: LambdaEvent<StreamBatch>,
) -> Result<DynamoDbEventResponse, Error> {
    let (report, response) = process(deps, &event.payload).await;
    report.log(event.payload.records.len());
    emit(&metrics::metrics(&report));
    Ok(response)
}

/// Applies the batch's records in order, stopping at the first failed write: Lambda
/// retries from that record, and the records after it come again with it.
pub async fn process<S: ScheduleStore>(
    deps: &DeriveDeps<S>,
    batch: &StreamBatch,
) -> (BatchReport, DynamoDbEventResponse) {
    let mut report = BatchReport::default();
    let mut response = DynamoDbEventResponse::default();
    for (position, raw) in batch.records.iter().enumerate() {
        let record = match serde_json::from_str::<EventRecord>(raw.get()) {
            Ok(record) => record,
            Err(_) => {
                *report.unusable.entry("unreadable_record").or_default() += 1;
                continue;
            }
        };
        let derivation = match derivation_of(&deps.config, &record) {
            Ok(Some(derivation)) => derivation,
            Ok(None) => {
                report.unchanged += 1;
                continue;
            }
            Err(reason) => {
                *report.unusable.entry(reason).or_default() += 1;
                continue;
            }
        };
        match deps.store.apply(&derivation).await {
            Ok(Applied::Written) => report.derived += 1,
            Ok(Applied::Superseded) => report.superseded += 1,
            Err(error) => {
                tracing::warn!(function = FUNCTION_NAME, %error, "derived attributes not written; Lambda retries from this record");
                report.failed = (batch.records.len() - position) as u64;
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = record.change.sequence_number.clone();
                response.batch_item_failures.push(failure);
                break;
            }
        }
    }
    (report, response)
}

fn derivation_of(config: &DeriveConfig, record: &EventRecord) -> Result<Option<derive::Derivation>, &'static str> {
    if record.event_name == "REMOVE" {
        return Ok(None);
    }
    let table = record
        .event_source_arn
        .as_deref()
        .and_then(|arn| config.table_of(arn))
        .ok_or("unknown_table")?;
    if record.change.new_image.is_empty() {
        return Err("no_new_image");
    }
    let item: Item = record.change.new_image.clone().into();
    let derived = match table {
        SourceTable::Carts => derive_cart(&item),
        SourceTable::Orders => derive_order(&item),
    };
    derived.map_err(<&'static str>::from)
}

impl BatchReport {
    fn log(&self, records: usize) {
        tracing::info!(
            function = FUNCTION_NAME,
            records,
            derived = self.derived,
            unchanged = self.unchanged,
            superseded = self.superseded,
            unusable = serde_json::to_string(&self.unusable).unwrap_or_default(),
            failed = self.failed,
            "batch summary"
        );
    }
}
