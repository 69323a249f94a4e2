//! Which completion times are due, in the shop's calendar.

use chrono::{DateTime, Utc};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// Which completion times are due at a given moment, in the shop's calendar: an order
/// completed on local day D is due from the run of day D + delay, whatever the time of
/// day and however long that day was (DST), and too old after day D + max age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReviewWindow {
    /// Orders completed strictly before this are due.
    pub due_before: DateTime<Utc>,
    /// Orders completed strictly before this are too old to ask.
    pub too_old_before: DateTime<Utc>,
}

pub fn review_window(
    now: DateTime<Utc>,
    zone: &TimeZone,
    delay_days: u32,
    max_age_days: u32,
) -> Result<ReviewWindow, jiff::Error> {
    let today = Timestamp::new(now.timestamp(), 0)?
        .to_zoned_datetime(zone.clone())
        .date();
    let first_not_due_day = today.checked_add((1 - i64::from(delay_days)).days())?;
    let first_day_in_range = today.checked_sub(i64::from(max_age_days).days())?;
    Ok(ReviewWindow {
        due_before: start_of_local_day(first_not_due_day, zone)?,
        too_old_before: start_of_local_day(first_day_in_range, zone)?,
    })
}

/// The first instant of a local day. Midnight falls in a DST gap in some zones (Santiago,
/// Havana); the day then starts at the first instant that exists.
fn start_of_local_day(day: Date, zone: &TimeZone) -> Result<DateTime<Utc>, jiff::Error> {
    let start = day.to_zoned_datetime(zone.clone())?.start_of_day()?.timestamp();
    // jiff's range (years -9999 to 9999) lies inside chrono's: the fallback is never taken.
    Ok(DateTime::from_timestamp(start.as_second(), 0).unwrap_or(DateTime::<Utc>::MIN_UTC))
}
