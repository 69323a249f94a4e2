//! The reply handler with in-memory fakes: signature, matching, writing, alerting.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, TimeDelta, Utc};
use lambda_runtime::Diagnostic;

use super::memory::{MemoryReplies, RecordingAlerts};
use super::*;
use crate::runtime::clock::FixedClock;
use crate::runtime::config::{ConfigError, env_of as env};
use crate::runtime::metrics::MetricDocument;
use crate::store::StoreError;
use crate::twilio::AuthToken;

const TOKEN: &str = "test-auth-token";
const URL: &str = "https://abc123.lambda-url.eu-west-3.on.aws/";
const CUSTOMER: &str = "+33612345678";

fn now() -> DateTime<Utc> {
    "2026-11-24T10:00:00Z".parse().unwrap()
}

fn config() -> ReplyConfig {
    ReplyConfig::from_env(&env(&[
        ("ORDERS_TABLE", "orders"),
        ("REVIEWS_TABLE", "reviews"),
        ("CONSENT_TABLE", "consent"),
    ]))
    .unwrap()
}

fn deps() -> ReplyDeps<MemoryReplies, RecordingAlerts> {
    ReplyDeps {
        store: MemoryReplies::default(),
        alerts: RecordingAlerts::default(),
        validator: SignatureValidator::new(AuthToken::new(TOKEN)),
        clock: Arc::new(FixedClock(now())),
        config: config(),
        forwarder: None,
    }
}

fn form(params: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

fn owned(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A Function URL event as Lambda delivers it for `URL`, signed by Twilio.
fn signed_event(params: &[(&str, &str)]) -> FunctionUrlRequest {
    let validator = SignatureValidator::new(AuthToken::new(TOKEN));
    signed_twilio_post(&validator, URL, &owned(params)).expect("URL is a URL")
}

/// The same event built by hand, with or without a signature, its body in base64 or not.
fn event(params: &[(&str, &str)], signature: Option<&str>, base64: bool) -> FunctionUrlRequest {
    let body = form(params);
    let mut headers = BTreeMap::from([
        ("host".to_owned(), "abc123.lambda-url.eu-west-3.on.aws".to_owned()),
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ),
    ]);
    if let Some(signature) = signature {
        headers.insert("x-twilio-signature".into(), signature.into());
    }
    serde_json::from_value(serde_json::json!({
        "version": "2.0",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {"domainName": "abc123.lambda-url.eu-west-3.on.aws", "http": {"method": "POST"}, "timeEpoch": 0},
        "body": if base64 { BASE64.encode(&body) } else { body },
        "isBase64Encoded": base64,
    }))
    .unwrap()
}

fn reply(from: &str, sid: &str, body: &str) -> Vec<(&'static str, String)> {
    vec![
        ("From", format!("whatsapp:{from}")),
        ("To", "whatsapp:+14155238886".into()),
        ("MessageSid", crate::testing::message_sid(sid)),
        ("Body", body.into()),
        ("NumMedia", "0".into()),
    ]
}

async fn send(
    deps: &ReplyDeps<MemoryReplies, RecordingAlerts>,
    params: &[(&'static str, String)],
) -> FunctionUrlResponse {
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    respond(deps, &signed_event(&params)).await.unwrap()
}

async fn text_reply(deps: &ReplyDeps<MemoryReplies, RecordingAlerts>, sid: &str, body: &str) -> FunctionUrlResponse {
    send(deps, &reply(CUSTOMER, sid, body)).await
}

fn days_ago(days: i64) -> DateTime<Utc> {
    now() - TimeDelta::days(days)
}

#[tokio::test]
async fn records_a_signed_reply_and_thanks_the_customer() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));

    let response = text_reply(&deps, "SM001", "5 parfait, merci").await;

    assert_eq!(response.status_code, 200);
    assert_eq!(response.headers["content-type"], "text/xml");
    assert_eq!(response.body, twiml::message(texts::FR.thanks));
    let stored = deps.store.review_of("ord-1").unwrap();
    assert_eq!(stored.review.rating, 5);
    assert_eq!(stored.review.comment, "parfait, merci");
    assert_eq!(stored.review.message_sid, Some(crate::testing::message_sid("SM001")));
    assert_eq!(stored.source, "text");
    assert!(deps.alerts.sent().is_empty());
}

#[tokio::test]
async fn reads_a_base64_body_and_a_quick_reply_button() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
    let mut params = reply(CUSTOMER, "SM002", "⭐⭐⭐⭐ Très bien");
    params.push(("ButtonPayload", "rating_4".into()));
    params.push(("ButtonText", "⭐⭐⭐⭐ Très bien".into()));
    let borrowed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let signature = deps.validator.sign(URL, &owned(&borrowed));

    let response = respond(&deps, &event(&borrowed, Some(&signature), true)).await.unwrap();

    assert_eq!(response.status_code, 200);
    let stored = deps.store.review_of("ord-1").unwrap();
    assert_eq!((stored.review.rating, stored.source), (4, "button"));
    assert_eq!(stored.review.comment, "");
}

#[tokio::test]
async fn a_captured_reply_re_split_into_a_new_message_sid_is_refused() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
    let sid = crate::testing::message_sid("SM130");
    let from = format!("whatsapp:{CUSTOMER}");
    let captured = [
        ("Body", "1 horrible"),
        ("From", from.as_str()),
        ("MessageSid", sid.as_str()),
        ("MessageType", "text"),
    ];
    let signature = deps.validator.sign(URL, &owned(&captured));
    // The same signed text, split anew: `MessageType` and its value inside the SID.
    let swallowed = format!("{sid}MessageTypetext");
    let forged = [
        ("Body", "1 horrible"),
        ("From", from.as_str()),
        ("MessageSid", swallowed.as_str()),
    ];
    assert_eq!(
        deps.validator.sign(URL, &owned(&forged)),
        signature,
        "the signature still holds"
    );

    let response = respond(&deps, &event(&forged, Some(&signature), false)).await.unwrap();

    assert_eq!(response.status_code, 400);
    assert_eq!(deps.store.review_count(), 0);
    assert!(deps.alerts.sent().is_empty());
}

