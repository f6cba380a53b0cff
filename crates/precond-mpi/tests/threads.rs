//! Data-parallel training with ranks as threads ([`ThreadComm`]): one rank is
//! `precond_nn::train` bit for bit; 2, 3 and 4 ranks give the same per-epoch losses and
//! parameters to 1e-9 relative, with every rank's parameters identical bit for bit; checkpoints
//! resume exactly, at any number of ranks; damaged or mismatched checkpoints are typed errors.

use precond_mpi::*;
use precond_nn::*;
use precond_optim::OptimizerConfig;
use std::path::Path;

fn setup(norm: Normalization) -> (Mlp, Vec<f64>, Dataset, Dataset) {
    let data = Dataset::builtin("iris").expect("iris");
    let (tr, te) = data.split(0.2, 5).expect("split");
    let t = InputTransform::fit(tr.x.as_ref(), InputScaling::Standardize).expect("fit");
    let tr = tr.map_features(|x| t.apply(x)).expect("tr");
    let te = te.map_features(|x| t.apply(x)).expect("te");
    let mlp = Mlp::new(MlpConfig::feedforward(
        4,
        &[12, 8],
        Activation::Tanh,
        norm,
        3,
        Loss::SoftmaxCrossEntropy,
    ))
    .expect("net");
    let p = mlp.init_params(1);
    (mlp, p, tr, te)
}

fn ln() -> Normalization {
    Normalization::LayerNorm(LayerNormSpec::default())
}

fn opt() -> OptimizerConfig {
    OptimizerConfig::from_json(r#"{"optimizer": "adam", "lr": 0.01, "weight_decay": 0.001}"#)
        .expect("cfg")
}

fn cfg(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 25, // 120 training samples: four batches of 25 and one of 20
        seed: 9,
        record_preconditioner: true,
        ..TrainConfig::default()
    }
}

/// Runs `world` ranks as threads; returns every rank's (result, final parameters).
fn run(
    world: usize,
    norm: Normalization,
    config: &TrainConfig,
    save: Option<&Path>,
    resume: Option<&Checkpoint>,
) -> Vec<(precond_mpi::Result<DpRun>, Vec<f64>)> {
    let comms = ThreadComm::group(world);
    std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .into_iter()
            .map(|c| {
                s.spawn(move || {
                    let (mut mlp, mut p, tr, te) = setup(norm);
                    let r = train_data_parallel(
                        &c,
                        &mut mlp,
                        &mut p,
                        &opt(),
                        &tr,
                        Some(&te),
                        config,
                        DpOptions { save, resume },
                        |_| Control::Continue,
                    );
                    (r, p)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("rank thread"))
            .collect()
    })
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
}

fn assert_close_runs(a: &History, b: &History, tol: f64) {
    assert_eq!(a.epochs.len(), b.epochs.len());
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        assert_eq!(x.epoch, y.epoch);
        assert_eq!(x.steps, y.steps);
        assert!(
            rel(x.train_loss, y.train_loss) <= tol,
            "epoch {}: {} vs {}",
            x.epoch,
            x.train_loss,
            y.train_loss
        );
        if let (Some(p), Some(q)) = (x.batch_loss, y.batch_loss) {
            assert!(rel(p, q) <= tol, "epoch {} batch loss: {p} vs {q}", x.epoch);
        } else {
            assert_eq!(x.batch_loss.is_some(), y.batch_loss.is_some());
        }
    }
}

fn assert_params_close(a: &[f64], b: &[f64], tol: f64) {
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * scale, "param {i}: {x} vs {y}");
    }
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn one_rank_is_train_bit_for_bit_with_batchnorm() {
    let bn = Normalization::BatchNorm(BatchNormSpec::default());
    for norm in [ln(), bn] {
        let (mut mlp, mut p, tr, te) = setup(norm);
        let mut o = opt().build(p.len()).expect("opt");
        let h = train(&mut mlp, &mut p, &mut o, &tr, Some(&te), &cfg(3), |_| {
            Control::Continue
        })
        .expect("train");
        let (mut mlp2, mut p2, _, _) = setup(norm);
        let r = train_data_parallel(
            &SingleProcess,
            &mut mlp2,
            &mut p2,
            &opt(),
            &tr,
            Some(&te),
            &cfg(3),
            DpOptions::default(),
            |_| Control::Continue,
        )
        .expect("dp");
        assert_eq!(bits(&p), bits(&p2));
        assert_eq!(h, r.history);
        assert_eq!(mlp.running_stats(), mlp2.running_stats());
        assert_eq!(r.world_size, 1);
        let st = r.optimizer_state.expect("state");
        assert_eq!(st.step, o.state().step);
        assert_eq!(st.slots, o.state().slots);
    }
}

