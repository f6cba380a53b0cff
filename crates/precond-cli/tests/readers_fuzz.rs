//! The readers never panic: random bytes, and random mutations of valid files, give either a
//! matrix or a one-line error.

use precond_cli::io::{Format, parse_bytes};
use proptest::prelude::*;

fn one_line(format: Format, bytes: &[u8]) {
    match parse_bytes(bytes, format) {
        Ok(m) => {
            assert_eq!(m.data.len(), m.nrows * m.ncols);
            assert!(m.data.iter().all(|v| v.is_finite()));
        }
        Err(e) => {
            let s = e.to_string();
            assert!(
                !s.is_empty() && !s.contains('\n'),
                "multi-line error: {s:?}"
            );
        }
    }
}

const MTX: &str = "%%MatrixMarket matrix coordinate real symmetric\n% c\n3 3 4\n1 1 2.5\n2 1 -1\n3 3 4e-3\n3 2 7\n";
const CSV: &str = "a,b,c\n1,2,3\n4.5,-6,7e2\n";

fn npy() -> Vec<u8> {
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }\n";
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&(header.len() as u16).to_le_bytes());
    v.extend_from_slice(header.as_bytes());
    for x in [1.0f64, 2.0, 3.0, 4.0] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

fn mutate(base: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let mut v = base.to_vec();
    for &(pos, b) in edits {
        let n = v.len();
        if n > 0 {
            v[pos % n] = b;
        }
    }
    v.truncate(cut.min(v.len()).max(v.len().saturating_sub(cut % 8)));
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, rng_seed: proptest::test_runner::RngSeed::Fixed(7), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        for f in [Format::Mtx, Format::Npy, Format::Csv] {
            one_line(f, &bytes);
        }
    }

    #[test]
    fn mutated_valid_files_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
    ) {
        one_line(Format::Mtx, &mutate(MTX.as_bytes(), &edits, cut));
        one_line(Format::Csv, &mutate(CSV.as_bytes(), &edits, cut));
        one_line(Format::Npy, &mutate(&npy(), &edits, cut));
    }

    #[test]
    fn mutated_text_tokens_never_panic(
        line in 0usize..8,
        token in "[0-9a-zA-Z%., +-]{0,12}",
    ) {
        let mut lines: Vec<String> = MTX.lines().map(str::to_string).collect();
        let k = line % lines.len();
        lines[k] = token.clone();
        one_line(Format::Mtx, lines.join("\n").as_bytes());
        let mut lines: Vec<String> = CSV.lines().map(str::to_string).collect();
        let k = line % lines.len();
        lines[k] = token;
        one_line(Format::Csv, lines.join("\n").as_bytes());
    }
}

#[test]
fn unmutated_bases_parse() {
    let m = parse_bytes(MTX.as_bytes(), Format::Mtx).expect("valid mtx");
    assert_eq!((m.nrows, m.ncols), (3, 3));
    assert!(m.is_symmetric());
    let c = parse_bytes(CSV.as_bytes(), Format::Csv).expect("valid csv");
    assert_eq!((c.nrows, c.ncols), (2, 3));
    let n = parse_bytes(&npy(), Format::Npy).expect("valid npy");
    assert_eq!((n.nrows, n.ncols), (2, 2));
}
