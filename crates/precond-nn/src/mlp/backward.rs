//! The backward pass (backpropagation) and the loss gradient.

use super::config::Normalization;
use super::forward::Mode;
use super::layout::ParamKind;
use super::trace::{Forward, NormTrace};
use super::workspace::{BackwardBuffers, NormScratch, Workspace};
use super::{Evaluation, Mlp};
use crate::activation::Activation;
use crate::batch_norm::{self, StatsGradient};
use crate::error::{NnError, Result};
use crate::layer_norm;
use crate::loss::Targets;
use crate::util::{add_bias, col_slice, col_slice_mut, fit, product};
use faer::{Accum, Mat, MatMut, MatRef};

/// Elements from which [`activation_backward`] runs its two halves on two threads.
const ACT_PAR_MIN: usize = 1 << 14;

/// `d ← d ⊙ σ'(u)` over the batch columns, and with `db` the bias gradient `db += Σ_n d[:, n]`
/// in the same pass: the columns in two halves cut at a multiple of 8 (the first half summed
/// into `db`, the second into `half`, then added), on two threads when the pass is long and
/// the pool has them. The cut does not depend on the number of threads: the same sums in the
/// same order on any pool.
fn activation_backward(
    act: Activation,
    u: MatRef<'_, f64>,
    d: MatMut<'_, f64>,
    mut db: Option<&mut [f64]>,
    half: &mut Vec<f64>,
) {
    let (w, b) = (d.nrows(), d.ncols());
    let pass = |u: MatRef<'_, f64>, mut d: MatMut<'_, f64>, mut db: Option<&mut [f64]>| {
        for c in 0..d.ncols() {
            let dc = col_slice_mut(d.as_mut(), c);
            act.mul_derivative_slice(col_slice(u, c), dc);
            if let Some(db) = db.as_deref_mut() {
                add_bias(db, dc);
            }
        }
    };
    let at = b / 2 / 8 * 8;
    if at == 0 {
        return pass(u, d, db);
    }
    let (ul, ur) = u.split_at_col(at);
    let (dl, dr) = d.split_at_col_mut(at);
    let right = db.is_some().then(|| {
        half.clear();
        half.resize(w, 0.0);
        &mut half[..]
    });
    if rayon::current_num_threads() > 1 && w * b >= ACT_PAR_MIN {
        rayon::join(|| pass(ul, dl, db.as_deref_mut()), || pass(ur, dr, right));
    } else {
        pass(ul, dl, db.as_deref_mut());
        pass(ur, dr, right);
    }
    if let Some(db) = db {
        add_bias(db, half);
    }
}

impl Mlp {
    #[allow(clippy::too_many_arguments)]
    fn norm_backward(
        &self,
        params: &[f64],
        l: usize,
        t: &NormTrace,
        d: MatMut<'_, f64>,
        grad: &mut [f64],
        scratch: &mut NormScratch,
    ) {
        let gamma = self.slice(params, ParamKind::Gain, l);
        let gb = self
            .layout
            .find(ParamKind::Gain, l)
            .map(|b| b.range.clone());
        let sb = self
            .layout
            .find(ParamKind::Shift, l)
            .map(|b| b.range.clone());
        let (dg, ds) = match (gb, sb) {
            (Some(g), Some(s)) => {
                let (lo, hi) = grad.split_at_mut(s.start);
                (Some(&mut lo[g]), Some(&mut hi[..s.end - s.start]))
            }
            _ => (None, None),
        };
        match self.config.layers[l].norm {
            Normalization::None => {}
            Normalization::BatchNorm(bn) => {
                let full = t.from_batch && bn.stats_gradient == StatsGradient::Full;
                batch_norm::backward(
                    d,
                    t.xhat.as_ref(),
                    &t.inv_std,
                    gamma,
                    full,
                    dg,
                    ds,
                    &mut scratch.sum_g,
                    &mut scratch.sum_gx,
                    &mut scratch.scale,
                );
            }
            Normalization::LayerNorm(_) => {
                layer_norm::backward(d, t.xhat.as_ref(), &t.inv_std, gamma, dg, ds);
            }
        }
    }

