//! Prints the holder-request and guardian-consent vectors of `docs/protocol.md` §10–§11:
//! `cargo run -p cyberid-identity --example holder_vectors`. SM2 signatures are randomised,
//! so each run prints another (equally valid) signature; the signed bytes never change.

use cyberid_identity::{DeviceSigningKey, Disclose, GuardianConsent, HolderRequest, ResidentId};

fn key(hex_scalar: &str) -> DeviceSigningKey {
    let mut scalar = [0u8; 32];
    hex::decode_to_slice(hex_scalar, &mut scalar).unwrap();
    DeviceSigningKey::from_scalar_bytes(&scalar).unwrap()
}

fn main() {
    let holder = key("3945208f7b2144b13f36e38ac6d39f95889393692860b51a42fb81ef4df7c5b8");
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
    let signature = holder.sign(&bytes).unwrap();
    println!(
        "holder-device-public: {}",
        hex::encode(holder.public_key().to_sec1_bytes())
    );
    println!("holder-request-bytes: {}", hex::encode(bytes));
    println!("holder-request-signature: {}", hex::encode(signature));

    let child = key("1649ab77a00637bd5e2efe283fbf353534aa7f7cb89463f208ddbc2920bb0da0");
    let child_id: ResidentId = "110105201706010029".parse().unwrap();
    let bytes = GuardianConsent::signed_bytes(
        &"H4TJ8W2NQR".parse().unwrap(),
        &child_id,
        &child.public_key(),
        1_796_083_200,
        &core::array::from_fn(|i| 0x10 + i as u8),
    );
    let signature = holder.sign(&bytes).unwrap();
    println!(
        "child-device-public: {}",
        hex::encode(child.public_key().to_sec1_bytes())
    );
    println!("guardian-consent-bytes: {}", hex::encode(bytes));
    println!("guardian-consent-signature: {}", hex::encode(signature));
}
