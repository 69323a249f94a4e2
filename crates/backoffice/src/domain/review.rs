//! A customer's review of an order: as stored, and as a reply writes it.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::phone::PhoneNumber;

/// A review as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReview {
    pub order_id: String,
    pub rating: u8,
    pub comment: String,
    /// RFC 3339, as stored (kept by a correction).
    pub created_at: Option<String>,
    /// The reply that wrote it; absent for reviews recorded another way.
    pub message_sid: Option<String>,
    /// The reply a correction replaced.
    pub previous_message_sid: Option<String>,
    /// Every reply that ever wrote this review: the first and each correction
    /// (`messageSids`), so that a late retry of any of them is recognised.
    pub message_sids: BTreeSet<String>,
    /// When the shop was last alerted about this order (RFC 3339, as stored).
    pub alerted_at: Option<String>,
    /// The reply that alert was for.
    pub alerted_message_sid: Option<String>,
}

impl StoredReview {
    /// Whether this message already wrote (or was replaced in) this review.
    pub fn written_by(&self, message_sid: &str) -> bool {
        self.message_sids.contains(message_sid)
            || self.message_sid.as_deref() == Some(message_sid)
            || self.previous_message_sid.as_deref() == Some(message_sid)
    }

    /// The replies a correction of this review must keep in `messageSids`.
    pub fn all_message_sids(&self) -> BTreeSet<String> {
        let mut sids = self.message_sids.clone();
        sids.extend(self.message_sid.iter().cloned());
        sids.extend(self.previous_message_sid.iter().cloned());
        sids
    }
}

/// A review to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReview {
    pub order_id: String,
    pub rating: u8,
    pub comment: String,
    pub created_at: DateTime<Utc>,
    pub message_sid: String,
    pub customer_phone: PhoneNumber,
    pub source: RatingSource,
}

/// Where the rating came from, as stored in the review's `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum RatingSource {
    Button,
    Text,
}

impl RatingSource {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}
