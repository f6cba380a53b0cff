//! A random sequence of C ABI calls (`precond_ffi`, called as C would) on valid-or-null
//! pointers and lengths that are either right or wrong (never longer than the buffer behind
//! them: the C contract). Built with AddressSanitizer on nightly
//! (`cargo +nightly fuzz run c_abi_sequence`). Invariants: no panic, no memory error (ASan);
//! a NULL or wrong-length argument gives a non-OK status; a string returned by
//! `precond_last_error` stays readable, its text unchanged, until the next failing call (even
//! across `precond_clear_last_error`); every handle is freed at the end.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use precond_ffi::*;
use std::ffi::{CStr, c_char};
use std::ptr;

#[derive(Arbitrary, Debug)]
enum Op {
    New {
        kind: u8,
        n: u8,
        json: bool,
        null_out: bool,
        null_config: bool,
    },
    Free {
        slot: u8,
    },
    StepF64 {
        slot: u8,
        n: u8,
        null_params: bool,
        null_grads: bool,
        grad: f64,
    },
    StepF32 {
        slot: u8,
        n: u8,
        grad: f32,
    },
    SetLr {
        slot: u8,
        lr: f64,
    },
    Query {
        slot: u8,
        what: u8,
        null_out: bool,
    },
    Preconditioner {
        slot: u8,
        len: u8,
        null_out: bool,
    },
    SaveLoad {
        from: u8,
        to: u8,
        buf_len: u16,
        flip: Option<(u16, u8)>,
        truncate: u16,
    },
    Reset {
        slot: u8,
    },
    LastError,
    ClearLastError,
    HandleError {
        slot: u8,
    },
    Cond2 {
        m: u8,
        n: u8,
        layout: i8,
        vals: Vec<f64>,
        null_a: bool,
        null_out: bool,
    },
    SymEig {
        n: u8,
        layout: i8,
        vals: Vec<f64>,
        eig_len: u8,
        null_summary: bool,
    },
    StatusName {
        code: i32,
    },
}

struct Ctx {
    handles: Vec<*mut precond_optimizer_t>,
    held: Option<(*const c_char, Vec<u8>)>,
}

impl Ctx {
    fn handle(&self, slot: u8) -> *mut precond_optimizer_t {
        if slot == u8::MAX || self.handles.is_empty() {
            ptr::null_mut()
        } else {
            self.handles[slot as usize % self.handles.len()]
        }
    }
    /// Record a status: a failing call invalidates the held error string; a null handle or a
    /// wrong length must fail.
    fn status(&mut self, s: precond_status_t, must_fail: bool) {
        if s != precond_status_t::PRECOND_OK {
            self.held = None;
        } else {
            assert!(
                !must_fail,
                "a call with a NULL or wrong-size argument returned OK"
            );
        }
        if let Some((p, text)) = &self.held {
            // SAFETY: the documented lifetime: valid until the next failing call
            let now = unsafe { CStr::from_ptr(*p) }.to_bytes();
            assert_eq!(now, &text[..], "precond_last_error's text changed");
        }
    }
}

fn fill(v: &[f64], len: usize) -> Vec<f64> {
    (0..len)
        .map(|i| v.get(i).copied().unwrap_or(i as f64 + 1.0))
        .collect()
}

