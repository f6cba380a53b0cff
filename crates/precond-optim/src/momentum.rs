//! Momentum rules: how the (preconditioned) step direction is formed from the gradient.
//!
//! Each rule returns the increment `Δ` with `x ← x + Δ` (before the regularizer's final
//! touch), and carries the (negative) step size itself so that the arithmetic order is torch's.

use crate::bound::{Iv, lift};
use crate::float::Float;
use crate::precond::{Lerp, PrecondRule};

/// A momentum rule: one part of a fused optimizer (see [`crate::kernel::Fused`]).
///
/// # References
///
/// - \[Polyak1964\] B. T. Polyak. *Some methods of speeding up the convergence of iteration
///   methods.* USSR Computational Mathematics and Mathematical Physics 4(5):1–17, 1964.
/// - \[Kingma2015\] D. P. Kingma, J. Ba. *Adam: a method for stochastic optimization.* ICLR 2015.
///   <https://arxiv.org/abs/1412.6980>
pub trait MomentumRule<T: Float>: Copy + Send + Sync {
    /// Number of per-element state slots this rule owns.
    const SLOTS: usize;
    /// The increment `Δ` for gradient `g` (after `maximize` and coupled regularization), the
    /// preconditioner `pre` with its per-element `q`, and this rule's state slots `s`.
    fn increment<P: PrecondRule<T>>(&self, g: T, pre: &P, q: T, s: &mut [T]) -> T;
    /// The same rule over intervals ([`crate::bound`]).
    type Lifted: MomentumRule<Iv<T>>;
    /// This rule with every coefficient as a point interval.
    fn lift(&self) -> Self::Lifted;
}

/// No momentum: `Δ = P (scale · g)` with `scale = −η` (torch: `addcdiv_(g, denom, value=−lr)`).
///
/// # References
///
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md (1) and (5).
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
    type Lifted = NoMomentum<Iv<T>>;
    fn lift(&self) -> Self::Lifted {
        NoMomentum {
            scale: lift(self.scale),
        }
    }
}

/// torch `SGD` momentum on the gradient (heavy ball, Nesterov when `NESTEROV`), slot 0 =
/// buffer `b`: `b ← μ b + (1 − dampening) g` (the first step sets `b = g`), `u = g + μ b`
/// (Nesterov) or `u = b`, `Δ = P (−η u)`. The first step is a pair of coefficients (`μ → 0`,
/// `1 − dampening → 1`). The Nesterov choice and whether `g` is scaled at all (`DAMPENED`:
/// a dampening other than 0, after the first step) are the type's, so that the common heavy
/// ball computes exactly torch's `b = μ b + g`, `u = b`: no `1 · g`, no `0 · g + 1 · b` (four
/// multiplications less per element than a coefficient form, and `u = b` also where `g` is
/// infinite, as in torch).
///
/// With a constant step, no dampening and no Nesterov term this is Polyak's heavy ball on the
/// preconditioned gradient: $x_{k+1} = x_k - \eta P g_k + \mu (x_k - x_{k-1})$.
///
/// # References
///
/// - \[Polyak1964\] B. T. Polyak. *Some methods of speeding up the convergence of iteration
///   methods.* USSR Computational Mathematics and Mathematical Physics 4(5):1–17, 1964.
/// - \[Nesterov1983\] Y. Nesterov. *A method for solving the convex programming problem with
///   convergence rate O(1/k²).* Soviet Mathematics Doklady 27:372–376, 1983.
/// - \[Sutskever2013\] I. Sutskever, J. Martens, G. Dahl, G. Hinton. *On the importance of
///   initialization and momentum in deep learning.* ICML 2013 (the Nesterov form torch uses).
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §1, heavy-ball momentum.
#[derive(Clone, Copy, Debug)]
pub struct HeavyBall<T, const NESTEROV: bool, const DAMPENED: bool> {
    keep: T,
    grad_coeff: T,
    momentum: T,
    scale: T,
}

