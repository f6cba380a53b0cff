//! `precond`: reproduce the theory with the library, diagnose a matrix.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use precond_cli::CliError;
use precond_cli::error::Context;
use precond_cli::io::{CsvHeader, Format, ReadOptions, read_matrix_with};
use precond_cli::report;

/// The header options of CSV input, shared by `cond` and `train`.
#[derive(clap::Args)]
struct HeaderArgs {
    /// The first row of a CSV file is a header (default: guessed; it is a header when one of
    /// its non-empty fields is not a number in Rust's f64 syntax, which includes nan, inf,
    /// -inf and 1e3).
    #[arg(long, conflicts_with = "no_header")]
    header: bool,
    /// The first row of a CSV file is data, not a header.
    #[arg(long)]
    no_header: bool,
}

impl HeaderArgs {
    fn rule(&self) -> CsvHeader {
        match (self.header, self.no_header) {
            (true, _) => CsvHeader::Present,
            (_, true) => CsvHeader::Absent,
            _ => CsvHeader::Auto,
        }
    }
}

/// Preconditioning made measurable: the theory's report and conditioning diagnostics.
#[derive(Parser)]
#[command(name = "precond", version, about, long_about = None, after_help = precond_cli::exit::HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// parsed once per run and matched right away: the size of the largest variant (train's
// options) costs nothing worth a box
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Conditioning diagnostics of a matrix file (.mtx, .npy, .csv).
    ///
    /// Prints kappa2 (with the extreme singular values), the exact kappa1 and its Hager-Higham
    /// estimate (square input), the row and column norm spreads, the Van der Sluis equilibrated
    /// kappa2 and its gain, and for symmetric input the eigenvalue extremes, positive
    /// definiteness, kappa and the smallest positive eigenvalue. Infinite values (singular
    /// input) print as ∞ and serialize as null in --json.
    #[command(after_help = precond_cli::exit::HELP)]
    Cond {
        /// The matrix file: a regular file, or - for standard input (then --format is needed).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// File format (default: from the extension; .txt reads as CSV).
        #[arg(long, value_enum)]
        format: Option<Format>,
        #[command(flatten)]
        header: HeaderArgs,
        /// The most bytes read from the input (default 1 GiB); a longer input is an error.
        #[arg(long, default_value_t = precond_cli::io::DEFAULT_MAX_BYTES)]
        max_bytes: u64,
    },
    /// Train a model on a bundled data set or a CSV file.
    ///
    /// Data: breast_cancer, diabetes, wine, digits, iris, or a CSV path with --target COLUMN.
    /// Writes OUT/history.json (one record per epoch), OUT/loss.svg and OUT/accuracy.svg, and
    /// prints the final train/test metrics. The optimizer is the library's JSON configuration
    /// (the same the C ABI takes), given inline, as @FILE, or built from --opt/--lr/--weight-decay.
    /// Built with the feature `mpi` and started by `mpirun -np P`, it trains data-parallel
    /// (ZeRO-1: each rank holds 1/P of the optimizer state); rank 0 writes the outputs and
    /// history.json records "world_size".
    #[command(after_help = precond_cli::exit::HELP)]
    Train {
        /// Bundled data set name or CSV file.
        #[arg(long)]
        data: String,
        /// Target column of a CSV file.
        #[arg(long)]
        target: Option<String>,
        /// logreg, linreg or mlp:W1,W2,... (default: logreg for labels, linreg for real targets).
        #[arg(long)]
        model: Option<String>,
        /// Normalization (batchnorm/layernorm: standardized inputs plus the norm in every hidden layer).
        #[arg(long, value_enum, default_value = "standardize")]
        norm: precond_cli::train::Norm,
        /// Hidden activation of an MLP: relu, tanh or sigmoid.
        #[arg(long, default_value = "relu")]
        activation: String,
        /// Optimizer JSON, e.g. '{"optimizer": "adam", "lr": 1e-3}', or @file.json.
        #[arg(long, conflicts_with_all = ["opt", "lr", "weight_decay"])]
        optimizer: Option<String>,
        /// Short form: optimizer name (sgd, gd, adagrad, rmsprop, adam, adamw).
        #[arg(long)]
        opt: Option<String>,
        /// Short form: learning rate.
        #[arg(long)]
        lr: Option<f64>,
        /// Short form: weight decay (coupled, except adamw: decoupled).
        #[arg(long)]
        weight_decay: Option<f64>,
        /// Number of epochs.
        #[arg(long, default_value_t = 30)]
        epochs: usize,
        /// Mini-batch size.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Seed of the split, the initialization and the shuffling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Fraction of samples held out for testing.
        #[arg(long, default_value_t = 0.2)]
        test_fraction: f64,
        /// Gradient-norm regularization RHO[:intrinsic|coupled] (default intrinsic): adds the
        /// gradient of ρ ∇fᵀP∇f (P the optimizer's current diagonal preconditioner) or of
        /// ρ ‖∇f‖² (coupled), 2ρ H P ∇f, with one exact Hessian-vector product per step.
        #[arg(long, value_name = "RHO[:MODE]")]
        grad_norm: Option<String>,
        /// Output directory.
        #[arg(long, default_value = "train-out")]
        out: PathBuf,
        #[command(flatten)]
        header: HeaderArgs,
        /// The largest hidden width of --model mlp:W1,... accepted.
        #[arg(long, default_value_t = precond_cli::train::DEFAULT_MAX_WIDTH)]
        max_width: usize,
        /// The most classes accepted (the largest label plus one).
        #[arg(long, default_value_t = precond_cli::train::DEFAULT_MAX_CLASSES)]
        max_classes: usize,
        /// The most bytes read from a CSV data file (regular files or - for standard input); a
        /// JSON configuration file (--optimizer @file) is capped at 16 MiB.
        #[arg(long, default_value_t = precond_cli::io::DEFAULT_MAX_BYTES)]
        max_bytes: u64,
        /// Write a checkpoint into DIR after every epoch (parameters, optimizer state, epoch;
        /// atomic and checksummed).
        #[arg(long, value_name = "DIR")]
        save: Option<PathBuf>,
        /// Continue from the checkpoint in DIR (same data, model, optimizer, batch size and
        /// seed; --epochs is the total), with any number of MPI ranks.
        #[arg(long, value_name = "DIR")]
        resume: Option<PathBuf>,
    },
    /// Reproduce every claim of the theory and write an HTML report.
    ///
    /// Runs the experiments (GD rate vs kappa, change of variables, Van der Sluis, ...), writes
    /// OUT/index.html (one self-contained page: inline CSS and SVG plots, tables, and for each
    /// experiment the claim, the evidence and a verdict computed from the numbers) and
    /// OUT/results.json (every number of the page) and OUT/plots/*.svg, and prints a summary.
    /// OUT is checked before any experiment runs: it must be a directory (not a symbolic link)
    /// where files can be created, or not exist yet. Only those files are written, each through
    /// a temporary file renamed into place (a symbolic link at one of those names is replaced,
    /// never written through), and .svg files in OUT/plots that this run did not write are
    /// removed. Exits with status 3
    /// when a claim does not hold (the files are written all the same).
    #[command(after_help = precond_cli::exit::HELP)]
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
        Command::Cond {
            file,
            json,
            format,
            header,
            max_bytes,
        } => {
            let read = ReadOptions {
                header: header.rule(),
                max_bytes,
            };
            let m = read_matrix_with(&file, format, &read).map_err(|source| CliError::Read {
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
        Command::Train {
            data,
            target,
            model,
            norm,
            activation,
            optimizer,
            opt,
            lr,
            weight_decay,
            epochs,
            batch_size,
            seed,
            test_fraction,
            grad_norm,
            out,
            header,
            max_width,
            max_classes,
            max_bytes,
            save,
            resume,
        } => {
            let grad_norm = grad_norm
                .as_deref()
                .map(precond_cli::train::parse_grad_norm)
                .transpose()
                .map_err(|message| CliError::Argument {
                    arg: "--grad-norm",
                    message,
                })?;
            let json = match optimizer {
                Some(j) => match j.strip_prefix('@') {
                    Some(path) => {
                        let bytes = precond_cli::io::read_bytes_capped(
                            std::path::Path::new(path),
                            precond_cli::io::MAX_CONFIG_BYTES,
                            "train --optimizer @",
                        )
                        .map_err(|source| CliError::Read {
                            path: path.to_string(),
                            source,
                        })?;
                        String::from_utf8(bytes).map_err(|_| CliError::Argument {
                            arg: "--optimizer",
                            message: format!("{path} is not UTF-8 text"),
                        })?
                    }
                    None => j,
                },
                None => {
                    let mut v =
                        serde_json::json!({"optimizer": opt.unwrap_or_else(|| "adam".into())});
                    if let Some(lr) = lr {
                        v["lr"] = lr.into();
                    }
                    if let Some(wd) = weight_decay {
                        v["weight_decay"] = wd.into();
                    }
                    v.to_string()
                }
            };
            let optimizer = precond_optim::OptimizerConfig::from_json(&json)
                .map_err(CliError::within(Context::argument("--optimizer")))?;
            let model = model
                .map(|m| m.parse::<precond_cli::train::Model>())
                .transpose()
                .map_err(|message| CliError::Argument {
                    arg: "--model",
                    message,
                })?;
            let activation = match activation.as_str() {
                "relu" => precond_nn::Activation::Relu,
                "tanh" => precond_nn::Activation::Tanh,
                "sigmoid" => precond_nn::Activation::Sigmoid,
                other => {
                    return Err(CliError::Argument {
                        arg: "--activation",
                        message: format!(
                            "unknown activation '{other}': expected relu, tanh or sigmoid"
                        ),
                    });
                }
            };
            let opts = precond_cli::train::TrainOptions {
                data,
                target,
                model,
                norm,
                activation,
                optimizer,
                epochs,
                batch_size,
                seed,
                test_fraction,
                out,
                header: header.rule(),
                max_width,
                max_classes,
                max_bytes,
                grad_norm,
                save,
                resume,
            };
            let (_, summary) = precond_cli::train::run_train_auto(&opts, true)?;
            print!("{summary}");
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
            // The output folder is checked before any experiment runs.
            report::prepare_out_dir(&out)?;
            let ctx = report::Ctx { quick, seed };
            let rep = report::run_experiments(&selected, &ctx, true)?;
            report::write_report(&rep, &out)?;
            print!("{}", report::summary(&rep, &out));
            Ok(ExitCode::from(rep.exit_code()))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
