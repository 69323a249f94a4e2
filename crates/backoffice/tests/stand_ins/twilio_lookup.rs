//! Reading Twilio's Messages list for reconciliation, against a scripted Twilio (wiremock):
//! the pages it follows, the ones it refuses to follow, and Twilio down or slow.

use std::time::Duration;

use backoffice::domain::phone::PhoneNumber;
use backoffice::testing::twilio_client;
use backoffice::twilio::{LookupError, TwilioClient};
use chrono::{DateTime, Utc};
use serde_json::json;
use wiremock::matchers::{header_exists, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MESSAGES_PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";

fn client(base_url: &str) -> TwilioClient {
    twilio_client(
        base_url,
        "s3cr3t-token-value",
        &[("TWILIO_WHATSAPP_FROM", "+14155550100"), ("TWILIO_TIMEOUT_MS", "500")],
    )
}

fn customer() -> PhoneNumber {
    PhoneNumber::parse("+33612345678").unwrap()
}

fn since() -> DateTime<Utc> {
    "2026-12-03T08:58:00Z".parse().unwrap()
}

fn message(sid: &str, direction: &str, from: &str) -> serde_json::Value {
    json!({
        "sid": sid,
        "to": "whatsapp:+33612345678",
        "from": from,
        "body": "Reminder: order A-1001 awaits payment",
        "direction": direction,
        "status": "delivered",
        "date_created": "Thu, 03 Dec 2026 09:00:03 +0000",
        "date_sent": "Thu, 03 Dec 2026 09:00:04 +0000",
        "messaging_service_sid": null,
    })
}

fn page(messages: Vec<serde_json::Value>, next: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "messages": messages,
        "next_page_uri": next,
        "page": 0,
        "page_size": 100,
    }))
}

#[tokio::test]
async fn reads_every_page_of_the_recipients_messages_with_the_accounts_credentials() {
    let server = MockServer::start().await;
    let next = format!("{MESSAGES_PATH}?To=whatsapp%3A%2B33612345678&PageSize=100&Page=1&PageToken=PA1");
    Mock::given(method("GET"))
        .and(path(MESSAGES_PATH))
        .and(query_param("To", "whatsapp:+33612345678"))
        .and(query_param("DateSent>", "2026-12-03"))
        .and(header_exists("authorization"))
        .respond_with(page(
            vec![message("SM1", "outbound-api", "whatsapp:+14155550100")],
            Some(&next),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(MESSAGES_PATH))
        .and(query_param("PageToken", "PA1"))
        .and(header_exists("authorization"))
        .respond_with(page(
            vec![
                message("SM2", "inbound", "whatsapp:+33612345678"),
                message("SM3", "outbound-api", "whatsapp:+19995550000"),
            ],
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server.uri());

    let list = client.messages_to(&customer(), since()).await.unwrap();

    assert_eq!(list.requests, 2);
    let sids: Vec<_> = list.messages.iter().map(|m| m.sid.as_str()).collect();
    assert_eq!(sids, ["SM1", "SM2", "SM3"]);
    let ours: Vec<_> = list
        .messages
        .iter()
        .filter(|m| client.sent_by_us(m))
        .map(|m| m.sid.as_str())
        .collect();
    assert_eq!(
        ours,
        ["SM1"],
        "the customer's own message and another sender's are not ours"
    );
}

#[tokio::test]
async fn never_follows_a_next_page_outside_the_accounts_messages_list() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(MESSAGES_PATH))
        .respond_with(page(
            Vec::new(),
            Some("/2010-04-01/Accounts/ACother/Messages.json?Page=1"),
        ))
        .expect(1)
        .mount(&server)
        .await;

    let error = client(&server.uri())
        .messages_to(&customer(), since())
        .await
        .unwrap_err();

    assert!(matches!(error, LookupError::ForeignNextPage(_)), "{error:?}");
}

#[tokio::test]
async fn twilio_refusing_failing_or_silent_is_an_error_not_an_empty_list() {
    for (answer, expected_status) in [
        (ResponseTemplate::new(500), Some(500)),
        (ResponseTemplate::new(429), Some(429)),
        (ResponseTemplate::new(401), Some(401)),
        (page(Vec::new(), None).set_delay(Duration::from_secs(2)), None),
        (ResponseTemplate::new(200).set_body_string("<html>gateway</html>"), None),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET")).respond_with(answer).mount(&server).await;

        let error = client(&server.uri())
            .messages_to(&customer(), since())
            .await
            .unwrap_err();

        match expected_status {
            Some(status) => assert_eq!(error, LookupError::Refused { status }),
            None => assert!(
                matches!(error, LookupError::Unreachable(_) | LookupError::Unreadable(_)),
                "{error:?}"
            ),
        }
    }
}

#[tokio::test]
async fn stops_after_the_most_pages_it_reads_for_one_recipient() {
    let server = MockServer::start().await;
    let next = format!("{MESSAGES_PATH}?Page=1&PageToken=again");
    Mock::given(method("GET"))
        .and(path(MESSAGES_PATH))
        .respond_with(page(
            vec![message("SM1", "outbound-api", "whatsapp:+14155550100")],
            Some(&next),
        ))
        .mount(&server)
        .await;

    let error = client(&server.uri())
        .messages_to(&customer(), since())
        .await
        .unwrap_err();

    assert_eq!(error, LookupError::TooManyPages);
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        backoffice::twilio::MAX_LIST_PAGES as usize
    );
}
