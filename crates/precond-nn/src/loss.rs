//! Losses `ℓ(F(x_n; θ), y_n)` of the mean loss (15) `L(θ) = (1/N) Σ_n ℓ(F(x_n; θ), y_n)`,
//! and the targets they compare against.
//!
//! Conventions (the network output is `O`, `k × N`, one column per sample):
//! - [`Loss::Mse`]: `L = (1/(2N)) Σ_n ‖o_n − y_n‖²` (the `1/(2N)` of (19), so `D = I`).
//! - [`Loss::BceWithLogits`]: `L = (1/N) Σ_n Σ_j [softplus(o_jn) − y_jn o_jn]`, i.e. binary
//!   cross-entropy of `σ(o)` against `y ∈ [0, 1]`: mean over samples, **sum** over the `k` outputs
//!   (torch's `BCEWithLogitsLoss(reduction="mean")` also divides by `k`; the two agree for `k = 1`).
//! - [`Loss::SoftmaxCrossEntropy`]: `L = (1/N) Σ_n [logsumexp(o_n) − o_{y_n, n}]` with integer labels.

use crate::activation::{sigmoid, softplus};
use crate::error::{NnError, Result};
use faer::{Mat, MatMut, MatRef};
use serde::{Deserialize, Serialize};

/// The loss function of a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Mean squared error with the factor `1/(2N)`.
    Mse,
    /// Binary cross-entropy on logits (sigmoid applied inside the loss).
    BceWithLogits,
    /// Softmax cross-entropy on logits with integer class labels.
    SoftmaxCrossEntropy,
}

/// Targets of a data set: one column (or label) per sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Real-valued targets, `k × N` (one column per sample). Used by MSE and (with entries in
    /// `[0, 1]`) by binary cross-entropy.
    Values(Mat<f64>),
    /// Integer class labels `0..n_classes`, one per sample. Used by softmax cross-entropy, and by
    /// binary cross-entropy when `n_classes == 2` and the network has one output.
    Classes {
        /// Label of each sample.
        labels: Vec<usize>,
        /// Number of classes.
        n_classes: usize,
    },
}

impl Targets {
    /// Number of samples.
    pub fn n_samples(&self) -> usize {
        match self {
            Targets::Values(m) => m.ncols(),
            Targets::Classes { labels, .. } => labels.len(),
        }
    }

    /// Every index must be `< n_samples()`.
    fn check_indices(&self, indices: &[usize]) -> Result<()> {
        let n = self.n_samples();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(NnError::DimensionMismatch {
                what: "sample index vs number of samples",
                expected: n,
                got: bad,
            });
        }
        Ok(())
    }

    /// The targets of the given samples, in the given order.
    ///
    /// Indices must be `< n_samples()`; an out-of-range index is an error.
    pub fn gather(&self, indices: &[usize]) -> Result<Targets> {
        self.check_indices(indices)?;
        Ok(match self {
            Targets::Values(m) => {
                Targets::Values(Mat::from_fn(m.nrows(), indices.len(), |r, c| {
                    m[(r, indices[c])]
                }))
            }
            Targets::Classes { labels, n_classes } => Targets::Classes {
                labels: indices.iter().map(|&i| labels[i]).collect(),
                n_classes: *n_classes,
            },
        })
    }

    /// As [`Targets::gather`], into `out` (its storage reused when it is the same kind of
    /// targets: no allocation once it has held this many samples).
    ///
    /// # Errors
    /// As [`Targets::gather`] (an index out of range); `out` is then unchanged.
    pub fn gather_into(&self, indices: &[usize], out: &mut Targets) -> Result<()> {
        self.check_indices(indices)?;
        match (self, out) {
            (Targets::Values(m), Targets::Values(o)) => {
                crate::util::fit(o, m.nrows(), indices.len());
                for (k, &i) in indices.iter().enumerate() {
                    o.col_mut(k).copy_from(m.col(i));
                }
            }
            (
                Targets::Classes { labels, n_classes },
                Targets::Classes {
                    labels: ol,
                    n_classes: on,
                },
            ) => {
                ol.clear();
                ol.extend(indices.iter().map(|&i| labels[i]));
                *on = *n_classes;
            }
            (_, out) => *out = self.gather(indices)?,
        }
        Ok(())
    }

    /// Target of output `j` of sample `n` as a real number (labels as `0.0`/`1.0` for BCE).
    #[inline]
    fn value(&self, j: usize, n: usize) -> f64 {
        match self {
            Targets::Values(m) => m[(j, n)],
            Targets::Classes { labels, .. } => labels[n] as f64,
        }
    }
}

