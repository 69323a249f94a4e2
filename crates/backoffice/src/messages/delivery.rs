//! What became of a message after Twilio accepted it: the statuses Twilio posts to the
//! status callback (queued, sent, delivered, read, failed, undelivered), recorded on the
//! message's own item. The one module that maps the delivery attributes.
//!
//! Callbacks come late, twice, or out of order. Each status has a rank, and a status is
//! recorded only over a lower one (a conditional write), so a late "sent" never
//! overwrites "read", and a repeated callback changes nothing. What a recorded status
//! passed on its way (a "read" arriving before its "delivered" passes "delivered") is
//! returned as [`Milestone`]s, counted once each.
//!
//! | item | attributes |
//! |---|---|
//! | Messages table (`messageId`) | `deliveryStatus`, `deliveryRank`, `deliveryErrorCode`, `deliveryUpdatedAt`, `deliveredAt`, `readAt` |
//! | Orders table (`orderId`, review requests) | the same, prefixed `review` (`reviewDeliveryStatus`...) |

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};

use super::engine::MessageId;
use super::kind::Kind;
use super::outbox::message_key;
use crate::store::StoreError;
use crate::store::dynamo::{Item, is_condition_failure, n, rfc3339, s, store_error, string};

/// A message status as Twilio names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum DeliveryStatus {
    Accepted,
    Scheduled,
    Queued,
    Sending,
    Sent,
    Canceled,
    Failed,
    Undelivered,
    Delivered,
    Read,
}

impl DeliveryStatus {
    /// Order of progress: a status is recorded only over a lower rank.
    pub fn rank(self) -> u8 {
        match self {
            Self::Accepted | Self::Scheduled | Self::Queued | Self::Sending => 1,
            Self::Sent => 2,
            Self::Canceled | Self::Failed | Self::Undelivered => 3,
            Self::Delivered => 4,
            Self::Read => 5,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn is_failure(self) -> bool {
        matches!(self, Self::Canceled | Self::Failed | Self::Undelivered)
    }
}

/// One status callback, once authenticated and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    pub id: MessageId,
    pub message_sid: String,
    pub status: DeliveryStatus,
    /// Twilio's `ErrorCode` (63016 outside the 24-hour window, 63024 invalid recipient,
    /// 131049 Meta's marketing limit...).
    pub error_code: Option<u32>,
    pub at: DateTime<Utc>,
}

/// What a recorded status passed, for the counters and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Milestone {
    Delivered,
    Read,
    Failed { error_code: Option<u32> },
}

/// What recording a status did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded; these milestones were passed for the first time.
    Advanced(Vec<Milestone>),
    /// The message is already at this status or further: nothing changed.
    Stale,
    /// No such message, or one sent under another SID: nothing recorded.
    NotOurs,
}

/// The milestones passed going from rank `from` (0: no status yet) to `to`.
pub fn milestones(from: u8, to: DeliveryStatus, error_code: Option<u32>) -> Vec<Milestone> {
    if to.is_failure() {
        return vec![Milestone::Failed { error_code }];
    }
    let mut passed = Vec::new();
    if from < DeliveryStatus::Delivered.rank() && to.rank() >= DeliveryStatus::Delivered.rank() {
        passed.push(Milestone::Delivered);
    }
    if to == DeliveryStatus::Read && from < DeliveryStatus::Read.rank() {
        passed.push(Milestone::Read);
    }
    passed
}

/// Where each kind keeps its delivery attributes.
struct Layout<'a> {
    table: &'a str,
    key_name: &'static str,
    key: String,
    prefix: &'static str,
    sid_attribute: &'static str,
}

impl Layout<'_> {
    fn attribute(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            let mut chars = name.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase()).unwrap_or_default();
            format!("{}{first}{}", self.prefix, chars.as_str())
        }
    }
}

#[derive(Debug, Clone)]
pub struct DynamoDeliveries {
    client: Client,
    messages_table: String,
    orders_table: String,
}

impl DynamoDeliveries {
    pub fn new(client: Client, messages_table: impl Into<String>, orders_table: impl Into<String>) -> Self {
        Self {
            client,
            messages_table: messages_table.into(),
            orders_table: orders_table.into(),
        }
    }

