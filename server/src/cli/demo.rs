//! `cyberid demo`: a node from scratch, exercised over real HTTP, self-checking.
//!
//! Creates a data directory with an issuer key, a platform, an authority and an enrollment
//! agent, starts the server on its RocksDB store, then issues and verifies certificates through
//! the API, enrolls an adult and a child with the parent's consent and has their devices ask
//! for certificates, and checks every answer against the one the protocol requires: any
//! difference makes the demo fail.

use std::net::SocketAddr;
use std::path::PathBuf;

use cyberid_engine::{Certificate, Clock, PlatformId, SystemClock, WebNumber};
use cyberid_identity::{
    DeviceSigningKey, Disclose, GuardianConsent, HolderRequest, HolderRequestBody, ResidentId,
};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::process::{init_logging, runtime, shutdown_signal};
use crate::http::client::Client;
use crate::{DataDir, Error, LogFormat, Scope, ServeConfig, Server};

/// Settings of `cyberid demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Data directory for the demo node; a new temporary directory when absent.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) listen: std::net::SocketAddr,
    /// Print a certificate as a QR code in the terminal.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) qr: bool,
    /// Shut down after the demo instead of serving until Ctrl-C.
    #[arg(long)]
    pub(crate) exit: bool,
}

const PLATFORM: &str = "demo.shop";
const AUTHORITY: &str = "demo-authority";
const AGENT: &str = "demo-app-backend";

/// The demo's node, keys and client.
struct Demo<'a> {
    client: Client,
    platform_key: &'a str,
    authority_key: &'a str,
    agent_key: &'a str,
    holder: WebNumber,
}

fn expect(step: &'static str, expected: &str, got: &str) -> Result<(), Error> {
    if expected == got {
        println!("  ok  {step:<58} -> {got}");
        Ok(())
    } else {
        Err(Error::DemoMismatch {
            step,
            expected: expected.to_owned(),
            got: got.to_owned(),
        })
    }
}

fn verdict_of(status: StatusCode, body: &Value) -> String {
    if status != StatusCode::OK {
        return format!("HTTP {status} {body}");
    }
    match (body["verdict"].as_str(), body["reason"].as_str()) {
        (Some("valid"), _) => "valid".to_owned(),
        (Some("invalid"), Some(reason)) => reason.to_owned(),
        _ => body.to_string(),
    }
}

