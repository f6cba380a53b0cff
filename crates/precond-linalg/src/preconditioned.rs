//! Preconditioned condition numbers (THEORY.md §2–3): the spectral `κ(SᵀHS)` that sets the rate
//! of iteration (5), and, separately named, the 2-norm `κ(PH)` of the row-scaled Hessian that
//! Van der Sluis' Theorem 2 bounds.

use faer::{Mat, MatRef};

use crate::alloc::{try_collect, try_mat_from_fn};
use crate::dense::matmul;

use crate::condition::{Cond2, extremes_scaled};
use crate::error::{LinalgError, Result};
use crate::layout::{check_positive_vec, check_square, symmetric_part};
use crate::params::{Cond2Params, SymSpectrumParams};
use crate::scaling::{exponent, ldexp, scale_owned, scaled};
use crate::spectrum::{SymSpectrum, default_spectrum_rel_tol, sym_eigenvalues_scaled};

/// The two condition numbers of a preconditioned Hessian (THEORY.md §3, "Two condition numbers":
/// both must be reported, clearly named).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PreconditionedCond {
    /// `κ(SᵀHS) = κ(P^{1/2} H P^{1/2}) = λ_max/λ_min` of the preconditioned Hessian: the number
    /// that sets the convergence rate of the preconditioned iteration (5) (Theorem 1 applied in
    /// `y = S⁻¹x`). `f64::INFINITY` unless `SᵀHS` is positive definite (tolerance of
    /// [`SymSpectrum`]); see [`spectrum`](Self::spectrum) for the smallest positive eigenvalue.
    pub spectral_kappa: f64,
    /// Eigenvalues of `SᵀHS`, ascending (equal to those of `PH`).
    pub eigenvalues: Vec<f64>,
    /// The full spectral record of `SᵀHS` (smallest positive eigenvalue, `κ` over positive
    /// eigenvalues, positive definiteness).
    pub spectrum: SymSpectrum,
    /// `κ₂(PH) = σ_max(PH)/σ_min(PH)`, the 2-norm condition number of the row-scaled matrix
    /// `diag(p) H` (or `P H`): what Theorem 2 / Corollary 1 bound. Differs from
    /// [`spectral_kappa`](Self::spectral_kappa) in general.
    pub row_scaled_kappa2: f64,
    /// The singular-value record of `PH`.
    pub row_scaled: Cond2,
}

/// The record from `m = SᵀHS · 2⁻ᵉ` and `ph = PH · 2⁻ᵉ`, built from the exactly rescaled
/// operands (so that neither product overflows nor underflows): `κ`s are scale-free, the
/// eigenvalues and singular values are multiplied by `2ᵉ`.
pub(crate) fn finish(m: Mat<f64>, ph: MatRef<'_, f64>, e: i32) -> Result<PreconditionedCond> {
    let n = m.nrows();
    let sym = try_mat_from_fn(
        "symmetric part of the preconditioned Hessian",
        n,
        n,
        |i, j| 0.5 * (m[(i, j)] + m[(j, i)]),
    )?;
    let (ev, e_m) = sym_eigenvalues_scaled(sym, &SymSpectrumParams::default())?;
    let spectrum = SymSpectrum::from_scaled(ev, e_m + e, default_spectrum_rel_tol(n))?;
    let svd = Cond2Params::default();
    let (smax, smin, e_ph) = extremes_scaled(ph, "row-scaled Hessian PH", &svd.svd)?;
    let row_scaled = Cond2::from_scaled_extremes(smax, smin, e_ph + e, n, n, svd.rank_rtol_factor)?;
    Ok(PreconditionedCond {
        spectral_kappa: spectrum.kappa,
        eigenvalues: try_collect(
            "eigenvalues of the preconditioned Hessian",
            n,
            spectrum.eigenvalues.iter().copied(),
        )?,
        spectrum,
        row_scaled_kappa2: row_scaled.kappa,
        row_scaled,
    })
}

