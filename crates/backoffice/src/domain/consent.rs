//! Whether a customer wants messages, and how a WhatsApp reply changes it.
//!
//! A reply is a consent keyword only when the whole message is one, after case, accents,
//! punctuation and spacing are set aside ("Stop!", "arrêt", "STOP ALL"), or when it is a
//! quick-reply button whose payload says so. "Cancel", "end" and "quit", which Twilio's SMS
//! keywords include, are left out: a shop's customer who writes "cancel" most likely means
//! the order, not the messages.

use serde::{Deserialize, Serialize};

/// What a customer has opted out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumString)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum OptOut {
    /// Marketing messages only (Meta's per-user marketing preference): utility ones still go.
    Marketing,
    /// Every message.
    All,
}

impl OptOut {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A change a customer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentChange {
    OptOut(OptOut),
    OptIn,
}

/// How the change reached the shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ConsentSource {
    /// A typed keyword.
    Keyword,
    /// A quick-reply button.
    Button,
    /// Twilio refused a message because the recipient opted out (error 21610).
    Twilio,
}

impl ConsentSource {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

const OPT_OUT_ALL: &[&str] = &[
    "STOP",
    "STOP ALL",
    "STOPALL",
    "UNSUBSCRIBE",
    "ARRET",
    "DESABONNER",
    "DESINSCRIRE",
];
const OPT_OUT_MARKETING: &[&str] = &[
    "STOP PROMO",
    "STOP PROMOS",
    "STOP PROMOTIONS",
    "STOP PUB",
    "STOP MARKETING",
];
const OPT_IN: &[&str] = &["START", "UNSTOP", "REPRENDRE"];

/// Button payloads (`ButtonPayload`) that mean a consent change; the shop's templates use
/// them for their quick-reply buttons. Meta's own "Stop promotions" button arrives as text.
const BUTTON_OPT_OUT_ALL: &[&str] = &["stop", "opt_out", "unsubscribe"];
const BUTTON_OPT_OUT_MARKETING: &[&str] = &["stop_marketing", "stop_promotions", "opt_out_marketing"];
const BUTTON_OPT_IN: &[&str] = &["start", "opt_in", "resubscribe"];

/// The consent change a reply asks for, if it is one.
pub fn consent_change(button_payload: Option<&str>, body: &str) -> Option<ConsentChange> {
    if let Some(payload) = button_payload.map(|p| p.trim().to_ascii_lowercase()) {
        let payload = payload.as_str();
        if BUTTON_OPT_OUT_ALL.contains(&payload) {
            return Some(ConsentChange::OptOut(OptOut::All));
        }
        if BUTTON_OPT_OUT_MARKETING.contains(&payload) {
            return Some(ConsentChange::OptOut(OptOut::Marketing));
        }
        if BUTTON_OPT_IN.contains(&payload) {
            return Some(ConsentChange::OptIn);
        }
    }
    // A consent keyword is short: a long message is never read whole, but padding
    // (spaces, emoji, punctuation) around a keyword does not count.
    let words = normalize(body, MAX_KEYWORD_BYTES)?;
    if OPT_OUT_ALL.contains(&words.as_str()) {
        Some(ConsentChange::OptOut(OptOut::All))
    } else if OPT_OUT_MARKETING.contains(&words.as_str()) {
        Some(ConsentChange::OptOut(OptOut::Marketing))
    } else if OPT_IN.contains(&words.as_str()) {
        Some(ConsentChange::OptIn)
    } else {
        None
    }
}

/// The longest keyword phrase, normalised.
const MAX_KEYWORD_BYTES: usize = 64;

/// Upper case, no accents, no punctuation, single spaces; `None` once longer than `max`
/// bytes.
fn normalize(text: &str, max: usize) -> Option<String> {
    let mut words = String::with_capacity(max + 8);
    for c in text.chars() {
        let c = fold_accent(c);
        if c.is_alphanumeric() {
            words.extend(c.to_uppercase());
        } else if !words.is_empty() && !words.ends_with(' ') {
            words.push(' ');
        }
        if words.len() > max + 1 {
            return None;
        }
    }
    let words = words.trim_end();
    (words.len() <= max).then(|| words.to_owned())
}

fn fold_accent(c: char) -> char {
    match c {
        'à' | 'â' | 'ä' | 'á' | 'À' | 'Â' | 'Ä' | 'Á' => 'a',
        'é' | 'è' | 'ê' | 'ë' | 'É' | 'È' | 'Ê' | 'Ë' => 'e',
        'î' | 'ï' | 'í' | 'Î' | 'Ï' | 'Í' => 'i',
        'ô' | 'ö' | 'ó' | 'Ô' | 'Ö' | 'Ó' => 'o',
        'ù' | 'û' | 'ü' | 'ú' | 'Ù' | 'Û' | 'Ü' | 'Ú' => 'u',
        'ç' | 'Ç' => 'c',
        other => other,
    }
}

/// Whether a message of a category may go to a customer with this opt-out.
pub fn allows(opt_out: Option<OptOut>, marketing: bool) -> bool {
    match opt_out {
        None => true,
        Some(OptOut::Marketing) => !marketing,
        Some(OptOut::All) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_out_words_are_read_whatever_their_case_accents_and_punctuation() {
        for body in [
            "STOP",
            "stop",
            " Stop! ",
            "stop all",
            "STOP-ALL",
            "StopAll",
            "Unsubscribe.",
            "ARRÊT",
            "arret",
            "Désabonner",
            "DESABONNER !",
        ] {
            assert_eq!(
                consent_change(None, body),
                Some(ConsentChange::OptOut(OptOut::All)),
                "{body:?}"
            );
        }
        for body in ["stop promo", "STOP PROMOTIONS", "Stop pub."] {
            assert_eq!(
                consent_change(None, body),
                Some(ConsentChange::OptOut(OptOut::Marketing)),
                "{body:?}"
            );
        }
        for body in ["START", "start", "Reprendre", "unstop"] {
            assert_eq!(consent_change(None, body), Some(ConsentChange::OptIn), "{body:?}");
        }
    }

    #[test]
    fn a_rating_a_sentence_or_an_order_cancellation_is_not_a_consent_change() {
        for body in [
            "5",
            "5 stop",
            "please stop sending the review",
            "cancel",
            "end",
            "stopped",
            "",
            "🙂",
        ] {
            assert_eq!(consent_change(None, body), None, "{body:?}");
        }
        assert_eq!(consent_change(None, &"stop ".repeat(40)), None);
    }

    #[test]
    fn padding_around_a_keyword_does_not_hide_it() {
        let padded = format!("{} STOP {}", "🛑".repeat(8), "🛑".repeat(8));
        assert!(padded.len() > MAX_KEYWORD_BYTES);
        assert_eq!(consent_change(None, &padded), Some(ConsentChange::OptOut(OptOut::All)));
        let spaced = format!("STOP{}", " ".repeat(61));
        assert_eq!(consent_change(None, &spaced), Some(ConsentChange::OptOut(OptOut::All)));
        assert_eq!(consent_change(None, &"!".repeat(100_000)), None);
    }

    #[test]
    fn button_payloads_say_it_too() {
        assert_eq!(
            consent_change(Some("stop"), "Stop messages"),
            Some(ConsentChange::OptOut(OptOut::All))
        );
        assert_eq!(
            consent_change(Some("STOP_MARKETING"), "No promotions"),
            Some(ConsentChange::OptOut(OptOut::Marketing))
        );
        assert_eq!(consent_change(Some("start"), "Resume"), Some(ConsentChange::OptIn));
        assert_eq!(consent_change(Some("rating_5"), "5"), None);
    }

    #[test]
    fn a_marketing_only_opt_out_still_lets_utility_messages_through() {
        assert!(allows(None, true));
        assert!(allows(Some(OptOut::Marketing), false));
        assert!(!allows(Some(OptOut::Marketing), true));
        assert!(!allows(Some(OptOut::All), false));
    }
}
