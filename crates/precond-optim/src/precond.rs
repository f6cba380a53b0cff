//! Diagonal preconditioner rules `P_k` (THEORY.md section 4).
//!
//! A rule keeps its accumulators in per-element state slots and produces, per element, a number
//! `q` from which `P_k u`, `p_i` and `sqrt(p_i)` follow. For the adaptive rules `q` is torch's
//! denominator (`sqrt(·) + eps`) and `P_k u = u / q`, so that the arithmetic is the one torch does.

use crate::float::Float;

/// A diagonal preconditioner rule: one part of a fused optimizer (see [`crate::kernel::Fused`]).
///
/// `P_k = diag(p)`; the learning rate is kept outside `P` (THEORY.md section 5).
///
/// # References
///
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §2, (5), and §4.
pub trait PrecondRule<T: Float>: Copy + Send + Sync {
    /// Number of per-element state slots this rule owns.
    const SLOTS: usize;
    /// Whether the rule reads the read-only per-element auxiliary buffer (a fixed `P`).
    const USES_AUX: bool = false;
    /// Whether computing `q` costs a square root per element (the adaptive rules), which makes
    /// the fused step arithmetic-bound rather than memory-bound.
    const HEAVY: bool = false;
    /// Feed gradient `g` (after `maximize` and coupled regularization) into the accumulators `s`
    /// and return `q` describing `p_i` at the new step.
    fn update(&self, g: T, aux: T, s: &mut [T]) -> T;
    /// `p_i · u`. The default is the adaptive rules' convention: `q` is torch's denominator
    /// (`sqrt(·) + eps`) and `p_i · u = u / q`, the arithmetic torch does.
    #[inline(always)]
    fn apply(&self, q: T, u: T) -> T {
        u / q
    }
    /// `p_i` (default: `1 / q`, see [`Self::apply`]).
    #[inline(always)]
    fn p(&self, q: T) -> T {
        T::ONE / q
    }
    /// `sqrt(p_i)` (the scale of intrinsic regularizers, Theorem 4; default `1 / sqrt(q)`).
    #[inline(always)]
    fn sqrt_p(&self, q: T) -> T {
        T::ONE / q.sqrt()
    }
    /// `q` of the current state without feeding a gradient (used to observe `P_k`).
    fn current(&self, aux: T, s: &[T]) -> T;
}

/// `P = I`: plain (stochastic) gradient descent (1).
///
/// # References
///
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md (1).
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl<T: Float> PrecondRule<T> for Identity {
    const SLOTS: usize = 0;
    #[inline(always)]
    fn update(&self, _g: T, _aux: T, _s: &mut [T]) -> T {
        T::ONE
    }
    #[inline(always)]
    fn apply(&self, _q: T, u: T) -> T {
        u
    }
    #[inline(always)]
    fn p(&self, _q: T) -> T {
        T::ONE
    }
    #[inline(always)]
    fn sqrt_p(&self, _q: T) -> T {
        T::ONE
    }
    #[inline(always)]
    fn current(&self, _aux: T, _s: &[T]) -> T {
        T::ONE
    }
}

/// A fixed positive diagonal `P = diag(p)` given by the user: preconditioned GD (5),
/// `x ← x − η P ∇f(x)`. `p` lives in the auxiliary buffer.
///
/// In the notation of THEORY.md: $x_{k+1} = x_k - \eta P \nabla f(x_k)$ with $P =
/// \operatorname{diag}(p)$.
///
/// # References
///
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §2, (5).
#[derive(Clone, Copy, Debug, Default)]
pub struct FixedDiag;

impl<T: Float> PrecondRule<T> for FixedDiag {
    const SLOTS: usize = 0;
    const USES_AUX: bool = true;
    #[inline(always)]
    fn update(&self, _g: T, aux: T, _s: &mut [T]) -> T {
        aux
    }
    #[inline(always)]
    fn apply(&self, q: T, u: T) -> T {
        u * q
    }
    #[inline(always)]
    fn p(&self, q: T) -> T {
        q
    }
    #[inline(always)]
    fn sqrt_p(&self, q: T) -> T {
        q.sqrt()
    }
    #[inline(always)]
    fn current(&self, aux: T, _s: &[T]) -> T {
        aux
    }
}

