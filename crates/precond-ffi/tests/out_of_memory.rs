//! The dense diagnostics of the C ABI under an address-space limit (`RLIMIT_AS`) where the
//! caller's `n × n` matrix fits but no second `n × n` buffer does: every call returns
//! `PRECOND_OUT_OF_MEMORY` (9) with a message naming the bytes, leaves the outputs unwritten,
//! and the process keeps running (a child process, so that an abort fails the parent test with
//! the child's output).
#![cfg(target_os = "linux")]

use std::process::Command;

use precond_ffi::*;
use precond_status_t::*;

/// The calling thread's last error message.
fn last() -> String {
    // SAFETY: never NULL, NUL-terminated.
    unsafe { std::ffi::CStr::from_ptr(precond_last_error()) }
        .to_string_lossy()
        .into_owned()
}

const ROLE: &str = "PRECOND_FFI_OOM_CHILD";
const N: usize = 2000;
const HEADROOM: u64 = 12 << 20;
const DONE: &str = "out-of-memory child (C ABI): all checks passed";
const ROW_MAJOR: i32 = 0;

fn address_space_in_use() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmSize:"))
        .expect("VmSize line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmSize in kB");
    kb * 1024
}

fn set_address_space_limit(bytes: u64) {
    let lim = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct passed by reference.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };
    assert_eq!(rc, 0, "setrlimit(RLIMIT_AS) failed");
}

#[track_caller]
fn expect_oom(name: &str, st: precond_status_t) {
    let msg = last();
    assert_eq!(st, PRECOND_OUT_OF_MEMORY, "{name}: {msg}");
    assert!(
        msg.contains("out of memory") && msg.contains(&format!("{} bytes", N * N * 8)),
        "{name}: {msg}"
    );
    println!("{name}: {msg}");
}

fn child() {
    // a deterministic symmetric, diagonally dominant matrix, row-major
    let mut h = vec![0.0f64; N * N];
    for i in 0..N {
        for j in 0..=i {
            let v = (((i * 7919 + j * 104_729) % 2001) as f64 - 1000.0) / 1000.0;
            h[i * N + j] = v;
            h[j * N + i] = v;
        }
        h[i * N + i] += N as f64;
    }
    let p: Vec<f64> = (0..N).map(|i| 1.0 / h[i * N + i]).collect();
    let mut ev = vec![f64::NAN; N];
    let mut scale = vec![f64::NAN; N];
    let mut scaled = vec![f64::NAN; 1];
    // the small outputs are allocated before the limit; `scaled` is the caller's N × N output
    scaled.resize(N * N, f64::NAN);

    set_address_space_limit(address_space_in_use() + HEADROOM);
    // take and hold free address space that could still hold an N × N buffer, until one more
    // does not fit: the limit is then in effect
    let mut held: Vec<Vec<f64>> = Vec::new();
    loop {
        let mut probe: Vec<f64> = Vec::new();
        if probe.try_reserve_exact(N * N).is_err() {
            break;
        }
        held.push(probe);
        assert!(
            held.len() <= 8,
            "the address-space limit did not take effect"
        );
    }

    let mut c = precond_cond2_t::default();
    // SAFETY: `h` holds N*N doubles; `c` is writable.
    expect_oom("precond_cond2", unsafe {
        precond_cond2(h.as_ptr(), N, N, ROW_MAJOR, &mut c)
    });
    assert_eq!(c, precond_cond2_t::default(), "output written on failure");

    // SAFETY: `h` holds N*N doubles; `ev` holds N writable doubles; no summary.
    expect_oom("precond_sym_eigenvalues", unsafe {
        precond_sym_eigenvalues(
            h.as_ptr(),
            N,
            ROW_MAJOR,
            ev.as_mut_ptr(),
            N,
            std::ptr::null_mut(),
        )
    });
    assert!(ev.iter().all(|v| v.is_nan()), "output written on failure");

    let mut pc = std::mem::MaybeUninit::<precond_preconditioned_cond_t>::zeroed();
    // SAFETY: `h` N*N doubles, `p` N doubles, `pc` writable.
    expect_oom("precond_preconditioned_cond_diag", unsafe {
        precond_preconditioned_cond_diag(h.as_ptr(), N, ROW_MAJOR, p.as_ptr(), N, pc.as_mut_ptr())
    });

    for (name, row) in [
        ("precond_row_equilibrate", true),
        ("precond_col_equilibrate", false),
    ] {
        // SAFETY: `h` N*N doubles; `scale` N and `scaled` N*N writable doubles, disjoint.
        let st = unsafe {
            let f = if row {
                precond_row_equilibrate
            } else {
                precond_col_equilibrate
            };
            f(
                h.as_ptr(),
                N,
                N,
                ROW_MAJOR,
                scale.as_mut_ptr(),
                N,
                scaled.as_mut_ptr(),
                N * N,
            )
        };
        expect_oom(name, st);
        assert!(
            scale.iter().all(|v| v.is_nan()),
            "{name}: scale written on failure"
        );
        assert!(
            scaled.iter().all(|v| v.is_nan()),
            "{name}: scaled written on failure"
        );
    }

    for (name, method) in [
        ("precond_cond_estimate (LU)", 0),
        ("precond_cond_estimate (SPD)", 1),
    ] {
        let mut est = std::mem::MaybeUninit::<precond_cond_estimate_t>::zeroed();
        // SAFETY: `h` N*N doubles; `est` writable.
        expect_oom(name, unsafe {
            precond_cond_estimate(h.as_ptr(), N, ROW_MAJOR, method, est.as_mut_ptr())
        });
    }
    drop(held);
    println!("{DONE}");
}

#[test]
fn dense_diagnostics_return_out_of_memory_status_under_an_address_space_limit() {
    if std::env::var_os(ROLE).is_some() {
        child();
        return;
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    let out = Command::new(exe)
        .args([
            "--exact",
            "dense_diagnostics_return_out_of_memory_status_under_an_address_space_limit",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, "1")
        // a failed assertion's backtrace would itself allocate under the limit
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(DONE),
        "child failed ({:?})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}
