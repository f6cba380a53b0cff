//! The C API exercised from Rust through its `extern "C"` functions: every bad input of the C API
//! returns its status code with a message naming the problem, leaves the caller's buffers and
//! the handle unchanged, and the handle stays usable; plus the successful paths (layouts,
//! typed vs JSON configuration, f32, state round trip, per-handle vs thread-local messages).

use std::ffi::{CStr, CString, c_char};
use std::ptr::{null, null_mut};

use precond_ffi::*;
use precond_optim::OptimizerConfig;

use precond_status_t::*;

mod common;
use common::{handle_msg, last};

#[track_caller]
fn expect(st: precond_status_t, want: precond_status_t, msg: &str, needle: &str) {
    assert_eq!(st, want, "message: {msg}");
    assert!(msg.contains(needle), "`{msg}` does not mention `{needle}`");
}

#[derive(Debug)]
struct Opt(*mut precond_optimizer_t);

impl Opt {
    fn json(cfg: &str, n: usize) -> Result<Opt, (precond_status_t, String)> {
        let c = CString::new(cfg).expect("no NUL");
        let mut out = null_mut();
        // SAFETY: valid string and out pointer.
        let st = unsafe { precond_optimizer_new_json(c.as_ptr(), n, &mut out) };
        if st == PRECOND_OK {
            assert!(!out.is_null());
            Ok(Opt(out))
        } else {
            assert!(out.is_null(), "out written on failure");
            Err((st, last()))
        }
    }
    fn step(&self, x: &mut [f64], g: &[f64]) -> precond_status_t {
        assert_eq!(x.len(), g.len(), "test helper: equal lengths");
        // SAFETY: live handle, valid buffers of the given length.
        unsafe { precond_optimizer_step_f64(self.0, x.as_mut_ptr(), g.as_ptr(), x.len()) }
    }
    fn steps(&self) -> u64 {
        let mut s = u64::MAX;
        // SAFETY: live handle.
        assert_eq!(
            unsafe { precond_optimizer_step_count(self.0, &mut s) },
            PRECOND_OK
        );
        s
    }
    fn state(&self) -> Vec<u8> {
        let mut size = 0;
        // SAFETY: live handle.
        assert_eq!(
            unsafe { precond_optimizer_state_size(self.0, &mut size) },
            PRECOND_OK
        );
        let mut buf = vec![0u8; size];
        let mut written = 0;
        // SAFETY: buffer of `size` bytes.
        let st =
            unsafe { precond_optimizer_save_state(self.0, buf.as_mut_ptr(), size, &mut written) };
        assert_eq!(st, PRECOND_OK);
        assert_eq!(written, size);
        buf
    }
    fn load(&self, b: &[u8]) -> precond_status_t {
        // SAFETY: live handle, readable buffer.
        unsafe { precond_optimizer_load_state(self.0, b.as_ptr(), b.len()) }
    }
    fn msg(&self) -> String {
        handle_msg(self.0)
    }
}

impl Drop for Opt {
    fn drop(&mut self) {
        // SAFETY: owned live handle.
        unsafe { precond_optimizer_free(self.0) };
    }
}

// SAFETY (test only): the handle is used by one thread at a time.
unsafe impl Send for Opt {}

fn json_err(cfg: &str, n: usize) -> (precond_status_t, String) {
    match Opt::json(cfg, n) {
        Ok(_) => panic!("{cfg} with n = {n} was accepted"),
        Err(e) => e,
    }
}

// ------------------------------------------------------------------ construction

