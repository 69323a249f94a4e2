//! The Stats table: one item per shop day of atomic counters (`ADD`), updated as events
//! happen, and one short-lived marker per counted event so that a replayed event is not
//! counted twice. The daily report reads one item, whatever the size of the other tables.
//! The one module that maps these items.
//!
//! | `statId` | attributes |
//! |---|---|
//! | `day#2026-12-02` | counters (`sent.<kind>`, `delivered.<kind>`, `orders`, `revenueCents`, ...), `negativeReviews` (a string set of `orderId:rating`), `report.<channel>` (when the report went out), `reportClaimedAt`, `expiresAt` |
//! | `event#<what>#<id>` | `expiresAt` only: the event was counted |

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeDelta, Utc};
use jiff::tz::TimeZone;

use crate::messages::kind::Kind;
use crate::runtime::config::{ConfigError, EnvSource, shop_timezone};
use crate::store::StoreError;
use crate::store::dynamo::{Item, claim_token, n, rfc3339, s, send_claim, store_error, was_throttled, written};

/// How long a day's counters are kept.
const DAY_KEPT_FOR: TimeDelta = TimeDelta::days(400);
/// How long a stream event's marker is kept: longer than a stream keeps its records.
pub const EVENT_MARKER_KEPT_FOR: TimeDelta = TimeDelta::days(3);
/// How long a customer message's marker is kept: longer than any reply window
/// (`REPLY_WINDOW_DAYS`, at most 90), in which a replay of it can still find its review.
pub const MESSAGE_MARKER_KEPT_FOR: TimeDelta = TimeDelta::days(91);
/// Attempts of [`DailyCounters::add`] when DynamoDB throttles it.
const ADD_ATTEMPTS: u32 = 4;

/// A report claim older than this belongs to a run that died: it may be taken again.
const REPORT_CLAIM_STALE_AFTER: TimeDelta = TimeDelta::minutes(15);

/// One counter of a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counter {
    /// Accepted by Twilio.
    Sent(Kind),
    /// Refused by Twilio at send time.
    Failed(Kind),
    Delivered(Kind),
    Read(Kind),
    /// Failed or undelivered after Twilio accepted it (status callback).
    Undelivered(Kind),
    /// Messages received from customers.
    Received,
    Reviews,
    RatingSum,
    NegativeReviews,
    /// Carts removed (expired) without becoming an order.
    CartsAbandoned,
    /// Carts that became an order after their abandoned-cart reminder was sent.
    CartsRecovered,
    Orders,
    /// Minor units of the shop's currency.
    RevenueCents,
    NewCustomers,
    ReturningCustomers,
}

impl Counter {
    /// The attribute that holds it.
    pub fn attribute(self) -> String {
        match self {
            Self::Sent(kind) => format!("sent.{kind}"),
            Self::Failed(kind) => format!("failed.{kind}"),
            Self::Delivered(kind) => format!("delivered.{kind}"),
            Self::Read(kind) => format!("read.{kind}"),
            Self::Undelivered(kind) => format!("undelivered.{kind}"),
            Self::Received => "received".into(),
            Self::Reviews => "reviews".into(),
            Self::RatingSum => "ratingSum".into(),
            Self::NegativeReviews => "negativeReviewCount".into(),
            Self::CartsAbandoned => "cartsAbandoned".into(),
            Self::CartsRecovered => "cartsRecovered".into(),
            Self::Orders => "orders".into(),
            Self::RevenueCents => "revenueCents".into(),
            Self::NewCustomers => "newCustomers".into(),
            Self::ReturningCustomers => "returningCustomers".into(),
        }
    }
}

/// A day's counters as stored: every counter by attribute name, the negative reviews, and
/// the channels the report went out on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredDay {
    pub day: String,
    pub counters: BTreeMap<String, u64>,
    /// `orderId:rating`.
    pub negative_reviews: BTreeSet<String>,
    /// Channel name to when the report went out on it.
    pub reported: BTreeMap<String, String>,
}

impl StoredDay {
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters.get(&counter.attribute()).copied().unwrap_or_default()
    }
}

fn day_key(day: &str) -> String {
    format!("day#{day}")
}

#[derive(Debug, Clone)]
pub struct DailyCounters {
    client: Client,
    /// The same client without the SDK's retries, for the `ADD`s ([`DailyCounters::add`]).
    single_attempt: Client,
    table: String,
    timezone: TimeZone,
}

