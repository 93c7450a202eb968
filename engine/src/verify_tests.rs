//! Every verdict, the order of checks, and replay safety under concurrency.

use std::sync::{Arc, Barrier, OnceLock};

use proptest::prelude::*;

use crate::*;

const NOW: u64 = 1_790_000_000;

/// Key generation and signing are the slow part; share one issuer across tests.
pub(crate) fn issuer() -> &'static Issuer {
    static ISSUER: OnceLock<Issuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        Issuer::new(
            IssuerSigningKey::generate().unwrap(),
            IssuerPolicy::default(),
        )
        .unwrap()
    })
}

struct Fixture {
    keys: Arc<KeyRegistry>,
    revocations: Arc<MemoryRevocationSet>,
    verifier: Verifier,
}

fn fixture() -> Fixture {
    let keys = Arc::new(KeyRegistry::new());
    keys.insert(issuer().key().public_key().clone()).unwrap();
    let revocations = Arc::new(MemoryRevocationSet::new());
    let verifier = Verifier::new(
        keys.clone(),
        revocations.clone(),
        Arc::new(MemoryNonceStore::new(0)),
        VerifierConfig::default(),
    );
    Fixture {
        keys,
        revocations,
        verifier,
    }
}

fn platform(id: &str) -> PlatformId {
    id.parse().unwrap()
}

fn context(now: u64) -> Context {
    Context {
        platform: Some(platform("shop.example")),
        now,
        request: None,
        disclose: crate::Attributes::NONE,
    }
}

fn request() -> IssueRequest {
    IssueRequest {
        claims: Claims {
            age: Some(AgeBracket::Adult),
            ..Claims::default()
        },
        ..IssueRequest::new(WebNumber::generate().unwrap())
    }
}

fn verify_text(fixture: &Fixture, certificate: &Certificate, context: &Context) -> Verdict {
    fixture
        .verifier
        .verify(Input::Text(&certificate.to_text()), context)
        .unwrap()
}

fn revoke(fixture: &Fixture, change: RevocationChange) {
    fixture
        .revocations
        .apply(RevocationRecord {
            change,
            reason: "test".into(),
            authority: "test-authority".into(),
            at: NOW,
        })
        .unwrap();
}

#[test]
fn valid_reveals_only_number_assurance_claims_and_expiry() {
    let fixture = fixture();
    let request = request();
    let certificate = issuer().issue(&request, NOW).unwrap();
    let verdict = verify_text(&fixture, &certificate, &context(NOW + 1));
    assert_eq!(
        verdict,
        Verdict::Valid(Verified {
            web_number: request.web_number,
            assurance: Assurance::Substantial,
            claims: Claims {
                age: Some(AgeBracket::Adult),
                ..Claims::default()
            },
            expires_at: NOW + 180,
            receipt: None,
        })
    );
    let json = serde_json::to_value(verdict).unwrap();
    let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        ["assurance", "claims", "expires_at", "verdict", "web_number"]
    );
}

#[test]
fn binary_input_verifies_too() {
    let fixture = fixture();
    let certificate = issuer().issue(&request(), NOW).unwrap();
    let verdict = fixture
        .verifier
        .verify(Input::Binary(certificate.as_bytes()), &context(NOW))
        .unwrap();
    assert!(verdict.is_valid());
}

#[test]
fn replayed_after_first_use() {
    let fixture = fixture();
    let certificate = issuer().issue(&request(), NOW).unwrap();
    assert!(verify_text(&fixture, &certificate, &context(NOW)).is_valid());
    assert_eq!(
        verify_text(&fixture, &certificate, &context(NOW)).reason(),
        Some(Reason::Replayed)
    );
    // The binary form of the same certificate is the same nonce.
    let again = fixture
        .verifier
        .verify(Input::Binary(certificate.as_bytes()), &context(NOW))
        .unwrap();
    assert_eq!(again.reason(), Some(Reason::Replayed));
}

#[test]
fn malformed_inputs() {
    let fixture = fixture();
    let certificate = issuer().issue(&request(), NOW).unwrap();
    let text = certificate.to_text();
    let cases = [
        String::new(),
        "WZ1:".into(),
        text[..text.len() - 1].into(),
        format!("{text}A"),
        text.to_lowercase().replacen("wz1:", "WZ1:", 1),
        format!("{text}\n"),
    ];
    for case in &cases {
        let verdict = fixture
            .verifier
            .verify(Input::Text(case), &context(NOW))
            .unwrap();
        assert_eq!(verdict.reason(), Some(Reason::Malformed), "{case:?}");
    }
    let mut long = certificate.as_bytes().to_vec();
    long.push(0);
    for bytes in [&certificate.as_bytes()[..126], &long[..]] {
        let verdict = fixture
            .verifier
            .verify(Input::Binary(bytes), &context(NOW))
            .unwrap();
        assert_eq!(verdict.reason(), Some(Reason::Malformed));
    }
}

