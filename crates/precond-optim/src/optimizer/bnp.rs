//! BNP on a parameter group (docs/THEORY.md §6): the running statistics a BNP part keeps, the
//! preconditioning of its gradient copy inside the step, and [`Optimizer::bnp_observe`] /
//! [`Optimizer::bnp_stats`].

use super::{Optimizer, Part};
use crate::bnp::{BnpSpec, BnpStats, bnp_precondition};
use crate::config::MatrixShape;
use crate::error::{OptimError, Result};
use crate::groups::Segment;

/// A BNP group's running statistics and its segment moved to the coordinates of the gradient
/// copy (`0..len`), built once so that the step allocates nothing.
#[derive(Clone, Debug)]
pub(crate) struct BnpPart {
    pub(crate) stats: BnpStats,
    /// `units` (the shape's rows).
    pub(crate) units: usize,
    /// The segment(s) of the part shifted to start at 0 (the copy's coordinates).
    pub(crate) local: Vec<Segment>,
}

impl BnpPart {
    pub(crate) fn new(spec: BnpSpec, shape: MatrixShape, segments: &[Segment]) -> Result<Self> {
        let base = segments.first().map_or(0, |s| s.start);
        let local = segments
            .iter()
            .map(|s| Segment {
                start: s.start - base,
                end: s.end - base,
                ..s.clone()
            })
            .collect();
        Ok(BnpPart {
            stats: BnpStats::new(shape.cols, spec)?,
            units: shape.rows,
            local,
        })
    }

    /// `P g` of the layer (weights row-major, then the bias) in place on the copy `g`.
    pub(crate) fn precondition<T: crate::Float>(&self, g: &mut [T]) -> Result<()> {
        let nw = self.units * self.stats.dim();
        let (w, b) = g.split_at_mut(nw.min(g.len()));
        bnp_precondition(w, b, &self.stats)
    }
}

impl Part {
    /// The range `start..end` of the part in the step's buffers (a BNP part has one segment).
    pub(crate) fn span(&self) -> (usize, usize) {
        let start = self.segments.first().map_or(0, |s| s.start);
        (start, start + self.geo.len)
    }
}

impl Optimizer {
    fn bnp_part(&self, group: usize) -> Result<usize> {
        let wrap = |e: OptimError| OptimError::Bnp {
            group,
            error: Box::new(e),
        };
        let n_groups = self.cfg.groups.len();
        if group >= n_groups {
            return Err(wrap(OptimError::config(
                format!("groups[{group}]"),
                format!("no such group: the config has {n_groups} group(s)"),
            )));
        }
        if self.cfg.groups[group].bnp.is_none() {
            return Err(wrap(OptimError::config(
                format!("groups[{group}].bnp"),
                "this group has no `bnp`",
            )));
        }
        self.parts
            .iter()
            .position(|p| p.group == Some(group) && p.bnp.is_some())
            .ok_or_else(|| {
                wrap(OptimError::Unsupported(format!(
                    "groups[{group}] is held by another shard (range {}..{} of this one)",
                    self.shard_offset(),
                    self.shard_offset() + self.n
                )))
            })
    }

    /// Folds one batch's per-feature mean and **biased** (population) variance of the layer
    /// input of BNP group `group` into its running statistics ([`BnpStats::observe`]: the
    /// mixture update, docs/THEORY.md §6). Call it after the forward pass and before the step
    /// that uses the statistics (forward → observe → backward → step). Allocation-free.
    ///
    /// # Errors
    /// [`OptimError::Bnp`] naming the group, wrapping: a [`OptimError::Config`] for a group index
    /// out of range or a group without `"bnp"`, [`OptimError::Unsupported`] for a group held by
    /// another shard, [`OptimError::LengthMismatch`] when a slice is not `d` long (the shape's
    /// columns), [`OptimError::InvalidStatistics`] for a non-finite mean or a negative or
    /// non-finite variance. Nothing is changed on error.
    pub fn bnp_observe(
        &mut self,
        group: usize,
        batch_mean: &[f64],
        batch_var: &[f64],
    ) -> Result<()> {
        let i = self.bnp_part(group)?;
        let Some(b) = self.parts[i].bnp.as_mut() else {
            return Err(OptimError::Unsupported("no BNP part".into()));
        };
        b.stats
            .observe(batch_mean, batch_var)
            .map_err(|e| OptimError::Bnp {
                group,
                error: Box::new(e),
            })
    }

