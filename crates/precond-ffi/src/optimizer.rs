//! Optimizer handles: construction from the JSON config of `precond-optim` or from a typed
//! struct, steps on `double`/`float` buffers, the learning rate, the diagonal preconditioner
//! `P_k` (THEORY.md §4) and state save/load.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};

use precond_optim::{
    FixedPreconditioner, NonFinitePolicy, Optimizer, OptimizerConfig, OptimizerKind,
};

use crate::ptr::{
    bool01, expect_len, in_ref, in_slice, nonzero, out_ref, out_slice, outputs_disjoint, overlaps,
};
use crate::status::{FfiError, FfiResult, boundary, boundary_with, precond_status_t, to_cstring};

/// An optimizer over one flat buffer of `n_params` parameters (opaque). Create it with
/// `precond_optimizer_new_json` or `precond_optimizer_new`, release it with
/// `precond_optimizer_free`.
///
/// Thread-safety: a handle may be moved between threads, but must not be used from two threads
/// at the same time without external locking, not even through functions taking a `const`
/// handle (every failing call records its message in the handle). Distinct handles are
/// independent and may be used concurrently.
#[allow(non_camel_case_types)]
pub struct precond_optimizer_t {
    opt: Optimizer,
    /// First non-finite gradient index seen by the most recent successful step call (policies
    /// `"skip"` and `"propagate"`), read by `precond_optimizer_last_nonfinite`.
    last_nonfinite: Option<usize>,
    /// Message of the last failed call on this handle (written also by calls taking a `const`
    /// handle, hence the cell; handles are never used by two threads at once).
    last_error: RefCell<CString>,
}

/// Optimizer kinds of the typed constructor. Passed as an `int32_t` (field `kind` of
/// `precond_optimizer_config_t`); any other value is `PRECOND_INVALID_ARGUMENT`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum precond_optimizer_kind_t {
    /// torch `SGD` (momentum, dampening, nesterov).
    PRECOND_SGD = 0,
    /// Plain gradient descent (1).
    PRECOND_GD = 1,
    /// torch `Adagrad`.
    PRECOND_ADAGRAD = 2,
    /// torch `RMSprop`.
    PRECOND_RMSPROP = 3,
    /// torch `Adam`.
    PRECOND_ADAM = 4,
    /// torch `AdamW` (decoupled weight decay, THEORY.md (11)).
    PRECOND_ADAMW = 5,
    /// Preconditioned GD (5) with a fixed positive diagonal `P` (`diag_preconditioner`).
    PRECOND_PRECOND_GD = 6,
}

/// Typed optimizer configuration for C users who prefer no JSON: torch's argument names and
/// meanings. It covers the per-element optimizers of `precond_optimizer_kind_t` over one
/// parameter group; parameter groups, schedules, regularizers and the matrix optimizers (Muon,
/// which need a `shape`) are configured through `precond_optimizer_new_json`.
///
/// Fill it with `precond_optimizer_config_init(kind, &cfg)` (torch's defaults for `kind`),
/// change the fields you need, then call `precond_optimizer_new`. Fields that `kind`
/// does not use must keep their defaults (a changed one is `PRECOND_INVALID_ARGUMENT` naming it,
/// as torch rejects an unknown keyword argument). Booleans are `int32_t` 0 or 1.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct precond_optimizer_config_t {
    /// A `precond_optimizer_kind_t` value.
    pub kind: i32,
    /// Learning rate `η ≥ 0` (all).
    pub lr: f64,
    /// Adam/AdamW `β₁ ∈ [0, 1)`.
    pub beta1: f64,
    /// Adam/AdamW `β₂ ∈ [0, 1)`.
    pub beta2: f64,
    /// Added after the square root, `> 0` (Adagrad, RMSprop, Adam, AdamW).
    pub eps: f64,
    /// L2 strength `λ ≥ 0` (all): coupled `g ← g + λx` (10), decoupled `x ← x(1 − ηλ)` for AdamW (11).
    pub weight_decay: f64,
    /// Momentum `μ ≥ 0` (SGD, RMSprop, precond GD).
    pub momentum: f64,
    /// SGD dampening in `[0, 1]` (SGD, precond GD).
    pub dampening: f64,
    /// RMSprop smoothing `α ∈ [0, 1)`.
    pub alpha: f64,
    /// Adagrad learning-rate decay `≥ 0`.
    pub lr_decay: f64,
    /// Adagrad initial accumulator `≥ 0`.
    pub initial_accumulator_value: f64,
    /// AMSGrad (Adam, AdamW): 0 or 1.
    pub amsgrad: i32,
    /// Nesterov momentum (SGD, precond GD): 0 or 1.
    pub nesterov: i32,
    /// Centered RMSprop: 0 or 1.
    pub centered: i32,
    /// Ascend instead of descend (all): 0 or 1.
    pub maximize: i32,
    /// On a NaN/infinite gradient (all): 0 = return `PRECOND_NON_FINITE`, 1 = skip the step.
    pub skip_nonfinite: i32,
    /// Precond GD only: the positive diagonal of `P`, `diag_preconditioner_len == n_params`
    /// entries (copied by `precond_optimizer_new`). NULL for every other kind.
    pub diag_preconditioner: *const f64,
    /// Length of `diag_preconditioner` (0 for every other kind).
    pub diag_preconditioner_len: usize,
}

