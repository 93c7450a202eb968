//! Interoperability with the OpenSSL command line, both directions, with keys OpenSSL wrote.

use std::path::Path;

use cyberid_engine::{
    Certificate, CertificateFields, Context, Input, IssueRequest, Issuer, IssuerPolicy,
    IssuerPublicKey, IssuerSigningKey, WebNumber, testing,
};
use cyberid_tests::{memory_verifier, openssl};

const ID_OPTION: &str = "distid:1234567812345678";
const NOW: u64 = 1_790_000_000;

/// An SM2 key pair written by `openssl genpkey` and `openssl pkey -pubout`, read by the engine.
fn openssl_key(dir: &Path) -> (IssuerSigningKey, IssuerPublicKey) {
    assert!(openssl(
        dir,
        &["genpkey", "-algorithm", "SM2", "-out", "issuer.pem"]
    ));
    assert!(openssl(
        dir,
        &[
            "pkey",
            "-in",
            "issuer.pem",
            "-pubout",
            "-out",
            "issuer.pub.pem"
        ]
    ));
    let private = std::fs::read_to_string(dir.join("issuer.pem")).unwrap();
    let public = std::fs::read_to_string(dir.join("issuer.pub.pem")).unwrap();
    let signing = IssuerSigningKey::from_pkcs8_pem(&private).unwrap();
    let verifying = IssuerPublicKey::from_spki_pem(&public).unwrap();
    assert_eq!(signing.key_id(), verifying.key_id());
    (signing, verifying)
}

fn der_signature(signature: &[u8; 64]) -> Vec<u8> {
    sm2::dsa::Signature::from_slice(signature)
        .unwrap()
        .to_der()
        .as_bytes()
        .to_vec()
}

fn openssl_verifies(dir: &Path, message: &[u8], signature: &[u8; 64]) -> bool {
    std::fs::write(dir.join("m.bin"), message).unwrap();
    std::fs::write(dir.join("sig.der"), der_signature(signature)).unwrap();
    openssl(
        dir,
        &[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "issuer.pub.pem",
            "-rawin",
            "-digest",
            "sm3",
            "-pkeyopt",
            ID_OPTION,
            "-in",
            "m.bin",
            "-sigfile",
            "sig.der",
        ],
    )
}

/// Signs `message` with the OpenSSL command line and `issuer.pem`, with the default SM2 ID or
/// (as OpenSSL 3.0 does unless told) an empty one; returns `r || s`.
fn openssl_sign(dir: &Path, message: &[u8], default_id: bool) -> [u8; 64] {
    std::fs::write(dir.join("m.bin"), message).unwrap();
    let mut args = vec![
        "pkeyutl",
        "-sign",
        "-inkey",
        "issuer.pem",
        "-rawin",
        "-digest",
        "sm3",
    ];
    if default_id {
        args.extend(["-pkeyopt", ID_OPTION]);
    }
    args.extend(["-in", "m.bin", "-out", "sig.der"]);
    assert!(openssl(dir, &args));
    let der = std::fs::read(dir.join("sig.der")).unwrap();
    sm2::dsa::Signature::from_der(&der)
        .unwrap()
        .to_bytes()
        .into()
}

#[test]
fn engine_certificate_verifies_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let (signing, _) = openssl_key(dir.path());
    let issuer = Issuer::new(signing, IssuerPolicy::default()).unwrap();
    for _ in 0..4 {
        let certificate = issuer
            .issue(&IssueRequest::new(WebNumber::generate().unwrap()), NOW)
            .unwrap();
        let bytes = certificate.as_bytes();
        let signature: [u8; 64] = bytes[63..].try_into().unwrap();
        assert!(openssl_verifies(dir.path(), &bytes[..63], &signature));
        // OpenSSL must also say no: a changed byte fails.
        let mut changed = bytes[..63].to_vec();
        changed[20] ^= 1;
        assert!(!openssl_verifies(dir.path(), &changed, &signature));
    }
}

#[test]
fn openssl_signature_verifies_in_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let (signing, verifying) = openssl_key(dir.path());
    let issuer = Issuer::new(signing, IssuerPolicy::default()).unwrap();
    let template = issuer
        .issue(&IssueRequest::new(WebNumber::generate().unwrap()), NOW)
        .unwrap();
    let fields: CertificateFields = *template.fields();
    let signature = openssl_sign(dir.path(), &testing::signed_bytes(&fields), true);
    let bytes = [testing::signed_bytes(&fields), signature.to_vec()].concat();
    let certificate = Certificate::from_bytes(&bytes).unwrap();
    let verifier = memory_verifier(&[verifying]);
    let context = Context {
        platform: None,
        now: NOW,
        request: None,
        disclose: cyberid_engine::Attributes::NONE,
    };
    let verdict = verifier
        .verify(Input::Text(&certificate.to_text()), &context)
        .unwrap();
    assert!(verdict.is_valid(), "{verdict:?}");

    // Without the ID option OpenSSL 3.0 signs with an empty ID: the engine must refuse that.
    let signature = openssl_sign(dir.path(), &testing::signed_bytes(&fields), false);
    let bytes = [testing::signed_bytes(&fields), signature.to_vec()].concat();
    let verdict = verifier.verify(Input::Binary(&bytes), &context).unwrap();
    assert_eq!(verdict.reason(), Some(cyberid_engine::Reason::BadSignature));
}
