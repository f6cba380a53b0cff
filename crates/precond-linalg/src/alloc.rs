//! Fallible allocation (internal): every buffer whose size follows from the caller's input is
//! requested with these helpers, so that an allocator refusal becomes
//! [`LinalgError::OutOfMemory`] instead of aborting the process (`libprecond` runs inside other
//! people's processes). Not covered: the per-thread packing buffer that faer's matrix-product
//! kernel (`private-gemm-x86`) reserves with an infallible `Vec::with_capacity` on a thread's
//! first large product; no caller-side workspace replaces it.

use faer::Mat;
use faer::dyn_stack::{MemBuffer, StackReq};

use crate::error::{LinalgError, Result};

/// Bytes of `count` elements of `size` bytes each, saturated at `u64::MAX`.
pub(crate) fn bytes_of(count: usize, size: usize) -> u64 {
    (count as u64).saturating_mul(size as u64)
}

fn oom(what: &'static str, bytes: u64) -> LinalgError {
    LinalgError::OutOfMemory { what, bytes }
}

/// Buffers from this size on are advised to the kernel as transparent huge pages
/// ([`advise_huge_pages`]).
const HUGE_PAGES_MIN_BYTES: usize = 4 << 20;

/// Asks the kernel to back the whole pages of `[ptr, ptr + bytes)` with transparent huge pages
/// (Linux `madvise(MADV_HUGEPAGE)`: honoured when `/sys/kernel/mm/transparent_hugepage/enabled`
/// is `madvise` or `always`), for a buffer of at least [`HUGE_PAGES_MIN_BYTES`] not yet touched:
/// its first writes then fault one 2 MiB page at a time instead of 512 pages of 4 KiB, and
/// the routines that walk it miss the TLB less. numpy advises its large arrays the same way
/// (`numpy/_core/src/multiarray/alloc.c`, from 4 MiB), so LAPACK's side of every comparison in
/// BENCHMARKS.md already had it. Advisory only: no contents change, and a refusal (an old
/// kernel, huge pages disabled) leaves ordinary pages.
fn advise_huge_pages(ptr: *mut u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    if let Some((start, end)) = whole_pages(ptr as usize, bytes) {
        // SAFETY: `[start, end)` lies inside the caller's live allocation; MADV_HUGEPAGE
        // changes neither the contents nor the validity of the range, only how the kernel
        // backs it (the result is ignored: the advice is optional).
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes);
}

/// The whole 4 KiB pages `[start, end)` inside `[addr, addr + bytes)` when the buffer is long
/// enough to advise ([`HUGE_PAGES_MIN_BYTES`]), else `None`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn whole_pages(addr: usize, bytes: usize) -> Option<(usize, usize)> {
    const PAGE: usize = 4096;
    if bytes < HUGE_PAGES_MIN_BYTES {
        return None;
    }
    let start = addr.checked_next_multiple_of(PAGE)?;
    let end = addr.checked_add(bytes)? & !(PAGE - 1);
    (end > start).then_some((start, end))
}

/// A `Vec` of `len` copies of `value`, or [`LinalgError::OutOfMemory`] naming `what`.
pub(crate) fn try_vec<T: Clone>(what: &'static str, len: usize, value: T) -> Result<Vec<T>> {
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| oom(what, bytes_of(len, core::mem::size_of::<T>())))?;
    advise_huge_pages(
        v.as_mut_ptr().cast(),
        v.capacity() * core::mem::size_of::<T>(),
    );
    v.resize(len, value);
    Ok(v)
}

/// A `Vec` of the items of an iterator of known length `len`, or
/// [`LinalgError::OutOfMemory`] naming `what` (reserved before the first item is produced).
pub(crate) fn try_collect<T>(
    what: &'static str,
    len: usize,
    items: impl IntoIterator<Item = T>,
) -> Result<Vec<T>> {
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| oom(what, bytes_of(len, core::mem::size_of::<T>())))?;
    advise_huge_pages(
        v.as_mut_ptr().cast(),
        v.capacity() * core::mem::size_of::<T>(),
    );
    v.extend(items);
    Ok(v)
}

/// `Mat::from_fn(nrows, ncols, f)` (same layout and column stride), or
/// [`LinalgError::OutOfMemory`] naming `what`.
pub(crate) fn try_mat_from_fn(
    what: &'static str,
    nrows: usize,
    ncols: usize,
    f: impl FnMut(usize, usize) -> f64,
) -> Result<Mat<f64>> {
    let mut m = Mat::<f64>::new();
    m.try_reserve(nrows, ncols).map_err(|_| {
        oom(
            what,
            bytes_of(nrows, core::mem::size_of::<f64>()).saturating_mul(ncols as u64),
        )
    })?;
    // (the reserved columns are `col_stride` apart: the buffer holds at least `ncols` of them)
    let bytes = m.col_stride().unsigned_abs() * ncols * core::mem::size_of::<f64>();
    advise_huge_pages(m.as_ptr_mut().cast(), bytes);
    m.resize_with(nrows, ncols, f);
    Ok(m)
}

