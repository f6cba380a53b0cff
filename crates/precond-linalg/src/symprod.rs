//! Symmetric products for matrix preconditioners (THEORY.md §7): the Gram matrices `X Xᵀ`,
//! `XᵀX` that accumulate Shampoo's and SOAP's Kronecker factors, and the square `A·A` of a
//! symmetric matrix (Newton–Schulz style iterations). Only the lower triangle is computed, by a
//! triangular-output product, and mirrored into the upper one: the result is exactly symmetric
//! and costs about half a general product.
//!
//! No allocation: the only heap use is faer's per-thread packing buffers of its product
//! kernels, sized on the first product of a given size on a thread and reused afterwards
//! (`tests/no_alloc.rs` counts allocations after one warm-up call).

use faer::linalg::matmul::triangular::{BlockStructure, matmul};
use faer::{Accum, MatMut, MatRef, Par};

use crate::error::{LinalgError, Result};
use crate::layout::SYMMETRY_RTOL;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// The real scalars of the symmetric products: `f32` and `f64` (sealed).
pub trait SymScalar: faer::traits::RealField + Copy + sealed::Sealed {
    /// `0`.
    const ZERO: Self;
    /// `1`.
    const ONE: Self;
    /// The value as an `f64` (exact: both types widen exactly), for error reports.
    fn to_f64(self) -> f64;
    /// Neither NaN nor infinite.
    fn finite(self) -> bool;
    /// `|self|`.
    fn magnitude(self) -> Self;
    /// The binary exponent of the largest finite value (`f64`: 1024, `f32`: 128), reported by
    /// [`LinalgError::Overflow`].
    const MAX_LOG2: f64;
}

impl SymScalar for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const MAX_LOG2: f64 = 128.0;
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn finite(self) -> bool {
        self.is_finite()
    }
    fn magnitude(self) -> Self {
        self.abs()
    }
}

impl SymScalar for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const MAX_LOG2: f64 = 1024.0;
    fn to_f64(self) -> f64 {
        self
    }
    fn finite(self) -> bool {
        self.is_finite()
    }
    fn magnitude(self) -> Self {
        self.abs()
    }
}

/// First non-finite entry of `a` (column by column), as [`LinalgError::NonFinite`].
fn check_finite_t<T: SymScalar>(a: MatRef<'_, T>, what: &'static str) -> Result<()> {
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            let v = a[(i, j)];
            if !v.finite() {
                return Err(LinalgError::NonFinite {
                    what,
                    row: i,
                    col: j,
                    value: v.to_f64(),
                });
            }
        }
    }
    Ok(())
}

/// First non-finite entry of the lower triangle of `a`.
fn check_finite_lower<T: SymScalar>(a: MatRef<'_, T>, what: &'static str) -> Result<()> {
    for j in 0..a.ncols() {
        for i in j..a.nrows() {
            let v = a[(i, j)];
            if !v.finite() {
                return Err(LinalgError::NonFinite {
                    what,
                    row: i,
                    col: j,
                    value: v.to_f64(),
                });
            }
        }
    }
    Ok(())
}

fn check_scalar<T: SymScalar>(v: T, name: &'static str) -> Result<()> {
    if v.finite() {
        Ok(())
    } else {
        Err(LinalgError::InvalidArgument {
            name,
            reason: format!("must be finite, got {}", v.to_f64()),
        })
    }
}

/// `out` must be `n × n`.
fn check_out<T>(out: &MatMut<'_, T>, n: usize, what: &'static str) -> Result<()> {
    if out.nrows() != n {
        return Err(LinalgError::DimensionMismatch {
            what,
            expected: n,
            got: out.nrows(),
        });
    }
    if out.ncols() != n {
        return Err(LinalgError::DimensionMismatch {
            what,
            expected: n,
            got: out.ncols(),
        });
    }
    Ok(())
}

