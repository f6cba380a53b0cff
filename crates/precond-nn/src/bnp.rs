//! Batch Normalization Preconditioning for an [`Mlp`] (docs/THEORY.md §6, BNP; Lange, Helfrich
//! and Ye, JMLR 2022): one [`BnpStats`] per dense layer (the first layer's input is the data),
//! updated from each training batch's layer inputs, and the implicit preconditioner
//! `P = S Sᵀ` applied to every layer's `[b_i; w_i]` gradient before the optimizer's step.
//!
//! The network is not changed: its forward pass, training-mode and inference-mode outputs are
//! those of the same unnormalized network (BNP uses no statistics at inference).

use crate::batch_norm::NormStats;
use crate::error::{NnError, Result};
use crate::mlp::{Forward, Mlp, ParamKind};
use precond_optim::{BnpSpec, BnpStats, bnp_precondition};

/// BNP's state for one network: the running input statistics of every dense layer.
///
/// Per training step ([`crate::train_bnp`] does this): forward and gradient on the batch,
/// [`Bnp::observe`] (fold the batch's layer inputs into the running estimates),
/// [`Bnp::precondition`] (replace each layer's gradient `g` by `P g`), then the optimizer's step.
/// Batch size 1 works: the statistics start at mean 0, variance 1 and are blended
/// (see [`BnpStats`]), so a batch of one sample (variance 0) is just one more sample.
///
/// ```
/// use precond_nn::*;
/// use precond_optim::BnpSpec;
///
/// let mlp = Mlp::new(MlpConfig::feedforward(
///     3, &[5], Activation::Tanh, Normalization::None, 2, Loss::SoftmaxCrossEntropy,
/// ))?;
/// let params = mlp.init_params(0);
/// let x = faer::Mat::from_fn(3, 1, |r, _| 10.0 + r as f64); // batch size 1
/// let y = Targets::Classes { labels: vec![1], n_classes: 2 };
/// let mut bnp = Bnp::new(&mlp, BnpSpec::default())?;
/// let mut ws = Workspace::new();
/// let mut grad = vec![0.0; params.len()];
/// mlp.loss_and_grad_into(&params, x.as_ref(), &y, Mode::Train, &mut ws, &mut grad)?;
/// bnp.observe(&mlp, ws.forward())?;
/// bnp.precondition(&mlp, &mut grad)?;
/// assert!(grad.iter().all(|g| g.is_finite()));
/// assert!((bnp.layers()[0].mean()[0] - 1.0).abs() < 1e-12); // 0.9·0 + 0.1·10
/// # Ok::<(), precond_nn::NnError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Bnp {
    layers: Vec<BnpStats>,
    scratch: NormStats,
}

