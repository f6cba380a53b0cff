//! Cheap 1-norm condition estimates after a factorization (Hager 1984, Higham 1988 — the
//! algorithm of LAPACK's `DLACN2`, used by `DGECON` and `DPOCON`). THEORY.md §1 asks for `κ`;
//! these give a lower bound on `κ₁` in `O(n²)` after the `O(n³)` factor.

use faer::linalg::solvers::{Llt, PartialPivLu, Solve};
use faer::{ColMut, MatRef};

use crate::alloc::{try_collect, try_vec};
use crate::condition::norm1;
use crate::error::{LinalgError, Result};
use crate::layout::{check_square, check_square_shape, symmetric_part};
use crate::scaling::{checked_scaled, scale_owned, unscale};

/// The estimate of `A` from the estimate of `A · 2⁻ᵉ`: `κ₁` is scale-free, `‖A‖₁` is multiplied
/// by `2ᵉ` and `‖A⁻¹‖₁` by `2⁻ᵉ` ([`LinalgError::Overflow`] when either exceeds `f64::MAX`).
fn unscale_estimate(c: CondEstimate, e: i32) -> Result<CondEstimate> {
    if e == 0 {
        return Ok(c);
    }
    Ok(CondEstimate {
        norm1: unscale(c.norm1, e, "1-norm of A")?,
        inv_norm1_estimate: unscale(c.inv_norm1_estimate, -e, "estimate of the 1-norm of A⁻¹")?,
        ..c
    })
}

/// A Hager–Higham estimate of the 1-norm condition number `κ₁(A) = ‖A‖₁‖A⁻¹‖₁`.
///
/// `inv_norm1_estimate ≤ ‖A⁻¹‖₁` always (it is the norm of a computed `A⁻¹x` with `‖x‖₁ = 1`),
/// so `kappa1_estimate` never exceeds the exact `κ₁` (up to rounding); in practice it is almost
/// always within a factor 3 and usually exact.
///
/// The 1-norm condition number: $\kappa_1(A) = \lVert A \rVert_1 \lVert A^{-1} \rVert_1$.
///
/// # References
///
/// - \[Hager1984\] W. W. Hager. *Condition estimates.* SIAM Journal on Scientific and Statistical
///   Computing 5(2):311–316, 1984.
/// - \[Higham1988\] N. J. Higham. *FORTRAN codes for estimating the one-norm of a real or complex
///   matrix, with applications to condition estimation* (Algorithm 674). ACM Transactions on
///   Mathematical Software 14(4):381–396, 1988.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CondEstimate {
    /// `‖A‖₁ · est(‖A⁻¹‖₁)`; `f64::INFINITY` for an exactly singular factor.
    pub kappa1_estimate: f64,
    /// The exact `‖A‖₁` (largest absolute column sum).
    pub norm1: f64,
    /// The estimate of `‖A⁻¹‖₁`.
    pub inv_norm1_estimate: f64,
    /// Number of solves with `A` or `Aᵀ` the estimator used (at most 11).
    pub solves: usize,
}

