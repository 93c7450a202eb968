//! The SM2 signature example of GB/T 32918.5-2017 (GM/T 0003.5-2012) Annex A.

use cyberid_engine::{IssuerPublicKey, IssuerSigningKey};

const PRIVATE_KEY: &str = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8";
const PUBLIC_X: &str = "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020";
const PUBLIC_Y: &str = "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13";
const R: &str = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3";
const S: &str = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA";
const MESSAGE: &[u8] = b"message digest";

fn public_key() -> IssuerPublicKey {
    let point = hex::decode(format!("04{PUBLIC_X}{PUBLIC_Y}")).unwrap();
    IssuerPublicKey::from_sec1_bytes(&point).unwrap()
}

fn signature() -> [u8; 64] {
    hex::decode(format!("{R}{S}")).unwrap().try_into().unwrap()
}

#[test]
fn standard_signature_verifies_with_the_default_id() {
    assert!(public_key().verify(MESSAGE, &signature()));
}

#[test]
fn standard_signature_fails_for_other_messages_and_signatures() {
    assert!(!public_key().verify(b"message digesT", &signature()));
    let mut wrong = signature();
    wrong[31] ^= 1;
    assert!(!public_key().verify(MESSAGE, &wrong));
}

#[test]
fn private_key_derives_the_standard_public_key() {
    let scalar: [u8; 32] = hex::decode(PRIVATE_KEY).unwrap().try_into().unwrap();
    let key = IssuerSigningKey::from_scalar_bytes(&scalar).unwrap();
    assert_eq!(
        key.public_key().to_sec1_bytes(),
        public_key().to_sec1_bytes()
    );
    // Our own signature over the standard message verifies too (the nonce differs from the
    // standard's fixed k, so r and s do).
    let ours = key.sign(MESSAGE).unwrap();
    assert!(public_key().verify(MESSAGE, &ours));
}
