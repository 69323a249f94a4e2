//! request-reviews against a real DynamoDB API (embedded dynoxide by default, moto with
//! `AWS_ENDPOINT_URL_DYNAMODB`, AWS with `DYNAMODB_TARGET=aws`) and the real Twilio
//! client talking HTTP to a wiremock stand-in that plays Twilio's answers and faults.

use std::sync::Arc;
use std::time::Duration;

use backoffice::jobs::request_reviews::dynamo::DynamoOrders;
use backoffice::jobs::request_reviews::store::{ClaimOutcome, ReviewRequestStore};
use backoffice::jobs::request_reviews::{ReviewDeps, ReviewJobConfig, ReviewResponse, run};
use backoffice::messages::caps::Caps;
use backoffice::messages::quiet::QuietHours;
use backoffice::runtime::clock::FixedClock;
use backoffice::runtime::job::Deadline;
use backoffice::twilio::TwilioClient;
use chrono::{DateTime, TimeDelta, Utc};

use crate::utc;
use backoffice::testing::twilio_client;
use devstack::faults::LostAnswers;
use devstack::seed::{put_completed_order, put_raw_order, put_review};
use devstack::stack::Stack;
use serde_json::json;
use wiremock::matchers::{body_string_contains, method, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn twilio_for(server: &MockServer) -> TwilioClient {
    twilio_client(
        &server.uri(),
        "test-token",
        &[
            ("TWILIO_WHATSAPP_FROM", "+14155238886"),
            ("REVIEW_TEMPLATE_SID", "HX0123456789abcdef0123456789abcdef"),
            ("TWILIO_TIMEOUT_MS", "500"),
            ("TWILIO_MAX_MPS", "200"),
        ],
    )
}

fn created(to: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({"sid": format!("SM{:0>32}", to.len()), "status": "queued"}))
}

/// Twilio answering 201 to everyone.
async fn accepting_twilio() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/2010-04-01/Accounts/AC[0-9a-f]{32}/Messages\.json$"))
        .respond_with(created("x"))
        .mount(&server)
        .await;
    server
}

/// The `To` numbers of every message Twilio received.
async fn recipients(server: &MockServer) -> Vec<String> {
    let requests: Vec<Request> = server.received_requests().await.unwrap_or_default();
    requests
        .iter()
        .filter_map(|r| {
            url::form_urlencoded::parse(&r.body)
                .find(|(k, _)| k == "To")
                .map(|(_, v)| v.into_owned())
        })
        .collect()
}

struct Fixture {
    stack: Stack,
    orders: DynamoOrders,
}

async fn fixture(label: &str) -> Fixture {
    let stack = Stack::from_env(label).await.unwrap();
    let orders = DynamoOrders::new(stack.client.clone(), &stack.tables.orders, &stack.tables.reviews);
    Fixture { stack, orders }
}

fn deps(f: &Fixture, twilio: TwilioClient, now: DateTime<Utc>) -> ReviewDeps<DynamoOrders, TwilioClient> {
    ReviewDeps {
        store: f.orders.clone(),
        messenger: twilio,
        clock: Arc::new(FixedClock(now)),
        config: ReviewJobConfig {
            orders_table: f.stack.tables.orders.clone(),
            reviews_table: f.stack.tables.reviews.clone(),
            consent_table: f.stack.tables.consent.clone(),
            shop_timezone: jiff::tz::TimeZone::get("Europe/Paris").unwrap(),
            delay_days: 7,
            max_age_days: 30,
            run_hour: 10,
            page_size: 4,
            concurrency: 8,
            stop_margin: Duration::ZERO,
            stale_claim_after: Duration::from_secs(20 * 60),
            quiet: QuietHours::never(jiff::tz::TimeZone::UTC),
            caps: Caps::default(),
        },
    }
}

async fn run_job(deps: &ReviewDeps<DynamoOrders, TwilioClient>, run_id: &str) -> ReviewResponse {
    run(deps, &json!({}), Deadline::unbounded(), run_id).await.unwrap()
}

fn phone(i: usize) -> String {
    format!("+3364{i:07}")
}

const NOW: &str = "2026-11-24T09:00:00Z";

