//! The engine's one error type.
//!
//! Verdicts are not errors: an invalid certificate is a normal answer ([`crate::Reason`]). An
//! [`Error`] means the engine could not answer or act: bad input to an API (a malformed Web
//! Number typed by an operator, an unreadable key file), a refused policy, or a store that cannot
//! make a change durable. No variant carries identity data; a rejected character is named only
//! when it is one of the look-alikes the alphabet leaves out, to tell the user what they misread.

/// Everything that can go wrong in the engine, each with a stable [`code`](Error::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Web Number did not have exactly 10 characters.
    #[error("a Web Number has exactly 10 characters, this one has {0}")]
    WebNumberLength(usize),
    /// A Web Number character is outside the alphabet.
    #[error("Web Number character {position} is not in the alphabet{hint}")]
    WebNumberCharacter {
        /// Zero-based position of the first offending character.
        position: usize,
        /// A hint for the look-alike letters the alphabet leaves out (empty otherwise).
        hint: &'static str,
    },
    /// A platform id is empty, too long, or uses characters outside `[a-z0-9._-]`.
    #[error("a platform id is 1 to 16 characters from a-z, 0-9, '.', '_' and '-'")]
    PlatformId,
    /// A key id is not 16 hexadecimal digits.
    #[error("a key id is 16 hexadecimal digits")]
    KeyId,
    /// A PEM or DER key could not be read as an SM2 key.
    #[error(
        "not an SM2 {0} key in the expected encoding (PKCS#8 PEM for private keys, SPKI PEM for public keys)"
    )]
    KeyEncoding(&'static str),
    /// A key with this id is already registered.
    #[error("issuer key {0} is already registered")]
    DuplicateKey(crate::KeyId),
    /// A certificate lifetime outside the allowed range was requested.
    #[error("certificate lifetime must be between 1 and {max} seconds, {requested} was asked for")]
    Lifetime {
        /// The lifetime asked for, in seconds.
        requested: u64,
        /// The configured maximum, in seconds.
        max: u64,
    },
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Config(&'static str),
    /// A certificate could not be decoded; the text says which rule it broke.
    #[error("malformed certificate: {0}")]
    Malformed(&'static str),
    /// A certificate declares a format version this engine does not know.
    #[error("unsupported certificate version {0}")]
    UnsupportedVersion(u32),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Signing failed (the key or the digest was rejected by the SM2 implementation).
    #[error("SM2 signing failed")]
    Signing,
    /// A store could not make a change durable; nothing it was asked to do is acknowledged.
    #[error("store failure ({context}): {detail}")]
    Store {
        /// What the store was doing.
        context: &'static str,
        /// The underlying failure, free of identity data.
        detail: String,
    },
    /// The data directory holds something other than a cyberid store.
    #[error("{0} is not empty and is not a cyberid data directory")]
    NotADataDirectory(String),
    /// The data directory is a cyberid store of another format version.
    #[error(
        "the store was written in format version {found}; this build reads version {supported}"
    )]
    IncompatibleFormat {
        /// The version on disk.
        found: u64,
        /// The version this build supports.
        supported: u32,
    },
    /// Another process holds the store open.
    #[error("the store is locked by another process: {0}")]
    Locked(String),
    /// The store failed an integrity check; it is not opened, so nothing acknowledged is
    /// silently lost.
    #[error("the store is corrupt: {0}")]
    Corrupt(String),
    /// The verification queue is full: try again shortly.
    #[error("the verification queue is full")]
    Overloaded,
    /// The pipeline is shutting down and takes no more work.
    #[error("the verification pipeline is shutting down")]
    Shutdown,
    /// A store failed earlier and refuses all further work until it is reopened.
    #[error("store is poisoned by an earlier failure and refuses further work")]
    Poisoned,
    /// The nonce store holds its maximum of live nonces; nothing of the batch was consumed.
    /// Space frees as certificates expire, so the caller may retry shortly.
    #[error("the nonce store is full ({capacity} live nonces); nothing was consumed")]
    NonceCapacity {
        /// The configured bound on live nonces.
        capacity: usize,
    },
    /// A revoked Web Number stays revoked: it cannot be suspended or reinstated.
    #[error("the Web Number is revoked, which is final; it cannot be suspended or reinstated")]
    RevocationFinal,
    /// A revocation's reason is not 1 to 64 characters from the documented set.
    #[error(
        "a reason is 1 to 64 characters from A-Z a-z 0-9, space and - _ . : , / ( ), \
         without a leading or trailing space"
    )]
    BadReason,
    /// Consent to disclose attributes is given to one platform: a certificate carrying it must
    /// name its audience.
    #[error("consent to disclose attributes needs an audience: name the platform it is for")]
    ConsentWithoutAudience,
}

