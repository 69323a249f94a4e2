//! Quiet hours: no message to a customer at night or on the shop's days off. A message
//! whose time falls in them waits for the next opening; the kinds a customer expects at
//! once (an order confirmation, "ready for pickup") may be exempted.

use chrono::{DateTime, TimeDelta, Utc};
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use super::kind::Kind;
use crate::runtime::config::{ConfigError, EnvSource};

#[derive(Debug, Clone, PartialEq)]
pub struct QuietHours {
    zone: TimeZone,
    /// From `start` to `end` local time (overnight when `start` is after `end`); equal
    /// times mean no quiet hours.
    start: Time,
    end: Time,
    /// Whole days off.
    days: Vec<Weekday>,
    /// Kinds sent even in quiet hours.
    exempt: Vec<Kind>,
}

fn parse_time(name: &'static str, value: &str) -> Result<Time, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Invalid {
        name,
        value: value.into(),
        reason: "not a time of day such as 21:00".into(),
    })
}

fn parse_day(value: &str) -> Option<Weekday> {
    Some(match value.trim().to_ascii_lowercase().get(..3)? {
        "mon" | "lun" => Weekday::Monday,
        "tue" | "mar" => Weekday::Tuesday,
        "wed" | "mer" => Weekday::Wednesday,
        "thu" | "jeu" => Weekday::Thursday,
        "fri" | "ven" => Weekday::Friday,
        "sat" | "sam" => Weekday::Saturday,
        "sun" | "dim" => Weekday::Sunday,
        _ => return None,
    })
}

