//! The crate's typed error.

use precond_linalg::LinalgError;
use precond_optim::OptimError;

/// Everything that can go wrong in `precond-nn`. Each variant carries the data that locates the
/// problem (sizes, layer, line and column). Functions returning this error leave their inputs and
/// the network untouched.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NnError {
    /// Two sizes that must agree do not.
    #[error("dimension mismatch in {what}: expected {expected}, got {got}")]
    DimensionMismatch {
        /// What was being compared.
        what: &'static str,
        /// The size required.
        expected: usize,
        /// The size given.
        got: usize,
    },
    /// A BatchNorm layer would compute its statistics from a batch of one sample: the batch
    /// variance is exactly zero and `x̂ = 0` for every input (torch refuses the same case,
    /// "Expected more than 1 value per channel when training"). Use a batch of at least two,
    /// evaluation mode, or frozen statistics.
    #[error(
        "BatchNorm layer {layer} needs at least 2 samples per batch to compute batch statistics, got {batch}"
    )]
    BatchTooSmall {
        /// The BatchNorm layer.
        layer: usize,
        /// The batch size given.
        batch: usize,
    },
    /// A configuration value is out of its valid range.
    #[error("invalid configuration: {what} = {value} ({reason})")]
    InvalidConfig {
        /// Which setting.
        what: &'static str,
        /// The offending value, formatted.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A layer index past the end of the network.
    #[error("layer {layer} does not exist (the network has {n_layers} layers)")]
    NoSuchLayer {
        /// The requested layer (0-based).
        layer: usize,
        /// Number of layers.
        n_layers: usize,
    },
    /// A unit index past the width of its layer.
    #[error("unit {unit} does not exist in layer {layer} of width {width}")]
    NoSuchUnit {
        /// The layer (0-based).
        layer: usize,
        /// The requested unit.
        unit: usize,
        /// Width of the layer.
        width: usize,
    },
    /// A NaN or infinite value where a finite one is required.
    #[error("non-finite value {value} in {what} at row {row}, column {col}")]
    NonFinite {
        /// Which argument.
        what: &'static str,
        /// Row index (0-based).
        row: usize,
        /// Column index (0-based).
        col: usize,
        /// The offending value.
        value: f64,
    },
    /// Targets of the wrong kind for the loss (e.g. real values for softmax cross-entropy).
    #[error("targets do not fit the loss: {reason}")]
    TargetMismatch {
        /// What is wrong.
        reason: String,
    },
    /// A class label at or above the number of classes, or a non-integer label.
    #[error("invalid class label {label} at sample {index} ({n_classes} classes)")]
    InvalidLabel {
        /// Sample index.
        index: usize,
        /// The label value, formatted.
        label: String,
        /// Number of classes.
        n_classes: usize,
    },
    /// A malformed CSV file. `line` is 1-based (the header is line 1), `column` is 1-based.
    #[error("CSV error at line {line}, column {column}: {reason}")]
    Csv {
        /// 1-based line number.
        line: usize,
        /// 1-based column (field) number; 0 when the whole line is at fault.
        column: usize,
        /// What is wrong.
        reason: String,
    },
    /// A bundled data set name that does not exist.
    #[error("unknown data set {name:?} (bundled: breast_cancer, diabetes, wine, digits, iris)")]
    UnknownDataset {
        /// The requested name.
        name: String,
    },
    /// An I/O failure reading a file.
    #[error("I/O error on {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The OS message.
        message: String,
    },
    /// A data set or batch with no samples or no features.
    #[error("empty input: {what}")]
    Empty {
        /// Which argument.
        what: &'static str,
    },
    /// A numerical routine of `precond-linalg` (SVD, eigenvalues) failed.
    #[error("numerical failure in {what}")]
    Numerical {
        /// Which routine.
        what: &'static str,
        /// The linear-algebra error.
        #[source]
        source: LinalgError,
    },
    /// The optimizer reported an error.
    #[error("optimizer error: {0}")]
    Optimizer(#[from] OptimError),
}

impl NnError {
    /// Translates an error of a `precond-linalg` routine applied to `data`: an empty or
    /// non-finite argument becomes [`NnError::Empty`] / [`NnError::NonFinite`] naming `data`,
    /// anything else [`NnError::Numerical`] naming `routine`, with the linalg error as source.
    pub(crate) fn from_linalg(e: LinalgError, data: &'static str, routine: &'static str) -> Self {
        match e {
            LinalgError::Empty { .. } => NnError::Empty { what: data },
            LinalgError::NonFinite {
                row, col, value, ..
            } => NnError::NonFinite {
                what: data,
                row,
                col,
                value,
            },
            source => NnError::Numerical {
                what: routine,
                source,
            },
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = core::result::Result<T, NnError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn optimizer_errors_are_kept_as_sources() {
        let optim = precond_optim::OptimizerConfig::from_json(r#"{"optimizer": "nope"}"#)
            .expect_err("unknown optimizer");
        let e = NnError::from(optim.clone());
        assert_eq!(
            e.source().and_then(|s| s.downcast_ref::<OptimError>()),
            Some(&optim)
        );
        assert_eq!(e.to_string(), format!("optimizer error: {optim}"));
    }

    #[test]
    fn linalg_errors_are_translated_or_kept_as_sources() {
        let zero = LinalgError::ZeroNorm {
            what: "row",
            index: 2,
        };
        let e = NnError::from_linalg(zero.clone(), "data", "routine");
        assert!(matches!(
            e,
            NnError::Numerical {
                what: "routine",
                ..
            }
        ));
        assert_eq!(
            e.source().and_then(|s| s.downcast_ref::<LinalgError>()),
            Some(&zero)
        );
        assert_eq!(e.to_string(), "numerical failure in routine");
        // empty and non-finite arguments become the crate's own variants, naming the data
        let empty = LinalgError::Empty {
            what: "matrix",
            rows: 0,
            cols: 3,
        };
        assert_eq!(
            NnError::from_linalg(empty, "data", "routine"),
            NnError::Empty { what: "data" }
        );
        let nan = LinalgError::NonFinite {
            what: "matrix",
            row: 1,
            col: 2,
            value: f64::INFINITY,
        };
        assert_eq!(
            NnError::from_linalg(nan, "data", "routine"),
            NnError::NonFinite {
                what: "data",
                row: 1,
                col: 2,
                value: f64::INFINITY
            }
        );
    }
}