#[test]
fn lifetime_beyond_policy_is_malformed() {
    let fixture = fixture();
    let fields = CertificateFields {
        lifetime: VerifierConfig::DEFAULT_MAX_LIFETIME + 1,
        ..*issuer().issue(&request(), NOW).unwrap().fields()
    };
    let certificate = issuer().sign(fields).unwrap();
    assert_eq!(
        verify_text(&fixture, &certificate, &context(NOW)).reason(),
        Some(Reason::Malformed)
    );
}

#[test]
fn unsupported_version() {
    let fixture = fixture();
    let mut bytes = *issuer().issue(&request(), NOW).unwrap().as_bytes();
    bytes[0] = 2;
    let verdict = fixture
        .verifier
        .verify(Input::Binary(&bytes), &context(NOW))
        .unwrap();
    assert_eq!(verdict.reason(), Some(Reason::UnsupportedVersion));
    let verdict = fixture
        .verifier
        .verify(Input::Text("WZ2:0000"), &context(NOW))
        .unwrap();
    assert_eq!(verdict.reason(), Some(Reason::UnsupportedVersion));
}

#[test]
fn unknown_key() {
    let fixture = fixture();
    let stranger = Issuer::new(
        IssuerSigningKey::generate().unwrap(),
        IssuerPolicy::default(),
    )
    .unwrap();
    let certificate = stranger.issue(&request(), NOW).unwrap();
    assert_eq!(
        verify_text(&fixture, &certificate, &context(NOW)).reason(),
        Some(Reason::UnknownKey)
    );
}

#[test]
fn key_revoked_refuses_even_old_certificates() {
    let fixture = fixture();
    let certificate = issuer().issue(&request(), NOW).unwrap();
    revoke(
        &fixture,
        RevocationChange::IssuerKey {
            key_id: issuer().key().key_id(),
        },
    );
    assert_eq!(
        verify_text(&fixture, &certificate, &context(NOW)).reason(),
        Some(Reason::KeyRevoked)
    );
}

#[test]
fn retired_key_verifies_until_its_certificates_expire() {
    let fixture = fixture();
    let before = issuer().issue(&request(), NOW).unwrap();
    let after = issuer().issue(&request(), NOW + 1).unwrap();
    fixture.keys.retire(&issuer().key().key_id(), NOW);
    assert!(verify_text(&fixture, &before, &context(NOW + 2)).is_valid());
    assert_eq!(
        verify_text(&fixture, &after, &context(NOW + 2)).reason(),
        Some(Reason::KeyRevoked)
    );
}

#[test]
fn validity_window_honours_skew() {
    let fixture = fixture();
    let skew = VerifierConfig::DEFAULT_SKEW;
    let future = issuer().issue(&request(), NOW + skew + 1).unwrap();
    assert_eq!(
        verify_text(&fixture, &future, &context(NOW)).reason(),
        Some(Reason::NotYetValid)
    );
    let slightly_ahead = issuer().issue(&request(), NOW + skew).unwrap();
    assert!(verify_text(&fixture, &slightly_ahead, &context(NOW)).is_valid());

    let certificate = issuer().issue(&request(), NOW).unwrap();
    let expires = certificate.fields().expires_at();
    assert_eq!(
        verify_text(&fixture, &certificate, &context(expires + skew)).reason(),
        Some(Reason::Expired)
    );
    assert!(verify_text(&fixture, &certificate, &context(expires + skew - 1)).is_valid());
}

#[test]
fn wrong_audience() {
    let fixture = fixture();
    let certificate = issuer()
        .issue(
            &IssueRequest {
                audience: Some(platform("bank.example")),
                ..request()
            },
            NOW,
        )
        .unwrap();
    assert_eq!(
        verify_text(&fixture, &certificate, &context(NOW)).reason(),
        Some(Reason::WrongAudience)
    );
    let anonymous = Context {
        platform: None,
        now: NOW,
        request: None,
        disclose: crate::Attributes::NONE,
    };
    assert_eq!(
        verify_text(&fixture, &certificate, &anonymous).reason(),
        Some(Reason::WrongAudience)
    );
    let bank = Context {
        platform: Some(platform("bank.example")),
        now: NOW,
        request: None,
        disclose: crate::Attributes::NONE,
    };
    assert!(verify_text(&fixture, &certificate, &bank).is_valid());
}

