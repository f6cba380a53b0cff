//! `precond_optimizer_bnp_observe` / `precond_optimizer_bnp_stats` against the Rust API
//! (`Optimizer::bnp_observe`, `bnp_stats`, steps bitwise equal), and every bad input: its
//! status, a message naming the problem, nothing changed, the handle still usable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::CString;
use std::ptr::{null, null_mut};

use precond_ffi::*;
use precond_optim::OptimizerConfig;

use precond_status_t::*;

mod common;
use common::{handle_msg, last};

const CFG: &str = r#"{"optimizer": "adam", "lr": 0.01, "groups": [
    {"start": 0, "end": 2, "lr": 0.5},
    {"start": 4, "end": 19, "shape": [3, 4], "bnp": {"momentum": 0.2, "eps": 1e-5},
     "optimizer": "sgd", "lr": 0.05, "momentum": 0.9}]}"#;
const N: usize = 22;
const D: usize = 4;

struct Opt(*mut precond_optimizer_t);

impl Drop for Opt {
    fn drop(&mut self) {
        // SAFETY: a live handle, freed once.
        unsafe { precond_optimizer_free(self.0) };
    }
}

fn new(cfg: &str, n: usize) -> Opt {
    let c = CString::new(cfg).unwrap();
    let mut out = null_mut();
    // SAFETY: valid string and out pointer.
    let st = unsafe { precond_optimizer_new_json(c.as_ptr(), n, &mut out) };
    assert_eq!(st, PRECOND_OK, "{}", last());
    Opt(out)
}

fn observe(o: &Opt, group: usize, m: &[f64], v: &[f64], d: usize) -> precond_status_t {
    // SAFETY: live handle; buffers of at least `d` values (or deliberately NULL in callers).
    unsafe { precond_optimizer_bnp_observe(o.0, group, m.as_ptr(), v.as_ptr(), d) }
}

fn stats(o: &Opt, group: usize, d: usize) -> (precond_status_t, Vec<f64>, Vec<f64>) {
    let (mut m, mut v) = (vec![f64::NAN; d], vec![f64::NAN; d]);
    // SAFETY: live handle; buffers of `d` values.
    let st = unsafe { precond_optimizer_bnp_stats(o.0, group, m.as_mut_ptr(), v.as_mut_ptr(), d) };
    (st, m, v)
}

fn batch(k: usize) -> (Vec<f64>, Vec<f64>) {
    let m = (0..D).map(|j| 10.0 * j as f64 + (k % 3) as f64).collect();
    let v = (0..D).map(|j| 40.0 + ((k * 7 + j) % 5) as f64).collect();
    (m, v)
}

#[test]
fn the_c_calls_match_the_rust_api() {
    let o = new(CFG, N);
    let mut r = OptimizerConfig::from_json(CFG).unwrap().build(N).unwrap();
    let (st, m, v) = stats(&o, 1, D);
    assert_eq!(st, PRECOND_OK);
    assert_eq!((m, v), (vec![0.0; D], vec![1.0; D]));
    let mut x: Vec<f64> = (0..N).map(|i| (i as f64 * 0.3).sin()).collect();
    let mut y = x.clone();
    for k in 0..5 {
        let (bm, bv) = batch(k);
        assert_eq!(observe(&o, 1, &bm, &bv, D), PRECOND_OK);
        r.bnp_observe(1, &bm, &bv).unwrap();
        let (st, m, v) = stats(&o, 1, D);
        assert_eq!(st, PRECOND_OK);
        let s = r.bnp_stats(1).unwrap();
        assert_eq!((m.as_slice(), v.as_slice()), (s.mean(), s.var()));
        let g: Vec<f64> = (0..N)
            .map(|i| ((i * 5 + k) % 7) as f64 / 7.0 - 0.4)
            .collect();
        // SAFETY: live handle, buffers of N values.
        let st = unsafe { precond_optimizer_step_f64(o.0, x.as_mut_ptr(), g.as_ptr(), N) };
        assert_eq!(st, PRECOND_OK);
        r.step_f64(&mut y, &g).unwrap();
    }
    assert_eq!(x, y);
}

