//! Twilio settings, read once at cold start. Every bad value is refused by name; the auth
//! token is kept in [`AuthToken`], whose `Debug` never shows it.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use crate::domain::locale::Locale;
use crate::domain::phone::PhoneNumber;
use crate::runtime::config::{ConfigError, EnvSource, parse_var, required_var};

pub const DEFAULT_API_BASE_URL: &str = "https://api.twilio.com";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10_000);
/// Default `ValidityPeriod`: 15 minutes in Twilio's queue at most.
pub const DEFAULT_VALIDITY_PERIOD: Duration = Duration::from_secs(900);
/// Twilio's default throughput for a WhatsApp sender is 80 messages per second.
pub const DEFAULT_MAX_MESSAGES_PER_SECOND: NonZeroU32 = NonZeroU32::new(80).expect("80 is not zero");

/// The account's auth token. It has no `Display`, and its `Debug` prints `<redacted>`, so
/// neither a `?config` in a log line nor a panic message can leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(String);

impl AuthToken {
    /// Wraps a token read from anywhere (environment, Secrets Manager). Surrounding
    /// whitespace, such as a trailing newline in a stored secret, is dropped.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into().trim().to_owned())
    }

    /// The token itself, for the `Authorization` header and for checking the signature
    /// of Twilio's webhooks (`record_review_reply::signature`) only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(<redacted>)")
    }
}

/// Who the message comes from. Twilio takes exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// A WhatsApp-enabled number, sent as `From=whatsapp:+E164`.
    WhatsAppNumber(PhoneNumber),
    /// A Messaging Service (`MG` + 32 hex) whose sender pool holds the WhatsApp sender;
    /// sent as `MessagingServiceSid`.
    MessagingService(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioConfig {
    /// `AC` + 32 hex digits.
    pub account_sid: String,
    pub auth_token: AuthToken,
    /// Without a trailing slash, e.g. `https://api.twilio.com`.
    pub api_base_url: String,
    pub sender: Sender,
    /// The approved WhatsApp template (Content SID, `HX` + 32 hex) for review requests.
    /// Without one only a plain body can be sent, which WhatsApp delivers only inside the
    /// 24-hour customer service window.
    pub review_template_sid: Option<String>,
    /// The language of a plain body sent when no template is configured (`SHOP_LOCALE`).
    pub locale: Locale,
    /// For one whole HTTP attempt: connect, send, and read the reply.
    pub timeout: Duration,
    /// Client-side cap on messages per second across all concurrent sends.
    pub max_messages_per_second: NonZeroU32,
    /// Where Twilio posts each message's delivery status (`STATUS_CALLBACK_URL`, the
    /// webhook's URL). Unset: no status is asked for.
    pub status_callback_url: Option<url::Url>,
    /// How long Twilio may keep a message in its queue before dropping it unsent
    /// (`ValidityPeriod`). Bounds how long reconciliation must wait before it can call a
    /// message absent (docs/decisions/reconciliation.md).
    pub validity_period: Duration,
}

impl TwilioConfig {
    /// Reads every setting, the auth token included, from the environment:
    /// `TWILIO_ACCOUNT_SID` (required), `TWILIO_AUTH_TOKEN` (required),
    /// `TWILIO_API_BASE_URL` (`https://api.twilio.com`), exactly one of
    /// `TWILIO_WHATSAPP_FROM` (E.164) and `TWILIO_MESSAGING_SERVICE_SID`,
    /// `REVIEW_TEMPLATE_SID` (optional), `TWILIO_TIMEOUT_MS` (10000), `TWILIO_MAX_MPS` (80),
    /// `SHOP_LOCALE` (fr), `STATUS_CALLBACK_URL` (unset), `TWILIO_VALIDITY_PERIOD_SECONDS`
    /// (900, 1 to 36000).
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        let auth_token = AuthToken::new(required_var(env, "TWILIO_AUTH_TOKEN")?);
        Self::from_env_with_auth_token(env, auth_token)
    }

    /// Like [`TwilioConfig::from_env`], but with the auth token fetched elsewhere (Secrets
    /// Manager in AWS), so it never sits in the function's environment.
    /// `TWILIO_AUTH_TOKEN` is not read.
    pub fn from_env_with_auth_token(env: &impl EnvSource, auth_token: AuthToken) -> Result<Self, ConfigError> {
        if auth_token.is_empty() {
            return Err(ConfigError::Missing("TWILIO_AUTH_TOKEN"));
        }
        let account_sid = parse_sid(&required_var(env, "TWILIO_ACCOUNT_SID")?, "TWILIO_ACCOUNT_SID", "AC")?;
        let api_base_url = match env.var("TWILIO_API_BASE_URL") {
            Some(value) => parse_base_url(value)?,
            None => DEFAULT_API_BASE_URL.to_owned(),
        };
        let review_template_sid = env
            .var("REVIEW_TEMPLATE_SID")
            .map(|value| parse_sid(&value, "REVIEW_TEMPLATE_SID", "HX"))
            .transpose()?;
        let timeout = match parse_var::<u64>(env, "TWILIO_TIMEOUT_MS")? {
            None => DEFAULT_TIMEOUT,
            Some(0) => {
                return Err(ConfigError::Invalid {
                    name: "TWILIO_TIMEOUT_MS",
                    value: "0".into(),
                    reason: "must be at least 1 millisecond".into(),
                });
            }
            Some(millis) => Duration::from_millis(millis),
        };
        let max_messages_per_second =
            parse_var::<NonZeroU32>(env, "TWILIO_MAX_MPS")?.unwrap_or(DEFAULT_MAX_MESSAGES_PER_SECOND);
        let status_callback_url = env
            .var("STATUS_CALLBACK_URL")
            .filter(|value| !value.trim().is_empty())
            .map(parse_callback_url)
            .transpose()?;
        let validity_period = match parse_var::<u64>(env, "TWILIO_VALIDITY_PERIOD_SECONDS")? {
            None => DEFAULT_VALIDITY_PERIOD,
            Some(seconds @ 1..=36_000) => Duration::from_secs(seconds),
            Some(seconds) => {
                return Err(ConfigError::Invalid {
                    name: "TWILIO_VALIDITY_PERIOD_SECONDS",
                    value: seconds.to_string(),
                    reason: "must be between 1 and 36000 seconds (Twilio's limits)".into(),
                });
            }
        };
        Ok(Self {
            account_sid,
            auth_token,
            api_base_url,
            sender: parse_sender(env)?,
            review_template_sid,
            locale: Locale::from_env(env)?,
            timeout,
            max_messages_per_second,
            status_callback_url,
            validity_period,
        })
    }
}

