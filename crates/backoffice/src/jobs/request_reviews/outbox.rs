//! The review request on the one message path: the order item's review-request state
//! ([`ReviewRequestStore`]) seen as an [`Outbox`], and the review messenger as a
//! [`Messenger`]. Review requests keep their state on the order because the webhook finds
//! the order a reply answers through `review-reply-index` on the Orders table
//! (docs/decisions/one-message-engine.md).

use chrono::{DateTime, Utc};

use super::store::{self, DueOrder, LookedUp, RequestStatus, ReviewRequestStore, SkipReason};
use super::{FUNCTION_NAME, ReviewMessenger};
use crate::domain::phone::PhoneNumber;
use crate::messages::caps::Caps;
use crate::messages::consent::Consent;
use crate::messages::engine::{
    Claim, ClaimOutcome, Closing, DueMessage, DuePage, InFlightClaim, MessageId, Messenger, Outbox, Settlement,
    Unsendable, Verdict,
};
use crate::messages::kind::Kind;
use crate::messages::reconcile::{Parked, Resolution};
use crate::runtime::job::Deadline;
use crate::store::StoreError;
use crate::twilio::{LookupError, MessageList};
use crate::twilio::{SendError, SentMessage};

/// Review requests, as the engine sees them, under the marketing caps. What the checks
/// before each claim read is read a page at a time ([`ReviewRequestStore::look_up`]) and
/// kept for this run only.
pub struct ReviewOutbox<'a, S>(pub &'a S, pub Caps, LookUps);

/// Look-ups of the pages read, waiting for their checks.
#[derive(Default)]
struct LookUps(std::sync::Mutex<LookedUp>);

impl<'a, S> ReviewOutbox<'a, S> {
    pub fn new(store: &'a S, caps: Caps) -> Self {
        Self(store, caps, LookUps::default())
    }
}

impl LookUps {
    fn add(&self, found: LookedUp) {
        if let Ok(mut known) = self.0.lock() {
            known.orders.extend(found.orders);
            known.reviewed.extend(found.reviewed);
            known.consents.extend(found.consents);
        }
    }

    /// The order's review presence and its customer's consent, if a page look-up read
    /// them; the order's entry is used once.
    fn take(&self, order_id: &str, phone: &PhoneNumber) -> Option<(bool, Consent)> {
        let mut known = self.0.lock().ok()?;
        let consent = known.consents.get(phone.as_str())?.clone();
        if !known.orders.remove(order_id) {
            return None;
        }
        Some((known.reviewed.remove(order_id), consent))
    }

    /// Counts a request to this customer in their caps before its claim is written, unless
    /// the caps hold it: then the time they allow it. Requests checked together cannot
    /// both go out; a reservation whose claim then fails stays, holding the customer's
    /// other requests to a later run rather than risking one too many.
    fn reserve(&self, phone: &PhoneNumber, at: DateTime<Utc>, caps: &Caps) -> Option<DateTime<Utc>> {
        let mut known = self.0.lock().ok()?;
        let consent = known.consents.get_mut(phone.as_str())?;
        if let Some(until) = caps.next_allowed(consent, at) {
            return Some(until);
        }
        consent.last_sent_at = Some(at);
        consent.marketing_sent.insert(0, at);
        consent.marketing_sent.truncate(caps.per_week as usize);
        None
    }

    /// A consent read alone, kept for the caps of this run's next requests.
    fn keep_consent(&self, phone: &PhoneNumber, consent: &Consent) {
        if let Ok(mut known) = self.0.lock() {
            known
                .consents
                .entry(phone.as_str().to_owned())
                .or_insert_with(|| consent.clone());
        }
    }
}

/// The review messenger, as the engine sees it.
pub struct ReviewSender<'a, M>(pub &'a M);

fn id_of(order_id: &str) -> MessageId {
    MessageId {
        kind: Kind::ReviewRequest,
        subject_id: order_id.to_owned(),
    }
}

