//! The building blocks of the matrix preconditioners (Shampoo, SOAP, Muon): symmetric products
//! against plain faer products, inverse roots against closed forms and identities, and the
//! Kronecker-preconditioned κ against the explicitly formed preconditioner.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use faer::linalg::matmul::matmul;
use faer::linalg::solvers::Solve;
use faer::{Accum, Mat, MatRef, Par};
use precond_linalg::*;

fn frob(a: MatRef<'_, f64>) -> f64 {
    let mut s = 0.0;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            s += a[(i, j)] * a[(i, j)];
        }
    }
    s.sqrt()
}

fn max_diff(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> f64 {
    assert_eq!((a.nrows(), a.ncols()), (b.nrows(), b.ncols()));
    let mut m = 0.0f64;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            m = m.max((a[(i, j)] - b[(i, j)]).abs());
        }
    }
    m
}

fn assert_exactly_symmetric<T: Copy + PartialEq + core::fmt::Debug>(a: MatRef<'_, T>) {
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            assert_eq!(a[(i, j)], a[(j, i)], "entry ({i},{j})");
        }
    }
}

fn identity(n: usize) -> Mat<f64> {
    Mat::from_fn(n, n, |i, j| if i == j { 1.0 } else { 0.0 })
}

fn diag(d: &[f64]) -> Mat<f64> {
    Mat::from_fn(d.len(), d.len(), |i, j| if i == j { d[i] } else { 0.0 })
}

/// `kron(A, B)[(i·p + k, j·q + l)] = A[i,j]·B[k,l]`.
fn kron(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let (p, q) = (b.nrows(), b.ncols());
    Mat::from_fn(a.nrows() * p, a.ncols() * q, |r, c| {
        a[(r / p, c / q)] * b[(r % p, c % q)]
    })
}

// ---------------------------------------------------------------- symmetric products

#[test]
fn gram_matches_plain_product_f64() {
    for &(m, k, seed) in &[(1, 1, 1), (5, 3, 2), (17, 40, 3), (64, 9, 4), (33, 33, 5)] {
        let x = random_mat(m, k, seed);
        let c0 = {
            let y = random_mat(m, m, seed + 100);
            Mat::from_fn(m, m, |i, j| y[(i, j)] + y[(j, i)])
        };
        for &(alpha, beta) in &[(1.0, 0.0), (0.5, 1.0), (-2.0, 0.75), (1.0, 1.0)] {
            let mut out = c0.clone();
            gram_into(x.as_ref(), out.as_mut(), alpha, beta, Par::Seq).unwrap();
            let want = Mat::from_fn(m, m, |i, j| beta * c0[(i, j)])
                + (&x * x.transpose()) * faer::Scale(alpha);
            let tol = 4.0
                * (k as f64 + 2.0)
                * EPS
                * (alpha.abs() * frob(x.as_ref()).powi(2) + beta.abs() * frob(c0.as_ref()));
            assert!(max_diff(out.as_ref(), want.as_ref()) <= tol, "m={m} k={k}");
            assert_exactly_symmetric(out.as_ref());

            // XᵀX of the transpose is the same matrix
            let xt = x.transpose().to_owned();
            let mut out_t = c0.clone();
            gram_t_into(xt.as_ref(), out_t.as_mut(), alpha, beta, Par::Seq).unwrap();
            assert!(max_diff(out_t.as_ref(), want.as_ref()) <= tol);
            assert_exactly_symmetric(out_t.as_ref());
        }
    }
}

#[test]
fn gram_on_row_major_views_and_in_parallel() {
    let (m, k) = (23, 31);
    let data: Vec<f64> = random_mat(m * k, 1, 7).col(0).iter().copied().collect();
    let x = mat_view_from_slice(&data, m, k, Layout::RowMajor).unwrap();
    let want = x * x.transpose();
    let mut out = Mat::<f64>::zeros(m, m);
    gram_into(x, out.as_mut(), 1.0, 0.0, Par::rayon(2)).unwrap();
    let tol = 4.0 * k as f64 * EPS * frob(x).powi(2);
    assert!(max_diff(out.as_ref(), want.as_ref()) <= tol);
    assert_exactly_symmetric(out.as_ref());
    let mut out = Mat::<f64>::zeros(k, k);
    gram_t_into(x, out.as_mut(), 1.0, 0.0, Par::Seq).unwrap();
    let want = x.transpose() * x;
    assert!(max_diff(out.as_ref(), want.as_ref()) <= 4.0 * m as f64 * EPS * frob(x).powi(2));
    assert_exactly_symmetric(out.as_ref());
}

#[test]
fn gram_f32_matches_f64_reference() {
    let (m, k) = (20, 13);
    let x64 = random_mat(m, k, 11);
    let x32 = Mat::from_fn(m, k, |i, j| x64[(i, j)] as f32);
    // the exact product of the f32 inputs, computed in f64
    let x32w = Mat::from_fn(m, k, |i, j| f64::from(x32[(i, j)]));
    let c32 = Mat::from_fn(m, m, |i, j| ((i + j) as f32) * 0.125);
    let want = Mat::from_fn(m, m, |i, j| 0.5 * f64::from(c32[(i, j)]))
        + (&x32w * x32w.transpose()) * faer::Scale(2.0);
    let mut out = c32.clone();
    gram_into(x32.as_ref(), out.as_mut(), 2.0f32, 0.5f32, Par::Seq).unwrap();
    assert_exactly_symmetric(out.as_ref());
    let got = Mat::from_fn(m, m, |i, j| f64::from(out[(i, j)]));
    let eps32 = f64::from(f32::EPSILON);
    let tol =
        4.0 * (k as f64 + 2.0) * eps32 * (2.0 * frob(x32w.as_ref()).powi(2) + 10.0 * m as f64);
    assert!(max_diff(got.as_ref(), want.as_ref()) <= tol);

    let mut sq = Mat::<f32>::zeros(m, m);
    let a32 = Mat::from_fn(m, m, |i, j| (x32[(i, j % k)] + x32[(j, i % k)]) * 0.5);
    sym_square_into(a32.as_ref(), sq.as_mut(), Par::Seq).unwrap();
    assert_exactly_symmetric(sq.as_ref());
    let a64 = Mat::from_fn(m, m, |i, j| f64::from(a32[(i, j)]));
    let want = &a64 * &a64;
    let got = Mat::from_fn(m, m, |i, j| f64::from(sq[(i, j)]));
    assert!(
        max_diff(got.as_ref(), want.as_ref())
            <= 4.0 * m as f64 * eps32 * frob(a64.as_ref()).powi(2)
    );
}

