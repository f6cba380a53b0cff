//! Symmetric tridiagonal kernels (internal): Sturm-sequence bisection for selected eigenvalues
//! and inverse iteration for eigenvectors. Used by the fast extreme-eigenvalue path of
//! [`sym_extremes`](crate::sym_extremes), by the Lanczos convergence test, and (on the
//! Golub–Kahan form of a bidiagonal) by the extreme singular values of [`cond2`](crate::cond2).

use crate::alloc::try_collect;
use crate::error::Result;

/// Smallest pivot magnitude allowed in the Sturm recurrence (LAPACK's `PIVMIN`).
fn pivmin(e: &[f64]) -> f64 {
    let emax = e.iter().fold(1.0f64, |m, &x| m.max(x * x));
    f64::MIN_POSITIVE * emax
}

/// Number of eigenvalues of the tridiagonal `T` (diagonal `d`, off-diagonal `e`, `e.len() + 1
/// == d.len()`) strictly less than `x` (Sylvester inertia of `T − xI` via its `LDLᵀ` pivots).
pub(crate) fn sturm_count(d: &[f64], e: &[f64], x: f64, pmin: f64) -> usize {
    let mut q = d[0] - x;
    if q.abs() < pmin {
        q = -pmin;
    }
    let mut count = usize::from(q < 0.0);
    for i in 1..d.len() {
        let ee = e[i - 1];
        q = d[i] - x - ee * ee / q;
        if q.abs() < pmin {
            q = -pmin;
        }
        count += usize::from(q < 0.0);
    }
    count
}

/// Gershgorin interval containing every eigenvalue of `T`.
pub(crate) fn gershgorin(d: &[f64], e: &[f64]) -> (f64, f64) {
    let n = d.len();
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for i in 0..n {
        let r = if i > 0 { e[i - 1].abs() } else { 0.0 } + if i + 1 < n { e[i].abs() } else { 0.0 };
        lo = lo.min(d[i] - r);
        hi = hi.max(d[i] + r);
    }
    (lo, hi)
}

