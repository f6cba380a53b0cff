//! A step never writes a NaN or an infinity made from finite inputs (policies `"error"` and
//! `"skip"`): `learning rate × update`, a moment or a factor that leaves the float range is
//! refused before anything is written (`OptimError::NonFiniteUpdate`), and nothing else is.
//!
//! The truth each case is checked against is the unchecked computation itself: the same
//! optimizer with `"nonfinite": "propagate"` (torch's semantics, nothing checked) run on the same
//! inputs. The checked step must fail exactly when that run writes a non-finite value where the
//! value was finite, leave parameters and state bit-identical then, and otherwise produce the
//! very same bits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use precond_optim::kernel::{
    AdagradPrecond, AdamPrecond, Buffers, CoupledL2, DecoupledL2, ElementUpdate, Ema, Float, Fused,
    GuardIn, HeavyBall, Identity, MAX_SLOTS, NoMomentum, NoReg, RmsPrecond, SimdLevel, fused_step,
};
use precond_optim::{
    FixedPreconditioner, MatrixShape, NonFinitePolicy, OptimError, Optimizer, OptimizerConfig,
    OptimizerKind, StepFloat,
};
use proptest::prelude::*;

fn config(k: OptimizerKind, n: usize, policy: NonFinitePolicy) -> OptimizerConfig {
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
    c.nonfinite = policy;
    c
}

/// Every per-element slot and matrix array of the optimizer, as bits.
fn state_bits(o: &Optimizer) -> Vec<u8> {
    o.save_state()
}

fn all_finite<T: StepFloat>(v: &[T]) -> bool {
    v.iter().all(|x| x.to_f64().is_finite())
}

/// The unchecked run: did it write a non-finite parameter (where the old one was finite) or a
/// non-finite state value?
fn propagate_overflows<T: StepFloat>(o: &Optimizer, old: &[T], new: &[T]) -> bool {
    let st = o.state();
    old.iter()
        .zip(new)
        .any(|(a, b)| a.to_f64().is_finite() && !b.to_f64().is_finite())
        || st.slots.iter().any(|s| s.iter().any(|v| !v.is_finite()))
}

/// Two identical optimizers (checked and unchecked) after `warm` ordinary steps, then one step
/// with learning rate `lr` and gradient scale `gs`; the checked one must agree with the truth.
fn check_case<T: StepFloat>(
    k: OptimizerKind,
    lr: f64,
    gs: f64,
    warm: usize,
    warm_scale: f64,
    x_scale: f64,
) -> Option<bool> {
    let n = 8;
    let mut a = config(k, n, NonFinitePolicy::Error).build(n).unwrap();
    let mut b = config(k, n, NonFinitePolicy::Propagate).build(n).unwrap();
    let mut xa: Vec<T> = (0..n)
        .map(|i| T::from_f64(x_scale * (0.5 + i as f64 * 0.25)))
        .collect();
    let mut xb = xa.clone();
    for s in 0..warm {
        let g: Vec<T> = (0..n)
            .map(|i| T::from_f64(warm_scale * ((i as f64) - 3.5) * (s + 1) as f64))
            .collect();
        let ra = a.step(&mut xa, &g);
        let rb = b.step(&mut xb, &g);
        if ra.is_err() || !all_finite(&xb) {
            // the warm-up itself overflowed (huge warm_scale): covered by the final step's rule
            return None;
        }
        assert!(rb.is_ok());
        assert_eq!(state_bits(&a), state_bits(&b), "{k}: warm-up diverged");
    }
    a.set_lr(lr).unwrap();
    b.set_lr(lr).unwrap();
    let g: Vec<T> = (0..n)
        .map(|i| T::from_f64(gs * (1.0 + i as f64) * if i % 2 == 0 { 1.0 } else { -1.0 }))
        .collect();
    if !all_finite(&g) {
        return None;
    }
    let before_x = xa.clone();
    let before_state = state_bits(&a);
    let before_step = a.step_count();
    let ra = a.step(&mut xa, &g);
    b.step(&mut xb, &g).unwrap();
    let truth = propagate_overflows(&b, &before_x, &xb);
    match ra {
        Err(OptimError::NonFiniteUpdate { index }) => {
            assert!(
                truth,
                "{k} {:?} lr {lr:e} g {gs:e}: refused (index {index}) although the unchecked step stays finite",
                T::DTYPE
            );
            assert!(index < n);
            let same = xa
                .iter()
                .zip(&before_x)
                .all(|(p, q)| p.to_bits_u64() == q.to_bits_u64());
            assert!(same, "{k}: a refused step changed the parameters");
            assert_eq!(
                state_bits(&a),
                before_state,
                "{k}: a refused step changed the state"
            );
            assert_eq!(a.step_count(), before_step);
            Some(true)
        }
        Ok(_) => {
            assert!(
                !truth,
                "{k} {:?} lr {lr:e} g {gs:e}: Ok although the step overflows: {xa:?}",
                T::DTYPE
            );
            let same = xa
                .iter()
                .zip(&xb)
                .all(|(p, q)| p.to_bits_u64() == q.to_bits_u64());
            assert!(same, "{k}: the checked step computed other bits");
            assert_eq!(state_bits(&a), state_bits(&b), "{k}: other state");
            Some(false)
        }
        Err(e) => panic!("{k}: unexpected {e:?}"),
    }
}

