//! `record-review-reply`: Twilio's webhook for incoming WhatsApp messages. A customer's
//! answer to a review request becomes one review in the Reviews table; a bad one alerts
//! the shop.
//!
//! 1. **Authenticate**: every request must carry a valid `X-Twilio-Signature` for the URL
//!    Twilio was configured with ([`signature`]); otherwise 403 and nothing is read. A
//!    body over the limits of [`request`] is refused before it is decoded.
//! 2. **Match** the sender to the order whose review request they most recently received
//!    within `REPLY_WINDOW_DAYS`: a `Query` on the sparse `review-reply-index`
//!    (`customerPhone`, `reviewRequestedAt`), newest first, never a scan. The newest
//!    order without a review is the one being rated.
//! 3. **Read** the rating and comment ([`rating`]).
//! 4. **Write** the review with a conditional `PutItem`: a second reply never overwrites
//!    the first (unless it starts with `correction`), and Twilio's retry of the same
//!    `MessageSid` is recognised and records nothing more.
//! 5. **Alert** on a rating <= 2 (after the review is written, so an alert failure never
//!    loses it), then **answer** in TwiML ([`twiml`]).

pub mod alerts;
pub mod dynamo;
#[cfg(any(test, feature = "fakes"))]
pub mod memory;
pub mod rating;
pub mod request;
pub mod signature;
pub mod twiml;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;

use crate::domain::phone::PhoneNumber;
use crate::runtime::clock::Clock;
use crate::runtime::config::{ConfigError, EnvSource, parse_var, required_var};
use crate::runtime::metrics::{Metric, MetricDocument, Unit};
use crate::store::StoreError;
pub use alerts::{NEGATIVE_RATING_MAX, NegativeReview, NegativeReviewAlerts};
pub use rating::{ParsedRating, RatingSource, parse_reply};
use request::param;
pub use request::{
    BodyRefusal, FunctionUrlRequest, FunctionUrlResponse, MAX_BODY_BYTES, MAX_PARAMS, form_params, signed_twilio_post,
};
pub use signature::{SIGNATURE_HEADER, SignatureRejection, SignatureValidator};

pub const FUNCTION_NAME: &str = "record-review-reply";

/// Orders read from the index per reply: a customer rarely has more than one or two
/// requests in the window.
pub const MAX_CANDIDATES: i32 = 10;

/// What the customer reads back. English, like the review request's plain body.
pub mod texts {
    pub const THANKS: &str = "Thank you for your review! We are glad to hear from you.";
    pub const THANKS_NEGATIVE: &str = "Thank you for your feedback. We are sorry your order did not meet your expectations: the shop will get back to you.";
    pub const THANKS_CORRECTION: &str = "Thank you, your review has been updated.";
    pub const PROMPT: &str = "Sorry, we could not read a rating. Please reply with a number from 1 (poor) to 5 (excellent), followed by a comment if you like.";
    pub const ALREADY_REVIEWED: &str = "We already have your review for this order, thank you! To change it, reply \"correction\" followed by your new rating.";
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReplyConfig {
    pub orders_table: String,
    pub reviews_table: String,
    /// The exact URL configured in Twilio's console (scheme, host, port, path, query).
    /// `None`: the Function URL the request was routed through (`requestContext.domainName`
    /// + path + query, set by Lambda), never the caller's `Host` header.
    pub webhook_url: Option<String>,
    /// A reply matches a request sent at most this many days ago.
    pub window_days: u32,
    /// At most one negative-review alert per order in this many hours, corrections
    /// included.
    pub alert_cooldown_hours: u32,
    pub alert_topic_arn: Option<String>,
    pub admin_whatsapp_to: Option<PhoneNumber>,
    pub admin_alert_template_sid: Option<String>,
}

fn invalid(name: &'static str, value: impl Into<String>, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.into(),
        reason: reason.into(),
    }
}

