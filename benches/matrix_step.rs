//! Matrix optimizers: a Muon step on 1024×1024 and 4096×1024 `f32` matrices (five Newton–Schulz
//! iterations on the smaller Gram matrix, symmetric products), a Shampoo step on a 1024×1024 `f64`
//! matrix with both inverse fourth roots recomputed, and the inverse root alone
//! (`precond_linalg::sym_inverse_root_into`, 1024×1024, allocation-free workspace).
//!
//! Run: `cargo bench --bench matrix_step`; the same-process torch comparison is
//! `benches/peers/matrix_same_process.py` (BENCHMARKS.md, "Matrix optimizers").

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::time::Duration;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use faer::Mat;
use precond::linalg::{SymEigWorkspace, sym_inverse_root_into};
use precond::optim::OptimizerConfig;

fn muon(c: &mut Criterion) {
    let mut g = c.benchmark_group("muon_step_f32");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    for (rows, cols) in [(1024usize, 1024usize), (4096, 1024)] {
        let n = rows * cols;
        let cfg = OptimizerConfig::from_json(&format!(
            r#"{{"optimizer": "muon", "lr": 0.02, "shape": [{rows}, {cols}]}}"#
        ))
        .expect("config");
        let mut opt = cfg.build(n).expect("build");
        let mut x: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) / 97.0).collect();
        let gr: Vec<f32> = (0..n).map(|i| ((i % 89) as f32 - 44.0) / 8900.0).collect();
        opt.step_f32(&mut x, &gr).expect("step");
        g.bench_function(format!("{rows}x{cols}"), |b| {
            b.iter(|| {
                opt.step_f32(black_box(&mut x), black_box(&gr))
                    .expect("step")
            })
        });
    }
    g.finish();
}

fn shampoo(c: &mut Criterion) {
    let mut g = c.benchmark_group("shampoo_1024_f64");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let d = 1024usize;
    let cfg = OptimizerConfig::from_json(&format!(
        r#"{{"optimizer": "shampoo", "lr": 0.01, "shape": [{d}, {d}], "betas": [0.0, 1.0], "epsilon": 1e-6}}"#
    ))
    .expect("config");
    let mut opt = cfg.build(d * d).expect("build");
    let mut x: Vec<f64> = (0..d * d)
        .map(|i| ((i % 97) as f64 - 48.0) / 97.0)
        .collect();
    let gr: Vec<f64> = (0..d * d)
        .map(|i| ((i * 7 % 89) as f64 - 44.0) / 89.0)
        .collect();
    opt.step_f64(&mut x, &gr).expect("step");
    g.bench_function("step_two_roots", |b| {
        b.iter(|| {
            opt.step_f64(black_box(&mut x), black_box(&gr))
                .expect("step")
        })
    });
    let a = Mat::from_fn(d, d, |i, j| {
        let v = ((i * 31 + j * 17) % 101) as f64 / 101.0;
        if i == j { v + d as f64 } else { 0.5 * v }
    });
    let a = Mat::from_fn(d, d, |i, j| 0.5 * (a[(i, j)] + a[(j, i)]));
    let mut out = Mat::<f64>::zeros(d, d);
    let mut ws = SymEigWorkspace::with_par(d, faer::Par::rayon(0)).expect("workspace");
    g.bench_function("inverse_root", |b| {
        b.iter(|| {
            sym_inverse_root_into(black_box(a.as_ref()), 1e-6, 4.0, out.as_mut(), &mut ws)
                .expect("root")
        })
    });
    g.finish();
}

criterion_group!(benches, muon, shampoo);
criterion_main!(benches);
