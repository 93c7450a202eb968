//! `cargo xtask fuzz [seconds]`: builds every target of the fuzz crate (`fuzz/`, outside the
//! workspace) with cargo-fuzz and runs each for a bounded time, failing on any crash.
//!
//! The sanitizer flags are nightly-only: `RUSTC_BOOTSTRAP=1` lets the stable toolchain take
//! them. They change every crate's hash, so fuzz builds have their own target directory, kept
//! across runs. RocksDB is refused up front: its C++ under the address sanitizer would take far
//! longer than any fuzzing session.

use std::path::PathBuf;

use crate::{Workspace, output, run, system};

/// Seconds each target runs by default (and in CI).
pub(crate) const DEFAULT_SECONDS: u32 = 20;

const MANIFEST: &str = "fuzz/Cargo.toml";

pub(crate) fn fuzz(workspace: &Workspace, seconds: u32) -> Result<(), String> {
    system::ensure_packages(&[&system::GXX, &system::GCC])?;
    system::ensure_cargo_fuzz(&workspace.cargo)?;
    refuse_rocksdb(workspace)?;

    let target_dir = target_dir(workspace);
    println!("== fuzz builds go to {}", target_dir.display());
    // `cargo fuzz <subcommand> --target-dir <dir> [target] [-- libFuzzer flags]`: the target
    // directory before any `--`, or libFuzzer would take it for a corpus.
    let cargo_fuzz = |subcommand: &str, arguments: &[&str]| {
        let mut command = workspace.cargo(["fuzz", subcommand]);
        command.arg("--target-dir").arg(&target_dir).args(arguments);
        command
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("RUSTC_BOOTSTRAP", "1");
        command
    };
    let targets = output(&mut workspace.cargo(["fuzz", "list"]))?;
    let targets: Vec<&str> = targets
        .lines()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if targets.is_empty() {
        return Err(format!(
            "`cargo fuzz list` found no fuzz target in {MANIFEST}"
        ));
    }
    run(&mut cargo_fuzz("build", &[]))?;
    let max_total_time = format!("-max_total_time={seconds}");
    for target in &targets {
        println!("== fuzzing {target} for {seconds} s");
        run(&mut cargo_fuzz("run", &[target, "--", &max_total_time])).map_err(|error| {
            format!(
                "{error}\nthe fuzz target {target} failed: the input is in \
                 fuzz/artifacts/{target}/, and cargo-fuzz printed above how to reproduce it \
                 (on the stable toolchain, with RUSTC_BOOTSTRAP=1 in front)"
            )
        })?;
    }
    println!(
        "== fuzzing: no crash in {seconds} s of each of {}",
        targets.join(", ")
    );
    Ok(())
}

/// `~/.cache/cyberid-fuzz-target` (or `fuzz/target` without a home directory).
fn target_dir(workspace: &Workspace) -> PathBuf {
    crate::home().map_or_else(
        || workspace.root.join("fuzz/target"),
        |home| home.join(".cache/cyberid-fuzz-target"),
    )
}

/// Fails, naming the path to it, if the fuzz crate pulls in librocksdb-sys.
fn refuse_rocksdb(workspace: &Workspace) -> Result<(), String> {
    let tree = |extra: &[&str]| {
        let mut command = workspace.cargo(["tree", "--manifest-path", MANIFEST]);
        command.args(["--edges", "normal,build"]).args(extra);
        output(&mut command)
    };
    let packages = tree(&["--prefix", "none", "--format", "{p}"])?;
    if !depends_on(&packages, "librocksdb-sys") {
        println!("== the fuzz crate does not depend on RocksDB");
        return Ok(());
    }
    let path = tree(&["--invert", "librocksdb-sys"])?;
    Err(format!(
        "the fuzz crate depends on RocksDB (librocksdb-sys):\n{path}\n\
         Building RocksDB's C++ with the address sanitizer takes far too long, so nothing was \
         built: fuzz targets must use crates that do not depend on the RocksDB store."
    ))
}

/// Whether `cargo tree --prefix none --format {p}` output lists the package `name`.
fn depends_on(tree: &str, name: &str) -> bool {
    tree.lines()
        .any(|line| line.split(' ').next() == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_package_names_from_cargo_tree() {
        let tree = "cyberid-fuzz v0.0.0 (/work/fuzz)\n\
                    cyberid-engine v0.1.0 (/work/engine)\n\
                    librocksdb-sys v0.19.0+11.8.1\n\
                    libfuzzer-sys v0.4.13\n";
        assert!(depends_on(tree, "librocksdb-sys"));
        assert!(depends_on(tree, "libfuzzer-sys"));
        assert!(!depends_on(tree, "rocksdb"));
        assert!(!depends_on(
            "cyberid-fuzz v0.0.0 (/work/librocksdb-sys)\n",
            "librocksdb-sys"
        ));
    }
}
