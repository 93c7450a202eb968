//! Calendar dates (proleptic Gregorian, China Standard Time for "today").
//!
//! Ages and document validity are counted in whole calendar days in China Standard Time
//! (UTC+8, no daylight saving), the time zone of the documents and of the law that counts a
//! person's age: someone born on 2012-03-01 is 14 from 2026-03-01 00:00 CST, whatever the
//! server's time zone.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// China Standard Time's offset from UTC, seconds.
const CST_OFFSET: i64 = 8 * 3600;

/// A calendar date from 1800-01-01 to 9999-12-31.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    // Field order is comparison order.
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// The date, if it exists in the calendar and lies within the supported range.
    pub fn new(year: u16, month: u8, day: u8) -> Result<Self, Error> {
        if !(1800..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(Error::Date);
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(Error::Date);
        }
        Ok(Self { year, month, day })
    }

    /// The date in China Standard Time at `unix` seconds.
    pub fn at(unix: u64) -> Self {
        let days = (unix as i64 + CST_OFFSET).div_euclid(86_400);
        Self::from_days(days)
    }

    /// The year.
    pub fn year(self) -> u16 {
        self.year
    }

    /// The month, 1 to 12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, 1 to 31.
    pub fn day(self) -> u8 {
        self.day
    }

    /// Whole years of age on `today` of a person born on `self`; 0 before the first birthday
    /// (and for a birth date after `today`). Someone born on 29 February becomes a year older
    /// on 1 March in common years, as Chinese civil practice counts it.
    pub fn age_on(self, today: Date) -> u16 {
        if today < self {
            return 0;
        }
        let mut age = today.year - self.year;
        if (today.month, today.day) < (self.month, self.day) {
            age -= 1;
        }
        age
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    fn to_days(self) -> i64 {
        let (month, day) = (i64::from(self.month), i64::from(self.day));
        let year = i64::from(self.year) - i64::from(month <= 2);
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    /// The date `days` after 1970-01-01 (`civil_from_days`), clamped to the supported range.
    fn from_days(days: i64) -> Self {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let mp = (5 * day_of_year + 2) / 153;
        let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        match u16::try_from(year) {
            Ok(year) if (1800..=9999).contains(&year) => Self { year, month, day },
            _ if year < 1800 => Self {
                year: 1800,
                month: 1,
                day: 1,
            },
            _ => Self {
                year: 9999,
                month: 12,
                day: 31,
            },
        }
    }

    /// Unix seconds of this date's first second, China Standard Time.
    pub fn start_unix(self) -> i64 {
        self.to_days() * 86_400 - CST_OFFSET
    }

    /// Reads the 8 digits `YYYYMMDD` (the form inside a resident identity number).
    pub(crate) fn from_compact(digits: &[u8]) -> Result<Self, Error> {
        if digits.len() != 8 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(Error::Date);
        }
        let number = |range: std::ops::Range<usize>| {
            digits[range]
                .iter()
                .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'))
        };
        Self::new(number(0..4), number(4..6) as u8, number(6..8) as u8)
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl FromStr for Date {
    type Err = Error;

    /// Reads `YYYY-MM-DD` (ISO 8601 calendar date, extended form).
    fn from_str(text: &str) -> Result<Self, Error> {
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(Error::Date);
        }
        let mut compact = [0u8; 8];
        compact[..4].copy_from_slice(&bytes[..4]);
        compact[4..6].copy_from_slice(&bytes[5..7]);
        compact[6..].copy_from_slice(&bytes[8..]);
        Self::from_compact(&compact)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Date({self})")
    }
}

impl serde::Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn calendar_rules() {
        assert!(Date::new(2024, 2, 29).is_ok());
        assert_eq!(Date::new(2023, 2, 29), Err(Error::Date));
        assert_eq!(Date::new(1900, 2, 29), Err(Error::Date));
        assert!(Date::new(2000, 2, 29).is_ok());
        assert_eq!(Date::new(2024, 4, 31), Err(Error::Date));
        assert_eq!(Date::new(2024, 13, 1), Err(Error::Date));
        assert_eq!(Date::new(1799, 12, 31), Err(Error::Date));
        for bad in [
            "2024-2-29",
            "20240229",
            "2024-02-30",
            "2024/02/01",
            "２０２４-01-01",
        ] {
            assert_eq!(bad.parse::<Date>(), Err(Error::Date), "{bad}");
        }
        assert_eq!(
            "2024-02-29".parse::<Date>().unwrap(),
            Date::new(2024, 2, 29).unwrap()
        );
    }

    #[test]
    fn today_is_counted_in_china_standard_time() {
        // 2026-02-28T16:00:00Z is 2026-03-01 00:00 in Beijing.
        assert_eq!(Date::at(1_772_294_400).to_string(), "2026-03-01");
        assert_eq!(Date::at(1_772_294_399).to_string(), "2026-02-28");
        assert_eq!(Date::at(0).to_string(), "1970-01-01");
        assert_eq!(Date::new(2026, 3, 1).unwrap().start_unix(), 1_772_294_400);
    }

    #[test]
    fn age_turns_on_the_birthday() {
        let born = Date::new(2012, 3, 1).unwrap();
        assert_eq!(born.age_on(Date::new(2026, 2, 28).unwrap()), 13);
        assert_eq!(born.age_on(Date::new(2026, 3, 1).unwrap()), 14);
        let leap = Date::new(2008, 2, 29).unwrap();
        assert_eq!(leap.age_on(Date::new(2026, 2, 28).unwrap()), 17);
        assert_eq!(leap.age_on(Date::new(2026, 3, 1).unwrap()), 18);
        assert_eq!(born.age_on(Date::new(2000, 1, 1).unwrap()), 0);
    }

    proptest! {
        #[test]
        fn days_round_trip(days in -62_091i64..2_900_000) {
            let date = Date::from_days(days);
            prop_assert_eq!(date.to_days(), days);
            prop_assert_eq!(date.to_string().parse::<Date>().unwrap(), date);
        }
    }
}
