//! SOAP, the reference `nikhilvyas/SOAP` (`soap.py`; THEORY.md §7): Adam run in the eigenbasis
//! of Shampoo's Kronecker factors, the basis refreshed every `precondition_frequency` steps by one
//! power iteration and a QR.
//!
//! The `rows × cols` matrix `X` with gradient `G` (`−G` under `maximize`), `β_s = shampoo_beta`
//! (`betas[1]` when negative). A dimension of size `≤ max_precond_dim` has a factor `GG_d` and a
//! basis `Q_d`; a longer one has neither (its basis is the identity). Factor update `upd(G)`:
//! `GG_L ← lerp(GG_L, G Gᵀ, 1 − β_s)`, `GG_R ← lerp(GG_R, GᵀG, 1 − β_s)` (no bias correction).
//! `project(A) = Q_Lᵀ A Q_R`, `project_back(A) = Q_L A Q_Rᵀ`.
//!
//! Step 1 updates no parameter: `upd(G₁)`, then `Q_d ←` the eigenvectors of `GG_d + 10⁻³⁰ I`
//! sorted by **descending** eigenvalue. Every later step `k ≥ 2`, with the Adam counter `t = k − 1`:
//! 1. `Gp = project(G)` (the current bases, built from gradients up to step `k − 1`),
//! 2. `M ← β₁ M + (1 − β₁) Gp`, `S ← β₂ S + (1 − β₂) Gp ⊙ Gp` (both kept in the eigenbasis),
//! 3. `N = project_back(M ⊘ (sqrt(S) + eps))` (`eps` outside the root, as Adam),
//! 4. with `normalize_grads`: `N ← N / (10⁻³⁰ + sqrt(mean(N ⊙ N)))`,
//! 5. `X ← X − η' N` with `η' = η sqrt(1 − β₂ᵗ) / (1 − β₁ᵗ)` under `correct_bias`, else `η`,
//! 6. `X ← X − η λ X` when `λ = weight_decay > 0`: decoupled decay on the *updated* `X`, with the
//!    scheduled `η` (not `η'`),
//! 7. refresh: `M ← project_back(M)`; `upd(G)`; when `t mod precondition_frequency = 0`, for the
//!    rows then the columns: `e = diag(Q_dᵀ GG_d Q_d)`, `π = argsort(e, descending)`, `S`'s
//!    indices along `d` and `Q_d`'s columns permuted by `π`, then `Q_d ← qr(GG_d Q_d).Q`;
//!    finally `M ← project(M)` with the (possibly new) bases.
//!
//! Conventions and numerics. The elementwise Adam arithmetic, the projections and the factors run
//! in the parameter's dtype. The eigendecomposition (precond-linalg's `sym_eigh_into`) and the
//! refresh (power iteration and QR) run on an `f64` copy of the factor and basis kept in the
//! workspace, rounded to the dtype afterwards; for `f64` parameters that is the dtype itself
//! (the reference runs both in `float32` for non-`float32` parameters, pytorch-optimizer its QR
//! in `float32`). The QR's `Q` comes from faer's Householder QR with the column signs that make
//! `R`'s diagonal non-negative; the reference's `torch.linalg.qr` may flip some columns, which
//! changes nothing (`M` is re-projected, `S` is sign invariant). When `GG_d` is rank deficient the
//! reflectors complete the basis, so `Q_d` stays orthogonal.
//!
//! Failures never reach the parameters: when the eigendecomposition fails (non-finite factor,
//! no convergence) the basis stays the identity; when the power iteration is not finite the old
//! basis is kept with no permutation. `M`, `S` and `X` follow the reference arithmetic (under the
//! `propagate` policy a NaN gradient reaches them, as in torch).
//!
//! State: per element `exp_avg` (`M`) and `exp_avg_sq` (`S`, non-negative), both in the
//! eigenbasis and stored in the group's storage order; fixed-length (row-major) `left_factor`,
//! `right_factor`, `left_basis`, `right_basis` (the ones of preconditioned dimensions only).
//!
//! # References
//! - \[Vyas2024\] N. Vyas, D. Morwani, R. Zhao, I. Shapira, D. Brandfonbrener, L. Janson,
//!   S. Kakade, *SOAP: Improving and stabilizing Shampoo using Adam*, 2024 (`nikhilvyas/SOAP`).
//! - \[Gupta2018\] V. Gupta, T. Koren, Y. Singer, *Shampoo: Preconditioned stochastic tensor
//!   optimization*, ICML 2018.

