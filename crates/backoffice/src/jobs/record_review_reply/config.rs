//! The webhook's settings, read from the environment.

use crate::domain::locale::Locale;
use crate::domain::phone::PhoneNumber;
use crate::runtime::config::{ConfigError, EnvSource, parse_in_range, parse_var, required_var};

#[derive(Debug, Clone, PartialEq)]
pub struct ReplyConfig {
    pub orders_table: String,
    pub reviews_table: String,
    /// Where opt-outs and opt-ins are recorded.
    pub consent_table: String,
    /// The language of the answers.
    pub locale: Locale,
    /// The shop's own inbound handler: what is not a review reply or a consent keyword goes there.
    pub forward_url: Option<String>,
    pub forward_timeout: std::time::Duration,
    /// The exact URL configured in Twilio's console (scheme, host, port, path, query).
    /// `None`: the Function URL the request was routed through (`requestContext.domainName`
    /// + path + query, set by Lambda), never the caller's `Host` header.
    pub webhook_url: Option<String>,
    /// A reply matches a request sent at most this many days ago.
    pub window_days: u32,
    /// At most one negative-review alert per order in this many hours, corrections
    /// included.
    pub alert_cooldown_hours: u32,
    pub alert_topic_arn: Option<String>,
    pub admin_whatsapp_to: Option<PhoneNumber>,
    pub admin_alert_template_sid: Option<String>,
    /// Where delivery statuses are recorded (`MESSAGES_TABLE`); unset: not recorded.
    pub messages_table: Option<String>,
    /// Where the day's counters are (`STATS_TABLE`); unset: nothing counted.
    pub stats_table: Option<String>,
}

fn invalid(name: &'static str, value: impl Into<String>, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.into(),
        reason: reason.into(),
    }
}

impl ReplyConfig {
    /// `ORDERS_TABLE`, `REVIEWS_TABLE`, `CONSENT_TABLE` (required), `SHOP_LOCALE` (fr),
    /// `FORWARD_WEBHOOK_URL` (unset: nothing forwarded), `FORWARD_TIMEOUT_MS` (8000), `REPLY_WEBHOOK_URL` (unset),
    /// `REPLY_WINDOW_DAYS` (14), `ALERT_COOLDOWN_HOURS` (24), `ALERT_TOPIC_ARN` (unset:
    /// alerts are logged only),
    /// `ADMIN_WHATSAPP_TO` and `ADMIN_ALERT_TEMPLATE_SID` (WhatsApp alerts with both; the
    /// template needs the number),
    /// `MESSAGES_TABLE` and `STATS_TABLE` (unset: statuses not recorded, nothing counted).
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        let webhook_url = env.var("REPLY_WEBHOOK_URL").map(|url| url.trim().to_owned());
        if let Some(url) = &webhook_url {
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || url.contains('#') || url.contains(char::is_whitespace) {
                return Err(invalid(
                    "REPLY_WEBHOOK_URL",
                    super::signature::without_credentials(url),
                    "must be the exact http(s) URL configured in Twilio, without a fragment",
                ));
            }
        }
        let window_days = parse_in_range(env, "REPLY_WINDOW_DAYS", 1..=90, 14)?;
        let alert_cooldown_hours = parse_in_range(env, "ALERT_COOLDOWN_HOURS", 1..=720, 24)?;
        let admin_whatsapp_to = env
            .var("ADMIN_WHATSAPP_TO")
            .map(|value| {
                let number = value.trim().strip_prefix("whatsapp:").unwrap_or(value.trim());
                PhoneNumber::parse(number).map_err(|e| invalid("ADMIN_WHATSAPP_TO", value.clone(), &e.to_string()))
            })
            .transpose()?;
        let admin_alert_template_sid = env.var("ADMIN_ALERT_TEMPLATE_SID").map(|sid| sid.trim().to_owned());
        if let Some(sid) = &admin_alert_template_sid {
            let well_formed =
                sid.len() == 34 && sid.starts_with("HX") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
            if !well_formed {
                return Err(invalid(
                    "ADMIN_ALERT_TEMPLATE_SID",
                    sid.clone(),
                    "must be 'HX' followed by 32 hexadecimal digits",
                ));
            }
        }
        // The number alone is allowed: it may be there for the daily report only, and the
        // webhook must never fail to start over it (every reply and STOP would be lost); the
        // alerts then go by e-mail only. A template without a number has nowhere to go.
        if let (None, Some(_)) = (&admin_whatsapp_to, &admin_alert_template_sid) {
            return Err(ConfigError::Missing("ADMIN_WHATSAPP_TO"));
        }
        Ok(Self {
            orders_table: required_var(env, "ORDERS_TABLE")?,
            reviews_table: required_var(env, "REVIEWS_TABLE")?,
            consent_table: required_var(env, "CONSENT_TABLE")?,
            locale: Locale::from_env(env)?,
            forward_url: match env
                .var("FORWARD_WEBHOOK_URL")
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
            {
                None => None,
                Some(url)
                    if url.starts_with("https://")
                        || url.starts_with("http://127.0.0.1")
                        || url.starts_with("http://localhost") =>
                {
                    Some(url)
                }
                Some(url) => {
                    let shown = super::signature::without_credentials(&url);
                    return Err(invalid("FORWARD_WEBHOOK_URL", shown, "must be an https:// URL"));
                }
            },
            forward_timeout: match parse_var::<u64>(env, "FORWARD_TIMEOUT_MS")? {
                None => super::forward::DEFAULT_FORWARD_TIMEOUT,
                Some(ms) if (100..=10_000).contains(&ms) => std::time::Duration::from_millis(ms),
                Some(ms) => {
                    return Err(invalid(
                        "FORWARD_TIMEOUT_MS",
                        ms.to_string(),
                        "must be between 100 and 10000 (Twilio waits 15 s)",
                    ));
                }
            },
            webhook_url,
            window_days,
            alert_cooldown_hours,
            alert_topic_arn: env.var("ALERT_TOPIC_ARN"),
            admin_whatsapp_to,
            admin_alert_template_sid,
            messages_table: env.var("MESSAGES_TABLE").filter(|v| !v.trim().is_empty()),
            stats_table: env.var("STATS_TABLE").filter(|v| !v.trim().is_empty()),
        })
    }
}
