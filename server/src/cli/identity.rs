//! `cyberid vault` (the identity vault's keys) and `cyberid holder` (the holder's side, as the
//! official app does it: a device key, signed certificate requests, guardians' consents).

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use cyberid_engine::{Attribute, PlatformId, WebNumber};
use cyberid_identity::{
    ConsentAction, ConsentRequest, ConsentRequestBody, DeviceKey, DeviceSigningKey, Disclose,
    GuardianConsent, HolderRequest, HolderRequestBody, Purpose, ResidentId,
};
use hyper::Method;

use super::{DataDirArg, now, runtime};
use crate::{Client, DataDir, Error};

#[derive(Debug, Subcommand)]
pub(crate) enum VaultCommand {
    /// Re-wrap every data key under a new master key and delete the old one. Records are not
    /// re-encrypted. Restart running nodes afterwards.
    RotateMaster {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Start a new data key generation: records sealed from now on use it.
    NewGeneration {
        #[command(flatten)]
        dir: DataDirArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum HolderCommand {
    /// Make a device key (PKCS#8 PEM, owner-only) and print its public key (SPKI PEM), which
    /// the enrollment agent submits.
    Keygen {
        /// Where to write the private key; refused if it exists.
        #[arg(long)]
        key: PathBuf,
    },
    /// Sign a certificate request with the device key and send it to a node; prints the
    /// certificate text (what the QR code shows). With --print-body, print the signed JSON body
    /// instead of sending it.
    Request {
        /// The device key.
        #[arg(long)]
        key: PathBuf,
        /// The holder's Web Number.
        #[arg(long)]
        web_number: WebNumber,
        /// Only this platform may verify the certificate.
        #[arg(long)]
        audience: Option<PlatformId>,
        /// Disclose the age bracket (adult or minor); a minor's certificate always says minor.
        #[arg(long)]
        disclose_age: bool,
        /// Consent to disclose an attribute (`name`, `resident_id`) to the audience, for the
        /// purpose of its entitlement (repeat for both; needs --audience).
        #[arg(long = "consent", requires = "audience")]
        consent: Vec<Attribute>,
        /// Lifetime in seconds; the node's default when absent.
        #[arg(long)]
        lifetime: Option<u16>,
        /// The node.
        #[arg(long, default_value = "127.0.0.1:8080")]
        server: SocketAddr,
        /// Print the signed request body (for curl) instead of sending it.
        #[arg(long)]
        print_body: bool,
    },
    /// Grant, withdraw or list standing consents to disclose attributes to platforms; prints
    /// the holder's consents after the change. A grant shows the platform's entitlement (its
    /// purpose and legal basis, from the node) and signs that purpose.
    Disclosure {
        /// The device key.
        #[arg(long)]
        key: PathBuf,
        /// The holder's Web Number.
        #[arg(long)]
        web_number: WebNumber,
        /// Consent to this platform's entitlement (with --attribute).
        #[arg(long, conflicts_with = "withdraw", requires = "attributes")]
        grant: Option<PlatformId>,
        /// An attribute to consent to (`name`, `resident_id`; repeat for both).
        #[arg(long = "attribute")]
        attributes: Vec<Attribute>,
        /// Withdraw the consent to this platform.
        #[arg(long)]
        withdraw: Option<PlatformId>,
        /// The node.
        #[arg(long, default_value = "127.0.0.1:8080")]
        server: SocketAddr,
    },
    /// As a guardian, sign consent to enroll a child under 14 on the child's device; prints
    /// the `guardian_consent` object of the enrollment request.
    Consent {
        /// The guardian's device key.
        #[arg(long)]
        key: PathBuf,
        /// The guardian's Web Number.
        #[arg(long)]
        guardian: WebNumber,
        /// The child's resident identity number, as on the child's card.
        #[arg(long)]
        child_resident_id: ResidentId,
        /// The child's device public key (SPKI PEM file), as the enrollment will submit it.
        #[arg(long)]
        child_device_key: PathBuf,
    },
}

pub(crate) fn vault(command: VaultCommand) -> Result<(), Error> {
    match command {
        VaultCommand::RotateMaster { dir } => {
            let master = DataDir::open(&dir.data_dir)?.rotate_vault_master()?;
            println!("vault master key {master} in use; restart running nodes");
        }
        VaultCommand::NewGeneration { dir } => {
            let generation = DataDir::open(&dir.data_dir)?.new_vault_generation()?;
            println!("vault data key generation {generation} seals new records");
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(Error::io(format!("read {}", path.display())))
}

fn device_key(path: &Path) -> Result<DeviceSigningKey, Error> {
    Ok(DeviceSigningKey::from_pkcs8_pem(&read(path)?)?)
}

pub(crate) fn holder(command: HolderCommand) -> Result<(), Error> {
    match command {
        HolderCommand::Keygen { key } => {
            let device = DeviceSigningKey::generate()?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key)
                .map_err(Error::io(format!("create {}", key.display())))?;
            file.write_all(device.to_pkcs8_pem()?.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(Error::io(format!("write {}", key.display())))?;
            print!("{}", device.public_key().to_spki_pem()?);
            Ok(())
        }
        HolderCommand::Request {
            key,
            web_number,
            audience,
            disclose_age,
            consent,
            lifetime,
            server,
            print_body,
        } => {
            let disclose = if disclose_age {
                Disclose::Age
            } else {
                Disclose::Nothing
            };
            let mut request = HolderRequest::new(web_number, disclose, now())?;
            request.audience = audience;
            request.consent = consent.into_iter().collect();
            request.lifetime = lifetime;
            let signed = request.sign(&device_key(&key)?)?;
            let body = serde_json::to_value(HolderRequestBody::from(&signed))
                .map_err(|error| Error::Http(format!("encode the request: {error}")))?;
            if print_body {
                println!("{body}");
                return Ok(());
            }
            runtime(1)?.block_on(async {
                let mut client = Client::connect(server).await?;
                let (status, answer) = client
                    .call(Method::POST, "/v1/holder/certificates", None, Some(body))
                    .await?;
                match answer["certificate"].as_str() {
                    Some(certificate) if status.is_success() => {
                        println!("{certificate}");
                        Ok(())
                    }
                    _ => Err(Error::Http(format!("the node answered {status}: {answer}"))),
                }
            })
        }
        HolderCommand::Disclosure {
            key,
            web_number,
            grant,
            attributes,
            withdraw,
            server,
        } => disclosure(
            &device_key(&key)?,
            web_number,
            grant,
            attributes,
            withdraw,
            server,
        ),
        HolderCommand::Consent {
            key,
            guardian,
            child_resident_id,
            child_device_key,
        } => {
            let child_device = DeviceKey::from_spki_pem(&read(&child_device_key)?)?;
            let consent = GuardianConsent::sign(
                guardian,
                &device_key(&key)?,
                &child_resident_id,
                &child_device,
                now(),
            )?;
            let json = serde_json::to_string(&consent)
                .map_err(|error| Error::Http(format!("encode the consent: {error}")))?;
            println!("{json}");
            Ok(())
        }
    }
}

/// `cyberid holder disclosure`: one signed consent request, after showing a grant's purpose.
fn disclosure(
    device: &DeviceSigningKey,
    web_number: WebNumber,
    grant: Option<PlatformId>,
    attributes: Vec<Attribute>,
    withdraw: Option<PlatformId>,
    server: SocketAddr,
) -> Result<(), Error> {
    runtime(1)?.block_on(async {
        let mut client = Client::connect(server).await?;
        let action = match (grant, withdraw) {
            (Some(platform), None) => {
                let path = format!("/v1/platforms/{platform}/disclosure");
                let (status, entitlement) = client.call(Method::GET, &path, None, None).await?;
                if !status.is_success() {
                    return Err(Error::Http(format!(
                        "the node answered {status}: {entitlement}"
                    )));
                }
                let purpose: Purpose = entitlement["purpose_digest"]
                    .as_str()
                    .and_then(|digest| digest.parse().ok())
                    .ok_or_else(|| Error::Http(format!("no purpose digest in {entitlement}")))?;
                // What the app shows before the holder taps "agree".
                eprintln!(
                    "{platform} is entitled to {} for: {} (legal basis: {}; granted by {})",
                    entitlement["attributes"],
                    entitlement["purpose"].as_str().unwrap_or("?"),
                    entitlement["legal_basis"].as_str().unwrap_or("?"),
                    entitlement["authority"].as_str().unwrap_or("?"),
                );
                ConsentAction::Grant {
                    platform,
                    attributes: attributes.into_iter().collect(),
                    purpose,
                }
            }
            (None, Some(platform)) => ConsentAction::Withdraw { platform },
            _ => ConsentAction::List,
        };
        let signed = ConsentRequest::new(web_number, action, now())?.sign(device)?;
        let body = serde_json::to_value(ConsentRequestBody::from(&signed))
            .map_err(|error| Error::Http(format!("encode the request: {error}")))?;
        let (status, answer) = client
            .call(Method::POST, "/v1/holder/consent", None, Some(body))
            .await?;
        if !status.is_success() {
            return Err(Error::Http(format!("the node answered {status}: {answer}")));
        }
        println!("{answer}");
        Ok(())
    })
}
