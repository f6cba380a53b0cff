//! `precond_sym_root_new` / `precond_sym_inverse_root` / `precond_sym_root_free`: the inverse
//! root against its closed form `Q diag((λ + ε)^(−1/root)) Qᵀ` for matrices built from a known
//! orthogonal `Q` and known eigenvalues, both layouts, and every bad input refused with its
//! status, a message naming the problem, and the outputs untouched.

use std::ptr::{null, null_mut};

use precond_ffi::*;
use precond_status_t::*;

mod common;
use common::last;

const ROW_MAJOR: i32 = 0;
const COL_MAJOR: i32 = 1;

struct Ws(*mut precond_sym_root_t);

impl Ws {
    fn new(n: usize) -> Ws {
        let mut out = null_mut();
        // SAFETY: a valid out pointer.
        let st = unsafe { precond_sym_root_new(n, &mut out) };
        assert_eq!(st, PRECOND_OK, "{}", last());
        Ws(out)
    }
}

impl Drop for Ws {
    fn drop(&mut self) {
        // SAFETY: a live handle, freed once.
        unsafe { precond_sym_root_free(self.0) };
    }
}

/// A product of `n` Householder reflectors from a seeded generator: an orthogonal `Q`,
/// row-major.
fn orthogonal(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let mut q: Vec<f64> = (0..n * n)
        .map(|k| if k / n == k % n { 1.0 } else { 0.0 })
        .collect();
    for _ in 0..n.min(6) {
        let v: Vec<f64> = (0..n).map(|_| rnd()).collect();
        let vv: f64 = v.iter().map(|x| x * x).sum();
        // Q ← Q (I − 2 v vᵀ / vᵀv)
        for i in 0..n {
            let dot: f64 = (0..n).map(|j| q[i * n + j] * v[j]).sum();
            for j in 0..n {
                q[i * n + j] -= 2.0 * dot * v[j] / vv;
            }
        }
    }
    q
}

/// `Q diag(f) Qᵀ`, row-major.
fn q_diag_qt(q: &[f64], f: &[f64]) -> Vec<f64> {
    let n = f.len();
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = (0..n).map(|k| q[i * n + k] * f[k] * q[j * n + k]).sum();
        }
    }
    a
}

#[test]
fn the_root_equals_its_closed_form_in_both_layouts() {
    for (n, seed) in [(1usize, 1u64), (2, 2), (7, 3), (40, 4), (150, 5)] {
        let q = orthogonal(n, seed);
        // eigenvalues over six decades, one zero (semidefinite: ε makes it definite)
        let lam: Vec<f64> = (0..n)
            .map(|k| {
                if k == 0 && n > 1 {
                    0.0
                } else {
                    10f64.powf(6.0 * k as f64 / n as f64)
                }
            })
            .collect();
        let a = q_diag_qt(&q, &lam);
        let (eps, root) = (1e-3, 4.0);
        let f: Vec<f64> = lam.iter().map(|l| (l + eps).powf(-1.0 / root)).collect();
        let want = q_diag_qt(&q, &f);
        let fmax = f.iter().fold(0.0f64, |m, v| m.max(*v));
        let ws = Ws::new(n);
        for layout in [ROW_MAJOR, COL_MAJOR] {
            let mut out = vec![f64::NAN; n * n];
            let mut info = precond_root_info_t::default();
            // SAFETY: buffers of the stated lengths; a live workspace.
            let st = unsafe {
                precond_sym_inverse_root(
                    ws.0,
                    a.as_ptr(),
                    n,
                    layout,
                    eps,
                    root,
                    out.as_mut_ptr(),
                    out.len(),
                    &mut info,
                )
            };
            assert_eq!(st, PRECOND_OK, "{}", last());
            // the condition of the eigenvalues of A is 1 (symmetric): error ~ n·ε·‖A‖ in λ,
            // amplified by the slope of (λ + ε)^(−1/4) at the smallest λ: ε^(−5/4)/4
            let lmax = lam.iter().fold(0.0f64, |m, v| m.max(*v));
            let slope = 0.25 * eps.powf(-1.25);
            let tol = 64.0 * n as f64 * f64::EPSILON * (fmax + lmax * slope);
            for (k, (o, w)) in out.iter().zip(&want).enumerate() {
                // symmetric: the column-major output is the same array
                assert!(
                    (o - w).abs() <= tol,
                    "n={n} layout={layout} entry {k}: {o} vs {w}"
                );
            }
            assert!((info.max_eigenvalue - lmax).abs() <= 16.0 * n as f64 * f64::EPSILON * lmax);
            let lmin = lam.iter().fold(f64::INFINITY, |m, v| m.min(*v));
            assert!((info.min_eigenvalue - lmin).abs() <= 16.0 * n as f64 * f64::EPSILON * lmax);
        }
    }
}