use super::matrix::{
    MatrixSegment, check_factor_diagonal, for_each_tiled, observed, position, segment, single_block,
};
use super::{Kind, StepCtx};
use crate::config::{MatrixShape, OptimizerConfig};
use crate::error::{OptimError, Result};
use crate::kernel::first_nonfinite;
use crate::matrix::{MatrixPreconditioner, PreconditionerBlock};
use crate::precond::Lerp;
use crate::storage::{Geometry, SlotSpec, Slots, StepFloat};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use precond_linalg::{SymEigWorkspace, product_into, sym_eigh_into};

/// The SOAP reference (`nikhilvyas/SOAP`).
pub(crate) struct Soap;

impl Kind for Soap {
    const KEYS: &'static [&'static str] = &[
        "betas",
        "shampoo_beta",
        "eps",
        "precondition_frequency",
        "max_precond_dim",
        "normalize_grads",
        "correct_bias",
    ];
    const DECOUPLED_WEIGHT_DECAY: bool = true;
    const MATRIX: bool = true;

    fn defaults(c: &mut OptimizerConfig) {
        c.lr = 3e-3;
        c.betas = [0.95, 0.95];
        c.shampoo_beta = -1.0;
        c.eps = 1e-8;
        c.weight_decay = 0.01;
        c.precondition_frequency = 10;
        c.max_precond_dim = 10000;
        c.normalize_grads = false;
        c.correct_bias = true;
    }

    fn validate(c: &OptimizerConfig) -> Result<()> {
        for (i, b) in c.betas.iter().enumerate() {
            if !(b.is_finite() && (0.0..1.0).contains(b)) {
                return Err(OptimError::config(
                    format!("betas[{i}]"),
                    format!("must be in [0, 1), got {b}"),
                ));
            }
        }
        let sb = c.shampoo_beta;
        if !(sb.is_finite() && sb < 1.0) {
            return Err(OptimError::config(
                "shampoo_beta",
                format!("must be finite and < 1 (negative: betas[1]), got {sb}"),
            ));
        }
        if !(c.eps.is_finite() && c.eps > 0.0) {
            return Err(OptimError::config(
                "eps",
                format!("must be finite and > 0, got {}", c.eps),
            ));
        }
        if c.precondition_frequency == 0 {
            return Err(OptimError::config(
                "precondition_frequency",
                "must be >= 1, got 0",
            ));
        }
        if c.max_precond_dim == 0 {
            return Err(OptimError::config("max_precond_dim", "must be >= 1, got 0"));
        }
        Ok(())
    }

    fn slots(_c: &OptimizerConfig) -> Vec<SlotSpec> {
        vec![SlotSpec::zero("exp_avg"), SlotSpec::squares("exp_avg_sq")]
    }

    fn arrays(c: &OptimizerConfig, geo: &Geometry) -> Vec<SlotSpec> {
        let Some(shape) = geo.shape else {
            return Vec::new();
        };
        let lay = Layout::new(c, shape);
        let mut v = Vec::new();
        if lay.left {
            v.push(SlotSpec::array(
                "left_factor",
                lay.r.saturating_mul(lay.r),
                false,
            ));
        }
        if lay.right {
            v.push(SlotSpec::array(
                "right_factor",
                lay.c.saturating_mul(lay.c),
                false,
            ));
        }
        if lay.left {
            v.push(SlotSpec::array(
                "left_basis",
                lay.r.saturating_mul(lay.r),
                false,
            ));
        }
        if lay.right {
            v.push(SlotSpec::array(
                "right_basis",
                lay.c.saturating_mul(lay.c),
                false,
            ));
        }
        v
    }

    /// Factors, bases (row-major) and, once an Adam step has been taken (`t ≥ 1`), the diagonal
    /// `D = c₂ / (sqrt(S) + eps)` in the rotated basis with `c₂ = sqrt(1 − β₂ᵗ)` under
    /// `correct_bias` (else 1): the next update before `normalize_grads` is
    /// `η Q_L (D ⊙ m̂) Q_Rᵀ` with `m̂ = M / (1 − β₁ᵗ)` (`M / 1` without `correct_bias`).
    /// Relations the update keeps between the loaded arrays: each factor's diagonal is `≥ 0`
    /// (an EMA of `GGᵀ`), and each eigenbasis has orthonormal columns, checked in `O(n²)`:
    /// every entry `|q_ij| ≤ 1 + 10⁻³` and every column's squared norm within `10⁻³` of 1
    /// (the bases are kept orthonormal to rounding; a tampered basis would overflow the
    /// projections).
    fn check_state(
        c: &OptimizerConfig,
        step: u64,
        arrays: &[&[f64]],
        geo: &Geometry,
    ) -> std::result::Result<(), String> {
        let Some(shape) = geo.shape else {
            return Ok(());
        };
        if step == 0 {
            return Ok(());
        }
        let lay = Layout::new(c, shape);
        let per = Self::slots(c).len();
        let mats = &arrays[per.min(arrays.len())..];
        let dims = [
            (lay.left, lay.lf(), lay.lb(), lay.r, "left"),
            (lay.right, lay.rf(), lay.rb(), lay.c, "right"),
        ];
        for (on, fi, bi, n, side) in dims {
            if !on {
                continue;
            }
            let (Some(f), Some(q)) = (mats.get(fi), mats.get(bi)) else {
                continue;
            };
            check_factor_diagonal(f, 0, n, &format!("{side}_factor"))?;
            if let Some(k) = q.iter().position(|v| v.abs() > 1.0 + 1e-3) {
                return Err(format!(
                    "{side}_basis[{k}] = {}: an orthonormal basis has entries in [-1, 1]",
                    q[k]
                ));
            }
            for j in 0..n {
                let norm2: f64 = (0..n).map(|i| q[i * n + j] * q[i * n + j]).sum();
                if (norm2 - 1.0).abs() > 1e-3 {
                    return Err(format!(
                        "column {j} of {side}_basis has squared norm {norm2}, not 1"
                    ));
                }
            }
        }
        Ok(())
    }

    fn observe_matrix<T: StepFloat>(
        c: &OptimizerConfig,
        step: u64,
        state: Option<&Slots<T>>,
        geo: &Geometry,
    ) -> Result<MatrixPreconditioner> {
        let (s, shape) = observed(c, step, state, geo)?;
        let lay = Layout::new(c, shape);
        let conv = |v: &[T]| -> Vec<f64> { v.iter().map(|x| x.to_f64()).collect() };
        let mut b = PreconditionerBlock::new(0..shape.rows, 0..shape.cols);
        if lay.left {
            b.left_factor = Some(conv(&s.mats[lay.lf()]));
            b.left_basis = Some(conv(&s.mats[lay.lb()]));
        }
        if lay.right {
            b.right_factor = Some(conv(&s.mats[lay.rf()]));
            b.right_basis = Some(conv(&s.mats[lay.rb()]));
        }
        let t = step - 1;
        if t >= 1 {
            let c2 = if c.correct_bias {
                crate::float::one_minus_pow(c.betas[1], t).sqrt()
            } else {
                1.0
            };
            let mut d = vec![0.0; lay.r * lay.c];
            for (idx, v) in s.s[1].iter().enumerate() {
                let (i, j) = position(idx, shape);
                d[i * lay.c + j] = c2 / (v.to_f64().sqrt() + c.eps);
            }
            b.diagonal = Some(d);
        }
        Ok(single_block(c, shape, b))
    }

    fn step<T: StepFloat>(
        c: &OptimizerConfig,
        ctx: &StepCtx<'_>,
        x: &mut [T],
        g: &[T],
        slots: &mut Slots<T>,
    ) -> Result<bool> {
        let MatrixSegment {
            shape,
            x,
            g,
            lr,
            weight_decay,
        } = segment(c, ctx, x, g)?;
        let lay = Layout::new(c, shape);
        let sign = T::from_f64(if c.maximize { -1.0 } else { 1.0 });
        let bs = if c.shampoo_beta < 0.0 {
            c.betas[1]
        } else {
            c.shampoo_beta
        };
        let Slots {
            s, mats, scratch, ..
        } = slots;
        let w = scratch.get_or(|| SoapWork::<T>::new(&lay));
        let par = w.par;
        // the per-element passes walk the matrix in tiles (flat buffers row- or column-major,
        // block matrices column-major): the same values as an index-order loop
        for_each_tiled(shape, |idx, i, j| w.g[(i, j)] = g[idx] * sign);
        let nonfinite = || ctx.propagate && first_nonfinite(g, usize::MAX).is_some();
        if ctx.k() == 1 {
            // 3.3: factors and the first bases, no parameter update
            update_factors(&lay, w, mats, bs);
            if lay.left {
                first_basis(&mats[lay.lf()], &mut w.dl, par);
                store_basis(&w.dl.q, &mut mats[lay.lb()]);
            }
            if lay.right {
                first_basis(&mats[lay.rf()], &mut w.dr, par);
                store_basis(&w.dr.q, &mut mats[lay.rb()]);
            }
            return Ok(nonfinite());
        }
        let t = ctx.k() - 1;
        // 1: Gp = project(G) into w.a
        rotate(
            &lay,
            mats,
            false,
            w.g.as_ref(),
            w.t.as_mut(),
            w.a.as_mut(),
            par,
        );
        // 2–3: the moments and M ⊘ (sqrt(S) + eps) into w.b
        let [b1, b2] = c.betas;
        let (tb1, tb2) = (T::from_f64(b1), T::from_f64(b2));
        let (ob1, ob2) = (T::from_f64(1.0 - b1), T::from_f64(1.0 - b2));
        let eps = T::from_f64(c.eps);
        let [m_s, v_s, _] = s;
        for_each_tiled(shape, |idx, i, j| {
            let gp = w.a[(i, j)];
            let (m, v) = (&mut m_s[idx], &mut v_s[idx]);
            *m = *m * tb1 + gp * ob1;
            *v = *v * tb2 + gp * gp * ob2;
            w.b[(i, j)] = *m / (v.sqrt() + eps);
        });
        rotate(
            &lay,
            mats,
            true,
            w.b.as_ref(),
            w.t.as_mut(),
            w.a.as_mut(),
            par,
        );
        // 4: normalization
        if c.normalize_grads {
            let mut acc = T::ZERO;
            for j in 0..lay.c {
                for i in 0..lay.r {
                    acc += w.a[(i, j)] * w.a[(i, j)];
                }
            }
            let mean = acc / T::from_f64((lay.r * lay.c) as f64);
            let denom = T::from_f64(1e-30) + mean.sqrt();
            for j in 0..lay.c {
                for i in 0..lay.r {
                    w.a[(i, j)] /= denom;
                }
            }
        }
        // 5–6: the update and the decoupled decay
        let mut step_size = lr;
        if c.correct_bias {
            let bc1 = crate::float::one_minus_pow(b1, t);
            let bc2 = crate::float::one_minus_pow(b2, t);
            step_size = step_size * bc2.sqrt() / bc1;
        }
        let nstep = T::from_f64(-step_size);
        let decay = T::from_f64(-lr * weight_decay);
        for_each_tiled(shape, |idx, i, j| {
            let mut v = x[idx] + nstep * w.a[(i, j)];
            if weight_decay > 0.0 {
                v = v + decay * v;
            }
            x[idx] = v;
        });
        // 7: refresh
        for_each_tiled(shape, |idx, i, j| w.m[(i, j)] = m_s[idx]);
        rotate(
            &lay,
            mats,
            true,
            w.m.as_ref(),
            w.t.as_mut(),
            w.b.as_mut(),
            par,
        );
        update_factors(&lay, w, mats, bs);
        if t.is_multiple_of(c.precondition_frequency) {
            if lay.left && refresh(&mats[lay.lf()], &mats[lay.lb()], &mut w.dl, par) {
                store_basis(&w.dl.q, &mut mats[lay.lb()]);
                permute_sq(v_s, shape, &mut w.t, &w.dl.perm, true);
            }
            if lay.right && refresh(&mats[lay.rf()], &mats[lay.rb()], &mut w.dr, par) {
                store_basis(&w.dr.q, &mut mats[lay.rb()]);
                permute_sq(v_s, shape, &mut w.t, &w.dr.perm, false);
            }
        }
        rotate(
            &lay,
            mats,
            false,
            w.b.as_ref(),
            w.t.as_mut(),
            w.m.as_mut(),
            par,
        );
        for_each_tiled(shape, |idx, i, j| m_s[idx] = w.m[(i, j)]);
        Ok(nonfinite())
    }
}

