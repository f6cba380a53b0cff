//! Preconditioned optimizers (THEORY.md sections 2, 4 and 5): GD, SGD (momentum, dampening,
//! Nesterov), AdaGrad, RMSProp, Adam, AdamW and preconditioned GD with a fixed `P`, with exactly
//! torch's `torch.optim` formulas, defaults and `eps` placement, composed from small generic
//! parts and fused into one pass over memory per step.
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
//! # Composition
//!
//! [`Fused`] composes a [`PrecondRule`], a [`MomentumRule`] and a [`Regularizer`]; the presets
//! are thin aliases ([`presets`]). [`fused_step`] runs any composition in one pass, compiled for
//! the baseline target and for AVX2+FMA and dispatched at run time, split over rayon above
//! [`PAR_THRESHOLD`] ([`PAR_THRESHOLD_HEAVY`] for the arithmetic-bound adaptive rules).
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
//! use precond_optim::*;
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
//!            SimdLevel::detect(), PAR_THRESHOLD).unwrap();
//! assert!(x[0] < 1.0);
//! ```

mod config;
mod error;
mod float;
mod json;
mod kernel;
mod momentum;
mod objective;
mod optimizer;
mod precond;
pub mod regularization;
mod schedule;
mod state;

pub use config::{
    FixedPreconditioner, NonFinitePolicy, OptimizerConfig, OptimizerKind, ParamGroup,
};
pub use error::{OptimError, Result};
pub use float::{Dtype, Float};
pub use kernel::{
    BufferLengthError, Buffers, ElementUpdate, Fused, MAX_SLOTS, PAR_THRESHOLD,
    PAR_THRESHOLD_HEAVY, SimdLevel, default_par_threshold, first_nonfinite, fused_step,
    fused_step_detect,
};
pub use momentum::{Ema, HeavyBall, MomentumRule, NoMomentum, PostHeavyBall};
pub use objective::{
    LeastSquares, LogisticRegression, MinimizeOptions, Objective, Quadratic, Trace, minimize,
};
pub use optimizer::{Optimizer, StepFloat, StepOutcome};
pub use precond::{
    AdagradPrecond, AdamPrecond, FixedDiag, Identity, Lerp, PrecondRule, RmsPrecond,
};
pub use regularization::{
    CoupledL2, DecoupledL2, Elementwise, NoReg, RegKind, Regularization, Regularizer, Space,
};
pub use schedule::Schedule;
pub use state::OptimizerState;

/// Named optimizers as thin aliases over the parts (optax `alias.py` style): each is a
/// [`Fused`] of a preconditioner rule, a momentum rule and a regularizer.
pub mod presets {
    use crate::{
        AdagradPrecond, AdamPrecond, CoupledL2, DecoupledL2, Ema, Fused, HeavyBall, Identity,
        NoMomentum, NoReg, PostHeavyBall, RmsPrecond,
    };
    /// Gradient descent (1).
    pub type Gd<T> = Fused<T, Identity, NoMomentum<T>, NoReg>;
    /// torch `SGD(momentum>0, weight_decay)`.
    pub type SgdMomentum<T> = Fused<T, Identity, HeavyBall<T>, CoupledL2<T>>;
    /// torch `Adagrad`.
    pub type Adagrad<T> = Fused<T, AdagradPrecond<T>, NoMomentum<T>, NoReg>;
    /// torch `RMSprop` (not centered, no momentum).
    pub type RmsProp<T> = Fused<T, RmsPrecond<T, false>, NoMomentum<T>, NoReg>;
    /// torch `RMSprop(centered=True, momentum>0)`.
    pub type RmsPropCenteredMomentum<T> = Fused<T, RmsPrecond<T, true>, PostHeavyBall<T>, NoReg>;
    /// torch `Adam`.
    pub type Adam<T> = Fused<T, AdamPrecond<T, false>, Ema<T>, NoReg>;
    /// torch `Adam(amsgrad=True)`.
    pub type AdamAmsgrad<T> = Fused<T, AdamPrecond<T, true>, Ema<T>, NoReg>;
    /// torch `AdamW` = Adam + intrinsic L2 (decoupled weight decay).
    pub type AdamW<T> = Fused<T, AdamPrecond<T, false>, Ema<T>, DecoupledL2<T>>;
}
