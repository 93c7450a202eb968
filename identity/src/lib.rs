//! The issuing side of cyberid: who may hold a Web Number, and how their identity is kept
//! "usable but not visible".
//!
//! An enrollment agent (the official app's back end, which read the resident identity card's
//! chip and checked the holder's live face) submits the [`DocumentFields`] it read and the
//! holder's [`DeviceKey`]. The service checks the document ([`IdentityDocument::check`]: GB
//! 11643 check character, birth date, validity), finds any earlier enrollment of the same
//! person by a [`BlindIndex`] (HMAC-SM3 under a secret key, never a plain hash), and keeps the
//! identity only sealed in the [`Vault`] (SM4-GCM under envelope encryption). From then on the
//! holder's app asks for certificates with a [`SignedHolderRequest`], and the claims in them
//! (adult or minor) are computed from the vault at issue time.
//!
//! ```
//! use cyberid_engine::WebNumber;
//! use cyberid_identity::{
//!     BlindIndex, Date, DeviceSigningKey, Disclose, DocumentFields, HolderRequest,
//!     IdentityDocument, IndexKey, Vault, VaultKey,
//! };
//!
//! // Keys `cyberid init` creates: the index key, a master key and a first data key.
//! let index_key = IndexKey::generate()?;
//! let master = VaultKey::generate(1)?;
//! let vault = Vault::open(&master, &[master.wrap(&VaultKey::generate(1)?)?])?;
//!
//! // What the enrollment agent read from the card, checked on the day of enrollment.
//! let today = Date::new(2026, 12, 1)?;
//! let fields: DocumentFields = serde_json::from_value(serde_json::json!({
//!     "name": "张伟", "resident_id": "11010519491231002X", "birth_date": "1949-12-31",
//!     "valid_from": "2016-05-01",
//! }))?;
//! let document = IdentityDocument::check(fields, today)?;
//!
//! // Stored: the blind index, the sealed record, the device key. Never the plaintext.
//! let holder = WebNumber::generate()?;
//! let index: BlindIndex = index_key.index(document.resident_id());
//! let sealed = vault.seal_document(&holder, &document)?;
//! assert!(!String::from_utf8_lossy(sealed.as_bytes()).contains("11010519491231002X"));
//!
//! // The holder's app signs a request; the service checks it and computes the claim.
//! let device = DeviceSigningKey::generate()?;
//! let now = 1_796_083_200; // 2026-12-01 in Beijing
//! let request = HolderRequest::new(holder, Disclose::Age, now)?.sign(&device)?;
//! let trusted = request.verify(&device.public_key(), now, 60)?;
//! let opened = vault.open_document(&trusted.web_number, &sealed)?;
//! assert_eq!(opened.age_bracket(Date::at(now)), cyberid_engine::AgeBracket::Adult);
//! # let _ = index;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod blind_index;
mod consent;
mod date;
mod disclosure;
mod document;
mod error;
mod guardian;
mod holder;
mod log_read;
mod registry;
mod resident_id;
mod service;
mod subject;
mod vault;

#[cfg(any(test, feature = "contract"))]
pub mod contract;

pub use blind_index::{BLIND_INDEX_LEN, BlindIndex, INDEX_KEY_LEN, IndexKey};
pub use consent::{
    CONSENT_REQUEST_LEN, ConsentAction, ConsentActionName, ConsentRequest, ConsentRequestBody,
    Purpose, SignedConsentRequest, StandingConsent,
};
pub use date::Date;
pub use disclosure::{Disclosed, Entitlement};
pub use document::{ADULT_FROM, DocumentFields, GUARDIAN_CONSENT_BELOW, IdentityDocument, Name};
pub use error::Error;
pub use guardian::{CONSENT_LEN, GuardianConsent};
pub use holder::{
    CLOCK_AHEAD, DeviceKey, DeviceSigningKey, Disclose, HolderRequest, HolderRequestBody,
    REQUEST_LEN, REQUEST_NONCE_LEN, SignedHolderRequest,
};
pub use log_read::{LOG_READ_LEN, LogRead, LogReadBody, SignedLogRead};
pub use registry::{Enrollment, MemoryRegistry, Registry, check_expected};
pub use resident_id::{RESIDENT_ID_LEN, ResidentId};
pub use service::{Enrolled, EnrollmentRequest, IdentityService, IdentityStore, ServiceConfig};
pub use subject::{PairwiseSubject, SUBJECT_KEY_LEN, SUBJECT_LEN, SubjectKey};
pub use vault::{KEY_LEN, SealedRecord, Vault, VaultKey, WrappedKey, rewrap};
