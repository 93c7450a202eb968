//! The `cyberid` command line: `serve`, `demo`, and the management of a data directory (keys,
//! platforms, authorities, enrollment agents, vault keys) and the holder's side for demos. Management commands edit files under the directory's lock; a
//! running server picks the changes up within a second.

mod demo;
mod identity;
mod log;
mod process;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use cyberid_engine::{Clock, IssuerPublicKey, IssuerSigningKey, KeyId, PlatformId, SystemClock};

use self::demo::DemoArgs;
use self::process::{init_logging, runtime, shutdown_signal};
use clap::builder::TypedValueParser;
use cyberid_datadir::{CredentialsFile, PrincipalKind, StoredKey};

use crate::{DataDir, Error, Scope, ServeArgs, ServeConfig, Server};

/// cyberid: verification tier of the national network identity service.
#[derive(Debug, Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DataDirArg {
    /// The data directory.
    #[arg(long, env = "CYBERID_DATA_DIR", default_value = "cyberid-data")]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the verification server until SIGTERM or SIGINT.
    Serve(Box<ServeArgs>),
    /// Create a node from scratch (keys, a platform, an authority), start it, and verify
    /// certificates over HTTP: valid, replayed, revoked and more. Prints the curl commands to do
    /// the same by hand, then keeps serving until Ctrl-C (or exits with --exit).
    Demo(DemoArgs),
    /// Create an empty data directory.
    Init {
        #[command(flatten)]
        dir: DataDirArg,
        /// Also create the store, declaring that no certificate was verified anywhere before
        /// this Unix time. Only for a deployment's first node with new issuer keys: by default a
        /// store's history begins when it is created, and it refuses certificates that might
        /// have been used before (`history_unavailable`).
        #[arg(long, value_name = "UNIX_SECONDS")]
        history_begins: Option<u64>,
    },
    /// Issuer keys: generate, import, list, retire.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Platforms (relying parties) and their API keys.
    #[command(subcommand)]
    Platform(PlatformCommand),
    /// Authorities (who may suspend, revoke and reinstate) and their API keys.
    #[command(subcommand)]
    Authority(NamedCommand),
    /// Enrollment agents (the official app's back end, which reads the ID card's chip and
    /// checks the live face, then enrolls the holder) and their API keys.
    #[command(subcommand)]
    EnrollmentAgent(NamedCommand),
    /// The identity vault's keys: rotate the master key, start a new data key generation.
    #[command(subcommand)]
    Vault(identity::VaultCommand),
    /// The holder's side, for demos and tests: a device key, signed certificate requests and
    /// guardians' consents, as the official app makes them.
    #[command(subcommand)]
    Holder(identity::HolderCommand),
    /// The authentication log: verify it as an auditor would.
    #[command(subcommand)]
    Log(log::LogCommand),
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Generate an SM2 issuer key pair in the data directory.
    Generate {
        #[command(flatten)]
        dir: DataDirArg,
        /// Make it the key this node issues with (the first key always is).
        #[arg(long)]
        issuing: bool,
    },
    /// Import an SM2 key as `openssl genpkey -algorithm SM2` writes it: a PKCS#8 private key
    /// (this node may then issue with it) or an SPKI public key (verification only).
    Import {
        #[command(flatten)]
        dir: DataDirArg,
        /// The PEM file.
        file: PathBuf,
        /// Make it the key this node issues with.
        #[arg(long)]
        issuing: bool,
    },
    /// List the keys.
    List {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Retire a key now: it stops issuing; what it issued stays valid until it expires.
    /// (To refuse everything a compromised key signed, revoke it through the admin API.)
    Retire {
        #[command(flatten)]
        dir: DataDirArg,
        /// The key id (16 hex digits).
        key_id: KeyId,
    },
}