impl Bnp {
    /// Fresh statistics (mean 0, variance 1) for every layer of `mlp`, sized by each layer's
    /// input dimension.
    ///
    /// # Errors
    /// [`NnError::Optimizer`] wrapping [`precond_optim::OptimError::InvalidStatistics`] for a bad
    /// `spec` (momentum outside `[0, 1]`, `eps` negative or not finite).
    pub fn new(mlp: &Mlp, spec: BnpSpec) -> Result<Self> {
        let layers = (0..mlp.n_layers())
            .map(|l| BnpStats::new(layer_input_dim(mlp, l), spec))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self {
            layers,
            scratch: NormStats {
                mean: Vec::new(),
                var: Vec::new(),
            },
        })
    }

    /// The statistics of every layer (layer `ℓ`'s describe its input `h^{ℓ−1}`).
    pub fn layers(&self) -> &[BnpStats] {
        &self.layers
    }

    /// Replaces layer `layer`'s statistics (e.g. the exact statistics of a data set with
    /// momentum 0, to freeze them).
    ///
    /// # Errors
    /// [`NnError::NoSuchLayer`] and [`NnError::DimensionMismatch`] when `stats` does not fit the
    /// layer's input dimension; nothing changes then.
    pub fn set_layer(&mut self, layer: usize, stats: BnpStats) -> Result<()> {
        let n_layers = self.layers.len();
        let cur = self
            .layers
            .get_mut(layer)
            .ok_or(NnError::NoSuchLayer { layer, n_layers })?;
        if cur.dim() != stats.dim() {
            return Err(NnError::DimensionMismatch {
                what: "BNP statistics vs layer input dimension",
                expected: cur.dim(),
                got: stats.dim(),
            });
        }
        *cur = stats;
        Ok(())
    }

    /// Folds the per-feature mean and population variance of every layer's input in `fwd` (a
    /// forward pass of `mlp` on one training batch) into the running estimates
    /// ([`BnpStats::observe`]). No allocation once the first call has sized the scratch.
    ///
    /// # Errors
    /// [`NnError::DimensionMismatch`] when `fwd` is not a pass of a network of this shape
    /// (nothing changes then), [`NnError::Optimizer`] for non-finite layer inputs (checked layer
    /// by layer: the layers before the offending one have been updated).
    pub fn observe(&mut self, mlp: &Mlp, fwd: &Forward) -> Result<()> {
        self.check_network(mlp)?;
        if fwd.layers().len() != self.layers.len() {
            return Err(NnError::DimensionMismatch {
                what: "forward trace layers vs BNP layers",
                expected: self.layers.len(),
                got: fwd.layers().len(),
            });
        }
        for (l, stats) in self.layers.iter().enumerate() {
            let h = fwd.layer_input(l);
            if h.nrows() != stats.dim() {
                return Err(NnError::DimensionMismatch {
                    what: "layer input rows vs BNP statistics",
                    expected: stats.dim(),
                    got: h.nrows(),
                });
            }
        }
        for (l, stats) in self.layers.iter_mut().enumerate() {
            let h = fwd.layer_input(l);
            if h.ncols() == 0 {
                continue;
            }
            self.scratch.set_of_batch(h);
            stats.observe(&self.scratch.mean, &self.scratch.var)?;
        }
        Ok(())
    }

    /// Applies every layer's `P = S Sᵀ` to that layer's weight and bias gradient in the flat
    /// gradient buffer `grad` (layout [`crate::ParamLayout`]; gains and shifts of a
    /// normalization are left as they are). In place, `O(Σ_ℓ units_ℓ · d_ℓ)`, no allocation.
    ///
    /// # Errors
    /// [`NnError::DimensionMismatch`] when `grad.len()` is not the network's parameter count or
    /// the network does not match these statistics; nothing is written then.
    pub fn precondition(&self, mlp: &Mlp, grad: &mut [f64]) -> Result<()> {
        self.check_network(mlp)?;
        if grad.len() != mlp.layout().len() {
            return Err(NnError::DimensionMismatch {
                what: "gradient length",
                expected: mlp.layout().len(),
                got: grad.len(),
            });
        }
        for (l, stats) in self.layers.iter().enumerate() {
            let (Some(w), Some(b)) = (
                mlp.layout().find(ParamKind::Weight, l),
                mlp.layout().find(ParamKind::Bias, l),
            ) else {
                continue;
            };
            // weights precede biases in the layout (ParamLayout): split between the blocks
            let (head, tail) = grad.split_at_mut(b.range.start);
            bnp_precondition(
                &mut head[w.range.clone()],
                &mut tail[..b.range.len()],
                stats,
            )?;
        }
        Ok(())
    }

    pub(crate) fn check_network(&self, mlp: &Mlp) -> Result<()> {
        if mlp.n_layers() != self.layers.len() {
            return Err(NnError::DimensionMismatch {
                what: "network layers vs BNP layers",
                expected: self.layers.len(),
                got: mlp.n_layers(),
            });
        }
        for (l, s) in self.layers.iter().enumerate() {
            let d = layer_input_dim(mlp, l);
            if d != s.dim() {
                return Err(NnError::DimensionMismatch {
                    what: "layer input dimension vs BNP statistics",
                    expected: s.dim(),
                    got: d,
                });
            }
        }
        Ok(())
    }
}

/// Input dimension of layer `l` (`input_dim` for the first layer, the previous width after).
fn layer_input_dim(mlp: &Mlp, l: usize) -> usize {
    if l == 0 {
        mlp.config().input_dim
    } else {
        mlp.config().layers[l - 1].width
    }
}
