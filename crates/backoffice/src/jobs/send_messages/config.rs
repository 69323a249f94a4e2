//! The dispatcher's settings, read from the environment.

use std::time::Duration;

use crate::messages::caps::Caps;
use crate::messages::kind::KindsConfig;
use crate::messages::outbox::OutboxTables;
use crate::messages::quiet::QuietHours;
use crate::runtime::config::{ConfigError, EnvSource, parse_in_range, parse_var, required_var, shop_timezone};

#[derive(Debug, Clone, PartialEq)]
pub struct SendMessagesConfig {
    pub tables: OutboxTablesConfig,
    pub kinds: KindsConfig,
    pub page_size: i32,
    /// Messages in progress at once (the Twilio rate limit paces the sends).
    pub concurrency: usize,
    pub stop_margin: Duration,
    /// A claim older than this belongs to a run that died: it is parked for reconciliation.
    pub stale_claim_after: Duration,
    pub quiet: QuietHours,
    /// No flooding with marketing messages.
    pub caps: Caps,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxTablesConfig {
    pub messages: String,
    pub orders: String,
    pub carts: String,
    pub reviews: String,
    pub consent: String,
}

impl From<&OutboxTablesConfig> for OutboxTables {
    fn from(tables: &OutboxTablesConfig) -> Self {
        Self {
            messages: tables.messages.clone(),
            orders: tables.orders.clone(),
            carts: tables.carts.clone(),
            reviews: tables.reviews.clone(),
            consent: tables.consent.clone(),
        }
    }
}

impl OutboxTablesConfig {
    /// `MESSAGES_TABLE`, `ORDERS_TABLE`, `CARTS_TABLE`, `REVIEWS_TABLE`, `CONSENT_TABLE` (all
    /// required).
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        Ok(Self {
            messages: required_var(env, "MESSAGES_TABLE")?,
            orders: required_var(env, "ORDERS_TABLE")?,
            carts: required_var(env, "CARTS_TABLE")?,
            reviews: required_var(env, "REVIEWS_TABLE")?,
            consent: required_var(env, "CONSENT_TABLE")?,
        })
    }
}

impl SendMessagesConfig {
    /// The tables, every kind's settings ([`KindsConfig::from_env`]), the quiet hours in
    /// `SHOP_TIMEZONE` ([`QuietHours::from_env`]), `MESSAGES_PAGE_SIZE`
    /// (200), `MESSAGES_CONCURRENCY` (40), `STOP_MARGIN_MS` (10000), `STALE_CLAIM_MINUTES` (20).
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        let config = Self {
            tables: OutboxTablesConfig::from_env(env)?,
            kinds: KindsConfig::from_env(env)?,
            quiet: QuietHours::from_env(env, shop_timezone(env)?)?,
            caps: Caps::from_env(env)?,
            page_size: parse_in_range(env, "MESSAGES_PAGE_SIZE", 1..=1000, 200)?,
            concurrency: parse_var(env, "MESSAGES_CONCURRENCY")?.unwrap_or(40),
            stop_margin: parse_var(env, "STOP_MARGIN_MS")?
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_secs(10)),
            stale_claim_after: crate::messages::engine::stale_claim_after(env)?,
        };
        if config.concurrency == 0 {
            return Err(ConfigError::Invalid {
                name: "MESSAGES_CONCURRENCY",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(config)
    }
}
