//! Inverse roots of symmetric positive semidefinite matrices through a reusable workspace:
//! Shampoo's `(A + εI)^(−1/root)` for C callers who run their own matrix preconditioners
//! (THEORY.md §7; the Rust API is `precond_linalg::sym_inverse_root_into`).

use faer::Mat;
use precond_linalg::{Layout, SymEigWorkspace, sym_inverse_root_into};

use crate::diagnostics::{disjoint, read_matrix, write_matrix};
use crate::ptr::{check_ptr, expect_len, nonzero, out_ref, out_slice, outputs_disjoint};
use crate::status::{FfiError, FfiResult, boundary, precond_status_t};

/// A workspace for inverse roots of `n × n` matrices (opaque; create with
/// `precond_sym_root_new`, release with `precond_sym_root_free`): every buffer of the
/// eigendecomposition and of the root, so that `precond_sym_inverse_root` allocates nothing.
#[allow(non_camel_case_types)]
pub struct precond_sym_root_t {
    ws: SymEigWorkspace,
    out: Mat<f64>,
}

/// The eigenvalue range of the matrix given to `precond_sym_inverse_root` (before `eps` is
/// added).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, Default)]
pub struct precond_root_info_t {
    /// Smallest eigenvalue `λ_min(A)`.
    pub min_eigenvalue: f64,
    /// Largest eigenvalue `λ_max(A)`.
    pub max_eigenvalue: f64,
}

/// Creates a workspace for `n × n` inverse roots (about `6n²` doubles) whose parallel kernels
/// use the library's thread pool (`RAYON_NUM_THREADS`).
///
/// Ownership: `*out` receives a new caller-owned handle (release with `precond_sym_root_free`);
/// on error `*out` is unchanged. Thread-safety: may be called concurrently.
///
/// Errors: `PRECOND_NULL_POINTER` (`out`), `PRECOND_INVALID_ARGUMENT` (`n == 0`, a size that
/// does not fit in memory), `PRECOND_OUT_OF_MEMORY`.
///
/// # Safety
/// `out` must point to a writable `precond_sym_root_t*`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_sym_root_new(
    n: usize,
    out: *mut *mut precond_sym_root_t,
) -> precond_status_t {
    boundary("precond_sym_root_new", || {
        // SAFETY: caller contract: `out` points to a writable value for the call.
        let out = unsafe { out_ref(&out, "out")? };
        nonzero(n, "n")?;
        let ws = SymEigWorkspace::with_par(n, faer::Par::rayon(0))?;
        let m = Mat::<f64>::zeros(n, n);
        *out = Box::into_raw(Box::new(precond_sym_root_t { ws, out: m }));
        Ok(())
    })
}

/// Releases a workspace. NULL is accepted and ignored.
///
/// Ownership: takes back the handle; it must not be used afterwards.
/// Thread-safety: no other thread may use the handle concurrently.
///
/// # Safety
/// `ws` must be NULL or a handle from `precond_sym_root_new` not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_sym_root_free(ws: *mut precond_sym_root_t) {
    // SAFETY: NULL or a live handle from Box::into_raw, by contract.
    unsafe { crate::ptr::free_box(ws) };
}

