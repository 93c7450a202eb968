//! The Web Number (网号): a lifelong pseudonymous identifier.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Characters in a Web Number.
pub(crate) const WEB_NUMBER_LEN: usize = 10;

/// Crockford's base-32 alphabet: digits and upper-case letters without I, L, O and U.
///
/// I, L and O are read as 1 and 0 on paper, on screens and over the phone; U is dropped so that
/// no random draw spells common words. 32 symbols make each character exactly 5 bits, so a
/// random byte masked to 5 bits picks a symbol without bias, and 10 characters carry 50 bits.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A Web Number: 10 characters drawn uniformly from a CSPRNG over Crockford's base-32 alphabet.
///
/// It contains no personal data, so it can travel in certificates and verification results.
/// Parsing accepts either case and rejects everything else; [`Display`](fmt::Display) and serde
/// give the canonical upper-case form.
///
/// ```
/// use cyberid_engine::WebNumber;
///
/// let number: WebNumber = "7k3mq9xz2p".parse()?;
/// assert_eq!(number.to_string(), "7K3MQ9XZ2P");
/// assert!("7K3MQ9XZ2O".parse::<WebNumber>().is_err()); // O is not in the alphabet
/// # Ok::<(), cyberid_engine::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WebNumber([u8; WEB_NUMBER_LEN]);

impl WebNumber {
    /// The alphabet, for identifiers that should read like a Web Number (pairwise subjects).
    pub const ALPHABET: &'static [u8; 32] = ALPHABET;

    /// Draws a new Web Number from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, Error> {
        let mut random = [0u8; WEB_NUMBER_LEN];
        getrandom::fill(&mut random).map_err(|_| Error::Random)?;
        Ok(Self(random.map(|byte| ALPHABET[usize::from(byte & 31)])))
    }

    /// Parses a Web Number, normalising lower case to upper case.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bytes = text.as_bytes();
        let chars = text.chars().count();
        if chars != WEB_NUMBER_LEN || bytes.len() != WEB_NUMBER_LEN {
            return Err(Error::WebNumberLength(chars));
        }
        let mut canonical = [0u8; WEB_NUMBER_LEN];
        for (position, (&byte, slot)) in bytes.iter().zip(&mut canonical).enumerate() {
            let upper = byte.to_ascii_uppercase();
            if !ALPHABET.contains(&upper) {
                let hint = match upper {
                    b'I' | b'L' => ": I and L are not used, did you mean 1?",
                    b'O' => ": O is not used, did you mean 0?",
                    b'U' => ": U is not used, did you mean V?",
                    _ => "",
                };
                return Err(Error::WebNumberCharacter { position, hint });
            }
            *slot = upper;
        }
        Ok(Self(canonical))
    }

    /// Reads the canonical 10-byte form used inside certificates: upper case only.
    pub(crate) fn from_canonical_bytes(bytes: &[u8; WEB_NUMBER_LEN]) -> Option<Self> {
        bytes
            .iter()
            .all(|byte| ALPHABET.contains(byte))
            .then_some(Self(*bytes))
    }

    /// The canonical form as ASCII bytes.
    pub fn as_bytes(&self) -> &[u8; WEB_NUMBER_LEN] {
        &self.0
    }

    /// The canonical form.
    pub fn as_str(&self) -> &str {
        // Every byte is from ALPHABET, which is ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl FromStr for WebNumber {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Self::parse(text)
    }
}

impl fmt::Display for WebNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for WebNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebNumber({})", self.as_str())
    }
}

impl serde::Serialize for WebNumber {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for WebNumber {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_numbers_are_canonical_and_distinct() {
        let a = WebNumber::generate().unwrap();
        let b = WebNumber::generate().unwrap();
        assert_ne!(a, b, "50 random bits collided");
        assert_eq!(WebNumber::parse(a.as_str()).unwrap(), a);
        assert!(WebNumber::from_canonical_bytes(a.as_bytes()).is_some());
    }

    #[test]
    fn parsing_normalises_case() {
        let number = WebNumber::parse("abcdefghjk").unwrap();
        assert_eq!(number.as_str(), "ABCDEFGHJK");
    }

    #[test]
    fn parsing_rejects_wrong_lengths_precisely() {
        assert_eq!(WebNumber::parse(""), Err(Error::WebNumberLength(0)));
        assert_eq!(
            WebNumber::parse("ABCDEFGHJ"),
            Err(Error::WebNumberLength(9))
        );
        assert_eq!(
            WebNumber::parse("ABCDEFGHJKM"),
            Err(Error::WebNumberLength(11))
        );
        // Ten characters but more than ten bytes.
        assert_eq!(
            WebNumber::parse("ABCDEFGHJ网"),
            Err(Error::WebNumberLength(10))
        );
    }

    #[test]
    fn parsing_names_the_look_alike() {
        let error = WebNumber::parse("ABCDEFGHJO").unwrap_err();
        assert_eq!(
            error,
            Error::WebNumberCharacter {
                position: 9,
                hint: ": O is not used, did you mean 0?"
            }
        );
        for bad in [
            "ABCDEFGHJI",
            "ABCDEFGHJl",
            "ABCDEFGHJu",
            "ABCDEFGHJ-",
            "ABCDEFGHJ ",
        ] {
            assert_eq!(
                WebNumber::parse(bad).unwrap_err().code(),
                "web_number_character"
            );
        }
    }

    #[test]
    fn canonical_bytes_must_be_upper_case() {
        assert!(WebNumber::from_canonical_bytes(b"abcdefghjk").is_none());
        assert!(WebNumber::from_canonical_bytes(b"ABCDEFGHJK").is_some());
    }

    #[test]
    fn serde_uses_the_canonical_text() {
        let number = WebNumber::parse("7k3mq9xz2p").unwrap();
        let json = serde_json::to_string(&number).unwrap();
        assert_eq!(json, "\"7K3MQ9XZ2P\"");
        assert_eq!(serde_json::from_str::<WebNumber>(&json).unwrap(), number);
        assert!(serde_json::from_str::<WebNumber>("\"7K3MQ9XZ2\"").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepts_only_the_alphabet(text in ".{0,16}") {
            if let Ok(number) = WebNumber::parse(&text) {
                prop_assert_eq!(number.as_str(), text.to_ascii_uppercase());
            }
        }

        #[test]
        fn display_round_trips(indices in proptest::array::uniform10(0usize..32)) {
            let number = WebNumber(indices.map(|i| ALPHABET[i]));
            prop_assert_eq!(WebNumber::parse(&number.to_string()).unwrap(), number);
        }
    }
}
