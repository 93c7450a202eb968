//! The issuing side's two operations, in the order of their checks: enrolling a person (for
//! an enrollment agent) and issuing a certificate to a holder (for the holder's device).
//! Blocking: both may wait for a synced write.

use std::sync::Arc;

use cyberid_engine::{
    AgeBracket, Assurance, Certificate, Claims, EnrollmentEvent, IssueRequest, Issuer, NonceClaim,
    NonceOutcome, NonceStore, RevocationChange, RevocationRecord, RevocationSet, Standing,
    WebNumber,
};

use crate::{
    Date, DeviceKey, Disclose, DocumentFields, Enrollment, Error, GuardianConsent,
    IdentityDocument, IndexKey, Registry, SignedHolderRequest, SignedLogRead, Vault,
};

/// What the service needs of its store: the registry and the revocation set (standing, and the
/// history that holds the audit trail). Every store that keeps enrollments is both.
pub trait IdentityStore: Registry + RevocationSet {}

impl<S: Registry + RevocationSet + ?Sized> IdentityStore for S {}

/// Time windows of signed requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceConfig {
    /// How far a holder request's time may be from the service's, seconds.
    pub request_window: u64,
    /// How far a guardian's consent's time may be from the service's, seconds: long enough for
    /// a guardian to sign on their phone and the agent to finish the child's enrollment.
    pub consent_window: u64,
}

impl ServiceConfig {
    /// Default request window: 60 s (signed the moment the holder taps "log in").
    pub const DEFAULT_REQUEST_WINDOW: u64 = 60;
    /// Default consent window: 10 minutes.
    pub const DEFAULT_CONSENT_WINDOW: u64 = 600;
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            request_window: Self::DEFAULT_REQUEST_WINDOW,
            consent_window: Self::DEFAULT_CONSENT_WINDOW,
        }
    }
}

/// What an enrollment agent submits.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentRequest {
    /// What the agent read from the card's chip.
    pub document: DocumentFields,
    /// The holder's device public key, SPKI PEM.
    pub device_key: String,
    /// A guardian's consent: required under 14, refused for adults.
    #[serde(default)]
    pub guardian_consent: Option<GuardianConsent>,
}

/// The outcome of an enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Enrolled {
    /// The holder's Web Number.
    pub web_number: WebNumber,
    /// Whether the person was enrolled before (the Web Number is the same one).
    pub re_enrolled: bool,
    /// The linked guardian, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guardian: Option<WebNumber>,
}

/// How many times an enrollment is retried after losing a race to a concurrent one.
const RACE_RETRIES: usize = 4;

/// Reason recorded with every enrollment audit record.
const AUDIT_REASON: &str = "enrollment";

/// Enrollment and holder-bound issuance over a store, a nonce store and the vault.
pub struct IdentityService {
    pub(crate) store: Arc<dyn IdentityStore>,
    nonces: Arc<dyn NonceStore>,
    pub(crate) vault: Arc<Vault>,
    index_key: IndexKey,
    pub(crate) config: ServiceConfig,
}

