//! Regularization as its own part: kind {none, L2, L1, elastic net} × space {original (coupled),
//! intrinsic (decoupled, in `y = S^{-1} x`)} × form {gradient/subgradient, proximal}
//! (THEORY.md section 5, equations (9)–(13) and Theorem 4).
//!
//! With the optimizer written as `x ← x − η P u` and `S = P^{1/2}` (diagonal), the penalty
//! `R(z) = λ (r ||z||₁ + (1 − r)/2 ||z||²)` (`r` = `l1_ratio`: 1 for L1, 0 for L2) acts as follows:
//!
//! | space \ form | gradient / subgradient | proximal |
//! |---|---|---|
//! | original (`z = x`) | `g ← g + λ((1−r) x + r sign(x))` before the moments ((10), (12)) | `x ← soft(x̃, ηλr p) / (1 + ηλ(1−r) p)` |
//! | intrinsic (`z = y`) | `x ← x(1 − ηλ(1−r)) − η P u − ηλ r sqrt(p) sign(x)` ((11), (13)) | `x ← soft(x̃, ηλr sqrt(p)) / (1 + ηλ(1−r))` |
//!
//! where `x̃ = x − η P u` and `soft(z, t) = sign(z) max(|z| − t, 0)`. The proximal forms are the
//! exact proximal maps of `ηR` in the metric `P^{-1}` (original) or in `y` mapped back to `x`
//! (intrinsic). `P` is the optimizer's current `P_k` after this step's update (for Adam
//! `1/(sqrt(v̂_k) + eps)`), `η` the group's scheduled learning rate (AdaGrad: the decayed one).
//! Intrinsic L2 in gradient form is weight decay, applied as `x ← x(1 − ηλ)` *before* the step as
//! torch's `AdamW` does.

use crate::bound::{Iv, lift};
use crate::float::Float;
use crate::precond::PrecondRule;
use serde::{Deserialize, Serialize};

/// Which penalty.
///
/// # References
///
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegKind {
    /// No penalty.
    #[default]
    None,
    /// `(λ/2)||z||²`.
    L2,
    /// `λ||z||₁`.
    L1,
    /// `λ(r||z||₁ + (1−r)/2 ||z||²)`.
    ElasticNet,
}

/// In which variable the penalty acts.
///
/// # References
///
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §5, Theorem 3 and Theorem 4.
/// - \[Loshchilov2019\] I. Loshchilov, F. Hutter. *Decoupled weight decay regularization.* ICLR
///   2019. <https://arxiv.org/abs/1711.05101>
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Space {
    /// On `x` (coupled; torch's `weight_decay` of SGD/Adam/Adagrad/RMSprop), (10)/(12).
    #[default]
    Original,
    /// On `y = S^{-1} x` (decoupled; AdamW's weight decay), (9)/(11)/(13).
    Intrinsic,
}

/// A regularizer specification: the `"regularization"` config object.
///
/// # References
///
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §5.
/// - \[Loshchilov2019\] I. Loshchilov, F. Hutter. *Decoupled weight decay regularization.* ICLR
///   2019. <https://arxiv.org/abs/1711.05101>
/// - \[Parikh2014\] N. Parikh, S. Boyd. *Proximal algorithms.* Foundations and Trends in
///   Optimization 1(3):127–239, 2014.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regularization {
    /// The penalty.
    pub kind: RegKind,
    /// `λ ≥ 0`.
    pub strength: f64,
    /// Elastic net's L1 share `r ∈ [0, 1]` (ignored for other kinds).
    pub l1_ratio: f64,
    /// The variable it acts on.
    pub space: Space,
    /// Proximal (exact zeros for L1) instead of (sub)gradient form.
    pub proximal: bool,
}

impl Regularization {
    /// No regularization.
    pub const NONE: Regularization = Regularization {
        kind: RegKind::None,
        strength: 0.0,
        l1_ratio: 0.0,
        space: Space::Original,
        proximal: false,
    };

    /// `(λ_L1, λ_L2)` split of the penalty.
    pub fn split(&self) -> (f64, f64) {
        match self.kind {
            RegKind::None => (0.0, 0.0),
            RegKind::L1 => (self.strength, 0.0),
            RegKind::L2 => (0.0, self.strength),
            RegKind::ElasticNet => (
                self.strength * self.l1_ratio,
                self.strength * (1.0 - self.l1_ratio),
            ),
        }
    }

    /// True when the penalty is absent or zero.
    pub fn is_none(&self) -> bool {
        self.kind == RegKind::None || self.strength == 0.0
    }
}

