//! Alerts for negative reviews (rating <= [`NEGATIVE_RATING_MAX`]): an SNS topic (e-mail
//! subscription) and, when configured, a WhatsApp template message to the shop's admin.

use std::collections::BTreeMap;
use std::future::Future;

use aws_sdk_sns::error::DisplayErrorContext;

use crate::domain::phone::PhoneNumber;
use crate::twilio::{MessageContent, TwilioClient, sanitize_template_variable};

/// A rating at or below this alerts the shop.
pub const NEGATIVE_RATING_MAX: u8 = 2;

/// What the shop is told. The customer's number is masked, as in every log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegativeReview {
    pub order_id: String,
    pub rating: u8,
    pub comment: String,
    pub masked_phone: String,
    /// The review replaced an earlier one.
    pub corrected: bool,
}

impl NegativeReview {
    /// SNS subjects must be ASCII, without line breaks, under 100 characters.
    pub fn subject(&self) -> String {
        let order: String = self
            .order_id
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '?' })
            .take(40)
            .collect();
        format!("Negative review ({}/5) for order {order}", self.rating)
    }

    pub fn message(&self) -> String {
        let comment = if self.comment.is_empty() {
            "(no comment)"
        } else {
            &self.comment
        };
        format!(
            "A customer rated order {} {}/5{}.\n\nComment: {comment}\nCustomer: {}\n",
            self.order_id,
            self.rating,
            if self.corrected {
                " (correction of an earlier review)"
            } else {
                ""
            },
            self.masked_phone,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alert not delivered through {}", failures.join("; "))]
pub struct AlertError {
    /// One entry per channel that failed: `sns: ...`, `whatsapp: ...`.
    pub failures: Vec<String>,
    /// Another channel delivered it, or a failed one may have (a timeout): the alert is
    /// not sent again, so the shop never gets it twice on a channel.
    pub may_have_reached_the_shop: bool,
}

/// Tells the shop about a negative review. SNS and WhatsApp in production; a recorder in
/// unit tests.
pub trait NegativeReviewAlerts: Send + Sync {
    fn alert(&self, review: &NegativeReview) -> impl Future<Output = Result<(), AlertError>> + Send;
}

/// The admin's WhatsApp number and the approved template (`{{1}}` order id, `{{2}}`
/// rating as `N/5`, `{{3}}` comment or `-`): a business-initiated message, so it needs a
/// template.
#[derive(Debug, Clone)]
pub struct WhatsAppAdminAlert {
    pub twilio: TwilioClient,
    pub to: PhoneNumber,
    pub template_sid: String,
}

/// The production alerts: each configured channel, in turn. With none configured (local
/// runs), the alert is only logged.
#[derive(Debug, Clone, Default)]
pub struct ShopAlerts {
    /// The SNS client and the topic ARN.
    pub sns: Option<(aws_sdk_sns::Client, String)>,
    pub whatsapp: Option<WhatsAppAdminAlert>,
}

impl NegativeReviewAlerts for ShopAlerts {
    async fn alert(&self, review: &NegativeReview) -> Result<(), AlertError> {
        let mut failures = Vec::new();
        let mut reached = false;
        if self.sns.is_none() && self.whatsapp.is_none() {
            tracing::warn!(
                order_id = %review.order_id,
                rating = review.rating,
                "negative review: no alert channel configured (ALERT_TOPIC_ARN, ADMIN_WHATSAPP_TO), logged only"
            );
            return Ok(());
        }
        if let Some((client, topic_arn)) = &self.sns {
            match crate::aws::publish(client, topic_arn, &review.subject(), &review.message()).await {
                Ok(_) => reached = true,
                Err(error) => {
                    reached |= crate::aws::may_have_published(&error);
                    failures.push(format!("sns: {}", DisplayErrorContext(&error)));
                }
            }
        }
        if let Some(admin) = &self.whatsapp {
            let variables = BTreeMap::from([
                ("1".to_owned(), sanitize_template_variable(&review.order_id, "-")),
                ("2".to_owned(), format!("{}/5", review.rating)),
                ("3".to_owned(), sanitize_template_variable(&review.comment, "-")),
            ]);
            let content = MessageContent::Template {
                content_sid: admin.template_sid.clone(),
                variables,
            };
            // One attempt: Twilio waits at most 15 s for the webhook's answer.
            match admin.twilio.send_whatsapp(&admin.to, &content).await {
                Ok(_) => reached = true,
                Err(error) => {
                    reached |= error.may_have_been_delivered();
                    failures.push(format!("whatsapp: {error}"));
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(AlertError {
                failures,
                may_have_reached_the_shop: reached,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review() -> NegativeReview {
        NegativeReview {
            order_id: "ord-1042".into(),
            rating: 1,
            comment: "Froid & en retard".into(),
            masked_phone: "+33*******78".into(),
            corrected: false,
        }
    }

    #[test]
    fn the_alert_names_the_order_rating_and_comment_with_the_phone_masked() {
        let review = review();
        assert_eq!(review.subject(), "Negative review (1/5) for order ord-1042");
        let message = review.message();
        for expected in ["ord-1042", "1/5", "Froid & en retard", "+33*******78"] {
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn the_subject_stays_ascii_and_short() {
        let mut review = review();
        review.order_id = format!("commande-é\n{}", "x".repeat(200));
        let subject = review.subject();
        assert!(
            subject.is_ascii() && !subject.contains('\n') && subject.len() < 100,
            "{subject}"
        );
    }
}
