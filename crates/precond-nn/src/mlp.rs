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

use crate::activation::Activation;
use crate::batch_norm::{self, BatchNormSpec, NormStats, Placement, RunningStats, StatsGradient};
use crate::error::{NnError, Result};
use crate::layer_norm::{self, LayerNormSpec};
use crate::loss::{Loss, Targets};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// The normalization of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// No normalization.
    #[default]
    None,
    /// BatchNorm over the batch (per feature).
    BatchNorm(BatchNormSpec),
    /// LayerNorm over the features (per sample).
    LayerNorm(LayerNormSpec),
}

impl Normalization {
    fn placement(&self) -> Option<Placement> {
        match self {
            Normalization::None => None,
            Normalization::BatchNorm(s) => Some(s.placement),
            Normalization::LayerNorm(s) => Some(s.placement),
        }
    }

    /// Number of entries of `γ` (and of `β`) for a layer of `width` units.
    pub fn n_affine(&self, width: usize) -> usize {
        match self {
            Normalization::None => 0,
            Normalization::BatchNorm(s) => {
                if s.affine {
                    width
                } else {
                    0
                }
            }
            Normalization::LayerNorm(s) => s.affine.n_params(width),
        }
    }
}

/// One fully connected layer: `width` units, activation, normalization.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// Number of units (output features).
    pub width: usize,
    /// Elementwise activation `σ`.
    pub activation: Activation,
    /// Normalization of this layer's output (post-activation) or pre-activation.
    pub norm: Normalization,
}

/// Architecture and loss of a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Number of input features.
    pub input_dim: usize,
    /// The layers, input to output. The last one produces the logits / predictions.
    pub layers: Vec<LayerSpec>,
    /// The loss on the last layer's output.
    pub loss: Loss,
}

impl MlpConfig {
    /// A common shape: hidden layers of the given widths, each with `activation` and `norm`, and a
    /// linear output layer (identity activation, no normalization) of `outputs` units.
    pub fn feedforward(
        input_dim: usize,
        hidden: &[usize],
        activation: Activation,
        norm: Normalization,
        outputs: usize,
        loss: Loss,
    ) -> Self {
        let mut layers: Vec<LayerSpec> = hidden
            .iter()
            .map(|&width| LayerSpec {
                width,
                activation,
                norm,
            })
            .collect();
        layers.push(LayerSpec {
            width: outputs,
            activation: Activation::Identity,
            norm: Normalization::None,
        });
        Self {
            input_dim,
            layers,
            loss,
        }
    }
}

/// What a parameter block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// A weight matrix `W^ℓ` (row-major `out × in`).
    Weight,
    /// A bias vector `b^ℓ`.
    Bias,
    /// A normalization gain `γ`.
    Gain,
    /// A normalization shift `β`.
    Shift,
}

/// A named range of the flat parameter buffer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamBlock {
    /// `layers.{ℓ}.weight` etc.
    pub name: String,
    /// Kind of the block.
    pub kind: ParamKind,
    /// Layer it belongs to (0-based).
    pub layer: usize,
    /// Indices in the flat buffer.
    pub range: Range<usize>,
    /// Shape `(rows, cols)`: `(out, in)` for weights (row-major), `(len, 1)` otherwise.
    pub shape: (usize, usize),
}

/// The documented layout of the flat parameter buffer. Blocks are grouped **by kind**, so each
/// kind is one contiguous range ([`ParamLayout::kind_range`]):
/// 1. every layer's weight `W^ℓ`, stored **row-major** (`out × in`, as torch's `Linear.weight`),
///    so row `i` (the unit's `w_i` of Theorem 5) is contiguous;
/// 2. every layer's bias `b^ℓ`;
/// 3. every normalization gain `γ` (BatchNorm affine: one per feature; LayerNorm: 1 or `d`);
/// 4. every normalization shift `β`.
///
/// "No weight decay on biases and gains" is the single range `kind_range(Bias).start..len()`.
/// Blocks are named `layers.{ℓ}.weight`, `layers.{ℓ}.bias`, `layers.{ℓ}.norm.gain`,
/// `layers.{ℓ}.norm.shift` (ℓ 0-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamLayout {
    blocks: Vec<ParamBlock>,
    len: usize,
}

