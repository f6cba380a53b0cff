//! The architecture of a network: layers, their activations and normalizations, and the loss.

use crate::activation::Activation;
use crate::batch_norm::{BatchNormSpec, Placement};
use crate::error::{NnError, Result};
use crate::layer_norm::LayerNormSpec;
use crate::loss::Loss;
use serde::{Deserialize, Serialize};

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
    /// Where the normalization sits (`None` without normalization).
    pub(crate) fn placement(&self) -> Option<Placement> {
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

    /// Validates the architecture: positive sizes, valid normalization constants, at least two
    /// outputs for softmax cross-entropy.
    pub(crate) fn check(&self) -> Result<()> {
        if self.input_dim == 0 {
            return Err(NnError::InvalidConfig {
                what: "input_dim",
                value: "0".into(),
                reason: "must be positive",
            });
        }
        if self.layers.is_empty() {
            return Err(NnError::InvalidConfig {
                what: "layers",
                value: "[]".into(),
                reason: "need at least one layer",
            });
        }
        for s in &self.layers {
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
        let last = self.layers.len() - 1;
        let k = self.layers[last].width;
        match self.loss {
            Loss::SoftmaxCrossEntropy if k < 2 => {
                return Err(NnError::InvalidConfig {
                    what: "output width",
                    value: k.to_string(),
                    reason: "softmax cross-entropy needs >= 2 outputs",
                });
            }
            _ => {}
        }
        Ok(())
    }
}
