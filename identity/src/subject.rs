//! Pairwise subjects: what a platform learns about *who* verified.
//!
//! A Web Number is lifelong and the same everywhere, so two platforms that both received it
//! could join their records on it: the tracking that critics of a national identifier fear.
//! A platform therefore receives, by default, a subject that is stable for it and unlinkable
//! across platforms (OpenID Connect's pairwise subject identifiers): HMAC-SM3 under a
//! deployment-wide secret over the platform id and the Web Number. Only a platform an authority
//! has entitled to the Web Number itself receives it.
//!
//! 20 characters of the Web Number's alphabet carry 100 bits: among a billion holders of one
//! platform, the chance that two share a subject is about 4·10⁻¹³. Ten characters (50 bits)
//! would collide hundreds of times at that scale, and a deterministic subject cannot be
//! checked for uniqueness the way a drawn Web Number is. The length also keeps the two
//! apart: a 20-character subject is never mistaken for a Web Number.
//!
//! The key is for life: replacing it changes every platform's subject for every holder, which
//! would orphan their accounts. Every node of a deployment holds the same key.

use std::fmt;

use cyberid_engine::{PlatformId, WebNumber};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Serialize, Serializer};
use sm2::elliptic_curve::zeroize::Zeroizing;

use crate::Error;

/// Bytes in a subject key.
pub const SUBJECT_KEY_LEN: usize = 32;
/// Characters in a pairwise subject.
pub const SUBJECT_LEN: usize = 20;
/// Domain separation from every other HMAC-SM3 use in the project.
const DOMAIN: &[u8] = b"cyberid-pairwise-subject-1\0";

/// The deployment's secret key for pairwise subjects. `Debug` shows nothing; zeroed on drop.
#[derive(Clone)]
pub struct SubjectKey {
    bytes: Zeroizing<[u8; SUBJECT_KEY_LEN]>,
    /// HMAC with the key's inner and outer pads absorbed: a subject then costs two SM3
    /// compressions of message, not four (this runs once per valid verdict).
    keyed: Hmac<sm3::Sm3>,
}

impl SubjectKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, Error> {
        let mut key = Zeroizing::new([0u8; SUBJECT_KEY_LEN]);
        getrandom::fill(key.as_mut()).map_err(|_| Error::Random)?;
        Self::from_bytes(key.as_ref())
    }

    /// A key from its bytes (read from the owner-only key file).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let key: [u8; SUBJECT_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::VaultFormat("a subject key is 32 bytes"))?;
        let keyed =
            <Hmac<sm3::Sm3> as KeyInit>::new_from_slice(&key).expect("HMAC takes any key length");
        Ok(Self {
            bytes: Zeroizing::new(key),
            keyed,
        })
    }

    /// The key's bytes, for writing the owner-only key file.
    pub fn expose(&self) -> &[u8; SUBJECT_KEY_LEN] {
        &self.bytes
    }

    /// The holder's subject for this platform.
    pub fn subject(&self, platform: &PlatformId, holder: &WebNumber) -> PairwiseSubject {
        let mut mac = self.keyed.clone();
        mac.update(DOMAIN);
        // A platform id is 1 to 16 bytes: its length byte makes the input unambiguous.
        let platform = platform.as_str().as_bytes();
        mac.update(&[platform.len() as u8]);
        mac.update(platform);
        mac.update(holder.as_str().as_bytes());
        let digest = mac.finalize().into_bytes();
        // The first 100 bits, five at a time, most significant first.
        let mut bits = u128::from_be_bytes(digest[..16].try_into().expect("32-byte digest"));
        bits >>= 128 - 5 * SUBJECT_LEN;
        let mut text = [0u8; SUBJECT_LEN];
        for (position, slot) in text.iter_mut().enumerate() {
            let shift = 5 * (SUBJECT_LEN - 1 - position);
            *slot = WebNumber::ALPHABET[((bits >> shift) & 31) as usize];
        }
        PairwiseSubject(text)
    }
}

impl fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectKey(..)")
    }
}

/// A holder's identifier for one platform: 20 characters of the Web Number's alphabet.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PairwiseSubject([u8; SUBJECT_LEN]);

impl PairwiseSubject {
    /// The text form.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("the alphabet is ASCII")
    }
}

impl fmt::Display for PairwiseSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for PairwiseSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PairwiseSubject({})", self.as_str())
    }
}

impl Serialize for PairwiseSubject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(id: &str) -> PlatformId {
        id.parse().unwrap()
    }

    #[test]
    fn stable_per_platform_and_different_across_platforms_and_keys() {
        let key = SubjectKey::generate().unwrap();
        let holder = WebNumber::generate().unwrap();
        let shop = key.subject(&platform("shop.example"), &holder);
        assert_eq!(shop, key.subject(&platform("shop.example"), &holder));
        assert_ne!(shop, key.subject(&platform("bank.example"), &holder));
        assert_ne!(
            shop,
            key.subject(&platform("shop.example"), &WebNumber::generate().unwrap())
        );
        let other = SubjectKey::generate().unwrap();
        assert_ne!(shop, other.subject(&platform("shop.example"), &holder));
        assert_eq!(shop.as_str().len(), SUBJECT_LEN);
        assert!(!shop.as_str().contains(holder.as_str()));
    }

    #[test]
    fn a_reloaded_key_gives_the_same_subjects() {
        let key = SubjectKey::generate().unwrap();
        let again = SubjectKey::from_bytes(key.expose()).unwrap();
        let holder = WebNumber::generate().unwrap();
        let shop = platform("shop.example");
        assert_eq!(key.subject(&shop, &holder), again.subject(&shop, &holder));
        assert!(SubjectKey::from_bytes(&[0; 31]).is_err());
    }

    #[test]
    fn the_subject_is_hmac_sm3_over_the_tagged_platform_and_number() {
        // The vectors of protocol.md §11, computed independently with Python's hmac over
        // OpenSSL's SM3: hmac.new(bytes([2] * 32), b"cyberid-pairwise-subject-1\x00" +
        // bytes([len(platform)]) + platform + web_number, "sm3"), first 100 bits in base 32.
        let key = SubjectKey::from_bytes(&[2; 32]).unwrap();
        let holder: WebNumber = "7K3MQ9XZ2P".parse().unwrap();
        let zeros: WebNumber = "0000000000".parse().unwrap();
        for (platform_id, holder, expected) in [
            ("shop.example", holder, "R78NAE04T4HX1G3NG776"),
            ("bank.example", holder, "MX9R0AV8Z6HQSD1HVHD4"),
            ("shop.example", zeros, "Q3SJGTTK5QF5334BEYNF"),
        ] {
            assert_eq!(
                key.subject(&platform(platform_id), &holder).as_str(),
                expected
            );
        }
    }

    #[test]
    fn debug_shows_no_key() {
        let key = SubjectKey::from_bytes(&[2; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "SubjectKey(..)");
    }
}
