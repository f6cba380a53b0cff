//! The JSON form of [`OptimizerConfig`]: strict parsing (unknown keys, keys of another optimizer
//! and wrong types are errors naming the key) and serialization that round-trips.

use super::keys::{KEYS, key_def};
use super::{COMMON_KEYS, NonFinitePolicy, OptimizerConfig, ParamGroup, validate_regularization};
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
        let name = o.str("optimizer")?.ok_or_else(|| {
            OptimError::config("optimizer", format!("missing ({})", OptimizerKind::names()))
        })?;
        let kind = OptimizerKind::from_name(name).ok_or_else(|| {
            OptimError::config(
                "optimizer",
                format!("unknown optimizer `{name}` ({})", OptimizerKind::names()),
            )
        })?;
        let allowed = kind.keys();
        if let Value::Object(map) = v {
            for k in map.keys() {
                if !COMMON_KEYS.contains(&k.as_str()) && !allowed.contains(&k.as_str()) {
                    let known = KEYS.iter().any(|d| d.name == k.as_str());
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
        for &key in allowed {
            // every accepted key has exactly one entry in the key table (checked by a test)
            if let Some(d) = key_def(key) {
                (d.read)(&mut o, &mut c)?;
            }
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
        o.finish("see OptimizerConfig docs")?;
        c.validate()?;
        Ok(c)
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
            if let Some(v) = key_def(k).and_then(|d| (d.write)(self)) {
                m.insert(k.into(), v);
            }
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
