//! Prints the test vectors of `docs/protocol.md` §8: the issuer key, then one block per vector.
//!
//! Every vector states the whole verifier state it assumes (registered keys, revocations,
//! consumed nonces, when the nonce store's history begins, skew, maximum lifetime), so a reader
//! can set up exactly that state. SM2 signatures are randomised, so each run prints different
//! signatures; the document keeps one run's output and the tests check it. Run:
//! `cargo run -p cyberid-engine --example protocol_vectors`, and paste the output over §8's
//! vectors.

use cyberid_engine::{
    AgeBracket, Assurance, Certificate, CertificateFields, Claims, Issuer, IssuerPolicy,
    IssuerSigningKey, KeyId,
};

/// The private key of the GB/T 32918.5 Annex A example: public, so anyone can re-sign.
const ANNEX_A_KEY: &str = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8";
/// A second public test key, for the unknown-key vector.
const OTHER_KEY: &str = "0102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20";
/// The order n of the SM2 curve's base point.
const ORDER_N: &str = "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123";

const ISSUED_AT: u64 = 1_790_000_000;
const LIFETIME: u16 = 180;
const SKEW: u64 = 30;
const MAX_LIFETIME: u16 = 300;
/// Well before every certificate could first be used.
const HISTORY_BEGINS: u64 = 1_789_990_000;
const SHOP: &str = "shop.example";
const BANK: &str = "bank.example";
/// What the vectors' certificates are issued for.
const HOLDER: &str = "7K3MQ9XZ2P";
const CERTIFICATE_ID: &str = "00112233445566778899aabbccddeeff";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The verifier state a vector assumes.
#[derive(Clone)]
struct State {
    keys: String,
    revoked: String,
    consumed: String,
    history_begins: u64,
    max_lifetime: u16,
}

/// One vector: the state, the call, the input in one or both forms, the verdict.
struct Vector<'a> {
    name: &'a str,
    note: &'a str,
    state: State,
    platform: &'a str,
    now: u64,
    bytes: Option<Vec<u8>>,
    text: Option<String>,
    verdict: String,
}

impl Vector<'_> {
    fn print(&self) {
        println!("```text");
        println!("vector:         {}", self.name);
        println!("note:           {}", self.note);
        println!("keys:           {}", self.state.keys);
        println!("revoked:        {}", self.state.revoked);
        println!("consumed:       {}", self.state.consumed);
        println!("history-begins: {}", self.state.history_begins);
        println!("skew:           {SKEW}");
        println!("max-lifetime:   {}", self.state.max_lifetime);
        println!("platform:       {}", self.platform);
        println!("now:            {}", self.now);
        if let Some(bytes) = &self.bytes {
            println!("hex:            {}", hex(bytes));
        }
        if let Some(text) = &self.text {
            println!("text:           \"{text}\"");
        }
        println!("verdict:        {}", self.verdict);
        println!("```\n");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Result<[u8; N]> {
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair)?, 16)?;
    }
    Ok(out)
}

/// Base45 (RFC 9285) of any bytes, for inputs the engine refuses to decode.
fn base45(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 45] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
    let mut out = String::new();
    for chunk in bytes.chunks(2) {
        let (mut value, digits) = match chunk {
            [a, b] => (usize::from(*a) << 8 | usize::from(*b), 3),
            [a] => (usize::from(*a), 2),
            _ => unreachable!("chunks of 1 or 2"),
        };
        for _ in 0..digits {
            out.push(char::from(ALPHABET[value % 45]));
            value /= 45;
        }
    }
    out
}

fn test_issuer(hex_key: &str) -> Result<Issuer> {
    Ok(Issuer::new(
        IssuerSigningKey::from_scalar_bytes(&unhex(hex_key)?)?,
        IssuerPolicy::default(),
    )?)
}

/// Signs the first 63 bytes as they are, whatever they hold, and returns the 127 bytes: a
/// decoder, not the signature, must refuse a malformed field.
fn signed_raw(issuer: &Issuer, mut bytes: Vec<u8>) -> Result<Vec<u8>> {
    let signature = issuer.key().sign(&bytes[..63])?;
    bytes.truncate(63);
    bytes.extend_from_slice(&signature);
    Ok(bytes)
}

