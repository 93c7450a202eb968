//! `cyberid`: the verification tier's server and command-line tools.
#![forbid(unsafe_code)]

// The request path allocates small, short-lived buffers on every worker thread; mimalloc's
// thread-local free lists serve that pattern without the glibc arena locks. Measured in
// tuning.md against the system allocator (feature `system-allocator`).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cyberid::run_cli()
}
