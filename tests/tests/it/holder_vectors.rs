//! The holder-request, guardian-consent and consent-request vectors of docs/protocol.md §9,
//! §10 and §13: the bytes the code signs are the documented ones, and the documented
//! signatures verify in the service and in OpenSSL; a device key OpenSSL made signs requests
//! the service accepts.

use cyberid_engine::WebNumber;
use cyberid_identity::{
    DeviceKey, DeviceSigningKey, Disclose, GuardianConsent, HolderRequest, ResidentId,
};
use cyberid_tests::{openssl, workspace_root};

fn documented(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(workspace_root().join("docs/protocol.md")).unwrap();
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("{name} is not in docs/protocol.md"));
    hex::decode(line.trim()).unwrap()
}

fn signature(name: &str) -> [u8; 64] {
    documented(name).try_into().unwrap()
}

fn annex_a_key() -> DeviceSigningKey {
    let mut scalar = [0u8; 32];
    hex::decode_to_slice(
        "3945208f7b2144b13f36e38ac6d39f95889393692860b51a42fb81ef4df7c5b8",
        &mut scalar,
    )
    .unwrap();
    DeviceSigningKey::from_scalar_bytes(&scalar).unwrap()
}

/// Whether OpenSSL verifies `signature` over `message` under `key` with the default SM2 ID.
fn openssl_verifies(key: &DeviceKey, message: &[u8], signature: &[u8; 64]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key.pem"), key.to_spki_pem().unwrap()).unwrap();
    std::fs::write(dir.path().join("m.bin"), message).unwrap();
    let der = sm2::dsa::Signature::from_slice(signature).unwrap().to_der();
    std::fs::write(dir.path().join("sig.der"), der.as_bytes()).unwrap();
    openssl(
        dir.path(),
        &[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "key.pem",
            "-rawin",
            "-digest",
            "sm3",
            "-pkeyopt",
            "distid:1234567812345678",
            "-in",
            "m.bin",
            "-sigfile",
            "sig.der",
        ],
    )
}

#[test]
fn the_holder_request_vector_is_what_the_code_signs_and_verifies() {
    let device = annex_a_key().public_key();
    assert_eq!(*device.to_sec1_bytes(), *documented("holder-device-public"));
    let request = HolderRequest {
        web_number: "7K3MQ9XZ2P".parse().unwrap(),
        audience: Some("shop.example".parse().unwrap()),
        disclose: Disclose::Age,
        consent: cyberid_engine::Attributes::NONE,
        lifetime: Some(120),
        issued_at: 1_796_083_200,
        nonce: core::array::from_fn(|i| i as u8),
    };
    let bytes = request.signed_bytes();
    assert_eq!(bytes.to_vec(), documented("holder-request-bytes"));
    let signature = signature("holder-request-signature");
    assert!(device.verify(&bytes, &signature).is_ok());
    assert!(openssl_verifies(&device, &bytes, &signature));
    let mut tampered = bytes;
    tampered[30] ^= 1;
    assert!(device.verify(&tampered, &signature).is_err());
    assert!(!openssl_verifies(&device, &tampered, &signature));
}

#[test]
fn the_guardian_consent_vector_is_what_the_code_signs_and_verifies() {
    let guardian = annex_a_key().public_key();
    let child_device = DeviceKey::from_sec1_bytes(&documented("child-device-public")).unwrap();
    let child: ResidentId = "110105201706010029".parse().unwrap();
    let guardian_number: WebNumber = "H4TJ8W2NQR".parse().unwrap();
    let nonce: [u8; 16] = core::array::from_fn(|i| 0x10 + i as u8);
    let bytes = GuardianConsent::signed_bytes(
        &guardian_number,
        &child,
        &child_device,
        1_796_083_200,
        &nonce,
    );
    assert_eq!(bytes.to_vec(), documented("guardian-consent-bytes"));
    let signature = signature("guardian-consent-signature");
    assert!(guardian.verify(&bytes, &signature).is_ok());
    assert!(openssl_verifies(&guardian, &bytes, &signature));
    let consent = GuardianConsent {
        guardian: guardian_number,
        issued_at: 1_796_083_200,
        nonce: hex::encode(nonce),
        signature: hex::encode(signature),
    };
    assert!(
        consent
            .verify(&guardian, &child, &child_device, 1_796_083_200, 600)
            .is_ok()
    );
}

