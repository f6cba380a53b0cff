//! Sharded optimizer state (ZeRO stage 1) without MPI: the caller keeps its own communicator,
//! reduce-scatters gradients, steps its range with a shard handle and all-gathers parameters.
//! The partition, shard handles, and the conversions between the states of the shards and the
//! unsharded state (`precond_optim::shard`).

use std::ffi::{CStr, c_char};

use precond_optim::{
    OptimizerConfig, OptimizerState, ShardPlan, ShardedOptimizer, assemble_state, split_state,
};

use crate::optimizer::{new_handle, precond_optimizer_t};
use crate::ptr::{in_slice, nonzero, out_ref, out_slice, outputs_disjoint, overlaps};
use crate::status::{FfiError, FfiResult, boundary, precond_status_t};

/// The config of a NUL-terminated JSON string.
///
/// # Safety
/// A non-NULL `config_json` must be NUL-terminated and readable during the call.
unsafe fn config(config_json: *const c_char) -> FfiResult<OptimizerConfig> {
    if config_json.is_null() {
        return Err(FfiError::null("config_json"));
    }
    // SAFETY: non-null, NUL-terminated by this function's contract.
    let text = unsafe { CStr::from_ptr(config_json) }
        .to_str()
        .map_err(|e| {
            FfiError::new(
                precond_status_t::PRECOND_PARSE_ERROR,
                format!("config_json is not valid UTF-8: {e}"),
            )
        })?;
    Ok(OptimizerConfig::from_json(text)?)
}

/// The balanced plan of `cfg` over `n_params > 0` parameters and `world` ranks.
fn plan(cfg: &OptimizerConfig, n_params: usize, world: usize) -> FfiResult<ShardPlan> {
    nonzero(n_params, "n_params")?;
    Ok(ShardPlan::new(cfg, n_params, world)?)
}

/// `rank < world`, as an invalid argument naming both.
fn check_rank(rank: usize, world: usize) -> FfiResult {
    if rank >= world {
        return Err(FfiError::invalid(format!(
            "argument `rank` is {rank}; it must be < world = {world}"
        )));
    }
    Ok(())
}

/// Copies `bytes` into the caller's `out` (or answers a size query: `out == NULL` with
/// `out_len == 0`), the count into `*written`.
///
/// # Safety
/// `out` NULL or `out_len` writable bytes, `written` writable, neither accessed otherwise
/// during the call; the two are disjoint (checked by the caller).
unsafe fn write_bytes(
    bytes: &[u8],
    out: *mut u8,
    out_len: usize,
    written: *mut usize,
) -> FfiResult {
    // SAFETY: this function's contract.
    let written = unsafe { out_ref(&written, "written")? };
    if out.is_null() && out_len == 0 {
        *written = bytes.len();
        return Ok(());
    }
    // SAFETY: this function's contract.
    let out = unsafe { out_slice(&out, out_len, "out")? };
    if out_len < bytes.len() {
        return Err(FfiError::dims(format!(
            "argument `out` has {out_len} bytes but the state needs {} (query it with out = NULL, out_len = 0)",
            bytes.len()
        )));
    }
    out[..bytes.len()].copy_from_slice(bytes);
    *written = bytes.len();
    Ok(())
}

/// The range `[*start, *end)` of the flat parameter vector that rank `rank` of `world` steps
/// under ZeRO-1, for the optimizer `config_json` over `n_params > 0` parameters: contiguous
/// ranges in rank order covering `0 .. n_params`, balanced by optimizer state (boundary `r`
/// where the cumulative state values reach `floor(r S / world)`, `S` the unsharded state;
/// moved to the nearer end of a matrix group it would split: each rank holds at most `S/world`
/// plus one group's state plus one element's; with one per-element optimizer the boundaries
/// are `floor(r n_params / world)`), never splitting a matrix group (Muon, Shampoo, SOAP) or a
/// `"bnp"` group; a range may be empty
/// (`*start == *end`) when there are more ranks than matrices. The same on every rank for the
/// same arguments.
///
/// Ownership: reads `config_json`; writes `*start`, `*end` (caller-owned). Thread-safety: may
/// be called concurrently.
///
/// Errors: `PRECOND_NULL_POINTER` (`config_json`, `start`, `end`), `PRECOND_PARSE_ERROR`,
/// `PRECOND_INVALID_ARGUMENT` (`n_params == 0`, `world == 0`, `rank >= world`, `start` and `end`
/// overlap, config errors, a dense fixed preconditioner: its product `P g` needs the whole
/// gradient), `PRECOND_DIMENSION_MISMATCH` (a group outside `0 .. n_params`). Nothing is written
/// on error.
///
/// # Safety
/// `config_json` must be a NUL-terminated string; `start` and `end` writable and distinct.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_shard_range(
    config_json: *const c_char,
    n_params: usize,
    world: usize,
    rank: usize,
    start: *mut usize,
    end: *mut usize,
) -> precond_status_t {
    boundary("precond_shard_range", || {
        outputs_disjoint(start, 1, "start", end, 1, "end")?;
        // SAFETY: caller contract: writable, not overlapping `end` (checked).
        let start = unsafe { out_ref(&start, "start")? };
        // SAFETY: caller contract: writable.
        let end = unsafe { out_ref(&end, "end")? };
        // SAFETY: caller contract: NUL-terminated.
        let cfg = unsafe { config(config_json)? };
        let p = plan(&cfg, n_params, world)?;
        check_rank(rank, world)?;
        let r = p.range(rank);
        (*start, *end) = (r.start, r.end);
        Ok(())
    })
}