#[test]
fn bad_inputs_are_refused_and_change_nothing() {
    let o = new(CFG, N);
    let (bm, bv) = batch(1);
    assert_eq!(observe(&o, 1, &bm, &bv, D), PRECOND_OK);
    let (_, m0, v0) = stats(&o, 1, D);
    let check = |st: precond_status_t, want: precond_status_t, needle: &str| {
        assert_eq!(st, want, "{}", handle_msg(o.0));
        let msg = handle_msg(o.0);
        assert!(msg.contains(needle), "`{msg}` does not mention `{needle}`");
        assert_eq!(last(), msg);
        let (st, m, v) = stats(&o, 1, D);
        assert_eq!(st, PRECOND_OK);
        assert_eq!((&m, &v), (&m0, &v0), "statistics changed by a failed call");
    };
    // wrong d, both calls
    check(
        observe(&o, 1, &[1.0; 8], &[1.0; 8], 3),
        PRECOND_DIMENSION_MISMATCH,
        "d = 4",
    );
    check(stats(&o, 1, 5).0, PRECOND_DIMENSION_MISMATCH, "`d` is 5");
    // group out of range, group without bnp
    check(
        observe(&o, 2, &bm, &bv, D),
        PRECOND_INVALID_ARGUMENT,
        "groups[2]",
    );
    check(stats(&o, 9, D).0, PRECOND_INVALID_ARGUMENT, "no such group");
    check(
        observe(&o, 0, &bm, &bv, D),
        PRECOND_INVALID_ARGUMENT,
        "groups[0].bnp",
    );
    // bad statistics
    let mut bad = bv.clone();
    bad[3] = -1.0;
    check(
        observe(&o, 1, &bm, &bad, D),
        PRECOND_INVALID_ARGUMENT,
        "batch_var[3]",
    );
    let mut bad = bm.clone();
    bad[0] = f64::INFINITY;
    check(
        observe(&o, 1, &bad, &bv, D),
        PRECOND_INVALID_ARGUMENT,
        "batch_mean[0]",
    );
    // NULL and overlapping buffers
    // SAFETY: live handle; NULL buffers are reported before any read.
    let st = unsafe { precond_optimizer_bnp_observe(o.0, 1, null(), bv.as_ptr(), D) };
    check(st, PRECOND_NULL_POINTER, "mean");
    // SAFETY: as above.
    let st = unsafe { precond_optimizer_bnp_observe(o.0, 1, bm.as_ptr(), null(), D) };
    check(st, PRECOND_NULL_POINTER, "var");
    let shared = [1.0; 2 * D];
    // SAFETY: live handle; `shared` holds 2D values, both windows in bounds.
    let st = unsafe {
        precond_optimizer_bnp_observe(o.0, 1, shared.as_ptr(), shared.as_ptr().add(1), D)
    };
    check(st, PRECOND_INVALID_ARGUMENT, "overlap");
    let mut out = [7.0; 2 * D];
    // SAFETY: live handle; `out` holds 2D values, both windows in bounds.
    let st = unsafe {
        precond_optimizer_bnp_stats(o.0, 1, out.as_mut_ptr(), out.as_mut_ptr().add(2), D)
    };
    check(st, PRECOND_INVALID_ARGUMENT, "overlap");
    assert!(
        out.iter().all(|v| v.to_bits() == 7.0f64.to_bits()),
        "output written on failure"
    );
    let mut v = [0.0; D];
    // SAFETY: live handle; NULL `mean` is reported before any write.
    let st = unsafe { precond_optimizer_bnp_stats(o.0, 1, null_mut(), v.as_mut_ptr(), D) };
    check(st, PRECOND_NULL_POINTER, "mean");
    // NULL handle
    // SAFETY: NULL handle is reported.
    let st = unsafe { precond_optimizer_bnp_observe(null_mut(), 1, bm.as_ptr(), bv.as_ptr(), D) };
    assert_eq!(st, PRECOND_NULL_POINTER);
    // SAFETY: NULL handle is reported.
    let st = unsafe { precond_optimizer_bnp_stats(null(), 1, null_mut(), null_mut(), D) };
    assert_eq!(st, PRECOND_NULL_POINTER);
    // the handle still works
    assert_eq!(observe(&o, 1, &bm, &bv, D), PRECOND_OK);
}

#[test]
fn bad_configs_are_refused_with_the_key() {
    let bad = r#"{"optimizer": "adam", "groups": [{"start": 0, "end": 12, "shape": [3, 4], "bnp": true}]}"#;
    let c = CString::new(bad).unwrap();
    let mut out = null_mut();
    // SAFETY: valid string and out pointer.
    let st = unsafe { precond_optimizer_new_json(c.as_ptr(), 20, &mut out) };
    assert_eq!(st, PRECOND_INVALID_ARGUMENT);
    assert!(out.is_null());
    assert!(last().contains("groups[0].shape"), "{}", last());
}

