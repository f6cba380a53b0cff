//! Diagonal preconditioner rules `P_k` (THEORY.md section 4).
//!
//! A rule keeps its accumulators in per-element state slots and produces, per element, a number
//! `q` from which `P_k u`, `p_i` and `sqrt(p_i)` follow. For the adaptive rules `q` is torch's
//! denominator (`sqrt(·) + eps`) and `P_k u = u / q`, so that the arithmetic is the one torch does.

use crate::bound::{Iv, lift};
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
    /// The same rule over intervals ([`crate::bound`]).
    type Lifted: PrecondRule<Iv<T>>;
    /// This rule with every coefficient as a point interval.
    fn lift(&self) -> Self::Lifted;
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
    type Lifted = Identity;
    fn lift(&self) -> Identity {
        Identity
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
    type Lifted = FixedDiag;
    fn lift(&self) -> FixedDiag {
        FixedDiag
    }
}

/// The map `v ↦ v^power` an adaptive rule applies to its second-moment estimate before adding
/// `eps`: `P = 1/(v̂^power + eps)` (THEORY.md §4: `power = 1/2`, the square root, is AdaGrad's,
/// RMSProp's and Adam's; `power = 1` is the diagonal Fisher / Gauss–Newton natural-gradient
/// scaling `1/(v̂ + eps)`). [`SqrtRoot`] is the default and is exactly the `sqrt` these rules
/// always did; [`LinearRoot`] uses `v` as is; [`PowRoot`] calls `powf`.
pub trait Root<T: Float>: Copy + Send + Sync {
    /// `v^power`.
    fn root(&self, v: T) -> T;
    /// `(1/c)^power` in `f64`, for a bias correction `c` (Adam's `1 − β₂^k`): the factor that
    /// turns `v^power` into `v̂^power = (v/c)^power`.
    fn inv_bias(&self, c: f64) -> f64;
    /// The same map over intervals.
    type Lifted: Root<Iv<T>>;
    /// This map over intervals.
    fn lift(&self) -> Self::Lifted;
}

/// `power = 1/2`: `sqrt(v)` (the default; bit-identical to the rules before `power` existed).
#[derive(Clone, Copy, Debug, Default)]
pub struct SqrtRoot;

impl<T: Float> Root<T> for SqrtRoot {
    #[inline(always)]
    fn root(&self, v: T) -> T {
        v.sqrt()
    }
    #[inline(always)]
    fn inv_bias(&self, c: f64) -> f64 {
        1.0 / c.sqrt()
    }
    type Lifted = SqrtRoot;
    fn lift(&self) -> SqrtRoot {
        SqrtRoot
    }
}

/// `power = 1`: `v` itself (no root; the diagonal Fisher / Gauss–Newton scaling).
#[derive(Clone, Copy, Debug, Default)]
pub struct LinearRoot;

impl<T: Float> Root<T> for LinearRoot {
    #[inline(always)]
    fn root(&self, v: T) -> T {
        v
    }
    #[inline(always)]
    fn inv_bias(&self, c: f64) -> f64 {
        1.0 / c
    }
    type Lifted = LinearRoot;
    fn lift(&self) -> LinearRoot {
        LinearRoot
    }
}

/// Any other `power` in `(0, 1]`: `v.powf(power)` (libm `pow`, one call per element: slower than
/// the square root, which stays the default).
#[derive(Clone, Copy, Debug)]
pub struct PowRoot<T> {
    /// The exponent, rounded to `T`.
    pub power: T,
    /// The exponent in `f64` (for the bias correction).
    pub power_f64: f64,
}

impl<T: Float> PowRoot<T> {
    /// `v ↦ v^power`.
    pub fn new(power: f64) -> Self {
        PowRoot {
            power: T::from_f64(power),
            power_f64: power,
        }
    }
}

impl<T: Float> Root<T> for PowRoot<T> {
    #[inline(always)]
    fn root(&self, v: T) -> T {
        v.powf(self.power)
    }
    #[inline(always)]
    fn inv_bias(&self, c: f64) -> f64 {
        c.powf(-self.power_f64)
    }
    type Lifted = PowRoot<Iv<T>>;
    fn lift(&self) -> PowRoot<Iv<T>> {
        PowRoot {
            power: lift(self.power),
            power_f64: self.power_f64,
        }
    }
}

/// Which [`Root`] a configured `power` selects (the kinds dispatch on it once per step).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum RootKind {
    Sqrt,
    Linear,
    Pow(f64),
}

