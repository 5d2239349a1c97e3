//! Bookings on the device: the edits, and the calendar derived from every
//! case the device holds.
//!
//! A device refuses a booking that overlaps one it can see, so a clerk is
//! told at once. Bookings made on devices that could not see each other
//! (offline, or each holding only one of the cases) are accepted and
//! become a scheduling conflict once the cases meet on a replica: the
//! calendar is a pure function of the cases held
//! (`crate::rules::calendar`), so the relay, head office and every device
//! holding both cases derive the same conflict.

use super::{Entropy, Replica, ReplicaError};
use crate::access::Role;
use crate::case::booking::{self, BookingView, Slot};
use crate::case::edit::EditError;
use crate::ids::CaseId;
use crate::rules::calendar::{self, Placed, ScheduleConflict};
use crate::storage::Storage;

/// One booking in a calendar listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScheduleEntry {
    /// The case.
    pub case: String,
    /// Its human number.
    pub case_no: Option<String>,
    /// repair or installation.
    pub kind: Option<String>,
    /// The booking.
    pub booking: BookingView,
    /// Ids of the scheduling conflicts this booking is in.
    pub conflicts: Vec<String>,
}

impl<S: Storage> Replica<S> {
    /// The active bookings of every case this device holds.
    pub fn placed(&self) -> Result<Vec<Placed>, ReplicaError> {
        let mut out = Vec::new();
        for id in self.case_ids()? {
            if let Some(bookings) = self.with_doc(id, booking::bookings)? {
                out.extend(calendar::placed(id, &bookings));
            }
        }
        Ok(out)
    }

    /// Every scheduling conflict among the cases this device holds.
    pub fn schedule_conflicts(&self) -> Result<Vec<ScheduleConflict>, ReplicaError> {
        Ok(calendar::conflicts(&self.placed()?))
    }

    /// The bookings of `tech` (every technician when `None`) that overlap
    /// `[from, to)` ms, in start order, with their conflicts. A technician
    /// sees only his own.
    pub fn schedule(
        &self,
        tech: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<ScheduleEntry>, ReplicaError> {
        let me = self.identity.user.as_str().to_string();
        if self.identity.role == Role::Technician && tech.is_some_and(|t| t != me) {
            return Err(ReplicaError::Edit(EditError::NotAllowed(
                "a technician sees only his own schedule".into(),
            )));
        }
        let tech = if self.identity.role == Role::Technician {
            Some(me.as_str())
        } else {
            tech
        };
        let conflicts = self.schedule_conflicts()?;
        let mut out = Vec::new();
        for id in self.case_ids()? {
            let Some(v) = self.case(id)? else {
                continue;
            };
            for b in &v.bookings {
                if tech.is_some_and(|t| t != b.tech) || b.end_ms() <= from || b.start_ms >= to {
                    continue;
                }
                out.push(ScheduleEntry {
                    case: v.id.clone(),
                    case_no: v.case_no.clone(),
                    kind: v.kind.clone(),
                    conflicts: conflicts
                        .iter()
                        .filter(|c| c.first.booking == b.id || c.second.booking == b.id)
                        .map(|c| c.id.clone())
                        .collect(),
                    booking: b.clone(),
                });
            }
        }
        out.sort_by(|a, b| {
            (a.booking.start_ms, &a.booking.tech, &a.case).cmp(&(
                b.booking.start_ms,
                &b.booking.tech,
                &b.case,
            ))
        });
        Ok(out)
    }

    /// Refuses a slot that overlaps an active booking this device can see
    /// (other than `except`, the booking being moved).
    fn check_free(
        &self,
        case: CaseId,
        slot: &Slot,
        except: Option<&str>,
    ) -> Result<(), ReplicaError> {
        let placed = self.placed()?;
        let end = slot.start.0 + slot.minutes * 60_000;
        if let Some(o) = calendar::overlapping(&placed, &slot.tech, slot.start.0, end, except)
            .into_iter()
            .next()
        {
            let p = self.policy().clone();
            let which = if o.case == case {
                "another booking of this case".to_string()
            } else {
                format!("case {}", o.case)
            };
            return Err(ReplicaError::Edit(EditError::NotAllowed(format!(
                "{} is already booked {} to {} on {which}: pick another time",
                slot.tech,
                calendar::format_local(&p, o.start),
                calendar::format_local(&p, o.end)
            ))));
        }
        Ok(())
    }

    /// Books a technician (see [`booking::book`]), after checking the slot
    /// is free in the calendar this device holds. Returns the booking id.
    pub fn book(&self, case: CaseId, e: Entropy, slot: &Slot) -> Result<String, ReplicaError> {
        self.check_free(case, slot, None)?;
        let policy = self.policy.clone();
        let mut id = String::new();
        self.edit(case, e, |d, c| {
            id = booking::book(d, case, c, &policy, slot)?;
            Ok(())
        })?;
        Ok(id)
    }

    /// Moves a booking (the current appointment when `booking` is `None`),
    /// after checking the new slot is free.
    pub fn reschedule(
        &self,
        case: CaseId,
        e: Entropy,
        booking_id: Option<&str>,
        slot: &Slot,
        reason: &str,
    ) -> Result<(), ReplicaError> {
        let current = match booking_id {
            Some(b) => Some(b.to_string()),
            None => self
                .case(case)?
                .ok_or(ReplicaError::UnknownCase(case))?
                .appointment
                .map(|a| a.id),
        };
        self.check_free(case, slot, current.as_deref())?;
        let policy = self.policy.clone();
        self.edit(case, e, |d, c| {
            booking::reschedule(d, case, c, &policy, current.as_deref(), slot, reason)
        })
    }

    /// Cancels a booking (the current appointment when `None`).
    pub fn cancel_booking(
        &self,
        case: CaseId,
        e: Entropy,
        booking_id: Option<&str>,
        reason: &str,
    ) -> Result<(), ReplicaError> {
        self.edit(case, e, |d, c| {
            booking::cancel(d, case, c, booking_id, reason)
        })
    }

    /// Records an arrival, a completion or a no-show (`what`).
    pub fn record_visit(
        &self,
        case: CaseId,
        e: Entropy,
        booking_id: Option<&str>,
        what: &str,
    ) -> Result<(), ReplicaError> {
        self.edit(case, e, |d, c| {
            booking::record_visit(d, case, c, booking_id, what)
        })
    }

    /// How many times the customer with `phone` did not show up, across the
    /// cases this device holds.
    pub fn no_shows_of(&self, phone: &str) -> Result<u32, ReplicaError> {
        let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
        let want = digits(phone);
        let mut n = 0u32;
        for id in self.case_ids()? {
            // Phones are sealed: opened with each case's key.
            let key = self.case_key(id)?;
            let shows = self.with_doc(id, |d| {
                let v = crate::case::read::map(
                    d,
                    &automerge::ROOT,
                    crate::case::schema::root::CUSTOMER,
                )
                .and_then(|c| crate::case::read::string(d, &c, "phone"))
                .and_then(|p| crate::case::seal::reveal(key.as_ref(), id, "customer_phone", p));
                if v.is_some_and(|p| digits(&p) == want) {
                    booking::no_shows(d)
                } else {
                    0
                }
            })?;
            n = n.saturating_add(shows.unwrap_or(0));
        }
        Ok(n)
    }
}
