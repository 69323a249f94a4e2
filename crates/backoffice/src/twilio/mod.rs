//! Sends WhatsApp messages through Twilio's Messages API
//! (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`).
//!
//! Build one [`TwilioClient`] at cold start and clone it into each concurrent send: the
//! clones share one HTTP connection pool and one [`SendRateLimiter`], and every HTTP attempt
//! (retries included) first waits for the limiter, so a caller doing `buffer_unordered(n)`
//! needs no pacing of its own.
//!
//! Sending twice is worse than not sending: [`TwilioClient::send_with_retry`] retries only
//! failures after which Twilio certainly has not created the message, and
//! [`SendError::may_have_been_delivered`] tells the caller to record the others as possibly
//! sent.
//!
//! Logs carry masked phone numbers only, and never the auth token.

mod config;
mod content;
mod error;
mod lookup;
mod pacing;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;

pub use config::{
    AuthToken, DEFAULT_API_BASE_URL, DEFAULT_MAX_MESSAGES_PER_SECOND, DEFAULT_TIMEOUT, DEFAULT_VALIDITY_PERIOD, Sender,
    TwilioConfig,
};
pub use content::{
    EMPTY_TEMPLATE_VARIABLE_FALLBACK, MAX_TEMPLATE_VARIABLE_CHARS, MessageContent, is_invisible_mark,
    sanitize_template_variable,
};
pub use error::SendError;
pub use lookup::{ListedMessage, LookupError, MAX_LIST_PAGES, MessageList};
pub use pacing::{RetryPolicy, SendRateLimiter};

use crate::domain::phone::PhoneNumber;

/// Whether `value` is a Twilio SID of this kind: the two-letter prefix, then 32
/// hexadecimal digits.
pub fn is_sid(value: &str, prefix: &str) -> bool {
    value.len() == prefix.len() + 32
        && value.starts_with(prefix)
        && value[prefix.len()..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `value` is a message's SID (`SM…`, or `MM…` for one with media).
pub fn is_message_sid(value: &str) -> bool {
    is_sid(value, "SM") || is_sid(value, "MM")
}

/// Longest wait for a TCP/TLS connection. Kept apart from the overall timeout so a failed
/// connect is reported as [`SendError::Network`] (the request never left, safe to retry)
/// rather than as an ambiguous [`SendError::Timeout`].
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The query parameter of a status callback URL that names the message it is about.
pub const STATUS_REFERENCE_PARAM: &str = "message";

/// What ends every status callback URL, after the message's reference. Twilio signs the URL
/// and the parameters joined with nothing between them: ending on a fixed text, the URL
/// cannot lose its last characters to the parameters (nor take theirs) unnoticed.
pub const STATUS_URL_END: &str = "end=1";

/// The message Twilio created, from its reply.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SentMessage {
    /// `SM…` (or `MM…`): the message's id at Twilio, for support and status lookups.
    pub sid: String,
    /// Usually `queued` or `accepted`: delivery happens later.
    pub status: String,
}

#[derive(Debug, thiserror::Error)]
#[error("could not build the HTTP client for Twilio: {0}")]
pub struct ClientBuildError(#[from] reqwest::Error);

/// A Twilio client for one account and sender. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct TwilioClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: TwilioConfig,
    messages_url: String,
    limiter: SendRateLimiter,
    warned_about_plain_body: AtomicBool,
}

impl std::fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioClient")
            .field("config", &self.inner.config)
            .field("limiter", &self.inner.limiter)
            .finish()
    }
}

