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
/// A complaint transferred by the regulator (12315): accepted or not
/// within 7 working days.
pub const REGULATOR_ACCEPTANCE: &str = "regulator_acceptance";
/// A complaint transferred by the regulator (12315): mediation concluded
/// (replied) within 45 working days of acceptance.
pub const REGULATOR_MEDIATION: &str = "regulator_mediation";

/// Working days the regulator gives to accept a transferred complaint
/// (市场监督管理投诉举报处理暂行办法: 7 个工作日).
pub const REGULATOR_ACCEPT_WORKING_DAYS: u32 = 7;
/// Working days of mediation the regulator allows (45 个工作日).
pub const REGULATOR_MEDIATION_WORKING_DAYS: u32 = 45;

/// See [`RETURN_REVIEW`]: the technician arrives by the end of the
/// customer's visit window.
pub const VISIT_WINDOW: &str = "visit_window";
/// See [`RETURN_REVIEW`]: the customer is reminded of the visit the day
/// before (by 18:00 local).
pub const VISIT_REMINDER_DAY_BEFORE: &str = "visit_reminder_day_before";
/// See [`RETURN_REVIEW`]: and again on the morning of the visit (by
/// 10:00 local, or the visit's start if earlier).
pub const VISIT_REMINDER_MORNING: &str = "visit_reminder_morning";

/// Every deadline [`timers`] can produce.
pub const NAMES: [&str; 12] = [
    RETURN_REVIEW,
    REFUND,
    FIRST_RESPONSE,
    COMPLAINT_REPLY,
    SUGGEST_ESCALATION,
    CUSTOMER_UPDATE,
    FOLLOW_UP_SURVEY,
    REGULATOR_ACCEPTANCE,
    REGULATOR_MEDIATION,
    VISIT_WINDOW,
    VISIT_REMINDER_DAY_BEFORE,
    VISIT_REMINDER_MORNING,
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

/// `start` plus `n` working days (Monday to Friday in the stores' zone),
/// at the same time of day: registered on a Friday at 15:00, 7 working
/// days fall due the Tuesday after next at 15:00. Public holidays are not
/// known to the policy and count as working days.
pub fn add_working_days(p: &Policy, start: i64, n: u32) -> i64 {
    use chrono::{Datelike, Weekday};
    let Some(mut t) = super::contact::local(p, start) else {
        return start + i64::from(n) * DAY;
    };
    let mut left = n;
    while left > 0 {
        t += chrono::Duration::days(1);
        if !matches!(t.weekday(), Weekday::Sat | Weekday::Sun) {
            left -= 1;
        }
    }
    t.timestamp_millis()
}

/// Whether the complaint came from the regulator (12315).
fn from_regulator<D: ReadDoc>(doc: &D) -> bool {
    read::map(doc, &ROOT, crate::case::schema::root::FIELDS)
        .and_then(|f| read::string(doc, &f, "channel"))
        .as_deref()
        == Some("regulator_transfer")
}

/// The case's timers. `breached` is final for met timers; for open ones call
/// [`evaluate`] with the current time. A cancelled or finished case (closed,
/// archived) has no open deadline: whatever was still running stops when
/// the case got there, late if that was after its due time.
pub fn timers<D: ReadDoc>(doc: &D, kind: CaseKind, w: &Workflow, p: &Policy) -> Vec<Timer> {
    let mut out = running(doc, kind, w, p);
    if crate::workflow::table::is_final(kind, &w.status) {
        let at = w.last_entered(&w.status);
        for t in out.iter_mut().filter(|t| t.done.is_none()) {
            let stop = at.unwrap_or(t.started).max(t.started);
            t.done = Some(stop);
            t.breached = stop > t.due;
        }
    }
    out
}

fn running<D: ReadDoc>(doc: &D, kind: CaseKind, w: &Workflow, p: &Policy) -> Vec<Timer> {
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
            if from_regulator(doc) {
                let accept_due = add_working_days(p, created, REGULATOR_ACCEPT_WORKING_DAYS);
                out.push(timer(
                    REGULATOR_ACCEPTANCE,
                    created,
                    accept_due - created,
                    first_of(w, &["accepted", "not_accepted"]).or(cancelled),
                ));
                if let Some(accepted) = first_of(w, &["accepted"]) {
                    let due = add_working_days(p, accepted, REGULATOR_MEDIATION_WORKING_DAYS);
                    out.push(timer(
                        REGULATOR_MEDIATION,
                        accepted,
                        due - accepted,
                        first_after(w, &["replied", "archived"], accepted).or(cancelled),
                    ));
                }
            }
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
    out.extend(visit_timers(doc, p));
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

/// The visit's deadlines (issue 12), for the booking in focus: the
/// current appointment, else the last visit that took place. Rescheduling
/// moves them with the booking; a cancelled booking (or case) has none; a
/// customer's no-show is not the technician's lateness. Times are the
/// store's local time under the policy.
fn visit_timers<D: ReadDoc>(doc: &D, p: &Policy) -> Vec<Timer> {
    use crate::case::booking::{self, BookingStatus};
    let all = booking::bookings(doc);
    let focus = booking::earliest_active(all.clone()).or_else(|| {
        all.into_iter()
            .filter(|b| matches!(b.status, BookingStatus::Completed | BookingStatus::NoShow))
            .max_by(|a, b| (a.start_ms, &a.id).cmp(&(b.start_ms, &b.id)))
    });
    let Some(b) = focus else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // A customer's no-show is not lateness, and a visit completed only by
    // closing the case has no arrival to judge.
    if b.status.is_active() || b.arrived_ms.is_some() {
        let mut t = timer(VISIT_WINDOW, b.made_ms.min(b.start_ms), 0, b.arrived_ms);
        t.due = b.window_end_ms;
        t.breached = b.arrived_ms.is_some_and(|a| a > b.window_end_ms);
        out.push(t);
    }
    let Some(visit_day) = crate::rules::contact::local_day(p, b.start_ms) else {
        return out;
    };
    let at = |day: chrono::NaiveDate, hm: &str| {
        crate::rules::calendar::parse_local(p, &format!("{day} {hm}")).map(|m| m.0)
    };
    let contacts: Vec<i64> = read::entries(doc, &ROOT, crate::case::schema::root::TIMELINE)
        .into_iter()
        .filter(|(_, e)| {
            read::string(doc, e, "type").is_some_and(|t| matches!(t.as_str(), "call" | "sms"))
        })
        .filter_map(|(_, e)| read::int(doc, &e, "at"))
        .collect();
    let first_between = |from: i64, until: i64| {
        contacts
            .iter()
            .filter(|c| **c >= from && **c < until)
            .min()
            .copied()
    };
    if let Some(eve) = visit_day.pred_opt() {
        if let (Ok(day_start), Ok(due)) = (at(eve, "00:00"), at(eve, "18:00")) {
            if b.made_ms < due {
                let mut t = timer(
                    VISIT_REMINDER_DAY_BEFORE,
                    b.made_ms,
                    0,
                    first_between(day_start, b.start_ms),
                );
                t.due = due;
                t.breached = t.done.is_some_and(|d| d > due);
                out.push(t);
            }
        }
    }
    if let (Ok(day_start), Ok(ten)) = (at(visit_day, "00:00"), at(visit_day, "10:00")) {
        let due = ten.min(b.start_ms);
        if b.made_ms < due {
            let mut t = timer(
                VISIT_REMINDER_MORNING,
                b.made_ms,
                0,
                first_between(day_start, b.start_ms),
            );
            t.due = due;
            t.breached = t.done.is_some_and(|d| d > due);
            out.push(t);
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