/// Copies the strict lower triangle of `out` into the upper one, in 32 × 32 tiles (the upper
/// triangle's writes run along columns within a tile instead of striding across the matrix).
pub(crate) fn mirror_lower<T: Copy>(mut out: MatMut<'_, T>) {
    const TILE: usize = 32;
    let n = out.nrows();
    for j0 in (0..n).step_by(TILE) {
        let j1 = (j0 + TILE).min(n);
        for i0 in (j0..n).step_by(TILE) {
            let i1 = (i0 + TILE).min(n);
            // the tile (i0..i1) × (j0..j1) of the lower triangle, to (j0..j1) × (i0..i1)
            for i in i0..i1 {
                for j in j0..j1.min(i) {
                    let v = out[(i, j)];
                    out[(j, i)] = v;
                }
            }
        }
    }
}

/// `out ← beta·out + alpha·lhs·rhs` on the lower triangle (`lhs·rhs` known to be symmetric),
/// then mirrored; inputs already checked.
fn sym_product<T: SymScalar>(
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    mut out: MatMut<'_, T>,
    alpha: T,
    beta: T,
    par: Par,
) -> Result<()> {
    let n = out.nrows();
    if n == 0 {
        return Ok(());
    }
    let accum = if beta == T::ZERO {
        // the old contents (even NaN) are never read
        if lhs.ncols() == 0 {
            for j in 0..n {
                for i in j..n {
                    out[(i, j)] = T::ZERO;
                }
            }
        }
        Accum::Replace
    } else {
        if beta != T::ONE {
            for j in 0..n {
                for i in j..n {
                    let v = out[(i, j)];
                    out[(i, j)] = beta * v;
                }
            }
        }
        Accum::Add
    };
    if lhs.ncols() > 0 {
        matmul(
            out.as_mut(),
            BlockStructure::TriangularLower,
            accum,
            lhs,
            BlockStructure::Rectangular,
            rhs,
            BlockStructure::Rectangular,
            alpha,
            par,
        );
    }
    // the product of finite inputs is non-finite only by overflow
    if let Err(LinalgError::NonFinite { .. }) = check_finite_lower(out.as_ref(), "") {
        return Err(LinalgError::Overflow {
            what: "an entry of the symmetric product",
            log2: T::MAX_LOG2,
        });
    }
    mirror_lower(out);
    Ok(())
}

/// The shared checks and the product of [`gram_into`] / [`gram_t_into`]: `lhs = X` or `Xᵀ`.
fn gram_checked<T: SymScalar>(
    lhs: MatRef<'_, T>,
    out: MatMut<'_, T>,
    alpha: T,
    beta: T,
    par: Par,
    what: &'static str,
) -> Result<()> {
    check_out(&out, lhs.nrows(), what)?;
    check_scalar(alpha, "alpha")?;
    check_scalar(beta, "beta")?;
    check_finite_t(lhs, "X")?;
    if beta != T::ZERO {
        check_finite_lower(out.as_ref(), "out (read because beta != 0)")?;
    }
    sym_product(lhs, lhs.transpose(), out, alpha, beta, par)
}

/// `out ← β·out + α·X Xᵀ` for `X` of size `m × k` and `out` of size `m × m` (Shampoo's left
/// factor `L ← L + G Gᵀ`, THEORY.md §7).
///
/// Only the lower triangle of the old `out` is read (when `β ≠ 0`) and the lower triangle of
/// the result is computed (faer's triangular-output product, about `m²k` flops instead of
/// `2m²k`), then copied into the upper triangle: the result is exactly symmetric. `β = 0`
/// ignores the old contents entirely (NaN included). `k = 0` gives `β·out`. No allocation (see the module
/// documentation).
///
/// # Errors
/// [`LinalgError::DimensionMismatch`] when `out` is not `m × m` (naming the expected `m`),
/// [`LinalgError::InvalidArgument`] for a non-finite `α` or `β`, [`LinalgError::NonFinite`]
/// for a NaN/∞ in `X` (or in the lower triangle of `out` when `β ≠ 0`),
/// [`LinalgError::Overflow`] when an entry of the result exceeds the largest finite value of
/// `T`. On error the contents of `out` are unspecified.
pub fn gram_into<T: SymScalar>(
    x: MatRef<'_, T>,
    out: MatMut<'_, T>,
    alpha: T,
    beta: T,
    par: Par,
) -> Result<()> {
    gram_checked(
        x,
        out,
        alpha,
        beta,
        par,
        "size of out vs rows of X (gram_into: out is rows(X) x rows(X))",
    )
}

