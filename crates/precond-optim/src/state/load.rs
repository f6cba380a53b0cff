//! The state snapshot of an [`Optimizer`] and loading it back, beside the format (`mod.rs`).

use super::OptimizerState;
use crate::error::{OptimError, Result};
use crate::float::Dtype;
use crate::optimizer::Optimizer;
use crate::storage::Store;

impl Optimizer {
    /// A snapshot of the state (see [`crate::OptimizerState`]).
    pub fn state(&self) -> OptimizerState {
        let mut slots = Vec::new();
        let mut dtype = None;
        for p in self.parts() {
            match &p.store {
                Store::Empty => {}
                Store::F32(s) => {
                    dtype = Some(Dtype::F32);
                    for j in 0..p.specs.len() {
                        slots.push(s.array(&p.specs, j).iter().map(|&v| f64::from(v)).collect());
                    }
                }
                Store::F64(s) => {
                    dtype = Some(Dtype::F64);
                    for j in 0..p.specs.len() {
                        slots.push(s.array(&p.specs, j).to_vec());
                    }
                }
            }
        }
        slots.extend(self.bnp_arrays());
        OptimizerState {
            format_version: OptimizerState::FORMAT_VERSION,
            layout: self.layout(),
            n_params: self.n_params() as u64,
            step: self.step_count(),
            base_lr: self.base_lr(),
            dtype,
            slots,
        }
    }

    /// Replace the state by `st` (all checks before any change): format version, layout
    /// (optimizer kinds, shapes, groups and arrays), size, dtype, array lengths, and the values:
    /// every entry finite (and representable in `f32` for an `f32` state), accumulated squares
    /// and factors (`sum`, `square_avg`, `exp_avg_sq`, `max_exp_avg_sq`, Shampoo's and SOAP's
    /// `L`, `R`...) non-negative where the kind says so, `base_lr` finite and `≥ 0`. A state that
    /// holds NaN/Inf (which only the `"propagate"` policy can produce) is refused.
    ///
    /// The running statistics of `"bnp"` groups are the state's last arrays (after every part's,
    /// see [`Optimizer::layout`]), saved from build on: a state saved before the first step
    /// (no dtype) holds them alone, exact. They are checked (lengths, finite means, finite
    /// variances `≥ 0`, a whole observation count) and restored with the rest. The in-memory
    /// [`OptimizerState`] holds them in `f64`; [`OptimizerState::to_bytes`] of an `f32` state
    /// writes every array in `f32`, so the statistics (like torch's BatchNorm buffers in an `f32`
    /// module) come back rounded to `f32`, the observation count exact up to `2²⁴`; an `f64`
    /// state round-trips them bitwise.
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
        if st.n_params != self.n_params() as u64 {
            return Err(OptimError::state(format!(
                "state is for {} parameters, optimizer has {}",
                st.n_params,
                self.n_params()
            )));
        }
        if !(st.base_lr.is_finite() && st.base_lr >= 0.0) {
            return Err(OptimError::state(format!("invalid base_lr {}", st.base_lr)));
        }
        let names = self.slot_names();
        // the BNP statistics are the last arrays, present with or without a dtype
        let n_bnp = self.bnp_array_names().len();
        let n_own = if st.dtype.is_some() { names.len() } else { 0 };
        if st.slots.len() != n_own + n_bnp {
            return Err(OptimError::state(format!(
                "{} arrays, layout needs {}",
                st.slots.len(),
                n_own + n_bnp
            )));
        }
        let bnp = self.bnp_from_arrays(&st.slots[n_own..], st.dtype == Some(Dtype::F32))?;
        let mut stores = Vec::with_capacity(self.parts().len());
        match st.dtype {
            None => {
                // a shard without parameters (`crate::shard`) has no arrays and still counts steps
                if st.step != 0 && !self.parts().is_empty() {
                    return Err(OptimError::state(
                        "state without dtype must be empty with step 0",
                    ));
                }
                stores.resize_with(self.parts().len(), || Store::Empty);
            }
            Some(d) => {
                let mut j = 0;
                for p in self.parts() {
                    for spec in &p.specs {
                        let v = &st.slots[j];
                        let want = spec.len.unwrap_or(p.geo.len);
                        if v.len() != want {
                            return Err(OptimError::state(format!(
                                "array {j} (`{}`) has {} values, expected {want}",
                                names[j],
                                v.len()
                            )));
                        }
                        let bad = v.iter().position(|&x| {
                            !x.is_finite()
                                || (spec.nonneg && x < 0.0)
                                || (d == Dtype::F32 && !(x as f32).is_finite())
                        });
                        if let Some(i) = bad {
                            return Err(OptimError::state(format!(
                                "array {j} (`{}`) has {} at index {i}; it must be finite{}",
                                names[j],
                                v[i],
                                if spec.nonneg { " and ≥ 0" } else { "" }
                            )));
                        }
                        j += 1;
                    }
                }
                // relations between a part's arrays that its update keeps (Adam: |m| vs v)
                let mut j = 0;
                for p in self.parts() {
                    let arrays: Vec<&[f64]> = st.slots[j..j + p.specs.len()]
                        .iter()
                        .map(Vec::as_slice)
                        .collect();
                    p.cfg
                        .optimizer
                        .check_state(&p.cfg, st.step, &arrays, &p.geo)
                        .map_err(OptimError::state)?;
                    j += p.specs.len();
                }
                let mut j = 0;
                for p in self.parts() {
                    let store = match d {
                        Dtype::F32 => {
                            let mut s = p.alloc::<f32>(None)?;
                            for k in 0..p.specs.len() {
                                // (lengths checked above)
                                for (d, &x) in
                                    s.array_mut(&p.specs, k).iter_mut().zip(&st.slots[j + k])
                                {
                                    *d = x as f32;
                                }
                            }
                            Store::F32(s)
                        }
                        Dtype::F64 => {
                            let mut s = p.alloc::<f64>(None)?;
                            for k in 0..p.specs.len() {
                                s.array_mut(&p.specs, k).copy_from_slice(&st.slots[j + k]);
                            }
                            Store::F64(s)
                        }
                    };
                    j += p.specs.len();
                    stores.push(store);
                }
            }
        }
        self.replace_state(stores, st.step, st.base_lr);
        self.set_bnp_stats(bnp);
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