#[tokio::test]
async fn refuses_unsigned_and_mis_signed_requests_without_changing_anything() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
    let params = reply(CUSTOMER, "SM003", "1 horrible");
    let borrowed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let unsigned = respond(&deps, &event(&borrowed, None, false)).await.unwrap();
    let garbage = respond(&deps, &event(&borrowed, Some("bm90IGEgc2lnbmF0dXJl"), false))
        .await
        .unwrap();
    let wrong_token = SignatureValidator::new(AuthToken::new("another")).sign(URL, &owned(&borrowed));
    let forged = respond(&deps, &event(&borrowed, Some(&wrong_token), false))
        .await
        .unwrap();
    // Signed for another URL (a wrong port).
    let other_url = deps
        .validator
        .sign("https://abc123.lambda-url.eu-west-3.on.aws:8443/", &owned(&borrowed));
    let wrong_port = respond(&deps, &event(&borrowed, Some(&other_url), false))
        .await
        .unwrap();
    // A valid signature over a body that was then changed.
    let signature = deps.validator.sign(URL, &owned(&borrowed));
    let mut tampered = borrowed.clone();
    tampered[3] = ("Body", "5 super");
    let tampered = respond(&deps, &event(&tampered, Some(&signature), false))
        .await
        .unwrap();

    for response in [unsigned, garbage, forged, wrong_port, tampered] {
        assert_eq!(response.status_code, 403);
        assert!(!response.body.contains("Response"), "{}", response.body);
    }
    assert_eq!(deps.store.review_count(), 0);
    assert_eq!(
        deps.store.queries(),
        0,
        "nothing is read for an unauthenticated request"
    );
    assert!(deps.alerts.sent().is_empty());
}

#[tokio::test]
async fn checks_the_configured_webhook_url_when_one_is_set() {
    let mut deps = deps();
    deps.config.webhook_url = Some("https://reviews.shop.example/twilio?v=1".into());
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
    let params = reply(CUSTOMER, "SM004", "4");
    let borrowed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Signed for the Function URL: not what Twilio is configured with here.
    let for_function_url = deps.validator.sign(URL, &owned(&borrowed));
    let refused = respond(&deps, &event(&borrowed, Some(&for_function_url), false))
        .await
        .unwrap();
    assert_eq!(refused.status_code, 403);

    let for_configured = deps
        .validator
        .sign("https://reviews.shop.example:443/twilio?v=1", &owned(&borrowed));
    let accepted = respond(&deps, &event(&borrowed, Some(&for_configured), false))
        .await
        .unwrap();
    assert_eq!(accepted.status_code, 200);
    assert_eq!(deps.store.review_of("ord-1").unwrap().review.rating, 4);
}

#[tokio::test]
async fn rebuilds_the_url_with_the_query_string() {
    let request: FunctionUrlRequest = serde_json::from_value(serde_json::json!({
        "rawPath": "/hook",
        "rawQueryString": "a=1&b=2",
        "requestContext": {"domainName": "x.lambda-url.eu-west-3.on.aws"},
    }))
    .unwrap();
    assert_eq!(
        request.function_url().as_deref(),
        Some("https://x.lambda-url.eu-west-3.on.aws/hook?a=1&b=2")
    );
}

#[tokio::test]
async fn a_malformed_request_gets_400() {
    let deps = deps();
    let no_from = [("MessageSid", "SM005"), ("Body", "5")];
    let response = respond(&deps, &signed_event(&no_from)).await.unwrap();
    assert_eq!(response.status_code, 400);
    let no_sid = [("From", "whatsapp:+33612345678"), ("Body", "5")];
    let response = respond(&deps, &signed_event(&no_sid)).await.unwrap();
    assert_eq!(response.status_code, 400);
    let bad_from = [("From", "whatsapp:0612345678"), ("MessageSid", "SM006"), ("Body", "5")];
    let response = respond(&deps, &signed_event(&bad_from)).await.unwrap();
    assert_eq!(response.status_code, 400);
    let mut bad_base64 = signed_event(&[("Body", "5")]);
    bad_base64.is_base64_encoded = true;
    bad_base64.body = Some("%%%".into());
    assert_eq!(respond(&deps, &bad_base64).await.unwrap().status_code, 400);
    assert_eq!(deps.store.review_count(), 0);
}

#[tokio::test]
async fn a_method_other_than_post_gets_405_naming_post() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
    let params = reply(CUSTOMER, "SM007", "5");
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut get = signed_event(&params);
    if let Some(http) = get.request_context.as_mut().and_then(|context| context.http.as_mut()) {
        http.method = Some("GET".into());
    }
    let response = respond(&deps, &get).await.unwrap();
    assert_eq!(response.status_code, 405);
    assert_eq!(response.headers.get("allow").map(String::as_str), Some("POST"));
    assert_eq!(deps.store.review_count(), 0);
}

#[tokio::test]
async fn a_sender_s_channel_is_read_in_any_case() {
    for from in ["WhatsApp:+33612345678", "WHATSAPP: +33612345678", "+33612345678"] {
        let deps = deps();
        deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
        let mut params = reply(CUSTOMER, "SM008", "4");
        params[0].1 = from.into();
        let response = send(&deps, &params).await;
        assert_eq!(response.status_code, 200, "{from}");
        assert_eq!(
            deps.store.review_of("ord-1").map(|r| r.review.rating),
            Some(4),
            "{from}"
        );
    }
}

#[tokio::test]
async fn a_reply_that_is_not_a_rating_is_prompted_and_not_recorded() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));

    let response = text_reply(&deps, "SM007", "Une belle expérience").await;

    assert_eq!(response.status_code, 200);
    assert_eq!(response.body, twiml::message(texts::FR.prompt));
    assert_eq!(deps.store.review_count(), 0);

    // The next reply with a rating is recorded.
    text_reply(&deps, "SM008", "cinq").await;
    assert_eq!(deps.store.review_of("ord-1").unwrap().review.rating, 5);
}

