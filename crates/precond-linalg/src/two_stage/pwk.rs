//! Eigenvalues of a symmetric tridiagonal matrix by the Pal–Walker–Kahan root-free implicit
//! QL/QR iteration (the algorithm of LAPACK's `DSTERF`), stage 3 of the two-stage symmetric
//! eigensolver and SVD.

use crate::error::{LinalgError, Result};

/// Iteration cap per eigenvalue (LAPACK's `MAXIT`): at most `MAXIT · n` QL/QR sweeps in all.
const MAXIT: usize = 30;

/// All eigenvalues of the symmetric tridiagonal matrix `T` with diagonal `d` (length `n`) and
/// off-diagonal `e[..n − 1]`, returned in ascending order in `d`; `e` is destroyed (entries
/// beyond `n − 1` are not touched).
///
/// Algorithm (Pal, Walker and Kahan's root-free variant of the implicit QL/QR iteration, as in
/// LAPACK's `DSTERF`):
/// 1. split `T` into unreduced blocks where `|eᵢ| ≤ √|dᵢ| · √|dᵢ₊₁| · ε` (DSTERF's test) or
///    `|eᵢ| ≤ ε² ·` the largest entry of the block it would join (ours: such an off-diagonal,
///    far below the other entries of its block, would square to a subnormal number and the
///    root-free recurrences lose all accuracy on it: `d = (1.7·10⁻¹⁶², 1.7·10⁻¹⁶², 3·10⁻³²³,
///    0)`, `e = (48.0, 9.3·10⁻¹⁶⁰, −1.5·10⁻³²³)` gave ±47.93 for ±48.01, a fuzzing find;
///    dropping it moves each eigenvalue of that block by at most `ε²` times the block's norm,
///    far below the backward error);
/// 2. scale every block by a power of two to its largest entry in `[1, 2)` (exact) and undo
///    it on the eigenvalues, so that the squares of its entries (all `≥ ε²` after step 1) and
///    their products stay normal numbers (DSTERF scales only blocks outside
///    `[√ω / ε², √Ω / 3]` (`Ω`, `ω` the overflow and underflow thresholds), to those ends:
///    entries much smaller than the block's norm then square to subnormals during the
///    iteration, which returned ±∞ on a 4 × 4 block of norm `2.7·10⁻¹⁶⁹`, a second fuzzing
///    find);
/// 3. replace the off-diagonal of the block by its squares `eᵢ²` and iterate on `(d, e²)`
///    only: each sweep is an implicitly shifted QL sweep (from the bottom up, when `|d|` is
///    larger at the bottom of the block) or QR sweep (top down, otherwise) whose rotations are
///    carried by their squared cosines and sines, so no square root is taken inside a sweep;
///    the shift is the eigenvalue of the leading (QL) or trailing (QR) `2 × 2` block closer to
///    its corner entry (Wilkinson's shift);
/// 4. deflate an eigenvalue when `eᵢ² ≤ ε² |dᵢ dᵢ₊₁|` (DSTERF's test) or `eᵢ² ≤ ε⁴` (ours,
///    the scaled block's norm being `≥ 1`: `|eᵢ| ≤ ε²‖block‖`, so that the iteration never
///    continues on a subnormal `eᵢ²` when the `dᵢ` beside it are tiny) next to the converging
///    end, and finish a remaining `2 × 2` block directly (LAPACK's `DLAE2`);
/// 5. sort the eigenvalues ascending.
///
/// Accuracy: the computed eigenvalues are those of a nearby symmetric tridiagonal matrix, so,
/// as for any QR-type method, each has absolute error `O(ε ‖T‖₂)` (per unreduced block: a block
/// split off at step 1 is accurate relative to its own norm). Cost: `O(n²)` flops (about
/// `2`–`3` sweeps per eigenvalue, each of `O(block length)` with three divisions per rotation,
/// no square roots, the two divisions of a rotation independent of each other, see
/// [`next_p`]), `O(1)` extra memory.
///
/// # Errors
/// [`LinalgError::NoConvergence`] when the iteration has not converged after `30 n` sweeps,
/// and for non-finite input (then `d` and `e` hold partial results); callers fall back to a
/// standard QR iteration.
pub(crate) fn tridiagonal_eigenvalues_pwk(d: &mut [f64], e: &mut [f64]) -> Result<()> {
    pwk(d, e, MAXIT).map(|_| ())
}

