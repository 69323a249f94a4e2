//! What a message says: an approved WhatsApp template with its variables, or a plain body.

use std::collections::BTreeMap;

/// The longest template variable we send, in characters. Names and order numbers fit
/// easily; a runaway value (an address pasted into the name field) is cut instead of
/// making the whole message fail.
pub const MAX_TEMPLATE_VARIABLE_CHARS: usize = 60;

/// What an empty variable becomes when the caller gives no better fallback: WhatsApp
/// refuses a template whose parameter is empty, and a dash reads as "not known" in any
/// language.
pub const EMPTY_TEMPLATE_VARIABLE_FALLBACK: &str = "-";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageContent {
    /// An approved template (Content SID `HX…`) and its numbered variables, e.g.
    /// `{"1": "Ana", "2": "A-1001"}`. The variables are sanitised with
    /// [`sanitize_template_variable`] when the request is built, so WhatsApp never
    /// refuses them for their whitespace or emptiness.
    Template {
        content_sid: String,
        variables: BTreeMap<String, String>,
    },
    /// Free text. WhatsApp delivers it only within 24 hours of the customer's last
    /// message (Twilio error 63016 otherwise), so it is a fallback for when no template
    /// is configured.
    Body(String),
}

/// A character that shows nothing but may change how the text around it reads: direction
/// marks a right-to-left keyboard adds (`U+200F`), bidi overrides that display a text
/// backwards (`U+202E`), zero-width spaces and the byte-order mark. The zero-width joiner
/// is not one: emoji sequences need it.
pub fn is_invisible_mark(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'
            | '\u{200C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Makes one value acceptable as a WhatsApp template parameter, which may not contain
/// newlines or tabs, may not hold more than four consecutive spaces, and may not be empty.
///
/// Every run of whitespace (newlines, tabs, spaces, other Unicode spaces) becomes one
/// space, other control characters are dropped, the ends are trimmed, and the result is
/// cut to [`MAX_TEMPLATE_VARIABLE_CHARS`] characters (never inside a character). A value
/// left empty becomes `fallback` (itself sanitised), or [`EMPTY_TEMPLATE_VARIABLE_FALLBACK`]
/// if that is empty too: we choose to send a slightly generic message rather than none.
/// Pass a fallback that fits the sentence, e.g. `"customer"` for a first name.
///
/// Sanitising is idempotent: a sanitised value comes back unchanged.
pub fn sanitize_template_variable(raw: &str, fallback: &str) -> String {
    let cleaned = collapse_and_truncate(raw);
    if !cleaned.is_empty() {
        return cleaned;
    }
    let fallback = collapse_and_truncate(fallback);
    if fallback.is_empty() {
        EMPTY_TEMPLATE_VARIABLE_FALLBACK.to_owned()
    } else {
        fallback
    }
}

fn collapse_and_truncate(raw: &str) -> String {
    let mut cleaned = String::with_capacity(raw.len().min(MAX_TEMPLATE_VARIABLE_CHARS * 4));
    let mut pending_space = false;
    let mut kept_chars = 0;
    for c in raw.chars() {
        if c.is_whitespace() {
            pending_space = !cleaned.is_empty();
            continue;
        }
        if c.is_control() || is_invisible_mark(c) {
            continue;
        }
        let needed = if pending_space { 2 } else { 1 };
        if kept_chars + needed > MAX_TEMPLATE_VARIABLE_CHARS {
            break;
        }
        if pending_space {
            cleaned.push(' ');
            pending_space = false;
        }
        cleaned.push(c);
        kept_chars += needed;
    }
    cleaned
}

/// The `ContentVariables` form field: a JSON object of sanitised values.
pub(super) fn content_variables_json(variables: &BTreeMap<String, String>) -> String {
    let sanitised: BTreeMap<&str, String> = variables
        .iter()
        .map(|(key, value)| (key.as_str(), sanitize_template_variable(value, "")))
        .collect();
    // A map of strings always serialises; the fallback only keeps this panic-free.
    serde_json::to_string(&sanitised).unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_marks_are_dropped_and_joined_emoji_kept() {
        assert_eq!(
            sanitize_template_variable("\u{202E}diorf \u{200F}Ana\u{200B}", "-"),
            "diorf Ana"
        );
        assert_eq!(sanitize_template_variable("👨\u{200D}🍳", "-"), "👨\u{200D}🍳");
        assert_eq!(sanitize_template_variable("\u{FEFF}\u{2066}", "client"), "client");
    }

    #[test]
    fn turns_newlines_tabs_and_space_runs_into_single_spaces() {
        assert_eq!(sanitize_template_variable("Ana\nMaria", "customer"), "Ana Maria");
        assert_eq!(sanitize_template_variable("Ana\t\tMaria", "customer"), "Ana Maria");
        assert_eq!(sanitize_template_variable("Ana      Maria", "customer"), "Ana Maria");
        assert_eq!(
            sanitize_template_variable("Ana\r\n \u{a0} Maria", "customer"),
            "Ana Maria"
        );
        assert_eq!(sanitize_template_variable("  \n Ana  \t", "customer"), "Ana");
        assert_eq!(sanitize_template_variable("A\u{7}na", "customer"), "Ana");
    }

    #[test]
    fn substitutes_the_fallback_for_an_empty_value() {
        assert_eq!(sanitize_template_variable("", "customer"), "customer");
        assert_eq!(sanitize_template_variable(" \n\t ", "customer"), "customer");
        assert_eq!(sanitize_template_variable("", " \n "), EMPTY_TEMPLATE_VARIABLE_FALLBACK);
        assert_eq!(sanitize_template_variable("", "my\n\ncustomer"), "my customer");
    }

    #[test]
    fn truncates_long_values_on_a_character_boundary() {
        let long = "é".repeat(100);
        let cut = sanitize_template_variable(&long, "customer");
        assert_eq!(cut.chars().count(), MAX_TEMPLATE_VARIABLE_CHARS);
        assert_eq!(cut, "é".repeat(MAX_TEMPLATE_VARIABLE_CHARS));

        // A space right at the limit is not kept as a trailing space.
        let words = format!("{} tail", "a".repeat(MAX_TEMPLATE_VARIABLE_CHARS));
        assert_eq!(
            sanitize_template_variable(&words, "customer"),
            "a".repeat(MAX_TEMPLATE_VARIABLE_CHARS)
        );
        let near_limit = format!("{} bc", "a".repeat(MAX_TEMPLATE_VARIABLE_CHARS - 2));
        let cut = sanitize_template_variable(&near_limit, "customer");
        assert_eq!(cut, format!("{} b", "a".repeat(MAX_TEMPLATE_VARIABLE_CHARS - 2)));
        assert_eq!(cut.chars().count(), MAX_TEMPLATE_VARIABLE_CHARS);
    }

    #[test]
    fn leaves_clean_values_alone_and_is_idempotent() {
        for raw in ["Ana", "A-1001", "José Álvarez", "  x\n\n y ", &"ü".repeat(80)] {
            let once = sanitize_template_variable(raw, "customer");
            assert_eq!(sanitize_template_variable(&once, "customer"), once);
        }
        assert_eq!(sanitize_template_variable("José Álvarez", "customer"), "José Álvarez");
    }

    #[test]
    fn builds_content_variables_as_a_json_object_of_sanitised_values() {
        let variables = BTreeMap::from([
            ("1".to_owned(), "Ana\n".to_owned()),
            ("2".to_owned(), "A-1001".to_owned()),
            ("3".to_owned(), "   ".to_owned()),
        ]);
        assert_eq!(
            content_variables_json(&variables),
            r#"{"1":"Ana","2":"A-1001","3":"-"}"#
        );
    }
}
