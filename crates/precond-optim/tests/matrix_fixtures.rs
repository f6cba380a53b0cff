//! Matrix optimizers against their oracles (fixtures from `tests/fixtures/make_matrix_fixtures.py`,
//! the exact semantics in `tests/fixtures/matrix_reference.md`): Muon against torch 2.15's
//! `torch.optim.Muon` with its Newton–Schulz function replaced by a float64 (float32) copy,
//! Shampoo against an independent numpy implementation of DistributedShampoo's step, SOAP against
//! pytorch-optimizer's `SOAP` in float64 (and numpy where its variant differs). Each case states
//! its tolerance (norm-wise `max|x − x_ref| / max|x_ref|`); every case also runs with the matrix
//! stored column-major (`"order": "F"`), which must give the same matrix bit for bit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use precond_optim::{OptimizerConfig, StepFloat};
use serde::Deserialize;

#[derive(Deserialize)]
struct Snap {
    step: usize,
    x: Vec<f64>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    config: serde_json::Value,
    dtype: String,
    rows: usize,
    cols: usize,
    h: Vec<f64>,
    c: Vec<f64>,
    x0: Vec<f64>,
    rtol: f64,
    snapshots: Vec<Snap>,
}

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("fixtures/matrix_optim.json")).expect("fixture parses")
}

fn xi(k: usize, p: usize) -> f64 {
    (((31 * k + 17 * p) % 23) as f64 - 11.0) / 16.0
}

/// The run of one case with the matrix stored row-major (`col_major = false`) or column-major;
/// returns the row-major snapshots.
fn run<T: StepFloat>(case: &Case, col_major: bool) -> Result<Vec<(usize, Vec<f64>)>, String> {
    let (m, n) = (case.rows, case.cols);
    let mut cfg = case.config.clone();
    if col_major {
        cfg["order"] = serde_json::json!("F");
    }
    let cfg =
        OptimizerConfig::from_value(&cfg).map_err(|e| format!("{}: config {e}", case.name))?;
    let len = m * n;
    let mut opt = cfg
        .build(len)
        .map_err(|e| format!("{}: build {e}", case.name))?;
    // storage index of row-major index p
    let at = |p: usize| if col_major { (p % n) * m + p / n } else { p };
    let mut h = vec![T::ZERO; len];
    let mut c = vec![T::ZERO; len];
    let mut x = vec![T::ZERO; len];
    for p in 0..len {
        h[at(p)] = T::from_f64(case.h[p]);
        c[at(p)] = T::from_f64(case.c[p]);
        x[at(p)] = T::from_f64(case.x0[p]);
    }
    let mut g = vec![T::ZERO; len];
    let steps = case.snapshots.last().map_or(0, |s| s.step);
    let mut out = Vec::new();
    let mut snaps = case.snapshots.iter().peekable();
    for k in 1..=steps {
        for p in 0..len {
            let i = at(p);
            g[i] = h[i] * (x[i] - c[i]) + T::from_f64(xi(k, p));
        }
        opt.step(&mut x, &g)
            .map_err(|e| format!("{}: step {k}: {e}", case.name))?;
        if snaps.peek().is_some_and(|s| s.step == k) {
            out.push((k, (0..len).map(|p| x[at(p)].to_f64()).collect()));
            snaps.next();
        }
    }
    Ok(out)
}

fn normwise(a: &[f64], b: &[f64]) -> f64 {
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let s = b.iter().map(|y| y.abs()).fold(0.0, f64::max);
    d / s.max(f64::MIN_POSITIVE)
}

fn check<T: StepFloat>(case: &Case) -> Result<f64, String> {
    let row = run::<T>(case, false)?;
    let col = run::<T>(case, true)?;
    let mut worst = 0.0f64;
    for (((k, x), (_, xc)), s) in row.iter().zip(&col).zip(&case.snapshots) {
        if x.iter().zip(xc).any(|(a, b)| a.to_bits() != b.to_bits()) {
            return Err(format!(
                "{}: step {k}: column-major storage differs",
                case.name
            ));
        }
        let e = normwise(x, &s.x);
        worst = worst.max(e);
        if e > case.rtol {
            return Err(format!(
                "{}: step {k}: error {e:.3e} > {:.0e}",
                case.name, case.rtol
            ));
        }
    }
    if row.len() != case.snapshots.len() {
        return Err(format!("{}: {} snapshots compared", case.name, row.len()));
    }
    Ok(worst)
}

fn check_optimizer(name: &str, min_cases: usize) {
    let f = fixture();
    let mut failures = Vec::new();
    let mut count = 0;
    for case in f.cases.iter().filter(|c| c.config["optimizer"] == name) {
        count += 1;
        // the fixture's tolerances are never looser than these
        let cap = if case.dtype == "f64" { 1e-10 } else { 1e-5 };
        assert!(
            case.rtol <= cap,
            "{}: rtol {} > {cap}",
            case.name,
            case.rtol
        );
        let r = if case.dtype == "f64" {
            check::<f64>(case)
        } else {
            check::<f32>(case)
        };
        match r {
            Ok(e) => eprintln!(
                "{:<40} max error {e:.2e} (rtol {:.0e})",
                case.name, case.rtol
            ),
            Err(msg) => failures.push(msg),
        }
    }
    assert!(
        count >= min_cases,
        "expected ≥ {min_cases} {name} cases, found {count}"
    );
    assert!(
        failures.is_empty(),
        "{} of {count} {name} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn muon_matches_torch() {
    check_optimizer("muon", 6);
}

#[test]
fn shampoo_matches_reference() {
    check_optimizer("shampoo", 9);
}

#[test]
fn soap_matches_reference() {
    check_optimizer("soap", 7);
}
