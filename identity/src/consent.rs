//! A holder's standing consent to disclose attributes to one platform for one purpose, and
//! the device-signed request that grants, withdraws or lists such consents.
//!
//! Consent is separate from the entitlement an authority registers for a platform (which
//! attributes, for what purpose, on what legal basis): a platform's valid answer carries an
//! attribute only when both exist. A consent names the entitlement's purpose by its
//! [`Purpose`] digest, so an entitlement re-registered for another purpose needs consent
//! again, while one renewed for the same purpose keeps it.
//!
//! The signed form of a request (protocol.md §13):
//!
//! ```text
//! "CYBERID-HOLDER-CONSENT-1" (24) || web_number (10) || platform (16, NUL-padded; all NUL to
//! list) || action (1: 0 list, 1 grant, 2 withdraw) || attributes (1: bit 0 name, bit 1
//! resident id; 0 unless granting) || purpose (32: the purpose digest; all zero unless
//! granting) || issued_at (u64 BE, Unix seconds) || nonce (16)
//! ```
//!
//! SM2 with the default ID by the holder's enrolled device key, good once (its nonce is
//! consumed under its own domain) and only within the request window.

use std::fmt;

use cyberid_engine::{Attributes, NonceClaim, PlatformId, WebNumber};
use sm3::{Digest, Sm3};

use crate::holder::{
    DeviceKey, DeviceSigningKey, decode_nonce_and_signature, one_time_claim, verify_fresh,
};
use crate::{Error, REQUEST_NONCE_LEN};

const TAG: &[u8; 24] = b"CYBERID-HOLDER-CONSENT-1";
/// Bytes in a consent request's signed form.
pub const CONSENT_REQUEST_LEN: usize = 24 + 10 + 16 + 1 + 1 + 32 + 8 + REQUEST_NONCE_LEN;
const PURPOSE_DOMAIN: &[u8] = b"cyberid-purpose-1\0";

/// What an entitlement's purpose is named by in a consent: `SM3("cyberid-purpose-1" || 0x00
/// || purpose)`, over the purpose's UTF-8 text exactly as registered.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Purpose([u8; 32]);

impl Purpose {
    /// The digest of a purpose's text.
    pub fn of(text: &str) -> Self {
        Self(
            Sm3::new()
                .chain_update(PURPOSE_DOMAIN)
                .chain_update(text.as_bytes())
                .finalize()
                .into(),
        )
    }

    /// A digest from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Its 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Purpose({})", hex::encode(&self.0[..8]))
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::str::FromStr for Purpose {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|_| Error::HolderRequest("a purpose digest is 64 hexadecimal digits"))?;
        Ok(Self(bytes))
    }
}

impl serde::Serialize for Purpose {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Purpose {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A holder's standing consent to one platform, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StandingConsent {
    /// The platform.
    pub platform: PlatformId,
    /// What it may be told (never empty).
    pub attributes: Attributes,
    /// The purpose the holder agreed to.
    pub purpose: Purpose,
    /// When, Unix seconds.
    pub given_at: u64,
}

/// Bytes of a stored consent's value: attributes, purpose, time.
const STORED_LEN: usize = 1 + 32 + 8;

impl StandingConsent {
    /// The stored value (the platform and holder are in the key): attributes (1) || purpose
    /// (32) || given_at (u64 BE).
    pub fn encode(&self) -> [u8; STORED_LEN] {
        let mut bytes = [0u8; STORED_LEN];
        bytes[0] = self.attributes.bits();
        bytes[1..33].copy_from_slice(self.purpose.as_bytes());
        bytes[33..].copy_from_slice(&self.given_at.to_be_bytes());
        bytes
    }

    /// Reads a stored value back.
    pub fn decode(platform: PlatformId, bytes: &[u8]) -> Result<Self, Error> {
        let bytes: &[u8; STORED_LEN] = bytes
            .try_into()
            .map_err(|_| Error::Corrupt("a stored consent is not 41 bytes"))?;
        let attributes = Attributes::from_bits(bytes[0])
            .filter(|a| !a.is_empty())
            .ok_or(Error::Corrupt("a stored consent names no known attribute"))?;
        let mut purpose = [0u8; 32];
        purpose.copy_from_slice(&bytes[1..33]);
        let mut given_at = [0u8; 8];
        given_at.copy_from_slice(&bytes[33..]);
        Ok(Self {
            platform,
            attributes,
            purpose: Purpose(purpose),
            given_at: u64::from_be_bytes(given_at),
        })
    }
}

/// What a consent request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentAction {
    /// Lists the holder's standing consents; changes nothing.
    List,
    /// Consents to disclose these attributes (not empty) to the platform for this purpose,
    /// replacing any earlier consent to it.
    Grant {
        /// The platform.
        platform: PlatformId,
        /// What it may be told.
        attributes: Attributes,
        /// The purpose of its entitlement, as the holder's app showed it.
        purpose: Purpose,
    },
    /// Withdraws the consent to the platform, at once.
    Withdraw {
        /// The platform.
        platform: PlatformId,
    },
}