impl Loss {
    /// Checks that `targets` fit this loss for a network with `k` outputs and `n` samples.
    pub fn check_targets(self, targets: &Targets, k: usize, n: usize) -> Result<()> {
        if targets.n_samples() != n {
            return Err(NnError::DimensionMismatch {
                what: "number of targets vs number of samples",
                expected: n,
                got: targets.n_samples(),
            });
        }
        match (self, targets) {
            (Loss::Mse, Targets::Values(m)) | (Loss::BceWithLogits, Targets::Values(m)) => {
                if m.nrows() != k {
                    return Err(NnError::DimensionMismatch {
                        what: "target rows vs network outputs",
                        expected: k,
                        got: m.nrows(),
                    });
                }
                for c in 0..m.ncols() {
                    for r in 0..m.nrows() {
                        let v = m[(r, c)];
                        if !v.is_finite() {
                            return Err(NnError::NonFinite {
                                what: "targets",
                                row: r,
                                col: c,
                                value: v,
                            });
                        }
                        if self == Loss::BceWithLogits && !(0.0..=1.0).contains(&v) {
                            return Err(NnError::TargetMismatch {
                                reason: format!("BCE target {v} at ({r}, {c}) is outside [0, 1]"),
                            });
                        }
                    }
                }
                Ok(())
            }
            (Loss::BceWithLogits, Targets::Classes { labels, n_classes }) => {
                if *n_classes != 2 || k != 1 {
                    return Err(NnError::TargetMismatch {
                        reason: format!(
                            "BCE with class labels needs 2 classes and 1 output, got {n_classes} classes and {k} outputs"
                        ),
                    });
                }
                check_labels(labels, 2)
            }
            (Loss::SoftmaxCrossEntropy, Targets::Classes { labels, n_classes }) => {
                if *n_classes != k {
                    return Err(NnError::DimensionMismatch {
                        what: "number of classes vs network outputs",
                        expected: k,
                        got: *n_classes,
                    });
                }
                check_labels(labels, k)
            }
            (Loss::Mse, Targets::Classes { .. }) => Err(NnError::TargetMismatch {
                reason: "MSE needs real-valued targets (Targets::Values)".into(),
            }),
            (Loss::SoftmaxCrossEntropy, Targets::Values(_)) => Err(NnError::TargetMismatch {
                reason: "softmax cross-entropy needs class labels (Targets::Classes)".into(),
            }),
        }
    }

    /// Per-sample losses `ℓ_n` (without the `1/N`), one per column of `out`.
    /// Targets must have been checked with [`Loss::check_targets`].
    pub fn per_sample(self, out: MatRef<'_, f64>, targets: &Targets) -> Vec<f64> {
        (0..out.ncols())
            .map(|n| self.sample_loss(out, targets, n))
            .collect()
    }

    fn sample_loss(self, out: MatRef<'_, f64>, targets: &Targets, n: usize) -> f64 {
        let k = out.nrows();
        match self {
            Loss::Mse => (0..k)
                .map(|j| 0.5 * (out[(j, n)] - targets.value(j, n)).powi(2))
                .sum(),
            Loss::BceWithLogits => (0..k)
                .map(|j| {
                    let o = out[(j, n)];
                    softplus(o) - targets.value(j, n) * o
                })
                .sum(),
            Loss::SoftmaxCrossEntropy => {
                let label = match targets {
                    Targets::Classes { labels, .. } => labels[n],
                    Targets::Values(_) => 0,
                };
                log_sum_exp(out, n) - out[(label, n)]
            }
        }
    }