#[tokio::test]
async fn every_accepted_form_is_recorded() {
    for (body, rating) in [
        ("5", 5),
        ("5/5", 5),
        ("⭐⭐⭐⭐", 4),
        ("cinq", 5),
        ("deux, froid", 2),
        ("10/10", 5),
    ] {
        let deps = deps();
        deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
        text_reply(&deps, "SM009", body).await;
        assert_eq!(
            deps.store.review_of("ord-1").map(|r| r.review.rating),
            Some(rating),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_message_with_no_pending_request_is_ignored() {
    let deps = deps();
    deps.store.add_request("+33699999999", "ord-other", days_ago(1));

    let response = text_reply(&deps, "SM010", "5").await;

    assert_eq!(response.status_code, 200);
    assert_eq!(response.body, twiml::no_reply());
    assert_eq!(deps.store.review_count(), 0);
}

#[tokio::test]
async fn a_reply_after_the_window_is_not_matched() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-old", days_ago(15));

    let response = text_reply(&deps, "SM011", "4").await;

    assert_eq!(response.body, twiml::no_reply());
    assert_eq!(deps.store.review_count(), 0);

    // The last day of the window still counts.
    deps.store.add_request(CUSTOMER, "ord-edge", days_ago(14));
    text_reply(&deps, "SM012", "4").await;
    assert_eq!(deps.store.review_of("ord-edge").unwrap().review.rating, 4);
}

#[tokio::test]
async fn the_reply_goes_to_the_latest_request_without_a_review() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-older", days_ago(5));
    deps.store.add_request(CUSTOMER, "ord-newer", days_ago(1));

    text_reply(&deps, "SM013", "5").await;
    text_reply(&deps, "SM014", "3").await;

    assert_eq!(deps.store.review_of("ord-newer").unwrap().review.rating, 5);
    assert_eq!(deps.store.review_of("ord-older").unwrap().review.rating, 3);
}

#[tokio::test]
async fn a_second_reply_does_not_overwrite_the_first() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));

    text_reply(&deps, "SM015", "5 parfait").await;
    let second = text_reply(&deps, "SM016", "1 en fait non").await;

    assert_eq!(second.body, twiml::message(texts::FR.already_reviewed));
    let stored = deps.store.review_of("ord-1").unwrap();
    assert_eq!((stored.review.rating, stored.review.comment.as_str()), (5, "parfait"));
    assert_eq!(deps.store.writes(), 1);
    assert!(deps.alerts.sent().is_empty());
}

#[tokio::test]
async fn a_correction_replaces_the_review_and_keeps_the_previous_rating() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(2));

    text_reply(&deps, "SM017", "5").await;
    let corrected = text_reply(&deps, "SM018", "Correction: 2, froid à l'arrivée").await;

    assert_eq!(corrected.body, twiml::message(texts::FR.thanks_negative));
    let stored = deps.store.review_of("ord-1").unwrap();
    assert_eq!(stored.review.rating, 2);
    assert_eq!(stored.review.comment, "froid à l'arrivée");
    assert_eq!(stored.previous_rating, Some(5));
    assert_eq!(
        stored.review.previous_message_sid,
        Some(crate::testing::message_sid("SM017"))
    );
    assert_eq!(stored.corrected_at.as_deref(), Some("2026-11-24T10:00:00Z"));
    assert_eq!(deps.alerts.sent().len(), 1, "the corrected rating is negative");
    assert!(deps.alerts.sent()[0].corrected);

    // Upwards, the customer reads that the review was updated.
    let again = text_reply(&deps, "SM019", "correction 4").await;
    assert_eq!(again.body, twiml::message(texts::FR.thanks_correction));
    assert_eq!(deps.store.review_of("ord-1").unwrap().review.rating, 4);
}

#[tokio::test]
async fn a_correction_with_nothing_to_correct_is_a_first_review() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
    text_reply(&deps, "SM020", "correction 3").await;
    assert_eq!(deps.store.review_of("ord-1").unwrap().review.rating, 3);
}

#[tokio::test]
async fn a_replayed_message_sid_records_and_alerts_once() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));

    let first = text_reply(&deps, "SM021", "1 horrible").await;
    let retry = text_reply(&deps, "SM021", "1 horrible").await;

    assert_eq!(first.body, retry.body, "the retry gets the same answer");
    assert_eq!(deps.store.writes(), 1);
    assert_eq!(deps.alerts.sent().len(), 1);
}

#[tokio::test]
async fn a_rating_message_replayed_once_a_newer_order_awaits_a_review_rates_nothing() {
    let mut deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(3));
    text_reply(&deps, "SM031", "5").await;
    // Answered "already reviewed" the first time: nothing written, nothing to find later.
    text_reply(&deps, "SM032", "1 nul").await;
    let writes = deps.store.writes();

    // A week later, another order awaits a review; the two signed requests come again.
    deps.clock = Arc::new(FixedClock(now() + TimeDelta::days(7)));
    deps.store.add_request(CUSTOMER, "ord-2", now() + TimeDelta::days(6));
    let replayed = text_reply(&deps, "SM032", "1 nul").await;
    assert_eq!(replayed.status_code, 200);
    assert!(
        deps.store.review_of("ord-2").is_none(),
        "{:?}",
        deps.store.review_of("ord-2")
    );
    // And once the first order has left the reply window, the message that rated it.
    let later = now() + TimeDelta::days(i64::from(config().window_days) + 1);
    deps.clock = Arc::new(FixedClock(later));
    deps.store.add_request(CUSTOMER, "ord-3", later - TimeDelta::days(1));
    text_reply(&deps, "SM031", "5").await;

    assert!(
        deps.store.review_of("ord-3").is_none(),
        "{:?}",
        deps.store.review_of("ord-3")
    );
    assert_eq!(deps.store.writes(), writes);
    assert!(deps.alerts.sent().is_empty());
    // A message never seen still rates the newer order.
    text_reply(&deps, "SM033", "4").await;
    assert_eq!(deps.store.review_of("ord-3").unwrap().review.rating, 4);
}

#[tokio::test]
async fn a_negative_review_produces_exactly_one_alert() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
    deps.store.add_request(CUSTOMER, "ord-2", days_ago(2));

    text_reply(&deps, "SM022", "2 - livré froid").await;
    text_reply(&deps, "SM023", "4").await;

    let alerts = deps.alerts.sent();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].order_id, "ord-1");
    assert_eq!(alerts[0].rating, 2);
    assert_eq!(alerts[0].comment, "livré froid");
    assert_eq!(alerts[0].masked_phone, "+33*******78");
    assert!(
        deps.store
            .review_of("ord-1")
            .unwrap()
            .review
            .alerted_message_sid
            .is_some()
    );
}

