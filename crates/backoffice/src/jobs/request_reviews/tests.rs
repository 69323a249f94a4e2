//! The review job with an in-memory store and a scripted messenger: the due window
//! across DST, what is sent, skipped, released or parked, concurrent and manual runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use jiff::tz::TimeZone;

use super::memory::{InMemoryOrders, StoredOrder};
use super::store::{Claim, ClaimOutcome, DueOrder, RequestStatus};
use super::*;
use crate::runtime::clock::FixedClock;
use crate::runtime::job::{Deadline, JobError};
use crate::runtime::trigger::PayloadError;
use crate::twilio::{SendError, SentMessage};

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn paris() -> TimeZone {
    TimeZone::get("Europe/Paris").unwrap()
}

#[test]
fn the_window_follows_the_shops_calendar() {
    // 10:00 in Paris on 24 November.
    let window = review_window(utc("2026-11-24T09:00:00Z"), &paris(), 7, 30).unwrap();
    // Due: completed on 17 November (local) or before.
    assert_eq!(window.due_before, utc("2026-11-17T23:00:00Z"));
    // Too old: completed before 25 October (local), a CEST day.
    assert_eq!(window.too_old_before, utc("2026-10-24T22:00:00Z"));
}

#[test]
fn the_window_holds_across_the_autumn_dst_change() {
    // 25 October 2026: clocks go back at 03:00 in Paris. The 10:00 run is at 09:00 UTC.
    let window = review_window(utc("2026-10-25T09:00:00Z"), &paris(), 7, 30).unwrap();
    let completed_late_on_the_18th = utc("2026-10-18T21:30:00Z"); // 23:30 CEST
    let completed_just_after_midnight = utc("2026-10-18T22:30:00Z"); // 00:30 CEST on the 19th
    assert!(
        completed_late_on_the_18th < window.due_before,
        "6.5 days in hours, 7 in the calendar"
    );
    assert!(completed_just_after_midnight >= window.due_before);
}

#[test]
fn the_window_holds_across_the_spring_dst_change() {
    // 29 March 2026: clocks go forward at 02:00 in Paris; 5 April's 10:00 run is 08:00 UTC.
    let window = review_window(utc("2026-04-05T08:00:00Z"), &paris(), 7, 30).unwrap();
    assert_eq!(window.due_before, utc("2026-03-29T22:00:00Z")); // midnight CEST on the 30th
    assert!(utc("2026-03-29T21:59:59Z") < window.due_before);
    // The run on the short day itself sees 22 March as due.
    let short_day = review_window(utc("2026-03-29T08:00:00Z"), &paris(), 7, 30).unwrap();
    assert_eq!(short_day.due_before, utc("2026-03-22T23:00:00Z"));
}

#[test]
fn a_day_whose_midnight_does_not_exist_starts_at_the_first_instant_that_does() {
    // 6 September 2026 in Santiago: clocks jump from 00:00 to 01:00 (-04 to -03).
    let santiago = TimeZone::get("America/Santiago").unwrap();
    let window = review_window(utc("2026-09-12T13:00:00Z"), &santiago, 7, 30).unwrap();
    assert_eq!(window.due_before, utc("2026-09-06T04:00:00Z")); // 01:00 -03
    // The day before started at midnight, in winter time.
    let window = review_window(utc("2026-09-11T14:00:00Z"), &santiago, 7, 30).unwrap();
    assert_eq!(window.due_before, utc("2026-09-05T04:00:00Z")); // 00:00 -04
}

/// Records every message; answers with what `answer` says for the order.
#[derive(Default)]
struct FakeMessenger {
    sent: Mutex<Vec<(String, String)>>,
    answers: Mutex<HashMap<String, SendError>>,
    delay: Duration,
    /// What Twilio's Messages list shows; `None`: the list fails with `list_error`, or is
    /// unreachable.
    twilio_log: Mutex<Option<Vec<crate::twilio::ListedMessage>>>,
    list_error: Mutex<Option<crate::twilio::LookupError>>,
    /// How many times the list was asked for.
    list_calls: std::sync::atomic::AtomicUsize,
}

impl FakeMessenger {
    fn failing(order_id: &str, error: SendError) -> Self {
        let messenger = Self::default();
        messenger.answers.lock().unwrap().insert(order_id.into(), error);
        messenger
    }

    fn messages_to(&self, order_id: &str) -> usize {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(id, _)| id == order_id)
            .count()
    }

    fn total(&self) -> usize {
        self.sent.lock().unwrap().len()
    }
}

