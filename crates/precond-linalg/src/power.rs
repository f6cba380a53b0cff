//! Power iteration for the dominant (largest-magnitude) eigenvalue of a symmetric operator.

use crate::error::{LinalgError, Result};
use crate::lanczos::{check_dim, check_output, random_unit};
use crate::operator::LinearOperator;

/// Options of [`power_iteration`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerOptions {
    /// Maximum number of operator applications.
    pub max_iter: usize,
    /// Stop when the residual `‖A x − θ x‖ ≤ rel_tol · |θ|` (`x` unit, `θ = xᵀAx`); for symmetric
    /// `A` the eigenvalue error is then about `rel_tol² |θ|²/gap`.
    pub rel_tol: f64,
    /// Seed of the random start vector.
    pub seed: u64,
}

impl Default for PowerOptions {
    fn default() -> Self {
        Self {
            max_iter: 10_000,
            rel_tol: 1e-8,
            seed: 0x5eed,
        }
    }
}

/// Result of [`power_iteration`].
#[derive(Debug, Clone, PartialEq)]
pub struct PowerResult {
    /// Rayleigh quotient `θ = xᵀAx`: the dominant eigenvalue (with its sign).
    pub eigenvalue: f64,
    /// The unit eigenvector estimate `x`.
    pub eigenvector: Vec<f64>,
    /// Operator applications performed.
    pub iterations: usize,
    /// The residual test was met.
    pub converged: bool,
    /// `‖A x − θ x‖`.
    pub residual: f64,
}

/// Power iteration for the largest-magnitude eigenvalue of a symmetric operator (e.g. `λ_max`
/// of a positive semidefinite Hessian: the `L` of the step size `η < 2/L` in Theorem 1).
/// Deterministic for a seed. Returns `converged = false` (not an error) after `max_iter` steps.
/// Convergence is linear with ratio `|λ₂/λ₁|`; prefer [`lanczos_extremes`](crate::lanczos_extremes)
/// when that ratio is close to 1.
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::InvalidArgument`] (`max_iter == 0`, bad `rel_tol`),
/// [`LinalgError::NonFinite`] when the operator returns NaN/∞.
pub fn power_iteration<O: LinearOperator + ?Sized>(
    op: &O,
    opts: PowerOptions,
) -> Result<PowerResult> {
    let n = op.dim();
    check_dim(n)?;
    if opts.max_iter == 0 {
        return Err(LinalgError::InvalidArgument {
            name: "max_iter",
            reason: "must be at least 1".into(),
        });
    }
    if !(opts.rel_tol.is_finite() && opts.rel_tol > 0.0) {
        return Err(LinalgError::InvalidArgument {
            name: "rel_tol",
            reason: format!("{} must be finite and positive", opts.rel_tol),
        });
    }
    let mut x = random_unit(n, opts.seed)?;
    let mut y = crate::alloc::try_vec("power iteration vector", n, 0.0)?;
    let mut theta = 0.0;
    let mut residual = f64::INFINITY;
    for it in 0..opts.max_iter {
        op.apply(&x, &mut y);
        check_output(&y, it)?;
        theta = x.iter().zip(&y).map(|(a, b)| a * b).sum::<f64>();
        residual = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (b - theta * a).powi(2))
            .sum::<f64>()
            .sqrt();
        let ynorm = y.iter().map(|v| v * v).sum::<f64>().sqrt();
        if residual <= opts.rel_tol * theta.abs() || ynorm == 0.0 {
            return Ok(PowerResult {
                eigenvalue: theta,
                eigenvector: x,
                iterations: it + 1,
                converged: true,
                residual,
            });
        }
        let inv = 1.0 / ynorm;
        x.iter_mut().zip(&y).for_each(|(xi, yi)| *xi = yi * inv);
    }
    Ok(PowerResult {
        eigenvalue: theta,
        eigenvector: x,
        iterations: opts.max_iter,
        converged: false,
        residual,
    })
}
