//! The JSON form of [`OptimizerConfig`]: strict parsing (unknown keys, keys of another optimizer
//! and wrong types are errors naming the key) and serialization that round-trips.

use super::keys::{KEYS, key_def};
use super::{
    COMMON_KEYS, MatrixOrder, MatrixShape, NonFinitePolicy, OptimizerConfig, ParamGroup,
    validate_regularization,
};
use crate::bnp::BnpSpec;
use crate::error::{OptimError, Result};
use crate::json::Obj;
use crate::kind::OptimizerKind;
use crate::regularization::{RegKind, Regularization, Space};
use crate::schedule::Schedule;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

impl OptimizerConfig {
    /// Parse the JSON form (strictly: a key given twice is a [`OptimError::Json`] error naming it);
    /// errors name the key (`UnknownKey`, or `Config` for a wrong type or an
    /// out-of-range value). The result is validated ([`Self::validate`]).
    pub fn from_json(s: &str) -> Result<Self> {
        let v = crate::json::parse_strict(s)?;
        Self::from_value(&v)
    }

    /// Parse an already-parsed JSON value (see [`Self::from_json`]).
    pub fn from_value(v: &Value) -> Result<Self> {
        let mut o = Obj::new("", v)?;
        let c = read_config(&mut o, v, true)?;
        o.finish("see OptimizerConfig docs")?;
        c.validate()?;
        Ok(c)
    }