/// The `k`-th smallest eigenvalue (0-based) of `T` by bisection to full working accuracy
/// (absolute error `≈ 2ε·max|λ|`, as LAPACK's `DSTEBZ`).
pub(crate) fn kth_eigenvalue(d: &[f64], e: &[f64], k: usize) -> f64 {
    let (glo, ghi) = gershgorin(d, e);
    let pmin = pivmin(e);
    let scale = glo.abs().max(ghi.abs());
    // widen slightly so that the end points are strict bounds
    let mut lo = glo - 2.0 * f64::EPSILON * scale - pmin;
    let mut hi = ghi + 2.0 * f64::EPSILON * scale + pmin;
    for _ in 0..256 {
        let width = hi - lo;
        let tol = 2.0 * f64::EPSILON * lo.abs().max(hi.abs()) + 4.0 * pmin;
        if width <= tol {
            break;
        }
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if sturm_count(d, e, mid, pmin) > k {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Unit eigenvector of `T` for the (accurate) eigenvalue `theta`, by two steps of inverse
/// iteration with a partially pivoted tridiagonal LU of `T − θI` (LAPACK `DGTTRF`/`DGTTS2`).
pub(crate) fn eigenvector(d: &[f64], e: &[f64], theta: f64) -> Vec<f64> {
    let n = d.len();
    if n == 1 {
        return vec![1.0];
    }
    let tnorm = d
        .iter()
        .chain(e.iter())
        .fold(0.0f64, |m, &x| m.max(x.abs()))
        .max(f64::MIN_POSITIVE);
    let tiny = f64::EPSILON * tnorm;
    // LU with partial pivoting: rows hold (dl, dd, du, du2)
    let mut dl: Vec<f64> = e.to_vec();
    let mut dd: Vec<f64> = d.iter().map(|&x| x - theta).collect();
    let mut du: Vec<f64> = e.to_vec();
    let mut du2 = vec![0.0; n.saturating_sub(2)];
    let mut piv = vec![false; n - 1];
    for i in 0..n - 1 {
        if dd[i].abs() >= dl[i].abs() {
            // no row interchange
            if dd[i].abs() < tiny {
                dd[i] = tiny;
            }
            let fact = dl[i] / dd[i];
            dl[i] = fact;
            dd[i + 1] -= fact * du[i];
        } else {
            let fact = dd[i] / dl[i];
            dd[i] = dl[i];
            dl[i] = fact;
            let temp = du[i];
            du[i] = dd[i + 1];
            dd[i + 1] = temp - fact * dd[i + 1];
            if i + 2 < n {
                du2[i] = du[i + 1];
                du[i + 1] *= -fact;
            }
            piv[i] = true;
        }
    }
    if dd[n - 1].abs() < tiny {
        dd[n - 1] = tiny;
    }
    let solve = |b: &mut [f64]| {
        for i in 0..n - 1 {
            if piv[i] {
                let temp = b[i];
                b[i] = b[i + 1];
                b[i + 1] = temp - dl[i] * b[i + 1];
            } else {
                b[i + 1] -= dl[i] * b[i];
            }
        }
        b[n - 1] /= dd[n - 1];
        if n > 1 {
            b[n - 2] = (b[n - 2] - du[n - 2] * b[n - 1]) / dd[n - 2];
        }
        for i in (0..n.saturating_sub(2)).rev() {
            b[i] = (b[i] - du[i] * b[i + 1] - du2[i] * b[i + 2]) / dd[i];
        }
    };
    // start vector with no special structure
    let mut x: Vec<f64> = (0..n)
        .map(|i| 1.0 + 0.1 * ((i * 7919) % 13) as f64)
        .collect();
    for _ in 0..3 {
        solve(&mut x);
        let nrm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
        if !(nrm.is_finite() && nrm > 0.0) {
            break;
        }
        let s = 1.0 / nrm;
        x.iter_mut().for_each(|v| *v *= s);
    }
    x
}

/// `(#{σᵢ < x}, #{σᵢ < y})` for the bidiagonal whose Golub–Kahan off-diagonal squares are `o2`
/// (`x, y > 0`): the Sturm counts of the zero-diagonal `2n × 2n` form at `x` and `y` minus `n`,
/// the two recurrences interleaved (independent chains: the divisions overlap).
fn gk_counts(o2: &[f64], x: f64, y: f64, pmin: f64) -> (usize, usize) {
    let n = o2.len().div_ceil(2);
    let (mut p, mut q) = (-x, -y);
    let (mut cp, mut cq) = (1usize, 1usize);
    for &a in o2 {
        p = -x - a / p;
        q = -y - a / q;
        if p.abs() < pmin {
            p = -pmin;
        }
        if q.abs() < pmin {
            q = -pmin;
        }
        cp += usize::from(p < 0.0);
        cq += usize::from(q < 0.0);
    }
    (cp.saturating_sub(n), cq.saturating_sub(n))
}

/// One bisection step's trial point in `(lo, hi)` (`0 ≤ lo < hi`): geometric while the ends
/// are more than a factor 2 apart (so that a tiny `σ` is reached in `O(log log)` steps, not
/// one step per binary exponent), the midpoint after; `None` once the interval is as narrow as
/// `2ε·hi + 4·pmin` (LAPACK `DSTEBZ`'s relative and absolute tolerances) or has no
/// representable interior point.
fn trial(lo: f64, hi: f64, pmin: f64) -> Option<f64> {
    if hi - lo <= 2.0 * f64::EPSILON * hi + 4.0 * pmin {
        return None;
    }
    let mid = if lo == 0.0 {
        // the smallest positive singular value can be anywhere below `hi`: probe far down first
        (hi * 2f64.powi(-32)).max(2.0 * pmin)
    } else if hi > 2.0 * lo {
        lo.sqrt() * hi.sqrt()
    } else {
        lo + 0.5 * (hi - lo)
    };
    (mid > lo && mid < hi).then_some(mid)
}

/// `(σ_max, σ_min)` of the `n × n` upper bidiagonal `B` (diagonal `d`, superdiagonal `e`,
/// `e.len() + 1 == d.len()`), by bisection on the Golub–Kahan form (zero diagonal,
/// off-diagonal `d₀, e₀, d₁, …, d_{n−1}`, eigenvalues `±σᵢ`) with both extremes searched in one
/// interleaved pass per step. Sturm counts of this zero-diagonal form determine each singular
/// value to high relative accuracy (Demmel & Kahan 1990, "Accurate singular values of
/// bidiagonal matrices", §6; the basis of LAPACK `DBDSVDX`), and the bisection stops at
/// `DSTEBZ`'s tolerance `2ε·σ + 4·pivmin`, so each returned value is within a few ulps of
/// the bidiagonal's exact `σ` (the error that matters is then the reduction's `O(ε‖A‖)`).
///
/// Cost `O(n)` per step and at most ~60 steps for each extreme (the eigenvalues between are
/// never computed): the whole of [`cond2`](crate::cond2) after the bidiagonalization.
/// Entries must be finite (the callers scaled the matrix to entries in `[1, 2)`).
///
/// # Errors
/// [`LinalgError::OutOfMemory`](crate::LinalgError::OutOfMemory) for the `2n − 1` squares.
pub(crate) fn bidiagonal_extremes(d: &[f64], e: &[f64]) -> Result<(f64, f64)> {
    let n = d.len();
    debug_assert_eq!(e.len() + 1, n.max(1));
    if n == 1 {
        return Ok((d[0].abs(), d[0].abs()));
    }
    let off = || (0..2 * n - 1).map(|k| if k % 2 == 0 { d[k / 2] } else { e[k / 2] });
    let o2 = try_collect(
        "squares of the Golub-Kahan off-diagonal",
        2 * n - 1,
        off().map(|x| x * x),
    )?;
    let amax = off().fold(0.0f64, |m, x| m.max(x.abs()));
    if amax == 0.0 {
        return Ok((0.0, 0.0));
    }
    let pmin = f64::MIN_POSITIVE * o2.iter().fold(1.0f64, |m, &x| m.max(x));
    // σ_max ∈ [max |entry|, Gershgorin bound]; σ_min ∈ [0, smallest column norm of B]
    let mut ghi = 0.0f64;
    let mut cmin = f64::INFINITY;
    for k in 0..2 * n - 1 {
        let prev = if k > 0 { o2[k - 1] } else { 0.0 };
        ghi = ghi.max(o2[k].sqrt() + prev.sqrt());
        if k % 2 == 0 {
            cmin = cmin.min((o2[k] + prev).sqrt());
        }
    }
    let slack = |x: f64| x * (1.0 + 8.0 * f64::EPSILON) + 4.0 * pmin;
    let (mut xlo, mut xhi) = (amax * (1.0 - 8.0 * f64::EPSILON), slack(ghi.max(amax)));
    let (mut nlo, mut nhi) = (0.0, slack(cmin));
    // the upper ends must hold every / at least one singular value: widen on a rounding miss
    for _ in 0..64 {
        let (cx, cn) = gk_counts(&o2, xhi, nhi, pmin);
        if cx >= n && cn >= 1 {
            break;
        }
        if cx < n {
            xhi *= 2.0;
        }
        if cn < 1 {
            nhi *= 2.0;
        }
    }
    loop {
        let (tx, tn) = (trial(xlo, xhi, pmin), trial(nlo, nhi, pmin));
        if tx.is_none() && tn.is_none() {
            break;
        }
        let (x, y) = (tx.unwrap_or(xhi), tn.unwrap_or(nhi));
        let (cx, cn) = gk_counts(&o2, x, y, pmin);
        if tx.is_some() {
            if cx >= n {
                xhi = x;
            } else {
                xlo = x;
            }
        }
        if tn.is_some() {
            if cn >= 1 {
                nhi = y;
            } else {
                nlo = y;
            }
        }
    }
    // the two searches stop independently within 2ε of their values: when the singular values
    // are (nearly) all equal σ_min's estimate can exceed σ_max's by an ulp; both estimate the
    // same σ, so the order is restored
    let smax = xlo + 0.5 * (xhi - xlo);
    Ok((smax, (nlo + 0.5 * (nhi - nlo)).min(smax)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(x: f64) -> u64 {
        x.to_bits()
    }

    #[test]
    fn bidiagonal_extremes_of_a_diagonal_are_its_extreme_magnitudes() {
        // e = 0: σ = |dᵢ| exactly, however graded (each within DSTEBZ's 2ε relative stop) as
        // long as the squares stay normal
        let d = [3.0, -1e-150, 7.5, 2.0e-100, -0.25];
        let (x, n) = bidiagonal_extremes(&d, &[0.0; 4]).expect("small");
        assert!((x - 7.5).abs() <= 4.0 * f64::EPSILON * 7.5, "{x}");
        assert!((n - 1e-150).abs() <= 4.0 * f64::EPSILON * 1e-150, "{n}");
        assert_eq!(
            bidiagonal_extremes(&[-2.5], &[]).expect("small"),
            (2.5, 2.5)
        );
        let (x, n) = bidiagonal_extremes(&[0.0; 3], &[0.0; 2]).expect("small");
        assert_eq!((bits(x), bits(n)), (0, 0));
        // an exactly singular bidiagonal: σ_min = 0 is found to the absolute floor 4·pivmin
        let (x, n) = bidiagonal_extremes(&[1.0, 0.0, 2.0], &[1.0, 1.0]).expect("small");
        assert!(n <= 8.0 * f64::MIN_POSITIVE * 4.0, "{n}");
        assert!(x > 2.0 && x < 3.0, "{x}");
    }

    #[test]
    fn equal_singular_values_come_back_in_order() {
        // all σ equal (a multiple of an orthogonal matrix): the two independent bisections
        // each stop within 2ε of the same σ; σ_min must still not exceed σ_max (found by the
        // CI fuzz smoke: σ_min one ulp above σ_max)
        let mut bad = 0;
        for i in 0..2000u32 {
            let v = 1.0 + f64::from(i) / 2000.0;
            for k in 1..6 {
                let d = vec![v; k];
                let (x, n) = bidiagonal_extremes(&d, &vec![0.0; k - 1]).expect("small");
                bad += usize::from(n > x);
            }
        }
        assert_eq!(bad, 0, "σ_min > σ_max in {bad} cases");
    }

    #[test]
    fn bidiagonal_extremes_have_high_relative_accuracy() {
        // B = [[1, 1], [0, δ]]: σ_max σ_min = |det B| = δ, σ_max² + σ_min² = 2 + δ², so
        // σ_min = δ/σ_max with σ_max = √((2 + δ² + √((2 + δ²)² − 4δ²))/2): δ ≪ ε still
        // gets σ_min to a few ulps (a dense SVD gets it only to ε·σ_max absolute)
        for delta in [1e-3, 1e-9, 1e-30, 1e-150] {
            let t: f64 = 2.0 + delta * delta;
            let smax = ((t + (t * t - 4.0 * delta * delta).sqrt()) / 2.0).sqrt();
            let smin = delta / smax;
            let (x, n) = bidiagonal_extremes(&[1.0, delta], &[1.0]).expect("small");
            assert!(
                (x - smax).abs() <= 8.0 * f64::EPSILON * smax,
                "{delta}: {x}"
            );
            assert!(
                (n - smin).abs() <= 8.0 * f64::EPSILON * smin,
                "{delta}: {n} vs {smin}"
            );
        }
        // graded n × n: dᵢ = eᵢ = 10⁻ⁱ: σ_max between the first row's norm (√2) and ‖B‖_F
        let n = 30;
        let d: Vec<f64> = (0..n).map(|i| 10f64.powi(-i)).collect();
        let e: Vec<f64> = (0..n - 1).map(|i| 10f64.powi(-i)).collect();
        let (x, _) = bidiagonal_extremes(&d, &e).expect("small");
        let fro = d.iter().chain(&e).map(|v| v * v).sum::<f64>().sqrt();
        assert!((2f64.sqrt() * 0.999..=fro).contains(&x), "{x}");
    }

    #[test]
    fn bisection_matches_closed_form_of_the_1d_laplacian() {
        // T = tridiag(-1, 2, -1): λ_k = 2 − 2 cos(kπ/(n+1)), k = 1..n
        let n = 50;
        let d = vec![2.0; n];
        let e = vec![-1.0; n - 1];
        for k in [0, 1, 10, n - 1] {
            let exact =
                2.0 - 2.0 * (((k + 1) as f64) * core::f64::consts::PI / ((n + 1) as f64)).cos();
            let got = kth_eigenvalue(&d, &e, k);
            assert!(
                (got - exact).abs() <= 8.0 * f64::EPSILON * 4.0,
                "k={k}: {got} vs {exact}"
            );
            let v = eigenvector(&d, &e, got);
            // eigenvector: v_i ∝ sin((i+1)(k+1)π/(n+1))
            let s: Vec<f64> = (0..n)
                .map(|i| {
                    (((i + 1) * (k + 1)) as f64 * core::f64::consts::PI / ((n + 1) as f64)).sin()
                })
                .collect();
            let sn = s.iter().map(|x| x * x).sum::<f64>().sqrt();
            let dot: f64 = v.iter().zip(&s).map(|(a, b)| a * b).sum::<f64>() / sn;
            assert!(
                (dot.abs() - 1.0).abs() < 1e-10,
                "k={k}: |cos| = {}",
                dot.abs()
            );
        }
    }
}
