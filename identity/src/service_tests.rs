//! The issuing side's service, end to end over memory stores: enrollment (adults, children
//! with a guardian, a new phone, re-enrollment), certificate requests, suspension, and
//! concurrent enrollments of one person.

use super::*;
use crate::document::tests::fields;
use crate::{DeviceSigningKey, HolderRequest, MemoryRegistry, VaultKey};
use cyberid_engine::{IssuerPolicy, IssuerSigningKey, MemoryNonceStore, MemoryRevocationSet};

/// 2026-12-01 12:00 in Beijing.
const NOW: u64 = 1_796_097_600;

struct World {
    service: IdentityService,
    store: Arc<MemoryRegistry<MemoryRevocationSet>>,
    issuer: Issuer,
}

fn world() -> World {
    let store = Arc::new(MemoryRegistry::new(MemoryRevocationSet::new()));
    let master = VaultKey::generate(1).unwrap();
    let vault = Vault::open(
        &master,
        &[master.wrap(&VaultKey::generate(1).unwrap()).unwrap()],
    )
    .unwrap();
    let service = IdentityService::new(
        store.clone(),
        Arc::new(MemoryNonceStore::new(NOW - 3600)),
        Arc::new(vault),
        IndexKey::generate().unwrap(),
        ServiceConfig::default(),
    );
    let issuer = Issuer::new(
        IssuerSigningKey::generate().unwrap(),
        IssuerPolicy::default(),
    )
    .unwrap();
    World {
        service,
        store,
        issuer,
    }
}

fn request(document: DocumentFields, device: &DeviceSigningKey) -> EnrollmentRequest {
    EnrollmentRequest {
        document,
        device_key: device.public_key().to_spki_pem().unwrap(),
        guardian_consent: None,
    }
}

fn ask(
    world: &World,
    holder: WebNumber,
    device: &DeviceSigningKey,
    disclose: Disclose,
) -> Result<Certificate, Error> {
    let signed = HolderRequest::new(holder, disclose, NOW)
        .unwrap()
        .sign(device)
        .unwrap();
    world.service.issue(&signed, &world.issuer, NOW)
}

#[test]
fn an_adult_enrolls_once_and_asks_for_certificates() {
    let world = world();
    let phone = DeviceSigningKey::generate().unwrap();
    let enrolled = world
        .service
        .enroll(request(fields("张伟", "19900315"), &phone), "agent", NOW)
        .unwrap();
    assert!(!enrolled.re_enrolled);
    let certificate = ask(&world, enrolled.web_number, &phone, Disclose::Age).unwrap();
    assert_eq!(certificate.fields().web_number, enrolled.web_number);
    assert_eq!(certificate.fields().claims.age, Some(AgeBracket::Adult));
    let quiet = ask(&world, enrolled.web_number, &phone, Disclose::Nothing).unwrap();
    assert_eq!(
        quiet.fields().claims.age,
        None,
        "an adult discloses nothing unless asked"
    );
}

#[test]
fn a_new_phone_keeps_the_number_and_retires_the_old_key_at_once() {
    let world = world();
    let old = DeviceSigningKey::generate().unwrap();
    let first = world
        .service
        .enroll(request(fields("张伟", "19900315"), &old), "agent", NOW)
        .unwrap();
    let new = DeviceSigningKey::generate().unwrap();
    let again = world
        .service
        .enroll(request(fields("张伟", "19900315"), &new), "agent", NOW + 10)
        .unwrap();
    assert_eq!(again.web_number, first.web_number);
    assert!(again.re_enrolled);
    assert_eq!(
        ask(&world, first.web_number, &old, Disclose::Nothing).unwrap_err(),
        Error::DeviceSignature
    );
    assert!(ask(&world, first.web_number, &new, Disclose::Nothing).is_ok());
    let events: Vec<_> = world
        .store
        .history(0, 10)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.change)
        .collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(matches!(
        events[2],
        RevocationChange::Enrollment {
            event: EnrollmentEvent::DeviceChanged,
            ..
        }
    ));
}

