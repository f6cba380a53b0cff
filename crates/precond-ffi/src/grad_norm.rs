//! Preconditioned gradient-norm regularization for C callers with their own objective
//! (THEORY.md §5, last bullet), wrapping `precond_nn::GradNormReg` and `precond_nn::fd_hvp`:
//! the Hessian-vector product is a central difference of two gradients the caller computes
//! through a callback.

use std::ffi::c_void;

use precond_nn::{GradNormMode, GradNormReg, NnError, fd_hvp};
use precond_optim::{OptimError, Optimizer};

use crate::optimizer::{precond_optimizer_t, with_handle_ref};
use crate::ptr::{in_slice, nonzero, out_ref, out_slice, overlaps};
use crate::status::{FfiError, FfiResult, boundary, precond_status_t};

/// Which gradient norm `precond_grad_norm_regularize` penalizes. Passed as an `int32_t`; any
/// other value is `PRECOND_INVALID_ARGUMENT`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum precond_grad_norm_mode_t {
    /// `R = ρ ∇fᵀ P ∇f`: the squared gradient norm in the intrinsic variables `y = S⁻¹x`
    /// (`P = S Sᵀ`, the optimizer's current diagonal preconditioner).
    PRECOND_GRAD_NORM_INTRINSIC = 0,
    /// `R = ρ ‖∇f‖²`: the squared gradient norm in the original variables `x` (`P = I`).
    PRECOND_GRAD_NORM_COUPLED = 1,
}

/// The gradient of the caller's objective: writes `∇f(x)` (`n` doubles) into `grad` and returns
/// 0, or returns any other value to report a failure (the library then stops and returns an
/// error naming that value).
///
/// Contract: it runs on the calling thread, synchronously, inside
/// `precond_grad_norm_regularize`, at most twice per call; `x` and `grad` are library-owned
/// scratch buffers valid only during the callback (do not keep them); it must not unwind
/// (C++ exceptions, Rust panics) or `longjmp` across the library: catch everything and return
/// a non-zero value instead; it must not use the optimizer handle passed to that call (no
/// call of the library on it) while it runs. `user_data` is passed through untouched.
#[allow(non_camel_case_types)]
pub type precond_gradient_fn = Option<
    unsafe extern "C" fn(user_data: *mut c_void, x: *const f64, grad: *mut f64, n: usize) -> i32,
>;

fn mode_from_int(v: i32) -> FfiResult<GradNormMode> {
    match v {
        0 => Ok(GradNormMode::Intrinsic),
        1 => Ok(GradNormMode::Coupled),
        _ => Err(FfiError::invalid(format!(
            "argument `mode` is {v}; expected PRECOND_GRAD_NORM_INTRINSIC (0) or \
             PRECOND_GRAD_NORM_COUPLED (1)"
        ))),
    }
}

/// `len` zeros in a fallibly allocated vector (`PRECOND_OUT_OF_MEMORY` when refused).
fn try_zeros(len: usize) -> FfiResult<Vec<f64>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        FfiError::new(
            precond_status_t::PRECOND_OUT_OF_MEMORY,
            format!("cannot allocate the {len} doubles of scratch space"),
        )
    })?;
    v.resize(len, 0.0);
    Ok(v)
}

/// The first non-finite entry of `v`, as `PRECOND_NON_FINITE` naming `what` and the index.
fn finite(v: &[f64], what: &str) -> FfiResult {
    match v.iter().position(|a| !a.is_finite()) {
        Some(i) => Err(FfiError::new(
            precond_status_t::PRECOND_NON_FINITE,
            format!("{what}[{i}] is {}", v[i]),
        )),
        None => Ok(()),
    }
}

/// Validated arguments of one call.
struct Call<'a> {
    reg: GradNormReg,
    x: &'a [f64],
    g: &'a mut [f64],
    grad: unsafe extern "C" fn(*mut c_void, *const f64, *mut f64, usize) -> i32,
    user_data: *mut c_void,
    value: Option<&'a mut f64>,
}

