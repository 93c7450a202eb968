//! The Web Certificate (网证): fixed-layout binary form and QR-friendly text form.
//!
//! The layout is specified in `docs/protocol.md`; the constants below are its byte offsets.

use std::fmt;

use crate::keys::KEY_ID_LEN;
use crate::platform::PLATFORM_ID_LEN;
use crate::web_number::WEB_NUMBER_LEN;
use crate::{Attributes, Error, KeyId, PlatformId, WebNumber, base45};

/// The only format version this engine reads and writes.
pub const FORMAT_VERSION: u8 = 1;

/// Bytes in a certificate id.
const CERTIFICATE_ID_LEN: usize = 16;

const VERSION_AT: usize = 0;
const KEY_ID_AT: usize = 1;
const WEB_NUMBER_AT: usize = KEY_ID_AT + KEY_ID_LEN;
const CERTIFICATE_ID_AT: usize = WEB_NUMBER_AT + WEB_NUMBER_LEN;
const ISSUED_AT_AT: usize = CERTIFICATE_ID_AT + CERTIFICATE_ID_LEN;
const LIFETIME_AT: usize = ISSUED_AT_AT + 8;
const ASSURANCE_AT: usize = LIFETIME_AT + 2;
const CLAIMS_AT: usize = ASSURANCE_AT + 1;
const AUDIENCE_AT: usize = CLAIMS_AT + 1;
/// The signed part: every byte before the signature.
pub(crate) const SIGNED_LEN: usize = AUDIENCE_AT + PLATFORM_ID_LEN;
/// Bytes in the binary form: the signed part and the 64-byte signature `r || s`.
pub const CERTIFICATE_LEN: usize = SIGNED_LEN + 64;

/// Prefix of the text form; the digit is the format version.
pub const TEXT_PREFIX: &str = "WZ1:";
/// Characters in the text form.
pub const TEXT_LEN: usize = TEXT_PREFIX.len() + base45::encoded_len(CERTIFICATE_LEN);

/// A certificate's 128-bit random id: the replay nonce.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertificateId([u8; CERTIFICATE_ID_LEN]);

impl CertificateId {
    /// Draws a fresh id from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, Error> {
        let mut id = [0u8; CERTIFICATE_ID_LEN];
        getrandom::fill(&mut id).map_err(|_| Error::Random)?;
        Ok(Self(id))
    }

    /// An id from its 16 bytes.
    pub fn from_bytes(bytes: [u8; CERTIFICATE_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes.
    pub fn as_bytes(&self) -> &[u8; CERTIFICATE_ID_LEN] {
        &self.0
    }
}

impl std::str::FromStr for CertificateId {
    type Err = Error;

    /// Parses 32 hex digits.
    fn from_str(text: &str) -> Result<Self, Error> {
        let mut id = [0u8; CERTIFICATE_ID_LEN];
        hex::decode_to_slice(text, &mut id)
            .map_err(|_| Error::Malformed("a certificate id is 32 hexadecimal digits"))?;
        Ok(Self(id))
    }
}

impl fmt::Display for CertificateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for CertificateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificateId({self})")
    }
}

impl serde::Serialize for CertificateId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CertificateId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How strongly the holder was authenticated when the certificate was issued.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Assurance {
    /// Level 1: Web Number and a registered device.
    Low = 1,
    /// Level 2: level 1 plus a PIN or biometric on the device.
    Substantial = 2,
    /// Level 3: level 2 plus a live face match against the authoritative record.
    High = 3,
}

impl Assurance {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Low),
            2 => Some(Self::Substantial),
            3 => Some(Self::High),
            _ => None,
        }
    }
}

/// The one age fact a platform may be told: a bracket, never a birth date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgeBracket {
    /// Under 18.
    Minor,
    /// 18 or over.
    Adult,
}

/// The claims disclosed to the verifying platform. Anything the holder did not consent to
/// disclose is absent.
///
/// One byte on the wire (protocol.md §3): bits 0-1 the age bracket (0 none, 1 minor, 2
/// adult), bits 2-3 the holder's consent to disclose attributes to the audience (bit 2 name,
/// bit 3 resident id), bits 4-7 zero. Consent is only ever to the one platform a certificate
/// names, so a certificate with consent and no audience is malformed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Claims {
    /// Age bracket, if disclosed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub age: Option<AgeBracket>,
    /// The attributes the holder consented, when asking for this certificate, to disclose to
    /// its audience. Disclosed only where an authority also entitled that platform to them.
    #[serde(skip_serializing_if = "Attributes::is_empty", default)]
    pub consent: Attributes,
}

impl Claims {
    const CONSENT_SHIFT: u32 = 2;

    fn to_byte(self) -> u8 {
        let age = match self.age {
            None => 0,
            Some(AgeBracket::Minor) => 1,
            Some(AgeBracket::Adult) => 2,
        };
        age | self.consent.bits() << Self::CONSENT_SHIFT
    }

