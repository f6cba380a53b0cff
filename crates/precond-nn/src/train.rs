//! Mini-batch training with any `precond-optim` optimizer, per-epoch history (loss, accuracy,
//! preconditioner `P_k` statistics, `κ` of hidden layers' extended matrices), callbacks.
//!
//! One epoch: the training set is split into mini-batches (shuffled with a seed derived from
//! [`TrainConfig::seed`] and the epoch number), and for each batch: a training-mode forward pass
//! (batch statistics), the exact gradient, one optimizer step on the flat parameter buffer, and
//! the BatchNorm running averages updated. After each epoch (and once before training, epoch 0)
//! the full training and test sets are evaluated in inference mode (running averages).
//! The steps share one [`crate::Workspace`] and one batch buffer, so a training step allocates
//! nothing (beyond what the optimizer does).
//! Everything is deterministic for a given seed.

use crate::bnp::Bnp;
use crate::data::{Dataset, gather_columns, gather_columns_into, minibatches};
use crate::error::{NnError, Result};
use crate::hessian::{WithNorm, extended_hidden_matrix, kappa};
use crate::loss::Targets;
use crate::mlp::{Mlp, Mode, Workspace};
use faer::Mat;
use precond_optim::Optimizer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Settings of [`train`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Number of passes over the training set.
    pub epochs: usize,
    /// Mini-batch size (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Shuffle the training set every epoch.
    pub shuffle: bool,
    /// Seed of the shuffling.
    pub seed: u64,
    /// Layers whose extended input matrix `Ā = [1ᵀ; H^{ℓ−1}]` gets its `κ` recorded each epoch
    /// (with and without the previous layer's normalization), on the first
    /// [`TrainConfig::kappa_samples`] training samples in training mode (batch statistics).
    pub kappa_layers: Vec<usize>,
    /// Number of training samples used for the `κ` snapshots.
    pub kappa_samples: usize,
    /// Record statistics of the optimizer's diagonal preconditioner `P_k` each epoch.
    pub record_preconditioner: bool,
    /// Gradient-norm regularization added to every minibatch gradient
    /// ([`crate::GradNormReg`]: `∇R = 2ρ H P ∇f`, one exact Hessian-vector product per step by
    /// the R-operator, on the same minibatch and mode). Intrinsic uses the optimizer's current
    /// diagonal `P_k` ([`Optimizer::preconditioner`]), and `P = I` while the optimizer has none
    /// (Adam before its first step) or is not diagonal. The regularizer's own buffers are
    /// allocated once per run, but the R-operator's forward pass allocates per step (unlike the
    /// rest of the loop).
    pub grad_norm: Option<crate::GradNormReg>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 32,
            shuffle: true,
            seed: 0,
            kappa_layers: Vec::new(),
            kappa_samples: 256,
            record_preconditioner: false,
            grad_norm: None,
        }
    }
}

/// `κ` of one layer's extended input matrix at the end of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KappaSnapshot {
    /// The layer whose input is measured.
    pub layer: usize,
    /// `κ(Ā)` of what the layer sees (normalized hidden variables).
    pub normalized: f64,
    /// `κ(Ā)` with the previous layer's normalization skipped.
    pub raw: f64,
}

/// Summary of the diagonal preconditioner `P_k` (THEORY.md section 4; learning rate outside).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrecondStats {
    /// Smallest entry.
    pub min: f64,
    /// Largest entry.
    pub max: f64,
    /// Mean entry.
    pub mean: f64,
    /// `max/min`: `κ(P_k)`.
    pub spread: f64,
}

/// One row of the training history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number (0 = before training).
    pub epoch: usize,
    /// Optimizer steps taken so far.
    pub steps: u64,
    /// Mean of the mini-batch losses of this epoch (training mode); `None` for epoch 0.
    pub batch_loss: Option<f64>,
    /// Loss on the full training set, inference mode.
    pub train_loss: f64,
    /// Accuracy on the full training set (`None` for regression).
    pub train_accuracy: Option<f64>,
    /// Loss on the test set, if one was given.
    pub test_loss: Option<f64>,
    /// Accuracy on the test set.
    pub test_accuracy: Option<f64>,
    /// `κ` snapshots of [`TrainConfig::kappa_layers`].
    pub kappa: Vec<KappaSnapshot>,
    /// `P_k` statistics (when requested and available).
    pub preconditioner: Option<PrecondStats>,
}

