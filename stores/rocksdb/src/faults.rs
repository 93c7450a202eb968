//! Failpoints on every step of the write paths, for the fault-injection tests
//! (`tests/faults.rs`). Compiled in only with the `failpoints` feature, which only those tests
//! turn on; otherwise [`point`] is an empty inline function.
//!
//! A test configures a point (`fail::cfg`, or the `FAILPOINTS` environment variable in a child
//! process) with `return` to make that step fail with a store error, or `return(crash)` to
//! abort the process there, as a power cut or SIGKILL would.

use cyberid_engine::Error;

/// The steps, in the order a write passes them. Tests iterate over these.
pub const NONCE_STEPS: &[&str] = &[
    "rocksdb::claim",
    "rocksdb::batch",
    "rocksdb::write",
    "rocksdb::synced",
];
/// The revocation path's steps.
pub const REVOCATION_STEPS: &[&str] = &[
    "rocksdb::revocation_check",
    "rocksdb::write",
    "rocksdb::synced",
    "rocksdb::revocation_applied",
];

#[cfg(feature = "failpoints")]
pub(crate) fn point(name: &str) -> Result<(), Error> {
    fail::fail_point!(name, |arg: Option<String>| {
        if arg.as_deref() == Some("crash") {
            std::process::abort();
        }
        Err(Error::Store {
            context: "failpoint",
            detail: format!("injected at {name}"),
        })
    });
    Ok(())
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn point(_name: &str) -> Result<(), Error> {
    Ok(())
}
