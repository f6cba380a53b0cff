//! Two-stage reductions for full spectra (LAPACK 3.7+ `DSYEVD_2STAGE` / `DGESVD` 2-stage,
//! PLASMA, ELPA): dense → band with matrix–matrix Householder updates, band → tridiagonal or
//! bidiagonal by bulge chasing in cache, then the eigenvalues / singular values of the
//! tridiagonal or bidiagonal matrix.
//!
//! Why: the one-stage Householder reductions (LAPACK `DSYTRD`/`DGEBRD`, faer's
//! `tridiag_in_place`/`bidiag_in_place`) do half of their flops as matrix–vector products that
//! stream the whole trailing matrix from memory for every column. Here all `O(n³)` work is in
//! matrix–matrix products (faer `matmul`, all cores), and the band stage is `O(n²b)` on a band
//! of `2bn` or `3bn` numbers that fits in the L2 cache.

pub(crate) mod kernels;
mod pwk;
mod svd;
mod sym;
pub(crate) mod symm;

use faer::dyn_stack::MemStack;
use faer::{ColMut, ColRef, Mat, MatRef, Par};

use crate::alloc::{try_collect, try_mem, try_vec};

/// What the buffers of the tridiagonal eigensolvers are called in an out-of-memory error.
const TRI: &str = "buffers of the tridiagonal eigensolver";

use crate::error::{LinalgError, Result};
use crate::layout::{check_matrix, symmetric_part};
use crate::params::check_band_width;
use crate::scaling::{scale_owned, scaled};

pub(crate) use pwk::tridiagonal_eigenvalues_pwk;
pub(crate) use svd::{bidiagonal_two_stage_checked, qr_r, singular_values_two_stage_checked};
pub(crate) use sym::{sym_band_to_tridiagonal, sym_dense_to_band};

/// Tridiagonal `(d, e)` of the symmetric matrix `a` (lower triangle read) by the two stages.
pub(crate) fn sym_tridiagonal_two_stage(
    a: Mat<f64>,
    b: usize,
    par: Par,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = a.nrows();
    crate::pool::on_pool(par, n, || {
        sym_band_to_tridiagonal(sym_dense_to_band(a, b, par)?, par)
    })
}

/// Ascending eigenvalues of the symmetric tridiagonal matrix `(d, e)` (`e.len() ≥ n − 1`) by
/// the root-free Pal–Walker–Kahan QL/QR iteration ([`tridiagonal_eigenvalues_pwk`], LAPACK's
/// `DSTERF`), falling back to faer's implicit QR iteration if it does not converge.
pub(crate) fn tridiagonal_eigenvalues(d: &[f64], e: &[f64]) -> Result<Vec<f64>> {
    first_or_qr(d, e, tridiagonal_eigenvalues_pwk)
}

/// All eigenvalues, ascending, of the symmetric tridiagonal matrix with diagonal `d` and
/// off-diagonal `e` (`e.len() + 1 == d.len()`): LAPACK `DSTERF`'s root-free Pal–Walker–Kahan
/// QL/QR iteration (the last stage of [`sym_spectrum`](crate::sym_spectrum)), each eigenvalue
/// with absolute error `O(ε‖T‖₂)`, `O(n²)` flops; faer's implicit QR iteration if it does not
/// converge.
///
/// # Errors
/// [`LinalgError::Empty`](crate::LinalgError::Empty) for `n = 0`,
/// [`LinalgError::DimensionMismatch`](crate::LinalgError::DimensionMismatch) when
/// `e.len() + 1 ≠ d.len()`, [`LinalgError::NonFinite`](crate::LinalgError::NonFinite) naming
/// the first non-finite entry (row = index, column 0 for `d`, 1 for `e`),
/// [`LinalgError::NoConvergence`](crate::LinalgError::NoConvergence) if the QR fallback fails.
pub fn tridiagonal_eigenvalues_checked(d: &[f64], e: &[f64]) -> Result<Vec<f64>> {
    check_tridiagonal(d, e)?;
    tridiagonal_eigenvalues(d, e)
}

