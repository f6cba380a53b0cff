//! `kernel::tridiagonal_eigh` (divide and conquer, LAPACK's `DSTEDC`) against closed forms: the
//! second-difference matrix `tridiag(−1, 2, −1)` has `λ_k = 2 − 2cos(kπ/(n+1))` and
//! `v_k(j) = √(2/(n+1)) sin(jkπ/(n+1))`; a matrix with every coupling zero is already diagonal.
//! The same bits on one thread and on two; typed errors for bad input.

use faer::Par;
use precond_linalg::LinalgError;
use precond_linalg::kernel::tridiagonal_eigh;

#[test]
fn second_difference_matrix_values_and_vectors() {
    for n in [1usize, 2, 33, 200, 517] {
        let d = vec![2.0; n];
        let e = vec![-1.0; n - 1];
        let (lam, q) = tridiagonal_eigh(&d, &e, Par::rayon(2)).expect("solves");
        let h = std::f64::consts::PI / (n + 1) as f64;
        let tol = 16.0 * n as f64 * f64::EPSILON;
        let scale = (2.0 / (n + 1) as f64).sqrt();
        for k in 0..n {
            let exact = 2.0 - 2.0 * ((k + 1) as f64 * h).cos();
            assert!(
                (lam[k] - exact).abs() <= 4.0 * tol,
                "n={n} λ_{k}: {} vs {exact}",
                lam[k]
            );
            // the vectors up to sign: a vector's error is O(nε‖T‖ / gap) with the gap to the
            // nearest other eigenvalue (‖T‖ ≤ 4)
            let lam_exact = |k: usize| 2.0 - 2.0 * ((k + 1) as f64 * h).cos();
            let gap = [k.checked_sub(1), (k + 1 < n).then_some(k + 1)]
                .into_iter()
                .flatten()
                .map(|m| (lam_exact(m) - lam_exact(k)).abs())
                .fold(f64::INFINITY, f64::min);
            let vtol = tol * 4.0 / gap.min(4.0);
            let sign = if q[(0, k)] < 0.0 { -1.0 } else { 1.0 };
            for j in 0..n {
                let exact = scale * ((j + 1) as f64 * (k + 1) as f64 * h).sin();
                let got = sign * q[(j, k)];
                assert!(
                    (got - exact).abs() <= vtol,
                    "n={n} v_{k}({j}): {got} vs {exact}"
                );
            }
        }
    }
}

#[test]
fn two_threads_give_the_bits_of_one() {
    let n = 700;
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let d: Vec<f64> = (0..n).map(|_| rnd()).collect();
    let e: Vec<f64> = (0..n - 1).map(|_| rnd()).collect();
    let (l1, q1) = tridiagonal_eigh(&d, &e, Par::Seq).expect("one thread");
    let (l2, q2) = tridiagonal_eigh(&d, &e, Par::rayon(2)).expect("two threads");
    assert!(l1.iter().zip(&l2).all(|(a, b)| a.to_bits() == b.to_bits()));
    for j in 0..n {
        for i in 0..n {
            assert_eq!(q1[(i, j)].to_bits(), q2[(i, j)].to_bits(), "({i}, {j})");
        }
    }
}

#[test]
fn zero_couplings_leave_the_diagonal() {
    let d = [3.0, -1.0, 2.0, 2.0, 0.5];
    let (lam, q) = tridiagonal_eigh(&d, &[0.0; 4], Par::Seq).expect("solves");
    // exact: nothing to compute, every value and vector bit for bit
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&lam), bits(&[-1.0, 0.5, 2.0, 2.0, 3.0]));
    for k in 0..5 {
        let nonzero: Vec<usize> = (0..5).filter(|&i| q[(i, k)].to_bits() != 0).collect();
        assert_eq!(nonzero.len(), 1, "column {k} is a unit vector");
        assert_eq!(q[(nonzero[0], k)].abs().to_bits(), 1f64.to_bits());
        assert_eq!(d[nonzero[0]].to_bits(), lam[k].to_bits());
    }
}

#[test]
fn bad_input_is_refused_by_name() {
    assert!(matches!(
        tridiagonal_eigh(&[], &[], Par::Seq),
        Err(LinalgError::Empty { .. })
    ));
    assert!(matches!(
        tridiagonal_eigh(&[1.0, 2.0], &[1.0, 1.0], Par::Seq),
        Err(LinalgError::DimensionMismatch {
            expected: 1,
            got: 2,
            ..
        })
    ));
    assert!(matches!(
        tridiagonal_eigh(&[1.0, 2.0, 3.0], &[1.0, f64::NAN], Par::Seq),
        Err(LinalgError::NonFinite { row: 1, col: 1, .. })
    ));
}
