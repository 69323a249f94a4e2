//! The consent table: one item per customer phone, the one module that maps it.
//!
//! | attribute | |
//! |---|---|
//! | `phone` | key: E.164 |
//! | `optOut` | `all` or `marketing` while the customer is opted out; removed by an opt-in |
//! | `optOutAllAt`, `optOutMarketingAt` | RFC 3339: the last opt-out of every message, and of marketing (an opt-out of everything is one of marketing too); kept after an opt-in |
//! | `changedAt`, `source`, `messageSid` | the last change: when, how (`keyword`, `button`, `twilio`), by which reply |
//! | `lastSentAt` | N, epoch seconds: the last message claimed for this customer ([`super::caps`]) |
//! | `marketing1`..`marketingN` | N, epoch seconds: the last `MARKETING_PER_WEEK` marketing messages, newest first (0: none) |
//! | `firstOrderId` | the customer's first order, for the daily report's new and returning customers |
//!
//! A message goes out only if its customer is not opted out of its category now, and did
//! not opt out after the change that made the message: a customer who opts out and back
//! in does not get the old order's reminders (a new order starts fresh).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Update};
use chrono::{DateTime, Utc};

use super::caps::{Caps, WEEK};
use crate::domain::consent::{ConsentChange, ConsentSource, OptOut};
use crate::domain::phone::PhoneNumber;
use crate::store::StoreError;
use crate::store::dynamo::{Item, claim_token, n, number, rfc3339, s, send_claim, store_error, string, written};

/// The most marketing sends a customer item remembers (`MARKETING_PER_WEEK` at most).
const MAX_SLOTS: u32 = 20;

#[derive(Debug, Clone)]
pub struct DynamoConsents {
    client: Client,
    table: String,
}

/// A customer's consent as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Consent {
    pub opt_out: Option<OptOut>,
    pub opt_out_all_at: Option<String>,
    pub opt_out_marketing_at: Option<String>,
    /// The last message claimed for the customer.
    pub last_sent_at: Option<DateTime<Utc>>,
    /// The last marketing messages claimed for them, newest first.
    pub marketing_sent: Vec<DateTime<Utc>>,
    /// An attribute a claim's condition reads holds a value of another type or an unknown
    /// one (an item edited by hand): the condition can never hold, so no message goes to
    /// the customer until a person fixes the item.
    pub unreadable: bool,
}

/// Whether an attribute the claims' conditions compare holds what they compare it with.
fn unreadable(item: &Item) -> bool {
    // Seconds past the year 9999 are no time a claim wrote: the caps' arithmetic on them
    // would leave the calendar.
    let not_a_number = |name: &str| {
        item.get(name).is_some() && number::<i64>(item, name).is_none_or(|seconds| seconds > LAST_SECOND_OF_9999)
    };
    let not_a_string = |name: &str| item.get(name).is_some() && string(item, name).is_none();
    let opt_out = item
        .get("optOut")
        .is_some_and(|v| !v.as_s().is_ok_and(|value| value.parse::<OptOut>().is_ok()));
    opt_out
        || not_a_string("optOutAllAt")
        || not_a_string("optOutMarketingAt")
        || not_a_number("lastSentAt")
        || (1..=MAX_SLOTS).any(|slot| not_a_number(&format!("marketing{slot}")))
}

/// Adds to `sets` the writes that record a marketing message at `:now` in `slots` slots:
/// each slot moves one down, `marketing1` takes `:now`. `true` when they read `:zero`,
/// which the caller must then define (DynamoDB refuses a value no expression uses).
fn shift_marketing_slots(sets: &mut Vec<String>, slots: u32) -> bool {
    for slot in (2..=slots).rev() {
        sets.push(format!("marketing{slot} = if_not_exists(marketing{}, :zero)", slot - 1));
    }
    sets.push("marketing1 = :now".to_owned());
    slots > 1
}

/// The most rating messages remembered per customer ([`DynamoConsents::remember_rating`]):
/// one per review, and more than any customer writes.
pub const MAX_RATING_SIDS: i64 = 2000;

/// 9999-12-31T23:59:59Z.
const LAST_SECOND_OF_9999: i64 = 253_402_300_799;

fn epoch_at(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    number::<i64>(item, name)
        .filter(|seconds| *seconds > 0)
        .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
}

