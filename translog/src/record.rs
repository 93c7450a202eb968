//! What the log holds: verification entries, and access entries that record an authority's
//! read of the log. Both are committed the same way (`SM3(tag || secret || record)`) and sit in
//! the same tree, so an authority's read is as tamper-evident as a login.
//!
//! An access entry (protocol.md §12), 46 bytes plus two texts:
//!
//! | bytes | field |
//! |---:|---|
//! | 1 | kind, `0x02` |
//! | 8 | time, Unix milliseconds, u64 big-endian |
//! | 8 | sealed until, Unix milliseconds, u64 big-endian (0: not sealed) |
//! | 1 | what was read: bit 0 a holder, bit 1 a certificate (at least one) |
//! | 10 | the holder's Web Number, ASCII (zeros when none) |
//! | 16 | the certificate id (zeros when none) |
//! | 1 + n | the authority's credential name, its length (1 to 64) then ASCII |
//! | 1 + n | the case reference, its length (1 to 64) then ASCII |

use cyberid_engine::{CertificateId, LogEntry, RevocationRecord, WebNumber};

use crate::{ENTRY_SECRET_LEN, Error, Hash, commitment, decode_entry, encode_entry};

const KIND_VERIFICATION: u8 = 0x01;
const KIND_ACCESS: u8 = 0x02;
const FIXED: usize = 1 + 8 + 8 + 1 + 10 + 16;

/// An authority's read of the log, as the log records it: who, why, what, and until when the
/// holder is not shown it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// Until when the holder's reads leave it out, Unix milliseconds; 0 if never.
    pub sealed_until_ms: u64,
    /// The holder whose entries were read, when known.
    pub holder: Option<WebNumber>,
    /// The certificate whose entries were read, when the query named one.
    pub certificate_id: Option<CertificateId>,
    /// The authority's credential name.
    pub authority: String,
    /// The case reference the authority gave.
    pub case_reference: String,
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A verification.
    Verification(LogEntry),
    /// An authority's read.
    Access(AccessEntry),
}

impl Record {
    /// The binary form.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Record::Verification(entry) => encode_entry(entry).to_vec(),
            Record::Access(access) => {
                let mut bytes = Vec::with_capacity(FIXED + 2 + 128);
                bytes.push(KIND_ACCESS);
                bytes.extend_from_slice(&access.at_ms.to_be_bytes());
                bytes.extend_from_slice(&access.sealed_until_ms.to_be_bytes());
                let flags = u8::from(access.holder.is_some())
                    | (u8::from(access.certificate_id.is_some()) << 1);
                bytes.push(flags);
                match &access.holder {
                    Some(holder) => bytes.extend_from_slice(holder.as_bytes()),
                    None => bytes.extend_from_slice(&[0; 10]),
                }
                match &access.certificate_id {
                    Some(id) => bytes.extend_from_slice(id.as_bytes()),
                    None => bytes.extend_from_slice(&[0; 16]),
                }
                for text in [&access.authority, &access.case_reference] {
                    bytes.push(text.len() as u8);
                    bytes.extend_from_slice(text.as_bytes());
                }
                bytes
            }
        }
    }

    /// Reads a record; exactly one encoding is accepted for each.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        match bytes.first() {
            Some(&KIND_VERIFICATION) => decode_entry(bytes).map(Record::Verification),
            Some(&KIND_ACCESS) => decode_access(bytes).map(Record::Access),
            _ => Err(Error::Encoding("not a log record")),
        }
    }

    /// The commitment the tree holds (as a leaf hash of it) for this record.
    pub fn commitment(&self, secret: &[u8; ENTRY_SECRET_LEN]) -> Hash {
        commitment(secret, &self.encode())
    }

    /// When it happened, Unix milliseconds.
    pub fn at_ms(&self) -> u64 {
        match self {
            Record::Verification(entry) => entry.at_ms,
            Record::Access(access) => access.at_ms,
        }
    }

    /// The holder it is indexed under, if any.
    pub fn holder(&self) -> Option<WebNumber> {
        match self {
            Record::Verification(entry) => Some(entry.web_number),
            Record::Access(access) => access.holder,
        }
    }

    /// The certificate it is indexed under, if any.
    pub fn certificate_id(&self) -> Option<CertificateId> {
        match self {
            Record::Verification(entry) => Some(entry.certificate_id),
            Record::Access(access) => access.certificate_id,
        }
    }
}

