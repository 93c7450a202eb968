//! Attributes beyond the result: what a platform may be told about a holder when an authority
//! entitled it and the holder consented, and how the two are written down.
//!
//! The engine only carries sets of them: a certificate's signed claims say which attributes
//! the holder consented to disclose to its audience, a verification's [`Context`](crate::Context)
//! says which ones its answer will carry if valid, and the log entry records that set (never
//! a value). The values themselves stay sealed in the issuing side's vault until a valid answer
//! needs them.

use std::fmt;

use crate::Error;

/// One attribute of a holder's identity that a platform can be entitled to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    /// The name on the resident identity card.
    Name,
    /// The 18-character resident identity number.
    ResidentId,
}

impl Attribute {
    /// Every attribute, in the order of their bits.
    pub const ALL: [Attribute; 2] = [Attribute::Name, Attribute::ResidentId];

    /// Its bit in an [`Attributes`] set (and in the log entry's `disclosed` field).
    const fn bit(self) -> u8 {
        match self {
            Attribute::Name => 1,
            Attribute::ResidentId => 2,
        }
    }

    /// Its stable code, as the API and the command line spell it.
    pub fn code(self) -> &'static str {
        match self {
            Attribute::Name => "name",
            Attribute::ResidentId => "resident_id",
        }
    }
}

impl std::str::FromStr for Attribute {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Attribute::ALL
            .into_iter()
            .find(|attribute| attribute.code() == text)
            .ok_or(Error::Malformed("an attribute is `name` or `resident_id`"))
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A set of [`Attribute`]s, one bit each: bit 0 name, bit 1 resident id. No other bit is ever
/// set, so every byte this type hands out is a valid encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Attributes(u8);

impl Attributes {
    /// The empty set: the result only.
    pub const NONE: Attributes = Attributes(0);
    const MASK: u8 = 0b11;

    /// The set of these attributes.
    pub fn of(attributes: &[Attribute]) -> Self {
        Self(attributes.iter().fold(0, |bits, a| bits | a.bit()))
    }

    /// The set these bits encode; `None` when a bit names no attribute.
    pub fn from_bits(bits: u8) -> Option<Self> {
        (bits & !Self::MASK == 0).then_some(Self(bits))
    }

    /// Its bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// Whether `attribute` is in the set.
    pub fn contains(self, attribute: Attribute) -> bool {
        self.0 & attribute.bit() != 0
    }

    /// The attributes in both sets.
    #[must_use]
    pub fn intersection(self, other: Attributes) -> Attributes {
        Self(self.0 & other.0)
    }

    /// The attributes in either set.
    #[must_use]
    pub fn union(self, other: Attributes) -> Attributes {
        Self(self.0 | other.0)
    }

    /// Whether every attribute of `self` is in `other`.
    pub fn is_subset(self, other: Attributes) -> bool {
        self.0 & !other.0 == 0
    }

    /// The attributes, in bit order.
    pub fn iter(self) -> impl Iterator<Item = Attribute> {
        Attribute::ALL
            .into_iter()
            .filter(move |a| self.contains(*a))
    }
}

impl FromIterator<Attribute> for Attributes {
    fn from_iter<I: IntoIterator<Item = Attribute>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |bits, a| bits | a.bit()))
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// As a list of codes: `["name", "resident_id"]`.
impl serde::Serialize for Attributes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Attributes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<Attribute>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_encode_one_bit_per_attribute_and_refuse_unknown_bits() {
        let both = Attributes::of(&Attribute::ALL);
        assert_eq!(both.bits(), 0b11);
        assert_eq!(Attributes::of(&[Attribute::ResidentId]).bits(), 0b10);
        for bits in 0..=u8::MAX {
            assert_eq!(
                Attributes::from_bits(bits).is_some(),
                bits <= 0b11,
                "{bits}"
            );
        }
        let name = Attributes::of(&[Attribute::Name]);
        assert!(name.is_subset(both) && !both.is_subset(name));
        assert_eq!(both.intersection(name), name);
        assert_eq!(name.union(Attributes::NONE), name);
        assert_eq!(
            serde_json::to_value(both).unwrap(),
            serde_json::json!(["name", "resident_id"])
        );
        let parsed: Attributes = serde_json::from_str(r#"["resident_id","name"]"#).unwrap();
        assert_eq!(parsed, both);
        assert!(serde_json::from_str::<Attributes>(r#"["birth_date"]"#).is_err());
        assert_eq!(
            "resident_id".parse::<Attribute>().unwrap(),
            Attribute::ResidentId
        );
    }
}
