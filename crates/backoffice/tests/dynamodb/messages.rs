//! Every message of an order's and a cart's life, end to end on a real DynamoDB API: the
//! shop's app writes business attributes only, the tables' streams (read through the
//! Streams API) feed derive-schedule as Lambda's event, send-messages sends through the
//! real Twilio client to a wiremock stand-in, and the clock is moved by hand.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use backoffice::domain::consent::{ConsentChange, ConsentSource, OptOut};
use backoffice::domain::phone::PhoneNumber;
use backoffice::jobs::clean_expired_carts::dynamo::DynamoCarts;
use backoffice::jobs::daily_report::{self, DeliveryFailure, ReportConfig, ReportDeps, ReportSender};
use backoffice::jobs::derive_schedule::dynamo::DynamoSchedule;
use backoffice::jobs::derive_schedule::{BatchReport, DeriveConfig, DeriveDeps, process};
use backoffice::jobs::record_review_reply::dynamo::DynamoReplies;
use backoffice::jobs::record_review_reply::memory::RecordingAlerts;
use backoffice::jobs::record_review_reply::{ReplyConfig, ReplyDeps, SignatureValidator, respond, signed_twilio_post};
use backoffice::jobs::request_reviews::dynamo::DynamoOrders;
use backoffice::jobs::request_reviews::{self, ReviewDeps, ReviewJobConfig};
use backoffice::jobs::send_messages::{self, OutboxTablesConfig, SendMessagesConfig, SendMessagesDeps};
use backoffice::messages::caps::Caps;
use backoffice::messages::consent::DynamoConsents;
use backoffice::messages::engine::{Claim, ClaimOutcome, DueMessage, MessageId, Outbox, Settled, Settlement};
use backoffice::messages::kind::{Kind, KindsConfig};
use backoffice::messages::outbox::{DynamoOutbox, MessageStatus};
use backoffice::messages::quiet::QuietHours;
use backoffice::messages::sender::KindMessenger;
use backoffice::report::DailyReport;
use backoffice::report::counters::DailyCounters;
use backoffice::report::events::DynamoTally;
use backoffice::runtime::clock::Clock;
use backoffice::runtime::job::Deadline;
use backoffice::testing::TEST_ACCOUNT_SID;
use backoffice::testing::{ManualClock, twilio_client};
use backoffice::twilio::AuthToken;
use backoffice::twilio::TwilioClient;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use devstack::stack::Stack;

use crate::utc;
use serde_json::json;
use strum::IntoEnumIterator;
use wiremock::matchers::{body_string_contains, method, path_regex, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use devstack::streams::{StreamTap, batch, stream_records};

fn paris() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get("Europe/Paris").unwrap()
}

/// Each kind's template, so the stand-in tells the kinds apart.
fn content_sid(kind: Kind) -> String {
    format!("HX{:0>32}", kind as u8)
}

fn kinds() -> KindsConfig {
    Kind::iter().fold(KindsConfig::defaults(), |kinds, kind| {
        kinds.with(kind, |settings| {
            settings.enabled = true;
            settings.content_sid = Some(content_sid(kind));
        })
    })
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn accepting_twilio() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/2010-04-01/Accounts/AC[0-9a-f]{32}/Messages\.json$"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"})),
        )
        .mount(&server)
        .await;
    server
}

/// Twilio accepts every send no mock of higher priority answers.
async fn accepting_the_rest(twilio: &MockServer, sid: &str) {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": sid, "status": "queued"})))
        .with_priority(5)
        .mount(twilio)
        .await;
}

/// Twilio answers the sends `matching` picks with a 500 for every attempt of one run; the
/// next run's are left to the other mocks.
async fn down_for_one_run(twilio: &MockServer, matching: wiremock::MockBuilder) {
    matching
        .respond_with(
            ResponseTemplate::new(500).set_body_json(json!({"code": 20500, "message": "down", "status": 500})),
        )
        .up_to_n_times(3)
        .with_priority(1)
        .mount(twilio)
        .await;
}

/// A shop whose app created these orders a minute ago, their records delivered.
async fn shop_with_orders(label: &str, twilio: MockServer, orders: &[(&str, &str)]) -> Shop {
    let mut shop = Shop::with_twilio(label, twilio).await;
    for (order, phone) in orders {
        shop.app_creates_order(order, phone).await;
    }
    shop.deliver().await;
    shop.advance(TimeDelta::minutes(1));
    shop
}

/// One shop: its tables, its stream consumer, its dispatcher, its review job, one clock.
struct Shop {
    stack: Stack,
    twilio: MockServer,
    clock: Arc<ManualClock>,
    consumer: DeriveDeps<DynamoSchedule>,
    dispatcher: SendMessagesDeps<DynamoOutbox, KindMessenger>,
    reviews: ReviewDeps<DynamoOrders, TwilioClient>,
    counters: DailyCounters,
    /// Hands each stream record to the consumer once.
    tap: StreamTap,
}

impl Shop {
    async fn open(label: &str) -> Self {
        Self::with_twilio(label, accepting_twilio().await).await
    }

    async fn with_twilio(label: &str, twilio: MockServer) -> Self {
        Self::build(label, twilio, QuietHours::never(jiff::tz::TimeZone::UTC), Utc::now()).await
    }

