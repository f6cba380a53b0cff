//! The state snapshot of an [`Optimizer`] and loading it back, beside the format (`mod.rs`).

use super::OptimizerState;
use crate::error::{OptimError, Result};
use crate::float::Dtype;
use crate::optimizer::Optimizer;
use crate::storage::Store;

impl Optimizer {
    /// A snapshot of the state (see [`crate::OptimizerState`]).
    pub fn state(&self) -> OptimizerState {
        let names = self.slot_names();
        let (dtype, slots) = match self.store() {
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
            n_params: self.n_params() as u64,
            step: self.step_count(),
            base_lr: self.base_lr(),
            dtype,
            slots,
        }
    }

    /// Replace the state by `st` (all checks before any change): format version, layout
    /// (optimizer kind and slots), size, dtype, slot lengths, and the values: every slot entry
    /// finite (and representable in `f32` for an `f32` state), second-moment slots (`sum`,
    /// `square_avg`, `exp_avg_sq`, `max_exp_avg_sq`) non-negative, `base_lr` finite and `≥ 0`.
    /// A state that holds NaN/Inf (which only the `"propagate"` policy can produce) is refused.
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
                if let Some((j, s)) = st
                    .slots
                    .iter()
                    .enumerate()
                    .find(|(_, s)| s.len() != self.n_params())
                {
                    return Err(OptimError::state(format!(
                        "slot {j} has {} values, expected {}",
                        s.len(),
                        self.n_params()
                    )));
                }
                let specs = self.config().optimizer.slots(self.config());
                for ((j, v), spec) in st.slots.iter().enumerate().zip(&specs) {
                    let bad = v.iter().position(|&x| {
                        !x.is_finite()
                            || (spec.nonneg && x < 0.0)
                            || (d == Dtype::F32 && !(x as f32).is_finite())
                    });
                    if let Some(i) = bad {
                        return Err(OptimError::state(format!(
                            "slot {j} (`{}`) has {} at index {i}; it must be finite{}",
                            spec.name,
                            v[i],
                            if spec.nonneg { " and ≥ 0" } else { "" }
                        )));
                    }
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
        self.replace_state(store, st.step, st.base_lr);
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