/// `out ← β·out + α·XᵀX` for `X` of size `m × k` and `out` of size `k × k` (Shampoo's right
/// factor `R ← R + GᵀG`). Conventions as [`gram_into`].
///
/// # Errors
/// As [`gram_into`], with `out` required to be `k × k`.
pub fn gram_t_into<T: SymScalar>(
    x: MatRef<'_, T>,
    out: MatMut<'_, T>,
    alpha: T,
    beta: T,
    par: Par,
) -> Result<()> {
    gram_checked(
        x.transpose(),
        out,
        alpha,
        beta,
        par,
        "size of out vs columns of X (gram_t_into: out is cols(X) x cols(X))",
    )
}

/// `out = A·A` for a symmetric `n × n` matrix `A`, computed as `A·Aᵀ` on the lower triangle and
/// mirrored, so the result is exactly symmetric. No allocation.
///
/// # Errors
/// [`LinalgError::DimensionMismatch`] when `A` is not square or `out` is not `n × n`,
/// [`LinalgError::NonFinite`], [`LinalgError::NotSymmetric`] when some
/// `|a[i,j] − a[j,i]| > 10⁻⁶ · max|a|` (within that tolerance the result is `A·Aᵀ`),
/// [`LinalgError::Overflow`] when an entry of the result is not finite in `T`.
pub fn sym_square_into<T: SymScalar>(a: MatRef<'_, T>, out: MatMut<'_, T>, par: Par) -> Result<()> {
    if a.nrows() != a.ncols() {
        return Err(LinalgError::DimensionMismatch {
            what: "columns of A in sym_square_into (A must be square)",
            expected: a.nrows(),
            got: a.ncols(),
        });
    }
    let n = a.nrows();
    check_out(&out, n, "size of out vs size of A (sym_square_into)")?;
    check_finite_t(a, "A")?;
    let mut amax = 0.0f64;
    for j in 0..n {
        for i in 0..n {
            amax = amax.max(a[(i, j)].magnitude().to_f64());
        }
    }
    let tol = SYMMETRY_RTOL * amax;
    for j in 0..n {
        for i in 0..j {
            let (upper, lower) = (a[(i, j)].to_f64(), a[(j, i)].to_f64());
            if (upper - lower).abs() > tol {
                return Err(LinalgError::NotSymmetric {
                    what: "A",
                    row: i,
                    col: j,
                    upper,
                    lower,
                });
            }
        }
    }
    sym_product(a, a.transpose(), out, T::ONE, T::ZERO, par)
}

/// The lower triangle (and, at the split blocks, some of the upper) of `X·XT` by recursive
/// halving: `C₁₁ = X₁XT₁` and `C₂₂ = X₂XT₂` recursively, `C₂₁ = X₂XT₁` by one product, full
/// products below `BASE` rows. With column-major `X` and `XT` every product runs faer's fastest
/// layout; about `(1/2 + 1/2^{d+1})` of the full product's flops at depth `d`.
fn lower_gram_rec<T: SymScalar>(x: MatRef<'_, T>, xt: MatRef<'_, T>, out: MatMut<'_, T>, par: Par) {
    const BASE: usize = 256;
    let p = x.nrows();
    if p <= BASE {
        faer::linalg::matmul::matmul(out, Accum::Replace, x, xt, T::ONE, par);
        return;
    }
    let h = p / 2;
    let (x1, x2) = x.split_at_row(h);
    let (xt1, xt2) = xt.split_at_col(h);
    let (o11, _, o21, o22) = out.split_at_mut(h, h);
    faer::linalg::matmul::matmul(o21, Accum::Replace, x2, xt1, T::ONE, par);
    match par {
        // the two diagonal halves are independent: one per thread, each sequential (no
        // synchronization inside the small products)
        Par::Rayon(n) if n.get() >= 2 => {
            rayon::join(
                || lower_gram_rec(x1, xt1, o11, Par::Seq),
                || lower_gram_rec(x2, xt2, o22, Par::Seq),
            );
        }
        _ => {
            lower_gram_rec(x1, xt1, o11, par);
            lower_gram_rec(x2, xt2, o22, par);
        }
    }
}

