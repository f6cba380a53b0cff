//! Exact values against numpy / scipy (LAPACK) / mpmath references committed in
//! `tests/fixtures/linalg_fixtures.json` (made by `tests/fixtures/make_fixtures.py`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use precond_linalg::*;

/// Relative tolerance for a condition number κ of a size-n problem: perturbation theory gives
/// relative error ≈ c·n·ε·κ for backward-stable algorithms.
fn kappa_tol(n: usize, kappa: f64) -> f64 {
    16.0 * n as f64 * EPS * kappa.max(1.0)
}

#[test]
fn cond2_and_singular_values_match_numpy() {
    let fx = fixtures();
    for g in fx["general"].as_array().unwrap() {
        let (m, n) = (usize_of(&g["rows"]), usize_of(&g["cols"]));
        let a = mat_from_slice(&vec_f64(&g["data"]), m, n, Layout::RowMajor).unwrap();
        let c = cond2(a.as_ref()).unwrap();
        let want = g["cond2"].as_f64().unwrap();
        assert!(!c.rank_deficient, "{}", g["name"]);
        assert!(
            rel_err(c.kappa, want) <= kappa_tol(m.max(n), want),
            "{}: {} vs {want}",
            g["name"],
            c.kappa
        );
        let sv = singular_values(a.as_ref()).unwrap();
        let want_sv = vec_f64(&g["svdvals"]);
        assert_eq!(sv.len(), want_sv.len());
        for (s, w) in sv.iter().zip(&want_sv) {
            assert!(
                (s - w).abs() <= 16.0 * m.max(n) as f64 * EPS * want_sv[0],
                "{}: {s} vs {w}",
                g["name"]
            );
        }
        assert!(rel_err(c.sigma_max, want_sv[0]) <= 16.0 * m.max(n) as f64 * EPS);
    }
}

#[test]
fn col_major_layout_gives_the_same_matrix() {
    let fx = fixtures();
    let g = &fx["general"][2]; // tall 9x4
    let (m, n) = (usize_of(&g["rows"]), usize_of(&g["cols"]));
    let rm = vec_f64(&g["data"]);
    let mut cm = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            cm[i + j * m] = rm[i * n + j];
        }
    }
    let a = mat_from_slice(&rm, m, n, Layout::RowMajor).unwrap();
    let b = mat_from_slice(&cm, m, n, Layout::ColMajor).unwrap();
    for i in 0..m {
        for j in 0..n {
            assert_eq!(a[(i, j)].to_bits(), b[(i, j)].to_bits());
            assert_eq!(a[(i, j)].to_bits(), rm[i * n + j].to_bits());
        }
    }
}

#[test]
fn cond1_and_lapack_gecon_estimate_match() {
    let fx = fixtures();
    for g in fx["general"].as_array().unwrap() {
        let Some(want1) = g["cond1"].as_f64() else {
            continue;
        };
        let n = usize_of(&g["rows"]);
        let a = mat_from_slice(&vec_f64(&g["data"]), n, n, Layout::RowMajor).unwrap();
        let c1 = cond1(a.as_ref()).unwrap();
        assert!(
            rel_err(c1, want1) <= kappa_tol(n, want1),
            "{}: {c1} vs {want1}",
            g["name"]
        );
        // Same algorithm as LAPACK's DLACN2 inside DGECON: same estimate up to rounding.
        let est = cond_estimate_lu(a.as_ref()).unwrap();
        let want_est = g["gecon_kappa1"].as_f64().unwrap();
        assert!(
            rel_err(est.kappa1_estimate, want_est) <= kappa_tol(n, want_est),
            "{}: {} vs {want_est}",
            g["name"],
            est.kappa1_estimate
        );
        assert!(est.kappa1_estimate <= c1 * (1.0 + kappa_tol(n, c1)));
    }
}

#[test]
fn symmetric_spectra_match_numpy_eigvalsh_and_dpocon() {
    let fx = fixtures();
    for s in fx["symmetric"].as_array().unwrap() {
        let n = usize_of(&s["n"]);
        let h = mat_from_slice(&vec_f64(&s["data"]), n, n, Layout::RowMajor).unwrap();
        let sp = sym_spectrum(h.as_ref()).unwrap();
        let want = vec_f64(&s["eigvalsh"]);
        let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        for (g, w) in sp.eigenvalues.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 16.0 * n as f64 * EPS * scale,
                "{}: {g} vs {w}",
                s["name"]
            );
        }
        let ex = sym_extremes(h.as_ref()).unwrap();
        assert!((ex.lambda_min - want[0]).abs() <= 16.0 * n as f64 * EPS * scale);
        assert!((ex.lambda_max - want[n - 1]).abs() <= 16.0 * n as f64 * EPS * scale);
        if let Some(k) = s["cond"].as_f64() {
            assert!(sp.positive_definite, "{}", s["name"]);
            assert!(
                rel_err(sp.kappa, k) <= kappa_tol(n, k),
                "{}: {} vs {k}",
                s["name"],
                sp.kappa
            );
            assert!(rel_err(sym_cond(h.as_ref()).unwrap(), k) <= kappa_tol(n, k));
            let est = cond_estimate_spd(h.as_ref()).unwrap();
            let want_est = s["pocon_kappa1"].as_f64().unwrap();
            assert!(
                rel_err(est.kappa1_estimate, want_est) <= kappa_tol(n, want_est),
                "{}: {} vs {want_est}",
                s["name"],
                est.kappa1_estimate
            );
            let c1 = s["cond1"].as_f64().unwrap();
            assert!(rel_err(cond1(h.as_ref()).unwrap(), c1) <= kappa_tol(n, c1));
        } else {
            assert!(!sp.positive_definite, "{}", s["name"]);
            assert!(sp.kappa.is_infinite());
            // smallest positive eigenvalue: the first eigenvalue above n·ε·max|λ|
            let tau = n as f64 * EPS * scale;
            let sp_want = want.iter().copied().find(|&l| l > tau).unwrap();
            let got = sp.smallest_positive.unwrap();
            assert!(
                (got - sp_want).abs() <= 16.0 * n as f64 * EPS * scale,
                "{}: {got} vs {sp_want}",
                s["name"]
            );
            assert!(
                rel_err(sp.kappa_positive, want[n - 1] / sp_want)
                    <= kappa_tol(n, want[n - 1] / sp_want)
            );
            assert!(matches!(
                sym_cond(h.as_ref()),
                Err(LinalgError::NotPositiveDefinite { .. })
            ));
        }
    }
    // the rank-7 PSD matrix: 3 zero eigenvalues, smallest positive is the 4th
    let s = &fx["symmetric"][3];
    assert_eq!(s["name"], "psd_rank7_10");
    let h = mat_from_slice(&vec_f64(&s["data"]), 10, 10, Layout::RowMajor).unwrap();
    let sp = sym_spectrum(h.as_ref()).unwrap();
    let want = vec_f64(&s["eigvalsh"]);
    assert!(rel_err(sp.smallest_positive.unwrap(), want[3]) < 1e-10);
}

