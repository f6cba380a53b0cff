//! The fast path for `κ(H)` of a symmetric positive definite matrix (THEORY.md §1): Cholesky and
//! two Lanczos runs, on `H` and on `H⁻¹`, executed concurrently.

use std::sync::atomic::{AtomicBool, Ordering};

use faer::dyn_stack::MemStack;
use faer::linalg::cholesky::llt::factor::{self as llt_factor, LltError};
use faer::{Mat, MatRef, Par};

use crate::error::{LinalgError, Result};
use crate::lanczos::{LanczosOptions, LanczosResult, lanczos_core};
use crate::layout::{SymView, symmetric_view};
use crate::params::SymCondParams;
use crate::scaling::{ldexp, scaled};
use crate::spectrum::{default_spectrum_rel_tol, tridiagonalize};
use crate::triangle::{CholeskyInverse, SymLower};
use crate::tridiagonal::kth_eigenvalue;

fn cholesky(a: MatRef<'_, f64>, par: Par) -> Result<Mat<f64>> {
    let n = a.nrows();
    let mut a = crate::alloc::try_to_owned("Cholesky factor of H (sym_cond)", a)?;
    let mut mem = crate::alloc::try_mem(
        "workspace of the Cholesky factorization",
        llt_factor::cholesky_in_place_scratch::<f64>(n, par, Default::default()),
    )?;
    llt_factor::cholesky_in_place(
        a.as_mut(),
        Default::default(),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| {
        let LltError::NonPositivePivot { index } = e;
        LinalgError::NotPositiveDefinite {
            what: "symmetric matrix H of sym_cond",
            index,
            value: f64::NAN,
        }
    })?;
    Ok(a)
}

/// `κ(H) = λ_max/λ_min` of a symmetric positive definite matrix (THEORY.md §1; the number that
/// sets the GD rate of Theorem 1), without a full eigendecomposition.
///
/// For `n ≥` [`SymCondParams::krylov_min_n`] (default 256), two tasks run concurrently (rayon
/// `join`, one core each):
/// * Lanczos with full reorthogonalization ([`lanczos_extremes`](crate::lanczos_extremes)'s
///   algorithm) on `H` until the largest Ritz value has error bound `min(r, r²/gap) ≤`
///   [`SymCondParams::rel_tol`] `· θ` (default `10⁻¹¹`), each step one symmetric product that
///   reads only the lower triangle of `H` (`4n²` bytes: at `n = 2000` it stays in a 32 MB
///   last-level cache);
/// * a Cholesky factorization `H = LLᵀ` (`n³/3` flops, and an exact certificate of positive
///   definiteness), then the same Lanczos on `H⁻¹` (two triangular solves per step, each one
///   pass over the triangle of `L`) for `1/λ_min`. Once the first task has finished, each
///   solve also uses the freed core (for `n ≥ 768`; the split solves give the same bits with
///   one thread or two, so the result does not depend on the timing). On `H⁻¹` the relative
///   gap at the bottom of the spectrum is about `(λ₂ − λ₁)/λ₂` instead of
///   `(λ₂ − λ₁)/(λ_n − λ₁)`, so few steps are needed even for large `κ`.
///
/// If either run does not converge within [`SymCondParams::max_iter`] steps (default 400), and
/// for small `n`, the dense path is used: the tridiagonalization of
/// [`sym_extremes`](crate::sym_extremes) and Sturm bisection for the two extreme eigenvalues
/// (as [`sym_extremes`](crate::sym_extremes)), with positive definiteness decided as in
/// [`sym_spectrum`](crate::sym_spectrum): `λ_min > n · ε · max|λ|`.
///
/// Scale-safe: `κ` is scale-free, and a matrix whose largest entry is outside
/// `[2⁻¹²⁸, 2¹²⁹)` (tiny, subnormal or huge) is first divided by a power of two so that it is in
/// `[1, 2)` (exact, one `O(n²)` pass and copy, only for such matrices), so `κ(2ᵏH) = κ(H)` to
/// rounding for every `k`.
///
/// # Errors
/// As [`sym_spectrum`](crate::sym_spectrum), plus [`LinalgError::NotPositiveDefinite`] when `H`
/// is not positive definite (with the failing Cholesky pivot as `index`, or `index = 0` and
/// `value = λ_min` from the dense path).
pub fn sym_cond(h: MatRef<'_, f64>) -> Result<f64> {
    sym_cond_with_params(h, &SymCondParams::default())
}