#[tokio::test]
async fn a_reconciliation_whose_answer_was_lost_is_known_as_its_own() {
    use backoffice::messages::reconcile::Resolution;
    let f = fixture("reviews-resolve-lost-answer").await;
    let now = utc(NOW);
    put_completed_order(&f.orders, "timeout", &phone(1), None, now - TimeDelta::days(7))
        .await
        .unwrap();
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created("t").set_delay(Duration::from_secs(2)))
        .mount(&twilio)
        .await;
    let parked_run = run_job(&deps(&f, twilio_for(&twilio), now), "run-1").await;
    assert_eq!(parked_run.report.unknown, 1, "{parked_run:?}");
    let parked = f.orders.parked().await.unwrap();
    let lost = LostAnswers::of("UpdateItem", 1);
    let losing = DynamoOrders::new(
        lost.on(&f.stack.client),
        &f.stack.tables.orders,
        &f.stack.tables.reviews,
    );
    let requeue = Resolution::Requeue {
        reason: "Twilio never had it".into(),
    };

    assert!(losing.resolve(&parked[0], &requeue).await.unwrap(), "its own retry");
    assert_eq!(lost.left(), 0, "the answer was lost once");
    assert!(
        !f.orders.resolve(&parked[0], &requeue).await.unwrap(),
        "another run's resolution of the same request"
    );
    assert_eq!(
        f.orders.request_status("timeout").await.unwrap().as_deref(),
        Some("pending")
    );
    f.stack.cleanup().await;
}

#[tokio::test]
async fn due_orders_get_one_message_and_the_others_are_skipped_with_reasons() {
    let f = fixture("reviews-mix").await;
    let now = utc(NOW);
    let ago = |days: i64| now - TimeDelta::days(days);
    // Due today, and two from days a failed run missed: all are caught up.
    for (i, days) in [(1, 7), (2, 8), (3, 9)] {
        put_completed_order(&f.orders, &format!("due-{days}"), &phone(i), Some("Ana"), ago(days))
            .await
            .unwrap();
    }
    put_completed_order(&f.orders, "not-yet", &phone(4), None, ago(6))
        .await
        .unwrap();
    put_completed_order(&f.orders, "too-old", &phone(5), None, ago(31))
        .await
        .unwrap();
    put_completed_order(&f.orders, "reviewed", &phone(6), None, ago(8))
        .await
        .unwrap();
    put_review(&f.stack.client, &f.stack.tables.reviews, "reviewed", 4)
        .await
        .unwrap();
    let table = &f.stack.tables.orders;
    let completed = ago(8).to_rfc3339();
    let raw = |id: &'static str, attrs: Vec<(&'static str, String)>| {
        let attrs: Vec<(&str, String)> = attrs;
        let client = f.stack.client.clone();
        async move {
            let pairs: Vec<(&str, &str)> = attrs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            put_raw_order(&client, table, id, ago(8), &pairs).await.unwrap();
        }
    };
    raw(
        "no-phone",
        vec![("status", "completed".into()), ("completedAt", completed.clone())],
    )
    .await;
    raw(
        "bad-phone",
        vec![
            ("status", "completed".into()),
            ("customerPhone", "0612".into()),
            ("completedAt", completed.clone()),
        ],
    )
    .await;
    raw(
        "no-completion",
        vec![("status", "completed".into()), ("customerPhone", phone(7))],
    )
    .await;
    raw(
        "cancelled",
        vec![
            ("status", "cancelled".into()),
            ("customerPhone", phone(8)),
            ("completedAt", completed.clone()),
        ],
    )
    .await;
    let twilio = accepting_twilio().await;
    let deps = deps(&f, twilio_for(&twilio), now);

    let response = run_job(&deps, "run-1").await;

    assert!(response.success);
    assert_eq!(
        (response.sent, response.failed, response.total),
        (3, 0, 9),
        "not-yet is not counted"
    );
    let mut to = recipients(&twilio).await;
    to.sort();
    assert_eq!(
        to,
        vec![
            format!("whatsapp:{}", phone(1)),
            format!("whatsapp:{}", phone(2)),
            format!("whatsapp:{}", phone(3))
        ]
    );
    let skipped = &response.report.skipped;
    for reason in [
        "too_old",
        "has_review",
        "missing_phone",
        "invalid_phone",
        "missing_completed_at",
        "not_completed",
    ] {
        assert_eq!(skipped.get(reason), Some(&1), "{reason}: {skipped:?}");
    }
    assert_eq!(f.orders.request_status("due-7").await.unwrap().as_deref(), Some("sent"));
    assert_eq!(
        f.orders.request_status("not-yet").await.unwrap().as_deref(),
        Some("pending")
    );
    assert_eq!(
        f.orders.request_status("too-old").await.unwrap().as_deref(),
        Some("expired")
    );
    assert_eq!(
        f.orders.request_status("bad-phone").await.unwrap().as_deref(),
        Some("invalid")
    );
    let sent = f.orders.get_item("due-7").await.unwrap().unwrap();
    assert!(sent.contains_key("reviewMessageSid") && sent.contains_key("reviewRequestedAt"));
    assert!(
        !sent.contains_key("reviewPendingShard"),
        "a settled order leaves the index"
    );

    let again = run_job(&deps, "run-2").await;
    assert_eq!(
        (again.sent, again.total),
        (0, 0),
        "a second run the same day sends nothing"
    );
    assert_eq!(recipients(&twilio).await.len(), 3);
    f.stack.cleanup().await;
}

