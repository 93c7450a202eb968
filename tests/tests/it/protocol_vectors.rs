//! The test vectors of docs/protocol.md, checked against the engine.

use cyberid_engine::{Certificate, Context, Input, IssuerPublicKey, Verdict};
use cyberid_tests::{memory_verifier, parse_vectors, workspace_root};

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

#[test]
fn every_vector_in_the_spec_gets_its_verdict_in_both_forms() {
    let markdown = std::fs::read_to_string(workspace_root().join("docs/protocol.md")).unwrap();
    let (pem, vectors) = parse_vectors(&markdown);
    assert!(vectors.len() >= 4, "the spec promises at least 4 vectors");
    let key = IssuerPublicKey::from_spki_pem(&pem).unwrap();
    let mut reasons = std::collections::BTreeSet::new();
    for vector in &vectors {
        let context = Context {
            platform: Some(vector.platform.parse().unwrap()),
            now: vector.now,
            request: None,
        };
        let verifier = memory_verifier(std::slice::from_ref(&key));
        let verdict = verifier
            .verify(Input::Binary(&vector.bytes), &context)
            .unwrap();
        assert_eq!(
            describe(&verdict),
            vector.verdict,
            "vector {} (binary)",
            vector.name
        );
        reasons.insert(
            vector
                .verdict
                .split(' ')
                .nth(1)
                .unwrap_or_default()
                .to_owned(),
        );
        if verdict.is_valid() {
            let again = verifier
                .verify(Input::Binary(&vector.bytes), &context)
                .unwrap();
            assert_eq!(
                describe(&again),
                "invalid replayed",
                "vector {}",
                vector.name
            );
        }

        if let Some(text) = &vector.text {
            let decoded = Certificate::from_text(text).unwrap();
            assert_eq!(
                &decoded.as_bytes()[..],
                &vector.bytes[..],
                "vector {}",
                vector.name
            );
            assert_eq!(&decoded.to_text(), text);
            let fresh = memory_verifier(std::slice::from_ref(&key));
            let verdict = fresh.verify(Input::Text(text), &context).unwrap();
            assert_eq!(
                describe(&verdict),
                vector.verdict,
                "vector {} (text)",
                vector.name
            );
        }
    }
    assert!(
        reasons.len() >= 5,
        "vectors cover valid and several reasons: {reasons:?}"
    );
}
