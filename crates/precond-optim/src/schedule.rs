//! Learning-rate schedules (closed forms of torch's `lr_scheduler`s), applied per step.
//!
//! The learning rate used by the `(t+1)`-th call of `step` is `schedule.lr(base_lr, t)`, where `t`
//! is the number of steps already taken (torch: `scheduler.step()` called after each
//! `optimizer.step()`). Every parameter group uses its own base learning rate with the same schedule.

use crate::error::{OptimError, Result};
use crate::json::Obj;
use serde_json::{Value, json};

/// A learning-rate schedule (the `"schedule"` config object, keyed by `"kind"`).
#[derive(Clone, Debug, PartialEq, Default)]
#[non_exhaustive]
pub enum Schedule {
    /// `lr_t = base`.
    #[default]
    Constant,
    /// torch `StepLR`: `lr_t = base · gamma^⌊t/step_size⌋`.
    Step {
        /// Period in steps (≥ 1).
        step_size: u64,
        /// Factor (default 0.1).
        gamma: f64,
    },
    /// torch `ExponentialLR`: `lr_t = base · gamma^t`.
    Exponential {
        /// Factor per step.
        gamma: f64,
    },
    /// torch `CosineAnnealingLR` (closed form, periodic after `T_max` as torch's):
    /// `lr_t = eta_min + (base − eta_min)(1 + cos(π t/T_max))/2`.
    Cosine {
        /// Half period (torch `T_max`, ≥ 1).
        t_max: u64,
        /// Floor (absolute, default 0).
        eta_min: f64,
    },
    /// torch `LinearLR` (linear warm-up): `lr_t = base · (s + (e − s) min(t, T)/T)`.
    Linear {
        /// `s ∈ (0, 1]` (default 1/3).
        start_factor: f64,
        /// `e ∈ [0, 1]` (default 1).
        end_factor: f64,
        /// `T ≥ 1` (default 5).
        total_iters: u64,
    },
    /// torch `SequentialLR`: schedule `i` runs from `milestones[i−1]` on, with its own clock
    /// restarted at its milestone (e.g. linear warm-up then cosine).
    Sequential {
        /// The pieces.
        schedulers: Vec<Schedule>,
        /// Strictly increasing switch points, one fewer than `schedulers`.
        milestones: Vec<u64>,
    },
}

impl Schedule {
    /// Learning rate after `t` steps, for base learning rate `base`.
    ///
    /// The constant schedule (the default) is answered inline, without a call: a step asks for
    /// the learning rate of every segment twice (to check it, then to use it).
    #[inline]
    pub fn lr(&self, base: f64, t: u64) -> f64 {
        if let Schedule::Constant = self {
            base
        } else {
            self.lr_scheduled(base, t)
        }
    }

