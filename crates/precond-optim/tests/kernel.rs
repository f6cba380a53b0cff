//! The fused kernel: every compiled version (baseline, AVX2) and the rayon split give bit-identical
//! results; zero-coefficient parts are exact no-ops; each regularizer form matches its formula;
//! parameter groups equal separate optimizers over the sub-ranges.

#![allow(clippy::unwrap_used)]

use precond_optim::kernel::{AdamPrecond, Buffers, Elementwise, Ema, Fused, NoReg, fused_step};
use precond_optim::{
    FixedPreconditioner, OptimizerConfig, ParamGroup, RegKind, Regularization, SimdLevel, Space,
};
use proptest::prelude::*;

const CONFIGS: &[&str] = &[
    r#"{"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": true, "weight_decay": 0.01}"#,
    r#"{"optimizer": "gd", "lr": 0.1, "maximize": true}"#,
    r#"{"optimizer": "adagrad", "lr_decay": 0.1, "initial_accumulator_value": 0.3}"#,
    r#"{"optimizer": "rmsprop", "centered": true, "momentum": 0.5}"#,
    r#"{"optimizer": "rmsprop", "regularization": {"kind": "l1", "strength": 0.01, "space": "intrinsic", "proximal": true}}"#,
    r#"{"optimizer": "adam", "amsgrad": true, "weight_decay": 0.1}"#,
    r#"{"optimizer": "adamw", "weight_decay": 0.1}"#,
    r#"{"optimizer": "adamw", "regularization": {"kind": "elastic_net", "strength": 0.01, "l1_ratio": 0.3, "space": "original", "proximal": true}}"#,
    r#"{"optimizer": "sgd", "lr": 0.1, "regularization": {"kind": "l1", "strength": 0.01, "space": "original"}}"#,
];

fn data(n: usize, seed: u64, k: u64) -> Vec<f64> {
    // a cheap deterministic hash-based sequence in [-1, 1]
    (0..n as u64)
        .map(|i| {
            let mut z = (i ^ (seed << 20) ^ (k << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z ^= z >> 29;
            z = z.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z ^= z >> 32;
            (z % 20001) as f64 / 10000.0 - 1.0
        })
        .collect()
}

fn run<T: precond_optim::StepFloat>(
    cfg: &OptimizerConfig,
    n: usize,
    seed: u64,
    level: SimdLevel,
    par: usize,
) -> (Vec<u64>, Vec<u8>) {
    let mut o = cfg.build(n).unwrap();
    o.set_simd_level(level);
    o.set_parallel_threshold(par);
    let mut x: Vec<T> = data(n, seed, 0).iter().map(|&v| T::from_f64(v)).collect();
    for k in 1..4 {
        let g: Vec<T> = data(n, seed, k).iter().map(|&v| T::from_f64(v)).collect();
        o.step(&mut x, &g).unwrap();
    }
    (x.iter().map(|v| v.to_bits_u64()).collect(), o.save_state())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, rng_seed: proptest::test_runner::RngSeed::Fixed(3), ..ProptestConfig::default() })]
    #[test]
    fn all_loop_versions_and_splits_agree_bitwise(ci in 0..CONFIGS.len(), n in 1usize..3000, seed in 0u64..1000, f32_ in any::<bool>()) {
        let cfg = OptimizerConfig::from_json(CONFIGS[ci]).unwrap();
        let r = |level, par| if f32_ { run::<f32>(&cfg, n, seed, level, par) } else { run::<f64>(&cfg, n, seed, level, par) };
        let base = r(SimdLevel::Baseline, usize::MAX);
        // every level this CPU has (AVX2+FMA, AVX-512F), serial and split: the same bits
        for level in SimdLevel::available() {
            prop_assert_eq!(&base, &r(level, usize::MAX), "{:?}", level);
            prop_assert_eq!(&base, &r(level, 1), "{:?} split", level);
        }
    }
}

#[test]
fn large_parallel_step_matches_serial() {
    // above the real chunk size, with uneven length
    let n = (1 << 17) + 13;
    for t in CONFIGS {
        let cfg = OptimizerConfig::from_json(t).unwrap();
        assert_eq!(
            run::<f32>(&cfg, n, 1, SimdLevel::detect(), usize::MAX),
            run::<f32>(&cfg, n, 1, SimdLevel::detect(), 1),
            "{t}"
        );
    }
}

