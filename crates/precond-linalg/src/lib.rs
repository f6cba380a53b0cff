//! Conditioning diagnostics on faer (THEORY.md sections 1–4).
//!
//! * exact condition numbers ([`cond2`], [`cond1`]) and symmetric spectra ([`sym_spectrum`],
//!   with the smallest positive eigenvalue; the fast [`sym_cond()`] / [`sym_extremes`]),
//! * cheap Hager–Higham 1-norm estimates on an LU or Cholesky factor ([`cond_estimate_lu`],
//!   [`cond_estimate_spd`]),
//! * preconditioned condition numbers `κ(SᵀHS)` and the row-scaled `κ(PH)`
//!   ([`precond_cond_diag`], [`precond_cond_dense`], [`precond_cond_factor`]),
//! * equilibration, Theorem 2 and Corollary 1 ([`row_equilibrate`], [`sym_equilibrate`],
//!   [`scaling_spread`], [`van_der_sluis_bound`]),
//! * rates of Theorem 1 and heavy-ball momentum ([`heavy_ball_optimal`]), and the observed rate
//!   of an error sequence ([`observed_rate`]),
//! * building blocks of the matrix preconditioners (THEORY.md §7: Shampoo, SOAP, Muon), allocation
//!   free after setup: exactly symmetric products `βC + αXXᵀ`, `XᵀX`, `A·A` in `f32`/`f64`
//!   ([`gram_into`], [`gram_t_into`], [`sym_square_into`]), the inverse root `(A + εI)^(−1/root)`
//!   and the eigenbasis of a symmetric factor in a reusable [`SymEigWorkspace`]
//!   ([`sym_inverse_root_into`], [`sym_eigh_into`]), and `κ(P^{1/2} H P^{1/2})` under a Kronecker
//!   preconditioner `X ↦ L X R` ([`kron_precond_cond`], matrix-free [`KronPreconditioned`]),
//! * matrix-free spectra: [`lanczos_extremes`], [`power_iteration`], [`hutchinson_trace`] on any
//!   [`LinearOperator`].
//!
//! Tuning values (when the two-stage reductions take over, band widths, the accuracy of
//! [`sym_cond()`](fn@sym_cond)'s Lanczos path, the rank threshold of [`cond2`]) are `*Params`
//! structs with [`Default`] ([`SymSpectrumParams`], [`SvdParams`], [`Cond2Params`],
//! [`SymCondParams`]) taken by the `*_with_params` variants; the algorithms behind the automatic
//! choices are in [`kernel`].
//!
//! Every fallible function returns [`LinalgError`]; nothing panics on bad input.
//!
//! Allocation failure is an error, not an abort: the copies, factors and workspaces of the
//! dense diagnostics (whose sizes follow from the input) are requested fallibly, and a refusal
//! is [`LinalgError::OutOfMemory`] naming the buffer and its size. One allocation inside faer
//! stays infallible: its matrix-product kernel reserves a per-thread packing buffer (twice the
//! L3 cache size, address space only) on a thread's first large product.
//!
//! Scale-safe: the dense diagnostics (SVDs, symmetric eigensolvers, norms, 1-norm condition
//! numbers and estimates, preconditioned spectra, equilibration) divide a matrix whose largest
//! entry is outside `[2⁻¹²⁸, 2¹²⁹)` by a power of two (exact) before computing, and multiply
//! eigenvalues and singular values back; condition numbers are scale-free. Matrices of tiny,
//! subnormal or huge entries therefore get the answer of the same matrix at moderate scale
//! (`κ(2ᵏA) = κ(A)`, `λ(2ᵏH) = 2ᵏλ(H)` to rounding), and a result that does not fit in an
//! `f64` (an eigenvalue beyond `f64::MAX`) is refused with [`LinalgError::Overflow`], never
//! returned as `±∞` or NaN. The scaling is one `O(n²)` pass beside `O(n³)` algorithms, and is
//! skipped for matrices already in the safe range. The matrix-free routines
//! ([`lanczos_extremes`], [`power_iteration`], [`hutchinson_trace`]) see only the caller's
//! operator and are not rescaled.
//!
//! ```
//! use precond_linalg::{Layout, mat_from_slice, precond_cond_diag, sym_equilibrate};
//!
//! // A badly scaled SPD Hessian (row-major), and the diagonal preconditioner P = diag(1/h_ii).
//! let h = mat_from_slice(&[100.0, 1.0, 1.0, 0.02], 2, 2, Layout::RowMajor)?;
//! let p = [1.0 / 100.0, 1.0 / 0.02];
//! let pc = precond_cond_diag(h.as_ref(), &p)?;
//! let kappa_h = precond_linalg::sym_spectrum(h.as_ref())?.kappa;
//! assert!(pc.spectral_kappa < kappa_h / 100.0); // κ(SᵀHS) ≪ κ(H): the rate of (5) improves
//! // the same preconditioner as a symmetric (Jacobi) equilibration, diag(d) H diag(d):
//! let eq = sym_equilibrate(h.as_ref())?;
//! assert!((eq.scaled[(0, 0)] - 1.0).abs() < 1e-15);
//! # Ok::<(), precond_linalg::LinalgError>(())
//! ```

