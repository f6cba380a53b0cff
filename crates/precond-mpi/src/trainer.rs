//! Data-parallel training (ZeRO stage 1) of a [`Mlp`] over a [`Communicator`].

use crate::checkpoint::{Checkpoint, CheckpointMeta, data_fingerprint, write_checkpoint};
use crate::comm::Communicator;
use crate::error::{DpError, Result};
use precond_nn::data::gather_columns_into;
use precond_nn::{
    Control, Dataset, EpochRecord, History, Mlp, Mode, PrecondStats, Targets, TrainConfig,
    Workspace, check_training, epoch_batches, epoch_record,
};
use precond_optim::{
    NonFinitePolicy, OptimizerConfig, OptimizerState, ShardPlan, ShardedOptimizer, assemble_state,
    first_nonfinite, split_state,
};
use std::path::Path;
use std::time::Instant;

/// Options of [`train_data_parallel`] besides the training settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct DpOptions<'a> {
    /// Write a checkpoint to this directory at the end of every epoch (rank 0 writes).
    pub save: Option<&'a Path>,
    /// Continue from this checkpoint (read by rank 0 and broadcast, or given on every rank);
    /// the run's settings must match it ([`Checkpoint::check_matches`]).
    pub resume: Option<&'a Checkpoint>,
}

/// Time and traffic of the steps of one rank.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTimings {
    /// Steps taken (applied or skipped).
    pub steps: u64,
    /// Seconds in the forward/backward pass of the local slice.
    pub compute_s: f64,
    /// Seconds in the gradient all-to-all and the local sum (the reduce-scatter).
    pub reduce_scatter_s: f64,
    /// Seconds in the optimizer step of the local shard.
    pub step_s: f64,
    /// Seconds in the parameter all-gather.
    pub all_gather_s: f64,
    /// Values this rank sent to other ranks, in all (reduce-scatter plus all-gather).
    pub values_sent: u64,
}

/// What [`train_data_parallel`] returns on every rank.
#[derive(Debug, Clone)]
pub struct DpRun {
    /// The history (identical on every rank; with a resumed run, the checkpoint's epochs first).
    pub history: History,
    /// Number of ranks.
    pub world_size: usize,
    /// This rank's parameter range (its optimizer shard).
    pub shard: std::ops::Range<usize>,
    /// Elements of optimizer state this rank holds.
    pub state_len: usize,
    /// The unsharded optimizer state at the end (rank 0 only).
    pub optimizer_state: Option<OptimizerState>,
    /// This rank's step timings.
    pub timings: StepTimings,
}

/// Agree on a local result: every rank learns whether some rank failed; a failing rank returns
/// its own error, the others [`DpError::PeerFailed`] naming the lowest failing rank.
fn agree<T, C: Communicator>(comm: &C, r: Result<T>, during: &'static str) -> Result<T> {
    let me = if r.is_err() {
        comm.rank() as u64
    } else {
        u64::MAX
    };
    let first = comm.all_reduce_min(me)?;
    match r {
        Err(e) => Err(e),
        Ok(_) if first != u64::MAX => Err(DpError::PeerFailed {
            rank: first as usize,
            during,
        }),
        Ok(v) => Ok(v),
    }
}

