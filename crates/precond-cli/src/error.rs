//! The program's typed error.

use precond_linalg::LinalgError;

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
    /// A diagnostic failed on a matrix that was read correctly.
    #[error("{what}: {source}")]
    Linalg {
        /// Which diagnostic.
        what: &'static str,
        /// The library's error.
        source: LinalgError,
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
    /// An experiment of the report failed to run.
    #[error("experiment {id}: {message}")]
    Experiment {
        /// The experiment's id.
        id: String,
        /// What failed.
        message: String,
    },
}

impl CliError {
    /// Wraps a library error with the diagnostic's name.
    pub fn linalg(what: &'static str) -> impl FnOnce(LinalgError) -> CliError {
        move |source| CliError::Linalg { what, source }
    }
}
