//! Interval evaluation of the fused update: a proof, per step and per segment, that no value
//! the step writes can be non-finite.
//!
//! [`Iv<T>`] is a closed interval `[lo, hi]` (held in `f64`) that *encloses the value a
//! floating-point computation in `T` produces*: every operation widens its exact result by the
//! rounding error of `T` (relative `2u`, absolute [`Float::TINY_F64`], never across zero, since
//! rounding to nearest is monotone and `0` is representable) and by one `f64` ulp for the
//! rounding of the bounds themselves; a bound beyond `T`'s largest finite value becomes `±∞`,
//! and `±∞`/NaN poison the interval to `[−∞, ∞]`. `Iv<T>` implements [`Float`], so the rule code
//! that runs in the fused loop ([`crate::kernel::Fused`]) runs unchanged on intervals: given
//! bounds on the gradient (`max |g|` from the non-finite pre-scan), on the state slots (tracked
//! from step to step) and, when the regularizer reads it in gradient form, on `x`, the lifted
//! update encloses every state value and the increment `d` the loop will write; the
//! regularizer then decides whether `x_new` is finite ([`crate::regularization::Regularizer::
//! finish_finite`]). When the enclosure cannot exclude a non-finite value, the step falls back
//! to an exact dry run over the buffers ([`crate::kernel::dry_run`]) before it writes anything.
//!
//! Three places where two operands are one value are given their own [`Float`] method so that
//! the enclosure stays tight: `g·g` ([`Float::sq`]), `(c·g)·g` ([`Float::scaled_sq`]) and torch's
//! `lerp` ([`Float::lerp_with`], enclosed as the convex combination it is, plus its rounding):
//! for `f32`/`f64` they are the very same instructions as before.
//!
//! # References
//!
//! - \[Moore2009\] R. E. Moore, R. B. Kearfott, M. J. Cloud. *Introduction to Interval
//!   Analysis.* SIAM, 2009 (outward rounding, the dependency problem).
//! - \[Higham2002\] N. J. Higham. *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
//!   SIAM, 2002, chapter 2 (the model `fl(a op b) = (a op b)(1 + δ) + η`, `|δ| ≤ u`).
//!
//! docs/THEORY.md §8 states the guarantee.

use crate::float::{Dtype, Float};
use std::cmp::Ordering;
use std::marker::PhantomData;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// A closed interval enclosing a value computed in `T` (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Iv<T> {
    /// Lower bound (`−∞` when unbounded).
    pub lo: f64,
    /// Upper bound (`+∞` when unbounded).
    pub hi: f64,
    _t: PhantomData<fn() -> T>,
}

impl<T> Default for Iv<T> {
    fn default() -> Self {
        Iv {
            lo: 0.0,
            hi: 0.0,
            _t: PhantomData,
        }
    }
}

