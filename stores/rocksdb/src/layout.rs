//! What the store keeps on disk and how each value is encoded (one RocksDB instance, one
//! column family per concern):
//!
//! | column family | key | value |
//! |---|---|---|
//! | `meta` | `format_version`, `history_begins`, `bucket_seconds`, `created_at` | big-endian u64 |
//! | `revocation_state` | `w`+Web Number, `c`+certificate id, `k`+key id | standing byte (Web Numbers), empty |
//! | `revocation_log` | sequence number, u64 BE | the record as JSON |
//! | `nonces-<bucket>` | certificate id (16 bytes) | `retain_until`, u64 BE, then the claiming request key, u64 BE, if any |
//! | `enrollment_index` | blind index (32 bytes) | Web Number (10 bytes) |
//! | `enrollments` | Web Number (10 bytes) | the enrollment's stored form (`cyberid_identity::Enrollment::encode`) |
//! | `consents` | Web Number (10 bytes), then the platform id NUL-padded to 16 bytes | attributes (1 byte), purpose digest (32), given at (u64 BE): `cyberid_identity::StandingConsent::encode` |
//! | `log_entries` | the first log index of a run (one batch's entries), u64 BE | for each entry: its secret (16 bytes), its length (u16 BE), its record (protocol.md §12) |
//! | `log_tree` | the first leaf index of a run, u64 BE | every complete subtree that run's leaves completed: level (1 byte), index among that level's subtrees (u64 BE), hash (32 bytes); level 0 are the leaves, `SM3(0x00 \|\| commitment)` |
//! | `log_by_holder` | Web Number (10 bytes), then log index (u64 BE) | empty |
//! | `log_by_certificate` | certificate id (16 bytes), then log index (u64 BE) | empty |
//! | `log_heads` | tree size, u64 BE | the signed tree head (131 bytes) |
//!
//! `meta` also holds `log_retained_from`: entries below it are past retention and deleted, with
//! their index rows; the tree keeps their leaves. And `log_indexed_to`: every entry below it has
//! its index rows (written after the entries by the indexer; a store of format 4 or earlier
//! has no such key and all its entries indexed).
//!
//! Nonces live in one column family per expiry bucket (`bucket_seconds` wide, fixed when the
//! store is created): when a bucket's certificates have all expired, the whole column family is
//! dropped, with no scan and no compaction debt.

use cyberid_engine::{CertificateId, Error, KeyId, RevocationChange, Standing, WebNumber};
use rocksdb::{DBWithThreadMode, MultiThreaded};

pub(crate) type Db = DBWithThreadMode<MultiThreaded>;

/// The on-disk format this build writes. It reads this version and versions 1 to 4 (upgraded
/// at open); a store written by any other format version is refused at open, never silently
/// reinterpreted.
pub const STORE_FORMAT_VERSION: u32 = 5;

pub(crate) const META: &str = "meta";
pub(crate) const REVOCATION_STATE: &str = "revocation_state";
pub(crate) const REVOCATION_LOG: &str = "revocation_log";
pub(crate) const NONCES_PREFIX: &str = "nonces-";
pub(crate) const ENROLLMENT_INDEX: &str = "enrollment_index";
pub(crate) const ENROLLMENTS: &str = "enrollments";
pub(crate) const CONSENTS: &str = "consents";
pub(crate) const LOG_ENTRIES: &str = "log_entries";
pub(crate) const LOG_TREE: &str = "log_tree";
pub(crate) const LOG_BY_HOLDER: &str = "log_by_holder";
pub(crate) const LOG_BY_CERTIFICATE: &str = "log_by_certificate";
pub(crate) const LOG_HEADS: &str = "log_heads";

pub(crate) const FORMAT_KEY: &[u8] = b"format_version";
pub(crate) const HISTORY_BEGINS_KEY: &[u8] = b"history_begins";
pub(crate) const BUCKET_SECONDS_KEY: &[u8] = b"bucket_seconds";
pub(crate) const CREATED_AT_KEY: &[u8] = b"created_at";
pub(crate) const LOG_RETAINED_FROM_KEY: &[u8] = b"log_retained_from";
pub(crate) const LOG_INDEXED_KEY: &[u8] = b"log_indexed_to";

