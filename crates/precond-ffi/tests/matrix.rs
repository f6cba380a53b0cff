//! The matrix preconditioner through the C ABI (`precond_optimizer_matrix_blocks`,
//! `precond_optimizer_matrix_block_range`, `precond_optimizer_matrix_preconditioner`):
//! - what C reads equals `Optimizer::matrix_preconditioner` of the same optimizer stepped the
//!   same way from Rust (every group, block, part; f64 and f32 steps; both storage orders);
//! - an independent truth: with the convergent Newton–Schulz coefficients `(1.5, −0.5, 0)` Muon's
//!   implied multiplier is the exact inverse square root, so `Rm (BᵀB) Rm = I` (tall) and
//!   `Lm (BBᵀ) Lm = I` (wide), `B = (1 − μ) G` after one step from zero;
//! - every bad input: status, a message naming the problem (the needed length for a short
//!   buffer), caller memory unchanged;
//! - the typed constructor refuses matrix kinds and points to the JSON constructor.

use std::ffi::CString;
use std::ptr::{null, null_mut};

use precond_ffi::*;
use precond_optim::{MatrixPreconditioner, OptimizerConfig};
use precond_status_t::*;

mod common;
use common::{handle_msg, last};

struct Handle(*mut precond_optimizer_t);

impl Handle {
    fn json(cfg: &str, n: usize) -> Handle {
        let c = CString::new(cfg).expect("no NUL");
        let mut out = null_mut();
        // SAFETY: valid string and out pointer.
        let st = unsafe { precond_optimizer_new_json(c.as_ptr(), n, &mut out) };
        assert_eq!(st, PRECOND_OK, "{}", last());
        Handle(out)
    }
    fn step(&self, x: &mut [f64], g: &[f64]) {
        // SAFETY: live handle, buffers of the right length.
        let st = unsafe { precond_optimizer_step_f64(self.0, x.as_mut_ptr(), g.as_ptr(), x.len()) };
        assert_eq!(st, PRECOND_OK, "{}", last());
    }
    fn step_f32(&self, x: &mut [f32], g: &[f32]) {
        // SAFETY: live handle, buffers of the right length.
        let st = unsafe { precond_optimizer_step_f32(self.0, x.as_mut_ptr(), g.as_ptr(), x.len()) };
        assert_eq!(st, PRECOND_OK, "{}", last());
    }
    fn blocks(&self, group: i64) -> Result<usize, (precond_status_t, String)> {
        let mut n = usize::MAX;
        // SAFETY: live handle, writable out.
        let st = unsafe { precond_optimizer_matrix_blocks(self.0, group, &mut n) };
        if st == PRECOND_OK {
            Ok(n)
        } else {
            assert_eq!(n, usize::MAX, "n_blocks written on failure");
            Err((st, handle_msg(self.0)))
        }
    }
    fn range(&self, group: i64, block: usize) -> Result<precond_matrix_block_t, precond_status_t> {
        let mut b = precond_matrix_block_t::default();
        // SAFETY: live handle, writable out.
        let st = unsafe { precond_optimizer_matrix_block_range(self.0, group, block, &mut b) };
        if st == PRECOND_OK {
            Ok(b)
        } else {
            assert_eq!(
                b,
                precond_matrix_block_t::default(),
                "out written on failure"
            );
            Err(st)
        }
    }
    /// Queries the length, then reads the matrix into a buffer of exactly that length.
    fn part(&self, group: i64, which: i32, block: usize) -> Vec<f64> {
        let mut need = usize::MAX;
        // SAFETY: size query (NULL out, length 0), writable `need`.
        let st = unsafe {
            precond_optimizer_matrix_preconditioner(
                self.0,
                group,
                which,
                block,
                null_mut(),
                0,
                &mut need,
            )
        };
        assert_eq!(st, PRECOND_OK, "{}", handle_msg(self.0));
        let mut v = vec![f64::NAN; need];
        let mut written = usize::MAX;
        // SAFETY: `need` writable doubles (a dangling, aligned pointer when `need == 0`).
        let st = unsafe {
            precond_optimizer_matrix_preconditioner(
                self.0,
                group,
                which,
                block,
                v.as_mut_ptr(),
                v.len(),
                &mut written,
            )
        };
        assert_eq!(st, PRECOND_OK, "{}", handle_msg(self.0));
        assert_eq!(written, need);
        v
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a live handle, released once.
        unsafe { precond_optimizer_free(self.0) }
    }
}

