//! Batch normalization (THEORY.md section 6, "BatchNorm"; Ioffe and Szegedy 2015).
//!
//! Layout: a batch is a `d × B` matrix, **one column per sample**; statistics are per feature (row)
//! over the batch:
//! `μ_j = (1/B) Σ_n x_jn`, `s_j² = (1/B) Σ_n (x_jn − μ_j)²` (population variance),
//! `x̂ = (x − μ)/sqrt(s² + eps)`, `y = γ ⊙ x̂ + β` (`γ = 1, β = 0` when not affine).
//! Running averages follow torch's `BatchNorm1d` convention exactly:
//! `running = (1 − momentum) running + momentum · batch`, with the **unbiased** batch variance
//! `s² B/(B − 1)` in the running variance (initial mean 0, variance 1).
//! If `s² + eps = 0` (a constant feature with `eps = 0`) the normalized value is defined as 0, never NaN.

use crate::util::{col_slice, col_slice_mut};
use faer::{MatMut, MatRef};
use serde::{Deserialize, Serialize};

/// Where a normalization sits relative to the activation.
///
/// # References
///
/// - \[Ioffe2015\] S. Ioffe, C. Szegedy. *Batch normalization: accelerating deep network training
///   by reducing internal covariate shift.* ICML 2015. <https://arxiv.org/abs/1502.03167>
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §6, BatchNorm and LayerNorm
///   (post-activation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// `h = N(σ(W h_prev + b))`: the placement Theorem 5–7 analyze (normalization of `A`).
    #[default]
    PostActivation,
    /// `h = σ(N(W h_prev + b))`: the placement of the original BatchNorm paper.
    PreActivation,
}

/// How the backward pass treats the batch statistics in training mode.
///
/// # References
///
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §6, (28).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StatsGradient {
    /// Differentiate through `μ_B` and `s_B` (the true gradient, as torch).
    #[default]
    Full,
    /// Treat `μ_B`, `s_B` as constants (the theory's assumption behind (28)):
    /// `dx = γ dy / sqrt(s² + eps)`.
    Constant,
}

/// Settings of a BatchNorm layer.
///
/// # References
///
/// - \[Ioffe2015\] S. Ioffe, C. Szegedy. *Batch normalization: accelerating deep network training
///   by reducing internal covariate shift.* ICML 2015. <https://arxiv.org/abs/1502.03167>
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §6, (25)–(28).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchNormSpec {
    /// Before or after the activation.
    pub placement: Placement,
    /// Learn a per-feature gain `γ` and shift `β`.
    pub affine: bool,
    /// Added to the variance before the square root (torch default `1e-5`).
    pub eps: f64,
    /// Running-average momentum, torch convention (default `0.1`).
    pub momentum: f64,
    /// Full backward through the batch statistics or statistics as constants.
    pub stats_gradient: StatsGradient,
}

impl Default for BatchNormSpec {
    fn default() -> Self {
        Self {
            placement: Placement::PostActivation,
            affine: true,
            eps: 1e-5,
            momentum: 0.1,
            stats_gradient: StatsGradient::Full,
        }
    }
}

/// Per-feature mean and **population** variance of a batch (or of the running averages).
///
/// # References
///
/// - \[Ioffe2015\] S. Ioffe, C. Szegedy. *Batch normalization: accelerating deep network training
///   by reducing internal covariate shift.* ICML 2015. <https://arxiv.org/abs/1502.03167>
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormStats {
    /// Mean per feature.
    pub mean: Vec<f64>,
    /// Variance per feature.
    pub var: Vec<f64>,
}

impl NormStats {
    /// Statistics of the rows of a `d × B` batch (population variance).
    pub fn of_batch(x: MatRef<'_, f64>) -> NormStats {
        let mut s = NormStats {
            mean: Vec::new(),
            var: Vec::new(),
        };
        s.set_of_batch(x);
        s
    }