/// AdaGrad's accumulator (torch `Adagrad`): `G_k = G_{k−1} + g_k²` (slot 0, initialised to
/// `initial_accumulator_value`), `P_k = diag(1/(sqrt(G_k) + eps))`. The learning-rate decay
/// `lr/(1 + (k−1)·lr_decay)` is a scalar kept outside `P` (it does not change `κ`).
///
/// In the notation of THEORY.md: $G_k = G_{k-1} + g_k^2$ and $P_k =
/// \operatorname{diag}\big(1/(\sqrt{G_k} + \epsilon)\big)$.
///
/// # References
///
/// - \[Duchi2011\] J. Duchi, E. Hazan, Y. Singer. *Adaptive subgradient methods for online learning
///   and stochastic optimization.* JMLR 12:2121–2159, 2011.
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §4 (AdaGrad).
#[derive(Clone, Copy, Debug)]
pub struct AdagradPrecond<T> {
    /// `eps`, added after the square root.
    pub eps: T,
}

impl<T: Float> PrecondRule<T> for AdagradPrecond<T> {
    const SLOTS: usize = 1;
    const HEAVY: bool = true;
    #[inline(always)]
    fn update(&self, g: T, _aux: T, s: &mut [T]) -> T {
        let sum = s[0] + g * g;
        s[0] = sum;
        sum.sqrt() + self.eps
    }
    #[inline(always)]
    fn current(&self, _aux: T, s: &[T]) -> T {
        s[0].sqrt() + self.eps
    }
}

/// torch's `lerp(start, end, w)` on CPU: `start + w (end − start)` if `|w| < 0.5`, else
/// `end − (end − start)(1 − w)`.
#[derive(Clone, Copy, Debug)]
pub struct Lerp<T> {
    small: bool,
    coeff: T,
}

impl<T: Float> Lerp<T> {
    /// The interpolation towards `end` with weight `w` (given in `f64`, rounded to `T` as torch does).
    pub fn new(w: f64) -> Self {
        let wt = T::from_f64(w);
        let small = w.abs() < 0.5;
        Lerp {
            small,
            coeff: if small { wt } else { wt - T::ONE },
        }
    }
    /// `lerp(start, end)`.
    #[inline(always)]
    pub fn apply(&self, start: T, end: T) -> T {
        let base = if self.small { start } else { end };
        base + self.coeff * (end - start)
    }
}

/// RMSProp (6), torch `RMSprop`: `v_k = α v_{k−1} + (1 − α) g_k²` (slot 0); if `CENTERED`,
/// `ḡ_k = lerp(ḡ_{k−1}, g_k, 1 − α)` (slot 1) and `v` is replaced by `v_k − ḡ_k²`.
/// `P_k = diag(1/(sqrt(v_k) + eps))` (eps outside the root, as torch).
///
/// In the notation of THEORY.md (torch's `alpha` is the $\beta$ of (6)): $v_k = \alpha
/// v_{k-1} + (1 - \alpha) g_k^2$ and $P_k =
/// \operatorname{diag}\big(1/(\sqrt{v_k} + \epsilon)\big)$.
///
/// # References
///
/// - \[Tieleman2012\] T. Tieleman, G. Hinton. *Lecture 6.5 — RMSProp: divide the gradient by a
///   running average of its recent magnitude.* COURSERA: Neural Networks for Machine Learning,
///   2012.
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §4, (6)–(7).
#[derive(Clone, Copy, Debug)]
pub struct RmsPrecond<T, const CENTERED: bool> {
    /// `α` (torch `alpha`).
    pub alpha: T,
    /// `1 − α`, computed in `f64`.
    pub one_minus_alpha: T,
    /// `lerp` towards `g` with weight `1 − α` (centered only).
    pub lerp: Lerp<T>,
    /// `eps`.
    pub eps: T,
}

impl<T: Float, const CENTERED: bool> RmsPrecond<T, CENTERED> {
    /// The rule for smoothing constant `alpha` and `eps`.
    pub fn new(alpha: f64, eps: f64) -> Self {
        RmsPrecond {
            alpha: T::from_f64(alpha),
            one_minus_alpha: T::from_f64(1.0 - alpha),
            lerp: Lerp::new(1.0 - alpha),
            eps: T::from_f64(eps),
        }
    }
}