/// Both outcomes must occur for every kind over the grid (else the grid lost its point).
fn tally(k: OptimizerKind, r: &[Option<bool>]) {
    let refused = r.iter().filter(|v| **v == Some(true)).count();
    let passed = r.iter().filter(|v| **v == Some(false)).count();
    assert!(
        refused > 0 && passed > 0,
        "{k}: {refused} refused, {passed} passed"
    );
}

#[test]
fn every_kind_refuses_exactly_the_steps_that_overflow_f64() {
    let lrs = [1e-3, 1.0, 1e150, 1e290, 1e300, 1e307, f64::MAX];
    let gss = [0.0, 1.0, 1e100, 1e154, 1e155, 1e200, 1e300, f64::MAX];
    for &k in OptimizerKind::ALL {
        let mut r = Vec::new();
        for &lr in &lrs {
            for &gs in &gss {
                r.push(check_case::<f64>(k, lr, gs, 2, 1.0, 1.0));
            }
        }
        // a state that carries a huge magnitude (the c_abi_sequence finding: gradient 5.4e92,
        // then lr 4.6e281 and a zero gradient)
        r.push(check_case::<f64>(k, 4.6e281, 0.0, 1, 5.4e92, 1.0));
        r.push(check_case::<f64>(k, 4.6e281, 1.0, 2, 5.4e92, 1.0));
        // parameters near the top of the range: decay and update push them over
        for &lr in &[1.0, 1e3, f64::MAX] {
            r.push(check_case::<f64>(k, lr, 1.0, 2, 1.0, 1e307));
        }
        tally(k, &r);
    }
}

#[test]
fn every_kind_refuses_exactly_the_steps_that_overflow_f32() {
    let lrs = [1e-3, 1.0, 1e20, 1e30, 1e36, 3e38];
    let gss = [0.0, 1.0, 1e10, 1.8e19, 2e19, 1e30, 3e38];
    for &k in OptimizerKind::ALL {
        let mut r = Vec::new();
        for &lr in &lrs {
            for &gs in &gss {
                r.push(check_case::<f32>(k, lr, gs, 2, 1.0, 1.0));
            }
        }
        r.push(check_case::<f32>(k, 1e30, 0.0, 1, 1e15, 1.0));
        // parameters near the top of the range: decay and update push them over
        for &lr in &[1.0, 1e3, 3e38] {
            r.push(check_case::<f32>(k, lr, 1.0, 2, 1.0, 1e38));
        }
        tally(k, &r);
    }
}

