//! The identity vault: identity records encrypted with SM4 (GB/T 32907) in GCM mode (as RFC
//! 8998 names it), under envelope encryption.
//!
//! ```text
//! master key (one file, owner-only)          rotates: only the data keys are re-wrapped
//!   └─ wraps data keys, one per generation    (SM4-GCM, AAD binds master id and generation)
//!        └─ seal records                       (SM4-GCM, fresh 96-bit nonce per record,
//!                                               AAD binds the Web Number and the generation)
//! ```
//!
//! Binding a record to its Web Number means a record copied onto another holder's entry does
//! not open; binding a wrapped key to its generation means keys cannot be swapped between
//! generations. Rotating the master key re-wraps a handful of data keys instead of re-encrypting
//! every record; starting a new data key generation makes new and re-sealed records use it.
//!
//! Every secret key is used only through the RustCrypto `sm4` crate (inside `aes-gcm`'s generic
//! GCM), held in memory that is zeroed when dropped.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::AesGcm;
use aes_gcm::aead::array::typenum::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use cyberid_engine::WebNumber;
use sm2::elliptic_curve::zeroize::Zeroizing;
use sm4::Sm4;

use crate::{Error, IdentityDocument};

/// SM4 in GCM mode with a 96-bit nonce and a 128-bit tag.
type Sm4Gcm = AesGcm<Sm4, U12>;

/// Bytes in an SM4 key.
pub const KEY_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Version byte of a sealed record's binary form.
const RECORD_VERSION: u8 = 1;
const RECORD_AAD: &[u8] = b"cyberid-vault-record-1";
const KEY_AAD: &[u8] = b"cyberid-vault-key-1";

fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|_| Error::Random)?;
    Ok(bytes)
}

fn cipher(key: &[u8; KEY_LEN]) -> Sm4Gcm {
    Sm4Gcm::new(key.into())
}

/// A secret SM4 key with its number: the master key (numbered by rotation) or a data key
/// (numbered by generation). `Debug` shows the number only; the bytes are zeroed on drop.
#[derive(Clone)]
pub struct VaultKey {
    id: u32,
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl VaultKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate(id: u32) -> Result<Self, Error> {
        Ok(Self {
            id,
            key: Zeroizing::new(random()?),
        })
    }

    /// A key from its bytes (read from the owner-only key file).
    pub fn from_bytes(id: u32, bytes: &[u8]) -> Result<Self, Error> {
        let key: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::VaultFormat("an SM4 key is 16 bytes"))?;
        Ok(Self {
            id,
            key: Zeroizing::new(key),
        })
    }

    /// The key's number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The key's bytes, for writing the owner-only key file.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    fn key_aad(master: u32, generation: u32) -> [u8; KEY_AAD.len() + 8] {
        let mut aad = [0u8; KEY_AAD.len() + 8];
        aad[..KEY_AAD.len()].copy_from_slice(KEY_AAD);
        aad[KEY_AAD.len()..][..4].copy_from_slice(&master.to_be_bytes());
        aad[KEY_AAD.len() + 4..].copy_from_slice(&generation.to_be_bytes());
        aad
    }

    /// Wraps a data key under this (master) key.
    pub fn wrap(&self, data_key: &VaultKey) -> Result<WrappedKey, Error> {
        let nonce: [u8; NONCE_LEN] = random()?;
        let aad = Self::key_aad(self.id, data_key.id);
        let sealed = cipher(&self.key)
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: data_key.key.as_slice(),
                    aad: &aad,
                },
            )
            .map_err(|_| Error::VaultIntegrity)?;
        let sealed: [u8; KEY_LEN + TAG_LEN] = sealed
            .try_into()
            .map_err(|_| Error::VaultFormat("a wrapped key is 32 bytes"))?;
        Ok(WrappedKey {
            generation: data_key.id,
            master: self.id,
            nonce,
            sealed,
        })
    }

    /// Unwraps a data key wrapped under this (master) key.
    pub fn unwrap_key(&self, wrapped: &WrappedKey) -> Result<VaultKey, Error> {
        if wrapped.master != self.id {
            return Err(Error::VaultKeyUnknown(wrapped.master));
        }
        let aad = Self::key_aad(self.id, wrapped.generation);
        let key = Zeroizing::new(
            cipher(&self.key)
                .decrypt(
                    (&wrapped.nonce).into(),
                    Payload {
                        msg: &wrapped.sealed,
                        aad: &aad,
                    },
                )
                .map_err(|_| Error::VaultIntegrity)?,
        );
        Self::from_bytes(wrapped.generation, &key)
    }
}

