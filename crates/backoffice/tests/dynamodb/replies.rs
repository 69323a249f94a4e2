//! record-review-reply against a real DynamoDB API (embedded dynoxide by default, moto
//! with `AWS_ENDPOINT_URL_DYNAMODB`, AWS with `DYNAMODB_TARGET=aws`): the reply index,
//! the conditional writes, and the whole handler with signed webhook events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use backoffice::domain::phone::PhoneNumber;
use backoffice::jobs::record_review_reply::alerts::AlertError;
use backoffice::jobs::record_review_reply::dynamo::DynamoReplies;
use backoffice::jobs::record_review_reply::{
    FunctionUrlRequest, FunctionUrlResponse, NegativeReview, NegativeReviewAlerts, NewReview, RatingSource,
    ReplyConfig, ReplyDeps, ReplyStore, SignatureValidator, WriteOutcome, respond, texts, twiml,
};
use backoffice::jobs::request_reviews::dynamo::DynamoOrders;
use backoffice::jobs::request_reviews::{self, ReviewDeps, ReviewJobConfig};
use backoffice::report::counters::{Counter, DailyCounters};
use backoffice::runtime::clock::FixedClock;
use backoffice::runtime::job::Deadline;
use backoffice::testing::{env_of, message_sid};
use backoffice::twilio::{AuthToken, TwilioClient, TwilioConfig};
use chrono::{DateTime, TimeDelta, Utc};

use crate::utc;
use backoffice::testing::TEST_ACCOUNT_SID;
use devstack::seed::{put_review, put_sent_review_request};
use devstack::stack::Stack;
use serde_json::json;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "integration-token";
const URL: &str = "https://replies.lambda-url.eu-west-3.on.aws/";
const CUSTOMER: &str = "+33655500001";

fn now() -> DateTime<Utc> {
    utc("2026-11-24T10:00:00Z")
}

#[derive(Default)]
struct Alerts(Mutex<Vec<NegativeReview>>);

impl NegativeReviewAlerts for Alerts {
    async fn alert(&self, review: &NegativeReview) -> Result<(), AlertError> {
        self.0.lock().unwrap().push(review.clone());
        Ok(())
    }
}

struct Fixture {
    stack: Stack,
    orders: DynamoOrders,
    deps: ReplyDeps<DynamoReplies, Alerts>,
}

async fn fixture(label: &str) -> Fixture {
    let stack = Stack::from_env(label).await.unwrap();
    let orders = DynamoOrders::new(stack.client.clone(), &stack.tables.orders, &stack.tables.reviews);
    let env: HashMap<String, String> = env_of(&[
        ("ORDERS_TABLE", stack.tables.orders.as_str()),
        ("REVIEWS_TABLE", stack.tables.reviews.as_str()),
        ("CONSENT_TABLE", stack.tables.consent.as_str()),
    ]);
    let deps = ReplyDeps {
        store: DynamoReplies::new(
            stack.client.clone(),
            &stack.tables.orders,
            &stack.tables.reviews,
            &stack.tables.consent,
        ),
        alerts: Alerts::default(),
        validator: SignatureValidator::new(AuthToken::new(TOKEN)),
        clock: Arc::new(FixedClock(now())),
        config: ReplyConfig::from_env(&env).unwrap(),
        forwarder: None,
    };
    Fixture { stack, orders, deps }
}

