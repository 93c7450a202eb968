//! The authentication log's signing key, in `log/` (SM2, as `openssl genpkey -algorithm SM2`
//! writes it):
//!
//! ```text
//! log/log-key.pem       the private key, PKCS#8 PEM, owner-only
//! log/log-key.pub.pem   its public key, SPKI PEM: what auditors and holders check heads with
//! ```
//!
//! A key of its own, not an issuer key: a tree head is a different statement from a
//! certificate, and the log's key outlives issuer key rotations (every head a holder kept must
//! stay checkable). Made on first use, so a directory made by an earlier build gains it.

use cyberid_engine::{IssuerPublicKey, IssuerSigningKey};

use crate::{DataDir, Error};

const DIRECTORY: &str = "log";
const PRIVATE: &str = "log/log-key.pem";
const PUBLIC: &str = "log/log-key.pub.pem";

impl DataDir {
    /// The log's signing key, made now if this directory has none yet.
    pub fn log_key(&self) -> Result<IssuerSigningKey, Error> {
        if !self.root().join(PUBLIC).exists() {
            let _lock = self.lock()?;
            // Checked again under the lock: another command may have made it meanwhile.
            if !self.root().join(PUBLIC).exists() {
                std::fs::create_dir_all(self.root().join(DIRECTORY))
                    .map_err(Error::io("create the log key directory"))?;
                let key = IssuerSigningKey::generate()?;
                self.write_atomic(PRIVATE, key.to_pkcs8_pem()?.as_bytes(), true)?;
                // The public half goes last: its presence means the private half exists.
                self.write_atomic(PUBLIC, key.public_key().to_spki_pem()?.as_bytes(), false)?;
            }
        }
        let pem = std::fs::read_to_string(self.root().join(PRIVATE))
            .map_err(Error::io(format!("read {PRIVATE}")))?;
        Ok(IssuerSigningKey::from_pkcs8_pem(&pem)?)
    }

    /// The log's public key, as auditors receive it.
    pub fn log_public_key(&self) -> Result<IssuerPublicKey, Error> {
        let pem = std::fs::read_to_string(self.root().join(PUBLIC))
            .map_err(Error::io(format!("read {PUBLIC}")))?;
        Ok(IssuerPublicKey::from_spki_pem(&pem)?)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use crate::DataDir;

    #[test]
    fn the_log_key_is_made_once_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open_or_init(dir.path()).unwrap();
        let key = data.log_key().unwrap();
        assert_eq!(data.log_key().unwrap().key_id(), key.key_id());
        assert_eq!(data.log_public_key().unwrap().key_id(), key.key_id());
        let mode = std::fs::metadata(dir.path().join("log/log-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the private key is owner-only");
    }
}
