//! Reads Twilio's Messages list (`GET /2010-04-01/Accounts/{AccountSid}/Messages.json`),
//! filtered by recipient and send date and followed page by page: what reconciliation asks
//! when the outcome of a send is unknown.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{TwilioClient, classify_transport_error};
use crate::domain::phone::PhoneNumber;

/// Most pages read for one recipient; a customer with more messages than this in the
/// window is left for a person.
pub const MAX_LIST_PAGES: u32 = 10;
/// Messages per page; Twilio allows up to 1,000.
const PAGE_SIZE: u32 = 100;

/// A message as the list shows it: only the fields reconciliation matches on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListedMessage {
    pub sid: String,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    /// Empty when the account redacts message bodies.
    #[serde(default)]
    pub body: Option<String>,
    /// `outbound-api` for a message this code created.
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// RFC 2822, e.g. `Thu, 03 Dec 2026 09:19:14 +0000`.
    #[serde(default)]
    pub date_created: Option<String>,
    #[serde(default)]
    pub date_sent: Option<String>,
}

impl ListedMessage {
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        parse_twilio_date(self.date_created.as_deref()?)
    }

    pub fn sent_at(&self) -> Option<DateTime<Utc>> {
        parse_twilio_date(self.date_sent.as_deref()?)
    }
}

fn parse_twilio_date(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(text)
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// Every message of the list, and what it cost to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageList {
    pub messages: Vec<ListedMessage>,
    /// HTTP requests made (one per page).
    pub requests: u32,
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    messages: Vec<ListedMessage>,
    #[serde(default)]
    next_page_uri: Option<String>,
}

/// Why the list could not be read completely. Reconciliation then decides nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("Twilio's Messages list is unreachable: {0}")]
    Unreachable(String),
    #[error("Twilio answered the Messages list with HTTP {status}")]
    Refused { status: u16 },
    #[error("Twilio's Messages list reply is unreadable: {0}")]
    Unreadable(String),
    #[error("more than {MAX_LIST_PAGES} pages of messages to one recipient")]
    TooManyPages,
    #[error("Twilio's next page is not a Messages list of this account: {0}")]
    ForeignNextPage(String),
}

impl TwilioClient {
    /// Every WhatsApp message to `to` that Twilio sent on or after `sent_since`'s day (UTC),
    /// all pages. Only `next_page_uri`s of this account's Messages list are followed, so a
    /// reply can never send the credentials elsewhere.
    pub async fn messages_to(&self, to: &PhoneNumber, sent_since: DateTime<Utc>) -> Result<MessageList, LookupError> {
        let config = &self.inner.config;
        let list_path = format!("/2010-04-01/Accounts/{}/Messages.json", config.account_sid);
        let mut list = MessageList::default();
        let first = self.inner.http.get(self.messages_list_url(to, sent_since));
        let mut request = Some(first);
        while let Some(next) = request.take() {
            if list.requests >= MAX_LIST_PAGES {
                return Err(LookupError::TooManyPages);
            }
            list.requests += 1;
            let response = next
                .basic_auth(&config.account_sid, Some(config.auth_token.expose()))
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|error| LookupError::Unreachable(classify_transport_error(error).to_string()))?;
            let status = response.status();
            if !status.is_success() {
                return Err(LookupError::Refused {
                    status: status.as_u16(),
                });
            }
            let body = response
                .text()
                .await
                .map_err(|error| LookupError::Unreachable(classify_transport_error(error).to_string()))?;
            let page: Page = serde_json::from_str(&body).map_err(|error| LookupError::Unreadable(error.to_string()))?;
            list.messages.extend(page.messages);
            if let Some(uri) = page.next_page_uri.filter(|uri| !uri.is_empty()) {
                if !uri.starts_with(&format!("{list_path}?")) {
                    return Err(LookupError::ForeignNextPage(uri));
                }
                request = Some(self.inner.http.get(format!("{}{uri}", config.api_base_url)));
            }
        }
        tracing::debug!(
            to = %to.masked(),
            messages = list.messages.len(),
            requests = list.requests,
            "read Twilio's Messages list"
        );
        Ok(list)
    }

    /// The first page's URL: messages to `to`'s WhatsApp address sent on or after
    /// `sent_since`'s day (`DateSent>`, which Twilio reads as "on or after").
    pub fn messages_list_url(&self, to: &PhoneNumber, sent_since: DateTime<Utc>) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("To", &format!("whatsapp:{}", to.as_str()))
            .append_pair("DateSent>", &sent_since.format("%Y-%m-%d").to_string())
            .append_pair("PageSize", &PAGE_SIZE.to_string())
            .finish();
        format!("{}?{query}", self.inner.messages_url)
    }

    /// Whether this client created `message`: sent through the API, from this account's
    /// WhatsApp number or Messaging Service.
    pub fn sent_by_us(&self, message: &ListedMessage) -> bool {
        let outbound = message.direction.as_deref() == Some("outbound-api");
        outbound
            && match &self.inner.config.sender {
                super::Sender::WhatsAppNumber(from) => {
                    message.from.as_deref() == Some(format!("whatsapp:{}", from.as_str()).as_str())
                }
                super::Sender::MessagingService(sid) => message.messaging_service_sid.as_deref() == Some(sid),
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_twilio_dates() {
        let message = ListedMessage {
            sid: "SM1".into(),
            to: None,
            from: None,
            body: None,
            direction: None,
            status: None,
            messaging_service_sid: None,
            date_created: Some("Thu, 03 Dec 2026 09:19:14 +0000".into()),
            date_sent: Some("garbage".into()),
        };
        assert_eq!(
            message.created_at(),
            Some("2026-12-03T09:19:14Z".parse::<DateTime<Utc>>().unwrap())
        );
        assert_eq!(message.sent_at(), None);
    }
}
