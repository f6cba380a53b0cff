//! Input transforms fitted on training data and applied to new data (THEORY.md section 6,
//! "Input standardization"; Theorem 6).
//!
//! Data are `d × N` matrices, one column per sample; statistics are per feature (row).
//! - Standardization: `x̃ = (x − μ)/s`, `μ` the mean and `s²` the **population** variance
//!   (divide by `N`) of the training data, so every row of the transformed training matrix has norm
//!   `sqrt(N)`, like the row `1ᵀ` of the extended matrix.
//! - Min-max: `x̃ = (x − min)/(max − min)`, training values in `[0, 1]`.
//!
//! **Constant features** (every training value equal, `max = min` exactly) get scale 1: the
//! transform only subtracts the centre, so their training values become exactly 0 and new data
//! keeps its offset from the training constant. Never NaN or infinity.

use crate::error::{NnError, Result};
use faer::{Mat, MatRef};
use serde::{Deserialize, Serialize};

/// Which transform [`InputTransform::fit`] builds.
///
/// # References
///
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §6, (22) and Theorem 6.
/// - \[Lange2022\] S. Lange, K. Helfrich, Q. Ye. *Batch normalization preconditioning for neural
///   network training.* JMLR 23(72):1–41, 2022.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputScaling {
    /// `(x − μ)/s` with the population standard deviation.
    Standardize,
    /// `(x − min)/(max − min)`.
    MinMax,
    /// `x − μ` (centring only; the `X − μ1ᵀ` of (22)).
    Centre,
}

/// A fitted per-feature affine transform `x̃_j = (x_j − shift_j) · scale_j`.
///
/// # References
///
/// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
///   Regularization* (the source paper), as restated in THEORY.md §6, (22) and Theorem 6.
/// - \[Lange2022\] S. Lange, K. Helfrich, Q. Ye. *Batch normalization preconditioning for neural
///   network training.* JMLR 23(72):1–41, 2022.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputTransform {
    /// The kind fitted.
    pub kind: InputScaling,
    /// Subtracted per feature (`μ` or `min`).
    pub shift: Vec<f64>,
    /// Multiplied per feature after the shift (`1/s`, `1/(max − min)`, or 1 for constants).
    pub scale: Vec<f64>,
    /// Which features were constant in the training data.
    pub constant: Vec<bool>,
}

