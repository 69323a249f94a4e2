//! The DynamoDB side of review replies: `review-reply-index` on Orders (Query only) and
//! the Reviews table (GetItem, conditional PutItem, conditional UpdateItem of the alert
//! claim `alertedAt` / `alertedMessageSid`).

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};

use super::{NewReview, ReplyStore, RequestedOrder, StoredReview, WriteOutcome};
use crate::domain::consent::{ConsentChange, ConsentSource};
use crate::domain::phone::PhoneNumber;
use crate::messages::consent::DynamoConsents;
use crate::messages::delivery::{DynamoDeliveries, Recorded, StatusUpdate};
use crate::report::counters::{Counter, DailyCounters};
use crate::store::StoreError;
use crate::store::dynamo::{Item, claim_token, is_condition_failure, rfc3339, s, send_claim, store_error, string};

/// The sparse GSI of orders whose review request was sent; defined in template.yaml.
pub const REVIEW_REPLY_INDEX: &str = "review-reply-index";

#[derive(Debug, Clone)]
pub struct DynamoReplies {
    client: Client,
    orders_table: String,
    reviews_table: String,
    consents: DynamoConsents,
    /// Without a Messages table, delivery statuses are not recorded.
    deliveries: Option<DynamoDeliveries>,
    counters: Option<DailyCounters>,
}

impl DynamoReplies {
    pub fn new(
        client: Client,
        orders_table: impl Into<String>,
        reviews_table: impl Into<String>,
        consent_table: impl Into<String>,
    ) -> Self {
        Self {
            consents: DynamoConsents::new(client.clone(), consent_table),
            client,
            orders_table: orders_table.into(),
            reviews_table: reviews_table.into(),
            deliveries: None,
            counters: None,
        }
    }

    /// Records delivery statuses on the Messages table (and on Orders for review requests).
    pub fn with_deliveries(self, messages_table: impl Into<String>) -> Self {
        Self {
            deliveries: Some(DynamoDeliveries::new(
                self.client.clone(),
                messages_table,
                self.orders_table.clone(),
            )),
            ..self
        }
    }

    /// Counts received messages, reviews and delivery milestones in the day's counters.
    pub fn with_counters(self, counters: DailyCounters) -> Self {
        Self {
            counters: Some(counters),
            ..self
        }
    }

    /// The consent table, for tests and tools.
    pub fn consents(&self) -> &DynamoConsents {
        &self.consents
    }

    /// The raw review item, for tests and tools.
    pub async fn review_item(&self, order_id: &str) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.reviews_table)
            .key("orderId", s(order_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", &self.reviews_table, e))?;
        Ok(output.item.filter(|item| !item.is_empty()))
    }

    fn item_for(review: &NewReview) -> Item {
        HashMap::from([
            ("orderId".to_owned(), s(&review.order_id)),
            ("rating".to_owned(), AttributeValue::N(review.rating.to_string())),
            ("comment".to_owned(), s(&review.comment)),
            ("createdAt".to_owned(), s(rfc3339(review.created_at))),
            ("messageSid".to_owned(), s(&review.message_sid)),
            (
                "messageSids".to_owned(),
                AttributeValue::Ss(vec![review.message_sid.clone()]),
            ),
            ("customerPhone".to_owned(), s(review.customer_phone.as_str())),
            ("source".to_owned(), s(review.source.as_str())),
        ])
    }
}

fn old_item<R>(error: &SdkError<PutItemError, R>) -> Option<&Item> {
    match error.as_service_error() {
        Some(PutItemError::ConditionalCheckFailedException(e)) => e.item.as_ref().filter(|item| !item.is_empty()),
        _ => None,
    }
}

