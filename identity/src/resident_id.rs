//! The 18-character citizen identity number of GB 11643-1999.
//!
//! ```text
//! 110105 19491231 002 X
//! region birth    seq check (ISO 7064 MOD 11-2 over the first 17 digits; 10 is written X)
//! ```
//!
//! The number is personal data: this type has no `Display`, its `Debug` shows nothing of it,
//! and the only ways to its text are [`ResidentId::expose`] (for the vault and the blind index)
//! and serde (for the enrollment request body).

use std::fmt;
use std::str::FromStr;

use crate::{Date, Error};

/// Characters in a resident identity number.
pub const RESIDENT_ID_LEN: usize = 18;

/// ISO 7064 MOD 11-2 weights, 2^(17-i) mod 11 for position i.
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

/// A resident identity number whose form, birth date and check character are valid.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResidentId {
    /// ASCII digits, the last possibly `X` (always upper case).
    text: [u8; RESIDENT_ID_LEN],
    birth_date: Date,
}

impl ResidentId {
    /// The birth date the number encodes.
    pub fn birth_date(&self) -> Date {
        self.birth_date
    }

    /// The number's text, upper case. Personal data: for the vault and the blind index only.
    pub fn expose(&self) -> &str {
        // Only ASCII digits and `X` are ever stored.
        std::str::from_utf8(&self.text).unwrap_or_default()
    }

    /// The check character for 17 digits.
    pub fn check_character(digits: &[u8; 17]) -> u8 {
        let sum: u32 = digits
            .iter()
            .zip(WEIGHTS)
            .map(|(digit, weight)| u32::from(digit - b'0') * weight)
            .sum();
        match (12 - sum % 11) % 11 {
            10 => b'X',
            check => b'0' + check as u8,
        }
    }
}

impl FromStr for ResidentId {
    type Err = Error;

    /// Reads 17 digits and a check character (`x` is accepted for `X`). The region code is
    /// checked for form only (first digit 1 to 9): the list of codes changes with the map.
    fn from_str(text: &str) -> Result<Self, Error> {
        let bytes = text.as_bytes();
        if bytes.len() != RESIDENT_ID_LEN
            || !bytes[..17].iter().all(u8::is_ascii_digit)
            || bytes[0] == b'0'
        {
            return Err(Error::ResidentIdFormat);
        }
        let check = bytes[17].to_ascii_uppercase();
        if !(check.is_ascii_digit() || check == b'X') {
            return Err(Error::ResidentIdFormat);
        }
        let birth_date =
            Date::from_compact(&bytes[6..14]).map_err(|_| Error::ResidentIdBirthDate)?;
        let mut digits = [0u8; 17];
        digits.copy_from_slice(&bytes[..17]);
        if Self::check_character(&digits) != check {
            return Err(Error::ResidentIdCheck);
        }
        let mut stored = [0u8; RESIDENT_ID_LEN];
        stored[..17].copy_from_slice(&digits);
        stored[17] = check;
        Ok(Self {
            text: stored,
            birth_date,
        })
    }
}

impl fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResidentId(..)")
    }
}

impl serde::Serialize for ResidentId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> serde::Deserialize<'de> for ResidentId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        // The error names the rule, never the text.
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A valid number for a birth date and sequence, for tests.
    pub(crate) fn number(region: &str, birth: &str, sequence: &str) -> String {
        let mut digits = [0u8; 17];
        digits.copy_from_slice(format!("{region}{birth}{sequence}").as_bytes());
        let check = ResidentId::check_character(&digits) as char;
        format!("{region}{birth}{sequence}{check}")
    }

    #[test]
    fn the_standards_examples_are_valid() {
        // GB 11643-1999's own examples.
        let x: ResidentId = "11010519491231002X".parse().unwrap();
        assert_eq!(x.birth_date(), Date::new(1949, 12, 31).unwrap());
        assert_eq!(x.expose(), "11010519491231002X");
        let lower: ResidentId = "11010519491231002x".parse().unwrap();
        assert_eq!(lower, x, "a lower-case x is the same number");
        let digit: ResidentId = "440524188001010014".parse().unwrap();
        assert_eq!(digit.birth_date(), Date::new(1880, 1, 1).unwrap());
    }

    #[test]
    fn each_rule_has_its_error() {
        assert_eq!(
            "11010519491231002".parse::<ResidentId>(),
            Err(Error::ResidentIdFormat)
        );
        assert_eq!(
            "11010519491231002XX".parse::<ResidentId>(),
            Err(Error::ResidentIdFormat)
        );
        assert_eq!(
            "01010519491231002X".parse::<ResidentId>(),
            Err(Error::ResidentIdFormat)
        );
        assert_eq!(
            "1101051949123100AX".parse::<ResidentId>(),
            Err(Error::ResidentIdFormat)
        );
        assert_eq!(
            "110105194912310021".parse::<ResidentId>(),
            Err(Error::ResidentIdCheck)
        );
        assert_eq!(
            "11010519491231002Y".parse::<ResidentId>(),
            Err(Error::ResidentIdFormat)
        );
        let bad_date = number("110105", "20230229", "001");
        assert_eq!(
            bad_date.parse::<ResidentId>(),
            Err(Error::ResidentIdBirthDate)
        );
    }

    #[test]
    fn debug_shows_nothing_of_the_number() {
        let id: ResidentId = "11010519491231002X".parse().unwrap();
        let shown = format!("{id:?}");
        assert!(
            !shown.contains("110105") && !shown.contains("1949"),
            "{shown}"
        );
        let error = "110105194912310021"
            .parse::<ResidentId>()
            .unwrap_err()
            .to_string();
        assert!(!error.contains("110105"), "{error}");
    }

    proptest! {
        /// Any single changed digit is caught by the check character (MOD 11-2 detects every
        /// single substitution).
        #[test]
        fn a_single_changed_digit_is_detected(
            day in 1u8..=28, sequence in 0u16..1000, position in 0usize..17, delta in 1u8..10,
        ) {
            let text = number("320102", &format!("199001{day:02}"), &format!("{sequence:03}"));
            prop_assert!(text.parse::<ResidentId>().is_ok());
            let mut bytes = text.into_bytes();
            bytes[position] = b'0' + (bytes[position] - b'0' + delta) % 10;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(changed.parse::<ResidentId>().is_err());
        }
    }
}
