//! ZeRO-1 step of a flat parameter vector under `mpirun -np P`, with no network: the cost of
//! sharding an Adam/Muon mix at scale (compute, communication, per-rank optimizer state).
//!
//! `precond-mpi-bench [--params N] [--muon-groups K] [--muon-shape RxC] [--layout front|spread]
//! [--steps S] [--warmup W] [--seed SEED]` (defaults: `N` = 10,000,000, `K` = 4, `1024x1024`,
//! `front`, `S` = 3, `W` = 1, seed 7).
//!
//! The optimizer: Adam (lr 1e-3) on the whole vector except `K` Muon groups (lr 0.02, shape
//! `R × C`, row-major) at `[k·R·C, (k+1)·R·C)` (`front`: the matrices first) or at
//! `[⌊k·N/K⌋, ⌊k·N/K⌋ + R·C)` (`spread`). All in `f64` (the communicator's type). The shards are
//! [`ShardPlan::new`]'s: a Muon matrix is never split.
//!
//! Each step, on every rank: *compute* fills the rank's gradient of all `N` values with seeded
//! uniform values in `[−1/P, 1/P)` (SplitMix64 seeded by seed, rank and step); *reduce-scatter*
//! is the all-to-all of the other ranks' pieces of this rank's shard plus their sum in rank
//! order; *step* is [`ShardedOptimizer::step`] on the shard; *wait* is a one-value all-reduce
//! (a barrier: the time a rank waits for the slowest shard step); *all-gather* gathers the
//! parameters. The first `W` steps are not timed.
//!
//! Every rank prints one JSON line: its shard, the Muon values it holds, the optimizer-state
//! values and bytes it holds, seconds per timed step in each phase, the bytes it sent per step,
//! and `params_agree` (whether every rank ends with the same parameters, bit for bit).
//! Exit status 0 on success, 1 on an error (printed with the rank).

use precond_mpi::{Communicator, MpiComm};
use precond_optim::{OptimizerConfig, ShardPlan, ShardedOptimizer};
use std::process::ExitCode;
use std::time::Instant;

struct Args {
    params: usize,
    muon_groups: usize,
    rows: usize,
    cols: usize,
    spread: bool,
    steps: u64,
    warmup: u64,
    seed: u64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        params: 10_000_000,
        muon_groups: 4,
        rows: 1024,
        cols: 1024,
        spread: false,
        steps: 3,
        warmup: 1,
        seed: 7,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--params" => a.params = v()?.parse().map_err(|e| format!("--params: {e}"))?,
            "--muon-groups" => {
                a.muon_groups = v()?.parse().map_err(|e| format!("--muon-groups: {e}"))?
            }
            "--muon-shape" => {
                let s = v()?;
                let (r, c) = s
                    .split_once('x')
                    .ok_or_else(|| format!("--muon-shape: expected RxC, got {s:?}"))?;
                a.rows = r.parse().map_err(|e| format!("--muon-shape rows: {e}"))?;
                a.cols = c.parse().map_err(|e| format!("--muon-shape cols: {e}"))?;
            }
            "--layout" => {
                a.spread = match v()?.as_str() {
                    "front" => false,
                    "spread" => true,
                    o => return Err(format!("--layout: expected front or spread, got {o:?}")),
                }
            }
            "--steps" => a.steps = v()?.parse().map_err(|e| format!("--steps: {e}"))?,
            "--warmup" => a.warmup = v()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--seed" => a.seed = v()?.parse().map_err(|e| format!("--seed: {e}"))?,
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if a.steps == 0 {
        return Err("--steps: must be ≥ 1".into());
    }
    Ok(a)
}

/// The Muon groups' ranges, checked to fit in `0..n` without overlapping.
fn muon_ranges(a: &Args) -> Result<Vec<std::ops::Range<usize>>, String> {
    let k = a.muon_groups;
    let m = a
        .rows
        .checked_mul(a.cols)
        .filter(|m| m.checked_mul(k).is_some_and(|t| t <= a.params))
        .ok_or_else(|| {
            format!(
                "{k} Muon groups of {}x{} do not fit in {} parameters",
                a.rows, a.cols, a.params
            )
        })?;
    let starts: Vec<usize> = (0..k)
        .map(|i| if a.spread { i * a.params / k } else { i * m })
        .collect();
    let ranges: Vec<_> = starts.iter().map(|&s| s..s + m).collect();
    for (i, r) in ranges.iter().enumerate() {
        if r.end > a.params || ranges.get(i + 1).is_some_and(|q| q.start < r.end) {
            return Err(format!(
                "Muon group {i} at {}..{} does not fit: {k} groups of {}x{} in {} parameters",
                r.start, r.end, a.rows, a.cols, a.params
            ));
        }
    }
    Ok(ranges)
}

