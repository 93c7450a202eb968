//! Verification: from certificate bytes and a calling context to a verdict.

use std::fmt;
use std::sync::Arc;

use crate::{
    Assurance, Certificate, Claims, Error, KeyRegistry, KeyState, LogEntry, LogItem, LogOutcome,
    NonceClaim, NonceOutcome, NonceStore, PlatformId, Receipt, RevocationSet, Standing, WebNumber,
};

/// Why a certificate is not valid. Codes are stable and documented in `docs/protocol.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// Not a well-formed certificate in either encoding.
    Malformed,
    /// A format version this verifier does not know.
    UnsupportedVersion,
    /// Signed by a key this verifier does not know.
    UnknownKey,
    /// Signed by a revoked issuer key, or by a retired key after its retirement.
    KeyRevoked,
    /// Issued in the future, beyond the allowed clock skew.
    NotYetValid,
    /// Past its expiry, beyond the allowed clock skew.
    Expired,
    /// Restricted to another platform.
    WrongAudience,
    /// The signature does not verify.
    BadSignature,
    /// The certificate, or its Web Number, is suspended or revoked.
    Revoked,
    /// Already used: this certificate's one verification has happened.
    Replayed,
    /// The nonce store's history begins after this certificate could first have been used (a
    /// new, emptied or restored store), so it cannot tell whether this is the first use.
    HistoryUnavailable,
}

impl Reason {
    /// Every reason, in the order checks run.
    pub const ALL: [Reason; 11] = [
        Reason::Malformed,
        Reason::UnsupportedVersion,
        Reason::UnknownKey,
        Reason::KeyRevoked,
        Reason::NotYetValid,
        Reason::Expired,
        Reason::WrongAudience,
        Reason::BadSignature,
        Reason::Revoked,
        Reason::Replayed,
        Reason::HistoryUnavailable,
    ];

    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::UnsupportedVersion => "unsupported_version",
            Reason::UnknownKey => "unknown_key",
            Reason::KeyRevoked => "key_revoked",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Expired => "expired",
            Reason::WrongAudience => "wrong_audience",
            Reason::BadSignature => "bad_signature",
            Reason::Revoked => "revoked",
            Reason::Replayed => "replayed",
            Reason::HistoryUnavailable => "history_unavailable",
        }
    }

    fn of_decode_error(error: &Error) -> Reason {
        match error {
            Error::UnsupportedVersion(_) => Reason::UnsupportedVersion,
            _ => Reason::Malformed,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What a platform learns from a valid certificate: nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verified {
    /// The holder's Web Number.
    pub web_number: WebNumber,
    /// How the holder authenticated.
    pub assurance: Assurance,
    /// The claims the holder disclosed.
    pub claims: Claims,
    /// The certificate's expiry, Unix seconds.
    pub expires_at: u64,
    /// Where this answer sits in the authentication log, when the verifier keeps one.
    #[serde(skip)]
    pub receipt: Option<Receipt>,
}

/// The answer to a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The certificate is genuine, current, meant for this platform, not revoked, and this was
    /// its one verification.
    Valid(Verified),
    /// It is not, for this reason.
    Invalid {
        /// The first check that failed.
        reason: Reason,
    },
}

impl Verdict {
    /// Whether the verdict is valid.
    pub fn is_valid(&self) -> bool {
        matches!(self, Verdict::Valid(_))
    }

    /// The reason, for an invalid verdict.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Verdict::Valid(_) => None,
            Verdict::Invalid { reason } => Some(*reason),
        }
    }
}

impl From<Reason> for Verdict {
    fn from(reason: Reason) -> Self {
        Verdict::Invalid { reason }
    }
}

/// Who is verifying, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// The calling platform, checked against the certificate's audience. `None` only for
    /// callers that are no platform (the demo, tests); it fails every audience-restricted
    /// certificate.
    pub platform: Option<PlatformId>,
    /// The current time, Unix seconds, from an injectable [`Clock`](crate::Clock).
    pub now: u64,
    /// This request's identity across retries, if the platform named one
    /// ([`RequestKey::derive`](crate::RequestKey::derive) from its `Idempotency-Key`): a retry
    /// of a verification whose answer was lost gets that answer again, not `replayed`.
    pub request: Option<crate::RequestKey>,
    /// The attributes the answer will carry if the verdict is `valid` (the caller checked the
    /// platform's entitlement and the holder's consent, and holds the values ready): the log
    /// entry records this set, in the same durable write as the nonce, so no answer can
    /// disclose anything the log does not show. [`Attributes::NONE`](crate::Attributes) for
    /// the result only.
    pub disclose: crate::Attributes,
}

