//! torch `Muon` (torch 2.15, `torch/optim/_muon.py`; THEORY.md §7): momentum, then the momentum
//! (or its Nesterov look-ahead) orthogonalized by a quintic Newton–Schulz iteration.
//!
//! Per step on the `rows × cols` matrix `X` with gradient `G` (`−G` under `maximize`):
//! 1. `B ← lerp(B, G, 1 − μ)` (torch's lerp; the momentum buffer `momentum_buffer`),
//! 2. `U = lerp(G, B, μ)` with `nesterov`, else `U = B`,
//! 3. `O = NS(U)`: transpose when `rows > cols` (so the Gram matrix is the smaller one),
//!    `Y = U / max(‖U‖_F, eps)`, then `ns_steps` times `A = YYᵀ`, `Y ← aY + (bA + cA²)Y`, and
//!    transpose back,
//! 4. `X ← X(1 − η λ)` (decoupled weight decay with the *unadjusted* scheduled `η`),
//! 5. `X ← X − η' O` with `η' = adjust_lr_fn(η, rows, cols)`.
//!
//! torch runs step 3 in bfloat16; this runs it in the parameter's dtype (f32 or f64), which is
//! what torch computes with its Newton–Schulz function replaced by a float32/float64 copy (the
//! test oracle). The Gram products `YYᵀ` and `A²` are symmetric products (lower triangle,
//! mirrored). The workspace is allocated at the first step and reused.
//!
//! The preconditioner: `NS(U) = M U` with `M = p(UUᵀ)/‖U‖` a polynomial of the Gram matrix, the
//! Newton–Schulz approximation of `(UUᵀ)^{-1/2}` ([`crate::MatrixPreconditioner`]'s `left`; for a
//! tall matrix `right`, of `UᵀU`), observed for `U` = the momentum buffer.
//!
//! # References
//! - \[Jordan2024\] K. Jordan et al., *Muon: an optimizer for hidden layers in neural networks*,
//!   2024 (blog post and `KellerJordan/Muon`).
//! - \[Liu2025\] J. Liu et al., *Muon is scalable for LLM training*, 2025 (`match_rms_adamw`).

use super::matrix::{MatrixSegment, observed, segment, single_block};
use super::{Kind, StepCtx};
use crate::config::{MatrixOrder, MatrixShape, OptimizerConfig};
use crate::error::{OptimError, Result};
use crate::kernel::first_nonfinite;
use crate::matrix::{MatrixPreconditioner, PreconditionerBlock};
use crate::precond::Lerp;
use crate::storage::{Geometry, SlotSpec, Slots, StepFloat};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use precond_linalg::{SymEigWorkspace, product_into, sym_eigh_into};

/// torch `Muon`.
pub(crate) struct Muon;

