//! No flooding: at most `per_week` marketing messages to a customer in any 7 days, and none
//! within `gap` of any other message to them. Utility messages are never held by the caps,
//! but count for the gap.

use chrono::{DateTime, TimeDelta, Utc};

use super::consent::Consent;
use crate::runtime::config::{ConfigError, EnvSource, parse_var};

pub const WEEK: TimeDelta = TimeDelta::days(7);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub per_week: u32,
    pub gap: TimeDelta,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            per_week: 2,
            gap: TimeDelta::hours(24),
        }
    }
}

impl Caps {
    /// `MARKETING_PER_WEEK` (2, 1 to 20) and `MARKETING_GAP_HOURS` (24, 0 to 168).
    pub fn from_env(env: &impl EnvSource) -> Result<Self, ConfigError> {
        let per_week: u32 = parse_var(env, "MARKETING_PER_WEEK")?.unwrap_or(2);
        if !(1..=20).contains(&per_week) {
            return Err(ConfigError::Invalid {
                name: "MARKETING_PER_WEEK",
                value: per_week.to_string(),
                reason: "must be between 1 and 20".into(),
            });
        }
        let gap_hours: i64 = parse_var(env, "MARKETING_GAP_HOURS")?.unwrap_or(24);
        if !(0..=168).contains(&gap_hours) {
            return Err(ConfigError::Invalid {
                name: "MARKETING_GAP_HOURS",
                value: gap_hours.to_string(),
                reason: "must be between 0 and 168".into(),
            });
        }
        Ok(Self {
            per_week,
            gap: TimeDelta::hours(gap_hours),
        })
    }

    /// When a marketing message to this customer may go at the earliest: `None` now.
    pub fn next_allowed(&self, customer: &Consent, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // A time near the end of the calendar (an item edited by hand) holds the message
        // for good rather than overflowing.
        let later = |at: DateTime<Utc>, by: TimeDelta| at.checked_add_signed(by).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let after_gap = customer.last_sent_at.map(|last| later(last, self.gap));
        let after_week = customer
            .marketing_sent
            .get(self.per_week as usize - 1)
            .map(|oldest_counted| later(*oldest_counted, WEEK));
        [after_gap, after_week]
            .into_iter()
            .flatten()
            .filter(|at| *at > now)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn two_marketing_messages_a_week_and_a_day_after_any_message() {
        let caps = Caps::default();
        let now = at("2026-12-10T10:00:00Z");
        assert_eq!(caps.next_allowed(&Consent::default(), now), None);
        let just_messaged = Consent {
            last_sent_at: Some(at("2026-12-10T08:00:00Z")),
            ..Consent::default()
        };
        assert_eq!(caps.next_allowed(&just_messaged, now), Some(at("2026-12-11T08:00:00Z")));
        let two_this_week = Consent {
            last_sent_at: Some(at("2026-12-08T10:00:00Z")),
            marketing_sent: vec![at("2026-12-08T10:00:00Z"), at("2026-12-05T09:00:00Z")],
            ..Consent::default()
        };
        assert_eq!(caps.next_allowed(&two_this_week, now), Some(at("2026-12-12T09:00:00Z")));
        let one_this_week = Consent {
            marketing_sent: vec![at("2026-12-08T10:00:00Z"), at("2026-11-20T09:00:00Z")],
            ..Consent::default()
        };
        assert_eq!(caps.next_allowed(&one_this_week, now), None);
    }

    #[test]
    fn a_time_at_the_end_of_the_calendar_holds_the_message_instead_of_overflowing() {
        let caps = Caps::default();
        let now = at("2026-12-10T10:00:00Z");
        let hand_edited = Consent {
            last_sent_at: Some(DateTime::<Utc>::MAX_UTC),
            marketing_sent: vec![DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MAX_UTC],
            ..Consent::default()
        };
        assert_eq!(caps.next_allowed(&hand_edited, now), Some(DateTime::<Utc>::MAX_UTC));
    }
}
