//! Exact Hessian-vector products by Pearlmutter's R-operator (forward-mode tangent of the
//! forward pass, then the tangent of the backward pass), through activations, losses, BatchNorm
//! (batch statistics or constant statistics) and LayerNorm.
//!
//! Notation: `R{f} = d/dr f(θ + r v)|_{r=0}`. For a normalization with statistics over a group
//! of `M` members, `s = sqrt(var + eps)`, `inv = 1/s`:
//! `R{inv} = −inv² mean(x̂ R{x})`, `R{x̂} = inv (R{x} − mean R{x} − x̂ mean(x̂ R{x}))`
//! (statistics from the batch) or `R{x̂} = inv R{x}` (constant statistics).

use crate::activation::Activation;
use crate::batch_norm::StatsGradient;
use crate::error::{NnError, Result};
use crate::loss::Targets;
use crate::mlp::{Forward, Mlp, Mode, NormTrace, Normalization, ParamKind, check_finite_vec};
use crate::util::product;
use faer::{Accum, Mat, MatMut, MatRef};

/// Which axis a normalization's statistics run over.
#[derive(Clone, Copy)]
enum Axis {
    /// BatchNorm: group = feature (row), members = samples (columns).
    Rows,
    /// LayerNorm: group = sample (column), members = features (rows).
    Cols,
}

struct NormR<'a> {
    axis: Axis,
    full: bool,
    xhat: MatRef<'a, f64>,
    inv: &'a [f64],
    gamma: Option<&'a [f64]>,
    rgamma: Option<&'a [f64]>,
    rbeta: Option<&'a [f64]>,
}

impl NormR<'_> {
    fn groups(&self) -> (usize, usize) {
        match self.axis {
            Axis::Rows => (self.xhat.nrows(), self.xhat.ncols()),
            Axis::Cols => (self.xhat.ncols(), self.xhat.nrows()),
        }
    }
    #[inline]
    fn at(&self, i: usize, k: usize) -> (usize, usize) {
        match self.axis {
            Axis::Rows => (i, k),
            Axis::Cols => (k, i),
        }
    }
    #[inline]
    fn gi(&self, len: usize, i: usize, k: usize) -> usize {
        match self.axis {
            Axis::Rows => i,
            Axis::Cols => {
                if len == 1 {
                    0
                } else {
                    k
                }
            }
        }
    }
    fn gamma_at(&self, i: usize, k: usize) -> (f64, f64) {
        match (self.gamma, self.rgamma) {
            (Some(g), Some(rg)) => {
                let j = self.gi(g.len(), i, k);
                (g[j], rg[j])
            }
            _ => (1.0, 0.0),
        }
    }

    /// Tangent of the forward pass: returns `(R{x̂}, R{inv}, R{y})`.
    fn tangent(&self, rx: MatRef<'_, f64>) -> (Mat<f64>, Vec<f64>, Mat<f64>) {
        let (g, m) = self.groups();
        let (nr, nc) = (self.xhat.nrows(), self.xhat.ncols());
        let mut rxhat = Mat::zeros(nr, nc);
        let mut rinv = vec![0.0; g];
        let inv_m = 1.0 / m as f64;
        for (i, ri) in rinv.iter_mut().enumerate() {
            let inv = self.inv[i];
            if self.full {
                let (mut mr, mut mxr) = (0.0, 0.0);
                for k in 0..m {
                    let p = self.at(i, k);
                    mr += rx[p];
                    mxr += self.xhat[p] * rx[p];
                }
                mr *= inv_m;
                mxr *= inv_m;
                *ri = -inv * inv * mxr;
                for k in 0..m {
                    let p = self.at(i, k);
                    rxhat[p] = inv * (rx[p] - mr - self.xhat[p] * mxr);
                }
            } else {
                for k in 0..m {
                    let p = self.at(i, k);
                    rxhat[p] = inv * rx[p];
                }
            }
        }
        let mut ry = Mat::zeros(nr, nc);
        for i in 0..g {
            for k in 0..m {
                let p = self.at(i, k);
                let (ga, rga) = self.gamma_at(i, k);
                let rb = self.rbeta.map_or(0.0, |b| b[self.gi(b.len(), i, k)]);
                ry[p] = ga * rxhat[p] + rga * self.xhat[p] + rb;
            }
        }
        (rxhat, rinv, ry)
    }

    /// Backward pass and its tangent: from `dy`, `R{dy}` returns `(dx, R{dx})` and adds
    /// `R{dγ}`, `R{dβ}` into `hv_gamma`, `hv_beta`.
    fn backward(
        &self,
        rxhat: MatRef<'_, f64>,
        rinv: &[f64],
        dy: MatRef<'_, f64>,
        rdy: MatRef<'_, f64>,
        mut hv_gamma: Option<&mut [f64]>,
        mut hv_beta: Option<&mut [f64]>,
    ) -> (Mat<f64>, Mat<f64>) {
        let (g, m) = self.groups();
        let (nr, nc) = (self.xhat.nrows(), self.xhat.ncols());
        let mut dx = Mat::zeros(nr, nc);
        let mut rdx = Mat::zeros(nr, nc);
        let inv_m = 1.0 / m as f64;
        for i in 0..g {
            let inv = self.inv[i];
            let (mut mg, mut mgx, mut rmg, mut rmgx) = (0.0, 0.0, 0.0, 0.0);
            for k in 0..m {
                let p = self.at(i, k);
                let (ga, rga) = self.gamma_at(i, k);
                let gg = ga * dy[p];
                let rg = rga * dy[p] + ga * rdy[p];
                mg += gg;
                mgx += gg * self.xhat[p];
                rmg += rg;
                rmgx += rg * self.xhat[p] + gg * rxhat[p];
                if let Some(hg) = hv_gamma.as_deref_mut() {
                    hg[self.gi(hg.len(), i, k)] += rdy[p] * self.xhat[p] + dy[p] * rxhat[p];
                }
                if let Some(hb) = hv_beta.as_deref_mut() {
                    hb[self.gi(hb.len(), i, k)] += rdy[p];
                }
            }
            mg *= inv_m;
            mgx *= inv_m;
            rmg *= inv_m;
            rmgx *= inv_m;
            for k in 0..m {
                let p = self.at(i, k);
                let (ga, rga) = self.gamma_at(i, k);
                let gg = ga * dy[p];
                let rg = rga * dy[p] + ga * rdy[p];
                if self.full {
                    let core = gg - mg - self.xhat[p] * mgx;
                    dx[p] = inv * core;
                    rdx[p] =
                        rinv[i] * core + inv * (rg - rmg - rxhat[p] * mgx - self.xhat[p] * rmgx);
                } else {
                    dx[p] = inv * gg;
                    rdx[p] = inv * rg;
                }
            }
        }
        (dx, rdx)
    }
}

