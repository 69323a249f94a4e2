//! The business events the daily report counts, read from the carts' and orders' stream
//! records by `derive-schedule`: an order placed (with its total, and whether it is the
//! customer's first), a cart that expired without an order, a cart that became an order
//! after its reminder was sent.
//!
//! Each event is counted once: a marker written before the counters (a replayed record
//! finds it and counts nothing). A failure between the marker and the counters loses the
//! event from the figures rather than counting it twice.

use chrono::{DateTime, Utc};

use super::counters::{Counter, DailyCounters};
use crate::domain::phone::PhoneNumber;
use crate::messages::consent::DynamoConsents;
use crate::messages::engine::MessageId;
use crate::messages::kind::Kind;
use crate::messages::outbox::{DynamoOutbox, MessageStatus};
use crate::store::StoreError;
use crate::store::dynamo::{Item, number, string};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShopEvent {
    OrderPlaced {
        order_id: String,
        customer_phone: Option<PhoneNumber>,
        /// `totalCents`, minor units; 0 when the writer did not give one.
        total_cents: u64,
        at: DateTime<Utc>,
    },
    CartAbandoned {
        cart_id: String,
        at: DateTime<Utc>,
    },
    CartConverted {
        cart_id: String,
        at: DateTime<Utc>,
    },
}

/// The largest order total counted: 100 million in the shop's currency.
pub const MAX_ORDER_TOTAL_CENTS: u64 = 10_000_000_000;

/// An order record's event: its creation (no old image) only.
pub fn order_events(old: Option<&Item>, new: &Item, at: DateTime<Utc>) -> Vec<ShopEvent> {
    let Some(order_id) = string(new, "orderId") else {
        return Vec::new();
    };
    if old.is_some() {
        return Vec::new();
    }
    // A total no shop takes (a typo, a garbage write) counts as 0: added to the day's sum
    // it would push it past what the counter holds, and the day's revenue would read 0.
    let total_cents = number::<u64>(new, "totalCents")
        .filter(|cents| *cents <= MAX_ORDER_TOTAL_CENTS)
        .unwrap_or_default();
    vec![ShopEvent::OrderPlaced {
        order_id,
        customer_phone: string(new, "customerPhone").and_then(|phone| PhoneNumber::parse(&phone).ok()),
        total_cents,
        at,
    }]
}

