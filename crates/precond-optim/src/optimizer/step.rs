//! [`Optimizer::step`]: checks, the non-finite policy, then the kind's step.

use super::{Optimizer, Part, StepOutcome};
use crate::config::NonFinitePolicy;
use crate::error::{OptimError, Result};
use crate::kernel::{MAX_SLOTS, ParallelParams, first_nonfinite, max_abs_at, min_max, scan_max};
use crate::kinds::StepCtx;
use crate::kinds::compose::GuardCtx;
use crate::storage::{Slots, StepFloat, Store};

impl Optimizer {
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
    /// update runs as torch's does and the outcome reports the first non-finite index),
    /// [`OptimError::StepCountOverflow`] (the counter is at `u64::MAX`),
    /// [`OptimError::InvalidLearningRate`] (a schedule drove some group's learning rate to a
    /// non-finite or negative value).
    ///
    /// Unless `propagate`, a step never writes a NaN or an infinity made from finite inputs
    /// ([`OptimError::NonFiniteUpdate`], or a skipped step under `skip`; RELIABILITY.md): the per-element parts first prove their update finite by evaluating it
    /// on intervals ([`crate::bound`]: `max |g|` from the pre-scan, the state's ranges tracked
    /// from step to step, `max |x|` when the regularizer reads `x`), falling back to an exact
    /// dry run over the buffers where the enclosure is not enough, before anything is written;
    /// a matrix group or a dense `P` saves its parameters and state, steps, and is undone
    /// (with every part before it) when it left a non-finite value where there was none.
    ///
    /// A group with `"bnp"` ([`crate::ParamGroup::bnp`]) steps its optimizer on a copy of its
    /// gradient preconditioned by [`crate::bnp_precondition`] with the group's running
    /// statistics (docs/THEORY.md §6); the copy is allocated at the first step with the state.
    /// The raw gradient is scanned first; the preconditioned copy is scanned too (unless
    /// `propagate`), a non-finite entry there counting as a non-finite gradient at its index.
    ///
    /// The optimizer of a shard (`crate::shard`) reports every index (`nonfinite_index`,
    /// [`OptimError::NonFiniteGradient`], [`OptimError::InvalidLearningRate`]'s `start`) in
    /// unsharded coordinates: the local index plus [`Optimizer::shard_offset`].
    pub fn step<T: StepFloat>(&mut self, params: &mut [T], grads: &[T]) -> Result<StepOutcome> {
        let off = self.shard_offset();
        // A long step of elementwise parts runs on the calling thread, its passes (the
        // pre-scan, each part's update) split with the step team (`crate::team`: helpers that
        // stay awake between steps, the caller never sleeps). One with matrix or BNP parts
        // runs on the rayon pool as a whole (their faer products and joins are then
        // worker-to-worker): one hand-off from the caller's thread instead of one locked,
        // sleeping `rayon::join` from outside the pool per pass.
        let on_pool = self.n >= ON_POOL_MIN
            && rayon::current_num_threads() > 1
            && rayon::current_thread_index().is_none()
            && self
                .parts
                .iter()
                .any(|p| p.cfg.optimizer.is_matrix() || p.bnp.is_some());
        let r = if on_pool {
            rayon::scope(|_| self.step_local(params, grads))
        } else {
            self.step_local(params, grads)
        };
        match r {
            Ok(mut o) => {
                o.nonfinite_index = o.nonfinite_index.map(|i| i + off);
                Ok(o)
            }
            Err(OptimError::NonFiniteGradient { index }) => {
                Err(OptimError::NonFiniteGradient { index: index + off })
            }
            Err(OptimError::NonFiniteUpdate { index }) => {
                Err(OptimError::NonFiniteUpdate { index: index + off })
            }
            Err(OptimError::InvalidLearningRate { lr, step, start }) => {
                Err(OptimError::InvalidLearningRate {
                    lr,
                    step,
                    start: start + off,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// [`Optimizer::step`] with indices local to `params`.
    ///
    /// The path every step takes stays in this function; what only some steps need (the first
    /// step's allocation, BNP parts, the checking half of a checked step, parts with their own
    /// step routine) is in functions of its own, so that this one's stack frame, which a long
    /// step's pass evicts from the L1 cache before the next step, stays small (the function
    /// whole reserved 1200 bytes of stack).
    fn step_local<T: StepFloat>(&mut self, params: &mut [T], grads: &[T]) -> Result<StepOutcome> {
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
        #[expect(
            clippy::unnecessary_lazy_evaluations,
            reason = "built eagerly, the error is dropped on every step's path (callgrind: 20 of \
                      1165 instructions of a 16-element SGD step through the C ABI)"
        )]
        let k = self
            .step
            .checked_add(1)
            .ok_or_else(|| OptimError::StepCountOverflow { step: self.step })?;
        // every learning rate this step will use, checked before anything is written
        for part in &self.parts {
            for seg in &part.segments {
                let lr = self
                    .cfg
                    .schedule
                    .lr(seg.lr.unwrap_or(self.base_lr), self.step);
                if !(lr.is_finite() && lr >= 0.0) {
                    return Err(OptimError::InvalidLearningRate {
                        lr,
                        step: k,
                        start: seg.start,
                    });
                }
            }
        }
        // the gradient's check splits as the update does (each thread then updates what it
        // has just scanned)
        let scan_th = if self.par_threshold == 0 {
            ParallelParams::current().split_length::<T>(self.cfg.optimizer.heavy())
        } else {
            self.par_threshold
        };
        let propagate = self.cfg.nonfinite == NonFinitePolicy::Propagate;
        // the pre-scan: every gradient entry finite, and `max |g|` for the guard
        let mut g_max = f64::INFINITY;
        if !propagate {
            match scan_max(grads, scan_th) {
                Ok(m) => g_max = m,
                Err(index) => return self.refuse(index),
            }
        }
        // first step: every part's state allocated (fallibly) before any part steps, so an
        // allocation failure leaves the optimizer as it was; on a refusal after this point the
        // state it allocated goes again (`forget_fresh`)
        let first = self.parts.iter().any(|p| matches!(p.store, Store::Empty));
        if first {
            self.allocate_state::<T>(params)?;
        }
        if self.parts.iter().any(|p| p.bnp.is_some())
            && let Some(r) = self.precondition_bnp::<T>(grads, propagate, scan_th, first)
        {
            return r;
        }
        let ctx = PartCtx {
            base_lr: self.base_lr,
            step: self.step,
            level: self.level,
            par_threshold: self.par_threshold,
            propagate,
        };
        if !propagate && let Some(r) = self.prove_parts(&ctx, params, grads, g_max, scan_th, first)
        {
            return r;
        }
        let mut bad = false;
        // parts with their own step routine (matrix kinds, a dense `P`) first
        if self.parts.iter().any(Part::own_step) {
            match self.step_own_parts(&ctx, params, grads, first) {
                Ok(b) => bad = b,
                Err(r) => return r,
            }
        }
        // then the per-element parts, proven finite above
        for part in &mut self.parts {
            if part.own_step() {
                continue;
            }
            bad |= step_part(part, &ctx, params, grads, None)?;
            if let Some(slots) = T::slots_mut(&mut part.store) {
                slots.ranges = slots.pending.take();
            }
        }
        // the learning rate of this step (the schedule's at the count before it)
        let lr = self.lr();
        self.step = k;
        Ok(StepOutcome {
            applied: true,
            step: k,
            lr,
            // the fused pass only knows "some entry" (rare): find the first one afterwards
            nonfinite_index: if bad {
                first_nonfinite(grads, scan_th)
            } else {
                None
            },
        })
    }

    /// A step refused for a non-finite gradient entry at `index` (or a non-finite update under
    /// `skip`): the skipped step's outcome under `skip`, else the error. Nothing has changed.
    fn refuse(&self, index: usize) -> Result<StepOutcome> {
        match self.cfg.nonfinite {
            NonFinitePolicy::Skip => Ok(StepOutcome {
                applied: false,
                step: self.step,
                lr: self.lr(),
                nonfinite_index: Some(index),
            }),
            _ => Err(OptimError::NonFiniteGradient { index }),
        }
    }

    /// A part's failed step as the step's result: a non-finite update under `skip` is a
    /// skipped step ([`Self::refuse`]), anything else the error.
    fn refuse_error(&self, e: OptimError) -> Result<StepOutcome> {
        match e {
            OptimError::NonFiniteUpdate { index }
                if self.cfg.nonfinite == NonFinitePolicy::Skip =>
            {
                self.refuse(index)
            }
            e => Err(e),
        }
    }

    /// The state a first step allocated dropped again (`first`: this step allocated it), when
    /// the step is refused after the allocation.
    fn forget_fresh(&mut self, first: bool) {
        if first {
            for p in &mut self.parts {
                p.store = Store::Empty;
            }
        }
    }

    /// The first step's state: every part's slots allocated (fallibly) before any is kept, so
    /// that an allocation failure leaves the optimizer as it was.
    #[inline(never)]
    fn allocate_state<T: StepFloat>(&mut self, params: &[T]) -> Result<()> {
        let fresh = self
            .parts
            .iter()
            .map(|p| match p.store {
                Store::Empty => {
                    // the slots at the page offset of the part's first parameter
                    // (`storage::Aligned`: no 4 KiB aliasing between them and `x`)
                    let first = p.segments.first().map_or(0, |s| s.start);
                    let page = params
                        .get(first..)
                        .map(|x| x.as_ptr() as usize % crate::storage::PAGE);
                    p.alloc::<T>(page).map(|s| Some(T::wrap(s)))
                }
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        for (part, s) in self.parts.iter_mut().zip(fresh) {
            if let Some(s) = s {
                part.store = s;
            }
        }
        Ok(())
    }

    /// BNP parts: their gradient copied and preconditioned (`P g`, docs/THEORY.md §6) before
    /// any part steps; unless `propagate`, a non-finite preconditioned entry (a zero variance
    /// with `eps = 0`, or overflow) is treated as a non-finite gradient at its index. `Some`:
    /// the step ends with this result (the fresh state dropped when it was refused).
    #[inline(never)]
    fn precondition_bnp<T: StepFloat>(
        &mut self,
        grads: &[T],
        propagate: bool,
        scan_th: usize,
        first: bool,
    ) -> Option<Result<StepOutcome>> {
        for pi in 0..self.parts.len() {
            let part = &mut self.parts[pi];
            if part.bnp.is_none() {
                continue;
            }
            let (a, e) = part.span();
            let (Some(b), Some(slots)) = (&part.bnp, T::slots_mut(&mut part.store)) else {
                continue;
            };
            let copy = &mut slots.bnp_grad;
            copy.copy_from_slice(&grads[a..e]);
            if let Err(err) = b.precondition(copy) {
                return Some(Err(err));
            }
            if !propagate && let Some(i) = first_nonfinite(copy, scan_th) {
                self.forget_fresh(first);
                return Some(self.refuse(a + i));
            }
        }
        None
    }

    /// The checking half of a checked step: every per-element part proves, by an interval
    /// enclosure of its update or an exact dry run, that it writes only finite values
    /// ([`crate::bound`]); nothing is written. `Some`: the step ends with this result (the
    /// fresh state dropped).
    #[inline(never)]
    fn prove_parts<T: StepFloat>(
        &mut self,
        ctx: &PartCtx,
        params: &mut [T],
        grads: &[T],
        g_max: f64,
        scan_th: usize,
        first: bool,
    ) -> Option<Result<StepOutcome>> {
        for pi in 0..self.parts.len() {
            let part = &mut self.parts[pi];
            if part.own_step() {
                continue;
            }
            let Some(slots) = T::slots_mut(&mut part.store) else {
                return Some(Err(dtype_lost::<T>()));
            };
            let st = *slots.ranges.get_or_insert_with(|| {
                let mut r = [(0.0, 0.0); MAX_SLOTS];
                for (rj, v) in r.iter_mut().zip(&slots.s) {
                    if !v.is_empty() {
                        *rj = min_max(v);
                    }
                }
                r
            });
            let aux = *slots.aux_range.get_or_insert_with(|| {
                if slots.aux.is_empty() {
                    (0.0, 0.0)
                } else {
                    min_max(&slots.aux)
                }
            });
            let gm = if part.bnp.is_some() {
                max_abs_at(&slots.bnp_grad, scan_th, self.level)
            } else {
                g_max
            };
            let gc = GuardCtx::new(gm, st, aux);
            let r = step_part(part, ctx, params, grads, Some(&gc));
            self.dry_runs += gc.dry_runs.get();
            if let Err(e) = r {
                self.forget_fresh(first);
                return Some(self.refuse_error(e));
            }
            if let Some(slots) = T::slots_mut(&mut self.parts[pi].store) {
                slots.pending = Some(gc.out.get());
            }
        }
        None
    }

    /// The parts with their own step routine (matrix kinds, a dense `P`): each saves its
    /// parameters and state, steps, and is undone (with the ones before it) when it left a
    /// non-finite value where there was none (unless `propagate`). `Ok`: whether a non-finite
    /// gradient entry was seen (`propagate`); `Err`: the step ends with this result.
    #[inline(never)]
    fn step_own_parts<T: StepFloat>(
        &mut self,
        ctx: &PartCtx,
        params: &mut [T],
        grads: &[T],
        first: bool,
    ) -> std::result::Result<bool, Result<StepOutcome>> {
        let propagate = ctx.propagate;
        let mut bad = false;
        for pi in 0..self.parts.len() {
            if !self.parts[pi].own_step() {
                continue;
            }
            if !propagate {
                self.parts[pi].save::<T>(params);
            }
            let r = step_part(&mut self.parts[pi], ctx, params, grads, None);
            let r = match r {
                Ok(b) if !propagate => match self.parts[pi].verify::<T>(params) {
                    Some(index) => Err(OptimError::NonFiniteUpdate { index }),
                    None => Ok(b),
                },
                r => r,
            };
            match r {
                Ok(b) => bad |= b,
                Err(e) => {
                    if !propagate {
                        for p in self.parts[..=pi].iter_mut().filter(|p| p.own_step()) {
                            p.restore(params);
                        }
                        self.forget_fresh(first);
                    }
                    return Err(self.refuse_error(e));
                }
            }
        }
        Ok(bad)
    }
}

/// Length from which a step with matrix or BNP parts runs on the rayon pool as a whole (the
/// former default split length, `2^18`, measured with the hand-off to the pool).
const ON_POOL_MIN: usize = 1 << 18;

/// What every part's step shares.
struct PartCtx {
    base_lr: f64,
    step: u64,
    level: crate::kernel::SimdLevel,
    par_threshold: usize,
    propagate: bool,
}

fn dtype_lost<T: StepFloat>() -> OptimError {
    OptimError::DtypeMismatch {
        expected: "?",
        got: T::DTYPE.name(),
    }
}

/// One part's step (or, with `guard`, its checking half): a BNP part steps its optimizer on its
/// preconditioned gradient copy, in the copy's coordinates; indices come back in the buffer's.
#[inline(always)]
fn step_part<T: StepFloat>(
    part: &mut Part,
    pc: &PartCtx,
    params: &mut [T],
    grads: &[T],
    guard: Option<&GuardCtx>,
) -> Result<bool> {
    let span = part.span();
    let Part {
        cfg,
        segments,
        geo,
        store,
        bnp,
        ..
    } = part;
    let Some(slots) = T::slots_mut(store) else {
        return Err(dtype_lost::<T>());
    };
    let mk = |segments| StepCtx {
        segments,
        base_lr: pc.base_lr,
        step: pc.step,
        level: pc.level,
        par_threshold: pc.par_threshold,
        propagate: pc.propagate,
        geo,
        guard,
    };
    if let Some(b) = bnp {
        let (a, e) = span;
        let ctx = mk(&b.local);
        let copy = std::mem::take(&mut slots.bnp_grad);
        let r = cfg
            .optimizer
            .step(cfg, &ctx, &mut params[a..e], &copy, slots);
        slots.bnp_grad = copy;
        return r.map_err(|e| match e {
            OptimError::NonFiniteUpdate { index } => {
                OptimError::NonFiniteUpdate { index: index + a }
            }
            e => e,
        });
    }
    let ctx = mk(segments);
    cfg.optimizer.step(cfg, &ctx, params, grads, slots)
}

impl Part {
    /// The part steps by its own routine (a matrix kind or a dense `P`), not by fused
    /// per-element passes: it is checked by saving, stepping and verifying (undone on failure).
    pub(crate) fn own_step(&self) -> bool {
        self.cfg.optimizer.is_matrix() || self.prepared.dense_p.is_some()
    }

    /// Copy the part's parameters and state into its backup (sized at allocation).
    fn save<T: StepFloat>(&mut self, params: &[T]) {
        let (a, e) = self.span();
        let Some(slots) = T::slots_mut(&mut self.store) else {
            return;
        };
        let Slots {
            s, mats, backup, ..
        } = slots;
        let mut off = 0;
        for src in std::iter::once(&params[a..e])
            .chain(s.iter().map(|v| &v[..]))
            .chain(mats.iter().map(Vec::as_slice))
        {
            if off + src.len() > backup.len() {
                return;
            }
            backup[off..off + src.len()].copy_from_slice(src);
            off += src.len();
        }
    }

    /// Put back what [`Part::save`] saved.
    fn restore<T: StepFloat>(&mut self, params: &mut [T]) {
        let (a, e) = self.span();
        let Some(slots) = T::slots_mut(&mut self.store) else {
            return;
        };
        let Slots {
            s, mats, backup, ..
        } = slots;
        let mut off = 0;
        for dst in std::iter::once(&mut params[a..e])
            .chain(s.iter_mut().map(|v| &mut v[..]))
            .chain(mats.iter_mut().map(Vec::as_mut_slice))
        {
            if off + dst.len() > backup.len() {
                return;
            }
            dst.copy_from_slice(&backup[off..off + dst.len()]);
            off += dst.len();
        }
    }

    /// After the part's step: the first index whose parameter is not finite although it was
    /// before, else the part's start when some state value is not finite, else `None`.
    fn verify<T: StepFloat>(&mut self, params: &[T]) -> Option<usize> {
        let (a, e) = self.span();
        let slots = T::slots_mut(&mut self.store)?;
        let old = &slots.backup;
        // the vectorized scan first; the element-wise comparison only when it finds something
        if first_nonfinite(&params[a..e], usize::MAX).is_some()
            && let Some(i) = params[a..e]
                .iter()
                .zip(old.iter())
                .position(|(n, o)| o.is_finite() && !n.is_finite())
        {
            return Some(a + i);
        }
        let state_bad = slots
            .s
            .iter()
            .map(|v| &v[..])
            .chain(slots.mats.iter().map(Vec::as_slice))
            .any(|v| first_nonfinite(v, usize::MAX).is_some());
        state_bad.then_some(a)
    }
}
