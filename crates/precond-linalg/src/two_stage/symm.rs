//! `X = A V` for a symmetric `A` stored in its lower triangle and a thin `V` (BLAS `DSYMM` with
//! `SIDE = 'L'`, `UPLO = 'L'`): the product stage 1 needs once per panel (`V` has `b` columns).
//!
//! Why not faer: its triangular products on these shapes (`m × m` times `m × 32`) ran at
//! 21–28 GFLOP/s on both cores of the development machine (its general product 22–45; ours
//! 32–37, see BENCHMARKS.md), because
//! they pack the big operand for a product that uses each of its entries only `2b` times. Here
//! every loaded entry `a_ij` (`i > j`) of the lower triangle is used twice, for
//! `x_i += a_ij v_j` and `x_j += a_ij v_i`, straight from the column-major storage without
//! packing: a block of four columns of `A` is read in row chunks that stay in the L1 cache while
//! all `k` columns of `V` pass over them. The two threads (when `par` allows them) take column
//! ranges with equal triangle areas and sum their outputs at the end.

#[cfg(test)]
use faer::Mat;
use faer::reborrow::ReborrowMut;
use faer::{MatMut, MatRef, Par};

/// Rows of `A` per chunk: 4 columns × 256 rows × 8 bytes = 8 KB of `A` stay in L1 while the
/// `k` columns of `V` and `X` pass over them.
const CHUNK: usize = 256;

/// From this dimension on, the product runs on two threads when `par` allows.
const PAR_MIN_M: usize = 256;

/// `x ← A v` (`x` overwritten) for symmetric `A` (`m × m`, only its lower triangle is read),
/// `v` and `x` of size `m × k`; all three with unit row stride.
pub(crate) fn symm_lower(
    a: MatRef<'_, f64>,
    v: MatRef<'_, f64>,
    mut x: MatMut<'_, f64>,
    par: Par,
) -> crate::error::Result<()> {
    let m = a.nrows();
    let k = v.ncols();
    assert!(
        a.ncols() == m && v.nrows() == m && x.nrows() == m && x.ncols() == k,
        "symm_lower: shapes"
    );
    assert!(
        m == 0 || (a.row_stride() == 1 && v.row_stride() == 1 && x.row_stride() == 1),
        "symm_lower: unit row strides"
    );
    x.fill(0.0);
    if m == 0 || k == 0 {
        return Ok(());
    }
    let simd = Simd::detect();
    if par.degree() < 2 || m < PAR_MIN_M {
        columns(a, v, x, 0, m, simd);
        return Ok(());
    }
    // columns [0, s) and [s, m) hold equal parts of the triangle: m s − s²/2 = m²/4
    let s = ((m as f64 * (1.0 - std::f64::consts::FRAC_1_SQRT_2)) as usize) / 4 * 4;
    let mut x0 = crate::alloc::try_zeros("buffers of the two-stage reduction", m, k)?;
    rayon::join(
        || columns(a, v, x0.as_mut(), 0, s, simd),
        || columns(a, v, x.rb_mut(), s, m, simd),
    );
    for c in 0..k {
        let dst = col_mut(x.rb_mut(), c);
        for (d, s) in dst.iter_mut().zip(col(x0.as_ref(), c)) {
            *d += s;
        }
    }
    Ok(())
}

/// The widest vector kernel of [`block4`] this CPU runs (detected once per call site); ordered
/// narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Simd {
    /// Plain loops (any target).
    Portable,
    /// 256-bit AVX2 with FMA.
    Avx2,
    /// 512-bit AVX-512F.
    Avx512,
}

impl Simd {
    /// The widest level the running CPU supports.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Self::Avx512;
        }
        if crate::triangle::detect_avx2() {
            Self::Avx2
        } else {
            Self::Portable
        }
    }

    /// Every level the running CPU supports, narrowest first (the tests run each).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Self> {
        [Self::Portable, Self::Avx2, Self::Avx512]
            .into_iter()
            .filter(|&l| l <= Self::detect())
            .collect()
    }
}