#[derive(Debug, Subcommand)]
enum PlatformCommand {
    /// Register a platform and print its first API key (shown once).
    Add {
        #[command(flatten)]
        dir: DataDirArg,
        /// Platform id: what certificates name as their audience.
        id: PlatformId,
        /// What it may do; repeat for several.
        #[arg(
            long = "scope",
            default_values_t = [Scope::Verify],
            value_parser = clap::builder::PossibleValuesParser::new(Scope::ALL.map(|(name, _)| name))
                .map(|name| name.parse::<Scope>().expect("a listed scope")),
        )]
        scopes: Vec<Scope>,
        /// Requests per second; the server's --rate-limit when absent, 0 for unlimited.
        #[arg(long)]
        rate_limit: Option<u32>,
    },
    /// Print another API key for a platform, for rotation.
    AddKey {
        #[command(flatten)]
        dir: DataDirArg,
        /// Platform id.
        id: PlatformId,
    },
    /// Withdraw one API key by its id (the part after `cyp_`, up to the next `_`).
    RevokeKey {
        #[command(flatten)]
        dir: DataDirArg,
        /// Key id.
        key_id: String,
    },
    /// Remove a platform and all its keys.
    Remove {
        #[command(flatten)]
        dir: DataDirArg,
        /// Platform id.
        id: PlatformId,
    },
    /// Record an authority's entitlement of a platform to holders' Web Numbers (by default a
    /// platform's results name the holder by a pairwise subject of its own). Nodes apply it at
    /// their next credentials reload.
    EntitleWebNumber {
        #[command(flatten)]
        dir: DataDirArg,
        /// Platform id.
        id: PlatformId,
        /// The authority granting it (one of `cyberid authority list`).
        #[arg(long)]
        authority: String,
        /// The legal basis it cites, recorded with the entitlement.
        #[arg(long)]
        basis: String,
    },
    /// Withdraw a platform's entitlement to Web Numbers: pairwise subjects again.
    WithdrawWebNumber {
        #[command(flatten)]
        dir: DataDirArg,
        /// Platform id.
        id: PlatformId,
    },
    /// Record an authority's entitlement of a platform to attributes beyond the result, for a
    /// purpose. A valid answer carries them only where the holder also consented (in the
    /// certificate, or standing to this purpose). Nodes apply it at their next reload.
    EntitleDisclosure {
        #[command(flatten)]
        dir: DataDirArg,
        /// Platform id.
        id: PlatformId,
        /// An attribute it may receive: `name` or `resident_id` (repeat for both).
        #[arg(long = "attribute", required = true)]
        attributes: Vec<cyberid_engine::Attribute>,
        /// What the platform uses them for, as holders' apps show it.
        #[arg(long)]
        purpose: String,
        /// The authority granting it (one of `cyberid authority list`).
        #[arg(long)]
        authority: String,
        /// The legal basis it cites.
        #[arg(long)]
        basis: String,
    },
    /// Withdraw a platform's entitlement to attributes: the result only again.
    WithdrawDisclosure {
        #[command(flatten)]
        dir: DataDirArg,
        /// Platform id.
        id: PlatformId,
    },
    /// List platforms.
    List {
        #[command(flatten)]
        dir: DataDirArg,
    },
}

/// Authorities and enrollment agents: a name (recorded as the actor in the audit trail) and
/// API keys.
#[derive(Debug, Subcommand)]
enum NamedCommand {
    /// Register one and print its first API key (shown once).
    Add {
        #[command(flatten)]
        dir: DataDirArg,
        /// Its id, recorded as the actor in the revocation history and audit trail.
        id: String,
    },
    /// Print another API key, for rotation.
    AddKey {
        #[command(flatten)]
        dir: DataDirArg,
        /// Its id.
        id: String,
    },
    /// Withdraw one API key by its id (the part after `cya_` or `cye_`, up to the next `_`).
    RevokeKey {
        #[command(flatten)]
        dir: DataDirArg,
        /// Key id.
        key_id: String,
    },
    /// Remove it and all its keys.
    Remove {
        #[command(flatten)]
        dir: DataDirArg,
        /// Its id.
        id: String,
    },
    /// List them.
    List {
        #[command(flatten)]
        dir: DataDirArg,
    },
}

/// Runs the command line; the process's exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cyberid: {error} [{}]", error.code());
            ExitCode::FAILURE
        }
    }
}

/// The command line, with `serve`'s defaults written into its help from the settings' one
/// source ([`ServeConfig::default`]).
fn command() -> clap::Command {
    Cli::command().mut_subcommand("serve", ServeArgs::document_defaults)
}

pub(crate) fn now() -> u64 {
    SystemClock.now()
}

