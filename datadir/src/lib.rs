//! The data directory: everything a `cyberid` node keeps on disk.
//!
//! ```text
//! <data-dir>/
//!   cyberid-data          marker with the layout version: a directory without it is not ours
//!   store/                RocksDB: revocations and replay nonces (cyberid_store_rocksdb::DurableStore)
//!   keys.toml             issuer keys: which exist, which one issues, retirements
//!   keys/<id>.pub.pem     issuer public keys (SPKI PEM), for verification
//!   keys/<id>.key.pem     issuer private keys (PKCS#8 PEM, mode 0600), only where this node issues
//!   credentials.toml      platforms and authorities with keyed hashes of their API keys
//!   credential.secret     the key of those hashes (mode 0600)
//! ```
//!
//! Files change only by atomic replacement (write, fsync, rename, fsync the directory), under an
//! exclusive lock, so a command killed mid-write leaves the old file or the new one, and two
//! commands never interleave. A running server re-reads `keys.toml` and `credentials.toml` when
//! they change.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cyberid_engine::{IssuerPublicKey, IssuerSigningKey, KeyId};
use serde::{Deserialize, Serialize};

use crate::Error;

pub(crate) mod credentials;

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

/// `keys.toml`: the issuer keys of this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeysManifest {
    /// The key `POST /v1/certificates` signs with; needs its private key in `keys/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) issuing: Option<KeyId>,
    #[serde(default, rename = "key")]
    pub(crate) keys: Vec<KeyEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyEntry {
    pub(crate) id: KeyId,
    pub(crate) added_at: u64,
    /// After this moment the key's new certificates are refused (`key_revoked`); certificates
    /// issued before stay good until they expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retired_at: Option<u64>,
}

/// A key with its files read.
#[derive(Debug)]
pub(crate) struct LoadedKey {
    pub(crate) entry: KeyEntry,
    pub(crate) public: IssuerPublicKey,
    pub(crate) private: Option<IssuerSigningKey>,
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

