//! The Hager–Higham condition estimate against the exact 1-norm condition number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use faer::Mat;
use precond_linalg::*;
use rand::Rng;

#[test]
fn estimate_is_a_lower_bound_and_usually_within_3() {
    let mut within3 = 0;
    let mut total = 0;
    for seed in 0..60u64 {
        let n = 5 + (seed as usize * 7) % 60;
        let mut r = rng(seed);
        // general matrices with graded rows and columns
        let a0 = random_mat(n, n, seed);
        let rs: Vec<f64> = (0..n)
            .map(|_| 10f64.powf(r.random_range(-3.0..3.0)))
            .collect();
        let a = Mat::from_fn(n, n, |i, j| {
            rs[i] * a0[(i, j)] + if i == j { 0.1 } else { 0.0 }
        });
        let exact = cond1(a.as_ref()).unwrap();
        let est = cond_estimate_lu(a.as_ref()).unwrap();
        assert!(
            est.kappa1_estimate <= exact * (1.0 + 64.0 * n as f64 * EPS * exact),
            "seed {seed}: {} > {exact}",
            est.kappa1_estimate
        );
        assert!(
            est.kappa1_estimate >= exact / (n as f64),
            "seed {seed}: estimate {} far below {exact}",
            est.kappa1_estimate
        );
        assert!(rel_err(est.norm1, norm1(a.as_ref())) <= EPS);
        assert!(est.solves <= 11);
        total += 1;
        within3 += usize::from(est.kappa1_estimate * 3.0 >= exact);
        // SPD matrices through Cholesky
        let h = random_spd(n, 1e-3 * (seed % 5) as f64 + 1e-4, seed);
        let exact = cond1(h.as_ref()).unwrap();
        let est = cond_estimate_spd(h.as_ref()).unwrap();
        assert!(est.kappa1_estimate <= exact * (1.0 + 64.0 * n as f64 * EPS * exact));
        assert!(est.kappa1_estimate >= exact / (n as f64));
        total += 1;
        within3 += usize::from(est.kappa1_estimate * 3.0 >= exact);
    }
    assert!(
        within3 * 100 >= 95 * total,
        "only {within3}/{total} estimates within a factor 3"
    );
}

#[test]
fn estimate_from_existing_factorizations() {
    let a = random_mat(30, 30, 5);
    let lu = a.partial_piv_lu();
    let e1 = cond_estimate_from_lu(a.as_ref(), &lu).unwrap();
    let e2 = cond_estimate_lu(a.as_ref()).unwrap();
    assert!(rel_err(e1.kappa1_estimate, e2.kappa1_estimate) <= 4.0 * EPS);
    let h = random_spd(30, 0.01, 6);
    let llt = h.llt(faer::Side::Lower).unwrap();
    let e1 = cond_estimate_from_llt(h.as_ref(), &llt).unwrap();
    let e2 = cond_estimate_spd(h.as_ref()).unwrap();
    assert!(rel_err(e1.kappa1_estimate, e2.kappa1_estimate) <= 4.0 * EPS);
    // size mismatch between the factor and the matrix
    let small = random_mat(10, 10, 1);
    assert!(matches!(
        cond_estimate_from_lu(small.as_ref(), &lu),
        Err(LinalgError::DimensionMismatch {
            expected: 10,
            got: 30,
            ..
        })
    ));
    assert!(matches!(
        cond_estimate_from_llt(small.as_ref(), &llt),
        Err(LinalgError::DimensionMismatch {
            expected: 10,
            got: 30,
            ..
        })
    ));
}

#[test]
fn one_by_one_is_exact() {
    let a = Mat::from_fn(1, 1, |_, _| -4.0);
    let e = cond_estimate_lu(a.as_ref()).unwrap();
    assert!((e.kappa1_estimate - 1.0).abs() <= EPS);
    assert!((e.inv_norm1_estimate - 0.25).abs() <= EPS);
}
