//! Layer normalization (THEORY.md section 6, (29)–(31); Ba, Kiros and Hinton 2016).
//!
//! Layout: a batch is a `d × B` matrix, one column per sample; statistics are per sample (column)
//! over its `d` features: `μ_n = (1/d) Σ_j h_jn`, `s_n² = (1/d) Σ_j (h_jn − μ_n)²`,
//! `ĥ_n = (h_n − μ_n 1)/sqrt(s_n² + eps)`, `h̃_n = γ ⊙ ĥ_n + β` with `γ, β` absent, scalars, or
//! vectors ([`LayerNormAffine`]). With `eps = 0`, `1ᵀĥ_n = 0` and `‖ĥ_n‖² = d` exactly (Theorem 7);
//! a constant column with `eps = 0` normalizes to 0, never NaN. torch's `LayerNorm(d, eps)` is the
//! vector-affine case.

use crate::batch_norm::{Placement, inv_std};
use faer::{MatMut, MatRef};
use serde::{Deserialize, Serialize};

/// The affine part of a LayerNorm.
///
/// # References
///
/// - \[Ba2016\] J. L. Ba, J. R. Kiros, G. E. Hinton. *Layer normalization.* 2016.
///   <https://arxiv.org/abs/1607.06450>
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §6, Theorem 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LayerNormAffine {
    /// `h̃ = ĥ`.
    None,
    /// One learned scalar `γ` and one scalar `β` shared by all features (Theorem 7, case 1).
    Scalar,
    /// Per-feature `γ, β` (Theorem 7, case 2; torch's `elementwise_affine=True`).
    #[default]
    Vector,
}

/// Settings of a LayerNorm layer.
///
/// # References
///
/// - \[Ba2016\] J. L. Ba, J. R. Kiros, G. E. Hinton. *Layer normalization.* 2016.
///   <https://arxiv.org/abs/1607.06450>
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §6, (29)–(32).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LayerNormSpec {
    /// Before or after the activation (the theory analyzes post-activation).
    pub placement: Placement,
    /// None, scalar or vector affine.
    pub affine: LayerNormAffine,
    /// Added to the variance before the square root (torch default `1e-5`; `0` allowed).
    pub eps: f64,
}

impl Default for LayerNormSpec {
    fn default() -> Self {
        Self {
            placement: Placement::PostActivation,
            affine: LayerNormAffine::Vector,
            eps: 1e-5,
        }
    }
}

impl LayerNormAffine {
    /// Number of entries of `γ` (and of `β`) for `d` features.
    pub fn n_params(self, d: usize) -> usize {
        match self {
            LayerNormAffine::None => 0,
            LayerNormAffine::Scalar => 1,
            LayerNormAffine::Vector => d,
        }
    }
}

#[inline]
fn pick(v: &[f64], r: usize) -> f64 {
    if v.len() == 1 { v[0] } else { v[r] }
}

/// Forward pass over the columns of `x`: writes `x̂`, `y`, per-sample `1/sqrt(s² + eps)` in `inv`.
/// `gamma`/`beta` have length 1 (scalar) or `d` (vector), or are absent.
pub(crate) fn forward(
    x: MatRef<'_, f64>,
    eps: f64,
    gamma: Option<&[f64]>,
    beta: Option<&[f64]>,
    mut xhat: MatMut<'_, f64>,
    mut y: MatMut<'_, f64>,
    inv: &mut [f64],
) {
    let d = x.nrows();
    let inv_d = 1.0 / d as f64;
    for c in 0..x.ncols() {
        let col = x.col(c);
        let mean = col.iter().sum::<f64>() * inv_d;
        let var = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() * inv_d;
        let is = inv_std(var, eps);
        inv[c] = is;
        for r in 0..d {
            let h = (x[(r, c)] - mean) * is;
            xhat[(r, c)] = h;
            y[(r, c)] = match (gamma, beta) {
                (Some(g), Some(b)) => pick(g, r) * h + pick(b, r),
                _ => h,
            };
        }
    }
}

/// Backward pass; `dy` is overwritten by `dx = inv (g − mean_j g − x̂ mean_j(g x̂))`, `g = γ ⊙ dy`.
/// `dgamma`, `dbeta` (length 1 or `d`) are overwritten with `Σ dy x̂` and `Σ dy`.
pub(crate) fn backward(
    mut dy: MatMut<'_, f64>,
    xhat: MatRef<'_, f64>,
    inv: &[f64],
    gamma: Option<&[f64]>,
    dgamma: Option<&mut [f64]>,
    dbeta: Option<&mut [f64]>,
) {
    let (d, b) = (dy.nrows(), dy.ncols());
    if let (Some(dg), Some(db)) = (dgamma, dbeta) {
        dg.iter_mut().for_each(|v| *v = 0.0);
        db.iter_mut().for_each(|v| *v = 0.0);
        let scalar = dg.len() == 1;
        for c in 0..b {
            for r in 0..d {
                let k = if scalar { 0 } else { r };
                dg[k] += dy[(r, c)] * xhat[(r, c)];
                db[k] += dy[(r, c)];
            }
        }
    }
    let inv_d = 1.0 / d as f64;
    for c in 0..b {
        let mut sg = 0.0;
        let mut sgx = 0.0;
        for r in 0..d {
            let g = gamma.map_or(1.0, |g| pick(g, r)) * dy[(r, c)];
            sg += g;
            sgx += g * xhat[(r, c)];
        }
        for r in 0..d {
            let g = gamma.map_or(1.0, |g| pick(g, r)) * dy[(r, c)];
            dy[(r, c)] = inv[c] * (g - inv_d * sg - xhat[(r, c)] * inv_d * sgx);
        }
    }
}
