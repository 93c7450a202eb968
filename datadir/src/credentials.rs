//! `credentials.toml`: who may call the server, platforms (verify, issue), authorities
//! (administration) and enrollment agents (the official app's back end, which enrolls holders),
//! each with API keys; and the management commands that edit it.
//!
//! An API key reads `cyp_<id>_<secret>` for a platform, `cya_<id>_<secret>` for an authority and
//! `cye_<id>_<secret>` for an enrollment agent, so one can never be mistaken for another. The file keeps only the id and
//! HMAC-SM3(credential secret, key): a copy of `credentials.toml` alone lets nobody in. The
//! running server checks presented keys against it (the server's `auth` module).

use cyberid_engine::{Attributes, PlatformId};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};

use crate::{DataDir, Error};

/// The start of every platform API key.
pub const PLATFORM_PREFIX: &str = "cyp_";
/// The start of every authority API key.
pub const AUTHORITY_PREFIX: &str = "cya_";
/// The start of every enrollment agent API key.
pub const AGENT_PREFIX: &str = "cye_";

/// The kinds of credential holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// A platform: verifies (and, as a trusted issuer, issues).
    Platform,
    /// An authority: administers revocations and reads the history.
    Authority,
    /// An enrollment agent: enrolls holders.
    EnrollmentAgent,
}

impl PrincipalKind {
    /// The start of this kind's API keys.
    pub fn prefix(self) -> &'static str {
        match self {
            PrincipalKind::Platform => PLATFORM_PREFIX,
            PrincipalKind::Authority => AUTHORITY_PREFIX,
            PrincipalKind::EnrollmentAgent => AGENT_PREFIX,
        }
    }

    fn name(self) -> &'static str {
        match self {
            PrincipalKind::Platform => "platform",
            PrincipalKind::Authority => "authority",
            PrincipalKind::EnrollmentAgent => "enrollment agent",
        }
    }
}
/// Bytes of an API key's id (the hex between the prefix and the secret).
pub const KEY_ID_LEN: usize = 8;
const CREDENTIALS: &str = "credentials.toml";
const KEY_SECRET_LEN: usize = 32;

type HmacSm3 = Hmac<sm3::Sm3>;

/// What a platform may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// `POST /v1/verify`.
    Verify,
    /// `POST /v1/certificates`.
    Issue,
}

impl Scope {
    /// Every scope, by its name in `credentials.toml` and on the command line.
    pub const ALL: [(&'static str, Scope); 2] =
        [("verify", Scope::Verify), ("issue", Scope::Issue)];
}

impl std::str::FromStr for Scope {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Scope::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, scope)| *scope)
            .ok_or_else(|| Error::Invalid(format!("no scope {text:?}: verify or issue")))
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = Scope::ALL
            .iter()
            .find(|(_, scope)| scope == self)
            .map_or("?", |(name, _)| name);
        f.write_str(name)
    }
}

/// `credentials.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsFile {
    /// The platforms (verify, issue).
    #[serde(default, rename = "platform")]
    pub platforms: Vec<PlatformEntry>,
    /// The authorities (administration).
    #[serde(default, rename = "authority")]
    pub authorities: Vec<AuthorityEntry>,
    /// The enrollment agents; the same shape as an authority (a name recorded in the audit
    /// trail, and keys).
    #[serde(
        default,
        rename = "enrollment_agent",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub agents: Vec<AuthorityEntry>,
}

impl CredentialsFile {
    fn keys_of(&mut self, kind: PrincipalKind, id: &str) -> Option<&mut Vec<StoredKey>> {
        match kind {
            PrincipalKind::Platform => self
                .platforms
                .iter_mut()
                .find(|p| p.id.as_str() == id)
                .map(|p| &mut p.keys),
            PrincipalKind::Authority => self
                .authorities
                .iter_mut()
                .find(|a| a.id == id)
                .map(|a| &mut a.keys),
            PrincipalKind::EnrollmentAgent => self
                .agents
                .iter_mut()
                .find(|a| a.id == id)
                .map(|a| &mut a.keys),
        }
    }

    fn principals(&self) -> usize {
        self.platforms.len() + self.authorities.len() + self.agents.len()
    }
}

