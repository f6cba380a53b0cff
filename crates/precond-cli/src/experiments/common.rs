//! Small helpers the experiments share: seeded random matrices and dense mat-vec products.

use faer::Mat;
use rand::Rng;
use rand_distr::StandardNormal;

use crate::error::{Cause, CliError, Context};
use precond_optim::experiment::{LogisticRegression, Quadratic};

/// Maps a library error into the experiment's error (keeping it as the source).
pub fn lerr<E: Cause>(id: &'static str) -> impl Fn(E) -> CliError {
    move |e| e.within(Context::Experiment(id.into()))
}

/// A vector of standard normal samples.
pub fn gaussian_vec(rng: &mut impl Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.sample(StandardNormal)).collect()
}

/// A Haar-like random orthogonal matrix: the Q factor of a Gaussian matrix.
pub fn random_orthogonal(rng: &mut impl Rng, n: usize) -> Mat<f64> {
    let g = Mat::from_fn(n, n, |_, _| rng.sample::<f64, _>(StandardNormal));
    g.qr().compute_Q()
}

/// The symmetric matrix `Q diag(lambda) Qᵀ` for a random orthogonal `Q` (exactly symmetrized).
pub fn sym_with_spectrum(rng: &mut impl Rng, lambda: &[f64]) -> Mat<f64> {
    let n = lambda.len();
    let q = random_orthogonal(rng, n);
    let a = Mat::from_fn(n, n, |i, j| {
        (0..n)
            .map(|k| q[(i, k)] * lambda[k] * q[(j, k)])
            .sum::<f64>()
    });
    Mat::from_fn(n, n, |i, j| 0.5 * (a[(i, j)] + a[(j, i)]))
}

/// `n` values log-spaced from `lo` to `hi` (inclusive).
pub fn logspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![lo];
    }
    let (a, b) = (lo.ln(), hi.ln());
    (0..n)
        .map(|k| (a + (b - a) * k as f64 / (n - 1) as f64).exp())
        .collect()
}

/// `y = A x` for a dense matrix (column-major loops; `A` is small in the experiments).
pub fn matvec(a: &Mat<f64>, x: &[f64], y: &mut [f64]) {
    y.iter_mut().for_each(|v| *v = 0.0);
    for (j, &xj) in x.iter().enumerate() {
        let c = a.col_as_slice(j);
        for (yi, &aij) in y.iter_mut().zip(c) {
            *yi += aij * xj;
        }
    }
}

/// `y = Aᵀ x`.
pub fn matvec_t(a: &Mat<f64>, x: &[f64], y: &mut [f64]) {
    for (j, yj) in y.iter_mut().enumerate() {
        *yj = a.col_as_slice(j).iter().zip(x).map(|(a, b)| a * b).sum();
    }
}