/// Which dimensions are preconditioned and where their arrays are in `Slots::mats`.
struct Layout {
    r: usize,
    c: usize,
    left: bool,
    right: bool,
}

impl Layout {
    fn new(c: &OptimizerConfig, s: MatrixShape) -> Self {
        Layout {
            r: s.rows,
            c: s.cols,
            left: s.rows <= c.max_precond_dim,
            right: s.cols <= c.max_precond_dim,
        }
    }
    fn lf(&self) -> usize {
        0
    }
    fn rf(&self) -> usize {
        usize::from(self.left)
    }
    fn lb(&self) -> usize {
        usize::from(self.left) + usize::from(self.right)
    }
    fn rb(&self) -> usize {
        self.lb() + usize::from(self.left)
    }
}

/// The `f64` buffers of one preconditioned dimension of size `n`: the factor copy, the basis,
/// the power iteration, eigenvalues / estimated eigenvalues, the permutation, a work vector and
/// the eigensolver's workspace (built at the first step).
struct DimWork {
    n: usize,
    a: Mat<f64>,
    q: Mat<f64>,
    p: Mat<f64>,
    vals: Vec<f64>,
    perm: Vec<usize>,
    eig: Option<SymEigWorkspace>,
}

impl DimWork {
    fn new(n: usize) -> Self {
        DimWork {
            n,
            a: Mat::zeros(n, n),
            q: Mat::zeros(n, n),
            p: Mat::zeros(n, n),
            vals: vec![0.0; n],
            perm: (0..n).collect(),
            eig: None,
        }
    }
}