    /// Overwrites `self` with the statistics of the rows of `x` (as [`NormStats::of_batch`]),
    /// reusing the vectors' storage.
    pub(crate) fn set_of_batch(&mut self, x: MatRef<'_, f64>) {
        let (d, b) = (x.nrows(), x.ncols());
        let mean = &mut self.mean;
        mean.clear();
        mean.resize(d, 0.0);
        for c in 0..b {
            let col = x.col(c);
            for (m, v) in mean.iter_mut().zip(col.iter()) {
                *m += *v;
            }
        }
        let inv_b = 1.0 / b.max(1) as f64;
        mean.iter_mut().for_each(|m| *m *= inv_b);
        let var = &mut self.var;
        var.clear();
        var.resize(d, 0.0);
        for c in 0..b {
            let col = x.col(c);
            for ((s, v), m) in var.iter_mut().zip(col.iter()).zip(mean.iter()) {
                let t = *v - *m;
                *s += t * t;
            }
        }
        var.iter_mut().for_each(|s| *s *= inv_b);
    }

    /// Overwrites `self` with `other`, reusing the vectors' storage.
    pub(crate) fn set_from(&mut self, mean: &[f64], var: &[f64]) {
        self.mean.clear();
        self.mean.extend_from_slice(mean);
        self.var.clear();
        self.var.extend_from_slice(var);
    }

    /// Overwrites `self` with mean 0 and variance 1 for `d` features (the statistics of a layer
    /// without running averages), reusing the vectors' storage.
    pub(crate) fn set_identity(&mut self, d: usize) {
        self.mean.clear();
        self.mean.resize(d, 0.0);
        self.var.clear();
        self.var.resize(d, 1.0);
    }
}

/// Running averages of a BatchNorm layer (torch's `running_mean`, `running_var`).
///
/// # References
///
/// - \[Ioffe2015\] S. Ioffe, C. Szegedy. *Batch normalization: accelerating deep network training
///   by reducing internal covariate shift.* ICML 2015. <https://arxiv.org/abs/1502.03167>
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningStats {
    /// Running mean (starts at 0).
    pub mean: Vec<f64>,
    /// Running **unbiased** variance (starts at 1).
    pub var: Vec<f64>,
    /// Number of batches folded in.
    pub batches: u64,
}

impl RunningStats {
    /// Fresh running statistics for `d` features.
    pub fn new(d: usize) -> Self {
        Self {
            mean: vec![0.0; d],
            var: vec![1.0; d],
            batches: 0,
        }
    }

    /// Folds in one batch of size `batch_size` with torch's momentum convention
    /// (`running = (1 − m) running + m batch`, unbiased variance `s² B/(B − 1)`; for `B = 1` the
    /// biased variance is used).
    pub fn update(&mut self, batch: &NormStats, batch_size: usize, momentum: f64) {
        let unbias = if batch_size > 1 {
            batch_size as f64 / (batch_size - 1) as f64
        } else {
            1.0
        };
        for (r, m) in self.mean.iter_mut().zip(&batch.mean) {
            *r = (1.0 - momentum) * *r + momentum * m;
        }
        for (r, v) in self.var.iter_mut().zip(&batch.var) {
            *r = (1.0 - momentum) * *r + momentum * v * unbias;
        }
        self.batches += 1;
    }

    /// The running averages as statistics to normalize with.
    pub fn as_stats(&self) -> NormStats {
        NormStats {
            mean: self.mean.clone(),
            var: self.var.clone(),
        }
    }
}

/// `1/sqrt(var + eps)`, or 0 when `var + eps = 0` (so a constant feature normalizes to 0).
#[inline]
pub(crate) fn inv_std(var: f64, eps: f64) -> f64 {
    let s = var + eps;
    if s > 0.0 { 1.0 / s.sqrt() } else { 0.0 }
}

