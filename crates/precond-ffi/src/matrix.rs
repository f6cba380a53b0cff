//! The matrix preconditioner of a Muon (and, through the same calls, Shampoo or SOAP) group
//! (THEORY.md §7): its blocks, their ranges and their matrices, copied into caller buffers.
//!
//! Every matrix is row-major whatever the group's storage order. For a block with rows
//! `row0..row1` and columns `col0..col1` of the parameter matrix (`r = row1 − row0`,
//! `c = col1 − col0`), the left multiplier `Lm` is `r × r`, the right one `Rm` is `c × c`, and
//! the preconditioned direction is `Lm · G · Rm` (the Kronecker preconditioner `Lm ⊗ Rm` on the
//! row-major `vec(G)`).

use precond_optim::{MatrixPreconditioner, Optimizer, PreconditionerBlock};

use crate::optimizer::{precond_optimizer_t, with_handle_ref};
use crate::ptr::{out_ref, out_slice, outputs_disjoint};
use crate::status::{FfiError, FfiResult, precond_status_t};

/// Which matrix of a preconditioner block `precond_optimizer_matrix_preconditioner` copies.
/// Passed as an `int32_t`; any other value is `PRECOND_INVALID_ARGUMENT`. Sizes for a block of
/// `r` rows and `c` columns; a block has only the matrices its optimizer defines (the others
/// have length 0).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum precond_matrix_part_t {
    /// Left multiplier `Lm` (`r × r`). Muon: the implied `(B Bᵀ)^{-1/2}` of the momentum
    /// buffer `B` for a wide or square matrix; Shampoo: `(L̂ + εI)^{-1/4}`.
    PRECOND_MATRIX_LEFT = 0,
    /// Right multiplier `Rm` (`c × c`). Muon: `(Bᵀ B)^{-1/2}` for a tall matrix; Shampoo:
    /// `(R̂ + εI)^{-1/4}`.
    PRECOND_MATRIX_RIGHT = 1,
    /// The left statistic `L` (`r × r`, Shampoo's and SOAP's sum or EMA of `G Gᵀ`).
    PRECOND_MATRIX_LEFT_FACTOR = 2,
    /// The right statistic `R` (`c × c`, sum or EMA of `Gᵀ G`).
    PRECOND_MATRIX_RIGHT_FACTOR = 3,
    /// SOAP: the eigenbasis `Q_L` of `L` (eigenvectors in the columns, `r × r`).
    PRECOND_MATRIX_LEFT_BASIS = 4,
    /// SOAP: the eigenbasis `Q_R` of `R` (`c × c`).
    PRECOND_MATRIX_RIGHT_BASIS = 5,
    /// SOAP: Adam's diagonal `1/(sqrt(v̂) + eps)` in the rotated basis (`r × c`).
    PRECOND_MATRIX_DIAGONAL = 6,
}

/// The place of one preconditioner block in the parameter matrix (rows `row0..row1`, columns
/// `col0..col1`, half-open), and the shape of that matrix.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct precond_matrix_block_t {
    /// Rows of the whole parameter matrix.
    pub rows: usize,
    /// Columns of the whole parameter matrix.
    pub cols: usize,
    /// First row of the block.
    pub row0: usize,
    /// One past the last row of the block.
    pub row1: usize,
    /// First column of the block.
    pub col0: usize,
    /// One past the last column of the block.
    pub col1: usize,
}

/// Validates a `which` integer.
fn part(v: i32) -> FfiResult<precond_matrix_part_t> {
    use precond_matrix_part_t as P;
    Ok(match v {
        0 => P::PRECOND_MATRIX_LEFT,
        1 => P::PRECOND_MATRIX_RIGHT,
        2 => P::PRECOND_MATRIX_LEFT_FACTOR,
        3 => P::PRECOND_MATRIX_RIGHT_FACTOR,
        4 => P::PRECOND_MATRIX_LEFT_BASIS,
        5 => P::PRECOND_MATRIX_RIGHT_BASIS,
        6 => P::PRECOND_MATRIX_DIAGONAL,
        _ => {
            return Err(FfiError::invalid(format!(
                "argument `which` is {v}; expected a precond_matrix_part_t value 0..=6 \
                 (PRECOND_MATRIX_LEFT .. PRECOND_MATRIX_DIAGONAL)"
            )));
        }
    })
}

