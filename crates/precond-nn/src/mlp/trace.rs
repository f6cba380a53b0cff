//! The values a forward pass keeps for the backward pass and the Hessian diagnostics.
//!
//! A [`Forward`] is made only by the crate's forward passes ([`crate::Mlp::forward`],
//! [`crate::Mlp::forward_into`], [`crate::Mlp::evaluate`]): its fields are private, so its shapes
//! always agree with one another and with the network that made it. Users read it through
//! accessors.

use crate::batch_norm::NormStats;
use faer::{Mat, MatRef};

/// A normalization's forward values kept for the backward pass.
#[derive(Debug, Clone)]
pub struct NormTrace {
    /// Normalized values before the affine map.
    pub(crate) xhat: Mat<f64>,
    /// Output after the affine map.
    pub(crate) y: Mat<f64>,
    /// `1/sqrt(var + eps)` per feature (BatchNorm) or per sample (LayerNorm).
    pub(crate) inv_std: Vec<f64>,
    /// BatchNorm statistics used (batch or given); `None` for LayerNorm.
    pub(crate) stats: Option<NormStats>,
    /// Whether the statistics were computed from this batch (so they depend on the inputs).
    pub(crate) from_batch: bool,
}

impl NormTrace {
    /// No values yet (sized by the first forward pass).
    pub(crate) fn empty() -> Self {
        Self {
            xhat: Mat::new(),
            y: Mat::new(),
            inv_std: Vec::new(),
            stats: None,
            from_batch: false,
        }
    }

    /// Normalized values `x̂` before the affine map (same shape as the input).
    pub fn xhat(&self) -> MatRef<'_, f64> {
        self.xhat.as_ref()
    }

    /// Output `γ ⊙ x̂ + β` after the affine map (`x̂` without affine parameters).
    pub fn output(&self) -> MatRef<'_, f64> {
        self.y.as_ref()
    }

    /// `1/sqrt(var + eps)` per feature (BatchNorm) or per sample (LayerNorm).
    pub fn inv_std(&self) -> &[f64] {
        &self.inv_std
    }

    /// BatchNorm statistics used (batch or given); `None` for LayerNorm.
    pub fn stats(&self) -> Option<&NormStats> {
        self.stats.as_ref()
    }

    /// Whether the statistics were computed from this batch (so they depend on the inputs).
    pub fn from_batch(&self) -> bool {
        self.from_batch
    }
}

/// Forward values of one layer.
#[derive(Debug, Clone)]
pub struct LayerTrace {
    /// Pre-activation `Z = W H + b 1ᵀ`.
    pub(crate) z: Mat<f64>,
    /// Pre-activation normalization (its `y` is the activation's input).
    pub(crate) pre: Option<NormTrace>,
    /// Activation output `σ(·)`.
    pub(crate) a: Mat<f64>,
    /// Post-activation normalization (its `y` is the layer output).
    pub(crate) post: Option<NormTrace>,
}

impl LayerTrace {
    /// No values yet (sized by the first forward pass).
    pub(crate) fn empty() -> Self {
        Self {
            z: Mat::new(),
            pre: None,
            a: Mat::new(),
            post: None,
        }
    }

    /// Pre-activation `Z = W H + b 1ᵀ` (`width × B`).
    pub fn z(&self) -> MatRef<'_, f64> {
        self.z.as_ref()
    }

    /// The pre-activation normalization (its output is the activation's input), if any.
    pub fn pre(&self) -> Option<&NormTrace> {
        self.pre.as_ref()
    }

    /// Activation output `σ(·)` (`width × B`).
    pub fn activation_output(&self) -> MatRef<'_, f64> {
        self.a.as_ref()
    }

    /// The post-activation normalization (its output is the layer output), if any.
    pub fn post(&self) -> Option<&NormTrace> {
        self.post.as_ref()
    }

    /// Input of the activation (`Z`, or its normalization for pre-activation placement).
    pub fn activation_input(&self) -> MatRef<'_, f64> {
        self.pre.as_ref().map_or(self.z.as_ref(), |t| t.y.as_ref())
    }

    /// The layer's output `h^ℓ`.
    pub fn output(&self) -> MatRef<'_, f64> {
        self.post.as_ref().map_or(self.a.as_ref(), |t| t.y.as_ref())
    }

    /// The layer's normalization, pre- or post-activation (at most one is present).
    pub(crate) fn norm(&self) -> Option<&NormTrace> {
        self.pre.as_ref().or(self.post.as_ref())
    }
}

/// Everything a forward pass computed (kept for backward and for the Hessian diagnostics).
///
/// Made only by the network's forward passes, read through accessors.
#[derive(Debug, Clone)]
pub struct Forward {
    /// The input batch (`input_dim × B`).
    pub(crate) input: Mat<f64>,
    /// Per-layer values.
    pub(crate) layers: Vec<LayerTrace>,
}

impl Forward {
    /// No layers yet (filled by a forward pass; its storage is reused by the next one).
    pub(crate) fn empty() -> Self {
        Self {
            input: Mat::new(),
            layers: Vec::new(),
        }
    }

    /// The input batch (`input_dim × B`).
    pub fn input(&self) -> MatRef<'_, f64> {
        self.input.as_ref()
    }

    /// Per-layer values, input to output (empty before the first pass into a [`Workspace`]).
    ///
    /// [`Workspace`]: crate::Workspace
    pub fn layers(&self) -> &[LayerTrace] {
        &self.layers
    }

    /// The network output (logits / predictions), `k × B`.
    pub fn output(&self) -> MatRef<'_, f64> {
        self.layers
            .last()
            .map_or(self.input.as_ref(), |l| l.output())
    }

    /// Input of layer `l` (`h^{l−1}`; the data for `l = 0`).
    ///
    /// # Panics
    /// If `l` is not a layer of the trace (`l > layers().len()`).
    pub fn layer_input(&self, l: usize) -> MatRef<'_, f64> {
        if l == 0 {
            self.input.as_ref()
        } else {
            self.layers[l - 1].output()
        }
    }

    /// The BatchNorm statistics each layer used (`Some` for BatchNorm layers), ready to pass to
    /// [`Mode::Frozen`](crate::Mode::Frozen).
    pub fn batch_norm_stats(&self) -> Vec<Option<NormStats>> {
        self.layers
            .iter()
            .map(|t| t.norm().and_then(|n| n.stats.clone()))
            .collect()
    }

    /// Batch size.
    pub fn batch_size(&self) -> usize {
        self.input.ncols()
    }
}
