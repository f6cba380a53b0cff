//! Hostile input: tampered or crafted state blobs, impossible state values, a step counter at
//! its maximum, a schedule that drives the learning rate to infinity, duplicate JSON keys. Each
//! is refused with a typed error and leaves parameters and state exactly as they were.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use precond_optim::{
    Dtype, FixedPreconditioner, MatrixShape, OptimError, Optimizer, OptimizerConfig, OptimizerKind,
    OptimizerState,
};

fn stepped(k: OptimizerKind, n: usize, steps: usize) -> (OptimizerConfig, Optimizer) {
    let mut c = OptimizerConfig::new(k);
    if k.keys().contains(&"momentum") {
        c.momentum = if k == OptimizerKind::Gd { 0.0 } else { 0.9 };
    }
    if k.keys().contains(&"preconditioner") {
        c.preconditioner = Some(FixedPreconditioner::Diagonal(vec![0.5; n]));
    }
    if k.is_matrix() {
        c.shape = Some(MatrixShape::new(2, n / 2));
    }
    let mut opt = c.build(n).unwrap();
    let mut x = vec![1.0f64; n];
    for s in 0..steps {
        let g: Vec<f64> = (0..n).map(|i| (i as f64 - 1.5) * (s + 1) as f64).collect();
        opt.step_f64(&mut x, &g).unwrap();
    }
    (c, opt)
}

#[test]
fn every_single_bit_flip_of_every_kinds_state_is_refused_and_changes_nothing() {
    for &k in OptimizerKind::ALL {
        let (_, mut opt) = stepped(k, 4, 3);
        let blob = opt.save_state();
        let before = opt.state();
        for byte in 0..blob.len() {
            for bit in 0..8 {
                let mut b = blob.clone();
                b[byte] ^= 1 << bit;
                match opt.load_state(&b) {
                    Err(OptimError::State { .. }) => {}
                    other => panic!("{k}: flip of bit {bit} of byte {byte} gave {other:?}"),
                }
                assert_eq!(opt.state(), before, "{k}: a refused load changed the state");
            }
        }
        // every truncation too
        for len in 0..blob.len() {
            assert!(opt.load_state(&blob[..len]).is_err(), "{k}: {len} bytes");
        }
        opt.load_state(&blob).unwrap();
        assert_eq!(opt.state(), before);
    }
}

