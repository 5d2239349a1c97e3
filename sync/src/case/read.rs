//! Tolerant readers for document values: a peer may send a document of a
//! newer schema or a damaged one, and reading must never panic.

use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, Value};

/// A string at `key` of `obj`, if there is one.
pub fn string<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> Option<String> {
    match doc.get(obj, key).ok()?? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        (Value::Object(ObjType::Text), id) => doc.text(&id).ok(),
        _ => None,
    }
}

/// An integer or timestamp at `key` of `obj`.
pub fn int<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> Option<i64> {
    match doc.get(obj, key).ok()?? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Int(i) | ScalarValue::Timestamp(i) => Some(*i),
            ScalarValue::Uint(u) => i64::try_from(*u).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// A boolean at `key` of `obj`.
pub fn boolean<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> Option<bool> {
    match doc.get(obj, key).ok()?? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Boolean(b) => Some(*b),
            _ => None,
        },
        _ => None,
    }
}

/// The map object at `key` of `obj`.
pub fn map<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(obj, key).ok()?? {
        (Value::Object(ObjType::Map), id) => Some(id),
        _ => None,
    }
}

/// The keys of the map at `key` of `obj` with their object ids.
pub fn entries<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> Vec<(String, ObjId)> {
    let Some(m) = map(doc, obj, key) else {
        return Vec::new();
    };
    doc.keys(&m)
        .filter_map(|k| {
            let id = map(doc, &m, &k)?;
            Some((k, id))
        })
        .collect()
}
