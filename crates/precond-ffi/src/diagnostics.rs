//! Conditioning diagnostics on caller buffers (THEORY.md §1–3 and Theorem 6), wrapping
//! `precond-linalg`. Input matrices are read in place (never written; an output buffer that
//! overlaps one is refused with `PRECOND_INVALID_ARGUMENT`) and outputs are written only after
//! the whole computation succeeded, so on any error the caller's buffers are unchanged. Every
//! function here may also return `PRECOND_OUT_OF_MEMORY` when a copy, factor or workspace of
//! the caller's matrix cannot be allocated.

use faer::MatRef;
use precond_linalg::{
    Layout, col_equilibrate, cond_estimate_lu, cond_estimate_spd, cond2, mat_view_from_slice,
    precond_cond_diag, row_equilibrate, sym_spectrum,
};

use crate::ptr::{
    expect_len, in_slice, layout, mat_len, out_ref, out_slice, outputs_disjoint, overlaps,
};
use crate::status::{FfiError, FfiResult, boundary, precond_status_t};

/// The 2-norm condition number of a matrix (`precond_cond2`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct precond_cond2_t {
    /// Largest singular value `σ_max = ‖A‖₂`.
    pub sigma_max: f64,
    /// Smallest of the `min(m, n)` singular values.
    pub sigma_min: f64,
    /// `κ(A) = σ_max/σ_min`; `INFINITY` when `rank_deficient`.
    pub kappa: f64,
    /// 1 when `σ_min ≤ max(m, n)·ε·σ_max` (numerically rank deficient), else 0.
    pub rank_deficient: i32,
}

/// Summary of the spectrum of a symmetric matrix (`precond_sym_eigenvalues`). With
/// `τ = rel_tol · max|λ|`, an eigenvalue is positive when `λ > τ`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct precond_spectrum_t {
    /// Smallest eigenvalue.
    pub lambda_min: f64,
    /// Largest eigenvalue.
    pub lambda_max: f64,
    /// `κ(H) = λ_max/λ_min` when positive definite, `INFINITY` otherwise.
    pub kappa: f64,
    /// Smallest eigenvalue `> τ`; `NAN` when `has_positive` is 0.
    pub smallest_positive: f64,
    /// `λ_max / smallest_positive` (Theorem 1 for singular Hessians); `INFINITY` without a
    /// positive eigenvalue.
    pub kappa_positive: f64,
    /// The relative tolerance used, `n·ε`.
    pub rel_tol: f64,
    /// 1 when `λ_min > τ`, else 0.
    pub positive_definite: i32,
    /// 1 when some eigenvalue is `> τ`, else 0.
    pub has_positive: i32,
}

/// Condition numbers of a Hessian preconditioned by a positive diagonal `P = diag(p)`
/// (`precond_preconditioned_cond_diag`; THEORY.md §2–3: both numbers are reported, named).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct precond_preconditioned_cond_t {
    /// `κ(P^{1/2} H P^{1/2}) = λ_max/λ_min`: sets the rate of the preconditioned iteration (5);
    /// `INFINITY` unless positive definite.
    pub spectral_kappa: f64,
    /// Smallest eigenvalue of `P^{1/2} H P^{1/2}`.
    pub lambda_min: f64,
    /// Largest eigenvalue of `P^{1/2} H P^{1/2}`.
    pub lambda_max: f64,
    /// `κ₂(P H) = σ_max(PH)/σ_min(PH)`, the 2-norm condition number of the row-scaled Hessian
    /// that Van der Sluis' Theorem 2 bounds; differs from `spectral_kappa` in general.
    pub row_scaled_kappa2: f64,
    /// 1 when `P^{1/2} H P^{1/2}` is positive definite, else 0.
    pub positive_definite: i32,
}

/// The cheap 1-norm condition estimate (`precond_cond_estimate`; Hager–Higham, as LAPACK
/// `DGECON`/`DPOCON`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct precond_cond_estimate_t {
    /// `‖A‖₁ · est(‖A⁻¹‖₁)`, a lower bound of `κ₁(A)`, usually within a factor 3; `INFINITY` for
    /// an exactly singular LU factor.
    pub kappa1_estimate: f64,
    /// The exact `‖A‖₁`.
    pub norm1: f64,
    /// The estimate of `‖A⁻¹‖₁`.
    pub inv_norm1_estimate: f64,
    /// Number of triangular solves used.
    pub solves: usize,
}

