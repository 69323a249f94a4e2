//! The sweep's settings, read from the environment.

use std::time::Duration;

use super::store::DELETE_BATCH;
use crate::runtime::config::{ConfigError, EnvSource, parse_in_range, parse_var, required_var};

#[derive(Debug, Clone, PartialEq)]
pub struct SweeperConfig {
    pub carts_table: String,
    /// Index entries per Query page; bounds the memory a run holds.
    pub page_size: i32,
    /// Delete requests in flight at once (a batch is one request).
    pub concurrency: usize,
    /// Conditional deletes per request (`BatchExecuteStatement`, up to 25); 1 deletes each
    /// cart with its own `DeleteItem`.
    pub batch_size: usize,
    /// Stop taking new work this long before the invocation's deadline.
    pub stop_margin: Duration,
}

impl SweeperConfig {
    /// `CARTS_TABLE` (required), `SWEEP_PAGE_SIZE` (500), `SWEEP_CONCURRENCY` (32),
    /// `SWEEP_BATCH_SIZE` (25, 1 to 25), `STOP_MARGIN_MS` (10000).
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        let config = Self {
            carts_table: required_var(env, "CARTS_TABLE")?,
            page_size: parse_in_range(env, "SWEEP_PAGE_SIZE", 1..=1000, 500)?,
            concurrency: parse_var(env, "SWEEP_CONCURRENCY")?.unwrap_or(32),
            batch_size: parse_in_range(env, "SWEEP_BATCH_SIZE", 1..=DELETE_BATCH, DELETE_BATCH)?,
            stop_margin: parse_var(env, "STOP_MARGIN_MS")?
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_secs(10)),
        };
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
