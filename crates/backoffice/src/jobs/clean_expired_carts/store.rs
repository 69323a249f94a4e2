//! Carts: the item shape, the expiry index that the sweeper reads, and the store trait.
//!
//! Every cart carries `expiryShard` so that it appears in the sparse `expiry-index` GSI
//! (hash `expiryShard`, range `expiresAt`). The sweeper queries each shard for
//! `expiresAt <= now`, so its reads grow with the carts that are due, not with the table.
//! Writers must set `expiryShard`: [`Cart::new`] and [`dynamo::DynamoCarts::put`] do.

use std::future::Future;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::phone::PhoneNumber;
use crate::store::StoreError;
use crate::store::shard::shard_of;
use crate::store::walk::IndexPage;

pub use super::item::{ExpiredCart, MalformedCart, MalformedReason, decode_expiry_entry};

/// A cart lives this long after creation unless a writer extends `expiresAt`.
pub const CART_LIFETIME: TimeDelta = TimeDelta::hours(24);
/// The GSI the sweeper reads; defined in template.yaml.
pub const EXPIRY_INDEX: &str = "expiry-index";
/// A cart as the shop's services write it. Other attributes (line items, totals) may sit
/// on the same item; the sweeper never reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cart {
    pub cart_id: String,
    pub customer_phone: PhoneNumber,
    pub created_at: DateTime<Utc>,
    /// Unix epoch seconds; the table's TTL attribute and the index's range key.
    pub expires_at: i64,
    /// Index hash key: see [`expiry_shard_for`].
    pub expiry_shard: String,
}

impl Cart {
    /// A new cart that expires [`CART_LIFETIME`] after `created_at`.
    pub fn new(cart_id: impl Into<String>, customer_phone: PhoneNumber, created_at: DateTime<Utc>) -> Self {
        let cart_id = cart_id.into();
        Self {
            expiry_shard: expiry_shard_for(&cart_id),
            expires_at: (created_at + CART_LIFETIME).timestamp(),
            cart_id,
            customer_phone,
            created_at,
        }
    }
}

/// The `expiryShard` of a cart: see [`crate::shard`].
pub fn expiry_shard_for(cart_id: &str) -> String {
    shard_of(cart_id)
}

/// A page of due `expiry-index` entries: the carts, or why an entry could not be read.
pub type ExpiredPage<Cursor> = IndexPage<Result<ExpiredCart, MalformedCart>, Cursor>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// Nothing to delete: DynamoDB TTL or another run got there first.
    AlreadyGone,
    /// Its `expiresAt` moved into the future after the index was read.
    NotExpired,
}

/// What the sweeper needs from a cart store.
pub trait CartStore: Send + Sync {
    /// Opaque position in a paged query.
    type Cursor: Send;

    /// Up to `limit` index entries of `shard` with `expiresAt <= now`.
    fn expired_page(
        &self,
        shard: &str,
        now: i64,
        cursor: Option<Self::Cursor>,
        limit: i32,
    ) -> impl Future<Output = Result<ExpiredPage<Self::Cursor>, StoreError>> + Send;

    /// Deletes the cart only if it still exists and `expiresAt <= now` at that moment.
    fn delete_if_expired(
        &self,
        cart_id: &str,
        now: i64,
    ) -> impl Future<Output = Result<DeleteOutcome, StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_cart_expires_a_day_after_creation() {
        let created: DateTime<Utc> = "2026-11-24T10:00:00Z".parse().unwrap();
        let cart = Cart::new("c-1", PhoneNumber::parse("+33612345678").unwrap(), created);
        assert_eq!(
            cart.expires_at,
            "2026-11-25T10:00:00Z".parse::<DateTime<Utc>>().unwrap().timestamp()
        );
        assert_eq!(cart.expiry_shard, expiry_shard_for("c-1"));
    }
}
