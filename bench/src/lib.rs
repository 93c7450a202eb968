//! Shared setup for cyberid's criterion benches; see `benches/` and `tuning.md`.

use std::sync::Arc;

use cyberid_engine::{
    CertificateId, Context, IssueRequest, Issuer, IssuerPolicy, IssuerSigningKey, KeyRegistry,
    MemoryNonceStore, MemoryRevocationSet, NonceClaim, OwnedInput, Pipeline, Verifier,
    VerifierConfig, WebNumber,
};
use rayon::prelude::*;

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

/// `waves` waves of `in_flight` fresh certificate texts each (a verification consumes its
/// certificate), issued in parallel so that setup stays short next to what it feeds.
pub fn issue_waves(issuer: &Issuer, waves: usize, in_flight: usize) -> Vec<Vec<String>> {
    let request = IssueRequest::new(WebNumber::generate().expect("rng"));
    (0..waves)
        .into_par_iter()
        .map(|_| {
            (0..in_flight)
                .map(|_| issuer.issue(&request, NOW).expect("issue").to_text())
                .collect()
        })
        .collect()
}

/// Puts one wave through `pipeline` and waits for every verdict, each of which must be valid.
pub fn verify_wave(pipeline: &Pipeline, wave: Vec<String>) {
    let context = Context {
        platform: None,
        now: NOW,
        request: None,
        disclose: cyberid_engine::Attributes::NONE,
    };
    let pending: Vec<_> = wave
        .into_iter()
        .map(|text| {
            pipeline
                .submit(OwnedInput::Text(text.into()), context)
                .expect("queue")
        })
        .collect();
    // Wait for the last first: verdicts arrive roughly in order, so the waiting thread parks
    // once instead of once per verdict, and measures the pipeline rather than its own wake-ups.
    for verdict in pending.into_iter().rev() {
        assert!(verdict.wait_blocking().expect("verdict").is_valid());
    }
}

/// A claim for the `n`th distinct certificate id, expiring within the next five minutes (spread
/// over several expiry buckets, as live traffic is).
pub fn claim(n: u64) -> NonceClaim {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id[8..].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    let expires_at = NOW + 60 + n % 300;
    NonceClaim {
        certificate_id: CertificateId::from_bytes(id),
        usable_from: NOW,
        expires_at,
        retain_until: expires_at + 30,
        request: None,
    }
}

/// The `n`th distinct Web Number (n below 2^50).
pub fn web_number(n: u64) -> WebNumber {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let text: String = (0..10)
        .rev()
        .map(|digit| char::from(ALPHABET[((n >> (5 * digit)) & 31) as usize]))
        .collect();
    text.parse().expect("alphabet characters")
}

/// Resident memory of this process, bytes.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// 2026-12-01 12:00 in Beijing: the clock of the issuing-side benches.
pub const ISSUING_NOW: u64 = 1_796_097_600;

/// A valid synthetic adult's identity document, distinct for each `serial` below 16.8 million:
/// region 110105, a birth date from 1950 to 1999, a sequence, and GB 11643's check character.
pub fn synthetic_document(serial: u64) -> cyberid_identity::DocumentFields {
    let year = 1950 + (serial / 336_000) % 50;
    let month = 1 + (serial / 28_000) % 12;
    let day = 1 + (serial / 1000) % 28;
    let digits = format!("110105{year:04}{month:02}{day:02}{:03}", serial % 1000);
    let seventeen: [u8; 17] = digits.as_bytes().try_into().expect("17 digits");
    let check = cyberid_identity::ResidentId::check_character(&seventeen) as char;
    serde_json::from_value(serde_json::json!({
        "name": "欧阳明华",
        "resident_id": format!("{digits}{check}"),
        "birth_date": format!("{year:04}-{month:02}-{day:02}"),
        "valid_from": "2020-01-01",
    }))
    .expect("document")
}

/// The embedded store in `path`, on a clock fixed at [`ISSUING_NOW`], its history begun an hour
/// earlier: what the issuing-side benches enroll into.
pub fn identity_store(path: &std::path::Path) -> Arc<cyberid_store_rocksdb::DurableStore> {
    Arc::new(
        cyberid_store_rocksdb::DurableStore::open(
            path,
            cyberid_store_rocksdb::StoreOptions {
                history_begins: Some(ISSUING_NOW - 3600),
                ..cyberid_store_rocksdb::StoreOptions::default()
            },
            Arc::new(cyberid_engine::ManualClock::new(ISSUING_NOW)),
        )
        .expect("store"),
    )
}
