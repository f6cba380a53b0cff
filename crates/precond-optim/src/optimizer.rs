//! The [`Optimizer`]: one flat parameter buffer, a validated config, state, groups and schedule.

use crate::config::{FixedPreconditioner, NonFinitePolicy, OptimizerConfig, OptimizerKind};
use crate::error::{OptimError, Result};
use crate::float::{Dtype, Float};
use crate::kernel::{
    Buffers, ElementUpdate, Fused, PAR_THRESHOLD, SimdLevel, default_par_threshold,
    first_nonfinite, fused_step, fused_step_detect,
};
use crate::momentum::{Ema, HeavyBall, MomentumRule, NoMomentum, PostHeavyBall};
use crate::precond::{AdagradPrecond, AdamPrecond, FixedDiag, Identity, PrecondRule, RmsPrecond};
use crate::regularization::{
    CoupledL2, DecoupledL2, Elementwise, NoReg, RegKind, Regularization, Space,
};
use crate::state::OptimizerState;

/// What a call to `step` did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutcome {
    /// False when the step was skipped (non-finite gradient under `"nonfinite": "skip"`).
    pub applied: bool,
    /// The step count after the call.
    pub step: u64,
    /// The (top-level, scheduled) learning rate used by this step.
    pub lr: f64,
    /// First non-finite gradient index: of a skipped step (`"skip"`), or of an applied step
    /// under `"propagate"` (the NaN/Inf then flowed into the parameters and state, as in torch).
    pub nonfinite_index: Option<usize>,
}

/// A contiguous range of the flat buffer with its own hyperparameters.
#[derive(Clone, Debug)]
struct Segment {
    start: usize,
    end: usize,
    lr: Option<f64>,
    weight_decay: f64,
    reg: Regularization,
}

/// Buffers of one dtype.
#[derive(Clone, Debug)]
#[doc(hidden)]
pub struct Slots<T> {
    pub(crate) s: [Vec<T>; 3],
    aux: Vec<T>,
    dense_p: Vec<T>,
    scratch_u: Vec<T>,
    scratch_y: Vec<T>,
}

#[derive(Clone, Debug)]
#[doc(hidden)]
pub enum Store {
    Empty,
    F32(Slots<f32>),
    F64(Slots<f64>),
}

/// The element types an [`Optimizer`] steps: `f32` and `f64`.
pub trait StepFloat: Float {
    #[doc(hidden)]
    fn slots_mut(store: &mut Store) -> Option<&mut Slots<Self>>;
    #[doc(hidden)]
    fn slots_ref(store: &Store) -> Option<&Slots<Self>>;
    #[doc(hidden)]
    fn wrap(s: Slots<Self>) -> Store;
}

impl StepFloat for f32 {
    fn slots_mut(store: &mut Store) -> Option<&mut Slots<f32>> {
        if let Store::F32(s) = store {
            Some(s)
        } else {
            None
        }
    }
    fn slots_ref(store: &Store) -> Option<&Slots<f32>> {
        if let Store::F32(s) = store {
            Some(s)
        } else {
            None
        }
    }
    fn wrap(s: Slots<f32>) -> Store {
        Store::F32(s)
    }
}

impl StepFloat for f64 {
    fn slots_mut(store: &mut Store) -> Option<&mut Slots<f64>> {
        if let Store::F64(s) = store {
            Some(s)
        } else {
            None
        }
    }
    fn slots_ref(store: &Store) -> Option<&Slots<f64>> {
        if let Store::F64(s) = store {
            Some(s)
        } else {
            None
        }
    }
    fn wrap(s: Slots<f64>) -> Store {
        Store::F64(s)
    }
}

/// How the configured L2 / regularizer of a segment enters the fused update.
#[derive(Clone, Copy, Debug)]
enum RegSpec {
    None,
    Coupled(f64),
    Decoupled(f64),
    General {
        reg: Regularization,
        coupled: f64,
        decoupled: f64,
    },
}

/// An optimizer over one flat parameter buffer of `n_params` elements (see the crate docs for
/// the update formulas). State is allocated at the first step in that step's dtype.
#[derive(Clone, Debug)]
pub struct Optimizer {
    cfg: OptimizerConfig,
    n: usize,
    base_lr: f64,
    segments: Vec<Segment>,
    step: u64,
    store: Store,
    level: SimdLevel,
    /// `0`: automatic ([`default_par_threshold`] of the step's update).
    par_threshold: usize,
    dense_p: Option<Vec<f64>>,
}

