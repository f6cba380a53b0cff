//! The two-stage reductions (`sym_eigenvalues_two_stage`, `singular_values_two_stage`, and the
//! automatic paths of `sym_spectrum`, `sym_extremes`, `sym_cond`, `singular_values`, `cond2`
//! above the crossover) against independent truth: matrices `Q diag(λ) Qᵀ` and
//! `U diag(σ) Vᵀ` with known spectra, closed forms, the 50-digit Hilbert references, faer's
//! one-stage solvers, and orthogonal invariance. Eigenvalues and singular values are only
//! backward stable, so errors are measured absolutely against `c · n · ε · ‖A‖₂`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use faer::{Mat, Side};
use precond_linalg::kernel::{singular_values_two_stage, sym_eigenvalues_two_stage};
use precond_linalg::*;
use proptest::prelude::*;

/// Absolute tolerance `16 · n · ε · scale` (the convention of the numpy fixture tests).
fn tol(n: usize, scale: f64) -> f64 {
    16.0 * n.max(1) as f64 * EPS * scale
}

fn assert_close(got: &[f64], want: &[f64], n: usize, scale: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol(n, scale),
            "{what}: entry {k}: {g} vs {w} (diff {:e}, tol {:e})",
            (g - w).abs(),
            tol(n, scale)
        );
    }
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// Spectra with structure: spread, clustered, repeated, zero, negative.
fn spectra(n: usize) -> Vec<(&'static str, Vec<f64>)> {
    let mut r = rng(n as u64);
    use rand::Rng;
    vec![
        ("spread", (0..n).map(|i| 1.0 + i as f64).collect()),
        (
            "random_signed",
            (0..n).map(|_| r.random_range(-3.0..3.0)).collect(),
        ),
        (
            "clustered",
            (0..n)
                .map(|i| {
                    if i % 3 == 0 {
                        1.0
                    } else {
                        1.0 + 1e-9 * i as f64
                    }
                })
                .collect(),
        ),
        (
            "repeated_with_zeros",
            (0..n).map(|i| [0.0, 2.0, -2.0, 2.0][i % 4]).collect(),
        ),
        (
            "graded",
            (0..n).map(|i| 10f64.powi(-(i as i32 % 12))).collect(),
        ),
    ]
}

#[test]
fn symmetric_eigenvalues_of_q_diag_qt_for_small_sizes_and_band_widths() {
    for n in [1usize, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 40] {
        for (name, eigs) in spectra(n) {
            let h = sym_with_eigs(&eigs, 100 + n as u64);
            let want = sorted(eigs.clone());
            let scale = max_abs(&want);
            for b in [1usize, 2, 3, 4, 8, 16, 32] {
                let got = sym_eigenvalues_two_stage(h.as_ref(), b).unwrap();
                assert_close(&got, &want, n, scale, &format!("{name} n={n} b={b}"));
            }
        }
    }
}