/// Creates the optimizer of rank `rank` of `world` under ZeRO-1 (see `precond_shard_range`):
/// an ordinary optimizer handle over the local slice `x[start .. end]`, `end − start`
/// parameters (possibly 0). `precond_optimizer_step_f64`/`_f32` on the local slices of the
/// parameters and of the (reduce-scattered) gradient write bit for bit what the unsharded
/// optimizer writes on those coordinates; an empty shard takes `n = 0` (any pointers, NULL
/// included) and still counts steps. Indices it reports (`precond_optimizer_last_nonfinite`, the
/// messages) are indices of the unsharded vector. Its saved state names the shard (rank, range,
/// size) and loads only into the same shard; convert between shard states and the unsharded
/// state with `precond_state_assemble` and `precond_state_split`.
///
/// With the non-finite policies `"error"` (the default) and `"skip"`, a shard sees only its own
/// gradients: reduce a finiteness flag over the ranks first and let every rank step, or none.
///
/// Ownership: reads `config_json`; on success `*out` receives a new caller-owned handle
/// (release with `precond_optimizer_free`); on error `*out` is unchanged. Thread-safety: may be
/// called concurrently.
///
/// Errors: those of `precond_shard_range`.
///
/// # Safety
/// `config_json` must be a NUL-terminated string; `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_new_shard(
    config_json: *const c_char,
    n_params: usize,
    world: usize,
    rank: usize,
    out: *mut *mut precond_optimizer_t,
) -> precond_status_t {
    boundary("precond_optimizer_new_shard", || {
        // SAFETY: caller contract: writable.
        let out = unsafe { out_ref(&out, "out")? };
        // SAFETY: caller contract: NUL-terminated.
        let cfg = unsafe { config(config_json)? };
        let p = plan(&cfg, n_params, world)?;
        check_rank(rank, world)?;
        let s = ShardedOptimizer::from_plan(&cfg, p, rank)?;
        *out = new_handle(s.into_optimizer());
        Ok(())
    })
}

