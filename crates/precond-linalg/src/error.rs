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
    /// A matrix required to be symmetric positive definite is not: a Cholesky pivot (or a
    /// diagonal entry, for the equilibration of [`sym_equilibrate`](crate::sym_equilibrate))
    /// at `index` is not positive.
    #[error("{what} is not positive definite (pivot {index} is {value})")]
    NotPositiveDefinite {
        /// Which argument.
        what: &'static str,
        /// Index of the first non-positive pivot or diagonal entry (0-based).
        index: usize,
        /// The offending pivot / diagonal value (NaN when the factorization does not report it).
        value: f64,
    },
    /// A matrix required to be symmetric is not: some `|a[i,j] − a[j,i]| > 10⁻⁶ · max|a|`
    /// (relative to the largest entry magnitude). Within that tolerance the symmetric routines
    /// use the symmetric part `(a + aᵀ)/2`; finite-difference Hessians are symmetric only to
    /// about this accuracy.
    #[error("{what} is not symmetric: a[{row},{col}] = {upper} but a[{col},{row}] = {lower}")]
    NotSymmetric {
        /// Which argument.
        what: &'static str,
        /// Row of the upper-triangle entry.
        row: usize,
        /// Column of the upper-triangle entry.
        col: usize,
        /// `a[row, col]`.
        upper: f64,
        /// `a[col, row]`.
        lower: f64,
    },
    /// A matrix required to have full (column) rank does not, numerically:
    /// `sigma_min <= threshold`.
    #[error("{what} is rank deficient: sigma_min = {sigma_min:e}, sigma_max = {sigma_max:e}")]
    RankDeficient {
        /// Which argument.
        what: &'static str,
        /// Its smallest singular value.
        sigma_min: f64,
        /// Its largest singular value.
        sigma_max: f64,
    },
    /// A row, column or vector whose norm must be positive is zero.
    #[error("{what}: entry {index} has zero norm")]
    ZeroNorm {
        /// Which argument.
        what: &'static str,
        /// Index of the zero row / column / entry.
        index: usize,
    },
    /// An iterative method (or a LAPACK-style QR iteration inside faer) did not converge.
    #[error("{what} did not converge after {iterations} iterations (residual {residual:e})")]
    NoConvergence {
        /// Which algorithm.
        what: &'static str,
        /// Iterations performed.
        iterations: usize,
        /// The last residual measure (NaN when unknown).
        residual: f64,
    },
    /// A result that the input determines exactly but that does not fit in an `f64`: its
    /// magnitude `2^log2` exceeds `f64::MAX` (for example the largest eigenvalue of a matrix
    /// whose entries are all near `f64::MAX`, or the scaling `1/‖aᵢ‖` of a row whose norm is
    /// below `2⁻¹⁰²⁴`). Condition numbers are computed on an exactly rescaled matrix and never
    /// give this error on their own; it names the field that would have been infinite.
    #[error("{what} does not fit in an f64: its magnitude is about 2^{log2:.1}")]
    Overflow {
        /// The quantity that overflows.
        what: &'static str,
        /// Its base-2 logarithm (approximate; 1024 when only the overflow itself is known).
        log2: f64,
    },
    /// The allocator refused a buffer whose size follows from the input (a copy of the matrix,
    /// a factor, or the workspace of a decomposition): nothing was changed and the process keeps
    /// running. `bytes` is the size requested (saturated at `u64::MAX` when the size computation
    /// itself overflows).
    #[error("out of memory: could not allocate {bytes} bytes for {what}")]
    OutOfMemory {
        /// What the buffer was for.
        what: &'static str,
        /// The number of bytes requested.
        bytes: u64,
    },
    /// A scalar or vector argument outside its domain.
    #[error("invalid argument {name}: {reason}")]
    InvalidArgument {
        /// The argument's name.
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T> = core::result::Result<T, LinalgError>;
