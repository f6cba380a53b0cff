//! Matrix-vector kernels that read one triangle of a column-major matrix exactly once: the
//! symmetric product `y = H x` from the lower triangle of `H` (as BLAS `DSYMV` with `UPLO = 'L'`)
//! and the two triangular solves `L y = x`, `Lᵀ y = x` with a lower Cholesky factor (BLAS `DTRSV`).
//!
//! They are the per-step work of [`sym_cond`](fn@crate::sym_cond)'s Lanczos runs. Reading only the
//! triangle halves the memory traffic of a full product, and for `n ≤ 2000` one triangle
//! (`4n²` bytes ≤ 16 MB) stays resident in a 32 MB last-level cache across Lanczos steps, where
//! the full 32 MB matrix would stream from memory on every step. Each column is one fused,
//! vectorized pass (AVX2+FMA when the CPU has it, detected at run time; a portable loop otherwise).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use faer::MatRef;

use crate::operator::LinearOperator;

/// Whether the AVX2+FMA kernels can run on this CPU.
pub(crate) fn detect_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Portable kernels (any target).
mod portable {
    /// `Σ c_i x_i` while `y_i += c_i · s`.
    pub(super) fn dot_axpy(c: &[f64], x: &[f64], y: &mut [f64], s: f64) -> f64 {
        let n = c.len();
        let (x, y) = (&x[..n], &mut y[..n]);
        let mut acc = [0.0f64; 4];
        let mut i = 0;
        while i + 4 <= n {
            for k in 0..4 {
                acc[k] += c[i + k] * x[i + k];
                y[i + k] += c[i + k] * s;
            }
            i += 4;
        }
        let mut tail = 0.0;
        for k in i..n {
            tail += c[k] * x[k];
            y[k] += c[k] * s;
        }
        (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
    }

    /// `y_i −= c_i · s`.
    pub(super) fn axpy_neg(c: &[f64], s: f64, y: &mut [f64]) {
        for (yi, ci) in y.iter_mut().zip(c) {
            *yi -= ci * s;
        }
    }

    /// `Σ c_i x_i`.
    pub(super) fn dot(c: &[f64], x: &[f64]) -> f64 {
        let n = c.len();
        let x = &x[..n];
        let mut acc = [0.0f64; 4];
        let mut i = 0;
        while i + 4 <= n {
            for k in 0..4 {
                acc[k] += c[i + k] * x[i + k];
            }
            i += 4;
        }
        let mut tail = 0.0;
        for k in i..n {
            tail += c[k] * x[k];
        }
        (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
    }
}

/// AVX2+FMA kernels, eight lanes in flight (two 256-bit accumulators).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    /// Sum of the four lanes.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn hsum(v: __m256d) -> f64 {
        let lo = _mm256_castpd256_pd128(v);
        let hi = _mm256_extractf128_pd::<1>(v);
        let s = _mm_add_pd(lo, hi);
        _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
    }

    /// `Σ c_i x_i` while `y_i += c_i · s`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot_axpy(c: &[f64], x: &[f64], y: &mut [f64], s: f64) -> f64 {
        let n = c.len();
        assert!(x.len() >= n && y.len() >= n);
        let (cp, xp, yp) = (c.as_ptr(), x.as_ptr(), y.as_mut_ptr());
        let sv = _mm256_set1_pd(s);
        let (mut a0, mut a1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        let mut i = 0;
        // SAFETY: every access is at an index < n ≤ the length of each slice (asserted above).
        unsafe {
            while i + 8 <= n {
                let c0 = _mm256_loadu_pd(cp.add(i));
                let c1 = _mm256_loadu_pd(cp.add(i + 4));
                a0 = _mm256_fmadd_pd(c0, _mm256_loadu_pd(xp.add(i)), a0);
                a1 = _mm256_fmadd_pd(c1, _mm256_loadu_pd(xp.add(i + 4)), a1);
                _mm256_storeu_pd(
                    yp.add(i),
                    _mm256_fmadd_pd(c0, sv, _mm256_loadu_pd(yp.add(i))),
                );
                _mm256_storeu_pd(
                    yp.add(i + 4),
                    _mm256_fmadd_pd(c1, sv, _mm256_loadu_pd(yp.add(i + 4))),
                );
                i += 8;
            }
        }
        let mut acc = hsum(_mm256_add_pd(a0, a1));
        for k in i..n {
            acc = c[k].mul_add(x[k], acc);
            y[k] = c[k].mul_add(s, y[k]);
        }
        acc
    }

