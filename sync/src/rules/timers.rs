//! Deadlines every case carries (domain.md §4), derived from the workflow
//! events and the timeline, so a late offline event simply moves them.

use crate::case::{read, CaseKind};
use crate::policy::Policy;
use crate::workflow::Workflow;
use automerge::{ReadDoc, ROOT};
use serde::{Deserialize, Serialize};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// Timeline entry types the customer sees or hears.
pub const CUSTOMER_VISIBLE: &[&str] = &["call", "sms", "visit", "customer_reply"];

/// The deadline names, one constant each so that [`NAMES`] (and the
/// labels in `crate::labels`, checked against it) cannot miss one.
pub const RETURN_REVIEW: &str = "return_review";
/// See [`RETURN_REVIEW`].
pub const REFUND: &str = "refund";
/// See [`RETURN_REVIEW`].
pub const FIRST_RESPONSE: &str = "first_response";
/// See [`RETURN_REVIEW`].
pub const COMPLAINT_REPLY: &str = "complaint_reply";
/// See [`RETURN_REVIEW`].
pub const SUGGEST_ESCALATION: &str = "suggest_escalation";
/// See [`RETURN_REVIEW`].
pub const CUSTOMER_UPDATE: &str = "customer_update";
/// See [`RETURN_REVIEW`].
pub const FOLLOW_UP_SURVEY: &str = "follow_up_survey";

/// Every deadline [`timers`] can produce.
pub const NAMES: [&str; 7] = [
    RETURN_REVIEW,
    REFUND,
    FIRST_RESPONSE,
    COMPLAINT_REPLY,
    SUGGEST_ESCALATION,
    CUSTOMER_UPDATE,
    FOLLOW_UP_SURVEY,
];

/// One deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// return_review, refund, first_response, complaint_reply,
    /// suggest_escalation, customer_update or follow_up_survey.
    pub name: String,
    /// When it started (device time, ms).
    pub started: i64,
    /// When it falls due (ms).
    pub due: i64,
    /// When it was met, if it was.
    pub done: Option<i64>,
    /// Met late, or still open after `due` at the time of evaluation.
    pub breached: bool,
}

fn timer(name: &'static str, started: i64, span: i64, done: Option<i64>) -> Timer {
    let due = started + span;
    Timer {
        name: name.into(),
        started,
        due,
        done,
        breached: done.is_some_and(|d| d > due),
    }
}

fn first_of(w: &Workflow, states: &[&str]) -> Option<i64> {
    w.steps
        .iter()
        .find(|s| states.contains(&s.to.as_str()))
        .map(|s| s.at)
}

fn first_after(w: &Workflow, states: &[&str], after: i64) -> Option<i64> {
    w.steps
        .iter()
        .find(|s| s.at >= after && states.contains(&s.to.as_str()))
        .map(|s| s.at)
}

/// The case's timers. `breached` is final for met timers; for open ones call
/// [`evaluate`] with the current time.
pub fn timers<D: ReadDoc>(doc: &D, kind: CaseKind, w: &Workflow, p: &Policy) -> Vec<Timer> {
    let created = read::int(doc, &ROOT, crate::case::schema::root::CREATED_AT).unwrap_or(0);
    let cancelled = first_of(w, &["cancelled"]);
    let mut out = Vec::new();
    match kind {
        CaseKind::ReturnExchange => {
            out.push(timer(
                RETURN_REVIEW,
                created,
                p.return_review_hours * HOUR,
                first_of(w, &["accepted", "rejected"]).or(cancelled),
            ));
            if let Some(received) = first_of(w, &["inspecting"]) {
                out.push(timer(
                    REFUND,
                    received,
                    p.refund_days * DAY,
                    first_after(
                        w,
                        &[
                            "refunded",
                            "exchanged",
                            "partial_refund_keep",
                            "converted_to_repair",
                        ],
                        received,
                    )
                    .or(cancelled),
                ));
            }
        }
        CaseKind::Complaint => {
            out.push(timer(
                FIRST_RESPONSE,
                created,
                p.first_response_hours * HOUR,
                first_of(w, &["accepted", "not_accepted"]).or(cancelled),
            ));
            out.push(timer(
                COMPLAINT_REPLY,
                created,
                p.complaint_reply_hours * HOUR,
                first_of(w, &["replied", "not_accepted"]).or(cancelled),
            ));
            out.push(timer(
                SUGGEST_ESCALATION,
                created,
                p.escalate_after_days * DAY,
                first_of(w, &["archived"]).or(cancelled),
            ));
        }
        _ => {}
    }
    // Waiting on another department: the customer hears from us daily.
    let waiting = match kind {
        CaseKind::Complaint => Some("coordinating"),
        CaseKind::Repair => Some("waiting_parts"),
        _ => None,
    };
    if let Some(state) = waiting {
        if w.status == state {
            let since = w.last_entered(state).unwrap_or(created);
            let last_contact = read::entries(doc, &ROOT, crate::case::schema::root::TIMELINE)
                .into_iter()
                .filter(|(_, e)| {
                    read::string(doc, e, "type")
                        .is_some_and(|t| CUSTOMER_VISIBLE.contains(&t.as_str()))
                })
                .filter_map(|(_, e)| read::int(doc, &e, "at"))
                .filter(|at| *at >= since)
                .max();
            out.push(timer(
                CUSTOMER_UPDATE,
                last_contact.unwrap_or(since).max(since),
                p.customer_update_hours * HOUR,
                None,
            ));
        }
    }
    let survey = match kind {
        CaseKind::Repair => Some(("accepted", "followed_up")),
        CaseKind::Installation => Some(("accepted", "surveyed")),
        CaseKind::Complaint => Some(("replied", "surveyed")),
        _ => None,
    };
    if let Some((from, to)) = survey {
        if let Some(start) = first_of(w, &[from]) {
            out.push(timer(
                FOLLOW_UP_SURVEY,
                start,
                p.survey_within_days * DAY,
                first_after(w, &[to, "archived", "closed"], start),
            ));
        }
    }
    out
}

/// Marks open timers past due at `now` as breached.
pub fn evaluate(timers: &mut [Timer], now: i64) {
    for t in timers {
        if t.done.is_none() && now > t.due {
            t.breached = true;
        }
    }
}
