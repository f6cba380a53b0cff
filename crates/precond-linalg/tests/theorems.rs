//! Property tests of THEORY.md §2–3: Theorem 2 (Van der Sluis), Corollary 1, the orthogonal-rows
//! identity, and the spectral equivalences of preconditioning.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use faer::Mat;
use precond_linalg::*;
use proptest::prelude::*;
use rand::Rng;

/// Relative slack for comparing computed condition numbers: each carries a relative error of
/// about c·max(m,n)·ε·κ.
fn slack(m: usize, kappas: &[f64]) -> f64 {
    let k = kappas.iter().fold(1.0f64, |a, &b| a.max(b));
    64.0 * m as f64 * EPS * k
}

/// A random m×n matrix whose rows are scaled by 10^U(-e, e).
fn row_scaled(m: usize, n: usize, e: f64, seed: u64) -> Mat<f64> {
    let mut r = rng(seed ^ 0x9e37_79b9);
    let a = random_mat(m, n, seed);
    let s: Vec<f64> = (0..m).map(|_| 10f64.powf(r.random_range(-e..e))).collect();
    Mat::from_fn(m, n, |i, j| s[i] * a[(i, j)])
}

fn random_positive(m: usize, e: f64, seed: u64) -> Vec<f64> {
    let mut r = rng(seed);
    (0..m).map(|_| 10f64.powf(r.random_range(-e..e))).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, rng_seed: proptest::test_runner::RngSeed::Fixed(4), ..ProptestConfig::default() })]

    /// Theorem 2: κ(D₀A) ≤ sqrt(m) κ(DA) for every positive diagonal D, A of full column rank
    /// with rows scaled over 8 orders of magnitude.
    #[test]
    fn theorem2_van_der_sluis(n in 1usize..7, extra in 0usize..8, seed in any::<u64>(), dseed in any::<u64>()) {
        let m = n + extra;
        let a = row_scaled(m, n, 4.0, seed);
        let vds = van_der_sluis_bound(a.as_ref()).unwrap();
        prop_assert!((vds.sqrt_m - (m as f64).sqrt()).abs() <= 4.0 * EPS * vds.sqrt_m);
        prop_assert!(rel_err(vds.lower_bound, vds.kappa_d0a / vds.sqrt_m) <= 4.0 * EPS);
        for t in 0..4u64 {
            let d = random_positive(m, 4.0, dseed.wrapping_add(t));
            let da = Mat::from_fn(m, n, |i, j| d[i] * a[(i, j)]);
            let kda = cond2(da.as_ref()).unwrap().kappa;
            let s = slack(m, &[kda, vds.kappa_d0a]);
            prop_assert!(vds.kappa_d0a <= vds.sqrt_m * kda * (1.0 + s),
                "κ(D0A) = {} > sqrt(m) κ(DA) = {}", vds.kappa_d0a, vds.sqrt_m * kda);
            prop_assert!(vds.lower_bound <= kda * (1.0 + s));
        }
        // D = I is one of the D's
        prop_assert!(vds.lower_bound <= vds.kappa_a * (1.0 + slack(m, &[vds.kappa_a, vds.kappa_d0a])));
        // D0A has unit rows
        let eq = row_equilibrate(a.as_ref()).unwrap();
        for r in row_norms(eq.scaled.as_ref()) {
            prop_assert!((r - 1.0).abs() <= 4.0 * n as f64 * EPS);
        }
    }

    /// Theorem 2 for columns: κ(A D₀ᶜ) ≤ sqrt(n) κ(A D) (applied to Aᵀ).
    #[test]
    fn theorem2_column_version(n in 1usize..7, extra in 0usize..6, seed in any::<u64>(), dseed in any::<u64>()) {
        let m = n + extra;
        let at = row_scaled(m, n, 4.0, seed); // m×n, full column rank
        let a = at.transpose().to_owned(); // n×m, full row rank
        let eq = col_equilibrate(a.as_ref()).unwrap();
        let k0 = cond2(eq.scaled.as_ref()).unwrap().kappa;
        let d = random_positive(m, 4.0, dseed);
        let ad = Mat::from_fn(n, m, |i, j| a[(i, j)] * d[j]);
        let kad = cond2(ad.as_ref()).unwrap().kappa;
        prop_assert!(k0 <= (m as f64).sqrt() * kad * (1.0 + slack(m, &[k0, kad])));
    }

    /// Corollary 1: κ(DA) ≤ spread(D) · κ(D₀A) ≤ sqrt(m) · spread(D) · min_D' κ(D'A), with the
    /// spread r = d_i ||a_i||; and a multiple of D₀ has spread 1.
    #[test]
    fn corollary1_spread(n in 1usize..7, extra in 0usize..8, seed in any::<u64>(), dseed in any::<u64>(), c in 1e-3f64..1e3) {
        let m = n + extra;
        let a = row_scaled(m, n, 4.0, seed);
        let vds = van_der_sluis_bound(a.as_ref()).unwrap();
        let d = random_positive(m, 3.0, dseed);
        let spread = scaling_spread(a.as_ref(), &d).unwrap();
        let norms = row_norms(a.as_ref());
        let r: Vec<f64> = d.iter().zip(&norms).map(|(x, y)| x * y).collect();
        let want = r.iter().fold(0.0f64, |p, &q| p.max(q)) / r.iter().fold(f64::INFINITY, |p, &q| p.min(q));
        prop_assert!(rel_err(spread, want) <= 8.0 * EPS);
        let da = Mat::from_fn(m, n, |i, j| d[i] * a[(i, j)]);
        let kda = cond2(da.as_ref()).unwrap().kappa;
        prop_assert!(kda <= spread * vds.kappa_d0a * (1.0 + slack(m, &[kda, vds.kappa_d0a])));
        // with Theorem 2's lower bound on the optimum: κ(DA) ≤ sqrt(m)·spread·min_D' κ(D'A)
        // is implied by κ(DA) ≤ spread·κ(D0A) and κ(D0A) ≤ sqrt(m)·min.
        let d0c: Vec<f64> = vds.d0.iter().map(|x| c * x).collect();
        let s1 = scaling_spread(a.as_ref(), &d0c).unwrap();
        prop_assert!((s1 - 1.0).abs() <= 8.0 * EPS);
    }

    /// If the rows of A are orthogonal, κ(A) = max||a_i|| / min||a_i||.
    #[test]
    fn orthogonal_rows_identity(n in 1usize..10, drop in 0usize..4, seed in any::<u64>(), sseed in any::<u64>()) {
        let m = n.saturating_sub(drop).max(1);
        let q = random_orthogonal(n, seed);
        let s = random_positive(m, 5.0, sseed);
        let a = Mat::from_fn(m, n, |i, j| s[i] * q[(i, j)]);
        let norms = row_norms(a.as_ref());
        for (r, si) in norms.iter().zip(&s) {
            prop_assert!(rel_err(*r, *si) <= 8.0 * n as f64 * EPS);
        }
        let want = s.iter().fold(0.0f64, |p, &x| p.max(x)) / s.iter().fold(f64::INFINITY, |p, &x| p.min(x));
        let c = cond2(a.as_ref()).unwrap();
        prop_assert!(rel_err(c.kappa, want) <= slack(n, &[want]), "{} vs {}", c.kappa, want);
        // row equilibration makes it perfectly conditioned
        let eq = row_equilibrate(a.as_ref()).unwrap();
        prop_assert!((cond2(eq.scaled.as_ref()).unwrap().kappa - 1.0).abs() <= 64.0 * n as f64 * EPS);
    }

    /// eig(diag(p) H) = eig(P^{1/2} H P^{1/2}): compared with faer's *nonsymmetric* eigensolver
    /// applied to diag(p) H.
    #[test]
    fn diag_preconditioned_eigenvalues(n in 1usize..9, seed in any::<u64>(), pseed in any::<u64>()) {
        let h = random_spd(n, 0.05, seed);
        let p = random_positive(n, 1.5, pseed);
        let pc = precond_cond_diag(h.as_ref(), &p).unwrap();
        let ph = Mat::from_fn(n, n, |i, j| p[i] * h[(i, j)]);
        let want = general_real_eigs(&ph);
        let kp = p.iter().fold(0.0f64, |a, &b| a.max(b)) / p.iter().fold(f64::INFINITY, |a, &b| a.min(b));
        let tol = 64.0 * n as f64 * EPS * pc.row_scaled.sigma_max * kp.sqrt();
        for (g, w) in pc.eigenvalues.iter().zip(&want) {
            prop_assert!((g - w).abs() <= tol, "{} vs {} (tol {:e})", g, w, tol);
        }
        prop_assert!(pc.spectrum.positive_definite);
        prop_assert!(rel_err(pc.spectral_kappa, pc.eigenvalues[n - 1] / pc.eigenvalues[0]) <= 4.0 * EPS);
        // and the row-scaled 2-norm κ is the SVD-based κ of diag(p) H, a different number
        let c = cond2(ph.as_ref()).unwrap();
        prop_assert!(rel_err(pc.row_scaled_kappa2, c.kappa) <= 4.0 * EPS);
        prop_assert!(pc.row_scaled_kappa2 >= pc.spectral_kappa * (1.0 - 1e-8));
    }

    /// κ(SᵀHS) for a dense P = S Sᵀ: the same spectrum from the Cholesky factor
    /// (precond_cond_dense), from an arbitrary factor S (precond_cond_factor), and from the
    /// nonsymmetric eigenvalues of P H.
    #[test]
    fn dense_preconditioned_kappa(n in 1usize..9, seed in any::<u64>(), sseed in any::<u64>()) {
        let h = random_spd(n, 0.05, seed);
        let mut s = random_mat(n, n, sseed);
        for i in 0..n { s[(i, i)] += 2.0; }
        let p = &s * s.transpose();
        let by_factor = precond_cond_factor(h.as_ref(), s.as_ref()).unwrap();
        let by_dense = precond_cond_dense(h.as_ref(), p.as_ref()).unwrap();
        let ph = &p * &h;
        let want = general_real_eigs(&ph);
        let kp = sym_spectrum(p.as_ref()).unwrap().kappa;
        let tol = 64.0 * n as f64 * EPS * by_dense.row_scaled.sigma_max * kp.sqrt();
        for ((a, b), w) in by_factor.eigenvalues.iter().zip(&by_dense.eigenvalues).zip(&want) {
            prop_assert!((a - w).abs() <= tol, "factor {} vs {}", a, w);
            prop_assert!((b - w).abs() <= tol, "dense {} vs {}", b, w);
        }
        let kw = want[n - 1] / want[0];
        prop_assert!(rel_err(by_dense.spectral_kappa, kw) <= tol / want[0] + tol / want[n - 1]);
        prop_assert!(rel_err(by_factor.row_scaled_kappa2, by_dense.row_scaled_kappa2) <= slack(n, &[by_dense.row_scaled_kappa2]) * kp);
    }
}
