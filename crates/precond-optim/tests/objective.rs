//! Objectives: gradients against central finite differences, Hessians against finite
//! differences of gradients; the minimize driver's records.

#![allow(clippy::unwrap_used)]

use precond_optim::OptimizerConfig;
use precond_optim::experiment::{
    LeastSquares, LogisticRegression, MinimizeOptions, Objective, Quadratic, minimize,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn check_grad(obj: &dyn Objective, x: &[f64]) {
    let n = obj.dim();
    let mut g = vec![0.0; n];
    let f0 = obj.value_grad(x, &mut g);
    let mut scratch = vec![0.0; n];
    for i in 0..n {
        let h = 1e-5 * x[i].abs().max(1.0);
        let (mut xp, mut xm) = (x.to_vec(), x.to_vec());
        xp[i] += h;
        xm[i] -= h;
        let fd =
            (obj.value_grad(&xp, &mut scratch) - obj.value_grad(&xm, &mut scratch)) / (2.0 * h);
        // central differences: O(h²) truncation + O(eps·|f|/h) rounding
        let tol = 1e-6 * (1.0 + g[i].abs()) + 1e-9 * f0.abs().max(1.0);
        assert!(
            (fd - g[i]).abs() <= tol,
            "d/dx{i}: analytic {} vs fd {fd}",
            g[i]
        );
    }
    if let Some(hm) = obj.hessian(x) {
        for j in 0..n {
            let h = 1e-5 * x[j].abs().max(1.0);
            let (mut xp, mut xm) = (x.to_vec(), x.to_vec());
            xp[j] += h;
            xm[j] -= h;
            let (mut gp, mut gm) = (vec![0.0; n], vec![0.0; n]);
            obj.value_grad(&xp, &mut gp);
            obj.value_grad(&xm, &mut gm);
            for i in 0..n {
                let fd = (gp[i] - gm[i]) / (2.0 * h);
                assert!(
                    (fd - hm[i * n + j]).abs() <= 1e-6 * (1.0 + hm[i * n + j].abs()),
                    "H[{i}][{j}]"
                );
            }
        }
        let v: Vec<f64> = (0..n).map(|i| i as f64 - 1.0).collect();
        let mut hv = vec![0.0; n];
        obj.hvp(x, &v, &mut hv).unwrap();
        for i in 0..n {
            let want: f64 = (0..n).map(|j| hm[i * n + j] * v[j]).sum();
            assert!((hv[i] - want).abs() <= 1e-12 * (1.0 + want.abs()));
        }
    }
}

fn randv(rng: &mut ChaCha8Rng, n: usize, s: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-s..s)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, rng_seed: proptest::test_runner::RngSeed::Fixed(1), ..ProptestConfig::default() })]
    #[test]
    fn gradients_and_hessians_match_finite_differences(seed in 0u64..10_000, n in 1usize..6, m in 1usize..9) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = randv(&mut rng, n * n, 1.0);
        let mut h = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                h[i * n + j] = (0..n).map(|k| a[i * n + k] * a[j * n + k]).sum::<f64>() + if i == j { 0.1 } else { 0.0 };
            }
        }
        let q = Quadratic::new(h, randv(&mut rng, n, 2.0)).unwrap();
        check_grad(&q, &randv(&mut rng, n, 2.0));
        let ls = LeastSquares::new(randv(&mut rng, m * n, 1.0), randv(&mut rng, m, 1.0), n).unwrap();
        check_grad(&ls, &randv(&mut rng, n, 2.0));
        let y: Vec<f64> = (0..m).map(|_| if rng.random::<bool>() { 1.0 } else { 0.0 }).collect();
        let lr = LogisticRegression::new(randv(&mut rng, m * n, 2.0), y, n, seed % 2 == 0, 0.05).unwrap();
        check_grad(&lr, &randv(&mut rng, lr.dim(), 1.0));
    }
}

#[test]
fn bad_objective_inputs_are_errors() {
    assert!(Quadratic::new(vec![1.0, 2.0, 3.0, 1.0], vec![0.0, 0.0]).is_err());
    assert!(Quadratic::new(vec![1.0; 3], vec![0.0, 0.0]).is_err());
    assert!(LeastSquares::new(vec![1.0; 5], vec![1.0, 2.0], 3).is_err());
    assert!(LogisticRegression::new(vec![1.0; 4], vec![0.0, 0.5], 2, true, 0.0).is_err());
    let q = Quadratic::new(vec![1.0, 0.0, 0.0, 1.0], vec![1.0, 1.0]).unwrap();
    let mut o = OptimizerConfig::gd(0.1).build(3).unwrap();
    assert!(minimize(&q, &mut o, &mut [0.0, 0.0], &MinimizeOptions::default()).is_err());
}

#[test]
fn minimize_records_and_converges() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (m, d) = (60, 4);
    let x = randv(&mut rng, m * d, 2.0);
    let w_true = [1.0, -2.0, 0.5, 0.0];
    let y: Vec<f64> = (0..m)
        .map(|i| {
            if (0..d).map(|j| x[i * d + j] * w_true[j]).sum::<f64>() + 0.3 > 0.0 {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let obj = LogisticRegression::new(x, y, d, true, 0.1).unwrap();
    let mut opt = OptimizerConfig::adam(0.05).build(obj.dim()).unwrap();
    let mut p = vec![0.0; obj.dim()];
    let opts = MinimizeOptions {
        max_iter: 2000,
        record_precond_every: 100,
        x_star: None,
        tol: 1e-8,
    };
    let t = minimize(&obj, &mut opt, &mut p, &opts).unwrap();
    assert!(
        t.converged,
        "final grad norm {}",
        t.grad_norm.last().unwrap()
    );
    assert_eq!(t.loss.len(), t.grad_norm.len());
    assert!(t.dist_to_opt.is_empty());
    assert!(t.loss.last().unwrap() < &t.loss[0]);
    assert_eq!(t.precond_snapshots.len(), (t.loss.len() - 1) / 100);
    assert!(
        t.precond_snapshots
            .iter()
            .enumerate()
            .all(|(i, (k, p))| *k == 100 * (i as u64 + 1) && p.len() == 5)
    );

    // least squares: GD with η = 1/L reaches the normal-equation solution
    let (m, n) = (30, 3);
    let a = randv(&mut rng, m * n, 1.0);
    let b = randv(&mut rng, m, 1.0);
    let ls = LeastSquares::new(a, b, n).unwrap();
    let h = ls.hessian(&[0.0; 3]).unwrap();
    let lmax = precond_linalg::sym_spectrum(faer::MatRef::from_row_major_slice(&h, n, n))
        .unwrap()
        .lambda_max;
    let mut opt = OptimizerConfig::gd(1.0 / lmax).build(n).unwrap();
    let mut w = vec![0.0; n];
    let t = minimize(
        &ls,
        &mut opt,
        &mut w,
        &MinimizeOptions {
            max_iter: 100_000,
            tol: 1e-12,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(t.converged);
    let mut g = vec![0.0; n];
    ls.value_grad(&w, &mut g);
    assert!(g.iter().all(|v| v.abs() <= 1e-12));
}
