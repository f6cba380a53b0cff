//! Closed forms: diagonal matrices, rank-deficient matrices, equilibration, and the rates of
//! Theorem 1 / heavy ball checked against simulated iterations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use faer::Mat;
use precond_linalg::*;

#[test]
fn diagonal_matrix_condition_numbers() {
    let d = [3.0, -0.5, 1e-3, 40.0, 2.0];
    let a = Mat::from_fn(5, 5, |i, j| if i == j { d[i] } else { 0.0 });
    let c = cond2(a.as_ref()).unwrap();
    assert!(rel_err(c.sigma_max, 40.0) <= 4.0 * EPS);
    assert!(rel_err(c.sigma_min, 1e-3) <= 4.0 * EPS);
    assert!(rel_err(c.kappa, 4e4) <= 4.0 * EPS);
    assert!(rel_err(cond1(a.as_ref()).unwrap(), 4e4) <= 4.0 * EPS);
    // the estimator is exact on diagonal matrices
    assert!(rel_err(cond_estimate_lu(a.as_ref()).unwrap().kappa1_estimate, 4e4) <= 4.0 * EPS);
    let sp = sym_spectrum(a.as_ref()).unwrap();
    assert_eq!(sp.eigenvalues.len(), 5);
    assert!(rel_err(sp.lambda_min, -0.5) <= 4.0 * EPS);
    assert!(!sp.positive_definite);
    assert!(sp.kappa.is_infinite());
    assert!(rel_err(sp.smallest_positive.unwrap(), 1e-3) <= 4.0 * EPS);
    assert!(rel_err(sp.kappa_positive, 4e4) <= 4.0 * EPS);

    let spd = Mat::from_fn(
        4,
        4,
        |i, j| if i == j { [2.0, 8.0, 0.5, 1.0][i] } else { 0.0 },
    );
    let sp = sym_spectrum(spd.as_ref()).unwrap();
    assert!(sp.positive_definite);
    assert!(rel_err(sp.kappa, 16.0) <= 4.0 * EPS);
    assert!(rel_err(sp.kappa_positive, 16.0) <= 4.0 * EPS);
    assert!(rel_err(sym_cond(spd.as_ref()).unwrap(), 16.0) <= 4.0 * EPS);
    let est = cond_estimate_spd(spd.as_ref()).unwrap();
    assert!(rel_err(est.kappa1_estimate, 16.0) <= 4.0 * EPS);
    assert!(rel_err(est.norm1, 8.0) <= 4.0 * EPS);
    // symmetric equilibration of a diagonal SPD matrix is the identity
    let eq = sym_equilibrate(spd.as_ref()).unwrap();
    for i in 0..4 {
        assert!(rel_err(eq.scale[i], 1.0 / spd[(i, i)].sqrt()) <= 4.0 * EPS);
        assert!((eq.scaled[(i, i)] - 1.0).abs() <= 4.0 * EPS);
    }
    // diagonal preconditioner P = H^{-1} is perfect: κ(SᵀHS) = 1
    let p: Vec<f64> = (0..4).map(|i| 1.0 / spd[(i, i)]).collect();
    let pc = precond_cond_diag(spd.as_ref(), &p).unwrap();
    assert!((pc.spectral_kappa - 1.0).abs() <= 8.0 * EPS);
    assert!((pc.row_scaled_kappa2 - 1.0).abs() <= 8.0 * EPS);
}

#[test]
fn rank_deficient_gives_infinite_kappa_with_flag() {
    // rank 2 (third row = first + second), and the zero matrix
    let a = Mat::from_fn(3, 3, |i, j| match i {
        0 => [1.0, 2.0, 3.0][j],
        1 => [4.0, 5.0, 6.0][j],
        _ => [5.0, 7.0, 9.0][j],
    });
    let c = cond2(a.as_ref()).unwrap();
    assert!(c.rank_deficient);
    assert!(c.kappa.is_infinite() && c.kappa > 0.0);
    assert!(c.sigma_min <= 3.0 * EPS * c.sigma_max);
    let z = Mat::<f64>::zeros(2, 3);
    let c = cond2(z.as_ref()).unwrap();
    assert!(c.rank_deficient && c.kappa.is_infinite());
    // exactly singular U in the LU: infinite 1-norm κ and estimate
    let s = Mat::from_fn(2, 2, |i, _| if i == 0 { 1.0 } else { 0.0 });
    assert!(cond1(s.as_ref()).unwrap().is_infinite());
    assert!(
        cond_estimate_lu(s.as_ref())
            .unwrap()
            .kappa1_estimate
            .is_infinite()
    );
    // a full-rank but tall matrix is not flagged
    let t = Mat::from_fn(4, 2, |i, j| if i == j { 1.0 } else { 0.0 });
    let c = cond2(t.as_ref()).unwrap();
    assert!(!c.rank_deficient && (c.kappa - 1.0).abs() <= 4.0 * EPS);
}

