//! Shampoo with DistributedShampoo's semantics (THEORY.md §7; the exact step with sources in
//! `tests/fixtures/matrix_reference.md` §2): Kronecker factors `L = Σ GGᵀ`, `R = Σ GᵀG` per
//! block, the direction `L̃ Ḡ R̃` with `L̃ = (L̂ + εI)^{-1/4}`, `R̃ = (R̂ + εI)^{-1/4}`, optionally
//! grafted onto the norm of a diagonal method.
//!
//! The `rows × cols` matrix `X` is cut into blocks of at most `b = max_preconditioner_dim` rows
//! and columns (row chunks of `b`, each cut into column chunks of `b`, row-chunk-major; the last
//! chunk holds the remainder). Per step `k = 1, 2, …` on each block `W` with gradient block `G`
//! (`−G` under `maximize`), with `s = start_preconditioning_step` (`−1` → `f`),
//! `f = precondition_frequency`, `amortized = (k mod f = 0 and k > s) or k = s`:
//! 1. coupled decay (`use_decoupled_weight_decay = false`): `G ← G + λW`,
//! 2. factors: `L ← β₂L + w GGᵀ`, `R ← β₂R + w GᵀG` with `w = 1 − β₂` (`β₂ = 1`: `w = 1`, a
//!    plain sum),
//! 3. `bc₂ = 1 − β₂ᵏ` when `use_bias_correction` and `β₂ < 1`, else `1`,
//! 4. roots (only when `amortized`): `Â = A/bc₂ + εI` (ε = `epsilon`, added *before* the
//!    eigendecomposition), `(λ, Q) = eigh(Â)`, if `min λ < ε` all `λ ← λ − min λ + ε`,
//!    `Ã = Q diag(λ^{-1/4}) Qᵀ` for `A = L, R`; before the first computation `L̃ = I`, `R̃ = I`,
//! 5. grafting state from `G`: AdaGrad `V ← V + G⊙G`; RMSprop/Adam `V ← β_g V + (1 − β_g) G⊙G`,
//! 6. filtered gradient (`β₁ > 0`): `F ← lerp(F, G, 1 − β₁)` (torch's lerp),
//!    `Ḡ = F/(1 − β₁ᵏ)` with `use_bias_correction`, else `Ḡ = F`; `β₁ = 0`: `Ḡ = G`,
//! 7. direction: the grafting direction `D_g = Ḡ` (SGD) or `Ḡ/(sqrt(V/bc_g) + ε_g)` (ε_g outside
//!    the root; `bc_g = 1 − β_gᵏ` for Adam, else 1); for `k < s` with grafting: `P = D_g`;
//!    otherwise `P_s = L̃ Ḡ R̃` and `P = P_s` (no grafting) or
//!    `P = ‖D_g‖_F/(‖P_s‖_F + 10⁻¹⁶) · P_s` (Frobenius norms of the block),
//! 8. decoupled decay (`use_decoupled_weight_decay = true`, the default): `P ← P + λW` — added to
//!    the direction, so it goes through momentum and **is multiplied by the learning rate**,
//! 9. momentum (`μ > 0`, no dampening, no Nesterov): `M ← μM + P`, `P ← M`,
//! 10. `W ← W − η P`.
//!
//! Conventions: the scalars `bc₂`, `1 − β₁ᵏ`, `bc_g` and `η` are exact `f64` (DistributedShampoo
//! holds them as float32 tensors). The "dimension merging" of DistributedShampoo is off (its
//! `target_parameter_dimensionality = inf`): a matrix keeps its 2-D Kronecker form. The project
//! has no `beta3` (always `β₃ = β₁`). Factors, roots and every per-element state live in the
//! parameter's dtype; the eigendecomposition always runs in `f64` (an `f32` factor is widened
//! into an `f64` copy kept in the workspace, the root rounded back to `f32`).
//!
//! A root computation that fails (the eigensolver errors, or the factor or root is not finite,
//! e.g. after an overflow) keeps the previous root (the identity if none was computed yet) and
//! adds one to the state array `root_failures` (one count per failed factor). DistributedShampoo
//! raises after 3 consecutive failures and on a non-finite factor; here a failed root is
//! reported by the count instead of an error and no NaN enters the parameters through a root.
//! A factor that overflows (a non-finite value in the state or the parameters after the step,
//! from finite inputs) makes the whole step refused and undone under the policies `"error"` and
//! `"skip"` (`OptimError::NonFiniteUpdate`, as DistributedShampoo raises; see
//! [`crate::Optimizer::step`]); under `"propagate"` the step is kept as it is.
//!
//! State (per part): per-element `filtered_grad` (`β₁ > 0`), `grafting_sq` (`V`, non-negative;
//! AdaGrad/RMSprop/Adam grafting), `momentum_buffer` (`μ > 0`); then the arrays `left_factor`,
//! `right_factor`, `left_root`, `right_root` (each the concatenation over the blocks of their
//! row-major `p × p` resp. `q × q` matrices, in block order) and `root_failures` (length 1).
//!
//! # References
//! - \[Gupta2018\] V. Gupta, T. Koren, Y. Singer, *Shampoo: Preconditioned stochastic tensor
//!   optimization*, ICML 2018.
//! - \[Anil2020\] R. Anil, V. Gupta, T. Koren, K. Regan, Y. Singer, *Scalable second order
//!   optimization for deep learning*, 2020 (grafting, blocking, delayed roots).
//! - \[Shi2023\] H.-J. M. Shi et al., *A distributed data-parallel PyTorch implementation of the
//!   distributed Shampoo optimizer for training neural networks at-scale*, 2023
//!   (`facebookresearch/optimizers`, DistributedShampoo).

