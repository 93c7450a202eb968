//! cyberid's developer tasks, run as `cargo xtask <task>` (the alias is in `.cargo/config.toml`).
//!
//! Each task first installs what the machine lacks, saying what and why (Debian packages through
//! apt-get, never interactively), then runs cargo:
//!
//! - `demo [args...]`: the README's run command, `cargo run -p cyberid -- demo [args...]`;
//! - `test [args...]`: the README's test command, `cargo test --workspace [args...]`;
//! - `fuzz [seconds]`: builds every fuzz target and runs each for a bounded time;
//! - `check-one-rocksdb`: the run command, the test command and clippy share one RocksDB build;
//! - `ci`: everything CI checks, in order (what `.ci/run` runs).
//!
//! Builds go to `$CARGO_TARGET_DIR`, by default `~/.cache/cyberid-target`: one directory for
//! every checkout, so RocksDB (10-16 minutes) compiles once per machine. This crate depends on
//! nothing, so `cargo xtask` itself compiles in seconds.

mod fuzz;
mod json;
mod one_rocksdb;
mod system;

use std::env;
use std::ffi::OsStr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <task>

  demo [args...]     install what the build needs, then `cargo run -p cyberid -- demo [args...]`
  test [args...]     install what the tests need, then `cargo test --workspace [args...]`
  fuzz [seconds]     build every fuzz target (libFuzzer, cargo-fuzz) and run each for
                     `seconds` (default 20), failing on any crash
  check-one-rocksdb  check that the run command, the test command and clippy share one
                     RocksDB build (reads cargo's unit graphs, compiles nothing)
  ci                 what CI runs: the test prerequisites, cargo fmt --check,
                     check-one-rocksdb, clippy -D warnings, the tests, fuzz, and
                     tests/api-fuzz.sh when it exists

Packages are installed with apt-get (through `sudo -n` when not root), never interactively.
Builds go to $CARGO_TARGET_DIR, by default ~/.cache/cyberid-target.";

fn main() -> ExitCode {
    let arguments: Vec<String> = env::args().skip(1).collect();
    match dispatch(&arguments) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(arguments: &[String]) -> Result<(), String> {
    let (task, rest) = arguments.split_first().ok_or_else(|| USAGE.to_owned())?;
    let no_arguments = || match rest.first() {
        None => Ok(()),
        Some(extra) => Err(format!(
            "`{task}` takes no argument, got `{extra}`\n\n{USAGE}"
        )),
    };
    match task.as_str() {
        "demo" => demo(&Workspace::new()?, rest),
        "test" => test(&Workspace::new()?, rest),
        "fuzz" => {
            let seconds = match rest {
                [] => fuzz::DEFAULT_SECONDS,
                [seconds] => seconds
                    .parse()
                    .ok()
                    .filter(|&seconds| seconds > 0)
                    .ok_or_else(|| format!("`{seconds}` is not a number of seconds"))?,
                [_, extra, ..] => return Err(format!("`fuzz` takes one argument, got `{extra}`")),
            };
            fuzz::fuzz(&Workspace::new()?, seconds)
        }
        "check-one-rocksdb" => {
            no_arguments()?;
            check_one_rocksdb(&Workspace::new()?)
        }
        "ci" => {
            no_arguments()?;
            ci(&Workspace::new()?)
        }
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown task `{other}`\n\n{USAGE}")),
    }
}

/// The checkout this xtask was started in, found at run time.
///
/// Not `env!("CARGO_MANIFEST_DIR")`: that is baked in at compile time, and the binary lives in a
/// target directory shared by every checkout, so a binary built in another (perhaps deleted)
/// checkout would run its steps there. `cargo run` sets the variable for the process it starts;
/// without it (the binary run by hand) the checkout is the nearest directory up from here
/// holding `xtask/Cargo.toml`.
fn checkout_root() -> Result<PathBuf, String> {
    if let Some(dir) = env::var_os("CARGO_MANIFEST_DIR").filter(|d| !d.is_empty()) {
        let xtask = PathBuf::from(dir);
        return xtask
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| format!("{} has no parent directory", xtask.display()));
    }
    let here = env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    here.ancestors()
        .find(|dir| dir.join("xtask/Cargo.toml").is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            format!(
                "{} is not inside a cyberid checkout: run `cargo xtask` there",
                here.display()
            )
        })
}

/// The checkout and the cargo that runs its builds.
#[derive(Debug)]
pub(crate) struct Workspace {
    root: PathBuf,
    /// The cargo that started the xtask (`$CARGO`), so every step uses the same toolchain.
    cargo: PathBuf,
    target_dir: PathBuf,
}

impl Workspace {
    fn new() -> Result<Self, String> {
        let root = checkout_root()?;
        let cargo = env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
        let target_dir = match env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => {
                let dir = PathBuf::from(dir);
                println!("== building in {} (from CARGO_TARGET_DIR)", dir.display());
                dir
            }
            _ => {
                let dir = home()
                    .ok_or("neither CARGO_TARGET_DIR nor HOME is set: set CARGO_TARGET_DIR")?
                    .join(".cache/cyberid-target");
                println!(
                    "== CARGO_TARGET_DIR is not set: building in {}, shared by every checkout so \
                     that RocksDB compiles once (set CARGO_TARGET_DIR to build elsewhere)",
                    dir.display()
                );
                dir
            }
        };
        Ok(Self {
            root,
            cargo,
            target_dir,
        })
    }

    /// `cargo <arguments>` in the checkout, building in the shared target directory.
    fn cargo<S: AsRef<OsStr>>(&self, arguments: impl IntoIterator<Item = S>) -> Command {
        let mut command = Command::new(&self.cargo);
        command
            .current_dir(&self.root)
            .env("CARGO_TARGET_DIR", &self.target_dir)
            .args(arguments);
        command
    }
}

