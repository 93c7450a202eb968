//! The one error type of the crate.

/// Who has to act on an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The input (a proof, a head, a size) is wrong: the caller's problem, never retried.
    Caller,
    /// A store could not answer now; the same call may succeed later.
    Retry,
    /// An invariant of this crate broke.
    Bug,
}

/// Why a tree operation or a check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A leaf index or old size beyond the tree size.
    #[error("{index} is outside a tree of {size} leaves")]
    OutOfRange {
        /// The index or old size asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A proof does not prove what it claims.
    #[error("bad proof: {0}")]
    BadProof(&'static str),
    /// Bytes or text that are not what they claim to be.
    #[error("bad encoding: {0}")]
    Encoding(&'static str),
    /// A complete subtree the tree should hold is not there (a truncated or damaged store).
    #[error("the tree holds no subtree {index} at level {level}")]
    Missing {
        /// Its level.
        level: u32,
        /// Its index.
        index: u64,
    },
    /// The log key could not sign (the system's random source failed).
    #[error("the log key could not sign")]
    Signing,
    /// A store below could not answer.
    #[error("the store could not answer: {0}")]
    Store(String),
    /// An audit found the log is not what its heads say.
    #[error("{what} (at size or index {at})")]
    Inconsistent {
        /// What is wrong.
        what: &'static str,
        /// The head size or leaf index where it shows.
        at: u64,
    },
}

impl Error {
    /// A stable code for logs, metrics and API answers.
    pub fn code(&self) -> &'static str {
        match self {
            Error::OutOfRange { .. } => "out_of_range",
            Error::BadProof(_) => "bad_proof",
            Error::Encoding(_) => "bad_encoding",
            Error::Missing { .. } => "tree_incomplete",
            Error::Signing => "signing_failed",
            Error::Store(_) => "store_unavailable",
            Error::Inconsistent { .. } => "log_inconsistent",
        }
    }

    /// Who has to act on it.
    pub fn fault(&self) -> Fault {
        match self {
            Error::OutOfRange { .. }
            | Error::BadProof(_)
            | Error::Encoding(_)
            | Error::Inconsistent { .. } => Fault::Caller,
            Error::Store(_) | Error::Signing => Fault::Retry,
            Error::Missing { .. } => Fault::Bug,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_faults_are_stable() {
        for (error, code, fault) in [
            (
                Error::OutOfRange { index: 1, size: 1 },
                "out_of_range",
                Fault::Caller,
            ),
            (Error::BadProof("x"), "bad_proof", Fault::Caller),
            (Error::Encoding("x"), "bad_encoding", Fault::Caller),
            (
                Error::Missing { level: 0, index: 0 },
                "tree_incomplete",
                Fault::Bug,
            ),
            (Error::Store("x".into()), "store_unavailable", Fault::Retry),
            (Error::Signing, "signing_failed", Fault::Retry),
            (
                Error::Inconsistent { what: "x", at: 1 },
                "log_inconsistent",
                Fault::Caller,
            ),
        ] {
            assert_eq!((error.code(), error.fault()), (code, fault), "{error}");
        }
    }
}
