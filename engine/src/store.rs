//! The verification tier's two pieces of state, behind traits: the revocation set and the
//! replay-nonce store. In-memory implementations live here; durable ones implement the same
//! traits and pass the same contract tests.

use std::collections::HashMap;
use std::sync::Mutex;

use dashmap::DashMap;

use crate::nonce_map::{Inserted, NonceMap};

use crate::{CertificateId, Error, KeyId, LogItem, Receipt, RequestKey, WebNumber};

/// Whether a Web Number may currently authenticate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// In good standing (the default for every Web Number never acted on).
    #[default]
    Active,
    /// Temporarily barred, for example while a report of theft is investigated; reinstating
    /// makes it active again.
    Suspended,
    /// Permanently barred: final. A revoked Web Number is never suspended or reinstated
    /// ([`Error::RevocationFinal`]); its holder enrolls for a new one.
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
    /// Changes no standing: an enrollment event, kept in the same history so that the audit
    /// trail of who enrolled whom, when, with which device change or guardian, is one ordered
    /// log beside the revocations. Never identity data.
    Enrollment {
        /// The holder.
        web_number: WebNumber,
        /// What happened.
        #[serde(flatten)]
        event: EnrollmentEvent,
    },
}

/// What an enrollment changed, as the audit trail records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum EnrollmentEvent {
    /// A person enrolled for the first time and received this Web Number.
    Enrolled,
    /// The same person enrolled again (a new phone): the Web Number is kept.
    ReEnrolled,
    /// The holder's device key was replaced; the old one stopped working at once.
    DeviceChanged,
    /// A guardian was linked to the holder (a child under 14 at enrollment).
    GuardianLinked {
        /// The guardian's Web Number.
        guardian: WebNumber,
    },
}

impl RevocationChange {
    /// Whether this change affects verification (a standing, a certificate, a key) rather than
    /// only recording an event.
    pub fn changes_standing(&self) -> bool {
        !matches!(self, RevocationChange::Enrollment { .. })
    }
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
    /// Whether this set's view is known to be current, checked once per batch before any
    /// verdict is answered `valid`. A set whose authoritative copy lives elsewhere (a cluster)
    /// answers an error (retryable) when it cannot prove that its lookups reflect every
    /// acknowledged revocation; a local set is always current.
    fn check_current(&self) -> Result<(), Error> {
        Ok(())
    }
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
    /// The request claiming it, if the caller named one: a later claim with the same key is
    /// the same request retried ([`NonceOutcome::Repeated`]), never a replay.
    pub request: Option<RequestKey>,
}

/// What consuming a nonce found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceOutcome {
    /// First use: consumed now.
    Fresh,
    /// Already consumed, earlier or by an earlier claim in the same batch.
    Replayed,
    /// Already consumed by this same request (same [`RequestKey`]): a retry after a lost
    /// answer, answered as the first time. A durable store answers it only once the first
    /// claim is durable.
    Repeated,
    /// The certificate could have been used before this store's history begins (a new, emptied
    /// or restored store), so the store cannot vouch that this is its first use. Not consumed.
    BeforeHistory,
    /// The claim's retention ended before the store last expired nonces: the certificate is
    /// expired by the store's clock (the verifier checked it a moment earlier), and the record
    /// of an earlier use may already be gone. Not consumed; answered `expired`.
    Expired,
}

/// The replay-nonce store: insert-if-absent on certificate ids.
///
/// Batched so that a durable implementation makes a whole batch of verifications durable with
/// one write (group commit). An `Err` means none of the batch's outcomes may be reported valid,
/// and an implementation must then consume none of the batch's nonces, so that an error never
/// uses up a certificate (the one exception, a write whose outcome the storage itself cannot
/// tell, is documented per implementation in `docs/store.md`).
pub trait NonceStore: Send + Sync {
    /// Consumes each claim's nonce, in order: exactly one claim per certificate id, over all
    /// callers and all time, ever gets [`NonceOutcome::Fresh`], and only once the store can
    /// vouch for it (durably, for a durable store). The result has one outcome per claim.
    fn consume_batch(&self, claims: &[NonceClaim]) -> Result<Vec<NonceOutcome>, Error>;

    /// Whether this store keeps the authentication log ([`consume_logged`](Self::consume_logged)).
    fn keeps_log(&self) -> bool {
        false
    }

    /// Consumes the claims as [`consume_batch`](Self::consume_batch) does and appends the
    /// batch's log entries in the same durable write, so that logging costs no extra fsync and
    /// no acknowledged verdict can lack its entry. Each item is finalised with
    /// [`LogItem::finalise`]; the result has one receipt per item (`None` for an item not
    /// logged), in order. An `Err` consumes nothing and appends nothing. Stores that keep no
    /// log refuse with [`Error::Config`].
    fn consume_logged(
        &self,
        claims: &[NonceClaim],
        log: &[LogItem],
    ) -> Result<(Vec<NonceOutcome>, Vec<Option<Receipt>>), Error> {
        let _ = (claims, log);
        Err(Error::Config(
            "this nonce store keeps no authentication log",
        ))
    }

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

/// The maps behind every revocation set, for stores to hold the whole set in memory: lock-free
/// lookups that do not allocate.
#[derive(Debug, Default)]
pub struct RevocationMaps {
    web_numbers: DashMap<WebNumber, Standing>,
    certificates: DashMap<CertificateId, ()>,
    keys: DashMap<KeyId, ()>,
}

impl RevocationMaps {
    /// The Web Number's standing.
    pub fn standing(&self, web_number: &WebNumber) -> Standing {
        self.web_numbers
            .get(web_number)
            .map_or(Standing::Active, |entry| *entry)
    }