impl DailyCounters {
    pub fn new(client: Client, table: impl Into<String>, timezone: TimeZone) -> Self {
        let single_attempt = Client::from_conf(
            client
                .config()
                .to_builder()
                .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(1))
                .build(),
        );
        Self {
            client,
            single_attempt,
            table: table.into(),
            timezone,
        }
    }

    /// `STATS_TABLE` (unset: `None`, nothing counted) and `SHOP_TIMEZONE`, the calendar
    /// the days follow.
    pub fn from_env(client: Client, env: &impl EnvSource) -> Result<Option<Self>, ConfigError> {
        let Some(table) = env.var("STATS_TABLE").filter(|table| !table.trim().is_empty()) else {
            return Ok(None);
        };
        Ok(Some(Self::new(client, table.trim(), shop_timezone(env)?)))
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The shop's calendar day of `at`, `YYYY-MM-DD`.
    pub fn day_of(&self, at: DateTime<Utc>) -> String {
        shop_day(at, &self.timezone)
    }

    /// Adds `increments` to the counters of `at`'s shop day, and `negative_review`
    /// (`orderId:rating`) to its negative reviews: one `UpdateItem`, atomic counters.
    ///
    /// Sent once: an `ADD` is not idempotent, and the SDK's retry of one whose answer was
    /// lost (a timeout, a 5xx after the write) would count twice. Only throttling, which
    /// DynamoDB answers before writing anything, is tried again. A failure that may have
    /// been written comes back as an error (logged by the caller): a count may then be
    /// missing, never doubled. A transaction's token would tell the retry apart, but every
    /// run and callback updates this one item, and transactions on it would cancel each
    /// other.
    pub async fn add(
        &self,
        at: DateTime<Utc>,
        increments: &[(Counter, u64)],
        negative_review: Option<&str>,
    ) -> Result<(), StoreError> {
        let increments: Vec<_> = increments.iter().filter(|(_, by)| *by > 0).collect();
        if increments.is_empty() && negative_review.is_none() {
            return Ok(());
        }
        let mut adds = Vec::new();
        let mut update = self
            .single_attempt
            .update_item()
            .table_name(&self.table)
            .key("statId", s(day_key(&self.day_of(at))))
            .expression_attribute_values(":expires", n((at + DAY_KEPT_FOR).timestamp()));
        for (i, (counter, by)) in increments.iter().enumerate() {
            adds.push(format!("#c{i} :v{i}"));
            update = update
                .expression_attribute_names(format!("#c{i}"), counter.attribute())
                .expression_attribute_values(format!(":v{i}"), n(i64::try_from(*by).unwrap_or(i64::MAX)));
        }
        if let Some(entry) = negative_review {
            adds.push("negativeReviews :negative".into());
            update = update.expression_attribute_values(":negative", AttributeValue::Ss(vec![entry.to_owned()]));
        }
        let update = update.update_expression(format!(
            "SET expiresAt = if_not_exists(expiresAt, :expires) ADD {}",
            adds.join(", ")
        ));
        let mut attempt = 1;
        loop {
            match update.clone().send().await {
                Ok(_) => return Ok(()),
                Err(error) if attempt < ADD_ATTEMPTS && was_throttled(&error) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                    attempt += 1;
                }
                Err(error) => return Err(store_error("UpdateItem", &self.table, error)),
            }
        }
    }

    /// Marks `event` (e.g. `order#ord-1`) as counted, for `kept_for`. `true` the first time
    /// only: a replayed stream record or a retried webhook finds the marker and counts
    /// nothing.
    pub async fn first_time(&self, event: &str, at: DateTime<Utc>, kept_for: TimeDelta) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("statId", s(format!("event#{event}")))
            .item("expiresAt", n((at + kept_for).timestamp()))
            .condition_expression("attribute_not_exists(statId)")
            .send()
            .await;
        written(result, "PutItem", &self.table)
    }

    /// One day's counters (a single `GetItem`); an empty day when nothing was counted.
    pub async fn day(&self, day: &str) -> Result<StoredDay, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("statId", s(day_key(day)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", &self.table, e))?
            .item
            .unwrap_or_default();
        Ok(read_day(day, &item))
    }

    /// Takes the right to send `day`'s report on `channel`: only if it has not gone out
    /// on it and no other run holds a fresh claim. `false`: nothing to do.
    pub async fn claim_report(&self, day: &str, channel: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        // The claim's time, then a token of this claim alone: the time keeps claims in
        // order for the staleness test, the token tells this claim from any other.
        let claim = format!("{}#{}", rfc3339(at), claim_token());
        let claim_attribute = format!("reportClaim.{channel}");
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("statId", s(day_key(day)))
            .update_expression("SET #claim = :at, expiresAt = if_not_exists(expiresAt, :expires)")
            .condition_expression("attribute_not_exists(#sent) AND (attribute_not_exists(#claim) OR #claim < :stale)")
            .expression_attribute_names("#sent", format!("report.{channel}"))
            .expression_attribute_names("#claim", &claim_attribute)
            .expression_attribute_values(":at", s(&claim))
            .expression_attribute_values(":stale", s(rfc3339(at - REPORT_CLAIM_STALE_AFTER)))
            .expression_attribute_values(":expires", n((at + DAY_KEPT_FOR).timestamp()));
        send_claim(update, &self.table, &claim_attribute, &claim).await
    }

    /// Records how the claimed report ended: sent (kept, so it never goes out twice), or
    /// not (the claim is given back, for a retry).
    pub async fn settle_report(
        &self,
        day: &str,
        channel: &str,
        sent_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("statId", s(day_key(day)))
            .expression_attribute_names("#claim", format!("reportClaim.{channel}"));
        let update = match sent_at {
            Some(at) => update
                .update_expression("SET #sent = :at REMOVE #claim")
                .expression_attribute_names("#sent", format!("report.{channel}"))
                .expression_attribute_values(":at", s(rfc3339(at))),
            None => update.update_expression("REMOVE #claim"),
        };
        update
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", &self.table, e))?;
        Ok(())
    }
}