impl std::fmt::Debug for IdentityService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityService")
            .field("vault", &self.vault)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl IdentityService {
    /// A service over these stores and keys.
    pub fn new(
        store: Arc<dyn IdentityStore>,
        nonces: Arc<dyn NonceStore>,
        vault: Arc<Vault>,
        index_key: IndexKey,
        config: ServiceConfig,
    ) -> Self {
        Self {
            store,
            nonces,
            vault,
            index_key,
            config,
        }
    }

    /// Enrolls the person the agent read, or re-enrolls them with a new device under the Web
    /// Number they hold. `agent` is the enrollment agent's credential name (the audit's "who").
    pub fn enroll(
        &self,
        request: EnrollmentRequest,
        agent: &str,
        now: u64,
    ) -> Result<Enrolled, Error> {
        let today = Date::at(now);
        let document = IdentityDocument::check(request.document, today)?;
        let device = DeviceKey::from_spki_pem(&request.device_key)?;
        let guardian = match (&request.guardian_consent, document.needs_guardian(today)) {
            (None, true) => return Err(Error::GuardianRequired),
            (Some(_), _) if document.age_on(today) >= crate::ADULT_FROM => {
                return Err(Error::GuardianConsent("the person enrolled is an adult"));
            }
            (Some(consent), _) => Some(self.check_consent(consent, &document, &device, now)?),
            (None, false) => None,
        };
        let index = self.index_key.index(document.resident_id());
        // The consent is good once; it is used up only after every check passed.
        if let Some(consent) = &request.guardian_consent {
            self.consume(
                consent.nonce_claim(self.config.consent_window)?,
                self.config.consent_window,
            )?;
        }
        for _ in 0..RACE_RETRIES {
            match self.try_enroll(&document, index, &device, guardian, agent, now) {
                Err(Error::EnrollmentRace) => continue,
                outcome => return outcome,
            }
        }
        Err(Error::EnrollmentRace)
    }

    fn try_enroll(
        &self,
        document: &IdentityDocument,
        index: crate::BlindIndex,
        device: &DeviceKey,
        guardian: Option<WebNumber>,
        agent: &str,
        now: u64,
    ) -> Result<Enrolled, Error> {
        let existing = match self.store.find(&index)? {
            Some(number) => Some((number, self.store.holder(&number)?)),
            None => None,
        };
        // A revoked Web Number is final: its holder enrolls for a new one.
        let kept = existing
            .as_ref()
            .filter(|(number, _)| self.store.standing(number) != Standing::Revoked);
        let web_number = match kept {
            Some((number, _)) => *number,
            None => WebNumber::generate()?,
        };
        let previous = kept.and_then(|(_, held)| held.as_ref());
        let mut events = Vec::new();
        match previous {
            Some(held) => {
                events.push(EnrollmentEvent::ReEnrolled);
                if held.device != *device {
                    events.push(EnrollmentEvent::DeviceChanged);
                }
            }
            None => events.push(EnrollmentEvent::Enrolled),
        }
        // A guardian linked before stays linked unless a new consent names another.
        let guardian = guardian.or(previous.and_then(|held| held.guardian));
        if let Some(guardian) = guardian
            && previous.and_then(|held| held.guardian) != Some(guardian)
        {
            events.push(EnrollmentEvent::GuardianLinked { guardian });
        }
        let enrollment = Enrollment {
            web_number,
            index,
            device: device.clone(),
            sealed: self.vault.seal_document(&web_number, document)?,
            guardian,
            enrolled_at: previous.map_or(now, |held| held.enrolled_at),
            updated_at: now,
        };
        let audit: Vec<RevocationRecord> = events
            .into_iter()
            .map(|event| RevocationRecord {
                change: RevocationChange::Enrollment { web_number, event },
                reason: AUDIT_REASON.into(),
                authority: agent.into(),
                at: now,
            })
            .collect();
        let expected = existing.as_ref().map(|(number, _)| *number);
        self.store.store(&enrollment, expected, &audit)?;
        Ok(Enrolled {
            web_number,
            re_enrolled: previous.is_some(),
            guardian,
        })
    }

    /// The guardian's standing, age and signature; returns the guardian's Web Number.
    fn check_consent(
        &self,
        consent: &GuardianConsent,
        child: &IdentityDocument,
        child_device: &DeviceKey,
        now: u64,
    ) -> Result<WebNumber, Error> {
        let guardian = self
            .store
            .holder(&consent.guardian)?
            .ok_or(Error::GuardianConsent("the guardian is not enrolled"))?;
        if self.store.standing(&guardian.web_number) != Standing::Active {
            return Err(Error::GuardianConsent(
                "the guardian's Web Number is not in good standing",
            ));
        }
        let today = Date::at(now);
        let guardian_document = self
            .vault
            .open_document(&guardian.web_number, &guardian.sealed)?;
        if guardian_document.age_bracket(today) != AgeBracket::Adult {
            return Err(Error::GuardianConsent("the guardian is not an adult"));
        }
        if guardian_document.resident_id() == child.resident_id() {
            return Err(Error::GuardianConsent(
                "a person cannot be their own guardian",
            ));
        }
        consent.verify(
            &guardian.device,
            child.resident_id(),
            child_device,
            now,
            self.config.consent_window,
        )?;
        Ok(guardian.web_number)
    }

    /// Consumes a signed message's one-time nonce.
    pub(crate) fn consume(&self, claim: NonceClaim, window: u64) -> Result<(), Error> {
        match self.nonces.consume(claim)? {
            NonceOutcome::Fresh => Ok(()),
            NonceOutcome::Replayed | NonceOutcome::Repeated => Err(Error::Replayed),
            NonceOutcome::BeforeHistory | NonceOutcome::Expired => Err(Error::Stale { window }),
        }
    }

    /// Checks a holder's request to read their own authentication log: signed by the device
    /// enrolled for the Web Number, fresh, and never used before (its nonce is consumed now).
    /// Returns the holder whose log may be read. A suspended or revoked holder still reads
    /// their log: it is theirs, and most wanted exactly then.
    pub fn authorize_log_read(&self, read: &SignedLogRead, now: u64) -> Result<WebNumber, Error> {
        let web_number = read.unverified().web_number;
        // An unknown Web Number is answered as a bad signature, as for certificate requests.
        let holder = self
            .store
            .holder(&web_number)?
            .ok_or(Error::DeviceSignature)?;
        read.verify(&holder.device, now, self.config.request_window)?;
        self.consume(
            read.nonce_claim(self.config.request_window),
            self.config.request_window,
        )?;
        Ok(web_number)
    }

    /// Issues a certificate to the holder who signed `request`, with the claims computed from
    /// the vault now: the age bracket when the holder asked to disclose it, and always `minor`
    /// for a holder under 18.
    pub fn issue(
        &self,
        request: &SignedHolderRequest,
        issuer: &Issuer,
        now: u64,
    ) -> Result<Certificate, Error> {
        let web_number = request.unverified().web_number;
        // An unknown Web Number is answered as a bad signature: a caller learns nothing about
        // who is enrolled.
        let holder = self
            .store
            .holder(&web_number)?
            .ok_or(Error::DeviceSignature)?;
        let trusted = request.verify(&holder.device, now, self.config.request_window)?;
        match self.store.standing(&web_number) {
            Standing::Active => {}
            Standing::Suspended => return Err(Error::HolderStanding("suspended")),
            Standing::Revoked => return Err(Error::HolderStanding("revoked")),
        }
        let document = self.vault.open_document(&web_number, &holder.sealed)?;
        let age = match (document.age_bracket(Date::at(now)), trusted.disclose) {
            (AgeBracket::Minor, _) => Some(AgeBracket::Minor),
            (AgeBracket::Adult, Disclose::Age) => Some(AgeBracket::Adult),
            (AgeBracket::Adult, Disclose::Nothing) => None,
        };
        let issue = IssueRequest {
            web_number,
            assurance: Assurance::Substantial,
            claims: Claims {
                age,
                consent: trusted.consent,
            },
            audience: trusted.audience,
            lifetime: trusted.lifetime,
        };
        // Checked before the request is used up, so a refused lifetime does not burn it.
        issuer.check(&issue)?;
        self.consume(
            request.nonce_claim(self.config.request_window),
            self.config.request_window,
        )?;
        Ok(issuer.issue(&issue, now)?)
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
