//! A verification tier in miniature for the crash test: it verifies a stream of fresh
//! certificates and revokes Web Numbers against a durable store, printing each acknowledgement
//! only after the engine returned it. The test SIGKILLs it at random moments and checks that
//! everything acknowledged survived.
//!
//! It also enrolls synthetic people through the identity service.
//!
//! Usage: `crash_child <data-dir>`. Lines: `nonce <certificate-id> <expires-at>`,
//! `revoked <web-number>` and `enrolled <web-number> <resident-id>`.

use std::io::Write;
use std::sync::Arc;

use cyberid_engine::{
    Context, Input, IssueRequest, Issuer, IssuerPolicy, IssuerSigningKey, KeyRegistry, ManualClock,
    RevocationChange, RevocationRecord, RevocationSet, Standing, Verdict, Verifier, VerifierConfig,
    WebNumber,
};
use cyberid_identity::{DeviceSigningKey, EnrollmentRequest, IdentityService, ServiceConfig};
use cyberid_store_rocksdb::{DurableStore, StoreOptions};
use cyberid_tests::{CRASH_CLOCK, CRASH_ISSUED_AT, crash_identity_keys, synthetic_resident_id};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: crash_child <data-dir>")?;
    let clock = Arc::new(ManualClock::new(CRASH_CLOCK));
    let store = Arc::new(DurableStore::open(
        dir.as_ref(),
        StoreOptions::default(),
        clock,
    )?);
    let issuer = Issuer::new(IssuerSigningKey::generate()?, IssuerPolicy::default())?;
    let keys = Arc::new(KeyRegistry::new());
    keys.insert(issuer.key().public_key().clone())?;
    let verifier = Arc::new(Verifier::new(
        keys,
        store.clone(),
        store.clone(),
        VerifierConfig::default(),
    ));
    let context = Context {
        platform: None,
        now: CRASH_ISSUED_AT,
        request: None,
        disclose: cyberid_engine::Attributes::NONE,
    };

    let revoker = {
        let store = store.clone();
        std::thread::spawn(move || -> Result<(), cyberid_engine::Error> {
            loop {
                let web_number = WebNumber::generate()?;
                store.apply(RevocationRecord {
                    change: RevocationChange::WebNumber {
                        web_number,
                        standing: Standing::Revoked,
                    },
                    reason: "crash-test".into(),
                    authority: "crash-test".into(),
                    at: CRASH_ISSUED_AT,
                })?;
                writeln!(std::io::stdout(), "revoked {web_number}").ok();
            }
        })
    };

    let enroller = {
        let (index, vault) = crash_identity_keys();
        let service = IdentityService::new(
            store.clone(),
            store.clone(),
            Arc::new(vault),
            index,
            ServiceConfig::default(),
        );
        std::thread::spawn(
            move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                let device = DeviceSigningKey::generate()?.public_key().to_spki_pem()?;
                loop {
                    let mut random = [0u8; 8];
                    getrandom::fill(&mut random)?;
                    let id = synthetic_resident_id(u64::from_le_bytes(random));
                    let birth = format!("{}-{}-{}", &id[6..10], &id[10..12], &id[12..14]);
                    let request: EnrollmentRequest = serde_json::from_value(serde_json::json!({
                        "document": { "name": "测试", "resident_id": id, "birth_date": birth,
                                      "valid_from": "2020-01-01" },
                        "device_key": device,
                    }))?;
                    let enrolled = service.enroll(request, "crash-test", CRASH_ISSUED_AT)?;
                    writeln!(std::io::stdout(), "enrolled {} {id}", enrolled.web_number).ok();
                }
            },
        )
    };

    // Two verifying threads, so that group commits carry more than one request.
    let verifiers: Vec<_> = (0..2)
        .map(|_| {
            let (verifier, request) = (verifier.clone(), IssueRequest::new(WebNumber::generate()?));
            let issuer_key = issuer.key().to_pkcs8_pem()?;
            Ok(std::thread::spawn(
                move || -> Result<(), cyberid_engine::Error> {
                    let issuer = Issuer::new(
                        IssuerSigningKey::from_pkcs8_pem(&issuer_key)?,
                        IssuerPolicy::default(),
                    )?;
                    loop {
                        let certificate = issuer.issue(&request, CRASH_ISSUED_AT)?;
                        match verifier.verify(Input::Binary(certificate.as_bytes()), &context)? {
                            Verdict::Valid(_) => {
                                let fields = certificate.fields();
                                writeln!(
                                    std::io::stdout(),
                                    "nonce {} {}",
                                    fields.certificate_id,
                                    fields.expires_at()
                                )
                                .ok();
                            }
                            other => panic!("a fresh certificate must be valid, got {other:?}"),
                        }
                    }
                },
            ))
        })
        .collect::<Result<_, cyberid_engine::Error>>()?;
    for handle in verifiers {
        handle.join().map_err(|_| "verifier thread panicked")??;
    }
    revoker.join().map_err(|_| "revoker thread panicked")??;
    enroller
        .join()
        .map_err(|_| "enroller thread panicked")?
        .map_err(|error| error.to_string())?;
    Ok(())
}