#[test]
fn hilbert_condition_numbers_match_50_digit_reference() {
    let fx = fixtures();
    for h in fx["hilbert"].as_array().unwrap() {
        let n = usize_of(&h["n"]);
        let k = h["kappa2"].as_f64().unwrap();
        let hm = faer::Mat::from_fn(n, n, |i, j| 1.0 / (i + j + 1) as f64);
        let tol = kappa_tol(n, k);
        let c = cond2(hm.as_ref()).unwrap();
        assert!(
            rel_err(c.kappa, k) <= tol,
            "n={n}: cond2 {} vs {k}",
            c.kappa
        );
        let sp = sym_spectrum(hm.as_ref()).unwrap();
        assert!(
            rel_err(sp.kappa, k) <= tol,
            "n={n}: sym {} vs {k}",
            sp.kappa
        );
        assert!(rel_err(sp.lambda_max, h["lambda_max"].as_f64().unwrap()) <= 16.0 * n as f64 * EPS);
        assert!(
            rel_err(sym_cond(hm.as_ref()).unwrap(), k) <= tol,
            "n={n}: sym_cond"
        );
    }
}

#[test]
fn preconditioned_spectra_match_numpy() {
    let fx = fixtures();
    for p in fx["preconditioned"].as_array().unwrap() {
        let n = usize_of(&p["n"]);
        let h = mat_rm(&vec_f64(&p["h"]), n, n);
        let d = vec_f64(&p["p"]);
        let pc = precond_cond_diag(h.as_ref(), &d).unwrap();
        // Bauer–Fike: numpy's nonsymmetric eig of PH has eigenvector basis S^{-T}V with
        // condition sqrt(κ(P)), so its eigenvalue errors are ≲ c·n·ε·‖PH‖₂·sqrt(κ(P)).
        let kp = d.iter().fold(0.0f64, |m, &x| m.max(x))
            / d.iter().fold(f64::INFINITY, |m, &x| m.min(x));
        check_eigs(
            &pc,
            &vec_f64(&p["eig_ph"]),
            kp,
            n,
            p["name"].as_str().unwrap(),
        );
        let cph = p["cond_ph"].as_f64().unwrap();
        assert!(
            rel_err(pc.row_scaled_kappa2, cph) <= kappa_tol(n, cph),
            "{}",
            p["name"]
        );
        // the diagonal p = 1/||h_i|| improves κ (Corollary 1)
        assert!(pc.spectral_kappa < p["cond_h"].as_f64().unwrap());

        let pd = mat_rm(&vec_f64(&p["p_dense"]), n, n);
        let pcd = precond_cond_dense(h.as_ref(), pd.as_ref()).unwrap();
        let kp = sym_spectrum(pd.as_ref()).unwrap().kappa;
        check_eigs(
            &pcd,
            &vec_f64(&p["eig_pdh"]),
            kp,
            n,
            p["name"].as_str().unwrap(),
        );
        let cpdh = p["cond_pdh"].as_f64().unwrap();
        assert!(
            rel_err(pcd.row_scaled_kappa2, cpdh) <= kappa_tol(n, cpdh),
            "{}",
            p["name"]
        );
    }
}

fn check_eigs(pc: &PreconditionedCond, want: &[f64], kappa_p: f64, n: usize, name: &str) {
    let tol = 16.0 * n as f64 * EPS * pc.row_scaled.sigma_max * kappa_p.sqrt();
    for (g, w) in pc.eigenvalues.iter().zip(want) {
        assert!((g - w).abs() <= tol, "{name}: {g} vs {w} (tol {tol:e})");
    }
    let kw = want[n - 1] / want[0];
    assert!(
        rel_err(pc.spectral_kappa, kw) <= tol / want[0] + tol / want[n - 1],
        "{name}: {} vs {kw}",
        pc.spectral_kappa
    );
}
