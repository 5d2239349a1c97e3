//! One case of a list or queue, as JSON and as a CSV row: the same
//! columns everywhere, read from the case's summary alone.

use aftercase_sync::relay::summary::CaseSummary;
use aftercase_sync::{CaseId, Millis};
use serde::Serialize;
use utoipa::ToSchema;

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

/// One case of a list or queue as JSON: the schema of the OpenAPI
/// document is derived from this struct, and the handlers send it. Like
/// every answer's, its empty values are sent as null, never left out, so
/// the schema lists them as required.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CaseRow {
    /// Case UUID.
    pub id: String,
    /// STORE-DEVICE-SEQ.
    #[schema(required = true)]
    pub case_no: Option<String>,
    /// The store that owns the case.
    pub store_id: String,
    /// repair, installation, return_exchange, damage_claim or complaint.
    pub kind: String,
    /// Current state, derived from the workflow events.
    #[schema(required = true)]
    pub status: Option<String>,
    /// The technician or installer the case is assigned to.
    #[schema(required = true)]
    pub assignee: Option<String>,
    /// Open workflow, money or scheduling conflicts.
    pub open_conflicts: u32,
    /// Offers waiting for a supervisor's or head office's approval.
    pub awaiting_approval: u32,
    /// The earliest open deadline, RFC 3339.
    #[schema(required = true)]
    pub next_due: Option<String>,
    /// Deadlines missed (open and past due, or met late).
    pub breached: Vec<String>,
    /// The highest escalation step reached.
    #[schema(required = true)]
    pub escalation: Option<String>,
    /// Who opened the case.
    pub created_by: String,
    /// When it was opened, RFC 3339.
    #[schema(required = true)]
    pub created_at: Option<String>,
    /// When the relay last accepted a change to it, RFC 3339.
    pub updated_at: String,
    /// Who sent that change.
    pub last_user: String,
    /// From which device.
    pub last_device: String,
}

/// A page of a case list or flag queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct CasePage {
    /// The cases of this page, in case-id order.
    pub cases: Vec<CaseRow>,
    /// `after=` for the next page; null on the last.
    #[schema(required = true)]
    pub next: Option<String>,
}

/// The case as a JSON row, its deadlines judged at `now`.
pub fn json(id: CaseId, s: &CaseSummary, now: i64) -> CaseRow {
    CaseRow {
        id: id.to_string(),
        case_no: s.case_no.clone(),
        store_id: s.store.clone(),
        kind: s.kind.clone(),
        status: s.status.clone(),
        assignee: s.assignee.clone(),
        open_conflicts: s.open_conflicts,
        awaiting_approval: s.awaiting_approval,
        next_due: time(s.next_due()),
        breached: s
            .breached_names(now)
            .into_iter()
            .map(String::from)
            .collect(),
        escalation: s.escalation.clone(),
        created_by: s.created_by.clone(),
        created_at: time(s.created_at),
        updated_at: Millis(s.updated_at).to_rfc3339(),
        last_user: s.last_user.clone(),
        last_device: s.last_device.clone(),
    }
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