use super::adam::moment_ratio_bound;
use super::matrix::{
    MatrixSegment, check_factor_diagonal, for_each_tiled, observed, position, segment,
};
use super::{Kind, StepCtx};
use crate::config::{GraftingKind, MatrixShape, OptimizerConfig};
use crate::error::{OptimError, Result};
use crate::kernel::first_nonfinite;
use crate::matrix::{MatrixPreconditioner, PreconditionerBlock};
use crate::precond::Lerp;
use crate::storage::{Geometry, SlotSpec, Slots, StepFloat};
use faer::{Accum, Mat, MatRef, Par};
use precond_linalg::{
    SymEigWorkspace, gram_pair_into, product_into, sym_eigh_into, transpose_into,
};

/// DistributedShampoo (one process, one 2-D parameter per part).
pub(crate) struct Shampoo;

/// The norm guard of grafting, `‖D_g‖/(‖P_s‖ + 10⁻¹⁶)` (DistributedShampoo's constant).
const GRAFT_GUARD: f64 = 1e-16;

/// Indices of the state arrays after the per-element slots (`Slots::mats`).
const LEFT_FACTOR: usize = 0;
const RIGHT_FACTOR: usize = 1;
const LEFT_ROOT: usize = 2;
const RIGHT_ROOT: usize = 3;
/// Number of state arrays (the last one is `root_failures`, length 1).
const ARRAYS: usize = 5;

