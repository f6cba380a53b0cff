//! Sharded optimizer state (ZeRO stage 1): each of `world` ranks steps one contiguous range of
//! the flat parameter vector with only that range's optimizer state.
//!
//! Data-parallel training with ZeRO-1 (DeepSpeed's stage 1): the gradients are reduce-scattered
//! so that rank `r` holds the summed gradient of its range `a_r..b_r`, rank `r` steps
//! `x[a_r..b_r]` with a [`ShardedOptimizer`], and the parameters are all-gathered. Optimizer
//! state per rank is about `1/world` of the unsharded one. This module knows nothing of the
//! communication; it gives the partition ([`ShardPlan`]), the local step, and the conversions
//! between shard states and the unsharded state ([`assemble_state`], [`split_state`]) so that a
//! checkpoint written with one world size resumes with another.
//!
//! # Exactness
//!
//! A shard's optimizer is the unsharded optimizer restricted to its range: each part (the
//! top-level optimizer, each group with its own or a matrix optimizer) clipped to the range and
//! moved to local coordinates, with the same schedule, non-finite policy, base learning rate and
//! step count. Every per-element update reads only its own element (the fused kernels use no
//! FMA that LLVM might place differently in the vector body and the scalar tail: the baseline
//! and AVX2 loops give the same bits, so the position of an element in its slice does not
//! matter), and a matrix optimizer (Muon, Shampoo, SOAP) always lies whole in one shard. So a
//! shard's step writes, bit for bit, what the unsharded step writes on those coordinates (the
//! tests check this for every kind, `f32` and `f64`, 1 to 5 shards).
//!
//! # Non-finite gradients
//!
//! A shard sees only its own range of the gradient. With the `"error"` and `"skip"` policies
//! the ranks must agree on finiteness globally before stepping: each rank tests its range
//! ([`first_nonfinite`]), the flags are reduced (a logical OR, or a min of the global indices),
//! and then either every rank steps or none does. A shard that steps on its own decision while
//! another skips or errors leaves the step counts, and the trajectory, out of step. Under
//! `"propagate"` every shard steps and reports the first non-finite index of its range
//! (in unsharded coordinates); the global first one is the minimum over ranks.

use crate::config::{FixedPreconditioner, OptimizerConfig};
use crate::error::{OptimError, Result};
use crate::kernel::ParallelParams;
use crate::optimizer::{Optimizer, StepOutcome};
use crate::state::OptimizerState;
use crate::storage::StepFloat;
use std::ops::Range;

/// A partition of the flat parameter vector `0..n` into `world` contiguous ranges, in rank
/// order, such that nothing that couples coordinates is split.
///
/// # The rule
///
/// The *units* that cannot be split are the ranges of the matrix parts (Muon, Shampoo, SOAP: a
/// group with a matrix optimizer, or the top level as one matrix) and of the `"bnp"` groups
/// (BNP's `P g` mixes a unit's weights and bias); every other index may go to any rank.
/// ZeRO-1 shards the optimizer *state*, so the plan balances state values, not elements: each
/// index carries the state values its part keeps per element (Adam 2, SGD with momentum 1,
/// plain SGD 0), a unit also its fixed-length arrays (Shampoo's factors and roots, SOAP's
/// bases). With `S` the unsharded state and `S_r = ⌊r·S/world⌋`, the boundary between rank
/// `r − 1` and rank `r` is where the cumulative state reaches `S_r`, rounded down inside a
/// per-element run and moved to the nearer end (by state, the start on a tie) of a unit it
/// falls strictly inside. Hence every rank holds at most `S/world` plus the largest unit's state
/// plus one element's (the "unsharded state / P plus at most one group" of ZeRO-1 with whole
/// matrix groups). With a single per-element optimizer the boundaries are exactly
/// `⌊r·n/world⌋`; without any state (plain SGD) the elements are balanced instead.
/// Boundaries are non-decreasing, so ranges may be empty (more ranks than units).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPlan {
    n: usize,
    ranges: Vec<Range<usize>>,
}

impl ShardPlan {
    /// Up to this many ranks are always accepted; more only up to one per parameter (the plan
    /// holds one range per rank: its memory stays within that of the parameters).
    pub const MIN_WORLD_LIMIT: usize = 1 << 16;

