//! Twilio's status callbacks: the delivery status of a message this back office sent,
//! posted to the same Function URL with the message's key in the query
//! (`?message=<kind>#<id>`, set by [`crate::twilio::TwilioClient::send_tracked`]). The
//! signature is checked before this runs, over the URL with that query, so a forged or
//! re-aimed callback never gets here.

use chrono::{DateTime, Utc};

use super::request::param;
use super::store::ReplyStore;
use crate::messages::delivery::{DeliveryStatus, Milestone, Recorded, StatusUpdate};
use crate::messages::engine::MessageId;
use crate::messages::outbox::parse_key;
use crate::report::counters::Counter;
use crate::store::StoreError;
use crate::store::dynamo::MAX_ID_BYTES;
use crate::twilio::{STATUS_REFERENCE_PARAM, STATUS_URL_END};

/// Why a signed status callback cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StatusRefusal {
    #[error("the message reference in the query is not a message key")]
    BadReference,
    #[error("missing MessageSid")]
    MissingSid,
    #[error("MessageStatus is not a status Twilio sends")]
    UnknownStatus,
    #[error("ErrorCode is not a number")]
    BadErrorCode,
    #[error("the URL and parameters are not split as Twilio signed them")]
    NotAsSigned,
}

impl StatusRefusal {
    pub fn label(self) -> &'static str {
        match self {
            Self::BadReference => "invalid message reference",
            Self::MissingSid => "missing MessageSid",
            Self::UnknownStatus => "unknown MessageStatus",
            Self::BadErrorCode => "invalid ErrorCode",
            Self::NotAsSigned => "URL end or AccountSid not as Twilio sends them",
        }
    }
}

/// A status callback: has `MessageStatus` and no `Body` (an incoming message has a body,
/// even an empty one, and its status is `SmsStatus=received`).
pub fn is_status_callback(params: &[(String, String)]) -> bool {
    param(params, "MessageStatus").is_some() && param(params, "Body").is_none()
}

/// The message a callback is about, from the query; `None` for a message sent without
/// one (an alert to the shop), which is not tracked.
pub fn reference(raw_query: &str) -> Option<Result<MessageId, StatusRefusal>> {
    let value = url::form_urlencoded::parse(raw_query.as_bytes())
        .find(|(name, _)| name == STATUS_REFERENCE_PARAM)
        .map(|(_, value)| value.into_owned())?;
    // An id no message of the back office can have: refused here rather than left to
    // DynamoDB, which answers an empty or oversized key with an error.
    let id = parse_key(&value).filter(|id| !id.subject_id.is_empty() && id.subject_id.len() <= MAX_ID_BYTES);
    Some(id.ok_or(StatusRefusal::BadReference))
}

/// Whether the URL and the parameters of a signed callback are the ones Twilio signed, not
/// the same signed text split anew. Twilio joins them with nothing between, so the query's
/// last characters (the message reference, in a URL made before [`STATUS_URL_END`]) could
/// be moved into a parameter of their own, or into the first one's name, keeping the
/// signature of a genuine callback while aiming it at another message whose key is a
/// prefix of its own. A URL ending on [`STATUS_URL_END`] cannot be split anew unnoticed; an
/// older one must be followed by Twilio's `AccountSid`, first in signed order.
pub fn split_as_signed(raw_query: &str, params: &[(String, String)]) -> bool {
    let ends_as_made = raw_query.ends_with(&format!("&{STATUS_URL_END}"));
    let account_first = params
        .iter()
        .min()
        .is_some_and(|(name, value)| name == "AccountSid" && crate::twilio::is_sid(value, "AC"));
    ends_as_made || account_first
}

