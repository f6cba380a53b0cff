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
//! | `power` | adagrad, rmsprop, adam, adamw | 0.5 | `P = 1/(v̂^power + eps)`, `power ∈ (0, 1]`: 0.5 the square root (torch), 1 the diagonal Fisher scaling `1/(v̂ + eps)`; written only when ≠ 0.5 |
//! | `lr_decay`, `initial_accumulator_value` | adagrad | 0, 0 | |
//! | `preconditioner` | precond_gd | (required) | `{"diag": [..]}`, `{"P": [[..]..]}` or `{"S": [[..]..]}` |
//! | `regularization` | all | none | `{"kind", "strength", "l1_ratio"?, "space", "proximal"?}`, see [`crate::regularization`] |
//! | `shape`, `order` | all | none, `"C"` | `[rows, cols]` of the whole vector as one matrix (required by the matrix optimizers at the top level), row-major `"C"` or column-major `"F"` |
//! | `ns_coefficients`, `ns_steps`, `adjust_lr_fn` | muon | [3.4445, −4.7750, 2.0315], 5, `"original"` | torch `Muon` |
//! | `epsilon`, `max_preconditioner_dim`, `precondition_frequency`, `start_preconditioning_step`, `use_bias_correction`, `use_decoupled_weight_decay`, `grafting` | shampoo | 1e-12, 1024, 1, −1, true, true, none | DistributedShampoo's arguments; shampoo's `lr` 1e-2, `betas` [0.9, 1.0] (`β₂ = 1`: the factors are sums), `momentum` 0, grafting `epsilon` 1e-10 (see `kinds/shampoo.rs`) |
//! | `shampoo_beta`, `max_precond_dim`, `normalize_grads`, `correct_bias` (+ `precondition_frequency`) | soap | −1 (= β₂), 10000, false, true (10) | the SOAP reference's arguments |
//! | `groups` | all | [] | `[{"start", "end", "lr"?, "weight_decay"?, "regularization"?, "shape"?, "order"?, "bnp"?, "optimizer"? + that optimizer's keys}]`, see [`ParamGroup`] |
//! | `bnp` (in a group) | per-element optimizers | none | `true` or `{"momentum": 0.1, "eps": 1e-5}`: Batch Normalization Preconditioning of a dense layer (docs/THEORY.md §6); needs `"shape": [units, d]` (row-major) over `units·d + units` entries, `W` row-major then `b`; see [`ParamGroup::bnp`] |
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

/// How a matrix is laid out in the flat buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MatrixOrder {
    /// Row-major (C order, JSON `"C"`): entry `(i, j)` at `i·cols + j`.
    #[default]
    RowMajor,
    /// Column-major (Fortran/Julia order, JSON `"F"`): entry `(i, j)` at `i + j·rows`.
    ColMajor,
}

/// The 2-D shape of a range of the flat buffer (a layer's weight matrix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatrixShape {
    /// Rows (torch's `shape[0]`, the fan-out of a linear layer).
    pub rows: usize,
    /// Columns (torch's `shape[1]`, the fan-in).
    pub cols: usize,
    /// Storage order of the range.
    pub order: MatrixOrder,
}

impl MatrixShape {
    /// A row-major `rows × cols` shape.
    pub fn new(rows: usize, cols: usize) -> Self {
        MatrixShape {
            rows,
            cols,
            order: MatrixOrder::RowMajor,
        }
    }
    /// `rows · cols`, `None` on overflow.
    pub fn len(&self) -> Option<usize> {
        self.rows.checked_mul(self.cols)
    }
    /// Whether the shape has no entries.
    pub fn is_empty(&self) -> bool {
        self.rows == 0 || self.cols == 0
    }
}

/// Muon's learning-rate adjustment for a `rows × cols` matrix (torch `adjust_lr_fn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AdjustLr {
    /// Keller Jordan's: `lr · sqrt(max(1, rows/cols))`.
    #[default]
    Original,
    /// Moonshot's: `0.2 · lr · sqrt(max(rows, cols))` (the update's RMS matches AdamW's).
    MatchRmsAdamw,
    /// Bernstein's: `lr · sqrt(rows/cols)`.
    SpectralUnclamped,
}

impl AdjustLr {
    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            AdjustLr::Original => "original",
            AdjustLr::MatchRmsAdamw => "match_rms_adamw",
            AdjustLr::SpectralUnclamped => "spectral_unclamped",
        }
    }
    /// The adjusted learning rate for a `rows × cols` matrix.
    pub fn apply(self, lr: f64, rows: usize, cols: usize) -> f64 {
        let (a, b) = (rows as f64, cols as f64);
        lr * match self {
            AdjustLr::Original => (a / b).max(1.0).sqrt(),
            AdjustLr::MatchRmsAdamw => 0.2 * a.max(b).sqrt(),
            AdjustLr::SpectralUnclamped => (a / b).sqrt(),
        }
    }
}

/// Shampoo's grafting: the direction's norm taken from a diagonal method, per block
/// (DistributedShampoo's `grafting_config`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GraftingKind {
    /// No grafting: the Shampoo direction as is.
    #[default]
    None,
    /// SGD: the norm of the (filtered) gradient.
    Sgd,
    /// AdaGrad: `g/(sqrt(Σg²) + ε)`.
    Adagrad,
    /// RMSprop: `g/(sqrt(v) + ε)`, `v ← β₂v + (1−β₂)g²`.
    Rmsprop,
    /// Adam: `g/(sqrt(v/(1−β₂ᵗ)) + ε)`.
    Adam,
}

