//! Batch Normalization Preconditioning (BNP; docs/THEORY.md §6, "Batch Normalization
//! Preconditioning"): running estimates of a dense layer's input statistics and the implicit
//! preconditioner `P = S Sᵀ` they define on each unit's parameters `[b_i; w_i]`.
//!
//! With `Σ = diag(sqrt(σ² + eps))` and the layer input standardized as `x̃ = Σ⁻¹(x − μ)`, a unit
//! computes `wᵀx + b = w̃ᵀx̃ + b̃` for
//!
//! ```text
//! [b; w] = S [b̃; w̃],   S = [[1, −μᵀΣ⁻¹], [0, Σ⁻¹]],   P = S Sᵀ,
//! ```
//!
//! so gradient descent on the standardized parameters `(w̃, b̃)` is preconditioned gradient
//! descent on `(w, b)` with `P` (equation (5) of THEORY.md): with `g = [∇b; ∇w]`,
//!
//! ```text
//! (P g)_w = Σ⁻² (∇w − μ ∇b),              = ∇w Σ⁻² − ∇b μᵀΣ⁻²   (a row of the weight matrix)
//! (P g)_b = ∇b − μᵀ Σ⁻² (∇w − μ ∇b),      = −μᵀΣ⁻²∇w + ∇b (1 + μᵀΣ⁻²μ)
//! ```
//!
//! [`bnp_precondition`] applies this to a whole layer in place in `O(units · d)` without forming
//! `P`; the preconditioned gradient then goes to any optimizer (SGD, Adam, …) in place of the raw
//! one, and the learning rate stays the optimizer's (BNP has none). The network itself is never
//! normalized, so training and inference compute the same function.
//!
//! # References
//!
//! - \[Lange2022\] S. Lange, K. Helfrich, Q. Ye. *Batch normalization preconditioning for neural
//!   network training.* JMLR 23(72), 2022. <https://jmlr.org/papers/v23/21-0494.html>
//! - \[West1979\] D. H. D. West. *Updating mean and variance estimates: an improved method.*
//!   CACM 22(9), 1979 (the weighted mixture update of [`BnpStats::observe`]).

use crate::error::{OptimError, Result};
use crate::float::Float;

/// Settings of BNP's running statistics: torch `BatchNorm1d`'s defaults.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BnpSpec {
    /// Weight of the new batch in the running estimates, torch convention
    /// `r ← (1 − momentum) r + momentum · batch` (default `0.1`). `0` freezes the statistics.
    pub momentum: f64,
    /// Added to the variance **inside** the square root: `Σ = diag(sqrt(σ² + eps))` (default
    /// `1e-5`, as torch's BatchNorm). `eps = 0` is accepted; a feature of zero variance then
    /// makes `Σ⁻²` infinite.
    pub eps: f64,
}

impl Default for BnpSpec {
    fn default() -> Self {
        Self {
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

impl BnpSpec {
    /// Checks `0 ≤ momentum ≤ 1` and `eps` finite and `≥ 0`.
    ///
    /// # Errors
    /// [`OptimError::InvalidStatistics`] naming the setting.
    pub fn check(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(OptimError::InvalidStatistics {
                what: "momentum",
                index: 0,
                value: self.momentum,
                reason: "must lie in [0, 1]",
            });
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(OptimError::InvalidStatistics {
                what: "eps",
                index: 0,
                value: self.eps,
                reason: "must be finite and >= 0",
            });
        }
        Ok(())
    }
}

/// Running estimates of one dense layer's input statistics (per input feature `j`): mean `μ_j`,
/// population variance `σ_j²`, and the cached `Σ⁻²_jj = 1/(σ_j² + eps)` that
/// [`bnp_precondition`] uses.
///
/// **Start.** Mean 0, variance 1 (torch's BatchNorm buffers), so before any observation `P` is
/// `diag(1, 1/(1 + eps), …)`: essentially no preconditioning. The first batch does **not**
/// overwrite the estimates, it is blended in with `momentum` like every later one. (Overwriting
/// would start a batch-size-1 run with `σ² = 0`, i.e. `Σ⁻² = 1/eps = 10⁵`, and a first step
/// `10⁵` times too large.)
///
/// **Variance.** Each batch is taken as a distribution with its mean `m` and **biased**
/// (population) variance `v`, and the running estimate is the momentum-weighted mixture of the
/// old estimate and the batch (West 1979):
///
/// ```text
/// δ = m − μ,   μ ← μ + momentum · δ,   σ² ← (1 − momentum)(σ² + momentum · δ²) + momentum · v.
/// ```
///
/// The mean follows torch's rule exactly. The variance adds to torch's
/// `(1 − momentum) σ² + momentum · v` the between-batch term `(1 − momentum) momentum δ²`: the
/// spread of the batch means. This is what makes batch size 1 work: there the batch variance is
/// always 0 (torch's running variance would decay to 0 and `Σ⁻²` to `1/eps`), and torch's
/// unbiased variance `v B/(B − 1)` is undefined; the mixture instead estimates the population
/// variance at any batch size (from the spread of the single samples). For large batches the
/// between-batch term is small and the estimate is torch's with the biased batch variance
/// (the bias `(B − 1)/B` is negligible there, and BNP wants the population scale `Σ` of
/// Theorem 6, not an unbiased estimator of it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BnpStats {
    spec: BnpSpec,
    mean: Vec<f64>,
    var: Vec<f64>,
    inv_var: Vec<f64>,
    observations: u64,
}

fn check_values(what: &'static str, v: &[f64], nonneg: bool) -> Result<()> {
    for (index, &value) in v.iter().enumerate() {
        if !value.is_finite() || (nonneg && value < 0.0) {
            return Err(OptimError::InvalidStatistics {
                what,
                index,
                value,
                reason: if nonneg {
                    "a variance must be finite and >= 0"
                } else {
                    "a mean must be finite"
                },
            });
        }
    }
    Ok(())
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(OptimError::LengthMismatch {
            what,
            expected,
            got,
        })
    }
}

