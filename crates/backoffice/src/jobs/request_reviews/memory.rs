//! An in-memory review-request store for unit tests, with the same conditional
//! semantics as the DynamoDB one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::store::{
    BY_HAND_PARTITION, Claim, ClaimOutcome, InFlightClaim, Parked, PendingPage, RECONCILE_PARTITION, RequestStatus,
    Resolution, ReviewRequestStore, SENDING_PARTITION, Settlement, decode_pending_entry,
};
use crate::domain::consent::OptOut;
use crate::domain::phone::PhoneNumber;
use crate::messages::caps::Caps;
use crate::messages::consent::Consent;
use crate::store::StoreError;
use crate::store::dynamo::rfc3339;
use crate::store::shard::shard_of;

/// One order as the review job sees it.
#[derive(Debug, Clone)]
pub struct StoredOrder {
    pub status: String,
    pub customer_phone: Option<String>,
    pub customer_name: Option<String>,
    pub completed_at: Option<String>,
    pub pending_since: i64,
    pub partition: Option<String>,
    pub request_status: RequestStatus,
    pub claim: Option<Claim>,
    pub message_sid: Option<String>,
    pub last_error: Option<String>,
}

impl StoredOrder {
    /// A completed order in line for its review request.
    pub fn completed(order_id: &str, phone: &str, completed_at: DateTime<Utc>) -> Self {
        Self {
            status: "completed".into(),
            customer_phone: Some(phone.into()),
            customer_name: Some("Ana".into()),
            completed_at: Some(completed_at.to_rfc3339()),
            pending_since: completed_at.timestamp(),
            partition: Some(shard_of(order_id)),
            request_status: RequestStatus::Pending,
            claim: None,
            message_sid: None,
            last_error: None,
        }
    }
}

#[derive(Default)]
pub struct InMemoryOrders {
    orders: Mutex<BTreeMap<String, StoredOrder>>,
    reviews: Mutex<HashSet<String>>,
    consents: Mutex<HashMap<String, Consent>>,
    /// How long each claim takes, in milliseconds (a throttled table).
    claim_millis: std::sync::atomic::AtomicU64,
    claims_tried: std::sync::atomic::AtomicU64,
    /// Every write to a customer's consent item fails (a throttled consent table).
    consent_writes_fail: std::sync::atomic::AtomicBool,
    /// A clock each claim moves on, and by how much (claims written slowly).
    claim_advances: Mutex<Option<(std::sync::Arc<crate::runtime::clock::ManualClock>, chrono::TimeDelta)>>,
}

impl InMemoryOrders {
    /// How many claims were tried.
    pub fn claims_tried(&self) -> u64 {
        self.claims_tried.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes every claim take `each`, as through the SDK's retries of a throttled table.
    pub fn slow_claims(&self, each: std::time::Duration) {
        let millis = u64::try_from(each.as_millis()).unwrap_or(u64::MAX);
        self.claim_millis.store(millis, std::sync::atomic::Ordering::Relaxed);
    }

    /// Makes every write to a customer's consent item fail.
    pub fn fail_consent_writes(&self) {
        self.consent_writes_fail
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn consent_write(&self) -> Result<(), StoreError> {
        if self.consent_writes_fail.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError {
                operation: "UpdateItem",
                table: "shop-consent".into(),
                message: "throttled".into(),
                retryable: true,
            });
        }
        Ok(())
    }

    /// Makes every claim move `clock` on by `by`, as claims that took that long.
    pub fn claims_advance(&self, clock: std::sync::Arc<crate::runtime::clock::ManualClock>, by: chrono::TimeDelta) {
        *self.claim_advances.lock().unwrap() = Some((clock, by));
    }

    /// Sets a customer's consent.
    pub fn set_consent(&self, phone: &str, consent: Consent) {
        self.consents.lock().unwrap().insert(phone.into(), consent);
    }

    pub fn insert(&self, order_id: &str, order: StoredOrder) {
        self.orders.lock().unwrap().insert(order_id.into(), order);
    }

    pub fn add_review(&self, order_id: &str) {
        self.reviews.lock().unwrap().insert(order_id.into());
    }

    pub fn get(&self, order_id: &str) -> Option<StoredOrder> {
        self.orders.lock().unwrap().get(order_id).cloned()
    }

    pub fn update(&self, order_id: &str, change: impl FnOnce(&mut StoredOrder)) {
        if let Some(order) = self.orders.lock().unwrap().get_mut(order_id) {
            change(order);
        }
    }