#[test]
fn symmetric_closed_forms_diagonal_zero_tridiagonal_and_band_inputs() {
    // diagonal (every panel below the band is zero: all reflectors are the identity)
    let d = [3.0, -0.5, 1e-3, 40.0, 2.0, 0.0, -7.0, 1.0, 5.0];
    let a = Mat::from_fn(9, 9, |i, j| if i == j { d[i] } else { 0.0 });
    for b in [1, 2, 3, 8] {
        let got = sym_eigenvalues_two_stage(a.as_ref(), b).unwrap();
        assert_close(&got, &sorted(d.to_vec()), 9, 40.0, "diagonal");
    }
    // zero matrix
    let z = Mat::<f64>::zeros(6, 6);
    assert!(
        sym_eigenvalues_two_stage(z.as_ref(), 2)
            .unwrap()
            .iter()
            .all(|&x| x == 0.0)
    );
    // 1-D Laplacian tridiag(-1, 2, -1): λ_k = 2 − 2cos(kπ/(n+1))
    for n in [2usize, 10, 37] {
        let t = Mat::from_fn(n, n, |i, j| {
            if i == j {
                2.0
            } else if i.abs_diff(j) == 1 {
                -1.0
            } else {
                0.0
            }
        });
        let want: Vec<f64> = (1..=n)
            .map(|k| 2.0 - 2.0 * (k as f64 * std::f64::consts::PI / (n + 1) as f64).cos())
            .collect();
        for b in [1, 3, 5] {
            let got = sym_eigenvalues_two_stage(t.as_ref(), b).unwrap();
            assert_close(&got, &want, n, 4.0, &format!("laplacian n={n} b={b}"));
        }
    }
    // 2-D Laplacian on a k×k grid (a band matrix of half-bandwidth k):
    // λ = 4 − 2cos(iπ/(k+1)) − 2cos(jπ/(k+1))
    let k = 7;
    let n = k * k;
    let lap = Mat::from_fn(n, n, |p, q| {
        let (pi, pj, qi, qj) = (p / k, p % k, q / k, q % k);
        if p == q {
            4.0
        } else if (pi == qi && pj.abs_diff(qj) == 1) || (pj == qj && pi.abs_diff(qi) == 1) {
            -1.0
        } else {
            0.0
        }
    });
    let c = |i: usize| 2.0 * ((i + 1) as f64 * std::f64::consts::PI / (k + 1) as f64).cos();
    let want = sorted((0..n).map(|p| 4.0 - c(p / k) - c(p % k)).collect());
    for b in [2, 7, 8, 32] {
        let got = sym_eigenvalues_two_stage(lap.as_ref(), b).unwrap();
        assert_close(&got, &want, n, 8.0, &format!("2-D laplacian b={b}"));
    }
}

#[test]
fn hilbert_condition_numbers_by_two_stage_match_50_digit_reference() {
    let fx = fixtures();
    for h in fx["hilbert"].as_array().unwrap() {
        let n = usize_of(&h["n"]);
        let k = h["kappa2"].as_f64().unwrap();
        let lmax = h["lambda_max"].as_f64().unwrap();
        let hm = Mat::from_fn(n, n, |i, j| 1.0 / (i + j + 1) as f64);
        for b in [1, 2, 3, 32] {
            let ev = sym_eigenvalues_two_stage(hm.as_ref(), b).unwrap();
            let kappa = ev[n - 1] / ev[0];
            assert!(
                rel_err(kappa, k) <= 16.0 * n as f64 * EPS * k,
                "n={n} b={b}: {kappa} vs {k}"
            );
            assert!(rel_err(ev[n - 1], lmax) <= 16.0 * n as f64 * EPS);
            let sv = singular_values_two_stage(hm.as_ref(), b).unwrap();
            let kappa = sv[0] / sv[n - 1];
            assert!(
                rel_err(kappa, k) <= 16.0 * n as f64 * EPS * k,
                "svd n={n} b={b}: {kappa} vs {k}"
            );
        }
    }
}

#[test]
fn two_stage_agrees_with_faer_one_stage_and_is_orthogonally_invariant() {
    for (n, seed) in [(64usize, 1u64), (161, 2), (250, 3)] {
        let a = random_mat(n, n, seed);
        let h = Mat::from_fn(n, n, |i, j| a[(i, j)] + a[(j, i)]);
        let faer_ev = h.self_adjoint_eigenvalues(Side::Lower).unwrap();
        let scale = max_abs(&faer_ev);
        for b in [4, 16, 32, 48] {
            let got = sym_eigenvalues_two_stage(h.as_ref(), b).unwrap();
            assert_close(&got, &faer_ev, n, scale, &format!("vs faer n={n} b={b}"));
        }
        // Q H Qᵀ has the same eigenvalues
        let q = random_orthogonal(n, seed + 10);
        let qh = &q * &h * q.transpose();
        let qh = Mat::from_fn(n, n, |i, j| 0.5 * (qh[(i, j)] + qh[(j, i)]));
        let got = sym_eigenvalues_two_stage(qh.as_ref(), 32).unwrap();
        assert_close(&got, &faer_ev, n, scale, &format!("invariance n={n}"));
    }
}