impl ParamLayout {
    fn new(config: &MlpConfig) -> Self {
        let mut blocks = Vec::new();
        let mut off = 0usize;
        let mut push =
            |blocks: &mut Vec<ParamBlock>, name: String, kind, layer, shape: (usize, usize)| {
                let n = shape.0 * shape.1;
                if n > 0 {
                    blocks.push(ParamBlock {
                        name,
                        kind,
                        layer,
                        range: off..off + n,
                        shape,
                    });
                    off += n;
                }
            };
        let mut fan_in = config.input_dim;
        for (l, s) in config.layers.iter().enumerate() {
            push(
                &mut blocks,
                format!("layers.{l}.weight"),
                ParamKind::Weight,
                l,
                (s.width, fan_in),
            );
            fan_in = s.width;
        }
        for (l, s) in config.layers.iter().enumerate() {
            push(
                &mut blocks,
                format!("layers.{l}.bias"),
                ParamKind::Bias,
                l,
                (s.width, 1),
            );
        }
        for (l, s) in config.layers.iter().enumerate() {
            push(
                &mut blocks,
                format!("layers.{l}.norm.gain"),
                ParamKind::Gain,
                l,
                (s.norm.n_affine(s.width), 1),
            );
        }
        for (l, s) in config.layers.iter().enumerate() {
            push(
                &mut blocks,
                format!("layers.{l}.norm.shift"),
                ParamKind::Shift,
                l,
                (s.norm.n_affine(s.width), 1),
            );
        }
        ParamLayout { blocks, len: off }
    }

    /// Total number of parameters.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the network has no parameters (never true for a valid network).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All blocks in buffer order.
    pub fn blocks(&self) -> &[ParamBlock] {
        &self.blocks
    }

    /// The block with this name.
    pub fn block(&self, name: &str) -> Option<&ParamBlock> {
        self.blocks.iter().find(|b| b.name == name)
    }

    /// The block of this kind in this layer (gains/shifts absent without affine normalization).
    pub fn find(&self, kind: ParamKind, layer: usize) -> Option<&ParamBlock> {
        self.blocks
            .iter()
            .find(|b| b.kind == kind && b.layer == layer)
    }

    /// The contiguous range holding every block of `kind` (empty range if none).
    pub fn kind_range(&self, kind: ParamKind) -> Range<usize> {
        let mut it = self.blocks.iter().filter(|b| b.kind == kind);
        match it.next() {
            None => {
                // empty range at the position the kind would start
                let start = self
                    .blocks
                    .iter()
                    .filter(|b| (b.kind as u8) < (kind as u8))
                    .map(|b| b.range.end)
                    .max()
                    .unwrap_or(0);
                start..start
            }
            Some(first) => {
                let end = it.next_back().map_or(first.range.end, |b| b.range.end);
                first.range.start..end
            }
        }
    }

    /// Index of the bias `b_i` and range of the weight row `w_i` of unit `i` of `layer`: the
    /// parameter block `[b_i; w_i]` of Theorem 5.
    pub fn unit(&self, layer: usize, unit: usize) -> Option<(usize, Range<usize>)> {
        let w = self.find(ParamKind::Weight, layer)?;
        let b = self.find(ParamKind::Bias, layer)?;
        if unit >= w.shape.0 {
            return None;
        }
        let cols = w.shape.1;
        let start = w.range.start + unit * cols;
        Some((b.range.start + unit, start..start + cols))
    }
}

/// Which normalization statistics a forward pass uses for BatchNorm layers.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    /// Batch statistics (training mode); backward as each layer's [`StatsGradient`] says.
    Train,
    /// Running averages (inference mode); statistics are constants.
    Eval,
    /// Given statistics per layer (indexed by layer; `None` = batch statistics for that layer, or
    /// a layer without BatchNorm). Given statistics are constants in the backward pass. This is the
    /// "statistics frozen" setting of Theorem 5 / (28).
    Frozen(&'a [Option<NormStats>]),
}

