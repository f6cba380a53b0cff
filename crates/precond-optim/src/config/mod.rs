//! The optimizer configuration: torch argument names, defaults and meanings, checked strictly.
//!
//! JSON form (keys not listed for the chosen optimizer are rejected, as torch rejects an unknown
//! keyword argument). Which optimizer accepts which key, and its defaults, are stated once per
//! optimizer kind (`kinds/`); each key is read and written by one entry of the key table
//! (`config/keys.rs`):
//!
//! | key | optimizers | default | meaning |
//! |---|---|---|---|
//! | `optimizer` | all | (required) | `sgd`, `gd`, `adagrad`, `rmsprop`, `adam`, `adamw`, `precond_gd` |
//! | `lr` | all | 1e-3 (adagrad, rmsprop: 1e-2) | learning rate `η ≥ 0` |
//! | `weight_decay` | all | 0 (adamw: 1e-2) | L2 strength; coupled (10) except `adamw`: decoupled (11) |
//! | `maximize` | all | false | ascend instead of descend |
//! | `momentum`, `dampening`, `nesterov` | sgd, precond_gd, (rmsprop: `momentum`) | 0, 0, false | torch SGD/RMSprop momentum |
//! | `betas`, `amsgrad` | adam, adamw | [0.9, 0.999], false | |
//! | `eps` | adagrad, rmsprop, adam, adamw | 1e-10 (adagrad), 1e-8 | added after the square root, `eps > 0` |
//! | `alpha`, `centered` | rmsprop | 0.99, false | |
//! | `lr_decay`, `initial_accumulator_value` | adagrad | 0, 0 | |
//! | `preconditioner` | precond_gd | (required) | `{"diag": [..]}`, `{"P": [[..]..]}` or `{"S": [[..]..]}` |
//! | `regularization` | all | none | `{"kind", "strength", "l1_ratio"?, "space", "proximal"?}`, see [`crate::regularization`] |
//! | `groups` | all | [] | `[{"start", "end", "lr"?, "weight_decay"?, "regularization"?}]` |
//! | `schedule` | all | constant | see [`Schedule`] |
//! | `nonfinite` | all | `"error"` | `"error"`, `"skip"` or `"propagate"` for a NaN/inf gradient, see [`NonFinitePolicy`] |

mod build;
mod json;
mod keys;

use crate::checks::check_nonneg;
use crate::error::{OptimError, Result};
use crate::regularization::{RegKind, Regularization};
use crate::schedule::Schedule;
use serde::{Deserialize, Serialize};

pub use crate::kind::OptimizerKind;

pub(crate) const COMMON_KEYS: &[&str] = OptimizerConfig::COMMON_KEYS;

/// What to do with a NaN or infinite gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonFinitePolicy {
    /// Return [`OptimError::NonFiniteGradient`]; parameters and state untouched.
    #[default]
    Error,
    /// Skip the step (parameters, state and step count untouched) and report it in the outcome.
    Skip,
    /// `torch.optim`'s behaviour, for throughput at large `n`: no scan of `g` before the update
    /// (the default policies read `g` once more, ~14 % more memory traffic for Adam, a quarter
    /// of the step time at n = 1e7 on the development VM); NaN/Inf flow into the parameters and
    /// state exactly as in torch. Never silent: the same pass ORs a finiteness test of every
    /// gradient entry, and the outcome of an affected step reports the first non-finite index
    /// (`applied: true`, `nonfinite_index: Some(i)`).
    Propagate,
}

/// A fixed preconditioner for `precond_gd` (5): `x ← x − η P ∇f(x)`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum FixedPreconditioner {
    /// Positive diagonal `p`: `P = diag(p)`, `S = diag(sqrt(p))`.
    Diagonal(Vec<f64>),
    /// Dense SPD `P`, row-major `n × n`.
    DenseP(Vec<f64>),
    /// Dense invertible factor `S`, row-major `n × n`; `P = S Sᵀ`.
    DenseS(Vec<f64>),
}

