//! Two-stage bidiagonalization: dense → upper band (BLAS3) → upper bidiagonal (bulge
//! chasing), then the singular values of the bidiagonal through its Golub–Kahan form.

use faer::dyn_stack::MemStack;
use faer::linalg::qr::no_pivoting::factor::{
    qr_in_place, qr_in_place_scratch, recommended_block_size,
};
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Mat, MatRef, Par};

use super::kernels::{BlockReflector, axpy, dot, make_householder};
use super::tridiagonal_eigenvalues;
use crate::alloc::{try_collect, try_mat_from_fn, try_mem, try_to_owned, try_vec, try_zeros};
use crate::error::Result;

/// What the buffers of the two-stage SVD are called in an out-of-memory error.
const W: &str = "buffers of the two-stage singular value reduction";

/// An upper band matrix of bandwidth `b` with room for the bulges of the chase: `a[r, c]` for
/// `−(2b − 1) ≤ r − c ≤ b` at `data[c·ld + r + 2b − 1 − c]` (`ld = 3b`), so the part of a
/// column inside the band is contiguous.
pub(crate) struct UpperBand {
    n: usize,
    b: usize,
    ld: usize,
    data: Vec<f64>,
}

impl UpperBand {
    #[inline(always)]
    fn idx(&self, r: usize, c: usize) -> usize {
        c * self.ld + r + 2 * self.b - 1 - c
    }
}

/// The `n × n` triangular factor `R` of the QR factorization of a tall `m × n` matrix (its
/// singular values are `a`'s; the orthogonal factor is not kept).
pub(crate) fn qr_r(a: MatRef<'_, f64>, par: Par) -> Result<Mat<f64>> {
    let n = a.ncols();
    let mut qr = try_to_owned(W, a)?;
    let _ = panel_qr(qr.as_mut(), par)?;
    try_mat_from_fn(W, n, n, |i, j| if i <= j { qr[(i, j)] } else { 0.0 })
}

/// faer's QR of `a` in place (`V` below the diagonal) returning the block reflector (one block
/// for panels of at most 64 columns, which are factored on one thread: measured faster).
fn panel_qr(mut a: faer::MatMut<'_, f64>, par: Par) -> Result<BlockReflector> {
    let (m, n) = a.shape();
    let k = m.min(n);
    let (bs, par) = if k <= 64 {
        (k, Par::Seq)
    } else {
        (recommended_block_size::<f64>(m, n).min(k), par)
    };
    let mut t = try_zeros(W, bs, k)?;
    let mut mem = try_mem(
        "workspace of the two-stage SVD's QR",
        qr_in_place_scratch::<f64>(m, n, bs, par, Default::default()),
    )?;
    qr_in_place(
        a.rb_mut(),
        t.as_mut(),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    );
    // one block when bs == k (panels); the full QR of a tall matrix only needs R
    let t = if bs == k { t } else { Mat::zeros(0, 0) };
    BlockReflector::from_qr(a.rb().get(.., ..t.nrows()), t)
}

/// Stage 1 for `m ≥ n`: `A ← Q₁ᵀ A Q₂` to upper band form of bandwidth `b`, alternating a QR of
/// a panel of `b` columns (`Q ᵀ` applied to the columns on its right) and an LQ of a panel of
/// `b` rows (`Q` applied to the rows below), all as matrix–matrix products.
pub(crate) fn dense_to_upper_band(mut a: Mat<f64>, b: usize, par: Par) -> Result<UpperBand> {
    let (m, n) = a.shape();
    let b = b.max(1);
    let mut k = 0;
    while k < n {
        let kb = b.min(n - k);
        let rows = m - k;
        if rows > 1 {
            let sub = a.as_mut().submatrix_mut(k, k, rows, n - k);
            let (panel, rest) = sub.split_at_col_mut(kb);
            let q = panel_qr(panel, par)?;
            q.apply_transpose_left(rest, par)?;
        }
        let cols = n - k - kb;
        if cols >= 2 {
            let mut p = try_mat_from_fn(W, cols, kb, |i, j| a[(k + j, k + kb + i)])?;
            let q = panel_qr(p.as_mut(), par)?;
            for j in 0..kb {
                for i in 0..cols {
                    a[(k + j, k + kb + i)] = if i <= j { p[(i, j)] } else { 0.0 };
                }
            }
            q.apply_right(
                a.as_mut().submatrix_mut(k + kb, k + kb, m - k - kb, cols),
                par,
            )?;
        }
        k += kb;
    }
    let ld = 3 * b;
    let mut band = UpperBand {
        n,
        b,
        ld,
        data: try_vec(
            "band of the two-stage reduction",
            n.saturating_mul(ld).saturating_add(1),
            0.0,
        )?,
    };
    for c in 0..n {
        for r in c.saturating_sub(b)..=c {
            let i = band.idx(r, c);
            band.data[i] = a[(r, c)];
        }
    }
    Ok(band)
}

