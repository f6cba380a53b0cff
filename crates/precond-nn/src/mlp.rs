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
use crate::batch_norm::{
    self, BatchNormSpec, NormStats, Placement, RunningStats, StatsGradient, col_slice,
    col_slice_mut,
};
use crate::error::{NnError, Result};
use crate::layer_norm::{self, LayerNormSpec};
use crate::loss::{Loss, Targets};
use crate::workspace::{BackwardBuffers, NormScratch, Workspace};
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

impl NormTrace {
    /// No values yet (sized by the first forward pass).
    fn empty() -> Self {
        Self {
            xhat: Mat::new(),
            y: Mat::new(),
            inv_std: Vec::new(),
            stats: None,
            from_batch: false,
        }
    }
}

impl LayerTrace {
    /// No values yet (sized by the first forward pass).
    fn empty() -> Self {
        Self {
            z: Mat::new(),
            pre: None,
            a: Mat::new(),
            post: None,
        }
    }

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
    /// No layers yet (filled by a forward pass; its storage is reused by the next one).
    pub(crate) fn empty() -> Self {
        Self {
            input: Mat::new(),
            layers: Vec::new(),
        }
    }

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
    // one rayon thread (RAYON_NUM_THREADS=1, or inside a 1-thread pool): faer's sequential
    // kernels, which (unlike `Par::Rayon(1)`) allocate no job tables or reduction buffers
    if m.saturating_mul(n).saturating_mul(k) >= PAR_FLOPS && rayon::current_num_threads() > 1 {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

/// Gives `m` the shape `rows × cols`, reusing its storage: shrinking never reallocates, growing
/// reallocates only beyond the largest shape held so far (new entries are zero).
#[inline]
pub(crate) fn fit(m: &mut Mat<f64>, rows: usize, cols: usize) {
    if m.nrows() != rows || m.ncols() != cols {
        m.resize_with(rows, cols, |_, _| 0.0);
    }
}

/// Makes a normalization trace slot present (keeping its storage) or absent.
fn set_present(slot: &mut Option<NormTrace>, present: bool) {
    if !present {
        *slot = None;
    } else if slot.is_none() {
        *slot = Some(NormTrace::empty());
    }
}

/// `z ← z + b` for one column (also `db ← db + d` for the bias gradient).
#[inline]
fn add_bias(z: &mut [f64], bias: &[f64]) {
    z.iter_mut().zip(bias).for_each(|(v, b)| *v += *b);
}

/// Whether every entry is finite: a branch-free scan in blocks of 16 (vectorized), so the
/// validation of a large batch costs a fraction of one pass over it.
#[inline]
pub(crate) fn all_finite(s: &[f64]) -> bool {
    let mut blocks = s.chunks_exact(16);
    for block in &mut blocks {
        let mut ok = true;
        for v in block {
            ok &= v.is_finite();
        }
        if !ok {
            return false;
        }
    }
    blocks.remainder().iter().all(|v| v.is_finite())
}

fn check_finite(what: &'static str, m: MatRef<'_, f64>) -> Result<()> {
    for c in 0..m.ncols() {
        let col = m.col(c);
        if let Some(s) = col.try_as_col_major()
            && all_finite(s.as_slice())
        {
            continue;
        }
        for (r, &v) in col.iter().enumerate() {
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
        if all_finite(params) {
            return Ok(());
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

    /// A flat buffer (parameters or gradient) must have the layout's length.
    fn check_flat_len(&self, what: &'static str, len: usize) -> Result<()> {
        if len != self.layout.len() {
            return Err(NnError::DimensionMismatch {
                what,
                expected: self.layout.len(),
                got: len,
            });
        }
        Ok(())
    }

    fn check_params_len(&self, params: &[f64]) -> Result<()> {
        self.check_flat_len("parameter buffer length", params.len())
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

    /// Validates a [`Mode::Frozen`] statistics list against the network.
    fn check_mode(&self, mode: Mode<'_>) -> Result<()> {
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
        Ok(())
    }

    fn check_grad_len(&self, grad: &[f64]) -> Result<()> {
        self.check_flat_len("gradient buffer length", grad.len())
    }

    fn check_forward(&self, params: &[f64], x: MatRef<'_, f64>, mode: Mode<'_>) -> Result<()> {
        self.check_params(params)?;
        self.check_input(x)?;
        self.check_mode(mode)
    }

    /// Checks that a forward trace has this network's shapes (a [`Forward`] has public fields, so
    /// a hand-built or foreign one must give an error, never a panic).
    fn check_trace(&self, fwd: &Forward) -> Result<()> {
        if fwd.layers.len() != self.n_layers() {
            return Err(NnError::DimensionMismatch {
                what: "forward trace layers",
                expected: self.n_layers(),
                got: fwd.layers.len(),
            });
        }
        let b = fwd.batch_size();
        let shape = |what: &'static str, m: &Mat<f64>, rows: usize| {
            if m.nrows() != rows || m.ncols() != b {
                Err(NnError::DimensionMismatch {
                    what,
                    expected: rows * b,
                    got: m.nrows() * m.ncols(),
                })
            } else {
                Ok(())
            }
        };
        shape(
            "forward trace input shape",
            &fwd.input,
            self.config.input_dim,
        )?;
        if b == 0 {
            return Err(NnError::Empty {
                what: "forward trace (no samples)",
            });
        }
        for (spec, t) in self.config.layers.iter().zip(&fwd.layers) {
            shape("forward trace z shape", &t.z, spec.width)?;
            shape("forward trace activation shape", &t.a, spec.width)?;
            let placement = spec.norm.placement();
            for (present, trace) in [
                (placement == Some(Placement::PreActivation), &t.pre),
                (placement == Some(Placement::PostActivation), &t.post),
            ] {
                match (present, trace) {
                    (false, None) => {}
                    (true, Some(n)) => {
                        shape("forward trace x̂ shape", &n.xhat, spec.width)?;
                        shape("forward trace normalized output shape", &n.y, spec.width)?;
                        let want = match spec.norm {
                            Normalization::LayerNorm(_) => b,
                            _ => spec.width,
                        };
                        if n.inv_std.len() != want {
                            return Err(NnError::DimensionMismatch {
                                what: "forward trace inv_std length",
                                expected: want,
                                got: n.inv_std.len(),
                            });
                        }
                    }
                    (want, _) => {
                        return Err(NnError::DimensionMismatch {
                            what: "forward trace normalizations vs network",
                            expected: usize::from(want),
                            got: usize::from(!want),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Batched forward pass on `x` (`input_dim × B`, one column per sample).
    ///
    /// Allocates a new [`Forward`]; [`Mlp::forward_into`] computes the same values into a reused
    /// [`Workspace`].
    pub fn forward(&self, params: &[f64], x: MatRef<'_, f64>, mode: Mode<'_>) -> Result<Forward> {
        self.check_forward(params, x, mode)?;
        Ok(self.forward_impl(params, x, mode))
    }

    /// Batched forward pass on `x` (`input_dim × B`) into `ws`, read it with
    /// [`Workspace::forward`]. The workspace's buffers are reused: no allocation once they have
    /// held a batch at least this large.
    ///
    /// # Errors
    /// As [`Mlp::forward`]: parameter length or non-finite parameters, input shape or non-finite
    /// input, [`Mode::Frozen`] statistics that do not fit. `ws` is left unchanged on error.
    pub fn forward_into(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        mode: Mode<'_>,
        ws: &mut Workspace,
    ) -> Result<()> {
        self.check_forward(params, x, mode)?;
        self.forward_core(params, x, mode, &mut ws.forward);
        Ok(())
    }

    /// Forward pass without validation, into a new [`Forward`].
    pub(crate) fn forward_impl(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        mode: Mode<'_>,
    ) -> Forward {
        let mut fwd = Forward::empty();
        self.forward_core(params, x, mode, &mut fwd);
        fwd
    }

    /// Normalization forward pass of layer `l` on `x` into `t` (storage reused).
    fn norm_forward_into(
        &self,
        params: &[f64],
        l: usize,
        x: MatRef<'_, f64>,
        mode: Mode<'_>,
        t: &mut NormTrace,
    ) {
        let (d, b) = (x.nrows(), x.ncols());
        let gamma = self.slice(params, ParamKind::Gain, l);
        let beta = self.slice(params, ParamKind::Shift, l);
        let NormTrace {
            xhat,
            y,
            inv_std,
            stats,
            from_batch,
        } = t;
        fit(xhat, d, b);
        fit(y, d, b);
        match self.config.layers[l].norm {
            Normalization::None => {}
            Normalization::BatchNorm(bn) => {
                let st = stats.get_or_insert_with(|| NormStats {
                    mean: Vec::new(),
                    var: Vec::new(),
                });
                *from_batch = match mode {
                    Mode::Train => {
                        st.set_of_batch(x);
                        true
                    }
                    Mode::Eval => {
                        match &self.running[l] {
                            Some(r) => st.set_from(&r.mean, &r.var),
                            None => st.set_identity(d),
                        }
                        false
                    }
                    Mode::Frozen(s) => match &s[l] {
                        Some(given) => {
                            st.set_from(&given.mean, &given.var);
                            false
                        }
                        None => {
                            st.set_of_batch(x);
                            true
                        }
                    },
                };
                inv_std.clear();
                inv_std.resize(d, 0.0);
                batch_norm::forward(
                    x,
                    st,
                    bn.eps,
                    gamma,
                    beta,
                    xhat.as_mut(),
                    y.as_mut(),
                    inv_std,
                );
            }
            Normalization::LayerNorm(ln) => {
                *stats = None;
                *from_batch = true;
                inv_std.clear();
                inv_std.resize(b, 0.0);
                layer_norm::forward(x, ln.eps, gamma, beta, xhat.as_mut(), y.as_mut(), inv_std);
            }
        }
    }

    /// The forward pass (the one implementation behind [`Mlp::forward`] and
    /// [`Mlp::forward_into`]), without validation, into `fwd` (storage reused): per layer
    /// `Z = W H` (one matrix product into the kept buffer), then one pass per column adding the
    /// bias and applying `σ` (normalizations in between as placed).
    pub(crate) fn forward_core(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        mode: Mode<'_>,
        fwd: &mut Forward,
    ) {
        let (nl, b) = (self.n_layers(), x.ncols());
        let Forward { input, layers } = fwd;
        fit(input, x.nrows(), b);
        input.copy_from(x);
        layers.truncate(nl);
        layers.resize_with(nl, LayerTrace::empty);
        for (l, spec) in self.config.layers.iter().enumerate() {
            let (done, rest) = layers.split_at_mut(l);
            let h = done.last().map_or(input.as_ref(), LayerTrace::output);
            let LayerTrace { z, pre, a, post } = &mut rest[0];
            let w = self.weight_unchecked(params, l);
            let bias = self.slice(params, ParamKind::Bias, l).unwrap_or(&[]);
            fit(z, spec.width, b);
            fit(a, spec.width, b);
            matmul(
                z.as_mut(),
                Accum::Replace,
                w,
                h,
                1.0,
                par_for(spec.width, b, h.nrows()),
            );
            let placement = spec.norm.placement();
            set_present(pre, placement == Some(Placement::PreActivation));
            set_present(post, placement == Some(Placement::PostActivation));
            let act = spec.activation;
            match pre {
                Some(pre) => {
                    for c in 0..b {
                        add_bias(col_slice_mut(z.as_mut(), c), bias);
                    }
                    self.norm_forward_into(params, l, z.as_ref(), mode, pre);
                    for c in 0..b {
                        act.apply_slice(col_slice(pre.y.as_ref(), c), col_slice_mut(a.as_mut(), c));
                    }
                }
                None => {
                    for c in 0..b {
                        let zc = col_slice_mut(z.as_mut(), c);
                        add_bias(zc, bias);
                        act.apply_slice(zc, col_slice_mut(a.as_mut(), c));
                    }
                }
            }
            if let Some(post) = post {
                self.norm_forward_into(params, l, a.as_ref(), mode, post);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn norm_backward(
        &self,
        params: &[f64],
        l: usize,
        t: &NormTrace,
        d: MatMut<'_, f64>,
        grad: &mut [f64],
        scratch: &mut NormScratch,
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
                batch_norm::backward(
                    d,
                    t.xhat.as_ref(),
                    &t.inv_std,
                    gamma,
                    full,
                    dg,
                    ds,
                    &mut scratch.sum_g,
                    &mut scratch.sum_gx,
                    &mut scratch.scale,
                );
            }
            Normalization::LayerNorm(_) => {
                layer_norm::backward(d, t.xhat.as_ref(), &t.inv_std, gamma, dg, ds);
            }
        }
    }

    /// Validation shared by [`Mlp::backward`] and [`Mlp::backward_into`].
    fn check_backward(
        &self,
        params: &[f64],
        fwd: &Forward,
        d_out: MatRef<'_, f64>,
        grad: &[f64],
    ) -> Result<()> {
        self.check_params_len(params)?;
        self.check_grad_len(grad)?;
        self.check_trace(fwd)?;
        let out = fwd.output();
        if d_out.nrows() != out.nrows() || d_out.ncols() != out.ncols() {
            return Err(NnError::DimensionMismatch {
                what: "d_out shape vs output shape",
                expected: out.nrows() * out.ncols(),
                got: d_out.nrows() * d_out.ncols(),
            });
        }
        Ok(())
    }

    /// Backward pass from `d_out = dL/dO` (`k × B`): writes the gradient into `grad`
    /// (overwritten, length [`ParamLayout::len`]) and returns `dL/dx` (`input_dim × B`).
    ///
    /// Allocates its buffers; [`Mlp::backward_into`] reuses a [`Workspace`] instead.
    pub fn backward(
        &self,
        params: &[f64],
        fwd: &Forward,
        d_out: MatRef<'_, f64>,
        grad: &mut [f64],
    ) -> Result<Mat<f64>> {
        self.check_backward(params, fwd, d_out, grad)?;
        let mut bufs = BackwardBuffers::default();
        bufs.output_delta(self.n_layers(), d_out.nrows(), d_out.ncols())
            .copy_from(d_out);
        self.backward_core(params, fwd, &mut bufs, grad, true);
        Ok(bufs.input_grad)
    }

    /// Backward pass through the forward pass held in `ws` (the last [`Mlp::forward_into`]),
    /// from `d_out = dL/dO` (`k × B`): writes the gradient into `grad` (overwritten, length
    /// [`ParamLayout::len`]) and returns `dL/dx` (`input_dim × B`) as a view into `ws`.
    /// No allocation once `ws` has held a batch this large.
    ///
    /// # Errors
    /// Buffer lengths, `d_out` shape, or `ws` holding no forward pass of this network.
    pub fn backward_into<'w>(
        &self,
        params: &[f64],
        d_out: MatRef<'_, f64>,
        ws: &'w mut Workspace,
        grad: &mut [f64],
    ) -> Result<MatRef<'w, f64>> {
        self.check_backward(params, &ws.forward, d_out, grad)?;
        let Workspace { forward, backward } = ws;
        backward
            .output_delta(self.n_layers(), d_out.nrows(), d_out.ncols())
            .copy_from(d_out);
        self.backward_core(params, forward, backward, grad, true);
        Ok(backward.input_grad.as_ref())
    }

    /// The backward pass (the one implementation behind [`Mlp::backward`],
    /// [`Mlp::backward_into`] and the loss gradients), without validation. On entry
    /// `bufs.deltas[n_layers − 1]` holds `dL/dO` (see [`BackwardBuffers::output_delta`]); on exit
    /// `grad` holds the gradient and, if `input_grad`, `bufs.input_grad` holds `dL/dx` (the last
    /// product `W⁰ᵀ (dL/dZ⁰)` is skipped otherwise).
    pub(crate) fn backward_core(
        &self,
        params: &[f64],
        fwd: &Forward,
        bufs: &mut BackwardBuffers,
        grad: &mut [f64],
        input_grad: bool,
    ) {
        let b = fwd.batch_size();
        let BackwardBuffers {
            deltas,
            input_grad: dx,
            scratch,
        } = bufs;
        for l in (0..self.n_layers()).rev() {
            let spec = &self.config.layers[l];
            let t = &fwd.layers[l];
            let (below, here) = deltas.split_at_mut(l);
            let d = &mut here[0];
            if let Some(post) = &t.post {
                self.norm_backward(params, l, post, d.as_mut(), grad, scratch);
            }
            // d ← d ⊙ σ'(u), and (without a pre-activation normalization, when this is already
            // dL/dZ) the bias gradient Σ_n d in the same pass over the columns
            let act = spec.activation;
            let bias = self
                .layout
                .find(ParamKind::Bias, l)
                .map(|bb| bb.range.clone());
            let fused = t.pre.is_none();
            if let Some(r) = &bias {
                grad[r.clone()].iter_mut().for_each(|v| *v = 0.0);
            }
            if act != Activation::Identity || fused {
                let u = t.activation_input();
                for c in 0..b {
                    let dc = col_slice_mut(d.as_mut(), c);
                    act.mul_derivative_slice(col_slice(u, c), dc);
                    if let (true, Some(r)) = (fused, &bias) {
                        add_bias(&mut grad[r.clone()], dc);
                    }
                }
            }
            if let Some(pre) = &t.pre {
                self.norm_backward(params, l, pre, d.as_mut(), grad, scratch);
                if let Some(r) = &bias {
                    for c in 0..b {
                        add_bias(&mut grad[r.clone()], col_slice(d.as_ref(), c));
                    }
                }
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
                    par_for(wb.shape.0, wb.shape.1, b),
                );
            }
            let next = match below.last_mut() {
                Some(prev) => prev,
                None if input_grad => &mut *dx,
                None => continue,
            };
            let w = self.weight_unchecked(params, l);
            fit(next, w.ncols(), b);
            matmul(
                next.as_mut(),
                Accum::Replace,
                w.transpose(),
                d.as_ref(),
                1.0,
                par_for(w.ncols(), b, w.nrows()),
            );
        }
    }

    /// Mean loss (15) and its gradient `dL/dO` (into the workspace), then the backward pass;
    /// without validation. The one implementation behind [`Mlp::loss_and_grad`] and
    /// [`Mlp::loss_and_grad_into`].
    pub(crate) fn loss_and_grad_core(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        targets: &Targets,
        mode: Mode<'_>,
        ws: &mut Workspace,
        grad: &mut [f64],
    ) -> f64 {
        let Workspace { forward, backward } = ws;
        self.forward_core(params, x, mode, forward);
        let out = forward.output();
        let d = backward.output_delta(self.n_layers(), out.nrows(), out.ncols());
        let loss = self.config.loss.value_and_grad(out, targets, d.as_mut());
        self.backward_core(params, forward, backward, grad, false);
        loss
    }

    /// Mean loss (15) on `(x, targets)` and its exact gradient, written into `grad`.
    ///
    /// Allocates the forward values it returns; [`Mlp::loss_and_grad_into`] is the same
    /// computation into a reused [`Workspace`].
    pub fn loss_and_grad(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        targets: &Targets,
        mode: Mode<'_>,
        grad: &mut [f64],
    ) -> Result<Evaluation> {
        let mut ws = Workspace::new();
        let loss = self.loss_and_grad_into(params, x, targets, mode, &mut ws, grad)?;
        let forward = ws.into_forward();
        let accuracy = self.config.loss.accuracy(forward.output(), targets);
        Ok(Evaluation {
            loss,
            accuracy,
            forward,
        })
    }

    /// Mean loss (15) `L = (1/N) Σ_n ℓ(F(x_n; θ), y_n)` on `(x, targets)` and its exact gradient
    /// `∇_θ L` (backpropagation), written into `grad` (overwritten, length
    /// [`ParamLayout::len`]). Returns `L`.
    ///
    /// All intermediate values live in `ws`: after the first call with a batch at least this
    /// large, a call performs **no heap allocation** (a smaller batch, such as the last partial
    /// mini-batch of an epoch, reuses the same storage). The forward values stay readable through
    /// [`Workspace::forward`] (e.g. for [`Mlp::update_running_stats`] or
    /// [`Loss::accuracy`]). Same numbers as [`Mlp::loss_and_grad`] (which calls this).
    ///
    /// # Errors
    /// Gradient buffer length, targets that do not fit the loss, parameter length or
    /// non-finite parameters, input shape or non-finite input, [`Mode::Frozen`] statistics
    /// that do not fit. On error `grad` and `ws` are left unchanged.
    pub fn loss_and_grad_into(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        targets: &Targets,
        mode: Mode<'_>,
        ws: &mut Workspace,
        grad: &mut [f64],
    ) -> Result<f64> {
        self.check_grad_len(grad)?;
        self.config
            .loss
            .check_targets(targets, self.n_outputs(), x.ncols())?;
        self.check_forward(params, x, mode)?;
        Ok(self.loss_and_grad_core(params, x, targets, mode, ws, grad))
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
        self.check_trace(fwd)?;
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