#[test]
fn the_fuzz_finding_is_refused_and_changes_nothing() {
    // findings/c_abi_sequence_step_writes_inf: an optimizer that stepped on 5.4e92, then
    // lr 4.6e281 and a zero gradient wrote -inf everywhere with OK. Adagrad's accumulator makes
    // it overflow for every kind with a preconditioner bounded below by eps.
    let mut hit = 0;
    for &k in OptimizerKind::ALL {
        let n = 8;
        let mut o = config(k, n, NonFinitePolicy::Error).build(n).unwrap();
        let mut x = vec![1.0f64; n];
        o.step_f64(&mut x, &[5.4e92; 8]).unwrap();
        o.set_lr(4.6e281).unwrap();
        let (x0, s0) = (x.clone(), o.save_state());
        match o.step_f64(&mut x, &[0.0; 8]) {
            Ok(_) => assert!(all_finite(&x), "{k}: {x:?}"),
            Err(OptimError::NonFiniteUpdate { .. }) => {
                hit += 1;
                assert_eq!(x, x0);
                assert_eq!(o.save_state(), s0);
            }
            Err(e) => panic!("{k}: {e}"),
        }
    }
    assert!(hit > 0, "no kind overflowed: the case lost its point");
}

#[test]
fn skip_reports_the_overflowing_step_as_skipped() {
    let n = 8;
    let mut o = config(OptimizerKind::Sgd, n, NonFinitePolicy::Skip)
        .build(n)
        .unwrap();
    let mut x = vec![1.0f64; n];
    o.set_lr(1e308).unwrap();
    let out = o.step_f64(&mut x, &[10.0; 8]).unwrap();
    assert!(!out.applied);
    assert_eq!(out.nonfinite_index, Some(0));
    assert_eq!(x, vec![1.0; n]);
    assert_eq!(o.step_count(), 0);
}

#[test]
fn a_refusal_on_the_first_step_leaves_no_state() {
    for &k in OptimizerKind::ALL {
        let n = 8;
        let mut o = config(k, n, NonFinitePolicy::Error).build(n).unwrap();
        let mut x = vec![1.0f64; n];
        o.set_lr(f64::MAX).unwrap();
        let fresh = o.save_state();
        let g: Vec<f64> = (0..n).map(|i| 1e300 * (i as f64 - 3.5)).collect();
        if let Err(OptimError::NonFiniteUpdate { .. }) = o.step_f64(&mut x, &g) {
            assert_eq!(o.save_state(), fresh, "{k}");
            assert_eq!(o.dtype(), None, "{k}: the first step's state stayed");
            assert_eq!(x, vec![1.0; n]);
        }
    }
}

/// Run `u` for real on buffers inside the bounds the guard was given, and check every new slot
/// value lies in the ranges it returned.
fn guard_encloses<T: StepFloat, U: ElementUpdate<T>>(
    u: &U,
    x: &[f64],
    g: &[f64],
    st: &[Vec<f64>; MAX_SLOTS],
) -> Result<(), TestCaseError> {
    let n = x.len();
    let mut xs: Vec<T> = x.iter().map(|&v| T::from_f64(v)).collect();
    let gs: Vec<T> = g.iter().map(|&v| T::from_f64(v)).collect();
    let mut ss: [Vec<T>; MAX_SLOTS] = [0, 1, 2].map(|j| {
        if j < U::SLOTS {
            st[j].iter().map(|&v| T::from_f64(v)).collect()
        } else {
            Vec::new()
        }
    });
    let range = |v: &[T]| {
        v.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), a| {
                (l.min(a.to_f64()), h.max(a.to_f64()))
            })
    };
    let mut r = [(0.0, 0.0); MAX_SLOTS];
    for j in 0..U::SLOTS {
        r[j] = range(&ss[j]);
    }
    let inp = GuardIn {
        g_max: gs.iter().fold(0.0, |m, v| m.max(v.to_f64().abs())),
        x_max: Some(xs.iter().fold(0.0, |m, v| m.max(v.to_f64().abs()))),
        aux: (0.0, 0.0),
        st: r,
    };
    let Some(out) = u.guard(&inp) else {
        return Ok(());
    };
    // the guard's promise (as `dry_run`'s): no finite `x_i` becomes non-finite; an `x_i` that
    // does not fit `T` (±∞ after the conversion) is the caller's and stays as it is
    let was_finite: Vec<bool> = xs.iter().map(|v| v.to_f64().is_finite()).collect();
    let [s0, s1, s2] = &mut ss;
    fused_step(
        u,
        Buffers {
            x: &mut xs,
            g: &gs,
            aux: &[],
            slots: [s0, s1, s2],
        },
        SimdLevel::detect(),
        usize::MAX,
    )
    .unwrap();
    for (i, v) in xs.iter().enumerate().take(n) {
        prop_assert!(
            v.to_f64().is_finite() || !was_finite[i],
            "x[{i}] = {v:?} after a proof"
        );
    }
    for j in 0..U::SLOTS {
        for v in &ss[j] {
            let v = v.to_f64();
            prop_assert!(
                out[j].0 <= v && v <= out[j].1,
                "slot {j}: {v} outside {:?}",
                out[j]
            );
        }
    }
    Ok(())
}