#[test]
fn zero_coefficient_regularizer_is_an_exact_noop() {
    let n = 257;
    let pre = AdamPrecond::<f64, false>::new(0.999, 1e-8, 3);
    let mom = Ema::<f64>::new(0.9, 1e-2, 3);
    let reg0 = Elementwise::<f64>::new(&Regularization::NONE, 0.0, 0.0, 1e-2);
    let a = Fused {
        sign: 1.0,
        pre,
        mom,
        reg: NoReg,
    };
    let b = Fused {
        sign: 1.0,
        pre,
        mom,
        reg: reg0,
    };
    let x0 = data(n, 3, 0);
    let g = data(n, 3, 1);
    let (mut v, mut m) = (
        data(n, 3, 2).iter().map(|x| x * x).collect::<Vec<_>>(),
        data(n, 3, 3),
    );
    let (mut v2, mut m2) = (v.clone(), m.clone());
    let (mut xa, mut xb) = (x0.clone(), x0);
    fused_step(
        &a,
        Buffers {
            x: &mut xa,
            g: &g,
            aux: &[],
            slots: [&mut v, &mut m, &mut []],
        },
        SimdLevel::detect(),
        usize::MAX,
    )
    .unwrap();
    fused_step(
        &b,
        Buffers {
            x: &mut xb,
            g: &g,
            aux: &[],
            slots: [&mut v2, &mut m2, &mut []],
        },
        SimdLevel::detect(),
        usize::MAX,
    )
    .unwrap();
    assert!(xa.iter().zip(&xb).all(|(p, q)| p.to_bits() == q.to_bits()));
    // length errors are reported before anything is written
    let before = xa.clone();
    let e = fused_step(
        &a,
        Buffers {
            x: &mut xa,
            g: &g,
            aux: &[],
            slots: [&mut v, &mut [], &mut []],
        },
        SimdLevel::Baseline,
        1,
    );
    assert_eq!(e.unwrap_err().what, "slot1");
    assert_eq!(xa, before);
}

/// One precond_gd step with a fixed diagonal P against each kind × space × form formula.
#[test]
fn regularizer_forms_match_their_formulas() {
    let n = 6;
    let p: Vec<f64> = vec![0.1, 0.5, 1.0, 2.0, 0.3, 0.05];
    let x: Vec<f64> = vec![1.0, -0.5, 0.02, -2.0, 0.3, -0.001];
    let g: Vec<f64> = vec![0.3, -0.2, 0.1, 0.5, -1.0, 0.0];
    let (eta, lam, r) = (0.1, 0.4, 0.25);
    let soft = |z: f64, t: f64| z.signum() * (z.abs() - t).max(0.0);
    let sgn = |v: f64| {
        if v > 0.0 {
            1.0
        } else if v < 0.0 {
            -1.0
        } else {
            0.0
        }
    };
    for kind in [RegKind::L1, RegKind::L2, RegKind::ElasticNet] {
        for space in [Space::Original, Space::Intrinsic] {
            for proximal in [false, true] {
                let (l1, l2) = match kind {
                    RegKind::L1 => (lam, 0.0),
                    RegKind::L2 => (0.0, lam),
                    _ => (lam * r, lam * (1.0 - r)),
                };
                let mut cfg =
                    OptimizerConfig::precond_gd(eta, FixedPreconditioner::Diagonal(p.clone()));
                cfg.regularization = Regularization {
                    kind,
                    strength: lam,
                    l1_ratio: r,
                    space,
                    proximal,
                };
                let mut o = cfg.build(n).unwrap();
                let mut xs = x.clone();
                o.step_f64(&mut xs, &g).unwrap();
                for i in 0..n {
                    let (pi, xi, gi) = (p[i], x[i], g[i]);
                    let z = xi - eta * pi * gi;
                    let want = match (space, proximal) {
                        (Space::Original, false) => xi - eta * pi * (gi + l2 * xi + l1 * sgn(xi)),
                        (Space::Intrinsic, false) => {
                            xi * (1.0 - eta * l2) - eta * pi * gi - eta * l1 * pi.sqrt() * sgn(xi)
                        }
                        (Space::Original, true) => soft(z, eta * l1 * pi) / (1.0 + eta * l2 * pi),
                        (Space::Intrinsic, true) => {
                            soft(z, eta * l1 * pi.sqrt()) / (1.0 + eta * l2)
                        }
                    };
                    assert!(
                        (xs[i] - want).abs() <= 4.0 * f64::EPSILON * want.abs().max(1e-3),
                        "{kind:?} {space:?} prox={proximal} i={i}: {} vs {want}",
                        xs[i]
                    );
                }
            }
        }
    }
}