impl Demo<'_> {
    async fn issue(&mut self, holder: WebNumber, audience: &str) -> Result<Value, Error> {
        let (status, body) = self
            .client
            .call(
                Method::POST,
                "/v1/certificates",
                Some(self.platform_key),
                Some(json!({
                    "web_number": holder,
                    "assurance": "high",
                    "claims": { "age": "adult" },
                    "audience": audience,
                })),
            )
            .await?;
        if status != StatusCode::CREATED {
            return Err(Error::DemoMismatch {
                step: "issue a certificate",
                expected: "201 Created".into(),
                got: format!("{status} {body}"),
            });
        }
        Ok(body)
    }

    /// Issues a certificate and returns its text only.
    async fn issue_text(&mut self, holder: WebNumber, audience: &str) -> Result<String, Error> {
        let issued = self.issue(holder, audience).await?;
        Ok(issued["certificate"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    async fn verify(&mut self, certificate: &str) -> Result<(StatusCode, Value), Error> {
        self.client
            .call(
                Method::POST,
                "/v1/verify",
                Some(self.platform_key),
                Some(json!({ "certificate": certificate })),
            )
            .await
    }

    async fn verdict(&mut self, certificate: &str) -> Result<String, Error> {
        let (status, body) = self.verify(certificate).await?;
        Ok(verdict_of(status, &body))
    }

    async fn admin(&mut self, path: &str) -> Result<String, Error> {
        let (status, body) = self
            .client
            .call(
                Method::POST,
                path,
                Some(self.authority_key),
                Some(json!({ "reason": "demo" })),
            )
            .await?;
        Ok(if status == StatusCode::OK {
            "applied".to_owned()
        } else {
            format!("HTTP {status} {body}")
        })
    }

    async fn run(&mut self, qr: bool) -> Result<(), Error> {
        let holder = self.holder;
        println!("\nEvery answer below comes over HTTP and is checked against the protocol:");
        let first = self.issue(holder, PLATFORM).await?;
        let text = first["certificate"].as_str().unwrap_or_default().to_owned();
        let (status, body) = self.verify(&text).await?;
        expect(
            "a fresh certificate verifies",
            "valid",
            &verdict_of(status, &body),
        )?;
        expect(
            "the verdict names the holder by this platform's pairwise subject, not the Web Number",
            "pairwise",
            if body.to_string().contains(&holder.to_string()) {
                "web_number"
            } else {
                body["subject_type"].as_str().unwrap_or_default()
            },
        )?;
        expect(
            "the second use of it is refused",
            "replayed",
            &self.verdict(&text).await?,
        )?;

        let second = self.issue(holder, PLATFORM).await?;
        let id = second["certificate_id"].as_str().unwrap_or_default();
        let applied = self
            .admin(&format!("/v1/admin/certificates/{id}/revoke"))
            .await?;
        expect("an authority revokes a certificate", "applied", &applied)?;
        let revoked = second["certificate"].as_str().unwrap_or_default();
        expect(
            "the revoked certificate is refused",
            "revoked",
            &self.verdict(revoked).await?,
        )?;

        let elsewhere = self.issue_text(holder, "other.shop").await?;
        expect(
            "a certificate meant for another platform is refused",
            "wrong_audience",
            &self.verdict(&elsewhere).await?,
        )?;

        let forged = flip_signature_bit(&self.issue_text(holder, PLATFORM).await?)?;
        expect(
            "a forged signature is refused",
            "bad_signature",
            &self.verdict(&forged).await?,
        )?;

        let path = format!("/v1/admin/web-numbers/{holder}/suspend");
        expect(
            "an authority suspends the Web Number",
            "applied",
            &self.admin(&path).await?,
        )?;
        let while_suspended = self.issue_text(holder, PLATFORM).await?;
        expect(
            "its certificates are refused while suspended",
            "revoked",
            &self.verdict(&while_suspended).await?,
        )?;
        let path = format!("/v1/admin/web-numbers/{holder}/reinstate");
        expect(
            "the authority reinstates it",
            "applied",
            &self.admin(&path).await?,
        )?;
        let after = self.issue_text(holder, PLATFORM).await?;
        expect(
            "a new certificate verifies again",
            "valid",
            &self.verdict(&after).await?,
        )?;

        let (status, _) = self
            .client
            .call(
                Method::POST,
                "/v1/verify",
                None,
                Some(json!({ "certificate": &after })),
            )
            .await?;
        expect(
            "a call without an API key is refused",
            "401",
            status.as_str(),
        )?;
        let (status, _) = self
            .client
            .call(
                Method::POST,
                &format!("/v1/admin/web-numbers/{holder}/revoke"),
                Some(self.platform_key),
                Some(json!({ "reason": "demo" })),
            )
            .await?;
        expect("a platform key cannot administer", "403", status.as_str())?;

        if qr {
            println!("\nA certificate as the holder's app shows it (QR, alphanumeric mode):");
            if let Some(code) = render_qr(&text) {
                println!("{code}");
            }
            println!("{text}");
        }
        Ok(())
    }
}

impl Demo<'_> {
    async fn enroll(&mut self, body: Value) -> Result<(StatusCode, Value), Error> {
        self.client
            .call(
                Method::POST,
                "/v1/enrollments",
                Some(self.agent_key),
                Some(body),
            )
            .await
    }

    /// The holder's app asks for a certificate; its text, or the answer's code.
    async fn ask(
        &mut self,
        holder: WebNumber,
        device: &DeviceSigningKey,
        disclose: Disclose,
    ) -> Result<String, Error> {
        let mut request = HolderRequest::new(holder, disclose, SystemClock.now())?;
        request.audience = Some(PLATFORM.parse()?);
        let body = serde_json::to_value(HolderRequestBody::from(&request.sign(device)?))
            .map_err(|error| Error::Http(error.to_string()))?;
        let (status, answer) = self
            .client
            .call(Method::POST, "/v1/holder/certificates", None, Some(body))
            .await?;
        Ok(match answer["certificate"].as_str() {
            Some(text) if status == StatusCode::CREATED => text.to_owned(),
            _ => answer["error"]["code"].as_str().unwrap_or("?").to_owned(),
        })
    }

    /// The issuing side: an adult and a child enrolled by the agent, with the parent's consent
    /// for the child; certificates asked for by the holders' devices, verified by the platform.
    async fn identity(&mut self) -> Result<(), Error> {
        println!(
            "
The issuing side: enrollment, holder-bound certificates, a guardian."
        );
        let document = |name: &str, id: &str, birth: &str| json!({ "name": name, "resident_id": id, "birth_date": birth, "valid_from": "2020-01-01" });
        let parent_phone = DeviceSigningKey::generate()?;
        let (status, parent) = self
            .enroll(json!({
                "document": document("张伟", "110105199003151239", "1990-03-15"),
                "device_key": parent_phone.public_key().to_spki_pem()?,
            }))
            .await?;
        expect("the agent enrolls an adult", "201", status.as_str())?;
        let parent: WebNumber = parent["web_number"].as_str().unwrap_or_default().parse()?;
        let certificate = self.ask(parent, &parent_phone, Disclose::Age).await?;
        let (status, verdict) = self.verify(&certificate).await?;
        let age = verdict["claims"]["age"].as_str().unwrap_or("none");
        expect(
            "the adult's phone asks for a certificate, disclosing age",
            "valid adult",
            &format!("{} {age}", verdict_of(status, &verdict)),
        )?;

        let child_id: ResidentId = "110105201706010029".parse()?;
        let child_phone = DeviceSigningKey::generate()?;
        let mut child = json!({
            "document": document("张小明", child_id.expose(), "2017-06-01"),
            "device_key": child_phone.public_key().to_spki_pem()?,
        });
        let (_, refused) = self.enroll(child.clone()).await?;
        expect(
            "a child under 14 without a guardian's consent is refused",
            "guardian_required",
            refused["error"]["code"].as_str().unwrap_or("?"),
        )?;
        let consent = GuardianConsent::sign(
            parent,
            &parent_phone,
            &child_id,
            &child_phone.public_key(),
            SystemClock.now(),
        )?;
        child["guardian_consent"] =
            serde_json::to_value(&consent).map_err(|error| Error::Http(error.to_string()))?;
        let (status, enrolled) = self.enroll(child).await?;
        expect(
            "with the parent's signed consent the child is enrolled",
            "201",
            status.as_str(),
        )?;
        let child: WebNumber = enrolled["web_number"]
            .as_str()
            .unwrap_or_default()
            .parse()?;
        let certificate = self.ask(child, &child_phone, Disclose::Nothing).await?;
        let (status, verdict) = self.verify(&certificate).await?;
        let age = verdict["claims"]["age"].as_str().unwrap_or("none");
        expect(
            "the child's certificate says minor, asked or not",
            "valid minor",
            &format!("{} {age}", verdict_of(status, &verdict)),
        )?;
        expect(
            "another phone cannot ask for the child",
            "device_signature",
            &self.ask(child, &parent_phone, Disclose::Nothing).await?,
        )?;
        Ok(())
    }
}

/// Flips one bit of the signature: the certificate still decodes, its signature no longer
/// verifies.
fn flip_signature_bit(text: &str) -> Result<String, Error> {
    let certificate = Certificate::from_text(text)?;
    let mut bytes = certificate.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    Ok(Certificate::from_bytes(&bytes)?.to_text())
}

fn render_qr(text: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build(),
    )
}