impl OptimizerConfig {
    /// Validate the config against `n_params` and build the optimizer. Errors: any
    /// [`OptimizerConfig::validate`] error, [`OptimError::GroupRange`], [`OptimError::GroupOverlap`],
    /// a fixed preconditioner of the wrong size or not SPD, unsupported combinations.
    pub fn build(&self, n_params: usize) -> Result<Optimizer> {
        Optimizer::new(self.clone(), n_params)
    }
}

impl Optimizer {
    /// See [`OptimizerConfig::build`].
    pub fn new(cfg: OptimizerConfig, n: usize) -> Result<Self> {
        cfg.validate()?;
        // groups: in bounds, non-overlapping; gaps get the top-level values
        let mut order: Vec<usize> = (0..cfg.groups.len()).collect();
        for (i, g) in cfg.groups.iter().enumerate() {
            if g.start >= g.end || g.end > n {
                return Err(OptimError::GroupRange {
                    index: i,
                    start: g.start,
                    end: g.end,
                    n_params: n,
                });
            }
        }
        order.sort_by_key(|&i| cfg.groups[i].start);
        for w in order.windows(2) {
            if cfg.groups[w[0]].end > cfg.groups[w[1]].start {
                let (a, b) = (w[0].min(w[1]), w[0].max(w[1]));
                return Err(OptimError::GroupOverlap {
                    first: a,
                    second: b,
                });
            }
        }
        let top = |start, end| Segment {
            start,
            end,
            lr: None,
            weight_decay: cfg.weight_decay,
            reg: cfg.regularization,
        };
        let mut segments = Vec::new();
        let mut pos = 0;
        for &i in &order {
            let g = &cfg.groups[i];
            if g.start > pos {
                segments.push(top(pos, g.start));
            }
            segments.push(Segment {
                start: g.start,
                end: g.end,
                lr: g.lr,
                weight_decay: g.weight_decay.unwrap_or(cfg.weight_decay),
                reg: g.regularization.unwrap_or(cfg.regularization),
            });
            pos = g.end;
        }
        if pos < n || n == 0 {
            segments.push(top(pos, n));
        }
        let mut dense_p = None;
        if let Some(fp) = &cfg.preconditioner {
            match fp {
                FixedPreconditioner::Diagonal(p) => {
                    if p.len() != n {
                        return Err(OptimError::LengthMismatch {
                            what: "preconditioner.diag",
                            expected: n,
                            got: p.len(),
                        });
                    }
                }
                FixedPreconditioner::DenseP(m) | FixedPreconditioner::DenseS(m) => {
                    if m.len() != n * n {
                        return Err(OptimError::LengthMismatch {
                            what: "dense preconditioner (n*n)",
                            expected: n * n,
                            got: m.len(),
                        });
                    }
                    let p = match fp {
                        FixedPreconditioner::DenseS(s) => s_to_p(s, n),
                        _ => m.clone(),
                    };
                    check_spd(&p, n)?;
                    if cfg.groups.iter().any(|g| {
                        g.lr.is_some() || g.weight_decay.is_some() || g.regularization.is_some()
                    }) {
                        return Err(OptimError::Unsupported(
                            "parameter groups with a dense preconditioner".into(),
                        ));
                    }
                    for seg in &segments {
                        if !seg.reg.is_none()
                            && (seg.reg.proximal
                                || (seg.reg.space == Space::Intrinsic
                                    && seg.reg.kind != RegKind::L2))
                        {
                            return Err(OptimError::Unsupported(
                                "with a dense P only gradient-form L2 (either space) and original-space L1/elastic net are available".into(),
                            ));
                        }
                    }
                    dense_p = Some(p);
                }
            }
        }
        Ok(Optimizer {
            base_lr: cfg.lr,
            cfg,
            n,
            segments,
            step: 0,
            store: Store::Empty,
            level: SimdLevel::detect(),
            par_threshold: 0,
            dense_p,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.cfg
    }
    /// Number of parameters.
    pub fn n_params(&self) -> usize {
        self.n
    }
    /// Steps taken (skipped steps do not count).
    pub fn step_count(&self) -> u64 {
        self.step
    }
    /// The top-level learning rate the next step will use (base learning rate through the schedule).
    pub fn lr(&self) -> f64 {
        self.cfg.schedule.lr(self.base_lr, self.step)
    }
    /// The top-level base learning rate (before the schedule).
    pub fn base_lr(&self) -> f64 {
        self.base_lr
    }
    /// Set the top-level base learning rate (groups with their own `lr` keep it).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(OptimError::config(
                "lr",
                format!("must be finite and ≥ 0, got {lr}"),
            ));
        }
        self.base_lr = lr;
        Ok(())
    }
    /// Dtype of the state, `None` before the first step.
    pub fn dtype(&self) -> Option<Dtype> {
        match self.store {
            Store::Empty => None,
            Store::F32(_) => Some(Dtype::F32),
            Store::F64(_) => Some(Dtype::F64),
        }
    }
    /// Which compiled loop runs (detected at build).
    pub fn simd_level(&self) -> SimdLevel {
        self.level
    }
    /// Force a loop version (for benchmarks and tests; `Avx2` falls back when unsupported).
    pub fn set_simd_level(&mut self, level: SimdLevel) {
        self.level = level;
    }
    /// Length from which steps are split across the rayon pool. `0` restores the default:
    /// [`PAR_THRESHOLD_HEAVY`](crate::PAR_THRESHOLD_HEAVY) for the adaptive rules (a square root per element) and
    /// [`PAR_THRESHOLD`] for the others and for the non-finite check of the gradient.
    pub fn set_parallel_threshold(&mut self, n: usize) {
        self.par_threshold = n;
    }
    /// Forget all state (moments, accumulators, step count); keeps the base learning rate.
    pub fn reset(&mut self) {
        self.store = Store::Empty;
        self.step = 0;
    }

    /// Names of the per-element state slots in storage order, e.g. `["exp_avg_sq", "exp_avg"]`.
    pub fn slot_names(&self) -> Vec<&'static str> {
        let c = &self.cfg;
        match c.optimizer {
            OptimizerKind::Sgd | OptimizerKind::Gd | OptimizerKind::PrecondGd => {
                if c.momentum != 0.0 {
                    vec!["momentum_buffer"]
                } else {
                    vec![]
                }
            }
            OptimizerKind::Adagrad => vec!["sum"],
            OptimizerKind::Rmsprop => {
                let mut v = vec!["square_avg"];
                if c.centered {
                    v.push("grad_avg");
                }
                if c.momentum > 0.0 {
                    v.push("momentum_buffer");
                }
                v
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                if c.amsgrad {
                    vec!["exp_avg_sq", "max_exp_avg_sq", "exp_avg"]
                } else {
                    vec!["exp_avg_sq", "exp_avg"]
                }
            }
        }
    }

    /// The state layout tag stored in saved states: optimizer name and slot names.
    pub fn layout(&self) -> String {
        format!(
            "{}:{}",
            self.cfg.optimizer.name(),
            self.slot_names().join(",")
        )
    }

    /// Read-only view of state slot `j` (`None` before the first step or for another dtype).
    pub fn slot<T: StepFloat>(&self, j: usize) -> Option<&[T]> {
        T::slots_ref(&self.store).and_then(|s| {
            if j < self.slot_names().len() {
                Some(&s.s[j][..])
            } else {
                None
            }
        })
    }

    fn alloc<T: StepFloat>(&self) -> Slots<T> {
        let names = self.slot_names();
        let n = self.n;
        let mk = |j: usize| -> Vec<T> {
            if j < names.len() {
                let init = if names[j] == "sum" {
                    self.cfg.initial_accumulator_value
                } else {
                    0.0
                };
                vec![T::from_f64(init); n]
            } else {
                Vec::new()
            }
        };
        let aux = match &self.cfg.preconditioner {
            Some(FixedPreconditioner::Diagonal(p)) => p.iter().map(|&v| T::from_f64(v)).collect(),
            _ => Vec::new(),
        };
        let (dense_p, su, sy) = match &self.dense_p {
            Some(p) => (
                p.iter().map(|&v| T::from_f64(v)).collect(),
                vec![T::ZERO; n],
                vec![T::ZERO; n],
            ),
            None => (Vec::new(), Vec::new(), Vec::new()),
        };
        Slots {
            s: [mk(0), mk(1), mk(2)],
            aux,
            dense_p,
            scratch_u: su,
            scratch_y: sy,
        }
    }

    /// One step on `f64` buffers. See [`Optimizer::step`].
    pub fn step_f64(&mut self, params: &mut [f64], grads: &[f64]) -> Result<StepOutcome> {
        self.step(params, grads)
    }

    /// One step on `f32` buffers. See [`Optimizer::step`].
    pub fn step_f32(&mut self, params: &mut [f32], grads: &[f32]) -> Result<StepOutcome> {
        self.step(params, grads)
    }

    /// One optimizer step `x ← update(x, g)`, in one fused pass per parameter group.
    ///
    /// Errors (parameters, state and step count untouched): [`OptimError::LengthMismatch`],
    /// [`OptimError::DtypeMismatch`] (state of the other dtype), [`OptimError::NonFiniteGradient`]
    /// (policy `error`, the default: `g` is scanned before anything is written; with `skip` the
    /// outcome reports the skipped step; with `propagate` nothing is scanned beforehand, the
    /// update runs as torch's does and the outcome reports the first non-finite index).
    pub fn step<T: StepFloat>(&mut self, params: &mut [T], grads: &[T]) -> Result<StepOutcome> {
        let n = self.n;
        if params.len() != n {
            return Err(OptimError::LengthMismatch {
                what: "params",
                expected: n,
                got: params.len(),
            });
        }
        if grads.len() != n {
            return Err(OptimError::LengthMismatch {
                what: "grads",
                expected: n,
                got: grads.len(),
            });
        }
        if let Some(d) = self.dtype()
            && d != T::DTYPE
        {
            return Err(OptimError::DtypeMismatch {
                expected: d.name(),
                got: T::DTYPE.name(),
            });
        }
        let lr_top = self.lr();
        let scan_th = if self.par_threshold == 0 {
            PAR_THRESHOLD
        } else {
            self.par_threshold
        };
        let propagate = self.cfg.nonfinite == NonFinitePolicy::Propagate;
        if !propagate && let Some(index) = first_nonfinite(grads, scan_th) {
            return match self.cfg.nonfinite {
                NonFinitePolicy::Skip => Ok(StepOutcome {
                    applied: false,
                    step: self.step,
                    lr: lr_top,
                    nonfinite_index: Some(index),
                }),
                _ => Err(OptimError::NonFiniteGradient { index }),
            };
        }
        if matches!(self.store, Store::Empty) {
            self.store = T::wrap(self.alloc::<T>());
        }
        let k = self.step + 1;
        let mut store = std::mem::replace(&mut self.store, Store::Empty);
        let slots = T::slots_mut(&mut store).ok_or(OptimError::DtypeMismatch {
            expected: "?",
            got: T::DTYPE.name(),
        });
        let res = slots.and_then(|slots| {
            if self.dense_p.is_some() {
                self.dense_step(params, grads, slots, k);
                // no detection in this O(n²) step: under `propagate` the scan below decides
                Ok(propagate)
            } else {
                let mut bad = false;
                // segments are sorted and cover 0..n: peel them off the front of every buffer
                let [s0, s1, s2] = &mut slots.s;
                let (mut rx, mut rg, mut ra) = (&mut params[..], grads, &slots.aux[..]);
                let (mut r0, mut r1, mut r2) = (&mut s0[..], &mut s1[..], &mut s2[..]);
                for seg in &self.segments {
                    let len = seg.end - seg.start;
                    let lr = self
                        .cfg
                        .schedule
                        .lr(seg.lr.unwrap_or(self.base_lr), self.step);
                    let (x, tx) = rx.split_at_mut(len);
                    let (g, tg) = rg.split_at(len);
                    let (aux, ta) = if ra.is_empty() {
                        (ra, ra)
                    } else {
                        ra.split_at(len)
                    };
                    let (c0, t0) = split_front(r0, len);
                    let (c1, t1) = split_front(r1, len);
                    let (c2, t2) = split_front(r2, len);
                    (rx, rg, ra, r0, r1, r2) = (tx, tg, ta, t0, t1, t2);
                    bad |= self.run_segment(
                        seg,
                        lr,
                        k,
                        Buffers {
                            x,
                            g,
                            aux,
                            slots: [c0, c1, c2],
                        },
                        propagate,
                    )?;
                }
                Ok(bad)
            }
        });
        self.store = store;
        let bad = res?;
        self.step = k;
        Ok(StepOutcome {
            applied: true,
            step: k,
            lr: lr_top,
            // the fused pass only knows "some entry" (rare): find the first one afterwards
            nonfinite_index: if bad {
                first_nonfinite(grads, scan_th)
            } else {
                None
            },
        })
    }

    fn reg_spec(&self, seg: &Segment) -> RegSpec {
        let adamw = self.cfg.optimizer == OptimizerKind::Adamw;
        let (coupled, decoupled) = if adamw {
            (0.0, seg.weight_decay)
        } else {
            (seg.weight_decay, 0.0)
        };
        if seg.reg.is_none() {
            if coupled != 0.0 {
                RegSpec::Coupled(coupled)
            } else if decoupled != 0.0 {
                RegSpec::Decoupled(decoupled)
            } else {
                RegSpec::None
            }
        } else {
            RegSpec::General {
                reg: seg.reg,
                coupled,
                decoupled,
            }
        }
    }

    /// One group's fused pass; `Ok(true)` when `detect` saw a non-finite gradient.
    fn run_segment<T: StepFloat>(
        &self,
        seg: &Segment,
        lr: f64,
        k: u64,
        b: Buffers<'_, T>,
        detect: bool,
    ) -> Result<bool> {
        let c = &self.cfg;
        let sign = T::from_f64(if c.maximize { -1.0 } else { 1.0 });
        let spec = self.reg_spec(seg);
        let ex = Exec {
            level: self.level,
            th: self.par_threshold,
            detect,
        };
        let first = k == 1;
        match c.optimizer {
            OptimizerKind::Sgd | OptimizerKind::Gd => {
                if c.momentum != 0.0 {
                    let m = HeavyBall::new(c.momentum, c.dampening, c.nesterov, lr, first);
                    with_reg(spec, lr, sign, Identity, m, b, ex)
                } else {
                    with_reg(
                        spec,
                        lr,
                        sign,
                        Identity,
                        NoMomentum {
                            scale: T::from_f64(-lr),
                        },
                        b,
                        ex,
                    )
                }
            }
            OptimizerKind::PrecondGd => {
                if c.momentum != 0.0 {
                    let m = HeavyBall::new(c.momentum, c.dampening, c.nesterov, lr, first);
                    with_reg(spec, lr, sign, FixedDiag, m, b, ex)
                } else {
                    with_reg(
                        spec,
                        lr,
                        sign,
                        FixedDiag,
                        NoMomentum {
                            scale: T::from_f64(-lr),
                        },
                        b,
                        ex,
                    )
                }
            }
            OptimizerKind::Adagrad => {
                let clr = lr / (1.0 + (k - 1) as f64 * c.lr_decay);
                let pre = AdagradPrecond {
                    eps: T::from_f64(c.eps),
                };
                with_reg(
                    spec,
                    clr,
                    sign,
                    pre,
                    NoMomentum {
                        scale: T::from_f64(-clr),
                    },
                    b,
                    ex,
                )
            }
            OptimizerKind::Rmsprop => {
                let mom = PostHeavyBall {
                    momentum: T::from_f64(c.momentum),
                    scale: T::from_f64(-lr),
                };
                let nom = NoMomentum {
                    scale: T::from_f64(-lr),
                };
                match (c.centered, c.momentum > 0.0) {
                    (false, false) => with_reg(
                        spec,
                        lr,
                        sign,
                        RmsPrecond::<T, false>::new(c.alpha, c.eps),
                        nom,
                        b,
                        ex,
                    ),
                    (false, true) => with_reg(
                        spec,
                        lr,
                        sign,
                        RmsPrecond::<T, false>::new(c.alpha, c.eps),
                        mom,
                        b,
                        ex,
                    ),
                    (true, false) => with_reg(
                        spec,
                        lr,
                        sign,
                        RmsPrecond::<T, true>::new(c.alpha, c.eps),
                        nom,
                        b,
                        ex,
                    ),
                    (true, true) => with_reg(
                        spec,
                        lr,
                        sign,
                        RmsPrecond::<T, true>::new(c.alpha, c.eps),
                        mom,
                        b,
                        ex,
                    ),
                }
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                let [b1, b2] = c.betas;
                let mom = Ema::new(b1, lr, k);
                if c.amsgrad {
                    with_reg(
                        spec,
                        lr,
                        sign,
                        AdamPrecond::<T, true>::new(b2, c.eps, k),
                        mom,
                        b,
                        ex,
                    )
                } else {
                    with_reg(
                        spec,
                        lr,
                        sign,
                        AdamPrecond::<T, false>::new(b2, c.eps, k),
                        mom,
                        b,
                        ex,
                    )
                }
            }
        }
    }

    /// Preconditioned GD with a dense SPD `P` (5): `u = ±g + λ₂x + λ₁ sign(x)` (coupled terms),
    /// optional SGD momentum on `u`, `x ← x(1 − ηλ_int) − η P u`. One matrix-vector product.
    fn dense_step<T: StepFloat>(&self, x: &mut [T], g: &[T], s: &mut Slots<T>, k: u64) {
        let c = &self.cfg;
        let n = self.n;
        let lr = self.cfg.schedule.lr(self.base_lr, self.step);
        let seg = &self.segments[0];
        let (l1, l2) = seg.reg.split();
        let (cl1, cl2, il2) = match (seg.reg.is_none(), seg.reg.space) {
            (true, _) => (0.0, 0.0, 0.0),
            (false, Space::Original) => (l1, l2, 0.0),
            (false, Space::Intrinsic) => (0.0, 0.0, l2),
        };
        let sign = T::from_f64(if c.maximize { -1.0 } else { 1.0 });
        let wd = T::from_f64(seg.weight_decay + cl2);
        let l1t = T::from_f64(cl1);
        let u = &mut s.scratch_u;
        for i in 0..n {
            u[i] = g[i] * sign + wd * x[i] + l1t * x[i].sign();
        }
        if c.momentum != 0.0 {
            let (keep, gc) = if k == 1 {
                (0.0, 1.0)
            } else {
                (c.momentum, 1.0 - c.dampening)
            };
            let (keep, gc, mu) = (T::from_f64(keep), T::from_f64(gc), T::from_f64(c.momentum));
            let buf = &mut s.s[0];
            for i in 0..n {
                buf[i] = buf[i] * keep + gc * u[i];
                u[i] = if c.nesterov {
                    u[i] + mu * buf[i]
                } else {
                    buf[i]
                };
            }
        }
        let p = &s.dense_p;
        let y = &mut s.scratch_y;
        let u = &s.scratch_u;
        let row = |i: usize| -> T {
            let r = &p[i * n..(i + 1) * n];
            let mut acc = T::ZERO;
            for j in 0..n {
                acc = acc + r[j] * u[j];
            }
            acc
        };
        if n >= 256 {
            use rayon::prelude::*;
            y.par_iter_mut()
                .enumerate()
                .for_each(|(i, yi)| *yi = row(i));
        } else {
            for (i, yi) in y.iter_mut().enumerate() {
                *yi = row(i);
            }
        }
        let decay = T::from_f64(1.0 - lr * il2);
        let nlr = T::from_f64(-lr);
        for i in 0..n {
            x[i] = x[i] * decay + nlr * y[i];
        }
    }

    /// Write the current diagonal preconditioner `P_k` (THEORY.md section 4; learning rate kept
    /// outside) into `out`: Adam/AdamW `1/(sqrt(v̂_k) + eps)` (AMSGrad: of the running max),
    /// AdaGrad `1/(sqrt(G_k) + eps)` (the `lr_decay` factor `1/(1 + (k−1)·lr_decay)` is a scalar on
    /// the learning rate, not part of `P`), RMSprop `1/(sqrt(v_k) + eps)` (centered:
    /// `v_k − ḡ_k²`), SGD/GD ones, `precond_gd` the fixed diagonal.
    ///
    /// Errors: wrong `out` length; [`OptimError::NoPreconditionerYet`] for Adam before the first
    /// step; [`OptimError::Unsupported`] for a dense `P` (use [`Self::dense_preconditioner`]).
    pub fn preconditioner(&self, out: &mut [f64]) -> Result<()> {
        if out.len() != self.n {
            return Err(OptimError::LengthMismatch {
                what: "preconditioner out",
                expected: self.n,
                got: out.len(),
            });
        }
        let c = &self.cfg;
        match c.optimizer {
            OptimizerKind::Sgd | OptimizerKind::Gd => {
                out.fill(1.0);
                return Ok(());
            }
            OptimizerKind::PrecondGd => {
                return match &c.preconditioner {
                    Some(FixedPreconditioner::Diagonal(p)) => {
                        out.copy_from_slice(p);
                        Ok(())
                    }
                    _ => Err(OptimError::Unsupported(
                        "a dense P is not diagonal: use dense_preconditioner".into(),
                    )),
                };
            }
            OptimizerKind::Adam | OptimizerKind::Adamw if self.step == 0 => {
                return Err(OptimError::NoPreconditionerYet {
                    optimizer: c.optimizer.name(),
                });
            }
            _ => {}
        }
        match &self.store {
            Store::Empty => {
                let v = match c.optimizer {
                    OptimizerKind::Adagrad => 1.0 / (c.initial_accumulator_value.sqrt() + c.eps),
                    _ => 1.0 / c.eps,
                };
                out.fill(v);
                Ok(())
            }
            Store::F32(s) => {
                self.observe(s, out);
                Ok(())
            }
            Store::F64(s) => {
                self.observe(s, out);
                Ok(())
            }
        }
    }

    fn observe<T: StepFloat>(&self, s: &Slots<T>, out: &mut [f64]) {
        let c = &self.cfg;
        match c.optimizer {
            OptimizerKind::Adagrad => observe_with(
                AdagradPrecond {
                    eps: T::from_f64(c.eps),
                },
                s,
                out,
            ),
            OptimizerKind::Rmsprop => {
                if c.centered {
                    observe_with(RmsPrecond::<T, true>::new(c.alpha, c.eps), s, out)
                } else {
                    observe_with(RmsPrecond::<T, false>::new(c.alpha, c.eps), s, out)
                }
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                if c.amsgrad {
                    observe_with(
                        AdamPrecond::<T, true>::new(c.betas[1], c.eps, self.step),
                        s,
                        out,
                    )
                } else {
                    observe_with(
                        AdamPrecond::<T, false>::new(c.betas[1], c.eps, self.step),
                        s,
                        out,
                    )
                }
            }
            _ => out.fill(1.0),
        }
    }

    /// The dense `P` of `precond_gd` (row-major `n × n`; for a diagonal `P` the diagonal matrix).
    pub fn dense_preconditioner(&self, out: &mut [f64]) -> Result<()> {
        let n = self.n;
        if out.len() != n * n {
            return Err(OptimError::LengthMismatch {
                what: "dense preconditioner out",
                expected: n * n,
                got: out.len(),
            });
        }
        match (&self.dense_p, &self.cfg.preconditioner) {
            (Some(p), _) => out.copy_from_slice(p),
            (None, Some(FixedPreconditioner::Diagonal(p))) => {
                out.fill(0.0);
                for i in 0..n {
                    out[i * n + i] = p[i];
                }
            }
            _ => {
                return Err(OptimError::Unsupported(
                    "only precond_gd has a fixed dense preconditioner".into(),
                ));
            }
        }
        Ok(())
    }

    /// A snapshot of the state (see [`crate::OptimizerState`]).
    pub fn state(&self) -> OptimizerState {
        let names = self.slot_names();
        let (dtype, slots) = match &self.store {
            Store::Empty => (None, Vec::new()),
            Store::F32(s) => (
                Some(Dtype::F32),
                (0..names.len())
                    .map(|j| s.s[j].iter().map(|&v| f64::from(v)).collect())
                    .collect(),
            ),
            Store::F64(s) => (
                Some(Dtype::F64),
                (0..names.len()).map(|j| s.s[j].clone()).collect(),
            ),
        };
        OptimizerState {
            format_version: OptimizerState::FORMAT_VERSION,
            layout: self.layout(),
            n_params: self.n as u64,
            step: self.step,
            base_lr: self.base_lr,
            dtype,
            slots,
        }
    }

    /// Replace the state by `st` (all checks before any change): format version, layout
    /// (optimizer kind and slots), size, dtype, slot lengths.
    pub fn load(&mut self, st: &OptimizerState) -> Result<()> {
        if st.format_version != OptimizerState::FORMAT_VERSION {
            return Err(OptimError::state(format!(
                "format version {} (this build reads {})",
                st.format_version,
                OptimizerState::FORMAT_VERSION
            )));
        }
        let layout = self.layout();
        if st.layout != layout {
            return Err(OptimError::state(format!(
                "layout `{}` does not match this optimizer's `{layout}`",
                st.layout
            )));
        }
        if st.n_params != self.n as u64 {
            return Err(OptimError::state(format!(
                "state is for {} parameters, optimizer has {}",
                st.n_params, self.n
            )));
        }
        if !(st.base_lr.is_finite() && st.base_lr >= 0.0) {
            return Err(OptimError::state(format!("invalid base_lr {}", st.base_lr)));
        }
        let k = self.slot_names().len();
        let store = match st.dtype {
            None => {
                if st.step != 0 || !st.slots.is_empty() {
                    return Err(OptimError::state(
                        "state without dtype must be empty with step 0",
                    ));
                }
                Store::Empty
            }
            Some(d) => {
                if st.slots.len() != k {
                    return Err(OptimError::state(format!(
                        "{} slots, layout needs {k}",
                        st.slots.len()
                    )));
                }
                if let Some((j, s)) = st.slots.iter().enumerate().find(|(_, s)| s.len() != self.n) {
                    return Err(OptimError::state(format!(
                        "slot {j} has {} values, expected {}",
                        s.len(),
                        self.n
                    )));
                }
                match d {
                    Dtype::F32 => {
                        let mut s = self.alloc::<f32>();
                        for (j, v) in st.slots.iter().enumerate() {
                            s.s[j] = v.iter().map(|&x| x as f32).collect();
                        }
                        Store::F32(s)
                    }
                    Dtype::F64 => {
                        let mut s = self.alloc::<f64>();
                        for (j, v) in st.slots.iter().enumerate() {
                            s.s[j].clone_from(v);
                        }
                        Store::F64(s)
                    }
                }
            }
        };
        self.store = store;
        self.step = st.step;
        self.base_lr = st.base_lr;
        Ok(())
    }

    /// The state as bytes (binary, exact; see [`OptimizerState::to_bytes`]).
    pub fn save_state(&self) -> Vec<u8> {
        self.state().to_bytes()
    }

    /// Load a state saved by [`Self::save_state`]; on any error the optimizer is unchanged.
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<()> {
        let st = OptimizerState::from_bytes(bytes)?;
        self.load(&st)
    }
}