/// The work of `precond_grad_norm_regularize` once the arguments are checked: `p` is `diag(P)`
/// (`None`: `P = I`). Writes `g` and `value` only on success.
fn run(call: Call<'_>, p: Option<&[f64]>) -> FfiResult {
    let Call {
        reg,
        x,
        g,
        grad,
        user_data,
        value,
    } = call;
    let n = x.len();
    let total = n
        .checked_mul(5)
        .ok_or_else(|| FfiError::dims(format!("argument `n` = {n}: the scratch size overflows")))?;
    let mut scratch = try_zeros(total)?;
    let (out, rest) = scratch.split_at_mut(n);
    let (u, rest) = rest.split_at_mut(n);
    let (hu, rest) = rest.split_at_mut(n);
    let (xp, gm) = rest.split_at_mut(n);
    out.copy_from_slice(g);
    // the callback's failure, kept here (`fd_hvp` only carries `NnError`s)
    let mut failure: Option<FfiError> = None;
    let mut calls = 0usize;
    let mut callback = |at: &[f64], gout: &mut [f64]| -> Result<(), NnError> {
        calls += 1;
        // SAFETY: the caller's contract for `grad`: it reads `n` doubles at `at` and writes `n`
        // doubles at `gout`, both library-owned buffers of length `n` valid for the call.
        let rc = unsafe { grad(user_data, at.as_ptr(), gout.as_mut_ptr(), at.len()) };
        let err = if rc != 0 {
            Some(FfiError::new(
                precond_status_t::PRECOND_NUMERICAL_FAILURE,
                format!("the gradient callback returned {rc} (call {calls} of 2)"),
            ))
        } else {
            // the message is formatted only on failure: no allocation on the normal path
            gout.iter().position(|a| !a.is_finite()).map(|i| {
                FfiError::new(
                    precond_status_t::PRECOND_NON_FINITE,
                    format!(
                        "the gradient callback's output (call {calls} of 2): grad[{i}] is {}",
                        gout[i]
                    ),
                )
            })
        };
        match err {
            Some(e) => {
                failure = Some(e);
                Err(NnError::InvalidConfig {
                    what: "gradient callback",
                    value: rc.to_string(),
                    reason: "failed",
                })
            }
            None => Ok(()),
        }
    };
    let r = reg.add_gradient(
        out,
        p,
        |v, hv| fd_hvp(&mut callback, x, v, hv, xp, gm),
        u,
        hu,
    );
    if let Some(e) = failure {
        return Err(e);
    }
    let r = r?;
    finite(out, "the regularized gradient g")?;
    if !r.is_finite() {
        return Err(FfiError::new(
            precond_status_t::PRECOND_NON_FINITE,
            format!("the regularizer value R is {r}"),
        ));
    }
    g.copy_from_slice(out);
    if let Some(v) = value {
        *v = r;
    }
    Ok(())
}

/// `n` must be the optimizer's `n_params`.
fn same_n(n: usize, o: &Optimizer) -> FfiResult {
    if n == o.n_params() {
        Ok(())
    } else {
        Err(FfiError::dims(format!(
            "argument `n` is {n} but the optimizer has n_params = {}",
            o.n_params()
        )))
    }
}

/// Checks the arguments of `precond_grad_norm_regularize` that do not need the optimizer and
/// borrows its buffers for as long as the pointer arguments are.
///
/// # Safety
/// If non-NULL and aligned, `*x` must point to `n` readable doubles, `*g` to `n` writable
/// doubles and `*value` to one writable double, valid during `'a` and accessed through no other
/// pointer meanwhile (the contract of `precond_grad_norm_regularize` for the call).
#[allow(clippy::too_many_arguments)]
unsafe fn check<'a>(
    rho: f64,
    mode: i32,
    x: &'a *const f64,
    g: &'a *mut f64,
    n: usize,
    grad: precond_gradient_fn,
    user_data: *mut c_void,
    value: &'a *mut f64,
) -> FfiResult<Call<'a>> {
    let reg = GradNormReg {
        rho,
        mode: mode_from_int(mode)?,
    };
    if !(rho.is_finite() && rho >= 0.0) {
        return Err(FfiError::invalid(format!(
            "argument `rho` is {rho}; it must be finite and ≥ 0"
        )));
    }
    let grad = grad.ok_or_else(|| FfiError::null("grad"))?;
    nonzero(n, "n")?;
    // SAFETY: this function's contract: `n` readable doubles, not written during `'a` (they do
    // not overlap `g`: checked below, before `g` is borrowed).
    let xs = unsafe { in_slice(x, n, "x")? };
    if g.is_null() {
        return Err(FfiError::null("g"));
    }
    if overlaps(*x, n, g.cast_const(), n) {
        return Err(FfiError::invalid("buffers `x` and `g` overlap"));
    }
    if !value.is_null() && (overlaps(*value, 1, *x, n) || overlaps(*value, 1, *g, n)) {
        return Err(FfiError::invalid(
            "output `value` overlaps `x` or `g`; it must be a distinct double",
        ));
    }
    // SAFETY: this function's contract: `n` writable doubles used by nothing else during `'a`
    // (disjoint from `x` and `value`: checked).
    let gs = unsafe { out_slice(g, n, "g")? };
    let value = if value.is_null() {
        None
    } else {
        // SAFETY: this function's contract: writable, and (checked) outside `x` and `g`.
        Some(unsafe { out_ref(value, "value")? })
    };
    finite(xs, "x")?;
    finite(gs, "g")?;
    Ok(Call {
        reg,
        x: xs,
        g: gs,
        grad,
        user_data,
        value,
    })
}

