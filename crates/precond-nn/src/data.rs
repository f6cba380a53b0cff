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

/// Whether the first row of a CSV text is a header of column names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CsvHeader {
    /// Guessed from the first row: it is a header when at least one of its non-empty fields is
    /// not a number in any spelling the reader accepts (Rust's `f64` syntax, see
    /// [`parse_csv_with`]). A first row such as `nan,1,2` is therefore data (and rejected,
    /// since data must be finite), never silently dropped.
    #[default]
    Auto,
    /// The first row is a header, whatever it contains (`--header`).
    Present,
    /// There is no header: the first row is data (`--no-header`).
    Absent,
}

/// How [`parse_csv_with`] reads a CSV text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOptions {
    /// The header rule.
    pub header: CsvHeader,
    /// The most values (rows × columns) accepted; reading stops with an error past it.
    pub max_values: usize,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: CsvHeader::Auto,
            max_values: usize::MAX,
        }
    }
}

/// A parsed CSV: column names and numeric rows, stored row after row.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvTable {
    /// Column names: from the header, or `"1"`, `"2"`, ... (1-based column numbers) when the
    /// text has no header.
    pub columns: Vec<String>,
    /// The 1-based line of the header, `None` when the text has no header.
    pub header_line: Option<usize>,
    /// The values, row-major: row `i` is `values[i * columns.len()..(i + 1) * columns.len()]`.
    pub values: Vec<f64>,
}

impl CsvTable {
    /// Number of data rows.
    pub fn nrows(&self) -> usize {
        self.values
            .len()
            .checked_div(self.columns.len())
            .unwrap_or(0)
    }

    /// Number of columns.
    pub fn ncols(&self) -> usize {
        self.columns.len()
    }

    /// Data row `i` (`i < nrows()`).
    pub fn row(&self, i: usize) -> &[f64] {
        let n = self.columns.len();
        &self.values[i * n..(i + 1) * n]
    }
}

/// True when `field` (trimmed) reads as an `f64` in Rust's syntax, finite or not.
fn is_number(field: &str) -> bool {
    field.trim().parse::<f64>().is_ok()
}

/// Parses CSV text with the header guessed ([`CsvHeader::Auto`]) and no size limit; see
/// [`parse_csv_with`].
///
/// # Errors
/// As [`parse_csv_with`].
pub fn parse_csv(text: &str) -> Result<CsvTable> {
    parse_csv_with(text, &CsvOptions::default())
}

