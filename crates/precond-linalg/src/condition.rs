//! Exact condition numbers: the 2-norm `κ(A) = σ_max/σ_min` (THEORY.md notation) and the 1-norm
//! `κ₁(A) = ‖A‖₁‖A⁻¹‖₁`.

use faer::{Mat, MatRef};

#[cfg(doc)]
use crate::error::LinalgError;
use crate::error::Result;
use crate::layout::{check_matrix, check_shape, check_square};
use crate::params::{Cond2Params, SvdParams};
use crate::scaling::{checked_scaled, ldexp, nan_and_max_abs, scaled, scaling_for, unscale};
use crate::tridiagonal::bidiagonal_extremes;
use crate::two_stage::{bidiagonal_two_stage_checked, singular_values_two_stage_checked};

/// The 2-norm condition number of a (possibly rectangular) matrix, with its extreme singular
/// values.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cond2 {
    /// Largest singular value `σ_max = ‖A‖₂`.
    pub sigma_max: f64,
    /// Smallest of the `min(m, n)` singular values.
    pub sigma_min: f64,
    /// `κ(A) = σ_max/σ_min`; `f64::INFINITY` when [`rank_deficient`](Self::rank_deficient).
    pub kappa: f64,
    /// `σ_min ≤ max(m, n) · ε · σ_max` (the factor in front is
    /// [`Cond2Params::rank_rtol_factor`], default 1), including the zero matrix.
    pub rank_deficient: bool,
}

impl Cond2 {
    /// Builds the record from the extreme singular values of an `m × n` matrix.
    pub(crate) fn from_extremes(
        sigma_max: f64,
        sigma_min: f64,
        m: usize,
        n: usize,
        rank_rtol_factor: f64,
    ) -> Self {
        let thresh = rank_rtol_factor * (m.max(n) as f64) * f64::EPSILON * sigma_max;
        let rank_deficient = sigma_max <= 0.0 || sigma_min <= thresh;
        let kappa = if rank_deficient {
            f64::INFINITY
        } else {
            sigma_max / sigma_min
        };
        Self {
            sigma_max,
            sigma_min,
            kappa,
            rank_deficient,
        }
    }

    /// [`from_extremes`](Self::from_extremes) for the singular values of `A · 2⁻ᵉ`: `κ` and the
    /// rank decision are taken on the scaled values (scale-free), then `σ_max`, `σ_min` are
    /// multiplied by `2ᵉ` ([`LinalgError::Overflow`] when `σ_max` exceeds `f64::MAX`).
    pub(crate) fn from_scaled_extremes(
        sigma_max: f64,
        sigma_min: f64,
        e: i32,
        m: usize,
        n: usize,
        rank_rtol_factor: f64,
    ) -> Result<Self> {
        let c = Self::from_extremes(sigma_max, sigma_min, m, n, rank_rtol_factor);
        Ok(Self {
            sigma_max: unscale(c.sigma_max, e, "largest singular value")?,
            sigma_min: unscale(c.sigma_min, e, "smallest singular value")?,
            ..c
        })
    }
}

/// All singular values of `a`, nonincreasing: the two-stage reduction
/// ([`singular_values_two_stage`](crate::kernel::singular_values_two_stage)) when
/// `min(m, n) ≥ params.two_stage_min_n`, faer's SVD without vectors below.
pub(crate) fn singular_values_checked(
    a: MatRef<'_, f64>,
    what: &'static str,
    params: &SvdParams,
) -> Result<Vec<f64>> {
    let (s, e) = singular_values_scaled(a, what, params)?;
    crate::scaling::unscale_all(s, e, "singular value")
}

/// The singular values of `A · 2⁻ᵉ` (nonincreasing) and `e`: `A` is checked, then divided by a
/// power of two when its largest entry is outside `[2⁻¹²⁸, 2¹²⁹)` (exact; see the `scaling`
/// module), so that the SVD meets no overflow or underflow.
fn singular_values_scaled(
    a: MatRef<'_, f64>,
    what: &'static str,
    params: &SvdParams,
) -> Result<(Vec<f64>, i32)> {
    check_matrix(a, what)?;
    match scaled(a)? {
        Some((s, e)) => Ok((singular_values_unscaled(s.as_ref(), params)?, e)),
        None => Ok((singular_values_unscaled(a, params)?, 0)),
    }
}

/// The singular values of an already checked (and scaled) matrix.
fn singular_values_unscaled(a: MatRef<'_, f64>, params: &SvdParams) -> Result<Vec<f64>> {
    if a.nrows().min(a.ncols()) >= params.two_stage_min_n {
        return singular_values_two_stage_checked(
            a,
            params.band_width,
            faer::get_global_parallelism(),
        );
    }
    faer_singular_values(a)
}

/// faer's one-stage SVD without vectors (nonincreasing singular values).
pub(crate) fn faer_singular_values(a: MatRef<'_, f64>) -> Result<Vec<f64>> {
    crate::dense::singular_values(a)
}