/// The shop's calendar day of `at` in `timezone`, `YYYY-MM-DD`.
pub fn shop_day(at: DateTime<Utc>, timezone: &TimeZone) -> String {
    jiff::Timestamp::from_second(at.timestamp())
        .map(|ts| ts.to_zoned_datetime(timezone.clone()).date().to_string())
        .unwrap_or_else(|_| at.format("%Y-%m-%d").to_string())
}

/// Reads a day item; what is not a counter (a stray attribute) is ignored.
fn read_day(day: &str, item: &Item) -> StoredDay {
    let mut stored = StoredDay {
        day: day.to_owned(),
        ..StoredDay::default()
    };
    for (name, value) in item {
        match value {
            AttributeValue::N(number) if name != "expiresAt" => {
                if let Ok(count) = number.parse::<u64>() {
                    stored.counters.insert(name.clone(), count);
                }
            }
            AttributeValue::Ss(entries) if name == "negativeReviews" => {
                stored.negative_reviews = entries.iter().cloned().collect();
            }
            AttributeValue::S(at) if name.starts_with("report.") => {
                stored.reported.insert(name["report.".len()..].to_owned(), at.clone());
            }
            _ => {}
        }
    }
    stored
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_smithy_mocks::{mock, mock_client};

    use super::*;

    const THROTTLED_BODY: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#;

    /// Counters on a client that retries as the functions' clients do.
    fn counters_answering(rule: &aws_smithy_mocks::Rule) -> DailyCounters {
        let client = mock_client!(
            aws_sdk_dynamodb,
            aws_smithy_mocks::RuleMode::Sequential,
            [rule],
            |conf| {
                conf.retry_config(
                    aws_sdk_dynamodb::config::retry::RetryConfig::standard()
                        .with_max_attempts(5)
                        .with_initial_backoff(std::time::Duration::from_millis(1)),
                )
            }
        );
        DailyCounters::new(client, "stats", TimeZone::get("Europe/Paris").unwrap())
    }

    #[tokio::test]
    async fn an_add_is_sent_again_only_when_dynamodb_throttled_it() {
        let at: DateTime<Utc> = "2026-12-02T10:00:00Z".parse().unwrap();
        let increments = [(Counter::Received, 1)];
        let throttled_then_done = mock!(Client::update_item)
            .sequence()
            .http_status(400, Some(THROTTLED_BODY.into()))
            .times(2)
            .output(|| UpdateItemOutput::builder().build())
            .build();
        let counters = counters_answering(&throttled_then_done);
        counters.add(at, &increments, None).await.unwrap();
        assert_eq!(throttled_then_done.num_calls(), 3, "twice throttled, then written");

        // A 5xx may have been written: not sent again, the caller is told.
        let maybe_written = mock!(Client::update_item)
            .sequence()
            .http_status(500, None)
            .output(|| UpdateItemOutput::builder().build())
            .build();
        let counters = counters_answering(&maybe_written);
        assert!(counters.add(at, &increments, None).await.is_err());
        assert_eq!(maybe_written.num_calls(), 1, "never sent twice");
    }

    #[test]
    fn the_day_is_the_shops_calendar_day() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        // 23:30 UTC on 2 December is 00:30 on the 3rd in Paris.
        assert_eq!(shop_day("2026-12-02T23:30:00Z".parse().unwrap(), &paris), "2026-12-03");
        assert_eq!(shop_day("2026-12-02T22:59:59Z".parse().unwrap(), &paris), "2026-12-02");
        // Summer time: UTC+2.
        assert_eq!(shop_day("2026-07-01T22:00:00Z".parse().unwrap(), &paris), "2026-07-02");
    }

    #[test]
    fn a_day_item_reads_as_counters_negative_reviews_and_report_channels() {
        let item: Item = [
            ("statId", s("day#2026-12-02")),
            ("sent.order_confirmation", n(3)),
            ("orders", n(2)),
            ("expiresAt", n(1_900_000_000)),
            ("negativeReviews", AttributeValue::Ss(vec!["ord-1:2".into()])),
            ("report.sns", s("2026-12-03T07:00:00Z")),
            ("stray", s("ignored")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let day = read_day("2026-12-02", &item);
        assert_eq!(day.get(Counter::Sent(Kind::OrderConfirmation)), 3);
        assert_eq!(day.get(Counter::Orders), 2);
        assert_eq!(day.get(Counter::Reviews), 0);
        assert_eq!(day.counters.len(), 2, "expiresAt is not a counter");
        assert!(day.negative_reviews.contains("ord-1:2"));
        assert_eq!(
            day.reported.get("sns").map(String::as_str),
            Some("2026-12-03T07:00:00Z")
        );
    }
}