/// [`tridiagonal_eigenvalues_pwk`] with an explicit per-eigenvalue sweep cap `maxit`; returns
/// the number of QL/QR sweeps performed.
pub(crate) fn pwk(d: &mut [f64], e: &mut [f64], maxit: usize) -> Result<usize> {
    let n = d.len();
    if n <= 1 {
        return Ok(0);
    }
    assert!(
        e.len() + 1 >= n,
        "tridiagonal_eigenvalues_pwk: {} off-diagonal entries for n = {n}",
        e.len()
    );
    let e = &mut e[..n - 1];
    if let Some(x) = d.iter().chain(e.iter()).find(|x| !x.is_finite()) {
        return Err(LinalgError::NoConvergence {
            what: "root-free tridiagonal QL/QR iteration (non-finite entry)",
            iterations: 0,
            residual: *x,
        });
    }

    let eps = f64::EPSILON * 0.5; // LAPACK's relative machine precision (unit roundoff)
    let eps2 = eps * eps;
    let nmaxit = maxit * n;
    let mut jtot = 0usize;

    let mut l1 = 0usize;
    while l1 < n {
        if l1 > 0 {
            e[l1 - 1] = 0.0;
        }
        // end `m` (inclusive) of the unreduced block starting at l1
        let mut m = l1;
        while m + 1 < n {
            if e[m].abs() <= d[m].abs().sqrt() * d[m + 1].abs().sqrt() * eps {
                e[m] = 0.0;
                break;
            }
            m += 1;
        }
        let (lsv, mut lendsv) = (l1, m);
        // an off-diagonal below ε² times the block's largest entry ends the block there (see
        // step 1 of the function's documentation)
        let anorm = loop {
            let anorm = d[lsv..=lendsv]
                .iter()
                .chain(&e[lsv..lendsv])
                .fold(0.0f64, |a, x| a.max(x.abs()));
            match (lsv..lendsv).find(|&i| e[i].abs() <= eps2 * anorm) {
                Some(i) => lendsv = i,
                None => break anorm,
            }
        };
        l1 = lendsv + 1;
        if lendsv == lsv {
            continue;
        }

        // scale the block by a power of two to its largest entry in [1, 2) (exact)
        if anorm == 0.0 {
            continue;
        }
        let k = crate::scaling::exponent(anorm);
        if k != 0 {
            d[lsv..=lendsv]
                .iter_mut()
                .for_each(|x| *x = crate::scaling::ldexp(*x, -k));
            e[lsv..lendsv]
                .iter_mut()
                .for_each(|x| *x = crate::scaling::ldexp(*x, -k));
        }
        e[lsv..lendsv].iter_mut().for_each(|x| *x *= *x);

        // QL when |d| is larger at the bottom, QR otherwise
        let converged = if d[lendsv].abs() >= d[lsv].abs() {
            ql(d, e, lsv, lendsv, eps2, &mut jtot, nmaxit)
        } else {
            qr(d, e, lendsv, lsv, eps2, &mut jtot, nmaxit)
        };

        if k != 0 {
            d[lsv..=lendsv]
                .iter_mut()
                .for_each(|x| *x = crate::scaling::ldexp(*x, k));
        }
        if !converged {
            let residual = e.iter().fold(0.0f64, |a, x| a.max(x.abs().sqrt()));
            return Err(LinalgError::NoConvergence {
                what: "root-free tridiagonal QL/QR iteration (PWK, DSTERF)",
                iterations: jtot,
                residual,
            });
        }
    }
    d.sort_by(f64::total_cmp);
    Ok(jtot)
}