/// Re-seal a hand-edited body with a valid checksum (what a careful attacker would do).
fn reseal(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32c_of(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

/// CRC-32C (Castagnoli, reflected, init and final xor `0xFFFF_FFFF`), bitwise: an independent
/// implementation of the checksum the format documents.
fn crc32c_of(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn the_documented_checksum_is_crc32c() {
    // the standard check value of CRC-32C
    assert_eq!(crc32c_of(b"123456789"), 0xE306_9283);
    let (_, opt) = stepped(OptimizerKind::Adam, 3, 2);
    let blob = opt.save_state();
    let (body, tail) = blob.split_at(blob.len() - 4);
    assert_eq!(tail, crc32c_of(body).to_le_bytes());
}

#[test]
fn crafted_sizes_are_refused_before_allocating() {
    let (_, opt) = stepped(OptimizerKind::Adam, 3, 1);
    let blob = opt.save_state();
    let body = &blob[..blob.len() - 4];
    // layout: magic 8, version 4, layout len 4 + text, dtype 1, n 8, step 8, lr 8, k 4, then
    // each array: length 8 + values
    let ll = u32::from_le_bytes(body[12..16].try_into().unwrap()) as usize;
    let at_n = 16 + ll + 1;
    let at_k = at_n + 24;
    // 4e9 arrays announced, none present
    let mut b = body[..at_k + 4].to_vec();
    b[at_k..at_k + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = OptimizerState::from_bytes(&reseal(b)).unwrap_err();
    assert!(e.to_string().contains("arrays announced"), "{e}");
    // an array announcing 2^60 values
    let mut b = body.to_vec();
    b[at_k + 4..at_k + 12].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let e = OptimizerState::from_bytes(&reseal(b)).unwrap_err();
    assert!(e.to_string().contains("announces"), "{e}");
    // n = 2^60: well-formed bytes, refused when loaded
    let mut b = body.to_vec();
    b[at_n..at_n + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let mut o2 = opt.clone();
    let e = o2.load_state(&reseal(b)).unwrap_err();
    assert!(e.to_string().contains("parameters"), "{e}");
    // a layout length far past the end
    let mut b = body.to_vec();
    b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(OptimizerState::from_bytes(&reseal(b)).is_err());
    // version 1 (no checksum) is another format
    let mut b = blob.clone();
    b[8..12].copy_from_slice(&1u32.to_le_bytes());
    let e = OptimizerState::from_bytes(&b).unwrap_err();
    assert!(e.to_string().contains("format version 1"), "{e}");
}

#[test]
fn impossible_values_in_a_well_formed_state_are_refused() {
    let (c, mut opt) = stepped(OptimizerKind::Adam, 3, 2);
    let good = opt.state();
    let names = opt.slot_names();
    let sq = names.iter().position(|s| s == "exp_avg_sq").unwrap();
    let m = names.iter().position(|s| s == "exp_avg").unwrap();
    let cases: Vec<(usize, f64, &str)> = vec![
        (sq, -1e-3, "exp_avg_sq"),
        (sq, f64::NAN, "exp_avg_sq"),
        (m, f64::INFINITY, "exp_avg"),
        (m, f64::NEG_INFINITY, "exp_avg"),
    ];
    for (j, v, name) in cases {
        let mut st = good.clone();
        st.slots[j][1] = v;
        let e = opt.load_state(&st.to_bytes()).unwrap_err();
        assert!(
            e.to_string().contains(name) && e.to_string().contains("index 1"),
            "{e}"
        );
        assert_eq!(opt.state(), good);
    }
    // a first moment may be negative
    let mut st = good.clone();
    st.slots[m][0] = -0.3;
    opt.load_state(&st.to_bytes()).unwrap();
    // an f32 state cannot hold 1e300
    let mut o32 = c.build(3).unwrap();
    let (mut x, g) = (vec![1.0f32; 3], vec![0.5f32; 3]);
    o32.step_f32(&mut x, &g).unwrap();
    let mut st = o32.state();
    assert_eq!(st.dtype, Some(Dtype::F32));
    st.slots[m][2] = 1e300;
    let e = o32.load(&st).unwrap_err();
    assert!(e.to_string().contains("index 2"), "{e}");
    // a negative or non-finite learning rate
    for lr in [-1.0, f64::NAN, f64::INFINITY] {
        let mut st = good.clone();
        st.base_lr = lr;
        assert!(matches!(
            opt.load_state(&st.to_bytes()),
            Err(OptimError::State { .. })
        ));
    }
}

#[test]
fn a_step_counter_at_its_maximum_is_an_error_not_a_wraparound() {
    let (_, mut opt) = stepped(OptimizerKind::Adam, 3, 1);
    let mut st = opt.state();
    st.step = u64::MAX;
    opt.load_state(&st.to_bytes()).unwrap();
    let mut x = vec![0.25f64; 3];
    let before = (x.clone(), opt.state());
    let e = opt.step_f64(&mut x, &[0.1, 0.2, 0.3]).unwrap_err();
    assert!(
        matches!(e, OptimError::StepCountOverflow { step: u64::MAX }),
        "{e}"
    );
    assert_eq!((x, opt.state()), before);
}

#[test]
fn a_schedule_that_drives_the_learning_rate_to_infinity_stops_before_writing() {
    // ExponentialLR with gamma = 1e100: lr_t = 1e-3 · 1e100^t is +inf from t = 4 on
    let c = OptimizerConfig::from_json(
        r#"{"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9,
            "schedule": {"kind": "exponential", "gamma": 1e100},
            "groups": [{"start": 2, "end": 4, "lr": 1e-6}]}"#,
    )
    .unwrap();
    let mut opt = c.build(4).unwrap();
    let mut x = vec![1.0f64; 4];
    let g = vec![1e-300f64; 4];
    let mut refused = None;
    for t in 0..10u64 {
        let before = (x.clone(), opt.state());
        match opt.step_f64(&mut x, &g) {
            Ok(_) => assert!(x.iter().all(|v| v.is_finite())),
            Err(OptimError::InvalidLearningRate { lr, step, start }) => {
                assert!(lr.is_infinite() && step == t + 1, "{lr} {step}");
                // the top-level range reaches inf first (1e-3 > 1e-6)
                assert_eq!(start, 0);
                assert_eq!((x.clone(), opt.state()), before);
                refused = Some(t);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(refused, Some(4), "1e-3 · 1e100^t overflows at t = 4");
}

#[test]
fn duplicate_json_keys_are_errors_naming_the_key() {
    for (json, key) in [
        (r#"{"optimizer": "adam", "lr": 1e-3, "lr": 10}"#, "lr"),
        (r#"{"optimizer": "adam", "optimizer": "sgd"}"#, "optimizer"),
        (
            r#"{"optimizer": "adam", "groups": [{"start": 0, "end": 1, "end": 2}]}"#,
            "end",
        ),
        (
            r#"{"optimizer": "adam", "regularization": {"kind": "l2", "strength": 1, "strength": 2, "space": "original"}}"#,
            "strength",
        ),
    ] {
        match OptimizerConfig::from_json(json) {
            Err(OptimError::Json(m)) => {
                assert!(m.contains(&format!("duplicate key `{key}`")), "{m}")
            }
            other => panic!("{json}: {other:?}"),
        }
    }
    // the same key in two different objects is fine
    OptimizerConfig::from_json(
        r#"{"optimizer": "adam", "lr": 1e-3, "groups": [{"start": 0, "end": 1, "lr": 1e-2}]}"#,
    )
    .unwrap();
}

#[test]
fn a_dense_preconditioner_singular_to_working_precision_is_refused() {
    // S = diag(1, 1e-10) is invertible in exact arithmetic, but P = S Sᵀ = diag(1, 1e-20) has
    // κ₂ = 1e20 > 1/(n ε): a step with it amplifies rounding by more than 1/ε
    for p in [
        FixedPreconditioner::DenseS(vec![1.0, 0.0, 0.0, 1e-10]),
        FixedPreconditioner::DenseP(vec![1.0, 0.0, 0.0, 1e-20]),
        // rank one up to rounding
        FixedPreconditioner::DenseS(vec![1.0, 1.0, 1.0, 1.0 + 1e-15]),
    ] {
        let c = OptimizerConfig::precond_gd(0.1, p.clone());
        match c.build(2) {
            Err(OptimError::NotSpd { reason }) => assert!(
                reason.contains("singular") || reason.contains("Cholesky"),
                "{p:?}: {reason}"
            ),
            other => panic!("{p:?} accepted: {other:?}"),
        }
    }
    // well inside the limit (κ₂ = 1e12): accepted
    let c =
        OptimizerConfig::precond_gd(0.1, FixedPreconditioner::DenseP(vec![1.0, 0.0, 0.0, 1e-12]));
    c.build(2).unwrap();
    // scale does not matter, only the spread: 1e-300 · I is fine
    let c = OptimizerConfig::precond_gd(
        0.1,
        FixedPreconditioner::DenseP(vec![1e-300, 0.0, 0.0, 1e-300]),
    );
    c.build(2).unwrap();
}

/// Found by the `config_json` fuzz target: JSON numbers must parse to the nearest `f64` (serde_json's
/// default fast path was one ulp off for `1e-50`), so a config round-trips through `to_json`.
#[test]
fn json_numbers_parse_correctly_rounded_and_round_trip() {
    for (key, text, want) in [
        ("eps", "1e-50", 1e-50f64),
        ("eps", "1.2345678901234567e-300", 1.2345678901234567e-300),
        ("lr", "0.30000000000000004", 0.30000000000000004),
        ("lr", "1e23", 1e23),
    ] {
        let json = format!(r#"{{"optimizer":"adagrad","{key}":{text}}}"#);
        let c = OptimizerConfig::from_json(&json).unwrap();
        let got = if key == "eps" { c.eps } else { c.lr };
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "{key} = {text} parsed as {got:e}"
        );
        let back = OptimizerConfig::from_json(&c.to_json()).unwrap();
        assert_eq!(back.to_json(), c.to_json(), "round trip of {json}");
    }
}

/// Fuzz finding `state_load_adam_huge_moment_step_writes_inf`: a state whose first moment no
/// sequence of gradients can produce beside its second moment (`|m| ≤ C_k sqrt(v)`, Cauchy–
/// Schwarz on Adam's two recursions) loaded, and the next step wrote ±inf with status OK. Such a
/// state is refused now, naming the index; states the recursions produce always load.
#[test]
fn a_first_moment_adam_cannot_produce_is_refused() {
    for kind in [OptimizerKind::Adam, OptimizerKind::Adamw] {
        let (_, mut opt) = stepped(kind, 3, 4);
        let good = opt.state();
        let names = opt.slot_names();
        let m = names.iter().position(|s| s == "exp_avg").unwrap();
        let mut st = good.clone();
        st.slots[m][2] = 1e300;
        let e = opt.load_state(&st.to_bytes()).unwrap_err();
        assert!(
            e.to_string().contains("exp_avg[2]") && e.to_string().contains("sqrt(exp_avg_sq)"),
            "{e}"
        );
        assert_eq!(opt.state(), good);
        // the finding's step: with the state refused, nothing can write inf
        let mut x = vec![1.0f64; 3];
        opt.step_f64(&mut x, &[0.1, 0.2, 0.3]).unwrap();
        assert!(x.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn adam_states_from_wildly_scaled_gradients_always_load() {
    // gradients over 48 orders of magnitude (squares within f32's range: an f32 square that
    // overflows makes v infinite, which no state file holds), sign flips, zeros, f32 squares
    // that underflow;
    // betas with β₁² < β₂ and ≥ β₂; AMSGrad
    let configs = [
        r#"{"optimizer": "adam"}"#,
        r#"{"optimizer": "adam", "amsgrad": true}"#,
        r#"{"optimizer": "adamw", "betas": [0.99, 0.9]}"#,
        r#"{"optimizer": "adam", "betas": [0.0, 0.5]}"#,
        r#"{"optimizer": "adam", "betas": [0.5, 0.0]}"#,
    ];
    assert_states_reload(&configs, 7, 120, (49, 30), 13);
}

/// Fuzz finding `state_load_shampoo_huge_filtered_grad_step_writes_inf` (session 6): a Shampoo
/// state whose filtered gradient (1.26e307) no gradients can produce beside its factors loaded,
/// and the next step wrote ±inf with status OK. `|F_ij| ≤ C_k sqrt(min(L_ii, R_jj))` per block
/// is checked at load now; states the recursions produce always load.
#[test]
fn a_shampoo_filtered_gradient_its_factors_cannot_produce_is_refused() {
    let (_, mut opt) = stepped(OptimizerKind::Shampoo, 4, 3);
    let good = opt.state();
    let names = opt.slot_names();
    let f = names.iter().position(|s| s == "filtered_grad").unwrap();
    let mut st = good.clone();
    st.slots[f][1] = -1.260_632_310_822_199e307;
    let e = opt.load_state(&st.to_bytes()).unwrap_err();
    assert!(e.to_string().contains("filtered_grad[1]"), "{e}");
    assert_eq!(opt.state(), good);
    // a factor's diagonal is a sum of squares
    let lf = names.iter().position(|s| s == "left_factor").unwrap();
    let mut st = good.clone();
    st.slots[lf][0] = -1.0;
    let e = opt.load_state(&st.to_bytes()).unwrap_err();
    assert!(e.to_string().contains("diagonal"), "{e}");
    assert_eq!(opt.state(), good);
}

#[test]
fn shampoo_states_from_wildly_scaled_gradients_always_load() {
    let configs = [
        r#"{"optimizer": "shampoo", "shape": [3, 4]}"#,
        r#"{"optimizer": "shampoo", "shape": [3, 4], "betas": [0.9, 0.999], "momentum": 0.5,
            "grafting": {"type": "adam"}}"#,
        r#"{"optimizer": "shampoo", "shape": [3, 4], "order": "F", "betas": [0.99, 0.9],
            "max_preconditioner_dim": 2, "weight_decay": 0.01,
            "use_decoupled_weight_decay": false}"#,
    ];
    assert_states_reload(&configs, 12, 60, (25, 12), 7);
}

/// Fuzz finding `state_load_soap_tampered_basis_step_writes_nan` (session 6): a SOAP state whose
/// left eigenbasis held 1.27e308 loaded, and the next step wrote NaN with status OK. Bases must
/// be orthonormal (entries in [−1, 1], unit columns) and factor diagonals ≥ 0 at load now.
#[test]
fn a_soap_basis_that_is_not_orthonormal_is_refused() {
    let (_, mut opt) = stepped(OptimizerKind::Soap, 4, 3);
    let good = opt.state();
    let names = opt.slot_names();
    let lb = names.iter().position(|s| s == "left_basis").unwrap();
    for (k, v, what) in [
        (3, 1.271_161_006_153_646_4e308, "entries in [-1, 1]"),
        (0, 0.5, "squared norm"),
    ] {
        let mut st = good.clone();
        st.slots[lb][k] = v;
        let e = opt.load_state(&st.to_bytes()).unwrap_err();
        assert!(e.to_string().contains(what), "{e}");
        assert_eq!(opt.state(), good);
    }
    let lf = names.iter().position(|s| s == "left_factor").unwrap();
    let mut st = good.clone();
    st.slots[lf][0] = -0.5;
    let e = opt.load_state(&st.to_bytes()).unwrap_err();
    assert!(e.to_string().contains("diagonal"), "{e}");
    // the untampered state loads, also after many refreshes and in f32
    for f32s in [false, true] {
        let c = OptimizerConfig::from_json(
            r#"{"optimizer": "soap", "shape": [3, 5], "precondition_frequency": 2}"#,
        )
        .unwrap();
        let mut o = c.build(15).unwrap();
        for k in 0..40usize {
            let g: Vec<f64> = (0..15)
                .map(|i| (((k * 7 + i * 13) % 17) as f64 - 8.0) * 10f64.powi((k % 9) as i32 - 4))
                .collect();
            if f32s {
                let mut x = vec![0.5f32; 15];
                let g32: Vec<f32> = g.iter().map(|&v| v as f32).collect();
                o.step_f32(&mut x, &g32).unwrap();
            } else {
                let mut x = vec![0.5f64; 15];
                o.step_f64(&mut x, &g).unwrap();
            }
        }
        let mut again = c.build(15).unwrap();
        again.load_state(&o.save_state()).unwrap();
    }
}

/// Steps every config `steps` times in f64 and f32 on `n` parameters with gradients
/// `±10^e` (`e` from `(k·7 + i·13) mod span.0 − span.1`, sign flips, zeros) and checks that the
/// state saved every `every` steps (and at the end) loads into a fresh optimizer.
fn assert_states_reload(
    configs: &[&str],
    n: usize,
    steps: usize,
    span: (usize, i32),
    every: usize,
) {
    for cfg in configs {
        let c = OptimizerConfig::from_json(cfg).unwrap();
        let mut o64 = c.build(n).unwrap();
        let mut o32 = c.build(n).unwrap();
        let mut x64 = vec![0.5f64; n];
        let mut x32 = vec![0.5f32; n];
        for k in 0..steps {
            let g: Vec<f64> = (0..n)
                .map(|i| {
                    let e = ((k * 7 + i * 13) % span.0) as i32 - span.1;
                    let s = if (k + i) % 3 == 0 { -1.0 } else { 1.0 };
                    if (k * i) % 11 == 5 {
                        0.0
                    } else {
                        s * 10f64.powi(e)
                    }
                })
                .collect();
            o64.step_f64(&mut x64, &g).unwrap();
            let g32: Vec<f32> = g.iter().map(|&v| v as f32).collect();
            o32.step_f32(&mut x32, &g32).unwrap();
            if k % every == 0 || k + 1 == steps {
                for o in [&o64, &o32] {
                    let mut again = c.build(n).unwrap();
                    again
                        .load_state(&o.save_state())
                        .unwrap_or_else(|e| panic!("{cfg} after {} steps: {e}", k + 1));
                }
            }
        }
    }
}

/// A state the allocator refuses is a typed error at the first step, not an abort: Shampoo on a
/// `2^24 × 1` matrix in one block asks for a `2^48`-element left factor (2^50 bytes in f32),
/// SOAP likewise with its factor and basis. Step count, parameters and (empty) state stay as
/// they were, and a smaller configuration still works afterwards in the same process.
#[test]
fn a_state_the_allocator_refuses_is_out_of_memory_not_an_abort() {
    let big = 1usize << 24;
    let mut x = vec![0.0f32; big];
    let mut g = vec![0.0f32; big];
    g[0] = 1.0;
    for (json, slot) in [
        (
            r#"{"optimizer": "shampoo", "shape": [16777216, 1], "max_preconditioner_dim": 16777216}"#,
            "left_factor",
        ),
        (
            r#"{"optimizer": "soap", "shape": [16777216, 1], "max_precond_dim": 16777216}"#,
            "left_factor",
        ),
    ] {
        let mut opt = OptimizerConfig::from_json(json)
            .unwrap()
            .build(big)
            .unwrap();
        let e = opt.step_f32(&mut x, &g).unwrap_err();
        match &e {
            OptimError::OutOfMemory {
                what,
                elements,
                bytes,
            } => {
                assert_eq!(what, slot, "{e}");
                assert_eq!(*elements, 1u64 << 48, "{e}");
                assert_eq!(*bytes, 1u64 << 50, "{e}");
            }
            other => panic!("{json}: expected OutOfMemory, got {other:?}"),
        }
        assert_eq!(opt.step_count(), 0);
        assert!(opt.dtype().is_none(), "no state was kept");
        assert!(x.iter().all(|&v| v == 0.0));
    }
    // the process is fine: an ordinary optimizer on the same buffer steps
    let mut opt = OptimizerConfig::from_json(r#"{"optimizer": "adam"}"#)
        .unwrap()
        .build(big)
        .unwrap();
    opt.step_f32(&mut x, &g).unwrap();
    assert_eq!(opt.step_count(), 1);
}
