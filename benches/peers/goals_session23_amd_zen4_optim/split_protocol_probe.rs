use precond_optim::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
fn t() -> u64 { unsafe { core::arch::x86_64::_rdtsc() } }
#[repr(align(64))] struct Pad(AtomicU64);
fn main() {
    let n: usize = std::env::args().nth(1).map(|v| v.parse().unwrap()).unwrap_or(10000);
    let json = r#"{"optimizer":"sgd","lr":0.01,"nonfinite":"propagate"}"#;
    let mk = |th: usize, m: usize| { let mut o = OptimizerConfig::from_json(json).unwrap().build(m).unwrap(); o.set_parallel_threshold(th); o };
    let mut os = [mk(1 << 30, n), mk(1024, n)];
    let alloc = |v: f32| { let mut b = vec![v; n + 64]; let o = (64 - (b.as_ptr() as usize % 64)) / 4 % 16; b.drain(..o); b };
    let mut xs = [alloc(1.0), alloc(1.0), alloc(1.0), alloc(1.0)];
    let g = alloc(1e-3);
    let h = (n / 2) & !15;
    let genr = Arc::new(Pad(AtomicU64::new(0))); let done = Arc::new(Pad(AtomicU64::new(0))); let mode = Arc::new(Pad(AtomicU64::new(0)));
    let xp2 = xs[2].as_mut_ptr() as usize; let xp3 = xs[3].as_mut_ptr() as usize; let gp = g.as_ptr() as usize;
    let helper = { let (genr, done, mode) = (genr.clone(), done.clone(), mode.clone());
      std::thread::spawn(move || { let mut oh = mk(1 << 30, n - h); let mut seen = 0; loop { let v; let mut spins = 0u64; loop { let w = genr.0.load(Ordering::Acquire); if w != seen { v = w; break; } spins += 1; if spins > 20_000 { std::thread::park(); spins = 0; } std::hint::spin_loop(); }
        if v == u64::MAX { return; } seen = v;
        let g = unsafe { std::slice::from_raw_parts((gp as *const f32).add(h), n - h) };
        if mode.0.load(Ordering::Relaxed) == 2 { let x = unsafe { std::slice::from_raw_parts_mut((xp2 as *mut f32).add(h), n - h) }; for (a, b) in x.iter_mut().zip(g) { *a -= 0.01 * b; } }
        else { let x = unsafe { std::slice::from_raw_parts_mut((xp3 as *mut f32).add(h), n - h) }; oh.step(x, g).unwrap(); }
        done.0.store(v, Ordering::Release); } }) };
    let mut oc = mk(1 << 30, h);
    let reps = 2000; let mut tot = [vec![], vec![], vec![], vec![]]; let mut gcount = 0u64;
    for round in 0..41 {
        for k in 0..4 {
            
            if k >= 2 { mode.0.store(k as u64, Ordering::Relaxed); helper.thread().unpark(); }
            let s = t();
            if k < 2 { for _ in 0..reps { os[k].step(&mut xs[k][..n], &g[..n]).unwrap(); } }
            else { for _ in 0..reps { gcount += 1; genr.0.store(gcount, Ordering::Release);
                if k == 2 { for (a, b) in xs[2][..h].iter_mut().zip(&g[..h]) { *a -= 0.01 * b; } } else { oc.step(&mut xs[3][..h], &g[..h]).unwrap(); }
                let mut w = 0u32; while done.0.load(Ordering::Acquire) != gcount { w += 1; if w % 4096 == 0 { helper.thread().unpark(); } std::hint::spin_loop(); } } }
            tot[k].push((t() - s) as f64 / reps as f64);
        }
    }
    for k in 0..4 { let mut v = tot[k].clone(); v.sort_by(|a, b| a.partial_cmp(b).unwrap()); println!("{:>18} median {:.0} ticks [{:.0} {:.0}]", ["serial", "split", "minimal", "minimal+Optimizer"][k], v[20], v[5], v[35]); }
    println!("handoff {:?}", kernel::handoff_latency());
    genr.0.store(u64::MAX, Ordering::Release); helper.thread().unpark();
}
