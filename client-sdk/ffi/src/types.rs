//! The records, enums and callback interface of the bindings: plain
//! strings and numbers, converted from the SDK's types here and nowhere else.

use aftercase_sync::case::CaseView;

/// Who this device is, from its token.
#[derive(Debug, Clone, uniffi::Record)]
pub struct DeviceInfo {
    /// The user the token was issued to.
    pub user: String,
    /// `staff`, `supervisor`, `technician` or `head_office`.
    pub role: String,
    /// The store.
    pub store: String,
    /// This device's name.
    pub device: String,
    /// The relay's address.
    pub relay: String,
}

/// One line of a case list.
#[derive(Debug, Clone, uniffi::Record)]
pub struct CaseSummary {
    /// The case id (a UUID).
    pub id: String,
    /// The case number people read, e.g. `S1-TAB-A-0001`.
    pub case_no: Option<String>,
    /// `repair`, `installation`, `return_exchange`, `damage_claim` or `complaint`.
    pub kind: Option<String>,
    /// Current state, e.g. `reported`.
    pub status: Option<String>,
    /// The customer's name.
    pub customer_name: Option<String>,
    /// States this case may move to next.
    pub allowed_transitions: Vec<String>,
    /// Open workflow conflicts a supervisor must resolve.
    pub open_conflicts: u32,
    /// Deadlines missed and still open.
    pub overdue_deadlines: u32,
}

impl From<CaseView> for CaseSummary {
    fn from(v: CaseView) -> Self {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        CaseSummary {
            open_conflicts: count(v.conflicts.iter().filter(|c| c.status == "open").count()),
            overdue_deadlines: count(v.timers.iter().filter(|t| t.breached && !t.done).count()),
            id: v.id,
            case_no: v.case_no,
            kind: v.kind,
            status: v.status,
            customer_name: v.customer.name,
            allowed_transitions: v.allowed_transitions,
        }
    }
}

/// A case whose changes the relay refused.
#[derive(Debug, Clone, uniffi::Record)]
pub struct RefusedCase {
    /// The case id.
    pub case_id: String,
    /// The relay's stable refusal code.
    pub code: String,
    /// The relay's words.
    pub reason: String,
}

/// Sync state for a status bar.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SyncStatus {
    /// Cases with changes the relay has not confirmed.
    pub pending_cases: u64,
    /// When the oldest of those was made (RFC 3339), if any.
    pub oldest_pending: Option<String>,
    /// When a sync last finished with nothing pending (RFC 3339), if ever.
    pub last_sync: Option<String>,
    /// Cases the relay refused, until fixed or discarded.
    pub refused: Vec<RefusedCase>,
    /// Pieces of evidence waiting for upload.
    pub evidence_pending: u64,
}

impl From<aftercase_client::SyncStatus> for SyncStatus {
    fn from(s: aftercase_client::SyncStatus) -> Self {
        SyncStatus {
            pending_cases: s.pending_cases as u64,
            oldest_pending: s.oldest_pending,
            last_sync: s.last_sync,
            refused: s
                .refused
                .into_iter()
                .map(|r| RefusedCase {
                    case_id: r.case.to_string(),
                    code: r.code,
                    reason: r.reason,
                })
                .collect(),
            evidence_pending: s.evidence_pending as u64,
        }
    }
}

/// What a finished sync did.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SyncReport {
    /// Cases whose local changes the relay confirmed.
    pub uploaded: u64,
    /// Cases that arrived or changed from the relay.
    pub downloaded: u64,
}

impl From<aftercase_client::SyncReport> for SyncReport {
    fn from(r: aftercase_client::SyncReport) -> Self {
        SyncReport {
            uploaded: r.uploaded as u64,
            downloaded: r.downloaded as u64,
        }
    }
}

/// What a live sync reports to the app's [`SyncObserver`].
#[derive(Debug, Clone, uniffi::Enum)]
pub enum SyncEvent {
    /// Connected to the relay and catching up.
    Connected,
    /// Catch-up progress: cases received of those announced.
    Progress {
        /// Received so far.
        received: u64,
        /// Announced.
        total: u64,
    },
    /// Everything exchanged; staying connected for live changes.
    Synced {
        /// Cases whose local changes the relay confirmed.
        uploaded: u64,
        /// Cases received.
        downloaded: u64,
    },
    /// Another device changed a case and the change is now on this device.
    CaseChanged {
        /// The case id.
        case_id: String,
    },
    /// The relay refused this device's changes to a case; the rest goes on.
    Refused {
        /// The case id.
        case_id: String,
        /// The relay's stable refusal code (`too_large`, `forbidden`, ...).
        code: String,
        /// The relay's words.
        reason: String,
    },
    /// The connection dropped; the SDK reconnects by itself.
    Disconnected {
        /// Why.
        reason: String,
        /// Seconds until the next attempt.
        retry_in_secs: u64,
    },
    /// The live sync ended for good: `token_rejected`, `token_expired` or
    /// `revoked` (ask for a new token, then `init` again), or `stopped` by
    /// the app. The last event.
    Stopped {
        /// Why, as a stable code.
        code: String,
        /// Words.
        reason: String,
    },
}

impl From<aftercase_client::LiveEvent> for SyncEvent {
    fn from(e: aftercase_client::LiveEvent) -> Self {
        use aftercase_client::LiveEvent as L;
        match e {
            L::Connected => SyncEvent::Connected,
            L::Progress(p) => SyncEvent::Progress {
                received: p.received as u64,
                total: p.total as u64,
            },
            L::Synced(r) => SyncEvent::Synced {
                uploaded: r.uploaded as u64,
                downloaded: r.downloaded as u64,
            },
            L::Received(case) => SyncEvent::CaseChanged {
                case_id: case.to_string(),
            },
            L::Refused { case, code, reason } => SyncEvent::Refused {
                case_id: case.to_string(),
                code,
                reason,
            },
            L::Retrying { reason, in_secs } => SyncEvent::Disconnected {
                reason,
                retry_in_secs: in_secs,
            },
            L::Stopped { code, reason } => SyncEvent::Stopped { code, reason },
        }
    }
}

/// Implemented by the app (Kotlin, Swift) to receive live sync events.
/// Called on the SDK's sync thread: hand the event to the UI thread and
/// return quickly.
#[uniffi::export(with_foreign)]
pub trait SyncObserver: Send + Sync {
    /// One event of the live sync.
    fn on_event(&self, event: SyncEvent);
}
