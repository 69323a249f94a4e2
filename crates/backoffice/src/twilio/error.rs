//! What can go wrong when sending one message, sorted by what the caller should do next:
//! give up on this customer, wait and retry, or stop because Twilio may already have the
//! message.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;

use crate::domain::phone::masked_excerpt;

/// Twilio error codes that mean "too fast, try again later", even when they come with a
/// 400 rather than a 429: 20429 too many requests, 14107 send rate limit exceeded,
/// 21611 too many messages queued for the sender, 63018 channel rate limit exceeded.
const RATE_LIMIT_CODES: [u32; 4] = [20429, 14107, 21611, 63018];

/// Twilio error codes that will fail for every customer, so a batch should stop instead of
/// failing each message in turn: 20003 authentication, 20404 unknown account or resource,
/// 21606/21659/21660 `From` is not a usable sender of this account, 21703/21704/21705 the
/// Messaging Service is invalid or has no sender, 21655/21656 the ContentSid or
/// ContentVariables are invalid, 63007 no WhatsApp channel for the `From` address.
const CONFIGURATION_CODES: [u32; 11] = [
    20003, 20404, 21606, 21659, 21660, 21703, 21704, 21705, 21655, 21656, 63007,
];

/// Longest Twilio error message kept, in characters.
const MAX_ERROR_MESSAGE_CHARS: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Twilio refused this message and would refuse it again: an invalid or unreachable
    /// number (21211, 21614, 63024), a customer who answered STOP (21610), a region not
    /// enabled (21408), a plain body outside the 24-hour window (63016), bad credentials
    /// (20003, see [`SendError::is_configuration_error`]), or any other 4xx. `message` is
    /// Twilio's own, with phone numbers masked.
    #[error("Twilio refused the message (HTTP {status}, code {code:?}): {message}")]
    Permanent {
        status: u16,
        code: Option<u32>,
        message: String,
    },
    /// HTTP 429 or a rate-limit code: nothing was sent, wait `retry_after` (from the
    /// `Retry-After` header, in seconds) and try again.
    #[error("Twilio rate limited the request (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// A 5xx that Twilio's API answered with its error body (or a 503): it handled the
    /// request and did not create the message, so a retry is safe.
    #[error("Twilio failed to handle the request (HTTP {status}, code {code:?})")]
    Transient { status: u16, code: Option<u32> },
    /// A 5xx without Twilio's error body, such as a proxy's 502 or 504: the API behind it
    /// may have accepted the message, so it must not be sent again.
    #[error("HTTP {status} from a gateway in front of Twilio; the message may have been accepted")]
    GatewayError { status: u16 },
    /// No complete reply within the timeout after the request went out: the message may
    /// have been accepted, so it must not be sent again.
    #[error("Twilio did not answer within the timeout; the message may have been accepted")]
    Timeout,
    /// The connection could not be opened (DNS, TCP, TLS): the request never left, so a
    /// retry is safe.
    #[error("could not connect to Twilio: {0}")]
    Network(String),
    /// The connection failed after the request may have been written, e.g. reset while
    /// reading the reply: the message may have been accepted.
    #[error("connection to Twilio lost mid-request; the message may have been accepted: {0}")]
    ConnectionLost(String),
    /// The request was not sent: waiting for the rate limiter took the time an attempt
    /// needed before its deadline (the run's end, or the span its claim covers). Nothing
    /// was sent, so the message may go later.
    #[error("the send could not start before its deadline; nothing was sent")]
    OutOfTime,
    /// Twilio answered 2xx, so it accepted the message, but the reply was not a Message
    /// resource we could read.
    #[error("Twilio accepted the message (HTTP {status}) but its reply was unreadable: {reason}")]
    UnreadableReply { status: u16, reason: String },
}