/// Which factorization `precond_cond_estimate` uses. Passed as an `int32_t`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum precond_estimate_method_t {
    /// Partially pivoted LU: any square matrix.
    PRECOND_ESTIMATE_LU = 0,
    /// Cholesky: symmetric positive definite matrices (`PRECOND_NUMERICAL_FAILURE` otherwise).
    PRECOND_ESTIMATE_SPD = 1,
}

/// A view of the caller's matrix `*a` (no copy: the routines read strided views, and copy
/// only what they modify), borrowed for as long as `a` is. Validates `lay`, the size product,
/// the pointer and every entry. Outputs must then be checked with [`disjoint`].
///
/// # Safety
/// If `*a` is non-null and aligned, it must point to `nrows * ncols` readable doubles not
/// written during `'a` (for an entry point's argument: during the call).
pub(crate) unsafe fn read_matrix<'a>(
    a: &'a *const f64,
    nrows: usize,
    ncols: usize,
    lay: i32,
    arg: &str,
) -> FfiResult<(MatRef<'a, f64>, Layout)> {
    let lay = layout(lay)?;
    let len = mat_len(nrows, ncols, arg)?;
    // SAFETY: this function's contract, with `len = nrows * ncols` (checked for overflow).
    let data = unsafe { in_slice(a, len, arg)? };
    let m = mat_view_from_slice(data, nrows, ncols, lay).map_err(|e| {
        let mut f = FfiError::from(e);
        f.message = format!("argument `{arg}`: {}", f.message);
        f
    })?;
    Ok((m, lay))
}

/// Refuses an output buffer (`len` values of `T`) that overlaps the input matrix `m` (a view of
/// a contiguous caller buffer, see [`read_matrix`]). A NULL output is left to the caller's own
/// check (optional outputs are NULL).
pub(crate) fn disjoint<T>(m: MatRef<'_, f64>, out: *const T, len: usize, arg: &str) -> FfiResult {
    if !out.is_null() && overlaps(m.as_ptr(), m.nrows() * m.ncols(), out, len) {
        return Err(FfiError::invalid(format!(
            "output `{arg}` overlaps the input matrix"
        )));
    }
    Ok(())
}

pub(crate) fn write_matrix(m: MatRef<'_, f64>, lay: Layout, out: &mut [f64]) {
    let (r, c) = (m.nrows(), m.ncols());
    for j in 0..c {
        for i in 0..r {
            let k = match lay {
                Layout::RowMajor => i * c + j,
                Layout::ColMajor => i + j * r,
            };
            out[k] = m[(i, j)];
        }
    }
}

/// Computes the 2-norm condition number `κ(A) = σ_max/σ_min` of the `nrows × ncols` matrix `a`
/// (THEORY.md notation; for `nrows ≠ ncols` the smallest of the `min(nrows, ncols)` singular
/// values is used, as `numpy.linalg.cond`). Cost: one bidiagonal reduction, then only the two
/// extreme singular values by bisection (never the ones between; precond-linalg's `cond2`).
///
/// Ownership: reads `a`, writes `*out` (caller-owned); nothing is retained.
/// Thread-safety: may be called concurrently from any number of threads.
///
/// Errors: `PRECOND_NULL_POINTER` (`a`, `out`), `PRECOND_INVALID_ARGUMENT` (bad `layout`, a zero
/// dimension), `PRECOND_DIMENSION_MISMATCH` (`nrows*ncols` overflows), `PRECOND_NON_FINITE`
/// (naming row and column), `PRECOND_NUMERICAL_FAILURE` (`σ_max` above `DBL_MAX`),
/// `PRECOND_OUT_OF_MEMORY`. `*out` is written only on success.
///
/// # Safety
/// `a` must point to `nrows*ncols` readable doubles and `out` to a writable `precond_cond2_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_cond2(
    a: *const f64,
    nrows: usize,
    ncols: usize,
    layout: i32,
    out: *mut precond_cond2_t,
) -> precond_status_t {
    boundary("precond_cond2", || {
        // SAFETY: caller contract: `a` points to `nrows*ncols` readable doubles.
        let (m, _) = unsafe { read_matrix(&a, nrows, ncols, layout, "a")? };
        disjoint(m, out, 1, "out")?;
        // SAFETY: caller contract: `out` is writable; it does not overlap `a` (checked).
        let out = unsafe { out_ref(&out, "out")? };
        let c = cond2(m.as_ref())?;
        *out = precond_cond2_t {
            sigma_max: c.sigma_max,
            sigma_min: c.sigma_min,
            kappa: c.kappa,
            rank_deficient: i32::from(c.rank_deficient),
        };
        Ok(())
    })
}

