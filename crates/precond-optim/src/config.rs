//! The optimizer configuration: torch argument names, defaults and meanings, checked strictly.
//!
//! JSON form (keys not listed for the chosen optimizer are rejected, as torch rejects an unknown
//! keyword argument):
//!
//! | key | optimizers | default | meaning |
//! |---|---|---|---|
//! | `optimizer` | all | (required) | `sgd`, `gd`, `adagrad`, `rmsprop`, `adam`, `adamw`, `precond_gd` |
//! | `lr` | all | 1e-3 (adagrad, rmsprop: 1e-2) | learning rate `η ≥ 0` |
//! | `weight_decay` | all | 0 (adamw: 1e-2) | L2 strength; coupled (10) except `adamw`: decoupled (11) |
//! | `maximize` | all | false | ascend instead of descend |
//! | `momentum`, `dampening`, `nesterov` | sgd, precond_gd, (rmsprop: `momentum`) | 0, 0, false | torch SGD/RMSprop momentum |
//! | `betas`, `amsgrad` | adam, adamw | [0.9, 0.999], false | |
//! | `eps` | adagrad, rmsprop, adam, adamw | 1e-10 (adagrad), 1e-8 | added after the square root, `eps > 0` |
//! | `alpha`, `centered` | rmsprop | 0.99, false | |
//! | `lr_decay`, `initial_accumulator_value` | adagrad | 0, 0 | |
//! | `preconditioner` | precond_gd | (required) | `{"diag": [..]}`, `{"P": [[..]..]}` or `{"S": [[..]..]}` |
//! | `regularization` | all | none | `{"kind", "strength", "l1_ratio"?, "space", "proximal"?}`, see [`crate::regularization`] |
//! | `groups` | all | [] | `[{"start", "end", "lr"?, "weight_decay"?, "regularization"?}]` |
//! | `schedule` | all | constant | see [`Schedule`] |
//! | `nonfinite` | all | `"error"` | `"error"` or `"skip"` for a NaN/inf gradient |

use crate::error::{OptimError, Result};
use crate::json::{Obj, kind};
use crate::regularization::{RegKind, Regularization, Space};
use crate::schedule::Schedule;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

/// Which optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// torch `SGD` (momentum, dampening, nesterov).
    Sgd,
    /// Plain gradient descent (1): `SGD` without momentum.
    Gd,
    /// torch `Adagrad`.
    Adagrad,
    /// torch `RMSprop`.
    Rmsprop,
    /// torch `Adam`.
    Adam,
    /// torch `AdamW`.
    Adamw,
    /// Preconditioned GD (5) with a fixed user preconditioner.
    PrecondGd,
}

impl OptimizerKind {
    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Gd => "gd",
            OptimizerKind::Adagrad => "adagrad",
            OptimizerKind::Rmsprop => "rmsprop",
            OptimizerKind::Adam => "adam",
            OptimizerKind::Adamw => "adamw",
            OptimizerKind::PrecondGd => "precond_gd",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "sgd" => OptimizerKind::Sgd,
            "gd" => OptimizerKind::Gd,
            "adagrad" => OptimizerKind::Adagrad,
            "rmsprop" => OptimizerKind::Rmsprop,
            "adam" => OptimizerKind::Adam,
            "adamw" => OptimizerKind::Adamw,
            "precond_gd" => OptimizerKind::PrecondGd,
            _ => return None,
        })
    }

    /// Optimizer-specific keys it accepts (besides the common ones).
    fn keys(self) -> &'static [&'static str] {
        match self {
            OptimizerKind::Sgd => &["momentum", "dampening", "nesterov"],
            OptimizerKind::Gd => &[],
            OptimizerKind::Adagrad => &["lr_decay", "initial_accumulator_value", "eps"],
            OptimizerKind::Rmsprop => &["alpha", "eps", "momentum", "centered"],
            OptimizerKind::Adam | OptimizerKind::Adamw => &["betas", "eps", "amsgrad"],
            OptimizerKind::PrecondGd => &["preconditioner", "momentum", "dampening", "nesterov"],
        }
    }
}

const COMMON_KEYS: &[&str] = &[
    "optimizer",
    "lr",
    "weight_decay",
    "maximize",
    "regularization",
    "groups",
    "schedule",
    "nonfinite",
];

