//! Where an optimizer's per-element state lives: the buffers of one dtype ([`Slots`]), the
//! dtype-tagged store, and the sealed [`StepFloat`] trait that picks between them.

use crate::error::{OptimError, Result};
use crate::float::Float;
use crate::kernel::MAX_SLOTS;

/// A state slot of an optimizer kind: its name (torch's `state` key, e.g. `"exp_avg_sq"`), the
/// value every element starts from, whether its values are non-negative by construction
/// (accumulated squares: checked when a saved state is loaded), and its length: one value per
/// parameter (`len: None`, the fused kernels' slots, at most [`MAX_SLOTS`], listed first) or a
/// fixed length (a matrix kind's factors and bases, after the per-element ones).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SlotSpec {
    pub(crate) name: std::borrow::Cow<'static, str>,
    pub(crate) init: f64,
    pub(crate) nonneg: bool,
    pub(crate) len: Option<usize>,
}

/// Where the parameters of one optimizer part lie: their number and, for a matrix group, the
/// shape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub(crate) len: usize,
    pub(crate) shape: Option<crate::config::MatrixShape>,
}

/// A kind's scratch memory kept between steps (not state: not saved, not cloned; rebuilt at the
/// next step after a clone or a load).
#[derive(Default)]
pub(crate) struct Scratch(pub(crate) Option<Box<dyn std::any::Any + Send + Sync>>);

impl Clone for Scratch {
    fn clone(&self) -> Self {
        Scratch(None)
    }
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Scratch(..)"
        } else {
            "Scratch(empty)"
        })
    }
}

impl Scratch {
    /// The workspace of type `W`, built by `make` when absent (or of another type).
    pub(crate) fn get_or<W: std::any::Any + Send + Sync>(
        &mut self,
        make: impl FnOnce() -> W,
    ) -> &mut W {
        if !self.0.as_ref().is_some_and(|b| b.is::<W>()) {
            self.0 = Some(Box::new(make()));
        }
        match self.0.as_mut().and_then(|b| b.downcast_mut::<W>()) {
            Some(w) => w,
            None => unreachable!("the workspace was just stored with this type"),
        }
    }
}

impl SlotSpec {
    /// A signed slot that starts at zero (a first moment, a momentum buffer).
    pub(crate) const fn zero(name: &'static str) -> Self {
        SlotSpec {
            name: std::borrow::Cow::Borrowed(name),
            init: 0.0,
            nonneg: false,
            len: None,
        }
    }
    /// A fixed-length array (a factor, a root, a basis) starting at zero.
    pub(crate) fn array(
        name: impl Into<std::borrow::Cow<'static, str>>,
        len: usize,
        nonneg: bool,
    ) -> Self {
        SlotSpec {
            name: name.into(),
            init: 0.0,
            nonneg,
            len: Some(len),
        }
    }
    /// A non-negative slot that starts at zero (a second moment).
    pub(crate) const fn squares(name: &'static str) -> Self {
        SlotSpec {
            name: std::borrow::Cow::Borrowed(name),
            init: 0.0,
            nonneg: true,
            len: None,
        }
    }
}

/// What a kind prepares once, when the optimizer is built: a read-only per-element buffer (a
/// fixed diagonal `P`) and a dense `P` (row-major `n × n`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Prepared {
    pub(crate) aux: Option<Vec<f64>>,
    pub(crate) dense_p: Option<Vec<f64>>,
}

/// The buffers of one dtype.
#[derive(Clone, Debug)]
pub(crate) struct Slots<T> {
    /// Per-element state slots in [`SlotSpec`] order (64-byte aligned); unused ones empty.
    pub(crate) s: [Aligned<T>; MAX_SLOTS],
    /// Fixed-length state arrays (matrix kinds), in [`SlotSpec`] order after the per-element ones.
    pub(crate) mats: Vec<Vec<T>>,
    /// Between-step workspace of a matrix kind.
    pub(crate) scratch: Scratch,
    /// Read-only per-element data ([`Prepared::aux`] in this dtype), or empty.
    pub(crate) aux: Vec<T>,
    /// [`Prepared::dense_p`] in this dtype, or empty.
    pub(crate) dense_p: Vec<T>,
    /// Scratch vectors of the dense step (`n` each when there is a dense `P`).
    pub(crate) scratch_u: Vec<T>,
    pub(crate) scratch_y: Vec<T>,
    /// The copy of a BNP part's gradient that BNP preconditions (its length; empty otherwise).
    pub(crate) bnp_grad: Vec<T>,
    /// `[min, max]` of each per-element slot, known from the last step's enclosure
    /// ([`crate::bound`]); `None` until computed from the values (fresh or loaded state).
    pub(crate) ranges: Option<crate::bound::SlotRanges>,
    /// `[min, max]` of [`Self::aux`] (it never changes), once computed.
    pub(crate) aux_range: Option<(f64, f64)>,
    /// The ranges the checked step will leave (committed with the step).
    pub(crate) pending: Option<crate::bound::SlotRanges>,
    /// A part that steps by its own routine (matrix kinds, a dense `P`): room for its parameters
    /// and state, so that a step whose result is not finite is undone (allocated with the state).
    pub(crate) backup: Vec<T>,
}