#[test]
fn gram_beta_zero_ignores_nan_in_out() {
    let x = random_mat(6, 4, 21);
    let mut out = Mat::from_fn(6, 6, |_, _| f64::NAN);
    gram_into(x.as_ref(), out.as_mut(), 1.0, 0.0, Par::Seq).unwrap();
    let want = &x * x.transpose();
    assert!(max_diff(out.as_ref(), want.as_ref()) <= 32.0 * EPS * frob(x.as_ref()).powi(2));
    let mut out32 = Mat::from_fn(4, 4, |_, _| f32::NAN);
    let x32 = Mat::from_fn(6, 4, |i, j| x[(i, j)] as f32);
    gram_t_into(x32.as_ref(), out32.as_mut(), 1.0, 0.0, Par::Seq).unwrap();
    assert!(out32.col_iter().all(|c| c.iter().all(|v| v.is_finite())));
    // k = 0: beta·out, and with beta = 0 a zero matrix even over NaN
    let empty = Mat::<f64>::zeros(3, 0);
    let mut out = Mat::from_fn(3, 3, |_, _| f64::NAN);
    gram_into(empty.as_ref(), out.as_mut(), 1.0, 0.0, Par::Seq).unwrap();
    assert!(out.col_iter().all(|c| c.iter().all(|&v| v == 0.0)));
}

#[test]
fn sym_square_matches_plain_product() {
    for &(n, seed) in &[(1, 1), (7, 2), (40, 3)] {
        let a = sym_with_eigs(&(0..n).map(|i| (i as f64) - 3.0).collect::<Vec<_>>(), seed);
        let mut out = Mat::from_fn(n, n, |_, _| f64::NAN);
        sym_square_into(a.as_ref(), out.as_mut(), Par::Seq).unwrap();
        let want = &a * &a;
        let tol = 4.0 * n as f64 * EPS * frob(a.as_ref()).powi(2);
        assert!(max_diff(out.as_ref(), want.as_ref()) <= tol);
        assert_exactly_symmetric(out.as_ref());
    }
}

#[test]
fn symmetric_product_errors() {
    let x = random_mat(4, 3, 1);
    let mut bad = Mat::<f64>::zeros(3, 3);
    assert!(matches!(
        gram_into(x.as_ref(), bad.as_mut(), 1.0, 0.0, Par::Seq),
        Err(LinalgError::DimensionMismatch {
            expected: 4,
            got: 3,
            ..
        })
    ));
    let mut bad = Mat::<f64>::zeros(3, 4);
    assert!(matches!(
        gram_t_into(x.as_ref(), bad.as_mut(), 1.0, 0.0, Par::Seq),
        Err(LinalgError::DimensionMismatch {
            expected: 3,
            got: 4,
            ..
        })
    ));
    let mut out = Mat::<f64>::zeros(4, 4);
    assert!(matches!(
        gram_into(x.as_ref(), out.as_mut(), f64::NAN, 0.0, Par::Seq),
        Err(LinalgError::InvalidArgument { name: "alpha", .. })
    ));
    assert!(matches!(
        gram_into(x.as_ref(), out.as_mut(), 1.0, f64::INFINITY, Par::Seq),
        Err(LinalgError::InvalidArgument { name: "beta", .. })
    ));
    let mut xn = x.clone();
    xn[(2, 1)] = f64::NAN;
    assert!(matches!(
        gram_into(xn.as_ref(), out.as_mut(), 1.0, 0.0, Par::Seq),
        Err(LinalgError::NonFinite { row: 2, col: 1, .. })
    ));
    out[(3, 1)] = f64::NAN;
    assert!(matches!(
        gram_into(x.as_ref(), out.as_mut(), 1.0, 1.0, Par::Seq),
        Err(LinalgError::NonFinite { row: 3, col: 1, .. })
    ));
    // f32 overflow: 1e20² is beyond f32::MAX
    let big = Mat::from_fn(2, 2, |_, _| 1e20f32);
    let mut o32 = Mat::<f32>::zeros(2, 2);
    assert!(matches!(
        gram_into(big.as_ref(), o32.as_mut(), 1.0, 0.0, Par::Seq),
        Err(LinalgError::Overflow { .. })
    ));
    // sym_square_into
    let rect = Mat::<f64>::zeros(3, 2);
    let mut o = Mat::<f64>::zeros(3, 3);
    assert!(matches!(
        sym_square_into(rect.as_ref(), o.as_mut(), Par::Seq),
        Err(LinalgError::DimensionMismatch {
            expected: 3,
            got: 2,
            ..
        })
    ));
    let a = identity(3);
    let mut o = Mat::<f64>::zeros(2, 3);
    assert!(matches!(
        sym_square_into(a.as_ref(), o.as_mut(), Par::Seq),
        Err(LinalgError::DimensionMismatch {
            expected: 3,
            got: 2,
            ..
        })
    ));
    let mut ns = identity(3);
    ns[(0, 2)] = 0.5;
    let mut o = Mat::<f64>::zeros(3, 3);
    assert!(matches!(
        sym_square_into(ns.as_ref(), o.as_mut(), Par::Seq),
        Err(LinalgError::NotSymmetric { row: 0, col: 2, .. })
    ));
}

// ---------------------------------------------------------------- inverse roots

fn inv_root(a: MatRef<'_, f64>, eps: f64, root: f64) -> (Mat<f64>, RootInfo) {
    let mut ws = SymEigWorkspace::new(a.nrows()).unwrap();
    let mut out = Mat::zeros(a.nrows(), a.nrows());
    let info = sym_inverse_root_into(a, eps, root, out.as_mut(), &mut ws).unwrap();
    assert_exactly_symmetric(out.as_ref());
    (out, info)
}

