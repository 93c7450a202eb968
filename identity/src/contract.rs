//! One contract for every [`Registry`]: what enrollment relies on, whatever keeps the
//! registry. A store crate runs the suite against its own implementation with one macro:
//!
//! ```ignore
//! fn my_store(setup: Setup) -> Subject<MyStore> { ... }
//! cyberid_identity::registry_contract!(my_store);
//! ```
//!
//! The subject is both the registry and the revocation set whose history holds the audit
//! trail. Compiled with the `contract` feature (store crates enable it for their tests only).
#![allow(missing_docs)]

use std::sync::{Arc, Barrier};

pub use cyberid_engine::contract::{NOW, Setup, Subject};
use cyberid_engine::{
    EnrollmentEvent, RevocationChange, RevocationRecord, RevocationSet, WebNumber,
};

use crate::{
    BlindIndex, DeviceSigningKey, Enrollment, Error, Purpose, Registry, SealedRecord,
    StandingConsent,
};

/// Runs every registry contract test against `$make: fn(Setup) -> Subject<S>`.
#[macro_export]
macro_rules! registry_contract {
    ($make:ident) => {
        mod registry_contract {
            $crate::registry_contract_tests!(super::$make: a_first_enrollment_is_found_by_index_and_number,
                a_second_first_enrollment_of_the_same_person_is_a_race,
                re_enrollment_replaces_the_device_under_the_same_number,
                a_revoked_holder_re_enrolls_under_a_new_number,
                concurrent_first_enrollments_store_one,
                the_audit_trail_is_written_with_the_enrollment_and_only_then,
                consents_are_kept_per_holder_and_platform_replaced_and_withdrawn);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! registry_contract_tests {
    ($make:path: $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::contract::$name($make);
            }
        )*
    };
}

/// An enrollment of person `n` (the blind index is `[n; 32]`), with a fresh Web Number and
/// device key. The sealed record is opaque bytes of the right shape: registries never open it.
pub fn enrollment(n: u8, guardian: Option<WebNumber>) -> Enrollment {
    let mut sealed = vec![1, 0, 0, 0, 1];
    sealed.extend_from_slice(&[n; 12 + 40 + 16]);
    Enrollment {
        web_number: WebNumber::generate().unwrap(),
        index: BlindIndex::from_bytes([n; 32]),
        device: DeviceSigningKey::generate().unwrap().public_key(),
        sealed: SealedRecord::from_bytes(sealed).unwrap(),
        guardian,
        enrolled_at: NOW,
        updated_at: NOW,
    }
}

/// The audit record of `event` for `web_number`.
pub fn audit(web_number: WebNumber, event: EnrollmentEvent) -> RevocationRecord {
    RevocationRecord {
        change: RevocationChange::Enrollment { web_number, event },
        reason: "enrollment".into(),
        authority: "agent:app".into(),
        at: NOW,
    }
}

fn history<S: RevocationSet>(store: &S) -> Vec<RevocationRecord> {
    store
        .history(0, 1000)
        .unwrap()
        .into_iter()
        .map(|(_, record)| record)
        .collect()
}

/// See the macro.
pub fn a_first_enrollment_is_found_by_index_and_number<S: Registry + RevocationSet>(
    make: impl Fn(Setup) -> Subject<S>,
) {
    let subject = make(Setup::default());
    let store = &subject.store;
    let child = enrollment(1, Some(WebNumber::generate().unwrap()));
    assert_eq!(store.find(&child.index).unwrap(), None);
    assert_eq!(store.holder(&child.web_number).unwrap(), None);
    let seq = store
        .store(
            &child,
            None,
            &[audit(child.web_number, EnrollmentEvent::Enrolled)],
        )
        .unwrap();
    assert_eq!(seq, 1);
    assert_eq!(store.find(&child.index).unwrap(), Some(child.web_number));
    assert_eq!(store.holder(&child.web_number).unwrap(), Some(child));
    assert_eq!(store.find(&BlindIndex::from_bytes([2; 32])).unwrap(), None);
}

/// See the macro.
pub fn a_second_first_enrollment_of_the_same_person_is_a_race<S: Registry + RevocationSet>(
    make: impl Fn(Setup) -> Subject<S>,
) {
    let subject = make(Setup::default());
    let store = &subject.store;
    let first = enrollment(1, None);
    store
        .store(
            &first,
            None,
            &[audit(first.web_number, EnrollmentEvent::Enrolled)],
        )
        .unwrap();
    // The same person under another number.
    let again = enrollment(1, None);
    let refused = store.store(
        &again,
        None,
        &[audit(again.web_number, EnrollmentEvent::Enrolled)],
    );
    assert_eq!(refused, Err(Error::EnrollmentRace));
    // Another person under a number already taken.
    let mut taken = enrollment(2, None);
    taken.web_number = first.web_number;
    assert_eq!(store.store(&taken, None, &[]), Err(Error::EnrollmentRace));
    assert_eq!(store.find(&first.index).unwrap(), Some(first.web_number));
    assert_eq!(store.holder(&first.web_number).unwrap(), Some(first));
    assert_eq!(
        history(&**store).len(),
        1,
        "a refused write records nothing"
    );
}

/// See the macro.
pub fn re_enrollment_replaces_the_device_under_the_same_number<S: Registry + RevocationSet>(
    make: impl Fn(Setup) -> Subject<S>,
) {
    let subject = make(Setup::default());
    let store = &subject.store;
    let first = enrollment(1, None);
    store
        .store(
            &first,
            None,
            &[audit(first.web_number, EnrollmentEvent::Enrolled)],
        )
        .unwrap();
    let mut renewed = first.clone();
    renewed.device = DeviceSigningKey::generate().unwrap().public_key();
    renewed.updated_at = NOW + 100;
    // A stale expectation (someone else's number) is refused.
    let stale = store.store(&renewed, Some(WebNumber::generate().unwrap()), &[]);
    assert_eq!(stale, Err(Error::EnrollmentRace));
    let events = [
        audit(first.web_number, EnrollmentEvent::ReEnrolled),
        audit(first.web_number, EnrollmentEvent::DeviceChanged),
    ];
    assert_eq!(
        store
            .store(&renewed, Some(first.web_number), &events)
            .unwrap(),
        3
    );
    let held = store.holder(&first.web_number).unwrap().unwrap();
    assert_eq!(held.device, renewed.device);
    assert_ne!(held.device, first.device, "the old device key is gone");
    assert_eq!(held.enrolled_at, NOW);
    assert_eq!(store.find(&first.index).unwrap(), Some(first.web_number));
}

/// See the macro.
pub fn a_revoked_holder_re_enrolls_under_a_new_number<S: Registry + RevocationSet>(
    make: impl Fn(Setup) -> Subject<S>,
) {
    let subject = make(Setup::default());
    let store = &subject.store;
    let first = enrollment(1, None);
    store.store(&first, None, &[]).unwrap();
    let mut successor = enrollment(1, None);
    successor.index = first.index;
    store
        .store(
            &successor,
            Some(first.web_number),
            &[audit(successor.web_number, EnrollmentEvent::Enrolled)],
        )
        .unwrap();
    assert_eq!(
        store.find(&first.index).unwrap(),
        Some(successor.web_number)
    );
    assert!(
        store.holder(&first.web_number).unwrap().is_some(),
        "the old record stays"
    );
    assert!(store.holder(&successor.web_number).unwrap().is_some());
}

/// See the macro.
pub fn concurrent_first_enrollments_store_one<S: Registry + RevocationSet + 'static>(
    make: impl Fn(Setup) -> Subject<S>,
) {
    let subject = make(Setup::default());
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let store = subject.store.clone();
            let barrier = barrier.clone();
            let attempt = enrollment(9, None);
            std::thread::spawn(move || {
                barrier.wait();
                let record = audit(attempt.web_number, EnrollmentEvent::Enrolled);
                store
                    .store(&attempt, None, &[record])
                    .map(|_| attempt.web_number)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let stored: Vec<WebNumber> = results.iter().filter_map(|r| r.clone().ok()).collect();
    assert_eq!(stored.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r.is_ok() || *r == Err(Error::EnrollmentRace))
    );
    assert_eq!(
        subject
            .store
            .find(&BlindIndex::from_bytes([9; 32]))
            .unwrap(),
        Some(stored[0])
    );
    assert_eq!(history(&*subject.store).len(), 1);
}

/// See the macro.
pub fn the_audit_trail_is_written_with_the_enrollment_and_only_then<S: Registry + RevocationSet>(
    make: impl Fn(Setup) -> Subject<S>,
) {
    let subject = make(Setup::default());
    let store = &subject.store;
    let guardian = WebNumber::generate().unwrap();
    let child = enrollment(4, Some(guardian));
    let records = [
        audit(child.web_number, EnrollmentEvent::Enrolled),
        audit(
            child.web_number,
            EnrollmentEvent::GuardianLinked { guardian },
        ),
    ];
    store.store(&child, None, &records).unwrap();
    assert_eq!(history(&**store), records);
    // An audit record the history refuses (a bad reason) fails the whole write.
    let mut bad = audit(WebNumber::generate().unwrap(), EnrollmentEvent::Enrolled);
    bad.reason = " bad ".into();
    let other = enrollment(5, None);
    assert!(store.store(&other, None, &[bad]).is_err());
    assert_eq!(store.find(&other.index).unwrap(), None);
    assert_eq!(store.holder(&other.web_number).unwrap(), None);
    assert_eq!(history(&**store).len(), 2);
}

/// See the macro.
pub fn consents_are_kept_per_holder_and_platform_replaced_and_withdrawn<
    S: Registry + RevocationSet,
>(
    make: impl Fn(Setup) -> Subject<S>,
) {
    use cyberid_engine::{Attribute, Attributes};
    let subject = make(Setup::default());
    let store = &subject.store;
    let holder = WebNumber::generate().unwrap();
    let other = WebNumber::generate().unwrap();
    let consent = |platform: &str, attributes: &[Attribute], purpose: &str| StandingConsent {
        platform: platform.parse().unwrap(),
        attributes: Attributes::of(attributes),
        purpose: Purpose::of(purpose),
        given_at: NOW,
    };
    // Ids that are prefixes of each other stay apart.
    let bank = consent("bank", &[Attribute::Name], "account opening");
    let bank_example = consent("bank.example", &Attribute::ALL, "anti-money-laundering");
    assert_eq!(store.consent(&holder, &bank.platform).unwrap(), None);
    assert_eq!(store.consents(&holder).unwrap(), vec![]);
    store.put_consent(&holder, &bank_example).unwrap();
    store.put_consent(&holder, &bank).unwrap();
    store.put_consent(&other, &bank).unwrap();
    assert_eq!(store.consent(&holder, &bank.platform).unwrap(), Some(bank));
    assert_eq!(
        store.consents(&holder).unwrap(),
        vec![bank, bank_example],
        "in the order of the platform ids' bytes"
    );
    // A new consent to the same platform replaces the old one.
    let narrower = consent("bank.example", &[Attribute::Name], "anti-money-laundering");
    store.put_consent(&holder, &narrower).unwrap();
    assert_eq!(
        store.consent(&holder, &narrower.platform).unwrap(),
        Some(narrower)
    );
    // Withdrawal: at once, for that holder and platform only, and said when there was none.
    assert!(store.withdraw_consent(&holder, &bank.platform).unwrap());
    assert!(!store.withdraw_consent(&holder, &bank.platform).unwrap());
    assert_eq!(store.consent(&holder, &bank.platform).unwrap(), None);
    assert_eq!(store.consents(&holder).unwrap(), vec![narrower]);
    assert_eq!(store.consents(&other).unwrap(), vec![bank]);
}
