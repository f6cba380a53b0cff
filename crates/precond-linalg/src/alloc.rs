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

/// A `Vec` of `len` copies of `value`, or [`LinalgError::OutOfMemory`] naming `what`.
pub(crate) fn try_vec<T: Clone>(what: &'static str, len: usize, value: T) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| oom(what, bytes_of(len, core::mem::size_of::<T>())))?;
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
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| oom(what, bytes_of(len, core::mem::size_of::<T>())))?;
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