#[test]
fn inverse_root_of_diagonal_matrices() {
    let d = [4.0, 0.25, 9.0, 1e-6, 1e6];
    let a = diag(&d);
    for &(eps, root) in &[(0.0, 4.0), (1e-3, 4.0), (0.5, 2.0), (0.0, 1.0), (2.0, 3.0)] {
        let (out, info) = inv_root(a.as_ref(), eps, root);
        for i in 0..5 {
            for j in 0..5 {
                let want = if i == j {
                    (d[i] + eps).powf(-1.0 / root)
                } else {
                    0.0
                };
                assert!(
                    (out[(i, j)] - want).abs() <= 8.0 * EPS * want.abs().max(1e-300),
                    "{i} {j}"
                );
            }
        }
        assert!(rel_err(info.min_eigenvalue, 1e-6) <= 4.0 * EPS);
        assert!(rel_err(info.max_eigenvalue, 1e6) <= 4.0 * EPS);
    }
}

#[test]
fn inverse_root_of_a_known_rotation() {
    // A = Q diag(d) Qᵀ with Q a rotation by θ in the (0, 2) plane of R³
    let (c, s) = (0.6f64, 0.8f64);
    let q = Mat::from_fn(3, 3, |i, j| match (i, j) {
        (0, 0) | (2, 2) => c,
        (0, 2) => -s,
        (2, 0) => s,
        (1, 1) => 1.0,
        _ => 0.0,
    });
    let d = [16.0, 1.0, 81.0];
    let a = &q * diag(&d) * q.transpose();
    let (out, info) = inv_root(a.as_ref(), 0.0, 4.0);
    let want = &q * diag(&[0.5, 1.0, 1.0 / 3.0]) * q.transpose();
    assert!(max_diff(out.as_ref(), want.as_ref()) <= 32.0 * EPS);
    assert!(rel_err(info.min_eigenvalue, 1.0) <= 32.0 * EPS);
    assert!(rel_err(info.max_eigenvalue, 81.0) <= 32.0 * EPS);
    // the eigenbasis: eigenvalues ascending, eigenvectors ±columns of Q in that order
    let mut ws = SymEigWorkspace::new(3).unwrap();
    let mut v = Mat::zeros(3, 3);
    let mut w = [0.0; 3];
    sym_eigh_into(a.as_ref(), v.as_mut(), &mut w, &mut ws).unwrap();
    for (got, want) in w.iter().zip([1.0, 16.0, 81.0]) {
        assert!(rel_err(*got, want) <= 64.0 * EPS);
    }
    for (k, col) in [1usize, 0, 2].into_iter().enumerate() {
        let dot: f64 = (0..3).map(|i| v[(i, k)] * q[(i, col)]).sum();
        assert!((dot.abs() - 1.0).abs() <= 64.0 * EPS);
    }
}

/// `out·out·(A + εI) = I` for `root = 2`, to `c·n·ε·κ(A + εI)`.
fn check_inverse_sqrt(a: MatRef<'_, f64>, eps: f64) {
    let n = a.nrows();
    let (out, _) = inv_root(a, eps, 2.0);
    let shifted = Mat::from_fn(n, n, |i, j| a[(i, j)] + if i == j { eps } else { 0.0 });
    let sp = sym_spectrum(shifted.as_ref()).unwrap();
    let prod = &out * &out * &shifted;
    let tol = 16.0 * n as f64 * EPS * sp.kappa;
    assert!(
        max_diff(prod.as_ref(), identity(n).as_ref()) <= tol,
        "n={n} eps={eps}"
    );
}

#[test]
fn inverse_square_root_identity_on_random_spd() {
    for &(n, shift, seed) in &[(1, 0.5, 1), (6, 0.1, 2), (30, 1e-3, 3), (150, 0.05, 4)] {
        let a = random_spd(n, shift, seed);
        check_inverse_sqrt(a.as_ref(), 0.0);
        check_inverse_sqrt(a.as_ref(), 1e-2);
        // the eigenvalues agree with sym_spectrum's
        let sp = sym_spectrum(a.as_ref()).unwrap();
        let mut ws = SymEigWorkspace::new(n).unwrap();
        let mut v = Mat::zeros(n, n);
        let mut w = vec![0.0; n];
        sym_eigh_into(a.as_ref(), v.as_mut(), &mut w, &mut ws).unwrap();
        let scale = sp.lambda_max.abs();
        for (got, want) in w.iter().zip(&sp.eigenvalues) {
            assert!((got - want).abs() <= 8.0 * n as f64 * EPS * scale);
        }
        assert!(w.windows(2).all(|p| p[0] <= p[1]));
        // orthonormal columns and A V = V Λ
        let vtv = v.transpose() * &v;
        assert!(max_diff(vtv.as_ref(), identity(n).as_ref()) <= 8.0 * n as f64 * EPS);
        let av = &a * &v;
        let vl = Mat::from_fn(n, n, |i, k| v[(i, k)] * w[k]);
        assert!(max_diff(av.as_ref(), vl.as_ref()) <= 8.0 * n as f64 * EPS * scale);
        // the inverse root's info is the same range
        let (_, info) = inv_root(a.as_ref(), 0.0, 4.0);
        // the same eigensolver on the same input: the same bits
        assert_eq!(info.min_eigenvalue.to_bits(), w[0].to_bits());
        assert_eq!(info.max_eigenvalue.to_bits(), w[n - 1].to_bits());
    }
}