impl<T: Float, const CENTERED: bool> PrecondRule<T> for RmsPrecond<T, CENTERED> {
    const SLOTS: usize = 1 + CENTERED as usize;
    const HEAVY: bool = true;
    #[inline(always)]
    fn update(&self, g: T, _aux: T, s: &mut [T]) -> T {
        let v = s[0] * self.alpha + self.one_minus_alpha * g * g;
        s[0] = v;
        if CENTERED {
            let ga = self.lerp.apply(s[1], g);
            s[1] = ga;
            (v + (-ga) * ga).sqrt() + self.eps
        } else {
            v.sqrt() + self.eps
        }
    }
    #[inline(always)]
    fn current(&self, _aux: T, s: &[T]) -> T {
        if CENTERED {
            (s[0] + (-s[1]) * s[1]).sqrt() + self.eps
        } else {
            s[0].sqrt() + self.eps
        }
    }
}

/// Adam's second moment (8), torch `Adam`: `v_k = β₂ v_{k−1} + (1 − β₂) g_k²` (slot 0); with
/// `AMSGRAD`, `v_max = max(v_max, v_k)` (slot 1, the max of the *raw* moment) replaces `v_k`.
/// `P_k = diag(1/(sqrt(v̂_k) + eps))` with `v̂_k = v_k/(1 − β₂^k)`, with torch's placement of
/// `eps` (outside the square root, after the bias correction): `sqrt(v_k) · (1/sqrt(1 − β₂^k)) + eps`.
/// The reciprocal of the bias correction is taken once per step (in `f64`), so each element costs
/// one square root and one division (by this denominator) instead of torch's two divisions; the
/// result differs from torch's `sqrt(v)/sqrt(1 − β₂^k)` by at most one rounding of that quotient.
/// The learning rate is kept outside `P`.
///
/// In the notation of THEORY.md: $\hat v_k = v_k/(1 - \beta_2^k)$ and $P_k =
/// \operatorname{diag}\big(1/(\sqrt{\hat v_k} + \epsilon)\big)$.
///
/// # References
///
/// - \[Kingma2015\] D. P. Kingma, J. Ba. *Adam: a method for stochastic optimization.* ICLR 2015.
///   <https://arxiv.org/abs/1412.6980>
/// - \[Reddi2018\] S. J. Reddi, S. Kale, S. Kumar. *On the convergence of Adam and beyond.* ICLR
///   2018 (AMSGrad).
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §4, (8).
#[derive(Clone, Copy, Debug)]
pub struct AdamPrecond<T, const AMSGRAD: bool> {
    /// `β₂`.
    pub beta2: T,
    /// `1 − β₂`, computed in `f64`.
    pub one_minus_beta2: T,
    /// `1/sqrt(1 − β₂^k)` for the current step `k` (computed in `f64`).
    pub inv_bc2_sqrt: T,
    /// `eps`.
    pub eps: T,
}

impl<T: Float, const AMSGRAD: bool> AdamPrecond<T, AMSGRAD> {
    /// The rule at step `k ≥ 1` (bias correction `1 − β₂^k` with the libm `pow`, as Python's `**`).
    pub fn new(beta2: f64, eps: f64, k: u64) -> Self {
        let bc2 = 1.0 - beta2.powf(k as f64);
        AdamPrecond {
            beta2: T::from_f64(beta2),
            one_minus_beta2: T::from_f64(1.0 - beta2),
            inv_bc2_sqrt: T::from_f64(1.0 / bc2.sqrt()),
            eps: T::from_f64(eps),
        }
    }
}

impl<T: Float, const AMSGRAD: bool> PrecondRule<T> for AdamPrecond<T, AMSGRAD> {
    const SLOTS: usize = 1 + AMSGRAD as usize;
    const HEAVY: bool = true;
    #[inline(always)]
    fn update(&self, g: T, _aux: T, s: &mut [T]) -> T {
        let v = s[0] * self.beta2 + self.one_minus_beta2 * g * g;
        s[0] = v;
        if AMSGRAD {
            let vm = s[1].maxv(v);
            s[1] = vm;
            vm.sqrt() * self.inv_bc2_sqrt + self.eps
        } else {
            v.sqrt() * self.inv_bc2_sqrt + self.eps
        }
    }
    #[inline(always)]
    fn current(&self, _aux: T, s: &[T]) -> T {
        let v = if AMSGRAD { s[1] } else { s[0] };
        v.sqrt() * self.inv_bc2_sqrt + self.eps
    }
}
