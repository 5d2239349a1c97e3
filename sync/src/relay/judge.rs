//! The relay's judgement of an upload: every operation of every change a
//! device sends must be one the write-rules table ([`crate::case::table`])
//! allows for the connection, and the values it leaves must be valid.
//!
//! The check reads the operations themselves, not a diff of what is new:
//! an edit of an existing entry, a deletion, a replaced map or an unknown
//! key is visible only there. The walk is linear in the size of the upload
//! plus a lookup per new entry; a few checks (the entry count, money, the
//! day's calls) read part of the case, which the case limits bound.

use super::validate;
use crate::access::Principal;
use crate::case::read;
use crate::case::seal;
use crate::case::table::{self, Log, RootShape, Ty};
use crate::case::CaseField;
use crate::ids::{CaseId, Millis};
use crate::policy::Policy;
use crate::protocol::{clip, Refusal, RefusalCode};
use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{
    ActorId, Automerge, Change, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValueRef, Value,
    ValueRef, ROOT,
};
use std::collections::{HashMap, HashSet};

/// One upload to judge: the document after applying it, the heads before.
pub struct Upload<'a> {
    /// The case.
    pub case: CaseId,
    /// The document with the upload applied (not yet stored).
    pub doc: &'a Automerge,
    /// The relay's heads before the upload (empty for a new case).
    pub before: &'a [ChangeHash],
    /// The uploaded changes, as `doc.get_changes(before)` returns them.
    pub changes: &'a [Change],
    /// Bytes the case took before the upload (stored changes and snapshot).
    pub stored_bytes: usize,
    /// Entries the case's logs held before the upload, if the relay keeps
    /// the count (else the judge counts them, which costs a pass over the
    /// logs).
    pub entries_before: Option<usize>,
    /// Who uploads.
    pub principal: &'a Principal,
    /// The policy in force.
    pub policy: &'a Policy,
    /// Relay time of receipt.
    pub now: Millis,
    /// The case's key, if the relay holds it: sealed personal fields are
    /// opened and checked like plain ones (without it only their size is).
    pub key: Option<&'a crate::case::seal::CaseKey>,
}