fn kind_from_int(k: i32) -> FfiResult<OptimizerKind> {
    Ok(match k {
        0 => OptimizerKind::Sgd,
        1 => OptimizerKind::Gd,
        2 => OptimizerKind::Adagrad,
        3 => OptimizerKind::Rmsprop,
        4 => OptimizerKind::Adam,
        5 => OptimizerKind::Adamw,
        6 => OptimizerKind::PrecondGd,
        _ => {
            return Err(FfiError::invalid(format!(
                "field `kind` is {k}; expected a precond_optimizer_kind_t value 0..=6 \
                 (PRECOND_SGD .. PRECOND_PRECOND_GD); the matrix optimizers ({}) need a \
                 matrix shape and are created with precond_optimizer_new_json \
                 (\"shape\": [rows, cols], or per group in \"groups\")",
                matrix_kind_names()
            )));
        }
    })
}

/// The JSON names of the matrix optimizer kinds (`"muon"`, …), comma-separated.
fn matrix_kind_names() -> String {
    OptimizerKind::ALL
        .iter()
        .filter(|k| k.is_matrix())
        .map(|k| format!("\"{}\"", k.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn defaults(kind: i32, k: OptimizerKind) -> precond_optimizer_config_t {
    let c = OptimizerConfig::new(k);
    precond_optimizer_config_t {
        kind,
        lr: c.lr,
        beta1: c.betas[0],
        beta2: c.betas[1],
        eps: c.eps,
        weight_decay: c.weight_decay,
        momentum: c.momentum,
        dampening: c.dampening,
        alpha: c.alpha,
        lr_decay: c.lr_decay,
        initial_accumulator_value: c.initial_accumulator_value,
        amsgrad: i32::from(c.amsgrad),
        nesterov: i32::from(c.nesterov),
        centered: i32::from(c.centered),
        maximize: i32::from(c.maximize),
        skip_nonfinite: 0,
        diag_preconditioner: std::ptr::null(),
        diag_preconditioner_len: 0,
    }
}

/// The `OptimizerConfig` of a typed struct (validated by `build`).
///
/// # Safety
///
/// For `PRECOND_PRECOND_GD`, `c.diag_preconditioner` must point to `c.diag_preconditioner_len`
/// readable doubles, not written during the call (the struct's documented contract); for the
/// other kinds it is only compared with NULL.
unsafe fn config_from_struct(c: &precond_optimizer_config_t) -> FfiResult<OptimizerConfig> {
    use OptimizerKind as K;
    let k = kind_from_int(c.kind)?;
    let d = defaults(c.kind, k);
    // which fields apply is the kind's own key list (the registry), as for the JSON form
    let uses = |field: &str| -> bool {
        let key = match field {
            "beta1" | "beta2" => "betas",
            other => other,
        };
        k.keys().contains(&key)
    };
    let floats = [
        ("beta1", c.beta1, d.beta1),
        ("beta2", c.beta2, d.beta2),
        ("eps", c.eps, d.eps),
        ("momentum", c.momentum, d.momentum),
        ("dampening", c.dampening, d.dampening),
        ("alpha", c.alpha, d.alpha),
        ("lr_decay", c.lr_decay, d.lr_decay),
        (
            "initial_accumulator_value",
            c.initial_accumulator_value,
            d.initial_accumulator_value,
        ),
    ];
    for (name, v, dv) in floats {
        if !uses(name) && v.to_bits() != dv.to_bits() {
            return Err(FfiError::invalid(format!(
                "field `{name}` = {v} does not apply to `{}`; leave it at its default {dv}",
                k.name()
            )));
        }
    }
    let bools = [
        ("amsgrad", c.amsgrad, d.amsgrad),
        ("nesterov", c.nesterov, d.nesterov),
        ("centered", c.centered, d.centered),
    ];
    for (name, v, dv) in bools {
        bool01(v, name)?;
        if !uses(name) && v != dv {
            return Err(FfiError::invalid(format!(
                "field `{name}` = {v} does not apply to `{}`; leave it at its default {dv}",
                k.name()
            )));
        }
    }
    let mut cfg = OptimizerConfig::new(k);
    cfg.lr = c.lr;
    cfg.betas = [c.beta1, c.beta2];
    cfg.eps = c.eps;
    cfg.weight_decay = c.weight_decay;
    cfg.momentum = c.momentum;
    cfg.dampening = c.dampening;
    cfg.alpha = c.alpha;
    cfg.lr_decay = c.lr_decay;
    cfg.initial_accumulator_value = c.initial_accumulator_value;
    cfg.amsgrad = bool01(c.amsgrad, "amsgrad")?;
    cfg.nesterov = bool01(c.nesterov, "nesterov")?;
    cfg.centered = bool01(c.centered, "centered")?;
    cfg.maximize = bool01(c.maximize, "maximize")?;
    cfg.nonfinite = if bool01(c.skip_nonfinite, "skip_nonfinite")? {
        NonFinitePolicy::Skip
    } else {
        NonFinitePolicy::Error
    };
    if k == K::PrecondGd {
        // SAFETY: this function's contract: `diag_preconditioner_len` readable doubles.
        let p = unsafe {
            in_slice(
                &c.diag_preconditioner,
                c.diag_preconditioner_len,
                "config->diag_preconditioner",
            )?
        };
        if let Some(i) = p.iter().position(|v| !v.is_finite()) {
            return Err(FfiError::new(
                precond_status_t::PRECOND_NON_FINITE,
                format!("config->diag_preconditioner[{i}] is {}", p[i]),
            ));
        }
        cfg.preconditioner = Some(FixedPreconditioner::Diagonal(p.to_vec()));
    } else if !c.diag_preconditioner.is_null() || c.diag_preconditioner_len != 0 {
        return Err(FfiError::invalid(format!(
            "field `diag_preconditioner` must be NULL with length 0 for `{}` (only PRECOND_PRECOND_GD takes one)",
            k.name()
        )));
    }
    Ok(cfg)
}

fn finish_new(
    cfg: &OptimizerConfig,
    n_params: usize,
    out: &mut *mut precond_optimizer_t,
) -> FfiResult {
    nonzero(n_params, "n_params")?;
    let opt = cfg.build(n_params)?;
    *out = new_handle(opt);
    Ok(())
}

/// A new caller-owned handle holding `opt` (released by `precond_optimizer_free`).
pub(crate) fn new_handle(opt: Optimizer) -> *mut precond_optimizer_t {
    Box::into_raw(Box::new(precond_optimizer_t {
        opt,
        last_nonfinite: None,
        last_error: RefCell::new(CString::default()),
    }))
}

/// Fills `*out` with torch's defaults for optimizer `kind` (a `precond_optimizer_kind_t`),
/// `skip_nonfinite = 0`, no preconditioner.
///
/// Ownership: writes `*out` (caller-owned). Thread-safety: may be called concurrently.
/// Errors: `PRECOND_NULL_POINTER` (`out`), `PRECOND_INVALID_ARGUMENT` (unknown `kind`; the
/// message says that the matrix optimizers, which need a shape, are created with
/// `precond_optimizer_new_json`); `*out` is unchanged on error.
///
/// # Safety
/// `out` must point to a writable `precond_optimizer_config_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_config_init(
    kind: i32,
    out: *mut precond_optimizer_config_t,
) -> precond_status_t {
    boundary("precond_optimizer_config_init", || {
        // SAFETY: caller contract: `out` points to a writable value for the call.
        let out = unsafe { out_ref(&out, "out")? };
        let k = kind_from_int(kind)?;
        *out = defaults(kind, k);
        Ok(())
    })
}

/// Creates an optimizer over `n_params > 0` parameters from the JSON configuration of
/// `precond-optim` (torch argument names and defaults), e.g.
/// `{"optimizer": "adamw", "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.01}`; keys:
/// `optimizer` (`sgd`, `gd`, `adagrad`, `rmsprop`, `adam`, `adamw`, `precond_gd`, and the matrix
/// optimizer `muon`), `lr`, `weight_decay`, `maximize`, `momentum`, `dampening`, `nesterov`,
/// `betas`, `eps`, `amsgrad`, `alpha`, `centered`, `lr_decay`, `initial_accumulator_value`,
/// `power` (Adam, AdamW, RMSprop, Adagrad: `P = 1/(v̂^power + eps)`, `power ∈ (0, 1]`,
/// default `0.5`, the square root; `1` is the diagonal Fisher / Gauss–Newton scaling),
/// `preconditioner`, `regularization`, `ns_coefficients`, `ns_steps`, `adjust_lr_fn`, `shape`
/// (`[rows, cols]`: the parameters as one matrix, row-major unless `"order": "F"`), `groups`
/// (each `{"start", "end"}` with its own hyperparameters, and optionally its own `optimizer` and
/// `shape`, e.g. `{"start": 0, "end": 8192, "shape": [128, 64], "optimizer": "muon", "lr":
/// 0.02}`; a matrix optimizer needs a shape, read its preconditioner with
/// `precond_optimizer_matrix_preconditioner`), `schedule`, `nonfinite` (`"error"`, the
/// default: a step with a
/// NaN/infinite gradient entry fails with `PRECOND_NON_FINITE` and changes nothing; `"skip"`:
/// such a step returns `PRECOND_OK` without changing anything; `"propagate"`: torch's semantics,
/// no scan of the gradient before the update, the NaN/Inf flows into the parameters and state;
/// after `"skip"` and `"propagate"` steps `precond_optimizer_last_nonfinite` tells whether and
/// where it happened). Keys that do not apply to the optimizer are rejected.
///
/// Ownership: `config_json` (NUL-terminated UTF-8) is only read; on success `*out` receives a new
/// handle owned by the caller, to be released with `precond_optimizer_free`. On error `*out` is
/// unchanged and the message is in `precond_last_error()`.
/// Thread-safety: may be called concurrently.
///
/// Errors: `PRECOND_NULL_POINTER` (`config_json`, `out`), `PRECOND_PARSE_ERROR` (not UTF-8, not
/// JSON), `PRECOND_INVALID_ARGUMENT` (`n_params == 0`, unknown optimizer name or key, a
/// hyperparameter out of range: the message names the key), `PRECOND_DIMENSION_MISMATCH` (a
/// parameter group or preconditioner inconsistent with `n_params`), `PRECOND_NUMERICAL_FAILURE`
/// (a dense preconditioner that is not SPD).
///
/// # Safety
/// `config_json` must be a NUL-terminated string; `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_new_json(
    config_json: *const c_char,
    n_params: usize,
    out: *mut *mut precond_optimizer_t,
) -> precond_status_t {
    boundary("precond_optimizer_new_json", || {
        if config_json.is_null() {
            return Err(FfiError::null("config_json"));
        }
        // SAFETY: caller contract: `out` points to a writable value for the call.
        let out = unsafe { out_ref(&out, "out")? };
        // SAFETY: non-null, NUL-terminated by contract.
        let text = unsafe { CStr::from_ptr(config_json) }
            .to_str()
            .map_err(|e| {
                FfiError::new(
                    precond_status_t::PRECOND_PARSE_ERROR,
                    format!("config_json is not valid UTF-8: {e}"),
                )
            })?;
        let cfg = OptimizerConfig::from_json(text)?;
        finish_new(&cfg, n_params, out)
    })
}

/// Creates an optimizer over `n_params > 0` parameters from a typed configuration (see
/// `precond_optimizer_config_t`; start from `precond_optimizer_config_init`).
///
/// Ownership: `*config` (and its `diag_preconditioner`) is only read and copied; on success
/// `*out` receives a new caller-owned handle (release with `precond_optimizer_free`); on error
/// `*out` is unchanged. Thread-safety: may be called concurrently.
///
/// Errors: `PRECOND_NULL_POINTER` (`config`, `out`, the preconditioner of precond GD),
/// `PRECOND_INVALID_ARGUMENT` (unknown `kind`, a boolean not 0/1, a field out of range or not
/// applicable to `kind`: the message names the field; `n_params == 0`),
/// `PRECOND_DIMENSION_MISMATCH` (`diag_preconditioner_len != n_params`), `PRECOND_NON_FINITE`.
///
/// # Safety
/// `config` must point to an initialized `precond_optimizer_config_t` whose
/// `diag_preconditioner` (if not NULL) has `diag_preconditioner_len` readable doubles; `out` must
/// be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_new(
    config: *const precond_optimizer_config_t,
    n_params: usize,
    out: *mut *mut precond_optimizer_t,
) -> precond_status_t {
    boundary("precond_optimizer_new", || {
        // SAFETY: caller contract: `config` points to an initialized value, not written during
        // the call.
        let c = unsafe { in_ref(&config, "config")? };
        // SAFETY: caller contract: `out` points to a writable value for the call.
        let out = unsafe { out_ref(&out, "out")? };
        // SAFETY: caller contract of `precond_optimizer_new`: the struct's `diag_preconditioner`
        // holds `diag_preconditioner_len` readable doubles (or is NULL with length 0).
        let cfg = unsafe { config_from_struct(c)? };
        finish_new(&cfg, n_params, out)
    })
}

