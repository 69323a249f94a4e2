//! The jobs and the webhook against a real DynamoDB API: the embedded dynoxide server by
//! default, the moto server with `AWS_ENDPOINT_URL_DYNAMODB` (and `DYNAMODB_EMULATOR=moto`),
//! or real AWS with `DYNAMODB_TARGET=aws`. Each test creates its own tables and deletes them.
//! `scripts/test.sh` runs this binary once on dynoxide and once on moto.

mod erasure;
mod messages;
mod replies;
mod reviews;
mod streams;
mod sweeper;

/// An RFC 3339 time written in a test.
pub fn utc(text: &str) -> chrono::DateTime<chrono::Utc> {
    text.parse().expect("an RFC 3339 time")
}

/// Counts the requests a DynamoDB client sends, by operation (`X-Amz-Target`), retries
/// included.
#[derive(Debug, Clone, Default)]
pub struct OperationCounter(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>);

impl OperationCounter {
    /// `client` with this counter added.
    pub fn count(&self, client: &aws_sdk_dynamodb::Client) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(client.config().to_builder().interceptor(self.clone()).build())
    }

    pub fn get(&self, operation: &str) -> u64 {
        self.0
            .lock()
            .expect("counter lock")
            .get(operation)
            .copied()
            .unwrap_or(0)
    }
}

impl aws_sdk_dynamodb::config::Intercept for OperationCounter {
    fn name(&self) -> &'static str {
        "tests::OperationCounter"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let operation = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|target| target.rsplit('.').next())
            .unwrap_or("unknown")
            .to_owned();
        *self.0.lock().expect("counter lock").entry(operation).or_default() += 1;
        Ok(())
    }
}
