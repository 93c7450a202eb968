//! Signed tree heads: the log operator's statement "the log held `size` entries with this
//! root at this time", SM2-signed so that a head shown to one party can be shown to anyone.
//!
//! Signed bytes (67 in all): the ASCII tag `CYBERID-TREE-HEAD-1` (19 bytes), the size (u64
//! big-endian), the timestamp (Unix milliseconds, u64 big-endian), the root (32 bytes); SM2
//! with the default ID `1234567812345678`, the signature as `r || s` (64 bytes).

use cyberid_engine::{IssuerPublicKey, IssuerSigningKey};

use crate::{Error, Hash};

/// Bytes a head's signature covers.
pub const HEAD_SIGNED_LEN: usize = 19 + 8 + 8 + 32;
const TAG: &[u8; 19] = b"CYBERID-TREE-HEAD-1";
/// Bytes in a signed head's stored form: the signed bytes and the 64-byte signature.
pub const SIGNED_HEAD_LEN: usize = HEAD_SIGNED_LEN + 64;

/// What a head says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// Entries in the log.
    pub size: u64,
    /// When the head was made, Unix milliseconds.
    pub timestamp_ms: u64,
    /// The tree's root over those entries.
    pub root: Hash,
}

impl TreeHead {
    /// The bytes its signature covers.
    pub fn signed_bytes(&self) -> [u8; HEAD_SIGNED_LEN] {
        let mut bytes = [0u8; HEAD_SIGNED_LEN];
        bytes[..19].copy_from_slice(TAG);
        bytes[19..27].copy_from_slice(&self.size.to_be_bytes());
        bytes[27..35].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        bytes[35..].copy_from_slice(&self.root.0);
        bytes
    }

    /// Signs it with the log's key.
    pub fn sign(self, key: &IssuerSigningKey) -> Result<SignedTreeHead, Error> {
        let signature = key.sign(&self.signed_bytes()).map_err(|_| Error::Signing)?;
        Ok(SignedTreeHead {
            head: self,
            signature,
        })
    }
}

/// A head with the log's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedTreeHead {
    /// What it says.
    pub head: TreeHead,
    /// SM2 `r || s` over [`TreeHead::signed_bytes`].
    pub signature: [u8; 64],
}

impl SignedTreeHead {
    /// Checks the signature against the log's public key.
    pub fn verify(&self, key: &IssuerPublicKey) -> Result<&TreeHead, Error> {
        // The general path (the sm2 crate): heads are few, and an auditor's tool should not
        // need the fast path's precomputed tables.
        if key.verify_general(&self.head.signed_bytes(), &self.signature) {
            Ok(&self.head)
        } else {
            Err(Error::BadProof("the tree head's signature does not verify"))
        }
    }

    /// The stored form: the signed bytes, then the signature (131 bytes).
    pub fn encode(&self) -> [u8; SIGNED_HEAD_LEN] {
        let mut bytes = [0u8; SIGNED_HEAD_LEN];
        bytes[..HEAD_SIGNED_LEN].copy_from_slice(&self.head.signed_bytes());
        bytes[HEAD_SIGNED_LEN..].copy_from_slice(&self.signature);
        bytes
    }

    /// Reads the stored form (the signature is not checked here: see [`verify`](Self::verify)).
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let bytes: &[u8; SIGNED_HEAD_LEN] = bytes
            .try_into()
            .map_err(|_| Error::Encoding("a signed tree head is 131 bytes"))?;
        if &bytes[..19] != TAG {
            return Err(Error::Encoding("not a tree head"));
        }
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Ok(Self {
            head: TreeHead {
                size: u64_at(19),
                timestamp_ms: u64_at(27),
                root: Hash(bytes[35..HEAD_SIGNED_LEN].try_into().expect("32 bytes")),
            },
            signature: bytes[HEAD_SIGNED_LEN..].try_into().expect("64 bytes"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::empty_root;

    #[test]
    fn a_signed_head_verifies_only_unchanged_and_under_its_key() {
        let key = IssuerSigningKey::generate().unwrap();
        let head = TreeHead {
            size: 3,
            timestamp_ms: 1_796_083_200_000,
            root: empty_root(),
        };
        let signed = head.sign(&key).unwrap();
        assert_eq!(signed.verify(key.public_key()).unwrap(), &head);
        assert_eq!(SignedTreeHead::decode(&signed.encode()).unwrap(), signed);
        assert!(SignedTreeHead::decode(&signed.encode()[1..]).is_err());

        let mut grown = signed;
        grown.head.size = 4;
        assert_eq!(
            grown.verify(key.public_key()).unwrap_err().code(),
            "bad_proof"
        );
        let other = IssuerSigningKey::generate().unwrap();
        assert!(signed.verify(other.public_key()).is_err());
    }

    #[test]
    fn the_signed_bytes_are_tag_size_time_root() {
        let head = TreeHead {
            size: 0x0102,
            timestamp_ms: 0x0304,
            root: Hash([0xab; 32]),
        };
        let bytes = head.signed_bytes();
        assert_eq!(&bytes[..19], b"CYBERID-TREE-HEAD-1");
        assert_eq!(bytes[19..27], 0x0102u64.to_be_bytes());
        assert_eq!(bytes[27..35], 0x0304u64.to_be_bytes());
        assert_eq!(bytes[35..], [0xab; 32]);
    }
}
