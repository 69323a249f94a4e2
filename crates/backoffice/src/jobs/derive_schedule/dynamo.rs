//! The derivations written through the carts' and orders' own adapters, which own those
//! items' mapping.

use super::derive::Derivation;
use super::store::{Applied, ScheduleStore};
use crate::jobs::clean_expired_carts::dynamo::DynamoCarts;
use crate::jobs::request_reviews::dynamo::DynamoOrders;
use crate::messages::outbox::{self, DynamoOutbox};
use crate::report::events::DynamoTally;
use crate::store::StoreError;

pub struct DynamoSchedule {
    pub carts: DynamoCarts,
    pub orders: DynamoOrders,
    pub outbox: DynamoOutbox,
    /// Counts business events for the daily report; `None`: nothing counted.
    pub tally: Option<DynamoTally>,
}

impl ScheduleStore for DynamoSchedule {
    async fn apply(&self, derivation: &Derivation) -> Result<Applied, StoreError> {
        let written = match derivation {
            Derivation::Message(step) => self.outbox.apply(step).await? == outbox::Applied::Written,
            Derivation::Tally(event) => match &self.tally {
                Some(tally) => tally.count(event).await?,
                None => false,
            },
            Derivation::CartExpiry {
                cart_id,
                expiry_shard,
                expires_at_if_absent,
            } => {
                self.carts
                    .derive_expiry(cart_id, expiry_shard, *expires_at_if_absent)
                    .await?
            }
            Derivation::ReviewQueue {
                order_id,
                stored_completed_at,
                completed_at,
            } => {
                self.orders
                    .queue_for_review(order_id, stored_completed_at, *completed_at)
                    .await?
            }
        };
        Ok(if written { Applied::Written } else { Applied::Superseded })
    }

    fn counts_events(&self) -> bool {
        self.tally.is_some()
    }
}
