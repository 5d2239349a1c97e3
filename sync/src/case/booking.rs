//! Bookings (issue 12): appointments of a technician or installer on a
//! repair or installation case, kept as an append-only log.
//!
//! A booking is its `book` entry; later entries name it (`booking`) and
//! say what happened: `reschedule` (new technician, time, length or
//! window, with a reason), `cancel` (with a reason), and the technician's
//! own `arrive`, `complete` and `no_show`. Nothing is ever edited, so two
//! offline devices can both act on one case and both acts stay recorded.
//! The booking's state is derived from the log ([`bookings`]): entries
//! apply in the order of the time they claim, then their id, which every
//! replica sees alike. A case that is cancelled holds no active booking,
//! so cancelling the case frees the technician's slot without an entry
//! per booking (concurrent offline bookings are freed as well); a case
//! closed otherwise counts its open bookings as completed.
//!
//! Overlaps between bookings of different cases are not checked here:
//! that is the calendar's job (`crate::rules::calendar`), which sees every
//! case a replica holds.

use super::edit::{invalid, put_entry, require_case, EditContext, EditError};
use super::schema::{entry, root};
use super::{read, CaseKind};
use crate::access::Role;
use crate::ids::{CaseId, Millis};
use crate::policy::Policy;
use automerge::transaction::{Transactable, Transaction};
use automerge::{Automerge, AutomergeError, ReadDoc, ScalarValue, ROOT};
use serde::{Deserialize, Serialize};

/// Root key of the booking log.
pub const BOOKINGS: &str = "bookings";

/// Entry types of the booking log.
pub const TYPES: &[&str] = &[
    "book",
    "reschedule",
    "cancel",
    "arrive",
    "complete",
    "no_show",
];

/// Entry types only the booked technician (or the store) records.
pub const TECHNICIAN_TYPES: &[&str] = &["arrive", "complete", "no_show"];

/// Shortest and longest booking, in minutes.
pub const MINUTES: std::ops::RangeInclusive<i64> = 15..=720;

/// Longest reason or address, in characters.
pub const MAX_REASON: usize = 2_000;

const MINUTE: i64 = 60_000;

/// Whether moving a `kind` case to `to` needs a booking in the same edit
/// (派工 is "technician + appointment"; 预约 is the installation's booking).
pub fn needs_booking(kind: CaseKind, to: &str) -> bool {
    matches!(
        (kind, to),
        (CaseKind::Repair, "dispatched") | (CaseKind::Installation, "scheduled")
    )
}

/// The state a booking is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    /// Booked, technician not there yet.
    Booked,
    /// The technician arrived.
    Arrived,
    /// The visit is done.
    Completed,
    /// The customer was not there.
    NoShow,
    /// Cancelled (by an entry, or because the case was cancelled).
    Cancelled,
}

impl BookingStatus {
    /// Whether the booking holds the technician's time.
    pub fn is_active(self) -> bool {
        matches!(self, BookingStatus::Booked | BookingStatus::Arrived)
    }
}

/// A booking as derived from its log entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BookingView {
    /// Booking id (its `book` entry), for `case reschedule --booking`.
    pub id: String,
    /// The technician or installer.
    pub tech: String,
    /// Start, ms since the epoch.
    pub start_ms: i64,
    /// Length in minutes.
    pub minutes: i64,
    /// End of the customer's visit window (the technician must arrive by
    /// then), ms since the epoch.
    pub window_end_ms: i64,
    /// Start, RFC 3339 (UTC).
    pub start: String,
    /// End of the slot, RFC 3339 (UTC).
    pub end: String,
    /// End of the visit window, RFC 3339 (UTC).
    pub window_end: String,
    /// Where to go (a reference to the customer's address).
    pub address: Option<String>,
    /// booked, arrived, completed, no_show or cancelled.
    pub status: BookingStatus,
    /// When the technician arrived, ms (device time).
    pub arrived_ms: Option<i64>,
    /// Who booked it.
    pub made_by: String,
    /// When it was booked, ms (device time).
    pub made_ms: i64,
    /// Times it was rescheduled.
    pub reschedules: u32,
    /// The reason of the latest reschedule or cancellation.
    pub reason: Option<String>,
    /// A supervisor's reason for booking outside working hours.
    pub hours_override: Option<String>,
}