    fn from_byte(byte: u8) -> Result<Self, Error> {
        let age = match byte & 0b11 {
            0 => None,
            1 => Some(AgeBracket::Minor),
            2 => Some(AgeBracket::Adult),
            _ => return Err(Error::Malformed("claims byte has an undefined value")),
        };
        let consent = Attributes::from_bits(byte >> Self::CONSENT_SHIFT)
            .ok_or(Error::Malformed("claims byte has an undefined value"))?;
        Ok(Self { age, consent })
    }
}

/// The fields of a certificate, before signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateFields {
    /// The signing key.
    pub key_id: KeyId,
    /// The holder.
    pub web_number: WebNumber,
    /// The replay nonce.
    pub certificate_id: CertificateId,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
    /// Seconds from issue to expiry, at least 1.
    pub lifetime: u16,
    /// How the holder authenticated.
    pub assurance: Assurance,
    /// Disclosed claims.
    pub claims: Claims,
    /// The one platform allowed to verify it, if restricted.
    pub audience: Option<PlatformId>,
}

impl CertificateFields {
    /// Expiry time, Unix seconds.
    pub fn expires_at(&self) -> u64 {
        self.issued_at + u64::from(self.lifetime)
    }

    /// The signed bytes.
    pub(crate) fn encode_signed(&self) -> [u8; SIGNED_LEN] {
        let mut bytes = [0u8; SIGNED_LEN];
        bytes[VERSION_AT] = FORMAT_VERSION;
        bytes[KEY_ID_AT..WEB_NUMBER_AT].copy_from_slice(self.key_id.as_bytes());
        bytes[WEB_NUMBER_AT..CERTIFICATE_ID_AT].copy_from_slice(self.web_number.as_bytes());
        bytes[CERTIFICATE_ID_AT..ISSUED_AT_AT].copy_from_slice(self.certificate_id.as_bytes());
        bytes[ISSUED_AT_AT..LIFETIME_AT].copy_from_slice(&self.issued_at.to_be_bytes());
        bytes[LIFETIME_AT..ASSURANCE_AT].copy_from_slice(&self.lifetime.to_be_bytes());
        bytes[ASSURANCE_AT] = self.assurance as u8;
        bytes[CLAIMS_AT] = self.claims.to_byte();
        if let Some(audience) = &self.audience {
            bytes[AUDIENCE_AT..SIGNED_LEN].copy_from_slice(audience.audience_field());
        }
        bytes
    }
}

/// A decoded Web Certificate: its fields and the exact bytes they were decoded from, so that
/// the signature is checked over what was received, not over a re-encoding.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    fields: CertificateFields,
    bytes: [u8; CERTIFICATE_LEN],
}

impl Certificate {
    pub(crate) fn assemble(fields: CertificateFields, signature: &[u8; 64]) -> Self {
        let mut bytes = [0u8; CERTIFICATE_LEN];
        bytes[..SIGNED_LEN].copy_from_slice(&fields.encode_signed());
        bytes[SIGNED_LEN..].copy_from_slice(signature);
        Self { fields, bytes }
    }

