//! The input rules shared by `cond` and `train`: one CSV reader (header guessed only from a first
//! row with a non-number, `--header`/`--no-header` to override, empty fields are errors), and
//! the size caps (`cond --max-bytes` on regular files or standard input; `train --max-width`
//! and `--max-classes`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn precond(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_precond"))
        .args(args)
        .output()
        .expect("precond runs")
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("precond-input-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

/// The number of rows `cond` reads from `file`.
fn cond_rows(file: &Path, extra: &[&str]) -> Result<u64, String> {
    let mut args = vec!["cond", "--json", s(file)];
    args.extend_from_slice(extra);
    let out = precond(&args);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let j: Value = serde_json::from_slice(&out.stdout).expect("json");
    Ok(j["nrows"].as_u64().expect("nrows"))
}

/// The number of samples `train` reads from `file` (train + test).
fn train_rows(file: &Path, target: &str, out: &Path, extra: &[&str]) -> Result<u64, String> {
    let mut args = vec![
        "train",
        "--data",
        s(file),
        "--target",
        target,
        "--model",
        "linreg",
        "--epochs",
        "1",
        "--test-fraction",
        "0.25",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    let o = precond(&args);
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let j: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("history.json")).expect("history.json"),
    )
    .expect("parses");
    Ok(j["n_train"].as_u64().expect("n") + j["n_test"].as_u64().expect("n"))
}

