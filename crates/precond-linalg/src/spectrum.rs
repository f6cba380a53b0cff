//! Spectral data of a symmetric matrix (THEORY.md §1: `κ(H) = λ_max/λ_min` for SPD `H`, and the
//! smallest *positive* eigenvalue that replaces `λ_min` for singular Hessians in Theorem 1).

use faer::{Mat, MatRef, Par};

use crate::error::{LinalgError, Result};
use crate::layout::symmetric_part;
use crate::params::SymSpectrumParams;
use crate::scaling::{scale_owned, unscale};
use crate::tridiagonal::kth_eigenvalue;
use crate::two_stage::sym_tridiagonal_two_stage;

/// Eigenvalues and conditioning of a symmetric matrix.
///
/// Tolerance convention: with `τ = rel_tol · max_i |λ_i|`, an eigenvalue is *positive* when
/// `λ > τ`, the matrix is *positive definite* when `λ_min > τ`, and the smallest positive
/// eigenvalue is the smallest `λ_i > τ`. The default `rel_tol` is `n · ε` (`ε = f64::EPSILON`),
/// the size of the rounding error of a backward-stable eigensolver relative to `‖H‖₂`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SymSpectrum {
    /// All eigenvalues, ascending.
    pub eigenvalues: Vec<f64>,
    /// Smallest (algebraically) eigenvalue.
    pub lambda_min: f64,
    /// Largest eigenvalue.
    pub lambda_max: f64,
    /// `λ_min > τ` (see the type's documentation).
    pub positive_definite: bool,
    /// `κ(H) = λ_max/λ_min` when positive definite, `f64::INFINITY` otherwise.
    pub kappa: f64,
    /// The smallest eigenvalue `> τ`, `None` when no eigenvalue is positive.
    pub smallest_positive: Option<f64>,
    /// `λ_max / smallest_positive` (Theorem 1 for singular Hessians); `f64::INFINITY` when there
    /// is no positive eigenvalue. Equals [`kappa`](Self::kappa) for positive definite input.
    pub kappa_positive: f64,
    /// The relative tolerance used (`τ = rel_tol · max|λ|`).
    pub rel_tol: f64,
}

impl SymSpectrum {
    /// Classifies ascending `eigenvalues` with relative tolerance `rel_tol`.
    pub(crate) fn from_sorted(eigenvalues: Vec<f64>, rel_tol: f64) -> Self {
        let lambda_min = eigenvalues[0];
        let lambda_max = eigenvalues[eigenvalues.len() - 1];
        let tau = rel_tol * lambda_min.abs().max(lambda_max.abs());
        let positive_definite = lambda_min > tau;
        let kappa = if positive_definite {
            lambda_max / lambda_min
        } else {
            f64::INFINITY
        };
        let smallest_positive = eigenvalues.iter().copied().find(|&l| l > tau);
        let kappa_positive = smallest_positive.map_or(f64::INFINITY, |s| lambda_max / s);
        Self {
            eigenvalues,
            lambda_min,
            lambda_max,
            positive_definite,
            kappa,
            smallest_positive,
            kappa_positive,
            rel_tol,
        }
    }

    /// [`from_sorted`](Self::from_sorted) for the eigenvalues of `H · 2⁻ᵉ`: classified and `κ`
    /// taken on the scaled values (scale-free), then every eigenvalue multiplied by `2ᵉ`
    /// ([`LinalgError::Overflow`] when one exceeds `f64::MAX`).
    pub(crate) fn from_scaled(eigenvalues: Vec<f64>, e: i32, rel_tol: f64) -> Result<Self> {
        let mut s = Self::from_sorted(eigenvalues, rel_tol);
        if e == 0 {
            return Ok(s);
        }
        let eigenvalues =
            crate::scaling::unscale_all(core::mem::take(&mut s.eigenvalues), e, "eigenvalue")?;
        Ok(Self {
            lambda_min: eigenvalues[0],
            lambda_max: eigenvalues[eigenvalues.len() - 1],
            smallest_positive: s
                .smallest_positive
                .map(|l| unscale(l, e, "smallest positive eigenvalue"))
                .transpose()?,
            eigenvalues,
            ..s
        })
    }
}

