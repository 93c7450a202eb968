//! What the machine needs besides Rust, and installing what it lacks: Debian packages through
//! apt-get, rustup components, cargo-fuzz. Nothing here asks a question: apt runs with `-y`,
//! `DEBIAN_FRONTEND=noninteractive` and no stdin, and sudo (used only when not root) with `-n`.

use std::env;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::run;

/// A Debian package the build or the tests need, how to tell it is there, and why.
#[derive(Debug)]
pub(crate) struct Requirement {
    pub(crate) package: &'static str,
    probe: Probe,
    why: &'static str,
}

#[derive(Debug)]
enum Probe {
    /// An executable of this name on `PATH` (a file: a shell builtin such as `kill` does not
    /// count, the tests run the program).
    Program(&'static str),
    /// The package itself, through `dpkg -s`: for libraries and headers.
    Installed,
}

pub(crate) const LIBCLANG: Requirement = Requirement {
    package: "libclang-dev",
    probe: Probe::Installed,
    why: "librocksdb-sys's build script runs bindgen, which reads RocksDB's C header with libclang",
};
pub(crate) const GXX: Requirement = Requirement {
    package: "g++",
    probe: Probe::Program("g++"),
    why: "RocksDB (and libFuzzer, for fuzzing) is C++, compiled from source",
};
pub(crate) const GCC: Requirement = Requirement {
    package: "gcc",
    probe: Probe::Program("cc"),
    why: "the C compiler and linker (mimalloc and RocksDB's C parts; rustc links with it)",
};

pub(crate) const PROTOC: Requirement = Requirement {
    package: "protobuf-compiler",
    probe: Probe::Program("protoc"),
    why: "etcd-client's build script compiles etcd's gRPC protocol with protoc (the etcd store)",
};

/// What `cargo run -p cyberid` needs to compile.
pub(crate) const BUILD: &[&Requirement] = &[&LIBCLANG, &GXX, &GCC, &PROTOC];

/// What `cargo test --workspace` needs: [`BUILD`] and the programs and headers the tests use.
pub(crate) const TEST: &[&Requirement] = &[
    &LIBCLANG,
    &GXX,
    &GCC,
    &PROTOC,
    &Requirement {
        package: "openssl",
        probe: Probe::Program("openssl"),
        why: "the OpenSSL interoperability tests sign and verify with the openssl command",
    },
    &Requirement {
        package: "libssl-dev",
        probe: Probe::Installed,
        why: "the SM2 differential test compiles a reference verifier against libcrypto",
    },
    &Requirement {
        package: "mount",
        probe: Probe::Program("mount"),
        why: "the full-disk test mounts a small tmpfs",
    },
    &Requirement {
        package: "procps",
        probe: Probe::Program("kill"),
        why: "the server tests stop a node with the kill command",
    },
    &Requirement {
        package: "etcd-server",
        probe: Probe::Program("etcd"),
        why: "the etcd store's tests start a real 3-member etcd cluster on loopback",
    },
];

/// Installs whichever of `requirements` the machine lacks, saying what and why.
pub(crate) fn ensure_packages(requirements: &[&Requirement]) -> Result<(), String> {
    let missing: Vec<&Requirement> = requirements
        .iter()
        .copied()
        .filter(|requirement| !requirement.present())
        .collect();
    let names = |list: &[&Requirement]| {
        list.iter()
            .map(|requirement| requirement.package)
            .collect::<Vec<_>>()
            .join(" ")
    };
    if missing.is_empty() {
        println!("== system packages: all present ({})", names(requirements));
        return Ok(());
    }
    println!("== installing with apt-get what this machine lacks:");
    let width = missing
        .iter()
        .map(|requirement| requirement.package.len())
        .max()
        .unwrap_or(0);
    for requirement in &missing {
        println!("   {:width$}  {}", requirement.package, requirement.why);
    }
    if !on_path("apt-get") {
        return Err(format!(
            "no apt-get here: install the equivalent of these Debian packages yourself, then \
             run this again: {}",
            names(&missing)
        ));
    }
    let mut prefix: Vec<&str> = Vec::new();
    if !is_root()? {
        if !on_path("sudo") {
            return Err(format!(
                "installing needs root, and there is no sudo: as root, run\n  \
                 apt-get update && apt-get install -y {}",
                names(&missing)
            ));
        }
        // `-n`: fail rather than ask for a password.
        prefix.extend(["sudo", "-n"]);
    }
    let apt = |arguments: &[&str]| {
        let mut command = Command::new(prefix.first().copied().unwrap_or("env"));
        command.args(prefix.iter().skip(1));
        if !prefix.is_empty() {
            command.arg("env");
        }
        command
            .arg("DEBIAN_FRONTEND=noninteractive")
            .arg("apt-get")
            .args(arguments);
        command.stdin(Stdio::null());
        command
    };
    run(&mut apt(&["update", "-q"]))?;
    let mut install = vec!["install", "-y", "-q"];
    install.extend(missing.iter().map(|requirement| requirement.package));
    run(&mut apt(&install))?;
    let still: Vec<&Requirement> = missing
        .into_iter()
        .filter(|requirement| !requirement.present())
        .collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "still missing after apt-get install: {}",
            names(&still)
        ))
    }
}