impl<T: Float> Iv<T> {
    /// `[lo, hi]` as given (NaN bounds poison it).
    pub fn new(lo: f64, hi: f64) -> Self {
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Self::everything();
        }
        Iv {
            lo,
            hi,
            _t: PhantomData,
        }
    }
    /// `[−∞, ∞]`: nothing is known.
    pub fn everything() -> Self {
        Iv {
            lo: f64::NEG_INFINITY,
            hi: f64::INFINITY,
            _t: PhantomData,
        }
    }
    /// The point `v` (a value of `T`).
    pub fn point(v: T) -> Self {
        let v = v.to_f64();
        Self::new(v, v)
    }
    /// `[−m, m]`.
    pub fn sym(m: f64) -> Self {
        Self::new(-m, m)
    }
    /// `max(|lo|, |hi|)`.
    pub fn mag(self) -> f64 {
        self.lo.abs().max(self.hi.abs())
    }
    /// The enclosure of `T`'s rounding of any exact value in `[lo, hi]` (`rel` unit roundoffs).
    fn round_rel(lo: f64, hi: f64, rel: f64) -> Self {
        if lo.is_nan() || hi.is_nan() {
            return Self::everything();
        }
        let u = rel * T::UNIT_ROUNDOFF;
        let t = T::TINY_F64;
        let widen_down = |v: f64| (v - v.abs() * u - t).next_down();
        let widen_up = |v: f64| (v + v.abs() * u + t).next_up();
        let mut l = widen_down(lo);
        let mut h = widen_up(hi);
        // rounding is monotone and 0 is representable: the sign of an exact result is kept
        if lo >= 0.0 {
            l = l.max(0.0);
        }
        if hi <= 0.0 {
            h = h.min(0.0);
        }
        if h > T::MAX_F64 {
            h = f64::INFINITY;
        }
        if l < -T::MAX_F64 {
            l = f64::NEG_INFINITY;
        }
        if h < -T::MAX_F64 {
            h = f64::NEG_INFINITY;
        }
        if l > T::MAX_F64 {
            l = f64::INFINITY;
        }
        Self::new(l, h)
    }
    fn round(lo: f64, hi: f64) -> Self {
        Self::round_rel(lo, hi, 2.0)
    }
    fn hull4(a: f64, b: f64, c: f64, d: f64) -> Self {
        if a.is_nan() || b.is_nan() || c.is_nan() || d.is_nan() {
            return Self::everything();
        }
        // no NaN here, so a plain comparison picks the same value as `f64::min`/`max` (up to
        // the sign of a zero, which no bound depends on) without their NaN handling: one
        // instruction each (callgrind, the checked 16-element SGD step: hull4 was 260 of
        // its 2033 instructions)
        let min = |x: f64, y: f64| if y < x { y } else { x };
        let max = |x: f64, y: f64| if y > x { y } else { x };
        Self::round(min(min(a, b), min(c, d)), max(max(a, b), max(c, d)))
    }
}

/// Exact equality of bounds (bit patterns of non-NaN values; `0.0` and `−0.0` are equal).
fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a == 0.0 && b == 0.0)
}

impl<T: Float> PartialEq for Iv<T> {
    fn eq(&self, o: &Self) -> bool {
        same(self.lo, o.lo) && same(self.hi, o.hi)
    }
}

impl<T: Float> PartialOrd for Iv<T> {
    /// Ordered only when the intervals are disjoint (or equal points).
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        if self.hi < o.lo {
            Some(Ordering::Less)
        } else if self.lo > o.hi {
            Some(Ordering::Greater)
        } else if same(self.lo, self.hi) && same(o.lo, o.hi) && same(self.lo, o.lo) {
            Some(Ordering::Equal)
        } else {
            None
        }
    }
}

impl<T: Float> Add for Iv<T> {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self::round(self.lo + o.lo, self.hi + o.hi)
    }
}

impl<T: Float> Sub for Iv<T> {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self::round(self.lo - o.hi, self.hi - o.lo)
    }
}

impl<T: Float> Mul for Iv<T> {
    type Output = Self;
    fn mul(self, o: Self) -> Self {
        Self::hull4(
            self.lo * o.lo,
            self.lo * o.hi,
            self.hi * o.lo,
            self.hi * o.hi,
        )
    }
}

impl<T: Float> Div for Iv<T> {
    type Output = Self;
    fn div(self, o: Self) -> Self {
        if o.lo <= 0.0 && o.hi >= 0.0 {
            return Self::everything();
        }
        Self::hull4(
            self.lo / o.lo,
            self.lo / o.hi,
            self.hi / o.lo,
            self.hi / o.hi,
        )
    }
}

impl<T: Float> Neg for Iv<T> {
    type Output = Self;
    fn neg(self) -> Self {
        Self::new(-self.hi, -self.lo)
    }
}

