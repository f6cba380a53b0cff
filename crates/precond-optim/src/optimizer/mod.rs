//! The [`Optimizer`]: one flat parameter buffer, a validated config, state, groups and schedule.
//!
//! Files by job: this one holds the type, its construction and accessors; `step.rs` the step,
//! `observe.rs` the preconditioner observation; the state snapshot, save and load live beside
//! the state format (`state/load.rs`); what differs between optimizers lives in `kinds/`.

mod observe;
mod step;

use crate::config::OptimizerConfig;
use crate::error::{OptimError, Result};
use crate::float::Dtype;
use crate::groups::{Segment, segments};
use crate::kernel::SimdLevel;
use crate::storage::{Prepared, Slots, StepFloat, Store};

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
    /// `0`: automatic ([`crate::kernel::default_par_threshold`] of the step's update).
    par_threshold: usize,
    /// What the kind prepared at build (a fixed `P`).
    prepared: Prepared,
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
        let segments = segments(&cfg, n)?;
        let prepared = cfg.optimizer.prepare(&cfg, n, &segments)?;
        Ok(Optimizer {
            base_lr: cfg.lr,
            cfg,
            n,
            segments,
            step: 0,
            store: Store::Empty,
            level: SimdLevel::detect(),
            par_threshold: 0,
            prepared,
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
    /// [`ParallelParams::threshold_heavy`](crate::kernel::ParallelParams) for the adaptive rules (a square root per element) and
    /// [`ParallelParams::threshold`](crate::kernel::ParallelParams) for the others and for the non-finite check of the gradient.
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
        self.cfg
            .optimizer
            .slots(&self.cfg)
            .iter()
            .map(|s| s.name)
            .collect()
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

    /// Fresh state in dtype `T`.
    pub(crate) fn alloc<T: StepFloat>(&self) -> Slots<T> {
        Slots::new(&self.cfg.optimizer.slots(&self.cfg), &self.prepared, self.n)
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Replace step count, base learning rate and state at once (state loading; checked by the
    /// caller).
    pub(crate) fn replace_state(&mut self, store: Store, step: u64, base_lr: f64) {
        self.store = store;
        self.step = step;
        self.base_lr = base_lr;
    }
}