/// The seven parts, in `precond_matrix_part_t` order, from a Rust block.
fn rust_parts(m: &MatrixPreconditioner, block: usize) -> [Option<Vec<f64>>; 7] {
    let b = &m.blocks[block];
    [
        b.left.clone(),
        b.right.clone(),
        b.left_factor.clone(),
        b.right_factor.clone(),
        b.left_basis.clone(),
        b.right_basis.clone(),
        b.diagonal.clone(),
    ]
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A deterministic gradient (no two entries alike, full rank blocks).
fn grad(n: usize, t: usize) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * 7 + t * 3) as f64 * 0.37).sin() + 0.1 * (i % 5) as f64 - 0.2)
        .collect()
}

const MIXED: &str = r#"{"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01,
    "groups": [{"start": 0, "end": 18, "shape": [6, 3], "optimizer": "muon", "lr": 0.02},
               {"start": 18, "end": 26, "shape": [2, 4], "order": "F", "optimizer": "muon",
                "lr": 0.02, "nesterov": false}]}"#;
const N_MIXED: usize = 30;

/// Checks every group, block and part read through C against the Rust optimizer.
fn compare_all(h: &Handle, rust: &precond_optim::Optimizer, groups: &[i64]) {
    for &g in groups {
        let m = rust
            .matrix_preconditioner(usize::try_from(g).ok())
            .expect("rust preconditioner");
        assert_eq!(h.blocks(g), Ok(m.blocks.len()));
        for (k, b) in m.blocks.iter().enumerate() {
            let r = h.range(g, k).expect("range");
            assert_eq!(
                (r.rows, r.cols, r.row0, r.row1, r.col0, r.col1),
                (
                    m.rows,
                    m.cols,
                    b.rows.start,
                    b.rows.end,
                    b.cols.start,
                    b.cols.end
                )
            );
            for (which, want) in rust_parts(&m, k).iter().enumerate() {
                let got = h.part(g, which as i32, k);
                let want = want.as_deref().unwrap_or(&[]);
                assert_eq!(bits(&got), bits(want), "group {g} block {k} part {which}");
            }
        }
    }
}

#[test]
fn c_reads_what_rust_computes_f64_and_f32() {
    let h = Handle::json(MIXED, N_MIXED);
    let mut rust = OptimizerConfig::from_json(MIXED)
        .expect("config")
        .build(N_MIXED)
        .expect("build");
    let (mut xc, mut xr) = (vec![0.5; N_MIXED], vec![0.5; N_MIXED]);
    for t in 0..3 {
        let g = grad(N_MIXED, t);
        h.step(&mut xc, &g);
        rust.step_f64(&mut xr, &g).expect("rust step");
    }
    assert_eq!(bits(&xc), bits(&xr));
    compare_all(&h, &rust, &[0, 1]);
    // the tall group has a right multiplier only, the wide one a left one, each symmetric
    let m0 = rust.matrix_preconditioner(Some(0)).expect("group 0");
    assert!(m0.blocks[0].left.is_none() && m0.blocks[0].right.as_ref().map(Vec::len) == Some(9));
    let m1 = rust.matrix_preconditioner(Some(1)).expect("group 1");
    assert!(m1.blocks[0].right.is_none() && m1.blocks[0].left.as_ref().map(Vec::len) == Some(4));

    // f32 steps (state stored in f32) and a top-level matrix
    let top = r#"{"optimizer": "muon", "lr": 0.02, "shape": [3, 5]}"#;
    let h = Handle::json(top, 15);
    let mut rust = OptimizerConfig::from_json(top)
        .expect("config")
        .build(15)
        .expect("build");
    let (mut xc, mut xr) = (vec![0.25f32; 15], vec![0.25f32; 15]);
    for t in 0..2 {
        let g: Vec<f32> = grad(15, t).iter().map(|&v| v as f32).collect();
        h.step_f32(&mut xc, &g);
        rust.step_f32(&mut xr, &g).expect("rust step");
    }
    compare_all(&h, &rust, &[-1]);
    assert_eq!(
        h.part(-1, precond_matrix_part_t::PRECOND_MATRIX_LEFT as i32, 0)
            .len(),
        9
    );
}

/// `Lm·S·Lm` with `S` symmetric `p × p`, all row-major.
fn sandwich(m: &[f64], s: &[f64], p: usize) -> Vec<f64> {
    let mul = |a: &[f64], b: &[f64]| -> Vec<f64> {
        let mut c = vec![0.0; p * p];
        for i in 0..p {
            for k in 0..p {
                for j in 0..p {
                    c[i * p + j] += a[i * p + k] * b[k * p + j];
                }
            }
        }
        c
    };
    mul(&mul(m, s), m)
}

