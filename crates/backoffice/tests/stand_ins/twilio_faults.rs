//! The Twilio client against a scripted fake Twilio (wiremock): what it sends, and how it
//! behaves when Twilio is slow, refuses, rate limits, fails or drops the connection.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use backoffice::domain::phone::PhoneNumber;
use backoffice::twilio::{MessageContent, RetryPolicy, SendError, SentMessage, TwilioClient};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use backoffice::testing::{TEST_ACCOUNT_SID, twilio_client};
const AUTH_TOKEN: &str = "s3cr3t-token-value";
/// `base64("AC0123456789abcdef0123456789abcdef:s3cr3t-token-value")`, worked out by hand so
/// the test does not share the client's encoding.
const EXPECTED_AUTHORIZATION: &str = "Basic QUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjpzM2NyM3QtdG9rZW4tdmFsdWU=";
const MESSAGES_PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";
const TEMPLATE_SID: &str = "HX0123456789abcdef0123456789abcdef";

fn client_for(base_url: &str, extra: &[(&str, &str)]) -> TwilioClient {
    let mut settings = vec![
        ("TWILIO_WHATSAPP_FROM", "+14155550100"),
        ("TWILIO_MAX_MPS", "1000"),
        ("TWILIO_TIMEOUT_MS", "2000"),
    ];
    settings.extend_from_slice(extra);
    twilio_client(base_url, AUTH_TOKEN, &settings)
}

fn customer() -> PhoneNumber {
    PhoneNumber::parse("+33612345678").unwrap()
}

fn review_template() -> MessageContent {
    MessageContent::Template {
        content_sid: TEMPLATE_SID.into(),
        variables: BTreeMap::from([("1".into(), "Ana".into()), ("2".into(), "A-1001".into())]),
    }
}

/// Short pauses so the retry tests stay fast; `Retry-After` is honoured up to 5 s.
fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
        retry_before: None,
    }
}

fn created(sid: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(serde_json::json!({
        "account_sid": TEST_ACCOUNT_SID,
        "sid": sid,
        "status": "queued",
        "to": "whatsapp:+33612345678",
        "from": "whatsapp:+14155550100",
        "error_code": null,
    }))
}

fn twilio_error(status: u16, code: u32, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(serde_json::json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    }))
}

fn form_of(request: &Request) -> Vec<(String, String)> {
    url::form_urlencoded::parse(&request.body).into_owned().collect()
}

/// A Twilio stand-in that answers `first` to the first request, then creates `sid`.
async fn failing_once_then_created(first: ResponseTemplate, sid: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(created(sid))
        .mount(&server)
        .await;
    server
}

