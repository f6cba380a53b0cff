//! Every error path: NaN/∞ with position, empty and mismatched dimensions, non-symmetric and
//! non-SPD input, invalid scalar arguments. Nothing panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use faer::Mat;
use precond_linalg::*;

fn with_nan(m: usize, n: usize, i: usize, j: usize, v: f64) -> Mat<f64> {
    let mut a = random_spd(m.max(n), 0.5, 1);
    a = Mat::from_fn(m, n, |r, c| a[(r, c)]);
    a[(i, j)] = v;
    a
}

fn assert_nonfinite<T: std::fmt::Debug>(r: Result<T>, row: usize, col: usize) {
    match r {
        Err(LinalgError::NonFinite {
            row: r0, col: c0, ..
        }) => assert_eq!((r0, c0), (row, col)),
        other => panic!("expected NonFinite at ({row},{col}), got {other:?}"),
    }
}

fn assert_empty<T: std::fmt::Debug>(r: Result<T>) {
    assert!(
        matches!(r, Err(LinalgError::Empty { .. })),
        "expected Empty, got {r:?}"
    );
}

#[test]
fn mat_from_slice_errors() {
    assert!(matches!(
        mat_from_slice(&[1.0; 5], 2, 3, Layout::RowMajor),
        Err(LinalgError::DimensionMismatch {
            expected: 6,
            got: 5,
            ..
        })
    ));
    assert_empty(mat_from_slice(&[], 0, 3, Layout::ColMajor));
    assert_empty(mat_from_slice(&[], 3, 0, Layout::RowMajor));
    assert!(matches!(
        mat_from_slice(&[1.0], usize::MAX, 2, Layout::RowMajor),
        Err(LinalgError::DimensionMismatch { .. })
    ));
    let mut d = vec![1.0; 6];
    d[5] = f64::NAN; // row-major 2x3: (1, 2); column-major 2x3: (1, 2) too
    d[3] = f64::INFINITY; // row-major: (1, 0); column-major: (1, 1)
    assert_nonfinite(mat_from_slice(&d, 2, 3, Layout::RowMajor), 1, 0);
    assert_nonfinite(mat_from_slice(&d, 2, 3, Layout::ColMajor), 1, 1);
    let a = with_nan(3, 3, 2, 1, f64::NEG_INFINITY);
    match check_finite(a.as_ref(), "A") {
        Err(LinalgError::NonFinite {
            what,
            row,
            col,
            value,
        }) => {
            assert_eq!((what, row, col), ("A", 2, 1));
            assert!(value.is_infinite() && value < 0.0);
        }
        other => panic!("{other:?}"),
    }
    // the error message names the position
    let msg = check_finite(a.as_ref(), "A").unwrap_err().to_string();
    assert!(msg.contains("row 2") && msg.contains("column 1"), "{msg}");
}

#[test]
fn non_finite_entries_are_reported_with_position_everywhere() {
    let a = with_nan(4, 4, 3, 2, f64::NAN);
    assert_nonfinite(cond2(a.as_ref()), 3, 2);
    assert_nonfinite(singular_values(a.as_ref()), 3, 2);
    assert_nonfinite(cond1(a.as_ref()), 3, 2);
    assert_nonfinite(cond_estimate_lu(a.as_ref()), 3, 2);
    assert_nonfinite(cond_estimate_spd(a.as_ref()), 3, 2);
    assert_nonfinite(sym_spectrum(a.as_ref()), 3, 2);
    assert_nonfinite(sym_extremes(a.as_ref()), 3, 2);
    assert_nonfinite(sym_cond(a.as_ref()), 3, 2);
    assert_nonfinite(row_equilibrate(a.as_ref()), 3, 2);
    assert_nonfinite(col_equilibrate(a.as_ref()), 3, 2);
    assert_nonfinite(sym_equilibrate(a.as_ref()), 3, 2);
    assert_nonfinite(scaling_spread(a.as_ref(), &[1.0; 4]), 3, 2);
    assert_nonfinite(van_der_sluis_bound(a.as_ref()), 3, 2);
    assert_nonfinite(precond_cond_diag(a.as_ref(), &[1.0; 4]), 3, 2);
    let h = random_spd(4, 0.5, 2);
    assert_nonfinite(precond_cond_dense(h.as_ref(), a.as_ref()), 3, 2);
    assert_nonfinite(precond_cond_factor(h.as_ref(), a.as_ref()), 3, 2);
    assert_nonfinite(
        precond_cond_diag(h.as_ref(), &[1.0, 1.0, f64::NAN, 1.0]),
        2,
        0,
    );
    assert_nonfinite(
        scaling_spread(h.as_ref(), &[1.0, f64::INFINITY, 1.0, 1.0]),
        1,
        0,
    );
    assert!(matches!(
        DenseOperator::new(a.as_ref()),
        Err(LinalgError::NonFinite { row: 3, col: 2, .. })
    ));
    assert_nonfinite(observed_rate(&[1.0, 0.5, f64::NAN, 0.1], Tail::All), 2, 0);
}