/// Reads the callback's fields.
pub fn read_update(
    id: MessageId,
    params: &[(String, String)],
    at: DateTime<Utc>,
) -> Result<StatusUpdate, StatusRefusal> {
    let message_sid = param(params, "MessageSid")
        .map(str::trim)
        .filter(|sid| !sid.is_empty())
        .ok_or(StatusRefusal::MissingSid)?;
    let status = param(params, "MessageStatus")
        .and_then(|status| status.trim().parse::<DeliveryStatus>().ok())
        .ok_or(StatusRefusal::UnknownStatus)?;
    let error_code = match param(params, "ErrorCode")
        .map(str::trim)
        .filter(|code| !code.is_empty())
    {
        None => None,
        Some(code) => Some(code.parse::<u32>().map_err(|_| StatusRefusal::BadErrorCode)?),
    };
    Ok(StatusUpdate {
        id,
        message_sid: message_sid.to_owned(),
        status,
        error_code,
        at,
    })
}

/// Records the status and counts the milestones it passed in the day's counters. A
/// counter that cannot be updated is logged and lost: the status is recorded, and a
/// retried callback would be stale, so the figures may miss it but never count it twice.
pub async fn record<S: ReplyStore>(store: &S, update: &StatusUpdate) -> Result<Recorded, StoreError> {
    let recorded = store.record_delivery(update).await?;
    if let Recorded::Advanced(milestones) = &recorded {
        let kind = update.id.kind;
        let increments: Vec<(Counter, u64)> = milestones
            .iter()
            .map(|milestone| match milestone {
                Milestone::Delivered => (Counter::Delivered(kind), 1),
                Milestone::Read => (Counter::Read(kind), 1),
                Milestone::Failed { .. } => (Counter::Undelivered(kind), 1),
            })
            .collect();
        if let Err(error) = store.count(update.at, None, &increments, None).await {
            tracing::error!(message_id = %update.id, %error, "the day's counters were not updated");
        }
    }
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::kind::Kind;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn tells_a_status_callback_from_an_incoming_message() {
        assert!(is_status_callback(&params(&[
            ("MessageSid", "SM1"),
            ("MessageStatus", "read")
        ])));
        assert!(!is_status_callback(&params(&[
            ("MessageSid", "SM1"),
            ("SmsStatus", "received"),
            ("Body", "5")
        ])));
    }

    #[test]
    fn reads_the_reference_and_refuses_bad_fields_by_name() {
        let id = reference("v=1&message=payment_reminder%23A-1").unwrap().unwrap();
        assert_eq!(id.kind, Kind::PaymentReminder);
        assert_eq!(id.subject_id, "A-1");
        assert_eq!(reference("message=nonsense"), Some(Err(StatusRefusal::BadReference)));
        assert_eq!(
            reference("message=review_request%23&end=1"),
            Some(Err(StatusRefusal::BadReference))
        );
        let oversized = format!("message=review_request%23{}&end=1", "o".repeat(MAX_ID_BYTES + 1));
        assert_eq!(reference(&oversized), Some(Err(StatusRefusal::BadReference)));
        let longest = format!("message=review_request%23{}&end=1", "o".repeat(MAX_ID_BYTES));
        assert!(matches!(reference(&longest), Some(Ok(_))));
        assert_eq!(reference("v=1"), None);
        let at = "2026-12-03T09:00:00Z".parse().unwrap();
        let read = |pairs: &[(&str, &str)]| read_update(id.clone(), &params(pairs), at);
        assert_eq!(
            read(&[
                ("MessageSid", "SM1"),
                ("MessageStatus", "undelivered"),
                ("ErrorCode", "63016")
            ])
            .unwrap()
            .error_code,
            Some(63016)
        );
        assert_eq!(read(&[("MessageStatus", "read")]), Err(StatusRefusal::MissingSid));
        assert_eq!(
            read(&[("MessageSid", "SM1"), ("MessageStatus", "lost")]),
            Err(StatusRefusal::UnknownStatus)
        );
        assert_eq!(
            read(&[("MessageSid", "SM1"), ("MessageStatus", "failed"), ("ErrorCode", "x")]),
            Err(StatusRefusal::BadErrorCode)
        );
    }
}