/// SOAP's between-step workspace (`r × c` matrices in the dtype, the factor products, and the
/// `f64` buffers of each preconditioned dimension).
struct SoapWork<T: StepFloat> {
    par: Par,
    g: Mat<T>,
    a: Mat<T>,
    b: Mat<T>,
    m: Mat<T>,
    t: Mat<T>,
    gl: Mat<T>,
    gr: Mat<T>,
    dl: DimWork,
    dr: DimWork,
}

impl<T: StepFloat> SoapWork<T> {
    fn new(l: &Layout) -> Self {
        let (r, c) = (l.r, l.c);
        let side = |on: bool, n: usize| if on { n } else { 0 };
        let big = r.max(c);
        SoapWork {
            par: if r * c * big >= 64 * 64 * 64 {
                Par::rayon(0)
            } else {
                Par::Seq
            },
            g: Mat::zeros(r, c),
            a: Mat::zeros(r, c),
            b: Mat::zeros(r, c),
            m: Mat::zeros(r, c),
            t: Mat::zeros(r, c),
            gl: Mat::zeros(side(l.left, r), side(l.left, r)),
            gr: Mat::zeros(side(l.right, c), side(l.right, c)),
            dl: DimWork::new(side(l.left, r)),
            dr: DimWork::new(side(l.right, c)),
        }
    }
}