/// Euclidean norm.
pub fn norm(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// At most `max` indices of `0..len`, always including the first and last, evenly spaced.
pub fn subsample(len: usize, max: usize) -> Vec<usize> {
    if len <= max {
        return (0..len).collect();
    }
    let mut v: Vec<usize> = (0..max).map(|k| k * (len - 1) / (max - 1)).collect();
    v.dedup();
    v
}

/// `(x, y)` of a sequence at [`subsample`]d indices, as plot coordinates.
pub fn curve(seq: &[f64], max: usize) -> (Vec<f64>, Vec<f64>) {
    let idx = subsample(seq.len(), max);
    (
        idx.iter().map(|&k| k as f64).collect(),
        idx.iter().map(|&k| seq[k]).collect(),
    )
}

/// Pearson correlation of two equally long slices.
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let ma = a.iter().sum::<f64>() / n;
    let mb = b.iter().sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

/// The row-major `N × d` sample matrix of a `d × N` feature matrix (one column per sample), with
/// a trailing column of ones when `intercept`.
pub fn samples_row_major(x: &Mat<f64>, intercept: bool) -> Vec<f64> {
    let (d, n) = (x.nrows(), x.ncols());
    let w = d + usize::from(intercept);
    let mut out = Vec::with_capacity(n * w);
    for c in 0..n {
        for r in 0..d {
            out.push(x[(r, c)]);
        }
        if intercept {
            out.push(1.0);
        }
    }
    out
}

/// A faer matrix from a row-major `n × n` slice.
pub fn square_from_row_major(h: &[f64], n: usize) -> Mat<f64> {
    Mat::from_fn(n, n, |i, j| h[i * n + j])
}

/// Binary labels as 0/1 floats (class labels of a two-class data set, or values as given).
pub fn labels_f64(t: &precond_nn::Targets) -> Vec<f64> {
    match t {
        precond_nn::Targets::Classes { labels, .. } => labels.iter().map(|&l| l as f64).collect(),
        precond_nn::Targets::Values(v) => (0..v.ncols()).map(|c| v[(0, c)]).collect(),
    }
}

/// Drops features (rows) that are constant over the samples.
pub fn drop_constant_rows(x: &Mat<f64>) -> Mat<f64> {
    let keep: Vec<usize> = (0..x.nrows())
        .filter(|&r| {
            let first = x[(r, 0)];
            (0..x.ncols()).any(|c| (x[(r, c)] - first).abs() > 0.0)
        })
        .collect();
    Mat::from_fn(keep.len(), x.ncols(), |i, c| x[(keep[i], c)])
}

/// Runs `steps` full-batch steps of the optimizer `cfg` on `obj` from `x` (updated in place),
/// returning the objective value at every iterate (`steps + 1` entries; fewer if it became
/// non-finite) and the optimizer (for its final `P_k`). `on_step(k, x_k)` sees every iterate.
pub fn optimize(
    id: &'static str,
    obj: &dyn precond_optim::experiment::Objective,
    cfg: &precond_optim::OptimizerConfig,
    x: &mut [f64],
    steps: usize,
    on_step: &mut dyn FnMut(usize, &[f64]),
) -> Result<(Vec<f64>, precond_optim::Optimizer), CliError> {
    let n = obj.dim();
    let mut opt = cfg.build(n).map_err(lerr(id))?;
    let mut g = vec![0.0; n];
    let mut loss = Vec::with_capacity(steps + 1);
    for k in 0..=steps {
        let f = obj.value_grad(x, &mut g);
        loss.push(f);
        on_step(k, x);
        if !f.is_finite() || k == steps {
            break;
        }
        opt.step_f64(x, &g).map_err(lerr(id))?;
    }
    Ok((loss, opt))
}

/// Symmetric matrix `diag(s) H diag(s) + λ·diag(t)` (`t` = ones or `s²`), for Theorem 3.
pub fn scaled_plus(h: &Mat<f64>, s: &[f64], lambda: f64, t: &[f64]) -> Mat<f64> {
    let n = s.len();
    Mat::from_fn(n, n, |i, j| {
        s[i] * h[(i, j)] * s[j] + if i == j { lambda * t[i] } else { 0.0 }
    })
}

/// Builds, initializes (seeded) and trains an MLP with `precond_nn::train`.
pub fn fit_mlp(
    id: &'static str,
    config: precond_nn::MlpConfig,
    optimizer: &precond_optim::OptimizerConfig,
    train_set: &precond_nn::Dataset,
    test_set: Option<&precond_nn::Dataset>,
    train_config: &precond_nn::TrainConfig,
) -> Result<(precond_nn::Mlp, Vec<f64>, precond_nn::History), CliError> {
    let mut mlp = precond_nn::Mlp::new(config).map_err(lerr(id))?;
    let mut params = mlp.init_params(train_config.seed);
    let mut opt = optimizer.build(params.len()).map_err(lerr(id))?;
    let hist = precond_nn::train(
        &mut mlp,
        &mut params,
        &mut opt,
        train_set,
        test_set,
        train_config,
        |_| precond_nn::Control::Continue,
    )
    .map_err(lerr(id))?;
    Ok((mlp, params, hist))
}

/// A data set with its features replaced by the min-max transform fitted on `fit_on`.
pub fn min_max_like(
    ds: &precond_nn::Dataset,
    fit_on: &precond_nn::Dataset,
) -> Result<precond_nn::Dataset, CliError> {
    let t = precond_nn::InputTransform::fit(fit_on.x.as_ref(), precond_nn::InputScaling::MinMax)
        .map_err(lerr("data"))?;
    ds.map_features(|x| t.apply(x)).map_err(lerr("data"))
}

/// `digits` split 75/25 with the experiment's seed, min-max scaled with the training set's
/// ranges; `--quick` keeps the first 400 training samples (the BatchNorm and LayerNorm experiments).
pub fn digits_split(
    ctx: &crate::report::Ctx,
    id: &'static str,
) -> Result<(precond_nn::Dataset, precond_nn::Dataset), CliError> {
    let ds = precond_nn::Dataset::builtin("digits").map_err(lerr(id))?;
    let (train, test) = ds.split(0.25, ctx.seed).map_err(lerr(id))?;
    let (train, test) = (min_max_like(&train, &train)?, min_max_like(&test, &train)?);
    let train = if ctx.quick {
        train
            .subset(&(0..400).collect::<Vec<_>>())
            .map_err(lerr(id))?
    } else {
        train
    };
    Ok((train, test))
}

/// Appends `[name, final train loss, final test accuracy]` (the last epoch of `hist`) to a
/// "Final metrics" table.
pub fn final_metrics_row(
    id: &'static str,
    name: &str,
    hist: &precond_nn::History,
    summary: &mut crate::report::Table,
) -> Result<(), CliError> {
    let last = hist.last().ok_or_else(|| CliError::Experiment {
        id: id.into(),
        message: "empty history".into(),
    })?;
    summary.row(vec![
        name.into(),
        last.train_loss.into(),
        last.test_accuracy.unwrap_or(f64::NAN).into(),
    ]);
    Ok(())
}

/// The two problems of experiments 4 and 15: the badly scaled quadratic `½(x − x*)ᵀH(x − x*)`,
/// `H = D M D` (`n × n`, `M` with spectrum `logspace(1, 10)` in a random basis, `D` diagonal
/// with entries `10^U(−1.5, 1.5)`, `x*` Gaussian), and logistic regression on the raw
/// breast_cancer features (intercept, no penalty). Returns `(H, the quadratic, the logistic
/// regression)`; `rng` is advanced the same way for every caller.
pub fn scaled_problems(
    rng: &mut impl Rng,
    n: usize,
    id: &'static str,
) -> Result<(Mat<f64>, Quadratic, LogisticRegression), CliError> {
    let m = sym_with_spectrum(rng, &logspace(1.0, 10.0, n));
    let d: Vec<f64> = (0..n)
        .map(|_| 10f64.powf(rng.random_range(-1.5..1.5)))
        .collect();
    let h = Mat::from_fn(n, n, |i, j| d[i] * m[(i, j)] * d[j]);
    let x_star = gaussian_vec(rng, n);
    let hv: Vec<f64> = (0..n * n).map(|k| h[(k / n, k % n)]).collect();
    let quad = Quadratic::new(hv, x_star).map_err(lerr(id))?;
    let ds = precond_nn::Dataset::builtin("breast_cancer").map_err(lerr(id))?;
    let y = labels_f64(&ds.targets);
    let logit =
        LogisticRegression::new(samples_row_major(&ds.x, false), y, ds.x.nrows(), true, 0.0)
            .map_err(lerr(id))?;
    Ok((h, quad, logit))
}
