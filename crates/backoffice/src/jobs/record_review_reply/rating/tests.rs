//! The ratings customers write, read or refused.

use super::*;

fn text(body: &str) -> Option<(u8, String)> {
    let reply = parse_reply(None, body);
    assert!(!reply.correction, "{body}");
    reply.rating.map(|r| {
        assert_eq!(r.source, RatingSource::Text);
        (r.rating, r.comment)
    })
}

#[test]
fn reads_every_accepted_form() {
    let cases: &[(&str, u8, &str)] = &[
        ("5", 5, ""),
        (" 1 ", 1, ""),
        ("5/5", 5, ""),
        ("5 / 5", 5, ""),
        ("4/5 très bon", 4, "très bon"),
        ("4, pas mal", 4, "pas mal"),
        ("3 - bof, froid", 3, "bof, froid"),
        ("2: en retard", 2, "en retard"),
        ("5 étoiles merci", 5, "merci"),
        ("5 stars, great", 5, "great"),
        ("4 sur 5", 4, ""),
        ("4 out of 5 nice", 4, "nice"),
        ("10/10", 5, ""),
        ("9/10 super", 5, "super"),
        ("7/10", 4, ""),
        ("1/10", 1, ""),
        ("⭐⭐⭐⭐", 4, ""),
        ("⭐️⭐️⭐️⭐️⭐️ parfait", 5, "parfait"),
        ("⭐ ⭐ ⭐", 3, ""),
        ("★★", 2, ""),
        ("★★★★★/5", 5, ""),
        ("cinq", 5, ""),
        ("Cinq !", 5, ""),
        ("CINQ étoiles, génial", 5, "génial"),
        ("quatre, bien", 4, "bien"),
        ("trois/5", 3, ""),
        ("deux sur 5 trop cher", 2, "trop cher"),
        ("une", 1, ""),
        ("Un.", 1, ""),
        ("five", 5, ""),
        ("Three - ok", 3, "ok"),
        ("Four stars", 4, ""),
        ("two, cold food", 2, "cold food"),
        ("5\nLivraison rapide", 5, "Livraison rapide"),
        ("5\u{FE0F}\u{20E3}", 5, ""),
        ("4\u{20E3} bien", 4, "bien"),
        ("2\u{FE0F}\u{20E3}/5 froid", 2, "froid"),
    ];
    for (body, rating, comment) in cases {
        assert_eq!(text(body), Some((*rating, comment.to_string())), "{body:?}");
    }
}

#[test]
fn a_number_after_the_stars_is_the_rating_they_illustrate() {
    for (body, rating, comment) in [
        ("⭐ 5", 5, ""),
        ("⭐5/5", 5, ""),
        ("⭐\u{FE0F} 4/5 bien", 4, "bien"),
        ("⭐ 10/10", 5, ""),
        ("⭐⭐⭐ 3", 3, ""),
        ("⭐ 5\u{FE0F}\u{20E3}", 5, ""),
        ("⭐ 4 !", 4, ""),
        ("⭐ 4, pas mal", 4, "pas mal"),
        ("⭐ 5 étoiles", 5, ""),
        ("⭐ 5 étoiles merci", 5, "merci"),
        // Glued to a unit, or after several stars and before a word: the comment's.
        ("⭐⭐⭐⭐⭐ 100% satisfaite", 5, "100% satisfaite"),
        ("⭐⭐⭐⭐ 2 pizzas parfaites", 4, "2 pizzas parfaites"),
        ("⭐5€ de frais en trop", 1, "5€ de frais en trop"),
    ] {
        assert_eq!(text(body), Some((rating, comment.to_owned())), "{body:?}");
    }
}

#[test]
fn refuses_what_is_not_a_rating() {
    for body in [
        "",
        "   ",
        "0",
        "6",
        "10",
        "0/10",
        "11/10",
        "6/5",
        "3/7",
        "4.5",
        "4,5",
        "123",
        "5€ de réduction ?",
        "3x",
        "⭐⭐⭐⭐⭐⭐",
        // A number after the stars that is no rating, or disagrees with them.
        "⭐ 6",
        "⭐⭐ 5",
        "⭐⭐ 5/5",
        "⭐ 4,5",
        "⭐ 4.5",
        // One star, then a number and a word: "5 merci" or "5 min de retard"?
        "⭐ 5 merci",
        "⭐ 5 min de retard, tout froid",
        // Keycap ten, and keycap six.
        "1\u{FE0F}\u{20E3}0\u{FE0F}\u{20E3}",
        "6\u{FE0F}\u{20E3}",
        "Une belle expérience",
        "un peu déçu",
        "Merci beaucoup",
        "Bonjour, c'est pour une commande",
        "cinquante",
        "stars",
        "?",
    ] {
        assert_eq!(text(body), None, "{body:?}");
    }
}

#[test]
fn reads_the_quick_reply_payload_first() {
    let reply = parse_reply(Some("rating_2"), "⭐⭐ Bof");
    assert_eq!(
        reply.rating,
        Some(ParsedRating {
            rating: 2,
            comment: String::new(),
            source: RatingSource::Button,
        })
    );
    assert_eq!(parse_reply(Some("5"), "Excellent").rating.map(|r| r.rating), Some(5));
    assert_eq!(rating_from_payload("RATING_3"), Some(3));
    for payload in ["rating_0", "rating_6", "rating_", "yes", ""] {
        assert_eq!(rating_from_payload(payload), None, "{payload:?}");
    }
    // An unknown payload falls back to the text.
    let fallback = parse_reply(Some("menu"), "4 bien").rating.unwrap();
    assert_eq!((fallback.rating, fallback.source), (4, RatingSource::Text));
}

#[test]
fn a_reply_starting_with_correction_asks_to_replace_the_review() {
    let reply = parse_reply(None, "Correction: 2, finalement froid");
    assert!(reply.correction);
    let rating = reply.rating.unwrap();
    assert_eq!((rating.rating, rating.comment.as_str()), (2, "finalement froid"));

    let reply = parse_reply(None, "correction ⭐⭐⭐⭐⭐");
    assert!(reply.correction);
    assert_eq!(reply.rating.map(|r| r.rating), Some(5));

    let without_rating = parse_reply(None, "correction");
    assert!(without_rating.correction);
    assert_eq!(without_rating.rating, None);

    assert!(!parse_reply(None, "correctional 5").correction);
    assert!(!parse_reply(None, "5 correction").correction);
}

#[test]
fn keeps_long_comments_within_bounds() {
    let body = format!("3 {}", "é".repeat(5000));
    let (rating, comment) = text(&body).unwrap();
    assert_eq!(rating, 3);
    assert_eq!(comment.chars().count(), MAX_COMMENT_CHARS);
}

#[test]
fn invisible_marks_around_a_rating_are_not_read() {
    // A right-to-left keyboard marks the direction before a digit; a copy-paste brings a
    // zero-width space or a byte-order mark; a bidi override would display the comment
    // backwards in the shop's alert.
    for (body, rating, comment) in [
        ("\u{200F}5", 5, ""),
        ("5\u{200B}", 5, ""),
        ("\u{FEFF}4 bien", 4, "bien"),
        ("cinq\u{200B}", 5, ""),
        ("\u{2067}3\u{2069}", 3, ""),
        ("2 \u{202E}diorf", 2, "diorf"),
        ("5 👨\u{200D}🍳 top", 5, "👨\u{200D}🍳 top"),
    ] {
        assert_eq!(text(body), Some((rating, comment.to_owned())), "{body:?}");
    }
    assert_eq!(text("\u{200F}"), None);
}
