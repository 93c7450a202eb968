//! Fault injection on every step of the store's two write paths (`src/faults.rs` names them).
//!
//! For each step, an error there and a crash there, with the invariants checked afterwards:
//! no certificate is consumed unless its consumption was acknowledged (or the crash struck
//! after the synced write, when it is durable though unanswered: see docs/store.md); nothing
//! acknowledged is lost; the store opens again.
//!
//! Errors are injected in this process with `fail::cfg`. Crashes run in a child process (this
//! test binary again, running only `crash_child`) whose failpoint aborts it, as SIGKILL or a
//! power cut would stop it, and the parent reopens what it left.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use cyberid_engine::{
    CertificateId, Fault, ManualClock, NonceClaim, NonceOutcome, NonceStore, PlatformId,
    RequestKey, RevocationChange, RevocationRecord, RevocationSet, Standing, WebNumber,
};
use cyberid_store_rocksdb::{DurableStore, NONCE_STEPS, REVOCATION_STEPS, StoreOptions};
use fail::FailScenario;

const NOW: u64 = 1_790_000_000;

/// Steps that come before the synced write: an error there leaves nothing on disk. (An error
/// injected after the write would stand for an outcome the storage cannot tell, which only a
/// crash produces; those steps are crashed below.)
const NONCE_ERROR_STEPS: &[&str] = &["rocksdb::claim", "rocksdb::batch", "rocksdb::write"];
const REVOCATION_ERROR_STEPS: &[&str] = &["rocksdb::revocation_check", "rocksdb::write"];

