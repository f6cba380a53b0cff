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

    pub(crate) fn i64(&mut self, k: &'static str) -> Result<Option<i64>> {
        match self.raw(k) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.type_err(k, "an integer", v)),
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

/// Parse JSON text strictly: like `serde_json::from_str::<Value>`, but an object with the same key
/// twice is an error naming the key (serde_json keeps the last value silently, which would let
/// `{"lr": 1e-3, "lr": 10}` pass review with the second value in force).
pub(crate) fn parse_strict(s: &str) -> Result<Value> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(s);
    let v = StrictValue
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| OptimError::Json(e.to_string()))?;
    Ok(v)
}

/// A [`Value`] deserializer that rejects duplicate object keys.
struct StrictValue;

impl<'de> serde::de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = seq.next_element_seed(StrictValue)? {
            v.push(x);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if m.contains_key(&k) {
                return Err(serde::de::Error::custom(format!("duplicate key `{k}`")));
            }
            let v = map.next_value_seed(StrictValue)?;
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }
}