impl BnpStats {
    /// Statistics of a layer with `dim` input features: mean 0, variance 1, no observation yet.
    ///
    /// # Errors
    /// [`OptimError::InvalidStatistics`] for a bad `spec` ([`BnpSpec::check`]).
    pub fn new(dim: usize, spec: BnpSpec) -> Result<Self> {
        spec.check()?;
        Ok(Self {
            spec,
            mean: vec![0.0; dim],
            var: vec![1.0; dim],
            inv_var: vec![1.0 / (1.0 + spec.eps); dim],
            observations: 0,
        })
    }

    /// Statistics set to a given mean and population variance (e.g. the exact statistics of a
    /// data set, or loaded from a checkpoint); with `momentum = 0` they stay frozen.
    ///
    /// # Errors
    /// [`OptimError::LengthMismatch`] when `var.len() != mean.len()`,
    /// [`OptimError::InvalidStatistics`] for a non-finite mean, a negative or non-finite
    /// variance, or a bad `spec`.
    pub fn from_stats(mean: &[f64], var: &[f64], spec: BnpSpec) -> Result<Self> {
        spec.check()?;
        check_len("BNP variance vs mean", mean.len(), var.len())?;
        check_values("mean", mean, false)?;
        check_values("var", var, true)?;
        let inv_var = var.iter().map(|v| 1.0 / (v + spec.eps)).collect();
        Ok(Self {
            spec,
            mean: mean.to_vec(),
            var: var.to_vec(),
            inv_var,
            observations: 0,
        })
    }

    /// Folds one batch's per-feature mean and **biased** (population) variance into the running
    /// estimates with the mixture update of [`BnpStats`]. Allocation-free.
    ///
    /// # Errors
    /// [`OptimError::LengthMismatch`] when a slice's length is not [`BnpStats::dim`],
    /// [`OptimError::InvalidStatistics`] for a non-finite mean or a negative or non-finite
    /// variance (with its index). On error nothing is changed.
    pub fn observe(&mut self, batch_mean: &[f64], batch_var: &[f64]) -> Result<()> {
        check_len("BNP batch mean", self.dim(), batch_mean.len())?;
        check_len("BNP batch variance", self.dim(), batch_var.len())?;
        check_values("batch_mean", batch_mean, false)?;
        check_values("batch_var", batch_var, true)?;
        let m = self.spec.momentum;
        let eps = self.spec.eps;
        for j in 0..self.mean.len() {
            let delta = batch_mean[j] - self.mean[j];
            self.mean[j] += m * delta;
            let v = (1.0 - m) * (self.var[j] + m * delta * delta) + m * batch_var[j];
            self.var[j] = v;
            self.inv_var[j] = 1.0 / (v + eps);
        }
        self.observations = self.observations.saturating_add(1);
        Ok(())
    }

