//! The registry of enrollments, behind a trait: storage engines implement it in their own
//! crates and pass the same contract suite ([`crate::contract`]).
//!
//! Two maps, written together: blind index → Web Number (one per person, for life) and Web
//! Number → [`Enrollment`] (device key, sealed identity, guardian). Each write carries its audit
//! records, which the implementation appends to the revocation history in the same durable
//! write, so that no enrollment exists without its audit entry.
//!
//! Beside them, holders' standing consents ([`StandingConsent`]), one per holder and platform.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use cyberid_engine::{PLATFORM_ID_LEN, PlatformId, RevocationRecord, RevocationSet, WebNumber};

use crate::{BLIND_INDEX_LEN, BlindIndex, DeviceKey, Error, SealedRecord, StandingConsent};

/// A holder's enrollment as the registry keeps it. Nothing in it is identity data in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// The holder.
    pub web_number: WebNumber,
    /// The blind index of the holder's resident identity number.
    pub index: BlindIndex,
    /// The device key that signs the holder's requests; replaced at re-enrollment.
    pub device: DeviceKey,
    /// The identity document, sealed in the vault for this Web Number.
    pub sealed: SealedRecord,
    /// The guardian who consented to the enrollment of a child.
    pub guardian: Option<WebNumber>,
    /// First enrollment, Unix seconds.
    pub enrolled_at: u64,
    /// Latest (re-)enrollment, Unix seconds.
    pub updated_at: u64,
}

/// Version byte of an enrollment's stored form.
const ENROLLMENT_VERSION: u8 = 1;
const SEC1_LEN: usize = 65;

impl Enrollment {
    /// The stored form: `version (1) || blind index (32) || enrolled_at (u64 BE) || updated_at
    /// (u64 BE) || guardian (0, or 1 and 10 bytes) || device key (SEC1, 65) || sealed record`.
    pub fn encode(&self) -> Vec<u8> {
        let device = self.device.to_sec1_bytes();
        let mut bytes =
            Vec::with_capacity(1 + 32 + 16 + 11 + SEC1_LEN + self.sealed.as_bytes().len());
        bytes.push(ENROLLMENT_VERSION);
        bytes.extend_from_slice(self.index.as_bytes());
        bytes.extend_from_slice(&self.enrolled_at.to_be_bytes());
        bytes.extend_from_slice(&self.updated_at.to_be_bytes());
        match &self.guardian {
            Some(guardian) => {
                bytes.push(1);
                bytes.extend_from_slice(guardian.as_bytes());
            }
            None => bytes.push(0),
        }
        bytes.extend_from_slice(&device);
        bytes.extend_from_slice(self.sealed.as_bytes());
        bytes
    }

