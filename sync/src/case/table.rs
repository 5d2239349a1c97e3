//! The write-rules table of the case document: every root key, every log
//! and the shape of its entries, every settable field and who may set it.
//!
//! Device edits write only what this table names (a test runs every edit
//! through the relay's judge), and the relay's judge refuses any operation
//! the table does not allow for the connection's role. Adding a field or a
//! log means adding it here, or the relay will refuse it.

use super::edit::CaseField;
use super::schema::root;
use crate::access::Role;
use crate::case::booking;
use crate::case::evidence;
use crate::case::service;
use crate::money;
use crate::workflow::history;

/// The type and bounds of a scalar value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// A string of at most this many characters.
    Str(usize),
    /// A signed integer.
    Int,
    /// A boolean.
    Bool,
    /// Milliseconds since the epoch (Automerge timestamp).
    Time,
}

/// What a root key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootShape {
    /// A scalar set once when the case is opened and never changed.
    Fixed(Ty),
    /// Settable fields ([`CaseField`]), overwritten by later edits.
    Fields,
    /// The description text, edited character by character.
    Text,
    /// Items written when the case is opened only.
    Items,
    /// A log: entries appended, never edited or removed.
    Log,
    /// Links to other cases: keys added, never changed or removed.
    Links,
    /// Reserved: written by no edit, so no upload may write it.
    Frozen,
}

/// Every root key of a case and what it holds. A case is opened with all
/// of them (so no two devices ever create the same map concurrently).
pub const ROOT: &[(&str, RootShape)] = &[
    (root::SCHEMA, RootShape::Fixed(Ty::Int)),
    (root::ID, RootShape::Fixed(Ty::Str(36))),
    (root::CASE_NO, RootShape::Fixed(Ty::Str(80))),
    (root::KIND, RootShape::Fixed(Ty::Str(32))),
    (root::STORE_ID, RootShape::Fixed(Ty::Str(64))),
    (root::CREATED_BY, RootShape::Fixed(Ty::Str(64))),
    (root::DEVICE_ID, RootShape::Fixed(Ty::Str(64))),
    (root::CREATED_AT, RootShape::Fixed(Ty::Time)),
    (root::CUSTOMER, RootShape::Fields),
    (root::ORDER, RootShape::Fields),
    (root::FIELDS, RootShape::Fields),
    (root::ITEMS, RootShape::Items),
    (root::DESCRIPTION, RootShape::Text),
    (root::TIMELINE, RootShape::Log),
    (root::CONTACTS, RootShape::Log),
    (root::TAGS, RootShape::Frozen),
    (history::TRANSITIONS, RootShape::Log),
    (history::RESOLUTIONS, RootShape::Log),
    (money::OFFERS, RootShape::Log),
    (money::DECISIONS, RootShape::Log),
    (service::SURVEYS, RootShape::Log),
    (service::ESCALATIONS, RootShape::Log),
    (service::FREIGHT, RootShape::Log),
    (service::ASSIGNMENTS, RootShape::Log),
    (service::RELATED, RootShape::Links),
    (evidence::EVIDENCE, RootShape::Log),
    (evidence::REMOVALS, RootShape::Log),
    (booking::BOOKINGS, RootShape::Log),
];

/// The shape of a root key, if the case has it.
pub fn root_shape(key: &str) -> Option<RootShape> {
    ROOT.iter().find(|(k, _)| *k == key).map(|(_, s)| *s)
}

/// Fields of an item written at creation.
pub const ITEM_FIELDS: &[Field] = &[Field::req("sku", Ty::Str(64)), Field::req("qty", Ty::Int)];

/// Values a link to another case may have.
pub const RELATIONS: &[&str] = &["follow_up", "origin"];

/// One field of a log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Key in the entry.
    pub key: &'static str,
    /// Type and bound.
    pub ty: Ty,
    /// Whether every entry has it.
    pub required: bool,
}

impl Field {
    const fn req(key: &'static str, ty: Ty) -> Field {
        Field {
            key,
            ty,
            required: true,
        }
    }
    const fn opt(key: &'static str, ty: Ty) -> Field {
        Field {
            key,
            ty,
            required: false,
        }
    }
}

/// Fields every entry of every log has: what it is, who wrote it, where
/// and when (device time).
pub const COMMON: &[Field] = &[
    Field::req("type", Ty::Str(32)),
    Field::req("author", Ty::Str(64)),
    Field::req("role", Ty::Str(16)),
    Field::req("device", Ty::Str(64)),
    Field::req("at", Ty::Time),
];

/// Longest entry id: 32 hex characters from the edit's nonce, with room.
pub const MAX_ENTRY_ID: usize = 64;