fn due_message(order: DueOrder) -> DueMessage {
    DueMessage {
        id: id_of(&order.order_id),
        customer_phone: order.customer_phone,
        customer_name: order.customer_name,
        due_at: order.completed_at,
        send_before: None,
        since: order.completed_at,
    }
}

fn due_order(message: &DueMessage) -> DueOrder {
    DueOrder {
        order_id: message.id.subject_id.clone(),
        customer_phone: message.customer_phone.clone(),
        customer_name: message.customer_name.clone(),
        completed_at: message.due_at,
    }
}

/// The status a closed request keeps on the order.
fn closed_status(closing: &Closing) -> RequestStatus {
    match closing {
        Closing::TooOld => RequestStatus::Expired,
        Closing::Ineligible("has_review") => RequestStatus::Reviewed,
        Closing::Ineligible("opted_out" | "opted_out_since") => RequestStatus::OptedOut,
        Closing::Ineligible("unreadable_consent") => RequestStatus::Invalid,
        Closing::Ineligible(_) => RequestStatus::NotCompleted,
        Closing::Invalid { label, .. } if *label == SkipReason::NotCompleted(String::new()).label() => {
            RequestStatus::NotCompleted
        }
        Closing::Invalid { .. } => RequestStatus::Invalid,
    }
}

fn closed_reason(closing: &Closing) -> String {
    match closing {
        Closing::TooOld => "completed too long ago".into(),
        Closing::Ineligible("has_review") => "already reviewed".into(),
        Closing::Ineligible(reason @ ("opted_out" | "opted_out_since")) => {
            format!("the customer {reason}").replace('_', " ")
        }
        Closing::Ineligible("unreadable_consent") => "the customer's consent item is unreadable".into(),
        Closing::Ineligible(_) => "no longer completed".into(),
        Closing::Invalid { detail, .. } => detail.clone(),
    }
}

