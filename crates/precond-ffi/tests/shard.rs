//! The ZeRO-1 shard calls of the C API driven through their `extern "C"` functions: ranges as
//! the Rust plan's, shard handles stepping bitwise as the unsharded handle, assembled states
//! byte-equal to the unsharded handle's saved state, resharding through split, shard identity
//! kept by save/load, and every bad input a status code with a message, outputs untouched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::CString;
use std::ptr::{null, null_mut};

use precond_ffi::*;
use precond_optim::{OptimizerConfig, ShardPlan};

use precond_status_t::*;

mod common;
use common::{handle_msg, last};

const MIXED: &str = r#"{"optimizer": "adamw", "lr": 2e-3, "weight_decay": 0.01,
    "schedule": {"kind": "cosine", "T_max": 7},
    "groups": [
      {"start": 0, "end": 32, "shape": [8, 4], "optimizer": "muon", "lr": 0.02},
      {"start": 40, "end": 50, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9},
      {"start": 50, "end": 74, "shape": [6, 4], "optimizer": "shampoo", "lr": 0.01},
      {"start": 80, "end": 100, "shape": [5, 4], "optimizer": "soap", "lr": 3e-3}
    ]}"#;
const N: usize = 121;

#[track_caller]
fn expect(st: precond_status_t, want: precond_status_t, needle: &str) {
    let msg = last();
    assert_eq!(st, want, "message: {msg}");
    assert!(msg.contains(needle), "`{msg}` does not mention `{needle}`");
}

struct H(*mut precond_optimizer_t);

impl Drop for H {
    fn drop(&mut self) {
        // SAFETY: a live handle, released once.
        unsafe { precond_optimizer_free(self.0) }
    }
}

impl H {
    fn json(cfg: &str, n: usize) -> H {
        let c = CString::new(cfg).unwrap();
        let mut out = null_mut();
        // SAFETY: valid string and out pointer.
        let st = unsafe { precond_optimizer_new_json(c.as_ptr(), n, &mut out) };
        assert_eq!(st, PRECOND_OK, "{}", last());
        H(out)
    }
    fn shard(cfg: &str, n: usize, world: usize, rank: usize) -> H {
        let c = CString::new(cfg).unwrap();
        let mut out = null_mut();
        // SAFETY: valid string and out pointer.
        let st = unsafe { precond_optimizer_new_shard(c.as_ptr(), n, world, rank, &mut out) };
        assert_eq!(st, PRECOND_OK, "{}", last());
        H(out)
    }
    fn step(&self, x: &mut [f64], g: &[f64]) -> precond_status_t {
        // SAFETY: live handle, buffers of the given length.
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
    fn save(&self) -> Vec<u8> {
        let mut size = 0;
        // SAFETY: live handle.
        assert_eq!(
            unsafe { precond_optimizer_state_size(self.0, &mut size) },
            PRECOND_OK
        );
        let mut buf = vec![0u8; size];
        let mut w = 0;
        // SAFETY: buffer of `size` bytes.
        let st = unsafe { precond_optimizer_save_state(self.0, buf.as_mut_ptr(), size, &mut w) };
        assert_eq!(st, PRECOND_OK);
        buf
    }
    fn load(&self, b: &[u8]) -> precond_status_t {
        // SAFETY: live handle, readable buffer.
        unsafe { precond_optimizer_load_state(self.0, b.as_ptr(), b.len()) }
    }
}

fn range(cfg: &str, n: usize, world: usize, rank: usize) -> (precond_status_t, usize, usize) {
    let c = CString::new(cfg).unwrap();
    let (mut a, mut b) = (usize::MAX, usize::MAX);
    // SAFETY: valid string, distinct outputs.
    let st = unsafe { precond_shard_range(c.as_ptr(), n, world, rank, &mut a, &mut b) };
    (st, a, b)
}

fn grad(k: usize, x: &[f64]) -> Vec<f64> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            (1.0 + (i % 7) as f64 * 0.3) * v + (((31 * k + 17 * i) % 23) as f64 - 11.0) / 16.0
        })
        .collect()
}