impl Kind for Muon {
    const KEYS: &'static [&'static str] = &[
        "momentum",
        "nesterov",
        "ns_coefficients",
        "eps",
        "ns_steps",
        "adjust_lr_fn",
    ];
    const DECOUPLED_WEIGHT_DECAY: bool = true;
    const MATRIX: bool = true;

    fn defaults(c: &mut OptimizerConfig) {
        c.weight_decay = 0.1;
        c.momentum = 0.95;
        c.nesterov = true;
        c.eps = 1e-7;
    }

    fn validate(c: &OptimizerConfig) -> Result<()> {
        if !(c.momentum.is_finite() && (0.0..1.0).contains(&c.momentum)) {
            return Err(OptimError::config(
                "momentum",
                format!("must be in [0, 1), got {}", c.momentum),
            ));
        }
        if !(c.eps.is_finite() && c.eps > 0.0) {
            return Err(OptimError::config(
                "eps",
                format!("must be finite and > 0, got {}", c.eps),
            ));
        }
        if c.ns_steps >= 100 {
            return Err(OptimError::config(
                "ns_steps",
                format!("must be < 100 (as torch), got {}", c.ns_steps),
            ));
        }
        if let Some(i) = c.ns_coefficients.iter().position(|v| !v.is_finite()) {
            return Err(OptimError::config(
                format!("ns_coefficients[{i}]"),
                format!("must be finite, got {}", c.ns_coefficients[i]),
            ));
        }
        Ok(())
    }

    fn slots(_c: &OptimizerConfig) -> Vec<SlotSpec> {
        vec![SlotSpec::zero("momentum_buffer")]
    }

    fn observe_matrix<T: StepFloat>(
        c: &OptimizerConfig,
        step: u64,
        state: Option<&Slots<T>>,
        geo: &Geometry,
    ) -> Result<MatrixPreconditioner> {
        let (s, shape) = observed(c, step, state, geo)?;
        let buf: Vec<f64> = s.s[0].iter().map(|v| v.to_f64()).collect();
        let (m, tall) = implied_factor(c, &buf, shape)?;
        let mut b = PreconditionerBlock::new(0..shape.rows, 0..shape.cols);
        let flat: Vec<f64> = (0..m.nrows())
            .flat_map(|i| (0..m.ncols()).map(move |j| (i, j)))
            .map(|(i, j)| m[(i, j)])
            .collect();
        if tall {
            b.right = Some(flat);
        } else {
            b.left = Some(flat);
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
        let (r, cl) = (shape.rows, shape.cols);
        let tall = r > cl;
        let (p, q) = if tall { (cl, r) } else { (r, cl) };
        let sign = T::from_f64(if c.maximize { -1.0 } else { 1.0 });
        let work = slots.scratch.get_or(|| MuonWork::<T>::new(p, q));
        // The flat buffer is, column-major, either the p × q iterate Y itself or its transpose:
        // a row-major r × c matrix is a column-major c × r one. Fill whichever it is
        // contiguously, and transpose once (cache-blocked) when it is Yᵀ.
        let flat_is_y = (shape.order == MatrixOrder::ColMajor) != tall;
        // 1–2: momentum and the direction
        let to_buf = Lerp::<T>::new(1.0 - c.momentum);
        let look = Lerp::<T>::new(c.momentum);
        let buf = &mut slots.s[0];
        {
            let dest = if flat_is_y { &mut work.x } else { &mut work.xt };
            let ld = dest.nrows();
            for (k, (bc, gc)) in buf.chunks_mut(ld).zip(g.chunks(ld)).enumerate() {
                for ((u, b), &gi) in dest.col_as_slice_mut(k).iter_mut().zip(bc).zip(gc) {
                    let gi = gi * sign;
                    *b = to_buf.apply(*b, gi);
                    *u = if c.nesterov { look.apply(gi, *b) } else { *b };
                }
            }
        }
        if !flat_is_y && T::transpose(work.xt.as_ref(), work.x.as_mut(), par_for(p, q)).is_err() {
            return Err(OptimError::Unsupported(
                "muon's workspace is not column-major".into(),
            ));
        }
        // 3: Newton–Schulz in the workspace
        work.newton_schulz(c);
        if !flat_is_y && T::transpose(work.x.as_ref(), work.xt.as_mut(), par_for(p, q)).is_err() {
            return Err(OptimError::Unsupported(
                "muon's workspace is not column-major".into(),
            ));
        }
        // 4–5: decay and the update
        let decay = T::from_f64(1.0 - lr * weight_decay);
        let nadj = T::from_f64(-c.adjust_lr_fn.apply(lr, r, cl));
        let src = if flat_is_y { &work.x } else { &work.xt };
        let ld = src.nrows();
        for (k, xc) in x.chunks_mut(ld).enumerate() {
            for (xi, &o) in xc.iter_mut().zip(src.col_as_slice(k)) {
                let d = *xi * decay;
                *xi = d + nadj * o;
            }
        }
        Ok(ctx.propagate && first_nonfinite(g, usize::MAX).is_some())
    }
}

/// Muon's between-step workspace: the iterate `Y` (`p × q`, `p ≤ q`) and its transpose, the Gram
/// matrix and its polynomial (`p × p`), and the next iterate.
struct MuonWork<T: StepFloat> {
    x: Mat<T>,
    xt: Mat<T>,
    a: Mat<T>,
    b: Mat<T>,
    y: Mat<T>,
}

impl<T: StepFloat> MuonWork<T> {
    fn new(p: usize, q: usize) -> Self {
        MuonWork {
            x: Mat::zeros(p, q),
            xt: Mat::zeros(q, p),
            a: Mat::zeros(p, p),
            b: Mat::zeros(p, p),
            y: Mat::zeros(p, q),
        }
    }