/// The block's matrix selected by `which` (`None` when the block has none).
fn block_part(b: &PreconditionerBlock, which: precond_matrix_part_t) -> Option<&[f64]> {
    use precond_matrix_part_t as P;
    match which {
        P::PRECOND_MATRIX_LEFT => b.left.as_deref(),
        P::PRECOND_MATRIX_RIGHT => b.right.as_deref(),
        P::PRECOND_MATRIX_LEFT_FACTOR => b.left_factor.as_deref(),
        P::PRECOND_MATRIX_RIGHT_FACTOR => b.right_factor.as_deref(),
        P::PRECOND_MATRIX_LEFT_BASIS => b.left_basis.as_deref(),
        P::PRECOND_MATRIX_RIGHT_BASIS => b.right_basis.as_deref(),
        P::PRECOND_MATRIX_DIAGONAL => b.diagonal.as_deref(),
    }
}

/// `group` as the Rust API's `Option<usize>`: `-1` is the top level, `0..` a group index.
fn group_arg(group: i64) -> FfiResult<Option<usize>> {
    match group {
        -1 => Ok(None),
        g if g >= 0 => usize::try_from(g).map(Some).map_err(|_| {
            FfiError::invalid(format!("argument `group` is {g}; it does not fit size_t"))
        }),
        g => Err(FfiError::invalid(format!(
            "argument `group` is {g}; expected -1 (the top level) or a group index >= 0"
        ))),
    }
}

/// The matrix preconditioner of `group` (`-1`: the top level).
fn observe(o: &Optimizer, group: i64) -> FfiResult<MatrixPreconditioner> {
    Ok(o.matrix_preconditioner(group_arg(group)?)?)
}

/// Block `block` of `m`, or a dimension error naming the block count.
fn nth_block(m: &MatrixPreconditioner, block: usize) -> FfiResult<&PreconditionerBlock> {
    m.blocks.get(block).ok_or_else(|| {
        FfiError::dims(format!(
            "argument `block` is {block} but the preconditioner has {} block(s)",
            m.blocks.len()
        ))
    })
}

/// Reads into `*n_blocks` the number of blocks of the current matrix preconditioner of
/// `group` (an index into the configuration's `groups`, or `-1` for the top level, which needs
/// a top-level `shape`). Muon has one block; Shampoo splits dimensions larger than its
/// `max_preconditioner_dim`.
///
/// Ownership: writes `*n_blocks` (caller-owned). Thread-safety: not concurrently with a
/// mutating call on the handle.
///
/// Errors: `PRECOND_NULL_POINTER` (`opt`, `n_blocks`), `PRECOND_INVALID_ARGUMENT` (`group <
/// -1`; a group not run by its own optimizer; a per-element optimizer there, whose diagonal
/// `P_k` is read with `precond_optimizer_preconditioner`), `PRECOND_NUMERICAL_FAILURE` (before
/// the first step: no preconditioner yet). `*n_blocks` is unchanged on error.
///
/// # Safety
/// `opt` must be a live handle, `n_blocks` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_matrix_blocks(
    opt: *const precond_optimizer_t,
    group: i64,
    n_blocks: *mut usize,
) -> precond_status_t {
    let body = |o: &Optimizer| -> FfiResult {
        // SAFETY: caller contract: `n_blocks` points to a writable value for the call.
        let n_blocks = unsafe { out_ref(&n_blocks, "n_blocks")? };
        *n_blocks = observe(o, group)?.blocks.len();
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle_ref("precond_optimizer_matrix_blocks", opt, body) }
}

