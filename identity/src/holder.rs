//! Holders' device keys and the certificate request a holder's app signs with one.
//!
//! The signed form is fixed-layout binary, specified in `docs/protocol.md` (§ Holder requests):
//!
//! ```text
//! "CYBERID-HOLDER-REQUEST-1" (24) || web_number (10) || audience (16, NUL-padded, all NUL
//! for none) || disclose (1: bit 0 the age bracket, bit 2 consent to disclose the name and
//! bit 3 the resident id to the audience, other bits 0) || lifetime (u16 BE, 0 for the default) ||
//! issued_at (u64 BE, Unix seconds) || nonce (16)
//! ```
//!
//! signed with SM2 (default ID `1234567812345678`) by the device key enrolled for the Web
//! Number. A request is good once: its nonce is consumed in the same replay-nonce store as
//! certificates (under an id derived from it, so the two spaces never meet), and it is refused
//! outside a window around the service's time.

use std::fmt;

use cyberid_engine::{
    Attributes, CertificateId, IssuerPublicKey, IssuerSigningKey, NonceClaim, PlatformId, WebNumber,
};
use sm3::{Digest, Sm3};

use crate::Error;

/// A holder's device public key (SM2). Verification uses the general `sm2` crate path: device
/// keys are many and each is used seldom, so no precomputed tables.
#[derive(Clone)]
pub struct DeviceKey(IssuerPublicKey);

impl DeviceKey {
    /// Reads an SPKI PEM public key, as `openssl pkey -pubout` writes it.
    pub fn from_spki_pem(pem: &str) -> Result<Self, Error> {
        IssuerPublicKey::from_spki_pem(pem)
            .map(Self)
            .map_err(|_| Error::DeviceKey)
    }

    /// Reads the stored SEC1 point.
    pub fn from_sec1_bytes(bytes: &[u8]) -> Result<Self, Error> {
        IssuerPublicKey::from_sec1_bytes(bytes)
            .map(Self)
            .map_err(|_| Error::DeviceKey)
    }

    /// The uncompressed SEC1 point, `04 || x || y`, as stored.
    pub fn to_sec1_bytes(&self) -> Box<[u8]> {
        self.0.to_sec1_bytes()
    }

    /// SPKI PEM.
    pub fn to_spki_pem(&self) -> Result<String, Error> {
        self.0.to_spki_pem().map_err(Error::from)
    }

    /// SM3 over the SEC1 point: what a guardian's consent names the child's device by.
    pub fn fingerprint(&self) -> [u8; 32] {
        Sm3::digest(self.to_sec1_bytes()).into()
    }

    /// Checks an SM2 signature `r || s`.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), Error> {
        // Device keys come and go with requests: no per-key tables (IssuerPublicKey::verify_once).
        if self.0.verify_once(message, signature) {
            Ok(())
        } else {
            Err(Error::DeviceSignature)
        }
    }
}

impl PartialEq for DeviceKey {
    fn eq(&self, other: &Self) -> bool {
        self.to_sec1_bytes() == other.to_sec1_bytes()
    }
}

impl Eq for DeviceKey {}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceKey({})", hex::encode(&self.fingerprint()[..8]))
    }
}

/// A holder's device private key: what the holder tool keeps (the app keeps it in the phone's
/// secure element). Signing goes through the RustCrypto `sm2` crate.
#[derive(Debug)]
pub struct DeviceSigningKey(IssuerSigningKey);

impl DeviceSigningKey {
    /// A fresh key.
    pub fn generate() -> Result<Self, Error> {
        Ok(Self(IssuerSigningKey::generate()?))
    }

    /// Reads a PKCS#8 PEM private key, as `openssl genpkey -algorithm SM2` writes it.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Error> {
        Ok(Self(IssuerSigningKey::from_pkcs8_pem(pem)?))
    }

    /// Writes PKCS#8 PEM.
    pub fn to_pkcs8_pem(&self) -> Result<sm2::elliptic_curve::zeroize::Zeroizing<String>, Error> {
        Ok(self.0.to_pkcs8_pem()?)
    }

    /// Reads a raw 32-byte private scalar (for the protocol vectors).
    pub fn from_scalar_bytes(bytes: &[u8; 32]) -> Result<Self, Error> {
        Ok(Self(IssuerSigningKey::from_scalar_bytes(bytes)?))
    }

    /// The public half.
    pub fn public_key(&self) -> DeviceKey {
        DeviceKey(self.0.public_key().clone())
    }

    /// Signs `message`, returning `r || s`.
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], Error> {
        Ok(self.0.sign(message)?)
    }
}

