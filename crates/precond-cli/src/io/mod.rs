//! Readers for the matrix files `precond cond` accepts: Matrix Market, NumPy `.npy` and CSV.
//!
//! Every reader returns a [`DenseMatrix`] or one [`ReadError`] whose message names the line
//! (text formats) or byte offset (`.npy`) and what was expected. Readers never panic on any
//! input (a property test feeds them random bytes). Non-finite entries (NaN, ±inf) are rejected,
//! since no condition number is defined for them.

mod csv;
mod error;
mod mtx;
mod npy;

pub use csv::{read_csv, read_csv_with};
pub use error::ReadError;
pub use mtx::read_mtx;
pub use npy::read_npy;
pub use precond_nn::data::CsvHeader;

use std::io::Read as _;
use std::path::Path;

/// The largest number of entries a dense matrix read here may have (4096 × 4096): the dense
/// SVD behind κ₂ costs O(n³), and this bounds memory for files that declare huge sizes.
pub const MAX_ENTRIES: usize = 4096 * 4096;

/// A dense real matrix stored column-major (`data[i + j * nrows]` is entry `(i, j)`).
#[derive(Debug, Clone, PartialEq)]
pub struct DenseMatrix {
    /// Number of rows.
    pub nrows: usize,
    /// Number of columns.
    pub ncols: usize,
    /// Entries, column-major.
    pub data: Vec<f64>,
    /// True when the file declared the matrix symmetric (Matrix Market `symmetric`).
    pub declared_symmetric: bool,
}

impl DenseMatrix {
    /// Entry `(i, j)`; callers keep `i < nrows`, `j < ncols`.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i + j * self.nrows]
    }

    /// True when the matrix is square and `|a_ij − a_ji| ≤ 8 ε max|a|` for all `i, j`
    /// (exactly symmetric files, and those that lost symmetry to rounding in text output).
    pub fn is_symmetric(&self) -> bool {
        if self.nrows != self.ncols {
            return false;
        }
        if self.declared_symmetric {
            return true;
        }
        let amax = self.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let tol = 8.0 * f64::EPSILON * amax;
        (0..self.nrows).all(|j| (0..j).all(|i| (self.get(i, j) - self.get(j, i)).abs() <= tol))
    }
}

/// The file formats `precond cond` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Matrix Market exchange format (`.mtx`).
    Mtx,
    /// NumPy binary array (`.npy`).
    Npy,
    /// Comma-separated values (`.csv`).
    Csv,
}

