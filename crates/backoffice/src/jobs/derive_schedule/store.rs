//! What `derive-schedule` needs from DynamoDB: one conditional write per derivation.

use std::future::Future;

use super::derive::Derivation;
use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Written,
    /// The item changed or went away since the record's image: a later record, if any,
    /// carries what is true now.
    Superseded,
}

pub trait ScheduleStore {
    fn apply(&self, derivation: &Derivation) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// Whether the records' business events are counted for the daily report (a Stats
    /// table is configured).
    fn counts_events(&self) -> bool {
        false
    }
}