    pub fn status_of(&self, order_id: &str) -> Option<RequestStatus> {
        self.get(order_id).map(|order| order.request_status)
    }

    fn not_claimed(order_id: &str) -> StoreError {
        StoreError {
            operation: "UpdateItem",
            table: "in-memory".into(),
            message: format!("ConditionalCheckFailed: {order_id} is not held by this claim"),
            retryable: false,
        }
    }
}

fn as_item(order_id: &str, order: &StoredOrder) -> std::collections::HashMap<String, AttributeValue> {
    let mut item = std::collections::HashMap::from([
        ("orderId".to_string(), AttributeValue::S(order_id.into())),
        ("status".to_string(), AttributeValue::S(order.status.clone())),
    ]);
    for (name, value) in [
        ("customerPhone", &order.customer_phone),
        ("customerName", &order.customer_name),
        ("completedAt", &order.completed_at),
    ] {
        if let Some(value) = value {
            item.insert(name.to_string(), AttributeValue::S(value.clone()));
        }
    }
    item
}

impl ReviewRequestStore for InMemoryOrders {
    /// The last order id returned.
    type Cursor = String;

    async fn pending_page(
        &self,
        shard: &str,
        completed_before: i64,
        cursor: Option<String>,
        limit: i32,
    ) -> Result<PendingPage<String>, StoreError> {
        let orders = self.orders.lock().unwrap();
        let limit = usize::try_from(limit).unwrap_or(1).max(1);
        let matching: Vec<(&String, &StoredOrder)> = orders
            .iter()
            .filter(|(id, _)| cursor.as_ref().is_none_or(|after| *id > after))
            .filter(|(_, o)| o.partition.as_deref() == Some(shard) && o.pending_since < completed_before)
            .take(limit + 1)
            .collect();
        let next = (matching.len() > limit).then(|| matching[limit - 1].0.clone());
        let entries: Vec<_> = matching
            .into_iter()
            .take(limit)
            .map(|(id, order)| decode_pending_entry(&as_item(id, order)))
            .collect();
        Ok(PendingPage {
            foreign: 0,
            items_read: entries.len() as u64,
            entries,
            next,
        })
    }

    async fn has_review(&self, order_id: &str) -> Result<bool, StoreError> {
        Ok(self.reviews.lock().unwrap().contains(order_id))
    }

