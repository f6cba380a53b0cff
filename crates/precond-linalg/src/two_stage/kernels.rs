//! Level-1 kernels of the bulge-chasing stage and the blocked Householder helpers of the
//! band-reduction stage.
//!
//! The slice kernels are `#[inline(always)]` so that, called from inside
//! [`pulp::Arch::dispatch`], they are compiled with the widest instruction set the CPU offers
//! (AVX2 on x86-64-v3) without `-C target-cpu`: several independent accumulators let LLVM
//! vectorize the reductions.

use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};

/// `Σ a_i b_i` over the common length, with 8 independent partial sums.
#[inline(always)]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `y ← y + α x` over the common length.
#[inline(always)]
pub(crate) fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// `‖x‖₂` without overflow or harmful underflow: one sum of squares when it lies in
/// `[2⁻⁹⁰⁰, 2⁹⁰⁰]` (squares that underflowed then weigh below `n · 2⁻¹²²` of it, none
/// overflowed), otherwise computed on `x · 2⁻ᵏ` with `2ᵏ ≤ max|xᵢ| < 2ᵏ⁺¹` (an exact scaling
/// that, unlike `1 / max|xᵢ|`, does not overflow for subnormal entries).
#[inline(always)]
pub(super) fn norm2(x: &[f64]) -> f64 {
    let ss = dot(x, x);
    if (2f64.powi(-900)..=2f64.powi(900)).contains(&ss) {
        return ss.sqrt();
    }
    let amax = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if amax == 0.0 || !amax.is_finite() {
        return amax;
    }
    let k = crate::scaling::exponent(amax);
    let mut acc = 0.0;
    for &v in x {
        let t = crate::scaling::ldexp(v, -k);
        acc += t * t;
    }
    crate::scaling::ldexp(acc.sqrt(), k)
}

/// Householder reflector `H = I − τ v vᵀ` (`v₀ = 1`) with `H x = β e₀` (LAPACK `DLARFG`).
/// On return `x[1..]` holds `v[1..]`; returns `(τ, β)`. `τ = 0` (`H = I`, `β = x₀`) when
/// `x[1..]` is zero. When `|β|` is below `ω / ε` (`ω` the underflow threshold), where
/// `1 / (α − β)` could overflow, faer's `make_householder_in_place` (which rescales, as
/// DLARFG does) computes it instead.
#[inline(always)]
pub(crate) fn make_householder(x: &mut [f64]) -> (f64, f64) {
    let alpha = x[0];
    let xnorm = norm2(&x[1..]);
    if xnorm == 0.0 {
        return (0.0, alpha);
    }
    let beta = -alpha.signum() * alpha.hypot(xnorm);
    if beta.abs() < f64::MIN_POSITIVE / f64::EPSILON {
        let (head, tail) = x.split_first_mut().expect("x[1..] is not empty");
        let info = faer::linalg::householder::make_householder_in_place(
            head,
            faer::ColMut::from_slice_mut(tail),
        );
        // faer's reflector is `I − v vᵀ / t`: `τ = 1 / t`
        return (info.tau.recip(), *head);
    }
    let tau = (beta - alpha) / beta;
    let scale = 1.0 / (alpha - beta);
    for v in &mut x[1..] {
        *v *= scale;
    }
    (tau, beta)
}

/// An explicit block reflector `Q = I − V T⁻¹ Vᵀ` from a faer `qr_in_place` panel: `V` unit
/// lower trapezoidal, `T` upper triangular with `T_jj = τ_j` (faer's convention
/// `H_j = I − v_j v_jᵀ/τ_j`) and `T_ij = v_iᵀ v_j`. Reflectors faer marks as the identity
/// (`τ_j = ∞`) get a zero column in `V` and a unit row/column in `T`, which keeps every
/// triangular solve finite.
pub(super) struct BlockReflector {
    pub(super) v: Mat<f64>,
    pub(super) t: Mat<f64>,
}

/// What the buffers of the two-stage reductions are called in an out-of-memory error.
use crate::alloc::{try_mat_from_fn, try_zeros};
use crate::error::Result;

const W: &str = "buffers of the two-stage reduction";

impl BlockReflector {
    /// Reads `V` from the strictly lower part of `panel[.., ..k]` and `T` from `t` (`k × k`).
    pub(super) fn from_qr(panel: MatRef<'_, f64>, mut t: Mat<f64>) -> Result<Self> {
        let m = panel.nrows();
        let k = t.nrows();
        let mut v = try_mat_from_fn(W, m, k, |i, j| match i.cmp(&j) {
            core::cmp::Ordering::Less => 0.0,
            core::cmp::Ordering::Equal => 1.0,
            core::cmp::Ordering::Greater => panel[(i, j)],
        })?;
        for j in 0..k {
            if !t[(j, j)].is_finite() || t[(j, j)] == 0.0 {
                for i in 0..m {
                    v[(i, j)] = 0.0;
                }
                for i in 0..k {
                    t[(i, j)] = 0.0;
                    t[(j, i)] = 0.0;
                }
                t[(j, j)] = 1.0;
            }
        }
        Ok(Self { v, t })
    }