    /// `Y ← NS(Y)` in place (step 3 of the module docs). The Gram products `YYᵀ` and `A²` are
    /// symmetric products from `Y` and an explicit `Yᵀ` (precond-linalg's `gram_pair_into`:
    /// lower triangle by recursive halving, every product column-major × column-major).
    fn newton_schulz(&mut self, c: &OptimizerConfig) {
        let (p, q) = (self.x.nrows(), self.x.ncols());
        let par = par_for(p, q);
        // ‖Y‖_F in the dtype, as torch's norm of the copy
        let mut acc = T::ZERO;
        for j in 0..q {
            for &v in self.x.col_as_slice(j) {
                acc += v * v;
            }
        }
        let norm = acc.sqrt();
        let eps = T::from_f64(c.eps);
        let scale = if norm > eps { norm } else { eps };
        for j in 0..q {
            for v in self.x.col_as_slice_mut(j) {
                *v /= scale;
            }
        }
        let [ca, cb, cc] = c.ns_coefficients.map(T::from_f64);
        for _ in 0..c.ns_steps {
            // A = Y Yᵀ, B = bA + cA², Y ← aY + B Y; a non-finite product (only the `propagate`
            // policy lets NaN/inf in) makes the result NaN, as torch's
            let ok = T::transpose(self.x.as_ref(), self.xt.as_mut(), par).is_ok()
                && T::gram_pair(self.x.as_ref(), self.xt.as_ref(), self.a.as_mut(), par).is_ok()
                && T::gram_pair(self.a.as_ref(), self.a.as_ref(), self.b.as_mut(), par).is_ok();
            if !ok {
                self.x.fill(T::from_f64(f64::NAN));
                return;
            }
            // B' = aI + bA + cA², then Y ← B'Y in one product (torch: aY + (bA + cA²)Y)
            for j in 0..p {
                let (aj, bj) = (self.a.col_as_slice(j), self.b.col_as_slice_mut(j));
                for (bv, &av) in bj.iter_mut().zip(aj) {
                    *bv = cb * av + cc * *bv;
                }
                bj[j] += ca;
            }
            product_into(
                self.y.as_mut(),
                Accum::Replace,
                self.b.as_ref(),
                self.x.as_ref(),
                T::ONE,
                par,
            );
            std::mem::swap(&mut self.x, &mut self.y);
        }
    }
}

fn par_for(p: usize, q: usize) -> Par {
    if p * p * q >= 64 * 64 * 64 {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

/// `M` with `NS(U) = M·U` (wide or square) or `NS(U) = U·M` (tall), computed in `f64` from the
/// eigendecomposition `G₀ = Q diag(λ) Qᵀ` of the normalized Gram matrix `G₀ = Y₀Y₀ᵀ`
/// (`Y₀ = U/max(‖U‖_F, eps)`): Newton–Schulz keeps every iterate a polynomial of `G₀` times
/// `Y₀`, `Y_k = Q diag(m_k) Qᵀ Y₀` with the scalar recursion `m₀ = 1`,
/// `m_{k+1} = (a + b s + c s²) m_k`, `s = λ m_k²`, so `M = Q diag(m_K) Qᵀ / max(‖U‖_F, eps)`
/// (exactly symmetric). On the null space of `U Uᵀ` (eigenvalues below `n·ε·λ_max`) `M` is
/// set to 0: Newton–Schulz never acts there, and `(UUᵀ)^{-1/2}` is read as the pseudo-inverse
/// root.
fn implied_factor(
    c: &OptimizerConfig,
    buf: &[f64],
    shape: MatrixShape,
) -> Result<(Mat<f64>, bool)> {
    let (r, cl) = (shape.rows, shape.cols);
    let tall = r > cl;
    let p = r.min(cl);
    let u = match shape.order {
        MatrixOrder::RowMajor => MatRef::from_row_major_slice(buf, r, cl),
        MatrixOrder::ColMajor => MatRef::from_column_major_slice(buf, r, cl),
    };
    let y0: MatRef<'_, f64> = if tall { u.transpose() } else { u };
    let norm = y0.norm_l2().max(c.eps);
    let mut g0 = Mat::<f64>::zeros(p, p);
    matmul(
        g0.as_mut(),
        Accum::Replace,
        y0,
        y0.transpose(),
        1.0 / (norm * norm),
        Par::Seq,
    );
    let sym = Mat::from_fn(p, p, |i, j| 0.5 * (g0[(i, j)] + g0[(j, i)]));
    let mut ws = SymEigWorkspace::new(p).map_err(|e| OptimError::Unsupported(e.to_string()))?;
    let mut q = Mat::<f64>::zeros(p, p);
    let mut lam = vec![0.0; p];
    sym_eigh_into(sym.as_ref(), q.as_mut(), &mut lam, &mut ws).map_err(|e| {
        OptimError::Unsupported(format!("the Gram matrix's eigendecomposition: {e}"))
    })?;
    let [ca, cb, cc] = c.ns_coefficients;
    let top = lam.iter().fold(0.0f64, |m, &l| m.max(l.abs()));
    let cut = p as f64 * f64::EPSILON * top;
    let m: Vec<f64> = lam
        .iter()
        .map(|&l| {
            if l <= cut {
                return 0.0;
            }
            let mut mk = 1.0f64;
            for _ in 0..c.ns_steps {
                let s = l * mk * mk;
                mk *= ca + cb * s + cc * s * s;
            }
            mk / norm
        })
        .collect();
    let out = Mat::from_fn(p, p, |i, j| {
        (0..p).map(|k| q[(i, k)] * m[k] * q[(j, k)]).sum::<f64>()
    });
    let out = Mat::from_fn(p, p, |i, j| 0.5 * (out[(i, j)] + out[(j, i)]));
    Ok((out, tall))
}