/// A review item, as far as this function needs it. An item whose rating is not a
/// number 1-5 still counts as a review (someone wrote it): it reads as rating 0.
pub fn decode_review(item: &Item) -> Option<StoredReview> {
    let order_id = string(item, "orderId")?;
    let rating = match item.get("rating") {
        Some(AttributeValue::N(n)) => n.parse::<u8>().ok().filter(|r| (1..=5).contains(r)).unwrap_or(0),
        _ => 0,
    };
    Some(StoredReview {
        order_id,
        rating,
        comment: string(item, "comment").unwrap_or_default(),
        created_at: string(item, "createdAt"),
        message_sid: string(item, "messageSid"),
        previous_message_sid: string(item, "previousMessageSid"),
        message_sids: match item.get("messageSids") {
            Some(AttributeValue::Ss(sids)) => sids.iter().cloned().collect(),
            _ => BTreeSet::new(),
        },
        alerted_at: string(item, "alertedAt"),
        alerted_message_sid: string(item, "alertedMessageSid"),
    })
}

impl ReplyStore for DynamoReplies {
    async fn knows_rating(&self, phone: &PhoneNumber, message_sid: &str) -> Result<bool, StoreError> {
        self.consents.knows_rating(phone, message_sid).await
    }

    async fn remember_rating(&self, phone: &PhoneNumber, message_sid: &str) -> Result<bool, StoreError> {
        self.consents.remember_rating(phone, message_sid).await
    }

    async fn record_delivery(&self, update: &StatusUpdate) -> Result<Recorded, StoreError> {
        match &self.deliveries {
            Some(deliveries) => deliveries.record(update).await,
            None => Ok(Recorded::NotOurs),
        }
    }

    async fn count(
        &self,
        at: DateTime<Utc>,
        once: Option<&str>,
        increments: &[(Counter, u64)],
        negative_review: Option<&str>,
    ) -> Result<(), StoreError> {
        let Some(counters) = &self.counters else {
            return Ok(());
        };
        if let Some(marker) = once
            && !counters
                .first_time(marker, at, crate::report::counters::MESSAGE_MARKER_KEPT_FOR)
                .await?
        {
            return Ok(());
        }
        counters.add(at, increments, negative_review).await
    }

    async fn record_consent(
        &self,
        phone: &PhoneNumber,
        change: ConsentChange,
        source: ConsentSource,
        at: DateTime<Utc>,
        message_sid: &str,
    ) -> Result<bool, StoreError> {
        self.consents.record(phone, change, source, at, Some(message_sid)).await
    }