#[test]
fn smallest_positive_eigenvalue_of_a_singular_hessian_with_custom_tolerance() {
    // eigenvalues {0 (x2), 1e-6, 1, 10}: the null space of a scale-invariant network
    let h = sym_with_eigs(&[0.0, 0.0, 1e-6, 1.0, 10.0], 7);
    let sp = sym_spectrum(h.as_ref()).unwrap();
    assert!(!sp.positive_definite);
    assert!(rel_err(sp.smallest_positive.unwrap(), 1e-6) <= 1e-8);
    assert!(rel_err(sp.kappa_positive, 1e7) <= 1e-8);
    assert!(rel_err(sp.rel_tol, 5.0 * EPS) <= 1e-12);
    // with rel_tol = 1e-5 the 1e-6 eigenvalue counts as zero too
    let sp = sym_spectrum_with_tol(h.as_ref(), 1e-5).unwrap();
    assert!(rel_err(sp.smallest_positive.unwrap(), 1.0) <= 1e-12);
    assert!(rel_err(sp.kappa_positive, 10.0) <= 1e-12);
    // negative semidefinite: no positive eigenvalue
    let nh = sym_with_eigs(&[-1.0, -2.0, 0.0], 3);
    let sp = sym_spectrum(nh.as_ref()).unwrap();
    assert_eq!(sp.smallest_positive, None);
    assert!(sp.kappa_positive.is_infinite());
}

#[test]
fn equilibration_closed_forms() {
    let a = Mat::from_fn(2, 3, |i, j| [[3.0, 4.0, 0.0], [0.0, 0.0, 1e-200]][i][j]);
    let r = row_norms(a.as_ref());
    assert!(rel_err(r[0], 5.0) <= 2.0 * EPS);
    assert!(rel_err(r[1], 1e-200) <= 2.0 * EPS, "no underflow: {}", r[1]);
    let big = Mat::from_fn(1, 2, |_, _| 1e300);
    assert!(
        rel_err(row_norms(big.as_ref())[0], 1e300 * 2f64.sqrt()) <= 2.0 * EPS,
        "no overflow"
    );
    let c = col_norms(a.as_ref());
    assert!(
        rel_err(c[0], 3.0) <= 2.0 * EPS
            && rel_err(c[1], 4.0) <= 2.0 * EPS
            && rel_err(c[2], 1e-200) <= 2.0 * EPS
    );
    let eq = row_equilibrate(a.as_ref()).unwrap();
    assert!(rel_err(eq.scale[0], 0.2) <= 2.0 * EPS);
    assert!(rel_err(eq.scaled[(0, 1)], 0.8) <= 2.0 * EPS);
    assert!(rel_err(eq.scaled[(1, 2)], 1.0) <= 2.0 * EPS);
    let eq = col_equilibrate(a.as_ref()).unwrap();
    assert!(
        rel_err(eq.scaled[(0, 0)], 1.0) <= 2.0 * EPS
            && rel_err(eq.scaled[(1, 2)], 1.0) <= 2.0 * EPS
    );
    // spread: d = (1, 1) on rows with norms (5, 1e-200)
    assert!(rel_err(scaling_spread(a.as_ref(), &[1.0, 1.0]).unwrap(), 5e200) <= 4.0 * EPS);
    // Van der Sluis on a matrix with orthogonal rows: D0A orthogonal, κ(D0A) = 1
    let o = Mat::from_fn(3, 3, |i, j| if i == j { [1.0, 1e3, 1e-3][i] } else { 0.0 });
    let v = van_der_sluis_bound(o.as_ref()).unwrap();
    assert!(rel_err(v.kappa_a, 1e6) <= 8.0 * EPS);
    assert!((v.kappa_d0a - 1.0).abs() <= 8.0 * EPS);
    assert!(rel_err(v.lower_bound, 1.0 / 3f64.sqrt()) <= 8.0 * EPS);
}