impl<T: Float> Slots<T> {
    /// The state array `j` in [`SlotSpec`] order (per-element slots first, then `mats`).
    pub(crate) fn array(&self, specs: &[SlotSpec], j: usize) -> &[T] {
        let per = specs.iter().filter(|s| s.len.is_none()).count();
        if j < per {
            &self.s[j]
        } else {
            &self.mats[j - per]
        }
    }

    /// Mutable [`Self::array`].
    pub(crate) fn array_mut(&mut self, specs: &[SlotSpec], j: usize) -> &mut [T] {
        let per = specs.iter().filter(|s| s.len.is_none()).count();
        if j < per {
            &mut self.s[j]
        } else {
            &mut self.mats[j - per]
        }
    }

    /// Fresh state for `n` parameters. Every buffer is reserved with `try_reserve_exact` before
    /// it is filled: a size the allocator refuses (a huge `n` or matrix shape) is
    /// [`OptimError::OutOfMemory`] naming the array, never an abort. `page`: the offset within
    /// a 4 KiB page of the parameters the slots will be read beside ([`Aligned::filled_at`]).
    pub(crate) fn new(
        specs: &[SlotSpec],
        prepared: &Prepared,
        n: usize,
        page: Option<usize>,
    ) -> Result<Self> {
        let per: Vec<&SlotSpec> = specs.iter().filter(|s| s.len.is_none()).collect();
        let mk = |j: usize| -> Result<Aligned<T>> {
            per.get(j).map_or_else(
                || Ok(Aligned::default()),
                |sp| Aligned::filled_at(n, T::from_f64(sp.init), &sp.name, page),
            )
        };
        let mats = specs
            .iter()
            .filter_map(|s| s.len.map(|l| filled(l, T::from_f64(s.init), &s.name)))
            .collect::<Result<Vec<_>>>()?;
        let conv = |v: &Option<Vec<f64>>| -> Vec<T> {
            v.as_ref()
                .map_or_else(Vec::new, |p| p.iter().map(|&x| T::from_f64(x)).collect())
        };
        let (su, sy) = if prepared.dense_p.is_some() {
            (
                filled(n, T::ZERO, "dense step scratch")?,
                filled(n, T::ZERO, "dense step scratch")?,
            )
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Slots {
            s: [mk(0)?, mk(1)?, mk(2)?],
            mats,
            scratch: Scratch::default(),
            aux: conv(&prepared.aux),
            dense_p: conv(&prepared.dense_p),
            scratch_u: su,
            scratch_y: sy,
            bnp_grad: Vec::new(),
            ranges: None,
            aux_range: None,
            pending: None,
            backup: Vec::new(),
        })
    }
}

/// `len` copies of `value`, the memory reserved fallibly first: [`OptimError::OutOfMemory`] for
/// `what` when the allocator refuses `len` elements (or their byte count overflows).
pub(crate) fn filled<T: Clone>(len: usize, value: T, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| OptimError::OutOfMemory {
            what: what.to_string(),
            elements: len as u64,
            bytes: (len as u64).saturating_mul(std::mem::size_of::<T>() as u64),
        })?;
    v.resize(len, value);
    Ok(v)
}