#[tokio::test]
async fn an_alert_that_reached_the_shop_on_one_channel_is_not_sent_again() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
    deps.alerts.fail_on_one_channel(true);

    text_reply(&deps, "SM027", "1").await;
    deps.alerts.fail_on_one_channel(false);
    // The same message again: the shop already has the alert on the channel that worked.
    text_reply(&deps, "SM027", "1").await;

    assert_eq!(deps.alerts.sent().len(), 1, "alerted once");
}

#[tokio::test]
async fn an_alert_failure_keeps_the_review_and_a_retry_alerts_again() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
    deps.alerts.fail(true);

    let response = text_reply(&deps, "SM024", "1").await;

    assert_eq!(response.status_code, 200);
    assert_eq!(response.body, twiml::message(texts::FR.thanks_negative));
    assert_eq!(deps.store.review_of("ord-1").unwrap().review.rating, 1);
    assert_eq!(deps.store.review_of("ord-1").unwrap().review.alerted_message_sid, None);

    // Twilio delivers the same message again: nothing is written, the alert is retried.
    deps.alerts.fail(false);
    text_reply(&deps, "SM024", "1").await;
    assert_eq!(deps.store.writes(), 1);
    assert_eq!(deps.alerts.sent().len(), 1);
    assert!(
        deps.store
            .review_of("ord-1")
            .unwrap()
            .review
            .alerted_message_sid
            .is_some()
    );

    // And once more: already alerted, nothing more.
    text_reply(&deps, "SM024", "1").await;
    assert_eq!(deps.alerts.sent().len(), 1);
}

#[tokio::test]
async fn a_review_recorded_elsewhere_counts_as_reviewed() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
    deps.store.add_review("ord-1", 5);

    let response = text_reply(&deps, "SM025", "3").await;

    assert_eq!(response.body, twiml::message(texts::FR.already_reviewed));
    assert_eq!(deps.store.review_of("ord-1").unwrap().review.rating, 5);

    // Chatting after the review gets no prompt.
    let chat = text_reply(&deps, "SM026", "Bonjour, vous ouvrez dimanche ?").await;
    assert_eq!(chat.body, twiml::no_reply());
}

#[test]
fn reads_its_settings() {
    let config = config();
    assert_eq!(config.window_days, 14);
    assert_eq!(config.webhook_url, None);
    assert_eq!(config.alert_topic_arn, None);

    let full = ReplyConfig::from_env(&env(&[
        ("ORDERS_TABLE", "o"),
        ("REVIEWS_TABLE", "r"),
        ("CONSENT_TABLE", "c"),
        ("REPLY_WEBHOOK_URL", "https://hooks.example/reply"),
        ("REPLY_WINDOW_DAYS", "7"),
        ("ALERT_TOPIC_ARN", "arn:aws:sns:eu-west-3:123456789012:negative"),
        ("ADMIN_WHATSAPP_TO", "whatsapp:+33612345678"),
        ("ADMIN_ALERT_TEMPLATE_SID", "HX0123456789abcdef0123456789abcdef"),
    ]))
    .unwrap();
    assert_eq!(full.window_days, 7);
    assert_eq!(full.admin_whatsapp_to.unwrap().as_str(), "+33612345678");

    for (name, value) in [
        ("REPLY_WEBHOOK_URL", "ftp://x"),
        ("REPLY_WINDOW_DAYS", "0"),
        ("ADMIN_WHATSAPP_TO", "0612"),
    ] {
        let error = ReplyConfig::from_env(&env(&[
            ("ORDERS_TABLE", "o"),
            ("REVIEWS_TABLE", "r"),
            ("CONSENT_TABLE", "c"),
            (name, value),
        ]))
        .unwrap_err()
        .to_string();
        assert!(error.contains(name), "{error}");
    }
    // The number alone (there for the daily report): the webhook starts, alerts by e-mail.
    let number_only = ReplyConfig::from_env(&env(&[
        ("ORDERS_TABLE", "o"),
        ("REVIEWS_TABLE", "r"),
        ("CONSENT_TABLE", "c"),
        ("ADMIN_WHATSAPP_TO", "+33612345678"),
    ]))
    .unwrap();
    assert_eq!(number_only.admin_alert_template_sid, None);
    let template_only = ReplyConfig::from_env(&env(&[
        ("ORDERS_TABLE", "o"),
        ("REVIEWS_TABLE", "r"),
        ("CONSENT_TABLE", "c"),
        ("ADMIN_ALERT_TEMPLATE_SID", "HX0123456789abcdef0123456789abcdef"),
    ]));
    assert_eq!(template_only, Err(ConfigError::Missing("ADMIN_WHATSAPP_TO")));
}

/// The one EMF line the documents make, parsed back.
fn emf_line(documents: &[MetricDocument]) -> serde_json::Value {
    let mut out = Vec::new();
    crate::runtime::metrics::emit_to(&mut out, documents, 0).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    serde_json::from_str(text.trim()).unwrap()
}

#[test]
fn metrics_count_the_review_and_its_rating() {
    let summary = Summary {
        outcome: Some(ReplyOutcome::Recorded),
        result: Some(ReplyResult {
            outcome: ReplyOutcome::Recorded,
            order_id: Some("ord-1".into()),
            rating: Some(2),
            source: Some(RatingSource::Text),
            alert: AlertStatus::Failed,
            answer: None,
            new_review: true,
        }),
        duration_ms: 12,
        ..Summary::default()
    };
    let line = emf_line(&summary.metrics());
    assert_eq!(line["Function"], "record-review-reply");
    assert_eq!(line["ReviewsRecorded"], 1);
    assert_eq!(line["NegativeReviews"], 1);
    assert_eq!(line["ReviewRating"], 2);
    assert_eq!(line["NegativeReviewAlertFailures"], 1);
    assert_eq!(line["RejectedSignatures"], 0);

    let rejected = Summary {
        outcome: Some(ReplyOutcome::RejectedSignature),
        ..Summary::default()
    };
    let line = emf_line(&rejected.metrics());
    assert_eq!(line["RejectedSignatures"], 1);
    assert_eq!(line["ReviewsRecorded"], 0);
    assert!(line.get("ReviewRating").is_none());
}

