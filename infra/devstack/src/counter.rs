//! Counting the requests a DynamoDB client sends, for the benchmark's figures and the
//! tests that check how many requests a job makes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};

/// Counts the HTTP requests a DynamoDB client sends, by operation (`X-Amz-Target`),
/// retries included: what DynamoDB bills and what the job waits for.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl RequestCounter {
    pub fn by_operation(&self) -> BTreeMap<String, u64> {
        self.0.lock().expect("counter lock").clone()
    }

    pub fn total(&self) -> u64 {
        self.0.lock().expect("counter lock").values().sum()
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

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "devstack::RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let operation = operation_of(context).unwrap_or("unknown").to_owned();
        *self.0.lock().expect("counter lock").entry(operation).or_default() += 1;
        Ok(())
    }
}

/// The DynamoDB operation of a request about to go out (`UpdateItem`), from its
/// `X-Amz-Target` header.
pub(crate) fn operation_of<'a>(context: &'a BeforeTransmitInterceptorContextRef<'_>) -> Option<&'a str> {
    context
        .request()
        .headers()
        .get("x-amz-target")
        .and_then(|target| target.rsplit('.').next())
}

impl RequestCounter {
    /// `client` with this counter added and nothing else changed.
    pub fn count(&self, client: &Client) -> Client {
        Client::from_conf(client.config().to_builder().interceptor(self.clone()).build())
    }
}