    /// Mean loss `L = (1/N) Σ_n ℓ_n` and its gradient `dL/dO` written into `grad` (`k × N`,
    /// already divided by `N`). Targets must have been checked with [`Loss::check_targets`].
    pub fn value_and_grad(
        self,
        out: MatRef<'_, f64>,
        targets: &Targets,
        grad: MatMut<'_, f64>,
    ) -> f64 {
        self.weighted_value_and_grad(out, targets, grad, 1.0 / out.ncols() as f64)
    }

    /// `w Σ_n ℓ_n` and its gradient `w ∇_o ℓ_n` per column, for a weight `w` chosen by the
    /// caller: [`Loss::value_and_grad`] is `w = 1/N`; a data-parallel rank holding `N_r` of a
    /// batch's `B` samples uses `w = 1/B`, so the ranks' results add up to the batch mean.
    pub(crate) fn weighted_value_and_grad(
        self,
        out: MatRef<'_, f64>,
        targets: &Targets,
        mut grad: MatMut<'_, f64>,
        inv_n: f64,
    ) -> f64 {
        let (k, n_samples) = (out.nrows(), out.ncols());
        let mut total = 0.0;
        for n in 0..n_samples {
            if self != Loss::SoftmaxCrossEntropy {
                total += self.sample_loss(out, targets, n);
            }
            match self {
                Loss::Mse => {
                    for j in 0..k {
                        grad[(j, n)] = (out[(j, n)] - targets.value(j, n)) * inv_n;
                    }
                }
                Loss::BceWithLogits => {
                    for j in 0..k {
                        grad[(j, n)] = (sigmoid(out[(j, n)]) - targets.value(j, n)) * inv_n;
                    }
                }
                Loss::SoftmaxCrossEntropy => {
                    // one exponential per logit: e_j = exp(o_j − max) kept in the gradient
                    // column, p_j = e_j / Σ e, ℓ = max + ln Σ e − o_label
                    let label = match targets {
                        Targets::Classes { labels, .. } => labels[n],
                        Targets::Values(_) => 0,
                    };
                    let m = (0..k)
                        .map(|j| out[(j, n)])
                        .fold(f64::NEG_INFINITY, f64::max);
                    let mut sum = 0.0;
                    for j in 0..k {
                        let e = (out[(j, n)] - m).exp();
                        grad[(j, n)] = e;
                        sum += e;
                    }
                    total += m + sum.ln() - out[(label, n)];
                    let scale = inv_n / sum;
                    for j in 0..k {
                        let delta = if j == label { inv_n } else { 0.0 };
                        grad[(j, n)] = grad[(j, n)] * scale - delta;
                    }
                }
            }
        }
        total * inv_n
    }

    /// Directional derivative of the gradient [`Loss::value_and_grad`] writes: for a tangent
    /// `R{O}` of the outputs, writes `R{dL/dO} = (1/N) ∇²_o ℓ_n · R{o_n}` per column (the
    /// Gauss–Newton part of Pearlmutter's R-operator): MSE `R{o}/N`, BCE `σ'(o) R{o}/N`,
    /// softmax `p ⊙ (R{o} − pᵀR{o})/N`.
    pub(crate) fn grad_tangent(
        self,
        out: MatRef<'_, f64>,
        r_out: MatRef<'_, f64>,
        mut r_grad: MatMut<'_, f64>,
    ) {
        let (k, n_samples) = (out.nrows(), out.ncols());
        let inv_n = 1.0 / n_samples as f64;
        for n in 0..n_samples {
            match self {
                Loss::Mse => {
                    for j in 0..k {
                        r_grad[(j, n)] = r_out[(j, n)] * inv_n;
                    }
                }
                Loss::BceWithLogits => {
                    for j in 0..k {
                        let s = sigmoid(out[(j, n)]);
                        r_grad[(j, n)] = s * (1.0 - s) * r_out[(j, n)] * inv_n;
                    }
                }
                Loss::SoftmaxCrossEntropy => {
                    let lse = log_sum_exp(out, n);
                    let pr: f64 = (0..k)
                        .map(|j| (out[(j, n)] - lse).exp() * r_out[(j, n)])
                        .sum();
                    for j in 0..k {
                        let p = (out[(j, n)] - lse).exp();
                        r_grad[(j, n)] = p * (r_out[(j, n)] - pr) * inv_n;
                    }
                }
            }
        }
    }