/// The blocked reduction's reflectors as faer block reflectors: a block-diagonal matrix (a
/// random block, a diagonal block whose reflectors are all the identity, `τ = 0`, and another
/// random block) of order 700, above the two-thread team's threshold, on one thread and on
/// two: `A V = V Λ` and `VᵀV = I` to `8nε‖A‖`, the diagonal block's eigenvalues exact among
/// them, and the same eigenvalues from both (to the same tolerance).
#[test]
fn eigh_with_identity_reflectors_on_one_and_two_threads() {
    let (b1, b2, b3) = (250, 200, 250);
    let n = b1 + b2 + b3;
    let r1 = random_spd(b1, 0.5, 61);
    let r3 = random_spd(b3, 0.5, 62);
    let diagonal: Vec<f64> = (0..b2).map(|i| 0.25 + i as f64 / 16.0).collect();
    let a = Mat::from_fn(n, n, |i, j| match (i, j) {
        _ if i < b1 && j < b1 => r1[(i, j)],
        _ if i >= b1 + b2 && j >= b1 + b2 => r3[(i - b1 - b2, j - b1 - b2)],
        _ if i == j && i >= b1 && i < b1 + b2 => diagonal[i - b1],
        _ => 0.0,
    });
    let scale = a.norm_l2();
    let tol = 8.0 * n as f64 * EPS * scale;
    let mut all = Vec::new();
    for par in [Par::Seq, Par::rayon(2)] {
        let mut ws = SymEigWorkspace::with_par(n, par).unwrap();
        let mut v = Mat::zeros(n, n);
        let mut w = vec![0.0; n];
        sym_eigh_into(a.as_ref(), v.as_mut(), &mut w, &mut ws).unwrap();
        let vtv = v.transpose() * &v;
        assert!(max_diff(vtv.as_ref(), identity(n).as_ref()) <= 8.0 * n as f64 * EPS);
        let av = &a * &v;
        let vl = Mat::from_fn(n, n, |i, k| v[(i, k)] * w[k]);
        assert!(max_diff(av.as_ref(), vl.as_ref()) <= tol, "{par:?}");
        for d in &diagonal {
            assert!(
                w.iter().any(|x| (x - d).abs() <= tol),
                "{par:?}: eigenvalue {d} missing"
            );
        }
        all.push(w);
    }
    for (x, y) in all[0].iter().zip(&all[1]) {
        assert!((x - y).abs() <= tol);
    }
}

#[test]
fn rank_deficient_factor_with_eps() {
    // A = G Gᵀ of rank 3 in R⁸ (a Shampoo factor from few gradients)
    let n = 8;
    let g = random_mat(n, 3, 31);
    let a = &g * g.transpose();
    let eps = 1e-4;
    check_inverse_sqrt(a.as_ref(), eps);
    // on the null space of Gᵀ the result is ε^(−1/4) exactly (to rounding)
    let (out, info) = inv_root(a.as_ref(), eps, 4.0);
    assert!(info.min_eigenvalue.abs() <= 16.0 * n as f64 * EPS * info.max_eigenvalue);
    let basis = random_orthogonal(n, 5);
    // project a random vector onto null(Gᵀ): z = v − G (GᵀG)⁻¹ Gᵀ v
    let v = basis.col(0).as_mat().to_owned();
    let gtg = g.transpose() * &g;
    let coef = gtg
        .llt(faer::Side::Lower)
        .unwrap()
        .solve(g.transpose() * &v);
    let z = &v - &g * coef;
    let oz = &out * &z;
    let want = z * faer::Scale(eps.powf(-0.25));
    assert!(max_diff(oz.as_ref(), want.as_ref()) <= 1e-8 * eps.powf(-0.25));
    // and eps = 0 is refused on the singular factor unless rounding makes it positive
    let mut ws = SymEigWorkspace::new(n).unwrap();
    let mut o = Mat::zeros(n, n);
    let neg = &a - identity(n) * faer::Scale(1e-3);
    assert!(matches!(
        sym_inverse_root_into(neg.as_ref(), 0.0, 4.0, o.as_mut(), &mut ws),
        Err(LinalgError::NotPositiveDefinite { index: 0, .. })
    ));
}

#[test]
fn scaled_factors_give_scaled_roots() {
    let n = 12;
    let a = random_spd(n, 0.1, 41);
    let eps = 1e-2;
    for &(s, root) in &[
        (600, 4.0),
        (-600, 4.0),
        (-990, 2.0),
        (900, 2.0),
        (-1000, 4.0),
    ] {
        let k = 2f64.powi(s / 2); // 2^s = k·k
        let scale = |x: f64| x * k * k;
        let a_s = Mat::from_fn(n, n, |i, j| {
            // exact: a · 2^s, built in two steps to stay finite
            let v = a[(i, j)] * k;
            v * k
        });
        let eps_s = scale(eps);
        // (2^s (A + εI))^(−1/r) = 2^(−s/r) (A + εI)^(−1/r)
        let (want, _) = inv_root(a.as_ref(), eps, root);
        let (got, info) = inv_root(a_s.as_ref(), eps_s, root);
        let f = 2f64.powf(-f64::from(s) / root);
        let back = Mat::from_fn(n, n, |i, j| got[(i, j)] / f);
        let sp = sym_spectrum(a.as_ref()).unwrap();
        let tol = 64.0 * n as f64 * EPS * sp.kappa * frob(want.as_ref());
        assert!(max_diff(back.as_ref(), want.as_ref()) <= tol, "s={s}");
        assert!(rel_err(info.max_eigenvalue, scale(sp.lambda_max)) <= 64.0 * n as f64 * EPS);
    }
    // subnormal factors (exact in binary): diag(2^-1060 · d)^(-1/2) = 2^530 diag(d^(-1/2))
    let d = [1.0, 4.0, 16.0, 64.0];
    let sub = diag(&d.map(|v| v * 2f64.powi(-530) * 2f64.powi(-530)));
    assert!(sub[(0, 0)] < f64::MIN_POSITIVE);
    let (got, info) = inv_root(sub.as_ref(), 0.0, 2.0);
    for (i, v) in d.iter().enumerate() {
        let want = 2f64.powi(530) / v.sqrt();
        assert!(rel_err(got[(i, i)], want) <= 4.0 * EPS);
    }
    assert!(rel_err(info.min_eigenvalue, sub[(0, 0)]) <= 4.0 * EPS);
    // ε is added after unscaling: a tiny factor with a moderate ε is dominated by ε
    let tiny = Mat::from_fn(n, n, |i, j| a[(i, j)] * 2f64.powi(-700));
    let (got, _) = inv_root(tiny.as_ref(), 1.0, 4.0);
    assert!(max_diff(got.as_ref(), identity(n).as_ref()) <= 8.0 * EPS);
}