/// Assembles the unsharded state of the optimizer `config_json` over `n_params` parameters
/// from the saved states of the `world` shards (`blobs[r]`, `lens[r]` bytes: the bytes
/// `precond_optimizer_save_state` wrote for rank `r`, in rank order) into `out` (`out_len`
/// bytes), its size into `*written`. The result is bitwise the state the unsharded optimizer,
/// stepped the same calls, would save: it loads into `precond_optimizer_new_json(config_json,
/// n_params)`, or is split for another world size with `precond_state_split`.
///
/// Size query: `out == NULL` with `out_len == 0` writes only `*written` (the size needed).
///
/// Ownership: reads `config_json`, `blobs`, `lens` and the blobs; writes `out[0 .. *written]`
/// and `*written`. Thread-safety: may be called concurrently.
///
/// Errors: `PRECOND_NULL_POINTER` (`config_json`, `blobs`, `lens`, a blob, `written`; `out`
/// with `out_len > 0`), `PRECOND_INVALID_STATE` (a blob that is not rank `r`'s state of this
/// config and size, shards out of order, step counts or learning rates that differ: the message
/// names the rank), `PRECOND_DIMENSION_MISMATCH` (`out_len` too small),
/// `PRECOND_INVALID_ARGUMENT` (`out` overlapping an input or `written`, and the errors of
/// `precond_shard_range`). Nothing is written on error.
///
/// # Safety
/// `config_json` NUL-terminated; `blobs` and `lens` arrays of `world` entries, `blobs[r]`
/// pointing to `lens[r]` readable bytes; `out` NULL (with `out_len == 0`) or `out_len`
/// writable bytes; `written` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_state_assemble(
    config_json: *const c_char,
    n_params: usize,
    world: usize,
    blobs: *const *const u8,
    lens: *const usize,
    out: *mut u8,
    out_len: usize,
    written: *mut usize,
) -> precond_status_t {
    boundary("precond_state_assemble", || {
        // SAFETY: caller contract: NUL-terminated.
        let cfg = unsafe { config(config_json)? };
        let p = plan(&cfg, n_params, world)?;
        // SAFETY: caller contract: `world` readable pointers.
        let blobs = unsafe { in_slice(&blobs, world, "blobs")? };
        // SAFETY: caller contract: `world` readable sizes.
        let lens = unsafe { in_slice(&lens, world, "lens")? };
        outputs_disjoint(out, out_len, "out", written, 1, "written")?;
        let mut states = Vec::with_capacity(world);
        for (r, (b, &len)) in blobs.iter().zip(lens).enumerate() {
            let name = format!("blobs[{r}]");
            if overlaps(out.cast_const(), out_len, *b, len) {
                return Err(FfiError::invalid(format!(
                    "output `out` overlaps input `{name}`"
                )));
            }
            // SAFETY: caller contract: `lens[r]` readable bytes.
            let bytes = unsafe { in_slice(b, len, &name)? };
            states.push(
                OptimizerState::from_bytes(bytes)
                    .map_err(|e| FfiError::from(e).with_prefix(&format!("{name} (rank {r})")))?,
            );
        }
        let whole = assemble_state(&cfg, &p, &states)?;
        // SAFETY: caller contract; `out` and `written` are disjoint (checked).
        unsafe { write_bytes(&whole.to_bytes(), out, out_len, written) }
    })
}

/// Splits the unsharded state `blob` (`blob_len` bytes, from `precond_optimizer_save_state` of
/// an unsharded optimizer or from `precond_state_assemble`) of the optimizer `config_json` over
/// `n_params` parameters for rank `rank` of `world` (any world size: this reshards a
/// checkpoint) into `out` (`out_len` bytes), its size into `*written`. The result loads into
/// `precond_optimizer_new_shard(config_json, n_params, world, rank)`, which then continues bit
/// for bit as the unsharded optimizer would on its range.
///
/// Size query: `out == NULL` with `out_len == 0` writes only `*written` (the size needed).
///
/// Ownership: reads `config_json` and `blob`; writes `out[0 .. *written]` and `*written`.
/// Thread-safety: may be called concurrently.
///
/// Errors: `PRECOND_NULL_POINTER`, `PRECOND_INVALID_STATE` (`blob` is not an unsharded state of
/// this config and size: a shard's state, another optimizer, a corrupt blob),
/// `PRECOND_DIMENSION_MISMATCH` (`out_len` too small), `PRECOND_INVALID_ARGUMENT` (`out`
/// overlapping `blob` or `written`, and the errors of `precond_shard_range`). Nothing is
/// written on error.
///
/// # Safety
/// `config_json` NUL-terminated; `blob` with `blob_len` readable bytes; `out` NULL (with
/// `out_len == 0`) or `out_len` writable bytes; `written` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_state_split(
    config_json: *const c_char,
    n_params: usize,
    world: usize,
    rank: usize,
    blob: *const u8,
    blob_len: usize,
    out: *mut u8,
    out_len: usize,
    written: *mut usize,
) -> precond_status_t {
    boundary("precond_state_split", || {
        // SAFETY: caller contract: NUL-terminated.
        let cfg = unsafe { config(config_json)? };
        let p = plan(&cfg, n_params, world)?;
        check_rank(rank, world)?;
        outputs_disjoint(out, out_len, "out", written, 1, "written")?;
        if overlaps(out.cast_const(), out_len, blob, blob_len) {
            return Err(FfiError::invalid("output `out` overlaps input `blob`"));
        }
        // SAFETY: caller contract: `blob_len` readable bytes.
        let bytes = unsafe { in_slice(&blob, blob_len, "blob")? };
        let full = OptimizerState::from_bytes(bytes)?;
        let mut parts = split_state(&cfg, &p, &full)?;
        let mine = parts.swap_remove(rank);
        // SAFETY: caller contract; `out` and `written` are disjoint (checked).
        unsafe { write_bytes(&mine.to_bytes(), out, out_len, written) }
    })
}