/// What to do with a NaN or infinite gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonFinitePolicy {
    /// Return [`OptimError::NonFiniteGradient`]; parameters and state untouched.
    #[default]
    Error,
    /// Skip the step (parameters, state and step count untouched) and report it in the outcome.
    Skip,
    /// `torch.optim`'s behaviour, for throughput at large `n`: no scan of `g` before the update
    /// (the default policies read `g` once more, ~14 % more memory traffic for Adam, a quarter
    /// of the step time at n = 1e7 on the development VM); NaN/Inf flow into the parameters and
    /// state exactly as in torch. Never silent: the same pass ORs a finiteness test of every
    /// gradient entry, and the outcome of an affected step reports the first non-finite index
    /// (`applied: true`, `nonfinite_index: Some(i)`).
    Propagate,
}

/// A fixed preconditioner for `precond_gd` (5): `x ← x − η P ∇f(x)`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum FixedPreconditioner {
    /// Positive diagonal `p`: `P = diag(p)`, `S = diag(sqrt(p))`.
    Diagonal(Vec<f64>),
    /// Dense SPD `P`, row-major `n × n`.
    DenseP(Vec<f64>),
    /// Dense invertible factor `S`, row-major `n × n`; `P = S Sᵀ`.
    DenseS(Vec<f64>),
}

/// A parameter group: the index range `start..end` of the flat buffer with its own learning rate,
/// weight decay and regularization (unset fields inherit the top-level values). Indices not in any
/// group use the top-level values.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ParamGroup {
    /// First index.
    pub start: usize,
    /// One past the last index.
    pub end: usize,
    /// Own base learning rate.
    pub lr: Option<f64>,
    /// Own `weight_decay` (same coupled/decoupled meaning as the top level).
    pub weight_decay: Option<f64>,
    /// Own regularization (replaces the top-level one).
    pub regularization: Option<Regularization>,
}

/// The optimizer configuration (torch's argument names, defaults and meanings). Build it with
/// [`OptimizerConfig::from_json`] or the preset constructors, adjust fields, then
/// [`OptimizerConfig::build`] (which validates it, like linfa's `ParamGuard::check`).
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerConfig {
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Learning rate `η`.
    pub lr: f64,
    /// Adam's `(β₁, β₂)`.
    pub betas: [f64; 2],
    /// `eps`, added after the square root (torch placement).
    pub eps: f64,
    /// L2 strength: coupled (torch `weight_decay` of SGD/Adam/Adagrad/RMSprop: `g ← g + λx`),
    /// decoupled for AdamW (`x ← x(1 − ηλ)`).
    pub weight_decay: f64,
    /// AMSGrad (max of the raw second moment).
    pub amsgrad: bool,
    /// Momentum `μ` (SGD, RMSprop, precond_gd).
    pub momentum: f64,
    /// SGD dampening.
    pub dampening: f64,
    /// SGD Nesterov momentum.
    pub nesterov: bool,
    /// RMSprop smoothing `α`.
    pub alpha: f64,
    /// Centered RMSprop.
    pub centered: bool,
    /// AdaGrad learning-rate decay.
    pub lr_decay: f64,
    /// AdaGrad initial accumulator.
    pub initial_accumulator_value: f64,
    /// Ascend instead of descend.
    pub maximize: bool,
    /// An extra regularizer (kind × space × form).
    pub regularization: Regularization,
    /// Parameter groups.
    pub groups: Vec<ParamGroup>,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Non-finite gradient policy.
    pub nonfinite: NonFinitePolicy,
    /// The fixed preconditioner of `precond_gd`.
    pub preconditioner: Option<FixedPreconditioner>,
}

