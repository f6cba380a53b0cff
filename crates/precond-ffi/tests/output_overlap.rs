//! Two output buffers of one call that overlap each other are refused in every entry point with
//! two or more outputs (`precond_sym_eigenvalues`, `precond_row_equilibrate`,
//! `precond_col_equilibrate`, `precond_optimizer_last_nonfinite`,
//! `precond_optimizer_save_state`): `PRECOND_INVALID_ARGUMENT`, a message naming both outputs,
//! and every output left as it was. Adjacent outputs and NULL optional outputs are accepted.
//! (`precond_optimizer_matrix_preconditioner`'s `out` and `written`: `tests/matrix.rs`.)

use std::ffi::CString;
use std::ptr::null_mut;

use precond_ffi::*;
use precond_status_t::*;

mod common;
use common::{handle_msg, last};

#[track_caller]
fn refused(st: precond_status_t, msg: &str, a: &str, b: &str) {
    assert_eq!(st, PRECOND_INVALID_ARGUMENT, "message: {msg}");
    let needle = format!("outputs `{a}` and `{b}` overlap");
    assert!(msg.contains(&needle), "`{msg}` does not say `{needle}`");
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A symmetric positive definite 3 × 3 matrix (row-major).
const H: [f64; 9] = [4.0, 1.0, 0.0, 1.0, 3.0, 0.5, 0.0, 0.5, 2.0];

#[test]
fn sym_eigenvalues_refuses_summary_inside_eigenvalues() {
    // one f64 buffer large enough for `eigenvalues` (3) and a `precond_spectrum_t` (7 f64 + 2 i32)
    let n_f64 = 3 + size_of::<precond_spectrum_t>() / 8 + 1;
    for start in [0usize, 1, 2] {
        let mut buf = vec![-7.25f64; n_f64];
        let before = bits(&buf);
        let p = buf.as_mut_ptr();
        // SAFETY: `buf` holds the 3 eigenvalues at `p` and a whole `precond_spectrum_t` at
        // `p + start` (aligned to 8 bytes, as the struct); the overlap is the error under test.
        let st = unsafe {
            precond_sym_eigenvalues(
                H.as_ptr(),
                3,
                0,
                p,
                3,
                p.add(start).cast::<precond_spectrum_t>(),
            )
        };
        refused(st, &last(), "eigenvalues", "summary");
        assert!(
            last().starts_with("precond_sym_eigenvalues: "),
            "{}",
            last()
        );
        assert_eq!(
            bits(&buf),
            before,
            "an output was written (summary at {start})"
        );
    }
    // the summary just past the eigenvalues, or no summary at all: accepted
    let mut buf = vec![0.0f64; n_f64];
    let p = buf.as_mut_ptr();
    // SAFETY: disjoint ranges of `buf`, each large enough.
    let st = unsafe {
        precond_sym_eigenvalues(
            H.as_ptr(),
            3,
            0,
            p,
            3,
            p.add(3).cast::<precond_spectrum_t>(),
        )
    };
    assert_eq!(st, PRECOND_OK, "{}", last());
    // SAFETY: 3 writable doubles, NULL summary.
    let st = unsafe { precond_sym_eigenvalues(H.as_ptr(), 3, 0, p, 3, null_mut()) };
    assert_eq!(st, PRECOND_OK, "{}", last());
}

#[test]
fn equilibrations_refuse_scale_overlapping_scaled() {
    type Eq = unsafe extern "C" fn(
        *const f64,
        usize,
        usize,
        i32,
        *mut f64,
        usize,
        *mut f64,
        usize,
    ) -> precond_status_t;
    for (name, f) in [
        ("precond_row_equilibrate", precond_row_equilibrate as Eq),
        ("precond_col_equilibrate", precond_col_equilibrate as Eq),
    ] {
        // `scale` (3 doubles) at offset 0, `scaled` (9 doubles) starting at each offset that
        // shares at least one double with it, or containing it
        for start in [0usize, 1, 2] {
            let mut buf = vec![-1.5f64; 12];
            let before = bits(&buf);
            let p = buf.as_mut_ptr();
            // SAFETY: `buf` has 12 doubles: 3 at `p`, 9 at `p + start ≤ p + 3`; the overlap is
            // the error under test.
            let st = unsafe { f(H.as_ptr(), 3, 3, 0, p, 3, p.add(start), 9) };
            refused(st, &last(), "scale", "scaled");
            assert!(last().starts_with(name), "{}", last());
            assert_eq!(bits(&buf), before, "{name}: an output was written");
            // `scale` inside `scaled`, in the other order of addresses
            let mut buf = vec![-1.5f64; 12];
            let p = buf.as_mut_ptr();
            // SAFETY: as above, `scale` at `p + 3 + start` inside `scaled` at `p`.
            let st = unsafe { f(H.as_ptr(), 3, 3, 0, p.add(3 + start), 3, p, 9) };
            refused(st, &last(), "scale", "scaled");
            assert_eq!(bits(&buf), before, "{name}: an output was written");
        }
        // adjacent outputs, and a NULL `scaled`: accepted
        let mut buf = vec![0.0f64; 12];
        let p = buf.as_mut_ptr();
        // SAFETY: disjoint ranges of `buf`.
        let st = unsafe { f(H.as_ptr(), 3, 3, 0, p, 3, p.add(3), 9) };
        assert_eq!(st, PRECOND_OK, "{name}: {}", last());
        // SAFETY: 3 writable doubles; NULL optional output.
        let st = unsafe { f(H.as_ptr(), 3, 3, 0, p, 3, null_mut(), 0) };
        assert_eq!(st, PRECOND_OK, "{name}: {}", last());
    }
}

struct Handle(*mut precond_optimizer_t);

impl Handle {
    /// Adam over `n` parameters after one step with a NaN gradient entry under policy
    /// `"skip"`, so that `last_nonfinite` has something to report.
    fn adam(n: usize) -> Handle {
        let cfg = CString::new(r#"{"optimizer": "adam", "lr": 0.1, "nonfinite": "skip"}"#)
            .expect("no NUL");
        let mut out = null_mut();
        // SAFETY: valid string and out pointer.
        let st = unsafe { precond_optimizer_new_json(cfg.as_ptr(), n, &mut out) };
        assert_eq!(st, PRECOND_OK, "{}", last());
        let h = Handle(out);
        let mut x = vec![1.0; n];
        let g: Vec<f64> = (0..n).map(|i| 0.5 + i as f64).collect();
        // SAFETY: live handle, `n` doubles each.
        let st = unsafe { precond_optimizer_step_f64(h.0, x.as_mut_ptr(), g.as_ptr(), n) };
        assert_eq!(st, PRECOND_OK, "{}", last());
        let mut bad = g.clone();
        bad[n - 1] = f64::NAN;
        // SAFETY: as above.
        let st = unsafe { precond_optimizer_step_f64(h.0, x.as_mut_ptr(), bad.as_ptr(), n) };
        assert_eq!(st, PRECOND_OK, "{}", last());
        h
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a live handle, freed once.
        unsafe { precond_optimizer_free(self.0) };
    }
}

#[test]
fn last_nonfinite_refuses_found_overlapping_index() {
    let h = Handle::adam(3);
    // `found` (4 bytes) at byte offset 0 or 4 of the 8 bytes of `index`
    for offset in [0usize, 1] {
        let mut cell = [0x5a5a_5a5a_u32; 4];
        let before = cell;
        let base = cell.as_mut_ptr();
        // SAFETY: `cell` is 16 bytes aligned to 4; `index` needs 8-byte alignment, so take the
        // first 8-aligned u32 of it. The overlap is the error under test.
        let st = unsafe {
            let aligned = base.add(base.align_offset(8));
            let index = aligned.cast::<usize>();
            let found = aligned.add(offset).cast::<i32>();
            precond_optimizer_last_nonfinite(h.0, found, index)
        };
        refused(st, &handle_msg(h.0), "found", "index");
        refused(st, &last(), "found", "index");
        assert!(last().starts_with("precond_optimizer_last_nonfinite: "));
        assert_eq!(cell, before, "an output was written");
    }
    // distinct outputs: the skipped NaN at index 2 is reported
    let (mut found, mut index) = (-1i32, usize::MAX);
    // SAFETY: live handle, two distinct writable values.
    let st = unsafe { precond_optimizer_last_nonfinite(h.0, &mut found, &mut index) };
    assert_eq!(st, PRECOND_OK, "{}", last());
    assert_eq!((found, index), (1, 2));
}

#[test]
fn save_state_refuses_written_inside_buf() {
    let h = Handle::adam(4);
    let mut size = 0usize;
    // SAFETY: live handle.
    assert_eq!(
        unsafe { precond_optimizer_state_size(h.0, &mut size) },
        PRECOND_OK
    );
    let words = size.div_ceil(8) + 2;
    // `written` at the first, a middle and the last full word of `buf`
    for word in [0usize, words / 2, size / 8 - 1] {
        let mut store = vec![0xa5a5_a5a5_a5a5_a5a5_u64; words];
        let before = store.clone();
        let buf = store.as_mut_ptr().cast::<u8>();
        // SAFETY: `store` has `words * 8 ≥ size` bytes; `written` is an aligned word inside
        // `buf`, the error under test.
        let st = unsafe {
            precond_optimizer_save_state(
                h.0,
                buf,
                size,
                store.as_mut_ptr().add(word).cast::<usize>(),
            )
        };
        refused(st, &handle_msg(h.0), "buf", "written");
        assert!(last().starts_with("precond_optimizer_save_state: "));
        assert_eq!(
            store, before,
            "an output was written (`written` at word {word})"
        );
    }
    // `written` in the first word past `buf`: accepted, and the bytes are those of a save into
    // separate buffers
    let mut full = vec![0u8; size];
    let mut written = 0usize;
    // SAFETY: distinct buffers of the right sizes.
    let st = unsafe { precond_optimizer_save_state(h.0, full.as_mut_ptr(), size, &mut written) };
    assert_eq!(st, PRECOND_OK, "{}", last());
    assert_eq!(written, size);
    let past = size.div_ceil(8);
    let mut store = vec![0u64; past + 1];
    let buf = store.as_mut_ptr().cast::<u8>();
    // SAFETY: `buf` has `size` bytes; `written` is the aligned word at byte `8 * past ≥ size`.
    let st = unsafe {
        precond_optimizer_save_state(h.0, buf, size, store.as_mut_ptr().add(past).cast::<usize>())
    };
    assert_eq!(st, PRECOND_OK, "{}", last());
    assert_eq!(store[past] as usize, size);
    let bytes: Vec<u8> = store
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .take(size)
        .collect();
    assert_eq!(bytes, full);
}
