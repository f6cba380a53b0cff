//! Fully connected networks, normalization and Hessian structure (THEORY.md section 6).
//!
//! - [`Mlp`]: networks (14) `h^ℓ = σ(W^ℓ h^{ℓ−1} + b^ℓ)` of any depth with [`Activation`]s,
//!   [`Loss`]es (MSE `1/(2N)`, BCE on logits, softmax cross-entropy), BatchNorm
//!   ([`BatchNormSpec`]: post- or pre-activation, affine optional, batch / running statistics with
//!   torch's momentum convention, full or constant-statistics backward) and LayerNorm
//!   ([`LayerNormSpec`]: affine none / scalar / vector). All parameters live in one flat buffer
//!   described by [`ParamLayout`] (weights, then biases, then gains, then shifts, each kind one
//!   contiguous range), so any `precond-optim` optimizer and parameter group applies directly.
//!   Exact backpropagation ([`Mlp::loss_and_grad`], and [`Mlp::loss_and_grad_into`] into a
//!   reused [`Workspace`]: no allocation per training step) and exact Hessian-vector products
//!   (Pearlmutter's R-operator, [`Mlp::hessian_vector_product`], [`HessianOperator`] as a
//!   `precond_linalg::LinearOperator` for Lanczos).
//! - Input transforms ([`InputTransform`]): standardization (population variance), centring,
//!   min-max; constant features get scale 1 (never NaN).
//! - Hessian structure: [`extended_hidden_matrix`] (`Ā = [1ᵀ; A]` of any layer, with or without
//!   normalization), [`unit_hessian`] (Theorem 5, `(1/N) Ā D Āᵀ`), [`DataConditioning`]
//!   (Theorem 6), [`layer_norm_column_bounds`] (Theorem 7).
//! - Data ([`Dataset`]): the bundled `breast_cancer`, `diabetes`, `wine`, `digits`, `iris`
//!   (embedded; attribution in `crates/precond-nn/data/DATA.md`), any CSV with a header and a named
//!   target column (errors name line and column), seeded synthetic generators ([`GaussianSpec`],
//!   [`data::teacher_targets`]), seeded splits and mini-batches.
//! - Training ([`train()`]): mini-batches, any `precond-optim` optimizer, per-epoch history of
//!   loss/accuracy, `P_k` statistics and `κ` of hidden layers' `Ā`, callbacks, deterministic.
//!
//! The crate root holds what a user needs; building blocks live in named modules:
//! [`trace`] (the per-layer values of a [`Forward`] pass), [`data`] (CSV parsing, column
//! gathering, shuffling, mini-batches, teacher targets), [`hessian`] (every Hessian-structure
//! item, with the building blocks `weighted_gram` and `row_scaled`) and [`activation`]
//! (`sigmoid`, `softplus`). Row and column norms are `precond_linalg`'s
//! (`precond_linalg::row_norms`, `precond_linalg::col_norms`).
//!
//! **Layout convention:** a batch is a `d × B` matrix with **one column per sample** (the
//! theory's `A = [h_1 … h_N]`); weights `W^ℓ` are `out × in`, stored row-major in the buffer.
//!
//! ```
//! use precond_nn::*;
//! use precond_optim::OptimizerConfig;
//!
//! let data = Dataset::builtin("iris")?;
//! let (train_raw, test_raw) = data.split(0.2, 7)?;
//! let t = InputTransform::fit(train_raw.x.as_ref(), InputScaling::Standardize)?;
//! let train_set = train_raw.map_features(|x| t.apply(x))?;
//! let test_set = test_raw.map_features(|x| t.apply(x))?;
//! let bn = Normalization::BatchNorm(BatchNormSpec::default());
//! let mut mlp = Mlp::new(MlpConfig::feedforward(4, &[16], Activation::Relu, bn, 3, Loss::SoftmaxCrossEntropy))?;
//! let mut params = mlp.init_params(0);
//! let mut opt = OptimizerConfig::adam(0.01).build(params.len()).expect("valid optimizer");
//! let config = TrainConfig { epochs: 20, batch_size: 16, kappa_layers: vec![1], ..TrainConfig::default() };
//! let history = train(&mut mlp, &mut params, &mut opt, &train_set, Some(&test_set), &config, |_| Control::Continue)?;
//! assert!(history.last().and_then(|r| r.test_accuracy).unwrap_or(0.0) > 0.8);
//! # Ok::<(), precond_nn::NnError>(())
//! ```

pub mod activation;
mod batch_norm;
mod bnp;
pub mod data;
mod error;
pub mod hessian;
mod input_norm;
mod layer_norm;
mod loss;
mod mlp;
mod rop;
mod train;
mod util;

pub use activation::Activation;
pub use batch_norm::{BatchNormSpec, NormStats, Placement, RunningStats, StatsGradient};
pub use bnp::Bnp;
pub use data::{BUILTIN_DATASETS, Dataset, GaussianSpec};
pub use error::{NnError, Result};
pub use hessian::{
    DataConditioning, HessianOperator, UnitHessian, WithNorm, extended, extended_hidden_matrix,
    kappa, layer_norm_column_bounds, unit_hessian,
};
pub use input_norm::{InputScaling, InputTransform};
pub use layer_norm::{LayerNormAffine, LayerNormSpec};
pub use loss::{Loss, Targets};
pub use mlp::trace;
pub use mlp::{
    Evaluation, Forward, LayerSpec, Mlp, MlpConfig, Mode, Normalization, ParamBlock, ParamKind,
    ParamLayout, Workspace,
};
pub use train::{
    Control, EpochRecord, History, KappaSnapshot, PrecondStats, TrainConfig, train, train_bnp,
};
