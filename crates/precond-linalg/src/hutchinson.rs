//! Hutchinson's stochastic trace estimator.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{LinalgError, Result};
use crate::lanczos::{check_dim, check_output};
use crate::operator::LinearOperator;

/// A Monte-Carlo estimate of `tr(A)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TraceEstimate {
    /// Sample mean of `zᵀAz`.
    pub mean: f64,
    /// Standard error of the mean (sample standard deviation / `sqrt(n_samples)`).
    pub std_error: f64,
    /// Number of probe vectors.
    pub n_samples: usize,
}

/// Hutchinson's estimator `tr(A) ≈ (1/N) Σ zₖᵀ A zₖ` with Rademacher probes `z ∈ {±1}ⁿ`
/// (unbiased; variance `2(‖A‖_F² − Σ a_ii²)` per sample for symmetric `A`). The mean trace
/// `tr(H)/n` is the average curvature. Deterministic for a seed.
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::InvalidArgument`] for `n_samples < 2` (no standard
/// error), [`LinalgError::NonFinite`] when the operator returns NaN/∞.
pub fn hutchinson_trace<O: LinearOperator + ?Sized>(
    op: &O,
    n_samples: usize,
    seed: u64,
) -> Result<TraceEstimate> {
    let n = op.dim();
    check_dim(n)?;
    if n_samples < 2 {
        return Err(LinalgError::InvalidArgument {
            name: "n_samples",
            reason: format!("{n_samples}: at least 2 samples are needed for a standard error"),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut z = crate::alloc::try_vec("Hutchinson probe vector", n, 0.0)?;
    let mut y = crate::alloc::try_vec("Hutchinson product vector", n, 0.0)?;
    let (mut mean, mut m2) = (0.0f64, 0.0f64);
    for k in 0..n_samples {
        z.iter_mut()
            .for_each(|v| *v = if rng.random::<bool>() { 1.0 } else { -1.0 });
        op.apply(&z, &mut y);
        check_output(&y, k)?;
        let s: f64 = z.iter().zip(&y).map(|(a, b)| a * b).sum();
        // Welford
        let delta = s - mean;
        mean += delta / (k + 1) as f64;
        m2 += delta * (s - mean);
    }
    let var = m2 / (n_samples - 1) as f64;
    Ok(TraceEstimate {
        mean,
        std_error: (var / n_samples as f64).sqrt(),
        n_samples,
    })
}