impl<S: ReviewRequestStore> Outbox for ReviewOutbox<'_, S> {
    type Cursor = S::Cursor;

    async fn due_page(
        &self,
        shard: &str,
        due_before: i64,
        cursor: Option<S::Cursor>,
        limit: i32,
    ) -> Result<DuePage<S::Cursor>, StoreError> {
        let page = self.0.pending_page(shard, due_before, cursor, limit).await?;
        let due: Vec<DueOrder> = page
            .entries
            .iter()
            .filter_map(|entry| entry.as_ref().ok().cloned())
            .collect();
        if !due.is_empty() {
            match self.0.look_up(&due).await {
                Ok(found) => self.2.add(found),
                // Each check then reads alone.
                Err(error) => tracing::warn!(%error, "the page's look-ups failed; reading them one by one"),
            }
        }
        Ok(DuePage {
            entries: page
                .entries
                .into_iter()
                .map(|entry| {
                    entry.map(due_message).map_err(|skipped| Unsendable {
                        id: id_of(&skipped.order_id),
                        label: skipped.reason.label(),
                        detail: skipped.reason.to_string(),
                    })
                })
                .collect(),
            items_read: page.items_read,
            foreign: page.foreign,
            next: page.next,
        })
    }

    /// A review, the customer's consent and the marketing caps (a review request is a
    /// marketing message); one held by the caps waits for a later daily run.
    async fn check(&self, message: &DueMessage, now: DateTime<Utc>) -> Result<Verdict, StoreError> {
        let (has_review, customer) = match self.2.take(&message.id.subject_id, &message.customer_phone) {
            Some(looked_up) => looked_up,
            None => {
                let has_review = self.0.has_review(&message.id.subject_id).await?;
                let consent = self.0.consent(&message.customer_phone).await?;
                self.2.keep_consent(&message.customer_phone, &consent);
                (has_review, consent)
            }
        };
        if has_review {
            return Ok(Verdict::Close("has_review"));
        }
        if let Some(reason) = customer.refuses(true, message.since) {
            return Ok(Verdict::Close(reason));
        }
        Ok(match self.1.next_allowed(&customer, now) {
            Some(_) => Verdict::Hold,
            None => Verdict::Go,
        })
    }

    /// Nothing to move: the request stays in line for the next daily run.
    async fn defer(&self, _message: &DueMessage, _until: DateTime<Utc>) -> Result<(), StoreError> {
        Ok(())
    }

    async fn claim(&self, message: &DueMessage, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        if let Some(until) = self.2.reserve(&message.customer_phone, claim.claimed_at, &self.1) {
            return Ok(ClaimOutcome::Deferred(until));
        }
        Ok(match self.0.claim(&message.id.subject_id, claim).await? {
            store::ClaimOutcome::Claimed => ClaimOutcome::Claimed,
            store::ClaimOutcome::TakenElsewhere => ClaimOutcome::TakenElsewhere,
            store::ClaimOutcome::NotCompleted => ClaimOutcome::Ineligible("not_completed"),
        })
    }

    async fn settle(&self, message: &DueMessage, claim: &Claim, settlement: &Settlement) -> Result<(), StoreError> {
        self.0.settle(&message.id.subject_id, claim, settlement).await?;
        // The order holds the outcome now: a failure to count the request in the
        // customer's caps is logged, and does not make a sent request a store error.
        if let Settlement::Sent { sent_at, .. } = settlement
            && let Err(error) = self.0.record_sent(&message.customer_phone, *sent_at, &self.1).await
        {
            tracing::warn!(function = FUNCTION_NAME, message_id = %message.id, %error, "sent, but not counted in the customer's caps");
        }
        Ok(())
    }

    async fn close(&self, id: &MessageId, closing: &Closing) -> Result<(), StoreError> {
        self.0
            .close(&id.subject_id, closed_status(closing), &closed_reason(closing))
            .await
    }

    async fn in_flight(&self) -> Result<Vec<InFlightClaim>, StoreError> {
        Ok(self
            .0
            .in_flight()
            .await?
            .into_iter()
            .map(|claim| InFlightClaim {
                id: id_of(&claim.order_id),
                claimed_at: claim.claimed_at,
            })
            .collect())
    }

    async fn park_stale_claim(&self, claim: &InFlightClaim, reason: &str) -> Result<(), StoreError> {
        let claim = store::InFlightClaim {
            order_id: claim.id.subject_id.clone(),
            claimed_at: claim.claimed_at,
        };
        self.0.park_stale_claim(&claim, reason).await
    }

    async fn awaiting_reconciliation(&self) -> Result<u64, StoreError> {
        self.0.awaiting_reconciliation().await
    }

    async fn parked(&self) -> Result<Vec<Parked>, StoreError> {
        self.0.parked().await
    }

    async fn resolve(&self, parked: &Parked, resolution: &Resolution) -> Result<bool, StoreError> {
        let resolved = self.0.resolve(parked, resolution).await?;
        // As for a settle: the order holds the outcome, and a failure to count it in the
        // customer's caps is logged without hiding that it was settled.
        if let (true, Resolution::Sent { sent_at, .. }, Some(phone)) = (resolved, resolution, &parked.customer_phone)
            && let Err(error) = self.0.record_sent(phone, *sent_at, &self.1).await
        {
            tracing::warn!(function = FUNCTION_NAME, message_id = %parked.id, %error, "found and settled, but not counted in the customer's caps");
        }
        Ok(resolved)
    }

    async fn count(
        &self,
        at: DateTime<Utc>,
        increments: &[(crate::report::counters::Counter, u64)],
    ) -> Result<(), StoreError> {
        self.0.count(at, increments).await
    }

    async fn record_opt_out(&self, message: &DueMessage, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.0.record_twilio_opt_out(&message.customer_phone, at).await
    }
}

impl<M: ReviewMessenger> Messenger for ReviewSender<'_, M> {
    async fn send(&self, message: &DueMessage, deadline: Deadline) -> Result<SentMessage, SendError> {
        self.0.send_review_request(&due_order(message), deadline).await
    }

    async fn sent_to(&self, to: &PhoneNumber, since: DateTime<Utc>) -> Result<MessageList, LookupError> {
        self.0.sent_to(to, since).await
    }

    fn absent_after(&self) -> chrono::TimeDelta {
        self.0.absent_after()
    }
}
