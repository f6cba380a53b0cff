//! Checkpoints of a training run: parameters, the unsharded optimizer state, BatchNorm running
//! averages, the epoch and history, and what a resumed run must match. One file
//! `DIR/checkpoint.bin`, written atomically (temporary file, `fsync`, rename, `fsync` of the
//! directory) and checksummed.
//!
//! # Format (version 1), integers little-endian
//!
//! magic `PRCNDCKP`, version (u32), metadata length (u64), metadata ([`CheckpointMeta`] as
//! JSON), parameter count (u64), parameters (f64 bits), state length (u64), the optimizer state
//! ([`OptimizerState::to_bytes`], itself checksummed), then the CRC-32C (Castagnoli) of every
//! preceding byte (u32).
//!
//! Shuffling depends on `(seed, epoch)` only ([`precond_nn::epoch_batches`]), so the epoch and
//! the seed are the whole random-number position.

use crate::error::{DpError, Result};
use precond_nn::{Dataset, History, Mlp, RunningStats, Targets, TrainConfig};
use precond_optim::{OptimizerConfig, OptimizerState};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"PRCNDCKP";

/// The file name of a checkpoint inside its directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.bin";

/// Everything but the arrays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMeta {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Number of ranks of the run that wrote it (any number may resume).
    pub world_size: usize,
    /// The training settings (`epochs` is not checked on resume: it is the new total).
    pub train: TrainConfig,
    /// The network's architecture and loss (`MlpConfig` as JSON).
    pub mlp: serde_json::Value,
    /// The optimizer configuration (its JSON form).
    pub optimizer: serde_json::Value,
    /// Samples and features of the training set, and [`data_fingerprint`] of it.
    pub data: DataId,
    /// BatchNorm running averages per layer (`None` for layers without BatchNorm).
    pub running_stats: Vec<Option<RunningStats>>,
    /// The history so far (epoch 0 first).
    pub history: History,
}

/// What identifies a training set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataId {
    /// Samples.
    pub n_samples: usize,
    /// Features.
    pub n_features: usize,
    /// CRC-32C of the features (column by column, f64 bits) and the targets.
    pub crc32c: u32,
}

/// CRC-32C of a data set's features (column by column, little-endian f64 bits) and targets
/// (labels as u64 then the class count, or target values column by column).
pub fn data_fingerprint(ds: &Dataset) -> DataId {
    let mut crc = 0u32;
    let x = ds.x.as_ref();
    let mut col = Vec::with_capacity(8 * x.nrows());
    for j in 0..x.ncols() {
        col.clear();
        for i in 0..x.nrows() {
            col.extend_from_slice(&x[(i, j)].to_le_bytes());
        }
        crc = crc32c::crc32c_append(crc, &col);
    }
    match &ds.targets {
        Targets::Classes { labels, n_classes } => {
            for &l in labels {
                crc = crc32c::crc32c_append(crc, &(l as u64).to_le_bytes());
            }
            crc = crc32c::crc32c_append(crc, &(*n_classes as u64).to_le_bytes());
        }
        Targets::Values(v) => {
            for j in 0..v.ncols() {
                for i in 0..v.nrows() {
                    crc = crc32c::crc32c_append(crc, &v[(i, j)].to_le_bytes());
                }
            }
        }
    }
    DataId {
        n_samples: ds.n_samples(),
        n_features: ds.n_features(),
        crc32c: crc,
    }
}

