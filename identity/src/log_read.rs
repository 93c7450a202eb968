//! A holder's request to read their own authentication log, signed by their enrolled device
//! key. The signed form (protocol.md §12, holder reads):
//!
//! ```text
//! "CYBERID-HOLDER-LOG-1" (20) || web_number (10) || from (u64 BE, the first log index
//! wanted) || issued_at (u64 BE, Unix seconds) || nonce (16)
//! ```
//!
//! SM2 with the default ID, good once (its nonce is consumed like a certificate request's,
//! under its own domain) and only within the request window.

use cyberid_engine::{NonceClaim, WebNumber};

use crate::holder::{
    DeviceKey, DeviceSigningKey, decode_nonce_and_signature, one_time_claim, verify_fresh,
};
use crate::{Error, REQUEST_NONCE_LEN};

const TAG: &[u8; 20] = b"CYBERID-HOLDER-LOG-1";
/// Bytes in a log read's signed form.
pub const LOG_READ_LEN: usize = 20 + 10 + 8 + 8 + REQUEST_NONCE_LEN;

/// What a holder asks to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRead {
    /// The holder.
    pub web_number: WebNumber,
    /// The first log index wanted (0 for all; the last index seen plus one to page on).
    pub from: u64,
    /// When the device signed it, Unix seconds.
    pub issued_at: u64,
    /// 16 random bytes: the read is good once.
    pub nonce: [u8; REQUEST_NONCE_LEN],
}

impl LogRead {
    /// A read signed now with a fresh nonce.
    pub fn new(web_number: WebNumber, from: u64, issued_at: u64) -> Result<Self, Error> {
        let mut nonce = [0u8; REQUEST_NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| Error::Random)?;
        Ok(Self {
            web_number,
            from,
            issued_at,
            nonce,
        })
    }

    /// The exact bytes the device signs.
    pub fn signed_bytes(&self) -> [u8; LOG_READ_LEN] {
        let mut bytes = [0u8; LOG_READ_LEN];
        bytes[..20].copy_from_slice(TAG);
        bytes[20..30].copy_from_slice(self.web_number.as_bytes());
        bytes[30..38].copy_from_slice(&self.from.to_be_bytes());
        bytes[38..46].copy_from_slice(&self.issued_at.to_be_bytes());
        bytes[46..].copy_from_slice(&self.nonce);
        bytes
    }

    /// Signs it with the holder's device key.
    pub fn sign(self, key: &DeviceSigningKey) -> Result<SignedLogRead, Error> {
        Ok(SignedLogRead {
            signature: key.sign(&self.signed_bytes())?,
            read: self,
        })
    }
}

/// A log read with its device signature, as the holder's app sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedLogRead {
    read: LogRead,
    signature: [u8; 64],
}

impl SignedLogRead {
    /// The read, not yet checked: only its Web Number may be used, to find the device key.
    pub fn unverified(&self) -> &LogRead {
        &self.read
    }

    /// Checks its time and its signature against the holder's enrolled device key.
    pub fn verify(&self, device: &DeviceKey, now: u64, window: u64) -> Result<&LogRead, Error> {
        verify_fresh(
            device,
            &self.read.signed_bytes(),
            &self.signature,
            self.read.issued_at,
            now,
            window,
        )?;
        Ok(&self.read)
    }

    /// The claim that makes the read good once.
    pub fn nonce_claim(&self, window: u64) -> NonceClaim {
        one_time_claim(
            b"cyberid-holder-log-1\0",
            &self.read.web_number,
            &self.read.nonce,
            self.read.issued_at,
            window,
        )
    }
}

/// The wire form of a signed log read (JSON).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogReadBody {
    /// The holder.
    pub web_number: WebNumber,
    /// The first log index wanted.
    #[serde(default)]
    pub from: u64,
    /// Unix seconds.
    pub issued_at: u64,
    /// 32 hexadecimal digits.
    pub nonce: String,
    /// `r || s`, 128 hexadecimal digits.
    pub signature: String,
}

impl TryFrom<LogReadBody> for SignedLogRead {
    type Error = Error;

    fn try_from(body: LogReadBody) -> Result<Self, Error> {
        let (nonce, signature) = decode_nonce_and_signature(&body.nonce, &body.signature)?;
        Ok(Self {
            read: LogRead {
                web_number: body.web_number,
                from: body.from,
                issued_at: body.issued_at,
                nonce,
            },
            signature,
        })
    }
}

impl From<&SignedLogRead> for LogReadBody {
    fn from(signed: &SignedLogRead) -> Self {
        Self {
            web_number: signed.read.web_number,
            from: signed.read.from,
            issued_at: signed.read.issued_at,
            nonce: hex::encode(signed.read.nonce),
            signature: hex::encode(signed.signature),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_796_000_000;

    #[test]
    fn only_the_enrolled_device_reads_and_only_while_fresh() {
        let device = DeviceSigningKey::generate().unwrap();
        let other = DeviceSigningKey::generate().unwrap();
        let holder = WebNumber::generate().unwrap();
        let signed = LogRead::new(holder, 7, NOW).unwrap().sign(&device).unwrap();
        let body = LogReadBody::from(&signed);
        let again = SignedLogRead::try_from(body).unwrap();
        assert_eq!(again, signed);
        assert_eq!(
            signed
                .verify(&device.public_key(), NOW + 5, 60)
                .unwrap()
                .from,
            7
        );
        assert!(matches!(
            signed.verify(&other.public_key(), NOW, 60),
            Err(Error::DeviceSignature)
        ));
        assert!(matches!(
            signed.verify(&device.public_key(), NOW + 61, 60),
            Err(Error::Stale { .. })
        ));
        let mut moved = signed;
        moved.read.from = 0;
        assert!(moved.verify(&device.public_key(), NOW, 60).is_err());
        // A log read's nonce never meets a certificate request's with the same bytes.
        let request = crate::HolderRequest {
            nonce: signed.read.nonce,
            ..crate::HolderRequest::new(holder, crate::Disclose::Nothing, NOW).unwrap()
        }
        .sign(&device)
        .unwrap();
        assert_ne!(
            request.nonce_claim(60).certificate_id,
            signed.nonce_claim(60).certificate_id
        );
    }
}
