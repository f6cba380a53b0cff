//! Two-stage symmetric tridiagonalization: dense → band (BLAS3) → tridiagonal (bulge chasing).

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::qr::no_pivoting::factor::{qr_in_place, qr_in_place_scratch};
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, Par};

use super::kernels::{BlockReflector, axpy, dot, make_householder};

/// A symmetric matrix of half-bandwidth `b` in compact lower storage with room for the bulge:
/// `a[r, c]` (`0 ≤ r − c < ld = 2b`) at `data[c·ld + r − c]`, so each column's band segment is
/// contiguous.
pub(crate) struct LowerBand {
    pub(crate) n: usize,
    pub(crate) b: usize,
    ld: usize,
    data: Vec<f64>,
}

impl LowerBand {
    fn zeros(n: usize, b: usize) -> Self {
        let ld = 2 * b;
        Self {
            n,
            b,
            ld,
            data: vec![0.0; n * ld + 1],
        }
    }
}

/// Stage 1: `A ← Qᵀ A Q` to half-bandwidth `b` (LAPACK `DSYTRD_SY2SB`). For each panel of `b`
/// columns, a QR factorization of the part below the band (`A₂₁ = Q R`, faer's blocked QR)
/// puts `R` (upper triangular, so inside the band) in place, then the trailing matrix gets the
/// two-sided update `A₂₂ ← Qᵀ A₂₂ Q = A₂₂ − V Wᵀ − W Vᵀ` with `X = A₂₂ V T⁻¹`,
/// `W = X − ½ V T⁻ᵀ Vᵀ X`: one symmetric matrix × panel product and one rank-2b update of the
/// lower triangle, both matrix–matrix (`4n³/3` flops in all). Only the lower triangle of `a`
/// is read.
pub(crate) fn sym_dense_to_band(mut a: Mat<f64>, b: usize, par: Par) -> LowerBand {
    let n = a.nrows();
    let b = b.max(1);
    let mut k = 0;
    while k + b + 1 < n {
        let m = n - k - b;
        let kk = b.min(m);
        let sub = a.as_mut().submatrix_mut(k + b, k, m, b + m);
        let (mut panel, mut a22) = sub.split_at_col_mut(b);
        let mut t = Mat::<f64>::zeros(kk, kk);
        let mut mem = MemBuffer::new(qr_in_place_scratch::<f64>(
            m,
            b,
            kk,
            Par::Seq,
            Default::default(),
        ));
        qr_in_place(
            panel.rb_mut(),
            t.as_mut(),
            Par::Seq, // a b-column panel: threads cost more than they save (measured)
            MemStack::new(&mut mem),
            Default::default(),
        );
        let q = BlockReflector::from_qr(panel.rb().get(.., ..kk), t);
        let (v, t) = (&q.v, &q.t);
        // X = sym(A22) V T⁻¹ from the lower triangle
        let mut x = Mat::<f64>::zeros(m, kk);
        triangular::matmul(
            x.as_mut(),
            BlockStructure::Rectangular,
            Accum::Replace,
            a22.rb(),
            BlockStructure::TriangularLower,
            v.as_ref(),
            BlockStructure::Rectangular,
            1.0,
            par,
        );
        triangular::matmul(
            x.as_mut(),
            BlockStructure::Rectangular,
            Accum::Add,
            a22.rb().transpose(),
            BlockStructure::StrictTriangularUpper,
            v.as_ref(),
            BlockStructure::Rectangular,
            1.0,
            par,
        );
        solve_lower_triangular_in_place(t.transpose(), x.as_mut().transpose_mut(), par);
        // W = X − ½ V T⁻ᵀ (Vᵀ X)
        let mut z = Mat::<f64>::zeros(kk, kk);
        matmul(
            z.as_mut(),
            Accum::Replace,
            v.transpose(),
            x.as_ref(),
            1.0,
            par,
        );
        solve_lower_triangular_in_place(t.transpose(), z.as_mut(), par);
        matmul(x.as_mut(), Accum::Add, v.as_ref(), z.as_ref(), -0.5, par);
        // A22 ← A22 − [V W] [W V]ᵀ (lower triangle)
        let mut l = Mat::<f64>::zeros(m, 2 * kk);
        let mut r = Mat::<f64>::zeros(m, 2 * kk);
        l.as_mut().get_mut(.., ..kk).copy_from(v.as_ref());
        l.as_mut().get_mut(.., kk..).copy_from(x.as_ref());
        r.as_mut().get_mut(.., ..kk).copy_from(x.as_ref());
        r.as_mut().get_mut(.., kk..).copy_from(v.as_ref());
        triangular::matmul(
            a22.rb_mut(),
            BlockStructure::TriangularLower,
            Accum::Add,
            l.as_ref(),
            BlockStructure::Rectangular,
            r.transpose(),
            BlockStructure::Rectangular,
            -1.0,
            par,
        );
        k += b;
    }
    let mut band = LowerBand::zeros(n, b);
    for c in 0..n {
        for r in c..n.min(c + b + 1) {
            band.data[c * band.ld + r - c] = a[(r, c)];
        }
    }
    band
}