/// A training run's state at the end of an epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Epoch, settings, running averages, history.
    pub meta: CheckpointMeta,
    /// The flat parameters.
    pub params: Vec<f64>,
    /// The unsharded optimizer state (what one process would hold).
    pub optimizer_state: OptimizerState,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> DpError {
    DpError::Corrupt {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn io(path: &Path, e: std::io::Error) -> DpError {
    DpError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl Checkpoint {
    /// The format version this build writes and reads.
    pub const FORMAT_VERSION: u32 = 1;

    /// The encoding described in the module docs.
    ///
    /// # Errors
    /// [`DpError::Corrupt`] when the metadata cannot be written as JSON (a non-finite number in
    /// the history or running averages).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let meta = serde_json::to_vec(&self.meta)
            .map_err(|e| corrupt(Path::new("(being written)"), e.to_string()))?;
        let state = self.optimizer_state.to_bytes();
        let mut out = Vec::with_capacity(40 + meta.len() + 8 * self.params.len() + state.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&Self::FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&(self.params.len() as u64).to_le_bytes());
        for p in &self.params {
            out.extend_from_slice(&p.to_le_bytes());
        }
        out.extend_from_slice(&(state.len() as u64).to_le_bytes());
        out.extend_from_slice(&state);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Decodes [`Self::to_bytes`]; `path` names the source in errors.
    ///
    /// # Errors
    /// [`DpError::Corrupt`] naming the problem: wrong magic, another version, a checksum that
    /// does not match, truncated or trailing bytes, metadata that is not a checkpoint's, a
    /// parameter count that differs from the optimizer state's, a damaged optimizer state.
    pub fn from_bytes(b: &[u8], path: &Path) -> Result<Self> {
        if b.len() < 8 || &b[..8] != MAGIC {
            return Err(corrupt(path, "not a precond checkpoint (bad magic)"));
        }
        if b.len() < 12 + 4 {
            return Err(corrupt(path, format!("truncated ({} bytes)", b.len())));
        }
        let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if version != Self::FORMAT_VERSION {
            return Err(corrupt(
                path,
                format!(
                    "format version {version} (this build reads {})",
                    Self::FORMAT_VERSION
                ),
            ));
        }
        let (body, tail) = b.split_at(b.len() - 4);
        let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        let actual = crc32c::crc32c(body);
        if stored != actual {
            return Err(corrupt(
                path,
                format!(
                    "checksum mismatch (stored {stored:#010x}, computed {actual:#010x}): damaged or truncated"
                ),
            ));
        }
        let mut pos: usize = 12;
        let mut take = |n: u64, what: &str| -> Result<&[u8]> {
            let n = usize::try_from(n).map_err(|_| corrupt(path, format!("{what} too long")))?;
            let end = pos
                .checked_add(n)
                .filter(|&e| e <= body.len())
                .ok_or_else(|| corrupt(path, format!("truncated in the {what}")))?;
            let s = &body[pos..end];
            pos = end;
            Ok(s)
        };
        let u64_of = |s: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        };
        let meta_len = u64_of(take(8, "metadata length")?);
        let meta: CheckpointMeta = serde_json::from_slice(take(meta_len, "metadata")?)
            .map_err(|e| corrupt(path, format!("metadata: {e}")))?;
        let n = u64_of(take(8, "parameter count")?);
        let raw = take(n.saturating_mul(8), "parameters")?;
        let params: Vec<f64> = raw
            .chunks_exact(8)
            .map(|c| f64::from_bits(u64_of(c)))
            .collect();
        let state_len = u64_of(take(8, "optimizer state length")?);
        let state = take(state_len, "optimizer state")?;
        let optimizer_state = OptimizerState::from_bytes(state)
            .map_err(|e| corrupt(path, format!("optimizer state: {e}")))?;
        if pos != body.len() {
            return Err(corrupt(
                path,
                format!("{} trailing bytes", body.len() - pos),
            ));
        }
        if optimizer_state.n_params != params.len() as u64 {
            return Err(corrupt(
                path,
                format!(
                    "{} parameters but an optimizer state of {}",
                    params.len(),
                    optimizer_state.n_params
                ),
            ));
        }
        Ok(Self {
            meta,
            params,
            optimizer_state,
        })
    }

    /// Refuses to resume a run whose settings differ from the checkpoint's: the network
    /// (`mlp`), the optimizer configuration, the training set, `batch_size`, `shuffle`, `seed`,
    /// `kappa_layers`, `kappa_samples`, `record_preconditioner` (`epochs` is free: the new total).
    ///
    /// # Errors
    /// [`DpError::Mismatch`] naming the first setting that differs, with both values.
    pub fn check_matches(
        &self,
        mlp: &Mlp,
        optimizer: &OptimizerConfig,
        train_set: &Dataset,
        config: &TrainConfig,
    ) -> Result<()> {
        let m = &self.meta;
        let mism = |field: &'static str, saved: String, now: String| {
            Err(DpError::Mismatch { field, saved, now })
        };
        let net = serde_json::to_value(mlp.config()).unwrap_or(serde_json::Value::Null);
        if m.mlp != net {
            return mism("network", m.mlp.to_string(), net.to_string());
        }
        let opt = optimizer.to_value();
        if m.optimizer != opt {
            return mism("optimizer", m.optimizer.to_string(), opt.to_string());
        }
        let data = data_fingerprint(train_set);
        if m.data != data {
            return mism("training set", format!("{:?}", m.data), format!("{data:?}"));
        }
        let t = &m.train;
        if t.batch_size != config.batch_size {
            return mism(
                "batch_size",
                t.batch_size.to_string(),
                config.batch_size.to_string(),
            );
        }
        if t.shuffle != config.shuffle {
            return mism("shuffle", t.shuffle.to_string(), config.shuffle.to_string());
        }
        if t.seed != config.seed {
            return mism("seed", t.seed.to_string(), config.seed.to_string());
        }
        if t.kappa_layers != config.kappa_layers || t.kappa_samples != config.kappa_samples {
            return mism(
                "kappa layers/samples",
                format!("{:?}/{}", t.kappa_layers, t.kappa_samples),
                format!("{:?}/{}", config.kappa_layers, config.kappa_samples),
            );
        }
        if t.record_preconditioner != config.record_preconditioner {
            return mism(
                "record_preconditioner",
                t.record_preconditioner.to_string(),
                config.record_preconditioner.to_string(),
            );
        }
        if self.params.len() != mlp.layout().len() {
            return mism(
                "parameter count",
                self.params.len().to_string(),
                mlp.layout().len().to_string(),
            );
        }
        Ok(())
    }
}

/// `DIR/checkpoint.bin`.
pub fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_FILE)
}

