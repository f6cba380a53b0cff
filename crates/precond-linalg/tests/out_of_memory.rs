//! Allocation failure in the dense diagnostics is a typed error, never an abort: a child
//! process (this test binary re-run on one test) lowers its address-space limit
//! (`RLIMIT_AS`) to a value where an `n × n` input fits but no second `n × n` buffer does, and
//! calls every dense entry point of the C ABI and of `precond cond`. Each must return
//! [`LinalgError::OutOfMemory`]; under the same limit, small inputs still give exactly the
//! results computed before the limit. A child killed by the allocator's abort (SIGABRT) fails
//! the parent with the child's output shown.
#![cfg(target_os = "linux")]

use std::process::Command;

use faer::Mat;
use precond_linalg::{
    DenseOperator, LanczosOptions, Layout, LinalgError, SymEigWorkspace, col_equilibrate,
    cond_estimate_lu, cond_estimate_spd, cond1, cond2, kernel, kron_precond_cond, lanczos_extremes,
    mat_from_slice, precond_cond_dense, precond_cond_diag, precond_cond_factor, row_equilibrate,
    singular_values, sym_cond, sym_equilibrate, sym_extremes, sym_spectrum,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Set in the child's environment: the test then runs the child role.
const ROLE: &str = "PRECOND_LINALG_OOM_CHILD";
/// The size of the large input: 2000² f64 = 32 MB.
const N: usize = 2000;
/// Headroom above the address space in use when the limit is set: well below one more
/// `N × N` buffer, well above what the small reference problems need.
const HEADROOM: u64 = 12 << 20;
/// Printed by the child when every check passed.
const DONE: &str = "out-of-memory child: all checks passed";

/// A seeded symmetric, diagonally dominant (so SPD) `n × n` matrix.
fn spd(n: usize, seed: u64) -> Mat<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut a = Mat::<f64>::zeros(n, n);
    for j in 0..n {
        for i in 0..=j {
            let v = rng.random_range(-1.0..1.0);
            a[(i, j)] = v;
            a[(j, i)] = v;
        }
        a[(j, j)] += n as f64;
    }
    a
}

/// The address space in use (VmSize of /proc/self/status), in bytes.
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
    // SAFETY: setrlimit reads the struct passed by reference; no other memory is touched.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };
    assert_eq!(rc, 0, "setrlimit(RLIMIT_AS) failed");
}

/// `r` must be `OutOfMemory` for a buffer of at least `min_bytes`.
#[track_caller]
fn expect_oom<T: std::fmt::Debug>(name: &str, r: Result<T, LinalgError>, min_bytes: u64) {
    match r {
        Err(LinalgError::OutOfMemory { what, bytes }) => {
            assert!(
                bytes >= min_bytes,
                "{name}: OutOfMemory for {what} of {bytes} bytes, expected at least {min_bytes}"
            );
            println!("{name}: OutOfMemory {{ what: {what:?}, bytes: {bytes} }}");
        }
        other => panic!("{name}: expected OutOfMemory, got {other:?}"),
    }
}