#[test]
fn bad_inputs_are_refused_and_leave_the_outputs_alone() {
    let n = 4;
    let ws = Ws::new(n);
    let a: Vec<f64> = (0..n * n)
        .map(|k| if k / n == k % n { 2.0 } else { 0.0 })
        .collect();
    let mut out = vec![7.0; n * n];
    let mut info = precond_root_info_t {
        min_eigenvalue: 3.0,
        max_eigenvalue: 3.0,
    };
    let call = |ws: *mut precond_sym_root_t,
                a: *const f64,
                nn: usize,
                layout: i32,
                eps: f64,
                root: f64,
                out: &mut Vec<f64>,
                len: usize,
                info: &mut precond_root_info_t| {
        // SAFETY: `a` is NULL or holds n·n doubles, `out` holds n·n doubles, `len ≤ n·n`.
        unsafe {
            precond_sym_inverse_root(ws, a, nn, layout, eps, root, out.as_mut_ptr(), len, info)
        }
    };
    let check = |st: precond_status_t, needle: &str, want: precond_status_t| {
        let msg = last();
        assert_eq!(st, want, "{msg}");
        assert!(msg.contains(needle), "`{msg}` does not name `{needle}`");
    };
    let p = a.as_ptr();
    let st = call(null_mut(), p, n, 0, 0.0, 4.0, &mut out, n * n, &mut info);
    check(st, "ws", PRECOND_NULL_POINTER);
    let st = call(ws.0, null(), n, 0, 0.0, 4.0, &mut out, n * n, &mut info);
    check(st, "a", PRECOND_NULL_POINTER);
    let st = call(ws.0, p, 3, 0, 0.0, 4.0, &mut out, 9, &mut info);
    check(st, "n = 3", PRECOND_DIMENSION_MISMATCH);
    let st = call(ws.0, p, n, 9, 0.0, 4.0, &mut out, n * n, &mut info);
    check(st, "layout", PRECOND_INVALID_ARGUMENT);
    let st = call(ws.0, p, n, 0, -1.0, 4.0, &mut out, n * n, &mut info);
    check(st, "eps", PRECOND_INVALID_ARGUMENT);
    let st = call(ws.0, p, n, 0, 0.0, 0.0, &mut out, n * n, &mut info);
    check(st, "root", PRECOND_INVALID_ARGUMENT);
    let st = call(ws.0, p, n, 0, 0.0, f64::NAN, &mut out, n * n, &mut info);
    check(st, "root", PRECOND_INVALID_ARGUMENT);
    let st = call(ws.0, p, n, 0, 0.0, 4.0, &mut out, n * n - 1, &mut info);
    check(st, "out", PRECOND_DIMENSION_MISMATCH);
    // a full-size, in-layout call on the matrix `m` with this `eps`
    let on = |m: &[f64], eps: f64, out: &mut Vec<f64>, info: &mut precond_root_info_t| {
        call(ws.0, m.as_ptr(), n, 0, eps, 4.0, out, n * n, info)
    };
    let mut bad = a.clone();
    bad[1] = 1.0; // a[0][1] ≠ a[1][0]
    let st = on(&bad, 0.0, &mut out, &mut info);
    assert_eq!(st, PRECOND_INVALID_ARGUMENT, "{}", last());
    assert!(last().contains("symmetric"), "{}", last());
    bad = a.clone();
    bad[5] = f64::INFINITY;
    let st = on(&bad, 0.0, &mut out, &mut info);
    assert_eq!(st, PRECOND_NON_FINITE, "{}", last());
    // indefinite: λ = −2 + ε ≤ 0 at index 0
    bad = a.clone();
    bad[0] = -2.0;
    let st = on(&bad, 1e-3, &mut out, &mut info);
    assert_eq!(st, PRECOND_NUMERICAL_FAILURE, "{}", last());
    assert!(last().contains("pivot 0 is -1.999"), "{}", last());
    assert!(
        out.iter().all(|v| v.to_bits() == 7f64.to_bits()),
        "out written on error"
    );
    assert_eq!(
        info.max_eigenvalue.to_bits(),
        3f64.to_bits(),
        "info written on error"
    );
    // the workspace is still usable: diag(2)^(−1/4)
    let st = call(ws.0, a.as_ptr(), n, 0, 0.0, 4.0, &mut out, n * n, &mut info);
    assert_eq!(st, PRECOND_OK, "{}", last());
    let want = 2f64.powf(-0.25);
    for (k, v) in out.iter().enumerate() {
        let w = if k / n == k % n { want } else { 0.0 };
        assert!((v - w).abs() <= 4.0 * f64::EPSILON, "{k}: {v}");
    }
    // creation errors
    let mut h = null_mut();
    // SAFETY: a valid out pointer.
    assert_eq!(
        unsafe { precond_sym_root_new(0, &mut h) },
        PRECOND_INVALID_ARGUMENT
    );
    assert!(
        h.is_null() && last().contains("argument `n` is 0"),
        "{}",
        last()
    );
    // SAFETY: NULL out pointer is refused.
    assert_eq!(
        unsafe { precond_sym_root_new(2, null_mut()) },
        PRECOND_NULL_POINTER
    );
    // SAFETY: NULL is accepted by free.
    unsafe { precond_sym_root_free(null_mut()) };
}

