//! The blind index: finding a person's enrollment without storing who they are.
//!
//! Resident identity numbers are a small, structured space (a few thousand region codes, some
//! 40,000 birth dates, 1,000 sequence numbers, a computed check character): about 10^11
//! candidates, which an unkeyed hash would give away in hours on one GPU. The index is therefore
//! HMAC-SM3 under a secret index key that never leaves the node's owner-only key file, so the
//! stored indexes reveal nothing to whoever copies the store without the key.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sm2::elliptic_curve::zeroize::Zeroizing;

use crate::{Error, ResidentId};

/// Bytes in an index key.
pub const INDEX_KEY_LEN: usize = 32;
/// Bytes in a blind index.
pub const BLIND_INDEX_LEN: usize = 32;
/// Domain separation: the index key is never used for anything else, but the tag pins the
/// input's meaning should it ever be.
const DOMAIN: &[u8] = b"cyberid-blind-index-1\0";

/// The secret key of the blind index. `Debug` shows nothing; zeroed on drop.
#[derive(Clone)]
pub struct IndexKey(Zeroizing<[u8; INDEX_KEY_LEN]>);

impl IndexKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, Error> {
        let mut key = Zeroizing::new([0u8; INDEX_KEY_LEN]);
        getrandom::fill(key.as_mut()).map_err(|_| Error::Random)?;
        Ok(Self(key))
    }

    /// A key from its bytes (read from the owner-only key file).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let key: [u8; INDEX_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::VaultFormat("an index key is 32 bytes"))?;
        Ok(Self(Zeroizing::new(key)))
    }

    /// The key's bytes, for writing the owner-only key file.
    pub fn expose(&self) -> &[u8; INDEX_KEY_LEN] {
        &self.0
    }

    /// The blind index of a person.
    pub fn index(&self, resident_id: &ResidentId) -> BlindIndex {
        let mut mac = <Hmac<sm3::Sm3> as KeyInit>::new_from_slice(self.0.as_ref())
            .expect("HMAC takes any key length");
        mac.update(DOMAIN);
        mac.update(resident_id.expose().as_bytes());
        BlindIndex(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndexKey(..)")
    }
}

/// A keyed hash of a resident identity number: equal for the same person, unlinkable to the
/// number without the index key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlindIndex([u8; BLIND_INDEX_LEN]);

impl BlindIndex {
    /// An index from its stored bytes.
    pub fn from_bytes(bytes: [u8; BLIND_INDEX_LEN]) -> Self {
        Self(bytes)
    }

    /// The stored bytes.
    pub fn as_bytes(&self) -> &[u8; BLIND_INDEX_LEN] {
        &self.0
    }
}

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlindIndex({}..)", hex::encode(&self.0[..4]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_person_same_index_under_one_key_only() {
        let key = IndexKey::generate().unwrap();
        let a: ResidentId = "11010519491231002X".parse().unwrap();
        let lower: ResidentId = "11010519491231002x".parse().unwrap();
        let b: ResidentId = "440524188001010014".parse().unwrap();
        assert_eq!(key.index(&a), key.index(&lower));
        assert_ne!(key.index(&a), key.index(&b));
        let other = IndexKey::generate().unwrap();
        assert_ne!(
            key.index(&a),
            other.index(&a),
            "without the key the index says nothing"
        );
    }

    #[test]
    fn the_index_is_hmac_sm3_over_the_tagged_number() {
        // Pinned, so that a change of construction (which would orphan every stored index) is
        // deliberate. Computed independently with Python's hmac over OpenSSL's SM3:
        // hmac.new(bytes([1] * 32), b"cyberid-blind-index-1\x00" + number, "sm3").
        let key = IndexKey::from_bytes(&[1; 32]).unwrap();
        let id: ResidentId = "11010519491231002X".parse().unwrap();
        assert_eq!(
            hex::encode(key.index(&id).as_bytes()),
            "202891c657c4176d08d446e6e4d48d224610584568effa93ba634af1a45cfa9b"
        );
    }

    #[test]
    fn debug_shows_no_key() {
        let key = IndexKey::from_bytes(&[0xab; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "IndexKey(..)");
    }
}