/// What the holder allows the certificate to disclose.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Disclose {
    /// The result only.
    #[default]
    Nothing,
    /// The age bracket (adult or minor), computed from the vault at issue time.
    Age,
}

/// Bytes of the request nonce.
pub const REQUEST_NONCE_LEN: usize = 16;
const REQUEST_TAG: &[u8; 24] = b"CYBERID-HOLDER-REQUEST-1";
/// Bytes in a request's signed form.
pub const REQUEST_LEN: usize = 24 + 10 + 16 + 1 + 2 + 8 + REQUEST_NONCE_LEN;

/// A holder's request for a certificate, before or after signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderRequest {
    /// The holder.
    pub web_number: WebNumber,
    /// The platform the certificate is for; any platform when absent.
    pub audience: Option<PlatformId>,
    /// What the certificate discloses.
    pub disclose: Disclose,
    /// The attributes the holder consents to disclose to the audience, for the purpose its
    /// entitlement states: carried in the certificate's signed claims, and disclosed only where
    /// an authority entitled that platform to them. Needs an audience.
    pub consent: Attributes,
    /// The lifetime asked for, seconds; the service's default when absent.
    pub lifetime: Option<u16>,
    /// When the app signed it, Unix seconds.
    pub issued_at: u64,
    /// 16 random bytes: the request is good once.
    pub nonce: [u8; REQUEST_NONCE_LEN],
}

impl HolderRequest {
    /// A request signed now with a fresh nonce.
    pub fn new(web_number: WebNumber, disclose: Disclose, issued_at: u64) -> Result<Self, Error> {
        let mut nonce = [0u8; REQUEST_NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| Error::Random)?;
        Ok(Self {
            web_number,
            audience: None,
            disclose,
            consent: Attributes::NONE,
            lifetime: None,
            issued_at,
            nonce,
        })
    }

    /// The exact bytes the device signs.
    pub fn signed_bytes(&self) -> [u8; REQUEST_LEN] {
        let mut bytes = [0u8; REQUEST_LEN];
        let mut at = 0;
        let mut put = |field: &[u8]| {
            bytes[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        };
        put(REQUEST_TAG);
        put(self.web_number.as_bytes());
        let mut audience = [0u8; 16];
        if let Some(platform) = &self.audience {
            audience[..platform.as_str().len()].copy_from_slice(platform.as_str().as_bytes());
        }
        put(&audience);
        let age = match self.disclose {
            Disclose::Nothing => 0,
            Disclose::Age => 1,
        };
        put(&[age | self.consent.bits() << 2]);
        put(&self.lifetime.unwrap_or(0).to_be_bytes());
        put(&self.issued_at.to_be_bytes());
        put(&self.nonce);
        bytes
    }

    /// Signs the request with the holder's device key.
    pub fn sign(self, key: &DeviceSigningKey) -> Result<SignedHolderRequest, Error> {
        let signature = key.sign(&self.signed_bytes())?;
        Ok(SignedHolderRequest {
            request: self,
            signature,
        })
    }
}

/// A holder request with its device signature, as the holder's app sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHolderRequest {
    request: HolderRequest,
    signature: [u8; 64],
}

impl SignedHolderRequest {
    /// A request and the signature that came with it (not yet checked).
    pub fn new(request: HolderRequest, signature: [u8; 64]) -> Self {
        Self { request, signature }
    }

    /// The request, whose signature has not been checked: only its Web Number may be used,
    /// to find the device key.
    pub fn unverified(&self) -> &HolderRequest {
        &self.request
    }