#[test]
fn convergent_newton_schulz_gives_the_inverse_square_root() {
    // NS(1.5, -0.5, 0) is the coupled Newton–Schulz iteration for G₀^{-1/2}, G₀ = YYᵀ/‖Y‖²
    // with eigenvalues in (0, 1]: it converges quadratically, so the implied multiplier is exact
    // to rounding. Here κ(G₀) ≈ 61 (tall) and 6.4 (wide): ‖M G₀ M − I‖ is 2e-7 after 9 steps,
    // 6e-14 after 10; after convergence this un-symmetrized form amplifies rounding by ≈ 3.4
    // per step (NaN by step 60), so 11 steps and a tolerance of 5e4·ε cover both.
    let mu = 0.9;
    let cfg = format!(
        r#"{{"optimizer": "adamw", "groups": [
            {{"start": 0, "end": 18, "shape": [6, 3], "optimizer": "muon", "momentum": {mu},
              "ns_coefficients": [1.5, -0.5, 0.0], "ns_steps": 11}},
            {{"start": 18, "end": 26, "shape": [2, 4], "order": "F", "optimizer": "muon",
              "momentum": {mu}, "ns_coefficients": [1.5, -0.5, 0.0], "ns_steps": 11}}]}}"#
    );
    let h = Handle::json(&cfg, N_MIXED);
    let g = grad(N_MIXED, 1);
    let mut x = vec![0.0; N_MIXED];
    h.step(&mut x, &g);
    let b: Vec<f64> = g.iter().map(|v| (1.0 - mu) * v).collect();
    let tol = 5e4 * f64::EPSILON;
    // tall 6 × 3, row-major: Rm (BᵀB) Rm = I₃
    let (r, c) = (6, 3);
    let mut btb = vec![0.0; c * c];
    for i in 0..c {
        for j in 0..c {
            btb[i * c + j] = (0..r).map(|k| b[k * c + i] * b[k * c + j]).sum();
        }
    }
    let rm = h.part(0, precond_matrix_part_t::PRECOND_MATRIX_RIGHT as i32, 0);
    assert_eq!(
        h.part(0, precond_matrix_part_t::PRECOND_MATRIX_LEFT as i32, 0)
            .len(),
        0
    );
    for (idx, v) in sandwich(&rm, &btb, c).iter().enumerate() {
        let want = if idx % (c + 1) == 0 { 1.0 } else { 0.0 };
        assert!((v - want).abs() < tol, "Rm BᵀB Rm [{idx}] = {v}");
    }
    // wide 2 × 4 stored column-major: entry (i, j) at 18 + i + 2j; Lm (BBᵀ) Lm = I₂
    let (r, c) = (2, 4);
    let at = |i: usize, j: usize| b[18 + i + r * j];
    let mut bbt = vec![0.0; r * r];
    for i in 0..r {
        for j in 0..r {
            bbt[i * r + j] = (0..c).map(|k| at(i, k) * at(j, k)).sum();
        }
    }
    let lm = h.part(1, precond_matrix_part_t::PRECOND_MATRIX_LEFT as i32, 0);
    for (idx, v) in sandwich(&lm, &bbt, r).iter().enumerate() {
        let want = if idx % (r + 1) == 0 { 1.0 } else { 0.0 };
        assert!((v - want).abs() < tol, "Lm BBᵀ Lm [{idx}] = {v}");
    }
}