impl QuietHours {
    /// `QUIET_HOURS_START` (21:00), `QUIET_HOURS_END` (09:00), `QUIET_DAYS` (none; e.g.
    /// `sun` or `sat,sun`), `QUIET_HOURS_EXEMPT` (`order_confirmation,ready_for_pickup`),
    /// in the zone `zone` (the shop's).
    pub fn from_env(env: &impl EnvSource, zone: TimeZone) -> Result<Self, ConfigError> {
        let var = |name: &str| env.var(name).filter(|v| !v.trim().is_empty());
        let start = parse_time(
            "QUIET_HOURS_START",
            &var("QUIET_HOURS_START").unwrap_or_else(|| "21:00".into()),
        )?;
        let end = parse_time(
            "QUIET_HOURS_END",
            &var("QUIET_HOURS_END").unwrap_or_else(|| "09:00".into()),
        )?;
        let days = var("QUIET_DAYS")
            .unwrap_or_default()
            .split(',')
            .filter(|day| !day.trim().is_empty())
            .map(|day| {
                parse_day(day).ok_or_else(|| ConfigError::Invalid {
                    name: "QUIET_DAYS",
                    value: day.into(),
                    reason: "not a day such as sun".into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let exempt = var("QUIET_HOURS_EXEMPT")
            .unwrap_or_else(|| "order_confirmation,ready_for_pickup".into())
            .split(',')
            .filter(|kind| !kind.trim().is_empty() && kind.trim() != "none")
            .map(|kind| {
                kind.trim().parse::<Kind>().map_err(|_| ConfigError::Invalid {
                    name: "QUIET_HOURS_EXEMPT",
                    value: kind.into(),
                    reason: "not a message kind such as order_confirmation".into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            zone,
            start,
            end,
            days,
            exempt,
        })
    }

    /// No quiet hours at all.
    pub fn never(zone: TimeZone) -> Self {
        Self {
            zone,
            start: Time::midnight(),
            end: Time::midnight(),
            days: Vec::new(),
            exempt: Vec::new(),
        }
    }

    fn local(&self, at: DateTime<Utc>) -> Option<jiff::ZonedDateTime> {
        Some(
            Timestamp::new(at.timestamp(), 0)
                .ok()?
                .to_zoned_datetime(self.zone.clone()),
        )
    }

    /// Whether `at` falls in quiet hours.
    pub fn is_quiet(&self, at: DateTime<Utc>) -> bool {
        let Some(local) = self.local(at) else { return false };
        if self.days.contains(&local.weekday()) {
            return true;
        }
        self.in_nightly_hours(local.time())
    }

    fn in_nightly_hours(&self, time: Time) -> bool {
        match self.start.cmp(&self.end) {
            std::cmp::Ordering::Equal => false,
            std::cmp::Ordering::Less => self.start <= time && time < self.end,
            std::cmp::Ordering::Greater => time >= self.start || time < self.end,
        }
    }

    /// Whether a message of `kind` waits at local `time` every day (days off aside): a job
    /// that runs at that time only could never send it.
    pub fn holds_every_day_at(&self, kind: Kind, time: Time) -> bool {
        !self.exempt.contains(&kind) && self.in_nightly_hours(time)
    }

    /// `start–end` as configured, for messages.
    pub fn hours(&self) -> String {
        format!("{}–{}", self.start.strftime("%H:%M"), self.end.strftime("%H:%M"))
    }

    /// Whether a message of `kind` waits at `at`.
    pub fn holds(&self, kind: Kind, at: DateTime<Utc>) -> bool {
        !self.exempt.contains(&kind) && self.is_quiet(at)
    }

    /// When a message of `kind` due at `due` may go: `due` itself, or the next opening.
    pub fn next_send_time(&self, kind: Kind, due: DateTime<Utc>) -> DateTime<Utc> {
        if !self.holds(kind, due) {
            return due;
        }
        let Some(local) = self.local(due) else { return due };
        // Quiet hours change state only when the local clock reaches their end or midnight
        // (days off), or when the zone's offset changes: the opening is the first of these
        // instants after `due` that is not quiet, within the next nine days (a week of days
        // off at most, then one more night).
        let horizon = due + TimeDelta::days(9);
        let mut candidates = Vec::new();
        for offset in 0..10i64 {
            let Ok(day) = local.date().checked_add(offset.days()) else {
                continue;
            };
            for time in [self.end, Time::midnight()] {
                // A repeated local time happens twice and both can open; a skipped one
                // never happens, and the offset change below stands for it.
                let reading = self.zone.to_ambiguous_timestamp(day.to_datetime(time));
                candidates.extend(reading.earlier().ok());
                candidates.extend(reading.later().ok());
            }
        }
        if let Ok(from) = Timestamp::new(due.timestamp(), 0) {
            candidates.extend(
                self.zone
                    .following(from)
                    .map(|transition| transition.timestamp())
                    .take_while(|at| at.as_second() <= horizon.timestamp()),
            );
        }
        let best = candidates
            .into_iter()
            .filter_map(|at| DateTime::from_timestamp(at.as_second(), 0))
            .filter(|&candidate| candidate > due && candidate <= horizon && !self.is_quiet(candidate))
            .min();
        let Some(opening) = best else { return due };
        // The night's backlog goes out in the order it fell due: a second after the opening
        // for each hour into the quiet hours (a 12-hour night spreads over 12 seconds).
        let into_quiet = due - self.quiet_since(due);
        opening + TimeDelta::seconds(into_quiet.num_seconds() / 3600)
    }

    /// When the quiet hours that hold `at` began (to the quarter hour, at most 9 days back).
    fn quiet_since(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let step = TimeDelta::minutes(15);
        let mut since = at;
        for _ in 0..(9 * 24 * 4) {
            let earlier = since - step;
            if !self.is_quiet(earlier) {
                break;
            }
            since = earlier;
        }
        since
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::env_of;

    fn paris() -> TimeZone {
        jiff::tz::db().get("Europe/Paris").unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_message_due_at_night_waits_for_nine_o_clock_across_a_dst_change() {
        let quiet = QuietHours::from_env(&env_of(&[]), paris()).unwrap();
        // Saturday 2026-10-24 22:00 in Paris (UTC+2); clocks go back that night.
        let due = at("2026-10-24T20:00:00Z");
        assert!(quiet.holds(Kind::PaymentReminder, due));
        // Sunday 09:00 in Paris is then UTC+1; an hour into the quiet hours, a second after.
        assert_eq!(
            quiet.next_send_time(Kind::PaymentReminder, due),
            at("2026-10-25T08:00:01Z")
        );
        // Spring forward: Saturday 2027-03-27 23:30 (UTC+1) waits for Sunday 09:00 (UTC+2),
        // two and a half hours into the night: two seconds after.
        assert_eq!(
            quiet.next_send_time(Kind::AbandonedCart, at("2027-03-27T22:30:00Z")),
            at("2027-03-28T07:00:02Z")
        );
        // What fell due first goes first.
        let earlier = quiet.next_send_time(Kind::PaymentReminder, at("2026-10-24T20:30:00Z"));
        let later = quiet.next_send_time(Kind::PaymentReminder, at("2026-10-25T03:00:00Z"));
        assert!(earlier < later, "{earlier} {later}");
        // Daytime and exempt kinds go at once.
        assert_eq!(
            quiet.next_send_time(Kind::PaymentReminder, at("2026-10-24T12:00:00Z")),
            at("2026-10-24T12:00:00Z")
        );
        assert!(!quiet.holds(Kind::OrderConfirmation, due));
    }

    #[test]
    fn quiet_hours_ending_in_a_repeated_or_skipped_hour_open_at_the_first_free_instant() {
        let quiet_until = |end: &str, zone: &str| {
            let env = env_of(&[("QUIET_HOURS_START", "21:00"), ("QUIET_HOURS_END", end)]);
            QuietHours::from_env(&env, jiff::tz::db().get(zone).unwrap()).unwrap()
        };
        // Paris, 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:00–02:30 is quiet twice.
        // Due at 02:10 CET, on the second pass: 02:30 CET opens, not the next night's end.
        let paris = quiet_until("02:30", "Europe/Paris");
        let due = at("2026-10-25T01:10:00Z");
        assert!(paris.is_quiet(due));
        assert_eq!(
            paris.next_send_time(Kind::PaymentReminder, due),
            at("2026-10-25T01:30:00Z")
        );
        // New York, 2026-11-01: 02:00 EDT becomes 01:00 EST; due 01:10 EST opens 01:30 EST.
        let new_york = quiet_until("01:30", "America/New_York");
        assert_eq!(
            new_york.next_send_time(Kind::PaymentReminder, at("2026-11-01T06:10:00Z")),
            at("2026-11-01T06:30:00Z")
        );
        // Paris, 2026-03-29: 02:00 CET becomes 03:00 CEST and 02:30 never happens. The
        // quiet hours end with the jump; the night began at 21:00 CET, four hours before the
        // message fell due, so it goes four seconds after.
        assert_eq!(
            paris.next_send_time(Kind::PaymentReminder, at("2026-03-29T00:00:00Z")),
            at("2026-03-29T01:00:04Z")
        );
        // Every opening is a free instant, and the instant before it is quiet.
        for due in ["2026-10-25T01:10:00Z", "2026-03-29T00:00:00Z", "2026-03-28T20:30:00Z"] {
            let opening = paris.next_send_time(Kind::PaymentReminder, at(due));
            assert!(!paris.is_quiet(opening), "{due} opens at {opening}");
        }
    }

    #[test]
    fn days_off_hold_the_whole_day() {
        let quiet = QuietHours::from_env(&env_of(&[("QUIET_DAYS", "sun")]), paris()).unwrap();
        // Saturday 21:30 waits past Sunday to Monday 09:00.
        assert_eq!(
            quiet.next_send_time(Kind::PickupReminder, at("2026-12-05T20:30:00Z")),
            at("2026-12-07T08:00:00Z")
        );
        assert!(quiet.is_quiet(at("2026-12-06T12:00:00Z")));
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        for (name, value) in [
            ("QUIET_HOURS_START", "9pm"),
            ("QUIET_DAYS", "someday"),
            ("QUIET_HOURS_EXEMPT", "everything"),
        ] {
            let error = QuietHours::from_env(&env_of(&[(name, value)]), paris())
                .unwrap_err()
                .to_string();
            assert!(error.contains(name), "{error}");
        }
        let never = QuietHours::from_env(
            &env_of(&[("QUIET_HOURS_START", "00:00"), ("QUIET_HOURS_END", "00:00")]),
            paris(),
        )
        .unwrap();
        assert!(!never.is_quiet(at("2026-12-05T02:00:00Z")));
    }
}