/// `out = X Xᵀ` given `X` (`m × k`) **and its transpose** `XT` (`k × m`, e.g. from
/// [`transpose_into`]), exactly symmetric: the lower triangle by recursive halving (every product
/// in faer's fastest layout when both are column-major, about 5/8 of the full product's flops at
/// `m = 1024`), then mirrored. For a symmetric `A`, `gram_pair_into(A, A, out)` is `A²`. The
/// caller guarantees `XT = Xᵀ` (checked only for sizes); inputs must be finite. No allocation
/// beyond faer's per-thread product buffers.
///
/// Newton–Schulz (Muon) computes `Y Yᵀ` and `A²` this way every iteration.
///
/// # Errors
/// [`LinalgError::DimensionMismatch`] when `XT` is not `k × m` or `out` not `m × m`;
/// [`LinalgError::Overflow`] when an entry of the result is not finite (finite inputs overflow).
pub fn gram_pair_into<T: SymScalar>(
    x: MatRef<'_, T>,
    xt: MatRef<'_, T>,
    mut out: MatMut<'_, T>,
    par: Par,
) -> Result<()> {
    let (m, k) = (x.nrows(), x.ncols());
    if xt.nrows() != k {
        return Err(LinalgError::DimensionMismatch {
            what: "rows of XT vs columns of X (gram_pair_into)",
            expected: k,
            got: xt.nrows(),
        });
    }
    if xt.ncols() != m {
        return Err(LinalgError::DimensionMismatch {
            what: "columns of XT vs rows of X (gram_pair_into)",
            expected: m,
            got: xt.ncols(),
        });
    }
    check_out(&out, m, "size of out vs rows of X (gram_pair_into)")?;
    if m == 0 {
        return Ok(());
    }
    if k == 0 {
        out.fill(T::ZERO);
        return Ok(());
    }
    lower_gram_rec(x, xt, out.as_mut(), par);
    if let Err(LinalgError::NonFinite { .. }) = check_finite_lower(out.as_ref(), "") {
        return Err(LinalgError::Overflow {
            what: "an entry of the symmetric product",
            log2: T::MAX_LOG2,
        });
    }
    mirror_lower(out);
    Ok(())
}

/// `dst = srcᵀ` for column-major matrices, in 32 × 32 tiles (a cache-blocked copy, several
/// times faster than an element-order copy through a transposed view).
///
/// # Errors
/// [`LinalgError::DimensionMismatch`] when `dst` is not `src.ncols() × src.nrows()`, or
/// [`LinalgError::InvalidArgument`] when either is not column-major (unit row stride).
pub fn transpose_into<T: SymScalar>(src: MatRef<'_, T>, mut dst: MatMut<'_, T>) -> Result<()> {
    let (m, n) = (src.nrows(), src.ncols());
    if dst.nrows() != n || dst.ncols() != m {
        return Err(LinalgError::DimensionMismatch {
            what: "dst of transpose_into (ncols(src) x nrows(src))",
            expected: n * m,
            got: dst.nrows() * dst.ncols(),
        });
    }
    if (m > 1 && n > 0 && src.row_stride() != 1) || (n > 1 && m > 0 && dst.row_stride() != 1) {
        return Err(LinalgError::InvalidArgument {
            name: "src/dst",
            reason: "transpose_into needs column-major matrices (unit row stride)".into(),
        });
    }
    const TILE: usize = 32;
    for j0 in (0..n).step_by(TILE) {
        let j1 = (j0 + TILE).min(n);
        for i0 in (0..m).step_by(TILE) {
            let i1 = (i0 + TILE).min(m);
            for i in i0..i1 {
                for j in j0..j1 {
                    dst[(j, i)] = src[(i, j)];
                }
            }
        }
    }
    Ok(())
}
