//! `cyberid-loadtest`: see `cyberid-loadtest --help` and `loadtest/README.md`.
#![forbid(unsafe_code)]

// The same allocator as the node, so that neither side of a comparison pays glibc's arena
// locks when the other does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cyberid_loadtest::run_cli()
}