/// The checks of the public tridiagonal kernels: `n ≥ 1`, `e.len() + 1 == n`, every entry
/// finite (the error names the first non-finite one: row = index, column 0 for `d`, 1 for `e`).
pub(crate) fn check_tridiagonal(d: &[f64], e: &[f64]) -> Result<()> {
    if d.is_empty() {
        return Err(crate::LinalgError::Empty {
            what: "diagonal of the tridiagonal matrix",
            rows: 0,
            cols: 0,
        });
    }
    if e.len() + 1 != d.len() {
        return Err(crate::LinalgError::DimensionMismatch {
            what: "off-diagonal length (must be the diagonal's minus one)",
            expected: d.len() - 1,
            got: e.len(),
        });
    }
    for (col, v) in [d, e].into_iter().enumerate() {
        if let Some(row) = v.iter().position(|x| !x.is_finite()) {
            return Err(crate::LinalgError::NonFinite {
                what: "tridiagonal matrix (column 0: diagonal, column 1: off-diagonal)",
                row,
                col,
                value: v[row],
            });
        }
    }
    Ok(())
}

/// Eigenvalues by `first` (in place on copies of `d` and `e[..n − 1]`), by faer's QR iteration
/// if it fails.
fn first_or_qr(
    d: &[f64],
    e: &[f64],
    first: fn(&mut [f64], &mut [f64]) -> Result<()>,
) -> Result<Vec<f64>> {
    let n = d.len();
    let mut ev = try_collect(TRI, n, d.iter().copied())?;
    let mut off = try_collect(
        TRI,
        n.saturating_sub(1),
        e[..n.saturating_sub(1)].iter().copied(),
    )?;
    if first(&mut ev, &mut off).is_ok() {
        return Ok(ev);
    }
    tridiagonal_eigenvalues_qr(d, e)
}

/// Ascending eigenvalues of the symmetric tridiagonal matrix `(d, e)` by faer's implicit QR
/// iteration without vectors.
pub(crate) fn tridiagonal_eigenvalues_qr(d: &[f64], e: &[f64]) -> Result<Vec<f64>> {
    let n = d.len();
    let diag = try_collect(TRI, n, d.iter().copied())?;
    let sub = try_collect(TRI, n, (0..n).map(|i| if i + 1 < n { e[i] } else { 0.0 }))?;
    let mut s = try_vec(TRI, n, 0.0)?;
    let mut mem = try_mem(
        "workspace of the tridiagonal QR iteration",
        faer::linalg::temp_mat_scratch::<f64>(n, 1).array(2),
    )?;
    faer::linalg::evd::tridiagonal_self_adjoint_evd(
        ColRef::from_slice(&diag).as_diagonal(),
        ColRef::from_slice(&sub).as_diagonal(),
        ColMut::from_slice_mut(&mut s).as_diagonal_mut(),
        None,
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|_| LinalgError::NoConvergence {
        what: "tridiagonal QR iteration (two-stage eigensolver)",
        iterations: 0,
        residual: f64::NAN,
    })?;
    let mut ev = s;
    ev.sort_by(f64::total_cmp);
    Ok(ev)
}

/// Ascending eigenvalues of an already checked symmetric matrix by the two-stage reduction.
pub(crate) fn sym_eigenvalues_two_stage_checked(
    a: Mat<f64>,
    b: usize,
    par: Par,
) -> Result<Vec<f64>> {
    let (d, e) = sym_tridiagonal_two_stage(a, b, par)?;
    tridiagonal_eigenvalues(&d, &e)
}

/// All eigenvalues (ascending) of the symmetric matrix `h` by the two-stage reduction with
/// half-bandwidth `band_width`, at any size (the automatic choice of
/// [`sym_spectrum`](crate::sym_spectrum) uses it from
/// [`SymSpectrumParams::two_stage_min_n`](crate::SymSpectrumParams::two_stage_min_n) on, with
/// `b =` [`SymSpectrumParams::band_width`](crate::SymSpectrumParams::band_width)).
///
/// Algorithm:
/// 1. dense → band (`DSYTRD_SY2SB`): for each panel of `b` columns, faer's blocked QR of the
///    part below the band and the two-sided update `A₂₂ ← Qᵀ A₂₂ Q = A₂₂ − V Wᵀ − W Vᵀ`
///    (compact-WY `Q = I − V T⁻¹ Vᵀ`, `W = X − ½ V T⁻ᵀ Vᵀ X`, `X = A₂₂ V T⁻¹`), as
///    matrix–matrix products on all cores: `4n³/3` flops;
/// 2. band → tridiagonal by bulge chasing (`DSYTRD_SB2ST`'s Householder kernels on a compact
///    band of `2bn` numbers): `≈ 6bn²` flops, in cache;
/// 3. eigenvalues of the tridiagonal matrix by the root-free Pal–Walker–Kahan QL/QR iteration
///    (LAPACK's `DSTERF`, `O(n²)`), faer's implicit QR iteration if it does not converge.
///
/// Accuracy: every step is an orthogonal similarity computed with Householder reflectors, so
/// the eigenvalues are those of `H + E` with `‖E‖₂ ≤ c(n) ε ‖H‖₂`; by Weyl's theorem each
/// computed eigenvalue has absolute error `≤ c(n) ε ‖H‖₂` (`c(n)` a modest multiple of `n` in
/// the worst case, `O(√n)` in practice), the same guarantee as LAPACK's `DSYEVD`.
///
/// Scale-safe as [`sym_spectrum`](crate::sym_spectrum): computed on `h · 2⁻ᵉ` (largest entry in
/// `[1, 2)`) when `h`'s largest entry is outside `[2⁻¹²⁸, 2¹²⁹)`, and multiplied by `2ᵉ`.
///
/// # Errors
/// As [`sym_spectrum`](crate::sym_spectrum) (including [`LinalgError::Overflow`]), plus
/// [`LinalgError::InvalidArgument`] for `band_width == 0`.
pub fn sym_eigenvalues_two_stage(h: MatRef<'_, f64>, band_width: usize) -> Result<Vec<f64>> {
    check_band_width(band_width)?;
    let mut hs = symmetric_part(h, "symmetric matrix H")?;
    let e = scale_owned(&mut hs);
    let ev = sym_eigenvalues_two_stage_checked(hs, band_width, faer::get_global_parallelism())?;
    crate::scaling::unscale_all(ev, e, "eigenvalue")
}