/// Releases an optimizer. NULL is accepted and ignored.
///
/// Ownership: takes back the handle; it must not be used afterwards.
/// Thread-safety: no other thread may use the handle concurrently.
///
/// # Safety
/// `opt` must be NULL or a handle from `precond_optimizer_new*` not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_free(opt: *mut precond_optimizer_t) {
    // SAFETY: NULL or a live handle from Box::into_raw, by contract.
    unsafe { crate::ptr::free_box(opt) };
}

/// Runs `body` on the handle behind the panic boundary; errors go to the handle and to the
/// thread-local last error. A NULL or misaligned `opt` is an error.
///
/// # Safety
/// A non-NULL, aligned `opt` must be a live handle (from `precond_optimizer_new*`, not freed)
/// that nothing else accesses during the call.
pub(crate) unsafe fn with_handle(
    func: &str,
    opt: *mut precond_optimizer_t,
    body: impl FnOnce(&mut Optimizer) -> FfiResult,
) -> precond_status_t {
    // SAFETY: this function's contract.
    unsafe { with_handle_step(func, opt, |o, _| body(o)) }
}

/// [`with_handle`] that also hands out the handle's non-finite record (the step calls).
///
/// # Safety
/// As [`with_handle`].
unsafe fn with_handle_step(
    func: &str,
    opt: *mut precond_optimizer_t,
    body: impl FnOnce(&mut Optimizer, &mut Option<usize>) -> FfiResult,
) -> precond_status_t {
    if opt.is_null() {
        return boundary(func, || Err(FfiError::null("opt")));
    }
    if !opt.is_aligned() {
        return boundary(func, || {
            Err(FfiError::invalid("argument `opt` is not aligned"))
        });
    }
    // SAFETY: non-NULL and aligned (checked); a live handle, accessed by nothing else during
    // the call: this function's contract. `h` does not outlive the call.
    let h = unsafe { &mut *opt };
    let mut msg = None;
    let st = boundary_with(
        func,
        || body(&mut h.opt, &mut h.last_nonfinite),
        |m| msg = Some(to_cstring(m)),
    );
    if let Some(m) = msg {
        *h.last_error.get_mut() = m;
    }
    st
}