    /// Decodes the binary form. Strict: exactly [`CERTIFICATE_LEN`] bytes, a known version, and
    /// every field in its one canonical encoding. The signature is not checked here.
    pub fn from_bytes(input: &[u8]) -> Result<Self, Error> {
        let version = *input.first().ok_or(Error::Malformed("empty certificate"))?;
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion(u32::from(version)));
        }
        let bytes: [u8; CERTIFICATE_LEN] = input
            .try_into()
            .map_err(|_| Error::Malformed("binary form is not exactly 127 bytes"))?;
        let field = |from: usize, to: usize| &bytes[from..to];
        let key_id = KeyId::from_bytes(array(field(KEY_ID_AT, WEB_NUMBER_AT)));
        let web_number =
            WebNumber::from_canonical_bytes(&array(field(WEB_NUMBER_AT, CERTIFICATE_ID_AT)))
                .ok_or(Error::Malformed("Web Number is not canonical"))?;
        let certificate_id = CertificateId(array(field(CERTIFICATE_ID_AT, ISSUED_AT_AT)));
        let issued_at = u64::from_be_bytes(array(field(ISSUED_AT_AT, LIFETIME_AT)));
        let lifetime = u16::from_be_bytes(array(field(LIFETIME_AT, ASSURANCE_AT)));
        if lifetime == 0 {
            return Err(Error::Malformed("lifetime is zero"));
        }
        if issued_at.checked_add(u64::from(lifetime)).is_none() {
            return Err(Error::Malformed("expiry overflows"));
        }
        let assurance = Assurance::from_byte(bytes[ASSURANCE_AT])
            .ok_or(Error::Malformed("assurance level is not 1, 2 or 3"))?;
        let claims = Claims::from_byte(bytes[CLAIMS_AT])?;
        let audience = PlatformId::from_audience_field(&array(field(AUDIENCE_AT, SIGNED_LEN)))?;
        if audience.is_none() && !claims.consent.is_empty() {
            return Err(Error::Malformed("consent to disclose names no audience"));
        }
        let fields = CertificateFields {
            key_id,
            web_number,
            certificate_id,
            issued_at,
            lifetime,
            assurance,
            claims,
            audience,
        };
        Ok(Self { fields, bytes })
    }

    /// Decodes the text form: [`TEXT_PREFIX`] followed by the strict base45 encoding of the
    /// binary form, [`TEXT_LEN`] characters in all.
    pub fn from_text(text: &str) -> Result<Self, Error> {
        let text = text.as_bytes();
        let Some(body) = text.strip_prefix(TEXT_PREFIX.as_bytes()) else {
            return Err(text_version(text).map_or(
                Error::Malformed("text form does not start with WZ1:"),
                Error::UnsupportedVersion,
            ));
        };
        let mut bytes = [0u8; CERTIFICATE_LEN];
        base45::decode_into(body, &mut bytes).map_err(Error::Malformed)?;
        if bytes[VERSION_AT] != FORMAT_VERSION {
            return Err(Error::Malformed("text prefix and binary version disagree"));
        }
        Self::from_bytes(&bytes)
    }

    /// The binary form.
    pub fn as_bytes(&self) -> &[u8; CERTIFICATE_LEN] {
        &self.bytes
    }

    /// The text form, for QR codes (alphanumeric mode) and JSON bodies.
    pub fn to_text(&self) -> String {
        let mut text = [0u8; TEXT_LEN];
        text[..TEXT_PREFIX.len()].copy_from_slice(TEXT_PREFIX.as_bytes());
        base45::encode_into(&self.bytes, &mut text[TEXT_PREFIX.len()..]);
        // The base45 alphabet and the prefix are ASCII.
        String::from_utf8_lossy(&text).into_owned()
    }

    /// The decoded fields.
    pub fn fields(&self) -> &CertificateFields {
        &self.fields
    }

    /// The signed bytes.
    pub(crate) fn signed_bytes(&self) -> &[u8] {
        &self.bytes[..SIGNED_LEN]
    }

    /// The signature `r || s`.
    pub(crate) fn signature(&self) -> [u8; 64] {
        array(&self.bytes[SIGNED_LEN..])
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("key_id", &self.fields.key_id)
            .field("certificate_id", &self.fields.certificate_id)
            .field("issued_at", &self.fields.issued_at)
            .finish_non_exhaustive()
    }
}