/// All singular values (nonincreasing) of the `m × n` matrix `a` by the two-stage reduction
/// with bandwidth `band_width`, at any size (the automatic choice of
/// [`singular_values`](crate::singular_values) and [`cond2`](crate::cond2) uses it from
/// `min(m, n) ≥` [`SvdParams::two_stage_min_n`](crate::SvdParams::two_stage_min_n) on, with
/// `b =` [`SvdParams::band_width`](crate::SvdParams::band_width)).
///
/// Algorithm (for `m ≥ n`; a wide matrix is transposed first):
/// 0. if `m ≥ 5n/3`, a QR factorization `A = QR` first (`2mn² − 2n³/3` flops) and `R` is
///    reduced instead (LAPACK's `MNTHR` rule);
/// 1. dense → upper band of bandwidth `b` (`DGEBRD`'s two-stage analogue): alternately a QR
///    factorization of a panel of `b` columns (applied as `Qᵀ A` to the columns on its right)
///    and an LQ factorization of a panel of `b` rows (applied as `A Q` to the rows below), all
///    matrix–matrix: `4mn² − 4n³/3` flops;
/// 2. band → upper bidiagonal by bulge chasing (right reflectors annihilating a row, left
///    reflectors annihilating the fill below the diagonal), on a compact band of `3bn`
///    numbers: `≈ 8bn²` flops, in cache;
/// 3. singular values of the bidiagonal `B` (diagonal `d`, superdiagonal `e`) as the `n`
///    nonnegative eigenvalues of the `2n × 2n` Golub–Kahan tridiagonal matrix with zero
///    diagonal and off-diagonal `(d₀, e₀, d₁, e₁, …, d_{n−1})` (its eigenvalues are `±σᵢ`),
///    by the root-free Pal–Walker–Kahan QL/QR iteration (LAPACK's `DSTERF`; faer's implicit
///    QR iteration if it does not converge).
///
/// Accuracy: orthogonal transformations throughout, so the result is the exact singular
/// values of `A + E` with `‖E‖₂ ≤ c(m, n) ε ‖A‖₂`, and each singular value has absolute error
/// `≤ c ε σ_max` (Weyl), as LAPACK's `DGESVD`; a singular value far below `ε σ_max` has no
/// correct digits, which is why [`cond2`](crate::cond2) declares rank deficiency at
/// `max(m, n) ε σ_max`.
///
/// Scale-safe as [`cond2`](crate::cond2): computed on `a · 2⁻ᵉ` and multiplied by `2ᵉ`.
///
/// # Errors
/// As [`singular_values`](crate::singular_values), plus [`LinalgError::InvalidArgument`] for
/// `band_width == 0`.
pub fn singular_values_two_stage(a: MatRef<'_, f64>, band_width: usize) -> Result<Vec<f64>> {
    check_band_width(band_width)?;
    check_matrix(a, "matrix A of singular_values_two_stage")?;
    let owned = scaled(a)?;
    let (a, e) = owned.as_ref().map_or((a, 0), |(s, e)| (s.as_ref(), *e));
    let sv = singular_values_two_stage_checked(a, band_width, faer::get_global_parallelism())?;
    crate::scaling::unscale_all(sv, e, "singular value")
}
