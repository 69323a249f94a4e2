//! Every kind's message through Twilio: its template with `{{1}}` the customer's first
//! name and `{{2}}` the order's or cart's id, or its plain text when no template is set.

use std::collections::BTreeMap;

use super::engine::{DueMessage, Messenger};
use super::kind::KindsConfig;
use super::outbox::message_key;
use crate::domain::locale::Locale;
use crate::domain::phone::PhoneNumber;
use crate::runtime::job::Deadline;
use crate::twilio::MessageContent;
use crate::twilio::{LookupError, MessageList, RetryPolicy, SendError, SentMessage, TwilioClient};

pub struct KindMessenger {
    pub twilio: TwilioClient,
    pub kinds: KindsConfig,
}

/// What `message` says, given its kind's settings, in `locale` when it is plain text.
pub fn content_of(message: &DueMessage, kinds: &KindsConfig, locale: Locale) -> MessageContent {
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
        None => MessageContent::Body(kind.fallback_body(locale, first_name, &message.id.subject_id)),
    }
}

impl Messenger for KindMessenger {
    async fn send(&self, message: &DueMessage, deadline: Deadline) -> Result<SentMessage, SendError> {
        let content = content_of(message, &self.kinds, self.twilio.config().locale);
        self.twilio
            .send_tracked(
                &message.customer_phone,
                &content,
                Some(&message_key(&message.id)),
                &RetryPolicy::until(deadline),
            )
            .await
    }

    async fn sent_to(
        &self,
        to: &PhoneNumber,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<MessageList, LookupError> {
        sent_by(&self.twilio, to, since).await
    }

    fn absent_after(&self) -> chrono::TimeDelta {
        super::reconcile::absent_after(self.twilio.config().validity_period)
    }
}

/// The messages `twilio`'s account and sender sent to `to` since `since`'s day.
pub async fn sent_by(
    twilio: &TwilioClient,
    to: &PhoneNumber,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<MessageList, LookupError> {
    let mut list = twilio.messages_to(to, since).await?;
    list.messages.retain(|message| twilio.sent_by_us(message));
    Ok(list)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::phone::PhoneNumber;
    use crate::messages::engine::MessageId;
    use crate::messages::kind::Kind;

    fn message(kind: Kind, name: Option<&str>) -> DueMessage {
        DueMessage {
            id: MessageId {
                kind,
                subject_id: "o-7".into(),
            },
            customer_phone: PhoneNumber::parse("+33612345678").unwrap(),
            customer_name: name.map(str::to_owned),
            due_at: Utc::now(),
            send_before: None,
            since: Utc::now(),
        }
    }

    #[test]
    fn a_kind_with_a_template_sends_it_with_the_first_name_and_the_id() {
        let kinds = KindsConfig::defaults().with(Kind::PaymentReminder, |s| s.content_sid = Some("HX1".into()));
        assert_eq!(
            content_of(&message(Kind::PaymentReminder, Some("Ana Lima")), &kinds, Locale::En),
            MessageContent::Template {
                content_sid: "HX1".into(),
                variables: BTreeMap::from([("1".into(), "Ana".into()), ("2".into(), "o-7".into())]),
            }
        );
    }

    #[test]
    fn a_kind_without_a_template_sends_its_plain_text() {
        let content = content_of(
            &message(Kind::ReadyForPickup, None),
            &KindsConfig::defaults(),
            Locale::En,
        );
        assert_eq!(
            content,
            MessageContent::Body("Hello client, your order o-7 is ready for pickup.".into())
        );
    }
}