/// A platform of `credentials.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformEntry {
    /// Its id, as certificates' audiences name it.
    pub id: PlatformId,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Requests per second this platform may make; the server's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// An authority's entitlement to the Web Number itself; without one, the platform's
    /// results name the holder by a pairwise subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_number: Option<WebNumberEntitlement>,
    /// An authority's entitlement to attributes beyond the result (name, resident id), for a
    /// stated purpose; each answer carries them only where the holder also consented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disclosure: Option<DisclosureEntitlement>,
    /// Its API keys (several during a rotation).
    #[serde(default, rename = "key")]
    pub keys: Vec<StoredKey>,
}

/// An authority's decision that a platform receives holders' Web Numbers, recorded with the
/// legal basis it cited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebNumberEntitlement {
    /// The authority that granted it (one of this file's authorities when it did).
    pub authority: String,
    /// The legal basis cited: 1 to 200 characters, no control characters.
    pub basis: String,
    /// When, Unix seconds.
    pub granted_at: u64,
}

/// An authority's decision that a platform may receive attributes beyond the result, for a
/// purpose, on a legal basis. Holders consent to that purpose (by its SM3 digest), so a new
/// purpose needs their consent again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisclosureEntitlement {
    /// The attributes (never empty).
    pub attributes: Attributes,
    /// What the platform uses them for, as holders are shown it: 1 to 200 characters.
    pub purpose: String,
    /// The authority that granted it.
    pub authority: String,
    /// The legal basis cited: 1 to 200 characters, no control characters.
    pub basis: String,
    /// When, Unix seconds.
    pub granted_at: u64,
}

/// Longest legal basis (or purpose) recorded with an entitlement, in characters.
const MAX_BASIS_CHARS: usize = 200;

/// A legal basis or purpose, trimmed: 1 to [`MAX_BASIS_CHARS`] characters without control
/// characters.
fn recorded_text<'a>(what: &str, text: &'a str) -> Result<&'a str, Error> {
    let text = text.trim();
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_BASIS_CHARS || text.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "the {what} is 1 to {MAX_BASIS_CHARS} characters without control characters"
        )));
    }
    Ok(text)
}

/// An authority of `credentials.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityEntry {
    /// Recorded as the acting authority in the revocation history.
    pub id: String,
    /// Its API keys.
    #[serde(default, rename = "key")]
    pub keys: Vec<StoredKey>,
}

/// An API key as the file keeps it: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredKey {
    /// The public half of the API key, hex.
    pub id: String,
    /// HMAC-SM3 of the whole API key under the credential secret, hex.
    pub hash: String,
    /// When it was made, Unix seconds.
    pub created_at: u64,
}

