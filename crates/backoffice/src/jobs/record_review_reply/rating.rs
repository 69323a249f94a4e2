//! Reads a rating (1 to 5) and a comment from a customer's WhatsApp reply.
//!
//! Accepted, in this order:
//! 1. a quick-reply button whose payload is `rating_N` or `N` (N from 1 to 5); the
//!    button's own text is not a comment;
//! 2. text that starts with the rating:
//!    - a digit 1-5: `5`, `5/5`, `5 / 5`, `4, pas mal`, `5 étoiles merci`;
//!    - a score out of 10: `10/10` is 5, `7/10` is 4 (half up, at least 1);
//!    - 1 to 5 stars, ⭐ (U+2B50) or ★ (U+2605), with or without variation selectors
//!      or spaces between them; a score or a lone number after them is the rating they
//!      illustrate (`⭐ 4/5` and `⭐ 4` are 4), and must agree with them when there are
//!      several; a number glued to a unit is comment (`⭐⭐⭐⭐⭐ 100% satisfaite`), and
//!      one followed by a word is comment after several stars, asked again after one
//!      (`⭐ 5 min de retard` could be either);
//!    - a number word, French or English, in any case and with or without accents:
//!      `un`/`une`, `deux`, `trois`, `quatre`, `cinq`, `one` … `five`. A word counts
//!      only when it stands alone or is followed by punctuation, `/5`, `sur 5`,
//!      `out of 5` or `étoile(s)`/`star(s)`: "Une belle expérience" is a sentence, not
//!      a rating of 1.
//!
//! Not ratings (the customer is asked again): `0`, `6` and above without `/10`, `0/10`,
//! decimals (`4.5`, `4,5`), a score out of anything other than 5 or 10, more than five
//! stars, and text that does not start with one of the forms above.
//!
//! Whatever follows the rating is the comment, trimmed, with leading separators
//! (`-`, `:`, `,`, `.`, `!`, `;`, dashes) removed.
//!
//! A reply that starts with the word `correction` (any case) asks to replace the
//! customer's latest review: the word is removed and the rest is read as above.

pub use crate::domain::review::RatingSource;
use crate::twilio::is_invisible_mark;

/// A rating and what the customer wrote after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRating {
    /// 1 to 5.
    pub rating: u8,
    pub comment: String,
    pub source: RatingSource,
}

/// What the reply asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedReply {
    /// `None`: not a rating; the customer is asked again.
    pub rating: Option<ParsedRating>,
    /// The reply started with `correction`.
    pub correction: bool,
}

/// The longest comment kept, in characters; a WhatsApp message is at most 4096.
pub const MAX_COMMENT_CHARS: usize = 2000;

const CORRECTION_WORD: &str = "correction";

/// Reads a reply: the quick-reply payload first (Twilio's `ButtonPayload`), then the
/// text (`Body`).
pub fn parse_reply(button_payload: Option<&str>, body: &str) -> ParsedReply {
    // Invisible marks (a right-to-left keyboard's `U+200F` before a digit, a bidi override
    // that would show the comment backwards in the shop's alert) carry no meaning here.
    let body: String = body.chars().filter(|&c| !is_invisible_mark(c)).collect();
    let text = body.trim();
    let (correction, text) = strip_correction(text);
    let from_button = button_payload.and_then(rating_from_payload).map(|rating| ParsedRating {
        rating,
        comment: String::new(),
        source: RatingSource::Button,
    });
    let rating = from_button.or_else(|| {
        parse_text(text).map(|(rating, comment)| ParsedRating {
            rating,
            comment,
            source: RatingSource::Text,
        })
    });
    ParsedReply { rating, correction }
}

/// The payload convention for quick-reply buttons of the review-request template:
/// `rating_1` … `rating_5` (or the bare digit).
pub fn rating_from_payload(payload: &str) -> Option<u8> {
    let payload = payload.trim();
    let digits = payload
        .strip_prefix("rating_")
        .or_else(|| payload.strip_prefix("RATING_"))
        .unwrap_or(payload);
    match digits.parse::<u8>() {
        Ok(rating @ 1..=5) => Some(rating),
        _ => None,
    }
}

