//! The key table: every optimizer-specific JSON key, read and written in one place. Which
//! optimizer accepts a key is said by its kind (`kinds/`, [`crate::OptimizerKind::keys`]).

use super::{FixedPreconditioner, OptimizerConfig};
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
