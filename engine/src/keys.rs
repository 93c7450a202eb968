//! Issuer keys: SM2 key pairs, their ids, and the registry of keys a verifier trusts.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use sm2::dsa::signature::{RandomizedSigner, Verifier};
use sm2::elliptic_curve::Generate;
use sm2::elliptic_curve::sec1::ToSec1Point;
use sm2::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use sm3::{Digest, Sm3};

use crate::Error;
use crate::sm2fast::{PreparedKey, UnpreparedKey};

/// The SM2 distinguishing identifier used for every issuer key: the default of GB/T 32918.2 and
/// GM/T 0009, `1234567812345678`.
pub const DEFAULT_SM2_ID: &str = "1234567812345678";

/// Bytes in a key id.
pub(crate) const KEY_ID_LEN: usize = 8;

/// A short issuer key id: the first 8 bytes of SM3 over the key's uncompressed SEC1 point
/// (`04 || x || y`), shown as 16 lower-case hex digits.
///
/// Deriving the id from the key means issuers and verifiers never need to agree on names, and a
/// certificate can never name one key while being checked against another.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    /// The key id of an SM2 public key.
    fn of(public_key: &sm2::PublicKey) -> Self {
        let point = public_key.to_sec1_point(false);
        let digest = Sm3::digest(point.as_bytes());
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Self(id)
    }

    /// A key id from its raw 8 bytes (as stores keep it).
    pub fn from_bytes(bytes: [u8; KEY_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw 8 bytes, as carried in certificates.
    pub fn as_bytes(&self) -> &[u8; KEY_ID_LEN] {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let mut id = [0u8; KEY_ID_LEN];
        hex::decode_to_slice(text, &mut id).map_err(|_| Error::KeyId)?;
        Ok(Self(id))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An issuer's SM2 private key, with the default SM2 ID, ready to sign certificates.
pub struct IssuerSigningKey {
    secret: sm2::SecretKey,
    signer: sm2::dsa::SigningKey,
    public: IssuerPublicKey,
}

impl IssuerSigningKey {
    /// Generates a new key pair from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, Error> {
        let mut rng = getrandom::SysRng;
        let secret = sm2::SecretKey::try_generate_from_rng(&mut rng).map_err(|_| Error::Random)?;
        Self::from_secret(secret)
    }

    /// Reads a PKCS#8 PEM private key, as `openssl genpkey -algorithm SM2` writes it.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Error> {
        let secret =
            sm2::SecretKey::from_pkcs8_pem(pem).map_err(|_| Error::KeyEncoding("private"))?;
        Self::from_secret(secret)
    }

    /// Reads a raw 32-byte big-endian private scalar (for known-answer tests).
    pub fn from_scalar_bytes(bytes: &[u8; 32]) -> Result<Self, Error> {
        let secret =
            sm2::SecretKey::from_slice(bytes).map_err(|_| Error::KeyEncoding("private"))?;
        Self::from_secret(secret)
    }

    fn from_secret(secret: sm2::SecretKey) -> Result<Self, Error> {
        let signer =
            sm2::dsa::SigningKey::new(DEFAULT_SM2_ID, &secret).map_err(|_| Error::Signing)?;
        let public = IssuerPublicKey::from_public(secret.public_key())?;
        Ok(Self {
            secret,
            signer,
            public,
        })
    }

    /// Writes the private key as PKCS#8 PEM, readable by OpenSSL.
    pub fn to_pkcs8_pem(&self) -> Result<sm2::elliptic_curve::zeroize::Zeroizing<String>, Error> {
        self.secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| Error::KeyEncoding("private"))
    }

    /// The matching public key.
    pub fn public_key(&self) -> &IssuerPublicKey {
        &self.public
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.public.key_id
    }

    /// Signs `message` with SM2 (SM3 over `Z_A || message`), returning `r || s`.
    ///
    /// The nonce is RFC 6979-derived and hedged with fresh randomness, so a weak RNG alone
    /// cannot leak the key.
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], Error> {
        let mut rng = getrandom::SysRng;
        let signature: sm2::dsa::Signature = self
            .signer
            .try_sign_with_rng(&mut rng, message)
            .map_err(|_| Error::Signing)?;
        Ok(signature.to_bytes().into())
    }
}

impl fmt::Debug for IssuerSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerSigningKey")
            .field("key_id", &self.public.key_id)
            .finish_non_exhaustive()
    }
}

/// An issuer's SM2 public key, prepared for verification: the point is decoded and `Z_A` for
/// the default SM2 ID is computed once, not per certificate, and on first use (or
/// [`prepare`](Self::prepare)) fixed-base tables are built for the fast path.
#[derive(Clone)]
pub struct IssuerPublicKey {
    key_id: KeyId,
    verifier: sm2::dsa::VerifyingKey,
    /// Shared by clones, so a registry and its callers build the 0.5 MiB tables once.
    fast: Arc<OnceLock<Option<PreparedKey>>>,
}

