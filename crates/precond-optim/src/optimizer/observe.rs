//! Observing the preconditioner: [`Optimizer::preconditioner`] (the kind's `P_k`) and
//! [`Optimizer::dense_preconditioner`].

use super::Optimizer;
use crate::config::FixedPreconditioner;
use crate::error::{OptimError, Result};
use crate::matrix::MatrixPreconditioner;
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
        if let Some(p) = self.parts.iter().find(|p| p.cfg.optimizer.is_matrix()) {
            return Err(OptimError::Unsupported(format!(
                "{} runs `{}`, a matrix preconditioner: use matrix_preconditioner({})",
                p.group
                    .map_or_else(|| "the top level".to_string(), |g| format!("group {g}")),
                p.cfg.optimizer.name(),
                p.group
                    .map_or_else(|| "None".to_string(), |g| format!("Some({g})"))
            )));
        }
        // every part observes into a compact buffer first: nothing is written on an error
        let mut all = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            let mut buf = vec![0.0; p.geo.len];
            let (c, k) = (&p.cfg, p.cfg.optimizer);
            let r = match &p.store {
                Store::Empty => k.observe::<f64>(c, self.step, None, &mut buf),
                Store::F32(s) => k.observe(c, self.step, Some(s), &mut buf),
                Store::F64(s) => k.observe(c, self.step, Some(s), &mut buf),
            };
            r.map_err(|e| match p.group {
                Some(g) => e.under(&format!("groups[{g}]")),
                None => e,
            })?;
            all.push(buf);
        }
        for (p, buf) in self.parts.iter().zip(&all) {
            let mut off = 0;
            for seg in &p.segments {
                let len = seg.end - seg.start;
                out[seg.start..seg.end].copy_from_slice(&buf[off..off + len]);
                off += len;
            }
        }
        Ok(())
    }

    /// The current preconditioner of a matrix group (`group: Some(i)`, index in the config's
    /// `groups`) or of the top-level matrix (`None`): Shampoo's factors and inverse roots, SOAP's
    /// factors, eigenbases and rotated Adam diagonal, Muon's implied `(BBᵀ)^{-1/2}` (see
    /// [`crate::MatrixPreconditioner`]). Errors: [`OptimError::Config`] naming `groups[i]` when no
    /// such matrix group exists, [`OptimError::Unsupported`] for a per-element optimizer,
    /// [`OptimError::NoPreconditionerYet`] before the first step.
    pub fn matrix_preconditioner(&self, group: Option<usize>) -> Result<MatrixPreconditioner> {
        let key = group.map_or_else(|| "shape".to_string(), |g| format!("groups[{g}]"));
        let Some(p) = self.parts.iter().find(|p| p.group == group) else {
            return Err(OptimError::config(
                key,
                match self.shard_info() {
                    Some(s) => format!(
                        "no optimizer part of this shard (rank {}, parameters {}..{}) runs on this group",
                        s.rank, s.start, s.end
                    ),
                    None => {
                        "no optimizer part runs on this group (it has no own or matrix optimizer)"
                            .to_string()
                    }
                },
            ));
        };
        let (c, k) = (&p.cfg, p.cfg.optimizer);
        match &p.store {
            Store::Empty => k.observe_matrix::<f64>(c, self.step, None, &p.geo),
            Store::F32(s) => k.observe_matrix(c, self.step, Some(s), &p.geo),
            Store::F64(s) => k.observe_matrix(c, self.step, Some(s), &p.geo),
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
        let (prepared, fixed) = match self.parts.as_slice() {
            // the part's own config: a shard's holds its slice of a diagonal `P`
            [p] if p.group.is_none() => (&p.prepared, &p.cfg.preconditioner),
            _ => {
                return Err(OptimError::Unsupported(
                    "a dense preconditioner of an optimizer with several parts".into(),
                ));
            }
        };
        match (&prepared.dense_p, fixed) {
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