impl RootKind {
    /// Exactly `0.5` and exactly `1` select the special cases (bit comparison: the value the
    /// configuration holds, not a tolerance).
    pub(crate) fn of(power: f64) -> Self {
        if power.to_bits() == 0.5f64.to_bits() {
            RootKind::Sqrt
        } else if power.to_bits() == 1f64.to_bits() {
            RootKind::Linear
        } else {
            RootKind::Pow(power)
        }
    }
}

/// Run `$body` with `$r` bound to the [`Root`] of `$power` (three monomorphic copies).
macro_rules! with_root {
    ($power:expr, $t:ty, |$r:ident| $body:expr) => {
        match $crate::precond::RootKind::of($power) {
            $crate::precond::RootKind::Sqrt => {
                let $r = $crate::precond::SqrtRoot;
                $body
            }
            $crate::precond::RootKind::Linear => {
                let $r = $crate::precond::LinearRoot;
                $body
            }
            $crate::precond::RootKind::Pow(p) => {
                let $r = $crate::precond::PowRoot::<$t>::new(p);
                $body
            }
        }
    };
}
pub(crate) use with_root;

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
///
/// With a [`Root`] other than the default [`SqrtRoot`] (config key `power`):
/// `P_k = diag(1/(G_k^power + eps))`.
#[derive(Clone, Copy, Debug)]
pub struct AdagradPrecond<T, R = SqrtRoot> {
    /// `eps`, added after the square root.
    pub eps: T,
    /// `G ↦ G^power` (default: the square root).
    pub root: R,
}

impl<T: Float> AdagradPrecond<T> {
    /// The rule with `eps` and the square root.
    pub fn new(eps: f64) -> Self {
        AdagradPrecond {
            eps: T::from_f64(eps),
            root: SqrtRoot,
        }
    }
}

