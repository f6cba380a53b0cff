//! The key table: every optimizer-specific JSON key, read and written in one place. Which
//! optimizer accepts a key is said by its kind (`kinds/`, [`crate::OptimizerKind::keys`]).

use super::{AdjustLr, FixedPreconditioner, Grafting, GraftingKind, OptimizerConfig};
use crate::error::{OptimError, Result};
use crate::json::{Obj, kind};
use serde_json::{Value, json};

/// One JSON key: how it is read into an [`OptimizerConfig`] and written back.
pub(crate) struct KeyDef {
    /// The JSON (torch argument) name.
    pub(crate) name: &'static str,
    /// Read the key (if present) from the object into the config.
    pub(crate) read: fn(&mut Obj<'_>, &mut OptimizerConfig) -> Result<()>,
    /// The key's JSON value, `None` when it has nothing to write.
    pub(crate) write: fn(&OptimizerConfig) -> Option<Value>,
}

macro_rules! number_key {
    ($name:literal, $field:ident) => {
        KeyDef {
            name: $name,
            read: |o, c| {
                if let Some(x) = o.f64($name)? {
                    c.$field = x;
                }
                Ok(())
            },
            write: |c| Some(json!(c.$field)),
        }
    };
}

macro_rules! bool_key {
    ($name:literal, $field:ident) => {
        KeyDef {
            name: $name,
            read: |o, c| {
                if let Some(x) = o.bool($name)? {
                    c.$field = x;
                }
                Ok(())
            },
            write: |c| Some(json!(c.$field)),
        }
    };
}

macro_rules! count_key {
    ($name:literal, $field:ident, $t:ty) => {
        KeyDef {
            name: $name,
            read: |o, c| {
                if let Some(x) = o.u64($name)? {
                    c.$field = <$t>::try_from(x).map_err(|_| {
                        OptimError::config(o.key($name), format!("{x} is too large"))
                    })?;
                }
                Ok(())
            },
            write: |c| Some(json!(c.$field)),
        }
    };
}

/// Every optimizer-specific key.
pub(crate) const KEYS: &[KeyDef] = &[
    number_key!("momentum", momentum),
    number_key!("dampening", dampening),
    bool_key!("nesterov", nesterov),
    number_key!("lr_decay", lr_decay),
    number_key!("initial_accumulator_value", initial_accumulator_value),
    number_key!("eps", eps),
    number_key!("alpha", alpha),
    bool_key!("centered", centered),
    KeyDef {
        name: "power",
        read: |o, c| {
            if let Some(x) = o.f64("power")? {
                c.power = x;
            }
            Ok(())
        },
        // the default (the square root) is not written, so configurations without the key
        // serialize as before
        write: |c| (c.power.to_bits() != 0.5f64.to_bits()).then(|| json!(c.power)),
    },
    KeyDef {
        name: "betas",
        read: |o, c| {
            if let Some(a) = o.f64_array("betas")? {
                if a.len() != 2 {
                    return Err(OptimError::config(
                        "betas",
                        format!("expected an array of two numbers, got {} entries", a.len()),
                    ));
                }
                c.betas = [a[0], a[1]];
            }
            Ok(())
        },
        write: |c| Some(json!(c.betas)),
    },
    bool_key!("amsgrad", amsgrad),
    KeyDef {
        name: "ns_coefficients",
        read: |o, c| {
            if let Some(a) = o.f64_array("ns_coefficients")? {
                if a.len() != 3 {
                    return Err(OptimError::config(
                        o.key("ns_coefficients"),
                        format!("expected three numbers [a, b, c], got {} entries", a.len()),
                    ));
                }
                c.ns_coefficients = [a[0], a[1], a[2]];
            }
            Ok(())
        },
        write: |c| Some(json!(c.ns_coefficients)),
    },
    count_key!("ns_steps", ns_steps, u32),
    KeyDef {
        name: "adjust_lr_fn",
        read: |o, c| {
            if let Some(s) = o.str("adjust_lr_fn")? {
                c.adjust_lr_fn = match s {
                    "original" => AdjustLr::Original,
                    "match_rms_adamw" => AdjustLr::MatchRmsAdamw,
                    "spectral_unclamped" => AdjustLr::SpectralUnclamped,
                    other => {
                        return Err(OptimError::config(
                            o.key("adjust_lr_fn"),
                            format!(
                                "expected original|match_rms_adamw|spectral_unclamped, got `{other}`"
                            ),
                        ));
                    }
                };
            }
            Ok(())
        },
        write: |c| Some(json!(c.adjust_lr_fn.name())),
    },
    number_key!("epsilon", epsilon),
    bool_key!("use_decoupled_weight_decay", use_decoupled_weight_decay),
    count_key!("max_preconditioner_dim", max_preconditioner_dim, usize),
    count_key!("precondition_frequency", precondition_frequency, u64),
    KeyDef {
        name: "start_preconditioning_step",
        read: |o, c| {
            if let Some(x) = o.i64("start_preconditioning_step")? {
                c.start_preconditioning_step = x;
            }
            Ok(())
        },
        write: |c| Some(json!(c.start_preconditioning_step)),
    },
    bool_key!("use_bias_correction", use_bias_correction),
    KeyDef {
        name: "grafting",
        read: |o, c| {
            if let Some(v) = o.raw("grafting") {
                c.grafting = parse_grafting(v, &o.key("grafting"))?;
            }
            Ok(())
        },
        write: |c| {
            let g = c.grafting;
            Some(json!({
                "type": grafting_name(g.kind),
                "beta2": g.beta2,
                "epsilon": g.epsilon,
            }))
        },
    },
    number_key!("shampoo_beta", shampoo_beta),
    count_key!("max_precond_dim", max_precond_dim, usize),
    bool_key!("normalize_grads", normalize_grads),
    bool_key!("correct_bias", correct_bias),
    KeyDef {
        name: "preconditioner",
        read: |o, c| {
            if let Some(p) = o.raw("preconditioner") {
                c.preconditioner = Some(parse_fixed(p)?);
            }
            Ok(())
        },
        write: |c| match &c.preconditioner {
            Some(FixedPreconditioner::Diagonal(p)) => Some(json!({"diag": p})),
            Some(FixedPreconditioner::DenseP(p)) => Some(json!({"P": rows(p)})),
            Some(FixedPreconditioner::DenseS(s)) => Some(json!({"S": rows(s)})),
            None => None,
        },
    },
];

fn grafting_name(k: GraftingKind) -> &'static str {
    match k {
        GraftingKind::None => "none",
        GraftingKind::Sgd => "sgd",
        GraftingKind::Adagrad => "adagrad",
        GraftingKind::Rmsprop => "rmsprop",
        GraftingKind::Adam => "adam",
    }
}