#[test]
fn groups_equal_separate_optimizers() {
    let n = 20;
    let mut cfg =
        OptimizerConfig::from_json(r#"{"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.1}"#)
            .unwrap();
    let l1 = Regularization {
        kind: RegKind::L1,
        strength: 0.05,
        l1_ratio: 1.0,
        space: Space::Intrinsic,
        proximal: true,
    };
    cfg.groups = vec![
        ParamGroup {
            start: 12,
            end: 20,
            lr: Some(0.05),
            weight_decay: Some(0.0),
            regularization: None,
            ..Default::default()
        },
        ParamGroup {
            start: 3,
            end: 7,
            lr: None,
            weight_decay: None,
            regularization: Some(l1),
            ..Default::default()
        },
    ];
    let mut whole = cfg.build(n).unwrap();
    let ranges = [
        (0usize, 3usize, 0.01, 0.1, None),
        (3, 7, 0.01, 0.1, Some(l1)),
        (7, 12, 0.01, 0.1, None),
        (12, 20, 0.05, 0.0, None),
    ];
    let mut parts: Vec<_> = ranges
        .iter()
        .map(|&(a, b, lr, wd, reg)| {
            let mut c = OptimizerConfig::adamw(lr, wd);
            if let Some(r) = reg {
                c.regularization = r;
            }
            c.build(b - a).unwrap()
        })
        .collect();
    let mut x = data(n, 9, 0);
    let mut xp = x.clone();
    for k in 1..30 {
        let g = data(n, 9, k);
        whole.step_f64(&mut x, &g).unwrap();
        for (o, &(a, b, ..)) in parts.iter_mut().zip(&ranges) {
            o.step_f64(&mut xp[a..b], &g[a..b]).unwrap();
        }
    }
    assert!(x.iter().zip(&xp).all(|(p, q)| p.to_bits() == q.to_bits()));
}

/// The dispatch reports what the CPU has, and a forced level the CPU lacks falls back to the best
/// one below it.
#[test]
fn simd_levels_detected_and_forced() {
    let avail = SimdLevel::available();
    assert_eq!(avail[0], SimdLevel::Baseline);
    assert_eq!(*avail.last().unwrap(), SimdLevel::detect());
    for l in [SimdLevel::Baseline, SimdLevel::Avx2, SimdLevel::Avx512] {
        assert_eq!(l.supported(), avail.contains(&l), "{l:?}");
        let e = l.effective();
        assert!(e.supported());
        assert!(avail.contains(&e));
        if l.supported() {
            assert_eq!(e, l);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        assert_eq!(SimdLevel::Avx512.supported(), avx512);
        eprintln!("levels of this CPU: {avail:?}");
    }
}

/// One cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// `v` copied into 64-byte aligned memory, `off` elements past its start.
fn lines<T: Copy>(v: &[T], off: usize) -> Vec<Line> {
    let size = std::mem::size_of::<T>();
    let mut buf = vec![Line([0; 64]); ((v.len() + off) * size).div_ceil(64) + 1];
    // SAFETY: the buffer holds at least `(len + off) · size` bytes; `T` is `f32` or `f64`
    // (plain bits); the destination is aligned for `T` (64-byte lines, `off` whole elements).
    unsafe {
        std::ptr::copy_nonoverlapping(v.as_ptr(), buf.as_mut_ptr().cast::<T>().add(off), v.len())
    };
    buf
}

/// The `n` elements of [`lines`]'s buffer from element `off`.
fn at<T>(buf: &mut [Line], off: usize, n: usize) -> &mut [T] {
    assert!((off + n) * std::mem::size_of::<T>() <= buf.len() * 64);
    // SAFETY: in bounds (checked), aligned for `T`, borrowed from `buf` for the result's life.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<T>().add(off), n) }
}

/// Every start of `x` modulo 64 bytes (from 4 KiB on the kernel runs the elements before `x`'s
/// first 64-byte boundary apart from the vector loop), with `g` and the state at other offsets, every SIMD
/// level: each element equals the update evaluated alone, bit for bit, and the non-finite
/// detection sees an entry wherever it sits.
fn peel_case<T: precond_optim::StepFloat>() {
    use precond_optim::kernel::{ElementUpdate, MAX_SLOTS, fused_step_detect};
    let u = Fused {
        sign: T::ONE,
        pre: AdamPrecond::<T, false>::new(0.999, 1e-8, 3),
        mom: Ema::<T>::new(0.9, 1e-2, 3),
        reg: NoReg,
    };
    let lanes = 64 / std::mem::size_of::<T>();
    let to_t = |v: Vec<f64>| -> Vec<T> { v.into_iter().map(T::from_f64).collect() };
    for level in SimdLevel::available() {
        // (short ones run as one piece; from 4 KiB of `x` on, the head apart)
        for n in [
            1usize,
            2,
            lanes - 1,
            lanes,
            lanes + 1,
            3 * lanes + 5,
            200,
            1100,
            1500,
        ] {
            for off_x in 0..lanes {
                let (off_g, off_s) = ((off_x + 3) % lanes, (off_x * 5 + 1) % lanes);
                let (x0, g0) = (to_t(data(n, 7, 0)), to_t(data(n, 7, 1)));
                let v0: Vec<T> = to_t(data(n, 7, 2).iter().map(|a| a * a).collect());
                let m0 = to_t(data(n, 7, 3));
                // the reference: one element at a time
                let mut want = Vec::with_capacity(n);
                for i in 0..n {
                    let mut st = [T::ZERO; MAX_SLOTS];
                    st[0] = v0[i];
                    st[1] = m0[i];
                    let x = u.update(x0[i], g0[i], T::ZERO, &mut st);
                    want.push((x.to_bits_u64(), st[0].to_bits_u64(), st[1].to_bits_u64()));
                }
                let (mut bx, mut bg) = (lines::<T>(&x0, off_x), lines::<T>(&g0, off_g));
                let (mut bv, mut bm) =
                    (lines::<T>(&v0, off_s), lines::<T>(&m0, (off_s + 2) % lanes));
                let x = at::<T>(&mut bx, off_x, n);
                let g = at::<T>(&mut bg, off_g, n);
                let v = at::<T>(&mut bv, off_s, n);
                let m = at::<T>(&mut bm, (off_s + 2) % lanes, n);
                assert_eq!(x.as_ptr() as usize % 64, off_x * std::mem::size_of::<T>());
                let step = |x: &mut [T], g: &[T], v: &mut [T], m: &mut [T]| {
                    let b = Buffers {
                        x,
                        g,
                        aux: &[],
                        slots: [v, m, &mut []],
                    };
                    fused_step_detect(&u, b, level, usize::MAX).unwrap()
                };
                assert!(!step(x, g, v, m));
                for i in 0..n {
                    let got = (x[i].to_bits_u64(), v[i].to_bits_u64(), m[i].to_bits_u64());
                    assert_eq!(got, want[i], "{level:?} n {n} offset {off_x} element {i}");
                }
                // a non-finite gradient entry in the peeled head, and in the vector part
                for k in [0, n - 1] {
                    g[k] = T::from_f64(f64::NAN);
                    let bad = step(x, g, v, m);
                    assert!(bad, "{level:?} n {n} offset {off_x}: NaN at {k} not seen");
                    g[k] = g0[k];
                }
            }
        }
    }
}

#[test]
fn every_alignment_of_x_gives_the_elementwise_update() {
    peel_case::<f32>();
    peel_case::<f64>();
}