fn execute(command: Command) -> Result<(), Error> {
    match command {
        Command::Serve(args) => serve(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Init {
            dir,
            history_begins,
        } => {
            let opened = DataDir::open_or_init(&dir.data_dir)?;
            if let Some(at) = history_begins {
                let begins = crate::create_store(&opened, at)?;
                println!("store created; its history begins at {begins}");
            }
            println!("data directory ready: {}", opened.root().display());
            Ok(())
        }
        Command::Key(command) => key(command),
        Command::Platform(command) => platform(command),
        Command::Authority(command) => named(PrincipalKind::Authority, command),
        Command::EnrollmentAgent(command) => named(PrincipalKind::EnrollmentAgent, command),
        Command::Vault(command) => identity::vault(command),
        Command::Holder(command) => identity::holder(command),
        Command::Log(command) => log::log(command),
    }
}

fn serve(args: &ServeArgs) -> Result<(), Error> {
    let config = ServeConfig::resolve(args)?;
    init_logging(config.log_format, &config.log);
    runtime(config.workers)?.block_on(async {
        let server = Server::start(config).await?;
        // One line on stdout, for scripts and tests that listen on port 0.
        println!("cyberid listening on http://{}", server.local_addr());
        tokio::select! {
            ready = server.ready() => ready?,
            signal = shutdown_signal() => {
                signal?;
                return server.shutdown().await;
            }
        }
        shutdown_signal().await?;
        server.shutdown().await
    })
}

fn key(command: KeyCommand) -> Result<(), Error> {
    match command {
        KeyCommand::Generate { dir, issuing } => {
            let id = DataDir::open(&dir.data_dir)?.generate_key(issuing, now())?;
            println!("{id}");
            Ok(())
        }
        KeyCommand::Import { dir, file, issuing } => {
            let dir = DataDir::open(&dir.data_dir)?;
            let pem = std::fs::read_to_string(&file)
                .map_err(Error::io(format!("read {}", file.display())))?;
            let id = if pem.contains("PRIVATE KEY") {
                let key = IssuerSigningKey::from_pkcs8_pem(&pem)?;
                dir.add_key(key.public_key(), Some(&key), issuing, now())?
            } else {
                if issuing {
                    return Err(Error::Config(
                        "a public key cannot issue; import the private key".into(),
                    ));
                }
                dir.add_key(&IssuerPublicKey::from_spki_pem(&pem)?, None, false, now())?
            };
            println!("{id}");
            Ok(())
        }
        KeyCommand::List { dir } => {
            let dir = DataDir::open(&dir.data_dir)?;
            let (manifest, keys) = dir.load_keys()?;
            println!("{:<18} {:<10} {:<8} STATE", "KEY ID", "ADDED", "ISSUING");
            for key in keys {
                let state = match key.entry.retired_at {
                    Some(at) => format!("retired at {at}"),
                    None => "active".to_owned(),
                };
                let issuing = if manifest.issuing == Some(key.entry.id) {
                    "yes"
                } else if key.private.is_some() {
                    "can"
                } else {
                    "-"
                };
                println!(
                    "{:<18} {:<10} {issuing:<8} {state}",
                    key.entry.id, key.entry.added_at
                );
            }
            Ok(())
        }
        KeyCommand::Retire { dir, key_id } => {
            DataDir::open(&dir.data_dir)?.retire_key(&key_id, now())?;
            println!("retired {key_id}");
            Ok(())
        }
    }
}

fn list_credentials(dir: &Path) -> Result<CredentialsFile, Error> {
    Ok(DataDir::open(dir)?.credentials()?)
}

fn key_ids(keys: &[StoredKey]) -> String {
    keys.iter()
        .map(|key| key.id.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn platform(command: PlatformCommand) -> Result<(), Error> {
    match command {
        PlatformCommand::Add {
            dir,
            id,
            scopes,
            rate_limit,
        } => {
            let dir = DataDir::open(&dir.data_dir)?;
            let api_key = dir.add_platform(&id, &scopes, rate_limit, now())?;
            println!("{api_key}");
            eprintln!("(shown once: only a keyed hash of it is stored)");
            Ok(())
        }
        PlatformCommand::AddKey { dir, id } => {
            let dir = DataDir::open(&dir.data_dir)?;
            println!(
                "{}",
                dir.add_api_key(id.as_str(), PrincipalKind::Platform, now())?
            );
            Ok(())
        }
        PlatformCommand::RevokeKey { dir, key_id } => {
            Ok(DataDir::open(&dir.data_dir)?.revoke_api_key(&key_id)?)
        }
        PlatformCommand::Remove { dir, id } => {
            Ok(DataDir::open(&dir.data_dir)?
                .remove_principal(id.as_str(), PrincipalKind::Platform)?)
        }
        PlatformCommand::EntitleWebNumber {
            dir,
            id,
            authority,
            basis,
        } => {
            Ok(DataDir::open(&dir.data_dir)?.entitle_web_number(&id, &authority, &basis, now())?)
        }
        PlatformCommand::WithdrawWebNumber { dir, id } => {
            Ok(DataDir::open(&dir.data_dir)?.withdraw_web_number(&id)?)
        }
        PlatformCommand::EntitleDisclosure {
            dir,
            id,
            attributes,
            purpose,
            authority,
            basis,
        } => Ok(DataDir::open(&dir.data_dir)?.entitle_disclosure(
            &id,
            attributes.into_iter().collect(),
            &purpose,
            &authority,
            &basis,
            now(),
        )?),
        PlatformCommand::WithdrawDisclosure { dir, id } => {
            Ok(DataDir::open(&dir.data_dir)?.withdraw_disclosure(&id)?)
        }
        PlatformCommand::List { dir } => {
            println!(
                "{:<18} {:<14} {:<11} {:<11} {:<17} KEY IDS",
                "PLATFORM", "SCOPES", "RATE LIMIT", "SUBJECT", "DISCLOSES"
            );
            for platform in list_credentials(&dir.data_dir)?.platforms {
                let scopes: Vec<String> = platform
                    .scopes
                    .iter()
                    .map(|scope| format!("{scope:?}").to_lowercase())
                    .collect();
                let rate = platform
                    .rate_limit
                    .map_or_else(|| "default".to_owned(), |rate| rate.to_string());
                let subject = match &platform.web_number {
                    Some(_) => "web_number",
                    None => "pairwise",
                };
                let discloses = platform.disclosure.as_ref().map_or_else(
                    || "-".to_owned(),
                    |entitled| {
                        let codes: Vec<&str> =
                            entitled.attributes.iter().map(|a| a.code()).collect();
                        codes.join(",")
                    },
                );
                println!(
                    "{:<18} {:<14} {rate:<11} {subject:<11} {discloses:<17} {}",
                    platform.id,
                    scopes.join(","),
                    key_ids(&platform.keys)
                );
            }
            Ok(())
        }
    }
}

fn named(kind: PrincipalKind, command: NamedCommand) -> Result<(), Error> {
    match command {
        NamedCommand::Add { dir, id } => {
            let dir = DataDir::open(&dir.data_dir)?;
            let api_key = match kind {
                PrincipalKind::EnrollmentAgent => dir.add_enrollment_agent(&id, now())?,
                _ => dir.add_authority(&id, now())?,
            };
            println!("{api_key}");
            eprintln!("(shown once: only a keyed hash of it is stored)");
            Ok(())
        }
        NamedCommand::AddKey { dir, id } => {
            let dir = DataDir::open(&dir.data_dir)?;
            println!("{}", dir.add_api_key(&id, kind, now())?);
            Ok(())
        }
        NamedCommand::RevokeKey { dir, key_id } => {
            Ok(DataDir::open(&dir.data_dir)?.revoke_api_key(&key_id)?)
        }
        NamedCommand::Remove { dir, id } => {
            Ok(DataDir::open(&dir.data_dir)?.remove_principal(&id, kind)?)
        }
        NamedCommand::List { dir } => {
            let file = list_credentials(&dir.data_dir)?;
            let (title, entries) = match kind {
                PrincipalKind::EnrollmentAgent => ("ENROLLMENT AGENT", file.agents),
                _ => ("AUTHORITY", file.authorities),
            };
            println!("{title:<24} KEY IDS");
            for entry in entries {
                println!("{:<24} {}", entry.id, key_ids(&entry.keys));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn serve_help_shows_each_default_from_the_settings() {
        let mut serve = command().find_subcommand_mut("serve").unwrap().clone();
        let help = serve.render_long_help().to_string();
        let defaults = ServeConfig::default();
        for expected in [
            format!("[default: {}]", defaults.max_batch),
            format!("[default: {}]", defaults.queue_capacity),
            format!("[default: {}]", defaults.max_live_nonces),
            "[default: rocksdb]".to_owned(),
            "[default: plain]".to_owned(),
            "[default: 127.0.0.1:8080]".to_owned(),
        ] {
            assert!(help.contains(&expected), "{expected} not in {help}");
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
