//! What the store keeps in etcd, under the deployment's key prefix `<p>`, and how each value is
//! encoded. Text where a person reading the cluster with `etcdctl` benefits, fixed binary where
//! the value is written on every verification.
//!
//! | key | value | lease |
//! |---|---|---|
//! | `<p>/meta/format` | `1`, decimal | none |
//! | `<p>/meta/history_begins` | Unix seconds, decimal | none |
//! | `<p>/meta/nonce_clusters` | how many clusters hold nonces, decimal (first cluster only) | none |
//! | `<p>/meta/nonce_shard` | `<index>/<count>`: this cluster's place among them | none |
//! | `<p>/n/<certificate id, 32 hex digits>` | [`NonceValue`], 25 to 89 bytes | the node's lease for the expiry bucket |
//! | `<p>/r/seq` | last revocation sequence number, decimal | none |
//! | `<p>/r/l/<sequence number, 20 digits>` | [`LogEntry`] as JSON | none |
//! | `<p>/r/s/w/<Web Number>` | `suspended` or `revoked` (absent: active) | none |
//! | `<p>/r/s/c/<certificate id, 32 hex digits>` | empty | none |
//! | `<p>/r/s/k/<key id, 16 hex digits>` | empty | none |
//! | `<p>/e/i/<blind index, 64 hex digits>` | the enrolled Web Number | none |
//! | `<p>/e/h/<Web Number>` | the enrollment's stored form (`cyberid_identity::Enrollment::encode`) | none |
//! | `<p>/e/c/<Web Number>/<platform id>` | a standing consent's stored form, 41 bytes (`cyberid_identity::StandingConsent::encode`) | none |
//!
//! The log's keys are zero-padded so that etcd's byte order is sequence order; the state keys
//! are the current set, read whole when a node connects.

use cyberid_engine::{
    CertificateId, Error, KeyId, RequestKey, RevocationChange, RevocationMaps, RevocationRecord,
    Standing,
};

/// The only layout this build reads and writes.
pub(crate) const FORMAT: &str = "1";

/// Longest node id, bytes (it is stored with every nonce).
pub(crate) const MAX_NODE_ID: usize = 64;

/// Every key the store uses, built once from the prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    nonce: String,
    pub(crate) format: String,
    pub(crate) history_begins: String,
    pub(crate) nonce_clusters: String,
    pub(crate) nonce_shard: String,
    pub(crate) seq: String,
    pub(crate) log: String,
    pub(crate) state: String,
    enrollment_index: String,
    enrollment: String,
    consent: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            nonce: format!("{prefix}/n/"),
            format: format!("{prefix}/meta/format"),
            history_begins: format!("{prefix}/meta/history_begins"),
            nonce_clusters: format!("{prefix}/meta/nonce_clusters"),
            nonce_shard: format!("{prefix}/meta/nonce_shard"),
            seq: format!("{prefix}/r/seq"),
            log: format!("{prefix}/r/l/"),
            state: format!("{prefix}/r/s/"),
            enrollment_index: format!("{prefix}/e/i/"),
            enrollment: format!("{prefix}/e/h/"),
            consent: format!("{prefix}/e/c/"),
        }
    }

    /// `<p>/e/i/<blind index>`.
    pub(crate) fn enrollment_index(&self, index: &cyberid_identity::BlindIndex) -> String {
        format!("{}{}", self.enrollment_index, hex::encode(index.as_bytes()))
    }

    /// `<p>/e/h/<Web Number>`.
    pub(crate) fn enrollment(&self, web_number: &cyberid_engine::WebNumber) -> String {
        format!("{}{web_number}", self.enrollment)
    }

    /// `<p>/e/c/<Web Number>/`: the prefix of a holder's consents.
    pub(crate) fn consents(&self, web_number: &cyberid_engine::WebNumber) -> String {
        format!("{}{web_number}/", self.consent)
    }

    /// `<p>/e/c/<Web Number>/<platform id>`.
    pub(crate) fn consent(
        &self,
        web_number: &cyberid_engine::WebNumber,
        platform: &cyberid_engine::PlatformId,
    ) -> String {
        format!("{}{platform}", self.consents(web_number))
    }

    /// The end of the range of keys starting with `prefix`.
    pub(crate) fn range_end(prefix: &str) -> Vec<u8> {
        prefix_end(prefix)
    }

    /// `<p>/n/<certificate id>`.
    pub(crate) fn nonce(&self, id: &CertificateId) -> String {
        let mut key = String::with_capacity(self.nonce.len() + 32);
        key.push_str(&self.nonce);
        key.push_str(&hex::encode(id.as_bytes()));
        key
    }

    /// `<p>/r/l/<seq>`.
    pub(crate) fn log_entry(&self, seq: u64) -> String {
        format!("{}{seq:020}", self.log)
    }

    /// The first key after every log key: the end of the log's range.
    pub(crate) fn log_end(&self) -> Vec<u8> {
        prefix_end(&self.log)
    }

    /// The sequence number of a log key, if it is one.
    pub(crate) fn log_seq(&self, key: &[u8]) -> Option<u64> {
        let digits = key.strip_prefix(self.log.as_bytes())?;
        if digits.len() != 20 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    }

    /// The end of the state keys' range.
    pub(crate) fn state_end(&self) -> Vec<u8> {
        prefix_end(&self.state)
    }

    /// The state key a change writes, and its value (`None`: delete the key); `None` for a
    /// change that only goes into the log (an enrollment event).
    pub(crate) fn state_op(
        &self,
        change: &RevocationChange,
    ) -> Option<(String, Option<&'static str>)> {
        Some(match change {
            RevocationChange::WebNumber {
                web_number,
                standing,
            } => (
                format!("{}w/{web_number}", self.state),
                match standing {
                    Standing::Active => None,
                    Standing::Suspended => Some("suspended"),
                    Standing::Revoked => Some("revoked"),
                },
            ),
            RevocationChange::Certificate { certificate_id } => (
                format!("{}c/{}", self.state, hex::encode(certificate_id.as_bytes())),
                Some(""),
            ),
            RevocationChange::IssuerKey { key_id } => {
                (format!("{}k/{key_id}", self.state), Some(""))
            }
            RevocationChange::Enrollment { .. } => return None,
        })
    }

    /// Applies one state key read back from etcd to `maps`.
    pub(crate) fn load_state(
        &self,
        maps: &RevocationMaps,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), Error> {
        let corrupt = || Error::Corrupt(format!("unreadable revocation state key {key:?}"));
        let rest = key
            .strip_prefix(self.state.as_bytes())
            .ok_or_else(corrupt)?;
        let text = std::str::from_utf8(rest).map_err(|_| corrupt())?;
        let change = match text.split_at_checked(2).ok_or_else(corrupt)? {
            ("w/", number) => RevocationChange::WebNumber {
                web_number: number.parse().map_err(|_| corrupt())?,
                standing: match value {
                    b"suspended" => Standing::Suspended,
                    b"revoked" => Standing::Revoked,
                    _ => return Err(corrupt()),
                },
            },
            ("c/", id) => RevocationChange::Certificate {
                certificate_id: id.parse().map_err(|_| corrupt())?,
            },
            ("k/", id) => RevocationChange::IssuerKey {
                key_id: id.parse::<KeyId>().map_err(|_| corrupt())?,
            },
            _ => return Err(corrupt()),
        };
        maps.apply(&change);
        Ok(())
    }
}