    /// A shop with these quiet hours whose clock starts at `start`.
    async fn build(label: &str, twilio: MockServer, quiet: QuietHours, start: DateTime<Utc>) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_max_level(tracing::Level::WARN)
            .try_init();
        let stack = Stack::from_env(label).await.unwrap();
        let client = || {
            twilio_client(
                &twilio.uri(),
                "test-token",
                &[
                    ("TWILIO_WHATSAPP_FROM", "+14155238886"),
                    ("REVIEW_TEMPLATE_SID", &content_sid(Kind::ReviewRequest)),
                    ("TWILIO_MAX_MPS", "200"),
                    ("TWILIO_TIMEOUT_MS", "500"),
                ],
            )
        };
        let clock = Arc::new(ManualClock::new(start));
        let tables = OutboxTablesConfig {
            messages: stack.tables.messages.clone(),
            orders: stack.tables.orders.clone(),
            carts: stack.tables.carts.clone(),
            reviews: stack.tables.reviews.clone(),
            consent: stack.tables.consent.clone(),
        };
        let counters = DailyCounters::new(stack.client.clone(), &stack.tables.stats, paris());
        let outbox = DynamoOutbox::new(stack.client.clone(), (&tables).into(), kinds(), clock.clone())
            .with_counters(counters.clone());
        let orders = DynamoOrders::new(stack.client.clone(), &stack.tables.orders, &stack.tables.reviews);
        Self {
            consumer: DeriveDeps {
                store: DynamoSchedule {
                    carts: DynamoCarts::new(stack.client.clone(), stack.tables.carts.clone()),
                    orders: orders.clone(),
                    outbox: outbox.clone(),
                    tally: Some(DynamoTally {
                        counters: counters.clone(),
                        consents: DynamoConsents::new(stack.client.clone(), &stack.tables.consent),
                        outbox: outbox.clone(),
                    }),
                },
                config: DeriveConfig {
                    carts_table: stack.tables.carts.clone(),
                    orders_table: stack.tables.orders.clone(),
                    messages_table: stack.tables.messages.clone(),
                    kinds: kinds(),
                    quiet: quiet.clone(),
                },
            },
            dispatcher: SendMessagesDeps {
                outbox,
                messenger: KindMessenger {
                    twilio: client(),
                    kinds: kinds(),
                },
                clock: clock.clone(),
                config: SendMessagesConfig {
                    tables,
                    kinds: kinds(),
                    quiet: quiet.clone(),
                    caps: Caps::default(),
                    page_size: 7,
                    concurrency: 8,
                    stop_margin: Duration::ZERO,
                    stale_claim_after: Duration::from_secs(20 * 60),
                },
            },
            reviews: ReviewDeps {
                store: orders
                    .with_consents(DynamoConsents::new(stack.client.clone(), &stack.tables.consent))
                    .with_counters(counters.clone()),
                messenger: client(),
                clock: clock.clone(),
                config: ReviewJobConfig {
                    orders_table: stack.tables.orders.clone(),
                    reviews_table: stack.tables.reviews.clone(),
                    consent_table: stack.tables.consent.clone(),
                    shop_timezone: jiff::tz::TimeZone::get("Europe/Paris").unwrap(),
                    delay_days: 7,
                    max_age_days: 30,
                    run_hour: 10,
                    page_size: 10,
                    concurrency: 4,
                    stop_margin: Duration::ZERO,
                    stale_claim_after: Duration::from_secs(20 * 60),
                    quiet: quiet.clone(),
                    caps: Caps::default(),
                },
            },
            counters,
            stack,
            twilio,
            clock,
            tap: StreamTap::default(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Hands the records not delivered yet to the consumer, as Lambda would.
    async fn deliver(&mut self) -> BatchReport {
        let tables = [self.stack.tables.carts.as_str(), self.stack.tables.orders.as_str()];
        let fresh = self.tap.fresh(&self.stack, &tables).await.unwrap();
        let (report, failures) = process(&self.consumer, &fresh).await;
        assert!(failures.batch_item_failures.is_empty(), "{report:?}");
        report
    }

    /// Every record of both streams again: a replay.
    async fn replay(&self, reverse: bool) -> BatchReport {
        let mut records = stream_records(
            &self.stack.client,
            self.stack.endpoint.as_deref(),
            &self.stack.tables.orders,
        )
        .await
        .unwrap();
        records.extend(
            stream_records(
                &self.stack.client,
                self.stack.endpoint.as_deref(),
                &self.stack.tables.carts,
            )
            .await
            .unwrap(),
        );
        if reverse {
            records.reverse();
        }
        process(&self.consumer, &batch(records)).await.0
    }

    /// The shop's outbox, its calls going through `client` (one that loses answers).
    fn outbox_on(&self, client: &aws_sdk_dynamodb::Client) -> DynamoOutbox {
        DynamoOutbox::new(
            client.clone(),
            (&self.dispatcher.config.tables).into(),
            kinds(),
            self.clock.clone(),
        )
    }

    async fn dispatch(&self, run_id: &str) -> send_messages::SendMessagesResponse {
        match send_messages::run(&self.dispatcher, &json!({}), Deadline::unbounded(), run_id).await {
            Ok(response) => response,
            Err(error) => panic!("run {run_id}: {error}"),
        }
    }

    fn advance(&self, by: TimeDelta) {
        self.clock.advance(by);
    }

    /// The kinds Twilio received, with how many of each, by subject.
    async fn received(&self) -> BTreeMap<(String, String), usize> {
        let mut received = BTreeMap::new();
        for request in self.twilio.received_requests().await.unwrap_or_default() {
            if request.method.as_str() != "POST" {
                continue;
            }
            let form: BTreeMap<String, String> = url::form_urlencoded::parse(&request.body).into_owned().collect();
            let kind = Kind::iter()
                .find(|kind| form.get("ContentSid") == Some(&content_sid(*kind)))
                .map_or("plain text".to_owned(), |kind| kind.to_string());
            let variables: serde_json::Value =
                serde_json::from_str(form.get("ContentVariables").map_or("{}", |v| v)).unwrap();
            let subject = variables["2"].as_str().unwrap_or_default().to_owned();
            *received.entry((subject, kind)).or_default() += 1;
        }
        received
    }

    async fn message(&self, kind: Kind, subject_id: &str) -> Option<backoffice::messages::outbox::StoredMessage> {
        let id = MessageId {
            kind,
            subject_id: subject_id.to_owned(),
        };
        self.dispatcher.outbox.message(&id).await.unwrap()
    }

    /// An order as the shop's app writes it: business attributes only.
    async fn app_creates_order(&self, order_id: &str, phone: &str) {
        self.app_creates_order_totalling(order_id, phone, None).await;
    }

    /// The same, with the order's total (`totalCents`).
    async fn app_creates_order_totalling(&self, order_id: &str, phone: &str, total_cents: Option<u64>) {
        let mut put = self
            .stack
            .client
            .put_item()
            .table_name(&self.stack.tables.orders)
            .item("orderId", s(order_id))
            .item("customerPhone", s(phone))
            .item("customerName", s("Ana Lima"))
            .item("status", s("pending"))
            .item("paymentStatus", s("pending"))
            .item("createdAt", s(&text(self.now())));
        if let Some(total) = total_cents {
            put = put.item("totalCents", AttributeValue::N(total.to_string()));
        }
        put.send().await.unwrap();
    }

    /// The shop's app: the order is paid and ready for pickup now.
    async fn app_marks_ready(&self, order_id: &str) {
        let ready = [
            ("paymentStatus", "paid".into()),
            ("status", "ready_pickup".into()),
            ("readyAt", text(self.now())),
        ];
        self.app_updates_order(order_id, &ready).await;
    }

    /// The app's update of an order: `SET name = value, ...`.
    async fn app_updates_order(&self, order_id: &str, changes: &[(&str, String)]) {
        let mut update = self
            .stack
            .client
            .update_item()
            .table_name(&self.stack.tables.orders)
            .key("orderId", s(order_id));
        let mut sets = Vec::new();
        for (i, (name, value)) in changes.iter().enumerate() {
            sets.push(format!("#n{i} = :v{i}"));
            update = update
                .expression_attribute_names(format!("#n{i}"), *name)
                .expression_attribute_values(format!(":v{i}"), s(value));
        }
        update
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await
            .unwrap();
    }

    async fn app_creates_cart(&self, cart_id: &str, phone: &str) {
        self.stack
            .client
            .put_item()
            .table_name(&self.stack.tables.carts)
            .item("cartId", s(cart_id))
            .item("customerPhone", s(phone))
            .item("createdAt", s(&text(self.now())))
            .send()
            .await
            .unwrap();
    }

    async fn app_touches_cart(&self, cart_id: &str) {
        self.stack
            .client
            .update_item()
            .table_name(&self.stack.tables.carts)
            .key("cartId", s(cart_id))
            .update_expression("SET updatedAt = :now")
            .expression_attribute_values(":now", s(&text(self.now())))
            .send()
            .await
            .unwrap();
    }

    async fn app_orders_cart(&self, cart_id: &str, order_id: &str) {
        self.stack
            .client
            .update_item()
            .table_name(&self.stack.tables.carts)
            .key("cartId", s(cart_id))
            .update_expression("SET orderId = :order")
            .expression_attribute_values(":order", s(order_id))
            .send()
            .await
            .unwrap();
    }
}

fn once(subject: &str, kinds: &[Kind]) -> BTreeMap<(String, String), usize> {
    kinds
        .iter()
        .map(|kind| ((subject.to_owned(), kind.to_string()), 1))
        .collect()
}

#[tokio::test]
async fn every_kind_goes_out_once_at_its_time_for_an_app_that_writes_business_attributes_only() {
    let mut shop = Shop::open("life").await;
    shop.app_creates_order("o-1", "+33612345601").await;
    shop.app_creates_cart("c-1", "+33612345602").await;
    let report = shop.deliver().await;
    assert_eq!(
        report.messages, 3,
        "confirmation, payment reminder, cart reminder: {report:?}"
    );

    shop.advance(TimeDelta::minutes(1));
    assert_eq!(shop.dispatch("t+1m").await.sent, 1, "the confirmation, within a minute");
    shop.advance(TimeDelta::minutes(30));
    assert_eq!(
        shop.dispatch("t+31m").await.sent,
        0,
        "the cart is not idle for an hour yet"
    );
    shop.advance(TimeDelta::minutes(30));
    assert_eq!(shop.dispatch("t+61m").await.sent, 1, "the abandoned cart");
    shop.advance(TimeDelta::hours(23));
    assert_eq!(shop.dispatch("t+24h").await.sent, 1, "the payment reminder");

    shop.app_marks_ready("o-1").await;
    shop.deliver().await;
    shop.advance(TimeDelta::minutes(1));
    assert_eq!(shop.dispatch("ready").await.sent, 1, "ready for pickup");
    shop.advance(TimeDelta::hours(48));
    assert_eq!(shop.dispatch("ready+48h").await.sent, 1, "the pickup reminder");

    shop.app_updates_order(
        "o-1",
        &[("status", "completed".into()), ("completedAt", text(shop.now()))],
    )
    .await;
    shop.deliver().await;
    shop.advance(TimeDelta::hours(24) + TimeDelta::minutes(1));
    assert_eq!(shop.dispatch("completed+24h").await.sent, 1, "the satisfaction check");
    shop.advance(TimeDelta::days(7));
    let requested = request_reviews::run(&shop.reviews, &json!({}), Deadline::unbounded(), "daily")
        .await
        .unwrap();
    assert_eq!(requested.sent, 1, "the review request, from its daily run");
    let report = shop.deliver().await;
    assert_eq!(report.messages, 1, "the review reminder is scheduled: {report:?}");
    shop.advance(TimeDelta::days(7) + TimeDelta::minutes(1));
    assert_eq!(shop.dispatch("requested+7d").await.sent, 1, "the review reminder");

    // Nothing more, however often it runs, and a replay of every record (duplicates,
    // in order and reversed) schedules nothing new.
    assert_eq!(shop.dispatch("again").await.total, 0);
    for reverse in [false, true] {
        let replayed = shop.replay(reverse).await;
        assert_eq!(replayed.messages, 0, "{replayed:?}");
    }
    shop.advance(TimeDelta::days(30));
    assert_eq!(shop.dispatch("much later").await.total, 0);

    let mut expected = once(
        "o-1",
        &[
            Kind::OrderConfirmation,
            Kind::PaymentReminder,
            Kind::ReadyForPickup,
            Kind::PickupReminder,
            Kind::SatisfactionCheck,
            Kind::ReviewRequest,
            Kind::ReviewReminder,
        ],
    );
    // The cart's template variable {{2}} is the cart id.
    expected.extend(once("c-1", &[Kind::AbandonedCart]));
    assert_eq!(shop.received().await, expected);
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn a_cancelled_order_drops_its_waiting_messages_even_before_the_stream_says_so() {
    let mut shop = Shop::open("cancel").await;
    shop.app_creates_order("o-cancelled", "+33612345611").await;
    shop.app_creates_order("o-cancelled-late", "+33612345612").await;
    shop.deliver().await;
    shop.advance(TimeDelta::minutes(1));
    assert_eq!(shop.dispatch("confirmations").await.sent, 2);

    shop.app_updates_order("o-cancelled", &[("status", "cancelled".into())])
        .await;
    let report = shop.deliver().await;
    assert_eq!(report.messages, 1, "the payment reminder dropped: {report:?}");
    let dropped = shop.message(Kind::PaymentReminder, "o-cancelled").await.unwrap();
    assert_eq!(
        (dropped.status, dropped.skip_reason.as_deref()),
        (MessageStatus::Skipped, Some("cancelled"))
    );

    // Refunded after the stream was read: the claim's own check refuses it.
    shop.app_updates_order("o-cancelled-late", &[("paymentStatus", "refunded".into())])
        .await;
    shop.advance(TimeDelta::hours(25));
    let run = shop.dispatch("reminders").await;
    assert_eq!((run.sent, run.report.skipped.get("refunded")), (0, Some(&1)), "{run:?}");
    let refused = shop.message(Kind::PaymentReminder, "o-cancelled-late").await.unwrap();
    assert_eq!(refused.skip_reason.as_deref(), Some("refunded"));
    assert_eq!(shop.received().await.len(), 2, "the two confirmations only");
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn a_paid_order_gets_no_payment_reminder_and_a_cart_turned_into_an_order_no_cart_reminder() {
    let mut shop = Shop::open("eligible").await;
    shop.app_creates_order("o-paid", "+33612345621").await;
    shop.app_creates_cart("c-ordered", "+33612345622").await;
    shop.app_creates_cart("c-ordered-late", "+33612345623").await;
    shop.deliver().await;
    shop.app_updates_order("o-paid", &[("paymentStatus", "paid".into())])
        .await;
    shop.app_orders_cart("c-ordered", "o-paid").await;
    let report = shop.deliver().await;
    assert_eq!(report.messages, 1, "the converted cart's reminder dropped: {report:?}");
    // Ordered after the stream was read: the claim's check refuses it.
    shop.app_orders_cart("c-ordered-late", "o-other").await;
    shop.advance(TimeDelta::minutes(61));
    let run = shop.dispatch("idle an hour").await;
    assert_eq!(run.sent, 1, "the order confirmation only: {run:?}");
    assert_eq!(run.report.skipped, BTreeMap::from([("converted", 1)]), "{run:?}");
    shop.advance(TimeDelta::hours(24));
    let run = shop.dispatch("a day later").await;
    assert_eq!((run.sent, run.report.skipped.get("paid")), (0, Some(&1)), "{run:?}");
    let cart = shop.message(Kind::AbandonedCart, "c-ordered").await.unwrap();
    assert_eq!(cart.skip_reason.as_deref(), Some("converted"));
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn a_cart_touched_again_is_reminded_an_hour_after_its_last_touch() {
    let mut shop = Shop::open("touched").await;
    shop.app_creates_cart("c-touched", "+33612345641").await;
    shop.deliver().await;
    shop.advance(TimeDelta::minutes(50));
    shop.app_touches_cart("c-touched").await;
    let report = shop.deliver().await;
    assert_eq!(report.messages, 1, "postponed: {report:?}");
    shop.advance(TimeDelta::minutes(15));
    assert_eq!(shop.dispatch("an hour after creation").await.total, 0);
    shop.advance(TimeDelta::minutes(50));
    assert_eq!(shop.dispatch("an hour after the touch").await.sent, 1);
    shop.stack.cleanup().await;
}

/// A run reads a cart's reminder as due; the customer touches the cart before the run
/// claims it. The claim finds the reminder postponed and leaves it for its new time, and a
/// deferral never brings it back earlier.
#[tokio::test]
async fn a_reminder_postponed_between_the_read_and_the_claim_waits_for_its_new_time() {
    let mut shop = Shop::open("postponed-claim").await;
    let phone = "+33612345642";
    shop.app_creates_cart("c-late-touch", phone).await;
    shop.deliver().await;
    shop.advance(TimeDelta::minutes(61));
    let first_due = shop.message(Kind::AbandonedCart, "c-late-touch").await.unwrap().due_at;
    assert!(first_due <= shop.now().timestamp());
    let read = DueMessage {
        id: MessageId {
            kind: Kind::AbandonedCart,
            subject_id: "c-late-touch".into(),
        },
        customer_phone: PhoneNumber::parse(phone).unwrap(),
        customer_name: None,
        due_at: DateTime::from_timestamp(first_due, 0).unwrap(),
        send_before: None,
        since: shop.now() - TimeDelta::minutes(61),
    };
    shop.app_touches_cart("c-late-touch").await;
    shop.deliver().await;
    let postponed = shop.message(Kind::AbandonedCart, "c-late-touch").await.unwrap().due_at;
    assert!(postponed > shop.now().timestamp(), "the stream postponed it");

    let outbox = shop.outbox_on(&shop.stack.client);
    outbox.defer(&read, shop.now() + TimeDelta::minutes(5)).await.unwrap();
    let after_defer = shop.message(Kind::AbandonedCart, "c-late-touch").await.unwrap().due_at;
    assert_eq!(after_defer, postponed, "a deferral moves a message later only");
    let claim = Claim {
        claim_id: "read-before-the-touch".into(),
        claimed_at: shop.now(),
    };
    assert_eq!(outbox.claim(&read, &claim).await.unwrap(), ClaimOutcome::TakenElsewhere);
    let stored = shop.message(Kind::AbandonedCart, "c-late-touch").await.unwrap();
    assert_eq!((stored.status, stored.due_at), (MessageStatus::Pending, postponed));

    assert_eq!(shop.dispatch("before the new time").await.sent, 0);
    shop.advance(TimeDelta::minutes(61));
    assert_eq!(shop.dispatch("at the new time").await.sent, 1);
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn concurrent_runs_send_each_due_message_once() {
    if devstack::stack::emulator_is_moto() {
        // moto does not isolate a transaction from a concurrent one on the same item: both
        // claims can pass. DynamoDB and dynoxide do (docs/decisions/dynoxide-and-moto.md).
        eprintln!("skipped on moto: its TransactWriteItems are not isolated under concurrency");
        return;
    }
    let mut shop = Shop::open("concurrent").await;
    for i in 0..24 {
        shop.app_creates_order(&format!("o-{i:02}"), &format!("+336123456{i:02}"))
            .await;
    }
    shop.deliver().await;
    shop.advance(TimeDelta::minutes(1));
    let (first, second) = tokio::join!(shop.dispatch("run-a"), shop.dispatch("run-b"));
    // Two claims that collide may both step back (a transaction conflict): the next run
    // sends what neither took.
    let third = shop.dispatch("run-c").await;
    assert_eq!(
        first.sent + second.sent + third.sent,
        24,
        "{first:?} {second:?} {third:?}"
    );
    let received = shop.received().await;
    assert_eq!(received.len(), 24);
    assert!(received.values().all(|count| *count == 1), "{received:?}");
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn twilio_faults_release_park_or_fail_a_message_and_only_the_released_one_goes_again() {
    let twilio = MockServer::start().await;
    let to = |phone: &str| body_string_contains(format!("To=whatsapp%3A%2B{}", &phone[1..]));
    down_for_one_run(&twilio, Mock::given(method("POST")).and(to("+33612345631"))).await;
    Mock::given(method("POST"))
        .and(to("+33612345632"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}))
                .set_delay(Duration::from_secs(2)),
        )
        .with_priority(1)
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(to("+33612345633"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(json!({"code": 21211, "message": "invalid", "status": 400})),
        )
        .with_priority(1)
        .mount(&twilio)
        .await;
    accepting_the_rest(&twilio, "SM0123456789abcdef0123456789abcdef").await;
    let shop = shop_with_orders(
        "faults",
        twilio,
        &[
            ("o-down", "+33612345631"),
            ("o-timeout", "+33612345632"),
            ("o-invalid", "+33612345633"),
            ("o-ok", "+33612345634"),
        ],
    )
    .await;
    let first = shop.dispatch("first").await;
    let report = &first.report;
    assert_eq!(
        (
            first.sent,
            first.failed,
            report.released,
            report.unknown,
            report.awaiting_reconciliation
        ),
        (1, 1, 1, 1, 1),
        "{first:?}"
    );
    assert_eq!(report.failed_reasons.get("twilio_21211"), Some(&1));
    assert_eq!(
        shop_status(&shop, "o-down").await,
        MessageStatus::Pending,
        "released: back in line"
    );
    assert_eq!(
        shop_status(&shop, "o-timeout").await,
        MessageStatus::Unknown,
        "parked, never resent by itself"
    );
    assert_eq!(shop_status(&shop, "o-invalid").await, MessageStatus::Failed);

    shop.advance(TimeDelta::minutes(1));
    let second = shop.dispatch("second").await;
    assert_eq!((second.sent, second.total), (1, 1), "only the released one: {second:?}");
    assert_eq!(second.report.awaiting_reconciliation, 1);
    assert_eq!(shop_status(&shop, "o-down").await, MessageStatus::Sent);
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn a_customer_whose_consent_item_is_unreadable_gets_nothing_and_the_message_says_why() {
    if devstack::stack::emulator_is_moto() {
        // DynamoDB reads a comparison of a number with a string as false; moto cancels the
        // transaction with a `TypeError` reason of its own.
        eprintln!("skipped on moto: a condition comparing N with S raises instead of failing");
        return;
    }
    let mut shop = Shop::open("unreadable-consent").await;
    shop.app_creates_order("o-hand-edited", "+33612345684").await;
    // Edited by hand: an opt-out time written as a number, which no claim condition reads.
    devstack::seed::put_item(
        &shop.stack.client,
        &shop.stack.tables.consent,
        &[
            ("phone", s("+33612345684")),
            ("optOutAllAt", AttributeValue::N("1764000000".into())),
        ],
    )
    .await
    .unwrap();
    // And one whose opt-out was typed by hand in a form no code writes.
    shop.app_creates_order("o-typed", "+33612345687").await;
    devstack::seed::put_item(
        &shop.stack.client,
        &shop.stack.tables.consent,
        &[("phone", s("+33612345687")), ("optOut", s("ALL"))],
    )
    .await
    .unwrap();
    shop.deliver().await;
    shop.advance(TimeDelta::minutes(1));

    let run = shop.dispatch("confirmations").await;

    assert_eq!(run.sent, 0, "{run:?}");
    let typed = shop.message(Kind::OrderConfirmation, "o-typed").await.unwrap();
    assert_eq!(typed.skip_reason.as_deref(), Some("unreadable_consent"));
    let confirmation = shop.message(Kind::OrderConfirmation, "o-hand-edited").await.unwrap();
    assert_eq!(
        (confirmation.status, confirmation.skip_reason.as_deref()),
        (MessageStatus::Skipped, Some("unreadable_consent")),
        "closed with its reason at once, not retried every minute"
    );
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn a_due_entry_of_a_kind_this_code_does_not_know_is_counted_and_left_in_place() {
    let shop = Shop::open("unknown-kind").await;
    // Written by a newer version (a kind added, then rolled back), or by hand.
    let key = "birthday_promo#o-1";
    devstack::seed::put_item(
        &shop.stack.client,
        &shop.stack.tables.messages,
        &[
            ("messageId", s(key)),
            ("status", s("pending")),
            ("dueShard", s(&backoffice::store::shard::shard_of(key))),
            (
                "dueAt",
                AttributeValue::N((shop.now() - TimeDelta::hours(1)).timestamp().to_string()),
            ),
            ("customerPhone", s("+33612345689")),
        ],
    )
    .await
    .unwrap();

    let run = shop.dispatch("unknown-kind").await;

    assert_eq!(run.report.skipped.get("unknown_kind"), Some(&1), "{run:?}");
    assert_eq!(run.sent, 0);
    let item = shop
        .stack
        .client
        .get_item()
        .table_name(&shop.stack.tables.messages)
        .key("messageId", s(key))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(
        item.contains_key("dueShard"),
        "left in the index for the version that knows it"
    );
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn a_cart_ordered_after_its_reminder_item_was_garbled_does_not_hold_the_stream() {
    let mut shop = Shop::open("garbled-reminder").await;
    shop.app_creates_cart("c-garbled", "+33612345686").await;
    shop.deliver().await;
    devstack::seed::put_item(
        &shop.stack.client,
        &shop.stack.tables.messages,
        &[
            ("messageId", s("abandoned_cart#c-garbled")),
            ("status", AttributeValue::N("7".into())),
        ],
    )
    .await
    .unwrap();
    shop.app_orders_cart("c-garbled", "o-from-cart").await;

    // `deliver` fails the test on any record left for Lambda to retry.
    let report = shop.deliver().await;

    assert_eq!(report.failed, 0, "{report:?}");
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn an_order_written_without_a_status_gets_its_confirmation() {
    let mut shop = Shop::open("no-status").await;
    shop.app_creates_order("o-bare", "+33612345683").await;
    shop.stack
        .client
        .update_item()
        .table_name(&shop.stack.tables.orders)
        .key("orderId", s("o-bare"))
        .update_expression("REMOVE #status")
        .expression_attribute_names("#status", "status")
        .send()
        .await
        .unwrap();
    shop.deliver().await;
    shop.advance(TimeDelta::minutes(1));

    let run = shop.dispatch("confirmations").await;

    assert_eq!(run.sent, 1, "{run:?}");
    let confirmation = shop.message(Kind::OrderConfirmation, "o-bare").await.unwrap();
    assert_eq!(confirmation.status, MessageStatus::Sent);
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn a_cart_reminder_released_by_a_twilio_outage_goes_out_at_the_next_run() {
    released_reminder_goes_out_at_the_next_run("released-marketing", false).await;
}

#[tokio::test]
async fn a_release_whose_answer_was_lost_still_gives_the_caps_back() {
    released_reminder_goes_out_at_the_next_run("released-lost-answer", true).await;
}

/// Twilio is down for a run: the cart reminder is released, and, its answer lost once
/// when `lose_release_answer`, goes out at the next run.
async fn released_reminder_goes_out_at_the_next_run(label: &str, lose_release_answer: bool) {
    let twilio = MockServer::start().await;
    down_for_one_run(&twilio, Mock::given(method("POST"))).await;
    accepting_the_rest(&twilio, "SM0123456789abcdef0123456789abcdef").await;
    let mut shop = Shop::build(label, twilio, QuietHours::never(paris()), this_morning_in_paris()).await;
    shop.app_creates_cart("c-left", "+33612345671").await;
    shop.deliver().await;
    shop.advance(TimeDelta::minutes(61));
    let lost = devstack::faults::LostAnswers::of("UpdateItem", u32::from(lose_release_answer));
    let losing = shop.outbox_on(&lost.on(&shop.stack.client));
    let steady = std::mem::replace(&mut shop.dispatcher.outbox, losing);

    let first = shop.dispatch("first").await;
    assert_eq!(lost.left(), 0, "the release's answer was lost as asked");
    assert_eq!((first.sent, first.report.released), (0, 1), "{first:?}");
    shop.dispatcher.outbox = steady;
    shop.advance(TimeDelta::minutes(1));
    // The claim's record of the reminder in the customer's caps was given back: the
    // reminder is not held back (and then dropped) by its own claim.
    let second = shop.dispatch("second").await;
    assert_eq!(second.sent, 1, "{second:?}");
    let reminder = shop.message(Kind::AbandonedCart, "c-left").await.unwrap();
    assert_eq!(reminder.status, MessageStatus::Sent);
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn a_resolution_whose_answer_was_lost_reads_as_resolved_and_another_runs_does_not() {
    use backoffice::messages::reconcile::Resolution;
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}))
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&twilio)
        .await;
    let shop = shop_with_orders("resolve-lost-answer", twilio, &[("o-parked", "+33612345674")]).await;
    let first = shop.dispatch("first").await;
    assert_eq!(first.report.unknown, 1, "the send timed out: parked {first:?}");
    let parked = shop.dispatcher.outbox.parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    let lost = devstack::faults::LostAnswers::of("UpdateItem", 1);
    let losing = shop.outbox_on(&lost.on(&shop.stack.client));
    let requeue = Resolution::Requeue {
        reason: "Twilio never had it".into(),
    };

    assert!(losing.resolve(&parked[0], &requeue).await.unwrap(), "its own retry");
    assert_eq!(lost.left(), 0, "the answer was lost once");
    assert!(
        !shop.dispatcher.outbox.resolve(&parked[0], &requeue).await.unwrap(),
        "another run's resolution of the same message"
    );
    let message = shop.message(Kind::OrderConfirmation, "o-parked").await.unwrap();
    assert_eq!(message.status, MessageStatus::Pending);
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn one_marketing_message_a_week_is_claimed_recorded_and_given_back() {
    use aws_sdk_dynamodb::types::TransactWriteItem;
    use backoffice::messages::caps::Caps;
    let stack = Stack::from_env("caps-one-a-week").await.unwrap();
    let consents = DynamoConsents::new(stack.client.clone(), &stack.tables.consent);
    let phone = PhoneNumber::parse("+33612345688").unwrap();
    let caps = Caps {
        per_week: 1,
        ..Caps::default()
    };
    let at = this_morning_in_paris();

    let claim = consents.claim_update(&phone, true, at, at, &caps).unwrap();
    stack
        .client
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().update(claim).build())
        .send()
        .await
        .expect("the claim's write is one DynamoDB accepts with a single slot");
    assert!(consents.give_back(&phone, at, &caps).await.unwrap());
    consents.record_sent(&phone, true, at, &caps).await.unwrap();
    assert_eq!(consents.get(&phone).await.unwrap().marketing_sent, [at]);
    stack.cleanup().await;
}

#[tokio::test]
async fn caps_given_back_are_those_of_the_last_claim_only() {
    use backoffice::messages::caps::Caps;
    let stack = Stack::from_env("caps-give-back").await.unwrap();
    let consents = DynamoConsents::new(stack.client.clone(), &stack.tables.consent);
    let phone = PhoneNumber::parse("+33612345672").unwrap();
    let caps = Caps::default();
    let at = |days: i64| this_morning_in_paris() - TimeDelta::days(days);
    consents.record_sent(&phone, true, at(9), &caps).await.unwrap();
    consents.record_sent(&phone, true, at(3), &caps).await.unwrap();
    let before = consents.get(&phone).await.unwrap();
    consents.record_sent(&phone, true, at(0), &caps).await.unwrap();

    assert!(consents.give_back(&phone, at(0), &caps).await.unwrap());
    let after = consents.get(&phone).await.unwrap();
    assert_eq!(after.marketing_sent[..1], before.marketing_sent[..1], "{after:?}");
    assert_eq!(
        caps.next_allowed(&after, at(0)),
        None,
        "the given-back claim holds nothing back"
    );

    // Once another message was claimed since, a claim has nothing left to give back.
    consents.record_sent(&phone, true, at(0), &caps).await.unwrap();
    consents
        .record_sent(&phone, false, at(0) + TimeDelta::minutes(5), &caps)
        .await
        .unwrap();
    assert!(!consents.give_back(&phone, at(0), &caps).await.unwrap());
    stack.cleanup().await;
}

/// One message this account sent through the API, as Twilio's Messages list shows it.
fn listed(sid: &str, body: &str, created: &str) -> serde_json::Value {
    json!({"sid": sid, "body": body, "direction": "outbound-api", "from": "whatsapp:+14155238886",
           "status": "delivered", "date_created": created, "date_sent": created})
}

/// What Twilio's Messages list shows for one recipient.
async fn twilio_lists(twilio: &MockServer, phone: &str, messages: serde_json::Value) {
    Mock::given(method("GET"))
        .and(path_regex(r"^/2010-04-01/Accounts/AC[0-9a-f]{32}/Messages\.json$"))
        .and(query_param("To", format!("whatsapp:{phone}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"messages": messages, "next_page_uri": null})))
        .mount(twilio)
        .await;
}

#[tokio::test]
async fn a_message_of_the_same_order_at_twilio_is_not_taken_for_a_lost_one() {
    let twilio = MockServer::start().await;
    // The confirmation's send times out: its outcome is unknown (Twilio never had it).
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(504).set_body_string("Gateway Timeout"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&twilio)
        .await;
    accepting_the_rest(&twilio, "SMpickup000000000000000000000000001").await;
    let mut shop = shop_with_orders("reconcile-sibling", twilio, &[("o-twin", "+33612345681")]).await;
    let claimed_at = shop.now();
    let first = shop.dispatch("first").await;
    assert_eq!(first.report.unknown, 1, "{first:?}");

    // Minutes later the order is ready: that message goes out, naming the order too.
    shop.app_marks_ready("o-twin").await;
    shop.deliver().await;
    shop.advance(TimeDelta::minutes(1));
    assert_eq!(shop.dispatch("ready").await.sent, 1, "ready for pickup");
    let created = (claimed_at + TimeDelta::minutes(2)).to_rfc2822();
    twilio_lists(
        &shop.twilio,
        "+33612345681",
        json!([listed(
            "SMpickup000000000000000000000000001",
            "Ana, votre commande o-twin est prête.",
            &created
        )]),
    )
    .await;

    shop.advance(TimeDelta::minutes(31));
    let later = shop.dispatch("later").await;

    assert_eq!(later.report.reconciliation.found, 0, "{later:?}");
    assert_eq!(later.report.reconciliation.requeued, 1, "{later:?}");
    let confirmation = shop.message(Kind::OrderConfirmation, "o-twin").await.unwrap();
    assert_eq!(confirmation.status, MessageStatus::Sent, "sent again, once");
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn a_parked_message_whose_sibling_is_unreadable_is_left_for_a_person_not_looked_up_forever() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(504).set_body_string("Gateway Timeout"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&twilio)
        .await;
    accepting_the_rest(&twilio, "SMpickup000000000000000000000000002").await;
    let shop = shop_with_orders("reconcile-unreadable-sibling", twilio, &[("o-odd", "+33612345685")]).await;
    let first = shop.dispatch("first").await;
    assert_eq!(first.report.unknown, 1, "{first:?}");
    // Another message of the order, written by hand with a status no code knows.
    devstack::seed::put_item(
        &shop.stack.client,
        &shop.stack.tables.messages,
        &[("messageId", s("ready_for_pickup#o-odd")), ("status", s("garbage"))],
    )
    .await
    .unwrap();
    twilio_lists(&shop.twilio, "+33612345685", json!([])).await;

    shop.advance(TimeDelta::minutes(31));
    let later = shop.dispatch("later").await;

    let reconciliation = &later.report.reconciliation;
    assert_eq!(
        reconciliation.undecided.get("unreadable_sibling"),
        Some(&1),
        "{later:?}"
    );
    let again = shop.dispatch("again").await;
    assert_eq!(
        again.report.reconciliation,
        Default::default(),
        "moved aside: not looked up again"
    );
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn two_parked_messages_of_one_order_are_left_for_a_person_when_twilio_has_one() {
    let shop = shop_with_orders(
        "reconcile-two-parked",
        accepting_twilio().await,
        &[("o-pair", "+33612345682")],
    )
    .await;
    let outbox = shop.outbox_on(&shop.stack.client);
    // Both messages of the order claimed at once, once both are due (the reminder a day
    // after the order), and both sends ended without an answer.
    shop.advance(TimeDelta::hours(24));
    let claim = Claim {
        claim_id: "run-1/00000001".into(),
        claimed_at: shop.now(),
    };
    let confirmation = confirmation_due(&shop, "o-pair", "+33612345682");
    let reminder = DueMessage {
        id: MessageId {
            kind: Kind::PaymentReminder,
            subject_id: "o-pair".into(),
        },
        ..confirmation.clone()
    };
    for message in [&confirmation, &reminder] {
        assert_eq!(outbox.claim(message, &claim).await.unwrap(), ClaimOutcome::Claimed);
        let unknown = Settlement::Unknown {
            reason: "Twilio did not answer in time".into(),
        };
        outbox.settle(message, &claim, &unknown).await.unwrap();
    }
    // Twilio had one of them: it names the order, so it could be either.
    let created = (shop.now() + TimeDelta::seconds(1)).to_rfc2822();
    twilio_lists(
        &shop.twilio,
        "+33612345682",
        json!([listed(
            "SMone00000000000000000000000000001",
            "Commande o-pair : merci !",
            &created
        )]),
    )
    .await;

    shop.advance(TimeDelta::minutes(31));
    let later = shop.dispatch("later").await;

    let reconciliation = &later.report.reconciliation;
    assert_eq!((reconciliation.found, reconciliation.requeued), (0, 0), "{later:?}");
    assert_eq!(reconciliation.undecided.get("another_message_parked"), Some(&2));
    assert_eq!(later.sent, 0, "nothing sent again");
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn reconciliation_settles_what_twilio_has_requeues_what_it_never_had_and_two_runs_do_it_once() {
    let twilio = MockServer::start().await;
    for phone in ["+33612345641", "+33612345642", "+33612345643"] {
        // The first send of each times out: the outcome is unknown.
        Mock::given(method("POST"))
            .and(body_string_contains(format!("To=whatsapp%3A%2B{}", &phone[1..])))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}))
                    .set_delay(Duration::from_secs(2)),
            )
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&twilio)
            .await;
    }
    accepting_the_rest(&twilio, "SMfedcba9876543210fedcba9876543210").await;
    let shop = shop_with_orders(
        "reconcile",
        twilio,
        &[
            ("o-at-twilio", "+33612345641"),
            ("o-never-sent", "+33612345642"),
            ("o-in-doubt", "+33612345643"),
        ],
    )
    .await;
    let claimed_at = shop.now();
    let first = shop.dispatch("first").await;
    assert_eq!(first.report.unknown, 3, "{first:?}");

    let created = (claimed_at + TimeDelta::seconds(1)).to_rfc2822();
    let ours = |sid: &str, body: &str| {
        json!({"sid": sid, "body": body, "direction": "outbound-api", "from": "whatsapp:+14155238886",
               "status": "delivered", "date_created": created, "date_sent": created})
    };
    twilio_lists(
        &shop.twilio,
        "+33612345641",
        json!([ours(
            "SMfound0000000000000000000000000001",
            "Merci Ana ! Commande o-at-twilio reçue."
        )]),
    )
    .await;
    twilio_lists(&shop.twilio, "+33612345642", json!([])).await;
    // Something went to the third customer then, but it does not name the order.
    twilio_lists(
        &shop.twilio,
        "+33612345643",
        json!([ours(
            "SMother00000000000000000000000000001",
            "Votre colis arrive demain."
        )]),
    )
    .await;

    shop.advance(TimeDelta::minutes(31));
    let (a, b) = if devstack::stack::emulator_is_moto() {
        // moto does not isolate the requeued message's concurrent claims (see
        // `concurrent_runs_send_each_due_message_once`): one run after the other there.
        (shop.dispatch("run-a").await, shop.dispatch("run-b").await)
    } else {
        tokio::join!(shop.dispatch("run-a"), shop.dispatch("run-b"))
    };
    let found = a.report.reconciliation.found + b.report.reconciliation.found;
    let requeued = a.report.reconciliation.requeued + b.report.reconciliation.requeued;
    assert_eq!((found, requeued), (1, 1), "each settled once: {a:?} {b:?}");
    assert_eq!(a.sent + b.sent, 1, "the one Twilio never had, sent again once");

    let at_twilio = shop.message(Kind::OrderConfirmation, "o-at-twilio").await.unwrap();
    assert_eq!(at_twilio.status, MessageStatus::Sent);
    assert_eq!(
        at_twilio.message_sid.as_deref(),
        Some("SMfound0000000000000000000000000001")
    );
    assert_eq!(shop_status(&shop, "o-never-sent").await, MessageStatus::Sent);
    assert_eq!(
        shop_status(&shop, "o-in-doubt").await,
        MessageStatus::Unknown,
        "left for a person"
    );
    let left = a.report.reconciliation.left_for_a_person + b.report.reconciliation.left_for_a_person;
    assert_eq!(left, 1, "moved aside once");
    let received = shop.received().await;
    let sent_to = |order: &str| {
        received
            .get(&(order.to_owned(), Kind::OrderConfirmation.to_string()))
            .copied()
    };
    assert_eq!(sent_to("o-at-twilio"), Some(1), "never sent twice");
    assert_eq!(
        sent_to("o-never-sent"),
        Some(2),
        "the lost attempt and the one after reconciliation"
    );
    assert_eq!(sent_to("o-in-doubt"), Some(1));
    assert_eq!(
        a.report.awaiting_reconciliation.max(b.report.awaiting_reconciliation),
        1
    );
    shop.stack.cleanup().await;
}

async fn shop_status(shop: &Shop, order: &str) -> MessageStatus {
    shop.message(Kind::OrderConfirmation, order).await.unwrap().status
}

/// The customer's reply `change`, a message of its own (a `MessageSid` changes consent once).
async fn consent(shop: &Shop, phone: &str, change: ConsentChange) {
    static REPLIES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let sid = format!("SMconsent{}", REPLIES.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let consents = DynamoConsents::new(shop.stack.client.clone(), &shop.stack.tables.consent);
    let phone = PhoneNumber::parse(phone).unwrap();
    assert!(
        consents
            .record(&phone, change, ConsentSource::Keyword, shop.now(), Some(&sid))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn consent_is_checked_at_every_claim_and_a_customer_back_in_gets_only_new_orders_messages() {
    let mut shop = Shop::open("consent").await;
    // Marketing only: the order's utility messages go, the cart reminder does not.
    shop.app_creates_order("o-marketing-off", "+33612345651").await;
    shop.app_creates_cart("c-marketing-off", "+33612345651").await;
    // Everything: nothing goes.
    shop.app_creates_order("o-all-off", "+33612345652").await;
    shop.deliver().await;
    consent(&shop, "+33612345651", ConsentChange::OptOut(OptOut::Marketing)).await;
    consent(&shop, "+33612345652", ConsentChange::OptOut(OptOut::All)).await;
    shop.advance(TimeDelta::minutes(61));
    let run = shop.dispatch("after the opt-outs").await;
    assert_eq!(run.sent, 1, "o-marketing-off's confirmation: {run:?}");
    assert_eq!(run.report.skipped, BTreeMap::from([("opted_out", 2)]), "{run:?}");
    let cart = shop.message(Kind::AbandonedCart, "c-marketing-off").await.unwrap();
    assert_eq!(
        (cart.status, cart.skip_reason.as_deref()),
        (MessageStatus::Skipped, Some("opted_out"))
    );

    // Back in: the old order's reminder stays off, a new order gets everything.
    shop.advance(TimeDelta::minutes(1));
    consent(&shop, "+33612345652", ConsentChange::OptIn).await;
    shop.advance(TimeDelta::minutes(1));
    shop.app_creates_order("o-after", "+33612345652").await;
    shop.deliver().await;
    shop.advance(TimeDelta::hours(23));
    let run = shop.dispatch("a day later").await;
    assert_eq!(
        run.report.skipped.get("opted_out_since"),
        Some(&1),
        "o-all-off's payment reminder: {run:?}"
    );
    let received = shop.received().await;
    assert!(received.contains_key(&("o-after".to_owned(), Kind::OrderConfirmation.to_string())));
    assert!(
        !received
            .keys()
            .any(|(subject, _)| subject == "o-all-off" || subject == "c-marketing-off")
    );
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn twilio_s_opt_out_refusal_is_recorded_and_stops_the_next_message() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(json!({"code": 21610, "message": "unsubscribed", "status": 400})),
        )
        .mount(&twilio)
        .await;
    let mut shop = Shop::with_twilio("twilio-opt-out", twilio).await;
    shop.app_creates_order("o-unsubscribed", "+33612345661").await;
    shop.deliver().await;
    shop.advance(TimeDelta::minutes(1));
    let run = shop.dispatch("confirmation").await;
    assert_eq!(run.report.failed_reasons.get("twilio_21610"), Some(&1), "{run:?}");
    let consents = DynamoConsents::new(shop.stack.client.clone(), &shop.stack.tables.consent);
    let stored = consents
        .get(&PhoneNumber::parse("+33612345661").unwrap())
        .await
        .unwrap();
    assert_eq!(stored.opt_out, Some(OptOut::All));
    shop.advance(TimeDelta::hours(24));
    let run = shop.dispatch("reminder").await;
    assert_eq!(
        (run.sent, run.report.skipped.get("opted_out")),
        (0, Some(&1)),
        "{run:?}"
    );
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn a_customer_who_opted_out_gets_no_review_request() {
    let mut shop = Shop::open("review-consent").await;
    for (order, phone) in [("o-reviewed-ok", "+33612345671"), ("o-review-off", "+33612345672")] {
        shop.app_creates_order(order, phone).await;
        shop.app_updates_order(
            order,
            &[
                ("status", "completed".into()),
                ("paymentStatus", "paid".into()),
                ("completedAt", text(shop.now())),
            ],
        )
        .await;
    }
    shop.deliver().await;
    consent(&shop, "+33612345672", ConsentChange::OptOut(OptOut::Marketing)).await;
    shop.advance(TimeDelta::days(8));
    let run = request_reviews::run(&shop.reviews, &json!({}), Deadline::unbounded(), "daily")
        .await
        .unwrap();
    assert_eq!(
        (run.sent, run.report.skipped.get("opted_out")),
        (1, Some(&1)),
        "{run:?}"
    );
    let orders = DynamoOrders::new(
        shop.stack.client.clone(),
        &shop.stack.tables.orders,
        &shop.stack.tables.reviews,
    );
    assert_eq!(
        orders.request_status("o-review-off").await.unwrap().as_deref(),
        Some("opted_out")
    );
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn a_reminder_due_at_22_00_goes_at_09_00_the_next_day_in_paris_across_the_dst_change() {
    let paris = jiff::tz::db().get("Europe/Paris").unwrap();
    let quiet = QuietHours::from_env(&backoffice::testing::env_of(&[]), paris).unwrap();
    // Friday 2026-10-23, 22:00 in Paris (UTC+2); the clocks go back on Sunday 25 at 03:00.
    let mut shop = Shop::build("quiet", accepting_twilio().await, quiet, utc("2026-10-23T20:00:00Z")).await;
    shop.app_creates_order("o-night", "+33612345681").await;
    shop.deliver().await;
    shop.advance(TimeDelta::minutes(1));
    assert_eq!(
        shop.dispatch("22:01").await.sent,
        1,
        "the confirmation is exempt: it goes at once"
    );
    // The payment reminder falls due on Saturday at 22:00 (UTC+2): it waits for Sunday 09:00 (UTC+1).
    let reminder = shop.message(Kind::PaymentReminder, "o-night").await.unwrap();
    // An hour into the quiet hours: a second after the opening.
    assert_eq!(reminder.due_at, utc("2026-10-25T08:00:01Z").timestamp());
    let until = |at: &str| utc(at) - shop.now();
    shop.advance(until("2026-10-24T20:01:00Z"));
    assert_eq!(shop.dispatch("saturday 22:01").await.total, 0);
    shop.advance(until("2026-10-25T07:59:00Z"));
    assert_eq!(shop.dispatch("sunday 08:59").await.total, 0);
    shop.advance(until("2026-10-25T08:00:30Z"));
    assert_eq!(shop.dispatch("sunday 09:00:30").await.sent, 1);
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn marketing_is_capped_across_kinds_delayed_when_it_can_wait_and_dropped_when_it_cannot() {
    let mut shop = Shop::open("caps").await;
    let customer = "+33612345691";
    // An order completed: its review request goes in the daily run a week later.
    shop.app_creates_order("o-capped", customer).await;
    shop.app_updates_order(
        "o-capped",
        &[
            ("status", "completed".into()),
            ("paymentStatus", "paid".into()),
            ("completedAt", text(shop.now())),
        ],
    )
    .await;
    shop.deliver().await;
    shop.advance(TimeDelta::minutes(1));
    shop.dispatch("confirmation").await;
    shop.advance(TimeDelta::days(8));
    let requested = request_reviews::run(&shop.reviews, &json!({}), Deadline::unbounded(), "daily")
        .await
        .unwrap();
    assert_eq!(requested.sent, 1);
    shop.deliver().await;
    // Six days later the customer leaves a cart: its reminder is a marketing message too.
    shop.advance(TimeDelta::days(6) + TimeDelta::hours(22));
    shop.app_creates_cart("c-capped", customer).await;
    shop.app_creates_cart("c-capped-2", customer).await;
    shop.deliver().await;
    shop.advance(TimeDelta::minutes(61));
    let run = shop.dispatch("cart reminders").await;
    // The first goes; the second is within a day of it and its cart expires before: dropped.
    assert_eq!((run.sent, run.report.skipped.get("capped")), (1, Some(&1)), "{run:?}");
    // The review reminder falls due an hour later: within a day of the cart reminder, it
    // waits (it may, up to a week) and goes a day after the cart reminder.
    shop.advance(TimeDelta::hours(1));
    let run = shop.dispatch("reminder due").await;
    assert_eq!((run.sent, run.report.held), (0, 1), "{run:?}");
    let reminder = shop.message(Kind::ReviewReminder, "o-capped").await.unwrap();
    assert_eq!(reminder.status, MessageStatus::Pending);
    shop.advance(TimeDelta::hours(23) + TimeDelta::minutes(1));
    let run = shop.dispatch("a day after the cart reminder").await;
    assert_eq!(run.sent, 1, "{run:?}");
    let received = shop.received().await;
    assert_eq!(
        received.get(&("o-capped".to_owned(), Kind::ReviewReminder.to_string())),
        Some(&1)
    );
    shop.stack.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// The owner's daily report: a known day of events through the real components (the
// streams and derive-schedule, send-messages, request-reviews, the webhook's replies and
// status callbacks), then the report's figures and its delivery once per channel.
// ---------------------------------------------------------------------------------------

const WEBHOOK_URL: &str = "https://reply.lambda-url.eu-west-3.on.aws/";

/// 08:00 in Paris on today's date: the whole test stays within one shop day, whatever
/// the hour it runs at (the streams stamp records with the real time, which is today too).
fn this_morning_in_paris() -> DateTime<Utc> {
    let today = jiff::Timestamp::now().to_zoned_datetime(paris()).date();
    let morning = today.at(8, 0, 0, 0).to_zoned_datetime(paris()).unwrap();
    DateTime::from_timestamp(morning.timestamp().as_second(), 0).unwrap()
}

fn webhook(shop: &Shop) -> ReplyDeps<DynamoReplies, RecordingAlerts> {
    let tables = &shop.stack.tables;
    let env = backoffice::testing::env_of(&[
        ("ORDERS_TABLE", tables.orders.as_str()),
        ("REVIEWS_TABLE", tables.reviews.as_str()),
        ("CONSENT_TABLE", tables.consent.as_str()),
    ]);
    ReplyDeps {
        store: DynamoReplies::new(
            shop.stack.client.clone(),
            &tables.orders,
            &tables.reviews,
            &tables.consent,
        )
        .with_deliveries(&tables.messages)
        .with_counters(shop.counters.clone()),
        alerts: RecordingAlerts::default(),
        validator: SignatureValidator::new(AuthToken::new("test-token")),
        clock: shop.clock.clone(),
        config: ReplyConfig::from_env(&env).unwrap(),
        forwarder: None,
    }
}

async fn post(deps: &ReplyDeps<DynamoReplies, RecordingAlerts>, url: &str, params: &[(&str, &str)]) -> u16 {
    let params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let request = signed_twilio_post(&deps.validator, url, &params).unwrap();
    respond(deps, &request).await.unwrap().status_code
}

async fn status_callback(deps: &ReplyDeps<DynamoReplies, RecordingAlerts>, key: &str, status: &str, code: &str) -> u16 {
    let url = format!("{WEBHOOK_URL}?message={}", key.replace('#', "%23"));
    let mut params = vec![
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("MessageStatus", status),
        ("AccountSid", TEST_ACCOUNT_SID),
    ];
    if !code.is_empty() {
        params.push(("ErrorCode", code));
    }
    post(deps, &url, &params).await
}

/// Records every report it is asked to deliver; fails WhatsApp while `whatsapp_down`, and
/// delivers it without an answer while `whatsapp_times_out`.
#[derive(Default)]
struct OwnerInbox {
    delivered: std::sync::Mutex<Vec<(&'static str, String)>>,
    whatsapp_down: std::sync::atomic::AtomicBool,
    whatsapp_times_out: std::sync::atomic::AtomicBool,
}

impl ReportSender for OwnerInbox {
    fn channels(&self) -> Vec<&'static str> {
        vec!["email", "whatsapp"]
    }

    async fn deliver(
        &self,
        channel: &'static str,
        report: &DailyReport,
        _: &ReportConfig,
    ) -> Result<(), DeliveryFailure> {
        use std::sync::atomic::Ordering::SeqCst;
        if channel == "whatsapp" && self.whatsapp_down.load(SeqCst) {
            return Err(DeliveryFailure::refused("Twilio refused the message (HTTP 400)"));
        }
        self.delivered.lock().unwrap().push((channel, report.day.clone()));
        if channel == "whatsapp" && self.whatsapp_times_out.load(SeqCst) {
            return Err(DeliveryFailure {
                reason: "Twilio did not answer in time".into(),
                may_have_been_delivered: true,
            });
        }
        Ok(())
    }
}

#[tokio::test]
async fn the_daily_report_holds_a_known_days_figures_and_goes_out_once_per_channel() {
    let mut shop = Shop::build(
        "report",
        accepting_twilio().await,
        QuietHours::never(paris()),
        this_morning_in_paris(),
    )
    .await;
    let day = shop.counters.day_of(shop.now());

    // Orders: a customer orders twice (new, then returning), another once; two more were
    // completed a week ago and are due their review request today.
    for (order, phone, total) in [
        ("o-1", "+33612345651", Some(2500)),
        ("o-2", "+33612345652", Some(1250)),
        ("o-3", "+33612345651", Some(1000)),
        ("o-r1", "+33612345653", None),
        ("o-r2", "+33612345654", None),
    ] {
        shop.app_creates_order_totalling(order, phone, total).await;
    }
    let week_ago = text(shop.now() - TimeDelta::days(8));
    for order in ["o-r1", "o-r2"] {
        shop.app_updates_order(
            order,
            &[
                ("status", "completed".into()),
                ("paymentStatus", "paid".into()),
                ("completedAt", week_ago.clone()),
            ],
        )
        .await;
    }
    // Carts: one left to expire, one ordered after its reminder, one ordered before it.
    for (cart, phone) in [
        ("c-left", "+33612345655"),
        ("c-back", "+33612345656"),
        ("c-quick", "+33612345657"),
    ] {
        shop.app_creates_cart(cart, phone).await;
    }
    shop.deliver().await;
    shop.advance(TimeDelta::minutes(1));
    shop.dispatch("confirmations").await;
    shop.app_orders_cart("c-quick", "o-1").await;
    shop.deliver().await;
    shop.advance(TimeDelta::minutes(61));
    let reminders = shop.dispatch("cart reminders").await;
    assert_eq!(reminders.report.by_kind[&Kind::AbandonedCart].sent, 2, "{reminders:?}");
    shop.app_orders_cart("c-back", "o-2").await;
    // c-left expires and TTL removes it (the stream's time is the emulator's own clock).
    shop.stack
        .client
        .update_item()
        .table_name(&shop.stack.tables.carts)
        .key("cartId", s("c-left"))
        .update_expression("SET expiresAt = :past")
        .expression_attribute_values(":past", AttributeValue::N((Utc::now().timestamp() - 60).to_string()))
        .send()
        .await
        .unwrap();
    shop.stack
        .client
        .delete_item()
        .table_name(&shop.stack.tables.carts)
        .key("cartId", s("c-left"))
        .send()
        .await
        .unwrap();
    shop.deliver().await;
    // A replayed batch counts nothing twice.
    shop.replay(false).await;

    // Review requests (no gap after the order confirmation, here), then the customers'
    // answers and Twilio's status callbacks.
    shop.reviews.config.caps.gap = TimeDelta::zero();
    let reviews = request_reviews::run(&shop.reviews, &json!({}), Deadline::unbounded(), "reviews")
        .await
        .unwrap();
    assert_eq!(reviews.sent, 2, "{reviews:?}");
    let deps = webhook(&shop);
    for (phone, sid, body) in [
        ("+33612345653", "SMreply1", "5 parfait"),
        ("+33612345654", "SMreply2", "2 trop long"),
        ("+33612345654", "SMreply2", "2 trop long"),
        ("+33612345658", "SMchat1", "bonjour"),
        ("+33612345658", "SMchat1", "bonjour"),
    ] {
        let from = format!("whatsapp:{phone}");
        let sid = backoffice::testing::message_sid(sid);
        let params = [
            ("From", from.as_str()),
            ("MessageSid", sid.as_str()),
            ("Body", body),
            ("To", "whatsapp:+14155238886"),
        ];
        assert_eq!(post(&deps, WEBHOOK_URL, &params).await, 200);
    }
    for (key, status, code) in [
        ("order_confirmation#o-1", "read", ""),
        ("order_confirmation#o-1", "delivered", ""),
        ("order_confirmation#o-1", "sent", ""),
        ("order_confirmation#o-2", "delivered", ""),
        ("order_confirmation#o-2", "delivered", ""),
        ("order_confirmation#o-3", "undelivered", "63024"),
        ("review_request#o-r1", "read", ""),
    ] {
        assert_eq!(status_callback(&deps, key, status, code).await, 200, "{key} {status}");
    }
    let delivered = shop.message(Kind::OrderConfirmation, "o-1").await.unwrap();
    assert_eq!(delivered.status, MessageStatus::Sent);

    let stored = shop.counters.day(&day).await.unwrap();
    let report = DailyReport::from_day(&stored);
    let confirmations = &report.messages[&Kind::OrderConfirmation];
    assert_eq!(
        (
            confirmations.sent,
            confirmations.delivered,
            confirmations.read,
            confirmations.failed
        ),
        (5, 2, 1, 1),
        "{report:?}"
    );
    let requests = &report.messages[&Kind::ReviewRequest];
    assert_eq!((requests.sent, requests.delivered, requests.read), (2, 1, 1));
    assert_eq!(report.messages[&Kind::AbandonedCart].sent, 2);
    assert_eq!((report.orders, report.revenue_cents), (5, 4750));
    assert_eq!((report.new_customers, report.returning_customers), (4, 1));
    assert_eq!((report.carts_abandoned, report.carts_recovered), (1, 1));
    assert_eq!((report.review_requests, report.reviews), (2, 2));
    assert_eq!(report.review_conversion, Some(1.0));
    assert_eq!(report.average_rating, Some(3.5));
    assert_eq!(report.negative_reviews.len(), 1);
    assert_eq!(report.negative_reviews[0].order_id, "o-r2");
    assert_eq!(report.received, 3, "a reply delivered twice is counted once");

    // The next morning: once per channel, whatever the retries and duplicate runs.
    let inbox = OwnerInbox::default();
    inbox.whatsapp_down.store(true, std::sync::atomic::Ordering::SeqCst);
    let morning = ReportDeps {
        counters: shop.counters.clone(),
        sender: inbox,
        clock: Arc::new(backoffice::runtime::clock::FixedClock(shop.now() + TimeDelta::days(1))),
        config: ReportConfig::from_env(&backoffice::testing::env_of(&[("SHOP_TIMEZONE", "Europe/Paris")])).unwrap(),
        channel_time: daily_report::DEFAULT_CHANNEL_TIME,
    };
    let failed = daily_report::run(&morning, &json!({})).await;
    assert!(failed.is_err(), "a channel failed: Lambda retries the run");
    morning
        .sender
        .whatsapp_down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let scheduled = json!({});
    let (a, b) = tokio::join!(
        daily_report::run(&morning, &scheduled),
        daily_report::run(&morning, &scheduled)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.day, day);
    assert_eq!(a.report, report, "the report is the counters' figures");
    let delivered = morning.sender.delivered.lock().unwrap().clone();
    assert_eq!(
        delivered,
        [("email", day.clone()), ("whatsapp", day.clone())],
        "each channel once: {a:?} {b:?}"
    );
    let again = daily_report::run(&morning, &json!({})).await.unwrap();
    assert!(again.sent.is_empty());
    assert_eq!(again.skipped.get("email"), Some(&"already_sent"));
    shop.stack.cleanup().await;
}

#[tokio::test]
async fn a_report_that_may_have_gone_out_is_not_sent_again() {
    let stack = Stack::from_env("report-timeout").await.unwrap();
    let inbox = OwnerInbox::default();
    inbox
        .whatsapp_times_out
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let morning = ReportDeps {
        counters: DailyCounters::new(stack.client.clone(), &stack.tables.stats, paris()),
        sender: inbox,
        clock: Arc::new(backoffice::runtime::clock::FixedClock(this_morning_in_paris())),
        config: ReportConfig::from_env(&backoffice::testing::env_of(&[("SHOP_TIMEZONE", "Europe/Paris")])).unwrap(),
        channel_time: daily_report::DEFAULT_CHANNEL_TIME,
    };

    let first = daily_report::run(&morning, &json!({})).await;
    assert!(first.is_err(), "the run says a channel failed");
    morning
        .sender
        .whatsapp_times_out
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let retry = daily_report::run(&morning, &json!({})).await.unwrap();

    assert_eq!(retry.skipped.get("whatsapp"), Some(&"already_sent"), "{retry:?}");
    let delivered = morning.sender.delivered.lock().unwrap().clone();
    let channels: Vec<_> = delivered.iter().map(|(channel, _)| *channel).collect();
    assert_eq!(channels, ["email", "whatsapp"], "each channel once");
    stack.cleanup().await;
}

#[tokio::test]
async fn a_report_run_out_of_time_claims_no_channel_and_its_retry_sends_them() {
    let stack = Stack::from_env("report-deadline").await.unwrap();
    let morning = ReportDeps {
        counters: DailyCounters::new(stack.client.clone(), &stack.tables.stats, paris()),
        sender: OwnerInbox::default(),
        clock: Arc::new(backoffice::runtime::clock::FixedClock(this_morning_in_paris())),
        config: ReportConfig::from_env(&backoffice::testing::env_of(&[("SHOP_TIMEZONE", "Europe/Paris")])).unwrap(),
        channel_time: daily_report::DEFAULT_CHANNEL_TIME,
    };

    let late = daily_report::run_until(&morning, &json!({}), Deadline::after(Duration::ZERO)).await;
    assert!(late.is_err(), "the run says the channels are left for the retry");
    assert!(morning.sender.delivered.lock().unwrap().is_empty());
    let retry = daily_report::run(&morning, &json!({})).await.unwrap();

    assert_eq!(
        retry.sent,
        ["email", "whatsapp"],
        "no claim kept the retry off a channel: {retry:?}"
    );
    stack.cleanup().await;
}

#[tokio::test]
async fn a_report_run_delayed_past_midnight_reports_the_day_it_was_scheduled_for() {
    let stack = Stack::from_env("report-late").await.unwrap();
    let morning = ReportDeps {
        counters: DailyCounters::new(stack.client.clone(), &stack.tables.stats, paris()),
        sender: OwnerInbox::default(),
        clock: Arc::new(backoffice::runtime::clock::FixedClock(this_morning_in_paris())),
        config: ReportConfig::from_env(&backoffice::testing::env_of(&[("SHOP_TIMEZONE", "Europe/Paris")])).unwrap(),
        channel_time: daily_report::DEFAULT_CHANNEL_TIME,
    };
    // Scheduled at 23:30 yesterday (shop time), run this morning (a retry, a late delivery).
    let scheduled = this_morning_in_paris() - TimeDelta::minutes(8 * 60 + 30);
    let event = json!({
        "version": "0", "id": "late", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": scheduled.to_rfc3339(), "region": "eu-west-3",
        "resources": [], "detail": {}
    });

    let response = daily_report::run(&morning, &event).await.unwrap();

    let scheduled_day = jiff::Timestamp::from_second(scheduled.timestamp())
        .unwrap()
        .to_zoned_datetime(paris())
        .date();
    assert_eq!(response.day, scheduled_day.yesterday().unwrap().to_string());
    assert_ne!(
        response.day,
        morning.counters.day_of(this_morning_in_paris() - TimeDelta::days(1))
    );
    stack.cleanup().await;
}

#[tokio::test]
async fn a_report_claim_whose_answer_was_lost_is_known_as_its_own() {
    let stack = Stack::from_env("report-lost-answer").await.unwrap();
    let lost = devstack::faults::LostAnswers::of("UpdateItem", 1);
    let counters = DailyCounters::new(lost.on(&stack.client), &stack.tables.stats, paris());
    let others = DailyCounters::new(stack.client.clone(), &stack.tables.stats, paris());
    let at = this_morning_in_paris();

    assert!(counters.claim_report("2026-12-02", "whatsapp", at).await.unwrap());
    assert_eq!(lost.left(), 0, "the answer was lost once");
    assert!(
        !others.claim_report("2026-12-02", "whatsapp", at).await.unwrap(),
        "another run at the same second does not take it"
    );
    stack.cleanup().await;
}

#[tokio::test]
async fn a_count_whose_answer_was_lost_is_never_added_twice() {
    use backoffice::report::counters::Counter;
    let stack = Stack::from_env("counters-lost-answer").await.unwrap();
    let lost = devstack::faults::LostAnswers::of("UpdateItem", 1);
    let counters = DailyCounters::new(lost.on(&stack.client), &stack.tables.stats, paris());
    let at = this_morning_in_paris();

    let maybe_counted = counters
        .add(at, &[(Counter::Sent(Kind::PaymentReminder), 3)], Some("o-1:1"))
        .await;
    counters
        .add(at, &[(Counter::Sent(Kind::PaymentReminder), 2)], None)
        .await
        .unwrap();

    assert_eq!(lost.left(), 0, "the first answer was lost");
    assert!(maybe_counted.is_err(), "the caller is told, and logs it");
    let day = counters.day(&counters.day_of(at)).await.unwrap();
    assert_eq!(
        day.get(Counter::Sent(Kind::PaymentReminder)),
        5,
        "written once, not sent again: {day:?}"
    );
    assert_eq!(day.negative_reviews.len(), 1);
    stack.cleanup().await;
}

#[tokio::test]
async fn a_review_request_found_at_twilio_is_settled_as_sent_and_its_reply_still_finds_the_order() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"sid": "SMlost000000000000000000000000000001", "status": "queued"}))
                .set_delay(Duration::from_secs(2)),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&twilio)
        .await;
    let mut shop = Shop::build(
        "review-reconcile",
        twilio,
        QuietHours::never(paris()),
        this_morning_in_paris(),
    )
    .await;
    shop.reviews.config.caps.gap = TimeDelta::zero();
    shop.app_creates_order("o-asked", "+33612345661").await;
    let week_ago = text(shop.now() - TimeDelta::days(8));
    shop.app_updates_order(
        "o-asked",
        &[
            ("status", "completed".into()),
            ("paymentStatus", "paid".into()),
            ("completedAt", week_ago),
        ],
    )
    .await;
    shop.deliver().await;
    let claimed_at = shop.now();
    let first = request_reviews::run(&shop.reviews, &json!({}), Deadline::unbounded(), "first")
        .await
        .unwrap();
    assert_eq!(first.report.unknown, 1, "{first:?}");
    let created = (claimed_at + TimeDelta::seconds(1)).to_rfc2822();
    twilio_lists(
        &shop.twilio,
        "+33612345661",
        json!([listed(
            "SMlost000000000000000000000000000001",
            "Ana, comment était la commande o-asked ?",
            &created
        )]),
    )
    .await;

    shop.advance(TimeDelta::minutes(31));
    let second = request_reviews::run(&shop.reviews, &json!({}), Deadline::unbounded(), "second")
        .await
        .unwrap();
    assert_eq!(second.report.reconciliation.found, 1, "{second:?}");
    assert_eq!((second.sent, second.report.awaiting_reconciliation), (0, 0));
    let posts = shop
        .twilio
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|request| request.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 1, "never sent twice");
    let day = shop.counters.day(&shop.counters.day_of(claimed_at)).await.unwrap();
    assert_eq!(
        day.get(backoffice::report::counters::Counter::Sent(Kind::ReviewRequest)),
        1,
        "counted once found, on the day it was sent: {day:?}"
    );

    let deps = webhook(&shop);
    let params = [
        ("From", "whatsapp:+33612345661"),
        ("MessageSid", "SM0000000000000000000000000000a5ed"),
        ("Body", "4 bien"),
        ("To", "whatsapp:+14155238886"),
    ];
    assert_eq!(post(&deps, WEBHOOK_URL, &params).await, 200);
    let review = deps.store.review_item("o-asked").await.unwrap();
    assert!(
        review.is_some(),
        "the reply found the order the reconciled request was about"
    );
    shop.stack.cleanup().await;
}

/// Sent messages are settled 25 to a request where the backend can (PartiQL), each under
/// its own claim: one whose claim is no longer this run's is refused alone. moto refuses
/// the batch, and they are settled one by one with the same answers.
#[tokio::test]
async fn sent_messages_are_settled_together_each_under_its_own_claim() {
    let mut shop = Shop::open("settle-all").await;
    for (order, phone) in [
        ("o-s1", "+33612345671"),
        ("o-s2", "+33612345672"),
        ("o-s3", "+33612345673"),
    ] {
        shop.app_creates_order(order, phone).await;
    }
    shop.deliver().await;
    let outbox = &shop.dispatcher.outbox;
    let mut settled = Vec::new();
    for (order, phone, run) in [
        ("o-s1", "+33612345671", "this-run"),
        ("o-s2", "+33612345672", "another-run"),
        ("o-s3", "+33612345673", "this-run"),
    ] {
        let message = confirmation_due(&shop, order, phone);
        let claim = Claim {
            claim_id: run.into(),
            claimed_at: shop.now(),
        };
        assert_eq!(outbox.claim(&message, &claim).await.unwrap(), ClaimOutcome::Claimed);
        settled.push(Settled {
            message,
            claim: Claim {
                claim_id: "this-run".into(),
                claimed_at: shop.now(),
            },
            settlement: Settlement::Sent {
                message_sid: format!("SM-{order}"),
                sent_at: shop.now(),
            },
        });
    }

    let answers = outbox.settle_all(&settled).await;

    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    assert!(answers[1].is_err(), "another run's claim is not settled by this one");
    let stored = |order| shop.message(Kind::OrderConfirmation, order);
    let first = stored("o-s1").await.unwrap();
    assert_eq!(
        (first.status, first.message_sid.as_deref()),
        (MessageStatus::Sent, Some("SM-o-s1"))
    );
    assert_eq!(stored("o-s2").await.unwrap().status, MessageStatus::Sending);
    assert_eq!(stored("o-s3").await.unwrap().status, MessageStatus::Sent);
    shop.stack.cleanup().await;
}

fn confirmation_due(shop: &Shop, order: &str, phone: &str) -> DueMessage {
    DueMessage {
        id: MessageId {
            kind: Kind::OrderConfirmation,
            subject_id: order.into(),
        },
        customer_phone: PhoneNumber::parse(phone).unwrap(),
        customer_name: None,
        due_at: shop.now(),
        send_before: None,
        since: shop.now() - TimeDelta::minutes(1),
    }
}

/// Claims go together, several to a transaction: a claim its subject refuses, or that
/// another run holds, is answered alone and does not take the others down with it; two
/// claims for one customer go in separate transactions, one after the other.
#[tokio::test]
async fn claims_made_together_are_answered_each() {
    let mut shop = Shop::open("claim-all").await;
    let orders = [
        ("o-c1", "+33612345661"),
        ("o-c2", "+33612345662"),
        ("o-c3", "+33612345663"),
        ("o-c4", "+33612345664"),
        ("o-c5", "+33612345661"),
    ];
    for (order, phone) in orders {
        shop.app_creates_order(order, phone).await;
    }
    shop.deliver().await;
    // Cancelled after its confirmation was scheduled (the stream has not said so yet), and
    // one claimed by another run.
    shop.app_updates_order("o-c2", &[("status", "cancelled".into())]).await;
    let counter = devstack::counter::RequestCounter::default();
    let outbox = &shop.outbox_on(&counter.count(&shop.stack.client));
    let other_run = Claim {
        claim_id: "another-run".into(),
        claimed_at: shop.now(),
    };
    let taken = confirmation_due(&shop, "o-c4", "+33612345664");
    assert_eq!(outbox.claim(&taken, &other_run).await.unwrap(), ClaimOutcome::Claimed);

    let messages: Vec<DueMessage> = orders
        .iter()
        .map(|(order, phone)| confirmation_due(&shop, order, phone))
        .collect();
    let this_run = Claim {
        claim_id: "this-run".into(),
        claimed_at: shop.now(),
    };
    let answers: Vec<ClaimOutcome> = outbox
        .claim_all(&messages, &this_run, Deadline::unbounded())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    assert_eq!(answers[0], ClaimOutcome::Claimed);
    assert!(matches!(answers[1], ClaimOutcome::Ineligible(_)), "{answers:?}");
    assert_eq!(answers[2], ClaimOutcome::Claimed);
    assert_eq!(answers[3], ClaimOutcome::TakenElsewhere);
    assert_eq!(
        answers[4],
        ClaimOutcome::Claimed,
        "the customer's second order is claimed too"
    );
    // Alone, the other run's claim; then {1, 2, 3, 4} cancelled by 2 and 4, {5, 3}, {1}.
    assert_eq!(counter.get("TransactWriteItems"), 4);
    let stored = |order| shop.message(Kind::OrderConfirmation, order);
    for order in ["o-c1", "o-c3", "o-c5"] {
        let message = stored(order).await.unwrap();
        assert_eq!(
            (message.status, message.claim_id.as_deref()),
            (MessageStatus::Sending, Some("this-run")),
            "{order}"
        );
    }
    assert_eq!(stored("o-c2").await.unwrap().status, MessageStatus::Pending);
    assert_eq!(stored("o-c4").await.unwrap().claim_id.as_deref(), Some("another-run"));
    shop.stack.cleanup().await;
}