    /// `y_i −= c_i · s`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn axpy_neg(c: &[f64], s: f64, y: &mut [f64]) {
        let n = c.len();
        assert!(y.len() >= n);
        let (cp, yp) = (c.as_ptr(), y.as_mut_ptr());
        let sv = _mm256_set1_pd(s);
        let mut i = 0;
        // SAFETY: every access is at an index < n ≤ the length of each slice (asserted above).
        unsafe {
            while i + 8 <= n {
                let y0 =
                    _mm256_fnmadd_pd(_mm256_loadu_pd(cp.add(i)), sv, _mm256_loadu_pd(yp.add(i)));
                let y1 = _mm256_fnmadd_pd(
                    _mm256_loadu_pd(cp.add(i + 4)),
                    sv,
                    _mm256_loadu_pd(yp.add(i + 4)),
                );
                _mm256_storeu_pd(yp.add(i), y0);
                _mm256_storeu_pd(yp.add(i + 4), y1);
                i += 8;
            }
        }
        for k in i..n {
            y[k] = (-c[k]).mul_add(s, y[k]);
        }
    }

    /// `Σ c_i x_i`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot(c: &[f64], x: &[f64]) -> f64 {
        let n = c.len();
        assert!(x.len() >= n);
        let (cp, xp) = (c.as_ptr(), x.as_ptr());
        let (mut a0, mut a1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        let mut i = 0;
        // SAFETY: every access is at an index < n ≤ the length of each slice (asserted above).
        unsafe {
            while i + 8 <= n {
                a0 = _mm256_fmadd_pd(_mm256_loadu_pd(cp.add(i)), _mm256_loadu_pd(xp.add(i)), a0);
                a1 = _mm256_fmadd_pd(
                    _mm256_loadu_pd(cp.add(i + 4)),
                    _mm256_loadu_pd(xp.add(i + 4)),
                    a1,
                );
                i += 8;
            }
        }
        let mut acc = hsum(_mm256_add_pd(a0, a1));
        for k in i..n {
            acc = c[k].mul_add(x[k], acc);
        }
        acc
    }
}

/// The three kernels behind one run-time CPU check (also the vector kernels of the Lanczos
/// recurrence and its reorthogonalization).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Kernels {
    avx2: bool,
}

impl Kernels {
    pub(crate) fn new() -> Self {
        Kernels {
            avx2: detect_avx2(),
        }
    }
    #[inline]
    fn dot_axpy(self, c: &[f64], x: &[f64], y: &mut [f64], s: f64) -> f64 {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: AVX2 and FMA were detected at run time.
            return unsafe { avx2::dot_axpy(c, x, y, s) };
        }
        portable::dot_axpy(c, x, y, s)
    }
    #[inline]
    pub(crate) fn axpy_neg(self, c: &[f64], s: f64, y: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: AVX2 and FMA were detected at run time.
            return unsafe { avx2::axpy_neg(c, s, y) };
        }
        portable::axpy_neg(c, s, y)
    }
    #[inline]
    pub(crate) fn dot(self, c: &[f64], x: &[f64]) -> f64 {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: AVX2 and FMA were detected at run time.
            return unsafe { avx2::dot(c, x) };
        }
        portable::dot(c, x)
    }
}

/// The part of column `j` on and below the diagonal, as a slice (`a` must have unit row stride).
#[inline]
fn lower_col<'a>(a: MatRef<'a, f64>, j: usize) -> &'a [f64] {
    let n = a.nrows();
    match a.col(j).subrows(j, n - j).try_as_col_major() {
        Some(c) => c.as_slice(),
        None => unreachable!("triangle operators are only built on unit-row-stride matrices"),
    }
}

/// `x ↦ H x` for symmetric `H`, reading only the lower triangle (`DSYMV`, `UPLO = 'L'`): column
/// `j` contributes `y_j += Σ_{i≥j} h_ij x_i` and `y_i += h_ij x_j` for `i > j` in one pass.
/// `2n²` flops, `4n² + O(n)` bytes read per product.
pub(crate) struct SymLower<'a> {
    a: MatRef<'a, f64>,
    k: Kernels,
}

impl<'a> SymLower<'a> {
    /// `a` must be square with unit row stride (an owned `Mat`, or a view of one).
    pub(crate) fn new(a: MatRef<'a, f64>) -> Self {
        debug_assert!(a.nrows() == a.ncols() && (a.row_stride() == 1 || a.nrows() <= 1));
        SymLower {
            a,
            k: Kernels::new(),
        }
    }
}

