//! What a cart or an order written with its business attributes only still needs for the
//! jobs' indexes (docs/data-contract.md): pure functions of the item's new image.

use chrono::{DateTime, Utc};

use crate::domain::cart::{CART_LIFETIME, expiry_shard_for};
use crate::messages::plan::Step;
use crate::report::events::ShopEvent;
use crate::store::dynamo::{Item, string};

/// A write that completes an item's derived attributes.
#[derive(Debug, Clone, PartialEq)]
pub enum Derivation {
    /// `expiryShard`, and `expiresAt` (`createdAt` + 24 h) when the writer left it out.
    CartExpiry {
        cart_id: String,
        expiry_shard: String,
        expires_at_if_absent: Option<i64>,
    },
    /// A completed order goes in line for its review request.
    ReviewQueue {
        order_id: String,
        stored_completed_at: String,
        completed_at: DateTime<Utc>,
    },
    /// A message to schedule, postpone or drop in the Messages table.
    Message(Step),
    /// A business event for the day's counters (the owner's daily report).
    Tally(ShopEvent),
}

/// Why a record's item cannot be completed: counted, logged, never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Unusable {
    NoKey,
    ExpiresAtNotANumber,
    NoExpiryNorCreationTime,
    CompletedWithoutTime,
}

/// `Ok(None)`: the cart already has what the index needs.
pub fn derive_cart(item: &Item) -> Result<Option<Derivation>, Unusable> {
    let cart_id = string(item, "cartId").ok_or(Unusable::NoKey)?;
    let expiry_shard = expiry_shard_for(&cart_id);
    let expires_at_if_absent = match item.get("expiresAt") {
        Some(value) => {
            value
                .as_n()
                .ok()
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or(Unusable::ExpiresAtNotANumber)?;
            None
        }
        None => {
            let created_at = string(item, "createdAt")
                .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
                .ok_or(Unusable::NoExpiryNorCreationTime)?;
            Some((created_at.with_timezone(&Utc) + CART_LIFETIME).timestamp())
        }
    };
    if expires_at_if_absent.is_none() && string(item, "expiryShard").as_deref() == Some(expiry_shard.as_str()) {
        return Ok(None);
    }
    Ok(Some(Derivation::CartExpiry {
        cart_id,
        expiry_shard,
        expires_at_if_absent,
    }))
}

/// `Ok(None)`: not completed, or already in line (or past it).
pub fn derive_order(item: &Item) -> Result<Option<Derivation>, Unusable> {
    let order_id = string(item, "orderId").ok_or(Unusable::NoKey)?;
    if item.contains_key("reviewRequestStatus") || string(item, "status").as_deref() != Some("completed") {
        return Ok(None);
    }
    let stored_completed_at = string(item, "completedAt").ok_or(Unusable::CompletedWithoutTime)?;
    let completed_at = DateTime::parse_from_rfc3339(&stored_completed_at)
        .map_err(|_| Unusable::CompletedWithoutTime)?
        .with_timezone(&Utc);
    Ok(Some(Derivation::ReviewQueue {
        order_id,
        stored_completed_at,
        completed_at,
    }))
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::AttributeValue;

    use super::*;
    use crate::store::dynamo::{n, s};

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    #[test]
    fn a_cart_with_business_attributes_only_gets_its_shard_and_expiry() {
        let cart = item(&[("cartId", s("c-1")), ("createdAt", s("2026-11-24T10:00:00.250Z"))]);
        assert_eq!(
            derive_cart(&cart),
            Ok(Some(Derivation::CartExpiry {
                cart_id: "c-1".into(),
                expiry_shard: expiry_shard_for("c-1"),
                expires_at_if_absent: Some("2026-11-25T10:00:00Z".parse::<DateTime<Utc>>().unwrap().timestamp()),
            }))
        );
    }

    #[test]
    fn a_writer_s_own_expiry_is_kept() {
        let cart = item(&[("cartId", s("c-1")), ("expiresAt", n(1_800_000_000))]);
        assert!(matches!(
            derive_cart(&cart),
            Ok(Some(Derivation::CartExpiry {
                expires_at_if_absent: None,
                ..
            }))
        ));
    }

    #[test]
    fn a_complete_cart_needs_nothing_so_the_consumer_s_own_write_ends_there() {
        let cart = item(&[
            ("cartId", s("c-1")),
            ("expiresAt", n(1_800_000_000)),
            ("expiryShard", s(expiry_shard_for("c-1"))),
        ]);
        assert_eq!(derive_cart(&cart), Ok(None));
    }

    #[test]
    fn unusable_carts_say_why() {
        assert_eq!(derive_cart(&item(&[("expiresAt", n(1))])), Err(Unusable::NoKey));
        let text_expiry = item(&[("cartId", s("c-1")), ("expiresAt", s("tomorrow"))]);
        assert_eq!(derive_cart(&text_expiry), Err(Unusable::ExpiresAtNotANumber));
        let no_time = item(&[("cartId", s("c-1")), ("createdAt", s("yesterday"))]);
        assert_eq!(derive_cart(&no_time), Err(Unusable::NoExpiryNorCreationTime));
    }

    #[test]
    fn a_completed_order_goes_in_line_once() {
        let completed = item(&[
            ("orderId", s("o-1")),
            ("status", s("completed")),
            ("completedAt", s("2026-11-20T09:30:00+01:00")),
        ]);
        assert_eq!(
            derive_order(&completed),
            Ok(Some(Derivation::ReviewQueue {
                order_id: "o-1".into(),
                stored_completed_at: "2026-11-20T09:30:00+01:00".into(),
                completed_at: "2026-11-20T08:30:00Z".parse().unwrap(),
            }))
        );
        let mut queued = completed.clone();
        queued.insert("reviewRequestStatus".into(), s("pending"));
        assert_eq!(derive_order(&queued), Ok(None));
    }

    #[test]
    fn orders_not_completed_need_nothing_and_a_completion_without_time_is_unusable() {
        let ready = item(&[("orderId", s("o-1")), ("status", s("ready_pickup"))]);
        assert_eq!(derive_order(&ready), Ok(None));
        let no_time = item(&[("orderId", s("o-1")), ("status", s("completed"))]);
        assert_eq!(derive_order(&no_time), Err(Unusable::CompletedWithoutTime));
        let bad_time = item(&[
            ("orderId", s("o-1")),
            ("status", s("completed")),
            ("completedAt", s("hier")),
        ]);
        assert_eq!(derive_order(&bad_time), Err(Unusable::CompletedWithoutTime));
    }
}
