//! `precond train`: train a model on a bundled data set or a CSV file with any optimizer the
//! library takes, with the normalizations of THEORY.md §6.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use precond_nn::data::{CsvHeader, CsvOptions};
use precond_nn::{
    Activation, BUILTIN_DATASETS, BatchNormSpec, Dataset, InputScaling, InputTransform,
    LayerNormSpec, Loss, MlpConfig, Normalization, Targets, TrainConfig,
};
use precond_optim::OptimizerConfig;
use serde::Serialize;

use crate::error::{Cause, CliError, Context};
use crate::report::{Plot, Series, SeriesKind, render_svg};

/// The model to train.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Model {
    /// Logistic (binary) or softmax (multi-class) regression: no hidden layer.
    LogReg,
    /// Linear least squares regression.
    LinReg,
    /// A multilayer perceptron with these hidden widths.
    Mlp(Vec<usize>),
}

impl std::str::FromStr for Model {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "logreg" => Ok(Model::LogReg),
            "linreg" => Ok(Model::LinReg),
            _ => {
                let rest = s.strip_prefix("mlp:").ok_or_else(|| format!("unknown model '{s}': expected logreg, linreg or mlp:W1,W2,... (e.g. mlp:64,64)"))?;
                let widths = rest
                    .split(',')
                    .map(|w| w.trim().parse::<usize>().ok().filter(|&w| w > 0))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("bad hidden widths '{rest}' in '{s}': expected positive integers separated by commas"))?;
                Ok(Model::Mlp(widths))
            }
        }
    }
}

/// The normalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// Raw inputs.
    None,
    /// Inputs standardized with the training set's mean and population standard deviation.
    Standardize,
    /// Inputs min-max scaled to [0, 1] on the training set.
    Minmax,
    /// Standardized inputs and post-activation BatchNorm in every hidden layer (needs mlp).
    Batchnorm,
    /// Standardized inputs and post-activation LayerNorm in every hidden layer (needs mlp).
    Layernorm,
    /// Batch Normalization Preconditioning: raw inputs and an unnormalized network, every
    /// layer's gradient preconditioned by its input's running statistics (any model; on
    /// logreg/linreg it is preconditioned regression). Any batch size, 1 included.
    Bnp,
}

/// Everything `precond train` needs.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// A bundled data set name or a CSV path.
    pub data: String,
    /// The target column of a CSV file.
    pub target: Option<String>,
    /// The model (default: logreg for class labels, linreg for real targets).
    pub model: Option<Model>,
    /// The normalization.
    pub norm: Norm,
    /// Hidden activation of an MLP.
    pub activation: Activation,
    /// The optimizer configuration (the library's and the C ABI's JSON).
    pub optimizer: OptimizerConfig,
    /// Epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Seed of the split, the initialization and the shuffling.
    pub seed: u64,
    /// Fraction of the samples held out for testing.
    pub test_fraction: f64,
    /// Output directory for `history.json` and the SVG curves.
    pub out: PathBuf,
    /// The header rule of a CSV file (`--header`, `--no-header`; default guessed).
    pub header: CsvHeader,
    /// The largest hidden width accepted (`--max-width`).
    pub max_width: usize,
    /// The most classes accepted, counted from the labels as `max label + 1` (`--max-classes`).
    pub max_classes: usize,
    /// The most bytes read from a CSV data file (`--max-bytes`, default
    /// [`crate::io::DEFAULT_MAX_BYTES`]).
    pub max_bytes: u64,
}

/// The default of `--max-width`: the largest hidden width of a model.
pub const DEFAULT_MAX_WIDTH: usize = 65_536;

/// The default of `--max-classes`: the most classes (`max label + 1`) of a data set.
pub const DEFAULT_MAX_CLASSES: usize = 65_536;

