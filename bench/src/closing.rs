//! Closing the loop: what reconciliation costs in Twilio list requests per message whose
//! outcome was unknown, and that the daily report's DynamoDB reads stay the same however
//! many events the day had.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use backoffice::domain::phone::PhoneNumber;
use backoffice::jobs::daily_report::{self, OwnerChannels, ReportConfig, ReportDeps};
use backoffice::jobs::send_messages::{self, SendMessagesConfig, SendMessagesDeps};
use backoffice::messages::consent::DynamoConsents;
use backoffice::messages::engine::{Claim, DueMessage, MessageId, Outbox, Settlement};
use backoffice::messages::kind::Kind;
use backoffice::messages::outbox::{DynamoOutbox, message_key};
use backoffice::messages::plan::Scheduled;
use backoffice::messages::sender::{KindMessenger, content_of};
use backoffice::report::counters::DailyCounters;
use backoffice::report::events::{DynamoTally, ShopEvent};
use backoffice::runtime::clock::FixedClock;
use backoffice::runtime::job::Deadline;
use backoffice::twilio::{RetryPolicy, TwilioClient, TwilioConfig};
use bench::results::{Float, Reconciliation, ReportReads};
use bench::{Failure, RequestCounter, counted_client, create_table, local_sdk_config};
use chrono::{DateTime, TimeDelta, Utc};
use devstack::twilio_standin::{LOCAL_ACCOUNT_SID, LOCAL_AUTH_TOKEN, LOCAL_WHATSAPP_FROM, TwilioStandIn};
use futures::StreamExt;
use serde_json::json;

fn s(text: impl Into<String>) -> AttributeValue {
    AttributeValue::S(text.into())
}