    /// The running statistics of BNP group `group` (mean, variance, `Σ⁻²`, observations).
    ///
    /// # Errors
    /// [`OptimError::Bnp`] as [`Optimizer::bnp_observe`] for the group index.
    pub fn bnp_stats(&self, group: usize) -> Result<&BnpStats> {
        let i = self.bnp_part(group)?;
        self.parts[i]
            .bnp
            .as_ref()
            .map(|b| &b.stats)
            .ok_or_else(|| OptimError::Unsupported("no BNP part".into()))
    }
}

/// The three state arrays of each BNP part, after every part's own arrays.
const BNP_ARRAYS: [&str; 3] = ["bnp_mean", "bnp_var", "bnp_observations"];

impl Optimizer {
    /// Names of the BNP arrays of the saved state, in order: for each BNP part (part order),
    /// `groups[i].bnp_mean`, `groups[i].bnp_var`, `groups[i].bnp_observations`.
    pub(crate) fn bnp_array_names(&self) -> Vec<String> {
        self.parts
            .iter()
            .filter(|p| p.bnp.is_some())
            .flat_map(|p| {
                let g = p.group.unwrap_or(0);
                BNP_ARRAYS.iter().map(move |a| format!("groups[{g}].{a}"))
            })
            .collect()
    }

    /// The BNP arrays of the saved state ([`Self::bnp_array_names`] order), exact in `f64`.
    pub(crate) fn bnp_arrays(&self) -> Vec<Vec<f64>> {
        self.parts
            .iter()
            .filter_map(|p| p.bnp.as_ref())
            .flat_map(|b| {
                [
                    b.stats.mean().to_vec(),
                    b.stats.var().to_vec(),
                    vec![b.stats.observations() as f64],
                ]
            })
            .collect()
    }

    /// The statistics of every BNP part from the arrays of a state (`f32`: an `f32` state,
    /// whose values must be finite in `f32`). Errors: [`OptimError::State`] naming the array
    /// (count, length, a non-finite mean, a negative or non-finite variance, an observation count
    /// that is not a whole number in `0..2⁶⁴`).
    pub(crate) fn bnp_from_arrays(&self, arrays: &[Vec<f64>], f32: bool) -> Result<Vec<BnpStats>> {
        let names = self.bnp_array_names();
        if arrays.len() != names.len() {
            return Err(OptimError::state(format!(
                "{} BNP arrays, the layout needs {} ({})",
                arrays.len(),
                names.len(),
                names.join(", ")
            )));
        }
        let mut out = Vec::new();
        for (k, b) in self.parts.iter().filter_map(|p| p.bnp.as_ref()).enumerate() {
            let d = b.stats.dim();
            let [mean, var, obs] = [&arrays[3 * k], &arrays[3 * k + 1], &arrays[3 * k + 2]];
            for (j, (a, want)) in [(mean, d), (var, d), (obs, 1)].into_iter().enumerate() {
                let name = &names[3 * k + j];
                if a.len() != want {
                    return Err(OptimError::state(format!(
                        "array `{name}` has {} values, expected {want}",
                        a.len()
                    )));
                }
                if let Some(i) = a.iter().position(|&x| {
                    !x.is_finite() || (j > 0 && x < 0.0) || (f32 && !(x as f32).is_finite())
                }) {
                    return Err(OptimError::state(format!(
                        "array `{name}` has {} at index {i}; it must be finite{}",
                        a[i],
                        if j > 0 { " and ≥ 0" } else { "" }
                    )));
                }
            }
            let o = obs[0];
            if o.fract() != 0.0 || o >= 18_446_744_073_709_551_616.0 {
                return Err(OptimError::state(format!(
                    "array `{}` holds {o}, not a count of observations",
                    names[3 * k + 2]
                )));
            }
            out.push(
                BnpStats::restored(mean, var, o as u64, b.stats.spec())
                    .map_err(|e| OptimError::state(e.to_string()))?,
            );
        }
        Ok(out)
    }

    /// Replace the statistics of every BNP part (checked by [`Self::bnp_from_arrays`]).
    pub(crate) fn set_bnp_stats(&mut self, stats: Vec<BnpStats>) {
        let parts = self.parts.iter_mut().filter_map(|p| p.bnp.as_mut());
        for (b, s) in parts.zip(stats) {
            b.stats = s;
        }
    }
}
