//! Exact power-of-two scaling (internal): every spectral, singular-value, norm and estimate
//! routine runs on `A · 2⁻ᵉ`, whose largest entry lies in `[1, 2)`, and multiplies its
//! magnitudes back by `2ᵉ` at the end. Multiplying by a power of two is exact (no rounding) as
//! long as the result is a normal number, so the scaled problem is the given one, and the
//! algorithms never meet the overflow of squares of entries near `f64::MAX` or the underflow of
//! products of entries near `f64::MIN_POSITIVE` (subnormals). Ratios (condition numbers,
//! relative tolerances) are scale-free and are taken before unscaling.
//!
//! Matrices whose largest entry is between `2⁻¹²⁸` and `2¹²⁸` are left as they are
//! ([`needs_scaling`]): in that range no routine of the crate can overflow or underflow (sums of
//! squares stay below `2²⁷⁰` and above `2⁻²⁷⁰`), and the result is bit-for-bit the one of the
//! scaled matrix times `2ᵉ`, without the copy.

use faer::{Mat, MatRef};

use crate::error::{LinalgError, Result};

/// Largest exponent magnitude computed without scaling.
const SAFE_EXPONENT: i32 = 128;

/// `2ᵉ` for `e` in `-1022..=1023` (a normal number, built from its bits).
pub(crate) fn pow2(e: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&e));
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// `x · 2ᵉ` for any `e`, rounded once (the `scalbn` of C: intermediate steps are exact, and a
/// subnormal result is rounded once from the exact value). Overflows to `±∞` only when the exact
/// value exceeds `f64::MAX`.
pub(crate) fn ldexp(mut x: f64, mut e: i32) -> f64 {
    if e > 1023 {
        x *= pow2(1023);
        e -= 1023;
        if e > 1023 {
            x *= pow2(1023);
            e -= 1023;
            e = e.min(1023);
        }
    } else if e < -1022 {
        // 2^-1022 · 2^53: the intermediate stays normal, the final product rounds once
        x *= pow2(-1022 + 53);
        e += 1022 - 53;
        if e < -1022 {
            x *= pow2(-1022 + 53);
            e += 1022 - 53;
            e = e.max(-1022);
        }
    }
    x * pow2(e)
}

/// The binary exponent of a positive finite `x`: `x = m · 2ᵉ` with `m ∈ [1, 2)` (subnormals
/// included); 0 for zero and non-finite values.
pub(crate) fn exponent(x: f64) -> i32 {
    let x = x.abs();
    if x == 0.0 || !x.is_finite() {
        return 0;
    }
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // subnormal: 2^-1074 · mantissa
        let mant = bits & ((1u64 << 52) - 1);
        return -1074 + (63 - mant.leading_zeros() as i32);
    }
    biased - 1023
}

/// Largest absolute entry (`+∞` when there is a NaN; the callers checked finiteness).
pub(crate) fn max_abs(a: MatRef<'_, f64>) -> f64 {
    nan_and_max_abs(a).1
}

/// The bits of `+∞`: an entry `v` is finite iff `|v|`'s bits are below these, and NaN iff
/// above.
pub(crate) const INF_BITS: u64 = 0x7ff0_0000_0000_0000;

/// The bits of `|x|` (the sign bit cleared).
#[inline(always)]
fn abs_bits(x: f64) -> u64 {
    x.to_bits() & !(1u64 << 63)
}

/// Index of the first NaN or infinite entry of `v`, if any: one vectorized [`abs_bits_max`]
/// pass, and the search for the index only when it finds one.
pub(crate) fn first_nonfinite(v: &[f64]) -> Option<usize> {
    if abs_bits_max(v) < INF_BITS {
        None
    } else {
        v.iter().position(|x| !x.is_finite())
    }
}

/// `max_i` of the bits of `|v_i|` (the sign bit cleared; `0` for an empty slice). The bits of
/// non-negative doubles order as their values, with `+∞` ([`INF_BITS`]) above every finite
/// value and every NaN above `+∞`; so one integer maximum gives `max |v_i|` when all are
/// finite and tells a NaN (`> INF_BITS`) or an infinity (`== INF_BITS`) apart. An integer
/// maximum is associative: the compiler vectorizes it with several accumulators (an AND and
/// a compare-select per vector), where the floating-point tests it replaces took an
/// early-exit search one entry at a time (`position(|v| !v.is_finite())`) or four operations
/// per vector on the baseline target's 128-bit registers: at n = 100 the input checks of the
/// LU condition estimate took about 11 of its 83 µs (`perf`, AMD EPYC Zen 4). Runs the AVX2 or
/// AVX-512 build of the loop when the CPU has it.
pub(crate) fn abs_bits_max(v: &[f64]) -> u64 {
    abs_bits_max_at(v, crate::two_stage::symm::Simd::detect())
}

