//! Fully connected networks, normalization and Hessian structure (THEORY.md section 6).
//!
//! - [`Mlp`]: networks (14) of any depth with [`Activation`]s, [`Loss`]es, BatchNorm
//!   ([`BatchNormSpec`]) and LayerNorm ([`LayerNormSpec`]), one flat parameter buffer
//!   ([`ParamLayout`]), exact backpropagation.
//!
//! Batches are `d × B` matrices with **one column per sample**.

mod activation;
mod batch_norm;
mod error;
mod layer_norm;
mod loss;
mod mlp;

pub use activation::{Activation, sigmoid, softplus};
pub use batch_norm::{BatchNormSpec, NormStats, Placement, RunningStats, StatsGradient};
pub use error::{NnError, Result};
pub use layer_norm::{LayerNormAffine, LayerNormSpec};
pub use loss::{Loss, Targets};
pub use mlp::{
    Evaluation, Forward, LayerSpec, LayerTrace, Mlp, MlpConfig, Mode, NormTrace, Normalization,
    ParamBlock, ParamKind, ParamLayout,
};