impl OptimizerConfig {
    /// torch's defaults for `kind` (`precond_gd` additionally needs [`Self::preconditioner`]).
    pub fn new(kind: OptimizerKind) -> Self {
        let (lr, eps, wd) = match kind {
            OptimizerKind::Adagrad => (1e-2, 1e-10, 0.0),
            OptimizerKind::Rmsprop => (1e-2, 1e-8, 0.0),
            OptimizerKind::Adamw => (1e-3, 1e-8, 1e-2),
            _ => (1e-3, 1e-8, 0.0),
        };
        OptimizerConfig {
            optimizer: kind,
            lr,
            betas: [0.9, 0.999],
            eps,
            weight_decay: wd,
            amsgrad: false,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            alpha: 0.99,
            centered: false,
            lr_decay: 0.0,
            initial_accumulator_value: 0.0,
            maximize: false,
            regularization: Regularization::NONE,
            groups: Vec::new(),
            schedule: Schedule::Constant,
            nonfinite: NonFinitePolicy::Error,
            preconditioner: None,
        }
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

    /// Parse the JSON form; errors name the key (`UnknownKey`, or `Config` for a wrong type or an
    /// out-of-range value). The result is validated ([`Self::validate`]).
    pub fn from_json(s: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(s).map_err(|e| OptimError::Json(e.to_string()))?;
        Self::from_value(&v)
    }

    /// Parse an already-parsed JSON value (see [`Self::from_json`]).
    pub fn from_value(v: &Value) -> Result<Self> {
        let mut o = Obj::new("", v)?;
        let name = o.str("optimizer")?.ok_or_else(|| {
            OptimError::config(
                "optimizer",
                "missing (sgd|gd|adagrad|rmsprop|adam|adamw|precond_gd)",
            )
        })?;
        let kind = OptimizerKind::from_name(name).ok_or_else(|| {
            OptimError::config(
                "optimizer",
                format!(
                    "unknown optimizer `{name}` (sgd|gd|adagrad|rmsprop|adam|adamw|precond_gd)"
                ),
            )
        })?;
        let allowed = kind.keys();
        if let Value::Object(map) = v {
            for k in map.keys() {
                if !COMMON_KEYS.contains(&k.as_str()) && !allowed.contains(&k.as_str()) {
                    let known = ALL_KEYS.contains(&k.as_str());
                    let mut acc: Vec<&str> = COMMON_KEYS.to_vec();
                    acc.extend_from_slice(allowed);
                    return Err(OptimError::UnknownKey {
                        key: k.clone(),
                        message: if known {
                            format!(
                                "not an argument of `{}`; accepted: {}",
                                kind.name(),
                                acc.join(", ")
                            )
                        } else {
                            format!("accepted keys for `{}`: {}", kind.name(), acc.join(", "))
                        },
                    });
                }
            }
        }
        let mut c = OptimizerConfig::new(kind);
        if let Some(x) = o.f64("lr")? {
            c.lr = x;
        }
        if let Some(x) = o.f64("weight_decay")? {
            c.weight_decay = x;
        }
        if let Some(x) = o.bool("maximize")? {
            c.maximize = x;
        }
        if let Some(x) = o.f64("momentum")? {
            c.momentum = x;
        }
        if let Some(x) = o.f64("dampening")? {
            c.dampening = x;
        }
        if let Some(x) = o.bool("nesterov")? {
            c.nesterov = x;
        }
        if let Some(x) = o.f64("eps")? {
            c.eps = x;
        }
        if let Some(x) = o.bool("amsgrad")? {
            c.amsgrad = x;
        }
        if let Some(a) = o.f64_array("betas")? {
            if a.len() != 2 {
                return Err(OptimError::config(
                    "betas",
                    format!("expected an array of two numbers, got {} entries", a.len()),
                ));
            }
            c.betas = [a[0], a[1]];
        }
        if let Some(x) = o.f64("alpha")? {
            c.alpha = x;
        }
        if let Some(x) = o.bool("centered")? {
            c.centered = x;
        }
        if let Some(x) = o.f64("lr_decay")? {
            c.lr_decay = x;
        }
        if let Some(x) = o.f64("initial_accumulator_value")? {
            c.initial_accumulator_value = x;
        }
        if let Some(r) = o.raw("regularization") {
            c.regularization = parse_regularization(r, "regularization")?;
        }
        if let Some(s) = o.raw("schedule") {
            c.schedule = Schedule::parse(s, "schedule")?;
        }
        if let Some(s) = o.str("nonfinite")? {
            c.nonfinite = match s {
                "error" => NonFinitePolicy::Error,
                "skip" => NonFinitePolicy::Skip,
                "propagate" => NonFinitePolicy::Propagate,
                other => {
                    return Err(OptimError::config(
                        "nonfinite",
                        format!("expected \"error\", \"skip\" or \"propagate\", got \"{other}\""),
                    ));
                }
            };
        }
        if let Some(g) = o.array("groups")? {
            c.groups = g
                .iter()
                .enumerate()
                .map(|(i, v)| parse_group(v, i))
                .collect::<Result<_>>()?;
        }
        if let Some(p) = o.raw("preconditioner") {
            c.preconditioner = Some(parse_fixed(p)?);
        }
        o.finish("see OptimizerConfig docs")?;
        c.validate()?;
        Ok(c)
    }

    /// Range checks (linfa `ParamGuard::check` style); the error names the key.
    pub fn validate(&self) -> Result<()> {
        let k = self.optimizer;
        check_lr("lr", self.lr)?;
        check_nonneg("weight_decay", self.weight_decay)?;
        if matches!(k, OptimizerKind::Adam | OptimizerKind::Adamw) {
            for (i, b) in self.betas.iter().enumerate() {
                if !(b.is_finite() && (0.0..1.0).contains(b)) {
                    return Err(OptimError::config(
                        "betas",
                        format!("betas[{i}] must be in [0, 1), got {b}"),
                    ));
                }
            }
        }
        if matches!(
            k,
            OptimizerKind::Adam
                | OptimizerKind::Adamw
                | OptimizerKind::Adagrad
                | OptimizerKind::Rmsprop
        ) && !(self.eps.is_finite() && self.eps > 0.0)
        {
            return Err(OptimError::config(
                "eps",
                format!("must be finite and > 0, got {}", self.eps),
            ));
        }
        check_nonneg("momentum", self.momentum)?;
        if !(self.dampening.is_finite() && (0.0..=1.0).contains(&self.dampening)) {
            return Err(OptimError::config(
                "dampening",
                format!("must be in [0, 1], got {}", self.dampening),
            ));
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(OptimError::config(
                "nesterov",
                "Nesterov momentum requires a momentum > 0 and zero dampening",
            ));
        }
        if !(self.alpha.is_finite() && (0.0..1.0).contains(&self.alpha)) {
            return Err(OptimError::config(
                "alpha",
                format!("must be in [0, 1), got {}", self.alpha),
            ));
        }
        check_nonneg("lr_decay", self.lr_decay)?;
        check_nonneg("initial_accumulator_value", self.initial_accumulator_value)?;
        validate_regularization(&self.regularization, "regularization")?;
        for (i, g) in self.groups.iter().enumerate() {
            if let Some(lr) = g.lr {
                check_lr(&format!("groups[{i}].lr"), lr)?;
            }
            if let Some(wd) = g.weight_decay {
                check_nonneg(&format!("groups[{i}].weight_decay"), wd)?;
            }
            if let Some(r) = &g.regularization {
                validate_regularization(r, &format!("groups[{i}].regularization"))?;
            }
            if g.start >= g.end {
                return Err(OptimError::config(
                    format!("groups[{i}]"),
                    format!("empty range {}..{}", g.start, g.end),
                ));
            }
        }
        match (k, &self.preconditioner) {
            (OptimizerKind::PrecondGd, None) => {
                return Err(OptimError::config(
                    "preconditioner",
                    "required for precond_gd",
                ));
            }
            (OptimizerKind::PrecondGd, Some(FixedPreconditioner::Diagonal(p))) => {
                if let Some((i, v)) = p
                    .iter()
                    .enumerate()
                    .find(|(_, v)| !(v.is_finite() && **v > 0.0))
                {
                    return Err(OptimError::config(
                        format!("preconditioner.diag[{i}]"),
                        format!("must be finite and > 0, got {v}"),
                    ));
                }
            }
            (
                OptimizerKind::PrecondGd,
                Some(FixedPreconditioner::DenseP(m) | FixedPreconditioner::DenseS(m)),
            ) => {
                if let Some(i) = m.iter().position(|v| !v.is_finite()) {
                    return Err(OptimError::config(
                        "preconditioner",
                        format!("entry {i} is not finite"),
                    ));
                }
            }
            (_, Some(_)) => {
                return Err(OptimError::config(
                    "preconditioner",
                    "only precond_gd takes a fixed preconditioner",
                ));
            }
            _ => {}
        }
        if k == OptimizerKind::Gd && (self.momentum != 0.0 || self.nesterov) {
            return Err(OptimError::config(
                "momentum",
                "gd has no momentum (use sgd)",
            ));
        }
        Ok(())
    }

    /// The JSON form (only the keys that apply to the optimizer; round-trips through
    /// [`Self::from_json`]).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("optimizer".into(), json!(self.optimizer.name()));
        m.insert("lr".into(), json!(self.lr));
        m.insert("weight_decay".into(), json!(self.weight_decay));
        m.insert("maximize".into(), json!(self.maximize));
        for &k in self.optimizer.keys() {
            let v = match k {
                "momentum" => json!(self.momentum),
                "dampening" => json!(self.dampening),
                "nesterov" => json!(self.nesterov),
                "eps" => json!(self.eps),
                "betas" => json!(self.betas),
                "amsgrad" => json!(self.amsgrad),
                "alpha" => json!(self.alpha),
                "centered" => json!(self.centered),
                "lr_decay" => json!(self.lr_decay),
                "initial_accumulator_value" => json!(self.initial_accumulator_value),
                "preconditioner" => match &self.preconditioner {
                    Some(FixedPreconditioner::Diagonal(p)) => json!({"diag": p}),
                    Some(FixedPreconditioner::DenseP(p)) => json!({"P": rows(p)}),
                    Some(FixedPreconditioner::DenseS(s)) => json!({"S": rows(s)}),
                    None => continue,
                },
                _ => continue,
            };
            m.insert(k.into(), v);
        }
        if self.regularization.kind != RegKind::None {
            m.insert("regularization".into(), reg_value(&self.regularization));
        }
        if !self.groups.is_empty() {
            let gs: Vec<Value> = self
                .groups
                .iter()
                .map(|g| {
                    let mut gm = Map::new();
                    gm.insert("start".into(), json!(g.start));
                    gm.insert("end".into(), json!(g.end));
                    if let Some(lr) = g.lr {
                        gm.insert("lr".into(), json!(lr));
                    }
                    if let Some(wd) = g.weight_decay {
                        gm.insert("weight_decay".into(), json!(wd));
                    }
                    if let Some(r) = &g.regularization {
                        gm.insert("regularization".into(), reg_value(r));
                    }
                    Value::Object(gm)
                })
                .collect();
            m.insert("groups".into(), Value::Array(gs));
        }
        if self.schedule != Schedule::Constant {
            m.insert("schedule".into(), self.schedule.to_value());
        }
        m.insert(
            "nonfinite".into(),
            json!(match self.nonfinite {
                NonFinitePolicy::Error => "error",
                NonFinitePolicy::Skip => "skip",
                NonFinitePolicy::Propagate => "propagate",
            }),
        );
        Value::Object(m)
    }

