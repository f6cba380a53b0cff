//! Small numeric helpers shared by the passes, the losses and the data sets: buffer sizing,
//! column slices, parallelism thresholds, finiteness scans and seeded normal samples.
//!
//! A leaf module: it uses nothing else from the crate, so every other module may use it.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Above this many multiply-adds a matrix product is split over the rayon threads ([`product`]).
const PAR_FLOPS: usize = 1 << 17;

/// `dst ← α · lhs · rhs` (`Accum::Replace`) or `dst ← dst + α · lhs · rhs` (`Accum::Add`), by
/// faer's product kernel. Above [`PAR_FLOPS`] multiply-adds, with more than one rayon thread,
/// the output is cut into as many pieces as there are threads (along its longer side: the batch
/// columns of an activation, the rows of a weight gradient) and each piece is one sequential
/// product on its own thread (precond-linalg's `product_into`). On the 2-core Xeon of `BENCHMARKS.md` this beats faer's own
/// parallel kernel on every product of a 64-128-128-10 network at batch 1437 (e.g. the
/// 128 × 128 layer: forward 0.47 against 0.63 ms, weight gradient 0.60 against 0.87 ms), whose
/// per-product job tables and barrier dominate at these sizes; and it allocates nothing. Each
/// output entry is one dot product over the whole of `k`, as in the unsplit product.
pub(crate) fn product(
    dst: MatMut<'_, f64>,
    accum: Accum,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
    alpha: f64,
) {
    let (m, n, k) = (dst.nrows(), dst.ncols(), lhs.ncols());
    let threads = rayon::current_num_threads();
    if threads > 1 && m.saturating_mul(n).saturating_mul(k) >= PAR_FLOPS {
        precond_linalg::product_into(dst, accum, lhs, rhs, alpha, Par::rayon(threads));
    } else {
        matmul(dst, accum, lhs, rhs, alpha, Par::Seq);
    }
}

/// `dst ← lhs · rhs`, then `then(dst, extra)` on the same columns: [`product`] with an epilogue.
/// When the product is split by columns (the batch columns of an activation: above
/// [`PAR_FLOPS`] multiply-adds, more than one rayon thread, at least as many columns as
/// rows), each thread runs `then` on its own columns of `dst` and `extra` right after its piece
/// of the product, while they are still in its cache; otherwise `then` runs once on the whole
/// of both after the product. `extra` has `dst`'s number of columns. Every column gets the
/// same arithmetic either way (the pieces are [`product`]'s).
pub(crate) fn product_then<F>(
    dst: MatMut<'_, f64>,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
    extra: MatMut<'_, f64>,
    then: &F,
) where
    F: Fn(MatMut<'_, f64>, MatMut<'_, f64>) + Sync,
{
    let (m, n, k) = (dst.nrows(), dst.ncols(), lhs.ncols());
    let threads = rayon::current_num_threads();
    if threads > 1 && n >= m.max(2) && m.saturating_mul(n).saturating_mul(k) >= PAR_FLOPS {
        split_then(dst, lhs, rhs, extra, then, threads);
    } else {
        let mut dst = dst;
        product(dst.as_mut(), Accum::Replace, lhs, rhs, 1.0);
        then(dst, extra);
    }
}

/// [`product_then`] on `pieces` column pieces, cut as `precond_linalg::product_into` cuts them.
fn split_then<F>(
    mut dst: MatMut<'_, f64>,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
    extra: MatMut<'_, f64>,
    then: &F,
    pieces: usize,
) where
    F: Fn(MatMut<'_, f64>, MatMut<'_, f64>) + Sync,
{
    let n = dst.ncols();
    if pieces <= 1 || n < 2 {
        matmul(dst.as_mut(), Accum::Replace, lhs, rhs, 1.0, Par::Seq);
        then(dst, extra);
        return;
    }
    let (pl, pr) = (pieces / 2, pieces - pieces / 2);
    let at = n * pl / pieces;
    let at = if at / 8 > 0 { at / 8 * 8 } else { at };
    let (dl, dr) = dst.split_at_col_mut(at);
    let (rl, rr) = rhs.split_at_col(at);
    let (el, er) = extra.split_at_col_mut(at);
    rayon::join(
        || split_then(dl, lhs, rl, el, then, pl),
        || split_then(dr, lhs, rr, er, then, pr),
    );
}

/// Gives `m` the shape `rows × cols`, reusing its storage: shrinking never reallocates, growing
/// reallocates only beyond the largest shape held so far (new entries are zero).
#[inline]
pub(crate) fn fit(m: &mut Mat<f64>, rows: usize, cols: usize) {
    if m.nrows() != rows || m.ncols() != cols {
        m.resize_with(rows, cols, |_, _| 0.0);
    }
}

/// `z ← z + b` for one column (also `db ← db + d` for the bias gradient).
#[inline]
pub(crate) fn add_bias(z: &mut [f64], bias: &[f64]) {
    z.iter_mut().zip(bias).for_each(|(v, b)| *v += *b);
}

/// Whether every entry is finite: a branch-free scan in blocks of 16 (vectorized), so the
/// validation of a large batch costs a fraction of one pass over it.
#[inline]
pub(crate) fn all_finite(s: &[f64]) -> bool {
    let mut blocks = s.chunks_exact(16);
    for block in &mut blocks {
        let mut ok = true;
        for v in block {
            ok &= v.is_finite();
        }
        if !ok {
            return false;
        }
    }
    blocks.remainder().iter().all(|v| v.is_finite())
}

/// Standard normal sample (Box–Muller) from a seeded generator.
pub(crate) fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Column `c` of a column-major matrix as a slice.
#[inline]
pub(crate) fn col_slice<'a>(m: MatRef<'a, f64>, c: usize) -> &'a [f64] {
    match m.col(c).try_as_col_major() {
        Some(col) => col.as_slice(),
        None => unreachable_layout(),
    }
}

/// Column `c` of a column-major matrix as a mutable slice.
#[inline]
pub(crate) fn col_slice_mut<'a>(m: MatMut<'a, f64>, c: usize) -> &'a mut [f64] {
    match m.col_mut(c).try_as_col_major_mut() {
        Some(col) => col.as_slice_mut(),
        None => unreachable_layout(),
    }
}

#[cold]
#[inline(never)]
fn unreachable_layout() -> ! {
    // Only the crate's own owned matrices (unit row stride) reach these helpers.
    unreachable!("internal buffer is not column-major")
}