/// The first key after every key that starts with `prefix` (etcd's range end for a prefix).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Which of `shards` nonce clusters holds the nonce of certificate `id`: the first eight bytes
/// as a big-endian fraction of 2^64, scaled to `shards` (certificate ids are uniformly random,
/// so the clusters get equal shares). Changing the count or order of the clusters moves
/// nonces, which is why each cluster records its place (`<p>/meta/nonce_shard`).
pub(crate) fn shard_of(id: &CertificateId, shards: usize) -> usize {
    let mut high = [0; 8];
    high.copy_from_slice(&id.as_bytes()[..8]);
    ((u128::from(u64::from_be_bytes(high)) * shards as u128) >> 64) as usize
}

/// Identifies one `consume_batch` (or one revocation write) among all writes of all nodes
/// ever: this store instance's random id, then a counter. A retry of a write whose answer was
/// lost carries the same id, so it recognises keys that the first attempt created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriteId(pub(crate) [u8; 16]);

impl WriteId {
    pub(crate) fn new(instance: u64, counter: u64) -> Self {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&instance.to_be_bytes());
        bytes[8..].copy_from_slice(&counter.to_be_bytes());
        Self(bytes)
    }
}

/// A nonce key's value: who consumed it, in which write, for which request.
///
/// `[0]` format byte `1`; `[1..17]` the [`WriteId`]; `[17..25]` the request key, u64
/// big-endian, 0 when the request named none; `[25..]` the node id, UTF-8, at most 64 bytes
/// (for operators: which node answered `valid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NonceValue {
    pub(crate) write: WriteId,
    pub(crate) request: Option<RequestKey>,
}

impl NonceValue {
    pub(crate) fn encode(&self, node_id: &str) -> Vec<u8> {
        let mut value = Vec::with_capacity(25 + node_id.len());
        value.push(1);
        value.extend_from_slice(&self.write.0);
        value.extend_from_slice(&self.request.map_or(0, RequestKey::get).to_be_bytes());
        value.extend_from_slice(node_id.as_bytes());
        value
    }

    /// `None` for a value this build did not write (read as someone else's claim).
    pub(crate) fn decode(value: &[u8]) -> Option<Self> {
        if value.len() < 25 || value.len() > 25 + MAX_NODE_ID || value[0] != 1 {
            return None;
        }
        let write = WriteId(value[1..17].try_into().ok()?);
        let request = u64::from_be_bytes(value[17..25].try_into().ok()?);
        Some(Self {
            write,
            request: RequestKey::from_u64(request),
        })
    }
}

