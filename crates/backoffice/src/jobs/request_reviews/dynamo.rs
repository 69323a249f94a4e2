//! The DynamoDB side of review requests (Orders and Reviews tables), and the writer
//! functions the shop's other services use for orders.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};

use super::store::{
    BY_HAND_PARTITION, Claim, ClaimOutcome, DueOrder, InFlightClaim, LookedUp, Parked, PendingPage,
    RECONCILE_PARTITION, REVIEW_PENDING_INDEX, RequestStatus, Resolution, ReviewRequestStore, SENDING_PARTITION,
    Settlement, decode_pending_entry,
};
use crate::domain::consent::{ConsentChange, ConsentSource, OptOut};
use crate::domain::phone::PhoneNumber;
use crate::messages::caps::Caps;
use crate::messages::consent::{Consent, DynamoConsents};
use crate::report::counters::{Counter, DailyCounters};
use crate::store::StoreError;
use crate::store::dynamo::{
    Item, is_condition_failure, item_exists, n, refused_update_item, rfc3339, s, store_error, string,
};
use crate::store::partition::Partition;
use crate::store::shard::shard_of;

#[derive(Debug, Clone)]
pub struct DynamoOrders {
    pub(super) client: Client,
    pub(super) orders_table: String,
    pub(super) reviews_table: String,
    /// Without it (tools and tests that write orders), every customer reads as consenting.
    consents: Option<DynamoConsents>,
    counters: Option<DailyCounters>,
}

impl DynamoOrders {
    pub fn new(client: Client, orders_table: impl Into<String>, reviews_table: impl Into<String>) -> Self {
        Self {
            client,
            orders_table: orders_table.into(),
            reviews_table: reviews_table.into(),
            consents: None,
            counters: None,
        }
    }

    /// Counts each run's review requests in the day's counters.
    pub fn with_counters(self, counters: DailyCounters) -> Self {
        Self {
            counters: Some(counters),
            ..self
        }
    }

    /// The orders of a function that sends: consent is read from this table.
    pub fn with_consents(self, consents: DynamoConsents) -> Self {
        Self {
            consents: Some(consents),
            ..self
        }
    }

    pub fn orders_table(&self) -> &str {
        &self.orders_table
    }

    pub(super) fn encode_error(&self, order_id: &str, error: impl std::fmt::Display) -> StoreError {
        StoreError {
            operation: "PutItem",
            table: self.orders_table.clone(),
            message: format!("order {order_id} cannot be encoded: {error}"),
            retryable: false,
        }
    }

    /// One partition of `review-pending-index` (`sending` or `reconcile`).
    fn partition<'a>(&'a self, value: &'a str) -> Partition<'a> {
        Partition {
            client: &self.client,
            table: &self.orders_table,
            index: REVIEW_PENDING_INDEX,
            hash_key: "reviewPendingShard",
            value,
        }
    }

    async fn update_claimed(
        &self,
        order_id: &str,
        claim: &Claim,
        expression: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<(), StoreError> {
        self.update_under(order_id, claim, "reviewClaimId = :claimId", expression, values)
            .await
    }

    async fn update_under(
        &self,
        order_id: &str,
        claim: &Claim,
        condition: &str,
        expression: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.orders_table)
            .key("orderId", s(order_id))
            .update_expression(expression)
            .condition_expression(condition)
            .expression_attribute_values(":claimId", s(&claim.claim_id));
        for (name, value) in values {
            update = update.expression_attribute_values(name, value);
        }
        update
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", &self.orders_table, e))?;
        Ok(())
    }
}

/// The attributes that put an order in line for its review request.
pub fn pending_attributes(order_id: &str, completed_at: DateTime<Utc>) -> Vec<(String, AttributeValue)> {
    vec![
        ("reviewPendingShard".into(), s(shard_of(order_id))),
        ("reviewPendingSince".into(), n(completed_at.timestamp())),
        ("reviewRequestStatus".into(), s(RequestStatus::Pending.as_str())),
    ]
}

