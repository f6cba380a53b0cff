//! CSV reader: the workspace's one CSV reader, [`precond_nn::data::parse_csv_with`], whose
//! rows become the matrix rows.
//!
//! Its dialect and header rule, in short: `#` comment lines skipped, `,` (or `;`/tab when the
//! first row has no comma) between fields, spaces around fields ignored; the first row is a
//! header when at least one of its non-empty fields is not a number in Rust's `f64` syntax
//! (which includes `nan`, `inf`, `-inf`, `1e3`), unless `--header`/`--no-header` say otherwise;
//! every data value must be a finite number, an empty field is an error naming its line and
//! column, and every row has the same number of fields.

use precond_nn::NnError;
use precond_nn::data::{CsvHeader, CsvOptions, parse_csv_with};

use super::error::line_err;
use super::{DenseMatrix, MAX_ENTRIES, ReadError, check_shape};

/// Parses CSV text into a dense matrix, the header guessed ([`CsvHeader::Auto`]).
///
/// # Errors
/// As [`read_csv_with`].
pub fn read_csv(text: &str) -> Result<DenseMatrix, ReadError> {
    read_csv_with(text, CsvHeader::Auto)
}

/// Parses CSV text into a dense matrix with the header rule `header`.
///
/// # Errors
/// [`ReadError::Line`] naming the line and column of the first problem (also for more than
/// [`MAX_ENTRIES`] values: reading stops there); [`ReadError::Empty`] or
/// [`ReadError::TooLarge`] from the shape check.
pub fn read_csv_with(text: &str, header: CsvHeader) -> Result<DenseMatrix, ReadError> {
    let opts = CsvOptions {
        header,
        max_values: MAX_ENTRIES,
    };
    let table = parse_csv_with(text, &opts).map_err(|e| match e {
        NnError::Csv {
            line,
            column: 0,
            reason,
        } => line_err(line, reason),
        NnError::Csv {
            line,
            column,
            reason,
        } => line_err(line, format!("column {column}: {reason}")),
        other => line_err(0, other.to_string()),
    })?;
    let (m, n) = (table.nrows(), table.ncols());
    check_shape(m, n)?;
    let mut data = vec![0.0f64; m * n];
    for i in 0..m {
        for (j, &v) in table.row(i).iter().enumerate() {
            data[i + j * m] = v;
        }
    }
    Ok(DenseMatrix {
        nrows: m,
        ncols: n,
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
        assert_eq!(
            e,
            "line 3: column 2: expected 2 fields (as in the header on line 1), found 1"
        );
    }

    #[test]
    fn header_rule_and_overrides() {
        // a first row of numbers in any accepted spelling is data, so nan is reported
        let e = read_csv("nan,1,2\n3,4,5\n")
            .expect_err("nan is data")
            .to_string();
        assert_eq!(
            e,
            "line 1: column 1: non-finite value \"nan\": expected a finite number"
        );
        let e = read_csv("1,,3\n4,5,6\n")
            .expect_err("empty field")
            .to_string();
        assert_eq!(e, "line 1: column 2: empty field: expected a number");
        // --no-header: a non-numeric first row is an error, not a header
        let e = read_csv_with("a,b\n1,2\n", CsvHeader::Absent)
            .expect_err("no header")
            .to_string();
        assert_eq!(e, "line 1: column 1: \"a\" is not a number");
        // --header: a numeric first row is dropped as the header
        let m = read_csv_with("1,2\n3,4\n", CsvHeader::Present).expect("header");
        assert_eq!((m.nrows, m.ncols, m.data.clone()), (1, 2, vec![3.0, 4.0]));
    }
}