/// Computes all eigenvalues of the symmetric `n × n` matrix `h` (ascending, into `eigenvalues`,
/// which must have `eigenvalues_len == n` entries) and, if `summary` is not NULL, its spectral
/// summary: `λ_min`, `λ_max`, `κ(H) = λ_max/λ_min` and the smallest positive eigenvalue
/// (THEORY.md §1, Theorem 1). `h` must be symmetric to a relative tolerance of 1e-6 of its
/// largest entry; its symmetric part is used.
///
/// Ownership: reads `h`, writes `eigenvalues` and `*summary` (caller-owned).
/// Thread-safety: may be called concurrently.
///
/// Errors: `PRECOND_NULL_POINTER` (`h`, `eigenvalues`), `PRECOND_INVALID_ARGUMENT` (bad `layout`,
/// `n == 0`, not symmetric, an output overlapping `h`, `eigenvalues` and a non-NULL `summary`
/// overlapping each other), `PRECOND_DIMENSION_MISMATCH`
/// (`eigenvalues_len != n`, overflow),
/// `PRECOND_NON_FINITE`, `PRECOND_NUMERICAL_FAILURE`. Outputs are written only on success.
///
/// # Safety
/// `h` must point to `n*n` readable doubles, `eigenvalues` to `eigenvalues_len` writable doubles
/// not overlapping `h`, `summary` to a writable `precond_spectrum_t` (overlapping neither) or be
/// NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_sym_eigenvalues(
    h: *const f64,
    n: usize,
    layout: i32,
    eigenvalues: *mut f64,
    eigenvalues_len: usize,
    summary: *mut precond_spectrum_t,
) -> precond_status_t {
    boundary("precond_sym_eigenvalues", || {
        // SAFETY: caller contract: `h` points to `n*n` readable doubles.
        let (m, _) = unsafe { read_matrix(&h, n, n, layout, "h")? };
        disjoint(m, eigenvalues, eigenvalues_len, "eigenvalues")?;
        disjoint(m, summary, 1, "summary")?;
        outputs_disjoint(
            eigenvalues,
            eigenvalues_len,
            "eigenvalues",
            summary,
            1,
            "summary",
        )?;
        // SAFETY: caller contract: `eigenvalues_len` writable doubles, not overlapping `h`
        // (checked).
        let ev = unsafe { out_slice(&eigenvalues, eigenvalues_len, "eigenvalues")? };
        expect_len(eigenvalues_len, n, "eigenvalues")?;
        let summary = if summary.is_null() {
            None
        } else {
            // SAFETY: caller contract: a non-NULL `summary` is writable; disjoint from `h`.
            Some(unsafe { out_ref(&summary, "summary")? })
        };
        let s = sym_spectrum(m.as_ref())?;
        ev.copy_from_slice(&s.eigenvalues);
        if let Some(out) = summary {
            *out = precond_spectrum_t {
                lambda_min: s.lambda_min,
                lambda_max: s.lambda_max,
                kappa: s.kappa,
                smallest_positive: s.smallest_positive.unwrap_or(f64::NAN),
                kappa_positive: s.kappa_positive,
                rel_tol: s.rel_tol,
                positive_definite: i32::from(s.positive_definite),
                has_positive: i32::from(s.smallest_positive.is_some()),
            };
        }
        Ok(())
    })
}