/// Hager–Higham estimate of `‖B‖₁` given `x ↦ Bx` (`solve`) and `x ↦ Bᵀx` (`solve_t`), both in
/// place. Returns the estimate and the number of products used. Algorithm of `DLACN2` (real
/// case): at most 5 power-like steps on the sign vectors, then the alternating test vector
/// `x_i = (−1)^i (1 + i/(n−1))` as a safeguard.
pub(crate) fn hager_higham(
    n: usize,
    mut solve: impl FnMut(&mut [f64]),
    mut solve_t: impl FnMut(&mut [f64]),
) -> Result<(f64, usize)> {
    let sign = |v: f64| if v >= 0.0 { 1.0 } else { -1.0 };
    let l1 = |v: &[f64]| v.iter().map(|x| x.abs()).sum::<f64>();
    let argmax = |v: &[f64]| {
        let mut j = 0;
        for i in 1..v.len() {
            if v[i].abs() > v[j].abs() {
                j = i;
            }
        }
        j
    };
    let mut solves = 0;
    let mut x = try_vec("vector of the 1-norm estimate", n, 1.0 / n as f64)?;
    solve(&mut x);
    solves += 1;
    if n == 1 {
        return Ok((x[0].abs(), solves));
    }
    let mut est = l1(&x);
    let mut xi = try_collect(
        "sign vector of the 1-norm estimate",
        n,
        x.iter().map(|&v| sign(v)),
    )?;
    let mut z = try_collect("vector of the 1-norm estimate", n, xi.iter().copied())?;
    solve_t(&mut z);
    solves += 1;
    let mut j = argmax(&z);
    let mut iter = 2;
    loop {
        // x = e_j
        x.iter_mut().for_each(|v| *v = 0.0);
        x[j] = 1.0;
        solve(&mut x);
        solves += 1;
        let est_old = est;
        est = l1(&x);
        let same_signs = x.iter().zip(&xi).all(|(&v, &s)| (sign(v) - s).abs() < 0.5);
        if same_signs || est <= est_old {
            est = est.max(est_old);
            break;
        }
        xi.iter_mut().zip(&x).for_each(|(s, &v)| *s = sign(v));
        z.copy_from_slice(&xi);
        solve_t(&mut z);
        solves += 1;
        let jlast = j;
        j = argmax(&z);
        if z[jlast].abs() >= z[j].abs() || iter >= 5 {
            break;
        }
        iter += 1;
    }
    // alternating-sign safeguard
    let denom = (n - 1) as f64;
    for (i, v) in x.iter_mut().enumerate() {
        let s = if i % 2 == 0 { 1.0 } else { -1.0 };
        *v = s * (1.0 + i as f64 / denom);
    }
    solve(&mut x);
    solves += 1;
    let temp = 2.0 * l1(&x) / (3.0 * n as f64);
    if temp > est {
        est = temp;
    }
    Ok((est, solves))
}

/// An estimate of `‖A⁻¹‖₁` that overflowed (`A⁻¹x` not finite for a unit `x`): with
/// `‖A‖₁ ≥ 1` the exact `κ₁ ≥ ‖A⁻¹‖₁` exceeds `f64::MAX` too and `∞` is its rounding; with a
/// smaller `‖A‖₁` the overflow may be the matrix's scale alone, and the estimate is refused
/// ([`LinalgError::Overflow`]) instead of reporting a finite `κ₁` as infinite.
fn overflowed_inverse(inv: f64, norm: f64) -> Result<f64> {
    if inv.is_finite() {
        Ok(inv)
    } else if norm >= 1.0 {
        Ok(f64::INFINITY)
    } else {
        Err(LinalgError::Overflow {
            what: "estimate of the 1-norm of A⁻¹ from the given factor (cond_estimate_lu and \
                   cond_estimate_spd rescale A first)",
            log2: 1024.0,
        })
    }
}

fn col_mut(v: &mut [f64]) -> ColMut<'_, f64> {
    ColMut::from_slice_mut(v)
}

