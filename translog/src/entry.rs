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
//! | 1 | the outcome: 0 valid, 1 revoked, 2 replayed, 3 history unavailable, 4 repeated (a retried request answered again) |
//! | 2 | attributes disclosed with the answer, a bit set, u16 big-endian (0: the result only) |

use cyberid_engine::{CertificateId, LogEntry, LogOutcome, PlatformId, WebNumber};
use sm3::{Digest, Sm3};

use crate::{Error, Hash};

/// Bytes in a verification entry.
pub const VERIFICATION_ENTRY_LEN: usize = 55;
/// Bytes in an entry's secret.
pub const ENTRY_SECRET_LEN: usize = 16;
const KIND_VERIFICATION: u8 = 0x01;
const COMMITMENT_TAG: &[u8; 19] = b"CYBERID-LOG-ENTRY-1";

fn outcome_byte(outcome: LogOutcome) -> u8 {
    match outcome {
        LogOutcome::Valid => 0,
        LogOutcome::Revoked => 1,
        LogOutcome::Replayed => 2,
        LogOutcome::HistoryUnavailable => 3,
        LogOutcome::Repeated => 4,
    }
}

/// The binary form of a verification entry.
pub fn encode_entry(entry: &LogEntry) -> [u8; VERIFICATION_ENTRY_LEN] {
    let mut bytes = [0u8; VERIFICATION_ENTRY_LEN];
    bytes[0] = KIND_VERIFICATION;
    bytes[1..9].copy_from_slice(&entry.at_ms.to_be_bytes());
    let platform = entry.platform.as_str().as_bytes();
    bytes[9] = platform.len() as u8;
    bytes[10..10 + platform.len()].copy_from_slice(platform);
    bytes[26..36].copy_from_slice(entry.web_number.as_str().as_bytes());
    bytes[36..52].copy_from_slice(entry.certificate_id.as_bytes());
    bytes[52] = outcome_byte(entry.outcome);
    bytes[53..55].copy_from_slice(&entry.disclosed.to_be_bytes());
    bytes
}

/// Reads a verification entry's binary form; exactly one encoding is accepted for each entry.
pub fn decode_entry(bytes: &[u8]) -> Result<LogEntry, Error> {
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
    let web_number = std::str::from_utf8(&bytes[26..36])
        .ok()
        .and_then(|text| WebNumber::parse(text).ok())
        .filter(|number| number.as_str().as_bytes() == &bytes[26..36])
        .ok_or(Error::Encoding("not a canonical Web Number"))?;
    let outcome = LogOutcome::ALL
        .into_iter()
        .find(|outcome| outcome_byte(*outcome) == bytes[52])
        .ok_or(Error::Encoding("unknown outcome"))?;
    Ok(LogEntry {
        at_ms: u64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes")),
        platform,
        web_number,
        certificate_id: CertificateId::from_bytes(bytes[36..52].try_into().expect("16 bytes")),
        outcome,
        disclosed: u16::from_be_bytes([bytes[53], bytes[54]]),
    })
}

/// The commitment the tree holds as this entry's leaf.
pub fn entry_commitment(entry: &LogEntry, secret: &[u8; ENTRY_SECRET_LEN]) -> Hash {
    commitment(secret, &encode_entry(entry))
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

    fn entry() -> LogEntry {
        LogEntry {
            at_ms: 1_796_083_200_123,
            platform: "shop.example".parse().unwrap(),
            web_number: "7K3MQ9XZ2P".parse().unwrap(),
            certificate_id: CertificateId::from_bytes([0x42; 16]),
            outcome: LogOutcome::Valid,
            disclosed: 0,
        }
    }

    #[test]
    fn an_entry_round_trips_and_commits_only_with_its_secret() {
        let entry = entry();
        let bytes = encode_entry(&entry);
        assert_eq!(decode_entry(&bytes).unwrap(), entry);
        let secret = [7u8; 16];
        assert_eq!(
            entry_commitment(&entry, &secret),
            entry_commitment(&entry, &secret)
        );
        assert_ne!(
            entry_commitment(&entry, &secret),
            entry_commitment(&entry, &[8u8; 16])
        );
        let mut replayed = entry;
        replayed.outcome = LogOutcome::Replayed;
        assert_ne!(
            entry_commitment(&entry, &secret),
            entry_commitment(&replayed, &secret)
        );
    }

    #[test]
    fn the_protocol_vector_holds() {
        // protocol.md §12, computed independently with Python's hashlib SM3 (OpenSSL).
        let entry = entry();
        assert_eq!(
            hex::encode(encode_entry(&entry)),
            "01000001a22ee6b07b0c73686f702e6578616d706c6500000000374b334d5139585a3250\
             42424242424242424242424242424242000000"
        );
        assert_eq!(
            entry_commitment(&entry, &[7; 16]).to_hex(),
            "16d55e2c58ec955b707a9df786c6995465e0ce3747cdae7e7081b4ca44524be3"
        );
    }

    #[test]
    fn non_canonical_entries_are_refused() {
        let good = encode_entry(&entry());
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
        outcome[52] = 5;
        cases.push(outcome);
        let mut kind = good;
        kind[0] = 2;
        cases.push(kind);
        for bytes in cases {
            assert!(decode_entry(&bytes).is_err(), "{bytes:?}");
        }
        assert!(decode_entry(&good[..54]).is_err());
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics_and_round_trips_what_it_accepts(
            bytes in proptest::collection::vec(any::<u8>(), 55)
        ) {
            if let Ok(entry) = decode_entry(&bytes) {
                prop_assert_eq!(encode_entry(&entry).to_vec(), bytes);
            }
        }
    }
}
