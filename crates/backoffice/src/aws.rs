//! AWS SDK clients, built once at cold start with explicit timeouts and retries.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

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
    blank_means_unset(config_loader(settings).load().await)
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

/// SNS for the owner's e-mails, one attempt per call: a publish is not idempotent, and
/// the SDK's retry of one whose answer was lost (a timeout, a 5xx) would e-mail the owner
/// twice. [`publish`] retries only what SNS refused.
pub fn sns_client(sdk_config: &SdkConfig) -> aws_sdk_sns::Client {
    let config = aws_sdk_sns::config::Builder::from(sdk_config)
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .build();
    aws_sdk_sns::Client::from_conf(config)
}

/// Whether a failed [`publish`] may still have published: no answer (a timeout, a broken
/// connection), or one from the server's side (a 5xx, a gateway's page) after SNS may have
/// taken the message. A refusal (4xx) published nothing.
pub fn may_have_published(error: &aws_sdk_sns::error::SdkError<aws_sdk_sns::operation::publish::PublishError>) -> bool {
    use aws_sdk_sns::error::SdkError;
    match error {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(service) => service.raw().status().as_u16() >= 500,
        _ => false,
    }
}

/// Attempts of [`publish`] when SNS throttles.
const PUBLISH_ATTEMPTS: u32 = 3;

/// The codes of a publish refused before anything was published: SNS's own throttling,
/// and the topic's KMS key throttled.
const PUBLISH_THROTTLED: [&str; 5] = [
    "Throttling",
    "Throttled",
    "ThrottlingException",
    "KMSThrottling",
    "KMSThrottlingException",
];

/// Publishes once. Throttling, which SNS answers before publishing anything, is retried
/// with a short backoff; any other failure comes back at once, so the caller decides.
pub async fn publish(
    client: &aws_sdk_sns::Client,
    topic_arn: &str,
    subject: &str,
    message: &str,
) -> Result<(), aws_sdk_sns::error::SdkError<aws_sdk_sns::operation::publish::PublishError>> {
    use aws_sdk_sns::error::ProvideErrorMetadata;
    let mut attempt = 1;
    loop {
        let result = client
            .publish()
            .topic_arn(topic_arn)
            .subject(subject)
            .message(message)
            .send()
            .await;
        match result {
            Err(error)
                if attempt < PUBLISH_ATTEMPTS
                    && error
                        .as_service_error()
                        .and_then(|e| e.code())
                        .is_some_and(|code| PUBLISH_THROTTLED.contains(&code)) =>
            {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                attempt += 1;
            }
            other => return other.map(|_| ()),
        }
    }
}

/// Every client built from the returned config reads a service setting that is set but
/// blank (`AWS_ENDPOINT_URL_DYNAMODB=""`) as unset, as [`ProcessEnv`] does. The template
/// declares the local endpoint variables empty, because `sam local invoke --env-vars` can
/// only set variables the template declares (docs/sam-local.md); the SDK alone would take
/// the empty string as the endpoint and fail every call.
///
/// [`ProcessEnv`]: crate::runtime::config::ProcessEnv
fn blank_means_unset(sdk_config: SdkConfig) -> SdkConfig {
    if sdk_config.service_config().is_none() {
        return sdk_config;
    }
    sdk_config.to_builder().service_config(NonBlank(sdk_config)).build()
}

/// The service settings of the wrapped config, blank values left out.
#[derive(Debug)]
struct NonBlank(SdkConfig);

impl LoadServiceConfig for NonBlank {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        self.0
            .service_config()?
            .load_config(key)
            .filter(|value| !value.trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::config::{Credentials, Region, SharedCredentialsProvider};
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    /// The service-specific endpoint variables as the SDK sees them, one value for all.
    #[derive(Debug)]
    struct EndpointVariables(&'static str);

    impl LoadServiceConfig for EndpointVariables {
        fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
            (key.env() == "AWS_ENDPOINT_URL").then(|| self.0.to_owned())
        }
    }

    /// As [`load_sdk_config`] makes it, from these settings.
    fn sdk_config(global_endpoint: &str, service_endpoint: &'static str) -> SdkConfig {
        let loaded = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-3"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "local", "local", None, None, "test",
            )))
            .http_client(crate::https::sdk_http_client())
            .endpoint_url(global_endpoint)
            .service_config(EndpointVariables(service_endpoint))
            .retry_config(RetryConfig::disabled())
            .build();
        blank_means_unset(loaded)
    }

    async fn table_listing_server() -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "application/x-amz-json-1.0")
                    .set_body_string(r#"{"TableNames":[]}"#),
            )
            .mount(&server)
            .await;
        server
    }

    #[tokio::test]
    async fn a_publish_is_attempted_once_whatever_the_sdk_settings() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        let retrying = sdk_config(&server.uri(), "")
            .to_builder()
            .retry_config(SdkSettings::default().retry_config())
            .build();
        let client = sns_client(&retrying);

        let published = publish(&client, "arn:aws:sns:eu-west-3:123456789012:report", "Report", "report").await;

        assert!(
            published.as_ref().is_err_and(may_have_published),
            "a 5xx may have published: not tried again, and said so"
        );
        assert_eq!(server.received_requests().await.map(|r| r.len()), Some(1));
    }

    #[tokio::test]
    async fn a_throttled_publish_is_tried_again_and_goes_out_once() {
        // SNS's own throttling, and the topic's KMS key throttled: nothing was published.
        for code in ["Throttling", "KMSThrottling"] {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(
                    ResponseTemplate::new(400)
                        .insert_header("content-type", "text/xml")
                        .set_body_string(format!(
                            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>\
                             <Message>Rate exceeded</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
                        )),
                )
                .up_to_n_times(1)
                .with_priority(1)
                .mount(&server)
                .await;
            Mock::given(method("POST"))
                .respond_with(
                    ResponseTemplate::new(200)
                        .insert_header("content-type", "text/xml")
                        .set_body_string(
                            "<PublishResponse><PublishResult><MessageId>m-1</MessageId></PublishResult>\
                             <ResponseMetadata><RequestId>r-2</RequestId></ResponseMetadata></PublishResponse>",
                        ),
                )
                .mount(&server)
                .await;
            let client = sns_client(&sdk_config(&server.uri(), ""));

            let published = publish(&client, "arn:aws:sns:eu-west-3:123456789012:report", "Report", "report").await;

            assert!(published.is_ok(), "{code}: {published:?}");
            assert_eq!(server.received_requests().await.map(|r| r.len()), Some(2), "{code}");
        }
    }

    #[tokio::test]
    async fn an_endpoint_variable_declared_empty_is_read_as_unset() {
        let server = table_listing_server().await;
        let client = dynamodb_client(&sdk_config(&server.uri(), " "));
        client
            .list_tables()
            .send()
            .await
            .expect("the call goes to the global endpoint");
        assert_eq!(server.received_requests().await.map(|r| r.len()), Some(1));
    }

    #[tokio::test]
    async fn a_set_endpoint_variable_is_used() {
        let server = table_listing_server().await;
        let service_endpoint: &'static str = Box::leak(server.uri().into_boxed_str());
        let client = dynamodb_client(&sdk_config("http://127.0.0.1:1", service_endpoint));
        client
            .list_tables()
            .send()
            .await
            .expect("the call goes to the service endpoint");
        assert_eq!(server.received_requests().await.map(|r| r.len()), Some(1));
    }
}
