//! The cyberid data directory: everything a node keeps on disk beside its store, and the one
//! place that knows its layout. The server, the load harness and the tests all read it through
//! this crate, which needs no storage engine.
//!
//! ```text
//! <data-dir>/
//!   cyberid-data          marker with the layout version: a directory without it is not ours
//!   store/                the embedded store (the server's business, not this crate's)
//!   keys.toml             issuer keys: which exist, which one issues, retirements
//!   keys/<id>.pub.pem     issuer public keys (SPKI PEM), for verification
//!   keys/<id>.key.pem     issuer private keys (PKCS#8 PEM, mode 0600), only where this node issues
//!   credentials.toml      platforms and authorities with keyed hashes of their API keys
//!   credential.secret     the key of those hashes (mode 0600)
//!   identity/             the blind index, pairwise subject and vault keys (mode 0600, see `identity_keys`)
//!   log/                  the authentication log's SM2 key (private mode 0600, see `log_key`)
//! ```
//!
//! Files change only by atomic replacement (write, fsync, rename, fsync the directory), under an
//! exclusive lock, so a command killed mid-write leaves the old file or the new one, and two
//! commands never interleave. A running server re-reads `keys.toml` and `credentials.toml` when
//! they change.
//!
//! ```
//! use cyberid_datadir::{DataDir, Scope};
//!
//! let temp = tempfile::tempdir().unwrap();
//! let dir = DataDir::open_or_init(&temp.path().join("node"))?;
//! let key_id = dir.generate_key(false, 1_790_000_000)?;          // the first key issues
//! let api_key = dir.add_platform(&"shop.example".parse()?, &[Scope::Verify], None, 1_790_000_000)?;
//! assert!(api_key.starts_with("cyp_"));                         // shown once, stored hashed
//!
//! // Anyone with read access to the directory (the load harness) can sign as the node does.
//! assert_eq!(dir.issuing_key()?.key_id(), key_id);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

mod credentials;
mod error;
mod identity;
mod keys;
mod log_key;

pub use credentials::{
    AGENT_PREFIX, AUTHORITY_PREFIX, AuthorityEntry, CredentialsFile, DisclosureEntitlement,
    KEY_ID_LEN, PLATFORM_PREFIX, PlatformEntry, PrincipalKind, Scope, StoredKey,
    WebNumberEntitlement, decode_id, hash_key, parse_api_key,
};
pub use error::Error;
pub use identity::IdentityKeys;
pub use keys::{KeyEntry, KeysManifest, LoadedKey};

/// A fresh data directory in a temporary directory, for unit tests.
#[cfg(test)]
pub(crate) fn temp_data_dir() -> (tempfile::TempDir, DataDir) {
    let temp = tempfile::tempdir().unwrap();
    let dir = DataDir::open_or_init(temp.path()).unwrap();
    (temp, dir)
}

const MARKER: &str = "cyberid-data";
const MARKER_CONTENT: &str = "cyberid data directory, layout 1\n";
const SECRET: &str = "credential.secret";
const SECRET_LEN: usize = 32;
const KEYS_MANIFEST: &str = "keys.toml";
const CREDENTIALS: &str = "credentials.toml";
const LOCK: &str = ".lock";