impl IssuerPublicKey {
    /// Reads an SPKI PEM public key, as `openssl pkey -pubout` writes it.
    pub fn from_spki_pem(pem: &str) -> Result<Self, Error> {
        let public =
            sm2::PublicKey::from_public_key_pem(pem).map_err(|_| Error::KeyEncoding("public"))?;
        Self::from_public(public)
    }

    /// Reads an SEC1-encoded public key point (`04 || x || y`, or compressed).
    pub fn from_sec1_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let public =
            sm2::PublicKey::from_sec1_bytes(bytes).map_err(|_| Error::KeyEncoding("public"))?;
        Self::from_public(public)
    }

    fn from_public(public: sm2::PublicKey) -> Result<Self, Error> {
        let verifier = sm2::dsa::VerifyingKey::new(DEFAULT_SM2_ID, public)
            .map_err(|_| Error::KeyEncoding("public"))?;
        Ok(Self {
            key_id: KeyId::of(&public),
            verifier,
            fast: Arc::default(),
        })
    }

    /// Writes the key as SPKI PEM, readable by OpenSSL.
    pub fn to_spki_pem(&self) -> Result<String, Error> {
        sm2::PublicKey::from_affine(*self.verifier.as_affine())
            .and_then(|public| {
                public
                    .to_public_key_pem(LineEnding::LF)
                    .map_err(|_| sm2::elliptic_curve::Error)
            })
            .map_err(|_| Error::KeyEncoding("public"))
    }

    /// The uncompressed SEC1 point, `04 || x || y`.
    pub fn to_sec1_bytes(&self) -> Box<[u8]> {
        self.verifier.to_sec1_bytes()
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Checks an SM2 signature `r || s` over `message` with the default SM2 ID, on the fast
    /// path (precomputed tables for this key).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        match self.prepared() {
            Some(prepared) => prepared.verify(message, signature),
            None => self.verify_general(message, signature),
        }
    }

    /// Checks a signature on the general path (the RustCrypto `sm2` crate), with no tables:
    /// the reference the fast path is tested against.
    pub fn verify_general(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        // Signature parsing rejects r or s outside [1, n-1] (steps B1 and B2).
        sm2::dsa::Signature::from_slice(signature)
            .is_ok_and(|signature| self.verifier.verify(message, &signature).is_ok())
    }

    /// Checks a signature with the fast field arithmetic but no tables for this key: for a key
    /// that verifies once or rarely (a holder's device key), where building tables (a few
    /// milliseconds) would cost more than it saves. `[s]G` uses G's shared table, `[t]P` a
    /// width-5 NAF. Checked against [`verify_general`](Self::verify_general) like the fast path.
    pub fn verify_once(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let key = self
            .coordinates()
            .and_then(|(x, y)| UnpreparedKey::new(DEFAULT_SM2_ID.as_bytes(), &x, &y));
        match key {
            Some(key) => key.verify(message, signature),
            None => self.verify_general(message, signature),
        }
    }

    /// Builds the fast path's tables now rather than on the first verification (a few
    /// milliseconds, about 0.5 MiB per key).
    pub fn prepare(&self) {
        self.prepared();
    }

    fn prepared(&self) -> Option<&PreparedKey> {
        self.fast
            .get_or_init(|| {
                let (x, y) = self.coordinates()?;
                PreparedKey::new(DEFAULT_SM2_ID.as_bytes(), &x, &y)
            })
            .as_ref()
    }

    /// The point's affine coordinates, big-endian, for the fast paths.
    fn coordinates(&self) -> Option<([u8; 32], [u8; 32])> {
        let point = self.verifier.to_sec1_bytes();
        Some((
            point.get(1..33)?.try_into().ok()?,
            point.get(33..65)?.try_into().ok()?,
        ))
    }
}

impl fmt::Debug for IssuerPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerPublicKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Where a registered key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "since")]
pub enum KeyState {
    /// Signs new certificates; verifies everything it signed.
    Active,
    /// No longer signs. Certificates it issued up to the given Unix time still verify until they
    /// expire; one claiming a later issue time is answered `key_revoked`.
    Retired(u64),
}

/// A verification key and its state.
#[derive(Debug, Clone)]
pub struct RegisteredKey {
    /// The key.
    pub key: IssuerPublicKey,
    /// Its state.
    pub state: KeyState,
}

/// The issuer keys a verifier trusts, by key id.
///
/// Reads are lock-free (one atomic load) because every verification does one; changes, which
/// are rare, copy the small map. Revoking a compromised key is a revocation (see
/// [`RevocationSet`](crate::RevocationSet)), so that it is durable and audited with the rest.
#[derive(Debug, Default)]
pub struct KeyRegistry {
    keys: ArcSwap<HashMap<KeyId, Arc<RegisteredKey>>>,
}