#[test]
fn bad_signature() {
    let fixture = fixture();
    let certificate = issuer().issue(&request(), NOW).unwrap();
    let mut bytes = *certificate.as_bytes();
    bytes[CERTIFICATE_LEN - 1] ^= 1;
    let verdict = fixture
        .verifier
        .verify(Input::Binary(&bytes), &context(NOW))
        .unwrap();
    assert_eq!(verdict.reason(), Some(Reason::BadSignature));
    // r = 0 and s = n are outside [1, n-1].
    let mut zero_r = *certificate.as_bytes();
    zero_r[63..95].fill(0);
    let verdict = fixture
        .verifier
        .verify(Input::Binary(&zero_r), &context(NOW))
        .unwrap();
    assert_eq!(verdict.reason(), Some(Reason::BadSignature));
    // The genuine certificate is untouched by the forgery attempts.
    assert!(verify_text(&fixture, &certificate, &context(NOW)).is_valid());
}

#[test]
fn revoked_web_number_certificate_and_reinstatement() {
    let fixture = fixture();
    let request = request();
    let web_number = request.web_number;
    let set = |standing| {
        revoke(
            &fixture,
            RevocationChange::WebNumber {
                web_number,
                standing,
            },
        );
    };
    // A suspension ends with reinstatement; while it lasts, every certificate is refused.
    set(Standing::Suspended);
    let certificate = issuer().issue(&request, NOW).unwrap();
    assert_eq!(
        verify_text(&fixture, &certificate, &context(NOW)).reason(),
        Some(Reason::Revoked)
    );
    set(Standing::Active);
    let certificate = issuer().issue(&request, NOW).unwrap();
    revoke(
        &fixture,
        RevocationChange::Certificate {
            certificate_id: certificate.fields().certificate_id,
        },
    );
    assert_eq!(
        verify_text(&fixture, &certificate, &context(NOW)).reason(),
        Some(Reason::Revoked)
    );
    assert!(
        verify_text(
            &fixture,
            &issuer().issue(&request, NOW).unwrap(),
            &context(NOW)
        )
        .is_valid()
    );
    // A revocation is final: refused for good, and reinstatement is refused.
    set(Standing::Revoked);
    let certificate = issuer().issue(&request, NOW).unwrap();
    assert_eq!(
        verify_text(&fixture, &certificate, &context(NOW)).reason(),
        Some(Reason::Revoked)
    );
    let reinstate = fixture.revocations.apply(RevocationRecord {
        change: RevocationChange::WebNumber {
            web_number,
            standing: Standing::Active,
        },
        reason: "test".into(),
        authority: "test-authority".into(),
        at: NOW,
    });
    assert_eq!(reinstate.unwrap_err(), Error::RevocationFinal);
    let certificate = issuer().issue(&request, NOW).unwrap();
    assert_eq!(
        verify_text(&fixture, &certificate, &context(NOW)).reason(),
        Some(Reason::Revoked)
    );
}

#[test]
fn revoked_certificate_keeps_its_nonce_unconsumed() {
    // Revocation is checked before the nonce, so lifting a suspension makes a still-current
    // certificate usable once.
    let fixture = fixture();
    let request = request();
    let web_number = request.web_number;
    let certificate = issuer().issue(&request, NOW).unwrap();
    revoke(
        &fixture,
        RevocationChange::WebNumber {
            web_number,
            standing: Standing::Suspended,
        },
    );
    assert_eq!(
        verify_text(&fixture, &certificate, &context(NOW)).reason(),
        Some(Reason::Revoked)
    );
    revoke(
        &fixture,
        RevocationChange::WebNumber {
            web_number,
            standing: Standing::Active,
        },
    );
    assert!(verify_text(&fixture, &certificate, &context(NOW)).is_valid());
}

#[test]
fn forged_certificate_learns_nothing_and_consumes_nothing() {
    let fixture = fixture();
    let request = request();
    let genuine = issuer().issue(&request, NOW).unwrap();
    revoke(
        &fixture,
        RevocationChange::WebNumber {
            web_number: request.web_number,
            standing: Standing::Suspended,
        },
    );
    // A forger copies the genuine certificate's nonce and holder but cannot sign.
    let mut forged = *genuine.as_bytes();
    forged[70] ^= 0x40;
    let verdict = fixture
        .verifier
        .verify(Input::Binary(&forged), &context(NOW))
        .unwrap();
    assert_eq!(
        verdict.reason(),
        Some(Reason::BadSignature),
        "standing must not leak"
    );
    revoke(
        &fixture,
        RevocationChange::WebNumber {
            web_number: request.web_number,
            standing: Standing::Active,
        },
    );
    assert!(verify_text(&fixture, &genuine, &context(NOW)).is_valid());
}

