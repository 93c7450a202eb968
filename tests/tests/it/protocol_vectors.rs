//! The test vectors of docs/protocol.md, checked against the engine in exactly the state each
//! vector states: registered and retired keys, revocations, consumed nonces, when the nonce
//! store's history begins, skew and maximum lifetime.

use std::collections::BTreeSet;
use std::sync::Arc;

use cyberid_engine::{
    Certificate, Context, Input, IssuerPublicKey, KeyId, KeyRegistry, MemoryNonceStore,
    MemoryRevocationSet, NonceClaim, NonceOutcome, NonceStore, Reason, RevocationChange,
    RevocationRecord, RevocationSet, Standing, Verdict, Verifier, VerifierConfig,
};
use cyberid_tests::{Vector, base45_decode, parse_vectors, workspace_root};

fn describe(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Valid(verified) => format!("valid {}", verified_line(verified)),
        Verdict::Invalid { reason } => format!("invalid {reason}"),
    }
}

fn verified_line(verified: &cyberid_engine::Verified) -> String {
    let assurance = format!("{:?}", verified.assurance).to_lowercase();
    let mut line = format!("web_number={} assurance={assurance}", verified.web_number);
    if let Some(age) = verified.claims.age {
        line += &format!(" age={}", format!("{age:?}").to_lowercase());
    }
    line + &format!(" expires_at={}", verified.expires_at)
}

/// A verifier in exactly the state the vector states, on new in-memory stores.
fn verifier_for(vector: &Vector, key: &IssuerPublicKey) -> Verifier {
    let registry = KeyRegistry::new();
    for entry in vector.keys.split(", ") {
        let words: Vec<&str> = entry.split(' ').collect();
        let id: KeyId = words[0].parse().unwrap();
        assert_eq!(
            id,
            key.key_id(),
            "{}: the document publishes one key",
            vector.name
        );
        registry.insert(key.clone()).unwrap();
        match words[1..] {
            ["active"] => {}
            ["retired-at", at] => assert!(registry.retire(&id, at.parse().unwrap())),
            _ => panic!("{}: key state {entry:?}", vector.name),
        }
    }

    let revocations = MemoryRevocationSet::new();
    for item in vector.revoked.split("; ").filter(|item| *item != "none") {
        let words: Vec<&str> = item.split(' ').collect();
        let change = match words[..] {
            ["web-number", number, standing] => RevocationChange::WebNumber {
                web_number: number.parse().unwrap(),
                standing: match standing {
                    "suspended" => Standing::Suspended,
                    "revoked" => Standing::Revoked,
                    other => panic!("{}: standing {other}", vector.name),
                },
            },
            ["certificate", id] => RevocationChange::Certificate {
                certificate_id: id.parse().unwrap(),
            },
            ["key", id] => RevocationChange::IssuerKey {
                key_id: id.parse().unwrap(),
            },
            _ => panic!("{}: revocation {item:?}", vector.name),
        };
        revocations
            .apply(RevocationRecord {
                change,
                reason: "vector".into(),
                authority: "vectors".into(),
                at: vector.history_begins,
            })
            .unwrap();
    }

    // A consumed id is the vector's own certificate, verified once before: its nonce is
    // recorded as that verification recorded it.
    let nonces = MemoryNonceStore::new(vector.history_begins);
    for id in vector.consumed.split(", ").filter(|id| *id != "none") {
        let certificate = match (&vector.bytes, &vector.text) {
            (Some(bytes), _) => Certificate::from_bytes(bytes),
            (None, Some(text)) => Certificate::from_text(text),
            (None, None) => unreachable!("the parser requires a form"),
        }
        .unwrap();
        let fields = certificate.fields();
        assert_eq!(
            fields.certificate_id.to_string(),
            id,
            "{}: consumed ids are the vector's certificate's",
            vector.name
        );
        let claim = NonceClaim {
            certificate_id: fields.certificate_id,
            usable_from: fields.issued_at - vector.skew,
            expires_at: fields.expires_at(),
            retain_until: fields.expires_at() + vector.skew,
            request: None,
        };
        assert_eq!(nonces.consume(claim).unwrap(), NonceOutcome::Fresh);
    }

    Verifier::new(
        Arc::new(registry),
        Arc::new(revocations),
        Arc::new(nonces),
        VerifierConfig {
            skew: vector.skew,
            max_lifetime: vector.max_lifetime,
            log: false,
        },
    )
}

#[test]
fn every_vector_in_the_spec_gets_its_verdict_in_the_state_it_states() {
    let markdown = std::fs::read_to_string(workspace_root().join("docs/protocol.md")).unwrap();
    let (pem, vectors) = parse_vectors(&markdown);
    let key = IssuerPublicKey::from_spki_pem(&pem).unwrap();
    let mut names = BTreeSet::new();
    let mut verdicts = BTreeSet::new();
    for vector in &vectors {
        assert!(names.insert(&vector.name), "{} twice", vector.name);
        let context = Context {
            platform: Some(vector.platform.parse().unwrap()),
            now: vector.now,
            request: None,
            disclose: cyberid_engine::Attributes::NONE,
        };
        let mut inputs = Vec::new();
        if let Some(bytes) = &vector.bytes {
            inputs.push(("binary", Input::Binary(bytes)));
        }
        if let Some(text) = &vector.text {
            inputs.push(("text", Input::Text(text)));
        }
        for (form, input) in inputs {
            let verifier = verifier_for(vector, &key);
            let verdict = verifier.verify(input, &context).unwrap();
            assert_eq!(
                describe(&verdict),
                vector.verdict,
                "vector {} ({form})",
                vector.name
            );
            if verdict.is_valid() {
                // The second presentation, in the same state.
                let again = verifier.verify(input, &context).unwrap();
                assert_eq!(
                    describe(&again),
                    "invalid replayed",
                    "vector {}",
                    vector.name
                );
            }
        }
        // Where both forms are given, the text is `WZ1:` and the base45 of the bytes.
        if let (Some(bytes), Some(text)) = (&vector.bytes, &vector.text) {
            let body = text.strip_prefix("WZ1:").expect("a WZ1: text");
            assert_eq!(
                base45_decode(body).as_ref(),
                Some(bytes),
                "vector {}: the two forms differ",
                vector.name
            );
        }
        verdicts.insert(
            vector
                .verdict
                .split(' ')
                .nth(usize::from(vector.verdict.starts_with("invalid")))
                .unwrap_or_default()
                .to_owned(),
        );
    }
    // Every outcome a certificate, a clock, a key set and a store state can produce has a vector.
    let mut expected: BTreeSet<String> = Reason::ALL.iter().map(|r| r.code().to_owned()).collect();
    expected.insert("valid".to_owned());
    assert_eq!(verdicts, expected);
}

#[test]
fn the_base45_reader_is_strict() {
    assert_eq!(base45_decode("BB8").unwrap(), b"AB");
    assert_eq!(base45_decode("%69 VD92EX0").unwrap(), b"Hello!!");
    for bad in [":::", "Z5", "A", "ab", "\"0"] {
        assert_eq!(base45_decode(bad), None, "{bad}");
    }
}
