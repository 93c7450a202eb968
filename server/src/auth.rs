//! Who is calling: the `Authorization` header of each request checked against the platforms'
//! and authorities' API keys, as `credentials.toml` lists them (the `cyberid-datadir` crate
//! keeps the key format and edits the file). A presented key is found by its id, then its
//! HMAC-SM3 is compared in constant time. The table is rebuilt whenever the file changes, so
//! a rotated or revoked key takes effect within a second.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use cyberid_engine::PlatformId;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use subtle::ConstantTimeEq;

use crate::Error;
use cyberid_datadir::{
    AGENT_PREFIX, AUTHORITY_PREFIX, CredentialsFile, DataDir, DisclosureEntitlement, KEY_ID_LEN,
    PLATFORM_PREFIX, Scope, StoredKey, decode_id, hash_key, parse_api_key,
};
use cyberid_identity::{Entitlement, Purpose};

/// A caller the server recognised.
#[derive(Debug, Clone)]
pub(crate) enum Principal {
    Platform(Arc<Platform>),
    Authority(Arc<str>),
    /// An enrollment agent, by the name the audit trail records.
    EnrollmentAgent(Arc<str>),
}

/// A platform as the server sees it while running.
#[derive(Debug)]
pub(crate) struct Platform {
    pub(crate) id: PlatformId,
    pub(crate) scopes: Vec<Scope>,
    /// `None` when the platform is unlimited.
    pub(crate) limiter: Option<DefaultDirectRateLimiter>,
    /// An authority entitled it to Web Numbers; otherwise it gets pairwise subjects.
    pub(crate) web_number_entitled: bool,
    /// An authority entitled it to attributes beyond the result, for a purpose.
    pub(crate) disclosure: Option<PlatformDisclosure>,
}

/// A platform's entitlement to attributes, as `credentials.toml` records it: what the verifier
/// decides with, and what a holder's app is shown before consenting.
#[derive(Debug, Clone)]
pub(crate) struct PlatformDisclosure {
    pub(crate) entitlement: Entitlement,
    pub(crate) record: DisclosureEntitlement,
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
    /// Platforms by id, for what anyone may read about them (their disclosure entitlement).
    by_platform: HashMap<PlatformId, Arc<Platform>>,
    /// Keys hashed (HMAC-SM3) against this table, for the tests of [`Session`].
    hashed: AtomicU64,
}

/// The token of a `Bearer` credential: `credentials = auth-scheme [ 1*SP token68 ]` (RFC 9110
/// §11.4), where the scheme is case-insensitive (§11.1), so `bearer` and `BEARER` are accepted.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim_matches(|c: char| c == ' ' || c == '\t');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
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
        let mut by_platform = HashMap::new();
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
                web_number_entitled: entry.web_number.is_some(),
                disclosure: entry.disclosure.clone().map(|record| PlatformDisclosure {
                    entitlement: Entitlement {
                        attributes: record.attributes,
                        purpose: Purpose::of(&record.purpose),
                        granted_at: record.granted_at,
                    },
                    record,
                }),
            });
            by_platform.insert(entry.id, platform.clone());
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
        for entry in &file.agents {
            let agent = Principal::EnrollmentAgent(entry.id.as_str().into());
            for stored in &entry.keys {
                insert(stored, &agent)?;
            }
        }
        Ok(Self {
            secret,
            by_key_id,
            by_platform,
            hashed: AtomicU64::new(0),
        })
    }

    /// A registered platform.
    pub(crate) fn platform(&self, id: &PlatformId) -> Option<&Arc<Platform>> {
        self.by_platform.get(id)
    }

    /// Reads `credentials.toml` from the data directory.
    pub(crate) fn load(dir: &DataDir, default_rate_limit: u32) -> Result<Self, Error> {
        let file = dir.credentials()?;
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
        self.hashed.fetch_add(1, Ordering::Relaxed);
        let presented = hash_key(&self.secret, api_key);
        let matches: bool = presented.ct_eq(stored).into();
        let kind_matches = match principal {
            Principal::Platform(_) => prefix == PLATFORM_PREFIX,
            Principal::Authority(_) => prefix == AUTHORITY_PREFIX,
            Principal::EnrollmentAgent(_) => prefix == AGENT_PREFIX,
        };
        if matches && kind_matches {
            Ok(principal.clone())
        } else {
            Err(AuthError::Unknown)
        }
    }
}

/// What one connection has proven: the last credential it presented, checked against one
/// generation of the credentials table. A platform sends thousands of requests down one
/// keep-alive connection with the same key; checking it once per connection instead of once
/// per request saves an HMAC-SM3 each time. A rotated or revoked key still takes effect
/// within a second: a reload builds a new table, and a credential proven against an older
/// table is checked again.
///
/// HTTP/1.1 requests on one connection come one after another, so the lock is never contended.
#[derive(Debug, Default)]
pub(crate) struct Session(Mutex<Option<Proven>>);