/// Read-only variant of [`with_handle`].
///
/// # Safety
/// A non-NULL, aligned `opt` must be a live handle that no other thread accesses during the
/// call.
pub(crate) unsafe fn with_handle_ref(
    func: &str,
    opt: *const precond_optimizer_t,
    body: impl FnOnce(&Optimizer) -> FfiResult,
) -> precond_status_t {
    // SAFETY: this function's contract.
    unsafe { with_handle_ref_full(func, opt, |h| body(&h.opt)) }
}

/// [`with_handle_ref`] on the whole handle.
///
/// # Safety
/// As [`with_handle_ref`].
unsafe fn with_handle_ref_full(
    func: &str,
    opt: *const precond_optimizer_t,
    body: impl FnOnce(&precond_optimizer_t) -> FfiResult,
) -> precond_status_t {
    if opt.is_null() {
        return boundary(func, || Err(FfiError::null("opt")));
    }
    if !opt.is_aligned() {
        return boundary(func, || {
            Err(FfiError::invalid("argument `opt` is not aligned"))
        });
    }
    // SAFETY: non-NULL and aligned (checked); a live handle not used by another thread during
    // the call: this function's contract. `h` does not outlive the call.
    let h = unsafe { &*opt };
    let mut msg = None;
    let st = boundary_with(func, || body(h), |m| msg = Some(to_cstring(m)));
    if let Some(m) = msg
        && let Ok(mut e) = h.last_error.try_borrow_mut()
    {
        *e = m;
    }
    st
}

