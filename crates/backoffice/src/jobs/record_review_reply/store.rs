//! What the webhook needs from the Orders and Reviews tables (the port), and the review as stored.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::domain::consent::{ConsentChange, ConsentSource};
use crate::domain::phone::PhoneNumber;
use crate::messages::delivery::{Recorded, StatusUpdate};
use crate::report::counters::Counter;
use crate::store::StoreError;

pub use crate::domain::review::{NewReview, StoredReview};

/// An order whose review request went to this customer (an entry of `review-reply-index`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedOrder {
    pub order_id: String,
    pub requested_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// The same `MessageSid` had already written it (a concurrent retry).
    AlreadyRecorded,
    /// Another reply wrote the review first; look again.
    Conflict,
}

/// What the reply function needs from the Orders, Reviews and Consent tables.
pub trait ReplyStore: Send + Sync {
    /// Records the customer's consent change, unless a later one is recorded. `true`: recorded.
    fn record_consent(
        &self,
        phone: &PhoneNumber,
        change: ConsentChange,
        source: ConsentSource,
        at: DateTime<Utc>,
        message_sid: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether a rating message `message_sid` from `phone` was read before.
    fn knows_rating(
        &self,
        phone: &PhoneNumber,
        message_sid: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Remembers that a rating message `message_sid` from `phone` was read; `false` when
    /// the customer's memory is full and it was not kept.
    fn remember_rating(
        &self,
        phone: &PhoneNumber,
        message_sid: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Orders whose review request went to `phone` at or after `since`, newest first, at
    /// most `limit`.
    fn requested_orders(
        &self,
        phone: &PhoneNumber,
        since: DateTime<Utc>,
        limit: i32,
    ) -> impl Future<Output = Result<Vec<RequestedOrder>, StoreError>> + Send;

    fn review(&self, order_id: &str) -> impl Future<Output = Result<Option<StoredReview>, StoreError>> + Send;

    /// Writes a first review: only if the order has none, or has this message's.
    fn put_review(&self, review: &NewReview) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// Replaces `previous` (only if it is still the stored one, alert state included),
    /// keeping its rating, comment and message as `previousRating`, `previousComment`,
    /// `previousMessageSid`, its `createdAt`, every earlier `messageSids` and its alert
    /// state, and setting `correctedAt`.
    fn correct_review(
        &self,
        review: &NewReview,
        previous: &StoredReview,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// Takes the right to alert about this message's review: sets `alertedAt` and
    /// `alertedMessageSid`, only while the review is still this message's, it was not
    /// alerted for it, and no alert for the order is later than `cutoff`. `false` when
    /// another alert (or a correction) came first.
    fn claim_alert(
        &self,
        order_id: &str,
        message_sid: &str,
        at: DateTime<Utc>,
        cutoff: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records a message's delivery status, over a lower one only
    /// ([`crate::messages::delivery`]).
    fn record_delivery(&self, update: &StatusUpdate) -> impl Future<Output = Result<Recorded, StoreError>> + Send;

    /// Adds to the counters of `at`'s shop day ([`crate::report::counters`]); nothing
    /// when the function counts nothing (no `STATS_TABLE`), nor when `once` (a marker such
    /// as `inbound#<MessageSid>`) was counted before.
    fn count(
        &self,
        at: DateTime<Utc>,
        once: Option<&str>,
        increments: &[(Counter, u64)],
        negative_review: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives the claim back after the alert could not be sent, so that Twilio's retry of
    /// the message can try again.
    fn release_alert(
        &self,
        order_id: &str,
        message_sid: &str,
        claimed_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// An incoming message, once its signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingReply {
    pub from: PhoneNumber,
    pub message_sid: String,
    pub body: String,
    pub button_payload: Option<String>,
}
