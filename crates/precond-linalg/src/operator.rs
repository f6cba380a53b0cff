//! Matrix-free linear operators.

use faer::linalg::matmul::matmul;
use faer::{Accum, ColMut, ColRef, Mat, MatRef, Par};

use crate::error::Result;
use crate::layout::check_square;

/// A square linear operator `x ↦ A x` on `R^n`, for matrix-free spectra (Lanczos, power iteration,
/// Hutchinson). Implementors must be linear; the symmetric-spectrum routines additionally assume
/// `A = Aᵀ`.
pub trait LinearOperator {
    /// The dimension `n` (the operator maps `R^n → R^n`).
    fn dim(&self) -> usize;
    /// Writes `y = A x`. Both slices have length [`dim`](Self::dim); callers guarantee it.
    fn apply(&self, x: &[f64], y: &mut [f64]);
}

impl<O: LinearOperator + ?Sized> LinearOperator for &O {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        (**self).apply(x, y)
    }
}

/// Below this many entries a dense matrix-vector product runs sequentially (rayon overhead
/// exceeds the gain).
const PAR_MATVEC_ENTRIES: usize = 1 << 18;

fn dense_apply(a: MatRef<'_, f64>, x: &[f64], y: &mut [f64]) {
    let par = if a.nrows() * a.ncols() >= PAR_MATVEC_ENTRIES {
        faer::get_global_parallelism()
    } else {
        Par::Seq
    };
    matmul(
        ColMut::from_slice_mut(y).as_mat_mut(),
        Accum::Replace,
        a,
        ColRef::from_slice(x).as_mat(),
        1.0,
        par,
    );
}

/// A dense square matrix as a [`LinearOperator`] (owned or borrowed), checked once at
/// construction. Used to test the matrix-free routines against the dense eigensolver, and to run
/// them on explicitly formed Hessians.
#[derive(Debug, Clone)]
pub struct DenseOperator<'a> {
    a: MatRef<'a, f64>,
}

impl<'a> DenseOperator<'a> {
    /// Wraps a square, non-empty, finite matrix.
    ///
    /// # Errors
    /// [`LinalgError::Empty`](crate::LinalgError::Empty),
    /// [`LinalgError::DimensionMismatch`](crate::LinalgError::DimensionMismatch) (not square),
    /// [`LinalgError::NonFinite`](crate::LinalgError::NonFinite).
    pub fn new(a: MatRef<'a, f64>) -> Result<Self> {
        check_square(a, "matrix of DenseOperator")?;
        Ok(Self { a })
    }

    /// The wrapped matrix.
    pub fn matrix(&self) -> MatRef<'a, f64> {
        self.a
    }
}

impl LinearOperator for DenseOperator<'_> {
    fn dim(&self) -> usize {
        self.a.nrows()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        dense_apply(self.a, x, y);
    }
}

/// A square `Mat` is an operator directly (unchecked: use [`DenseOperator::new`] for input
/// validation).
impl LinearOperator for Mat<f64> {
    fn dim(&self) -> usize {
        self.nrows()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        dense_apply(self.as_ref(), x, y);
    }
}

/// A square `MatRef` is an operator directly (unchecked).
impl LinearOperator for MatRef<'_, f64> {
    fn dim(&self) -> usize {
        self.nrows()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        dense_apply(*self, x, y);
    }
}
