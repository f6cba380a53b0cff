//! Small numeric helpers shared by the passes, the losses and the data sets: buffer sizing,
//! column slices, parallelism thresholds, finiteness scans and seeded normal samples.
//!
//! A leaf module: it uses nothing else from the crate, so every other module may use it.

use faer::{Mat, MatMut, MatRef, Par};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Above this many multiply-adds a matrix product runs on rayon.
const PAR_FLOPS: usize = 1 << 17;

/// The parallelism of an `m × k` by `k × n` matrix product: rayon above [`PAR_FLOPS`]
/// multiply-adds (and more than one rayon thread), sequential below.
pub(crate) fn par_for(m: usize, n: usize, k: usize) -> Par {
    // one rayon thread (RAYON_NUM_THREADS=1, or inside a 1-thread pool): faer's sequential
    // kernels, which (unlike `Par::Rayon(1)`) allocate no job tables or reduction buffers
    if m.saturating_mul(n).saturating_mul(k) >= PAR_FLOPS && rayon::current_num_threads() > 1 {
        Par::rayon(0)
    } else {
        Par::Seq
    }
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
