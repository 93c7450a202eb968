//! Platform ids: who a certificate is meant for and who is asking.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Longest platform id, and the width of the audience field in a certificate (an id,
/// NUL-padded).
pub const PLATFORM_ID_LEN: usize = 16;

/// The id of an internet platform that verifies certificates: 1 to 16 characters from
/// `a-z`, `0-9`, `.`, `_` and `-`.
///
/// It names the audience a certificate may be restricted to, and the caller in a verification
/// context. Ids are case-sensitive and lower case only, so that one platform has one spelling.
///
/// ```
/// use cyberid_engine::PlatformId;
///
/// let platform: PlatformId = "shop.example".parse()?;
/// assert_eq!(platform.as_str(), "shop.example");
/// assert!("Shop".parse::<PlatformId>().is_err());
/// # Ok::<(), cyberid_engine::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlatformId {
    /// Zero-padded; the padding is what the certificate's audience field carries.
    padded: [u8; PLATFORM_ID_LEN],
    len: u8,
}

impl PlatformId {
    /// Parses and validates a platform id.
    pub fn new(id: &str) -> Result<Self, Error> {
        let bytes = id.as_bytes();
        if bytes.is_empty() || bytes.len() > PLATFORM_ID_LEN || !bytes.iter().all(is_id_byte) {
            return Err(Error::PlatformId);
        }
        let mut padded = [0u8; PLATFORM_ID_LEN];
        padded[..bytes.len()].copy_from_slice(bytes);
        Ok(Self {
            padded,
            len: bytes.len() as u8,
        })
    }

    /// Reads a certificate's audience field: all zero means no audience; otherwise an id
    /// followed only by zero padding. Other fixed-layout forms that name a platform (a
    /// holder's signed requests, store keys) use the same 16 bytes.
    pub fn from_audience_field(field: &[u8; PLATFORM_ID_LEN]) -> Result<Option<Self>, Error> {
        let len = field
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(PLATFORM_ID_LEN);
        if field[len..].iter().any(|&b| b != 0) {
            return Err(Error::Malformed(
                "audience has bytes after its zero padding",
            ));
        }
        if len == 0 {
            return Ok(None);
        }
        if !field[..len].iter().all(is_id_byte) {
            return Err(Error::Malformed("audience is not a valid platform id"));
        }
        Ok(Some(Self {
            padded: *field,
            len: len as u8,
        }))
    }

    /// The id in 16 bytes, NUL-padded: a certificate's audience field.
    pub fn audience_field(&self) -> &[u8; PLATFORM_ID_LEN] {
        &self.padded
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        // Validated as ASCII on construction.
        std::str::from_utf8(&self.padded[..usize::from(self.len)]).unwrap_or_default()
    }
}

fn is_id_byte(byte: &u8) -> bool {
    matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-')
}

impl FromStr for PlatformId {
    type Err = Error;

    fn from_str(id: &str) -> Result<Self, Error> {
        Self::new(id)
    }
}

impl fmt::Display for PlatformId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for PlatformId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlatformId({})", self.as_str())
    }
}

impl serde::Serialize for PlatformId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for PlatformId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids_and_round_trips_the_field() {
        for id in ["a", "shop.example", "0123456789abcdef", "a_b-c.d"] {
            let platform = PlatformId::new(id).unwrap();
            assert_eq!(platform.as_str(), id);
            let back = PlatformId::from_audience_field(platform.audience_field()).unwrap();
            assert_eq!(back, Some(platform));
        }
    }

    #[test]
    fn rejects_invalid_ids() {
        for id in ["", "UPPER", "has space", "0123456789abcdefg", "网", "a\0"] {
            assert_eq!(PlatformId::new(id), Err(Error::PlatformId), "{id:?}");
        }
    }

    #[test]
    fn audience_field_must_be_canonical() {
        assert_eq!(PlatformId::from_audience_field(&[0; 16]), Ok(None));
        let mut gap = [0u8; 16];
        gap[0] = b'a';
        gap[2] = b'b';
        assert!(PlatformId::from_audience_field(&gap).is_err());
        let mut upper = [0u8; 16];
        upper[0] = b'A';
        assert!(PlatformId::from_audience_field(&upper).is_err());
    }
}