/// [`sym_cond()`](fn@sym_cond) with tuned parameters ([`SymCondParams`]: the size from which the
/// Lanczos path is tried, its accuracy target and step limit, the dense path's reduction).
///
/// # Errors
/// As [`sym_cond()`](fn@sym_cond), plus [`LinalgError::InvalidArgument`] for a non-positive
/// `rel_tol`, `max_iter == 0` or `spectrum.band_width == 0`.
pub fn sym_cond_with_params(h: MatRef<'_, f64>, params: &SymCondParams) -> Result<f64> {
    params.check()?;
    let mut hv = symmetric_view(h, "symmetric matrix H of sym_cond")?;
    // scale-safe: κ is scale-free, so a matrix outside the safe range is replaced by its exact
    // power-of-two rescaling (the Lanczos run on H⁻¹ would overflow or underflow otherwise)
    let mut scale_exp = 0;
    if let Some((s, e)) = scaled(hv.as_ref())? {
        hv = SymView::Owned(s);
        scale_exp = e;
    }
    let hr = hv.as_ref();
    let n = hr.nrows();
    let rel = default_spectrum_rel_tol(n);
    if n >= params.krylov_min_n {
        let opts = LanczosOptions {
            max_iter: params.max_iter,
            rel_tol: params.rel_tol,
            seed: 0x5eed_c0de,
            reorthogonalize: true,
        };
        // Measured (BENCHMARKS.md): the sequential Cholesky running beside the Lanczos run on
        // `H` beats a two-thread Cholesky followed by both Lanczos runs.
        // set when the H run is over: from then on each H⁻¹ product uses both cores
        let top_done = AtomicBool::new(false);
        let (top, inv): (Result<LanczosResult>, Result<LanczosResult>) = rayon::join(
            || {
                let r = lanczos_core(&SymLower::new(hr), opts, [false, true]);
                top_done.store(true, Ordering::Release);
                r
            },
            || {
                let l = cholesky(hr, Par::Seq)?;
                let op = CholeskyInverse::new(l.as_ref());
                let op = if rayon::current_num_threads() >= 2 {
                    op.with_helper_flag(&top_done)
                } else {
                    op
                };
                lanczos_core(&op, opts, [false, true])
            },
        );
        let (top, inv) = (top?, inv?);
        if top.converged && inv.converged && inv.lambda_max > 0.0 {
            let lambda_min = 1.0 / inv.lambda_max;
            if lambda_min > rel * top.lambda_max {
                return Ok(top.lambda_max / lambda_min);
            }
        }
    }
    let (lambda_min, lambda_max) = if n == 1 {
        (hr[(0, 0)], hr[(0, 0)])
    } else {
        let hs = match hv {
            SymView::Owned(m) => m,
            SymView::Borrowed(b) => crate::alloc::try_to_owned("copy of the symmetric matrix", b)?,
        };
        let (d, e) = tridiagonalize(hs, faer::get_global_parallelism(), &params.spectrum)?;
        (kth_eigenvalue(&d, &e, 0), kth_eigenvalue(&d, &e, n - 1))
    };
    if lambda_min <= rel * lambda_min.abs().max(lambda_max.abs()) {
        return Err(LinalgError::NotPositiveDefinite {
            what: "symmetric matrix H of sym_cond",
            index: 0,
            value: ldexp(lambda_min, scale_exp),
        });
    }
    Ok(lambda_max / lambda_min)
}
