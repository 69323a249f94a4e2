//! `daily-report`'s settings.

use jiff::tz::TimeZone;

use crate::domain::locale::Locale;
use crate::domain::phone::PhoneNumber;
use crate::runtime::config::{ConfigError, EnvSource, shop_timezone};

#[derive(Debug, Clone, PartialEq)]
pub struct ReportConfig {
    pub locale: Locale,
    /// ISO 4217 code shown beside amounts.
    pub currency: String,
    pub timezone: TimeZone,
    /// The SNS topic the owner's e-mail subscribes to.
    pub topic_arn: Option<String>,
    /// The owner's WhatsApp number, and the approved template the report is sent with.
    pub whatsapp: Option<(PhoneNumber, String)>,
}

fn invalid(name: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

impl ReportConfig {
    /// `SHOP_LOCALE` (fr), `SHOP_CURRENCY` (EUR), `SHOP_TIMEZONE` (Europe/Paris),
    /// `REPORT_TOPIC_ARN` (unset: no e-mail), `ADMIN_WHATSAPP_TO` and
    /// `REPORT_TEMPLATE_SID` (no template: no WhatsApp report; the number is also the
    /// negative-review alerts', so it may be set without one).
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        let set = |name| env.var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let currency = set("SHOP_CURRENCY").unwrap_or_else(|| "EUR".into());
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(
                "SHOP_CURRENCY",
                &currency,
                "must be a 3-letter ISO 4217 code such as EUR",
            ));
        }
        let to = set("ADMIN_WHATSAPP_TO")
            .map(|value| {
                let number = value.strip_prefix("whatsapp:").unwrap_or(&value);
                PhoneNumber::parse(number).map_err(|e| invalid("ADMIN_WHATSAPP_TO", &value, &e.to_string()))
            })
            .transpose()?;
        let template = set("REPORT_TEMPLATE_SID");
        if let Some(sid) = &template {
            let well_formed =
                sid.len() == 34 && sid.starts_with("HX") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
            if !well_formed {
                return Err(invalid(
                    "REPORT_TEMPLATE_SID",
                    sid,
                    "must be 'HX' followed by 32 hexadecimal digits",
                ));
            }
        }
        let whatsapp = match (to, template) {
            (Some(to), Some(template)) => Some((to, template)),
            (Some(_), None) => None,
            (None, Some(_)) => return Err(ConfigError::Missing("ADMIN_WHATSAPP_TO")),
            (None, None) => None,
        };
        Ok(Self {
            locale: Locale::from_env(env)?,
            currency,
            timezone: shop_timezone(env)?,
            topic_arn: set("REPORT_TOPIC_ARN"),
            whatsapp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::env_of;

    #[test]
    fn reads_defaults_and_refuses_bad_values_by_name() {
        let config = ReportConfig::from_env(&env_of(&[])).unwrap();
        assert_eq!(
            (config.currency.as_str(), config.topic_arn, config.whatsapp),
            ("EUR", None, None)
        );
        let refused = |pairs: &[(&str, &str)]| match ReportConfig::from_env(&env_of(pairs)) {
            Err(ConfigError::Invalid { name, .. }) => name,
            Err(ConfigError::Missing(name)) => name,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(&[("SHOP_CURRENCY", "euro")]), "SHOP_CURRENCY");
        let alerts_only = ReportConfig::from_env(&env_of(&[("ADMIN_WHATSAPP_TO", "+33612345678")])).unwrap();
        assert_eq!(
            alerts_only.whatsapp, None,
            "the alerts' number without a template: no WhatsApp report"
        );
        assert_eq!(refused(&[("ADMIN_WHATSAPP_TO", "0612345678")]), "ADMIN_WHATSAPP_TO");
        assert_eq!(refused(&[("REPORT_TEMPLATE_SID", "HX123")]), "REPORT_TEMPLATE_SID");
        assert_eq!(refused(&[("SHOP_TIMEZONE", "Mars/Base")]), "SHOP_TIMEZONE");
    }
}
