//! Every kind's message through Twilio: its template with `{{1}}` the customer's first
//! name and `{{2}}` the order's or cart's id, or its plain text when no template is set.

use std::collections::BTreeMap;

use super::engine::{DueMessage, Messenger};
use super::kind::KindsConfig;
use crate::twilio::MessageContent;
use crate::twilio::{RetryPolicy, SendError, SentMessage, TwilioClient};

pub struct KindMessenger {
    pub twilio: TwilioClient,
    pub kinds: KindsConfig,
}

/// What `message` says, given its kind's settings.
pub fn content_of(message: &DueMessage, kinds: &KindsConfig) -> MessageContent {
    let first_name = message
        .customer_name
        .as_deref()
        .and_then(|name| name.split_whitespace().next())
        .unwrap_or("client");
    let kind = message.id.kind;
    match kinds.get(kind).and_then(|settings| settings.content_sid.clone()) {
        Some(content_sid) => MessageContent::Template {
            content_sid,
            variables: BTreeMap::from([
                ("1".to_owned(), first_name.to_owned()),
                ("2".to_owned(), message.id.subject_id.clone()),
            ]),
        },
        None => MessageContent::Body(kind.fallback_body(first_name, &message.id.subject_id)),
    }
}

impl Messenger for KindMessenger {
    async fn send(&self, message: &DueMessage) -> Result<SentMessage, SendError> {
        let content = content_of(message, &self.kinds);
        self.twilio
            .send_with_retry(&message.customer_phone, &content, &RetryPolicy::default())
            .await
    }
}
