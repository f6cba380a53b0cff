//! Scale invariance across the whole exponent range: `κ(2ᵏA) = κ(A)` and `λ(2ᵏH) = 2ᵏλ(H)` to
//! rounding for `k` in `-1000..=1000`, on random, graded (entries spanning `1e-8..1e8`) and
//! rank-deficient matrices; and the numpy/LAPACK fixtures reproduced at extreme scales.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use faer::Mat;
use precond_linalg::*;
use proptest::prelude::*;
use rand::Rng;

/// `x · 2ᵏ` exactly (two normal powers of two; one rounding if the result is subnormal).
fn times_pow2(x: f64, k: i32) -> f64 {
    let h = k / 2;
    let p = |e: i32| f64::from_bits(((e + 1023) as u64) << 52);
    x * p(h) * p(k - h)
}

fn scale(a: &Mat<f64>, k: i32) -> Mat<f64> {
    Mat::from_fn(a.nrows(), a.ncols(), |i, j| times_pow2(a[(i, j)], k))
}

/// The exponent `k` clamped so that `2ᵏ · n · max|a|` stays finite (every eigenvalue and
/// singular value of the scaled matrix then fits in an f64).
fn clamp_k(a: &Mat<f64>, k: i32) -> i32 {
    let mut m = 0.0f64;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            m = m.max(a[(i, j)].abs());
        }
    }
    let room = 1020 - (m * a.nrows().max(a.ncols()) as f64).log2().ceil() as i32;
    k.min(room)
}

/// The three families of test matrices.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Random,
    /// `D₁ A D₂` with `D₁`, `D₂` diagonal in `10^U(-4, 4)`: entries span `1e-8..1e8`.
    Graded,
    /// rank `n/2` (a product `X Yᵀ` with its last column repeated exactly).
    RankDeficient,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Random),
        Just(Kind::Graded),
        Just(Kind::RankDeficient)
    ]
}

fn general(kind: Kind, m: usize, n: usize, seed: u64) -> Mat<f64> {
    match kind {
        Kind::Random => random_mat(m, n, seed),
        Kind::Graded => {
            let mut r = rng(seed ^ 0x5ca1e);
            let a = random_mat(m, n, seed);
            let d1: Vec<f64> = (0..m)
                .map(|_| 10f64.powf(r.random_range(-4.0..4.0)))
                .collect();
            let d2: Vec<f64> = (0..n)
                .map(|_| 10f64.powf(r.random_range(-4.0..4.0)))
                .collect();
            Mat::from_fn(m, n, |i, j| d1[i] * a[(i, j)] * d2[j])
        }
        Kind::RankDeficient => {
            let r = (n / 2).max(1);
            let x = random_mat(m, r, seed);
            let y = random_mat(n, r, seed ^ 0xdef1c1e);
            let mut a = &x * y.transpose();
            for i in 0..m {
                a[(i, n - 1)] = a[(i, 0)];
            }
            a
        }
    }
}

/// Symmetric counterpart: `Q diag(λ) Qᵀ` with λ random in `(0.5, 2)`, graded
/// (`10^U(-8, 8)`, then `D H D`-free so that the eigenvalues themselves span 16 decades), or
/// with half of the eigenvalues exactly zero in exact arithmetic (rank-deficient).
fn symmetric(kind: Kind, n: usize, seed: u64) -> Mat<f64> {
    let mut r = rng(seed ^ 0x5eed);
    let eigs: Vec<f64> = match kind {
        Kind::Random => (0..n).map(|_| r.random_range(0.5..2.0)).collect(),
        Kind::Graded => (0..n)
            .map(|_| 10f64.powf(r.random_range(-8.0..8.0)))
            .collect(),
        Kind::RankDeficient => (0..n)
            .map(|i| {
                if i < n / 2 {
                    0.0
                } else {
                    r.random_range(-2.0..2.0)
                }
            })
            .collect(),
    };
    sym_with_eigs(&eigs, seed)
}

