//! Lanczos with full reorthogonalization for the algebraically smallest and largest eigenvalues
//! of a symmetric operator (THEORY.md §1: `κ = λ_max/λ_min` of Hessians too large to form).

use crate::alloc::{try_collect, try_vec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{LinalgError, Result};
use crate::operator::LinearOperator;
use crate::triangle::Kernels;
use crate::tridiagonal::{eigenvector, kth_eigenvalue};

/// Options of [`lanczos_extremes`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LanczosOptions {
    /// Maximum number of Lanczos steps (operator applications); clipped to the dimension.
    pub max_iter: usize,
    /// Relative accuracy requested for each extreme eigenvalue: stop when the error bound
    /// `min(r, r²/gap)` of both extreme Ritz values is `≤ rel_tol · |θ|` (or below the rounding
    /// floor `10 ε max|θ|`), `r = β_k |e_kᵀ y|` the Ritz residual, `gap` the distance to the
    /// next Ritz value.
    pub rel_tol: f64,
    /// Seed of the random (uniform) start vector: the result is deterministic for a seed.
    pub seed: u64,
    /// Full reorthogonalization (two Gram–Schmidt passes against every previous Lanczos vector;
    /// stores `max_iter` vectors of length `n`). Without it only three vectors are kept and
    /// spurious copies of converged eigenvalues may appear (the extremes still converge).
    pub reorthogonalize: bool,
}

impl Default for LanczosOptions {
    fn default() -> Self {
        Self {
            max_iter: 500,
            rel_tol: 1e-10,
            seed: 0x5eed,
            reorthogonalize: true,
        }
    }
}

/// Result of [`lanczos_extremes`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LanczosResult {
    /// Smallest Ritz value (an upper bound of `λ_min` up to rounding).
    pub lambda_min: f64,
    /// Largest Ritz value (a lower bound of `λ_max` up to rounding).
    pub lambda_max: f64,
    /// Lanczos steps performed (= operator applications).
    pub iterations: usize,
    /// Both extremes met the tolerance (or an invariant subspace was found).
    pub converged: bool,
    /// Ritz residual norms `‖A v − θ v‖` for `[λ_min, λ_max]`.
    pub residuals: [f64; 2],
    /// Error bounds `min(r, r²/gap)` for `[λ_min, λ_max]`.
    pub error_bounds: [f64; 2],
}

impl LanczosResult {
    /// `λ_max/λ_min` (meaningful for a positive definite operator).
    pub fn kappa(&self) -> f64 {
        if self.lambda_min > 0.0 {
            self.lambda_max / self.lambda_min
        } else {
            f64::INFINITY
        }
    }
}

pub(crate) fn check_output(y: &[f64], iteration: usize) -> Result<()> {
    if let Some(k) = y.iter().position(|v| !v.is_finite()) {
        return Err(LinalgError::NonFinite {
            what: "operator output (row = entry, col = iteration)",
            row: k,
            col: iteration,
            value: y[k],
        });
    }
    Ok(())
}

pub(crate) fn check_dim(n: usize) -> Result<()> {
    if n == 0 {
        return Err(LinalgError::Empty {
            what: "linear operator",
            rows: 0,
            cols: 0,
        });
    }
    Ok(())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub(crate) fn random_unit(n: usize, seed: u64) -> Result<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = try_collect(
        "start vector",
        n,
        (0..n).map(|_| rng.random_range(-1.0..1.0)),
    )?;
    let nrm = dot(&v, &v).sqrt();
    if nrm > 0.0 {
        v.iter_mut().for_each(|x| *x /= nrm);
    } else {
        v[0] = 1.0;
    }
    Ok(v)
}

/// Extreme Ritz pairs of the Lanczos tridiagonal: (θ, residual, bound) for min and max.
fn ritz_extremes(alpha: &[f64], beta: &[f64], beta_last: f64) -> [(f64, f64, f64); 2] {
    let k = alpha.len();
    let e = &beta[..k - 1];
    let mut out = [(0.0, 0.0, 0.0); 2];
    for (slot, (idx, next)) in [(0usize, 1usize), (k - 1, k.saturating_sub(2))]
        .into_iter()
        .enumerate()
    {
        let theta = kth_eigenvalue(alpha, e, idx);
        let y = eigenvector(alpha, e, theta);
        let r = beta_last.abs() * y[k - 1].abs();
        let gap = if k >= 2 {
            (kth_eigenvalue(alpha, e, next) - theta).abs()
        } else {
            0.0
        };
        let bound = if gap > 0.0 { r.min(r * r / gap) } else { r };
        out[slot] = (theta, r, bound);
    }
    out
}

