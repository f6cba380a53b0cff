//! Linear convergence rates: Theorem 1 (gradient descent), Polyak's heavy ball, and the observed
//! rate of an error sequence (THEORY.md §1 and §4).

use crate::error::{LinalgError, Result};

/// Theorem 1: the linear rate of GD with step `eta` on a quadratic with Hessian eigenvalues in
/// `[lambda_min, lambda_max]`: `ρ(η) = max(|1 − η λ_min|, |1 − η λ_max|)`. The iteration
/// converges iff `ρ < 1`, i.e. `0 < η < 2/λ_max` (for `λ_min > 0`). A pure formula: no checks
/// (NaN in, NaN out).
///
/// # References
///
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §1, Theorem 1, (2).
/// - \[Polyak1964\] B. T. Polyak. *Some methods of speeding up the convergence of iteration
///   methods.* USSR Computational Mathematics and Mathematical Physics 4(5):1–17, 1964.
pub fn gd_rate(eta: f64, lambda_min: f64, lambda_max: f64) -> f64 {
    (1.0 - eta * lambda_min)
        .abs()
        .max((1.0 - eta * lambda_max).abs())
}

/// The optimal GD step (3): `η* = 2/(λ_min + λ_max)`.
///
/// # References
///
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §1, (3).
pub fn gd_optimal_step(lambda_min: f64, lambda_max: f64) -> f64 {
    2.0 / (lambda_min + lambda_max)
}

/// The optimal GD rate of Theorem 1: `ρ* = (κ − 1)/(κ + 1)`; `κ = ∞` gives 1 (no linear
/// convergence).
///
/// In the notation of THEORY.md: $\rho^\ast = (\kappa - 1)/(\kappa + 1)$.
///
/// # References
///
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §1, Theorem 1, (3).
/// - \[Polyak1964\] B. T. Polyak. *Some methods of speeding up the convergence of iteration
///   methods.* USSR Computational Mathematics and Mathematical Physics 4(5):1–17, 1964.
pub fn gd_optimal_rate(kappa: f64) -> f64 {
    if kappa.is_infinite() && kappa > 0.0 {
        return 1.0;
    }
    (kappa - 1.0) / (kappa + 1.0)
}

/// Polyak's optimal heavy-ball step and momentum for a spectrum `[λ_min, λ_max]`, and the rate
/// they achieve (returned by [`heavy_ball_optimal`]; not to be confused with the heavy-ball
/// momentum *rule* of the optimizers in `precond-optim`).
///
/// # References
///
/// - \[Polyak1964\] B. T. Polyak. *Some methods of speeding up the convergence of iteration
///   methods.* USSR Computational Mathematics and Mathematical Physics 4(5):1–17, 1964.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimalHeavyBall {
    /// Step `η = 4/(sqrt(λ_max) + sqrt(λ_min))²`.
    pub eta: f64,
    /// Momentum `β = ((sqrt(κ) − 1)/(sqrt(κ) + 1))²`.
    pub beta: f64,
    /// Rate `(sqrt(κ) − 1)/(sqrt(κ) + 1)` (asymptotic, per iteration).
    pub rate: f64,
}

/// Polyak's optimal heavy-ball parameters for eigenvalues in `[lambda_min, lambda_max]`
/// (THEORY.md §1, heavy-ball momentum): `x_{k+1} = x_k − η ∇f(x_k) + β (x_k − x_{k−1})`.
///
/// In the notation of THEORY.md: $\eta = 4/(\sqrt{\lambda_{\max}} + \sqrt{\lambda_{\min}})^2$ and
/// $\beta = \big((\sqrt{\kappa} - 1)/(\sqrt{\kappa} + 1)\big)^2$.
///
/// # References
///
/// - \[Polyak1964\] B. T. Polyak. *Some methods of speeding up the convergence of iteration
///   methods.* USSR Computational Mathematics and Mathematical Physics 4(5):1–17, 1964.
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §1.
pub fn heavy_ball_optimal(lambda_min: f64, lambda_max: f64) -> OptimalHeavyBall {
    let (smin, smax) = (lambda_min.sqrt(), lambda_max.sqrt());
    let rate = (smax - smin) / (smax + smin);
    OptimalHeavyBall {
        eta: 4.0 / ((smax + smin) * (smax + smin)),
        beta: rate * rate,
        rate,
    }
}

/// The heavy-ball rate `(sqrt(κ) − 1)/(sqrt(κ) + 1)` from `κ` alone (1 for `κ = ∞`); also the
/// rate of Adam with optimal momentum with `κ = κ(P^{1/2} H P^{1/2})` (THEORY.md §4).
///
/// # References
///
/// - \[Polyak1964\] B. T. Polyak. *Some methods of speeding up the convergence of iteration
///   methods.* USSR Computational Mathematics and Mathematical Physics 4(5):1–17, 1964.
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §1 and §4.
pub fn heavy_ball_optimal_rate(kappa: f64) -> f64 {
    if kappa.is_infinite() && kappa > 0.0 {
        return 1.0;
    }
    let s = kappa.sqrt();
    (s - 1.0) / (s + 1.0)
}

