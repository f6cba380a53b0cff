//! The `precond` program as a library: file readers and diagnostics for `precond cond`, and the
//! experiment registry, plots and HTML page behind `precond report`.
//!
//! The binary (`src/main.rs`) only parses arguments and calls into here, so the integration
//! tests and the readers' property tests exercise the same code the program runs.

pub mod cond;
pub mod error;
pub mod exit;
pub mod io;

pub use error::CliError;
pub mod experiments;
pub mod report;
pub mod train;
