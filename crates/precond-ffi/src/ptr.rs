//! Checked conversions of C pointers and sizes: every pointer is null-checked and
//! alignment-checked, every size product goes through `checked_mul`, and enum-like integers are
//! validated before use.

use crate::status::{FfiError, FfiResult};
use precond_linalg::Layout;

/// Memory order of a dense matrix passed as a flat buffer (the `layout` argument of the
/// diagnostics). Passed as an `int32_t`; any other value is `PRECOND_INVALID_ARGUMENT`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum precond_layout_t {
    /// `a[i * ncols + j]` is entry `(i, j)` (C order).
    PRECOND_ROW_MAJOR = 0,
    /// `a[i + j * nrows]` is entry `(i, j)` (Fortran / Julia order).
    PRECOND_COL_MAJOR = 1,
}

/// Validates a `layout` integer.
pub(crate) fn layout(v: i32) -> FfiResult<Layout> {
    match v {
        0 => Ok(Layout::RowMajor),
        1 => Ok(Layout::ColMajor),
        _ => Err(FfiError::invalid(format!(
            "argument `layout` is {v}; expected PRECOND_ROW_MAJOR (0) or PRECOND_COL_MAJOR (1)"
        ))),
    }
}

/// `len * size_of::<T>()` must fit in `isize` for a slice to exist.
fn check_bytes<T>(len: usize, arg: &str) -> FfiResult<()> {
    let ok = len
        .checked_mul(size_of::<T>())
        .is_some_and(|b| b <= isize::MAX as usize);
    if ok {
        Ok(())
    } else {
        Err(FfiError::dims(format!(
            "argument `{arg}`: length {len} overflows the address space"
        )))
    }
}

pub(crate) fn check_ptr<T>(p: *const T, arg: &str) -> FfiResult<()> {
    if p.is_null() {
        return Err(FfiError::null(arg));
    }
    if !p.is_aligned() {
        return Err(FfiError::invalid(format!(
            "argument `{arg}` is not aligned to {} bytes",
            align_of::<T>()
        )));
    }
    Ok(())
}

// Every helper below that makes a reference from a raw pointer is an `unsafe fn` taking the
// pointer *by reference*: the result borrows the pointer argument of the C call (a local of
// the entry point, or a field of a struct borrowed for the call), so it cannot outlive the
// call that received it. Callers wrap each call in `unsafe { }` with a `// SAFETY:` comment
// naming the C contract that makes it sound.

/// A read-only slice of `len` elements at `*p`, borrowed for as long as `p` is.
///
/// # Safety
/// If `*p` is non-null and aligned, it must point to `len` readable, initialized elements that
/// are not written during `'a` (for an entry point's argument: during the call).
pub(crate) unsafe fn in_slice<'a, T>(p: &'a *const T, len: usize, arg: &str) -> FfiResult<&'a [T]> {
    let p = *p;
    check_ptr(p, arg)?;
    check_bytes::<T>(len, arg)?;
    // SAFETY: non-null, aligned, size fits isize; validity for `'a` is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A writable slice of `len` elements at `*p`, borrowed for as long as `p` is.
///
/// # Safety
/// If `*p` is non-null and aligned, it must point to `len` writable elements not accessed
/// through any other pointer during `'a` (for an entry point's argument: during the call).
#[expect(
    clippy::mut_from_ref,
    reason = "the `&'a *mut T` only bounds the lifetime to the C call's pointer argument; \
              exclusive access to the pointee is this unsafe fn's documented contract"
)]
pub(crate) unsafe fn out_slice<'a, T>(
    p: &'a *mut T,
    len: usize,
    arg: &str,
) -> FfiResult<&'a mut [T]> {
    let p = *p;
    check_ptr(p, arg)?;
    check_bytes::<T>(len, arg)?;
    // SAFETY: non-null, aligned, size fits isize; validity and exclusivity for `'a` are the
    // caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// A writable single value at `*p`, borrowed for as long as `p` is. `T: Copy`: the C caller's
/// out-parameter may be uninitialized, and assigning a `Copy` value neither reads nor drops the
/// old one.
///
/// # Safety
/// If `*p` is non-null and aligned it must be valid for writes of one `T` and not accessed
/// through any other pointer during `'a`.
#[expect(
    clippy::mut_from_ref,
    reason = "the `&'a *mut T` only bounds the lifetime to the C call's pointer argument; \
              exclusive access to the pointee is this unsafe fn's documented contract"
)]
pub(crate) unsafe fn out_ref<'a, T: Copy>(p: &'a *mut T, arg: &str) -> FfiResult<&'a mut T> {
    let p = *p;
    check_ptr(p, arg)?;
    // SAFETY: non-null and aligned; validity and exclusivity for `'a` are the caller's contract.
    Ok(unsafe { &mut *p })
}

