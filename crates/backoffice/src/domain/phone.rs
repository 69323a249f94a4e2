//! E.164 phone numbers, parsed once at the edge and masked whenever they are printed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A phone number in E.164 form: `+`, a country code that does not start with 0, and
/// 7 to 15 digits in all. `Debug` and [`PhoneNumber::masked`] never show the full number,
/// so a stray `?phone` in a log line cannot leak it.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone number is empty")]
    Empty,
    #[error("phone number must be in E.164 form: '+' then the country code and number")]
    MissingPlus,
    #[error("phone number may contain only digits after '+'")]
    NotDigits,
    #[error("phone number must have 7 to 15 digits, found {0}")]
    Length(usize),
    #[error("a country code never starts with 0")]
    LeadingZero,
}

impl PhoneNumber {
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        let digits = trimmed.strip_prefix('+').ok_or(PhoneError::MissingPlus)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PhoneError::NotDigits);
        }
        if !(7..=15).contains(&digits.len()) {
            return Err(PhoneError::Length(digits.len()));
        }
        if digits.starts_with('0') {
            return Err(PhoneError::LeadingZero);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `+33*******78`: enough to tell two customers apart in a log, not enough to call them.
    pub fn masked(&self) -> MaskedPhone<'_> {
        MaskedPhone(&self.0)
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.0
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

pub struct MaskedPhone<'a>(&'a str);

impl fmt::Display for MaskedPhone<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        mask_phone_like(self.0, f)
    }
}

/// Masks any text that may hold a phone number (also one that failed to parse), keeping
/// the first three and last two characters.
pub fn mask_phone_like(text: &str, f: &mut impl fmt::Write) -> fmt::Result {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 5 {
        return f.write_str(&"*".repeat(chars.len()));
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    write!(f, "{head}{}{tail}", "*".repeat(chars.len() - 5))
}

/// The first `max_chars` characters of a text from outside, its phone numbers masked
/// ([`mask_phone_numbers`]): what an error or a log line may quote of it.
pub fn masked_excerpt(text: &str, max_chars: usize) -> String {
    mask_phone_numbers(&text.chars().take(max_chars).collect::<String>())
}

/// Masks every run of 7 or more digits (with its `+`) in a text from outside: Twilio's
/// messages quote the number they refused ("The 'To' number +33612345678 is not a valid
/// phone number"), and a refused payload's parse error quotes the value it refused.
pub fn mask_phone_numbers(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c == '+' || c.is_ascii_digit()) {
        masked.push_str(&rest[..start]);
        let candidate = &rest[start..];
        let digits_from = usize::from(candidate.starts_with('+'));
        let digit_count = candidate[digits_from..].bytes().take_while(u8::is_ascii_digit).count();
        let end = digits_from + digit_count;
        let number = &candidate[..end];
        if digit_count >= 7 {
            // Writing into a String cannot fail.
            let _ = mask_phone_like(number, &mut masked);
        } else {
            masked.push_str(number);
        }
        rest = &candidate[number.len()..];
    }
    masked.push_str(rest);
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_only_phone_like_numbers() {
        assert_eq!(
            mask_phone_numbers("code 21211: +14155550100 and 0612345678, order A-1001 +12"),
            "code 21211: +14*******00 and 061*****78, order A-1001 +12"
        );
        assert_eq!(mask_phone_numbers("plain + sign"), "plain + sign");
        assert_eq!(mask_phone_numbers("ends with +"), "ends with +");
    }

    #[test]
    fn accepts_e164_numbers() {
        let phone = PhoneNumber::parse(" +33612345678 ").unwrap();
        assert_eq!(phone.as_str(), "+33612345678");
    }

    #[test]
    fn refuses_numbers_that_are_not_e164() {
        assert_eq!(PhoneNumber::parse(""), Err(PhoneError::Empty));
        assert_eq!(PhoneNumber::parse("0612345678"), Err(PhoneError::MissingPlus));
        assert_eq!(PhoneNumber::parse("+33 6 12 34"), Err(PhoneError::NotDigits));
        assert_eq!(PhoneNumber::parse("+123"), Err(PhoneError::Length(3)));
        assert_eq!(PhoneNumber::parse("+1234567890123456"), Err(PhoneError::Length(16)));
        assert_eq!(PhoneNumber::parse("+0612345678"), Err(PhoneError::LeadingZero));
    }

    #[test]
    fn never_prints_the_whole_number() {
        let phone = PhoneNumber::parse("+33612345678").unwrap();
        assert_eq!(phone.masked().to_string(), "+33*******78");
        assert_eq!(format!("{phone:?}"), "PhoneNumber(+33*******78)");
    }

    #[test]
    fn round_trips_through_serde_as_a_plain_string() {
        let phone: PhoneNumber = serde_json::from_str("\"+14155550100\"").unwrap();
        assert_eq!(serde_json::to_string(&phone).unwrap(), "\"+14155550100\"");
        let err = serde_json::from_str::<PhoneNumber>("\"4155550100\"").unwrap_err();
        assert!(err.to_string().contains("E.164"), "{err}");
    }
}
