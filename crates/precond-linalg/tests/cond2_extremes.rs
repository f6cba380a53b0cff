//! `cond2` computes only the two extreme singular values (bisection on the bidiagonal's
//! Golub–Kahan form): checked against matrices of known singular values `U diag(σ) Vᵀ` and
//! against the full singular value computation, on every reduction path (faer's one-stage
//! bidiagonalization, with and without the QR of a tall matrix first, wide through the
//! transpose, the two-stage reduction), and on rank-deficient inputs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use faer::Mat;
use precond_linalg::*;

/// `U diag(σ) Vᵀ` (`m × n`, `k = min(m, n)`) with `σ` log-spaced from 1 down to `1/kappa`.
fn with_singular_values(m: usize, n: usize, kappa: f64, seed: u64) -> (Mat<f64>, Vec<f64>) {
    let k = m.min(n);
    let u = random_orthogonal(m, seed);
    let v = random_orthogonal(n, seed + 1);
    let s: Vec<f64> = (0..k)
        .map(|i| {
            if k == 1 {
                1.0
            } else {
                kappa.powf(-(i as f64) / (k - 1) as f64)
            }
        })
        .collect();
    let us = Mat::from_fn(m, k, |i, j| u[(i, j)] * s[j]);
    let a = &us * v.get(.., ..k).transpose();
    (a, s)
}

fn paths() -> Vec<(&'static str, Cond2Params)> {
    let default = Cond2Params::default();
    let mut one_stage = Cond2Params::default();
    one_stage.svd.two_stage_min_n = usize::MAX;
    let mut two_stage = Cond2Params::default();
    two_stage.svd.two_stage_min_n = 1;
    two_stage.svd.band_width = 4;
    vec![
        ("default", default),
        ("one-stage", one_stage),
        ("two-stage", two_stage),
    ]
}

const SHAPES: [(usize, usize); 11] = [
    (1, 1),
    (1, 6),
    (6, 1),
    (2, 2),
    (9, 4),
    (4, 9),
    (40, 40),
    (100, 23), // 6m > 11n: QR first
    (23, 100), // wide: through the transpose, then QR first
    (57, 50),
    (300, 300), // the two-stage path by default on AVX-512 CPUs
];

#[test]
fn extremes_match_matrices_of_known_singular_values() {
    for (name, p) in paths() {
        for (t, &(m, n)) in SHAPES.iter().enumerate() {
            for (c, kappa) in [1.0, 1e3, 1e9].into_iter().enumerate() {
                let (a, s) = with_singular_values(m, n, kappa, 100 * t as u64 + c as u64);
                let got = cond2_with_params(a.as_ref(), &p).unwrap();
                // backward stable: each σ within p(n)·ε·‖A‖ (‖A‖ = 1); forming A adds the same
                let tol = 16.0 * (m.max(n) as f64) * EPS;
                let smin = s[s.len() - 1];
                assert!(
                    (got.sigma_max - 1.0).abs() <= tol,
                    "{name} {m}x{n} κ={kappa}: σ_max {}",
                    got.sigma_max
                );
                assert!(
                    (got.sigma_min - smin).abs() <= tol,
                    "{name} {m}x{n} κ={kappa}: σ_min {} vs {smin}",
                    got.sigma_min
                );
                assert!(!got.rank_deficient, "{name} {m}x{n} κ={kappa}");
                let want = s[0] / smin;
                assert!(
                    rel_err(got.kappa, want) <= tol * want,
                    "{name} {m}x{n}: κ {} vs {want}",
                    got.kappa
                );
            }
        }
    }
}

#[test]
fn extremes_equal_those_of_the_full_singular_values() {
    for (name, p) in paths() {
        for (t, &(m, n)) in SHAPES.iter().enumerate() {
            let a = random_mat(m, n, 7 + t as u64);
            let c = cond2_with_params(a.as_ref(), &p).unwrap();
            let s = singular_values_with_params(a.as_ref(), &p.svd).unwrap();
            let tol = 16.0 * (m.max(n) as f64) * EPS * s[0];
            assert!((c.sigma_max - s[0]).abs() <= tol, "{name} {m}x{n}");
            assert!(
                (c.sigma_min - s[s.len() - 1]).abs() <= tol,
                "{name} {m}x{n}: {} vs {}",
                c.sigma_min,
                s[s.len() - 1]
            );
        }
    }
}

#[test]
fn rank_deficient_inputs_give_infinite_kappa() {
    for (name, p) in paths() {
        // a zero column, a repeated row, and the zero matrix
        let mut a = random_mat(30, 12, 3);
        for i in 0..30 {
            a[(i, 5)] = 0.0;
        }
        let c = cond2_with_params(a.as_ref(), &p).unwrap();
        assert!(c.rank_deficient && c.kappa.is_infinite(), "{name}: {c:?}");
        assert!(c.sigma_min <= 30.0 * EPS * c.sigma_max, "{name}: {c:?}");
        let mut b = random_mat(9, 9, 4);
        for j in 0..9 {
            b[(8, j)] = b[(2, j)];
        }
        let c = cond2_with_params(b.as_ref(), &p).unwrap();
        assert!(c.rank_deficient && c.kappa.is_infinite(), "{name}: {c:?}");
        let z = Mat::<f64>::zeros(7, 5);
        let c = cond2_with_params(z.as_ref(), &p).unwrap();
        assert!(c.rank_deficient && c.kappa.is_infinite(), "{name}: {c:?}");
        assert_eq!(
            (c.sigma_max.to_bits(), c.sigma_min.to_bits()),
            (0, 0),
            "{name}"
        );
    }
}
