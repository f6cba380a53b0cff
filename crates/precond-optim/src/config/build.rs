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
    /// are checked here, the optimizer's own keys by its kind (`kinds/`); a group's own
    /// optimizer is checked the same way, its errors under `groups[i].`.
    pub fn validate(&self) -> Result<()> {
        self.validate_own()?;
        if let Some(s) = &self.shape
            && s.len().is_none()
        {
            return Err(OptimError::config("shape", "rows · cols overflows"));
        }
        let top_matrix = self.optimizer.is_matrix();
        for (i, g) in self.groups.iter().enumerate() {
            let path = format!("groups[{i}]");
            if let Some(lr) = g.lr {
                check_lr(&format!("{path}.lr"), lr)?;
            }
            if let Some(wd) = g.weight_decay {
                check_nonneg(&format!("{path}.weight_decay"), wd)?;
            }
            if let Some(r) = &g.regularization {
                validate_regularization(r, &format!("{path}.regularization"))?;
            }
            if g.start >= g.end {
                return Err(OptimError::config(
                    path,
                    format!("empty range {}..{}", g.start, g.end),
                ));
            }
            let kind = match &g.optimizer {
                Some(inner) => {
                    if g.lr.is_some() || g.weight_decay.is_some() || g.regularization.is_some() {
                        return Err(OptimError::config(
                            path,
                            "a group with its own optimizer keeps lr, weight_decay and regularization in that optimizer's config",
                        ));
                    }
                    if !inner.groups.is_empty() || inner.shape.is_some() {
                        return Err(OptimError::config(
                            path,
                            "a group's own optimizer takes no groups or shape of its own (the group's shape is the group's)",
                        ));
                    }
                    inner.validate_own().map_err(|e| e.under(&path))?;
                    inner.optimizer
                }
                None => {
                    if top_matrix && g.regularization.is_some() {
                        return Err(OptimError::Unsupported(format!(
                            "{path}: `{}` takes no extra regularization",
                            self.optimizer.name()
                        )));
                    }
                    self.optimizer
                }
            };
            if let Some(b) = &g.bnp {
                if kind.is_matrix() {
                    return Err(OptimError::config(
                        format!("{path}.bnp"),
                        format!(
                            "BNP preconditions the gradient of a per-element optimizer; `{}` is a matrix optimizer",
                            kind.name()
                        ),
                    ));
                }
                b.check().map_err(|e| match e {
                    OptimError::InvalidStatistics {
                        what,
                        value,
                        reason,
                        ..
                    } => OptimError::config(
                        format!("{path}.bnp.{what}"),
                        format!("{value}: {reason}"),
                    ),
                    other => other,
                })?;
                // the shape [units, d] covers units·d + units entries: checked with the parts
                continue;
            }
            if kind.is_matrix() && g.shape.is_none() {
                return Err(OptimError::config(
                    format!("{path}.shape"),
                    format!(
                        "`{}` preconditions a matrix: the group needs its 2-D shape [rows, cols]",
                        kind.name()
                    ),
                ));
            }
            if let Some(s) = &g.shape
                && s.len() != Some(g.end - g.start)
            {
                return Err(OptimError::config(
                    format!("{path}.shape"),
                    format!(
                        "[{}, {}] does not have the group's {} entries",
                        s.rows,
                        s.cols,
                        g.end - g.start
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The checks of one optimizer's own keys (the top level's or a group's own optimizer):
    /// learning rate, weight decay, the kind's keys, the regularization.
    pub(crate) fn validate_own(&self) -> Result<()> {
        let k = self.optimizer;
        check_lr("lr", self.lr)?;
        check_nonneg("weight_decay", self.weight_decay)?;
        k.validate(self)?;
        validate_regularization(&self.regularization, "regularization")?;
        if k.is_matrix() && !self.regularization.is_none() {
            return Err(OptimError::Unsupported(format!(
                "`{}` takes no extra regularization (weight_decay only)",
                k.name()
            )));
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