    /// The JSON form (only the keys that apply to the optimizer; round-trips through
    /// [`Self::from_json`]).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        own_keys_value(self, &mut m);
        shape_insert(&mut m, &self.shape);
        if !self.groups.is_empty() {
            let gs: Vec<Value> = self
                .groups
                .iter()
                .map(|g| {
                    let mut gm = Map::new();
                    gm.insert("start".into(), json!(g.start));
                    gm.insert("end".into(), json!(g.end));
                    shape_insert(&mut gm, &g.shape);
                    if let Some(inner) = &g.optimizer {
                        own_keys_value(inner, &mut gm);
                    }
                    if let Some(lr) = g.lr {
                        gm.insert("lr".into(), json!(lr));
                    }
                    if let Some(wd) = g.weight_decay {
                        gm.insert("weight_decay".into(), json!(wd));
                    }
                    if let Some(r) = &g.regularization {
                        gm.insert("regularization".into(), reg_value(r));
                    }
                    if let Some(b) = &g.bnp {
                        gm.insert("bnp".into(), json!({"momentum": b.momentum, "eps": b.eps}));
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

/// The keys a group with its own optimizer accepts besides that optimizer's own.
const GROUP_OWN_KEYS: &[&str] = &[
    "start",
    "end",
    "shape",
    "order",
    "optimizer",
    "lr",
    "weight_decay",
    "maximize",
    "regularization",
    "bnp",
];

/// Read an optimizer's keys from `o` (the top level when `top`, else a group with its own
/// `"optimizer"`, whose `start`, `end`, `shape` and `order` the caller takes).
fn read_config(o: &mut Obj<'_>, v: &Value, top: bool) -> Result<OptimizerConfig> {
    let name = o.str("optimizer")?.ok_or_else(|| {
        OptimError::config(
            o.key("optimizer"),
            format!("missing ({})", OptimizerKind::names()),
        )
    })?;
    let kind = OptimizerKind::from_name(name).ok_or_else(|| {
        OptimError::config(
            o.key("optimizer"),
            format!("unknown optimizer `{name}` ({})", OptimizerKind::names()),
        )
    })?;
    let allowed = kind.keys();
    let common: &[&str] = if top { COMMON_KEYS } else { GROUP_OWN_KEYS };
    if let Value::Object(map) = v {
        for k in map.keys() {
            if !common.contains(&k.as_str()) && !allowed.contains(&k.as_str()) {
                let known =
                    KEYS.iter().any(|d| d.name == k.as_str()) || COMMON_KEYS.contains(&k.as_str());
                let mut acc: Vec<&str> = common.to_vec();
                acc.extend_from_slice(allowed);
                return Err(OptimError::UnknownKey {
                    key: o.key(k),
                    message: if known && !top && COMMON_KEYS.contains(&k.as_str()) {
                        format!(
                            "only the top level takes `{k}`; a group with its own optimizer accepts: {}",
                            acc.join(", ")
                        )
                    } else if known {
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
    for &key in allowed {
        // every accepted key has exactly one entry in the key table (checked by a test)
        if let Some(d) = key_def(key) {
            (d.read)(o, &mut c)?;
        }
    }
    if let Some(r) = o.raw("regularization") {
        c.regularization = parse_regularization(r, &o.key("regularization"))?;
    }
    if !top {
        return Ok(c);
    }
    c.shape = parse_shape(o)?;
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
    Ok(c)
}

/// `"shape": [rows, cols]` and `"order": "C" | "F"` of `o` (order only with a shape).
fn parse_shape(o: &mut Obj<'_>) -> Result<Option<MatrixShape>> {
    let shape = match o.array("shape")? {
        None => None,
        Some(a) => {
            let dims: Option<Vec<usize>> = a
                .iter()
                .map(|v| v.as_u64().and_then(|x| usize::try_from(x).ok()))
                .collect();
            match dims.as_deref() {
                Some(&[rows, cols]) if rows > 0 && cols > 0 => Some(MatrixShape::new(rows, cols)),
                _ => {
                    return Err(OptimError::config(
                        o.key("shape"),
                        "expected [rows, cols], two positive integers (matrix parameters only)",
                    ));
                }
            }
        }
    };
    let order = match o.str("order")? {
        None => None,
        Some("C") => Some(MatrixOrder::RowMajor),
        Some("F") => Some(MatrixOrder::ColMajor),
        Some(other) => {
            return Err(OptimError::config(
                o.key("order"),
                format!("expected \"C\" (row-major) or \"F\" (column-major), got \"{other}\""),
            ));
        }
    };
    match (shape, order) {
        (None, Some(_)) => Err(OptimError::config(
            o.key("order"),
            "given without a `shape`",
        )),
        (Some(mut s), Some(ord)) => {
            s.order = ord;
            Ok(Some(s))
        }
        (s, None) => Ok(s),
    }
}

fn shape_insert(m: &mut Map<String, Value>, s: &Option<MatrixShape>) {
    if let Some(s) = s {
        m.insert("shape".into(), json!([s.rows, s.cols]));
        if s.order == MatrixOrder::ColMajor {
            m.insert("order".into(), json!("F"));
        }
    }
}

/// The keys of `c` that a group with its own optimizer writes (its optimizer's own keys).
fn own_keys_value(c: &OptimizerConfig, m: &mut Map<String, Value>) {
    m.insert("optimizer".into(), json!(c.optimizer.name()));
    m.insert("lr".into(), json!(c.lr));
    m.insert("weight_decay".into(), json!(c.weight_decay));
    m.insert("maximize".into(), json!(c.maximize));
    for &k in c.optimizer.keys() {
        if let Some(v) = key_def(k).and_then(|d| (d.write)(c)) {
            m.insert(k.into(), v);
        }
    }
    if c.regularization.kind != RegKind::None {
        m.insert("regularization".into(), reg_value(&c.regularization));
    }
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
    let shape = parse_shape(&mut o)?;
    let bnp = match o.raw("bnp") {
        None => None,
        Some(b) => parse_bnp(b, &format!("{path}.bnp"))?,
    };
    let too_large =
        |k: &str, x: u64| OptimError::config(format!("{path}.{k}"), format!("{x} is too large"));
    let start = usize::try_from(start).map_err(|_| too_large("start", start))?;
    let end = usize::try_from(end).map_err(|_| too_large("end", end))?;
    if o.has("optimizer") {
        let inner = read_config(&mut o, v, false)?;
        o.finish("start, end, shape, order, bnp, optimizer and that optimizer's keys")?;
        inner.validate_own().map_err(|e| e.under(&path))?;
        return Ok(ParamGroup {
            start,
            end,
            lr: None,
            weight_decay: None,
            regularization: None,
            shape,
            optimizer: Some(Box::new(inner)),
            bnp,
        });
    }
    let lr = o.f64("lr")?;
    let weight_decay = o.f64("weight_decay")?;
    let regularization = match o.raw("regularization") {
        Some(r) => Some(parse_regularization(r, &format!("{path}.regularization"))?),
        None => None,
    };
    o.finish("start, end, lr, weight_decay, regularization, shape, order, bnp, optimizer")?;
    Ok(ParamGroup {
        start,
        end,
        lr,
        weight_decay,
        regularization,
        shape,
        optimizer: None,
        bnp,
    })
}

/// A group's `"bnp"`: `true` (defaults), `false` (none) or `{"momentum"?, "eps"?}`, checked
/// ([`BnpSpec::check`]) with errors naming `path.momentum` / `path.eps`.
fn parse_bnp(v: &Value, path: &str) -> Result<Option<BnpSpec>> {
    if let Value::Bool(b) = v {
        return Ok(b.then(BnpSpec::default));
    }
    if !v.is_object() {
        return Err(OptimError::config(
            path,
            format!(
                "expected true, false or {{\"momentum\", \"eps\"}}, got {}",
                crate::json::kind(v)
            ),
        ));
    }
    let mut o = Obj::new(path, v)?;
    let mut spec = BnpSpec::default();
    if let Some(m) = o.f64("momentum")? {
        spec.momentum = m;
    }
    if let Some(e) = o.f64("eps")? {
        spec.eps = e;
    }
    o.finish("momentum, eps")?;
    spec.check().map_err(|e| match e {
        OptimError::InvalidStatistics {
            what,
            value,
            reason,
            ..
        } => OptimError::config(format!("{path}.{what}"), format!("{value}: {reason}")),
        other => other,
    })?;
    Ok(Some(spec))
}