fn strip_correction(text: &str) -> (bool, &str) {
    let prefix: String = text.chars().take(CORRECTION_WORD.chars().count()).collect();
    if !prefix.eq_ignore_ascii_case(CORRECTION_WORD) {
        return (false, text);
    }
    let rest = &text[prefix.len()..];
    // "correctional" is not the keyword.
    if rest.chars().next().is_some_and(char::is_alphanumeric) {
        return (false, text);
    }
    (true, trim_separators(rest))
}

/// Rating and comment from free text, or `None` when it does not start with a rating.
pub fn parse_text(text: &str) -> Option<(u8, String)> {
    let text = without_keycaps(text.trim());
    let text = text.as_ref();
    let (rating, rest) = digits_rating(text)
        .or_else(|| stars_rating(text))
        .or_else(|| word_rating(text))?;
    Some((rating, comment_from(rest)))
}

/// A keycap emoji (`5️⃣`: the digit, U+FE0F, U+20E3) read as its digit, so `5️⃣` is a 5
/// without the emoji's tail in the comment, and `1️⃣0️⃣` is 10, not a 1.
fn without_keycaps(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(KEYCAP) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        plain.push(c);
        if c.is_ascii_digit() {
            let mut after = chars.clone();
            after.next_if_eq(&'\u{FE0F}');
            if after.next_if_eq(&KEYCAP).is_some() {
                chars = after;
            }
        }
    }
    std::borrow::Cow::Owned(plain)
}

const KEYCAP: char = '\u{20E3}';

fn comment_from(rest: &str) -> String {
    let rest = strip_stars_word(trim_separators(rest));
    trim_separators(rest).chars().take(MAX_COMMENT_CHARS).collect()
}

fn is_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '-' | ':' | ',' | '.' | '!' | ';' | '–' | '—' | ')' | '|')
}

fn trim_separators(text: &str) -> &str {
    text.trim_start_matches(is_separator).trim_end()
}

/// `N`, `N/5`, `N / 5`, `N/10` at the start.
fn digits_rating(text: &str) -> Option<(u8, &str)> {
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if digits_end == 0 || digits_end > 2 {
        return None;
    }
    let value: u8 = text[..digits_end].parse().ok()?;
    let rest = &text[digits_end..];
    // A decimal (4.5, 4,5) is not a rating we can store.
    let mut after = rest.chars();
    if let (Some('.' | ','), Some(next)) = (after.next(), after.next())
        && next.is_ascii_digit()
    {
        return None;
    }
    match out_of(rest) {
        Some((5, rest)) => (1..=5).contains(&value).then_some((value, rest)),
        // Half up: 7/10 is 3.5, read as 4; 1/10 is 0.5, read as 1.
        Some((10, rest)) => (1..=10).contains(&value).then(|| (value.div_ceil(2), rest)),
        Some(_) => None,
        None => {
            // "5€", "3x": a number glued to a unit is a quantity, not a rating.
            if rest
                .chars()
                .next()
                .is_some_and(|c| !(is_separator(c) || is_star(c) || is_emoji_modifier(c)))
            {
                return None;
            }
            (1..=5).contains(&value).then_some((value, rest))
        }
    }
}

/// `/ D`, `sur D`, `out of D` after a rating: the scale and what follows it.
fn out_of(rest: &str) -> Option<(u8, &str)> {
    let trimmed = rest.trim_start();
    let after_word = ["/", "sur ", "out of ", "on "]
        .iter()
        .find(|word| {
            trimmed
                .get(..word.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(word))
        })
        .map(|word| trimmed[word.len()..].trim_start())?;
    let digits_end = after_word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(after_word.len());
    if digits_end == 0 {
        return None;
    }
    let scale = after_word[..digits_end].parse::<u8>().unwrap_or(u8::MAX);
    Some((scale, &after_word[digits_end..]))
}

fn is_star(c: char) -> bool {
    matches!(c, '⭐' | '★')
}

/// Variation selectors (U+FE0E, U+FE0F) and zero-width joiners that WhatsApp puts in
/// emoji sequences.
fn is_emoji_modifier(c: char) -> bool {
    matches!(c, '\u{FE0E}' | '\u{FE0F}' | '\u{200D}')
}

