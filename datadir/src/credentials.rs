//! `credentials.toml`: who may call the server, platforms (verify, issue) and authorities
//! (administration), each with API keys; and the management commands that edit it.
//!
//! An API key reads `cyp_<id>_<secret>` for a platform and `cya_<id>_<secret>` for an
//! authority, so one can never be mistaken for the other. The file keeps only the id and
//! HMAC-SM3(credential secret, key): a copy of `credentials.toml` alone lets nobody in. The
//! running server checks presented keys in `http::auth`.

use cyberid_engine::PlatformId;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};

use super::DataDir;
use crate::Error;

pub(crate) const PLATFORM_PREFIX: &str = "cyp_";
pub(crate) const AUTHORITY_PREFIX: &str = "cya_";
pub(crate) const KEY_ID_LEN: usize = 8;
const KEY_SECRET_LEN: usize = 32;

type HmacSm3 = Hmac<sm3::Sm3>;

/// What a platform may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// `POST /v1/verify`.
    Verify,
    /// `POST /v1/certificates`.
    Issue,
}

/// `credentials.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CredentialsFile {
    #[serde(default, rename = "platform")]
    pub(crate) platforms: Vec<PlatformEntry>,
    #[serde(default, rename = "authority")]
    pub(crate) authorities: Vec<AuthorityEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlatformEntry {
    pub(crate) id: PlatformId,
    pub(crate) scopes: Vec<Scope>,
    /// Requests per second this platform may make; the server's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rate_limit: Option<u32>,
    #[serde(default, rename = "key")]
    pub(crate) keys: Vec<StoredKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthorityEntry {
    /// Recorded as the acting authority in the revocation history.
    pub(crate) id: String,
    #[serde(default, rename = "key")]
    pub(crate) keys: Vec<StoredKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredKey {
    /// The public half of the API key, hex.
    pub(crate) id: String,
    /// HMAC-SM3 of the whole API key under the credential secret, hex.
    pub(crate) hash: String,
    pub(crate) created_at: u64,
}

/// HMAC-SM3 of a whole API key under the directory's credential secret: what the file keeps.
pub(crate) fn hash_key(secret: &[u8; 32], api_key: &str) -> [u8; 32] {
    let mut mac = <HmacSm3 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(api_key.as_bytes());
    mac.finalize().into_bytes().into()
}

pub(crate) fn decode_id(hex_id: &str) -> Option<[u8; KEY_ID_LEN]> {
    let bytes = hex::decode(hex_id).ok()?;
    bytes.try_into().ok()
}

/// Splits `cyp_<id>_<secret>` into its prefix and id, checking the shape.
pub(crate) fn parse_api_key(api_key: &str) -> Option<(&'static str, [u8; KEY_ID_LEN])> {
    let prefix = [PLATFORM_PREFIX, AUTHORITY_PREFIX]
        .into_iter()
        .find(|prefix| api_key.starts_with(prefix))?;
    let (id, secret) = api_key[prefix.len()..].split_once('_')?;
    if secret.len() != 2 * KEY_SECRET_LEN || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((prefix, decode_id(id)?))
}

/// A freshly made API key: shown once, stored only as a hash.
#[derive(Debug)]
pub(crate) struct NewKey {
    pub(crate) api_key: String,
    pub(crate) stored: StoredKey,
}

fn new_key(secret: &[u8; 32], prefix: &str, now: u64) -> Result<NewKey, Error> {
    let mut id = [0u8; KEY_ID_LEN];
    let mut key_secret = [0u8; KEY_SECRET_LEN];
    getrandom::fill(&mut id).map_err(|_| cyberid_engine::Error::Random)?;
    getrandom::fill(&mut key_secret).map_err(|_| cyberid_engine::Error::Random)?;
    let id = hex::encode(id);
    let api_key = format!("{prefix}{id}_{}", hex::encode(key_secret));
    let stored = StoredKey {
        id,
        hash: hex::encode(hash_key(secret, &api_key)),
        created_at: now,
    };
    Ok(NewKey { api_key, stored })
}

impl DataDir {
    /// Registers a platform with its scopes and optional rate limit (requests per second, 0 for
    /// unlimited); returns its first API key, which is not stored anywhere.
    pub fn add_platform(
        &self,
        id: &PlatformId,
        scopes: &[Scope],
        rate_limit: Option<u32>,
        now: u64,
    ) -> Result<String, Error> {
        add_platform(self, id, scopes, rate_limit, now)
    }

    /// Registers an authority; returns its first API key, which is not stored anywhere.
    pub fn add_authority(&self, id: &str, now: u64) -> Result<String, Error> {
        add_authority(self, id, now)
    }
}

/// Adds a platform (or a key to an existing one) and returns the new API key.
pub(crate) fn add_platform(
    dir: &DataDir,
    id: &PlatformId,
    scopes: &[Scope],
    rate_limit: Option<u32>,
    now: u64,
) -> Result<String, Error> {
    let _lock = dir.lock()?;
    let mut file: CredentialsFile = dir.read_toml("credentials.toml")?;
    if file.platforms.iter().any(|p| p.id == *id) {
        return Err(Error::Exists(format!(
            "platform {id} exists; `cyberid platform add-key {id}` gives it another key"
        )));
    }
    let key = new_key(&dir.credential_secret()?, PLATFORM_PREFIX, now)?;
    file.platforms.push(PlatformEntry {
        id: *id,
        scopes: scopes.to_vec(),
        rate_limit,
        keys: vec![key.stored],
    });
    dir.write_toml("credentials.toml", &file)?;
    Ok(key.api_key)
}

/// Gives an existing platform or authority one more API key (for rotation).
pub(crate) fn add_key(
    dir: &DataDir,
    principal: &str,
    authority: bool,
    now: u64,
) -> Result<String, Error> {
    let _lock = dir.lock()?;
    let mut file: CredentialsFile = dir.read_toml("credentials.toml")?;
    let secret = dir.credential_secret()?;
    let keys = if authority {
        file.authorities
            .iter_mut()
            .find(|a| a.id == principal)
            .map(|a| &mut a.keys)
    } else {
        file.platforms
            .iter_mut()
            .find(|p| p.id.as_str() == principal)
            .map(|p| &mut p.keys)
    }
    .ok_or_else(|| Error::NotFound(format!("no such {}: {principal}", kind(authority))))?;
    let key = new_key(
        &secret,
        if authority {
            AUTHORITY_PREFIX
        } else {
            PLATFORM_PREFIX
        },
        now,
    )?;
    keys.push(key.stored);
    dir.write_toml("credentials.toml", &file)?;
    Ok(key.api_key)
}

/// Removes one API key by its id (the hex between the prefix and the secret).
pub(crate) fn revoke_key(dir: &DataDir, key_id: &str) -> Result<(), Error> {
    let _lock = dir.lock()?;
    let mut file: CredentialsFile = dir.read_toml("credentials.toml")?;
    let mut found = false;
    for keys in file
        .platforms
        .iter_mut()
        .map(|p| &mut p.keys)
        .chain(file.authorities.iter_mut().map(|a| &mut a.keys))
    {
        let before = keys.len();
        keys.retain(|k| k.id != key_id);
        found |= keys.len() != before;
    }
    if !found {
        return Err(Error::NotFound(format!("no API key with id {key_id}")));
    }
    dir.write_toml("credentials.toml", &file)
}

/// Removes a platform or an authority with all its keys.
pub(crate) fn remove(dir: &DataDir, principal: &str, authority: bool) -> Result<(), Error> {
    let _lock = dir.lock()?;
    let mut file: CredentialsFile = dir.read_toml("credentials.toml")?;
    let before = file.platforms.len() + file.authorities.len();
    if authority {
        file.authorities.retain(|a| a.id != principal);
    } else {
        file.platforms.retain(|p| p.id.as_str() != principal);
    }
    if file.platforms.len() + file.authorities.len() == before {
        return Err(Error::NotFound(format!(
            "no such {}: {principal}",
            kind(authority)
        )));
    }
    dir.write_toml("credentials.toml", &file)
}

/// Adds an authority and returns its API key.
pub(crate) fn add_authority(dir: &DataDir, id: &str, now: u64) -> Result<String, Error> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid {
        return Err(Error::Config(
            "an authority id is 1 to 64 characters from letters, digits, '.', '_' and '-'".into(),
        ));
    }
    let _lock = dir.lock()?;
    let mut file: CredentialsFile = dir.read_toml("credentials.toml")?;
    if file.authorities.iter().any(|a| a.id == id) {
        return Err(Error::Exists(format!("authority {id} exists")));
    }
    let key = new_key(&dir.credential_secret()?, AUTHORITY_PREFIX, now)?;
    file.authorities.push(AuthorityEntry {
        id: id.to_owned(),
        keys: vec![key.stored],
    });
    dir.write_toml("credentials.toml", &file)?;
    Ok(key.api_key)
}

fn kind(authority: bool) -> &'static str {
    if authority { "authority" } else { "platform" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (tempfile::TempDir, DataDir) {
        crate::datadir::temp_data_dir()
    }

    #[test]
    fn the_file_holds_no_usable_secret() {
        let (_temp, dir) = fixture();
        let key = add_platform(&dir, &"a".parse().unwrap(), &[Scope::Verify], None, 1).unwrap();
        let text = std::fs::read_to_string(dir.credentials_path()).unwrap();
        let secret_part = key.rsplit('_').next().unwrap();
        assert!(!text.contains(secret_part));
    }

    #[test]
    fn duplicate_names_are_refused() {
        let (_temp, dir) = fixture();
        let shop: PlatformId = "shop".parse().unwrap();
        add_platform(&dir, &shop, &[Scope::Verify], None, 1).unwrap();
        assert_eq!(
            add_platform(&dir, &shop, &[Scope::Verify], None, 1)
                .unwrap_err()
                .code(),
            "exists"
        );
        add_authority(&dir, "ops", 1).unwrap();
        assert_eq!(add_authority(&dir, "ops", 1).unwrap_err().code(), "exists");
        assert_eq!(
            add_authority(&dir, "bad name", 1).unwrap_err().code(),
            "config"
        );
    }

    proptest::proptest! {
        #[test]
        fn made_keys_parse_to_their_id(seed in proptest::num::u64::ANY) {
            let key = new_key(&[seed as u8; 32], PLATFORM_PREFIX, seed).unwrap();
            let (prefix, id) = parse_api_key(&key.api_key).unwrap();
            proptest::prop_assert_eq!(prefix, PLATFORM_PREFIX);
            proptest::prop_assert_eq!(hex::encode(id), key.stored.id);
        }
    }
}
