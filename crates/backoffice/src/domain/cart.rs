//! A cart as the shop's services write it, and how long it lives.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::phone::PhoneNumber;
use crate::store::shard::shard_of;

/// A cart lives this long after creation unless a writer extends `expiresAt`.
pub const CART_LIFETIME: TimeDelta = TimeDelta::hours(24);

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

/// The `expiryShard` of a cart: see [`crate::store::shard`].
pub fn expiry_shard_for(cart_id: &str) -> String {
    shard_of(cart_id)
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