fn x0(n: usize) -> Vec<f64> {
    (0..n).map(|i| ((i * 37 % 11) as f64 - 5.0) / 4.0).collect()
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every shard steps its copied slice.
fn step_all(shards: &[H], ranges: &[(usize, usize)], x: &mut [f64], g: &[f64]) {
    for (h, &(a, b)) in shards.iter().zip(ranges) {
        let mut xl = x[a..b].to_vec();
        assert_eq!(h.step(&mut xl, &g[a..b]), PRECOND_OK, "{}", handle_msg(h.0));
        x[a..b].copy_from_slice(&xl);
    }
}

fn assemble(cfg: &str, n: usize, blobs: &[Vec<u8>]) -> Result<Vec<u8>, precond_status_t> {
    let c = CString::new(cfg).unwrap();
    let ptrs: Vec<*const u8> = blobs.iter().map(|b| b.as_ptr()).collect();
    let lens: Vec<usize> = blobs.iter().map(Vec::len).collect();
    let mut need = 0;
    // SAFETY: arrays of `blobs.len()` entries; size query.
    let st = unsafe {
        precond_state_assemble(
            c.as_ptr(),
            n,
            blobs.len(),
            ptrs.as_ptr(),
            lens.as_ptr(),
            null_mut(),
            0,
            &mut need,
        )
    };
    if st != PRECOND_OK {
        return Err(st);
    }
    let mut out = vec![0u8; need];
    let mut w = 0;
    // SAFETY: as above, `out` of `need` bytes.
    let st = unsafe {
        precond_state_assemble(
            c.as_ptr(),
            n,
            blobs.len(),
            ptrs.as_ptr(),
            lens.as_ptr(),
            out.as_mut_ptr(),
            need,
            &mut w,
        )
    };
    assert_eq!(st, PRECOND_OK);
    assert_eq!(w, need);
    Ok(out)
}

fn split(
    cfg: &str,
    n: usize,
    world: usize,
    rank: usize,
    blob: &[u8],
) -> Result<Vec<u8>, precond_status_t> {
    let c = CString::new(cfg).unwrap();
    let mut need = 0;
    // SAFETY: readable blob; size query.
    let st = unsafe {
        precond_state_split(
            c.as_ptr(),
            n,
            world,
            rank,
            blob.as_ptr(),
            blob.len(),
            null_mut(),
            0,
            &mut need,
        )
    };
    if st != PRECOND_OK {
        return Err(st);
    }
    let mut out = vec![0u8; need];
    let mut w = 0;
    // SAFETY: `out` of `need` bytes.
    let st = unsafe {
        precond_state_split(
            c.as_ptr(),
            n,
            world,
            rank,
            blob.as_ptr(),
            blob.len(),
            out.as_mut_ptr(),
            need,
            &mut w,
        )
    };
    assert_eq!(st, PRECOND_OK);
    assert_eq!(w, need);
    Ok(out)
}

#[test]
fn ranges_are_the_plans() {
    let cfg = OptimizerConfig::from_json(MIXED).unwrap();
    for world in 1..=6 {
        let plan = ShardPlan::new(&cfg, N, world).unwrap();
        for rank in 0..world {
            let (st, a, b) = range(MIXED, N, world, rank);
            assert_eq!(st, PRECOND_OK, "{}", last());
            assert_eq!(a..b, plan.range(rank));
        }
    }
}

#[test]
fn shards_step_save_assemble_and_reshard_bitwise() {
    let full = H::json(MIXED, N);
    let world = 3;
    let shards: Vec<H> = (0..world).map(|r| H::shard(MIXED, N, world, r)).collect();
    let ranges: Vec<(usize, usize)> = (0..world)
        .map(|r| {
            let (_, a, b) = range(MIXED, N, world, r);
            (a, b)
        })
        .collect();
    let (mut xf, mut xs) = (x0(N), x0(N));
    for k in 1..=6 {
        let g = grad(k, &xf);
        assert_eq!(full.step(&mut xf, &g), PRECOND_OK);
        step_all(&shards, &ranges, &mut xs, &g);
        assert_eq!(bits(&xf), bits(&xs), "step {k}");
    }
    let blobs: Vec<Vec<u8>> = shards.iter().map(H::save).collect();
    // the assembled state is byte for byte the unsharded handle's
    let whole = assemble(MIXED, N, &blobs).unwrap();
    assert_eq!(whole, full.save());
    // save/load keeps the shard's identity
    let again = H::shard(MIXED, N, world, 1);
    assert_eq!(again.load(&blobs[1]), PRECOND_OK);
    assert_eq!(again.steps(), 6);
    assert_eq!(again.load(&blobs[0]), PRECOND_INVALID_STATE);
    assert!(
        handle_msg(again.0).contains("shard[0/3]"),
        "{}",
        handle_msg(again.0)
    );
    assert_eq!(again.load(&whole), PRECOND_INVALID_STATE);
    assert_eq!(H::json(MIXED, N).load(&blobs[0]), PRECOND_INVALID_STATE);
    // reshard 3 → 2 and continue
    let w2 = 2;
    let re: Vec<H> = (0..w2).map(|r| H::shard(MIXED, N, w2, r)).collect();
    let r2: Vec<(usize, usize)> = (0..w2)
        .map(|r| {
            let (_, a, b) = range(MIXED, N, w2, r);
            (a, b)
        })
        .collect();
    for (r, h) in re.iter().enumerate() {
        let part = split(MIXED, N, w2, r, &whole).unwrap();
        assert_eq!(h.load(&part), PRECOND_OK, "{}", handle_msg(h.0));
    }
    for k in 7..=12 {
        let g = grad(k, &xf);
        assert_eq!(full.step(&mut xf, &g), PRECOND_OK);
        step_all(&re, &r2, &mut xs, &g);
    }
    assert_eq!(bits(&xf), bits(&xs), "after resharding 3 → 2");
    let blobs2: Vec<Vec<u8>> = re.iter().map(H::save).collect();
    assert_eq!(assemble(MIXED, N, &blobs2).unwrap(), full.save());
}

#[test]
fn empty_shards_step_with_nothing_and_report_global_indices() {
    let muon = r#"{"optimizer": "muon", "shape": [8, 6]}"#;
    let (st, a, b) = range(muon, 48, 3, 2);
    assert_eq!((st, a, b), (PRECOND_OK, 48, 48));
    let h = H::shard(muon, 48, 3, 2);
    // SAFETY: an empty shard reads nothing: NULL buffers with n = 0.
    let st = unsafe { precond_optimizer_step_f64(h.0, null_mut(), null(), 0) };
    assert_eq!(st, PRECOND_OK, "{}", handle_msg(h.0));
    assert_eq!(h.steps(), 1);
    let again = H::shard(muon, 48, 3, 2);
    assert_eq!(again.load(&h.save()), PRECOND_OK);
    assert_eq!(again.steps(), 1);
    // n = 1 on an empty shard is a dimension error
    let mut one = [0.0];
    assert_eq!(h.step(&mut one, &[1.0]), PRECOND_DIMENSION_MISMATCH);

    let prop = r#"{"optimizer": "adam", "nonfinite": "propagate"}"#;
    let h = H::shard(prop, 30, 3, 2);
    let mut x = vec![0.0; 10];
    let mut g = vec![1.0; 10];
    g[3] = f64::NAN;
    assert_eq!(h.step(&mut x, &g), PRECOND_OK);
    let (mut found, mut index) = (0, 0);
    // SAFETY: live handle, distinct outputs.
    let st = unsafe { precond_optimizer_last_nonfinite(h.0, &mut found, &mut index) };
    assert_eq!((st, found, index), (PRECOND_OK, 1, 23));
    let strict = H::shard(r#"{"optimizer": "adam"}"#, 30, 3, 1);
    assert_eq!(strict.step(&mut x, &g), PRECOND_NON_FINITE);
    assert!(
        handle_msg(strict.0).contains("index 13"),
        "{}",
        handle_msg(strict.0)
    );
}

#[test]
fn bad_inputs_are_status_codes_and_change_nothing() {
    let c = CString::new(MIXED).unwrap();
    let (mut a, mut b) = (7usize, 9usize);
    // SAFETY: each call below passes valid pointers except the one under test.
    unsafe {
        let st = precond_shard_range(null(), N, 2, 0, &mut a, &mut b);
        expect(st, PRECOND_NULL_POINTER, "config_json");
        let st = precond_shard_range(c.as_ptr(), N, 2, 0, null_mut(), &mut b);
        expect(st, PRECOND_NULL_POINTER, "start");
        let st = precond_shard_range(c.as_ptr(), N, 0, 0, &mut a, &mut b);
        expect(st, PRECOND_INVALID_ARGUMENT, "world");
        let st = precond_shard_range(c.as_ptr(), N, usize::MAX, 0, &mut a, &mut b);
        expect(st, PRECOND_INVALID_ARGUMENT, "ranks");
        let st = precond_shard_range(c.as_ptr(), N, 2, 2, &mut a, &mut b);
        expect(st, PRECOND_INVALID_ARGUMENT, "rank");
        let st = precond_shard_range(c.as_ptr(), 0, 2, 0, &mut a, &mut b);
        expect(st, PRECOND_INVALID_ARGUMENT, "n_params");
        let st = precond_shard_range(c.as_ptr(), 50, 2, 0, &mut a, &mut b);
        expect(st, PRECOND_DIMENSION_MISMATCH, "group");
        let st = precond_shard_range(c.as_ptr(), N, 2, 0, &mut a, &mut a);
        expect(st, PRECOND_INVALID_ARGUMENT, "overlap");
        let dense = CString::new(
            r#"{"optimizer": "precond_gd", "preconditioner": {"P": [[2, 1], [1, 2]]}}"#,
        )
        .unwrap();
        let st = precond_shard_range(dense.as_ptr(), 2, 2, 0, &mut a, &mut b);
        expect(st, PRECOND_INVALID_ARGUMENT, "dense");
        let mut h = null_mut();
        let st = precond_optimizer_new_shard(dense.as_ptr(), 2, 1, 0, &mut h);
        expect(st, PRECOND_INVALID_ARGUMENT, "dense");
        assert!(h.is_null());
        let st = precond_optimizer_new_shard(c.as_ptr(), N, 2, 5, &mut h);
        expect(st, PRECOND_INVALID_ARGUMENT, "rank");
        assert!(h.is_null());
    }
    assert_eq!((a, b), (7, 9), "outputs untouched on error");

    let shards: Vec<H> = (0..3).map(|r| H::shard(MIXED, N, 3, r)).collect();
    let ranges: Vec<(usize, usize)> = (0..3)
        .map(|r| {
            let (_, a, b) = range(MIXED, N, 3, r);
            (a, b)
        })
        .collect();
    let mut x = x0(N);
    let g = grad(1, &x);
    step_all(&shards, &ranges, &mut x, &g);
    let blobs: Vec<Vec<u8>> = shards.iter().map(H::save).collect();
    // wrong order, wrong count, corrupt blob
    let swapped = vec![blobs[1].clone(), blobs[0].clone(), blobs[2].clone()];
    assert_eq!(assemble(MIXED, N, &swapped), Err(PRECOND_INVALID_STATE));
    assert!(last().contains("rank order"), "{}", last());
    assert_eq!(assemble(MIXED, N, &blobs[..2]), Err(PRECOND_INVALID_STATE));
    let mut corrupt = blobs.clone();
    corrupt[1][20] ^= 1;
    assert_eq!(assemble(MIXED, N, &corrupt), Err(PRECOND_INVALID_STATE));
    assert!(last().contains("blobs[1]"), "{}", last());
    // a too small output, an output overlapping an input, a NULL blob: nothing written
    let ptrs: Vec<*const u8> = blobs.iter().map(|b| b.as_ptr()).collect();
    let lens: Vec<usize> = blobs.iter().map(Vec::len).collect();
    let mut small = vec![0xAAu8; 16];
    let mut w = 12345usize;
    // SAFETY: valid arrays and buffers.
    unsafe {
        let st = precond_state_assemble(
            c.as_ptr(),
            N,
            3,
            ptrs.as_ptr(),
            lens.as_ptr(),
            small.as_mut_ptr(),
            small.len(),
            &mut w,
        );
        expect(st, PRECOND_DIMENSION_MISMATCH, "out = NULL");
        let mut bad = ptrs.clone();
        bad[2] = null();
        let st = precond_state_assemble(
            c.as_ptr(),
            N,
            3,
            bad.as_ptr(),
            lens.as_ptr(),
            small.as_mut_ptr(),
            small.len(),
            &mut w,
        );
        expect(st, PRECOND_NULL_POINTER, "blobs[2]");
        let mut buf = blobs[0].clone();
        let p0 = buf.as_mut_ptr();
        let alias = [p0.cast_const(), ptrs[1], ptrs[2]];
        let st = precond_state_assemble(
            c.as_ptr(),
            N,
            3,
            alias.as_ptr(),
            lens.as_ptr(),
            p0,
            buf.len(),
            &mut w,
        );
        expect(st, PRECOND_INVALID_ARGUMENT, "overlaps");
        let st = precond_state_split(
            c.as_ptr(),
            N,
            3,
            0,
            blobs[0].as_ptr(),
            blobs[0].len(),
            small.as_mut_ptr(),
            small.len(),
            &mut w,
        );
        expect(st, PRECOND_INVALID_STATE, "layout");
    }
    assert!(small.iter().all(|&v| v == 0xAA));
    assert_eq!(w, 12345);
    // split: a shard's state is not an unsharded one; rank out of range
    let whole = assemble(MIXED, N, &blobs).unwrap();
    assert_eq!(split(MIXED, N, 2, 2, &whole), Err(PRECOND_INVALID_ARGUMENT));
    assert_eq!(
        split(MIXED, N + 1, 2, 0, &whole),
        Err(PRECOND_INVALID_STATE)
    );
}

/// The directory holding `libprecond_ffi.a` of this build (next to the test binary: cargo
/// builds every crate type of the lib for the test run).
fn lib_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    [deps.clone(), deps.join("..")]
        .into_iter()
        .find(|d| d.join("libprecond_ffi.a").exists())
        .expect("libprecond_ffi.a next to the test binary")
}

/// Compiles `ffi-examples/<src>` with `compiler` (warnings are errors) against the static
/// library and the committed headers, runs it (under valgrind memcheck when installed) and
/// returns its output.
fn build_and_run(compiler: &str, std: &str, src: &str, exe: &str) -> String {
    use std::process::Command;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(exe);
    let st = Command::new(compiler)
        .args([
            std,
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-O1",
            "-g",
            "-I",
        ])
        .arg(root.join("include"))
        .arg(root.join("ffi-examples").join(src))
        .arg(lib_dir().join("libprecond_ffi.a"))
        .args(["-lm", "-lpthread", "-ldl", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{compiler} {src} failed:\n{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let run = Command::new(&out).output().unwrap();
    assert!(
        run.status.success(),
        "{exe} failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let text = String::from_utf8(run.stdout).unwrap();
    if Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let v = Command::new("valgrind")
            .args(["--error-exitcode=1", "--leak-check=full", "--quiet"])
            .arg(format!(
                "--suppressions={}",
                root.join("ffi-examples/valgrind.supp").display()
            ))
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            v.status.success(),
            "valgrind {exe}:\n{}",
            String::from_utf8_lossy(&v.stderr)
        );
    }
    text
}

#[test]
fn c_example_shards_bitwise_and_reshards() {
    let out = build_and_run("cc", "-std=c99", "c/shard.c", "shard_c");
    assert!(out.contains("shard: all checks passed"), "{out}");
    // the same run in Rust: ranks as the plan's, the final parameters' bits
    let cfg = OptimizerConfig::from_json(C_CONFIG).unwrap();
    let plan = ShardPlan::new(&cfg, N, 3).unwrap();
    for (r, rg) in plan.ranges().iter().enumerate() {
        assert!(
            out.contains(&format!("rank {r}: [{}, {})", rg.start, rg.end)),
            "{out}"
        );
    }
    let mut opt = cfg.build(N).unwrap();
    let mut x = x0(N);
    for k in 1..=10 {
        let g = grad(k, &x);
        opt.step_f64(&mut x, &g).unwrap();
    }
    let line = out.lines().find(|l| l.starts_with("x[0] = ")).unwrap();
    let nums: Vec<f64> = line
        .split(&['=', ','][..])
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    assert_eq!(nums.len(), 2, "{line}");
    assert_eq!(nums[0].to_bits(), x[0].to_bits(), "{line}");
    assert_eq!(nums[1].to_bits(), x[N - 1].to_bits(), "{line}");
}

const C_CONFIG: &str = r#"{"optimizer": "adamw", "lr": 2e-3, "weight_decay": 0.01, "groups": [  {"start": 0, "end": 32, "shape": [8, 4], "optimizer": "muon", "lr": 0.02},  {"start": 50, "end": 74, "shape": [6, 4], "optimizer": "shampoo", "lr": 0.01},  {"start": 80, "end": 100, "shape": [5, 4], "optimizer": "soap", "lr": 3e-3}]}"#;

#[test]
fn cpp_example_shards_through_the_wrapper() {
    let out = build_and_run("c++", "-std=c++17", "cpp/shard.cpp", "shard_cpp");
    assert!(out.contains("shard: all checks passed"), "{out}");
}