impl ReplyConfig {
    /// `ORDERS_TABLE`, `REVIEWS_TABLE` (required), `REPLY_WEBHOOK_URL` (unset),
    /// `REPLY_WINDOW_DAYS` (14), `ALERT_COOLDOWN_HOURS` (24), `ALERT_TOPIC_ARN` (unset:
    /// alerts are logged only),
    /// `ADMIN_WHATSAPP_TO` and `ADMIN_ALERT_TEMPLATE_SID` (both or neither).
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        let webhook_url = env.var("REPLY_WEBHOOK_URL").map(|url| url.trim().to_owned());
        if let Some(url) = &webhook_url {
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || url.contains('#') || url.contains(char::is_whitespace) {
                return Err(invalid(
                    "REPLY_WEBHOOK_URL",
                    url.clone(),
                    "must be the exact http(s) URL configured in Twilio, without a fragment",
                ));
            }
        }
        let window_days = parse_var(env, "REPLY_WINDOW_DAYS")?.unwrap_or(14);
        if !(1..=90).contains(&window_days) {
            return Err(invalid(
                "REPLY_WINDOW_DAYS",
                window_days.to_string(),
                "must be between 1 and 90",
            ));
        }
        let alert_cooldown_hours = parse_var(env, "ALERT_COOLDOWN_HOURS")?.unwrap_or(24);
        if !(1..=720).contains(&alert_cooldown_hours) {
            return Err(invalid(
                "ALERT_COOLDOWN_HOURS",
                alert_cooldown_hours.to_string(),
                "must be between 1 and 720",
            ));
        }
        let admin_whatsapp_to = env
            .var("ADMIN_WHATSAPP_TO")
            .map(|value| {
                let number = value.trim().strip_prefix("whatsapp:").unwrap_or(value.trim());
                PhoneNumber::parse(number).map_err(|e| invalid("ADMIN_WHATSAPP_TO", value.clone(), &e.to_string()))
            })
            .transpose()?;
        let admin_alert_template_sid = env.var("ADMIN_ALERT_TEMPLATE_SID").map(|sid| sid.trim().to_owned());
        if let Some(sid) = &admin_alert_template_sid {
            let well_formed =
                sid.len() == 34 && sid.starts_with("HX") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
            if !well_formed {
                return Err(invalid(
                    "ADMIN_ALERT_TEMPLATE_SID",
                    sid.clone(),
                    "must be 'HX' followed by 32 hexadecimal digits",
                ));
            }
        }
        match (&admin_whatsapp_to, &admin_alert_template_sid) {
            (Some(_), None) => return Err(ConfigError::Missing("ADMIN_ALERT_TEMPLATE_SID")),
            (None, Some(_)) => return Err(ConfigError::Missing("ADMIN_WHATSAPP_TO")),
            _ => {}
        }
        Ok(Self {
            orders_table: required_var(env, "ORDERS_TABLE")?,
            reviews_table: required_var(env, "REVIEWS_TABLE")?,
            webhook_url,
            window_days,
            alert_cooldown_hours,
            alert_topic_arn: env.var("ALERT_TOPIC_ARN"),
            admin_whatsapp_to,
            admin_alert_template_sid,
        })
    }
}

/// An order whose review request went to this customer (an entry of `review-reply-index`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedOrder {
    pub order_id: String,
    pub requested_at: DateTime<Utc>,
}

/// A review as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReview {
    pub order_id: String,
    pub rating: u8,
    pub comment: String,
    /// RFC 3339, as stored (kept by a correction).
    pub created_at: Option<String>,
    /// The reply that wrote it; absent for reviews recorded another way.
    pub message_sid: Option<String>,
    /// The reply a correction replaced.
    pub previous_message_sid: Option<String>,
    /// Every reply that ever wrote this review: the first and each correction
    /// (`messageSids`), so that a late retry of any of them is recognised.
    pub message_sids: BTreeSet<String>,
    /// When the shop was last alerted about this order (RFC 3339, as stored).
    pub alerted_at: Option<String>,
    /// The reply that alert was for.
    pub alerted_message_sid: Option<String>,
}