/// What an object named by an operation is.
#[derive(Debug, Clone)]
enum Obj {
    /// A map, text or log at a root key.
    Root(&'static str, RootShape),
    /// An entry created by this upload in a log.
    Entry(&'static Log),
    /// An item created by this upload (new cases only).
    Item,
}

/// What an upload adds, collected while reading its operations.
#[derive(Default)]
struct Added {
    entries: Vec<(&'static Log, String)>,
    fields: Vec<CaseField>,
    description: bool,
    links: Vec<String>,
    root_keys: HashSet<String>,
    /// Every operation of the upload so far (a `pred` outside it names a
    /// value recorded before).
    ops: HashSet<OpKey>,
}

type OpKey = (u64, ActorId);

fn refuse(code: RefusalCode, message: impl Into<String>) -> Refusal {
    Refusal::new(code, message)
}

/// What the relay learns from an upload it accepts.
#[derive(Debug, Default)]
pub struct Verdict {
    /// The latest time the upload's entries claim (device clock).
    pub claimed_at: Option<i64>,
    /// Entries judged at the relay's time because their claimed time was
    /// not plausible.
    pub clock_fixes: Vec<super::ClockFix>,
    /// Entries the case's logs hold with the upload.
    pub entries: usize,
}

/// Judges an upload. `Ok` means it may be stored as it is.
pub fn judge(u: &Upload<'_>) -> Result<Verdict, Refusal> {
    check_sizes(u)?;
    let new_case = u.before.is_empty();
    let mut objs = root_objects(u.doc);
    let mut added = Added::default();
    for change in u.changes {
        let c = change.decode();
        let start = c.start_op.get();
        for (i, op) in c.operations.iter().enumerate() {
            let id = (start + i as u64, c.actor_id.clone());
            judge_op(u, new_case, &mut objs, &mut added, id.clone(), op)?;
            added.ops.insert(id);
        }
    }
    let (entries, placed) = check_values(u, new_case, &added)?;
    validate::check_semantics(u, &added.entries, &placed)?;
    Ok(verdict(u, &added, &placed, entries))
}

/// What the judge read of one added entry, kept for the checks after
/// [`check_values`]: each lookup in an Automerge map is a seek through its
/// columns, and reading the same entry again in every check was most of
/// the judge's time on a new case.
pub(super) struct Placed {
    /// The entry's object.
    pub(super) obj: ObjId,
    /// Its claimed time (`at`), if an integer or timestamp.
    pub(super) at: Option<i64>,
    /// Its type.
    pub(super) ty: String,
    /// Its `to` field (a workflow move's target state), if text.
    pub(super) to: Option<String>,
}

fn verdict(u: &Upload<'_>, added: &Added, placed: &[Placed], entries: usize) -> Verdict {
    let mut v = Verdict {
        entries,
        ..Verdict::default()
    };
    for ((log, key), p) in added.entries.iter().zip(placed) {
        let Some(at) = p.at else {
            continue;
        };
        v.claimed_at = Some(v.claimed_at.map_or(at, |c: i64| c.max(at)));
        let trusted = validate::trusted_at(at, u.now.0, u.policy);
        if trusted != at {
            v.clock_fixes.push(super::ClockFix {
                log: log.key.to_string(),
                entry: key.clone(),
                at: trusted,
            });
        }
    }
    // The case's own creation time, which timers count from.
    if u.before.is_empty() {
        if let Some(at) = read::int(u.doc, &ROOT, crate::case::schema::root::CREATED_AT) {
            let trusted = validate::trusted_at(at, u.now.0, u.policy);
            if trusted != at {
                v.clock_fixes.push(super::ClockFix {
                    log: String::new(),
                    entry: crate::case::schema::root::CREATED_AT.to_string(),
                    at: trusted,
                });
            }
        }
    }
    v
}

/// Writes the trusted times into a local copy of a case (for views only).
pub fn apply_clock_fixes(doc: &mut Automerge, fixes: &[super::ClockFix]) {
    let mut tx = doc.transaction();
    for f in fixes {
        if f.log.is_empty() {
            // A root time (the creation time).
            let _ = automerge::transaction::Transactable::put(
                &mut tx,
                ROOT,
                f.entry.as_str(),
                automerge::ScalarValue::Timestamp(f.at),
            );
            continue;
        }
        let entry = read::map(&tx, &ROOT, &f.log).and_then(|m| read::map(&tx, &m, &f.entry));
        if let Some(e) = entry {
            // A failed write leaves the claimed time: the view is still
            // correct in every other respect.
            let _ = automerge::transaction::Transactable::put(
                &mut tx,
                &e,
                "at",
                automerge::ScalarValue::Timestamp(f.at),
            );
        }
    }
    tx.commit();
}

fn check_sizes(u: &Upload<'_>) -> Result<(), Refusal> {
    let mut total = u.stored_bytes;
    for c in u.changes {
        let size = c.raw_bytes().len();
        if size > u.policy.max_change_bytes {
            return Err(refuse(
                RefusalCode::TooLarge,
                format!(
                    "one change of {size} bytes is over the limit of {} bytes per change",
                    u.policy.max_change_bytes
                ),
            ));
        }
        total += size;
    }
    if total > u.policy.max_case_bytes {
        return Err(refuse(
            RefusalCode::TooLarge,
            format!(
                "the case would take {total} bytes, over the limit of {} bytes per case: close it and open a follow-up case",
                u.policy.max_case_bytes
            ),
        ));
    }
    Ok(())
}

/// The objects at the root keys of the case, keyed by the id of the
/// operation that made them.
fn root_objects(doc: &Automerge) -> HashMap<OpKey, Obj> {
    let mut out = HashMap::new();
    for (key, shape) in table::ROOT {
        if matches!(shape, RootShape::Fixed(_)) {
            continue;
        }
        let Ok(values) = doc.get_all(ROOT, *key) else {
            continue;
        };
        for (value, id) in values {
            if let (Value::Object(_), automerge::ObjId::Id(counter, actor, _)) = (&value, &id) {
                out.insert((*counter, actor.clone()), Obj::Root(key, *shape));
            }
        }
    }
    out
}

fn valid_entry_id(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= table::MAX_ENTRY_ID
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn judge_op(
    u: &Upload<'_>,
    new_case: bool,
    objs: &mut HashMap<OpKey, Obj>,
    added: &mut Added,
    id: OpKey,
    op: &automerge::legacy::Op,
) -> Result<(), Refusal> {
    if matches!(
        op.action,
        OpType::Increment(_) | OpType::MarkBegin(_) | OpType::MarkEnd(_)
    ) {
        return Err(refuse(
            RefusalCode::InvalidValue,
            "counters and text marks are not part of a case",
        ));
    }
    let obj = match &op.obj {
        ObjectId::Root => return judge_root_op(u, new_case, added, id, op, objs),
        ObjectId::Id(o) => objs.get(&(o.0, o.1.clone())).cloned(),
    };
    let map_key = match &op.key {
        Key::Map(k) => Some(k.as_str()),
        Key::Seq(_) => None,
    };
    match obj {
        Some(Obj::Root(_, RootShape::Text)) => match (&op.action, map_key) {
            (OpType::Put(_) | OpType::Delete, None) => {
                added.description = true;
                Ok(())
            }
            _ => Err(refuse(
                RefusalCode::InvalidValue,
                "the description is plain text",
            )),
        },
        Some(Obj::Root(name, RootShape::Log)) => {
            let log = table::log(name).ok_or_else(|| {
                refuse(RefusalCode::UnknownKey, format!("{name} is not a log"))
            })?;
            let Some(k) = map_key else {
                return Err(refuse(
                    RefusalCode::InvalidValue,
                    format!("{name} is a map of entries"),
                ));
            };
            match &op.action {
                OpType::Make(ObjType::Map) if op.pred.is_empty() && valid_entry_id(k) => {}
                OpType::Delete => {
                    return Err(refuse(
                        RefusalCode::AppendOnly,
                        format!(
                            "entry {} of {name} cannot be deleted: record a correction as a new entry",
                            clip(k, 40)
                        ),
                    ))
                }
                OpType::Make(ObjType::Map) if op.pred.is_empty() => {
                    return Err(refuse(
                        RefusalCode::InvalidValue,
                        format!("{} is not an entry id", clip(k, 40)),
                    ))
                }
                _ => {
                    return Err(refuse(
                        RefusalCode::AppendOnly,
                        format!(
                            "entry {} of {name} cannot be replaced: record a correction as a new entry",
                            clip(k, 40)
                        ),
                    ))
                }
            }
            if !log.writers.contains(&u.principal.role) {
                return Err(refuse(
                    RefusalCode::Forbidden,
                    format!("a {} may not add to {name}", u.principal.role),
                ));
            }
            // An id already in the log is caught after applying: the new
            // map then stands beside the old one (`check_values`), which is
            // cheaper than reading the log as it was.
            objs.insert(id, Obj::Entry(log));
            added.entries.push((log, k.to_string()));
            Ok(())
        }
        Some(Obj::Root(name, RootShape::Fields)) => {
            let field = map_key
                .and_then(|k| table::settable(name, k))
                .ok_or_else(|| {
                    refuse(
                        RefusalCode::UnknownKey,
                        format!(
                            "{name} has no field {}",
                            clip(map_key.unwrap_or("(position)"), 40)
                        ),
                    )
                })?;
            match &op.action {
                OpType::Put(_) => {}
                OpType::Delete => {
                    return Err(refuse(
                        RefusalCode::AppendOnly,
                        format!("{field} cannot be removed: set a new value"),
                    ))
                }
                _ => {
                    return Err(refuse(
                        RefusalCode::InvalidValue,
                        format!("{field} holds a plain value"),
                    ))
                }
            }
            // A value recorded before the upload is one this put replaces
            // (`pred`) and the upload did not make itself.
            let recorded = op
                .pred
                .iter()
                .any(|p| !added.ops.contains(&(p.0, p.1.clone())));
            if !table::may_overwrite(u.principal.role, field) && recorded {
                return Err(refuse(
                    RefusalCode::Forbidden,
                    format!(
                        "{field} is already recorded; only a supervisor or head office may change it"
                    ),
                ));
            }
            added.fields.push(field);
            Ok(())
        }
        Some(Obj::Root(_, RootShape::Links)) => {
            let Some(k) = map_key else {
                return Err(refuse(RefusalCode::InvalidValue, "links are keyed by case"));
            };
            if !matches!(op.action, OpType::Put(_)) || !op.pred.is_empty() {
                return Err(refuse(
                    RefusalCode::AppendOnly,
                    "a link to another case cannot be changed or removed",
                ));
            }
            if k.parse::<CaseId>().is_err() {
                return Err(refuse(
                    RefusalCode::InvalidValue,
                    format!("{} is not a case id", clip(k, 40)),
                ));
            }
            // A link already recorded is caught after applying, as for
            // entries (`check_values`).
            added.links.push(k.to_string());
            Ok(())
        }
        Some(Obj::Root(_, RootShape::Items)) if new_case => match (&op.action, map_key) {
            (OpType::Make(ObjType::Map), Some(k)) if k.len() <= 8 && op.pred.is_empty() => {
                objs.insert(id, Obj::Item);
                Ok(())
            }
            _ => Err(refuse(
                RefusalCode::InvalidValue,
                "items are maps keyed by a short number",
            )),
        },
        Some(Obj::Item) => match (&op.action, map_key) {
            (OpType::Put(_), Some(k)) if table::ITEM_FIELDS.iter().any(|f| f.key == k) => Ok(()),
            _ => Err(refuse(
                RefusalCode::UnknownKey,
                "an item has only sku and qty",
            )),
        },
        Some(Obj::Root(name, RootShape::Items | RootShape::Frozen)) => Err(refuse(
            RefusalCode::FixedField,
            format!("{name} cannot be changed after the case is opened"),
        )),
        Some(Obj::Root(name, RootShape::Fixed(_))) => Err(refuse(
            RefusalCode::FixedField,
            format!("{name} cannot be changed"),
        )),
        Some(Obj::Entry(log)) => {
            let Some(k) = map_key else {
                return Err(refuse(
                    RefusalCode::InvalidValue,
                    format!("an entry of {} is a map", log.key),
                ));
            };
            if log.field(k).is_none() {
                return Err(refuse(
                    RefusalCode::UnknownKey,
                    format!("an entry of {} has no field {}", log.key, clip(k, 40)),
                ));
            }
            match &op.action {
                OpType::Put(_) => Ok(()),
                _ => Err(refuse(
                    RefusalCode::InvalidValue,
                    format!("{k} of an entry of {} holds a plain value", log.key),
                )),
            }
        }
        None => Err(refuse(
            RefusalCode::AppendOnly,
            "this upload changes something already recorded (an existing entry or value); recorded entries cannot be edited or deleted",
        )),
    }
}

fn judge_root_op(
    u: &Upload<'_>,
    new_case: bool,
    added: &mut Added,
    id: OpKey,
    op: &automerge::legacy::Op,
    objs: &mut HashMap<OpKey, Obj>,
) -> Result<(), Refusal> {
    let Key::Map(key) = &op.key else {
        return Err(refuse(RefusalCode::Malformed, "the case root is a map"));
    };
    let Some((name, shape)) = table::ROOT.iter().find(|(k, _)| *k == key.as_str()) else {
        return Err(refuse(
            RefusalCode::UnknownKey,
            format!("a case has no field {}", clip(key, 40)),
        ));
    };
    if matches!(op.action, OpType::Delete) || !op.pred.is_empty() {
        return Err(refuse(
            if matches!(shape, RootShape::Fixed(_)) {
                RefusalCode::FixedField
            } else {
                RefusalCode::AppendOnly
            },
            format!("{name} of a case cannot be removed or replaced"),
        ));
    }
    if !added.root_keys.insert(name.to_string()) {
        return Err(refuse(
            RefusalCode::AppendOnly,
            format!("{name} is written twice"),
        ));
    }
    let expected = match shape {
        RootShape::Fixed(_) => None,
        RootShape::Text => Some(ObjType::Text),
        _ => Some(ObjType::Map),
    };
    match (&op.action, expected) {
        (OpType::Put(_), None) if new_case => Ok(()),
        (OpType::Put(_), None) => Err(refuse(
            RefusalCode::FixedField,
            format!("{name} of a case cannot be changed"),
        )),
        // A container missing from a case made by an older version may be
        // created; one that exists cannot be replaced.
        (OpType::Make(t), Some(e)) if *t == e => {
            if !new_case && matches!(u.doc.get_at(ROOT, *name, u.before), Ok(Some(_))) {
                return Err(refuse(
                    RefusalCode::AppendOnly,
                    format!("{name} of a case cannot be replaced"),
                ));
            }
            objs.insert(id, Obj::Root(name, *shape));
            Ok(())
        }
        _ => Err(refuse(
            RefusalCode::InvalidValue,
            format!("{name} has the wrong type"),
        )),
    }
}

/// Whether `v` fits `ty`.
fn fits(doc: &Automerge, obj: &ObjId, key: &str, ty: Ty) -> bool {
    match ty {
        Ty::Str(max) => read::string(doc, obj, key).is_some_and(|s| s.chars().count() <= max),
        Ty::Int => matches!(
            doc.get(obj, key),
            Ok(Some((Value::Scalar(s), _))) if matches!(s.as_ref(), automerge::ScalarValue::Int(_))
        ),
        Ty::Time => matches!(
            doc.get(obj, key),
            Ok(Some((Value::Scalar(s), _))) if matches!(s.as_ref(), automerge::ScalarValue::Timestamp(_))
        ),
        Ty::Bool => read::boolean(doc, obj, key).is_some(),
    }
}

/// The visible value of every key of one entry, read in one pass: an
/// entry has a dozen fields, and looking each up on its own (twice, to see
/// whether it is there and then whether it fits) was most of the judge's
/// time on a new case's upload.
struct EntryValues<'a> {
    values: Vec<automerge::iter::MapRangeItem<'a>>,
}

impl<'a> EntryValues<'a> {
    fn read(doc: &'a Automerge, entry: &ObjId) -> Self {
        EntryValues {
            values: doc.map_range(entry, ..).collect(),
        }
    }

    fn get(&self, key: &str) -> Option<&automerge::iter::MapRangeItem<'a>> {
        self.values.iter().find(|item| item.key == key)
    }

    /// As `read::string`: text, or a text object's content.
    fn string(&self, doc: &Automerge, key: &str) -> Option<String> {
        let item = self.get(key)?;
        match &item.value {
            ValueRef::Scalar(ScalarValueRef::Str(s)) => Some(s.to_string()),
            ValueRef::Object(ObjType::Text) => doc.text(item.id()).ok(),
            _ => None,
        }
    }

    /// As `read::int`: an integer or timestamp.
    fn int(&self, key: &str) -> Option<i64> {
        match &self.get(key)?.value {
            ValueRef::Scalar(ScalarValueRef::Int(i) | ScalarValueRef::Timestamp(i)) => Some(*i),
            ValueRef::Scalar(ScalarValueRef::Uint(u)) => i64::try_from(*u).ok(),
            _ => None,
        }
    }

    /// As [`fits`], on the value read.
    fn fits(&self, doc: &Automerge, key: &str, ty: Ty) -> bool {
        let scalar = self.get(key).and_then(|item| match &item.value {
            ValueRef::Scalar(s) => Some(s),
            ValueRef::Object(_) => None,
        });
        match ty {
            Ty::Str(max) => self
                .string(doc, key)
                .is_some_and(|s| s.chars().count() <= max),
            Ty::Int => matches!(scalar, Some(ScalarValueRef::Int(_))),
            Ty::Time => matches!(scalar, Some(ScalarValueRef::Timestamp(_))),
            Ty::Bool => matches!(scalar, Some(ScalarValueRef::Boolean(_))),
        }
    }
}

fn describe(ty: Ty) -> String {
    match ty {
        Ty::Str(max) => format!("text of at most {max} characters"),
        Ty::Int => "a whole number".into(),
        Ty::Time => "a time".into(),
        Ty::Bool => "true or false".into(),
    }
}

/// Checks what the upload's entries and fields hold; returns the number of
/// entries the case's logs hold with it.
fn check_values(
    u: &Upload<'_>,
    new_case: bool,
    added: &Added,
) -> Result<(usize, Vec<Placed>), Refusal> {
    let doc = u.doc;
    let p = u.principal;
    if new_case {
        check_new_case(u, added)?;
    }
    let mut timeline_types: HashMap<String, usize> = HashMap::new();
    let mut changed_fields: HashSet<String> = HashSet::new();
    let mut containers: HashMap<&str, ObjId> = HashMap::new();
    let mut placed = Vec::with_capacity(added.entries.len());
    for (log, key) in &added.entries {
        let container = match containers.get(log.key) {
            Some(c) => c.clone(),
            None => {
                let c = read::map(doc, &ROOT, log.key).ok_or_else(|| {
                    refuse(RefusalCode::Malformed, format!("{} is missing", log.key))
                })?;
                containers.insert(log.key, c.clone());
                c
            }
        };
        if doc
            .get_all(&container, key.as_str())
            .map(|v| v.len())
            .unwrap_or(0)
            != 1
        {
            return Err(refuse(
                RefusalCode::AppendOnly,
                format!("entry {key} of {} is written twice", log.key),
            ));
        }
        let e = read::map(doc, &container, key)
            .ok_or_else(|| refuse(RefusalCode::Malformed, format!("entry {key} is not a map")))?;
        let values = EntryValues::read(doc, &e);
        for f in log.all_fields() {
            let present = values.get(f.key).is_some();
            if !present {
                if f.required {
                    return Err(refuse(
                        RefusalCode::InvalidValue,
                        format!("an entry of {} needs {}", log.key, f.key),
                    ));
                }
                continue;
            }
            if !values.fits(doc, f.key, f.ty) {
                return Err(refuse(
                    RefusalCode::InvalidValue,
                    format!(
                        "{} of an entry of {} must be {}",
                        f.key,
                        log.key,
                        describe(f.ty)
                    ),
                ));
            }
        }
        let ty = values.string(doc, "type").unwrap_or_default();
        placed.push(Placed {
            obj: e.clone(),
            at: values.int("at"),
            ty: ty.clone(),
            to: values.string(doc, "to"),
        });
        if !log.types.contains(&ty.as_str()) {
            return Err(refuse(
                RefusalCode::InvalidValue,
                format!("{} is not a type of entry of {}", clip(&ty, 40), log.key),
            ));
        }
        if ty == "created" && !new_case {
            return Err(refuse(
                RefusalCode::InvalidValue,
                "a case is created only once",
            ));
        }
        let author = values.string(doc, "author").unwrap_or_default();
        let role = values.string(doc, "role").unwrap_or_default();
        let device = values.string(doc, "device").unwrap_or_default();
        if author != p.user.as_str() || role != p.role.as_str() || device != p.device.as_str() {
            return Err(refuse(
                RefusalCode::Identity,
                format!(
                    "entry {key} claims to be by {} ({}) on {}, but this connection is {} ({}) on {}",
                    clip(&author, 40),
                    clip(&role, 20),
                    clip(&device, 40),
                    p.user,
                    p.role,
                    p.device
                ),
            ));
        }
        if log.key == crate::case::schema::root::TIMELINE {
            *timeline_types.entry(ty.clone()).or_default() += 1;
            if ty == "field_changed" {
                if let Some(f) = values.string(doc, "field") {
                    changed_fields.insert(f);
                }
            }
        }
    }
    // Each entry of another log comes with its timeline entry, so the
    // timeline head office reads tells the whole story.
    let mut needed: HashMap<&str, usize> = HashMap::new();
    for (log, _) in &added.entries {
        if let Some(t) = log.timeline {
            *needed.entry(t).or_default() += 1;
        }
    }
    if !added.links.is_empty() {
        *needed.entry("linked_case").or_default() += added.links.len();
    }
    for (t, n) in needed {
        if timeline_types.get(t).copied().unwrap_or(0) < n {
            return Err(refuse(
                RefusalCode::InvalidValue,
                format!("every {t} needs its timeline entry"),
            ));
        }
    }
    for field in &added.fields {
        let (container, key) = field.place();
        let obj = read::map(doc, &ROOT, container)
            .ok_or_else(|| refuse(RefusalCode::Malformed, format!("{container} is missing")))?;
        let value = if field.is_bool() {
            read::boolean(doc, &obj, key).map(|b| b.to_string())
        } else {
            match doc.get(&obj, key) {
                Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
                    automerge::ScalarValue::Str(s) => Some(s.to_string()),
                    _ => None,
                },
                _ => None,
            }
        };
        let value = match value {
            Some(v) if field.is_personal() && seal::is_sealed(&v) => {
                match open_sealed(u, *field, &v)? {
                    Some(plain) => Some(plain),
                    // Without the key only the size can be checked.
                    None => {
                        if !new_case && !changed_fields.contains(field.as_str()) {
                            return Err(refuse(
                                RefusalCode::InvalidValue,
                                format!("setting {field} needs its field_changed timeline entry"),
                            ));
                        }
                        continue;
                    }
                }
            }
            Some(_) if !field.is_personal() && value.as_deref().is_some_and(seal::is_sealed) => {
                return Err(refuse(
                    RefusalCode::InvalidValue,
                    format!("{field} is not personal data and may not be sealed"),
                ));
            }
            v => v,
        };
        let value = value.ok_or_else(|| {
            refuse(
                RefusalCode::InvalidValue,
                format!(
                    "{field} must be {}",
                    if field.is_bool() {
                        "true or false"
                    } else {
                        "text"
                    }
                ),
            )
        })?;
        field
            .validate(&value)
            .map_err(|e| refuse(RefusalCode::InvalidValue, clip(&e.to_string(), 200)))?;
        if !new_case && !changed_fields.contains(field.as_str()) {
            return Err(refuse(
                RefusalCode::InvalidValue,
                format!("setting {field} needs its field_changed timeline entry"),
            ));
        }
    }
    if added.description {
        let text =
            read::string(doc, &ROOT, crate::case::schema::root::DESCRIPTION).unwrap_or_default();
        if text.chars().count() > table::MAX_TEXT {
            return Err(refuse(
                RefusalCode::InvalidValue,
                format!(
                    "the description is longer than {} characters",
                    table::MAX_TEXT
                ),
            ));
        }
        if !new_case && !changed_fields.contains(CaseField::Description.as_str()) {
            return Err(refuse(
                RefusalCode::InvalidValue,
                "editing the description needs its field_changed timeline entry",
            ));
        }
    }
    if let Some(links) = read::map(doc, &ROOT, crate::case::service::RELATED) {
        for k in &added.links {
            if doc
                .get_all(&links, k.as_str())
                .map(|v| v.len())
                .unwrap_or(0)
                != 1
            {
                return Err(refuse(
                    RefusalCode::AppendOnly,
                    format!("this case already links case {}", clip(k, 40)),
                ));
            }
            let r = read::string(doc, &links, k).unwrap_or_default();
            if !table::RELATIONS.contains(&r.as_str()) {
                return Err(refuse(
                    RefusalCode::InvalidValue,
                    format!(
                        "{} is not a relation: use {}",
                        clip(&r, 40),
                        table::RELATIONS.join(" or ")
                    ),
                ));
            }
        }
    }
    // Counting a log costs a pass over it: the relay keeps the count, and
    // entries are only ever added.
    let total = match u.entries_before {
        Some(n) => n + added.entries.len(),
        None => table::LOGS
            .iter()
            .filter_map(|l| read::map(doc, &ROOT, l.key))
            .map(|m| doc.length(&m))
            .sum(),
    };
    if !added.entries.is_empty() && total > u.policy.max_entries_per_case {
        return Err(refuse(
            RefusalCode::TooMany,
            format!(
                "the case would have {total} entries, over the limit of {}: close it and open a follow-up case",
                u.policy.max_entries_per_case
            ),
        ));
    }
    if new_case {
        check_created_once(added, &placed)?;
    }
    Ok((total, placed))
}

/// A new case: every root key present with its type, and the creation
/// fields naming this connection and this case.
/// Longest plain text a sealed personal field may hold, in bytes: the
/// longest value `CaseField::validate` accepts (200 characters) at four
/// bytes each.
const MAX_SEALED_PLAIN: usize = 800;

/// Opens a sealed personal field with the case's key: `Some` plain text,
/// `None` when the relay does not hold the key (the size checked only).
fn open_sealed(u: &Upload<'_>, field: CaseField, value: &str) -> Result<Option<String>, Refusal> {
    let bad = |e: seal::SealError| {
        refuse(
            RefusalCode::InvalidValue,
            format!("{field}: {}", clip(&e.to_string(), 120)),
        )
    };
    let len = seal::plain_len(value).map_err(bad)?;
    if len > MAX_SEALED_PLAIN {
        return Err(refuse(
            RefusalCode::InvalidValue,
            format!("{field} is longer than {MAX_SEALED_PLAIN} bytes"),
        ));
    }
    match u.key {
        Some(k) => seal::open(k, u.case, field.as_str(), value)
            .map(Some)
            .map_err(bad),
        None => Ok(None),
    }
}

fn check_new_case(u: &Upload<'_>, added: &Added) -> Result<(), Refusal> {
    let doc = u.doc;
    let p = u.principal;
    // The root's keys in one pass, as for an entry.
    let rootv = EntryValues::read(doc, &ROOT);
    for (key, shape) in table::ROOT {
        if !added.root_keys.contains(*key) {
            return Err(refuse(
                RefusalCode::InvalidValue,
                format!("a new case needs {key}"),
            ));
        }
        if let RootShape::Fixed(ty) = shape {
            if !rootv.fits(doc, key, *ty) {
                return Err(refuse(
                    RefusalCode::InvalidValue,
                    format!("{key} of a case must be {}", describe(*ty)),
                ));
            }
        }
    }
    let s = |k: &str| rootv.string(doc, k).unwrap_or_default();
    use crate::case::schema::root;
    if s(root::ID) != u.case.to_string() {
        return Err(refuse(
            RefusalCode::Identity,
            format!("case {} was uploaded without its own id", u.case),
        ));
    }
    s(root::KIND)
        .parse::<crate::case::CaseKind>()
        .map_err(|e| refuse(RefusalCode::InvalidValue, e.to_string()))?;
    for (key, expected) in [
        (root::STORE_ID, p.store.as_str()),
        (root::CREATED_BY, p.user.as_str()),
        (root::DEVICE_ID, p.device.as_str()),
    ] {
        if s(key) != expected {
            return Err(refuse(
                RefusalCode::Identity,
                format!(
                    "{key} of a new case must be this connection's ({expected}), not {}",
                    clip(&s(key), 40)
                ),
            ));
        }
    }
    if let Some(items) = read::map(doc, &ROOT, root::ITEMS) {
        for k in doc.keys(&items) {
            let Some(item) = read::map(doc, &items, &k) else {
                return Err(refuse(RefusalCode::InvalidValue, "an item is a map"));
            };
            for f in table::ITEM_FIELDS {
                if !fits(doc, &item, f.key, f.ty) {
                    return Err(refuse(
                        RefusalCode::InvalidValue,
                        format!("{} of an item must be {}", f.key, describe(f.ty)),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A new case has exactly one `created` entry in its timeline (counted on
/// what [`check_values`] read of the added entries).
fn check_created_once(added: &Added, placed: &[Placed]) -> Result<(), Refusal> {
    let created = added
        .entries
        .iter()
        .zip(placed)
        .filter(|((l, _), p)| l.key == crate::case::schema::root::TIMELINE && p.ty == "created")
        .count();
    if created != 1 {
        return Err(refuse(
            RefusalCode::InvalidValue,
            "a new case has exactly one created entry",
        ));
    }
    Ok(())
}