struct NormTangent {
    rxhat: Mat<f64>,
    rinv: Vec<f64>,
}

impl Mlp {
    fn norm_r<'a>(
        &'a self,
        params: &'a [f64],
        v: &'a [f64],
        l: usize,
        t: &'a NormTrace,
    ) -> NormR<'a> {
        let (axis, full) = match self.config().layers[l].norm {
            Normalization::BatchNorm(bn) => (
                Axis::Rows,
                t.from_batch && bn.stats_gradient == StatsGradient::Full,
            ),
            _ => (Axis::Cols, true),
        };
        let gb = self
            .layout()
            .find(ParamKind::Gain, l)
            .map(|b| b.range.clone());
        let sb = self
            .layout()
            .find(ParamKind::Shift, l)
            .map(|b| b.range.clone());
        NormR {
            axis,
            full,
            xhat: t.xhat.as_ref(),
            inv: &t.inv_std,
            gamma: gb.clone().map(|r| &params[r]),
            rgamma: gb.map(|r| &v[r]),
            rbeta: sb.map(|r| &v[r]),
        }
    }

    /// Exact Hessian-vector product `H v` of the mean loss on `(x, targets)` at `params`, given a
    /// forward pass `fwd` computed at `params` with `mode`. Writes into `hv`.
    pub(crate) fn hvp_impl(
        &self,
        params: &[f64],
        fwd: &Forward,
        targets: &Targets,
        v: &[f64],
        hv: &mut [f64],
    ) {
        self.hvp_capture(params, fwd, targets, v, hv, None);
    }

    /// As [`Mlp::hvp_impl`]; with `capture = Some((layer, unit, out))`, also writes the row
    /// `R{dL/dZ^layer}[unit, :]` into `out` (used for the exact `D` of Theorem 5).
    pub(crate) fn hvp_capture(
        &self,
        params: &[f64],
        fwd: &Forward,
        targets: &Targets,
        v: &[f64],
        hv: &mut [f64],
        mut capture: Option<(usize, usize, &mut [f64])>,
    ) {
        let nl = self.n_layers();
        let b = fwd.batch_size();
        hv.iter_mut().for_each(|a| *a = 0.0);
        let wv = |l: usize| -> MatRef<'_, f64> {
            let blk = &self.layout().blocks()[l];
            MatRef::from_row_major_slice(&v[blk.range.clone()], blk.shape.0, blk.shape.1)
        };
        let ww = |l: usize| -> MatRef<'_, f64> {
            let blk = &self.layout().blocks()[l];
            MatRef::from_row_major_slice(&params[blk.range.clone()], blk.shape.0, blk.shape.1)
        };
        // forward tangent
        let mut rh: Vec<Mat<f64>> = Vec::with_capacity(nl); // R{output of layer l}
        let mut ru: Vec<Mat<f64>> = Vec::with_capacity(nl); // R{activation input}
        let mut pre_t: Vec<Option<NormTangent>> = Vec::with_capacity(nl);
        let mut post_t: Vec<Option<NormTangent>> = Vec::with_capacity(nl);
        for l in 0..nl {
            let spec = self.config().layers[l];
            let t = &fwd.layers[l];
            let h = fwd.layer_input(l);
            let vb = self
                .layout()
                .find(ParamKind::Bias, l)
                .map(|blk| &v[blk.range.clone()])
                .unwrap_or(&[]);
            let mut rz = Mat::from_fn(spec.width, b, |r, _| vb[r]);
            product(rz.as_mut(), Accum::Add, wv(l), h, 1.0);
            if l > 0 {
                let rprev = &rh[l - 1];
                product(rz.as_mut(), Accum::Add, ww(l), rprev.as_ref(), 1.0);
            }
            let (u_t, pt) = match &t.pre {
                Some(tr) => {
                    let (rxhat, rinv, ry) = self.norm_r(params, v, l, tr).tangent(rz.as_ref());
                    (ry, Some(NormTangent { rxhat, rinv }))
                }
                None => (rz, None),
            };
            let u = t.activation_input();
            let act = spec.activation;
            let ra = if act == Activation::Identity {
                u_t.clone()
            } else {
                Mat::from_fn(u.nrows(), u.ncols(), |r, c| {
                    act.derivative(u[(r, c)]) * u_t[(r, c)]
                })
            };
            let (rout, qt) = match &t.post {
                Some(tr) => {
                    let (rxhat, rinv, ry) = self.norm_r(params, v, l, tr).tangent(ra.as_ref());
                    (ry, Some(NormTangent { rxhat, rinv }))
                }
                None => (ra, None),
            };
            rh.push(rout);
            ru.push(u_t);
            pre_t.push(pt);
            post_t.push(qt);
        }
        // loss gradient and its tangent
        let out = fwd.output();
        let loss = self.config().loss;
        let mut d = Mat::zeros(out.nrows(), out.ncols());
        loss.value_and_grad(out, targets, d.as_mut());
        let mut rd = Mat::zeros(out.nrows(), out.ncols());
        loss.grad_tangent(out, rh[nl - 1].as_ref(), rd.as_mut());
        // backward and its tangent
        for l in (0..nl).rev() {
            let spec = self.config().layers[l];
            let t = &fwd.layers[l];
            let gr = self
                .layout()
                .find(ParamKind::Gain, l)
                .map(|blk| blk.range.clone());
            let sr = self
                .layout()
                .find(ParamKind::Shift, l)
                .map(|blk| blk.range.clone());
            let norm_back =
                |tr: &NormTrace, tan: &NormTangent, d: &Mat<f64>, rd: &Mat<f64>, hv: &mut [f64]| {
                    let mut hg = gr.clone().map(|r| vec![0.0; r.len()]);
                    let mut hb = sr.clone().map(|r| vec![0.0; r.len()]);
                    let res = self.norm_r(params, v, l, tr).backward(
                        tan.rxhat.as_ref(),
                        &tan.rinv,
                        d.as_ref(),
                        rd.as_ref(),
                        hg.as_deref_mut(),
                        hb.as_deref_mut(),
                    );
                    if let (Some(r), Some(hg)) = (gr.clone(), hg) {
                        hv[r].iter_mut().zip(hg).for_each(|(a, b)| *a += b);
                    }
                    if let (Some(r), Some(hb)) = (sr.clone(), hb) {
                        hv[r].iter_mut().zip(hb).for_each(|(a, b)| *a += b);
                    }
                    res
                };
            if let (Some(tr), Some(tan)) = (&t.post, &post_t[l]) {
                let (nd, nrd) = norm_back(tr, tan, &d, &rd, hv);
                d = nd;
                rd = nrd;
            }
            let act = spec.activation;
            if act != Activation::Identity {
                let u = t.activation_input();
                let rul = &ru[l];
                for c in 0..d.ncols() {
                    for r in 0..d.nrows() {
                        let uu = u[(r, c)];
                        let s1 = act.derivative(uu);
                        rd[(r, c)] =
                            rd[(r, c)] * s1 + d[(r, c)] * act.second_derivative(uu) * rul[(r, c)];
                        d[(r, c)] *= s1;
                    }
                }
            }
            if let (Some(tr), Some(tan)) = (&t.pre, &pre_t[l]) {
                let (nd, nrd) = norm_back(tr, tan, &d, &rd, hv);
                d = nd;
                rd = nrd;
            }
            // d = dL/dZ, rd = R{dL/dZ}
            if let Some((cl, cu, out)) = capture.as_mut()
                && *cl == l
            {
                for (c, o) in out.iter_mut().enumerate() {
                    *o = rd[(*cu, c)];
                }
            }
            let h = fwd.layer_input(l);
            let wb = self.layout().blocks()[l].clone();
            {
                let mut hw = MatMut::from_row_major_slice_mut(
                    &mut hv[wb.range.clone()],
                    wb.shape.0,
                    wb.shape.1,
                );
                product(hw.as_mut(), Accum::Replace, rd.as_ref(), h.transpose(), 1.0);
                if l > 0 {
                    product(
                        hw.as_mut(),
                        Accum::Add,
                        d.as_ref(),
                        rh[l - 1].as_ref().transpose(),
                        1.0,
                    );
                }
            }
            if let Some(bb) = self.layout().find(ParamKind::Bias, l) {
                let hb = &mut hv[bb.range.clone()];
                for c in 0..rd.ncols() {
                    for (r, a) in hb.iter_mut().enumerate() {
                        *a += rd[(r, c)];
                    }
                }
            }
            if l > 0 {
                let w = ww(l);
                let mut nd = Mat::zeros(w.ncols(), b);
                product(nd.as_mut(), Accum::Replace, w.transpose(), d.as_ref(), 1.0);
                let mut nrd = Mat::zeros(w.ncols(), b);
                product(
                    nrd.as_mut(),
                    Accum::Replace,
                    wv(l).transpose(),
                    d.as_ref(),
                    1.0,
                );
                product(nrd.as_mut(), Accum::Add, w.transpose(), rd.as_ref(), 1.0);
                d = nd;
                rd = nrd;
            }
        }
    }

    /// Exact Hessian-vector product (Pearlmutter's R-operator) of the mean loss (15) on
    /// `(x, targets)` at `params`: writes `H v` into `hv`. BatchNorm statistics follow `mode`
    /// ([`Mode::Train`]: batch statistics, differentiated through for layers with
    /// [`StatsGradient::Full`] and held constant for [`StatsGradient::Constant`] layers, matching
    /// [`Mlp::backward`]). Cost: about two forward and two backward passes.
    ///
    /// # Errors
    /// Invalid parameters, input, targets or buffer lengths.
    pub fn hessian_vector_product(
        &self,
        params: &[f64],
        x: MatRef<'_, f64>,
        targets: &Targets,
        mode: Mode<'_>,
        v: &[f64],
        hv: &mut [f64],
    ) -> Result<()> {
        let n = self.layout().len();
        for (what, len) in [
            ("direction v length", v.len()),
            ("output hv length", hv.len()),
        ] {
            if len != n {
                return Err(NnError::DimensionMismatch {
                    what,
                    expected: n,
                    got: len,
                });
            }
        }
        check_finite_vec("direction v", v)?;
        self.config()
            .loss
            .check_targets(targets, self.n_outputs(), x.ncols())?;
        let fwd = self.forward(params, x, mode)?;
        self.hvp_impl(params, &fwd, targets, v, hv);
        Ok(())
    }
}
