//! Validation of the arguments of the passes: buffer lengths, finiteness, shapes, statistics.
//! Every public pass checks first and then runs its unchecked core, so a rejected call leaves
//! its outputs untouched.

use super::Mlp;
use super::config::Normalization;
use super::forward::Mode;
use super::trace::Forward;
use crate::batch_norm::Placement;
use crate::error::{NnError, Result};
use crate::util::all_finite;
use faer::MatRef;

/// Checks that every entry of a flat buffer is finite; on failure names the first offending
/// entry (as row `i`, column 0).
pub(crate) fn check_finite_vec(what: &'static str, v: &[f64]) -> Result<()> {
    if all_finite(v) {
        return Ok(());
    }
    match v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        Some((row, &value)) => Err(NnError::NonFinite {
            what,
            row,
            col: 0,
            value,
        }),
        None => Ok(()),
    }
}

impl Mlp {
    pub(super) fn check_params(&self, params: &[f64]) -> Result<()> {
        if params.len() != self.layout.len() {
            return Err(NnError::DimensionMismatch {
                what: "parameter buffer length",
                expected: self.layout.len(),
                got: params.len(),
            });
        }
        check_finite_vec("parameters", params)
    }

    pub(super) fn check_input(&self, x: MatRef<'_, f64>) -> Result<()> {
        if x.nrows() != self.config.input_dim {
            return Err(NnError::DimensionMismatch {
                what: "input rows (features) vs input_dim",
                expected: self.config.input_dim,
                got: x.nrows(),
            });
        }
        if x.ncols() == 0 {
            return Err(NnError::Empty {
                what: "input batch (no columns)",
            });
        }
        precond_linalg::check_finite(x, "input")
            .map_err(|e| NnError::from_linalg(e, "input", "finiteness check"))
    }

    /// A flat buffer (parameters or gradient) must have the layout's length.
    pub(super) fn check_flat_len(&self, what: &'static str, len: usize) -> Result<()> {
        if len != self.layout.len() {
            return Err(NnError::DimensionMismatch {
                what,
                expected: self.layout.len(),
                got: len,
            });
        }
        Ok(())
    }

    pub(super) fn check_params_len(&self, params: &[f64]) -> Result<()> {
        self.check_flat_len("parameter buffer length", params.len())
    }

    pub(crate) fn check_layer(&self, layer: usize) -> Result<()> {
        if layer >= self.n_layers() {
            return Err(NnError::NoSuchLayer {
                layer,
                n_layers: self.n_layers(),
            });
        }
        Ok(())
    }

    /// Validates a [`Mode::Frozen`] statistics list against the network.
    pub(super) fn check_mode(&self, mode: Mode<'_>) -> Result<()> {
        if let Mode::Frozen(s) = mode {
            if s.len() != self.n_layers() {
                return Err(NnError::DimensionMismatch {
                    what: "frozen statistics per layer",
                    expected: self.n_layers(),
                    got: s.len(),
                });
            }
            for (l, st) in s.iter().enumerate() {
                if let Some(st) = st {
                    let w = self.config.layers[l].width;
                    if st.mean.len() != w || st.var.len() != w {
                        return Err(NnError::DimensionMismatch {
                            what: "frozen statistics width",
                            expected: w,
                            got: st.mean.len(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn check_grad_len(&self, grad: &[f64]) -> Result<()> {
        self.check_flat_len("gradient buffer length", grad.len())
    }

    pub(super) fn check_forward(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        mode: Mode<'_>,
    ) -> Result<()> {
        self.check_params(params)?;
        self.check_input(x)?;
        self.check_mode(mode)?;
        self.check_batch_statistics(x.ncols(), mode)
    }

    /// [`NnError::BatchTooSmall`] when a training-mode forward pass on a batch of `batch` samples
    /// would compute BatchNorm statistics from fewer than two samples.
    pub fn check_training_batch(&self, batch: usize) -> Result<()> {
        self.check_batch_statistics(batch, Mode::Train)
    }

    /// A BatchNorm layer that computes batch statistics (training mode, or frozen mode without
    /// given statistics for that layer) needs at least two samples: the variance of one sample
    /// is zero ([`NnError::BatchTooSmall`]).
    pub(super) fn check_batch_statistics(&self, batch: usize, mode: Mode<'_>) -> Result<()> {
        if batch >= 2 {
            return Ok(());
        }
        for (l, spec) in self.config.layers.iter().enumerate() {
            if !matches!(spec.norm, Normalization::BatchNorm(_)) {
                continue;
            }
            let from_batch = match mode {
                Mode::Train => true,
                Mode::Eval => false,
                Mode::Frozen(s) => s.get(l).is_none_or(Option::is_none),
            };
            if from_batch {
                return Err(NnError::BatchTooSmall { layer: l, batch });
            }
        }
        Ok(())
    }

    /// Checks that a forward trace was made by a network of this architecture: the same input
    /// dimension, number of layers, widths and normalizations. A [`Forward`] is consistent in
    /// itself (only the forward passes make one), but it may come from another network, or from
    /// a [`Workspace`](super::Workspace) that has held no forward pass yet.
    pub(super) fn check_trace(&self, fwd: &Forward) -> Result<()> {
        if fwd.layers.len() != self.n_layers() {
            return Err(NnError::DimensionMismatch {
                what: "forward trace layers",
                expected: self.n_layers(),
                got: fwd.layers.len(),
            });
        }
        let b = fwd.batch_size();
        let rows = |what: &'static str, m: MatRef<'_, f64>, rows: usize| {
            if m.nrows() != rows {
                Err(NnError::DimensionMismatch {
                    what,
                    expected: rows * b,
                    got: m.nrows() * b,
                })
            } else {
                Ok(())
            }
        };
        rows(
            "forward trace input shape",
            fwd.input(),
            self.config.input_dim,
        )?;
        for (spec, t) in self.config.layers.iter().zip(&fwd.layers) {
            rows("forward trace z shape", t.z(), spec.width)?;
            let placement = spec.norm.placement();
            let batch_norm = matches!(spec.norm, Normalization::BatchNorm(_));
            for (present, trace) in [
                (placement == Some(Placement::PreActivation), &t.pre),
                (placement == Some(Placement::PostActivation), &t.post),
            ] {
                // a BatchNorm trace always holds its statistics, a LayerNorm trace never
                let fits = match trace {
                    None => !present,
                    Some(n) => present && n.stats.is_some() == batch_norm,
                };
                if !fits {
                    return Err(NnError::DimensionMismatch {
                        what: "forward trace normalizations vs network",
                        expected: usize::from(present),
                        got: usize::from(trace.is_some()),
                    });
                }
            }
        }
        Ok(())
    }

    /// Validation shared by [`Mlp::backward`] and [`Mlp::backward_into`].
    pub(super) fn check_backward(
        &self,
        params: &[f64],
        fwd: &Forward,
        d_out: MatRef<'_, f64>,
        grad: &[f64],
    ) -> Result<()> {
        self.check_params_len(params)?;
        self.check_grad_len(grad)?;
        self.check_trace(fwd)?;
        let out = fwd.output();
        if d_out.nrows() != out.nrows() || d_out.ncols() != out.ncols() {
            return Err(NnError::DimensionMismatch {
                what: "d_out shape vs output shape",
                expected: out.nrows() * out.ncols(),
                got: d_out.nrows() * d_out.ncols(),
            });
        }
        Ok(())
    }
}
