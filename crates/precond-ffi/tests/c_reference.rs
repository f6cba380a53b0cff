//! The per-element optimizers through the C ABI against `benches/peers/c_reference.c`: torch's
//! single-tensor updates written out as plain C loops (the reference the n = 10⁴ benchmark
//! times them against, issue 17). Its `check` mode runs five steps of SGD (plain, momentum,
//! Nesterov), Adagrad, RMSprop, Adam and AdamW in `f32` and `f64`, under the `error` and
//! `propagate` policies, from the same start and gradients on both sides, and requires every
//! parameter to agree within four roundings of its magnitude and of its movement per step.
//! The same program with every reference learning rate 1 % off must report every case as
//! failed: the comparison can fail.
//!
//! Compiled with `cc -std=c99 -O2` (ISO C: no contraction into FMAs, each operation rounds as
//! torch's do) against the static library cargo built next to this test binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

mod common;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The reference program, compiled once per test binary.
fn program() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c_reference");
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let bin = dir.join("c_reference");
        let out = Command::new("cc")
            .args([
                "-std=c99",
                "-O2",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
            ])
            .arg("-I")
            .arg(root().join("include"))
            .arg(root().join("benches/peers/c_reference.c"))
            .arg(common::static_lib())
            .args(["-lm", "-lpthread", "-ldl", "-o"])
            .arg(&bin)
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "cc failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        bin
    })
}

fn check(perturb: bool) -> (Output, Vec<String>) {
    let mut cmd = Command::new(program());
    cmd.arg("check");
    if perturb {
        cmd.env("C_REFERENCE_PERTURB", "1");
    }
    let out = cmd.output().expect("run c_reference");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (out, lines)
}

/// Every optimizer of the reference, both policies: 7 × 2 lines.
const CASES: usize = 14;

#[test]
fn every_per_element_optimizer_agrees_with_the_c_reference_loops() {
    let (out, lines) = check(false);
    assert!(
        out.status.success(),
        "{}\n{}",
        lines.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines.len(), CASES, "{}", lines.join("\n"));
    for l in &lines {
        assert!(l.starts_with("check ") && l.ends_with(" ok"), "{l}");
    }
}

#[test]
fn the_comparison_fails_when_the_reference_learning_rate_is_off() {
    let (out, lines) = check(true);
    assert_eq!(out.status.code(), Some(1), "{}", lines.join("\n"));
    assert_eq!(lines.len(), CASES, "{}", lines.join("\n"));
    for l in &lines {
        assert!(l.ends_with(" FAILED"), "{l}");
    }
}
