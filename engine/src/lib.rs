//! The domain of cyberid, the verification tier of a national network identity service.
//!
//! A citizen holds a lifelong [`WebNumber`] (网号). For each authentication the public service
//! issues a one-time Web Certificate (网证, [`Certificate`]): signed with SM2 by an issuer key,
//! short-lived, carrying a random 128-bit id that serves as the replay nonce. A platform sends
//! the certificate to the verification tier and learns a [`Verdict`] only: valid with the Web
//! Number, assurance level and disclosed claims, or invalid with one stable [`Reason`].
//!
//! The wire format is specified in `docs/protocol.md`.
//!
//! ```
//! use std::sync::Arc;
//! use cyberid_engine::{
//!     Attributes, Context, Input, IssueRequest, Issuer, IssuerPolicy, IssuerSigningKey, KeyRegistry,
//!     MemoryNonceStore, MemoryRevocationSet, Reason, Verdict, Verifier, VerifierConfig,
//!     WebNumber,
//! };
//!
//! // The public service's side: a key and a certificate for one authentication.
//! let issuer = Issuer::new(IssuerSigningKey::generate()?, IssuerPolicy::default())?;
//! let holder = WebNumber::generate()?;
//! let started = 1_790_000_000;
//! let now = started + 60;
//! let certificate = issuer.issue(&IssueRequest::new(holder), now)?;
//! let text = certificate.to_text(); // what the QR code carries: "WZ1:..."
//!
//! // The verification tier's side.
//! let keys = Arc::new(KeyRegistry::new());
//! keys.insert(issuer.key().public_key().clone())?;
//! let verifier = Verifier::new(
//!     keys,
//!     Arc::new(MemoryRevocationSet::new()),
//!     // The nonce store knows every certificate used since it started, and refuses any
//!     // certificate that could have been used before.
//!     Arc::new(MemoryNonceStore::new(started)),
//!     VerifierConfig::default(),
//! );
//! let context = Context {
//!     platform: Some("shop.example".parse()?),
//!     now: now + 5,
//!     request: None,
//!     // Attributes beyond the result, when the platform is entitled and the holder consented.
//!     disclose: Attributes::NONE,
//! };
//!
//! match verifier.verify(Input::Text(&text), &context)? {
//!     Verdict::Valid(verified) => assert_eq!(verified.web_number, holder),
//!     Verdict::Invalid { reason } => panic!("unexpected {reason}"),
//! }
//! // A certificate is good for one verification only.
//! assert_eq!(verifier.verify(Input::Text(&text), &context)?.reason(), Some(Reason::Replayed));
//! # Ok::<(), cyberid_engine::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod authlog;
mod base45;
mod cert;
mod clock;
mod disclosure;
mod error;
mod issue;
mod keys;
mod nonce_map;
mod observe;
mod pipeline;
mod platform;
mod request_key;
mod sm2fast;
mod store;
mod verify;
mod web_number;

pub use authlog::{LogEntry, LogItem, LogOutcome, Receipt};
pub use cert::{
    AgeBracket, Assurance, CERTIFICATE_LEN, Certificate, CertificateFields, CertificateId, Claims,
    FORMAT_VERSION, TEXT_LEN, TEXT_PREFIX,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use disclosure::{Attribute, Attributes};
pub use error::{Error, Fault};
pub use issue::{IssueRequest, Issuer, IssuerPolicy};
pub use keys::{
    DEFAULT_SM2_ID, IssuerPublicKey, IssuerSigningKey, KeyId, KeyRegistry, KeyState, RegisteredKey,
};
pub use nonce_map::{Inserted, NonceMap};
pub use observe::Observer;
pub use pipeline::{OwnedInput, PendingVerdict, Pipeline, PipelineConfig, PipelineStats};
pub use platform::{PLATFORM_ID_LEN, PlatformId};
pub use request_key::RequestKey;
pub use store::{
    EnrollmentEvent, MemoryNonceStore, MemoryRevocationSet, NonceClaim, NonceOutcome, NonceStore,
    RevocationChange, RevocationCounts, RevocationMaps, RevocationRecord, RevocationSet, Standing,
    claim_in_memory,
};
pub use verify::{
    Context, Input, Reason, SignedCertificate, Verdict, Verified, Verifier, VerifierConfig,
};
pub use web_number::WebNumber;

#[cfg(any(test, feature = "contract"))]
pub mod contract;

/// Hooks for fuzzing, benches and interoperability tests; not a stable API.
#[doc(hidden)]
pub mod testing {
    /// The exact bytes an issuer signs for these fields (the first 63 bytes of the binary form).
    pub fn signed_bytes(fields: &crate::CertificateFields) -> Vec<u8> {
        fields.encode_signed().to_vec()
    }
}

#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod memory_contract {
    use crate::contract::{Setup, Subject};
    use crate::{MemoryNonceStore, MemoryRevocationSet};

    fn memory(setup: Setup) -> Subject<MemoryNonceStore> {
        let store = MemoryNonceStore::with_capacity(setup.history_begins, setup.max_live_nonces);
        Subject::new(store, ())
    }

    fn memory_revocations(_: Setup) -> Subject<MemoryRevocationSet> {
        Subject::new(MemoryRevocationSet::new(), ())
    }

    crate::nonce_store_contract!(memory);
    crate::revocation_set_contract!(memory_revocations);
}
#[cfg(test)]
mod verify_tests;