/// Computes the condition numbers of the symmetric `n × n` Hessian `h` preconditioned by the
/// positive diagonal `P = diag(p)` (`p_len == n`): the spectral `κ(P^{1/2} H P^{1/2})` that sets
/// the rate of iteration (5) and the 2-norm `κ(P H)` of Theorem 2 (THEORY.md §2–3). Pass the
/// output of `precond_optimizer_preconditioner` as `p` to measure what an optimizer achieved.
///
/// Ownership: reads `h` and `p`, writes `*out`. Thread-safety: may be called concurrently.
///
/// Errors: `PRECOND_NULL_POINTER`, `PRECOND_INVALID_ARGUMENT` (bad `layout`, `n == 0`, `h` not
/// symmetric, a `p_i ≤ 0`), `PRECOND_DIMENSION_MISMATCH` (`p_len != n`), `PRECOND_NON_FINITE` (in
/// `h` or `p`), `PRECOND_NUMERICAL_FAILURE`. `*out` is written only on success.
///
/// # Safety
/// `h` must point to `n*n` readable doubles, `p` to `p_len` readable doubles, `out` to a writable
/// `precond_preconditioned_cond_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_preconditioned_cond_diag(
    h: *const f64,
    n: usize,
    layout: i32,
    p: *const f64,
    p_len: usize,
    out: *mut precond_preconditioned_cond_t,
) -> precond_status_t {
    boundary("precond_preconditioned_cond_diag", || {
        // SAFETY: caller contract: `h` points to `n*n` readable doubles.
        let (m, _) = unsafe { read_matrix(&h, n, n, layout, "h")? };
        disjoint(m, out, 1, "out")?;
        // SAFETY: caller contract: `p` points to `p_len` readable doubles.
        let p = unsafe { in_slice(&p, p_len, "p")? };
        // SAFETY: caller contract: `out` is writable; disjoint from `h` (checked).
        let out = unsafe { out_ref(&out, "out")? };
        expect_len(p_len, n, "p")?;
        let r = precond_cond_diag(m.as_ref(), p)?;
        *out = precond_preconditioned_cond_t {
            spectral_kappa: r.spectral_kappa,
            lambda_min: r.spectrum.lambda_min,
            lambda_max: r.spectrum.lambda_max,
            row_scaled_kappa2: r.row_scaled_kappa2,
            positive_definite: i32::from(r.spectrum.positive_definite),
        };
        Ok(())
    })
}

/// The body of `precond_row_equilibrate` (`rows`) and `precond_col_equilibrate`.
///
/// # Safety
/// The contract of those two functions: `a` points to `nrows*ncols` readable doubles, `scale`
/// to `scale_len` and `scaled` (or NULL) to `scaled_len` writable doubles, all valid for the
/// call.
#[allow(clippy::too_many_arguments)]
unsafe fn equilibrate(
    rows: bool,
    a: *const f64,
    nrows: usize,
    ncols: usize,
    lay: i32,
    scale: *mut f64,
    scale_len: usize,
    scaled: *mut f64,
    scaled_len: usize,
) -> FfiResult {
    // SAFETY: this function's contract for `a`.
    let (m, lay) = unsafe { read_matrix(&a, nrows, ncols, lay, "a")? };
    disjoint(m, scale, scale_len, "scale")?;
    disjoint(m, scaled, scaled_len, "scaled")?;
    outputs_disjoint(scale, scale_len, "scale", scaled, scaled_len, "scaled")?;
    let want = if rows { nrows } else { ncols };
    // SAFETY: this function's contract for `scale`; disjoint from `a` (checked).
    let scale = unsafe { out_slice(&scale, scale_len, "scale")? };
    expect_len(scale_len, want, "scale")?;
    let scaled = if scaled.is_null() {
        None
    } else {
        // SAFETY: this function's contract for a non-NULL `scaled`; disjoint from `a`.
        let s = unsafe { out_slice(&scaled, scaled_len, "scaled")? };
        expect_len(scaled_len, nrows * ncols, "scaled")?;
        Some(s)
    };
    let e = if rows {
        row_equilibrate(m.as_ref())?
    } else {
        col_equilibrate(m.as_ref())?
    };
    scale.copy_from_slice(&e.scale);
    if let Some(out) = scaled {
        write_matrix(e.scaled.as_ref(), lay, out);
    }
    Ok(())
}

