//! Issuance: signing a fresh one-time certificate for a Web Number.

use crate::{
    Assurance, Certificate, CertificateFields, CertificateId, Claims, Error, IssuerSigningKey,
    PlatformId, WebNumber,
};

/// Lifetime rules for issued certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuerPolicy {
    /// Lifetime when a request names none, seconds.
    pub default_lifetime: u16,
    /// Longest lifetime a request may ask for, seconds.
    pub max_lifetime: u16,
}

impl IssuerPolicy {
    /// Default lifetime: 180 s, long enough to scan a QR code and submit it, short enough that
    /// a leaked certificate is soon worthless.
    pub const DEFAULT_LIFETIME: u16 = 180;
    /// Default maximum lifetime: 300 s.
    pub const DEFAULT_MAX_LIFETIME: u16 = 300;
}

impl Default for IssuerPolicy {
    fn default() -> Self {
        Self {
            default_lifetime: Self::DEFAULT_LIFETIME,
            max_lifetime: Self::DEFAULT_MAX_LIFETIME,
        }
    }
}

/// What to put in a certificate besides what the issuer fills in (key id, certificate id,
/// issue time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueRequest {
    /// The holder.
    pub web_number: WebNumber,
    /// How the holder authenticated.
    pub assurance: Assurance,
    /// The claims the holder consented to disclose.
    pub claims: Claims,
    /// Restrict verification to one platform.
    pub audience: Option<PlatformId>,
    /// Lifetime in seconds; the policy's default when `None`.
    pub lifetime: Option<u16>,
}

impl IssueRequest {
    /// A request with assurance `Substantial`, no claims, no audience and the default lifetime.
    pub fn new(web_number: WebNumber) -> Self {
        Self {
            web_number,
            assurance: Assurance::Substantial,
            claims: Claims::default(),
            audience: None,
            lifetime: None,
        }
    }
}

/// Signs certificates with one issuer key.
#[derive(Debug)]
pub struct Issuer {
    key: IssuerSigningKey,
    policy: IssuerPolicy,
}

impl Issuer {
    /// An issuer; the policy must allow its own default lifetime.
    pub fn new(key: IssuerSigningKey, policy: IssuerPolicy) -> Result<Self, Error> {
        if policy.default_lifetime == 0 || policy.default_lifetime > policy.max_lifetime {
            return Err(Error::Config(
                "default lifetime must be between 1 and the maximum lifetime",
            ));
        }
        Ok(Self { key, policy })
    }

    /// The signing key.
    pub fn key(&self) -> &IssuerSigningKey {
        &self.key
    }

    /// Refuses what [`issue`](Self::issue) would refuse about the request itself (its
    /// lifetime), without signing: for callers that must not use anything up on a refusal.
    pub fn check(&self, request: &IssueRequest) -> Result<u16, Error> {
        let lifetime = request.lifetime.unwrap_or(self.policy.default_lifetime);
        if lifetime == 0 || lifetime > self.policy.max_lifetime {
            return Err(Error::Lifetime {
                requested: u64::from(lifetime),
                max: u64::from(self.policy.max_lifetime),
            });
        }
        if request.audience.is_none() && !request.claims.consent.is_empty() {
            return Err(Error::ConsentWithoutAudience);
        }
        Ok(lifetime)
    }

    /// Issues a certificate at time `now` (Unix seconds) with a fresh random certificate id.
    pub fn issue(&self, request: &IssueRequest, now: u64) -> Result<Certificate, Error> {
        let lifetime = self.check(request)?;
        if now.checked_add(u64::from(lifetime)).is_none() {
            return Err(Error::Config("issue time is out of range"));
        }
        let fields = CertificateFields {
            key_id: self.key.key_id(),
            web_number: request.web_number,
            certificate_id: CertificateId::generate()?,
            issued_at: now,
            lifetime,
            assurance: request.assurance,
            claims: request.claims,
            audience: request.audience,
        };
        self.sign(fields)
    }

    /// Signs exactly these fields. For test vectors and for tests that need a certificate the
    /// issuer would refuse (wrong key id, expired, from the future); the key id is not checked.
    pub fn sign(&self, fields: CertificateFields) -> Result<Certificate, Error> {
        let signature = self.key.sign(&fields.encode_signed())?;
        Ok(Certificate::assemble(fields, &signature))
    }
}
