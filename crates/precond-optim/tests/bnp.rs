//! BNP's preconditioner (`bnp.rs`) against independent truth: the dense product `P = S Sᵀ`,
//! central finite differences of the loss in the standardized variables, and the closed-form
//! weighted mixture behind the running statistics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use precond_optim::{BnpSpec, BnpStats, OptimError, bnp_precondition};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_stats(d: usize, seed: u64) -> BnpStats {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mean: Vec<f64> = (0..d).map(|_| rng.random_range(-3.0..3.0)).collect();
    let var: Vec<f64> = (0..d).map(|_| rng.random_range(0.01..5.0)).collect();
    BnpStats::from_stats(&mean, &var, BnpSpec::default()).unwrap()
}

/// `P g` with `P = S Sᵀ` formed densely from [`BnpStats::factor`], `g = [g_b; g_w]`.
fn dense_p_times(stats: &BnpStats, gb: f64, gw: &[f64]) -> (f64, Vec<f64>) {
    let n = stats.dim() + 1;
    let s = stats.factor();
    let mut p = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            p[i * n + j] = (0..n).map(|k| s[i * n + k] * s[j * n + k]).sum();
        }
    }
    let g: Vec<f64> = std::iter::once(gb).chain(gw.iter().copied()).collect();
    let pg: Vec<f64> = (0..n)
        .map(|i| (0..n).map(|j| p[i * n + j] * g[j]).sum())
        .collect();
    (pg[0], pg[1..].to_vec())
}

