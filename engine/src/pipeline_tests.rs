//! The pipeline: lone requests, replay safety across a batch, overload, store failures.

use std::sync::{Arc, Mutex};

use crate::verify_tests::issuer;
use crate::*;

const NOW: u64 = 1_790_000_000;

fn verifier(nonces: Arc<dyn NonceStore>) -> Arc<Verifier> {
    let keys = Arc::new(KeyRegistry::new());
    keys.insert(issuer().key().public_key().clone()).unwrap();
    Arc::new(Verifier::new(
        keys,
        Arc::new(MemoryRevocationSet::new()),
        nonces,
        VerifierConfig::default(),
    ))
}

fn context() -> Context {
    Context {
        platform: None,
        now: NOW,
        request: None,
        disclose: crate::Attributes::NONE,
    }
}

fn certificate_text() -> String {
    issuer()
        .issue(&IssueRequest::new(WebNumber::generate().unwrap()), NOW)
        .unwrap()
        .to_text()
}

#[test]
fn a_lone_request_is_answered_without_waiting_for_a_batch() {
    let pipeline = Pipeline::start(
        verifier(Arc::new(MemoryNonceStore::new(0))),
        PipelineConfig::default(),
    )
    .unwrap();
    let verdict = pipeline
        .submit(OwnedInput::Text(certificate_text().into()), context())
        .unwrap()
        .wait_blocking()
        .unwrap();
    assert!(verdict.is_valid());
    let garbage = pipeline
        .submit(OwnedInput::Binary(vec![1, 2, 3].into()), context())
        .unwrap()
        .wait_blocking()
        .unwrap();
    assert_eq!(garbage.reason(), Some(Reason::Malformed));
}

#[tokio::test]
async fn async_callers_get_exactly_one_valid_per_certificate() {
    let pipeline = Pipeline::start(
        verifier(Arc::new(MemoryNonceStore::new(0))),
        PipelineConfig::default(),
    )
    .unwrap();
    let texts: Vec<String> = (0..8).map(|_| certificate_text()).collect();
    // Every certificate submitted five times, all in flight at once.
    let pending: Vec<_> = (0..5)
        .flat_map(|_| texts.iter())
        .map(|text| {
            pipeline
                .submit(OwnedInput::Text(text.clone().into()), context())
                .unwrap()
        })
        .collect();
    let mut valid = 0;
    for verdict in pending {
        match verdict.wait().await.unwrap() {
            Verdict::Valid(_) => valid += 1,
            Verdict::Invalid { reason } => assert_eq!(reason, Reason::Replayed),
        }
    }
    assert_eq!(valid, texts.len());
    assert_eq!(
        pipeline
            .stats()
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        40
    );
}

/// A nonce store that holds every call until released, to stall the pipeline on purpose.
struct Gate {
    open: Mutex<bool>,
    changed: std::sync::Condvar,
    inner: MemoryNonceStore,
}

impl Gate {
    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }
}

impl NonceStore for Gate {
    fn consume_batch(&self, claims: &[NonceClaim]) -> Result<Vec<NonceOutcome>, Error> {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.changed.wait(open).unwrap();
        }
        drop(open);
        self.inner.consume_batch(claims)
    }
    fn history_begins(&self) -> u64 {
        0
    }
    fn live_nonces(&self) -> usize {
        self.inner.live_nonces()
    }
    fn expire(&self, now: u64) -> Result<usize, Error> {
        self.inner.expire(now)
    }
}