impl ReviewMessenger for FakeMessenger {
    async fn sent_to(
        &self,
        _to: &crate::domain::phone::PhoneNumber,
        _since: DateTime<Utc>,
    ) -> Result<crate::twilio::MessageList, crate::twilio::LookupError> {
        self.list_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match self.twilio_log.lock().unwrap().clone() {
            Some(messages) => Ok(crate::twilio::MessageList { messages, requests: 1 }),
            None => Err(self
                .list_error
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| crate::twilio::LookupError::Unreachable("connection refused".into()))),
        }
    }

    fn absent_after(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::minutes(30)
    }

    async fn send_review_request(&self, order: &DueOrder, _deadline: Deadline) -> Result<SentMessage, SendError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.sent
            .lock()
            .unwrap()
            .push((order.order_id.clone(), order.customer_phone.as_str().to_owned()));
        match self.answers.lock().unwrap().remove(&order.order_id) {
            Some(error) => Err(error),
            None => Ok(SentMessage {
                sid: format!("SM{}", order.order_id),
                status: "queued".into(),
            }),
        }
    }
}

const NOW: &str = "2026-11-24T09:00:00Z";

fn config() -> ReviewJobConfig {
    ReviewJobConfig {
        quiet: crate::messages::quiet::QuietHours::never(paris()),
        run_hour: 10,
        caps: crate::messages::caps::Caps::default(),
        orders_table: "orders".into(),
        reviews_table: "reviews".into(),
        consent_table: "shop-consent".into(),
        shop_timezone: paris(),
        delay_days: 7,
        max_age_days: 30,
        page_size: 3,
        concurrency: 4,
        stop_margin: Duration::ZERO,
        stale_claim_after: Duration::from_secs(20 * 60),
    }
}

fn deps(store: InMemoryOrders, messenger: FakeMessenger) -> ReviewDeps<InMemoryOrders, FakeMessenger> {
    ReviewDeps {
        store,
        messenger,
        clock: Arc::new(FixedClock(utc(NOW))),
        config: config(),
    }
}

fn completed_days_ago(days: i64) -> DateTime<Utc> {
    utc(NOW) - TimeDelta::days(days)
}

/// A due order of its own customer (one number per order id, so the caps never meet).
fn add(store: &InMemoryOrders, id: &str, days_ago: i64) {
    let number = id
        .bytes()
        .fold(0u32, |hash, byte| hash.wrapping_mul(31).wrapping_add(u32::from(byte)))
        % 10_000_000;
    store.insert(
        id,
        StoredOrder::completed(id, &format!("+336{number:08}"), completed_days_ago(days_ago)),
    );
}

async fn run_once(deps: &ReviewDeps<InMemoryOrders, FakeMessenger>, run_id: &str) -> ReviewResponse {
    run(deps, &serde_json::json!({}), Deadline::unbounded(), run_id)
        .await
        .unwrap()
}

#[tokio::test]
async fn sends_due_orders_once_and_skips_the_rest_with_reasons() {
    let store = InMemoryOrders::default();
    add(&store, "due-7", 7);
    add(&store, "due-12", 12);
    add(&store, "not-yet", 6);
    add(&store, "too-old", 31);
    add(&store, "reviewed", 8);
    store.add_review("reviewed");
    add(&store, "cancelled", 8);
    store.update("cancelled", |o| o.status = "cancelled".into());
    add(&store, "no-phone", 8);
    store.update("no-phone", |o| o.customer_phone = None);
    add(&store, "bad-phone", 8);
    store.update("bad-phone", |o| o.customer_phone = Some("06 12 34 56 78".into()));
    add(&store, "no-completion", 8);
    store.update("no-completion", |o| o.completed_at = None);
    let deps = deps(store, FakeMessenger::default());

    let response = run_once(&deps, "run-1").await;

    assert_eq!((response.sent, response.failed), (2, 0));
    assert_eq!(deps.messenger.messages_to("due-7"), 1);
    assert_eq!(deps.messenger.messages_to("due-12"), 1);
    assert_eq!(deps.messenger.total(), 2);
    let skipped = &response.report.skipped;
    for reason in [
        "too_old",
        "has_review",
        "not_completed",
        "missing_phone",
        "invalid_phone",
        "missing_completed_at",
    ] {
        assert_eq!(skipped.get(reason), Some(&1), "{reason}: {skipped:?}");
    }
    assert_eq!(response.total, 8);
    assert_eq!(deps.store.status_of("due-7"), Some(RequestStatus::Sent));
    assert_eq!(deps.store.status_of("not-yet"), Some(RequestStatus::Pending));
    assert_eq!(deps.store.status_of("too-old"), Some(RequestStatus::Expired));
    assert_eq!(deps.store.status_of("reviewed"), Some(RequestStatus::Reviewed));
    assert_eq!(deps.store.status_of("bad-phone"), Some(RequestStatus::Invalid));
    assert_eq!(deps.store.status_of("cancelled"), Some(RequestStatus::NotCompleted));

    let second = run_once(&deps, "run-2").await;
    assert_eq!(
        (second.sent, second.total),
        (0, 0),
        "a second run the same day sends nothing"
    );
    assert_eq!(deps.messenger.total(), 2);
}

