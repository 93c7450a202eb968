//! Settings of `cyberid serve`: built-in defaults, then a TOML file, then environment variables,
//! then command-line flags, each overriding the one before.
//!
//! One macro declares every setting once, so the TOML key, the flag (`--max-batch`), the
//! environment variable (`CYBERID_MAX_BATCH`) and the `--help` text can never drift apart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cyberid_engine::{IssuerPolicy, PipelineConfig, VerifierConfig};
use cyberid_store_etcd::EtcdOptions;
use cyberid_store_rocksdb::StoreOptions;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Batches settled at once on etcd when the configuration leaves it to the store: one
/// transaction takes a few milliseconds, and the cluster's throughput grows with transactions
/// in flight up to about this many per node (tuning.md §6).
const ETCD_SETTLERS: usize = 4;

/// How a default value reads in `--help`.
trait ShowDefault {
    fn show(&self) -> String;
}

macro_rules! show_by_display {
    ($($ty:ty),+) => { $( impl ShowDefault for $ty {
        fn show(&self) -> String { self.to_string() }
    } )+ };
}
show_by_display!(usize, u64, u32, u16, bool, String, SocketAddr);

impl ShowDefault for PathBuf {
    fn show(&self) -> String {
        self.display().to_string()
    }
}

impl ShowDefault for LogFormat {
    fn show(&self) -> String {
        use clap::ValueEnum;
        self.to_possible_value()
            .map_or_else(|| format!("{self:?}"), |value| value.get_name().to_owned())
    }
}