/// The buffers of a step, `(params, grads)`, borrowed for as long as the pointer arguments
/// are: NULL, `n != n_params`, overlapping or misaligned buffers are errors.
///
/// # Safety
/// If non-NULL and aligned, `*params` must point to `n` writable and `*grads` to `n` readable
/// elements, valid during `'a` and accessed through no other pointer meanwhile (the contract of
/// `precond_optimizer_step_f64`/`_f32` for the duration of the call).
#[expect(
    clippy::mut_from_ref,
    reason = "the `&'a *mut T` only bounds the lifetime to the C call's pointer argument; \
              exclusive access to the pointee is this unsafe fn's documented contract"
)]
unsafe fn check_step_buffers<'a, T>(
    params: &'a *mut T,
    grads: &'a *const T,
    n: usize,
    n_params: usize,
) -> FfiResult<(&'a mut [T], &'a [T])> {
    // Every check passes on a well-formed call: test them all at once and build the slices
    // here; the first failing check is named by the checks below, in their order. (A 16-element
    // SGD step through the C ABI: 155 of its 1175 instructions were these checks, callgrind.)
    let (p, g) = (*params, *grads);
    if n == n_params
        && !p.is_null()
        && !g.is_null()
        && p.is_aligned()
        && g.is_aligned()
        && n.checked_mul(size_of::<T>())
            .is_some_and(|b| b <= isize::MAX as usize)
        && !overlaps(p as *const T, n, g, n)
    {
        // SAFETY: non-NULL, aligned, `n` elements within `isize::MAX` bytes, not overlapping
        // (checked); `n` valid elements each for `'a`, `params` accessed only through this
        // slice: this function's contract.
        return Ok(unsafe {
            (
                std::slice::from_raw_parts_mut(p, n),
                std::slice::from_raw_parts(g, n),
            )
        });
    }
    // SAFETY: this function's contract.
    unsafe { step_buffers_refused(params, grads, n, n_params) }
}

/// [`check_step_buffers`] once some check failed (or both buffers are empty): the checks one
/// by one, the first that fails named.
///
/// # Safety
/// As [`check_step_buffers`].
#[cold]
#[inline(never)]
#[expect(clippy::mut_from_ref, reason = "as check_step_buffers")]
unsafe fn step_buffers_refused<'a, T>(
    params: &'a *mut T,
    grads: &'a *const T,
    n: usize,
    n_params: usize,
) -> FfiResult<(&'a mut [T], &'a [T])> {
    if n == 0 && n_params == 0 {
        // an empty shard (precond_optimizer_new_shard): nothing is read, any pointers do
        return Ok((Default::default(), Default::default()));
    }
    if params.is_null() {
        return Err(FfiError::null("params"));
    }
    if grads.is_null() {
        return Err(FfiError::null("grads"));
    }
    if n != n_params {
        return Err(FfiError::dims(format!(
            "argument `n` is {n} but the optimizer has n_params = {n_params}"
        )));
    }
    if overlaps(*params as *const T, n, *grads, n) {
        return Err(FfiError::invalid("buffers `params` and `grads` overlap"));
    }
    // SAFETY: this function's contract (`n` readable elements; not overlapping `params`, as
    // checked, so the shared and the exclusive slice do not alias).
    let g = unsafe { in_slice(grads, n, "grads")? };
    // SAFETY: this function's contract (`n` writable elements, no other access).
    let p = unsafe { out_slice(params, n, "params")? };
    Ok((p, g))
}

