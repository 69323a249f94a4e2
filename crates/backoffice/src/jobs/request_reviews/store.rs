//! Orders and the review-request state kept on them.
//!
//! An order waiting for its review request sits in the sparse `review-pending-index`
//! (hash `reviewPendingShard`, range `reviewPendingSince` = completion time in epoch
//! seconds). The daily job reads only that index, so its reads grow with the orders that
//! are due, not with the table. `reviewPendingShard` also says where the request stands:
//!
//! | `reviewPendingShard` | `reviewRequestStatus` | meaning |
//! |---|---|---|
//! | `00`..`15` | `pending` | waiting to be due, or due and not yet claimed |
//! | `sending` | `sending` | claimed by a run, message being sent |
//! | `reconcile` | `unknown` | Twilio may or may not have the message: reconciliation asks it |
//! | `reconcile-by-hand` | `unknown` | reconciliation could not decide: a person does |
//! | (removed) | `sent`, `failed`, `expired`, `reviewed`, `opted_out`, `invalid`, `not_completed` | settled |
//!
//! Writers use [`dynamo::DynamoOrders::put_new`] and [`dynamo::DynamoOrders::complete`],
//! which set the index attributes; they never overwrite an existing order with PutItem
//! (that would reset a settled request and message the customer again).

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::domain::phone::PhoneNumber;
use crate::messages::caps::Caps;
use crate::messages::consent::Consent;
use crate::store::StoreError;
use crate::store::walk::IndexPage;

pub use super::item::{DueOrder, SkipReason, SkippedOrder, decode_pending_entry};
pub use crate::domain::order::{Order, OrderStatus, PaymentStatus, RequestStatus};
/// A run's hold on a request, and how it ends: the message engine's own types.
pub use crate::messages::engine::{Claim, Settlement};
pub use crate::messages::reconcile::{Parked, Resolution};

/// The GSI the review job reads; defined in template.yaml.
pub const REVIEW_PENDING_INDEX: &str = "review-pending-index";

/// `reviewPendingShard` of claimed requests.
pub const SENDING_PARTITION: &str = "sending";

/// `reviewPendingShard` of requests whose outcome is unknown.
pub const RECONCILE_PARTITION: &str = "reconcile";

/// `reviewPendingShard` of requests reconciliation could not decide: a person does.
pub const BY_HAND_PARTITION: &str = "reconcile-by-hand";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    Claimed,
    /// Another run claimed or settled it first (a concurrent or duplicate run).
    TakenElsewhere,
    /// The order is no longer `completed`.
    NotCompleted,
}

/// What [`ReviewRequestStore::look_up`] read.
#[derive(Debug, Clone, Default)]
pub struct LookedUp {
    /// Orders whose review presence was read.
    pub orders: std::collections::HashSet<String>,
    /// Of those, the ones with a review.
    pub reviewed: std::collections::HashSet<String>,
    /// Consent by phone (E.164), for the customers read.
    pub consents: std::collections::HashMap<String, Consent>,
}

/// A claim still in the `sending` partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlightClaim {
    pub order_id: String,
    pub claimed_at: Option<DateTime<Utc>>,
}

/// A page of `review-pending-index` entries: the orders in line, or why one cannot be.
pub type PendingPage<Cursor> = IndexPage<Result<DueOrder, SkippedOrder>, Cursor>;

/// What the review job needs from the Orders and Reviews tables.
pub trait ReviewRequestStore: Send + Sync {
    type Cursor: Send;

    /// Pending requests of `shard` for orders completed strictly before `completed_before`
    /// (epoch seconds).
    fn pending_page(
        &self,
        shard: &str,
        completed_before: i64,
        cursor: Option<Self::Cursor>,
        limit: i32,
    ) -> impl Future<Output = Result<PendingPage<Self::Cursor>, StoreError>> + Send;

    fn has_review(&self, order_id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// What the checks before each claim read, for a page of due orders at once: which
    /// have a review, and each customer's consent. Orders or customers it could not read
    /// are left out (the check then reads them alone). By default one read after the other.
    fn look_up(&self, due: &[DueOrder]) -> impl Future<Output = Result<LookedUp, StoreError>> + Send {
        async move {
            let mut found = LookedUp::default();
            for order in due {
                if self.has_review(&order.order_id).await? {
                    found.reviewed.insert(order.order_id.clone());
                }
                found.orders.insert(order.order_id.clone());
                let consent = self.consent(&order.customer_phone).await?;
                found.consents.insert(order.customer_phone.as_str().to_owned(), consent);
            }
            Ok(found)
        }
    }

    /// Takes the order out of the pending partitions, only if it is still pending and
    /// completed. The step that makes sending exactly-once.
    fn claim(&self, order_id: &str, claim: &Claim) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send;

    fn settle(
        &self,
        order_id: &str,
        claim: &Claim,
        settlement: &Settlement,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Settles a pending request without sending (too old, reviewed, invalid, not
    /// completed). Does nothing if another run claimed it meanwhile.
    fn close(
        &self,
        order_id: &str,
        status: RequestStatus,
        reason: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every claim in the `sending` partition.
    fn in_flight(&self) -> impl Future<Output = Result<Vec<InFlightClaim>, StoreError>> + Send;

    /// Moves a claim left behind by a run that died to `reconcile`, if it is still the
    /// same claim.
    fn park_stale_claim(
        &self,
        claim: &InFlightClaim,
        reason: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Requests waiting for reconciliation.
    fn awaiting_reconciliation(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Every request waiting for reconciliation.
    fn parked(&self) -> impl Future<Output = Result<Vec<Parked>, StoreError>> + Send;

    /// Settles a parked request, only if it is still parked under the same claim.
    fn resolve(
        &self,
        parked: &Parked,
        resolution: &Resolution,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The customer's consent ([`crate::messages::consent`]).
    fn consent(&self, phone: &PhoneNumber) -> impl Future<Output = Result<Consent, StoreError>> + Send;

    /// Records a request sent to the customer, for the marketing caps.
    fn record_sent(
        &self,
        phone: &PhoneNumber,
        at: DateTime<Utc>,
        caps: &Caps,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds a run's sends to the day's counters; nothing by default.
    fn count(
        &self,
        _at: DateTime<Utc>,
        _increments: &[(crate::report::counters::Counter, u64)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }

    /// Records Twilio's word that the customer opted out of every message (error 21610).
    fn record_twilio_opt_out(
        &self,
        phone: &PhoneNumber,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