/// Relative tolerance of a computed κ of an `n`-sized problem (first-order perturbation:
/// `≈ c n ε κ` for a backward-stable algorithm), as in the fixture tests.
fn kappa_tol(n: usize, kappa: f64) -> f64 {
    16.0 * n as f64 * EPS * kappa.max(1.0)
}

/// κ large enough that the rank decision (`σ_min ≤ max(m, n) ε σ_max`) may go either way
/// within rounding.
fn near_rank_threshold(n: usize, kappa: f64) -> bool {
    kappa >= 1.0 / (16.0 * n as f64 * EPS)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, rng_seed: proptest::test_runner::RngSeed::Fixed(5), ..ProptestConfig::default() })]

    /// κ(2ᵏA) = κ(A) and σ(2ᵏA) = 2ᵏσ(A), rank decisions consistent.
    #[test]
    fn cond2_is_scale_invariant(
        kind in kind(), m in 2usize..=12, dn in 0usize..=4, k in -1000i32..=1000, seed in any::<u64>()
    ) {
        let n = m.saturating_sub(dn).max(2);
        let a = general(kind, m, n, seed);
        let k = clamp_k(&a, k);
        let ak = scale(&a, k);
        let c0 = cond2(a.as_ref()).unwrap();
        let c = cond2(ak.as_ref()).unwrap();
        let size = m.max(n);
        if c.rank_deficient == c0.rank_deficient {
            if !c0.rank_deficient {
                prop_assert!(rel_err(c.kappa, c0.kappa) <= kappa_tol(size, c0.kappa),
                    "{kind:?} k={k}: κ = {} vs {}", c.kappa, c0.kappa);
            } else {
                prop_assert!(c.kappa.is_infinite());
            }
        } else {
            // a flip of the rank decision only where it is decided by rounding
            let finite = if c.rank_deficient { c0.kappa } else { c.kappa };
            prop_assert!(near_rank_threshold(size, finite),
                "{kind:?} k={k}: rank decision {} vs {} at κ = {finite}", c.rank_deficient, c0.rank_deficient);
        }
        if let Kind::RankDeficient = kind {
            prop_assert!(c0.rank_deficient || near_rank_threshold(size, c0.kappa));
        }
        let s0 = singular_values(a.as_ref()).unwrap();
        let s = singular_values(ak.as_ref()).unwrap();
        for (x, y) in s.iter().zip(&s0) {
            prop_assert!((times_pow2(*x, -k) - y).abs() <= 16.0 * size as f64 * EPS * s0[0],
                "{kind:?} k={k}: σ = {x:e}·2^-k vs {y:e}");
        }
    }

    /// λ(2ᵏH) = 2ᵏλ(H), κ and positive definiteness unchanged (sym_spectrum, sym_extremes,
    /// sym_cond), with the tolerance of the fixture tests (absolute `16 n ε max|λ|`).
    #[test]
    fn symmetric_spectra_scale_exactly(
        kind in kind(), n in 2usize..=12, k in -1000i32..=1000, seed in any::<u64>()
    ) {
        let h = symmetric(kind, n, seed);
        let k = clamp_k(&h, k);
        let hk = scale(&h, k);
        let s0 = sym_spectrum(h.as_ref()).unwrap();
        let s = sym_spectrum(hk.as_ref()).unwrap();
        let top = s0.lambda_min.abs().max(s0.lambda_max.abs());
        let tol = 16.0 * n as f64 * EPS * top;
        for (x, y) in s.eigenvalues.iter().zip(&s0.eigenvalues) {
            prop_assert!((times_pow2(*x, -k) - y).abs() <= tol,
                "{kind:?} k={k}: λ = {x:e}·2^-k vs {y:e}");
        }
        let e = sym_extremes(hk.as_ref()).unwrap();
        prop_assert!((times_pow2(e.lambda_min, -k) - s0.lambda_min).abs() <= tol);
        prop_assert!((times_pow2(e.lambda_max, -k) - s0.lambda_max).abs() <= tol);
        if s.positive_definite == s0.positive_definite {
            if s0.positive_definite {
                prop_assert!(rel_err(s.kappa, s0.kappa) <= kappa_tol(n, s0.kappa),
                    "{kind:?} k={k}: κ = {} vs {}", s.kappa, s0.kappa);
            } else {
                prop_assert!(s.kappa.is_infinite());
            }
        } else {
            let finite = if s.positive_definite { s.kappa } else { s0.kappa };
            prop_assert!(near_rank_threshold(n, finite));
        }
        match (sym_cond(h.as_ref()), sym_cond(hk.as_ref())) {
            (Ok(a), Ok(b)) => prop_assert!(rel_err(b, a) <= kappa_tol(n, a),
                "{kind:?} k={k}: sym_cond {b} vs {a}"),
            (Err(LinalgError::NotPositiveDefinite { .. }), Err(LinalgError::NotPositiveDefinite { .. })) => {}
            (Ok(a), Err(_)) | (Err(_), Ok(a)) => prop_assert!(near_rank_threshold(n, a),
                "{kind:?} k={k}: sym_cond decided differently at κ = {a}"),
            (a, b) => prop_assert!(false, "{kind:?} k={k}: {a:?} / {b:?}"),
        }
    }

    /// The 1-norm condition number and its estimate, the norms and the preconditioned κ are
    /// scale-free.
    #[test]
    fn one_norm_and_preconditioned_kappa_are_scale_invariant(
        kind in kind(), n in 2usize..=12, k in -1000i32..=1000, seed in any::<u64>()
    ) {
        let h = symmetric(kind, n, seed);
        let a = general(kind, n, n, seed);
        let k = clamp_k(&h, clamp_k(&a, k));
        let (hk, ak) = (scale(&h, k), scale(&a, k));
        let (c0, c) = (cond1(a.as_ref()).unwrap(), cond1(ak.as_ref()).unwrap());
        if c0.is_finite() && c.is_finite() && !near_rank_threshold(n, c0) {
            prop_assert!(rel_err(c, c0) <= kappa_tol(n, c0), "{kind:?} k={k}: κ₁ = {c} vs {c0}");
        }
        let n0 = norm1(a.as_ref());
        prop_assert!(rel_err(times_pow2(norm1(ak.as_ref()), -k), n0) <= 4.0 * n as f64 * EPS);
        for (x, y) in row_norms(ak.as_ref()).iter().zip(row_norms(a.as_ref())) {
            prop_assert!(rel_err(times_pow2(*x, -k), y) <= 4.0 * n as f64 * EPS);
        }
        let e0 = cond_estimate_lu(a.as_ref()).unwrap();
        if c0.is_finite() && !near_rank_threshold(n, c0) {
            let e = cond_estimate_lu(ak.as_ref()).unwrap();
            prop_assert!(rel_err(e.kappa1_estimate, e0.kappa1_estimate) <= kappa_tol(n, c0),
                "{kind:?} k={k}: estimate {} vs {}", e.kappa1_estimate, e0.kappa1_estimate);
        }
        // P = diag(1/|h_ii|) against 2ᵏH: κ(SᵀHS) unchanged, eigenvalues times 2ᵏ
        let p: Vec<f64> = (0..n).map(|i| 1.0 / h[(i, i)].abs().max(1e-300)).collect();
        let (p0, pk) = (precond_cond_diag(h.as_ref(), &p), precond_cond_diag(hk.as_ref(), &p));
        let (p0, pk) = (p0.unwrap(), pk.unwrap());
        let top = p0.eigenvalues.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        for (x, y) in pk.eigenvalues.iter().zip(&p0.eigenvalues) {
            prop_assert!((times_pow2(*x, -k) - y).abs() <= 16.0 * n as f64 * EPS * top,
                "{kind:?} k={k}: λ(SᵀHS) = {x:e}·2^-k vs {y:e}");
        }
        if p0.spectrum.positive_definite && pk.spectrum.positive_definite {
            prop_assert!(rel_err(pk.spectral_kappa, p0.spectral_kappa) <= kappa_tol(n, p0.spectral_kappa));
        }
    }
}