/// `B ← B (I − τ v vᵀ)` for the block rows `r0..r1`, columns `c0..c0+v.len()`.
#[inline(always)]
fn right_apply(
    band: &mut UpperBand,
    r0: usize,
    r1: usize,
    c0: usize,
    v: &[f64],
    tau: f64,
    y: &mut [f64],
) {
    if tau == 0.0 || r1 <= r0 {
        return;
    }
    let m = r1 - r0;
    let y = &mut y[..m];
    y.fill(0.0);
    for (c, vc) in v.iter().enumerate() {
        let i = band.idx(r0, c0 + c);
        axpy(*vc, &band.data[i..i + m], y);
    }
    for (c, vc) in v.iter().enumerate() {
        let i = band.idx(r0, c0 + c);
        axpy(-tau * vc, y, &mut band.data[i..i + m]);
    }
}

/// `B ← (I − τ u uᵀ) B` for the block rows `r0..r0+u.len()`, columns `c0..c1`.
#[inline(always)]
fn left_apply(band: &mut UpperBand, r0: usize, c0: usize, c1: usize, u: &[f64], tau: f64) {
    if tau == 0.0 {
        return;
    }
    let m = u.len();
    for c in c0..c1 {
        let i = band.idx(r0, c);
        let col = &mut band.data[i..i + m];
        let t = tau * dot(u, col);
        axpy(-t, u, col);
    }
}

/// Annihilates `a[r, c0+1..c0+len]` with a right reflector; returns `(v, τ)` in `v`.
#[inline(always)]
fn row_reflector(band: &mut UpperBand, r: usize, c0: usize, len: usize, v: &mut [f64]) -> f64 {
    for (k, vk) in v[..len].iter_mut().enumerate() {
        *vk = band.data[band.idx(r, c0 + k)];
    }
    let (tau, beta) = make_householder(&mut v[..len]);
    let i = band.idx(r, c0);
    band.data[i] = beta;
    for k in 1..len {
        let i = band.idx(r, c0 + k);
        band.data[i] = 0.0;
    }
    v[0] = 1.0;
    tau
}

/// Annihilates `a[r0+1..r0+len, c]` with a left reflector; returns `(u, τ)` in `u`.
#[inline(always)]
fn col_reflector(band: &mut UpperBand, r0: usize, c: usize, len: usize, u: &mut [f64]) -> f64 {
    let i = band.idx(r0, c);
    let x = &mut band.data[i..i + len];
    let (tau, beta) = make_householder(x);
    u[1..len].copy_from_slice(&x[1..]);
    u[0] = 1.0;
    x[0] = beta;
    x[1..].fill(0.0);
    tau
}

/// Stage 2: upper band → upper bidiagonal by bulge chasing. Sweep `i` annihilates row `i`
/// beyond the superdiagonal with a right reflector on columns `i+1..i+b`, then the fill it
/// creates below the diagonal in column `i+1` with a left reflector on rows `i+1..i+b`; that
/// one fills row `i+1` beyond the band, which the next right reflector (columns
/// `i+1+b..i+2b`) annihilates in its first row only, and so on down the band. The rest of each
/// bulge is left for the following sweeps, which pass over the same blocks shifted by one.
/// `≈ 8bn²` flops on `3bn` numbers. Returns the diagonal and the superdiagonal.
pub(crate) fn upper_band_to_bidiagonal(mut band: UpperBand) -> Result<(Vec<f64>, Vec<f64>)> {
    pulp::Arch::new().dispatch(move || upper_band_to_bidiagonal_impl(&mut band))
}

