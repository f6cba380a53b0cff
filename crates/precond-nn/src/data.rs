//! Data sets: the five bundled real data sets, any CSV with a header and a named target column,
//! seeded synthetic generators, and seeded train/test splits, shuffling and mini-batches.
//!
//! Features are stored `d × N`, **one column per sample**, the layout of [`crate::Mlp`].
//! The bundled CSVs (see `crates/precond-nn/data/DATA.md` for origin and licences) are embedded
//! in the library with `include_str!`, so [`Dataset::builtin`] works from any directory.

use crate::error::{NnError, Result};
use crate::loss::{Loss, Targets};
use crate::mlp::{Mlp, Mode};
use crate::util::standard_normal;
use faer::{Mat, MatRef};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// Names of the bundled data sets.
pub const BUILTIN_DATASETS: [&str; 5] = ["breast_cancer", "diabetes", "wine", "digits", "iris"];

const BREAST_CANCER: &str = include_str!("../data/breast_cancer.csv");
const DIABETES: &str = include_str!("../data/diabetes.csv");
const WINE: &str = include_str!("../data/wine.csv");
const DIGITS: &str = include_str!("../data/digits.csv");
const IRIS: &str = include_str!("../data/iris.csv");

/// A data set: features (`d × N`), targets, and the column names.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Name (file or bundled name).
    pub name: String,
    /// One name per feature (row of `x`).
    pub feature_names: Vec<String>,
    /// Name of the target column.
    pub target_name: String,
    /// Features, `d × N`, one column per sample.
    pub x: Mat<f64>,
    /// Targets, one per sample.
    pub targets: Targets,
}

/// A parsed CSV: header names and numeric rows.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvTable {
    /// Column names from the header line.
    pub columns: Vec<String>,
    /// Values, one inner `Vec` per data line.
    pub rows: Vec<Vec<f64>>,
}