/// A log: a map of entries keyed by random ids, append-only.
#[derive(Debug, Clone, Copy)]
pub struct Log {
    /// Root key.
    pub key: &'static str,
    /// Allowed values of the entry's `type`.
    pub types: &'static [&'static str],
    /// Fields beyond [`COMMON`].
    pub fields: &'static [Field],
    /// Roles that may append.
    pub writers: &'static [Role],
    /// The timeline entry type each entry of this log comes with, so the
    /// timeline tells the whole story.
    pub timeline: Option<&'static str>,
}

const ALL_ROLES: &[Role] = &[
    Role::Staff,
    Role::Technician,
    Role::Supervisor,
    Role::HeadOffice,
];
const NOT_TECHNICIAN: &[Role] = &[Role::Staff, Role::Supervisor, Role::HeadOffice];
const MANAGERS: &[Role] = &[Role::Supervisor, Role::HeadOffice];

/// Types of timeline entries.
pub const TIMELINE_TYPES: &[&str] = &[
    "created",
    "note",
    "call",
    "sms",
    "visit",
    "field_changed",
    "status_change",
    "conflict_resolved",
    "offer",
    "offer_decision",
    "survey",
    "escalation",
    "evidence",
    "evidence_removed",
    "freight",
    "linked_case",
    "assignment",
    "booking",
];

/// Longest free text of an entry (a note, a reason).
pub const MAX_TEXT: usize = 10_000;

/// Every log of a case.
pub const LOGS: &[Log] = &[
    Log {
        key: root::TIMELINE,
        types: TIMELINE_TYPES,
        fields: &[
            Field::opt("text", Ty::Str(MAX_TEXT)),
            Field::opt("field", Ty::Str(32)),
            Field::opt("value", Ty::Str(MAX_TEXT)),
        ],
        writers: ALL_ROLES,
        timeline: None,
    },
    Log {
        key: root::CONTACTS,
        types: &["contact"],
        fields: &[
            Field::req("channel", Ty::Str(8)),
            Field::req("outcome", Ty::Str(2_000)),
            Field::opt("direction", Ty::Str(8)),
            Field::opt("flags", Ty::Str(2_000)),
            Field::opt("override", Ty::Str(2_000)),
        ],
        writers: ALL_ROLES,
        timeline: None,
    },
    Log {
        key: history::TRANSITIONS,
        types: &["transition"],
        fields: &[
            Field::req("from", Ty::Str(32)),
            Field::req("to", Ty::Str(32)),
            Field::req("prev", Ty::Str(MAX_ENTRY_ID)),
            Field::req("policy_version", Ty::Int),
            Field::opt("reason", Ty::Str(2_000)),
        ],
        writers: ALL_ROLES,
        timeline: Some("status_change"),
    },
    Log {
        key: history::RESOLUTIONS,
        types: &["resolution"],
        fields: &[
            Field::req("conflict", Ty::Str(MAX_ENTRY_ID)),
            Field::req("choose", Ty::Str(32)),
        ],
        writers: MANAGERS,
        timeline: Some("conflict_resolved"),
    },
    Log {
        key: money::OFFERS,
        types: &["offer"],
        fields: &[
            Field::req("tier", Ty::Str(16)),
            Field::req("amount_fen", Ty::Int),
            Field::req("policy_version", Ty::Int),
            Field::req("needs_approval", Ty::Bool),
            Field::opt("note", Ty::Str(2_000)),
        ],
        writers: NOT_TECHNICIAN,
        timeline: Some("offer"),
    },
    Log {
        key: money::DECISIONS,
        types: &["offer_decision"],
        fields: &[
            Field::req("offer", Ty::Str(MAX_ENTRY_ID)),
            Field::req("decision", Ty::Str(16)),
            Field::req("policy_version", Ty::Int),
        ],
        writers: NOT_TECHNICIAN,
        timeline: Some("offer_decision"),
    },
    Log {
        key: service::SURVEYS,
        types: &["survey"],
        fields: &[
            Field::req("description", Ty::Int),
            Field::req("attitude", Ty::Int),
            Field::req("speed", Ty::Int),
            Field::req("logistics", Ty::Int),
            Field::opt("comment", Ty::Str(2_000)),
        ],
        writers: ALL_ROLES,
        timeline: Some("survey"),
    },
    Log {
        key: service::ESCALATIONS,
        types: &["escalation"],
        fields: &[
            Field::req("level", Ty::Str(32)),
            Field::opt("reference", Ty::Str(200)),
        ],
        writers: ALL_ROLES,
        timeline: Some("escalation"),
    },
    Log {
        key: service::FREIGHT,
        types: &["freight"],
        fields: &[
            Field::req("outbound", Ty::Str(16)),
            Field::req("return", Ty::Str(16)),
            Field::req("rule", Ty::Int),
            Field::req("rule_text", Ty::Str(2_000)),
            Field::req("policy_version", Ty::Int),
        ],
        writers: ALL_ROLES,
        timeline: Some("freight"),
    },
    Log {
        key: evidence::EVIDENCE,
        types: &["evidence"],
        fields: &[
            Field::req("kind", Ty::Str(16)),
            Field::req("hash", Ty::Str(64)),
            Field::req("size", Ty::Int),
            Field::req("media_type", Ty::Str(129)),
            Field::req("captured_at", Ty::Time),
            Field::opt("caption", Ty::Str(evidence::MAX_CAPTION)),
        ],
        writers: ALL_ROLES,
        timeline: Some("evidence"),
    },
    Log {
        key: evidence::REMOVALS,
        types: &["evidence_removal"],
        fields: &[
            Field::req("hash", Ty::Str(64)),
            Field::req("reason", Ty::Str(evidence::MAX_CAPTION)),
        ],
        writers: MANAGERS,
        timeline: Some("evidence_removed"),
    },
    Log {
        key: service::ASSIGNMENTS,
        types: &["assignment"],
        fields: &[Field::req("assignee", Ty::Str(64))],
        writers: NOT_TECHNICIAN,
        timeline: Some("assignment"),
    },
    Log {
        key: booking::BOOKINGS,
        types: booking::TYPES,
        // Which fields each type needs is judged in `relay/validate.rs`.
        fields: &[
            Field::opt("booking", Ty::Str(MAX_ENTRY_ID)),
            Field::opt("tech", Ty::Str(64)),
            Field::opt("start", Ty::Time),
            Field::opt("minutes", Ty::Int),
            Field::opt("window_end", Ty::Time),
            Field::opt("address", Ty::Str(200)),
            Field::opt("reason", Ty::Str(booking::MAX_REASON)),
            Field::opt("override", Ty::Str(booking::MAX_REASON)),
        ],
        // Technicians write only their own visits (arrive, complete,
        // no_show); `relay/validate.rs` holds them to that.
        writers: ALL_ROLES,
        timeline: Some("booking"),
    },
];

