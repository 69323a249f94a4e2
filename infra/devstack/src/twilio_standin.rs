//! A local stand-in for Twilio's Messages API: answers every send to
//! `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` with 201 and a fresh message
//! SID, optionally after a delay (the benchmark's 150 ms), and remembers what it was
//! asked to send and when; `GET` on the same path lists them by `To`, as reconciliation
//! asks Twilio. For the demo, the local stack and the benchmark; the contract
//! tests use Prism with Twilio's own OpenAPI description instead, and the fault tests
//! (429, 5xx, timeouts) use wiremock.
//!
//! Served with axum, which the embedded emulator's HTTP server already builds: no second
//! HTTP server stack (and no regex engine) in the local tools.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// Placeholder credentials the functions need to build their Twilio client locally.
pub const LOCAL_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
pub const LOCAL_AUTH_TOKEN: &str = "local-stand-in-token";
pub const LOCAL_WHATSAPP_FROM: &str = "+14155238886";
pub const LOCAL_TEMPLATE_SID: &str = "HX00000000000000000000000000000000";

/// One message as the stand-in received it.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub sid: String,
    pub to: String,
    pub content_sid: Option<String>,
    pub content_variables: Option<String>,
    pub body: Option<String>,
    /// When the whole request had arrived: the moment the client sent it, give or take
    /// the loopback.
    pub received_at: Instant,
    pub received_at_utc: chrono::DateTime<chrono::Utc>,
}

#[derive(Default)]
struct Inbox {
    messages: Mutex<Vec<ReceivedMessage>>,
    list_requests: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
struct StandInState {
    inbox: Arc<Inbox>,
    delay: Duration,
}

pub struct TwilioStandIn {
    uri: String,
    inbox: Arc<Inbox>,
    server: tokio::task::JoinHandle<()>,
}

impl TwilioStandIn {
    /// Answers at once.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with_delay(Duration::ZERO).await
    }

    /// Answers each send after `delay`, as a remote API does; sends are served
    /// concurrently, so the delay adds latency, not a limit on the rate.
    pub async fn start_with_delay(delay: Duration) -> std::io::Result<Self> {
        Self::start_at(IpAddr::from([127, 0, 0, 1]), delay).await
    }