/// The algebraically smallest and largest eigenvalues of a symmetric operator by the Lanczos
/// method (with full reorthogonalization by default), to the relative tolerance of
/// [`LanczosOptions::rel_tol`]. Deterministic for a seed. Returns `converged = false` (not an
/// error) with the current Ritz values when `max_iter` steps were not enough; reaching the full
/// dimension `n` with reorthogonalization, or a Lanczos breakdown (invariant subspace), is exact.
///
/// faer's `partial_self_adjoint_eigen` finds largest-*magnitude* eigenvalues with an absolute
/// tolerance; this routine targets both algebraic ends with a relative one.
///
/// # Errors
/// [`LinalgError::Empty`] for `dim() == 0`, [`LinalgError::InvalidArgument`] for `max_iter == 0`
/// or a non-positive / non-finite `rel_tol`, [`LinalgError::NonFinite`] when the operator
/// returns NaN/∞ (row = entry, col = iteration).
pub fn lanczos_extremes<O: LinearOperator + ?Sized>(
    op: &O,
    opts: LanczosOptions,
) -> Result<LanczosResult> {
    lanczos_core(op, opts, [true, true])
}

/// Lanczos stopping when the requested ends (`[min, max]`) have converged.
pub(crate) fn lanczos_core<O: LinearOperator + ?Sized>(
    op: &O,
    opts: LanczosOptions,
    want: [bool; 2],
) -> Result<LanczosResult> {
    let n = op.dim();
    check_dim(n)?;
    if opts.max_iter == 0 {
        return Err(LinalgError::InvalidArgument {
            name: "max_iter",
            reason: "must be at least 1".into(),
        });
    }
    if !(opts.rel_tol.is_finite() && opts.rel_tol > 0.0) {
        return Err(LinalgError::InvalidArgument {
            name: "rel_tol",
            reason: format!("{} must be finite and positive", opts.rel_tol),
        });
    }
    let m = opts.max_iter.min(n);
    const BUF: &str = "Lanczos vectors";
    let mut basis: Vec<Vec<f64>> =
        try_collect(BUF, if opts.reorthogonalize { m } else { 2 }, None)?;
    let mut q = random_unit(n, opts.seed)?;
    let mut q_prev = try_vec(BUF, n, 0.0)?;
    let mut w = try_vec(BUF, n, 0.0)?;
    let mut alpha: Vec<f64> = try_collect("Lanczos coefficients", m, None)?;
    let mut beta: Vec<f64> = try_collect("Lanczos coefficients", m, None)?;
    let mut last = [(0.0, f64::INFINITY, f64::INFINITY); 2];
    // vectorized (AVX2+FMA when available) dot products and updates: with full
    // reorthogonalization they are O(n·j) per step, comparable to a matrix-free product
    let kern = Kernels::new();
    let dot = |a: &[f64], b: &[f64]| kern.dot(a, b);
    let axpy = |alpha: f64, x: &[f64], y: &mut [f64]| kern.axpy_neg(x, -alpha, y);
    for j in 0..m {
        op.apply(&q, &mut w);
        check_output(&w, j)?;
        let a = dot(&q, &w);
        axpy(-a, &q, &mut w);
        if j > 0 {
            axpy(-beta[j - 1], &q_prev, &mut w);
        }
        let mut a_corr = 0.0;
        if opts.reorthogonalize {
            for _pass in 0..2 {
                for v in &basis {
                    let c = dot(v, &w);
                    axpy(-c, v, &mut w);
                }
                let c = dot(&q, &w);
                axpy(-c, &q, &mut w);
                a_corr += c;
            }
        }
        alpha.push(a + a_corr);
        let b = dot(&w, &w).sqrt();
        let ext = ritz_extremes(&alpha, &beta, b);
        last = ext;
        let scale = ext[0].0.abs().max(ext[1].0.abs());
        let floor = 10.0 * f64::EPSILON * scale;
        let ok = |(theta, _r, bound): (f64, f64, f64)| {
            bound <= opts.rel_tol * theta.abs() || bound <= floor
        };
        let breakdown = b <= f64::EPSILON * scale.max(f64::MIN_POSITIVE);
        let exhausted = opts.reorthogonalize && j + 1 == n;
        if breakdown || exhausted || ((!want[0] || ok(ext[0])) && (!want[1] || ok(ext[1]))) {
            let exact = breakdown || exhausted;
            return Ok(LanczosResult {
                lambda_min: ext[0].0,
                lambda_max: ext[1].0,
                iterations: j + 1,
                converged: true,
                residuals: if exact {
                    [0.0, 0.0]
                } else {
                    [ext[0].1, ext[1].1]
                },
                error_bounds: if exact {
                    [0.0, 0.0]
                } else {
                    [ext[0].2, ext[1].2]
                },
            });
        }
        beta.push(b);
        let inv = 1.0 / b;
        if opts.reorthogonalize {
            basis.push(try_collect(BUF, n, q.iter().copied())?);
        }
        core::mem::swap(&mut q_prev, &mut q);
        q.iter_mut().zip(&w).for_each(|(qi, wi)| *qi = wi * inv);
    }
    Ok(LanczosResult {
        lambda_min: last[0].0,
        lambda_max: last[1].0,
        iterations: m,
        converged: false,
        residuals: [last[0].1, last[1].1],
        error_bounds: [last[0].2, last[1].2],
    })
}