#[tokio::test]
async fn two_runs_at_once_send_one_message_per_order() {
    let store = InMemoryOrders::default();
    for i in 0..40 {
        add(&store, &format!("order-{i:02}"), 7 + i % 5);
    }
    let messenger = FakeMessenger {
        delay: Duration::from_millis(2),
        ..Default::default()
    };
    let deps = deps(store, messenger);

    let (a, b) = tokio::join!(run_once(&deps, "run-a"), run_once(&deps, "run-b"));

    assert_eq!(a.sent + b.sent, 40);
    assert_eq!(deps.messenger.total(), 40);
    for i in 0..40 {
        assert_eq!(deps.messenger.messages_to(&format!("order-{i:02}")), 1);
    }
}

#[tokio::test]
async fn a_permanent_twilio_error_fails_the_order_with_its_code() {
    let store = InMemoryOrders::default();
    add(&store, "unsubscribed", 7);
    let error = SendError::Permanent {
        status: 400,
        code: Some(21610),
        message: "unsubscribed".into(),
    };
    let deps = deps(store, FakeMessenger::failing("unsubscribed", error));

    let response = run_once(&deps, "run-1").await;

    assert_eq!((response.sent, response.failed), (0, 1));
    assert_eq!(response.report.failed_reasons.get("twilio_21610"), Some(&1));
    assert_eq!(deps.store.status_of("unsubscribed"), Some(RequestStatus::Failed));
    assert_eq!(run_once(&deps, "run-2").await.total, 0, "a failed order is not retried");
}

#[tokio::test]
async fn a_retryable_error_releases_the_order_for_the_next_run() {
    let store = InMemoryOrders::default();
    add(&store, "busy", 7);
    let deps = deps(
        store,
        FakeMessenger::failing(
            "busy",
            SendError::Transient {
                status: 503,
                code: None,
            },
        ),
    );

    let first = run_once(&deps, "run-1").await;
    assert_eq!(first.report.released, 1);
    assert_eq!(deps.store.status_of("busy"), Some(RequestStatus::Pending));

    let second = run_once(&deps, "run-2").await;
    assert_eq!(second.sent, 1);
    assert_eq!(deps.store.status_of("busy"), Some(RequestStatus::Sent));
}

#[tokio::test]
async fn an_ambiguous_error_is_parked_for_reconciliation_and_never_resent() {
    let store = InMemoryOrders::default();
    add(&store, "lost-answer", 7);
    let deps = deps(store, FakeMessenger::failing("lost-answer", SendError::Timeout));

    let first = run_once(&deps, "run-1").await;
    assert_eq!(first.report.unknown, 1);
    assert_eq!(first.report.awaiting_reconciliation, 1);
    assert_eq!(deps.store.status_of("lost-answer"), Some(RequestStatus::Unknown));

    let second = run_once(&deps, "run-2").await;
    assert_eq!(second.total, 0);
    assert_eq!(
        second.report.awaiting_reconciliation, 1,
        "still visible for a person to decide"
    );
    assert_eq!(deps.messenger.messages_to("lost-answer"), 1);
}

/// A parked request and the same deps, `minutes_later` on the clock.
async fn parked_then(
    order_id: &str,
    twilio_log: Option<Vec<crate::twilio::ListedMessage>>,
    minutes_later: i64,
) -> ReviewDeps<InMemoryOrders, FakeMessenger> {
    let store = InMemoryOrders::default();
    add(&store, order_id, 7);
    let deps = deps(store, FakeMessenger::failing(order_id, SendError::Timeout));
    assert_eq!(run_once(&deps, "run-1").await.report.unknown, 1);
    *deps.messenger.twilio_log.lock().unwrap() = twilio_log;
    ReviewDeps {
        clock: Arc::new(FixedClock(utc(NOW) + TimeDelta::minutes(minutes_later))),
        ..deps
    }
}

