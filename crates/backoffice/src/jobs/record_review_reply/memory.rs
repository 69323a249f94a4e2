//! In-memory stand-ins for the reply function's store and alerts, for unit tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};

use super::{
    NegativeReview, NegativeReviewAlerts, NewReview, ReplyStore, RequestedOrder, StoredReview, WriteOutcome,
    alerts::AlertError,
};
use crate::domain::consent::{ConsentChange, ConsentSource};
use crate::domain::phone::PhoneNumber;
use crate::messages::delivery::{DeliveryStatus, Recorded, StatusUpdate, milestones};
use crate::messages::outbox::message_key;
use crate::report::counters::Counter;
use crate::store::StoreError;
use crate::store::dynamo::rfc3339;

/// A review as the fake keeps it: the stored fields plus what a correction adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryReview {
    pub review: StoredReview,
    pub source: &'static str,
    pub previous_rating: Option<u8>,
    pub corrected_at: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// (customer, order id, requested at).
    requests: Vec<(PhoneNumber, RequestedOrder)>,
    reviews: HashMap<String, MemoryReview>,
    writes: u64,
    queries: u64,
    /// (customer, change, source), in the order they were recorded.
    consents: Vec<(String, ConsentChange, ConsentSource)>,
    consent_message_sids: std::collections::HashSet<String>,
    /// (customer, MessageSid) of the rating messages read.
    rating_message_sids: std::collections::HashSet<(String, String)>,
    /// Message key to (its SID, its recorded status).
    deliveries: HashMap<String, (String, Option<DeliveryStatus>)>,
    counters: BTreeMap<String, u64>,
    /// The markers counted once (`inbound#<MessageSid>`).
    counted_once: std::collections::HashSet<String>,
}

#[derive(Debug, Default)]
pub struct MemoryReplies {
    state: Mutex<State>,
}

impl MemoryReplies {
    /// The consent changes recorded, in order.
    pub fn consents(&self) -> Vec<(String, ConsentChange, ConsentSource)> {
        self.state.lock().unwrap().consents.clone()
    }

    /// An order whose review request went to `phone` at `requested_at` (what
    /// request-reviews' `settle(Sent)` leaves in `review-reply-index`).
    pub fn add_request(&self, phone: &str, order_id: &str, requested_at: DateTime<Utc>) {
        let phone = PhoneNumber::parse(phone).expect("a test phone number");
        self.state.lock().expect("not poisoned").requests.push((
            phone,
            RequestedOrder {
                order_id: order_id.to_owned(),
                requested_at,
            },
        ));
    }

    /// A review written some other way (no `messageSid`).
    pub fn add_review(&self, order_id: &str, rating: u8) {
        self.state.lock().expect("not poisoned").reviews.insert(
            order_id.to_owned(),
            MemoryReview {
                review: StoredReview {
                    order_id: order_id.to_owned(),
                    rating,
                    comment: String::new(),
                    created_at: None,
                    message_sid: None,
                    previous_message_sid: None,
                    message_sids: BTreeSet::new(),
                    alerted_at: None,
                    alerted_message_sid: None,
                },
                source: "text",
                previous_rating: None,
                corrected_at: None,
            },
        );
    }

    pub fn review_of(&self, order_id: &str) -> Option<MemoryReview> {
        self.state.lock().expect("not poisoned").reviews.get(order_id).cloned()
    }

    pub fn review_count(&self) -> usize {
        self.state.lock().expect("not poisoned").reviews.len()
    }

    /// Successful writes (puts and corrections).
    pub fn writes(&self) -> u64 {
        self.state.lock().expect("not poisoned").writes
    }

    pub fn queries(&self) -> u64 {
        self.state.lock().expect("not poisoned").queries
    }
}

impl MemoryReplies {
    /// A message sent under `sid`, whose statuses may now be recorded.
    pub fn add_sent_message(&self, key: &str, sid: &str) {
        self.state
            .lock()
            .unwrap()
            .deliveries
            .insert(key.to_owned(), (sid.to_owned(), None));
    }

    /// The status recorded for a message.
    pub fn delivery_of(&self, key: &str) -> Option<DeliveryStatus> {
        self.state
            .lock()
            .unwrap()
            .deliveries
            .get(key)
            .and_then(|(_, status)| *status)
    }

