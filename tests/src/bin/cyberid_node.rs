//! The `cyberid` command line, built inside the test package so its integration tests can run
//! it as a process (`CARGO_BIN_EXE_cyberid_node`): SIGTERM, the demo, the management commands.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cyberid::run_cli()
}