/// The training history: one record per epoch, epoch 0 first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct History {
    /// The records.
    pub epochs: Vec<EpochRecord>,
    /// Whether a callback stopped training early.
    pub stopped_early: bool,
}

impl History {
    /// The last record.
    pub fn last(&self) -> Option<&EpochRecord> {
        self.epochs.last()
    }
}

/// What a callback asks for after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep training.
    Continue,
    /// Stop after this epoch.
    Stop,
}

impl PrecondStats {
    /// min, max, mean and `max/min` of the entries of `p` (`None` for an empty slice).
    pub fn of(p: &[f64]) -> Option<Self> {
        if p.is_empty() {
            return None;
        }
        let min = p.iter().copied().fold(f64::INFINITY, f64::min);
        let max = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = p.iter().sum::<f64>() / p.len() as f64;
        Some(Self {
            min,
            max,
            mean,
            spread: max / min,
        })
    }
}

/// The shuffling seed of epoch `epoch` (1-based) for the run seed `seed`: the first word of the
/// ChaCha8 stream number `epoch` of the generator seeded with `seed`. An epoch's batches depend on
/// `(seed, epoch)` only, never on earlier epochs, so a run resumed at any epoch (on any number of
/// ranks) sees the batches of a run that never stopped.
pub fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64);
    rng.random::<u64>()
}

/// The mini-batches (sample indices, in order) of epoch `epoch` (1-based) of a training set of
/// `n_samples` samples: what [`train`] steps on, shuffled with [`epoch_seed`] when
/// [`TrainConfig::shuffle`] is set.
///
/// # Errors
/// [`NnError::InvalidConfig`] for `batch_size == 0`.
pub fn epoch_batches(
    n_samples: usize,
    config: &TrainConfig,
    epoch: usize,
) -> Result<Vec<Vec<usize>>> {
    minibatches(
        n_samples,
        config.batch_size,
        config.shuffle,
        epoch_seed(config.seed, epoch),
    )
}

/// The checks [`train`] runs before its first step, for `n_params` optimizer parameters:
/// parameter count, `batch_size`, κ layers, BatchNorm's smallest batch, targets of both sets.
///
/// # Errors
/// As [`train`].
pub fn check_training(
    mlp: &Mlp,
    n_params: usize,
    train_set: &Dataset,
    test_set: Option<&Dataset>,
    config: &TrainConfig,
) -> Result<()> {
    if n_params != mlp.layout().len() {
        return Err(NnError::DimensionMismatch {
            what: "optimizer parameters vs network",
            expected: mlp.layout().len(),
            got: n_params,
        });
    }
    if config.batch_size == 0 {
        return Err(NnError::InvalidConfig {
            what: "batch_size",
            value: "0".into(),
            reason: "must be positive",
        });
    }
    for &l in &config.kappa_layers {
        mlp.check_layer(l)?;
    }
    if let Some(r) = &config.grad_norm {
        r.validate()?;
    }
    // a minibatch of one sample (the whole set, or the last batch of an epoch) cannot give
    // BatchNorm statistics: refuse before the first step rather than in the middle of an epoch
    let n = train_set.n_samples();
    let smallest = if n.is_multiple_of(config.batch_size) {
        config.batch_size.min(n)
    } else {
        n % config.batch_size
    };
    if n > 0 {
        mlp.check_training_batch(smallest)?;
    }
    let loss = mlp.config().loss;
    loss.check_targets(&train_set.targets, mlp.n_outputs(), train_set.n_samples())?;
    if let Some(t) = test_set {
        loss.check_targets(&t.targets, mlp.n_outputs(), t.n_samples())?;
    }
    Ok(())
}