/// SplitMix64's next value.
fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `out` filled with uniform values in `[−scale, scale)` from the stream seeded by `key`.
fn fill_uniform(key: [u64; 3], scale: f64, out: &mut [f64]) {
    let mut s = key[0];
    for k in &key[1..] {
        s = splitmix(&mut s) ^ k;
    }
    for o in out {
        let u = (splitmix(&mut s) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        *o = (2.0 * u - 1.0) * scale;
    }
}

fn run(comm: &MpiComm, a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let (rank, world) = (comm.rank(), comm.size());
    let n = a.params;
    let muon = muon_ranges(a)?;
    let groups: Vec<String> = muon
        .iter()
        .map(|r| {
            format!(
                r#"{{"start": {}, "end": {}, "shape": [{}, {}], "optimizer": "muon", "lr": 0.02}}"#,
                r.start, r.end, a.rows, a.cols
            )
        })
        .collect();
    let cfg = OptimizerConfig::from_json(&format!(
        r#"{{"optimizer": "adam", "lr": 1e-3, "groups": [{}]}}"#,
        groups.join(", ")
    ))?;
    let plan = ShardPlan::new(&cfg, n, world)?;
    let mut opt = ShardedOptimizer::from_plan(&cfg, plan.clone(), rank)?;
    let range = opt.range();
    let len = range.len();
    let counts: Vec<usize> = plan.ranges().iter().map(|r| r.len()).collect();
    let recv_counts = vec![len; world];
    let mut params = vec![0.0; n];
    fill_uniform([a.seed, u64::MAX, 0], 0.05, &mut params);
    let mut grad = vec![0.0; n];
    let mut recv = vec![0.0; world * len];
    let mut local = vec![0.0; len];
    let mut ph = [0.0f64; 5];
    let scale = 1.0 / world as f64;
    for step in 0..a.warmup + a.steps {
        let t0 = Instant::now();
        fill_uniform([a.seed, rank as u64, step], scale, &mut grad);
        let t1 = Instant::now();
        comm.all_to_all_v(&grad, &counts, &mut recv, &recv_counts)?;
        local.copy_from_slice(&recv[..len]);
        for s in 1..world {
            for (l, v) in local.iter_mut().zip(&recv[s * len..(s + 1) * len]) {
                *l += v;
            }
        }
        let t2 = Instant::now();
        opt.step(&mut params[range.clone()], &local)?;
        let t3 = Instant::now();
        comm.all_reduce_max(0)?;
        let t4 = Instant::now();
        local.copy_from_slice(&params[range.clone()]);
        comm.all_gather_v(&local, &mut params, &counts)?;
        let t5 = Instant::now();
        if step >= a.warmup {
            for (p, (u, v)) in ph
                .iter_mut()
                .zip([(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)])
            {
                *p += (v - u).as_secs_f64();
            }
        }
    }
    // every rank's parameters equal, bit for bit: an order-dependent hash agreed by min and max
    let h = params.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, p| {
        (h ^ p.to_bits()).wrapping_mul(0x100_0000_01B3)
    });
    let agree = comm.all_reduce_max(h)? == h && comm.all_reduce_min(h)? == h;
    let state_values: usize = opt.state().slots.iter().map(Vec::len).sum();
    let muon_held: Vec<_> = muon
        .iter()
        .enumerate()
        .filter(|(_, r)| range.start <= r.start && r.end <= range.end)
        .map(|(i, _)| i)
        .collect();
    let steps = a.steps as f64;
    // sent per step: the P−1 other shards' pieces of the gradient, and this shard to P−1 ranks
    let sent = 8 * ((n - len) + len * (world - 1));
    println!(
        "{}",
        serde_json::json!({
            "rank": rank, "world": world, "n_params": n, "dtype": "f64",
            "shard": [range.start, range.end], "shard_len": len,
            "muon_groups_held": muon_held, "muon_values": muon_held.len() * a.rows * a.cols,
            "state_values": state_values, "state_bytes": 8 * state_values,
            "steps": a.steps, "compute_s": ph[0] / steps, "reduce_scatter_s": ph[1] / steps,
            "step_s": ph[2] / steps, "wait_s": ph[3] / steps, "all_gather_s": ph[4] / steps,
            "total_s": ph.iter().sum::<f64>() / steps, "bytes_sent_per_step": sent,
            "params_agree": agree,
        })
    );
    if !agree {
        return Err("the ranks' parameters differ after the run".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let comm = match MpiComm::init() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("precond-mpi-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = parse().map_err(|e| e.into()).and_then(|a| run(&comm, &a));
    match out {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("precond-mpi-bench rank {}: {e}", comm.rank());
            ExitCode::FAILURE
        }
    }
}