/// `upd(G)` on the stored factors: `GG ← lerp(GG, G Gᵀ, 1 − β_s)` (resp. `GᵀG`), the product's
/// lower triangle mirrored so the factor stays exactly symmetric.
fn update_factors<T: StepFloat>(l: &Layout, w: &mut SoapWork<T>, mats: &mut [Vec<T>], bs: f64) {
    let lerp = Lerp::<T>::new(1.0 - bs);
    let one = |prod: &mut Mat<T>, gg: &mut [T], lhs: MatRef<'_, T>| {
        let n = prod.nrows();
        product_into(
            prod.as_mut(),
            Accum::Replace,
            lhs,
            lhs.transpose(),
            T::ONE,
            w.par,
        );
        for i in 0..n {
            for j in 0..=i {
                let v = lerp.apply(gg[i * n + j], prod[(i, j)]);
                gg[i * n + j] = v;
                gg[j * n + i] = v;
            }
        }
    };
    if l.left {
        one(&mut w.gl, &mut mats[l.lf()], w.g.as_ref());
    }
    if l.right {
        one(&mut w.gr, &mut mats[l.rf()], w.g.as_ref().transpose());
    }
}

/// `dst = project(src)` (`back = false`) or `project_back(src)` (`back = true`), the rows first,
/// as the reference's `tensordot` sequence; `tmp` is an `r × c` scratch matrix.
fn rotate<T: StepFloat>(
    l: &Layout,
    mats: &[Vec<T>],
    back: bool,
    src: MatRef<'_, T>,
    mut tmp: MatMut<'_, T>,
    mut dst: MatMut<'_, T>,
    par: Par,
) {
    let ql = l
        .left
        .then(|| MatRef::from_row_major_slice(&mats[l.lb()], l.r, l.r));
    let qr = l
        .right
        .then(|| MatRef::from_row_major_slice(&mats[l.rb()], l.c, l.c));
    match (ql, qr) {
        (Some(ql), Some(qr)) => {
            let lq = if back { ql } else { ql.transpose() };
            let rq = if back { qr.transpose() } else { qr };
            product_into(tmp.as_mut(), Accum::Replace, lq, src, T::ONE, par);
            product_into(dst, Accum::Replace, tmp.as_ref(), rq, T::ONE, par);
        }
        (Some(ql), None) => {
            let lq = if back { ql } else { ql.transpose() };
            product_into(dst, Accum::Replace, lq, src, T::ONE, par);
        }
        (None, Some(qr)) => {
            let rq = if back { qr.transpose() } else { qr };
            product_into(dst, Accum::Replace, src, rq, T::ONE, par);
        }
        (None, None) => dst.copy_from(src),
    }
}

