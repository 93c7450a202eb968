//! A guardian's consent to enroll a child under 14, signed with the guardian's device key.
//!
//! ```text
//! "CYBERID-GUARDIAN-CONSENT-1" (26) || guardian web_number (10) || child resident id (18) ||
//! SM3(child device key, SEC1 uncompressed) (32) || issued_at (u64 BE) || nonce (16)
//! ```
//!
//! The consent names the child by the number on the child's card and by the device key being
//! enrolled, so it cannot be moved to another child or another phone; like a holder request it
//! is good once and only near the time it was signed. The signed form travels inside the
//! enrollment request and is not stored: what is kept is the link from child to guardian.

use cyberid_engine::{NonceClaim, WebNumber};

use crate::holder::{CLOCK_AHEAD, one_time_claim};
use crate::{DeviceKey, DeviceSigningKey, Error, ResidentId};

const CONSENT_TAG: &[u8; 26] = b"CYBERID-GUARDIAN-CONSENT-1";
/// Bytes in a consent's signed form.
pub const CONSENT_LEN: usize = 26 + 10 + 18 + 32 + 8 + 16;

/// A guardian's signed consent, as the enrollment request carries it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardianConsent {
    /// The consenting guardian's Web Number.
    pub guardian: WebNumber,
    /// When the guardian's app signed it, Unix seconds.
    pub issued_at: u64,
    /// 32 hexadecimal digits.
    pub nonce: String,
    /// `r || s` by the guardian's device key, 128 hexadecimal digits.
    pub signature: String,
}

impl GuardianConsent {
    /// The exact bytes the guardian's device signs.
    pub fn signed_bytes(
        guardian: &WebNumber,
        child: &ResidentId,
        child_device: &DeviceKey,
        issued_at: u64,
        nonce: &[u8; 16],
    ) -> [u8; CONSENT_LEN] {
        let mut bytes = [0u8; CONSENT_LEN];
        let parts: [&[u8]; 6] = [
            CONSENT_TAG,
            guardian.as_bytes(),
            child.expose().as_bytes(),
            &child_device.fingerprint(),
            &issued_at.to_be_bytes(),
            nonce,
        ];
        let mut at = 0;
        for part in parts {
            bytes[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        bytes
    }

    /// The guardian's app's side: a consent for this child and device, signed now.
    pub fn sign(
        guardian: WebNumber,
        key: &DeviceSigningKey,
        child: &ResidentId,
        child_device: &DeviceKey,
        issued_at: u64,
    ) -> Result<Self, Error> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|_| Error::Random)?;
        let signature = key.sign(&Self::signed_bytes(
            &guardian,
            child,
            child_device,
            issued_at,
            &nonce,
        ))?;
        Ok(Self {
            guardian,
            issued_at,
            nonce: hex::encode(nonce),
            signature: hex::encode(signature),
        })
    }

    fn nonce(&self) -> Result<[u8; 16], Error> {
        let mut nonce = [0u8; 16];
        hex::decode_to_slice(&self.nonce, &mut nonce)
            .map_err(|_| Error::GuardianConsent("the nonce is 32 hexadecimal digits"))?;
        Ok(nonce)
    }

    /// Checks the consent's time and the guardian's signature over this child and device.
    /// Whether the guardian is enrolled, an adult and in good standing is the caller's to check
    /// (it needs the registry); so is consuming [`nonce_claim`](Self::nonce_claim).
    pub fn verify(
        &self,
        guardian_device: &DeviceKey,
        child: &ResidentId,
        child_device: &DeviceKey,
        now: u64,
        window: u64,
    ) -> Result<(), Error> {
        // A consent may be some minutes old (the guardian signs, then the agent enrolls), but
        // never dated further ahead than a phone's clock may be.
        if self.issued_at > now.saturating_add(CLOCK_AHEAD)
            || now > self.issued_at.saturating_add(window)
        {
            return Err(Error::GuardianConsent(
                "it was signed too long ago or in the future",
            ));
        }
        let mut signature = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut signature).map_err(|_| {
            Error::GuardianConsent("the signature is 128 hexadecimal digits (r || s)")
        })?;
        let bytes = Self::signed_bytes(
            &self.guardian,
            child,
            child_device,
            self.issued_at,
            &self.nonce()?,
        );
        guardian_device
            .verify(&bytes, &signature)
            .map_err(|_| Error::GuardianConsent("the guardian's device signature does not verify"))
    }

    /// The claim that makes the consent good once: presentable from [`CLOCK_AHEAD`] before
    /// its date until `window` after it.
    pub fn nonce_claim(&self, window: u64) -> Result<NonceClaim, Error> {
        Ok(one_time_claim(
            b"cyberid-guardian-consent-1\0",
            &self.guardian,
            &self.nonce()?,
            self.issued_at,
            window,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_796_000_000;

    #[test]
    fn a_consent_binds_guardian_child_and_device() {
        let guardian_key = DeviceSigningKey::generate().unwrap();
        let guardian = WebNumber::generate().unwrap();
        let child: ResidentId = crate::resident_id::tests::number("110105", "20150601", "002")
            .parse()
            .unwrap();
        let child_device = DeviceSigningKey::generate().unwrap().public_key();
        let consent =
            GuardianConsent::sign(guardian, &guardian_key, &child, &child_device, NOW).unwrap();
        let device = guardian_key.public_key();
        assert!(
            consent
                .verify(&device, &child, &child_device, NOW + 10, 300)
                .is_ok()
        );

        let other_child: ResidentId =
            crate::resident_id::tests::number("110105", "20150601", "004")
                .parse()
                .unwrap();
        assert!(
            consent
                .verify(&device, &other_child, &child_device, NOW, 300)
                .is_err()
        );
        let other_phone = DeviceSigningKey::generate().unwrap().public_key();
        assert!(
            consent
                .verify(&device, &child, &other_phone, NOW, 300)
                .is_err()
        );
        let stranger = DeviceSigningKey::generate().unwrap().public_key();
        assert!(
            consent
                .verify(&stranger, &child, &child_device, NOW, 300)
                .is_err()
        );
        let mut moved = consent.clone();
        moved.guardian = WebNumber::generate().unwrap();
        assert!(
            moved
                .verify(&device, &child, &child_device, NOW, 300)
                .is_err()
        );
        assert_eq!(
            consent
                .verify(&device, &child, &child_device, NOW + 301, 300)
                .unwrap_err()
                .code(),
            "guardian_consent"
        );
    }
}