/// A revocation log entry: the record, and the write that appended it (so that a retried
/// write whose answer was lost recognises its own entry).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct LogEntry {
    pub(crate) write: String,
    pub(crate) record: RevocationRecord,
}

impl LogEntry {
    pub(crate) fn encode(write: WriteId, record: &RevocationRecord) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(&LogEntry {
            write: hex::encode(write.0),
            record: record.clone(),
        })
        .map_err(|e| Error::Store {
            context: "encode revocation",
            detail: e.to_string(),
        })
    }

    pub(crate) fn decode(value: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(value)
            .map_err(|_| Error::Corrupt("undecodable revocation log entry in etcd".into()))
    }

    pub(crate) fn written_by(&self, write: WriteId) -> bool {
        self.write == hex::encode(write.0)
    }
}

/// A decimal u64 value (`meta` keys, the sequence counter).
pub(crate) fn decode_decimal(key: &str, value: &[u8]) -> Result<u64, Error> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Error::Corrupt(format!("{key} in etcd is not a decimal number")))
}

#[cfg(test)]
mod tests {
    use cyberid_engine::{PlatformId, WebNumber};

    use super::*;

    #[test]
    fn nonce_values_round_trip_and_are_bounded() {
        let shop: PlatformId = "shop.example".parse().unwrap();
        let write = WriteId::new(7, 9);
        for request in [None, Some(RequestKey::derive(&shop, b"k"))] {
            let value = NonceValue { write, request };
            let bytes = value.encode("node-a");
            assert_eq!(bytes.len(), 25 + 6);
            assert_eq!(NonceValue::decode(&bytes), Some(value));
        }
        let longest = NonceValue {
            write,
            request: None,
        }
        .encode(&"n".repeat(MAX_NODE_ID));
        assert!(NonceValue::decode(&longest).is_some());
        assert_eq!(NonceValue::decode(&[1; 24]), None, "too short");
        assert_eq!(NonceValue::decode(&[2; 30]), None, "another format");
        assert_eq!(NonceValue::decode(&[1; 25 + MAX_NODE_ID + 1]), None);
    }

    #[test]
    fn keys_sort_and_parse() {
        let keys = Keys::new("/cyberid");
        let id = CertificateId::from_bytes([0xab; 16]);
        assert_eq!(keys.nonce(&id), format!("/cyberid/n/{}", "ab".repeat(16)));
        assert_eq!(keys.log_entry(42), "/cyberid/r/l/00000000000000000042");
        assert!(keys.log_entry(9) < keys.log_entry(10));
        assert_eq!(keys.log_seq(keys.log_entry(42).as_bytes()), Some(42));
        assert_eq!(keys.log_seq(b"/cyberid/r/l/42"), None);
        assert_eq!(keys.log_end(), b"/cyberid/r/l0");
        assert!(keys.log_entry(u64::MAX).as_bytes() < keys.log_end().as_slice());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80");
    }

    #[test]
    fn state_keys_load_back_into_the_maps() {
        let keys = Keys::new("/p");
        let maps = RevocationMaps::default();
        let holder: WebNumber = "7K3MQ9XZ2P".parse().unwrap();
        let key_id: KeyId = "0011223344556677".parse().unwrap();
        let certificate_id = CertificateId::from_bytes([3; 16]);
        for change in [
            RevocationChange::WebNumber {
                web_number: holder,
                standing: Standing::Suspended,
            },
            RevocationChange::Certificate { certificate_id },
            RevocationChange::IssuerKey { key_id },
        ] {
            let (key, value) = keys.state_op(&change).unwrap();
            keys.load_state(&maps, key.as_bytes(), value.unwrap().as_bytes())
                .unwrap();
        }
        assert_eq!(maps.standing(&holder), Standing::Suspended);
        assert!(maps.certificate_revoked(&certificate_id));
        assert!(maps.key_revoked(&key_id));
        assert_eq!(
            keys.state_op(&RevocationChange::WebNumber {
                web_number: holder,
                standing: Standing::Active
            })
            .unwrap()
            .1,
            None
        );
        assert!(keys.load_state(&maps, b"/p/r/s/x/1", b"").is_err());
        assert!(
            keys.load_state(&maps, b"/p/r/s/w/7K3MQ9XZ2P", b"gone")
                .is_err()
        );
    }

    #[test]
    fn log_entries_round_trip() {
        let record = RevocationRecord {
            change: RevocationChange::Certificate {
                certificate_id: CertificateId::from_bytes([1; 16]),
            },
            reason: "stolen".into(),
            authority: "mps".into(),
            at: 5,
        };
        let write = WriteId::new(1, 2);
        let entry = LogEntry::decode(&LogEntry::encode(write, &record).unwrap()).unwrap();
        assert_eq!(entry.record, record);
        assert!(entry.written_by(write));
        assert!(!entry.written_by(WriteId::new(1, 3)));
    }
}
