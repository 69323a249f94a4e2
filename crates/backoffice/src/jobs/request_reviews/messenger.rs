//! How a review request is sent: the trait the job depends on, and Twilio behind it.

use std::collections::BTreeMap;
use std::future::Future;

use super::store::DueOrder;
use crate::messages::kind::Kind;
use crate::twilio::{RetryPolicy, SendError, SentMessage, TwilioClient};

/// Sends one review request. Twilio in production; a fake in unit tests.
pub trait ReviewMessenger: Send + Sync {
    fn send_review_request(&self, order: &DueOrder) -> impl Future<Output = Result<SentMessage, SendError>> + Send;
}

/// Template variables of the review request: `{{1}}` the customer's first name (or
/// "client"), `{{2}}` the order id.
pub fn review_variables(order: &DueOrder) -> BTreeMap<String, String> {
    let name = order
        .customer_name
        .as_deref()
        .and_then(|n| n.split_whitespace().next())
        .unwrap_or("client");
    BTreeMap::from([
        ("1".to_string(), name.to_string()),
        ("2".to_string(), order.order_id.clone()),
    ])
}

impl ReviewMessenger for TwilioClient {
    async fn send_review_request(&self, order: &DueOrder) -> Result<SentMessage, SendError> {
        let variables = review_variables(order);
        let content = self.review_content(variables.clone(), || {
            Kind::ReviewRequest.fallback_body(self.config().locale, &variables["1"], &variables["2"])
        });
        self.send_with_retry(&order.customer_phone, &content, &RetryPolicy::default())
            .await
    }
}