/// A Function URL event for `URL`, signed as Twilio signs it.
fn signed(from: &str, sid: &str, body: &str) -> FunctionUrlRequest {
    let params: Vec<(String, String)> = [
        ("From", format!("whatsapp:{from}")),
        ("To", "whatsapp:+14155238886".to_owned()),
        ("MessageSid", message_sid(sid)),
        ("Body", body.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let signature = SignatureValidator::new(AuthToken::new(TOKEN)).sign(URL, &params);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    serde_json::from_value(json!({
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {"host": "replies.lambda-url.eu-west-3.on.aws", "x-twilio-signature": signature},
        "requestContext": {"domainName": "replies.lambda-url.eu-west-3.on.aws", "http": {"method": "POST"}},
        "body": body,
        "isBase64Encoded": false,
    }))
    .unwrap()
}

/// The stats table's key of the marker that counts the message `sid` once.
fn marker_key(sid: &str) -> AttributeValue {
    AttributeValue::S(format!("event#inbound#{}", message_sid(sid)))
}

/// The webhook's store on `client`, counting in the stats table; the counters it uses.
fn count_in_stats(f: &mut Fixture, client: &aws_sdk_dynamodb::Client) -> DailyCounters {
    let counters = DailyCounters::new(
        f.stack.client.clone(),
        &f.stack.tables.stats,
        jiff::tz::TimeZone::get("Europe/Paris").unwrap(),
    );
    f.deps.store = DynamoReplies::new(
        client.clone(),
        &f.stack.tables.orders,
        &f.stack.tables.reviews,
        &f.stack.tables.consent,
    )
    .with_counters(counters.clone());
    counters
}

async fn post(f: &Fixture, sid: &str, body: &str) -> FunctionUrlResponse {
    respond(&f.deps, &signed(CUSTOMER, sid, body)).await.unwrap()
}

async fn review_item(f: &Fixture, order_id: &str) -> Option<HashMap<String, AttributeValue>> {
    f.deps.store.review_item(order_id).await.unwrap()
}

fn attr(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(s)) => s.clone(),
        Some(AttributeValue::N(n)) => n.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

async fn sent_request(f: &Fixture, order_id: &str, phone: &str, days_ago: i64) {
    put_sent_review_request(&f.orders, order_id, phone, now() - TimeDelta::days(days_ago))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_signed_reply_is_recorded_on_the_order_it_answers() {
    let f = fixture("replies-record").await;
    sent_request(&f, "ord-1", CUSTOMER, 1).await;
    sent_request(&f, "ord-someone-else", "+33655500002", 1).await;

    let response = post(&f, "SM100", "4, pas mal").await;

    assert_eq!(response.status_code, 200);
    assert_eq!(response.body, twiml::message(texts::FR.thanks));
    let item = review_item(&f, "ord-1").await.expect("the review is written");
    assert_eq!(attr(&item, "rating"), "4");
    assert_eq!(attr(&item, "comment"), "pas mal");
    assert_eq!(attr(&item, "messageSid"), message_sid("SM100"));
    assert_eq!(attr(&item, "customerPhone"), CUSTOMER);
    assert_eq!(attr(&item, "source"), "text");
    assert_eq!(attr(&item, "createdAt"), "2026-11-24T10:00:00Z");
    assert!(review_item(&f, "ord-someone-else").await.is_none());
    f.stack.cleanup().await;
}

#[tokio::test]
async fn a_rating_message_replayed_for_a_newer_order_rates_nothing() {
    let f = fixture("replies-replayed-later").await;
    sent_request(&f, "ord-1", CUSTOMER, 3).await;
    post(&f, "SM110", "5").await;
    let already = post(&f, "SM111", "1 nul").await;
    assert_eq!(already.body, twiml::message(texts::FR.already_reviewed));

    sent_request(&f, "ord-2", CUSTOMER, 0).await;
    post(&f, "SM111", "1 nul").await;

    assert!(
        review_item(&f, "ord-2").await.is_none(),
        "the replay rated the newer order"
    );
    assert!(f.deps.alerts.0.lock().unwrap().is_empty());
    let phone = PhoneNumber::parse(CUSTOMER).unwrap();
    let consents = f.deps.store.consents();
    assert!(consents.knows_rating(&phone, &message_sid("SM111")).await.unwrap());
    assert!(
        consents.remember_rating(&phone, &message_sid("SM111")).await.unwrap(),
        "remembering again (a retry) is harmless"
    );
    let other = PhoneNumber::parse("+33655500002").unwrap();
    assert!(!consents.knows_rating(&other, &message_sid("SM111")).await.unwrap());
    post(&f, "SM112", "4").await;
    assert_eq!(attr(&review_item(&f, "ord-2").await.unwrap(), "rating"), "4");
    f.stack.cleanup().await;
}

#[tokio::test]
async fn the_index_gives_the_newest_requests_in_the_window_only() {
    let f = fixture("replies-window").await;
    sent_request(&f, "ord-old", CUSTOMER, 20).await;
    sent_request(&f, "ord-mid", CUSTOMER, 5).await;
    sent_request(&f, "ord-new", CUSTOMER, 1).await;
    let phone = PhoneNumber::parse(CUSTOMER).unwrap();

    let found = f
        .deps
        .store
        .requested_orders(&phone, now() - TimeDelta::days(14), 10)
        .await
        .unwrap();

    let ids: Vec<&str> = found.iter().map(|o| o.order_id.as_str()).collect();
    assert_eq!(ids, ["ord-new", "ord-mid"]);
    assert_eq!(found[0].requested_at, now() - TimeDelta::days(1));

    // Replies fill the newest first; then only the one outside the window is left.
    post(&f, "SM101", "5").await;
    post(&f, "SM102", "3").await;
    let third = post(&f, "SM103", "2").await;
    assert_eq!(third.body, twiml::message(texts::FR.already_reviewed));
    assert_eq!(attr(&review_item(&f, "ord-new").await.unwrap(), "rating"), "5");
    assert_eq!(attr(&review_item(&f, "ord-mid").await.unwrap(), "rating"), "3");
    assert!(review_item(&f, "ord-old").await.is_none());
    f.stack.cleanup().await;
}

#[tokio::test]
async fn no_request_in_the_window_means_no_answer_and_no_write() {
    let f = fixture("replies-none").await;
    sent_request(&f, "ord-old", CUSTOMER, 15).await;

    let response = post(&f, "SM104", "5").await;

    assert_eq!(response.body, twiml::no_reply());
    assert!(review_item(&f, "ord-old").await.is_none());
    f.stack.cleanup().await;
}

#[tokio::test]
async fn second_replies_retries_and_corrections() {
    let f = fixture("replies-second").await;
    sent_request(&f, "ord-1", CUSTOMER, 2).await;

    post(&f, "SM105", "5 parfait").await;
    // Twilio retries the same message: nothing changes.
    let retry = post(&f, "SM105", "5 parfait").await;
    assert_eq!(retry.body, twiml::message(texts::FR.thanks));
    // Another reply: refused politely.
    let second = post(&f, "SM106", "1").await;
    assert_eq!(second.body, twiml::message(texts::FR.already_reviewed));
    let item = review_item(&f, "ord-1").await.unwrap();
    assert_eq!(
        (attr(&item, "rating"), attr(&item, "messageSid")),
        ("5".into(), message_sid("SM105"))
    );

    // A correction replaces it and keeps what it replaced.
    post(&f, "SM107", "correction 2 froid").await;
    let item = review_item(&f, "ord-1").await.unwrap();
    assert_eq!(attr(&item, "rating"), "2");
    assert_eq!(attr(&item, "comment"), "froid");
    assert_eq!(attr(&item, "previousRating"), "5");
    assert_eq!(attr(&item, "previousComment"), "parfait");
    assert_eq!(attr(&item, "previousMessageSid"), message_sid("SM105"));
    assert_eq!(attr(&item, "correctedAt"), "2026-11-24T10:00:00Z");
    assert_eq!(attr(&item, "alertedAt"), "2026-11-24T10:00:00Z");
    assert_eq!(f.deps.alerts.0.lock().unwrap().len(), 1);

    // A late retry of the first message does not land on anything.
    post(&f, "SM105", "5 parfait").await;
    assert_eq!(attr(&review_item(&f, "ord-1").await.unwrap(), "rating"), "2");
    f.stack.cleanup().await;
}

#[tokio::test]
async fn a_negative_review_alerts_once_and_records_it() {
    let f = fixture("replies-alert").await;
    sent_request(&f, "ord-1", CUSTOMER, 1).await;

    post(&f, "SM108", "1 - arrivé froid").await;
    post(&f, "SM108", "1 - arrivé froid").await;

    let alerts = f.deps.alerts.0.lock().unwrap().clone();
    assert_eq!(alerts.len(), 1);
    assert_eq!((alerts[0].order_id.as_str(), alerts[0].rating), ("ord-1", 1));
    assert_eq!(alerts[0].comment, "arrivé froid");
    assert!(review_item(&f, "ord-1").await.unwrap().contains_key("alertedAt"));
    f.stack.cleanup().await;
}

#[tokio::test]
async fn a_negative_review_whose_write_lost_its_answer_still_alerts_once() {
    // The review's put, then the alert's claim: each written, its answer lost, the SDK's
    // second attempt refused by the first.
    for operation in ["PutItem", "UpdateItem"] {
        let mut f = fixture(&format!("replies-lost-{}", operation.to_lowercase())).await;
        sent_request(&f, "ord-1", CUSTOMER, 1).await;
        let lost = devstack::faults::LostAnswers::of(operation, 1);
        let losing = lost.on(&f.stack.client);
        let counters = count_in_stats(&mut f, &losing);

        post(&f, "SM301", "1 - arrivé froid").await;
        assert_eq!(lost.left(), 0, "{operation}: one answer lost");
        assert_eq!(
            f.deps.alerts.0.lock().unwrap().len(),
            1,
            "{operation}: the shop is alerted"
        );
        // Twilio's retry of the same message alerts no more.
        post(&f, "SM301", "1 - arrivé froid").await;
        assert_eq!(f.deps.alerts.0.lock().unwrap().len(), 1, "{operation}: once");
        assert_eq!(
            attr(&review_item(&f, "ord-1").await.unwrap(), "alertedMessageSid"),
            message_sid("SM301")
        );
        let day = counters.day(&counters.day_of(now())).await.unwrap();
        assert_eq!(
            (
                day.get(Counter::Received),
                day.get(Counter::Reviews),
                day.get(Counter::NegativeReviews)
            ),
            (1, 1, 1),
            "{operation}: the review counts once: {day:?}"
        );
        // Its marker outlives the reply window, in which a replay can still find the review.
        let marker = f
            .stack
            .client
            .get_item()
            .table_name(&f.stack.tables.stats)
            .key("statId", marker_key("SM301"))
            .send()
            .await
            .unwrap()
            .item
            .expect("the message's marker");
        let expires_at: i64 = attr(&marker, "expiresAt").parse().unwrap();
        assert!(
            expires_at >= (now() + TimeDelta::days(91)).timestamp(),
            "{operation}: {expires_at}"
        );
        f.stack.cleanup().await;
    }
}

#[tokio::test]
async fn a_replay_days_later_is_not_counted_again_even_once_its_marker_is_gone() {
    let mut f = fixture("replies-replay-counted-once").await;
    let client = f.stack.client.clone();
    let counters = count_in_stats(&mut f, &client);
    let days_ago = now() - TimeDelta::days(5);
    f.deps.clock = Arc::new(FixedClock(days_ago));
    put_sent_review_request(&f.orders, "ord-1", CUSTOMER, days_ago - TimeDelta::days(1))
        .await
        .unwrap();
    post(&f, "SM320", "1 froid").await;
    // A marker of an older release, kept 3 days, has expired since.
    f.stack
        .client
        .delete_item()
        .table_name(&f.stack.tables.stats)
        .key("statId", marker_key("SM320"))
        .send()
        .await
        .unwrap();

    f.deps.clock = Arc::new(FixedClock(now()));
    let replayed = post(&f, "SM320", "1 froid").await;

    assert_eq!(replayed.status_code, 200);
    let today = counters.day(&counters.day_of(now())).await.unwrap();
    assert!(today.counters.is_empty(), "{today:?}");
    let then = counters.day(&counters.day_of(days_ago)).await.unwrap();
    assert_eq!(then.get(Counter::Reviews), 1, "{then:?}");
    f.stack.cleanup().await;
}

#[tokio::test]
async fn a_consent_keyword_delivered_again_never_undoes_a_later_choice() {
    use backoffice::domain::consent::OptOut;
    use backoffice::domain::phone::PhoneNumber;
    let f = fixture("replies-consent-replay").await;
    let consents = backoffice::messages::consent::DynamoConsents::new(f.stack.client.clone(), &f.stack.tables.consent);
    let customer = PhoneNumber::parse(CUSTOMER).unwrap();

    post(&f, "SM501", "START").await;
    post(&f, "SM502", "STOP").await;
    // The START again, as a late Twilio retry or a replayed signed request delivers it.
    post(&f, "SM501", "START").await;
    assert_eq!(consents.get(&customer).await.unwrap().opt_out, Some(OptOut::All));

    // A new START is a new choice.
    post(&f, "SM503", "START").await;
    assert_eq!(consents.get(&customer).await.unwrap().opt_out, None);
    post(&f, "SM502", "STOP").await;
    assert_eq!(consents.get(&customer).await.unwrap().opt_out, None);
    f.stack.cleanup().await;
}

#[tokio::test]
async fn a_consent_change_whose_answer_was_lost_is_known_as_recorded_and_a_replay_is_not() {
    use backoffice::domain::consent::{ConsentChange, ConsentSource, OptOut};
    let f = fixture("replies-consent-lost").await;
    let lost = devstack::faults::LostAnswers::of("UpdateItem", 1);
    let consents =
        backoffice::messages::consent::DynamoConsents::new(lost.on(&f.stack.client), &f.stack.tables.consent);
    let customer = PhoneNumber::parse(CUSTOMER).unwrap();
    let stop = ConsentChange::OptOut(OptOut::All);

    let first = consents
        .record(&customer, stop, ConsentSource::Keyword, now(), Some("SM601"))
        .await;
    assert_eq!(lost.left(), 0, "the answer was lost once");
    assert!(first.unwrap(), "the SDK's retry knows the write as its own");
    let replay = consents
        .record(&customer, stop, ConsentSource::Keyword, now(), Some("SM601"))
        .await;
    assert!(!replay.unwrap(), "the same message delivered again changes nothing");
    f.stack.cleanup().await;
}

#[tokio::test]
async fn the_conditional_put_tells_a_retry_from_another_reply() {
    let f = fixture("replies-put").await;
    let review = |sid: &str| NewReview {
        order_id: "ord-1".into(),
        rating: 4,
        comment: String::new(),
        created_at: now(),
        message_sid: sid.into(),
        customer_phone: PhoneNumber::parse(CUSTOMER).unwrap(),
        source: RatingSource::Button,
    };
    let store = &f.deps.store;
    assert_eq!(store.put_review(&review("SM1")).await.unwrap(), WriteOutcome::Written);
    assert_eq!(
        store.put_review(&review("SM1")).await.unwrap(),
        WriteOutcome::AlreadyRecorded
    );
    assert_eq!(store.put_review(&review("SM2")).await.unwrap(), WriteOutcome::Conflict);
    // An empty comment is stored as an empty string.
    assert_eq!(attr(&review_item(&f, "ord-1").await.unwrap(), "comment"), "");

    // A review written by someone else (no messageSid) is never overwritten by a reply.
    put_review(&f.stack.client, &f.stack.tables.reviews, "ord-2", 5)
        .await
        .unwrap();
    let mut other = review("SM3");
    other.order_id = "ord-2".into();
    assert_eq!(store.put_review(&other).await.unwrap(), WriteOutcome::Conflict);
    f.stack.cleanup().await;
}

/// The review job sends a request through a Twilio stand-in; the customer's signed
/// reply then lands on that order.
#[tokio::test]
async fn a_reply_to_a_request_sent_by_the_review_job_is_recorded() {
    let f = fixture("replies-flow").await;
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/2010-04-01/Accounts/AC[0-9a-f]{32}/Messages\.json$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM-request-1", "status": "queued"})))
        .mount(&twilio)
        .await;
    let env: HashMap<String, String> = env_of(&[
        ("TWILIO_ACCOUNT_SID", TEST_ACCOUNT_SID),
        ("TWILIO_AUTH_TOKEN", TOKEN),
        ("TWILIO_API_BASE_URL", &twilio.uri()),
        ("TWILIO_WHATSAPP_FROM", "+14155238886"),
        ("ORDERS_TABLE", &f.stack.tables.orders),
        ("REVIEWS_TABLE", &f.stack.tables.reviews),
        ("CONSENT_TABLE", &f.stack.tables.consent),
    ]);
    devstack::seed::put_completed_order(&f.orders, "ord-flow", CUSTOMER, Some("Ana"), now() - TimeDelta::days(7))
        .await
        .unwrap();
    let job = ReviewDeps {
        store: f.orders.clone(),
        messenger: TwilioClient::new(TwilioConfig::from_env(&env).unwrap()).unwrap(),
        clock: Arc::new(FixedClock(now() - TimeDelta::hours(2))),
        config: ReviewJobConfig::from_env(&env).unwrap(),
    };
    let sent = request_reviews::run(&job, &json!({}), Deadline::after(Duration::from_secs(60)), "flow")
        .await
        .unwrap();
    assert_eq!(sent.sent, 1);

    let response = post(&f, "SM-reply-1", "⭐⭐⭐⭐⭐ Merci !").await;

    assert_eq!(response.status_code, 200);
    let item = review_item(&f, "ord-flow").await.unwrap();
    assert_eq!(attr(&item, "rating"), "5");
    assert_eq!(attr(&item, "comment"), "Merci !");
    f.stack.cleanup().await;
}

/// Every MessageSid a review has seen is remembered (`messageSids`), and the alert claim
/// holds one alert per order per cooldown, on the real conditional writes.
#[tokio::test]
async fn late_retries_never_rewrite_and_alerts_keep_their_cooldown() {
    let f = fixture("replies-cooldown").await;
    sent_request(&f, "ord-1", CUSTOMER, 1).await;
    for (sid, body) in [
        ("SM201", "5"),
        ("SM202", "correction 1"),
        ("SM203", "correction 4"),
        ("SM204", "correction 5"),
    ] {
        assert_eq!(post(&f, sid, body).await.status_code, 200);
    }
    // Twilio retries the second message late.
    post(&f, "SM202", "correction 1").await;

    let item = review_item(&f, "ord-1").await.unwrap();
    assert_eq!(
        (attr(&item, "rating"), attr(&item, "messageSid")),
        ("5".into(), message_sid("SM204"))
    );
    let Some(AttributeValue::Ss(sids)) = item.get("messageSids") else {
        panic!("messageSids: {:?}", item.get("messageSids"))
    };
    let mut sids = sids.clone();
    sids.sort();
    let mut expected = ["SM201", "SM202", "SM203", "SM204"].map(message_sid);
    expected.sort();
    assert_eq!(sids, expected);
    assert_eq!(f.deps.alerts.0.lock().unwrap().len(), 1, "one alert, for SM202");

    // Another negative correction within the cooldown: recorded, not alerted.
    post(&f, "SM205", "correction 2").await;
    assert_eq!(attr(&review_item(&f, "ord-1").await.unwrap(), "rating"), "2");
    assert_eq!(f.deps.alerts.0.lock().unwrap().len(), 1);

    // The claim itself, as the clock moves (cooldown 24 h; the last alert at now()).
    let store = &f.deps.store;
    let at = |hours| now() + TimeDelta::hours(hours);
    assert!(
        !store
            .claim_alert("ord-1", &message_sid("SM205"), at(23), at(-1))
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_alert("ord-1", &message_sid("SM205"), at(25), at(1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_alert("ord-1", &message_sid("SM205"), at(50), at(26))
            .await
            .unwrap(),
        "never twice for one message"
    );
    assert!(
        !store
            .claim_alert("ord-1", &message_sid("SM204"), at(60), at(36))
            .await
            .unwrap(),
        "only for the message the review holds"
    );
    store
        .release_alert("ord-1", &message_sid("SM205"), at(25))
        .await
        .unwrap();
    let released = review_item(&f, "ord-1").await.unwrap();
    assert!(!released.contains_key("alertedAt") && !released.contains_key("alertedMessageSid"));
    f.stack.cleanup().await;
}
