//! [`Optimizer::step`]: checks, the non-finite policy, then the kind's step.

use super::{Optimizer, StepOutcome};
use crate::config::NonFinitePolicy;
use crate::error::{OptimError, Result};
use crate::kernel::{ParallelParams, first_nonfinite};
use crate::kinds::StepCtx;
use crate::storage::{StepFloat, Store};

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
        match self.step_local(params, grads) {
            Ok(mut o) => {
                o.nonfinite_index = o.nonfinite_index.map(|i| i + off);
                Ok(o)
            }
            Err(OptimError::NonFiniteGradient { index }) => {
                Err(OptimError::NonFiniteGradient { index: index + off })
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
        let k = self
            .step
            .checked_add(1)
            .ok_or(OptimError::StepCountOverflow { step: self.step })?;
        // every learning rate this step will use, checked before anything is written
        for seg in self.parts.iter().flat_map(|p| &p.segments) {
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
        let lr_top = self.lr();
        let scan_th = if self.par_threshold == 0 {
            ParallelParams::default().threshold
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
        // first step: every part's state allocated (fallibly) before any part steps, so an
        // allocation failure leaves the optimizer as it was
        let first = self.parts.iter().any(|p| matches!(p.store, Store::Empty));
        if first {
            let fresh = self
                .parts
                .iter()
                .map(|p| match p.store {
                    Store::Empty => p.alloc::<T>().map(|s| Some(T::wrap(s))),
                    _ => Ok(None),
                })
                .collect::<Result<Vec<_>>>()?;
            for (part, s) in self.parts.iter_mut().zip(fresh) {
                if let Some(s) = s {
                    part.store = s;
                }
            }
        }
        // BNP parts: their gradient copied and preconditioned (`P g`, docs/THEORY.md §6) before
        // any part steps; unless `propagate`, a non-finite preconditioned entry (a zero variance
        // with `eps = 0`, or overflow) is treated as a non-finite gradient at its index
        for part in &mut self.parts {
            let (a, e) = part.span();
            let (Some(b), Some(slots)) = (&part.bnp, T::slots_mut(&mut part.store)) else {
                continue;
            };
            let copy = &mut slots.bnp_grad;
            copy.copy_from_slice(&grads[a..e]);
            b.precondition(copy)?;
            if !propagate && let Some(i) = first_nonfinite(copy, scan_th) {
                if first {
                    // the state this first step allocated goes again: nothing changed
                    for p in &mut self.parts {
                        p.store = Store::Empty;
                    }
                }
                return match self.cfg.nonfinite {
                    NonFinitePolicy::Skip => Ok(StepOutcome {
                        applied: false,
                        step: self.step,
                        lr: lr_top,
                        nonfinite_index: Some(a + i),
                    }),
                    _ => Err(OptimError::NonFiniteGradient { index: a + i }),
                };
            }
        }
        let mut bad = false;
        for part in &mut self.parts {
            if part.bnp.is_some() {
                let (a, e) = part.span();
                let Some(slots) = T::slots_mut(&mut part.store) else {
                    return Err(OptimError::DtypeMismatch {
                        expected: "?",
                        got: T::DTYPE.name(),
                    });
                };
                let Some(b) = &part.bnp else { continue };
                let ctx = StepCtx {
                    segments: &b.local,
                    base_lr: self.base_lr,
                    step: self.step,
                    level: self.level,
                    par_threshold: self.par_threshold,
                    propagate,
                    geo: &part.geo,
                };
                // the kind steps on the preconditioned copy, in the copy's coordinates
                let copy = std::mem::take(&mut slots.bnp_grad);
                let r = part
                    .cfg
                    .optimizer
                    .step(&part.cfg, &ctx, &mut params[a..e], &copy, slots);
                slots.bnp_grad = copy;
                bad |= r?;
                continue;
            }
            let ctx = StepCtx {
                segments: &part.segments,
                base_lr: self.base_lr,
                step: self.step,
                level: self.level,
                par_threshold: self.par_threshold,
                propagate,
                geo: &part.geo,
            };
            let Some(slots) = T::slots_mut(&mut part.store) else {
                return Err(OptimError::DtypeMismatch {
                    expected: "?",
                    got: T::DTYPE.name(),
                });
            };
            bad |= part
                .cfg
                .optimizer
                .step(&part.cfg, &ctx, params, grads, slots)?;
        }
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
}