impl fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VaultKey({}, ..)", self.id)
    }
}

/// A data key wrapped under a master key: safe to store beside the records (it opens nothing
/// without the master key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The data key's generation.
    pub generation: u32,
    /// The master key it is wrapped under.
    pub master: u32,
    nonce: [u8; NONCE_LEN],
    sealed: [u8; KEY_LEN + TAG_LEN],
}

impl WrappedKey {
    /// Bytes in the binary form.
    pub const LEN: usize = 8 + NONCE_LEN + KEY_LEN + TAG_LEN;

    /// `generation (u32 BE) || master (u32 BE) || nonce (12) || ciphertext and tag (32)`.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut bytes = [0u8; Self::LEN];
        bytes[..4].copy_from_slice(&self.generation.to_be_bytes());
        bytes[4..8].copy_from_slice(&self.master.to_be_bytes());
        bytes[8..8 + NONCE_LEN].copy_from_slice(&self.nonce);
        bytes[8 + NONCE_LEN..].copy_from_slice(&self.sealed);
        bytes
    }

    /// Reads the binary form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != Self::LEN {
            return Err(Error::VaultFormat("a wrapped key is 60 bytes"));
        }
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[8..8 + NONCE_LEN]);
        let mut sealed = [0u8; KEY_LEN + TAG_LEN];
        sealed.copy_from_slice(&bytes[8 + NONCE_LEN..]);
        Ok(Self {
            generation: word(0),
            master: word(4),
            nonce,
            sealed,
        })
    }
}

/// A record sealed in the vault: `version (1) || generation (u32 BE) || nonce (12) ||
/// ciphertext || tag (16)`. Opaque without the vault's keys.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedRecord(Vec<u8>);

impl SealedRecord {
    const HEADER: usize = 1 + 4 + NONCE_LEN;

    /// Reads the stored form, checking its shape (not its integrity: only opening does).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, Error> {
        if bytes.len() < Self::HEADER + TAG_LEN {
            return Err(Error::VaultFormat("a sealed record is too short"));
        }
        if bytes[0] != RECORD_VERSION {
            return Err(Error::VaultFormat("unknown sealed record version"));
        }
        Ok(Self(bytes))
    }

    /// The stored form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The data key generation that sealed it.
    pub fn generation(&self) -> u32 {
        u32::from_be_bytes([self.0[1], self.0[2], self.0[3], self.0[4]])
    }

    fn aad(web_number: &WebNumber, generation: u32) -> Vec<u8> {
        [RECORD_AAD, web_number.as_bytes(), &generation.to_be_bytes()].concat()
    }
}

impl fmt::Debug for SealedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SealedRecord(generation {}, {} bytes)",
            self.generation(),
            self.0.len()
        )
    }
}

/// The unwrapped data keys, sealing with the newest generation and opening with any.
pub struct Vault {
    keys: BTreeMap<u32, Sm4Gcm>,
    current: u32,
}

impl Vault {
    /// Unwraps every data key under `master`; seals with the highest generation.
    pub fn open(master: &VaultKey, wrapped: &[WrappedKey]) -> Result<Self, Error> {
        let mut keys = BTreeMap::new();
        for wrapped in wrapped {
            let key = master.unwrap_key(wrapped)?;
            keys.insert(key.id, cipher(&key.key));
        }
        let current = *keys
            .keys()
            .next_back()
            .ok_or(Error::VaultFormat("the vault holds no data key"))?;
        Ok(Self { keys, current })
    }

    /// The generation new records are sealed with.
    pub fn current_generation(&self) -> u32 {
        self.current
    }

