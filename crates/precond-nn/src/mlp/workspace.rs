//! Reusable buffers for training: the forward values, the backward deltas and the scratch of the
//! normalization backward passes, sized lazily by the first pass and reused by every later one,
//! so that a training step ([`Mlp::loss_and_grad_into`]) allocates nothing (the
//! `*_scratch`-workspace pattern of faer).
//!
//! Sizing: every buffer is a [`faer::Mat`] whose shape is set per pass; shrinking (the last,
//! partial mini-batch of an epoch) keeps the storage and growing reallocates only past the
//! largest batch seen so far. A workspace is not tied to one network: used with another
//! architecture it re-sizes itself (allocating once).
//!
//! [`Mlp::loss_and_grad_into`]: crate::Mlp::loss_and_grad_into

use super::trace::Forward;
use crate::util::fit;
use faer::{Mat, MatRef};

/// Reusable buffers for forward and backward passes of an [`Mlp`] (one workspace per concurrent
/// computation; it holds no parameters).
///
/// After [`Mlp::forward_into`] or [`Mlp::loss_and_grad_into`], [`Workspace::forward`] holds the
/// forward values of the batch (the same [`Forward`] that [`Mlp::forward`] would return), and
/// after [`Mlp::backward_into`], [`Workspace::input_grad`] holds `dL/dx`.
///
/// [`Mlp`]: crate::Mlp
/// [`Mlp::forward`]: crate::Mlp::forward
/// [`Mlp::forward_into`]: crate::Mlp::forward_into
/// [`Mlp::backward_into`]: crate::Mlp::backward_into
/// [`Mlp::loss_and_grad_into`]: crate::Mlp::loss_and_grad_into
///
/// ```
/// use precond_nn::*;
///
/// let mlp = Mlp::new(MlpConfig::feedforward(
///     4, &[8], Activation::Relu, Normalization::None, 3, Loss::SoftmaxCrossEntropy,
/// ))?;
/// let params = mlp.init_params(0);
/// let x = faer::Mat::from_fn(4, 5, |r, c| (r + 2 * c) as f64 * 0.1);
/// let y = Targets::Classes { labels: vec![0, 1, 2, 0, 1], n_classes: 3 };
/// let mut ws = Workspace::new();
/// let mut grad = vec![0.0; params.len()];
/// for _ in 0..3 {
///     // the first call sizes `ws`; the later ones allocate nothing
///     let loss = mlp.loss_and_grad_into(&params, x.as_ref(), &y, Mode::Train, &mut ws, &mut grad)?;
///     assert!(loss.is_finite());
/// }
/// assert_eq!(ws.forward().output().ncols(), 5);
/// # Ok::<(), precond_nn::NnError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Workspace {
    pub(crate) forward: Forward,
    pub(crate) backward: BackwardBuffers,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    /// An empty workspace (no storage yet; the first pass sizes it).
    pub fn new() -> Self {
        Self {
            forward: Forward::empty(),
            backward: BackwardBuffers::default(),
        }
    }

    /// The forward values of the last [`Mlp::forward_into`] / [`Mlp::loss_and_grad_into`]
    /// (no layers before the first pass).
    ///
    /// [`Mlp::forward_into`]: crate::Mlp::forward_into
    /// [`Mlp::loss_and_grad_into`]: crate::Mlp::loss_and_grad_into
    pub fn forward(&self) -> &Forward {
        &self.forward
    }

    /// `dL/dx` (`input_dim × B`) of the last [`Mlp::backward_into`] (empty before the first one;
    /// [`Mlp::loss_and_grad_into`] skips it).
    ///
    /// [`Mlp::backward_into`]: crate::Mlp::backward_into
    /// [`Mlp::loss_and_grad_into`]: crate::Mlp::loss_and_grad_into
    pub fn input_grad(&self) -> MatRef<'_, f64> {
        self.backward.input_grad.as_ref()
    }

    /// The forward values, consuming the workspace.
    pub fn into_forward(self) -> Forward {
        self.forward
    }

    /// Number of batch columns the buffers currently hold (the batch size of the last pass).
    pub fn batch_size(&self) -> usize {
        self.forward.batch_size()
    }
}

/// The backward pass's buffers: `dL/d(output of layer ℓ)` per layer (reused as `dL/dZ^ℓ` in
/// place), `dL/dx`, and the per-feature sums of the BatchNorm backward pass.
#[derive(Debug, Clone)]
pub(crate) struct BackwardBuffers {
    /// `deltas[ℓ]`: `width_ℓ × B`.
    pub(crate) deltas: Vec<Mat<f64>>,
    /// `dL/dx`, `input_dim × B` (only when asked for).
    pub(crate) input_grad: Mat<f64>,
    /// Per-feature scratch of the BatchNorm backward pass.
    pub(crate) scratch: NormScratch,
    /// The bias gradient's sum over the second half of the batch columns
    /// (`Mlp::backward_core`'s activation pass).
    pub(crate) bias_half: Vec<f64>,
}

/// Per-feature scratch of the BatchNorm backward pass.
#[derive(Debug, Clone, Default)]
pub(crate) struct NormScratch {
    /// `Σ_n g`, then its mean.
    pub(crate) sum_g: Vec<f64>,
    /// `Σ_n g x̂`, then its mean.
    pub(crate) sum_gx: Vec<f64>,
    /// `γ / sqrt(var + eps)`.
    pub(crate) scale: Vec<f64>,
}

impl Default for BackwardBuffers {
    fn default() -> Self {
        Self {
            deltas: Vec::new(),
            input_grad: Mat::new(),
            scratch: NormScratch::default(),
            bias_half: Vec::new(),
        }
    }
}

impl BackwardBuffers {
    /// Ensures one delta per layer and returns the last one sized `k × b`, to receive `dL/dO`.
    pub(crate) fn output_delta(&mut self, n_layers: usize, k: usize, b: usize) -> &mut Mat<f64> {
        self.deltas.truncate(n_layers);
        self.deltas.resize_with(n_layers, Mat::new);
        let last = &mut self.deltas[n_layers - 1];
        fit(last, k, b);
        last
    }
}
