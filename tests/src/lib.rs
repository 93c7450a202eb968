//! Helpers shared by cyberid's integration tests.

pub mod node;

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

/// One test vector from `docs/protocol.md`.
#[derive(Debug, Clone, Default)]
pub struct Vector {
    /// Its name.
    pub name: String,
    /// The calling platform.
    pub platform: String,
    /// The verifier's clock.
    pub now: u64,
    /// The binary form.
    pub bytes: Vec<u8>,
    /// The text form, if given.
    pub text: Option<String>,
    /// The expected verdict line.
    pub verdict: String,
}

/// Reads every `vector:` block from a markdown document, and the first SPKI PEM.
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
    let mut current: Option<Vector> = None;
    for line in markdown.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "vector" => {
                vectors.extend(current.take());
                current = Some(Vector {
                    name: value.into(),
                    ..Vector::default()
                });
            }
            "platform" | "now" | "hex" | "text" | "verdict" => {
                let vector = current.as_mut().expect("a field outside a vector block");
                match key {
                    "platform" => vector.platform = value.into(),
                    "now" => vector.now = value.parse().expect("now is a number"),
                    "hex" => vector.bytes = hex::decode(value).expect("hex"),
                    "text" => {
                        let quoted = value.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                        vector.text = Some(quoted.expect("text is quoted").into());
                    }
                    _ => vector.verdict = value.into(),
                }
            }
            _ => {}
        }
    }
    vectors.extend(current);
    (pem, vectors)
}