    /// Whether this certificate was revoked.
    pub fn certificate_revoked(&self, certificate_id: &CertificateId) -> bool {
        self.certificates.contains_key(certificate_id)
    }

    /// Whether this issuer key was revoked.
    pub fn key_revoked(&self, key_id: &KeyId) -> bool {
        self.keys.contains_key(key_id)
    }

    /// Checks a batch of records as it would apply in order to the current maps: every record's
    /// text is valid and no record moves a revoked Web Number. Call it under the lock that
    /// orders writes, before writing anything.
    pub fn check_batch(&self, records: &[RevocationRecord]) -> Result<(), Error> {
        let mut pending: HashMap<WebNumber, Standing> = HashMap::new();
        for record in records {
            record.validate()?;
            if let RevocationChange::WebNumber {
                web_number,
                standing,
            } = record.change
            {
                let current = pending
                    .get(&web_number)
                    .copied()
                    .unwrap_or_else(|| self.standing(&web_number));
                if current == Standing::Revoked && standing != Standing::Revoked {
                    return Err(Error::RevocationFinal);
                }
                pending.insert(web_number, standing);
            }
        }
        Ok(())
    }

    /// Applies one change (already checked and durable).
    pub fn apply(&self, change: &RevocationChange) {
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
            RevocationChange::Enrollment { .. } => {}
        }
    }

    /// Sizes of the set.
    pub fn counts(&self) -> RevocationCounts {
        RevocationCounts {
            web_numbers: self.web_numbers.len(),
            certificates: self.certificates.len(),
            keys: self.keys.len(),
        }
    }
}

impl RevocationRecord {
    /// Checks a reason alone, for callers that refuse a bad one before building the record:
    /// 1 to 64 characters from A-Z a-z 0-9, space and `- _ . : , / ( )`, without a leading or
    /// trailing space ([`Error::BadReason`]).
    pub fn validate_reason(reason: &str) -> Result<(), Error> {
        let bytes = reason.as_bytes();
        let ok = (1..=64).contains(&bytes.len())
            && bytes.first() != Some(&b' ')
            && bytes.last() != Some(&b' ')
            && bytes.iter().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b' ' | b'-' | b'_' | b'.' | b':' | b',' | b'/' | b'(' | b')'
                    )
            });
        if ok { Ok(()) } else { Err(Error::BadReason) }
    }

    /// Checks what an authority supplies with a revocation. Records are kept for authorities and
    /// must stay small: the reason is 1 to 64 characters from A-Z a-z 0-9, space and
    /// `- _ . : , / ( )`, without a leading or trailing space ([`Error::BadReason`]); the
    /// authority is a credential name, 1 to 64 characters from A-Z a-z 0-9 `- _ . :`.
    pub fn validate(&self) -> Result<(), Error> {
        Self::validate_reason(&self.reason)?;
        Self::validate_authority(&self.authority)
    }

    /// Checks an authority's credential name alone: 1 to 64 characters from A-Z a-z 0-9
    /// `- _ . :` ([`Error::Config`]).
    pub fn validate_authority(authority: &str) -> Result<(), Error> {
        let authority_ok = (1..=64).contains(&authority.len())
            && authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if !authority_ok {
            return Err(Error::Config(
                "an authority is 1 to 64 characters from A-Z a-z 0-9 - _ . :",
            ));
        }
        Ok(())
    }
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
        // One lock orders the history and the maps alike.
        let mut history = self.history.lock().map_err(|_| Error::Poisoned)?;
        self.maps.check_batch(records)?;
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
/// When full it refuses a whole batch with [`Error::NonceCapacity`] before consuming anything,
/// rather than evict live nonces (forgetting one would let its certificate be accepted twice)
/// or consume part of the batch (an error must never use up a certificate). Concurrent batches
/// may overshoot the bound by at most one batch each.
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
        if self.nonces.len().saturating_add(claims.len()) > self.capacity {
            return Err(Error::NonceCapacity {
                capacity: self.capacity,
            });
        }
        Ok(claims
            .iter()
            .map(|claim| claim_in_memory(&self.nonces, self.history_begins, claim))
            .collect())
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

/// The in-memory claim every nonce store makes first: the history rule, then insert-if-absent.
/// A durable store makes the `Fresh` ones durable before it answers, and releases them with
/// [`NonceMap::remove`] if it cannot.
pub fn claim_in_memory(nonces: &NonceMap, history_begins: u64, claim: &NonceClaim) -> NonceOutcome {
    if claim.usable_from < history_begins {
        return NonceOutcome::BeforeHistory;
    }
    let inserted = nonces.insert_if_absent(
        claim.certificate_id,
        claim.expires_at,
        claim.retain_until,
        claim.request,
    );
    match inserted {
        Inserted::Fresh => NonceOutcome::Fresh,
        Inserted::Present => NonceOutcome::Replayed,
        Inserted::Repeated => NonceOutcome::Repeated,
        Inserted::Expired => NonceOutcome::Expired,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enrollment_event_reads_flat_in_the_history() {
        let record = RevocationRecord {
            change: RevocationChange::Enrollment {
                web_number: "7K3MQ9XZ2P".parse().unwrap(),
                event: EnrollmentEvent::GuardianLinked {
                    guardian: "H4TJ8W2NQR".parse().unwrap(),
                },
            },
            reason: "enrollment".into(),
            authority: "app-backend".into(),
            at: 1_796_000_000,
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "target": "enrollment", "web_number": "7K3MQ9XZ2P", "event": "guardian_linked",
                "guardian": "H4TJ8W2NQR", "reason": "enrollment", "authority": "app-backend",
                "at": 1_796_000_000u64,
            })
        );
        assert_eq!(
            serde_json::from_value::<RevocationRecord>(json).unwrap(),
            record
        );
    }
}
