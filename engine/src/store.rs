//! The verification tier's two pieces of state, behind traits: the revocation set and the
//! replay-nonce store. In-memory implementations live here; durable ones implement the same
//! traits and pass the same contract tests.

use std::sync::Mutex;

use dashmap::DashMap;

use crate::nonce_map::NonceMap;

use crate::{CertificateId, Error, KeyId, WebNumber};

/// Whether a Web Number may currently authenticate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// In good standing (the default for every Web Number never acted on).
    #[default]
    Active,
    /// Temporarily barred, for example while a report of theft is investigated.
    Suspended,
    /// Permanently barred.
    Revoked,
}

/// What a revocation changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "target")]
pub enum RevocationChange {
    /// Sets a Web Number's standing: suspend, revoke, or reinstate (back to active).
    WebNumber {
        /// The holder.
        web_number: WebNumber,
        /// The new standing.
        standing: Standing,
    },
    /// Revokes one certificate.
    Certificate {
        /// The certificate.
        certificate_id: CertificateId,
    },
    /// Revokes an issuer key: every certificate it signed is refused.
    IssuerKey {
        /// The key.
        key_id: KeyId,
    },
}

/// A revocation with its provenance, as authorities see it in the history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RevocationRecord {
    /// What changes.
    #[serde(flatten)]
    pub change: RevocationChange,
    /// Why, as a short code or sentence chosen by the authority; never personal data.
    pub reason: String,
    /// The acting authority.
    pub authority: String,
    /// When, Unix seconds.
    pub at: u64,
}

/// The revocation set: Web Numbers suspended or revoked, certificates revoked, issuer keys
/// revoked.
///
/// Lookups run on every verification that passed its signature check, so implementations make
/// them lock-free memory reads that do not allocate. [`apply`](RevocationSet::apply) returns only
/// once the change is durable (for a durable implementation).
pub trait RevocationSet: Send + Sync {
    /// The Web Number's standing.
    fn standing(&self, web_number: &WebNumber) -> Standing;
    /// Whether this certificate was revoked.
    fn certificate_revoked(&self, certificate_id: &CertificateId) -> bool;
    /// Whether this issuer key was revoked.
    fn key_revoked(&self, key_id: &KeyId) -> bool;
    /// Records a change, returning its sequence number in the history. Durable (for a durable
    /// implementation) and visible to lookups before it returns.
    fn apply(&self, record: RevocationRecord) -> Result<u64, Error> {
        self.apply_batch(std::slice::from_ref(&record))
    }
    /// Records several changes in order with one durable write, all or none; returns the last
    /// sequence number.
    fn apply_batch(&self, records: &[RevocationRecord]) -> Result<u64, Error>;
    /// Up to `limit` history entries with sequence numbers above `after`, oldest first.
    fn history(&self, after: u64, limit: usize) -> Result<Vec<(u64, RevocationRecord)>, Error>;
    /// Counts of what is held: suspended or revoked Web Numbers, revoked certificates, revoked
    /// keys.
    fn counts(&self) -> RevocationCounts;
}

/// Sizes of a revocation set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct RevocationCounts {
    /// Web Numbers suspended or revoked.
    pub web_numbers: usize,
    /// Certificates revoked.
    pub certificates: usize,
    /// Issuer keys revoked.
    pub keys: usize,
}

/// A nonce to consume, with the times that decide how long it must be remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceClaim {
    /// The certificate's id.
    pub certificate_id: CertificateId,
    /// The earliest moment the certificate could have been verified anywhere (its issue time
    /// minus the clock skew). A store whose history begins later cannot know whether it was
    /// already used.
    pub usable_from: u64,
    /// The certificate's expiry (signed, so the same for every presentation of it).
    pub expires_at: u64,
    /// Until when the nonce must be kept: expiry plus clock skew, after which the certificate is
    /// refused as expired anyway.
    pub retain_until: u64,
}

/// What consuming a nonce found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceOutcome {
    /// First use: consumed now.
    Fresh,
    /// Already consumed, earlier or by an earlier claim in the same batch.
    Replayed,
    /// The certificate could have been used before this store's history begins (a new, emptied
    /// or restored store), so the store cannot vouch that this is its first use. Not consumed.
    BeforeHistory,
}

