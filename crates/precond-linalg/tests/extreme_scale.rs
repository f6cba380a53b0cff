//! Matrices scaled by `2^k` for `k` from the subnormal range to near overflow: every diagnostic
//! answers as at `k = 0` (condition numbers unchanged, eigenvalues and singular values times
//! `2^k`), to a tolerance of a small multiple of `n · ε`. The fixed exponents below are the
//! cases that failed before the diagnostics scaled their input by a power of two.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use faer::Mat;
use precond_linalg::*;

/// The exponents of the regression cases: subnormal, tiny, huge.
const KS: [i32; 5] = [-1070, -700, -600, 600, 1000];

/// `2^k` as an exact product of two normal powers of two (`k` in `-2044..=2046`).
pub fn times_pow2(x: f64, k: i32) -> f64 {
    let h = k / 2;
    let p = |e: i32| f64::from_bits(((e + 1023) as u64) << 52);
    x * p(h) * p(k - h)
}

fn scale(a: &Mat<f64>, k: i32) -> Mat<f64> {
    Mat::from_fn(a.nrows(), a.ncols(), |i, j| times_pow2(a[(i, j)], k))
}

/// Small-integer matrices: exact after scaling by `2^-1070` (subnormal but exact).
fn int_sym(n: usize, seed: u64) -> Mat<f64> {
    use rand::Rng;
    let mut r = rng(seed);
    let mut h = Mat::from_fn(n, n, |_, _| f64::from(r.random_range(-3i32..=3)));
    for i in 0..n {
        for j in 0..i {
            h[(j, i)] = h[(i, j)];
        }
        h[(i, i)] = 4.0 * n as f64;
    }
    h
}

fn int_general(m: usize, n: usize, seed: u64) -> Mat<f64> {
    use rand::Rng;
    let mut r = rng(seed);
    let mut a = Mat::from_fn(m, n, |_, _| f64::from(r.random_range(-7i32..=7)));
    for i in 0..m.min(n) {
        a[(i, i)] = 16.0 + i as f64;
    }
    a
}

fn diag(d: &[f64]) -> Mat<f64> {
    Mat::from_fn(d.len(), d.len(), |i, j| if i == j { d[i] } else { 0.0 })
}

/// The test matrices: diagonal and dense symmetric (SPD), and a general rectangular one.
fn cases() -> Vec<(&'static str, Mat<f64>)> {
    vec![
        ("diagonal", diag(&[1.0, 3.0, 7.0, 12.0])),
        ("dense SPD", int_sym(6, 7)),
        ("dense SPD n=9", int_sym(9, 11)),
    ]
}

fn tol(n: usize) -> f64 {
    64.0 * n as f64 * EPS
}

fn close(got: f64, want: f64, scale: f64, n: usize) -> bool {
    (got - want).abs() <= tol(n) * scale.abs().max(want.abs())
}

#[test]
fn cond2_and_singular_values_scale() {
    let mut mats = cases();
    mats.push(("rectangular", int_general(7, 5, 3)));
    mats.push(("wide", int_general(4, 6, 5)));
    for (name, a) in &mats {
        let n = a.nrows().max(a.ncols());
        let c0 = cond2(a.as_ref()).unwrap();
        let s0 = singular_values(a.as_ref()).unwrap();
        let t0 = kernel::singular_values_two_stage(a.as_ref(), 2).unwrap();
        for k in KS {
            let ak = scale(a, k);
            let c = cond2(ak.as_ref()).unwrap_or_else(|e| panic!("{name} k={k}: {e}"));
            assert!(
                close(c.kappa, c0.kappa, c0.kappa, n) && !c.rank_deficient,
                "{name} k={k}: cond2 κ = {} (want {})",
                c.kappa,
                c0.kappa
            );
            let want = times_pow2(c0.sigma_max, k);
            assert!(
                close(c.sigma_max, want, want, n),
                "{name} k={k}: σ_max = {:e} want {want:e}",
                c.sigma_max
            );
            for (label, s, r) in [
                ("singular_values", singular_values(ak.as_ref()), &s0),
                (
                    "singular_values_two_stage",
                    kernel::singular_values_two_stage(ak.as_ref(), 2),
                    &t0,
                ),
            ] {
                let s = s.unwrap_or_else(|e| panic!("{name} k={k} {label}: {e}"));
                let top = times_pow2(r[0], k);
                for (x, y) in s.iter().zip(r.iter()) {
                    let y = times_pow2(*y, k);
                    assert!(
                        (x - y).abs() <= tol(n) * top,
                        "{name} k={k} {label}: σ = {x:e} want {y:e}"
                    );
                }
            }
        }
    }
}

