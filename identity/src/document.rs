//! The identity read from a resident identity card's chip, checked before anything is kept.

use std::fmt;

use cyberid_engine::AgeBracket;

use crate::{Date, Error, ResidentId};

/// Longest name, in characters: the card's field holds far fewer, and transliterated names of
/// minority citizens are the longest seen.
const NAME_MAX_CHARS: usize = 64;

/// Under this age a person enrolls only with a guardian's consent (PIPL art. 31: a minor under
/// 14's personal information is processed with a guardian's consent).
pub const GUARDIAN_CONSENT_BELOW: u16 = 14;

/// From this age a holder is an adult.
pub const ADULT_FROM: u16 = 18;

/// A person's name as the document gives it. Personal data: `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// A name of 1 to 64 characters with no control characters and no surrounding white space.
    pub fn new(text: &str) -> Result<Self, Error> {
        let chars = text.chars().count();
        if !(1..=NAME_MAX_CHARS).contains(&chars)
            || text.chars().any(char::is_control)
            || text.trim() != text
        {
            return Err(Error::Name);
        }
        Ok(Self(text.to_owned()))
    }

    /// The name. Personal data: for the vault only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Name(..)")
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Name::new(&text).map_err(serde::de::Error::custom)
    }
}

/// What an enrollment agent read from the document, as it arrives (each field already in its
/// own type, the whole not yet checked against itself or the date).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentFields {
    /// The holder's name.
    pub name: Name,
    /// The 18-character resident identity number.
    pub resident_id: ResidentId,
    /// The birth date printed on the card.
    pub birth_date: Date,
    /// First day of validity.
    pub valid_from: Date,
    /// Last day of validity; absent for a long-term (长期) card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Date>,
}

/// A document whose fields agree with each other and that is valid on the day it was checked.
/// Only [`IdentityDocument::check`] makes one, so holding one means the checks passed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "DocumentFields", into = "DocumentFields")]
pub struct IdentityDocument {
    fields: DocumentFields,
}

impl IdentityDocument {
    /// Checks the fields against each other and against `today`: the birth date is the one
    /// in the number and not in the future, and the document is valid today.
    pub fn check(fields: DocumentFields, today: Date) -> Result<Self, Error> {
        let document = Self::consistent(fields)?;
        let fields = &document.fields;
        if fields.birth_date > today {
            return Err(Error::BornInFuture);
        }
        if fields.valid_from > today {
            return Err(Error::DocumentNotYetValid);
        }
        if fields.valid_until.is_some_and(|until| until < today) {
            return Err(Error::DocumentExpired);
        }
        Ok(document)
    }

    /// The checks that do not depend on the day: what a record read back from the vault must
    /// still satisfy, although its document may have expired since.
    fn consistent(fields: DocumentFields) -> Result<Self, Error> {
        if fields.birth_date != fields.resident_id.birth_date() {
            return Err(Error::BirthDateMismatch);
        }
        if fields
            .valid_until
            .is_some_and(|until| until < fields.valid_from)
        {
            return Err(Error::DocumentValidity);
        }
        Ok(Self { fields })
    }

    /// The fields.
    pub fn fields(&self) -> &DocumentFields {
        &self.fields
    }

    /// The resident identity number.
    pub fn resident_id(&self) -> &ResidentId {
        &self.fields.resident_id
    }

    /// Whole years of age on `today`.
    pub fn age_on(&self, today: Date) -> u16 {
        self.fields.birth_date.age_on(today)
    }

    /// The age bracket on `today`: computed at each issue, so a holder becomes an adult on
    /// their 18th birthday without any update.
    pub fn age_bracket(&self, today: Date) -> AgeBracket {
        if self.age_on(today) >= ADULT_FROM {
            AgeBracket::Adult
        } else {
            AgeBracket::Minor
        }
    }

    /// Whether enrolling this person on `today` needs a guardian's consent.
    pub fn needs_guardian(&self, today: Date) -> bool {
        self.age_on(today) < GUARDIAN_CONSENT_BELOW
    }
}

impl TryFrom<DocumentFields> for IdentityDocument {
    type Error = Error;