    /// `∂²ℓ_n/∂o_{j,n}²`: the diagonal of the per-sample output Hessian, the `D` of Theorem 5 for
    /// an output unit with identity activation: `1` for MSE, `σ(o)(1 − σ(o))` for BCE,
    /// `p_j(1 − p_j)` for softmax cross-entropy.
    pub fn output_curvature(self, out: MatRef<'_, f64>, j: usize, n: usize) -> f64 {
        match self {
            Loss::Mse => 1.0,
            Loss::BceWithLogits => {
                let s = sigmoid(out[(j, n)]);
                s * (1.0 - s)
            }
            Loss::SoftmaxCrossEntropy => {
                let p = (out[(j, n)] - log_sum_exp(out, n)).exp();
                p * (1.0 - p)
            }
        }
    }

    /// `∂ℓ_n/∂o_{j,n}` (without the `1/N`).
    pub fn output_slope(self, out: MatRef<'_, f64>, targets: &Targets, j: usize, n: usize) -> f64 {
        match self {
            Loss::Mse => out[(j, n)] - targets.value(j, n),
            Loss::BceWithLogits => sigmoid(out[(j, n)]) - targets.value(j, n),
            Loss::SoftmaxCrossEntropy => {
                let p = (out[(j, n)] - log_sum_exp(out, n)).exp();
                let label = match targets {
                    Targets::Classes { labels, .. } => labels[n],
                    Targets::Values(_) => 0,
                };
                p - if j == label { 1.0 } else { 0.0 }
            }
        }
    }

    /// Fraction of correctly classified samples, or `None` for MSE (a regression loss).
    /// BCE: output `j` predicts 1 when its logit is `> 0`; softmax: the arg-max output.
    pub fn accuracy(self, out: MatRef<'_, f64>, targets: &Targets) -> Option<f64> {
        let (k, n_samples) = (out.nrows(), out.ncols());
        if n_samples == 0 {
            return None;
        }
        match self {
            Loss::Mse => None,
            Loss::BceWithLogits => {
                let mut correct = 0usize;
                for n in 0..n_samples {
                    for j in 0..k {
                        if (out[(j, n)] > 0.0) == (targets.value(j, n) > 0.5) {
                            correct += 1;
                        }
                    }
                }
                Some(correct as f64 / (n_samples * k) as f64)
            }
            Loss::SoftmaxCrossEntropy => {
                let Targets::Classes { labels, .. } = targets else {
                    return None;
                };
                let correct = (0..n_samples)
                    .filter(|&n| argmax_col(out, n) == labels[n])
                    .count();
                Some(correct as f64 / n_samples as f64)
            }
        }
    }
}

/// Index of the largest entry of column `n` (first on ties).
pub(crate) fn argmax_col(out: MatRef<'_, f64>, n: usize) -> usize {
    let mut best = 0;
    for j in 1..out.nrows() {
        if out[(j, n)] > out[(best, n)] {
            best = j;
        }
    }
    best
}

fn log_sum_exp(out: MatRef<'_, f64>, n: usize) -> f64 {
    let m = (0..out.nrows())
        .map(|j| out[(j, n)])
        .fold(f64::NEG_INFINITY, f64::max);
    m + (0..out.nrows())
        .map(|j| (out[(j, n)] - m).exp())
        .sum::<f64>()
        .ln()
}

