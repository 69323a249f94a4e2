//! An order's life on the local stack, for `make demo`: the shop's app writes business
//! attributes only, each change goes through the table's real stream to derive-schedule,
//! and send-messages (or the daily review run) sends what is due as a hand-moved clock
//! passes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::AttributeValue;
use backoffice::jobs::clean_expired_carts::dynamo::DynamoCarts;
use backoffice::jobs::derive_schedule::dynamo::DynamoSchedule;
use backoffice::jobs::derive_schedule::{DeriveConfig, DeriveDeps, process};
use backoffice::jobs::request_reviews::dynamo::DynamoOrders;
use backoffice::jobs::request_reviews::{self, ReviewDeps, ReviewJobConfig};
use backoffice::jobs::send_messages::{self, SendMessagesConfig, SendMessagesDeps};
use backoffice::messages::consent::DynamoConsents;
use backoffice::messages::outbox::DynamoOutbox;
use backoffice::messages::sender::KindMessenger;
use backoffice::report::counters::DailyCounters;
use backoffice::report::events::DynamoTally;
use backoffice::runtime::clock::Clock;
use backoffice::runtime::job::Deadline;
use backoffice::twilio::{TwilioClient, TwilioConfig};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

use crate::replies::play_replies_at;
use crate::stack::Stack;
use crate::streams::StreamTap;
use crate::twilio_standin::TwilioStandIn;

type Failure = Box<dyn std::error::Error>;

/// The demo's clock: real time at the start, then moved by hand.
struct DemoClock(Mutex<DateTime<Utc>>);

impl Clock for DemoClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.lock().map(|now| *now).unwrap_or_else(|_| Utc::now())
    }
}

impl DemoClock {
    fn advance(&self, by: TimeDelta) {
        if let Ok(mut now) = self.0.lock() {
            *now += by;
        }
    }
}

/// The customer of the walk-through.
pub const LIFE_CUSTOMER: &str = "+33620000042";
pub const LIFE_ORDER: &str = "order-life";

