//! One contract for every store implementation: the behaviour the verifier relies on from a
//! [`NonceStore`] and a [`RevocationSet`], whatever keeps them. Each store crate runs the whole
//! suite against its own implementation with two macros, given a function that makes a fresh
//! store for a [`Setup`]:
//!
//! ```ignore
//! fn my_store(setup: Setup) -> Subject<MyStore> {
//!     Subject::new(MyStore::open_for_test(setup), ())
//! }
//! cyberid_engine::nonce_store_contract!(my_store);
//! cyberid_engine::revocation_set_contract!(my_store);
//! ```
//!
//! Compiled with the `contract` feature (store crates enable it for their tests only).
#![allow(missing_docs)]

use std::sync::{Arc, Barrier};

use crate::*;

/// The clock of every contract test, Unix seconds.
pub const NOW: u64 = 1_790_000_000;

/// How the store under test must be set up.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// When its history begins.
    pub history_begins: u64,
    /// Its bound on live nonces.
    pub max_live_nonces: usize,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            history_begins: NOW,
            max_live_nonces: 1_000_000,
        }
    }
}

/// A store under test, with whatever keeps it alive (a temporary directory, a cluster handle).
pub struct Subject<S> {
    pub store: Arc<S>,
    _guard: Box<dyn std::any::Any>,
}

impl<S> std::fmt::Debug for Subject<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subject").finish_non_exhaustive()
    }
}

impl<S> Subject<S> {
    pub fn new(store: S, guard: impl std::any::Any) -> Self {
        Self {
            store: Arc::new(store),
            _guard: Box::new(guard),
        }
    }
}

/// Runs every nonce-store contract test against `$make: fn(Setup) -> Subject<S>`.
#[macro_export]
macro_rules! nonce_store_contract {
    ($make:ident) => {
        mod nonce_store_contract {
            $crate::contract_tests!(super::$make: first_use_is_fresh_then_replayed,
                duplicates_in_one_batch, certificates_from_before_history_are_refused,
                concurrent_claims_yield_exactly_one_fresh, expiry_drops_whole_buckets_by_the_clock,
                a_full_store_refuses_the_whole_batch_and_consumes_nothing,
                a_claim_past_the_expiry_horizon_is_refused_as_expired,
                a_retry_of_the_same_request_is_repeated_never_replayed);
        }
    };
}

/// Runs every revocation-set contract test against `$make: fn(Setup) -> Subject<S>`.
#[macro_export]
macro_rules! revocation_set_contract {
    ($make:ident) => {
        mod revocation_set_contract {
            $crate::contract_tests!(super::$make: standing_moves_through_suspend_revoke_reinstate,
                certificates_and_keys_are_revoked, history_pages_in_order,
                bad_records_are_refused_and_not_recorded, batches_apply_in_order_all_or_nothing,
                enrollment_events_are_recorded_and_change_no_standing);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! contract_tests {
    ($make:path: $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::contract::$name($make);
            }
        )*
    };
}

/// Certificate `n`'s claim, expiring at `expires_at`, retained 30 s past it, with no request key.
pub fn claim(n: u8, expires_at: u64) -> NonceClaim {
    NonceClaim {
        certificate_id: CertificateId::from_bytes([n; 16]),
        usable_from: NOW,
        expires_at,
        retain_until: expires_at + 30,
        request: None,
    }
}

/// An authority's record of `change`.
pub fn record(change: RevocationChange) -> RevocationRecord {
    RevocationRecord {
        change,
        reason: "stolen-device".into(),
        authority: "mps:110000".into(),
        at: NOW,
    }
}

/// A Web Number from its text.
pub fn web_number(text: &str) -> WebNumber {
    text.parse().unwrap()
}

/// See the macros.
pub fn first_use_is_fresh_then_replayed<S: NonceStore>(make: impl Fn(Setup) -> Subject<S>) {
    let subject = make(Setup::default());
    let store = &subject.store;
    let expires = NOW + 200;
    assert_eq!(
        store.consume(claim(1, expires)).unwrap(),
        NonceOutcome::Fresh
    );
    assert_eq!(
        store.consume(claim(1, expires)).unwrap(),
        NonceOutcome::Replayed
    );
    assert_eq!(
        store.consume(claim(2, expires)).unwrap(),
        NonceOutcome::Fresh
    );
    assert_eq!(store.live_nonces(), 2);
}

/// See the macros.
pub fn duplicates_in_one_batch<S: NonceStore>(make: impl Fn(Setup) -> Subject<S>) {
    let subject = make(Setup::default());
    let outcomes = subject
        .store
        .consume_batch(&[
            claim(1, NOW + 200),
            claim(2, NOW + 200),
            claim(1, NOW + 200),
            claim(3, NOW + 260),
        ])
        .unwrap();
    use NonceOutcome::*;
    assert_eq!(outcomes, [Fresh, Fresh, Replayed, Fresh]);
}

/// See the macros.
pub fn certificates_from_before_history_are_refused<S: NonceStore>(
    make: impl Fn(Setup) -> Subject<S>,
) {
    let subject = make(Setup::default());
    let store = &subject.store;
    assert_eq!(store.history_begins(), NOW);
    let early = NonceClaim {
        usable_from: NOW - 1,
        ..claim(9, NOW + 150)
    };
    assert_eq!(store.consume(early).unwrap(), NonceOutcome::BeforeHistory);
    assert_eq!(
        store.consume(early).unwrap(),
        NonceOutcome::BeforeHistory,
        "not consumed"
    );
    assert_eq!(store.live_nonces(), 0);
}

/// See the macros.
pub fn concurrent_claims_yield_exactly_one_fresh<S: NonceStore + 'static>(
    make: impl Fn(Setup) -> Subject<S>,
) {
    let subject = make(Setup::default());
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (store, barrier) = (subject.store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..20u8)
                    .filter(|n| store.consume(claim(*n, NOW + 200)).unwrap() == NonceOutcome::Fresh)
                    .count()
            })
        })
        .collect();
    let fresh: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(
        fresh, 20,
        "each of 20 nonces fresh exactly once over {threads} threads"
    );
}

