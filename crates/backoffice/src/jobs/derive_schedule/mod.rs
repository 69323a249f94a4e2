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
use crate::messages::plan::{plan_cart, plan_order};
use crate::report::events as report_events;
use crate::runtime::metrics::emit;
use crate::store::dynamo::{Item, MAX_ID_BYTES};

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
    /// Messages scheduled, postponed or dropped in the Messages table.
    pub messages: u64,
    /// Business events counted for the daily report (orders, abandoned and recovered carts).
    pub counted: u64,
    /// Nothing to derive: complete already (this function's own writes included), not
    /// completed, or a removal; or a message already scheduled or no longer waiting.
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
        let (derivations, unusable) = match derivations_of(&deps.config, &record, deps.store.counts_events()) {
            Ok(found) => found,
            Err(reason) => {
                *report.unusable.entry(reason).or_default() += 1;
                continue;
            }
        };
        for reason in &unusable {
            *report.unusable.entry(reason).or_default() += 1;
        }
        if derivations.is_empty() && unusable.is_empty() {
            report.unchanged += 1;
        }
        for derivation in &derivations {
            let is_message = matches!(derivation, derive::Derivation::Message(_));
            let is_event = matches!(derivation, derive::Derivation::Tally(_));
            match deps.store.apply(derivation).await {
                Ok(Applied::Written) if is_event => report.counted += 1,
                Ok(Applied::Superseded) if is_event => {}
                Ok(Applied::Written) if is_message => report.messages += 1,
                Ok(Applied::Written) => report.derived += 1,
                Ok(Applied::Superseded) if is_message => report.unchanged += 1,
                Ok(Applied::Superseded) => report.superseded += 1,
                Err(error) => {
                    // Every write of a record is idempotent: retrying the whole record is safe.
                    tracing::warn!(function = FUNCTION_NAME, %error, "a write failed; Lambda retries from this record");
                    report.failed = (batch.records.len() - position) as u64;
                    let mut failure = DynamoDbBatchItemFailure::default();
                    failure.item_identifier = record.change.sequence_number.clone();
                    response.batch_item_failures.push(failure);
                    return (report, response);
                }
            }
        }
    }
    (report, response)
}

/// Epoch seconds of a stream record's change time that can be real: 2000-01-01 to the
/// end of year 9999, the last an RFC 3339 time can write.
const PLAUSIBLE_CHANGE_TIMES: std::ops::RangeInclusive<i64> = 946_684_800..=253_402_300_799;

/// What a record asks for: the derived attributes its item lacks, then the messages its
/// change schedules. `Err`: the record cannot be used at all; the second part of `Ok`
/// names what could not be derived or planned, while the rest still is.
fn derivations_of(
    config: &DeriveConfig,
    record: &EventRecord,
    count_events: bool,
) -> Result<(Vec<derive::Derivation>, Vec<&'static str>), &'static str> {
    let old: Option<Item> = (!record.change.old_image.is_empty()).then(|| record.change.old_image.clone().into());
    let changed_at = record.change.approximate_creation_date_time;
    // DynamoDB's clock: a time outside any plausible calendar is a corrupt record, and
    // adding a delay to it could overflow the date type.
    if !(PLAUSIBLE_CHANGE_TIMES).contains(&changed_at.timestamp()) {
        return Err("implausible_change_time");
    }
    // Keys made from an id (`order_confirmation#<id>`, `event#order#<id>`) must stay
    // under DynamoDB's 2048 bytes: a longer id could never be written, and its record
    // would hold the shard until the retries ran out.
    let image = if record.change.new_image.is_empty() {
        &record.change.old_image
    } else {
        &record.change.new_image
    };
    let too_long = ["orderId", "cartId"].iter().any(|name| {
        image
            .get(*name)
            .is_some_and(|value| matches!(value, serde_dynamo::AttributeValue::S(id) if id.len() > MAX_ID_BYTES))
    });
    if too_long {
        return Err("id_too_long");
    }
    if record.event_name == "REMOVE" {
        let removed_cart =
            record.event_source_arn.as_deref().and_then(|arn| config.table_of(arn)) == Some(SourceTable::Carts);
        let events = match (count_events && removed_cart, &old) {
            (true, Some(old)) => report_events::cart_events(Some(old), None, changed_at),
            _ => Vec::new(),
        };
        return Ok((events.into_iter().map(derive::Derivation::Tally).collect(), Vec::new()));
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
    let (derived, planned) = match table {
        SourceTable::Carts => (
            derive_cart(&item),
            plan_cart(old.as_ref(), &item, changed_at, &config.kinds, &config.quiet),
        ),
        SourceTable::Orders => (
            derive_order(&item),
            plan_order(old.as_ref(), &item, changed_at, &config.kinds, &config.quiet),
        ),
    };
    let mut unusable = Vec::new();
    let mut derivations: Vec<derive::Derivation> = match derived {
        Ok(derivation) => derivation.into_iter().collect(),
        Err(reason) => {
            unusable.push(<&'static str>::from(reason));
            Vec::new()
        }
    };
    match planned {
        Ok(steps) => derivations.extend(steps.into_iter().map(derive::Derivation::Message)),
        Err(reason) => unusable.push(<&'static str>::from(reason)),
    }
    if count_events {
        let events = match table {
            SourceTable::Carts => report_events::cart_events(old.as_ref(), Some(&item), changed_at),
            SourceTable::Orders => report_events::order_events(old.as_ref(), &item, changed_at),
        };
        derivations.extend(events.into_iter().map(derive::Derivation::Tally));
    }
    Ok((derivations, unusable))
}

impl BatchReport {
    fn log(&self, records: usize) {
        tracing::info!(
            function = FUNCTION_NAME,
            records,
            derived = self.derived,
            messages = self.messages,
            counted = self.counted,
            unchanged = self.unchanged,
            superseded = self.superseded,
            unusable = serde_json::to_string(&self.unusable).unwrap_or_default(),
            failed = self.failed,
            "batch summary"
        );
    }
}