#[test]
fn matches_the_dense_product_s_st() {
    let (units, d) = (4, 7);
    let stats = random_stats(d, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let gw0: Vec<f64> = (0..units * d)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let gb0: Vec<f64> = (0..units).map(|_| rng.random_range(-1.0..1.0)).collect();
    let (mut gw, mut gb) = (gw0.clone(), gb0.clone());
    bnp_precondition(&mut gw, &mut gb, &stats).unwrap();
    let scale = stats.inv_var().iter().fold(1.0f64, |a, &v| a.max(v))
        * (1.0 + stats.mean().iter().map(|m| m * m).sum::<f64>());
    let tol = 64.0 * f64::EPSILON * scale * (d as f64);
    for i in 0..units {
        let (pb, pw) = dense_p_times(&stats, gb0[i], &gw0[i * d..(i + 1) * d]);
        assert!((gb[i] - pb).abs() <= tol, "unit {i}: b {} vs {pb}", gb[i]);
        for j in 0..d {
            let got = gw[i * d + j];
            assert!(
                (got - pw[j]).abs() <= tol,
                "unit {i}, w[{j}]: {got} vs {}",
                pw[j]
            );
        }
    }
}

/// Loss of a linear layer `Z = W X + b 1ᵀ` with targets `Y`: `L = 1/(2N) ‖Z − Y‖²`, and its
/// gradient (row-major `W`).
struct Regression {
    units: usize,
    d: usize,
    n: usize,
    x: Vec<f64>, // d × n, column n contiguous: x[n * d + j]
    y: Vec<f64>, // units × n: y[n * units + i]
}

impl Regression {
    fn loss(&self, w: &[f64], b: &[f64]) -> f64 {
        let mut s = 0.0;
        for c in 0..self.n {
            for i in 0..self.units {
                let z: f64 = (0..self.d)
                    .map(|j| w[i * self.d + j] * self.x[c * self.d + j])
                    .sum();
                let r = z + b[i] - self.y[c * self.units + i];
                s += r * r;
            }
        }
        s / (2.0 * self.n as f64)
    }

    fn grad(&self, w: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (mut gw, mut gb) = (vec![0.0; w.len()], vec![0.0; b.len()]);
        for c in 0..self.n {
            for i in 0..self.units {
                let z: f64 = (0..self.d)
                    .map(|j| w[i * self.d + j] * self.x[c * self.d + j])
                    .sum();
                let r = (z + b[i] - self.y[c * self.units + i]) / self.n as f64;
                gb[i] += r;
                for j in 0..self.d {
                    gw[i * self.d + j] += r * self.x[c * self.d + j];
                }
            }
        }
        (gw, gb)
    }
}

/// `(w, b)` from the standardized `(w̃, b̃)`: `w = Σ⁻¹ w̃`, `b = b̃ − μᵀ Σ⁻¹ w̃`.
fn from_standardized(stats: &BnpStats, wt: &[f64], bt: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let d = stats.dim();
    let mut w = vec![0.0; wt.len()];
    let mut b = vec![0.0; bt.len()];
    for i in 0..bt.len() {
        b[i] = bt[i];
        for j in 0..d {
            let inv_sd = stats.inv_var()[j].sqrt();
            w[i * d + j] = inv_sd * wt[i * d + j];
            b[i] -= stats.mean()[j] * inv_sd * wt[i * d + j];
        }
    }
    (w, b)
}

#[test]
fn equals_s_times_the_finite_difference_gradient_in_standardized_variables() {
    let (units, d, n) = (3, 4, 9);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let reg = Regression {
        units,
        d,
        n,
        x: (0..d * n)
            .map(|k| 2.0 + (k % d) as f64 + rng.random_range(-1.0..1.0))
            .collect(),
        y: (0..units * n)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect(),
    };
    let stats = random_stats(d, 6);
    let wt: Vec<f64> = (0..units * d)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let bt: Vec<f64> = (0..units).map(|_| rng.random_range(-1.0..1.0)).collect();
    // f(w̃, b̃) = L(S-map(w̃, b̃)); its gradient by central differences
    let f = |wt: &[f64], bt: &[f64]| {
        let (w, b) = from_standardized(&stats, wt, bt);
        reg.loss(&w, &b)
    };
    let h = 1e-5;
    let mut fd_w = vec![0.0; wt.len()];
    let mut fd_b = vec![0.0; bt.len()];
    for k in 0..wt.len() {
        let (mut p, mut m) = (wt.clone(), wt.clone());
        p[k] += h;
        m[k] -= h;
        fd_w[k] = (f(&p, &bt) - f(&m, &bt)) / (2.0 * h);
    }
    for k in 0..bt.len() {
        let (mut p, mut m) = (bt.clone(), bt.clone());
        p[k] += h;
        m[k] -= h;
        fd_b[k] = (f(&wt, &p) - f(&wt, &m)) / (2.0 * h);
    }
    // mapping the FD gradient back with S gives S Sᵀ ∇L (chain rule ∇̃f = Sᵀ ∇L)
    let (s_w, s_b) = from_standardized(&stats, &fd_w, &fd_b);
    let (w, b) = from_standardized(&stats, &wt, &bt);
    let (mut gw, mut gb) = reg.grad(&w, &b);
    bnp_precondition(&mut gw, &mut gb, &stats).unwrap();
    let size: f64 = gw.iter().chain(&gb).map(|v| v.abs()).fold(0.0, f64::max);
    for k in 0..gw.len() {
        assert!(
            (gw[k] - s_w[k]).abs() <= 1e-6 * size,
            "w[{k}]: {} vs {}",
            gw[k],
            s_w[k]
        );
    }
    for k in 0..gb.len() {
        assert!(
            (gb[k] - s_b[k]).abs() <= 1e-6 * size,
            "b[{k}]: {} vs {}",
            gb[k],
            s_b[k]
        );
    }
}

#[test]
fn f32_agrees_with_f64_to_single_precision() {
    let (units, d) = (5, 6);
    let stats = random_stats(d, 9);
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let gw: Vec<f32> = (0..units * d)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let gb: Vec<f32> = (0..units).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let (mut w64, mut b64): (Vec<f64>, Vec<f64>) = (
        gw.iter().map(|&v| f64::from(v)).collect(),
        gb.iter().map(|&v| f64::from(v)).collect(),
    );
    let (mut w32, mut b32) = (gw.clone(), gb.clone());
    bnp_precondition(&mut w64, &mut b64, &stats).unwrap();
    bnp_precondition(&mut w32, &mut b32, &stats).unwrap();
    // the f32 path computes in f64 and rounds once: each entry is the rounded f64 result
    for (a, b) in w32.iter().zip(&w64).chain(b32.iter().zip(&b64)) {
        assert_eq!(a.to_bits(), (*b as f32).to_bits(), "{a} vs {b}");
    }
}

#[test]
fn running_statistics_are_the_weighted_mixture_of_the_batches() {
    // independent truth: after K batches the estimate is the mixture with weight (1 − m)^K on
    // the prior N(0, 1) and m (1 − m)^{K − k} on batch k; its mean and variance in closed form
    let d = 3;
    let spec = BnpSpec {
        momentum: 0.2,
        eps: 1e-5,
    };
    let mut stats = BnpStats::new(d, spec).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let batches: Vec<(Vec<f64>, Vec<f64>)> = (0..25)
        .map(|k| {
            let m = (0..d).map(|_| rng.random_range(-2.0..4.0)).collect();
            // batch size 1 on every third batch: variance 0
            let v = (0..d)
                .map(|_| {
                    if k % 3 == 0 {
                        0.0
                    } else {
                        rng.random_range(0.0..3.0)
                    }
                })
                .collect();
            (m, v)
        })
        .collect();
    for (m, v) in &batches {
        stats.observe(m, v).unwrap();
    }
    let big_k = batches.len();
    for j in 0..d {
        let prior_w = (1.0 - spec.momentum).powi(big_k as i32);
        let (mut mean, mut second) = (0.0, prior_w * 1.0);
        for (k, (m, v)) in batches.iter().enumerate() {
            let w = spec.momentum * (1.0 - spec.momentum).powi((big_k - 1 - k) as i32);
            mean += w * m[j];
            second += w * (v[j] + m[j] * m[j]);
        }
        let var = second - mean * mean;
        assert!((stats.mean()[j] - mean).abs() <= 1e-13 * (1.0 + mean.abs()));
        assert!((stats.var()[j] - var).abs() <= 1e-12 * (1.0 + second));
        assert!((stats.inv_var()[j] - 1.0 / (var + spec.eps)).abs() <= 1e-12 / (var + spec.eps));
    }
    assert_eq!(stats.observations(), big_k as u64);
}

#[test]
fn batch_size_one_estimates_the_population_variance() {
    // single samples (batch variance 0) from a population of mean 5 and variance 4
    let spec = BnpSpec {
        momentum: 0.01,
        eps: 1e-5,
    };
    let mut stats = BnpStats::new(1, spec).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for _ in 0..20_000 {
        let x = 5.0 + 2.0 * (rng.random_range(0.0..1.0f64) - 0.5) * 12f64.sqrt();
        stats.observe(&[x], &[0.0]).unwrap();
    }
    // uniform of variance 4; EMA with momentum 0.01 averages ~200 samples: 3 standard errors
    assert!(
        (stats.mean()[0] - 5.0).abs() < 0.45,
        "mean {}",
        stats.mean()[0]
    );
    assert!((stats.var()[0] - 4.0).abs() < 0.9, "var {}", stats.var()[0]);
}

#[test]
fn bad_input_is_a_typed_error_and_changes_nothing() {
    let mut stats = BnpStats::new(3, BnpSpec::default()).unwrap();
    stats.observe(&[1.0, 2.0, 3.0], &[0.5, 0.5, 0.5]).unwrap();
    let before = stats.clone();
    assert!(matches!(
        stats.observe(&[1.0, 2.0], &[0.5, 0.5, 0.5]),
        Err(OptimError::LengthMismatch {
            expected: 3,
            got: 2,
            ..
        })
    ));
    assert!(matches!(
        stats.observe(&[1.0, 2.0, 3.0], &[0.5, -0.1, 0.5]),
        Err(OptimError::InvalidStatistics {
            what: "batch_var",
            index: 1,
            ..
        })
    ));
    let e = stats
        .observe(&[1.0, 2.0, f64::NAN], &[0.5, 0.5, 0.5])
        .unwrap_err();
    assert!(e.to_string().contains("batch_mean[2]"), "{e}");
    assert_eq!(stats, before);
    let bad = BnpSpec {
        momentum: 1.5,
        eps: 1e-5,
    };
    assert!(matches!(
        BnpStats::new(2, bad),
        Err(OptimError::InvalidStatistics {
            what: "momentum",
            ..
        })
    ));
    let bad = BnpSpec {
        momentum: 0.1,
        eps: -1.0,
    };
    assert!(BnpStats::from_stats(&[0.0], &[1.0], bad).is_err());
    // gradient shapes: 2 units × 3 features need 6 weight entries
    let (mut gw, mut gb) = (vec![1.0f64; 5], vec![1.0f64; 2]);
    assert!(matches!(
        bnp_precondition(&mut gw, &mut gb, &stats),
        Err(OptimError::LengthMismatch {
            expected: 6,
            got: 5,
            ..
        })
    ));
    assert!(gw.iter().chain(&gb).all(|&v| v.to_bits() == 1f64.to_bits()));
}

#[test]
fn fresh_statistics_barely_precondition() {
    // mean 0, variance 1 before any observation: P = diag(1, 1/(1 + eps), …)
    let stats = BnpStats::new(4, BnpSpec::default()).unwrap();
    let (mut gw, mut gb) = (vec![2.0f64; 8], vec![3.0f64; 2]);
    bnp_precondition(&mut gw, &mut gb, &stats).unwrap();
    let s = 1.0 / (1.0 + 1e-5);
    assert!(
        gw.iter()
            .all(|&v| (v - 2.0 * s).abs() <= 4.0 * f64::EPSILON)
    );
    assert!(gb.iter().all(|&v| (v - 3.0).abs() <= 4.0 * f64::EPSILON));
}
