//! Whether a message's subject still qualifies, asked twice in one place: as the
//! condition DynamoDB checks in the claim's transaction (so the answer is atomic with
//! the claim), and in Rust on the subject's item to name the reason when it does not.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::kind::Kind;
use crate::store::dynamo::{Item, n, s, string};

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
        let expires_at = item
            .get("expiresAt")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok());
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
