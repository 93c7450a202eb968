//! Log entries and their commitments.
//!
//! The tree's leaves are not the entries but commitments to them: `SM3("CYBERID-LOG-ENTRY-1"
//! || secret || entry)` with a 16-byte random secret per entry. The tree, its heads and its
//! proofs can then be published, and a receipt handed to a platform, without revealing who
//! verified where: a commitment opens only with its secret, which the log gives to the holder
//! (their own entries) and to an authority (with a recorded reason), and to nobody else.
//!
//! A verification entry, 55 bytes:
//!
//! | bytes | field |
//! |---:|---|
//! | 1 | kind, `0x01` |
//! | 8 | time, Unix milliseconds, u64 big-endian |
//! | 1 | the platform id's length, 1 to 16 |
//! | 16 | the platform id, ASCII, zero-padded |
//! | 10 | the Web Number, ASCII, canonical |
//! | 16 | the certificate id |
//! | 1 | the outcome: 0 valid, 1 revoked, 2 replayed, 3 history unavailable |
//! | 2 | attributes disclosed with the answer, a bit set, u16 big-endian (0: the result only) |

use cyberid_engine::{CertificateId, PlatformId, Reason, WebNumber};
use sm3::{Digest, Sm3};

use crate::{Error, Hash};

/// Bytes in a verification entry.
pub const VERIFICATION_ENTRY_LEN: usize = 55;
/// Bytes in an entry's secret.
pub const ENTRY_SECRET_LEN: usize = 16;
const KIND_VERIFICATION: u8 = 0x01;
const COMMITMENT_TAG: &[u8; 19] = b"CYBERID-LOG-ENTRY-1";

/// How a verification that reached a genuine signature ended: the verdicts the log records.
/// Checks that fail before the signature (malformed, expired, wrong audience, ...) say nothing
/// about any holder, since anybody can send such bytes, and are not logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Answered `valid`.
    Valid,
    /// Answered `revoked`.
    Revoked,
    /// Answered `replayed`.
    Replayed,
    /// Answered `history_unavailable`.
    HistoryUnavailable,
}

impl Outcome {
    /// The outcome of an invalid verdict after a genuine signature, or `None` for a reason that
    /// comes before the signature check.
    pub fn of_reason(reason: Reason) -> Option<Self> {
        match reason {
            Reason::Revoked => Some(Outcome::Revoked),
            Reason::Replayed => Some(Outcome::Replayed),
            Reason::HistoryUnavailable => Some(Outcome::HistoryUnavailable),
            _ => None,
        }
    }

    /// Its code, as the API's verdicts and reasons name it.
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Valid => "valid",
            Outcome::Revoked => "revoked",
            Outcome::Replayed => "replayed",
            Outcome::HistoryUnavailable => "history_unavailable",
        }
    }

    fn byte(self) -> u8 {
        match self {
            Outcome::Valid => 0,
            Outcome::Revoked => 1,
            Outcome::Replayed => 2,
            Outcome::HistoryUnavailable => 3,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        [
            Outcome::Valid,
            Outcome::Revoked,
            Outcome::Replayed,
            Outcome::HistoryUnavailable,
        ]
        .into_iter()
        .find(|outcome| outcome.byte() == byte)
    }
}

/// One verification as the log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationEntry {
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// The platform that asked.
    pub platform: PlatformId,
    /// The holder the certificate named.
    pub holder: WebNumber,
    /// The certificate.
    pub certificate_id: CertificateId,
    /// How it ended.
    pub outcome: Outcome,
    /// The attributes disclosed with the answer (a bit each; 0: the result only).
    pub disclosed: u16,
}

impl VerificationEntry {
    /// The binary form.
    pub fn encode(&self) -> [u8; VERIFICATION_ENTRY_LEN] {
        let mut bytes = [0u8; VERIFICATION_ENTRY_LEN];
        bytes[0] = KIND_VERIFICATION;
        bytes[1..9].copy_from_slice(&self.at_ms.to_be_bytes());
        let platform = self.platform.as_str().as_bytes();
        bytes[9] = platform.len() as u8;
        bytes[10..10 + platform.len()].copy_from_slice(platform);
        bytes[26..36].copy_from_slice(self.holder.as_str().as_bytes());
        bytes[36..52].copy_from_slice(self.certificate_id.as_bytes());
        bytes[52] = self.outcome.byte();
        bytes[53..55].copy_from_slice(&self.disclosed.to_be_bytes());
        bytes
    }