#[test]
fn a_child_enrolls_only_with_an_adult_guardians_signed_consent() {
    let world = world();
    let parent_phone = DeviceSigningKey::generate().unwrap();
    let parent = world
        .service
        .enroll(
            request(fields("张伟", "19900315"), &parent_phone),
            "agent",
            NOW,
        )
        .unwrap();
    let child_phone = DeviceSigningKey::generate().unwrap();
    let child_fields = fields("张小明", "20150601");
    let mut child = request(child_fields.clone(), &child_phone);
    assert_eq!(
        world
            .service
            .enroll(child.clone(), "agent", NOW)
            .unwrap_err(),
        Error::GuardianRequired
    );

    // A consent signed by someone other than the guardian's enrolled device.
    let stranger = DeviceSigningKey::generate().unwrap();
    child.guardian_consent = Some(
        GuardianConsent::sign(
            parent.web_number,
            &stranger,
            &child_fields.resident_id,
            &child_phone.public_key(),
            NOW,
        )
        .unwrap(),
    );
    assert_eq!(
        world
            .service
            .enroll(child.clone(), "agent", NOW)
            .unwrap_err()
            .code(),
        "guardian_consent"
    );

    let consent = GuardianConsent::sign(
        parent.web_number,
        &parent_phone,
        &child_fields.resident_id,
        &child_phone.public_key(),
        NOW,
    )
    .unwrap();
    child.guardian_consent = Some(consent);
    let enrolled = world.service.enroll(child.clone(), "agent", NOW).unwrap();
    assert_eq!(enrolled.guardian, Some(parent.web_number));
    assert_eq!(
        world
            .store
            .holder(&enrolled.web_number)
            .unwrap()
            .unwrap()
            .guardian,
        Some(parent.web_number)
    );
    // The consent was good once.
    assert_eq!(
        world.service.enroll(child, "agent", NOW).unwrap_err(),
        Error::Replayed
    );

    // A child's certificate always says minor, asked or not.
    let certificate = ask(&world, enrolled.web_number, &child_phone, Disclose::Nothing).unwrap();
    assert_eq!(certificate.fields().claims.age, Some(AgeBracket::Minor));
}

#[test]
fn a_minor_cannot_be_a_guardian_and_an_adult_needs_none() {
    let world = world();
    let teen_phone = DeviceSigningKey::generate().unwrap();
    let teen = world
        .service
        .enroll(
            request(fields("李青", "20100101"), &teen_phone),
            "agent",
            NOW,
        )
        .unwrap();
    let child_phone = DeviceSigningKey::generate().unwrap();
    let child_fields = fields("李小", "20180101");
    let mut child = request(child_fields.clone(), &child_phone);
    child.guardian_consent = Some(
        GuardianConsent::sign(
            teen.web_number,
            &teen_phone,
            &child_fields.resident_id,
            &child_phone.public_key(),
            NOW,
        )
        .unwrap(),
    );
    assert_eq!(
        world.service.enroll(child, "agent", NOW).unwrap_err(),
        Error::GuardianConsent("the guardian is not an adult")
    );

    let adult_phone = DeviceSigningKey::generate().unwrap();
    let adult_fields = fields("王芳", "19800101");
    let mut adult = request(adult_fields.clone(), &adult_phone);
    adult.guardian_consent = Some(
        GuardianConsent::sign(
            teen.web_number,
            &teen_phone,
            &adult_fields.resident_id,
            &adult_phone.public_key(),
            NOW,
        )
        .unwrap(),
    );
    assert_eq!(
        world
            .service
            .enroll(adult, "agent", NOW)
            .unwrap_err()
            .code(),
        "guardian_consent"
    );
}