/// From this dimension on, [`symv_lower`] runs on two threads when `par` allows (and the
/// blocked tridiagonalization splits its trailing update the same way). Measured on the 2-core
/// Intel Xeon of session 12 with the reduction on the pool as a whole (`pool::on_pool`: each
/// split is then a worker-to-worker join, not a locked hand-off from outside the pool), all
/// eigenvalues with the threshold at 256 against 640, interleaved binaries: n = 260 and 300
/// equal within noise, n = 400 5.1–6.4 vs 5.6–6.7 ms, 500 8.0–8.9 vs 9.4–10.7, 600 12.0–14.2 vs
/// 14.0–17.6. (640 was measured when every split was such a hand-off.)
pub(crate) const SYMV_PAR_MIN_M: usize = 320;

/// `y ← A v` (`y` overwritten) for symmetric `A` (`m × m`, only its lower triangle is read,
/// unit row stride), BLAS `DSYMV` with `UPLO = 'L'`: the matrix–vector product of the blocked
/// one-stage tridiagonalization ([`crate::sytrd`]). Every loaded `a_ij` (`i > j`) serves both
/// `y_i += a_ij v_j` and `y_j += a_ij v_i` (columns in blocks of four, streamed top to bottom
/// once). With two threads (`par.degree() ≥ 2`, `m ≥` [`SYMV_PAR_MIN_M`]) the columns split
/// into two ranges of equal triangle area; the second range's contributions (rows `≥ s`) go
/// to `spare` (length `≥ m`) and are added at the end.
pub(crate) fn symv_lower(
    a: MatRef<'_, f64>,
    v: &[f64],
    y: &mut [f64],
    spare: &mut [f64],
    par: Par,
    simd: Simd,
) {
    let m = a.nrows();
    assert!(
        a.ncols() == m && v.len() == m && y.len() == m && (m == 0 || a.row_stride() == 1),
        "symv_lower: shapes"
    );
    y.fill(0.0);
    if par.degree() < 2 || m < SYMV_PAR_MIN_M {
        symv_columns(a, v, y, 0, m, simd);
        return;
    }
    let s = symv_split(m);
    let spare = &mut spare[..m];
    spare[s..].fill(0.0);
    rayon::join(
        || symv_columns(a, v, y, 0, s, simd),
        || symv_columns(a, v, spare, s, m, simd),
    );
    for (d, x) in y[s..].iter_mut().zip(&spare[s..]) {
        *d += x;
    }
}

/// Where [`symv_lower`] splits the columns of an `m × m` lower triangle between its two
/// threads: the first `s` columns hold half the triangle's area (`s ≈ m (1 − 1/√2)`), rounded
/// down to the four-column blocks of the kernel.
pub(crate) fn symv_split(m: usize) -> usize {
    ((m as f64 * (1.0 - std::f64::consts::FRAC_1_SQRT_2)) as usize) / 4 * 4
}

/// Adds the contributions of columns `j0..j1` of the lower triangle of `A` to `y` (rows `≥ j0`
/// only are written): blocks of four columns, their `4 × 4` diagonal block by plain loops and
/// the rows below by [`block4`] in one pass; the last columns by plain loops.
pub(crate) fn symv_columns(
    a: MatRef<'_, f64>,
    v: &[f64],
    y: &mut [f64],
    j0: usize,
    j1: usize,
    simd: Simd,
) {
    let m = a.nrows();
    let jf = j0 + (j1 - j0) / 4 * 4;
    for j in (j0..jf).step_by(4) {
        let acols = [col(a, j), col(a, j + 1), col(a, j + 2), col(a, j + 3)];
        for r in 0..4 {
            let mut s = 0.0;
            for t in 0..4 {
                s += if r >= t {
                    acols[t][j + r]
                } else {
                    acols[r][j + t]
                } * v[j + t];
            }
            y[j + r] += s;
        }
        if j + 4 < m {
            let vj = [v[j], v[j + 1], v[j + 2], v[j + 3]];
            let dots = block4(&acols, vj, v, y, j + 4, m, simd);
            for t in 0..4 {
                y[j + t] += dots[t];
            }
        }
    }
    for j in jf..j1 {
        let aj = col(a, j);
        let mut s = aj[j] * v[j];
        for i in j + 1..m {
            s += aj[i] * v[i];
            y[i] += aj[i] * v[j];
        }
        y[j] += s;
    }
}

/// Column `j` of a matrix with unit row stride, as a slice (the callers check the stride).
pub(crate) fn col<'a>(a: MatRef<'a, f64>, j: usize) -> &'a [f64] {
    a.col(j)
        .try_as_col_major()
        .expect("unit row stride (checked by the caller)")
        .as_slice()
}

