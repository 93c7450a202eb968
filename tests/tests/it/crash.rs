//! SIGKILL mid-write: a child process verifies certificates and revokes Web Numbers against a
//! durable store; it is killed at random moments, several times over the same data directory;
//! every acknowledged nonce must still be consumed and every acknowledged revocation must hold.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use cyberid_engine::{
    CertificateId, ManualClock, NonceClaim, NonceOutcome, NonceStore, RevocationSet, Standing,
    VerifierConfig, WebNumber,
};
use cyberid_store_rocksdb::{DurableStore, StoreOptions};
use cyberid_tests::{CRASH_CLOCK, CRASH_ISSUED_AT};

fn random_below(bound: u64) -> u64 {
    RandomState::new().build_hasher().finish() % bound
}

#[test]
fn acknowledged_nonces_and_revocations_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut nonces: Vec<(CertificateId, u64)> = Vec::new();
    let mut revoked: Vec<WebNumber> = Vec::new();
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
            record(&line, &mut nonces, &mut revoked);
        }
        child.kill().unwrap(); // SIGKILL
        // Acknowledgements printed before the kill landed count too.
        for line in lines.map_while(Result::ok) {
            record(&line, &mut nonces, &mut revoked);
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
    assert!(store.history(0, usize::MAX).unwrap().len() >= revoked.len());
}

fn record(line: &str, nonces: &mut Vec<(CertificateId, u64)>, revoked: &mut Vec<WebNumber>) {
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
        _ => {}
    }
}