#[inline(always)]
fn upper_band_to_bidiagonal_impl(band: &mut UpperBand) -> Result<(Vec<f64>, Vec<f64>)> {
    let (n, b) = (band.n, band.b);
    let mut v = try_vec(W, b, 0.0)?;
    let mut u = try_vec(W, b, 0.0)?;
    let mut y = try_vec(W, b.saturating_mul(2), 0.0)?;
    for i in 0..n.saturating_sub(2) {
        let s = i + 1;
        let len = b.min(n - s);
        let tau = row_reflector(band, i, s, len, &mut v);
        right_apply(band, s, s + len, s, &v[..len], tau, &mut y);
        let tau = col_reflector(band, s, s, len, &mut u);
        left_apply(band, s, s + 1, n.min(s + 2 * b), &u[..len], tau);
        let mut r = s;
        loop {
            let c2 = r + b;
            if c2 >= n {
                break;
            }
            let clen = b.min(n - c2);
            let tau = row_reflector(band, r, c2, clen, &mut v);
            right_apply(band, r + 1, c2 + clen, c2, &v[..clen], tau, &mut y);
            let tau = col_reflector(band, c2, c2, clen, &mut u);
            left_apply(band, c2, c2 + 1, n.min(c2 + 2 * b), &u[..clen], tau);
            r = c2;
        }
    }
    let d = try_collect(W, n, (0..n).map(|i| band.data[band.idx(i, i)]))?;
    let e = try_collect(
        W,
        n.saturating_sub(1),
        (0..n.saturating_sub(1)).map(|i| band.data[band.idx(i, i + 1)]),
    )?;
    Ok((d, e))
}

/// Singular values (nonincreasing) of the upper bidiagonal matrix `(d, e)`: the `n` largest
/// eigenvalues of the Golub–Kahan tridiagonal matrix (zero diagonal, off-diagonal
/// `d₀, e₀, d₁, …, d_{n−1}`), whose eigenvalues are `±σᵢ`.
pub(crate) fn bidiagonal_singular_values(d: &[f64], e: &[f64]) -> Result<Vec<f64>> {
    let n = d.len();
    let mut off = try_collect(W, 2 * n - 1, None)?;
    for i in 0..n {
        off.push(d[i]);
        if i + 1 < n {
            off.push(e[i]);
        }
    }
    let ev = tridiagonal_eigenvalues(&try_vec(W, 2 * n, 0.0)?, &off)?;
    let mut s = try_collect(W, n, ev[n..].iter().map(|x| x.abs()))?;
    s.sort_by(|a, b| b.total_cmp(a));
    Ok(s)
}

/// All singular values (nonincreasing) of a checked matrix by the two-stage reduction.
pub(crate) fn singular_values_two_stage_checked(
    a: MatRef<'_, f64>,
    b: usize,
    par: Par,
) -> Result<Vec<f64>> {
    let (d, e) = bidiagonal_two_stage_checked(a, b, par)?;
    bidiagonal_singular_values(&d, &e)
}

/// The upper bidiagonal `(d, e)` (order `min(m, n)`) of a checked matrix by the two-stage
/// reduction with band width `b`: a wide matrix through its transpose, a tall one
/// (`3m ≥ 5n`) through the `R` of its QR factorization.
pub(crate) fn bidiagonal_two_stage_checked(
    a: MatRef<'_, f64>,
    b: usize,
    par: Par,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let a = if a.nrows() >= a.ncols() {
        a
    } else {
        a.transpose()
    };
    let (m, n) = a.shape();
    crate::pool::on_pool(par, n, || {
        let dense = if 3 * m >= 5 * n {
            qr_r(a, par)?
        } else {
            try_to_owned(W, a)?
        };
        upper_band_to_bidiagonal(dense_to_upper_band(dense, b, par)?)
    })
}
