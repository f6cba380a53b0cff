//! Conditioning diagnostics on faer (THEORY.md sections 1–4).

mod error;
mod operator;

pub use error::{LinalgError, Result};
pub use operator::LinearOperator;