    /// Backward pass from `d_out = dL/dO` (`k × B`): writes the gradient into `grad`
    /// (overwritten, length [`ParamLayout::len`](crate::ParamLayout::len)) and returns `dL/dx` (`input_dim × B`).
    ///
    /// Allocates its buffers; [`Mlp::backward_into`] reuses a [`Workspace`] instead.
    pub fn backward(
        &self,
        params: &[f64],
        fwd: &Forward,
        d_out: MatRef<'_, f64>,
        grad: &mut [f64],
    ) -> Result<Mat<f64>> {
        self.check_backward(params, fwd, d_out, grad)?;
        let mut bufs = BackwardBuffers::default();
        bufs.output_delta(self.n_layers(), d_out.nrows(), d_out.ncols())
            .copy_from(d_out);
        self.backward_core(params, fwd, &mut bufs, grad, true);
        Ok(bufs.input_grad)
    }

    /// Backward pass through the forward pass held in `ws` (the last [`Mlp::forward_into`]),
    /// from `d_out = dL/dO` (`k × B`): writes the gradient into `grad` (overwritten, length
    /// [`ParamLayout::len`](crate::ParamLayout::len)) and returns `dL/dx` (`input_dim × B`) as a view into `ws`.
    /// No allocation once `ws` has held a batch this large.
    ///
    /// # Errors
    /// Buffer lengths, `d_out` shape, or `ws` holding no forward pass of this network.
    pub fn backward_into<'w>(
        &self,
        params: &[f64],
        d_out: MatRef<'_, f64>,
        ws: &'w mut Workspace,
        grad: &mut [f64],
    ) -> Result<MatRef<'w, f64>> {
        self.check_backward(params, &ws.forward, d_out, grad)?;
        let Workspace { forward, backward } = ws;
        backward
            .output_delta(self.n_layers(), d_out.nrows(), d_out.ncols())
            .copy_from(d_out);
        self.backward_core(params, forward, backward, grad, true);
        Ok(backward.input_grad.as_ref())
    }

    /// The backward pass (the one implementation behind [`Mlp::backward`],
    /// [`Mlp::backward_into`] and the loss gradients), without validation. On entry
    /// `bufs.deltas[n_layers − 1]` holds `dL/dO` (see [`BackwardBuffers::output_delta`]); on exit
    /// `grad` holds the gradient and, if `input_grad`, `bufs.input_grad` holds `dL/dx` (the last
    /// product `W⁰ᵀ (dL/dZ⁰)` is skipped otherwise).
    pub(crate) fn backward_core(
        &self,
        params: &[f64],
        fwd: &Forward,
        bufs: &mut BackwardBuffers,
        grad: &mut [f64],
        input_grad: bool,
    ) {
        let b = fwd.batch_size();
        let BackwardBuffers {
            deltas,
            input_grad: dx,
            scratch,
            bias_half,
        } = bufs;
        for l in (0..self.n_layers()).rev() {
            let spec = &self.config.layers[l];
            let t = &fwd.layers[l];
            let (below, here) = deltas.split_at_mut(l);
            let d = &mut here[0];
            if let Some(post) = &t.post {
                self.norm_backward(params, l, post, d.as_mut(), grad, scratch);
            }
            // d ← d ⊙ σ'(u), and (without a pre-activation normalization, when this is already
            // dL/dZ) the bias gradient Σ_n d in the same pass over the columns
            let act = spec.activation;
            let bias = self
                .layout
                .find(ParamKind::Bias, l)
                .map(|bb| bb.range.clone());
            let fused = t.pre.is_none();
            if let Some(r) = &bias {
                grad[r.clone()].iter_mut().for_each(|v| *v = 0.0);
            }
            if act != Activation::Identity || fused {
                let db = match (fused, &bias) {
                    (true, Some(r)) => Some(&mut grad[r.clone()]),
                    _ => None,
                };
                activation_backward(act, t.activation_input(), d.as_mut(), db, bias_half);
            }
            if let Some(pre) = &t.pre {
                self.norm_backward(params, l, pre, d.as_mut(), grad, scratch);
                if let Some(r) = &bias {
                    for c in 0..b {
                        add_bias(&mut grad[r.clone()], col_slice(d.as_ref(), c));
                    }
                }
            }
            // d = dL/dZ
            let h = fwd.layer_input(l);
            let wb = &self.layout.blocks()[l];
            {
                let dw = MatMut::from_row_major_slice_mut(
                    &mut grad[wb.range.clone()],
                    wb.shape.0,
                    wb.shape.1,
                );
                product(dw, Accum::Replace, d.as_ref(), h.transpose(), 1.0);
            }
            let next = match below.last_mut() {
                Some(prev) => prev,
                None if input_grad => &mut *dx,
                None => continue,
            };
            let w = self.weight_unchecked(params, l);
            fit(next, w.ncols(), b);
            product(
                next.as_mut(),
                Accum::Replace,
                w.transpose(),
                d.as_ref(),
                1.0,
            );
        }
    }

    /// Mean loss (15) and its gradient `dL/dO` (into the workspace), then the backward pass;
    /// without validation. The one implementation behind [`Mlp::loss_and_grad`] and
    /// [`Mlp::loss_and_grad_into`].
    pub(crate) fn loss_and_grad_core(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        targets: &Targets,
        mode: Mode<'_>,
        ws: &mut Workspace,
        grad: &mut [f64],
    ) -> f64 {
        let w = 1.0 / x.ncols() as f64;
        self.weighted_loss_and_grad_core(params, x, targets, mode, w, ws, grad)
    }

    /// [`Mlp::loss_and_grad_core`] with the weight `w` of every sample's loss given (the mean
    /// is `w = 1/N`).
    #[allow(clippy::too_many_arguments)]
    fn weighted_loss_and_grad_core(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        targets: &Targets,
        mode: Mode<'_>,
        weight: f64,
        ws: &mut Workspace,
        grad: &mut [f64],
    ) -> f64 {
        let Workspace { forward, backward } = ws;
        self.forward_core(params, x, mode, forward);
        let out = forward.output();
        let d = backward.output_delta(self.n_layers(), out.nrows(), out.ncols());
        let loss = self
            .config
            .loss
            .weighted_value_and_grad(out, targets, d.as_mut(), weight);
        self.backward_core(params, forward, backward, grad, false);
        loss
    }

    /// Mean loss (15) on `(x, targets)` and its exact gradient, written into `grad`.
    ///
    /// Allocates the forward values it returns; [`Mlp::loss_and_grad_into`] is the same
    /// computation into a reused [`Workspace`].
    pub fn loss_and_grad(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        targets: &Targets,
        mode: Mode<'_>,
        grad: &mut [f64],
    ) -> Result<Evaluation> {
        let mut ws = Workspace::new();
        let loss = self.loss_and_grad_into(params, x, targets, mode, &mut ws, grad)?;
        let forward = ws.into_forward();
        let accuracy = self.config.loss.accuracy(forward.output(), targets);
        Ok(Evaluation {
            loss,
            accuracy,
            forward,
        })
    }

    /// Mean loss (15) `L = (1/N) Σ_n ℓ(F(x_n; θ), y_n)` on `(x, targets)` and its exact gradient
    /// `∇_θ L` (backpropagation), written into `grad` (overwritten, length
    /// [`ParamLayout::len`](crate::ParamLayout::len)). Returns `L`.
    ///
    /// All intermediate values live in `ws`: after the first call with a batch at least this
    /// large, a call performs **no heap allocation** (a smaller batch, such as the last partial
    /// mini-batch of an epoch, reuses the same storage). The forward values stay readable through
    /// [`Workspace::forward`] (e.g. for [`Mlp::update_running_stats`] or
    /// [`Loss::accuracy`](crate::Loss::accuracy)). Same numbers as [`Mlp::loss_and_grad`] (which calls this).
    ///
    /// # Errors
    /// Gradient buffer length, targets that do not fit the loss, parameter length or
    /// non-finite parameters, input shape or non-finite input, [`Mode::Frozen`] statistics
    /// that do not fit. On error `grad` and `ws` are left unchanged.
    pub fn loss_and_grad_into(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        targets: &Targets,
        mode: Mode<'_>,
        ws: &mut Workspace,
        grad: &mut [f64],
    ) -> Result<f64> {
        self.check_grad_len(grad)?;
        self.config
            .loss
            .check_targets(targets, self.n_outputs(), x.ncols())?;
        self.check_forward(params, x, mode)?;
        Ok(self.loss_and_grad_core(params, x, targets, mode, ws, grad))
    }
}

