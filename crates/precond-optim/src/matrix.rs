//! What a matrix preconditioner looks like from outside: [`MatrixPreconditioner`], returned by
//! [`crate::Optimizer::matrix_preconditioner`] for a group run by Muon, Shampoo or SOAP
//! (THEORY.md §7).
//!
//! Every matrix is row-major, whatever the group's storage order; `rows × cols` is the group's
//! shape. For a block (rows `r`, columns `c` of the parameter matrix) with left multiplier `Lm`
//! (`r × r`) and right multiplier `Rm` (`c × c`), the preconditioned direction before any
//! grafting or learning-rate adjustment is `Lm · G · Rm`; on the row-major `vec(G)` that is the
//! Kronecker preconditioner `P = Lm ⊗ Rm` (on the column-major one `Rm ⊗ Lm`).

use crate::kind::OptimizerKind;
use std::ops::Range;

/// One block of a matrix preconditioner (Shampoo splits dimensions larger than
/// `max_preconditioner_dim`; Muon and SOAP have one block).
#[derive(Clone, Debug, PartialEq)]
pub struct PreconditionerBlock {
    /// The block's rows in the parameter matrix.
    pub rows: Range<usize>,
    /// The block's columns in the parameter matrix.
    pub cols: Range<usize>,
    /// Left multiplier `Lm` (`r × r`), `None` when the rows are not preconditioned.
    /// Shampoo: `(L̂ + εI)^{-1/4}`; Muon: the implied `(BBᵀ)^{-1/2}` (wide or square matrices).
    pub left: Option<Vec<f64>>,
    /// Right multiplier `Rm` (`c × c`). Shampoo: `(R̂ + εI)^{-1/4}`; Muon: `(BᵀB)^{-1/2}` (tall).
    pub right: Option<Vec<f64>>,
    /// The left statistic the multiplier comes from (Shampoo's and SOAP's `L = Σ/EMA G Gᵀ`).
    pub left_factor: Option<Vec<f64>>,
    /// The right statistic (`R = Σ/EMA GᵀG`).
    pub right_factor: Option<Vec<f64>>,
    /// SOAP: the eigenbasis `Q_L` of `L` (columns, `r × r`).
    pub left_basis: Option<Vec<f64>>,
    /// SOAP: the eigenbasis `Q_R` of `R` (columns, `c × c`).
    pub right_basis: Option<Vec<f64>>,
    /// SOAP: Adam's diagonal `1/(sqrt(v̂) + eps)` in the rotated basis (`r × c`, row-major): the
    /// preconditioner is `G ↦ Q_L (D ⊙ (Q_Lᵀ G Q_R)) Q_Rᵀ`.
    pub diagonal: Option<Vec<f64>>,
}

impl PreconditionerBlock {
    /// A block with no multiplier yet.
    pub(crate) fn new(rows: Range<usize>, cols: Range<usize>) -> Self {
        PreconditionerBlock {
            rows,
            cols,
            left: None,
            right: None,
            left_factor: None,
            right_factor: None,
            left_basis: None,
            right_basis: None,
            diagonal: None,
        }
    }
}

/// The current preconditioner of one matrix group.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixPreconditioner {
    /// Which optimizer.
    pub optimizer: OptimizerKind,
    /// Rows of the parameter matrix.
    pub rows: usize,
    /// Columns of the parameter matrix.
    pub cols: usize,
    /// The blocks, row-block-major.
    pub blocks: Vec<PreconditionerBlock>,
}
