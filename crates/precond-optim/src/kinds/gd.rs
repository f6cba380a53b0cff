//! Plain gradient descent (1): `x ← x − η g`, `P = I`, no state.

use super::sgd::{Sgd, heavy_ball_slots};
use super::{Kind, SegStep};
use crate::checks::check_heavy_ball;
use crate::config::OptimizerConfig;
use crate::error::{OptimError, Result};
use crate::kernel::Buffers;
use crate::storage::{SlotSpec, Slots, StepFloat};

/// Gradient descent: torch `SGD` without momentum.
pub(crate) struct Gd;

impl Kind for Gd {
    const KEYS: &'static [&'static str] = &[];

    fn validate(c: &OptimizerConfig) -> Result<()> {
        check_heavy_ball(c.momentum, c.dampening, c.nesterov)?;
        if c.momentum != 0.0 || c.nesterov {
            return Err(OptimError::config(
                "momentum",
                "gd has no momentum (use sgd)",
            ));
        }
        Ok(())
    }

    fn slots(c: &OptimizerConfig) -> Vec<SlotSpec> {
        heavy_ball_slots(c)
    }

    fn observe<T: StepFloat>(
        c: &OptimizerConfig,
        step: u64,
        state: Option<&Slots<T>>,
        out: &mut [f64],
    ) -> Result<()> {
        Sgd::observe(c, step, state, out)
    }

    fn run_segment<T: StepFloat>(
        c: &OptimizerConfig,
        s: &SegStep,
        b: Buffers<'_, T>,
    ) -> Result<bool> {
        Sgd::run_segment(c, s, b)
    }
}
