//! The two floating-point element types the optimizers run on.

use std::fmt::Debug;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// Element type of parameter, gradient and state buffers: `f32` or `f64`.
///
/// Scalars (learning rate, betas, …) are computed in `f64` and rounded once to `Self` with
/// [`Float::from_f64`], exactly as torch rounds a Python float when it meets a `float32` tensor.
pub trait Float:
    Copy
    + Send
    + Sync
    + Default
    + PartialOrd
    + Debug
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// `0`.
    const ZERO: Self;
    /// `1`.
    const ONE: Self;
    /// The dtype tag.
    const DTYPE: Dtype;
    /// Unit roundoff `u` of `Self` (`2⁻²⁴` resp. `2⁻⁵³`), as `f64`.
    const UNIT_ROUNDOFF: f64;
    /// The largest finite value of `Self`, as `f64`.
    const MAX_F64: f64;
    /// The smallest positive (subnormal) value of `Self`, as `f64`: a bound on the absolute
    /// rounding error of any operation whose result is in the subnormal range.
    const TINY_F64: f64;
    /// Half an ulp of the largest finite value (`2¹⁰³` resp. `2⁹⁷⁰`): `fl(a + d)` is finite
    /// for every finite `a` and every `|d| <` this (round to nearest).
    const HALF_ULP_MAX: f64;
    /// Round an `f64` to `Self` (nearest).
    fn from_f64(v: f64) -> Self;
    /// Widen to `f64` (exact).
    fn to_f64(self) -> f64;
    /// IEEE square root.
    fn sqrt(self) -> Self;
    /// `|self|`.
    #[inline(always)]
    fn abs(self) -> Self {
        if self < Self::ZERO { -self } else { self }
    }
    /// `max(self, o)` as a compare-and-select (vectorizes; NaN never reaches it).
    #[inline(always)]
    fn maxv(self, o: Self) -> Self {
        if o > self { o } else { self }
    }
    /// `torch.sign`: `-1`, `0` or `1`.
    #[inline(always)]
    fn sign(self) -> Self {
        if self > Self::ZERO {
            Self::ONE
        } else if self < Self::ZERO {
            -Self::ONE
        } else {
            Self::ZERO
        }
    }
    /// `self^e` (libm `pow`; the default widens to `f64` and rounds back).
    #[inline(always)]
    fn powf(self, e: Self) -> Self {
        Self::from_f64(self.to_f64().powf(e.to_f64()))
    }
    /// `self · self` (the same instruction; a separate method so that interval evaluation
    /// ([`crate::bound::Iv`]) knows both factors are one value).
    #[inline(always)]
    fn sq(self) -> Self {
        self * self
    }
    /// `self · s` for `s = ±1` (`maximize`'s sign): the same value as the product (exact either
    /// way), computed for `f32`/`f64` as an XOR of `s`'s sign bit into `self` (a logic
    /// instruction instead of a multiplication: the multipliers are the busiest units of the
    /// momentum loops). The default (intervals) multiplies.
    #[inline(always)]
    fn mul_unit_sign(self, s: Self) -> Self {
        self * s
    }
    /// `(c · g) · g`, evaluated in that order (the interval version knows it is `c g²`).
    #[inline(always)]
    fn scaled_sq(c: Self, g: Self) -> Self {
        c * g * g
    }
    /// torch's CPU `lerp` as [`crate::precond::Lerp`] evaluates it: `base + coeff · (end − start)`
    /// with `base = start` when `small`, else `end` (the interval version encloses the convex
    /// combination instead of treating `start` and `end` as independent twice).
    #[inline(always)]
    fn lerp_with(start: Self, end: Self, small: bool, coeff: Self) -> Self {
        let base = if small { start } else { end };
        base + coeff * (end - start)
    }
    /// Neither NaN nor infinite.
    fn is_finite(self) -> bool;
    /// Bit pattern widened to `u64` (for exact comparisons in tests and state files).
    fn to_bits_u64(self) -> u64;
    /// `(every value finite, max |v_i|)` over `v` (`(true, 0)` when empty; `(false, ∞)` when
    /// some value is NaN or infinite): the pre-scan of a step (`kernel::scan_max`).
    ///
    /// Computed on the bit patterns: with the sign bit cleared, the bits of IEEE values order
    /// as their magnitudes, with +∞ and every NaN above each finite value. One integer
    /// maximum per element therefore finds the largest magnitude and detects any non-finite
    /// value at once (bits ≥ those of +∞). An integer maximum is associative, so the compiler
    /// vectorizes the loop with several accumulators: an AND and a `vpmaxs` per vector, where
    /// the floating-point test it replaces (`a − a` accumulated, and `max(m, |a|)`) took four
    /// operations and a chain through the adder's latency (n = 10⁶ `f32` in the L3 cache,
    /// two threads, AMD EPYC Zen 4: 35 → 22 µs). The default, for other implementors: one
    /// pass of `is_finite` and `max`.
    #[inline(always)]
    fn finite_max_abs(v: &[Self]) -> (bool, Self) {
        let mut m = Self::ZERO;
        for &a in v {
            if !a.is_finite() {
                return (false, Self::from_f64(f64::INFINITY));
            }
            m = m.maxv(a.abs());
        }
        (true, m)
    }
}

