//! torch `SGD` (1): heavy-ball momentum with dampening and Nesterov, `P = I`.
//!
//! `b ← μ b + (1 − dampening) g` (`b = g` on the first step); `u = g + μ b` (Nesterov) or `b`
//! (or `u = g` without momentum); `x ← x − η u`. State: `momentum_buffer` when `μ ≠ 0`.
//!
//! # References
//! - \[Polyak1964\] B. T. Polyak, heavy-ball momentum.
//! - \[Sutskever2013\] I. Sutskever, J. Martens, G. Dahl, G. Hinton, the Nesterov form torch uses.
//!
//! (Full entries in docs/THEORY.md, References.)

use super::compose::with_reg;
use super::{Kind, SegStep};
use crate::checks::check_heavy_ball;
use crate::config::OptimizerConfig;
use crate::error::Result;
use crate::float::Float;
use crate::kernel::Buffers;
use crate::momentum::{HeavyBall, NoMomentum};
use crate::precond::{Identity, PrecondRule};
use crate::storage::{SlotSpec, Slots, StepFloat};

/// torch `SGD`.
pub(crate) struct Sgd;

impl Kind for Sgd {
    const KEYS: &'static [&'static str] = &["momentum", "dampening", "nesterov"];

    fn validate(c: &OptimizerConfig) -> Result<()> {
        check_heavy_ball(c.momentum, c.dampening, c.nesterov)
    }

    fn slots(c: &OptimizerConfig) -> Vec<SlotSpec> {
        heavy_ball_slots(c)
    }

    fn observe<T: StepFloat>(
        _c: &OptimizerConfig,
        _step: u64,
        _state: Option<&Slots<T>>,
        out: &mut [f64],
    ) -> Result<()> {
        out.fill(1.0);
        Ok(())
    }

    fn run_segment<T: StepFloat>(
        c: &OptimizerConfig,
        s: &SegStep,
        b: Buffers<'_, T>,
    ) -> Result<bool> {
        heavy_ball_step(c, s, Identity, b)
    }
}

/// The `momentum_buffer` slot when `μ ≠ 0` (SGD, GD, preconditioned GD).
pub(crate) fn heavy_ball_slots(c: &OptimizerConfig) -> Vec<SlotSpec> {
    if c.momentum != 0.0 {
        vec![SlotSpec::zero("momentum_buffer")]
    } else {
        Vec::new()
    }
}

/// SGD's update with preconditioner rule `pre` (`I`, or a fixed diagonal for preconditioned GD).
pub(crate) fn heavy_ball_step<T: Float, P: PrecondRule<T>>(
    c: &OptimizerConfig,
    s: &SegStep,
    pre: P,
    b: Buffers<'_, T>,
) -> Result<bool> {
    // the gradient is scaled only by a dampening other than 0 after the first step
    let damp = c.dampening != 0.0 && s.k != 1;
    if c.momentum != 0.0 {
        match (c.nesterov, damp) {
            (true, true) => momentum_step::<T, P, true, true>(c, s, pre, b),
            (true, false) => momentum_step::<T, P, true, false>(c, s, pre, b),
            (false, true) => momentum_step::<T, P, false, true>(c, s, pre, b),
            (false, false) => momentum_step::<T, P, false, false>(c, s, pre, b),
        }
    } else {
        let m = NoMomentum {
            scale: T::from_f64(-s.lr),
        };
        with_reg(s, s.lr, pre, m, b)
    }
}

/// [`heavy_ball_step`] with momentum, its Nesterov and dampening choices as the rule's type.
fn momentum_step<T: Float, P: PrecondRule<T>, const NESTEROV: bool, const DAMPENED: bool>(
    c: &OptimizerConfig,
    s: &SegStep,
    pre: P,
    b: Buffers<'_, T>,
) -> Result<bool> {
    let m = HeavyBall::<T, NESTEROV, DAMPENED>::new(c.momentum, c.dampening, s.lr, s.k == 1);
    with_reg(s, s.lr, pre, m, b)
}