#[test]
fn both_commands_read_the_same_file_the_same_way() {
    let dir = tempdir("same");
    let out = dir.join("out");
    // comments, a byte-order mark, semicolons, spaces: one dialect for both
    let numeric = dir.join("numeric.csv");
    std::fs::write(
        &numeric,
        "\u{feff}# five rows, no header\n1; 2; 3\n4;5;7\n7;8;10\n2;1;0.5\n# end\n3;3;1\n",
    )
    .expect("write");
    assert_eq!(cond_rows(&numeric, &[]), Ok(5));
    assert_eq!(train_rows(&numeric, "3", &out, &[]), Ok(5));
    // --header: the first row becomes the header, in both
    assert_eq!(cond_rows(&numeric, &["--header"]), Ok(4));
    assert_eq!(train_rows(&numeric, "3", &out, &["--header"]), Ok(4));

    let named = dir.join("named.csv");
    std::fs::write(&named, "a,b,t\n1,2,3\n4,5,7\n7,8,10\n2,1,0.5\n").expect("write");
    assert_eq!(cond_rows(&named, &[]), Ok(4));
    assert_eq!(train_rows(&named, "t", &out, &[]), Ok(4));
    // --no-header: the word is an error naming line 1 column 1, in both
    let e = cond_rows(&named, &["--no-header"]).expect_err("word as data");
    assert!(e.contains("line 1: column 1: \"a\" is not a number"), "{e}");
    let e = train_rows(&named, "3", &out, &["--no-header"]).expect_err("word as data");
    assert!(e.contains("line 1, column 1: \"a\" is not a number"), "{e}");
    let out2 = precond(&["cond", "--header", "--no-header", s(&named)]);
    assert_eq!(out2.status.code(), Some(2), "the two options conflict");

    // a first row of numbers in any spelling is data: nan is rejected, never dropped
    let nan = dir.join("nan.csv");
    std::fs::write(&nan, "nan,1,2\n3,4,5\n6,7,8\n").expect("write");
    let e = cond_rows(&nan, &[]).expect_err("nan");
    assert!(
        e.contains("line 1: column 1: non-finite value \"nan\""),
        "{e}"
    );
    let e = train_rows(&nan, "3", &out, &[]).expect_err("nan");
    assert!(
        e.contains("line 1, column 1: non-finite value \"nan\""),
        "{e}"
    );

    // an empty field is an error naming line and column, in both
    let empty = dir.join("empty.csv");
    std::fs::write(&empty, "1,,3\n3,4,5\n6,7,8\n").expect("write");
    let e = cond_rows(&empty, &[]).expect_err("empty");
    assert!(e.contains("line 1: column 2: empty field"), "{e}");
    let e = train_rows(&empty, "3", &out, &[]).expect_err("empty");
    assert!(e.contains("line 1, column 2: empty field"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cond_reads_only_regular_files_or_stdin_up_to_max_bytes() {
    let dir = tempdir("caps");
    // a device: refused before anything is read (it would grow until memory runs out)
    let out = precond(&["cond", "--format", "csv", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a regular file"), "{err}");
    // a folder too
    let out = precond(&["cond", "--format", "csv", s(&dir)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));

    let f = dir.join("m.csv");
    std::fs::write(&f, "2,0\n0,1\n").expect("write");
    assert_eq!(cond_rows(&f, &["--max-bytes", "8"]), Ok(2));
    let e = cond_rows(&f, &["--max-bytes", "7"]).expect_err("over the cap");
    assert!(
        e.contains("input longer than 7 bytes, the cap set by --max-bytes"),
        "{e}"
    );

    // standard input, capped the same way
    let run_stdin = |cap: &str, input: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_precond"))
            .args(["cond", "--format", "csv", "--max-bytes", cap, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // the program may stop reading at the cap: a broken pipe here is expected
        let _ = child.stdin.take().expect("stdin").write_all(input);
        child.wait_with_output().expect("output")
    };
    let out = run_stdin("100", b"2,0\n0,1\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("kappa2"));
    let out = run_stdin("1000", &vec![b'1'; 1 << 20]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("input longer than 1000 bytes"), "{err}");
    // standard input needs the format
    let out = precond(&["cond", "-"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--format"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn train_caps_hidden_widths_and_classes() {
    let dir = tempdir("train-caps");
    let out = dir.join("out");
    // a width past the cap is refused before the data is even read
    let o = precond(&[
        "train",
        "--data",
        "iris",
        "--model",
        "mlp:16,100000",
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err,
        "error: invalid argument --model: hidden width 100000 (layer 2) is larger than the cap 65536 set by --max-width\n"
    );
    let o = precond(&[
        "train",
        "--data",
        "iris",
        "--model",
        "mlp:16,32",
        "--max-width",
        "31",
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("hidden width 32 (layer 2)"));
    assert!(!out.exists(), "nothing written");

    // labels up to 999999999 would give a billion classes: refused before the model exists
    let f = dir.join("labels.csv");
    std::fs::write(&f, "x,label\n1,0\n2,1\n3,999999999\n4,1\n5,0\n").expect("write");
    let o = precond(&[
        "train",
        "--data",
        s(&f),
        "--target",
        "label",
        "--model",
        "logreg",
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err,
        "error: the number of classes of 'labels' (largest label 999999999): 1000000000, more than the cap 65536 set by --max-classes\n"
    );
    let o = precond(&[
        "train",
        "--data",
        "iris",
        "--max-classes",
        "2",
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains(": 3, more than the cap 2 set by --max-classes")
    );
    let o = precond(&[
        "train",
        "--data",
        "iris",
        "--max-classes",
        "3",
        "--epochs",
        "1",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn train_reads_only_regular_files_up_to_max_bytes_and_caps_config_files() {
    let dir = tempdir("train-bytes");
    let out_dir = dir.join("out");
    // a device is refused before anything is read (it would grow until memory runs out)
    let e = train_rows(Path::new("/dev/zero"), "y", &out_dir, &[]).expect_err("a device");
    assert!(
        e.contains("not a regular file: train reads regular files"),
        "{e}"
    );
    let f = dir.join("d.csv");
    let text = "a,b,y\n1,2,3\n2,3,5\n3,5,8\n5,8,13\n";
    std::fs::write(&f, text).expect("write");
    let n = text.len().to_string();
    assert_eq!(train_rows(&f, "y", &out_dir, &["--max-bytes", &n]), Ok(4));
    let short = (text.len() - 1).to_string();
    let e = train_rows(&f, "y", &out_dir, &["--max-bytes", &short]).expect_err("over the cap");
    assert!(
        e.contains(&format!(
            "input longer than {short} bytes, the cap set by --max-bytes"
        )),
        "{e}"
    );
    // an --optimizer @file of more than 16 MiB is refused by its size, before parsing
    let cfg = dir.join("big.json");
    let file = std::fs::File::create(&cfg).expect("create");
    file.set_len((16 << 20) + 1).expect("set_len");
    let spec = format!("@{}", cfg.display());
    let e = train_rows(&f, "y", &out_dir, &["--optimizer", &spec]).expect_err("big config");
    assert!(e.contains("input longer than 16777216 bytes"), "{e}");
    // a small one is read
    std::fs::write(&cfg, r#"{"optimizer": "adam", "lr": 0.01}"#).expect("write");
    assert_eq!(
        train_rows(&f, "y", &out_dir, &["--optimizer", &spec]),
        Ok(4)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