    /// `A ← Qᵀ A` (`A` has `V`'s row count): `A − V T⁻ᵀ (Vᵀ A)`.
    pub(super) fn apply_transpose_left(&self, mut a: MatMut<'_, f64>, par: Par) -> Result<()> {
        if a.ncols() == 0 {
            return Ok(());
        }
        let mut w = try_zeros(W, self.v.ncols(), a.ncols())?;
        matmul(
            w.as_mut(),
            Accum::Replace,
            self.v.transpose(),
            a.rb(),
            1.0,
            par,
        );
        solve_lower_triangular_in_place(self.t.transpose(), w.as_mut(), par);
        matmul(
            a.rb_mut(),
            Accum::Add,
            self.v.as_ref(),
            w.as_ref(),
            -1.0,
            par,
        );
        Ok(())
    }

    /// `A ← A Q` (`A` has `V`'s row count as column count): `A − (A V) T⁻¹ Vᵀ`.
    pub(super) fn apply_right(&self, mut a: MatMut<'_, f64>, par: Par) -> Result<()> {
        if a.nrows() == 0 {
            return Ok(());
        }
        let mut y = try_zeros(W, a.nrows(), self.v.ncols())?;
        matmul(
            y.as_mut(),
            Accum::Replace,
            a.rb(),
            self.v.as_ref(),
            1.0,
            par,
        );
        // Y T⁻¹ = (T⁻ᵀ Yᵀ)ᵀ
        solve_lower_triangular_in_place(self.t.transpose(), y.as_mut().transpose_mut(), par);
        matmul(
            a.rb_mut(),
            Accum::Add,
            y.as_ref(),
            self.v.transpose(),
            -1.0,
            par,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn householder_maps_x_to_beta_e0() {
        for x0 in [
            vec![3.0, 4.0],
            vec![-1.0, 2.0, -2.0],
            vec![0.0, 1e-200, 1e-200],
            vec![1e200, 1e200],
            vec![2.0, 0.0, 0.0],
        ] {
            let mut x = x0.clone();
            let (tau, beta) = make_householder(&mut x);
            let mut v = x.clone();
            v[0] = 1.0;
            let vx = dot(&v, &x0);
            let hx: Vec<f64> = x0.iter().zip(&v).map(|(a, vi)| a - tau * vi * vx).collect();
            let nrm = norm2(&x0);
            assert!(
                (beta.abs() - nrm).abs() <= 4.0 * f64::EPSILON * nrm,
                "{x0:?}"
            );
            assert!((hx[0] - beta).abs() <= 4.0 * f64::EPSILON * nrm, "{x0:?}");
            for h in &hx[1..] {
                assert!(h.abs() <= 4.0 * f64::EPSILON * nrm, "{x0:?}: {hx:?}");
            }
        }
    }

    /// Subnormal and near-underflow inputs (the `diagnostics_scale` fuzz target found a
    /// matrix whose reflector norm was subnormal: `1 / max|xᵢ|` overflowed and the eigenvalues
    /// came back NaN): the norm is exact to rounding and the reflector finite: either
    /// `τ ∈ [1, 2]`, `β = −sign(x₀)‖x‖` and `|vᵢ| ≤ 1`, or, for a tail whose norm is below the
    /// smallest normal number (faer's rescaling reflector takes it as zero), `H = I`
    /// (`τ = 0`, `β = x₀`, or `0` for a subnormal `x₀`, which faer also flushes).
    #[test]
    fn subnormal_norms_and_reflectors_stay_finite() {
        let sub = f64::from_bits(1); // 2⁻¹⁰⁷⁴
        let exact = |x: &[f64], want: f64| norm2(x).to_bits() == want.to_bits();
        assert!(exact(
            &[3.0 * 2f64.powi(-1040), 4.0 * 2f64.powi(-1040)],
            5.0 * 2f64.powi(-1040)
        ));
        assert!(exact(&[0.0, sub, 0.0], sub));
        for x0 in [
            vec![0.0, 3.0 * 2f64.powi(-1040), -4.0 * 2f64.powi(-1040)],
            vec![0.0, sub],
            vec![1e-300, 1e-300, -1e-300],
            vec![-2f64.powi(-1030), 2f64.powi(-1030)],
        ] {
            let mut x = x0.clone();
            let (tau, beta) = make_householder(&mut x);
            let nrm = norm2(&x0);
            if norm2(&x0[1..]) < f64::MIN_POSITIVE && tau == 0.0 {
                assert!(
                    beta.to_bits() == x0[0].to_bits()
                        || (x0[0].abs() < f64::MIN_POSITIVE && beta == 0.0),
                    "{x0:?}: beta {beta}"
                );
                continue;
            }
            assert!((1.0..=2.0).contains(&tau), "{x0:?}: tau {tau}");
            assert!(
                (beta + x0[0].signum() * nrm).abs() <= 4.0 * f64::EPSILON * nrm + 2.0 * sub,
                "{x0:?}: beta {beta} vs norm {nrm}"
            );
            assert!(
                x[1..].iter().all(|v| v.is_finite() && v.abs() <= 1.0),
                "{x0:?}: {x:?}"
            );
        }
    }

    #[test]
    fn dot_matches_the_naive_sum() {
        let a: Vec<f64> = (0..37).map(|i| (i as f64).sin()).collect();
        let b: Vec<f64> = (0..37).map(|i| (i as f64 * 0.7).cos()).collect();
        let naive: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() <= 64.0 * f64::EPSILON);
    }
}
