//! Reading `review-pending-index` entries: the one place that maps them to Rust types
//! and says why an entry cannot become a review request.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use crate::domain::phone::{PhoneError, PhoneNumber};

/// A pending request whose order can be messaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueOrder {
    pub order_id: String,
    pub customer_phone: PhoneNumber,
    pub customer_name: Option<String>,
    pub completed_at: DateTime<Utc>,
}

/// A pending entry that will not be messaged, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedOrder {
    pub order_id: String,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum SkipReason {
    MissingPhone,
    InvalidPhone(PhoneError),
    MissingCompletedAt,
    InvalidCompletedAt(String),
    WrongType { attribute: &'static str },
    NotCompleted(String),
}

impl SkipReason {
    /// A short label for result counts and metrics.
    pub fn label(&self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingPhone => f.write_str("customerPhone is missing"),
            Self::InvalidPhone(error) => write!(f, "customerPhone is not usable: {error}"),
            Self::MissingCompletedAt => f.write_str("completedAt is missing"),
            Self::InvalidCompletedAt(raw) => write!(f, "completedAt {raw:?} is not an RFC 3339 time"),
            Self::WrongType { attribute } => write!(f, "{attribute} has the wrong DynamoDB type"),
            Self::NotCompleted(status) => write!(f, "status is {status:?}, not \"completed\""),
        }
    }
}

fn string<'a>(
    item: &'a HashMap<String, AttributeValue>,
    attribute: &'static str,
) -> Result<Option<&'a String>, SkipReason> {
    match item.get(attribute) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(value)) => Ok(Some(value)),
        Some(_) => Err(SkipReason::WrongType { attribute }),
    }
}

/// Reads one index entry (the keys plus the projected `customerPhone`, `customerName`,
/// `completedAt` and `status`).
pub fn decode_pending_entry(item: &HashMap<String, AttributeValue>) -> Result<DueOrder, SkippedOrder> {
    let order_id = match item.get("orderId") {
        Some(AttributeValue::S(id)) => id.clone(),
        _ => String::from("<unreadable orderId>"),
    };
    let skip = |reason| SkippedOrder {
        order_id: order_id.clone(),
        reason,
    };
    let status = string(item, "status").map_err(skip)?.cloned().unwrap_or_default();
    if status != "completed" {
        return Err(skip(SkipReason::NotCompleted(status)));
    }
    let phone = string(item, "customerPhone")
        .map_err(skip)?
        .ok_or_else(|| skip(SkipReason::MissingPhone))?;
    let customer_phone = PhoneNumber::parse(phone).map_err(|e| skip(SkipReason::InvalidPhone(e)))?;
    let completed_raw = string(item, "completedAt")
        .map_err(skip)?
        .ok_or_else(|| skip(SkipReason::MissingCompletedAt))?;
    let completed_at = DateTime::parse_from_rfc3339(completed_raw)
        .map_err(|_| skip(SkipReason::InvalidCompletedAt(completed_raw.clone())))?
        .with_timezone(&Utc);
    let customer_name = string(item, "customerName")
        .map_err(skip)?
        .filter(|n| !n.trim().is_empty())
        .cloned();
    Ok(DueOrder {
        order_id,
        customer_phone,
        customer_name,
        completed_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &str)]) -> HashMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), AttributeValue::S(v.to_string())))
            .collect()
    }

    const GOOD: &[(&str, &str)] = &[
        ("orderId", "o-1"),
        ("status", "completed"),
        ("customerPhone", "+33612345678"),
        ("customerName", "Ana"),
        ("completedAt", "2026-11-17T09:30:00+01:00"),
    ];

    #[test]
    fn reads_a_due_order() {
        let order = decode_pending_entry(&entry(GOOD)).unwrap();
        assert_eq!(order.order_id, "o-1");
        assert_eq!(order.customer_name.as_deref(), Some("Ana"));
        assert_eq!(
            order.completed_at,
            "2026-11-17T08:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    fn with(change: (&str, Option<&str>)) -> HashMap<String, AttributeValue> {
        let mut item = entry(GOOD);
        match change.1 {
            Some(value) => item.insert(change.0.into(), AttributeValue::S(value.into())),
            None => item.remove(change.0),
        };
        item
    }

    #[test]
    fn names_why_an_order_is_skipped() {
        let reason = |change| decode_pending_entry(&with(change)).unwrap_err().reason.label();
        assert_eq!(reason(("customerPhone", None)), "missing_phone");
        assert_eq!(reason(("customerPhone", Some("0612345678"))), "invalid_phone");
        assert_eq!(reason(("completedAt", None)), "missing_completed_at");
        assert_eq!(reason(("completedAt", Some("last week"))), "invalid_completed_at");
        assert_eq!(reason(("status", Some("cancelled"))), "not_completed");
        let mut numeric_phone = entry(GOOD);
        numeric_phone.insert("customerPhone".into(), AttributeValue::N("33612345678".into()));
        assert_eq!(
            decode_pending_entry(&numeric_phone).unwrap_err().reason.label(),
            "wrong_type"
        );
    }

    #[test]
    fn an_empty_name_is_no_name() {
        assert_eq!(
            decode_pending_entry(&with(("customerName", Some("  "))))
                .unwrap()
                .customer_name,
            None
        );
    }
}