    /// The signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// Checks the request's time against `now` (at most `window` seconds old, at most
    /// [`CLOCK_AHEAD`] ahead) and its
    /// signature against the holder's enrolled device key; the request is then trusted.
    /// Consuming its nonce ([`nonce_claim`](Self::nonce_claim)) is the caller's next step.
    pub fn verify(
        &self,
        device: &DeviceKey,
        now: u64,
        window: u64,
    ) -> Result<&HolderRequest, Error> {
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

    /// The claim that makes the request good once: an id derived from the holder and the
    /// nonce, remembered while the request could be presented.
    pub fn nonce_claim(&self, window: u64) -> NonceClaim {
        one_time_claim(
            b"cyberid-holder-request-1\0",
            &self.request.web_number,
            &self.request.nonce,
            self.request.issued_at,
            window,
        )
    }
}

/// Refuses a message more than `window` seconds old or dated more than [`CLOCK_AHEAD`] in the
/// future.
pub(crate) fn fresh(issued_at: u64, now: u64, window: u64) -> Result<(), Error> {
    if issued_at > now.saturating_add(CLOCK_AHEAD) || now > issued_at.saturating_add(window) {
        return Err(Error::Stale { window });
    }
    Ok(())
}

/// How far ahead of the service's clock a signer's clock may be, seconds: the clock skew
/// certificates are allowed (§7 of the protocol). A message can therefore have been presented
/// from this long before its date, which is where its one-time nonce's history must begin.
pub const CLOCK_AHEAD: u64 = 30;

/// Checks a device-signed message: dated within the window ([`fresh`]), then signed by
/// `device` over `bytes`.
pub(crate) fn verify_fresh(
    device: &DeviceKey,
    bytes: &[u8],
    signature: &[u8; 64],
    issued_at: u64,
    now: u64,
    window: u64,
) -> Result<(), Error> {
    fresh(issued_at, now, window)?;
    device.verify(bytes, signature)
}

/// A nonce claim for a one-time signed message dated `issued_at`, presentable from
/// [`CLOCK_AHEAD`] before that until `window` after it: SM3 over a domain tag, the signer and
/// the nonce, truncated to a certificate id. Certificate ids are uniformly random, so a
/// derived id meets one with probability 2^-128.
pub(crate) fn one_time_claim(
    domain: &[u8],
    signer: &WebNumber,
    nonce: &[u8; 16],
    issued_at: u64,
    window: u64,
) -> NonceClaim {
    let usable_from = issued_at.saturating_sub(CLOCK_AHEAD);
    let until = issued_at.saturating_add(window);
    let digest = Sm3::new()
        .chain_update(domain)
        .chain_update(signer.as_bytes())
        .chain_update(nonce)
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    NonceClaim {
        certificate_id: CertificateId::from_bytes(id),
        usable_from,
        expires_at: until,
        retain_until: until,
        request: None,
    }
}

/// A signed message's nonce (32 hex digits) and SM2 signature `r || s` (128 hex digits), as
/// the holder's app sends them.
pub(crate) fn decode_nonce_and_signature(
    nonce: &str,
    signature: &str,
) -> Result<([u8; REQUEST_NONCE_LEN], [u8; 64]), Error> {
    let mut decoded_nonce = [0u8; REQUEST_NONCE_LEN];
    hex::decode_to_slice(nonce, &mut decoded_nonce)
        .map_err(|_| Error::HolderRequest("the nonce is 32 hexadecimal digits"))?;
    let mut decoded_signature = [0u8; 64];
    hex::decode_to_slice(signature, &mut decoded_signature)
        .map_err(|_| Error::HolderRequest("the signature is 128 hexadecimal digits (r || s)"))?;
    Ok((decoded_nonce, decoded_signature))
}

/// The wire form of a signed holder request (JSON).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolderRequestBody {
    /// The holder.
    pub web_number: WebNumber,
    /// The platform, if the certificate is for one only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<PlatformId>,
    /// What to disclose.
    #[serde(default)]
    pub disclose: Disclose,
    /// Attributes the holder consents to disclose to the audience: `["name", "resident_id"]`.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub consent: Attributes,
    /// Lifetime asked for, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<u16>,
    /// Unix seconds.
    pub issued_at: u64,
    /// 32 hexadecimal digits.
    pub nonce: String,
    /// `r || s`, 128 hexadecimal digits.
    pub signature: String,
}

impl TryFrom<HolderRequestBody> for SignedHolderRequest {
    type Error = Error;

    fn try_from(body: HolderRequestBody) -> Result<Self, Error> {
        let (nonce, signature) = decode_nonce_and_signature(&body.nonce, &body.signature)?;
        if body.lifetime == Some(0) {
            return Err(Error::HolderRequest("a lifetime is at least 1 second"));
        }
        if body.audience.is_none() && !body.consent.is_empty() {
            return Err(Error::HolderRequest(
                "consent to disclose is to one platform: name it as the audience",
            ));
        }
        Ok(Self {
            request: HolderRequest {
                web_number: body.web_number,
                audience: body.audience,
                disclose: body.disclose,
                consent: body.consent,
                lifetime: body.lifetime,
                issued_at: body.issued_at,
                nonce,
            },
            signature,
        })
    }
}