/// Shampoo's grafting configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grafting {
    /// Which diagonal method.
    pub kind: GraftingKind,
    /// Its `β₂` (RMSprop 0.99, Adam 0.999 by default).
    pub beta2: f64,
    /// Its `ε`, added after the square root (1e-10 for AdaGrad, RMSprop and Adam by default:
    /// DistributedShampoo's `AdaGradPreconditionerConfig.epsilon`, inherited by the other two).
    pub epsilon: f64,
}

impl Grafting {
    /// No grafting.
    pub const NONE: Grafting = Grafting {
        kind: GraftingKind::None,
        beta2: 1.0,
        epsilon: 1e-10,
    };
    /// DistributedShampoo's defaults for a grafting kind.
    pub fn default_for(kind: GraftingKind) -> Self {
        match kind {
            GraftingKind::None | GraftingKind::Sgd => Grafting { kind, ..Self::NONE },
            GraftingKind::Adagrad => Grafting {
                kind,
                beta2: 1.0,
                epsilon: 1e-10,
            },
            GraftingKind::Rmsprop => Grafting {
                kind,
                beta2: 0.99,
                epsilon: 1e-10,
            },
            GraftingKind::Adam => Grafting {
                kind,
                beta2: 0.999,
                epsilon: 1e-10,
            },
        }
    }
}

/// A parameter group: the index range `start..end` of the flat buffer with its own learning rate,
/// weight decay and regularization (unset fields inherit the top-level values), optionally a 2-D
/// `shape` and its own `optimizer`. Indices not in any group use the top-level values.
///
/// A group with its own optimizer (`"optimizer": "muon"` in JSON) runs that optimizer with that
/// optimizer's keys and torch defaults (not the top level's), held in [`ParamGroup::optimizer`];
/// its `lr`, `weight_decay` and `regularization` are then those of the inner config and the
/// fields here stay `None`. The schedule and the non-finite policy are the top level's for every
/// group. A matrix optimizer (Muon, Shampoo, SOAP) needs a `shape` whose `rows · cols` equals the
/// group's length.
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
    /// The group's matrix shape.
    pub shape: Option<MatrixShape>,
    /// The group's own optimizer (see the type's docs).
    pub optimizer: Option<Box<OptimizerConfig>>,
    /// Batch Normalization Preconditioning of this group (JSON `"bnp": true` or
    /// `{"momentum", "eps"}`; docs/THEORY.md §6): the group is one dense layer, `shape` =
    /// `[units, d]` row-major, and its range holds the weights `W` (`units × d`, row `i` = unit
    /// `i`, torch's `Linear.weight`) then the bias `b` (`units`): `units·d + units` entries. Each
    /// step preconditions the group's gradient with [`crate::bnp_precondition`] from the running
    /// statistics ([`crate::Optimizer::bnp_observe`]) before its (per-element) optimizer steps.
    pub bnp: Option<crate::bnp::BnpSpec>,
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
    /// The whole vector as one matrix (a matrix optimizer at the top level needs it, unless
    /// groups cover every index).
    pub shape: Option<MatrixShape>,
    /// Muon's Newton–Schulz coefficients `(a, b, c)`: `X ← aX + (bA + cA²)X`, `A = XXᵀ`.
    pub ns_coefficients: [f64; 3],
    /// Muon's number of Newton–Schulz iterations (`< 100`, as torch).
    pub ns_steps: u32,
    /// Muon's learning-rate adjustment.
    pub adjust_lr_fn: AdjustLr,
    /// Shampoo's `epsilon`, added to the factors before the inverse root: `(L + εI)^{-1/4}`.
    pub epsilon: f64,
    /// Shampoo: weight decay decoupled (`x ← x(1 − ηλ)`) rather than added to the gradient.
    pub use_decoupled_weight_decay: bool,
    /// Shampoo: dimensions larger than this are split into blocks of at most this size.
    pub max_preconditioner_dim: usize,
    /// Shampoo/SOAP: recompute the roots (eigenbases) every this many steps.
    pub precondition_frequency: u64,
    /// Shampoo: the first step that uses the Shampoo direction (`−1`: `precondition_frequency`).
    pub start_preconditioning_step: i64,
    /// Shampoo: bias-correct the filtered gradient and the factors.
    pub use_bias_correction: bool,
    /// Shampoo's grafting.
    pub grafting: Grafting,
    /// SOAP's factor decay (`< 0`: `betas[1]`).
    pub shampoo_beta: f64,
    /// SOAP: a dimension larger than this is not preconditioned (identity basis).
    pub max_precond_dim: usize,
    /// SOAP: divide the update `N` by `1e-30 + sqrt(mean(N ⊙ N))` (its root mean square) before
    /// the step (the reference SOAP; pytorch-optimizer adds `eps` instead).
    pub normalize_grads: bool,
    /// SOAP: Adam's bias corrections.
    pub correct_bias: bool,
    /// Exponent of the second-moment estimate in the adaptive rules (Adam, AdamW, RMSprop,
    /// Adagrad): `P = 1/(v̂^power + eps)`, `power ∈ (0, 1]`. `0.5` (default) is the square root
    /// (torch's arithmetic exactly); `1` is `1/(v̂ + eps)`, the diagonal Fisher / Gauss–Newton
    /// (natural-gradient) scaling; other values use `powf` (THEORY.md §4).
    pub power: f64,
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
        "shape",
        "order",
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
            shape: None,
            ns_coefficients: [3.4445, -4.7750, 2.0315],
            ns_steps: 5,
            adjust_lr_fn: AdjustLr::Original,
            epsilon: 1e-12,
            use_decoupled_weight_decay: true,
            max_preconditioner_dim: 1024,
            precondition_frequency: 1,
            start_preconditioning_step: -1,
            use_bias_correction: true,
            grafting: Grafting::NONE,
            shampoo_beta: -1.0,
            max_precond_dim: 10000,
            normalize_grads: false,
            correct_bias: true,
            power: 0.5,
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