impl Consent {
    pub(crate) fn from_item(item: &Item) -> Self {
        Self {
            opt_out: string(item, "optOut").and_then(|v| v.parse().ok()),
            opt_out_all_at: string(item, "optOutAllAt"),
            opt_out_marketing_at: string(item, "optOutMarketingAt"),
            last_sent_at: epoch_at(item, "lastSentAt"),
            marketing_sent: (1..=MAX_SLOTS)
                .map_while(|slot| epoch_at(item, &format!("marketing{slot}")))
                .collect(),
            unreadable: unreadable(item),
        }
    }

    /// Why a message of this category, made by a change at `since`, may not go: `None`
    /// when it may.
    pub fn refuses(&self, marketing: bool, since: DateTime<Utc>) -> Option<&'static str> {
        if self.unreadable {
            return Some("unreadable_consent");
        }
        let since = rfc3339(since);
        let (now_blocked, last_opt_out) = if marketing {
            (self.opt_out.is_some(), &self.opt_out_marketing_at)
        } else {
            (self.opt_out == Some(OptOut::All), &self.opt_out_all_at)
        };
        if now_blocked {
            Some("opted_out")
        } else if last_opt_out.as_ref().is_some_and(|at| *at >= since) {
            Some("opted_out_since")
        } else {
            None
        }
    }
}

impl DynamoConsents {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Records a change, unless a later one is already recorded (replies can arrive out of
    /// order). `true`: recorded.
    pub async fn record(
        &self,
        phone: &PhoneNumber,
        change: ConsentChange,
        source: ConsentSource,
        at: DateTime<Utc>,
        message_sid: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut sets = vec!["changedAt = :at", "#source = :source"];
        let mut remove = "";
        let mut values = vec![(":at", s(rfc3339(at))), (":source", s(source.as_str()))];
        match change {
            ConsentChange::OptOut(OptOut::All) => {
                sets.extend(["optOut = :all", "optOutAllAt = :at", "optOutMarketingAt = :at"]);
                values.push((":all", s(OptOut::All.as_str())));
            }
            ConsentChange::OptOut(OptOut::Marketing) => {
                // An opt-out of everything stays one: "stop promo" after "stop" narrows nothing.
                sets.extend(["optOut = if_not_exists(optOut, :marketing)", "optOutMarketingAt = :at"]);
                values.push((":marketing", s(OptOut::Marketing.as_str())));
            }
            ConsentChange::OptIn => remove = " REMOVE optOut",
        }
        // The latest change wins; a message that changed consent once never does again:
        // Twilio signs no time, so a delivery retried late, or a signed request replayed,
        // would otherwise undo a later choice (a START replayed after a STOP).
        let mut condition = "(attribute_not_exists(changedAt) OR changedAt <= :at)".to_owned();
        let mut add = String::new();
        // A token of this write alone: the SDK's retry of a write whose answer was lost is
        // refused by its own first attempt, and must still read as recorded.
        let token = claim_token();
        if let Some(sid) = message_sid {
            sets.extend(["messageSid = :sid", "consentWrite = :token"]);
            values.push((":sid", s(sid)));
            values.push((":token", s(&token)));
            values.push((":sids", AttributeValue::Ss(vec![sid.to_owned()])));
            condition.push_str(" AND NOT contains(consentMessageSids, :sid)");
            add = " ADD consentMessageSids :sids".to_owned();
        }
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("phone", s(phone.as_str()))
            .update_expression(format!("SET {}{add}{remove}", sets.join(", ")))
            .condition_expression(condition)
            .expression_attribute_names("#source", "source");
        for (name, value) in values {
            update = update.expression_attribute_values(name, value);
        }
        match message_sid {
            Some(_) => send_claim(update, &self.table, "consentWrite", &token).await,
            None => written(update.send().await, "UpdateItem", &self.table),
        }
    }

    /// Whether a rating message `sid` from this customer was read before (see
    /// [`DynamoConsents::remember_rating`]).
    pub async fn knows_rating(&self, phone: &PhoneNumber, sid: &str) -> Result<bool, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("phone", s(phone.as_str()))
            .projection_expression("ratingMessageSids")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", &self.table, e))?;
        Ok(output
            .item
            .as_ref()
            .and_then(|item| item.get("ratingMessageSids"))
            .and_then(|sids| sids.as_ss().ok())
            .is_some_and(|sids| sids.iter().any(|known| known == sid)))
    }