/// Eigenvalues `(rt1, rt2)` of `[[a, b], [b, c]]`, `|rt1| ≥ |rt2|` (LAPACK's `DLAE2`): the
/// larger one from the trace and the discriminant without overflow, the smaller one from the
/// determinant to avoid cancellation.
fn eig2(a: f64, b: f64, c: f64) -> (f64, f64) {
    let sm = a + c;
    let adf = (a - c).abs();
    let ab = (b + b).abs();
    let (acmx, acmn) = if a.abs() > c.abs() { (a, c) } else { (c, a) };
    let rt = if adf > ab {
        adf * (1.0 + (ab / adf).powi(2)).sqrt()
    } else if adf < ab {
        ab * (1.0 + (adf / ab).powi(2)).sqrt()
    } else {
        ab * core::f64::consts::SQRT_2
    };
    if sm == 0.0 {
        (0.5 * rt, -0.5 * rt)
    } else {
        let rt1 = if sm < 0.0 {
            0.5 * (sm - rt)
        } else {
            0.5 * (sm + rt)
        };
        (rt1, (acmx / rt1) * acmn - (b / rt1) * b)
    }
}

/// Wilkinson shift for the corner entry `p` with neighbour `q` and squared coupling `e2`: the
/// eigenvalue of `[[p, √e2], [√e2, q]]` closer to `p`.
#[inline]
fn shift(p: f64, q: f64, e2: f64) -> f64 {
    let rte = e2.sqrt();
    let sigma = (q - p) / (2.0 * rte);
    let r = sigma.hypot(1.0);
    p - rte / (sigma + if sigma >= 0.0 { r } else { -r })
}

/// The next `p = γ² / c` of a root-free rotation (`c = p_old / r`). The two divisions of a
/// rotation, `1 / r` (for `c` and `s`) and `1 / c = r / p_old`, both start from `r`, so only
/// one division latency lies on the sweep's dependency chain (DSTERF divides by `r`, then by
/// `c`); `γ² / c` directly when `c` is subnormal (`r / p_old` could overflow there), and
/// `c_old · e²` when `c = 0`, as DSTERF.
#[inline(always)]
fn next_p(gamma: f64, c: f64, cinv: f64, oldc: f64, bb: f64) -> f64 {
    if c >= f64::MIN_POSITIVE {
        (gamma * gamma) * cinv
    } else if c != 0.0 {
        (gamma * gamma) / c
    } else {
        oldc * bb
    }
}

/// Root-free implicit QL iteration on the block `l..=lend` (`l < lend`) of `(d, e²)`,
/// converging eigenvalues at the top. `false` when the sweep budget ran out.
fn ql(
    d: &mut [f64],
    e: &mut [f64],
    mut l: usize,
    lend: usize,
    eps2: f64,
    jtot: &mut usize,
    nmaxit: usize,
) -> bool {
    while l <= lend {
        // first negligible (squared) off-diagonal at or below l
        let mut m = l;
        while m < lend {
            if e[m] <= eps2 * (d[m] * d[m + 1]).abs() || e[m] <= eps2 * eps2 {
                break;
            }
            m += 1;
        }
        if m < lend {
            e[m] = 0.0;
        }
        if m == l {
            l += 1; // d[l] is an eigenvalue
            continue;
        }
        if m == l + 1 {
            let (rt1, rt2) = eig2(d[l], e[l].sqrt(), d[l + 1]);
            d[l] = rt1;
            d[l + 1] = rt2;
            e[l] = 0.0;
            l += 2;
            continue;
        }
        if *jtot == nmaxit {
            return false;
        }
        *jtot += 1;

        let sigma = shift(d[l], d[l + 1], e[l]);
        let mut c = 1.0;
        let mut s = 0.0;
        let mut gamma = d[m] - sigma;
        let mut p = gamma * gamma;
        for i in (l..m).rev() {
            let bb = e[i];
            let r = p + bb;
            if i + 1 != m {
                e[i + 1] = s * r;
            }
            let oldc = c;
            let (rinv, cinv) = (1.0 / r, r / p);
            c = p * rinv;
            s = bb * rinv;
            let oldgam = gamma;
            let alpha = d[i];
            gamma = c * (alpha - sigma) - s * oldgam;
            d[i + 1] = oldgam + (alpha - gamma);
            p = next_p(gamma, c, cinv, oldc, bb);
        }
        e[l] = s * p;
        d[l] = sigma + gamma;
    }
    true
}