impl<T: Float> Float for Iv<T> {
    const ZERO: Self = Iv {
        lo: 0.0,
        hi: 0.0,
        _t: PhantomData,
    };
    const ONE: Self = Iv {
        lo: 1.0,
        hi: 1.0,
        _t: PhantomData,
    };
    const DTYPE: Dtype = T::DTYPE;
    const UNIT_ROUNDOFF: f64 = T::UNIT_ROUNDOFF;
    const MAX_F64: f64 = T::MAX_F64;
    const TINY_F64: f64 = T::TINY_F64;
    const HALF_ULP_MAX: f64 = T::HALF_ULP_MAX;
    fn from_f64(v: f64) -> Self {
        Self::point(T::from_f64(v))
    }
    /// The upper bound.
    fn to_f64(self) -> f64 {
        self.hi
    }
    fn sqrt(self) -> Self {
        if self.lo < 0.0 {
            return Self::everything();
        }
        Self::round(self.lo.sqrt(), self.hi.sqrt())
    }
    fn abs(self) -> Self {
        if self.lo >= 0.0 {
            self
        } else if self.hi <= 0.0 {
            -self
        } else {
            Self::new(0.0, (-self.lo).max(self.hi))
        }
    }
    fn maxv(self, o: Self) -> Self {
        Self::new(self.lo.max(o.lo), self.hi.max(o.hi))
    }
    fn sign(self) -> Self {
        let s = |v: f64| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            }
        };
        Self::new(s(self.lo), s(self.hi))
    }
    /// `self^e` for a point exponent `e > 0` on `self ≥ 0` (libm `pow`: within 1 ulp, so the
    /// rounding allowance is doubled).
    fn powf(self, e: Self) -> Self {
        if !same(e.lo, e.hi) || e.lo.is_nan() || e.lo <= 0.0 || self.lo < 0.0 {
            return Self::everything();
        }
        Self::round_rel(self.lo.powf(e.lo), self.hi.powf(e.lo), 4.0)
    }
    fn sq(self) -> Self {
        let a = self.abs();
        Self::round(a.lo * a.lo, a.hi * a.hi)
    }
    fn scaled_sq(c: Self, g: Self) -> Self {
        // `(c·g)·g` rounds twice: allow two roundings on `c g²`
        // fl(fl(c·g)·g) = c g²(1 + δ₁)(1 + δ₂) + η₁ g (1 + δ₂) + η₂: the absolute error η₁ of
        // the first product (subnormal range) is multiplied by |g|
        let s = g.abs();
        let (l, h) = (s.lo * s.lo, s.hi * s.hi);
        if c.lo >= 0.0 {
            let eta = T::TINY_F64 * (s.hi * (1.0 + 4.0 * T::UNIT_ROUNDOFF) + 1.0);
            // c ≥ 0: fl(c·g) has the sign of g, so the result is ≥ 0
            Self::round_rel((c.lo * l - eta).max(0.0), c.hi * h + eta, 5.0)
        } else {
            Self::hull4(c.lo * l, c.lo * h, c.hi * l, c.hi * h) * Self::new(1.0, 1.0)
        }
    }
    fn lerp_with(start: Self, end: Self, small: bool, coeff: Self) -> Self {
        if !same(coeff.lo, coeff.hi) {
            let base = if small { start } else { end };
            return base + coeff * (end - start);
        }
        // the weight of `end`: `coeff` (base = start) or `1 + coeff` (base = end), exact in f64
        let w = if small { coeff.lo } else { 1.0 + coeff.lo };
        if !(0.0..=1.0).contains(&w) {
            let base = if small { start } else { end };
            return base + coeff * (end - start);
        }
        // exact value (1 − w)·start + w·end, a convex combination; the three roundings of
        // `base + coeff·(end − start)` add at most 4u(|start| + |end|) + 3·tiny
        let lo = (1.0 - w) * start.lo + w * end.lo;
        let hi = (1.0 - w) * start.hi + w * end.hi;
        let err = 4.0 * T::UNIT_ROUNDOFF * (start.mag() + end.mag()) + 3.0 * T::TINY_F64;
        if !err.is_finite() {
            return Self::everything();
        }
        Self::round(lo - err, hi + err)
    }
    fn is_finite(self) -> bool {
        self.lo.is_finite() && self.hi.is_finite()
    }
    fn to_bits_u64(self) -> u64 {
        self.hi.to_bits()
    }
}