/// A normalization's forward values kept for the backward pass.
#[derive(Debug, Clone)]
pub struct NormTrace {
    /// Normalized values before the affine map.
    pub xhat: Mat<f64>,
    /// Output after the affine map.
    pub y: Mat<f64>,
    /// `1/sqrt(var + eps)` per feature (BatchNorm) or per sample (LayerNorm).
    pub inv_std: Vec<f64>,
    /// BatchNorm statistics used (batch or given); `None` for LayerNorm.
    pub stats: Option<NormStats>,
    /// Whether the statistics were computed from this batch (so they depend on the inputs).
    pub from_batch: bool,
}

/// Forward values of one layer.
#[derive(Debug, Clone)]
pub struct LayerTrace {
    /// Pre-activation `Z = W H + b 1ᵀ`.
    pub z: Mat<f64>,
    /// Pre-activation normalization (its `y` is the activation's input).
    pub pre: Option<NormTrace>,
    /// Activation output `σ(·)`.
    pub a: Mat<f64>,
    /// Post-activation normalization (its `y` is the layer output).
    pub post: Option<NormTrace>,
}

impl LayerTrace {
    /// Input of the activation (`Z`, or its normalization for pre-activation placement).
    pub fn activation_input(&self) -> MatRef<'_, f64> {
        self.pre.as_ref().map_or(self.z.as_ref(), |t| t.y.as_ref())
    }

    /// The layer's output `h^ℓ`.
    pub fn output(&self) -> MatRef<'_, f64> {
        self.post.as_ref().map_or(self.a.as_ref(), |t| t.y.as_ref())
    }
}

/// Everything a forward pass computed (kept for backward and for the Hessian diagnostics).
#[derive(Debug, Clone)]
pub struct Forward {
    /// The input batch (`input_dim × B`).
    pub input: Mat<f64>,
    /// Per-layer values.
    pub layers: Vec<LayerTrace>,
}

impl Forward {
    /// The network output (logits / predictions), `k × B`.
    pub fn output(&self) -> MatRef<'_, f64> {
        self.layers
            .last()
            .map_or(self.input.as_ref(), |l| l.output())
    }

    /// Input of layer `l` (`h^{l−1}`; the data for `l = 0`).
    pub fn layer_input(&self, l: usize) -> MatRef<'_, f64> {
        if l == 0 {
            self.input.as_ref()
        } else {
            self.layers[l - 1].output()
        }
    }

    /// The BatchNorm statistics each layer used (`Some` for BatchNorm layers), ready to pass to
    /// [`Mode::Frozen`].
    pub fn batch_norm_stats(&self) -> Vec<Option<NormStats>> {
        self.layers
            .iter()
            .map(|t| {
                t.pre
                    .as_ref()
                    .or(t.post.as_ref())
                    .and_then(|n| n.stats.clone())
            })
            .collect()
    }

    /// Batch size.
    pub fn batch_size(&self) -> usize {
        self.input.ncols()
    }
}

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

/// Above this many multiply-adds a matrix product runs on rayon.
const PAR_FLOPS: usize = 1 << 17;

