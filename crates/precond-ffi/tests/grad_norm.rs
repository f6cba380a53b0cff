//! `precond_grad_norm_regularize` through its C ABI with Rust `extern "C"` gradient callbacks:
//! for a quadratic `f = ½xᵀAx − bᵀx` the added gradient equals the closed form `2ρ A P ∇f` and
//! the value `ρ ∇fᵀ P ∇f`, both modes, with `P` the identity (no optimizer, Adam before its
//! first step) and Adam's `P` after a few steps (recomputed here from the gradients it saw);
//! a quartic checks the finite-difference error of the Hessian-vector product; every bad input
//! (NULL pointers, `n` mismatch, a failing callback, a non-finite callback output, a bad `rho`
//! or mode, overlapping buffers) is refused with a message naming it, `g` and `*value` untouched.

use std::ffi::{CString, c_void};
use std::ptr::{null, null_mut};

use precond_ffi::*;
use precond_status_t::*;

mod common;
use common::{handle_msg, last};

const INTRINSIC: i32 = precond_grad_norm_mode_t::PRECOND_GRAD_NORM_INTRINSIC as i32;
const COUPLED: i32 = precond_grad_norm_mode_t::PRECOND_GRAD_NORM_COUPLED as i32;

/// The objective seen by the callback, and what the callback does.
struct Problem {
    n: usize,
    /// `A` row-major (quadratic) or empty (quartic `f = ¼ Σ xᵢ⁴`, `∇f = x³`).
    a: Vec<f64>,
    b: Vec<f64>,
    /// Number of callback calls so far.
    calls: usize,
    /// Return this code from the callback call number `fail_on` (1-based).
    fail: Option<(usize, i32)>,
    /// Write a NaN at this index on the callback call number `.0`.
    nan: Option<(usize, usize)>,
}

impl Problem {
    fn quadratic(n: usize, seed: u64) -> Self {
        let mut s = seed;
        let mut rnd = || {
            // xorshift64*, mapped to [-1, 1)
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        };
        let m: Vec<f64> = (0..n * n).map(|_| rnd()).collect();
        // symmetric, diagonally weighted to be far from the identity
        let a = (0..n * n)
            .map(|k| {
                let (i, j) = (k / n, k % n);
                0.5 * (m[i * n + j] + m[j * n + i]) + if i == j { 2.0 + i as f64 } else { 0.0 }
            })
            .collect();
        let b = (0..n).map(|_| rnd()).collect();
        Problem {
            n,
            a,
            b,
            calls: 0,
            fail: None,
            nan: None,
        }
    }

    fn quartic(n: usize) -> Self {
        Problem {
            n,
            a: Vec::new(),
            b: Vec::new(),
            calls: 0,
            fail: None,
            nan: None,
        }
    }

    fn matvec(&self, v: &[f64]) -> Vec<f64> {
        (0..self.n)
            .map(|i| (0..self.n).map(|j| self.a[i * self.n + j] * v[j]).sum())
            .collect()
    }

    fn grad(&self, x: &[f64]) -> Vec<f64> {
        if self.a.is_empty() {
            return x.iter().map(|v| v * v * v).collect();
        }
        let mut g = self.matvec(x);
        for (g, b) in g.iter_mut().zip(&self.b) {
            *g -= b;
        }
        g
    }

    /// The exact `H v`.
    fn hvp(&self, x: &[f64], v: &[f64]) -> Vec<f64> {
        if self.a.is_empty() {
            return x.iter().zip(v).map(|(x, v)| 3.0 * x * x * v).collect();
        }
        self.matvec(v)
    }
}

/// The C callback: `user_data` is a `Problem`.
unsafe extern "C" fn gradient(user_data: *mut c_void, x: *const f64, g: *mut f64, n: usize) -> i32 {
    // SAFETY: the tests pass a live `Problem` as user data and the library `n` doubles each.
    let p = unsafe { &mut *user_data.cast::<Problem>() };
    // SAFETY: the library's contract: `n` readable doubles at `x`, `n` writable at `g`.
    let (x, g) = unsafe {
        (
            std::slice::from_raw_parts(x, n),
            std::slice::from_raw_parts_mut(g, n),
        )
    };
    p.calls += 1;
    if let Some((call, rc)) = p.fail
        && call == p.calls
    {
        return rc;
    }
    if n != p.n {
        return -1;
    }
    g.copy_from_slice(&p.grad(x));
    if let Some((call, i)) = p.nan
        && call == p.calls
    {
        g[i] = f64::NAN;
    }
    0
}