#[test]
fn automatic_symmetric_paths_above_the_crossover() {
    let n = SymSpectrumParams::default().two_stage_min_n + 7;
    let mut r = rng(9);
    use rand::Rng;
    let eigs: Vec<f64> = (0..n).map(|_| r.random_range(0.5..4.0)).collect();
    let h = sym_with_eigs(&eigs, 11);
    let want = sorted(eigs.clone());
    let sp = sym_spectrum(h.as_ref()).unwrap();
    assert_close(&sp.eigenvalues, &want, n, 4.0, "sym_spectrum");
    assert!(sp.positive_definite);
    let ex = sym_extremes(h.as_ref()).unwrap();
    assert!((ex.lambda_min - want[0]).abs() <= tol(n, 4.0));
    assert!((ex.lambda_max - want[n - 1]).abs() <= tol(n, 4.0));
    let k = want[n - 1] / want[0];
    assert!(rel_err(sym_cond(h.as_ref()).unwrap(), k) <= 16.0 * n as f64 * EPS * k);
    // an indefinite matrix: sym_cond's dense fallback reports the negative λ_min
    let mut eigs2 = eigs.clone();
    eigs2[3] = -1.0;
    let h2 = sym_with_eigs(&eigs2, 12);
    match sym_cond(h2.as_ref()) {
        Err(LinalgError::NotPositiveDefinite { .. }) => {}
        other => panic!("expected NotPositiveDefinite, got {other:?}"),
    }
    let ex = sym_extremes(h2.as_ref()).unwrap();
    assert!((ex.lambda_min + 1.0).abs() <= tol(n, 4.0));
}

/// `U diag(σ) Vᵀ` (m × n) with random orthogonal `U`, `V`.
fn with_singular_values(m: usize, n: usize, s: &[f64], seed: u64) -> Mat<f64> {
    let u = random_orthogonal(m, seed);
    let v = random_orthogonal(n, seed + 1);
    let us = Mat::from_fn(
        m,
        n,
        |i, k| if k < s.len() { u[(i, k)] * s[k] } else { 0.0 },
    );
    &us * v.transpose()
}

fn singular_spectra(k: usize) -> Vec<(&'static str, Vec<f64>)> {
    vec![
        ("spread", (0..k).map(|i| (k - i) as f64).collect()),
        (
            "graded",
            (0..k).map(|i| 10f64.powi(-(i as i32 % 10))).collect(),
        ),
        (
            "repeated_and_zero",
            (0..k).map(|i| [3.0, 3.0, 0.0, 1.0][i % 4]).collect(),
        ),
        (
            "clustered",
            (0..k).map(|i| 1.0 + 1e-10 * i as f64).collect(),
        ),
    ]
}

#[test]
fn singular_values_of_u_sigma_vt_square_tall_wide_and_tiny() {
    let shapes = [
        (1usize, 1usize),
        (1, 5),
        (5, 1),
        (2, 2),
        (3, 2),
        (2, 3),
        (8, 8),
        (9, 8),
        (12, 5),
        (5, 12),
        (17, 17),
        (33, 20),
        (20, 33),
        (60, 9),
        (40, 40),
    ];
    for (m, n) in shapes {
        let k = m.min(n);
        for (name, s) in singular_spectra(k) {
            let a = with_singular_values(m, n, &s, (7 * m + n) as u64);
            let mut want = s.clone();
            want.sort_by(|a, b| b.total_cmp(a));
            let scale = want[0];
            for b in [1usize, 2, 3, 4, 8, 32] {
                let got = singular_values_two_stage(a.as_ref(), b).unwrap();
                assert_close(
                    &got,
                    &want,
                    m.max(n),
                    scale,
                    &format!("{name} {m}x{n} b={b}"),
                );
            }
        }
    }
}

