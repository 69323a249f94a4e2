//! How a review request is sent: the trait the job depends on, and Twilio behind it.

use std::collections::BTreeMap;
use std::future::Future;

use super::store::DueOrder;
use crate::messages::kind::Kind;
use crate::runtime::job::Deadline;
use chrono::{DateTime, Utc};

use crate::domain::phone::PhoneNumber;
use crate::messages::engine::MessageId;
use crate::messages::outbox::message_key;
use crate::messages::sender::sent_by;
use crate::twilio::{LookupError, MessageList, RetryPolicy, SendError, SentMessage, TwilioClient};

/// Sends one review request. Twilio in production; a fake in unit tests.
pub trait ReviewMessenger: Send + Sync {
    /// Sends one review request, retrying a passing failure only while the retry can end
    /// before `deadline`.
    fn send_review_request(
        &self,
        order: &DueOrder,
        deadline: Deadline,
    ) -> impl Future<Output = Result<SentMessage, SendError>> + Send;

    /// The messages sent to `to` since `since`'s day, for reconciliation.
    fn sent_to(
        &self,
        to: &PhoneNumber,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<MessageList, LookupError>> + Send;

    /// How long after its claim an unlisted message is surely never sent.
    fn absent_after(&self) -> chrono::TimeDelta;
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
    async fn send_review_request(&self, order: &DueOrder, deadline: Deadline) -> Result<SentMessage, SendError> {
        let variables = review_variables(order);
        let content = self.review_content(variables.clone(), || {
            Kind::ReviewRequest.fallback_body(self.config().locale, &variables["1"], &variables["2"])
        });
        let id = MessageId {
            kind: Kind::ReviewRequest,
            subject_id: order.order_id.clone(),
        };
        self.send_tracked(
            &order.customer_phone,
            &content,
            Some(&message_key(&id)),
            &RetryPolicy::until(deadline),
        )
        .await
    }

    async fn sent_to(&self, to: &PhoneNumber, since: DateTime<Utc>) -> Result<MessageList, LookupError> {
        sent_by(self, to, since).await
    }

    fn absent_after(&self) -> chrono::TimeDelta {
        crate::messages::reconcile::absent_after(self.config().validity_period)
    }
}