pub(crate) fn nonce_cf_name(bucket: u64) -> String {
    format!("{NONCES_PREFIX}{bucket:012}")
}

/// The bucket index of a nonce column family's name, or `None` for other families.
pub(crate) fn nonce_bucket(name: &str) -> Option<u64> {
    name.strip_prefix(NONCES_PREFIX)?.parse().ok()
}

/// Translates a RocksDB error into the engine's, keeping the distinctions an operator acts on.
pub(crate) fn store_error(context: &'static str, error: &rocksdb::Error) -> Error {
    match error.kind() {
        rocksdb::ErrorKind::Corruption => Error::Corrupt(error.to_string()),
        rocksdb::ErrorKind::IOError if error.to_string().to_ascii_lowercase().contains("lock") => {
            Error::Locked(error.to_string())
        }
        _ => Error::Store {
            context,
            detail: error.to_string(),
        },
    }
}

pub(crate) fn read_u64(db: &Db, cf: &str, key: &[u8]) -> Result<Option<u64>, Error> {
    let handle = db
        .cf_handle(cf)
        .ok_or_else(|| Error::Corrupt(format!("column family {cf} is missing")))?;
    let value = db
        .get_cf(&handle, key)
        .map_err(|e| store_error("read meta", &e))?;
    value
        .map(|bytes| {
            decode_u64(&bytes).ok_or_else(|| {
                Error::Corrupt(format!(
                    "meta value {} is not 8 bytes",
                    String::from_utf8_lossy(key)
                ))
            })
        })
        .transpose()
}

pub(crate) fn decode_u64(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

/// A revocation's entry in `revocation_state`: the key, and the value or `None` to delete it;
/// `None` for a change that only goes into the log (an enrollment event).
pub(crate) fn encode_state(change: &RevocationChange) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    Some(match change {
        RevocationChange::WebNumber {
            web_number,
            standing,
        } => {
            let key = [&[b'w'][..], web_number.as_bytes()].concat();
            let value = match standing {
                Standing::Active => None,
                Standing::Suspended => Some(vec![1]),
                Standing::Revoked => Some(vec![2]),
            };
            (key, value)
        }
        RevocationChange::Certificate { certificate_id } => (
            [&[b'c'][..], certificate_id.as_bytes()].concat(),
            Some(Vec::new()),
        ),
        RevocationChange::IssuerKey { key_id } => {
            ([&[b'k'][..], key_id.as_bytes()].concat(), Some(Vec::new()))
        }
        RevocationChange::Enrollment { .. } => return None,
    })
}

pub(crate) fn decode_state(key: &[u8], value: &[u8]) -> Option<RevocationChange> {
    let (tag, rest) = key.split_first()?;
    match (tag, value) {
        (b'w', [standing]) => Some(RevocationChange::WebNumber {
            web_number: WebNumber::parse(std::str::from_utf8(rest).ok()?).ok()?,
            standing: match standing {
                1 => Standing::Suspended,
                2 => Standing::Revoked,
                _ => return None,
            },
        }),
        (b'c', []) => Some(RevocationChange::Certificate {
            certificate_id: CertificateId::from_bytes(rest.try_into().ok()?),
        }),
        (b'k', []) => Some(RevocationChange::IssuerKey {
            key_id: KeyId::from_bytes(rest.try_into().ok()?),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_revocation_state_round_trips() {
        let web_number: WebNumber = "7K3MQ9XZ2P".parse().unwrap();
        for change in [
            RevocationChange::WebNumber {
                web_number,
                standing: Standing::Suspended,
            },
            RevocationChange::WebNumber {
                web_number,
                standing: Standing::Revoked,
            },
            RevocationChange::Certificate {
                certificate_id: CertificateId::from_bytes([7; 16]),
            },
            RevocationChange::IssuerKey {
                key_id: KeyId::from_bytes([9; 8]),
            },
        ] {
            let (key, value) = encode_state(&change).unwrap();
            assert_eq!(decode_state(&key, &value.unwrap()), Some(change));
        }
        assert_eq!(decode_state(b"w7K3MQ9XZ2P", &[3]), None);
        assert_eq!(decode_state(b"x", &[]), None);
        assert_eq!(nonce_bucket(&nonce_cf_name(29_833_333)), Some(29_833_333));
        assert_eq!(nonce_bucket("meta"), None);
    }
}