/// A certificate as received: its text form or its binary form.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// `WZ1:` followed by base45.
    Text(&'a str),
    /// The 127-byte binary form.
    Binary(&'a [u8]),
}

/// Verification policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifierConfig {
    /// Clock skew tolerated between issuer and verifier, seconds, on both ends of the validity
    /// window.
    pub skew: u64,
    /// Longest certificate lifetime accepted, seconds; longer ones are `malformed`.
    pub max_lifetime: u16,
    /// Whether every verification that reaches a genuine signature is appended to the
    /// authentication log, in the same durable write as its nonce. The nonce store must keep
    /// one ([`NonceStore::keeps_log`]); verifications without a platform (in-process callers)
    /// are not logged.
    pub log: bool,
}

impl VerifierConfig {
    /// Default skew: 30 s covers NTP-synchronised servers with a wide margin.
    pub const DEFAULT_SKEW: u64 = 30;
    /// Default maximum lifetime: 300 s, above the 180 s issuers use by default.
    pub const DEFAULT_MAX_LIFETIME: u16 = 300;
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            skew: Self::DEFAULT_SKEW,
            max_lifetime: Self::DEFAULT_MAX_LIFETIME,
            log: false,
        }
    }
}

/// A certificate whose signature verified and which is current and meant for its caller; only
/// the stateful checks (revocation, replay) remain.
#[derive(Debug, Clone)]
pub struct SignedCertificate {
    certificate: Certificate,
    context: Context,
}

impl SignedCertificate {
    /// The certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }
}

/// Verifies certificates against a key registry, a revocation set and a nonce store.
///
/// Checks run cheapest first: decoding and version, key, validity window, audience, then the
/// signature, and only then revocation and the nonce. So nothing about a Web Number's standing
/// reaches anyone who cannot present a correctly signed certificate for it, and a forged
/// certificate can never consume a genuine one's nonce.
///
/// The work splits in two for batching: [`check_signed`](Verifier::check_signed) is pure CPU
/// and can run on any thread; [`settle`](Verifier::settle) does the stateful checks for a whole
/// batch with one nonce-store call.
pub struct Verifier {
    keys: Arc<KeyRegistry>,
    revocations: Arc<dyn RevocationSet>,
    nonces: Arc<dyn NonceStore>,
    config: VerifierConfig,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier over these stores.
    pub fn new(
        keys: Arc<KeyRegistry>,
        revocations: Arc<dyn RevocationSet>,
        nonces: Arc<dyn NonceStore>,
        config: VerifierConfig,
    ) -> Self {
        Self {
            keys,
            revocations,
            nonces,
            config,
        }
    }

    /// The policy in force.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Verifies one certificate, consuming its nonce if it is valid.
    ///
    /// `Err` means the verifier could not answer (a store failure): the caller must not treat
    /// the certificate as valid.
    pub fn verify(&self, input: Input<'_>, context: &Context) -> Result<Verdict, Error> {
        let checked = self.check_signed(input, context);
        let verdicts = self.settle(std::slice::from_ref(&checked))?;
        verdicts.first().copied().ok_or(Error::Store {
            context: "settle",
            detail: "no verdict".into(),
        })
    }

