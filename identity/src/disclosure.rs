//! Disclosure beyond the result: the one rule that decides which attributes a valid answer
//! carries, and the service operations around it (holders' standing consents, and opening the
//! vault for one answer).
//!
//! An attribute goes to a platform only when both hold:
//! - an authority entitled the platform to it, for a stated purpose ([`Entitlement`]); and
//! - the holder consented, either in the certificate itself (its signed claims name the
//!   attributes, and it was issued after the entitlement it relies on was granted) or by a
//!   standing consent to that platform for that same purpose ([`StandingConsent`]).

use cyberid_engine::{Attribute, Attributes, CertificateFields, PlatformId, WebNumber};
use serde::Serialize;
use sm2::elliptic_curve::zeroize::Zeroizing;

use crate::{
    ConsentAction, Error, IdentityService, Purpose, SignedConsentRequest, StandingConsent,
};

/// A platform's entitlement to attributes, as the verifier needs it: what, for which purpose,
/// since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entitlement {
    /// The attributes the platform may receive.
    pub attributes: Attributes,
    /// The digest of the purpose the authority registered.
    pub purpose: Purpose,
    /// When it was granted, Unix seconds.
    pub granted_at: u64,
}

impl Entitlement {
    /// The attributes a `valid` answer to `platform` for this certificate carries, given the
    /// holder's standing consent to that platform, if any. Empty when either side is missing.
    pub fn allows(
        &self,
        platform: &PlatformId,
        certificate: &CertificateFields,
        standing: Option<&StandingConsent>,
    ) -> Attributes {
        // Consent in a certificate is to its audience's purpose as it stood when the holder
        // asked: an entitlement granted (or re-granted, perhaps for another purpose) after
        // that is not what they agreed to.
        let in_certificate = if certificate.audience.as_ref() == Some(platform)
            && certificate.issued_at >= self.granted_at
        {
            certificate.claims.consent
        } else {
            Attributes::NONE
        };
        let standing = standing
            .filter(|c| c.platform == *platform && c.purpose == self.purpose)
            .map_or(Attributes::NONE, |c| c.attributes);
        self.attributes.intersection(in_certificate.union(standing))
    }
}

/// Attribute values opened from the vault for one answer; wiped when dropped. Serialises as
/// the answer's `attributes` object, with only the disclosed fields.
#[derive(Default)]
pub struct Disclosed {
    name: Option<Zeroizing<String>>,
    resident_id: Option<Zeroizing<String>>,
}

impl Serialize for Disclosed {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let fields = [("name", &self.name), ("resident_id", &self.resident_id)];
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in fields {
            if let Some(value) = value {
                map.serialize_entry(key, value.as_str())?;
            }
        }
        map.end()
    }
}

impl Disclosed {
    /// Which attributes it holds.
    pub fn attributes(&self) -> Attributes {
        let mut held = Vec::new();
        if self.name.is_some() {
            held.push(Attribute::Name);
        }
        if self.resident_id.is_some() {
            held.push(Attribute::ResidentId);
        }
        Attributes::of(&held)
    }
}

/// Never the values.
impl std::fmt::Debug for Disclosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Disclosed({:?})", self.attributes())
    }
}

impl IdentityService {
    /// Carries out a holder's signed consent request: signed by the device enrolled for the
    /// Web Number, fresh, good once. A grant must match what `entitlement` says the platform
    /// is entitled to now (the same purpose, no attribute beyond it). Returns the holder's
    /// standing consents after the change.
    pub fn consent(
        &self,
        signed: &SignedConsentRequest,
        now: u64,
        entitlement: impl Fn(&PlatformId) -> Option<Entitlement>,
    ) -> Result<Vec<StandingConsent>, Error> {
        let web_number = signed.unverified().web_number;
        // An unknown Web Number is answered as a bad signature, as for certificate requests.
        let holder = self
            .store
            .holder(&web_number)?
            .ok_or(Error::DeviceSignature)?;
        let request = *signed.verify(&holder.device, now, self.config.request_window)?;
        // Checked before the request is used up, so a refused grant does not burn it.
        if let ConsentAction::Grant {
            platform,
            attributes,
            purpose,
        } = request.action
        {
            let entitled = entitlement(&platform).ok_or(Error::NotEntitled(
                "the platform is entitled to no attribute",
            ))?;
            if entitled.purpose != purpose {
                return Err(Error::NotEntitled(
                    "the purpose is not the one the platform's entitlement states",
                ));
            }
            if !attributes.is_subset(entitled.attributes) {
                return Err(Error::NotEntitled(
                    "an attribute is beyond the platform's entitlement",
                ));
            }
        }
        self.consume(
            signed.nonce_claim(self.config.request_window),
            self.config.request_window,
        )?;
        match request.action {
            ConsentAction::List => {}
            ConsentAction::Grant {
                platform,
                attributes,
                purpose,
            } => self.store.put_consent(
                &web_number,
                &StandingConsent {
                    platform,
                    attributes,
                    purpose,
                    given_at: now,
                },
            )?,
            ConsentAction::Withdraw { platform } => {
                self.store.withdraw_consent(&web_number, &platform)?;
            }
        }
        self.store.consents(&web_number)
    }