/// Computes `out = (A + eps·I)^(−1/root)` for the symmetric positive semidefinite `n × n`
/// matrix `a` (Shampoo's inverse root of a Kronecker factor, `root = 4` for a two-sided
/// preconditioner, THEORY.md §7): from the symmetric eigendecomposition `A = Q Λ Qᵀ`,
/// `out = Q diag((λ + eps)^(−1/root)) Qᵀ`, written as the Gram product of
/// `Q diag((λ + eps)^(−1/(2·root)))`, so `out` is exactly symmetric. `eps ≥ 0` is added to the
/// eigenvalues (equal to adding `eps·I`); only the symmetric part `(A + Aᵀ)/2` is used (`a` must
/// be symmetric to `1e-6` of its largest entry). Scale-safe for any finite `A`. If `info` is
/// not NULL it receives `λ_min(A)` and `λ_max(A)`.
///
/// Cost: one tridiagonal reduction, a parallel divide and conquer for the eigenvectors, one
/// back-transformation and one Gram product; no allocation.
///
/// Ownership: reads `a`, writes `out` (`out_len == n·n` doubles in `layout`) and `*info`.
/// Thread-safety: not concurrently on the same workspace; different workspaces may be used
/// concurrently.
///
/// Errors: `PRECOND_NULL_POINTER` (`ws`, `a`, `out`), `PRECOND_INVALID_ARGUMENT` (bad
/// `layout`, `root ≤ 0` or not finite, `eps < 0` or not finite, `a` not symmetric, an output
/// overlapping `a` or the other output), `PRECOND_DIMENSION_MISMATCH` (`n` is not the
/// workspace's size, `out_len != n·n`), `PRECOND_NON_FINITE` (an entry of `a`),
/// `PRECOND_NUMERICAL_FAILURE` (an eigenvalue with `λ + eps ≤ 0`: the message names its index
/// and value; no convergence; a result that overflows). `out` and `*info` are written only on
/// success.
///
/// # Safety
/// `ws` must be a live handle; `a` must point to `n·n` readable doubles, `out` to `out_len`
/// writable doubles not overlapping `a`, `info` to a writable `precond_root_info_t`
/// (overlapping neither) or be NULL.
#[allow(clippy::too_many_arguments)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_sym_inverse_root(
    ws: *mut precond_sym_root_t,
    a: *const f64,
    n: usize,
    layout: i32,
    eps: f64,
    root: f64,
    out: *mut f64,
    out_len: usize,
    info: *mut precond_root_info_t,
) -> precond_status_t {
    boundary("precond_sym_inverse_root", || {
        // SAFETY: caller contract: a non-NULL `ws` is a live handle used by no one else.
        let h = unsafe { out_ref_handle(ws)? };
        if n != h.ws.dim() {
            return Err(FfiError::dims(format!(
                "n = {n} but the workspace was created for {} x {} matrices",
                h.ws.dim(),
                h.ws.dim()
            )));
        }
        // SAFETY: caller contract: `a` points to `n*n` readable doubles.
        let (m, _) = unsafe { read_matrix(&a, n, n, layout, "a")? };
        disjoint(m, out, out_len, "out")?;
        disjoint(m, info, 1, "info")?;
        outputs_disjoint(out, out_len, "out", info, 1, "info")?;
        // SAFETY: caller contract: `out_len` writable doubles, not overlapping `a` (checked).
        let dst = unsafe { out_slice(&out, out_len, "out")? };
        expect_len(out_len, n * n, "out")?;
        let info = if info.is_null() {
            None
        } else {
            // SAFETY: caller contract: a non-NULL `info` is writable; disjoint (checked).
            Some(unsafe { out_ref(&info, "info")? })
        };
        let r = sym_inverse_root_into(m, eps, root, h.out.as_mut(), &mut h.ws)?;
        // the root is exactly symmetric (a mirrored lower triangle): its row-major and
        // column-major arrays are the same, so it is copied contiguously in either layout
        write_matrix(h.out.as_ref(), Layout::ColMajor, dst);
        if let Some(i) = info {
            *i = precond_root_info_t {
                min_eigenvalue: r.min_eigenvalue,
                max_eigenvalue: r.max_eigenvalue,
            };
        }
        Ok(())
    })
}

/// `&mut` to the workspace behind a non-NULL, aligned handle.
///
/// # Safety
/// A non-NULL, aligned `ws` must be a live handle that nothing else accesses during the call.
unsafe fn out_ref_handle<'a>(ws: *mut precond_sym_root_t) -> FfiResult<&'a mut precond_sym_root_t> {
    check_ptr(ws, "ws")?;
    // SAFETY: non-null and aligned (checked); liveness and exclusivity are the caller's
    // contract.
    Ok(unsafe { &mut *ws })
}