impl<T: Float, R: Root<T>> PrecondRule<T> for AdagradPrecond<T, R> {
    const SLOTS: usize = 1;
    const HEAVY: bool = true;
    #[inline(always)]
    fn update(&self, g: T, _aux: T, s: &mut [T]) -> T {
        let sum = s[0] + g.sq();
        s[0] = sum;
        self.root.root(sum) + self.eps
    }
    #[inline(always)]
    fn current(&self, _aux: T, s: &[T]) -> T {
        self.root.root(s[0]) + self.eps
    }
    type Lifted = AdagradPrecond<Iv<T>, R::Lifted>;
    fn lift(&self) -> Self::Lifted {
        AdagradPrecond {
            eps: lift(self.eps),
            root: self.root.lift(),
        }
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
        T::lerp_with(start, end, self.small, self.coeff)
    }
    /// The same interpolation over intervals.
    pub fn lift(&self) -> Lerp<Iv<T>> {
        Lerp {
            small: self.small,
            coeff: lift(self.coeff),
        }
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
///
/// With a [`Root`] other than the default [`SqrtRoot`] (config key `power`):
/// `P_k = diag(1/(v_k^power + eps))`.
#[derive(Clone, Copy, Debug)]
pub struct RmsPrecond<T, const CENTERED: bool, R = SqrtRoot> {
    /// `α` (torch `alpha`).
    pub alpha: T,
    /// `1 − α`, computed in `f64`.
    pub one_minus_alpha: T,
    /// `lerp` towards `g` with weight `1 − α` (centered only).
    pub lerp: Lerp<T>,
    /// `eps`.
    pub eps: T,
    /// `v ↦ v^power` (default: the square root).
    pub root: R,
}

impl<T: Float, const CENTERED: bool> RmsPrecond<T, CENTERED> {
    /// The rule for smoothing constant `alpha` and `eps`.
    pub fn new(alpha: f64, eps: f64) -> Self {
        Self::with_root(alpha, eps, SqrtRoot)
    }
}

impl<T: Float, const CENTERED: bool, R: Root<T>> RmsPrecond<T, CENTERED, R> {
    /// The rule for smoothing constant `alpha`, `eps` and the map `v ↦ v^power`.
    pub fn with_root(alpha: f64, eps: f64, root: R) -> Self {
        RmsPrecond {
            alpha: T::from_f64(alpha),
            one_minus_alpha: T::from_f64(1.0 - alpha),
            lerp: Lerp::new(1.0 - alpha),
            eps: T::from_f64(eps),
            root,
        }
    }
}

impl<T: Float, const CENTERED: bool, R: Root<T>> PrecondRule<T> for RmsPrecond<T, CENTERED, R> {
    const SLOTS: usize = 1 + CENTERED as usize;
    const HEAVY: bool = true;
    #[inline(always)]
    fn update(&self, g: T, _aux: T, s: &mut [T]) -> T {
        let v = s[0] * self.alpha + T::scaled_sq(self.one_minus_alpha, g);
        s[0] = v;
        if CENTERED {
            let ga = self.lerp.apply(s[1], g);
            s[1] = ga;
            self.root.root(v + (-ga) * ga) + self.eps
        } else {
            self.root.root(v) + self.eps
        }
    }
    #[inline(always)]
    fn current(&self, _aux: T, s: &[T]) -> T {
        if CENTERED {
            self.root.root(s[0] + (-s[1]) * s[1]) + self.eps
        } else {
            self.root.root(s[0]) + self.eps
        }
    }
    type Lifted = RmsPrecond<Iv<T>, CENTERED, R::Lifted>;
    fn lift(&self) -> Self::Lifted {
        RmsPrecond {
            alpha: lift(self.alpha),
            one_minus_alpha: lift(self.one_minus_alpha),
            lerp: self.lerp.lift(),
            eps: lift(self.eps),
            root: self.root.lift(),
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
///
/// With a [`Root`] other than the default [`SqrtRoot`] (config key `power`):
/// `P_k = diag(1/(v̂_k^power + eps))`, computed as `v_k^power · (1/(1 − β₂^k))^power + eps`.
#[derive(Clone, Copy, Debug)]
pub struct AdamPrecond<T, const AMSGRAD: bool, R = SqrtRoot> {
    /// `β₂`.
    pub beta2: T,
    /// `1 − β₂`, computed in `f64`.
    pub one_minus_beta2: T,
    /// `1/sqrt(1 − β₂^k)` for the current step `k` (computed in `f64`); with another
    /// [`Root`], `(1/(1 − β₂^k))^power`.
    pub inv_bc2_sqrt: T,
    /// `eps`.
    pub eps: T,
    /// `v ↦ v^power` (default: the square root).
    pub root: R,
}

impl<T: Float, const AMSGRAD: bool> AdamPrecond<T, AMSGRAD> {
    /// The rule at step `k ≥ 1` (bias correction `1 − β₂^k` with the libm `pow`, as Python's `**`).
    pub fn new(beta2: f64, eps: f64, k: u64) -> Self {
        Self::with_root(beta2, eps, k, SqrtRoot)
    }
}

impl<T: Float, const AMSGRAD: bool, R: Root<T>> AdamPrecond<T, AMSGRAD, R> {
    /// The rule at step `k ≥ 1` with the map `v ↦ v^power`.
    pub fn with_root(beta2: f64, eps: f64, k: u64, root: R) -> Self {
        let bc2 = crate::float::one_minus_pow(beta2, k);
        AdamPrecond {
            beta2: T::from_f64(beta2),
            one_minus_beta2: T::from_f64(1.0 - beta2),
            inv_bc2_sqrt: T::from_f64(root.inv_bias(bc2)),
            eps: T::from_f64(eps),
            root,
        }
    }
}

impl<T: Float, const AMSGRAD: bool, R: Root<T>> PrecondRule<T> for AdamPrecond<T, AMSGRAD, R> {
    const SLOTS: usize = 1 + AMSGRAD as usize;
    const HEAVY: bool = true;
    #[inline(always)]
    fn update(&self, g: T, _aux: T, s: &mut [T]) -> T {
        let v = s[0] * self.beta2 + T::scaled_sq(self.one_minus_beta2, g);
        s[0] = v;
        if AMSGRAD {
            let vm = s[1].maxv(v);
            s[1] = vm;
            self.root.root(vm) * self.inv_bc2_sqrt + self.eps
        } else {
            self.root.root(v) * self.inv_bc2_sqrt + self.eps
        }
    }
    #[inline(always)]
    fn current(&self, _aux: T, s: &[T]) -> T {
        let v = if AMSGRAD { s[1] } else { s[0] };
        self.root.root(v) * self.inv_bc2_sqrt + self.eps
    }
    type Lifted = AdamPrecond<Iv<T>, AMSGRAD, R::Lifted>;
    fn lift(&self) -> Self::Lifted {
        AdamPrecond {
            beta2: lift(self.beta2),
            one_minus_beta2: lift(self.one_minus_beta2),
            inv_bc2_sqrt: lift(self.inv_bc2_sqrt),
            eps: lift(self.eps),
            root: self.root.lift(),
        }
    }
}