/// Writes `ckpt` to `DIR/checkpoint.bin` atomically: the bytes go to a temporary file in `dir`
/// (created if missing), which is flushed to disk, renamed over the old checkpoint, and the
/// directory flushed; a crash at any point leaves the old or the new checkpoint, never a mix.
///
/// # Errors
/// [`DpError::Io`] naming the path and the system's reason.
pub fn write_checkpoint(dir: &Path, ckpt: &Checkpoint) -> Result<()> {
    let bytes = ckpt.to_bytes()?;
    fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let fin = checkpoint_path(dir);
    {
        let mut f = fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
    }
    fs::rename(&tmp, &fin).map_err(|e| io(&fin, e))?;
    // the rename itself is durable once the directory is flushed (not possible everywhere)
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads and decodes `DIR/checkpoint.bin`.
///
/// # Errors
/// [`DpError::Io`] when it cannot be read, [`DpError::Corrupt`] as [`Checkpoint::from_bytes`].
pub fn read_checkpoint(dir: &Path) -> Result<Checkpoint> {
    let p = checkpoint_path(dir);
    let b = fs::read(&p).map_err(|e| io(&p, e))?;
    Checkpoint::from_bytes(&b, &p)
}

/// [`read_checkpoint`] on rank 0, its bytes broadcast, decoded on every rank: every rank gets
/// the same checkpoint or the same error (a rank that fails alone would leave the others
/// waiting in a collective).
///
/// # Errors
/// As [`read_checkpoint`], on every rank; [`DpError::Comm`] for a failed broadcast.
pub fn read_checkpoint_shared<C: crate::Communicator>(comm: &C, dir: &Path) -> Result<Checkpoint> {
    let p = checkpoint_path(dir);
    // one status byte: 0 then the file, 1 then the error message of rank 0
    let mut buf = Vec::new();
    if comm.rank() == 0 {
        match fs::read(&p) {
            Ok(b) => {
                buf.push(0);
                buf.extend_from_slice(&b);
            }
            Err(e) => {
                buf.push(1);
                buf.extend_from_slice(e.to_string().as_bytes());
            }
        }
    }
    comm.broadcast_bytes(&mut buf)?;
    match buf.split_first() {
        Some((0, b)) => Checkpoint::from_bytes(b, &p),
        Some((_, msg)) => Err(DpError::Io {
            path: p.display().to_string(),
            reason: String::from_utf8_lossy(msg).into_owned(),
        }),
        None => Err(DpError::Comm("empty checkpoint broadcast".into())),
    }
}
