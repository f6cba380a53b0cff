//! Momentum rules: how the (preconditioned) step direction is formed from the gradient.
//!
//! Each rule returns the increment `Δ` with `x ← x + Δ` (before the regularizer's final
//! touch), and carries the (negative) step size itself so that the arithmetic order is torch's.

use crate::float::Float;
use crate::precond::{Lerp, PrecondRule};

/// A momentum rule: one part of a fused optimizer (see [`crate::kernel::Fused`]).
pub trait MomentumRule<T: Float>: Copy + Send + Sync {
    /// Number of per-element state slots this rule owns.
    const SLOTS: usize;
    /// The increment `Δ` for gradient `g` (after `maximize` and coupled regularization), the
    /// preconditioner `pre` with its per-element `q`, and this rule's state slots `s`.
    fn increment<P: PrecondRule<T>>(&self, g: T, pre: &P, q: T, s: &mut [T]) -> T;
}

/// No momentum: `Δ = P (scale · g)` with `scale = −η` (torch: `addcdiv_(g, denom, value=−lr)`).
#[derive(Clone, Copy, Debug)]
pub struct NoMomentum<T> {
    /// `−η` (or AdaGrad's `−η/(1 + (k−1)·lr_decay)`).
    pub scale: T,
}

impl<T: Float> MomentumRule<T> for NoMomentum<T> {
    const SLOTS: usize = 0;
    #[inline(always)]
    fn increment<P: PrecondRule<T>>(&self, g: T, pre: &P, q: T, _s: &mut [T]) -> T {
        pre.apply(q, self.scale * g)
    }
}

/// torch `SGD` momentum on the gradient (heavy ball, optionally Nesterov), slot 0 = buffer `b`:
/// `b ← μ b + (1 − dampening) g` (the first step sets `b = g`), `u = g + μ b` (Nesterov) or `u = b`,
/// `Δ = P (−η u)`. Branch-free: the first step and the non-Nesterov case are coefficients.
#[derive(Clone, Copy, Debug)]
pub struct HeavyBall<T> {
    keep: T,
    grad_coeff: T,
    nest_g: T,
    nest_b: T,
    scale: T,
}

impl<T: Float> HeavyBall<T> {
    /// Momentum `μ`, `dampening`, `nesterov`, learning rate `lr`; `first` is true on the very first
    /// step (torch initialises the buffer to the gradient then, without dampening).
    pub fn new(momentum: f64, dampening: f64, nesterov: bool, lr: f64, first: bool) -> Self {
        let (keep, grad_coeff) = if first {
            (0.0, 1.0)
        } else {
            (momentum, 1.0 - dampening)
        };
        let (nest_g, nest_b) = if nesterov {
            (1.0, momentum)
        } else {
            (0.0, 1.0)
        };
        HeavyBall {
            keep: T::from_f64(keep),
            grad_coeff: T::from_f64(grad_coeff),
            nest_g: T::from_f64(nest_g),
            nest_b: T::from_f64(nest_b),
            scale: T::from_f64(-lr),
        }
    }
}

impl<T: Float> MomentumRule<T> for HeavyBall<T> {
    const SLOTS: usize = 1;
    #[inline(always)]
    fn increment<P: PrecondRule<T>>(&self, g: T, pre: &P, q: T, s: &mut [T]) -> T {
        let b = s[0] * self.keep + self.grad_coeff * g;
        s[0] = b;
        let u = self.nest_g * g + self.nest_b * b;
        pre.apply(q, self.scale * u)
    }
}

/// Adam's first moment (8), slot 0: `m ← lerp(m, g, 1 − β₁)`, `Δ = P (−(η/(1 − β₁^k)) m)`
/// (torch: `addcdiv_(m, denom, value=−step_size)`).
#[derive(Clone, Copy, Debug)]
pub struct Ema<T> {
    lerp: Lerp<T>,
    scale: T,
}

impl<T: Float> Ema<T> {
    /// `β₁`, learning rate `lr`, step `k ≥ 1`.
    pub fn new(beta1: f64, lr: f64, k: u64) -> Self {
        let bc1 = 1.0 - beta1.powf(k as f64);
        Ema {
            lerp: Lerp::new(1.0 - beta1),
            scale: T::from_f64(-(lr / bc1)),
        }
    }
}

impl<T: Float> MomentumRule<T> for Ema<T> {
    const SLOTS: usize = 1;
    #[inline(always)]
    fn increment<P: PrecondRule<T>>(&self, g: T, pre: &P, q: T, s: &mut [T]) -> T {
        let m = self.lerp.apply(s[0], g);
        s[0] = m;
        pre.apply(q, self.scale * m)
    }
}

/// torch `RMSprop` momentum on the *preconditioned* gradient, slot 0 = buffer `b` (starts at 0):
/// `b ← μ b + P g`, `Δ = −η b`.
#[derive(Clone, Copy, Debug)]
pub struct PostHeavyBall<T> {
    /// `μ`.
    pub momentum: T,
    /// `−η`.
    pub scale: T,
}

impl<T: Float> MomentumRule<T> for PostHeavyBall<T> {
    const SLOTS: usize = 1;
    #[inline(always)]
    fn increment<P: PrecondRule<T>>(&self, g: T, pre: &P, q: T, s: &mut [T]) -> T {
        let b = s[0] * self.momentum + pre.apply(q, g);
        s[0] = b;
        self.scale * b
    }
}
