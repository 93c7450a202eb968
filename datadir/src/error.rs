//! The crate's one error type.

use std::path::Path;

use cyberid_engine::Fault;

/// Everything that can go wrong reading or changing a data directory, each with a stable
/// [`code`](Error::code).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The directory is not one `cyberid` can use; the text says why (never its secrets).
    #[error("data directory {path}: {problem}")]
    DataDir {
        /// The directory.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A name that is not there (a platform, an authority, an API key, an issuer key).
    #[error("{0}")]
    NotFound(String),
    /// Something that is already there.
    #[error("{0}")]
    Exists(String),
    /// A name or value that cannot be used (an authority id with spaces...).
    #[error("{0}")]
    Invalid(String),
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file this crate wrote could not be encoded.
    #[error("cannot encode {0}")]
    Encode(String),
    /// The engine refused a key file (not SM2, not PEM...) or had no randomness.
    #[error("{0}")]
    Engine(#[from] cyberid_engine::Error),
    /// An identity key file could not be used (a damaged or swapped vault key...).
    #[error("{0}")]
    Identity(#[from] cyberid_identity::Error),
}

impl Error {
    /// A short, stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::DataDir { .. } => "data_directory",
            Error::NotFound(_) => "not_found",
            Error::Exists(_) => "exists",
            Error::Invalid(_) => "config",
            Error::Io { .. } => "io",
            Error::Encode(_) => "encode",
            Error::Engine(error) => error.code(),
            Error::Identity(error) => error.code(),
        }
    }

    /// Who must act: the caller or operator (a wrong name, a directory that is not ours, a
    /// damaged file), the machine (an I/O error that may pass), or this code.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Io { .. } => Fault::Retry,
            Error::Encode(_) => Fault::Bug,
            Error::Engine(error) => error.fault(),
            _ => Fault::Caller,
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub(crate) fn data_dir(path: &Path, problem: impl Into<String>) -> Error {
        Error::DataDir {
            path: path.display().to_string(),
            problem: problem.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_faults_are_stable() {
        let cases = [
            (
                Error::data_dir(Path::new("/d"), "x"),
                "data_directory",
                Fault::Caller,
            ),
            (Error::NotFound("x".into()), "not_found", Fault::Caller),
            (Error::Exists("x".into()), "exists", Fault::Caller),
            (Error::Invalid("x".into()), "config", Fault::Caller),
            (
                Error::io("read")(std::io::Error::other("disk")),
                "io",
                Fault::Retry,
            ),
            (Error::Encode("x".into()), "encode", Fault::Bug),
        ];
        for (error, code, fault) in cases {
            assert_eq!(error.code(), code, "{error}");
            assert_eq!(error.fault(), fault, "{error}");
        }
    }
}