/// The state of an optimizer: none yet, or the buffers of the dtype of its first step.
#[derive(Clone, Debug)]
pub(crate) enum Store {
    Empty,
    F32(Slots<f32>),
    F64(Slots<f64>),
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// The element types an [`Optimizer`](crate::Optimizer) steps: `f32` and `f64`. Sealed: it
/// cannot be implemented outside this crate.
#[allow(private_interfaces)]
pub trait StepFloat: Float + faer::traits::RealField + sealed::Sealed {
    #[doc(hidden)]
    fn slots_mut(store: &mut Store) -> Option<&mut Slots<Self>>;
    #[doc(hidden)]
    fn slots_ref(store: &Store) -> Option<&Slots<Self>>;
    #[doc(hidden)]
    fn wrap(s: Slots<Self>) -> Store;
    /// `out = X Xᵀ` as a symmetric product (precond-linalg's `gram_into`); errors on non-finite
    /// input or overflow.
    #[doc(hidden)]
    fn gram(
        x: faer::MatRef<'_, Self>,
        out: faer::MatMut<'_, Self>,
        par: faer::Par,
    ) -> Result<(), precond_linalg::LinalgError>;
    /// `out = X Xᵀ` given `Xᵀ` too (precond-linalg's `gram_pair_into`).
    #[doc(hidden)]
    fn gram_pair(
        x: faer::MatRef<'_, Self>,
        xt: faer::MatRef<'_, Self>,
        out: faer::MatMut<'_, Self>,
        par: faer::Par,
    ) -> Result<(), precond_linalg::LinalgError>;
    /// `dst = srcᵀ` (precond-linalg's `transpose_into`).
    #[doc(hidden)]
    fn transpose(
        src: faer::MatRef<'_, Self>,
        dst: faer::MatMut<'_, Self>,
        par: faer::Par,
    ) -> Result<(), precond_linalg::LinalgError>;
}

macro_rules! step_float {
    ($t:ty, $v:ident) => {
        #[allow(private_interfaces)]
        impl StepFloat for $t {
            fn slots_mut(store: &mut Store) -> Option<&mut Slots<$t>> {
                if let Store::$v(s) = store {
                    Some(s)
                } else {
                    None
                }
            }
            fn slots_ref(store: &Store) -> Option<&Slots<$t>> {
                if let Store::$v(s) = store {
                    Some(s)
                } else {
                    None
                }
            }
            fn wrap(s: Slots<$t>) -> Store {
                Store::$v(s)
            }
            fn gram(
                x: faer::MatRef<'_, $t>,
                out: faer::MatMut<'_, $t>,
                par: faer::Par,
            ) -> Result<(), precond_linalg::LinalgError> {
                precond_linalg::gram_into::<$t>(x, out, 1.0, 0.0, par)
            }
            fn gram_pair(
                x: faer::MatRef<'_, $t>,
                xt: faer::MatRef<'_, $t>,
                out: faer::MatMut<'_, $t>,
                par: faer::Par,
            ) -> Result<(), precond_linalg::LinalgError> {
                precond_linalg::gram_pair_into::<$t>(x, xt, out, par)
            }
            fn transpose(
                src: faer::MatRef<'_, $t>,
                dst: faer::MatMut<'_, $t>,
                par: faer::Par,
            ) -> Result<(), precond_linalg::LinalgError> {
                precond_linalg::transpose_into::<$t>(src, dst, par)
            }
        }
    };
}
step_float!(f32, F32);
step_float!(f64, F64);

/// A heap buffer of `T` whose first element sits on a 64-byte boundary: the per-element state
/// slots. The fused loop aligns its vector loop to `x` (`kernel::run_chunk`); parameters and
/// gradients from torch (and any 64-byte aligned allocator) start on a boundary, and so then do
/// the state slots, so that no vector access in the loop straddles two cache lines (a `Vec`
/// starts wherever `malloc` puts it: 16 bytes past a page for large ones). Measured on the AMD
/// EPYC (Zen 4) of BENCHMARKS.md: SGD with momentum, `f32`, n = 10⁴, `x` and `g` aligned, the
/// momentum buffer aligned / 16 / 48 bytes past: 1055 / 1141 / 1134 ns per pass.
///
/// A slot of 4 KiB or more can also be placed at a given offset within a 4 KiB page
/// ([`Aligned::filled_at`]): the state allocated at the first step sits at the page offset of
/// the parameters it updates, so that no store to the state is 4 KiB apart, give or take a few
/// cache lines, from a load of `x` a few iterations later (the CPU then takes the load for a
/// read of the stored value, "4K aliasing", and waits). Measured on the AMD EPYC (Zen 4) of
/// BENCHMARKS.md, SGD with momentum, `f32`, 10⁴ elements, `x` at a page start and `g` half a
/// page on, µs per step over the momentum buffer's page offset: 1.13 at 0 (`x`'s), 1.31 at
/// 64, 1.12–1.13 at 128 to 4032 except 1.29 at 192; with `g` one or two lines past `x`, only
/// the offsets 0 and 128 (or 64) stay at 1.13–1.17 while others reach 1.3–1.8.
pub(crate) struct Aligned<T> {
    ptr: std::ptr::NonNull<T>,
    len: usize,
    /// Bytes from the allocation's start to `ptr` when it was placed in a page
    /// ([`Aligned::filled_at`]): `None` for the plain 64-byte aligned layout.
    head: Option<usize>,
}

/// The page [`Aligned::filled_at`] places a buffer in, in bytes.
pub(crate) const PAGE: usize = 4096;

/// Buffers from this size on are placed at the requested page offset (a smaller one keeps the
/// plain layout: its loop is too short for the aliasing to cost much, and a page of padding
/// per slot would double it).
pub(crate) const PAGE_PLACED_MIN_BYTES: usize = 4096;

// SAFETY: `Aligned<T>` owns its elements as a `Vec<T>` would.
unsafe impl<T: Send> Send for Aligned<T> {}
// SAFETY: as above (shared access only reads).
unsafe impl<T: Sync> Sync for Aligned<T> {}

impl<T> Aligned<T> {
    /// The alignment of the first element, in bytes (a cache line).
    const ALIGN: usize = 64;

