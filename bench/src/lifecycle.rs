//! Every kind of message on the local stack: the shop's app writes business attributes
//! only, the tables' streams feed derive-schedule, send-messages sends through a Twilio
//! stand-in that answers after 150 ms. Measures the consumer's DynamoDB requests per
//! stream record, the dispatcher's items read per delayed message sent while most of the
//! table is not due, and its send rate with the kinds mixed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use backoffice::jobs::clean_expired_carts::dynamo::DynamoCarts;
use backoffice::jobs::derive_schedule::dynamo::DynamoSchedule;
use backoffice::jobs::derive_schedule::{DeriveConfig, DeriveDeps, process};
use backoffice::jobs::request_reviews::dynamo::DynamoOrders;
use backoffice::jobs::send_messages::{self, SendMessagesConfig, SendMessagesDeps};
use backoffice::messages::outbox::DynamoOutbox;
use backoffice::messages::sender::KindMessenger;
use backoffice::runtime::clock::FixedClock;
use backoffice::runtime::job::Deadline;
use backoffice::twilio::{TwilioClient, TwilioConfig};
use bench::results::{Float, Lifecycle};
use bench::{Failure, RequestCounter, counted_client, create_table_with_stream, local_sdk_config};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use devstack::streams::StreamTap;
use devstack::twilio_standin::{LOCAL_ACCOUNT_SID, LOCAL_AUTH_TOKEN, LOCAL_WHATSAPP_FROM, TwilioStandIn};
use futures::StreamExt;
use serde_json::json;

const TWILIO_STANDIN_DELAY: Duration = Duration::from_millis(150);

fn s(text: impl Into<String>) -> AttributeValue {
    AttributeValue::S(text.into())
}