/// The log at root key `key`.
pub fn log(key: &str) -> Option<&'static Log> {
    LOGS.iter().find(|l| l.key == key)
}

impl Log {
    /// The field `key` of this log's entries (common fields included).
    pub fn field(&self, key: &str) -> Option<&'static Field> {
        COMMON
            .iter()
            .chain(self.fields.iter())
            .find(|f| f.key == key)
    }

    /// Every field, common ones first.
    pub fn all_fields(&self) -> impl Iterator<Item = &'static Field> {
        COMMON.iter().chain(self.fields.iter())
    }
}

/// The settable field stored at `key` of the root map `container`.
pub fn settable(container: &str, key: &str) -> Option<CaseField> {
    CaseField::ALL
        .into_iter()
        .filter(|f| *f != CaseField::Description)
        .find(|f| f.place() == (container, key))
}

/// Whether `role` may set `field` when it already has a value. Staff and
/// technicians set the facts that open a return window once; changing them
/// later is a supervisor's call (domain.md §4).
pub fn may_overwrite(role: Role, field: CaseField) -> bool {
    let fixes_window = matches!(
        field,
        CaseField::PurchaseDate
            | CaseField::ReceivedDate
            | CaseField::Category
            | CaseField::SaleChannel
            // Changing a serial would move repairs between products.
            | CaseField::Serial
    );
    !fixes_window || matches!(role, Role::Supervisor | Role::HeadOffice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for (k, _) in ROOT {
            assert!(seen.insert(*k), "root key {k} twice");
        }
        for l in LOGS {
            assert_eq!(root_shape(l.key), Some(RootShape::Log), "{}", l.key);
            let mut f = std::collections::HashSet::new();
            for field in l.all_fields() {
                assert!(f.insert(field.key), "{} field {} twice", l.key, field.key);
            }
            if let Some(t) = l.timeline {
                assert!(TIMELINE_TYPES.contains(&t));
            }
        }
        for (k, s) in ROOT {
            if *s == RootShape::Log {
                assert!(log(k).is_some(), "log {k} has no entry shape");
            }
        }
    }

    #[test]
    fn every_settable_field_has_a_place() {
        for f in CaseField::ALL {
            let (c, k) = f.place();
            if f == CaseField::Description {
                assert_eq!(root_shape(c), Some(RootShape::Text));
            } else {
                assert_eq!(root_shape(c), Some(RootShape::Fields), "{f}");
                assert_eq!(settable(c, k), Some(f));
            }
        }
    }
}