/// Which part of an error sequence [`observed_rate`] fits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tail {
    /// The last `k` entries (`k ≥ 2`; clipped to the sequence length).
    Last(usize),
    /// The last `⌈f · len⌉` entries, `0 < f ≤ 1`.
    Fraction(f64),
    /// The whole sequence.
    All,
}

impl From<usize> for Tail {
    fn from(k: usize) -> Self {
        Tail::Last(k)
    }
}

impl From<f64> for Tail {
    fn from(f: f64) -> Self {
        Tail::Fraction(f)
    }
}

/// A least-squares fit `log e_k ≈ c + k log ρ` over the tail of an error sequence.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RateFit {
    /// The fitted linear rate `ρ = exp(slope)` (per index step).
    pub rate: f64,
    /// The slope `log ρ` of the fit.
    pub log_rate: f64,
    /// The intercept `c` (log error at index 0 of the whole sequence).
    pub intercept: f64,
    /// Coefficient of determination of the fit (1 when the log errors are exactly linear or
    /// constant).
    pub r_squared: f64,
    /// Number of points used (after skipping zeros and underflowed values).
    pub points: usize,
    /// Index (in the full sequence) of the first entry of the tail.
    pub first_index: usize,
}

/// Fits the observed linear rate of an error sequence `e_0, e_1, …` (e.g. `‖x_k − x*‖` or
/// `f(x_k) − f*`): least squares of `log e_k` against `k` over the chosen tail (a `usize` for
/// the last `k` entries, an `f64` for a fraction, or a [`Tail`]). Entries that are zero or
/// below `f64::MIN_POSITIVE` (converged to exactly zero or underflowed) are skipped, keeping the
/// true iteration index of the others. Compare with [`gd_rate`] / [`gd_optimal_rate`].
///
/// # Errors
/// [`LinalgError::Empty`] for an empty sequence, [`LinalgError::NonFinite`] (with the index as
/// `row`), [`LinalgError::InvalidArgument`] for a negative entry, an invalid tail, or fewer
/// than two usable points.
pub fn observed_rate(errors: &[f64], tail: impl Into<Tail>) -> Result<RateFit> {
    let len = errors.len();
    if len == 0 {
        return Err(LinalgError::Empty {
            what: "error sequence",
            rows: 0,
            cols: 1,
        });
    }
    if let Some(k) = errors.iter().position(|x| !x.is_finite()) {
        return Err(LinalgError::NonFinite {
            what: "error sequence",
            row: k,
            col: 0,
            value: errors[k],
        });
    }
    if let Some(k) = errors.iter().position(|&x| x < 0.0) {
        return Err(LinalgError::InvalidArgument {
            name: "errors",
            reason: format!("entry {k} is {} but errors must be non-negative", errors[k]),
        });
    }
    let count = match tail.into() {
        Tail::All => len,
        Tail::Last(k) => {
            if k < 2 {
                return Err(LinalgError::InvalidArgument {
                    name: "tail",
                    reason: format!("Last({k}): at least 2 points are needed"),
                });
            }
            k.min(len)
        }
        Tail::Fraction(f) => {
            if !(f > 0.0 && f <= 1.0) {
                return Err(LinalgError::InvalidArgument {
                    name: "tail",
                    reason: format!("Fraction({f}) must lie in (0, 1]"),
                });
            }
            ((f * len as f64).ceil() as usize).clamp(1, len)
        }
    };
    let first = len - count;
    let pts: Vec<(f64, f64)> = errors[first..]
        .iter()
        .enumerate()
        .filter(|(_, e)| **e >= f64::MIN_POSITIVE)
        .map(|(i, e)| ((first + i) as f64, e.ln()))
        .collect();
    let np = pts.len();
    if np < 2 {
        return Err(LinalgError::InvalidArgument {
            name: "errors",
            reason: format!("only {np} positive, normal entries in the tail of {count}; need 2"),
        });
    }
    let npf = np as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / npf;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / npf;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in &pts {
        let (dx, dy) = (x - mx, y - my);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ss_res: f64 = pts
        .iter()
        .map(|&(x, y)| (y - intercept - slope * x).powi(2))
        .sum();
    let r_squared = if syy > 0.0 {
        (1.0 - ss_res / syy).clamp(0.0, 1.0)
    } else {
        1.0
    };
    Ok(RateFit {
        rate: slope.exp(),
        log_rate: slope,
        intercept,
        r_squared,
        points: np,
        first_index: first,
    })
}
