//! Matching a reply to its order, writing the review, and alerting the shop on a bad one.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::alerts::{NEGATIVE_RATING_MAX, NegativeReview, NegativeReviewAlerts};
use super::rating::{ParsedReply, RatingSource, parse_reply};
use super::{FUNCTION_NAME, IncomingReply, NewReview, ReplyDeps, ReplyStore, StoredReview, WriteOutcome, twiml};
use crate::domain::consent::{ConsentChange, ConsentSource, OptOut, consent_change};
use crate::store::StoreError;

/// Orders read from the index per reply: a customer rarely has more than one or two
/// requests in the window.
pub const MAX_CANDIDATES: i32 = 10;

/// What the customer reads back, in the shop's language (`SHOP_LOCALE`).
pub mod texts {
    use crate::domain::locale::Locale;

    #[derive(Debug)]
    pub struct ReplyTexts {
        pub thanks: &'static str,
        pub thanks_negative: &'static str,
        pub thanks_correction: &'static str,
        pub prompt: &'static str,
        pub already_reviewed: &'static str,
        pub opted_out: &'static str,
        pub opted_out_marketing: &'static str,
        pub opted_in: &'static str,
    }

    pub static EN: ReplyTexts = ReplyTexts {
        thanks: "Thank you for your review! We are glad to hear from you.",
        thanks_negative: "Thank you for your feedback. We are sorry your order did not meet your expectations: the shop will get back to you.",
        thanks_correction: "Thank you, your review has been updated.",
        prompt: "Sorry, we could not read a rating. Please reply with a number from 1 (poor) to 5 (excellent), followed by a comment if you like.",
        already_reviewed: "We already have your review for this order, thank you! To change it, reply \"correction\" followed by your new rating.",
        opted_out: "You will not receive any more messages from us. Reply START to receive them again.",
        opted_out_marketing: "You will not receive any more promotions from us; messages about your orders continue. Reply START to receive everything again.",
        opted_in: "Welcome back: you will receive our messages again. Reply STOP to stop them.",
    };

    pub static FR: ReplyTexts = ReplyTexts {
        thanks: "Merci pour votre avis ! Nous sommes ravis de vous lire.",
        thanks_negative: "Merci pour votre retour. Nous sommes désolés que votre commande ne vous ait pas satisfait : la boutique va vous recontacter.",
        thanks_correction: "Merci, votre avis a été mis à jour.",
        prompt: "Désolé, nous n'avons pas pu lire de note. Répondez par un chiffre de 1 (mauvais) à 5 (excellent), suivi d'un commentaire si vous le souhaitez.",
        already_reviewed: "Nous avons déjà votre avis pour cette commande, merci ! Pour le modifier, répondez \"correction\" suivi de votre nouvelle note.",
        opted_out: "Vous ne recevrez plus de messages de notre part. Répondez START pour les recevoir à nouveau.",
        opted_out_marketing: "Vous ne recevrez plus de promotions de notre part ; les messages sur vos commandes continuent. Répondez START pour tout recevoir à nouveau.",
        opted_in: "C'est noté : vous recevrez à nouveau nos messages. Répondez STOP pour les arrêter.",
    };

    /// The texts of `locale`.
    pub fn of(locale: Locale) -> &'static ReplyTexts {
        match locale {
            Locale::Fr => &FR,
            Locale::En => &EN,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ReplyOutcome {
    /// A new review was written.
    Recorded,
    /// An earlier review was replaced by a `correction` reply.
    Corrected,
    /// Twilio delivered the same `MessageSid` again (or, for a consent keyword, a later
    /// change is already recorded): nothing written.
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
    /// A consent keyword or button: the customer opted out (of marketing, or of everything).
    OptedOut,
    /// A consent keyword or button: the customer opted back in.
    OptedIn,
    /// A status callback about a message the back office sent.
    DeliveryStatus,
}

impl ReplyOutcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Whether the shop was alerted about this reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
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
    /// This message wrote the order's first review, now or on an earlier delivery whose
    /// answer was lost: the review counts in the day's figures (once, by its marker).
    pub new_review: bool,
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
            new_review: false,
        }
    }

    pub fn twiml(&self) -> String {
        match self.answer {
            Some(text) => twiml::message(text),
            None => twiml::no_reply(),
        }
    }
}

fn thanks_for(texts: &texts::ReplyTexts, rating: u8) -> &'static str {
    if rating <= NEGATIVE_RATING_MAX {
        texts.thanks_negative
    } else {
        texts.thanks
    }
}