#[test]
fn a_holder_turns_adult_on_their_birthday_without_any_update() {
    let world = world();
    let phone = DeviceSigningKey::generate().unwrap();
    // 18 on 2026-12-02 (Beijing).
    let enrolled = world
        .service
        .enroll(request(fields("赵敏", "20081202"), &phone), "agent", NOW)
        .unwrap();
    assert_eq!(
        ask(&world, enrolled.web_number, &phone, Disclose::Age)
            .unwrap()
            .fields()
            .claims
            .age,
        Some(AgeBracket::Minor)
    );
    let tomorrow = NOW + 86_400;
    let signed = HolderRequest::new(enrolled.web_number, Disclose::Age, tomorrow)
        .unwrap()
        .sign(&phone)
        .unwrap();
    // The nonce store's history began before; tomorrow's request is fresh.
    let certificate = world
        .service
        .issue(&signed, &world.issuer, tomorrow)
        .unwrap();
    assert_eq!(certificate.fields().claims.age, Some(AgeBracket::Adult));
}

#[test]
fn a_request_is_good_once_and_a_suspended_holder_gets_nothing() {
    let world = world();
    let phone = DeviceSigningKey::generate().unwrap();
    let enrolled = world
        .service
        .enroll(request(fields("张伟", "19900315"), &phone), "agent", NOW)
        .unwrap();
    let signed = HolderRequest::new(enrolled.web_number, Disclose::Nothing, NOW)
        .unwrap()
        .sign(&phone)
        .unwrap();
    assert!(world.service.issue(&signed, &world.issuer, NOW).is_ok());
    assert_eq!(
        world
            .service
            .issue(&signed, &world.issuer, NOW)
            .unwrap_err(),
        Error::Replayed
    );

    // A refused lifetime does not use the request up.
    let mut long = HolderRequest::new(enrolled.web_number, Disclose::Nothing, NOW).unwrap();
    long.lifetime = Some(10_000);
    let long = long.sign(&phone).unwrap();
    assert_eq!(
        world
            .service
            .issue(&long, &world.issuer, NOW)
            .unwrap_err()
            .code(),
        "lifetime"
    );

    world
        .store
        .apply(RevocationRecord {
            change: RevocationChange::WebNumber {
                web_number: enrolled.web_number,
                standing: Standing::Suspended,
            },
            reason: "lost-device".into(),
            authority: "mps".into(),
            at: NOW,
        })
        .unwrap();
    assert_eq!(
        ask(&world, enrolled.web_number, &phone, Disclose::Nothing).unwrap_err(),
        Error::HolderStanding("suspended")
    );
    // An unknown holder looks like a bad signature.
    assert_eq!(
        ask(
            &world,
            WebNumber::generate().unwrap(),
            &phone,
            Disclose::Nothing
        )
        .unwrap_err(),
        Error::DeviceSignature
    );
}

#[test]
fn a_revoked_holder_re_enrolls_for_a_new_number() {
    let world = world();
    let phone = DeviceSigningKey::generate().unwrap();
    let first = world
        .service
        .enroll(request(fields("张伟", "19900315"), &phone), "agent", NOW)
        .unwrap();
    world
        .store
        .apply(RevocationRecord {
            change: RevocationChange::WebNumber {
                web_number: first.web_number,
                standing: Standing::Revoked,
            },
            reason: "fraud".into(),
            authority: "mps".into(),
            at: NOW,
        })
        .unwrap();
    let second = world
        .service
        .enroll(request(fields("张伟", "19900315"), &phone), "agent", NOW)
        .unwrap();
    assert_ne!(second.web_number, first.web_number);
    assert!(!second.re_enrolled);
    assert!(ask(&world, second.web_number, &phone, Disclose::Nothing).is_ok());
}

#[test]
fn concurrent_enrollments_of_one_person_yield_one_number() {
    let world = Arc::new(world());
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let world = world.clone();
            std::thread::spawn(move || {
                let phone = DeviceSigningKey::generate().unwrap();
                world
                    .service
                    .enroll(request(fields("张伟", "19900315"), &phone), "agent", NOW)
                    .unwrap()
                    .web_number
            })
        })
        .collect();
    let numbers: std::collections::HashSet<WebNumber> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(numbers.len(), 1);
}