/// Default relative tolerance of [`sym_spectrum`]: `n · ε`.
pub fn default_spectrum_rel_tol(n: usize) -> f64 {
    (n.max(1) as f64) * f64::EPSILON
}

/// All eigenvalues of the symmetric matrix `h` with positive-definiteness, `κ` and the smallest
/// positive eigenvalue, classified with the default relative tolerance `n · ε`
/// (see [`SymSpectrum`]). THEORY.md §1, Theorem 1.
///
/// `h` must be symmetric to a relative tolerance of `10⁻⁶` (see
/// [`LinalgError::NotSymmetric`]); its symmetric part is used. The reduction to tridiagonal
/// form is chosen by [`SymSpectrumParams::default`].
///
/// Scale-safe: when the largest entry of `h` is outside `[2⁻¹²⁸, 2¹²⁹)` (tiny, subnormal or
/// huge entries) the eigenvalues are computed for `h · 2⁻ᵉ` with its largest entry in `[1, 2)`
/// (an exact scaling, one `O(n²)` pass beside the `O(n³)` reduction) and multiplied by `2ᵉ`;
/// the classification, `κ` and `kappa_positive` are taken before unscaling, so
/// `λ(2ᵏH) = 2ᵏλ(H)` and `κ(2ᵏH) = κ(H)` to rounding for every `k`. An eigenvalue below
/// `f64::MIN_POSITIVE` comes back rounded to a subnormal (absolute error at most `2⁻¹⁰⁷⁵`).
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::DimensionMismatch`] (not square),
/// [`LinalgError::NonFinite`], [`LinalgError::NotSymmetric`], [`LinalgError::NoConvergence`],
/// [`LinalgError::Overflow`] when an eigenvalue exceeds `f64::MAX` in magnitude (entries
/// near `f64::MAX`).
pub fn sym_spectrum(h: MatRef<'_, f64>) -> Result<SymSpectrum> {
    sym_spectrum_with_tol(h, default_spectrum_rel_tol(h.nrows()))
}

/// [`sym_spectrum`] with an explicit relative tolerance `rel_tol ≥ 0` (eigenvalues `≤ rel_tol ·
/// max|λ|` count as zero or negative).
///
/// # Errors
/// As [`sym_spectrum`], plus [`LinalgError::InvalidArgument`] for a negative or non-finite
/// `rel_tol`.
pub fn sym_spectrum_with_tol(h: MatRef<'_, f64>, rel_tol: f64) -> Result<SymSpectrum> {
    sym_spectrum_with_params(h, rel_tol, &SymSpectrumParams::default())
}

/// [`sym_spectrum_with_tol`] with a tuned reduction ([`SymSpectrumParams`]: when to use the
/// two-stage tridiagonalization, and its band width).
///
/// # Errors
/// As [`sym_spectrum_with_tol`], plus [`LinalgError::InvalidArgument`] for
/// `params.band_width == 0`.
pub fn sym_spectrum_with_params(
    h: MatRef<'_, f64>,
    rel_tol: f64,
    params: &SymSpectrumParams,
) -> Result<SymSpectrum> {
    if !(rel_tol.is_finite() && rel_tol >= 0.0) {
        return Err(LinalgError::InvalidArgument {
            name: "rel_tol",
            reason: format!("{rel_tol} must be finite and non-negative"),
        });
    }
    params.check()?;
    let hs = symmetric_part(h, "symmetric matrix H")?;
    let (ev, e) = sym_eigenvalues_scaled(hs, params)?;
    SymSpectrum::from_scaled(ev, e, rel_tol)
}

/// Ascending eigenvalues of `H · 2⁻ᵉ` and `e` for a checked symmetric `H`, scaled in place by a
/// power of two when its largest entry is outside the safe range (`e = 0` otherwise).
pub(crate) fn sym_eigenvalues_scaled(
    mut h: Mat<f64>,
    params: &SymSpectrumParams,
) -> Result<(Vec<f64>, i32)> {
    let e = scale_owned(&mut h);
    Ok((sym_eigenvalues_unchecked(h, params)?, e))
}