/// Matches, records and alerts for one authenticated reply.
pub async fn record_reply<S: ReplyStore, A: NegativeReviewAlerts>(
    deps: &ReplyDeps<S, A>,
    reply: &IncomingReply,
) -> Result<ReplyResult, StoreError> {
    let texts = texts::of(deps.config.locale);
    // A consent keyword is never a review, whatever requests are pending.
    if let Some(change) = consent_change(reply.button_payload.as_deref(), &reply.body) {
        let source = if reply.button_payload.is_some() {
            ConsentSource::Button
        } else {
            ConsentSource::Keyword
        };
        let recorded = deps
            .store
            .record_consent(&reply.from, change, source, deps.clock.now(), &reply.message_sid)
            .await?;
        let (outcome, answer) = match change {
            ConsentChange::OptOut(OptOut::All) => (ReplyOutcome::OptedOut, texts.opted_out),
            ConsentChange::OptOut(OptOut::Marketing) => (ReplyOutcome::OptedOut, texts.opted_out_marketing),
            ConsentChange::OptIn => (ReplyOutcome::OptedIn, texts.opted_in),
        };
        // A message that already changed consent (a retry, a replay) is answered as before,
        // but not counted again.
        let outcome = if recorded { outcome } else { ReplyOutcome::Replayed };
        return Ok(ReplyResult::without_review(outcome, Some(answer)));
    }
    let parsed = parse_reply(reply.button_payload.as_deref(), &reply.body);
    let result = match_and_record(deps, reply, &parsed).await?;
    if parsed.rating.is_some() {
        // Whatever came of it (recorded, already reviewed, no request pending): the same
        // signed message replayed once a newer order awaits a review must not rate it.
        match deps.store.remember_rating(&reply.from, &reply.message_sid).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                function = FUNCTION_NAME,
                from = %reply.from.masked(),
                "too many rating messages remembered for this customer: this one is not"
            ),
            Err(error) => tracing::warn!(
                function = FUNCTION_NAME,
                %error,
                "the rating message was not remembered: a late replay of it would not be recognised"
            ),
        }
    }
    Ok(result)
}

/// Finds the order a reply rates and records the review; the alert and the answer.
async fn match_and_record<S: ReplyStore, A: NegativeReviewAlerts>(
    deps: &ReplyDeps<S, A>,
    reply: &IncomingReply,
    parsed: &ParsedReply,
) -> Result<ReplyResult, StoreError> {
    let texts = texts::of(deps.config.locale);
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
            let answer = (unreviewed.is_some() || parsed.correction).then_some(texts.prompt);
            return Ok(ReplyResult::without_review(ReplyOutcome::NotARating, answer));
        };
        // Read before, yet no review in the window is its own: a signed request replayed
        // after what it wrote left the window, or one that wrote nothing the first time.
        if deps.store.knows_rating(&reply.from, &reply.message_sid).await? {
            return Ok(ReplyResult::without_review(ReplyOutcome::Replayed, None));
        }
        let latest_reviewed = candidates.iter().find_map(|(_, review)| review.as_ref());
        let (order_id, previous) = match (parsed.correction, latest_reviewed, unreviewed) {
            (true, Some(previous), _) => (previous.order_id.clone(), Some(previous)),
            (_, _, Some((order, _))) => (order.order_id.clone(), None),
            (_, _, None) => {
                return Ok(ReplyResult::without_review(
                    ReplyOutcome::AlreadyReviewed,
                    Some(texts.already_reviewed),
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
                // Written by this message already: a concurrent delivery of it, or this
                // very write, sent again by the SDK after a lost answer. Whichever it was,
                // the alert is claimed once: a replay alerts only if nobody has.
                let Some(stored) = deps.store.review(&review.order_id).await? else {
                    continue;
                };
                return Ok(replayed(deps, reply, &stored).await);
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
            texts.thanks_correction
        } else {
            thanks_for(texts, review.rating)
        };
        return Ok(ReplyResult {
            outcome,
            order_id: Some(review.order_id),
            rating: Some(review.rating),
            source: Some(review.source),
            alert,
            answer: Some(answer),
            new_review: outcome == ReplyOutcome::Recorded,
        });
    }
    Ok(ReplyResult::without_review(
        ReplyOutcome::AlreadyReviewed,
        Some(texts.already_reviewed),
    ))
}

/// The same message again: thank again (the first answer may be what got lost), write
/// nothing, and retry the alert only if the first delivery could not send it.
async fn replayed<S: ReplyStore, A: NegativeReviewAlerts>(
    deps: &ReplyDeps<S, A>,
    reply: &IncomingReply,
    review: &StoredReview,
) -> ReplyResult {
    let texts = texts::of(deps.config.locale);
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
        answer: Some(thanks_for(texts, review.rating)),
        // Counted only when this is the write's own retry, or Twilio's within hours: a
        // delivery whose write lost its answer before anything was counted. An older replay
        // was counted the first time.
        new_review: !corrected_away
            && review.previous_message_sid.is_none()
            && review
                .created_at
                .as_deref()
                .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
                .is_some_and(|at| deps.clock.now() - at.with_timezone(&Utc) < REPLAY_COUNTED_WITHIN),
    }
}

/// How soon after its review a delivery of the same message may be its first to be
/// counted (the write's answer was lost): Twilio retries within hours.
const REPLAY_COUNTED_WITHIN: TimeDelta = TimeDelta::days(1);

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
            tracing::info!(function = FUNCTION_NAME, %order_id, "negative review not alerted: the shop was alerted about this order within the cooldown, or the review changed meanwhile");
            return AlertStatus::Cooldown;
        }
        Err(error) => {
            tracing::error!(function = FUNCTION_NAME, %order_id, %error, "negative review recorded but the alert could not be claimed");
            return AlertStatus::Failed;
        }
    }
    match deps.alerts.alert(&alert).await {
        Ok(()) => AlertStatus::Sent,
        Err(error) if error.may_have_reached_the_shop => {
            // The claim stays: a retry would repeat it on the channels that delivered.
            tracing::error!(function = FUNCTION_NAME, %order_id, %error, "negative review: the shop's alert failed on a channel, not sent again");
            AlertStatus::Failed
        }
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