    /// The balanced partition of `0..n` over `world` ranks for `cfg` (see the type's docs for
    /// the rule). Errors: [`OptimError::Config`] for `world == 0` or
    /// `world > max(n, MIN_WORLD_LIMIT)` (key `world`) or `n == 0` (key `n_params`) and any error
    /// of
    /// building the unsharded optimizer ([`OptimizerConfig::build`]); [`OptimError::Unsupported`]
    /// for a dense fixed preconditioner (`precond_gd` with `{"P"}` or `{"S"}`): its product
    /// `P g` mixes every coordinate of its range, so a shard cannot step without the whole
    /// gradient (a diagonal `P` shards like any per-element optimizer).
    pub fn new(cfg: &OptimizerConfig, n: usize, world: usize) -> Result<ShardPlan> {
        if world == 0 {
            return Err(OptimError::config("world", "must be ≥ 1, got 0"));
        }
        if n == 0 {
            return Err(OptimError::config(
                "n_params",
                "must be ≥ 1: there is nothing to shard",
            ));
        }
        if world > n.max(Self::MIN_WORLD_LIMIT) {
            return Err(OptimError::config(
                "world",
                format!(
                    "{world} ranks for {n} parameters: at most max(n_params, {}) ranks (the plan holds one range per rank)",
                    Self::MIN_WORLD_LIMIT
                ),
            ));
        }
        // refused before building: the build would check a dense `P` positive definite, O(n³)
        let dense = |c: &OptimizerConfig| {
            c.optimizer == crate::config::OptimizerKind::PrecondGd
                && matches!(
                    c.preconditioner,
                    Some(FixedPreconditioner::DenseP(_) | FixedPreconditioner::DenseS(_))
                )
        };
        let own = cfg
            .groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.optimizer.as_deref().filter(|c| dense(c)).map(|_| i));
        if let Some(where_) = (dense(cfg).then_some(None)).or_else(|| own.map(Some).next()) {
            return Err(OptimError::Unsupported(format!(
                "sharding a dense fixed preconditioner{}: its product P g mixes every coordinate of its range, so no shard can step without the whole gradient",
                where_.map_or_else(String::new, |g| format!(" (groups[{g}])"))
            )));
        }
        let full = cfg.build(n)?;
        // the pieces of the vector, each with the optimizer-state values it holds: `k` per
        // element (per-element slots) plus, for a unit, its fixed-length arrays
        let mut pieces: Vec<Piece> = Vec::new();
        for p in full.parts() {
            if dense(&p.cfg) {
                return Err(OptimError::Unsupported(format!(
                    "sharding a dense fixed preconditioner{}: its product P g mixes every coordinate of its range, so no shard can step without the whole gradient",
                    p.group
                        .map_or_else(String::new, |g| format!(" (groups[{g}])"))
                )));
            }
            let unit = p.cfg.optimizer.is_matrix() || p.bnp.is_some();
            let k = p.specs.iter().filter(|s| s.len.is_none()).count() as u128;
            let fixed: u128 = p
                .specs
                .iter()
                .filter_map(|s| s.len)
                .map(|l| l as u128)
                .sum::<u128>();
            for sg in &p.segments {
                pieces.push(Piece {
                    start: sg.start,
                    end: sg.end,
                    k,
                    fixed: if unit { fixed } else { 0 },
                    unit,
                });
            }
        }
        pieces.sort_by_key(|q| q.start);
        let weight = |q: &Piece| q.k * (q.end - q.start) as u128 + q.fixed;
        let mut total: u128 = pieces.iter().map(weight).sum();
        if total == 0 {
            // no optimizer state at all (plain SGD, GD): balance the elements
            for q in &mut pieces {
                q.k = 1;
            }
            total = n as u128;
        }
        let mut ranges = Vec::with_capacity(world);
        let mut prev = 0;
        for r in 1..=world {
            let b = if r == world {
                n
            } else {
                boundary(&pieces, r as u128 * total / world as u128, n)
            };
            let b = b.max(prev);
            ranges.push(prev..b);
            prev = b;
        }
        Ok(ShardPlan { n, ranges })
    }

    /// Number of parameters of the unsharded vector.
    pub fn n_params(&self) -> usize {
        self.n
    }

    /// Number of ranks.
    pub fn world(&self) -> usize {
        self.ranges.len()
    }

    /// The range of rank `rank` (`rank < world`); the empty range `n..n` for any other rank.
    pub fn range(&self, rank: usize) -> Range<usize> {
        self.ranges.get(rank).cloned().unwrap_or(self.n..self.n)
    }

    /// Every rank's range, in rank order (contiguous, covering `0..n`).
    pub fn ranges(&self) -> &[Range<usize>] {
        &self.ranges
    }
}