impl Kind for Shampoo {
    const KEYS: &'static [&'static str] = &[
        "betas",
        "epsilon",
        "momentum",
        "use_decoupled_weight_decay",
        "max_preconditioner_dim",
        "precondition_frequency",
        "start_preconditioning_step",
        "use_bias_correction",
        "grafting",
    ];
    /// The default; `use_decoupled_weight_decay` decides per config.
    const DECOUPLED_WEIGHT_DECAY: bool = true;
    const MATRIX: bool = true;

    fn defaults(c: &mut OptimizerConfig) {
        c.lr = 1e-2;
        c.betas = [0.9, 1.0];
        c.epsilon = 1e-12;
        c.weight_decay = 0.0;
        c.momentum = 0.0;
        c.use_decoupled_weight_decay = true;
        c.max_preconditioner_dim = 1024;
        c.precondition_frequency = 1;
        c.start_preconditioning_step = -1;
        c.use_bias_correction = true;
    }

    fn validate(c: &OptimizerConfig) -> Result<()> {
        let [b1, b2] = c.betas;
        if !(b1.is_finite() && (0.0..1.0).contains(&b1)) {
            return Err(OptimError::config(
                "betas",
                format!("betas[0] must be in [0, 1), got {b1}"),
            ));
        }
        if !(b2.is_finite() && (0.0..=1.0).contains(&b2)) {
            return Err(OptimError::config(
                "betas",
                format!("betas[1] must be in [0, 1], got {b2}"),
            ));
        }
        if !(c.epsilon.is_finite() && c.epsilon > 0.0) {
            return Err(OptimError::config(
                "epsilon",
                format!("must be finite and > 0, got {}", c.epsilon),
            ));
        }
        if !(c.momentum.is_finite() && (0.0..1.0).contains(&c.momentum)) {
            return Err(OptimError::config(
                "momentum",
                format!("must be in [0, 1) (0: no momentum), got {}", c.momentum),
            ));
        }
        if c.max_preconditioner_dim == 0 {
            return Err(OptimError::config(
                "max_preconditioner_dim",
                "must be ≥ 1, got 0",
            ));
        }
        if c.precondition_frequency == 0 {
            return Err(OptimError::config(
                "precondition_frequency",
                "must be ≥ 1, got 0",
            ));
        }
        let s = c.start_preconditioning_step;
        if s < -1 {
            return Err(OptimError::config(
                "start_preconditioning_step",
                format!("must be ≥ −1 (−1: precondition_frequency), got {s}"),
            ));
        }
        if s != -1 && (s as u64) < c.precondition_frequency {
            return Err(OptimError::config(
                "start_preconditioning_step",
                format!(
                    "must be ≥ precondition_frequency = {} (as DistributedShampoo), got {s}",
                    c.precondition_frequency
                ),
            ));
        }
        let g = c.grafting;
        match g.kind {
            GraftingKind::None | GraftingKind::Sgd | GraftingKind::Adagrad => {}
            GraftingKind::Rmsprop => {
                if !(g.beta2.is_finite() && g.beta2 > 0.0 && g.beta2 <= 1.0) {
                    return Err(OptimError::config(
                        "grafting.beta2",
                        format!("must be in (0, 1], got {}", g.beta2),
                    ));
                }
            }
            GraftingKind::Adam => {
                if !(g.beta2.is_finite() && g.beta2 > 0.0 && g.beta2 < 1.0) {
                    return Err(OptimError::config(
                        "grafting.beta2",
                        format!(
                            "must be in (0, 1) (Adam's bias correction divides by 1 − β₂ᵏ), got {}",
                            g.beta2
                        ),
                    ));
                }
            }
        }
        if matches!(
            g.kind,
            GraftingKind::Adagrad | GraftingKind::Rmsprop | GraftingKind::Adam
        ) && !(g.epsilon.is_finite() && g.epsilon > 0.0)
        {
            return Err(OptimError::config(
                "grafting.epsilon",
                format!("must be finite and > 0, got {}", g.epsilon),
            ));
        }
        Ok(())
    }

    fn slots(c: &OptimizerConfig) -> Vec<SlotSpec> {
        let l = Layout::of(c);
        let mut v = Vec::new();
        if l.filtered.is_some() {
            v.push(SlotSpec::zero("filtered_grad"));
        }
        if l.graft.is_some() {
            v.push(SlotSpec::squares("grafting_sq"));
        }
        if l.momentum.is_some() {
            v.push(SlotSpec::zero("momentum_buffer"));
        }
        v
    }

    fn arrays(c: &OptimizerConfig, geo: &Geometry) -> Vec<SlotSpec> {
        let Some(shape) = geo.shape else {
            return Vec::new();
        };
        let blocks = blocks(shape.rows, shape.cols, c.max_preconditioner_dim.max(1));
        // saturating: an absurd shape asks for usize::MAX elements, which the allocation at the
        // first step refuses with a typed error (never a wrapped, too small length)
        let left = blocks
            .iter()
            .fold(0usize, |a, b| a.saturating_add(b.p.saturating_mul(b.p)));
        let right = blocks
            .iter()
            .fold(0usize, |a, b| a.saturating_add(b.q.saturating_mul(b.q)));
        vec![
            SlotSpec::array("left_factor", left, false),
            SlotSpec::array("right_factor", right, false),
            SlotSpec::array("left_root", left, false),
            SlotSpec::array("right_root", right, false),
            SlotSpec::array("root_failures", 1, true),
        ]
    }

    /// Relations the update keeps between the loaded arrays: every factor's diagonal is `≥ 0`,
    /// and the filtered gradient `F` (an EMA of the same gradients the factors accumulate) obeys
    /// `|F_ij| ≤ C_k sqrt(min(L_ii, R_jj))` per block (Cauchy–Schwarz, as Adam's first moment
    /// against its second; `C_k` from [`super::adam::moment_ratio_bound`] with the factors'
    /// weight), slack `(1 + 10⁻³)` and an `f32::MIN_POSITIVE` term under the root.
    fn check_state(
        c: &OptimizerConfig,
        step: u64,
        arrays: &[&[f64]],
        geo: &Geometry,
    ) -> std::result::Result<(), String> {
        let Some(shape) = geo.shape else {
            return Ok(());
        };
        let lay = Layout::of(c);
        let per = Self::slots(c).len();
        let (Some(lf), Some(rf)) = (arrays.get(per), arrays.get(per + 1)) else {
            return Ok(());
        };
        let bl = blocks(shape.rows, shape.cols, c.max_preconditioner_dim.max(1));
        for (bi, b) in bl.iter().enumerate() {
            check_factor_diagonal(lf, b.loff, b.p, &format!("left_factor of block {bi}"))?;
            check_factor_diagonal(rf, b.roff, b.q, &format!("right_factor of block {bi}"))?;
        }
        let [b1, b2] = c.betas;
        let w = if b2 >= 1.0 { 1.0 } else { 1.0 - b2 };
        let (Some(fi), Some(ck)) = (lay.filtered, moment_ratio_bound(b1, b2, w, step)) else {
            return Ok(());
        };
        let f = arrays[fi];
        for (idx, &fv) in f.iter().enumerate() {
            let (i, j) = position(idx, shape);
            let Some(b) = bl
                .iter()
                .find(|b| (b.r0..b.r0 + b.p).contains(&i) && (b.c0..b.c0 + b.q).contains(&j))
            else {
                continue;
            };
            let (ii, jj) = (i - b.r0, j - b.c0);
            let l = lf[b.loff + ii * b.p + ii];
            let r = rf[b.roff + jj * b.q + jj];
            let bound = (1.0 + 1e-3) * ck * (l.min(r) + f64::from(f32::MIN_POSITIVE)).sqrt();
            if fv.abs() > bound {
                return Err(format!(
                    "filtered_grad[{idx}] = {fv} but the factors' diagonal gives |filtered_grad| ≤ {bound:e} after {step} steps"
                ));
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
        if s.mats.len() != ARRAYS {
            return Err(OptimError::state(format!(
                "shampoo state has {} arrays, expected {ARRAYS}",
                s.mats.len()
            )));
        }
        // the roots in the state were computed at step `s` or later; before that they are I
        let computed = step >= start_step(c);
        let mut out = Vec::new();
        for b in blocks(shape.rows, shape.cols, c.max_preconditioner_dim.max(1)) {
            let mut pb = PreconditionerBlock::new(b.r0..b.r0 + b.p, b.c0..b.c0 + b.q);
            let take = |j: usize, off: usize, d: usize| -> Vec<f64> {
                s.mats[j][off..off + d * d]
                    .iter()
                    .map(|v| v.to_f64())
                    .collect()
            };
            let eye = |d: usize| -> Vec<f64> {
                (0..d * d)
                    .map(|t| if t / d == t % d { 1.0 } else { 0.0 })
                    .collect()
            };
            pb.left_factor = Some(take(LEFT_FACTOR, b.loff, b.p));
            pb.right_factor = Some(take(RIGHT_FACTOR, b.roff, b.q));
            pb.left = Some(if computed {
                take(LEFT_ROOT, b.loff, b.p)
            } else {
                eye(b.p)
            });
            pb.right = Some(if computed {
                take(RIGHT_ROOT, b.roff, b.q)
            } else {
                eye(b.q)
            });
            out.push(pb);
        }
        Ok(MatrixPreconditioner {
            optimizer: c.optimizer,
            rows: shape.rows,
            cols: shape.cols,
            blocks: out,
        })
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
        if slots.mats.len() != ARRAYS {
            return Err(OptimError::state(format!(
                "shampoo state has {} arrays, expected {ARRAYS}",
                slots.mats.len()
            )));
        }
        let wd = weight_decay;
        let k = ctx.k();
        let s = start_step(c);
        let f = c.precondition_frequency.max(1);
        let amortized = (k.is_multiple_of(f) && k > s) || k == s;
        let graft = c.grafting.kind;
        let use_grafting = k < s && graft != GraftingKind::None;
        let layout = Layout::of(c);
        let b = c.max_preconditioner_dim.max(1);
        let Slots {
            s: per,
            mats,
            scratch,
            ..
        } = slots;
        let work = scratch.get_or(|| ShampooWork::<T>::new(shape, b));
        // a workspace of another shape (cannot happen for one part, but never index out of it)
        if work.shape != (shape.rows, shape.cols, b) {
            *work = ShampooWork::new(shape, b);
        }
        let sign = T::from_f64(if c.maximize { -1.0 } else { 1.0 });
        let coupled = !c.use_decoupled_weight_decay && wd != 0.0;
        let wdt = T::from_f64(wd);

        // pass A: the gradient (with coupled decay) into the block matrices
        for_each_tiled(shape, |idx, i, j| {
            let (bi, li, lj) = work.locate(i, j);
            let mut v = g[idx] * sign;
            if coupled {
                v += wdt * x[idx];
            }
            work.blocks[bi].g[(li, lj)] = v;
        });

        // factors (every step) and, when amortized, the roots
        let [b1, b2] = c.betas;
        let (fdecay, fweight) = if b2 >= 1.0 {
            (None, 1.0)
        } else {
            (Some(b2), 1.0 - b2)
        };
        let bc2 = if c.use_bias_correction && b2 < 1.0 {
            crate::float::one_minus_pow(b2, k)
        } else {
            1.0
        };
        let (lfac, rest) = mats.split_at_mut(1);
        let (rfac, rest) = rest.split_at_mut(1);
        let (lroot, rest) = rest.split_at_mut(1);
        let (rroot, fails) = rest.split_at_mut(1);
        let (lfac, rfac, lroot, rroot) = (&mut lfac[0], &mut rfac[0], &mut lroot[0], &mut rroot[0]);
        let mut failures = 0u64;
        {
            let ShampooWork {
                blocks, sym, par, ..
            } = &mut *work;
            for blk in blocks.iter_mut() {
                let (p, q) = (blk.info.p, blk.info.q);
                if T::transpose(blk.g.as_ref(), blk.gt.as_mut(), *par).is_err() {
                    return Err(OptimError::Unsupported(
                        "shampoo's workspace is not column-major".into(),
                    ));
                }
                // L += GGᵀ from (G, Gᵀ), R += GᵀG from (Gᵀ, G)
                for (x, xt, fac) in [
                    (
                        &blk.g,
                        &blk.gt,
                        &mut lfac[blk.info.loff..blk.info.loff + p * p],
                    ),
                    (
                        &blk.gt,
                        &blk.g,
                        &mut rfac[blk.info.roff..blk.info.roff + q * q],
                    ),
                ] {
                    accumulate(x.as_ref(), xt.as_ref(), sym, fac, fdecay, fweight, *par);
                }
            }
        }
        if amortized {
            let ShampooWork { blocks, eig, .. } = &mut *work;
            for blk in blocks.iter() {
                let (p, q, lo, ro) = (blk.info.p, blk.info.q, blk.info.loff, blk.info.roff);
                let (lf, rf) = (&lfac[lo..lo + p * p], &rfac[ro..ro + q * q]);
                let (lr, rr) = (&mut lroot[lo..lo + p * p], &mut rroot[ro..ro + q * q]);
                // a size whose workspace could not be allocated counts as a failed root
                let ia = eig.iter().position(|e| e.dim() == p);
                let ib = (0..eig.len()).find(|&i| eig[i].dim() == q && Some(i) != ia);
                let (ok_l, ok_r) = match (ia, ib) {
                    (Some(a), Some(b)) if p >= 128 && q >= 128 => {
                        // the two roots at once, on two workspaces (a ≠ b: `ib` skips `ia`)
                        match eig.get_disjoint_mut([a, b]) {
                            Ok([ea, eb]) => rayon::join(
                                || ea.inverse_root(lf, bc2, c.epsilon, lr),
                                || eb.inverse_root(rf, bc2, c.epsilon, rr),
                            ),
                            Err(_) => (false, false),
                        }
                    }
                    _ => {
                        let ok_l = ia.is_some_and(|a| eig[a].inverse_root(lf, bc2, c.epsilon, lr));
                        let ok_r = eig
                            .iter_mut()
                            .find(|e| e.dim() == q)
                            .is_some_and(|e| e.inverse_root(rf, bc2, c.epsilon, rr));
                        (ok_l, ok_r)
                    }
                };
                for (ok, r, d) in [(ok_l, lr, p), (ok_r, rr, q)] {
                    if !ok {
                        failures += 1;
                        if k == s {
                            // the last good root is the initial identity
                            for (t, v) in r.iter_mut().enumerate() {
                                *v = if t / d == t % d { T::ONE } else { T::ZERO };
                            }
                        }
                    }
                }
            }
        }
        if failures > 0 {
            // `fails` is the one array after the right roots: `root_failures`
            let cnt = &mut fails[0][0];
            *cnt = T::from_f64(cnt.to_f64() + failures as f64);
        }

        // pass B: grafting state, filtered gradient, grafting direction
        let filt = Lerp::<T>::new(1.0 - b1);
        let fbc = T::from_f64(if c.use_bias_correction {
            crate::float::one_minus_pow(b1, k)
        } else {
            1.0
        });
        let gb = c.grafting.beta2;
        let (vdecay, vweight) = match graft {
            GraftingKind::Adagrad => (T::ONE, T::ONE),
            _ => (T::from_f64(gb), T::from_f64(1.0 - gb)),
        };
        let bcg = T::from_f64(if graft == GraftingKind::Adam {
            crate::float::one_minus_pow(gb, k)
        } else {
            1.0
        });
        let geps = T::from_f64(c.grafting.epsilon);
        for_each_tiled(shape, |idx, i, j| {
            let (bi, li, lj) = work.locate(i, j);
            let blk = &mut work.blocks[bi];
            let gi = blk.g[(li, lj)];
            let gbar = match layout.filtered {
                Some(fs) => {
                    let fv = filt.apply(per[fs][idx], gi);
                    per[fs][idx] = fv;
                    fv / fbc
                }
                None => gi,
            };
            let dg = match layout.graft {
                Some(vs) => {
                    let vv = vdecay * per[vs][idx] + vweight * (gi * gi);
                    per[vs][idx] = vv;
                    gbar / ((vv / bcg).sqrt() + geps)
                }
                None => gbar,
            };
            blk.g[(li, lj)] = gbar;
            blk.dg[(li, lj)] = dg;
        });

        // the direction per block
        let roots_ready = k >= s;
        for blk in &mut work.blocks {
            let (p, q) = (blk.info.p, blk.info.q);
            if use_grafting {
                blk.p.copy_from(blk.dg.as_ref());
                continue;
            }
            if roots_ready {
                // the roots are exactly symmetric (written mirrored, or the identity), so their
                // flat arrays read column-major are the same matrices, in faer's fastest layout
                let lr_ = MatRef::from_column_major_slice(
                    &lroot[blk.info.loff..blk.info.loff + p * p],
                    p,
                    p,
                );
                let rr = MatRef::from_column_major_slice(
                    &rroot[blk.info.roff..blk.info.roff + q * q],
                    q,
                    q,
                );
                product_into(
                    blk.t.as_mut(),
                    Accum::Replace,
                    lr_,
                    blk.g.as_ref(),
                    T::ONE,
                    work.par,
                );
                product_into(
                    blk.p.as_mut(),
                    Accum::Replace,
                    blk.t.as_ref(),
                    rr,
                    T::ONE,
                    work.par,
                );
            } else {
                blk.p.copy_from(blk.g.as_ref());
            }
            if graft != GraftingKind::None {
                let scale =
                    frob(blk.dg.as_ref()) / (frob(blk.p.as_ref()) + T::from_f64(GRAFT_GUARD));
                for jj in 0..q {
                    for ii in 0..p {
                        blk.p[(ii, jj)] = scale * blk.p[(ii, jj)];
                    }
                }
            }
        }

        // pass C: decoupled decay, momentum, the update
        let decoupled = c.use_decoupled_weight_decay && wd != 0.0;
        let mu = T::from_f64(c.momentum);
        let nlr = T::from_f64(lr);
        for_each_tiled(shape, |idx, i, j| {
            let (bi, li, lj) = work.locate(i, j);
            let mut d = work.blocks[bi].p[(li, lj)];
            let xi = &mut x[idx];
            if decoupled {
                d += wdt * *xi;
            }
            if let Some(ms) = layout.momentum {
                let m = mu * per[ms][idx] + d;
                per[ms][idx] = m;
                d = m;
            }
            *xi -= nlr * d;
        });
        Ok(ctx.propagate && first_nonfinite(g, usize::MAX).is_some())
    }
}

/// `start_preconditioning_step` after DistributedShampoo's `−1 → precondition_frequency`.
fn start_step(c: &OptimizerConfig) -> u64 {
    u64::try_from(c.start_preconditioning_step).unwrap_or(c.precondition_frequency.max(1))
}

/// Which per-element slot holds what (indices into `Slots::s`).
struct Layout {
    filtered: Option<usize>,
    graft: Option<usize>,
    momentum: Option<usize>,
}

impl Layout {
    fn of(c: &OptimizerConfig) -> Self {
        let mut n = 0;
        let mut next = |on: bool| {
            on.then(|| {
                n += 1;
                n - 1
            })
        };
        let filtered = next(c.betas[0] > 0.0);
        let graft = next(matches!(
            c.grafting.kind,
            GraftingKind::Adagrad | GraftingKind::Rmsprop | GraftingKind::Adam
        ));
        let momentum = next(c.momentum > 0.0);
        Layout {
            filtered,
            graft,
            momentum,
        }
    }
}

/// One block: rows `r0..r0+p`, columns `c0..c0+q`, and the offsets of its `p × p` and `q × q`
/// matrices in the concatenated left/right state arrays.
#[derive(Clone, Copy, Debug)]
struct BlockInfo {
    r0: usize,
    p: usize,
    c0: usize,
    q: usize,
    loff: usize,
    roff: usize,
}

/// The blocks of a `rows × cols` matrix with `max_preconditioner_dim = b`, row-chunk-major.
fn blocks(rows: usize, cols: usize, b: usize) -> Vec<BlockInfo> {
    let chunks = |n: usize| -> Vec<(usize, usize)> {
        (0..n.div_ceil(b))
            .map(|t| (t * b, b.min(n - t * b)))
            .collect()
    };
    let (rc, cc) = (chunks(rows), chunks(cols));
    let mut out = Vec::with_capacity(rc.len().saturating_mul(cc.len()));
    let (mut loff, mut roff) = (0, 0);
    for &(r0, p) in &rc {
        for &(c0, q) in &cc {
            out.push(BlockInfo {
                r0,
                p,
                c0,
                q,
                loff,
                roff,
            });
            loff = p.saturating_mul(p).saturating_add(loff);
            roff = q.saturating_mul(q).saturating_add(roff);
        }
    }
    out
}

/// `fac ← β fac + w XXᵀ` (`β = None`: no decay) for the `n × n` factor `fac` (its flat array,
/// symmetric, so row- and column-major alike), given `X` (`n × k`) and `XT = Xᵀ` both
/// column-major: `XXᵀ` by precond-linalg's `gram_pair_into` into `sym` (lower triangle by
/// recursive halving, mirrored: exactly symmetric), then added column by column. No checks
/// beyond that product's: a non-finite gradient (possible only under the `propagate` policy)
/// makes the factor NaN, which the root computation refuses.
fn accumulate<T: StepFloat>(
    x: MatRef<'_, T>,
    xt: MatRef<'_, T>,
    sym: &mut Mat<T>,
    fac: &mut [T],
    beta: Option<f64>,
    w: f64,
    par: Par,
) {
    let n = x.nrows();
    let mut s = sym.as_mut().submatrix_mut(0, 0, n, n);
    if T::gram_pair(x, xt, s.as_mut(), par).is_err() {
        fac.fill(T::from_f64(f64::NAN));
        return;
    }
    let (w, beta) = (T::from_f64(w), beta.map(T::from_f64));
    for (j, col) in fac.chunks_exact_mut(n).enumerate() {
        let sc = s
            .as_ref()
            .col(j)
            .try_as_col_major()
            .expect("owned column")
            .as_slice();
        match beta {
            Some(bt) => {
                for (f, &v) in col.iter_mut().zip(sc) {
                    *f = bt * *f + w * v;
                }
            }
            None => {
                for (f, &v) in col.iter_mut().zip(sc) {
                    *f += w * v;
                }
            }
        }
    }
}

/// `‖A‖_F` accumulated column by column (the same order whatever the storage order).
fn frob<T: StepFloat>(a: MatRef<'_, T>) -> T {
    let mut acc = T::ZERO;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            let v = a[(i, j)];
            acc += v * v;
        }
    }
    acc.sqrt()
}