#[test]
fn the_statistics_survive_save_and_load() {
    let o = new(CFG, N);
    for k in 0..3 {
        let (bm, bv) = batch(k);
        assert_eq!(observe(&o, 1, &bm, &bv, D), PRECOND_OK);
    }
    let mut size = 0;
    // SAFETY: live handle.
    assert_eq!(
        unsafe { precond_optimizer_state_size(o.0, &mut size) },
        PRECOND_OK
    );
    let mut buf = vec![0u8; size];
    let mut written = 0;
    // SAFETY: live handle, `buf` of `size` bytes.
    let st = unsafe { precond_optimizer_save_state(o.0, buf.as_mut_ptr(), size, &mut written) };
    assert_eq!(st, PRECOND_OK);
    let p = new(CFG, N);
    // SAFETY: live handle, `buf` of `written` bytes.
    let st = unsafe { precond_optimizer_load_state(p.0, buf.as_ptr(), written) };
    assert_eq!(st, PRECOND_OK, "{}", handle_msg(p.0));
    assert_eq!(stats(&o, 1, D), stats(&p, 1, D));
}

/// The C++ wrapper's `Optimizer::bnp_observe` / `bnp_stats` (compiled with g++ -std=c++17
/// against `include/` and the static library of this build): the statistics come back as
/// observed with momentum 1, and a wrong `d` or a bad group throws `precond::Error` with the
/// C call's status.
#[test]
fn the_cpp_wrapper_observes_and_reads() {
    let text = common::run_cpp(
        "bnp",
        r#"#include "precond.hpp"
#include <cstdio>
#include <vector>
int main() {
    precond::Optimizer opt(R"({"optimizer": "sgd", "lr": 0.1, "groups": [{"start": 1, "end": 9,
        "shape": [2, 3], "bnp": {"momentum": 1.0, "eps": 0.0}}]})", 10);
    std::vector<double> mean{1.0, -2.0, 0.5}, var{4.0, 0.25, 1.0};
    opt.bnp_observe(0, mean, var);
    precond::BnpStatistics s = opt.bnp_stats(0, 3);
    for (std::size_t j = 0; j < 3; j++) std::printf("stat %zu %.17g %.17g\n", j, s.mean[j], s.var[j]);
    try {
        opt.bnp_stats(0, 4);
    } catch (const precond::Error &e) {
        std::printf("wrong_d %s\n", precond_status_name((int32_t)e.status()));
    }
    try {
        opt.bnp_observe(1, mean, var);
    } catch (const precond::Error &e) {
        std::printf("bad_group %s\n", precond_status_name((int32_t)e.status()));
    }
    try {
        std::vector<double> short_var{1.0};
        opt.bnp_observe(0, mean, short_var);
    } catch (const precond::Error &e) {
        std::printf("short_var %s\n", precond_status_name((int32_t)e.status()));
    }
    std::vector<double> x(10, 0.0), g(10, 1.0);
    opt.step(x, g);
    std::printf("x %.17g %.17g %.17g %.17g\n", x[0], x[1], x[2], x[7]);
    return 0;
}
"#,
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        &lines[..3],
        ["stat 0 1 4", "stat 1 -2 0.25", "stat 2 0.5 1"],
        "{text}"
    );
    assert!(
        text.contains("wrong_d PRECOND_DIMENSION_MISMATCH"),
        "{text}"
    );
    assert!(
        text.contains("bad_group PRECOND_INVALID_ARGUMENT"),
        "{text}"
    );
    assert!(
        text.contains("short_var PRECOND_DIMENSION_MISMATCH"),
        "{text}"
    );
    // P g of unit 0 with g = 1 (closed form, μ = (1, −2, 0.5), σ² = (4, 0.25, 1), eps = 0):
    // w = ((1 − 1)/4, (1 + 2)/0.25, (1 − 0.5)/1) = (0, 12, 0.5), b = 1 − μᵀw = 24.75; x = −0.1 P g;
    // x[0] is outside the group: plain SGD
    let x: Vec<f64> = text
        .lines()
        .find_map(|l| l.strip_prefix("x "))
        .expect("x")
        .split(' ')
        .map(|v| v.parse().expect("number"))
        .collect();
    for (got, want) in x.iter().zip([-0.1, 0.0, -1.2, -2.475]) {
        assert!(
            (got - want).abs() <= 8.0 * f64::EPSILON * want.abs().max(1.0),
            "{got} vs {want}"
        );
    }
}