/// Parses comma-separated text with one header line of column names and numeric fields.
/// Fields are trimmed; blank lines at the end are ignored; quotes around header names are
/// stripped. Lines and columns in errors are 1-based (the header is line 1).
///
/// # Errors
/// [`NnError::Csv`] naming the line and column: missing header, empty or duplicate column name,
/// wrong number of fields, a field that is not a finite number, a blank line inside the data.
pub fn parse_csv(text: &str) -> Result<CsvTable> {
    let mut lines = text.lines().enumerate();
    let header = match lines.next() {
        None => {
            return Err(NnError::Csv {
                line: 1,
                column: 0,
                reason: "no header line".into(),
            });
        }
        Some((i, l)) if l.trim().is_empty() => {
            return Err(NnError::Csv {
                line: i + 1,
                column: 0,
                reason: "empty header line".into(),
            });
        }
        Some((_, l)) => l,
    };
    let columns: Vec<String> = header
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect();
    for (j, c) in columns.iter().enumerate() {
        if c.is_empty() {
            return Err(NnError::Csv {
                line: 1,
                column: j + 1,
                reason: "empty column name".into(),
            });
        }
        if columns[..j].contains(c) {
            return Err(NnError::Csv {
                line: 1,
                column: j + 1,
                reason: format!("duplicate column name {c:?}"),
            });
        }
    }
    let all: Vec<(usize, &str)> = lines.collect();
    let last_nonblank = all
        .iter()
        .rposition(|(_, l)| !l.trim().is_empty())
        .map_or(0, |p| p + 1);
    let mut rows = Vec::with_capacity(last_nonblank);
    for &(i, l) in &all[..last_nonblank] {
        let line = i + 1;
        if l.trim().is_empty() {
            return Err(NnError::Csv {
                line,
                column: 0,
                reason: "blank line inside the data".into(),
            });
        }
        let fields: Vec<&str> = l.split(',').collect();
        if fields.len() != columns.len() {
            return Err(NnError::Csv {
                line,
                column: fields.len().min(columns.len()) + 1,
                reason: format!("expected {} fields, found {}", columns.len(), fields.len()),
            });
        }
        let mut row = Vec::with_capacity(fields.len());
        for (j, f) in fields.iter().enumerate() {
            let t = f.trim();
            match t.parse::<f64>() {
                Ok(v) if v.is_finite() => row.push(v),
                _ => {
                    return Err(NnError::Csv {
                        line,
                        column: j + 1,
                        reason: format!(
                            "field {t:?} of column {:?} is not a finite number",
                            columns[j]
                        ),
                    });
                }
            }
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(NnError::Csv {
            line: 2,
            column: 0,
            reason: "no data lines".into(),
        });
    }
    Ok(CsvTable { columns, rows })
}

impl Dataset {
    /// Loads a bundled data set by name (see [`BUILTIN_DATASETS`]). `diabetes` has a real
    /// target ([`Targets::Values`], `1 × N`); the others have class labels ([`Targets::Classes`]).
    ///
    /// # Errors
    /// [`NnError::UnknownDataset`].
    pub fn builtin(name: &str) -> Result<Dataset> {
        let (text, target, classes) = match name {
            "breast_cancer" => (BREAST_CANCER, "target", true),
            "diabetes" => (DIABETES, "progression", false),
            "wine" => (WINE, "target", true),
            "digits" => (DIGITS, "target", true),
            "iris" => (IRIS, "target", true),
            _ => {
                return Err(NnError::UnknownDataset {
                    name: name.to_string(),
                });
            }
        };
        let ds = Dataset::from_csv_str(name, text, target)?;
        if classes { ds.into_classes() } else { Ok(ds) }
    }

    /// Builds a data set from CSV text with a header; `target` names the target column, every
    /// other column is a feature. Targets are real values ([`Targets::Values`], `1 × N`); use
    /// [`Dataset::into_classes`] for labels.
    ///
    /// # Errors
    /// As [`parse_csv`], plus [`NnError::Csv`] (line 1) when no column is named `target`, or when it
    /// is the only column.
    pub fn from_csv_str(name: &str, text: &str, target: &str) -> Result<Dataset> {
        let table = parse_csv(text)?;
        let tcol = table
            .columns
            .iter()
            .position(|c| c == target)
            .ok_or_else(|| NnError::Csv {
                line: 1,
                column: 0,
                reason: format!(
                    "no column named {target:?} (columns: {})",
                    table.columns.join(", ")
                ),
            })?;
        if table.columns.len() < 2 {
            return Err(NnError::Csv {
                line: 1,
                column: tcol + 1,
                reason: "no feature columns besides the target".into(),
            });
        }
        let feats: Vec<usize> = (0..table.columns.len()).filter(|&j| j != tcol).collect();
        let n = table.rows.len();
        let x = Mat::from_fn(feats.len(), n, |r, c| table.rows[c][feats[r]]);
        let y = Mat::from_fn(1, n, |_, c| table.rows[c][tcol]);
        Ok(Dataset {
            name: name.to_string(),
            feature_names: feats.iter().map(|&j| table.columns[j].clone()).collect(),
            target_name: target.to_string(),
            x,
            targets: Targets::Values(y),
        })
    }

    /// Reads a CSV file (see [`Dataset::from_csv_str`]).
    ///
    /// # Errors
    /// [`NnError::Io`] if the file cannot be read, then as [`Dataset::from_csv_str`].
    pub fn from_csv_path(path: impl AsRef<Path>, target: &str) -> Result<Dataset> {
        let p = path.as_ref();
        let text = std::fs::read_to_string(p).map_err(|e| NnError::Io {
            path: p.display().to_string(),
            message: e.to_string(),
        })?;
        let name = p.file_stem().map_or_else(
            || p.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        Dataset::from_csv_str(&name, &text, target)
    }

    /// Converts a single real target row into class labels `0..=max` (each value must be a
    /// non-negative integer). Already-labelled data is returned unchanged.
    ///
    /// # Errors
    /// [`NnError::InvalidLabel`] for a non-integer or negative value; [`NnError::TargetMismatch`]
    /// for multi-output targets.
    pub fn into_classes(self) -> Result<Dataset> {
        let labels = match &self.targets {
            Targets::Classes { .. } => return Ok(self),
            Targets::Values(m) => {
                if m.nrows() != 1 {
                    return Err(NnError::TargetMismatch {
                        reason: format!("{} target rows cannot be class labels", m.nrows()),
                    });
                }
                let mut labels = Vec::with_capacity(m.ncols());
                for c in 0..m.ncols() {
                    let v = m[(0, c)];
                    if !(v >= 0.0 && v.fract() == 0.0 && v < 1e9) {
                        return Err(NnError::InvalidLabel {
                            index: c,
                            label: v.to_string(),
                            n_classes: 0,
                        });
                    }
                    labels.push(v as usize);
                }
                labels
            }
        };
        let n_classes = labels.iter().max().map_or(0, |m| m + 1);
        Ok(Dataset {
            targets: Targets::Classes { labels, n_classes },
            ..self
        })
    }

    /// Number of samples `N`.
    pub fn n_samples(&self) -> usize {
        self.x.ncols()
    }

    /// Number of features `d`.
    pub fn n_features(&self) -> usize {
        self.x.nrows()
    }

    /// The samples at `indices` (in that order) as a new data set.
    ///
    /// # Errors
    /// [`NnError::DimensionMismatch`] for an index `≥ N`.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        let targets = self.targets.gather(indices)?;
        Ok(Dataset {
            name: self.name.clone(),
            feature_names: self.feature_names.clone(),
            target_name: self.target_name.clone(),
            x: gather_columns(self.x.as_ref(), indices),
            targets,
        })
    }

    /// Seeded random train/test split: a fraction `test_fraction` (rounded, at least one sample
    /// on each side) goes to the test set.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] unless `0 < test_fraction < 1` and both sides are non-empty.
    pub fn split(&self, test_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        let n = self.n_samples();
        if !(test_fraction > 0.0 && test_fraction < 1.0) {
            return Err(NnError::InvalidConfig {
                what: "test_fraction",
                value: test_fraction.to_string(),
                reason: "must lie strictly between 0 and 1",
            });
        }
        let n_test = ((n as f64) * test_fraction).round() as usize;
        if n_test == 0 || n_test >= n {
            return Err(NnError::InvalidConfig {
                what: "test_fraction",
                value: test_fraction.to_string(),
                reason: "leaves the train or test set empty",
            });
        }
        let idx = shuffled_indices(n, seed);
        Ok((self.subset(&idx[n_test..])?, self.subset(&idx[..n_test])?))
    }

    /// The same data with features replaced by `f(x)` (e.g. an [`crate::InputTransform`]).
    pub fn map_features(
        &self,
        f: impl FnOnce(MatRef<'_, f64>) -> Result<Mat<f64>>,
    ) -> Result<Dataset> {
        let x = f(self.x.as_ref())?;
        if x.ncols() != self.n_samples() {
            return Err(NnError::DimensionMismatch {
                what: "samples after feature map",
                expected: self.n_samples(),
                got: x.ncols(),
            });
        }
        let feature_names = if x.nrows() == self.n_features() {
            self.feature_names.clone()
        } else {
            (0..x.nrows()).map(|j| format!("f{j}")).collect()
        };
        Ok(Dataset {
            x,
            feature_names,
            ..self.clone()
        })
    }
}

/// Columns `indices` of `x`, in that order.
pub fn gather_columns(x: MatRef<'_, f64>, indices: &[usize]) -> Mat<f64> {
    let mut out = Mat::zeros(x.nrows(), indices.len());
    for (k, &i) in indices.iter().enumerate() {
        out.col_mut(k).copy_from(x.col(i));
    }
    out
}

/// As [`gather_columns`], into `out` (storage reused: no allocation once it has held this many
/// columns). Indices must be `< x.ncols()`.
pub(crate) fn gather_columns_into(x: MatRef<'_, f64>, indices: &[usize], out: &mut Mat<f64>) {
    crate::util::fit(out, x.nrows(), indices.len());
    for (k, &i) in indices.iter().enumerate() {
        out.col_mut(k).copy_from(x.col(i));
    }
}

/// `0..n` shuffled by a seeded ChaCha8 generator (Fisher–Yates).
pub fn shuffled_indices(n: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    idx
}

/// Mini-batches of `0..n`: consecutive chunks of `batch_size` (the last may be smaller) of the
/// indices, shuffled with `seed` when `shuffle` is set.
///
/// # Errors
/// [`NnError::InvalidConfig`] for `batch_size == 0`.
pub fn minibatches(
    n: usize,
    batch_size: usize,
    shuffle: bool,
    seed: u64,
) -> Result<Vec<Vec<usize>>> {
    if batch_size == 0 {
        return Err(NnError::InvalidConfig {
            what: "batch_size",
            value: "0".into(),
            reason: "must be positive",
        });
    }
    let idx = if shuffle {
        shuffled_indices(n, seed)
    } else {
        (0..n).collect()
    };
    Ok(idx.chunks(batch_size).map(<[usize]>::to_vec).collect())
}

/// Gaussian features with chosen per-feature scales and equicorrelation, so that `κ` of the data
/// matrix is a dial: `x_j = μ_j + s_j (sqrt(ρ) g + sqrt(1 − ρ) e_j)` with `g, e_j ~ N(0, 1)`
/// independent, i.e. `Var x_j = s_j²`, `Corr(x_j, x_k) = ρ` for `j ≠ k`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GaussianSpec {
    /// Number of samples `N`.
    pub n_samples: usize,
    /// Per-feature standard deviations `s_j` (their length is `d`).
    pub scales: Vec<f64>,
    /// Per-feature means `μ_j` (empty = all zero).
    pub means: Vec<f64>,
    /// Common correlation `ρ ∈ [0, 1)`.
    pub correlation: f64,
    /// Seed of the ChaCha8 generator.
    pub seed: u64,
}

impl GaussianSpec {
    /// Features with log-spaced scales from `1` to `scale_ratio` over `d` features (so the ratio of
    /// the largest to smallest row norm of `X` is about `scale_ratio`).
    pub fn log_spaced(
        n_samples: usize,
        d: usize,
        scale_ratio: f64,
        correlation: f64,
        seed: u64,
    ) -> Self {
        let scales = (0..d)
            .map(|j| {
                if d == 1 {
                    1.0
                } else {
                    scale_ratio.powf(j as f64 / (d - 1) as f64)
                }
            })
            .collect();
        Self {
            n_samples,
            scales,
            means: Vec::new(),
            correlation,
            seed,
        }
    }

    /// Draws the `d × N` feature matrix.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] for `N = 0`, no features, a non-positive or non-finite scale,
    /// `ρ ∉ [0, 1)`, or a means vector of the wrong length.
    pub fn sample(&self) -> Result<Mat<f64>> {
        let d = self.scales.len();
        if self.n_samples == 0 || d == 0 {
            return Err(NnError::InvalidConfig {
                what: "gaussian spec",
                value: format!("{} x {}", d, self.n_samples),
                reason: "needs samples and features",
            });
        }
        if let Some(s) = self.scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(NnError::InvalidConfig {
                what: "scales",
                value: s.to_string(),
                reason: "must be positive and finite",
            });
        }
        if !(0.0..1.0).contains(&self.correlation) {
            return Err(NnError::InvalidConfig {
                what: "correlation",
                value: self.correlation.to_string(),
                reason: "must lie in [0, 1)",
            });
        }
        if !self.means.is_empty() && self.means.len() != d {
            return Err(NnError::DimensionMismatch {
                what: "means vs scales",
                expected: d,
                got: self.means.len(),
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let (a, b) = (self.correlation.sqrt(), (1.0 - self.correlation).sqrt());
        let mut x = Mat::zeros(d, self.n_samples);
        for c in 0..self.n_samples {
            let g = standard_normal(&mut rng);
            for j in 0..d {
                let mu = if self.means.is_empty() {
                    0.0
                } else {
                    self.means[j]
                };
                x[(j, c)] = mu + self.scales[j] * (a * g + b * standard_normal(&mut rng));
            }
        }
        Ok(x)
    }
}

/// Targets produced by a teacher network on features `x`: its outputs plus Gaussian noise of
/// standard deviation `noise` for [`Loss::Mse`]; labels `1{logit > 0}` for
/// [`Loss::BceWithLogits`] (`1 × N` values); arg-max labels for softmax cross-entropy. The teacher
/// runs in [`Mode::Eval`].
///
/// # Errors
/// As [`Mlp::forward`]; [`NnError::InvalidConfig`] for a negative or non-finite noise.
pub fn teacher_targets(
    teacher: &Mlp,
    params: &[f64],
    x: MatRef<'_, f64>,
    noise: f64,
    seed: u64,
) -> Result<Targets> {
    if !(noise.is_finite() && noise >= 0.0) {
        return Err(NnError::InvalidConfig {
            what: "noise",
            value: noise.to_string(),
            reason: "must be finite and >= 0",
        });
    }
    let out = teacher.forward(params, x, Mode::Eval)?.output().to_owned();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Ok(match teacher.config().loss {
        Loss::Mse => Targets::Values(Mat::from_fn(out.nrows(), out.ncols(), |r, c| {
            out[(r, c)] + noise * standard_normal(&mut rng)
        })),
        Loss::BceWithLogits => Targets::Values(Mat::from_fn(out.nrows(), out.ncols(), |r, c| {
            if out[(r, c)] > 0.0 { 1.0 } else { 0.0 }
        })),
        Loss::SoftmaxCrossEntropy => Targets::Classes {
            labels: (0..out.ncols())
                .map(|c| crate::loss::argmax_col(out.as_ref(), c))
                .collect(),
            n_classes: out.nrows(),
        },
    })
}
