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
mod config;
pub mod dynamo;
pub mod forward;
#[cfg(any(test, feature = "fakes"))]
pub mod memory;
mod metrics;
pub mod rating;
mod record;
pub mod request;
pub mod signature;
pub mod status;
mod store;
pub mod twiml;

use std::sync::Arc;
use std::time::Instant;

use lambda_runtime::LambdaEvent;
use metrics::Summary;
use request::param;

use crate::domain::phone::PhoneNumber;
use crate::report;
use crate::runtime::clock::Clock;
use crate::runtime::job::JobError;

pub use alerts::{NEGATIVE_RATING_MAX, NegativeReview, NegativeReviewAlerts};
pub use config::ReplyConfig;
pub use rating::{ParsedRating, RatingSource, parse_reply};
pub use record::{AlertStatus, MAX_CANDIDATES, ReplyOutcome, ReplyResult, record_reply, texts};
pub use request::{
    BodyRefusal, FunctionUrlRequest, FunctionUrlResponse, MAX_BODY_BYTES, MAX_PARAMS, form_params, signed_twilio_post,
};
pub use signature::{SIGNATURE_HEADER, SignatureRejection, SignatureValidator};
pub use store::{IncomingReply, NewReview, ReplyStore, RequestedOrder, StoredReview, WriteOutcome};

pub const FUNCTION_NAME: &str = "record-review-reply";

/// What `main.rs` builds once per cold start.
pub struct ReplyDeps<S, A> {
    pub store: S,
    pub alerts: A,
    pub validator: SignatureValidator,
    pub clock: Arc<dyn Clock>,
    pub config: ReplyConfig,
    /// The shop's own inbound handler, when it sits behind this webhook.
    pub forwarder: Option<forward::Forwarder>,
}

/// The Lambda handler.
pub async fn handle<S: ReplyStore, A: NegativeReviewAlerts>(
    deps: &ReplyDeps<S, A>,
    event: LambdaEvent<FunctionUrlRequest>,
) -> Result<FunctionUrlResponse, JobError> {
    respond(deps, &event.payload).await
}

/// Authenticates, records and answers one webhook request; logs one `reply summary`
/// line and the metrics, whatever the outcome.
pub async fn respond<S: ReplyStore, A: NegativeReviewAlerts>(
    deps: &ReplyDeps<S, A>,
    request: &FunctionUrlRequest,
) -> Result<FunctionUrlResponse, JobError> {
    let started = Instant::now();
    let mut summary = Summary::default();
    let response = answer(deps, request, &mut summary).await;
    summary.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    summary.log(response.as_ref().err());
    crate::runtime::metrics::emit(&summary.metrics());
    response
}