impl StoredReview {
    /// Whether this message already wrote (or was replaced in) this review.
    pub fn written_by(&self, message_sid: &str) -> bool {
        self.message_sids.contains(message_sid)
            || self.message_sid.as_deref() == Some(message_sid)
            || self.previous_message_sid.as_deref() == Some(message_sid)
    }

    /// The replies a correction of this review must keep in `messageSids`.
    pub fn all_message_sids(&self) -> BTreeSet<String> {
        let mut sids = self.message_sids.clone();
        sids.extend(self.message_sid.iter().cloned());
        sids.extend(self.previous_message_sid.iter().cloned());
        sids
    }
}

/// A review to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReview {
    pub order_id: String,
    pub rating: u8,
    pub comment: String,
    pub created_at: DateTime<Utc>,
    pub message_sid: String,
    pub customer_phone: PhoneNumber,
    pub source: RatingSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// The same `MessageSid` had already written it (a concurrent retry).
    AlreadyRecorded,
    /// Another reply wrote the review first; look again.
    Conflict,
}

/// What the reply function needs from the Orders and Reviews tables.
pub trait ReplyStore: Send + Sync {
    /// Orders whose review request went to `phone` at or after `since`, newest first, at
    /// most `limit`.
    fn requested_orders(
        &self,
        phone: &PhoneNumber,
        since: DateTime<Utc>,
        limit: i32,
    ) -> impl Future<Output = Result<Vec<RequestedOrder>, StoreError>> + Send;

    fn review(&self, order_id: &str) -> impl Future<Output = Result<Option<StoredReview>, StoreError>> + Send;

    /// Writes a first review: only if the order has none, or has this message's.
    fn put_review(&self, review: &NewReview) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// Replaces `previous` (only if it is still the stored one, alert state included),
    /// keeping its rating, comment and message as `previousRating`, `previousComment`,
    /// `previousMessageSid`, its `createdAt`, every earlier `messageSids` and its alert
    /// state, and setting `correctedAt`.
    fn correct_review(
        &self,
        review: &NewReview,
        previous: &StoredReview,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// Takes the right to alert about this message's review: sets `alertedAt` and
    /// `alertedMessageSid`, only while the review is still this message's, it was not
    /// alerted for it, and no alert for the order is later than `cutoff`. `false` when
    /// another alert (or a correction) came first.
    fn claim_alert(
        &self,
        order_id: &str,
        message_sid: &str,
        at: DateTime<Utc>,
        cutoff: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives the claim back after the alert could not be sent, so that Twilio's retry of
    /// the message can try again.
    fn release_alert(
        &self,
        order_id: &str,
        message_sid: &str,
        claimed_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// An incoming message, once its signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingReply {
    pub from: PhoneNumber,
    pub message_sid: String,
    pub body: String,
    pub button_payload: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyOutcome {
    /// A new review was written.
    Recorded,
    /// An earlier review was replaced by a `correction` reply.
    Corrected,
    /// Twilio delivered the same `MessageSid` again: nothing written.
    Replayed,
    /// Every order in the window already has a review: nothing written.
    AlreadyReviewed,
    /// The reply holds no rating: the customer is asked again, nothing written.
    NotARating,
    /// No review request to this number in the window (any other message to the shop's
    /// number): no answer, nothing written.
    NoPendingRequest,
    RejectedSignature,
    BadRequest,
}

impl ReplyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recorded => "recorded",
            Self::Corrected => "corrected",
            Self::Replayed => "replayed",
            Self::AlreadyReviewed => "already_reviewed",
            Self::NotARating => "not_a_rating",
            Self::NoPendingRequest => "no_pending_request",
            Self::RejectedSignature => "rejected_signature",
            Self::BadRequest => "bad_request",
        }
    }
}

/// Whether the shop was alerted about this reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    NotNeeded,
    Sent,
    /// Sent for an earlier delivery of the same message.
    AlreadySent,
    /// The shop was alerted about this order less than `ALERT_COOLDOWN_HOURS` ago.
    Cooldown,
    Failed,
}