#[test]
fn second_call_is_bit_identical() {
    let n = 40;
    let a = random_spd(n, 0.01, 51);
    let b = random_spd(n, 1.0, 52);
    let mut ws = SymEigWorkspace::new(n).unwrap();
    let mut o1 = Mat::zeros(n, n);
    let mut o2 = Mat::zeros(n, n);
    sym_inverse_root_into(a.as_ref(), 1e-6, 4.0, o1.as_mut(), &mut ws).unwrap();
    // a different matrix in between must not leak into the next result
    sym_inverse_root_into(b.as_ref(), 1e-6, 4.0, o2.as_mut(), &mut ws).unwrap();
    sym_inverse_root_into(a.as_ref(), 1e-6, 4.0, o2.as_mut(), &mut ws).unwrap();
    for j in 0..n {
        for i in 0..n {
            assert_eq!(o1[(i, j)].to_bits(), o2[(i, j)].to_bits());
        }
    }
    let mut v1 = Mat::zeros(n, n);
    let mut v2 = Mat::zeros(n, n);
    let (mut w1, mut w2) = (vec![0.0; n], vec![0.0; n]);
    sym_eigh_into(a.as_ref(), v1.as_mut(), &mut w1, &mut ws).unwrap();
    sym_eigh_into(a.as_ref(), v2.as_mut(), &mut w2, &mut ws).unwrap();
    assert!(w1.iter().zip(&w2).all(|(a, b)| a.to_bits() == b.to_bits()));
    for j in 0..n {
        for i in 0..n {
            assert_eq!(v1[(i, j)].to_bits(), v2[(i, j)].to_bits());
        }
    }
}

#[test]
fn inverse_root_errors() {
    let n = 3;
    let a = random_spd(n, 0.5, 61);
    let mut ws = SymEigWorkspace::new(n).unwrap();
    let mut out = Mat::zeros(n, n);
    for root in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            sym_inverse_root_into(a.as_ref(), 0.0, root, out.as_mut(), &mut ws),
            Err(LinalgError::InvalidArgument { name: "root", .. })
        ));
    }
    for eps in [-1e-9, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            sym_inverse_root_into(a.as_ref(), eps, 4.0, out.as_mut(), &mut ws),
            Err(LinalgError::InvalidArgument { name: "eps", .. })
        ));
    }
    let rect = Mat::<f64>::zeros(3, 2);
    assert!(matches!(
        sym_inverse_root_into(rect.as_ref(), 0.0, 4.0, out.as_mut(), &mut ws),
        Err(LinalgError::DimensionMismatch {
            expected: 3,
            got: 2,
            ..
        })
    ));
    let big = identity(4);
    assert!(matches!(
        sym_inverse_root_into(big.as_ref(), 0.0, 4.0, out.as_mut(), &mut ws),
        Err(LinalgError::DimensionMismatch {
            expected: 3,
            got: 4,
            ..
        })
    ));
    let mut small_out = Mat::zeros(2, 3);
    assert!(matches!(
        sym_inverse_root_into(a.as_ref(), 0.0, 4.0, small_out.as_mut(), &mut ws),
        Err(LinalgError::DimensionMismatch {
            expected: 3,
            got: 2,
            ..
        })
    ));
    let mut an = a.clone();
    an[(1, 2)] = f64::INFINITY;
    assert!(matches!(
        sym_inverse_root_into(an.as_ref(), 0.0, 4.0, out.as_mut(), &mut ws),
        Err(LinalgError::NonFinite { row: 1, col: 2, .. })
    ));
    let mut ns = a.clone();
    ns[(0, 1)] += 0.1;
    assert!(matches!(
        sym_inverse_root_into(ns.as_ref(), 0.0, 4.0, out.as_mut(), &mut ws),
        Err(LinalgError::NotSymmetric { row: 0, col: 1, .. })
    ));
    // λ + ε ≤ 0, naming the eigenvalue: diag(-2, 1, 3) + 1·I has λ₀ + ε = −1
    let indef = diag(&[1.0, -2.0, 3.0]);
    match sym_inverse_root_into(indef.as_ref(), 1.0, 4.0, out.as_mut(), &mut ws) {
        Err(LinalgError::NotPositiveDefinite { index, value, .. }) => {
            assert_eq!(index, 0);
            assert!((value + 1.0).abs() <= 4.0 * EPS);
        }
        other => panic!("expected NotPositiveDefinite, got {other:?}"),
    }
    // a result beyond f64::MAX: (2^-1000)^(-4) = 2^4000
    let tiny = Mat::from_fn(n, n, |i, j| if i == j { 2f64.powi(-1000) } else { 0.0 });
    assert!(matches!(
        sym_inverse_root_into(tiny.as_ref(), 0.0, 0.25, out.as_mut(), &mut ws),
        Err(LinalgError::Overflow { .. })
    ));
    // sym_eigh_into's own checks
    let mut v = Mat::zeros(n, n);
    let mut w = vec![0.0; n + 1];
    assert!(matches!(
        sym_eigh_into(a.as_ref(), v.as_mut(), &mut w, &mut ws),
        Err(LinalgError::DimensionMismatch {
            expected: 3,
            got: 4,
            ..
        })
    ));
    let mut v2 = Mat::zeros(n, 2);
    let mut w = vec![0.0; n];
    assert!(matches!(
        sym_eigh_into(a.as_ref(), v2.as_mut(), &mut w, &mut ws),
        Err(LinalgError::DimensionMismatch {
            expected: 3,
            got: 2,
            ..
        })
    ));
    // an eigenvalue beyond f64::MAX
    let huge = Mat::from_fn(n, n, |_, _| f64::MAX);
    assert!(matches!(
        sym_eigh_into(huge.as_ref(), v.as_mut(), &mut w, &mut ws),
        Err(LinalgError::Overflow { .. })
    ));
    assert!(matches!(
        SymEigWorkspace::new(0),
        Err(LinalgError::Empty { .. })
    ));
    assert!(matches!(
        SymEigWorkspace::new(usize::MAX / 2),
        Err(LinalgError::InvalidArgument { name: "n", .. })
    ));
}