    /// Encrypts `plaintext` for `web_number` under the current generation, with a fresh nonce.
    pub fn seal(&self, web_number: &WebNumber, plaintext: &[u8]) -> Result<SealedRecord, Error> {
        let nonce: [u8; NONCE_LEN] = random()?;
        let aad = SealedRecord::aad(web_number, self.current);
        let cipher = &self.keys[&self.current];
        let ciphertext = cipher
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::VaultIntegrity)?;
        let mut bytes = Vec::with_capacity(SealedRecord::HEADER + ciphertext.len());
        bytes.push(RECORD_VERSION);
        bytes.extend_from_slice(&self.current.to_be_bytes());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&ciphertext);
        Ok(SealedRecord(bytes))
    }

    /// Decrypts a record sealed for `web_number`; refuses a record of another holder, a
    /// tampered one, or one under a key this vault does not hold.
    pub fn open_record(
        &self,
        web_number: &WebNumber,
        record: &SealedRecord,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let generation = record.generation();
        let cipher = self
            .keys
            .get(&generation)
            .ok_or(Error::VaultKeyUnknown(generation))?;
        let bytes = record.as_bytes();
        let nonce: [u8; NONCE_LEN] = bytes[5..SealedRecord::HEADER]
            .try_into()
            .map_err(|_| Error::VaultFormat("a sealed record is too short"))?;
        let aad = SealedRecord::aad(web_number, generation);
        cipher
            .decrypt(
                (&nonce).into(),
                Payload {
                    msg: &bytes[SealedRecord::HEADER..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| Error::VaultIntegrity)
    }

    /// Seals an identity document for its holder.
    pub fn seal_document(
        &self,
        web_number: &WebNumber,
        document: &IdentityDocument,
    ) -> Result<SealedRecord, Error> {
        let plaintext = Zeroizing::new(
            serde_json::to_vec(document)
                .map_err(|_| Error::VaultFormat("a document could not be encoded"))?,
        );
        self.seal(web_number, &plaintext)
    }

    /// Opens a holder's identity document.
    pub fn open_document(
        &self,
        web_number: &WebNumber,
        record: &SealedRecord,
    ) -> Result<IdentityDocument, Error> {
        let plaintext = self.open_record(web_number, record)?;
        serde_json::from_slice(&plaintext)
            .map_err(|_| Error::VaultFormat("a sealed document does not decode"))
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("generations", &self.keys.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish()
    }
}

/// Re-wraps every data key from `old` to `new` master key: the whole of a master key rotation.
/// Records are untouched. All or nothing: an error leaves nothing half-rotated.
pub fn rewrap(
    old: &VaultKey,
    new: &VaultKey,
    wrapped: &[WrappedKey],
) -> Result<Vec<WrappedKey>, Error> {
    wrapped
        .iter()
        .map(|wrapped| new.wrap(&old.unwrap_key(wrapped)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Date;
    use crate::document::tests::fields;
    use sm4::cipher::BlockCipherEncrypt;

    fn vault() -> (VaultKey, Vec<WrappedKey>, Vault) {
        let master = VaultKey::generate(1).unwrap();
        let wrapped = vec![master.wrap(&VaultKey::generate(1).unwrap()).unwrap()];
        let vault = Vault::open(&master, &wrapped).unwrap();
        (master, wrapped, vault)
    }

    #[test]
    fn sm4_known_answer_gb_t_32907() {
        // GB/T 32907-2016 Appendix A, example 1.
        let key = hex::decode("0123456789abcdeffedcba9876543210").unwrap();
        let mut block = sm4::cipher::Block::<Sm4>::try_from(key.as_slice()).unwrap();
        Sm4::new_from_slice(&key).unwrap().encrypt_block(&mut block);
        assert_eq!(hex::encode(block), "681edf34d206965e86b3e94f536e4246");
    }

    #[test]
    fn sm4_gcm_known_answer_rfc_8998() {
        // RFC 8998 Appendix A.1.
        let key: [u8; 16] = hex::decode("0123456789abcdeffedcba9876543210")
            .unwrap()
            .try_into()
            .unwrap();
        let nonce: [u8; 12] = hex::decode("00001234567800000000abcd")
            .unwrap()
            .try_into()
            .unwrap();
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let plaintext = hex::decode(
            "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccdddddddddddddddd\
             eeeeeeeeeeeeeeeeffffffffffffffffeeeeeeeeeeeeeeeeaaaaaaaaaaaaaaaa",
        )
        .unwrap();
        let sealed = cipher(&key)
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .unwrap();
        assert_eq!(
            hex::encode(&sealed),
            "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735\
             d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d\
             83de3541e4c2b58177e065a9bf7b62ec"
        );
    }

    #[test]
    fn a_record_round_trips_for_its_holder_only() {
        let (_, _, vault) = vault();
        let holder = WebNumber::generate().unwrap();
        let document =
            IdentityDocument::check(fields("张伟", "19900315"), Date::new(2026, 12, 1).unwrap())
                .unwrap();
        let sealed = vault.seal_document(&holder, &document).unwrap();
        assert_eq!(vault.open_document(&holder, &sealed).unwrap(), document);

        let other = WebNumber::generate().unwrap();
        assert_eq!(
            vault.open_document(&other, &sealed),
            Err(Error::VaultIntegrity)
        );

        let again = vault.seal_document(&holder, &document).unwrap();
        assert_ne!(again, sealed, "each record has its own nonce");
    }

    #[test]
    fn tampering_anywhere_is_refused() {
        let (_, _, vault) = vault();
        let holder = WebNumber::generate().unwrap();
        let sealed = vault.seal(&holder, b"attributes").unwrap();
        for at in 5..sealed.as_bytes().len() {
            let mut bytes = sealed.as_bytes().to_vec();
            bytes[at] ^= 1;
            let tampered = SealedRecord::from_bytes(bytes).unwrap();
            assert_eq!(
                vault.open_record(&holder, &tampered).unwrap_err(),
                Error::VaultIntegrity,
                "byte {at}"
            );
        }
        let mut generation = sealed.as_bytes().to_vec();
        generation[4] ^= 1;
        let tampered = SealedRecord::from_bytes(generation).unwrap();
        assert_eq!(
            vault.open_record(&holder, &tampered).unwrap_err(),
            Error::VaultKeyUnknown(0)
        );
        assert!(SealedRecord::from_bytes(vec![2; 40]).is_err());
        assert!(SealedRecord::from_bytes(vec![1; 20]).is_err());
    }

    #[test]
    fn a_wrong_master_key_opens_nothing() {
        let (_, wrapped, _) = vault();
        let stranger = VaultKey::generate(1).unwrap();
        assert_eq!(
            Vault::open(&stranger, &wrapped).unwrap_err(),
            Error::VaultIntegrity
        );
        let other_id = VaultKey::generate(2).unwrap();
        assert_eq!(
            Vault::open(&other_id, &wrapped).unwrap_err(),
            Error::VaultKeyUnknown(1)
        );
    }

    #[test]
    fn master_rotation_rewraps_keys_and_leaves_records_alone() {
        let (old, wrapped, vault) = vault();
        let holder = WebNumber::generate().unwrap();
        let sealed = vault.seal(&holder, b"attributes").unwrap();

        let new = VaultKey::generate(2).unwrap();
        let rewrapped = rewrap(&old, &new, &wrapped).unwrap();
        assert!(rewrapped.iter().all(|key| key.master == 2));
        let rotated = Vault::open(&new, &rewrapped).unwrap();
        assert_eq!(
            &*rotated.open_record(&holder, &sealed).unwrap(),
            b"attributes"
        );
        assert!(
            Vault::open(&old, &rewrapped).is_err(),
            "the old master key is no longer needed"
        );

        // A wrapped key moved to another generation does not open.
        let mut moved = WrappedKey::from_bytes(&rewrapped[0].to_bytes()).unwrap();
        moved.generation = 7;
        assert_eq!(new.unwrap_key(&moved).unwrap_err(), Error::VaultIntegrity);
    }

    #[test]
    fn a_new_generation_seals_new_records_and_opens_old_ones() {
        let (master, mut wrapped, vault) = vault();
        let holder = WebNumber::generate().unwrap();
        let old = vault.seal(&holder, b"first").unwrap();
        wrapped.push(master.wrap(&VaultKey::generate(2).unwrap()).unwrap());
        let vault = Vault::open(&master, &wrapped).unwrap();
        assert_eq!(vault.current_generation(), 2);
        let new = vault.seal(&holder, b"second").unwrap();
        assert_eq!((old.generation(), new.generation()), (1, 2));
        assert_eq!(&*vault.open_record(&holder, &old).unwrap(), b"first");
        assert_eq!(&*vault.open_record(&holder, &new).unwrap(), b"second");
    }

    #[test]
    fn debug_shows_no_key_bytes() {
        let key = VaultKey::from_bytes(3, &[0xab; 16]).unwrap();
        assert_eq!(format!("{key:?}"), "VaultKey(3, ..)");
    }
}