/// `orders` orders and `carts` carts created at `now`, a third of the orders ready for
/// pickup at once, and `later` orders created 12 hours later; then a run an hour after the
/// last creation (confirmations, ready for pickup, abandoned carts: the kinds mixed) and
/// one a day after the first (the first orders' payment reminders, while the later orders'
/// are not due).
pub async fn bench_lifecycle(
    endpoint: &str,
    orders: usize,
    later: usize,
    carts: usize,
    mps: u32,
    now: DateTime<Utc>,
) -> Result<Lifecycle, Failure> {
    let sdk_config = local_sdk_config(endpoint).await;
    let admin = aws_sdk_dynamodb::Client::new(&sdk_config);
    let names = [
        ("CartsTable", "bench-l-carts"),
        ("OrdersTable", "bench-l-orders"),
        ("ReviewsTable", "bench-l-reviews"),
        ("MessagesTable", "bench-l-messages"),
        ("ConsentTable", "bench-l-consent"),
    ];
    for (logical_id, name) in names {
        create_table_with_stream(&admin, logical_id, name).await?;
    }
    let [
        (_, carts_table),
        (_, orders_table),
        (_, reviews_table),
        (_, messages_table),
        (_, consent_table),
    ] = names;
    let twilio = TwilioStandIn::start_with_delay(TWILIO_STANDIN_DELAY).await?;
    let env: HashMap<String, String> = [
        ("CARTS_TABLE", carts_table.to_owned()),
        ("ORDERS_TABLE", orders_table.to_owned()),
        ("REVIEWS_TABLE", reviews_table.to_owned()),
        ("MESSAGES_TABLE", messages_table.to_owned()),
        ("CONSENT_TABLE", consent_table.to_owned()),
        ("TWILIO_ACCOUNT_SID", LOCAL_ACCOUNT_SID.to_owned()),
        ("TWILIO_AUTH_TOKEN", LOCAL_AUTH_TOKEN.to_owned()),
        ("TWILIO_API_BASE_URL", twilio.uri()),
        ("TWILIO_WHATSAPP_FROM", LOCAL_WHATSAPP_FROM.to_owned()),
        ("TWILIO_MAX_MPS", mps.to_string()),
        // The measurement must not depend on the time of day it runs at.
        ("QUIET_HOURS_START", "00:00".to_owned()),
        ("QUIET_HOURS_END", "00:00".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();

    // The shop's app: business attributes only.
    let text = |at: DateTime<Utc>| s(at.to_rfc3339_opts(SecondsFormat::Secs, true));
    let put_order = |i: usize, created: DateTime<Utc>, ready: bool| {
        let admin = &admin;
        async move {
            let mut put = admin
                .put_item()
                .table_name(orders_table)
                .item("orderId", s(format!("ord-{i:06}")))
                .item("customerPhone", s(format!("+3363{i:07}")))
                .item("customerName", s("Ana Lopez"))
                .item("status", s(if ready { "ready_pickup" } else { "pending" }))
                .item("paymentStatus", s(if ready { "paid" } else { "pending" }))
                .item("createdAt", text(created));
            if ready {
                put = put.item("readyAt", text(created));
            }
            put.send().await.map(|_| ())
        }
    };
    let put_cart = |i: usize| {
        let admin = &admin;
        async move {
            admin
                .put_item()
                .table_name(carts_table)
                .item("cartId", s(format!("cart-{i:06}")))
                .item("customerPhone", s(format!("+3364{i:07}")))
                .item("createdAt", text(now))
                .send()
                .await
                .map(|_| ())
        }
    };
    let later_at = now + TimeDelta::hours(12);
    let writes = futures::stream::iter(0..orders + later + carts)
        .map(|i| async move {
            if i < orders {
                put_order(i, now, i % 3 == 0).await
            } else if i < orders + later {
                put_order(i, later_at, false).await
            } else {
                put_cart(i).await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    for write in writes {
        write?;
    }

    // The consumer, on every record of both streams, its requests counted.
    let consumer_counter = RequestCounter::default();
    let consumer_client = counted_client(&sdk_config, &consumer_counter);
    let clock = Arc::new(FixedClock(now));
    let dispatcher_config = SendMessagesConfig::from_env(&env)?;
    let consumer = DeriveDeps {
        store: DynamoSchedule {
            carts: DynamoCarts::new(consumer_client.clone(), carts_table),
            orders: DynamoOrders::new(consumer_client.clone(), orders_table, reviews_table),
            outbox: DynamoOutbox::new(
                consumer_client,
                (&dispatcher_config.tables).into(),
                dispatcher_config.kinds.clone(),
                clock,
            ),
            // The figures of the daily report are counted apart (docs/benchmarks.md).
            tally: None,
        },
        config: DeriveConfig::from_env(&env)?,
    };
    let mut tap = StreamTap::default();
    let records = tap
        .fresh_at(&admin, Some(endpoint), &[carts_table, orders_table])
        .await?;
    let stream_records = records.records.len();
    let (derived, failures) = process(&consumer, &records).await;
    if !failures.batch_item_failures.is_empty() || !derived.unusable.is_empty() {
        return Err(format!("the consumer failed on the seeded records: {derived:?}").into());
    }

    // The dispatcher: one run with the kinds mixed, one with the delayed reminders due.
    let dispatcher_counter = RequestCounter::default();
    let dispatcher_at = |at: DateTime<Utc>| SendMessagesDeps {
        outbox: DynamoOutbox::new(
            counted_client(&sdk_config, &dispatcher_counter),
            (&dispatcher_config.tables).into(),
            dispatcher_config.kinds.clone(),
            Arc::new(FixedClock(at)),
        ),
        messenger: KindMessenger {
            twilio: TwilioClient::new(TwilioConfig::from_env(&env).expect("the bench's Twilio settings"))
                .expect("a Twilio client"),
            kinds: dispatcher_config.kinds.clone(),
        },
        clock: Arc::new(FixedClock(at)),
        config: dispatcher_config.clone(),
    };
    let mixed_at = later_at + TimeDelta::hours(1) + TimeDelta::minutes(1);
    let started = Instant::now();
    let mixed = send_messages::run(&dispatcher_at(mixed_at), &json!({}), Deadline::unbounded(), "mixed").await?;
    let mixed_run_s = started.elapsed().as_secs_f64();
    let mut arrivals: Vec<Instant> = twilio.messages().iter().map(|m| m.received_at).collect();
    arrivals.sort();
    let span_s = match (arrivals.first(), arrivals.last()) {
        (Some(first), Some(last)) => last.duration_since(*first).as_secs_f64(),
        _ => f64::NAN,
    };
    let achieved = (arrivals.len() as f64 - 1.0) / span_s;

    let delayed_at = now + TimeDelta::hours(24) + TimeDelta::minutes(1);
    let delayed = send_messages::run(&dispatcher_at(delayed_at), &json!({}), Deadline::unbounded(), "delayed").await?;
    let unpaid_first = orders - orders.div_ceil(3);
    if delayed.sent != unpaid_first as u64 {
        return Err(format!(
            "the delayed run sent {} of {unpaid_first} payment reminders: {}",
            delayed.sent,
            serde_json::to_string(&delayed)?
        )
        .into());
    }
    Ok(Lifecycle {
        achieved_mps: Float(achieved),
        configured_mps: mps,
        consumer_requests: consumer_counter.by_operation(),
        delayed_items_read: delayed.report.items_read,
        delayed_sent: delayed.sent,
        dispatcher_requests: dispatcher_counter.by_operation(),
        items_read_per_delayed_sent: Float(delayed.report.items_read as f64 / delayed.sent.max(1) as f64),
        messages_in_table: derived.messages,
        mixed_kinds: mixed.report.by_kind.keys().map(|kind| kind.to_string()).collect(),
        mixed_run_s: Float(mixed_run_s),
        mixed_sent: mixed.sent,
        rate_ratio: Float(achieved / f64::from(mps)),
        requests_per_stream_record: Float(consumer_counter.total() as f64 / stream_records.max(1) as f64),
        stream_records,
    })
}