async fn answer<S: ReplyStore, A: NegativeReviewAlerts>(
    deps: &ReplyDeps<S, A>,
    request: &FunctionUrlRequest,
    summary: &mut Summary,
) -> Result<FunctionUrlResponse, JobError> {
    fn bad_request(summary: &mut Summary, reason: &'static str, status: u16) -> FunctionUrlResponse {
        summary.outcome = Some(ReplyOutcome::BadRequest);
        summary.reason = Some(reason);
        FunctionUrlResponse::text(status, reason)
    }
    if request.method().is_some_and(|m| !m.eq_ignore_ascii_case("POST")) {
        let mut response = bad_request(summary, "only POST is accepted", 405);
        response.headers.insert("allow".to_owned(), "POST".to_owned());
        return Ok(response);
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
        Some(url) => with_query(url, &request.raw_query_string),
        None => match request.function_url() {
            Some(url) => url,
            None => return Ok(bad_request(summary, "no requestContext.domainName", 400)),
        },
    };
    let params = form_params(&body);
    if let Err(rejection) = deps.validator.verify_decoded(&url, &params, &signature) {
        return Ok(reject(summary, rejection, Some(&signature::without_credentials(&url))));
    }
    if status::is_status_callback(&params) {
        return delivery_status(deps, request, &params, summary).await;
    }
    let Some(from) = param(&params, "From").and_then(|f| PhoneNumber::parse(without_channel(f)).ok()) else {
        return Ok(bad_request(summary, "missing or invalid From", 400));
    };
    summary.from = Some(from.masked().to_string());
    // Exactly Twilio's shape: the signed text joins names and values with nothing between
    // them, so a longer `MessageSid` could swallow the next parameter's name and value and
    // still carry the signature of a captured request, under a SID never seen before.
    let Some(message_sid) = param(&params, "MessageSid").filter(|sid| crate::twilio::is_message_sid(sid)) else {
        return Ok(bad_request(summary, "missing or malformed MessageSid", 400));
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
    count_incoming(deps, message_sid, &result).await;
    // Not a review reply nor a consent change: the shop's handler answers, if it is there.
    let not_ours = matches!(
        result.outcome,
        ReplyOutcome::NoPendingRequest | ReplyOutcome::NotARating | ReplyOutcome::AlreadyReviewed
    );
    let forwarded = match (&deps.forwarder, not_ours) {
        (Some(forwarder), true) => forwarder.forward(&params).await,
        _ => None,
    };
    summary.forwarded = forwarded.is_some();
    let response = forwarded.unwrap_or_else(|| FunctionUrlResponse::twiml(result.twiml()));
    summary.result = Some(result);
    Ok(response)
}

/// The URL Twilio signed when the function sits behind `REPLY_WEBHOOK_URL`: that URL,
/// with the query this request came with (a status callback's `?message=...`) when it has one.
fn with_query(configured: &str, raw_query: &str) -> String {
    if raw_query.is_empty() {
        return configured.to_owned();
    }
    let base = configured.split_once('?').map_or(configured, |(base, _)| base);
    format!("{base}?{raw_query}")
}

/// Counts a message received from a customer (each `MessageSid` once, by its marker,
/// whatever its deliveries), and the review it made. Logged and lost when the counters cannot be
/// updated: the reply is recorded.
async fn count_incoming<S: ReplyStore, A: NegativeReviewAlerts>(
    deps: &ReplyDeps<S, A>,
    reply_sid: &str,
    result: &ReplyResult,
) {
    // A replay is not counted again, unless it is a fresh delivery whose write lost its
    // answer before anything was counted; the marker keeps that to once.
    if result.outcome == ReplyOutcome::Replayed && !result.new_review {
        return;
    }
    let mut increments = vec![(report::counters::Counter::Received, 1)];
    let mut negative = None;
    if let (true, Some(rating), Some(order_id)) = (result.new_review, result.rating, &result.order_id) {
        increments.push((report::counters::Counter::Reviews, 1));
        increments.push((report::counters::Counter::RatingSum, u64::from(rating)));
        if rating <= NEGATIVE_RATING_MAX {
            increments.push((report::counters::Counter::NegativeReviews, 1));
            negative = Some(format!("{order_id}:{rating}"));
        }
    }
    if let Err(error) = deps
        .store
        .count(
            deps.clock.now(),
            Some(&format!("inbound#{reply_sid}")),
            &increments,
            negative.as_deref(),
        )
        .await
    {
        tracing::error!(function = FUNCTION_NAME, %error, "the day's counters were not updated");
    }
}

/// A signed status callback: recorded on its message, answered 200 with an empty body.
async fn delivery_status<S: ReplyStore, A: NegativeReviewAlerts>(
    deps: &ReplyDeps<S, A>,
    request: &FunctionUrlRequest,
    params: &[(String, String)],
    summary: &mut Summary,
) -> Result<FunctionUrlResponse, JobError> {
    summary.outcome = Some(ReplyOutcome::DeliveryStatus);
    summary.message_sid = param(params, "MessageSid").map(str::to_owned);
    let refuse = |summary: &mut Summary, refusal: status::StatusRefusal| {
        summary.outcome = Some(ReplyOutcome::BadRequest);
        summary.reason = Some(refusal.label());
        FunctionUrlResponse::text(400, refusal.label())
    };
    let id = match status::reference(&request.raw_query_string) {
        None => {
            summary.reason = Some("untracked message");
            return Ok(FunctionUrlResponse::text(200, ""));
        }
        Some(Err(refusal)) => return Ok(refuse(summary, refusal)),
        Some(Ok(id)) => id,
    };
    if !status::split_as_signed(&request.raw_query_string, params) {
        return Ok(refuse(summary, status::StatusRefusal::NotAsSigned));
    }
    let update = match status::read_update(id, params, deps.clock.now()) {
        Ok(update) => update,
        Err(refusal) => return Ok(refuse(summary, refusal)),
    };
    let recorded = status::record(&deps.store, &update).await?;
    summary.delivery = Some((update, recorded));
    Ok(FunctionUrlResponse::text(200, ""))
}

/// A sender address without its channel: `whatsapp:+336…` (in any case, as some
/// forwarding tools rewrite it), or a bare number.
fn without_channel(from: &str) -> &str {
    const CHANNEL: &str = "whatsapp:";
    let from = from.trim();
    match from.get(..CHANNEL.len()) {
        Some(channel) if channel.eq_ignore_ascii_case(CHANNEL) => from[CHANNEL.len()..].trim_start(),
        _ => from,
    }
}

#[cfg(test)]
mod tests;
