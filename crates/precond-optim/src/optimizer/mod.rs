//! The [`Optimizer`]: one flat parameter buffer, a validated config, state, groups and schedule.
//!
//! Files by job: this one holds the type, its construction and accessors; `step.rs` the step,
//! `observe.rs` the preconditioner observation; the state snapshot, save and load live beside
//! the state format (`state/load.rs`); what differs between optimizers lives in `kinds/`.

mod bnp;
mod observe;
mod step;

pub(crate) use bnp::BnpPart;

use crate::config::OptimizerConfig;
use crate::error::{OptimError, Result};
use crate::float::Dtype;
use crate::groups::{Segment, parts as plan_parts};
use crate::kernel::SimdLevel;
use crate::storage::{Geometry, Prepared, SlotSpec, Slots, StepFloat, Store};

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
///
/// Inside, the buffer is served by *parts*: the top-level optimizer over the indices it covers,
/// and one part per group that runs its own optimizer or a matrix optimizer (Muon, Shampoo,
/// SOAP: one matrix each). Every part keeps its own state, stored compactly (its length is the
/// number of indices it covers); one step steps every part.
#[derive(Clone, Debug)]
pub struct Optimizer {
    cfg: OptimizerConfig,
    n: usize,
    base_lr: f64,
    step: u64,
    parts: Vec<Part>,
    level: SimdLevel,
    /// `0`: automatic ([`crate::kernel::default_par_threshold`] of the step's update).
    par_threshold: usize,
    /// Set when this optimizer steps one shard of a larger buffer (`crate::shard`).
    shard: Option<ShardInfo>,
    /// Segment passes whose finiteness the interval guard could not prove, so that an exact
    /// dry run checked them ([`Optimizer::dry_runs`]).
    dry_runs: u64,
}

/// Where a shard's optimizer sits in the unsharded buffer (`crate::shard`): its rank among
/// `world`, its range `start..end` of the `n_total` parameters, and for each of its parts the
/// index of the unsharded optimizer's part it is a piece of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShardInfo {
    pub(crate) rank: usize,
    pub(crate) world: usize,
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) n_total: usize,
    pub(crate) parts: Vec<usize>,
}

/// One optimizer over some segments of the buffer, with its state.
#[derive(Clone, Debug)]
pub(crate) struct Part {
    pub(crate) cfg: OptimizerConfig,
    pub(crate) segments: Vec<Segment>,
    pub(crate) group: Option<usize>,
    pub(crate) geo: Geometry,
    /// Every state array: per-element slots, then fixed-length arrays.
    pub(crate) specs: Vec<SlotSpec>,
    /// What the kind prepared at build (a fixed `P`).
    pub(crate) prepared: Prepared,
    pub(crate) store: Store,
    /// BNP of a group with `"bnp"`: its running statistics (kept from build on, in `f64`).
    pub(crate) bnp: Option<BnpPart>,
}

impl Part {
    /// Fresh state in dtype `T` ([`OptimError::OutOfMemory`] when the allocator refuses it),
    /// with the copy of the gradient that BNP preconditions for a BNP part. `page`: the page
    /// offset of the part's first parameter, where the per-element slots are placed
    /// ([`Slots::new`]; `None` when the parameters are not at hand, as for a loaded state).
    pub(crate) fn alloc<T: StepFloat>(&self, page: Option<usize>) -> Result<Slots<T>> {
        let mut s = Slots::new(&self.specs, &self.prepared, self.geo.len, page)?;
        if self.bnp.is_some() {
            s.bnp_grad = crate::storage::filled(self.geo.len, T::ZERO, "BNP gradient copy")?;
        }
        if self.own_step() {
            // parameters + every state array: the undo of a step that overflowed
            let len =
                s.s.iter()
                    .map(|v| v.len())
                    .chain(s.mats.iter().map(Vec::len))
                    .fold(self.geo.len, |acc, l| acc.saturating_add(l));
            s.backup = crate::storage::filled(len, T::ZERO, "step backup")?;
        }
        Ok(s)
    }