/// Runs GD on f(x) = ½ xᵀHx and returns ‖x_k‖ for k = 0..iters.
fn gd_errors(h: &Mat<f64>, eta: f64, iters: usize, beta: f64) -> Vec<f64> {
    let n = h.nrows();
    let mut x = vec![1.0; n];
    let mut x_prev = x.clone();
    let mut out = Vec::with_capacity(iters + 1);
    for _ in 0..=iters {
        out.push(x.iter().map(|v| v * v).sum::<f64>().sqrt());
        let g: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| h[(i, j)] * x[j]).sum())
            .collect();
        let new: Vec<f64> = (0..n)
            .map(|i| x[i] - eta * g[i] + beta * (x[i] - x_prev[i]))
            .collect();
        x_prev = std::mem::replace(&mut x, new);
    }
    out
}

#[test]
fn theorem1_rates_match_simulated_gradient_descent() {
    let (lmin, lmax) = (0.5, 20.0);
    let h = sym_with_eigs(&[lmin, 3.0, 7.0, lmax], 11);
    let kappa = lmax / lmin;
    let eta = gd_optimal_step(lmin, lmax);
    assert!(rel_err(eta, 2.0 / 20.5) <= 2.0 * EPS);
    let rho = gd_optimal_rate(kappa);
    assert!(rel_err(rho, 39.0 / 41.0) <= 2.0 * EPS);
    assert!(rel_err(gd_rate(eta, lmin, lmax), rho) <= 4.0 * EPS);
    // a smaller step: the rate is set by λ_min
    assert!(rel_err(gd_rate(0.01, lmin, lmax), 1.0 - 0.005) <= 4.0 * EPS);
    // a too-large step diverges: ρ > 1
    assert!(gd_rate(0.2, lmin, lmax) > 1.0);
    let errs = gd_errors(&h, eta, 400, 0.0);
    let fit = observed_rate(&errs, 0.5).unwrap();
    assert!(
        (fit.rate - rho).abs() <= 2e-3,
        "observed {} vs predicted {rho}",
        fit.rate
    );
    assert!(fit.r_squared > 0.999);

    let hb = heavy_ball_optimal(lmin, lmax);
    let sk = kappa.sqrt();
    assert!(rel_err(hb.rate, (sk - 1.0) / (sk + 1.0)) <= 4.0 * EPS);
    assert!(rel_err(hb.beta, hb.rate * hb.rate) <= 4.0 * EPS);
    assert!(rel_err(hb.eta, 4.0 / (lmax.sqrt() + lmin.sqrt()).powi(2)) <= 4.0 * EPS);
    assert!(rel_err(heavy_ball_optimal_rate(kappa), hb.rate) <= 4.0 * EPS);
    let errs = gd_errors(&h, hb.eta, 300, hb.beta);
    // heavy ball at the optimum has a Jordan block: error ~ k ρ^k, so fit a late tail
    let fit = observed_rate(&errs, Tail::Last(150)).unwrap();
    assert!(
        (fit.rate - hb.rate).abs() <= 1e-2,
        "observed {} vs predicted {}",
        fit.rate,
        hb.rate
    );
    assert!(fit.rate < rho, "momentum is faster than plain GD");
    assert!((gd_optimal_rate(f64::INFINITY) - 1.0).abs() <= EPS);
    assert!((heavy_ball_optimal_rate(f64::INFINITY) - 1.0).abs() <= EPS);
}

#[test]
fn observed_rate_is_exact_on_geometric_sequences_and_skips_zeros() {
    let e: Vec<f64> = (0..50).map(|k| 3.0 * 0.8f64.powi(k)).collect();
    let fit = observed_rate(&e, Tail::All).unwrap();
    assert!(rel_err(fit.rate, 0.8) <= 1e-12);
    assert!(rel_err(fit.intercept, 3f64.ln()) <= 1e-12);
    assert!((fit.r_squared - 1.0).abs() <= 1e-12);
    assert_eq!(fit.points, 50);
    let fit = observed_rate(&e, 10usize).unwrap();
    assert_eq!((fit.points, fit.first_index), (10, 40));
    assert!(rel_err(fit.rate, 0.8) <= 1e-12);
    // exact zeros and underflowed values after convergence are skipped, indices kept
    let mut e2 = e.clone();
    e2[45] = 0.0;
    e2[47] = 1e-320;
    e2.extend([0.0, 0.0]);
    let fit = observed_rate(&e2, 0.2).unwrap();
    assert!(rel_err(fit.rate, 0.8) <= 1e-12);
    // tail of ceil(0.2·52) = 11 entries (41..=51) minus 45, 47, 50, 51
    assert_eq!((fit.points, fit.first_index), (7, 41));
    // a constant sequence: rate 1, r² = 1
    let fit = observed_rate(&[2.0; 5], Tail::All).unwrap();
    assert!((fit.rate - 1.0).abs() <= 4.0 * EPS);
}