/// Parses CSV text: the one reader behind every CSV input of the workspace (training data and
/// `precond cond`'s matrices).
///
/// The dialect:
/// - a UTF-8 byte-order mark at the start is ignored; lines end with `\n` or `\r\n`;
/// - lines whose first non-blank character is `#` are comments, skipped anywhere;
/// - blank lines before the first row and after the last are skipped; a blank line between
///   rows is an error;
/// - the delimiter is `,`, or `;` or a tab when the first row has no comma but has one of
///   those; spaces around fields are ignored; quotes (`"name"`) are stripped from header names
///   only, a quoted field cannot contain the delimiter;
/// - numbers are read as Rust's `str::parse::<f64>` reads them: `1`, `-2.5e-3`, `.5`, `+1`,
///   `1.`, `1E3`, and (case-insensitively) `inf`, `-inf`, `infinity`, `nan`; every data value
///   must be finite;
/// - **header rule** ([`CsvHeader::Auto`]): the first row is a header when at least one of its
///   non-empty fields is not a number in that syntax (so `a,b,c` is a header, `nan,1,2` and
///   `1,,3` are data); [`CsvHeader::Present`] and [`CsvHeader::Absent`] override the guess.
///   Header names must be non-empty and distinct.
///
/// Lines and columns in errors are 1-based and count every line of the text (comments and the
/// header included).
///
/// # Errors
/// [`NnError::Csv`] naming the line and column: no rows, a header without data rows, an empty
/// or duplicate column name, a wrong number of fields, an empty field, a field that is not a
/// number or is not finite, a blank line between rows, more than `opts.max_values` values.
pub fn parse_csv_with(text: &str, opts: &CsvOptions) -> Result<CsvTable> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let csv_err = |line: usize, column: usize, reason: String| NnError::Csv {
        line,
        column,
        reason,
    };
    // Every line that is not a comment, with its 1-based number.
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim_start().starts_with('#'))
        .collect();
    let first = lines.iter().position(|(_, l)| !l.trim().is_empty());
    let last = lines.iter().rposition(|(_, l)| !l.trim().is_empty());
    let (Some(first), Some(last)) = (first, last) else {
        return Err(csv_err(1, 0, "no rows: the text is empty".into()));
    };
    let lines = &lines[first..=last];
    let (first_line, first_text) = lines[0];
    let delim = if first_text.contains(',') {
        ','
    } else if first_text.contains(';') {
        ';'
    } else if first_text.contains('\t') {
        '\t'
    } else {
        ','
    };
    let has_header = match opts.header {
        CsvHeader::Present => true,
        CsvHeader::Absent => false,
        CsvHeader::Auto => first_text.split(delim).any(|f| {
            let f = f.trim();
            !f.is_empty() && !is_number(f)
        }),
    };
    let (columns, header_line, data) = if has_header {
        let columns: Vec<String> = first_text
            .split(delim)
            .map(|f| {
                let f = f.trim();
                f.strip_prefix('"')
                    .and_then(|g| g.strip_suffix('"'))
                    .unwrap_or(f)
                    .trim()
                    .to_string()
            })
            .collect();
        for (j, c) in columns.iter().enumerate() {
            if c.is_empty() {
                return Err(csv_err(first_line, j + 1, "empty column name".into()));
            }
            if columns[..j].contains(c) {
                return Err(csv_err(
                    first_line,
                    j + 1,
                    format!("duplicate column name {c:?}"),
                ));
            }
        }
        (columns, Some(first_line), &lines[1..])
    } else {
        let n = first_text.split(delim).count();
        ((1..=n).map(|j| j.to_string()).collect(), None, lines)
    };
    let ncols = columns.len();
    if data.is_empty() {
        return Err(csv_err(
            first_line + 1,
            0,
            "no data rows after the header".into(),
        ));
    }
    let mut values: Vec<f64> = Vec::new();
    for &(line, l) in data {
        if l.trim().is_empty() {
            return Err(csv_err(line, 0, "blank line between data rows".into()));
        }
        let mut count = 0usize;
        for (j, f) in l.split(delim).enumerate() {
            count = j + 1;
            if j >= ncols {
                break;
            }
            let t = f.trim();
            // the column's name, when the header gave one
            let name = match header_line {
                Some(_) => format!(" (column {:?})", columns[j]),
                None => String::new(),
            };
            let v = if t.is_empty() {
                return Err(csv_err(
                    line,
                    j + 1,
                    format!("empty field{name}: expected a number"),
                ));
            } else {
                match t.parse::<f64>() {
                    Ok(v) if v.is_finite() => v,
                    Ok(_) => {
                        return Err(csv_err(
                            line,
                            j + 1,
                            format!("non-finite value {t:?}{name}: expected a finite number"),
                        ));
                    }
                    Err(_) => {
                        return Err(csv_err(
                            line,
                            j + 1,
                            format!("{:?}{name} is not a number", shorten(t)),
                        ));
                    }
                }
            };
            if values.len() >= opts.max_values {
                return Err(csv_err(
                    line,
                    j + 1,
                    format!("more than {} values", opts.max_values),
                ));
            }
            values.push(v);
        }
        if count != ncols {
            let found = l.split(delim).count();
            let origin = match header_line {
                Some(h) => format!("as in the header on line {h}"),
                None => format!("as on line {first_line}"),
            };
            return Err(csv_err(
                line,
                found.min(ncols) + 1,
                format!("expected {ncols} fields ({origin}), found {found}"),
            ));
        }
    }
    Ok(CsvTable {
        columns,
        header_line,
        values,
    })
}

