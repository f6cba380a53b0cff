//! The program's typed error.
//!
//! An error of a library (`precond-linalg`, `precond-optim`, `precond-nn`) is kept whole as the
//! [`std::error::Error::source`] of the [`CliError`] that reports it, with a [`Context`] saying
//! what the program was doing.

use std::fmt;

use precond_linalg::LinalgError;
use precond_nn::NnError;
use precond_optim::OptimError;

use crate::io::ReadError;

/// Everything that can stop a `precond` command. The `Display` text is the single line the
/// program prints after `error: `.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The matrix file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file given.
        path: String,
        /// What was wrong with it.
        source: ReadError,
    },
    /// A `precond-linalg` routine failed: a diagnostic on a matrix that was read correctly, or a
    /// step of an experiment.
    #[error("{context}: {source}")]
    Linalg {
        /// What the program was doing.
        context: Context,
        /// The library's error.
        source: LinalgError,
    },
    /// A `precond-optim` call failed: an optimizer configuration was rejected, or an experiment
    /// step failed.
    #[error("{context}: {source}")]
    Optim {
        /// What the program was doing.
        context: Context,
        /// The library's error.
        source: OptimError,
    },
    /// A `precond-nn` call failed: a data set, model or split was rejected, or training or an
    /// experiment step failed.
    #[error("{context}: {source}")]
    Nn {
        /// What the program was doing.
        context: Context,
        /// The library's error.
        source: NnError,
    },
    /// Writing an output file failed.
    #[error("cannot write {path}: {message}")]
    Write {
        /// The path.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// A command-line value that parsed but makes no sense.
    #[error("invalid argument {arg}: {message}")]
    Argument {
        /// The option.
        arg: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
    /// An input exceeds a size cap of the program (e.g. the classes its labels give).
    #[error("{what}: {value}, more than the cap {limit} set by {option}")]
    Limit {
        /// What was counted, and in what.
        what: String,
        /// The count.
        value: usize,
        /// The cap.
        limit: usize,
        /// The option that sets the cap.
        option: &'static str,
    },
    /// An experiment of the report failed to run, outside any library call.
    #[error("experiment {id}: {message}")]
    Experiment {
        /// The experiment's id.
        id: String,
        /// What failed.
        message: String,
    },
}

/// What the program was doing when a library call failed: the first part of a [`CliError`]'s
/// message, before the library's own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Context {
    /// A diagnostic of `precond cond`, by name (`"2-norm condition number"`).
    Diagnostic(&'static str),
    /// An experiment of the report, or the `train` command, by id.
    Experiment(String),
    /// Reading an input (a data set name or a file path).
    Input(String),
    /// The value of a command-line option, and what it was needed for (if the library's
    /// message alone does not say it).
    Argument {
        /// The option.
        arg: &'static str,
        /// What the value was needed for.
        need: Option<&'static str>,
    },
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Context::Diagnostic(what) => f.write_str(what),
            Context::Experiment(id) => write!(f, "experiment {id}"),
            Context::Input(what) => write!(f, "reading {what}"),
            Context::Argument { arg, need: None } => write!(f, "invalid argument {arg}"),
            Context::Argument {
                arg,
                need: Some(need),
            } => write!(f, "invalid argument {arg}: {need}"),
        }
    }
}

impl Context {
    /// An option's value, rejected by a library whose message says why.
    pub fn argument(arg: &'static str) -> Self {
        Context::Argument { arg, need: None }
    }
}

/// A library error that a [`CliError`] carries as its source.
pub trait Cause: std::error::Error + Sized {
    /// The [`CliError`] reporting `self`, which happened while doing `context`.
    fn within(self, context: Context) -> CliError;
}

impl Cause for LinalgError {
    fn within(self, context: Context) -> CliError {
        CliError::Linalg {
            context,
            source: self,
        }
    }
}

impl Cause for OptimError {
    fn within(self, context: Context) -> CliError {
        CliError::Optim {
            context,
            source: self,
        }
    }
}

impl Cause for NnError {
    fn within(self, context: Context) -> CliError {
        CliError::Nn {
            context,
            source: self,
        }
    }
}