/// HMAC-SM3 of a whole API key under the directory's credential secret: what the file keeps.
pub fn hash_key(secret: &[u8; 32], api_key: &str) -> [u8; 32] {
    let mut mac = <HmacSm3 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(api_key.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The bytes of a hex key id, if it is one.
pub fn decode_id(hex_id: &str) -> Option<[u8; KEY_ID_LEN]> {
    let bytes = hex::decode(hex_id).ok()?;
    bytes.try_into().ok()
}

/// Splits `cyp_<id>_<secret>` into its prefix and id, checking the shape.
pub fn parse_api_key(api_key: &str) -> Option<(&'static str, [u8; KEY_ID_LEN])> {
    let prefix = [PLATFORM_PREFIX, AUTHORITY_PREFIX, AGENT_PREFIX]
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
struct NewKey {
    api_key: String,
    stored: StoredKey,
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
    /// `credentials.toml`.
    pub fn credentials(&self) -> Result<CredentialsFile, Error> {
        self.read_toml(CREDENTIALS)
    }

    /// Registers a platform with its scopes and optional rate limit (requests per second, 0 for
    /// unlimited); returns its first API key, which is not stored anywhere.
    pub fn add_platform(
        &self,
        id: &PlatformId,
        scopes: &[Scope],
        rate_limit: Option<u32>,
        now: u64,
    ) -> Result<String, Error> {
        let _lock = self.lock()?;
        let mut file: CredentialsFile = self.read_toml(CREDENTIALS)?;
        if file.platforms.iter().any(|p| p.id == *id) {
            return Err(Error::Exists(format!(
                "platform {id} exists; `cyberid platform add-key {id}` gives it another key"
            )));
        }
        let key = new_key(&self.credential_secret()?, PLATFORM_PREFIX, now)?;
        file.platforms.push(PlatformEntry {
            id: *id,
            scopes: scopes.to_vec(),
            rate_limit,
            web_number: None,
            disclosure: None,
            keys: vec![key.stored],
        });
        self.write_toml(CREDENTIALS, &file)?;
        Ok(key.api_key)
    }

    /// Records an authority's entitlement of a platform to holders' Web Numbers, replacing any
    /// earlier one. Running nodes apply it at their next credentials reload; from then on that
    /// platform's results carry the Web Number instead of its pairwise subject.
    pub fn entitle_web_number(
        &self,
        platform: &PlatformId,
        authority: &str,
        basis: &str,
        now: u64,
    ) -> Result<(), Error> {
        let basis = recorded_text("legal basis", basis)?;
        self.edit_platform(platform, Some(authority), |entry| {
            entry.web_number = Some(WebNumberEntitlement {
                authority: authority.to_owned(),
                basis: basis.to_owned(),
                granted_at: now,
            });
            Ok(())
        })
    }

    /// Changes one platform's entry under the file lock, after checking that `authority` (when
    /// one acts) is registered; writes the file if `change` succeeds.
    fn edit_platform(
        &self,
        platform: &PlatformId,
        authority: Option<&str>,
        change: impl FnOnce(&mut PlatformEntry) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut file: CredentialsFile = self.read_toml(CREDENTIALS)?;
        if let Some(authority) = authority
            && !file.authorities.iter().any(|a| a.id == authority)
        {
            return Err(Error::NotFound(format!("no such authority: {authority}")));
        }
        let entry = file
            .platforms
            .iter_mut()
            .find(|p| p.id == *platform)
            .ok_or_else(|| Error::NotFound(format!("no such platform: {platform}")))?;
        change(entry)?;
        self.write_toml(CREDENTIALS, &file)
    }

    /// Records an authority's entitlement of a platform to `attributes` for `purpose`,
    /// replacing any earlier one. Holders' standing consents to the same purpose still hold;
    /// to another purpose they lapse. Nodes apply it at their next credentials reload.
    pub fn entitle_disclosure(
        &self,
        platform: &PlatformId,
        attributes: Attributes,
        purpose: &str,
        authority: &str,
        basis: &str,
        now: u64,
    ) -> Result<(), Error> {
        if attributes.is_empty() {
            return Err(Error::Invalid(
                "an entitlement names at least one attribute".into(),
            ));
        }
        let purpose = recorded_text("purpose", purpose)?;
        let basis = recorded_text("legal basis", basis)?;
        self.edit_platform(platform, Some(authority), |entry| {
            entry.disclosure = Some(DisclosureEntitlement {
                attributes,
                purpose: purpose.to_owned(),
                authority: authority.to_owned(),
                basis: basis.to_owned(),
                granted_at: now,
            });
            Ok(())
        })
    }

    /// Withdraws a platform's entitlement to attributes: its answers carry the result only
    /// (from the nodes' next credentials reload), whatever holders consented to.
    pub fn withdraw_disclosure(&self, platform: &PlatformId) -> Result<(), Error> {
        self.edit_platform(platform, None, |entry| match entry.disclosure.take() {
            Some(_) => Ok(()),
            None => Err(Error::NotFound(format!(
                "platform {platform} is not entitled to any attribute"
            ))),
        })
    }

    /// Withdraws a platform's entitlement to Web Numbers: its results name holders by their
    /// pairwise subject again (from the nodes' next credentials reload).
    pub fn withdraw_web_number(&self, platform: &PlatformId) -> Result<(), Error> {
        self.edit_platform(platform, None, |entry| match entry.web_number.take() {
            Some(_) => Ok(()),
            None => Err(Error::NotFound(format!(
                "platform {platform} is not entitled to Web Numbers"
            ))),
        })
    }

    /// Gives an existing platform, authority or enrollment agent one more API key (for
    /// rotation).
    pub fn add_api_key(
        &self,
        principal: &str,
        kind: PrincipalKind,
        now: u64,
    ) -> Result<String, Error> {
        let _lock = self.lock()?;
        let mut file: CredentialsFile = self.read_toml(CREDENTIALS)?;
        let secret = self.credential_secret()?;
        let keys = file
            .keys_of(kind, principal)
            .ok_or_else(|| Error::NotFound(format!("no such {}: {principal}", kind.name())))?;
        let key = new_key(&secret, kind.prefix(), now)?;
        keys.push(key.stored);
        self.write_toml(CREDENTIALS, &file)?;
        Ok(key.api_key)
    }

    /// Removes one API key by its id (the hex between the prefix and the secret).
    pub fn revoke_api_key(&self, key_id: &str) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut file: CredentialsFile = self.read_toml(CREDENTIALS)?;
        let mut found = false;
        for keys in file
            .platforms
            .iter_mut()
            .map(|p| &mut p.keys)
            .chain(file.authorities.iter_mut().map(|a| &mut a.keys))
            .chain(file.agents.iter_mut().map(|a| &mut a.keys))
        {
            let before = keys.len();
            keys.retain(|k| k.id != key_id);
            found |= keys.len() != before;
        }
        if !found {
            return Err(Error::NotFound(format!("no API key with id {key_id}")));
        }
        self.write_toml(CREDENTIALS, &file)
    }

    /// Removes a platform, an authority or an enrollment agent with all its keys.
    pub fn remove_principal(&self, principal: &str, kind: PrincipalKind) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut file: CredentialsFile = self.read_toml(CREDENTIALS)?;
        let before = file.principals();
        match kind {
            PrincipalKind::Platform => file.platforms.retain(|p| p.id.as_str() != principal),
            PrincipalKind::Authority => file.authorities.retain(|a| a.id != principal),
            PrincipalKind::EnrollmentAgent => file.agents.retain(|a| a.id != principal),
        }
        if file.principals() == before {
            return Err(Error::NotFound(format!(
                "no such {}: {principal}",
                kind.name()
            )));
        }
        self.write_toml(CREDENTIALS, &file)
    }

    /// Registers an authority; returns its first API key, which is not stored anywhere.
    pub fn add_authority(&self, id: &str, now: u64) -> Result<String, Error> {
        self.add_named(id, PrincipalKind::Authority, now)
    }

    /// Registers an enrollment agent (the official app's back end, which read the card's chip
    /// and checked the live face); returns its first API key, which is not stored anywhere.
    pub fn add_enrollment_agent(&self, id: &str, now: u64) -> Result<String, Error> {
        self.add_named(id, PrincipalKind::EnrollmentAgent, now)
    }

    fn add_named(&self, id: &str, kind: PrincipalKind, now: u64) -> Result<String, Error> {
        // The name is recorded as the actor in the audit trail, which takes these characters.
        let valid = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid {
            return Err(Error::Invalid(format!(
                "an {} id is 1 to 64 characters from letters, digits, '.', '_' and '-'",
                kind.name()
            )));
        }
        let _lock = self.lock()?;
        let mut file: CredentialsFile = self.read_toml(CREDENTIALS)?;
        if file.keys_of(kind, id).is_some() {
            return Err(Error::Exists(format!("{} {id} exists", kind.name())));
        }
        let key = new_key(&self.credential_secret()?, kind.prefix(), now)?;
        let entry = AuthorityEntry {
            id: id.to_owned(),
            keys: vec![key.stored],
        };
        match kind {
            PrincipalKind::Authority => file.authorities.push(entry),
            PrincipalKind::EnrollmentAgent => file.agents.push(entry),
            PrincipalKind::Platform => {
                return Err(Error::Invalid(
                    "platforms are added with their scopes".into(),
                ));
            }
        }
        self.write_toml(CREDENTIALS, &file)?;
        Ok(key.api_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (tempfile::TempDir, DataDir) {
        crate::temp_data_dir()
    }

    #[test]
    fn the_file_holds_no_usable_secret() {
        let (_temp, dir) = fixture();
        let key = dir
            .add_platform(&"a".parse().unwrap(), &[Scope::Verify], None, 1)
            .unwrap();
        let text = std::fs::read_to_string(dir.credentials_path()).unwrap();
        let secret_part = key.rsplit('_').next().unwrap();
        assert!(!text.contains(secret_part));
    }

    #[test]
    fn an_entitlement_names_an_authority_and_a_basis_and_can_be_withdrawn() {
        let (_temp, dir) = fixture();
        let bank: PlatformId = "bank".parse().unwrap();
        dir.add_platform(&bank, &[Scope::Verify], None, 1).unwrap();
        let refused = |authority: &str, basis: &str| {
            dir.entitle_web_number(&bank, authority, basis, 2)
                .unwrap_err()
                .code()
        };
        assert_eq!(refused("ops", "AML rules art. 16"), "not_found");
        dir.add_authority("ops", 1).unwrap();
        assert_eq!(refused("ops", "  "), "config");
        assert_eq!(refused("ops", "line\nbreak"), "config");
        assert_eq!(refused("ops", &"x".repeat(201)), "config");
        assert_eq!(
            dir.entitle_web_number(&"shop".parse().unwrap(), "ops", "basis", 2)
                .unwrap_err()
                .code(),
            "not_found"
        );

        dir.entitle_web_number(&bank, "ops", " AML rules art. 16 ", 2)
            .unwrap();
        let entry = dir.credentials().unwrap().platforms[0].clone();
        assert_eq!(
            entry.web_number,
            Some(WebNumberEntitlement {
                authority: "ops".into(),
                basis: "AML rules art. 16".into(),
                granted_at: 2,
            })
        );
        dir.withdraw_web_number(&bank).unwrap();
        assert_eq!(dir.credentials().unwrap().platforms[0].web_number, None);
        assert_eq!(
            dir.withdraw_web_number(&bank).unwrap_err().code(),
            "not_found"
        );
    }

    #[test]
    fn a_disclosure_entitlement_names_attributes_a_purpose_and_a_basis() {
        use cyberid_engine::Attribute;
        let (_temp, dir) = fixture();
        let bank: PlatformId = "bank".parse().unwrap();
        let name = Attributes::of(&[Attribute::Name]);
        dir.add_platform(&bank, &[Scope::Verify], None, 1).unwrap();
        dir.add_authority("ops", 1).unwrap();
        let refused = |attributes, purpose: &str, basis: &str| {
            dir.entitle_disclosure(&bank, attributes, purpose, "ops", basis, 2)
                .unwrap_err()
                .code()
        };
        assert_eq!(
            refused(Attributes::NONE, "account opening", "basis"),
            "config"
        );
        assert_eq!(refused(name, " ", "basis"), "config");
        assert_eq!(refused(name, "account opening", "tab\there"), "config");
        dir.entitle_disclosure(&bank, name, " account opening ", "ops", "AML art. 7", 2)
            .unwrap();
        // Kept as written to the file, and read back the same.
        assert_eq!(
            dir.credentials().unwrap().platforms[0].disclosure,
            Some(DisclosureEntitlement {
                attributes: name,
                purpose: "account opening".into(),
                authority: "ops".into(),
                basis: "AML art. 7".into(),
                granted_at: 2,
            })
        );
        dir.withdraw_disclosure(&bank).unwrap();
        assert_eq!(dir.credentials().unwrap().platforms[0].disclosure, None);
        assert_eq!(
            dir.withdraw_disclosure(&bank).unwrap_err().code(),
            "not_found"
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let (_temp, dir) = fixture();
        let shop: PlatformId = "shop".parse().unwrap();
        dir.add_platform(&shop, &[Scope::Verify], None, 1).unwrap();
        assert_eq!(
            dir.add_platform(&shop, &[Scope::Verify], None, 1)
                .unwrap_err()
                .code(),
            "exists"
        );
        dir.add_authority("ops", 1).unwrap();
        assert_eq!(dir.add_authority("ops", 1).unwrap_err().code(), "exists");
        let agent = dir.add_enrollment_agent("ops", 1).unwrap();
        assert!(
            agent.starts_with(AGENT_PREFIX),
            "an agent may share an authority's name"
        );
        assert_eq!(
            dir.add_enrollment_agent("ops", 1).unwrap_err().code(),
            "exists"
        );
        dir.remove_principal("ops", PrincipalKind::EnrollmentAgent)
            .unwrap();
        assert_eq!(dir.credentials().unwrap().authorities.len(), 1);
        assert_eq!(
            dir.add_authority("bad name", 1).unwrap_err().code(),
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
