//! The batched forward pass.

use super::config::Normalization;
use super::layout::ParamKind;
use super::trace::{Forward, LayerTrace, NormTrace};
use super::workspace::Workspace;
use super::{Evaluation, Mlp};
use crate::batch_norm::{self, NormStats, Placement};
use crate::error::Result;
use crate::layer_norm;
use crate::loss::Targets;
use crate::util::{add_bias, col_slice, col_slice_mut, fit, product_then};
use faer::{Mat, MatRef};

/// Which normalization statistics a forward pass uses for BatchNorm layers.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    /// Batch statistics (training mode); backward as each layer's [`StatsGradient`](crate::StatsGradient) says.
    Train,
    /// Running averages (inference mode); statistics are constants.
    Eval,
    /// Given statistics per layer (indexed by layer; `None` = batch statistics for that layer, or
    /// a layer without BatchNorm). Given statistics are constants in the backward pass. This is the
    /// "statistics frozen" setting of Theorem 5 / (28).
    Frozen(&'a [Option<NormStats>]),
}

/// Makes a normalization trace slot present (keeping its storage) or absent.
fn set_present(slot: &mut Option<NormTrace>, present: bool) {
    if !present {
        *slot = None;
    } else if slot.is_none() {
        *slot = Some(NormTrace::empty());
    }
}

impl Mlp {
    /// Batched forward pass on `x` (`input_dim × B`, one column per sample).
    ///
    /// Allocates a new [`Forward`]; [`Mlp::forward_into`] computes the same values into a reused
    /// [`Workspace`].
    pub fn forward(&self, params: &[f64], x: MatRef<'_, f64>, mode: Mode<'_>) -> Result<Forward> {
        self.check_forward(params, x, mode)?;
        Ok(self.forward_impl(params, x, mode))
    }

    /// Batched forward pass on `x` (`input_dim × B`) into `ws`, read it with
    /// [`Workspace::forward`]. The workspace's buffers are reused: no allocation once they have
    /// held a batch at least this large.
    ///
    /// # Errors
    /// As [`Mlp::forward`]: parameter length or non-finite parameters, input shape or non-finite
    /// input, [`Mode::Frozen`] statistics that do not fit. `ws` is left unchanged on error.
    pub fn forward_into(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        mode: Mode<'_>,
        ws: &mut Workspace,
    ) -> Result<()> {
        self.check_forward(params, x, mode)?;
        self.forward_core(params, x, mode, &mut ws.forward);
        Ok(())
    }

    /// Forward pass without validation, into a new [`Forward`].
    pub(crate) fn forward_impl(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        mode: Mode<'_>,
    ) -> Forward {
        let mut fwd = Forward::empty();
        self.forward_core(params, x, mode, &mut fwd);
        fwd
    }

    /// Normalization forward pass of layer `l` on `x` into `t` (storage reused).
    fn norm_forward_into(
        &self,
        params: &[f64],
        l: usize,
        x: MatRef<'_, f64>,
        mode: Mode<'_>,
        t: &mut NormTrace,
    ) {
        let (d, b) = (x.nrows(), x.ncols());
        let gamma = self.slice(params, ParamKind::Gain, l);
        let beta = self.slice(params, ParamKind::Shift, l);
        let NormTrace {
            xhat,
            y,
            inv_std,
            stats,
            from_batch,
        } = t;
        fit(xhat, d, b);
        fit(y, d, b);
        match self.config.layers[l].norm {
            Normalization::None => {}
            Normalization::BatchNorm(bn) => {
                let st = stats.get_or_insert_with(|| NormStats {
                    mean: Vec::new(),
                    var: Vec::new(),
                });
                *from_batch = match mode {
                    Mode::Train => {
                        st.set_of_batch(x);
                        true
                    }
                    Mode::Eval => {
                        match &self.running[l] {
                            Some(r) => st.set_from(&r.mean, &r.var),
                            None => st.set_identity(d),
                        }
                        false
                    }
                    Mode::Frozen(s) => match &s[l] {
                        Some(given) => {
                            st.set_from(&given.mean, &given.var);
                            false
                        }
                        None => {
                            st.set_of_batch(x);
                            true
                        }
                    },
                };
                inv_std.clear();
                inv_std.resize(d, 0.0);
                batch_norm::forward(
                    x,
                    st,
                    bn.eps,
                    gamma,
                    beta,
                    xhat.as_mut(),
                    y.as_mut(),
                    inv_std,
                );
            }
            Normalization::LayerNorm(ln) => {
                *stats = None;
                *from_batch = true;
                inv_std.clear();
                inv_std.resize(b, 0.0);
                layer_norm::forward(x, ln.eps, gamma, beta, xhat.as_mut(), y.as_mut(), inv_std);
            }
        }
    }