/// The record [`train`] writes after epoch `epoch` (0 = before training): the full training and
/// test sets evaluated in inference mode at `params`, the κ snapshots of
/// [`TrainConfig::kappa_layers`], with `steps` optimizer steps taken, the epoch's mean
/// mini-batch loss `batch_loss` and the `P_k` statistics `preconditioner` given by the caller.
///
/// # Errors
/// Evaluation errors (parameter length, non-finite parameters, layers out of range).
#[allow(clippy::too_many_arguments)]
pub fn epoch_record(
    mlp: &Mlp,
    params: &[f64],
    train_set: &Dataset,
    test_set: Option<&Dataset>,
    config: &TrainConfig,
    epoch: usize,
    steps: u64,
    batch_loss: Option<f64>,
    preconditioner: Option<PrecondStats>,
) -> Result<EpochRecord> {
    let tr = mlp.evaluate(params, train_set.x.as_ref(), &train_set.targets, Mode::Eval)?;
    let te = match test_set {
        Some(t) => Some(mlp.evaluate(params, t.x.as_ref(), &t.targets, Mode::Eval)?),
        None => None,
    };
    let mut snaps = Vec::with_capacity(config.kappa_layers.len());
    if !config.kappa_layers.is_empty() {
        let m = config.kappa_samples.clamp(1, train_set.n_samples());
        let idx: Vec<usize> = (0..m).collect();
        let probe = gather_columns(train_set.x.as_ref(), &idx);
        for &l in &config.kappa_layers {
            let a = extended_hidden_matrix(
                mlp,
                params,
                probe.as_ref(),
                l,
                WithNorm::Normalized,
                Mode::Train,
            )?;
            let r =
                extended_hidden_matrix(mlp, params, probe.as_ref(), l, WithNorm::Raw, Mode::Train)?;
            snaps.push(KappaSnapshot {
                layer: l,
                normalized: kappa(a.as_ref())?,
                raw: kappa(r.as_ref())?,
            });
        }
    }
    Ok(EpochRecord {
        epoch,
        steps,
        batch_loss,
        train_loss: tr.loss,
        train_accuracy: tr.accuracy,
        test_loss: te.as_ref().map(|e| e.loss),
        test_accuracy: te.and_then(|e| e.accuracy),
        kappa: snaps,
        preconditioner,
    })
}

#[allow(clippy::too_many_arguments)]
fn record(
    mlp: &Mlp,
    params: &[f64],
    optimizer: &Optimizer,
    train_set: &Dataset,
    test_set: Option<&Dataset>,
    config: &TrainConfig,
    epoch: usize,
    batch_loss: Option<f64>,
) -> Result<EpochRecord> {
    let preconditioner = if config.record_preconditioner {
        let mut p = vec![0.0; params.len()];
        optimizer
            .preconditioner(&mut p)
            .ok()
            .and_then(|()| PrecondStats::of(&p))
    } else {
        None
    };
    epoch_record(
        mlp,
        params,
        train_set,
        test_set,
        config,
        epoch,
        optimizer.step_count(),
        batch_loss,
        preconditioner,
    )
}

/// Trains `mlp` (its BatchNorm running averages are updated) with parameters `params` and the
/// optimizer `optimizer` (built for `params.len()` parameters) on `train_set`, evaluating
/// `test_set` each epoch. `callback` sees every record (epoch 0 included) and may stop training.
///
/// # Errors
/// [`NnError::DimensionMismatch`] when the optimizer or parameters do not fit the network,
/// [`NnError::InvalidConfig`] for `batch_size == 0`, target/loss mismatches,
/// [`NnError::BatchTooSmall`] when a BatchNorm network would see a minibatch of one sample (the
/// training set has one sample, or `n_samples % batch_size == 1`), and
/// [`NnError::Optimizer`] for an optimizer error (e.g. a non-finite gradient).
pub fn train(
    mlp: &mut Mlp,
    params: &mut [f64],
    optimizer: &mut Optimizer,
    train_set: &Dataset,
    test_set: Option<&Dataset>,
    config: &TrainConfig,
    callback: impl FnMut(&EpochRecord) -> Control,
) -> Result<History> {
    train_impl(
        mlp, params, optimizer, train_set, test_set, config, callback, None,
    )
}

