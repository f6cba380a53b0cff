//! The `power` key of the adaptive rules: `P = 1/(v̂^power + eps)`. Power 1 against closed forms
//! and an independent scalar recursion on a diagonal quadratic; power 0.5 bit-identical to the
//! configuration without the key; f32 and f64; state save/load; validation naming the key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use precond_optim::{OptimError, Optimizer, OptimizerConfig};

/// `f(x) = ½ Σ h_i x_i²`, gradient `h ⊙ x`.
const H: [f64; 4] = [100.0, 10.0, 1.0, 0.01];
const X0: [f64; 4] = [1.0, -2.0, 0.5, 3.0];

fn build(json: &str) -> Optimizer {
    OptimizerConfig::from_json(json)
        .unwrap()
        .build(H.len())
        .unwrap()
}

fn grad(x: &[f64]) -> Vec<f64> {
    x.iter().zip(H).map(|(x, h)| h * x).collect()
}

/// Adam with `P = 1/(v̂^power + eps)`, written out per element in `f64` (Kingma & Ba's
/// algorithm with the bias corrections applied to `m` and `v`).
fn adam_reference(lr: f64, b1: f64, b2: f64, eps: f64, power: f64, steps: usize) -> Vec<f64> {
    let mut x = X0.to_vec();
    let (mut m, mut v) = (vec![0.0; 4], vec![0.0; 4]);
    for k in 1..=steps {
        let g = grad(&x);
        for i in 0..4 {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let mh = m[i] / (1.0 - b1.powi(k as i32));
            let vh = v[i] / (1.0 - b2.powi(k as i32));
            x[i] -= lr * mh / (vh.powf(power) + eps);
        }
    }
    x
}

fn run_f64(o: &mut Optimizer, steps: usize) -> Vec<f64> {
    let mut x = X0.to_vec();
    for _ in 0..steps {
        let g = grad(&x);
        o.step_f64(&mut x, &g).unwrap();
    }
    x
}