#[test]
fn sym_spectrum_and_extremes_scale() {
    for (name, h) in cases() {
        let n = h.nrows();
        let s0 = sym_spectrum(h.as_ref()).unwrap();
        let t0 = kernel::sym_eigenvalues_two_stage(h.as_ref(), 2).unwrap();
        let e0 = sym_extremes(h.as_ref()).unwrap();
        for k in KS {
            let hk = scale(&h, k);
            let s = sym_spectrum(hk.as_ref()).unwrap_or_else(|e| panic!("{name} k={k}: {e}"));
            let top = times_pow2(s0.lambda_max, k);
            for (x, y) in s.eigenvalues.iter().zip(&s0.eigenvalues) {
                let y = times_pow2(*y, k);
                assert!(
                    x.is_finite() && (x - y).abs() <= tol(n) * top,
                    "{name} k={k}: λ = {x:e} want {y:e}"
                );
            }
            assert!(s.positive_definite, "{name} k={k}: not positive definite");
            assert!(
                close(s.kappa, s0.kappa, s0.kappa, n),
                "{name} k={k}: κ = {} want {}",
                s.kappa,
                s0.kappa
            );
            assert!(close(s.kappa_positive, s0.kappa_positive, s0.kappa, n));
            let t = kernel::sym_eigenvalues_two_stage(hk.as_ref(), 2)
                .unwrap_or_else(|e| panic!("{name} k={k} two-stage: {e}"));
            for (x, y) in t.iter().zip(&t0) {
                let y = times_pow2(*y, k);
                assert!(
                    (x - y).abs() <= tol(n) * top,
                    "{name} k={k} two-stage: λ = {x:e} want {y:e}"
                );
            }
            let e = sym_extremes(hk.as_ref()).unwrap_or_else(|e| panic!("{name} k={k}: {e}"));
            for (x, y) in [(e.lambda_min, e0.lambda_min), (e.lambda_max, e0.lambda_max)] {
                let y = times_pow2(y, k);
                assert!(
                    (x - y).abs() <= tol(n) * top,
                    "{name} k={k} sym_extremes: λ = {x:e} want {y:e}"
                );
            }
        }
    }
}

#[test]
fn sym_cond_scales() {
    let mut lanczos = SymCondParams::default();
    lanczos.krylov_min_n = 2;
    for (name, h) in cases() {
        let n = h.nrows();
        let k0 = sym_cond(h.as_ref()).unwrap();
        for k in KS {
            let hk = scale(&h, k);
            let dense = sym_cond(hk.as_ref()).unwrap_or_else(|e| panic!("{name} k={k}: {e}"));
            assert!(
                close(dense, k0, k0, n),
                "{name} k={k}: κ = {dense} want {k0}"
            );
            let kr = sym_cond_with_params(hk.as_ref(), &lanczos)
                .unwrap_or_else(|e| panic!("{name} k={k} Lanczos: {e}"));
            assert!(
                (kr - k0).abs() <= 1e-9 * k0,
                "{name} k={k} Lanczos: κ = {kr} want {k0}"
            );
        }
    }
}

