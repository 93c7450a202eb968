//! The issuing side's secret keys, in `identity/` (every file owner-only):
//!
//! ```text
//! identity/index.key         the blind index's HMAC-SM3 key (32 bytes)
//! identity/subject.key       the pairwise subjects' HMAC-SM3 key (32 bytes; for life, the
//!                            same on every node of a deployment)
//! identity/master-<n>.key    the vault's master key n (16 bytes, SM4)
//! identity/data-keys.toml    the vault's data keys, wrapped under the master key it names
//! ```
//!
//! Made on first use (`cyberid init` or the first `cyberid serve`), so a directory made by an
//! earlier build gains them. The master key lives here as a file; a deployment that must keep it
//! in a hardware security module replaces this module, not the vault.

use cyberid_identity::{IndexKey, SubjectKey, Vault, VaultKey, WrappedKey, rewrap};
use serde::{Deserialize, Serialize};

use crate::{DataDir, Error};

const DIRECTORY: &str = "identity";
const INDEX_KEY: &str = "identity/index.key";
const DATA_KEYS: &str = "identity/data-keys.toml";
const SUBJECT_KEY: &str = "identity/subject.key";

/// `identity/data-keys.toml`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataKeysFile {
    /// The master key every data key is wrapped under.
    master: u32,
    #[serde(rename = "key")]
    keys: Vec<WrappedEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrappedEntry {
    generation: u32,
    /// The wrapped key's binary form, hex.
    wrapped: String,
}

/// The keys the issuing side works with, unwrapped.
#[derive(Debug)]
pub struct IdentityKeys {
    /// The blind index key.
    pub index: IndexKey,
    /// The vault, with every data key generation.
    pub vault: Vault,
    /// The pairwise subjects' key.
    pub subject: SubjectKey,
}

fn master_name(id: u32) -> String {
    format!("{DIRECTORY}/master-{id}.key")
}

impl DataDir {
    /// The issuing side's keys, made now if this directory has none yet.
    pub fn identity_keys(&self) -> Result<IdentityKeys, Error> {
        if !self.root().join(DATA_KEYS).exists() || !self.root().join(SUBJECT_KEY).exists() {
            let _lock = self.lock()?;
            // Checked again under the lock: another command may have made them meanwhile.
            if !self.root().join(DATA_KEYS).exists() {
                self.create_identity_keys()?;
            }
            // A directory made before pairwise subjects existed gains its key here.
            if !self.root().join(SUBJECT_KEY).exists() {
                self.create_subject_key()?;
            }
        }
        let (master, wrapped) = self.read_vault_keys()?;
        Ok(IdentityKeys {
            index: IndexKey::from_bytes(&self.read_private(INDEX_KEY)?)?,
            vault: Vault::open(&master, &wrapped)?,
            subject: SubjectKey::from_bytes(&self.read_private(SUBJECT_KEY)?)?,
        })
    }

    fn create_subject_key(&self) -> Result<(), Error> {
        std::fs::create_dir_all(self.root().join(DIRECTORY))
            .map_err(Error::io("create the identity key directory"))?;
        self.write_atomic(SUBJECT_KEY, SubjectKey::generate()?.expose(), true)
    }

    pub(crate) fn create_identity_keys(&self) -> Result<(), Error> {
        std::fs::create_dir_all(self.root().join(DIRECTORY))
            .map_err(Error::io("create the identity key directory"))?;
        let index = IndexKey::generate()?;
        self.write_atomic(INDEX_KEY, index.expose(), true)?;
        let master = VaultKey::generate(1)?;
        self.write_atomic(&master_name(1), master.expose(), true)?;
        let wrapped = master.wrap(&VaultKey::generate(1)?)?;
        self.create_subject_key()?;
        // The data keys file goes last: its presence means every key it needs exists.
        self.write_data_keys(1, &[wrapped])
    }

    fn read_private(&self, name: &str) -> Result<Vec<u8>, Error> {
        std::fs::read(self.root().join(name)).map_err(Error::io(format!("read {name}")))
    }

    fn read_vault_keys(&self) -> Result<(VaultKey, Vec<WrappedKey>), Error> {
        let file: DataKeysFile = self.read_toml(DATA_KEYS)?;
        let master =
            VaultKey::from_bytes(file.master, &self.read_private(&master_name(file.master))?)?;
        let wrapped = file
            .keys
            .iter()
            .map(|entry| {
                let bytes = hex::decode(&entry.wrapped).map_err(|_| {
                    Error::data_dir(
                        self.root(),
                        format!("{DATA_KEYS} holds a key that is not hex"),
                    )
                })?;
                let key = WrappedKey::from_bytes(&bytes)?;
                if key.generation != entry.generation {
                    return Err(Error::data_dir(
                        self.root(),
                        format!(
                            "{DATA_KEYS}: generation {} does not match its key",
                            entry.generation
                        ),
                    ));
                }
                Ok(key)
            })
            .collect::<Result<_, Error>>()?;
        Ok((master, wrapped))
    }

