//! The crate's one error type. No variant carries identity data: a message names the rule that
//! was broken, never the name, number or date that broke it.

use cyberid_engine::Fault;

/// Everything that can go wrong on the issuing side, each with a stable [`code`](Error::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not 17 digits (the first not 0) and a check character.
    #[error(
        "a resident identity number is 18 characters: 17 digits, the first not 0, and a check \
         character (a digit or X)"
    )]
    ResidentIdFormat,
    /// The check character does not match the 17 digits (ISO 7064 MOD 11-2).
    #[error("the resident identity number's check character does not match its digits")]
    ResidentIdCheck,
    /// Characters 7 to 14 are not a calendar date.
    #[error("the resident identity number's birth date is not a calendar date")]
    ResidentIdBirthDate,
    /// A date field is not `YYYY-MM-DD` or not a calendar date from 1800 on.
    #[error("a date is YYYY-MM-DD, a calendar date from 1800-01-01 on")]
    Date,
    /// The document's birth date differs from the one in its identity number.
    #[error("the birth date does not match the one in the resident identity number")]
    BirthDateMismatch,
    /// The birth date lies after today.
    #[error("the birth date is after today")]
    BornInFuture,
    /// A name is empty, too long, padded or holds control characters.
    #[error("a name is 1 to 64 characters without control characters or surrounding spaces")]
    Name,
    /// The document's validity ends before it begins.
    #[error("the document's validity ends before it begins")]
    DocumentValidity,
    /// The document is not valid yet.
    #[error("the identity document is not valid yet")]
    DocumentNotYetValid,
    /// The document's validity has ended.
    #[error("the identity document has expired")]
    DocumentExpired,
    /// A person under 14 enrolls only with a guardian's consent.
    #[error("a person under 14 enrolls only with an enrolled adult guardian's signed consent")]
    GuardianRequired,
    /// A guardian's consent cannot be accepted; the text says which rule it broke.
    #[error("the guardian's consent is refused: {0}")]
    GuardianConsent(&'static str),
    /// A device key is not an SM2 public key in SPKI PEM.
    #[error("a device key is an SM2 public key in SPKI PEM")]
    DeviceKey,
    /// A signature does not verify under the device key it names.
    #[error("the device signature does not verify")]
    DeviceSignature,
    /// A signed holder request is malformed; the text says which rule it broke.
    #[error("malformed holder request: {0}")]
    HolderRequest(&'static str),
    /// A signed request's time is outside the accepted window around now.
    #[error(
        "the request is more than {window} s old or dated more than 30 s ahead of the service's clock"
    )]
    Stale {
        /// The accepted distance, seconds.
        window: u64,
    },
    /// A vault record does not decrypt: a wrong key, or tampered or corrupt ciphertext.
    #[error("a vault record does not decrypt under its key (wrong key or damaged record)")]
    VaultIntegrity,
    /// A vault record names a data key the vault does not hold.
    #[error("the vault holds no data key generation {0}")]
    VaultKeyUnknown(u32),
    /// A vault record or key is not in its binary form; the text says which rule it broke.
    #[error("malformed vault data: {0}")]
    VaultFormat(&'static str),
    /// The blind index or the Web Number changed between reading and writing an enrollment
    /// (a concurrent enrollment of the same person); nothing was written.
    #[error("a concurrent enrollment of the same person got there first; retry")]
    EnrollmentRace,
    /// The holder may not receive certificates now (suspended or revoked).
    #[error("the holder's Web Number is {0}: no certificates are issued for it")]
    HolderStanding(&'static str),
    /// A signed request or consent was already used.
    #[error("this signed request was already used; sign a new one")]
    Replayed,
    /// A consent was refused: it does not match what the platform is entitled to.
    #[error("consent refused: {0}")]
    NotEntitled(&'static str),
    /// A stored enrollment does not decode.
    #[error("a stored enrollment does not decode: {0}")]
    Corrupt(&'static str),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// An error of the engine (a Web Number, a platform id, a signing failure).
    #[error("{0}")]
    Engine(#[from] cyberid_engine::Error),
}

impl Error {
    /// A short, stable, machine-readable code. Codes never change meaning once published.
    pub fn code(&self) -> &'static str {
        match self {
            Error::ResidentIdFormat => "resident_id_format",
            Error::ResidentIdCheck => "resident_id_check",
            Error::ResidentIdBirthDate => "resident_id_birth_date",
            Error::Date => "date",
            Error::BirthDateMismatch => "birth_date_mismatch",
            Error::BornInFuture => "born_in_future",
            Error::Name => "name",
            Error::DocumentValidity => "document_validity",
            Error::DocumentNotYetValid => "document_not_yet_valid",
            Error::DocumentExpired => "document_expired",
            Error::GuardianRequired => "guardian_required",
            Error::GuardianConsent(_) => "guardian_consent",
            Error::DeviceKey => "device_key",
            Error::DeviceSignature => "device_signature",
            Error::HolderRequest(_) => "holder_request",
            Error::Stale { .. } => "stale_request",
            Error::VaultIntegrity => "vault_integrity",
            Error::VaultKeyUnknown(_) => "vault_key_unknown",
            Error::VaultFormat(_) => "vault_format",
            Error::EnrollmentRace => "enrollment_race",
            Error::HolderStanding(_) => "holder_standing",
            Error::Replayed => "request_replayed",
            Error::Corrupt(_) => "registry_corrupt",
            Error::NotEntitled(_) => "consent_not_entitled",
            Error::Random => "random",
            Error::Engine(error) => error.code(),
        }
    }

    /// Who must act on this error.
    pub fn fault(&self) -> Fault {
        match self {
            // The vault's records and keys are the service's own data: one that does not open
            // is a defect or a misconfigured key, never the caller's doing.
            Error::VaultIntegrity
            | Error::VaultKeyUnknown(_)
            | Error::VaultFormat(_)
            | Error::Random => Fault::Bug,
            // As the engine classes a corrupt store: this node cannot serve; another may.
            Error::EnrollmentRace | Error::Corrupt(_) => Fault::Retry,
            Error::Engine(error) => error.fault(),
            _ => Fault::Caller,
        }
    }
}