/// Request `n`: certificate `n`, sent by a platform that names each request (its
/// `Idempotency-Key`), so that it can retry one whose answer it lost.
fn claim(n: u32) -> NonceClaim {
    let mut id = [0x5a; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    let platform: PlatformId = "shop.example".parse().unwrap();
    NonceClaim {
        certificate_id: CertificateId::from_bytes(id),
        usable_from: NOW,
        expires_at: NOW + 300,
        retain_until: NOW + 330,
        request: Some(RequestKey::derive(
            &platform,
            format!("request-{n}").as_bytes(),
        )),
    }
}

/// Certificate `n` presented by anyone else.
fn replay(n: u32) -> NonceClaim {
    NonceClaim {
        request: None,
        ..claim(n)
    }
}

fn holder(n: u32) -> WebNumber {
    format!("{n:010}").parse().unwrap()
}

fn suspension(n: u32) -> RevocationRecord {
    RevocationRecord {
        change: RevocationChange::WebNumber {
            web_number: holder(n),
            standing: Standing::Suspended,
        },
        reason: "lost device".into(),
        authority: "mps".into(),
        at: NOW,
    }
}

fn open(dir: &Path) -> DurableStore {
    DurableStore::open(
        dir,
        StoreOptions::default(),
        Arc::new(ManualClock::new(NOW)),
    )
    .unwrap()
}

#[test]
fn every_step_has_a_failpoint_and_every_failpoint_is_tested() {
    for step in NONCE_ERROR_STEPS {
        assert!(NONCE_STEPS.contains(step), "{step}");
    }
    for step in REVOCATION_ERROR_STEPS {
        assert!(REVOCATION_STEPS.contains(step), "{step}");
    }
    // The crash tests below run every step of both lists.
    assert_eq!(NONCE_STEPS.len(), 4);
    assert_eq!(REVOCATION_STEPS.len(), 4);
}

#[test]
fn an_error_at_any_nonce_step_consumes_nothing_and_is_retryable() {
    let scenario = FailScenario::setup();
    for step in NONCE_ERROR_STEPS {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        assert_eq!(store.consume(claim(0)).unwrap(), NonceOutcome::Fresh);
        fail::cfg(*step, "return").unwrap();
        let error = store.consume_batch(&[claim(1), claim(2)]).unwrap_err();
        fail::remove(*step);
        assert_eq!(error.fault(), Fault::Retry, "{step}: {error}");
        assert_eq!(
            store.live_nonces(),
            1,
            "{step}: the failed batch is released"
        );
        if store.poisoned().is_some() {
            // A failed write: the store refuses everything until reopened.
            assert!(
                ["rocksdb::batch", "rocksdb::write"].contains(step),
                "{step} poisoned the store"
            );
            assert_eq!(
                store.consume(claim(1)).unwrap_err().code(),
                "store_poisoned"
            );
            drop(store);
            store = open(dir.path());
        }
        assert_eq!(
            store.consume_batch(&[claim(1), claim(2)]).unwrap(),
            [NonceOutcome::Fresh; 2],
            "{step}: the certificates were not used up by the error"
        );
        assert_eq!(store.consume(replay(0)).unwrap(), NonceOutcome::Replayed);
    }
    scenario.teardown();
}

#[test]
fn an_error_at_any_revocation_step_changes_nothing() {
    let scenario = FailScenario::setup();
    for step in REVOCATION_ERROR_STEPS {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        assert_eq!(store.apply(suspension(0)).unwrap(), 1);
        fail::cfg(*step, "return").unwrap();
        let error = store.apply(suspension(1)).unwrap_err();
        fail::remove(*step);
        assert_eq!(error.fault(), Fault::Retry, "{step}: {error}");
        assert_eq!(store.standing(&holder(1)), Standing::Active, "{step}");
        if store.poisoned().is_some() {
            drop(store);
            store = open(dir.path());
        }
        assert_eq!(store.standing(&holder(1)), Standing::Active, "{step}");
        assert_eq!(store.history(0, 10).unwrap().len(), 1, "{step}");
        assert_eq!(store.apply(suspension(1)).unwrap(), 2, "{step}");
        assert_eq!(store.standing(&holder(0)), Standing::Suspended);
    }
    scenario.teardown();
}

/// What the crash child does, by environment; a no-op in a normal test run.
#[test]
fn crash_child() {
    let (Ok(dir), Ok(path)) = (
        std::env::var("CYBERID_CRASH_DIR"),
        std::env::var("CYBERID_CRASH_PATH"),
    ) else {
        return;
    };
    let _scenario = FailScenario::setup(); // reads FAILPOINTS
    let store = open(Path::new(&dir));
    for n in 0..50 {
        // One line per acknowledgement, on unbuffered stderr, before the next request starts.
        if path == "nonce" {
            store.consume(claim(n)).unwrap();
        } else {
            store.apply(suspension(n)).unwrap();
        }
        eprintln!("ack {n}");
    }
    eprintln!("done");
}

/// Runs the child until its failpoint at `step` aborts it, a few requests in; returns how many
/// were acknowledged (the request after them is the one the crash interrupted).
fn crash_at(dir: &Path, path: &str, step: &str) -> u32 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("CYBERID_CRASH_DIR", dir)
        .env("CYBERID_CRASH_PATH", path)
        // A few requests pass the step, a later one dies there.
        .env("FAILPOINTS", format!("{step}=3*off->return(crash)"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let acknowledged = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .filter(|line| line.starts_with("ack "))
        .count();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "{step}: the child must die at its failpoint"
    );
    u32::try_from(acknowledged).unwrap()
}

#[test]
fn a_crash_at_any_nonce_step_loses_nothing_acknowledged_and_the_store_opens() {
    for step in NONCE_STEPS {
        let dir = tempfile::tempdir().unwrap();
        let acknowledged = crash_at(dir.path(), "nonce", step);
        assert!((1..10).contains(&acknowledged), "{step}: {acknowledged}");
        let interrupted = acknowledged;
        let store = open(dir.path());
        for n in 0..acknowledged {
            assert_eq!(
                store.consume(replay(n)).unwrap(),
                NonceOutcome::Replayed,
                "{step}: acknowledged nonce {n} survived"
            );
        }
        // The request the crash interrupted was never answered. Before the synced write it is
        // not consumed; after it, it is durable: the platform's retry of that same request is
        // answered as the first time would have been, and anyone else's presentation is a
        // replay. Either way the certificate is valid exactly once.
        let durable = *step == "rocksdb::synced";
        if durable {
            assert_eq!(
                store.consume(replay(interrupted)).unwrap(),
                NonceOutcome::Replayed
            );
            assert_eq!(
                store.consume(claim(interrupted)).unwrap(),
                NonceOutcome::Repeated
            );
        } else {
            assert_eq!(
                store.consume(claim(interrupted)).unwrap(),
                NonceOutcome::Fresh,
                "{step}"
            );
        }
        assert_eq!(
            store.consume(claim(interrupted + 1)).unwrap(),
            NonceOutcome::Fresh
        );
    }
}

#[test]
fn a_crash_at_any_revocation_step_loses_nothing_acknowledged_and_the_store_opens() {
    for step in REVOCATION_STEPS {
        let dir = tempfile::tempdir().unwrap();
        let acknowledged = crash_at(dir.path(), "revocation", step);
        assert!((1..10).contains(&acknowledged), "{step}: {acknowledged}");
        let store = open(dir.path());
        for n in 0..acknowledged {
            assert_eq!(store.standing(&holder(n)), Standing::Suspended, "{step}");
        }
        // The interrupted revocation is all or nothing: state and log agree.
        let logged = store.history(0, 100).unwrap().len();
        let applied = store.standing(&holder(acknowledged)) == Standing::Suspended;
        let before = usize::try_from(acknowledged).unwrap();
        assert_eq!(logged, before + usize::from(applied), "{step}");
        let durable = ["rocksdb::synced", "rocksdb::revocation_applied"].contains(step);
        assert_eq!(applied, durable, "{step}");
        assert_eq!(
            store.apply(suspension(10)).unwrap(),
            u64::try_from(logged).unwrap() + 1,
            "{step}: sequence numbers continue"
        );
    }
}