    /// [`Schedule::lr`] of the non-constant schedules.
    fn lr_scheduled(&self, base: f64, t: u64) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Step { step_size, gamma } => base * gamma.powf((t / step_size) as f64),
            Schedule::Exponential { gamma } => base * gamma.powf(t as f64),
            Schedule::Cosine { t_max, eta_min } => {
                eta_min
                    + (base - eta_min)
                        * (1.0 + (std::f64::consts::PI * t as f64 / *t_max as f64).cos())
                        / 2.0
            }
            Schedule::Linear {
                start_factor,
                end_factor,
                total_iters,
            } => {
                let frac = t.min(*total_iters) as f64 / *total_iters as f64;
                base * (start_factor + (end_factor - start_factor) * frac)
            }
            Schedule::Sequential {
                schedulers,
                milestones,
            } => {
                let idx = milestones.iter().take_while(|&&m| m <= t).count();
                let start = if idx == 0 { 0 } else { milestones[idx - 1] };
                schedulers[idx].lr(base, t - start)
            }
        }
    }

    pub(crate) fn parse(v: &Value, path: &str) -> Result<Schedule> {
        let mut o = Obj::new(path, v)?;
        let kind = o.str("kind")?.ok_or_else(|| {
            OptimError::config(
                o.key("kind"),
                "missing (constant|step|exponential|cosine|linear|sequential)",
            )
        })?;
        let positive = |o: &Obj, k: &str, v: f64| -> Result<f64> {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(OptimError::config(
                    o.key(k),
                    format!("must be finite and > 0, got {v}"),
                ))
            }
        };
        let s = match kind {
            "constant" => {
                o.finish("kind")?;
                return Ok(Schedule::Constant);
            }
            "step" => {
                let step_size = o
                    .u64("step_size")?
                    .ok_or_else(|| OptimError::config(o.key("step_size"), "missing"))?;
                if step_size == 0 {
                    return Err(OptimError::config(o.key("step_size"), "must be ≥ 1"));
                }
                let gamma = o.f64("gamma")?.unwrap_or(0.1);
                let gamma = positive(&o, "gamma", gamma)?;
                o.finish("kind, step_size, gamma")?;
                Schedule::Step { step_size, gamma }
            }
            "exponential" => {
                let gamma = o
                    .f64("gamma")?
                    .ok_or_else(|| OptimError::config(o.key("gamma"), "missing"))?;
                let gamma = positive(&o, "gamma", gamma)?;
                o.finish("kind, gamma")?;
                Schedule::Exponential { gamma }
            }
            "cosine" => {
                let t_max = o
                    .u64("T_max")?
                    .ok_or_else(|| OptimError::config(o.key("T_max"), "missing"))?;
                if t_max == 0 {
                    return Err(OptimError::config(o.key("T_max"), "must be ≥ 1"));
                }
                let eta_min = o.f64("eta_min")?.unwrap_or(0.0);
                if !(eta_min.is_finite() && eta_min >= 0.0) {
                    return Err(OptimError::config(
                        o.key("eta_min"),
                        format!("must be finite and ≥ 0, got {eta_min}"),
                    ));
                }
                o.finish("kind, T_max, eta_min")?;
                Schedule::Cosine { t_max, eta_min }
            }
            "linear" => {
                let start_factor = o.f64("start_factor")?.unwrap_or(1.0 / 3.0);
                let end_factor = o.f64("end_factor")?.unwrap_or(1.0);
                let total_iters = o.u64("total_iters")?.unwrap_or(5);
                if !(start_factor > 0.0 && start_factor <= 1.0) {
                    return Err(OptimError::config(
                        o.key("start_factor"),
                        format!("must be in (0, 1], got {start_factor}"),
                    ));
                }
                if !(0.0..=1.0).contains(&end_factor) {
                    return Err(OptimError::config(
                        o.key("end_factor"),
                        format!("must be in [0, 1], got {end_factor}"),
                    ));
                }
                if total_iters == 0 {
                    return Err(OptimError::config(o.key("total_iters"), "must be ≥ 1"));
                }
                o.finish("kind, start_factor, end_factor, total_iters")?;
                Schedule::Linear {
                    start_factor,
                    end_factor,
                    total_iters,
                }
            }
            "sequential" => {
                let key = o.key("schedulers");
                let arr = o
                    .array("schedulers")?
                    .ok_or_else(|| OptimError::config(key.clone(), "missing"))?;
                if arr.is_empty() {
                    return Err(OptimError::config(key, "must not be empty"));
                }
                let schedulers = arr
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Schedule::parse(v, &format!("{key}[{i}]")))
                    .collect::<Result<Vec<_>>>()?;
                let mkey = o.key("milestones");
                let marr = o
                    .array("milestones")?
                    .ok_or_else(|| OptimError::config(mkey.clone(), "missing"))?;
                let milestones = marr
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_u64().ok_or_else(|| {
                            OptimError::config(
                                format!("{mkey}[{i}]"),
                                "expected a non-negative integer",
                            )
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                if milestones.len() + 1 != schedulers.len() {
                    return Err(OptimError::config(
                        mkey,
                        format!(
                            "needs exactly {} entries (one fewer than schedulers), got {}",
                            schedulers.len() - 1,
                            milestones.len()
                        ),
                    ));
                }
                if milestones.windows(2).any(|w| w[0] >= w[1]) || milestones.first() == Some(&0) {
                    return Err(OptimError::config(
                        mkey,
                        "must be strictly increasing and > 0",
                    ));
                }
                o.finish("kind, schedulers, milestones")?;
                Schedule::Sequential {
                    schedulers,
                    milestones,
                }
            }
            other => {
                return Err(OptimError::config(
                    o.key("kind"),
                    format!(
                        "unknown schedule `{other}` (constant|step|exponential|cosine|linear|sequential)"
                    ),
                ));
            }
        };
        Ok(s)
    }

    pub(crate) fn to_value(&self) -> Value {
        match self {
            Schedule::Constant => json!({"kind": "constant"}),
            Schedule::Step { step_size, gamma } => {
                json!({"kind": "step", "step_size": step_size, "gamma": gamma})
            }
            Schedule::Exponential { gamma } => json!({"kind": "exponential", "gamma": gamma}),
            Schedule::Cosine { t_max, eta_min } => {
                json!({"kind": "cosine", "T_max": t_max, "eta_min": eta_min})
            }
            Schedule::Linear {
                start_factor,
                end_factor,
                total_iters,
            } => {
                json!({"kind": "linear", "start_factor": start_factor, "end_factor": end_factor, "total_iters": total_iters})
            }
            Schedule::Sequential {
                schedulers,
                milestones,
            } => json!({
                "kind": "sequential",
                "schedulers": schedulers.iter().map(Schedule::to_value).collect::<Vec<_>>(),
                "milestones": milestones,
            }),
        }
    }
}