#[test]
fn constructor_rejections_name_the_problem() {
    let (st, m) = json_err(r#"{"optimizer": "adam", "lr": "#, 4);
    expect(st, PRECOND_PARSE_ERROR, &m, "not valid JSON");
    let (st, m) = json_err(r#"{"optimizer": "adagradd"}"#, 4);
    expect(
        st,
        PRECOND_INVALID_ARGUMENT,
        &m,
        "unknown optimizer `adagradd`",
    );
    let (st, m) = json_err(r#"{"optimizer": "adam", "lr": -0.1}"#, 4);
    expect(st, PRECOND_INVALID_ARGUMENT, &m, "`lr`");
    let (st, m) = json_err(r#"{"optimizer": "adam", "eps": 0}"#, 4);
    expect(st, PRECOND_INVALID_ARGUMENT, &m, "`eps`");
    let (st, m) = json_err(r#"{"optimizer": "rmsprop", "alpha": 1.0}"#, 4);
    expect(st, PRECOND_INVALID_ARGUMENT, &m, "`alpha`");
    let (st, m) = json_err(r#"{"optimizer": "sgd", "nesterov": true}"#, 4);
    expect(st, PRECOND_INVALID_ARGUMENT, &m, "nesterov");
    let (st, m) = json_err(r#"{"optimizer": "sgd", "betas": [0.9, 0.99]}"#, 4);
    expect(st, PRECOND_INVALID_ARGUMENT, &m, "`betas`");
    let (st, m) = json_err(r#"{"optimizer": "adam"}"#, 0);
    expect(st, PRECOND_INVALID_ARGUMENT, &m, "`n_params` is 0");
    let (st, m) = json_err(r#"{"optimizer": "adam", "nonfinite": "ignore"}"#, 4);
    expect(st, PRECOND_INVALID_ARGUMENT, &m, "nonfinite");
    // n_params inconsistent with the groups
    let groups = r#"{"optimizer": "sgd", "lr": 0.1, "groups": [{"start": 2, "end": 9, "lr": 1}]}"#;
    let (st, m) = json_err(groups, 5);
    expect(st, PRECOND_DIMENSION_MISMATCH, &m, "range 2..9");
    assert!(m.contains("0..5"), "{m}");
    let overlap =
        r#"{"optimizer": "sgd", "groups": [{"start": 0, "end": 3}, {"start": 2, "end": 4}]}"#;
    let (st, m) = json_err(overlap, 5);
    expect(st, PRECOND_INVALID_ARGUMENT, &m, "overlap");
    // the same groups fit a larger optimizer
    assert!(Opt::json(groups, 9).is_ok());
    let pgd = r#"{"optimizer": "precond_gd", "preconditioner": {"diag": [1, 2]}}"#;
    let (st, m) = json_err(pgd, 3);
    expect(st, PRECOND_DIMENSION_MISMATCH, &m, "preconditioner");
    // not UTF-8
    let bad = [0xffu8, 0xfe, 0];
    let mut out = null_mut();
    // SAFETY: NUL-terminated bytes.
    let st = unsafe { precond_optimizer_new_json(bad.as_ptr().cast::<c_char>(), 3, &mut out) };
    expect(st, PRECOND_PARSE_ERROR, &last(), "UTF-8");
    // NULLs
    // SAFETY: NULL is checked.
    let st = unsafe { precond_optimizer_new_json(null(), 3, &mut out) };
    expect(st, PRECOND_NULL_POINTER, &last(), "`config_json` is NULL");
    let c = CString::new(r#"{"optimizer": "adam"}"#).expect("cstring");
    // SAFETY: NULL is checked.
    let st = unsafe { precond_optimizer_new_json(c.as_ptr(), 3, null_mut()) };
    expect(st, PRECOND_NULL_POINTER, &last(), "`out` is NULL");
    assert!(out.is_null());
}

type Mutation = fn(&mut precond_optimizer_config_t);

fn config(kind: i32) -> precond_optimizer_config_t {
    let mut c = std::mem::MaybeUninit::<precond_optimizer_config_t>::uninit();
    // SAFETY: writes the whole struct on success.
    let st = unsafe { precond_optimizer_config_init(kind, c.as_mut_ptr()) };
    assert_eq!(st, PRECOND_OK, "{}", last());
    // SAFETY: initialized on success.
    unsafe { c.assume_init() }
}

fn typed(c: &precond_optimizer_config_t, n: usize) -> Result<Opt, (precond_status_t, String)> {
    let mut out = null_mut();
    // SAFETY: valid struct and out pointer.
    let st = unsafe { precond_optimizer_new(c, n, &mut out) };
    if st == PRECOND_OK {
        Ok(Opt(out))
    } else {
        Err((st, last()))
    }
}

#[test]
fn typed_config_defaults_are_torch_defaults_and_fields_are_checked() {
    let adam = config(precond_optimizer_kind_t::PRECOND_ADAM as i32);
    let torch = OptimizerConfig::adam(1e-3);
    assert_eq!(adam.lr.to_bits(), torch.lr.to_bits());
    assert_eq!(adam.beta1.to_bits(), 0.9f64.to_bits());
    assert_eq!(adam.beta2.to_bits(), 0.999f64.to_bits());
    assert_eq!(adam.eps.to_bits(), 1e-8f64.to_bits());
    let adagrad = config(precond_optimizer_kind_t::PRECOND_ADAGRAD as i32);
    assert_eq!(adagrad.lr.to_bits(), 1e-2f64.to_bits());
    assert_eq!(adagrad.eps.to_bits(), 1e-10f64.to_bits());
    let adamw = config(precond_optimizer_kind_t::PRECOND_ADAMW as i32);
    assert_eq!(adamw.weight_decay.to_bits(), 1e-2f64.to_bits());

    let mut c = std::mem::MaybeUninit::<precond_optimizer_config_t>::uninit();
    // SAFETY: out pointer valid; not written on error.
    let st = unsafe { precond_optimizer_config_init(7, c.as_mut_ptr()) };
    expect(st, PRECOND_INVALID_ARGUMENT, &last(), "`kind` is 7");

    let cases: [(&str, Mutation, precond_status_t, &str); 7] = [
        (
            "beta1",
            |c| c.beta1 = 1.0,
            PRECOND_INVALID_ARGUMENT,
            "betas[0]",
        ),
        (
            "lr nan",
            |c| c.lr = f64::NAN,
            PRECOND_INVALID_ARGUMENT,
            "`lr`",
        ),
        (
            "momentum",
            |c| c.momentum = 0.5,
            PRECOND_INVALID_ARGUMENT,
            "`momentum`",
        ),
        (
            "centered",
            |c| c.centered = 1,
            PRECOND_INVALID_ARGUMENT,
            "`centered`",
        ),
        (
            "bool",
            |c| c.maximize = -1,
            PRECOND_INVALID_ARGUMENT,
            "`maximize`",
        ),
        (
            "kind",
            |c| c.kind = 99,
            PRECOND_INVALID_ARGUMENT,
            "`kind` is 99",
        ),
        (
            "diag for adam",
            |c| c.diag_preconditioner_len = 3,
            PRECOND_INVALID_ARGUMENT,
            "diag_preconditioner",
        ),
    ];
    for (name, mutate, want, needle) in cases {
        let mut c = adam;
        mutate(&mut c);
        match typed(&c, 3) {
            Ok(_) => panic!("{name} accepted"),
            Err((st, m)) => expect(st, want, &m, needle),
        }
    }
    // precond GD: NaN in P, and a working one
    let mut pgd = config(precond_optimizer_kind_t::PRECOND_PRECOND_GD as i32);
    let p = [1.0, f64::INFINITY, 2.0];
    pgd.diag_preconditioner = p.as_ptr();
    pgd.diag_preconditioner_len = 3;
    let (st, m) = typed(&pgd, 3).expect_err("inf accepted");
    expect(st, PRECOND_NON_FINITE, &m, "diag_preconditioner[1]");
    let p = [1.0, 0.5, 2.0];
    pgd.diag_preconditioner = p.as_ptr();
    pgd.lr = 0.1;
    let o = typed(&pgd, 3).expect("precond gd");
    let mut x = [0.0; 3];
    assert_eq!(o.step(&mut x, &[1.0, 1.0, 1.0]), PRECOND_OK);
    // x ← x − η P g, exactly
    assert_eq!(
        x.map(f64::to_bits),
        [-0.1f64, -0.05, -0.2].map(f64::to_bits)
    );
    let mut pk = [0.0; 3];
    // SAFETY: buffer of 3.
    assert_eq!(
        unsafe { precond_optimizer_preconditioner(o.0, pk.as_mut_ptr(), 3) },
        PRECOND_OK
    );
    assert_eq!(pk.map(f64::to_bits), p.map(f64::to_bits));
}

#[test]
fn typed_and_json_configs_give_bitwise_identical_trajectories() {
    let mut c = config(precond_optimizer_kind_t::PRECOND_ADAMW as i32);
    c.lr = 0.02;
    c.weight_decay = 0.05;
    c.amsgrad = 1;
    let a = typed(&c, 5).expect("typed");
    let b = Opt::json(
        r#"{"optimizer": "adamw", "lr": 0.02, "weight_decay": 0.05, "amsgrad": true}"#,
        5,
    )
    .expect("json");
    let mut xa = [1.0, -2.0, 3.0, 0.5, -0.25];
    let mut xb = xa;
    for k in 0..20 {
        let g: Vec<f64> = xa
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64 + 1.0) * v + 0.1 * k as f64)
            .collect();
        assert_eq!(a.step(&mut xa, &g), PRECOND_OK);
        assert_eq!(b.step(&mut xb, &g), PRECOND_OK);
    }
    assert_eq!(xa.map(f64::to_bits), xb.map(f64::to_bits));
}

// ------------------------------------------------------------------ stepping

#[test]
fn bad_steps_leave_params_state_and_handle_untouched() {
    let o = Opt::json(r#"{"optimizer": "adam", "lr": 0.1}"#, 4).expect("adam");
    let reference = Opt::json(r#"{"optimizer": "adam", "lr": 0.1}"#, 4).expect("adam");
    let mut x = [1.0, 2.0, 3.0, 4.0];
    let mut xr = x;
    let g = [0.5, -1.0, 2.0, 0.25];
    assert_eq!(o.step(&mut x, &g), PRECOND_OK);
    assert_eq!(reference.step(&mut xr, &g), PRECOND_OK);
    let state = o.state();
    let x0 = x;
    for (i, bad) in [
        (1usize, f64::NAN),
        (3, f64::INFINITY),
        (0, f64::NEG_INFINITY),
    ] {
        let mut gb = g;
        gb[i] = bad;
        let st = o.step(&mut x, &gb);
        expect(st, PRECOND_NON_FINITE, &o.msg(), &format!("index {i}"));
        assert_eq!(last(), o.msg(), "both messages are set");
        assert_eq!(x.map(f64::to_bits), x0.map(f64::to_bits));
    }
    // zero and mismatched lengths
    // SAFETY: buffers valid for the lengths that are read (none on error).
    let st = unsafe { precond_optimizer_step_f64(o.0, x.as_mut_ptr(), g.as_ptr(), 3) };
    expect(
        st,
        PRECOND_DIMENSION_MISMATCH,
        &o.msg(),
        "`n` is 3 but the optimizer has n_params = 4",
    );
    // SAFETY: as above.
    let st = unsafe { precond_optimizer_step_f64(o.0, x.as_mut_ptr(), g.as_ptr(), 0) };
    expect(st, PRECOND_DIMENSION_MISMATCH, &o.msg(), "`n` is 0");
    // SAFETY: NULL checked.
    let st = unsafe { precond_optimizer_step_f64(o.0, null_mut(), g.as_ptr(), 4) };
    expect(st, PRECOND_NULL_POINTER, &o.msg(), "`params` is NULL");
    // SAFETY: NULL checked.
    let st = unsafe { precond_optimizer_step_f64(o.0, x.as_mut_ptr(), null(), 4) };
    expect(st, PRECOND_NULL_POINTER, &o.msg(), "`grads` is NULL");
    // SAFETY: overlap is detected before any slice is formed.
    let st = unsafe { precond_optimizer_step_f64(o.0, x.as_mut_ptr(), x.as_ptr().add(1), 4) };
    expect(st, PRECOND_INVALID_ARGUMENT, &o.msg(), "overlap");
    // a buffer one byte past an 8-byte boundary, either argument (checked before any slice is
    // formed; the valid one is left untouched)
    let mut raw = [0u8; 48];
    let mis = raw
        .as_mut_ptr()
        .wrapping_add(raw.as_ptr().align_offset(8) + 1)
        .cast::<f64>();
    // SAFETY: the misaligned pointer is refused before it is read.
    let st = unsafe { precond_optimizer_step_f64(o.0, mis, g.as_ptr(), 4) };
    expect(
        st,
        PRECOND_INVALID_ARGUMENT,
        &o.msg(),
        "argument `params` is not aligned to 8 bytes",
    );
    // SAFETY: as above.
    let st = unsafe { precond_optimizer_step_f64(o.0, x.as_mut_ptr(), mis.cast_const(), 4) };
    expect(
        st,
        PRECOND_INVALID_ARGUMENT,
        &o.msg(),
        "argument `grads` is not aligned to 8 bytes",
    );
    assert!(raw.iter().all(|&b| b == 0));
    let mut xf = [1.0f32; 4];
    // SAFETY: valid f32 buffers.
    let st = unsafe { precond_optimizer_step_f32(o.0, xf.as_mut_ptr(), [1.0f32; 4].as_ptr(), 4) };
    expect(st, PRECOND_INVALID_ARGUMENT, &o.msg(), "dtype");
    assert_eq!(xf.map(f32::to_bits), [1.0f32; 4].map(f32::to_bits));
    // NULL handle
    // SAFETY: NULL checked.
    let st = unsafe { precond_optimizer_step_f64(null_mut(), x.as_mut_ptr(), g.as_ptr(), 4) };
    expect(st, PRECOND_NULL_POINTER, &last(), "`opt` is NULL");

    assert_eq!(x.map(f64::to_bits), x0.map(f64::to_bits));
    assert_eq!(o.state(), state, "state untouched by every failed call");
    assert_eq!(o.steps(), 1);
    // still usable: continues exactly like an optimizer that never saw the bad calls
    assert_eq!(o.step(&mut x, &g), PRECOND_OK);
    assert_eq!(reference.step(&mut xr, &g), PRECOND_OK);
    assert_eq!(x.map(f64::to_bits), xr.map(f64::to_bits));
}

fn last_nonfinite(o: &Opt) -> (i32, usize) {
    let (mut found, mut index) = (-1i32, usize::MAX);
    // SAFETY: live handle, writable outputs.
    let st = unsafe { precond_optimizer_last_nonfinite(o.0, &mut found, &mut index) };
    assert_eq!(st, PRECOND_OK);
    (found, index)
}

/// The three non-finite policies through the C ABI, against the Rust optimizer built from the
/// same JSON: `"error"` fails and changes nothing, `"skip"` returns OK and changes nothing,
/// `"propagate"` applies torch's update (NaN/Inf into the parameters, bit-identical to the Rust
/// API's) and counts the step; `precond_optimizer_last_nonfinite` reports the first bad index
/// of the most recent successful step (and 0 after a clean one); its pointer errors write nothing.
#[test]
fn nonfinite_policies_and_last_nonfinite() {
    let good = [0.1, -0.2, 0.3, -0.4];
    let bad = [0.1, f64::NAN, 0.3, f64::INFINITY];
    for policy in ["error", "skip", "propagate"] {
        let cfg = format!(r#"{{"optimizer": "adam", "lr": 0.1, "nonfinite": "{policy}"}}"#);
        let o = Opt::json(&cfg, 4).expect("valid config");
        let mut reference = OptimizerConfig::from_json(&cfg)
            .expect("valid")
            .build(4)
            .expect("builds");
        let mut x = [1.0, 2.0, 3.0, 4.0];
        let mut xr = x;
        assert_eq!(last_nonfinite(&o), (0, 0), "{policy}: before any step");
        assert_eq!(o.step(&mut x, &good), PRECOND_OK);
        reference.step(&mut xr, &good).expect("clean step");
        assert_eq!(last_nonfinite(&o), (0, 0), "{policy}: clean step");
        let before = x;
        let st = o.step(&mut x, &bad);
        let outcome = reference.step(&mut xr, &bad);
        match policy {
            "error" => {
                expect(st, PRECOND_NON_FINITE, &o.msg(), "index 1");
                assert!(outcome.is_err());
                assert_eq!(x.map(f64::to_bits), before.map(f64::to_bits));
                assert_eq!(o.steps(), 1);
                // the failed call is not a successful step: the record is the clean one's
                assert_eq!(last_nonfinite(&o), (0, 0));
            }
            "skip" => {
                assert_eq!(st, PRECOND_OK);
                assert_eq!(x.map(f64::to_bits), before.map(f64::to_bits));
                assert_eq!(o.steps(), 1);
                assert_eq!(last_nonfinite(&o), (1, 1));
            }
            _ => {
                assert_eq!(st, PRECOND_OK);
                assert_eq!(outcome.expect("applied").nonfinite_index, Some(1));
                assert!(x[1].is_nan() && !x[3].is_finite(), "{x:?}");
                for (a, b) in x.iter().zip(&xr) {
                    assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
                }
                assert_eq!(o.steps(), 2);
                assert_eq!(last_nonfinite(&o), (1, 1));
            }
        }
        if policy == "skip" {
            assert_eq!(o.step(&mut x, &good), PRECOND_OK);
            assert_eq!(last_nonfinite(&o), (0, 0), "a clean step clears the record");
        }
        let (mut found, mut index) = (7i32, 7usize);
        // SAFETY: NULL outputs are the error under test; `index` is writable.
        let st = unsafe { precond_optimizer_last_nonfinite(o.0, null_mut(), &mut index) };
        expect(st, PRECOND_NULL_POINTER, &last(), "found");
        assert_eq!(index, 7, "nothing written on error");
        // SAFETY: as above, with `found` writable.
        let st = unsafe { precond_optimizer_last_nonfinite(o.0, &mut found, null_mut()) };
        expect(st, PRECOND_NULL_POINTER, &last(), "index");
        assert_eq!(found, 7, "nothing written on error");
    }
    let (mut found, mut index) = (0i32, 0usize);
    // SAFETY: a NULL handle is the error under test.
    let st = unsafe { precond_optimizer_last_nonfinite(null(), &mut found, &mut index) };
    expect(st, PRECOND_NULL_POINTER, &last(), "opt");
}

#[test]
fn learning_rate_get_set_and_rejections() {
    let o = Opt::json(r#"{"optimizer": "sgd", "lr": 0.5}"#, 2).expect("sgd");
    let mut lr = 0.0;
    // SAFETY: live handle, valid out.
    assert_eq!(
        unsafe { precond_optimizer_get_lr(o.0, &mut lr) },
        PRECOND_OK
    );
    assert_eq!(lr.to_bits(), 0.5f64.to_bits());
    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        // SAFETY: live handle.
        let st = unsafe { precond_optimizer_set_lr(o.0, bad) };
        expect(st, PRECOND_INVALID_ARGUMENT, &o.msg(), "`lr`");
    }
    // SAFETY: live handle.
    assert_eq!(
        unsafe { precond_optimizer_get_lr(o.0, &mut lr) },
        PRECOND_OK
    );
    assert_eq!(lr.to_bits(), 0.5f64.to_bits());
    // SAFETY: live handle.
    assert_eq!(unsafe { precond_optimizer_set_lr(o.0, 0.25) }, PRECOND_OK);
    let mut x = [1.0, 1.0];
    assert_eq!(o.step(&mut x, &[1.0, -2.0]), PRECOND_OK);
    assert_eq!(x.map(f64::to_bits), [0.75f64, 1.5].map(f64::to_bits));
    let mut cur = 0.0;
    // SAFETY: live handle.
    assert_eq!(
        unsafe { precond_optimizer_current_lr(o.0, &mut cur) },
        PRECOND_OK
    );
    assert_eq!(cur.to_bits(), 0.25f64.to_bits());
    let mut n = 0;
    // SAFETY: live handle.
    assert_eq!(
        unsafe { precond_optimizer_n_params(o.0, &mut n) },
        PRECOND_OK
    );
    assert_eq!(n, 2);
    // SAFETY: NULL out checked.
    let st = unsafe { precond_optimizer_get_lr(o.0, null_mut()) };
    expect(st, PRECOND_NULL_POINTER, &o.msg(), "`lr` is NULL");
}

#[test]
fn preconditioner_is_adams_and_checks_its_buffer() {
    let o = Opt::json(r#"{"optimizer": "adam", "lr": 0.1, "eps": 1e-8}"#, 3).expect("adam");
    let mut p = [-7.0; 3];
    // SAFETY: 3 doubles.
    let st = unsafe { precond_optimizer_preconditioner(o.0, p.as_mut_ptr(), 3) };
    expect(
        st,
        PRECOND_NUMERICAL_FAILURE,
        &o.msg(),
        "undefined before the first step",
    );
    assert_eq!(p.map(f64::to_bits), [-7.0f64; 3].map(f64::to_bits));
    let mut x = [0.0; 3];
    let g = [2.0, -0.5, 4.0];
    assert_eq!(o.step(&mut x, &g), PRECOND_OK);
    // SAFETY: 2 < 3 doubles, rejected before writing.
    let st = unsafe { precond_optimizer_preconditioner(o.0, p.as_mut_ptr(), 2) };
    expect(
        st,
        PRECOND_DIMENSION_MISMATCH,
        &o.msg(),
        "`out` has length 2, expected 3",
    );
    assert_eq!(p.map(f64::to_bits), [-7.0f64; 3].map(f64::to_bits));
    // SAFETY: 3 doubles.
    assert_eq!(
        unsafe { precond_optimizer_preconditioner(o.0, p.as_mut_ptr(), 3) },
        PRECOND_OK
    );
    // after one step v̂_1 = g², so P = 1/(|g| + eps) (THEORY.md §4)
    for (pi, gi) in p.iter().zip(g) {
        let want = 1.0 / (gi.abs() + 1e-8);
        assert!(
            (pi - want).abs() <= 4.0 * f64::EPSILON * want,
            "{pi} vs {want}"
        );
    }
}

// ------------------------------------------------------------------ state

#[test]
fn state_round_trip_and_every_rejection() {
    let o = Opt::json(r#"{"optimizer": "adam", "lr": 0.05}"#, 3).expect("adam");
    let mut x = [1.0, -1.0, 0.5];
    let g = [0.3, 0.2, -0.1];
    assert_eq!(o.step(&mut x, &g), PRECOND_OK);
    let saved = o.state();
    let x_saved = x;
    assert_eq!(o.step(&mut x, &g), PRECOND_OK);
    let x_two = x;

    // truncated, trailing, bad magic, other version, other optimizer, other size
    let st = o.load(&saved[..saved.len() - 1]);
    expect(st, PRECOND_INVALID_STATE, &o.msg(), "bytes");
    let st = o.load(&saved[..4]);
    expect(st, PRECOND_INVALID_STATE, &o.msg(), "magic");
    let mut longer = saved.clone();
    longer.push(0);
    expect(o.load(&longer), PRECOND_INVALID_STATE, &o.msg(), "bytes");
    let mut magic = saved.clone();
    magic[0] ^= 0xff;
    expect(o.load(&magic), PRECOND_INVALID_STATE, &o.msg(), "bad magic");
    let mut version = saved.clone();
    version[8..12].copy_from_slice(&7u32.to_le_bytes());
    expect(
        o.load(&version),
        PRECOND_INVALID_STATE,
        &o.msg(),
        "format version 7",
    );
    let rms = Opt::json(r#"{"optimizer": "rmsprop"}"#, 3).expect("rmsprop");
    let mut xr = [0.0; 3];
    assert_eq!(rms.step(&mut xr, &g), PRECOND_OK);
    expect(
        o.load(&rms.state()),
        PRECOND_INVALID_STATE,
        &o.msg(),
        "layout `rmsprop",
    );
    let big = Opt::json(r#"{"optimizer": "adam"}"#, 4).expect("adam 4");
    let mut x4 = [0.0; 4];
    assert_eq!(big.step(&mut x4, &[1.0; 4]), PRECOND_OK);
    expect(
        o.load(&big.state()),
        PRECOND_INVALID_STATE,
        &o.msg(),
        "4 parameters",
    );
    // SAFETY: NULL checked.
    let st = unsafe { precond_optimizer_load_state(o.0, null(), 10) };
    expect(st, PRECOND_NULL_POINTER, &o.msg(), "`buf` is NULL");
    // save into a buffer that is too small: untouched
    let mut small = [0xabu8; 8];
    let mut written = 12345;
    // SAFETY: 8 writable bytes.
    let st = unsafe { precond_optimizer_save_state(o.0, small.as_mut_ptr(), 8, &mut written) };
    expect(st, PRECOND_DIMENSION_MISMATCH, &o.msg(), "needs");
    assert_eq!((small, written), ([0xabu8; 8], 12345));

    // the rejected loads changed nothing: state is still the two-step one
    assert_eq!(o.steps(), 2);
    // loading the saved state replays the second step bit for bit
    assert_eq!(o.load(&saved), PRECOND_OK);
    assert_eq!(o.steps(), 1);
    let mut y = x_saved;
    assert_eq!(o.step(&mut y, &g), PRECOND_OK);
    assert_eq!(y.map(f64::to_bits), x_two.map(f64::to_bits));
    // reset: back to step 0, Adam's P undefined again, f32 now allowed
    // SAFETY: live handle.
    assert_eq!(unsafe { precond_optimizer_reset(o.0) }, PRECOND_OK);
    assert_eq!(o.steps(), 0);
    let mut xf = [1.0f32, 2.0, 3.0];
    // SAFETY: f32 buffers of 3.
    let st =
        unsafe { precond_optimizer_step_f32(o.0, xf.as_mut_ptr(), [1.0f32, 1.0, 1.0].as_ptr(), 3) };
    assert_eq!(st, PRECOND_OK, "{}", o.msg());
    assert!(xf[0] < 1.0 && xf[2] < 3.0);
}

// ------------------------------------------------------------------ messages and threads

#[test]
fn messages_are_per_handle_and_per_thread() {
    let a = Opt::json(r#"{"optimizer": "sgd"}"#, 2).expect("a");
    let b = Opt::json(r#"{"optimizer": "sgd"}"#, 3).expect("b");
    assert_eq!(a.msg(), "");
    let mut x = [0.0; 3];
    assert_eq!(a.step(&mut x[..2], &[f64::NAN, 0.0]), PRECOND_NON_FINITE);
    assert_eq!(b.step(&mut x[..2], &[1.0, 2.0]), PRECOND_DIMENSION_MISMATCH);
    assert!(a.msg().contains("non-finite"), "{}", a.msg());
    assert!(
        b.msg().contains("length mismatch") || b.msg().contains("`n`"),
        "{}",
        b.msg()
    );
    // the handle carries its message to another thread (a migrating Julia task)
    let moved = std::thread::spawn(move || {
        let m = a.msg();
        let own = last();
        (m, own, a)
    });
    let (m, other_thread_last, a) = moved.join().expect("thread");
    assert!(m.contains("non-finite"));
    assert_eq!(
        other_thread_last, "",
        "thread-local messages do not leak across threads"
    );
    drop(a);
    // NULL handle: a static message
    assert!(handle_msg(null()).contains("NULL"));
    precond_clear_last_error();
    assert_eq!(last(), "");
    // SAFETY: static strings.
    let name = unsafe { CStr::from_ptr(precond_status_name(PRECOND_INVALID_STATE as i32)) };
    assert_eq!(name.to_str().ok(), Some("PRECOND_INVALID_STATE"));
}

// ------------------------------------------------------------------ diagnostics

const A: [f64; 6] = [3.0, 1.0, 0.0, 1.0, 2.0, 0.5]; // 2 x 3 row-major

fn cond2_of(a: &[f64], r: usize, c: usize, layout: i32) -> (precond_status_t, precond_cond2_t) {
    let mut out = precond_cond2_t::default();
    // SAFETY: a holds r*c values (or the call fails before reading).
    let st = unsafe { precond_cond2(a.as_ptr(), r, c, layout, &mut out) };
    (st, out)
}

#[test]
fn layouts_agree_and_match_closed_forms() {
    // row-major 2 x 3 and its column-major copy give the same κ
    let col: Vec<f64> = (0..3)
        .flat_map(|j| (0..2).map(move |i| A[i * 3 + j]))
        .collect();
    let (s1, c1) = cond2_of(&A, 2, 3, 0);
    let (s2, c2) = cond2_of(&col, 2, 3, 1);
    assert_eq!((s1, s2), (PRECOND_OK, PRECOND_OK));
    assert_eq!(c1.kappa.to_bits(), c2.kappa.to_bits());
    // closed form: for A Aᵀ = [[10, 5], [5, 5.25]], σ² are its eigenvalues
    let (t, d) = (15.25f64, 10.0 * 5.25 - 25.0);
    let disc = (t * t / 4.0 - d).sqrt();
    let want = ((t / 2.0 + disc) / (t / 2.0 - disc)).sqrt();
    assert!(
        (c1.kappa - want).abs() <= 1e-13 * want,
        "{} vs {want}",
        c1.kappa
    );
    assert_eq!(c1.rank_deficient, 0);

    // symmetric eigenvalues of [[2, 1], [1, 2]] are 1 and 3
    let h = [2.0, 1.0, 1.0, 2.0];
    let mut ev = [0.0; 2];
    let mut s = precond_spectrum_t::default();
    // SAFETY: buffers of the right sizes.
    let st = unsafe { precond_sym_eigenvalues(h.as_ptr(), 2, 1, ev.as_mut_ptr(), 2, &mut s) };
    assert_eq!(st, PRECOND_OK);
    assert!(
        (ev[0] - 1.0).abs() < 1e-14 && (ev[1] - 3.0).abs() < 1e-14,
        "{ev:?}"
    );
    assert!((s.kappa - 3.0).abs() < 1e-14 && s.positive_definite == 1 && s.has_positive == 1);
    // singular: smallest positive eigenvalue replaces λ_min (Theorem 1)
    let sing = [1.0, 1.0, 1.0, 1.0];
    // SAFETY: as above.
    let st = unsafe { precond_sym_eigenvalues(sing.as_ptr(), 2, 0, ev.as_mut_ptr(), 2, &mut s) };
    assert_eq!(st, PRECOND_OK);
    assert!(s.kappa.is_infinite() && s.positive_definite == 0);
    assert!((s.smallest_positive - 2.0).abs() < 1e-14 && (s.kappa_positive - 1.0).abs() < 1e-14);

    // P = diag(1/h_ii) on H = D K D recovers κ(K) exactly; κ(PH) = κ₂(D⁻² D K D) reported too
    let d = [1.0, 10.0];
    let h = [
        d[0] * d[0] * 2.0,
        d[0] * d[1],
        d[1] * d[0],
        d[1] * d[1] * 2.0,
    ];
    let p = [1.0 / h[0], 1.0 / h[3]];
    let mut pc = precond_preconditioned_cond_t::default();
    // SAFETY: buffers of the right sizes.
    let st = unsafe { precond_preconditioned_cond_diag(h.as_ptr(), 2, 0, p.as_ptr(), 2, &mut pc) };
    assert_eq!(st, PRECOND_OK);
    assert!(
        (pc.spectral_kappa - 3.0).abs() < 1e-13,
        "{}",
        pc.spectral_kappa
    );
    assert!(pc.row_scaled_kappa2 >= pc.spectral_kappa - 1e-12);

    // row and column equilibration: unit row / column norms, scaled matrix in the input layout
    let mut scale = [0.0; 2];
    let mut scaled = [0.0; 6];
    // SAFETY: buffers of the right sizes.
    let st = unsafe {
        precond_row_equilibrate(
            A.as_ptr(),
            2,
            3,
            0,
            scale.as_mut_ptr(),
            2,
            scaled.as_mut_ptr(),
            6,
        )
    };
    assert_eq!(st, PRECOND_OK);
    assert!((scale[0] - 1.0 / 10f64.sqrt()).abs() < 1e-15);
    for i in 0..2 {
        let n: f64 = scaled[i * 3..i * 3 + 3].iter().map(|v| v * v).sum();
        assert!((n - 1.0).abs() < 1e-14);
    }
    let mut cs = [0.0; 3];
    // SAFETY: buffers of the right sizes; `scaled` may be NULL.
    let st = unsafe {
        precond_col_equilibrate(col.as_ptr(), 2, 3, 1, cs.as_mut_ptr(), 3, null_mut(), 0)
    };
    assert_eq!(st, PRECOND_OK);
    assert!((cs[0] - 1.0 / 10f64.sqrt()).abs() < 1e-15 && (cs[2] - 2.0).abs() < 1e-15);

    // the estimate is exact for a diagonal matrix: κ₁(diag(1, 100)) = 100
    let dm = [1.0, 0.0, 0.0, 100.0];
    for method in [0, 1] {
        let mut e = precond_cond_estimate_t::default();
        // SAFETY: 4 doubles.
        let st = unsafe { precond_cond_estimate(dm.as_ptr(), 2, 0, method, &mut e) };
        assert_eq!(st, PRECOND_OK);
        assert!((e.kappa1_estimate - 100.0).abs() < 1e-12, "{e:?}");
    }
}

#[test]
fn diagnostic_rejections_leave_outputs_untouched() {
    let sentinel = precond_cond2_t {
        sigma_max: -1.0,
        sigma_min: -2.0,
        kappa: -3.0,
        rank_deficient: 7,
    };
    let run = |a: &[f64], r, c, layout| {
        let mut out = sentinel;
        // SAFETY: the pointer is valid for the (checked) length or the call fails first.
        let st = unsafe { precond_cond2(a.as_ptr(), r, c, layout, &mut out) };
        assert_eq!(out, sentinel, "output written on failure");
        (st, last())
    };
    let (st, m) = run(&A, 2, 3, 2);
    expect(st, PRECOND_INVALID_ARGUMENT, &m, "`layout` is 2");
    let (st, m) = run(&A, 0, 3, 0);
    expect(st, PRECOND_INVALID_ARGUMENT, &m, "empty");
    let (st, m) = run(&A, 2, 0, 0);
    expect(st, PRECOND_INVALID_ARGUMENT, &m, "empty");
    let (st, m) = run(&A, usize::MAX, 2, 0);
    expect(st, PRECOND_DIMENSION_MISMATCH, &m, "overflow");
    let mut nan = A;
    nan[4] = f64::NAN;
    let (st, m) = run(&nan, 2, 3, 0);
    expect(st, PRECOND_NON_FINITE, &m, "row 1, column 1");
    let (st, m) = run(&nan, 3, 2, 1);
    expect(st, PRECOND_NON_FINITE, &m, "row 1, column 1");
    let mut out = sentinel;
    // SAFETY: NULL checked.
    let st = unsafe { precond_cond2(null(), 2, 3, 0, &mut out) };
    expect(st, PRECOND_NULL_POINTER, &last(), "`a` is NULL");
    // SAFETY: NULL out checked.
    let st = unsafe { precond_cond2(A.as_ptr(), 2, 3, 0, null_mut()) };
    expect(st, PRECOND_NULL_POINTER, &last(), "`out` is NULL");
    // misaligned input
    let bytes = [0u8; 64];
    // SAFETY: alignment is checked before any read.
    let st = unsafe { precond_cond2(bytes.as_ptr().add(1).cast::<f64>(), 2, 2, 0, &mut out) };
    expect(st, PRECOND_INVALID_ARGUMENT, &last(), "aligned");
    // an output inside the input matrix (read in place, not copied): refused, nothing written
    let mut h = [4.0, 1.0, 0.0, 1.0, 3.0, 0.0, 0.0, 0.0, 2.0, 9.0, 9.0, 9.0];
    let before = h.map(f64::to_bits);
    let hp = h.as_mut_ptr();
    // SAFETY: `h` has 12 doubles: the 3 × 3 matrix and 3 more; the overlap is the error under test.
    let st = unsafe { precond_sym_eigenvalues(hp, 3, 0, hp.add(6), 3, null_mut()) };
    expect(
        st,
        PRECOND_INVALID_ARGUMENT,
        &last(),
        "`eigenvalues` overlaps",
    );
    assert_eq!(h.map(f64::to_bits), before);
    // SAFETY: as above, the output just past the matrix is fine.
    let st = unsafe { precond_sym_eigenvalues(hp, 3, 0, hp.add(9), 3, null_mut()) };
    assert_eq!(st, PRECOND_OK, "{}", last());
    let mut scale = [0.0; 3];
    // SAFETY: `scaled` aliases the input, the error under test.
    let st = unsafe { precond_row_equilibrate(hp, 3, 3, 0, scale.as_mut_ptr(), 3, hp, 9) };
    expect(st, PRECOND_INVALID_ARGUMENT, &last(), "`scaled` overlaps");
    assert_eq!(
        h[..9].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        before[..9]
    );

    // eigenvalues: wrong output length, non-symmetric, NaN
    let mut ev = [-9.0; 3];
    let h = [2.0, 1.0, 1.0, 2.0];
    // SAFETY: 3 writable doubles, rejected before writing.
    let st = unsafe { precond_sym_eigenvalues(h.as_ptr(), 2, 0, ev.as_mut_ptr(), 3, null_mut()) };
    expect(
        st,
        PRECOND_DIMENSION_MISMATCH,
        &last(),
        "`eigenvalues` has length 3, expected 2",
    );
    let ns = [2.0, 1.0, 0.0, 2.0];
    // SAFETY: as above.
    let st = unsafe { precond_sym_eigenvalues(ns.as_ptr(), 2, 0, ev.as_mut_ptr(), 2, null_mut()) };
    expect(st, PRECOND_INVALID_ARGUMENT, &last(), "not symmetric");
    assert_eq!(ev.map(f64::to_bits), [-9.0f64; 3].map(f64::to_bits));
    // preconditioned κ: p length, p ≤ 0, p NaN
    let mut pc = precond_preconditioned_cond_t::default();
    for (p, len, want, needle) in [
        (
            [1.0, 1.0],
            1usize,
            PRECOND_DIMENSION_MISMATCH,
            "`p` has length 1",
        ),
        ([1.0, 0.0], 2, PRECOND_INVALID_ARGUMENT, "entry 1 is 0"),
        ([f64::NAN, 1.0], 2, PRECOND_NON_FINITE, "row 0"),
    ] {
        // SAFETY: p has 2 doubles.
        let st =
            unsafe { precond_preconditioned_cond_diag(h.as_ptr(), 2, 0, p.as_ptr(), len, &mut pc) };
        expect(st, want, &last(), needle);
        assert_eq!(pc, precond_preconditioned_cond_t::default());
    }
    // equilibration of a matrix with a zero column; estimate of a non-SPD matrix; bad method
    let zc = [1.0, 0.0, 2.0, 0.0];
    let mut s = [-1.0; 2];
    // SAFETY: buffers of the right size.
    let st =
        unsafe { precond_col_equilibrate(zc.as_ptr(), 2, 2, 0, s.as_mut_ptr(), 2, null_mut(), 0) };
    expect(
        st,
        PRECOND_NUMERICAL_FAILURE,
        &last(),
        "entry 1 has zero norm",
    );
    assert_eq!(s.map(f64::to_bits), [-1.0f64; 2].map(f64::to_bits));
    let mut big = [0.0; 5];
    // SAFETY: buffers of the stated sizes; rejected before writing.
    let st = unsafe {
        precond_row_equilibrate(zc.as_ptr(), 2, 2, 0, s.as_mut_ptr(), 2, big.as_mut_ptr(), 5)
    };
    expect(
        st,
        PRECOND_DIMENSION_MISMATCH,
        &last(),
        "`scaled` has length 5, expected 4",
    );
    let mut e = precond_cond_estimate_t::default();
    let indefinite = [1.0, 3.0, 3.0, 1.0];
    // SAFETY: 4 doubles.
    let st = unsafe { precond_cond_estimate(indefinite.as_ptr(), 2, 0, 1, &mut e) };
    expect(
        st,
        PRECOND_NUMERICAL_FAILURE,
        &last(),
        "not positive definite",
    );
    // SAFETY: 4 doubles.
    let st = unsafe { precond_cond_estimate(indefinite.as_ptr(), 2, 0, -1, &mut e) };
    expect(st, PRECOND_INVALID_ARGUMENT, &last(), "`method` is -1");
    // SAFETY: 4 doubles; LU handles indefinite matrices.
    let st = unsafe { precond_cond_estimate(indefinite.as_ptr(), 2, 0, 0, &mut e) };
    assert_eq!(st, PRECOND_OK);
    // κ₁ of [[1,3],[3,1]]: ‖A‖₁ = 4, A⁻¹ = [[-1,3],[3,-1]]/8, ‖A⁻¹‖₁ = 1/2
    assert!((e.kappa1_estimate - 2.0).abs() < 1e-14, "{e:?}");
}

#[test]
fn dataset_kappa_theorem6_and_rejections() {
    // 6 samples x 2 features with very different scales, one row per sample
    let x = [
        1.0, 1000.0, 2.0, 1500.0, 3.0, 800.0, 4.0, 2100.0, 5.0, 1200.0, 6.0, 1700.0,
    ];
    let mut k = precond_dataset_kappa_t::default();
    // SAFETY: 12 doubles.
    let st = unsafe { precond_dataset_kappa(x.as_ptr(), 6, 2, 0, &mut k) };
    assert_eq!(st, PRECOND_OK, "{}", last());
    assert!((k.sqrt_d_plus_1 - 3f64.sqrt()).abs() < 1e-15);
    // Theorem 6 (23) with D = D_0, and (22)
    assert!(k.kappa_standardized <= k.sqrt_d_plus_1 * k.kappa_van_der_sluis * (1.0 + 1e-12));
    assert!(k.kappa_centred <= k.kappa_raw * (1.0 + 1e-12));
    assert!(k.kappa_standardized * 100.0 < k.kappa_raw, "{k:?}");
    // the column-major copy gives the same numbers
    let col: Vec<f64> = (0..2)
        .flat_map(|j| (0..6).map(move |i| x[i * 2 + j]))
        .collect();
    let mut k2 = precond_dataset_kappa_t::default();
    // SAFETY: 12 doubles.
    assert_eq!(
        unsafe { precond_dataset_kappa(col.as_ptr(), 6, 2, 1, &mut k2) },
        PRECOND_OK
    );
    assert_eq!(k.kappa_raw.to_bits(), k2.kappa_raw.to_bits());
    assert_eq!(
        k.kappa_standardized.to_bits(),
        k2.kappa_standardized.to_bits()
    );
    // standardized features are orthogonal to 1 and have norm sqrt(N): with uncorrelated
    // features (here: two centred orthogonal columns) κ of the standardized extended matrix is 1
    let ortho = [1.0, 1.0, -1.0, 1.0, 1.0, -1.0, -1.0, -1.0];
    // SAFETY: 8 doubles.
    assert_eq!(
        unsafe { precond_dataset_kappa(ortho.as_ptr(), 4, 2, 0, &mut k2) },
        PRECOND_OK
    );
    assert!((k2.kappa_standardized - 1.0).abs() < 1e-14, "{k2:?}");
    // a constant feature makes the centred matrix singular: κ = ∞, not an error
    let constant = [1.0, 5.0, 2.0, 5.0, 3.0, 5.0];
    // SAFETY: 6 doubles.
    assert_eq!(
        unsafe { precond_dataset_kappa(constant.as_ptr(), 3, 2, 0, &mut k2) },
        PRECOND_OK
    );
    assert!(k2.kappa_centred.is_infinite());
    // rejections
    let before = k;
    let mut nan = x;
    nan[5] = f64::INFINITY;
    // SAFETY: 12 doubles.
    let st = unsafe { precond_dataset_kappa(nan.as_ptr(), 6, 2, 0, &mut k) };
    expect(st, PRECOND_NON_FINITE, &last(), "row 2, column 1");
    // SAFETY: zero samples rejected before reading.
    let st = unsafe { precond_dataset_kappa(x.as_ptr(), 0, 2, 0, &mut k) };
    expect(st, PRECOND_INVALID_ARGUMENT, &last(), "empty");
    // SAFETY: NULL checked.
    let st = unsafe { precond_dataset_kappa(null(), 6, 2, 0, &mut k) };
    expect(st, PRECOND_NULL_POINTER, &last(), "`x` is NULL");
    // SAFETY: layout checked first.
    let st = unsafe { precond_dataset_kappa(x.as_ptr(), 6, 2, 5, &mut k) };
    expect(st, PRECOND_INVALID_ARGUMENT, &last(), "`layout` is 5");
    assert_eq!(k, before);
}

#[test]
fn version_function_agrees_with_the_crate() {
    // SAFETY: static string.
    let v = unsafe { CStr::from_ptr(precond_version()) };
    assert_eq!(v.to_str().ok(), Some(env!("CARGO_PKG_VERSION")));
    let header = include_str!("../../../include/precond.h");
    assert!(header.contains(&format!(
        "#define PRECOND_VERSION_NUMBER {}\n",
        precond_version_number()
    )));
}

#[test]
fn distinct_handles_and_diagnostics_run_concurrently() {
    let run = |seed: usize| -> (Vec<u64>, String) {
        let o = Opt::json(r#"{"optimizer": "rmsprop", "lr": 0.01}"#, 8).expect("rmsprop");
        let mut x: Vec<f64> = (0..8).map(|i| (i + seed) as f64 * 0.1).collect();
        for k in 0..50 {
            let g: Vec<f64> = x.iter().map(|v| v * (1.0 + k as f64 * 0.01)).collect();
            assert_eq!(o.step(&mut x, &g), PRECOND_OK);
        }
        let (st, _) = cond2_of(&A, 2, 3, 9);
        assert_eq!(st, PRECOND_INVALID_ARGUMENT);
        (x.iter().map(|v| v.to_bits()).collect(), last())
    };
    let sequential: Vec<_> = (0..4).map(run).collect();
    let threads: Vec<_> = (0..4).map(|s| std::thread::spawn(move || run(s))).collect();
    for (t, want) in threads.into_iter().zip(&sequential) {
        let got = t.join().expect("thread");
        assert_eq!(
            got.0, want.0,
            "a handle's trajectory does not depend on other threads"
        );
        assert!(got.1.contains("`layout` is 9"), "{}", got.1);
    }
}

#[test]
fn a_step_that_would_overflow_is_non_finite_and_changes_nothing() {
    // Adam's first step is about lr per element: lr = 1e306 on a parameter at the bottom of the range
    // overflows at index 2 (pushed below -f64::MAX); the others stay finite
    let o = Opt::json(r#"{"optimizer": "adam", "lr": 1e306}"#, 4).expect("adam");
    let mut x = [1.0, 2.0, -f64::MAX, 4.0];
    let g = [0.5, -1.0, 2.0, 0.25];
    let (x0, s0) = (x, o.state());
    let st = o.step(&mut x, &g);
    expect(
        st,
        PRECOND_NON_FINITE,
        &o.msg(),
        "non-finite value at index 2",
    );
    assert_eq!(x.map(f64::to_bits), x0.map(f64::to_bits));
    assert_eq!(o.state(), s0);
    assert_eq!(o.steps(), 0);
    // a finite step on the same handle afterwards works
    let mut y = [1.0, 2.0, 3.0, 4.0];
    assert_eq!(o.step(&mut y, &g), PRECOND_OK);
    assert!(y.iter().all(|v| v.is_finite()));
}