fn demo_directory(requested: Option<&PathBuf>) -> Result<PathBuf, Error> {
    if let Some(path) = requested {
        return Ok(path.clone());
    }
    let mut suffix = [0u8; 4];
    getrandom::fill(&mut suffix).map_err(|_| cyberid_engine::Error::Random)?;
    Ok(std::env::temp_dir().join(format!("cyberid-demo-{}", hex::encode(suffix))))
}

/// Runs `cyberid demo`.
pub(crate) fn run(args: &DemoArgs) -> Result<(), Error> {
    init_logging(LogFormat::Plain, "warn");
    let root = demo_directory(args.data_dir.as_ref())?;
    let dir = DataDir::open_or_init(&root)?;
    let now = SystemClock.now();
    let key_id = dir.generate_key(true, now)?;
    let platform: PlatformId = PLATFORM.parse()?;
    let platform_key = dir.add_platform(&platform, &[Scope::Verify, Scope::Issue], Some(0), now)?;
    let authority_key = dir.add_authority(AUTHORITY, now)?;
    let agent_key = dir.add_enrollment_agent(AGENT, now)?;
    let config = ServeConfig {
        data_dir: root.clone(),
        listen: args.listen,
        // The demo node is its own trusted issuer: it issues the certificates it then verifies.
        issue_endpoint: true,
        ..ServeConfig::default()
    };
    // The issuer key was made just now, so none of its certificates can have been used before
    // now minus the clock skew: the store may vouch from then on. (A node that starts empty
    // otherwise refuses certificates issued up to a skew before its creation.)
    if !dir.store_path().exists() {
        crate::create_store(&dir, now.saturating_sub(config.clock_skew_s))?;
    }
    println!("cyberid demo");
    println!("  data directory  {}", root.display());
    println!("  issuer key      {key_id} (SM2, keys/{key_id}.key.pem)");
    println!("  platform        {PLATFORM}, key {platform_key}");
    println!("  authority       {AUTHORITY}, key {authority_key}");
    println!("  enrollment      {AGENT}, key {agent_key}");

    runtime(0)?.block_on(async {
        let server = Server::start(config).await?;
        server.ready().await?;
        let address = server.local_addr();
        println!(
            "  serving         http://{address} (RocksDB store in {})",
            dir.store_path().display()
        );
        let mut demo = Demo {
            client: Client::connect(address).await?,
            platform_key: &platform_key,
            authority_key: &authority_key,
            agent_key: &agent_key,
            holder: WebNumber::generate()?,
        };
        let mut outcome = demo.run(args.qr).await;
        if outcome.is_ok() {
            outcome = demo.identity().await;
        }
        if outcome.is_ok() {
            let spare = demo.issue(demo.holder, PLATFORM).await?;
            print_curl(address, &platform_key, &authority_key, demo.holder, &spare);
        }
        if outcome.is_ok() && !args.exit {
            println!("\nServing until Ctrl-C.");
            shutdown_signal().await?;
        }
        server.shutdown().await?;
        outcome
    })?;
    println!("\nThe demo's answers were all as the protocol requires.");
    Ok(())
}