/// Walks one order from creation to its review request, printing each step and the
/// messages the stand-in received. `env` is the functions' environment on this stack.
pub async fn order_life(stack: &Stack, twilio: &TwilioStandIn, env: &HashMap<String, String>) -> Result<(), Failure> {
    let started = Utc::now();
    let clock = Arc::new(DemoClock(Mutex::new(started)));
    let outbox_config = SendMessagesConfig::from_env(env)?;
    let outbox = DynamoOutbox::new(
        stack.client.clone(),
        (&outbox_config.tables).into(),
        outbox_config.kinds.clone(),
        clock.clone(),
    );
    let orders = DynamoOrders::new(stack.client.clone(), &stack.tables.orders, &stack.tables.reviews);
    let counters = DailyCounters::from_env(stack.client.clone(), env)?;
    let consumer = DeriveDeps {
        store: DynamoSchedule {
            carts: DynamoCarts::new(stack.client.clone(), stack.tables.carts.clone()),
            orders: orders.clone(),
            outbox: outbox.clone(),
            tally: counters.clone().map(|counters| DynamoTally {
                counters,
                consents: DynamoConsents::new(stack.client.clone(), &stack.tables.consent),
                outbox: outbox.clone(),
            }),
        },
        config: DeriveConfig::from_env(env)?,
    };
    let dispatcher = SendMessagesDeps {
        outbox,
        messenger: KindMessenger {
            twilio: TwilioClient::new(TwilioConfig::from_env(env)?)?,
            kinds: outbox_config.kinds.clone(),
        },
        clock: clock.clone(),
        config: outbox_config,
    };
    let reviews = ReviewDeps {
        store: orders,
        messenger: TwilioClient::new(TwilioConfig::from_env(env)?)?,
        clock: clock.clone(),
        config: ReviewJobConfig::from_env(env)?,
    };
    let mut tap = StreamTap::default();
    let tables = [stack.tables.carts.as_str(), stack.tables.orders.as_str()];
    let mut seen = twilio.messages().len();
    let text = |at: DateTime<Utc>| AttributeValue::S(at.to_rfc3339_opts(SecondsFormat::Secs, true));
    let write = |changes: Vec<(&'static str, AttributeValue)>| {
        let mut update = stack
            .client
            .update_item()
            .table_name(&stack.tables.orders)
            .key("orderId", AttributeValue::S(LIFE_ORDER.into()));
        let mut sets = Vec::new();
        for (i, (name, value)) in changes.into_iter().enumerate() {
            sets.push(format!("#a{i} = :v{i}"));
            update = update
                .expression_attribute_names(format!("#a{i}"), name)
                .expression_attribute_values(format!(":v{i}"), value);
        }
        update.update_expression(format!("SET {}", sets.join(", "))).send()
    };

    println!("\nan order's life: the shop's app writes business attributes only; its stream feeds");
    println!("derive-schedule, and send-messages runs as the clock is moved by hand:");
    let steps: [(&str, TimeDelta); 7] = [
        ("created, unpaid", TimeDelta::zero()),
        ("still unpaid", TimeDelta::hours(24)),
        ("paid, ready for pickup", TimeDelta::minutes(30)),
        ("not collected yet", TimeDelta::hours(48)),
        ("collected", TimeDelta::hours(3)),
        ("the daily review run", TimeDelta::days(8)),
        ("no review after a week", TimeDelta::days(7)),
    ];
    for (label, wait) in steps {
        clock.advance(wait);
        let now = clock.now();
        match label {
            "created, unpaid" => {
                write(vec![
                    ("customerPhone", AttributeValue::S(LIFE_CUSTOMER.into())),
                    ("customerName", AttributeValue::S("Ana Lima".into())),
                    ("status", AttributeValue::S("pending".into())),
                    ("paymentStatus", AttributeValue::S("pending".into())),
                    ("createdAt", text(now)),
                ])
                .await?;
            }
            "paid, ready for pickup" => {
                write(vec![
                    ("paymentStatus", AttributeValue::S("paid".into())),
                    ("status", AttributeValue::S("ready_pickup".into())),
                    ("readyAt", text(now)),
                ])
                .await?;
            }
            "collected" => {
                write(vec![
                    ("status", AttributeValue::S("completed".into())),
                    ("completedAt", text(now)),
                ])
                .await?;
            }
            _ => {}
        }
        let (derived, _) = process(&consumer, &tap.fresh(stack, &tables).await?).await;
        // Each run is a minute after the change, as the every-minute schedule would be.
        clock.advance(TimeDelta::minutes(1));
        let kinds: Vec<String> = if label == "the daily review run" {
            let run = request_reviews::run(&reviews, &serde_json::json!({}), Deadline::unbounded(), label).await?;
            (run.sent > 0)
                .then(|| "review_request".to_owned())
                .into_iter()
                .collect()
        } else {
            let run = send_messages::run(&dispatcher, &serde_json::json!({}), Deadline::unbounded(), label).await?;
            run.report
                .by_kind
                .iter()
                .filter(|(_, counts)| counts.sent > 0)
                .map(|(kind, _)| kind.to_string())
                .collect()
        };
        // The review request's sending is itself a change on the stream.
        process(&consumer, &tap.fresh(stack, &tables).await?).await;
        let elapsed = clock.now() - started;
        let when = if elapsed.num_hours() >= 48 {
            format!("day {}", elapsed.num_days())
        } else {
            format!("hour {}", elapsed.num_hours())
        };
        let bodies: Vec<String> = twilio.messages()[seen..]
            .iter()
            .map(|message| match (&message.content_sid, &message.body) {
                (Some(sid), _) => format!(
                    "template {sid} with {}",
                    message.content_variables.as_deref().unwrap_or("{}")
                ),
                (None, body) => format!("{:?}", body.as_deref().unwrap_or_default()),
            })
            .collect();
        seen += bodies.len();
        println!(
            "  {when:>7}  {label:<24} scheduled {}, sent {}",
            derived.messages,
            if kinds.is_empty() {
                "nothing".to_owned()
            } else {
                kinds.join(", ")
            }
        );
        for body in bodies {
            println!("             -> {body}");
        }
    }
    let again = send_messages::run(&dispatcher, &serde_json::json!({}), Deadline::unbounded(), "again").await?;
    println!("  another run sends {} more message(s)", again.sent);
    println!("the customer answers the review request:");
    play_replies_at(stack, env, &[(LIFE_CUSTOMER, "4 très bien, merci")], clock).await?;
    Ok(())
}