    /// The JSON text of [`Self::to_value`].
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }
}

impl Serialize for OptimizerConfig {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for OptimizerConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        OptimizerConfig::from_value(&v).map_err(serde::de::Error::custom)
    }
}

const ALL_KEYS: &[&str] = &[
    "momentum",
    "dampening",
    "nesterov",
    "lr_decay",
    "initial_accumulator_value",
    "eps",
    "alpha",
    "centered",
    "betas",
    "amsgrad",
    "preconditioner",
];

fn rows(m: &[f64]) -> Vec<Vec<f64>> {
    let n = (m.len() as f64).sqrt().round() as usize;
    m.chunks(n.max(1)).map(<[f64]>::to_vec).collect()
}

fn reg_value(r: &Regularization) -> Value {
    let kind = match r.kind {
        RegKind::None => return json!({"kind": "none"}),
        RegKind::L2 => "l2",
        RegKind::L1 => "l1",
        RegKind::ElasticNet => "elastic_net",
    };
    let mut v = json!({
        "kind": kind,
        "strength": r.strength,
        "space": if r.space == Space::Intrinsic { "intrinsic" } else { "original" },
        "proximal": r.proximal,
    });
    if r.kind == RegKind::ElasticNet {
        v["l1_ratio"] = json!(r.l1_ratio);
    }
    v
}