    /// The part's tag in the state layout: `adam`, `muon(8x4)`, `groups[1]=muon(8x4)@0..32`
    /// (a shard's ranges in unsharded coordinates: `offset` is the shard's start).
    fn tag(&self, offset: usize) -> String {
        let mut t = self.cfg.optimizer.name().to_string();
        if self.cfg.optimizer.is_matrix()
            && let Some(s) = self.geo.shape
        {
            t.push_str(&format!(
                "({}x{}{})",
                s.rows,
                s.cols,
                if s.order == crate::config::MatrixOrder::ColMajor {
                    ",F"
                } else {
                    ""
                }
            ));
        }
        if let (Some(b), Some(s)) = (&self.bnp, self.geo.shape) {
            t.push_str(&format!("+bnp({}x{})", s.rows, s.cols));
            debug_assert_eq!(b.stats.dim(), s.cols);
        }
        if let Some(g) = self.group {
            let (a, b) = (
                self.segments[0].start + offset,
                self.segments[0].end + offset,
            );
            t = format!("groups[{g}]={t}@{a}..{b}");
        }
        t
    }
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
        let mut parts = Vec::new();
        for plan in plan_parts(&cfg, n)? {
            let len = plan.segments.iter().map(|s| s.end - s.start).sum();
            let geo = Geometry {
                len,
                shape: plan.shape,
            };
            let path = plan.group.map(|g| format!("groups[{g}]"));
            let under = |e: OptimError| match &path {
                Some(p) => e.under(p),
                None => e,
            };
            let prepared = plan
                .cfg
                .optimizer
                .prepare(&plan.cfg, len, &plan.segments)
                .map_err(under)?;
            let specs = plan.cfg.optimizer.all_slots(&plan.cfg, &geo);
            let bnp = match (plan.bnp, plan.shape) {
                (Some(spec), Some(shape)) => {
                    Some(BnpPart::new(spec, shape, &plan.segments).map_err(under)?)
                }
                _ => None,
            };
            parts.push(Part {
                cfg: plan.cfg,
                segments: plan.segments,
                group: plan.group,
                geo,
                specs,
                prepared,
                store: Store::Empty,
                bnp,
            });
        }
        Ok(Optimizer {
            base_lr: cfg.lr,
            cfg,
            n,
            step: 0,
            parts,
            level: SimdLevel::detect(),
            par_threshold: 0,
            shard: None,
            dry_runs: 0,
        })
    }

    /// The optimizer of the parameters `start..end` of an unsharded optimizer of `cfg` over
    /// `n_total` parameters, as shard `rank` of `world` (`crate::shard`): each part of the
    /// unsharded optimizer clipped to the range and moved to local coordinates (parts outside
    /// dropped, a fixed diagonal `P` sliced), schedule, policy and base learning rate kept.
    /// The caller (the shard plan) guarantees the range splits no coupled part.
    pub(crate) fn new_shard(
        cfg: OptimizerConfig,
        n_total: usize,
        world: usize,
        rank: usize,
        range: std::ops::Range<usize>,
    ) -> Result<Self> {
        let full = Optimizer::new(cfg, n_total)?;
        Self::shard_of(&full, world, rank, range)
    }

    /// [`Optimizer::new_shard`] from the unsharded optimizer `full` (built once for all ranks;
    /// its state is not read).
    pub(crate) fn shard_of(
        full: &Optimizer,
        world: usize,
        rank: usize,
        range: std::ops::Range<usize>,
    ) -> Result<Self> {
        let n_total = full.n;
        let (start, end) = (range.start, range.end);
        if start > end || end > n_total {
            return Err(OptimError::LengthMismatch {
                what: "shard range end",
                expected: n_total,
                got: end,
            });
        }
        let mut parts = Vec::new();
        let mut origin = Vec::new();
        for (gi, p) in full.parts.iter().enumerate() {
            let mut before = 0; // compact index of the first kept index
            let mut segs = Vec::new();
            for s in &p.segments {
                before += s.end.min(start).saturating_sub(s.start);
                let (a, b) = (s.start.max(start), s.end.min(end));
                if a < b {
                    segs.push(Segment {
                        start: a - start,
                        end: b - start,
                        ..s.clone()
                    });
                }
            }
            if segs.is_empty() {
                continue;
            }
            let len: usize = segs.iter().map(|s| s.end - s.start).sum();
            if p.cfg.optimizer.is_matrix() && len != p.geo.len {
                return Err(OptimError::Unsupported(format!(
                    "the range {start}..{end} splits the matrix of part {gi}"
                )));
            }
            if p.bnp.is_some() && len != p.geo.len {
                return Err(OptimError::Unsupported(format!(
                    "the range {start}..{end} splits the BNP layer of part {gi}"
                )));
            }
            let mut pcfg = p.cfg.clone();
            if let Some(
                crate::config::FixedPreconditioner::DenseP(_)
                | crate::config::FixedPreconditioner::DenseS(_),
            ) = &pcfg.preconditioner
                && pcfg.optimizer == crate::config::OptimizerKind::PrecondGd
            {
                return Err(OptimError::Unsupported(
                    "sharding a dense fixed preconditioner: its product P g mixes every coordinate of its range".into(),
                ));
            }
            if let Some(crate::config::FixedPreconditioner::Diagonal(d)) = &pcfg.preconditioner {
                pcfg.preconditioner = Some(crate::config::FixedPreconditioner::Diagonal(
                    d[before..before + len].to_vec(),
                ));
            }
            let geo = Geometry {
                len,
                shape: p.geo.shape,
            };
            let prepared = pcfg.optimizer.prepare(&pcfg, len, &segs)?;
            let specs = pcfg.optimizer.all_slots(&pcfg, &geo);
            parts.push(Part {
                cfg: pcfg,
                segments: segs,
                group: p.group,
                geo,
                specs,
                prepared,
                store: Store::Empty,
                bnp: p.bnp.clone(),
            });
            origin.push(gi);
        }
        Ok(Optimizer {
            cfg: full.cfg.clone(),
            n: end - start,
            base_lr: full.base_lr,
            step: 0,
            parts,
            level: full.level,
            par_threshold: 0,
            dry_runs: 0,
            shard: Some(ShardInfo {
                rank,
                world,
                start,
                end,
                n_total,
                parts: origin,
            }),
        })
    }

    /// The shard this optimizer steps, if it is one (`crate::shard`).
    pub(crate) fn shard_info(&self) -> Option<&ShardInfo> {
        self.shard.as_ref()
    }

    /// First index of this optimizer's parameters in the unsharded buffer: the shard's start
    /// ([`crate::ShardedOptimizer`]), `0` for an ordinary optimizer. Parameter `i` of the
    /// buffers passed to [`Optimizer::step`] is unsharded parameter `i + shard_offset()`; the
    /// indices the step reports are unsharded ones.
    pub fn shard_offset(&self) -> usize {
        self.shard.as_ref().map_or(0, |s| s.start)
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
    /// How many segment passes the checked step could not prove finite by its interval
    /// enclosure ([`crate::bound`]) and checked by an exact dry run instead (one extra read of
    /// the segment's buffers each): `0` in ordinary training; non-zero for centered RMSprop
    /// (`v − ḡ²` is not provably positive), `eps = 0`, or magnitudes near the float range.
    pub fn dry_runs(&self) -> u64 {
        self.dry_runs
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
        self.parts.iter().find_map(|p| match p.store {
            Store::Empty => None,
            Store::F32(_) => Some(Dtype::F32),
            Store::F64(_) => Some(Dtype::F64),
        })
    }
    /// Which compiled loop runs (detected at build).
    pub fn simd_level(&self) -> SimdLevel {
        self.level
    }
    /// Force a loop version (for benchmarks and tests; a level the CPU lacks falls back to the
    /// best one below it, [`SimdLevel::effective`]).
    pub fn set_simd_level(&mut self, level: SimdLevel) {
        self.level = level;
    }
    /// Length from which steps are split over the calling thread and the step team's helpers
    /// (a step shorter than [`ParallelParams::wake`](crate::kernel::ParallelParams) that finds
    /// them asleep still runs on the caller alone). `0` restores the default:
    /// [`ParallelParams::split_length`](crate::kernel::ParallelParams::split_length) of the
    /// step's element type, from `split_bytes_heavy` for the adaptive rules (a square root
    /// per element) and `split_bytes` for the others, the non-finite check of the gradient
    /// split as the update.
    pub fn set_parallel_threshold(&mut self, n: usize) {
        self.par_threshold = n;
    }
    /// Forget all state (moments, accumulators, factors, step count); keeps the base learning
    /// rate and the running statistics of `"bnp"` groups (they describe the data, not the
    /// optimizer's trajectory, as a BatchNorm layer keeps its buffers when the optimizer is
    /// rebuilt).
    pub fn reset(&mut self) {
        for p in &mut self.parts {
            p.store = Store::Empty;
        }
        self.step = 0;
    }

    /// Names of the state arrays in storage order, e.g. `["exp_avg_sq", "exp_avg"]`: the top
    /// level's per-element slots (and fixed-length arrays of a matrix optimizer), then those of
    /// each group with its own part, prefixed `groups[i].` (`groups[0].momentum_buffer`).
    pub fn slot_names(&self) -> Vec<String> {
        let mut v = Vec::new();
        for p in &self.parts {
            for s in &p.specs {
                v.push(match p.group {
                    Some(g) => format!("groups[{g}].{}", s.name),
                    None => s.name.to_string(),
                });
            }
        }
        v
    }

    /// The state layout tag stored in saved states: each part's optimizer (with its shape and
    /// range for a group) and array names, parts joined by `|`, e.g. `"adam:exp_avg_sq,exp_avg"`
    /// or `"adamw:exp_avg_sq,exp_avg|groups[0]=muon(128x64)@0..8192:momentum_buffer"`.
    ///
    /// A shard's layout (`crate::shard`) starts with `shard[r/P]@a..b/n` (rank `r` of `P`, the
    /// range `a..b` of `n` parameters), then `|` and the tags of the parts it holds, their ranges
    /// in unsharded coordinates, so that a shard's state loads into that shard only.
    ///
    /// A group with `"bnp"` is tagged `groups[i]=adam+bnp(unitsxd)@a..b`, and the layout ends
    /// with `|bnp:groups[i].bnp_mean,groups[i].bnp_var,groups[i].bnp_observations` (the arrays
    /// of the running statistics, after every part's own arrays in the saved state).
    pub fn layout(&self) -> String {
        let offset = self.shard_offset();
        let bnp = self.bnp_array_names();
        let parts = self
            .parts
            .iter()
            .map(|p| {
                let names: Vec<&str> = p.specs.iter().map(|s| s.name.as_ref()).collect();
                format!("{}:{}", p.tag(offset), names.join(","))
            })
            .chain((!bnp.is_empty()).then(|| format!("bnp:{}", bnp.join(","))));
        match &self.shard {
            None => parts.collect::<Vec<_>>().join("|"),
            Some(s) => std::iter::once(format!(
                "shard[{}/{}]@{}..{}/{}",
                s.rank, s.world, s.start, s.end, s.n_total
            ))
            .chain(parts)
            .collect::<Vec<_>>()
            .join("|"),
        }
    }

    /// Read-only view of state array `j` of [`Self::slot_names`] (`None` before the first step,
    /// for another dtype, or past the end). A per-element array of the top level has one value
    /// per index it covers, in index order.
    pub fn slot<T: StepFloat>(&self, j: usize) -> Option<&[T]> {
        let mut j = j;
        for p in &self.parts {
            if j < p.specs.len() {
                return T::slots_ref(&p.store).map(|s| s.array(&p.specs, j));
            }
            j -= p.specs.len();
        }
        None
    }

    pub(crate) fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Replace step count, base learning rate and every part's state at once (state loading;
    /// checked by the caller).
    pub(crate) fn replace_state(&mut self, stores: Vec<Store>, step: u64, base_lr: f64) {
        for (p, s) in self.parts.iter_mut().zip(stores) {
            p.store = s;
        }
        self.step = step;
        self.base_lr = base_lr;
    }
}
