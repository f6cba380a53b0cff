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

/// Largest absolute entry (NaN entries are skipped; the callers checked finiteness).
pub(crate) fn max_abs(a: MatRef<'_, f64>) -> f64 {
    nan_and_max_abs(a).1
}

/// Lanes of [`nan_and_max_abs`]: independent maxima, so the pass vectorizes.
const LANES: usize = 8;

/// Whether `a` holds a NaN, and `max |a_ij|` over the other entries: one pass, by lanes on
/// contiguous columns, or on contiguous rows for a row-major view (the maximum does not depend
/// on the order).
pub(crate) fn nan_and_max_abs(a: MatRef<'_, f64>) -> (bool, f64) {
    // a row-major view is walked through its transpose: contiguous rows, same entries
    let a = if a.row_stride() != 1 && a.col_stride() == 1 {
        a.transpose()
    } else {
        a
    };
    let (mut nan, mut m) = ([false; LANES], [0.0f64; LANES]);
    for j in 0..a.ncols() {
        match a.col(j).try_as_col_major() {
            Some(c) => {
                let chunks = c.as_slice().chunks_exact(LANES);
                let tail = chunks.remainder();
                for ch in chunks {
                    for k in 0..LANES {
                        let v = ch[k].abs();
                        nan[k] |= v.is_nan();
                        m[k] = if v > m[k] { v } else { m[k] };
                    }
                }
                for &v in tail {
                    nan[0] |= v.is_nan();
                    m[0] = m[0].max(v.abs());
                }
            }
            None => {
                for &v in a.col(j).iter() {
                    nan[0] |= v.is_nan();
                    m[0] = m[0].max(v.abs());
                }
            }
        }
    }
    (nan.contains(&true), m.iter().fold(0.0f64, |x, &y| x.max(y)))
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