fn listed(sid: &str, created: DateTime<Utc>, body: &str) -> crate::twilio::ListedMessage {
    crate::twilio::ListedMessage {
        sid: sid.into(),
        to: None,
        from: None,
        body: Some(body.into()),
        direction: Some("outbound-api".into()),
        status: Some("delivered".into()),
        messaging_service_sid: None,
        date_created: Some(created.to_rfc2822()),
        date_sent: Some((created + TimeDelta::seconds(1)).to_rfc2822()),
    }
}

#[tokio::test]
async fn reconciliation_settles_as_sent_what_twilio_has_without_resending() {
    let log = vec![
        listed("SM-other", utc(NOW) + TimeDelta::seconds(2), "Order B-9 is ready"),
        listed(
            "SM-found",
            utc(NOW) + TimeDelta::seconds(3),
            "How was order lost-answer?",
        ),
    ];
    let deps = parked_then("lost-answer", Some(log), 31).await;
    // Settled on the order even when the customer's caps cannot be written then.
    deps.store.fail_consent_writes();
    let second = run_once(&deps, "run-2").await;
    assert_eq!(second.report.reconciliation.found, 1, "{second:?}");
    assert_eq!(second.report.awaiting_reconciliation, 0);
    assert_eq!(deps.store.status_of("lost-answer"), Some(RequestStatus::Sent));
    assert_eq!(
        deps.store.get("lost-answer").unwrap().message_sid.as_deref(),
        Some("SM-found")
    );
    assert_eq!(deps.messenger.messages_to("lost-answer"), 1, "never sent again");
}

#[tokio::test]
async fn reconciliation_puts_back_in_line_what_twilio_never_had_once_the_wait_is_over() {
    let deps = parked_then("never-left", Some(Vec::new()), 10).await;
    let early = run_once(&deps, "run-2").await;
    assert_eq!(early.report.reconciliation.undecided.get("too_recent"), Some(&1));
    assert_eq!(deps.store.status_of("never-left"), Some(RequestStatus::Unknown));

    let deps = ReviewDeps {
        clock: Arc::new(FixedClock(utc(NOW) + TimeDelta::minutes(31))),
        ..deps
    };
    let later = run_once(&deps, "run-3").await;
    assert_eq!(later.report.reconciliation.requeued, 1);
    assert_eq!(later.sent, 1, "back in line, and sent by the same run");
    assert_eq!(deps.store.status_of("never-left"), Some(RequestStatus::Sent));
    assert_eq!(deps.messenger.messages_to("never-left"), 2);
}

#[tokio::test]
async fn what_reconciliation_cannot_decide_is_moved_aside_for_a_person_and_not_asked_again() {
    let log = vec![listed(
        "SM-other",
        utc(NOW) + TimeDelta::seconds(2),
        "Your cart is waiting",
    )];
    let deps = parked_then("in-the-dark", Some(log), 31).await;
    let second = run_once(&deps, "run-2").await;
    assert_eq!(second.report.reconciliation.left_for_a_person, 1);
    assert_eq!(
        second.report.reconciliation.undecided.get("unmatched_in_window"),
        Some(&1)
    );
    assert_eq!(second.report.awaiting_reconciliation, 1, "still for a person to see");
    assert_eq!(deps.store.status_of("in-the-dark"), Some(RequestStatus::Unknown));
    let third = run_once(&deps, "run-3").await;
    assert_eq!(third.report.reconciliation.list_requests, 0, "not asked again");
    assert_eq!(third.report.awaiting_reconciliation, 1);
    assert_eq!(deps.messenger.messages_to("in-the-dark"), 1);
}

#[tokio::test]
async fn while_twilio_is_down_a_run_asks_once_and_sends_what_is_due() {
    let store = InMemoryOrders::default();
    for id in ["lost-1", "lost-2", "lost-3"] {
        add(&store, id, 7);
    }
    let messenger = FakeMessenger::default();
    for id in ["lost-1", "lost-2", "lost-3"] {
        messenger.answers.lock().unwrap().insert(id.into(), SendError::Timeout);
    }
    let deps = deps(store, messenger);
    assert_eq!(run_once(&deps, "run-1").await.report.unknown, 3);
    add(&deps.store, "due-today", 7);
    let deps = ReviewDeps {
        clock: Arc::new(FixedClock(utc(NOW) + TimeDelta::minutes(31))),
        ..deps
    };

    let second = run_once(&deps, "run-2").await;

    assert_eq!(deps.messenger.list_calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        second.report.reconciliation.undecided.get("twilio_unreachable"),
        Some(&3)
    );
    assert_eq!(second.sent, 1, "the due request still goes out");
}