/// The claim is a conditional UpdateItem: DynamoDB checks and writes atomically, so of two
/// runs only one can claim an order. (The moto server handles requests on threads without
/// a lock around the condition check and the write, so there two claims can both pass;
/// the test script sets `DYNAMODB_EMULATOR=moto` there, and this race is not run. It runs
/// on dynoxide, whose writes are SQLite transactions, and on real DynamoDB.)
#[tokio::test]
async fn two_runs_at_once_send_exactly_one_message_per_order() {
    if devstack::stack::emulator_is_moto() {
        eprintln!("moto's conditional writes are not atomic under concurrent requests; race not run on this target");
        return;
    }
    let f = fixture("reviews-race").await;
    let now = utc(NOW);
    for i in 0..30 {
        put_completed_order(
            &f.orders,
            &format!("order-{i:02}"),
            &phone(i),
            None,
            now - TimeDelta::days(7 + (i as i64 % 4)),
        )
        .await
        .unwrap();
    }
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created("x").set_delay(Duration::from_millis(20)))
        .mount(&twilio)
        .await;
    let (first, second) = (deps(&f, twilio_for(&twilio), now), deps(&f, twilio_for(&twilio), now));

    let (a, b) = tokio::join!(run_job(&first, "run-a"), run_job(&second, "run-b"));

    assert_eq!(a.sent + b.sent, 30);
    let to = recipients(&twilio).await;
    assert_eq!(to.len(), 30);
    let unique: std::collections::HashSet<_> = to.iter().collect();
    assert_eq!(unique.len(), 30, "no customer messaged twice");
    f.stack.cleanup().await;
}

#[tokio::test]
async fn the_due_day_follows_the_shops_calendar_across_dst() {
    let f = fixture("reviews-dst").await;
    // 25 October 2026, 10:00 in Paris (09:00 UTC), the day clocks went back.
    let run_at = utc("2026-10-25T09:00:00Z");
    put_completed_order(
        &f.orders,
        "late-on-the-18th",
        &phone(1),
        None,
        utc("2026-10-18T21:30:00Z"),
    )
    .await
    .unwrap();
    put_completed_order(
        &f.orders,
        "early-on-the-19th",
        &phone(2),
        None,
        utc("2026-10-18T22:30:00Z"),
    )
    .await
    .unwrap();
    let twilio = accepting_twilio().await;
    let deps = deps(&f, twilio_for(&twilio), run_at);

    let response = run_job(&deps, "run-1").await;

    assert_eq!(response.sent, 1);
    assert_eq!(
        f.orders.request_status("late-on-the-18th").await.unwrap().as_deref(),
        Some("sent")
    );
    assert_eq!(
        f.orders.request_status("early-on-the-19th").await.unwrap().as_deref(),
        Some("pending")
    );
    f.stack.cleanup().await;
}

async fn answer_for(server: &MockServer, to: &str, response: ResponseTemplate, times: Option<u64>) {
    let encoded = format!("To=whatsapp%3A{}", to.replace('+', "%2B"));
    let mock = Mock::given(method("POST"))
        .and(body_string_contains(encoded))
        .respond_with(response);
    let mock = match times {
        Some(n) => mock.up_to_n_times(n),
        None => mock,
    };
    mock.with_priority(1).mount(server).await;
}

