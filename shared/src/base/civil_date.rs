//! Calendar dates in UTC (proleptic Gregorian), as days since 1970-01-01 and back: what the
//! timestamps of logs, status and zip entries and the dates of DHCP leases and remote-access
//! accounts are made from. Howard Hinnant's algorithms (`days_from_civil`, `civil_from_days`),
//! exact for every `i64` day this agent can meet.

/// The date of day `days` since 1970-01-01: `(year, month 1..=12, day 1..=31)`.
pub fn from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Days since 1970-01-01 of `year`-`month`-`day` (month 1..=12; the day is not checked against
/// the month).
pub fn to_days(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(from_days(0), (1970, 1, 1));
        assert_eq!(from_days(-1), (1969, 12, 31));
        assert_eq!(from_days(19_782), (2024, 2, 29));
        assert_eq!(from_days(10_957), (2000, 1, 1));
        assert_eq!(to_days(2030, 1, 1), 21_915);
        assert_eq!(to_days(1600, 3, 1), -135_080);
    }

    #[test]
    fn round_trip() {
        for d in (-800_000..3_000_000).step_by(97) {
            let (y, m, day) = from_days(d);
            assert!((1..=12).contains(&m) && (1..=31).contains(&day), "{d}: {y}-{m}-{day}");
            assert_eq!(to_days(y, m, day), d, "{y}-{m}-{day}");
        }
    }
}