/// Rounds the `f64` basis `q` into the stored row-major basis.
fn store_basis<T: StepFloat>(q: &Mat<f64>, out: &mut [T]) {
    let n = q.nrows();
    for i in 0..n {
        for j in 0..n {
            out[i * n + j] = T::from_f64(q[(i, j)]);
        }
    }
}

/// The first basis into `d.q`: the eigenvectors of `GG + 10⁻³⁰ I` by descending eigenvalue;
/// the identity when the eigendecomposition fails.
fn first_basis<T: StepFloat>(gg: &[T], d: &mut DimWork, par: Par) {
    let n = d.n;
    for i in 0..n {
        for j in 0..n {
            d.a[(i, j)] = gg[i * n + j].to_f64() + if i == j { 1e-30 } else { 0.0 };
        }
    }
    if d.eig.is_none() {
        d.eig = SymEigWorkspace::with_par(n, par).ok();
    }
    let ok = d
        .eig
        .as_mut()
        .is_some_and(|ws| sym_eigh_into(d.a.as_ref(), d.p.as_mut(), &mut d.vals, ws).is_ok());
    for i in 0..n {
        for j in 0..n {
            d.q[(i, j)] = if ok {
                d.p[(i, n - 1 - j)]
            } else if i == j {
                1.0
            } else {
                0.0
            };
        }
    }
}