/// Ascending eigenvalues of a symmetric matrix already checked: the two-stage reduction
/// ([`sym_eigenvalues_two_stage`](crate::kernel::sym_eigenvalues_two_stage)) from
/// `params.two_stage_min_n` on, the blocked one-stage reduction
/// ([`sym_eigenvalues_blocked`](crate::kernel::sym_eigenvalues_blocked)) below, then the
/// root-free QL/QR iteration on the tridiagonal matrix. Takes the matrix by value: both
/// reductions work in place (no second copy).
pub(crate) fn sym_eigenvalues_unchecked(
    h: Mat<f64>,
    params: &SymSpectrumParams,
) -> Result<Vec<f64>> {
    let (d, e) = tridiagonalize(h, faer::get_global_parallelism(), params)?;
    crate::two_stage::tridiagonal_eigenvalues(&d, &e)
}

/// The two extreme eigenvalues of a symmetric matrix.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SymExtremes {
    /// Smallest eigenvalue.
    pub lambda_min: f64,
    /// Largest eigenvalue.
    pub lambda_max: f64,
}

/// Tridiagonalizes a symmetric matrix (lower triangle read) and returns its diagonal and
/// off-diagonal: the two-stage reduction from `params.two_stage_min_n` on, the blocked
/// one-stage Householder tridiagonalization (LAPACK `DSYTRD`) below (both `4n³/3` flops).
pub(crate) fn tridiagonalize(
    a: Mat<f64>,
    par: Par,
    params: &SymSpectrumParams,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = a.nrows();
    // both reductions run on the rayon pool as a whole (`pool::on_pool`)
    if n >= params.two_stage_min_n {
        return sym_tridiagonal_two_stage(a, params.band_width, par);
    }
    crate::sytrd::sym_tridiagonal_blocked(a, crate::sytrd::block_for(n), par)
}

/// The smallest and largest eigenvalues of the symmetric matrix `h`, without the full spectrum:
/// a Householder tridiagonalization (the two-stage reduction of
/// [`sym_eigenvalues_two_stage`](crate::kernel::sym_eigenvalues_two_stage) from
/// [`SymSpectrumParams::two_stage_min_n`] on, the blocked one-stage reduction below)
/// followed by Sturm-sequence bisection for the two extreme eigenvalues of the tridiagonal
/// matrix (`O(n)` per bisection step, as LAPACK's `DSTEBZ`). Same backward error as a full symmetric eigensolver (absolute error `≈ ε‖H‖₂`
/// per eigenvalue), at the cost of the reduction alone.
///
/// Scale-safe as [`sym_spectrum`]: computed on `h · 2⁻ᵉ` and multiplied by `2ᵉ`.
///
/// # Errors
/// As [`sym_spectrum`].
pub fn sym_extremes(h: MatRef<'_, f64>) -> Result<SymExtremes> {
    sym_extremes_with_params(h, &SymSpectrumParams::default())
}

/// [`sym_extremes`] with a tuned reduction ([`SymSpectrumParams`]).
///
/// # Errors
/// As [`sym_extremes`], plus [`LinalgError::InvalidArgument`] for `params.band_width == 0`.
pub fn sym_extremes_with_params(
    h: MatRef<'_, f64>,
    params: &SymSpectrumParams,
) -> Result<SymExtremes> {
    params.check()?;
    let mut hs = symmetric_part(h, "symmetric matrix H")?;
    let n = hs.nrows();
    if n == 1 {
        return Ok(SymExtremes {
            lambda_min: hs[(0, 0)],
            lambda_max: hs[(0, 0)],
        });
    }
    let s = scale_owned(&mut hs);
    let (d, e) = tridiagonalize(hs, faer::get_global_parallelism(), params)?;
    Ok(SymExtremes {
        lambda_min: unscale(kth_eigenvalue(&d, &e, 0), s, "smallest eigenvalue")?,
        lambda_max: unscale(kth_eigenvalue(&d, &e, n - 1), s, "largest eigenvalue")?,
    })
}
