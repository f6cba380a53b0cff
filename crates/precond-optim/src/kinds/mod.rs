//! One description per optimizer kind.
//!
//! Each file here describes one kind (or a family sharing arithmetic, as Adam and AdamW) by
//! implementing [`Kind`]: the JSON keys it accepts besides the common ones, its torch defaults,
//! its validation, its state slots (names and initial values), what it prepares when the optimizer
//! is built, how its current preconditioner `P_k` is observed and how a step is dispatched to the
//! fused kernel. Config parsing ([`crate::OptimizerConfig::from_json`]), the step
//! ([`crate::Optimizer::step`]), state save/load and the C layer all ask the kind through the
//! dispatch methods on [`OptimizerKind`] generated from the registry (`registry.rs`).
//!
//! # Adding an optimizer
//!
//! 1. A new file `kinds/name.rs` with a unit struct implementing [`Kind`] (copy the closest
//!    existing kind: `adagrad.rs` is the smallest adaptive one).
//! 2. `mod name;` below, and one line in `registry.rs`:
//!    `/// doc` `Name = "json_name" => name::Name,`.
//! 3. Only if it takes a hyperparameter no kind has yet: one entry in the key table
//!    (`config/keys.rs`) and the field in [`crate::OptimizerConfig`].

pub(crate) mod adagrad;
pub(crate) mod adam;
pub(crate) mod compose;
pub(crate) mod gd;
pub(crate) mod matrix;
pub(crate) mod muon;
pub(crate) mod precond_gd;
pub(crate) mod rmsprop;
pub(crate) mod sgd;
pub(crate) mod shampoo;
pub(crate) mod soap;

use crate::config::OptimizerConfig;
use crate::error::OptimError;
use crate::error::Result;
use crate::groups::Segment;
use crate::kernel::{Buffers, SimdLevel};
use crate::kind::OptimizerKind;
use crate::matrix::MatrixPreconditioner;
use crate::registry::for_each_kind;
use crate::storage::{Geometry, Prepared, SlotSpec, Slots, StepFloat};
use compose::{RegSpec, step_segments};

/// What one step needs to know besides the buffers.
pub(crate) struct StepCtx<'a> {
    /// The part's segments of the flat buffer (sorted, in flat-buffer coordinates; the state
    /// slots hold the part's indices compactly, in the same order).
    pub(crate) segments: &'a [Segment],
    /// Top-level base learning rate (before the schedule).
    pub(crate) base_lr: f64,
    /// Steps taken before this one (`k = step + 1` is this step's number).
    pub(crate) step: u64,
    /// Compiled loop version.
    pub(crate) level: SimdLevel,
    /// rayon split length (`0`: the update's default).
    pub(crate) par_threshold: usize,
    /// Detect non-finite gradients inside the pass (policy `propagate`).
    pub(crate) propagate: bool,
    /// The part's size and shape.
    pub(crate) geo: &'a Geometry,
    /// The checking half of a checked step (write nothing; see [`compose::GuardCtx`]).
    pub(crate) guard: Option<&'a compose::GuardCtx>,
}

impl StepCtx<'_> {
    /// This step's number `k ≥ 1`.
    pub(crate) fn k(&self) -> u64 {
        self.step + 1
    }
}

/// One segment's pass: its scheduled learning rate, the step number, its regularization and how
/// the fused loop runs.
#[derive(Clone, Copy)]
pub(crate) struct SegStep<'a> {
    /// Scheduled learning rate `η` of the segment.
    pub(crate) lr: f64,
    /// Step number `k ≥ 1`.
    pub(crate) k: u64,
    /// `−1` for `maximize`, else `1`.
    pub(crate) sign: f64,
    /// How weight decay and the regularizer enter the update.
    pub(crate) reg: RegSpec,
    /// How the fused pass runs.
    pub(crate) exec: compose::Exec<'a>,
}