    fn try_from(fields: DocumentFields) -> Result<Self, Error> {
        Self::consistent(fields)
    }
}

impl From<IdentityDocument> for DocumentFields {
    fn from(document: IdentityDocument) -> Self {
        document.fields
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::resident_id::tests::number;

    /// Fields for a person born on `birth` (YYYYMMDD) holding a long-term card.
    pub(crate) fn fields(name: &str, birth: &str) -> DocumentFields {
        let resident_id = number("110105", birth, "123").parse().unwrap();
        let birth_date: Date = format!("{}-{}-{}", &birth[..4], &birth[4..6], &birth[6..])
            .parse()
            .unwrap();
        DocumentFields {
            name: Name::new(name).unwrap(),
            resident_id,
            birth_date,
            valid_from: Date::new(2020, 1, 1).unwrap(),
            valid_until: None,
        }
    }

    fn day(text: &str) -> Date {
        text.parse().unwrap()
    }

    #[test]
    fn names() {
        assert!(Name::new("张伟").is_ok());
        assert!(Name::new("阿卜杜热依木·买买提").is_ok());
        for bad in ["", " 张伟", "张伟 ", "张\n伟", &"名".repeat(65)] {
            assert_eq!(Name::new(bad), Err(Error::Name), "{bad:?}");
        }
        assert_eq!(format!("{:?}", Name::new("张伟").unwrap()), "Name(..)");
    }

    #[test]
    fn each_inconsistency_has_its_error() {
        let today = day("2026-12-01");
        let good = fields("张伟", "19900315");
        assert!(IdentityDocument::check(good.clone(), today).is_ok());

        let mut mismatch = good.clone();
        mismatch.birth_date = day("1990-03-16");
        assert_eq!(
            IdentityDocument::check(mismatch, today),
            Err(Error::BirthDateMismatch)
        );

        let unborn = fields("张伟", "20270101");
        assert_eq!(
            IdentityDocument::check(unborn, today),
            Err(Error::BornInFuture)
        );

        let mut expired = good.clone();
        expired.valid_until = Some(day("2026-11-30"));
        assert_eq!(
            IdentityDocument::check(expired, today),
            Err(Error::DocumentExpired)
        );

        let mut last_day = good.clone();
        last_day.valid_until = Some(today);
        assert!(
            IdentityDocument::check(last_day, today).is_ok(),
            "valid through its last day"
        );

        let mut early = good.clone();
        early.valid_from = day("2026-12-02");
        early.valid_until = Some(day("2036-12-02"));
        assert_eq!(
            IdentityDocument::check(early, today),
            Err(Error::DocumentNotYetValid)
        );

        let mut backwards = good;
        backwards.valid_until = Some(day("2019-01-01"));
        assert_eq!(
            IdentityDocument::check(backwards, today),
            Err(Error::DocumentValidity)
        );
    }

    #[test]
    fn age_brackets_follow_the_calendar() {
        let child = IdentityDocument::check(fields("小明", "20120301"), day("2026-02-28")).unwrap();
        assert!(child.needs_guardian(day("2026-02-28")));
        assert!(!child.needs_guardian(day("2026-03-01")));
        assert_eq!(child.age_bracket(day("2030-02-28")), AgeBracket::Minor);
        assert_eq!(child.age_bracket(day("2030-03-01")), AgeBracket::Adult);
    }

    #[test]
    fn a_request_body_is_read_strictly() {
        let json = serde_json::json!({
            "name": "张伟", "resident_id": "11010519491231002X", "birth_date": "1949-12-31",
            "valid_from": "2015-06-01", "valid_until": "2035-06-01",
        });
        let fields: DocumentFields = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(fields.valid_until, Some(day("2035-06-01")));
        let mut extra = json.clone();
        extra["sex"] = "male".into();
        assert!(serde_json::from_value::<DocumentFields>(extra).is_err());
        let mut bad = json;
        bad["resident_id"] = "110105194912310021".into();
        let error = serde_json::from_value::<DocumentFields>(bad)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("check character") && !error.contains("110105"),
            "{error}"
        );
    }
}