#[test]
fn sym_cond_fast_path_matches_the_dense_spectrum_to_1e_10() {
    // n ≥ SymCondParams::krylov_min_n exercises the Cholesky + Lanczos path
    let n = 300;
    assert!(n >= SymCondParams::default().krylov_min_n);
    for (seed, eigs) in [
        (
            1u64,
            (0..n)
                .map(|i| 1.0 + 30.0 * (i as f64 / n as f64).powi(2))
                .collect::<Vec<_>>(),
        ),
        (
            2,
            (0..n)
                .map(|i| 10f64.powf(6.0 * i as f64 / (n - 1) as f64))
                .collect(),
        ),
        (
            3,
            (0..n)
                .map(|i| {
                    if i < n / 2 {
                        1e-3 + 1e-6 * i as f64
                    } else {
                        5.0 + i as f64
                    }
                })
                .collect(),
        ),
    ] {
        let h = sym_with_eigs(&eigs, seed);
        let dense = sym_spectrum(h.as_ref()).unwrap();
        let k = sym_cond(h.as_ref()).unwrap();
        let tol = 1e-10 + 64.0 * n as f64 * EPS * dense.kappa;
        assert!(
            rel_err(k, dense.kappa) <= tol,
            "seed {seed}: {k} vs {} (tol {tol:e})",
            dense.kappa
        );
    }
    let h = random_spd(n, 0.01, 4);
    let dense = sym_spectrum(h.as_ref()).unwrap();
    assert!(
        rel_err(sym_cond(h.as_ref()).unwrap(), dense.kappa)
            <= 1e-10 + 64.0 * n as f64 * EPS * dense.kappa
    );
    // non-SPD input at this size: the Cholesky certificate fails
    let mut eigs: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
    eigs[7] = -0.5;
    let ind = sym_with_eigs(&eigs, 5);
    assert!(matches!(
        sym_cond(ind.as_ref()),
        Err(LinalgError::NotPositiveDefinite { .. })
    ));
    eigs[7] = 0.0;
    let psd = sym_with_eigs(&eigs, 6);
    assert!(matches!(
        sym_cond(psd.as_ref()),
        Err(LinalgError::NotPositiveDefinite { .. })
    ));
}

/// `kernel::tridiagonal_eigenvalues` (DSTERF's algorithm): the 1-D Laplacian
/// `tridiag(−1, 2, −1)` has `λ_k = 2 − 2cos(kπ/(n+1))`, each within `4nε‖T‖`; bad input is a
/// typed error naming what is wrong.
#[test]
fn tridiagonal_eigenvalues_of_the_laplacian_and_bad_input() {
    use precond_linalg::kernel::tridiagonal_eigenvalues;
    for n in [1usize, 2, 7, 100, 333] {
        let d = vec![2.0; n];
        let e = vec![-1.0; n - 1];
        let got = tridiagonal_eigenvalues(&d, &e).unwrap();
        for (k, g) in got.iter().enumerate() {
            let want =
                2.0 - 2.0 * (((k + 1) as f64) * std::f64::consts::PI / ((n + 1) as f64)).cos();
            assert!(
                (g - want).abs() <= 4.0 * n as f64 * EPS * 4.0,
                "n={n} k={k}: {g} vs {want}"
            );
        }
    }
    assert!(matches!(
        tridiagonal_eigenvalues(&[], &[]),
        Err(LinalgError::Empty { .. })
    ));
    assert!(matches!(
        tridiagonal_eigenvalues(&[1.0, 2.0], &[]),
        Err(LinalgError::DimensionMismatch {
            expected: 1,
            got: 0,
            ..
        })
    ));
    assert!(matches!(
        tridiagonal_eigenvalues(&[1.0, 2.0, 3.0], &[0.5, f64::NAN]),
        Err(LinalgError::NonFinite { row: 1, col: 1, .. })
    ));
}
