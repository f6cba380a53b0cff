//! What experiments 11 and 12 share: the digits MLP trained by per-element and matrix
//! optimizers, and `κ(P^{1/2} G P^{1/2})` of a hidden layer's curvature block under each
//! optimizer's current preconditioner (THEORY.md §7).
//!
//! The network is 64-16-16-10 (tanh, softmax cross-entropy). The measured block is the
//! hidden-to-hidden weight `W¹` (16 × 16, row-major `vec`). Its curvature is the Gauss–Newton
//! block `G = (1/N) Σ_n B_n ⊗ a_n a_nᵀ` with `a_n = h¹_n` (the layer's input),
//! `B_n = D_n W²ᵀ (diag(p_n) − p_n p_nᵀ) W² D_n`, `D_n = diag(1 − (h²_n)²)`: the positive
//! semidefinite part of the Hessian block (exact Jacobians, the softmax's Hessian), which the
//! Kronecker preconditioners approximate; the full Hessian block adds a residual term that is
//! indefinite away from a minimum, where `κ` is not defined. `N` = 256 training samples.
//!
//! Preconditioners: Adam's `diag(1/(sqrt(v̂)+eps))` of the block; Muon's `M ⊗ I` (`M` the
//! Newton–Schulz factor of the momentum buffer, square layer); Shampoo's `L̃ ⊗ R̃`; SOAP's
//! `(Q_L ⊗ Q_R) diag(d) (Q_L ⊗ Q_R)ᵀ` (formed densely: 256 × 256).

use faer::Mat;
use precond_linalg::{
    Layout, kron_precond_cond, mat_from_slice, precond_cond_dense, precond_cond_diag, sym_cond,
};
use precond_nn::{Activation, Dataset, Loss, Mlp, MlpConfig, Mode, Normalization, TrainConfig};
use precond_optim::{Optimizer, OptimizerConfig};
use serde_json::{Value, json};

use super::common::lerr;
use crate::error::CliError;
use crate::report::Ctx;

/// Hidden width; the measured block is `WIDTH × WIDTH`.
pub const WIDTH: usize = 16;
/// The measured layer (0-based): hidden to hidden.
pub const LAYER: usize = 1;

/// An optimizer of the comparison: its name and how its JSON config is built from the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Adam on everything.
    Adam,
    /// Muon on the hidden weight matrices, AdamW (no decay) on the rest.
    Muon,
    /// Shampoo (Adam grafting) on every weight matrix, Adam on the biases.
    Shampoo,
    /// SOAP on every weight matrix, Adam on the biases.
    Soap,
}

impl Method {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Adam => "Adam",
            Method::Muon => "Muon (+ AdamW)",
            Method::Shampoo => "Shampoo (+ Adam)",
            Method::Soap => "SOAP (+ Adam)",
        }
    }

    /// The JSON configuration over `mlp`'s parameter layout.
    pub fn config(self, mlp: &Mlp) -> Value {
        let weights: Vec<_> = mlp
            .layout()
            .blocks()
            .iter()
            .filter(|b| b.kind == precond_nn::ParamKind::Weight)
            .cloned()
            .collect();
        let group = |b: &precond_nn::ParamBlock, own: Value| {
            let mut g = json!({
                "start": b.range.start,
                "end": b.range.end,
                "shape": [b.shape.0, b.shape.1],
            });
            if let (Value::Object(m), Value::Object(o)) = (&mut g, own) {
                m.extend(o);
            }
            g
        };
        match self {
            Method::Adam => json!({"optimizer": "adam", "lr": 3e-3}),
            Method::Muon => json!({
                "optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.0,
                "groups": weights.iter().filter(|b| b.layer + 1 < mlp.n_layers()).map(|b| group(b,
                    json!({"optimizer": "muon", "lr": 0.02, "weight_decay": 0.0}))).collect::<Vec<_>>(),
            }),
            Method::Shampoo => json!({
                "optimizer": "adam", "lr": 3e-3,
                "groups": weights.iter().map(|b| group(b, json!({
                    "optimizer": "shampoo", "lr": 3e-3, "betas": [0.9, 0.999], "epsilon": 1e-12,
                    "grafting": {"type": "adam", "beta2": 0.999, "epsilon": 1e-8},
                }))).collect::<Vec<_>>(),
            }),
            Method::Soap => json!({
                "optimizer": "adam", "lr": 3e-3,
                "groups": weights.iter().map(|b| group(b, json!({
                    "optimizer": "soap", "lr": 3e-3, "weight_decay": 0.0,
                }))).collect::<Vec<_>>(),
            }),
        }
    }
}