/// The refresh of one dimension (step 7 of the module docs): the estimated eigenvalues
/// `diag(Qᵀ GG Q)`, their descending order `π` (in `d.perm`), and `d.q ← qr(GG Q[:, π]).Q`.
/// Returns `false` (basis unchanged) when the power iteration is not finite.
fn refresh<T: StepFloat>(gg: &[T], q: &[T], d: &mut DimWork, par: Par) -> bool {
    let n = d.n;
    for i in 0..n {
        for j in 0..n {
            d.a[(i, j)] = gg[i * n + j].to_f64();
            d.q[(i, j)] = q[i * n + j].to_f64();
        }
    }
    product_into(
        d.p.as_mut(),
        Accum::Replace,
        d.a.as_ref(),
        d.q.as_ref(),
        1.0,
        par,
    );
    for j in 0..n {
        let mut e = 0.0;
        for i in 0..n {
            let v = d.p[(i, j)];
            if !v.is_finite() {
                return false;
            }
            e += d.q[(i, j)] * v;
        }
        d.vals[j] = e;
    }
    for (i, p) in d.perm.iter_mut().enumerate() {
        *p = i;
    }
    let vals = &d.vals;
    d.perm
        .sort_unstable_by(|&a, &b| vals[b].total_cmp(&vals[a]).then(a.cmp(&b)));
    // the permuted power iteration, orthonormalized in place into d.q
    for (jn, &jo) in d.perm.iter().enumerate() {
        for i in 0..n {
            d.q[(i, jn)] = d.p[(i, jo)];
        }
    }
    orthonormalize(d.q.as_mut());
    true
}

/// The `Q` of a QR of the square `a`, in place: faer's blocked Householder QR (`O(n³)` in
/// matrix–matrix products: 20–30× faster at n = 1024 than the column-by-column Gram–Schmidt it
/// replaced), each column's sign chosen so that `R`'s diagonal is `≥ 0` (the Gram–Schmidt
/// convention; for a full-rank `a` that `Q` is unique). A rank-deficient `a` still gets an
/// orthogonal `Q`: the reflectors complete the basis.
fn orthonormalize(mut a: MatMut<'_, f64>) {
    let n = a.nrows();
    let qr = a.as_ref().qr();
    let q = qr.compute_thin_Q();
    let r = qr.thin_R();
    for j in 0..n {
        let s = if r[(j, j)] < 0.0 { -1.0 } else { 1.0 };
        for i in 0..n {
            a[(i, j)] = s * q[(i, j)];
        }
    }
}

/// `S`'s indices along the rows (`rows = true`) or the columns permuted by `perm`
/// (`S_new[.., i, ..] = S_old[.., perm[i], ..]`), through the `r × c` scratch `t`.
fn permute_sq<T: StepFloat>(
    sq: &mut [T],
    shape: MatrixShape,
    t: &mut Mat<T>,
    perm: &[usize],
    rows: bool,
) {
    for_each_tiled(shape, |idx, i, j| t[(i, j)] = sq[idx]);
    for_each_tiled(shape, |idx, i, j| {
        sq[idx] = if rows {
            t[(perm[i], j)]
        } else {
            t[(i, perm[j])]
        };
    });
}
