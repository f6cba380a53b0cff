//! Shared helpers for the integration tests.
#![allow(dead_code)]

use faer::Mat;
use precond_nn::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Standard normal via Box–Muller.
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A `rows × cols` matrix of seeded standard normals.
pub fn randn(rows: usize, cols: usize, seed: u64) -> Mat<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut m = Mat::zeros(rows, cols);
    for c in 0..cols {
        for r in 0..rows {
            m[(r, c)] = normal(&mut rng);
        }
    }
    m
}

/// Random targets fitting `loss` for `k` outputs and `n` samples.
pub fn random_targets(loss: Loss, k: usize, n: usize, seed: u64) -> Targets {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    match loss {
        Loss::Mse => Targets::Values(Mat::from_fn(k, n, |_, _| normal(&mut rng))),
        Loss::BceWithLogits => Targets::Values(Mat::from_fn(k, n, |_, _| rng.random::<f64>())),
        Loss::SoftmaxCrossEntropy => Targets::Classes {
            labels: (0..n).map(|_| rng.random_range(0..k)).collect(),
            n_classes: k,
        },
    }
}

/// Mean loss at `params` (no gradient).
pub fn loss_at(mlp: &Mlp, params: &[f64], x: &Mat<f64>, t: &Targets, mode: Mode<'_>) -> f64 {
    mlp.evaluate(params, x.as_ref(), t, mode)
        .expect("evaluate")
        .loss
}

/// Central-difference gradient of the mean loss, step `h`.
pub fn fd_gradient(
    mlp: &Mlp,
    params: &[f64],
    x: &Mat<f64>,
    t: &Targets,
    mode: Mode<'_>,
    h: f64,
) -> Vec<f64> {
    let mut p = params.to_vec();
    (0..params.len())
        .map(|i| {
            let orig = p[i];
            p[i] = orig + h;
            let lp = loss_at(mlp, &p, x, t, mode);
            p[i] = orig - h;
            let lm = loss_at(mlp, &p, x, t, mode);
            p[i] = orig;
            (lp - lm) / (2.0 * h)
        })
        .collect()
}
