//! `precond`: reproduce the theory with the library, diagnose a matrix.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use precond_cli::CliError;
use precond_cli::io::{Format, read_matrix};
use precond_cli::report;

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
    /// Reproduce every claim of the theory and write an HTML report.
    ///
    /// Runs the experiments (GD rate vs kappa, change of variables, Van der Sluis, ...), writes
    /// OUT/index.html (one self-contained page: inline CSS and SVG plots, tables, and for each
    /// experiment the claim, the evidence and a verdict computed from the numbers) and
    /// OUT/results.json (every number of the page), and prints a summary. Exits with status 2
    /// when a claim does not hold.
    Report {
        /// Small problems for CI (seconds instead of minutes).
        #[arg(long)]
        quick: bool,
        /// Run only these experiments (comma-separated ids or numbers, e.g. 1,van_der_sluis).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Seed of every random number in the experiments.
        #[arg(long, default_value_t = 20240611)]
        seed: u64,
        /// Output directory.
        #[arg(long, default_value = "report")]
        out: PathBuf,
        /// List the experiments and exit.
        #[arg(long)]
        list: bool,
    },
}

fn run(cli: Cli) -> Result<ExitCode, CliError> {
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
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            quick,
            only,
            seed,
            out,
            list,
        } => {
            let all = precond_cli::experiments::registry();
            if list {
                for e in &all {
                    println!("{:>2}  {:<22} {}", e.number(), e.id(), e.title());
                }
                return Ok(ExitCode::SUCCESS);
            }
            let selected = report::select(&all, &only)?;
            let ctx = report::Ctx { quick, seed };
            let rep = report::run_experiments(&selected, &ctx, true)?;
            report::write_report(&rep, &out)?;
            print!("{}", report::summary(&rep, &out));
            Ok(if rep.holds == rep.experiments.len() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
