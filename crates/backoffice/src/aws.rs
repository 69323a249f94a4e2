//! AWS SDK clients, built once at cold start with explicit timeouts and retries.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};

use crate::runtime::config::{ConfigError, EnvSource, parse_var};

/// Timeouts and retries for every AWS call. The defaults suit a Lambda function that
/// talks to DynamoDB in the same region: a single attempt is normally a few ms.
#[derive(Debug, Clone, PartialEq)]
pub struct SdkSettings {
    pub connect_timeout: Duration,
    /// One HTTP attempt; a hung connection is cut here and retried.
    pub attempt_timeout: Duration,
    /// All attempts of one operation together, backoff included.
    pub operation_timeout: Duration,
    /// Attempts per operation (first try included), with the SDK's exponential backoff
    /// and jitter; throttling errors are retried with it too.
    pub max_attempts: u32,
}

impl Default for SdkSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(3),
            operation_timeout: Duration::from_secs(15),
            max_attempts: 5,
        }
    }
}

impl SdkSettings {
    /// `AWS_CALL_ATTEMPT_TIMEOUT_MS`, `AWS_CALL_TIMEOUT_MS`, `AWS_CALL_MAX_ATTEMPTS`.
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        Ok(Self {
            connect_timeout: defaults.connect_timeout,
            attempt_timeout: parse_var(env, "AWS_CALL_ATTEMPT_TIMEOUT_MS")?
                .map(Duration::from_millis)
                .unwrap_or(defaults.attempt_timeout),
            operation_timeout: parse_var(env, "AWS_CALL_TIMEOUT_MS")?
                .map(Duration::from_millis)
                .unwrap_or(defaults.operation_timeout),
            max_attempts: parse_var(env, "AWS_CALL_MAX_ATTEMPTS")?.unwrap_or(defaults.max_attempts),
        })
    }

    pub fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect_timeout)
            .operation_attempt_timeout(self.attempt_timeout)
            .operation_timeout(self.operation_timeout)
            .build()
    }

    pub fn retry_config(&self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(Duration::from_millis(50))
            .with_max_backoff(Duration::from_secs(5))
    }
}

/// Loads region, credentials and endpoint overrides (`AWS_ENDPOINT_URL_DYNAMODB`) from the
/// environment, as every AWS tool does, with our timeouts and retries on top.
pub async fn load_sdk_config(settings: &SdkSettings) -> SdkConfig {
    config_loader(settings).load().await
}

/// The loader behind [`load_sdk_config`], for callers that add their own endpoint or
/// credentials (the local stack, the benchmark): same TLS stack, timeouts and retries.
pub fn config_loader(settings: &SdkSettings) -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(crate::https::sdk_http_client())
        .timeout_config(settings.timeout_config())
        .retry_config(settings.retry_config())
}

pub fn dynamodb_client(sdk_config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(sdk_config)
}