    /// Every counter added, by attribute name.
    pub fn counted(&self) -> BTreeMap<String, u64> {
        self.state.lock().unwrap().counters.clone()
    }
}

impl ReplyStore for MemoryReplies {
    async fn knows_rating(&self, phone: &PhoneNumber, message_sid: &str) -> Result<bool, StoreError> {
        let state = self.state.lock().unwrap();
        Ok(state
            .rating_message_sids
            .contains(&(phone.as_str().to_owned(), message_sid.to_owned())))
    }

    async fn remember_rating(&self, phone: &PhoneNumber, message_sid: &str) -> Result<bool, StoreError> {
        let mut state = self.state.lock().unwrap();
        state
            .rating_message_sids
            .insert((phone.as_str().to_owned(), message_sid.to_owned()));
        Ok(true)
    }

    async fn record_delivery(&self, update: &StatusUpdate) -> Result<Recorded, StoreError> {
        let mut state = self.state.lock().unwrap();
        let Some((sid, status)) = state.deliveries.get_mut(&message_key(&update.id)) else {
            return Ok(Recorded::NotOurs);
        };
        if *sid != update.message_sid {
            return Ok(Recorded::NotOurs);
        }
        let from = status.map_or(0, DeliveryStatus::rank);
        if from >= update.status.rank() {
            return Ok(Recorded::Stale);
        }
        *status = Some(update.status);
        Ok(Recorded::Advanced(milestones(from, update.status, update.error_code)))
    }

    async fn count(
        &self,
        _at: DateTime<Utc>,
        once: Option<&str>,
        increments: &[(Counter, u64)],
        negative_review: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock().unwrap();
        if let Some(marker) = once
            && !state.counted_once.insert(marker.to_owned())
        {
            return Ok(());
        }
        for (counter, by) in increments {
            *state.counters.entry(counter.attribute()).or_default() += by;
        }
        if let Some(entry) = negative_review {
            *state.counters.entry(format!("negativeReviews:{entry}")).or_default() += 1;
        }
        Ok(())
    }

    async fn record_consent(
        &self,
        phone: &PhoneNumber,
        change: ConsentChange,
        source: ConsentSource,
        _at: DateTime<Utc>,
        message_sid: &str,
    ) -> Result<bool, StoreError> {
        let mut state = self.state.lock().unwrap();
        // As the DynamoDB store: a message changes consent once.
        if !state.consent_message_sids.insert(message_sid.to_owned()) {
            return Ok(false);
        }
        state.writes += 1;
        state.consents.push((phone.as_str().to_owned(), change, source));
        Ok(true)
    }

    async fn requested_orders(
        &self,
        phone: &PhoneNumber,
        since: DateTime<Utc>,
        limit: i32,
    ) -> Result<Vec<RequestedOrder>, StoreError> {
        let mut state = self.state.lock().expect("not poisoned");
        state.queries += 1;
        let mut orders: Vec<RequestedOrder> = state
            .requests
            .iter()
            .filter(|(customer, order)| customer == phone && rfc3339(order.requested_at) >= rfc3339(since))
            .map(|(_, order)| order.clone())
            .collect();
        orders.sort_by_key(|order| std::cmp::Reverse(order.requested_at));
        orders.truncate(usize::try_from(limit).unwrap_or_default());
        Ok(orders)
    }

    async fn review(&self, order_id: &str) -> Result<Option<StoredReview>, StoreError> {
        Ok(self.review_of(order_id).map(|r| r.review))
    }

    async fn put_review(&self, review: &NewReview) -> Result<WriteOutcome, StoreError> {
        let mut state = self.state.lock().expect("not poisoned");
        if let Some(existing) = state.reviews.get(&review.order_id) {
            return Ok(if existing.review.written_by(&review.message_sid) {
                WriteOutcome::AlreadyRecorded
            } else {
                WriteOutcome::Conflict
            });
        }
        state.writes += 1;
        state.reviews.insert(
            review.order_id.clone(),
            MemoryReview {
                review: StoredReview {
                    order_id: review.order_id.clone(),
                    rating: review.rating,
                    comment: review.comment.clone(),
                    created_at: Some(rfc3339(review.created_at)),
                    message_sid: Some(review.message_sid.clone()),
                    previous_message_sid: None,
                    message_sids: BTreeSet::from([review.message_sid.clone()]),
                    alerted_at: None,
                    alerted_message_sid: None,
                },
                source: review.source.as_str(),
                previous_rating: None,
                corrected_at: None,
            },
        );
        Ok(WriteOutcome::Written)
    }

