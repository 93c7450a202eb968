//! `cyberid`: the verification tier's command-line front end.
#![forbid(unsafe_code)]

mod demo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// cyberid: verification tier of the national network identity service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Issue Web Certificates and verify them, showing every kind of verdict. Exits non-zero if
    /// any verdict differs from the one the protocol requires.
    Demo {
        /// Print the certificate as a QR code in the terminal.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        qr: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { qr } => demo::run(&mut std::io::stdout().lock(), qr),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cyberid: {error}");
            ExitCode::FAILURE
        }
    }
}
