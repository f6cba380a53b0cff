//! torch `RMSprop` (6) (THEORY.md §4): `v ← α v + (1 − α) g²`; centered: `ḡ ← lerp(ḡ, g, 1 − α)`,
//! `v̄ = v − ḡ²`; `d = sqrt(v̄) + eps`; without momentum `x ← x − η g/d`, with momentum
//! `b ← μ b + g/d`, `x ← x − η b`.
//!
//! `P_k = 1/d`; with the key `power` (default 0.5) `d = v̄^power + eps`. State: `square_avg`, then `grad_avg` (centered), then `momentum_buffer`
//! (`μ > 0`). Default `lr = 1e-2`; `eps` is added after the square root, as torch does
//! (optax's `rmsprop` adds it inside unless `eps_in_sqrt=False`).
//!
//! # References
//! - \[Tieleman2012\] T. Tieleman, G. Hinton, *Lecture 6.5 — RMSProp*, COURSERA: Neural Networks
//!   for Machine Learning, 2012 (docs/THEORY.md, References).

use super::compose::{observe_with, with_reg};
use super::{Kind, SegStep};
use crate::checks::{check_eps, check_nonneg, check_power};
use crate::config::OptimizerConfig;
use crate::error::{OptimError, Result};
use crate::kernel::Buffers;
use crate::momentum::{NoMomentum, PostHeavyBall};
use crate::precond::{PrecondRule, RmsPrecond, with_root};
use crate::storage::{SlotSpec, Slots, StepFloat};

/// torch `RMSprop`.
pub(crate) struct Rmsprop;

impl Kind for Rmsprop {
    const KEYS: &'static [&'static str] = &["alpha", "eps", "momentum", "centered", "power"];
    const HEAVY: bool = <RmsPrecond<f64, false> as PrecondRule<f64>>::HEAVY;

    fn defaults(c: &mut OptimizerConfig) {
        c.lr = 1e-2;
    }

    fn validate(c: &OptimizerConfig) -> Result<()> {
        check_eps(c.eps)?;
        check_nonneg("momentum", c.momentum)?;
        check_power(c.power)?;
        if !(c.alpha.is_finite() && (0.0..1.0).contains(&c.alpha)) {
            return Err(OptimError::config(
                "alpha",
                format!("must be in [0, 1), got {}", c.alpha),
            ));
        }
        Ok(())
    }

    fn slots(c: &OptimizerConfig) -> Vec<SlotSpec> {
        let mut v = vec![SlotSpec::squares("square_avg")];
        if c.centered {
            v.push(SlotSpec::zero("grad_avg"));
        }
        if c.momentum > 0.0 {
            v.push(SlotSpec::zero("momentum_buffer"));
        }
        v
    }

    fn observe<T: StepFloat>(
        c: &OptimizerConfig,
        _step: u64,
        state: Option<&Slots<T>>,
        out: &mut [f64],
    ) -> Result<()> {
        with_root!(c.power, T, |r| match state {
            None => out.fill(1.0 / c.eps),
            Some(s) if c.centered => observe_with(
                RmsPrecond::<T, true, _>::with_root(c.alpha, c.eps, r),
                s,
                out,
            ),
            Some(s) => observe_with(
                RmsPrecond::<T, false, _>::with_root(c.alpha, c.eps, r),
                s,
                out,
            ),
        });
        Ok(())
    }

    fn run_segment<T: StepFloat>(
        c: &OptimizerConfig,
        s: &SegStep,
        b: Buffers<'_, T>,
    ) -> Result<bool> {
        let mom = PostHeavyBall {
            momentum: T::from_f64(c.momentum),
            scale: T::from_f64(-s.lr),
        };
        let nom = NoMomentum {
            scale: T::from_f64(-s.lr),
        };
        with_root!(c.power, T, |r| {
            let (plain, centered) = (
                RmsPrecond::<T, false, _>::with_root(c.alpha, c.eps, r),
                RmsPrecond::<T, true, _>::with_root(c.alpha, c.eps, r),
            );
            match (c.centered, c.momentum > 0.0) {
                (false, false) => with_reg(s, s.lr, plain, nom, b),
                (false, true) => with_reg(s, s.lr, plain, mom, b),
                (true, false) => with_reg(s, s.lr, centered, nom, b),
                (true, true) => with_reg(s, s.lr, centered, mom, b),
            }
        })
    }
}
