//! The sweep's settings, read from the environment.

use std::time::Duration;

use crate::runtime::config::{ConfigError, EnvSource, parse_var, required_var};

#[derive(Debug, Clone, PartialEq)]
pub struct SweeperConfig {
    pub carts_table: String,
    /// Index entries per Query page; bounds the memory a run holds.
    pub page_size: i32,
    /// Deletes in flight at once.
    pub concurrency: usize,
    /// Stop taking new work this long before the invocation's deadline.
    pub stop_margin: Duration,
}

impl SweeperConfig {
    /// `CARTS_TABLE` (required), `SWEEP_PAGE_SIZE` (500), `SWEEP_CONCURRENCY` (32),
    /// `STOP_MARGIN_MS` (10000).
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        let config = Self {
            carts_table: required_var(env, "CARTS_TABLE")?,
            page_size: parse_var(env, "SWEEP_PAGE_SIZE")?.unwrap_or(500),
            concurrency: parse_var(env, "SWEEP_CONCURRENCY")?.unwrap_or(32),
            stop_margin: parse_var(env, "STOP_MARGIN_MS")?
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_secs(10)),
        };
        if !(1..=1000).contains(&config.page_size) {
            return Err(ConfigError::Invalid {
                name: "SWEEP_PAGE_SIZE",
                value: config.page_size.to_string(),
                reason: "must be between 1 and 1000".into(),
            });
        }
        if config.concurrency == 0 {
            return Err(ConfigError::Invalid {
                name: "SWEEP_CONCURRENCY",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(config)
    }
}