#[test]
fn store_errors_reach_lambda_typed() {
    let diagnostic: Diagnostic = JobError::Store(StoreError {
        operation: "Query",
        table: "orders".into(),
        message: "ThrottlingException".into(),
        retryable: true,
    })
    .into();
    assert_eq!(diagnostic.error_type, "Retryable.DynamoDb");
}

#[test]
fn reads_an_event_with_null_parts() {
    let request: FunctionUrlRequest = serde_json::from_value(serde_json::json!({
        "rawPath": "/",
        "rawQueryString": null,
        "headers": {"host": "x.lambda-url.eu-west-3.on.aws"},
        "body": null,
        "cookies": null,
        "isBase64Encoded": null,
        "requestContext": {"domainName": null, "http": {"method": "POST"}},
    }))
    .unwrap();
    // No routed domain: the URL is unknown (the Host header is not trusted for it).
    assert_eq!(request.function_url(), None);
    assert_eq!(request.body, None);
}

/// A body of `count` empty parameters (`a&a&a…`): tiny on the wire, large once decoded.
fn many_params_event(count: usize, signature: Option<&str>) -> FunctionUrlRequest {
    let mut request = event(&[], signature, false);
    request.body = Some("a&".repeat(count));
    request
}

/// The most heap `respond` holds at once for `request`, beyond what the thread held.
fn peak_bytes_of(deps: &ReplyDeps<MemoryReplies, RecordingAlerts>, request: &FunctionUrlRequest) -> (u16, usize) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let (response, peak) = crate::alloc_meter::peak_bytes_during(|| runtime.block_on(respond(deps, request)));
    (response.unwrap().status_code, peak)
}

/// An unauthenticated request costs a small constant, whatever its body: the header is
/// checked, then the size and parameter count, before anything is decoded.
const REFUSAL_PEAK_LIMIT: usize = 64 * 1024;

#[test]
fn a_multi_megabyte_many_parameter_body_is_refused_in_constant_memory() {
    let deps = deps();
    let three_mb = 1_500_000;
    for (name, request, status) in [
        ("no signature", many_params_event(three_mb, None), 403),
        (
            "malformed signature",
            many_params_event(three_mb, Some("not-a-signature")),
            403,
        ),
        (
            "well-formed wrong signature",
            many_params_event(three_mb, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")),
            413,
        ),
        (
            "under the size cap, over the parameter cap",
            many_params_event(MAX_BODY_BYTES / 2 - 1, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")),
            400,
        ),
    ] {
        let (answered, peak) = peak_bytes_of(&deps, &request);
        assert_eq!(answered, status, "{name}");
        assert!(
            peak < REFUSAL_PEAK_LIMIT,
            "{name}: peak heap {peak} bytes, limit {REFUSAL_PEAK_LIMIT}"
        );
    }
    assert_eq!(deps.store.queries(), 0, "nothing was looked up");
}

#[test]
fn a_base64_body_over_the_cap_is_refused_before_decoding() {
    let deps = deps();
    let mut request = event(&[], Some("RSOYDt4T1cUTdK1PDd93/VVr8B8="), true);
    request.body = Some(BASE64.encode("a&".repeat(1_500_000)));
    let (status, peak) = peak_bytes_of(&deps, &request);
    assert_eq!(status, 413);
    assert!(peak < REFUSAL_PEAK_LIMIT, "peak heap {peak} bytes");
}

#[tokio::test]
async fn a_signature_for_the_url_in_the_host_header_is_not_accepted() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
    let params = reply(CUSTOMER, "SM090", "1 horrible");
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Signed for another URL (a signature captured elsewhere for the same account), with
    // the Host header pointing there; Lambda routed the request by its own domain.
    let signature = SignatureValidator::new(AuthToken::new(TOKEN)).sign("https://other.example/", &owned(&params));
    let mut request = event(&params, Some(&signature), false);
    request.headers.insert("host".into(), "other.example".into());

    let response = respond(&deps, &request).await.unwrap();

    assert_eq!(response.status_code, 403);
    assert_eq!(deps.store.review_count(), 0);
}

/// A customer's reply sequence, each reply its own MessageSid.
async fn replies_in_order(deps: &ReplyDeps<MemoryReplies, RecordingAlerts>, replies: &[(&str, &str)]) {
    for (sid, body) in replies {
        assert_eq!(text_reply(deps, sid, body).await.status_code, 200, "{sid} {body}");
    }
}

#[tokio::test]
async fn a_late_retry_of_an_older_correction_changes_nothing() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
    replies_in_order(
        &deps,
        &[
            ("SM101", "5"),
            ("SM102", "correction 1"),
            ("SM103", "correction 4"),
            ("SM104", "correction 5"),
        ],
    )
    .await;
    let writes = deps.store.writes();
    assert_eq!(deps.alerts.sent().len(), 1, "the correction to 1 alerted once");

    // Twilio retries SM102 (and the first reply) late.
    let retry = text_reply(&deps, "SM102", "correction 1").await;
    text_reply(&deps, "SM101", "5").await;

    assert_eq!(retry.status_code, 200);
    let stored = deps.store.review_of("ord-1").unwrap();
    assert_eq!(stored.review.rating, 5, "the latest correction stands");
    assert_eq!(stored.review.message_sid, Some(crate::testing::message_sid("SM104")));
    assert_eq!(deps.store.writes(), writes, "nothing written");
    assert_eq!(deps.alerts.sent().len(), 1, "no second alert for the same MessageSid");
    assert!(
        ["SM101", "SM102", "SM103", "SM104"]
            .iter()
            .all(|sid| stored.review.message_sids.contains(&crate::testing::message_sid(sid)))
    );
}