#[test]
fn one_norm_condition_numbers_scale() {
    let mut mats = cases();
    mats.push(("general square", int_general(5, 5, 9)));
    for (name, a) in &mats {
        let n = a.nrows();
        let c0 = cond1(a.as_ref()).unwrap();
        let l0 = cond_estimate_lu(a.as_ref()).unwrap();
        let n0 = norm1(a.as_ref());
        for k in KS {
            let ak = scale(a, k);
            let nk = norm1(ak.as_ref());
            assert!(
                close(nk, times_pow2(n0, k), times_pow2(n0, k), n),
                "{name} k={k}: norm1 = {nk:e}"
            );
            let c = cond1(ak.as_ref()).unwrap();
            assert!(close(c, c0, c0, n), "{name} k={k}: cond1 = {c} want {c0}");
            if k == -1070 {
                // ‖A⁻¹‖₁ ≈ 2^1070 does not fit in an f64: the estimate record is refused
                let r = cond_estimate_lu(ak.as_ref());
                assert!(
                    matches!(r, Err(LinalgError::Overflow { .. })),
                    "{name}: {r:?}"
                );
                continue;
            }
            let l = cond_estimate_lu(ak.as_ref()).unwrap_or_else(|e| panic!("{name} k={k}: {e}"));
            assert!(
                close(l.kappa1_estimate, l0.kappa1_estimate, c0, n),
                "{name} k={k}: cond_estimate_lu = {} want {}",
                l.kappa1_estimate,
                l0.kappa1_estimate
            );
            assert!(close(l.norm1, times_pow2(n0, k), times_pow2(n0, k), n));
        }
    }
    for (name, h) in cases() {
        let n = h.nrows();
        let s0 = cond_estimate_spd(h.as_ref()).unwrap();
        for k in KS {
            let hk = scale(&h, k);
            if k == -1070 {
                let r = cond_estimate_spd(hk.as_ref());
                assert!(
                    matches!(r, Err(LinalgError::Overflow { .. })),
                    "{name}: {r:?}"
                );
                continue;
            }
            let s = cond_estimate_spd(hk.as_ref()).unwrap_or_else(|e| panic!("{name} k={k}: {e}"));
            assert!(
                close(s.kappa1_estimate, s0.kappa1_estimate, s0.kappa1_estimate, n),
                "{name} k={k}: cond_estimate_spd = {} want {}",
                s.kappa1_estimate,
                s0.kappa1_estimate
            );
        }
    }
}

#[test]
fn preconditioned_condition_numbers_scale() {
    for (name, h) in cases() {
        let n = h.nrows();
        let p: Vec<f64> = (0..n).map(|i| 1.0 / h[(i, i)]).collect();
        let d0 = precond_cond_diag(h.as_ref(), &p).unwrap();
        let pm = diag(&p);
        let m0 = precond_cond_dense(h.as_ref(), pm.as_ref()).unwrap();
        let f0 = precond_cond_factor(h.as_ref(), pm.as_ref()).unwrap();
        for k in KS {
            let hk = scale(&h, k);
            // H scaled, P as given: κ unchanged, eigenvalues times 2^k
            let d =
                precond_cond_diag(hk.as_ref(), &p).unwrap_or_else(|e| panic!("{name} k={k}: {e}"));
            let m = precond_cond_dense(hk.as_ref(), pm.as_ref())
                .unwrap_or_else(|e| panic!("{name} k={k}: {e}"));
            let f = precond_cond_factor(hk.as_ref(), pm.as_ref())
                .unwrap_or_else(|e| panic!("{name} k={k}: {e}"));
            for (label, got, want) in [("diag", &d, &d0), ("dense", &m, &m0), ("factor", &f, &f0)] {
                assert!(
                    close(
                        got.spectral_kappa,
                        want.spectral_kappa,
                        want.spectral_kappa,
                        n
                    ),
                    "{name} k={k} {label}: κ(SᵀHS) = {} want {}",
                    got.spectral_kappa,
                    want.spectral_kappa
                );
                assert!(
                    close(
                        got.row_scaled_kappa2,
                        want.row_scaled_kappa2,
                        want.row_scaled_kappa2,
                        n
                    ),
                    "{name} k={k} {label}: κ(PH) = {} want {}",
                    got.row_scaled_kappa2,
                    want.row_scaled_kappa2
                );
                let top = times_pow2(*want.eigenvalues.last().unwrap(), k);
                for (x, y) in got.eigenvalues.iter().zip(&want.eigenvalues) {
                    let y = times_pow2(*y, k);
                    assert!(
                        (x - y).abs() <= tol(n) * top,
                        "{name} k={k} {label}: λ = {x:e} want {y:e}"
                    );
                }
            }
            // P scaled by 2^-k against H scaled by 2^k: the product is the unscaled one
            if k < -1000 {
                continue; // 2^1070 p does not fit in an f64
            }
            let pk: Vec<f64> = p.iter().map(|&v| times_pow2(v, -k)).collect();
            let dd = precond_cond_diag(hk.as_ref(), &pk)
                .unwrap_or_else(|e| panic!("{name} k={k} inverse scaling: {e}"));
            assert!(
                close(dd.spectral_kappa, d0.spectral_kappa, d0.spectral_kappa, n),
                "{name} k={k}: κ = {} want {}",
                dd.spectral_kappa,
                d0.spectral_kappa
            );
        }
    }
}