/// A read-only single value at `*p`, borrowed for as long as `p` is.
///
/// # Safety
/// If `*p` is non-null and aligned it must point to an initialized `T` not written during `'a`.
pub(crate) unsafe fn in_ref<'a, T>(p: &'a *const T, arg: &str) -> FfiResult<&'a T> {
    let p = *p;
    check_ptr(p, arg)?;
    // SAFETY: non-null and aligned; validity for `'a` is the caller's contract.
    Ok(unsafe { &*p })
}

/// `nrows * ncols` with overflow reported as a dimension error naming the arguments.
pub(crate) fn mat_len(nrows: usize, ncols: usize, what: &str) -> FfiResult<usize> {
    nrows
        .checked_mul(ncols)
        .ok_or_else(|| FfiError::dims(format!("{what}: {nrows} x {ncols} entries overflow size_t")))
}

/// Rejects a zero dimension.
pub(crate) fn nonzero(v: usize, arg: &str) -> FfiResult<()> {
    if v == 0 {
        Err(FfiError::invalid(format!(
            "argument `{arg}` is 0; it must be positive"
        )))
    } else {
        Ok(())
    }
}

/// Requires `got == expected` for a caller buffer length.
pub(crate) fn expect_len(got: usize, expected: usize, arg: &str) -> FfiResult<()> {
    if got == expected {
        Ok(())
    } else {
        Err(FfiError::dims(format!(
            "argument `{arg}` has length {got}, expected {expected}"
        )))
    }
}

/// Validates a C boolean (`0` or `1`).
pub(crate) fn bool01(v: i32, arg: &str) -> FfiResult<bool> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(FfiError::invalid(format!(
            "field `{arg}` is {v}; a boolean must be 0 or 1"
        ))),
    }
}

/// Takes back and drops a handle made by `Box::into_raw` (the `precond_*_free` functions);
/// NULL is ignored. The drop stays behind the C boundary (a panic is caught, never unwound
/// into C).
///
/// # Safety
/// `p` is NULL or a live pointer from `Box::into_raw` not freed before.
pub(crate) unsafe fn free_box<T>(p: *mut T) {
    if p.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: a live pointer from Box::into_raw, by the caller's contract.
        drop(unsafe { Box::from_raw(p) });
    }));
}

/// True when the byte ranges of two buffers overlap.
pub(crate) fn overlaps<A, B>(a: *const A, a_len: usize, b: *const B, b_len: usize) -> bool {
    let (a0, b0) = (a as usize, b as usize);
    let a1 = a0.saturating_add(a_len.saturating_mul(size_of::<A>()));
    let b1 = b0.saturating_add(b_len.saturating_mul(size_of::<B>()));
    a0 < b1 && b0 < a1 && a_len > 0 && b_len > 0
}

/// Refuses two *output* buffers of one call whose byte ranges overlap (`a_len` values of `A` at
/// `a`, `b_len` values of `B` at `b`): writing one would change the other, and the Rust slices
/// formed over them would alias. A NULL output (an optional output left out, or a required one
/// that its own NULL check reports) skips the check. Runs before anything is written.
pub(crate) fn outputs_disjoint<A, B>(
    a: *const A,
    a_len: usize,
    a_arg: &str,
    b: *const B,
    b_len: usize,
    b_arg: &str,
) -> FfiResult {
    if !a.is_null() && !b.is_null() && overlaps(a, a_len, b, b_len) {
        return Err(FfiError::invalid(format!(
            "outputs `{a_arg}` and `{b_arg}` overlap; they must be distinct buffers"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_disjoint_compares_byte_ranges() {
        let mut buf = [0u64; 4];
        let p = buf.as_mut_ptr();
        // adjacent: fine; one byte into the other: refused, naming both
        assert!(outputs_disjoint(p, 2, "a", p.wrapping_add(2), 2, "b").is_ok());
        let e = outputs_disjoint(p, 2, "a", p.cast::<u8>().wrapping_add(15), 1, "b")
            .expect_err("overlap");
        assert_eq!(
            e.status,
            crate::status::precond_status_t::PRECOND_INVALID_ARGUMENT
        );
        assert!(e.message.contains("`a` and `b` overlap"), "{}", e.message);
        // NULL and empty outputs are never in conflict
        assert!(outputs_disjoint(std::ptr::null::<u64>(), 4, "a", p, 4, "b").is_ok());
        assert!(outputs_disjoint(p, 0, "a", p, 4, "b").is_ok());
    }
}