#[test]
fn empty_inputs() {
    let e = Mat::<f64>::zeros(0, 3);
    let z = Mat::<f64>::zeros(0, 0);
    assert_empty(cond2(e.as_ref()));
    assert_empty(cond1(z.as_ref()));
    assert_empty(cond_estimate_lu(z.as_ref()));
    assert_empty(cond_estimate_spd(z.as_ref()));
    assert_empty(sym_spectrum(z.as_ref()));
    assert_empty(sym_cond(z.as_ref()));
    assert_empty(row_equilibrate(e.as_ref()));
    assert_empty(col_equilibrate(e.as_ref()));
    assert_empty(sym_equilibrate(z.as_ref()));
    assert_empty(van_der_sluis_bound(e.as_ref()));
    assert_empty(precond_cond_diag(z.as_ref(), &[]));
    assert_empty(DenseOperator::new(z.as_ref()));
    assert_empty(observed_rate(&[], Tail::All));
    assert_empty(lanczos_extremes(&z, LanczosOptions::default()));
    assert_empty(power_iteration(&z, PowerOptions::default()));
    assert_empty(hutchinson_trace(&z, 10, 0));
    assert!(row_norms(e.as_ref()).is_empty());
}

#[test]
fn dimension_mismatches() {
    let r = random_mat(3, 4, 1);
    let sq = |res: Result<()>| {
        assert!(
            matches!(
                res,
                Err(LinalgError::DimensionMismatch {
                    expected: 3,
                    got: 4,
                    ..
                })
            ),
            "{res:?}"
        )
    };
    sq(cond1(r.as_ref()).map(|_| ()));
    sq(cond_estimate_lu(r.as_ref()).map(|_| ()));
    sq(cond_estimate_spd(r.as_ref()).map(|_| ()));
    sq(sym_spectrum(r.as_ref()).map(|_| ()));
    sq(sym_cond(r.as_ref()).map(|_| ()));
    sq(sym_equilibrate(r.as_ref()).map(|_| ()));
    sq(DenseOperator::new(r.as_ref()).map(|_| ()));
    // wide matrix: cannot have full column rank
    assert!(matches!(
        van_der_sluis_bound(r.as_ref()),
        Err(LinalgError::DimensionMismatch {
            expected: 4,
            got: 3,
            ..
        })
    ));
    let h = random_spd(5, 0.5, 3);
    assert!(matches!(
        precond_cond_diag(h.as_ref(), &[1.0; 4]),
        Err(LinalgError::DimensionMismatch {
            expected: 5,
            got: 4,
            ..
        })
    ));
    let p4 = random_spd(4, 0.5, 4);
    assert!(matches!(
        precond_cond_dense(h.as_ref(), p4.as_ref()),
        Err(LinalgError::DimensionMismatch {
            expected: 5,
            got: 4,
            ..
        })
    ));
    assert!(matches!(
        precond_cond_factor(h.as_ref(), p4.as_ref()),
        Err(LinalgError::DimensionMismatch {
            expected: 5,
            got: 4,
            ..
        })
    ));
    assert!(matches!(
        scaling_spread(h.as_ref(), &[1.0; 6]),
        Err(LinalgError::DimensionMismatch {
            expected: 5,
            got: 6,
            ..
        })
    ));
}