#[test]
fn bad_inputs_are_refused_and_change_nothing() {
    let h = Handle::json(MIXED, N_MIXED);
    // before the first step there is no preconditioner yet
    let (st, msg) = h.blocks(0).expect_err("no step yet");
    assert_eq!(st, PRECOND_NUMERICAL_FAILURE, "{msg}");
    assert!(
        msg.starts_with("precond_optimizer_matrix_blocks: "),
        "{msg}"
    );
    let mut x = vec![0.5; N_MIXED];
    h.step(&mut x, &grad(N_MIXED, 0));
    assert_eq!(h.blocks(0), Ok(1));

    // group: below -1, out of range, the per-element top level
    let (st, msg) = h.blocks(-2).expect_err("group -2");
    assert_eq!(st, PRECOND_INVALID_ARGUMENT);
    assert!(msg.contains("`group` is -2"), "{msg}");
    let (st, msg) = h.blocks(7).expect_err("group 7");
    assert_eq!(st, PRECOND_INVALID_ARGUMENT);
    assert!(msg.contains("groups[7]"), "{msg}");
    let (st, msg) = h.blocks(-1).expect_err("top level is adamw");
    assert_eq!(st, PRECOND_INVALID_ARGUMENT, "{msg}");
    assert_eq!(last(), msg, "thread-local and handle messages agree");

    // block out of range
    assert_eq!(h.range(0, 1), Err(PRECOND_DIMENSION_MISMATCH));
    assert!(handle_msg(h.0).contains("block` is 1 but the preconditioner has 1 block"));

    let which = precond_matrix_part_t::PRECOND_MATRIX_RIGHT as i32;
    let mut buf = [7.0; 12];
    let mut written = 99usize;
    let call = |which: i32, out: *mut f64, len: usize, written: *mut usize| {
        // SAFETY: live handle; `out` has `len` writable doubles or is NULL; `written` writable
        // or NULL.
        unsafe { precond_optimizer_matrix_preconditioner(h.0, 0, which, 0, out, len, written) }
    };
    // unknown part
    assert_eq!(
        call(7, buf.as_mut_ptr(), 12, &mut written),
        PRECOND_INVALID_ARGUMENT
    );
    assert!(
        handle_msg(h.0).contains("`which` is 7"),
        "{}",
        handle_msg(h.0)
    );
    assert_eq!(
        call(-1, buf.as_mut_ptr(), 12, &mut written),
        PRECOND_INVALID_ARGUMENT
    );
    // a short buffer names the length needed (3 × 3)
    assert_eq!(
        call(which, buf.as_mut_ptr(), 8, &mut written),
        PRECOND_DIMENSION_MISMATCH
    );
    let msg = handle_msg(h.0);
    assert!(msg.contains("length 8") && msg.contains("needs 9"), "{msg}");
    // NULL `out` with a length, NULL `written`, `written` inside `out`
    assert_eq!(
        call(which, null_mut(), 9, &mut written),
        PRECOND_NULL_POINTER
    );
    assert!(handle_msg(h.0).contains("`out` is NULL"));
    assert_eq!(
        call(which, buf.as_mut_ptr(), 12, null_mut()),
        PRECOND_NULL_POINTER
    );
    assert!(handle_msg(h.0).contains("`written` is NULL"));
    let inside = buf.as_mut_ptr().wrapping_add(10).cast::<usize>();
    assert_eq!(
        call(which, buf.as_mut_ptr(), 12, inside),
        PRECOND_INVALID_ARGUMENT
    );
    assert!(handle_msg(h.0).contains("outputs `out` and `written` overlap"));
    // nothing was written by any failing call
    assert_eq!(written, 99);
    assert!(buf.iter().all(|&v| v.to_bits() == 7.0f64.to_bits()));
    // a larger buffer is fine: only the first 9 entries are written
    assert_eq!(call(which, buf.as_mut_ptr(), 12, &mut written), PRECOND_OK);
    assert_eq!(written, 9);
    assert!(buf[9..].iter().all(|&v| v.to_bits() == 7.0f64.to_bits()));
    // an absent part: OK, length 0, nothing written
    let left = precond_matrix_part_t::PRECOND_MATRIX_LEFT as i32;
    let mut before = buf;
    assert_eq!(
        call(left, before.as_mut_ptr(), 12, &mut written),
        PRECOND_OK
    );
    assert_eq!(written, 0);
    assert_eq!(bits(&before), bits(&buf));

    // NULL handle
    let mut n = 5usize;
    // SAFETY: a NULL handle is refused before use.
    let st = unsafe { precond_optimizer_matrix_blocks(null(), 0, &mut n) };
    assert_eq!(st, PRECOND_NULL_POINTER);
    assert_eq!(n, 5);
    // NULL outputs of the two queries
    // SAFETY: live handle; NULL outputs are refused.
    let st = unsafe { precond_optimizer_matrix_blocks(h.0, 0, null_mut()) };
    assert_eq!(st, PRECOND_NULL_POINTER);
    // SAFETY: live handle; NULL outputs are refused.
    let st = unsafe { precond_optimizer_matrix_block_range(h.0, 0, 0, null_mut()) };
    assert_eq!(st, PRECOND_NULL_POINTER);
    // the handle is still usable
    h.step(&mut x, &grad(N_MIXED, 1));
    assert_eq!(h.blocks(1), Ok(1));
}

#[test]
fn diagonal_preconditioner_of_a_matrix_group_points_to_the_matrix_call() {
    let h = Handle::json(MIXED, N_MIXED);
    let mut x = vec![0.5; N_MIXED];
    h.step(&mut x, &grad(N_MIXED, 0));
    let mut p = vec![0.0; N_MIXED];
    // SAFETY: live handle, `N_MIXED` writable doubles.
    let st = unsafe { precond_optimizer_preconditioner(h.0, p.as_mut_ptr(), N_MIXED) };
    assert_eq!(st, PRECOND_INVALID_ARGUMENT);
    assert!(
        handle_msg(h.0).contains("matrix_preconditioner"),
        "{}",
        handle_msg(h.0)
    );
}

#[test]
fn typed_constructor_refuses_matrix_kinds() {
    let mut cfg = std::mem::MaybeUninit::<precond_optimizer_config_t>::uninit();
    // SAFETY: writable out; an unknown kind is refused.
    let st = unsafe { precond_optimizer_config_init(7, cfg.as_mut_ptr()) };
    assert_eq!(st, PRECOND_INVALID_ARGUMENT);
    let msg = last();
    assert!(
        msg.contains("\"muon\"") && msg.contains("precond_optimizer_new_json"),
        "{msg}"
    );
}