/// Everything the library knows about one optimizer kind (see the module docs).
pub(crate) trait Kind {
    /// JSON keys accepted besides the common ones (`optimizer`, `lr`, `weight_decay`, `maximize`,
    /// `regularization`, `groups`, `schedule`, `nonfinite`); each is defined once in
    /// `config/keys.rs`.
    const KEYS: &'static [&'static str];
    /// `weight_decay` is decoupled (`x ← x(1 − ηλ)`, intrinsic L2 (11)) rather than coupled
    /// (`g ← g + λx`, (10)).
    const DECOUPLED_WEIGHT_DECAY: bool = false;
    /// The per-element pass is arithmetic-bound (its preconditioner rule's
    /// [`crate::kernel::PrecondRule::HEAVY`]): the step and the non-finite check of its
    /// gradient are split over threads from [`crate::kernel::ParallelParams::split_bytes_heavy`].
    const HEAVY: bool = false;
    /// torch's defaults where they differ from the shared ones (`OptimizerConfig::base`).
    fn defaults(_c: &mut OptimizerConfig) {}
    /// Range checks of the kind's own keys (the common keys are checked by the config).
    fn validate(c: &OptimizerConfig) -> Result<()>;
    /// The kind preconditions a whole matrix: it needs a 2-D shape, and each group (or the top
    /// level) it runs on is one matrix.
    const MATRIX: bool = false;
    /// Per-element state slots in storage order.
    fn slots(c: &OptimizerConfig) -> Vec<SlotSpec>;
    /// Fixed-length state arrays (factors, roots, bases) stored after the per-element slots.
    fn arrays(_c: &OptimizerConfig, _geo: &Geometry) -> Vec<SlotSpec> {
        Vec::new()
    }
    /// Cross-checks between the arrays of a loaded state (called after every value was checked
    /// finite and sign-correct): relations the update keeps by construction, so that a
    /// tampered state the recursions could never produce is refused. `arrays` are in
    /// [`Kind::slots`] then [`Kind::arrays`] order; `step` is the loaded step count. The error
    /// says what does not hold, with the index.
    fn check_state(
        _c: &OptimizerConfig,
        _step: u64,
        _arrays: &[&[f64]],
        _geo: &Geometry,
    ) -> std::result::Result<(), String> {
        Ok(())
    }
    /// The current matrix preconditioner (matrix kinds only).
    fn observe_matrix<T: StepFloat>(
        c: &OptimizerConfig,
        _step: u64,
        _state: Option<&Slots<T>>,
        _geo: &Geometry,
    ) -> Result<MatrixPreconditioner> {
        Err(OptimError::Unsupported(format!(
            "`{}` has a diagonal preconditioner: use preconditioner()",
            c.optimizer.name()
        )))
    }
    /// Per-optimizer data prepared once at build (sizes checked against `n`).
    fn prepare(_c: &OptimizerConfig, _n: usize, _segments: &[Segment]) -> Result<Prepared> {
        Ok(Prepared::default())
    }
    /// Write `P_k` (learning rate outside) into `out` (length checked by the caller); `state` is
    /// `None` before the first step.
    fn observe<T: StepFloat>(
        c: &OptimizerConfig,
        _step: u64,
        _state: Option<&Slots<T>>,
        _out: &mut [f64],
    ) -> Result<()> {
        Err(OptimError::Unsupported(format!(
            "`{}` has a matrix preconditioner: use matrix_preconditioner",
            c.optimizer.name()
        )))
    }
    /// One step over the whole buffer; `Ok(true)` when the pass saw a non-finite gradient
    /// (only looked for under `propagate`). Default: one fused pass per segment.
    fn step<T: StepFloat>(
        c: &OptimizerConfig,
        ctx: &StepCtx<'_>,
        x: &mut [T],
        g: &[T],
        slots: &mut Slots<T>,
    ) -> Result<bool> {
        step_segments::<T>(
            c,
            ctx,
            Self::DECOUPLED_WEIGHT_DECAY,
            x,
            g,
            slots,
            Self::run_segment,
        )
    }
    /// One segment's fused pass (the per-element kinds).
    fn run_segment<T: StepFloat>(
        c: &OptimizerConfig,
        _s: &SegStep,
        _b: Buffers<'_, T>,
    ) -> Result<bool> {
        Err(OptimError::Unsupported(format!(
            "`{}` has no per-element pass",
            c.optimizer.name()
        )))
    }
}