/// What the guard of one segment's fused pass knows before the pass.
#[derive(Clone, Copy, Debug)]
pub struct GuardIn {
    /// `max |g|` over the gradient the pass reads (finite: the pre-scan checked it).
    pub g_max: f64,
    /// `max |x|` over the segment's parameters, when read (regularizers in gradient form).
    pub x_max: Option<f64>,
    /// `[min, max]` of the auxiliary buffer (a fixed diagonal `P`).
    pub aux: (f64, f64),
    /// `[min, max]` of each state slot.
    pub st: [(f64, f64); crate::kernel::MAX_SLOTS],
}

/// The slot ranges a pass can write (`None` in [`crate::kernel::ElementUpdate::guard`]'s result:
/// a non-finite value could not be excluded).
pub type SlotRanges = [(f64, f64); crate::kernel::MAX_SLOTS];

/// Lift a rule (whose fields are values of `T`) to the same rule over [`Iv<T>`].
pub fn lift<T: Float>(v: T) -> Iv<T> {
    Iv::point(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_never_crosses_zero_and_encloses_products() {
        let a = Iv::<f32>::new(0.0, 3.0);
        let b = a * a;
        assert!(same(b.lo, 0.0));
        assert!(b.hi >= 9.0);
        let c = Iv::<f32>::sym(2.0).sq();
        assert!(same(c.lo, 0.0));
        assert!(c.hi >= 4.0 && c.hi < 4.0001);
    }

    #[test]
    fn overflow_of_t_poisons_the_bound() {
        let a = Iv::<f32>::point(1e20);
        assert!(!(a * a).is_finite());
        let b = Iv::<f64>::point(1e20);
        assert!((b * b).is_finite());
    }

    #[test]
    fn division_by_an_interval_containing_zero_is_unbounded() {
        let a = Iv::<f64>::point(1.0) / Iv::new(-1.0, 1.0);
        assert!(!a.is_finite());
    }

    #[test]
    fn lerp_is_a_convex_combination() {
        let s = Iv::<f64>::sym(10.0);
        let e = Iv::<f64>::sym(1.0);
        let w = Iv::point(0.1);
        let r = <Iv<f64> as Float>::lerp_with(s, e, true, w);
        assert!(r.hi >= 9.1 && r.hi < 9.1 + 1e-12, "{r:?}");
        // iterating the EMA with a fixed gradient bound stays bounded (no dependency blow-up)
        let mut m = Iv::<f32>::sym(0.0);
        for _ in 0..100_000 {
            m = <Iv<f32> as Float>::lerp_with(m, Iv::sym(1.0), true, Iv::point(0.1));
        }
        assert!(m.hi < 1.01, "{m:?}");
    }

    #[test]
    fn encloses_the_f32_computation() {
        // the f32 value of an expression lies in the interval of the same expression
        let vals = [0.0f32, 1e-40, 3.5, -7.25, 1e30, -1e-3];
        for &a in &vals {
            for &b in &vals {
                let (ia, ib) = (Iv::<f32>::point(a), Iv::<f32>::point(b));
                let cases = [
                    ((a + b) as f64, ia + ib),
                    ((a - b) as f64, ia - ib),
                    ((a * b) as f64, ia * ib),
                    ((a * b * b) as f64, <Iv<f32> as Float>::scaled_sq(ia, ib)),
                ];
                for (v, iv) in cases {
                    if v.is_finite() {
                        assert!(iv.lo <= v && v <= iv.hi, "{v} not in {iv:?}");
                    } else {
                        assert!(!iv.is_finite());
                    }
                }
            }
        }
    }
}