/// One optimizer step on `double` buffers: `params ← update(params, grads)` (torch semantics,
/// see the crate documentation of `precond-optim`). The state takes the dtype of the first step;
/// switching to `float` later requires `precond_optimizer_reset`.
///
/// Ownership: reads `grads`, updates `params` in place; nothing is retained.
/// Thread-safety: not concurrently with any other call on the same handle.
///
/// A NaN/infinite gradient entry: with the default policy `"error"`, `PRECOND_NON_FINITE`
/// (index named, nothing changed); with `"skip"`, `PRECOND_OK` and nothing changed; with
/// `"propagate"`, `PRECOND_OK` and the update applied as torch applies it (NaN/Inf in the
/// parameters and state). `precond_optimizer_last_nonfinite` reports the last two cases.
/// Likewise a step that would *make* a NaN/infinity from finite inputs (`lr × update`, a moment
/// or a factor beyond the float range): `PRECOND_NON_FINITE` naming the index under `"error"`,
/// a skipped step under `"skip"`, nothing written either way (found before writing; see
/// RELIABILITY.md).
///
/// Errors (the handle, `params` and `grads` are then unchanged and the handle remains usable):
/// `PRECOND_NULL_POINTER`, `PRECOND_DIMENSION_MISMATCH` (`n != n_params`),
/// `PRECOND_NON_FINITE` (policy `"error"`),
/// `PRECOND_INVALID_ARGUMENT` (state of the other dtype, overlapping buffers).
///
/// # Safety
/// `opt` must be a live handle; `params` and `grads` must point to `n` doubles each, `params`
/// writable, not overlapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_step_f64(
    opt: *mut precond_optimizer_t,
    params: *mut f64,
    grads: *const f64,
    n: usize,
) -> precond_status_t {
    let body = |o: &mut Optimizer, last: &mut Option<usize>| -> FfiResult {
        // SAFETY: caller contract: `n` elements each, `params` writable, valid for the call.
        let (p, g) = unsafe { check_step_buffers(&params, &grads, n, o.n_params())? };
        *last = o.step_f64(p, g)?.nonfinite_index;
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle_step("precond_optimizer_step_f64", opt, body) }
}

/// One optimizer step on `float` buffers; as `precond_optimizer_step_f64`.
///
/// # Safety
/// As `precond_optimizer_step_f64`, with `float` buffers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_step_f32(
    opt: *mut precond_optimizer_t,
    params: *mut f32,
    grads: *const f32,
    n: usize,
) -> precond_status_t {
    let body = |o: &mut Optimizer, last: &mut Option<usize>| -> FfiResult {
        // SAFETY: caller contract: `n` elements each, `params` writable, valid for the call.
        let (p, g) = unsafe { check_step_buffers(&params, &grads, n, o.n_params())? };
        *last = o.step_f32(p, g)?.nonfinite_index;
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle_step("precond_optimizer_step_f32", opt, body) }
}

/// Whether the gradient of the most recent successful `precond_optimizer_step_f64`/`_f32` call
/// on this handle had a NaN or infinite entry: `*found = 1` and `*index` = the first such index,
/// or `*found = 0` and `*index = 0` (also before the first step). Only the policies `"skip"`
/// (the step was skipped) and `"propagate"` (it was applied, torch's semantics) can report one;
/// with `"error"` such a step fails instead and does not count as the most recent success.
///
/// Ownership: writes `*found` and `*index` (caller-owned). Thread-safety: not concurrently with
/// other calls on the handle.
///
/// Errors: `PRECOND_NULL_POINTER` (`opt`, `found`, `index`), `PRECOND_INVALID_ARGUMENT`
/// (`found` and `index` overlap); nothing is written on error.
///
/// # Safety
/// `opt` must be a live handle; `found` and `index` writable, distinct.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_last_nonfinite(
    opt: *const precond_optimizer_t,
    found: *mut i32,
    index: *mut usize,
) -> precond_status_t {
    let body = |h: &precond_optimizer_t| -> FfiResult {
        outputs_disjoint(found, 1, "found", index, 1, "index")?;
        // SAFETY: caller contract: `found` points to a writable value for the call; it does not
        // overlap `index` (checked).
        let found = unsafe { out_ref(&found, "found")? };
        // SAFETY: caller contract: `index` points to a writable value for the call.
        let index = unsafe { out_ref(&index, "index")? };
        *found = i32::from(h.last_nonfinite.is_some());
        *index = h.last_nonfinite.unwrap_or(0);
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle_ref_full("precond_optimizer_last_nonfinite", opt, body) }
}

/// Sets the top-level base learning rate (`lr ≥ 0`, finite; groups with their own `lr` keep it;
/// a schedule applies on top).
///
/// Thread-safety: not concurrently with other calls on the handle.
/// Errors: `PRECOND_NULL_POINTER`, `PRECOND_INVALID_ARGUMENT` (negative or non-finite `lr`; the
/// learning rate is then unchanged).
///
/// # Safety
/// `opt` must be a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_set_lr(
    opt: *mut precond_optimizer_t,
    lr: f64,
) -> precond_status_t {
    let body = |o: &mut Optimizer| -> FfiResult {
        o.set_lr(lr)?;
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle("precond_optimizer_set_lr", opt, body) }
}