fn run_f32(o: &mut Optimizer, steps: usize) -> Vec<f32> {
    let mut x: Vec<f32> = X0.iter().map(|&v| v as f32).collect();
    for _ in 0..steps {
        let g: Vec<f32> = x.iter().zip(H).map(|(x, h)| h as f32 * x).collect();
        o.step_f32(&mut x, &g).unwrap();
    }
    x
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

#[test]
fn power_one_first_step_is_the_closed_form() {
    // Step 1 of Adam, RMSprop (α = 0) and Adagrad has v̂ = g² exactly, so power 1 moves each
    // coordinate by η g/(g² + eps) = η/(h x₀) (up to eps), power 0.5 by η g/(|g| + eps) ≈ η sign(g).
    let (lr, eps) = (0.1, 1e-12);
    for json in [
        format!(r#"{{"optimizer": "adam", "lr": {lr}, "eps": {eps}, "power": 1}}"#),
        format!(
            r#"{{"optimizer": "adamw", "lr": {lr}, "eps": {eps}, "power": 1, "weight_decay": 0}}"#
        ),
        format!(r#"{{"optimizer": "rmsprop", "lr": {lr}, "eps": {eps}, "alpha": 0, "power": 1}}"#),
        format!(r#"{{"optimizer": "adagrad", "lr": {lr}, "eps": {eps}, "power": 1}}"#),
    ] {
        let mut o = build(&json);
        let x = run_f64(&mut o, 1);
        let mut p = vec![0.0; 4];
        o.preconditioner(&mut p).unwrap();
        for i in 0..4 {
            let g = H[i] * X0[i];
            let want = X0[i] - lr * g / (g * g + eps);
            assert!(
                close(x[i], want, 1e-14),
                "{json}: x[{i}] = {} vs {want}",
                x[i]
            );
            // observable P: 1/(v̂ + eps) = 1/(g² + eps)
            let pw = 1.0 / (g * g + eps);
            assert!(close(p[i], pw, 1e-14), "{json}: p[{i}] = {} vs {pw}", p[i]);
        }
    }
}

#[test]
fn adam_power_one_matches_the_scalar_recursion() {
    let (lr, b1, b2, eps) = (0.05, 0.9, 0.999, 1e-8);
    for power in [1.0, 0.5, 0.75, 0.25] {
        let mut o = build(&format!(
            r#"{{"optimizer": "adam", "lr": {lr}, "eps": {eps}, "power": {power}}}"#
        ));
        let steps = 6;
        let got = run_f64(&mut o, steps);
        let want = adam_reference(lr, b1, b2, eps, power, steps);
        for i in 0..4 {
            assert!(
                close(got[i], want[i], 1e-12),
                "power {power}: x[{i}] = {} vs {}",
                got[i],
                want[i]
            );
        }
        // f32: the same recursion within single-precision rounding
        let mut o = build(&format!(
            r#"{{"optimizer": "adam", "lr": {lr}, "eps": {eps}, "power": {power}}}"#
        ));
        let got = run_f32(&mut o, steps);
        for i in 0..4 {
            assert!(
                close(f64::from(got[i]), want[i], 1e-4),
                "f32 power {power}: x[{i}] = {} vs {}",
                got[i],
                want[i]
            );
        }
    }
}

#[test]
fn rmsprop_and_adagrad_power_one_match_the_scalar_recursion() {
    let (lr, eps, alpha) = (0.01, 1e-8, 0.9);
    for centered in [false, true] {
        let mut o = build(&format!(
            r#"{{"optimizer": "rmsprop", "lr": {lr}, "eps": {eps}, "alpha": {alpha}, "centered": {centered}, "power": 1}}"#
        ));
        let got = run_f64(&mut o, 5);
        let mut x = X0.to_vec();
        let (mut v, mut ga) = (vec![0.0; 4], vec![0.0; 4]);
        for _ in 0..5 {
            let g = grad(&x);
            for i in 0..4 {
                v[i] = alpha * v[i] + (1.0 - alpha) * g[i] * g[i];
                ga[i] = alpha * ga[i] + (1.0 - alpha) * g[i];
                let vb = if centered { v[i] - ga[i] * ga[i] } else { v[i] };
                x[i] -= lr * g[i] / (vb + eps);
            }
        }
        for i in 0..4 {
            assert!(close(got[i], x[i], 1e-12), "centered {centered}: x[{i}]");
        }
    }
    for power in [1.0, 0.3] {
        let init: f64 = 0.25;
        let mut o = build(&format!(
            r#"{{"optimizer": "adagrad", "lr": {lr}, "eps": {eps}, "initial_accumulator_value": {init}, "power": {power}}}"#
        ));
        // before any step: P = 1/(G₀^power + eps)
        let mut p = vec![0.0; 4];
        o.preconditioner(&mut p).unwrap();
        assert!(
            p.iter()
                .all(|&pi| close(pi, 1.0 / (init.powf(power) + eps), 1e-15))
        );
        let got = run_f64(&mut o, 5);
        let mut x = X0.to_vec();
        let mut s = [init; 4];
        for _ in 0..5 {
            let g = grad(&x);
            for i in 0..4 {
                s[i] += g[i] * g[i];
                x[i] -= lr * g[i] / (s[i].powf(power) + eps);
            }
        }
        for i in 0..4 {
            assert!(close(got[i], x[i], 1e-12), "adagrad power {power}: x[{i}]");
        }
    }
}

#[test]
fn power_half_is_bitwise_the_default() {
    for base in [
        r#""optimizer": "adam", "amsgrad": true"#,
        r#""optimizer": "adamw""#,
        r#""optimizer": "rmsprop", "centered": true, "momentum": 0.5"#,
        r#""optimizer": "adagrad", "initial_accumulator_value": 0.1"#,
    ] {
        let mut a = build(&format!("{{{base}}}"));
        let mut b = build(&format!(r#"{{{base}, "power": 0.5}}"#));
        let (xa, xb) = (run_f64(&mut a, 7), run_f64(&mut b, 7));
        assert!(
            xa.iter().zip(&xb).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{base}"
        );
        assert_eq!(a.save_state(), b.save_state(), "{base}");
        let (ya, yb) = (
            run_f32(&mut build(&format!("{{{base}}}")), 7),
            run_f32(&mut build(&format!(r#"{{{base}, "power": 0.5}}"#)), 7),
        );
        assert!(
            ya.iter().zip(&yb).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{base}"
        );
        // the default is not written: configurations serialize as before
        assert!(!b.config().to_json().contains("power"), "{base}");
        // and a power of 1 moves differently (the test can fail)
        let mut c = build(&format!(r#"{{{base}, "power": 1}}"#));
        assert_ne!(run_f64(&mut c, 7), xa, "{base}");
    }
}

#[test]
fn power_round_trips_through_json_and_state() {
    let json = r#"{"optimizer": "adam", "lr": 0.01, "power": 1}"#;
    let c = OptimizerConfig::from_json(json).unwrap();
    assert_eq!(c.power.to_bits(), 1f64.to_bits());
    let text = c.to_json();
    assert!(text.contains("\"power\""), "{text}");
    assert_eq!(OptimizerConfig::from_json(&text).unwrap(), c);
    let via_serde: OptimizerConfig = serde_json::from_str(json).unwrap();
    assert_eq!(via_serde, c);

    // 4 steps, save, 4 more; a fresh optimizer loading the state continues bitwise
    let mut a = c.build(4).unwrap();
    let mut x = X0.to_vec();
    for _ in 0..4 {
        let g = grad(&x);
        a.step_f64(&mut x, &g).unwrap();
    }
    let saved = a.save_state();
    let mut y = x.clone();
    let mut b = c.build(4).unwrap();
    b.load_state(&saved).unwrap();
    let (mut pa, mut pb) = (vec![0.0; 4], vec![0.0; 4]);
    a.preconditioner(&mut pa).unwrap();
    b.preconditioner(&mut pb).unwrap();
    assert!(pa.iter().zip(&pb).all(|(p, q)| p.to_bits() == q.to_bits()));
    for _ in 0..4 {
        let (ga, gb) = (grad(&x), grad(&y));
        a.step_f64(&mut x, &ga).unwrap();
        b.step_f64(&mut y, &gb).unwrap();
    }
    assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()));
    assert_eq!(a.save_state(), b.save_state());
}

#[test]
fn bad_power_is_refused_naming_the_key() {
    for opt in ["adam", "adamw", "rmsprop", "adagrad"] {
        for bad in ["0", "-0.5", "1.5", "1e300"] {
            let json = format!(r#"{{"optimizer": "{opt}", "power": {bad}}}"#);
            match OptimizerConfig::from_json(&json) {
                Err(OptimError::Config { key, .. }) => assert_eq!(key, "power", "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
        // a NaN set from Rust is refused by build
        let mut c = OptimizerConfig::from_json(&format!(r#"{{"optimizer": "{opt}"}}"#)).unwrap();
        c.power = f64::NAN;
        match c.build(3) {
            Err(OptimError::Config { key, .. }) => assert_eq!(key, "power"),
            other => panic!("{opt} NaN: {other:?}"),
        }
    }
    // optimizers without a second moment do not take the key
    for opt in ["sgd", "gd", "muon"] {
        let json = format!(r#"{{"optimizer": "{opt}", "power": 1}}"#);
        assert!(
            matches!(
                OptimizerConfig::from_json(&json),
                Err(OptimError::UnknownKey { .. })
            ),
            "{json}"
        );
    }
}
