//! Symmetric tridiagonal kernels (internal): Sturm-sequence bisection for selected eigenvalues
//! and inverse iteration for eigenvectors. Used by the fast extreme-eigenvalue path of
//! [`sym_extremes`](crate::sym_extremes) and by the Lanczos convergence test.

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

#[cfg(test)]
mod tests {
    use super::*;

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
