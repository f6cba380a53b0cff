//! Errors of data-parallel training and checkpoints.

use precond_nn::NnError;
use precond_optim::OptimError;
use thiserror::Error;

/// Everything that can go wrong in [`crate::train_data_parallel`] and the checkpoint functions.
#[derive(Debug, Error)]
pub enum DpError {
    /// A network or training error (sizes, targets, configuration).
    #[error(transparent)]
    Nn(#[from] NnError),
    /// An optimizer error (configuration, state, a step).
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// A collective's arguments do not fit (sizes, counts) or a rank thread failed.
    #[error("communication: {0}")]
    Comm(String),
    /// Something this world size cannot do.
    #[error("{what} is not supported with {world} ranks: {reason}")]
    Unsupported {
        /// The refused feature.
        what: &'static str,
        /// The world size.
        world: usize,
        /// Why.
        reason: &'static str,
    },
    /// Another rank failed (its error is on its own output); this rank stopped with it.
    #[error("rank {rank} failed at {during}; every rank stopped")]
    PeerFailed {
        /// The lowest failing rank.
        rank: usize,
        /// What the ranks were doing.
        during: &'static str,
    },
    /// A non-finite gradient entry (policy `"error"`), at the first such index over all ranks.
    #[error("non-finite gradient at index {index} (step {step})")]
    NonFiniteGradient {
        /// Index in the flat parameter vector.
        index: usize,
        /// The step that would have been taken.
        step: u64,
    },
    /// A checkpoint could not be read or written (path and the system's reason).
    #[error("checkpoint {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The system's message.
        reason: String,
    },
    /// A checkpoint that is not one, is damaged or truncated.
    #[error("checkpoint {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint written by another run configuration than the one resuming it.
    #[error("checkpoint does not match this run: {field} was {saved}, now {now}")]
    Mismatch {
        /// The setting that differs.
        field: &'static str,
        /// In the checkpoint.
        saved: String,
        /// In this run.
        now: String,
    },
}

/// `Result` with [`DpError`].
pub type Result<T> = std::result::Result<T, DpError>;