/// `{"type": "none|sgd|adagrad|rmsprop|adam", "beta2"?, "epsilon"?}` with DistributedShampoo's
/// defaults per type.
fn parse_grafting(v: &Value, path: &str) -> Result<Grafting> {
    let mut o = Obj::new(path, v)?;
    let kind = match o.str("type")? {
        None => {
            return Err(OptimError::config(
                o.key("type"),
                "missing (none|sgd|adagrad|rmsprop|adam)",
            ));
        }
        Some("none") => GraftingKind::None,
        Some("sgd") => GraftingKind::Sgd,
        Some("adagrad") => GraftingKind::Adagrad,
        Some("rmsprop") => GraftingKind::Rmsprop,
        Some("adam") => GraftingKind::Adam,
        Some(other) => {
            return Err(OptimError::config(
                o.key("type"),
                format!("unknown grafting `{other}` (none|sgd|adagrad|rmsprop|adam)"),
            ));
        }
    };
    let mut g = Grafting::default_for(kind);
    if let Some(b) = o.f64("beta2")? {
        g.beta2 = b;
    }
    if let Some(e) = o.f64("epsilon")? {
        g.epsilon = e;
    }
    o.finish("type, beta2, epsilon")?;
    Ok(g)
}

/// The table entry of `name`.
pub(crate) fn key_def(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|d| d.name == name)
}

fn rows(m: &[f64]) -> Vec<Vec<f64>> {
    let n = (m.len() as f64).sqrt().round() as usize;
    m.chunks(n.max(1)).map(<[f64]>::to_vec).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::OptimizerKind;

    #[test]
    fn every_accepted_key_has_one_table_entry() {
        for &k in OptimizerKind::ALL {
            for key in k.keys() {
                let n = KEYS.iter().filter(|d| d.name == *key).count();
                assert_eq!(n, 1, "`{key}` of `{k}` has {n} key-table entries");
                assert!(
                    !super::super::COMMON_KEYS.contains(key),
                    "`{key}` of `{k}` is also a common key"
                );
            }
        }
        for d in KEYS {
            assert!(
                OptimizerKind::ALL
                    .iter()
                    .any(|k| k.keys().contains(&d.name)),
                "key `{}` is accepted by no optimizer",
                d.name
            );
        }
    }
}
