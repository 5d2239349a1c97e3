//! One case of a list or queue, as JSON and as a CSV row: the same
//! columns everywhere, read from the case's summary alone.

use aftercase_sync::relay::summary::CaseSummary;
use aftercase_sync::{CaseId, Millis};
use serde_json::{json, Value};

/// CSV columns of a case row, in order.
pub const COLUMNS: &[&str] = &[
    "id",
    "case_no",
    "store_id",
    "kind",
    "status",
    "assignee",
    "open_conflicts",
    "awaiting_approval",
    "next_due",
    "breached",
    "escalation",
    "created_by",
    "created_at",
    "updated_at",
    "last_user",
    "last_device",
];

fn time(ms: Option<i64>) -> Option<String> {
    ms.map(|m| Millis(m).to_rfc3339())
}

/// The case as JSON, its deadlines judged at `now`.
pub fn json(id: CaseId, s: &CaseSummary, now: i64) -> Value {
    json!({
        "id": id.to_string(),
        "case_no": s.case_no,
        "store_id": s.store,
        "kind": s.kind,
        "status": s.status,
        "assignee": s.assignee,
        "open_conflicts": s.open_conflicts,
        "awaiting_approval": s.awaiting_approval,
        "next_due": time(s.next_due()),
        "breached": s.breached_names(now),
        "escalation": s.escalation,
        "created_by": s.created_by,
        "created_at": time(s.created_at),
        "updated_at": time(Some(s.updated_at)),
        "last_user": s.last_user,
        "last_device": s.last_device,
    })
}

/// The case as a CSV row (see [`COLUMNS`]).
pub fn csv(id: CaseId, s: &CaseSummary, now: i64) -> Vec<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        id.to_string(),
        opt(&s.case_no),
        s.store.clone(),
        s.kind.clone(),
        opt(&s.status),
        opt(&s.assignee),
        s.open_conflicts.to_string(),
        s.awaiting_approval.to_string(),
        time(s.next_due()).unwrap_or_default(),
        s.breached_names(now).join(" "),
        opt(&s.escalation),
        s.created_by.clone(),
        time(s.created_at).unwrap_or_default(),
        time(Some(s.updated_at)).unwrap_or_default(),
        s.last_user.clone(),
        s.last_device.clone(),
    ]
}
