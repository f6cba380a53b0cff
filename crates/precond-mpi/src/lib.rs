//! Data-parallel training of `precond-nn` networks with ZeRO stage 1 (sharded optimizer state)
//! over a [`Communicator`], and checkpoints.
//!
//! - [`Communicator`]: the collectives the training needs (all-to-all-v, all-gather-v, a max
//!   all-reduce, gather and broadcast of bytes); [`SingleProcess`] and [`ThreadComm`] (ranks as
//!   threads, for tests) are always built, `MpiComm` (Open MPI's world) with the feature `mpi`.
//! - [`train_data_parallel`]: the global batch split over the ranks, gradients exchanged so that
//!   each rank holds the batch's mean gradient on its optimizer shard (summed in rank order), the
//!   shard stepped with `precond_optim::ShardedOptimizer`, parameters all-gathered; the same
//!   batches and, with one rank, the same numbers as `precond_nn::train`.
//! - [`Checkpoint`]: parameters, the unsharded optimizer state, epoch, history and the settings
//!   a resumed run must match; written atomically and checksummed, resumable with any number of
//!   ranks.

mod checkpoint;
mod comm;
mod error;
#[cfg(feature = "mpi")]
mod mpi_comm;
mod trainer;

pub use checkpoint::{
    CHECKPOINT_FILE, Checkpoint, CheckpointMeta, DataId, checkpoint_path, data_fingerprint,
    read_checkpoint, read_checkpoint_shared, write_checkpoint,
};
pub use comm::{Communicator, SingleProcess, ThreadComm};
pub use error::{DpError, Result};
#[cfg(feature = "mpi")]
pub use mpi_comm::MpiComm;
pub use trainer::{DpOptions, DpRun, StepTimings, train_data_parallel};
