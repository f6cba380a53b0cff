//! Fully connected networks (14) `h^ℓ = σ(W^ℓ h^{ℓ−1} + b^ℓ)` with optional BatchNorm / LayerNorm,
//! batched forward and exact backward passes over one flat parameter buffer.
//!
//! # Data layout
//! A batch is a `d × B` [`faer::Mat`], **one column per sample** (the theory's
//! `A = [h_1 … h_N]`). Layer `ℓ` computes `Z = W H + b 1ᵀ` with `W` of shape `out × in`.
//!
//! # Parameter layout
//! All parameters live in one `&[f64]` described by [`ParamLayout`]. Blocks are grouped **by kind**
//! so that each kind is one contiguous range ([`ParamLayout::kind_range`]):
//! 1. every layer's weight `W^ℓ`, stored **row-major** (`out × in`, as torch's `Linear.weight`),
//!    so row `i` (the unit's `w_i` of Theorem 5) is contiguous;
//! 2. every layer's bias `b^ℓ`;
//! 3. every normalization gain `γ` (BatchNorm affine: one per feature; LayerNorm: 1 or `d`);
//! 4. every normalization shift `β`.
//!
//! So "no weight decay on biases and gains" is the single range `kind_range(Bias).start..len()`.
//! Blocks are named `layers.{ℓ}.weight`, `layers.{ℓ}.bias`, `layers.{ℓ}.norm.gain`,
//! `layers.{ℓ}.norm.shift` (ℓ 0-based).
//!
//! # Normalization placement
//! Post-activation: `h = N(σ(Z))` (the placement THEORY.md section 6 analyzes). Pre-activation:
//! `h = σ(N(Z))`. BatchNorm statistics follow [`Mode`]; running averages are kept in the [`Mlp`]
//! and updated only by [`Mlp::update_running_stats`], so forward passes are pure.

mod backward;
mod check;
mod config;
mod forward;
mod layout;
pub mod trace;
pub(crate) mod workspace;

pub(crate) use check::check_finite_vec;
pub use config::{LayerSpec, MlpConfig, Normalization};
pub use forward::Mode;
pub use layout::{ParamBlock, ParamKind, ParamLayout};
pub use trace::{Forward, NormTrace};
pub use workspace::Workspace;

use crate::batch_norm::RunningStats;
use crate::error::{NnError, Result};
use crate::util::standard_normal;
use faer::MatRef;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Loss, accuracy and forward values of one evaluation.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Mean loss `L` (15).
    pub loss: f64,
    /// Classification accuracy (`None` for MSE).
    pub accuracy: Option<f64>,
    /// The forward pass.
    pub forward: Forward,
}

/// A fully connected network: architecture, parameter layout and BatchNorm running statistics.
/// Parameters are **not** stored here: every method takes the flat buffer (`&[f64]` of
/// [`ParamLayout::len`]), so optimizers, the C ABI and finite differences work on it directly.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    config: MlpConfig,
    layout: ParamLayout,
    running: Vec<Option<RunningStats>>,
}

impl Mlp {
    /// Validates the configuration and builds the network (running mean 0, variance 1).
    pub fn new(config: MlpConfig) -> Result<Self> {
        config.check()?;
        let running = config
            .layers
            .iter()
            .map(|s| match s.norm {
                Normalization::BatchNorm(_) => Some(RunningStats::new(s.width)),
                _ => None,
            })
            .collect();
        let layout = ParamLayout::new(&config);
        Ok(Self {
            config,
            layout,
            running,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }

    /// The flat parameter layout.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// Number of layers.
    pub fn n_layers(&self) -> usize {
        self.config.layers.len()
    }

    /// Number of outputs.
    pub fn n_outputs(&self) -> usize {
        self.config.layers[self.n_layers() - 1].width
    }

    /// Running statistics per layer (`Some` for BatchNorm layers).
    pub fn running_stats(&self) -> &[Option<RunningStats>] {
        &self.running
    }

    /// Resets every BatchNorm running average to mean 0, variance 1.
    pub fn reset_running_stats(&mut self) {
        for (r, s) in self.running.iter_mut().zip(&self.config.layers) {
            if r.is_some() {
                *r = Some(RunningStats::new(s.width));
            }
        }
    }

    /// Seeded initialization: `W ~ N(0, gain²/fan_in)` (gain from [`Activation::init_gain`](crate::Activation::init_gain)),
    /// `b = 0`, `γ = 1`, `β = 0`.
    pub fn init_params(&self, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut p = vec![0.0; self.layout.len()];
        for b in self.layout.blocks() {
            match b.kind {
                ParamKind::Weight => {
                    let sd = self.config.layers[b.layer].activation.init_gain()
                        / (b.shape.1 as f64).sqrt();
                    for v in &mut p[b.range.clone()] {
                        *v = sd * standard_normal(&mut rng);
                    }
                }
                ParamKind::Gain => p[b.range.clone()].iter_mut().for_each(|v| *v = 1.0),
                ParamKind::Bias | ParamKind::Shift => {}
            }
        }
        p
    }

    fn slice<'p>(&self, params: &'p [f64], kind: ParamKind, layer: usize) -> Option<&'p [f64]> {
        self.layout
            .find(kind, layer)
            .map(|b| &params[b.range.clone()])
    }

    /// Weight matrix `W^ℓ` as a view into the buffer.
    pub fn weight<'p>(&self, params: &'p [f64], layer: usize) -> Result<MatRef<'p, f64>> {
        self.check_params_len(params)?;
        self.check_layer(layer)?;
        Ok(self.weight_unchecked(params, layer))
    }

    fn weight_unchecked<'p>(&self, params: &'p [f64], layer: usize) -> MatRef<'p, f64> {
        let b = &self.layout.blocks()[layer];
        MatRef::from_row_major_slice(&params[b.range.clone()], b.shape.0, b.shape.1)
    }

    /// Folds the batch statistics of a training-mode forward pass into the running averages
    /// (torch's momentum convention, see [`RunningStats::update`]). Layers whose statistics were
    /// not computed from the batch are left alone.
    pub fn update_running_stats(&mut self, fwd: &Forward) -> Result<()> {
        self.check_trace(fwd)?;
        let b = fwd.batch_size();
        for (l, t) in fwd.layers.iter().enumerate() {
            if let (Normalization::BatchNorm(bn), Some(run)) =
                (self.config.layers[l].norm, self.running[l].as_mut())
                && let Some(NormTrace {
                    stats: Some(st),
                    from_batch: true,
                    ..
                }) = t.norm()
            {
                run.update(st, b, bn.momentum);
            }
        }
        Ok(())
    }

    /// Overwrites the running statistics (e.g. loaded from a checkpoint).
    pub fn set_running_stats(&mut self, layer: usize, stats: RunningStats) -> Result<()> {
        self.check_layer(layer)?;
        match &mut self.running[layer] {
            None => Err(NnError::InvalidConfig {
                what: "layer",
                value: layer.to_string(),
                reason: "has no BatchNorm",
            }),
            Some(r) => {
                if stats.mean.len() != r.mean.len() || stats.var.len() != r.var.len() {
                    return Err(NnError::DimensionMismatch {
                        what: "running statistics width",
                        expected: r.mean.len(),
                        got: stats.mean.len(),
                    });
                }
                *r = stats;
                Ok(())
            }
        }
    }
}