fn check_lr(key: &str, lr: f64) -> Result<()> {
    if lr.is_finite() && lr >= 0.0 {
        Ok(())
    } else {
        Err(OptimError::config(
            key,
            format!("must be finite and ≥ 0, got {lr}"),
        ))
    }
}

fn check_nonneg(key: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(OptimError::config(
            key,
            format!("must be finite and ≥ 0, got {v}"),
        ))
    }
}

fn validate_regularization(r: &Regularization, path: &str) -> Result<()> {
    check_nonneg(&format!("{path}.strength"), r.strength)?;
    if r.kind == RegKind::ElasticNet && !(0.0..=1.0).contains(&r.l1_ratio) {
        return Err(OptimError::config(
            format!("{path}.l1_ratio"),
            format!("must be in [0, 1], got {}", r.l1_ratio),
        ));
    }
    Ok(())
}

fn parse_regularization(v: &Value, path: &str) -> Result<Regularization> {
    let mut o = Obj::new(path, v)?;
    let kind = match o.str("kind")? {
        None => {
            return Err(OptimError::config(
                o.key("kind"),
                "missing (none|l2|l1|elastic_net)",
            ));
        }
        Some("none") => RegKind::None,
        Some("l2") => RegKind::L2,
        Some("l1") => RegKind::L1,
        Some("elastic_net") => RegKind::ElasticNet,
        Some(other) => {
            return Err(OptimError::config(
                o.key("kind"),
                format!("unknown kind `{other}` (none|l2|l1|elastic_net)"),
            ));
        }
    };
    if kind == RegKind::None {
        o.finish("kind")?;
        return Ok(Regularization::NONE);
    }
    let strength = o
        .f64("strength")?
        .ok_or_else(|| OptimError::config(o.key("strength"), "missing"))?;
    let l1_ratio = if kind == RegKind::ElasticNet {
        o.f64("l1_ratio")?.unwrap_or(0.5)
    } else {
        if o.has("l1_ratio") {
            return Err(OptimError::config(
                o.key("l1_ratio"),
                "only elastic_net takes an l1_ratio",
            ));
        }
        match kind {
            RegKind::L1 => 1.0,
            _ => 0.0,
        }
    };
    let space = match o.str("space")? {
        None => {
            return Err(OptimError::config(
                o.key("space"),
                "missing (original|intrinsic)",
            ));
        }
        Some("original") => Space::Original,
        Some("intrinsic") => Space::Intrinsic,
        Some(other) => {
            return Err(OptimError::config(
                o.key("space"),
                format!("expected original|intrinsic, got `{other}`"),
            ));
        }
    };
    let proximal = o.bool("proximal")?.unwrap_or(false);
    o.finish("kind, strength, l1_ratio (elastic_net), space, proximal")?;
    let r = Regularization {
        kind,
        strength,
        l1_ratio,
        space,
        proximal,
    };
    validate_regularization(&r, path)?;
    Ok(r)
}

