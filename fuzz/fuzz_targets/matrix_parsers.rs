//! Bytes → the CLI's matrix readers (`precond_cli::io::parse_bytes_with`: Matrix Market, NumPy
//! `.npy`, CSV with each header rule) and the CSV dataset reader
//! `precond_nn::data::parse_csv_with`. The first byte selects the reader. Invariants: no panic;
//! an accepted matrix has `nrows · ncols` finite entries; an accepted table has
//! `rows · columns` finite values.

#![no_main]

use libfuzzer_sys::fuzz_target;
use precond_cli::io::{CsvHeader, Format, parse_bytes_with};
use precond_fuzz::MATRIX_SELECTORS;
use precond_nn::data::{CsvOptions, parse_csv_with};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let (format, header) = match sel as usize % MATRIX_SELECTORS {
        0 => (Some(Format::Mtx), CsvHeader::Auto),
        1 => (Some(Format::Npy), CsvHeader::Auto),
        2 => (Some(Format::Csv), CsvHeader::Auto),
        3 => (Some(Format::Csv), CsvHeader::Absent),
        4 => (None, CsvHeader::Auto),
        _ => (None, CsvHeader::Present),
    };
    match format {
        Some(f) => {
            if let Ok(m) = parse_bytes_with(body, f, header) {
                assert_eq!(m.data.len(), m.nrows * m.ncols, "entry count");
                assert!(m.nrows > 0 && m.ncols > 0, "an empty matrix was accepted");
                assert!(m.data.iter().all(|v| v.is_finite()), "non-finite entry");
                let _ = m.is_symmetric();
            }
        }
        None => {
            let Ok(text) = std::str::from_utf8(body) else {
                return;
            };
            let opts = CsvOptions {
                header,
                max_values: 1 << 20,
            };
            if let Ok(t) = parse_csv_with(text, &opts) {
                let cols = t.columns.len();
                assert!(cols > 0, "a table without columns was accepted");
                assert_eq!(t.values.len() % cols, 0, "ragged table");
                for i in 0..t.nrows() {
                    assert!(t.row(i).iter().all(|v| v.is_finite()), "non-finite value");
                }
            }
        }
    }
});