#[tokio::test]
async fn a_list_that_cannot_be_read_moves_the_request_aside_for_a_person() {
    let deps = parked_then("too-many-pages", None, 31).await;
    *deps.messenger.list_error.lock().unwrap() = Some(crate::twilio::LookupError::TooManyPages);
    let second = run_once(&deps, "run-2").await;
    assert_eq!(second.report.reconciliation.left_for_a_person, 1);
    assert_eq!(second.report.reconciliation.undecided.get("unusable_list"), Some(&1));
    let third = run_once(&deps, "run-3").await;
    assert_eq!(
        deps.messenger.list_calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "not asked again"
    );
    assert_eq!(third.report.awaiting_reconciliation, 1);
}

#[tokio::test]
async fn reconciliation_leaves_the_request_parked_while_twilio_is_unreachable() {
    let deps = parked_then("in-doubt", None, 60).await;
    let second = run_once(&deps, "run-2").await;
    assert_eq!(
        second.report.reconciliation.undecided.get("twilio_unreachable"),
        Some(&1)
    );
    assert_eq!(second.report.awaiting_reconciliation, 1);
    assert_eq!(deps.store.status_of("in-doubt"), Some(RequestStatus::Unknown));
    assert_eq!(deps.messenger.messages_to("in-doubt"), 1);
}

#[tokio::test]
async fn a_claim_left_by_a_dead_run_is_parked_not_resent() {
    let store = InMemoryOrders::default();
    add(&store, "orphan", 7);
    let claim = Claim {
        claim_id: "dead-run".into(),
        claimed_at: utc(NOW) - TimeDelta::hours(2),
    };
    assert_eq!(store.claim("orphan", &claim).await.unwrap(), ClaimOutcome::Claimed);
    add(&store, "fresh-claim", 7);
    let recent = Claim {
        claim_id: "live-run".into(),
        claimed_at: utc(NOW) - TimeDelta::minutes(1),
    };
    store.claim("fresh-claim", &recent).await.unwrap();
    let deps = deps(store, FakeMessenger::default());

    let response = run_once(&deps, "run-1").await;

    assert_eq!(response.report.stale_claims_parked, 1);
    assert_eq!(deps.store.status_of("orphan"), Some(RequestStatus::Unknown));
    assert_eq!(
        deps.store.status_of("fresh-claim"),
        Some(RequestStatus::Sending),
        "a live run's claim is left alone"
    );
    assert_eq!(deps.messenger.total(), 0);
}

#[tokio::test]
async fn a_configuration_error_stops_the_run_and_releases_the_order() {
    let store = InMemoryOrders::default();
    for i in 0..10 {
        add(&store, &format!("order-{i}"), 7);
    }
    let bad_credentials = SendError::Permanent {
        status: 401,
        code: Some(20003),
        message: "Authenticate".into(),
    };
    let mut deps = deps(store, FakeMessenger::default());
    deps.config.concurrency = 1;
    deps.config.page_size = 100;
    // Every order is in some shard; fail whichever is sent first.
    let first = (0..10)
        .map(|i| format!("order-{i}"))
        .min_by_key(|id| crate::store::shard::shard_of(id))
        .unwrap();
    deps.messenger
        .answers
        .lock()
        .unwrap()
        .insert(first.clone(), bad_credentials);

    let response = run_once(&deps, "run-1").await;

    assert_eq!(response.report.released, 1);
    assert_eq!(response.sent, 0, "no further sends after a configuration error");
    assert!(response.report.more);
    // The orders claimed with it and not sent are released too: none is left claimed.
    for i in 0..10 {
        assert_eq!(
            deps.store.status_of(&format!("order-{i}")),
            Some(RequestStatus::Pending),
            "order-{i}"
        );
    }
    deps.messenger.answers.lock().unwrap().clear();
    let next = run_once(&deps, "run-2").await;
    // Ten sends, besides the one attempt Twilio refused.
    assert_eq!((next.sent, deps.messenger.total()), (10, 11), "{next:?}");
}

