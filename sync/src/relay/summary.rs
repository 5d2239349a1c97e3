//! The relay's read model: one summary per case, derived from the case
//! when a change is committed and stored in the same batch, so head
//! office's lists and queues never load documents and never disagree with
//! them. Rebuildable from the documents ([`super::Relay::reindex`]).
//!
//! Plain fields only, so a SQL backend can hold the same thing as an
//! indexed table.

use crate::access::CaseMeta;
use crate::case::{CaseKind, CaseView};
use crate::money::{self, Tier};
use crate::workflow::{history, table};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of what a summary holds: a stored summary of an older version
/// is derived again from its document when read (new fields filled in).
pub const SUMMARY_SCHEMA: u32 = 3;

/// Compensation granted on a case: tier, amount in fen and who approved it
/// (the proposer, when within their own authority).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Granted {
    /// virtual or cash.
    pub tier: String,
    /// Amount in fen.
    pub fen: i64,
    /// Who approved it.
    pub approver: String,
}

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
    /// [`SUMMARY_SCHEMA`] when derived (0: before fields below existed).
    #[serde(default)]
    pub schema: u32,
    /// Who opened the case (relay metadata), for technicians' scoping.
    #[serde(default)]
    pub created_by: String,
    /// Complaint category.
    #[serde(default)]
    pub category: Option<String>,
    /// SKUs of the case's product lines, sorted, without repeats.
    #[serde(default)]
    pub skus: Vec<String>,
    /// The customer's phone as a salted hash (hex), so repeat complaints
    /// can be counted without the read model holding the number.
    #[serde(default)]
    pub customer: Option<String>,
    /// The path of states with the (trusted) time each was entered, ms,
    /// starting with the initial state at `created_at`.
    #[serde(default)]
    pub states: Vec<(String, i64)>,
    /// When a final state other than `cancelled` was first reached, ms.
    #[serde(default)]
    pub resolved_at: Option<i64>,
    /// Deadlines met: name and whether late.
    #[serde(default)]
    pub met: Vec<(String, bool)>,
    /// Compensation granted.
    #[serde(default)]
    pub granted: Vec<Granted>,
    /// Contact attempts made under a supervisor's override of the rules.
    #[serde(default)]
    pub contact_overrides: u32,
    /// Repairs sent back to the bench after a failed acceptance.
    #[serde(default)]
    pub reworks: u32,
    /// The case's active bookings, placed in their technicians'
    /// calendars (the read model finds overlaps across cases from these).
    #[serde(default)]
    pub bookings: Vec<crate::rules::calendar::Placed>,
    /// Visits the customer missed on this case.
    #[serde(default)]
    pub no_shows: u32,
}

/// The customer key: SHA-256 of `salt` and the phone's digits, truncated
/// to 16 bytes (hex). `None` without a phone or without a salt.
pub fn customer_key(salt: &[u8], phone: Option<&str>) -> Option<String> {
    let digits: String = phone?.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() || salt.is_empty() {
        return None;
    }
    let mut h = Sha256::new();
    h.update(salt);
    h.update(digits.as_bytes());
    let d = h.finalize();
    Some(d.iter().take(16).map(|b| format!("{b:02x}")).collect())
}

impl CaseSummary {
    /// The summary of a case: `view` is the case as head office sees it
    /// (trusted times), `doc` the same document; `salt` keys the customer
    /// hash.
    pub fn derive(
        view: &CaseView,
        doc: &automerge::Automerge,
        meta: &CaseMeta,
        last: (&str, &str),
        policy_version: u32,
        salt: &[u8],
    ) -> CaseSummary {
        let (last_user, last_device) = last;
        let offers = money::offers(doc);
        let created_at = view
            .created_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis());
        let kind = meta.kind.parse::<CaseKind>().ok();
        let flow = kind.map(|k| (k, history::derive(doc, k)));
        let mut states = Vec::new();
        let mut resolved_at = None;
        let mut reworks = 0;
        if let Some((k, w)) = &flow {
            states.push((k.initial_status().to_string(), created_at.unwrap_or(0)));
            for step in &w.steps {
                states.push((step.to.clone(), step.at));
                if resolved_at.is_none()
                    && step.to != table::CANCELLED
                    && table::is_final(*k, &step.to)
                {
                    resolved_at = Some(step.at);
                }
            }
            reworks = u32::try_from(w.count("pending_acceptance", "in_repair")).unwrap_or(u32::MAX);
        }
        let mut skus: Vec<String> = view.items.iter().filter_map(|i| i.sku.clone()).collect();
        skus.sort();
        skus.dedup();
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
            created_at,
            updated_at: meta.last_received.0,
            last_user: last_user.to_string(),
            last_device: last_device.to_string(),
            policy_version,
            schema: SUMMARY_SCHEMA,
            created_by: meta.created_by.to_string(),
            category: view.category.clone(),
            skus,
            customer: customer_key(salt, view.customer.phone.as_deref()),
            states,
            resolved_at,
            met: view
                .timers
                .iter()
                .filter(|t| t.done)
                .map(|t| (t.name.clone(), t.breached))
                .collect(),
            granted: offers
                .iter()
                .filter(|o| matches!(o.status.as_str(), "approved" | "accepted"))
                .map(|o| Granted {
                    tier: o.tier.as_str().to_string(),
                    fen: o.amount_fen,
                    approver: o
                        .decided_by
                        .clone()
                        .unwrap_or_else(|| o.proposed_by.clone()),
                })
                .collect(),
            contact_overrides: u32::try_from(
                view.contact_attempts
                    .iter()
                    .filter(|c| c.override_reasons.is_some())
                    .count(),
            )
            .unwrap_or(u32::MAX),
            reworks,
            bookings: view
                .id
                .parse::<crate::ids::CaseId>()
                .map(|id| crate::rules::calendar::placed(id, &view.bookings))
                .unwrap_or_default(),
            no_shows: u32::try_from(
                view.bookings
                    .iter()
                    .filter(|b| b.status == crate::case::booking::BookingStatus::NoShow)
                    .count(),
            )
            .unwrap_or(u32::MAX),
        }
    }

    /// Whether a deadline is past due at `now` or was met late.
    pub fn breached(&self, now: i64) -> bool {
        !self.late.is_empty() || self.open_timers.iter().any(|(_, d)| *d < now)
    }

    /// The names of deadlines breached at `now` (met late, or open past due).
    pub fn breached_names(&self, now: i64) -> Vec<&str> {
        self.late
            .iter()
            .map(String::as_str)
            .chain(
                self.open_timers
                    .iter()
                    .filter(|(_, d)| *d < now)
                    .map(|(n, _)| n.as_str()),
            )
            .collect()
    }

    /// The earliest open deadline, ms.
    pub fn next_due(&self) -> Option<i64> {
        self.open_timers.iter().map(|(_, d)| *d).min()
    }
}