#[test]
fn non_symmetric_and_non_spd_input() {
    let mut a = random_spd(5, 0.5, 5);
    a[(3, 1)] += 1e-3;
    for r in [
        sym_spectrum(a.as_ref()).map(|_| ()),
        sym_cond(a.as_ref()).map(|_| ()),
        cond_estimate_spd(a.as_ref()).map(|_| ()),
        sym_equilibrate(a.as_ref()).map(|_| ()),
        precond_cond_diag(a.as_ref(), &[1.0; 5]).map(|_| ()),
    ] {
        assert!(
            matches!(r, Err(LinalgError::NotSymmetric { row: 1, col: 3, .. })),
            "{r:?}"
        );
    }
    // tiny asymmetry (finite-difference Hessian) is accepted and symmetrized
    let mut b = random_spd(5, 0.5, 5);
    b[(3, 1)] += 1e-12;
    assert!(sym_spectrum(b.as_ref()).is_ok());

    let indef = sym_with_eigs(&[-1.0, 2.0, 3.0], 6);
    assert!(matches!(
        cond_estimate_spd(indef.as_ref()),
        Err(LinalgError::NotPositiveDefinite { .. })
    ));
    match sym_cond(indef.as_ref()) {
        Err(LinalgError::NotPositiveDefinite {
            index: 0, value, ..
        }) => assert!((value + 1.0).abs() < 1e-12),
        other => panic!("{other:?}"),
    }
    let h = random_spd(3, 0.5, 7);
    assert!(matches!(
        precond_cond_dense(h.as_ref(), indef.as_ref()),
        Err(LinalgError::NotPositiveDefinite { .. })
    ));
    let mut d = random_spd(4, 0.5, 8);
    d[(2, 2)] = -0.25;
    match sym_equilibrate(d.as_ref()) {
        Err(LinalgError::NotPositiveDefinite {
            index: 2, value, ..
        }) => assert!((value + 0.25).abs() < 1e-15),
        other => panic!("{other:?}"),
    }
    // the failing Cholesky pivot is reported 0-based
    let dg = Mat::from_fn(4, 4, |i, j| {
        if i == j {
            [1.0, 2.0, -1.0, 3.0][i]
        } else {
            0.0
        }
    });
    assert!(matches!(
        cond_estimate_spd(dg.as_ref()),
        Err(LinalgError::NotPositiveDefinite { index: 2, .. })
    ));
    assert!(matches!(
        precond_cond_dense(
            h.as_ref().submatrix(0, 0, 3, 3),
            dg.as_ref().submatrix(0, 0, 3, 3)
        ),
        Err(LinalgError::NotPositiveDefinite { index: 2, .. })
    ));
    // a singular PSD matrix is not SPD for sym_cond either
    let psd = sym_with_eigs(&[0.0, 1.0, 2.0], 9);
    assert!(matches!(
        sym_cond(psd.as_ref()),
        Err(LinalgError::NotPositiveDefinite { .. })
    ));
}

#[test]
fn zero_rows_non_positive_scalings_and_rank_deficiency() {
    let mut a = random_mat(4, 3, 10);
    for j in 0..3 {
        a[(2, j)] = 0.0;
    }
    assert!(matches!(
        row_equilibrate(a.as_ref()),
        Err(LinalgError::ZeroNorm { index: 2, .. })
    ));
    assert!(matches!(
        scaling_spread(a.as_ref(), &[1.0; 4]),
        Err(LinalgError::ZeroNorm { index: 2, .. })
    ));
    assert!(matches!(
        van_der_sluis_bound(a.as_ref()),
        Err(LinalgError::ZeroNorm { index: 2, .. })
    ));
    let mut c = random_mat(4, 3, 11);
    for i in 0..4 {
        c[(i, 1)] = 0.0;
    }
    assert!(matches!(
        col_equilibrate(c.as_ref()),
        Err(LinalgError::ZeroNorm { index: 1, .. })
    ));
    // rank-deficient: two equal columns
    let mut r = random_mat(5, 3, 12);
    for i in 0..5 {
        r[(i, 2)] = r[(i, 0)];
    }
    assert!(matches!(
        van_der_sluis_bound(r.as_ref()),
        Err(LinalgError::RankDeficient { .. })
    ));
    let b = random_mat(4, 3, 13);
    assert!(matches!(
        scaling_spread(b.as_ref(), &[1.0, 0.0, 1.0, 1.0]),
        Err(LinalgError::InvalidArgument { .. })
    ));
    let h = random_spd(3, 0.5, 14);
    assert!(matches!(
        precond_cond_diag(h.as_ref(), &[1.0, -2.0, 1.0]),
        Err(LinalgError::InvalidArgument { .. })
    ));
}