macro_rules! define_dispatch {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal => $ty:path, )*) => {
        impl OptimizerKind {
            /// The kind's own JSON keys (besides the common ones).
            pub fn keys(self) -> &'static [&'static str] {
                match self { $(OptimizerKind::$variant => <$ty as Kind>::KEYS,)* }
            }
            /// Whether `weight_decay` is decoupled (AdamW) rather than coupled.
            pub fn decoupled_weight_decay(self) -> bool {
                match self { $(OptimizerKind::$variant => <$ty as Kind>::DECOUPLED_WEIGHT_DECAY,)* }
            }
            pub(crate) fn apply_defaults(self, c: &mut OptimizerConfig) {
                match self { $(OptimizerKind::$variant => <$ty as Kind>::defaults(c),)* }
            }
            pub(crate) fn validate(self, c: &OptimizerConfig) -> Result<()> {
                match self { $(OptimizerKind::$variant => <$ty as Kind>::validate(c),)* }
            }
            /// Whether the per-element pass is arithmetic-bound ([`Kind::HEAVY`]).
            pub(crate) fn heavy(self) -> bool {
                match self { $(OptimizerKind::$variant => <$ty as Kind>::HEAVY,)* }
            }
            /// Whether the kind preconditions whole matrices (needs a 2-D `shape`).
            pub fn is_matrix(self) -> bool {
                match self { $(OptimizerKind::$variant => <$ty as Kind>::MATRIX,)* }
            }
            pub(crate) fn slots(self, c: &OptimizerConfig) -> Vec<SlotSpec> {
                match self { $(OptimizerKind::$variant => <$ty as Kind>::slots(c),)* }
            }
            /// Every state array of a part: the per-element slots, then the fixed-length arrays.
            pub(crate) fn all_slots(self, c: &OptimizerConfig, geo: &Geometry) -> Vec<SlotSpec> {
                let mut v = self.slots(c);
                match self { $(OptimizerKind::$variant => v.extend(<$ty as Kind>::arrays(c, geo)),)* }
                v
            }
            pub(crate) fn check_state(
                self,
                c: &OptimizerConfig,
                step: u64,
                arrays: &[&[f64]],
                geo: &Geometry,
            ) -> std::result::Result<(), String> {
                match self { $(OptimizerKind::$variant => <$ty as Kind>::check_state(c, step, arrays, geo),)* }
            }
            pub(crate) fn observe_matrix<T: StepFloat>(
                self,
                c: &OptimizerConfig,
                step: u64,
                state: Option<&Slots<T>>,
                geo: &Geometry,
            ) -> Result<MatrixPreconditioner> {
                match self {
                    $(OptimizerKind::$variant => <$ty as Kind>::observe_matrix(c, step, state, geo),)*
                }
            }
            pub(crate) fn prepare(
                self,
                c: &OptimizerConfig,
                n: usize,
                segments: &[Segment],
            ) -> Result<Prepared> {
                match self { $(OptimizerKind::$variant => <$ty as Kind>::prepare(c, n, segments),)* }
            }
            pub(crate) fn observe<T: StepFloat>(
                self,
                c: &OptimizerConfig,
                step: u64,
                state: Option<&Slots<T>>,
                out: &mut [f64],
            ) -> Result<()> {
                match self {
                    $(OptimizerKind::$variant => <$ty as Kind>::observe(c, step, state, out),)*
                }
            }
            pub(crate) fn step<T: StepFloat>(
                self,
                c: &OptimizerConfig,
                ctx: &StepCtx<'_>,
                x: &mut [T],
                g: &[T],
                slots: &mut Slots<T>,
            ) -> Result<bool> {
                match self {
                    $(OptimizerKind::$variant => <$ty as Kind>::step(c, ctx, x, g, slots),)*
                }
            }
        }
    };
}

for_each_kind!(define_dispatch);
