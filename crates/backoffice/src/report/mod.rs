//! The shop owner's daily report: the figures of one shop day, read from that day's
//! counters ([`counters`]), and its text. The same figures are emitted as metrics by the
//! `daily-report` function, so the dashboard's "Daily report" row shows the same numbers.

pub mod counters;
pub mod events;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use strum::IntoEnumIterator;

use self::counters::{Counter, StoredDay};
use crate::domain::locale::Locale;
use crate::messages::kind::Kind;

/// One kind's messages of the day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KindFigures {
    pub sent: u64,
    pub delivered: u64,
    pub read: u64,
    /// Refused by Twilio, or failed or undelivered after it accepted them.
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NegativeReview {
    pub order_id: String,
    pub rating: u8,
}

/// Everything the owner reads about one day.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyReport {
    /// `YYYY-MM-DD`, the shop's calendar.
    pub day: String,
    /// Kinds that had any message that day.
    pub messages: BTreeMap<Kind, KindFigures>,
    /// Messages received from customers.
    pub received: u64,
    pub review_requests: u64,
    pub reviews: u64,
    /// Reviews recorded that day per review request sent that day.
    pub review_conversion: Option<f64>,
    pub average_rating: Option<f64>,
    pub negative_reviews: Vec<NegativeReview>,
    pub carts_abandoned: u64,
    pub carts_recovered: u64,
    pub orders: u64,
    /// Minor units of the shop's currency.
    pub revenue_cents: u64,
    pub new_customers: u64,
    pub returning_customers: u64,
}

impl DailyReport {
    pub fn from_day(day: &StoredDay) -> Self {
        let mut messages = BTreeMap::new();
        for kind in Kind::iter() {
            let figures = KindFigures {
                sent: day.get(Counter::Sent(kind)),
                delivered: day.get(Counter::Delivered(kind)),
                read: day.get(Counter::Read(kind)),
                failed: day.get(Counter::Failed(kind)) + day.get(Counter::Undelivered(kind)),
            };
            if figures != KindFigures::default() {
                messages.insert(kind, figures);
            }
        }
        let review_requests = day.get(Counter::Sent(Kind::ReviewRequest));
        let reviews = day.get(Counter::Reviews);
        let ratio = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
        let mut negative_reviews: Vec<NegativeReview> = day
            .negative_reviews
            .iter()
            .filter_map(|entry| {
                let (order_id, rating) = entry.rsplit_once(':')?;
                Some(NegativeReview {
                    order_id: order_id.to_owned(),
                    rating: rating.parse().ok()?,
                })
            })
            .collect();
        negative_reviews.sort_by(|a, b| a.rating.cmp(&b.rating).then_with(|| a.order_id.cmp(&b.order_id)));
        Self {
            day: day.day.clone(),
            messages,
            received: day.get(Counter::Received),
            review_requests,
            reviews,
            review_conversion: ratio(reviews, review_requests),
            average_rating: ratio(day.get(Counter::RatingSum), reviews),
            negative_reviews,
            carts_abandoned: day.get(Counter::CartsAbandoned),
            carts_recovered: day.get(Counter::CartsRecovered),
            orders: day.get(Counter::Orders),
            revenue_cents: day.get(Counter::RevenueCents),
            new_customers: day.get(Counter::NewCustomers),
            returning_customers: day.get(Counter::ReturningCustomers),
        }
    }

    /// The report as the owner reads it (e-mail body), in the shop's language.
    pub fn render(&self, locale: Locale, currency: &str) -> String {
        let t = Texts::of(locale);
        let mut text = String::new();
        let _ = writeln!(text, "{} {}", t.title, self.day);
        let _ = writeln!(text);
        let _ = writeln!(
            text,
            "{}{} {} · {} {}",
            t.orders,
            t.colon,
            self.orders,
            money(self.revenue_cents, currency),
            t.revenue
        );
        let _ = writeln!(
            text,
            "{}{} {} {} · {} {}",
            t.customers, t.colon, self.new_customers, t.new, self.returning_customers, t.returning
        );
        let _ = writeln!(
            text,
            "{}{} {} {} · {} {}",
            t.carts, t.colon, self.carts_abandoned, t.abandoned, self.carts_recovered, t.recovered
        );
        let _ = writeln!(
            text,
            "{}{} {} → {} ({}) · {} {}",
            t.reviews,
            t.colon,
            self.review_requests,
            self.reviews,
            percent(self.review_conversion),
            t.average,
            self.average_rating.map_or("-".to_owned(), |r| format!("{r:.1}/5")),
        );
        for negative in &self.negative_reviews {
            let _ = writeln!(text, "  ! {} {}/5", negative.order_id, negative.rating);
        }
        let _ = writeln!(text, "{}{} {}", t.received, t.colon, self.received);
        let _ = writeln!(text);
        let _ = writeln!(text, "{}", t.messages_header);
        if self.messages.is_empty() {
            let _ = writeln!(text, "  -");
        }
        for (kind, figures) in &self.messages {
            let _ = writeln!(
                text,
                "  {kind}: {} {} · {} {} · {} {} · {} {}",
                figures.sent, t.sent, figures.delivered, t.delivered, figures.read, t.read, figures.failed, t.failed
            );
        }
        text
    }