macro_rules! settings {
    ($( $(#[doc = $doc:literal])+ $name:ident : $ty:ty = $default:expr, env $env:literal
        $(, arg($($arg:tt)*))?; )+) => {
        /// Every setting of `cyberid serve`, with its default.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        #[non_exhaustive]
        pub struct ServeConfig {
            $( $(#[doc = $doc])+ pub $name: $ty, )+
        }

        impl Default for ServeConfig {
            fn default() -> Self {
                Self { $( $name: $default, )+ }
            }
        }

        /// The command-line and environment form of [`ServeConfig`].
        #[derive(Debug, Clone, Default, clap::Args)]
        #[non_exhaustive]
        pub struct ServeArgs {
            /// TOML file with any of the settings below (keys as the flags, with '_' for '-').
            /// Environment variables override it, and flags override both.
            #[arg(long, env = "CYBERID_CONFIG", value_name = "FILE")]
            pub config: Option<PathBuf>,
            $(
                $(#[doc = $doc])+
                #[arg(long, env = $env $(, $($arg)*)?)]
                pub $name: Option<$ty>,
            )+
        }

        impl ServeArgs {
            /// `serve`'s flags with each setting's default appended to its help, taken from
            /// [`ServeConfig::default`]: the help text never states a default of its own.
            pub(crate) fn document_defaults(command: clap::Command) -> clap::Command {
                let defaults = ServeConfig::default();
                command $( .mut_arg(stringify!($name), |arg| {
                    let shown = format!("[default: {}]", ShowDefault::show(&defaults.$name));
                    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                    let long = arg.get_long_help().map(ToString::to_string);
                    let arg = arg.help(format!("{help} {shown}"));
                    match long {
                        Some(long) => arg.long_help(format!("{long} {shown}")),
                        None => arg,
                    }
                }) )+
            }
        }

        impl ServeConfig {
            fn overlay(&mut self, args: &ServeArgs) {
                $( if let Some(value) = &args.$name { self.$name = value.clone(); } )+
            }
        }
    };
}

settings! {
    /// Data directory: the RocksDB store, issuer keys and credentials. Created if missing.
    data_dir: PathBuf = PathBuf::from("cyberid-data"), env "CYBERID_DATA_DIR";
    /// Where the revocation set and the replay nonces live: `rocksdb` (embedded, in the data
    /// directory; one node) or `etcd://host:port[,host:port...][/prefix]` (an etcd cluster
    /// shared by every node of a deployment; further clusters that share the nonces follow
    /// after `+`, e.g. `etcd://a1:2379,a2:2379+b1:2379,b2:2379/cyberid`).
    store: String = "rocksdb".into(), env "CYBERID_STORE";
    /// This node's name in a shared store (kept with each nonce it consumes): 1 to 64
    /// characters from A-Z a-z 0-9 - _ . :
    node_id: String = "cyberid".into(), env "CYBERID_NODE_ID";
    /// For a new etcd deployment only (nothing recorded under its prefix yet): the Unix time
    /// its history begins; 0 is the moment its first node connects. The embedded store takes
    /// this from `cyberid init --history-begins` instead.
    etcd_history_begins: u64 = 0, env "CYBERID_ETCD_HISTORY_BEGINS";
    /// Address to listen on; port 0 picks a free port.
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)), env "CYBERID_LISTEN";
    /// Make this node a trusted issuer: serve POST /v1/certificates, which signs certificates
    /// for any Web Number with this node's issuing key, to platforms with the issue scope. Off,
    /// the route answers 404 issue_disabled. `--issue-endpoint` alone means true.
    issue_endpoint: bool = false, env "CYBERID_ISSUE_ENDPOINT",
        arg(num_args = 0..=1, default_missing_value = "true");
    /// Largest request body accepted, bytes; larger ones get 413.
    max_body_bytes: usize = 8192, env "CYBERID_MAX_BODY_BYTES";
    /// Most simultaneous client connections; more wait in the listen backlog.
    max_connections: usize = 10_000, env "CYBERID_MAX_CONNECTIONS";
    /// Time a client has to send a request's headers, milliseconds. hyper also applies it to
    /// a keep-alive connection waiting for its next request, so it is the idle timeout too:
    /// keep it above the idle timeout of the load balancer or platform client pooling
    /// connections to the node (60 s for AWS ALB and nginx), or they will send on connections
    /// the node is closing.
    header_timeout_ms: u64 = 75_000, env "CYBERID_HEADER_TIMEOUT_MS";
    /// Time a client has to send a request's body, milliseconds; 408 after.
    body_timeout_ms: u64 = 5_000, env "CYBERID_BODY_TIMEOUT_MS";
    /// On SIGTERM or SIGINT, how long in-flight requests may take to finish, milliseconds.
    shutdown_grace_ms: u64 = 10_000, env "CYBERID_SHUTDOWN_GRACE_MS";
    /// Requests per second for platforms whose credentials set no limit of their own; 0 is
    /// unlimited.
    rate_limit: u32 = 0, env "CYBERID_RATE_LIMIT";
    /// Seconds a 503 (queue full) tells the client to wait in Retry-After.
    retry_after_s: u64 = 1, env "CYBERID_RETRY_AFTER_S";
    /// Tokio worker threads (HTTP); 0 is one per core.
    workers: usize = 0, env "CYBERID_WORKERS";
    /// Signature-checking threads (rayon); 0 is one per core.
    verify_threads: usize = 0, env "CYBERID_VERIFY_THREADS";
    /// Most verifications in one batch (one parallel signature pass, one nonce commit).
    max_batch: usize = PipelineConfig::default().max_batch, env "CYBERID_MAX_BATCH";
    /// Batches settled at once (revocation check and nonce commit), each on its own thread;
    /// 0 picks by store: 1 on RocksDB (one synced write per batch), 4 on etcd (a network
    /// round trip per transaction, so several must be in flight).
    settlers: usize = 0, env "CYBERID_SETTLERS";
    /// How long a batch waits for more requests after its first, microseconds; 0 never delays
    /// a request.
    max_wait_us: u64 = PipelineConfig::default().max_wait.as_micros() as u64, env "CYBERID_MAX_WAIT_US";
    /// Verifications that may wait for a batch; past it requests get 503 at once.
    queue_capacity: usize = PipelineConfig::default().queue_capacity, env "CYBERID_QUEUE_CAPACITY";
    /// Clock difference tolerated between issuer and verifier, seconds.
    clock_skew_s: u64 = VerifierConfig::DEFAULT_SKEW, env "CYBERID_CLOCK_SKEW_S";
    /// Longest certificate lifetime accepted, seconds.
    max_lifetime_s: u16 = VerifierConfig::DEFAULT_MAX_LIFETIME, env "CYBERID_MAX_LIFETIME_S";
    /// Lifetime of issued certificates when the request names none, seconds.
    issue_lifetime_s: u16 = IssuerPolicy::DEFAULT_LIFETIME, env "CYBERID_ISSUE_LIFETIME_S";
    /// Bound on replay nonces held in memory; past it verifications fail with 503 rather than
    /// forget one.
    max_live_nonces: usize = StoreOptions::default().max_live_nonces, env "CYBERID_MAX_LIVE_NONCES";
    /// RocksDB memtable size per column family, MiB.
    memtable_mib: usize = StoreOptions::default().memtable_bytes >> 20, env "CYBERID_MEMTABLE_MIB";
    /// Keep the authentication log: every verification that reaches a genuine signature is
    /// appended, in the same synced write as its nonce, to a Merkle-committed log that holders
    /// can read and check (docs/log.md). Kept by the embedded store only: an etcd deployment
    /// must say `--auth-log false` until its store keeps the log.
    auth_log: bool = true, env "CYBERID_AUTH_LOG",
        arg(num_args = 0..=1, default_missing_value = "true");
    /// Days the authentication log keeps an entry openable (its secret and its indexes); the
    /// tree keeps its leaf for ever, so heads and proofs stay checkable. 0 keeps every entry.
    /// The default is the six months China's Cybersecurity Law (art. 21) asks network logs be
    /// kept.
    auth_log_retention_days: u64 = 180, env "CYBERID_AUTH_LOG_RETENTION_DAYS";
    /// Log format.
    log_format: LogFormat = LogFormat::Plain, env "CYBERID_LOG_FORMAT";
    /// Log filter, in tracing's EnvFilter syntax (e.g. "info", "cyberid=debug").
    log: String = "info".to_owned(), env "CYBERID_LOG";
}

impl ServeConfig {
    /// Defaults, then the file named by `--config` (if any), then environment and flags
    /// (which clap has already merged, flags first).
    pub fn resolve(args: &ServeArgs) -> Result<Self, Error> {
        let mut config = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        config.overlay(args);
        config.validate()?;
        Ok(config)
    }

    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text =
            std::fs::read_to_string(path).map_err(Error::io(format!("read {}", path.display())))?;
        toml::from_str(&text)
            .map_err(|error| Error::Config(format!("{}: {}", path.display(), error.message())))
    }

    /// Refuses settings that cannot work, naming the first.
    pub fn validate(&self) -> Result<(), Error> {
        let positive = [
            ("max_body_bytes", self.max_body_bytes),
            ("max_connections", self.max_connections),
            ("max_batch", self.max_batch),
            ("queue_capacity", self.queue_capacity),
            ("max_live_nonces", self.max_live_nonces),
            ("memtable_mib", self.memtable_mib),
            ("max_lifetime_s", usize::from(self.max_lifetime_s)),
            ("issue_lifetime_s", usize::from(self.issue_lifetime_s)),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be positive")));
            }
        }
        if self.issue_lifetime_s > self.max_lifetime_s {
            return Err(Error::Config(
                "issue_lifetime_s must not exceed max_lifetime_s".into(),
            ));
        }
        if self.header_timeout_ms == 0 || self.body_timeout_ms == 0 {
            return Err(Error::Config("timeouts must be positive".into()));
        }
        if let Some(etcd) = self.etcd()?
            && self.max_batch > etcd.claims_per_txn()
        {
            return Err(Error::Config(format!(
                "max_batch must be at most {} with an etcd store (one transaction per batch)",
                etcd.claims_per_txn()
            )));
        }
        if self.auth_log && self.etcd()?.is_some() {
            return Err(Error::Config(
                "the authentication log is kept by the embedded store only: run an etcd \
                 deployment with --auth-log false"
                    .into(),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log).is_err() {
            return Err(Error::Config(format!(
                "log filter {:?} is not valid",
                self.log
            )));
        }
        Ok(())
    }

    pub(crate) fn pipeline(&self) -> PipelineConfig {
        let defaults = PipelineConfig::default();
        PipelineConfig {
            max_batch: self.max_batch,
            max_wait: Duration::from_micros(self.max_wait_us),
            queue_capacity: self.queue_capacity,
            threads: if self.verify_threads == 0 {
                defaults.threads
            } else {
                self.verify_threads
            },
            settlers: match (self.settlers, self.store.as_str()) {
                (0, "rocksdb") => defaults.settlers,
                (0, _) => ETCD_SETTLERS,
                (settlers, _) => settlers,
            },
        }
    }

    pub(crate) fn store(&self) -> StoreOptions {
        StoreOptions {
            max_live_nonces: self.max_live_nonces,
            memtable_bytes: self.memtable_mib << 20,
            log_retention: (self.auth_log_retention_days > 0)
                .then(|| self.auth_log_retention_days.saturating_mul(86_400)),
            ..StoreOptions::default()
        }
    }

    /// The etcd store's options, or `None` for the embedded store.
    pub(crate) fn etcd(&self) -> Result<Option<EtcdOptions>, Error> {
        if self.store == "rocksdb" {
            return Ok(None);
        }
        let mut options = EtcdOptions::from_url(&self.store).map_err(|error| {
            Error::Config(format!(
                "store must be rocksdb or etcd://host:port[,host:port...][/prefix]: {error}"
            ))
        })?;
        options.node_id.clone_from(&self.node_id);
        options.max_live_nonces = self.max_live_nonces;
        options.history_begins = (self.etcd_history_begins > 0).then_some(self.etcd_history_begins);
        options
            .validate()
            .map_err(|error| Error::Config(format!("etcd store: {error}")))?;
        Ok(Some(options))
    }

    pub(crate) fn verifier(&self) -> VerifierConfig {
        VerifierConfig {
            skew: self.clock_skew_s,
            max_lifetime: self.max_lifetime_s,
            log: self.auth_log,
        }
    }

    pub(crate) fn issuer_policy(&self) -> IssuerPolicy {
        IssuerPolicy {
            default_lifetime: self.issue_lifetime_s,
            max_lifetime: self.max_lifetime_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn the_defaults_are_valid_and_local() {
        let config = ServeConfig::default();
        config.validate().unwrap();
        assert!(config.listen.ip().is_loopback());
    }

    #[test]
    fn flags_override_the_file_which_overrides_the_defaults() {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("cyberid.toml");
        std::fs::write(
            &file,
            "max_batch = 32\nqueue_capacity = 100\nlog_format = \"json\"\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "cyberid",
            "--config",
            file.to_str().unwrap(),
            "--max-batch",
            "16",
        ])
        .unwrap();
        let config = ServeConfig::resolve(&cli.serve).unwrap();
        assert_eq!(config.max_batch, 16);
        assert_eq!(config.queue_capacity, 100);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.max_connections, 10_000);
    }

    #[test]
    fn the_store_is_rocksdb_or_an_etcd_url_whose_batches_fit_one_transaction() {
        let mut config = ServeConfig::default();
        assert!(config.etcd().unwrap().is_none());
        config.store = "etcd://10.0.0.1:2379,10.0.0.2:2379/site-a".into();
        config.node_id = "node-a".into();
        let etcd = config.etcd().unwrap().unwrap();
        assert_eq!(
            etcd.endpoints,
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(etcd.prefix, "/site-a");
        assert_eq!(etcd.node_id, "node-a");
        // The authentication log is the embedded store's: an etcd node says it goes without.
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--auth-log false")
        );
        config.auth_log = false;
        config.validate().unwrap();
        config.max_batch = 128;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("max_batch")
        );
        for bad in ["redis://x", "etcd://", "postgres"] {
            let config = ServeConfig {
                store: bad.into(),
                ..ServeConfig::default()
            };
            assert_eq!(config.validate().unwrap_err().code(), "config", "{bad}");
        }
    }

    #[test]
    fn the_issue_endpoint_is_off_unless_named() {
        assert!(!ServeConfig::default().issue_endpoint);
        let resolve = |args: &[&str]| {
            let cli = Cli::try_parse_from(std::iter::once("cyberid").chain(args.iter().copied()))
                .unwrap();
            ServeConfig::resolve(&cli.serve).unwrap().issue_endpoint
        };
        assert!(!resolve(&[]));
        assert!(resolve(&["--issue-endpoint"]));
        assert!(resolve(&["--issue-endpoint", "true"]));
        assert!(resolve(&["--issue-endpoint=true"]));
        assert!(!resolve(&["--issue-endpoint", "false"]));
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("cyberid.toml");
        std::fs::write(&file, "issue_endpoint = true\n").unwrap();
        assert!(ServeConfig::from_file(&file).unwrap().issue_endpoint);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("cyberid.toml");
        std::fs::write(&file, "max_bacth = 32\n").unwrap();
        let error = ServeConfig::from_file(&file).unwrap_err();
        assert!(error.to_string().contains("max_bacth"), "{error}");

        let config = ServeConfig {
            queue_capacity: 0,
            ..ServeConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert!(error.to_string().contains("queue_capacity"), "{error}");
    }
}
