//! What the kinds share: composing a fused update from its parts with the configured
//! regularizer, running it, observing `P_k` from a rule, and the per-segment step loop.

use super::{SegStep, StepCtx};
use crate::bound::{GuardIn, SlotRanges};
use crate::config::OptimizerConfig;
use crate::error::{OptimError, Result};
use crate::float::Float;
use crate::kernel::{
    BufferLengthError, Buffers, ElementUpdate, Fused, MAX_SLOTS, SimdLevel, check_buffers,
    default_par_threshold, dry_run, fused_step, fused_step_detect, max_abs_at,
};
use crate::momentum::MomentumRule;
use crate::precond::PrecondRule;
use crate::regularization::{CoupledL2, DecoupledL2, Elementwise, NoReg, Regularization};
use crate::storage::{Slots, StepFloat};
use std::cell::Cell;

/// How the configured L2 / regularizer of a segment enters the fused update.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RegSpec {
    None,
    Coupled(f64),
    Decoupled(f64),
    General {
        reg: Regularization,
        coupled: f64,
        decoupled: f64,
    },
}

impl RegSpec {
    /// The regularization of a segment with `weight_decay` (coupled, or decoupled for AdamW) and
    /// an extra regularizer `reg`.
    pub(crate) fn new(weight_decay: f64, decoupled_wd: bool, reg: Regularization) -> Self {
        let (coupled, decoupled) = if decoupled_wd {
            (0.0, weight_decay)
        } else {
            (weight_decay, 0.0)
        };
        if reg.is_none() {
            if coupled != 0.0 {
                RegSpec::Coupled(coupled)
            } else if decoupled != 0.0 {
                RegSpec::Decoupled(decoupled)
            } else {
                RegSpec::None
            }
        } else {
            RegSpec::General {
                reg,
                coupled,
                decoupled,
            }
        }
    }
}

/// How a fused pass runs: compiled version, rayon split length (`0`: the update's default),
/// whether the pass also detects non-finite gradients (policy `propagate`), and whether this is
/// the checking half of a checked step (`guard`: prove or dry-run, write nothing).
#[derive(Clone, Copy)]
pub(crate) struct Exec<'a> {
    pub(crate) level: SimdLevel,
    pub(crate) th: usize,
    pub(crate) detect: bool,
    pub(crate) guard: Option<&'a GuardCtx>,
}

/// The checking half of a checked step ([`crate::bound`]) for one part: what is known before
/// the pass, and the hull of the slot ranges its segments will leave.
pub(crate) struct GuardCtx {
    /// `max |g|` over the gradient the part reads.
    pub(crate) g_max: f64,
    /// The part's slot ranges now.
    pub(crate) st: SlotRanges,
    /// `[min, max]` of the auxiliary buffer.
    pub(crate) aux: (f64, f64),
    /// Hull of the ranges after the step.
    pub(crate) out: Cell<SlotRanges>,
    /// Segments checked by a dry run.
    pub(crate) dry_runs: Cell<u64>,
}

impl GuardCtx {
    pub(crate) fn new(g_max: f64, st: SlotRanges, aux: (f64, f64)) -> Self {
        GuardCtx {
            g_max,
            st,
            aux,
            out: Cell::new([(f64::INFINITY, f64::NEG_INFINITY); MAX_SLOTS]),
            dry_runs: Cell::new(0),
        }
    }
    fn merge(&self, r: SlotRanges) {
        let mut o = self.out.get();
        for (a, b) in o.iter_mut().zip(r) {
            a.0 = a.0.min(b.0);
            a.1 = a.1.max(b.1);
        }
        self.out.set(o);
    }
}