    async fn claim(&self, order_id: &str, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        self.claims_tried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let takes = self.claim_millis.load(std::sync::atomic::Ordering::Relaxed);
        if takes > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(takes)).await;
        }
        if let Some((clock, by)) = self.claim_advances.lock().unwrap().as_ref() {
            clock.advance(*by);
        }
        let mut orders = self.orders.lock().unwrap();
        let Some(order) = orders.get_mut(order_id) else {
            return Ok(ClaimOutcome::TakenElsewhere);
        };
        if order.request_status != RequestStatus::Pending {
            return Ok(ClaimOutcome::TakenElsewhere);
        }
        if order.status != "completed" {
            return Ok(ClaimOutcome::NotCompleted);
        }
        order.request_status = RequestStatus::Sending;
        order.partition = Some(SENDING_PARTITION.into());
        order.claim = Some(claim.clone());
        Ok(ClaimOutcome::Claimed)
    }

    async fn settle(&self, order_id: &str, claim: &Claim, settlement: &Settlement) -> Result<(), StoreError> {
        let mut orders = self.orders.lock().unwrap();
        let order = orders
            .get_mut(order_id)
            .filter(|o| o.claim.as_ref().map(|c| &c.claim_id) == Some(&claim.claim_id))
            .ok_or_else(|| Self::not_claimed(order_id))?;
        match settlement {
            Settlement::Sent { message_sid, .. } => {
                order.request_status = RequestStatus::Sent;
                order.partition = None;
                order.message_sid = Some(message_sid.clone());
            }
            Settlement::Failed { reason, .. } => {
                order.request_status = RequestStatus::Failed;
                order.partition = None;
                order.last_error = Some(reason.clone());
            }
            Settlement::Released { reason } => {
                order.request_status = RequestStatus::Pending;
                order.partition = Some(shard_of(order_id));
                order.claim = None;
                order.last_error = Some(reason.clone());
            }
            Settlement::Unknown { reason } => {
                order.request_status = RequestStatus::Unknown;
                order.partition = Some(RECONCILE_PARTITION.into());
                order.last_error = Some(reason.clone());
            }
        }
        Ok(())
    }

    async fn close(&self, order_id: &str, status: RequestStatus, reason: &str) -> Result<(), StoreError> {
        self.update(order_id, |order| {
            if order.request_status == RequestStatus::Pending {
                order.request_status = status;
                order.partition = None;
                order.last_error = Some(reason.into());
            }
        });
        Ok(())
    }

    async fn in_flight(&self) -> Result<Vec<InFlightClaim>, StoreError> {
        Ok(self
            .orders
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, o)| o.partition.as_deref() == Some(SENDING_PARTITION))
            .map(|(id, o)| InFlightClaim {
                order_id: id.clone(),
                claimed_at: o.claim.as_ref().map(|c| c.claimed_at),
            })
            .collect())
    }

    async fn park_stale_claim(&self, claim: &InFlightClaim, reason: &str) -> Result<(), StoreError> {
        self.update(&claim.order_id, |order| {
            let same_claim = order.claim.as_ref().map(|c| c.claimed_at) == claim.claimed_at;
            if order.request_status == RequestStatus::Sending && same_claim {
                order.request_status = RequestStatus::Unknown;
                order.partition = Some(RECONCILE_PARTITION.into());
                order.last_error = Some(reason.into());
            }
        });
        Ok(())
    }

    async fn awaiting_reconciliation(&self) -> Result<u64, StoreError> {
        Ok(self
            .orders
            .lock()
            .unwrap()
            .values()
            .filter(|o| matches!(o.partition.as_deref(), Some(RECONCILE_PARTITION | BY_HAND_PARTITION)))
            .count() as u64)
    }

    async fn parked(&self) -> Result<Vec<Parked>, StoreError> {
        Ok(self
            .orders
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, o)| o.partition.as_deref() == Some(RECONCILE_PARTITION))
            .map(|(id, o)| Parked {
                id: crate::messages::engine::MessageId {
                    kind: crate::messages::kind::Kind::ReviewRequest,
                    subject_id: id.clone(),
                },
                customer_phone: o.customer_phone.as_deref().and_then(|p| PhoneNumber::parse(p).ok()),
                claim_id: o.claim.as_ref().map(|c| c.claim_id.clone()),
                claimed_at: o.claim.as_ref().map(|c| c.claimed_at),
            })
            .collect())
    }

    async fn resolve(&self, parked: &Parked, resolution: &Resolution) -> Result<bool, StoreError> {
        let mut orders = self.orders.lock().unwrap();
        let Some(order) = orders.get_mut(&parked.id.subject_id) else {
            return Ok(false);
        };
        let same_claim = order.claim.as_ref().map(|c| c.claimed_at) == parked.claimed_at;
        let parked_here = order.partition.as_deref() == Some(RECONCILE_PARTITION);
        if order.request_status != RequestStatus::Unknown || !same_claim || !parked_here {
            return Ok(false);
        }
        match resolution {
            Resolution::Sent { message_sid, .. } => {
                order.request_status = RequestStatus::Sent;
                order.partition = None;
                order.message_sid = Some(message_sid.clone());
            }
            Resolution::Requeue { reason } => {
                order.request_status = RequestStatus::Pending;
                order.partition = Some(shard_of(&parked.id.subject_id));
                order.claim = None;
                order.last_error = Some(reason.clone());
            }
            Resolution::ByHand { reason } => {
                order.partition = Some(BY_HAND_PARTITION.into());
                order.last_error = Some(reason.clone());
            }
        }
        Ok(true)
    }

    async fn consent(&self, phone: &PhoneNumber) -> Result<Consent, StoreError> {
        Ok(self
            .consents
            .lock()
            .unwrap()
            .get(phone.as_str())
            .cloned()
            .unwrap_or_default())
    }

    async fn record_sent(&self, phone: &PhoneNumber, at: DateTime<Utc>, caps: &Caps) -> Result<(), StoreError> {
        self.consent_write()?;
        let mut consents = self.consents.lock().unwrap();
        let customer = consents.entry(phone.as_str().to_owned()).or_default();
        customer.last_sent_at = Some(at);
        customer.marketing_sent.insert(0, at);
        customer.marketing_sent.truncate(caps.per_week as usize);
        Ok(())
    }

    async fn record_twilio_opt_out(&self, phone: &PhoneNumber, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.consent_write()?;
        let at = rfc3339(at);
        self.set_consent(
            phone.as_str(),
            Consent {
                opt_out: Some(OptOut::All),
                opt_out_all_at: Some(at.clone()),
                opt_out_marketing_at: Some(at),
                ..Consent::default()
            },
        );
        Ok(())
    }
}