impl<T: Float, const NESTEROV: bool, const DAMPENED: bool> HeavyBall<T, NESTEROV, DAMPENED> {
    /// Momentum `μ`, `dampening`, learning rate `lr`; `first` is true on the very first step
    /// (torch initialises the buffer to the gradient then, without dampening). With
    /// `DAMPENED = false` the gradient enters unscaled: use it when `dampening = 0` or
    /// `first` (the coefficient `1 − dampening` is then exactly 1).
    pub fn new(momentum: f64, dampening: f64, lr: f64, first: bool) -> Self {
        let (keep, grad_coeff) = if first {
            (0.0, 1.0)
        } else {
            (momentum, 1.0 - dampening)
        };
        HeavyBall {
            keep: T::from_f64(keep),
            grad_coeff: T::from_f64(grad_coeff),
            momentum: T::from_f64(momentum),
            scale: T::from_f64(-lr),
        }
    }
}

impl<T: Float, const NESTEROV: bool, const DAMPENED: bool> MomentumRule<T>
    for HeavyBall<T, NESTEROV, DAMPENED>
{
    const SLOTS: usize = 1;
    #[inline(always)]
    fn increment<P: PrecondRule<T>>(&self, g: T, pre: &P, q: T, s: &mut [T]) -> T {
        let b = if DAMPENED {
            s[0] * self.keep + self.grad_coeff * g
        } else {
            s[0] * self.keep + g
        };
        s[0] = b;
        let u = if NESTEROV { g + self.momentum * b } else { b };
        pre.apply(q, self.scale * u)
    }
    type Lifted = HeavyBall<Iv<T>, NESTEROV, DAMPENED>;
    fn lift(&self) -> Self::Lifted {
        HeavyBall {
            keep: lift(self.keep),
            grad_coeff: lift(self.grad_coeff),
            momentum: lift(self.momentum),
            scale: lift(self.scale),
        }
    }
}

/// Adam's first moment (8), slot 0: `m ← lerp(m, g, 1 − β₁)`, `Δ = P (−(η/(1 − β₁^k)) m)`
/// (torch: `addcdiv_(m, denom, value=−step_size)`).
///
/// In the notation of THEORY.md: $m_k = \beta_1 m_{k-1} + (1 - \beta_1) g_k$ and $\hat m_k =
/// m_k/(1 - \beta_1^k)$.
///
/// # References
///
/// - \[Kingma2015\] D. P. Kingma, J. Ba. *Adam: a method for stochastic optimization.* ICLR 2015.
///   <https://arxiv.org/abs/1412.6980>
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §4, (8).
#[derive(Clone, Copy, Debug)]
pub struct Ema<T> {
    lerp: Lerp<T>,
    scale: T,
}

impl<T: Float> Ema<T> {
    /// `β₁`, learning rate `lr`, step `k ≥ 1`.
    pub fn new(beta1: f64, lr: f64, k: u64) -> Self {
        let bc1 = crate::float::one_minus_pow(beta1, k);
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
    type Lifted = Ema<Iv<T>>;
    fn lift(&self) -> Self::Lifted {
        Ema {
            lerp: self.lerp.lift(),
            scale: lift(self.scale),
        }
    }
}

/// torch `RMSprop` momentum on the *preconditioned* gradient, slot 0 = buffer `b` (starts at 0):
/// `b ← μ b + P g`, `Δ = −η b`.
///
/// # References
///
/// - \[Tieleman2012\] T. Tieleman, G. Hinton. *Lecture 6.5 — RMSProp: divide the gradient by a
///   running average of its recent magnitude.* COURSERA: Neural Networks for Machine Learning,
///   2012.
/// - \[Polyak1964\] B. T. Polyak. *Some methods of speeding up the convergence of iteration
///   methods.* USSR Computational Mathematics and Mathematical Physics 4(5):1–17, 1964.
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
    type Lifted = PostHeavyBall<Iv<T>>;
    fn lift(&self) -> Self::Lifted {
        PostHeavyBall {
            momentum: lift(self.momentum),
            scale: lift(self.scale),
        }
    }
}
