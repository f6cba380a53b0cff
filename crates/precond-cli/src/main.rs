//! `precond`: reproduce the theory with the library, diagnose a matrix.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use precond_cli::CliError;
use precond_cli::io::{Format, read_matrix};

/// Preconditioning made measurable: the theory's report and conditioning diagnostics.
#[derive(Parser)]
#[command(name = "precond", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Conditioning diagnostics of a matrix file (.mtx, .npy, .csv).
    ///
    /// Prints kappa2 (with the extreme singular values), the exact kappa1 and its Hager-Higham
    /// estimate (square input), the row and column norm spreads, the Van der Sluis equilibrated
    /// kappa2 and its gain, and for symmetric input the eigenvalue extremes, positive
    /// definiteness, kappa and the smallest positive eigenvalue. Infinite values (singular
    /// input) print as ∞ and serialize as null in --json.
    Cond {
        /// The matrix file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// File format (default: from the extension; .txt reads as CSV).
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Cond { file, json, format } => {
            let m = read_matrix(&file, format).map_err(|source| CliError::Read {
                path: file.display().to_string(),
                source,
            })?;
            let fmt = format
                .or_else(|| Format::from_path(&file))
                .unwrap_or(Format::Csv);
            let rep = precond_cli::cond::diagnose(&m, &file, fmt)?;
            if json {
                let s = serde_json::to_string_pretty(&rep).map_err(|e| CliError::Write {
                    path: "<stdout>".into(),
                    message: e.to_string(),
                })?;
                println!("{s}");
            } else {
                print!("{}", rep.to_text());
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