/// `Mat::zeros(nrows, ncols)`, or [`LinalgError::OutOfMemory`] naming `what`.
pub(crate) fn try_zeros(what: &'static str, nrows: usize, ncols: usize) -> Result<Mat<f64>> {
    try_mat_from_fn(what, nrows, ncols, |_, _| 0.0)
}

/// An owned copy of `a` (same values, the layout of `Mat::from_fn`), or
/// [`LinalgError::OutOfMemory`] naming `what`.
pub(crate) fn try_to_owned(what: &'static str, a: faer::MatRef<'_, f64>) -> Result<Mat<f64>> {
    // zero fill (a memset) then faer's vectorized copy: 3× faster than filling through an
    // element closure (a bounds-checked, strided read and a drop-guard update per entry)
    let mut m = try_zeros(what, a.nrows(), a.ncols())?;
    m.copy_from(a);
    Ok(m)
}

/// A workspace of `req` for faer's low-level routines, or [`LinalgError::OutOfMemory`] naming
/// `what` (also when `req` itself overflowed: then `bytes` is `u64::MAX`).
pub(crate) fn try_mem(what: &'static str, req: StackReq) -> Result<MemBuffer> {
    MemBuffer::try_new(req).map_err(|_| {
        let bytes = if req.align_bytes() == 0 {
            u64::MAX
        } else {
            req.size_bytes() as u64
        };
        oom(what, bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_page_advice_covers_only_whole_pages_inside_long_buffers() {
        let min = HUGE_PAGES_MIN_BYTES;
        assert_eq!(whole_pages(0x1000, min - 1), None);
        assert_eq!(whole_pages(0x1000, min), Some((0x1000, 0x1000 + min)));
        // a malloc'd block 16 bytes past a page: the first partial page is left out, and so
        // is the partial page at the end
        assert_eq!(
            whole_pages(0x7000_0010, min + 100),
            Some((0x7000_1000, (0x7000_0010 + min + 100) & !0xfff))
        );
        for addr in [1usize, 0xfff, 0x1001, 0x1234_5678] {
            for bytes in [min, min + 1, 3 * min + 4095] {
                let (s, e) = whole_pages(addr, bytes).expect("long enough");
                assert!(s >= addr && e <= addr + bytes && s % 4096 == 0 && e % 4096 == 0);
                assert!(
                    s - addr < 4096 && addr + bytes - e < 4096,
                    "{addr:#x} {bytes}"
                );
            }
        }
        // no overflow near the top of the address space
        assert_eq!(whole_pages(usize::MAX - 10, min), None);
        assert_eq!(whole_pages(usize::MAX - min + 1, min), None);
        let addr = usize::MAX - min - 0x2000;
        let top = (usize::MAX - 0x2000) & !0xfff;
        assert_eq!(
            whole_pages(addr, min),
            Some((addr.next_multiple_of(4096), top))
        );
    }

    #[test]
    fn impossible_sizes_are_typed_errors() {
        let e = try_vec::<f64>("v", usize::MAX / 16, 0.0).expect_err("must fail");
        assert_eq!(
            e,
            LinalgError::OutOfMemory {
                what: "v",
                bytes: ((usize::MAX / 16) as u64).saturating_mul(8)
            }
        );
        let e = try_zeros("m", usize::MAX / 2, 3).expect_err("must fail");
        assert_eq!(
            e,
            LinalgError::OutOfMemory {
                what: "m",
                bytes: u64::MAX
            }
        );
        assert!(e.to_string().contains("m") && e.to_string().contains(&u64::MAX.to_string()));
        let Err(e) = try_mem("w", StackReq::new::<f64>(usize::MAX / 4)) else {
            panic!("an impossible workspace was allocated");
        };
        assert_eq!(
            e,
            LinalgError::OutOfMemory {
                what: "w",
                bytes: u64::MAX
            }
        );
        let e = try_collect::<u64>("c", usize::MAX / 2, 0..3).expect_err("must fail");
        assert!(matches!(e, LinalgError::OutOfMemory { what: "c", .. }));
    }

    #[test]
    fn same_values_and_layout_as_faer() {
        let a = Mat::<f64>::from_fn(7, 5, |i, j| (i * 10 + j) as f64 - 0.5);
        let b = try_to_owned("a", a.as_ref()).expect("must succeed");
        assert_eq!(a, b);
        assert_eq!(a.col_stride(), b.col_stride());
        let z = try_zeros("z", 9, 4).expect("must succeed");
        assert_eq!(z, Mat::<f64>::zeros(9, 4));
        assert_eq!(z.col_stride(), Mat::<f64>::zeros(9, 4).col_stride());
        assert_eq!(try_vec("v", 3, 1.5).expect("must succeed"), vec![1.5; 3]);
        assert_eq!(
            try_collect("c", 3, 0..3).expect("must succeed"),
            vec![0, 1, 2]
        );
        let mut m = try_mem("w", StackReq::new::<f64>(16)).expect("must succeed");
        let _ = faer::dyn_stack::MemStack::new(&mut m);
    }
}