/// What one reply did, and the TwiML to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyResult {
    pub outcome: ReplyOutcome,
    pub order_id: Option<String>,
    pub rating: Option<u8>,
    pub source: Option<RatingSource>,
    pub alert: AlertStatus,
    /// The text sent back to the customer, if any.
    pub answer: Option<&'static str>,
}

impl ReplyResult {
    fn without_review(outcome: ReplyOutcome, answer: Option<&'static str>) -> Self {
        Self {
            outcome,
            order_id: None,
            rating: None,
            source: None,
            alert: AlertStatus::NotNeeded,
            answer,
        }
    }

    pub fn twiml(&self) -> String {
        match self.answer {
            Some(text) => twiml::message(text),
            None => twiml::no_reply(),
        }
    }
}

/// What `main.rs` builds once per cold start.
pub struct ReplyDeps<S, A> {
    pub store: S,
    pub alerts: A,
    pub validator: SignatureValidator,
    pub clock: Arc<dyn Clock>,
    pub config: ReplyConfig,
}

fn thanks_for(rating: u8) -> &'static str {
    if rating <= NEGATIVE_RATING_MAX {
        texts::THANKS_NEGATIVE
    } else {
        texts::THANKS
    }
}

/// Matches, records and alerts for one authenticated reply.
pub async fn record_reply<S: ReplyStore, A: NegativeReviewAlerts>(
    deps: &ReplyDeps<S, A>,
    reply: &IncomingReply,
) -> Result<ReplyResult, StoreError> {
    let parsed = parse_reply(reply.button_payload.as_deref(), &reply.body);
    // A conflict means another reply for the same order landed between our read and
    // our write: look again once, then it is simply already reviewed.
    for _ in 0..2 {
        let now = deps.clock.now();
        let since = now - TimeDelta::days(i64::from(deps.config.window_days));
        let requested = deps.store.requested_orders(&reply.from, since, MAX_CANDIDATES).await?;
        if requested.is_empty() {
            return Ok(ReplyResult::without_review(ReplyOutcome::NoPendingRequest, None));
        }
        let mut candidates = Vec::with_capacity(requested.len());
        for order in requested {
            let review = deps.store.review(&order.order_id).await?;
            if let Some(review) = review.as_ref().filter(|r| r.written_by(&reply.message_sid)) {
                return Ok(replayed(deps, reply, review).await);
            }
            candidates.push((order, review));
        }
        let unreviewed = candidates.iter().find(|(_, review)| review.is_none());
        let Some(rating) = &parsed.rating else {
            // Someone chatting after reviewing gets no prompt; a pending request does.
            let answer = (unreviewed.is_some() || parsed.correction).then_some(texts::PROMPT);
            return Ok(ReplyResult::without_review(ReplyOutcome::NotARating, answer));
        };
        let latest_reviewed = candidates.iter().find_map(|(_, review)| review.as_ref());
        let (order_id, previous) = match (parsed.correction, latest_reviewed, unreviewed) {
            (true, Some(previous), _) => (previous.order_id.clone(), Some(previous)),
            (_, _, Some((order, _))) => (order.order_id.clone(), None),
            (_, _, None) => {
                return Ok(ReplyResult::without_review(
                    ReplyOutcome::AlreadyReviewed,
                    Some(texts::ALREADY_REVIEWED),
                ));
            }
        };
        let review = NewReview {
            order_id,
            rating: rating.rating,
            comment: rating.comment.clone(),
            created_at: now,
            message_sid: reply.message_sid.clone(),
            customer_phone: reply.from.clone(),
            source: rating.source,
        };
        let written = match previous {
            Some(previous) => deps.store.correct_review(&review, previous).await?,
            None => deps.store.put_review(&review).await?,
        };
        let outcome = match (written, previous.is_some()) {
            (WriteOutcome::Conflict, _) => continue,
            (WriteOutcome::AlreadyRecorded, _) => {
                // A concurrent delivery of this message wrote it; that one alerts.
                return Ok(ReplyResult {
                    outcome: ReplyOutcome::Replayed,
                    order_id: Some(review.order_id),
                    rating: Some(review.rating),
                    source: Some(review.source),
                    alert: AlertStatus::AlreadySent,
                    answer: Some(thanks_for(review.rating)),
                });
            }
            (WriteOutcome::Written, true) => ReplyOutcome::Corrected,
            (WriteOutcome::Written, false) => ReplyOutcome::Recorded,
        };
        let alert = if review.rating <= NEGATIVE_RATING_MAX {
            alert_shop(
                deps,
                &review.order_id,
                review.rating,
                &review.comment,
                reply,
                previous.is_some(),
            )
            .await
        } else {
            AlertStatus::NotNeeded
        };
        let answer = if outcome == ReplyOutcome::Corrected && review.rating > NEGATIVE_RATING_MAX {
            texts::THANKS_CORRECTION
        } else {
            thanks_for(review.rating)
        };
        return Ok(ReplyResult {
            outcome,
            order_id: Some(review.order_id),
            rating: Some(review.rating),
            source: Some(review.source),
            alert,
            answer: Some(answer),
        });
    }
    Ok(ReplyResult::without_review(
        ReplyOutcome::AlreadyReviewed,
        Some(texts::ALREADY_REVIEWED),
    ))
}