/// The numpy/LAPACK fixtures, scaled by `2ᵏ` for extreme `k`: the same κ, and the reference
/// spectra times `2ᵏ`, within the tolerances of `fixtures_numpy.rs`.
#[test]
fn fixtures_hold_at_extreme_scales() {
    let fx = fixtures();
    for k in [-1070, -1000, -700, -600, 600, 1000] {
        for g in fx["general"].as_array().unwrap() {
            let (m, n) = (usize_of(&g["rows"]), usize_of(&g["cols"]));
            let a = mat_from_slice(&vec_f64(&g["data"]), m, n, Layout::RowMajor).unwrap();
            let k = clamp_k(&a, k);
            let ak = scale(&a, k);
            let want = g["cond2"].as_f64().unwrap();
            let c = cond2(ak.as_ref()).unwrap();
            // subnormal entries (k = -1070) carry an absolute error of 2^-1075: tolerance on
            // the same footing as the SVD's own backward error only where they are exact
            let size = m.max(n);
            if k > -1000 {
                assert!(
                    rel_err(c.kappa, want) <= 16.0 * size as f64 * EPS * want.max(1.0),
                    "{} k={k}: {} vs {want}",
                    g["name"],
                    c.kappa
                );
                let want_sv = vec_f64(&g["svdvals"]);
                let sv = singular_values(ak.as_ref()).unwrap();
                for (s, w) in sv.iter().zip(&want_sv) {
                    assert!(
                        (times_pow2(*s, -k) - w).abs() <= 16.0 * size as f64 * EPS * want_sv[0],
                        "{} k={k}: {s:e} vs {w:e}·2^k",
                        g["name"]
                    );
                }
                if let Some(want1) = g["cond1"].as_f64() {
                    let c1 = cond1(ak.as_ref()).unwrap();
                    assert!(rel_err(c1, want1) <= 16.0 * size as f64 * EPS * want1);
                }
            } else {
                // entries rounded to subnormals: the matrix is another one (small rows may
                // vanish); its answer is the one of the same rounded matrix brought back to
                // moderate scale (exactly: scaling a subnormal up is exact)
                let back = scale(&ak, -k);
                let c0 = cond2(back.as_ref()).unwrap();
                assert_eq!(c.rank_deficient, c0.rank_deficient, "{} k={k}", g["name"]);
                if !c0.rank_deficient {
                    assert!(
                        rel_err(c.kappa, c0.kappa) <= 16.0 * size as f64 * EPS * c0.kappa,
                        "{} k={k}: {} vs {}",
                        g["name"],
                        c.kappa,
                        c0.kappa
                    );
                }
            }
        }
        for s in fx["symmetric"].as_array().unwrap() {
            let n = usize_of(&s["n"]);
            let h = mat_from_slice(&vec_f64(&s["data"]), n, n, Layout::RowMajor).unwrap();
            let k = clamp_k(&h, k);
            if k <= -1000 {
                continue;
            }
            let hk = scale(&h, k);
            let sp = sym_spectrum(hk.as_ref()).unwrap();
            let want = vec_f64(&s["eigvalsh"]);
            let top = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for (g, w) in sp.eigenvalues.iter().zip(&want) {
                assert!(
                    (times_pow2(*g, -k) - w).abs() <= 16.0 * n as f64 * EPS * top,
                    "{} k={k}: {g:e} vs {w:e}·2^k",
                    s["name"]
                );
            }
            if let Some(kappa) = s["cond"].as_f64() {
                assert!(sp.positive_definite, "{} k={k}", s["name"]);
                assert!(rel_err(sp.kappa, kappa) <= 16.0 * n as f64 * EPS * kappa);
                let fast = sym_cond(hk.as_ref()).unwrap();
                assert!(
                    rel_err(fast, kappa) <= 16.0 * n as f64 * EPS * kappa,
                    "{} k={k}",
                    s["name"]
                );
            }
        }
    }
}
