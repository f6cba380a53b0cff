//! BNP on a dense layer's parameter group (docs/THEORY.md §6): the running statistics of a
//! group with `"bnp"` (configured through `precond_optimizer_new_json`) are fed and read here.

use precond_optim::Optimizer;

use crate::optimizer::{precond_optimizer_t, with_handle, with_handle_ref};
use crate::ptr::{in_slice, out_slice, outputs_disjoint, overlaps};
use crate::status::{FfiError, FfiResult, precond_status_t};

/// `d` against the layer's input width of group `group`, checked before any buffer is read.
fn check_d(o: &Optimizer, group: usize, d: usize) -> FfiResult {
    let want = o.bnp_stats(group)?.dim();
    if d != want {
        return Err(FfiError::dims(format!(
            "argument `d` is {d} but groups[{group}] (BNP) has d = {want} inputs (its shape [units, d])"
        )));
    }
    Ok(())
}

/// Folds one batch's statistics of the input of BNP group `group` into its running estimates
/// (docs/THEORY.md §6, precond-optim's `BnpStats::observe`): `mean[j]` and `var[j]` are the
/// per-feature mean and **biased** (population, divide by the batch size) variance of the
/// layer's input over the batch, `d` features (the group's `"shape": [units, d]`). Call it
/// after the forward pass and before the step that uses the statistics; a batch of one sample
/// has `var = 0` (the running estimate still learns the spread of the samples).
///
/// The group is configured in the JSON of `precond_optimizer_new_json`:
/// `{"start", "end", "shape": [units, d], "bnp": true}` (or `{"momentum": 0.1, "eps": 1e-5}`),
/// its range holding the weights `W` row-major (`units × d`, torch's `Linear.weight`) then the
/// bias `b` (`units`). Each step then preconditions the group's gradient
/// `[∇b_i; ∇w_i] ← S Sᵀ [∇b_i; ∇w_i]` before its optimizer (the group's `"optimizer"` or the
/// top level's, a per-element one) steps.
///
/// Ownership: reads `mean` and `var`; nothing is retained. Thread-safety: not concurrently with
/// any other call on the handle.
///
/// Errors (nothing changed): `PRECOND_NULL_POINTER`, `PRECOND_INVALID_ARGUMENT` (no group
/// `group`, a group without `"bnp"`, a group held by another shard, a NaN/infinite mean, a
/// negative or non-finite variance, `mean` and `var` overlapping), `PRECOND_DIMENSION_MISMATCH`
/// (`d` is not the group's input width).
///
/// # Safety
/// `opt` must be a live handle; `mean` and `var` must point to `d` readable doubles each.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_bnp_observe(
    opt: *mut precond_optimizer_t,
    group: usize,
    mean: *const f64,
    var: *const f64,
    d: usize,
) -> precond_status_t {
    let body = |o: &mut Optimizer| -> FfiResult {
        check_d(o, group, d)?;
        // SAFETY: caller contract: `mean` points to `d` readable doubles for the call.
        let m = unsafe { in_slice(&mean, d, "mean")? };
        // SAFETY: caller contract: `var` points to `d` readable doubles for the call.
        let v = unsafe { in_slice(&var, d, "var")? };
        if overlaps(mean, d, var, d) {
            return Err(FfiError::invalid(
                "buffers `mean` and `var` overlap; they must be distinct",
            ));
        }
        o.bnp_observe(group, m, v)?;
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle("precond_optimizer_bnp_observe", opt, body) }
}

/// Writes the running statistics of BNP group `group` (see `precond_optimizer_bnp_observe`):
/// `mean[j]` the running mean `μ_j`, `var[j]` the running population variance `σ_j²` (the step
/// uses `Σ⁻² = 1/(σ² + eps)`), `d` features. Before any observation: mean 0, variance 1
/// (torch's BatchNorm buffers).
///
/// Ownership: writes `mean` and `var` (caller-owned). Thread-safety: not concurrently with a
/// mutating call on the handle.
///
/// Errors (nothing written): `PRECOND_NULL_POINTER`, `PRECOND_INVALID_ARGUMENT` (no group
/// `group`, a group without `"bnp"`, a group held by another shard, `mean` and `var`
/// overlapping), `PRECOND_DIMENSION_MISMATCH` (`d` is not the group's input width).
///
/// # Safety
/// `opt` must be a live handle; `mean` and `var` must point to `d` writable doubles each.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_bnp_stats(
    opt: *const precond_optimizer_t,
    group: usize,
    mean: *mut f64,
    var: *mut f64,
    d: usize,
) -> precond_status_t {
    let body = |o: &Optimizer| -> FfiResult {
        check_d(o, group, d)?;
        outputs_disjoint(mean, d, "mean", var, d, "var")?;
        // SAFETY: caller contract: `mean` points to `d` writable doubles used by nothing else
        // during the call (not `var`: checked).
        let m = unsafe { out_slice(&mean, d, "mean")? };
        // SAFETY: caller contract: `var` points to `d` writable doubles used by nothing else
        // during the call.
        let v = unsafe { out_slice(&var, d, "var")? };
        let s = o.bnp_stats(group)?;
        m.copy_from_slice(s.mean());
        v.copy_from_slice(s.var());
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle_ref("precond_optimizer_bnp_stats", opt, body) }
}