/// The same message again: thank again (the first answer may be what got lost), write
/// nothing, and retry the alert only if the first delivery could not send it.
async fn replayed<S: ReplyStore, A: NegativeReviewAlerts>(
    deps: &ReplyDeps<S, A>,
    reply: &IncomingReply,
    review: &StoredReview,
) -> ReplyResult {
    let corrected_away = review.message_sid.as_deref() != Some(reply.message_sid.as_str());
    let alert = if corrected_away || review.rating > NEGATIVE_RATING_MAX {
        AlertStatus::NotNeeded
    } else if review.alerted_message_sid.as_deref() == Some(reply.message_sid.as_str()) {
        AlertStatus::AlreadySent
    } else {
        alert_shop(deps, &review.order_id, review.rating, &review.comment, reply, false).await
    };
    ReplyResult {
        outcome: ReplyOutcome::Replayed,
        order_id: Some(review.order_id.clone()),
        rating: Some(review.rating),
        source: None,
        alert,
        answer: Some(thanks_for(review.rating)),
    }
}

async fn alert_shop<S: ReplyStore, A: NegativeReviewAlerts>(
    deps: &ReplyDeps<S, A>,
    order_id: &str,
    rating: u8,
    comment: &str,
    reply: &IncomingReply,
    corrected: bool,
) -> AlertStatus {
    let alert = NegativeReview {
        order_id: order_id.to_owned(),
        rating,
        comment: comment.to_owned(),
        masked_phone: reply.from.masked().to_string(),
        corrected,
    };
    let now = deps.clock.now();
    let cooldown = TimeDelta::hours(i64::from(deps.config.alert_cooldown_hours));
    match deps
        .store
        .claim_alert(order_id, &reply.message_sid, now, now - cooldown)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(function = FUNCTION_NAME, %order_id, "negative review: the shop was alerted about this order within the cooldown");
            return AlertStatus::Cooldown;
        }
        Err(error) => {
            tracing::error!(function = FUNCTION_NAME, %order_id, %error, "negative review recorded but the alert could not be claimed");
            return AlertStatus::Failed;
        }
    }
    match deps.alerts.alert(&alert).await {
        Ok(()) => AlertStatus::Sent,
        Err(error) => {
            tracing::error!(function = FUNCTION_NAME, %order_id, %error, "negative review recorded but the shop was not alerted");
            if let Err(error) = deps.store.release_alert(order_id, &reply.message_sid, now).await {
                // The claim stays: a retry of this message will not alert again.
                tracing::warn!(function = FUNCTION_NAME, %order_id, %error, "could not release the alert claim");
            }
            AlertStatus::Failed
        }
    }
}

