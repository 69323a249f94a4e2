//! The kinds of outgoing message, and the settings each one declares.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::domain::locale::Locale;
use crate::runtime::config::{ConfigError, EnvSource, parse_var};

/// Every message the back office sends. The first part of a message's key in the
/// Messages table (`{kind}#{subjectId}`), so a subject gets each kind once.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Kind {
    OrderConfirmation,
    PaymentReminder,
    ReadyForPickup,
    PickupReminder,
    SatisfactionCheck,
    ReviewRequest,
    ReviewReminder,
    AbandonedCart,
}

/// What a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Subject {
    Order,
    Cart,
}

/// WhatsApp's template categories: Meta prices them differently, and a marketing
/// message needs the customer's marketing opt-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr, strum::EnumString)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Category {
    Utility,
    Marketing,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn subject(self) -> Subject {
        match self {
            Self::AbandonedCart => Subject::Cart,
            _ => Subject::Order,
        }
    }

    /// The names of this kind's settings: enabled, delay in minutes, template, category.
    fn setting_names(self) -> [&'static str; 4] {
        match self {
            Self::OrderConfirmation => [
                "ORDER_CONFIRMATION_ENABLED",
                "ORDER_CONFIRMATION_DELAY_MINUTES",
                "ORDER_CONFIRMATION_CONTENT_SID",
                "ORDER_CONFIRMATION_CATEGORY",
            ],
            Self::PaymentReminder => [
                "PAYMENT_REMINDER_ENABLED",
                "PAYMENT_REMINDER_DELAY_MINUTES",
                "PAYMENT_REMINDER_CONTENT_SID",
                "PAYMENT_REMINDER_CATEGORY",
            ],
            Self::ReadyForPickup => [
                "READY_FOR_PICKUP_ENABLED",
                "READY_FOR_PICKUP_DELAY_MINUTES",
                "READY_FOR_PICKUP_CONTENT_SID",
                "READY_FOR_PICKUP_CATEGORY",
            ],
            Self::PickupReminder => [
                "PICKUP_REMINDER_ENABLED",
                "PICKUP_REMINDER_DELAY_MINUTES",
                "PICKUP_REMINDER_CONTENT_SID",
                "PICKUP_REMINDER_CATEGORY",
            ],
            Self::SatisfactionCheck => [
                "SATISFACTION_CHECK_ENABLED",
                "SATISFACTION_CHECK_DELAY_MINUTES",
                "SATISFACTION_CHECK_CONTENT_SID",
                "SATISFACTION_CHECK_CATEGORY",
            ],
            Self::ReviewRequest => [
                "REVIEW_REQUEST_ENABLED",
                "REVIEW_REQUEST_DELAY_MINUTES",
                "REVIEW_REQUEST_CONTENT_SID",
                "REVIEW_REQUEST_CATEGORY",
            ],
            Self::ReviewReminder => [
                "REVIEW_REMINDER_ENABLED",
                "REVIEW_REMINDER_DELAY_MINUTES",
                "REVIEW_REMINDER_CONTENT_SID",
                "REVIEW_REMINDER_CATEGORY",
            ],
            Self::AbandonedCart => [
                "ABANDONED_CART_ENABLED",
                "ABANDONED_CART_DELAY_MINUTES",
                "ABANDONED_CART_CONTENT_SID",
                "ABANDONED_CART_CATEGORY",
            ],
        }
    }

    /// The documented defaults (docs/messages.md): (enabled, delay, category).
    fn defaults(self) -> (bool, Duration, Category) {
        const HOUR: u64 = 3600;
        match self {
            Self::OrderConfirmation => (true, Duration::ZERO, Category::Utility),
            Self::PaymentReminder => (true, Duration::from_secs(24 * HOUR), Category::Utility),
            Self::ReadyForPickup => (true, Duration::ZERO, Category::Utility),
            Self::PickupReminder => (true, Duration::from_secs(48 * HOUR), Category::Utility),
            Self::SatisfactionCheck => (false, Duration::from_secs(24 * HOUR), Category::Utility),
            Self::ReviewRequest => (true, Duration::from_secs(7 * 24 * HOUR), Category::Marketing),
            Self::ReviewReminder => (true, Duration::from_secs(7 * 24 * HOUR), Category::Marketing),
            Self::AbandonedCart => (true, Duration::from_secs(HOUR), Category::Marketing),
        }
    }

    /// The text sent when no template is configured (WhatsApp delivers free text only
    /// within 24 hours of the customer's last message), in the shop's language.
    pub fn fallback_body(self, locale: Locale, first_name: &str, subject_id: &str) -> String {
        match (locale, self) {
            (Locale::En, Self::OrderConfirmation) => {
                format!("Hello {first_name}, we received your order {subject_id}. Thank you!")
            }
            (Locale::En, Self::PaymentReminder) => {
                format!("Hello {first_name}, your order {subject_id} is waiting for its payment.")
            }
            (Locale::En, Self::ReadyForPickup) => {
                format!("Hello {first_name}, your order {subject_id} is ready for pickup.")
            }
            (Locale::En, Self::PickupReminder) => {
                format!("Hello {first_name}, a reminder: your order {subject_id} is still waiting for you.")
            }
            (Locale::En, Self::SatisfactionCheck) => {
                format!("Hello {first_name}, is everything all right with your order {subject_id}?")
            }
            (Locale::En, Self::ReviewRequest | Self::ReviewReminder) => format!(
                "Hello {first_name}, thank you for your order {subject_id}! How would you rate it from 1 to 5? \
                 Reply with a number, and a comment if you like."
            ),
            (Locale::En, Self::AbandonedCart) => {
                format!("Hello {first_name}, you left items in your cart {subject_id}. They are kept for you.")
            }
            (Locale::Fr, Self::OrderConfirmation) => {
                format!("Bonjour {first_name}, nous avons bien reçu votre commande {subject_id}. Merci !")
            }
            (Locale::Fr, Self::PaymentReminder) => {
                format!("Bonjour {first_name}, votre commande {subject_id} attend son paiement.")
            }
            (Locale::Fr, Self::ReadyForPickup) => {
                format!("Bonjour {first_name}, votre commande {subject_id} est prête à être retirée.")
            }
            (Locale::Fr, Self::PickupReminder) => {
                format!("Bonjour {first_name}, un rappel : votre commande {subject_id} vous attend toujours.")
            }
            (Locale::Fr, Self::SatisfactionCheck) => {
                format!("Bonjour {first_name}, tout va bien avec votre commande {subject_id} ?")
            }
            (Locale::Fr, Self::ReviewRequest | Self::ReviewReminder) => format!(
                "Bonjour {first_name}, merci pour votre commande {subject_id} ! Quelle note lui donneriez-vous de 1 à 5 ? \
                 Répondez par un chiffre, et un commentaire si vous le souhaitez."
            ),
            (Locale::Fr, Self::AbandonedCart) => {
                format!(
                    "Bonjour {first_name}, vous avez laissé des articles dans votre panier {subject_id}. \
                     Nous les gardons pour vous."
                )
            }
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest delay a kind may have: 30 days, well inside the calendar every time
/// computation can hold.
pub const MAX_DELAY_MINUTES: u64 = 30 * 24 * 60;

/// What a kind declares, from the stack's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindSettings {
    pub enabled: bool,
    /// From the trigger to the message.
    pub delay: Duration,
    /// The approved WhatsApp template (`HX…`); `None` sends [`Kind::fallback_body`].
    pub content_sid: Option<String>,
    pub category: Category,
}

/// The settings of every kind sent through the Messages table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindsConfig {
    settings: Vec<(Kind, KindSettings)>,
}