/// A holder's consent request, before or after signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentRequest {
    /// The holder.
    pub web_number: WebNumber,
    /// What it does.
    pub action: ConsentAction,
    /// When the device signed it, Unix seconds.
    pub issued_at: u64,
    /// 16 random bytes: the request is good once.
    pub nonce: [u8; REQUEST_NONCE_LEN],
}

impl ConsentRequest {
    /// A request signed now with a fresh nonce.
    pub fn new(
        web_number: WebNumber,
        action: ConsentAction,
        issued_at: u64,
    ) -> Result<Self, Error> {
        let mut nonce = [0u8; REQUEST_NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| Error::Random)?;
        Ok(Self {
            web_number,
            action,
            issued_at,
            nonce,
        })
    }

    /// The exact bytes the device signs.
    pub fn signed_bytes(&self) -> [u8; CONSENT_REQUEST_LEN] {
        let (platform, code, attributes, purpose) = match self.action {
            ConsentAction::List => (None, 0, Attributes::NONE, [0; 32]),
            ConsentAction::Grant {
                platform,
                attributes,
                purpose,
            } => (Some(platform), 1, attributes, purpose.0),
            ConsentAction::Withdraw { platform } => (Some(platform), 2, Attributes::NONE, [0; 32]),
        };
        let mut bytes = [0u8; CONSENT_REQUEST_LEN];
        bytes[..24].copy_from_slice(TAG);
        bytes[24..34].copy_from_slice(self.web_number.as_bytes());
        if let Some(platform) = platform {
            bytes[34..50].copy_from_slice(platform.audience_field());
        }
        bytes[50] = code;
        bytes[51] = attributes.bits();
        bytes[52..84].copy_from_slice(&purpose);
        bytes[84..92].copy_from_slice(&self.issued_at.to_be_bytes());
        bytes[92..].copy_from_slice(&self.nonce);
        bytes
    }

    /// Signs it with the holder's device key.
    pub fn sign(self, key: &DeviceSigningKey) -> Result<SignedConsentRequest, Error> {
        Ok(SignedConsentRequest {
            signature: key.sign(&self.signed_bytes())?,
            request: self,
        })
    }
}

/// A consent request with its device signature, as the holder's app sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedConsentRequest {
    request: ConsentRequest,
    signature: [u8; 64],
}

impl SignedConsentRequest {
    /// The request, not yet checked: only its Web Number may be used, to find the device key.
    pub fn unverified(&self) -> &ConsentRequest {
        &self.request
    }

    /// Checks its time and its signature against the holder's enrolled device key.
    pub fn verify(
        &self,
        device: &DeviceKey,
        now: u64,
        window: u64,
    ) -> Result<&ConsentRequest, Error> {
        verify_fresh(
            device,
            &self.request.signed_bytes(),
            &self.signature,
            self.request.issued_at,
            now,
            window,
        )?;
        Ok(&self.request)
    }

    /// The claim that makes the request good once.
    pub fn nonce_claim(&self, window: u64) -> NonceClaim {
        one_time_claim(
            b"cyberid-holder-consent-1\0",
            &self.request.web_number,
            &self.request.nonce,
            self.request.issued_at,
            window,
        )
    }
}

/// The action's name on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentActionName {
    /// [`ConsentAction::List`].
    List,
    /// [`ConsentAction::Grant`].
    Grant,
    /// [`ConsentAction::Withdraw`].
    Withdraw,
}

/// The wire form of a signed consent request (JSON).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequestBody {
    /// The holder.
    pub web_number: WebNumber,
    /// `list`, `grant` or `withdraw`.
    pub action: ConsentActionName,
    /// The platform (grant and withdraw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformId>,
    /// The attributes consented to (grant).
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
    /// The purpose digest, 64 hexadecimal digits (grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<Purpose>,
    /// Unix seconds.
    pub issued_at: u64,
    /// 32 hexadecimal digits.
    pub nonce: String,
    /// `r || s`, 128 hexadecimal digits.
    pub signature: String,
}

impl TryFrom<ConsentRequestBody> for SignedConsentRequest {
    type Error = Error;

    fn try_from(body: ConsentRequestBody) -> Result<Self, Error> {
        let (nonce, signature) = decode_nonce_and_signature(&body.nonce, &body.signature)?;
        let action = match (body.action, body.platform, body.attributes, body.purpose) {
            (ConsentActionName::List, None, attributes, None) if attributes.is_empty() => {
                ConsentAction::List
            }
            (ConsentActionName::Grant, Some(platform), attributes, Some(purpose))
                if !attributes.is_empty() =>
            {
                ConsentAction::Grant {
                    platform,
                    attributes,
                    purpose,
                }
            }
            (ConsentActionName::Withdraw, Some(platform), attributes, None)
                if attributes.is_empty() =>
            {
                ConsentAction::Withdraw { platform }
            }
            _ => {
                return Err(Error::HolderRequest(
                    "list takes no platform, attributes or purpose; grant takes a platform, \
                     attributes and a purpose; withdraw takes a platform only",
                ));
            }
        };
        Ok(Self {
            request: ConsentRequest {
                web_number: body.web_number,
                action,
                issued_at: body.issued_at,
                nonce,
            },
            signature,
        })
    }
}

