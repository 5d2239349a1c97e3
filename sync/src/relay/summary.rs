//! The relay's read model: one summary per case, derived from the case
//! when a change is committed and stored in the same batch, so head
//! office's lists and queues never load documents and never disagree with
//! them. Rebuildable from the documents ([`super::Relay::reindex`]).
//!
//! Plain fields only, so a SQL backend can hold the same thing as an
//! indexed table.

use crate::access::CaseMeta;
use crate::case::CaseView;
use crate::money::{self, Tier};
use serde::{Deserialize, Serialize};

/// What head office's lists, queues and metrics need of a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSummary {
    /// Human case number.
    pub case_no: Option<String>,
    /// Kind, as first uploaded.
    pub kind: String,
    /// Owning store (relay metadata).
    pub store: String,
    /// Current workflow state.
    pub status: Option<String>,
    /// Assigned technician (relay metadata, trusted times).
    pub assignee: Option<String>,
    /// Unresolved workflow and money conflicts.
    pub open_conflicts: u32,
    /// Open deadlines: name and due time (ms). Whether one is breached
    /// depends on when it is asked, so it is decided at read time.
    pub open_timers: Vec<(String, i64)>,
    /// Deadlines met late.
    pub late: Vec<String>,
    /// Offers waiting for a supervisor or head office.
    pub awaiting_approval: u32,
    /// Compensation granted (approved or accepted), in fen.
    pub granted_virtual_fen: i64,
    /// Cash compensation granted, in fen.
    pub granted_cash_fen: i64,
    /// Escalation level reached.
    pub escalation: Option<String>,
    /// Survey scores: description, attitude, speed, logistics.
    pub survey: Option<[u8; 4]>,
    /// Device time the case was opened (trusted), ms.
    pub created_at: Option<i64>,
    /// Relay time of the latest accepted change, ms.
    pub updated_at: i64,
    /// Who sent the latest accepted change, and from which device.
    pub last_user: String,
    /// See `last_user`.
    pub last_device: String,
    /// The policy version the deadlines were computed under.
    #[serde(default)]
    pub policy_version: u32,
}

impl CaseSummary {
    /// The summary of a case: `view` is the case as head office sees it
    /// (trusted times), `doc` the same document.
    pub fn derive(
        view: &CaseView,
        doc: &automerge::Automerge,
        meta: &CaseMeta,
        last_user: &str,
        last_device: &str,
        policy_version: u32,
    ) -> CaseSummary {
        let offers = money::offers(doc);
        CaseSummary {
            case_no: view.case_no.clone(),
            kind: meta.kind.clone(),
            store: meta.store.to_string(),
            status: view.status.clone(),
            assignee: meta.assignee.as_ref().map(|a| a.to_string()),
            open_conflicts: u32::try_from(
                view.conflicts.iter().filter(|c| c.status == "open").count(),
            )
            .unwrap_or(u32::MAX),
            open_timers: view
                .timers
                .iter()
                .filter(|t| !t.done)
                .map(|t| (t.name.clone(), t.due_millis()))
                .collect(),
            late: view
                .timers
                .iter()
                .filter(|t| t.done && t.breached)
                .map(|t| t.name.clone())
                .collect(),
            awaiting_approval: u32::try_from(
                offers.iter().filter(|o| o.status == "proposed").count(),
            )
            .unwrap_or(u32::MAX),
            granted_virtual_fen: money::granted(&offers, Tier::Virtual, None),
            granted_cash_fen: money::granted(&offers, Tier::Cash, None),
            escalation: view.escalation.clone(),
            survey: view
                .survey
                .as_ref()
                .map(|s| [s.description, s.attitude, s.speed, s.logistics]),
            created_at: view
                .created_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis()),
            updated_at: meta.last_received.0,
            last_user: last_user.to_string(),
            last_device: last_device.to_string(),
            policy_version,
        }
    }

    /// The earliest open deadline, ms.
    pub fn next_due(&self) -> Option<i64> {
        self.open_timers.iter().map(|(_, d)| *d).min()
    }
}
