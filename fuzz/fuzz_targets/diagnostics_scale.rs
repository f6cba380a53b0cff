//! Bytes → a small matrix `A` (at most 6 × 6, finite entries) and an exponent `k`
//! (`|k| ≤ 1100`); `precond_linalg::cond2` on `A` and on `2ᵏA`, `sym_spectrum` on the
//! symmetric part `S` of `A`'s leading square block and on `2ᵏS`. When the scaling is exact
//! (no entry lost bits or overflowed), the answers must agree: `κ(2ᵏA) = κ(A)` and
//! `λ(2ᵏS) = 2ᵏλ(S)` within `C·n·ε·κ` (relative), or one side is refused with a typed
//! `Overflow` (entries near `f64::MAX`). Always: no panic, and no non-finite number in an
//! `Ok` answer (except `κ = ∞` for a rank-deficient or not positive definite matrix).

#![no_main]

use faer::MatRef;
use libfuzzer_sys::fuzz_target;
use precond_fuzz::decode_matrix;
use precond_linalg::{Cond2, LinalgError, SymSpectrum, cond2, sym_spectrum};

/// `x · 2ᵏ`, in steps that are exact unless the result is subnormal or overflows.
fn ldexp(mut x: f64, mut k: i32) -> f64 {
    while k > 0 {
        let s = k.min(1000);
        x *= f64::from_bits(((1023 + s) as u64) << 52);
        k -= s;
    }
    while k < 0 {
        let s = (-k).min(1000);
        x *= f64::from_bits(((1023 - s) as u64) << 52);
        k += s;
    }
    x
}

/// `2ᵏa` when exact (every entry zero or normal on both sides and scaling back gives `a`).
fn scaled_exact(a: &[f64], k: i32) -> (Vec<f64>, bool) {
    let b: Vec<f64> = a.iter().map(|&v| ldexp(v, k)).collect();
    let exact = a.iter().zip(&b).all(|(&x, &y)| {
        (x == 0.0 && y == 0.0) || (x.is_normal() && y.is_normal() && ldexp(y, -k) == x)
    });
    (b, exact)
}

const C: f64 = 256.0;

fn check_cond(r: &Result<Cond2, LinalgError>) {
    if let Ok(c) = r {
        assert!(
            c.sigma_max.is_finite() && c.sigma_min.is_finite(),
            "non-finite σ with Ok: {c:?}"
        );
        assert!(
            c.sigma_min >= 0.0 && c.sigma_max >= c.sigma_min,
            "σ order: {c:?}"
        );
        assert!(!c.kappa.is_nan(), "κ NaN: {c:?}");
        assert!(
            c.kappa.is_finite() || c.rank_deficient,
            "κ = ∞ without rank deficiency: {c:?}"
        );
    }
}

fn check_spec(r: &Result<SymSpectrum, LinalgError>) {
    if let Ok(s) = r {
        assert!(
            s.eigenvalues.iter().all(|v| v.is_finite()),
            "non-finite λ with Ok: {s:?}"
        );
        assert!(
            s.eigenvalues.windows(2).all(|w| w[0] <= w[1]),
            "λ not ascending: {s:?}"
        );
        assert!(
            !s.kappa.is_nan() && !s.kappa_positive.is_nan(),
            "κ NaN: {s:?}"
        );
        assert!(
            s.kappa.is_finite() || !s.positive_definite,
            "κ = ∞ for PD: {s:?}"
        );
    }
}

/// One side refused, the other answered: only `Overflow` (σ or λ beyond `f64::MAX`) may
/// separate exactly scaled inputs.
fn only_overflow<T: std::fmt::Debug, U: std::fmt::Debug>(
    ra: &Result<T, LinalgError>,
    rb: &Result<U, LinalgError>,
) {
    match (ra, rb) {
        (Ok(_), Err(e)) | (Err(e), Ok(_)) => assert!(
            matches!(e, LinalgError::Overflow { .. }),
            "scaled inputs: one answered, the other refused with {e:?} ({ra:?} vs {rb:?})"
        ),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((m, n, k, a)) = decode_matrix(data) else {
        return;
    };
    let dim = m.max(n) as f64;
    let eps = f64::EPSILON;

    // cond2 on A and 2ᵏA
    let (b, exact) = scaled_exact(&a, k);
    let ra = cond2(MatRef::from_column_major_slice(&a, m, n));
    check_cond(&ra);
    let rb = if b.iter().all(|v| v.is_finite()) {
        let r = cond2(MatRef::from_column_major_slice(&b, m, n));
        check_cond(&r);
        Some(r)
    } else {
        None
    };
    if let (true, Some(rb)) = (exact, &rb) {
        only_overflow(&ra, rb);
        if let (Ok(ca), Ok(cb)) = (&ra, rb) {
            let far = |c: &Cond2| c.kappa * dim * eps * C < 0.5;
            if !ca.rank_deficient && !cb.rank_deficient {
                if far(ca) {
                    let tol = C * dim * eps * ca.kappa * ca.kappa;
                    assert!(
                        (ca.kappa - cb.kappa).abs() <= tol,
                        "κ(A) = {} but κ(2^{k}A) = {} (tol {tol})",
                        ca.kappa,
                        cb.kappa
                    );
                }
            } else if ca.rank_deficient != cb.rank_deficient {
                let other = if ca.rank_deficient { cb } else { ca };
                assert!(
                    !far(other),
                    "rank decision differs at κ = {} (A: {ca:?}, 2^{k}A: {cb:?})",
                    other.kappa
                );
            }
        }
    }

    // sym_spectrum on the symmetric part of the leading square block
    let p = m.min(n);
    let mut s = vec![0.0f64; p * p];
    for j in 0..p {
        for i in 0..p {
            s[i + j * p] = a[i + j * m] / 2.0 + a[j + i * m] / 2.0;
        }
    }
    let (sb, exact) = scaled_exact(&s, k);
    let ra = sym_spectrum(MatRef::from_column_major_slice(&s, p, p));
    check_spec(&ra);
    if !sb.iter().all(|v| v.is_finite()) {
        return;
    }
    let rb = sym_spectrum(MatRef::from_column_major_slice(&sb, p, p));
    check_spec(&rb);
    if !exact {
        return;
    }
    only_overflow(&ra, &rb);
    if let (Ok(sa), Ok(sbr)) = (&ra, &rb) {
        let lmax = sa.eigenvalues.iter().fold(0.0f64, |x, v| x.max(v.abs()));
        let tiny = f64::from_bits(1); // 2⁻¹⁰⁷⁴
        let tol = C * p as f64 * eps * lmax + tiny + ldexp(tiny, -k);
        for (x, y) in sa.eigenvalues.iter().zip(&sbr.eigenvalues) {
            let yb = ldexp(*y, -k);
            assert!(
                (x - yb).abs() <= tol,
                "λ(S) = {:?} but 2^-{k}·λ(2^{k}S) = {:?} (tol {tol})",
                sa.eigenvalues,
                sbr.eigenvalues
                    .iter()
                    .map(|v| ldexp(*v, -k))
                    .collect::<Vec<_>>()
            );
        }
        if sa.positive_definite && sbr.positive_definite && sa.kappa * p as f64 * eps * C < 0.5 {
            let tol = C * p as f64 * eps * sa.kappa * sa.kappa;
            assert!(
                (sa.kappa - sbr.kappa).abs() <= tol,
                "κ(S) = {} but κ(2^{k}S) = {}",
                sa.kappa,
                sbr.kappa
            );
        }
    }
});
