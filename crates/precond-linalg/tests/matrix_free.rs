//! Matrix-free spectra against the dense symmetric eigensolver and closed forms.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use faer::Mat;
use precond_linalg::*;

/// The 1-D Dirichlet Laplacian tridiag(-1, 2, -1), matrix-free: λ_k = 2 − 2cos(kπ/(n+1)).
struct Laplacian1d(usize);

impl LinearOperator for Laplacian1d {
    fn dim(&self) -> usize {
        self.0
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let n = self.0;
        for i in 0..n {
            let l = if i > 0 { x[i - 1] } else { 0.0 };
            let r = if i + 1 < n { x[i + 1] } else { 0.0 };
            y[i] = 2.0 * x[i] - l - r;
        }
    }
}

fn laplacian_eig(n: usize, k: usize) -> f64 {
    2.0 - 2.0 * (k as f64 * std::f64::consts::PI / (n + 1) as f64).cos()
}

#[test]
fn lanczos_matches_dense_eigensolver() {
    for (seed, n) in [(1u64, 60usize), (2, 150), (3, 300)] {
        // spectrum spread over [0.01, 100] with a cluster near the top
        let eigs: Vec<f64> = (0..n)
            .map(|i| 0.01 * 1e4f64.powf(i as f64 / (n - 1) as f64))
            .collect();
        let h = sym_with_eigs(&eigs, seed);
        let dense = sym_spectrum(h.as_ref()).unwrap();
        let op = DenseOperator::new(h.as_ref()).unwrap();
        let opts = LanczosOptions {
            rel_tol: 1e-10,
            ..Default::default()
        };
        let res = lanczos_extremes(&op, opts).unwrap();
        assert!(res.converged, "n={n}");
        let tol = 1e-10 + 64.0 * n as f64 * EPS * dense.lambda_max / dense.lambda_min;
        assert!(
            rel_err(res.lambda_min, dense.lambda_min) <= tol,
            "n={n}: {} vs {}",
            res.lambda_min,
            dense.lambda_min
        );
        assert!(
            rel_err(res.lambda_max, dense.lambda_max) <= 1e-10 + 64.0 * n as f64 * EPS,
            "n={n}"
        );
        assert!(rel_err(res.kappa(), dense.kappa) <= 2.0 * tol);
        // Ritz values bound the spectrum from inside
        assert!(res.lambda_min >= dense.lambda_min * (1.0 - 64.0 * n as f64 * EPS * 1e4));
        assert!(res.lambda_max <= dense.lambda_max * (1.0 + 64.0 * n as f64 * EPS));
        assert!(
            res.error_bounds[0] <= 1e-10 * res.lambda_min.abs().max(1e-300)
                || res.error_bounds[0] <= 10.0 * EPS * res.lambda_max
        );
    }
}

#[test]
fn lanczos_on_indefinite_and_singular_operators() {
    let eigs = [-3.0, -1.0, 0.0, 0.0, 0.5, 2.0, 7.0, 7.0, 7.5];
    let h = sym_with_eigs(&eigs, 9);
    // full Krylov space (n = 9 < max_iter): exact
    let res = lanczos_extremes(&h, LanczosOptions::default()).unwrap();
    assert!(res.converged);
    assert!((res.lambda_min + 3.0).abs() <= 64.0 * EPS * 7.5);
    assert!((res.lambda_max - 7.5).abs() <= 64.0 * EPS * 7.5);
    // a trait object works
    let dynop: &dyn LinearOperator = &h;
    let res2 = lanczos_extremes(dynop, LanczosOptions::default()).unwrap();
    assert_eq!(res.lambda_max.to_bits(), res2.lambda_max.to_bits());
}

