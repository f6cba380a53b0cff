//! The crate's typed error.

/// Everything that can go wrong in `precond-linalg`. Each variant carries the data that locates
/// the problem (sizes, row/column, iteration counts).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LinalgError {
    /// Two operands whose sizes must agree do not.
    #[error("dimension mismatch in {what}: expected {expected}, got {got}")]
    DimensionMismatch {
        /// What was being compared (e.g. "rows of H vs length of p").
        what: &'static str,
        /// The size required.
        expected: usize,
        /// The size given.
        got: usize,
    },
    /// A matrix or vector with no entries where at least one is required.
    #[error("empty input: {what} has shape {rows}x{cols}")]
    Empty {
        /// Which argument.
        what: &'static str,
        /// Its number of rows.
        rows: usize,
        /// Its number of columns.
        cols: usize,
    },
    /// A NaN or infinite entry.
    #[error("non-finite entry {value} in {what} at row {row}, column {col}")]
    NonFinite {
        /// Which argument.
        what: &'static str,
        /// Row index (0-based).
        row: usize,
        /// Column index (0-based; 0 for vectors).
        col: usize,
        /// The offending value.
        value: f64,
    },
}

/// Shorthand for results of this crate.
pub type Result<T> = core::result::Result<T, LinalgError>;