    /// The holder's standing consent to `platform`, if any: read at each verification, so a
    /// withdrawal takes effect at once.
    pub fn standing_consent(
        &self,
        web_number: &WebNumber,
        platform: &PlatformId,
    ) -> Result<Option<StandingConsent>, Error> {
        self.store.consent(web_number, platform)
    }

    /// Opens the holder's sealed identity and takes out `wanted`, for one answer. `None` when
    /// the Web Number has no enrollment here (a certificate from another issuer): there is
    /// nothing to disclose, and the answer carries the result only.
    pub fn disclose(
        &self,
        web_number: &WebNumber,
        wanted: Attributes,
    ) -> Result<Option<Disclosed>, Error> {
        if wanted.is_empty() {
            return Ok(Some(Disclosed::default()));
        }
        let Some(holder) = self.store.holder(web_number)? else {
            return Ok(None);
        };
        let document = self.vault.open_document(web_number, &holder.sealed)?;
        let copy = |text: &str| Some(Zeroizing::new(text.to_owned()));
        Ok(Some(Disclosed {
            name: wanted
                .contains(Attribute::Name)
                .then(|| copy(document.fields().name.expose()))
                .flatten(),
            resident_id: wanted
                .contains(Attribute::ResidentId)
                .then(|| copy(document.resident_id().expose()))
                .flatten(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use cyberid_engine::{Assurance, CertificateId, Claims, KeyId};

    use super::*;

    const GRANTED: u64 = 1_000;

    fn certificate(audience: &str, issued_at: u64, consent: Attributes) -> CertificateFields {
        CertificateFields {
            key_id: KeyId::from_bytes([1; 8]),
            web_number: "7K3MQ9XZ2P".parse().unwrap(),
            certificate_id: CertificateId::from_bytes([2; 16]),
            issued_at,
            lifetime: 180,
            assurance: Assurance::Substantial,
            claims: Claims { age: None, consent },
            audience: Some(audience.parse().unwrap()),
        }
    }

    #[test]
    fn an_attribute_needs_the_entitlement_and_a_consent_to_its_purpose() {
        let name = Attributes::of(&[Attribute::Name]);
        let both = Attributes::of(&Attribute::ALL);
        let bank: PlatformId = "bank.example".parse().unwrap();
        let entitlement = Entitlement {
            attributes: name,
            purpose: Purpose::of("account opening"),
            granted_at: GRANTED,
        };
        let standing = |purpose: &str, attributes| StandingConsent {
            platform: bank,
            attributes,
            purpose: Purpose::of(purpose),
            given_at: GRANTED,
        };
        let allows = |cert: &CertificateFields, consent: Option<&StandingConsent>| {
            entitlement.allows(&bank, cert, consent)
        };
        let plain = certificate("bank.example", GRANTED + 5, Attributes::NONE);
        let consenting = certificate("bank.example", GRANTED + 5, both);
        // No consent: nothing; consent in the certificate: only what is entitled.
        assert_eq!(allows(&plain, None), Attributes::NONE);
        assert_eq!(allows(&consenting, None), name);
        // Consent given before the entitlement it would rely on: nothing.
        let early = certificate("bank.example", GRANTED - 1, both);
        assert_eq!(allows(&early, None), Attributes::NONE);
        // Standing consent: to the entitlement's purpose only.
        assert_eq!(
            allows(&plain, Some(&standing("account opening", both))),
            name
        );
        assert_eq!(
            allows(&plain, Some(&standing("marketing", both))),
            Attributes::NONE
        );
        // A consent to another platform counts for nothing.
        let elsewhere = StandingConsent {
            platform: "shop.example".parse().unwrap(),
            ..standing("account opening", both)
        };
        assert_eq!(allows(&plain, Some(&elsewhere)), Attributes::NONE);
        // No entitlement to anything: nothing, whatever the holder consented to.
        let none = Entitlement {
            attributes: Attributes::NONE,
            ..entitlement
        };
        assert_eq!(
            none.allows(&bank, &consenting, Some(&standing("account opening", both))),
            Attributes::NONE
        );
    }
}
