//! A local stand-in for Twilio's Messages API: answers every send with 201 and a fresh
//! message SID, and remembers what it was asked to send. For the demo and the local
//! stack; the contract tests use Prism with Twilio's own OpenAPI description instead.

use std::sync::atomic::{AtomicU64, Ordering};

use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Placeholder credentials the functions need to build their Twilio client locally.
pub const LOCAL_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
pub const LOCAL_AUTH_TOKEN: &str = "local-stand-in-token";
pub const LOCAL_WHATSAPP_FROM: &str = "+14155238886";
pub const LOCAL_TEMPLATE_SID: &str = "HX00000000000000000000000000000000";

struct Accept {
    sent: AtomicU64,
}

impl Respond for Accept {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        ResponseTemplate::new(201).set_body_json(serde_json::json!({
            "sid": format!("SM{n:032x}"),
            "status": "queued",
        }))
    }
}

/// One message as the stand-in received it.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub to: String,
    pub content_sid: Option<String>,
    pub content_variables: Option<String>,
    pub body: Option<String>,
}

pub struct TwilioStandIn {
    server: MockServer,
}

impl TwilioStandIn {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path_regex(r"^/2010-04-01/Accounts/AC[0-9a-f]{32}/Messages\.json$"))
            .respond_with(Accept {
                sent: AtomicU64::new(0),
            })
            .mount(&server)
            .await;
        Self { server }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
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

    pub async fn messages(&self) -> Vec<ReceivedMessage> {
        let requests = self.server.received_requests().await.unwrap_or_default();
        requests
            .iter()
            .map(|request| {
                let field = |name: &str| {
                    url::form_urlencoded::parse(&request.body)
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.into_owned())
                };
                ReceivedMessage {
                    to: field("To").unwrap_or_default(),
                    content_sid: field("ContentSid"),
                    content_variables: field("ContentVariables"),
                    body: field("Body"),
                }
            })
            .collect()
    }
}