/// A regularizer part of a fused optimizer (see [`crate::kernel::Fused`]). The three hooks are where a
/// penalty can enter one fused element update:
/// `g ← grad(x, g)`; `x̃ = decay(x) + Δ`; `x_new = finish(x, x̃, P)`.
///
/// # References
///
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §5.
pub trait Regularizer<T: Float>: Copy + Send + Sync {
    /// Original-space gradient-form terms added to the gradient before the moments.
    #[inline(always)]
    fn grad(&self, _x: T, g: T) -> T {
        g
    }
    /// Intrinsic L2 in gradient form: multiplicative decay applied before the step.
    #[inline(always)]
    fn decay(&self, x: T) -> T {
        x
    }
    /// Intrinsic L1 subgradient term and proximal maps, applied to the stepped `z`.
    #[inline(always)]
    fn finish<P: PrecondRule<T>>(&self, _x_old: T, z: T, _pre: &P, _q: T) -> T {
        z
    }
    /// Whether [`Self::grad`] reads `x` (then the overflow guard needs `max |x|`).
    const GRAD_USES_X: bool = false;
    /// The same regularizer over intervals ([`crate::bound`]).
    type Lifted: Regularizer<Iv<T>>;
    /// This regularizer with every coefficient as a point interval.
    fn lift(&self) -> Self::Lifted;
    /// Whether `x_new = finish(x, decay(x) + d)` is finite for every finite `x`, given
    /// enclosures of the increment `d` and of the rule's `q` (`pre` the lifted rule).
    ///
    /// The default is the regularizers whose `decay` is the identity and `finish` returns `z`:
    /// `x_new = fl(x + d)` is finite for every finite `x` when `|d|` is below half an ulp of the
    /// largest finite value ([`Float::HALF_ULP_MAX`], round to nearest).
    fn finish_finite<P: PrecondRule<Iv<T>>>(
        _lifted: &Self::Lifted,
        d: Iv<T>,
        _q: Iv<T>,
        _pre: &P,
    ) -> bool {
        d.mag() < T::HALF_ULP_MAX
    }
}

/// No penalty.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoReg;
impl<T: Float> Regularizer<T> for NoReg {
    type Lifted = NoReg;
    fn lift(&self) -> NoReg {
        NoReg
    }
}

/// Coupled L2 (10)/(12), torch's `weight_decay` of SGD, Adam, Adagrad, RMSprop: `g ← g + λ x`.
///
/// In the notation of THEORY.md: $x_{k+1} = x_k - \eta P \big(\nabla f(x_k) + \lambda x_k\big)$.
///
/// # References
///
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §5, (10) and (12), Theorem 3.
/// - \[Loshchilov2019\] I. Loshchilov, F. Hutter. *Decoupled weight decay regularization.* ICLR
///   2019. <https://arxiv.org/abs/1711.05101>
#[derive(Clone, Copy, Debug)]
pub struct CoupledL2<T> {
    /// `λ`.
    pub weight_decay: T,
}
impl<T: Float> Regularizer<T> for CoupledL2<T> {
    #[inline(always)]
    fn grad(&self, x: T, g: T) -> T {
        g + self.weight_decay * x
    }
    const GRAD_USES_X: bool = true;
    type Lifted = CoupledL2<Iv<T>>;
    fn lift(&self) -> Self::Lifted {
        CoupledL2 {
            weight_decay: lift(self.weight_decay),
        }
    }
}

/// Intrinsic L2 (9)/(11) = decoupled weight decay, torch `AdamW`: `x ← x (1 − ηλ)` before the step.
///
/// In the notation of THEORY.md: $x_{k+1} = x_k - \eta P \nabla f(x_k) - \eta \lambda x_k$.
///
/// # References
///
/// - \[Loshchilov2019\] I. Loshchilov, F. Hutter. *Decoupled weight decay regularization.* ICLR
///   2019. <https://arxiv.org/abs/1711.05101>
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §5, (9) and (11), Theorem 3.
#[derive(Clone, Copy, Debug)]
pub struct DecoupledL2<T> {
    /// `1 − ηλ`, computed in `f64`.
    pub factor: T,
}
impl<T: Float> Regularizer<T> for DecoupledL2<T> {
    #[inline(always)]
    fn decay(&self, x: T) -> T {
        x * self.factor
    }
    type Lifted = DecoupledL2<Iv<T>>;
    fn lift(&self) -> Self::Lifted {
        DecoupledL2 {
            factor: lift(self.factor),
        }
    }
    /// `fl(x · factor)` is at most `|x|` when `|factor| ≤ 1`; then as the default.
    fn finish_finite<P: PrecondRule<Iv<T>>>(
        lifted: &Self::Lifted,
        d: Iv<T>,
        _q: Iv<T>,
        _pre: &P,
    ) -> bool {
        lifted.factor.mag() <= 1.0 && d.mag() < T::HALF_ULP_MAX
    }
}

/// `soft(z, t) = sign(z) max(|z| − t, 0)`.
///
/// In the notation of THEORY.md: $\operatorname{soft}(z, t) = \operatorname{sign}(z) \max(\lvert z
/// \rvert - t, 0)$, the proximal map of $t \lVert z \rVert_1$.
///
/// # References
///
/// - \[Parikh2014\] N. Parikh, S. Boyd. *Proximal algorithms.* Foundations and Trends in
///   Optimization 1(3):127–239, 2014.
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §5, proximal intrinsic L1.
#[inline(always)]
pub fn soft_threshold<T: Float>(z: T, t: T) -> T {
    z.sign() * (z.abs() - t).maxv(T::ZERO)
}