impl BookingView {
    /// End of the slot, ms.
    pub fn end_ms(&self) -> i64 {
        self.start_ms
            .saturating_add(self.minutes.saturating_mul(MINUTE))
    }
}

/// One raw entry of the log.
struct Raw {
    id: String,
    ty: String,
    booking: Option<String>,
    tech: Option<String>,
    start: Option<i64>,
    minutes: Option<i64>,
    window_end: Option<i64>,
    address: Option<String>,
    reason: Option<String>,
    hours_override: Option<String>,
    author: String,
    at: i64,
}

fn raw_entries<D: ReadDoc>(doc: &D) -> Vec<Raw> {
    let mut out: Vec<Raw> = read::entries(doc, &ROOT, BOOKINGS)
        .into_iter()
        .map(|(id, e)| Raw {
            ty: read::string(doc, &e, entry::TYPE).unwrap_or_default(),
            booking: read::string(doc, &e, "booking"),
            tech: read::string(doc, &e, "tech"),
            start: read::int(doc, &e, "start"),
            minutes: read::int(doc, &e, "minutes"),
            window_end: read::int(doc, &e, "window_end"),
            address: read::string(doc, &e, "address"),
            reason: read::string(doc, &e, "reason"),
            hours_override: read::string(doc, &e, "override"),
            author: read::string(doc, &e, entry::AUTHOR).unwrap_or_default(),
            at: read::int(doc, &e, entry::AT).unwrap_or(0),
            id,
        })
        .collect();
    // The order every replica agrees on: claimed time, then entry id.
    out.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    out
}

/// Every booking of the case, in the order they were made. A cancelled
/// case's bookings are all `cancelled`.
pub fn bookings<D: ReadDoc>(doc: &D) -> Vec<BookingView> {
    let raw = raw_entries(doc);
    if raw.is_empty() {
        // Most cases are never booked: skip deriving the workflow.
        return Vec::new();
    }
    let (case_cancelled, case_finished) = case_end(doc);
    let mut out: Vec<BookingView> = Vec::new();
    for r in &raw {
        if r.ty != "book" {
            continue;
        }
        let (Some(tech), Some(start), Some(minutes)) = (&r.tech, r.start, r.minutes) else {
            continue;
        };
        out.push(BookingView {
            id: r.id.clone(),
            tech: tech.clone(),
            start_ms: start,
            minutes,
            window_end_ms: r.window_end.unwrap_or(start),
            start: String::new(),
            end: String::new(),
            window_end: String::new(),
            address: r.address.clone(),
            status: BookingStatus::Booked,
            arrived_ms: None,
            made_by: r.author.clone(),
            made_ms: r.at,
            reschedules: 0,
            reason: None,
            hours_override: r.hours_override.clone(),
        });
    }
    for r in &raw {
        let Some(b) = r
            .booking
            .as_deref()
            .and_then(|id| out.iter_mut().find(|b| b.id == id))
        else {
            continue;
        };
        match r.ty.as_str() {
            "reschedule" => {
                if let Some(t) = &r.tech {
                    b.tech = t.clone();
                }
                if let Some(s) = r.start {
                    b.start_ms = s;
                }
                if let Some(m) = r.minutes {
                    b.minutes = m;
                }
                b.window_end_ms = r.window_end.unwrap_or(b.start_ms);
                b.status = BookingStatus::Booked;
                b.arrived_ms = None;
                b.reschedules += 1;
                b.reason = r.reason.clone();
                b.hours_override = r.hours_override.clone();
            }
            "cancel" => {
                b.status = BookingStatus::Cancelled;
                b.reason = r.reason.clone();
            }
            // A visit ends once: a late "arrive" after completion or a
            // no-show does not reopen it.
            "arrive" if b.status == BookingStatus::Booked => {
                b.status = BookingStatus::Arrived;
                b.arrived_ms = Some(r.at);
            }
            "complete" if b.status.is_active() => {
                if b.arrived_ms.is_none() {
                    b.arrived_ms = Some(r.at);
                }
                b.status = BookingStatus::Completed;
            }
            "no_show" if b.status.is_active() => b.status = BookingStatus::NoShow,
            _ => {}
        }
    }
    for b in &mut out {
        if case_cancelled && b.status.is_active() {
            b.status = BookingStatus::Cancelled;
        } else if case_finished && b.status.is_active() {
            // A closed case holds no one's time, even if the visit was
            // never marked done.
            b.status = BookingStatus::Completed;
        }
        b.start = Millis(b.start_ms).to_rfc3339();
        b.end = Millis(b.end_ms()).to_rfc3339();
        b.window_end = Millis(b.window_end_ms).to_rfc3339();
    }
    out
}