#[test]
fn cheap_checks_come_first() {
    // An expired certificate for the wrong platform with a broken signature is `expired`: the
    // validity window is checked before the audience, and both before the signature.
    let fixture = fixture();
    let certificate = issuer()
        .issue(
            &IssueRequest {
                audience: Some(platform("bank.example")),
                ..request()
            },
            NOW,
        )
        .unwrap();
    let mut bytes = *certificate.as_bytes();
    bytes[100] ^= 1;
    let verdict = fixture
        .verifier
        .verify(Input::Binary(&bytes), &context(NOW + 10_000))
        .unwrap();
    assert_eq!(verdict.reason(), Some(Reason::Expired));
    let verdict = fixture
        .verifier
        .verify(Input::Binary(&bytes), &context(NOW))
        .unwrap();
    assert_eq!(verdict.reason(), Some(Reason::WrongAudience));
}

#[test]
fn batch_consumes_each_nonce_once_in_order() {
    let fixture = fixture();
    let first = issuer().issue(&request(), NOW).unwrap();
    let second = issuer().issue(&request(), NOW).unwrap();
    let (a, b) = (first.to_text(), second.to_text());
    let requests = [
        (Input::Text(&a), context(NOW)),
        (Input::Text("garbage"), context(NOW)),
        (Input::Text(&a), context(NOW)),
        (Input::Binary(second.as_bytes()), context(NOW)),
        (Input::Text(&b), context(NOW)),
    ];
    let verdicts = fixture.verifier.verify_batch(&requests).unwrap();
    let reasons: Vec<_> = verdicts.iter().map(Verdict::reason).collect();
    assert_eq!(
        reasons,
        [
            None,
            Some(Reason::Malformed),
            Some(Reason::Replayed),
            None,
            Some(Reason::Replayed)
        ]
    );
}

#[test]
fn concurrent_verifications_of_one_certificate_yield_exactly_one_valid() {
    let fixture = Arc::new(fixture());
    let text = Arc::new(issuer().issue(&request(), NOW).unwrap().to_text());
    let threads = 16;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (fixture, text, barrier) = (fixture.clone(), text.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..4)
                    .filter(|_| verify_text_str(&fixture, &text).is_valid())
                    .count()
            })
        })
        .collect();
    let valid: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(valid, 1);
}

fn verify_text_str(fixture: &Fixture, text: &str) -> Verdict {
    fixture
        .verifier
        .verify(Input::Text(text), &context(NOW))
        .unwrap()
}

#[test]
fn history_unavailable_for_certificates_older_than_the_store() {
    let keys = Arc::new(KeyRegistry::new());
    keys.insert(issuer().key().public_key().clone()).unwrap();
    let started = NOW + 100;
    let verifier = Verifier::new(
        keys,
        Arc::new(MemoryRevocationSet::new()),
        Arc::new(MemoryNonceStore::new(started)),
        VerifierConfig::default(),
    );
    let skew = VerifierConfig::DEFAULT_SKEW;
    let before = issuer().issue(&request(), started + skew - 1).unwrap();
    let after = issuer().issue(&request(), started + skew).unwrap();
    let verify = |certificate: &Certificate| {
        verifier
            .verify(
                Input::Binary(certificate.as_bytes()),
                &context(started + skew),
            )
            .unwrap()
    };
    assert_eq!(verify(&before).reason(), Some(Reason::HistoryUnavailable));
    assert_eq!(
        verify(&before).reason(),
        Some(Reason::HistoryUnavailable),
        "not consumed"
    );
    assert!(verify(&after).is_valid());
}

#[test]
fn store_failure_is_an_error_never_a_verdict() {
    let keys = Arc::new(KeyRegistry::new());
    keys.insert(issuer().key().public_key().clone()).unwrap();
    let verifier = Verifier::new(
        keys,
        Arc::new(MemoryRevocationSet::new()),
        Arc::new(crate::store::FailingNonceStore),
        VerifierConfig::default(),
    );
    let certificate = issuer().issue(&request(), NOW).unwrap();
    let result = verifier.verify(Input::Binary(certificate.as_bytes()), &context(NOW));
    assert_eq!(result, Err(Error::Poisoned));
    // Invalid certificates need no store and still get their verdict.
    let result = verifier.verify(Input::Text("junk"), &context(NOW));
    assert_eq!(result.unwrap().reason(), Some(Reason::Malformed));
}