/// A parameter group: the index range `start..end` of the flat buffer with its own learning rate,
/// weight decay and regularization (unset fields inherit the top-level values). Indices not in any
/// group use the top-level values.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ParamGroup {
    /// First index.
    pub start: usize,
    /// One past the last index.
    pub end: usize,
    /// Own base learning rate.
    pub lr: Option<f64>,
    /// Own `weight_decay` (same coupled/decoupled meaning as the top level).
    pub weight_decay: Option<f64>,
    /// Own regularization (replaces the top-level one).
    pub regularization: Option<Regularization>,
}

/// The optimizer configuration (torch's argument names, defaults and meanings). Build it with
/// [`OptimizerConfig::from_json`] or the preset constructors, adjust fields, then
/// [`OptimizerConfig::build`] (which validates it, like linfa's `ParamGuard::check`).
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerConfig {
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Learning rate `η`.
    pub lr: f64,
    /// Adam's `(β₁, β₂)`.
    pub betas: [f64; 2],
    /// `eps`, added after the square root (torch placement).
    pub eps: f64,
    /// L2 strength: coupled (torch `weight_decay` of SGD/Adam/Adagrad/RMSprop: `g ← g + λx`),
    /// decoupled for AdamW (`x ← x(1 − ηλ)`).
    pub weight_decay: f64,
    /// AMSGrad (max of the raw second moment).
    pub amsgrad: bool,
    /// Momentum `μ` (SGD, RMSprop, precond_gd).
    pub momentum: f64,
    /// SGD dampening.
    pub dampening: f64,
    /// SGD Nesterov momentum.
    pub nesterov: bool,
    /// RMSprop smoothing `α`.
    pub alpha: f64,
    /// Centered RMSprop.
    pub centered: bool,
    /// AdaGrad learning-rate decay.
    pub lr_decay: f64,
    /// AdaGrad initial accumulator.
    pub initial_accumulator_value: f64,
    /// Ascend instead of descend.
    pub maximize: bool,
    /// An extra regularizer (kind × space × form).
    pub regularization: Regularization,
    /// Parameter groups.
    pub groups: Vec<ParamGroup>,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Non-finite gradient policy.
    pub nonfinite: NonFinitePolicy,
    /// The fixed preconditioner of `precond_gd`.
    pub preconditioner: Option<FixedPreconditioner>,
}

impl OptimizerConfig {
    /// The JSON keys every optimizer accepts; each kind adds its own
    /// ([`OptimizerKind::keys`]).
    pub const COMMON_KEYS: &'static [&'static str] = &[
        "optimizer",
        "lr",
        "weight_decay",
        "maximize",
        "regularization",
        "groups",
        "schedule",
        "nonfinite",
    ];

    /// The defaults most torch optimizers share (`lr = 1e-3`, `eps = 1e-8`, `weight_decay = 0`,
    /// `betas = [0.9, 0.999]`, `alpha = 0.99`, no momentum) before a kind applies its own.
    pub(crate) fn base(kind: OptimizerKind) -> Self {
        OptimizerConfig {
            optimizer: kind,
            lr: 1e-3,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            alpha: 0.99,
            centered: false,
            lr_decay: 0.0,
            initial_accumulator_value: 0.0,
            maximize: false,
            regularization: Regularization::NONE,
            groups: Vec::new(),
            schedule: Schedule::Constant,
            nonfinite: NonFinitePolicy::Error,
            preconditioner: None,
        }
    }
}

pub(crate) fn validate_regularization(r: &Regularization, path: &str) -> Result<()> {
    check_nonneg(&format!("{path}.strength"), r.strength)?;
    if r.kind == RegKind::ElasticNet && !(0.0..=1.0).contains(&r.l1_ratio) {
        return Err(OptimError::config(
            format!("{path}.l1_ratio"),
            format!("must be in [0, 1], got {}", r.l1_ratio),
        ));
    }
    Ok(())
}