/// One training run: losses per epoch and `κ` of the measured block at the checkpoints.
pub struct Run {
    /// The method.
    pub method: Method,
    /// Epoch numbers (1-based) and the training loss after each.
    pub epochs: Vec<f64>,
    /// Training loss (full training set, inference mode) after each epoch.
    pub train_loss: Vec<f64>,
    /// Final test accuracy.
    pub test_accuracy: f64,
    /// Checkpoint epochs.
    pub checkpoints: Vec<f64>,
    /// `κ(G)` of the Gauss–Newton block at each checkpoint.
    pub kappa_plain: Vec<f64>,
    /// `κ(P^{1/2} G P^{1/2})` at each checkpoint.
    pub kappa_precond: Vec<f64>,
}

/// The network of both experiments.
pub fn network() -> MlpConfig {
    MlpConfig::feedforward(
        64,
        &[WIDTH, WIDTH],
        Activation::Tanh,
        Normalization::None,
        10,
        Loss::SoftmaxCrossEntropy,
    )
}

/// Trains with `method` on `train` and measures at `n_checks` equally spaced checkpoints.
pub fn run(
    id: &'static str,
    ctx: &Ctx,
    method: Method,
    train: &Dataset,
    test: &Dataset,
    epochs: usize,
    n_checks: usize,
) -> Result<Run, CliError> {
    let mut mlp = Mlp::new(network()).map_err(lerr(id))?;
    let mut params = mlp.init_params(ctx.seed);
    let cfg = OptimizerConfig::from_value(&method.config(&mlp)).map_err(lerr(id))?;
    let mut opt = cfg.build(params.len()).map_err(lerr(id))?;
    let n_sub = 256.min(train.x.ncols());
    let sub = precond_nn::data::gather_columns(train.x.as_ref(), &(0..n_sub).collect::<Vec<_>>());
    let chunk = epochs.div_ceil(n_checks).max(1);
    let mut out = Run {
        method,
        epochs: Vec::new(),
        train_loss: Vec::new(),
        test_accuracy: f64::NAN,
        checkpoints: Vec::new(),
        kappa_plain: Vec::new(),
        kappa_precond: Vec::new(),
    };
    let mut done = 0;
    let mut c = 0u64;
    while done < epochs {
        let e = chunk.min(epochs - done);
        let tc = TrainConfig {
            epochs: e,
            batch_size: 64,
            seed: ctx.seed.wrapping_add(c),
            ..Default::default()
        };
        let hist = precond_nn::train(
            &mut mlp,
            &mut params,
            &mut opt,
            train,
            Some(test),
            &tc,
            |_| precond_nn::Control::Continue,
        )
        .map_err(lerr(id))?;
        for r in hist.epochs.iter().filter(|r| r.epoch > 0) {
            out.epochs.push((done + r.epoch) as f64);
            out.train_loss.push(r.train_loss);
            out.test_accuracy = r.test_accuracy.unwrap_or(f64::NAN);
        }
        done += e;
        c += 1;
        let g = gauss_newton_block(id, &mlp, &params, &sub)?;
        out.checkpoints.push(done as f64);
        out.kappa_plain
            .push(sym_cond(g.as_ref()).map_err(lerr(id))?);
        out.kappa_precond
            .push(preconditioned_kappa(id, &mlp, &opt, method, &g)?);
    }
    Ok(out)
}

/// The Gauss–Newton block of `W¹` on the samples `x` (module docs), `256 × 256`, row-major vec.
pub fn gauss_newton_block(
    id: &'static str,
    mlp: &Mlp,
    params: &[f64],
    x: &Mat<f64>,
) -> Result<Mat<f64>, CliError> {
    let fwd = mlp
        .forward(params, x.as_ref(), Mode::Eval)
        .map_err(lerr(id))?;
    let a = fwd.layer_input(LAYER);
    let h2 = fwd.layers()[LAYER].output();
    let logits = fwd.output();
    let out_w = mlp
        .layout()
        .find(precond_nn::ParamKind::Weight, LAYER + 1)
        .ok_or_else(|| CliError::Experiment {
            id: id.into(),
            message: "no output weight".into(),
        })?;
    let (k, w) = out_w.shape;
    let w2 = &params[out_w.range.clone()];
    let (m, d) = (WIDTH, a.nrows());
    let n = x.ncols();
    let mut g = Mat::<f64>::zeros(m * d, m * d);
    let mut v = vec![0.0; k * w];
    let mut b = vec![0.0; m * m];
    let mut p = vec![0.0; k];
    for s in 0..n {
        // softmax of the logits
        let mx = (0..k)
            .map(|r| logits[(r, s)])
            .fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = (0..k).map(|r| (logits[(r, s)] - mx).exp()).sum();
        for (r, pr) in p.iter_mut().enumerate() {
            *pr = (logits[(r, s)] - mx).exp() / z;
        }
        // V = W² D
        for r in 0..k {
            for i in 0..w {
                let t = h2[(i, s)];
                v[r * w + i] = w2[r * w + i] * (1.0 - t * t);
            }
        }
        // B = Vᵀ diag(p) V − (Vᵀp)(Vᵀp)ᵀ
        let vp: Vec<f64> = (0..w)
            .map(|i| (0..k).map(|r| v[r * w + i] * p[r]).sum())
            .collect();
        for i in 0..m {
            for j in 0..m {
                b[i * m + j] = (0..k)
                    .map(|r| v[r * w + i] * p[r] * v[r * w + j])
                    .sum::<f64>()
                    - vp[i] * vp[j];
            }
        }
        for i in 0..m {
            for i2 in 0..m {
                let bij = b[i * m + i2] / n as f64;
                for j in 0..d {
                    let aj = bij * a[(j, s)];
                    for j2 in 0..d {
                        g[(i * d + j, i2 * d + j2)] += aj * a[(j2, s)];
                    }
                }
            }
        }
    }
    Ok(Mat::from_fn(m * d, m * d, |r, c| {
        0.5 * (g[(r, c)] + g[(c, r)])
    }))
}