impl SendError {
    /// Whether sending the same message again may succeed *and* cannot deliver it twice:
    /// rate limits, Twilio's own 5xx and connect failures.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Transient { .. } | Self::Network(_) | Self::OutOfTime
        )
    }

    /// Whether Twilio may have accepted the message although we got no success reply. The
    /// caller must then treat the message as possibly sent (record it, never resend it), since
    /// a second attempt could reach the customer twice.
    pub fn may_have_been_delivered(&self) -> bool {
        matches!(
            self,
            Self::GatewayError { .. } | Self::Timeout | Self::ConnectionLost(_) | Self::UnreadableReply { .. }
        )
    }

    /// How long Twilio asked us to wait before the next request, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// Twilio's error code (https://www.twilio.com/docs/api/errors), when it gave one.
    pub fn twilio_code(&self) -> Option<u32> {
        match self {
            Self::Permanent { code, .. } | Self::Transient { code, .. } => *code,
            _ => None,
        }
    }

    /// Whether every other message would fail the same way (bad credentials, unknown
    /// account, unusable sender or template): a batch should stop rather than go on.
    pub fn is_configuration_error(&self) -> bool {
        match self {
            Self::Permanent { status, code, .. } => {
                matches!(status, 401 | 403) || code.is_some_and(|code| CONFIGURATION_CODES.contains(&code))
            }
            _ => false,
        }
    }
}

/// Twilio's error body: `{"code":21211,"message":"...","more_info":"...","status":400}`.
#[derive(Debug, Deserialize)]
struct TwilioErrorBody {
    code: Option<u32>,
    message: Option<String>,
}

/// Sorts a non-2xx reply from its status, headers and body.
pub(crate) fn classify_error_reply(status: StatusCode, headers: &HeaderMap, body: &str) -> SendError {
    let twilio_error = serde_json::from_str::<TwilioErrorBody>(body).ok();
    let code = twilio_error.as_ref().and_then(|error| error.code);
    let is_rate_limit_code = code.is_some_and(|code| RATE_LIMIT_CODES.contains(&code));
    if status == StatusCode::TOO_MANY_REQUESTS || (status.is_client_error() && is_rate_limit_code) {
        return SendError::RateLimited {
            retry_after: retry_after_from(headers),
        };
    }
    if status.is_server_error() {
        return if twilio_error.is_some() || status == StatusCode::SERVICE_UNAVAILABLE {
            SendError::Transient {
                status: status.as_u16(),
                code,
            }
        } else {
            SendError::GatewayError {
                status: status.as_u16(),
            }
        };
    }
    // Every other status (4xx, or a redirect we do not follow) is final for this message.
    let message = match twilio_error.and_then(|error| error.message) {
        Some(message) => message,
        None if body.trim().is_empty() => status.canonical_reason().unwrap_or("no reason given").to_owned(),
        None => body.trim().to_owned(),
    };
    SendError::Permanent {
        status: status.as_u16(),
        code,
        message: masked_excerpt(&message, MAX_ERROR_MESSAGE_CHARS),
    }
}