#[test]
fn a_full_queue_is_refused_at_once_and_admitted_requests_are_still_answered() {
    let gate = Arc::new(Gate {
        open: Mutex::new(false),
        changed: std::sync::Condvar::new(),
        inner: MemoryNonceStore::new(0),
    });
    let config = PipelineConfig {
        max_batch: 1,
        queue_capacity: 2,
        threads: 1,
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::start(verifier(gate.clone()), config).unwrap();
    let mut admitted = Vec::new();
    let refused = loop {
        match pipeline.submit(OwnedInput::Text(certificate_text().into()), context()) {
            Ok(pending) => admitted.push(pending),
            Err(error) => break error,
        }
        // The settler holds one batch, the hand-off one, the batcher one, the queue two.
        assert!(admitted.len() <= 5, "the queue never filled");
    };
    assert_eq!(refused, Error::Overloaded);
    assert!(!refused.is_caller_fault());
    assert_eq!(
        pipeline
            .stats()
            .overloaded
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    gate.release();
    for pending in admitted {
        assert!(pending.wait_blocking().unwrap().is_valid());
    }
}

#[test]
fn a_store_failure_reaches_every_caller_in_the_batch() {
    let pipeline = Pipeline::start(
        verifier(Arc::new(crate::store::FailingNonceStore)),
        PipelineConfig::default(),
    )
    .unwrap();
    let result = pipeline
        .submit(OwnedInput::Text(certificate_text().into()), context())
        .unwrap()
        .wait_blocking();
    assert_eq!(result, Err(Error::Poisoned));
}

#[test]
fn bad_settings_are_refused() {
    let config = PipelineConfig {
        max_batch: 0,
        ..PipelineConfig::default()
    };
    let error = Pipeline::start(verifier(Arc::new(MemoryNonceStore::new(0))), config).unwrap_err();
    assert_eq!(error.code(), "config");
}

/// A nonce store a network round trip away: each call waits until another is in flight too
/// (or a second passes), and records how many ran at once.
#[derive(Debug)]
struct RoundTrip {
    inner: MemoryNonceStore,
    inside: Mutex<usize>,
    most: Mutex<usize>,
    arrived: std::sync::Condvar,
}

impl NonceStore for RoundTrip {
    fn consume_batch(&self, claims: &[NonceClaim]) -> Result<Vec<NonceOutcome>, Error> {
        let mut inside = self.inside.lock().unwrap();
        *inside += 1;
        {
            let mut most = self.most.lock().unwrap();
            *most = (*most).max(*inside);
        }
        self.arrived.notify_all();
        let (mut inside, _) = self
            .arrived
            .wait_timeout_while(inside, std::time::Duration::from_secs(1), |inside| {
                *inside < 2
            })
            .unwrap();
        let outcomes = self.inner.consume_batch(claims);
        *inside -= 1;
        outcomes
    }

    fn history_begins(&self) -> u64 {
        self.inner.history_begins()
    }

    fn live_nonces(&self) -> usize {
        self.inner.live_nonces()
    }

    fn expire(&self, now: u64) -> Result<usize, Error> {
        self.inner.expire(now)
    }
}

#[test]
fn several_settlers_keep_several_batches_in_flight_and_one_valid_each() {
    let store = Arc::new(RoundTrip {
        inner: MemoryNonceStore::new(0),
        inside: Mutex::new(0),
        most: Mutex::new(0),
        arrived: std::sync::Condvar::new(),
    });
    let config = PipelineConfig {
        max_batch: 1,
        settlers: 4,
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::start(verifier(store.clone()), config).unwrap();
    // The same certificate many times over, each its own batch, settled side by side.
    let text = certificate_text();
    let pending: Vec<PendingVerdict> = (0..24)
        .map(|_| {
            pipeline
                .submit(OwnedInput::Text(text.clone().into()), context())
                .unwrap()
        })
        .collect();
    let verdicts: Vec<Verdict> = pending
        .into_iter()
        .map(|pending| pending.wait_blocking().unwrap())
        .collect();
    assert_eq!(verdicts.iter().filter(|v| v.is_valid()).count(), 1);
    assert!(
        verdicts
            .iter()
            .all(|v| v.is_valid() || v.reason() == Some(Reason::Replayed))
    );
    assert!(
        *store.most.lock().unwrap() >= 2,
        "one batch settled at a time"
    );
    drop(pipeline);
    let zero = PipelineConfig {
        settlers: 0,
        ..PipelineConfig::default()
    };
    let error = Pipeline::start(verifier(Arc::new(MemoryNonceStore::new(0))), zero).unwrap_err();
    assert_eq!(error.code(), "config");
}