/// What `history.json` holds.
#[derive(Debug, Serialize)]
pub struct TrainOutput {
    /// Data set name.
    pub data: String,
    /// Model description.
    pub model: String,
    /// Normalization.
    pub norm: Norm,
    /// The optimizer configuration as JSON.
    pub optimizer: serde_json::Value,
    /// Training and test sample counts.
    pub n_train: usize,
    /// Test samples.
    pub n_test: usize,
    /// One record per epoch (epoch 0 = before training).
    pub epochs: Vec<precond_nn::EpochRecord>,
}

/// A data set that could not be loaded: an input error, named by the `--data` value.
fn input_err(data: &str) -> impl FnOnce(precond_nn::NnError) -> CliError + '_ {
    move |e| e.within(Context::Input(data.to_string()))
}

/// A failure of the input transform on loaded data: a runtime error of the command.
fn nerr(e: precond_nn::NnError) -> CliError {
    e.within(Context::Experiment("train".into()))
}

fn load(opts: &TrainOptions) -> Result<Dataset, CliError> {
    if BUILTIN_DATASETS.contains(&opts.data.as_str()) {
        if opts.target.is_some() {
            return Err(CliError::Argument {
                arg: "--target",
                message: format!(
                    "'{}' is a bundled data set with its own target; --target is for CSV files",
                    opts.data
                ),
            });
        }
        return Dataset::builtin(&opts.data).map_err(input_err(&opts.data));
    }
    let target = opts.target.as_deref().ok_or_else(|| CliError::Argument {
        arg: "--target",
        message: format!("'{}' is not a bundled data set ({}), so it is read as a CSV file and needs --target COLUMN", opts.data, BUILTIN_DATASETS.join(", ")),
    })?;
    let csv = CsvOptions {
        header: opts.header,
        ..CsvOptions::default()
    };
    // at most --max-bytes, regular files or - only, refused before anything is parsed
    let bytes = crate::io::read_bytes_capped(Path::new(&opts.data), opts.max_bytes, "train")
        .map_err(|source| CliError::Read {
            path: opts.data.clone(),
            source,
        })?;
    let text = String::from_utf8(bytes).map_err(|e| CliError::Argument {
        arg: "--data",
        message: format!(
            "{}: not UTF-8 text (byte {} is not valid UTF-8)",
            opts.data,
            e.utf8_error().valid_up_to()
        ),
    })?;
    let p = Path::new(&opts.data);
    let name = p
        .file_stem()
        .map_or_else(|| opts.data.clone(), |s| s.to_string_lossy().into_owned());
    Dataset::from_csv_str_with(&name, &text, target, &csv).map_err(input_err(&opts.data))
}

