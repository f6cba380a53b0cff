//! # precond
//!
//! Preconditioned optimizers, normalization layers and the conditioning diagnostics that explain
//! why they work (see `THEORY.md` in the project's shared notes, restated in the crate docs of each
//! member crate).
//!
//! This facade crate re-exports the member crates:
//! - [`linalg`]: dense and matrix-free conditioning diagnostics (condition numbers, spectra,
//!   equilibration, convergence rates) on faer.

pub use precond_linalg as linalg;