    /// Remembers that a rating message `sid` from this customer was read, whatever came of
    /// it: Twilio signs no time, so the same signed request replayed later (once a newer
    /// order awaits a review) would otherwise rate that order. Adding to the set twice is
    /// harmless (a retry after a lost answer). At most [`MAX_RATING_SIDS`] are kept, so a
    /// customer's item never outgrows DynamoDB's limit; past that, `false` and nothing kept.
    pub async fn remember_rating(&self, phone: &PhoneNumber, sid: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("phone", s(phone.as_str()))
            .update_expression("ADD ratingMessageSids :sids")
            .condition_expression(
                "attribute_not_exists(ratingMessageSids) OR size(ratingMessageSids) < :max OR contains(ratingMessageSids, :sid)",
            )
            .expression_attribute_values(":sids", AttributeValue::Ss(vec![sid.to_owned()]))
            .expression_attribute_values(":sid", s(sid))
            .expression_attribute_values(":max", n(MAX_RATING_SIDS))
            .send()
            .await;
        written(result, "UpdateItem", &self.table)
    }

    /// The customer's consent (default: never opted out).
    pub async fn get(&self, phone: &PhoneNumber) -> Result<Consent, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("phone", s(phone.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", &self.table, e))?;
        Ok(output.item.as_ref().map(Consent::from_item).unwrap_or_default())
    }

    /// The claim's write on the customer: only if they still accept a message of this
    /// category made at `since` (the rule of [`Consent::refuses`]) and, for marketing, if the
    /// caps allow one at `now` ([`Caps::next_allowed`]); it records the message for the caps.
    pub fn claim_update(
        &self,
        phone: &PhoneNumber,
        marketing: bool,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        caps: &Caps,
    ) -> Result<Update, StoreError> {
        let mut sets = vec!["lastSentAt = :now".to_owned()];
        let mut values = vec![
            (":now".to_owned(), n(now.timestamp())),
            (":since".to_owned(), s(rfc3339(since))),
        ];
        let condition = if marketing {
            let slots = caps.per_week.clamp(1, MAX_SLOTS);
            if shift_marketing_slots(&mut sets, slots) {
                values.push((":zero".to_owned(), n(0)));
            }
            values.push((":gapAgo".to_owned(), n((now - caps.gap).timestamp())));
            values.push((":weekAgo".to_owned(), n((now - WEEK).timestamp())));
            format!(
                "attribute_not_exists(optOut) AND (attribute_not_exists(optOutMarketingAt) OR optOutMarketingAt < :since) \
                 AND (attribute_not_exists(lastSentAt) OR lastSentAt <= :gapAgo) \
                 AND (attribute_not_exists(marketing{slots}) OR marketing{slots} <= :weekAgo)"
            )
        } else {
            // Only an opt-out of marketing lets a utility message through: `all`, and any
            // value no code wrote (an item edited by hand), hold it.
            values.push((":marketing".to_owned(), s(OptOut::Marketing.as_str())));
            "(attribute_not_exists(optOut) OR optOut = :marketing) \
             AND (attribute_not_exists(optOutAllAt) OR optOutAllAt < :since)"
                .to_owned()
        };
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("phone", s(phone.as_str()))
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(condition);
        for (name, value) in values {
            update = update.expression_attribute_values(name, value);
        }
        update.build().map_err(|e| StoreError {
            operation: "TransactWriteItems",
            table: self.table.clone(),
            message: format!("the customer's claim write cannot be built: {e}"),
            retryable: false,
        })
    }

    /// Gives back what a marketing claim at `claimed_at` took from the customer's caps, for
    /// a message that did not go out (released, requeued), so that it is not held back by
    /// its own claim; only while that claim is still the last one recorded. The slot its
    /// claim shifted out was more than a week old (the claim's condition), so the slots
    /// come back as they were; `lastSentAt` comes back to a time that passes the gap as the
    /// one before the claim did. `false`: another message was claimed since, nothing to do.
    pub async fn give_back(
        &self,
        phone: &PhoneNumber,
        claimed_at: DateTime<Utc>,
        caps: &Caps,
    ) -> Result<bool, StoreError> {
        let slots = caps.per_week.clamp(1, MAX_SLOTS);
        let mut sets: Vec<String> = (1..slots)
            .map(|slot| format!("marketing{slot} = if_not_exists(marketing{}, :zero)", slot + 1))
            .collect();
        sets.push(format!("marketing{slots} = :zero"));
        sets.push(if slots > 1 {
            "lastSentAt = if_not_exists(marketing2, :zero)".to_owned()
        } else {
            "lastSentAt = :zero".to_owned()
        });
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("phone", s(phone.as_str()))
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression("lastSentAt = :at AND marketing1 = :at")
            .expression_attribute_values(":at", n(claimed_at.timestamp()))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        written(result, "UpdateItem", &self.table)
    }

    /// Whether `order_id` is the customer's first order: the first order ever written for
    /// the phone is kept (`if_not_exists`), so asking again about the same order gives the
    /// same answer.
    pub async fn is_first_order(&self, phone: &PhoneNumber, order_id: &str) -> Result<bool, StoreError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("phone", s(phone.as_str()))
            .update_expression("SET firstOrderId = if_not_exists(firstOrderId, :order)")
            .expression_attribute_values(":order", s(order_id))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", &self.table, e))?;
        let first = output.attributes.as_ref().and_then(|item| string(item, "firstOrderId"));
        Ok(first.as_deref() == Some(order_id))
    }