/// The child role: everything happens under the lowered limit.
fn child() {
    // threads and their stacks exist before the limit (a thread that cannot start is not what
    // this test is about), and the small references are computed without it
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global();
    // faer's matrix products (private-gemm-x86) reserve a per-thread packing buffer of twice
    // the L3 size on a thread's first large product, with an infallible allocation that no
    // caller can intercept: it is made here, before the limit, on every thread that will run
    // faer kernels (the one allocation of the dense paths that stays infallible)
    let warm_up = || {
        let a = Mat::<f64>::from_fn(256, 256, |i, j| ((i + 2 * j) % 7) as f64);
        let _ = &a * &a;
    };
    rayon::broadcast(|_| warm_up());
    warm_up();
    let small = spd(40, 7);
    let p_small: Vec<f64> = (0..40).map(|i| 1.0 / small[(i, i)]).collect();
    let want_cond2 = cond2(small.as_ref()).expect("cond2");
    let want_spec = sym_spectrum(small.as_ref()).expect("sym_spectrum");
    let want_lu = cond_estimate_lu(small.as_ref()).expect("cond_estimate_lu");
    let want_spd = cond_estimate_spd(small.as_ref()).expect("cond_estimate_spd");
    let want_row = row_equilibrate(small.as_ref()).expect("row_equilibrate");
    let want_pc = precond_cond_diag(small.as_ref(), &p_small).expect("precond_cond_diag");

    let big = spd(N, 11);
    let p_big: Vec<f64> = (0..N).map(|i| 1.0 / big[(i, i)]).collect();
    let mut row_major = vec![0.0; N * N];
    for i in 0..N {
        for j in 0..N {
            row_major[i * N + j] = big[(i, j)];
        }
    }

    // a second N × N input (the dense preconditioner), Kronecker factors with 40 · 50 = N, and
    // a matrix-free diagnostic that needs only O(N · iterations) memory: its result under the
    // limit must be the one computed here
    let p_dense = spd(N, 13);
    let (kl, kr) = (spd(40, 17), spd(50, 19));
    let lanczos_opts = LanczosOptions {
        max_iter: 60,
        ..LanczosOptions::default()
    };
    let op = DenseOperator::new(big.as_ref()).expect("operator");
    let want_lanczos = lanczos_extremes(&op, lanczos_opts).expect("lanczos");
    let want_sym_cond = sym_cond(big.as_ref()).expect("sym_cond");

    set_address_space_limit(address_space_in_use() + HEADROOM);
    let nn_bytes = (N * N * 8) as u64;
    // address space already mapped but free (allocator arenas, thread heaps) can still hold
    // an N × N buffer under the limit: such buffers are taken and held here, until one more
    // N × N buffer does not fit (checked: the limit is then in effect)
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
    // the routines run their parallel parts on the pool's threads (and some run wholly on
    // one of them): a worker's own allocator arena may also have room left, so each pool
    // thread takes and holds what fits there too
    let per_worker: Vec<Vec<Vec<f64>>> = rayon::broadcast(|_| {
        let mut mine = Vec::new();
        loop {
            let mut probe: Vec<f64> = Vec::new();
            if probe.try_reserve_exact(N * N).is_err() || mine.len() >= 8 {
                break;
            }
            mine.push(probe);
        }
        mine
    });
    let worker_held: usize = per_worker.iter().map(Vec::len).sum();
    println!(
        "held {} free N x N regions (and {worker_held} on the pool's threads)",
        held.len()
    );

    let a = big.as_ref();
    expect_oom("cond2", cond2(a), nn_bytes);
    expect_oom("singular_values", singular_values(a), nn_bytes);
    expect_oom("sym_spectrum", sym_spectrum(a), nn_bytes);
    expect_oom("sym_extremes", sym_extremes(a), nn_bytes);
    expect_oom("cond1", cond1(a), nn_bytes);
    expect_oom("cond_estimate_lu", cond_estimate_lu(a), nn_bytes);
    expect_oom("cond_estimate_spd", cond_estimate_spd(a), nn_bytes);
    expect_oom("row_equilibrate", row_equilibrate(a), nn_bytes);
    expect_oom("col_equilibrate", col_equilibrate(a), nn_bytes);
    expect_oom("sym_equilibrate", sym_equilibrate(a), nn_bytes);
    expect_oom("precond_cond_diag", precond_cond_diag(a, &p_big), nn_bytes);
    expect_oom(
        "mat_from_slice",
        mat_from_slice(&row_major, N, N, Layout::RowMajor),
        nn_bytes,
    );
    expect_oom(
        "precond_cond_dense",
        precond_cond_dense(a, p_dense.as_ref()),
        nn_bytes,
    );
    expect_oom(
        "precond_cond_factor",
        precond_cond_factor(a, p_dense.as_ref()),
        nn_bytes,
    );
    expect_oom(
        "kron_precond_cond",
        kron_precond_cond(a, kl.as_ref(), kr.as_ref(), Layout::RowMajor),
        nn_bytes,
    );
    // sym_cond may find room for its one N × N copy (the Cholesky factor) in what earlier
    // failed calls released: then its value must be the unconstrained one
    match sym_cond(a) {
        Ok(k) => assert_eq!(
            k.to_bits(),
            want_sym_cond.to_bits(),
            "sym_cond under the limit"
        ),
        r => expect_oom("sym_cond", r, nn_bytes),
    }
    expect_oom("SymEigWorkspace::new", SymEigWorkspace::new(N), nn_bytes);
    expect_oom(
        "kernel::singular_values_two_stage",
        kernel::singular_values_two_stage(a, 32),
        nn_bytes,
    );
    expect_oom(
        "kernel::sym_eigenvalues_two_stage",
        kernel::sym_eigenvalues_two_stage(a, 32),
        nn_bytes,
    );
    // needs no N × N buffer: runs under the limit, with the unconstrained result
    let got = lanczos_extremes(&op, lanczos_opts).expect("lanczos under the limit");
    assert_eq!(got, want_lanczos);
    // the error message names the buffer and the bytes
    let msg = cond2(a).expect_err("out of memory").to_string();
    assert!(
        msg.starts_with("out of memory: could not allocate ") && msg.contains(" bytes for "),
        "{msg}"
    );

    // under the same limit, small problems give exactly the unconstrained results
    let s = small.as_ref();
    assert_eq!(cond2(s).expect("cond2"), want_cond2);
    assert_eq!(sym_spectrum(s).expect("sym_spectrum"), want_spec);
    assert_eq!(cond_estimate_lu(s).expect("cond_estimate_lu"), want_lu);
    assert_eq!(cond_estimate_spd(s).expect("cond_estimate_spd"), want_spd);
    assert_eq!(row_equilibrate(s).expect("row_equilibrate"), want_row);
    assert_eq!(
        precond_cond_diag(s, &p_small).expect("precond_cond_diag"),
        want_pc
    );
    drop(held);
    println!("{DONE}");
}

#[test]
fn dense_diagnostics_return_out_of_memory_under_an_address_space_limit() {
    if std::env::var_os(ROLE).is_some() {
        child();
        return;
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    let out = Command::new(exe)
        .args([
            "--exact",
            "dense_diagnostics_return_out_of_memory_under_an_address_space_limit",
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