/// The replay-nonce store: insert-if-absent on certificate ids.
///
/// Batched so that a durable implementation makes a whole batch of verifications durable with
/// one write (group commit). An `Err` means none of the batch's outcomes may be reported valid.
pub trait NonceStore: Send + Sync {
    /// Consumes each claim's nonce, in order: exactly one claim per certificate id, over all
    /// callers and all time, ever gets [`NonceOutcome::Fresh`], and only once the store can
    /// vouch for it (durably, for a durable store). The result has one outcome per claim.
    fn consume_batch(&self, claims: &[NonceClaim]) -> Result<Vec<NonceOutcome>, Error>;

    /// Consumes one nonce.
    fn consume(&self, claim: NonceClaim) -> Result<NonceOutcome, Error> {
        let outcomes = self.consume_batch(std::slice::from_ref(&claim))?;
        outcomes.first().copied().ok_or(Error::Store {
            context: "consume",
            detail: "store returned no outcome".into(),
        })
    }

    /// Unix time at which this store's history begins: it knows every nonce consumed since.
    fn history_begins(&self) -> u64;

    /// Live nonces held in memory.
    fn live_nonces(&self) -> usize;

    /// Forgets nonces whose retention ended before `now`, without scanning; returns how many
    /// time buckets were dropped.
    fn expire(&self, now: u64) -> Result<usize, Error>;
}

/// The maps behind every revocation set: lock-free lookups that do not allocate.
#[derive(Debug, Default)]
pub(crate) struct RevocationMaps {
    web_numbers: DashMap<WebNumber, Standing>,
    certificates: DashMap<CertificateId, ()>,
    keys: DashMap<KeyId, ()>,
}

impl RevocationMaps {
    pub(crate) fn standing(&self, web_number: &WebNumber) -> Standing {
        self.web_numbers
            .get(web_number)
            .map_or(Standing::Active, |entry| *entry)
    }

    pub(crate) fn certificate_revoked(&self, certificate_id: &CertificateId) -> bool {
        self.certificates.contains_key(certificate_id)
    }

    pub(crate) fn key_revoked(&self, key_id: &KeyId) -> bool {
        self.keys.contains_key(key_id)
    }

    pub(crate) fn apply(&self, change: &RevocationChange) {
        match *change {
            RevocationChange::WebNumber {
                web_number,
                standing: Standing::Active,
            } => {
                self.web_numbers.remove(&web_number);
            }
            RevocationChange::WebNumber {
                web_number,
                standing,
            } => {
                self.web_numbers.insert(web_number, standing);
            }
            RevocationChange::Certificate { certificate_id } => {
                self.certificates.insert(certificate_id, ());
            }
            RevocationChange::IssuerKey { key_id } => {
                self.keys.insert(key_id, ());
            }
        }
    }

    pub(crate) fn counts(&self) -> RevocationCounts {
        RevocationCounts {
            web_numbers: self.web_numbers.len(),
            certificates: self.certificates.len(),
            keys: self.keys.len(),
        }
    }
}

/// Checks what an authority supplies with a revocation. Records are kept for authorities and
/// must stay small and free of personal data, so reason and authority are short codes.
pub(crate) fn validate_record(record: &RevocationRecord) -> Result<(), Error> {
    let is_code = |text: &str| {
        (1..=64).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    };
    if !is_code(&record.reason) || !is_code(&record.authority) {
        return Err(Error::Config(
            "reason and authority are 1 to 64 characters from A-Z a-z 0-9 - _ . :",
        ));
    }
    Ok(())
}

/// An in-memory revocation set on lock-free maps. Nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryRevocationSet {
    maps: RevocationMaps,
    history: Mutex<Vec<RevocationRecord>>,
}

impl MemoryRevocationSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }
}

impl RevocationSet for MemoryRevocationSet {
    fn standing(&self, web_number: &WebNumber) -> Standing {
        self.maps.standing(web_number)
    }

    fn certificate_revoked(&self, certificate_id: &CertificateId) -> bool {
        self.maps.certificate_revoked(certificate_id)
    }

