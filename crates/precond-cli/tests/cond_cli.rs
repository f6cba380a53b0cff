//! `precond cond` end to end: the binary on committed sample files against numpy reference
//! values (`fixtures/make_fixtures.py` → `fixtures/reference.json`), and every malformed-file
//! case: non-zero exit, one error line naming the line or byte and what was expected.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn precond(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_precond"))
        .args(args)
        .output()
        .expect("the precond binary runs")
}

fn reference() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).expect("reference.json");
    match serde_json::from_str(&text).expect("reference.json parses") {
        Value::Object(m) => m,
        _ => panic!("reference.json is not an object"),
    }
}

/// Relative agreement: the SVD-based quantities are backward stable, so a condition number κ
/// is reproduced to about `κ · n · ε` relative to the other library's rounding; we allow
/// `tol_factor · n · ε · κ` (relative), floored at `64 n ε`.
fn close(got: f64, want: f64, kappa: f64, n: usize, what: &str, file: &str) {
    let tol = (64.0 * n as f64 * f64::EPSILON * kappa.max(1.0)).max(64.0 * n as f64 * f64::EPSILON);
    let rel = (got - want).abs() / want.abs();
    assert!(
        rel <= tol,
        "{file}: {what} = {got}, numpy {want}, relative error {rel:.3e} > {tol:.3e}"
    );
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

#[test]
fn cond_json_matches_numpy_on_every_fixture() {
    let refs = reference();
    assert_eq!(refs.len(), 13, "all fixtures are covered");
    for (file, r) in &refs {
        let path = fixtures().join(file);
        let out = precond(&["cond", "--json", path.to_str().expect("utf-8 path")]);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j: Value = serde_json::from_slice(&out.stdout).expect("--json output parses");
        let n = f(r, "nrows").max(f(r, "ncols")) as usize;
        assert_eq!(j["nrows"].as_u64(), r["nrows"].as_u64(), "{file}");
        assert_eq!(j["ncols"].as_u64(), r["ncols"].as_u64(), "{file}");
        assert_eq!(j["symmetric"], r["symmetric"], "{file}");
        let k = f(r, "kappa2");
        // Singular values are accurate to ε σ_max in absolute terms.
        close(
            f(&j["cond2"], "sigma_max"),
            f(r, "sigma_max"),
            1.0,
            n,
            "sigma_max",
            file,
        );
        close(
            f(&j["cond2"], "sigma_min"),
            f(r, "sigma_min"),
            k,
            n,
            "sigma_min",
            file,
        );
        close(f(&j["cond2"], "kappa"), k, k, n, "kappa2", file);
        close(
            f(&j, "row_norm_spread"),
            f(r, "row_norm_spread"),
            1.0,
            n,
            "row spread",
            file,
        );
        close(
            f(&j, "col_norm_spread"),
            f(r, "col_norm_spread"),
            1.0,
            n,
            "col spread",
            file,
        );
        if r["nrows"].as_u64() >= r["ncols"].as_u64() {
            let re = &j["row_equilibration"];
            let want = f(r, "row_equilibrated_kappa2");
            close(
                f(re, "kappa2"),
                want,
                want,
                n,
                "row equilibrated kappa2",
                file,
            );
            close(f(re, "gain"), k / want, k, n, "gain", file);
        }
        if r["ncols"].as_u64() >= r["nrows"].as_u64() {
            let want = f(r, "col_equilibrated_kappa2");
            close(
                f(&j["col_equilibration"], "kappa2"),
                want,
                want,
                n,
                "col equilibrated kappa2",
                file,
            );
        }
        if let Some(k1) = r.get("kappa1").and_then(Value::as_f64) {
            close(f(&j, "kappa1"), k1, k, n, "kappa1", file);
            // The estimate is a lower bound on kappa1 (rounding aside) and, for these small
            // matrices, within Higham's factor 3.
            let e = f(&j, "kappa1_estimate");
            assert!(
                e <= k1 * (1.0 + 1e-8) && e >= k1 / 3.0,
                "{file}: estimate {e} vs kappa1 {k1}"
            );
        } else {
            assert!(
                j["kappa1"].is_null(),
                "{file}: kappa1 only for square input"
            );
        }
        if r["symmetric"].as_bool() == Some(true) {
            let s = &j["spectrum"];
            let lmax = f(r, "lambda_max");
            close(f(s, "lambda_max"), lmax, 1.0, n, "lambda_max", file);
            // Eigenvalues are accurate to n ε |λ|_max in absolute terms.
            let lmin = f(r, "lambda_min");
            assert!(
                (f(s, "lambda_min") - lmin).abs()
                    <= 64.0 * n as f64 * f64::EPSILON * lmax.abs().max(lmin.abs()),
                "{file}: lambda_min"
            );
            assert_eq!(s["positive_definite"], r["positive_definite"], "{file}");
            if let Some(lk) = r.get("lambda_kappa").and_then(Value::as_f64) {
                close(f(s, "kappa"), lk, lk, n, "lambda kappa", file);
            } else {
                assert!(
                    s["kappa"].is_null(),
                    "{file}: indefinite means infinite kappa (null)"
                );
            }
            let sp = f(r, "smallest_positive");
            close(
                f(s, "smallest_positive"),
                sp,
                lmax / sp,
                n,
                "smallest positive",
                file,
            );
            if let Some(jk) = r.get("jacobi_scaled_kappa2").and_then(Value::as_f64) {
                close(
                    f(s, "jacobi_scaled_kappa2"),
                    jk,
                    jk,
                    n,
                    "Jacobi kappa2",
                    file,
                );
            }
        } else {
            assert!(
                j["spectrum"].is_null(),
                "{file}: no spectrum for non-symmetric input"
            );
        }
    }
}

#[test]
fn cond_text_output_names_every_quantity() {
    let path = fixtures().join("spd_coordinate_symmetric.mtx");
    let out = precond(&["cond", path.to_str().expect("utf-8")]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    for key in [
        "shape                 6 x 6, symmetric",
        "kappa2 = smax/smin",
        "kappa1 exact",
        "kappa1 estimate",
        "Cholesky",
        "row norm spread",
        "column norm spread",
        "row    equilibrated",
        "positive definite     yes",
        "smallest positive",
        "Jacobi scaled kappa2",
    ] {
        assert!(text.contains(key), "missing '{key}' in\n{text}");
    }
}

#[test]
fn format_flag_overrides_extension() {
    let dir = tempdir("fmt");
    let p = dir.join("matrix.dat");
    std::fs::write(&p, "1,2\n3,4\n").expect("write");
    let out = precond(&[
        "cond",
        "--json",
        "--format",
        "csv",
        p.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = precond(&["cond", p.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot tell the format"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("precond-cli-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn npy_bytes(version: u8, header: &str, body: &[u8]) -> Vec<u8> {
    let mut v = b"\x93NUMPY".to_vec();
    v.push(version);
    v.push(0);
    if version == 1 {
        v.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        v.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(body);
    v
}

/// Each malformed file: (name, contents, the exact error line after "error: <path>: ").
fn malformed_cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let f8 = |vals: &[f64]| -> Vec<u8> { vals.iter().flat_map(|v| v.to_le_bytes()).collect() };
    vec![
        (
            "no_banner.mtx",
            b"2 2\n1\n2\n3\n4\n".to_vec(),
            "line 1: expected the banner '%%MatrixMarket matrix <format> <field> <symmetry>', found '2 2'",
        ),
        (
            "complex.mtx",
            b"%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 1 0\n".to_vec(),
            "line 1: unsupported field 'complex': expected 'real', 'integer' or 'pattern' (complex matrices are not supported)",
        ),
        (
            "hermitian.mtx",
            b"%%MatrixMarket matrix array real hermitian\n1 1\n1\n".to_vec(),
            "line 1: unsupported symmetry 'hermitian': expected 'general', 'symmetric' or 'skew-symmetric'",
        ),
        (
            "short_banner.mtx",
            b"%%MatrixMarket matrix array real\n1 1\n1\n".to_vec(),
            "line 1: the banner needs 4 words after %%MatrixMarket (matrix <format> <field> <symmetry>), found 3",
        ),
        (
            "bad_size.mtx",
            b"%%MatrixMarket matrix coordinate real general\n% c\n2 two 1\n1 1 1\n".to_vec(),
            "line 3: expected the size line 'rows cols nonzeros' with non-negative integers, found 'two'",
        ),
        (
            "size_fields.mtx",
            b"%%MatrixMarket matrix array real general\n2 2 4\n".to_vec(),
            "line 2: expected the size line 'rows cols', found 3 fields",
        ),
        (
            "index_range.mtx",
            b"%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1\n1 3 1\n".to_vec(),
            "line 4: column index 3 out of range: expected 1..=2",
        ),
        (
            "zero_index.mtx",
            b"%%MatrixMarket matrix coordinate real general\n2 2 1\n0 1 1\n".to_vec(),
            "line 3: row index 0 out of range: expected 1..=2",
        ),
        (
            "not_number.mtx",
            b"%%MatrixMarket matrix array real general\n1 2\n1.5\n1.2.3\n".to_vec(),
            "line 4: '1.2.3' is not a number",
        ),
        (
            "nan.mtx",
            b"%%MatrixMarket matrix array real general\n1 1\nnan\n".to_vec(),
            "line 3: non-finite value NaN ('nan'): expected a finite number",
        ),
        (
            "too_few.mtx",
            b"%%MatrixMarket matrix coordinate real general\n3 3 3\n1 1 1\n2 2 1\n".to_vec(),
            "unexpected end of file: 3 entries after the size line, found 2",
        ),
        (
            "too_many.mtx",
            b"%%MatrixMarket matrix array real general\n1 1\n1\n2\n".to_vec(),
            "line 4: unexpected text '2' after the last entry (line 3): the size line declares fewer entries",
        ),
        (
            "triplet_fields.mtx",
            b"%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1\n".to_vec(),
            "line 3: expected 3 ('i j value'), found 2 fields",
        ),
        (
            "nonsquare_sym.mtx",
            b"%%MatrixMarket matrix array real symmetric\n2 3\n".to_vec(),
            "line 2: a symmetric or skew-symmetric matrix must be square, size line says 2x3",
        ),
        (
            "skew_diag.mtx",
            b"%%MatrixMarket matrix coordinate real skew-symmetric\n2 2 1\n1 1 4\n".to_vec(),
            "line 3: skew-symmetric matrix has a diagonal entry (1, 1): expected only off-diagonal entries",
        ),
        (
            "empty.mtx",
            b"%%MatrixMarket matrix array real general\n0 3\n".to_vec(),
            "empty matrix: shape 0x3, at least one row and one column are required",
        ),
        (
            "huge.mtx",
            b"%%MatrixMarket matrix coordinate real general\n100000 100000 1\n1 1 1\n".to_vec(),
            "matrix 100000x100000 is too large for dense diagnostics (at most 16777216 entries)",
        ),
        (
            "latin1.mtx",
            b"%%MatrixMarket matrix array real general\n% caf\xe9\n1 1\n1\n".to_vec(),
            "line 2: invalid UTF-8 at byte 46: expected text",
        ),
        (
            "not_npy.npy",
            b"PK\x03\x04 this is a zip".to_vec(),
            "byte 0: expected the .npy magic string \\x93NUMPY (is this a NumPy .npy file?)",
        ),
        (
            "version.npy",
            npy_bytes(4, "{}", &[]),
            "byte 6: unsupported .npy format version 4.0: expected 1.0, 2.0 or 3.0",
        ),
        (
            "int_dtype.npy",
            npy_bytes(
                1,
                "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }\n",
                &[0; 16],
            ),
            "byte 20: unsupported dtype '<i8': expected '<f8' (float64) or '<f4' (float32); convert with a.astype(np.float64)",
        ),
        (
            "complex_dtype.npy",
            npy_bytes(
                1,
                "{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }\n",
                &[0; 16],
            ),
            "byte 20: unsupported dtype '<c16': expected '<f8' (float64) or '<f4' (float32); convert with a.astype(np.float64)",
        ),
        (
            "structured.npy",
            npy_bytes(
                1,
                "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }\n",
                &[0; 8],
            ),
            "byte 20: structured dtypes are not supported: expected '<f8' or '<f4'",
        ),
        (
            "three_d.npy",
            npy_bytes(
                1,
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2, 2), }\n",
                &f8(&[1.0; 8]),
            ),
            "byte 60: unsupported 3-D array: expected a 2-D matrix (or a 1-D vector, read as a column)",
        ),
        (
            "scalar.npy",
            npy_bytes(
                1,
                "{'descr': '<f8', 'fortran_order': False, 'shape': (), }\n",
                &f8(&[1.0]),
            ),
            "byte 60: unsupported 0-D array: expected a 2-D matrix (or a 1-D vector, read as a column)",
        ),
        (
            "truncated.npy",
            npy_bytes(
                1,
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }\n",
                &f8(&[1.0, 2.0, 3.0]),
            ),
            "unexpected end of file: 4 values of 8 bytes (32 bytes) from byte 70, found 24 bytes",
        ),
        (
            "extra.npy",
            npy_bytes(
                1,
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), }\n",
                &f8(&[1.0, 2.0]),
            ),
            "byte 78: 8 extra bytes after the 1 values the header declares",
        ),
        (
            "bad_header.npy",
            npy_bytes(
                1,
                "{'descr': '<f8', 'fortran_order': maybe, 'shape': (1, 1), }\n",
                &f8(&[1.0]),
            ),
            "byte 44: expected True or False for 'fortran_order'",
        ),
        (
            "no_shape.npy",
            npy_bytes(1, "{'descr': '<f8', 'fortran_order': False}\n", &f8(&[1.0])),
            "byte 10: the header has no 'shape' key",
        ),
        (
            "inf.npy",
            npy_bytes(
                1,
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }\n",
                &f8(&[1.0, f64::INFINITY]),
            ),
            "byte 78: non-finite value inf at element (0, 1): expected a finite number",
        ),
        (
            "header_len.npy",
            b"\x93NUMPY\x01\x00\xff\x00{'descr'".to_vec(),
            "unexpected end of file: a header of 255 bytes at byte 10, file has 18 bytes",
        ),
        (
            "ragged.csv",
            b"a,b,c\n1,2,3\n4,5\n".to_vec(),
            "line 3: column 3: expected 3 fields (as in the header on line 1), found 2",
        ),
        (
            "header_width.csv",
            b"a,b\n1,2,3\n".to_vec(),
            "line 2: column 3: expected 2 fields (as in the header on line 1), found 3",
        ),
        (
            "text_in_body.csv",
            b"1,2\n3,x\n".to_vec(),
            "line 2: column 2: \"x\" is not a number",
        ),
        (
            "empty_field.csv",
            b"1,2\n3,\n".to_vec(),
            "line 2: column 2: empty field: expected a number",
        ),
        (
            "header_only.csv",
            b"a,b\n".to_vec(),
            "line 2: no data rows after the header",
        ),
        (
            "empty.csv",
            b"\n# nothing\n".to_vec(),
            "line 1: no rows: the text is empty",
        ),
    ]
}

#[test]
fn every_malformed_file_fails_with_one_clear_line() {
    let dir = tempdir("malformed");
    for (name, bytes, want) in malformed_cases() {
        let p = dir.join(name);
        std::fs::write(&p, &bytes).expect("write");
        let ps = p.to_str().expect("utf-8");
        for json in [false, true] {
            let args: Vec<&str> = if json {
                vec!["cond", "--json", ps]
            } else {
                vec!["cond", ps]
            };
            let out = precond(&args);
            assert_eq!(out.status.code(), Some(1), "{name}: exit code");
            assert!(out.stdout.is_empty(), "{name}: nothing on stdout");
            let err = String::from_utf8(out.stderr).expect("utf-8 stderr");
            assert_eq!(err, format!("error: {ps}: {want}\n"), "{name}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_file_and_help() {
    let out = precond(&["cond", "/nonexistent/x.mtx"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: /nonexistent/x.mtx: cannot read /nonexistent/x.mtx:"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    for (cmd, flag) in [
        ("cond", "--format"),
        ("report", "--quick"),
        ("train", "--target"),
    ] {
        let out = precond(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(flag),
            "{cmd} --help names {flag}"
        );
    }
}