fn observe_with<T: Float, P: PrecondRule<T>>(pre: P, s: &Slots<T>, out: &mut [f64]) {
    let mut st = [T::ZERO; 3];
    for (i, o) in out.iter_mut().enumerate() {
        for (sj, slot) in st.iter_mut().zip(&s.s).take(P::SLOTS) {
            *sj = slot[i];
        }
        let a = if P::USES_AUX { s.aux[i] } else { T::ZERO };
        *o = pre.p(pre.current(a, &st[..P::SLOTS])).to_f64();
    }
}

#[allow(clippy::too_many_arguments)]
fn with_reg<T: Float, P: PrecondRule<T>, M: MomentumRule<T>>(
    spec: RegSpec,
    lr: f64,
    sign: T,
    pre: P,
    mom: M,
    b: Buffers<'_, T>,
    ex: Exec,
) -> Result<bool> {
    match spec {
        RegSpec::None => go(
            &Fused {
                sign,
                pre,
                mom,
                reg: NoReg,
            },
            b,
            ex,
        ),
        RegSpec::Coupled(wd) => go(
            &Fused {
                sign,
                pre,
                mom,
                reg: CoupledL2 {
                    weight_decay: T::from_f64(wd),
                },
            },
            b,
            ex,
        ),
        RegSpec::Decoupled(wd) => go(
            &Fused {
                sign,
                pre,
                mom,
                reg: DecoupledL2 {
                    factor: T::from_f64(1.0 - lr * wd),
                },
            },
            b,
            ex,
        ),
        RegSpec::General {
            reg,
            coupled,
            decoupled,
        } => go(
            &Fused {
                sign,
                pre,
                mom,
                reg: Elementwise::new(&reg, coupled, decoupled, lr),
            },
            b,
            ex,
        ),
    }
}