/// [`abs_bits_max`] with the vector level chosen by the caller (the tests run each).
pub(crate) fn abs_bits_max_at(v: &[f64], level: crate::two_stage::symm::Simd) -> u64 {
    use crate::two_stage::symm::Simd;
    #[inline(always)]
    fn imp(v: &[f64]) -> u64 {
        // signed: the sign bit is clear, and AVX2 compares 64-bit integers signed only
        v.iter().fold(0i64, |m, &x| m.max(abs_bits(x) as i64)) as u64
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn avx2(v: &[f64]) -> u64 {
        imp(v)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn avx512(v: &[f64]) -> u64 {
        imp(v)
    }
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level is at most what `Simd::detect` found on this CPU.
        Simd::Avx512 => unsafe { avx512(v) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Simd::Avx2 => unsafe { avx2(v) },
        _ => imp(v),
    }
}

/// Whether `a` holds a NaN, and `max |a_ij|` (`+∞` when there is a NaN): one pass of
/// [`abs_bits_max`] per contiguous column, or per contiguous row for a row-major view (the
/// maximum does not depend on the order).
pub(crate) fn nan_and_max_abs(a: MatRef<'_, f64>) -> (bool, f64) {
    // a row-major view is walked through its transpose: contiguous rows, same entries
    let a = if a.row_stride() != 1 && a.col_stride() == 1 {
        a.transpose()
    } else {
        a
    };
    let level = crate::two_stage::symm::Simd::detect();
    let mut m = 0u64;
    for j in 0..a.ncols() {
        m = m.max(match a.col(j).try_as_col_major() {
            Some(c) => abs_bits_max_at(c.as_slice(), level),
            None => a.col(j).iter().fold(0u64, |m, &x| m.max(abs_bits(x))),
        });
    }
    if m > INF_BITS {
        (true, f64::INFINITY)
    } else {
        (false, f64::from_bits(m))
    }
}

/// The exponent `e` to divide `a` by (`2ᵉ ≤ max|a| < 2ᵉ⁺¹`), or `None` when `max|a|` is in the
/// safe range (or `a` is zero) and the matrix is used as it is.
pub(crate) fn needs_scaling(a: MatRef<'_, f64>) -> Option<i32> {
    scaling_for(max_abs(a))
}

/// [`needs_scaling`] of a matrix whose largest magnitude `max|a|` is already known.
pub(crate) fn scaling_for(amax: f64) -> Option<i32> {
    let e = exponent(amax);
    (e.abs() > SAFE_EXPONENT).then_some(e)
}

/// Multiplies every entry of `a` by `2⁻ᵉ` in place (exact except for entries that become
/// subnormal, which are below `2⁻¹⁰²²` times the largest entry).
pub(crate) fn scale_in_place(a: &mut Mat<f64>, e: i32) {
    for j in 0..a.ncols() {
        for v in a.col_mut(j).iter_mut() {
            *v = ldexp(*v, -e);
        }
    }
}

/// `a` divided by a power of two so that its largest entry is in `[1, 2)` when it is outside the
/// safe range, as an owned copy, with the exponent; `None` when `a` is used as it is.
pub(crate) fn scaled(a: MatRef<'_, f64>) -> Result<Option<(Mat<f64>, i32)>> {
    scaled_by(a, needs_scaling(a))
}

/// `(a · 2⁻ᵉ, e)` as an owned copy for `Some(e)`, `None` for `None`.
fn scaled_by(a: MatRef<'_, f64>, e: Option<i32>) -> Result<Option<(Mat<f64>, i32)>> {
    let Some(e) = e else {
        return Ok(None);
    };
    let s = crate::alloc::try_mat_from_fn(
        "rescaled copy of the matrix",
        a.nrows(),
        a.ncols(),
        |i, j| ldexp(a[(i, j)], -e),
    )?;
    Ok(Some((s, e)))
}

/// [`scaled`] of a matrix whose finiteness is checked in the same pass: one read of `a` for
/// the NaN flag and the largest magnitude; only when that pass finds a NaN or an infinity does
/// [`check_finite`](crate::layout::check_finite) walk `a` again to name the first offending
/// entry ([`LinalgError::NonFinite`](crate::LinalgError::NonFinite) naming `what`). The
/// shape must have been checked (non-empty).
pub(crate) fn checked_scaled(
    a: MatRef<'_, f64>,
    what: &'static str,
) -> Result<Option<(Mat<f64>, i32)>> {
    let (nan, amax) = nan_and_max_abs(a);
    if nan || !amax.is_finite() {
        crate::layout::check_finite(a, what)?;
    }
    scaled_by(a, scaling_for(amax))
}

/// Scales an owned matrix in place when needed; returns the exponent (0 when unscaled).
pub(crate) fn scale_owned(a: &mut Mat<f64>) -> i32 {
    match needs_scaling(a.as_ref()) {
        Some(e) => {
            scale_in_place(a, e);
            e
        }
        None => 0,
    }
}

/// `x · 2ᵉ`, or [`LinalgError::Overflow`] naming `what` when the exact value exceeds
/// `f64::MAX`. A value below `f64::MIN_POSITIVE` is rounded to the nearest subnormal (absolute
/// error at most `2⁻¹⁰⁷⁵`).
/// [`unscale`] of every entry of `v`, in place (no allocation).
pub(crate) fn unscale_all(mut v: Vec<f64>, e: i32, what: &'static str) -> Result<Vec<f64>> {
    for x in &mut v {
        *x = unscale(*x, e, what)?;
    }
    Ok(v)
}

pub(crate) fn unscale(x: f64, e: i32, what: &'static str) -> Result<f64> {
    let y = ldexp(x, e);
    if y.is_finite() || !x.is_finite() {
        Ok(y)
    } else {
        Err(LinalgError::Overflow {
            what,
            log2: f64::from(e) + x.abs().log2(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bit maximum at every vector level equals a plain loop over `|v|` (largest value
    /// when finite; an infinity or a NaN detected) on every length around the vector widths,
    /// with the special values anywhere; and `nan_and_max_abs` reads it right on column- and
    /// row-major views.
    #[test]
    #[allow(clippy::float_cmp)] // a maximum is one of the inputs
    fn bit_maximum_equals_plain_loops() {
        use crate::two_stage::symm::Simd;
        let specials = [
            0.0,
            -0.0,
            f64::MIN_POSITIVE / 8.0,
            -f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
        ];
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 2e3 - 1e3
        };
        for len in [0usize, 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 257] {
            let base: Vec<f64> = (0..len).map(|_| next()).collect();
            let mut cases = vec![base.clone()];
            for (k, &sp) in specials.iter().enumerate() {
                if len > 0 {
                    let mut v = base.clone();
                    v[(k * 37) % len] = sp;
                    cases.push(v);
                }
            }
            for v in cases {
                let nan = v.iter().any(|x| x.is_nan());
                let inf = v.iter().any(|x| x.is_infinite());
                let max = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                for level in Simd::available() {
                    let b = abs_bits_max_at(&v, level);
                    assert_eq!(b > INF_BITS, nan, "{level:?} len {len}");
                    assert_eq!(b >= INF_BITS, nan || inf, "{level:?} len {len}");
                    if !nan {
                        assert_eq!(f64::from_bits(b), max, "{level:?} len {len}");
                    }
                }
                if len > 0 {
                    let rows = if len % 2 == 0 { 2 } else { 1 };
                    for m in [
                        MatRef::from_column_major_slice(&v, rows, len / rows),
                        MatRef::from_row_major_slice(&v, rows, len / rows),
                    ] {
                        let (has_nan, amax) = nan_and_max_abs(m);
                        assert_eq!(has_nan, nan);
                        if !nan {
                            assert_eq!(amax, max);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn ldexp_is_exact_and_rounds_once() {
        assert_eq!(ldexp(1.0, -1074).to_bits(), 1u64);
        assert_eq!(ldexp(3.0, -1075).to_bits(), 2u64); // 1.5 ulp rounds to even: 2
        assert_eq!(ldexp(1.0, 1023).to_bits(), pow2(1023).to_bits());
        assert_eq!(ldexp(1.5, 1024).to_bits(), f64::INFINITY.to_bits());
        assert_eq!(ldexp(f64::from_bits(1), 1074).to_bits(), 1.0f64.to_bits());
        assert_eq!(
            ldexp(f64::MAX, -2000 + 1000).to_bits(),
            (f64::MAX / pow2(1000)).to_bits()
        );
        assert_eq!(ldexp(-5.0, 0).to_bits(), (-5.0f64).to_bits());
    }

    #[test]
    fn exponent_of_normal_and_subnormal() {
        assert_eq!(exponent(1.0), 0);
        assert_eq!(exponent(1.99), 0);
        assert_eq!(exponent(0.5), -1);
        assert_eq!(exponent(f64::MAX), 1023);
        assert_eq!(exponent(f64::MIN_POSITIVE), -1022);
        assert_eq!(exponent(f64::from_bits(1)), -1074);
        assert_eq!(exponent(f64::from_bits(3)), -1073);
        assert_eq!(exponent(0.0), 0);
    }
}