    /// Where the RocksDB store lives.
    pub fn store_path(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Generates an SM2 issuer key pair here; it issues if `issuing` or if it is the first key
    /// able to. Returns its id.
    pub fn generate_key(&self, issuing: bool, now: u64) -> Result<KeyId, Error> {
        let key = IssuerSigningKey::generate()?;
        self.add_key(key.public_key(), Some(&key), issuing, now)
    }

    /// Creates the store with its history beginning at `history_begins` (see
    /// `StoreOptions::history_begins`); returns the start recorded. Refuses if a store exists.
    pub fn create_store(&self, history_begins: u64) -> Result<u64, Error> {
        use cyberid_engine::{NonceStore, SystemClock};
        use cyberid_store_rocksdb::{DurableStore, StoreOptions};
        if self.store_path().exists() {
            return Err(Error::Exists(format!(
                "{} already holds a store, whose history stays as recorded",
                self.store_path().display()
            )));
        }
        let options = StoreOptions {
            history_begins: Some(history_begins),
            ..StoreOptions::default()
        };
        let store = DurableStore::open(&self.store_path(), options, Arc::new(SystemClock))?;
        Ok(store.history_begins())
    }

    pub(crate) fn keys_manifest_path(&self) -> PathBuf {
        self.root.join(KEYS_MANIFEST)
    }

    pub(crate) fn credentials_path(&self) -> PathBuf {
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

    pub(crate) fn credential_secret(&self) -> Result<[u8; SECRET_LEN], Error> {
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

    pub(crate) fn write_toml<T: Serialize>(&self, name: &str, value: &T) -> Result<(), Error> {
        let text = toml::to_string_pretty(value)
            .map_err(|error| Error::Config(format!("cannot encode {name}: {error}")))?;
        self.write_atomic(name, text.as_bytes(), false)
    }

    pub(crate) fn load_keys_manifest(&self) -> Result<KeysManifest, Error> {
        self.read_toml(KEYS_MANIFEST)
    }

    pub(crate) fn save_keys(&self, manifest: &KeysManifest) -> Result<(), Error> {
        self.write_toml(KEYS_MANIFEST, manifest)
    }

    fn public_key_path(&self, id: &KeyId) -> PathBuf {
        self.root.join("keys").join(format!("{id}.pub.pem"))
    }

    fn private_key_path(&self, id: &KeyId) -> PathBuf {
        self.root.join("keys").join(format!("{id}.key.pem"))
    }

    /// Reads every key of the manifest, checking that each file holds the key its name says.
    pub(crate) fn load_keys(&self) -> Result<(KeysManifest, Vec<LoadedKey>), Error> {
        let manifest = self.load_keys_manifest()?;
        let mut keys = Vec::with_capacity(manifest.keys.len());
        for entry in &manifest.keys {
            let path = self.public_key_path(&entry.id);
            let pem = std::fs::read_to_string(&path)
                .map_err(Error::io(format!("read {}", path.display())))?;
            let public = IssuerPublicKey::from_spki_pem(&pem)?;
            if public.key_id() != entry.id {
                return Err(Error::data_dir(
                    &self.root,
                    format!(
                        "{} holds key {}, not {}",
                        path.display(),
                        public.key_id(),
                        entry.id
                    ),
                ));
            }
            let private_path = self.private_key_path(&entry.id);
            let private = match std::fs::read_to_string(&private_path) {
                Ok(pem) => {
                    let key = IssuerSigningKey::from_pkcs8_pem(&pem)?;
                    if key.key_id() != entry.id {
                        return Err(Error::data_dir(
                            &self.root,
                            format!("{} does not match its public key", private_path.display()),
                        ));
                    }
                    Some(key)
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => {
                    return Err(Error::io(format!("read {}", private_path.display()))(error));
                }
            };
            keys.push(LoadedKey {
                entry: entry.clone(),
                public,
                private,
            });
        }
        if let Some(issuing) = &manifest.issuing
            && !keys
                .iter()
                .any(|k| k.entry.id == *issuing && k.private.is_some())
        {
            return Err(Error::data_dir(
                &self.root,
                format!("the issuing key {issuing} has no private key in keys/"),
            ));
        }
        Ok((manifest, keys))
    }

    /// Adds a key (public, and private if given) to the directory; it becomes the issuing key
    /// when asked or when it is the first key able to issue.
    pub(crate) fn add_key(
        &self,
        public: &IssuerPublicKey,
        private: Option<&IssuerSigningKey>,
        make_issuing: bool,
        now: u64,
    ) -> Result<KeyId, Error> {
        let _lock = self.lock()?;
        let mut manifest = self.load_keys_manifest()?;
        let id = public.key_id();
        if manifest.keys.iter().any(|entry| entry.id == id) {
            return Err(Error::Exists(format!(
                "issuer key {id} is already in the data directory"
            )));
        }
        if let Some(private) = private {
            let pem = private.to_pkcs8_pem()?;
            self.write_atomic(&format!("keys/{id}.key.pem"), pem.as_bytes(), true)?;
        }
        self.write_atomic(
            &format!("keys/{id}.pub.pem"),
            public.to_spki_pem()?.as_bytes(),
            false,
        )?;
        manifest.keys.push(KeyEntry {
            id,
            added_at: now,
            retired_at: None,
        });
        if private.is_some() && (make_issuing || manifest.issuing.is_none()) {
            manifest.issuing = Some(id);
        }
        self.save_keys(&manifest)?;
        Ok(id)
    }

    /// Retires a key at `at`: it stops issuing, and certificates it signs after `at` are refused.
    pub(crate) fn retire_key(&self, id: &KeyId, at: u64) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut manifest = self.load_keys_manifest()?;
        let entry = manifest
            .keys
            .iter_mut()
            .find(|entry| entry.id == *id)
            .ok_or_else(|| Error::NotFound(format!("no issuer key {id} in the data directory")))?;
        entry.retired_at.get_or_insert(at);
        if manifest.issuing == Some(*id) {
            manifest.issuing = None;
        }
        self.save_keys(&manifest)
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

    #[test]
    fn keys_round_trip_and_the_first_private_key_issues() {
        let temp = tempfile::tempdir().unwrap();
        let dir = DataDir::open_or_init(temp.path()).unwrap();
        let verify_only = IssuerSigningKey::generate().unwrap();
        dir.add_key(verify_only.public_key(), None, false, 10)
            .unwrap();
        let signing = IssuerSigningKey::generate().unwrap();
        let id = dir
            .add_key(signing.public_key(), Some(&signing), false, 11)
            .unwrap();
        let (manifest, keys) = dir.load_keys().unwrap();
        assert_eq!(manifest.issuing, Some(id));
        assert_eq!(keys.len(), 2);
        assert!(keys[0].private.is_none());
        assert_eq!(keys[1].private.as_ref().unwrap().key_id(), id);
        let duplicate = dir.add_key(signing.public_key(), None, false, 12);
        assert_eq!(duplicate.unwrap_err().code(), "exists");

        dir.retire_key(&id, 20).unwrap();
        let (manifest, _) = dir.load_keys().unwrap();
        assert_eq!(manifest.issuing, None);
        assert_eq!(manifest.keys[1].retired_at, Some(20));
    }

    #[test]
    fn a_key_file_swapped_for_another_key_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let dir = DataDir::open_or_init(temp.path()).unwrap();
        let first = IssuerSigningKey::generate().unwrap();
        let id = dir.add_key(first.public_key(), None, false, 1).unwrap();
        let other = IssuerSigningKey::generate().unwrap();
        std::fs::write(
            temp.path().join(format!("keys/{id}.pub.pem")),
            other.public_key().to_spki_pem().unwrap(),
        )
        .unwrap();
        assert_eq!(dir.load_keys().unwrap_err().code(), "data_directory");
    }
}
