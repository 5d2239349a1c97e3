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

/// The entries (maps keyed by id) of the map at `key` of `obj`.
///
/// If two devices created that map concurrently, Automerge keeps both
/// objects under the key and shows one; the entries of all of them are
/// returned, so nothing appended to the hidden one is lost.
pub fn entries<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> Vec<(String, ObjId)> {
    let Ok(values) = doc.get_all(obj, key) else {
        return Vec::new();
    };
    let mut out: Vec<(String, ObjId)> = Vec::new();
    // Linear: a case with many entries must not cost quadratic time to read.
    let mut seen = std::collections::HashSet::new();
    let several = values.len() > 1;
    for (value, m) in values {
        if !matches!(value, Value::Object(ObjType::Map)) {
            continue;
        }
        for k in doc.keys(&m) {
            if several && !seen.insert(k.clone()) {
                continue;
            }
            if let Some(id) = map(doc, &m, &k) {
                out.push((k, id));
            }
        }
    }
    out
}