/// One call; returns the status, the new `g` and the value (`NaN` sentinel when not written).
fn regularize(
    opt: *const precond_optimizer_t,
    rho: f64,
    mode: i32,
    x: &[f64],
    g: &mut [f64],
    p: &mut Problem,
) -> (precond_status_t, f64) {
    let mut value = f64::NAN;
    // SAFETY: buffers of `x.len()` doubles; `p` outlives the call; `opt` NULL or live.
    let st = unsafe {
        precond_grad_norm_regularize(
            opt,
            rho,
            mode,
            x.as_ptr(),
            g.as_mut_ptr(),
            x.len(),
            Some(gradient),
            std::ptr::from_mut(p).cast(),
            &mut value,
        )
    };
    (st, value)
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// `got` equals `g + 2ρ H(x) P g` and `value` equals `ρ gᵀ P g`, with the finite-difference
/// tolerance: rounding of the two gradients divided by `2h`, `h = ε^{1/3} max(1, ‖x‖)/‖v‖`,
/// gives `O(ε^{2/3})` relative to `‖∇f‖ ‖v‖ / max(1, ‖x‖)`; the quartic adds a truncation
/// error `h² ‖v‖³ max|x|`-sized, also `O(ε^{2/3})`.
#[track_caller]
fn check(
    prob: &Problem,
    rho: f64,
    p: Option<&[f64]>,
    x: &[f64],
    g0: &[f64],
    got: &[f64],
    value: f64,
) {
    let n = x.len();
    let v: Vec<f64> = match p {
        Some(p) => g0.iter().zip(p).map(|(g, p)| g * p).collect(),
        None => g0.to_vec(),
    };
    let hv = prob.hvp(x, &v);
    let scale = norm(&prob.grad(x)).max(1.0) + norm(&hv) + norm(&v) * norm(&v);
    let tol = 2.0 * rho * 64.0 * n as f64 * f64::EPSILON.powf(2.0 / 3.0) * scale;
    for i in 0..n {
        let want = g0[i] + 2.0 * rho * hv[i];
        assert!(
            (got[i] - want).abs() <= tol,
            "component {i}: {} vs closed form {want} (tol {tol:e})",
            got[i]
        );
    }
    let want_r: f64 = rho * g0.iter().zip(&v).map(|(g, v)| g * v).sum::<f64>();
    assert!(
        (value - want_r).abs() <= 8.0 * n as f64 * f64::EPSILON * want_r.abs(),
        "value {value} vs ρ gᵀPg = {want_r}"
    );
}

fn point(n: usize) -> Vec<f64> {
    (0..n).map(|i| (0.7 * i as f64 + 0.3).sin() * 1.5).collect()
}

struct Opt(*mut precond_optimizer_t);

impl Opt {
    fn json(cfg: &str, n: usize) -> Opt {
        let c = CString::new(cfg).expect("no NUL");
        let mut out = null_mut();
        // SAFETY: valid string and out pointer.
        let st = unsafe { precond_optimizer_new_json(c.as_ptr(), n, &mut out) };
        assert_eq!(st, PRECOND_OK, "{}", last());
        Opt(out)
    }
    fn step(&self, x: &mut [f64], g: &[f64]) {
        // SAFETY: live handle, buffers of the given length.
        let st = unsafe { precond_optimizer_step_f64(self.0, x.as_mut_ptr(), g.as_ptr(), x.len()) };
        assert_eq!(st, PRECOND_OK, "{}", last());
    }
    fn p(&self, n: usize) -> Vec<f64> {
        let mut p = vec![0.0; n];
        // SAFETY: live handle, `n` doubles.
        let st = unsafe { precond_optimizer_preconditioner(self.0, p.as_mut_ptr(), n) };
        assert_eq!(st, PRECOND_OK, "{}", last());
        p
    }
}

impl Drop for Opt {
    fn drop(&mut self) {
        // SAFETY: a live handle, freed once.
        unsafe { precond_optimizer_free(self.0) };
    }
}

#[test]
fn without_an_optimizer_both_modes_are_the_plain_gradient_norm() {
    let n = 7;
    let mut prob = Problem::quadratic(n, 3);
    let x = point(n);
    let g0 = prob.grad(&x);
    let rho = 0.3;
    let mut outs = Vec::new();
    for mode in [INTRINSIC, COUPLED] {
        let mut g = g0.clone();
        prob.calls = 0;
        let (st, value) = regularize(null(), rho, mode, &x, &mut g, &mut prob);
        assert_eq!(st, PRECOND_OK, "{}", last());
        assert_eq!(prob.calls, 2, "one central difference: two gradients");
        check(&prob, rho, None, &x, &g0, &g, value);
        outs.push((g, value));
    }
    // P = I for both: the same operations, the same bits
    assert_eq!(outs[0], outs[1]);
}

#[test]
fn adam_before_its_first_step_uses_the_identity() {
    let n = 5;
    let mut prob = Problem::quadratic(n, 5);
    let opt = Opt::json(r#"{"optimizer": "adam", "lr": 0.01}"#, n);
    let x = point(n);
    let g0 = prob.grad(&x);
    let mut g = g0.clone();
    let (st, value) = regularize(opt.0, 0.2, INTRINSIC, &x, &mut g, &mut prob);
    assert_eq!(st, PRECOND_OK, "{}", last());
    check(&prob, 0.2, None, &x, &g0, &g, value);
}

/// Adam's `P = 1/(sqrt(v̂) + eps)` after `k` steps, from the gradients it was given (torch's
/// arithmetic, `v` the EMA of `g²`, `v̂ = v / (1 − β₂ᵏ)`).
fn adam_p(grads: &[Vec<f64>], beta2: f64, eps: f64) -> Vec<f64> {
    let n = grads[0].len();
    let mut v = vec![0.0; n];
    for g in grads {
        for (v, g) in v.iter_mut().zip(g) {
            *v = beta2 * *v + (1.0 - beta2) * g * g;
        }
    }
    let bc = 1.0 - beta2.powi(grads.len() as i32);
    v.iter().map(|v| 1.0 / ((v / bc).sqrt() + eps)).collect()
}

#[test]
fn adam_after_a_few_steps_uses_its_preconditioner() {
    let n = 6;
    let mut prob = Problem::quadratic(n, 9);
    let opt = Opt::json(r#"{"optimizer": "adam", "lr": 0.05}"#, n);
    let mut x = point(n);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let g = prob.grad(&x);
        opt.step(&mut x, &g);
        seen.push(g);
    }
    let p = adam_p(&seen, 0.999, 1e-8);
    let from_handle = opt.p(n);
    for (a, b) in p.iter().zip(&from_handle) {
        assert!((a - b).abs() <= 1e-12 * a.abs(), "{a} vs {b}");
    }
    // far from the identity: the intrinsic and coupled regularizers differ
    let spread =
        p.iter().fold(0.0f64, |m, v| m.max(*v)) / p.iter().fold(f64::MAX, |m, v| m.min(*v));
    assert!(spread > 2.0, "P spread {spread}");
    let g0 = prob.grad(&x);
    let rho = 0.05;
    let mut gi = g0.clone();
    prob.calls = 0;
    let (st, vi) = regularize(opt.0, rho, INTRINSIC, &x, &mut gi, &mut prob);
    assert_eq!(st, PRECOND_OK, "{}", handle_msg(opt.0));
    assert_eq!(prob.calls, 2);
    check(&prob, rho, Some(&p), &x, &g0, &gi, vi);
    let mut gc = g0.clone();
    let (st, vc) = regularize(opt.0, rho, COUPLED, &x, &mut gc, &mut prob);
    assert_eq!(st, PRECOND_OK, "{}", handle_msg(opt.0));
    check(&prob, rho, None, &x, &g0, &gc, vc);
    assert!((vi - vc).abs() > 1e-3 * vc.abs(), "{vi} vs {vc}");
    // the call leaves the optimizer as it was
    assert_eq!(opt.p(n), from_handle);
}

#[test]
fn quartic_hessian_vector_product_within_the_difference_error() {
    let n = 9;
    let mut prob = Problem::quartic(n);
    let x = point(n);
    let g0 = prob.grad(&x);
    for (rho, mode) in [(1.0, COUPLED), (0.01, INTRINSIC)] {
        let mut g = g0.clone();
        let (st, value) = regularize(null(), rho, mode, &x, &mut g, &mut prob);
        assert_eq!(st, PRECOND_OK, "{}", last());
        check(&prob, rho, None, &x, &g0, &g, value);
    }
}

#[test]
fn zero_rho_changes_nothing_and_calls_nothing() {
    let n = 4;
    let mut prob = Problem::quadratic(n, 1);
    let x = point(n);
    let g0 = prob.grad(&x);
    let mut g = g0.clone();
    prob.calls = 0;
    let (st, value) = regularize(null(), 0.0, INTRINSIC, &x, &mut g, &mut prob);
    assert_eq!(st, PRECOND_OK);
    assert_eq!(g, g0);
    assert_eq!(value.to_bits(), 0.0f64.to_bits());
    assert_eq!(prob.calls, 0);
}

/// The call fails with `want` and a message containing `needle`; `g` and `*value` unchanged.
#[track_caller]
fn refused(
    st: precond_status_t,
    value: f64,
    g: &[f64],
    g0: &[f64],
    want: precond_status_t,
    needle: &str,
) {
    let msg = last();
    assert_eq!(st, want, "{msg}");
    assert!(msg.starts_with("precond_grad_norm_regularize: "), "{msg}");
    assert!(msg.contains(needle), "`{msg}` does not mention `{needle}`");
    assert!(value.is_nan(), "value written on failure");
    assert_eq!(g, g0, "g written on failure");
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let n = 5;
    let mut prob = Problem::quadratic(n, 2);
    let x = point(n);
    let g0 = prob.grad(&x);
    let mut g = g0.clone();
    for (rho, mode, want, needle) in [
        (-0.1, INTRINSIC, PRECOND_INVALID_ARGUMENT, "`rho` is -0.1"),
        (f64::NAN, COUPLED, PRECOND_INVALID_ARGUMENT, "`rho` is NaN"),
        (
            f64::INFINITY,
            COUPLED,
            PRECOND_INVALID_ARGUMENT,
            "`rho` is inf",
        ),
        (0.1, 2, PRECOND_INVALID_ARGUMENT, "`mode` is 2"),
        (0.1, -1, PRECOND_INVALID_ARGUMENT, "`mode` is -1"),
    ] {
        let (st, value) = regularize(null(), rho, mode, &x, &mut g, &mut prob);
        refused(st, value, &g, &g0, want, needle);
    }
    // a failing callback, on its first and on its second call
    for call in [1, 2] {
        prob.calls = 0;
        prob.fail = Some((call, 7));
        let (st, value) = regularize(null(), 0.1, COUPLED, &x, &mut g, &mut prob);
        refused(
            st,
            value,
            &g,
            &g0,
            PRECOND_NUMERICAL_FAILURE,
            &format!("callback returned 7 (call {call} of 2)"),
        );
        assert_eq!(prob.calls, call, "no call after a failure");
    }
    prob.fail = None;
    // a NaN in the callback's output
    for call in [1, 2] {
        prob.calls = 0;
        prob.nan = Some((call, 3));
        let (st, value) = regularize(null(), 0.1, INTRINSIC, &x, &mut g, &mut prob);
        refused(st, value, &g, &g0, PRECOND_NON_FINITE, "grad[3] is NaN");
    }
    prob.nan = None;
    // non-finite inputs
    let mut xb = x.clone();
    xb[1] = f64::INFINITY;
    let (st, value) = regularize(null(), 0.1, COUPLED, &xb, &mut g, &mut prob);
    refused(st, value, &g, &g0, PRECOND_NON_FINITE, "x[1] is inf");
    let mut gb = g0.clone();
    gb[4] = f64::NAN;
    let (st, value) = regularize(null(), 0.1, COUPLED, &x, &mut gb, &mut prob);
    assert_eq!(st, PRECOND_NON_FINITE);
    assert!(last().contains("g[4] is NaN"), "{}", last());
    assert!(value.is_nan() && gb[4].is_nan() && gb[..4] == g0[..4]);

    let pd: *mut c_void = std::ptr::from_mut(&mut prob).cast();
    let mut value = f64::NAN;
    // NULL pointers
    // SAFETY: every pointer is NULL or valid for `n` doubles.
    let st = unsafe {
        precond_grad_norm_regularize(
            null(),
            0.1,
            0,
            null(),
            g.as_mut_ptr(),
            n,
            Some(gradient),
            pd,
            &mut value,
        )
    };
    refused(st, value, &g, &g0, PRECOND_NULL_POINTER, "`x` is NULL");
    // SAFETY: as above.
    let st = unsafe {
        precond_grad_norm_regularize(
            null(),
            0.1,
            0,
            x.as_ptr(),
            null_mut(),
            n,
            Some(gradient),
            pd,
            &mut value,
        )
    };
    refused(st, value, &g, &g0, PRECOND_NULL_POINTER, "`g` is NULL");
    // SAFETY: as above.
    let st = unsafe {
        precond_grad_norm_regularize(
            null(),
            0.1,
            0,
            x.as_ptr(),
            g.as_mut_ptr(),
            n,
            None,
            pd,
            &mut value,
        )
    };
    refused(st, value, &g, &g0, PRECOND_NULL_POINTER, "`grad` is NULL");
    // n = 0
    // SAFETY: as above.
    let st = unsafe {
        precond_grad_norm_regularize(
            null(),
            0.1,
            0,
            x.as_ptr(),
            g.as_mut_ptr(),
            0,
            Some(gradient),
            pd,
            &mut value,
        )
    };
    refused(st, value, &g, &g0, PRECOND_INVALID_ARGUMENT, "`n` is 0");
    // overlapping buffers: g on x, value inside g
    let mut both = [x.clone(), g0.clone()].concat();
    let base = both.as_mut_ptr();
    // SAFETY: `both` holds 2n doubles; g = both[1..], overlapping x = both[..n].
    let st = unsafe {
        precond_grad_norm_regularize(
            null(),
            0.1,
            0,
            base,
            base.add(1),
            n,
            Some(gradient),
            pd,
            &mut value,
        )
    };
    assert_eq!(st, PRECOND_INVALID_ARGUMENT);
    assert!(last().contains("`x` and `g` overlap"), "{}", last());
    // SAFETY: value = &g[2], inside g.
    let st = unsafe {
        precond_grad_norm_regularize(
            null(),
            0.1,
            0,
            x.as_ptr(),
            g.as_mut_ptr(),
            n,
            Some(gradient),
            pd,
            g.as_mut_ptr().add(2),
        )
    };
    refused(
        st,
        value,
        &g,
        &g0,
        PRECOND_INVALID_ARGUMENT,
        "`value` overlaps",
    );
    assert_eq!(both, [x.clone(), g0.clone()].concat());
    // value may be NULL
    // SAFETY: valid buffers, NULL value.
    let st = unsafe {
        precond_grad_norm_regularize(
            null(),
            0.1,
            0,
            x.as_ptr(),
            g.as_mut_ptr(),
            n,
            Some(gradient),
            pd,
            null_mut(),
        )
    };
    assert_eq!(st, PRECOND_OK, "{}", last());
    assert_ne!(g, g0);
}

#[test]
fn optimizer_handle_errors_are_recorded_in_the_handle() {
    let n = 4;
    let mut prob = Problem::quadratic(n, 4);
    let x = point(n);
    let g0 = prob.grad(&x);
    let mut g = g0.clone();
    let opt = Opt::json(r#"{"optimizer": "adam"}"#, n + 1);
    for mode in [INTRINSIC, COUPLED] {
        let (st, value) = regularize(opt.0, 0.1, mode, &x, &mut g, &mut prob);
        refused(
            st,
            value,
            &g,
            &g0,
            PRECOND_DIMENSION_MISMATCH,
            "`n` is 4 but the optimizer has n_params = 5",
        );
        assert!(handle_msg(opt.0).contains("n_params = 5"));
    }
    // a callback failure is recorded in the handle too
    let opt = Opt::json(r#"{"optimizer": "adam"}"#, n);
    prob.fail = Some((1, -3));
    let (st, value) = regularize(opt.0, 0.1, INTRINSIC, &x, &mut g, &mut prob);
    refused(st, value, &g, &g0, PRECOND_NUMERICAL_FAILURE, "returned -3");
    assert!(handle_msg(opt.0).contains("returned -3"));
    prob.fail = None;
    // a matrix optimizer has no diagonal P: refused in intrinsic mode, fine when coupled
    let muon = Opt::json(r#"{"optimizer": "muon", "shape": [2, 2]}"#, n);
    let (st, value) = regularize(muon.0, 0.1, INTRINSIC, &x, &mut g, &mut prob);
    refused(
        st,
        value,
        &g,
        &g0,
        PRECOND_INVALID_ARGUMENT,
        "diagonal preconditioner",
    );
    let (st, value) = regularize(muon.0, 0.1, COUPLED, &x, &mut g, &mut prob);
    assert_eq!(st, PRECOND_OK, "{}", handle_msg(muon.0));
    check(&prob, 0.1, None, &x, &g0, &g, value);
}