/// See the macros.
pub fn expiry_drops_whole_buckets_by_the_clock<S: NonceStore>(make: impl Fn(Setup) -> Subject<S>) {
    let subject = make(Setup::default());
    let store = &subject.store;
    let soon = NOW + 100;
    let later = NOW + 400;
    store
        .consume_batch(&[claim(1, soon), claim(2, soon), claim(3, later)])
        .unwrap();
    assert_eq!(store.live_nonces(), 3);
    assert_eq!(
        store.expire(soon).unwrap(),
        0,
        "nothing is past its retention yet"
    );
    let dropped = store.expire(soon + 30 + 61).unwrap();
    assert!(dropped >= 1);
    assert_eq!(store.live_nonces(), 1);
    assert_eq!(
        store.consume(claim(3, later)).unwrap(),
        NonceOutcome::Replayed
    );
    store.expire(later + 30 + 61).unwrap();
    assert_eq!(store.live_nonces(), 0);
}

/// See the macros.
pub fn standing_moves_through_suspend_revoke_reinstate<S: RevocationSet>(
    make: impl Fn(Setup) -> Subject<S>,
) {
    let subject = make(Setup::default());
    let set = &subject.store;
    let holder = web_number("7K3MQ9XZ2P");
    let other = web_number("0123456789");
    assert_eq!(set.standing(&holder), Standing::Active);
    for standing in [
        Standing::Suspended,
        Standing::Active,
        Standing::Suspended,
        Standing::Revoked,
    ] {
        set.apply(record(RevocationChange::WebNumber {
            web_number: holder,
            standing,
        }))
        .unwrap();
        assert_eq!(set.standing(&holder), standing);
        assert_eq!(set.standing(&other), Standing::Active);
    }
    // Revocation is final: neither reinstated nor downgraded to a suspension, and a refused
    // change is not recorded. Revoking again is harmless.
    for standing in [Standing::Active, Standing::Suspended] {
        let refused = set.apply(record(RevocationChange::WebNumber {
            web_number: holder,
            standing,
        }));
        assert_eq!(refused.unwrap_err(), Error::RevocationFinal);
        assert_eq!(set.standing(&holder), Standing::Revoked);
    }
    assert_eq!(set.history(0, 10).unwrap().len(), 4);
    set.apply(record(RevocationChange::WebNumber {
        web_number: holder,
        standing: Standing::Revoked,
    }))
    .unwrap();
    assert_eq!(set.counts().web_numbers, 1);
}

/// See the macros.
pub fn certificates_and_keys_are_revoked<S: RevocationSet>(make: impl Fn(Setup) -> Subject<S>) {
    let subject = make(Setup::default());
    let set = &subject.store;
    let certificate_id = CertificateId::from_bytes([7; 16]);
    let key_id: KeyId = "0011223344556677".parse().unwrap();
    assert!(!set.certificate_revoked(&certificate_id));
    assert!(!set.key_revoked(&key_id));
    set.apply(record(RevocationChange::Certificate { certificate_id }))
        .unwrap();
    set.apply(record(RevocationChange::IssuerKey { key_id }))
        .unwrap();
    assert!(set.certificate_revoked(&certificate_id));
    assert!(set.key_revoked(&key_id));
    assert!(!set.certificate_revoked(&CertificateId::from_bytes([8; 16])));
    assert_eq!(
        set.counts(),
        RevocationCounts {
            web_numbers: 0,
            certificates: 1,
            keys: 1
        }
    );
}