/// Data-parallel training with ZeRO stage 1 over `comm`: the same batches as
/// [`precond_nn::train`] ([`epoch_batches`]); each batch of `B` samples is split into
/// `size()` contiguous slices of columns (rank `r` takes `⌊rB/P⌋..⌊(r+1)B/P⌋`); each rank
/// computes `(1/B) Σ` of the loss and gradient over its slice
/// ([`Mlp::weighted_loss_and_grad_into`]); an all-to-all sends every rank the pieces of its
/// optimizer shard ([`ShardPlan`]), summed locally in rank order (so the shard holds the batch's
/// mean gradient), the loss likewise; a non-finite entry anywhere is agreed on before stepping
/// (policy `"error"`: every rank fails with [`DpError::NonFiniteGradient`] at the first index;
/// `"skip"`: no rank steps); each rank steps its shard with only that shard's state
/// ([`ShardedOptimizer`]) and the parameters are all-gathered.
///
/// With one rank this is [`precond_nn::train`] bit for bit. With more, only the grouping of
/// the sums over samples changes (results agree to rounding); every rank ends with the same
/// parameters, bit for bit. `params` must be equal on every rank at the start.
///
/// Every epoch's record ([`epoch_record`]) is computed on every rank (same numbers); `callback`
/// runs on every rank, and a stop on any rank stops all. `P_k` statistics are the shards'
/// preconditioners all-gathered. With [`DpOptions::save`], the shards' states are gathered to
/// rank 0, assembled into the unsharded state, and rank 0 writes the checkpoint.
///
/// # Errors
/// Those of [`precond_nn::train`] and [`ShardPlan::new`]; [`DpError::Unsupported`] for a
/// BatchNorm network with more than one rank (per-rank batch statistics would differ from the
/// batch's) and for [`TrainConfig::grad_norm`] at any world size; [`DpError::Mismatch`] for a checkpoint of another configuration; a failure on one
/// rank stops every rank ([`DpError::PeerFailed`]).
#[allow(clippy::too_many_arguments)]
pub fn train_data_parallel<C: Communicator>(
    comm: &C,
    mlp: &mut Mlp,
    params: &mut [f64],
    optimizer: &OptimizerConfig,
    train_set: &Dataset,
    test_set: Option<&Dataset>,
    config: &TrainConfig,
    options: DpOptions<'_>,
    mut callback: impl FnMut(&EpochRecord) -> Control,
) -> Result<DpRun> {
    let (rank, world) = (comm.rank(), comm.size());
    let n = mlp.layout().len();
    let setup = (|| -> Result<ShardedOptimizer> {
        check_training(mlp, params.len(), train_set, test_set, config)?;
        if world > 1 && mlp.running_stats().iter().any(Option::is_some) {
            return Err(DpError::Unsupported {
                what: "BatchNorm",
                world,
                reason: "each rank would normalize with its own slice's statistics",
            });
        }
        if config.grad_norm.is_some() {
            return Err(DpError::Unsupported {
                what: "gradient-norm regularization",
                world,
                reason: "the data-parallel step has no Hessian-vector product of the global batch",
            });
        }
        let plan = ShardPlan::new(optimizer, n, world)?;
        let mut opt = ShardedOptimizer::from_plan(optimizer, plan.clone(), rank)?;
        if let Some(ck) = options.resume {
            ck.check_matches(mlp, optimizer, train_set, config)?;
            let shards = split_state(optimizer, &plan, &ck.optimizer_state)?;
            opt.load(&shards[rank])?;
        }
        Ok(opt)
    })();
    let mut opt = agree(comm, setup, "setup")?;
    let plan = opt.plan().clone();
    let range = opt.range();
    let counts: Vec<usize> = plan.ranges().iter().map(|r| r.len()).collect();
    let mut history = History::default();
    let mut start = 1;
    if let Some(ck) = options.resume {
        params.copy_from_slice(&ck.params);
        for (l, s) in ck.meta.running_stats.iter().enumerate() {
            if let Some(s) = s {
                mlp.set_running_stats(l, s.clone())?;
            }
        }
        history = ck.meta.history.clone();
        start = ck.meta.epoch + 1;
    } else {
        let first = record(
            comm, mlp, params, &opt, &counts, train_set, test_set, config, 0, None,
        );
        let first = agree(comm, first, "the epoch-0 evaluation")?;
        let stop = comm.any(callback(&first) == Control::Stop)?;
        history.epochs.push(first);
        if stop {
            history.stopped_early = true;
            return finish(
                comm,
                history,
                &opt,
                optimizer,
                &plan,
                range,
                StepTimings::default(),
            );
        }
    }
    // buffers for the whole run: a step allocates nothing here
    let mut grad = vec![0.0; n];
    let mut recv = vec![0.0; world * range.len()];
    let mut local = vec![0.0; range.len()];
    let recv_counts = vec![range.len(); world];
    let mut parts = vec![0.0; 2 * world];
    let two = vec![2; world];
    let mut ws = Workspace::new();
    let mut xb = faer::Mat::new();
    let mut tb = Targets::Classes {
        labels: Vec::new(),
        n_classes: 0,
    };
    let mut t = StepTimings::default();
    let policy = optimizer.nonfinite;
    for epoch in start..=config.epochs {
        let batches = epoch_batches(train_set.n_samples(), config, epoch)?;
        let mut loss_sum = 0.0;
        for idx in &batches {
            let b = idx.len();
            let mine = &idx[rank * b / world..(rank + 1) * b / world];
            let t0 = Instant::now();
            let part = if mine.is_empty() {
                grad.fill(0.0);
                Ok(0.0)
            } else {
                gather_columns_into(train_set.x.as_ref(), mine, &mut xb)
                    .and_then(|()| train_set.targets.gather_into(mine, &mut tb))
                    .map_err(DpError::from)
                    .and_then(|()| {
                        mlp.weighted_loss_and_grad_into(
                            params,
                            xb.as_ref(),
                            &tb,
                            Mode::Train,
                            1.0 / b as f64,
                            &mut ws,
                            &mut grad,
                        )
                        .map_err(DpError::from)
                    })
            };
            let part = agree(comm, part, "the gradient")?;
            let t1 = Instant::now();
            comm.all_to_all_v(&grad, &counts, &mut recv, &recv_counts)?;
            // the shard's gradient: the ranks' pieces summed in rank order
            let len = range.len();
            local.copy_from_slice(&recv[..len]);
            for s in 1..world {
                for (a, v) in local.iter_mut().zip(&recv[s * len..(s + 1) * len]) {
                    *a += v;
                }
            }
            let bad = first_nonfinite(&local).map_or(u64::MAX, |i| (range.start + i) as u64);
            let mine2 = [part, f64::from_bits(bad)];
            comm.all_gather_v(&mine2, &mut parts, &two)?;
            let t2 = Instant::now();
            let mut loss = parts[0];
            let mut first_bad = parts[1].to_bits();
            for s in 1..world {
                loss += parts[2 * s];
                first_bad = first_bad.min(parts[2 * s + 1].to_bits());
            }
            t.values_sent += (n - len) as u64;
            let step_now = opt.step_count() + 1;
            if first_bad != u64::MAX && policy != NonFinitePolicy::Propagate {
                if policy == NonFinitePolicy::Error {
                    return Err(DpError::NonFiniteGradient {
                        index: first_bad as usize,
                        step: step_now,
                    });
                }
                // skip: no rank steps, nothing changes
                t.steps += 1;
                loss_sum += loss;
                continue;
            }
            let stepped = opt
                .step(&mut params[range.clone()], &local)
                .map(|_| ())
                .map_err(DpError::from);
            agree(comm, stepped, "the optimizer step")?;
            let t3 = Instant::now();
            local.copy_from_slice(&params[range.clone()]);
            comm.all_gather_v(&local, params, &counts)?;
            let t4 = Instant::now();
            t.values_sent += (len * (world - 1)) as u64;
            if world == 1 {
                mlp.update_running_stats(ws.forward())?;
            }
            t.steps += 1;
            t.compute_s += (t1 - t0).as_secs_f64();
            t.reduce_scatter_s += (t2 - t1).as_secs_f64();
            t.step_s += (t3 - t2).as_secs_f64();
            t.all_gather_s += (t4 - t3).as_secs_f64();
            loss_sum += loss;
        }
        let batch_loss = Some(loss_sum / batches.len() as f64);
        let rec = record(
            comm, mlp, params, &opt, &counts, train_set, test_set, config, epoch, batch_loss,
        );
        let rec = agree(comm, rec, "the epoch evaluation")?;
        let stop = comm.any(callback(&rec) == Control::Stop)?;
        history.epochs.push(rec);
        if let Some(dir) = options.save {
            let full = gather_state(comm, &opt, optimizer, &plan)?;
            let written = match full {
                Some(state) => write_checkpoint(
                    dir,
                    &Checkpoint {
                        meta: CheckpointMeta {
                            epoch,
                            steps: opt.step_count(),
                            world_size: world,
                            train: config.clone(),
                            mlp: serde_json::to_value(mlp.config())
                                .unwrap_or(serde_json::Value::Null),
                            optimizer: optimizer.to_value(),
                            data: data_fingerprint(train_set),
                            running_stats: mlp.running_stats().to_vec(),
                            history: history.clone(),
                        },
                        params: params.to_vec(),
                        optimizer_state: state,
                    },
                ),
                None => Ok(()),
            };
            agree(comm, written, "writing the checkpoint")?;
        }
        if stop {
            history.stopped_early = true;
            break;
        }
    }
    finish(comm, history, &opt, optimizer, &plan, range, t)
}