impl TwilioClient {
    /// Builds the HTTP client once, with the configured timeout, and a rate limiter at
    /// `config.max_messages_per_second`.
    pub fn new(config: TwilioConfig) -> Result<Self, ClientBuildError> {
        crate::https::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(MAX_CONNECT_TIMEOUT))
            // A redirected POST would be replayed as a GET; Twilio never redirects this call.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("backoffice/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let messages_url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            config.api_base_url, config.account_sid
        );
        let limiter = SendRateLimiter::per_second(config.max_messages_per_second);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                messages_url,
                limiter,
                warned_about_plain_body: AtomicBool::new(false),
            }),
        })
    }

    pub fn config(&self) -> &TwilioConfig {
        &self.inner.config
    }

    /// The limiter every attempt waits on; exposed for callers that pace other work by it.
    pub fn rate_limiter(&self) -> &SendRateLimiter {
        &self.inner.limiter
    }

    /// The review request's content: the configured template (`REVIEW_TEMPLATE_SID`) with
    /// `variables`, or, when none is configured, `plain_body()` as free text.
    pub fn review_content(
        &self,
        variables: BTreeMap<String, String>,
        plain_body: impl FnOnce() -> String,
    ) -> MessageContent {
        match &self.inner.config.review_template_sid {
            Some(content_sid) => MessageContent::Template {
                content_sid: content_sid.clone(),
                variables,
            },
            None => MessageContent::Body(plain_body()),
        }
    }

    /// One attempt, after waiting for the rate limiter. No retry: see
    /// [`TwilioClient::send_with_retry`].
    pub async fn send_whatsapp(&self, to: &PhoneNumber, content: &MessageContent) -> Result<SentMessage, SendError> {
        self.send_attempt(to, content, None, &RetryPolicy::default()).await
    }

    async fn send_attempt(
        &self,
        to: &PhoneNumber,
        content: &MessageContent,
        reference: Option<&str>,
        policy: &RetryPolicy,
    ) -> Result<SentMessage, SendError> {
        self.warn_once_about_plain_body(content);
        let form = self.form_fields(to, content, reference);
        self.inner.limiter.until_ready().await;
        // The wait may have taken the time: an attempt that could end after its deadline
        // is not started (a message created then could be missed by reconciliation).
        if !policy.leaves_time_for(Duration::ZERO, self.inner.config.timeout) {
            tracing::info!(to = %to.masked(), "not sending: the deadline comes before an attempt could end");
            return Err(SendError::OutOfTime);
        }
        tracing::debug!(to = %to.masked(), "sending WhatsApp message through Twilio");

        let request = self
            .inner
            .http
            .post(&self.inner.messages_url)
            .basic_auth(
                &self.inner.config.account_sid,
                Some(self.inner.config.auth_token.expose()),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        let response = request.send().await.map_err(classify_transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await;

        let outcome = if status.is_success() {
            let body = body.map_err(classify_transport_error)?;
            serde_json::from_str::<SentMessage>(&body).map_err(|error| SendError::UnreadableReply {
                status: status.as_u16(),
                reason: error.to_string(),
            })
        } else {
            // An error reply we cannot read fully is still an error reply: sort it by status.
            Err(error::classify_error_reply(status, &headers, &body.unwrap_or_default()))
        };
        match &outcome {
            Ok(sent) => {
                tracing::info!(to = %to.masked(), sid = %sent.sid, status = %sent.status, "Twilio accepted the message");
            }
            Err(error) => tracing::warn!(
                to = %to.masked(),
                %error,
                may_have_been_delivered = error.may_have_been_delivered(),
                "Twilio send failed"
            ),
        }
        outcome
    }

    /// Sends with up to `policy.max_attempts` attempts, retrying only what
    /// [`SendError::is_retryable`] allows (rate limits, Twilio's own 5xx, connect failures),
    /// after [`RetryPolicy::delay_before_retry`]. Permanent and possibly-delivered failures
    /// come back at once; the last error comes back when the attempts run out.
    pub async fn send_with_retry(
        &self,
        to: &PhoneNumber,
        content: &MessageContent,
        policy: &RetryPolicy,
    ) -> Result<SentMessage, SendError> {
        self.send_tracked(to, content, None, policy).await
    }

    /// Like [`TwilioClient::send_with_retry`], asking Twilio to post the message's delivery
    /// statuses to the configured `STATUS_CALLBACK_URL` with `reference` (the message's
    /// key) in its query, so the webhook knows which message a status is about.
    pub async fn send_tracked(
        &self,
        to: &PhoneNumber,
        content: &MessageContent,
        reference: Option<&str>,
        policy: &RetryPolicy,
    ) -> Result<SentMessage, SendError> {
        let mut attempt = 1;
        loop {
            match self.send_attempt(to, content, reference, policy).await {
                Err(SendError::OutOfTime) => return Err(SendError::OutOfTime),
                Err(error) if error.is_retryable() && attempt < policy.attempts() => {
                    let delay = policy.delay_before_retry(attempt, error.retry_after());
                    if !policy.leaves_time_for(delay, self.inner.config.timeout) {
                        tracing::info!(to = %to.masked(), attempt, %error, "not retrying Twilio send: the run's deadline comes first");
                        return Err(error);
                    }
                    tracing::info!(
                        to = %to.masked(),
                        attempt,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        %error,
                        "retrying Twilio send"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// The status callback for the message `reference`: the configured URL with
    /// `message=<reference>` added to its query.
    pub fn status_callback(&self, reference: &str) -> Option<String> {
        let mut url = self.inner.config.status_callback_url.clone()?;
        url.query_pairs_mut().append_pair(STATUS_REFERENCE_PARAM, reference);
        let (name, value) = STATUS_URL_END.split_once('=').unwrap_or((STATUS_URL_END, ""));
        url.query_pairs_mut().append_pair(name, value);
        Some(url.into())
    }

    fn form_fields(
        &self,
        to: &PhoneNumber,
        content: &MessageContent,
        reference: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        let mut form = vec![("To", format!("whatsapp:{}", to.as_str()))];
        match &self.inner.config.sender {
            Sender::WhatsAppNumber(from) => form.push(("From", format!("whatsapp:{}", from.as_str()))),
            Sender::MessagingService(sid) => form.push(("MessagingServiceSid", sid.clone())),
        }
        match content {
            MessageContent::Template { content_sid, variables } => {
                form.push(("ContentSid", content_sid.clone()));
                form.push(("ContentVariables", content::content_variables_json(variables)));
            }
            MessageContent::Body(body) => form.push(("Body", body.clone())),
        }
        if let Some(callback) = reference.and_then(|reference| self.status_callback(reference)) {
            form.push(("StatusCallback", callback));
        }
        form.push((
            "ValidityPeriod",
            self.inner.config.validity_period.as_secs().to_string(),
        ));
        form
    }

    fn warn_once_about_plain_body(&self, content: &MessageContent) {
        if matches!(content, MessageContent::Body(_))
            && !self.inner.warned_about_plain_body.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "sending WhatsApp messages as a plain body because REVIEW_TEMPLATE_SID is not set; \
                 WhatsApp delivers them only within 24 hours of the customer's last message (Twilio error 63016)"
            );
        }
    }
}

/// Sorts a failure with no HTTP status: before the request left (connect) it is safe to
/// retry; after (timeout, reset) Twilio may have the message.
fn classify_transport_error(error: reqwest::Error) -> SendError {
    let detail = error_chain(&error);
    if error.is_connect() {
        SendError::Network(detail)
    } else if error.is_timeout() {
        SendError::Timeout
    } else {
        SendError::ConnectionLost(detail)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn client(extra: &[(&str, &str)]) -> TwilioClient {
        let mut env: HashMap<String, String> = [
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("TWILIO_AUTH_TOKEN", "s3cr3t-token-value"),
            ("TWILIO_WHATSAPP_FROM", "+14155550100"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        TwilioClient::new(TwilioConfig::from_env(&env).unwrap()).unwrap()
    }

    #[test]
    fn builds_template_form_fields_with_sanitised_variables() {
        let client = client(&[]);
        let to = PhoneNumber::parse("+33612345678").unwrap();
        let content = MessageContent::Template {
            content_sid: "HX0123456789abcdef0123456789abcdef".into(),
            variables: BTreeMap::from([("1".into(), "Ana\n".into()), ("2".into(), "A-1001".into())]),
        };
        assert_eq!(
            client.form_fields(&to, &content, Some("payment_reminder#A-1001")),
            [
                ("To", "whatsapp:+33612345678".to_owned()),
                ("From", "whatsapp:+14155550100".to_owned()),
                ("ContentSid", "HX0123456789abcdef0123456789abcdef".to_owned()),
                ("ContentVariables", r#"{"1":"Ana","2":"A-1001"}"#.to_owned()),
                ("ValidityPeriod", "900".to_owned()),
            ]
        );
    }

    #[test]
    fn uses_the_messaging_service_and_a_plain_body_when_configured_so() {
        let env: HashMap<String, String> = [
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("TWILIO_AUTH_TOKEN", "t"),
            ("TWILIO_MESSAGING_SERVICE_SID", "MG0123456789abcdef0123456789abcdef"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let client = TwilioClient::new(TwilioConfig::from_env(&env).unwrap()).unwrap();
        let to = PhoneNumber::parse("+33612345678").unwrap();
        let content = client.review_content(BTreeMap::new(), || "How was your order?".into());
        assert_eq!(content, MessageContent::Body("How was your order?".into()));
        assert_eq!(
            client.form_fields(&to, &content, None),
            [
                ("To", "whatsapp:+33612345678".to_owned()),
                ("MessagingServiceSid", "MG0123456789abcdef0123456789abcdef".to_owned()),
                ("Body", "How was your order?".to_owned()),
                ("ValidityPeriod", "900".to_owned()),
            ]
        );
    }

    #[test]
    fn asks_for_status_callbacks_naming_the_message_when_a_url_is_set() {
        let client = client(&[("STATUS_CALLBACK_URL", "https://hooks.example/twilio?v=1")]);
        let to = PhoneNumber::parse("+33612345678").unwrap();
        let form = client.form_fields(&to, &MessageContent::Body("Hi".into()), Some("order_confirmation#A 1"));
        let callback = form
            .iter()
            .find(|(name, _)| *name == "StatusCallback")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            callback,
            Some("https://hooks.example/twilio?v=1&message=order_confirmation%23A+1&end=1")
        );
        let untracked = client.form_fields(&to, &MessageContent::Body("Hi".into()), None);
        assert!(untracked.iter().all(|(name, _)| *name != "StatusCallback"));
    }

    #[test]
    fn review_content_uses_the_configured_template() {
        let client = client(&[("REVIEW_TEMPLATE_SID", "HXabcdefabcdefabcdefabcdefabcdefab")]);
        let variables = BTreeMap::from([("1".to_owned(), "Ana".to_owned())]);
        let content = client.review_content(variables.clone(), || panic!("no body needed with a template"));
        assert_eq!(
            content,
            MessageContent::Template {
                content_sid: "HXabcdefabcdefabcdefabcdefabcdefab".into(),
                variables,
            }
        );
    }

    #[test]
    fn client_debug_does_not_leak_the_token() {
        let printed = format!("{:?}", client(&[]));
        assert!(!printed.contains("s3cr3t-token-value"), "{printed}");
        assert!(printed.contains("AuthToken(<redacted>)"), "{printed}");
    }
}