    /// Verifies a batch, consuming all its nonces with one store call.
    pub fn verify_batch(&self, requests: &[(Input<'_>, Context)]) -> Result<Vec<Verdict>, Error> {
        let checked: Vec<_> = requests
            .iter()
            .map(|(input, context)| self.check_signed(*input, context))
            .collect();
        self.settle(&checked)
    }

    /// The stateless checks: decoding, version, key, validity window, audience, signature.
    pub fn check_signed(
        &self,
        input: Input<'_>,
        context: &Context,
    ) -> Result<SignedCertificate, Reason> {
        let decoded = match input {
            Input::Text(text) => Certificate::from_text(text),
            Input::Binary(bytes) => Certificate::from_bytes(bytes),
        };
        let certificate = decoded.map_err(|error| Reason::of_decode_error(&error))?;
        let fields = certificate.fields();
        if fields.lifetime > self.config.max_lifetime {
            return Err(Reason::Malformed);
        }

        let registered = self.trusted_key(&fields.key_id, fields.issued_at)?;

        if context.now.saturating_add(self.config.skew) < fields.issued_at {
            return Err(Reason::NotYetValid);
        }
        if context.now >= fields.expires_at().saturating_add(self.config.skew) {
            return Err(Reason::Expired);
        }
        if let Some(audience) = &fields.audience
            && context.platform.as_ref() != Some(audience)
        {
            return Err(Reason::WrongAudience);
        }

        if !registered
            .key
            .verify(certificate.signed_bytes(), &certificate.signature())
        {
            return Err(Reason::BadSignature);
        }
        Ok(SignedCertificate {
            certificate,
            context: *context,
        })
    }

    /// The one place that decides whether a certificate's key may vouch for it: the key is
    /// registered (`unknown_key`), not revoked by an authority, and not retired before the
    /// certificate's signed issue time (`key_revoked`). Protocol §6, checks 3 and 4.
    fn trusted_key(
        &self,
        key_id: &crate::KeyId,
        issued_at: u64,
    ) -> Result<Arc<crate::RegisteredKey>, Reason> {
        let registered = self.keys.get(key_id).ok_or(Reason::UnknownKey)?;
        let retired_before =
            matches!(registered.state, KeyState::Retired(since) if issued_at > since);
        if retired_before || self.revocations.key_revoked(key_id) {
            return Err(Reason::KeyRevoked);
        }
        Ok(registered)
    }

    /// The stateful checks for a batch: revocation, then one nonce-store call for every
    /// certificate still standing, which also appends the batch's log entries when the log is
    /// on. Verdicts come back in input order.
    pub fn settle(
        &self,
        checked: &[Result<SignedCertificate, Reason>],
    ) -> Result<Vec<Verdict>, Error> {
        let mut verdicts: Vec<Verdict> = Vec::with_capacity(checked.len());
        let mut claims = Vec::with_capacity(checked.len());
        // (verdict position, item) for every answer the log records.
        let mut logged: Vec<(usize, LogItem)> = Vec::new();
        for (position, item) in checked.iter().enumerate() {
            let verdict = match item {
                Err(reason) => Verdict::from(*reason),
                Ok(SignedCertificate {
                    certificate,
                    context,
                }) => {
                    let fields = certificate.fields();
                    let revoked = self.revocations.standing(&fields.web_number) != Standing::Active
                        || self.revocations.certificate_revoked(&fields.certificate_id);
                    if !revoked {
                        claims.push(NonceClaim {
                            certificate_id: fields.certificate_id,
                            usable_from: fields.issued_at.saturating_sub(self.config.skew),
                            expires_at: fields.expires_at(),
                            retain_until: fields.expires_at().saturating_add(self.config.skew),
                            request: context.request,
                        });
                    }
                    if let (true, Some(platform)) = (self.config.log, context.platform) {
                        let entry = LogEntry {
                            at_ms: context.now.saturating_mul(1000),
                            platform,
                            web_number: fields.web_number,
                            certificate_id: fields.certificate_id,
                            outcome: if revoked {
                                LogOutcome::Revoked
                            } else {
                                LogOutcome::Valid
                            },
                            disclosed: if revoked {
                                0
                            } else {
                                u16::from(context.disclose.bits())
                            },
                        };
                        let claim = (!revoked).then(|| claims.len() - 1);
                        logged.push((position, LogItem { entry, claim }));
                    }
                    if revoked {
                        Verdict::from(Reason::Revoked)
                    } else {
                        Verdict::Valid(Verified {
                            web_number: fields.web_number,
                            assurance: fields.assurance,
                            claims: fields.claims,
                            expires_at: fields.expires_at(),
                            receipt: None,
                        })
                    }
                }
            };
            verdicts.push(verdict);
        }
        if claims.is_empty() && logged.is_empty() {
            return Ok(verdicts);
        }
        // Before consuming anything: a revocation view that cannot prove itself current must not
        // answer valid, and an error here consumes nothing.
        if !claims.is_empty() {
            self.revocations.check_current()?;
        }
        let outcomes = if self.config.log {
            let items: Vec<LogItem> = logged.iter().map(|(_, item)| *item).collect();
            let (outcomes, receipts) = self.nonces.consume_logged(&claims, &items)?;
            if receipts.len() != items.len() {
                return Err(Error::Store {
                    context: "consume",
                    detail: format!("{} receipts for {} log items", receipts.len(), items.len()),
                });
            }
            for ((position, _), receipt) in logged.iter().zip(receipts) {
                if let Verdict::Valid(verified) = &mut verdicts[*position] {
                    verified.receipt = receipt;
                }
            }
            outcomes
        } else {
            self.nonces.consume_batch(&claims)?
        };
        if claims.is_empty() {
            return Ok(verdicts);
        }
        // And after: a consumption that waited on a stalled cluster may end after the view
        // went stale (a partition that began mid-call). Its certificates are spent, but a
        // `valid` now could miss a revocation acknowledged elsewhere: 503, and a retry with
        // the same request key is answered from the nonce store once the view is current.
        self.revocations.check_current()?;
        if outcomes.len() != claims.len() {
            return Err(Error::Store {
                context: "consume",
                detail: format!("{} outcomes for {} claims", outcomes.len(), claims.len()),
            });
        }
        let mut outcomes = outcomes.into_iter();
        for verdict in verdicts.iter_mut().filter(|verdict| verdict.is_valid()) {
            match outcomes.next() {
                Some(NonceOutcome::Fresh | NonceOutcome::Repeated) => {}
                Some(NonceOutcome::Replayed) => *verdict = Verdict::from(Reason::Replayed),
                Some(NonceOutcome::BeforeHistory) => {
                    *verdict = Verdict::from(Reason::HistoryUnavailable);
                }
                Some(NonceOutcome::Expired) => *verdict = Verdict::from(Reason::Expired),
                None => {
                    return Err(Error::Store {
                        context: "consume",
                        detail: "missing outcome".into(),
                    });
                }
            }
        }
        Ok(verdicts)
    }
}