impl From<&SignedHolderRequest> for HolderRequestBody {
    fn from(signed: &SignedHolderRequest) -> Self {
        let request = &signed.request;
        Self {
            web_number: request.web_number,
            audience: request.audience,
            disclose: request.disclose,
            consent: request.consent,
            lifetime: request.lifetime,
            issued_at: request.issued_at,
            nonce: hex::encode(request.nonce),
            signature: hex::encode(signed.signature),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cyberid_engine::Attribute;

    const NOW: u64 = 1_796_000_000;

    fn signed(key: &DeviceSigningKey) -> SignedHolderRequest {
        let mut request =
            HolderRequest::new(WebNumber::generate().unwrap(), Disclose::Age, NOW).unwrap();
        request.audience = Some("shop.example".parse().unwrap());
        request.sign(key).unwrap()
    }

    #[test]
    fn the_enrolled_device_signs_and_no_other() {
        let key = DeviceSigningKey::generate().unwrap();
        let request = signed(&key);
        assert!(request.verify(&key.public_key(), NOW + 5, 60).is_ok());
        let other = DeviceSigningKey::generate().unwrap().public_key();
        assert_eq!(
            request.verify(&other, NOW, 60).unwrap_err(),
            Error::DeviceSignature
        );
    }

    #[test]
    fn every_field_is_signed() {
        let key = DeviceSigningKey::generate().unwrap();
        let good = signed(&key);
        let device = key.public_key();
        type Change = Box<dyn Fn(&mut HolderRequest)>;
        let changes: Vec<Change> = vec![
            Box::new(|r| r.web_number = WebNumber::generate().unwrap()),
            Box::new(|r| r.audience = None),
            Box::new(|r| r.disclose = Disclose::Nothing),
            Box::new(|r| r.consent = Attributes::of(&[Attribute::Name])),
            Box::new(|r| r.lifetime = Some(60)),
            Box::new(|r| r.issued_at += 1),
            Box::new(|r| r.nonce[0] ^= 1),
        ];
        for change in changes {
            let mut request = good.unverified().clone();
            change(&mut request);
            let forged = SignedHolderRequest::new(request, *good.signature());
            assert_eq!(
                forged.verify(&device, NOW, 60).unwrap_err(),
                Error::DeviceSignature
            );
        }
    }

    #[test]
    fn a_request_outside_the_window_is_stale() {
        let key = DeviceSigningKey::generate().unwrap();
        let request = signed(&key);
        let device = key.public_key();
        // Up to the window old, up to CLOCK_AHEAD (a phone's clock ahead of the service's)
        // early.
        assert!(request.verify(&device, NOW + 60, 60).is_ok());
        assert!(request.verify(&device, NOW - CLOCK_AHEAD, 60).is_ok());
        assert_eq!(
            request.verify(&device, NOW + 61, 60).unwrap_err(),
            Error::Stale { window: 60 }
        );
        assert_eq!(
            request
                .verify(&device, NOW - CLOCK_AHEAD - 1, 60)
                .unwrap_err(),
            Error::Stale { window: 60 }
        );
    }

    #[test]
    fn the_one_time_id_depends_on_holder_and_nonce() {
        let key = DeviceSigningKey::generate().unwrap();
        let a = signed(&key);
        let b = signed(&key);
        assert_ne!(
            a.nonce_claim(60).certificate_id,
            b.nonce_claim(60).certificate_id
        );
        assert_eq!(a.nonce_claim(60), a.clone().nonce_claim(60));
        let claim = a.nonce_claim(60);
        assert_eq!(
            (claim.usable_from, claim.retain_until),
            (NOW - CLOCK_AHEAD, NOW + 60)
        );
    }

    #[test]
    fn the_wire_form_round_trips_and_refuses_bad_hex() {
        let key = DeviceSigningKey::generate().unwrap();
        let request = signed(&key);
        let body = HolderRequestBody::from(&request);
        let json = serde_json::to_string(&body).unwrap();
        let back: HolderRequestBody = serde_json::from_str(&json).unwrap();
        assert_eq!(SignedHolderRequest::try_from(back).unwrap(), request);
        let mut short = body.clone();
        short.nonce.pop();
        assert!(matches!(
            SignedHolderRequest::try_from(short),
            Err(Error::HolderRequest(_))
        ));
        let mut bad = body;
        bad.signature = "zz".repeat(64);
        assert!(matches!(
            SignedHolderRequest::try_from(bad),
            Err(Error::HolderRequest(_))
        ));
    }
}
