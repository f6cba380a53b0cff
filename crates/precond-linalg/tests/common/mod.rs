//! Shared helpers for the integration tests: seeded random matrices and the numpy fixtures.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use faer::Mat;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const EPS: f64 = f64::EPSILON;

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Entries uniform in (-1, 1).
pub fn random_mat(m: usize, n: usize, seed: u64) -> Mat<f64> {
    let mut r = rng(seed);
    Mat::from_fn(m, n, |_, _| r.random_range(-1.0..1.0))
}

/// A random orthogonal n×n matrix (the Q factor of a Householder QR of a random matrix).
pub fn random_orthogonal(n: usize, seed: u64) -> Mat<f64> {
    random_mat(n, n, seed).qr().compute_Q()
}

/// Q diag(eigs) Qᵀ for a random orthogonal Q, exactly symmetrized.
pub fn sym_with_eigs(eigs: &[f64], seed: u64) -> Mat<f64> {
    let n = eigs.len();
    let q = random_orthogonal(n, seed);
    let qd = Mat::from_fn(n, n, |i, k| q[(i, k)] * eigs[k]);
    let h = &qd * q.transpose();
    Mat::from_fn(n, n, |i, j| 0.5 * (h[(i, j)] + h[(j, i)]))
}

/// Random SPD matrix XᵀX/m + shift·I.
pub fn random_spd(n: usize, shift: f64, seed: u64) -> Mat<f64> {
    let m = 2 * n;
    let x = random_mat(m, n, seed);
    let mut h = x.transpose() * &x;
    for j in 0..n {
        for i in 0..n {
            h[(i, j)] /= m as f64;
        }
        h[(j, j)] += shift;
    }
    h
}

pub fn rel_err(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs()
}

pub fn fixtures() -> serde_json::Value {
    let s = include_str!("../fixtures/linalg_fixtures.json");
    serde_json::from_str(s).expect("fixture JSON parses")
}

pub fn vec_f64(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

pub fn usize_of(v: &serde_json::Value) -> usize {
    v.as_u64().expect("integer") as usize
}

/// Row-major data → Mat.
pub fn mat_rm(data: &[f64], m: usize, n: usize) -> Mat<f64> {
    Mat::from_fn(m, n, |i, j| data[i * n + j])
}

/// Sorted real parts of the eigenvalues of a general square matrix (faer's nonsymmetric
/// eigensolver: independent of the symmetric routines under test); asserts the imaginary parts
/// are negligible.
pub fn general_real_eigs(a: &Mat<f64>) -> Vec<f64> {
    let ev = a.eigenvalues().expect("eigenvalues converge");
    let scale = ev
        .iter()
        .map(|c| c.re.abs().max(c.im.abs()))
        .fold(0.0f64, f64::max);
    for c in &ev {
        assert!(
            c.im.abs() <= 1e-8 * scale,
            "eigenvalue with imaginary part {c:?}"
        );
    }
    let mut re: Vec<f64> = ev.iter().map(|c| c.re).collect();
    re.sort_by(|a, b| a.total_cmp(b));
    re
}