/// An opened data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Opens an existing data directory, or creates one where nothing exists yet (a missing or
    /// empty directory). Anything else without the marker is refused, never written into.
    pub fn open_or_init(root: &Path) -> Result<Self, Error> {
        let dir = Self {
            root: root.to_path_buf(),
        };
        if root.join(MARKER).exists() {
            dir.check()?;
            return Ok(dir);
        }
        match std::fs::read_dir(root) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(Error::data_dir(
                        root,
                        "is not empty and is not a cyberid data directory (no cyberid-data marker)",
                    ));
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(root)
                    .map_err(Error::io(format!("create {}", root.display())))?;
            }
            Err(error) => return Err(Error::io(format!("read {}", root.display()))(error)),
        }
        dir.init()?;
        Ok(dir)
    }

    /// Opens an existing data directory; never creates one.
    pub fn open(root: &Path) -> Result<Self, Error> {
        if !root.join(MARKER).exists() {
            return Err(Error::data_dir(
                root,
                "is not a cyberid data directory (no cyberid-data marker); `cyberid serve` or \
                 `cyberid init` creates one",
            ));
        }
        let dir = Self {
            root: root.to_path_buf(),
        };
        dir.check()?;
        Ok(dir)
    }

    fn init(&self) -> Result<(), Error> {
        let _lock = self.lock()?;
        std::fs::create_dir_all(self.root.join("keys"))
            .map_err(Error::io("create the keys directory"))?;
        let mut secret = [0u8; SECRET_LEN];
        getrandom::fill(&mut secret).map_err(|_| cyberid_engine::Error::Random)?;
        self.write_atomic(SECRET, &secret, true)?;
        self.save_keys(&KeysManifest::default())?;
        self.write_atomic(CREDENTIALS, b"", false)?;
        self.create_identity_keys()?;
        // The marker goes last: a directory whose initialisation was interrupted has none and
        // is retried from scratch... unless it is no longer empty, which is then reported.
        self.write_atomic(MARKER, MARKER_CONTENT.as_bytes(), false)
    }

    fn check(&self) -> Result<(), Error> {
        let marker = std::fs::read_to_string(self.root.join(MARKER)).map_err(Error::io(
            format!("read {}", self.root.join(MARKER).display()),
        ))?;
        if marker != MARKER_CONTENT {
            return Err(Error::data_dir(
                &self.root,
                format!(
                    "has layout marker {:?}; this build reads {:?}",
                    marker.trim(),
                    MARKER_CONTENT.trim()
                ),
            ));
        }
        for file in [SECRET, KEYS_MANIFEST, CREDENTIALS] {
            if !self.root.join(file).is_file() {
                return Err(Error::data_dir(&self.root, format!("{file} is missing")));
            }
        }
        Ok(())
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the node's store lives (the server opens it; this crate never does).
    pub fn store_path(&self) -> PathBuf {
        self.root.join("store")
    }

    /// `keys.toml`, for watching it.
    pub fn keys_manifest_path(&self) -> PathBuf {
        self.root.join(KEYS_MANIFEST)
    }

    /// `credentials.toml`, for watching it.
    pub fn credentials_path(&self) -> PathBuf {
        self.root.join(CREDENTIALS)
    }

    /// Takes the directory's edit lock: held while a command changes files, so that two
    /// commands never interleave their read-modify-write cycles.
    pub(crate) fn lock(&self) -> Result<File, Error> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(LOCK))
            .map_err(Error::io("open the data directory lock"))?;
        file.lock().map_err(Error::io("lock the data directory"))?;
        Ok(file)
    }

    /// The key of the API-key hashes in `credentials.toml`.
    pub fn credential_secret(&self) -> Result<[u8; SECRET_LEN], Error> {
        let bytes = std::fs::read(self.root.join(SECRET))
            .map_err(Error::io("read the credential secret"))?;
        <[u8; SECRET_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
            Error::data_dir(
                &self.root,
                format!("{SECRET} is not {SECRET_LEN} bytes; it was damaged"),
            )
        })
    }

    pub(crate) fn read_toml<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, Error> {
        let path = self.root.join(name);
        let text = std::fs::read_to_string(&path)
            .map_err(Error::io(format!("read {}", path.display())))?;
        toml::from_str(&text).map_err(|error| {
            Error::data_dir(
                &self.root,
                format!("{name} is not valid: {}", error.message()),
            )
        })
    }

    fn write_toml<T: Serialize>(&self, name: &str, value: &T) -> Result<(), Error> {
        let text = toml::to_string_pretty(value)
            .map_err(|error| Error::Encode(format!("{name}: {error}")))?;
        self.write_atomic(name, text.as_bytes(), false)
    }

    /// Replaces `name` (relative to the root) with `bytes`: a crash leaves the old content or the
    /// new, never a mix.
    pub(crate) fn write_atomic(
        &self,
        name: &str,
        bytes: &[u8],
        private: bool,
    ) -> Result<(), Error> {
        let path = self.root.join(name);
        let temporary = path.with_extension("tmp");
        let context = format!("write {}", path.display());
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(if private { 0o600 } else { 0o644 })
            .open(&temporary)
            .map_err(Error::io(context.clone()))?;
        file.write_all(bytes).map_err(Error::io(context.clone()))?;
        file.sync_all().map_err(Error::io(context.clone()))?;
        drop(file);
        std::fs::rename(&temporary, &path).map_err(Error::io(context.clone()))?;
        let parent = path.parent().unwrap_or(&self.root);
        File::open(parent)
            .and_then(|directory| directory.sync_all())
            .map_err(Error::io(context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_is_initialised_and_reopened() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("data");
        let dir = DataDir::open_or_init(&root).unwrap();
        let secret = dir.credential_secret().unwrap();
        let again = DataDir::open(&root).unwrap();
        assert_eq!(again.credential_secret().unwrap(), secret);
        assert_eq!(again.load_keys_manifest().unwrap(), KeysManifest::default());
    }

    #[test]
    fn a_foreign_directory_is_refused_and_left_alone() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(temp.path().join("thesis.tex"), "mine").unwrap();
        let error = DataDir::open_or_init(temp.path()).unwrap_err();
        assert_eq!(error.code(), "data_directory");
        assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 1);
        assert_eq!(
            DataDir::open(temp.path()).unwrap_err().code(),
            "data_directory"
        );
    }

    #[test]
    fn a_damaged_directory_names_what_is_missing() {
        let temp = tempfile::tempdir().unwrap();
        DataDir::open_or_init(temp.path()).unwrap();
        std::fs::remove_file(temp.path().join(CREDENTIALS)).unwrap();
        let error = DataDir::open(temp.path()).unwrap_err();
        assert!(
            error.to_string().contains("credentials.toml is missing"),
            "{error}"
        );
    }
}