/// Whether the case is cancelled, and whether it is in another final
/// state (closed, ...).
fn case_end<D: ReadDoc>(doc: &D) -> (bool, bool) {
    let Some(kind) = read::string(doc, &ROOT, root::KIND).and_then(|k| k.parse::<CaseKind>().ok())
    else {
        return (false, false);
    };
    let status = crate::workflow::derive(doc, kind).status;
    let cancelled = status == crate::workflow::table::CANCELLED;
    (
        cancelled,
        !cancelled && crate::workflow::table::is_final(kind, &status),
    )
}

/// The case's current appointment: the earliest active booking.
pub fn current<D: ReadDoc>(doc: &D) -> Option<BookingView> {
    earliest_active(bookings(doc))
}

/// The earliest active booking of a list.
pub fn earliest_active(list: Vec<BookingView>) -> Option<BookingView> {
    list.into_iter()
        .filter(|b| b.status.is_active())
        .min_by(|a, b| (a.start_ms, &a.id).cmp(&(b.start_ms, &b.id)))
}

/// How many times the customer did not show up on this case.
pub fn no_shows<D: ReadDoc>(doc: &D) -> u32 {
    let n = bookings(doc)
        .iter()
        .filter(|b| b.status == BookingStatus::NoShow)
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What a booking asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The technician.
    pub tech: String,
    /// Start, ms since the epoch.
    pub start: Millis,
    /// Length in minutes.
    pub minutes: i64,
    /// End of the customer's visit window, ms: the technician arrives
    /// between `start` and this.
    pub window_end: Millis,
    /// Where to go.
    pub address: Option<String>,
    /// A supervisor's reason to book outside working hours.
    pub hours_override: Option<String>,
}

/// The checks a booking's values must pass, on the device and at the
/// relay alike: the technician is listed for the case's store, the length
/// and window are sane, and the slot is inside working hours unless a
/// supervisor or head office overrides with a reason.
pub fn check_slot(p: &Policy, role: Role, store: &str, slot: &Slot) -> Result<(), SlotError> {
    if !MINUTES.contains(&slot.minutes) {
        return Err(SlotError::Invalid(format!(
            "a booking lasts {} to {} minutes, not {}",
            MINUTES.start(),
            MINUTES.end(),
            slot.minutes
        )));
    }
    let end = slot.start.0.saturating_add(slot.minutes * MINUTE);
    if slot.window_end.0 < slot.start.0 || slot.window_end.0 > end {
        return Err(SlotError::Invalid(
            "the visit window ends between the start and the end of the booking".into(),
        ));
    }
    if slot
        .address
        .as_ref()
        .is_some_and(|a| a.trim().is_empty() || a.chars().count() > 200)
    {
        return Err(SlotError::Invalid(
            "the address is 1 to 200 characters".into(),
        ));
    }
    let Some(t) = p.technician(&slot.tech) else {
        return Err(SlotError::Forbidden(format!(
            "{} is not a bookable technician: head office lists technicians and their hours in the policy",
            crate::protocol::clip(&slot.tech, 64)
        )));
    };
    if t.store != store {
        return Err(SlotError::Forbidden(format!(
            "{} works for store {}, not {store}: book a technician of this store",
            t.user, t.store
        )));
    }
    let problem = crate::rules::calendar::outside_hours(p, t, slot.start.0, end);
    match (&slot.hours_override, problem) {
        (_, None) => Ok(()),
        (Some(reason), Some(_)) if matches!(role, Role::Supervisor | Role::HeadOffice) => {
            if reason.trim().is_empty() || reason.chars().count() > MAX_REASON {
                Err(SlotError::Invalid(format!(
                    "an override of working hours needs a reason of 1 to {MAX_REASON} characters"
                )))
            } else {
                Ok(())
            }
        }
        (Some(_), Some(m)) => Err(SlotError::Forbidden(format!(
            "{m}; only a supervisor or head office may book outside working hours"
        ))),
        (None, Some(m)) => Err(SlotError::Hours(format!(
            "{m}; a supervisor may override with a reason"
        ))),
    }
}