/// The optimizer of one rank under ZeRO-1: an ordinary [`Optimizer`] over the rank's range
/// `a..b` of a [`ShardPlan`] (see the module docs), whose step on `x[a..b]`, `g[a..b]` is
/// bitwise the unsharded step on those coordinates, and whose state holds only that range.
#[derive(Clone, Debug)]
pub struct ShardedOptimizer {
    plan: ShardPlan,
    rank: usize,
    opt: Optimizer,
}

impl ShardedOptimizer {
    /// Rank `rank`'s optimizer of the balanced plan [`ShardPlan::new`]`(cfg, n, world)`.
    /// Errors: those of [`ShardPlan::new`]; [`OptimError::Config`] (key `rank`) for
    /// `rank ≥ world`.
    pub fn new(cfg: &OptimizerConfig, n: usize, world: usize, rank: usize) -> Result<Self> {
        let plan = ShardPlan::new(cfg, n, world)?;
        Self::from_plan(cfg, plan, rank)
    }

    /// Rank `rank`'s optimizer of `plan` (a plan of this `cfg`: its ranges must split no matrix
    /// part). Errors: [`OptimError::Config`] (key `rank`) for `rank ≥ world`; the config's
    /// build errors; [`OptimError::Unsupported`] for a plan that splits a matrix part (made
    /// for another config) or a dense fixed preconditioner.
    pub fn from_plan(cfg: &OptimizerConfig, plan: ShardPlan, rank: usize) -> Result<Self> {
        if rank >= plan.world() {
            return Err(OptimError::config(
                "rank",
                format!("must be < world = {}, got {rank}", plan.world()),
            ));
        }
        let opt = Optimizer::new_shard(cfg.clone(), plan.n, plan.world(), rank, plan.range(rank))?;
        Ok(ShardedOptimizer { plan, rank, opt })
    }

    /// The partition.
    pub fn plan(&self) -> &ShardPlan {
        &self.plan
    }

    /// This shard's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// This shard's range of the unsharded vector.
    pub fn range(&self) -> Range<usize> {
        self.plan.range(self.rank)
    }

    /// One step of this shard: `params` and `grads` are the local slices `x[a..b]`, `g[a..b]`
    /// of [`Self::range`]. Bitwise the unsharded [`Optimizer::step`] on those coordinates; the
    /// same errors, with every index (`nonfinite_index`, [`OptimError::NonFiniteGradient`],
    /// [`OptimError::InvalidLearningRate`]'s `start`) in unsharded coordinates. An empty shard
    /// takes empty slices and still counts the step. See the module docs for the non-finite
    /// policies (the ranks must agree before stepping).
    pub fn step<T: StepFloat>(&mut self, params: &mut [T], grads: &[T]) -> Result<StepOutcome> {
        self.opt.step(params, grads)
    }

    /// Steps taken (equal on every rank that stepped the same calls).
    pub fn step_count(&self) -> u64 {
        self.opt.step_count()
    }

    /// The top-level learning rate the next step uses (base learning rate through the schedule).
    pub fn lr(&self) -> f64 {
        self.opt.lr()
    }

    /// Set the top-level base learning rate (see [`Optimizer::set_lr`]); every rank must set
    /// the same value.
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.opt.set_lr(lr)
    }

    /// The local optimizer (`n_params` is the range's length; its layout names the shard).
    pub fn optimizer(&self) -> &Optimizer {
        &self.opt
    }

    /// The local optimizer, mutable (SIMD level, parallel threshold, `P_k` observation).
    pub fn optimizer_mut(&mut self) -> &mut Optimizer {
        &mut self.opt
    }

    /// The local optimizer, by value: an ordinary [`Optimizer`] over the range whose step,
    /// state, save and load behave as this shard's (its layout names the shard, its indices are
    /// unsharded ones). What the C ABI's shard handles hold.
    pub fn into_optimizer(self) -> Optimizer {
        self.opt
    }

    /// This shard's state; its layout starts with `shard[r/P]@a..b/n` (see
    /// [`Optimizer::layout`]), so it loads into this shard of this plan only.
    pub fn state(&self) -> OptimizerState {
        self.opt.state()
    }

    /// Load a state of this shard (from [`Self::state`] or [`split_state`]); every check of
    /// [`Optimizer::load`], the layout naming the rank, range and size. On error nothing changes.
    pub fn load(&mut self, st: &OptimizerState) -> Result<()> {
        self.opt.load(st)
    }

    /// [`Self::state`] as bytes ([`OptimizerState::to_bytes`]).
    pub fn save_state(&self) -> Vec<u8> {
        self.opt.save_state()
    }

    /// Load bytes of [`Self::save_state`]; on error nothing changes.
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<()> {
        self.opt.load_state(bytes)
    }
}