/// Reads the top-level base learning rate (the value `precond_optimizer_set_lr` sets) into
/// `*lr`.
///
/// Ownership: writes `*lr` (caller-owned). Thread-safety: not concurrently with other calls on
/// the handle.
///
/// Errors: `PRECOND_NULL_POINTER` (`opt`, `lr`).
///
/// # Safety
/// `opt` must be a live handle, `lr` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_get_lr(
    opt: *const precond_optimizer_t,
    lr: *mut f64,
) -> precond_status_t {
    let body = |o: &Optimizer| -> FfiResult {
        // SAFETY: caller contract: `lr` points to a writable value for the call.
        *unsafe { out_ref(&lr, "lr")? } = o.base_lr();
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle_ref("precond_optimizer_get_lr", opt, body) }
}

/// Reads the learning rate the next step will use (base learning rate through the schedule)
/// into `*lr`.
///
/// Ownership: writes `*lr` (caller-owned). Thread-safety: not concurrently with other calls on
/// the handle.
///
/// Errors: `PRECOND_NULL_POINTER` (`opt`, `lr`).
///
/// # Safety
/// `opt` must be a live handle, `lr` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_current_lr(
    opt: *const precond_optimizer_t,
    lr: *mut f64,
) -> precond_status_t {
    let body = |o: &Optimizer| -> FfiResult {
        // SAFETY: caller contract: `lr` points to a writable value for the call.
        *unsafe { out_ref(&lr, "lr")? } = o.lr();
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle_ref("precond_optimizer_current_lr", opt, body) }
}

/// Reads the number of parameters into `*n_params`.
///
/// Ownership: writes `*n_params` (caller-owned). Thread-safety: not concurrently with other calls on
/// the handle.
///
/// Errors: `PRECOND_NULL_POINTER`.
///
/// # Safety
/// `opt` must be a live handle, `n_params` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_n_params(
    opt: *const precond_optimizer_t,
    n_params: *mut usize,
) -> precond_status_t {
    let body = |o: &Optimizer| -> FfiResult {
        // SAFETY: caller contract: `n_params` points to a writable value for the call.
        *unsafe { out_ref(&n_params, "n_params")? } = o.n_params();
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle_ref("precond_optimizer_n_params", opt, body) }
}

/// Reads the number of steps taken (skipped steps do not count) into `*steps`.
///
/// Ownership: writes `*steps` (caller-owned). Thread-safety: not concurrently with other calls on
/// the handle.
///
/// Errors: `PRECOND_NULL_POINTER`.
///
/// # Safety
/// `opt` must be a live handle, `steps` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_step_count(
    opt: *const precond_optimizer_t,
    steps: *mut u64,
) -> precond_status_t {
    let body = |o: &Optimizer| -> FfiResult {
        // SAFETY: caller contract: `steps` points to a writable value for the call.
        *unsafe { out_ref(&steps, "steps")? } = o.step_count();
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle_ref("precond_optimizer_step_count", opt, body) }
}

/// Writes the current diagonal preconditioner `P_k` (THEORY.md §4, learning rate kept outside)
/// into `out` (`n == n_params`): Adam/AdamW `1/(sqrt(v̂_k) + eps)`, RMSprop `1/(sqrt(v_k) + eps)`,
/// Adagrad `1/(sqrt(G_k) + eps)`, SGD/GD ones, precond GD the fixed diagonal. Feed it to
/// `precond_preconditioned_cond_diag` to measure `κ(P^{1/2} H P^{1/2})`.
///
/// Ownership: writes `out` (caller-owned). Thread-safety: not concurrently with a mutating call
/// on the handle.
///
/// Errors: `PRECOND_NULL_POINTER`, `PRECOND_DIMENSION_MISMATCH` (`n != n_params`),
/// `PRECOND_NUMERICAL_FAILURE` (Adam before its first step: `v̂_0 = 0/0`),
/// `PRECOND_INVALID_ARGUMENT` (a dense fixed preconditioner). `out` is unchanged on error.
///
/// # Safety
/// `opt` must be a live handle, `out` must have `n` writable doubles.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_preconditioner(
    opt: *const precond_optimizer_t,
    out: *mut f64,
    n: usize,
) -> precond_status_t {
    let body = |o: &Optimizer| -> FfiResult {
        // SAFETY: caller contract: `out` points to `n` writable elements used by nothing else
        // during the call.
        let out = unsafe { out_slice(&out, n, "out")? };
        expect_len(n, o.n_params(), "out")?;
        let mut tmp = vec![0.0; n];
        o.preconditioner(&mut tmp)?;
        out.copy_from_slice(&tmp);
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle_ref("precond_optimizer_preconditioner", opt, body) }
}

/// Reads into `*size` the number of bytes `precond_optimizer_save_state` writes for the current
/// state (it grows after the first step, when the moment buffers exist).
///
/// Ownership: writes `*size` (caller-owned). Thread-safety: not concurrently with other calls on
/// the handle.
///
/// Errors: `PRECOND_NULL_POINTER`.
///
/// # Safety
/// `opt` must be a live handle, `size` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_state_size(
    opt: *const precond_optimizer_t,
    size: *mut usize,
) -> precond_status_t {
    let body = |o: &Optimizer| -> FfiResult {
        // SAFETY: caller contract: `size` points to a writable value for the call.
        let size = unsafe { out_ref(&size, "size")? };
        *size = o.save_state().len();
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle_ref("precond_optimizer_state_size", opt, body) }
}

