//! Issuer keys: `keys.toml` (which keys exist, which one issues, retirements) and the PEM
//! files under `keys/`.

use std::path::PathBuf;

use cyberid_engine::{IssuerPublicKey, IssuerSigningKey, KeyId};
use serde::{Deserialize, Serialize};

use crate::{DataDir, Error, KEYS_MANIFEST};

/// `keys.toml`: the issuer keys of this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysManifest {
    /// The key `POST /v1/certificates` signs with; needs its private key in `keys/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuing: Option<KeyId>,
    /// Every key, in the order added.
    #[serde(default, rename = "key")]
    pub keys: Vec<KeyEntry>,
}

/// One key of `keys.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Its id (derived from the public key).
    pub id: KeyId,
    /// When it was added, Unix seconds.
    pub added_at: u64,
    /// After this moment the key's new certificates are refused (`key_revoked`); certificates
    /// issued before stay good until they expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<u64>,
}

/// A key with its files read.
#[derive(Debug)]
pub struct LoadedKey {
    /// Its entry in `keys.toml`.
    pub entry: KeyEntry,
    /// The public key, checked against the entry's id.
    pub public: IssuerPublicKey,
    /// The private key, where this node issues with it.
    pub private: Option<IssuerSigningKey>,
}

impl DataDir {
    /// Generates an SM2 issuer key pair here; it issues if `issuing` or if it is the first key
    /// able to. Returns its id.
    pub fn generate_key(&self, issuing: bool, now: u64) -> Result<KeyId, Error> {
        let key = IssuerSigningKey::generate()?;
        self.add_key(key.public_key(), Some(&key), issuing, now)
    }

    /// Reads `keys.toml`.
    pub fn load_keys_manifest(&self) -> Result<KeysManifest, Error> {
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
    pub fn load_keys(&self) -> Result<(KeysManifest, Vec<LoadedKey>), Error> {
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
    pub fn add_key(
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
    pub fn retire_key(&self, id: &KeyId, at: u64) -> Result<(), Error> {
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

    /// The issuing key with its private half: what signs `POST /v1/certificates`, and what
    /// the load harness signs its certificates with.
    pub fn issuing_key(&self) -> Result<IssuerSigningKey, Error> {
        let (manifest, keys) = self.load_keys()?;
        let issuing = manifest.issuing.ok_or_else(|| {
            Error::NotFound(
                "keys.toml names no issuing key; `cyberid key generate` makes one".into(),
            )
        })?;
        keys.into_iter()
            .find(|key| key.entry.id == issuing)
            .and_then(|key| key.private)
            .ok_or_else(|| {
                Error::data_dir(
                    self.root(),
                    format!("the issuing key {issuing} has no private key in keys/"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_issuing_key_is_read_back() {
        let temp = tempfile::tempdir().unwrap();
        let dir = DataDir::open_or_init(temp.path()).unwrap();
        assert_eq!(dir.issuing_key().unwrap_err().code(), "not_found");
        let id = dir.generate_key(false, 1).unwrap();
        assert_eq!(dir.issuing_key().unwrap().key_id(), id);
    }
}