fn group_of_layer(mlp: &Mlp, opt: &Optimizer) -> Option<usize> {
    let range = mlp
        .layout()
        .find(precond_nn::ParamKind::Weight, LAYER)?
        .range
        .clone();
    opt.config()
        .groups
        .iter()
        .position(|g| g.start == range.start && g.end == range.end)
}

/// `κ(P^{1/2} G P^{1/2})` under the optimizer's current preconditioner of the block.
pub fn preconditioned_kappa(
    id: &'static str,
    mlp: &Mlp,
    opt: &Optimizer,
    method: Method,
    g: &Mat<f64>,
) -> Result<f64, CliError> {
    let blk = mlp
        .layout()
        .find(precond_nn::ParamKind::Weight, LAYER)
        .ok_or_else(|| CliError::Experiment {
            id: id.into(),
            message: "no hidden weight".into(),
        })?
        .clone();
    let (m, d) = blk.shape;
    let missing = |what: &str| CliError::Experiment {
        id: id.into(),
        message: format!("{} has no {what}", method.name()),
    };
    let mat = |v: &Option<Vec<f64>>, n: usize, what: &str| -> Result<Mat<f64>, CliError> {
        let v = v.as_ref().ok_or_else(|| missing(what))?;
        mat_from_slice(v, n, n, Layout::RowMajor).map_err(lerr(id))
    };
    let r = match method {
        Method::Adam => {
            let mut p = vec![0.0; opt.n_params()];
            opt.preconditioner(&mut p).map_err(lerr(id))?;
            precond_cond_diag(g.as_ref(), &p[blk.range.clone()]).map_err(lerr(id))?
        }
        Method::Muon | Method::Shampoo => {
            let gi = group_of_layer(mlp, opt).ok_or_else(|| missing("group"))?;
            let mp = opt.matrix_preconditioner(Some(gi)).map_err(lerr(id))?;
            let b = &mp.blocks[0];
            let l = match &b.left {
                Some(_) => mat(&b.left, m, "left factor")?,
                None => Mat::identity(m, m),
            };
            let r = match &b.right {
                Some(_) => mat(&b.right, d, "right factor")?,
                None => Mat::identity(d, d),
            };
            kron_precond_cond(g.as_ref(), l.as_ref(), r.as_ref(), Layout::RowMajor)
                .map_err(lerr(id))?
        }
        Method::Soap => {
            let gi = group_of_layer(mlp, opt).ok_or_else(|| missing("group"))?;
            let mp = opt.matrix_preconditioner(Some(gi)).map_err(lerr(id))?;
            let b = &mp.blocks[0];
            let ql = match &b.left_basis {
                Some(_) => mat(&b.left_basis, m, "left basis")?,
                None => Mat::identity(m, m),
            };
            let qr = match &b.right_basis {
                Some(_) => mat(&b.right_basis, d, "right basis")?,
                None => Mat::identity(d, d),
            };
            let dg = b.diagonal.as_ref().ok_or_else(|| missing("diagonal"))?;
            // Q = Q_L ⊗ Q_R (row-major vec), P = Q diag(d) Qᵀ
            let n = m * d;
            let q = Mat::from_fn(n, n, |r, c| ql[(r / d, c / d)] * qr[(r % d, c % d)]);
            let qd = Mat::from_fn(n, n, |r, c| q[(r, c)] * dg[c]);
            let p = &qd * q.transpose();
            let p = Mat::from_fn(n, n, |r, c| 0.5 * (p[(r, c)] + p[(c, r)]));
            precond_cond_dense(g.as_ref(), p.as_ref()).map_err(lerr(id))?
        }
    };
    Ok(r.spectral_kappa)
}