fn parse_sender(env: &impl EnvSource) -> Result<Sender, ConfigError> {
    let whatsapp_from = env.var("TWILIO_WHATSAPP_FROM");
    let messaging_service = env.var("TWILIO_MESSAGING_SERVICE_SID");
    match (whatsapp_from, messaging_service) {
        (Some(_), Some(value)) => Err(ConfigError::Invalid {
            name: "TWILIO_MESSAGING_SERVICE_SID",
            value,
            reason: "set either TWILIO_WHATSAPP_FROM or TWILIO_MESSAGING_SERVICE_SID, not both".into(),
        }),
        (None, None) => Err(ConfigError::Missing(
            "TWILIO_WHATSAPP_FROM or TWILIO_MESSAGING_SERVICE_SID",
        )),
        (Some(value), None) => {
            // Accept the number as Twilio's console shows it, with or without the channel prefix.
            let number = value.trim().strip_prefix("whatsapp:").unwrap_or(value.trim());
            PhoneNumber::parse(number)
                .map(Sender::WhatsAppNumber)
                .map_err(|error| ConfigError::Invalid {
                    name: "TWILIO_WHATSAPP_FROM",
                    reason: error.to_string(),
                    value,
                })
        }
        (None, Some(value)) => parse_sid(&value, "TWILIO_MESSAGING_SERVICE_SID", "MG").map(Sender::MessagingService),
    }
}

/// Twilio SIDs are a two-letter prefix and 32 hex digits; checking here turns a
/// copy-paste slip into a cold-start error instead of a 4xx on every message.
fn parse_sid(value: &str, name: &'static str, prefix: &str) -> Result<String, ConfigError> {
    let sid = value.trim();
    if super::is_sid(sid, prefix) {
        Ok(sid.to_owned())
    } else {
        Err(ConfigError::Invalid {
            name,
            value: value.to_owned(),
            reason: format!("must be '{prefix}' followed by 32 hexadecimal digits"),
        })
    }
}

fn parse_callback_url(value: String) -> Result<url::Url, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: "STATUS_CALLBACK_URL",
        value: value.clone(),
        reason,
    };
    let url = url::Url::parse(value.trim()).map_err(|error| invalid(error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must be an http or https URL".into()));
    }
    if url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid("must not carry credentials or a fragment".into()));
    }
    Ok(url)
}

