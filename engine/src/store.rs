//! The verification tier's two pieces of state, behind traits: the revocation set and the
//! replay-nonce store. In-memory implementations live here; durable ones implement the same
//! traits and pass the same contract tests.

use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

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
    /// Records a change.
    fn apply(&self, record: RevocationRecord) -> Result<(), Error>;
}

/// A nonce to consume: the certificate id, and how long it must be remembered (its expiry plus
/// the verifier's clock skew, after which the certificate is refused as expired anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceClaim {
    /// The certificate's id.
    pub certificate_id: CertificateId,
    /// Unix seconds until which the nonce must be kept.
    pub retain_until: u64,
}

/// What consuming a nonce found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceOutcome {
    /// First use: consumed now.
    Fresh,
    /// Already consumed, earlier or by an earlier claim in the same batch.
    Replayed,
}

/// The replay-nonce store: insert-if-absent on certificate ids.
///
/// Batched so that a durable implementation makes a whole batch of verifications durable with
/// one write (group commit). An `Err` means none of the batch's outcomes may be reported valid.
pub trait NonceStore: Send + Sync {
    /// Consumes each claim's nonce, in order: exactly one claim per certificate id, over all
    /// callers and all time, ever gets [`NonceOutcome::Fresh`]. The result has one outcome per
    /// claim.
    fn consume_batch(&self, claims: &[NonceClaim]) -> Result<Vec<NonceOutcome>, Error>;

    /// Consumes one nonce.
    fn consume(&self, claim: NonceClaim) -> Result<NonceOutcome, Error> {
        let outcomes = self.consume_batch(std::slice::from_ref(&claim))?;
        outcomes.first().copied().ok_or(Error::Store {
            context: "consume",
            detail: "store returned no outcome".into(),
        })
    }
}

/// An in-memory revocation set on lock-free maps. Nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryRevocationSet {
    web_numbers: DashMap<WebNumber, Standing>,
    certificates: DashMap<CertificateId, ()>,
    keys: DashMap<KeyId, ()>,
}

impl MemoryRevocationSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }
}

impl RevocationSet for MemoryRevocationSet {
    fn standing(&self, web_number: &WebNumber) -> Standing {
        self.web_numbers
            .get(web_number)
            .map_or(Standing::Active, |entry| *entry)
    }

    fn certificate_revoked(&self, certificate_id: &CertificateId) -> bool {
        self.certificates.contains_key(certificate_id)
    }

    fn key_revoked(&self, key_id: &KeyId) -> bool {
        self.keys.contains_key(key_id)
    }

    fn apply(&self, record: RevocationRecord) -> Result<(), Error> {
        match record.change {
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
        Ok(())
    }
}

/// An in-memory nonce store on a lock-free map, bounded in entries.
///
/// When full it refuses new nonces with an error rather than evicting live ones: forgetting a
/// live nonce would let its certificate be accepted twice. A batch that fails part-way keeps the
/// nonces it consumed before the failure; those certificates are answered with the error, never
/// valid, and cannot be used again (failing closed).
#[derive(Debug)]
pub struct MemoryNonceStore {
    nonces: DashMap<CertificateId, u64>,
    /// Kept beside the map because `DashMap::len` locks every shard, which would deadlock
    /// against the shard an insert holds.
    live: AtomicUsize,
    capacity: usize,
}

impl MemoryNonceStore {
    /// Default bound on live nonces: about a minute of national peak traffic with margin.
    pub const DEFAULT_CAPACITY: usize = 10_000_000;

    /// A store holding at most `capacity` live nonces.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            nonces: DashMap::new(),
            live: AtomicUsize::new(0),
            capacity,
        }
    }

    /// Forgets nonces whose retention ended before `now`; returns how many were dropped.
    pub fn expire(&self, now: u64) -> usize {
        let mut dropped = 0;
        self.nonces.retain(|_, retain_until| {
            let keep = *retain_until >= now;
            dropped += usize::from(!keep);
            keep
        });
        self.live.fetch_sub(dropped, Ordering::Relaxed);
        dropped
    }

    /// Live nonces held.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether no nonce is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryNonceStore {
    fn default() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }
}

impl NonceStore for MemoryNonceStore {
    fn consume_batch(&self, claims: &[NonceClaim]) -> Result<Vec<NonceOutcome>, Error> {
        let mut outcomes = Vec::with_capacity(claims.len());
        for claim in claims {
            let outcome = match self.nonces.entry(claim.certificate_id) {
                Entry::Occupied(_) => NonceOutcome::Replayed,
                Entry::Vacant(slot) => {
                    // Reserve a place first so that concurrent inserters never overshoot.
                    if self.live.fetch_add(1, Ordering::Relaxed) >= self.capacity {
                        self.live.fetch_sub(1, Ordering::Relaxed);
                        return Err(Error::Store {
                            context: "nonce store",
                            detail: format!("full: {} live nonces", self.capacity),
                        });
                    }
                    slot.insert(claim.retain_until);
                    NonceOutcome::Fresh
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}
