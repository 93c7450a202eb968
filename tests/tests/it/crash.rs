//! SIGKILL mid-write: a child process verifies certificates, revokes Web Numbers and enrolls
//! people against a durable store; it is killed at random moments, several times over the same
//! data directory; every acknowledged nonce must still be consumed, every acknowledged
//! revocation must hold and every acknowledged enrollment must be found and open.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use cyberid_engine::{
    CertificateId, ManualClock, NonceClaim, NonceOutcome, NonceStore, RevocationSet, Standing,
    VerifierConfig, WebNumber,
};
use cyberid_identity::{Registry, ResidentId};
use cyberid_store_rocksdb::{DurableStore, StoreOptions};
use cyberid_tests::{CRASH_CLOCK, CRASH_ISSUED_AT, crash_identity_keys};

fn random_below(bound: u64) -> u64 {
    RandomState::new().build_hasher().finish() % bound
}

#[test]
fn acknowledged_nonces_and_revocations_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut nonces: Vec<(CertificateId, u64)> = Vec::new();
    let mut revoked: Vec<WebNumber> = Vec::new();
    let mut enrolled: Vec<(WebNumber, String)> = Vec::new();
    for round in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_child"))
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Kill after a random number of acknowledgements, while writes are in flight.
        let acknowledgements = 20 + random_below(300);
        for _ in 0..acknowledgements {
            let line = lines
                .next()
                .unwrap_or_else(|| {
                    panic!("round {round}: child stopped early: {:?}", child.try_wait())
                })
                .unwrap();
            record(&line, &mut nonces, &mut revoked, &mut enrolled);
        }
        child.kill().unwrap(); // SIGKILL
        // Acknowledgements printed before the kill landed count too.
        for line in lines.map_while(Result::ok) {
            record(&line, &mut nonces, &mut revoked, &mut enrolled);
        }
        child.wait().unwrap();
    }
    assert!(
        nonces.len() >= 100 && !revoked.is_empty(),
        "{} nonces, {} revocations",
        nonces.len(),
        revoked.len()
    );

    let store = DurableStore::open(
        dir.path(),
        StoreOptions::default(),
        Arc::new(ManualClock::new(CRASH_CLOCK)),
    )
    .unwrap();
    let skew = VerifierConfig::DEFAULT_SKEW;
    let claims: Vec<NonceClaim> = nonces
        .iter()
        .map(|(certificate_id, expires_at)| NonceClaim {
            certificate_id: *certificate_id,
            usable_from: CRASH_ISSUED_AT - skew,
            expires_at: *expires_at,
            retain_until: expires_at + skew,
            request: None,
        })
        .collect();
    let outcomes = store.consume_batch(&claims).unwrap();
    let lost = outcomes
        .iter()
        .filter(|outcome| **outcome != NonceOutcome::Replayed)
        .count();
    assert_eq!(
        lost,
        0,
        "{lost} of {} acknowledged nonces were lost",
        claims.len()
    );
    for web_number in &revoked {
        assert_eq!(
            store.standing(web_number),
            Standing::Revoked,
            "{web_number} lost its revocation"
        );
    }
    assert!(store.history(0, usize::MAX).unwrap().len() >= revoked.len() + enrolled.len());
    // Every acknowledged enrollment: found by its blind index, its record opens to its person.
    assert!(!enrolled.is_empty());
    let (index_key, vault) = crash_identity_keys();
    for (web_number, id) in &enrolled {
        let id: ResidentId = id.parse().unwrap();
        assert_eq!(
            store.find(&index_key.index(&id)).unwrap(),
            Some(*web_number)
        );
        let held = store
            .holder(web_number)
            .unwrap()
            .expect("an acknowledged enrollment");
        let document = vault.open_document(web_number, &held.sealed).unwrap();
        assert_eq!(document.resident_id(), &id);
    }
}

fn record(
    line: &str,
    nonces: &mut Vec<(CertificateId, u64)>,
    revoked: &mut Vec<WebNumber>,
    enrolled: &mut Vec<(WebNumber, String)>,
) {
    let words: Vec<&str> = line.split(' ').collect();
    // A line cut short by the kill was never fully acknowledged: it does not parse and is
    // skipped.
    match words.as_slice() {
        ["nonce", id, expires_at] if id.len() == 32 && expires_at.len() == 10 => {
            if let (Ok(id), Ok(expires_at)) = (id.parse(), expires_at.parse()) {
                nonces.push((id, expires_at));
            }
        }
        ["revoked", web_number] => {
            if let Ok(web_number) = web_number.parse() {
                revoked.push(web_number);
            }
        }
        ["enrolled", web_number, id] if id.len() == 18 => {
            if let Ok(web_number) = web_number.parse() {
                enrolled.push((web_number, (*id).to_owned()));
            }
        }
        _ => {}
    }
}
