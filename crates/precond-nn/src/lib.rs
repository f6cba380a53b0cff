//! Fully connected networks, normalization and Hessian structure (THEORY.md section 6).
//!
//! - [`Mlp`]: networks (14) of any depth with [`Activation`]s, [`Loss`]es, BatchNorm
//!   ([`BatchNormSpec`]) and LayerNorm ([`LayerNormSpec`]), one flat parameter buffer
//!   ([`ParamLayout`]), exact backpropagation.
//!
//! Batches are `d × B` matrices with **one column per sample**.

mod activation;
mod batch_norm;
mod data;
mod error;
mod hessian;
mod input_norm;
mod layer_norm;
mod loss;
mod mlp;
mod rop;
mod train;

pub use activation::{Activation, sigmoid, softplus};
pub use batch_norm::{BatchNormSpec, NormStats, Placement, RunningStats, StatsGradient};
pub use data::{
    BUILTIN_DATASETS, CsvTable, Dataset, GaussianSpec, gather_columns, minibatches, parse_csv,
    shuffled_indices, teacher_targets,
};
pub use error::{NnError, Result};
pub use hessian::{
    DataConditioning, HessianOperator, UnitHessian, WithNorm, column_norms, extended,
    extended_hidden_matrix, kappa, layer_norm_column_bounds, row_norms, row_scaled, unit_hessian,
    weighted_gram,
};
pub use input_norm::{InputScaling, InputTransform};
pub use layer_norm::{LayerNormAffine, LayerNormSpec};
pub use loss::{Loss, Targets};
pub use mlp::{
    Evaluation, Forward, LayerSpec, LayerTrace, Mlp, MlpConfig, Mode, NormTrace, Normalization,
    ParamBlock, ParamKind, ParamLayout,
};
pub use train::{Control, EpochRecord, History, KappaSnapshot, PrecondStats, TrainConfig, train};
