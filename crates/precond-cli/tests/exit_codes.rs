//! The exit statuses of `precond`: 0 success, 1 input or runtime error, 2 usage error, 3 a claim
//! of the report does not hold; and `--help` of every command lists them.

use std::process::Command;

use precond_cli::CliError;
use precond_cli::exit;
use precond_cli::report::{Check, Evidence, ExperimentResult, Report};

fn precond(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_precond"))
        .args(args)
        .output()
        .expect("precond runs")
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("precond-exit-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn success_is_0() {
    let dir = tempdir("ok");
    let f = dir.join("a.csv");
    std::fs::write(&f, "2,0\n0,1\n").expect("write");
    let out = precond(&["cond", f.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0));
    let out = precond(&["report", "--list"]);
    assert_eq!(out.status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn input_errors_are_1() {
    let dir = tempdir("input");
    let f = dir.join("bad.csv");
    std::fs::write(&f, "1,2\n3,x\n").expect("write");
    for args in [
        vec!["cond", "/nonexistent/x.mtx"],
        vec!["cond", f.to_str().expect("utf-8")],
        vec![
            "train",
            "--data",
            f.to_str().expect("utf-8"),
            "--target",
            "1",
            "--out",
            dir.join("out").to_str().expect("utf-8"),
        ],
    ] {
        let out = precond(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn usage_errors_are_2() {
    for args in [
        // clap's own errors
        vec!["cond"],
        vec!["cond", "--bogus", "x.csv"],
        vec!["nosuchcommand"],
        vec!["train", "--data", "iris", "--epochs", "many"],
        // values that parse but are rejected
        vec!["report", "--only", "nope"],
        vec!["train", "--data", "iris", "--activation", "swish"],
    ] {
        let out = precond(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn report_with(holds: &[bool]) -> Report {
    let experiments = holds
        .iter()
        .enumerate()
        .map(|(k, &h)| {
            let check = if h {
                Check::le("x", 1.0, 2.0)
            } else {
                Check::le("x", 3.0, 2.0)
            };
            ExperimentResult {
                id: format!("e{k}"),
                number: k as u32 + 1,
                title: "t".into(),
                theory: "t".into(),
                claim: "c".into(),
                verdict: if h { "holds" } else { "does not hold" }.into(),
                margin: check.margin,
                seconds: 0.0,
                evidence: Evidence {
                    checks: vec![check],
                    ..Default::default()
                },
            }
        })
        .collect();
    Report {
        version: "0".into(),
        seed: 0,
        quick: true,
        seconds: 0.0,
        holds: holds.iter().filter(|&&h| h).count(),
        experiments,
    }
}

#[test]
fn a_claim_that_does_not_hold_is_3() {
    assert_eq!(report_with(&[true, true]).exit_code(), exit::OK);
    assert_eq!(report_with(&[true, false]).exit_code(), exit::CLAIM_FAILS);
    assert_eq!(exit::CLAIM_FAILS, 3);
    // distinct from every error status
    let usage = CliError::Argument {
        arg: "--only",
        message: "x".into(),
    };
    let input = CliError::Write {
        path: "p".into(),
        message: "m".into(),
    };
    let codes = [
        exit::OK,
        input.exit_code(),
        usage.exit_code(),
        report_with(&[false]).exit_code(),
    ];
    assert_eq!(codes, [0, 1, 2, 3]);
}

#[test]
fn help_lists_the_exit_statuses() {
    for cmd in [
        vec!["--help"],
        vec!["cond", "--help"],
        vec!["train", "--help"],
        vec!["report", "--help"],
    ] {
        let out = precond(&cmd);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Exit status:"), "{cmd:?}: {text}");
        for line in [
            "0  success",
            "1  input or runtime error",
            "2  usage error",
            "3  report: a claim",
        ] {
            assert!(text.contains(line), "{cmd:?} lists '{line}'");
        }
    }
}
