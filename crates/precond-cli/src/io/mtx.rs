//! Matrix Market (`.mtx`) reader.
//!
//! Supported: the banner `%%MatrixMarket matrix <format> <field> <symmetry>` (keywords are
//! case-insensitive) with
//! - format `array` (dense, entries column by column) or `coordinate` (1-based `i j value`
//!   triplets; duplicate entries are summed, as scipy's `mmread(...).toarray()` does);
//! - field `real`, `double` or `integer`; `pattern` in coordinate format (every listed entry is 1);
//! - symmetry `general`, `symmetric` (array: lower triangle with diagonal, column by column;
//!   coordinate: an off-diagonal entry `(i, j)` also sets `(j, i)`), `skew-symmetric`
//!   (array: strictly lower triangle; coordinate: off-diagonal entries only, `(j, i) = −(i, j)`).
//!
//! Rejected with a message: `complex` and `hermitian` (no complex support), a missing or
//! malformed banner or size line, wrong entry counts, indices out of range, non-numeric or
//! non-finite values, and text after the last entry. Lines starting with `%` after the banner
//! are comments; blank lines are skipped.

use super::error::line_err;
use super::{DenseMatrix, ReadError, check_shape, parse_finite, shorten};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sym {
    General,
    Symmetric,
    Skew,
}