    async fn correct_review(&self, review: &NewReview, previous: &StoredReview) -> Result<WriteOutcome, StoreError> {
        let mut state = self.state.lock().expect("not poisoned");
        let Some(existing) = state.reviews.get_mut(&review.order_id) else {
            return Ok(WriteOutcome::Conflict);
        };
        if existing.review.message_sid != previous.message_sid || existing.review.alerted_at != previous.alerted_at {
            return Ok(WriteOutcome::Conflict);
        }
        let mut message_sids = previous.all_message_sids();
        message_sids.insert(review.message_sid.clone());
        *existing = MemoryReview {
            review: StoredReview {
                order_id: review.order_id.clone(),
                rating: review.rating,
                comment: review.comment.clone(),
                created_at: previous.created_at.clone(),
                message_sid: Some(review.message_sid.clone()),
                previous_message_sid: previous.message_sid.clone(),
                message_sids,
                alerted_at: previous.alerted_at.clone(),
                alerted_message_sid: previous.alerted_message_sid.clone(),
            },
            source: review.source.as_str(),
            previous_rating: Some(previous.rating),
            corrected_at: Some(rfc3339(review.created_at)),
        };
        state.writes += 1;
        Ok(WriteOutcome::Written)
    }

    async fn claim_alert(
        &self,
        order_id: &str,
        message_sid: &str,
        at: DateTime<Utc>,
        cutoff: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state.lock().expect("not poisoned");
        let Some(existing) = state.reviews.get_mut(order_id) else {
            return Ok(false);
        };
        let review = &mut existing.review;
        let claimable = review.message_sid.as_deref() == Some(message_sid)
            && review.alerted_message_sid.as_deref() != Some(message_sid)
            && review.alerted_at.as_ref().is_none_or(|last| *last < rfc3339(cutoff));
        if claimable {
            review.alerted_at = Some(rfc3339(at));
            review.alerted_message_sid = Some(message_sid.to_owned());
        }
        Ok(claimable)
    }

    async fn release_alert(
        &self,
        order_id: &str,
        message_sid: &str,
        claimed_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock().expect("not poisoned");
        if let Some(existing) = state.reviews.get_mut(order_id) {
            let review = &mut existing.review;
            if review.alerted_message_sid.as_deref() == Some(message_sid)
                && review.alerted_at.as_deref() == Some(rfc3339(claimed_at).as_str())
            {
                review.alerted_at = None;
                review.alerted_message_sid = None;
            }
        }
        Ok(())
    }
}

/// Records every alert; can be told to fail.
#[derive(Debug, Default)]
pub struct RecordingAlerts {
    sent: Mutex<Vec<NegativeReview>>,
    failing: AtomicBool,
    failing_on_one_channel: AtomicBool,
}

impl RecordingAlerts {
    pub fn sent(&self) -> Vec<NegativeReview> {
        self.sent.lock().expect("not poisoned").clone()
    }

    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    /// Delivers on one channel and fails on the other.
    pub fn fail_on_one_channel(&self, failing: bool) {
        self.failing_on_one_channel.store(failing, Ordering::Relaxed);
    }
}

impl NegativeReviewAlerts for RecordingAlerts {
    async fn alert(&self, review: &NegativeReview) -> Result<(), AlertError> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(AlertError {
                failures: vec!["sns: test failure".into()],
                may_have_reached_the_shop: false,
            });
        }
        self.sent.lock().expect("not poisoned").push(review.clone());
        if self.failing_on_one_channel.load(Ordering::Relaxed) {
            return Err(AlertError {
                failures: vec!["whatsapp: test failure".into()],
                may_have_reached_the_shop: true,
            });
        }
        Ok(())
    }
}
