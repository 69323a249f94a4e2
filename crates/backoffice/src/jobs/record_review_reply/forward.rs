//! Living beside the shop's own inbound handler: a WhatsApp sender has one inbound webhook
//! URL. What is not a review reply or a consent keyword is forwarded, unchanged, to
//! `FORWARD_WEBHOOK_URL`, signed again with the account's auth token for that URL (so the
//! shop's app keeps validating Twilio's signature), and its answer goes back to Twilio.
//! The review or consent part is recorded before, and a slow or failing handler only costs
//! its own answer: after `FORWARD_TIMEOUT_MS` this webhook answers with its own.

use std::time::Duration;

use super::FUNCTION_NAME;
use super::request::FunctionUrlResponse;
use super::signature::{SIGNATURE_HEADER, SignatureValidator};

/// Well under Twilio's 15 s, with room for this webhook's own DynamoDB calls.
pub const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(8);
/// The longest answer a forwarded request may bring back.
const MAX_FORWARDED_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Forwarder {
    http: reqwest::Client,
    url: String,
    validator: SignatureValidator,
}

impl Forwarder {
    /// A forwarder to `url`, signing with `validator`'s token, giving up after `timeout`.
    pub fn new(url: String, validator: SignatureValidator, timeout: Duration) -> Result<Self, reqwest::Error> {
        crate::https::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { http, url, validator })
    }

    /// Twilio's request, as received, to the shop's handler; its answer, or `None` when it
    /// did not answer 2xx in time (logged).
    pub async fn forward(&self, params: &[(String, String)]) -> Option<FunctionUrlResponse> {
        let signature = self.validator.sign(&self.url, params);
        let result = self
            .http
            .post(&self.url)
            .header(SIGNATURE_HEADER, signature)
            .form(params)
            .send()
            .await;
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                let reason = if error.is_timeout() { "timeout" } else { "unreachable" };
                tracing::warn!(function = FUNCTION_NAME, reason, %error, "the shop's handler did not answer; answering ourselves");
                return None;
            }
        };
        let status = response.status();
        if !status.is_success() {
            tracing::warn!(
                function = FUNCTION_NAME,
                status = status.as_u16(),
                "the shop's handler refused the forwarded message; answering ourselves"
            );
            return None;
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or(super::twiml::TWIML_CONTENT_TYPE)
            .to_owned();
        match response.bytes().await {
            Ok(body) if body.len() <= MAX_FORWARDED_BODY_BYTES => Some(FunctionUrlResponse::forwarded(
                status.as_u16(),
                &content_type,
                String::from_utf8_lossy(&body).into_owned(),
            )),
            Ok(_) => {
                tracing::warn!(
                    function = FUNCTION_NAME,
                    "the shop's handler answered more than 64 KiB; answering ourselves"
                );
                None
            }
            Err(error) => {
                tracing::warn!(function = FUNCTION_NAME, %error, "the shop's handler's answer was cut; answering ourselves");
                None
            }
        }
    }
}
