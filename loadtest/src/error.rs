//! The harness's one error type. Each variant has a stable code, printed beside the message,
//! so scripts can tell a refused setting from a node that could not be reached.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a load run could not be set up, prepared or reported. A run that went ahead is never an
/// error: its wrong verdicts and failed requests are counted in the [`Report`](crate::Report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting that cannot work, named with the reason.
    #[error("{0}")]
    Config(String),
    /// The traffic mix could not be read.
    #[error("traffic mix: {0}")]
    Mix(String),
    /// The target is not a loopback address and `--allow-remote` was not given.
    #[error(
        "{0} is not a loopback address; a load run is only for a node of your own: pass \
         --allow-remote to target it"
    )]
    RemoteTarget(SocketAddr),
    /// A kind of certificate in the mix cannot be made from the configured source.
    #[error("{kind} certificates need --data-dir: {why}")]
    NeedsDataDir {
        /// The kind of certificate.
        kind: &'static str,
        /// Why the issue endpoint cannot make it.
        why: &'static str,
    },
    /// Revoked certificates were asked for without an authority key.
    #[error(
        "revoked certificates need --authority-key: the harness revokes their holders' Web \
         Numbers through the admin API"
    )]
    NeedsAuthorityKey,
    /// The run could go on after its certificates expire.
    #[error("the run could outlast its certificates: {0}")]
    Lifetime(String),
    /// The node's data directory could not be read.
    #[error("data directory {path}: {detail}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The engine refused a key or a certificate.
    #[error("certificate: {0}")]
    Certificate(#[from] cyberid_engine::Error),
    /// The target could not be reached.
    #[error("connect to {address}: {detail}")]
    Connect {
        /// The target.
        address: SocketAddr,
        /// The transport's message.
        detail: String,
    },
    /// An HTTP exchange outside the measured run (issuing, consuming, revoking) failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// The node answered a preparation request other than as the protocol requires.
    #[error("preparation: {0}")]
    Preparation(String),
    /// The chart could not be drawn.
    #[error("chart: {0}")]
    Chart(String),
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The system's error.
        source: std::io::Error,
    },
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Mix(_) => "mix",
            Error::RemoteTarget(_) => "remote_target",
            Error::NeedsDataDir { .. } => "needs_data_dir",
            Error::NeedsAuthorityKey => "needs_authority_key",
            Error::Lifetime(_) => "lifetime",
            Error::DataDir { .. } => "data_directory",
            Error::Certificate(_) => "certificate",
            Error::Connect { .. } => "connect",
            Error::Http(_) => "http",
            Error::Preparation(_) => "preparation",
            Error::Chart(_) => "chart",
            Error::Io { .. } => "io",
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct() {
        let errors = [
            Error::Config(String::new()),
            Error::Mix(String::new()),
            Error::RemoteTarget(SocketAddr::from(([10, 0, 0, 1], 80))),
            Error::NeedsDataDir {
                kind: "expired",
                why: "",
            },
            Error::NeedsAuthorityKey,
            Error::Lifetime(String::new()),
            Error::DataDir {
                path: PathBuf::new(),
                detail: String::new(),
            },
            Error::Certificate(cyberid_engine::Error::Random),
            Error::Connect {
                address: SocketAddr::from(([127, 0, 0, 1], 80)),
                detail: String::new(),
            },
            Error::Http(String::new()),
            Error::Preparation(String::new()),
            Error::Chart(String::new()),
            Error::io("x")(std::io::Error::other("y")),
        ];
        let mut codes: Vec<&str> = errors.iter().map(Error::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), errors.len());
    }
}