mod alloc;
mod condition;
mod dense;
mod equilibration;
mod error;
mod estimate;
mod hutchinson;
mod kron;
mod lanczos;
mod layout;
mod operator;
mod params;
mod pool;
mod power;
mod preconditioned;
mod rates;
mod scaling;
mod spectrum;
mod sym_cond;
mod sym_root;
mod symprod;
mod sytrd;
mod triangle;
mod tridiag_dc;
mod tridiagonal;
mod two_stage;

pub use condition::{
    Cond2, cond1, cond2, cond2_with_params, norm1, singular_values, singular_values_with_params,
};
pub use equilibration::{
    Equilibration, VanDerSluis, col_equilibrate, col_norms, row_equilibrate, row_norms,
    scaling_spread, sym_equilibrate, van_der_sluis_bound,
};
pub use error::{LinalgError, Result};
pub use estimate::{
    CondEstimate, cond_estimate_from_llt, cond_estimate_from_lu, cond_estimate_lu,
    cond_estimate_spd,
};
pub use hutchinson::{TraceEstimate, hutchinson_trace};
pub use kron::{KronPreconditioned, kron_precond_cond};
pub use lanczos::{LanczosOptions, LanczosResult, lanczos_extremes};
pub use layout::{Layout, check_finite, mat_from_slice, mat_view_from_slice};
pub use operator::{DenseOperator, LinearOperator};
pub use params::{Cond2Params, SvdParams, SymCondParams, SymSpectrumParams};
pub use power::{PowerOptions, PowerResult, power_iteration};
pub use preconditioned::{
    PreconditionedCond, precond_cond_dense, precond_cond_diag, precond_cond_factor,
};
pub use rates::{
    OptimalHeavyBall, RateFit, Tail, gd_optimal_rate, gd_optimal_step, gd_rate, heavy_ball_optimal,
    heavy_ball_optimal_rate, observed_rate,
};
pub use spectrum::{
    SymExtremes, SymSpectrum, default_spectrum_rel_tol, sym_extremes, sym_extremes_with_params,
    sym_spectrum, sym_spectrum_with_params, sym_spectrum_with_tol,
};
pub use sym_cond::{sym_cond, sym_cond_with_params};
pub use sym_root::{RootInfo, SymEigWorkspace, sym_eigh_into, sym_inverse_root_into};
pub use symprod::{
    SymScalar, gram_into, gram_pair_into, gram_t_into, product_into, sym_square_into,
    transpose_into,
};

/// Building blocks behind the automatic choices of the crate root, for benchmarks and for
/// users who want one algorithm at any size: the two-stage reductions (dense → band →
/// tridiagonal or bidiagonal, LAPACK's `DSYEVD_2STAGE` design) with an explicit band width,
/// the blocked one-stage tridiagonalization (LAPACK `DSYTRD`) with an explicit panel width, and
/// the tridiagonal eigensolvers (values only, LAPACK `DSTERF`; values and vectors by divide and
/// conquer, LAPACK `DSTEDC`). The
/// root functions ([`sym_spectrum`], [`cond2`], …) pick between these (and faer's one-stage
/// bidiagonalization for small SVDs) by size ([`SymSpectrumParams`], [`SvdParams`]).
pub mod kernel {
    pub use crate::sytrd::sym_eigenvalues_blocked;
    pub use crate::tridiag_dc::tridiagonal_eigh_checked as tridiagonal_eigh;
    pub use crate::two_stage::tridiagonal_eigenvalues_checked as tridiagonal_eigenvalues;
    pub use crate::two_stage::{singular_values_two_stage, sym_eigenvalues_two_stage};
}