    /// Served on a free port of `host`, answering each send after `delay`.
    pub async fn start_at(host: IpAddr, delay: Duration) -> std::io::Result<Self> {
        let inbox = Arc::new(Inbox::default());
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{account_sid}/Messages.json",
                post(accept_message).get(list_messages),
            )
            .with_state(StandInState {
                inbox: inbox.clone(),
                delay,
            });
        let listener = tokio::net::TcpListener::bind((host, 0)).await?;
        let uri = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("the Twilio stand-in stopped: {error}");
            }
        });
        Ok(Self { uri, inbox, server })
    }

    pub fn uri(&self) -> String {
        self.uri.clone()
    }

    /// The environment a function needs to send through this stand-in.
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TWILIO_API_BASE_URL", self.uri()),
            ("TWILIO_ACCOUNT_SID", LOCAL_ACCOUNT_SID.into()),
            ("TWILIO_AUTH_TOKEN", LOCAL_AUTH_TOKEN.into()),
            ("TWILIO_WHATSAPP_FROM", LOCAL_WHATSAPP_FROM.into()),
            ("REVIEW_TEMPLATE_SID", LOCAL_TEMPLATE_SID.into()),
        ]
    }

    /// How many times the Messages list was read.
    pub fn list_requests(&self) -> u64 {
        self.inbox.list_requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Forgets every message it received (the bench's lost answers are kept, the rest not).
    pub fn keep_only(&self, keep: impl Fn(&ReceivedMessage) -> bool) {
        if let Ok(mut messages) = self.inbox.messages.lock() {
            messages.retain(|message| keep(message));
        }
    }

    /// The messages accepted so far, in the order they arrived.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.inbox.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl Drop for TwilioStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// An Account SID as Twilio writes it: "AC" and 32 lowercase hex digits.
fn is_account_sid(sid: &str) -> bool {
    sid.strip_prefix("AC")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

async fn accept_message(State(state): State<StandInState>, Path(account_sid): Path<String>, form: Bytes) -> Response {
    let received_at = Instant::now();
    if !is_account_sid(&account_sid) {
        return (StatusCode::NOT_FOUND, "no such account").into_response();
    }
    let field = |name: &str| {
        url::form_urlencoded::parse(&form)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let message = ReceivedMessage {
        sid: String::new(),
        to: field("To").unwrap_or_default(),
        content_sid: field("ContentSid"),
        content_variables: field("ContentVariables"),
        body: field("Body"),
        received_at,
        received_at_utc: chrono::Utc::now(),
    };
    let sid = match state.inbox.messages.lock() {
        Ok(mut messages) => {
            let sid = format!("SM{:032x}", messages.len() + 1);
            messages.push(ReceivedMessage {
                sid: sid.clone(),
                ..message
            });
            sid
        }
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        serde_json::json!({ "sid": sid, "status": "queued" }).to_string(),
    )
        .into_response()
}

/// The Messages list filtered by `To`, one page, each message as Twilio shows it (a
/// template's body is its variables, as the rendered text would carry them).
async fn list_messages(
    State(state): State<StandInState>,
    Path(account_sid): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    if !is_account_sid(&account_sid) {
        return (StatusCode::NOT_FOUND, "no such account").into_response();
    }
    state
        .inbox
        .list_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let query = query.unwrap_or_default();
    let to = url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "To")
        .map(|(_, value)| value.into_owned());
    let messages: Vec<serde_json::Value> = match state.inbox.messages.lock() {
        Ok(messages) => messages
            .iter()
            .filter(|message| to.as_deref().is_none_or(|to| message.to == to))
            .map(|message| {
                let date = message.received_at_utc.to_rfc2822();
                serde_json::json!({
                    "sid": message.sid,
                    "to": message.to,
                    "from": format!("whatsapp:{LOCAL_WHATSAPP_FROM}"),
                    "body": message.body.clone().or_else(|| message.content_variables.clone()),
                    "direction": "outbound-api",
                    "status": "delivered",
                    "date_created": date,
                    "date_sent": date,
                })
            })
            .collect(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        serde_json::json!({ "messages": messages, "next_page_uri": null }).to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(uri: &str, path: &str, form: &str) -> (u16, String) {
        // A raw HTTP/1.1 request keeps the test free of an HTTP client dependency.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = uri.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{form}",
            form.len()
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        let status = response[9..12].parse().expect("status code");
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
        (status, body)
    }

    fn messages_path(account_sid: &str) -> String {
        format!("/2010-04-01/Accounts/{account_sid}/Messages.json")
    }

    #[tokio::test]
    async fn accepts_a_send_and_remembers_its_fields() {
        let standin = TwilioStandIn::start().await.expect("start");
        let (status, body) = post(
            &standin.uri(),
            &messages_path(LOCAL_ACCOUNT_SID),
            "To=whatsapp%3A%2B33612345678&ContentSid=HX1&ContentVariables=%7B%221%22%3A%22Ana%22%7D",
        )
        .await;
        assert_eq!(status, 201);
        let answer: serde_json::Value = serde_json::from_str(&body).expect("json body");
        assert_eq!(answer["sid"], format!("SM{:032x}", 1));
        assert_eq!(answer["status"], "queued");
        let messages = standin.messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].to, "whatsapp:+33612345678");
        assert_eq!(messages[0].content_sid.as_deref(), Some("HX1"));
        assert_eq!(messages[0].content_variables.as_deref(), Some(r#"{"1":"Ana"}"#));
        assert_eq!(messages[0].body, None);
    }

    #[tokio::test]
    async fn refuses_a_path_that_is_not_an_accounts_messages_resource() {
        let standin = TwilioStandIn::start().await.expect("start");
        let (status, _) = post(&standin.uri(), &messages_path("AC123"), "To=x").await;
        assert_eq!(status, 404);
        let (status, _) = post(&standin.uri(), "/2010-04-01/Accounts/Messages.json", "To=x").await;
        assert_eq!(status, 404);
        assert!(standin.messages().is_empty());
    }

    #[tokio::test]
    async fn answers_after_the_delay_and_serves_sends_concurrently() {
        let delay = Duration::from_millis(200);
        let standin = TwilioStandIn::start_with_delay(delay).await.expect("start");
        let started = Instant::now();
        let mut sends = tokio::task::JoinSet::new();
        for _ in 0..5 {
            let uri = standin.uri();
            sends.spawn(async move { post(&uri, &messages_path(LOCAL_ACCOUNT_SID), "To=x").await });
        }
        let answers = sends.join_all().await;
        let elapsed = started.elapsed();
        assert!(answers.iter().all(|(status, _)| *status == 201));
        assert!(
            elapsed >= delay,
            "answered after {elapsed:?}, before the {delay:?} delay"
        );
        // One after the other would take 5 × 200 ms.
        assert!(elapsed < delay * 3, "5 sends took {elapsed:?}: not served concurrently");
        assert_eq!(standin.messages().len(), 5);
    }
}