/// Orders are claimed together; those the run can no longer send when its deadline comes
/// are released at once, not left claimed for reconciliation.
#[tokio::test]
async fn claimed_orders_the_run_cannot_send_before_its_deadline_are_released() {
    let store = InMemoryOrders::default();
    for i in 0..5 {
        add(&store, &format!("order-{i}"), 7);
    }
    let messenger = FakeMessenger {
        delay: Duration::from_millis(300),
        ..FakeMessenger::default()
    };
    let mut deps = deps(store, messenger);
    deps.config.concurrency = 1;
    deps.config.page_size = 100;

    let response = run(
        &deps,
        &serde_json::json!({}),
        Deadline::after(Duration::from_millis(150)),
        "short",
    )
    .await
    .unwrap();

    assert_eq!(response.sent, 1, "{response:?}");
    assert!(response.report.more);
    let statuses: Vec<_> = (0..5)
        .filter_map(|i| deps.store.status_of(&format!("order-{i}")))
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == RequestStatus::Sent).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == RequestStatus::Pending).count(),
        4,
        "none left claimed: {statuses:?}"
    );
}

#[tokio::test]
async fn no_claim_starts_past_the_deadline_even_within_one_batch_of_claims() {
    let store = InMemoryOrders::default();
    for i in 0..3 {
        add(&store, &format!("order-{i}"), 7);
    }
    // Each claim takes 1 s; 1.5 s are left: the second starts in time (half a second to
    // spare for a loaded machine), the third would not, and is never tried.
    store.slow_claims(Duration::from_millis(1000));
    let mut deps = deps(store, FakeMessenger::default());
    deps.config.page_size = 100;

    let response = run(
        &deps,
        &serde_json::json!({}),
        Deadline::after(Duration::from_millis(1500)),
        "throttled",
    )
    .await
    .unwrap();

    assert!(response.report.more, "{response:?}");
    assert_eq!(response.sent, 0, "{response:?}");
    assert_eq!(
        deps.store.claims_tried(),
        2,
        "the third claim would start past the deadline"
    );
    let statuses: Vec<_> = (0..3)
        .filter_map(|i| deps.store.status_of(&format!("order-{i}")))
        .collect();
    assert_eq!(statuses, [RequestStatus::Pending; 3], "none left claimed");
}

#[tokio::test]
async fn no_send_starts_after_the_span_its_claim_covers() {
    // Claims written 3 minutes apart (a throttled table): the batch's claim time is that
    // of its first, and reconciliation looks for a message within 5 minutes of it.
    for (orders, sent) in [(1, 1), (2, 0)] {
        let store = InMemoryOrders::default();
        for i in 0..orders {
            add(&store, &format!("order-{i}"), 7);
        }
        let clock = Arc::new(crate::runtime::clock::ManualClock::new(utc(NOW)));
        store.claims_advance(clock.clone(), TimeDelta::minutes(3));
        let mut deps = deps(store, FakeMessenger::default());
        deps.clock = clock;

        let response = run(&deps, &serde_json::json!({}), Deadline::unbounded(), "slow-claims")
            .await
            .unwrap();

        assert_eq!(deps.messenger.total(), sent, "{response:?}");
        let pending = (0..orders)
            .filter(|i| deps.store.status_of(&format!("order-{i}")) == Some(RequestStatus::Pending))
            .count();
        assert_eq!(
            pending,
            orders - sent,
            "given back unsent, for the next run: {response:?}"
        );
    }
}

#[tokio::test]
async fn a_sent_or_refused_request_counts_as_such_when_the_customers_item_cannot_be_written() {
    let store = InMemoryOrders::default();
    add(&store, "sent", 7);
    add(&store, "opted-out", 7);
    store.fail_consent_writes();
    let messenger = FakeMessenger::failing(
        "opted-out",
        SendError::Permanent {
            status: 400,
            code: Some(21610),
            message: "Attempt to send to unsubscribed recipient".into(),
        },
    );
    let mut deps = deps(store, messenger);
    deps.config.caps.gap = TimeDelta::zero();

    let response = run(
        &deps,
        &serde_json::json!({}),
        Deadline::unbounded(),
        "consent-throttled",
    )
    .await
    .unwrap();

    assert_eq!((response.sent, response.failed), (1, 1), "{response:?}");
    assert_eq!(response.report.store_errors, 0, "{response:?}");
    assert_eq!(deps.store.status_of("sent"), Some(RequestStatus::Sent));
}