fn print_curl(
    address: SocketAddr,
    platform_key: &str,
    authority_key: &str,
    holder: WebNumber,
    spare: &Value,
) {
    let base = format!("http://{address}");
    let certificate = spare["certificate"].as_str().unwrap_or_default();
    let certificate_id = spare["certificate_id"].as_str().unwrap_or_default();
    println!("\nTry it by hand (the node keeps running):");
    println!("  export PLATFORM_KEY={platform_key} AUTHORITY_KEY={authority_key}");
    println!("  # verify an unused certificate: valid the first time, replayed after");
    println!(
        "  curl -s {base}/v1/verify -H \"authorization: Bearer $PLATFORM_KEY\" \
         -H 'content-type: application/json' -d '{{\"certificate\":\"{certificate}\"}}'"
    );
    println!("  # issue a new one");
    println!(
        "  curl -s {base}/v1/certificates -H \"authorization: Bearer $PLATFORM_KEY\" \
         -H 'content-type: application/json' \
         -d '{{\"web_number\":\"{holder}\",\"claims\":{{\"age\":\"adult\"}},\"audience\":\"{PLATFORM}\"}}'"
    );
    println!("  # revoke the unused certificate above (as an authority)");
    println!(
        "  curl -s {base}/v1/admin/certificates/{certificate_id}/revoke \
         -H \"authorization: Bearer $AUTHORITY_KEY\" -H 'content-type: application/json' \
         -d '{{\"reason\":\"lost_device\"}}'"
    );
    println!("  curl -s {base}/v1/admin/revocations -H \"authorization: Bearer $AUTHORITY_KEY\"");
    println!("  curl -s {base}/metrics");
}
