//! # precond
//!
//! Preconditioned optimizers, normalization layers and the conditioning diagnostics that explain
//! why they work. The theory (restated in each member crate's docs, numbered as in the source
//! paper): AdaGrad, RMSProp and Adam are gradient descent in rescaled variables `y = S⁻¹x`
//! (a diagonal preconditioner `P = S Sᵀ`), input normalization, BatchNorm and LayerNorm improve the
//! conditioning of each unit's Hessian `(1/N) Ā D Āᵀ`, and weight decay is L2 regularization of the
//! intrinsic variables `y` (with an intrinsic L1 alongside it).
//!
//! This facade re-exports the member crates:
//! - [`linalg`]: dense and matrix-free conditioning diagnostics (2-norm and spectral condition
//!   numbers, condition estimates, preconditioned κ, Van der Sluis equilibration, convergence rates,
//!   Lanczos / power iteration / Hutchinson).
//! - [`optim`]: torch-exact, fused, composable optimizers (GD, SGD, AdaGrad, RMSProp, Adam, AdamW,
//!   fixed preconditioners) with coupled / intrinsic / proximal regularizers and an observable
//!   preconditioner `P_k`.
//! - [`nn`]: fully connected networks, input normalization, BatchNorm, LayerNorm, the bundled data
//!   sets, Hessian structure (Theorems 5–7) and a training loop.
//! - [`mpi`]: data-parallel training with the optimizer state sharded over the ranks (ZeRO
//!   stage 1) through a communicator (one process, threads, or Open MPI with the feature `mpi`),
//!   and checkpoints that resume at any number of ranks.
//!
//! The C ABI lives in the `precond-ffi` crate (`libprecond`), the `precond` program in
//! `precond-cli`.

pub use precond_linalg as linalg;
pub use precond_mpi as mpi;
pub use precond_nn as nn;
pub use precond_optim as optim;