/// The errors that reach Lambda (the Function URL then answers 502, and Twilio logs error
/// 11200). Typed like the jobs' errors so CloudWatch shows whether a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ReplyError> for Diagnostic {
    fn from(error: ReplyError) -> Self {
        let ReplyError::Store(store) = &error;
        let class = if store.retryable { "Retryable" } else { "NonRetryable" };
        Diagnostic {
            error_type: format!("{class}.DynamoDb"),
            error_message: error.to_string(),
        }
    }
}

/// The Lambda handler.
pub async fn handle<S: ReplyStore, A: NegativeReviewAlerts>(
    deps: &ReplyDeps<S, A>,
    event: LambdaEvent<FunctionUrlRequest>,
) -> Result<FunctionUrlResponse, ReplyError> {
    respond(deps, &event.payload).await
}

/// Authenticates, records and answers one webhook request; logs one `reply summary`
/// line and the metrics, whatever the outcome.
pub async fn respond<S: ReplyStore, A: NegativeReviewAlerts>(
    deps: &ReplyDeps<S, A>,
    request: &FunctionUrlRequest,
) -> Result<FunctionUrlResponse, ReplyError> {
    let started = Instant::now();
    let mut summary = Summary::default();
    let response = answer(deps, request, &mut summary).await;
    summary.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    summary.log(response.as_ref().err());
    crate::runtime::metrics::emit(&summary.metrics());
    response
}

/// The fields of the `reply summary` log line and of the metrics.
#[derive(Debug, Default)]
struct Summary {
    outcome: Option<ReplyOutcome>,
    reason: Option<&'static str>,
    from: Option<String>,
    message_sid: Option<String>,
    result: Option<ReplyResult>,
    duration_ms: u64,
}

impl Summary {
    fn log(&self, error: Option<&ReplyError>) {
        let outcome = self.outcome.map_or("error", ReplyOutcome::as_str);
        let result = self.result.as_ref();
        tracing::info!(
            function = FUNCTION_NAME,
            outcome,
            reason = self.reason,
            from = self.from.as_deref(),
            message_sid = self.message_sid.as_deref(),
            order_id = result.and_then(|r| r.order_id.as_deref()),
            rating = result.and_then(|r| r.rating),
            source = result.and_then(|r| r.source).map(RatingSource::as_str),
            alert = result.map(|r| format!("{:?}", r.alert).to_lowercase()),
            duration_ms = self.duration_ms,
            error = error.map(|e| e.to_string()),
            "reply summary"
        );
    }

    fn metrics(&self) -> Vec<MetricDocument> {
        let count = |name, value: bool| Metric {
            name,
            unit: Unit::Count,
            value: u64::from(value),
        };
        let result = self.result.as_ref();
        let written = matches!(self.outcome, Some(ReplyOutcome::Recorded | ReplyOutcome::Corrected));
        let rating = result.and_then(|r| r.rating).filter(|_| written);
        let mut metrics = vec![
            count("ReviewsRecorded", written),
            count("NegativeReviews", rating.is_some_and(|r| r <= NEGATIVE_RATING_MAX)),
            count(
                "RejectedSignatures",
                self.outcome == Some(ReplyOutcome::RejectedSignature),
            ),
            count("RepliesNotARating", self.outcome == Some(ReplyOutcome::NotARating)),
            count(
                "NegativeReviewAlertFailures",
                result.is_some_and(|r| r.alert == AlertStatus::Failed),
            ),
            Metric {
                name: "ReplyDuration",
                unit: Unit::Milliseconds,
                value: self.duration_ms,
            },
        ];
        // Only written reviews: the metric's Average statistic is the average rating.
        if let Some(rating) = rating {
            metrics.push(Metric {
                name: "ReviewRating",
                unit: Unit::Count,
                value: u64::from(rating),
            });
        }
        vec![MetricDocument {
            dimensions: vec![("Function", FUNCTION_NAME.to_owned())],
            metrics,
        }]
    }
}