impl AccessEntry {
    /// Checks what an authority supplies: a target, an authority name and a case reference of
    /// 1 to 64 characters each from the revocation reasons' set (never personal data).
    pub fn validate(&self) -> Result<(), Error> {
        if self.holder.is_none() && self.certificate_id.is_none() {
            return Err(Error::Encoding(
                "an access names a holder, a certificate, or both",
            ));
        }
        RevocationRecord::validate_reason(&self.case_reference).map_err(|_| {
            Error::Encoding(
                "a case reference is 1 to 64 characters from A-Z a-z 0-9, space and - _ . : , / ( )",
            )
        })?;
        RevocationRecord::validate_authority(&self.authority).map_err(|_| {
            Error::Encoding("an authority is 1 to 64 characters from A-Z a-z 0-9 - _ . :")
        })?;
        Ok(())
    }
}

fn decode_access(bytes: &[u8]) -> Result<AccessEntry, Error> {
    let bad = || Error::Encoding("not a canonical access entry");
    if bytes.len() < FIXED + 4 {
        return Err(bad());
    }
    let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let flags = bytes[17];
    if flags == 0 || flags > 3 {
        return Err(bad());
    }
    let holder = if flags & 1 == 1 {
        let text = std::str::from_utf8(&bytes[18..28]).map_err(|_| bad())?;
        let holder = WebNumber::parse(text).map_err(|_| bad())?;
        if holder.as_bytes() != &bytes[18..28] {
            return Err(bad());
        }
        Some(holder)
    } else if bytes[18..28].iter().any(|&b| b != 0) {
        return Err(bad());
    } else {
        None
    };
    let certificate_id = if flags & 2 == 2 {
        Some(CertificateId::from_bytes(
            bytes[28..44].try_into().expect("16 bytes"),
        ))
    } else if bytes[28..44].iter().any(|&b| b != 0) {
        return Err(bad());
    } else {
        None
    };
    let mut at = FIXED;
    let mut text = || -> Result<String, Error> {
        let len = usize::from(*bytes.get(at).ok_or_else(bad)?);
        let field = bytes.get(at + 1..at + 1 + len).ok_or_else(bad)?;
        at += 1 + len;
        String::from_utf8(field.to_vec()).map_err(|_| bad())
    };
    let authority = text()?;
    let case_reference = text()?;
    if at != bytes.len() {
        return Err(bad());
    }
    let access = AccessEntry {
        at_ms: u64_at(1),
        sealed_until_ms: u64_at(9),
        holder,
        certificate_id,
        authority,
        case_reference,
    };
    access.validate().map_err(|_| bad())?;
    Ok(access)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    pub(crate) fn access() -> AccessEntry {
        AccessEntry {
            at_ms: 1_796_083_200_123,
            sealed_until_ms: 0,
            holder: Some("7K3MQ9XZ2P".parse().unwrap()),
            certificate_id: None,
            authority: "mps".into(),
            case_reference: "case 2026/0042".into(),
        }
    }

    #[test]
    fn an_access_entry_round_trips_and_commits_like_an_entry() {
        let record = Record::Access(access());
        let bytes = record.encode();
        assert_eq!(bytes.len(), FIXED + 1 + 3 + 1 + 14);
        assert_eq!(Record::decode(&bytes).unwrap(), record);
        let sealed = Record::Access(AccessEntry {
            sealed_until_ms: 1,
            certificate_id: Some(CertificateId::from_bytes([4; 16])),
            ..access()
        });
        assert_eq!(Record::decode(&sealed.encode()).unwrap(), sealed);
        assert_ne!(record.commitment(&[7; 16]), sealed.commitment(&[7; 16]));
        assert_eq!(record.holder(), access().holder);
    }

    #[test]
    fn non_canonical_access_entries_are_refused() {
        let good = Record::Access(access()).encode();
        let mut cases = Vec::new();
        let mut no_target = good.clone();
        no_target[17] = 0;
        no_target[18..28].fill(0);
        cases.push(no_target);
        let mut stray = good.clone();
        stray[30] = 1; // certificate bytes without the flag
        cases.push(stray);
        let mut long = good.clone();
        long.push(0);
        cases.push(long);
        let mut bad_case = good.clone();
        let last = bad_case.len() - 1;
        bad_case[last] = b'\n';
        cases.push(bad_case);
        cases.push(good[..good.len() - 1].to_vec());
        for bytes in cases {
            assert!(Record::decode(&bytes).is_err(), "{bytes:?}");
        }
        assert!(
            AccessEntry {
                holder: None,
                ..access()
            }
            .validate()
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics_and_round_trips_what_it_accepts(
            bytes in proptest::collection::vec(any::<u8>(), 0..120)
        ) {
            if let Ok(record) = Record::decode(&bytes) {
                prop_assert_eq!(record.encode(), bytes);
            }
        }
    }
}