impl Mlp {
    /// Weighted loss sum `w Σ_n ℓ(F(x_n; θ), y_n)` over the columns of `x` and its exact gradient
    /// `w Σ_n ∇_θ ℓ_n`, written into `grad` (overwritten); returns the weighted sum. `w = 1` gives
    /// the plain sums; `w = 1/N` is [`Mlp::loss_and_grad_into`] (same numbers, bit for bit).
    /// Data parallelism: a rank holding a slice of a batch of `B` samples passes `w = 1/B`, and
    /// the ranks' results add up to the batch's mean loss and gradient.
    ///
    /// Only for networks without BatchNorm in [`Mode::Train`] when the slice is not the whole
    /// batch: batch statistics of a slice are not the batch's (the caller decides; nothing here
    /// can tell a slice from a batch). No allocation once `ws` has seen a batch this large.
    ///
    /// # Errors
    /// As [`Mlp::loss_and_grad_into`], and [`NnError::InvalidConfig`] for a weight that is not
    /// finite and positive. On error `grad` and `ws` are left unchanged.
    #[allow(clippy::too_many_arguments)]
    pub fn weighted_loss_and_grad_into(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        targets: &Targets,
        mode: Mode<'_>,
        weight: f64,
        ws: &mut Workspace,
        grad: &mut [f64],
    ) -> Result<f64> {
        if !(weight.is_finite() && weight > 0.0) {
            return Err(NnError::InvalidConfig {
                what: "loss weight",
                value: format!("{weight}"),
                reason: "must be finite and positive",
            });
        }
        self.check_grad_len(grad)?;
        self.config
            .loss
            .check_targets(targets, self.n_outputs(), x.ncols())?;
        self.check_forward(params, x, mode)?;
        Ok(self.weighted_loss_and_grad_core(params, x, targets, mode, weight, ws, grad))
    }
}

impl Workspace {
    /// Pre-sizes every buffer for batches of up to `batch_size` samples of `mlp` by one forward
    /// and backward pass on zeros (at `mlp`'s initial parameters), so that even the first real
    /// step allocates nothing. Optional: the first pass sizes the workspace anyway.
    pub fn reserve(&mut self, mlp: &Mlp, batch_size: usize) {
        if batch_size == 0 {
            return;
        }
        let params = vec![0.0; mlp.layout().len()];
        let mut grad = vec![0.0; params.len()];
        let x = Mat::zeros(mlp.config().input_dim, batch_size);
        mlp.forward_core(&params, x.as_ref(), Mode::Train, &mut self.forward);
        let (nl, k) = (mlp.n_layers(), mlp.n_outputs());
        self.backward.output_delta(nl, k, batch_size);
        mlp.backward_core(&params, &self.forward, &mut self.backward, &mut grad, true);
    }
}
