//! Customers' WhatsApp replies played through record-review-reply's handler, as Twilio
//! POSTs them (signed), for the demo.

use std::collections::HashMap;
use std::sync::Arc;

use backoffice::domain::phone::PhoneNumber;
use backoffice::jobs::record_review_reply::alerts::AlertError;
use backoffice::jobs::record_review_reply::dynamo::DynamoReplies;
use backoffice::jobs::record_review_reply::{
    self, NegativeReview, NegativeReviewAlerts, ReplyConfig, ReplyDeps, SignatureValidator, signed_twilio_post,
};
use backoffice::report::counters::DailyCounters;
use backoffice::runtime::clock::{Clock, SystemClock};
use backoffice::twilio::{AuthToken, TwilioConfig};

use crate::stack::Stack;
use crate::twilio_standin::LOCAL_WHATSAPP_FROM;

type Failure = Box<dyn std::error::Error>;

/// The Function URL the demo's requests are signed for.
const DEMO_WEBHOOK_URL: &str = "https://demo.lambda-url.eu-west-3.on.aws/";

/// Prints each negative-review alert instead of publishing it.
pub struct PrintedAlerts;

impl NegativeReviewAlerts for PrintedAlerts {
    async fn alert(&self, review: &NegativeReview) -> Result<(), AlertError> {
        println!(
            "  ALERT to the shop: order {} rated {}/5 by {}: {:?}",
            review.order_id, review.rating, review.masked_phone, review.comment
        );
        Ok(())
    }
}

/// The form Twilio POSTs for a customer's WhatsApp message to the stand-in's sender.
pub fn reply_params(from: &str, message_sid: &str, body: &str) -> Vec<(String, String)> {
    [
        ("From", format!("whatsapp:{from}")),
        ("To", format!("whatsapp:{LOCAL_WHATSAPP_FROM}")),
        ("MessageSid", message_sid.to_owned()),
        ("Body", body.to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

/// Plays each `(from, body)` reply through the webhook's handler, then a forged one,
/// printing the answers: it records the ratings and alerts on the bad ones.
pub async fn play_replies(
    stack: &Stack,
    env: &HashMap<String, String>,
    replies: &[(&str, &str)],
) -> Result<(), Failure> {
    let deps = play_replies_at(stack, env, replies, Arc::new(SystemClock)).await?;
    let forged = signed_twilio_post(
        &SignatureValidator::new(AuthToken::new("not-the-account-token")),
        DEMO_WEBHOOK_URL,
        &[("From".to_owned(), "whatsapp:+33620000002".to_owned())],
    )
    .ok_or("the demo's webhook URL")?;
    let refused = record_review_reply::respond(&deps, &forged).await?;
    println!(
        "  a request signed with another token is answered {} {}",
        refused.status_code, refused.body
    );
    Ok(())
}

/// The replies alone, with the webhook's clock at `clock`; gives back the handler's deps.
pub async fn play_replies_at(
    stack: &Stack,
    env: &HashMap<String, String>,
    replies: &[(&str, &str)],
    clock: Arc<dyn Clock>,
) -> Result<ReplyDeps<DynamoReplies, PrintedAlerts>, Failure> {
    let mut env = env.clone();
    env.insert("REPLY_WEBHOOK_URL".into(), DEMO_WEBHOOK_URL.into());
    let validator = SignatureValidator::new(TwilioConfig::from_env(&env)?.auth_token);
    let mut store = DynamoReplies::new(
        stack.client.clone(),
        &stack.tables.orders,
        &stack.tables.reviews,
        &stack.tables.consent,
    )
    .with_deliveries(&stack.tables.messages);
    if let Some(counters) = DailyCounters::from_env(stack.client.clone(), &env)? {
        store = store.with_counters(counters);
    }
    let deps = ReplyDeps {
        store,
        alerts: PrintedAlerts,
        validator: validator.clone(),
        clock,
        config: ReplyConfig::from_env(&env)?,
        forwarder: None,
    };
    for (i, (from, body)) in replies.iter().enumerate() {
        let params = reply_params(from, &format!("SM{:032x}", i + 1), body);
        let request = signed_twilio_post(&validator, DEMO_WEBHOOK_URL, &params).ok_or("the demo's webhook URL")?;
        let masked = PhoneNumber::parse(from)?.masked().to_string();
        println!("  from {masked}: {body:?}");
        let response = record_review_reply::respond(&deps, &request).await?;
        println!("  answered {} {}", response.status_code, response.body);
    }
    Ok(deps)
}