/// Column `j` of a matrix with unit row stride, as a mutable slice.
pub(crate) fn col_mut<'a>(a: MatMut<'a, f64>, j: usize) -> &'a mut [f64] {
    a.col_mut(j)
        .try_as_col_major_mut()
        .expect("unit row stride (checked by the caller)")
        .as_slice_mut()
}

/// Adds the contributions of columns `j0..j1` of the lower triangle of `A` to `x`:
/// `x_j += Σ_{i≥j} a_ij v_i` and `x_i += a_ij v_j` (`i > j`). Four-column blocks: their
/// `4 × 4` diagonal blocks by plain loops, the parts below them row chunk by row chunk (the
/// chunk's rows of `x` and `v`, `2 · CHUNK · k` numbers, stay in L2 while every column block
/// passes over them; each `4 × CHUNK` tile of `A` stays in L1 while the `k` columns pass over
/// it). A last block narrower than four columns by plain loops.
fn columns(
    a: MatRef<'_, f64>,
    v: MatRef<'_, f64>,
    mut x: MatMut<'_, f64>,
    j0: usize,
    j1: usize,
    simd: Simd,
) {
    let (m, k) = (a.nrows(), v.ncols());
    let jf = j0 + (j1 - j0) / 4 * 4;
    for j in (j0..jf).step_by(4) {
        // the 4 × 4 diagonal block, from its lower triangle
        for c in 0..k {
            let vc = col(v, c);
            let xc = col_mut(x.rb_mut(), c);
            for r in 0..4 {
                let mut s = 0.0;
                for t in 0..4 {
                    let (i, jj) = if r >= t {
                        (j + r, j + t)
                    } else {
                        (j + t, j + r)
                    };
                    s += a[(i, jj)] * vc[j + t];
                }
                xc[j + r] += s;
            }
        }
    }
    for j in jf..j1 {
        // columns beyond the last full block: plain loops
        let aj = col(a, j);
        for c in 0..k {
            let vc = col(v, c);
            let xc = col_mut(x.rb_mut(), c);
            let mut s = aj[j] * vc[j];
            for i in j + 1..m {
                s += aj[i] * vc[i];
                xc[i] += aj[i] * vc[j];
            }
            xc[j] += s;
        }
    }
    let mut lo = j0 + 4;
    while lo < m && jf > j0 {
        let hi = (lo + CHUNK).min(m);
        let mut j = j0;
        while j < jf && j + 4 < hi {
            let r0 = lo.max(j + 4);
            let acols = [col(a, j), col(a, j + 1), col(a, j + 2), col(a, j + 3)];
            for c in 0..k {
                let vc = col(v, c);
                let xc = col_mut(x.rb_mut(), c);
                let vj = [vc[j], vc[j + 1], vc[j + 2], vc[j + 3]];
                let dots = block4(&acols, vj, vc, xc, r0, hi, simd);
                for t in 0..4 {
                    xc[j + t] += dots[t];
                }
            }
            j += 4;
        }
        lo = hi;
    }
}

/// Rows `lo..hi` of four columns `acols` of `A`: `x_i += Σ_t a_{i,t} vj_t` and returns
/// `Σ_i a_{i,t} v_i` for each of the four columns.
#[inline]
fn block4(
    acols: &[&[f64]; 4],
    vj: [f64; 4],
    v: &[f64],
    x: &mut [f64],
    lo: usize,
    hi: usize,
    simd: Simd,
) -> [f64; 4] {
    let (v, x) = (&v[lo..hi], &mut x[lo..hi]);
    let cols = [
        &acols[0][lo..hi],
        &acols[1][lo..hi],
        &acols[2][lo..hi],
        &acols[3][lo..hi],
    ];
    #[cfg(target_arch = "x86_64")]
    match simd {
        // SAFETY: AVX-512F was detected at run time (`Simd::detect`).
        Simd::Avx512 => return unsafe { avx512_kernel::block4(cols, vj, v, x) },
        // SAFETY: AVX2 and FMA were detected at run time.
        Simd::Avx2 => return unsafe { avx2_kernel::block4(cols, vj, v, x) },
        Simd::Portable => {}
    }
    let _ = simd;
    portable_block4(cols, vj, v, x, [0.0; 4])
}

