//! The conditioning of a data set's extended data matrix (THEORY.md §6, (22)–(23), Theorem 6),
//! wrapping `precond_nn::DataConditioning`.

use precond_nn::{DataConditioning, NnError};

use crate::diagnostics::{disjoint, read_matrix};
use crate::ptr::out_ref;
use crate::status::{FfiError, boundary, precond_status_t};

impl From<NnError> for FfiError {
    fn from(e: NnError) -> Self {
        use precond_status_t as S;
        let status = match &e {
            NnError::DimensionMismatch { .. } => S::PRECOND_DIMENSION_MISMATCH,
            NnError::NonFinite { .. } => S::PRECOND_NON_FINITE,
            NnError::Numerical { .. } => S::PRECOND_NUMERICAL_FAILURE,
            _ => S::PRECOND_INVALID_ARGUMENT,
        };
        FfiError::new(status, e.to_string())
    }
}

/// Condition numbers of the extended data matrix `X̄ = [1ᵀ; X]` (`(d + 1) × N`, one column per
/// sample, the row of ones first) under the input transformations of THEORY.md §6
/// (`precond_dataset_kappa`). `κ` is the 2-norm condition number, `INFINITY` when numerically
/// rank deficient (e.g. a constant feature after centring).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct precond_dataset_kappa_t {
    /// `κ(X̄)` of the raw data.
    pub kappa_raw: f64,
    /// `κ([1ᵀ; X − μ1ᵀ])`, centred features ((22): centring does not worsen `κ`).
    pub kappa_centred: f64,
    /// `κ(X̄̃)`, standardized features `(x − μ)/s` (population variance).
    pub kappa_standardized: f64,
    /// `κ` after min-max normalization `(x − min)/(max − min)`.
    pub kappa_min_max: f64,
    /// `κ(D_0 X̄)`, `D_0 = diag(1/‖row_i(X̄)‖)`: the Van der Sluis row scaling of the raw data
    /// (Theorem 2).
    pub kappa_van_der_sluis: f64,
    /// `sqrt(d + 1)`: Theorem 6 (23) states `kappa_standardized ≤ sqrt(d + 1) · κ(D X̄)` for
    /// every positive diagonal `D`, so `kappa_standardized / sqrt_d_plus_1` is a lower bound on
    /// the best row scaling of the raw data.
    pub sqrt_d_plus_1: f64,
}

/// Computes the condition numbers of the extended data matrix of a data set (Theorem 6): `x`
/// holds `n_samples × n_features` values, **one row per sample** (as in a CSV file), stored
/// with `layout`. Standardization and min-max statistics are computed from `x` itself.
///
/// Ownership: reads `x`, writes `*out`. Thread-safety: may be called concurrently.
/// Cost: five SVDs of `(n_features + 1) × n_samples` matrices.
///
/// Errors: `PRECOND_NULL_POINTER` (`x`, `out`), `PRECOND_INVALID_ARGUMENT` (bad `layout`, a zero
/// dimension), `PRECOND_DIMENSION_MISMATCH` (size overflow), `PRECOND_NON_FINITE` (naming sample
/// and feature), `PRECOND_NUMERICAL_FAILURE` (SVD failure). `*out` is written only on success.
///
/// # Safety
/// `x` must point to `n_samples*n_features` readable doubles, `out` to a writable
/// `precond_dataset_kappa_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn precond_dataset_kappa(
    x: *const f64,
    n_samples: usize,
    n_features: usize,
    layout: i32,
    out: *mut precond_dataset_kappa_t,
) -> precond_status_t {
    boundary("precond_dataset_kappa", || {
        // rows = samples, columns = features; non-finite entries are named (sample, feature)
        // SAFETY: caller contract: `x` points to `n_samples*n_features` readable doubles.
        let (m, _) = unsafe { read_matrix(&x, n_samples, n_features, layout, "x")? };
        disjoint(m, out, 1, "out")?;
        // SAFETY: caller contract: `out` is writable; disjoint from `x` (checked).
        let out = unsafe { out_ref(&out, "out")? };
        let xt = m.transpose().to_owned(); // d × N, one column per sample
        let c = DataConditioning::of(xt.as_ref())?;
        *out = precond_dataset_kappa_t {
            kappa_raw: c.raw,
            kappa_centred: c.centred,
            kappa_standardized: c.standardized,
            kappa_min_max: c.min_max,
            kappa_van_der_sluis: c.van_der_sluis,
            sqrt_d_plus_1: c.sqrt_d1,
        };
        Ok(())
    })
}
