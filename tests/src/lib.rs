//! Helpers shared by cyberid's integration tests.

pub mod cluster;
pub mod node;
pub mod process;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cyberid_engine::{
    IssuerPublicKey, KeyRegistry, MemoryNonceStore, MemoryRevocationSet, Verifier, VerifierConfig,
};

/// The crash test's fixed clock: the store is created at this time.
pub const CRASH_CLOCK: u64 = 1_790_000_000;
/// The crash test's certificates are issued and verified at this time, inside the store's
/// history and inside their validity window.
pub const CRASH_ISSUED_AT: u64 = CRASH_CLOCK + 60;

/// The crash test's blind-index key and vault: fixed keys, so that every round of the child
/// and the checking parent seal and open alike.
pub fn crash_identity_keys() -> (cyberid_identity::IndexKey, cyberid_identity::Vault) {
    use cyberid_identity::{IndexKey, Vault, VaultKey};
    let master = VaultKey::from_bytes(1, &[7; 16]).unwrap();
    let data = VaultKey::from_bytes(1, &[9; 16]).unwrap();
    let vault = Vault::open(&master, &[master.wrap(&data).unwrap()]).unwrap();
    (IndexKey::from_bytes(&[5; 32]).unwrap(), vault)
}

/// A valid synthetic resident identity number from 64 random bits: region 110105, a birth date
/// from 1950 to 2005, a sequence, and the check character GB 11643 requires.
pub fn synthetic_resident_id(random: u64) -> String {
    let year = 1950 + random % 56;
    let month = 1 + (random >> 8) % 12;
    let day = 1 + (random >> 16) % 28;
    let sequence = (random >> 24) % 1000;
    let digits = format!("110105{year:04}{month:02}{day:02}{sequence:03}");
    let mut seventeen = [0u8; 17];
    seventeen.copy_from_slice(digits.as_bytes());
    let check = cyberid_identity::ResidentId::check_character(&seventeen) as char;
    format!("{digits}{check}")
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A verifier with in-memory stores trusting exactly these keys.
pub fn memory_verifier(keys: &[IssuerPublicKey]) -> Verifier {
    let registry = Arc::new(KeyRegistry::new());
    for key in keys {
        registry.insert(key.clone()).expect("distinct keys");
    }
    Verifier::new(
        registry,
        Arc::new(MemoryRevocationSet::new()),
        Arc::new(MemoryNonceStore::new(0)),
        VerifierConfig::default(),
    )
}

/// Runs the `openssl` command line in `dir`, returning whether it succeeded. Panics if openssl
/// is not installed: `.ci/run` installs it, and an interop test that silently skips proves
/// nothing.
pub fn openssl(dir: &Path, args: &[&str]) -> bool {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line is required (apt-get install openssl)");
    output.status.success()
}

/// One test vector from `docs/protocol.md` §8: the verifier state it assumes, the call, the
/// certificate in one or both forms, and the verdict.
#[derive(Debug, Clone, Default)]
pub struct Vector {
    /// Its name.
    pub name: String,
    /// What it shows.
    pub note: String,
    /// Registered issuer keys: `<key id> active` or `<key id> retired-at <unix>`, comma-separated.
    pub keys: String,
    /// The revocation set: `none`, or `web-number <N> suspended|revoked`, `certificate <id>`,
    /// `key <id>`, semicolon-separated.
    pub revoked: String,
    /// Certificate ids already consumed: `none` or comma-separated.
    pub consumed: String,
    /// When the nonce store's history begins, Unix seconds.
    pub history_begins: u64,
    /// The verifier's clock skew, seconds.
    pub skew: u64,
    /// The verifier's longest accepted lifetime, seconds.
    pub max_lifetime: u16,
    /// The calling platform.
    pub platform: String,
    /// The verifier's clock.
    pub now: u64,
    /// The binary form, if given.
    pub bytes: Option<Vec<u8>>,
    /// The text form, if given.
    pub text: Option<String>,
    /// The expected verdict line, for either form.
    pub verdict: String,
}

/// The fields every vector states, in order.
const VECTOR_FIELDS: [&str; 13] = [
    "vector",
    "note",
    "keys",
    "revoked",
    "consumed",
    "history-begins",
    "skew",
    "max-lifetime",
    "platform",
    "now",
    "hex",
    "text",
    "verdict",
];

/// Reads every vector block (a fenced block whose first line is `vector:`) from a markdown
/// document, and the first SPKI PEM. Strict: a field out of order, unknown or missing panics, so
/// the document cannot say more or less than the test checks.
pub fn parse_vectors(markdown: &str) -> (String, Vec<Vector>) {
    let pem_start = markdown
        .find("-----BEGIN PUBLIC KEY-----")
        .expect("a public key");
    let pem_end = markdown[pem_start..]
        .find("-----END PUBLIC KEY-----")
        .expect("key end")
        + pem_start;
    let pem = format!(
        "{}-----END PUBLIC KEY-----\n",
        &markdown[pem_start..pem_end]
    );

    let mut vectors = Vec::new();
    let mut block: Option<Vec<(&str, &str)>> = None;
    for line in markdown.lines() {
        if block.is_none() && line.starts_with("vector:") {
            block = Some(Vec::new());
        }
        let Some(lines) = block.as_mut() else {
            continue;
        };
        if line == "```" {
            vectors.push(vector(lines));
            block = None;
            continue;
        }
        let (key, value) = line.split_once(':').expect("a vector line is key: value");
        lines.push((key, value.trim()));
    }
    assert!(block.is_none(), "an unterminated vector block");
    (pem, vectors)
}

fn vector(lines: &[(&str, &str)]) -> Vector {
    let mut vector = Vector::default();
    let mut expected = VECTOR_FIELDS.iter();
    for &(key, value) in lines {
        // hex and text are each optional; every other field is required, in order.
        let next = expected
            .by_ref()
            .find(|field| **field == key || !["hex", "text"].contains(*field))
            .unwrap_or_else(|| panic!("{}: field {key} out of order", vector.name));
        assert_eq!(*next, key, "{}: field {next} missing", vector.name);
        let number = || value.parse::<u64>().expect("a number");
        match key {
            "vector" => vector.name = value.into(),
            "note" => vector.note = value.into(),
            "keys" => vector.keys = value.into(),
            "revoked" => vector.revoked = value.into(),
            "consumed" => vector.consumed = value.into(),
            "history-begins" => vector.history_begins = number(),
            "skew" => vector.skew = number(),
            "max-lifetime" => vector.max_lifetime = value.parse().expect("a lifetime"),
            "platform" => vector.platform = value.into(),
            "now" => vector.now = number(),
            "hex" => vector.bytes = Some(hex::decode(value).expect("hex")),
            "text" => {
                let quoted = value.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                vector.text = Some(quoted.expect("text is quoted").into());
            }
            _ => vector.verdict = value.into(),
        }
    }
    assert!(!vector.verdict.is_empty(), "{}: no verdict", vector.name);
    assert!(
        vector.bytes.is_some() || vector.text.is_some(),
        "{}: neither hex nor text",
        vector.name
    );
    vector
}

/// Strict base45 (RFC 9285), written apart from the engine's: a second reading of the text
/// form. `None` for a character outside the alphabet, a group above its maximum or a length
/// no byte string encodes to.
pub fn base45_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
    let digits: Vec<u32> = text
        .chars()
        .map(|c| ALPHABET.find(c).map(|i| i as u32))
        .collect::<Option<_>>()?;
    let mut bytes = Vec::new();
    for group in digits.chunks(3) {
        match *group {
            [c, d, e] => {
                let value = u16::try_from(c + d * 45 + e * 2025).ok()?;
                bytes.extend_from_slice(&value.to_be_bytes());
            }
            [c, d] => bytes.push(u8::try_from(c + d * 45).ok()?),
            _ => return None,
        }
    }
    Some(bytes)
}