fn verdict_valid(fields: &CertificateFields) -> String {
    let assurance = format!("{:?}", fields.assurance).to_lowercase();
    let mut line = format!(
        "valid web_number={} assurance={assurance}",
        fields.web_number
    );
    if let Some(age) = fields.claims.age {
        line += &format!(" age={}", format!("{age:?}").to_lowercase());
    }
    line + &format!(" expires_at={}", fields.expires_at())
}

fn invalid(reason: &str) -> String {
    format!("invalid {reason}")
}

fn main() -> Result<()> {
    let issuer = test_issuer(ANNEX_A_KEY)?;
    let key: KeyId = issuer.key().key_id();
    println!("Issuer public key (SPKI PEM), key id {key}:\n");
    println!("```text\n{}```\n", issuer.key().public_key().to_spki_pem()?);

    let base = State {
        keys: format!("{key} active"),
        revoked: "none".into(),
        consumed: "none".into(),
        history_begins: HISTORY_BEGINS,
        max_lifetime: MAX_LIFETIME,
    };
    let with = |change: &dyn Fn(&mut State)| {
        let mut state = base.clone();
        change(&mut state);
        state
    };

    let fields = CertificateFields {
        key_id: key,
        web_number: HOLDER.parse()?,
        certificate_id: CERTIFICATE_ID.parse()?,
        issued_at: ISSUED_AT,
        lifetime: LIFETIME,
        assurance: Assurance::High,
        claims: Claims {
            age: Some(AgeBracket::Adult),
            ..Claims::default()
        },
        audience: Some(SHOP.parse()?),
    };
    let main = issuer.sign(fields)?;
    let main_bytes = main.as_bytes().to_vec();
    let valid = verdict_valid(&fields);
    let first_use = ISSUED_AT - SKEW;
    let last_use = fields.expires_at() + SKEW - 1;

    let mut vectors = Vec::new();
    // A vector on a signed certificate, in both forms.
    let mut signed =
        |name, note, state: State, platform, now, certificate: &Certificate, verdict: String| {
            vectors.push(Vector {
                name,
                note,
                state,
                platform,
                now,
                bytes: Some(certificate.as_bytes().to_vec()),
                text: Some(certificate.to_text()),
                verdict,
            });
        };
    signed(
        "valid",
        "the certificate every other vector varies",
        base.clone(),
        SHOP,
        ISSUED_AT + 10,
        &main,
        valid.clone(),
    );
    signed(
        "valid-first-moment",
        "now = issued-at - skew",
        base.clone(),
        SHOP,
        first_use,
        &main,
        valid.clone(),
    );
    signed(
        "not-yet-valid",
        "now = issued-at - skew - 1",
        base.clone(),
        SHOP,
        first_use - 1,
        &main,
        invalid("not_yet_valid"),
    );
    signed(
        "valid-last-moment",
        "now = expires-at + skew - 1",
        base.clone(),
        SHOP,
        last_use,
        &main,
        valid.clone(),
    );
    signed(
        "expired",
        "now = expires-at + skew",
        base.clone(),
        SHOP,
        last_use + 1,
        &main,
        invalid("expired"),
    );
    signed(
        "wrong-audience",
        "the audience is shop.example",
        base.clone(),
        BANK,
        ISSUED_AT + 10,
        &main,
        invalid("wrong_audience"),
    );
    signed(
        "key-revoked",
        "the issuer key was revoked (admin API): everything it signed is refused",
        with(&|s| s.revoked = format!("key {key}")),
        SHOP,
        ISSUED_AT + 10,
        &main,
        invalid("key_revoked"),
    );
    signed(
        "key-retired-before-issue",
        "the key was retired one second before the certificate's issued-at",
        with(&|s| s.keys = format!("{key} retired-at {}", ISSUED_AT - 1)),
        SHOP,
        ISSUED_AT + 10,
        &main,
        invalid("key_revoked"),
    );
    signed(
        "valid-key-retired-at-issue",
        "the key was retired at the certificate's issued-at: signed no later than retirement",
        with(&|s| s.keys = format!("{key} retired-at {ISSUED_AT}")),
        SHOP,
        ISSUED_AT + 10,
        &main,
        valid.clone(),
    );
    signed(
        "revoked-web-number-suspended",
        "the holder's Web Number is suspended",
        with(&|s| s.revoked = format!("web-number {HOLDER} suspended")),
        SHOP,
        ISSUED_AT + 10,
        &main,
        invalid("revoked"),
    );
    signed(
        "revoked-web-number-revoked",
        "the holder's Web Number is revoked (final)",
        with(&|s| s.revoked = format!("web-number {HOLDER} revoked")),
        SHOP,
        ISSUED_AT + 10,
        &main,
        invalid("revoked"),
    );
    signed(
        "revoked-certificate",
        "this certificate id is revoked",
        with(&|s| s.revoked = format!("certificate {CERTIFICATE_ID}")),
        SHOP,
        ISSUED_AT + 10,
        &main,
        invalid("revoked"),
    );
    signed(
        "valid-history-boundary",
        "history begins exactly at issued-at - skew",
        with(&|s| s.history_begins = first_use),
        SHOP,
        ISSUED_AT + 10,
        &main,
        valid.clone(),
    );
    signed(
        "history-unavailable",
        "history begins one second after issued-at - skew (a store created then)",
        with(&|s| s.history_begins = first_use + 1),
        SHOP,
        ISSUED_AT + 10,
        &main,
        invalid("history_unavailable"),
    );
    signed(
        "replayed",
        "the certificate id was consumed by an earlier verification",
        with(&|s| s.consumed = CERTIFICATE_ID.into()),
        SHOP,
        ISSUED_AT + 10,
        &main,
        invalid("replayed"),
    );

    let minor_fields = CertificateFields {
        web_number: "0123456789".parse()?,
        certificate_id: "ffeeddccbbaa99887766554433221100".parse()?,
        assurance: Assurance::Low,
        claims: Claims {
            age: Some(AgeBracket::Minor),
            ..Claims::default()
        },
        audience: None,
        ..fields
    };
    let minor = issuer.sign(minor_fields)?;
    signed(
        "valid-minor-any-platform",
        "no audience: any platform may verify it",
        base.clone(),
        BANK,
        ISSUED_AT,
        &minor,
        verdict_valid(&minor_fields),
    );
    let undisclosed_fields = CertificateFields {
        web_number: "ABCDEFGHJK".parse()?,
        certificate_id: "0f0e0d0c0b0a09080706050403020100".parse()?,
        assurance: Assurance::Substantial,
        claims: Claims::default(),
        audience: None,
        ..fields
    };
    let undisclosed = issuer.sign(undisclosed_fields)?;
    signed(
        "valid-age-not-disclosed",
        "claims byte 0: the verdict has no age (JSON \"claims\":{})",
        base.clone(),
        SHOP,
        ISSUED_AT + 10,
        &undisclosed,
        verdict_valid(&undisclosed_fields),
    );

    let mut forged = *main.as_bytes();
    forged[9] = b'8'; // the Web Number's first character, 7 -> 8
    let forged = Certificate::from_bytes(&forged)?;
    signed(
        "bad-signature",
        "the Web Number was changed after signing",
        base.clone(),
        SHOP,
        ISSUED_AT + 10,
        &forged,
        invalid("bad_signature"),
    );
    let mut r_zero = *main.as_bytes();
    r_zero[63..95].fill(0);
    let r_zero = Certificate::from_bytes(&r_zero)?;
    signed(
        "signature-r-zero",
        "r = 0, outside 1..n-1: a signature check (§5), not decoding",
        base.clone(),
        SHOP,
        ISSUED_AT + 10,
        &r_zero,
        invalid("bad_signature"),
    );
    let mut s_n = *main.as_bytes();
    s_n[95..].copy_from_slice(&unhex::<32>(ORDER_N)?);
    let s_n = Certificate::from_bytes(&s_n)?;
    signed(
        "signature-s-n",
        "s = n, outside 1..n-1: a signature check (§5), not decoding",
        base.clone(),
        SHOP,
        ISSUED_AT + 10,
        &s_n,
        invalid("bad_signature"),
    );

    let stranger = test_issuer(OTHER_KEY)?;
    let unknown = stranger.sign(CertificateFields {
        key_id: stranger.key().key_id(),
        ..fields
    })?;
    signed(
        "unknown-key",
        "signed by a key the verifier does not have",
        base.clone(),
        SHOP,
        ISSUED_AT + 10,
        &unknown,
        invalid("unknown_key"),
    );
    let long = issuer.sign(CertificateFields {
        lifetime: MAX_LIFETIME + 1,
        ..fields
    })?;
    signed(
        "lifetime-over-maximum",
        "lifetime 301 > max-lifetime 300 (decodes, then check 2)",
        base.clone(),
        SHOP,
        ISSUED_AT + 10,
        &long,
        invalid("malformed"),
    );

    // Malformed fields, correctly signed over the bad bytes: decoding alone refuses them.
    let field_cases: [(&str, &str, usize, &[u8]); 9] = [
        (
            "field-web-number-lower-case",
            "Web Number bytes \"7k3mq9xz2p\": certificates carry upper case only",
            9,
            b"7k3mq9xz2p",
        ),
        (
            "field-web-number-letter-o",
            "Web Number byte 'O', outside the alphabet",
            18,
            b"O",
        ),
        ("field-lifetime-zero", "lifetime 0", 43, &[0, 0]),
        (
            "field-expiry-overflow",
            "issued-at 2^64-100: issued-at + lifetime overflows 64 bits",
            35,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x9c],
        ),
        ("field-assurance-zero", "assurance 0", 45, &[0]),
        ("field-assurance-four", "assurance 4", 45, &[4]),
        ("field-claims-three", "claims 3", 46, &[3]),
        (
            "field-audience-upper-case",
            "audience \"Shop.example\"",
            47,
            b"S",
        ),
        (
            "field-audience-after-padding",
            "a non-zero byte after the audience's zero padding",
            62,
            b"x",
        ),
    ];
    for (name, note, at, value) in field_cases {
        let mut bytes = main_bytes.clone();
        bytes[at..at + value.len()].copy_from_slice(value);
        let bytes = signed_raw(&issuer, bytes)?;
        vectors.push(Vector {
            name,
            note,
            state: base.clone(),
            platform: SHOP,
            now: ISSUED_AT + 10,
            text: Some(format!("WZ1:{}", base45(&bytes))),
            bytes: Some(bytes),
            verdict: invalid("malformed"),
        });
    }

    // The binary form's length and version.
    let mut trailing = main_bytes.clone();
    trailing.push(0);
    let mut version_2 = main_bytes.clone();
    version_2[0] = 2;
    let binary_cases = [
        (
            "binary-trailing-byte",
            "128 bytes",
            trailing,
            invalid("malformed"),
        ),
        (
            "binary-truncated",
            "126 bytes",
            main_bytes[..126].to_vec(),
            invalid("malformed"),
        ),
        (
            "binary-version-2",
            "version byte 2, read before the length",
            version_2.clone(),
            invalid("unsupported_version"),
        ),
    ];
    for (name, note, bytes, verdict) in binary_cases {
        vectors.push(Vector {
            name,
            note,
            state: base.clone(),
            platform: SHOP,
            now: ISSUED_AT + 10,
            bytes: Some(bytes),
            text: None,
            verdict,
        });
    }

    // The text form's prefix and base45.
    let body = base45(&main_bytes);
    let lower = format!("WZ1:{}", body.to_ascii_lowercase());
    let text_cases = [
        (
            "text-prefix-wz01",
            "prefix WZ01: is not WZ1: nor a version prefix",
            format!("WZ01:{body}"),
            invalid("malformed"),
        ),
        (
            "text-prefix-wz2",
            "prefix WZ2: declares version 2",
            format!("WZ2:{body}"),
            invalid("unsupported_version"),
        ),
        (
            "text-version-byte-2",
            "prefix WZ1: over a binary form whose version byte is 2",
            format!("WZ1:{}", base45(&version_2)),
            invalid("malformed"),
        ),
        (
            "text-lower-case",
            "lower-case letters are not in the base45 alphabet",
            lower,
            invalid("malformed"),
        ),
        (
            "text-group-over-65535",
            "first group \":::\" is worth 91124",
            format!("WZ1::::{}", &body[3..]),
            invalid("malformed"),
        ),
        (
            "text-final-group-over-255",
            "final group \"Z5\" is worth 260",
            format!("WZ1:{}Z5", &body[..body.len() - 2]),
            invalid("malformed"),
        ),
        (
            "text-truncated",
            "190 base45 characters",
            format!("WZ1:{}", &body[..body.len() - 1]),
            invalid("malformed"),
        ),
        (
            "text-trailing-space",
            "the text itself never has surrounding whitespace",
            format!("WZ1:{body} "),
            invalid("malformed"),
        ),
    ];
    for (name, note, text, verdict) in text_cases {
        vectors.push(Vector {
            name,
            note,
            state: base.clone(),
            platform: SHOP,
            now: ISSUED_AT + 10,
            bytes: None,
            text: Some(text),
            verdict,
        });
    }

    for vector in &vectors {
        vector.print();
    }
    Ok(())
}