/// The version a `WZ<number>:` prefix declares, if the text has that shape: a decimal number
/// of 1 to 9 digits without leading zeros. So `WZ2:` declares version 2, while `WZ01:` is no
/// version prefix at all (malformed), not another spelling of `WZ1:`.
fn text_version(text: &[u8]) -> Option<u32> {
    let rest = text.strip_prefix(b"WZ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 9 || rest.get(digits) != Some(&b':') {
        return None;
    }
    if digits > 1 && rest[0] == b'0' {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn array<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(slice);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arbitrary_fields() -> impl Strategy<Value = CertificateFields> {
        let web_number = proptest::string::string_regex("[0-9A-HJKMNP-TV-Z]{10}").unwrap();
        let audience =
            proptest::option::of(proptest::string::string_regex("[a-z0-9._-]{1,16}").unwrap());
        (
            any::<[u8; 8]>(),
            web_number,
            any::<[u8; 16]>(),
            0u64..=u64::MAX - 65_535,
            1u16..,
            1u8..=3,
            (0u8..=2, 0u8..=3),
            audience,
        )
            .prop_map(
                |(key, number, id, issued_at, lifetime, assurance, (age, consent), audience)| {
                    // Consent goes to an audience only.
                    let consent = if audience.is_some() { consent } else { 0 };
                    let claims = age | consent << 2;
                    CertificateFields {
                        key_id: KeyId::from_bytes(key),
                        web_number: number.parse().unwrap(),
                        certificate_id: CertificateId(id),
                        issued_at,
                        lifetime,
                        assurance: Assurance::from_byte(assurance).unwrap(),
                        claims: Claims::from_byte(claims).unwrap(),
                        audience: audience.map(|a| a.parse().unwrap()),
                    }
                },
            )
    }

    #[test]
    fn layout_sizes_match_the_spec() {
        assert_eq!(SIGNED_LEN, 63);
        assert_eq!(CERTIFICATE_LEN, 127);
        assert_eq!(TEXT_LEN, 195);
    }

    #[test]
    fn the_claims_byte_holds_an_age_and_consent_to_the_audience_only() {
        use crate::Attribute;
        let claims = |byte| Claims::from_byte(byte);
        assert_eq!(claims(0b0000_0010).unwrap().age, Some(AgeBracket::Adult));
        let both = claims(0b0000_1101).unwrap();
        assert_eq!(both.age, Some(AgeBracket::Minor));
        assert_eq!(both.consent, Attributes::of(&Attribute::ALL));
        assert_eq!(both.to_byte(), 0b0000_1101);
        for undefined in [0b0000_0011, 0b0001_0000, 0b1000_0000] {
            assert!(claims(undefined).is_err(), "{undefined:#010b}");
        }
        // Consent without an audience is refused by the decoder and by the issuer alike.
        let fields = CertificateFields {
            key_id: KeyId::from_bytes([1; 8]),
            web_number: "7K3MQ9XZ2P".parse().unwrap(),
            certificate_id: CertificateId([2; 16]),
            issued_at: 1_000,
            lifetime: 180,
            assurance: Assurance::Substantial,
            claims: Claims {
                age: None,
                consent: Attributes::of(&[Attribute::Name]),
            },
            audience: Some("bank.example".parse().unwrap()),
        };
        let signed = Certificate::assemble(fields, &[0; 64]);
        assert_eq!(
            Certificate::from_bytes(signed.as_bytes()).unwrap().fields(),
            &fields
        );
        let unaddressed = Certificate::assemble(
            CertificateFields {
                audience: None,
                ..fields
            },
            &[0; 64],
        );
        assert_eq!(
            Certificate::from_bytes(unaddressed.as_bytes()),
            Err(Error::Malformed("consent to disclose names no audience"))
        );
    }

    #[test]
    fn certificate_id_text_is_strict_hex() {
        let id: CertificateId = "00112233445566778899AABBCCDDEEFF".parse().unwrap();
        assert_eq!(id.to_string(), "00112233445566778899aabbccddeeff");
        for bad in [
            "",
            "0011",
            "+0112233445566778899aabbccddeeff",
            "0g112233445566778899aabbccddeeff",
        ] {
            assert!(bad.parse::<CertificateId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn version_errors_are_precise() {
        let mut bytes = [0u8; CERTIFICATE_LEN];
        bytes[0] = 2;
        assert_eq!(
            Certificate::from_bytes(&bytes),
            Err(Error::UnsupportedVersion(2))
        );
        assert_eq!(
            Certificate::from_bytes(&[]).unwrap_err().code(),
            "malformed"
        );
        assert_eq!(
            Certificate::from_text("WZ2:whatever"),
            Err(Error::UnsupportedVersion(2))
        );
        assert_eq!(
            Certificate::from_text("WZ10:whatever"),
            Err(Error::UnsupportedVersion(10))
        );
        for malformed in ["WZ:", "WZ01:whatever", "WZ02:whatever", "wz1:whatever"] {
            assert_eq!(
                Certificate::from_text(malformed).unwrap_err().code(),
                "malformed",
                "{malformed}"
            );
        }
        assert_eq!(
            Certificate::from_text("HC1:abc").unwrap_err().code(),
            "malformed"
        );
        assert_eq!(Certificate::from_text("").unwrap_err().code(), "malformed");
    }

    proptest! {
        #[test]
        fn binary_and_text_round_trip(fields in arbitrary_fields(), signature in any::<[u8; 32]>()) {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&signature);
            let certificate = Certificate::assemble(fields, &sig);
            let decoded = Certificate::from_bytes(certificate.as_bytes()).unwrap();
            prop_assert_eq!(decoded.fields(), &fields);
            let text = certificate.to_text();
            prop_assert_eq!(text.len(), TEXT_LEN);
            let from_text = Certificate::from_text(&text).unwrap();
            prop_assert_eq!(from_text.as_bytes(), certificate.as_bytes());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(certificate) = Certificate::from_bytes(&bytes) {
                prop_assert_eq!(&certificate.as_bytes()[..], &bytes[..]);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "(WZ1:)?[0-9A-Z $%*+./:-]{0,200}") {
            if let Ok(certificate) = Certificate::from_text(&text) {
                prop_assert_eq!(certificate.to_text(), text);
            }
        }

        #[test]
        fn decoding_accepts_only_canonical_bytes(fields in arbitrary_fields(), index in 0..SIGNED_LEN, bit in 0..8u8) {
            // Any decodable mutation re-encodes to itself: there is one encoding per value.
            let certificate = Certificate::assemble(fields, &[1u8; 64]);
            let mut bytes = *certificate.as_bytes();
            bytes[index] ^= 1 << bit;
            if let Ok(mutated) = Certificate::from_bytes(&bytes) {
                prop_assert_eq!(mutated.fields().encode_signed(), array::<SIGNED_LEN>(&bytes[..SIGNED_LEN]));
            }
        }
    }
}