/// Index of the first NaN or infinite entry of `g` (local to the slice), if any: what each rank
/// tests before a step under the `"error"` and `"skip"` policies (see the module docs).
pub fn first_nonfinite<T: StepFloat>(g: &[T]) -> Option<usize> {
    crate::kernel::first_nonfinite(g, ParallelParams::current().split_length::<T>(false))
}

/// For each part of the local optimizer `local`, the range of its per-element arrays within the
/// unsharded part's compact arrays: the number of the unsharded part's indices before the
/// shard's start, and the local part's length.
fn compact_offsets(full: &Optimizer, local: &Optimizer) -> Vec<(usize, usize, usize)> {
    let Some(info) = local.shard_info() else {
        return Vec::new();
    };
    local
        .parts()
        .iter()
        .zip(&info.parts)
        .map(|(lp, &gi)| {
            let before = full.parts()[gi]
                .segments
                .iter()
                .map(|s| s.end.min(info.start).saturating_sub(s.start))
                .sum();
            (gi, before, lp.geo.len)
        })
        .collect()
}

/// Index of the first array of each part of `opt` in its state's `slots`.
fn array_starts(opt: &Optimizer) -> Vec<usize> {
    let mut v = Vec::with_capacity(opt.parts().len());
    let mut j = 0;
    for p in opt.parts() {
        v.push(j);
        j += p.specs.len();
    }
    v
}

/// The unsharded state of `cfg` over `plan.n_params()` parameters from the states of every
/// shard of `plan` (`shards[r]` of rank `r`): bitwise what the unsharded optimizer, stepped
/// the same calls, would have saved.
///
/// Errors ([`OptimError::State`], naming the rank): a count other than `plan.world()`; a state
/// that does not load into its rank's shard (another config, size, plan or rank, a corrupt
/// state; a state of another rank says which: shards out of order); step counts, base learning
/// rates or dtypes that differ between shards. Errors of building the optimizers of `cfg`.
pub fn assemble_state(
    cfg: &OptimizerConfig,
    plan: &ShardPlan,
    shards: &[OptimizerState],
) -> Result<OptimizerState> {
    if shards.len() != plan.world() {
        return Err(OptimError::state(format!(
            "{} shard states given, the plan has {} ranks",
            shards.len(),
            plan.world()
        )));
    }
    let mut full = Optimizer::new(cfg.clone(), plan.n)?;
    let mut locals = Vec::with_capacity(plan.world());
    for r in 0..plan.world() {
        locals.push(Optimizer::shard_of(&full, plan.world(), r, plan.range(r))?);
    }
    for (r, (st, local)) in shards.iter().zip(&mut locals).enumerate() {
        if let Err(e) = local.load(st) {
            let who = st.layout.split('|').next().unwrap_or("");
            let other = (0..plan.world()).find(|&q| {
                q != r
                    && who
                        == format!(
                            "shard[{q}/{}]@{}..{}/{}",
                            plan.world(),
                            plan.range(q).start,
                            plan.range(q).end,
                            plan.n
                        )
            });
            return Err(match other {
                Some(q) => OptimError::state(format!(
                    "shard state {r} is rank {q}'s state: give the states in rank order"
                )),
                None => OptimError::state(format!("shard state {r} (rank {r}): {e}")),
            });
        }
    }
    let (step, base_lr) = (shards[0].step, shards[0].base_lr);
    let mut dtype = None;
    for (r, (st, local)) in shards.iter().zip(&locals).enumerate() {
        if st.step != step {
            return Err(OptimError::state(format!(
                "rank {r} has taken {} steps, rank 0 {step}",
                st.step
            )));
        }
        if st.base_lr.to_bits() != base_lr.to_bits() {
            return Err(OptimError::state(format!(
                "rank {r} has base_lr {}, rank 0 {base_lr}",
                st.base_lr
            )));
        }
        if local.parts().is_empty() {
            continue;
        }
        match (dtype, st.dtype) {
            (None, d) => dtype = Some(d),
            (Some(d0), d) if d0 != d => {
                return Err(OptimError::state(format!(
                    "rank {r} holds {} state, an earlier rank {}",
                    d.map_or("no", |d| d.name()),
                    d0.map_or("no", |d| d.name())
                )));
            }
            _ => {}
        }
    }
    let dtype = dtype.flatten();
    let names = full.slot_names();
    let mut slots: Vec<Vec<f64>> = Vec::new();
    if dtype.is_some() {
        let starts = array_starts(&full);
        slots = vec![Vec::new(); names.len()];
        for (st, local) in shards.iter().zip(&locals) {
            let local_starts = array_starts(local);
            for ((gi, _, _), &lj) in compact_offsets(&full, local).iter().zip(&local_starts) {
                let p = &full.parts()[*gi];
                for k in 0..p.specs.len() {
                    slots[starts[*gi] + k].extend_from_slice(&st.slots[lj + k]);
                }
            }
        }
    }
    // the BNP statistics of each BNP part from the one shard holding it (never split)
    for (fi, fp) in full.parts().iter().enumerate() {
        if fp.bnp.is_none() {
            continue;
        }
        for (st, local) in shards.iter().zip(&locals) {
            let Some(info) = local.shard_info() else {
                continue;
            };
            let held = info
                .parts
                .iter()
                .zip(local.parts())
                .filter(|(_, lp)| lp.bnp.is_some())
                .position(|(&gi, _)| gi == fi);
            if let Some(k) = held {
                let first = st.slots.len() - local.bnp_array_names().len() + 3 * k;
                slots.extend_from_slice(&st.slots[first..first + 3]);
            }
        }
    }
    let out = OptimizerState {
        format_version: OptimizerState::FORMAT_VERSION,
        layout: full.layout(),
        n_params: plan.n as u64,
        step,
        base_lr,
        dtype,
        slots,
    };
    full.load(&out)
        .map_err(|e| OptimError::state(format!("the assembled state: {e}")))?;
    Ok(out)
}