/// The matrices of one block between steps.
struct BlockWork<T: StepFloat> {
    info: BlockInfo,
    /// `G`, then `Ḡ` (`p × q`).
    g: Mat<T>,
    /// The grafting direction `D_g`.
    dg: Mat<T>,
    /// `L̃ Ḡ`.
    t: Mat<T>,
    /// The direction `P`.
    p: Mat<T>,
    /// `Gᵀ` (`q × p`): the factors' Gram products read `G` and `Gᵀ` both column-major.
    gt: Mat<T>,
}

/// The eigendecomposition buffers for one factor size `d` (all `f64`).
struct EigWork {
    /// Threads of the eigendecomposition and the root's product: all for `d ≥ 128`, half of
    /// them (one on two cores) for the paired workspaces of [`ShampooWork::new`], none below.
    par: Par,
    ws: SymEigWorkspace,
    a: Mat<f64>,
    q: Mat<f64>,
    w: Vec<f64>,
    qs: Mat<f64>,
    out: Mat<f64>,
}

impl EigWork {
    fn new(d: usize, par: Par) -> Option<Self> {
        Some(EigWork {
            par,
            ws: SymEigWorkspace::with_par(d, par).ok()?,
            a: Mat::zeros(d, d),
            q: Mat::zeros(d, d),
            w: vec![0.0; d],
            qs: Mat::zeros(d, d),
            out: Mat::zeros(d, d),
        })
    }