/// [`train()`] with Batch Normalization Preconditioning: after each batch's gradient, `bnp`'s
/// running statistics take in the batch's layer inputs ([`Bnp::observe`]) and the gradient is
/// replaced by `P g` ([`Bnp::precondition`], docs/THEORY.md §6 BNP) before the optimizer's step.
/// Evaluation (inference mode) is unchanged: BNP leaves the network as it is. Batch size 1 is
/// accepted for networks without BatchNorm.
///
/// # Errors
/// Those of [`train()`], and [`NnError::DimensionMismatch`] when `bnp` was built for another
/// architecture.
#[allow(clippy::too_many_arguments)]
pub fn train_bnp(
    mlp: &mut Mlp,
    bnp: &mut Bnp,
    params: &mut [f64],
    optimizer: &mut Optimizer,
    train_set: &Dataset,
    test_set: Option<&Dataset>,
    config: &TrainConfig,
    callback: impl FnMut(&EpochRecord) -> Control,
) -> Result<History> {
    bnp.check_network(mlp)?; // before any step
    train_impl(
        mlp,
        params,
        optimizer,
        train_set,
        test_set,
        config,
        callback,
        Some(bnp),
    )
}

#[allow(clippy::too_many_arguments)]
fn train_impl(
    mlp: &mut Mlp,
    params: &mut [f64],
    optimizer: &mut Optimizer,
    train_set: &Dataset,
    test_set: Option<&Dataset>,
    config: &TrainConfig,
    mut callback: impl FnMut(&EpochRecord) -> Control,
    mut bnp: Option<&mut Bnp>,
) -> Result<History> {
    let n_params = mlp.layout().len();
    check_training(mlp, optimizer.n_params(), train_set, test_set, config)?;
    let mut history = History::default();
    let first = record(mlp, params, optimizer, train_set, test_set, config, 0, None)?;
    let stop = callback(&first) == Control::Stop;
    history.epochs.push(first);
    if stop {
        history.stopped_early = true;
        return Ok(history);
    }
    // one set of buffers for the whole run: no allocation per step
    let mut grad = vec![0.0; n_params];
    // gradient-norm regularization: P_k, P g and H P g (allocated only when used)
    let gn_len = if config.grad_norm.is_some() {
        n_params
    } else {
        0
    };
    let (mut gn_p, mut gn_u, mut gn_hu) = (vec![0.0; gn_len], vec![0.0; gn_len], vec![0.0; gn_len]);
    let mut ws = Workspace::new();
    let mut xb = Mat::new();
    let mut tb = Targets::Classes {
        labels: Vec::new(),
        n_classes: 0,
    };
    for epoch in 1..=config.epochs {
        let batches = epoch_batches(train_set.n_samples(), config, epoch)?;
        let mut sum = 0.0;
        for idx in &batches {
            gather_columns_into(train_set.x.as_ref(), idx, &mut xb)?;
            train_set.targets.gather_into(idx, &mut tb)?;
            let loss =
                mlp.loss_and_grad_into(params, xb.as_ref(), &tb, Mode::Train, &mut ws, &mut grad)?;
            if let Some(r) = &config.grad_norm {
                let p = (r.mode == crate::GradNormMode::Intrinsic
                    && optimizer.preconditioner(&mut gn_p).is_ok())
                .then_some(&gn_p[..]);
                let net: &Mlp = mlp;
                r.add_gradient(
                    &mut grad,
                    p,
                    |v, hv| {
                        net.hessian_vector_product(params, xb.as_ref(), &tb, Mode::Train, v, hv)
                    },
                    &mut gn_u,
                    &mut gn_hu,
                )?;
            }
            if let Some(bnp) = bnp.as_deref_mut() {
                bnp.observe(mlp, ws.forward())?;
                bnp.precondition(mlp, &mut grad)?;
            }
            optimizer.step_f64(params, &grad)?;
            mlp.update_running_stats(ws.forward())?;
            sum += loss;
        }
        let rec = record(
            mlp,
            params,
            optimizer,
            train_set,
            test_set,
            config,
            epoch,
            Some(sum / batches.len() as f64),
        )?;
        let stop = callback(&rec) == Control::Stop;
        history.epochs.push(rec);
        if stop {
            history.stopped_early = true;
            break;
        }
    }
    Ok(history)
}