fuzz_target!(|ops: Vec<Op>| {
    let mut cx = Ctx {
        handles: Vec::new(),
        held: None,
    };
    for op in ops.into_iter().take(64) {
        match op {
            Op::New {
                kind,
                n,
                json,
                null_out,
                null_config,
            } => {
                let n = usize::from(n % 9);
                let mut h: *mut precond_optimizer_t = ptr::null_mut();
                let out = if null_out {
                    ptr::null_mut()
                } else {
                    &mut h as *mut _
                };
                let diag = vec![0.5f64; n];
                let s = if json {
                    let names = [
                        "sgd",
                        "gd",
                        "adagrad",
                        "rmsprop",
                        "adam",
                        "adamw",
                        "precond_gd",
                    ];
                    let name = names[usize::from(kind) % names.len()];
                    let text = format!("{{\"optimizer\":\"{name}\",\"lr\":0.01}}\0");
                    let p = if null_config {
                        ptr::null()
                    } else {
                        text.as_ptr().cast::<c_char>()
                    };
                    // SAFETY: a NUL-terminated string or NULL; `out` valid or NULL
                    unsafe { precond_optimizer_new_json(p, n, out) }
                } else {
                    // SAFETY: all-zero is a valid value of this plain-data struct
                    let mut cfg: precond_optimizer_config_t = unsafe { std::mem::zeroed() };
                    // SAFETY: `cfg` is a valid out pointer
                    let s0 =
                        unsafe { precond_optimizer_config_init(i32::from(kind % 8), &mut cfg) };
                    cx.status(s0, kind % 8 == 7);
                    cfg.diag_preconditioner = diag.as_ptr();
                    cfg.diag_preconditioner_len = n;
                    let p = if null_config {
                        ptr::null()
                    } else {
                        &cfg as *const _
                    };
                    // SAFETY: `cfg` (and the diagonal it points to) outlive the call
                    unsafe { precond_optimizer_new(p, n, out) }
                };
                cx.status(s, null_out || null_config);
                if s == precond_status_t::PRECOND_OK {
                    assert!(!h.is_null(), "OK without a handle");
                    cx.handles.push(h);
                }
            }
            Op::Free { slot } => {
                let h = cx.handle(slot);
                if !h.is_null() {
                    cx.handles.retain(|&x| x != h);
                }
                // SAFETY: a live handle or NULL
                unsafe { precond_optimizer_free(h) };
            }
            Op::StepF64 {
                slot,
                n,
                null_params,
                null_grads,
                grad,
            } => {
                let h = cx.handle(slot);
                let n = usize::from(n % 9);
                let mut x = vec![1.0f64; n];
                let g = vec![grad; n];
                let pp = if null_params {
                    ptr::null_mut()
                } else {
                    x.as_mut_ptr()
                };
                let gp = if null_grads { ptr::null() } else { g.as_ptr() };
                // SAFETY: buffers of length `n` or NULL
                let s = unsafe { precond_optimizer_step_f64(h, pp, gp, n) };
                cx.status(s, h.is_null() || (n > 0 && (null_params || null_grads)));
                // a checked step (policy "error", every config here) never writes a non-finite
                // value made from finite inputs: it refuses the step instead
                if s == precond_status_t::PRECOND_OK && grad.is_finite() {
                    assert!(x.iter().all(|v| v.is_finite()), "step wrote {x:?}");
                }
            }
            Op::StepF32 { slot, n, grad } => {
                let h = cx.handle(slot);
                let n = usize::from(n % 9);
                let mut x = vec![1.0f32; n];
                let g = vec![grad; n];
                // SAFETY: buffers of length `n`
                let s = unsafe { precond_optimizer_step_f32(h, x.as_mut_ptr(), g.as_ptr(), n) };
                cx.status(s, h.is_null());
                if s == precond_status_t::PRECOND_OK && grad.is_finite() {
                    assert!(x.iter().all(|v| v.is_finite()), "f32 step wrote {x:?}");
                }
            }
            Op::SetLr { slot, lr } => {
                let h = cx.handle(slot);
                // SAFETY: a live handle or NULL
                let s = unsafe { precond_optimizer_set_lr(h, lr) };
                cx.status(s, h.is_null() || !(lr.is_finite() && lr >= 0.0));
            }
            Op::Query {
                slot,
                what,
                null_out,
            } => {
                let h = cx.handle(slot);
                let mut f = 0.0f64;
                let mut u = 0usize;
                let mut c = 0u64;
                let mut found = 0i32;
                // SAFETY: live handle or NULL; out pointers valid or NULL
                let s = unsafe {
                    match what % 7 {
                        0 => precond_optimizer_get_lr(
                            h,
                            if null_out { ptr::null_mut() } else { &mut f },
                        ),
                        1 => precond_optimizer_current_lr(
                            h,
                            if null_out { ptr::null_mut() } else { &mut f },
                        ),
                        2 => precond_optimizer_n_params(
                            h,
                            if null_out { ptr::null_mut() } else { &mut u },
                        ),
                        3 => precond_optimizer_step_count(
                            h,
                            if null_out { ptr::null_mut() } else { &mut c },
                        ),
                        4 => precond_optimizer_state_size(
                            h,
                            if null_out { ptr::null_mut() } else { &mut u },
                        ),
                        5 => precond_optimizer_last_nonfinite(
                            h,
                            if null_out {
                                ptr::null_mut()
                            } else {
                                &mut found
                            },
                            &mut u,
                        ),
                        _ => precond_optimizer_last_nonfinite(
                            h,
                            &mut found,
                            &mut found as *mut i32 as *mut usize,
                        ),
                    }
                };
                // the last case passes overlapping outputs on purpose (`found` inside `index`)
                cx.status(s, h.is_null() || null_out || what % 7 == 6);
            }
            Op::Preconditioner {
                slot,
                len,
                null_out,
            } => {
                let h = cx.handle(slot);
                let len = usize::from(len % 80);
                let mut out = vec![0.0f64; len];
                let p = if null_out {
                    ptr::null_mut()
                } else {
                    out.as_mut_ptr()
                };
                // SAFETY: a buffer of `len` or NULL
                let s = unsafe { precond_optimizer_preconditioner(h, p, len) };
                cx.status(s, h.is_null());
            }
            Op::SaveLoad {
                from,
                to,
                buf_len,
                flip,
                truncate,
            } => {
                let a = cx.handle(from);
                let b = cx.handle(to);
                let mut buf = vec![0u8; usize::from(buf_len % 2048)];
                let mut written = 0usize;
                // SAFETY: a buffer of its length, a valid `written`
                let s = unsafe {
                    precond_optimizer_save_state(a, buf.as_mut_ptr(), buf.len(), &mut written)
                };
                cx.status(s, a.is_null());
                if s != precond_status_t::PRECOND_OK {
                    continue;
                }
                assert!(
                    written <= buf.len(),
                    "wrote {written} bytes into {}",
                    buf.len()
                );
                buf.truncate(written.saturating_sub(usize::from(truncate % 4)));
                if let Some((at, bit)) = flip
                    && !buf.is_empty()
                {
                    let i = usize::from(at) % buf.len();
                    buf[i] ^= 1 << (bit % 8);
                }
                // SAFETY: a buffer of its length
                let s = unsafe { precond_optimizer_load_state(b, buf.as_ptr(), buf.len()) };
                cx.status(
                    s,
                    b.is_null() || (flip.is_some() || truncate % 4 != 0) && written > 0,
                );
            }
            Op::Reset { slot } => {
                let h = cx.handle(slot);
                // SAFETY: live handle or NULL
                let s = unsafe { precond_optimizer_reset(h) };
                cx.status(s, h.is_null());
            }
            Op::LastError => {
                let p = precond_last_error();
                assert!(!p.is_null());
                // SAFETY: never NULL, NUL-terminated
                let text = unsafe { CStr::from_ptr(p) }.to_bytes().to_vec();
                cx.held = Some((p, text));
            }
            Op::ClearLastError => {
                precond_clear_last_error();
                cx.status(precond_status_t::PRECOND_OK, false);
            }
            Op::HandleError { slot } => {
                let h = cx.handle(slot);
                // SAFETY: live handle or NULL
                let p = unsafe { precond_optimizer_last_error(h) };
                assert!(!p.is_null());
                // SAFETY: never NULL, NUL-terminated
                let _ = unsafe { CStr::from_ptr(p) }.to_bytes().len();
            }
            Op::Cond2 {
                m,
                n,
                layout,
                vals,
                null_a,
                null_out,
            } => {
                let (m, n) = (usize::from(m % 7), usize::from(n % 7));
                let a = fill(&vals, m * n);
                let mut out = precond_cond2_t::default();
                let ap = if null_a { ptr::null() } else { a.as_ptr() };
                let op = if null_out {
                    ptr::null_mut()
                } else {
                    &mut out as *mut _
                };
                // SAFETY: an m·n buffer or NULL, an out struct or NULL
                let s = unsafe { precond_cond2(ap, m, n, i32::from(layout), op) };
                cx.status(s, null_a || null_out || m * n == 0);
                if s == precond_status_t::PRECOND_OK {
                    assert!(
                        out.sigma_max.is_finite() && out.sigma_min.is_finite(),
                        "{out:?}"
                    );
                    assert!(!out.kappa.is_nan(), "{out:?}");
                }
            }
            Op::SymEig {
                n,
                layout,
                vals,
                eig_len,
                null_summary,
            } => {
                let n = usize::from(n % 7);
                let mut h = fill(&vals, n * n);
                for i in 0..n {
                    for j in 0..i {
                        h[i + j * n] = h[j + i * n];
                    }
                }
                let mut eig = vec![0.0f64; usize::from(eig_len % 8)];
                let mut summary = precond_spectrum_t::default();
                let sp = if null_summary {
                    ptr::null_mut()
                } else {
                    &mut summary as *mut _
                };
                // SAFETY: buffers of their lengths, summary valid or NULL
                let s = unsafe {
                    precond_sym_eigenvalues(
                        h.as_ptr(),
                        n,
                        i32::from(layout),
                        eig.as_mut_ptr(),
                        eig.len(),
                        sp,
                    )
                };
                cx.status(s, n == 0 || eig.len() != n);
                if s == precond_status_t::PRECOND_OK {
                    assert!(eig.iter().all(|v| v.is_finite()), "{eig:?}");
                }
            }
            Op::StatusName { code } => {
                let p = precond_status_name(code);
                assert!(!p.is_null());
                // SAFETY: never NULL, NUL-terminated
                let _ = unsafe { CStr::from_ptr(p) }.to_bytes().len();
            }
        }
    }
    for h in cx.handles.drain(..) {
        // SAFETY: live handles, each freed once
        unsafe { precond_optimizer_free(h) };
    }
});
