//! A DynamoDB fault only a real backend can play: a write that was done, whose answer
//! was lost. The SDK sees a 5xx, sends the same request again, and the retry meets the
//! first attempt's write, as after a timeout or a dropped connection on AWS.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};

/// Turns the answers to the next `count` requests of one operation into HTTP 500 after
/// the backend has done them. For a client that sends one request at a time.
#[derive(Debug, Clone)]
pub struct LostAnswers {
    operation: &'static str,
    left: Arc<AtomicU32>,
    losing: Arc<AtomicBool>,
}

impl LostAnswers {
    /// Loses the answers to the next `count` requests of `operation` (`UpdateItem`).
    pub fn of(operation: &'static str, count: u32) -> Self {
        Self {
            operation,
            left: Arc::new(AtomicU32::new(count)),
            losing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// `client` with these faults added and nothing else changed.
    pub fn on(&self, client: &Client) -> Client {
        Client::from_conf(client.config().to_builder().interceptor(self.clone()).build())
    }

    /// Answers still to lose.
    pub fn left(&self) -> u32 {
        self.left.load(Ordering::SeqCst)
    }
}

impl Intercept for LostAnswers {
    fn name(&self) -> &'static str {
        "devstack::LostAnswers"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let is_target = crate::counter::operation_of(context) == Some(self.operation);
        let lose = is_target
            && self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1))
                .is_ok();
        self.losing.store(lose, Ordering::SeqCst);
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if self.losing.swap(false, Ordering::SeqCst) {
            *context.response_mut().status_mut() = 500.try_into()?;
        }
        Ok(())
    }
}
