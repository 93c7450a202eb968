//! Who may call the server: platforms (verify, issue) and authorities (administration), each
//! with API keys.
//!
//! An API key reads `cyp_<id>_<secret>` for a platform and `cya_<id>_<secret>` for an
//! authority, so one can never be mistaken for the other. The data directory keeps only the id
//! and HMAC-SM3(credential secret, key): a copy of `credentials.toml` alone lets nobody in. A
//! presented key is found by its id, then its hash is compared in constant time.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use cyberid_engine::PlatformId;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::Error;
use crate::datadir::DataDir;

const PLATFORM_PREFIX: &str = "cyp_";
const AUTHORITY_PREFIX: &str = "cya_";
const KEY_ID_LEN: usize = 8;
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

/// A caller the server recognised.
#[derive(Debug, Clone)]
pub(crate) enum Principal {
    Platform(Arc<Platform>),
    Authority(Arc<str>),
}

/// A platform as the server sees it while running.
#[derive(Debug)]
pub(crate) struct Platform {
    pub(crate) id: PlatformId,
    pub(crate) scopes: Vec<Scope>,
    /// `None` when the platform is unlimited.
    pub(crate) limiter: Option<DefaultDirectRateLimiter>,
}

/// Why a presented credential was not accepted. Deliberately coarse: the caller learns only
/// whether a credential was missing or not accepted, never which part was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthError {
    Missing,
    Unknown,
}

/// The credentials a server accepts, built from `credentials.toml`.
#[derive(Debug)]
pub(crate) struct Credentials {
    secret: [u8; 32],
    by_key_id: HashMap<[u8; KEY_ID_LEN], (Principal, [u8; 32])>,
}

fn hash_key(secret: &[u8; 32], api_key: &str) -> [u8; 32] {
    let mut mac = <HmacSm3 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(api_key.as_bytes());
    mac.finalize().into_bytes().into()
}

fn decode_id(hex_id: &str) -> Option<[u8; KEY_ID_LEN]> {
    let bytes = hex::decode(hex_id).ok()?;
    bytes.try_into().ok()
}

/// Splits `cyp_<id>_<secret>` into its prefix and id, checking the shape.
fn parse_api_key(api_key: &str) -> Option<(&'static str, [u8; KEY_ID_LEN])> {
    let prefix = [PLATFORM_PREFIX, AUTHORITY_PREFIX]
        .into_iter()
        .find(|prefix| api_key.starts_with(prefix))?;
    let (id, secret) = api_key[prefix.len()..].split_once('_')?;
    if secret.len() != 2 * KEY_SECRET_LEN || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((prefix, decode_id(id)?))
}

/// The token of a `Bearer` credential: `credentials = auth-scheme [ 1*SP token68 ]` (RFC 9110
/// §11.4), where the scheme is case-insensitive (§11.1), so `bearer` and `BEARER` are accepted.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim_matches(|c: char| c == ' ' || c == '\t');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
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

