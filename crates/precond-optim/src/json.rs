//! Strict reading of JSON objects with errors that name the key path.

use crate::error::{OptimError, Result};
use serde_json::{Map, Value};

/// A JSON object being read: every key must be taken exactly once, leftovers are unknown keys.
pub(crate) struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
    taken: Vec<&'static str>,
}

impl<'a> Obj<'a> {
    pub(crate) fn new(path: &str, v: &'a Value) -> Result<Self> {
        match v {
            Value::Object(map) => Ok(Obj {
                path: path.to_string(),
                map,
                taken: Vec::new(),
            }),
            other => Err(OptimError::config(
                display_path(path),
                format!("expected a JSON object, got {}", kind(other)),
            )),
        }
    }

    pub(crate) fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    pub(crate) fn has(&self, k: &str) -> bool {
        self.map.contains_key(k)
    }

    /// The raw value of `k`, marking it as taken.
    pub(crate) fn raw(&mut self, k: &'static str) -> Option<&'a Value> {
        self.taken.push(k);
        self.map.get(k)
    }

    pub(crate) fn f64(&mut self, k: &'static str) -> Result<Option<f64>> {
        match self.raw(k) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.type_err(k, "a number", v)),
        }
    }

    pub(crate) fn bool(&mut self, k: &'static str) -> Result<Option<bool>> {
        match self.raw(k) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.type_err(k, "true or false", v)),
        }
    }

    pub(crate) fn u64(&mut self, k: &'static str) -> Result<Option<u64>> {
        match self.raw(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.type_err(k, "a non-negative integer", v)),
        }
    }

    pub(crate) fn str(&mut self, k: &'static str) -> Result<Option<&'a str>> {
        match self.raw(k) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.type_err(k, "a string", v)),
        }
    }

    pub(crate) fn array(&mut self, k: &'static str) -> Result<Option<&'a Vec<Value>>> {
        match self.raw(k) {
            None => Ok(None),
            Some(v) => v
                .as_array()
                .map(Some)
                .ok_or_else(|| self.type_err(k, "an array", v)),
        }
    }

    pub(crate) fn f64_array(&mut self, k: &'static str) -> Result<Option<Vec<f64>>> {
        let key = self.key(k);
        match self.array(k)? {
            None => Ok(None),
            Some(a) => a
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_f64().ok_or_else(|| {
                        OptimError::config(
                            format!("{key}[{i}]"),
                            format!("expected a number, got {}", kind(v)),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
        }
    }

    pub(crate) fn type_err(&self, k: &str, expected: &str, got: &Value) -> OptimError {
        OptimError::config(
            self.key(k),
            format!("expected {expected}, got {}", kind(got)),
        )
    }

    /// Reject keys that were never taken.
    pub(crate) fn finish(self, accepted: &str) -> Result<()> {
        for k in self.map.keys() {
            if !self.taken.iter().any(|t| t == k) {
                return Err(OptimError::UnknownKey {
                    key: self.key(k),
                    message: format!("accepted keys here: {accepted}"),
                });
            }
        }
        Ok(())
    }
}

fn display_path(p: &str) -> String {
    if p.is_empty() {
        "<root>".to_string()
    } else {
        p.to_string()
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