// ---------------------------------------------------------------- Kronecker preconditioner

/// `P` of `X ↦ L X R` on `vec(X)` in `order`, formed explicitly.
fn explicit_p(l: MatRef<'_, f64>, r: MatRef<'_, f64>, order: Layout) -> Mat<f64> {
    match order {
        Layout::ColMajor => kron(r, l),
        Layout::RowMajor => kron(l, r),
    }
}

#[test]
fn kron_matches_the_explicit_preconditioner() {
    let (m, n) = (3, 2);
    let l = random_spd(m, 0.3, 71);
    let r = random_spd(n, 0.2, 72);
    let h = random_spd(m * n, 0.01, 73);
    for order in [Layout::RowMajor, Layout::ColMajor] {
        let p = explicit_p(l.as_ref(), r.as_ref(), order);
        let want = precond_cond_dense(h.as_ref(), p.as_ref()).unwrap();
        let got = kron_precond_cond(h.as_ref(), l.as_ref(), r.as_ref(), order).unwrap();
        let tol = 64.0 * (m * n) as f64 * EPS * want.spectral_kappa;
        assert!(
            rel_err(got.spectral_kappa, want.spectral_kappa) <= tol,
            "{order:?}"
        );
        assert!(rel_err(got.row_scaled_kappa2, want.row_scaled_kappa2) <= 1e3 * tol);
        let lmax = want.spectrum.lambda_max;
        for (a, b) in got.eigenvalues.iter().zip(&want.eigenvalues) {
            assert!((a - b).abs() <= tol * lmax);
        }
    }
    // the two orders differ: the row-major formula on column-major data is another P
    let p_row = explicit_p(l.as_ref(), r.as_ref(), Layout::RowMajor);
    let p_col = explicit_p(l.as_ref(), r.as_ref(), Layout::ColMajor);
    let k_row = precond_cond_dense(h.as_ref(), p_row.as_ref())
        .unwrap()
        .spectral_kappa;
    let k_col = precond_cond_dense(h.as_ref(), p_col.as_ref())
        .unwrap()
        .spectral_kappa;
    assert!(rel_err(k_row, k_col) > 1e-6);
}

#[test]
fn kron_identity_factors_give_kappa_of_h() {
    let (m, n) = (4, 3);
    let h = random_spd(m * n, 0.05, 81);
    let kh = sym_spectrum(h.as_ref()).unwrap().kappa;
    for order in [Layout::RowMajor, Layout::ColMajor] {
        let got = kron_precond_cond(
            h.as_ref(),
            identity(m).as_ref(),
            identity(n).as_ref(),
            order,
        )
        .unwrap();
        assert!(rel_err(got.spectral_kappa, kh) <= 64.0 * (m * n) as f64 * EPS * kh);
    }
    // singular H keeps precond_cond_dense's convention: κ infinite, smallest positive reported
    let g = random_mat(m * n, 5, 82);
    let hs = &g * g.transpose();
    let got = kron_precond_cond(
        hs.as_ref(),
        identity(m).as_ref(),
        identity(n).as_ref(),
        Layout::RowMajor,
    )
    .unwrap();
    assert!(got.spectral_kappa.is_infinite());
    assert!(got.spectrum.smallest_positive.is_some());
}

#[test]
fn kron_exact_inverse_gives_kappa_one() {
    let (m, n) = (3, 4);
    // H_L = Q diag(d) Qᵀ and L = Q diag(1/d) Qᵀ from the same Q
    let (dl, dr) = ([0.5, 2.0, 7.0], [1.0, 0.25, 3.0, 10.0]);
    let hl = sym_with_eigs(&dl, 91);
    let hr = sym_with_eigs(&dr, 92);
    let l = sym_with_eigs(&dl.map(|v| 1.0 / v), 91);
    let r = sym_with_eigs(&dr.map(|v| 1.0 / v), 92);
    let kl = sym_spectrum(hl.as_ref()).unwrap().kappa;
    let kr = sym_spectrum(hr.as_ref()).unwrap().kappa;
    for order in [Layout::RowMajor, Layout::ColMajor] {
        // H = P⁻¹ in that order
        let h = match order {
            Layout::ColMajor => kron(hr.as_ref(), hl.as_ref()),
            Layout::RowMajor => kron(hl.as_ref(), hr.as_ref()),
        };
        let got = kron_precond_cond(h.as_ref(), l.as_ref(), r.as_ref(), order).unwrap();
        assert!(
            (got.spectral_kappa - 1.0).abs() <= 64.0 * (m * n) as f64 * EPS * kl * kr,
            "{order:?}: {}",
            got.spectral_kappa
        );
    }
    // scaled operands: the same κ
    let h = kron(hr.as_ref(), hl.as_ref());
    let h_s = Mat::from_fn(m * n, m * n, |i, j| h[(i, j)] * 2f64.powi(-700));
    let l_s = Mat::from_fn(m, m, |i, j| l[(i, j)] * 2f64.powi(333));
    let r_s = Mat::from_fn(n, n, |i, j| r[(i, j)] * 2f64.powi(400));
    let got =
        kron_precond_cond(h_s.as_ref(), l_s.as_ref(), r_s.as_ref(), Layout::ColMajor).unwrap();
    assert!((got.spectral_kappa - 1.0).abs() <= 64.0 * (m * n) as f64 * EPS * kl * kr);
}