/// How a fused pass runs: compiled version, rayon split length (`0`: the update's default) and
/// whether the pass also detects non-finite gradients (policy `propagate`).
#[derive(Clone, Copy)]
struct Exec {
    level: SimdLevel,
    th: usize,
    detect: bool,
}

fn go<T: Float, U: ElementUpdate<T>>(u: &U, b: Buffers<'_, T>, ex: Exec) -> Result<bool> {
    let th = if ex.th == 0 {
        default_par_threshold::<T, U>()
    } else {
        ex.th
    };
    let res = if ex.detect {
        fused_step_detect(u, b, ex.level, th)
    } else {
        fused_step(u, b, ex.level, th).map(|()| false)
    };
    res.map_err(|e| OptimError::LengthMismatch {
        what: e.what,
        expected: e.expected,
        got: e.got,
    })
}

fn split_front<T>(s: &mut [T], len: usize) -> (&mut [T], &mut [T]) {
    if s.is_empty() {
        (Default::default(), Default::default())
    } else {
        s.split_at_mut(len)
    }
}

fn s_to_p(s: &[f64], n: usize) -> Vec<f64> {
    let mut p = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let mut acc = 0.0;
            for k in 0..n {
                acc += s[i * n + k] * s[j * n + k];
            }
            p[i * n + j] = acc;
        }
    }
    p
}

fn check_spd(p: &[f64], n: usize) -> Result<()> {
    let scale = p.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let tol = 64.0 * f64::EPSILON * scale * n as f64;
    for i in 0..n {
        for j in 0..i {
            if (p[i * n + j] - p[j * n + i]).abs() > tol {
                return Err(OptimError::NotSpd {
                    reason: format!("P[{i}][{j}] ≠ P[{j}][{i}]"),
                });
            }
        }
    }
    let m = faer::Mat::<f64>::from_fn(n, n, |i, j| p[i * n + j]);
    m.llt(faer::Side::Lower)
        .map(|_| ())
        .map_err(|e| OptimError::NotSpd {
            reason: format!("Cholesky failed: {e:?}"),
        })
}