    fn dim(&self) -> usize {
        self.w.len()
    }

    /// `root ← Q diag(λ^{-1/4}) Qᵀ` of `Â = A/bc₂ + εI` with the shift of step 4 (module docs);
    /// `false` (and `root` untouched) when the eigensolver fails or a value is not finite.
    fn inverse_root<T: StepFloat>(
        &mut self,
        fac: &[T],
        bc2: f64,
        eps: f64,
        root: &mut [T],
    ) -> bool {
        let d = self.dim();
        // `a ← Aᵀ/bc₂ + εI` column by column (row `i` of the row-major factor is column `i` of
        // `a`: both contiguous). The eigensolver uses the symmetric part `(a_ij + a_ji)/2`,
        // which is the same for `A` and `Aᵀ`
        for i in 0..d {
            let row = &fac[i * d..(i + 1) * d];
            let col = self
                .a
                .col_mut(i)
                .try_as_col_major_mut()
                .expect("owned column");
            for (j, (dst, &v)) in col.as_slice_mut().iter_mut().zip(row).enumerate() {
                let mut v = v.to_f64() / bc2;
                if i == j {
                    v += eps;
                }
                *dst = v;
            }
        }
        if sym_eigh_into(self.a.as_ref(), self.q.as_mut(), &mut self.w, &mut self.ws).is_err() {
            return false;
        }
        // root = Q diag(λ^{-1/4}) Qᵀ = (Q diag(λ^{-1/8}))(Q diag(λ^{-1/8}))ᵀ: a Gram product of
        // `qs`, with its transpose in `a` (free once decomposed), both column-major
        let lmin = self.w[0];
        for (jj, &l) in self.w.iter().enumerate() {
            let lam = if lmin < eps { l - lmin + eps } else { l };
            let sc = lam.powf(-0.125);
            for ii in 0..d {
                self.qs[(ii, jj)] = self.q[(ii, jj)] * sc;
            }
        }
        let ok = transpose_into(self.qs.as_ref(), self.a.as_mut(), self.par).is_ok()
            && gram_pair_into(
                self.qs.as_ref(),
                self.a.as_ref(),
                self.out.as_mut(),
                self.par,
            )
            .is_ok();
        if !ok {
            return false;
        }
        // exactly symmetric (the lower triangle mirrored), every entry finite in T: checked
        // down the columns of the lower triangle first (contiguous), so that a failure leaves
        // `root` untouched
        for j in 0..d {
            if self
                .out
                .col(j)
                .iter()
                .skip(j)
                .any(|&v| !T::from_f64(v).is_finite())
            {
                return false;
            }
        }
        // then written in 32 × 32 tiles: `root` is symmetric, so its row-major array is also its
        // column-major one; each lower tile `(I, J)` is written down its columns and across its
        // rows (the mirrored tile) while both stay in cache
        const TILE: usize = 32;
        for j0 in (0..d).step_by(TILE) {
            let j1 = (j0 + TILE).min(d);
            for i0 in (j0..d).step_by(TILE) {
                let i1 = (i0 + TILE).min(d);
                for j in j0..j1 {
                    for i in i0.max(j)..i1 {
                        let v = T::from_f64(self.out[(i, j)]);
                        root[j * d + i] = v;
                        root[i * d + j] = v;
                    }
                }
            }
        }
        true
    }
}

