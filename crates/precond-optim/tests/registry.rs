//! Every registered optimizer kind, through every path that consults its description: JSON
//! round trip, defaults, key acceptance (its own keys accepted, every other kind's keys
//! rejected), state slots and layout, `P_k`, save/load, both dtypes. A kind added to the
//! registry is covered here without editing this file (optax `alias_test.py` style).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use precond_optim::{
    FixedPreconditioner, MatrixShape, OptimError, OptimizerConfig, OptimizerKind,
};
use serde_json::Value;

/// A valid configuration of `k` with torch's defaults (a fixed diagonal `P` where one is needed).
fn default_config(k: OptimizerKind, n: usize) -> OptimizerConfig {
    let mut c = OptimizerConfig::new(k);
    if k.keys().contains(&"preconditioner") {
        c.preconditioner = Some(FixedPreconditioner::Diagonal(
            (0..n).map(|i| 0.5 + i as f64 / n as f64).collect(),
        ));
    }
    if k.is_matrix() {
        c.shape = Some(MatrixShape::new(2, n / 2));
    }
    c
}

/// A JSON value of the right type for `key` (not necessarily in range for every kind).
fn sample_value(key: &str, n: usize) -> Value {
    match key {
        "betas" => serde_json::json!([0.8, 0.99]),
        "nesterov" | "amsgrad" | "centered" => Value::Bool(false),
        "preconditioner" => serde_json::json!({"diag": vec![1.0; n]}),
        "use_decoupled_weight_decay" | "use_bias_correction" | "normalize_grads"
        | "correct_bias" => Value::Bool(true),
        "ns_coefficients" => serde_json::json!([3.4445, -4.775, 2.0315]),
        "ns_steps" | "max_preconditioner_dim" | "precondition_frequency" | "max_precond_dim"
        | "start_preconditioning_step" => serde_json::json!(2),
        "adjust_lr_fn" => serde_json::json!("original"),
        "grafting" => serde_json::json!({"type": "adam"}),
        _ => serde_json::json!(0.1),
    }
}

#[test]
fn registry_names_are_unique_and_round_trip() {
    let mut names: Vec<&str> = OptimizerKind::ALL.iter().map(|k| k.name()).collect();
    for &k in OptimizerKind::ALL {
        assert_eq!(OptimizerKind::from_name(k.name()), Some(k));
        assert_eq!(k.to_string(), k.name());
        let v = serde_json::to_value(k).unwrap();
        assert_eq!(serde_json::from_value::<OptimizerKind>(v).unwrap(), k);
    }
    names.sort_unstable();
    names.dedup();
    assert_eq!(
        names.len(),
        OptimizerKind::ALL.len(),
        "duplicate JSON names"
    );
    assert!(OptimizerKind::from_name("no_such_optimizer").is_none());
}

#[test]
fn every_kind_round_trips_through_json_and_validates() {
    for &k in OptimizerKind::ALL {
        let c = default_config(k, 4);
        c.validate()
            .unwrap_or_else(|e| panic!("{k}: defaults invalid: {e}"));
        let back = OptimizerConfig::from_json(&c.to_json())
            .unwrap_or_else(|e| panic!("{k}: {} does not parse: {e}", c.to_json()));
        assert_eq!(back, c, "{k}");
        // every key the JSON form writes is a common key or one of the kind's own
        let v = c.to_value();
        for key in v.as_object().unwrap().keys() {
            assert!(
                OptimizerConfig::COMMON_KEYS.contains(&key.as_str())
                    || k.keys().contains(&key.as_str()),
                "{k} writes `{key}` which it does not accept"
            );
        }
    }
}

#[test]
fn own_keys_accepted_other_kinds_keys_named_in_the_error() {
    let n = 3;
    for &k in OptimizerKind::ALL {
        let base = default_config(k, n).to_value();
        for &other in OptimizerKind::ALL {
            for &key in other.keys() {
                let mut v = base.clone();
                v[key] = sample_value(key, n);
                let r = OptimizerConfig::from_value(&v);
                if k.keys().contains(&key) {
                    // accepted by the parser (a value may still be out of this kind's range)
                    assert!(
                        !matches!(r, Err(OptimError::UnknownKey { .. })),
                        "{k}: own key `{key}` rejected as unknown"
                    );
                } else {
                    match r {
                        Err(OptimError::UnknownKey { key: got, message }) => {
                            assert_eq!(got, key);
                            assert!(message.contains(k.name()), "{message}");
                        }
                        other => panic!("{k}: `{key}` of {other:?} not rejected"),
                    }
                }
            }
        }
    }
}

