//! The review job's settings, read from the environment.

use std::time::Duration;

use jiff::tz::TimeZone;

use crate::messages::caps::Caps;
use crate::messages::kind::Kind;
use crate::messages::quiet::QuietHours;
use crate::runtime::config::{ConfigError, EnvSource, parse_in_range, parse_var, required_var, shop_timezone};

/// The most days `REVIEW_DELAY_DAYS` and `REVIEW_MAX_AGE_DAYS` take: ten years.
pub const MAX_DAYS: u32 = 3650;

#[derive(Debug, Clone, PartialEq)]
pub struct ReviewJobConfig {
    pub orders_table: String,
    pub reviews_table: String,
    pub consent_table: String,
    pub shop_timezone: TimeZone,
    pub delay_days: u32,
    pub max_age_days: u32,
    pub page_size: i32,
    /// Orders in progress at once (the Twilio rate limit paces the sends).
    pub concurrency: usize,
    pub stop_margin: Duration,
    /// A claim older than this belongs to a run that died: it is parked for reconciliation.
    pub stale_claim_after: Duration,
    pub quiet: QuietHours,
    /// The shop-time hour of the daily run (the schedule's, `ReviewHour` in the template).
    pub run_hour: i8,
    /// No flooding with marketing messages.
    pub caps: Caps,
}

impl ReviewJobConfig {
    /// `ORDERS_TABLE`, `REVIEWS_TABLE`, `CONSENT_TABLE` (required), `SHOP_TIMEZONE` (Europe/Paris),
    /// `REVIEW_DELAY_DAYS` (7), `REVIEW_MAX_AGE_DAYS` (30), `REVIEW_PAGE_SIZE` (200),
    /// `REVIEW_CONCURRENCY` (40), `STOP_MARGIN_MS` (60000), `STALE_CLAIM_MINUTES` (20),
    /// `REVIEW_HOUR` (10, 4 to 23: the run's hour, which the quiet hours must leave open).
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        let shop_timezone = shop_timezone(env)?;
        let config = Self {
            quiet: QuietHours::from_env(env, shop_timezone.clone())?,
            run_hour: parse_in_range(env, "REVIEW_HOUR", 4..=23, 10)?,
            caps: Caps::from_env(env)?,
            orders_table: required_var(env, "ORDERS_TABLE")?,
            reviews_table: required_var(env, "REVIEWS_TABLE")?,
            consent_table: required_var(env, "CONSENT_TABLE")?,
            shop_timezone,
            delay_days: parse_in_range(env, "REVIEW_DELAY_DAYS", 0..=MAX_DAYS, 7)?,
            max_age_days: parse_in_range(env, "REVIEW_MAX_AGE_DAYS", 1..=MAX_DAYS, 30)?,
            page_size: parse_in_range(env, "REVIEW_PAGE_SIZE", 1..=1000, 200)?,
            concurrency: parse_var(env, "REVIEW_CONCURRENCY")?.unwrap_or(40),
            stop_margin: parse_var(env, "STOP_MARGIN_MS")?
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_secs(60)),
            stale_claim_after: crate::messages::engine::stale_claim_after(env)?,
        };
        let invalid = |name, value: String, reason: &str| ConfigError::Invalid {
            name,
            value,
            reason: reason.into(),
        };
        if config.max_age_days < config.delay_days {
            return Err(invalid(
                "REVIEW_MAX_AGE_DAYS",
                config.max_age_days.to_string(),
                "must be at least REVIEW_DELAY_DAYS",
            ));
        }
        let run_time = jiff::civil::Time::new(config.run_hour, 0, 0, 0).unwrap_or_default();
        if config.quiet.holds_every_day_at(Kind::ReviewRequest, run_time) {
            return Err(invalid(
                "REVIEW_HOUR",
                config.run_hour.to_string(),
                &format!(
                    "the daily run would fall in the quiet hours ({}) and hold every review request until it is \
                     too old: move the run or the quiet hours, or exempt review_request (QUIET_HOURS_EXEMPT)",
                    config.quiet.hours()
                ),
            ));
        }
        if config.concurrency == 0 {
            return Err(invalid("REVIEW_CONCURRENCY", "0".into(), "must be at least 1"));
        }
        Ok(config)
    }
}