impl Requirement {
    fn present(&self) -> bool {
        match self.probe {
            Probe::Program(name) => on_path(name),
            Probe::Installed => dpkg_installed(self.package),
        }
    }
}

/// `dpkg -s` says "install ok installed" (it also answers, with another status, for a package
/// removed but not purged). Without dpkg, nothing is known to be installed, and the caller's
/// missing-apt-get message lists the packages to install by other means.
fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg")
        .args(["-s", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|output| {
            output.status.success()
                && String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .any(|line| line.trim() == "Status: install ok installed")
        })
}

/// An executable file named `name` in a directory of `PATH` (what `command -v` answers, minus
/// shell builtins, functions and aliases).
pub(crate) fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    env::var_os("PATH")
        .is_some_and(|paths| env::split_paths(&paths).any(|dir| executable(&dir.join(name))))
}

fn is_root() -> Result<bool, String> {
    let output = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|error| format!("cannot run `id -u` to tell whether this is root: {error}"))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// Adds the rustup components `cargo fmt` and `cargo clippy` if either command is missing.
pub(crate) fn ensure_rust_components(cargo: &Path) -> Result<(), String> {
    for (subcommand, component) in [("fmt", "rustfmt"), ("clippy", "clippy")] {
        let works = Command::new(cargo)
            .args([subcommand, "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !works {
            println!("== installing the rustup component {component} (for `cargo {subcommand}`)");
            let mut command = Command::new("rustup");
            command.args(["component", "add", component]);
            run(&mut command)?;
        }
    }
    Ok(())
}

/// The cargo-fuzz release `cargo xtask fuzz` installs when there is none.
pub(crate) const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Installs cargo-fuzz ([`CARGO_FUZZ_VERSION`], with its own lock file) if `cargo fuzz` is
/// missing; an installed cargo-fuzz of another version is used as it is.
pub(crate) fn ensure_cargo_fuzz(cargo: &Path) -> Result<(), String> {
    let version = Command::new(cargo)
        .args(["fuzz", "--version"])
        .stderr(Stdio::null())
        .output();
    if let Ok(output) = version
        && output.status.success()
    {
        println!("== {}", String::from_utf8_lossy(&output.stdout).trim());
        return Ok(());
    }
    println!(
        "== installing cargo-fuzz {CARGO_FUZZ_VERSION} (libFuzzer through cargo): a few minutes, once"
    );
    let mut command = Command::new(cargo);
    command.args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]);
    // Its own temporary build directory: nothing of it belongs in the workspace's.
    command.env_remove("CARGO_TARGET_DIR");
    run(&mut command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tests_need_what_the_build_needs() {
        for requirement in BUILD {
            assert!(TEST.iter().any(|test| test.package == requirement.package));
        }
        let mut packages: Vec<&str> = TEST.iter().map(|requirement| requirement.package).collect();
        let count = packages.len();
        packages.sort_unstable();
        packages.dedup();
        assert_eq!(packages.len(), count, "a package listed twice");
    }

    #[test]
    fn finds_programs_on_path() {
        assert!(on_path("sh"));
        assert!(!on_path("no-such-program-cyberid"));
    }
}