    fn layout(len: usize) -> Option<std::alloc::Layout> {
        let bytes = len.checked_mul(std::mem::size_of::<T>())?;
        std::alloc::Layout::from_size_align(bytes, Self::ALIGN).ok()
    }

    /// The layout of a buffer placed in a page: a page more, page-aligned.
    fn paged_layout(len: usize) -> Option<std::alloc::Layout> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())?
            .checked_add(PAGE)?;
        std::alloc::Layout::from_size_align(bytes, PAGE).ok()
    }
}

impl<T: Clone> Aligned<T> {
    /// `len` copies of `value`; [`OptimError::OutOfMemory`] for `what` when the allocator
    /// refuses (or the byte count overflows), never an abort.
    #[cfg(test)]
    pub(crate) fn filled(len: usize, value: T, what: &str) -> Result<Self> {
        Self::filled_at(len, value, what, None)
    }

    /// [`Self::filled`] with the first element `page` bytes into a 4 KiB page (the page
    /// offset of the buffer it will be read beside), when the buffer is at least
    /// [`PAGE_PLACED_MIN_BYTES`] and `page` is a multiple of the element size below 4096;
    /// otherwise as [`Self::filled`] (on a cache line).
    pub(crate) fn filled_at(len: usize, value: T, what: &str, page: Option<usize>) -> Result<Self> {
        if len == 0 {
            return Ok(Self::default());
        }
        let size = std::mem::size_of::<T>();
        let page = page.filter(|&p| {
            size > 0
                && p < PAGE
                && p % size == 0
                && len.saturating_mul(size) >= PAGE_PLACED_MIN_BYTES
        });
        let oom = || OptimError::OutOfMemory {
            what: what.to_string(),
            elements: len as u64,
            bytes: (len as u64).saturating_mul(std::mem::size_of::<T>() as u64),
        };
        let layout = match page {
            Some(_) => Self::paged_layout(len),
            None => Self::layout(len),
        }
        .ok_or_else(oom)?;
        if layout.size() == 0 {
            // (a zero-sized T: no memory, a dangling aligned pointer)
            return Ok(Aligned {
                ptr: std::ptr::NonNull::dangling(),
                len,
                head: None,
            });
        }
        // SAFETY: `layout` has a non-zero size.
        let base = unsafe { std::alloc::alloc(layout) };
        if base.is_null() {
            return Err(oom());
        }
        // SAFETY: `page < PAGE` and the paged layout has a page to spare: the buffer lies
        // inside the allocation.
        let raw = unsafe { base.add(page.unwrap_or(0)) }.cast::<T>();
        let ptr = std::ptr::NonNull::new(raw).ok_or_else(oom)?;
        // SAFETY: `raw` is valid for `len` writes of `T`, aligned (64 ≥ align_of::<T>(), or a
        // page offset that is a multiple of the element size, hence of its alignment).
        unsafe {
            for i in 0..len {
                raw.add(i).write(value.clone());
            }
        }
        Ok(Aligned {
            ptr,
            len,
            head: page,
        })
    }
}

impl<T> Default for Aligned<T> {
    fn default() -> Self {
        Aligned {
            ptr: std::ptr::NonNull::dangling(),
            len: 0,
            head: None,
        }
    }
}