/// `block4` by plain loops, the dot products continuing from `dots` (also the AVX2 kernel's
/// tail).
fn portable_block4(
    cols: [&[f64]; 4],
    vj: [f64; 4],
    v: &[f64],
    x: &mut [f64],
    mut dots: [f64; 4],
) -> [f64; 4] {
    for i in 0..x.len() {
        let a = [cols[0][i], cols[1][i], cols[2][i], cols[3][i]];
        x[i] += a[0] * vj[0] + a[1] * vj[1] + a[2] * vj[2] + a[3] * vj[3];
        for t in 0..4 {
            dots[t] += a[t] * v[i];
        }
    }
    dots
}

#[cfg(target_arch = "x86_64")]
mod avx2_kernel {
    use std::arch::x86_64::*;

    use crate::triangle::avx2::hsum;

    /// AVX2 version of `portable_block4`: four rows per iteration, the four column entries
    /// `a_{i..i+4, t}` loaded once and used by both the `x` update and the four dot products.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn block4(cols: [&[f64]; 4], vj: [f64; 4], v: &[f64], x: &mut [f64]) -> [f64; 4] {
        let n = x.len();
        assert!(v.len() == n && cols.iter().all(|c| c.len() == n));
        let (p0, p1, p2, p3) = (
            cols[0].as_ptr(),
            cols[1].as_ptr(),
            cols[2].as_ptr(),
            cols[3].as_ptr(),
        );
        let (vp, xp) = (v.as_ptr(), x.as_mut_ptr());
        let (b0, b1, b2, b3) = (
            _mm256_set1_pd(vj[0]),
            _mm256_set1_pd(vj[1]),
            _mm256_set1_pd(vj[2]),
            _mm256_set1_pd(vj[3]),
        );
        let mut d = [_mm256_setzero_pd(); 4];
        let mut i = 0;
        while i + 4 <= n {
            // SAFETY: i + 4 ≤ n and every slice has length n (asserted above).
            unsafe {
                let a0 = _mm256_loadu_pd(p0.add(i));
                let a1 = _mm256_loadu_pd(p1.add(i));
                let a2 = _mm256_loadu_pd(p2.add(i));
                let a3 = _mm256_loadu_pd(p3.add(i));
                let mut xv = _mm256_loadu_pd(xp.add(i));
                xv = _mm256_fmadd_pd(a0, b0, xv);
                xv = _mm256_fmadd_pd(a1, b1, xv);
                xv = _mm256_fmadd_pd(a2, b2, xv);
                xv = _mm256_fmadd_pd(a3, b3, xv);
                _mm256_storeu_pd(xp.add(i), xv);
                let vv = _mm256_loadu_pd(vp.add(i));
                d[0] = _mm256_fmadd_pd(a0, vv, d[0]);
                d[1] = _mm256_fmadd_pd(a1, vv, d[1]);
                d[2] = _mm256_fmadd_pd(a2, vv, d[2]);
                d[3] = _mm256_fmadd_pd(a3, vv, d[3]);
            }
            i += 4;
        }
        let dots = [hsum(d[0]), hsum(d[1]), hsum(d[2]), hsum(d[3])];
        let tail = [&cols[0][i..], &cols[1][i..], &cols[2][i..], &cols[3][i..]];
        super::portable_block4(tail, vj, &v[i..], &mut x[i..], dots)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512_kernel {
    use std::arch::x86_64::*;

    /// AVX-512 version of `portable_block4`: sixteen rows per iteration in two independent
    /// halves (two sets of dot accumulators, so the loop-carried FMA latency is hidden), each
    /// column entry loaded once for the `x` update and its dot product; the last rows by
    /// masked loads and stores.
    #[target_feature(enable = "avx512f")]
    pub(super) fn block4(cols: [&[f64]; 4], vj: [f64; 4], v: &[f64], x: &mut [f64]) -> [f64; 4] {
        let n = x.len();
        assert!(v.len() == n && cols.iter().all(|c| c.len() == n));
        let p = [
            cols[0].as_ptr(),
            cols[1].as_ptr(),
            cols[2].as_ptr(),
            cols[3].as_ptr(),
        ];
        let (vp, xp) = (v.as_ptr(), x.as_mut_ptr());
        let b = [
            _mm512_set1_pd(vj[0]),
            _mm512_set1_pd(vj[1]),
            _mm512_set1_pd(vj[2]),
            _mm512_set1_pd(vj[3]),
        ];
        let mut d = [_mm512_setzero_pd(); 8];
        let mut i = 0;
        while i + 16 <= n {
            for h in 0..2 {
                let r = i + 8 * h;
                // SAFETY: r + 8 ≤ n and every slice has length n (asserted above).
                unsafe {
                    let a0 = _mm512_loadu_pd(p[0].add(r));
                    let a1 = _mm512_loadu_pd(p[1].add(r));
                    let a2 = _mm512_loadu_pd(p[2].add(r));
                    let a3 = _mm512_loadu_pd(p[3].add(r));
                    let mut xv = _mm512_loadu_pd(xp.add(r));
                    xv = _mm512_fmadd_pd(a0, b[0], xv);
                    xv = _mm512_fmadd_pd(a1, b[1], xv);
                    xv = _mm512_fmadd_pd(a2, b[2], xv);
                    xv = _mm512_fmadd_pd(a3, b[3], xv);
                    _mm512_storeu_pd(xp.add(r), xv);
                    let vv = _mm512_loadu_pd(vp.add(r));
                    d[4 * h] = _mm512_fmadd_pd(a0, vv, d[4 * h]);
                    d[4 * h + 1] = _mm512_fmadd_pd(a1, vv, d[4 * h + 1]);
                    d[4 * h + 2] = _mm512_fmadd_pd(a2, vv, d[4 * h + 2]);
                    d[4 * h + 3] = _mm512_fmadd_pd(a3, vv, d[4 * h + 3]);
                }
            }
            i += 16;
        }
        // the last 1–15 rows: one or two masked 8-row steps (lanes past the end neither
        // loaded nor stored)
        while i < n {
            let k = (n - i).min(8);
            let mask: __mmask8 = (((1u16) << k) - 1) as __mmask8;
            // SAFETY: only the `k ≤ n − i` lanes of `mask` are read or written.
            unsafe {
                let a0 = _mm512_maskz_loadu_pd(mask, p[0].add(i));
                let a1 = _mm512_maskz_loadu_pd(mask, p[1].add(i));
                let a2 = _mm512_maskz_loadu_pd(mask, p[2].add(i));
                let a3 = _mm512_maskz_loadu_pd(mask, p[3].add(i));
                let mut xv = _mm512_maskz_loadu_pd(mask, xp.add(i));
                xv = _mm512_fmadd_pd(a0, b[0], xv);
                xv = _mm512_fmadd_pd(a1, b[1], xv);
                xv = _mm512_fmadd_pd(a2, b[2], xv);
                xv = _mm512_fmadd_pd(a3, b[3], xv);
                _mm512_mask_storeu_pd(xp.add(i), mask, xv);
                let vv = _mm512_maskz_loadu_pd(mask, vp.add(i));
                d[0] = _mm512_fmadd_pd(a0, vv, d[0]);
                d[1] = _mm512_fmadd_pd(a1, vv, d[1]);
                d[2] = _mm512_fmadd_pd(a2, vv, d[2]);
                d[3] = _mm512_fmadd_pd(a3, vv, d[3]);
            }
            i += k;
        }
        [
            _mm512_reduce_add_pd(_mm512_add_pd(d[0], d[4])),
            _mm512_reduce_add_pd(_mm512_add_pd(d[1], d[5])),
            _mm512_reduce_add_pd(_mm512_add_pd(d[2], d[6])),
            _mm512_reduce_add_pd(_mm512_add_pd(d[3], d[7])),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random matrices from a seeded LCG in [−0.5, 0.5).
    fn rand_mat(m: usize, n: usize, seed: u64) -> Mat<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        Mat::from_fn(m, n, |_, _| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
    }

    /// Against the plain product with the full symmetric matrix, within the rounding bound
    /// `|X − AV| ≤ γ_m |A||V|` (`γ_m ≈ m ε`), for sizes around the kernel's 4-wide blocks,
    /// its 256-row chunks and the two-thread split; the strict upper triangle holds NaN, so
    /// reading it would show; `A` is a view into a larger matrix (column stride ≠ m); both
    /// kernels and both thread counts.
    #[test]
    fn matches_the_dense_product_and_reads_only_the_lower_triangle() {
        for &m in &[1usize, 2, 3, 4, 5, 7, 8, 9, 31, 255, 256, 257, 300, 517] {
            for &k in &[1usize, 3, 32] {
                let r = rand_mat(m, m, (m * 100 + k) as u64);
                let full = Mat::from_fn(m, m, |i, j| if i >= j { r[(i, j)] } else { r[(j, i)] });
                let mut big = Mat::<f64>::from_fn(m + 3, m + 2, |_, _| f64::NAN);
                for j in 0..m {
                    for i in j..m {
                        big[(i + 2, j + 1)] = full[(i, j)];
                    }
                }
                let a = big.as_ref().submatrix(2, 1, m, m);
                let v = rand_mat(m, k, 7 + m as u64);
                let want = &full * &v;
                let bound = {
                    let abs_a = Mat::from_fn(m, m, |i, j| full[(i, j)].abs());
                    let abs_v = Mat::from_fn(m, k, |i, j| v[(i, j)].abs());
                    &abs_a * &abs_v
                };
                let gamma = (m as f64 + 4.0) * f64::EPSILON;
                let mut cases: Vec<(Simd, Par)> = Simd::available()
                    .into_iter()
                    .map(|l| (l, Par::Seq))
                    .collect();
                cases.push((Simd::detect(), Par::rayon(2)));
                for (simd, par) in cases {
                    let mut x = Mat::<f64>::from_fn(m, k, |_, _| f64::NAN);
                    if par.degree() < 2 || m < PAR_MIN_M {
                        x.fill(0.0);
                        columns(a, v.as_ref(), x.as_mut(), 0, m, simd);
                    } else {
                        symm_lower(a, v.as_ref(), x.as_mut(), par).expect("small buffers");
                    }
                    for c in 0..k {
                        for i in 0..m {
                            let err = (x[(i, c)] - want[(i, c)]).abs();
                            assert!(
                                err <= gamma * bound[(i, c)],
                                "m={m} k={k} {simd:?} ({i},{c}): {} vs {} (err {err:e})",
                                x[(i, c)],
                                want[(i, c)]
                            );
                        }
                    }
                }
            }
        }
    }

    /// `symv_lower` against the plain product with the full symmetric matrix within
    /// `γ_{m+4} |A||v|`, at every SIMD level the CPU has and on two threads (past
    /// `SYMV_PAR_MIN_M`), sizes around the 4-column blocks, the 16-row AVX-512 step and the
    /// split; the strict upper triangle NaN; `y` and `spare` start as NaN (overwritten, not
    /// accumulated into).
    #[test]
    fn symv_matches_the_dense_product_at_every_level() {
        for &m in &[1usize, 2, 3, 4, 5, 15, 16, 17, 33, 383, 384, 385, 600] {
            let r = rand_mat(m, m, 31 * m as u64);
            let full = Mat::from_fn(m, m, |i, j| if i >= j { r[(i, j)] } else { r[(j, i)] });
            let mut big = Mat::<f64>::from_fn(m + 1, m, |_, _| f64::NAN);
            for j in 0..m {
                for i in j..m {
                    big[(i + 1, j)] = full[(i, j)];
                }
            }
            let a = big.as_ref().submatrix(1, 0, m, m);
            let v = rand_mat(m, 1, 5 + m as u64);
            let v = v.col(0).try_as_col_major().expect("owned").as_slice();
            let mut cases: Vec<(Simd, Par)> = Simd::available()
                .into_iter()
                .map(|l| (l, Par::Seq))
                .collect();
            cases.push((Simd::detect(), Par::rayon(2)));
            for (simd, par) in cases {
                let mut y = vec![f64::NAN; m];
                let mut spare = vec![f64::NAN; m];
                symv_lower(a, v, &mut y, &mut spare, par, simd);
                for i in 0..m {
                    let want: f64 = (0..m).map(|j| full[(i, j)] * v[j]).sum();
                    let bound: f64 = (0..m).map(|j| (full[(i, j)] * v[j]).abs()).sum();
                    let err = (y[i] - want).abs();
                    assert!(
                        err <= (m as f64 + 4.0) * f64::EPSILON * bound,
                        "m={m} {simd:?} {par:?} row {i}: {} vs {want}",
                        y[i]
                    );
                }
            }
        }
    }
}