/// Every kind × space × form (and a coupled `weight_decay` on top), branch-free: unused terms
/// have zero coefficients and leave the value bit-for-bit unchanged.
///
/// # References
///
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §5, Theorem 3, Theorem 4 and
///   (13).
/// - \[Loshchilov2019\] I. Loshchilov, F. Hutter. *Decoupled weight decay regularization.* ICLR
///   2019. <https://arxiv.org/abs/1711.05101>
/// - \[Parikh2014\] N. Parikh, S. Boyd. *Proximal algorithms.* Foundations and Trends in
///   Optimization 1(3):127–239, 2014.
#[derive(Clone, Copy, Debug)]
pub struct Elementwise<T> {
    g_l2: T,
    g_l1: T,
    decay: T,
    i_l1: T,
    t1_sqrtp: T,
    t1_p: T,
    t2_c: T,
    t2_p: T,
}

impl<T: Float> Elementwise<T> {
    /// The combined regularizer for learning rate `lr`: an original-space gradient-form L2 of
    /// strength `coupled_wd`, an intrinsic gradient-form L2 (`decoupled_wd`, AdamW-style) and `reg`.
    pub fn new(reg: &Regularization, coupled_wd: f64, decoupled_wd: f64, lr: f64) -> Self {
        let (l1, l2) = if reg.is_none() {
            (0.0, 0.0)
        } else {
            reg.split()
        };
        let mut e = [coupled_wd, 0.0, decoupled_wd * lr, 0.0, 0.0, 0.0, 0.0, 0.0];
        match (reg.space, reg.proximal) {
            (Space::Original, false) => {
                e[0] += l2;
                e[1] = l1;
            }
            (Space::Intrinsic, false) => {
                e[2] += lr * l2;
                e[3] = lr * l1;
            }
            (Space::Original, true) => {
                e[5] = lr * l1;
                e[7] = lr * l2;
            }
            (Space::Intrinsic, true) => {
                e[4] = lr * l1;
                e[6] = lr * l2;
            }
        }
        Elementwise {
            g_l2: T::from_f64(e[0]),
            g_l1: T::from_f64(e[1]),
            decay: T::from_f64(1.0 - e[2]),
            i_l1: T::from_f64(e[3]),
            t1_sqrtp: T::from_f64(e[4]),
            t1_p: T::from_f64(e[5]),
            t2_c: T::from_f64(e[6]),
            t2_p: T::from_f64(e[7]),
        }
    }
}

impl<T: Float> Regularizer<T> for Elementwise<T> {
    #[inline(always)]
    fn grad(&self, x: T, g: T) -> T {
        g + self.g_l2 * x + self.g_l1 * x.sign()
    }
    #[inline(always)]
    fn decay(&self, x: T) -> T {
        x * self.decay
    }
    #[inline(always)]
    fn finish<P: PrecondRule<T>>(&self, x_old: T, z: T, pre: &P, q: T) -> T {
        let sp = pre.sqrt_p(q);
        let p = pre.p(q);
        let z = z - self.i_l1 * sp * x_old.sign();
        let t1 = self.t1_sqrtp * sp + self.t1_p * p;
        let t2 = T::ONE + (self.t2_c + self.t2_p * p);
        soft_threshold(z, t1) / t2
    }
    const GRAD_USES_X: bool = true;
    type Lifted = Elementwise<Iv<T>>;
    fn lift(&self) -> Self::Lifted {
        Elementwise {
            g_l2: lift(self.g_l2),
            g_l1: lift(self.g_l1),
            decay: lift(self.decay),
            i_l1: lift(self.i_l1),
            t1_sqrtp: lift(self.t1_sqrtp),
            t1_p: lift(self.t1_p),
            t2_c: lift(self.t2_c),
            t2_p: lift(self.t2_p),
        }
    }
    /// `z = fl(fl(x·decay) + d)` is finite when `|decay| ≤ 1` and `|d| <` half an ulp of the
    /// largest value; so is `z − i_l1·sqrt(p)·sign(x)` when that term is below the same bound;
    /// `soft(z, t1)` with a finite `t1 ≥ 0` is at most `|z|`; dividing by `t2 = 1 + (≥ 0) ≥ 1`
    /// does not grow it.
    fn finish_finite<P: PrecondRule<Iv<T>>>(l: &Self::Lifted, d: Iv<T>, q: Iv<T>, pre: &P) -> bool {
        let sp = pre.sqrt_p(q);
        let p = pre.p(q);
        let e = l.i_l1 * sp;
        let t1 = l.t1_sqrtp * sp + l.t1_p * p;
        let t2m1 = l.t2_c + l.t2_p * p;
        l.decay.mag() <= 1.0
            && d.mag() < T::HALF_ULP_MAX
            && e.mag() < T::HALF_ULP_MAX
            && t1.is_finite()
            && t1.lo >= 0.0
            && t2m1.is_finite()
            && t2m1.lo >= 0.0
    }
}