/// Estimate of `κ₁(A)` using an existing LU factorization `lu` of `a` (as `DGECON`, `O(n²)`).
///
/// Not rescaled: the solves use the caller's factor of `a` as it is, so for a matrix whose
/// entries are all tiny (near `f64::MIN_POSITIVE` or subnormal) `A⁻¹x` can overflow. Such an
/// overflow gives `κ₁ = ∞` only when `‖A‖₁ ≥ 1` (then the exact `κ₁` exceeds `f64::MAX`);
/// otherwise it is refused with [`LinalgError::Overflow`] rather than reported as infinite.
/// [`cond_estimate_lu`] factors an exactly rescaled copy and is scale-safe.
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::DimensionMismatch`] (not square, or `lu` of another
/// size), [`LinalgError::NonFinite`], [`LinalgError::Overflow`] as above.
///
/// # References
///
/// - \[Hager1984\] W. W. Hager. *Condition estimates.* SIAM Journal on Scientific and Statistical
///   Computing 5(2):311–316, 1984.
/// - \[Higham1988\] N. J. Higham. *FORTRAN codes for estimating the one-norm of a real or complex
///   matrix, with applications to condition estimation* (Algorithm 674). ACM Transactions on
///   Mathematical Software 14(4):381–396, 1988.
pub fn cond_estimate_from_lu(a: MatRef<'_, f64>, lu: &PartialPivLu<f64>) -> Result<CondEstimate> {
    check_square(a, "matrix A of cond_estimate_lu")?;
    let n = a.nrows();
    if lu.U().nrows() != n {
        return Err(LinalgError::DimensionMismatch {
            what: "size of the LU factor vs the matrix",
            expected: n,
            got: lu.U().nrows(),
        });
    }
    let norm = norm1(a);
    let u = lu.U();
    if (0..n).any(|i| u[(i, i)] == 0.0) {
        return Ok(CondEstimate {
            kappa1_estimate: f64::INFINITY,
            norm1: norm,
            inv_norm1_estimate: f64::INFINITY,
            solves: 0,
        });
    }
    // the solves of `lu.solve_in_place` / `lu.solve_transpose_in_place`, with their
    // workspaces allocated once and fallibly
    estimate_with_solver(
        n,
        norm,
        crate::dense::LuSolver::from_parts(lu.L(), lu.U(), lu.P())?,
    )
}

/// The Hager–Higham estimate of `‖A⁻¹‖₁` through the LU solves of `solver`, and `κ₁`.
fn estimate_with_solver(
    n: usize,
    norm: f64,
    solver: crate::dense::LuSolver,
) -> Result<CondEstimate> {
    let solver = core::cell::RefCell::new(solver);
    let (inv, solves) = hager_higham(
        n,
        |x| solver.borrow_mut().solve(x),
        |x| solver.borrow_mut().solve_t(x),
    )?;
    let inv = overflowed_inverse(inv, norm)?;
    Ok(CondEstimate {
        kappa1_estimate: norm * inv,
        norm1: norm,
        inv_norm1_estimate: inv,
        solves,
    })
}

/// Estimate of `κ₁(A)` for a square matrix: partially pivoted LU (faer) then the Hager–Higham
/// estimator (as LAPACK `DGETRF` + `DGECON`). `O(2n³/3)` for the factor, `O(n²)` after it.
/// An exactly singular `U` gives `κ = ∞`.
///
/// Scale-safe: when the largest entry is outside `[2⁻¹²⁸, 2¹²⁹)` the factorization and the
/// estimate are computed for `A · 2⁻ᵉ` (largest entry in `[1, 2)`, an exact scaling), `κ₁` is
/// kept (scale-free), `norm1` is multiplied by `2ᵉ` and `inv_norm1_estimate` by `2⁻ᵉ`.
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::DimensionMismatch`] (not square),
/// [`LinalgError::NonFinite`], [`LinalgError::Overflow`] when `‖A‖₁` or the estimate of
/// `‖A⁻¹‖₁` exceeds `f64::MAX` (`κ₁` itself never overflows this way).
///
/// # References
///
/// - \[Hager1984\] W. W. Hager. *Condition estimates.* SIAM Journal on Scientific and Statistical
///   Computing 5(2):311–316, 1984.
/// - \[Higham1988\] N. J. Higham. *FORTRAN codes for estimating the one-norm of a real or complex
///   matrix, with applications to condition estimation* (Algorithm 674). ACM Transactions on
///   Mathematical Software 14(4):381–396, 1988.
pub fn cond_estimate_lu(a: MatRef<'_, f64>) -> Result<CondEstimate> {
    const WHAT: &str = "matrix A of cond_estimate_lu";
    check_square_shape(a, WHAT)?;
    match checked_scaled(a, WHAT)? {
        None => estimate_from_own_lu(a),
        Some((s, e)) => unscale_estimate(estimate_from_own_lu(s.as_ref())?, e),
    }
}

/// [`cond_estimate_from_lu`] on the factor of [`crate::dense::Lu`] (the same factor and solves
/// as `a.partial_piv_lu()`, allocated fallibly).
fn estimate_from_own_lu(a: MatRef<'_, f64>) -> Result<CondEstimate> {
    let lu = crate::dense::Lu::new(a)?;
    let n = a.nrows();
    // `a` is in the safe range (the caller scaled it): `norm1` would find no scaling to do
    let norm = crate::condition::norm1_plain(a, 0);
    if (0..n).any(|i| lu.u_diag(i) == 0.0) {
        return Ok(CondEstimate {
            kappa1_estimate: f64::INFINITY,
            norm1: norm,
            inv_norm1_estimate: f64::INFINITY,
            solves: 0,
        });
    }
    estimate_with_solver(n, norm, crate::dense::LuSolver::new(&lu)?)
}

