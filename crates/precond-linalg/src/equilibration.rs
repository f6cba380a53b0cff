//! Row, column and symmetric equilibration; Van der Sluis' Theorem 2 and its Corollary 1
//! (THEORY.md §3).

use faer::{Mat, MatRef};

use crate::condition::cond2;
use crate::error::{LinalgError, Result};
use crate::layout::{check_matrix, check_positive_vec, symmetric_part};

/// Euclidean norms `‖a_i‖` of the rows of `a`, computed with per-row scaling so that entries
/// near the overflow or underflow thresholds do not overflow or vanish. NaN propagates.
pub fn row_norms(a: MatRef<'_, f64>) -> Vec<f64> {
    let (m, n) = (a.nrows(), a.ncols());
    let mut scale = vec![0.0f64; m];
    for j in 0..n {
        let c = a.col(j);
        for i in 0..m {
            let v = c[i].abs();
            if v > scale[i] || v.is_nan() {
                scale[i] = v;
            }
        }
    }
    let inv: Vec<f64> = scale
        .iter()
        .map(|&s| {
            if s > 0.0 && s.is_finite() {
                1.0 / s
            } else {
                0.0
            }
        })
        .collect();
    let mut ssq = vec![0.0f64; m];
    for j in 0..n {
        let c = a.col(j);
        for i in 0..m {
            let t = c[i] * inv[i];
            ssq[i] += t * t;
        }
    }
    scale
        .iter()
        .zip(&ssq)
        .map(|(&s, &q)| {
            if s > 0.0 && s.is_finite() {
                s * q.sqrt()
            } else {
                s
            }
        })
        .collect()
}

/// Euclidean norms of the columns of `a` (row norms of `aᵀ`).
pub fn col_norms(a: MatRef<'_, f64>) -> Vec<f64> {
    row_norms(a.transpose())
}

/// A diagonal scaling and the matrix it produced.
///
/// # References
///
/// - \[VanDerSluis1969\] A. van der Sluis. *Condition numbers and equilibration of matrices.*
///   Numerische Mathematik 14(1):14–23, 1969.
#[derive(Debug, Clone, PartialEq)]
pub struct Equilibration {
    /// The diagonal scaling `d` (positive).
    pub scale: Vec<f64>,
    /// The scaled matrix: `diag(d) A` (rows), `A diag(d)` (columns) or `diag(d) H diag(d)`
    /// (symmetric).
    pub scaled: Mat<f64>,
}

fn inverse_norms(norms: &[f64], what: &'static str) -> Result<Vec<f64>> {
    norms
        .iter()
        .enumerate()
        .map(|(i, &r)| {
            if r > 0.0 {
                Ok(1.0 / r)
            } else {
                Err(LinalgError::ZeroNorm { what, index: i })
            }
        })
        .collect()
}

/// Row equilibration `D_0 A`, `D_0 = diag(1/‖a_i‖)` (THEORY.md §3, Theorem 2): every row of the
/// result has unit 2-norm.
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::NonFinite`], [`LinalgError::ZeroNorm`] naming a zero
/// row.
///
/// Theorem 2: $\kappa(D_0 A) \le \sqrt{m} \min_D \kappa(D A)$ over positive diagonal $D$.
///
/// # References
///
/// - \[VanDerSluis1969\] A. van der Sluis. *Condition numbers and equilibration of matrices.*
///   Numerische Mathematik 14(1):14–23, 1969.
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §3, Theorem 2.
pub fn row_equilibrate(a: MatRef<'_, f64>) -> Result<Equilibration> {
    check_matrix(a, "matrix A of row_equilibrate")?;
    let d = inverse_norms(&row_norms(a), "row of A (row_equilibrate)")?;
    let scaled = Mat::from_fn(a.nrows(), a.ncols(), |i, j| d[i] * a[(i, j)]);
    Ok(Equilibration { scale: d, scaled })
}

/// Column equilibration `A diag(1/‖a^j‖)`: Theorem 2 applied to `Aᵀ` (THEORY.md §3; the
/// LayerNorm case of Theorem 7). Every column of the result has unit 2-norm.
///
/// # Errors
/// As [`row_equilibrate`], with [`LinalgError::ZeroNorm`] naming a zero column.
///
/// # References
///
/// - \[VanDerSluis1969\] A. van der Sluis. *Condition numbers and equilibration of matrices.*
///   Numerische Mathematik 14(1):14–23, 1969.
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §3, Theorem 2.
pub fn col_equilibrate(a: MatRef<'_, f64>) -> Result<Equilibration> {
    check_matrix(a, "matrix A of col_equilibrate")?;
    let d = inverse_norms(&col_norms(a), "column of A (col_equilibrate)")?;
    let scaled = Mat::from_fn(a.nrows(), a.ncols(), |i, j| a[(i, j)] * d[j]);
    Ok(Equilibration { scale: d, scaled })
}

/// Symmetric (Jacobi) equilibration of a symmetric matrix with positive diagonal, as LAPACK's
/// `DPOEQU`: `d_i = 1/sqrt(h_ii)`, result `diag(d) H diag(d)` with unit diagonal. This is the
/// diagonal preconditioner `P = diag(1/h_ii)` in the form `SᵀHS`, `S = diag(d)` (THEORY.md §2).
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::DimensionMismatch`], [`LinalgError::NonFinite`],
/// [`LinalgError::NotSymmetric`], [`LinalgError::NotPositiveDefinite`] with the index and value
/// of the first non-positive diagonal entry.
///
/// # References
///
/// - \[VanDerSluis1969\] A. van der Sluis. *Condition numbers and equilibration of matrices.*
///   Numerische Mathematik 14(1):14–23, 1969.
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §2.
pub fn sym_equilibrate(h: MatRef<'_, f64>) -> Result<Equilibration> {
    let hs = symmetric_part(h, "symmetric matrix H of sym_equilibrate")?;
    let n = hs.nrows();
    let mut d = Vec::with_capacity(n);
    for i in 0..n {
        let v = hs[(i, i)];
        if v <= 0.0 {
            return Err(LinalgError::NotPositiveDefinite {
                what: "diagonal of H (sym_equilibrate)",
                index: i,
                value: v,
            });
        }
        d.push(1.0 / v.sqrt());
    }
    let scaled = Mat::from_fn(n, n, |i, j| d[i] * hs[(i, j)] * d[j]);
    Ok(Equilibration { scale: d, scaled })
}