fn finish<C: Communicator>(
    comm: &C,
    history: History,
    opt: &ShardedOptimizer,
    cfg: &OptimizerConfig,
    plan: &ShardPlan,
    shard: std::ops::Range<usize>,
    timings: StepTimings,
) -> Result<DpRun> {
    let state_len = opt.state().slots.iter().map(Vec::len).sum();
    let optimizer_state = gather_state(comm, opt, cfg, plan)?;
    Ok(DpRun {
        history,
        world_size: comm.size(),
        shard,
        state_len,
        optimizer_state,
        timings,
    })
}

/// The shards' states gathered to rank 0 and assembled into the unsharded state (rank 0 gets
/// `Some`); a failure on rank 0 stops every rank.
fn gather_state<C: Communicator>(
    comm: &C,
    opt: &ShardedOptimizer,
    cfg: &OptimizerConfig,
    plan: &ShardPlan,
) -> Result<Option<OptimizerState>> {
    let all = comm.gather_bytes(&opt.save_state())?;
    let full = match all {
        Some(all) => (|| {
            let states = all
                .iter()
                .map(|b| OptimizerState::from_bytes(b))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(Some(assemble_state(cfg, plan, &states)?))
        })(),
        None => Ok(None),
    };
    agree(comm, full, "assembling the optimizer state")
}

#[allow(clippy::too_many_arguments)]
fn record<C: Communicator>(
    comm: &C,
    mlp: &Mlp,
    params: &[f64],
    opt: &ShardedOptimizer,
    counts: &[usize],
    train_set: &Dataset,
    test_set: Option<&Dataset>,
    config: &TrainConfig,
    epoch: usize,
    batch_loss: Option<f64>,
) -> Result<EpochRecord> {
    let preconditioner = if config.record_preconditioner {
        let mut local = vec![0.0; opt.range().len()];
        let ok = opt.optimizer().preconditioner(&mut local).is_ok();
        // agree: if any shard cannot report P_k, none is recorded
        if comm.any(!ok)? {
            None
        } else {
            let mut full = vec![0.0; params.len()];
            comm.all_gather_v(&local, &mut full, counts)?;
            PrecondStats::of(&full)
        }
    } else {
        None
    };
    Ok(epoch_record(
        mlp,
        params,
        train_set,
        test_set,
        config,
        epoch,
        opt.step_count(),
        batch_loss,
        preconditioner,
    )?)
}
