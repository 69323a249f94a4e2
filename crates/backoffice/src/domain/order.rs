//! An order as the contract describes it, and where its review request stands.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::phone::PhoneNumber;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    ReadyPickup,
    Completed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Paid,
    Failed,
    Refunded,
}

/// An order as the contract describes it (docs/data-contract.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub order_id: String,
    pub customer_phone: PhoneNumber,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_name: Option<String>,
    pub status: OrderStatus,
    pub payment_status: PaymentStatus,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
}

/// Where a review request stands, as stored in `reviewRequestStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Sending,
    Sent,
    Failed,
    /// Twilio may have the message: not retried, waits for reconciliation.
    Unknown,
    /// Completed longer ago than `REVIEW_MAX_AGE_DAYS` when its turn came.
    Expired,
    /// The customer reviewed before the request went out.
    Reviewed,
    /// The order's data cannot make a request (bad phone, no completion time).
    Invalid,
    /// No longer `completed` (cancelled after completion).
    NotCompleted,
    /// The customer opted out of marketing messages (or of every message).
    OptedOut,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}
