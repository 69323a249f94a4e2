//! The TwiML answer to Twilio's webhook: a `<Message>` Twilio sends back to the customer
//! (allowed without a template: the customer has just written, so the 24-hour window is
//! open), or an empty `<Response/>` for no answer.

const XML_DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// The content type Twilio expects for TwiML.
pub const TWIML_CONTENT_TYPE: &str = "text/xml";

/// Escapes the five XML special characters, and drops the control characters XML 1.0
/// cannot carry at all (everything below U+0020 but tab, newline and carriage return).
pub fn escape_xml(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\t' | '\n' | '\r' => escaped.push(c),
            c if (c as u32) < 0x20 => {}
            c => escaped.push(c),
        }
    }
    escaped
}

/// `<Response><Message>text</Message></Response>`.
pub fn message(text: &str) -> String {
    format!(
        "{XML_DECLARATION}<Response><Message>{}</Message></Response>",
        escape_xml(text)
    )
}

/// An empty response: Twilio sends nothing back.
pub fn no_reply() -> String {
    format!("{XML_DECLARATION}<Response></Response>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_a_message_in_twiml() {
        assert_eq!(
            message("Merci !"),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message>Merci !</Message></Response>"#
        );
        assert_eq!(
            no_reply(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#
        );
    }

    #[test]
    fn escapes_what_xml_would_read_as_markup() {
        assert_eq!(
            escape_xml(r#"<b>Tom & "Jerry"</b> l'été"#),
            "&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt; l&apos;été"
        );
        assert_eq!(
            message("</Message><Redirect>x</Redirect>"),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message>&lt;/Message&gt;&lt;Redirect&gt;x&lt;/Redirect&gt;</Message></Response>"#
        );
        assert_eq!(escape_xml("a\u{0}b\u{1b}c\nd⭐"), "abc\nd⭐");
    }
}