pub(crate) fn par_for(m: usize, n: usize, k: usize) -> Par {
    if m.saturating_mul(n).saturating_mul(k) >= PAR_FLOPS {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

fn check_finite(what: &'static str, m: MatRef<'_, f64>) -> Result<()> {
    for c in 0..m.ncols() {
        for r in 0..m.nrows() {
            let v = m[(r, c)];
            if !v.is_finite() {
                return Err(NnError::NonFinite {
                    what,
                    row: r,
                    col: c,
                    value: v,
                });
            }
        }
    }
    Ok(())
}

/// Standard normal sample (Box–Muller) from a seeded generator.
pub(crate) fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

impl Mlp {
    /// Validates the configuration and builds the network (running mean 0, variance 1).
    pub fn new(config: MlpConfig) -> Result<Self> {
        if config.input_dim == 0 {
            return Err(NnError::InvalidConfig {
                what: "input_dim",
                value: "0".into(),
                reason: "must be positive",
            });
        }
        if config.layers.is_empty() {
            return Err(NnError::InvalidConfig {
                what: "layers",
                value: "[]".into(),
                reason: "need at least one layer",
            });
        }
        for s in &config.layers {
            if s.width == 0 {
                return Err(NnError::InvalidConfig {
                    what: "layer width",
                    value: "0".into(),
                    reason: "must be positive",
                });
            }
            match s.norm {
                Normalization::BatchNorm(b) => {
                    if !(b.eps >= 0.0 && b.eps.is_finite()) {
                        return Err(NnError::InvalidConfig {
                            what: "batch_norm.eps",
                            value: b.eps.to_string(),
                            reason: "must be finite and >= 0",
                        });
                    }
                    if !(0.0..=1.0).contains(&b.momentum) {
                        return Err(NnError::InvalidConfig {
                            what: "batch_norm.momentum",
                            value: b.momentum.to_string(),
                            reason: "must lie in [0, 1]",
                        });
                    }
                }
                Normalization::LayerNorm(l) => {
                    if !(l.eps >= 0.0 && l.eps.is_finite()) {
                        return Err(NnError::InvalidConfig {
                            what: "layer_norm.eps",
                            value: l.eps.to_string(),
                            reason: "must be finite and >= 0",
                        });
                    }
                }
                Normalization::None => {}
            }
        }
        let last = config.layers.len() - 1;
        let k = config.layers[last].width;
        match config.loss {
            Loss::SoftmaxCrossEntropy if k < 2 => {
                return Err(NnError::InvalidConfig {
                    what: "output width",
                    value: k.to_string(),
                    reason: "softmax cross-entropy needs >= 2 outputs",
                });
            }
            _ => {}
        }
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

    /// Seeded initialization: `W ~ N(0, gain²/fan_in)` (gain from [`Activation::init_gain`]),
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

    fn check_params(&self, params: &[f64]) -> Result<()> {
        if params.len() != self.layout.len() {
            return Err(NnError::DimensionMismatch {
                what: "parameter buffer length",
                expected: self.layout.len(),
                got: params.len(),
            });
        }
        if let Some((i, &v)) = params.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(NnError::NonFinite {
                what: "parameters",
                row: i,
                col: 0,
                value: v,
            });
        }
        Ok(())
    }

    fn check_input(&self, x: MatRef<'_, f64>) -> Result<()> {
        if x.nrows() != self.config.input_dim {
            return Err(NnError::DimensionMismatch {
                what: "input rows (features) vs input_dim",
                expected: self.config.input_dim,
                got: x.nrows(),
            });
        }
        if x.ncols() == 0 {
            return Err(NnError::Empty {
                what: "input batch (no columns)",
            });
        }
        check_finite("input", x)
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

    fn check_params_len(&self, params: &[f64]) -> Result<()> {
        if params.len() != self.layout.len() {
            return Err(NnError::DimensionMismatch {
                what: "parameter buffer length",
                expected: self.layout.len(),
                got: params.len(),
            });
        }
        Ok(())
    }

    pub(crate) fn check_layer(&self, layer: usize) -> Result<()> {
        if layer >= self.n_layers() {
            return Err(NnError::NoSuchLayer {
                layer,
                n_layers: self.n_layers(),
            });
        }
        Ok(())
    }

    /// Batched forward pass on `x` (`input_dim × B`, one column per sample).
    pub fn forward(&self, params: &[f64], x: MatRef<'_, f64>, mode: Mode<'_>) -> Result<Forward> {
        self.check_params(params)?;
        self.check_input(x)?;
        if let Mode::Frozen(s) = mode {
            if s.len() != self.n_layers() {
                return Err(NnError::DimensionMismatch {
                    what: "frozen statistics per layer",
                    expected: self.n_layers(),
                    got: s.len(),
                });
            }
            for (l, st) in s.iter().enumerate() {
                if let Some(st) = st {
                    let w = self.config.layers[l].width;
                    if st.mean.len() != w || st.var.len() != w {
                        return Err(NnError::DimensionMismatch {
                            what: "frozen statistics width",
                            expected: w,
                            got: st.mean.len(),
                        });
                    }
                }
            }
        }
        Ok(self.forward_impl(params, x, mode))
    }

    fn norm_forward(
        &self,
        params: &[f64],
        l: usize,
        x: MatRef<'_, f64>,
        mode: Mode<'_>,
    ) -> Option<NormTrace> {
        let spec = &self.config.layers[l];
        let (d, b) = (x.nrows(), x.ncols());
        let gamma = self.slice(params, ParamKind::Gain, l);
        let beta = self.slice(params, ParamKind::Shift, l);
        match spec.norm {
            Normalization::None => None,
            Normalization::BatchNorm(bn) => {
                let (stats, from_batch) = match mode {
                    Mode::Train => (NormStats::of_batch(x), true),
                    Mode::Eval => {
                        let r = self.running[l].as_ref().map(RunningStats::as_stats);
                        (
                            r.unwrap_or_else(|| NormStats {
                                mean: vec![0.0; d],
                                var: vec![1.0; d],
                            }),
                            false,
                        )
                    }
                    Mode::Frozen(s) => match &s[l] {
                        Some(st) => (st.clone(), false),
                        None => (NormStats::of_batch(x), true),
                    },
                };
                let mut xhat = Mat::zeros(d, b);
                let mut y = Mat::zeros(d, b);
                let mut inv = vec![0.0; d];
                batch_norm::forward(
                    x,
                    &stats,
                    bn.eps,
                    gamma,
                    beta,
                    xhat.as_mut(),
                    y.as_mut(),
                    &mut inv,
                );
                Some(NormTrace {
                    xhat,
                    y,
                    inv_std: inv,
                    stats: Some(stats),
                    from_batch,
                })
            }
            Normalization::LayerNorm(ln) => {
                let mut xhat = Mat::zeros(d, b);
                let mut y = Mat::zeros(d, b);
                let mut inv = vec![0.0; b];
                layer_norm::forward(x, ln.eps, gamma, beta, xhat.as_mut(), y.as_mut(), &mut inv);
                Some(NormTrace {
                    xhat,
                    y,
                    inv_std: inv,
                    stats: None,
                    from_batch: true,
                })
            }
        }
    }

    /// Forward pass without validation.
    pub(crate) fn forward_impl(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        mode: Mode<'_>,
    ) -> Forward {
        let b = x.ncols();
        let mut layers: Vec<LayerTrace> = Vec::with_capacity(self.n_layers());
        let input = x.to_owned();
        for (l, spec) in self.config.layers.iter().enumerate() {
            let h = if l == 0 {
                input.as_ref()
            } else {
                layers[l - 1].output()
            };
            let w = self.weight_unchecked(params, l);
            let bias = self.slice(params, ParamKind::Bias, l).unwrap_or(&[]);
            let mut z = Mat::from_fn(spec.width, b, |r, _| bias[r]);
            matmul(
                z.as_mut(),
                Accum::Add,
                w,
                h,
                1.0,
                par_for(spec.width, b, h.nrows()),
            );
            let placement = spec.norm.placement();
            let pre = if placement == Some(Placement::PreActivation) {
                self.norm_forward(params, l, z.as_ref(), mode)
            } else {
                None
            };
            let u = pre.as_ref().map_or(z.as_ref(), |t| t.y.as_ref());
            let act = spec.activation;
            let a = if act == Activation::Identity {
                u.to_owned()
            } else {
                let mut a = u.to_owned();
                for c in 0..a.ncols() {
                    a.col_as_slice_mut(c)
                        .iter_mut()
                        .for_each(|v| *v = act.value(*v));
                }
                a
            };
            let post = if placement == Some(Placement::PostActivation) {
                self.norm_forward(params, l, a.as_ref(), mode)
            } else {
                None
            };
            layers.push(LayerTrace { z, pre, a, post });
        }
        Forward { input, layers }
    }

    fn norm_backward(
        &self,
        params: &[f64],
        l: usize,
        t: &NormTrace,
        d: MatMut<'_, f64>,
        grad: &mut [f64],
    ) {
        let gamma = self.slice(params, ParamKind::Gain, l);
        let gb = self
            .layout
            .find(ParamKind::Gain, l)
            .map(|b| b.range.clone());
        let sb = self
            .layout
            .find(ParamKind::Shift, l)
            .map(|b| b.range.clone());
        let (dg, ds) = match (gb, sb) {
            (Some(g), Some(s)) => {
                let (lo, hi) = grad.split_at_mut(s.start);
                (Some(&mut lo[g]), Some(&mut hi[..s.end - s.start]))
            }
            _ => (None, None),
        };
        match self.config.layers[l].norm {
            Normalization::None => {}
            Normalization::BatchNorm(bn) => {
                let full = t.from_batch && bn.stats_gradient == StatsGradient::Full;
                batch_norm::backward(d, t.xhat.as_ref(), &t.inv_std, gamma, full, dg, ds);
            }
            Normalization::LayerNorm(_) => {
                layer_norm::backward(d, t.xhat.as_ref(), &t.inv_std, gamma, dg, ds);
            }
        }
    }

    /// Backward pass from `d_out = dL/dO` (`k × B`): writes the gradient into `grad`
    /// (overwritten, length [`ParamLayout::len`]) and returns `dL/dx` (`input_dim × B`).
    pub fn backward(
        &self,
        params: &[f64],
        fwd: &Forward,
        d_out: MatRef<'_, f64>,
        grad: &mut [f64],
    ) -> Result<Mat<f64>> {
        self.check_params_len(params)?;
        if grad.len() != self.layout.len() {
            return Err(NnError::DimensionMismatch {
                what: "gradient buffer length",
                expected: self.layout.len(),
                got: grad.len(),
            });
        }
        if fwd.layers.len() != self.n_layers() {
            return Err(NnError::DimensionMismatch {
                what: "forward trace layers",
                expected: self.n_layers(),
                got: fwd.layers.len(),
            });
        }
        let out = fwd.output();
        if d_out.nrows() != out.nrows() || d_out.ncols() != out.ncols() {
            return Err(NnError::DimensionMismatch {
                what: "d_out shape vs output shape",
                expected: out.nrows() * out.ncols(),
                got: d_out.nrows() * d_out.ncols(),
            });
        }
        Ok(self.backward_impl(params, fwd, d_out.to_owned(), grad))
    }

    /// Backward pass without validation.
    pub(crate) fn backward_impl(
        &self,
        params: &[f64],
        fwd: &Forward,
        mut d: Mat<f64>,
        grad: &mut [f64],
    ) -> Mat<f64> {
        for l in (0..self.n_layers()).rev() {
            let spec = &self.config.layers[l];
            let t = &fwd.layers[l];
            if let Some(post) = &t.post {
                self.norm_backward(params, l, post, d.as_mut(), grad);
            }
            if spec.activation != Activation::Identity {
                let u = t.activation_input();
                let act = spec.activation;
                for c in 0..d.ncols() {
                    let uc = u.col(c);
                    for (dv, uv) in d.col_as_slice_mut(c).iter_mut().zip(uc.iter()) {
                        *dv *= act.derivative(*uv);
                    }
                }
            }
            if let Some(pre) = &t.pre {
                self.norm_backward(params, l, pre, d.as_mut(), grad);
            }
            // d = dL/dZ
            let h = fwd.layer_input(l);
            let wb = &self.layout.blocks()[l];
            {
                let dw = MatMut::from_row_major_slice_mut(
                    &mut grad[wb.range.clone()],
                    wb.shape.0,
                    wb.shape.1,
                );
                matmul(
                    dw,
                    Accum::Replace,
                    d.as_ref(),
                    h.transpose(),
                    1.0,
                    par_for(wb.shape.0, wb.shape.1, d.ncols()),
                );
            }
            if let Some(bb) = self.layout.find(ParamKind::Bias, l) {
                let db = &mut grad[bb.range.clone()];
                db.iter_mut().for_each(|v| *v = 0.0);
                for c in 0..d.ncols() {
                    for (r, v) in db.iter_mut().enumerate() {
                        *v += d[(r, c)];
                    }
                }
            }
            let w = self.weight_unchecked(params, l);
            let mut dh = Mat::zeros(w.ncols(), d.ncols());
            matmul(
                dh.as_mut(),
                Accum::Replace,
                w.transpose(),
                d.as_ref(),
                1.0,
                par_for(w.ncols(), d.ncols(), w.nrows()),
            );
            d = dh;
        }
        d
    }

    /// Mean loss (15) on `(x, targets)` and its exact gradient, written into `grad`.
    pub fn loss_and_grad(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        targets: &Targets,
        mode: Mode<'_>,
        grad: &mut [f64],
    ) -> Result<Evaluation> {
        if grad.len() != self.layout.len() {
            return Err(NnError::DimensionMismatch {
                what: "gradient buffer length",
                expected: self.layout.len(),
                got: grad.len(),
            });
        }
        self.config
            .loss
            .check_targets(targets, self.n_outputs(), x.ncols())?;
        let forward = self.forward(params, x, mode)?;
        let out = forward.output();
        let mut d = Mat::zeros(out.nrows(), out.ncols());
        let loss = self.config.loss.value_and_grad(out, targets, d.as_mut());
        let accuracy = self.config.loss.accuracy(out, targets);
        self.backward_impl(params, &forward, d, grad);
        Ok(Evaluation {
            loss,
            accuracy,
            forward,
        })
    }

    /// Mean loss and accuracy without gradient.
    pub fn evaluate(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        targets: &Targets,
        mode: Mode<'_>,
    ) -> Result<Evaluation> {
        self.config
            .loss
            .check_targets(targets, self.n_outputs(), x.ncols())?;
        let forward = self.forward(params, x, mode)?;
        let out = forward.output();
        let loss = self
            .config
            .loss
            .per_sample(out, targets)
            .iter()
            .sum::<f64>()
            / out.ncols() as f64;
        let accuracy = self.config.loss.accuracy(out, targets);
        Ok(Evaluation {
            loss,
            accuracy,
            forward,
        })
    }

    /// Inference: the output (`k × B`) with BatchNorm running averages.
    pub fn predict(&self, params: &[f64], x: MatRef<'_, f64>) -> Result<Mat<f64>> {
        Ok(self.forward(params, x, Mode::Eval)?.output().to_owned())
    }

    /// Folds the batch statistics of a training-mode forward pass into the running averages
    /// (torch's momentum convention, see [`RunningStats::update`]). Layers whose statistics were
    /// not computed from the batch are left alone.
    pub fn update_running_stats(&mut self, fwd: &Forward) -> Result<()> {
        if fwd.layers.len() != self.n_layers() {
            return Err(NnError::DimensionMismatch {
                what: "forward trace layers",
                expected: self.n_layers(),
                got: fwd.layers.len(),
            });
        }
        let b = fwd.batch_size();
        for (l, t) in fwd.layers.iter().enumerate() {
            if let (Normalization::BatchNorm(bn), Some(run)) =
                (self.config.layers[l].norm, self.running[l].as_mut())
            {
                let tr = t.pre.as_ref().or(t.post.as_ref());
                if let Some(NormTrace {
                    stats: Some(st),
                    from_batch: true,
                    ..
                }) = tr
                {
                    run.update(st, b, bn.momentum);
                }
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