/// Corollary 1's spread `max_i r_i / min_i r_i`, `r_i = d_i ‖a_i‖`, of a positive row scaling
/// `d` of `a`: `κ(DA) ≤ sqrt(m) · spread · min_D' κ(D'A)`. A spread of 1 is exact row
/// equilibration.
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::NonFinite`] (in `a` or `d`),
/// [`LinalgError::DimensionMismatch`] (`d.len() ≠ m`), [`LinalgError::InvalidArgument`] for a
/// non-positive `d_i`, [`LinalgError::ZeroNorm`] for a zero row of `a`.
///
/// # References
///
/// - \[VanDerSluis1969\] A. van der Sluis. *Condition numbers and equilibration of matrices.*
///   Numerische Mathematik 14(1):14–23, 1969.
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §3, Corollary 1.
pub fn scaling_spread(a: MatRef<'_, f64>, d: &[f64]) -> Result<f64> {
    check_matrix(a, "matrix A of scaling_spread")?;
    check_positive_vec(d, a.nrows(), "row scaling d (length must equal rows of A)")?;
    let norms = row_norms(a);
    let mut lo = f64::INFINITY;
    let mut hi = 0.0f64;
    for (i, (&di, &ri)) in d.iter().zip(&norms).enumerate() {
        if ri <= 0.0 {
            return Err(LinalgError::ZeroNorm {
                what: "row of A (scaling_spread)",
                index: i,
            });
        }
        let r = di * ri;
        lo = lo.min(r);
        hi = hi.max(r);
    }
    Ok(hi / lo)
}

/// The quantities of Van der Sluis' Theorem 2 for an `m × n` matrix of full column rank.
///
/// # References
///
/// - \[VanDerSluis1969\] A. van der Sluis. *Condition numbers and equilibration of matrices.*
///   Numerische Mathematik 14(1):14–23, 1969.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VanDerSluis {
    /// `κ(A)` of the unscaled matrix (`∞` if numerically rank deficient).
    pub kappa_a: f64,
    /// `κ(D_0 A)`, `D_0 = diag(1/‖a_i‖)`.
    pub kappa_d0a: f64,
    /// `sqrt(m)`.
    pub sqrt_m: f64,
    /// `κ(D_0 A)/sqrt(m)`: a lower bound on `min_D κ(DA)` over positive diagonals `D`.
    pub lower_bound: f64,
    /// The equilibrating scaling `diag(D_0) = 1/‖a_i‖`.
    pub d0: Vec<f64>,
}

/// Theorem 2 (Van der Sluis 1969): for `A` (`m × n`, full column rank, so `m ≥ n`) and `D_0 =
/// diag(1/‖a_i‖)`, `κ(D_0 A) ≤ sqrt(m) · min_D κ(DA)`; returns `κ(A)`, `κ(D_0 A)`, `sqrt(m)` and
/// the lower bound `κ(D_0 A)/sqrt(m)` on the best achievable row scaling.
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::NonFinite`], [`LinalgError::ZeroNorm`],
/// [`LinalgError::DimensionMismatch`] when `m < n` (cannot have full column rank),
/// [`LinalgError::RankDeficient`] when `D_0 A` is numerically rank deficient.
///
/// # References
///
/// - \[VanDerSluis1969\] A. van der Sluis. *Condition numbers and equilibration of matrices.*
///   Numerische Mathematik 14(1):14–23, 1969.
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §3, Theorem 2.
pub fn van_der_sluis_bound(a: MatRef<'_, f64>) -> Result<VanDerSluis> {
    check_matrix(a, "matrix A of van_der_sluis_bound")?;
    let (m, n) = (a.nrows(), a.ncols());
    if m < n {
        return Err(LinalgError::DimensionMismatch {
            what: "rows of A (full column rank needs at least as many rows as columns)",
            expected: n,
            got: m,
        });
    }
    let eq = row_equilibrate(a)?;
    let c0 = cond2(eq.scaled.as_ref())?;
    if c0.rank_deficient {
        return Err(LinalgError::RankDeficient {
            what: "row-equilibrated matrix D0 A",
            sigma_min: c0.sigma_min,
            sigma_max: c0.sigma_max,
        });
    }
    let ca = cond2(a)?;
    let sqrt_m = (m as f64).sqrt();
    Ok(VanDerSluis {
        kappa_a: ca.kappa,
        kappa_d0a: c0.kappa,
        sqrt_m,
        lower_bound: c0.kappa / sqrt_m,
        d0: eq.scale,
    })
}