/// `Retry-After` in seconds, the form Twilio uses. An HTTP date is ignored, leaving the
/// caller's own backoff in charge.
fn retry_after_from(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn classify(status: u16, headers: &[(&str, &str)], body: &str) -> SendError {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        classify_error_reply(StatusCode::from_u16(status).unwrap(), &map, body)
    }

    fn twilio_body(code: u32, message: &str, status: u16) -> String {
        serde_json::json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        })
        .to_string()
    }

    #[test]
    fn invalid_numbers_and_opt_outs_are_permanent() {
        let err = classify(
            400,
            &[],
            &twilio_body(21211, "The 'To' number +33612345678 is not a valid phone number.", 400),
        );
        assert_eq!(
            err,
            SendError::Permanent {
                status: 400,
                code: Some(21211),
                message: "The 'To' number +33*******78 is not a valid phone number.".into(),
            }
        );
        assert!(!err.is_retryable());
        assert!(!err.may_have_been_delivered());
        assert!(!err.is_configuration_error());

        for code in [21610, 63016, 21408, 21614, 63024] {
            let err = classify(400, &[], &twilio_body(code, "refused", 400));
            assert!(
                matches!(err, SendError::Permanent { code: Some(c), .. } if c == code),
                "{err:?}"
            );
            assert!(!err.is_retryable(), "{code}");
            assert!(!err.is_configuration_error(), "{code}");
        }
        assert!(matches!(
            classify(404, &[], ""),
            SendError::Permanent {
                status: 404,
                code: None,
                ..
            }
        ));
    }

    #[test]
    fn bad_credentials_and_senders_stop_the_batch() {
        let err = classify(401, &[], &twilio_body(20003, "Authenticate", 401));
        assert!(err.is_configuration_error());
        assert!(!err.is_retryable());
        let err = classify(400, &[], &twilio_body(21606, "The From phone number is not valid", 400));
        assert!(err.is_configuration_error());
        assert!(classify(403, &[], "Forbidden").is_configuration_error());
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let err = classify(
            429,
            &[("retry-after", "3")],
            &twilio_body(20429, "Too Many Requests", 429),
        );
        assert_eq!(
            err,
            SendError::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert!(err.is_retryable());
        assert!(!err.may_have_been_delivered());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));

        assert_eq!(classify(429, &[], ""), SendError::RateLimited { retry_after: None });
        assert_eq!(
            classify(429, &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")], ""),
            SendError::RateLimited { retry_after: None }
        );
        // A rate-limit code under a 400 is still a rate limit.
        let err = classify(400, &[], &twilio_body(14107, "SMS send rate limit exceeded", 400));
        assert_eq!(err, SendError::RateLimited { retry_after: None });
    }

    #[test]
    fn twilio_server_errors_are_transient_but_gateway_errors_are_ambiguous() {
        let err = classify(500, &[], &twilio_body(20500, "Internal Server Error", 500));
        assert_eq!(
            err,
            SendError::Transient {
                status: 500,
                code: Some(20500)
            }
        );
        assert!(err.is_retryable());
        assert!(!err.may_have_been_delivered());

        let err = classify(503, &[], "");
        assert_eq!(
            err,
            SendError::Transient {
                status: 503,
                code: None
            }
        );
        assert!(err.is_retryable());

        for status in [500, 502, 504] {
            let err = classify(status, &[], "<html>Bad Gateway</html>");
            assert_eq!(err, SendError::GatewayError { status });
            assert!(!err.is_retryable());
            assert!(err.may_have_been_delivered());
        }
    }

    #[test]
    fn a_non_json_refusal_keeps_its_text_masked_and_bounded() {
        let long = format!("to 0612345678 {}", "x".repeat(1000));
        let SendError::Permanent { message, code, .. } = classify(400, &[], &long) else {
            panic!("expected a permanent error");
        };
        assert_eq!(code, None);
        assert!(message.starts_with("to 061*****78 xxx"), "{message}");
        assert_eq!(message.chars().count(), MAX_ERROR_MESSAGE_CHARS);
        let SendError::Permanent { message, .. } = classify(400, &[], "  ") else {
            panic!("expected a permanent error");
        };
        assert_eq!(message, "Bad Request");
    }

    #[test]
    fn ambiguous_and_retryable_never_overlap() {
        let all = [
            SendError::Permanent {
                status: 400,
                code: None,
                message: String::new(),
            },
            SendError::RateLimited { retry_after: None },
            SendError::Transient {
                status: 500,
                code: None,
            },
            SendError::GatewayError { status: 502 },
            SendError::Timeout,
            SendError::Network("refused".into()),
            SendError::ConnectionLost("reset".into()),
            SendError::UnreadableReply {
                status: 201,
                reason: "eof".into(),
            },
        ];
        let ambiguous: Vec<bool> = all.iter().map(SendError::may_have_been_delivered).collect();
        assert_eq!(ambiguous, [false, false, false, true, true, false, true, true]);
        for err in &all {
            assert!(!(err.is_retryable() && err.may_have_been_delivered()), "{err:?}");
        }
    }
}
