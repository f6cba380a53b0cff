//! torch `Adam` and `AdamW` (8) (THEORY.md §4–5): `m ← lerp(m, g, 1 − β₁)`,
//! `v ← β₂ v + (1 − β₂) g²` (AMSGrad: `v_max ← max(v_max, v)` used instead of `v`),
//! `d = sqrt(v)/sqrt(1 − β₂^k) + eps`, `x ← x − (η/(1 − β₁^k)) m/d`.
//!
//! `P_k = 1/d = 1/(sqrt(v̂_k) + eps)` with `η` outside; undefined before the first step. With the
//! key `power` (default 0.5): `P_k = 1/(v̂_k^power + eps)` (1: the diagonal Fisher scaling).
//! `AdamW` is the same update preceded by the decoupled weight decay `x ← x(1 − ηλ)`
//! (intrinsic L2, (11); `λ` multiplied by the scheduled `η`, torch's convention), default
//! `weight_decay = 1e-2`; `Adam`'s `weight_decay` is coupled, `g ← g + λx` ((10)).
//! State: `exp_avg_sq`, then `max_exp_avg_sq` (AMSGrad), then `exp_avg`.
//!
//! # References
//! - \[Kingma2015\] D. P. Kingma, J. Ba, *Adam: a method for stochastic optimization*, ICLR 2015.
//! - \[Reddi2018\] S. J. Reddi, S. Kale, S. Kumar, *On the convergence of Adam and beyond*, ICLR
//!   2018 (AMSGrad).
//! - \[Loshchilov2019\] I. Loshchilov, F. Hutter, *Decoupled weight decay regularization*, ICLR
//!   2019 (AdamW).

use super::compose::{observe_with, with_reg};
use super::{Kind, SegStep};
use crate::checks::{check_eps, check_power};
use crate::config::OptimizerConfig;
use crate::error::{OptimError, Result};
use crate::kernel::Buffers;
use crate::momentum::Ema;
use crate::precond::{AdamPrecond, PrecondRule, with_root};
use crate::storage::{Geometry, SlotSpec, Slots, StepFloat};

/// torch `Adam` (`DECOUPLED = false`) and `AdamW` (`DECOUPLED = true`).
pub(crate) struct AdamFamily<const DECOUPLED: bool>;
/// torch `Adam`.
pub(crate) type Adam = AdamFamily<false>;
/// torch `AdamW`.
pub(crate) type AdamW = AdamFamily<true>;