#[test]
fn singular_value_closed_forms() {
    // diagonal with a zero and a negative entry: σ = |d|
    let d: [f64; 7] = [3.0, -0.5, 1e-3, 40.0, 2.0, 0.0, -7.0];
    let a = Mat::from_fn(7, 7, |i, j| if i == j { d[i] } else { 0.0 });
    let mut want: Vec<f64> = d.iter().map(|x| x.abs()).collect();
    want.sort_by(|a, b| b.total_cmp(a));
    for b in [1, 2, 3, 8] {
        let got = singular_values_two_stage(a.as_ref(), b).unwrap();
        assert_close(&got, &want, 7, 40.0, "diagonal");
    }
    // the zero matrix, square and rectangular
    for (m, n) in [(4, 4), (6, 3), (3, 6)] {
        let z = Mat::<f64>::zeros(m, n);
        assert!(
            singular_values_two_stage(z.as_ref(), 2)
                .unwrap()
                .iter()
                .all(|&x| x == 0.0)
        );
    }
    // rank one: u vᵀ has σ = ‖u‖‖v‖ and zeros
    let (m, n) = (13, 9);
    let a = Mat::from_fn(m, n, |i, j| (i as f64 + 1.0) * (1.0 - j as f64 * 0.25));
    let nu = (1..=m).map(|i| (i * i) as f64).sum::<f64>().sqrt();
    let nv = (0..n)
        .map(|j| (1.0 - j as f64 * 0.25).powi(2))
        .sum::<f64>()
        .sqrt();
    let got = singular_values_two_stage(a.as_ref(), 3).unwrap();
    assert!(rel_err(got[0], nu * nv) <= 16.0 * 13.0 * EPS);
    for s in &got[1..] {
        assert!(s.abs() <= tol(13, nu * nv));
    }
}

#[test]
fn svd_agrees_with_faer_including_the_qr_first_path() {
    let k = 200;
    for (m, n) in [(k, k), (k + 40, k), (k, k + 40), (3 * k, k), (k, 3 * k)] {
        let a = random_mat(m, n, (m * 3 + n) as u64);
        let faer_sv = a.singular_values().unwrap();
        let scale = faer_sv[0];
        for b in [8, 32, 48] {
            let got = singular_values_two_stage(a.as_ref(), b).unwrap();
            assert_close(&got, &faer_sv, m.max(n), scale, &format!("{m}x{n} b={b}"));
        }
        // orthogonal invariance: singular values of U A
        let u = random_orthogonal(m, 77);
        let ua = &u * &a;
        let got = singular_values_two_stage(ua.as_ref(), 32).unwrap();
        assert_close(
            &got,
            &faer_sv,
            m.max(n),
            scale,
            &format!("invariance {m}x{n}"),
        );
    }
    // κ of a matrix with known σ
    let s: Vec<f64> = (0..k).map(|i| 1.0 + i as f64 / 10.0).collect();
    let a = with_singular_values(k, k, &s, 5);
    let sv = singular_values_two_stage(a.as_ref(), 32).unwrap();
    let kappa = s[k - 1] / s[0];
    assert!(rel_err(sv[0] / sv[k - 1], kappa) <= 16.0 * k as f64 * EPS * kappa);
}

#[test]
fn automatic_svd_path_above_the_crossover() {
    let k = SvdParams::default().two_stage_min_n + 5;
    let mut s: Vec<f64> = (0..k).map(|i| 1.0 + (i % 97) as f64 / 10.0).collect();
    let a = with_singular_values(k + 3, k, &s, 6);
    let mut want = s.clone();
    want.sort_by(|a, b| b.total_cmp(a));
    let got = singular_values(a.as_ref()).unwrap();
    assert_close(
        &got,
        &want,
        k + 3,
        want[0],
        "singular_values above the crossover",
    );
    let c = cond2(a.as_ref()).unwrap();
    let kappa = want[0] / want[k - 1];
    assert!(!c.rank_deficient);
    assert!(rel_err(c.kappa, kappa) <= 16.0 * k as f64 * EPS * kappa);
    // a zero singular value: rank deficient, κ = ∞ (wide shape: the transposed path)
    s[10] = 0.0;
    let a0 = with_singular_values(k, k + 2, &s, 7);
    let c = cond2(a0.as_ref()).unwrap();
    assert!(c.rank_deficient && c.kappa.is_infinite());
    assert!(c.sigma_min <= tol(k + 2, want[0]));
}

