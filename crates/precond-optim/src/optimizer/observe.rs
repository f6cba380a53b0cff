//! Observing the preconditioner: [`Optimizer::preconditioner`] (the kind's `P_k`) and
//! [`Optimizer::dense_preconditioner`].

use super::Optimizer;
use crate::config::FixedPreconditioner;
use crate::error::{OptimError, Result};
use crate::storage::Store;

impl Optimizer {
    /// Write the current diagonal preconditioner `P_k` (THEORY.md section 4; learning rate kept
    /// outside) into `out`: Adam/AdamW `1/(sqrt(v̂_k) + eps)` (AMSGrad: of the running max),
    /// AdaGrad `1/(sqrt(G_k) + eps)` (the `lr_decay` factor `1/(1 + (k−1)·lr_decay)` is a scalar on
    /// the learning rate, not part of `P`), RMSprop `1/(sqrt(v_k) + eps)` (centered:
    /// `v_k − ḡ_k²`), SGD/GD ones, `precond_gd` the fixed diagonal.
    ///
    /// Errors: wrong `out` length; [`OptimError::NoPreconditionerYet`] for Adam before the first
    /// step; [`OptimError::Unsupported`] for a dense `P` (use [`Self::dense_preconditioner`]).
    pub fn preconditioner(&self, out: &mut [f64]) -> Result<()> {
        if out.len() != self.n {
            return Err(OptimError::LengthMismatch {
                what: "preconditioner out",
                expected: self.n,
                got: out.len(),
            });
        }
        let (c, k) = (&self.cfg, self.cfg.optimizer);
        match &self.store {
            Store::Empty => k.observe::<f64>(c, self.step, None, out),
            Store::F32(s) => k.observe(c, self.step, Some(s), out),
            Store::F64(s) => k.observe(c, self.step, Some(s), out),
        }
    }

    /// The dense `P` of `precond_gd` (row-major `n × n`; for a diagonal `P` the diagonal matrix).
    pub fn dense_preconditioner(&self, out: &mut [f64]) -> Result<()> {
        let n = self.n;
        if out.len() != n * n {
            return Err(OptimError::LengthMismatch {
                what: "dense preconditioner out",
                expected: n * n,
                got: out.len(),
            });
        }
        match (&self.prepared.dense_p, &self.cfg.preconditioner) {
            (Some(p), _) => out.copy_from_slice(p),
            (None, Some(FixedPreconditioner::Diagonal(p))) => {
                out.fill(0.0);
                for i in 0..n {
                    out[i * n + i] = p[i];
                }
            }
            _ => {
                return Err(OptimError::Unsupported(
                    "only precond_gd has a fixed dense preconditioner".into(),
                ));
            }
        }
        Ok(())
    }
}