#[derive(Debug)]
struct Proven {
    table: Arc<Credentials>,
    header: Box<[u8]>,
    principal: Principal,
}

impl Session {
    /// [`Credentials::authenticate`] against `table`, unless this connection already proved
    /// this very header against this very table.
    pub(crate) fn authenticate(
        &self,
        table: &Arc<Credentials>,
        authorization: Option<&[u8]>,
    ) -> Result<Principal, AuthError> {
        let presented = authorization.ok_or(AuthError::Missing)?;
        let mut proven = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(earlier) = proven.as_ref()
            && Arc::ptr_eq(&earlier.table, table)
            && bool::from(earlier.header.ct_eq(presented))
        {
            return Ok(earlier.principal.clone());
        }
        let principal = table.authenticate(Some(presented))?;
        *proven = Some(Proven {
            table: table.clone(),
            header: presented.into(),
            principal: principal.clone(),
        });
        Ok(principal)
    }
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
        let platform_key = dir.add_platform(&shop, &[Scope::Verify], None, 1).unwrap();
        let authority_key = dir.add_authority("ops", 1).unwrap();
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
        let key = dir
            .add_platform(&"a".parse().unwrap(), &[Scope::Verify], None, 1)
            .unwrap();
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
    fn wrong_missing_and_swapped_keys_are_refused() {
        let (_temp, dir) = fixture();
        let key = dir
            .add_platform(&"a".parse().unwrap(), &[Scope::Verify], Some(5), 1)
            .unwrap();
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
        let first = dir
            .add_platform(&"a".parse().unwrap(), &[Scope::Verify], None, 1)
            .unwrap();
        let second = dir
            .add_api_key("a", cyberid_datadir::PrincipalKind::Platform, 2)
            .unwrap();
        let credentials = Credentials::load(&dir, 0).unwrap();
        assert!(credentials.authenticate(Some(&bearer(&first))).is_ok());
        assert!(credentials.authenticate(Some(&bearer(&second))).is_ok());

        let first_id = first.split('_').nth(1).unwrap();
        dir.revoke_api_key(first_id).unwrap();
        let credentials = Credentials::load(&dir, 0).unwrap();
        assert!(credentials.authenticate(Some(&bearer(&first))).is_err());
        assert!(credentials.authenticate(Some(&bearer(&second))).is_ok());
        assert_eq!(
            dir.revoke_api_key(first_id).unwrap_err().code(),
            "not_found"
        );

        dir.remove_principal("a", cyberid_datadir::PrincipalKind::Platform)
            .unwrap();
        let credentials = Credentials::load(&dir, 0).unwrap();
        assert!(credentials.authenticate(Some(&bearer(&second))).is_err());
    }

    #[test]
    fn a_session_checks_a_key_once_per_table_and_a_reload_checks_it_again() {
        let (_temp, dir) = fixture();
        let first = dir
            .add_platform(&"a".parse().unwrap(), &[Scope::Verify], None, 1)
            .unwrap();
        let second = dir
            .add_api_key("a", cyberid_datadir::PrincipalKind::Platform, 2)
            .unwrap();
        let table = Arc::new(Credentials::load(&dir, 0).unwrap());
        let session = Session::default();
        for _ in 0..5 {
            assert!(session.authenticate(&table, Some(&bearer(&first))).is_ok());
        }
        assert_eq!(table.hashed.load(Ordering::Relaxed), 1, "hashed once");
        // Another key on the same connection is checked, and so is a wrong one.
        assert!(session.authenticate(&table, Some(&bearer(&second))).is_ok());
        let mut wrong = first.clone();
        wrong.pop();
        wrong.push(if first.ends_with('A') { 'B' } else { 'A' });
        assert!(session.authenticate(&table, Some(&bearer(&wrong))).is_err());
        assert!(session.authenticate(&table, None).is_err());
        assert_eq!(table.hashed.load(Ordering::Relaxed), 3);

        // The first key is revoked: the reloaded table refuses it on the same connection.
        assert!(session.authenticate(&table, Some(&bearer(&first))).is_ok());
        dir.revoke_api_key(first.split('_').nth(1).unwrap())
            .unwrap();
        let reloaded = Arc::new(Credentials::load(&dir, 0).unwrap());
        assert!(
            session
                .authenticate(&reloaded, Some(&bearer(&first)))
                .is_err()
        );
        assert!(
            session
                .authenticate(&reloaded, Some(&bearer(&second)))
                .is_ok()
        );
    }

    proptest::proptest! {
        #[test]
        fn any_header_is_answered_without_panicking(header in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let credentials = Credentials::build(&CredentialsFile::default(), [7; 32], 0).unwrap();
            proptest::prop_assert!(credentials.authenticate(Some(&header)).is_err());
        }
    }

    #[test]
    fn the_platform_rate_limit_applies() {
        let (_temp, dir) = fixture();
        let key = dir
            .add_platform(&"a".parse().unwrap(), &[Scope::Verify], Some(2), 1)
            .unwrap();
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