impl Credentials {
    /// Builds the lookup table. `default_rate_limit` applies to platforms that set none; zero
    /// means unlimited.
    pub(crate) fn build(
        file: &CredentialsFile,
        secret: [u8; 32],
        default_rate_limit: u32,
    ) -> Result<Self, Error> {
        let mut by_key_id = HashMap::new();
        let mut insert = |stored: &StoredKey, principal: &Principal| -> Result<(), Error> {
            let id = decode_id(&stored.id).ok_or_else(|| {
                Error::Config(format!(
                    "credentials.toml: key id {:?} is not 16 hex digits",
                    stored.id
                ))
            })?;
            let hash = hex::decode(&stored.hash)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| {
                    Error::Config(format!(
                        "credentials.toml: key {} has a malformed hash",
                        stored.id
                    ))
                })?;
            if by_key_id.insert(id, (principal.clone(), hash)).is_some() {
                return Err(Error::Config(format!(
                    "credentials.toml: key id {} appears twice",
                    stored.id
                )));
            }
            Ok(())
        };
        for entry in &file.platforms {
            let rate = entry.rate_limit.unwrap_or(default_rate_limit);
            let platform = Arc::new(Platform {
                id: entry.id,
                scopes: entry.scopes.clone(),
                limiter: NonZeroU32::new(rate)
                    .map(|rate| RateLimiter::direct(Quota::per_second(rate))),
            });
            for stored in &entry.keys {
                insert(stored, &Principal::Platform(platform.clone()))?;
            }
        }
        for entry in &file.authorities {
            let authority = Principal::Authority(entry.id.as_str().into());
            for stored in &entry.keys {
                insert(stored, &authority)?;
            }
        }
        Ok(Self { secret, by_key_id })
    }

    /// Reads `credentials.toml` from the data directory.
    pub(crate) fn load(dir: &DataDir, default_rate_limit: u32) -> Result<Self, Error> {
        let file: CredentialsFile = dir.read_toml("credentials.toml")?;
        Self::build(&file, dir.credential_secret()?, default_rate_limit)
    }

    /// Checks an `Authorization` header value.
    pub(crate) fn authenticate(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Principal, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| AuthError::Unknown)?;
        let api_key = bearer_token(header).ok_or(AuthError::Unknown)?;
        let (prefix, id) = parse_api_key(api_key).ok_or(AuthError::Unknown)?;
        let (principal, stored) = self.by_key_id.get(&id).ok_or(AuthError::Unknown)?;
        let presented = hash_key(&self.secret, api_key);
        let matches: bool = presented.ct_eq(stored).into();
        let kind_matches = match principal {
            Principal::Platform(_) => prefix == PLATFORM_PREFIX,
            Principal::Authority(_) => prefix == AUTHORITY_PREFIX,
        };
        if matches && kind_matches {
            Ok(principal.clone())
        } else {
            Err(AuthError::Unknown)
        }
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
        let temp = tempfile::tempdir().unwrap();
        let dir = DataDir::open_or_init(temp.path()).unwrap();
        (temp, dir)
    }

    fn bearer(key: &str) -> Vec<u8> {
        format!("Bearer {key}").into_bytes()
    }

    #[test]
    fn platform_and_authority_keys_authenticate_as_themselves() {
        let (_temp, dir) = fixture();
        let shop: PlatformId = "shop.example".parse().unwrap();
        let platform_key = add_platform(&dir, &shop, &[Scope::Verify], None, 1).unwrap();
        let authority_key = add_authority(&dir, "ops", 1).unwrap();
        let credentials = Credentials::load(&dir, 0).unwrap();

        match credentials
            .authenticate(Some(&bearer(&platform_key)))
            .unwrap()
        {
            Principal::Platform(platform) => {
                assert_eq!(platform.id, shop);
                assert_eq!(platform.scopes, [Scope::Verify]);
                assert!(platform.limiter.is_none());
            }
            other => panic!("{other:?}"),
        }
        match credentials
            .authenticate(Some(&bearer(&authority_key)))
            .unwrap()
        {
            Principal::Authority(id) => assert_eq!(&*id, "ops"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        let (_temp, dir) = fixture();
        let key = add_platform(&dir, &"a".parse().unwrap(), &[Scope::Verify], None, 1).unwrap();
        let credentials = Credentials::load(&dir, 0).unwrap();
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            for header in [format!("{scheme} {key}"), format!("{scheme}   {key} ")] {
                assert!(
                    credentials.authenticate(Some(header.as_bytes())).is_ok(),
                    "{header}"
                );
            }
        }
        for header in [
            format!("Bearer{key}"),
            format!("Bearers {key}"),
            format!("Bear {key}"),
            "Bearer ".to_owned(),
            "bearer".to_owned(),
        ] {
            assert_eq!(
                credentials
                    .authenticate(Some(header.as_bytes()))
                    .unwrap_err(),
                AuthError::Unknown,
                "{header}"
            );
        }
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
    fn wrong_missing_and_swapped_keys_are_refused() {
        let (_temp, dir) = fixture();
        let key = add_platform(&dir, &"a".parse().unwrap(), &[Scope::Verify], Some(5), 1).unwrap();
        let credentials = Credentials::load(&dir, 0).unwrap();
        assert_eq!(
            credentials.authenticate(None).unwrap_err(),
            AuthError::Missing
        );
        let mut wrong = key.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        for presented in [
            bearer(&wrong),
            key.clone().into_bytes(),
            format!("Basic {key}").into_bytes(),
            bearer(&key.replacen("cyp_", "cya_", 1)),
            bearer("cyp_zz_00"),
            vec![0xff, 0xfe],
        ] {
            assert_eq!(
                credentials.authenticate(Some(&presented)).unwrap_err(),
                AuthError::Unknown,
                "{}",
                String::from_utf8_lossy(&presented)
            );
        }
    }

    #[test]
    fn keys_rotate_and_revoke() {
        let (_temp, dir) = fixture();
        let first = add_platform(&dir, &"a".parse().unwrap(), &[Scope::Verify], None, 1).unwrap();
        let second = add_key(&dir, "a", false, 2).unwrap();
        let credentials = Credentials::load(&dir, 0).unwrap();
        assert!(credentials.authenticate(Some(&bearer(&first))).is_ok());
        assert!(credentials.authenticate(Some(&bearer(&second))).is_ok());

        let first_id = first.split('_').nth(1).unwrap();
        revoke_key(&dir, first_id).unwrap();
        let credentials = Credentials::load(&dir, 0).unwrap();
        assert!(credentials.authenticate(Some(&bearer(&first))).is_err());
        assert!(credentials.authenticate(Some(&bearer(&second))).is_ok());
        assert_eq!(revoke_key(&dir, first_id).unwrap_err().code(), "not_found");

        remove(&dir, "a", false).unwrap();
        let credentials = Credentials::load(&dir, 0).unwrap();
        assert!(credentials.authenticate(Some(&bearer(&second))).is_err());
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
        fn any_header_is_answered_without_panicking(header in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let credentials = Credentials::build(&CredentialsFile::default(), [7; 32], 0).unwrap();
            proptest::prop_assert!(credentials.authenticate(Some(&header)).is_err());
        }

        #[test]
        fn made_keys_parse_to_their_id(seed in proptest::num::u64::ANY) {
            let key = new_key(&[seed as u8; 32], PLATFORM_PREFIX, seed).unwrap();
            let (prefix, id) = parse_api_key(&key.api_key).unwrap();
            proptest::prop_assert_eq!(prefix, PLATFORM_PREFIX);
            proptest::prop_assert_eq!(hex::encode(id), key.stored.id);
        }
    }

    #[test]
    fn the_platform_rate_limit_applies() {
        let (_temp, dir) = fixture();
        let key = add_platform(&dir, &"a".parse().unwrap(), &[Scope::Verify], Some(2), 1).unwrap();
        let credentials = Credentials::load(&dir, 1000).unwrap();
        let Principal::Platform(platform) = credentials.authenticate(Some(&bearer(&key))).unwrap()
        else {
            panic!("not a platform")
        };
        let limiter = platform.limiter.as_ref().unwrap();
        // A quota of 2 per second allows a burst of 2, then refuses.
        assert!(limiter.check().is_ok());
        assert!(limiter.check().is_ok());
        assert!(limiter.check().is_err());
    }
}