#[tokio::test]
async fn corrections_alert_at_most_once_per_cooldown() {
    let clock = Arc::new(crate::runtime::clock::ManualClock::new(now()));
    let deps = ReplyDeps {
        clock: clock.clone(),
        ..deps()
    };
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));

    replies_in_order(
        &deps,
        &[
            ("SM111", "1 froid"),
            ("SM112", "correction 1"),
            ("SM113", "correction 2 toujours froid"),
        ],
    )
    .await;
    assert_eq!(deps.alerts.sent().len(), 1);
    assert_eq!(deps.store.review_of("ord-1").unwrap().review.rating, 2);

    // Within the cooldown (24 h by default), still nothing more.
    clock.advance(TimeDelta::hours(23));
    text_reply(&deps, "SM114", "correction 1").await;
    assert_eq!(deps.alerts.sent().len(), 1);

    // After it, a new negative correction alerts again, once.
    clock.advance(TimeDelta::hours(2));
    replies_in_order(
        &deps,
        &[("SM115", "correction 1 inacceptable"), ("SM116", "correction 1")],
    )
    .await;
    let alerts = deps.alerts.sent();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[1].comment, "inacceptable");
    assert!(alerts[1].corrected);
}

#[tokio::test]
async fn a_failed_alert_is_given_back_and_the_retry_sends_it() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
    deps.alerts.fail(true);
    text_reply(&deps, "SM121", "1").await;
    let review = deps.store.review_of("ord-1").unwrap().review;
    assert_eq!((review.alerted_at, review.alerted_message_sid), (None, None));

    deps.alerts.fail(false);
    text_reply(&deps, "SM121", "1").await;
    assert_eq!(deps.alerts.sent().len(), 1, "the cooldown did not block the retry");
}

#[test]
fn reads_the_alert_cooldown() {
    let with = |value| {
        ReplyConfig::from_env(&env(&[
            ("ORDERS_TABLE", "o"),
            ("REVIEWS_TABLE", "r"),
            ("CONSENT_TABLE", "c"),
            ("ALERT_COOLDOWN_HOURS", value),
        ]))
    };
    assert_eq!(config().alert_cooldown_hours, 24);
    assert_eq!(with("6").unwrap().alert_cooldown_hours, 6);
    for bad in ["0", "721", "soon"] {
        let error = with(bad).unwrap_err().to_string();
        assert!(error.contains("ALERT_COOLDOWN_HOURS"), "{error}");
    }
}

#[tokio::test]
async fn a_consent_keyword_delivered_again_is_answered_but_not_counted_again() {
    let deps = deps();
    let stop = IncomingReply {
        from: PhoneNumber::parse(CUSTOMER).unwrap(),
        message_sid: "SM105".into(),
        body: "STOP".into(),
        button_payload: None,
    };

    let first = record_reply(&deps, &stop).await.unwrap();
    let again = record_reply(&deps, &stop).await.unwrap();

    assert_eq!(first.outcome, ReplyOutcome::OptedOut);
    assert_eq!(
        again.outcome,
        ReplyOutcome::Replayed,
        "no second OptOuts in the metrics"
    );
    assert_eq!(again.twiml(), first.twiml(), "the customer is answered as before");
    assert_eq!(deps.store.consents().len(), 1);
}

#[tokio::test]
async fn an_opt_out_word_is_recorded_confirmed_and_never_taken_for_a_review() {
    use crate::domain::consent::{ConsentChange, ConsentSource, OptOut};
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));

    let response = text_reply(&deps, "SM101", " Arrêt ! ").await;
    assert_eq!(response.status_code, 200);
    assert_eq!(response.body, twiml::message(texts::FR.opted_out));
    assert_eq!(
        deps.store.review_count(),
        0,
        "a pending request does not make STOP a review"
    );

    let mut button = reply(CUSTOMER, "SM102", "No promotions");
    button.push(("ButtonPayload", "stop_marketing".into()));
    assert_eq!(
        send(&deps, &button).await.body,
        twiml::message(texts::FR.opted_out_marketing)
    );
    assert_eq!(
        text_reply(&deps, "SM103", "start").await.body,
        twiml::message(texts::FR.opted_in)
    );
    assert_eq!(
        deps.store.consents(),
        vec![
            (
                CUSTOMER.to_owned(),
                ConsentChange::OptOut(OptOut::All),
                ConsentSource::Keyword
            ),
            (
                CUSTOMER.to_owned(),
                ConsentChange::OptOut(OptOut::Marketing),
                ConsentSource::Button
            ),
            (CUSTOMER.to_owned(), ConsentChange::OptIn, ConsentSource::Keyword),
        ]
    );
    // The rating that follows is a review as before.
    text_reply(&deps, "SM104", "5").await;
    assert_eq!(deps.store.review_of("ord-1").unwrap().review.rating, 5);
}

#[tokio::test]
async fn the_answers_come_in_the_shop_s_language() {
    let mut deps = deps();
    deps.config = ReplyConfig::from_env(&env(&[
        ("ORDERS_TABLE", "orders"),
        ("REVIEWS_TABLE", "reviews"),
        ("CONSENT_TABLE", "consent"),
        ("SHOP_LOCALE", "en"),
    ]))
    .unwrap();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
    assert_eq!(
        text_reply(&deps, "SM201", "bof").await.body,
        twiml::message(texts::EN.prompt)
    );
    assert_eq!(
        text_reply(&deps, "SM202", "5").await.body,
        twiml::message(texts::EN.thanks)
    );
    // French by default.
    let french = super::tests::deps();
    french.store.add_request(CUSTOMER, "ord-1", days_ago(1));
    assert_eq!(
        text_reply(&french, "SM203", "5").await.body,
        twiml::message(texts::FR.thanks)
    );
}

mod forwarding {
    use std::time::Duration;

    use wiremock::matchers::{header_exists, method};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::jobs::record_review_reply::forward::Forwarder;