#[tokio::test]
async fn twilio_faults_are_counted_as_they_happened() {
    let f = fixture("reviews-faults").await;
    let now = utc(NOW);
    let cases = [
        "ok",
        "rate-limited",
        "server-error",
        "timeout",
        "invalid-number",
        "unsubscribed",
    ];
    for (i, id) in cases.iter().enumerate() {
        put_completed_order(&f.orders, id, &phone(i), None, now - TimeDelta::days(7))
            .await
            .unwrap();
    }
    let twilio = MockServer::start().await;
    answer_for(
        &twilio,
        &phone(1),
        ResponseTemplate::new(429).insert_header("Retry-After", "1"),
        Some(1),
    )
    .await;
    answer_for(
        &twilio,
        &phone(2),
        ResponseTemplate::new(500)
            .set_body_json(json!({"code": 20500, "message": "Internal Server Error", "status": 500})),
        None,
    )
    .await;
    answer_for(&twilio, &phone(3), created("t").set_delay(Duration::from_secs(2)), None).await;
    let refusal = |code: u32| {
        ResponseTemplate::new(400).set_body_json(json!({"code": code, "message": "refused", "status": 400}))
    };
    answer_for(&twilio, &phone(4), refusal(21211), None).await;
    answer_for(&twilio, &phone(5), refusal(21610), None).await;
    Mock::given(method("POST"))
        .respond_with(created("ok"))
        .with_priority(5)
        .mount(&twilio)
        .await;
    let deps = deps(&f, twilio_for(&twilio), now);

    let response = run_job(&deps, "run-1").await;

    assert_eq!(response.sent, 2, "ok, and rate-limited after Retry-After");
    assert_eq!(response.failed, 2);
    assert_eq!(response.report.failed_reasons.get("twilio_21211"), Some(&1));
    assert_eq!(response.report.failed_reasons.get("twilio_21610"), Some(&1));
    assert_eq!(response.report.released, 1, "500 after every retry: back in line");
    assert_eq!(response.report.unknown, 1, "timeout: may have been sent");
    assert_eq!(response.report.awaiting_reconciliation, 1);
    assert_eq!(response.total, 6);
    let status = |id| f.orders.request_status(id);
    assert_eq!(status("server-error").await.unwrap().as_deref(), Some("pending"));
    assert_eq!(status("timeout").await.unwrap().as_deref(), Some("unknown"));
    assert_eq!(status("unsubscribed").await.unwrap().as_deref(), Some("failed"));
    let to = recipients(&twilio).await;
    assert_eq!(
        to.iter().filter(|t| t.ends_with(&phone(3))).count(),
        1,
        "a timed-out send is never retried"
    );
    assert_eq!(
        to.iter().filter(|t| t.ends_with(&phone(2))).count(),
        3,
        "a 500 is retried up to the policy"
    );
    f.stack.cleanup().await;
}

#[tokio::test]
async fn half_the_sends_failing_leaves_half_released_for_the_next_run() {
    let f = fixture("reviews-half").await;
    let now = utc(NOW);
    let twilio = MockServer::start().await;
    for i in 0..20 {
        put_completed_order(
            &f.orders,
            &format!("order-{i:02}"),
            &phone(i),
            None,
            now - TimeDelta::days(7),
        )
        .await
        .unwrap();
        if i % 2 == 1 {
            // Twilio stays down for the odd ones through every retry of this run.
            answer_for(&twilio, &phone(i), ResponseTemplate::new(503), Some(3)).await;
        }
    }
    Mock::given(method("POST"))
        .respond_with(created("ok"))
        .with_priority(5)
        .mount(&twilio)
        .await;
    let deps = deps(&f, twilio_for(&twilio), now);

    let first = run_job(&deps, "run-1").await;
    assert_eq!((first.sent, first.report.released, first.total), (10, 10, 20));

    // The next run (Twilio is back) sends exactly the released ten.
    let second = run_job(&deps, "run-2").await;
    assert_eq!((second.sent, second.report.released), (10, 0));
    let to = recipients(&twilio).await;
    let unique: std::collections::HashSet<_> = to.iter().collect();
    assert_eq!(unique.len(), 20);
    f.stack.cleanup().await;
}