/// Preconditioned condition numbers for a positive diagonal preconditioner `P = diag(p)`,
/// `S = diag(sqrt(p))` (THEORY.md §2: the Adam/RMSProp/AdaGrad case of §4).
///
/// Scale-safe: `H` and `p` are each divided by a power of two when their largest entry is
/// outside `[2⁻¹²⁸, 2¹²⁹)` (exact), so neither `SᵀHS` nor `PH` overflows or underflows when
/// formed; the eigenvalue and singular value routines rescale again as needed. The `κ`s are
/// scale-free; eigenvalues and singular values are multiplied back, so `κ(2ᵏH) = κ(H)` and
/// `λ(Sᵀ 2ᵏH S) = 2ᵏ λ(SᵀHS)` to rounding for every `k`.
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::DimensionMismatch`] (not square or `p.len() ≠ n`),
/// [`LinalgError::NonFinite`], [`LinalgError::NotSymmetric`], [`LinalgError::InvalidArgument`]
/// for a non-positive `p_i`, [`LinalgError::NoConvergence`], [`LinalgError::Overflow`] when an
/// eigenvalue of `SᵀHS` or a singular value of `PH` exceeds `f64::MAX`.
pub fn precond_cond_diag(h: MatRef<'_, f64>, p: &[f64]) -> Result<PreconditionedCond> {
    let mut hs = symmetric_part(h, "Hessian H")?;
    let n = hs.nrows();
    check_positive_vec(
        p,
        n,
        "diagonal preconditioner p (length must equal rows of H)",
    )?;
    let eh = scale_owned(&mut hs);
    // p · 2^-ep with an even ep, so that sqrt(p · 2^-ep) = sqrt(p) · 2^(-ep/2) exactly
    let ep = even_scale_exponent(p.iter().fold(0.0f64, |a, &v| a.max(v)));
    let p = try_collect(
        "rescaled preconditioner p",
        n,
        p.iter().map(|&v| ldexp(v, -ep)),
    )?;
    let s = try_collect(
        "square root of the preconditioner",
        n,
        p.iter().map(|v| v.sqrt()),
    )?;
    let m = try_mat_from_fn("preconditioned Hessian S H S", n, n, |i, j| {
        s[i] * hs[(i, j)] * s[j]
    })?;
    let ph = try_mat_from_fn("row-scaled Hessian PH", n, n, |i, j| p[i] * hs[(i, j)])?;
    finish(m, ph.as_ref(), eh + ep)
}

/// An even exponent `e` with `max · 2⁻ᵉ ∈ [1, 4)` when `max` is outside `[2⁻¹²⁸, 2¹²⁹)`, 0
/// otherwise.
pub(crate) fn even_scale_exponent(max: f64) -> i32 {
    let e = exponent(max);
    if e.abs() > 128 {
        e - e.rem_euclid(2)
    } else {
        0
    }
}

/// Preconditioned condition numbers for a dense symmetric positive definite preconditioner `P`:
/// `S` is its Cholesky factor (`P = S Sᵀ`, `S` lower triangular). THEORY.md §2, eq. (4)–(5).
///
/// Scale-safe as [`precond_cond_diag`] (`H` and `P` rescaled separately).
///
/// # Errors
/// As [`precond_cond_diag`], plus [`LinalgError::NotPositiveDefinite`] when `P` is not SPD and
/// [`LinalgError::NotSymmetric`] when `P` is not symmetric.
pub fn precond_cond_dense(h: MatRef<'_, f64>, p: MatRef<'_, f64>) -> Result<PreconditionedCond> {
    let mut hs = symmetric_part(h, "Hessian H")?;
    let mut ps = symmetric_part(p, "preconditioner P")?;
    if ps.nrows() != hs.nrows() {
        return Err(LinalgError::DimensionMismatch {
            what: "size of preconditioner P vs Hessian H",
            expected: hs.nrows(),
            got: ps.nrows(),
        });
    }
    let eh = scale_owned(&mut hs);
    let ep = scale_owned(&mut ps);
    let l = crate::dense::cholesky_lower(ps.as_ref(), "preconditioner P")?;
    let s = l.as_ref();
    let hsl = matmul("product H S of precond_cond_dense", hs.as_ref(), s)?;
    let m = matmul("preconditioned Hessian SᵀHS", s.transpose(), hsl.as_ref())?;
    drop(hsl);
    let ph = matmul("product PH", ps.as_ref(), hs.as_ref())?;
    finish(m, ph.as_ref(), eh + ep)
}

/// Preconditioned condition numbers for a given square factor `S` (`P = S Sᵀ`, iteration (4)
/// in `y = S⁻¹x`). `S` is assumed invertible; a singular `S` shows up as a singular `SᵀHS`.
///
/// Scale-safe as [`precond_cond_diag`] (`H` and `S` rescaled separately).
///
/// # Errors
/// As [`precond_cond_diag`] (with `S` checked for emptiness, squareness, finiteness and size).
pub fn precond_cond_factor(h: MatRef<'_, f64>, s: MatRef<'_, f64>) -> Result<PreconditionedCond> {
    let mut hs = symmetric_part(h, "Hessian H")?;
    check_square(s, "preconditioner factor S")?;
    if s.nrows() != hs.nrows() {
        return Err(LinalgError::DimensionMismatch {
            what: "size of preconditioner factor S vs Hessian H",
            expected: hs.nrows(),
            got: s.nrows(),
        });
    }
    let eh = scale_owned(&mut hs);
    let owned = scaled(s)?;
    let (s, es) = owned.as_ref().map_or((s, 0), |(m, e)| (m.as_ref(), *e));
    let hsl = matmul("product H S of precond_cond_factor", hs.as_ref(), s)?;
    let m = matmul("preconditioned Hessian SᵀHS", s.transpose(), hsl.as_ref())?;
    drop(hsl);
    let p = matmul("preconditioner P = S Sᵀ", s, s.transpose())?;
    let ph = matmul("product PH", p.as_ref(), hs.as_ref())?;
    finish(m, ph.as_ref(), eh + 2 * es)
}