/// A revocation set that cannot prove its view current, as a cluster-fed one cut off from its
/// cluster.
struct StaleRevocations(MemoryRevocationSet);

impl RevocationSet for StaleRevocations {
    fn standing(&self, web_number: &WebNumber) -> Standing {
        self.0.standing(web_number)
    }
    fn certificate_revoked(&self, certificate_id: &CertificateId) -> bool {
        self.0.certificate_revoked(certificate_id)
    }
    fn key_revoked(&self, key_id: &KeyId) -> bool {
        self.0.key_revoked(key_id)
    }
    fn apply_batch(&self, records: &[RevocationRecord]) -> Result<u64, Error> {
        self.0.apply_batch(records)
    }
    fn history(&self, after: u64, limit: usize) -> Result<Vec<(u64, RevocationRecord)>, Error> {
        self.0.history(after, limit)
    }
    fn counts(&self) -> RevocationCounts {
        self.0.counts()
    }
    fn check_current(&self) -> Result<(), Error> {
        Err(Error::Store {
            context: "revocation view",
            detail: "not proven current".into(),
        })
    }
}

#[test]
fn a_revocation_view_not_proven_current_answers_no_valid_and_consumes_nothing() {
    let keys = Arc::new(KeyRegistry::new());
    keys.insert(issuer().key().public_key().clone()).unwrap();
    let nonces = Arc::new(MemoryNonceStore::new(NOW - 100));
    let verifier = Verifier::new(
        keys,
        Arc::new(StaleRevocations(MemoryRevocationSet::new())),
        nonces.clone(),
        VerifierConfig::default(),
    );
    let certificate = issuer().issue(&request(), NOW).unwrap();
    let error = verifier
        .verify(Input::Binary(certificate.as_bytes()), &context(NOW))
        .unwrap_err();
    assert_eq!(error.fault(), Fault::Retry);
    assert_eq!(nonces.live_nonces(), 0, "nothing consumed");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_single_bit_flip_is_never_valid(bit in 0..CERTIFICATE_LEN * 8) {
        static CERTIFICATE: OnceLock<Certificate> = OnceLock::new();
        let certificate = CERTIFICATE.get_or_init(|| issuer().issue(&request(), NOW).unwrap());
        let fixture = fixture();
        let mut bytes = *certificate.as_bytes();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let verdict = fixture.verifier.verify(Input::Binary(&bytes), &context(NOW)).unwrap();
        prop_assert!(!verdict.is_valid());
        let mut text = [0u8; TEXT_LEN];
        text.copy_from_slice(certificate.to_text().as_bytes());
        text[bit % TEXT_LEN] ^= 1 << (bit % 7);
        let text = String::from_utf8_lossy(&text);
        let verdict = fixture.verifier.verify(Input::Text(&text), &context(NOW)).unwrap();
        prop_assert!(!verdict.is_valid());
    }

    #[test]
    fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let fixture = fixture();
        let verdict = fixture.verifier.verify(Input::Binary(&bytes), &context(NOW)).unwrap();
        prop_assert!(!verdict.is_valid());
        let text = String::from_utf8_lossy(&bytes);
        let verdict = fixture.verifier.verify(Input::Text(&text), &context(NOW)).unwrap();
        prop_assert!(!verdict.is_valid());
    }
}

#[test]
fn a_retried_request_gets_its_answer_again_and_nobody_else_does() {
    let fixture = fixture();
    let certificate = issuer().issue(&request(), NOW).unwrap();
    let shop = platform("shop.example");
    let with_key = |key: &[u8]| Context {
        request: Some(RequestKey::derive(&shop, key)),
        disclose: crate::Attributes::NONE,
        ..context(NOW + 1)
    };
    let first = verify_text(&fixture, &certificate, &with_key(b"login-42"));
    assert!(first.is_valid());
    // The platform lost the answer and sends the same request again.
    assert_eq!(
        verify_text(&fixture, &certificate, &with_key(b"login-42")),
        first
    );
    // Any other request for the certificate is a replay.
    for other in [with_key(b"login-43"), context(NOW + 1)] {
        assert_eq!(
            verify_text(&fixture, &certificate, &other).reason(),
            Some(Reason::Replayed)
        );
    }
}