/// Parses Matrix Market text into a dense matrix.
pub fn read_mtx(text: &str) -> Result<DenseMatrix, ReadError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let (ln, banner) = lines.next().ok_or_else(|| ReadError::Truncated {
        expected: "the banner '%%MatrixMarket matrix <format> <field> <symmetry>'".into(),
    })?;
    let toks: Vec<String> = banner
        .split_whitespace()
        .map(|t| t.to_ascii_lowercase())
        .collect();
    if toks.first().map(String::as_str) != Some("%%matrixmarket") {
        return Err(line_err(
            ln,
            format!(
                "expected the banner '%%MatrixMarket matrix <format> <field> <symmetry>', found '{}'",
                shorten(banner)
            ),
        ));
    }
    if toks.len() != 5 {
        return Err(line_err(
            ln,
            format!(
                "the banner needs 4 words after %%MatrixMarket (matrix <format> <field> <symmetry>), found {}",
                toks.len() - 1
            ),
        ));
    }
    if toks[1] != "matrix" {
        return Err(line_err(
            ln,
            format!("unsupported object '{}': expected 'matrix'", toks[1]),
        ));
    }
    let coordinate = match toks[2].as_str() {
        "coordinate" => true,
        "array" => false,
        other => {
            return Err(line_err(
                ln,
                format!(
                    "unsupported format '{}': expected 'array' or 'coordinate'",
                    shorten(other)
                ),
            ));
        }
    };
    let pattern = match toks[3].as_str() {
        "real" | "double" | "integer" => false,
        "pattern" if coordinate => true,
        "pattern" => {
            return Err(line_err(
                ln,
                "field 'pattern' is only valid with format 'coordinate'",
            ));
        }
        other => {
            return Err(line_err(
                ln,
                format!(
                    "unsupported field '{}': expected 'real', 'integer' or 'pattern' (complex matrices are not supported)",
                    shorten(other)
                ),
            ));
        }
    };
    let sym = match toks[4].as_str() {
        "general" => Sym::General,
        "symmetric" => Sym::Symmetric,
        "skew-symmetric" => Sym::Skew,
        other => {
            return Err(line_err(
                ln,
                format!(
                    "unsupported symmetry '{}': expected 'general', 'symmetric' or 'skew-symmetric'",
                    shorten(other)
                ),
            ));
        }
    };
    // Data lines: skip comments and blanks.
    let mut data = lines.filter(|(_, l)| {
        let t = l.trim_start();
        !t.is_empty() && !t.starts_with('%')
    });
    let size_expect = if coordinate {
        "the size line 'rows cols nonzeros'"
    } else {
        "the size line 'rows cols'"
    };
    let (sln, size_line) = data.next().ok_or_else(|| ReadError::Truncated {
        expected: size_expect.into(),
    })?;
    let nums: Vec<&str> = size_line.split_whitespace().collect();
    let want = if coordinate { 3 } else { 2 };
    if nums.len() != want {
        return Err(line_err(
            sln,
            format!("expected {size_expect}, found {} fields", nums.len()),
        ));
    }
    let mut sizes = [0usize; 3];
    for (k, t) in nums.iter().enumerate() {
        sizes[k] = t.parse::<usize>().map_err(|_| {
            line_err(
                sln,
                format!(
                    "expected {size_expect} with non-negative integers, found '{}'",
                    shorten(t)
                ),
            )
        })?;
    }
    let (m, n) = (sizes[0], sizes[1]);
    check_shape(m, n)?;
    if sym != Sym::General && m != n {
        return Err(line_err(
            sln,
            format!("a symmetric or skew-symmetric matrix must be square, size line says {m}x{n}"),
        ));
    }
    let mut a = vec![0.0f64; m * n];
    let mut last_line = sln;
    if coordinate {
        let nnz = sizes[2];
        let max_nnz = match sym {
            Sym::General => m * n,
            Sym::Symmetric => n * (n + 1) / 2,
            Sym::Skew => n * (n - 1) / 2,
        };
        if nnz > max_nnz {
            return Err(line_err(
                sln,
                format!(
                    "{nnz} nonzeros declared, but a {m}x{n} matrix of this symmetry holds at most {max_nnz}"
                ),
            ));
        }
        let fields = if pattern { 2 } else { 3 };
        for k in 0..nnz {
            let (l, line) = data.next().ok_or_else(|| ReadError::Truncated {
                expected: format!("{nnz} entries after the size line, found {k}"),
            })?;
            last_line = l;
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != fields {
                return Err(line_err(
                    l,
                    format!(
                        "expected {} ('{}'), found {} fields",
                        fields,
                        if pattern { "i j" } else { "i j value" },
                        f.len()
                    ),
                ));
            }
            let idx = |t: &str, what: &str, bound: usize| -> Result<usize, ReadError> {
                let v = t.parse::<usize>().map_err(|_| {
                    line_err(
                        l,
                        format!("{what} index '{}' is not a positive integer", shorten(t)),
                    )
                })?;
                if v == 0 || v > bound {
                    return Err(line_err(
                        l,
                        format!("{what} index {v} out of range: expected 1..={bound}"),
                    ));
                }
                Ok(v - 1)
            };
            let i = idx(f[0], "row", m)?;
            let j = idx(f[1], "column", n)?;
            let v = if pattern {
                1.0
            } else {
                parse_finite(f[2]).map_err(|e| line_err(l, e))?
            };
            if sym == Sym::Skew && i == j {
                return Err(line_err(
                    l,
                    format!(
                        "skew-symmetric matrix has a diagonal entry ({}, {}): expected only off-diagonal entries",
                        i + 1,
                        j + 1
                    ),
                ));
            }
            a[i + j * m] += v;
            if i != j {
                match sym {
                    Sym::General => {}
                    Sym::Symmetric => a[j + i * m] += v,
                    Sym::Skew => a[j + i * m] -= v,
                }
            }
        }
    } else {
        // Array: column-major, general = all, symmetric = lower with diagonal, skew = strictly lower.
        let mut positions = Vec::new();
        for j in 0..n {
            let start = match sym {
                Sym::General => 0,
                Sym::Symmetric => j,
                Sym::Skew => j + 1,
            };
            for i in start..m {
                positions.push((i, j));
            }
        }
        let total = positions.len();
        for (k, &(i, j)) in positions.iter().enumerate() {
            let (l, line) = data.next().ok_or_else(|| ReadError::Truncated {
                expected: format!("{total} values after the size line, found {k}"),
            })?;
            last_line = l;
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 1 {
                return Err(line_err(
                    l,
                    format!(
                        "expected one value per line in array format, found {} fields",
                        f.len()
                    ),
                ));
            }
            let v = parse_finite(f[0]).map_err(|e| line_err(l, e))?;
            a[i + j * m] = v;
            match sym {
                Sym::General => {}
                Sym::Symmetric => a[j + i * m] = v,
                Sym::Skew => a[j + i * m] = -v,
            }
        }
    }
    if let Some((l, line)) = data.next() {
        return Err(line_err(
            l,
            format!(
                "unexpected text '{}' after the last entry (line {last_line}): the size line declares fewer entries",
                shorten(line.trim())
            ),
        ));
    }
    Ok(DenseMatrix {
        nrows: m,
        ncols: n,
        data: a,
        declared_symmetric: sym == Sym::Symmetric,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_symmetric_fills_both_triangles() {
        let t = "%%MatrixMarket matrix array real symmetric\n% c\n2 2\n4\n1\n3\n";
        let a = read_mtx(t).expect("valid");
        assert_eq!(a.data, vec![4.0, 1.0, 1.0, 3.0]);
        assert!(a.declared_symmetric);
    }

    #[test]
    fn coordinate_skew_and_duplicates() {
        let t = "%%MatrixMarket matrix coordinate real skew-symmetric\n3 3 2\n2 1 5\n3 1 -1\n";
        let a = read_mtx(t).expect("valid");
        // Column-major: (1,0) = 5, (2,0) = -1 and their negated mirrors.
        assert_eq!(a.data, vec![0.0, 5.0, -1.0, -5.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        let t = "%%MatrixMarket matrix coordinate integer general\n2 2 3\n1 1 2\n1 1 3\n2 2 1\n";
        let a = read_mtx(t).expect("valid");
        assert_eq!(a.data, vec![5.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn errors_name_the_line() {
        let t = "%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1\n3 1 1\n";
        let e = read_mtx(t).expect_err("bad index").to_string();
        assert_eq!(e, "line 4: row index 3 out of range: expected 1..=2");
    }
}