/// Reads into `*out` where block `block` (`0 ≤ block < n_blocks`, row-block-major) of the
/// matrix preconditioner of `group` (`-1`: the top level) sits in the parameter matrix, and
/// that matrix's shape.
///
/// Ownership: writes `*out` (caller-owned). Thread-safety: not concurrently with a mutating
/// call on the handle.
///
/// Errors: those of `precond_optimizer_matrix_blocks`, and `PRECOND_DIMENSION_MISMATCH`
/// (`block ≥ n_blocks`, the message names the count). `*out` is unchanged on error.
///
/// # Safety
/// `opt` must be a live handle, `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_matrix_block_range(
    opt: *const precond_optimizer_t,
    group: i64,
    block: usize,
    out: *mut precond_matrix_block_t,
) -> precond_status_t {
    let body = |o: &Optimizer| -> FfiResult {
        // SAFETY: caller contract: `out` points to a writable value for the call.
        let out = unsafe { out_ref(&out, "out")? };
        let m = observe(o, group)?;
        let b = nth_block(&m, block)?;
        *out = precond_matrix_block_t {
            rows: m.rows,
            cols: m.cols,
            row0: b.rows.start,
            row1: b.rows.end,
            col0: b.cols.start,
            col1: b.cols.end,
        };
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle_ref("precond_optimizer_matrix_block_range", opt, body) }
}

/// Copies matrix `which` (a `precond_matrix_part_t`) of block `block` of the current matrix
/// preconditioner of `group` (`-1`: the top level) into `out`, row-major, and its number of
/// entries into `*written` (`r·r`, `c·c` or `r·c` for a block of `r` rows and `c` columns, see
/// `precond_matrix_part_t`). A matrix the block does not have (Muon's `PRECOND_MATRIX_RIGHT` of a
/// wide matrix, its factors and bases) has length 0: `*written = 0` and `PRECOND_OK`.
///
/// Size query: `out == NULL` with `out_len == 0` writes only `*written` (the length needed).
/// Otherwise `out` must hold `out_len ≥` that length.
///
/// Ownership: writes `out[0 .. *written]` and `*written` (caller-owned). Thread-safety: not
/// concurrently with a mutating call on the handle.
///
/// Errors: those of `precond_optimizer_matrix_block_range`, `PRECOND_INVALID_ARGUMENT`
/// (unknown `which`; `written` inside `out`), `PRECOND_NULL_POINTER` (`opt`, `written`; `out`
/// with `out_len > 0`), `PRECOND_DIMENSION_MISMATCH` (`out_len` smaller than the matrix: the
/// message names the length needed). `out` and `*written` are unchanged on error.
///
/// # Safety
/// `opt` must be a live handle; `out` NULL (with `out_len == 0`) or `out_len` writable doubles;
/// `written` writable and outside `out`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_optimizer_matrix_preconditioner(
    opt: *const precond_optimizer_t,
    group: i64,
    which: i32,
    block: usize,
    out: *mut f64,
    out_len: usize,
    written: *mut usize,
) -> precond_status_t {
    let body = |o: &Optimizer| -> FfiResult {
        let which = part(which)?;
        outputs_disjoint(out, out_len, "out", written, 1, "written")?;
        // SAFETY: caller contract: `written` points to a writable value for the call; it does
        // not overlap `out` (checked).
        let written = unsafe { out_ref(&written, "written")? };
        let query = out.is_null() && out_len == 0;
        let m = observe(o, group)?;
        let src = block_part(nth_block(&m, block)?, which).unwrap_or(&[]);
        if query {
            *written = src.len();
            return Ok(());
        }
        // SAFETY: caller contract: `out` points to `out_len` writable doubles used by nothing
        // else during the call.
        let out = unsafe { out_slice(&out, out_len, "out")? };
        if out_len < src.len() {
            return Err(FfiError::dims(format!(
                "argument `out` has length {out_len} but {which:?} of block {block} needs {} \
                 (query it with out = NULL, out_len = 0)",
                src.len()
            )));
        }
        out[..src.len()].copy_from_slice(src);
        *written = src.len();
        Ok(())
    };
    // SAFETY: caller contract: `opt` is NULL or a live handle that nothing else uses during
    // the call.
    unsafe { with_handle_ref("precond_optimizer_matrix_preconditioner", opt, body) }
}
