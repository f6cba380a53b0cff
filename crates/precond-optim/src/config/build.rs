//! Building an [`OptimizerConfig`]: torch's defaults of each kind, the preset constructors and
//! validation (the common keys here, each kind's own keys by its description in `kinds/`).

use super::{FixedPreconditioner, OptimizerConfig, validate_regularization};
use crate::checks::{check_lr, check_nonneg};
use crate::error::{OptimError, Result};
use crate::kind::OptimizerKind;

impl OptimizerConfig {
    /// torch's defaults for `kind` (`precond_gd` additionally needs [`Self::preconditioner`]):
    /// the defaults most torch optimizers share with the kind's own defaults applied.
    pub fn new(kind: OptimizerKind) -> Self {
        let mut c = Self::base(kind);
        kind.apply_defaults(&mut c);
        c
    }

    /// Preset: torch `SGD(lr, momentum)`.
    pub fn sgd(lr: f64, momentum: f64) -> Self {
        OptimizerConfig {
            lr,
            momentum,
            ..Self::new(OptimizerKind::Sgd)
        }
    }
    /// Preset: gradient descent (1) with step `lr`.
    pub fn gd(lr: f64) -> Self {
        OptimizerConfig {
            lr,
            ..Self::new(OptimizerKind::Gd)
        }
    }
    /// Preset: torch `Adagrad(lr)`.
    pub fn adagrad(lr: f64) -> Self {
        OptimizerConfig {
            lr,
            ..Self::new(OptimizerKind::Adagrad)
        }
    }
    /// Preset: torch `RMSprop(lr)`.
    pub fn rmsprop(lr: f64) -> Self {
        OptimizerConfig {
            lr,
            ..Self::new(OptimizerKind::Rmsprop)
        }
    }
    /// Preset: torch `Adam(lr)`.
    pub fn adam(lr: f64) -> Self {
        OptimizerConfig {
            lr,
            ..Self::new(OptimizerKind::Adam)
        }
    }
    /// Preset: torch `AdamW(lr, weight_decay)`.
    pub fn adamw(lr: f64, weight_decay: f64) -> Self {
        OptimizerConfig {
            lr,
            weight_decay,
            ..Self::new(OptimizerKind::Adamw)
        }
    }
    /// Preset: preconditioned GD (5) with a fixed preconditioner.
    pub fn precond_gd(lr: f64, p: FixedPreconditioner) -> Self {
        OptimizerConfig {
            lr,
            preconditioner: Some(p),
            ..Self::new(OptimizerKind::PrecondGd)
        }
    }

    /// Range checks (linfa `ParamGuard::check` style); the error names the key. The common keys
    /// are checked here, the optimizer's own keys by its kind (`kinds/`).
    pub fn validate(&self) -> Result<()> {
        let k = self.optimizer;
        check_lr("lr", self.lr)?;
        check_nonneg("weight_decay", self.weight_decay)?;
        k.validate(self)?;
        validate_regularization(&self.regularization, "regularization")?;
        for (i, g) in self.groups.iter().enumerate() {
            if let Some(lr) = g.lr {
                check_lr(&format!("groups[{i}].lr"), lr)?;
            }
            if let Some(wd) = g.weight_decay {
                check_nonneg(&format!("groups[{i}].weight_decay"), wd)?;
            }
            if let Some(r) = &g.regularization {
                validate_regularization(r, &format!("groups[{i}].regularization"))?;
            }
            if g.start >= g.end {
                return Err(OptimError::config(
                    format!("groups[{i}]"),
                    format!("empty range {}..{}", g.start, g.end),
                ));
            }
        }
        if self.preconditioner.is_some() && !k.keys().contains(&"preconditioner") {
            return Err(OptimError::config(
                "preconditioner",
                "only precond_gd takes a fixed preconditioner",
            ));
        }
        Ok(())
    }
}
