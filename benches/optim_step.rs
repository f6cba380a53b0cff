//! One optimizer step of every `precond-optim` optimizer at n = 1e3 … 1e7, f32 and f64, with a
//! STREAM-like copy/triad baseline measured in the same run (the memory-bandwidth bound), the
//! baseline-vs-AVX2 loop versions, and the serial-vs-rayon crossovers used for the defaults of
//! `ParallelParams::split_bytes` and `ParallelParams::split_bytes_heavy`.
//!
//! Run: `cargo bench --bench optim_step` (a few minutes); summarize with
//! `python3 benches/peers/summarize_criterion.py`. Peer numbers: `benches/peers/optim_peers.py`.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use precond::optim::{OptimizerConfig, SimdLevel, StepFloat};
use std::time::Duration;

const OPTIMIZERS: &[(&str, &str)] = &[
    ("sgd", r#"{"optimizer": "sgd", "lr": 0.01}"#),
    (
        "sgd_momentum",
        r#"{"optimizer": "sgd", "lr": 0.01, "momentum": 0.9}"#,
    ),
    // coupled weight decay: the checked step also scans `x` (its `max |x|` enters the bound)
    (
        "sgd_momentum_wd",
        r#"{"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}"#,
    ),
    ("adagrad", r#"{"optimizer": "adagrad"}"#),
    ("rmsprop", r#"{"optimizer": "rmsprop"}"#),
    ("adam", r#"{"optimizer": "adam"}"#),
    ("adamw", r#"{"optimizer": "adamw"}"#),
    (
        "adam_prox_l1",
        r#"{"optimizer": "adam", "regularization": {"kind": "l1", "strength": 1e-4, "space": "intrinsic", "proximal": true}}"#,
    ),
];

fn setup<T: StepFloat>(json: &str, n: usize) -> (precond::optim::Optimizer, Vec<T>, Vec<T>) {
    let cfg = OptimizerConfig::from_json(json).expect("valid config");
    let mut opt = cfg.build(n).expect("builds");
    let x: Vec<T> = (0..n)
        .map(|i| T::from_f64(1.0 + (i % 97) as f64 * 1e-3))
        .collect();
    let g: Vec<T> = (0..n)
        .map(|i| T::from_f64(((i % 89) as f64 - 44.0) * 1e-3))
        .collect();
    let mut xw = x.clone();
    opt.step(&mut xw, &g).expect("first step"); // allocate state outside the timing
    (opt, xw, g)
}

fn config<'a>(
    c: &'a mut Criterion,
    name: &str,
    n: usize,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut grp = c.benchmark_group(format!("{name}_n{n}"));
    let big = n >= 1_000_000;
    grp.sample_size(if big { 10 } else { 20 })
        .warm_up_time(Duration::from_millis(if big { 300 } else { 200 }))
        .measurement_time(Duration::from_millis(if big { 1500 } else { 500 }));
    grp.throughput(Throughput::Elements(n as u64));
    grp
}

fn bench_steps(c: &mut Criterion) {
    for n in [1_000usize, 10_000, 100_000, 1_000_000, 10_000_000] {
        let mut grp = config(c, "step", n);
        for &(name, json) in OPTIMIZERS {
            // all optimizers at 1e3/1e5/1e7; the Adam family at every size
            if !(n == 1_000
                || n == 100_000
                || n == 10_000_000
                || name.starts_with("adam")
                || name == "sgd")
            {
                continue;
            }
            let (mut o, mut x, g) = setup::<f32>(json, n);
            grp.bench_function(BenchmarkId::new(format!("{name}_f32"), n), |b| {
                b.iter(|| o.step_f32(black_box(&mut x), black_box(&g)).expect("step"))
            });
            let (mut o, mut x, g) = setup::<f64>(json, n);
            grp.bench_function(BenchmarkId::new(format!("{name}_f64"), n), |b| {
                b.iter(|| o.step_f64(black_box(&mut x), black_box(&g)).expect("step"))
            });
        }
        grp.finish();
    }
}

/// The optimizers torch has fused CPU kernels for, under `"nonfinite": "propagate"` (torch's
/// semantics: no scan of `g` before the update, detection folded into the pass), at the sizes
/// where the default policy's extra read of `g` shows: `propagate_n1000000/adam_f32`, ….
fn bench_propagate(c: &mut Criterion) {
    for n in [1_000_000usize, 10_000_000] {
        let mut grp = config(c, "propagate", n);
        for &(name, json) in OPTIMIZERS {
            if !matches!(name, "sgd" | "sgd_momentum" | "adagrad" | "adam" | "adamw") {
                continue;
            }
            let json = format!(
                "{}, \"nonfinite\": \"propagate\"}}",
                json.trim_end_matches('}')
            );
            let (mut o, mut x, g) = setup::<f32>(&json, n);
            grp.bench_function(BenchmarkId::new(format!("{name}_f32"), n), |b| {
                b.iter(|| o.step_f32(black_box(&mut x), black_box(&g)).expect("step"))
            });
            let (mut o, mut x, g) = setup::<f64>(&json, n);
            grp.bench_function(BenchmarkId::new(format!("{name}_f64"), n), |b| {
                b.iter(|| o.step_f64(black_box(&mut x), black_box(&g)).expect("step"))
            });
        }
        grp.finish();
    }
}

/// STREAM-like copy `a = b` and triad `a = b + s c` (same run, same machine) for the bound.
fn bench_stream(c: &mut Criterion) {
    let n = 10_000_000usize;
    let mut grp = c.benchmark_group("stream_n10000000");
    grp.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500));
    let b64 = vec![1.0f64; n];
    let c64 = vec![2.0f64; n];
    let mut a64 = vec![0.0f64; n];
    grp.throughput(Throughput::Bytes((2 * 8 * n) as u64));
    grp.bench_function("copy_f64", |bch| {
        bch.iter(|| a64.copy_from_slice(black_box(&b64)))
    });
    grp.throughput(Throughput::Bytes((3 * 8 * n) as u64));
    grp.bench_function("triad_f64", |bch| {
        bch.iter(|| {
            let s = black_box(3.0);
            for ((a, b), c) in a64.iter_mut().zip(&b64).zip(&c64) {
                *a = b + s * c;
            }
        })
    });
    // two threads (the optimizer's rayon path uses both cores at this size)
    grp.throughput(Throughput::Bytes((3 * 8 * n) as u64));
    let threads = std::thread::available_parallelism().map_or(2, |v| v.get());
    let chunk = n.div_ceil(threads);
    grp.bench_function("triad_f64_threads", |bch| {
        bch.iter(|| {
            let s = black_box(3.0);
            std::thread::scope(|sc| {
                for ((a, b), c) in a64
                    .chunks_mut(chunk)
                    .zip(b64.chunks(chunk))
                    .zip(c64.chunks(chunk))
                {
                    sc.spawn(move || {
                        for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                            *a = b + s * c;
                        }
                    });
                }
            })
        })
    });
    grp.throughput(Throughput::Bytes((2 * 8 * n) as u64));
    grp.bench_function("copy_f64_threads", |bch| {
        bch.iter(|| {
            std::thread::scope(|sc| {
                for (a, b) in a64.chunks_mut(chunk).zip(b64.chunks(chunk)) {
                    sc.spawn(move || a.copy_from_slice(b));
                }
            })
        })
    });
    grp.finish();
}

/// Runtime dispatch: the same Adam step compiled for the baseline target, AVX2+FMA and AVX-512F
/// (each level the CPU has; n = 1e4, in cache, where the arithmetic is what counts).
fn bench_dispatch(c: &mut Criterion) {
    let n = 10_000;
    let mut grp = config(c, "dispatch", n);
    for level in SimdLevel::available() {
        for (t, json) in [("f32", OPTIMIZERS[4].1), ("f64", OPTIMIZERS[4].1)] {
            let id = BenchmarkId::new(format!("adam_{t}_{level:?}"), n);
            if t == "f32" {
                let (mut o, mut x, g) = setup::<f32>(json, n);
                o.set_simd_level(level);
                grp.bench_function(id, |b| {
                    b.iter(|| o.step_f32(black_box(&mut x), black_box(&g)).expect("step"))
                });
            } else {
                let (mut o, mut x, g) = setup::<f64>(json, n);
                o.set_simd_level(level);
                grp.bench_function(id, |b| {
                    b.iter(|| o.step_f64(black_box(&mut x), black_box(&g)).expect("step"))
                });
            }
        }
    }
    grp.finish();
}

/// Serial vs split crossover: sets `ParallelParams::split_bytes_heavy` (Adam,
/// arithmetic-bound) and `ParallelParams::split_bytes` (SGD, memory-bound).
fn bench_threshold(c: &mut Criterion) {
    for n in [
        1usize << 12,
        1 << 13,
        1 << 14,
        1 << 15,
        1 << 16,
        1 << 17,
        1 << 18,
    ] {
        let mut grp = config(c, "par", n);
        for (name, json) in [("adam", OPTIMIZERS[4].1), ("sgd", OPTIMIZERS[0].1)] {
            for par in [false, true] {
                let mode = if par { "rayon" } else { "serial" };
                let th = if par { 1 } else { usize::MAX };
                let (mut o, mut x, g) = setup::<f32>(json, n);
                o.set_parallel_threshold(th);
                grp.bench_function(BenchmarkId::new(format!("{name}_f32_{mode}"), n), |b| {
                    b.iter(|| o.step_f32(black_box(&mut x), black_box(&g)).expect("step"))
                });
                let (mut o, mut x, g) = setup::<f64>(json, n);
                o.set_parallel_threshold(th);
                grp.bench_function(BenchmarkId::new(format!("{name}_f64_{mode}"), n), |b| {
                    b.iter(|| o.step_f64(black_box(&mut x), black_box(&g)).expect("step"))
                });
            }
        }
        grp.finish();
    }
}

/// [`default_par_threshold`](precond::optim::kernel::default_par_threshold) of the update `u`.
fn threshold_of<T: precond::optim::Float, U: precond::optim::kernel::ElementUpdate<T>>(
    _u: &U,
) -> usize {
    precond::optim::kernel::default_par_threshold::<T, U>()
}

/// The fused Adam kernel alone (parts API, no non-finite check, no schedule/bookkeeping) at
/// n = 1e7, to separate the kernel from the safety pass over `g`.
fn bench_kernel_only(c: &mut Criterion) {
    use precond::optim::kernel::{
        AdamPrecond, Buffers, Ema, Fused, NoReg, ParallelParams, fused_step,
    };
    let par_threshold = ParallelParams::default().split_length::<f64>(true);
    let n = 10_000_000;
    let mut grp = config(c, "kernel", n);
    let u = Fused {
        sign: 1.0f64,
        pre: AdamPrecond::<f64, false>::new(0.999, 1e-8, 10),
        mom: Ema::new(0.9, 1e-3, 10),
        reg: NoReg,
    };
    let (mut x, g, mut v, mut m) = (
        vec![1.0f64; n],
        vec![1e-3f64; n],
        vec![1e-6f64; n],
        vec![1e-3f64; n],
    );
    grp.bench_function(BenchmarkId::new("adam_f64_kernel_only", n), |b| {
        b.iter(|| {
            let buf = Buffers {
                x: &mut x,
                g: &g,
                aux: &[],
                slots: [&mut v, &mut m, &mut []],
            };
            fused_step(&u, buf, SimdLevel::detect(), threshold_of(&u)).expect("lengths")
        })
    });
    let g32 = vec![1e-3f32; n];
    grp.bench_function(BenchmarkId::new("nonfinite_check_f64", n), |b| {
        b.iter(|| precond::optim::kernel::first_nonfinite(black_box(&g), par_threshold))
    });
    grp.bench_function(BenchmarkId::new("nonfinite_check_f32", n), |b| {
        b.iter(|| precond::optim::kernel::first_nonfinite(black_box(&g32), par_threshold))
    });
    grp.finish();
}

criterion_group!(
    benches,
    bench_stream,
    bench_dispatch,
    bench_threshold,
    bench_kernel_only,
    bench_steps,
    bench_propagate
);
criterion_main!(benches);