/// Shampoo's between-step workspace: the blocks' matrices and the eigendecomposition workspaces:
/// one per distinct factor size, two for a size from 128 on that two factors have (a block's left
/// and right roots are then computed at once).
struct ShampooWork<T: StepFloat> {
    shape: (usize, usize, usize),
    ncb: usize,
    bsize: usize,
    blocks: Vec<BlockWork<T>>,
    /// A factor's new Gram product `GGᵀ` or `GᵀG` (column-major, the largest factor size).
    sym: Mat<T>,
    eig: Vec<EigWork>,
    par: Par,
}

impl<T: StepFloat> ShampooWork<T> {
    fn new(shape: MatrixShape, b: usize) -> Self {
        let infos = blocks(shape.rows, shape.cols, b);
        let mut dims: Vec<usize> = infos.iter().flat_map(|i| [i.p, i.q]).collect();
        dims.sort_unstable();
        // factors of a size from 128 on that occur at least twice get two workspaces, so that
        // two roots (a block's left and right one) are computed at once, each on half the
        // threads: faer's eigendecomposition gains little from a second thread (d = 1024 on the
        // Xeon of BENCHMARKS.md: 230 ms on one thread, 207 ms on two)
        let threads = rayon::current_num_threads();
        let mut pool = Vec::new();
        for same in dims.chunk_by(|a, b| a == b) {
            let (d, count) = (same[0], same.len());
            if d >= 128 && count >= 2 && threads >= 2 {
                let half = if threads >= 4 {
                    Par::rayon(threads / 2)
                } else {
                    Par::Seq
                };
                pool.extend(EigWork::new(d, half));
                pool.extend(EigWork::new(d, half));
            } else {
                let par = if d >= 128 { Par::rayon(0) } else { Par::Seq };
                pool.extend(EigWork::new(d, par));
            }
        }
        let big = infos
            .iter()
            .map(|i| i.p * i.q * i.p.max(i.q))
            .max()
            .unwrap_or(0);
        let big_side = infos.iter().map(|i| i.p.max(i.q)).max().unwrap_or(0);
        ShampooWork {
            shape: (shape.rows, shape.cols, b),
            ncb: shape.cols.div_ceil(b),
            bsize: b,
            blocks: infos
                .into_iter()
                .map(|info| BlockWork {
                    info,
                    g: Mat::zeros(info.p, info.q),
                    dg: Mat::zeros(info.p, info.q),
                    t: Mat::zeros(info.p, info.q),
                    p: Mat::zeros(info.p, info.q),
                    gt: Mat::zeros(info.q, info.p),
                })
                .collect(),
            sym: Mat::zeros(big_side, big_side),
            eig: pool,
            par: if big >= 64 * 64 * 64 {
                Par::rayon(0)
            } else {
                Par::Seq
            },
        }
    }

    /// Block index and position inside the block of matrix entry `(i, j)`.
    #[inline(always)]
    fn locate(&self, i: usize, j: usize) -> (usize, usize, usize) {
        let b = self.bsize;
        ((i / b) * self.ncb + j / b, i % b, j % b)
    }
}