#[test]
fn norms_and_equilibration_scale() {
    let mut mats = cases();
    mats.push(("rectangular", int_general(7, 5, 3)));
    for (name, a) in &mats {
        let n = a.nrows().max(a.ncols());
        let r0 = row_norms(a.as_ref());
        let c0 = col_norms(a.as_ref());
        let v0 = van_der_sluis_bound(a.as_ref()).unwrap();
        for k in KS {
            let ak = scale(a, k);
            for (label, got, want) in [
                ("row_norms", row_norms(ak.as_ref()), &r0),
                ("col_norms", col_norms(ak.as_ref()), &c0),
            ] {
                for (x, y) in got.iter().zip(want) {
                    let y = times_pow2(*y, k);
                    assert!(close(*x, y, y, n), "{name} k={k} {label}: {x:e} want {y:e}");
                }
            }
            if k == -1070 {
                // every row norm is below 2^-1024: 1/‖aᵢ‖ does not fit in an f64, refused
                for r in [
                    row_equilibrate(ak.as_ref()).map(|_| ()),
                    col_equilibrate(ak.as_ref()).map(|_| ()),
                    van_der_sluis_bound(ak.as_ref()).map(|_| ()),
                ] {
                    assert!(
                        matches!(r, Err(LinalgError::Overflow { .. })),
                        "{name} k={k}: {r:?}"
                    );
                }
                continue;
            }
            let eq = row_equilibrate(ak.as_ref()).unwrap_or_else(|e| panic!("{name} k={k}: {e}"));
            for r in row_norms(eq.scaled.as_ref()) {
                assert!((r - 1.0).abs() <= tol(n), "{name} k={k}: row norm {r}");
            }
            let eq = col_equilibrate(ak.as_ref()).unwrap_or_else(|e| panic!("{name} k={k}: {e}"));
            for r in col_norms(eq.scaled.as_ref()) {
                assert!((r - 1.0).abs() <= tol(n), "{name} k={k}: column norm {r}");
            }
            let v =
                van_der_sluis_bound(ak.as_ref()).unwrap_or_else(|e| panic!("{name} k={k}: {e}"));
            assert!(
                close(v.kappa_a, v0.kappa_a, v0.kappa_a, n)
                    && close(v.kappa_d0a, v0.kappa_d0a, v0.kappa_d0a, n),
                "{name} k={k}: van der Sluis κ(A) = {} κ(D0A) = {}, want {} {}",
                v.kappa_a,
                v.kappa_d0a,
                v0.kappa_a,
                v0.kappa_d0a
            );
        }
    }
    for (name, h) in cases() {
        let n = h.nrows();
        for k in KS {
            let hk = scale(&h, k);
            let eq = sym_equilibrate(hk.as_ref()).unwrap_or_else(|e| panic!("{name} k={k}: {e}"));
            for i in 0..n {
                assert!(
                    (eq.scaled[(i, i)] - 1.0).abs() <= tol(n),
                    "{name} k={k}: scaled diagonal {}",
                    eq.scaled[(i, i)]
                );
            }
        }
    }
}

