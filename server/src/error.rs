//! The server's one error type: everything that stops `cyberid` from starting, serving or
//! changing its data directory. Request-level failures are HTTP answers (see `api`), not these.

/// Everything that can go wrong outside a request, each with a stable [`code`](Error::code).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The engine refused or failed (a store that will not open, a bad key file...).
    #[error("{0}")]
    Engine(#[from] cyberid_engine::Error),
    /// The data directory could not be read or changed.
    #[error("{0}")]
    Files(#[from] cyberid_datadir::Error),
    /// The issuing side refused (a malformed key or request made by a holder command).
    #[error("{0}")]
    Identity(#[from] cyberid_identity::Error),
    /// A setting is invalid; the text names it.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A command would create something that already exists.
    #[error("{0}")]
    Exists(String),
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An HTTP exchange failed (the client side of the demo and tests).
    #[error("{0}")]
    Http(String),
    /// The demo saw an answer the protocol does not allow: the build is broken.
    #[error("demo step '{step}': expected {expected}, got {got}")]
    DemoMismatch {
        /// The step.
        step: &'static str,
        /// What the protocol requires.
        expected: String,
        /// What the server answered.
        got: String,
    },
}

impl Error {
    /// A short, stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Engine(error) => error.code(),
            Error::Files(error) => error.code(),
            Error::Identity(error) => error.code(),
            Error::Config(_) => "config",
            Error::Exists(_) => "exists",
            Error::Io { .. } => "io",
            Error::Http(_) => "http",
            Error::DemoMismatch { .. } => "demo_mismatch",
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}