fn mag() -> impl Strategy<Value = f64> {
    (-1.0f64..1.0, -40i32..40).prop_map(|(m, e)| m * 10f64.powi(e))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(2), ..ProptestConfig::default() })]

    /// The enclosure is an enclosure: whenever the guard proves a pass finite, the real pass
    /// (f32 and f64) is finite and leaves every slot inside the ranges it announced.
    #[test]
    fn the_guard_encloses_the_real_pass(
        x in prop::collection::vec(mag(), 16),
        g in prop::collection::vec(mag(), 16),
        m in prop::collection::vec(mag(), 16),
        v in prop::collection::vec(mag(), 16),
        lr_e in -6i32..40,
        k in 1u64..50,
    ) {
        let lr = 10f64.powi(lr_e);
        let v: Vec<f64> = v.iter().map(|a| a.abs()).collect();
        let st = [v.clone(), m.clone(), Vec::new()];
        let st_m = [m.clone(), Vec::new(), Vec::new()];
        macro_rules! both {
            ($s:expr, |$t:ident| $u:expr) => {{
                {
                    type $t = f64;
                    guard_encloses::<$t, _>(&$u, &x, &g, $s)?;
                }
                {
                    type $t = f32;
                    guard_encloses::<$t, _>(&$u, &x, &g, $s)?;
                }
            }};
        }
        both!(&st, |T| Fused { sign: T::ONE, pre: AdamPrecond::<T, false>::new(0.999, 1e-8, k), mom: Ema::new(0.9, lr, k), reg: NoReg });
        both!(&st, |T| Fused { sign: -T::ONE, pre: AdamPrecond::<T, false>::new(0.99, 1e-12, k), mom: Ema::new(0.5, lr, k), reg: DecoupledL2 { factor: T::from_f64(1.0 - lr * 1e-2) } });
        both!(&st, |T| Fused { sign: T::ONE, pre: AdagradPrecond::<T>::new(1e-10), mom: NoMomentum { scale: T::from_f64(-lr) }, reg: CoupledL2 { weight_decay: T::from_f64(1e-3) } });
        both!(&st, |T| Fused { sign: T::ONE, pre: RmsPrecond::<T, true>::new(0.99, 1e-8), mom: NoMomentum { scale: T::from_f64(-lr) }, reg: NoReg });
        both!(&st_m, |T| Fused { sign: T::ONE, pre: Identity, mom: HeavyBall::<T, true, false>::new(0.9, 0.0, lr, false), reg: CoupledL2 { weight_decay: T::from_f64(5e-4) } });
        both!(&st_m, |T| Fused { sign: -T::ONE, pre: Identity, mom: HeavyBall::<T, false, true>::new(0.9, 0.1, lr, false), reg: NoReg });
    }
}