/// Results that the input determines but that exceed `f64::MAX` are refused with a typed
/// error, never returned as `∞` beside a finite `κ`; `κ` alone (scale-free) is answered.
#[test]
fn results_beyond_f64_max_are_refused() {
    let big = 1.5e308;
    // eigenvalues 2·big and 0 (rank one), and 1.5·big, 0.5·big
    let ones = mat_rm(&[big, big, big, big], 2, 2);
    let spd = mat_rm(&[big, big / 2.0, big / 2.0, big], 2, 2);
    for h in [&ones, &spd] {
        let r = sym_spectrum(h.as_ref());
        assert!(matches!(r, Err(LinalgError::Overflow { .. })), "{r:?}");
        let r = sym_extremes(h.as_ref());
        assert!(matches!(r, Err(LinalgError::Overflow { .. })), "{r:?}");
        let r = cond2(h.as_ref());
        assert!(matches!(r, Err(LinalgError::Overflow { .. })), "{r:?}");
        let r = singular_values(h.as_ref());
        assert!(matches!(r, Err(LinalgError::Overflow { .. })), "{r:?}");
        assert!(norm1(h.as_ref()).is_infinite());
    }
    // κ itself is scale-free and answered: κ = 3 for eigenvalues 1.5·big and 0.5·big
    let k = sym_cond(spd.as_ref()).unwrap();
    assert!((k - 3.0).abs() <= 16.0 * EPS * 3.0, "κ = {k}");
    let c = cond1(spd.as_ref()).unwrap();
    assert!((c - 3.0).abs() <= 16.0 * EPS * 3.0, "κ₁ = {c}");
    // a row norm above f64::MAX: the row is still equilibrated to unit norm
    let eq = row_equilibrate(ones.as_ref()).unwrap();
    for r in row_norms(eq.scaled.as_ref()) {
        assert!((r - 1.0).abs() <= 4.0 * EPS, "row norm {r}");
    }
    assert!(row_norms(ones.as_ref()).iter().all(|r| r.is_infinite()));
}

/// Entries spanning the whole exponent range in one matrix: the largest decides the scale,
/// and the answer matches the one of the matrix with the same shape at moderate scale.
#[test]
fn diagonal_spanning_the_exponent_range() {
    let d = [f64::MAX / 4.0, 1e300, 1e-300, 5e-324];
    let h = diag(&d);
    // absolute accuracy ε·max|λ| (entries below 2⁻¹⁰²² max|λ| may vanish in the scaling)
    let abs = 4.0 * EPS * d[0];
    let s = sym_spectrum(h.as_ref()).unwrap();
    let mut want = d.to_vec();
    want.sort_by(f64::total_cmp);
    for (x, y) in s.eigenvalues.iter().zip(&want) {
        assert!((x - y).abs() <= abs, "λ = {x:e} want {y:e}");
    }
    assert_eq!(s.lambda_max.to_bits(), d[0].to_bits());
    assert!(!s.positive_definite); // λ_min ≤ n ε λ_max
    let sv = singular_values(h.as_ref()).unwrap();
    want.reverse();
    for (x, y) in sv.iter().zip(&want) {
        assert!((x - y).abs() <= abs, "σ = {x:e} want {y:e}");
    }
    let e = sym_extremes(h.as_ref()).unwrap();
    assert!((e.lambda_max - d[0]).abs() <= 4.0 * EPS * d[0]);
    assert!(e.lambda_min.abs() <= 8.0 * EPS * d[0]);
}

/// The estimates from a caller's factor are not rescaled: an overflowing solve of a tiny
/// matrix is refused instead of being reported as `κ₁ = ∞` (as a singular matrix would be);
/// at moderate and huge scales they agree with the rescaled estimates.
#[test]
fn estimates_from_a_given_factor_refuse_a_scale_overflow() {
    let h = int_sym(5, 13);
    let want = cond_estimate_lu(h.as_ref()).unwrap().kappa1_estimate;
    let want_spd = cond_estimate_spd(h.as_ref()).unwrap().kappa1_estimate;
    for k in KS {
        let hk = scale(&h, k);
        let lu = hk.partial_piv_lu();
        let llt = hk.llt(faer::Side::Lower).unwrap();
        let r = cond_estimate_from_lu(hk.as_ref(), &lu);
        let s = cond_estimate_from_llt(hk.as_ref(), &llt);
        if k == -1070 {
            assert!(matches!(r, Err(LinalgError::Overflow { .. })), "{r:?}");
            assert!(matches!(s, Err(LinalgError::Overflow { .. })), "{s:?}");
        } else {
            let (r, s) = (r.unwrap(), s.unwrap());
            assert!(rel_err(r.kappa1_estimate, want) <= tol(5), "k={k}: {r:?}");
            assert!(
                rel_err(s.kappa1_estimate, want_spd) <= tol(5),
                "k={k}: {s:?}"
            );
        }
    }
}
