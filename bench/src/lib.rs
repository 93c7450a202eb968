//! Shared setup for cyberid's criterion benches; see `benches/` and `tuning.md`.

use std::sync::Arc;

use cyberid_engine::{
    Issuer, IssuerPolicy, IssuerSigningKey, KeyRegistry, MemoryNonceStore, MemoryRevocationSet,
    Verifier, VerifierConfig,
};

/// A fixed clock for benches, inside every certificate's validity window.
pub const NOW: u64 = 1_790_000_000;

/// An issuer with a fresh key, and a verifier with in-memory stores that trusts it.
pub fn issuer_and_verifier() -> (Issuer, Verifier) {
    let issuer = Issuer::new(
        IssuerSigningKey::generate().expect("key generation"),
        IssuerPolicy::default(),
    )
    .expect("default policy");
    let keys = Arc::new(KeyRegistry::new());
    keys.insert(issuer.key().public_key().clone())
        .expect("one key");
    let verifier = Verifier::new(
        keys,
        Arc::new(MemoryRevocationSet::new()),
        Arc::new(MemoryNonceStore::with_capacity(0, usize::MAX)),
        VerifierConfig::default(),
    );
    (issuer, verifier)
}