    /// The forward pass (the one implementation behind [`Mlp::forward`] and
    /// [`Mlp::forward_into`]), without validation, into `fwd` (storage reused): per layer
    /// `Z = W H` (one matrix product into the kept buffer), then one pass per column adding the
    /// bias and applying `σ` (normalizations in between as placed).
    pub(crate) fn forward_core(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        mode: Mode<'_>,
        fwd: &mut Forward,
    ) {
        let (nl, b) = (self.n_layers(), x.ncols());
        let Forward { input, layers } = fwd;
        fit(input, x.nrows(), b);
        input.copy_from(x);
        layers.truncate(nl);
        layers.resize_with(nl, LayerTrace::empty);
        for (l, spec) in self.config.layers.iter().enumerate() {
            let (done, rest) = layers.split_at_mut(l);
            let h = done.last().map_or(input.as_ref(), LayerTrace::output);
            let LayerTrace { z, pre, a, post } = &mut rest[0];
            let w = self.weight_unchecked(params, l);
            let bias = self.slice(params, ParamKind::Bias, l).unwrap_or(&[]);
            fit(z, spec.width, b);
            fit(a, spec.width, b);
            let placement = spec.norm.placement();
            set_present(pre, placement == Some(Placement::PreActivation));
            set_present(post, placement == Some(Placement::PostActivation));
            let act = spec.activation;
            match pre {
                Some(pre) => {
                    product_then(z.as_mut(), w, h, a.as_mut(), &|mut z, _| {
                        for c in 0..z.ncols() {
                            add_bias(col_slice_mut(z.as_mut(), c), bias);
                        }
                    });
                    self.norm_forward_into(params, l, z.as_ref(), mode, pre);
                    for c in 0..b {
                        act.apply_slice(col_slice(pre.y.as_ref(), c), col_slice_mut(a.as_mut(), c));
                    }
                }
                // `z = W h + b` and `a = σ(z)` on each thread's columns right after its part
                // of the product (still in its cache)
                None => product_then(z.as_mut(), w, h, a.as_mut(), &|mut z, mut a| {
                    for c in 0..z.ncols() {
                        let zc = col_slice_mut(z.as_mut(), c);
                        add_bias(zc, bias);
                        act.apply_slice(zc, col_slice_mut(a.as_mut(), c));
                    }
                }),
            }
            if let Some(post) = post {
                self.norm_forward_into(params, l, a.as_ref(), mode, post);
            }
        }
    }

    /// Mean loss and accuracy without gradient.
    pub fn evaluate(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        targets: &Targets,
        mode: Mode<'_>,
    ) -> Result<Evaluation> {
        self.config
            .loss
            .check_targets(targets, self.n_outputs(), x.ncols())?;
        let forward = self.forward(params, x, mode)?;
        let out = forward.output();
        let loss = self
            .config
            .loss
            .per_sample(out, targets)
            .iter()
            .sum::<f64>()
            / out.ncols() as f64;
        let accuracy = self.config.loss.accuracy(out, targets);
        Ok(Evaluation {
            loss,
            accuracy,
            forward,
        })
    }

    /// Inference: the output (`k × B`) with BatchNorm running averages.
    pub fn predict(&self, params: &[f64], x: MatRef<'_, f64>) -> Result<Mat<f64>> {
        Ok(self.forward(params, x, Mode::Eval)?.output().to_owned())
    }
}