/// Who must act on an [`Error`]: it picks the HTTP status and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The request is wrong; repeating it unchanged fails the same way (HTTP 4xx).
    Caller,
    /// The service cannot answer now, and nothing was consumed or changed; the same request may
    /// succeed later or at another node (HTTP 503 with Retry-After).
    Retry,
    /// Something that must not happen did: a defect to report (HTTP 500).
    Bug,
}

impl Error {
    /// A short, stable, machine-readable code for this error, fit for logs, metrics and API
    /// bodies. Codes never change meaning once published.
    pub fn code(&self) -> &'static str {
        match self {
            Error::WebNumberLength(_) => "web_number_length",
            Error::WebNumberCharacter { .. } => "web_number_character",
            Error::PlatformId => "platform_id",
            Error::KeyId => "key_id",
            Error::KeyEncoding(_) => "key_encoding",
            Error::DuplicateKey(_) => "duplicate_key",
            Error::Lifetime { .. } => "lifetime",
            Error::Config(_) => "config",
            Error::Malformed(_) => "malformed",
            Error::UnsupportedVersion(_) => "unsupported_version",
            Error::Random => "random",
            Error::Signing => "signing",
            Error::Store { .. } => "store",
            Error::NotADataDirectory(_) => "not_a_data_directory",
            Error::IncompatibleFormat { .. } => "store_format",
            Error::Locked(_) => "store_locked",
            Error::Corrupt(_) => "store_corrupt",
            Error::Overloaded => "overloaded",
            Error::Shutdown => "shutting_down",
            Error::Poisoned => "store_poisoned",
            Error::NonceCapacity { .. } => "nonce_store_full",
            Error::RevocationFinal => "revocation_final",
            Error::BadReason => "bad_reason",
            Error::ConsentWithoutAudience => "consent_without_audience",
        }
    }

    /// Who must act on this error.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Random | Error::Signing => Fault::Bug,
            Error::Store { .. }
            | Error::Poisoned
            | Error::NotADataDirectory(_)
            | Error::IncompatibleFormat { .. }
            | Error::Locked(_)
            | Error::Corrupt(_)
            | Error::Overloaded
            | Error::Shutdown
            | Error::NonceCapacity { .. } => Fault::Retry,
            Error::WebNumberLength(_)
            | Error::WebNumberCharacter { .. }
            | Error::PlatformId
            | Error::KeyId
            | Error::KeyEncoding(_)
            | Error::DuplicateKey(_)
            | Error::Lifetime { .. }
            | Error::Config(_)
            | Error::Malformed(_)
            | Error::UnsupportedVersion(_)
            | Error::RevocationFinal
            | Error::BadReason
            | Error::ConsentWithoutAudience => Fault::Caller,
        }
    }

    /// Whether the caller caused this error (bad input, refused policy) rather than the engine or
    /// its storage. Servers map the first to 4xx answers and the second to 5xx.
    pub fn is_caller_fault(&self) -> bool {
        self.fault() == Fault::Caller
    }
}