impl InputTransform {
    /// Fits the transform on training data `x` (`d × N`).
    ///
    /// # Errors
    /// [`NnError::Empty`] for no samples or features, [`NnError::NonFinite`] with the entry.
    pub fn fit(x: MatRef<'_, f64>, kind: InputScaling) -> Result<Self> {
        let (d, n) = (x.nrows(), x.ncols());
        if d == 0 || n == 0 {
            return Err(NnError::Empty {
                what: "training data for the input transform",
            });
        }
        let mut shift = vec![0.0; d];
        let mut scale = vec![1.0; d];
        let mut constant = vec![false; d];
        for j in 0..d {
            let (mut lo, mut hi, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
            for c in 0..n {
                let v = x[(j, c)];
                if !v.is_finite() {
                    return Err(NnError::NonFinite {
                        what: "training data",
                        row: j,
                        col: c,
                        value: v,
                    });
                }
                lo = lo.min(v);
                hi = hi.max(v);
                sum += v;
            }
            let mean = sum / n as f64;
            #[allow(clippy::float_cmp)]
            let is_const = hi == lo;
            constant[j] = is_const;
            match kind {
                InputScaling::Standardize | InputScaling::Centre => {
                    // a constant feature's mean is the constant itself, exactly
                    shift[j] = if is_const { lo } else { mean };
                    if kind == InputScaling::Standardize && !is_const {
                        let var =
                            (0..n).map(|c| (x[(j, c)] - mean).powi(2)).sum::<f64>() / n as f64;
                        scale[j] = 1.0 / var.sqrt();
                    }
                }
                InputScaling::MinMax => {
                    shift[j] = lo;
                    if !is_const {
                        scale[j] = 1.0 / (hi - lo);
                    }
                }
            }
        }
        Ok(Self {
            kind,
            shift,
            scale,
            constant,
        })
    }

    /// Number of features.
    pub fn dim(&self) -> usize {
        self.shift.len()
    }

    /// Applies the transform to `x` (`d × M`).
    ///
    /// # Errors
    /// [`NnError::DimensionMismatch`] when `x` has the wrong number of features.
    pub fn apply(&self, x: MatRef<'_, f64>) -> Result<Mat<f64>> {
        if x.nrows() != self.dim() {
            return Err(NnError::DimensionMismatch {
                what: "features vs fitted transform",
                expected: self.dim(),
                got: x.nrows(),
            });
        }
        Ok(Mat::from_fn(x.nrows(), x.ncols(), |r, c| {
            (x[(r, c)] - self.shift[r]) * self.scale[r]
        }))
    }

    /// Fits on `x` and returns the transformed `x` too.
    pub fn fit_apply(x: MatRef<'_, f64>, kind: InputScaling) -> Result<(Self, Mat<f64>)> {
        let t = Self::fit(x, kind)?;
        let y = t.apply(x)?;
        Ok((t, y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardize_uses_population_variance_and_handles_constants() {
        // feature 0: [1, 2, 3, 4] mean 2.5, population var 1.25; feature 1 constant 7
        let x = Mat::from_fn(2, 4, |r, c| if r == 0 { (c + 1) as f64 } else { 7.0 });
        let (t, y) = InputTransform::fit_apply(x.as_ref(), InputScaling::Standardize).expect("fit");
        assert!(
            (t.shift[0] - 2.5).abs() < 1e-15 && (t.scale[0] - 1.0 / 1.25f64.sqrt()).abs() < 1e-15
        );
        assert_eq!(t.constant, vec![false, true]);
        let row_norm: f64 = (0..4).map(|c| y[(0, c)] * y[(0, c)]).sum::<f64>().sqrt();
        assert!(
            (row_norm - 2.0).abs() < 1e-14,
            "standardized row has norm sqrt(N)"
        );
        assert!(
            (0..4).all(|c| y[(1, c)] == 0.0),
            "constant feature becomes exactly 0"
        );
        // new data: the constant feature keeps its offset, nothing is NaN
        let z = t
            .apply(Mat::from_fn(2, 1, |r, _| if r == 0 { 2.5 } else { 9.0 }).as_ref())
            .expect("apply");
        assert!(z[(0, 0)].abs() < 1e-15 && (z[(1, 0)] - 2.0).abs() < 1e-15);
    }

    #[test]
    fn min_max_maps_training_data_to_unit_interval() {
        let x = Mat::from_fn(3, 5, |r, c| {
            if r == 2 {
                -1.0
            } else {
                ((r + 1) * c) as f64 * 1.5 - 3.0
            }
        });
        let (t, y) = InputTransform::fit_apply(x.as_ref(), InputScaling::MinMax).expect("fit");
        for r in 0..2 {
            let row: Vec<f64> = (0..5).map(|c| y[(r, c)]).collect();
            assert!(row.iter().all(|v| (0.0..=1.0).contains(v)));
            assert!(row.contains(&0.0) && row.iter().any(|&v| (v - 1.0).abs() < 1e-15));
        }
        assert!(t.constant[2] && (0..5).all(|c| y[(2, c)] == 0.0));
    }

    #[test]
    fn errors() {
        let mut x = Mat::<f64>::zeros(2, 3);
        x[(1, 2)] = f64::INFINITY;
        assert_eq!(
            InputTransform::fit(x.as_ref(), InputScaling::Standardize),
            Err(NnError::NonFinite {
                what: "training data",
                row: 1,
                col: 2,
                value: f64::INFINITY
            })
        );
        assert!(
            InputTransform::fit(Mat::<f64>::zeros(2, 0).as_ref(), InputScaling::MinMax).is_err()
        );
        let t = InputTransform::fit(Mat::<f64>::zeros(2, 3).as_ref(), InputScaling::Centre)
            .expect("fit");
        assert!(matches!(
            t.apply(Mat::<f64>::zeros(3, 1).as_ref()),
            Err(NnError::DimensionMismatch {
                expected: 2,
                got: 3,
                ..
            })
        ));
    }
}