impl<T> std::ops::Deref for Aligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` is valid for `len` initialized elements (dangling and aligned when 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> std::ops::DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for Aligned<T> {
    fn drop(&mut self) {
        if self.len > 0 && std::mem::size_of::<T>() > 0 {
            // (the elements are not dropped one by one: the crate stores only f32 and f64)
            let layout = match self.head {
                Some(_) => Self::paged_layout(self.len),
                None => Self::layout(self.len),
            }
            .expect("the layout it was allocated with");
            // SAFETY: allocated by `filled_at` with exactly this layout, `head` bytes before
            // `ptr`.
            unsafe {
                let base = self.ptr.as_ptr().cast::<u8>().sub(self.head.unwrap_or(0));
                std::alloc::dealloc(base, layout);
            }
        }
    }
}

impl<T: Clone> Clone for Aligned<T> {
    /// A copy (an allocation failure aborts, as `Vec::clone`'s does).
    fn clone(&self) -> Self {
        if self.len == 0 {
            return Self::default();
        }
        let mut c = Self::filled_at(self.len, self[0].clone(), "state copy", self.head)
            .unwrap_or_else(|_| {
                std::alloc::handle_alloc_error(
                    Self::layout(self.len).expect("the layout of an existing buffer"),
                )
            });
        c.clone_from_slice(self);
        c
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Aligned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod aligned_tests {
    use super::Aligned;
    use crate::error::OptimError;

    #[test]
    fn starts_on_a_cache_line_holds_its_values_and_clones() {
        for len in [0usize, 1, 3, 16, 17, 1000, 100_003] {
            let mut a = Aligned::<f32>::filled(len, 0.5, "test").unwrap();
            assert_eq!(a.len(), len);
            if len > 0 {
                assert_eq!(a.as_ptr() as usize % 64, 0, "len {len}");
            }
            assert!(a.iter().all(|v| v.to_bits() == 0.5f32.to_bits()));
            for (i, v) in a.iter_mut().enumerate() {
                *v = i as f32;
            }
            let c = a.clone();
            assert_eq!(&c[..], &a[..]);
            if len > 0 {
                assert_eq!(c.as_ptr() as usize % 64, 0);
                assert_ne!(c.as_ptr(), a.as_ptr());
            }
            let d = Aligned::<f64>::filled(len, -1.0, "test").unwrap();
            assert!(d.iter().all(|v| v.to_bits() == (-1.0f64).to_bits()));
        }
        assert!(Aligned::<f64>::default().is_empty());
    }

    /// A buffer of at least `PAGE_PLACED_MIN_BYTES` starts at the requested offset within a
    /// page (and keeps it in a clone); a shorter one, or an offset that is not a multiple of
    /// the element size, falls back to a cache line.
    #[test]
    fn a_long_buffer_sits_at_the_requested_page_offset() {
        use super::{PAGE, PAGE_PLACED_MIN_BYTES};
        let long = PAGE_PLACED_MIN_BYTES / 4;
        for page in [0usize, 4, 16, 64, 1000, 2048, 4092] {
            for len in [long, long + 1, 10_000, 100_003] {
                let mut a = Aligned::<f32>::filled_at(len, 0.25, "test", Some(page)).unwrap();
                assert_eq!(a.as_ptr() as usize % PAGE, page, "len {len}");
                assert!(a.iter().all(|v| v.to_bits() == 0.25f32.to_bits()));
                for (i, v) in a.iter_mut().enumerate() {
                    *v = i as f32;
                }
                let c = a.clone();
                assert_eq!(&c[..], &a[..]);
                assert_eq!(c.as_ptr() as usize % PAGE, page);
                assert_ne!(c.as_ptr(), a.as_ptr());
            }
            // too short: on a cache line, wherever in its page
            let s = Aligned::<f32>::filled_at(long - 1, 1.0, "test", Some(page)).unwrap();
            assert_eq!(s.as_ptr() as usize % 64, 0);
        }
        // f64 at an offset that is not a multiple of 8, or past the page: a cache line
        for page in [4usize, 4096, 10_000] {
            let d = Aligned::<f64>::filled_at(10_000, -1.0, "test", Some(page)).unwrap();
            assert_eq!(d.as_ptr() as usize % 64, 0, "page {page}");
        }
        let d = Aligned::<f64>::filled_at(10_000, -1.0, "test", Some(8)).unwrap();
        assert_eq!(d.as_ptr() as usize % PAGE, 8);
    }

    #[test]
    fn a_refused_size_is_an_error_naming_the_array() {
        // a byte count that overflows, and one the allocator refuses (2^60 bytes)
        for (len, page) in [(usize::MAX / 4, None), (1 << 57, None), (1 << 57, Some(64))] {
            let e = Aligned::<f64>::filled_at(len, 0.0, "exp_avg", page).unwrap_err();
            match e {
                OptimError::OutOfMemory { what, elements, .. } => {
                    assert_eq!(what, "exp_avg");
                    assert_eq!(elements, len as u64);
                }
                e => panic!("{e:?}"),
            }
        }
    }
}