/// Forward pass: writes `x̂` and `y = γ ⊙ x̂ + β` for the rows of `x` given the statistics;
/// fills `inv` with `1/sqrt(var + eps)` per feature. `xhat` and `y` must be column-major
/// (contiguous columns, as every owned [`faer::Mat`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    x: MatRef<'_, f64>,
    stats: &NormStats,
    eps: f64,
    gamma: Option<&[f64]>,
    beta: Option<&[f64]>,
    mut xhat: MatMut<'_, f64>,
    mut y: MatMut<'_, f64>,
    inv: &mut [f64],
) {
    let d = x.nrows();
    for (i, v) in inv.iter_mut().zip(&stats.var) {
        *i = inv_std(*v, eps);
    }
    let (mean, inv) = (&stats.mean[..d], &inv[..d]);
    for c in 0..x.ncols() {
        let xc = x.col(c);
        let hc = col_slice_mut(xhat.as_mut(), c);
        for (((h, xv), m), i) in hc.iter_mut().zip(xc.iter()).zip(mean).zip(inv) {
            *h = (*xv - *m) * *i;
        }
        let hc = col_slice(xhat.as_ref(), c);
        let yc = col_slice_mut(y.as_mut(), c);
        match (gamma, beta) {
            (Some(g), Some(b)) => {
                for (((yv, h), g), b) in yc.iter_mut().zip(hc).zip(&g[..d]).zip(&b[..d]) {
                    *yv = g * h + b;
                }
            }
            _ => yc.copy_from_slice(hc),
        }
    }
}

/// Backward pass. `dy` is overwritten by `dx`. With `full = true` the gradient flows through the
/// batch statistics: `dx = inv (g − mean_n g − x̂ mean_n(g x̂))`, `g = γ dy`; otherwise
/// `dx = inv g`. Accumulates nothing: `dgamma`, `dbeta` are overwritten (`Σ_n dy x̂`, `Σ_n dy`).
/// `sum_g`, `sum_gx`, `scale` are scratch of any length (resized to `d`, storage reused). `dy`
/// and `xhat` must be column-major.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    mut dy: MatMut<'_, f64>,
    xhat: MatRef<'_, f64>,
    inv: &[f64],
    gamma: Option<&[f64]>,
    full: bool,
    dgamma: Option<&mut [f64]>,
    dbeta: Option<&mut [f64]>,
    sum_g: &mut Vec<f64>,
    sum_gx: &mut Vec<f64>,
    scale: &mut Vec<f64>,
) {
    let (d, b) = (dy.nrows(), dy.ncols());
    sum_g.clear();
    sum_g.resize(d, 0.0);
    sum_gx.clear();
    sum_gx.resize(d, 0.0);
    for c in 0..b {
        let dc = col_slice(dy.as_ref(), c);
        let hc = col_slice(xhat, c);
        for (((sg, sgx), v), h) in sum_g.iter_mut().zip(sum_gx.iter_mut()).zip(dc).zip(hc) {
            *sg += *v;
            *sgx += *v * *h;
        }
    }
    if let Some(dg) = dgamma {
        dg.copy_from_slice(sum_gx);
    }
    if let Some(db) = dbeta {
        db.copy_from_slice(sum_g);
    }
    // per-feature factors, so the pass over the batch is one branch-free, vectorizable loop:
    // dx = s (dy − mean_n g − x̂ mean_n(g x̂)) with s = γ inv (or s dy without the statistics)
    let inv_b = 1.0 / b as f64;
    scale.clear();
    match gamma {
        Some(g) => scale.extend(g[..d].iter().zip(&inv[..d]).map(|(g, i)| g * i)),
        None => scale.extend_from_slice(&inv[..d]),
    }
    sum_g.iter_mut().for_each(|v| *v *= inv_b);
    sum_gx.iter_mut().for_each(|v| *v *= inv_b);
    for c in 0..b {
        let hc = col_slice(xhat, c);
        let dc = col_slice_mut(dy.as_mut(), c);
        if full {
            for ((((v, h), s), mg), mgx) in dc
                .iter_mut()
                .zip(hc)
                .zip(scale.iter())
                .zip(sum_g.iter())
                .zip(sum_gx.iter())
            {
                *v = s * (*v - mg - *h * mgx);
            }
        } else {
            for (v, s) in dc.iter_mut().zip(scale.iter()) {
                *v *= s;
            }
        }
    }
}