    /// Reads the stored form of `web_number`'s enrollment.
    pub fn decode(web_number: WebNumber, bytes: &[u8]) -> Result<Self, Error> {
        let mut rest = bytes;
        let mut take = |n: usize| -> Result<&[u8], Error> {
            if rest.len() < n {
                return Err(Error::Corrupt("an enrollment record is truncated"));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        if take(1)? != [ENROLLMENT_VERSION] {
            return Err(Error::Corrupt("unknown enrollment record version"));
        }
        let index: [u8; BLIND_INDEX_LEN] = take(BLIND_INDEX_LEN)?.try_into().unwrap_or([0; 32]);
        let word = |bytes: &[u8]| u64::from_be_bytes(bytes.try_into().unwrap_or([0; 8]));
        let enrolled_at = word(take(8)?);
        let updated_at = word(take(8)?);
        let guardian = match take(1)? {
            [0] => None,
            [1] => Some(
                std::str::from_utf8(take(10)?)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .ok_or(Error::Corrupt(
                        "an enrollment's guardian is not a Web Number",
                    ))?,
            ),
            _ => {
                return Err(Error::Corrupt(
                    "an enrollment's guardian flag is not 0 or 1",
                ));
            }
        };
        let device = DeviceKey::from_sec1_bytes(take(SEC1_LEN)?)
            .map_err(|_| Error::Corrupt("an enrollment's device key is not an SM2 point"))?;
        let sealed = SealedRecord::from_bytes(rest.to_vec())
            .map_err(|_| Error::Corrupt("an enrollment's sealed record is malformed"))?;
        Ok(Self {
            web_number,
            index: BlindIndex::from_bytes(index),
            device,
            sealed,
            guardian,
            enrolled_at,
            updated_at,
        })
    }
}

/// Where enrollments are kept.
pub trait Registry: Send + Sync {
    /// The Web Number enrolled under this blind index, if any.
    fn find(&self, index: &BlindIndex) -> Result<Option<WebNumber>, Error>;

    /// A holder's enrollment, if the Web Number is enrolled.
    fn holder(&self, web_number: &WebNumber) -> Result<Option<Enrollment>, Error>;

    /// Writes `enrollment` and appends `audit` to the revocation history, in one durable
    /// write, if the registry still holds what the caller read: for `expected = None` (a first
    /// enrollment) neither the blind index nor the Web Number is taken; for `Some(previous)`
    /// the blind index still names `previous` (which `enrollment.web_number` keeps, or replaces
    /// when `previous` was revoked). Otherwise [`Error::EnrollmentRace`] and nothing is
    /// written. Returns the last audit sequence number.
    fn store(
        &self,
        enrollment: &Enrollment,
        expected: Option<WebNumber>,
        audit: &[RevocationRecord],
    ) -> Result<u64, Error>;

    /// The holder's standing consent to `platform`, if any.
    fn consent(
        &self,
        web_number: &WebNumber,
        platform: &PlatformId,
    ) -> Result<Option<StandingConsent>, Error>;

    /// Every standing consent of the holder, in the order of their platform ids' bytes.
    fn consents(&self, web_number: &WebNumber) -> Result<Vec<StandingConsent>, Error>;

    /// Records the holder's consent, replacing any earlier one to the same platform; durable
    /// when this returns.
    fn put_consent(&self, web_number: &WebNumber, consent: &StandingConsent) -> Result<(), Error>;

    /// Withdraws the holder's consent to `platform`, durably; whether there was one. From the
    /// return on, no verification discloses anything under it.
    fn withdraw_consent(
        &self,
        web_number: &WebNumber,
        platform: &PlatformId,
    ) -> Result<bool, Error>;
}

/// An in-memory registry, writing its audit records to a revocation set. Nothing survives the
/// process; for tests and the engine-only tour.
pub struct MemoryRegistry<R> {
    history: R,
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    by_index: HashMap<BlindIndex, WebNumber>,
    holders: HashMap<WebNumber, Enrollment>,
    consents: BTreeMap<(WebNumber, [u8; PLATFORM_ID_LEN]), StandingConsent>,
}

impl<R: RevocationSet> MemoryRegistry<R> {
    /// An empty registry recording its audit trail in `history`.
    pub fn new(history: R) -> Self {
        Self {
            history,
            state: Mutex::default(),
        }
    }
}

impl<R> MemoryRegistry<R> {
    fn state(&self) -> Result<std::sync::MutexGuard<'_, MemoryState>, cyberid_engine::Error> {
        self.state
            .lock()
            .map_err(|_| cyberid_engine::Error::Poisoned)
    }
}

/// The audit trail's revocation set, so that the registry is one store as a durable one is.
impl<R: RevocationSet> RevocationSet for MemoryRegistry<R> {
    fn standing(&self, web_number: &WebNumber) -> cyberid_engine::Standing {
        self.history.standing(web_number)
    }
    fn certificate_revoked(&self, id: &cyberid_engine::CertificateId) -> bool {
        self.history.certificate_revoked(id)
    }
    fn key_revoked(&self, key_id: &cyberid_engine::KeyId) -> bool {
        self.history.key_revoked(key_id)
    }
    fn apply_batch(&self, records: &[RevocationRecord]) -> Result<u64, cyberid_engine::Error> {
        // Under the registry's lock, so an enrollment's audit and other records keep one order.
        let _state = self.state()?;
        self.history.apply_batch(records)
    }
    fn history(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, RevocationRecord)>, cyberid_engine::Error> {
        self.history.history(after, limit)
    }
    fn counts(&self) -> cyberid_engine::RevocationCounts {
        self.history.counts()
    }
}

impl<R> std::fmt::Debug for MemoryRegistry<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRegistry").finish_non_exhaustive()
    }
}

