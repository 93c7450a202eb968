//! `cyberid demo`: the whole life of Web Certificates, in-process, self-checking.

use std::fmt;
use std::io::Write;
use std::sync::Arc;

use cyberid_engine::{
    AgeBracket, Assurance, Certificate, Claims, Clock, Context, Input, IssueRequest, Issuer,
    IssuerPolicy, IssuerSigningKey, KeyRegistry, ManualClock, MemoryNonceStore,
    MemoryRevocationSet, PlatformId, Reason, RevocationChange, RevocationRecord, RevocationSet,
    Standing, SystemClock, Verdict, Verifier, VerifierConfig, WebNumber,
};

/// Why the demo stopped.
#[derive(Debug)]
pub(crate) enum DemoError {
    Engine(cyberid_engine::Error),
    Io(std::io::Error),
    /// A verdict differed from the one the protocol requires: the engine is broken.
    Unexpected {
        step: &'static str,
        expected: String,
        got: String,
    },
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemoError::Engine(error) => write!(f, "{error} ({})", error.code()),
            DemoError::Io(error) => write!(f, "cannot write output: {error}"),
            DemoError::Unexpected {
                step,
                expected,
                got,
            } => {
                write!(f, "step '{step}': expected {expected}, got {got}")
            }
        }
    }
}

impl From<cyberid_engine::Error> for DemoError {
    fn from(error: cyberid_engine::Error) -> Self {
        DemoError::Engine(error)
    }
}

impl From<std::io::Error> for DemoError {
    fn from(error: std::io::Error) -> Self {
        DemoError::Io(error)
    }
}

struct Demo<'a, W> {
    out: &'a mut W,
    verifier: Verifier,
    clock: Arc<ManualClock>,
    shop: PlatformId,
}

impl<W: Write> Demo<'_, W> {
    fn context(&self) -> Context {
        Context {
            platform: Some(self.shop),
            now: self.clock.now(),
        }
    }

    /// Verifies and prints; fails if the verdict is not the expected one.
    fn check(
        &mut self,
        step: &'static str,
        input: Input<'_>,
        context: Context,
        expected: Option<Reason>,
    ) -> Result<(), DemoError> {
        let verdict = self.verifier.verify(input, &context)?;
        let shown = match &verdict {
            Verdict::Valid(verified) => {
                let age = match verified.claims.age {
                    Some(AgeBracket::Adult) => "adult",
                    Some(AgeBracket::Minor) => "minor",
                    None => "not disclosed",
                };
                format!(
                    "valid: Web Number {}, assurance {:?}, age {age}, expires at {}",
                    verified.web_number, verified.assurance, verified.expires_at
                )
            }
            Verdict::Invalid { reason } => format!("invalid: {reason}"),
        };
        writeln!(self.out, "  {step:<58} -> {shown}")?;
        if verdict.reason() != expected {
            return Err(DemoError::Unexpected {
                step,
                expected: expected.map_or("valid".into(), |reason| reason.to_string()),
                got: shown,
            });
        }
        Ok(())
    }
}

fn qr_code(certificate: &Certificate) -> Option<String> {
    let code =
        qrcode::QrCode::with_error_correction_level(certificate.to_text(), qrcode::EcLevel::M)
            .ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build(),
    )
}