/// Estimate of `κ₁(A)` using an existing Cholesky factorization `llt` of the SPD matrix `a`
/// (as `DPOCON`, `O(n²)`; `A⁻¹` is symmetric so one solve routine serves both products).
///
/// Not rescaled (the caller's factor is used as it is; an overflowing solve is handled as in
/// [`cond_estimate_from_lu`]); [`cond_estimate_spd`] is scale-safe.
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::DimensionMismatch`], [`LinalgError::NonFinite`],
/// [`LinalgError::Overflow`] as [`cond_estimate_from_lu`].
///
/// # References
///
/// - \[Hager1984\] W. W. Hager. *Condition estimates.* SIAM Journal on Scientific and Statistical
///   Computing 5(2):311–316, 1984.
/// - \[Higham1988\] N. J. Higham. *FORTRAN codes for estimating the one-norm of a real or complex
///   matrix, with applications to condition estimation* (Algorithm 674). ACM Transactions on
///   Mathematical Software 14(4):381–396, 1988.
pub fn cond_estimate_from_llt(a: MatRef<'_, f64>, llt: &Llt<f64>) -> Result<CondEstimate> {
    check_square(a, "matrix A of cond_estimate_spd")?;
    let n = a.nrows();
    if llt.L().nrows() != n {
        return Err(LinalgError::DimensionMismatch {
            what: "size of the Cholesky factor vs the matrix",
            expected: n,
            got: llt.L().nrows(),
        });
    }
    let norm = norm1(a);
    let (inv, solves) = hager_higham(
        n,
        |x| llt.solve_in_place(col_mut(x).as_mat_mut()),
        |x| llt.solve_in_place(col_mut(x).as_mat_mut()),
    )?;
    let inv = overflowed_inverse(inv, norm)?;
    Ok(CondEstimate {
        kappa1_estimate: norm * inv,
        norm1: norm,
        inv_norm1_estimate: inv,
        solves,
    })
}

/// Estimate of `κ₁(A) = κ₂`-comparable 1-norm condition number of a symmetric positive definite
/// matrix: Cholesky (faer, `n³/3`) then the Hager–Higham estimator (LAPACK `DPOTRF` + `DPOCON`).
/// `a` must be symmetric to a relative tolerance of `10⁻⁶` (see [`LinalgError::NotSymmetric`]);
/// its symmetric part is used.
///
/// Scale-safe as [`cond_estimate_lu`] (the Cholesky factor of the exactly rescaled matrix).
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::DimensionMismatch`], [`LinalgError::NonFinite`],
/// [`LinalgError::NotSymmetric`], [`LinalgError::NotPositiveDefinite`] with the index of the
/// failing Cholesky pivot, [`LinalgError::Overflow`] as [`cond_estimate_lu`].
///
/// # References
///
/// - \[Hager1984\] W. W. Hager. *Condition estimates.* SIAM Journal on Scientific and Statistical
///   Computing 5(2):311–316, 1984.
/// - \[Higham1988\] N. J. Higham. *FORTRAN codes for estimating the one-norm of a real or complex
///   matrix, with applications to condition estimation* (Algorithm 674). ACM Transactions on
///   Mathematical Software 14(4):381–396, 1988.
pub fn cond_estimate_spd(a: MatRef<'_, f64>) -> Result<CondEstimate> {
    let mut s = symmetric_part(a, "SPD matrix A of cond_estimate_spd")?;
    let e = scale_owned(&mut s);
    let l = crate::dense::cholesky_lower(s.as_ref(), "SPD matrix A of cond_estimate_spd")?;
    let norm = norm1(s.as_ref());
    let solve = |x: &mut [f64]| crate::dense::cholesky_solve(l.as_ref(), x);
    let (inv, solves) = hager_higham(s.nrows(), solve, solve)?;
    let inv = overflowed_inverse(inv, norm)?;
    let c = CondEstimate {
        kappa1_estimate: norm * inv,
        norm1: norm,
        inv_norm1_estimate: inv,
        solves,
    };
    unscale_estimate(c, e)
}
