//! The fast path for `κ(H)` of a symmetric positive definite matrix (THEORY.md §1): Cholesky and
//! two Lanczos runs, on `H` and on `H⁻¹`, executed concurrently.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{self as llt_factor, LltError};
use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::{
    solve_lower_triangular_in_place, solve_upper_triangular_in_place,
};
use faer::{Accum, ColMut, ColRef, Mat, MatRef, Par};

use crate::error::{LinalgError, Result};
use crate::lanczos::{LanczosOptions, LanczosResult, lanczos_core};
use crate::layout::symmetric_part;
use crate::operator::LinearOperator;
use crate::spectrum::{default_spectrum_rel_tol, tridiagonalize};
use crate::tridiagonal::kth_eigenvalue;

/// Below this dimension [`sym_cond`] uses the dense path (tridiagonalization and bisection).
pub const SYM_COND_KRYLOV_MIN_N: usize = 256;
/// Relative accuracy targeted for each extreme eigenvalue by [`sym_cond`]'s Lanczos path, so that
/// `κ` is accurate to about `2 · 10⁻¹¹ < 10⁻¹⁰` relative (above the rounding floor `~ε κ`).
pub const SYM_COND_REL_TOL: f64 = 1e-11;
/// Lanczos steps allowed per extreme eigenvalue before [`sym_cond`] falls back to the dense path.
pub const SYM_COND_MAX_ITER: usize = 400;

/// `x ↦ H x` on one core (the two Lanczos runs already occupy both).
struct SeqDense<'a>(MatRef<'a, f64>);

impl LinearOperator for SeqDense<'_> {
    fn dim(&self) -> usize {
        self.0.nrows()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        matmul(
            ColMut::from_slice_mut(y).as_mat_mut(),
            Accum::Replace,
            self.0,
            ColRef::from_slice(x).as_mat(),
            1.0,
            Par::Seq,
        );
    }
}

/// `x ↦ H⁻¹ x = L⁻ᵀ L⁻¹ x` through the Cholesky factor `L` (lower triangle of `l`).
struct CholeskyInverse<'a>(MatRef<'a, f64>);

impl LinearOperator for CholeskyInverse<'_> {
    fn dim(&self) -> usize {
        self.0.nrows()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        y.copy_from_slice(x);
        let mut col = ColMut::from_slice_mut(y);
        solve_lower_triangular_in_place(self.0, col.as_mut().as_mat_mut(), Par::Seq);
        solve_upper_triangular_in_place(self.0.transpose(), col.as_mat_mut(), Par::Seq);
    }
}

fn cholesky_seq(mut a: Mat<f64>) -> core::result::Result<Mat<f64>, LltError> {
    let n = a.nrows();
    let mut mem = MemBuffer::new(llt_factor::cholesky_in_place_scratch::<f64>(
        n,
        Par::Seq,
        Default::default(),
    ));
    llt_factor::cholesky_in_place(
        a.as_mut(),
        Default::default(),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    )?;
    Ok(a)
}

/// `κ(H) = λ_max/λ_min` of a symmetric positive definite matrix (THEORY.md §1; the number that
/// sets the GD rate of Theorem 1), without a full eigendecomposition.
///
/// For `n ≥` [`SYM_COND_KRYLOV_MIN_N`], two tasks run concurrently (rayon `join`, one core each):
/// * Lanczos with full reorthogonalization ([`lanczos_extremes`](crate::lanczos_extremes)'s
///   algorithm) on `H` until the largest Ritz value has error bound `min(r, r²/gap) ≤`
///   [`SYM_COND_REL_TOL`] `· θ`;
/// * a Cholesky factorization `H = LLᵀ` (`n³/3` flops, and an exact certificate of positive
///   definiteness), then the same Lanczos on `H⁻¹` (two triangular solves per step) for
///   `1/λ_min`. On `H⁻¹` the relative gap at the bottom of the spectrum is about
///   `(λ₂ − λ₁)/λ₂` instead of `(λ₂ − λ₁)/(λ_n − λ₁)`, so few steps are needed even for large `κ`.
///
/// If either run does not converge within [`SYM_COND_MAX_ITER`] steps, and for small `n`, the
/// dense path is used: the tridiagonalization of [`sym_extremes`](crate::sym_extremes) and
/// Sturm bisection for the two extreme
/// eigenvalues (as [`sym_extremes`](crate::sym_extremes)), with positive definiteness decided as
/// in [`sym_spectrum`](crate::sym_spectrum): `λ_min > n · ε · max|λ|`.
///
/// # Errors
/// As [`sym_spectrum`](crate::sym_spectrum), plus [`LinalgError::NotPositiveDefinite`] when `H`
/// is not positive definite (with the failing Cholesky pivot as `index`, or `index = 0` and
/// `value = λ_min` from the dense path).
pub fn sym_cond(h: MatRef<'_, f64>) -> Result<f64> {
    let hs = symmetric_part(h, "symmetric matrix H of sym_cond")?;
    let n = hs.nrows();
    let rel = default_spectrum_rel_tol(n);
    if n >= SYM_COND_KRYLOV_MIN_N {
        let opts = LanczosOptions {
            max_iter: SYM_COND_MAX_ITER,
            rel_tol: SYM_COND_REL_TOL,
            seed: 0x5eed_c0de,
            reorthogonalize: true,
        };
        let hr = hs.as_ref();
        let (top, bottom): (Result<LanczosResult>, Result<LanczosResult>) = rayon::join(
            || lanczos_core(&SeqDense(hr), opts, [false, true]),
            || {
                let l = cholesky_seq(hr.to_owned()).map_err(|e| {
                    let LltError::NonPositivePivot { index } = e;
                    LinalgError::NotPositiveDefinite {
                        what: "symmetric matrix H of sym_cond",
                        index,
                        value: f64::NAN,
                    }
                })?;
                lanczos_core(&CholeskyInverse(l.as_ref()), opts, [false, true])
            },
        );
        let (top, inv) = (top?, bottom?);
        if top.converged && inv.converged && inv.lambda_max > 0.0 {
            let lambda_min = 1.0 / inv.lambda_max;
            if lambda_min > rel * top.lambda_max {
                return Ok(top.lambda_max / lambda_min);
            }
        }
    }
    let (lambda_min, lambda_max) = if n == 1 {
        (hs[(0, 0)], hs[(0, 0)])
    } else {
        let (d, e) = tridiagonalize(hs, faer::get_global_parallelism());
        (kth_eigenvalue(&d, &e, 0), kth_eigenvalue(&d, &e, n - 1))
    };
    if lambda_min <= rel * lambda_min.abs().max(lambda_max.abs()) {
        return Err(LinalgError::NotPositiveDefinite {
            what: "symmetric matrix H of sym_cond",
            index: 0,
            value: lambda_min,
        });
    }
    Ok(lambda_max / lambda_min)
}