#[tokio::test]
async fn a_dry_run_counts_and_claims_nothing() {
    let store = InMemoryOrders::default();
    add(&store, "due", 7);
    add(&store, "too-old", 40);
    let deps = deps(store, FakeMessenger::default());

    let response = run(
        &deps,
        &serde_json::json!({"dryRun": true}),
        Deadline::unbounded(),
        "dry",
    )
    .await
    .unwrap();

    assert_eq!((response.sent, response.report.would_send), (0, 1));
    assert_eq!(response.report.skipped.get("too_old"), Some(&1));
    assert_eq!(deps.store.status_of("due"), Some(RequestStatus::Pending));
    assert_eq!(deps.store.status_of("too-old"), Some(RequestStatus::Pending));
    assert_eq!(deps.messenger.total(), 0);
}

#[tokio::test]
async fn stops_at_the_deadline_without_claiming() {
    let store = InMemoryOrders::default();
    add(&store, "due", 7);
    let deps = deps(store, FakeMessenger::default());

    let response = run(&deps, &serde_json::json!({}), Deadline::after(Duration::ZERO), "late")
        .await
        .unwrap();

    assert!(response.report.more);
    assert_eq!(deps.store.status_of("due"), Some(RequestStatus::Pending));
}

#[tokio::test]
async fn a_manual_now_beyond_the_calendar_is_refused_by_name() {
    let deps = deps(InMemoryOrders::default(), FakeMessenger::default());
    let payload = serde_json::json!({"now": "9999-12-31T23:00:00Z", "dryRun": true});

    let error = run(&deps, &payload, Deadline::after(Duration::from_secs(60)), "far")
        .await
        .unwrap_err();

    assert!(!error.retryable());
    assert!(error.to_string().contains("`now` (9999-12-31 23:00:00 UTC)"), "{error}");
}

#[test]
fn template_variables_use_the_first_name_or_a_neutral_word() {
    let order = |name: Option<&str>| DueOrder {
        order_id: "A-1001".into(),
        customer_phone: crate::domain::phone::PhoneNumber::parse("+33612345678").unwrap(),
        customer_name: name.map(String::from),
        completed_at: utc(NOW),
    };
    assert_eq!(review_variables(&order(Some("Ana Maria Lopez")))["1"], "Ana");
    assert_eq!(review_variables(&order(None))["1"], "client");
    assert_eq!(review_variables(&order(None))["2"], "A-1001");
}

#[test]
fn config_refuses_bad_values_by_name() {
    let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let base = [("ORDERS_TABLE", "o"), ("REVIEWS_TABLE", "r"), ("CONSENT_TABLE", "c")];
    assert_eq!(ReviewJobConfig::from_env(&env(&base)).unwrap().shop_timezone, paris());
    let bad_zone =
        ReviewJobConfig::from_env(&env(&[base[0], base[1], base[2], ("SHOP_TIMEZONE", "Paris")])).unwrap_err();
    assert!(bad_zone.to_string().contains("SHOP_TIMEZONE"), "{bad_zone}");
    let bad_age =
        ReviewJobConfig::from_env(&env(&[base[0], base[1], base[2], ("REVIEW_MAX_AGE_DAYS", "3")])).unwrap_err();
    assert!(bad_age.to_string().contains("REVIEW_MAX_AGE_DAYS"), "{bad_age}");
    // Past jiff's span of days, or a claim age no run could outlive, refused at start-up
    // instead of failing every run.
    for (name, value) in [
        ("REVIEW_MAX_AGE_DAYS", "9999999"),
        ("REVIEW_DELAY_DAYS", "5000000"),
        ("STALE_CLAIM_MINUTES", "200000000000"),
        ("STALE_CLAIM_MINUTES", "5"),
    ] {
        let error = ReviewJobConfig::from_env(&env(&[base[0], base[1], base[2], (name, value)])).unwrap_err();
        assert!(error.to_string().contains(&format!("{name}=\"{value}\"")), "{error}");
    }
    // A run inside the quiet hours could never send: refused, unless the kind is exempt.
    let late_opening = [
        base[0],
        base[1],
        base[2],
        ("QUIET_HOURS_START", "21:00"),
        ("QUIET_HOURS_END", "10:30"),
    ];
    let error = ReviewJobConfig::from_env(&env(&late_opening)).unwrap_err();
    assert!(
        error.to_string().contains("REVIEW_HOUR=\"10\"") && error.to_string().contains("21:00–10:30"),
        "{error}"
    );
    let mut exempt = late_opening.to_vec();
    exempt.push(("QUIET_HOURS_EXEMPT", "review_request"));
    assert!(ReviewJobConfig::from_env(&env(&exempt)).is_ok());
    let mut later_run = late_opening.to_vec();
    later_run.push(("REVIEW_HOUR", "11"));
    assert_eq!(ReviewJobConfig::from_env(&env(&later_run)).unwrap().run_hour, 11);
    let widest = ReviewJobConfig::from_env(&env(&[
        base[0],
        base[1],
        base[2],
        ("REVIEW_MAX_AGE_DAYS", "3650"),
        ("REVIEW_DELAY_DAYS", "3650"),
    ]))
    .unwrap();
    assert!(review_window(utc(NOW), &widest.shop_timezone, widest.delay_days, widest.max_age_days).is_ok());
}