impl From<&SignedConsentRequest> for ConsentRequestBody {
    fn from(signed: &SignedConsentRequest) -> Self {
        let request = &signed.request;
        let (action, platform, attributes, purpose) = match request.action {
            ConsentAction::List => (ConsentActionName::List, None, Attributes::NONE, None),
            ConsentAction::Grant {
                platform,
                attributes,
                purpose,
            } => (
                ConsentActionName::Grant,
                Some(platform),
                attributes,
                Some(purpose),
            ),
            ConsentAction::Withdraw { platform } => (
                ConsentActionName::Withdraw,
                Some(platform),
                Attributes::NONE,
                None,
            ),
        };
        Self {
            web_number: request.web_number,
            action,
            platform,
            attributes,
            purpose,
            issued_at: request.issued_at,
            nonce: hex::encode(request.nonce),
            signature: hex::encode(signed.signature),
        }
    }
}

#[cfg(test)]
mod tests {
    use cyberid_engine::Attribute;

    use super::*;

    const NOW: u64 = 1_796_000_000;

    fn grant() -> ConsentAction {
        ConsentAction::Grant {
            platform: "bank.example".parse().unwrap(),
            attributes: Attributes::of(&[Attribute::Name]),
            purpose: Purpose::of("account opening"),
        }
    }

    #[test]
    fn every_field_is_signed_and_the_wire_form_round_trips() {
        let device = DeviceSigningKey::generate().unwrap();
        let holder = WebNumber::generate().unwrap();
        let signed = ConsentRequest::new(holder, grant(), NOW)
            .unwrap()
            .sign(&device)
            .unwrap();
        let key = device.public_key();
        assert!(signed.verify(&key, NOW + 5, 60).is_ok());
        let back = SignedConsentRequest::try_from(ConsentRequestBody::from(&signed)).unwrap();
        assert_eq!(back, signed);
        let changes: [fn(&mut ConsentRequest); 6] = [
            |r| r.web_number = WebNumber::generate().unwrap(),
            |r| r.action = ConsentAction::List,
            |r| {
                r.action = ConsentAction::Withdraw {
                    platform: "bank.example".parse().unwrap(),
                }
            },
            |r| {
                if let ConsentAction::Grant { purpose, .. } = &mut r.action {
                    *purpose = Purpose::of("marketing");
                }
            },
            |r| r.issued_at += 1,
            |r| r.nonce[0] ^= 1,
        ];
        for change in changes {
            let mut forged = signed;
            change(&mut forged.request);
            assert_eq!(
                forged.verify(&key, NOW, 60).unwrap_err(),
                Error::DeviceSignature
            );
        }
        assert!(matches!(
            signed.verify(&key, NOW + 61, 60),
            Err(Error::Stale { .. })
        ));
    }

    #[test]
    fn each_action_takes_exactly_its_fields() {
        let device = DeviceSigningKey::generate().unwrap();
        let holder = WebNumber::generate().unwrap();
        let signed = ConsentRequest::new(holder, grant(), NOW)
            .unwrap()
            .sign(&device)
            .unwrap();
        let body = ConsentRequestBody::from(&signed);
        let mut no_purpose = body.clone();
        no_purpose.purpose = None;
        let mut nothing = body.clone();
        nothing.attributes = Attributes::NONE;
        let mut list_with_platform = body.clone();
        list_with_platform.action = ConsentActionName::List;
        let mut withdraw_with_attributes = body;
        withdraw_with_attributes.action = ConsentActionName::Withdraw;
        withdraw_with_attributes.purpose = None;
        for bad in [
            no_purpose,
            nothing,
            list_with_platform,
            withdraw_with_attributes,
        ] {
            assert!(matches!(
                SignedConsentRequest::try_from(bad),
                Err(Error::HolderRequest(_))
            ));
        }
    }

    #[test]
    fn a_stored_consent_round_trips_and_a_damaged_one_is_refused() {
        let consent = StandingConsent {
            platform: "bank.example".parse().unwrap(),
            attributes: Attributes::of(&Attribute::ALL),
            purpose: Purpose::of("account opening"),
            given_at: NOW,
        };
        let bytes = consent.encode();
        assert_eq!(
            StandingConsent::decode(consent.platform, &bytes).unwrap(),
            consent
        );
        assert!(StandingConsent::decode(consent.platform, &bytes[1..]).is_err());
        let mut unknown = bytes;
        unknown[0] = 0b100;
        assert!(StandingConsent::decode(consent.platform, &unknown).is_err());
        unknown[0] = 0;
        assert!(StandingConsent::decode(consent.platform, &unknown).is_err());
    }

    #[test]
    fn purposes_are_domain_separated_digests_of_the_exact_text() {
        assert_ne!(Purpose::of("a"), Purpose::of("a "));
        let digest: [u8; 32] = Sm3::digest(b"a").into();
        assert_ne!(Purpose::of("a").as_bytes(), &digest);
        let text = Purpose::of("a").to_string();
        assert_eq!(text.parse::<Purpose>().unwrap(), Purpose::of("a"));
    }
}