    /// The report on one line, for a WhatsApp template variable (no line breaks allowed).
    pub fn summary_line(&self, locale: Locale, currency: &str) -> String {
        let t = Texts::of(locale);
        let sent: u64 = self.messages.values().map(|f| f.sent).sum();
        let read: u64 = self.messages.values().map(|f| f.read).sum();
        let failed: u64 = self.messages.values().map(|f| f.failed).sum();
        format!(
            "{} {} ({}) · {} {} {}/{} · {} {} · {} {} {} {} {} · {} {}/{} {}",
            self.orders,
            t.orders.to_lowercase(),
            money(self.revenue_cents, currency),
            self.reviews,
            t.reviews.to_lowercase(),
            self.average_rating.map_or("-".to_owned(), |r| format!("{r:.1}")),
            5,
            self.negative_reviews.len(),
            t.negative,
            sent,
            t.sent,
            read,
            t.read,
            failed,
            t.failed,
            self.carts_recovered,
            self.carts_abandoned + self.carts_recovered,
            t.carts_recovered_short,
        )
    }
}

fn money(cents: u64, currency: &str) -> String {
    format!("{}.{:02} {currency}", cents / 100, cents % 100)
}

fn percent(ratio: Option<f64>) -> String {
    ratio.map_or("-".to_owned(), |r| format!("{:.0} %", r * 100.0))
}

struct Texts {
    /// French sets a space before a colon.
    colon: &'static str,
    title: &'static str,
    orders: &'static str,
    revenue: &'static str,
    customers: &'static str,
    new: &'static str,
    returning: &'static str,
    carts: &'static str,
    abandoned: &'static str,
    recovered: &'static str,
    carts_recovered_short: &'static str,
    reviews: &'static str,
    average: &'static str,
    negative: &'static str,
    received: &'static str,
    messages_header: &'static str,
    sent: &'static str,
    delivered: &'static str,
    read: &'static str,
    failed: &'static str,
}

impl Texts {
    fn of(locale: Locale) -> Self {
        match locale {
            Locale::En => Self {
                colon: ":",
                title: "Daily report",
                orders: "Orders",
                revenue: "revenue",
                customers: "Customers",
                new: "new",
                returning: "returning",
                carts: "Carts",
                abandoned: "abandoned",
                recovered: "recovered after a reminder",
                carts_recovered_short: "carts recovered",
                reviews: "Reviews",
                average: "average",
                negative: "negative",
                received: "Messages from customers",
                messages_header: "Messages sent (sent · delivered · read · failed):",
                sent: "sent",
                delivered: "delivered",
                read: "read",
                failed: "failed",
            },
            Locale::Fr => Self {
                colon: " :",
                title: "Rapport du",
                orders: "Commandes",
                revenue: "de chiffre d'affaires",
                customers: "Clients",
                new: "nouveaux",
                returning: "fidèles",
                carts: "Paniers",
                abandoned: "abandonnés",
                recovered: "récupérés après une relance",
                carts_recovered_short: "paniers récupérés",
                reviews: "Avis",
                average: "moyenne",
                negative: "négatifs",
                received: "Messages des clients",
                messages_header: "Messages envoyés (envoyés · remis · lus · échecs) :",
                sent: "envoyés",
                delivered: "remis",
                read: "lus",
                failed: "échecs",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(counters: &[(Counter, u64)], negative: &[&str]) -> StoredDay {
        StoredDay {
            day: "2026-12-02".into(),
            counters: counters.iter().map(|(c, v)| (c.attribute(), *v)).collect(),
            negative_reviews: negative.iter().map(|s| (*s).to_owned()).collect(),
            reported: BTreeMap::new(),
        }
    }

    #[test]
    fn figures_come_from_the_days_counters() {
        let report = DailyReport::from_day(&day(
            &[
                (Counter::Sent(Kind::ReviewRequest), 4),
                (Counter::Delivered(Kind::ReviewRequest), 3),
                (Counter::Read(Kind::ReviewRequest), 2),
                (Counter::Undelivered(Kind::ReviewRequest), 1),
                (Counter::Failed(Kind::OrderConfirmation), 1),
                (Counter::Reviews, 2),
                (Counter::RatingSum, 7),
                (Counter::Orders, 3),
                (Counter::RevenueCents, 12_345),
                (Counter::CartsAbandoned, 5),
                (Counter::CartsRecovered, 1),
                (Counter::NewCustomers, 2),
                (Counter::ReturningCustomers, 1),
                (Counter::Received, 6),
            ],
            &["ord-9:2", "ord-3:1"],
        ));
        assert_eq!(
            report.messages.get(&Kind::ReviewRequest),
            Some(&KindFigures {
                sent: 4,
                delivered: 3,
                read: 2,
                failed: 1
            })
        );
        assert_eq!(report.messages.get(&Kind::OrderConfirmation).map(|f| f.failed), Some(1));
        assert_eq!(report.messages.len(), 2, "kinds without messages are left out");
        assert_eq!(report.review_conversion, Some(0.5));
        assert_eq!(report.average_rating, Some(3.5));
        assert_eq!(
            report.negative_reviews,
            [
                NegativeReview {
                    order_id: "ord-3".into(),
                    rating: 1
                },
                NegativeReview {
                    order_id: "ord-9".into(),
                    rating: 2
                }
            ]
        );
        let text = report.render(Locale::En, "EUR");
        assert!(text.contains("Orders: 3 · 123.45 EUR revenue"), "{text}");
        assert!(text.contains("Reviews: 4 → 2 (50 %) · average 3.5/5"), "{text}");
        assert!(text.contains("  ! ord-3 1/5"), "{text}");
        let line = report.summary_line(Locale::Fr, "EUR");
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("3 commandes (123.45 EUR)"), "{line}");
    }

    #[test]
    fn an_empty_day_has_no_ratios() {
        let report = DailyReport::from_day(&day(&[], &[]));
        assert_eq!(report.review_conversion, None);
        assert_eq!(report.average_rating, None);
        assert!(report.render(Locale::Fr, "EUR").contains("Rapport du 2026-12-02"));
    }
}