fn home() -> Option<PathBuf> {
    env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
}

/// `cargo run -p cyberid -- demo [args...]`, in place of this process: Ctrl-C and the exit
/// status are the demo's own.
fn demo(workspace: &Workspace, arguments: &[String]) -> Result<(), String> {
    system::ensure_packages(system::BUILD)?;
    let mut command = workspace.cargo(["run", "-p", "cyberid", "--", "demo"]);
    command.args(arguments);
    println!("$ {}", show(&command));
    let error = command.exec();
    Err(format!("cannot run cargo: {error}"))
}

fn test(workspace: &Workspace, arguments: &[String]) -> Result<(), String> {
    system::ensure_packages(system::TEST)?;
    let mut command = workspace.cargo(["test", "--workspace"]);
    command.args(arguments);
    run(&mut command)
}

fn check_one_rocksdb(workspace: &Workspace) -> Result<(), String> {
    let mut closures = Vec::new();
    for (name, arguments) in one_rocksdb::COMMANDS {
        let mut command = workspace.cargo(arguments);
        // `--unit-graph` is unstable; it only prints the plan, so the stable toolchain may.
        command
            .args(["-Z", "unstable-options", "--unit-graph"])
            .env("RUSTC_BOOTSTRAP", "1");
        let graph = output(&mut command)?;
        let closure =
            one_rocksdb::rocksdb_closure(&graph).map_err(|error| format!("{name}: {error}"))?;
        closures.push((name, closure));
    }
    let summary = one_rocksdb::compare(&closures)?;
    println!("== {summary}");
    Ok(())
}

fn ci(workspace: &Workspace) -> Result<(), String> {
    system::ensure_packages(system::TEST)?;
    system::ensure_rust_components(&workspace.cargo)?;

    println!("== formatting");
    let mut fmt = workspace.cargo(["fmt", "--all", "--", "--check"]);
    // rustfmt colours its diff by itself; CARGO_TERM_COLOR=never (as in .ci/run) means none.
    if let Some(color) = env::var_os("CARGO_TERM_COLOR") {
        fmt.arg("--color").arg(color);
    }
    run(&mut fmt)?;

    println!("== one RocksDB build for the run command, the test command and clippy");
    check_one_rocksdb(workspace)?;

    println!("== clippy");
    run(&mut workspace.cargo([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;

    println!("== tests (the README's test command)");
    run(&mut workspace.cargo(["test", "--workspace"]))?;

    println!("== fuzzing");
    fuzz::fuzz(workspace, fuzz::DEFAULT_SECONDS)?;

    // Added separately; until it lands there is nothing to run.
    let api_fuzz = Path::new("tests/api-fuzz.sh");
    if workspace.root.join(api_fuzz).is_file() {
        println!("== API fuzzing");
        let mut command = Command::new("bash");
        command
            .arg(api_fuzz)
            .current_dir(&workspace.root)
            .env("CARGO_TARGET_DIR", &workspace.target_dir);
        run(&mut command)?;
    } else {
        println!("== API fuzzing: no {}, skipped", api_fuzz.display());
    }
    println!("== ci: all passed");
    Ok(())
}

/// Runs `command` with its output on the terminal, after printing it.
pub(crate) fn run(command: &mut Command) -> Result<(), String> {
    let shown = show(command);
    println!("$ {shown}");
    let status = command
        .status()
        .map_err(|error| format!("cannot run `{shown}`: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

/// Runs `command` and returns its standard output; its standard error goes to the terminal.
pub(crate) fn output(command: &mut Command) -> Result<String, String> {
    let shown = show(command);
    println!("$ {shown}");
    let output = command
        .output()
        .map_err(|error| format!("cannot run `{shown}`: {error}"))?;
    if !output.status.success() {
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        return Err(format!("`{shown}` failed ({})", output.status));
    }
    String::from_utf8(output.stdout).map_err(|_| format!("`{shown}` printed something not UTF-8"))
}

/// The command as one would type it: the program's name without its directory, after the
/// environment it sets (but the target directory, which is printed once at the start).
fn show(command: &Command) -> String {
    let mut words: Vec<String> = command
        .get_envs()
        .filter(|(name, _)| *name != "CARGO_TARGET_DIR" && *name != "CARGO")
        .filter_map(|(name, value)| {
            Some(format!(
                "{}={}",
                name.to_string_lossy(),
                value?.to_string_lossy()
            ))
        })
        .collect();
    let program = Path::new(command.get_program());
    words.push(
        program
            .file_name()
            .unwrap_or(program.as_os_str())
            .to_string_lossy()
            .into_owned(),
    );
    words.extend(
        command
            .get_args()
            .map(|argument| argument.to_string_lossy().into_owned()),
    );
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_show_as_typed() {
        let mut command = Command::new("/opt/rust/bin/cargo");
        command
            .args(["fuzz", "build"])
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_DIR", "/tmp/t")
            .env_remove("X");
        assert_eq!(show(&command), "RUSTC_BOOTSTRAP=1 cargo fuzz build");
    }

    #[test]
    fn arguments_are_checked() {
        assert!(dispatch(&[]).is_err());
        assert!(
            dispatch(&["nope".into()])
                .unwrap_err()
                .contains("unknown task `nope`")
        );
        for task in ["ci", "check-one-rocksdb"] {
            let error = dispatch(&[task.into(), "x".into()]).unwrap_err();
            assert!(error.contains("takes no argument"), "{error}");
        }
        assert!(
            dispatch(&["fuzz".into(), "0".into()])
                .unwrap_err()
                .contains("seconds")
        );
        assert!(dispatch(&["fuzz".into(), "1".into(), "2".into()]).is_err());
        assert!(dispatch(&["help".into()]).is_ok());
    }
}