/// Why a slot cannot be booked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The technician is not bookable by this store or role.
    #[error("{0}")]
    Forbidden(String),
    /// Outside working hours (the message names the hours).
    #[error("{0}")]
    Hours(String),
}

impl From<SlotError> for EditError {
    fn from(e: SlotError) -> EditError {
        match e {
            SlotError::Invalid(m) => invalid("booking", m),
            SlotError::Forbidden(m) | SlotError::Hours(m) => EditError::NotAllowed(m),
        }
    }
}

fn case_store<D: ReadDoc>(doc: &D) -> String {
    read::string(doc, &ROOT, root::STORE_ID).unwrap_or_default()
}

fn check_reason(reason: &str) -> Result<(), EditError> {
    if reason.trim().is_empty() || reason.chars().count() > MAX_REASON {
        return Err(invalid(
            "reason",
            format!("must be 1 to {MAX_REASON} characters"),
        ));
    }
    Ok(())
}

fn require_bookable(kind: CaseKind) -> Result<(), EditError> {
    if matches!(kind, CaseKind::Repair | CaseKind::Installation) {
        Ok(())
    } else {
        Err(invalid(
            "case",
            format!("only repairs and installations are booked, not a {kind}"),
        ))
    }
}

fn require_booker(role: Role) -> Result<(), EditError> {
    if role == Role::Technician {
        return Err(EditError::NotAllowed(
            "technicians do not book: the store books them".into(),
        ));
    }
    Ok(())
}

fn put_slot(
    tx: &mut Transaction<'_>,
    e: &automerge::ObjId,
    slot: &Slot,
) -> Result<(), AutomergeError> {
    tx.put(e, "tech", slot.tech.as_str())?;
    tx.put(e, "start", ScalarValue::Timestamp(slot.start.0))?;
    tx.put(e, "minutes", slot.minutes)?;
    tx.put(e, "window_end", ScalarValue::Timestamp(slot.window_end.0))?;
    if let Some(a) = &slot.address {
        tx.put(e, "address", a.as_str())?;
    }
    if let Some(o) = &slot.hours_override {
        tx.put(e, "override", o.as_str())?;
    }
    Ok(())
}

/// The move a booking edit makes with it, if the case is where a booking
/// moves it (a confirmed repair is dispatched; a prepared installation,
/// or one in progress that is put off, is scheduled).
pub fn move_with_booking(kind: CaseKind, status: &str) -> Option<&'static str> {
    match (kind, status) {
        (CaseKind::Repair, "confirmed") => Some("dispatched"),
        (CaseKind::Installation, "prepared" | "in_progress") => Some("scheduled"),
        _ => None,
    }
}