    async fn shop_handler(answer: ResponseTemplate) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(header_exists("x-twilio-signature"))
            .respond_with(answer)
            .mount(&server)
            .await;
        server
    }

    fn forwarding_deps(server: &MockServer, timeout: Duration) -> ReplyDeps<MemoryReplies, RecordingAlerts> {
        let mut deps = deps();
        let url = format!("{}/whatsapp/inbound", server.uri());
        deps.forwarder = Some(Forwarder::new(url, SignatureValidator::new(AuthToken::new(TOKEN)), timeout).unwrap());
        deps
    }

    #[tokio::test]
    async fn a_message_that_is_not_a_review_reply_goes_to_the_shop_s_handler_signed_for_its_url() {
        let server = shop_handler(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/xml")
                .set_body_string("<Response><Message>Votre commande arrive demain.</Message></Response>"),
        )
        .await;
        let deps = forwarding_deps(&server, Duration::from_secs(2));

        let response = text_reply(&deps, "SM301", "Où est ma commande ?").await;

        assert_eq!(response.status_code, 200);
        assert!(
            response.body.contains("Votre commande arrive demain."),
            "{}",
            response.body
        );
        let received = server.received_requests().await.unwrap();
        assert_eq!(received.len(), 1);
        // Unchanged, and signed with the account's token for the handler's own URL.
        let params = form_params(&received[0].body);
        assert_eq!(
            params,
            owned(
                &reply(CUSTOMER, "SM301", "Où est ma commande ?")
                    .iter()
                    .map(|(k, v)| (*k, v.as_str()))
                    .collect::<Vec<_>>()
            )
        );
        let signature = received[0].headers.get("x-twilio-signature").unwrap().to_str().unwrap();
        let url = format!("{}/whatsapp/inbound", server.uri());
        assert_eq!(
            signature,
            SignatureValidator::new(AuthToken::new(TOKEN)).sign(&url, &params)
        );
    }

    #[tokio::test]
    async fn a_review_or_a_consent_reply_stays_here_and_a_slow_or_failing_handler_costs_only_its_answer() {
        let server = shop_handler(ResponseTemplate::new(200).set_delay(Duration::from_secs(3))).await;
        let deps = forwarding_deps(&server, Duration::from_millis(300));
        deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));

        let rating = text_reply(&deps, "SM302", "5 parfait").await;
        assert_eq!(rating.body, twiml::message(texts::FR.thanks));
        let stop = text_reply(&deps, "SM303", "STOP").await;
        assert_eq!(stop.body, twiml::message(texts::FR.opted_out));
        assert!(
            server.received_requests().await.unwrap().is_empty(),
            "neither is forwarded"
        );

        let started = std::time::Instant::now();
        let chat = text_reply(&deps, "SM304", "merci, à bientôt").await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the slow handler is given up on"
        );
        assert_eq!(chat.body, twiml::no_reply());
        assert_eq!(deps.store.review_of("ord-1").unwrap().review.rating, 5);

        let failing = shop_handler(ResponseTemplate::new(500)).await;
        let deps = forwarding_deps(&failing, Duration::from_secs(2));
        assert_eq!(text_reply(&deps, "SM305", "bonjour").await.body, twiml::no_reply());
    }
}

/// A status callback for the message `reference`, signed by Twilio; with the account's
/// `AccountSid`, as Twilio sends it, unless `params` has one.
fn status_event(reference: &str, params: &[(&str, &str)]) -> FunctionUrlRequest {
    let validator = SignatureValidator::new(AuthToken::new(TOKEN));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("message", reference)
        .finish();
    let mut params = owned(params);
    if !params.iter().any(|(name, _)| name == "AccountSid") {
        params.push(("AccountSid".into(), crate::testing::TEST_ACCOUNT_SID.into()));
    }
    signed_twilio_post(&validator, &format!("{URL}?{query}"), &params).unwrap()
}

async fn status(deps: &ReplyDeps<MemoryReplies, RecordingAlerts>, sid: &str, status: &str) -> FunctionUrlResponse {
    let params = [
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("To", "whatsapp:+33612345678"),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
    ];
    respond(deps, &status_event("payment_reminder#A-1", &params))
        .await
        .unwrap()
}

#[tokio::test]
async fn delivery_statuses_are_recorded_once_whatever_their_order() {
    let deps = deps();
    deps.store.add_sent_message("payment_reminder#A-1", "SM9");

    assert_eq!(status(&deps, "SM9", "read").await.status_code, 200);
    for late_or_again in ["delivered", "sent", "read", "queued"] {
        assert_eq!(status(&deps, "SM9", late_or_again).await.status_code, 200);
    }

    assert_eq!(
        deps.store.delivery_of("payment_reminder#A-1"),
        Some(crate::messages::delivery::DeliveryStatus::Read),
        "a late status never overwrites read"
    );
    let counted = deps.store.counted();
    assert_eq!(
        counted.get("delivered.payment_reminder"),
        Some(&1),
        "read passed delivered"
    );
    assert_eq!(counted.get("read.payment_reminder"), Some(&1));
    assert_eq!(
        counted.get("received"),
        None,
        "a status is not a message from a customer"
    );
}

#[tokio::test]
async fn an_undelivered_status_is_counted_with_its_error_code_once() {
    let deps = deps();
    deps.store.add_sent_message("payment_reminder#A-1", "SM9");
    let params = [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("MessageSid", "SM9"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "63016"),
    ];
    for _ in 0..2 {
        let response = respond(&deps, &status_event("payment_reminder#A-1", &params))
            .await
            .unwrap();
        assert_eq!(response.status_code, 200);
    }
    assert_eq!(deps.store.counted().get("undelivered.payment_reminder"), Some(&1));
    assert_eq!(
        deps.store.delivery_of("payment_reminder#A-1"),
        Some(crate::messages::delivery::DeliveryStatus::Undelivered)
    );
}

#[tokio::test]
async fn a_forged_or_re_aimed_status_callback_is_refused_and_records_nothing() {
    let deps = deps();
    deps.store.add_sent_message("payment_reminder#A-1", "SM9");
    deps.store.add_sent_message("payment_reminder#A-2", "SM8");
    let params = [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("MessageSid", "SM9"),
        ("MessageStatus", "read"),
    ];

    let forger = SignatureValidator::new(AuthToken::new("not-the-token"));
    let forged = signed_twilio_post(
        &forger,
        &format!("{URL}?message=payment_reminder%23A-1"),
        &owned(&params),
    )
    .unwrap();
    assert_eq!(respond(&deps, &forged).await.unwrap().status_code, 403);

    // Twilio's genuine callback for A-1, its query changed to point at A-2.
    let mut re_aimed = status_event("payment_reminder#A-1", &params);
    re_aimed.raw_query_string = "message=payment_reminder%23A-2".into();
    assert_eq!(respond(&deps, &re_aimed).await.unwrap().status_code, 403);

    // Its last character moved out of the query into a parameter of its own, or into the
    // first one's name: the signed text, and so the signature, stay the same.
    deps.store.add_sent_message("payment_reminder#A-", "SM7");
    let genuine = status_event("payment_reminder#A-1", &params);
    let signature = genuine.header(SIGNATURE_HEADER).unwrap().to_owned();
    for shifted in [
        vec![("1", ""), params[0], params[1], params[2]],
        vec![("1AccountSid", params[0].1), params[1], params[2]],
    ] {
        assert_eq!(
            deps.validator
                .sign(&format!("{URL}?message=payment_reminder%23A-"), &owned(&shifted)),
            signature,
            "the signature still holds"
        );
        let mut event = event(&shifted, Some(&signature), false);
        event.raw_query_string = "message=payment_reminder%23A-".into();
        assert_eq!(respond(&deps, &event).await.unwrap().status_code, 400, "{shifted:?}");
    }

    assert_eq!(deps.store.delivery_of("payment_reminder#A-1"), None);
    assert_eq!(deps.store.delivery_of("payment_reminder#A-2"), None);
    assert_eq!(deps.store.delivery_of("payment_reminder#A-"), None);
    assert!(deps.store.counted().is_empty());
}