/// Split an unsharded state of `cfg` over `plan.n_params()` parameters for `plan` (any world
/// size): element `r` loads into `ShardedOptimizer::from_plan(cfg, plan.clone(), r)` and
/// continues bitwise as the unsharded optimizer would. Errors: [`OptimError::State`] when `full`
/// does not load into the unsharded optimizer of `cfg` (another config or size, a shard's state,
/// a corrupt state); errors of building the optimizers of `cfg`.
pub fn split_state(
    cfg: &OptimizerConfig,
    plan: &ShardPlan,
    full: &OptimizerState,
) -> Result<Vec<OptimizerState>> {
    let mut whole = Optimizer::new(cfg.clone(), plan.n)?;
    whole.load(full)?;
    let starts = array_starts(&whole);
    let mut out = Vec::with_capacity(plan.world());
    for r in 0..plan.world() {
        let mut local = Optimizer::shard_of(&whole, plan.world(), r, plan.range(r))?;
        let mut slots = Vec::new();
        let has = !local.parts().is_empty();
        if full.dtype.is_some() {
            for (gi, before, len) in compact_offsets(&whole, &local) {
                let p = &whole.parts()[gi];
                for (k, spec) in p.specs.iter().enumerate() {
                    let a = &full.slots[starts[gi] + k];
                    slots.push(match spec.len {
                        None => a[before..before + len].to_vec(),
                        Some(_) => a.clone(),
                    });
                }
            }
        }
        slots.extend(local.bnp_arrays());
        let st = OptimizerState {
            format_version: OptimizerState::FORMAT_VERSION,
            layout: local.layout(),
            n_params: local.n_params() as u64,
            step: full.step,
            base_lr: full.base_lr,
            dtype: if has { full.dtype } else { None },
            slots,
        };
        local
            .load(&st)
            .map_err(|e| OptimError::state(format!("the split state of rank {r}: {e}")))?;
        out.push(st);
    }
    Ok(out)
}

/// A run of the vector served by one part: `k` optimizer-state values per element, plus `fixed`
/// values for a unit that cannot be split (a matrix group's factors, bases).
struct Piece {
    start: usize,
    end: usize,
    k: u128,
    fixed: u128,
    unit: bool,
}

/// The boundary for the state target `t`: the index where the cumulative state reaches `t`,
/// rounded down inside a per-element piece (so with one per-element optimizer the boundary is
/// exactly `⌊r·n/world⌋`), moved to the nearer end (by state; the start on a tie) of a unit.
fn boundary(pieces: &[Piece], t: u128, n: usize) -> usize {
    let mut c: u128 = 0;
    for q in pieces {
        let len = (q.end - q.start) as u128;
        let w = q.k * len + q.fixed;
        if c + w < t {
            c += w;
            continue;
        }
        return if q.unit {
            if t - c <= c + w - t { q.start } else { q.end }
        } else {
            // k = 0 (a run without state) only reaches here when t ≤ c: its start
            q.start + (t - c).checked_div(q.k).unwrap_or(0) as usize
        };
    }
    n
}
