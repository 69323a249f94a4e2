//! Whether a message's subject still qualifies, asked twice in one place: as the
//! condition DynamoDB checks in the claim's transaction (so the answer is atomic with
//! the claim), and in Rust on the subject's item to name the reason when it does not.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::kind::Kind;
use crate::store::dynamo::{Item, n, number, s, string};

/// A condition on the subject's item, for a `ConditionCheck`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectCondition {
    pub expression: &'static str,
    pub names: Vec<(&'static str, &'static str)>,
    pub values: Vec<(&'static str, AttributeValue)>,
}

const LIVE_ORDER: &str = "attribute_exists(orderId) AND #status <> :cancelled AND \
     (attribute_not_exists(paymentStatus) OR paymentStatus <> :refunded)";

/// The condition `kind`'s subject must meet at `now` for the message to go out.
pub fn subject_condition(kind: Kind, now: DateTime<Utc>) -> SubjectCondition {
    let live_values = || vec![(":cancelled", s("cancelled")), (":refunded", s("refunded"))];
    let order = |expression: &'static str, extra: Vec<(&'static str, AttributeValue)>| {
        let mut values = live_values();
        values.extend(extra);
        SubjectCondition {
            expression,
            names: vec![("#status", "status")],
            values,
        }
    };
    match kind {
        Kind::OrderConfirmation => order(LIVE_ORDER, Vec::new()),
        Kind::PaymentReminder => order(
            "attribute_exists(orderId) AND #status <> :cancelled AND \
             (attribute_not_exists(paymentStatus) OR paymentStatus <> :refunded) AND \
             paymentStatus = :unpaid AND #status <> :completed",
            vec![(":unpaid", s("pending")), (":completed", s("completed"))],
        ),
        Kind::ReadyForPickup | Kind::PickupReminder => order(
            "attribute_exists(orderId) AND #status <> :cancelled AND \
             (attribute_not_exists(paymentStatus) OR paymentStatus <> :refunded) AND #status = :ready",
            vec![(":ready", s("ready_pickup"))],
        ),
        Kind::SatisfactionCheck | Kind::ReviewRequest | Kind::ReviewReminder => order(
            "attribute_exists(orderId) AND #status <> :cancelled AND \
             (attribute_not_exists(paymentStatus) OR paymentStatus <> :refunded) AND #status = :completed",
            vec![(":completed", s("completed"))],
        ),
        Kind::AbandonedCart => SubjectCondition {
            expression: "attribute_exists(cartId) AND attribute_not_exists(orderId) AND expiresAt > :now",
            names: Vec::new(),
            values: vec![(":now", n(now.timestamp()))],
        },
    }
}

/// Whether `kind` also needs the order to have no review (checked on the Reviews table).
pub fn needs_no_review(kind: Kind) -> bool {
    matches!(kind, Kind::ReviewRequest | Kind::ReviewReminder)
}

