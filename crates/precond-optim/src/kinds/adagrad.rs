//! torch `Adagrad` (THEORY.md §4): `G ← G + g²` (`G_0 = initial_accumulator_value`),
//! `x ← x − η_k g/(sqrt(G) + eps)` with `η_k = η/(1 + (k−1)·lr_decay)`.
//!
//! `P_k = 1/(sqrt(G_k) + eps)` (with the key `power`, default 0.5: `1/(G_k^power + eps)`); the `lr_decay` factor is a scalar on `η`, outside `P`. State:
//! `sum`. Defaults: `lr = 1e-2`, `eps = 1e-10`.
//!
//! # References
//! - \[Duchi2011\] J. Duchi, E. Hazan, Y. Singer, *Adaptive subgradient methods for online learning
//!   and stochastic optimization*, JMLR 12, 2011 (docs/THEORY.md, References).

use super::compose::{observe_with, with_reg};
use super::{Kind, SegStep};
use crate::checks::{check_eps, check_nonneg, check_power};
use crate::config::OptimizerConfig;
use crate::error::Result;
use crate::kernel::Buffers;
use crate::momentum::NoMomentum;
use crate::precond::{AdagradPrecond, PrecondRule, Root, with_root};
use crate::storage::{SlotSpec, Slots, StepFloat};

/// torch `Adagrad`.
pub(crate) struct Adagrad;

impl Kind for Adagrad {
    const KEYS: &'static [&'static str] =
        &["lr_decay", "initial_accumulator_value", "eps", "power"];
    const HEAVY: bool = <AdagradPrecond<f64> as PrecondRule<f64>>::HEAVY;

    fn defaults(c: &mut OptimizerConfig) {
        c.lr = 1e-2;
        c.eps = 1e-10;
    }

    fn validate(c: &OptimizerConfig) -> Result<()> {
        check_eps(c.eps)?;
        check_power(c.power)?;
        check_nonneg("lr_decay", c.lr_decay)?;
        check_nonneg("initial_accumulator_value", c.initial_accumulator_value)
    }

    fn slots(c: &OptimizerConfig) -> Vec<SlotSpec> {
        vec![SlotSpec {
            init: c.initial_accumulator_value,
            ..SlotSpec::squares("sum")
        }]
    }

    fn observe<T: StepFloat>(
        c: &OptimizerConfig,
        _step: u64,
        state: Option<&Slots<T>>,
        out: &mut [f64],
    ) -> Result<()> {
        match state {
            None => {
                let d = with_root!(c.power, f64, |r| r.root(c.initial_accumulator_value));
                out.fill(1.0 / (d + c.eps));
            }
            Some(s) => with_root!(c.power, T, |r| observe_with(
                AdagradPrecond {
                    eps: T::from_f64(c.eps),
                    root: r,
                },
                s,
                out,
            )),
        }
        Ok(())
    }

    fn run_segment<T: StepFloat>(
        c: &OptimizerConfig,
        s: &SegStep,
        b: Buffers<'_, T>,
    ) -> Result<bool> {
        let clr = s.lr / (1.0 + (s.k - 1) as f64 * c.lr_decay);
        let mom = NoMomentum {
            scale: T::from_f64(-clr),
        };
        with_root!(c.power, T, |r| with_reg(
            s,
            clr,
            AdagradPrecond {
                eps: T::from_f64(c.eps),
                root: r,
            },
            mom,
            b,
        ))
    }
}
