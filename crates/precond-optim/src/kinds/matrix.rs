//! What the matrix kinds (Muon, Shampoo, SOAP) share: the one segment of a matrix part, the
//! `(row, col)` of a flat index, the state an observation needs.

use super::StepCtx;
use crate::config::{MatrixOrder, MatrixShape, OptimizerConfig};
use crate::error::{OptimError, Result};
use crate::matrix::{MatrixPreconditioner, PreconditionerBlock};
use crate::storage::{Geometry, Slots, StepFloat};

/// The `(row, col)` of flat index `idx` of a matrix stored in `shape`'s order.
#[inline(always)]
pub(crate) fn position(idx: usize, s: MatrixShape) -> (usize, usize) {
    match s.order {
        MatrixOrder::RowMajor => (idx / s.cols, idx % s.cols),
        MatrixOrder::ColMajor => (idx % s.rows, idx / s.rows),
    }
}

/// Calls `f(idx, i, j)` for every entry of a matrix of shape `s` (flat index and position), in
/// 32 × 32 tiles of positions, each tile in the flat array's order: a pass that reads the flat
/// buffers and writes column-major block matrices (or the reverse) touches a few cache lines of
/// each per tile instead of striding through a whole matrix per row.
pub(crate) fn for_each_tiled(s: MatrixShape, mut f: impl FnMut(usize, usize, usize)) {
    const TILE: usize = 32;
    for i0 in (0..s.rows).step_by(TILE) {
        let i1 = (i0 + TILE).min(s.rows);
        for j0 in (0..s.cols).step_by(TILE) {
            let j1 = (j0 + TILE).min(s.cols);
            match s.order {
                MatrixOrder::RowMajor => {
                    for i in i0..i1 {
                        for j in j0..j1 {
                            f(i * s.cols + j, i, j);
                        }
                    }
                }
                MatrixOrder::ColMajor => {
                    for j in j0..j1 {
                        for i in i0..i1 {
                            f(j * s.rows + i, i, j);
                        }
                    }
                }
            }
        }
    }
}

/// The one segment a matrix part steps: the matrix's shape, its parameters and gradient, its
/// scheduled learning rate and weight decay.
pub(crate) struct MatrixSegment<'a, T> {
    pub(crate) shape: MatrixShape,
    pub(crate) x: &'a mut [T],
    pub(crate) g: &'a [T],
    pub(crate) lr: f64,
    pub(crate) weight_decay: f64,
}

/// The part's segment out of the flat `x` and `g` (a matrix part has exactly one segment and a
/// shape; the build guarantees both).
pub(crate) fn segment<'a, T: StepFloat>(
    c: &OptimizerConfig,
    ctx: &StepCtx<'_>,
    x: &'a mut [T],
    g: &'a [T],
) -> Result<MatrixSegment<'a, T>> {
    let (Some(seg), Some(shape)) = (ctx.segments.first(), ctx.geo.shape) else {
        return Err(OptimError::Unsupported(format!(
            "`{}` needs one matrix-shaped segment",
            c.optimizer.name()
        )));
    };
    Ok(MatrixSegment {
        shape,
        x: &mut x[seg.start..seg.end],
        g: &g[seg.start..seg.end],
        lr: c.schedule.lr(seg.lr.unwrap_or(ctx.base_lr), ctx.step),
        weight_decay: seg.weight_decay,
    })
}

/// The state and shape an observation reads; [`OptimError::NoPreconditionerYet`] before the
/// first step.
pub(crate) fn observed<'a, T: StepFloat>(
    c: &OptimizerConfig,
    step: u64,
    state: Option<&'a Slots<T>>,
    geo: &Geometry,
) -> Result<(&'a Slots<T>, MatrixShape)> {
    match (state.filter(|_| step > 0), geo.shape) {
        (Some(s), Some(shape)) => Ok((s, shape)),
        _ => Err(OptimError::NoPreconditionerYet {
            optimizer: c.optimizer.name(),
        }),
    }
}

/// A preconditioner of one block covering the whole matrix.
pub(crate) fn single_block(
    c: &OptimizerConfig,
    shape: MatrixShape,
    block: PreconditionerBlock,
) -> MatrixPreconditioner {
    MatrixPreconditioner {
        optimizer: c.optimizer,
        rows: shape.rows,
        cols: shape.cols,
        blocks: vec![block],
    }
}

/// A factor (`n × n`, row-major, at `off` in `f`) must have a non-negative diagonal: it is a sum
/// or an average of `GGᵀ`. `Err` names the factor (`what`), the index and the value.
pub(crate) fn check_factor_diagonal(
    f: &[f64],
    off: usize,
    n: usize,
    what: &str,
) -> std::result::Result<(), String> {
    match (0..n).find(|&i| f[off + i * n + i] < 0.0) {
        Some(i) => Err(format!(
            "{what} has {} on its diagonal ({i}); a sum of squares is ≥ 0",
            f[off + i * n + i]
        )),
        None => Ok(()),
    }
}