/// Cuts a field for an error message (at most 40 characters, control characters escaped), so
/// that the message stays one short line.
fn shorten(s: &str) -> String {
    let mut t = String::new();
    let long = s.chars().count() > 40;
    for (k, c) in s.chars().enumerate() {
        if long && k == 37 {
            t.push_str("...");
            break;
        }
        if c.is_control() {
            t.extend(c.escape_default());
        } else {
            t.push(c);
        }
    }
    t
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
    /// [`Dataset::into_classes`] for labels. The header is guessed as [`parse_csv`] says; see
    /// [`Dataset::from_csv_str_with`] to set the rule.
    ///
    /// # Errors
    /// As [`parse_csv`], plus [`NnError::Csv`] (line 1) when no column is named `target`, or when it
    /// is the only column.
    pub fn from_csv_str(name: &str, text: &str, target: &str) -> Result<Dataset> {
        Dataset::from_csv_str_with(name, text, target, &CsvOptions::default())
    }

    /// As [`Dataset::from_csv_str`], read with `opts` ([`parse_csv_with`]). Without a header the
    /// columns are named by their 1-based numbers, so `target` is then `"1"`, `"2"`, ...
    ///
    /// # Errors
    /// As [`parse_csv_with`], plus [`NnError::Csv`] (on the header's line, or line 1) when no
    /// column is named `target`, or when it is the only column.
    pub fn from_csv_str_with(
        name: &str,
        text: &str,
        target: &str,
        opts: &CsvOptions,
    ) -> Result<Dataset> {
        let table = parse_csv_with(text, opts)?;
        let hline = table.header_line.unwrap_or(1);
        let tcol = table
            .columns
            .iter()
            .position(|c| c == target)
            .ok_or_else(|| NnError::Csv {
                line: hline,
                column: 0,
                reason: match table.header_line {
                    Some(_) => format!(
                        "no column named {target:?} (columns: {})",
                        table.columns.join(", ")
                    ),
                    None => format!(
                        "no column {target:?}: the text has no header, so columns are named by their numbers 1 to {}",
                        table.ncols()
                    ),
                },
            })?;
        if table.columns.len() < 2 {
            return Err(NnError::Csv {
                line: hline,
                column: tcol + 1,
                reason: "no feature columns besides the target".into(),
            });
        }
        let feats: Vec<usize> = (0..table.columns.len()).filter(|&j| j != tcol).collect();
        let n = table.nrows();
        let x = Mat::from_fn(feats.len(), n, |r, c| table.row(c)[feats[r]]);
        let y = Mat::from_fn(1, n, |_, c| table.row(c)[tcol]);
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
        Dataset::from_csv_path_with(path, target, &CsvOptions::default())
    }

    /// Reads a CSV file with `opts` (see [`Dataset::from_csv_str_with`]).
    ///
    /// # Errors
    /// [`NnError::Io`] if the file cannot be read, then as [`Dataset::from_csv_str_with`].
    pub fn from_csv_path_with(
        path: impl AsRef<Path>,
        target: &str,
        opts: &CsvOptions,
    ) -> Result<Dataset> {
        let p = path.as_ref();
        let text = std::fs::read_to_string(p).map_err(|e| NnError::Io {
            path: p.display().to_string(),
            message: e.to_string(),
        })?;
        let name = p.file_stem().map_or_else(
            || p.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        Dataset::from_csv_str_with(&name, &text, target, opts)
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
/// columns).
///
/// # Errors
/// [`NnError::InvalidConfig`] (key `column index`) for an
/// index `≥ x.ncols()`; `out` is then unchanged.
pub fn gather_columns_into(
    x: MatRef<'_, f64>,
    indices: &[usize],
    out: &mut Mat<f64>,
) -> Result<()> {
    if let Some(&i) = indices.iter().find(|&&i| i >= x.ncols()) {
        return Err(NnError::InvalidConfig {
            what: "column index",
            value: i.to_string(),
            reason: "is not below the number of columns",
        });
    }
    crate::util::fit(out, x.nrows(), indices.len());
    for (k, &i) in indices.iter().enumerate() {
        out.col_mut(k).copy_from(x.col(i));
    }
    Ok(())
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