impl KindsConfig {
    /// Every kind but the review request: `{KIND}_ENABLED` (true/false), `{KIND}_DELAY_MINUTES`, `{KIND}_CONTENT_SID`,
    /// `{KIND}_CATEGORY` (utility/marketing) for each kind, e.g. `PAYMENT_REMINDER_DELAY_MINUTES`.
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        use strum::IntoEnumIterator;
        let mut settings = Vec::new();
        // The review request keeps its own settings (REVIEW_DELAY_DAYS, REVIEW_TEMPLATE_SID):
        // its daily run reads them.
        for kind in Kind::iter().filter(|kind| *kind != Kind::ReviewRequest) {
            let [enabled_name, delay_name, content_sid_name, category_name] = kind.setting_names();
            let (enabled, delay, category) = kind.defaults();
            let enabled = match env.var(enabled_name).filter(|v| !v.trim().is_empty()) {
                None => enabled,
                Some(value) => parse_bool(&value).ok_or_else(|| ConfigError::Invalid {
                    name: enabled_name,
                    value: value.clone(),
                    reason: "must be true or false".into(),
                })?,
            };
            let delay = match parse_var::<u64>(env, delay_name)? {
                None => delay,
                Some(minutes) if minutes <= MAX_DELAY_MINUTES => Duration::from_secs(minutes * 60),
                Some(minutes) => {
                    return Err(ConfigError::Invalid {
                        name: delay_name,
                        value: minutes.to_string(),
                        reason: format!("must be at most {MAX_DELAY_MINUTES} (30 days)"),
                    });
                }
            };
            let category = match env.var(category_name).filter(|v| !v.trim().is_empty()) {
                None => category,
                Some(value) => value.trim().parse().map_err(|_| ConfigError::Invalid {
                    name: category_name,
                    value: value.clone(),
                    reason: "must be utility or marketing".into(),
                })?,
            };
            let content_sid = env
                .var(content_sid_name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty());
            settings.push((
                kind,
                KindSettings {
                    enabled,
                    delay,
                    content_sid,
                    category,
                },
            ));
        }
        Ok(Self { settings })
    }

    /// Every kind with its defaults.
    pub fn defaults() -> Self {
        Self::from_env(&std::collections::HashMap::<String, String>::new()).unwrap_or(Self { settings: Vec::new() })
    }

    /// Every kind turned off (tests that look at something else).
    pub fn all_disabled() -> Self {
        let mut kinds = Self::defaults();
        for (_, settings) in &mut kinds.settings {
            settings.enabled = false;
        }
        kinds
    }

    pub fn get(&self, kind: Kind) -> Option<&KindSettings> {
        self.settings.iter().find(|(k, _)| *k == kind).map(|(_, s)| s)
    }

    /// The settings of `kind` if it is enabled.
    pub fn enabled(&self, kind: Kind) -> Option<&KindSettings> {
        self.get(kind).filter(|s| s.enabled)
    }

    /// Changes one kind's settings (tests and tools).
    pub fn with(mut self, kind: Kind, change: impl FnOnce(&mut KindSettings)) -> Self {
        if let Some((_, settings)) = self.settings.iter_mut().find(|(k, _)| *k == kind) {
            change(settings);
        }
        self
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Some(true),
        "false" | "off" | "no" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_delay_beyond_thirty_days_is_refused_by_name() {
        let env = crate::runtime::config::env_of(&[("PICKUP_REMINDER_DELAY_MINUTES", "18446744073709551615")]);
        let error = KindsConfig::from_env(&env).unwrap_err();
        assert!(error.to_string().contains("PICKUP_REMINDER_DELAY_MINUTES"), "{error}");
        let env = crate::runtime::config::env_of(&[("PICKUP_REMINDER_DELAY_MINUTES", "43200")]);
        assert!(KindsConfig::from_env(&env).is_ok(), "30 days is allowed");
    }

    #[test]
    fn every_plain_text_names_its_order_or_cart() {
        use strum::IntoEnumIterator;
        // Reconciliation finds a lost send at Twilio by the id in its body.
        for locale in [Locale::Fr, Locale::En] {
            for kind in Kind::iter() {
                let body = kind.fallback_body(locale, "Ana", "sub-42");
                assert!(body.contains("sub-42"), "{kind} ({locale:?}): {body}");
            }
        }
    }

    #[test]
    fn defaults_follow_the_documented_table() {
        let kinds = KindsConfig::defaults();
        assert!(!kinds.get(Kind::SatisfactionCheck).unwrap().enabled);
        assert_eq!(
            kinds.get(Kind::PaymentReminder).unwrap().delay,
            Duration::from_secs(24 * 3600)
        );
        assert_eq!(kinds.get(Kind::AbandonedCart).unwrap().category, Category::Marketing);
        assert_eq!(kinds.enabled(Kind::SatisfactionCheck), None);
    }

    #[test]
    fn settings_come_from_the_environment_and_bad_ones_are_refused_by_name() {
        let env = HashMap::from([
            ("SATISFACTION_CHECK_ENABLED".to_string(), "true".to_string()),
            ("PICKUP_REMINDER_DELAY_MINUTES".to_string(), "90".to_string()),
            ("ORDER_CONFIRMATION_CONTENT_SID".to_string(), " HX123 ".to_string()),
        ]);
        let kinds = KindsConfig::from_env(&env).unwrap();
        assert!(kinds.get(Kind::SatisfactionCheck).unwrap().enabled);
        assert_eq!(
            kinds.get(Kind::PickupReminder).unwrap().delay,
            Duration::from_secs(90 * 60)
        );
        assert_eq!(
            kinds.get(Kind::OrderConfirmation).unwrap().content_sid.as_deref(),
            Some("HX123")
        );
        let bad = HashMap::from([("ABANDONED_CART_CATEGORY".to_string(), "promo".to_string())]);
        let error = KindsConfig::from_env(&bad).unwrap_err().to_string();
        assert!(error.contains("ABANDONED_CART_CATEGORY"), "{error}");
        let bad = HashMap::from([("PAYMENT_REMINDER_ENABLED".to_string(), "maybe".to_string())]);
        assert!(
            KindsConfig::from_env(&bad)
                .unwrap_err()
                .to_string()
                .contains("PAYMENT_REMINDER_ENABLED")
        );
    }
}