fn stars_rating(text: &str) -> Option<(u8, &str)> {
    let mut stars = 0u32;
    let mut end = 0;
    for (index, c) in text.char_indices() {
        if is_star(c) {
            stars += 1;
            end = index + c.len_utf8();
        } else if is_emoji_modifier(c) || (c.is_whitespace() && stars > 0) {
            if is_emoji_modifier(c) {
                end = index + c.len_utf8();
            }
        } else {
            break;
        }
    }
    if !(1..=5).contains(&stars) {
        return None;
    }
    let rest = &text[end..];
    let rest = match out_of(rest) {
        Some((5, rest)) => rest,
        Some(_) => return None,
        None => rest,
    };
    // A number after the stars: a score ("⭐ 4/5", "⭐ 10/10") or a number standing alone
    // ("⭐ 4", "⭐ 4, pas mal", "⭐ 5 étoiles") is the rating they illustrate, and must agree
    // with several stars ("⭐⭐ 5" asks again); a decimal asks again; a number glued to a
    // unit ("⭐⭐⭐⭐⭐ 100% satisfaite") is the comment's. A number followed by a word reads
    // both ways ("⭐ 5 merci", "⭐ 5 min de retard"): with several stars it is the comment's,
    // with one star the customer is asked again rather than rated 1 or 5 by a guess.
    let after = rest.trim_start_matches(|c: char| c.is_whitespace() || is_emoji_modifier(c));
    let digits_end = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
    if digits_end > 0 {
        let tail = &after[digits_end..];
        let mut tail_chars = tail.chars();
        if let (Some('.' | ','), Some(next)) = (tail_chars.next(), tail_chars.next())
            && next.is_ascii_digit()
        {
            return None;
        }
        let next_word = tail.trim_start();
        let stands_alone = next_word.is_empty()
            || next_word.starts_with(|c: char| is_separator(c) || is_star(c))
            || stars_word(next_word).is_some();
        if out_of(tail).is_some() || stands_alone {
            let (value, rest) = digits_rating(after)?;
            return (stars == 1 || u32::from(value) == stars).then_some((value, rest));
        }
        let glued = !tail.starts_with(char::is_whitespace);
        if !glued && stars == 1 {
            return None;
        }
    }
    Some((stars as u8, rest))
}

/// Lowercase without the French accents, so `Cinq`, `CINQ` and `cinq` read alike.
fn fold(word: &str) -> String {
    word.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'à' | 'â' | 'ä' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'î' | 'ï' => 'i',
            'ô' | 'ö' => 'o',
            'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            other => other,
        })
        .collect()
}

fn number_word(word: &str) -> Option<u8> {
    match fold(word).as_str() {
        "un" | "une" | "one" => Some(1),
        "deux" | "two" => Some(2),
        "trois" | "three" => Some(3),
        "quatre" | "four" => Some(4),
        "cinq" | "five" => Some(5),
        _ => None,
    }
}

/// `etoile(s)`, `star(s)` at the start of `text`, and what follows.
fn stars_word(text: &str) -> Option<&str> {
    let end = text.find(|c: char| !c.is_alphabetic()).unwrap_or(text.len());
    matches!(fold(&text[..end]).as_str(), "etoile" | "etoiles" | "star" | "stars").then(|| &text[end..])
}

fn strip_stars_word(text: &str) -> &str {
    stars_word(text).unwrap_or(text)
}

fn word_rating(text: &str) -> Option<(u8, &str)> {
    let end = text.find(|c: char| !c.is_alphabetic()).unwrap_or(text.len());
    let rating = number_word(&text[..end])?;
    let rest = &text[end..];
    if let Some((scale, rest)) = out_of(rest) {
        return (scale == 5).then_some((rating, rest));
    }
    let after_space = rest.trim_start();
    if after_space.is_empty() {
        return Some((rating, ""));
    }
    if let Some(rest) = stars_word(after_space) {
        return Some((rating, rest));
    }
    // A word followed by another word is a sentence ("Une belle expérience").
    let next = after_space.chars().next()?;
    if next.is_alphanumeric() {
        return None;
    }
    Some((rating, rest))
}

#[cfg(test)]
mod tests;