#[test]
fn every_kind_steps_observes_and_saves_in_both_dtypes() {
    let n = 6;
    for &k in OptimizerKind::ALL {
        let c = default_config(k, n);
        let mut opt = c.build(n).unwrap();
        let slots = opt.slot_names();
        let tag = if k.is_matrix() {
            format!("{}(2x3)", k.name())
        } else {
            k.name().to_string()
        };
        assert_eq!(opt.layout(), format!("{tag}:{}", slots.join(",")));
        let mut x: Vec<f64> = (0..n).map(|i| 1.0 - 0.3 * i as f64).collect();
        let g: Vec<f64> = (0..n).map(|i| 0.2 * i as f64 - 0.4).collect();
        let x0 = x.clone();
        for _ in 0..3 {
            opt.step_f64(&mut x, &g).unwrap();
        }
        assert!(
            x.iter().zip(&x0).any(|(a, b)| a.to_bits() != b.to_bits()),
            "{k}: three steps changed nothing"
        );
        if k.is_matrix() {
            // the matrix preconditioner: at least one finite multiplier or basis
            let mp = opt.matrix_preconditioner(None).unwrap();
            assert_eq!((mp.rows, mp.cols), (2, 3), "{k}");
            let b = &mp.blocks[0];
            let mats = [&b.left, &b.right, &b.left_basis, &b.right_basis];
            assert!(mats.iter().any(|m| m.is_some()), "{k}: {mp:?}");
            for m in mats.into_iter().flatten() {
                assert!(m.iter().all(|v| v.is_finite()), "{k}: {m:?}");
            }
            assert!(matches!(
                opt.preconditioner(&mut vec![0.0; n]),
                Err(OptimError::Unsupported(_))
            ));
        } else {
            let mut p = vec![0.0; n];
            opt.preconditioner(&mut p).unwrap();
            assert!(
                p.iter().all(|v| v.is_finite() && *v > 0.0),
                "{k}: P_k = {p:?}"
            );
        }
        let st = opt.state();
        assert_eq!(st.slots.len(), slots.len(), "{k}");
        for j in 0..slots.len() {
            assert_eq!(opt.slot::<f64>(j).unwrap().len(), st.slots[j].len(), "{k} slot {j}");
        }
        if !slots.is_empty() {
            assert_eq!(
                opt.slot::<f64>(0).unwrap().len(),
                n,
                "{k}: the first slot is per element"
            );
        }
        assert!(opt.slot::<f64>(slots.len()).is_none());
        // save, continue two ways, compare bitwise
        let bytes = opt.save_state();
        let mut other = c.build(n).unwrap();
        other.load_state(&bytes).unwrap();
        let (mut xa, mut xb) = (x.clone(), x.clone());
        opt.step_f64(&mut xa, &g).unwrap();
        other.step_f64(&mut xb, &g).unwrap();
        assert!(
            xa.iter().zip(&xb).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{k}"
        );
        // f32 from a fresh optimizer: same first step to f32 rounding
        let mut o32 = c.build(n).unwrap();
        let mut o64 = c.build(n).unwrap();
        let mut x32: Vec<f32> = x0.iter().map(|&v| v as f32).collect();
        let g32: Vec<f32> = g.iter().map(|&v| v as f32).collect();
        let mut x64: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
        let g64: Vec<f64> = g32.iter().map(|&v| f64::from(v)).collect();
        o32.step_f32(&mut x32, &g32).unwrap();
        o64.step_f64(&mut x64, &g64).unwrap();
        for (a, b) in x32.iter().zip(&x64) {
            let tol = 8.0 * f64::from(f32::EPSILON) * b.abs().max(1.0);
            assert!((f64::from(*a) - b).abs() <= tol, "{k}: f32 {a} vs f64 {b}");
        }
        // the other dtype is refused once state exists
        assert!(matches!(
            o32.step_f64(&mut x64, &g64),
            Err(OptimError::DtypeMismatch { .. })
        ));
    }
}