/// Root-free implicit QR iteration on the block `lend..=l` (`lend < l`) of `(d, e²)`,
/// converging eigenvalues at the bottom. `false` when the sweep budget ran out.
fn qr(
    d: &mut [f64],
    e: &mut [f64],
    mut l: usize,
    lend: usize,
    eps2: f64,
    jtot: &mut usize,
    nmaxit: usize,
) -> bool {
    loop {
        // first negligible (squared) off-diagonal at or above l
        let mut m = l;
        while m > lend {
            if e[m - 1] <= eps2 * (d[m] * d[m - 1]).abs() || e[m - 1] <= eps2 * eps2 {
                break;
            }
            m -= 1;
        }
        if m > lend {
            e[m - 1] = 0.0;
        }
        if m == l {
            // d[l] is an eigenvalue
            if l == lend {
                return true;
            }
            l -= 1;
            continue;
        }
        if m + 1 == l {
            let (rt1, rt2) = eig2(d[l], e[l - 1].sqrt(), d[l - 1]);
            d[l] = rt1;
            d[l - 1] = rt2;
            e[l - 1] = 0.0;
            if l < lend + 2 {
                return true;
            }
            l -= 2;
            continue;
        }
        if *jtot == nmaxit {
            return false;
        }
        *jtot += 1;

        let sigma = shift(d[l], d[l - 1], e[l - 1]);
        let mut c = 1.0;
        let mut s = 0.0;
        let mut gamma = d[m] - sigma;
        let mut p = gamma * gamma;
        for i in m..l {
            let bb = e[i];
            let r = p + bb;
            if i != m {
                e[i - 1] = s * r;
            }
            let oldc = c;
            let (rinv, cinv) = (1.0 / r, r / p);
            c = p * rinv;
            s = bb * rinv;
            let oldgam = gamma;
            let alpha = d[i + 1];
            gamma = c * (alpha - sigma) - s * oldgam;
            d[i] = oldgam + (alpha - gamma);
            p = next_p(gamma, c, cinv, oldc, bb);
        }
        e[l - 1] = s * p;
        d[l] = sigma + gamma;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tridiagonal::kth_eigenvalue;
    use crate::two_stage::{first_or_qr, tridiagonal_eigenvalues, tridiagonal_eigenvalues_qr};
    use core::f64::consts::PI;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const EPS: f64 = f64::EPSILON;

    fn run(d: &[f64], e: &[f64]) -> Vec<f64> {
        let mut dd = d.to_vec();
        let mut ee = e.to_vec();
        tridiagonal_eigenvalues_pwk(&mut dd, &mut ee).expect("PWK converges");
        dd
    }

    /// `‖T‖_∞ ≥ ‖T‖₂`.
    fn norm(d: &[f64], e: &[f64]) -> f64 {
        let n = d.len();
        (0..n)
            .map(|i| {
                d[i].abs()
                    + if i > 0 { e[i - 1].abs() } else { 0.0 }
                    + if i + 1 < n { e[i].abs() } else { 0.0 }
            })
            .fold(0.0, f64::max)
    }

    /// Absolute tolerance `4 · n · ε · scale`.
    fn tol(n: usize, scale: f64) -> f64 {
        4.0 * n.max(1) as f64 * EPS * scale
    }

    fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (k, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol,
                "{what}: eigenvalue {k}: {g:e} vs {w:e} (diff {:e}, tol {tol:e})",
                (g - w).abs()
            );
        }
    }

    fn assert_ascending(v: &[f64], what: &str) {
        assert!(v.windows(2).all(|w| w[0] <= w[1]), "{what}: not ascending");
    }

    /// The same eigenvalues by Sturm bisection (independent of any QR iteration).
    fn bisection(d: &[f64], e: &[f64]) -> Vec<f64> {
        (0..d.len()).map(|k| kth_eigenvalue(d, e, k)).collect()
    }

    /// Checks PWK against bisection and faer's QR to `4 n ε ‖T‖`.
    fn check_against_references(d: &[f64], e: &[f64], what: &str) -> Vec<f64> {
        let got = check_against_bisection(d, e, what);
        let qr = tridiagonal_eigenvalues_qr(d, e).expect("faer QR");
        let t = tol(d.len(), norm(d, e));
        assert_close(&got, &qr, t, &format!("{what} vs faer QR"));
        got
    }

    /// Checks PWK against bisection to `4 n ε ‖T‖`.
    fn check_against_bisection(d: &[f64], e: &[f64], what: &str) -> Vec<f64> {
        let got = run(d, e);
        assert_ascending(&got, what);
        let t = tol(d.len(), norm(d, e));
        assert_close(&got, &bisection(d, e), t, &format!("{what} vs bisection"));
        got
    }

    fn laplacian(n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let exact = (1..=n)
            .map(|k| 2.0 - 2.0 * (k as f64 * PI / (n + 1) as f64).cos())
            .collect();
        (vec![2.0; n], vec![-1.0; n.saturating_sub(1)], exact)
    }

    #[test]
    fn one_d_laplacian_closed_form() {
        for n in [1, 2, 3, 4, 5, 10, 37, 100, 500] {
            let (d, e, exact) = laplacian(n);
            let got = run(&d, &e);
            assert_close(&got, &exact, tol(n, 4.0), &format!("laplacian n={n}"));
        }
        // tridiag(δ, 1, δ): eigenvalues 1 + 2δ cos(kπ/(n+1)), a cluster of width 4δ that only
        // correct splitting and deflation thresholds resolve
        for (n, delta) in [(3, 1e-9), (4, 1e-7), (50, 1e-11), (200, 1e-5)] {
            let d = vec![1.0; n];
            let e = vec![delta; n - 1];
            let exact: Vec<f64> = (1..=n)
                .rev()
                .map(|k| 1.0 + 2.0 * delta * (k as f64 * PI / (n + 1) as f64).cos())
                .collect();
            let got = run(&d, &e);
            assert_close(
                &got,
                &exact,
                tol(n, 1.0),
                &format!("cluster n={n} δ={delta:e}"),
            );
        }
    }

    #[test]
    fn tiny_sizes_exactly() {
        // n = 0 and n = 1: nothing to do
        let mut d: Vec<f64> = vec![];
        tridiagonal_eigenvalues_pwk(&mut d, &mut []).expect("n = 0");
        let mut d = vec![-3.5];
        tridiagonal_eigenvalues_pwk(&mut d, &mut []).expect("n = 1");
        assert_eq!(d, vec![-3.5]);
        // n = 2: (a + c)/2 ± √(((a − c)/2)² + b²)
        for &(a, b, c) in &[
            (1.0f64, 2.0f64, 3.0f64),
            (3.0, -2.0, 1.0),
            (0.0, 1.0, 0.0),
            (-1e8, 1e-3, 1e8),
            (5.0, 0.0, -5.0),
            (1.0, 1e-200, 1.0),
        ] {
            let m = 0.5 * (a + c);
            let r = (0.5 * (a - c)).hypot(b);
            let got = run(&[a, c], &[b]);
            assert_close(&got, &[m - r, m + r], tol(2, norm(&[a, c], &[b])), "n = 2");
        }
        // n = 3: tridiag(1, 2, 1) has 2 − √2, 2, 2 + √2
        let s = 2f64.sqrt();
        let got = run(&[2.0; 3], &[1.0; 2]);
        assert_close(&got, &[2.0 - s, 2.0, 2.0 + s], tol(3, 4.0), "n = 3");
        // n = 3 QR direction (|d| larger at the top): [[3, 1, 0], [1, 0, 1], [0, 1, −1]]
        check_against_references(&[3.0, 0.0, -1.0], &[1.0, 1.0], "n = 3 QR");
        // an off-diagonal array longer than n − 1 is accepted and only its prefix used
        let mut d = vec![2.0; 3];
        let mut e = vec![1.0, 1.0, f64::NAN];
        tridiagonal_eigenvalues_pwk(&mut d, &mut e).expect("long e");
        assert_close(&d, &[2.0 - s, 2.0, 2.0 + s], tol(3, 4.0), "n = 3, long e");
        assert!(e[2].is_nan());
    }

    #[test]
    fn wilkinson_w21_plus() {
        // W21+: d = |10 − i|, e = 1; its two largest eigenvalues agree to 14 digits
        let d: Vec<f64> = (0..21).map(|i| (10.0f64 - i as f64).abs()).collect();
        let e = vec![1.0; 20];
        let got = check_against_references(&d, &e, "W21+");
        let t = tol(21, 12.0);
        assert!((got[20] - 10.746_194_182_903_393).abs() <= t, "{}", got[20]);
        assert!((got[19] - 10.746_194_182_903_322).abs() <= t, "{}", got[19]);
        // W21+ without its last row and column (|d| larger at the top: QR iteration) and its
        // mirror image (QL), with near-degenerate pairs
        let dt: Vec<f64> = d[..20].to_vec();
        let got = check_against_references(&dt, &e[..19], "W21+ truncated (QR)");
        let dr: Vec<f64> = dt.iter().rev().copied().collect();
        let mirrored = check_against_references(&dr, &e[..19], "W21+ truncated (QL)");
        assert_close(&got, &mirrored, tol(20, 12.0), "W21+ truncated, mirrored");
        // the same for a perturbed 1-D Laplacian
        let n = 500;
        let mut dl = vec![2.0; n];
        dl[0] = 2.5;
        let el = vec![-1.0; n - 1];
        let got = check_against_references(&dl, &el, "Laplacian, d0 = 2.5 (QR)");
        dl.reverse();
        let mirrored = check_against_references(&dl, &el, "Laplacian, d_last = 2.5 (QL)");
        assert_close(&got, &mirrored, tol(n, 4.5), "Laplacian, mirrored");
        // W21−: d = 10 − i, eigenvalues in ± pairs
        let d: Vec<f64> = (0..21).map(|i| 10.0 - i as f64).collect();
        let got = check_against_references(&d, &e, "W21-");
        for k in 0..21 {
            assert!((got[k] + got[20 - k]).abs() <= t, "W21- pairs");
        }
    }

    /// Golub–Kahan form of the bidiagonal `(a, b)`: zero diagonal, off-diagonal
    /// `a₀, b₀, a₁, …, a_{n−1}`; its eigenvalues are `±σᵢ`.
    fn golub_kahan(a: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let n = a.len();
        let mut off = Vec::with_capacity(2 * n - 1);
        for i in 0..n {
            off.push(a[i]);
            if i + 1 < n {
                off.push(b[i]);
            }
        }
        (vec![0.0; 2 * n], off)
    }

    #[test]
    fn zero_diagonal_golub_kahan_matrices() {
        // tridiag(1, 0, 1) of order N = 2n: eigenvalues 2 cos(jπ/(N + 1)) (the GK matrix of
        // the all-ones bidiagonal)
        for n in [1, 2, 5, 50, 300] {
            let (d, e) = golub_kahan(&vec![1.0; n], &vec![1.0; n - 1]);
            let nn = 2 * n;
            let mut exact: Vec<f64> = (1..=nn)
                .map(|j| 2.0 * (j as f64 * PI / (nn + 1) as f64).cos())
                .collect();
            exact.sort_by(f64::total_cmp);
            let got = run(&d, &e);
            assert_close(&got, &exact, tol(nn, 2.0), &format!("GK ones n={n}"));
        }
        // random and graded bidiagonals: ± pairs, and agreement with the references
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for (n, grade) in [(3, 0.0), (20, 0.0), (120, 0.0), (40, 8.0), (150, 12.0)] {
            let a: Vec<f64> = (0..n)
                .map(|i| rng.random_range(0.5..1.5) * 10f64.powf(-grade * i as f64 / n as f64))
                .collect();
            let b: Vec<f64> = (0..n - 1).map(|_| rng.random_range(-1.0..1.0)).collect();
            let (d, e) = golub_kahan(&a, &b);
            let what = format!("GK random n={n} grade={grade}");
            let got = check_against_references(&d, &e, &what);
            let t = tol(2 * n, norm(&d, &e));
            for k in 0..n {
                assert!(
                    (got[k] + got[2 * n - 1 - k]).abs() <= t,
                    "{what}: ± pair {k}: {} {}",
                    got[k],
                    got[2 * n - 1 - k]
                );
            }
        }
        // a nearly singular bidiagonal: one singular value ≈ 1e-14
        let mut a = vec![1.0; 30];
        a[29] = 1e-14;
        let (d, e) = golub_kahan(&a, &vec![0.5; 29]);
        check_against_references(&d, &e, "GK nearly singular");
    }

    #[test]
    fn zero_off_diagonals_split_the_matrix() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let n = 60;
        let d: Vec<f64> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
        // diagonal matrix: the sorted diagonal, exactly
        let got = run(&d, &vec![0.0; n - 1]);
        let mut want = d.clone();
        want.sort_by(f64::total_cmp);
        assert_eq!(got, want);
        // 1×1 blocks at both ends, 2×2 and 3×3 blocks, a −0.0, longer blocks in between
        let mut e: Vec<f64> = (0..n - 1).map(|_| rng.random_range(-1.0..1.0)).collect();
        for z in [0, 2, 4, 7, 20, 21, 40, n - 2] {
            e[z] = 0.0;
        }
        e[30] = -0.0;
        check_against_references(&d, &e, "split blocks");
        // blocks of very different scales are each accurate relative to their own norm
        let (dl, el, exact) = laplacian(25);
        let mut d = Vec::new();
        let mut e = Vec::new();
        let scales = [1e150, 1.0, 1e-150, 1e-300, 1e300];
        let mut want = Vec::new();
        for (b, s) in scales.iter().enumerate() {
            if b > 0 {
                e.push(0.0);
            }
            d.extend(dl.iter().map(|x| x * s));
            e.extend(el.iter().map(|x| x * s));
            want.extend(exact.iter().map(|x| (x * s, tol(25, 4.0 * s))));
        }
        let got = run(&d, &e);
        want.sort_by(|x, y| x.0.total_cmp(&y.0));
        for (k, (g, (w, t))) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= *t, "scaled blocks: {k}: {g:e} vs {w:e}");
        }
    }

    /// An off-diagonal far below the rest of its block (`9.3·10⁻¹⁶⁰` beside `48`): its square
    /// is subnormal, and before the `ε²`-relative split the root-free iteration returned ±47.93
    /// for ±48.01 (the tridiagonal form of a 4 × 4 input found by the `diagnostics_scale` fuzz
    /// target). Against faer's QR iteration and bisection, within `4nε‖T‖`.
    #[test]
    fn an_off_diagonal_squaring_to_a_subnormal_splits_the_block() {
        let d = [1.680661148731266e-162, 1.6736065878521363e-162, 3e-323, 0.0];
        let e = [48.012084603306164, 9.280029946044077e-160, -1.5e-323];
        let got = check_against_references(&d, &e, "subnormal square");
        assert!((got[3] - 48.012084603306164).abs() <= 4.0 * 4.0 * f64::EPSILON * 48.1);
        assert!((got[0] + 48.012084603306164).abs() <= 4.0 * 4.0 * f64::EPSILON * 48.1);
    }

    /// A block of norm `2.7·10⁻¹⁶⁹` whose other entries are 10¹⁵–10²⁰ times smaller, beside a
    /// block of norm 1.2 (the tridiagonal form of a 6 × 6 input found by the
    /// `diagnostics_scale` fuzz target): scaled to DSTERF's `√ω / ε²` only, its off-diagonals
    /// went subnormal during the iteration and two eigenvalues came back as ±∞.
    #[test]
    fn a_block_of_tiny_norm_with_tinier_entries_stays_finite() {
        let d = [
            1.881063753025755e-207,
            1.881063753025472e-207,
            -4.139304300870765e-220,
            0.0,
            0.0,
            0.0,
        ];
        let e = [
            -1.2078431382519648,
            -1.71983629748646e-188,
            -5.347508652492012e-185,
            -2.703638834727271e-169,
            -8.76847198801886e-189,
        ];
        let got = check_against_references(&d, &e, "tiny block with tinier entries");
        assert!(got.iter().all(|x| x.is_finite()));
        let t = tol(6, 1.21);
        assert!(
            (got[5] - 1.2078431382519648).abs() <= t && (got[0] + 1.2078431382519648).abs() <= t
        );
    }

    #[test]
    fn huge_tiny_and_graded_entries() {
        // the scaling paths: T · s has eigenvalues λ · s
        let (d, e, exact) = laplacian(40);
        for s in [
            1e300,
            1e200,
            1e150,
            1e-150,
            1e-200,
            1e-300,
            0.5f64.powi(1040),
        ] {
            let ds: Vec<f64> = d.iter().map(|x| x * s).collect();
            let es: Vec<f64> = e.iter().map(|x| x * s).collect();
            let want: Vec<f64> = exact.iter().map(|x| x * s).collect();
            // subnormal results are rounded to multiples of the smallest subnormal
            let t = tol(40, 4.0 * s) + 4.0 * f64::from_bits(1);
            assert_close(&run(&ds, &es), &want, t, &format!("laplacian × {s:e}"));
        }
        // the largest finite entries: no overflow
        let m = f64::MAX / 4.0;
        let got = run(&[m, m], &[m]);
        assert_close(&got, &[0.0, 2.0 * m], tol(2, 2.0 * m), "f64::MAX / 4");
        // graded within one block, both directions (QL from the small end, QR from the large);
        // faer's QR iteration does not converge on these, so bisection is the reference
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for n in [10, 80] {
            let d: Vec<f64> = (0..n)
                .map(|i| {
                    rng.random_range(0.5..1.5)
                        * 10f64.powf(-150.0 + 300.0 * i as f64 / (n - 1) as f64)
                })
                .collect();
            let e: Vec<f64> = (0..n - 1)
                .map(|i| rng.random_range(-0.5..0.5) * (d[i] * d[i + 1]).sqrt())
                .collect();
            check_against_bisection(&d, &e, &format!("graded up n={n}"));
            let dr: Vec<f64> = d.iter().rev().copied().collect();
            let er: Vec<f64> = e.iter().rev().copied().collect();
            check_against_bisection(&dr, &er, &format!("graded down n={n}"));
        }
    }

    #[test]
    fn random_matrices_against_bisection_and_faer_qr() {
        let mut rng = ChaCha8Rng::seed_from_u64(2024);
        for n in (1..=40).chain([64, 200, 700]) {
            for kind in 0..4 {
                let d: Vec<f64> = (0..n)
                    .map(|i| match kind {
                        0 => rng.random_range(-1.0..1.0),
                        1 => i as f64,       // QL: |d| largest at the bottom
                        2 => (n - i) as f64, // QR: |d| largest at the top
                        _ => [0.0, 1.0, 1.0, -1.0][i % 4], // repeated and zero entries
                    })
                    .collect();
                let e: Vec<f64> = (0..n.saturating_sub(1))
                    .map(|i| match kind {
                        3 if i % 5 == 0 => 1e-20,
                        _ => rng.random_range(-1.0..1.0),
                    })
                    .collect();
                check_against_references(&d, &e, &format!("random n={n} kind={kind}"));
            }
        }
    }

    #[test]
    fn converges_in_few_sweeps_per_eigenvalue() {
        // the Wilkinson-type shift converges fast (measured ≈ 2.3 sweeps per eigenvalue; a
        // zero or wrong shift converges linearly and needs many more)
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for n in [100, 1000] {
            let mut d: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut e: Vec<f64> = (0..n - 1).map(|_| rng.random_range(-1.0..1.0)).collect();
            let sweeps = pwk(&mut d, &mut e, MAXIT).expect("converges");
            assert!(sweeps <= 3 * n, "n = {n}: {sweeps} sweeps");
        }
    }

    #[test]
    fn no_convergence_is_reported_and_the_fallback_is_faer_qr() {
        let (d, e, exact) = laplacian(30);
        let mut dd = d.clone();
        let mut ee = e.clone();
        let err = pwk(&mut dd, &mut ee, 0).expect_err("no sweeps allowed");
        assert!(matches!(
            err,
            LinalgError::NoConvergence { iterations: 0, .. }
        ));
        let got = first_or_qr(&d, &e, |d, e| pwk(d, e, 0).map(|_| ())).expect("fallback");
        assert_eq!(got, tridiagonal_eigenvalues_qr(&d, &e).expect("faer QR"));
        assert_close(&got, &exact, tol(30, 4.0), "fallback");
        // without failure, tridiagonal_eigenvalues is PWK
        let main = tridiagonal_eigenvalues(&d, &e).expect("PWK");
        assert_eq!(main, run(&d, &e));
        // non-finite entries are rejected
        let mut dd = vec![1.0, f64::NAN, 2.0];
        assert!(tridiagonal_eigenvalues_pwk(&mut dd, &mut [1.0, 1.0]).is_err());
        let mut dd = vec![1.0, 2.0];
        assert!(tridiagonal_eigenvalues_pwk(&mut dd, &mut [f64::INFINITY]).is_err());
    }
}