    fn key_revoked(&self, key_id: &KeyId) -> bool {
        self.maps.key_revoked(key_id)
    }

    fn apply_batch(&self, records: &[RevocationRecord]) -> Result<u64, Error> {
        records.iter().try_for_each(validate_record)?;
        // One lock orders the history and the maps alike.
        let mut history = self.history.lock().map_err(|_| Error::Poisoned)?;
        for record in records {
            self.maps.apply(&record.change);
            history.push(record.clone());
        }
        Ok(history.len() as u64)
    }

    fn history(&self, after: u64, limit: usize) -> Result<Vec<(u64, RevocationRecord)>, Error> {
        let history = self.history.lock().map_err(|_| Error::Poisoned)?;
        Ok(history
            .iter()
            .enumerate()
            .map(|(index, record)| (index as u64 + 1, record.clone()))
            .skip_while(|(seq, _)| *seq <= after)
            .take(limit)
            .collect())
    }

    fn counts(&self) -> RevocationCounts {
        self.maps.counts()
    }
}

/// An in-memory nonce store, bounded in live nonces. Its history begins when it is created, so
/// it refuses certificates that could have been used before.
///
/// When full it refuses new nonces with an error rather than evicting live ones: forgetting a
/// live nonce would let its certificate be accepted twice. A batch that fails part-way keeps the
/// nonces it consumed before the failure; those certificates are answered with the error, never
/// valid, and cannot be used again (failing closed).
#[derive(Debug)]
pub struct MemoryNonceStore {
    nonces: NonceMap,
    history_begins: u64,
    capacity: usize,
}

impl MemoryNonceStore {
    /// Default bound on live nonces.
    pub const DEFAULT_CAPACITY: usize = 10_000_000;
    /// Default width of an expiry bucket, seconds.
    pub const BUCKET_SECONDS: u64 = 60;

    /// A store whose history begins at `history_begins` (Unix seconds; normally now), holding
    /// at most [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY) live nonces.
    pub fn new(history_begins: u64) -> Self {
        Self::with_capacity(history_begins, Self::DEFAULT_CAPACITY)
    }

    /// A store holding at most `capacity` live nonces.
    pub fn with_capacity(history_begins: u64, capacity: usize) -> Self {
        Self {
            nonces: NonceMap::new(Self::BUCKET_SECONDS),
            history_begins,
            capacity,
        }
    }
}

impl NonceStore for MemoryNonceStore {
    fn consume_batch(&self, claims: &[NonceClaim]) -> Result<Vec<NonceOutcome>, Error> {
        let mut outcomes = Vec::with_capacity(claims.len());
        for claim in claims {
            if claim.usable_from < self.history_begins {
                outcomes.push(NonceOutcome::BeforeHistory);
                continue;
            }
            if self.nonces.len() >= self.capacity {
                return Err(Error::Store {
                    context: "nonce store",
                    detail: format!("full: {} live nonces", self.capacity),
                });
            }
            let fresh = self.nonces.insert_if_absent(
                claim.certificate_id,
                claim.expires_at,
                claim.retain_until,
            );
            outcomes.push(if fresh {
                NonceOutcome::Fresh
            } else {
                NonceOutcome::Replayed
            });
        }
        Ok(outcomes)
    }

    fn history_begins(&self) -> u64 {
        self.history_begins
    }

    fn live_nonces(&self) -> usize {
        self.nonces.len()
    }

    fn expire(&self, now: u64) -> Result<usize, Error> {
        Ok(self.nonces.expire(now).len())
    }
}

/// A nonce store whose every write fails, as a poisoned durable store's would.
#[cfg(test)]
pub(crate) struct FailingNonceStore;

#[cfg(test)]
impl NonceStore for FailingNonceStore {
    fn consume_batch(&self, _: &[NonceClaim]) -> Result<Vec<NonceOutcome>, Error> {
        Err(Error::Poisoned)
    }
    fn history_begins(&self) -> u64 {
        0
    }
    fn live_nonces(&self) -> usize {
        0
    }
    fn expire(&self, _: u64) -> Result<usize, Error> {
        Err(Error::Poisoned)
    }
}