fn days_before_now(days: i64) -> String {
    (utc(NOW) - TimeDelta::days(days)).to_rfc3339()
}

#[tokio::test]
async fn a_past_now_without_dry_run_or_backfill_is_refused_and_sends_nothing() {
    let store = InMemoryOrders::default();
    add(&store, "due-40", 40);
    let deps = deps(store, FakeMessenger::default());

    let payload = serde_json::json!({"now": days_before_now(30)});
    let error = run(&deps, &payload, Deadline::unbounded(), "manual").await.unwrap_err();

    assert!(
        matches!(error, JobError::InvalidPayload(PayloadError::NowInPast { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("backfill"), "{error}");
    assert_eq!(deps.messenger.total(), 0);
    assert_eq!(deps.store.status_of("due-40"), Some(RequestStatus::Pending));
}

#[tokio::test]
async fn a_backfill_never_sends_what_is_too_old_by_the_real_clock() {
    let store = InMemoryOrders::default();
    add(&store, "completed-40-days-ago", 40);
    add(&store, "completed-12-days-ago", 12);
    let deps = deps(store, FakeMessenger::default());

    // As of 30 days ago, the 40-day-old order was due and young enough; today it is not.
    let payload = serde_json::json!({"now": days_before_now(30), "backfill": true});
    let response = run(&deps, &payload, Deadline::unbounded(), "backfill").await.unwrap();

    assert_eq!(response.sent, 0);
    assert_eq!(response.report.skipped.get("too_old"), Some(&1));
    assert_eq!(deps.messenger.total(), 0);
    // Not yet due as of 30 days ago: left for today's run.
    assert_eq!(
        deps.store.status_of("completed-12-days-ago"),
        Some(RequestStatus::Pending)
    );
    assert_eq!(response.timestamp, NOW, "the response tells the real time");
}

#[tokio::test(start_paused = true)]
async fn a_backfill_beside_the_scheduled_run_parks_nothing_and_sends_each_order_once() {
    let store = InMemoryOrders::default();
    add(&store, "due-11", 11);
    add(&store, "due-12", 12);
    let messenger = FakeMessenger {
        delay: Duration::from_secs(2),
        ..FakeMessenger::default()
    };
    let deps = deps(store, messenger);
    let backfill = serde_json::json!({"now": days_before_now(3), "backfill": true});
    let schedule = serde_json::json!({});

    let (manual, scheduled) = tokio::join!(
        run(&deps, &backfill, Deadline::unbounded(), "manual"),
        run(&deps, &schedule, Deadline::unbounded(), "scheduled"),
    );
    let (manual, scheduled) = (manual.unwrap(), scheduled.unwrap());

    assert_eq!(
        manual.report.stale_claims_parked + scheduled.report.stale_claims_parked,
        0,
        "the backfill's claims are stamped with the real time, so they look as fresh as they are"
    );
    assert_eq!(manual.sent + scheduled.sent, 2);
    assert_eq!(deps.messenger.messages_to("due-11"), 1);
    assert_eq!(deps.messenger.messages_to("due-12"), 1);
    assert_eq!(scheduled.report.awaiting_reconciliation, 0);
}

#[tokio::test]
async fn a_customer_with_two_due_requests_gets_one_a_day() {
    let store = InMemoryOrders::default();
    for id in ["first", "second"] {
        store.insert(id, StoredOrder::completed(id, "+33612345678", completed_days_ago(8)));
    }
    let deps = deps(store, FakeMessenger::default());
    let response = run_once(&deps, "run-1").await;
    assert_eq!((response.sent, response.report.held), (1, 1), "{response:?}");
    assert_eq!(deps.messenger.total(), 1);
}