/// `diag(P_k)` of `opt` for the intrinsic mode, `None` (`P = I`) before the optimizer has one.
fn optimizer_p(o: &Optimizer, n: usize) -> FfiResult<Option<Vec<f64>>> {
    same_n(n, o)?;
    let mut p = try_zeros(n)?;
    match o.preconditioner(&mut p) {
        Ok(()) => {
            finite(&p, "the optimizer's preconditioner P")?;
            Ok(Some(p))
        }
        Err(OptimError::NoPreconditionerYet { .. }) => Ok(None),
        Err(e) => Err(FfiError::from(e).with_prefix("the optimizer's diagonal preconditioner")),
    }
}

/// Adds the gradient of the gradient-norm regularizer (THEORY.md §5, last bullet) to the
/// gradient `g = ∇f(x)` of the caller's objective: `g ← g + ∇R`, `∇R = 2ρ H P ∇f`, and writes
/// `R` into `*value` (if not NULL):
///
/// - `mode = PRECOND_GRAD_NORM_INTRINSIC`: `R = ρ ∇fᵀ P ∇f`, the squared gradient norm in the
///   optimizer's intrinsic variables, with `P = diag(P_k)` the current diagonal preconditioner
///   of `opt` exactly as `precond_optimizer_preconditioner` returns it (Adam/AdamW
///   `1/(sqrt(v̂_k) + eps)`, the learning rate kept outside). `P` is a constant of the step (not
///   differentiated). When the optimizer has no preconditioner yet (Adam before its first step)
///   or `opt` is NULL, `P = I`, as the Rust training hook does; a matrix optimizer or a dense
///   fixed preconditioner is refused (`PRECOND_INVALID_ARGUMENT`).
/// - `mode = PRECOND_GRAD_NORM_COUPLED`: `R = ρ ‖∇f‖²` (`P = I`; `opt` is then only used to
///   check `n`).
///
/// `H v` is the central difference `(∇f(x + h v) − ∇f(x − h v)) / (2h)` with
/// `h = ε^{1/3} max(1, ‖x‖₂) / ‖v‖₂` and `v = P g`: two calls of `grad` (none when `ρ = 0` or
/// `v = 0`), error `O(h²)` in the third derivative of `f` plus `O(ε/h)` rounding; exact up to
/// rounding for a quadratic. The callback contract is on `precond_gradient_fn`. Then pass the
/// new `g` to `precond_optimizer_step_f64` as the gradient of the step.
///
/// Ownership: reads `x`, updates `g` in place, writes `*value`; scratch space (5 n doubles) is
/// allocated inside and freed before returning. Thread-safety: not concurrently with other
/// calls on `opt`; without `opt`, may be called concurrently.
///
/// Errors (nothing is written, `g` and `*value` unchanged): `PRECOND_NULL_POINTER` (`x`, `g`,
/// `grad`), `PRECOND_INVALID_ARGUMENT` (`rho` negative or not finite, unknown `mode`, `n == 0`,
/// `g` overlapping `x`, `value` overlapping `x` or `g`, an optimizer without a diagonal
/// preconditioner), `PRECOND_DIMENSION_MISMATCH` (`n != n_params` of `opt`),
/// `PRECOND_NON_FINITE` (a NaN/infinity in `x` or `g`, in the callback's output, naming the
/// index, or in the result), `PRECOND_NUMERICAL_FAILURE` (the callback returned non-zero: the
/// message gives its value), `PRECOND_OUT_OF_MEMORY` (scratch space refused).
///
/// # Safety
/// `opt` must be NULL or a live handle; `x` must point to `n` readable doubles, `g` to `n`
/// writable doubles, `value` must be NULL or writable; `grad` must honour the
/// `precond_gradient_fn` contract with `user_data`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn precond_grad_norm_regularize(
    opt: *const precond_optimizer_t,
    rho: f64,
    mode: i32,
    x: *const f64,
    g: *mut f64,
    n: usize,
    grad: precond_gradient_fn,
    user_data: *mut c_void,
    value: *mut f64,
) -> precond_status_t {
    const FUNC: &str = "precond_grad_norm_regularize";
    if opt.is_null() {
        // SAFETY: this function's contract on the pointers (the borrows end with the call).
        let body = || {
            run(
                unsafe { check(rho, mode, &x, &g, n, grad, user_data, &value)? },
                None,
            )
        };
        return boundary(FUNC, body);
    }
    let body = |o: &Optimizer| -> FfiResult {
        // SAFETY: this function's contract on the pointers (the borrows end with the call).
        let call = unsafe { check(rho, mode, &x, &g, n, grad, user_data, &value)? };
        let p = match call.reg.mode {
            GradNormMode::Intrinsic => optimizer_p(o, n)?,
            GradNormMode::Coupled => {
                same_n(n, o)?;
                None
            }
        };
        run(call, p.as_deref())
    };
    // SAFETY: caller contract: `opt` is a live handle that nothing else uses during the call.
    unsafe { with_handle_ref(FUNC, opt, body) }
}