impl CliError {
    /// The process exit status for this error (see [`crate::exit`]):
    /// [`USAGE`](crate::exit::USAGE) when a command-line value is rejected (the messages that
    /// start with `invalid argument`), [`ERROR`](crate::exit::ERROR) for everything else (input
    /// files, library failures on valid arguments, output files).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Argument { .. } => crate::exit::USAGE,
            CliError::Linalg { context, .. }
            | CliError::Optim { context, .. }
            | CliError::Nn { context, .. }
                if matches!(context, Context::Argument { .. }) =>
            {
                crate::exit::USAGE
            }
            _ => crate::exit::ERROR,
        }
    }

    /// Wraps a library error with the diagnostic's name.
    pub fn linalg(what: &'static str) -> impl FnOnce(LinalgError) -> CliError {
        move |source| source.within(Context::Diagnostic(what))
    }

    /// Wraps a library error with what the program was doing.
    pub fn within<E: Cause>(context: Context) -> impl FnOnce(E) -> CliError {
        move |source| source.within(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// The source of `e`, as the concrete type `T`.
    fn source_as<T: std::error::Error + 'static>(e: &CliError) -> Option<&T> {
        e.source().and_then(|s| s.downcast_ref::<T>())
    }

    #[test]
    fn out_of_memory_in_a_diagnostic_is_an_error_exit_naming_the_bytes() {
        let oom = LinalgError::OutOfMemory {
            what: "copy of the matrix",
            bytes: 32_000_000,
        };
        let e = CliError::linalg("2-norm condition number")(oom.clone());
        assert_eq!(e.exit_code(), crate::exit::ERROR);
        assert_eq!(crate::exit::ERROR, 1);
        assert_eq!(source_as::<LinalgError>(&e), Some(&oom));
        let msg = e.to_string();
        assert!(
            msg.contains("32000000 bytes") && msg.contains("copy of the matrix"),
            "{msg}"
        );
    }

    #[test]
    fn library_errors_are_kept_as_sources() {
        let linalg = LinalgError::Empty {
            what: "matrix A",
            rows: 0,
            cols: 3,
        };
        let e = CliError::linalg("2-norm condition number")(linalg.clone());
        assert_eq!(source_as::<LinalgError>(&e), Some(&linalg));
        assert_eq!(e.to_string(), format!("2-norm condition number: {linalg}"));

        let optim = precond_optim::OptimizerConfig::from_json("{\"optimizer\": \"nope\"}")
            .expect_err("unknown optimizer");
        let e = CliError::within(Context::argument("--optimizer"))(optim.clone());
        assert_eq!(source_as::<OptimError>(&e), Some(&optim));
        assert_eq!(
            e.to_string(),
            format!("invalid argument --optimizer: {optim}")
        );

        let nn = precond_nn::Dataset::builtin("nope").expect_err("unknown data set");
        let e = CliError::within(Context::Experiment("train".into()))(nn.clone());
        assert_eq!(source_as::<NnError>(&e), Some(&nn));
        assert_eq!(e.to_string(), format!("experiment train: {nn}"));

        let e = CliError::within(Context::Argument {
            arg: "--model",
            need: Some("logreg needs class labels"),
        })(nn.clone());
        assert_eq!(source_as::<NnError>(&e), Some(&nn));
        assert_eq!(
            e.to_string(),
            format!("invalid argument --model: logreg needs class labels: {nn}")
        );
    }

    #[test]
    fn the_chain_reaches_through_the_network_crate() {
        // an optimizer error inside training: CliError -> NnError -> OptimError
        let optim = precond_optim::OptimizerConfig::from_json("{\"optimizer\": \"nope\"}")
            .expect_err("unknown optimizer");
        let e = CliError::within(Context::Experiment("train".into()))(NnError::from(optim.clone()));
        let nn = source_as::<NnError>(&e).expect("nn source");
        assert!(matches!(nn, NnError::Optimizer(inner) if *inner == optim));
        let inner = nn.source().and_then(|s| s.downcast_ref::<OptimError>());
        assert_eq!(inner, Some(&optim));
    }
}