/// See the macros.
pub fn enrollment_events_are_recorded_and_change_no_standing<S: RevocationSet>(
    make: impl Fn(Setup) -> Subject<S>,
) {
    let subject = make(Setup::default());
    let set = &subject.store;
    let child = web_number("7K3MQ9XZ2P");
    let events = [
        EnrollmentEvent::Enrolled,
        EnrollmentEvent::GuardianLinked {
            guardian: web_number("H4TJ8W2NQR"),
        },
        EnrollmentEvent::ReEnrolled,
        EnrollmentEvent::DeviceChanged,
    ];
    let records: Vec<RevocationRecord> = events
        .iter()
        .map(|event| {
            record(RevocationChange::Enrollment {
                web_number: child,
                event: *event,
            })
        })
        .collect();
    assert_eq!(set.apply_batch(&records[..2]).unwrap(), 2);
    assert_eq!(set.apply_batch(&records[2..]).unwrap(), 4);
    assert_eq!(set.standing(&child), Standing::Active);
    assert_eq!(set.counts(), RevocationCounts::default());
    let history: Vec<RevocationRecord> = set
        .history(0, 10)
        .unwrap()
        .into_iter()
        .map(|(_, record)| record)
        .collect();
    assert_eq!(history, records);
    // A revoked holder's later enrollment events are still recorded (the audit trail is not
    // the place that refuses them).
    set.apply(record(RevocationChange::WebNumber {
        web_number: child,
        standing: Standing::Revoked,
    }))
    .unwrap();
    set.apply(records[0].clone()).unwrap();
    assert_eq!(set.standing(&child), Standing::Revoked);
}

/// See the macros.
pub fn history_pages_in_order<S: RevocationSet>(make: impl Fn(Setup) -> Subject<S>) {
    let subject = make(Setup::default());
    let set = &subject.store;
    let holder = web_number("7K3MQ9XZ2P");
    let changes = [Standing::Suspended, Standing::Active, Standing::Revoked].map(|standing| {
        RevocationChange::WebNumber {
            web_number: holder,
            standing,
        }
    });
    let seqs: Vec<u64> = changes
        .iter()
        .map(|change| set.apply(record(*change)).unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    let all = set.history(0, 10).unwrap();
    assert_eq!(
        all.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(all[1].1, record(changes[1]));
    let page = set.history(1, 1).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].0, 2);
    assert!(set.history(3, 10).unwrap().is_empty());
}

/// See the macros.
pub fn bad_records_are_refused_and_not_recorded<S: RevocationSet>(
    make: impl Fn(Setup) -> Subject<S>,
) {
    let subject = make(Setup::default());
    let set = &subject.store;
    let holder = web_number("7K3MQ9XZ2P");
    let long = "r".repeat(65);
    for (reason, authority, code) in [
        ("", "mps", "bad_reason"),
        (" lost device", "mps", "bad_reason"),
        ("lost device ", "mps", "bad_reason"),
        ("tab\there", "mps", "bad_reason"),
        ("\u{7f51}\u{53f7}", "mps", "bad_reason"),
        (&long, "mps", "bad_reason"),
        ("stolen", "", "config"),
        ("x", &"a".repeat(65), "config"),
    ] {
        let result = set.apply(RevocationRecord {
            reason: reason.into(),
            authority: authority.into(),
            ..record(RevocationChange::WebNumber {
                web_number: holder,
                standing: Standing::Revoked,
            })
        });
        assert_eq!(result.unwrap_err().code(), code, "{reason:?} {authority:?}");
    }
    assert_eq!(set.standing(&holder), Standing::Active);
    assert!(set.history(0, 10).unwrap().is_empty());
}