#[tokio::test]
async fn a_claim_left_by_a_dead_run_is_reported_and_not_resent() {
    let f = fixture("reviews-orphan").await;
    let now = utc(NOW);
    put_completed_order(&f.orders, "orphan", &phone(1), None, now - TimeDelta::days(7))
        .await
        .unwrap();
    let claim = backoffice::jobs::request_reviews::store::Claim {
        claim_id: "dead-run".into(),
        claimed_at: now - TimeDelta::hours(1),
    };
    f.orders.claim("orphan", &claim).await.unwrap();
    let twilio = accepting_twilio().await;
    let deps = deps(&f, twilio_for(&twilio), now);

    let response = run_job(&deps, "run-1").await;

    assert_eq!(response.report.stale_claims_parked, 1);
    assert_eq!(response.report.awaiting_reconciliation, 1);
    assert_eq!(
        f.orders.request_status("orphan").await.unwrap().as_deref(),
        Some("unknown")
    );
    assert!(recipients(&twilio).await.is_empty());
    f.stack.cleanup().await;
}

#[tokio::test]
async fn a_claim_whose_answer_was_lost_is_known_as_its_own_and_no_other_claim_is() {
    let f = fixture("reviews-lost-answer").await;
    let now = utc(NOW);
    put_completed_order(&f.orders, "lost", &phone(1), None, now - TimeDelta::days(7))
        .await
        .unwrap();
    let lost = LostAnswers::of("UpdateItem", 1);
    let orders = DynamoOrders::new(
        lost.on(&f.stack.client),
        &f.stack.tables.orders,
        &f.stack.tables.reviews,
    );
    let claim = backoffice::jobs::request_reviews::store::Claim {
        claim_id: "run-1/0001".into(),
        claimed_at: now,
    };

    // The first attempt is written, its answer lost; the SDK's second attempt meets it.
    assert_eq!(orders.claim("lost", &claim).await.unwrap(), ClaimOutcome::Claimed);
    assert_eq!(lost.left(), 0, "the answer was lost once");

    // Any other claim, a later retry of the same run included, finds the order taken.
    for other in [
        backoffice::jobs::request_reviews::store::Claim {
            claim_id: "run-1/0002".into(),
            claimed_at: now,
        },
        backoffice::jobs::request_reviews::store::Claim {
            claim_id: "run-1/0001".into(),
            claimed_at: now + TimeDelta::minutes(1),
        },
    ] {
        assert_eq!(
            f.orders.claim("lost", &other).await.unwrap(),
            ClaimOutcome::TakenElsewhere
        );
    }
    f.stack.cleanup().await;
}

#[tokio::test]
async fn a_release_whose_answer_was_lost_is_done_and_puts_the_order_back_in_line() {
    use backoffice::jobs::request_reviews::store::{Claim, Settlement};
    let f = fixture("reviews-lost-release").await;
    let now = utc(NOW);
    put_completed_order(&f.orders, "released", &phone(2), None, now - TimeDelta::days(7))
        .await
        .unwrap();
    let claim = Claim {
        claim_id: "run-1/0003".into(),
        claimed_at: now,
    };
    assert_eq!(f.orders.claim("released", &claim).await.unwrap(), ClaimOutcome::Claimed);
    let lost = LostAnswers::of("UpdateItem", 1);
    let losing = DynamoOrders::new(
        lost.on(&f.stack.client),
        &f.stack.tables.orders,
        &f.stack.tables.reviews,
    );
    let release = Settlement::Released {
        reason: "Twilio 429".into(),
    };

    losing
        .settle("released", &claim, &release)
        .await
        .expect("the SDK's retry finds the release done by its first attempt");
    assert_eq!(lost.left(), 0, "the answer was lost once");

    // Back in line: the next run claims it.
    let next = Claim {
        claim_id: "run-2/0001".into(),
        claimed_at: now + TimeDelta::minutes(1),
    };
    assert_eq!(f.orders.claim("released", &next).await.unwrap(), ClaimOutcome::Claimed);
    // A late retry of the first run's release does not undo the new claim.
    assert!(f.orders.settle("released", &claim, &release).await.is_err());
    f.stack.cleanup().await;
}
