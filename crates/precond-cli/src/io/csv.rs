//! CSV reader.
//!
//! One matrix row per line, fields separated by commas (or by semicolons or tabs, when the
//! first data line has no comma and has one of those). Spaces around fields are ignored, lines
//! starting with `#` and blank lines are skipped, and a UTF-8 byte-order mark is ignored.
//! **Header detection:** the first non-comment line is a header (column names, skipped) when at
//! least one of its fields is not a number; every later line must be all numbers. Quoted
//! fields are accepted in the header only. All rows must have the same number of fields.

use super::error::line_err;
use super::{DenseMatrix, MAX_ENTRIES, ReadError, check_shape, parse_finite};

/// Parses CSV text into a dense matrix.
pub fn read_csv(text: &str) -> Result<DenseMatrix, ReadError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .peekable();
    let (_, first) = *lines.peek().ok_or_else(|| ReadError::Truncated {
        expected: "at least one line of numbers".into(),
    })?;
    let delim = if first.contains(',') {
        ','
    } else if first.contains(';') {
        ';'
    } else if first.contains('\t') {
        '\t'
    } else {
        ','
    };
    let is_numeric_line = |l: &str| l.split(delim).all(|f| parse_finite(f.trim()).is_ok());
    let mut header: Option<(usize, usize)> = None;
    if !is_numeric_line(first) {
        let (hl, h) = lines.next().ok_or_else(|| ReadError::Truncated {
            expected: "a line".into(),
        })?;
        header = Some((hl, h.split(delim).count()));
    }
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let mut ncols = 0usize;
    let mut first_row_line = 0usize;
    let mut total = 0usize;
    for (l, line) in lines {
        let mut row = Vec::with_capacity(ncols);
        for (k, f) in line.split(delim).enumerate() {
            let v = parse_finite(f.trim()).map_err(|e| {
                line_err(
                    l,
                    format!(
                        "field {}: {e}{}",
                        k + 1,
                        if f.trim().is_empty() {
                            " (empty field)"
                        } else {
                            ""
                        }
                    ),
                )
            })?;
            row.push(v);
        }
        if rows.is_empty() {
            ncols = row.len();
            first_row_line = l;
            if let Some((hl, hn)) = header
                && hn != ncols
            {
                return Err(line_err(
                    l,
                    format!("expected {hn} fields (as in the header on line {hl}), found {ncols}"),
                ));
            }
        } else if row.len() != ncols {
            return Err(line_err(
                l,
                format!(
                    "expected {ncols} fields (as on line {first_row_line}), found {}",
                    row.len()
                ),
            ));
        }
        total += row.len();
        if total > MAX_ENTRIES {
            return Err(ReadError::TooLarge {
                rows: rows.len() + 1,
                cols: ncols,
                limit: MAX_ENTRIES,
            });
        }
        rows.push(row);
    }
    let m = rows.len();
    if m == 0 {
        return Err(ReadError::Truncated {
            expected: "at least one line of numbers after the header".into(),
        });
    }
    check_shape(m, ncols)?;
    let mut data = vec![0.0f64; m * ncols];
    for (i, r) in rows.iter().enumerate() {
        for (j, &v) in r.iter().enumerate() {
            data[i + j * m] = v;
        }
    }
    Ok(DenseMatrix {
        nrows: m,
        ncols,
        data,
        declared_symmetric: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_detected_and_skipped() {
        let a = read_csv("a, \"b\"\n1, 2\n3,4\n").expect("valid");
        assert_eq!((a.nrows, a.ncols), (2, 2));
        assert_eq!(a.data, vec![1.0, 3.0, 2.0, 4.0]);
        let b = read_csv("# comment\n1;2\n3;4\n").expect("valid");
        assert_eq!(b.data, vec![1.0, 3.0, 2.0, 4.0]);
    }

    #[test]
    fn ragged_row_names_line() {
        let e = read_csv("x,y\n1,2\n3\n").expect_err("ragged").to_string();
        assert_eq!(e, "line 3: expected 2 fields (as on line 2), found 1");
    }
}