impl Format {
    /// The format named by the file's extension, if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "mtx" => Some(Format::Mtx),
            "npy" => Some(Format::Npy),
            "csv" | "txt" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// The default of `--max-bytes`: the most bytes `precond cond` and `precond train` read from one
/// data input (1 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// The most bytes of a JSON configuration file (`train --optimizer @file.json`): 16 MiB, far
/// beyond any configuration (a dense `precond_gd` preconditioner of 1000 × 1000 is ~20 MB of
/// text, and belongs in code, not a CLI file).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// How [`read_matrix_with`] reads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// The header rule of CSV input (ignored by the other formats).
    pub header: CsvHeader,
    /// The most bytes read (`--max-bytes`); a longer input is an error, nothing past the cap
    /// is read.
    pub max_bytes: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            header: CsvHeader::Auto,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Reads a matrix file in `format` (or the format its extension names) with the default
/// [`ReadOptions`].
///
/// # Errors
/// As [`read_matrix_with`].
pub fn read_matrix(path: &Path, format: Option<Format>) -> Result<DenseMatrix, ReadError> {
    read_matrix_with(path, format, &ReadOptions::default())
}

/// Reads a matrix from `path`, a regular file (or a symbolic link to one), or from standard
/// input when `path` is `-` (then `format` is required). At most `opts.max_bytes` bytes are
/// read: device files, FIFOs and folders are refused before anything is read, and an input
/// longer than the cap stops the reading with an error.
///
/// # Errors
/// [`ReadError::UnknownFormat`], [`ReadError::Io`] (cannot open, not a regular file),
/// [`ReadError::TooLong`] past the cap, then the format's parse errors.
pub fn read_matrix_with(
    path: &Path,
    format: Option<Format>,
    opts: &ReadOptions,
) -> Result<DenseMatrix, ReadError> {
    let format = match format.or_else(|| Format::from_path(path)) {
        Some(f) => f,
        None => {
            return Err(ReadError::UnknownFormat {
                path: path.display().to_string(),
            });
        }
    };
    let bytes = read_bytes_capped(path, opts.max_bytes, "cond")?;
    parse_bytes_with(&bytes, format, opts.header)
}

/// The bytes of `path`, a regular file (or a symbolic link to one), or of standard input when
/// `path` is `-`: device files, FIFOs and folders are refused before anything is read (`command`
/// names the program's command in that message), a file longer than `max_bytes` is refused by
/// its size, and reading stops with an error one byte past the cap.
///
/// # Errors
/// [`ReadError::Io`] (cannot open, not a regular file), [`ReadError::TooLong`].
pub fn read_bytes_capped(path: &Path, max_bytes: u64, command: &str) -> Result<Vec<u8>, ReadError> {
    let io_err = |message: String| ReadError::Io {
        path: path.display().to_string(),
        message,
    };
    if path.as_os_str() == "-" {
        return read_capped(std::io::stdin().lock(), path, max_bytes);
    }
    let not_regular = || {
        io_err(format!(
            "not a regular file: {command} reads regular files, or - for standard input"
        ))
    };
    // refuse non-regular files before opening (opening a FIFO blocks)
    let meta = std::fs::metadata(path).map_err(|e| io_err(e.to_string()))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::File::open(path).map_err(|e| io_err(e.to_string()))?;
    let meta = file.metadata().map_err(|e| io_err(e.to_string()))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    if meta.len() > max_bytes {
        return Err(ReadError::TooLong {
            path: path.display().to_string(),
            limit: max_bytes,
        });
    }
    read_capped(file, path, max_bytes)
}

/// Reads at most `max_bytes` bytes of `r`; one more byte is an error.
fn read_capped(r: impl std::io::Read, path: &Path, max_bytes: u64) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    r.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    if bytes.len() as u64 > max_bytes {
        return Err(ReadError::TooLong {
            path: path.display().to_string(),
            limit: max_bytes,
        });
    }
    Ok(bytes)
}

/// Parses the bytes of a file in `format` (CSV with the header guessed).
///
/// # Errors
/// As [`parse_bytes_with`].
pub fn parse_bytes(bytes: &[u8], format: Format) -> Result<DenseMatrix, ReadError> {
    parse_bytes_with(bytes, format, CsvHeader::Auto)
}

/// Parses the bytes of a file in `format`; `header` is the header rule of CSV input.
///
/// # Errors
/// The format's parse errors, each naming its line or byte.
pub fn parse_bytes_with(
    bytes: &[u8],
    format: Format,
    header: CsvHeader,
) -> Result<DenseMatrix, ReadError> {
    match format {
        Format::Npy => read_npy(bytes),
        Format::Mtx | Format::Csv => {
            let text = std::str::from_utf8(bytes).map_err(|e| {
                let off = e.valid_up_to();
                let line = bytes[..off].iter().filter(|&&b| b == b'\n').count() + 1;
                error::line_err(line, format!("invalid UTF-8 at byte {off}: expected text"))
            })?;
            if format == Format::Mtx {
                read_mtx(text)
            } else {
                read_csv_with(text, header)
            }
        }
    }
}

/// Checks a declared shape against [`MAX_ENTRIES`] and emptiness.
pub(crate) fn check_shape(rows: usize, cols: usize) -> Result<(), ReadError> {
    if rows == 0 || cols == 0 {
        return Err(ReadError::Empty { rows, cols });
    }
    match rows.checked_mul(cols) {
        Some(n) if n <= MAX_ENTRIES => Ok(()),
        _ => Err(ReadError::TooLarge {
            rows,
            cols,
            limit: MAX_ENTRIES,
        }),
    }
}

/// Parses one numeric token as a finite f64 (Rust's float syntax: `1`, `-2.5e-3`, `.5`).
pub(crate) fn parse_finite(tok: &str) -> Result<f64, String> {
    match tok.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) => Err(format!(
            "non-finite value {v} ('{tok}'): expected a finite number"
        )),
        Err(_) => Err(format!("'{}' is not a number", shorten(tok))),
    }
}

/// Cuts a token for display in an error message, escaping control characters so that the
/// message stays on one line.
pub(crate) fn shorten(s: &str) -> String {
    let mut t = String::new();
    for (k, c) in s.chars().enumerate() {
        if k == 37 && s.chars().count() > 40 {
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