/// Runs the demo, writing to `out`.
pub(crate) fn run(out: &mut impl Write, show_qr: bool) -> Result<(), DemoError> {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let started = clock.now();
    let issuer = Issuer::new(IssuerSigningKey::generate()?, IssuerPolicy::default())?;
    let keys = Arc::new(KeyRegistry::new());
    keys.insert(issuer.key().public_key().clone())?;
    let revocations = Arc::new(MemoryRevocationSet::new());
    let verifier = Verifier::new(
        keys,
        revocations.clone(),
        Arc::new(MemoryNonceStore::new(started)),
        VerifierConfig::default(),
    );
    let shop: PlatformId = "shop.example".parse()?;
    let bank: PlatformId = "bank.example".parse()?;
    let holder = WebNumber::generate()?;
    // A fresh nonce store cannot vouch for certificates that might have been used before it
    // started: let the tier run for a minute before the first authentication.
    clock.advance(60);
    let mut demo = Demo {
        out,
        verifier,
        clock,
        shop,
    };

    writeln!(
        demo.out,
        "cyberid demo: issuing and verifying one-time Web Certificates (SM2/SM3)"
    )?;
    writeln!(
        demo.out,
        "  issuer key  {} (SM2, generated for this run)",
        issuer.key().key_id()
    )?;
    writeln!(
        demo.out,
        "  holder      Web Number {holder} (10 random characters, no personal data)"
    )?;
    let request = IssueRequest {
        web_number: holder,
        assurance: Assurance::Substantial,
        claims: Claims {
            age: Some(AgeBracket::Adult),
        },
        audience: None,
        lifetime: None,
    };
    let certificate = issuer.issue(&request, demo.clock.now())?;
    let text = certificate.to_text();
    writeln!(demo.out, "  certificate {text}")?;
    writeln!(
        demo.out,
        "              {} bytes binary, {} characters as text, valid for {} s",
        certificate.as_bytes().len(),
        text.len(),
        certificate.fields().lifetime
    )?;
    if show_qr && let Some(qr) = qr_code(&certificate) {
        writeln!(demo.out, "{qr}")?;
    }

    writeln!(demo.out, "\nVerifications:")?;
    let context = demo.context();
    demo.check(
        "shop.example verifies the certificate",
        Input::Text(&text),
        context,
        None,
    )?;
    demo.check(
        "shop.example presents the same certificate again",
        Input::Text(&text),
        context,
        Some(Reason::Replayed),
    )?;

    let fresh = issuer.issue(&request, demo.clock.now())?;
    let mut tampered = *fresh.as_bytes();
    tampered[35 + 7] ^= 0x01; // one second added to issued-at
    demo.check(
        "a copy with issued-at changed by one second",
        Input::Binary(&tampered),
        context,
        Some(Reason::BadSignature),
    )?;
    demo.check(
        "the untampered original still verifies",
        Input::Binary(fresh.as_bytes()),
        context,
        None,
    )?;

    let for_bank = issuer.issue(
        &IssueRequest {
            audience: Some(bank),
            ..request
        },
        demo.clock.now(),
    )?;
    demo.check(
        "a certificate for bank.example presented to shop.example",
        Input::Text(&for_bank.to_text()),
        context,
        Some(Reason::WrongAudience),
    )?;

    revocations.apply(RevocationRecord {
        change: RevocationChange::WebNumber {
            web_number: holder,
            standing: Standing::Suspended,
        },
        reason: "reported-lost-device".into(),
        authority: "demo-authority".into(),
        at: demo.clock.now(),
    })?;
    let suspended = issuer.issue(&request, demo.clock.now())?;
    demo.check(
        "after the authority suspends the Web Number",
        Input::Text(&suspended.to_text()),
        context,
        Some(Reason::Revoked),
    )?;

    let late = issuer.issue(&IssueRequest::new(WebNumber::generate()?), demo.clock.now())?;
    demo.clock.advance(10 * 60);
    let later = demo.context();
    demo.check(
        "another holder's certificate, verified 10 minutes later",
        Input::Text(&late.to_text()),
        later,
        Some(Reason::Expired),
    )?;
    writeln!(
        demo.out,
        "\nEvery verdict matched the protocol (docs/protocol.md)."
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_runs_to_completion_with_expected_verdicts() {
        let mut out = Vec::new();
        super::run(&mut out, true).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("-> invalid: replayed"));
        assert!(out.contains("-> invalid: revoked"));
        assert!(out.contains("Every verdict matched"));
        // The QR code was drawn.
        assert!(out.contains('█'));
    }
}