/// See the macros.
pub fn batches_apply_in_order_all_or_nothing<S: RevocationSet>(make: impl Fn(Setup) -> Subject<S>) {
    let subject = make(Setup::default());
    let set = &subject.store;
    let holder = web_number("7K3MQ9XZ2P");
    let suspend = record(RevocationChange::WebNumber {
        web_number: holder,
        standing: Standing::Suspended,
    });
    let reinstate = record(RevocationChange::WebNumber {
        web_number: holder,
        standing: Standing::Active,
    });
    let revoke = record(RevocationChange::WebNumber {
        web_number: holder,
        standing: Standing::Revoked,
    });
    assert_eq!(
        set.apply_batch(&[suspend.clone(), reinstate, revoke])
            .unwrap(),
        3
    );
    assert_eq!(
        set.standing(&holder),
        Standing::Revoked,
        "the last change in a batch wins"
    );
    let invalid = RevocationRecord {
        reason: String::new(),
        ..suspend
    };
    let other = web_number("0123456789");
    let first = record(RevocationChange::WebNumber {
        web_number: other,
        standing: Standing::Revoked,
    });
    assert!(set.apply_batch(&[first, invalid]).is_err());
    assert_eq!(
        set.standing(&other),
        Standing::Active,
        "a refused batch changes nothing"
    );
    assert_eq!(set.history(0, 10).unwrap().len(), 3);
    assert_eq!(set.apply_batch(&[]).unwrap(), 3);
}

/// See the macros.
pub fn a_full_store_refuses_the_whole_batch_and_consumes_nothing<S: NonceStore>(
    make: impl Fn(Setup) -> Subject<S>,
) {
    let subject = make(Setup {
        max_live_nonces: 4,
        ..Setup::default()
    });
    let store = &subject.store;
    store
        .consume_batch(&[
            claim(1, NOW + 200),
            claim(2, NOW + 200),
            claim(3, NOW + 200),
        ])
        .unwrap();
    // Eight at once cannot fit beside three under a bound of four: the whole batch is refused
    // before anything is claimed, as a retryable failure.
    let batch: Vec<NonceClaim> = (10..18).map(|n| claim(n, NOW + 300)).collect();
    let error = store.consume_batch(&batch).unwrap_err();
    assert_eq!(error.code(), "nonce_store_full");
    assert_eq!(error.fault(), Fault::Retry);
    assert_eq!(
        store.live_nonces(),
        3,
        "nothing of the refused batch was consumed"
    );
    // Once the first three expire, every certificate of the refused batch is still fresh.
    store.expire(NOW + 200 + 30 + 61).unwrap();
    assert_eq!(
        store.consume_batch(&batch[..4]).unwrap(),
        [NonceOutcome::Fresh; 4]
    );
}

/// See the macros.
pub fn a_claim_past_the_expiry_horizon_is_refused_as_expired<S: NonceStore>(
    make: impl Fn(Setup) -> Subject<S>,
) {
    let subject = make(Setup::default());
    let store = &subject.store;
    assert_eq!(
        store.consume(claim(1, NOW + 100)).unwrap(),
        NonceOutcome::Fresh
    );
    store.expire(NOW + 100 + 30 + 61).unwrap();
    // The first use was forgotten with its bucket; a presentation checked just before the drop
    // must not be taken for a first use.
    assert_eq!(
        store.consume(claim(1, NOW + 100)).unwrap(),
        NonceOutcome::Expired
    );
    assert_eq!(store.live_nonces(), 0);
}

/// See the macros.
pub fn a_retry_of_the_same_request_is_repeated_never_replayed<S: NonceStore>(
    make: impl Fn(Setup) -> Subject<S>,
) {
    let subject = make(Setup::default());
    let store = &subject.store;
    let shop: PlatformId = "shop.example".parse().unwrap();
    let keyed = |n, key: &[u8]| NonceClaim {
        request: Some(RequestKey::derive(&shop, key)),
        ..claim(n, NOW + 200)
    };
    assert_eq!(
        store.consume(keyed(1, b"order-1")).unwrap(),
        NonceOutcome::Fresh
    );
    assert_eq!(
        store.consume(keyed(1, b"order-1")).unwrap(),
        NonceOutcome::Repeated
    );
    assert_eq!(
        store.consume(keyed(1, b"order-2")).unwrap(),
        NonceOutcome::Replayed
    );
    assert_eq!(
        store.consume(claim(1, NOW + 200)).unwrap(),
        NonceOutcome::Replayed
    );
    // In one batch, too, and without a key nothing is ever repeated.
    assert_eq!(
        store
            .consume_batch(&[
                keyed(2, b"k"),
                keyed(2, b"k"),
                claim(3, NOW + 200),
                claim(3, NOW + 200)
            ])
            .unwrap(),
        [
            NonceOutcome::Fresh,
            NonceOutcome::Repeated,
            NonceOutcome::Fresh,
            NonceOutcome::Replayed
        ]
    );
    assert_eq!(store.live_nonces(), 3);
}