/// Trains as `opts` says, writes `history.json`, `loss.svg` and (for classification)
/// `accuracy.svg` into `opts.out`, and returns the output and a short text summary.
///
/// # Errors
/// [`CliError::Argument`] for an unusable combination (e.g. batchnorm without an MLP, logreg on
/// real targets), [`CliError::Write`] for output files.
pub fn run_train(opts: &TrainOptions, progress: bool) -> Result<(TrainOutput, String), CliError> {
    // the caps are checked before the data is read and before anything is sized by them
    if let Some(Model::Mlp(widths)) = &opts.model
        && let Some((k, &w)) = widths
            .iter()
            .enumerate()
            .find(|&(_, &w)| w > opts.max_width)
    {
        return Err(CliError::Argument {
            arg: "--model",
            message: format!(
                "hidden width {w} (layer {}) is larger than the cap {} set by --max-width",
                k + 1,
                opts.max_width
            ),
        });
    }
    let ds = load(opts)?;
    let classes = matches!(ds.targets, Targets::Classes { .. });
    let model = opts.model.clone().unwrap_or(if classes {
        Model::LogReg
    } else {
        Model::LinReg
    });
    let ds = match model {
        Model::LogReg if !classes => {
            ds.into_classes()
                .map_err(CliError::within(Context::Argument {
                    arg: "--model",
                    need: Some("logreg needs class labels"),
                }))?
        }
        _ => ds,
    };
    let n_classes = match &ds.targets {
        Targets::Classes { n_classes, .. } => Some(*n_classes),
        Targets::Values(_) => None,
    };
    if let Some(k) = n_classes
        && k > opts.max_classes
    {
        return Err(CliError::Limit {
            what: format!(
                "the number of classes of '{}' (largest label {})",
                ds.name,
                k - 1
            ),
            value: k,
            limit: opts.max_classes,
            option: "--max-classes",
        });
    }
    if model == Model::LinReg && n_classes.is_some() {
        return Err(CliError::Argument {
            arg: "--model",
            message: format!(
                "linreg needs a real-valued target, '{}' has class labels: use logreg or mlp",
                ds.name
            ),
        });
    }
    let (train_set, test_set) = ds
        .split(opts.test_fraction, opts.seed)
        .map_err(CliError::within(Context::argument("--test-fraction")))?;
    let scaling = match opts.norm {
        Norm::None | Norm::Bnp => None,
        Norm::Minmax => Some(InputScaling::MinMax),
        Norm::Standardize | Norm::Batchnorm | Norm::Layernorm => Some(InputScaling::Standardize),
    };
    let (train_set, test_set) = match scaling {
        None => (train_set, test_set),
        Some(k) => {
            let t = InputTransform::fit(train_set.x.as_ref(), k).map_err(nerr)?;
            (
                train_set.map_features(|x| t.apply(x)).map_err(nerr)?,
                test_set.map_features(|x| t.apply(x)).map_err(nerr)?,
            )
        }
    };
    let (outputs, loss) = match n_classes {
        Some(2) => (1, Loss::BceWithLogits),
        Some(k) => (k, Loss::SoftmaxCrossEntropy),
        None => (
            match &train_set.targets {
                Targets::Values(v) => v.nrows(),
                Targets::Classes { .. } => 1,
            },
            Loss::Mse,
        ),
    };
    let hidden_norm = match opts.norm {
        Norm::Batchnorm => Normalization::BatchNorm(BatchNormSpec::default()),
        Norm::Layernorm => Normalization::LayerNorm(LayerNormSpec::default()),
        _ => Normalization::None,
    };
    let widths = match &model {
        Model::Mlp(w) => w.clone(),
        _ => {
            if hidden_norm != Normalization::None {
                return Err(CliError::Argument {
                    arg: "--norm",
                    message:
                        "batchnorm and layernorm normalize hidden layers: use --model mlp:W1,..."
                            .into(),
                });
            }
            Vec::new()
        }
    };
    let d = train_set.x.nrows();
    let cfg = MlpConfig::feedforward(d, &widths, opts.activation, hidden_norm, outputs, loss);
    let tc = TrainConfig {
        epochs: opts.epochs,
        batch_size: opts.batch_size,
        seed: opts.seed,
        ..Default::default()
    };
    let bar = if progress && std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(opts.epochs as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "[{elapsed_precise}] {bar:30} epoch {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut mlp =
        precond_nn::Mlp::new(cfg).map_err(CliError::within(Context::argument("--model")))?;
    let mut params = mlp.init_params(opts.seed);
    let mut opt = opts
        .optimizer
        .build(params.len())
        .map_err(CliError::within(Context::argument("--optimizer")))?;
    let callback = |rec: &precond_nn::EpochRecord| {
        if rec.epoch > 0 {
            bar.inc(1);
        }
        bar.set_message(format!("train loss {:.4}", rec.train_loss));
        precond_nn::Control::Continue
    };
    let hist = if opts.norm == Norm::Bnp {
        let mut bnp = precond_nn::Bnp::new(&mlp, precond_optim::BnpSpec::default())
            .map_err(CliError::within(Context::argument("--norm")))?;
        precond_nn::train_bnp(
            &mut mlp,
            &mut bnp,
            &mut params,
            &mut opt,
            &train_set,
            Some(&test_set),
            &tc,
            callback,
        )
    } else {
        precond_nn::train(
            &mut mlp,
            &mut params,
            &mut opt,
            &train_set,
            Some(&test_set),
            &tc,
            callback,
        )
    }
    .map_err(CliError::within(Context::Experiment("train".into())))?;
    bar.finish_and_clear();
    let model_name = match &model {
        Model::LogReg => "logreg".to_string(),
        Model::LinReg => "linreg".to_string(),
        Model::Mlp(w) => format!(
            "mlp:{}",
            w.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    let out = TrainOutput {
        data: ds.name.clone(),
        model: model_name.clone(),
        norm: opts.norm,
        optimizer: serde_json::from_str(&opts.optimizer.to_json())
            .unwrap_or(serde_json::Value::Null),
        n_train: train_set.x.ncols(),
        n_test: test_set.x.ncols(),
        epochs: hist.epochs.clone(),
    };
    write_outputs(&out, &opts.out)?;
    let last = hist.last().ok_or_else(|| CliError::Experiment {
        id: "train".into(),
        message: "no epochs recorded".into(),
    })?;
    let pct = |a: Option<f64>| a.map_or("-".to_string(), |v| format!("{:.2}%", 100.0 * v));
    let summary = format!(
        "{} {} ({} train / {} test), norm {:?}, {} epochs\ntrain loss {:.6}  train accuracy {}\ntest loss  {}  test accuracy  {}\nwrote {}/history.json and the curves as SVG\n",
        ds.name,
        model_name,
        out.n_train,
        out.n_test,
        opts.norm,
        opts.epochs,
        last.train_loss,
        pct(last.train_accuracy),
        last.test_loss
            .map_or("-".to_string(), |v| format!("{v:.6}")),
        pct(last.test_accuracy),
        opts.out.display()
    );
    Ok((out, summary))
}

fn write_outputs(out: &TrainOutput, dir: &Path) -> Result<(), CliError> {
    let werr = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| CliError::Write {
            path: p,
            message: e.to_string(),
        }
    };
    std::fs::create_dir_all(dir).map_err(werr(dir))?;
    let hp = dir.join("history.json");
    let json = serde_json::to_string_pretty(out).map_err(|e| CliError::Write {
        path: hp.display().to_string(),
        message: e.to_string(),
    })?;
    std::fs::write(&hp, json + "\n").map_err(werr(&hp))?;
    let ep: Vec<f64> = out.epochs.iter().map(|e| e.epoch as f64).collect();
    let mut lp = Plot::new(
        format!("{} {}: loss", out.data, out.model),
        "epoch",
        "loss",
        false,
        true,
    );
    lp.series.push(Series::new(
        "train",
        SeriesKind::Line,
        0,
        ep.clone(),
        out.epochs.iter().map(|e| e.train_loss).collect(),
    ));
    if out.epochs.iter().all(|e| e.test_loss.is_some()) {
        lp.series.push(Series::new(
            "test",
            SeriesKind::Dashed,
            1,
            ep.clone(),
            out.epochs
                .iter()
                .map(|e| e.test_loss.unwrap_or(f64::NAN))
                .collect(),
        ));
    }
    let lpath = dir.join("loss.svg");
    std::fs::write(&lpath, render_svg(&lp, 720, 480)?).map_err(werr(&lpath))?;
    if out.epochs.iter().all(|e| e.train_accuracy.is_some()) {
        let mut ap = Plot::new(
            format!("{} {}: accuracy", out.data, out.model),
            "epoch",
            "accuracy",
            false,
            false,
        );
        ap.series.push(Series::new(
            "train",
            SeriesKind::Line,
            0,
            ep.clone(),
            out.epochs
                .iter()
                .map(|e| e.train_accuracy.unwrap_or(f64::NAN))
                .collect(),
        ));
        ap.series.push(Series::new(
            "test",
            SeriesKind::Dashed,
            1,
            ep,
            out.epochs
                .iter()
                .map(|e| e.test_accuracy.unwrap_or(f64::NAN))
                .collect(),
        ));
        let apath = dir.join("accuracy.svg");
        std::fs::write(&apath, render_svg(&ap, 720, 480)?).map_err(werr(&apath))?;
    }
    Ok(())
}