#[test]
fn invalid_scalar_arguments() {
    let h = random_spd(6, 0.5, 15);
    let bad = |r: Result<()>, name: &str| match r {
        Err(LinalgError::InvalidArgument { name: n, .. }) => assert_eq!(n, name),
        other => panic!("expected InvalidArgument({name}), got {other:?}"),
    };
    bad(
        sym_spectrum_with_tol(h.as_ref(), -1.0).map(|_| ()),
        "rel_tol",
    );
    bad(
        sym_spectrum_with_tol(h.as_ref(), f64::NAN).map(|_| ()),
        "rel_tol",
    );
    bad(
        lanczos_extremes(
            &h,
            LanczosOptions {
                max_iter: 0,
                ..Default::default()
            },
        )
        .map(|_| ()),
        "max_iter",
    );
    bad(
        lanczos_extremes(
            &h,
            LanczosOptions {
                rel_tol: 0.0,
                ..Default::default()
            },
        )
        .map(|_| ()),
        "rel_tol",
    );
    bad(
        power_iteration(
            &h,
            PowerOptions {
                max_iter: 0,
                ..Default::default()
            },
        )
        .map(|_| ()),
        "max_iter",
    );
    bad(
        power_iteration(
            &h,
            PowerOptions {
                rel_tol: f64::INFINITY,
                ..Default::default()
            },
        )
        .map(|_| ()),
        "rel_tol",
    );
    bad(hutchinson_trace(&h, 1, 0).map(|_| ()), "n_samples");
    bad(
        observed_rate(&[1.0, -0.5, 0.25], Tail::All).map(|_| ()),
        "errors",
    );
    bad(observed_rate(&[1.0, 0.5, 0.25], 1usize).map(|_| ()), "tail");
    bad(observed_rate(&[1.0, 0.5, 0.25], 0.0).map(|_| ()), "tail");
    bad(observed_rate(&[1.0, 0.5, 0.25], 1.5).map(|_| ()), "tail");
    bad(
        observed_rate(&[1.0, 0.0, 0.0], Tail::All).map(|_| ()),
        "errors",
    );
}

/// An operator that returns NaN after a few applications.
struct Faulty(std::cell::Cell<usize>);

impl LinearOperator for Faulty {
    fn dim(&self) -> usize {
        4
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let k = self.0.get();
        self.0.set(k + 1);
        y.copy_from_slice(x);
        y[0] += x[1];
        y[1] += x[0];
        if k == 2 {
            y[3] = f64::NAN;
        }
    }
}

#[test]
fn operator_returning_nan_is_reported() {
    let r = lanczos_extremes(&Faulty(0.into()), LanczosOptions::default());
    assert!(
        matches!(r, Err(LinalgError::NonFinite { row: 3, col: 2, .. })),
        "{r:?}"
    );
    let r = power_iteration(&Faulty(0.into()), PowerOptions::default());
    assert!(
        matches!(r, Err(LinalgError::NonFinite { row: 3, col: 2, .. })),
        "{r:?}"
    );
    let r = hutchinson_trace(&Faulty(0.into()), 5, 0);
    assert!(
        matches!(r, Err(LinalgError::NonFinite { row: 3, col: 2, .. })),
        "{r:?}"
    );
}