/// Row equilibration (THEORY.md §3, Theorem 2): writes `d_i = 1/‖a_i‖₂` into `scale`
/// (`scale_len == nrows`) and, if `scaled` is not NULL, the matrix `diag(d) A` in the same layout
/// as `a` into `scaled` (`scaled_len == nrows*ncols`). By Van der Sluis,
/// `κ(diag(d) A) ≤ sqrt(nrows) · min over diagonal D of κ(D A)`.
///
/// Ownership: reads `a`, writes `scale` and `scaled`. Thread-safety: may be called concurrently.
///
/// Errors: `PRECOND_NULL_POINTER`, `PRECOND_INVALID_ARGUMENT` (bad `layout`, a zero dimension,
/// an output overlapping `a`, `scale` and a non-NULL `scaled` overlapping each other),
/// `PRECOND_DIMENSION_MISMATCH` (`scale_len`, `scaled_len`), `PRECOND_NON_FINITE`,
/// `PRECOND_NUMERICAL_FAILURE` (a zero row, named). Outputs are written only on success.
///
/// # Safety
/// `a` must point to `nrows*ncols` readable doubles; `scale` to `scale_len` and `scaled` (or
/// NULL) to `scaled_len` writable doubles, none of the three overlapping another.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_row_equilibrate(
    a: *const f64,
    nrows: usize,
    ncols: usize,
    layout: i32,
    scale: *mut f64,
    scale_len: usize,
    scaled: *mut f64,
    scaled_len: usize,
) -> precond_status_t {
    boundary("precond_row_equilibrate", || {
        // SAFETY: this function's contract is `equilibrate`'s.
        unsafe {
            equilibrate(
                true, a, nrows, ncols, layout, scale, scale_len, scaled, scaled_len,
            )
        }
    })
}

/// Column equilibration (Theorem 2 applied to `Aᵀ`; the LayerNorm case of Theorem 7): writes
/// `d_j = 1/‖a^j‖₂` into `scale` (`scale_len == ncols`) and, if `scaled` is not NULL,
/// `A diag(d)` in the layout of `a` (`scaled_len == nrows*ncols`).
///
/// Ownership, thread-safety and errors as `precond_row_equilibrate` (a zero column is named).
///
/// # Safety
/// As `precond_row_equilibrate`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_col_equilibrate(
    a: *const f64,
    nrows: usize,
    ncols: usize,
    layout: i32,
    scale: *mut f64,
    scale_len: usize,
    scaled: *mut f64,
    scaled_len: usize,
) -> precond_status_t {
    boundary("precond_col_equilibrate", || {
        // SAFETY: this function's contract is `equilibrate`'s.
        unsafe {
            equilibrate(
                false, a, nrows, ncols, layout, scale, scale_len, scaled, scaled_len,
            )
        }
    })
}

/// The cheap condition estimate: factors the square `n × n` matrix `a` (`method`:
/// `PRECOND_ESTIMATE_LU` or, for symmetric positive definite `a`, `PRECOND_ESTIMATE_SPD`) and
/// estimates `κ₁(A) = ‖A‖₁‖A⁻¹‖₁` with Hager–Higham in `O(n²)` after the factorization.
///
/// Ownership: reads `a`, writes `*out`. Thread-safety: may be called concurrently.
///
/// Errors: `PRECOND_NULL_POINTER`, `PRECOND_INVALID_ARGUMENT` (bad `layout` or `method`, `n == 0`,
/// not symmetric for SPD), `PRECOND_NON_FINITE`, `PRECOND_NUMERICAL_FAILURE` (SPD requested but
/// a Cholesky pivot is not positive; its index is named). `*out` is written only on success.
///
/// # Safety
/// `a` must point to `n*n` readable doubles, `out` to a writable `precond_cond_estimate_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_cond_estimate(
    a: *const f64,
    n: usize,
    layout: i32,
    method: i32,
    out: *mut precond_cond_estimate_t,
) -> precond_status_t {
    boundary("precond_cond_estimate", || {
        let spd = match method {
            0 => false,
            1 => true,
            _ => {
                return Err(FfiError::invalid(format!(
                    "argument `method` is {method}; expected PRECOND_ESTIMATE_LU (0) or PRECOND_ESTIMATE_SPD (1)"
                )));
            }
        };
        // SAFETY: caller contract: `a` points to `n*n` readable doubles.
        let (m, _) = unsafe { read_matrix(&a, n, n, layout, "a")? };
        disjoint(m, out, 1, "out")?;
        // SAFETY: caller contract: `out` is writable; disjoint from `a` (checked).
        let out = unsafe { out_ref(&out, "out")? };
        let e = if spd {
            cond_estimate_spd(m.as_ref())?
        } else {
            cond_estimate_lu(m.as_ref())?
        };
        *out = precond_cond_estimate_t {
            kappa1_estimate: e.kappa1_estimate,
            norm1: e.norm1,
            inv_norm1_estimate: e.inv_norm1_estimate,
            solves: e.solves,
        };
        Ok(())
    })
}