impl KeyRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an active key, preparing its fast-path tables first.
    pub fn insert(&self, key: IssuerPublicKey) -> Result<(), Error> {
        key.prepare();
        let mut result = Ok(());
        self.keys.rcu(|keys| {
            let mut keys = HashMap::clone(keys);
            result = match keys.entry(key.key_id) {
                std::collections::hash_map::Entry::Occupied(_) => {
                    Err(Error::DuplicateKey(key.key_id))
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(Arc::new(RegisteredKey {
                        key: key.clone(),
                        state: KeyState::Active,
                    }));
                    Ok(())
                }
            };
            keys
        });
        result
    }

    /// Retires a key as of `at` (Unix seconds): it keeps verifying what it signed before then.
    /// Returns whether the key was registered.
    pub fn retire(&self, key_id: &KeyId, at: u64) -> bool {
        self.update(key_id, |entry| RegisteredKey {
            key: entry.key.clone(),
            state: KeyState::Retired(at),
        })
    }

    /// Forgets a key, typically once every certificate it signed has expired.
    pub fn remove(&self, key_id: &KeyId) -> bool {
        let mut found = false;
        self.keys.rcu(|keys| {
            let mut keys = HashMap::clone(keys);
            found = keys.remove(key_id).is_some();
            keys
        });
        found
    }

    fn update(&self, key_id: &KeyId, change: impl Fn(&RegisteredKey) -> RegisteredKey) -> bool {
        let mut found = false;
        self.keys.rcu(|keys| {
            let mut keys = HashMap::clone(keys);
            found = match keys.get_mut(key_id) {
                Some(entry) => {
                    *entry = Arc::new(change(entry));
                    true
                }
                None => false,
            };
            keys
        });
        found
    }

    /// Looks a key up.
    pub fn get(&self, key_id: &KeyId) -> Option<Arc<RegisteredKey>> {
        self.keys.load().get(key_id).cloned()
    }

    /// Every registered key, in key-id order.
    pub fn list(&self) -> Vec<Arc<RegisteredKey>> {
        let mut keys: Vec<_> = self.keys.load().values().cloned().collect();
        keys.sort_by_key(|entry| entry.key.key_id);
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_key_id() {
        let key = IssuerSigningKey::generate().unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        let again = IssuerSigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(again.key_id(), key.key_id());
        let public =
            IssuerPublicKey::from_spki_pem(&key.public_key().to_spki_pem().unwrap()).unwrap();
        assert_eq!(public.key_id(), key.key_id());
    }

    #[test]
    fn sign_then_verify_and_reject_other_messages() {
        let key = IssuerSigningKey::generate().unwrap();
        let signature = key.sign(b"message").unwrap();
        assert!(key.public_key().verify(b"message", &signature));
        assert!(!key.public_key().verify(b"messagf", &signature));
        assert!(!key.public_key().verify(b"message", &[0; 64]));
        let other = IssuerSigningKey::generate().unwrap();
        assert!(!other.public_key().verify(b"message", &signature));
    }

    #[test]
    fn key_id_text_round_trips() {
        let key = IssuerSigningKey::generate().unwrap();
        let text = key.key_id().to_string();
        assert_eq!(text.len(), 16);
        assert_eq!(text.parse::<KeyId>().unwrap(), key.key_id());
        assert!("0123".parse::<KeyId>().is_err());
        assert!("zz23456789abcdef".parse::<KeyId>().is_err());
        // Found by the identifiers fuzz target: from_str_radix accepts a sign.
        assert!("11111111111111+6".parse::<KeyId>().is_err());
    }

    #[test]
    fn registry_tracks_state() {
        let registry = KeyRegistry::new();
        let key = IssuerSigningKey::generate().unwrap();
        let id = key.key_id();
        registry.insert(key.public_key().clone()).unwrap();
        assert_eq!(
            registry.insert(key.public_key().clone()),
            Err(Error::DuplicateKey(id))
        );
        assert_eq!(registry.get(&id).unwrap().state, KeyState::Active);
        assert!(registry.retire(&id, 100));
        assert_eq!(registry.get(&id).unwrap().state, KeyState::Retired(100));
        assert_eq!(registry.list().len(), 1);
        assert!(registry.remove(&id));
        assert!(registry.get(&id).is_none());
        assert!(!registry.retire(&id, 5));
    }

    #[test]
    fn garbage_pem_is_a_clear_error() {
        assert_eq!(
            IssuerSigningKey::from_pkcs8_pem("not a key").unwrap_err(),
            Error::KeyEncoding("private")
        );
        assert_eq!(
            IssuerPublicKey::from_spki_pem(
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
            )
            .unwrap_err()
            .code(),
            "key_encoding"
        );
    }
}
