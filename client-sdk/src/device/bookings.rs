//! Bookings from the app's side: times are given in the store's local
//! time (`YYYY-MM-DD HH:MM`, the policy's zone) and lengths as `90m` or
//! `1h30m`, parsed here so every app and the command line read them alike.

use super::{entropy, now, Device};
use crate::error::ClientError;
use aftercase_sync::case::booking::Slot;
use aftercase_sync::replica::bookings::ScheduleEntry;
use aftercase_sync::rules::calendar;
use aftercase_sync::CaseId;

/// A booking as a person types it.
#[derive(Debug, Clone, Default)]
pub struct BookingRequest {
    /// The technician's or installer's user id.
    pub tech: String,
    /// Local start, `2026-12-08 10:00`.
    pub at: String,
    /// Length, `90m`.
    pub duration: String,
    /// How long after the start the technician may arrive (`30m`;
    /// default 60 minutes, at most the booking's length).
    pub window: Option<String>,
    /// Where to go.
    pub address: Option<String>,
    /// A supervisor's reason to book outside working hours.
    pub hours_override: Option<String>,
}

fn bad(field: &str, m: String) -> ClientError {
    ClientError::Replica(aftercase_sync::replica::ReplicaError::Edit(
        aftercase_sync::case::EditError::Invalid {
            field: field.into(),
            problem: m,
        },
    ))
}

impl Device {
    fn slot(&self, req: &BookingRequest) -> Result<Slot, ClientError> {
        let policy = self.policy();
        let start = calendar::parse_local(&policy, &req.at).map_err(|m| bad("at", m))?;
        let minutes = calendar::parse_minutes(&req.duration).map_err(|m| bad("duration", m))?;
        let window = match &req.window {
            Some(w) => calendar::parse_minutes(w).map_err(|m| bad("window", m))?,
            None => 60.min(minutes),
        };
        Ok(Slot {
            tech: req.tech.clone(),
            start,
            minutes,
            window_end: aftercase_sync::Millis(start.0 + window * 60_000),
            address: req.address.clone(),
            hours_override: req.hours_override.clone(),
        })
    }

    /// Books a technician on a repair or installation; a confirmed repair
    /// is dispatched and a prepared installation scheduled with it.
    /// Refused when the slot overlaps a booking this device holds, is
    /// outside the technician's hours (a supervisor may override with a
    /// reason), or names a technician of another store. Returns the
    /// booking id once durable.
    pub fn book(&self, case: CaseId, req: &BookingRequest) -> Result<String, ClientError> {
        let slot = self.slot(req)?;
        let r = self.shared().book(case, entropy(), &slot);
        self.edited(r)
    }

    /// Moves the current appointment (or `booking`) to a new time, with a
    /// reason. `tech` empty keeps the technician; `duration` empty keeps
    /// the length.
    pub fn reschedule(
        &self,
        case: CaseId,
        booking: Option<&str>,
        req: &BookingRequest,
        reason: &str,
    ) -> Result<(), ClientError> {
        let current = self
            .case(case)?
            .ok_or(aftercase_sync::replica::ReplicaError::UnknownCase(case))?
            .bookings
            .into_iter()
            .find(|b| {
                booking.is_none_or(|id| id == b.id) && (booking.is_some() || b.status.is_active())
            })
            .ok_or_else(|| bad("booking", "this case has no active booking".into()))?;
        let req = BookingRequest {
            tech: if req.tech.is_empty() {
                current.tech.clone()
            } else {
                req.tech.clone()
            },
            duration: if req.duration.is_empty() {
                format!("{}m", current.minutes)
            } else {
                req.duration.clone()
            },
            ..req.clone()
        };
        let slot = self.slot(&req)?;
        let r = self
            .shared()
            .reschedule(case, entropy(), Some(&current.id), &slot, reason);
        self.edited(r)
    }

    /// Cancels the current appointment (or `booking`), with a reason.
    pub fn cancel_booking(
        &self,
        case: CaseId,
        booking: Option<&str>,
        reason: &str,
    ) -> Result<(), ClientError> {
        let r = self
            .shared()
            .cancel_booking(case, entropy(), booking, reason);
        self.edited(r)
    }

    /// Records the technician's arrival, the visit's completion or the
    /// customer's no-show (`what`: arrive, complete, no_show).
    pub fn record_visit(
        &self,
        case: CaseId,
        booking: Option<&str>,
        what: &str,
    ) -> Result<(), ClientError> {
        let r = self.shared().record_visit(case, entropy(), booking, what);
        self.edited(r)
    }

    /// The bookings of `tech` (all technicians when `None`; a technician
    /// always gets his own) on the local day `date` (`YYYY-MM-DD`; today
    /// when `None`), from the cases this device holds.
    pub fn schedule(
        &self,
        tech: Option<&str>,
        date: Option<&str>,
    ) -> Result<Vec<ScheduleEntry>, ClientError> {
        let policy = self.policy();
        let date = match date {
            Some(d) => d.to_string(),
            None => calendar::format_local(&policy, now().0)[..10].to_string(),
        };
        let (from, to) = calendar::local_day_range(&policy, &date).map_err(|m| bad("date", m))?;
        Ok(self.shared().schedule(tech, from.0, to.0)?)
    }

    /// Every open scheduling conflict among the cases on this device.
    pub fn schedule_conflicts(
        &self,
    ) -> Result<Vec<aftercase_sync::rules::calendar::ScheduleConflict>, ClientError> {
        Ok(self.shared().schedule_conflicts()?)
    }

    /// Visits missed by the customer with `phone`, across this device's cases.
    pub fn no_shows_of(&self, phone: &str) -> Result<u32, ClientError> {
        Ok(self.shared().no_shows_of(phone)?)
    }
}