#[test]
fn kron_matrix_free_operator_matches_dense() {
    let (m, n) = (5, 4);
    let l = random_spd(m, 0.3, 101);
    let r = random_spd(n, 0.2, 102);
    let h = random_spd(m * n, 0.05, 103);
    for order in [Layout::RowMajor, Layout::ColMajor] {
        let dense = kron_precond_cond(h.as_ref(), l.as_ref(), r.as_ref(), order).unwrap();
        let op = DenseOperator::new(h.as_ref()).unwrap();
        let kp = KronPreconditioned::new(&op, l.as_ref(), r.as_ref(), order).unwrap();
        assert_eq!(kp.dim(), m * n);
        // L^{1/2} squares to L
        let l2 = kp.l_sqrt() * kp.l_sqrt();
        assert!(max_diff(l2.as_ref(), l.as_ref()) <= 64.0 * EPS * frob(l.as_ref()));
        // applied to the unit vectors it reproduces S H S = P^{1/2} H P^{1/2}
        let p = explicit_p(l.as_ref(), r.as_ref(), order);
        let s = {
            let mut ws = SymEigWorkspace::new(m * n).unwrap();
            let mut w = vec![0.0; m * n];
            let mut v = Mat::zeros(m * n, m * n);
            sym_eigh_into(p.as_ref(), v.as_mut(), &mut w, &mut ws).unwrap();
            let vs = Mat::from_fn(m * n, m * n, |i, k| v[(i, k)] * w[k].sqrt());
            &vs * v.transpose()
        };
        let shs = &s * &h * &s;
        let mut y = vec![0.0; m * n];
        for c in 0..m * n {
            let mut e = vec![0.0; m * n];
            e[c] = 1.0;
            kp.apply(&e, &mut y);
            for (i, yi) in y.iter().enumerate() {
                assert!((yi - shs[(i, c)]).abs() <= 1e-12 * frob(shs.as_ref()));
            }
        }
        let lz = lanczos_extremes(&kp, LanczosOptions::default()).unwrap();
        let (lo, hi) = (dense.spectrum.lambda_min, dense.spectrum.lambda_max);
        assert!(rel_err(lz.lambda_min, lo) <= 1e-8);
        assert!(rel_err(lz.lambda_max, hi) <= 1e-8);
    }
}

#[test]
fn kron_errors() {
    let (m, n) = (3, 2);
    let l = random_spd(m, 0.3, 111);
    let r = random_spd(n, 0.2, 112);
    let h = random_spd(m * n + 1, 0.1, 113);
    assert!(matches!(
        kron_precond_cond(h.as_ref(), l.as_ref(), r.as_ref(), Layout::RowMajor),
        Err(LinalgError::DimensionMismatch {
            expected: 6,
            got: 7,
            ..
        })
    ));
    let h = random_spd(m * n, 0.1, 114);
    let not_pd = diag(&[1.0, -1.0]);
    assert!(matches!(
        kron_precond_cond(h.as_ref(), l.as_ref(), not_pd.as_ref(), Layout::RowMajor),
        Err(LinalgError::NotPositiveDefinite {
            what: "Kronecker factor R",
            index: 0,
            ..
        })
    ));
    let mut ln = l.clone();
    ln[(0, 0)] = f64::NAN;
    assert!(matches!(
        kron_precond_cond(h.as_ref(), ln.as_ref(), r.as_ref(), Layout::ColMajor),
        Err(LinalgError::NonFinite { .. })
    ));
    let rect = Mat::<f64>::zeros(2, 3);
    assert!(matches!(
        kron_precond_cond(h.as_ref(), l.as_ref(), rect.as_ref(), Layout::ColMajor),
        Err(LinalgError::DimensionMismatch { .. })
    ));
    let op = DenseOperator::new(h.as_ref()).unwrap();
    assert!(matches!(
        KronPreconditioned::new(&op, l.as_ref(), identity(3).as_ref(), Layout::RowMajor),
        Err(LinalgError::DimensionMismatch {
            expected: 9,
            got: 6,
            ..
        })
    ));
}

#[test]
fn gram_pair_and_transpose_match_plain_products() {
    // sizes across the recursive split (256 rows) and odd halves, sequential and parallel
    for &(m, k, seed) in &[
        (1, 1, 11),
        (7, 3, 12),
        (40, 70, 13),
        (300, 41, 14),
        (517, 260, 15),
        (700, 301, 16),
        (290, 1100, 17),
    ] {
        let x = random_mat(m, k, seed);
        let mut xt = Mat::<f64>::zeros(k, m);
        for par in [Par::rayon(3), Par::rayon(2), Par::Seq] {
            xt.fill(f64::NAN);
            transpose_into(x.as_ref(), xt.as_mut(), par).unwrap();
            assert!(
                (0..m).all(|i| (0..k).all(|j| xt[(j, i)].to_bits() == x[(i, j)].to_bits())),
                "transpose m={m} k={k} {par:?}"
            );
        }
        let want = &x * x.transpose();
        let tol = 4.0 * (k as f64 + 2.0) * EPS * frob(x.as_ref()).powi(2);
        for par in [Par::Seq, Par::rayon(2)] {
            let mut out = Mat::from_fn(m, m, |_, _| f64::NAN);
            gram_pair_into(x.as_ref(), xt.as_ref(), out.as_mut(), par).unwrap();
            assert!(max_diff(out.as_ref(), want.as_ref()) <= tol, "m={m} k={k}");
            assert_exactly_symmetric(out.as_ref());
        }
        // A² of a symmetric A from the pair (A, A)
        let scale = 1.0 + frob(want.as_ref());
        let a = Mat::from_fn(m, m, |i, j| want[(i, j)] / scale);
        let a = Mat::from_fn(m, m, |i, j| if i >= j { a[(i, j)] } else { a[(j, i)] });
        let mut sq = Mat::<f64>::zeros(m, m);
        gram_pair_into(a.as_ref(), a.as_ref(), sq.as_mut(), Par::rayon(2)).unwrap();
        let want_sq = &a * &a;
        let tol = 4.0 * (m as f64 + 2.0) * EPS * frob(a.as_ref()).powi(2);
        assert!(max_diff(sq.as_ref(), want_sq.as_ref()) <= tol, "A² m={m}");
        assert_exactly_symmetric(sq.as_ref());
    }
    // f32
    let x = Mat::<f32>::from_fn(300, 20, |i, j| ((i * 7 + j * 3) % 11) as f32 / 11.0 - 0.5);
    let mut xt = Mat::<f32>::zeros(20, 300);
    transpose_into(x.as_ref(), xt.as_mut(), Par::Seq).unwrap();
    let mut out = Mat::<f32>::zeros(300, 300);
    gram_pair_into(x.as_ref(), xt.as_ref(), out.as_mut(), Par::Seq).unwrap();
    let want = &x * x.transpose();
    let d = (0..300)
        .flat_map(|i| (0..300).map(move |j| (i, j)))
        .map(|(i, j)| (out[(i, j)] - want[(i, j)]).abs())
        .fold(0.0f32, f32::max);
    assert!(d <= 1e-5, "{d}");
    assert_exactly_symmetric(out.as_ref());
}

