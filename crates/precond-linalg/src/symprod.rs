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
    /// Every entry of `s` is finite: the sum of `v − v` over 16 independent lanes (0 for a
    /// finite `v`, NaN for NaN or ±∞, and NaN stays NaN), so the scan vectorizes.
    fn all_finite(s: &[Self]) -> bool;
}

macro_rules! lanes_finite {
    ($t:ty) => {
        fn all_finite(s: &[$t]) -> bool {
            const L: usize = 16;
            let mut acc = [0.0 as $t; L];
            let chunks = s.chunks_exact(L);
            let tail = chunks.remainder();
            for c in chunks {
                for (a, &v) in acc.iter_mut().zip(c) {
                    *a += v - v;
                }
            }
            let mut t = 0.0 as $t;
            for &v in tail {
                t += v - v;
            }
            acc.iter().fold(t, |m, &a| m + a) == 0.0
        }
    };
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
    lanes_finite!(f32);
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
    lanes_finite!(f64);
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
    if a.row_stride() == 1 {
        // the common case first: column slices scanned by lanes; the slow scan below only
        // locates a non-finite entry
        let ok = (0..a.ncols()).all(|j| {
            let col = a.col(j).subrows(j, a.nrows() - j);
            col.try_as_col_major()
                .is_some_and(|c| T::all_finite(c.as_slice()))
        });
        if ok {
            return Ok(());
        }
    }
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

/// Copies the strict lower triangle of `out` into the upper one: the off-diagonal block
/// `O₁₂ ← O₂₁ᵀ` by the tiled transpose (split over the threads of `par`), then the two diagonal
/// blocks recursively (one per thread), tiles of [`TILE`] below `BASE` rows. Column-major `out`
/// (every caller's workspace) takes the tiled path; any other layout an element-order copy.
pub(crate) fn mirror_lower<T: Copy + Send + Sync>(out: MatMut<'_, T>, par: Par) {
    const BASE: usize = 256;
    let n = out.nrows();
    if n <= BASE || out.row_stride() != 1 {
        mirror_tiles(out);
        return;
    }
    let h = n / 2;
    let (o11, o12, o21, o22) = out.split_at_mut(h, h);
    transpose_par(o21.as_ref(), o12, par);
    match par {
        Par::Rayon(t) if t.get() >= 2 => {
            rayon::join(
                || mirror_lower(o11, Par::Seq),
                || mirror_lower(o22, Par::Seq),
            );
        }
        _ => {
            mirror_lower(o11, par);
            mirror_lower(o22, par);
        }
    }
}

/// The tile edge of the blocked transposes: the 16 strided source columns of a tile stay in L1
/// even when their stride is a power of two (one cache set; 32 columns thrash it). Measured on
/// the Xeon of `BENCHMARKS.md`, 1024² `f32`, one thread: tiles of 8 / 16 / 32 take 1.08 /
/// 0.53 / 0.80 ms.
const TILE: usize = 16;

/// [`mirror_lower`] on one thread, tile by tile.
fn mirror_tiles<T: Copy>(mut out: MatMut<'_, T>) {
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

/// `dst = srcᵀ`, both column-major (unit row stride; checked by the callers), sizes agreeing:
/// the larger side halved per thread of `par` (rayon joins), [`transpose_tiles`] on each piece.
fn transpose_par<T: Copy + Send + Sync>(src: MatRef<'_, T>, dst: MatMut<'_, T>, par: Par) {
    let pieces = match par {
        Par::Seq => 1,
        Par::Rayon(t) => t.get(),
    };
    transpose_split(src, dst, pieces);
}

fn transpose_split<T: Copy + Send + Sync>(src: MatRef<'_, T>, dst: MatMut<'_, T>, pieces: usize) {
    let (m, n) = (src.nrows(), src.ncols());
    // below 64 K entries a join costs more than the copy
    if pieces <= 1 || m * n < 1 << 16 {
        transpose_tiles(src, dst);
        return;
    }
    let (pl, pr) = (pieces / 2, pieces - pieces / 2);
    if n >= m {
        let at = (n * pl / pieces).div_ceil(TILE) * TILE;
        let (sl, sr) = src.split_at_col(at.min(n));
        let (dt, db) = dst.split_at_row_mut(at.min(n));
        rayon::join(
            || transpose_split(sl, dt, pl),
            || transpose_split(sr, db, pr),
        );
    } else {
        let at = (m * pl / pieces).div_ceil(TILE) * TILE;
        let (st, sb) = src.split_at_row(at.min(m));
        let (dl, dr) = dst.split_at_col_mut(at.min(m));
        rayon::join(
            || transpose_split(st, dl, pl),
            || transpose_split(sb, dr, pr),
        );
    }
}

/// `dst = srcᵀ` on one thread in [`TILE`] × [`TILE`] tiles: each destination column segment
/// is written contiguously from a row of the source tile (whose columns stay in L1). The other
/// loop order (contiguous reads, writes one column stride apart) is several times slower at
/// n = 1024 `f32`: the strided writes of a power-of-two stride fall into one cache set.
fn transpose_tiles<T: Copy>(src: MatRef<'_, T>, dst: MatMut<'_, T>) {
    let (m, n) = (src.nrows(), src.ncols());
    debug_assert!(dst.nrows() == n && dst.ncols() == m);
    if m == 0 || n == 0 {
        return;
    }
    debug_assert!(src.row_stride() == 1 && dst.row_stride() == 1);
    let (sp, scs) = (src.as_ptr(), src.col_stride());
    let (dp, dcs) = (dst.as_ptr_mut(), dst.col_stride());
    for j0 in (0..n).step_by(TILE) {
        let j1 = (j0 + TILE).min(n);
        for i0 in (0..m).step_by(TILE) {
            let i1 = (i0 + TILE).min(m);
            for i in i0..i1 {
                for j in j0..j1 {
                    // SAFETY: i < m and j < n. `src` is m × n with unit row stride and column
                    // stride `scs`, so entry (i, j) is at offset i + j·scs; `dst` is n × m with
                    // unit row stride and column stride `dcs`, so (j, i) is at j + i·dcs; the
                    // views are distinct (one shared, one exclusive borrow).
                    unsafe {
                        *dp.offset(j as isize + i as isize * dcs) =
                            *sp.offset(i as isize + j as isize * scs);
                    }
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
    mirror_lower(out, par);
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

/// `dst ← α·lhs·rhs` (`Accum::Replace`) or `dst ← dst + α·lhs·rhs` (`Accum::Add`), with the
/// output cut into one piece per thread of `par` and each piece one **sequential** faer
/// product on its own rayon thread: the longer side of `dst` is halved (at a multiple of 8 when
/// the side allows), recursively, so `t` threads get a grid of `t` blocks and each reads only
/// its strip of the operands. `Par::Seq` (or a 1 × 1 output) is one sequential product.
///
/// Why not faer's own parallel kernel: on the 2-core Xeon (AVX-512) of `BENCHMARKS.md` it
/// reaches 250–260 GF/s on a 1024³ `f32` product where this split reaches 280–300 GF/s (same
/// process, interleaved, median time ratio 1.10–1.16 at 1024², 1024 × 4096 and 256 × 1024
/// outputs), and on the small products of an MLP its job tables and barrier dominate (the
/// precond-nn train step). Each output entry is one dot product over the whole inner
/// dimension, as in the unsplit sequential product (the same kernel on a sub-block): the result
/// is the sequential one up to the rounding of that dot product (faer's edge tiles may round
/// the `Accum::Add` epilogue differently; `tests/matrix_precond.rs` holds every entry to the
/// classical bound `γ_{k+2}(|α||A||B| + |C|)`), and the same for the same thread count.
/// Allocates nothing beyond faer's per-thread packing buffers.
///
/// # Panics
/// When the shapes do not agree (`dst` is `lhs.nrows() × rhs.ncols()`, `lhs.ncols() ==
/// rhs.nrows()`), as faer's `matmul`: callers pass matrices they sized.
pub fn product_into<T: faer::traits::ComplexField + Copy>(
    dst: MatMut<'_, T>,
    accum: Accum,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    alpha: T,
    par: Par,
) {
    let pieces = match par {
        Par::Seq => 1,
        Par::Rayon(n) => n.get(),
    };
    split_product(dst, accum, lhs, rhs, alpha, pieces);
}

fn split_product<T: faer::traits::ComplexField + Copy>(
    dst: MatMut<'_, T>,
    accum: Accum,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    alpha: T,
    pieces: usize,
) {
    let (m, n) = (dst.nrows(), dst.ncols());
    let (pl, pr) = (pieces / 2, pieces - pieces / 2);
    let cut = |len: usize| {
        let at = len * pl / pieces;
        let aligned = at / 8 * 8;
        if aligned > 0 { aligned } else { at }
    };
    if pieces <= 1 || m.max(n) < 2 {
        faer::linalg::matmul::matmul(dst, accum, lhs, rhs, alpha, Par::Seq);
    } else if n >= m {
        let at = cut(n);
        let (dl, dr) = dst.split_at_col_mut(at);
        let (rl, rr) = rhs.split_at_col(at);
        rayon::join(
            || split_product(dl, accum, lhs, rl, alpha, pl),
            || split_product(dr, accum, lhs, rr, alpha, pr),
        );
    } else {
        let at = cut(m);
        let (dt, db) = dst.split_at_row_mut(at);
        let (lt, lb) = lhs.split_at_row(at);
        rayon::join(
            || split_product(dt, accum, lt, rhs, alpha, pl),
            || split_product(db, accum, lb, rhs, alpha, pr),
        );
    }
}

/// The lower triangle (and, at the split blocks, some of the upper) of `X·XT` by recursive
/// halving: `C₁₁ = X₁XT₁` and `C₂₂ = X₂XT₂` recursively, `C₂₁ = X₂XT₁` by one product, full
/// products below `BASE` rows. With column-major `X` and `XT` every product runs faer's fastest
/// layout; about `(1/2 + 1/2^{d+1})` of the full product's flops at depth `d`.
fn lower_gram_rec<T: SymScalar>(x: MatRef<'_, T>, xt: MatRef<'_, T>, out: MatMut<'_, T>, par: Par) {
    const BASE: usize = 256;
    let p = x.nrows();
    if p <= BASE {
        product_into(out, Accum::Replace, x, xt, T::ONE, par);
        return;
    }
    let h = p / 2;
    let (x1, x2) = x.split_at_row(h);
    let (xt1, xt2) = xt.split_at_col(h);
    let (o11, _, o21, o22) = out.split_at_mut(h, h);
    product_into(o21, Accum::Replace, x2, xt1, T::ONE, par);
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
    mirror_lower(out, par);
    Ok(())
}

/// `dst = srcᵀ` for column-major matrices, in 16 × 16 tiles (a cache-blocked copy, several
/// times faster than an element-order copy through a transposed view), the larger side split
/// over the threads of `par` from 64 K entries on.
///
/// # Errors
/// [`LinalgError::DimensionMismatch`] when `dst` is not `src.ncols() × src.nrows()`, or
/// [`LinalgError::InvalidArgument`] when either is not column-major (unit row stride).
pub fn transpose_into<T: SymScalar>(
    src: MatRef<'_, T>,
    dst: MatMut<'_, T>,
    par: Par,
) -> Result<()> {
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
    transpose_par(src, dst, par);
    Ok(())
}