fn batch_error(table: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError {
        operation: "BatchGetItem",
        table: table.to_owned(),
        message: format!("the look-up cannot be built: {error}"),
        retryable: false,
    }
}

impl ReviewRequestStore for DynamoOrders {
    type Cursor = Item;

    async fn pending_page(
        &self,
        shard: &str,
        completed_before: i64,
        cursor: Option<Item>,
        limit: i32,
    ) -> Result<PendingPage<Item>, StoreError> {
        let output = self
            .partition(shard)
            .page_below("reviewPendingSince", completed_before, cursor, limit)
            .await?;
        Ok(PendingPage {
            foreign: 0,
            items_read: u64::try_from(output.scanned_count).unwrap_or_default(),
            entries: output
                .items
                .unwrap_or_default()
                .iter()
                .map(decode_pending_entry)
                .collect(),
            next: output.last_evaluated_key.filter(|key| !key.is_empty()),
        })
    }

    async fn has_review(&self, order_id: &str) -> Result<bool, StoreError> {
        item_exists(&self.client, &self.reviews_table, "orderId", order_id).await
    }

    /// One `BatchGetItem` per 50 orders: their reviews (keys only) and their customers'
    /// consent items. What comes back unprocessed is left out.
    async fn look_up(&self, due: &[DueOrder]) -> Result<LookedUp, StoreError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut found = LookedUp::default();
        for chunk in due.chunks(50) {
            let mut reviews = KeysAndAttributes::builder()
                .consistent_read(true)
                .projection_expression("orderId");
            for order in chunk {
                reviews = reviews.keys(Item::from([("orderId".to_owned(), s(&order.order_id))]));
            }
            let mut request = self.client.batch_get_item().request_items(
                &self.reviews_table,
                reviews.build().map_err(|e| batch_error(&self.reviews_table, e))?,
            );
            let consent_table = self.consents.as_ref().map(|consents| consents.table().to_owned());
            if let Some(table) = &consent_table {
                let mut phones: Vec<&str> = chunk.iter().map(|order| order.customer_phone.as_str()).collect();
                phones.sort_unstable();
                phones.dedup();
                let mut consents = KeysAndAttributes::builder().consistent_read(true);
                for phone in phones {
                    consents = consents.keys(Item::from([("phone".to_owned(), s(phone))]));
                }
                request = request.request_items(table, consents.build().map_err(|e| batch_error(table, e))?);
            }
            let output = request
                .send()
                .await
                .map_err(|e| store_error("BatchGetItem", &self.reviews_table, e))?;
            let unprocessed = output.unprocessed_keys.clone().unwrap_or_default();
            let left_out = |table: &str, name: &str, value: &str| {
                unprocessed
                    .get(table)
                    .is_some_and(|keys| keys.keys().iter().any(|key| key.get(name) == Some(&s(value))))
            };
            let responses = output.responses.unwrap_or_default();
            let reviewed: std::collections::HashSet<String> = responses
                .get(&self.reviews_table)
                .into_iter()
                .flatten()
                .filter_map(|item| string(item, "orderId"))
                .collect();
            for order in chunk {
                if !left_out(&self.reviews_table, "orderId", &order.order_id) {
                    found.orders.insert(order.order_id.clone());
                    if reviewed.contains(&order.order_id) {
                        found.reviewed.insert(order.order_id.clone());
                    }
                }
            }
            match &consent_table {
                Some(table) => {
                    let items: std::collections::HashMap<String, &Item> = responses
                        .get(table)
                        .into_iter()
                        .flatten()
                        .filter_map(|item| Some((string(item, "phone")?, item)))
                        .collect();
                    for order in chunk {
                        let phone = order.customer_phone.as_str();
                        if !left_out(table, "phone", phone) {
                            let consent = items
                                .get(phone)
                                .map(|item| Consent::from_item(item))
                                .unwrap_or_default();
                            found.consents.insert(phone.to_owned(), consent);
                        }
                    }
                }
                None => {
                    for order in chunk {
                        found
                            .consents
                            .insert(order.customer_phone.as_str().to_owned(), Consent::default());
                    }
                }
            }
        }
        Ok(found)
    }

    async fn claim(&self, order_id: &str, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        let result: Result<UpdateItemOutput, _> = self
            .client
            .update_item()
            .table_name(&self.orders_table)
            .key("orderId", s(order_id))
            .update_expression(
                "SET reviewPendingShard = :sending, reviewRequestStatus = :sending, \
                 reviewClaimId = :claimId, reviewClaimedAt = :claimedAt ADD reviewAttempts :one",
            )
            .condition_expression("reviewRequestStatus = :pending AND #status = :completed")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s(SENDING_PARTITION))
            .expression_attribute_values(":pending", s(RequestStatus::Pending.as_str()))
            .expression_attribute_values(":completed", s("completed"))
            .expression_attribute_values(":claimId", s(&claim.claim_id))
            .expression_attribute_values(":claimedAt", s(rfc3339(claim.claimed_at)))
            .expression_attribute_values(":one", n(1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(ClaimOutcome::Claimed),
            Err(error) if is_condition_failure(&error) => {
                let old = refused_update_item(&error);
                let field = |name: &str| old.and_then(|item| item.get(name));
                // The SDK sent the claim again after an answer it did not get (a timeout, a
                // 5xx), and the first one had been written: the claim is this one.
                let written_by_this_claim = field("reviewRequestStatus") == Some(&s(SENDING_PARTITION))
                    && field("reviewClaimId") == Some(&s(&claim.claim_id))
                    && field("reviewClaimedAt") == Some(&s(rfc3339(claim.claimed_at)));
                let still_pending_but_not_completed = field("reviewRequestStatus")
                    == Some(&s(RequestStatus::Pending.as_str()))
                    && field("status") != Some(&s("completed"));
                Ok(if written_by_this_claim {
                    ClaimOutcome::Claimed
                } else if still_pending_but_not_completed {
                    ClaimOutcome::NotCompleted
                } else {
                    ClaimOutcome::TakenElsewhere
                })
            }
            Err(error) => Err(store_error("UpdateItem", &self.orders_table, error)),
        }
    }

    async fn settle(&self, order_id: &str, claim: &Claim, settlement: &Settlement) -> Result<(), StoreError> {
        match settlement {
            Settlement::Sent { message_sid, sent_at } => {
                self.update_claimed(
                    order_id,
                    claim,
                    "SET reviewRequestStatus = :sent, reviewMessageSid = :sid, reviewRequestedAt = :at \
                     REMOVE reviewPendingShard, reviewPendingSince, reviewLastError",
                    vec![
                        (":sent", s(RequestStatus::Sent.as_str())),
                        (":sid", s(message_sid)),
                        (":at", s(rfc3339(*sent_at))),
                    ],
                )
                .await
            }
            Settlement::Failed { code, reason } => {
                self.update_claimed(
                    order_id,
                    claim,
                    "SET reviewRequestStatus = :failed, reviewFailureCode = :code, reviewLastError = :reason \
                     REMOVE reviewPendingShard, reviewPendingSince",
                    vec![
                        (":failed", s(RequestStatus::Failed.as_str())),
                        (
                            ":code",
                            code.map_or_else(|| AttributeValue::Null(true), |c| n(i64::from(c))),
                        ),
                        (":reason", s(reason)),
                    ],
                )
                .await
            }
            Settlement::Released { reason } => {
                // Still under the claim, or released by it and neither claimed nor closed
                // since: how the SDK's retry of a release whose answer was lost finds it.
                self.update_under(
                    order_id,
                    claim,
                    "reviewClaimId = :claimId OR (attribute_not_exists(reviewClaimId) \
                     AND reviewReleasedClaimId = :claimId AND reviewRequestStatus = :pending)",
                    "SET reviewRequestStatus = :pending, reviewPendingShard = :shard, reviewLastError = :reason, \
                     reviewReleasedClaimId = :claimId REMOVE reviewClaimId, reviewClaimedAt",
                    vec![
                        (":pending", s(RequestStatus::Pending.as_str())),
                        (":shard", s(shard_of(order_id))),
                        (":reason", s(reason)),
                    ],
                )
                .await
            }
            Settlement::Unknown { reason } => {
                self.update_claimed(
                    order_id,
                    claim,
                    "SET reviewRequestStatus = :unknown, reviewPendingShard = :reconcile, reviewLastError = :reason",
                    vec![
                        (":unknown", s(RequestStatus::Unknown.as_str())),
                        (":reconcile", s(RECONCILE_PARTITION)),
                        (":reason", s(reason)),
                    ],
                )
                .await
            }
        }
    }

    async fn close(&self, order_id: &str, status: RequestStatus, reason: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.orders_table)
            .key("orderId", s(order_id))
            .update_expression(
                "SET reviewRequestStatus = :status, reviewLastError = :reason \
                 REMOVE reviewPendingShard, reviewPendingSince",
            )
            .condition_expression("reviewRequestStatus = :pending")
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":pending", s(RequestStatus::Pending.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(store_error("UpdateItem", &self.orders_table, e)),
        }
    }

    async fn in_flight(&self) -> Result<Vec<InFlightClaim>, StoreError> {
        let items = self.partition(SENDING_PARTITION).items().await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let order_id = string(item, "orderId")?;
                let claimed_at = string(item, "reviewClaimedAt")
                    .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
                    .map(|at| at.with_timezone(&Utc));
                Some(InFlightClaim { order_id, claimed_at })
            })
            .collect())
    }

    async fn park_stale_claim(&self, claim: &InFlightClaim, reason: &str) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.orders_table)
            .key("orderId", s(&claim.order_id))
            .update_expression(
                "SET reviewRequestStatus = :unknown, reviewPendingShard = :reconcile, reviewLastError = :reason",
            )
            .expression_attribute_values(":unknown", s(RequestStatus::Unknown.as_str()))
            .expression_attribute_values(":reconcile", s(RECONCILE_PARTITION))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":sending", s(RequestStatus::Sending.as_str()));
        update = match claim.claimed_at {
            Some(at) => update
                .condition_expression("reviewRequestStatus = :sending AND reviewClaimedAt = :claimedAt")
                .expression_attribute_values(":claimedAt", s(rfc3339(at))),
            None => update.condition_expression("reviewRequestStatus = :sending"),
        };
        match update.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(store_error("UpdateItem", &self.orders_table, e)),
        }
    }

    async fn awaiting_reconciliation(&self) -> Result<u64, StoreError> {
        Ok(self.partition(RECONCILE_PARTITION).count().await? + self.partition(BY_HAND_PARTITION).count().await?)
    }

    async fn parked(&self) -> Result<Vec<Parked>, StoreError> {
        let items = self.partition(RECONCILE_PARTITION).items().await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                Some(Parked {
                    id: crate::messages::engine::MessageId {
                        kind: crate::messages::kind::Kind::ReviewRequest,
                        subject_id: string(item, "orderId")?,
                    },
                    customer_phone: string(item, "customerPhone").and_then(|phone| PhoneNumber::parse(&phone).ok()),
                    claim_id: string(item, "reviewClaimId"),
                    claimed_at: string(item, "reviewClaimedAt")
                        .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
                        .map(|at| at.with_timezone(&Utc)),
                })
            })
            .collect())
    }

    async fn resolve(&self, parked: &Parked, resolution: &Resolution) -> Result<bool, StoreError> {
        let order_id = &parked.id.subject_id;
        let mut update = self
            .client
            .update_item()
            .table_name(&self.orders_table)
            .key("orderId", s(order_id))
            .expression_attribute_values(":unknown", s(RequestStatus::Unknown.as_str()))
            .expression_attribute_values(":reconcile", s(RECONCILE_PARTITION));
        // Still parked and not yet moved aside; the index holds the claim's time, not its
        // id: the same claim is the same time.
        update = match parked.claimed_at {
            Some(at) => update
                .condition_expression(
                    "reviewRequestStatus = :unknown AND reviewPendingShard = :reconcile AND reviewClaimedAt = :claimedAt",
                )
                .expression_attribute_values(":claimedAt", s(rfc3339(at))),
            None => update.condition_expression(
                "reviewRequestStatus = :unknown AND reviewPendingShard = :reconcile AND attribute_not_exists(reviewClaimedAt)",
            ),
        };
        update = match resolution {
            // `reviewRequestedAt` puts the order in `review-reply-index`: a reply finds it.
            Resolution::Sent { message_sid, sent_at } => update
                .update_expression(
                    "SET reviewRequestStatus = :sent, reviewMessageSid = :sid, reviewRequestedAt = :at, \
                     reviewReconcileToken = :token REMOVE reviewPendingShard, reviewPendingSince, reviewLastError",
                )
                .expression_attribute_values(":sent", s(RequestStatus::Sent.as_str()))
                .expression_attribute_values(":sid", s(message_sid))
                .expression_attribute_values(":at", s(rfc3339(*sent_at))),
            Resolution::Requeue { reason } => update
                .update_expression(
                    "SET reviewRequestStatus = :pending, reviewPendingShard = :shard, reviewLastError = :reason, \
                     reviewReconcileToken = :token REMOVE reviewClaimId, reviewClaimedAt",
                )
                .expression_attribute_values(":pending", s(RequestStatus::Pending.as_str()))
                .expression_attribute_values(":shard", s(shard_of(order_id)))
                .expression_attribute_values(":reason", s(reason)),
            Resolution::ByHand { reason } => update
                .update_expression(
                    "SET reviewPendingShard = :byHand, reviewLastError = :reason, reviewReconcileToken = :token",
                )
                .expression_attribute_values(":byHand", s(BY_HAND_PARTITION))
                .expression_attribute_values(":reason", s(format!("reconciliation cannot decide: {reason}"))),
        };
        // A token of this write: the SDK's retry of a resolution whose answer was lost is
        // refused by its own first attempt, and must still read as done by this run.
        let token = crate::store::dynamo::claim_token();
        let update = update.expression_attribute_values(":token", s(&token));
        crate::store::dynamo::send_claim(update, &self.orders_table, "reviewReconcileToken", &token).await
    }

    async fn count(&self, at: DateTime<Utc>, increments: &[(Counter, u64)]) -> Result<(), StoreError> {
        match &self.counters {
            Some(counters) => counters.add(at, increments, None).await,
            None => Ok(()),
        }
    }

    async fn consent(&self, phone: &PhoneNumber) -> Result<Consent, StoreError> {
        match &self.consents {
            Some(consents) => consents.get(phone).await,
            None => Ok(Consent::default()),
        }
    }

    async fn record_sent(&self, phone: &PhoneNumber, at: DateTime<Utc>, caps: &Caps) -> Result<(), StoreError> {
        match &self.consents {
            Some(consents) => consents.record_sent(phone, true, at, caps).await,
            None => Ok(()),
        }
    }

    async fn record_twilio_opt_out(&self, phone: &PhoneNumber, at: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some(consents) = &self.consents {
            consents
                .record(
                    phone,
                    ConsentChange::OptOut(OptOut::All),
                    ConsentSource::Twilio,
                    at,
                    None,
                )
                .await?;
        }
        Ok(())
    }
}