#[tokio::test]
async fn a_callback_url_ending_as_made_is_read_whatever_parameters_twilio_adds_and_one_split_anew_is_not() {
    let deps = deps();
    deps.store.add_sent_message("payment_reminder#A-1", "SM9");
    let url = format!("{URL}?message=payment_reminder%23A-1&end=1");
    // No AccountSid, and a name sorting before it: a parameter Twilio may add some day.
    let params = [("A2PCampaign", "x"), ("MessageSid", "SM9"), ("MessageStatus", "read")];
    let callback = signed_twilio_post(&deps.validator, &url, &owned(&params)).unwrap();

    assert_eq!(respond(&deps, &callback).await.unwrap().status_code, 200);
    assert_eq!(
        deps.store.delivery_of("payment_reminder#A-1"),
        Some(crate::messages::delivery::DeliveryStatus::Read)
    );

    // The URL's last character moved into a parameter of its own: same signed text.
    let signature = callback.header(SIGNATURE_HEADER).unwrap().to_owned();
    let shifted = [("1A2PCampaign", "x"), ("MessageSid", "SM9"), ("MessageStatus", "read")];
    let mut split_anew = event(&shifted, Some(&signature), false);
    split_anew.raw_query_string = "message=payment_reminder%23A-1&end=".into();
    assert_eq!(respond(&deps, &split_anew).await.unwrap().status_code, 400);
}

#[tokio::test]
async fn a_status_callback_is_read_when_the_webhook_url_is_written_without_a_path() {
    // The template takes the URL as typed; the callback URL given to Twilio is its normal
    // form (lower-case host, a `/` path), which is the one Twilio signs.
    let typed = "https://Reviews.Shop.example";
    let mut deps = deps();
    deps.config.webhook_url = Some(typed.into());
    deps.store.add_sent_message("payment_reminder#A-1", "SM9");
    let sender = crate::testing::twilio_client(
        "http://127.0.0.1:9",
        "token",
        &[("TWILIO_WHATSAPP_FROM", "+33600000000"), ("STATUS_CALLBACK_URL", typed)],
    );
    let callback_url = sender.status_callback("payment_reminder#A-1").unwrap();
    assert!(
        callback_url.starts_with("https://reviews.shop.example/?"),
        "{callback_url}"
    );
    let params = [("MessageSid", "SM9"), ("MessageStatus", "read")];
    let callback = signed_twilio_post(&deps.validator, &callback_url, &owned(&params)).unwrap();

    assert_eq!(respond(&deps, &callback).await.unwrap().status_code, 200);
    assert_eq!(
        deps.store.delivery_of("payment_reminder#A-1"),
        Some(crate::messages::delivery::DeliveryStatus::Read)
    );
}

#[tokio::test]
async fn a_status_for_another_sid_or_an_unknown_message_changes_nothing() {
    let deps = deps();
    deps.store.add_sent_message("payment_reminder#A-1", "SM9");
    assert_eq!(status(&deps, "SM-other", "read").await.status_code, 200);
    assert_eq!(deps.store.delivery_of("payment_reminder#A-1"), None);
    let unknown = respond(
        &deps,
        &status_event(
            "order_confirmation#nope",
            &[("MessageSid", "SM1"), ("MessageStatus", "read")],
        ),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status_code, 200);
    assert!(deps.store.counted().is_empty());
}

#[tokio::test]
async fn a_signed_status_callback_with_bad_fields_is_refused_by_name() {
    let deps = deps();
    for (reference, params, reason) in [
        (
            "nonsense",
            vec![("MessageSid", "SM1"), ("MessageStatus", "read")],
            "invalid message reference",
        ),
        (
            "payment_reminder#A-1",
            vec![("MessageStatus", "read")],
            "missing MessageSid",
        ),
        (
            "payment_reminder#A-1",
            vec![("MessageSid", "SM1"), ("MessageStatus", "lost")],
            "unknown MessageStatus",
        ),
        (
            "payment_reminder#A-1",
            vec![("MessageSid", "SM1"), ("MessageStatus", "failed"), ("ErrorCode", "12x")],
            "invalid ErrorCode",
        ),
    ] {
        let response = respond(&deps, &status_event(reference, &params)).await.unwrap();
        assert_eq!((response.status_code, response.body.as_str()), (400, reason));
    }
}

#[tokio::test]
async fn replies_and_reviews_are_counted_for_the_day_and_a_replay_is_not() {
    let deps = deps();
    deps.store.add_request(CUSTOMER, "ord-1", days_ago(1));
    deps.store.add_request("+33698765432", "ord-2", days_ago(1));

    text_reply(&deps, "SM001", "2 trop tard").await;
    text_reply(&deps, "SM001", "2 trop tard").await;
    send(&deps, &reply("+33698765432", "SM002", "5")).await;
    send(&deps, &reply("+33611111111", "SM003", "bonjour")).await;

    let counted = deps.store.counted();
    assert_eq!(counted.get("received"), Some(&3), "the replay is not counted");
    assert_eq!(counted.get("reviews"), Some(&2));
    assert_eq!(counted.get("ratingSum"), Some(&7));
    assert_eq!(counted.get("negativeReviewCount"), Some(&1));
    assert_eq!(counted.get("negativeReviews:ord-1:2"), Some(&1));
}