/// Books a technician on the case. A confirmed repair is dispatched and a
/// prepared installation scheduled in the same edit; the case is assigned
/// to the technician if it is not already. Returns the booking id.
pub fn book(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    policy: &Policy,
    slot: &Slot,
) -> Result<String, EditError> {
    let kind = require_case(doc, id)?;
    require_bookable(kind)?;
    require_booker(ctx.role)?;
    check_slot(policy, ctx.role, &case_store(&*doc), slot)?;
    let wf = crate::workflow::derive(&*doc, kind);
    let to = move_with_booking(kind, &wf.status);
    if let Some(to) = to {
        super::transition::check_move(doc, kind, ctx, policy, to, None)?;
    } else if crate::workflow::table::is_final(kind, &wf.status) {
        return Err(invalid(
            "case",
            format!("this {kind} is {}: nothing to book", wf.status),
        ));
    }
    let assignee = super::service::assignee(&*doc);
    let booking_id = ctx.entry_id();
    doc.transact::<_, _, AutomergeError>(|tx| {
        let e = put_entry(tx, BOOKINGS, ctx, "book")?;
        put_slot(tx, &e, slot)?;
        let t = put_entry(tx, root::TIMELINE, ctx, "booking")?;
        tx.put(
            &t,
            entry::TEXT,
            format!(
                "booked {} at {} for {} min",
                slot.tech,
                Millis(slot.start.0).to_rfc3339(),
                slot.minutes
            ),
        )?;
        if let Some(to) = to {
            let reason = format!("{} {}", slot.tech, Millis(slot.start.0).to_rfc3339());
            super::transition::write_move(
                tx,
                &ctx.varied(1),
                policy,
                &wf.status,
                &wf.head,
                to,
                Some(&reason),
            )?;
        }
        if assignee.as_deref() != Some(slot.tech.as_str()) {
            write_assignment(tx, &ctx.varied(2), &slot.tech, assignee.as_deref())?;
        }
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(booking_id)
}

fn write_assignment(
    tx: &mut Transaction<'_>,
    ctx: &EditContext,
    tech: &str,
    before: Option<&str>,
) -> Result<(), AutomergeError> {
    let e = put_entry(tx, super::service::ASSIGNMENTS, ctx, "assignment")?;
    tx.put(&e, "assignee", tech)?;
    let t = put_entry(tx, root::TIMELINE, ctx, "assignment")?;
    tx.put(
        &t,
        entry::TEXT,
        match before {
            Some(b) => format!("reassigned from {b} to {tech} with the booking"),
            None => format!("assigned to {tech} with the booking"),
        },
    )?;
    Ok(())
}

/// The booking `booking`, or the case's current appointment when `None`.
fn target<D: ReadDoc>(doc: &D, booking: Option<&str>) -> Result<BookingView, EditError> {
    let all = bookings(doc);
    match booking {
        Some(b) => all
            .into_iter()
            .find(|x| x.id == b)
            .ok_or_else(|| invalid("booking", format!("this case has no booking {b:?}"))),
        None => earliest_active(all)
            .ok_or_else(|| invalid("booking", "this case has no active booking")),
    }
}

/// Moves a booking (the current appointment when `booking` is `None`) to
/// a new time, length, window or technician, with a reason. An
/// installation in progress goes back to `scheduled` in the same edit.
pub fn reschedule(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    policy: &Policy,
    booking: Option<&str>,
    slot: &Slot,
    reason: &str,
) -> Result<(), EditError> {
    let kind = require_case(doc, id)?;
    require_bookable(kind)?;
    require_booker(ctx.role)?;
    check_reason(reason)?;
    let b = target(&*doc, booking)?;
    if matches!(b.status, BookingStatus::Completed) {
        return Err(invalid("booking", "this visit is completed"));
    }
    check_slot(policy, ctx.role, &case_store(&*doc), slot)?;
    let wf = crate::workflow::derive(&*doc, kind);
    let to = match (kind, wf.status.as_str()) {
        (CaseKind::Installation, "in_progress") => Some("scheduled"),
        _ => None,
    };
    if let Some(to) = to {
        super::transition::check_move(doc, kind, ctx, policy, to, Some(reason))?;
    }
    let assignee = super::service::assignee(&*doc);
    doc.transact::<_, _, AutomergeError>(|tx| {
        let e = put_entry(tx, BOOKINGS, ctx, "reschedule")?;
        tx.put(&e, "booking", b.id.as_str())?;
        put_slot(tx, &e, slot)?;
        tx.put(&e, "reason", reason)?;
        let t = put_entry(tx, root::TIMELINE, ctx, "booking")?;
        tx.put(
            &t,
            entry::TEXT,
            format!(
                "rescheduled {} to {} at {} for {} min: {reason}",
                b.tech,
                slot.tech,
                Millis(slot.start.0).to_rfc3339(),
                slot.minutes
            ),
        )?;
        if let Some(to) = to {
            super::transition::write_move(
                tx,
                &ctx.varied(1),
                policy,
                &wf.status,
                &wf.head,
                to,
                Some(reason),
            )?;
        }
        if assignee.as_deref() != Some(slot.tech.as_str()) {
            write_assignment(tx, &ctx.varied(2), &slot.tech, assignee.as_deref())?;
        }
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}

/// Cancels a booking (the current appointment when `None`), with a reason.
pub fn cancel(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    booking: Option<&str>,
    reason: &str,
) -> Result<(), EditError> {
    let kind = require_case(doc, id)?;
    require_bookable(kind)?;
    require_booker(ctx.role)?;
    check_reason(reason)?;
    let b = target(&*doc, booking)?;
    if !b.status.is_active() {
        return Err(invalid("booking", "this booking is no longer active"));
    }
    doc.transact::<_, _, AutomergeError>(|tx| {
        let e = put_entry(tx, BOOKINGS, ctx, "cancel")?;
        tx.put(&e, "booking", b.id.as_str())?;
        tx.put(&e, "reason", reason)?;
        let t = put_entry(tx, root::TIMELINE, ctx, "booking")?;
        tx.put(
            &t,
            entry::TEXT,
            format!("booking with {} cancelled: {reason}", b.tech),
        )?;
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}

/// Records the technician's arrival, the visit's completion or the
/// customer's absence (`what`: arrive, complete or no_show) on a booking
/// (the current appointment when `None`). A technician records it only on
/// his own booking.
pub fn record_visit(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    booking: Option<&str>,
    what: &str,
) -> Result<(), EditError> {
    let kind = require_case(doc, id)?;
    require_bookable(kind)?;
    if !TECHNICIAN_TYPES.contains(&what) {
        return Err(invalid(
            "visit",
            format!("{what:?} is not arrive, complete or no_show"),
        ));
    }
    let b = target(&*doc, booking)?;
    may_record_visit(ctx.role, ctx.author.as_str(), &b.tech).map_err(EditError::NotAllowed)?;
    if !b.status.is_active() {
        return Err(invalid("booking", "this booking is no longer active"));
    }
    if what == "arrive" && b.status == BookingStatus::Arrived {
        return Err(invalid("booking", "the arrival is already recorded"));
    }
    doc.transact::<_, _, AutomergeError>(|tx| {
        let e = put_entry(tx, BOOKINGS, ctx, what)?;
        tx.put(&e, "booking", b.id.as_str())?;
        let t = put_entry(tx, root::TIMELINE, ctx, "booking")?;
        tx.put(
            &t,
            entry::TEXT,
            match what {
                "arrive" => format!("{} arrived", b.tech),
                "complete" => format!("visit by {} completed", b.tech),
                _ => "customer not there (no-show)".to_string(),
            },
        )?;
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}

/// Whether `role` (user `who`) may record a visit on a booking of `tech`:
/// the technician himself, or the store.
pub fn may_record_visit(role: Role, who: &str, tech: &str) -> Result<(), String> {
    if role == Role::Technician && who != tech {
        return Err(format!(
            "this visit is booked for {tech}: a technician records only his own visits"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::edit::{create_case, Customer, NewCase};
    use crate::ids::{DeviceId, StoreId, UserId};
    use crate::policy::TechnicianHours;

    pub(crate) fn policy() -> Policy {
        Policy {
            technicians: vec![
                TechnicianHours {
                    user: "tom".into(),
                    store: "S1".into(),
                    start: "09:00".into(),
                    end: "18:00".into(),
                    days: vec![1, 2, 3, 4, 5, 6],
                    days_off: vec!["2026-12-25".into()],
                },
                TechnicianHours {
                    user: "olga".into(),
                    store: "S2".into(),
                    start: "09:00".into(),
                    end: "18:00".into(),
                    days: vec![1, 2, 3, 4, 5],
                    days_off: vec![],
                },
            ],
            ..Policy::default()
        }
    }

    fn ctx(role: Role, user: &str, n: u8) -> EditContext {
        EditContext {
            author: UserId::new(user).unwrap(),
            role,
            device: DeviceId::new("tab").unwrap(),
            now: Millis(1_796_000_000_000 + i64::from(n) * 1_000),
            nonce: [n; 16],
        }
    }

    /// 2026-12-08 (a Tuesday) at `h`:00 in China.
    fn tue(h: i64) -> Millis {
        // 2026-12-08T00:00:00+08:00 = 2026-12-07T16:00:00Z.
        Millis(1_796_659_200_000 + h * 3_600_000)
    }

    fn slot(tech: &str, h: i64) -> Slot {
        Slot {
            tech: tech.into(),
            start: tue(h),
            minutes: 90,
            window_end: Millis(tue(h).0 + 30 * MINUTE),
            address: None,
            hours_override: None,
        }
    }

    fn repair() -> (Automerge, CaseId) {
        let mut doc = Automerge::new();
        let id = CaseId::from_random_bytes([9; 16]);
        create_case(
            &mut doc,
            &ctx(Role::Staff, "clerk", 1),
            &NewCase {
                id,
                case_no: "S1-T-1".into(),
                kind: CaseKind::Repair,
                store: StoreId::new("S1").unwrap(),
                customer: Customer {
                    name: "Li".into(),
                    phone: "13800000000".into(),
                },
                sku: None,
                description: None,
            },
        )
        .unwrap();
        crate::case::transition::transition(
            &mut doc,
            id,
            &ctx(Role::Staff, "clerk", 2),
            "confirmed",
            None,
        )
        .unwrap();
        (doc, id)
    }

    #[test]
    fn the_calendar_date_is_a_tuesday() {
        let t = crate::rules::contact::local(&Policy::default(), tue(10).0).unwrap();
        assert_eq!(t.to_string(), "2026-12-08 10:00:00 +08:00");
    }

    #[test]
    fn booking_dispatches_assigns_and_is_the_appointment() {
        let p = policy();
        let (mut doc, id) = repair();
        let err = crate::case::transition::transition_with(
            &mut doc,
            id,
            &ctx(Role::Staff, "clerk", 3),
            &p,
            "dispatched",
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("case book"), "{err}");
        let b = book(
            &mut doc,
            id,
            &ctx(Role::Staff, "clerk", 4),
            &p,
            &slot("tom", 10),
        )
        .unwrap();
        let view = crate::case::CaseView::from_doc(&doc, "x");
        assert_eq!(view.status.as_deref(), Some("dispatched"));
        assert_eq!(view.assignee.as_deref(), Some("tom"));
        let cur = current(&doc).unwrap();
        assert_eq!(cur.id, b);
        assert_eq!(cur.status, BookingStatus::Booked);
        assert_eq!(cur.start, "2026-12-08T02:00:00.000Z");
    }

    #[test]
    fn hours_other_stores_and_roles_are_refused_with_reasons() {
        let p = policy();
        let (mut doc, id) = repair();
        let clerk = ctx(Role::Staff, "clerk", 4);
        let err = book(&mut doc, id, &clerk, &p, &slot("tom", 19)).unwrap_err();
        assert!(err.to_string().contains("09:00-18:00"), "{err}");
        let err = book(&mut doc, id, &clerk, &p, &slot("olga", 10)).unwrap_err();
        assert!(err.to_string().contains("store S2"), "{err}");
        let err = book(&mut doc, id, &clerk, &p, &slot("nobody", 10)).unwrap_err();
        assert!(err.to_string().contains("not a bookable"), "{err}");
        let err = book(
            &mut doc,
            id,
            &ctx(Role::Technician, "tom", 5),
            &p,
            &slot("tom", 10),
        )
        .unwrap_err();
        assert!(err.to_string().contains("technicians do not book"), "{err}");
        let late = Slot {
            hours_override: Some("customer only free in the evening".into()),
            ..slot("tom", 19)
        };
        assert!(
            book(&mut doc, id, &clerk, &p, &late).is_err(),
            "a clerk cannot override"
        );
        book(&mut doc, id, &ctx(Role::Supervisor, "sup", 6), &p, &late).unwrap();
        assert_eq!(
            current(&doc).unwrap().hours_override.as_deref(),
            Some("customer only free in the evening")
        );
    }

    #[test]
    fn visits_by_the_booked_technician_only_and_case_cancel_frees_the_slot() {
        let p = policy();
        let (mut doc, id) = repair();
        book(
            &mut doc,
            id,
            &ctx(Role::Staff, "clerk", 4),
            &p,
            &slot("tom", 10),
        )
        .unwrap();
        let err = record_visit(
            &mut doc,
            id,
            &ctx(Role::Technician, "jerry", 5),
            None,
            "arrive",
        )
        .unwrap_err();
        assert!(err.to_string().contains("only his own"), "{err}");
        record_visit(
            &mut doc,
            id,
            &ctx(Role::Technician, "tom", 6),
            None,
            "arrive",
        )
        .unwrap();
        assert_eq!(current(&doc).unwrap().status, BookingStatus::Arrived);
        record_visit(
            &mut doc,
            id,
            &ctx(Role::Technician, "tom", 7),
            None,
            "no_show",
        )
        .unwrap();
        assert_eq!(no_shows(&doc), 1);
        assert!(current(&doc).is_none());
        // A new booking, then the case is cancelled: nothing stays active.
        let first = bookings(&doc)[0].id.clone();
        reschedule(
            &mut doc,
            id,
            &ctx(Role::Staff, "clerk", 8),
            &p,
            Some(&first),
            &slot("tom", 14),
            "customer asked for the afternoon",
        )
        .unwrap();
        assert_eq!(current(&doc).unwrap().start_ms, tue(14).0);
        crate::case::transition::transition(
            &mut doc,
            id,
            &ctx(Role::Supervisor, "sup", 9),
            "cancelled",
            Some("customer withdrew"),
        )
        .unwrap();
        assert!(current(&doc).is_none());
        assert_eq!(bookings(&doc)[0].status, BookingStatus::Cancelled);
    }

    #[test]
    fn a_closed_case_holds_no_ones_time() {
        let p = policy();
        let (mut doc, id) = repair();
        book(
            &mut doc,
            id,
            &ctx(Role::Staff, "clerk", 4),
            &p,
            &slot("tom", 10),
        )
        .unwrap();
        for (n, to) in [
            (5, "in_repair"),
            (6, "pending_acceptance"),
            (7, "accepted"),
            (8, "followed_up"),
            (9, "closed"),
        ] {
            crate::case::transition::transition(
                &mut doc,
                id,
                &ctx(Role::Supervisor, "sup", n),
                to,
                None,
            )
            .unwrap();
        }
        assert!(current(&doc).is_none());
        assert_eq!(bookings(&doc)[0].status, BookingStatus::Completed);
        let view = crate::case::CaseView::from_doc(&doc, "x");
        assert!(view
            .timers
            .iter()
            .all(|t| t.name != crate::rules::timers::VISIT_WINDOW));
    }
}