impl LinearOperator for SymLower<'_> {
    fn dim(&self) -> usize {
        self.a.nrows()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let n = self.a.nrows();
        y[..n].fill(0.0);
        for j in 0..n {
            let c = lower_col(self.a, j);
            let xj = x[j];
            let d = self.k.dot_axpy(&c[1..], &x[j + 1..n], &mut y[j + 1..n], xj);
            y[j] += c[0] * xj + d;
        }
    }
}

/// `x ↦ H⁻¹ x = L⁻ᵀ (L⁻¹ x)` through a lower Cholesky factor `L` (`H = LLᵀ`), reading the
/// triangle of `L` twice: forward substitution by columns (`y_i −= l_ij y_j`, `i > j`), then
/// back substitution by dot products (`y_j = (y_j − Σ_{i>j} l_ij y_i)/l_jj`). `2n²` flops.
///
/// For `n ≥ TWO_THREAD_SOLVE_MIN_N` the matrix is split at `h ≈ 2n/3` (a multiple of 64) into
/// `L = [T₀ 0; R T₁]`, which gives two threads equal shares (`|T₀| = |R| = 2n²/9`): forward,
/// one thread solves `T₀ y₀ = x₀` and publishes `y₀` in blocks while the other subtracts `R y₀`
/// from `x₁` block by block, then `T₁ y₁ = x₁`; backward, `T₁ᵀ z₁ = y₁` first, then one thread
/// forms the dot products `Rᵀ z₁` (in blocks) that the other needs for `T₀ᵀ z₀ = y₀ − Rᵀ z₁`.
/// The one-thread path does exactly the same arithmetic in the same order (each back
/// substitution dot product of a column `j < h` is summed as two parts, rows `j+1..h` and rows
/// `h..n`), so the result is bit-identical whether or not a second thread helps, and the choice
/// can be made per application (see [`Self::with_helper_flag`]). Both passes are memory-bound:
/// the gain is the second core's share of the memory bandwidth.
pub(crate) struct CholeskyInverse<'a> {
    l: MatRef<'a, f64>,
    k: Kernels,
    split: Option<usize>,
    helper: Option<&'a AtomicBool>,
}

/// Smallest `n` for which [`CholeskyInverse`] splits its substitutions (below: plain ones).
pub(crate) const TWO_THREAD_SOLVE_MIN_N: usize = 768;

/// Columns per published block of the two-thread substitutions.
const SOLVE_BLOCK: usize = 64;

impl<'a> CholeskyInverse<'a> {
    /// `l` must be square with unit row stride and a nonzero diagonal (a Cholesky factor).
    pub(crate) fn new(l: MatRef<'a, f64>) -> Self {
        debug_assert!(l.nrows() == l.ncols() && (l.row_stride() == 1 || l.nrows() <= 1));
        let n = l.nrows();
        CholeskyInverse {
            l,
            k: Kernels::new(),
            split: (n >= TWO_THREAD_SOLVE_MIN_N).then(|| (2 * n / 3) / SOLVE_BLOCK * SOLVE_BLOCK),
            helper: None,
        }
    }

    /// Use a second (scoped OS) thread for an application whenever `flag` is set at its start
    /// (the caller sets it when its other core has become free). Results do not depend on it.
    pub(crate) fn with_helper_flag(mut self, flag: &'a AtomicBool) -> Self {
        self.helper = Some(flag);
        self
    }