/// The guard proves ordinary training finite: no dry run (no extra read of the buffers) over
/// 2000 steps of every kind with typical gradients, f32 and f64 (centered RMSprop aside: its
/// `v − ḡ²` is not provably positive and is dry-run by design).
#[test]
fn ordinary_training_needs_no_dry_run() {
    for &k in OptimizerKind::ALL {
        for centered in [false, true] {
            if centered && k != OptimizerKind::Rmsprop {
                continue;
            }
            let n = 64;
            let mut c = config(k, n, NonFinitePolicy::Error);
            c.centered = centered;
            c.weight_decay = 1e-2;
            let mut o64 = c.build(n).unwrap();
            let mut o32 = c.build(n).unwrap();
            let mut x64 = vec![0.5f64; n];
            let mut x32 = vec![0.5f32; n];
            let mut seed = 1u64;
            for s in 0..2000 {
                let g: Vec<f64> = (0..n)
                    .map(|_| {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * (1.0 + (s % 7) as f64)
                    })
                    .collect();
                let g32: Vec<f32> = g.iter().map(|&v| v as f32).collect();
                o64.step_f64(&mut x64, &g).unwrap();
                o32.step_f32(&mut x32, &g32).unwrap();
            }
            if centered {
                assert!(o64.dry_runs() > 0, "centered RMSprop: expected dry runs");
            } else {
                assert_eq!(o64.dry_runs(), 0, "{k} f64");
                assert_eq!(o32.dry_runs(), 0, "{k} f32");
            }
        }
    }
}

/// A long buffer checked by the parallel dry run (centered RMSprop is never proven by the
/// enclosure): the first overflowing index is reported, nothing is written; without the
/// culprits the step equals the unchecked one bitwise.
#[test]
fn the_parallel_dry_run_reports_the_first_index_and_writes_nothing() {
    let n = 1 << 19;
    let mut c = config(OptimizerKind::Rmsprop, n, NonFinitePolicy::Error);
    c.centered = true;
    c.lr = 1e300;
    let mut p = c.clone();
    p.nonfinite = NonFinitePolicy::Propagate;
    let mut a = c.build(n).unwrap();
    let mut b = p.build(n).unwrap();
    let mut xa: Vec<f64> = (0..n).map(|i| (i % 97) as f64 * 1e-3).collect();
    let mut xb = xa.clone();
    // a first step on tiny gradients: the finite update stays far from overflow
    let g0: Vec<f64> = (0..n).map(|i| ((i % 13) as f64 - 6.0) * 1e-310).collect();
    a.step_f64(&mut xa, &g0).unwrap();
    b.step_f64(&mut xb, &g0).unwrap();
    assert_eq!(xa, xb);
    // then gradients whose preconditioned step is O(1) times lr = 1e300 everywhere except
    // where x is huge: place two culprits; the first one is reported
    let (k1, k2) = (300_001, 400_003);
    xa[k1] = -f64::MAX; // odd index: g = +1, the step subtracts ~1e301
    xa[k2] = -f64::MAX;
    xb.clone_from(&xa);
    let g: Vec<f64> = (0..n)
        .map(|i| if i % 2 == 0 { -1.0 } else { 1.0 })
        .collect();
    let (x0, s0) = (xa.clone(), a.save_state());
    match a.step_f64(&mut xa, &g) {
        Err(OptimError::NonFiniteUpdate { index }) => assert_eq!(index, k1),
        other => panic!("{other:?}"),
    }
    assert!(
        a.dry_runs() > 0,
        "centered RMSprop is checked by the dry run"
    );
    assert_eq!(xa, x0);
    assert_eq!(a.save_state(), s0);
    // the unchecked run agrees that those entries overflow
    b.step_f64(&mut xb, &g).unwrap();
    assert!(!xb[k1].is_finite() && !xb[k2].is_finite());
}
