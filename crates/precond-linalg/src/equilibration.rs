//! Row, column and symmetric equilibration; Van der Sluis' Theorem 2 and its Corollary 1
//! (THEORY.md §3).

use crate::alloc::try_mat_from_fn;
use faer::{Mat, MatRef};

use crate::condition::cond2;
use crate::error::{LinalgError, Result};
use crate::layout::{check_matrix, check_positive_vec, symmetric_part};
use crate::scaling::{exponent, ldexp, pow2};

/// Euclidean norms `‖a_i‖` of the rows of `a`, computed with per-row scaling so that entries
/// near the overflow or underflow thresholds do not overflow or vanish. NaN propagates.
///
/// Scale-safe: each row is multiplied by the power of two that brings its largest entry into
/// `[1, 2)` (exact, subnormal rows included) before the sum of squares, and the norm is
/// multiplied back; a norm is `∞` only when the exact norm exceeds `f64::MAX` (a row of entries
/// near `f64::MAX`), and a subnormal norm is rounded once.
pub fn row_norms(a: MatRef<'_, f64>) -> Vec<f64> {
    row_norms_split(a)
        .into_iter()
        .map(|(m, e)| ldexp(m, e))
        .collect()
}

/// Row norms as `(m, e)` with `‖a_i‖ = m · 2ᵉ` (`m ∈ [1, 2·sqrt(n))` for a non-zero finite
/// row, `m = 0` for a zero row, `m` NaN or `∞` with `e = 0` for a row holding one): never
/// overflows or underflows.
pub(crate) fn row_norms_split(a: MatRef<'_, f64>) -> Vec<(f64, i32)> {
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
    let exps: Vec<i32> = scale.iter().map(|&s| exponent(s)).collect();
    // 2^-e as one factor when it is a normal number (every row but subnormal ones)
    let factor: Vec<Option<f64>> = exps
        .iter()
        .map(|&e| (-1022..=1023).contains(&-e).then(|| pow2(-e)))
        .collect();
    let mut ssq = vec![0.0f64; m];
    for j in 0..n {
        let c = a.col(j);
        for i in 0..m {
            let t = match factor[i] {
                Some(f) => c[i] * f,
                None => ldexp(c[i], -exps[i]),
            };
            ssq[i] += t * t;
        }
    }
    scale
        .iter()
        .zip(&ssq)
        .zip(&exps)
        .map(|((&s, &q), &e)| {
            if s > 0.0 && s.is_finite() {
                (q.sqrt(), e)
            } else {
                (s, 0)
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

/// The scalings `1/‖aᵢ‖` and the scaled lines `aᵢ/‖aᵢ‖` from split norms (see
/// [`row_norms_split`]): [`LinalgError::ZeroNorm`] for a zero line, [`LinalgError::Overflow`]
/// when `1/‖aᵢ‖` exceeds `f64::MAX` (a norm below `2⁻¹⁰²⁴`).
fn inverse_norms(norms: &[(f64, i32)], what: &'static str) -> Result<Vec<f64>> {
    norms
        .iter()
        .enumerate()
        .map(|(i, &(m, e))| {
            if m > 0.0 {
                let d = ldexp(1.0 / m, -e);
                if d.is_finite() {
                    Ok(d)
                } else {
                    Err(LinalgError::Overflow {
                        what: "equilibrating scale 1/norm of a row or column",
                        log2: -(f64::from(e) + m.log2()),
                    })
                }
            } else {
                Err(LinalgError::ZeroNorm { what, index: i })
            }
        })
        .collect()
}

/// `v / ‖·‖` for a split norm `(m, e)`: `(v · 2⁻ᵉ) / m`, rounded at most twice, no overflow.
fn divide_by_norm(v: f64, (m, e): (f64, i32)) -> f64 {
    ldexp(v, -e) / m
}

/// Row equilibration `D_0 A`, `D_0 = diag(1/‖a_i‖)` (THEORY.md §3, Theorem 2): every row of the
/// result has unit 2-norm.
///
/// Scale-safe: the norms are computed as in [`row_norms`] and kept as `m · 2ᵉ`, and each row
/// is divided as `(aᵢⱼ · 2⁻ᵉ)/m`, so rows of subnormal, tiny or huge entries (and rows whose
/// norm exceeds `f64::MAX`) are equilibrated to unit norm.
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::NonFinite`], [`LinalgError::ZeroNorm`] naming a zero
/// row, [`LinalgError::Overflow`] when a scale `1/‖aᵢ‖` exceeds `f64::MAX` (a row norm below
/// `2⁻¹⁰²⁴`, so entries all subnormal: the scaled matrix exists but the scale does not fit).
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
    let norms = row_norms_split(a);
    let d = inverse_norms(&norms, "row of A (row_equilibrate)")?;
    let scaled = try_mat_from_fn("row-equilibrated matrix", a.nrows(), a.ncols(), |i, j| {
        divide_by_norm(a[(i, j)], norms[i])
    })?;
    Ok(Equilibration { scale: d, scaled })
}

/// Column equilibration `A diag(1/‖a^j‖)`: Theorem 2 applied to `Aᵀ` (THEORY.md §3; the
/// LayerNorm case of Theorem 7). Every column of the result has unit 2-norm.
///
/// Scale-safe as [`row_equilibrate`].
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
    let norms = row_norms_split(a.transpose());
    let d = inverse_norms(&norms, "column of A (col_equilibrate)")?;
    let scaled = try_mat_from_fn(
        "column-equilibrated matrix",
        a.nrows(),
        a.ncols(),
        |i, j| divide_by_norm(a[(i, j)], norms[j]),
    )?;
    Ok(Equilibration { scale: d, scaled })
}

/// Symmetric (Jacobi) equilibration of a symmetric matrix with positive diagonal, as LAPACK's
/// `DPOEQU`: `d_i = 1/sqrt(h_ii)`, result `diag(d) H diag(d)` with unit diagonal. This is the
/// diagonal preconditioner `P = diag(1/h_ii)` in the form `SᵀHS`, `S = diag(d)` (THEORY.md §2).
///
/// Scale-safe: `d_i = 1/sqrt(h_ii)` is always representable (also for subnormal `h_ii`), and an
/// entry `d_i h_ij d_j` whose left-to-right product leaves the normal range is recomputed with
/// the powers of two of `d_i`, `d_j` applied exactly.
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::DimensionMismatch`], [`LinalgError::NonFinite`],
/// [`LinalgError::NotSymmetric`], [`LinalgError::NotPositiveDefinite`] with the index and value
/// of the first non-positive diagonal entry, [`LinalgError::Overflow`] when an entry of the
/// result exceeds `f64::MAX` (`|h_ij| ≫ sqrt(h_ii h_jj)`, far from positive definite).
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
    let mut d: Vec<f64> = Vec::new();
    d.try_reserve_exact(n)
        .map_err(|_| LinalgError::OutOfMemory {
            what: "scaling of sym_equilibrate",
            bytes: crate::alloc::bytes_of(n, 8),
        })?;
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
    let mut scaled = try_mat_from_fn("symmetrically equilibrated matrix", n, n, |i, j| {
        d[i] * hs[(i, j)] * d[j]
    })?;
    // an entry whose product left the normal range on the way (subnormal or huge entries
    // beside a tiny or huge diagonal) is recomputed with the powers of two of d split off
    for j in 0..n {
        for i in 0..n {
            let first = d[i] * hs[(i, j)];
            let v = scaled[(i, j)];
            let normal = |x: f64| x == 0.0 || (x.is_finite() && x.abs() >= f64::MIN_POSITIVE);
            if normal(first) && v.is_finite() {
                continue;
            }
            let (ei, ej) = (exponent(d[i]), exponent(d[j]));
            let (mi, mj) = (ldexp(d[i], -ei), ldexp(d[j], -ej));
            let w = ldexp(hs[(i, j)], ei + ej) * mi * mj;
            if !w.is_finite() {
                return Err(LinalgError::Overflow {
                    what: "entry of the equilibrated matrix diag(d) H diag(d)",
                    log2: f64::from(ei + ej) + hs[(i, j)].abs().log2(),
                });
            }
            scaled[(i, j)] = w;
        }
    }
    Ok(Equilibration { scale: d, scaled })
}

/// Corollary 1's spread `max_i r_i / min_i r_i`, `r_i = d_i ‖a_i‖`, of a positive row scaling
/// `d` of `a`: `κ(DA) ≤ sqrt(m) · spread · min_D' κ(D'A)`. A spread of 1 is exact row
/// equilibration.
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::NonFinite`] (in `a` or `d`),
/// [`LinalgError::DimensionMismatch`] (`d.len() ≠ m`), [`LinalgError::InvalidArgument`] for a
/// non-positive `d_i`, [`LinalgError::ZeroNorm`] for a zero row of `a`,
/// [`LinalgError::Overflow`] when the spread exceeds `f64::MAX`.
///
/// Scale-safe: the products `d_i ‖a_i‖` are formed as mantissa and binary exponent, so neither
/// they nor their ratio overflow or underflow on the way.
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
    // r_i = d_i ‖a_i‖ as (mantissa in [1, 2), exponent): no overflow or underflow
    let norms = row_norms_split(a);
    let mut lo: Option<(i32, f64)> = None;
    let mut hi: Option<(i32, f64)> = None;
    for (i, (&di, &(m, e))) in d.iter().zip(&norms).enumerate() {
        if m <= 0.0 {
            return Err(LinalgError::ZeroNorm {
                what: "row of A (scaling_spread)",
                index: i,
            });
        }
        let ed = exponent(di);
        let mut v = ldexp(di, -ed) * m;
        let mut ev = ed + e;
        while v >= 2.0 {
            v *= 0.5;
            ev += 1;
        }
        let r = (ev, v);
        if lo.is_none_or(|l| r < l) {
            lo = Some(r);
        }
        if hi.is_none_or(|h| r > h) {
            hi = Some(r);
        }
    }
    let ((elo, vlo), (ehi, vhi)) = (lo.unwrap_or((0, 1.0)), hi.unwrap_or((0, 1.0)));
    let spread = ldexp(vhi / vlo, ehi - elo);
    if !spread.is_finite() {
        return Err(LinalgError::Overflow {
            what: "scaling spread max r_i / min r_i",
            log2: f64::from(ehi - elo) + (vhi / vlo).log2(),
        });
    }
    Ok(spread)
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
/// [`LinalgError::RankDeficient`] when `D_0 A` is numerically rank deficient,
/// [`LinalgError::Overflow`] as [`row_equilibrate`] (`d0` does not fit) and [`cond2`].
///
/// Scale-safe through [`row_equilibrate`] and [`cond2`]: `κ(2ᵏA) = κ(A)` for every `k` whose
/// row scales fit in an `f64`.
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