#[test]
fn two_to_four_ranks_match_one_rank() {
    let one = run(1, ln(), &cfg(3), None, None);
    let (r1, p1) = &one[0];
    let r1 = r1.as_ref().expect("P=1");
    for world in 2..=4 {
        let ranks = run(world, ln(), &cfg(3), None, None);
        let p0 = &ranks[0].1;
        let mut state_total = 0;
        for (rank, (r, p)) in ranks.iter().enumerate() {
            let r = r.as_ref().expect("rank result");
            assert_eq!(
                bits(p),
                bits(p0),
                "P={world}: rank {rank}'s parameters differ"
            );
            assert_close_runs(&r1.history, &r.history, 1e-9);
            assert_eq!(r.world_size, world);
            state_total += r.state_len;
            // traffic: (P−1)/P of the gradient out, the shard to P−1 ranks, per step
            let n = p.len() as u64;
            let len = r.shard.len() as u64;
            assert_eq!(
                r.timings.values_sent,
                r.timings.steps * ((n - len) + len * (world as u64 - 1))
            );
        }
        assert_params_close(p1, p0, 1e-9);
        // the shards hold the unsharded state between them, once
        assert_eq!(state_total, r1.state_len, "P={world}");
        let full = ranks[0]
            .0
            .as_ref()
            .expect("rank 0")
            .optimizer_state
            .as_ref()
            .expect("state");
        let want = r1.optimizer_state.as_ref().expect("state");
        assert_eq!(full.step, want.step);
        assert_params_close(&want.slots[0], &full.slots[0], 1e-7);
    }
}

#[test]
fn batchnorm_refused_with_more_than_one_rank() {
    let bn = Normalization::BatchNorm(BatchNormSpec::default());
    for (r, _) in run(2, bn, &cfg(1), None, None) {
        assert!(
            matches!(
                r,
                Err(DpError::Unsupported {
                    what: "BatchNorm",
                    world: 2,
                    ..
                })
            ),
            "{r:?}"
        );
    }
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("precond-mpi-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn resume_is_exact_at_one_rank_and_across_world_sizes() {
    let straight = run(1, ln(), &cfg(3), None, None);
    let (rs, ps) = &straight[0];
    let rs = rs.as_ref().expect("straight");
    // one rank: 2 epochs, then 1 more from the checkpoint: bit for bit
    let d = tmpdir("resume1");
    let first = run(1, ln(), &cfg(2), Some(&d), None);
    assert!(first[0].0.is_ok());
    let ck = read_checkpoint(&d).expect("read");
    assert_eq!(ck.meta.epoch, 2);
    assert_eq!(ck.meta.world_size, 1);
    let second = run(1, ln(), &cfg(3), Some(&d), Some(&ck));
    let (r2, p2) = &second[0];
    assert_eq!(bits(ps), bits(p2));
    assert_eq!(&rs.history, &r2.as_ref().expect("resumed").history);
    assert_eq!(read_checkpoint(&d).expect("read").meta.epoch, 3);
    // four ranks for 2 epochs, then two ranks for 1 more: as one rank for 3, to 1e-9
    let d4 = tmpdir("resume4");
    let four = run(4, ln(), &cfg(2), Some(&d4), None);
    assert!(four.iter().all(|(r, _)| r.is_ok()));
    let ck4 = read_checkpoint(&d4).expect("read");
    assert_eq!(ck4.meta.world_size, 4);
    let two = run(2, ln(), &cfg(3), None, Some(&ck4));
    assert_eq!(bits(&two[0].1), bits(&two[1].1));
    assert_params_close(ps, &two[0].1, 1e-9);
    assert_close_runs(
        &rs.history,
        &two[0].0.as_ref().expect("resumed").history,
        1e-9,
    );
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&d4);
}