/// [`Float::finite_max_abs`] for one float type, its bits as the signed integer type `$i`
/// (the sign bit cleared, so signed and unsigned order agree, and AVX2 has a signed 64-bit
/// compare but no unsigned one).
macro_rules! finite_max_abs_bits {
    ($f:ty, $i:ty) => {
        #[inline(always)]
        fn finite_max_abs(v: &[$f]) -> (bool, $f) {
            const MAG: $i = <$i>::MAX; // every bit but the sign
            let inf = <$f>::INFINITY.to_bits() as $i;
            // an integer maximum may be reassociated: the compiler vectorizes this loop
            // with several vector accumulators
            let mm = v
                .iter()
                .fold(0 as $i, |m, a| m.max(a.to_bits() as $i & MAG));
            if mm < inf {
                (true, <$f>::from_bits(mm as _))
            } else {
                (false, <$f>::INFINITY)
            }
        }
    };
}

/// Floating-point type tag of buffers and saved state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// `f32`.
    F32,
    /// `f64`.
    F64,
}

impl Dtype {
    /// `"f32"` or `"f64"`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        }
    }
}

/// `1 − b^k` in `f64`, exactly as `1.0 - b.powf(k as f64)` (Python's `1 - beta ** step`, the
/// bias corrections of Adam (Kingma & Ba 2015, Algorithm 1) and of the matrix kinds, docs/THEORY.md
/// §4), without calling `pow` once `b^k` is below `2⁻⁶⁰`: then `1 − b^k` rounds to `1` in `f64`
/// whatever `pow` returns (anything up to `2⁻⁵⁴` does), so the result is the same bits.
///
/// Why: `pow` is the largest single cost of a short Adam step (two calls per pass; once `b^k`
/// underflows, glibc takes its slow under-flow path), and with `β₂ = 0.999` every step after
/// about 41 600 is in that range. The test is `k · (−log₂ b) > 64` in floating point (a relative
/// error far below the margin from 60 to 64); `b ≥ 1`, `b < 0`, NaN and `k = 0` take `pow`.
#[inline]
pub(crate) fn one_minus_pow(b: f64, k: u64) -> f64 {
    let k = k as f64;
    if k * -b.log2() > 64.0 {
        1.0
    } else {
        1.0 - b.powf(k)
    }
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const DTYPE: Dtype = Dtype::F32;
    const UNIT_ROUNDOFF: f64 = 5.960464477539063e-8; // 2^-24
    const MAX_F64: f64 = f32::MAX as f64;
    const TINY_F64: f64 = f32::from_bits(1) as f64; // 2^-149
    const HALF_ULP_MAX: f64 = 1.0141204801825835e31; // 2^103
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn powf(self, e: Self) -> Self {
        f32::powf(self, e)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    #[inline(always)]
    fn to_bits_u64(self) -> u64 {
        u64::from(self.to_bits())
    }
    finite_max_abs_bits!(f32, i32);
    #[inline(always)]
    fn mul_unit_sign(self, s: Self) -> Self {
        f32::from_bits(self.to_bits() ^ (s.to_bits() & 0x8000_0000))
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const DTYPE: Dtype = Dtype::F64;
    const UNIT_ROUNDOFF: f64 = f64::EPSILON / 2.0;
    const MAX_F64: f64 = f64::MAX;
    const TINY_F64: f64 = f64::from_bits(1); // 2^-1074
    const HALF_ULP_MAX: f64 = 9.9792015476736e291; // 2^970
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn powf(self, e: Self) -> Self {
        f64::powf(self, e)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    #[inline(always)]
    fn to_bits_u64(self) -> u64 {
        self.to_bits()
    }
    finite_max_abs_bits!(f64, i64);
    #[inline(always)]
    fn mul_unit_sign(self, s: Self) -> Self {
        f64::from_bits(self.to_bits() ^ (s.to_bits() & 0x8000_0000_0000_0000))
    }
}

#[cfg(test)]
mod tests {
    use super::one_minus_pow;

    /// Bit for bit `1 − pow(b, k)` for every `k` up to well past the shortcut's threshold, for
    /// the betas in use and the edge cases (`0`, tiny, just below `1`, `1`, above `1`).
    #[test]
    fn one_minus_pow_is_the_same_bits_as_pow() {
        let betas = [
            0.0,
            1e-300,
            0.1,
            0.5,
            0.81 / 0.999,
            0.9,
            0.95,
            0.99,
            0.999,
            0.9999,
            1.0 - 1e-6,
            1.0,
            1.5,
        ];
        for &b in &betas {
            // past the threshold 64 / (−log₂ b) by a few thousand steps (capped for b → 1)
            let last = if b > 0.0 && b < 1.0 {
                ((64.0 / -f64::log2(b)) as u64 + 5000).min(3_000_000)
            } else {
                5000
            };
            for k in 0..=last {
                let want = 1.0 - b.powf(k as f64);
                let got = one_minus_pow(b, k);
                assert_eq!(got.to_bits(), want.to_bits(), "b = {b}, k = {k}");
            }
        }
        // the shortcut is taken where it should be (else it saves nothing)
        assert_eq!(one_minus_pow(0.999, 50_000).to_bits(), 1.0f64.to_bits());
        assert!((64.0 / -f64::log2(0.999)) < 50_000.0);
    }
}