#[test]
fn split_products_match_the_sequential_product() {
    // each output entry is one kernel's dot product over the whole inner dimension, so the
    // split product differs from faer's sequential one only by the rounding of one such
    // product (faer's edge tiles may round the `Add` epilogue differently): both are held to
    // the classical bound |ĉ − c| ≤ γ_{k+2} (|α| |A||B| + |C₀|) against an exact-order
    // reference, and the Replace products on one piece are bitwise those of faer
    for &(m, k, n, seed) in &[
        (1, 5, 1, 31),
        (9, 4, 300, 32),
        (300, 17, 9, 33),
        (257, 130, 515, 34),
        (600, 64, 200, 35),
        (64, 1500, 300, 36),
        (400, 700, 40, 37),
    ] {
        let a = random_mat(m, k, seed);
        let b = random_mat(k, n, seed + 100);
        let c0 = random_mat(m, n, seed + 200);
        let alpha = 0.75;
        let abs_ab = Mat::from_fn(m, n, |i, j| {
            (0..k).map(|l| (a[(i, l)] * b[(l, j)]).abs()).sum::<f64>()
        });
        let exact_ab = Mat::from_fn(m, n, |i, j| {
            (0..k).map(|l| a[(i, l)] * b[(l, j)]).sum::<f64>()
        });
        let gamma = (k as f64 + 2.0) * EPS / (1.0 - (k as f64 + 2.0) * EPS);
        for accum in [Accum::Replace, Accum::Add] {
            let base = |i: usize, j: usize| if accum == Accum::Add { c0[(i, j)] } else { 0.0 };
            let mut seq = c0.clone();
            matmul(seq.as_mut(), accum, a.as_ref(), b.as_ref(), alpha, Par::Seq);
            for par in [Par::Seq, Par::rayon(2), Par::rayon(3), Par::rayon(4)] {
                let mut got = c0.clone();
                product_into(got.as_mut(), accum, a.as_ref(), b.as_ref(), alpha, par);
                for i in 0..m {
                    for j in 0..n {
                        let want = base(i, j) + alpha * exact_ab[(i, j)];
                        let bound = 2.0 * gamma * (alpha * abs_ab[(i, j)] + base(i, j).abs());
                        assert!(
                            (got[(i, j)] - want).abs() <= bound,
                            "m={m} k={k} n={n} {accum:?} {par:?} ({i}, {j}): {} vs {want}",
                            got[(i, j)]
                        );
                    }
                }
                if par == Par::Seq {
                    assert!((0..m).all(|i| (0..n).all(|j| got[(i, j)].to_bits() == seq[(i, j)].to_bits())));
                }
            }
        }
    }
    let a = Mat::<f32>::from_fn(70, 40, |i, j| ((i * 7 + j * 3) % 11) as f32 / 11.0 - 0.5);
    let b = Mat::<f32>::from_fn(40, 90, |i, j| ((i * 5 + j) % 13) as f32 / 13.0 - 0.5);
    let mut got = Mat::<f32>::zeros(70, 90);
    product_into(
        got.as_mut(),
        Accum::Replace,
        a.as_ref(),
        b.as_ref(),
        1.0,
        Par::rayon(2),
    );
    for i in 0..70 {
        for j in 0..90 {
            let (mut exact, mut abs) = (0.0f64, 0.0f64);
            for l in 0..40 {
                let t = f64::from(a[(i, l)]) * f64::from(b[(l, j)]);
                exact += t;
                abs += t.abs();
            }
            let bound = 2.0 * 42.0 * f64::from(f32::EPSILON) * abs;
            assert!(
                (f64::from(got[(i, j)]) - exact).abs() <= bound,
                "f32 ({i}, {j})"
            );
        }
    }
}

#[test]
fn gram_pair_and_transpose_refuse_bad_shapes_and_overflow() {
    let x = random_mat(4, 3, 21);
    let bad_t = Mat::<f64>::zeros(4, 3);
    let mut out = Mat::<f64>::zeros(4, 4);
    assert!(matches!(
        gram_pair_into(x.as_ref(), bad_t.as_ref(), out.as_mut(), Par::Seq),
        Err(LinalgError::DimensionMismatch { .. })
    ));
    let xt = x.transpose().to_owned();
    let mut small = Mat::<f64>::zeros(3, 3);
    assert!(matches!(
        gram_pair_into(x.as_ref(), xt.as_ref(), small.as_mut(), Par::Seq),
        Err(LinalgError::DimensionMismatch { .. })
    ));
    let huge = Mat::from_fn(2, 2, |_, _| 1e200);
    let mut o = Mat::<f64>::zeros(2, 2);
    assert!(matches!(
        gram_pair_into(huge.as_ref(), huge.as_ref(), o.as_mut(), Par::Seq),
        Err(LinalgError::Overflow { .. })
    ));
    let mut wrong = Mat::<f64>::zeros(4, 3);
    assert!(matches!(
        transpose_into(x.as_ref(), wrong.as_mut(), Par::Seq),
        Err(LinalgError::DimensionMismatch { .. })
    ));
    // a row-major view is refused
    let mut t = Mat::<f64>::zeros(3, 4);
    assert!(matches!(
        transpose_into(x.transpose(), t.transpose_mut(), Par::Seq),
        Err(LinalgError::InvalidArgument { .. })
    ));
}