    /// Number of input features `d`.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// The settings.
    pub fn spec(&self) -> BnpSpec {
        self.spec
    }

    /// Running mean `μ` per feature.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Running population variance `σ²` per feature.
    pub fn var(&self) -> &[f64] {
        &self.var
    }

    /// `Σ⁻²_jj = 1/(σ_j² + eps)` per feature.
    pub fn inv_var(&self) -> &[f64] {
        &self.inv_var
    }

    /// Number of batches observed so far.
    pub fn observations(&self) -> u64 {
        self.observations
    }

    /// The dense factor `S = [[1, −μᵀΣ⁻¹], [0, Σ⁻¹]]`, `(d + 1) × (d + 1)` row-major, in the
    /// order `[b; w]` (bias first). For diagnostics (`Sᵀ H S`, Theorem 6) and tests; the
    /// optimizer path never forms it ([`bnp_precondition`]).
    pub fn factor(&self) -> Vec<f64> {
        let n = self.dim() + 1;
        let mut s = vec![0.0; n * n];
        s[0] = 1.0;
        for j in 0..self.dim() {
            let inv_sd = self.inv_var[j].sqrt();
            s[j + 1] = -self.mean[j] * inv_sd;
            s[(j + 1) * n + j + 1] = inv_sd;
        }
        s
    }
}

/// Applies BNP's preconditioner `P = S Sᵀ` of `stats` in place to one dense layer's gradient:
/// for every unit `i`, `[∇b_i; ∇w_i] ← P [∇b_i; ∇w_i]`, i.e.
/// `∇w_i ← Σ⁻²(∇w_i − μ ∇b_i)` and `∇b_i ← ∇b_i − μᵀ(new ∇w_i)` (module docs, docs/THEORY.md
/// §6 BNP). One pass, `O(units · d)`, no allocation; `P` is never formed. Arithmetic is in
/// `f64`, rounded once to `T` per entry. Non-finite gradients are passed through (the optimizer's
/// non-finite policy sees them).
///
/// Layout: `grad_w` is the layer's weight gradient **row-major** `units × d` (row `i` = unit
/// `i`'s `w_i`, as torch's `Linear.weight` and precond-nn's parameter buffer), `grad_b` its bias
/// gradient (`units` entries), `d = stats.dim()`.
///
/// # Errors
/// [`OptimError::LengthMismatch`] when `grad_w.len() != grad_b.len() · stats.dim()`; nothing is
/// written then.
///
/// ```
/// use precond_optim::{BnpSpec, BnpStats, bnp_precondition};
/// // one unit, d = 1, μ = 2, σ² + eps = 4: P = [[1 + 1, −1/2], [−1/2, 1/4]]
/// let stats = BnpStats::from_stats(&[2.0], &[4.0], BnpSpec { momentum: 0.1, eps: 0.0 })?;
/// let (mut gw, mut gb) = ([1.0f64], [3.0f64]);
/// bnp_precondition(&mut gw, &mut gb, &stats)?;
/// assert!((gw[0] - (-1.25)).abs() < 1e-15 && (gb[0] - 5.5).abs() < 1e-15);
/// # Ok::<(), precond_optim::OptimError>(())
/// ```
pub fn bnp_precondition<T: Float>(
    grad_w: &mut [T],
    grad_b: &mut [T],
    stats: &BnpStats,
) -> Result<()> {
    let d = stats.dim();
    check_len(
        "BNP weight gradient (units x d)",
        grad_b.len().saturating_mul(d),
        grad_w.len(),
    )?;
    if d == 0 {
        return Ok(());
    }
    let (mu, iv) = (stats.mean(), stats.inv_var());
    for (row, gb) in grad_w.chunks_exact_mut(d).zip(grad_b.iter_mut()) {
        let b = gb.to_f64();
        let mut acc = 0.0;
        for ((g, &m), &s) in row.iter_mut().zip(mu).zip(iv) {
            let t = (g.to_f64() - m * b) * s;
            *g = T::from_f64(t);
            acc += m * t;
        }
        *gb = T::from_f64(b - acc);
    }
    Ok(())
}

impl BnpStats {
    /// [`BnpStats::from_stats`] with the observation count set (a loaded state).
    pub(crate) fn restored(
        mean: &[f64],
        var: &[f64],
        observations: u64,
        spec: BnpSpec,
    ) -> Result<Self> {
        let mut s = Self::from_stats(mean, var, spec)?;
        s.observations = observations;
        Ok(s)
    }
}