#[test]
fn lanczos_matrix_free_laplacian_closed_form() {
    let n = 400;
    let op = Laplacian1d(n);
    let res = lanczos_extremes(
        &op,
        LanczosOptions {
            max_iter: n,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(res.converged);
    let (lmin, lmax) = (laplacian_eig(n, 1), laplacian_eig(n, n));
    assert!(rel_err(res.lambda_max, lmax) <= 1e-10);
    // λ_min ≈ 6e-5: the attainable relative accuracy is ε·λ_max/λ_min
    assert!(
        rel_err(res.lambda_min, lmin) <= 1e-10 + 64.0 * n as f64 * EPS * lmax / lmin,
        "{} vs {lmin}",
        res.lambda_min
    );
}

#[test]
fn lanczos_without_reorthogonalization_still_finds_extremes() {
    let n = 200;
    let eigs: Vec<f64> = (0..n)
        .map(|i| 1.0 + i as f64 + if i == n - 1 { 50.0 } else { 0.0 })
        .collect();
    let h = sym_with_eigs(&eigs, 4);
    let opts = LanczosOptions {
        reorthogonalize: false,
        rel_tol: 1e-8,
        max_iter: 2000,
        seed: 3,
    };
    let res = lanczos_extremes(&h, opts).unwrap();
    assert!(res.converged);
    assert!(rel_err(res.lambda_max, 250.0) <= 1e-8);
    assert!(rel_err(res.lambda_min, 1.0) <= 1e-7);
}

#[test]
fn lanczos_is_deterministic_and_reports_non_convergence() {
    let h = random_spd(120, 1e-3, 17);
    let a = lanczos_extremes(
        &h,
        LanczosOptions {
            seed: 42,
            ..Default::default()
        },
    )
    .unwrap();
    let b = lanczos_extremes(
        &h,
        LanczosOptions {
            seed: 42,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(a, b);
    let c = lanczos_extremes(
        &h,
        LanczosOptions {
            max_iter: 3,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!c.converged);
    assert_eq!(c.iterations, 3);
    assert!(c.error_bounds[0] > 0.0);
}

#[test]
fn power_iteration_finds_the_dominant_eigenvalue() {
    let h = sym_with_eigs(&[1.0, 2.0, 3.0, 5.0, 10.0], 21);
    let r = power_iteration(&h, PowerOptions::default()).unwrap();
    assert!(r.converged);
    assert!(rel_err(r.eigenvalue, 10.0) <= 1e-12, "{}", r.eigenvalue);
    // eigenvector: ‖Hx − 10x‖ small
    let op = DenseOperator::new(h.as_ref()).unwrap();
    let mut y = vec![0.0; 5];
    op.apply(&r.eigenvector, &mut y);
    let res: f64 = y
        .iter()
        .zip(&r.eigenvector)
        .map(|(a, b)| (a - 10.0 * b).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(res <= 1e-7 * 10.0 * 1.01);
    // negative dominant eigenvalue keeps its sign
    let h = sym_with_eigs(&[-8.0, 1.0, 4.0], 22);
    let r = power_iteration(&h, PowerOptions::default()).unwrap();
    assert!(rel_err(r.eigenvalue, -8.0) <= 1e-12);
    // against the dense solver on a random SPD matrix
    let h = random_spd(80, 0.0, 23);
    let dense = sym_spectrum(h.as_ref()).unwrap();
    let r = power_iteration(
        &h,
        PowerOptions {
            rel_tol: 1e-7,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(r.converged);
    assert!(rel_err(r.eigenvalue, dense.lambda_max) <= 1e-10);
    let r = power_iteration(
        &h,
        PowerOptions {
            max_iter: 2,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!r.converged && r.iterations == 2);
}

#[test]
fn hutchinson_within_four_standard_errors() {
    for seed in 0..5u64 {
        let a = random_mat(60, 60, seed);
        let h = Mat::from_fn(60, 60, |i, j| {
            a[(i, j)] + a[(j, i)] + if i == j { 1.0 } else { 0.0 }
        });
        let tr: f64 = (0..60).map(|i| h[(i, i)]).sum();
        let est = hutchinson_trace(&h, 400, seed).unwrap();
        assert!(
            (est.mean - tr).abs() <= 4.0 * est.std_error,
            "seed {seed}: {} ± {} vs {tr}",
            est.mean,
            est.std_error
        );
        // the standard error matches the theoretical sqrt(2(‖H‖_F² − Σh_ii²)/N) within 25 %
        let off: f64 = (0..60)
            .flat_map(|i| (0..60).map(move |j| (i, j)))
            .filter(|(i, j)| i != j)
            .map(|(i, j)| h[(i, j)].powi(2))
            .sum();
        let se = (2.0 * off / 400.0).sqrt();
        assert!(
            (est.std_error / se - 1.0).abs() <= 0.25,
            "{} vs {se}",
            est.std_error
        );
    }
    // a diagonal operator: every Rademacher sample is exact
    let d = Mat::from_fn(10, 10, |i, j| if i == j { i as f64 } else { 0.0 });
    let est = hutchinson_trace(&d, 3, 0).unwrap();
    assert!((est.mean - 45.0).abs() <= 64.0 * EPS && est.std_error <= 64.0 * EPS);
    let a = hutchinson_trace(&Laplacian1d(30), 10, 9).unwrap();
    let b = hutchinson_trace(&Laplacian1d(30), 10, 9).unwrap();
    assert_eq!(a, b);
}