async fn requests_received(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn a_template_send_posts_the_exact_form_with_basic_auth() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .respond_with(created("SM11111111111111111111111111111111"))
        .mount(&server)
        .await;
    let client = client_for(&server.uri(), &[]);

    let sent = client.send_whatsapp(&customer(), &review_template()).await.unwrap();

    assert_eq!(
        sent,
        SentMessage {
            sid: "SM11111111111111111111111111111111".into(),
            status: "queued".into(),
        }
    );
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.url.path(), MESSAGES_PATH);
    assert_eq!(request.headers.get("authorization").unwrap(), EXPECTED_AUTHORIZATION);
    assert_eq!(
        request.headers.get("content-type").unwrap(),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        form_of(request),
        [
            ("To".to_owned(), "whatsapp:+33612345678".to_owned()),
            ("From".to_owned(), "whatsapp:+14155550100".to_owned()),
            ("ContentSid".to_owned(), TEMPLATE_SID.to_owned()),
            ("ContentVariables".to_owned(), r#"{"1":"Ana","2":"A-1001"}"#.to_owned()),
            ("ValidityPeriod".to_owned(), "900".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_messaging_service_body_send_posts_messaging_service_sid_and_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .respond_with(created("SM22222222222222222222222222222222"))
        .mount(&server)
        .await;
    let client = twilio_client(
        &server.uri(),
        AUTH_TOKEN,
        &[("TWILIO_MESSAGING_SERVICE_SID", "MG0123456789abcdef0123456789abcdef")],
    );

    let body = MessageContent::Body("How was order A-1001?\nReply 1-5".into());
    client.send_whatsapp(&customer(), &body).await.unwrap();

    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        form_of(&requests[0]),
        [
            ("To".to_owned(), "whatsapp:+33612345678".to_owned()),
            (
                "MessagingServiceSid".to_owned(),
                "MG0123456789abcdef0123456789abcdef".to_owned()
            ),
            ("Body".to_owned(), "How was order A-1001?\nReply 1-5".to_owned()),
            ("ValidityPeriod".to_owned(), "900".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_429_is_retried_after_the_retry_after_it_asks_for() {
    let server = failing_once_then_created(
        twilio_error(429, 20429, "Too Many Requests").insert_header("Retry-After", "1"),
        "SM33333333333333333333333333333333",
    )
    .await;
    let client = client_for(&server.uri(), &[]);

    let started = Instant::now();
    let sent = client
        .send_with_retry(&customer(), &review_template(), &quick_retries())
        .await
        .unwrap();

    let elapsed = started.elapsed();
    assert_eq!(sent.sid, "SM33333333333333333333333333333333");
    assert_eq!(requests_received(&server).await, 2);
    // The backoff alone is at most 50 ms: the wait must come from Retry-After.
    assert!(elapsed >= Duration::from_millis(990), "retried after {elapsed:?}");
}

#[tokio::test]
async fn no_retry_is_made_that_would_end_after_the_runs_deadline() {
    let server = failing_once_then_created(
        twilio_error(429, 20429, "Too Many Requests").insert_header("Retry-After", "3"),
        "SM44444444444444444444444444444444",
    )
    .await;
    let client = client_for(&server.uri(), &[]);
    // Time for one attempt (2 s), not for the wait Twilio asks for and another.
    let policy = RetryPolicy {
        retry_before: Some(backoffice::runtime::job::Deadline::after(Duration::from_millis(2500))),
        ..quick_retries()
    };

    let started = Instant::now();
    let refused = client.send_with_retry(&customer(), &review_template(), &policy).await;

    assert!(
        matches!(refused, Err(SendError::RateLimited { .. })),
        "the 429 comes back for the next run: {refused:?}"
    );
    assert_eq!(requests_received(&server).await, 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no wait for a retry past the deadline"
    );
}

#[tokio::test]
async fn a_twilio_500_is_retried_and_then_succeeds() {
    let server = failing_once_then_created(
        twilio_error(500, 20500, "Internal Server Error"),
        "SM44444444444444444444444444444444",
    )
    .await;
    let client = client_for(&server.uri(), &[]);

    let sent = client
        .send_with_retry(&customer(), &review_template(), &quick_retries())
        .await
        .unwrap();

    assert_eq!(sent.sid, "SM44444444444444444444444444444444");
    assert_eq!(requests_received(&server).await, 2);
}

#[tokio::test]
async fn a_twilio_500_forever_gives_up_after_max_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(twilio_error(500, 20500, "Internal Server Error"))
        .mount(&server)
        .await;
    let client = client_for(&server.uri(), &[]);

    let err = client
        .send_with_retry(&customer(), &review_template(), &quick_retries())
        .await
        .unwrap_err();

    assert_eq!(
        err,
        SendError::Transient {
            status: 500,
            code: Some(20500)
        }
    );
    assert!(!err.may_have_been_delivered());
    assert_eq!(requests_received(&server).await, 3);
}

#[tokio::test]
async fn a_reply_slower_than_the_timeout_is_ambiguous_and_never_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created("SM55555555555555555555555555555555").set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let client = client_for(&server.uri(), &[("TWILIO_TIMEOUT_MS", "300")]);

    let started = Instant::now();
    let err = client
        .send_with_retry(&customer(), &review_template(), &quick_retries())
        .await
        .unwrap_err();

    assert_eq!(err, SendError::Timeout);
    assert!(err.may_have_been_delivered());
    assert!(!err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(
        requests_received(&server).await,
        1,
        "a possibly delivered message was sent again"
    );
}

#[tokio::test]
async fn a_gateway_502_without_twilio_body_is_ambiguous_and_never_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>"))
        .mount(&server)
        .await;
    let client = client_for(&server.uri(), &[]);

    let err = client
        .send_with_retry(&customer(), &review_template(), &quick_retries())
        .await
        .unwrap_err();

    assert_eq!(err, SendError::GatewayError { status: 502 });
    assert!(err.may_have_been_delivered());
    assert_eq!(requests_received(&server).await, 1);
}

#[tokio::test]
async fn invalid_numbers_and_opted_out_customers_are_not_retried() {
    for (code, message) in [
        (
            21211,
            "The 'To' number whatsapp:+33612345678 is not a valid phone number.",
        ),
        (21610, "Attempt to send to unsubscribed recipient"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(twilio_error(400, code, message))
            .mount(&server)
            .await;
        let client = client_for(&server.uri(), &[]);

        let err = client
            .send_with_retry(&customer(), &review_template(), &quick_retries())
            .await
            .unwrap_err();

        let SendError::Permanent {
            status,
            code: Some(got_code),
            message: got_message,
        } = &err
        else {
            panic!("expected a permanent error for {code}, got {err:?}");
        };
        assert_eq!((*status, *got_code), (400, code));
        assert!(
            !got_message.contains("+33612345678"),
            "unmasked number in {got_message}"
        );
        assert!(!err.may_have_been_delivered());
        assert_eq!(requests_received(&server).await, 1, "code {code} was retried");
    }
}

#[tokio::test]
async fn a_send_whose_wait_for_the_rate_limit_uses_up_its_deadline_is_not_started() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created("SM77777777777777777777777777777777"))
        .mount(&server)
        .await;
    // One message a second, 2 s per attempt, 2.5 s left: the first send can end in time;
    // the second is let through by the limiter after 1 s, and the third after 2 s, too late.
    let client = client_for(&server.uri(), &[("TWILIO_MAX_MPS", "1")]);
    let policy = RetryPolicy {
        retry_before: Some(backoffice::runtime::job::Deadline::after(Duration::from_millis(2500))),
        ..quick_retries()
    };
    let (customer, content) = (customer(), review_template());

    let sends = (0..3).map(|_| client.send_with_retry(&customer, &content, &policy));
    let outcomes = futures::future::join_all(sends).await;

    assert_eq!(
        outcomes.iter().filter(|outcome| outcome.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Err(SendError::OutOfTime)))
            .count(),
        2,
        "{outcomes:?}"
    );
    assert!(SendError::OutOfTime.is_retryable() && !SendError::OutOfTime.may_have_been_delivered());
    assert_eq!(requests_received(&server).await, 1, "nothing sent past the deadline");
}

#[tokio::test]
async fn concurrent_sends_never_exceed_the_configured_rate() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created("SM66666666666666666666666666666666"))
        .mount(&server)
        .await;
    let client = client_for(&server.uri(), &[("TWILIO_MAX_MPS", "10")]);
    let customer = customer();
    let content = review_template();

    let started = Instant::now();
    let sends = (0..20).map(|_| client.send_whatsapp(&customer, &content));
    let outcomes = futures::future::join_all(sends).await;

    let elapsed = started.elapsed();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(requests_received(&server).await, 20);
    // 10 per second with no burst: the first goes at once, the other 19 come 100 ms apart.
    assert!(elapsed >= Duration::from_millis(1850), "20 sends took only {elapsed:?}");
}

#[tokio::test]
async fn a_connection_dropped_after_the_request_is_ambiguous_and_never_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&connections);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            seen.fetch_add(1, Ordering::SeqCst);
            // Read the request, then hang up without a reply, as a reset mid-reply would.
            let mut buffer = [0_u8; 4096];
            let _ = stream.read(&mut buffer);
            drop(stream);
        }
    });
    let client = client_for(&base_url, &[]);

    let err = client
        .send_with_retry(&customer(), &review_template(), &quick_retries())
        .await
        .unwrap_err();

    assert!(matches!(err, SendError::ConnectionLost(_)), "{err:?}");
    assert!(err.may_have_been_delivered());
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_refused_connection_is_safe_to_retry() {
    // A port nobody listens on: bind one, then free it.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = client_for(&format!("http://127.0.0.1:{port}"), &[]);

    let err = client.send_whatsapp(&customer(), &review_template()).await.unwrap_err();

    assert!(matches!(err, SendError::Network(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(!err.may_have_been_delivered());
}