/// Stage 3 (the root-free QL/QR iteration) scales huge and tiny tridiagonal blocks into range:
/// spectra scaled by 1e160 (squares overflow), 1e150 and 1e−150 come out scaled, each to
/// `16 n ε` relative to the scale.
#[test]
fn huge_and_tiny_scales_end_to_end() {
    let n = 40;
    let eigs: Vec<f64> = (0..n).map(|i| -1.0 + 0.05 * i as f64).collect();
    let s: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
    for scale in [1e160, 1e150, 1e-150] {
        let ev: Vec<f64> = eigs.iter().map(|x| x * scale).collect();
        let h = sym_with_eigs(&ev, 7);
        let got = sym_eigenvalues_two_stage(h.as_ref(), 4).unwrap();
        assert_close(
            &got,
            &sorted(ev.clone()),
            n,
            max_abs(&ev),
            "scaled eigenvalues",
        );
        let sv: Vec<f64> = s.iter().map(|x| x * scale).collect();
        let a = with_singular_values(n + 5, n, &sv, 9);
        let got = singular_values_two_stage(a.as_ref(), 4).unwrap();
        let mut want = sv.clone();
        want.sort_by(|x, y| y.total_cmp(x));
        assert_close(&got, &want, n + 5, want[0], "scaled singular values");
    }
}

#[test]
fn two_stage_errors_are_typed() {
    let a = random_mat(4, 4, 1);
    assert!(matches!(
        sym_eigenvalues_two_stage(a.as_ref(), 0),
        Err(LinalgError::InvalidArgument { .. })
    ));
    assert!(matches!(
        singular_values_two_stage(a.as_ref(), 0),
        Err(LinalgError::InvalidArgument { .. })
    ));
    assert!(matches!(
        sym_eigenvalues_two_stage(a.as_ref(), 2),
        Err(LinalgError::NotSymmetric { .. })
    ));
    let r = random_mat(3, 4, 2);
    assert!(matches!(
        sym_eigenvalues_two_stage(r.as_ref(), 2),
        Err(LinalgError::DimensionMismatch { .. })
    ));
    let mut nan = random_mat(3, 3, 3);
    nan[(1, 2)] = f64::NAN;
    assert!(matches!(
        singular_values_two_stage(nan.as_ref(), 2),
        Err(LinalgError::NonFinite { row: 1, col: 2, .. })
    ));
    let e = Mat::<f64>::zeros(0, 3);
    assert!(matches!(
        singular_values_two_stage(e.as_ref(), 2),
        Err(LinalgError::Empty { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, rng_seed: proptest::test_runner::RngSeed::Fixed(6), ..ProptestConfig::default() })]

    #[test]
    fn prop_symmetric_two_stage_matches_faer(n in 1usize..48, b in 1usize..12, seed in 0u64..1000) {
        let a = random_mat(n, n, seed);
        let h = Mat::from_fn(n, n, |i, j| a[(i, j)] + a[(j, i)]);
        let want = h.self_adjoint_eigenvalues(Side::Lower).unwrap();
        let got = sym_eigenvalues_two_stage(h.as_ref(), b).unwrap();
        let scale = max_abs(&want);
        for (g, w) in got.iter().zip(&want) {
            prop_assert!((g - w).abs() <= tol(n, scale), "n={} b={}: {} vs {}", n, b, g, w);
        }
    }

    #[test]
    fn prop_svd_two_stage_matches_faer(m in 1usize..40, n in 1usize..40, b in 1usize..10, seed in 0u64..1000) {
        let a = random_mat(m, n, seed);
        let want = a.singular_values().unwrap();
        let got = singular_values_two_stage(a.as_ref(), b).unwrap();
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            prop_assert!((g - w).abs() <= tol(m.max(n), want[0]), "{}x{} b={}: {} vs {}", m, n, b, g, w);
        }
    }
}