impl<const DECOUPLED: bool> Kind for AdamFamily<DECOUPLED> {
    const KEYS: &'static [&'static str] = &["betas", "eps", "amsgrad", "power"];
    const DECOUPLED_WEIGHT_DECAY: bool = DECOUPLED;
    const HEAVY: bool = <AdamPrecond<f64, false> as PrecondRule<f64>>::HEAVY;

    fn defaults(c: &mut OptimizerConfig) {
        if DECOUPLED {
            c.weight_decay = 1e-2;
        }
    }

    fn validate(c: &OptimizerConfig) -> Result<()> {
        for (i, b) in c.betas.iter().enumerate() {
            if !(b.is_finite() && (0.0..1.0).contains(b)) {
                return Err(OptimError::config(
                    "betas",
                    format!("betas[{i}] must be in [0, 1), got {b}"),
                ));
            }
        }
        check_eps(c.eps)?;
        check_power(c.power)
    }

    fn slots(c: &OptimizerConfig) -> Vec<SlotSpec> {
        if c.amsgrad {
            vec![
                SlotSpec::squares("exp_avg_sq"),
                SlotSpec::squares("max_exp_avg_sq"),
                SlotSpec::zero("exp_avg"),
            ]
        } else {
            vec![SlotSpec::squares("exp_avg_sq"), SlotSpec::zero("exp_avg")]
        }
    }

    /// `|m| ≤ C_k sqrt(v)` element-wise: with `m_k = Σ (1−β₁)β₁^{k−i} g_i` and
    /// `v_k = Σ (1−β₂)β₂^{k−i} g_i²` over the same gradients, Cauchy–Schwarz gives
    /// `C_k = (1−β₁)/sqrt(1−β₂) · sqrt(Σ_{j<k} (β₁²/β₂)^j)` (≤ `(1−β₁)/sqrt((1−β₂)(1−β₁²/β₂))`
    /// when `β₁² < β₂`, the usual case). Slack for rounding: `|m| ≤ (1 + 10⁻³) C_k
    /// sqrt(v + f32::MIN_POSITIVE)` (the absolute term covers squares that underflow in `f32`).
    /// Skipped when `C_k` is not finite.
    fn check_state(
        c: &OptimizerConfig,
        step: u64,
        arrays: &[&[f64]],
        _geo: &Geometry,
    ) -> std::result::Result<(), String> {
        let [b1, b2] = c.betas;
        let Some(ck) = moment_ratio_bound(b1, b2, 1.0 - b2, step) else {
            return Ok(());
        };
        // exp_avg_sq first, exp_avg last (AMSGrad's max in between, ≥ exp_avg_sq)
        let (Some(v), Some(m)) = (arrays.first(), arrays.last()) else {
            return Ok(());
        };
        for (i, (&mi, &vi)) in m.iter().zip(v.iter()).enumerate() {
            let bound = (1.0 + 1e-3) * ck * (vi + f64::from(f32::MIN_POSITIVE)).sqrt();
            if mi.abs() > bound {
                return Err(format!(
                    "exp_avg[{i}] = {mi} but exp_avg_sq[{i}] = {vi}: |exp_avg| ≤ {ck:.6} sqrt(exp_avg_sq) holds for every state Adam's recursions produce after {step} steps"
                ));
            }
        }
        Ok(())
    }

    fn observe<T: StepFloat>(
        c: &OptimizerConfig,
        step: u64,
        state: Option<&Slots<T>>,
        out: &mut [f64],
    ) -> Result<()> {
        let s = match state {
            Some(s) if step > 0 => s,
            _ => {
                return Err(OptimError::NoPreconditionerYet {
                    optimizer: c.optimizer.name(),
                });
            }
        };
        let b2 = c.betas[1];
        with_root!(c.power, T, |r| if c.amsgrad {
            observe_with(
                AdamPrecond::<T, true, _>::with_root(b2, c.eps, step, r),
                s,
                out,
            );
        } else {
            observe_with(
                AdamPrecond::<T, false, _>::with_root(b2, c.eps, step, r),
                s,
                out,
            );
        });
        Ok(())
    }

    fn run_segment<T: StepFloat>(
        c: &OptimizerConfig,
        s: &SegStep,
        b: Buffers<'_, T>,
    ) -> Result<bool> {
        let [b1, b2] = c.betas;
        let mom = Ema::new(b1, s.lr, s.k);
        with_root!(c.power, T, |r| if c.amsgrad {
            with_reg(
                s,
                s.lr,
                AdamPrecond::<T, true, _>::with_root(b2, c.eps, s.k, r),
                mom,
                b,
            )
        } else {
            with_reg(
                s,
                s.lr,
                AdamPrecond::<T, false, _>::with_root(b2, c.eps, s.k, r),
                mom,
                b,
            )
        })
    }
}

/// `C_k` with `|m_k| ≤ C_k sqrt(v_k)` for `m_k = Σ_{i≤k} (1−β₁)β₁^{k−i} g_i` and
/// `v_k = Σ_{i≤k} w β₂^{k−i} g_i²` (Cauchy–Schwarz): `C_k = (1−β₁) sqrt(Σ_{j<k} (β₁²/β₂)^j / w)`.
/// `None` when it is not finite or undefined (`β₂ = 0`, `w = 0`, `k = 0`): no check then.
/// Adam: `w = 1 − β₂`; Shampoo's factors: `w = 1` for `β₂ = 1` (a sum), else `1 − β₂`.
pub(crate) fn moment_ratio_bound(b1: f64, b2: f64, w: f64, step: u64) -> Option<f64> {
    if step == 0 || b2 <= 0.0 || w <= 0.0 {
        return None;
    }
    let r = b1 * b1 / b2;
    let k = step as f64;
    let sum = if r < 1.0 {
        crate::float::one_minus_pow(r, step) / (1.0 - r)
    } else {
        // r ≥ 1: the finite sum is at most k r^(k−1)
        k * r.powf(k - 1.0)
    };
    let ck = (1.0 - b1) * (sum / w).sqrt();
    ck.is_finite().then_some(ck)
}