/// Run `pre` and `mom` with the segment's regularizer in one fused pass (`lr` is the learning rate
/// the decoupled and intrinsic terms use).
pub(crate) fn with_reg<T: Float, P: PrecondRule<T>, M: MomentumRule<T>>(
    s: &SegStep,
    lr: f64,
    pre: P,
    mom: M,
    b: Buffers<'_, T>,
) -> Result<bool> {
    let sign = T::from_f64(s.sign);
    let ex = s.exec;
    match s.reg {
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

fn go<T: Float, U: ElementUpdate<T>>(u: &U, b: Buffers<'_, T>, ex: Exec<'_>) -> Result<bool> {
    let len_err = |e: BufferLengthError| OptimError::LengthMismatch {
        what: e.what,
        expected: e.expected,
        got: e.got,
    };
    let th = if ex.th == 0 {
        default_par_threshold::<T, U>()
    } else {
        ex.th
    };
    if let Some(gc) = ex.guard {
        // the checking half: prove every written value finite, or find the first that is not
        check_buffers(u, &b).map_err(len_err)?;
        let inp = GuardIn {
            g_max: gc.g_max,
            x_max: U::READS_X_IN_GRAD.then(|| max_abs_at(b.x, th, ex.level)),
            aux: gc.aux,
            st: gc.st,
        };
        let r = match u.guard(&inp) {
            Some(r) => r,
            None => {
                gc.dry_runs.set(gc.dry_runs.get() + 1);
                dry_run(u, &b).map_err(|index| OptimError::NonFiniteUpdate { index })?
            }
        };
        gc.merge(r);
        return Ok(false);
    }
    let res = if ex.detect {
        fused_step_detect(u, b, ex.level, th)
    } else {
        fused_step(u, b, ex.level, th).map(|()| false)
    };
    res.map_err(len_err)
}

/// `P_k` of a rule over the state: `out[i] = p(current(aux_i, slots_i))`.
pub(crate) fn observe_with<T: Float, P: PrecondRule<T>>(pre: P, s: &Slots<T>, out: &mut [f64]) {
    let mut st = [T::ZERO; 3];
    for (i, o) in out.iter_mut().enumerate() {
        for (sj, slot) in st.iter_mut().zip(&s.s).take(P::SLOTS) {
            *sj = slot[i];
        }
        let a = if P::USES_AUX { s.aux[i] } else { T::ZERO };
        *o = pre.p(pre.current(a, &st[..P::SLOTS])).to_f64();
    }
}

fn split_front<T>(s: &mut [T], len: usize) -> (&mut [T], &mut [T]) {
    if s.is_empty() {
        (Default::default(), Default::default())
    } else {
        s.split_at_mut(len)
    }
}

/// The default step of a kind: the part's segments are sorted; peel them off the front of every
/// buffer (`params` and `grads` in flat-buffer coordinates, skipping the indices of other parts;
/// the slots compact) and run `run` on each with the segment's scheduled learning rate and
/// regularization.
pub(crate) fn step_segments<T: StepFloat>(
    c: &OptimizerConfig,
    ctx: &StepCtx<'_>,
    decoupled_wd: bool,
    params: &mut [T],
    grads: &[T],
    slots: &mut Slots<T>,
    run: fn(&OptimizerConfig, &SegStep, Buffers<'_, T>) -> Result<bool>,
) -> Result<bool> {
    let mut bad = false;
    let exec = Exec {
        level: ctx.level,
        th: ctx.par_threshold,
        detect: ctx.propagate,
        guard: ctx.guard,
    };
    let sign = if c.maximize { -1.0 } else { 1.0 };
    let [s0, s1, s2] = &mut slots.s;
    let (mut rx, mut rg, mut ra) = (params, grads, &slots.aux[..]);
    let (mut r0, mut r1, mut r2) = (&mut s0[..], &mut s1[..], &mut s2[..]);
    let mut pos = 0;
    for seg in ctx.segments {
        let len = seg.end - seg.start;
        let lr = c.schedule.lr(seg.lr.unwrap_or(ctx.base_lr), ctx.step);
        let skip = seg.start - pos;
        pos = seg.end;
        let (x, tx) = rx[skip..].split_at_mut(len);
        let (g, tg) = rg[skip..].split_at(len);
        let (aux, ta) = if ra.is_empty() {
            (ra, ra)
        } else {
            ra.split_at(len)
        };
        let (c0, t0) = split_front(r0, len);
        let (c1, t1) = split_front(r1, len);
        let (c2, t2) = split_front(r2, len);
        (rx, rg, ra, r0, r1, r2) = (tx, tg, ta, t0, t1, t2);
        let s = SegStep {
            lr,
            k: ctx.k(),
            sign,
            reg: RegSpec::new(seg.weight_decay, decoupled_wd, seg.reg),
            exec,
        };
        bad |= run(
            c,
            &s,
            Buffers {
                x,
                g,
                aux,
                slots: [c0, c1, c2],
            },
        )
        .map_err(|e| match e {
            OptimError::NonFiniteUpdate { index } => OptimError::NonFiniteUpdate {
                index: index + seg.start,
            },
            e => e,
        })?;
    }
    Ok(bad)
}