/// Saves the optimizer state (step count, base learning rate, moment buffers; versioned binary
/// format of `precond-optim`, bit-exact) into `buf` of `buf_len ≥ state size` bytes and the
/// number of bytes written into `*written`.
///
/// Ownership: writes `buf` and `*written` (caller-owned). Thread-safety: not concurrently with a
/// mutating call on the handle.
///
/// Errors: `PRECOND_NULL_POINTER`, `PRECOND_INVALID_ARGUMENT` (`written` inside `buf`),
/// `PRECOND_DIMENSION_MISMATCH` (`buf_len` smaller than the state). `buf` and `*written` are
/// unchanged on error.
///
/// # Safety
/// `opt` must be a live handle, `buf` must have `buf_len` writable bytes, `written` writable and
/// outside `buf`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_save_state(
    opt: *const precond_optimizer_t,
    buf: *mut u8,
    buf_len: usize,
    written: *mut usize,
) -> precond_status_t {
    let body = |o: &Optimizer| -> FfiResult {
        outputs_disjoint(buf, buf_len, "buf", written, 1, "written")?;
        // SAFETY: caller contract: `buf` points to `buf_len` writable elements used by nothing
        // else during the call (`written` does not overlap it: checked).
        let buf = unsafe { out_slice(&buf, buf_len, "buf")? };
        // SAFETY: caller contract: `written` points to a writable value for the call.
        let written = unsafe { out_ref(&written, "written")? };
        let bytes = o.save_state();
        if bytes.len() > buf_len {
            return Err(FfiError::dims(format!(
                "argument `buf` has {buf_len} bytes but the state needs {} (see precond_optimizer_state_size)",
                bytes.len()
            )));
        }
        buf[..bytes.len()].copy_from_slice(&bytes);
        *written = bytes.len();
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle_ref("precond_optimizer_save_state", opt, body) }
}

/// Loads a state saved by `precond_optimizer_save_state` from an optimizer of the same kind,
/// slot layout and number of parameters. All checks happen before any change.
///
/// Ownership: reads `buf`. Thread-safety: not concurrently with other calls on the handle.
///
/// Errors: `PRECOND_NULL_POINTER`, `PRECOND_INVALID_STATE` (truncated or trailing bytes, bad
/// magic, another format version, another optimizer or slot layout, another `n_params`: the
/// message says which). On error the optimizer is unchanged and usable.
///
/// # Safety
/// `opt` must be a live handle, `buf` must have `buf_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_load_state(
    opt: *mut precond_optimizer_t,
    buf: *const u8,
    buf_len: usize,
) -> precond_status_t {
    let body = |o: &mut Optimizer| -> FfiResult {
        // SAFETY: caller contract: `buf` points to `buf_len` readable elements, not written during
        // the call.
        let buf = unsafe { in_slice(&buf, buf_len, "buf")? };
        o.load_state(buf)?;
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle("precond_optimizer_load_state", opt, body) }
}

/// Forgets all state (moments, accumulators, step count, dtype); keeps the learning rate.
///
/// Thread-safety: not concurrently with other calls on the handle.
///
/// Errors: `PRECOND_NULL_POINTER`.
///
/// # Safety
/// `opt` must be a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_reset(
    opt: *mut precond_optimizer_t,
) -> precond_status_t {
    let body = |o: &mut Optimizer| -> FfiResult {
        o.reset();
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle("precond_optimizer_reset", opt, body) }
}

/// The message of the last failed call on this handle (NUL-terminated, owned by the handle;
/// never free it); `""` if no call on it has failed; a static message if `opt` is NULL. Never
/// returns NULL. Unlike the thread-local `precond_last_error`, it follows the handle across
/// threads (Julia tasks migrate). Every failing call taking a handle records its message both
/// here and in `precond_last_error()`.
///
/// Lifetime: the returned pointer stays valid, its text unchanged, until the next *failing*
/// call taking this handle (from any thread; it replaces the message and frees the old one) or
/// `precond_optimizer_free(opt)`, whichever comes first. Successful calls on the handle,
/// `precond_clear_last_error()` (which affects only the thread-local message) and calls on
/// other handles do not invalidate it. The static message for a NULL `opt` is valid for as
/// long as the library is loaded. Copy the text to keep it longer.
///
/// Thread-safety: not concurrently with other calls on the handle.
///
/// # Safety
/// `opt` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_last_error(
    opt: *const precond_optimizer_t,
) -> *const c_char {
    static NULL_MSG: &CStr = c"precond_optimizer_last_error: argument `opt` is NULL";
    if opt.is_null() || !opt.is_aligned() {
        return NULL_MSG.as_ptr();
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: a live handle by contract; the CString lives until the next failing call on it.
        match unsafe { &*opt }.last_error.try_borrow() {
            Ok(e) => e.as_ptr(),
            Err(_) => NULL_MSG.as_ptr(),
        }
    }))
    .unwrap_or(NULL_MSG.as_ptr())
}