    /// The split substitutions; `two` runs the `R` parts on a helper thread.
    fn apply_split(&self, y: &mut [f64], h: usize, two: bool) {
        let n = y.len();
        let (k, l) = (self.k, self.l);
        let (y0, y1) = y.split_at_mut(h);
        // forward T₀ y₀ = x₀ (columns ..h, rows ..h)
        let t0_forward = |y0: &mut [f64], b0: usize, b1: usize| {
            for j in b0..b1 {
                let c = lower_col(l, j);
                let yj = y0[j] / c[0];
                y0[j] = yj;
                k.axpy_neg(&c[1..h - j], yj, &mut y0[j + 1..]);
            }
        };
        // x₁ −= R[:, b0..b1] y₀[b0..b1]
        let r_update = |y1: &mut [f64], vals: &[f64], b0: usize| {
            for (jj, &v) in vals.iter().enumerate() {
                let j = b0 + jj;
                k.axpy_neg(&lower_col(l, j)[h - j..], v, y1);
            }
        };
        // back substitution T₀ᵀ on columns b0..b1 (descending) given p_j = (Rᵀ z₁)_j
        let t0_backward = |y0: &mut [f64], b0: usize, b1: usize, p: &dyn Fn(usize) -> f64| {
            for j in (b0..b1).rev() {
                let c = lower_col(l, j);
                let s = k.dot(&c[1..h - j], &y0[j + 1..]);
                y0[j] = (y0[j] - (s + p(j))) / c[0];
            }
        };
        if two {
            let shared: Vec<AtomicU64> = (0..h).map(|_| AtomicU64::new(0)).collect();
            let ready = AtomicUsize::new(0);
            let wait_for = |target: usize| {
                let mut spins = 0u32;
                while ready.load(Ordering::Acquire) < target {
                    spins += 1;
                    if spins < 2048 {
                        core::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
            };
            std::thread::scope(|sc| {
                sc.spawn(|| {
                    let mut buf = [0.0f64; SOLVE_BLOCK];
                    for b0 in (0..h).step_by(SOLVE_BLOCK) {
                        let b1 = (b0 + SOLVE_BLOCK).min(h);
                        wait_for(b1);
                        for (v, a) in buf.iter_mut().zip(&shared[b0..b1]) {
                            *v = f64::from_bits(a.load(Ordering::Relaxed));
                        }
                        r_update(&mut *y1, &buf[..b1 - b0], b0);
                    }
                });
                for b0 in (0..h).step_by(SOLVE_BLOCK) {
                    let b1 = (b0 + SOLVE_BLOCK).min(h);
                    t0_forward(&mut *y0, b0, b1);
                    for (a, v) in shared[b0..b1].iter().zip(&y0[b0..b1]) {
                        a.store(v.to_bits(), Ordering::Relaxed);
                    }
                    ready.store(b1, Ordering::Release);
                }
            });
            self.t1_solves(y1, h, n);
            ready.store(0, Ordering::Relaxed);
            let z1: &[f64] = y1;
            let nblocks = h.div_ceil(SOLVE_BLOCK);
            std::thread::scope(|sc| {
                sc.spawn(|| {
                    for bi in (0..nblocks).rev() {
                        let b0 = bi * SOLVE_BLOCK;
                        let b1 = (b0 + SOLVE_BLOCK).min(h);
                        for (j, slot) in (b0..b1).zip(&shared[b0..b1]) {
                            let p = k.dot(&lower_col(l, j)[h - j..], z1);
                            slot.store(p.to_bits(), Ordering::Relaxed);
                        }
                        ready.store(nblocks - bi, Ordering::Release);
                    }
                });
                let p = |j: usize| f64::from_bits(shared[j].load(Ordering::Relaxed));
                for bi in (0..nblocks).rev() {
                    wait_for(nblocks - bi);
                    let b0 = bi * SOLVE_BLOCK;
                    t0_backward(&mut *y0, b0, (b0 + SOLVE_BLOCK).min(h), &p);
                }
            });
        } else {
            t0_forward(&mut *y0, 0, h);
            r_update(&mut *y1, y0, 0);
            self.t1_solves(y1, h, n);
            let z1: &[f64] = y1;
            let p = |j: usize| k.dot(&lower_col(l, j)[h - j..], z1);
            t0_backward(y0, 0, h, &p);
        }
    }

    /// `T₁ y₁ = x₁` then `T₁ᵀ z₁ = y₁` (rows and columns `h..n`, local numbering).
    fn t1_solves(&self, y1: &mut [f64], h: usize, n: usize) {
        let (k, l) = (self.k, self.l);
        for j in h..n {
            let c = lower_col(l, j);
            let yj = y1[j - h] / c[0];
            y1[j - h] = yj;
            k.axpy_neg(&c[1..], yj, &mut y1[j - h + 1..]);
        }
        for j in (h..n).rev() {
            let c = lower_col(l, j);
            let s = k.dot(&c[1..], &y1[j - h + 1..]);
            y1[j - h] = (y1[j - h] - s) / c[0];
        }
    }
}

impl LinearOperator for CholeskyInverse<'_> {
    fn dim(&self) -> usize {
        self.l.nrows()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let n = self.l.nrows();
        let y = &mut y[..n];
        y.copy_from_slice(&x[..n]);
        match self.split {
            Some(h) if h > 0 && h < n => {
                let two = self.helper.is_some_and(|f| f.load(Ordering::Acquire));
                self.apply_split(y, h, two);
            }
            _ => {
                for j in 0..n {
                    let c = lower_col(self.l, j);
                    let yj = y[j] / c[0];
                    y[j] = yj;
                    self.k.axpy_neg(&c[1..], yj, &mut y[j + 1..]);
                }
                for j in (0..n).rev() {
                    let c = lower_col(self.l, j);
                    let s = self.k.dot(&c[1..], &y[j + 1..]);
                    y[j] = (y[j] - s) / c[0];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_spd(n: usize, seed: u64) -> Mat<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = Mat::<f64>::from_fn(n, n, |_, _| rng.random_range(-1.0..1.0));
        let mut h = &x * x.transpose();
        for i in 0..n {
            h[(i, i)] += n as f64;
        }
        h
    }

    /// A random SPD `H` (seeded), a random `x` and the reference `H x` from the full matrix.
    fn spd_problem(n: usize, seed: u64) -> (Mat<f64>, Vec<f64>, Vec<f64>) {
        let h = random_spd(n, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
        let x: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let hx: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| h[(i, j)] * x[j]).sum())
            .collect();
        (h, x, hx)
    }

    /// `m` with its strict upper triangle set to NaN (only the lower one may be read).
    fn poison_upper(mut m: Mat<f64>) -> Mat<f64> {
        for j in 0..m.ncols() {
            for i in 0..j {
                m[(i, j)] = f64::NAN;
            }
        }
        m
    }

    fn rel_err(a: &[f64], b: &[f64]) -> f64 {
        let num = a.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum::<f64>();
        let den = b.iter().map(|q| q * q).sum::<f64>();
        (num / den).sqrt()
    }

    /// The split substitutions give bit-identical results with and without the helper thread,
    /// solve `H z = H x` to `κ ε`, read only the lower triangle, and agree with the plain
    /// substitutions to rounding, for sizes around the split granularity (blocks of 64).
    #[test]
    fn two_thread_solves_match_the_sequential_ones() {
        for (n, seed) in [(TWO_THREAD_SOLVE_MIN_N, 11u64), (800, 12), (1031, 13)] {
            let (h, x, hx) = spd_problem(n, seed);
            let l = poison_upper(h.llt(faer::Side::Lower).expect("SPD").L().to_owned());
            let (off, on) = (AtomicBool::new(false), AtomicBool::new(true));
            for avx2 in [false, detect_avx2()] {
                let k = Kernels { avx2 };
                let plain = CholeskyInverse {
                    l: l.as_ref(),
                    k,
                    split: None,
                    helper: None,
                };
                let mk = |flag| {
                    let mut op = CholeskyInverse::new(l.as_ref()).with_helper_flag(flag);
                    op.k = k;
                    op
                };
                let (one, two) = (mk(&off), mk(&on));
                assert!(
                    one.split
                        .is_some_and(|h| h > 0 && h < n && h % SOLVE_BLOCK == 0)
                );
                let (mut zs, mut z1, mut z2) =
                    (vec![f64::NAN; n], vec![f64::NAN; n], vec![f64::NAN; n]);
                plain.apply(&hx, &mut zs);
                one.apply(&hx, &mut z1);
                two.apply(&hx, &mut z2);
                assert!(
                    z1.iter().zip(&z2).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "n={n} avx2={avx2}: helper thread changed the result"
                );
                let tol = 8.0 * n as f64 * f64::EPSILON;
                assert!(rel_err(&z2, &zs) < tol, "n={n} avx2={avx2}");
                assert!(rel_err(&z2, &x) < 64.0 * tol, "n={n} avx2={avx2}");
            }
        }
    }

    #[test]
    fn both_kernel_sets_match_dense_products_and_solves() {
        for (n, seed) in [
            (1usize, 1u64),
            (2, 2),
            (7, 3),
            (8, 4),
            (9, 5),
            (33, 6),
            (130, 7),
        ] {
            let (h, x, hx) = spd_problem(n, seed);
            let lp = poison_upper(h.llt(faer::Side::Lower).expect("SPD").L().to_owned());
            let hl = poison_upper(h);
            for avx2 in [false, detect_avx2()] {
                let k = Kernels { avx2 };
                let op = SymLower { a: hl.as_ref(), k };
                let mut y = vec![f64::NAN; n];
                op.apply(&x, &mut y);
                let tol = 8.0 * n as f64 * f64::EPSILON;
                assert!(rel_err(&y, &hx) < tol, "symv n={n} avx2={avx2}");
                // H⁻¹ (H x) = x up to κ(H) ε
                let inv = CholeskyInverse {
                    l: lp.as_ref(),
                    k,
                    split: None,
                    helper: None,
                };
                let mut z = vec![f64::NAN; n];
                inv.apply(&hx, &mut z);
                assert!(rel_err(&z, &x) < 64.0 * tol, "solve n={n} avx2={avx2}");
            }
        }
    }
}
