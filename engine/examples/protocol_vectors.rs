//! Prints fresh test vectors for `docs/protocol.md`.
//!
//! SM2 signatures are randomised, so each run prints different signatures; the document keeps
//! one run's output and the tests check it. Run: `cargo run -p cyberid-engine --example protocol_vectors`.

use cyberid_engine::{
    AgeBracket, Assurance, Certificate, CertificateFields, Claims, Issuer, IssuerPolicy,
    IssuerSigningKey,
};

/// The private key of the GB/T 32918.5 Annex A example: public, so anyone can re-sign.
const ANNEX_A_KEY: &str = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8";
/// A second public test key, for the unknown-key vector.
const OTHER_KEY: &str = "0102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20";

fn test_issuer(hex_key: &str) -> Result<Issuer, Box<dyn std::error::Error>> {
    let mut scalar = [0u8; 32];
    for (byte, pair) in scalar.iter_mut().zip(hex_key.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair)?, 16)?;
    }
    Ok(Issuer::new(
        IssuerSigningKey::from_scalar_bytes(&scalar)?,
        IssuerPolicy::default(),
    )?)
}

fn print(name: &str, bytes: &[u8], text: Option<String>, platform: &str, now: u64, verdict: &str) {
    println!("```text");
    println!("vector:   {name}");
    println!("platform: {platform}");
    println!("now:      {now}");
    println!(
        "hex:      {}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    if let Some(text) = text {
        println!("text:     \"{text}\"");
    }
    println!("verdict:  {verdict}");
    println!("```\n");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = test_issuer(ANNEX_A_KEY)?;
    println!(
        "Issuer public key (SPKI PEM), key id {}:\n",
        issuer.key().key_id()
    );
    println!("```text\n{}```\n", issuer.key().public_key().to_spki_pem()?);
    let fields = CertificateFields {
        key_id: issuer.key().key_id(),
        web_number: "7K3MQ9XZ2P".parse()?,
        certificate_id: "00112233445566778899aabbccddeeff".parse()?,
        issued_at: 1_790_000_000,
        lifetime: 180,
        assurance: Assurance::High,
        claims: Claims {
            age: Some(AgeBracket::Adult),
        },
        audience: Some("shop.example".parse()?),
    };
    let certificate = issuer.sign(fields)?;
    let valid = "valid web_number=7K3MQ9XZ2P assurance=high age=adult expires_at=1790000180";
    print(
        "valid",
        certificate.as_bytes(),
        Some(certificate.to_text()),
        "shop.example",
        1_790_000_010,
        valid,
    );
    print(
        "expired",
        certificate.as_bytes(),
        Some(certificate.to_text()),
        "shop.example",
        1_790_000_210,
        "invalid expired",
    );
    print(
        "wrong-audience",
        certificate.as_bytes(),
        Some(certificate.to_text()),
        "bank.example",
        1_790_000_010,
        "invalid wrong_audience",
    );

    let mut forged = *certificate.as_bytes();
    forged[9] = b'8'; // the Web Number's first character, 7 -> 8
    let forged = Certificate::from_bytes(&forged)?;
    print(
        "bad-signature",
        forged.as_bytes(),
        Some(forged.to_text()),
        "shop.example",
        1_790_000_010,
        "invalid bad_signature",
    );

    let minor = CertificateFields {
        web_number: "0123456789".parse()?,
        certificate_id: "ffeeddccbbaa99887766554433221100".parse()?,
        assurance: Assurance::Low,
        claims: Claims {
            age: Some(AgeBracket::Minor),
        },
        audience: None,
        ..fields
    };
    let minor = issuer.sign(minor)?;
    let valid = "valid web_number=0123456789 assurance=low age=minor expires_at=1790000180";
    print(
        "valid-minor-any-platform",
        minor.as_bytes(),
        Some(minor.to_text()),
        "bank.example",
        1_790_000_000,
        valid,
    );

    let stranger = test_issuer(OTHER_KEY)?;
    let unknown = stranger.sign(CertificateFields {
        key_id: stranger.key().key_id(),
        ..fields
    })?;
    print(
        "unknown-key",
        unknown.as_bytes(),
        Some(unknown.to_text()),
        "shop.example",
        1_790_000_010,
        "invalid unknown_key",
    );

    let mut trailing = certificate.as_bytes().to_vec();
    trailing.push(0);
    print(
        "trailing-byte",
        &trailing,
        None,
        "shop.example",
        1_790_000_010,
        "invalid malformed",
    );
    let mut version = *certificate.as_bytes();
    version[0] = 2;
    print(
        "version-2",
        &version,
        None,
        "shop.example",
        1_790_000_010,
        "invalid unsupported_version",
    );
    Ok(())
}
