//! Matrix-free linear operators.

/// A square linear operator `x ↦ A x` on `R^n`, for matrix-free spectra (Lanczos, power iteration,
/// Hutchinson). Implementors must be linear; the symmetric-spectrum routines additionally assume
/// `A = Aᵀ`.
pub trait LinearOperator {
    /// The dimension `n` (the operator maps `R^n → R^n`).
    fn dim(&self) -> usize;
    /// Writes `y = A x`. Both slices have length [`dim`](Self::dim); callers guarantee it.
    fn apply(&self, x: &[f64], y: &mut [f64]);
}