/// The 2-norm condition number `κ(A) = σ_max/σ_min` of any non-empty `m × n` matrix (THEORY.md,
/// notation; Theorem 2 is stated in this norm). For `m ≠ n` the smallest of the `min(m, n)`
/// singular values is used, as `numpy.linalg.cond`. A numerically rank-deficient matrix gives
/// `κ = ∞` and `rank_deficient = true` (threshold `max(m, n) · ε · σ_max`, see
/// [`Cond2Params::rank_rtol_factor`]), never NaN. Uses [`Cond2Params::default`].
///
/// Method: `A` is reduced to an upper bidiagonal `B` (orthogonal transformations, backward
/// stable: `B`'s singular values are those of `A + δA`, `‖δA‖ = O(ε‖A‖)`), by faer's one-stage
/// bidiagonalization or, from `min(m, n) = params.svd.two_stage_min_n` on, by the two-stage
/// reduction; then only `σ_max(B)` and `σ_min(B)` are computed, by bisection on `B`'s
/// Golub–Kahan form (Sturm counts; relative accuracy for the bidiagonal, Demmel & Kahan 1990),
/// never the `min(m, n) − 2` values between. A dense SVD (`numpy.linalg.cond`, LAPACK
/// `DGESVD`/`DGESDD`) computes all of them; the accuracy is the same `O(ε σ_max)` absolute
/// (the reduction's), the bisection adds at most a few ulps of each value.
///
/// Cost: the bidiagonalization, `4mn² − 4n³/3` flops for `m ≥ n` (a QR first when
/// `m > 11n/6`), plus `O(min(m, n))` per bisection step (about 60 steps per extreme).
///
/// Scale-safe: a matrix whose largest entry is outside `[2⁻¹²⁸, 2¹²⁹)` (tiny, subnormal or
/// huge entries) is first divided by a power of two so that it is in `[1, 2)` (exact, one
/// `O(mn)` pass), and the singular values are multiplied back; `κ` and the rank decision are
/// scale-free, so `κ(2ᵏA) = κ(A)` to rounding for every `k` the input can take. A singular
/// value below `f64::MIN_POSITIVE` comes back rounded to a subnormal (absolute error at most
/// `2⁻¹⁰⁷⁵`, far below the `ε σ_max` accuracy of the SVD).
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::NonFinite`] (with the entry's position),
/// [`LinalgError::Overflow`] when `σ_max` itself exceeds `f64::MAX` (entries near
/// `f64::MAX`: `κ` is then not reported with an infinite `σ_max`),
/// [`LinalgError::OutOfMemory`] when a buffer cannot be allocated.
pub fn cond2(a: MatRef<'_, f64>) -> Result<Cond2> {
    cond2_with_params(a, &Cond2Params::default())
}

/// [`cond2`] with a tuned rank threshold and singular value computation ([`Cond2Params`]).
///
/// # Errors
/// As [`cond2`], plus [`LinalgError::InvalidArgument`] for a negative or non-finite
/// `rank_rtol_factor` or `svd.band_width == 0`.
pub fn cond2_with_params(a: MatRef<'_, f64>, params: &Cond2Params) -> Result<Cond2> {
    params.check()?;
    let (smax, smin, e) = extremes_scaled(a, "matrix A of cond2", &params.svd)?;
    Cond2::from_scaled_extremes(smax, smin, e, a.nrows(), a.ncols(), params.rank_rtol_factor)
}

/// `(σ_max, σ_min, e)` of `A · 2⁻ᵉ`: `A` is checked and scaled as in
/// [`singular_values_scaled`], then [`extremes_unscaled`].
pub(crate) fn extremes_scaled(
    a: MatRef<'_, f64>,
    what: &'static str,
    params: &SvdParams,
) -> Result<(f64, f64, i32)> {
    check_shape(a, what)?;
    let copy = checked_scaled(a, what)?;
    let (m, e) = match &copy {
        Some((s, e)) => (s.as_ref(), *e),
        None => (a, 0),
    };
    let (x, n) = extremes_unscaled(m, params)?;
    Ok((x, n, e))
}

/// `(σ_max, σ_min)` of an already checked (and scaled) matrix: its upper bidiagonal (the
/// two-stage reduction from `min(m, n) = params.two_stage_min_n` on, faer's one-stage one
/// below), then only the two extreme singular values of that bidiagonal, by bisection
/// ([`bidiagonal_extremes`]): the `min(m, n) − 2` values between are never computed.
fn extremes_unscaled(a: MatRef<'_, f64>, params: &SvdParams) -> Result<(f64, f64)> {
    let k = a.nrows().min(a.ncols());
    let par = faer::get_global_parallelism();
    let (d, e) = crate::pool::on_pool(par, k, || {
        if k >= params.two_stage_min_n {
            bidiagonal_two_stage_checked(a, params.band_width, par)
        } else {
            crate::dense::bidiagonal(a)
        }
    })?;
    bidiagonal_extremes(&d, &e)
}

/// The singular values of `a`, nonincreasing (computed as chosen by [`SvdParams::default`]).
///
/// Scale-safe as [`cond2`]: computed on `a · 2⁻ᵉ` and multiplied by `2ᵉ`.
///
/// # Errors
/// As [`cond2`], plus [`LinalgError::NoConvergence`] if faer's SVD iteration fails.
pub fn singular_values(a: MatRef<'_, f64>) -> Result<Vec<f64>> {
    singular_values_with_params(a, &SvdParams::default())
}

/// [`singular_values`] with a tuned computation ([`SvdParams`]).
///
/// # Errors
/// As [`cond2`], plus [`LinalgError::InvalidArgument`] for `params.band_width == 0`.
pub fn singular_values_with_params(a: MatRef<'_, f64>, params: &SvdParams) -> Result<Vec<f64>> {
    params.check()?;
    singular_values_checked(a, "matrix A of singular_values", params)
}

/// The matrix 1-norm `‖A‖₁ = max_j Σ_i |a_ij|` (largest absolute column sum). No checks: NaN
/// propagates.
///
/// Scale-safe: when the largest entry is outside `[2⁻¹²⁸, 2¹²⁹)` the sums are taken on the
/// entries times a power of two and multiplied back, so the result is `∞` only when the exact
/// norm exceeds `f64::MAX`, and subnormal entries are summed without loss.
pub fn norm1(a: MatRef<'_, f64>) -> f64 {
    if a.ncols() > 0
        && a.nrows() > 0
        && let (false, amax) = nan_and_max_abs(a)
        && let Some(e) = scaling_for(amax)
    {
        return ldexp(norm1_plain(a, -e), e);
    }
    norm1_plain(a, 0)
}

/// Lanes of the column passes: independent accumulators, so the loops vectorize.
const LANES: usize = 8;

/// `Σ_i |c_i|`: [`LANES`] running sums, added pairwise at the end, then the tail.
fn abs_sum(c: &[f64]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = c.chunks_exact(LANES);
    let tail = chunks.remainder();
    for ch in chunks {
        for k in 0..LANES {
            acc[k] += ch[k].abs();
        }
    }
    let pair = |x: [f64; 2]| x[0] + x[1];
    let quad = [
        pair([acc[0], acc[1]]) + pair([acc[2], acc[3]]),
        pair([acc[4], acc[5]]) + pair([acc[6], acc[7]]),
    ];
    tail.iter().fold(quad[0] + quad[1], |s, v| s + v.abs())
}

/// `max_j Σ_i |a_ij| 2ᵉ`, NaN propagating. Contiguous columns (`e = 0`, every caller's
/// common case) sum by lanes ([`abs_sum`]); others, and the rescaled case, sum in order.
pub(crate) fn norm1_plain(a: MatRef<'_, f64>, e: i32) -> f64 {
    let mut best = 0.0f64;
    for j in 0..a.ncols() {
        let c = a.col(j);
        let s = match (e, c.try_as_col_major()) {
            (0, Some(cs)) => abs_sum(cs.as_slice()),
            _ => {
                let mut s = 0.0;
                for i in 0..a.nrows() {
                    s += if e == 0 {
                        c[i].abs()
                    } else {
                        ldexp(c[i].abs(), e)
                    };
                }
                s
            }
        };
        if s > best || s.is_nan() {
            best = s;
        }
    }
    best
}

/// The exact 1-norm condition number `κ₁(A) = ‖A‖₁ ‖A⁻¹‖₁` of a square matrix, through the
/// explicit inverse from a partially pivoted LU factorization (`O(n³)`); the reference the
/// estimates of [`cond_estimate_lu`](crate::cond_estimate_lu) are tested against, equal to
/// `numpy.linalg.cond(a, 1)`. A singular matrix (a zero pivot or a non-finite inverse) gives
/// `f64::INFINITY`.
///
/// Scale-safe: computed as `‖A'‖₁ ‖A'⁻¹‖₁` for `A' = A · 2⁻ᵉ` with its largest entry in
/// `[1, 2)` when `A`'s is outside `[2⁻¹²⁸, 2¹²⁹)` (the value is scale-free), so tiny, subnormal
/// and huge matrices neither overflow their inverse nor lose it to underflow.
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::DimensionMismatch`] if not square,
/// [`LinalgError::NonFinite`].
pub fn cond1(a: MatRef<'_, f64>) -> Result<f64> {
    check_square(a, "matrix A of cond1")?;
    let owned = scaled(a)?;
    let a = owned.as_ref().map_or(a, |(s, _)| s.as_ref());
    let lu = crate::dense::Lu::new(a)?;
    if (0..a.nrows()).any(|i| lu.u_diag(i) == 0.0) {
        return Ok(f64::INFINITY);
    }
    let inv: Mat<f64> = lu.inverse()?;
    let ni = norm1(inv.as_ref());
    if !ni.is_finite() {
        return Ok(f64::INFINITY);
    }
    Ok(norm1(a) * ni)
}