/// The check every implementation makes before writing, against what it holds now.
pub fn check_expected(
    enrollment: &Enrollment,
    expected: Option<WebNumber>,
    under_index: Option<WebNumber>,
    number_taken: bool,
) -> Result<(), Error> {
    let ok = match expected {
        None => under_index.is_none() && !number_taken,
        Some(previous) if previous == enrollment.web_number => under_index == Some(previous),
        // A revoked holder enrolls for a new Web Number: the new one must be free.
        Some(previous) => under_index == Some(previous) && !number_taken,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::EnrollmentRace)
    }
}

impl<R: RevocationSet> Registry for MemoryRegistry<R> {
    fn find(&self, index: &BlindIndex) -> Result<Option<WebNumber>, Error> {
        let state = self.state()?;
        Ok(state.by_index.get(index).copied())
    }

    fn holder(&self, web_number: &WebNumber) -> Result<Option<Enrollment>, Error> {
        let state = self.state()?;
        Ok(state.holders.get(web_number).cloned())
    }

    fn store(
        &self,
        enrollment: &Enrollment,
        expected: Option<WebNumber>,
        audit: &[RevocationRecord],
    ) -> Result<u64, Error> {
        let mut state = self.state()?;
        check_expected(
            enrollment,
            expected,
            state.by_index.get(&enrollment.index).copied(),
            state.holders.contains_key(&enrollment.web_number),
        )?;
        // The audit first: if it fails, nothing changed.
        let seq = self.history.apply_batch(audit)?;
        state
            .by_index
            .insert(enrollment.index, enrollment.web_number);
        state
            .holders
            .insert(enrollment.web_number, enrollment.clone());
        Ok(seq)
    }

    fn consent(
        &self,
        web_number: &WebNumber,
        platform: &PlatformId,
    ) -> Result<Option<StandingConsent>, Error> {
        let state = self.state()?;
        Ok(state
            .consents
            .get(&(*web_number, *platform.audience_field()))
            .copied())
    }

    fn consents(&self, web_number: &WebNumber) -> Result<Vec<StandingConsent>, Error> {
        let state = self.state()?;
        Ok(state
            .consents
            .range((*web_number, [0; PLATFORM_ID_LEN])..=(*web_number, [u8::MAX; PLATFORM_ID_LEN]))
            .map(|(_, consent)| *consent)
            .collect())
    }

    fn put_consent(&self, web_number: &WebNumber, consent: &StandingConsent) -> Result<(), Error> {
        let mut state = self.state()?;
        state
            .consents
            .insert((*web_number, *consent.platform.audience_field()), *consent);
        Ok(())
    }

    fn withdraw_consent(
        &self,
        web_number: &WebNumber,
        platform: &PlatformId,
    ) -> Result<bool, Error> {
        let mut state = self.state()?;
        Ok(state
            .consents
            .remove(&(*web_number, *platform.audience_field()))
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cyberid_engine::MemoryRevocationSet;

    fn memory(
        _: crate::contract::Setup,
    ) -> crate::contract::Subject<MemoryRegistry<MemoryRevocationSet>> {
        crate::contract::Subject::new(MemoryRegistry::new(MemoryRevocationSet::new()), ())
    }

    crate::registry_contract!(memory);

    #[test]
    fn a_stored_enrollment_decodes_and_a_damaged_one_is_refused() {
        let enrollment = crate::contract::enrollment(3, Some("H4TJ8W2NQR".parse().unwrap()));
        let bytes = enrollment.encode();
        assert_eq!(
            Enrollment::decode(enrollment.web_number, &bytes).unwrap(),
            enrollment
        );
        for cut in [0, 1, 40, 57, 60, 100] {
            assert!(
                Enrollment::decode(enrollment.web_number, &bytes[..cut]).is_err(),
                "{cut}"
            );
        }
        let mut version = bytes.clone();
        version[0] = 9;
        assert!(Enrollment::decode(enrollment.web_number, &version).is_err());
    }
}