/// Why the subject does not qualify, or `None` if it does: the same rules as
/// [`subject_condition`], read on the item.
pub fn why_not(kind: Kind, subject: Option<&Item>, has_review: bool, now: DateTime<Utc>) -> Option<&'static str> {
    let Some(item) = subject.filter(|item| !item.is_empty()) else {
        return Some("deleted");
    };
    let is = |name: &str, value: &str| string(item, name).as_deref() == Some(value);
    if kind == Kind::AbandonedCart {
        if item.contains_key("orderId") {
            return Some("converted");
        }
        let expires_at = number::<i64>(item, "expiresAt");
        return match expires_at {
            Some(at) if at > now.timestamp() => None,
            _ => Some("expired"),
        };
    }
    if is("status", "cancelled") {
        return Some("cancelled");
    }
    if is("paymentStatus", "refunded") {
        return Some("refunded");
    }
    let status_is = |value| is("status", value);
    match kind {
        Kind::OrderConfirmation => None,
        Kind::PaymentReminder if !is("paymentStatus", "pending") => Some("paid"),
        Kind::PaymentReminder if status_is("completed") => Some("collected"),
        Kind::PaymentReminder => None,
        Kind::ReadyForPickup | Kind::PickupReminder if status_is("completed") => Some("collected"),
        Kind::ReadyForPickup | Kind::PickupReminder if !status_is("ready_pickup") => Some("not_ready"),
        Kind::ReadyForPickup | Kind::PickupReminder => None,
        _ if !status_is("completed") => Some("not_completed"),
        _ if needs_no_review(kind) && has_review => Some("has_review"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: &str, payment: &str) -> Item {
        Item::from([
            ("orderId".to_owned(), s("o-1")),
            ("status".to_owned(), s(status)),
            ("paymentStatus".to_owned(), s(payment)),
        ])
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn each_kind_names_why_its_order_no_longer_qualifies() {
        let now = at("2026-12-01T10:00:00Z");
        let why = |kind, item: &Item, reviewed| why_not(kind, Some(item), reviewed, now);
        assert_eq!(why(Kind::OrderConfirmation, &order("pending", "pending"), false), None);
        assert_eq!(why(Kind::PaymentReminder, &order("pending", "pending"), false), None);
        assert_eq!(
            why(Kind::PaymentReminder, &order("confirmed", "paid"), false),
            Some("paid")
        );
        assert_eq!(
            why(Kind::PaymentReminder, &order("completed", "pending"), false),
            Some("collected")
        );
        assert_eq!(why(Kind::PickupReminder, &order("ready_pickup", "paid"), false), None);
        assert_eq!(
            why(Kind::PickupReminder, &order("completed", "paid"), false),
            Some("collected")
        );
        assert_eq!(
            why(Kind::ReadyForPickup, &order("confirmed", "paid"), false),
            Some("not_ready")
        );
        assert_eq!(
            why(Kind::SatisfactionCheck, &order("ready_pickup", "paid"), false),
            Some("not_completed")
        );
        assert_eq!(
            why(Kind::ReviewReminder, &order("completed", "paid"), true),
            Some("has_review")
        );
        assert_eq!(why(Kind::ReviewReminder, &order("completed", "paid"), false), None);
        for kind in [Kind::OrderConfirmation, Kind::PickupReminder, Kind::ReviewReminder] {
            assert_eq!(why(kind, &order("cancelled", "paid"), false), Some("cancelled"));
            assert_eq!(why(kind, &order("completed", "refunded"), false), Some("refunded"));
        }
        assert_eq!(why_not(Kind::OrderConfirmation, None, false, now), Some("deleted"));
    }

    #[test]
    fn a_cart_qualifies_until_it_is_ordered_or_expires() {
        let now = at("2026-12-01T10:00:00Z");
        let cart = |expires_at: i64, ordered: bool| {
            let mut cart = Item::from([("cartId".to_owned(), s("c-1")), ("expiresAt".to_owned(), n(expires_at))]);
            if ordered {
                cart.insert("orderId".into(), s("o-1"));
            }
            cart
        };
        let why = |item: &Item| why_not(Kind::AbandonedCart, Some(item), false, now);
        assert_eq!(why(&cart(now.timestamp() + 60, false)), None);
        assert_eq!(why(&cart(now.timestamp() + 60, true)), Some("converted"));
        assert_eq!(why(&cart(now.timestamp(), false)), Some("expired"));
        assert_eq!(why_not(Kind::AbandonedCart, None, false, now), Some("deleted"));
    }

    #[test]
    fn every_condition_binds_exactly_the_placeholders_it_uses() {
        use strum::IntoEnumIterator;
        let now = at("2026-12-01T10:00:00Z");
        for kind in Kind::iter() {
            let condition = subject_condition(kind, now);
            for (placeholder, _) in &condition.values {
                assert!(
                    condition.expression.contains(placeholder),
                    "{kind}: {placeholder} unused"
                );
            }
            for (placeholder, _) in &condition.names {
                assert!(
                    condition.expression.contains(placeholder),
                    "{kind}: {placeholder} unused"
                );
            }
            let bound = |word: &str| {
                condition.values.iter().any(|(p, _)| *p == word) || condition.names.iter().any(|(p, _)| *p == word)
            };
            for word in condition
                .expression
                .split(|c: char| !(c.is_alphanumeric() || c == ':' || c == '#' || c == '_'))
            {
                if word.starts_with(':') || word.starts_with('#') {
                    assert!(bound(word), "{kind}: {word} is not bound");
                }
            }
        }
    }
}