    fn layout(&self, id: &MessageId) -> Layout<'_> {
        match id.kind {
            Kind::ReviewRequest => Layout {
                table: &self.orders_table,
                key_name: "orderId",
                key: id.subject_id.clone(),
                prefix: "review",
                sid_attribute: "reviewMessageSid",
            },
            _ => Layout {
                table: &self.messages_table,
                key_name: "messageId",
                key: message_key(id),
                prefix: "",
                sid_attribute: "messageSid",
            },
        }
    }

    /// Records `update` over any lower status of the same message; see the module.
    pub async fn record(&self, update: &StatusUpdate) -> Result<Recorded, StoreError> {
        let layout = self.layout(&update.id);
        let rank = update.status.rank();
        let mut sets = vec!["#status = :status", "#rank = :rank", "#updated = :at", "#sid = :sid"];
        let mut request = self
            .client
            .update_item()
            .table_name(layout.table)
            .key(layout.key_name, s(&layout.key))
            // The message's own SID, once settled; before that (a callback can beat the
            // settle), the callback's SID is kept beside it.
            .condition_expression(
                "attribute_exists(#key) AND (attribute_not_exists(#rank) OR #rank < :rank) \
                 AND (attribute_not_exists(#messageSid) OR #messageSid = :sid)",
            )
            .expression_attribute_names("#key", layout.key_name)
            .expression_attribute_names("#status", layout.attribute("deliveryStatus"))
            .expression_attribute_names("#rank", layout.attribute("deliveryRank"))
            .expression_attribute_names("#updated", layout.attribute("deliveryUpdatedAt"))
            .expression_attribute_names("#sid", layout.attribute("deliverySid"))
            .expression_attribute_names("#messageSid", layout.sid_attribute)
            .expression_attribute_values(":status", s(update.status.as_str()))
            .expression_attribute_values(":rank", n(i64::from(rank)))
            .expression_attribute_values(":at", s(rfc3339(update.at)))
            .expression_attribute_values(":sid", s(&update.message_sid))
            .return_values(ReturnValue::UpdatedOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(code) = update.error_code {
            sets.push("#code = :code");
            request = request
                .expression_attribute_names("#code", layout.attribute("deliveryErrorCode"))
                .expression_attribute_values(":code", n(i64::from(code)));
        }
        match update.status {
            DeliveryStatus::Delivered => {
                sets.push("#delivered = if_not_exists(#delivered, :at)");
                request = request.expression_attribute_names("#delivered", layout.attribute("deliveredAt"));
            }
            DeliveryStatus::Read => {
                sets.push("#read = :at");
                request = request.expression_attribute_names("#read", layout.attribute("readAt"));
            }
            _ => {}
        }
        let result = request
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await;
        match result {
            Ok(output) => {
                let old_rank = output
                    .attributes
                    .as_ref()
                    .and_then(|old| old.get(&layout.attribute("deliveryRank")))
                    .and_then(|rank| rank.as_n().ok())
                    .and_then(|rank| rank.parse::<u8>().ok())
                    .unwrap_or(0);
                Ok(Recorded::Advanced(milestones(
                    old_rank,
                    update.status,
                    update.error_code,
                )))
            }
            Err(error) if is_condition_failure(&error) => Ok(why_refused(&error, &layout, &update.message_sid)),
            Err(error) => Err(store_error("UpdateItem", layout.table, error)),
        }
    }
}

/// Why a status was refused: the message absent or sent under another SID, or already
/// at that status or further. (An emulator that returns no old item reads as absent; only
/// the label differs, nothing is recorded either way.)
fn why_refused<R>(error: &SdkError<UpdateItemError, R>, layout: &Layout<'_>, sid: &str) -> Recorded {
    let old: Option<&Item> = match error.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(e)) => e.item.as_ref().filter(|item| !item.is_empty()),
        _ => None,
    };
    match old.map(|item| string(item, layout.sid_attribute)) {
        None => Recorded::NotOurs,
        Some(Some(stored)) if stored != sid => Recorded::NotOurs,
        Some(_) => Recorded::Stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_twilios_status_names() {
        assert_eq!("read".parse::<DeliveryStatus>(), Ok(DeliveryStatus::Read));
        assert_eq!("undelivered".parse::<DeliveryStatus>(), Ok(DeliveryStatus::Undelivered));
        assert!("received".parse::<DeliveryStatus>().is_err());
    }

    #[test]
    fn a_status_passes_what_lies_between_once() {
        use DeliveryStatus::*;
        assert_eq!(milestones(0, Queued, None), []);
        assert_eq!(milestones(2, Delivered, None), [Milestone::Delivered]);
        assert_eq!(
            milestones(0, Read, None),
            [Milestone::Delivered, Milestone::Read],
            "a read before its delivered"
        );
        assert_eq!(milestones(4, Read, None), [Milestone::Read]);
        assert_eq!(
            milestones(2, Undelivered, Some(63016)),
            [Milestone::Failed {
                error_code: Some(63016)
            }]
        );
        assert!(Read.rank() > Delivered.rank() && Delivered.rank() > Failed.rank() && Failed.rank() > Sent.rank());
    }
}