    fn write_data_keys(&self, master: u32, wrapped: &[WrappedKey]) -> Result<(), Error> {
        let file = DataKeysFile {
            master,
            keys: wrapped
                .iter()
                .map(|key| WrappedEntry {
                    generation: key.generation,
                    wrapped: hex::encode(key.to_bytes()),
                })
                .collect(),
        };
        let text = toml::to_string_pretty(&file)
            .map_err(|error| Error::Encode(format!("{DATA_KEYS}: {error}")))?;
        self.write_atomic(DATA_KEYS, text.as_bytes(), true)
    }

    /// Replaces the vault's master key: every data key is re-wrapped under a new one, the old
    /// one is deleted. Records are not touched. A crash leaves either key in use, never
    /// neither. Returns the new master key's number. Running nodes read it at their next start.
    pub fn rotate_vault_master(&self) -> Result<u32, Error> {
        self.identity_keys()?;
        let _lock = self.lock()?;
        let (old, wrapped) = self.read_vault_keys()?;
        let new = VaultKey::generate(old.id() + 1)?;
        let rewrapped = rewrap(&old, &new, &wrapped)?;
        self.write_atomic(&master_name(new.id()), new.expose(), true)?;
        self.write_data_keys(new.id(), &rewrapped)?;
        std::fs::remove_file(self.root().join(master_name(old.id())))
            .map_err(Error::io("remove the old master key"))?;
        Ok(new.id())
    }

    /// Starts a new data key generation: records sealed from now on (new enrollments and
    /// re-enrollments) use it; older ones keep opening with theirs. Returns its number.
    pub fn new_vault_generation(&self) -> Result<u32, Error> {
        self.identity_keys()?;
        let _lock = self.lock()?;
        let (master, mut wrapped) = self.read_vault_keys()?;
        let generation = wrapped.iter().map(|key| key.generation).max().unwrap_or(0) + 1;
        wrapped.push(master.wrap(&VaultKey::generate(generation)?)?);
        self.write_data_keys(master.id(), &wrapped)?;
        Ok(generation)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use cyberid_engine::WebNumber;

    #[test]
    fn keys_are_made_once_owner_only_and_survive_rotation() {
        let (_temp, dir) = crate::temp_data_dir();
        let keys = dir.identity_keys().unwrap();
        let holder = WebNumber::generate().unwrap();
        let sealed = keys.vault.seal(&holder, b"attributes").unwrap();
        for name in [
            "identity/index.key",
            "identity/master-1.key",
            "identity/data-keys.toml",
            "identity/subject.key",
        ] {
            let mode = std::fs::metadata(dir.root().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{name} is {mode:o}");
        }
        let again = dir.identity_keys().unwrap();
        assert_eq!(again.index.expose(), keys.index.expose(), "made once");
        assert_eq!(again.subject.expose(), keys.subject.expose(), "made once");

        assert_eq!(dir.rotate_vault_master().unwrap(), 2);
        assert!(!dir.root().join("identity/master-1.key").exists());
        let rotated = dir.identity_keys().unwrap();
        assert_eq!(
            &*rotated.vault.open_record(&holder, &sealed).unwrap(),
            b"attributes"
        );

        assert_eq!(dir.new_vault_generation().unwrap(), 2);
        let newer = dir.identity_keys().unwrap();
        assert_eq!(newer.vault.current_generation(), 2);
        assert_eq!(
            &*newer.vault.open_record(&holder, &sealed).unwrap(),
            b"attributes"
        );
    }

    #[test]
    fn a_directory_from_before_pairwise_subjects_gains_the_key_once() {
        let (_temp, dir) = crate::temp_data_dir();
        let keys = dir.identity_keys().unwrap();
        std::fs::remove_file(dir.root().join("identity/subject.key")).unwrap();
        let upgraded = dir.identity_keys().unwrap();
        assert_eq!(upgraded.index.expose(), keys.index.expose());
        assert_ne!(upgraded.subject.expose(), keys.subject.expose());
        let again = dir.identity_keys().unwrap();
        assert_eq!(again.subject.expose(), upgraded.subject.expose());
    }

    #[test]
    fn a_swapped_master_key_is_refused() {
        let (_temp, dir) = crate::temp_data_dir();
        dir.identity_keys().unwrap();
        std::fs::write(dir.root().join("identity/master-1.key"), [7u8; 16]).unwrap();
        assert_eq!(dir.identity_keys().unwrap_err().code(), "vault_integrity");
    }
}