    async fn requested_orders(
        &self,
        phone: &PhoneNumber,
        since: DateTime<Utc>,
        limit: i32,
    ) -> Result<Vec<RequestedOrder>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.orders_table)
            .index_name(REVIEW_REPLY_INDEX)
            .key_condition_expression("customerPhone = :phone AND reviewRequestedAt >= :since")
            .expression_attribute_values(":phone", s(phone.as_str()))
            .expression_attribute_values(":since", s(rfc3339(since)))
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .map_err(|e| store_error("Query", &self.orders_table, e))?;
        Ok(output
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| {
                let order_id = string(item, "orderId")?;
                let requested_at = DateTime::parse_from_rfc3339(&string(item, "reviewRequestedAt")?).ok()?;
                Some(RequestedOrder {
                    order_id,
                    requested_at: requested_at.with_timezone(&Utc),
                })
            })
            .collect())
    }

    async fn review(&self, order_id: &str) -> Result<Option<StoredReview>, StoreError> {
        Ok(self.review_item(order_id).await?.as_ref().and_then(decode_review))
    }

    async fn put_review(&self, review: &NewReview) -> Result<WriteOutcome, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.reviews_table)
            .set_item(Some(Self::item_for(review)))
            // Never over an existing review. When the condition fails, the stored item
            // says whether it was this same message (a concurrent Twilio retry) or
            // another reply.
            .condition_expression("attribute_not_exists(orderId)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(WriteOutcome::Written),
            Err(error) if is_condition_failure(&error) => {
                let same_message = old_item(&error)
                    .and_then(decode_review)
                    .is_some_and(|stored| stored.written_by(&review.message_sid));
                Ok(if same_message {
                    WriteOutcome::AlreadyRecorded
                } else {
                    WriteOutcome::Conflict
                })
            }
            Err(error) => Err(store_error("PutItem", &self.reviews_table, error)),
        }
    }

    async fn correct_review(&self, review: &NewReview, previous: &StoredReview) -> Result<WriteOutcome, StoreError> {
        let mut item = Self::item_for(review);
        if let Some(created_at) = &previous.created_at {
            item.insert("createdAt".into(), s(created_at));
        }
        item.insert("correctedAt".into(), s(rfc3339(review.created_at)));
        if (1..=5).contains(&previous.rating) {
            item.insert("previousRating".into(), AttributeValue::N(previous.rating.to_string()));
        }
        item.insert("previousComment".into(), s(&previous.comment));
        if let Some(sid) = &previous.message_sid {
            item.insert("previousMessageSid".into(), s(sid));
        }
        let mut sids = previous.all_message_sids();
        sids.insert(review.message_sid.clone());
        item.insert("messageSids".into(), AttributeValue::Ss(sids.into_iter().collect()));
        if let Some(at) = &previous.alerted_at {
            item.insert("alertedAt".into(), s(at));
        }
        if let Some(sid) = &previous.alerted_message_sid {
            item.insert("alertedMessageSid".into(), s(sid));
        }
        let mut put = self
            .client
            .put_item()
            .table_name(&self.reviews_table)
            .set_item(Some(item));
        // Replace exactly the review that was read, nothing written since: neither a
        // reply nor an alert (whose time the new item carries on).
        let same_message = match &previous.message_sid {
            Some(sid) => {
                put = put.expression_attribute_values(":previousSid", s(sid));
                "messageSid = :previousSid"
            }
            None => "attribute_exists(orderId) AND attribute_not_exists(messageSid)",
        };
        let same_alert = match &previous.alerted_at {
            Some(at) => {
                put = put.expression_attribute_values(":previousAlertedAt", s(at));
                "alertedAt = :previousAlertedAt"
            }
            None => "attribute_not_exists(alertedAt)",
        };
        put = put.condition_expression(format!("{same_message} AND {same_alert}"));
        match put.send().await {
            Ok(_) => Ok(WriteOutcome::Written),
            Err(error) if is_condition_failure(&error) => Ok(WriteOutcome::Conflict),
            Err(error) => Err(store_error("PutItem", &self.reviews_table, error)),
        }
    }

    async fn claim_alert(
        &self,
        order_id: &str,
        message_sid: &str,
        at: DateTime<Utc>,
        cutoff: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // A token of this claim alone: when the SDK sends the claim again after an answer
        // it did not get, the refused retry finds it and knows the claim is its own, which
        // a concurrent delivery of the same message, even in the same second, cannot.
        let token = claim_token();
        let update = self
            .client
            .update_item()
            .table_name(&self.reviews_table)
            .key("orderId", s(order_id))
            .update_expression("SET alertedAt = :at, alertedMessageSid = :sid, alertClaim = :token")
            .condition_expression(
                "messageSid = :sid \
                 AND (attribute_not_exists(alertedMessageSid) OR alertedMessageSid <> :sid) \
                 AND (attribute_not_exists(alertedAt) OR alertedAt < :cutoff)",
            )
            .expression_attribute_values(":at", s(rfc3339(at)))
            .expression_attribute_values(":sid", s(message_sid))
            .expression_attribute_values(":cutoff", s(rfc3339(cutoff)))
            .expression_attribute_values(":token", s(&token));
        send_claim(update, &self.reviews_table, "alertClaim", &token).await
    }

    async fn release_alert(
        &self,
        order_id: &str,
        message_sid: &str,
        claimed_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.reviews_table)
            .key("orderId", s(order_id))
            .update_expression("REMOVE alertedAt, alertedMessageSid, alertClaim")
            .condition_expression("alertedMessageSid = :sid AND alertedAt = :at")
            .expression_attribute_values(":at", s(rfc3339(claimed_at)))
            .expression_attribute_values(":sid", s(message_sid))
            .send()
            .await;
        match result {
            // Claimed again or corrected meanwhile: nothing of ours to give back.
            Ok(_) => Ok(()),
            Err(error) if is_condition_failure(&error) => Ok(()),
            Err(error) => Err(store_error("UpdateItem", &self.reviews_table, error)),
        }
    }
}