    /// Reads the binary form; exactly one encoding is accepted for each entry.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let bytes: &[u8; VERIFICATION_ENTRY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::Encoding("a verification entry is 55 bytes"))?;
        if bytes[0] != KIND_VERIFICATION {
            return Err(Error::Encoding("not a verification entry"));
        }
        let len = usize::from(bytes[9]);
        if !(1..=16).contains(&len) || bytes[10 + len..26].iter().any(|&b| b != 0) {
            return Err(Error::Encoding(
                "the platform id is not 1 to 16 zero-padded bytes",
            ));
        }
        let platform = std::str::from_utf8(&bytes[10..10 + len])
            .ok()
            .and_then(|text| PlatformId::new(text).ok())
            .ok_or(Error::Encoding("not a platform id"))?;
        let holder = std::str::from_utf8(&bytes[26..36])
            .ok()
            .and_then(|text| WebNumber::parse(text).ok())
            .filter(|number| number.as_str().as_bytes() == &bytes[26..36])
            .ok_or(Error::Encoding("not a canonical Web Number"))?;
        let outcome = Outcome::from_byte(bytes[52]).ok_or(Error::Encoding("unknown outcome"))?;
        Ok(Self {
            at_ms: u64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes")),
            platform,
            holder,
            certificate_id: CertificateId::from_bytes(bytes[36..52].try_into().expect("16 bytes")),
            outcome,
            disclosed: u16::from_be_bytes([bytes[53], bytes[54]]),
        })
    }

    /// The commitment the tree holds as this entry's leaf.
    pub fn commitment(&self, secret: &[u8; ENTRY_SECRET_LEN]) -> Hash {
        commitment(secret, &self.encode())
    }
}

/// `SM3("CYBERID-LOG-ENTRY-1" || secret || entry)`.
pub fn commitment(secret: &[u8; ENTRY_SECRET_LEN], entry: &[u8]) -> Hash {
    let mut hasher = Sm3::new();
    hasher.update(COMMITMENT_TAG);
    hasher.update(secret);
    hasher.update(entry);
    Hash(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry() -> VerificationEntry {
        VerificationEntry {
            at_ms: 1_796_083_200_123,
            platform: "shop.example".parse().unwrap(),
            holder: "7K3MQ9XZ2P".parse().unwrap(),
            certificate_id: CertificateId::from_bytes([0x42; 16]),
            outcome: Outcome::Valid,
            disclosed: 0,
        }
    }

    #[test]
    fn an_entry_round_trips_and_commits_only_with_its_secret() {
        let entry = entry();
        let bytes = entry.encode();
        assert_eq!(VerificationEntry::decode(&bytes).unwrap(), entry);
        let secret = [7u8; 16];
        assert_eq!(entry.commitment(&secret), entry.commitment(&secret));
        assert_ne!(entry.commitment(&secret), entry.commitment(&[8u8; 16]));
        let mut replayed = entry;
        replayed.outcome = Outcome::Replayed;
        assert_ne!(entry.commitment(&secret), replayed.commitment(&secret));
    }

    #[test]
    fn the_protocol_vector_holds() {
        // protocol.md §12, computed independently with Python's hashlib SM3 (OpenSSL).
        let entry = entry();
        assert_eq!(
            hex::encode(entry.encode()),
            "01000001a22ee6b07b0c73686f702e6578616d706c6500000000374b334d5139585a3250\
             42424242424242424242424242424242000000"
        );
        assert_eq!(
            entry.commitment(&[7; 16]).to_hex(),
            "16d55e2c58ec955b707a9df786c6995465e0ce3747cdae7e7081b4ca44524be3"
        );
    }

    #[test]
    fn non_canonical_entries_are_refused() {
        let good = entry().encode();
        let mut cases = Vec::new();
        let mut lower = good;
        lower[26] = b'7';
        lower[27] = b'k';
        cases.push(lower);
        let mut padding = good;
        padding[25] = b'x';
        cases.push(padding);
        let mut empty_platform = good;
        empty_platform[9] = 0;
        cases.push(empty_platform);
        let mut outcome = good;
        outcome[52] = 4;
        cases.push(outcome);
        let mut kind = good;
        kind[0] = 2;
        cases.push(kind);
        for bytes in cases {
            assert!(VerificationEntry::decode(&bytes).is_err(), "{bytes:?}");
        }
        assert!(VerificationEntry::decode(&good[..54]).is_err());
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics_and_round_trips_what_it_accepts(
            bytes in proptest::collection::vec(any::<u8>(), 55)
        ) {
            if let Ok(entry) = VerificationEntry::decode(&bytes) {
                prop_assert_eq!(entry.encode().to_vec(), bytes);
            }
        }
    }
}