fn parse_group(v: &Value, i: usize) -> Result<ParamGroup> {
    let path = format!("groups[{i}]");
    let mut o = Obj::new(&path, v)?;
    let start = o
        .u64("start")?
        .ok_or_else(|| OptimError::config(o.key("start"), "missing"))?;
    let end = o
        .u64("end")?
        .ok_or_else(|| OptimError::config(o.key("end"), "missing"))?;
    let lr = o.f64("lr")?;
    let weight_decay = o.f64("weight_decay")?;
    let regularization = match o.raw("regularization") {
        Some(r) => Some(parse_regularization(r, &format!("{path}.regularization"))?),
        None => None,
    };
    o.finish("start, end, lr, weight_decay, regularization")?;
    Ok(ParamGroup {
        start: start as usize,
        end: end as usize,
        lr,
        weight_decay,
        regularization,
    })
}

fn parse_fixed(v: &Value) -> Result<FixedPreconditioner> {
    let mut o = Obj::new("preconditioner", v)?;
    let present: Vec<&str> = ["diag", "P", "S"]
        .into_iter()
        .filter(|k| o.has(k))
        .collect();
    if present.len() != 1 {
        return Err(OptimError::config(
            "preconditioner",
            "give exactly one of `diag`, `P`, `S`",
        ));
    }
    let r = if present[0] == "diag" {
        FixedPreconditioner::Diagonal(o.f64_array("diag")?.unwrap_or_default())
    } else {
        let key = if present[0] == "P" { "P" } else { "S" };
        let full = o.key(key);
        let rows = o
            .raw(if key == "P" { "P" } else { "S" })
            .and_then(Value::as_array)
            .ok_or_else(|| {
                OptimError::config(
                    full.clone(),
                    "expected an array of rows (arrays of numbers)",
                )
            })?;
        let n = rows.len();
        let mut m = Vec::with_capacity(n * n);
        for (i, r) in rows.iter().enumerate() {
            let r = r.as_array().ok_or_else(|| {
                OptimError::config(
                    format!("{full}[{i}]"),
                    format!("expected a row, got {}", kind(r)),
                )
            })?;
            if r.len() != n {
                return Err(OptimError::config(
                    format!("{full}[{i}]"),
                    format!("row has {} entries, the matrix needs {n}", r.len()),
                ));
            }
            for (j, x) in r.iter().enumerate() {
                m.push(x.as_f64().ok_or_else(|| {
                    OptimError::config(format!("{full}[{i}][{j}]"), "expected a number")
                })?);
            }
        }
        if key == "P" {
            FixedPreconditioner::DenseP(m)
        } else {
            FixedPreconditioner::DenseS(m)
        }
    };
    o.finish("diag | P | S")?;
    Ok(r)
}