/// `A[s..s+len, s..s+len] ← H A H` for `H = I − τ v vᵀ` on the lower band storage (LAPACK
/// `DLARFY`): `w = τ A v`, `w ← w − ½ τ (wᵀv) v`, `A ← A − v wᵀ − w vᵀ`.
#[inline(always)]
fn sym_two_sided(data: &mut [f64], ld: usize, s: usize, v: &[f64], tau: f64, w: &mut [f64]) {
    if tau == 0.0 {
        return;
    }
    let len = v.len();
    let w = &mut w[..len];
    w.fill(0.0);
    for c in 0..len {
        let base = (s + c) * ld;
        let col = &data[base..base + len - c];
        w[c] += dot(col, &v[c..]);
        axpy(v[c], &col[1..], &mut w[c + 1..]);
    }
    for x in w.iter_mut() {
        *x *= tau;
    }
    let alpha = -0.5 * tau * dot(w, v);
    axpy(alpha, v, w);
    for c in 0..len {
        let base = (s + c) * ld;
        let col = &mut data[base..base + len - c];
        axpy(-w[c], &v[c..], col);
        axpy(-v[c], &w[c..], col);
    }
}

/// Stage 2: band → tridiagonal by bulge chasing (LAPACK `DSYTRD_SB2ST` kernels, one sweep per
/// column). Sweep `i` annihilates column `i` below the subdiagonal with a reflector on rows
/// `i+1..i+b` (applied two-sided to the diagonal block); each following step applies the last
/// reflector from the right to the `b × b` block below its diagonal block, annihilates the
/// first column of that block with a new reflector (applied from the left to the rest of the
/// block and two-sided to the next diagonal block), and so on to the end of the band. Only
/// `O(b²)` data is touched per step and the band (`2bn` numbers) stays in cache; `6bn²`
/// flops. Returns the diagonal and the subdiagonal.
pub(crate) fn sym_band_to_tridiagonal(mut band: LowerBand) -> (Vec<f64>, Vec<f64>) {
    pulp::Arch::new().dispatch(move || sym_band_to_tridiagonal_impl(&mut band))
}

#[inline(always)]
fn sym_band_to_tridiagonal_impl(band: &mut LowerBand) -> (Vec<f64>, Vec<f64>) {
    let (n, b, ld) = (band.n, band.b, band.ld);
    let data = &mut band.data[..];
    let mut v = vec![0.0; b];
    let mut u = vec![0.0; b];
    let mut w = vec![0.0; b];
    for i in 0..n.saturating_sub(2) {
        // type 1: annihilate column i below the subdiagonal
        let s = i + 1;
        let len = b.min(n - s);
        let x = &mut data[i * ld + 1..i * ld + 1 + len];
        let (tau0, beta) = make_householder(x);
        v[0] = 1.0;
        v[1..len].copy_from_slice(&x[1..]);
        x[0] = beta;
        x[1..].fill(0.0);
        sym_two_sided(data, ld, s, &v[..len], tau0, &mut w);
        let (mut j, mut vlen, mut tau) = (s, len, tau0);
        loop {
            let j2 = j + b;
            if j2 >= n {
                break;
            }
            let len2 = b.min(n - j2);
            // type 2: block rows j2..j2+len2, columns j..j+vlen; right application of H
            if tau != 0.0 {
                let y = &mut w[..len2];
                y.fill(0.0);
                for (c, vc) in v[..vlen].iter().enumerate() {
                    let base = (j + c) * ld + (j2 - j - c);
                    axpy(*vc, &data[base..base + len2], y);
                }
                for (c, vc) in v[..vlen].iter().enumerate() {
                    let base = (j + c) * ld + (j2 - j - c);
                    axpy(-tau * vc, y, &mut data[base..base + len2]);
                }
            }
            // new reflector from the block's first column, applied from the left
            let base = j * ld + (j2 - j);
            let x = &mut data[base..base + len2];
            let (tau2, beta2) = make_householder(x);
            u[0] = 1.0;
            u[1..len2].copy_from_slice(&x[1..]);
            x[0] = beta2;
            x[1..].fill(0.0);
            if tau2 != 0.0 {
                for c in 1..vlen {
                    let base = (j + c) * ld + (j2 - j - c);
                    let col = &mut data[base..base + len2];
                    let t = tau2 * dot(&u[..len2], col);
                    axpy(-t, &u[..len2], col);
                }
            }
            // type 3: two-sided on the next diagonal block
            sym_two_sided(data, ld, j2, &u[..len2], tau2, &mut w);
            core::mem::swap(&mut v, &mut u);
            (j, vlen, tau) = (j2, len2, tau2);
        }
    }
    let d = (0..n).map(|i| data[i * ld]).collect();
    let e = (0..n.saturating_sub(1)).map(|i| data[i * ld + 1]).collect();
    (d, e)
}
