//! `precond train --grad-norm RHO[:intrinsic|coupled]`: parsing, one-line errors, and that the
//! regularizer changes the run (ρ = 0 does not).

use std::path::PathBuf;
use std::process::Command;

use precond_cli::train::parse_grad_norm;
use precond_nn::{GradNormMode, GradNormReg};

fn precond(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_precond"))
        .args(args)
        .output()
        .expect("precond runs")
}

fn out_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("precond-gn-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn parses_rho_and_mode() {
    assert_eq!(
        parse_grad_norm("0.5"),
        Ok(GradNormReg {
            rho: 0.5,
            mode: GradNormMode::Intrinsic
        })
    );
    assert_eq!(
        parse_grad_norm("1e-3:coupled"),
        Ok(GradNormReg {
            rho: 1e-3,
            mode: GradNormMode::Coupled
        })
    );
    for (bad, needle) in [
        ("x", "not a number"),
        ("0.1:sideways", "unknown mode"),
        ("-1", "≥ 0"),
        ("nan:coupled", "≥ 0"),
    ] {
        let e = parse_grad_norm(bad).expect_err(bad);
        assert!(e.contains(needle), "{bad}: {e}");
    }
}

fn final_train_loss(extra: &[&str], tag: &str) -> String {
    let dir = out_dir(tag);
    let d = dir.to_str().expect("utf-8 path");
    let mut args = vec![
        "train", "--data", "iris", "--model", "mlp:6", "--epochs", "3", "--out", d,
    ];
    args.extend_from_slice(extra);
    let out = precond(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = std::fs::read_to_string(dir.join("history.json")).expect("history.json");
    let _ = std::fs::remove_dir_all(&dir);
    h
}

#[test]
fn the_option_changes_training_and_bad_values_are_one_line_errors() {
    let plain = final_train_loss(&[], "plain");
    assert_eq!(plain, final_train_loss(&["--grad-norm", "0"], "zero"));
    assert_ne!(plain, final_train_loss(&["--grad-norm", "0.5"], "intr"));
    assert_ne!(
        plain,
        final_train_loss(&["--grad-norm", "0.5:coupled"], "coup")
    );
    let out = precond(&["train", "--data", "iris", "--grad-norm=-2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--grad-norm") && err.contains("≥ 0"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