/// A cart record's event: removed (expired, by TTL or the sweep) without having become
/// an order, or turned into an order.
pub fn cart_events(old: Option<&Item>, new: Option<&Item>, at: DateTime<Utc>) -> Vec<ShopEvent> {
    let ordered = |item: &Item| string(item, "orderId").is_some_and(|id| !id.is_empty());
    // Removed once expired (TTL, the sweep): a cart the shop's app deleted while still live
    // was not abandoned.
    let expired = |item: &Item| number::<i64>(item, "expiresAt").is_some_and(|expires_at| expires_at <= at.timestamp());
    match (old, new) {
        (Some(old), None) if !ordered(old) && expired(old) => string(old, "cartId")
            .map(|cart_id| ShopEvent::CartAbandoned { cart_id, at })
            .into_iter()
            .collect(),
        (old, Some(new)) if ordered(new) && !old.is_some_and(ordered) => string(new, "cartId")
            .map(|cart_id| ShopEvent::CartConverted { cart_id, at })
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// Counts events in the day's counters.
#[derive(Clone)]
pub struct DynamoTally {
    pub counters: DailyCounters,
    pub consents: DynamoConsents,
    /// To tell whether a converted cart's reminder had been sent.
    pub outbox: DynamoOutbox,
}

impl DynamoTally {
    /// `true`: counted now; `false`: counted before (a replayed record) or not counted.
    pub async fn count(&self, event: &ShopEvent) -> Result<bool, StoreError> {
        let (marker, at, increments) = match event {
            ShopEvent::OrderPlaced {
                order_id,
                customer_phone,
                total_cents,
                at,
            } => {
                let customer = match customer_phone {
                    Some(phone) if self.consents.is_first_order(phone, order_id).await? => Some(Counter::NewCustomers),
                    Some(_) => Some(Counter::ReturningCustomers),
                    None => None,
                };
                let mut increments = vec![(Counter::Orders, 1), (Counter::RevenueCents, *total_cents)];
                increments.extend(customer.map(|counter| (counter, 1)));
                (format!("order#{order_id}"), *at, increments)
            }
            ShopEvent::CartAbandoned { cart_id, at } => (
                format!("cart-abandoned#{cart_id}"),
                *at,
                vec![(Counter::CartsAbandoned, 1)],
            ),
            ShopEvent::CartConverted { cart_id, at } => {
                let reminder = MessageId {
                    kind: Kind::AbandonedCart,
                    subject_id: cart_id.clone(),
                };
                let reminded = match self.outbox.read_message(&reminder).await? {
                    None => false,
                    Some(Ok(message)) => message.status == MessageStatus::Sent,
                    // An item that will read the same at every retry: the cart is not
                    // counted as recovered, rather than holding the stream's shard.
                    Some(Err(unreadable)) => {
                        tracing::warn!(cart_id, error = %unreadable, "a converted cart's reminder cannot be read: not counted as recovered");
                        false
                    }
                };
                if !reminded {
                    return Ok(false);
                }
                (
                    format!("cart-recovered#{cart_id}"),
                    *at,
                    vec![(Counter::CartsRecovered, 1)],
                )
            }
        };
        if !self
            .counters
            .first_time(&marker, at, crate::report::counters::EVENT_MARKER_KEPT_FOR)
            .await?
        {
            return Ok(false);
        }
        self.counters.add(at, &increments, None).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::AttributeValue;

    use super::*;

    fn item(pairs: &[(&str, &str)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| {
                let value = if *k == "totalCents" || *k == "expiresAt" {
                    AttributeValue::N((*v).into())
                } else {
                    AttributeValue::S((*v).into())
                };
                ((*k).to_owned(), value)
            })
            .collect()
    }

    fn at() -> DateTime<Utc> {
        "2026-12-02T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn an_order_counts_when_it_is_created_only() {
        let order = item(&[
            ("orderId", "o-1"),
            ("customerPhone", "+33612345678"),
            ("totalCents", "4250"),
        ]);
        let events = order_events(None, &order, at());
        assert!(matches!(
            events.as_slice(),
            [ShopEvent::OrderPlaced {
                total_cents: 4250,
                customer_phone: Some(_),
                ..
            }]
        ));
        assert_eq!(order_events(Some(&order), &order, at()), []);
        let absurd = item(&[("orderId", "o-3"), ("totalCents", "18446744073709551615")]);
        assert!(
            matches!(
                order_events(None, &absurd, at()).as_slice(),
                [ShopEvent::OrderPlaced { total_cents: 0, .. }]
            ),
            "a total no shop takes does not wipe the day's revenue"
        );
        let without_total = item(&[("orderId", "o-2")]);
        assert!(matches!(
            order_events(None, &without_total, at()).as_slice(),
            [ShopEvent::OrderPlaced {
                total_cents: 0,
                customer_phone: None,
                ..
            }]
        ));
    }

    #[test]
    fn a_cart_is_abandoned_when_removed_expired_without_an_order_and_converted_when_it_gets_one() {
        let expired_at = (at().timestamp() - 60).to_string();
        let cart = item(&[("cartId", "c-1"), ("expiresAt", &expired_at)]);
        let ordered = item(&[("cartId", "c-1"), ("orderId", "o-1"), ("expiresAt", &expired_at)]);
        let live = item(&[("cartId", "c-1"), ("expiresAt", &(at().timestamp() + 3600).to_string())]);
        assert_eq!(
            cart_events(Some(&live), None, at()),
            [],
            "a live cart the shop's app deleted was not abandoned"
        );
        assert_eq!(
            cart_events(Some(&cart), None, at()),
            [ShopEvent::CartAbandoned {
                cart_id: "c-1".into(),
                at: at()
            }]
        );
        assert_eq!(
            cart_events(Some(&ordered), None, at()),
            [],
            "an ordered cart expiring is not abandoned"
        );
        assert_eq!(
            cart_events(Some(&cart), Some(&ordered), at()),
            [ShopEvent::CartConverted {
                cart_id: "c-1".into(),
                at: at()
            }]
        );
        assert_eq!(cart_events(Some(&ordered), Some(&ordered), at()), []);
        assert_eq!(cart_events(None, Some(&cart), at()), []);
    }
}