/// The C++ wrapper `precond::SymRoot` (include/precond.hpp), compiled with g++ against the
/// static library and run: `A = [[2, 1, 0], [1, 2, 0], [0, 0, 16]]` has `A^(−1/2)` in closed
/// form (the 2 × 2 block's eigenvalues 3 and 1 with vectors `(1, ±1)/√2`, and `16^(−1/2)`), a
/// moved-from workspace still frees cleanly, and bad input throws `precond::Error` with the C
/// status.
#[test]
fn the_cpp_wrapper_computes_the_root_and_throws_on_bad_input() {
    let text = common::run_cpp(
        "sym-root",
        r#"#include "precond.hpp"
#include <cstdio>
#include <vector>
int main() {
    precond::SymRoot first(3);
    precond::SymRoot ws(std::move(first));
    std::vector<double> a{2, 1, 0, 1, 2, 0, 0, 0, 16}, out(9);
    precond_root_info_t info = ws.inverse_root(a, precond::Layout::RowMajor, 0.0, 2.0, out);
    for (double v : out) std::printf("%.17g\n", v);
    std::printf("range %.17g %.17g\n", info.min_eigenvalue, info.max_eigenvalue);
    try {
        std::vector<double> small(4);
        ws.inverse_root(a, precond::Layout::RowMajor, 0.0, 2.0, small);
    } catch (const precond::Error &e) {
        std::printf("short_out %s\n", precond_status_name((int32_t)e.status()));
    }
    try {
        std::vector<double> neg{-1, 0, 0, 0, 1, 0, 0, 0, 1};
        ws.inverse_root(neg, precond::Layout::ColMajor, 0.0, 4.0, out);
    } catch (const precond::Error &e) {
        std::printf("indefinite %s\n", precond_status_name((int32_t)e.status()));
    }
    return 0;
}
"#,
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 12, "{text}");
    let s = 3f64.powf(-0.5);
    let want = [
        (s + 1.0) / 2.0,
        (s - 1.0) / 2.0,
        0.0,
        (s - 1.0) / 2.0,
        (s + 1.0) / 2.0,
        0.0,
        0.0,
        0.0,
        0.25,
    ];
    for (k, w) in want.iter().enumerate() {
        let v: f64 = lines[k].parse().expect("a number");
        assert!((v - w).abs() <= 8.0 * f64::EPSILON, "entry {k}: {v} vs {w}");
    }
    let range: Vec<f64> = lines[9]
        .trim_start_matches("range ")
        .split(' ')
        .map(|t| t.parse().expect("a number"))
        .collect();
    assert!((range[0] - 1.0).abs() <= 8.0 * f64::EPSILON, "{}", lines[9]);
    assert!(
        (range[1] - 16.0).abs() <= 64.0 * f64::EPSILON,
        "{}",
        lines[9]
    );
    assert_eq!(lines[10], "short_out PRECOND_DIMENSION_MISMATCH");
    assert_eq!(lines[11], "indefinite PRECOND_NUMERICAL_FAILURE");
}