fn check_labels(labels: &[usize], n_classes: usize) -> Result<()> {
    if let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| l >= n_classes) {
        return Err(NnError::InvalidLabel {
            index: i,
            label: l.to_string(),
            n_classes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd_check(loss: Loss, out: &Mat<f64>, t: &Targets) {
        let mut g = Mat::zeros(out.nrows(), out.ncols());
        let l0 = loss.value_and_grad(out.as_ref(), t, g.as_mut());
        let mean: f64 = loss.per_sample(out.as_ref(), t).iter().sum::<f64>() / out.ncols() as f64;
        assert!((l0 - mean).abs() <= 1e-14 * (1.0 + l0.abs()));
        let h = 1e-6;
        for c in 0..out.ncols() {
            for r in 0..out.nrows() {
                let mut p = out.clone();
                p[(r, c)] += h;
                let mut m = out.clone();
                m[(r, c)] -= h;
                let mut s = Mat::zeros(out.nrows(), out.ncols());
                let fd = (loss.value_and_grad(p.as_ref(), t, s.as_mut())
                    - loss.value_and_grad(m.as_ref(), t, s.as_mut()))
                    / (2.0 * h);
                assert!(
                    (fd - g[(r, c)]).abs() <= 1e-8,
                    "{loss:?} ({r},{c}): {fd} vs {}",
                    g[(r, c)]
                );
                // curvature: central difference of the exact slope
                let sp = loss.output_slope(p.as_ref(), t, r, c);
                let sm = loss.output_slope(m.as_ref(), t, r, c);
                let fd2 = (sp - sm) / (2.0 * h);
                assert!((fd2 - loss.output_curvature(out.as_ref(), r, c)).abs() <= 1e-7);
            }
        }
    }

    #[test]
    fn gradients_and_curvatures_match_finite_differences() {
        let out = Mat::from_fn(3, 4, |r, c| ((r * 7 + c * 3) as f64 * 0.37).sin() * 2.0);
        let vals = Targets::Values(Mat::from_fn(3, 4, |r, c| ((r + 2 * c) % 3) as f64 / 2.0));
        let classes = Targets::Classes {
            labels: vec![0, 2, 1, 2],
            n_classes: 3,
        };
        fd_check(Loss::Mse, &out, &vals);
        fd_check(Loss::BceWithLogits, &out, &vals);
        fd_check(Loss::SoftmaxCrossEntropy, &out, &classes);
    }

    #[test]
    fn closed_forms() {
        // MSE (1/(2N)): outputs [1, 3] vs targets [0, 0]: (1 + 9)/(2*2) = 2.5
        let out = Mat::from_fn(1, 2, |_, c| if c == 0 { 1.0 } else { 3.0 });
        let t = Targets::Values(Mat::zeros(1, 2));
        let mut g = Mat::zeros(1, 2);
        assert!((Loss::Mse.value_and_grad(out.as_ref(), &t, g.as_mut()) - 2.5).abs() < 1e-15);
        // BCE of logit 0 is ln 2 whatever the target
        let out = Mat::zeros(1, 3);
        let t = Targets::Values(Mat::from_fn(1, 3, |_, c| c as f64 / 2.0));
        let l = Loss::BceWithLogits.value_and_grad(out.as_ref(), &t, Mat::zeros(1, 3).as_mut());
        assert!((l - 2f64.ln()).abs() < 1e-15);
        // softmax CE of equal logits is ln k
        let out = Mat::zeros(4, 2);
        let t = Targets::Classes {
            labels: vec![1, 3],
            n_classes: 4,
        };
        let l =
            Loss::SoftmaxCrossEntropy.value_and_grad(out.as_ref(), &t, Mat::zeros(4, 2).as_mut());
        assert!((l - 4f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn target_checks() {
        let bad = Targets::Values(Mat::from_fn(1, 2, |_, c| c as f64 * 2.0));
        assert!(matches!(
            Loss::BceWithLogits.check_targets(&bad, 1, 2),
            Err(NnError::TargetMismatch { .. })
        ));
        let labels = Targets::Classes {
            labels: vec![0, 5],
            n_classes: 3,
        };
        assert_eq!(
            Loss::SoftmaxCrossEntropy.check_targets(&labels, 3, 2),
            Err(NnError::InvalidLabel {
                index: 1,
                label: "5".into(),
                n_classes: 3
            })
        );
        assert!(matches!(
            Loss::Mse.check_targets(&Targets::Values(Mat::zeros(2, 3)), 2, 4),
            Err(NnError::DimensionMismatch {
                expected: 4,
                got: 3,
                ..
            })
        ));
        assert!(Targets::Values(Mat::zeros(1, 3)).gather(&[0, 3]).is_err());
    }
}