#[test]
fn a_device_key_made_by_openssl_signs_requests_the_service_accepts() {
    let dir = tempfile::tempdir().unwrap();
    assert!(openssl(
        dir.path(),
        &["genpkey", "-algorithm", "SM2", "-out", "device.pem"]
    ));
    assert!(openssl(
        dir.path(),
        &[
            "pkey",
            "-in",
            "device.pem",
            "-pubout",
            "-out",
            "device.pub.pem"
        ]
    ));
    let private = std::fs::read_to_string(dir.path().join("device.pem")).unwrap();
    let public = std::fs::read_to_string(dir.path().join("device.pub.pem")).unwrap();
    let key = DeviceSigningKey::from_pkcs8_pem(&private).unwrap();
    let device = DeviceKey::from_spki_pem(&public).unwrap();
    assert_eq!(key.public_key(), device);
    let request = HolderRequest::new(
        WebNumber::generate().unwrap(),
        Disclose::Nothing,
        1_796_083_200,
    )
    .unwrap();
    let bytes = request.signed_bytes();
    std::fs::write(dir.path().join("m.bin"), bytes).unwrap();
    assert!(openssl(
        dir.path(),
        &[
            "pkeyutl",
            "-sign",
            "-inkey",
            "device.pem",
            "-rawin",
            "-digest",
            "sm3",
            "-pkeyopt",
            "distid:1234567812345678",
            "-in",
            "m.bin",
            "-out",
            "sig.der",
        ],
    ));
    let der = std::fs::read(dir.path().join("sig.der")).unwrap();
    let signature: [u8; 64] = sm2::dsa::Signature::from_der(&der)
        .unwrap()
        .to_bytes()
        .into();
    let signed = cyberid_identity::SignedHolderRequest::new(request, signature);
    assert!(signed.verify(&device, 1_796_083_200, 60).is_ok());
}

#[test]
fn the_consent_request_vector_is_what_the_code_signs_and_openssl_checks_it() {
    use cyberid_engine::{Attribute, Attributes};
    use cyberid_identity::{ConsentAction, ConsentRequest, Purpose};
    let purpose = "opening an account (KYC)";
    // The purpose digest, computed by OpenSSL from its definition.
    let dir = tempfile::tempdir().unwrap();
    let mut preimage = b"cyberid-purpose-1\0".to_vec();
    preimage.extend_from_slice(purpose.as_bytes());
    std::fs::write(dir.path().join("purpose.bin"), &preimage).unwrap();
    assert!(openssl(
        dir.path(),
        &[
            "dgst",
            "-sm3",
            "-binary",
            "-out",
            "digest.bin",
            "purpose.bin"
        ]
    ));
    let by_openssl = std::fs::read(dir.path().join("digest.bin")).unwrap();
    assert_eq!(by_openssl, documented("purpose-digest"));
    assert_eq!(Purpose::of(purpose).as_bytes().to_vec(), by_openssl);

    let request = ConsentRequest {
        web_number: "7K3MQ9XZ2P".parse().unwrap(),
        action: ConsentAction::Grant {
            platform: "bank.example".parse().unwrap(),
            attributes: Attributes::of(&[Attribute::Name]),
            purpose: Purpose::of(purpose),
        },
        issued_at: 1_796_083_200,
        nonce: core::array::from_fn(|i| i as u8),
    };
    let bytes = request.signed_bytes();
    assert_eq!(bytes.to_vec(), documented("consent-request-bytes"));
    let key = annex_a_key();
    let signed = request.sign(&key).unwrap();
    let wire = cyberid_identity::ConsentRequestBody::from(&signed);
    let mut signature = [0u8; 64];
    hex::decode_to_slice(&wire.signature, &mut signature).unwrap();
    assert!(openssl_verifies(&key.public_key(), &bytes, &signature));
    assert!(signed.verify(&key.public_key(), 1_796_083_200, 60).is_ok());
}