/// `parked` order confirmations whose outcome is unknown, half of them at Twilio (the
/// answer was lost) and half never created; then one send-messages run past the wait.
pub async fn bench_reconciliation(
    endpoint: &str,
    parked: usize,
    now: DateTime<Utc>,
) -> Result<Reconciliation, Failure> {
    let sdk_config = local_sdk_config(endpoint).await;
    let admin = aws_sdk_dynamodb::Client::new(&sdk_config);
    let names = [
        ("CartsTable", "bench-c-carts"),
        ("OrdersTable", "bench-c-orders"),
        ("ReviewsTable", "bench-c-reviews"),
        ("MessagesTable", "bench-c-messages"),
        ("ConsentTable", "bench-c-consent"),
    ];
    for (logical_id, name) in names {
        create_table(&admin, logical_id, name).await?;
    }
    let twilio = TwilioStandIn::start().await?;
    let env: HashMap<String, String> = [
        ("CARTS_TABLE", names[0].1.to_owned()),
        ("ORDERS_TABLE", names[1].1.to_owned()),
        ("REVIEWS_TABLE", names[2].1.to_owned()),
        ("MESSAGES_TABLE", names[3].1.to_owned()),
        ("CONSENT_TABLE", names[4].1.to_owned()),
        ("TWILIO_ACCOUNT_SID", LOCAL_ACCOUNT_SID.to_owned()),
        ("TWILIO_AUTH_TOKEN", LOCAL_AUTH_TOKEN.to_owned()),
        ("TWILIO_API_BASE_URL", twilio.uri()),
        ("TWILIO_WHATSAPP_FROM", LOCAL_WHATSAPP_FROM.to_owned()),
        ("TWILIO_MAX_MPS", "1000".to_owned()),
        ("QUIET_HOURS_START", "00:00".to_owned()),
        ("QUIET_HOURS_END", "00:00".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = SendMessagesConfig::from_env(&env)?;
    let claimed_at = Utc::now();
    let outbox = DynamoOutbox::new(
        admin.clone(),
        (&config.tables).into(),
        config.kinds.clone(),
        Arc::new(FixedClock(claimed_at)),
    );
    let twilio_client = TwilioClient::new(TwilioConfig::from_env(&env)?)?;
    // Each message: its order, scheduled, claimed, and parked as unknown; the even ones
    // also reached Twilio (the answer that was lost).
    let parking = futures::stream::iter(0..parked)
        .map(|i| {
            let (admin, outbox, twilio_client, config) = (&admin, &outbox, &twilio_client, &config);
            async move {
                let order_id = format!("ord-{i:06}");
                let phone = format!("+3365{i:07}");
                admin
                    .put_item()
                    .table_name(names[1].1)
                    .item("orderId", s(&order_id))
                    .item("customerPhone", s(&phone))
                    .item("status", s("pending"))
                    .item("paymentStatus", s("pending"))
                    .item("createdAt", s(claimed_at.to_rfc3339()))
                    .send()
                    .await?;
                let id = MessageId {
                    kind: Kind::OrderConfirmation,
                    subject_id: order_id,
                };
                let customer_phone = PhoneNumber::parse(&phone)?;
                outbox
                    .schedule(&Scheduled {
                        id: id.clone(),
                        customer_phone: customer_phone.clone(),
                        customer_name: None,
                        due_at: claimed_at - TimeDelta::minutes(1),
                        send_before: claimed_at + TimeDelta::hours(24),
                    })
                    .await?;
                let message = DueMessage {
                    id: id.clone(),
                    customer_phone,
                    customer_name: None,
                    due_at: claimed_at - TimeDelta::minutes(1),
                    send_before: Some(claimed_at + TimeDelta::hours(24)),
                    since: claimed_at - TimeDelta::minutes(1),
                };
                let claim = Claim {
                    claim_id: "lost-run".into(),
                    claimed_at,
                };
                outbox.claim(&message, &claim).await?;
                if i % 2 == 0 {
                    let content = content_of(&message, &config.kinds, twilio_client.config().locale);
                    twilio_client
                        .send_tracked(
                            &message.customer_phone,
                            &content,
                            Some(&message_key(&id)),
                            &RetryPolicy::default(),
                        )
                        .await?;
                }
                let unknown = Settlement::Unknown {
                    reason: "timeout".into(),
                };
                outbox.settle(&message, &claim, &unknown).await?;
                Ok::<(), Failure>(())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    parking.into_iter().collect::<Result<Vec<()>, _>>()?;

    // The next run, past the wait: every parked message is looked up once.
    let counter = RequestCounter::default();
    let client = counted_client(&sdk_config, &counter);
    let later = Arc::new(FixedClock(claimed_at + TimeDelta::minutes(31)));
    let deps = SendMessagesDeps {
        outbox: DynamoOutbox::new(client, (&config.tables).into(), config.kinds.clone(), later.clone()),
        messenger: KindMessenger {
            twilio: TwilioClient::new(TwilioConfig::from_env(&env)?)?,
            kinds: config.kinds.clone(),
        },
        clock: later,
        config,
    };
    let lists_before = twilio.list_requests();
    let run = send_messages::run(&deps, &json!({}), Deadline::unbounded(), "reconciling").await?;
    let list_requests = twilio.list_requests() - lists_before;
    let reconciled = &run.report.reconciliation;
    if reconciled.found + reconciled.requeued != parked as u64 || run.sent != reconciled.requeued {
        return Err(format!("reconciliation did not settle every parked message: {run:?}").into());
    }
    let _ = now;
    Ok(Reconciliation {
        parked: parked as u64,
        found: reconciled.found,
        requeued: reconciled.requeued,
        resent: run.sent,
        list_requests,
        list_requests_per_unknown: Float(list_requests as f64 / parked as f64),
        dynamodb_requests: counter.by_operation(),
    })
}

/// The report's DynamoDB requests after a day of `small` order events and after one of
/// `large` (each event counted as derive-schedule counts it), in a dry run.
pub async fn bench_report_reads(
    endpoint: &str,
    small: usize,
    large: usize,
    now: DateTime<Utc>,
) -> Result<ReportReads, Failure> {
    let sdk_config = local_sdk_config(endpoint).await;
    let admin = aws_sdk_dynamodb::Client::new(&sdk_config);
    let mut requests = Vec::new();
    let mut tally_requests = 0;
    for (label, events) in [("small", small), ("large", large)] {
        let stats = format!("bench-rp-{label}-stats");
        let consent = format!("bench-rp-{label}-consent");
        let messages = format!("bench-rp-{label}-messages");
        create_table(&admin, "StatsTable", &stats).await?;
        create_table(&admin, "ConsentTable", &consent).await?;
        create_table(&admin, "MessagesTable", &messages).await?;
        let paris = jiff::tz::TimeZone::get("Europe/Paris")?;
        let tally_counter = RequestCounter::default();
        let tally_client = counted_client(&sdk_config, &tally_counter);
        let tally = DynamoTally {
            counters: DailyCounters::new(tally_client.clone(), &stats, paris.clone()),
            consents: DynamoConsents::new(tally_client.clone(), &consent),
            outbox: DynamoOutbox::new(
                tally_client,
                backoffice::messages::outbox::OutboxTables {
                    messages: messages.clone(),
                    orders: String::new(),
                    carts: String::new(),
                    reviews: String::new(),
                    consent: consent.clone(),
                },
                backoffice::messages::kind::KindsConfig::defaults(),
                Arc::new(FixedClock(now)),
            ),
        };
        let counted = futures::stream::iter(0..events)
            .map(|i| {
                let tally = &tally;
                async move {
                    let event = ShopEvent::OrderPlaced {
                        order_id: format!("ord-{i:06}"),
                        customer_phone: Some(PhoneNumber::parse(&format!("+3366{:07}", i % (events / 2).max(1)))?),
                        total_cents: 1000,
                        at: now,
                    };
                    tally.count(&event).await?;
                    Ok::<(), Failure>(())
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        counted.into_iter().collect::<Result<Vec<()>, _>>()?;
        if label == "large" {
            tally_requests = tally_counter.total();
        }
        let counter = RequestCounter::default();
        let deps = ReportDeps {
            counters: DailyCounters::new(counted_client(&sdk_config, &counter), &stats, paris),
            sender: OwnerChannels {
                sns: None,
                whatsapp: None,
            },
            clock: Arc::new(FixedClock(now + TimeDelta::days(1))),
            config: ReportConfig::from_env(&HashMap::<String, String>::new())?,
            channel_time: daily_report::DEFAULT_CHANNEL_TIME,
        };
        let report = daily_report::run(&deps, &json!({})).await?;
        if report.report.orders != events as u64 {
            return Err(format!("the report counts {} orders of {events}", report.report.orders).into());
        }
        requests.push(counter.total());
    }
    Ok(ReportReads {
        events_small: small as u64,
        events_large: large as u64,
        requests_small: requests[0],
        requests_large: requests[1],
        tally_requests_per_event: Float(tally_requests as f64 / large as f64),
    })
}