async fn answer<S: ReplyStore, A: NegativeReviewAlerts>(
    deps: &ReplyDeps<S, A>,
    request: &FunctionUrlRequest,
    summary: &mut Summary,
) -> Result<FunctionUrlResponse, ReplyError> {
    fn bad_request(summary: &mut Summary, reason: &'static str, status: u16) -> FunctionUrlResponse {
        summary.outcome = Some(ReplyOutcome::BadRequest);
        summary.reason = Some(reason);
        FunctionUrlResponse::text(status, reason)
    }
    if request.method().is_some_and(|m| !m.eq_ignore_ascii_case("POST")) {
        return Ok(bad_request(summary, "only POST is accepted", 405));
    }
    // Everything before the signature check costs a constant, whatever the body: the
    // header is read first, then the body's size and parameter count, and only then is
    // the body decoded and hashed.
    let reject = |summary: &mut Summary, rejection: SignatureRejection, url: Option<&str>| {
        summary.outcome = Some(ReplyOutcome::RejectedSignature);
        summary.reason = Some(rejection.label());
        // Never the body: it is unauthenticated and may hold anything.
        tracing::warn!(
            function = FUNCTION_NAME,
            reason = rejection.label(),
            url,
            "rejected webhook signature"
        );
        FunctionUrlResponse::text(403, "invalid signature")
    };
    let signature = match signature::decode_header(request.header(SIGNATURE_HEADER)) {
        Ok(signature) => signature,
        Err(rejection) => return Ok(reject(summary, rejection, None)),
    };
    let body = match request.bounded_body() {
        Ok(body) => body,
        Err(refusal) => return Ok(bad_request(summary, refusal.label(), refusal.status())),
    };
    let url = match &deps.config.webhook_url {
        Some(url) => url.clone(),
        None => match request.function_url() {
            Some(url) => url,
            None => return Ok(bad_request(summary, "no requestContext.domainName", 400)),
        },
    };
    let params = form_params(&body);
    if let Err(rejection) = deps.validator.verify_decoded(&url, &params, &signature) {
        return Ok(reject(summary, rejection, Some(&url)));
    }
    let from = param(&params, "From").map(|f| f.trim().strip_prefix("whatsapp:").unwrap_or(f.trim()));
    let Some(from) = from.and_then(|f| PhoneNumber::parse(f).ok()) else {
        return Ok(bad_request(summary, "missing or invalid From", 400));
    };
    summary.from = Some(from.masked().to_string());
    let Some(message_sid) = param(&params, "MessageSid").filter(|sid| !sid.trim().is_empty()) else {
        return Ok(bad_request(summary, "missing MessageSid", 400));
    };
    summary.message_sid = Some(message_sid.to_owned());
    let reply = IncomingReply {
        from,
        message_sid: message_sid.to_owned(),
        body: param(&params, "Body").unwrap_or_default().to_owned(),
        button_payload: param(&params, "ButtonPayload")
            .filter(|p| !p.trim().is_empty())
            .map(str::to_owned),
    };
    let result = record_reply(deps, &reply).await?;
    summary.outcome = Some(result.outcome);
    let response = FunctionUrlResponse::twiml(result.twiml());
    summary.result = Some(result);
    Ok(response)
}

/// RFC 3339 in UTC, whole seconds: the format of every time in the tables, so that
/// strings compare as times.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests;
