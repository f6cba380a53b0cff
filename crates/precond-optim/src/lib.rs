//! Preconditioned optimizers (THEORY.md sections 2, 4, 5 and 7): GD, SGD (momentum, dampening,
//! Nesterov), AdaGrad, RMSProp, Adam, AdamW and preconditioned GD with a fixed `P`, with exactly
//! torch's `torch.optim` formulas, defaults and `eps` placement, composed from small generic
//! parts and fused into one pass over memory per step; and the matrix preconditioners Muon
//! (torch 2.15's `Muon`), Shampoo (DistributedShampoo's arguments) and SOAP, on parameter groups
//! that carry a 2-D shape and their own optimizer.
//!
//! # The update, per element (torch semantics)
//!
//! With `g ← −g` if `maximize`, coupled weight decay `g ← g + λx` (SGD/Adam/Adagrad/RMSprop
//! `weight_decay`, THEORY (10)/(12)), step `k ≥ 1` and learning rate `η` (scheduled):
//!
//! - **SGD** (1): `b ← μ b + (1 − dampening) g` (`b = g` on the first step); `u = g + μ b` if
//!   Nesterov else `b` (or `u = g` without momentum); `x ← x − η u`. `P = I`.
//! - **AdaGrad**: `G ← G + g²` (`G_0 = initial_accumulator_value`);
//!   `x ← x − η_k g/(sqrt(G) + eps)`, `η_k = η/(1 + (k−1) lr_decay)`. `P_k = 1/(sqrt(G_k) + eps)`;
//!   the `lr_decay` factor is a scalar on `η`, outside `P`.
//! - **RMSprop** (6): `v ← α v + (1 − α) g²`; centered: `ḡ ← lerp(ḡ, g, 1 − α)`, `v̄ = v − ḡ²`;
//!   `d = sqrt(v̄) + eps`; without momentum `x ← x − η g/d`, with momentum `b ← μ b + g/d`,
//!   `x ← x − η b`. `P_k = 1/d`.
//! - **Adam** (8): `m ← lerp(m, g, 1 − β₁)`, `v ← β₂ v + (1 − β₂) g²` (AMSGrad:
//!   `v_max ← max(v_max, v)` used instead of `v`), `d = sqrt(v)/sqrt(1 − β₂^k) + eps`,
//!   `x ← x − (η/(1 − β₁^k)) m/d`. `P_k = 1/d = 1/(sqrt(v̂_k) + eps)`, `η` outside.
//! - **AdamW**: Adam without coupled decay, preceded by `x ← x(1 − ηλ)` (intrinsic L2, (11)).
//! - **precond_gd** (5): `x ← x − η P g` with a fixed positive diagonal or dense SPD `P`
//!   (optionally with SGD momentum on `g`).
//!
//! Extra regularization (any kind × space × form, [`regularization`]) combines with every
//! diagonal optimizer. The current `P_k` is always observable ([`Optimizer::preconditioner`]).
//!
//! # Matrix parameters (THEORY.md §7)
//!
//! A group `{"start", "end", "shape": [rows, cols], "order": "C"|"F", "optimizer": "muon", ...}`
//! runs its own optimizer (with that optimizer's keys and torch/reference defaults) on a matrix
//! stored row-major or column-major in the flat buffer; the rest of the buffer runs the top-level
//! optimizer. The step of each is in its file: `kinds/muon.rs` (momentum, Nesterov, quintic
//! Newton–Schulz on the smaller Gram matrix, decoupled decay with the unadjusted `η`, adjusted
//! `η'`), `kinds/shampoo.rs` (factors `L`, `R`, inverse fourth roots with `ε` added before the
//! eigendecomposition, blocking, grafting, bias correction, decoupled decay added to the
//! direction), `kinds/soap.rs` (Adam in the eigenbasis of EMA factors refreshed by power
//! iteration + QR). Their preconditioners are observable
//! ([`Optimizer::matrix_preconditioner`] → [`MatrixPreconditioner`]); the exact semantics and
//! the oracles the tests compare with are in `tests/fixtures/matrix_reference.md`.
//!
//! # BNP on a dense layer (docs/THEORY.md §6)
//!
//! A group `{"start", "end", "shape": [units, d], "bnp": true}` (or
//! `"bnp": {"momentum": 0.1, "eps": 1e-5}`) is one dense layer: its range holds the weights `W`
//! row-major (`units × d`, torch's `Linear.weight`) then the bias `b` (`units` entries). It runs
//! its own `"optimizer"` or the top level's (per-element optimizers only) as its own part; each
//! step copies its gradient, applies Batch Normalization Preconditioning `P = S Sᵀ`
//! ([`bnp_precondition`]) with the group's running input statistics ([`BnpStats`], fed by
//! [`Optimizer::bnp_observe`] after each forward pass, read by [`Optimizer::bnp_stats`]) and
//! steps the optimizer on the copy. The statistics are saved with the state; a shard plan never
//! splits the group.
//!
//! # Layout
//!
//! - [`OptimizerConfig`] (torch's names and defaults, strict JSON) → [`Optimizer`] (one flat
//!   buffer, groups, schedule, state save/load, `P_k`); groups resolve into segments and parts
//!   (`src/groups.rs`: one optimizer each, its state stored compactly).
//! - One description per optimizer kind (`src/kinds/*.rs`): accepted keys, defaults, validation,
//!   state slots, `P_k`, dispatch; listed once in `src/registry.rs`, from which
//!   [`OptimizerKind`] is generated. See the README's "How to add an optimizer".
//! - [`ShardedOptimizer`] (`src/shard.rs`): ZeRO stage 1, each of `world` ranks steps one
//!   contiguous range ([`ShardPlan`]) with only that range's state, bitwise as the unsharded
//!   optimizer; [`assemble_state`] and [`split_state`] convert checkpoints between world sizes.
//! - [`kernel`]: the building blocks for those who compose their own update.
//! - [`experiment`]: the objectives and the `minimize` driver the report's experiments use.
//!
//! # Composition
//!
//! [`kernel::Fused`] composes a [`kernel::PrecondRule`], a [`kernel::MomentumRule`] and a
//! [`kernel::Regularizer`]; [`kernel::fused_step`] runs any composition in one pass, compiled for
//! the baseline target, for AVX2+FMA and for AVX-512F and dispatched at run time, split over the
//! calling thread and the step team's helper threads above the lengths of
//! [`kernel::ParallelParams`] (helpers found asleep are woken only for longer steps: a lower
//! length for the arithmetic-bound adaptive rules).
//!
//! # Example
//!
//! ```
//! use precond_optim::{OptimizerConfig, Optimizer};
//!
//! // torch names and defaults; an intrinsic proximal L1 on top of AdamW's weight decay
//! let cfg = OptimizerConfig::from_json(r#"{"optimizer": "adamw", "lr": 1e-2,
//!     "regularization": {"kind": "l1", "strength": 1e-3, "space": "intrinsic", "proximal": true}}"#)?;
//! let mut opt: Optimizer = cfg.build(3)?;
//! let mut x = vec![1.0f64, -2.0, 0.5];
//! opt.step_f64(&mut x, &[0.1, -0.3, 0.2])?;
//! let mut p = vec![0.0; 3];
//! opt.preconditioner(&mut p)?; // P_1 = 1/(sqrt(v̂_1) + eps) = 1/(|g| + eps)
//! assert!((p[1] - 1.0 / (0.3 + 1e-8)).abs() < 1e-6);
//! // bad input is a typed error naming the key
//! let e = OptimizerConfig::from_json(r#"{"optimizer": "adam", "betas": [0.9, 1.5]}"#).unwrap_err();
//! assert!(e.to_string().contains("`betas`"));
//! # Ok::<(), precond_optim::OptimError>(())
//! ```
//!
//! The same update from the parts, run by the fused kernel directly (RMSProp's `P` without momentum, plain
//! step and an intrinsic proximal L1, one pass over `x`, `g` and `v`):
//!
//! ```
//! use precond_optim::kernel::*;
//! use precond_optim::{RegKind, Regularization, SimdLevel, Space};
//!
//! let (lr, lambda) = (0.01, 1e-3);
//! let reg = Regularization { kind: RegKind::L1, strength: lambda, l1_ratio: 1.0,
//!                            space: Space::Intrinsic, proximal: true };
//! let update = Fused {
//!     sign: 1.0f32,
//!     pre: RmsPrecond::<f32, false>::new(0.99, 1e-8),
//!     mom: NoMomentum { scale: -lr as f32 },
//!     reg: Elementwise::new(&reg, 0.0, 0.0, lr),
//! };
//! let (mut x, g, mut v) = (vec![1.0f32; 1000], vec![0.5f32; 1000], vec![0.0f32; 1000]);
//! fused_step(&update, Buffers { x: &mut x, g: &g, aux: &[], slots: [&mut v, &mut [], &mut []] },
//!            SimdLevel::detect(), ParallelParams::default().split_length::<f32>(true)).unwrap();
//! assert!(x[0] < 1.0);
//! ```

mod bnp;
pub mod bound;
mod checks;
mod config;
mod error;
pub mod experiment;
mod float;
mod groups;
mod json;
pub mod kernel;
mod kind;
mod kinds;
mod matrix;
mod momentum;
mod optimizer;
mod precond;
mod registry;
pub mod regularization;
mod schedule;
mod shard;
mod state;
mod storage;
mod team;

pub use bnp::{BnpSpec, BnpStats, bnp_precondition};
pub use config::{
    AdjustLr, FixedPreconditioner, Grafting, GraftingKind, MatrixOrder, MatrixShape,
    NonFinitePolicy, OptimizerConfig, OptimizerKind, ParamGroup,
};
pub use error::{OptimError, Result};
pub use float::{Dtype, Float};
pub use kernel::SimdLevel;
pub use matrix::{MatrixPreconditioner, PreconditionerBlock};
pub use optimizer::{Optimizer, StepOutcome};
pub use regularization::{RegKind, Regularization, Space};
pub use schedule::Schedule;
pub use shard::{ShardPlan, ShardedOptimizer, assemble_state, first_nonfinite, split_state};
pub use state::OptimizerState;
pub use storage::StepFloat;