    /// Records a message sent outside a claim transaction (the review request), for the caps.
    pub async fn record_sent(
        &self,
        phone: &PhoneNumber,
        marketing: bool,
        now: DateTime<Utc>,
        caps: &Caps,
    ) -> Result<(), StoreError> {
        let mut sets = vec!["lastSentAt = :now".to_owned()];
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("phone", s(phone.as_str()));
        if marketing {
            let slots = caps.per_week.clamp(1, MAX_SLOTS);
            if shift_marketing_slots(&mut sets, slots) {
                update = update.expression_attribute_values(":zero", n(0));
            }
        }
        update
            .update_expression(format!("SET {}", sets.join(", ")))
            .expression_attribute_values(":now", n(now.timestamp()))
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", &self.table, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_time_past_the_calendar_makes_the_consent_unreadable_not_a_panic() {
        let n = |v: &str| AttributeValue::N(v.into());
        let written = Item::from([
            ("lastSentAt".to_owned(), n("1764000000")),
            ("marketing2".to_owned(), n("0")),
        ]);
        assert!(!Consent::from_item(&written).unreadable);
        for name in ["lastSentAt", "marketing1"] {
            let edited = Item::from([(name.to_owned(), n("8210266876799"))]);
            let consent = Consent::from_item(&edited);
            assert!(consent.unreadable, "{name}");
            assert_eq!(
                consent.refuses(false, at("2026-12-01T10:00:00Z")),
                Some("unreadable_consent")
            );
        }
    }

    #[test]
    fn consent_refuses_by_category_and_by_the_time_of_the_last_opt_out() {
        let never = Consent::default();
        assert_eq!(never.refuses(true, at("2026-12-01T10:00:00Z")), None);
        let marketing_only = Consent {
            opt_out: Some(OptOut::Marketing),
            opt_out_all_at: None,
            opt_out_marketing_at: Some("2026-12-01T09:00:00Z".into()),
            ..Consent::default()
        };
        assert_eq!(
            marketing_only.refuses(true, at("2026-12-01T10:00:00Z")),
            Some("opted_out")
        );
        assert_eq!(marketing_only.refuses(false, at("2026-12-01T08:00:00Z")), None);
        let back_in = Consent {
            opt_out: None,
            opt_out_all_at: Some("2026-12-01T09:00:00Z".into()),
            opt_out_marketing_at: Some("2026-12-01T09:00:00Z".into()),
            ..Consent::default()
        };
        assert_eq!(
            back_in.refuses(false, at("2026-12-01T08:00:00Z")),
            Some("opted_out_since"),
            "an old order's message"
        );
        assert_eq!(
            back_in.refuses(true, at("2026-12-01T10:00:00Z")),
            None,
            "a new order starts fresh"
        );
    }
}
