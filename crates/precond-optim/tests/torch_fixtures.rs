//! Trajectories against torch.optim (fixtures from `tests/fixtures/make_fixtures.py`, torch 2.x):
//! every optimizer × option combination × f32/f64, 120 steps; f64 to a relative 1e-12 per
//! element, f32 to 1e-5; the final `P_k` against THEORY.md's formula evaluated on torch's state;
//! learning-rate schedules and parameter groups against torch's schedulers and param groups.

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
    h: Vec<f64>,
    c: Vec<f64>,
    x0: Vec<f64>,
    snapshots: Vec<Snap>,
    precond: Option<Vec<f64>>,
    lrs: Option<Vec<f64>>,
}

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

fn fixture() -> Fixture {
    let text = include_str!("fixtures/torch_optim.json");
    serde_json::from_str(text).expect("fixture parses")
}

fn xi(k: usize, i: usize) -> f64 {
    (((31 * k + 17 * i) % 23) as f64 - 11.0) / 16.0
}

/// Max over elements of |a − b| / |b| (b never near zero in these problems).
fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(f64::MIN_POSITIVE))
        .fold(0.0, f64::max)
}

fn run_case<T: StepFloat>(case: &Case, rtol: f64) -> Result<f64, String> {
    let cfg = OptimizerConfig::from_value(&case.config)
        .map_err(|e| format!("{}: config {e}", case.name))?;
    let n = case.x0.len();
    let mut opt = cfg
        .build(n)
        .map_err(|e| format!("{}: build {e}", case.name))?;
    let h: Vec<T> = case.h.iter().map(|&v| T::from_f64(v)).collect();
    let c: Vec<T> = case.c.iter().map(|&v| T::from_f64(v)).collect();
    let mut x: Vec<T> = case.x0.iter().map(|&v| T::from_f64(v)).collect();
    let mut g = vec![T::ZERO; n];
    let steps = case.snapshots.last().map_or(0, |s| s.step);
    let mut worst = 0.0f64;
    let mut snaps = case.snapshots.iter().peekable();
    for k in 1..=steps {
        if let Some(lrs) = &case.lrs {
            let want = lrs[k - 1];
            let got = opt.lr();
            if (got - want).abs() > 1e-12 * want.abs() {
                return Err(format!(
                    "{}: lr at step {k}: {got} vs torch {want}",
                    case.name
                ));
            }
        }
        for i in 0..n {
            g[i] = h[i] * (x[i] - c[i]) + T::from_f64(xi(k, i));
        }
        opt.step(&mut x, &g)
            .map_err(|e| format!("{}: step {k}: {e}", case.name))?;
        if let Some(s) = snaps.peek()
            && s.step == k
        {
            let xs: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
            let e = max_rel(&xs, &s.x);
            worst = worst.max(e);
            if e > rtol {
                return Err(format!(
                    "{}: step {k}: max relative error {e:.3e} > {rtol:.0e}",
                    case.name
                ));
            }
            snaps.next();
        }
    }
    if let Some(p_torch) = &case.precond {
        let mut p = vec![0.0; n];
        opt.preconditioner(&mut p)
            .map_err(|e| format!("{}: preconditioner {e}", case.name))?;
        let e = max_rel(&p, p_torch);
        if e > rtol {
            return Err(format!(
                "{}: P_k max relative error {e:.3e} > {rtol:.0e}",
                case.name
            ));
        }
    }
    Ok(worst)
}

fn check_all(dtype: &str, rtol: f64) {
    let f = fixture();
    let mut failures = Vec::new();
    let mut count = 0;
    for case in f.cases.iter().filter(|c| c.dtype == dtype) {
        count += 1;
        let r = if dtype == "f64" {
            run_case::<f64>(case, rtol)
        } else {
            run_case::<f32>(case, rtol)
        };
        match r {
            Ok(e) => eprintln!("{:<28} max rel err {e:.2e}", case.name),
            Err(msg) => failures.push(msg),
        }
    }
    assert!(
        count >= 25,
        "expected the full matrix of {dtype} cases, found {count}"
    );
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn torch_trajectories_f64() {
    check_all("f64", 1e-12);
}

#[test]
fn torch_trajectories_f32() {
    check_all("f32", 1e-5);
}