fn parse_base_url(value: String) -> Result<String, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: "TWILIO_API_BASE_URL",
        value: value.clone(),
        reason,
    };
    let url = reqwest::Url::parse(value.trim()).map_err(|error| invalid(error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must be an http or https URL".into()));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "must be a plain base URL, without credentials, query or fragment".into(),
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::runtime::config::env_of as env;

    const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
    const SERVICE_SID: &str = "MG0123456789abcdef0123456789abcdef";
    const TEMPLATE_SID: &str = "HX0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "s3cr3t-token-value";

    fn minimal() -> HashMap<String, String> {
        env(&[
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
            ("TWILIO_AUTH_TOKEN", TOKEN),
            ("TWILIO_WHATSAPP_FROM", "+14155550100"),
        ])
    }

    fn with(mut base: HashMap<String, String>, name: &str, value: &str) -> HashMap<String, String> {
        base.insert(name.into(), value.into());
        base
    }

    fn without(mut base: HashMap<String, String>, name: &str) -> HashMap<String, String> {
        base.remove(name);
        base
    }

    fn refused_variable(env: &HashMap<String, String>) -> &'static str {
        match TwilioConfig::from_env(env).unwrap_err() {
            ConfigError::Missing(name) => name,
            ConfigError::Invalid { name, .. } => name,
        }
    }

    #[test]
    fn reads_a_minimal_config_with_defaults() {
        let config = TwilioConfig::from_env(&minimal()).unwrap();
        assert_eq!(config.account_sid, ACCOUNT_SID);
        assert_eq!(config.auth_token.expose(), TOKEN);
        assert_eq!(config.api_base_url, "https://api.twilio.com");
        assert_eq!(
            config.sender,
            Sender::WhatsAppNumber(PhoneNumber::parse("+14155550100").unwrap())
        );
        assert_eq!(config.review_template_sid, None);
        assert_eq!(config.timeout, Duration::from_secs(10));
        assert_eq!(config.max_messages_per_second.get(), 80);
        assert_eq!(config.status_callback_url, None);
        assert_eq!(config.validity_period, Duration::from_secs(900));
    }

    #[test]
    fn reads_every_optional_setting() {
        let env = env(&[
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
            ("TWILIO_AUTH_TOKEN", TOKEN),
            ("TWILIO_MESSAGING_SERVICE_SID", SERVICE_SID),
            ("TWILIO_API_BASE_URL", "http://127.0.0.1:4010/"),
            ("REVIEW_TEMPLATE_SID", TEMPLATE_SID),
            ("TWILIO_TIMEOUT_MS", "2500"),
            ("TWILIO_MAX_MPS", "10"),
            ("STATUS_CALLBACK_URL", "https://hooks.example/twilio"),
            ("TWILIO_VALIDITY_PERIOD_SECONDS", "600"),
        ]);
        let config = TwilioConfig::from_env(&env).unwrap();
        assert_eq!(
            config.status_callback_url.as_ref().map(url::Url::as_str),
            Some("https://hooks.example/twilio")
        );
        assert_eq!(config.validity_period, Duration::from_secs(600));
        assert_eq!(config.sender, Sender::MessagingService(SERVICE_SID.into()));
        assert_eq!(config.api_base_url, "http://127.0.0.1:4010");
        assert_eq!(config.review_template_sid.as_deref(), Some(TEMPLATE_SID));
        assert_eq!(config.timeout, Duration::from_millis(2500));
        assert_eq!(config.max_messages_per_second.get(), 10);
    }

    #[test]
    fn accepts_a_whatsapp_prefixed_sender() {
        let config = TwilioConfig::from_env(&with(minimal(), "TWILIO_WHATSAPP_FROM", "whatsapp:+14155550100")).unwrap();
        assert_eq!(
            config.sender,
            Sender::WhatsAppNumber(PhoneNumber::parse("+14155550100").unwrap())
        );
    }

    #[test]
    fn takes_the_token_from_the_caller_instead_of_the_environment() {
        let env = without(minimal(), "TWILIO_AUTH_TOKEN");
        assert_eq!(refused_variable(&env), "TWILIO_AUTH_TOKEN");
        let config = TwilioConfig::from_env_with_auth_token(&env, AuthToken::new("from-secrets-manager\n")).unwrap();
        assert_eq!(config.auth_token.expose(), "from-secrets-manager");
        let empty = TwilioConfig::from_env_with_auth_token(&env, AuthToken::new("  "));
        assert_eq!(empty, Err(ConfigError::Missing("TWILIO_AUTH_TOKEN")));
    }

    #[test]
    fn refuses_each_bad_value_by_name() {
        let cases = [
            (without(minimal(), "TWILIO_ACCOUNT_SID"), "TWILIO_ACCOUNT_SID"),
            (with(minimal(), "TWILIO_ACCOUNT_SID", "AC123"), "TWILIO_ACCOUNT_SID"),
            (
                with(minimal(), "TWILIO_ACCOUNT_SID", "MG0123456789abcdef0123456789abcdef"),
                "TWILIO_ACCOUNT_SID",
            ),
            (
                with(minimal(), "TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdeg"),
                "TWILIO_ACCOUNT_SID",
            ),
            (with(minimal(), "TWILIO_AUTH_TOKEN", ""), "TWILIO_AUTH_TOKEN"),
            (
                with(minimal(), "TWILIO_API_BASE_URL", "api.twilio.com"),
                "TWILIO_API_BASE_URL",
            ),
            (
                with(minimal(), "TWILIO_API_BASE_URL", "ftp://api.twilio.com"),
                "TWILIO_API_BASE_URL",
            ),
            (
                with(minimal(), "TWILIO_API_BASE_URL", "https://AC1:token@api.twilio.com"),
                "TWILIO_API_BASE_URL",
            ),
            (
                with(minimal(), "TWILIO_WHATSAPP_FROM", "0612345678"),
                "TWILIO_WHATSAPP_FROM",
            ),
            (
                without(minimal(), "TWILIO_WHATSAPP_FROM"),
                "TWILIO_WHATSAPP_FROM or TWILIO_MESSAGING_SERVICE_SID",
            ),
            (
                with(minimal(), "TWILIO_MESSAGING_SERVICE_SID", SERVICE_SID),
                "TWILIO_MESSAGING_SERVICE_SID",
            ),
            (
                with(
                    without(minimal(), "TWILIO_WHATSAPP_FROM"),
                    "TWILIO_MESSAGING_SERVICE_SID",
                    "MG-not-a-sid",
                ),
                "TWILIO_MESSAGING_SERVICE_SID",
            ),
            (
                with(minimal(), "REVIEW_TEMPLATE_SID", SERVICE_SID),
                "REVIEW_TEMPLATE_SID",
            ),
            (with(minimal(), "TWILIO_TIMEOUT_MS", "ten"), "TWILIO_TIMEOUT_MS"),
            (with(minimal(), "TWILIO_TIMEOUT_MS", "0"), "TWILIO_TIMEOUT_MS"),
            (with(minimal(), "TWILIO_MAX_MPS", "0"), "TWILIO_MAX_MPS"),
            (with(minimal(), "TWILIO_MAX_MPS", "-5"), "TWILIO_MAX_MPS"),
            (
                with(minimal(), "STATUS_CALLBACK_URL", "hooks.example/twilio"),
                "STATUS_CALLBACK_URL",
            ),
            (
                with(minimal(), "STATUS_CALLBACK_URL", "ftp://hooks.example/twilio"),
                "STATUS_CALLBACK_URL",
            ),
            (
                with(minimal(), "TWILIO_VALIDITY_PERIOD_SECONDS", "0"),
                "TWILIO_VALIDITY_PERIOD_SECONDS",
            ),
            (
                with(minimal(), "TWILIO_VALIDITY_PERIOD_SECONDS", "36001"),
                "TWILIO_VALIDITY_PERIOD_SECONDS",
            ),
        ];
        for (env, expected) in cases {
            assert_eq!(refused_variable(&env), expected, "{env:?}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let config = TwilioConfig::from_env(&minimal()).unwrap();
        let printed = format!("{config:?} {config:#?} {:?}", config.auth_token);
        assert!(!printed.contains(TOKEN), "{printed}");
        assert!(printed.contains("AuthToken(<redacted>)"), "{printed}");
    }

    #[test]
    fn a_refused_token_is_never_echoed_in_the_error() {
        // The only check on the token is emptiness, reported without its value.
        let err = TwilioConfig::from_env(&with(minimal(), "TWILIO_AUTH_TOKEN", "   ")).unwrap_err();
        assert_eq!(err, ConfigError::Missing("TWILIO_AUTH_TOKEN"));
    }
}