#[test]
fn damaged_and_mismatched_checkpoints_are_typed_errors() {
    let d = tmpdir("damaged");
    assert!(run(1, ln(), &cfg(1), Some(&d), None)[0].0.is_ok());
    let path = checkpoint_path(&d);
    let good = std::fs::read(&path).expect("bytes");
    let ck = Checkpoint::from_bytes(&good, &path).expect("good");
    assert_eq!(ck.to_bytes().expect("encode"), good, "round trip");
    // flipped bits at a sample of positions, truncations, trailing bytes, bad magic
    for pos in (0..good.len()).step_by(good.len() / 97 + 1) {
        let mut b = good.clone();
        b[pos] ^= 0x10;
        let e = Checkpoint::from_bytes(&b, &path).expect_err("flipped");
        assert!(matches!(e, DpError::Corrupt { .. }), "{pos}: {e}");
    }
    for len in [0, 7, 12, 40, good.len() / 2, good.len() - 1] {
        let e = Checkpoint::from_bytes(&good[..len], &path).expect_err("truncated");
        assert!(matches!(e, DpError::Corrupt { .. }), "{len}: {e}");
    }
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(
        Checkpoint::from_bytes(&long, &path),
        Err(DpError::Corrupt { .. })
    ));
    let e = Checkpoint::from_bytes(b"PRCNDOPTxxxxxxxxxxxx", &path).expect_err("magic");
    assert!(e.to_string().contains("bad magic"), "{e}");
    // a missing file names the path
    let e = read_checkpoint(&d.join("nowhere")).expect_err("missing");
    assert!(
        matches!(&e, DpError::Io { path, .. } if path.contains("nowhere")),
        "{e}"
    );
    // another seed, batch size, optimizer or network: refused naming the setting, on every rank
    let other_seed = TrainConfig { seed: 10, ..cfg(2) };
    for (r, _) in run(2, ln(), &other_seed, None, Some(&ck)) {
        assert!(
            matches!(r, Err(DpError::Mismatch { field: "seed", .. })),
            "{r:?}"
        );
    }
    let other_batch = TrainConfig {
        batch_size: 24,
        ..cfg(2)
    };
    let r = &run(1, ln(), &other_batch, None, Some(&ck))[0].0;
    assert!(
        matches!(
            r,
            Err(DpError::Mismatch {
                field: "batch_size",
                ..
            })
        ),
        "{r:?}"
    );
    let (mut mlp, mut p, tr, te) = setup(ln());
    let sgd = OptimizerConfig::from_json(r#"{"optimizer": "sgd", "lr": 0.01}"#).expect("sgd");
    let r = train_data_parallel(
        &SingleProcess,
        &mut mlp,
        &mut p,
        &sgd,
        &tr,
        Some(&te),
        &cfg(2),
        DpOptions {
            save: None,
            resume: Some(&ck),
        },
        |_| Control::Continue,
    );
    assert!(
        matches!(
            r,
            Err(DpError::Mismatch {
                field: "optimizer",
                ..
            })
        ),
        "{r:?}"
    );
    let (mut mlp, mut p, tr, te) = setup(Normalization::None);
    let before = p.clone();
    let r = train_data_parallel(
        &SingleProcess,
        &mut mlp,
        &mut p,
        &opt(),
        &tr,
        Some(&te),
        &cfg(2),
        DpOptions {
            save: None,
            resume: Some(&ck),
        },
        |_| Control::Continue,
    );
    assert!(r.is_err(), "{r:?}");
    assert_eq!(bits(&p), bits(&before), "parameters untouched");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn thread_comm_collectives() {
    let comms = ThreadComm::group(3);
    std::thread::scope(|s| {
        for c in comms {
            s.spawn(move || {
                let r = c.rank();
                // rank r sends (s+1) values 100r + s to rank s
                let counts: Vec<usize> = (0..3).map(|s| s + 1).collect();
                let send: Vec<f64> = (0..3)
                    .flat_map(|s| vec![(100 * r + s) as f64; s + 1])
                    .collect();
                let mut recv = vec![0.0; 3 * (r + 1)];
                c.all_to_all_v(&send, &counts, &mut recv, &[r + 1; 3])
                    .expect("a2a");
                let want: Vec<f64> = (0..3)
                    .flat_map(|q| vec![(100 * q + r) as f64; r + 1])
                    .collect();
                assert_eq!(recv, want);
                let mut all = vec![0.0; 6];
                c.all_gather_v(&vec![r as f64; r + 1], &mut all, &[1, 2, 3])
                    .expect("ag");
                assert_eq!(all, [0.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
                assert_eq!(c.all_reduce_max(r as u64 * 7).expect("max"), 14);
                assert_eq!(c.all_reduce_min(r as u64 + 5).expect("min"), 5);
                assert!(c.any(r == 1).expect("any"));
                assert!(!c.any(false).expect("any"));
                let g = c.gather_bytes(&vec![r as u8; r]).expect("gather");
                assert_eq!(g, (r == 0).then(|| vec![vec![], vec![1], vec![2, 2]]));
                let mut b = if r == 0 {
                    b"hello".to_vec()
                } else {
                    vec![9; 40]
                };
                c.broadcast_bytes(&mut b).expect("bcast");
                assert_eq!(b, b"hello");
                // a count that does not fit is a typed error on the rank that sees it
                let e = c.all_gather_v(&[1.0], &mut [0.0; 2], &[1, 1, 1]);
                assert!(matches!(e, Err(DpError::Comm(_))));
            });
        }
    });
}
