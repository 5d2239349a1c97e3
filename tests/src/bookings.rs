//! Bookings in the simulated world: head office publishes technicians'
//! hours, stores open repairs and installations and book, rebook and
//! cancel at random on a coarse grid of times (so offline double bookings
//! are frequent), and supervisors settle the scheduling conflicts they
//! see.

use super::World;
use aftercase_sync::access::{Principal, Role};
use aftercase_sync::case::booking::Slot;
use aftercase_sync::case::CaseKind;
use aftercase_sync::policy::{Policy, TechnicianHours};
use aftercase_sync::protocol::Frame;
use aftercase_sync::{CaseId, Millis};
use rand::Rng;

/// 2026-12-08 00:00 in China, the day every simulated booking falls on.
pub const BOOKING_DAY: i64 = 1_796_659_200_000;
const HOUR: i64 = 3_600_000;

impl World {
    /// Publishes policy version 2 at the relay from a head-office session
    /// listing each technician device of the world as bookable for its
    /// store, 08:00-20:00 every day, and has every device adopt it (as
    /// after a sync).
    pub fn publish_technicians(&mut self) -> Policy {
        let technicians = self
            .devices
            .iter()
            .filter(|d| d.role == Role::Technician)
            .map(|d| TechnicianHours {
                user: format!("user-{}", d.name),
                store: d.store.to_string(),
                start: "08:00".into(),
                end: "20:00".into(),
                days: vec![1, 2, 3, 4, 5, 6, 7],
                days_off: vec![],
            })
            .collect();
        let policy = Policy {
            version: 2,
            technicians,
            ..Policy::default()
        };
        let json = serde_json::to_string(&policy).expect("policy json");
        let mut ho = self.relay.session(Principal {
            user: "hq-publisher".parse().expect("valid"),
            role: Role::HeadOffice,
            store: "HQ".parse().expect("valid"),
            device: "hq-publisher".parse().expect("valid"),
        });
        let hello = Frame::Hello {
            cursor: 0,
            policy_version: 1,
            app_version: String::new(),
            unsynced: Default::default(),
            features: Vec::new(),
        };
        let now = self.now();
        self.relay.handle(&mut ho, hello, now).expect("hello");
        let out = self
            .relay
            .handle(&mut ho, Frame::PublishPolicy { json: json.clone() }, now)
            .expect("publish");
        assert!(out.policy_published, "the relay refused the policy");
        self.relay.end_session(ho).expect("end session");
        for d in &mut self.devices {
            d.replica
                .adopt_policy(policy.clone(), &json)
                .expect("adopt policy");
        }
        policy
    }

    /// A staff member or supervisor on `d` opens a repair (confirmed) or an
    /// installation (prepared), ready to be booked.
    pub fn open_bookable(&mut self, d: usize) -> Option<CaseId> {
        if !matches!(self.devices[d].role, Role::Staff | Role::Supervisor) {
            return None;
        }
        let kind = if self.rng.random_bool(0.5) {
            CaseKind::Repair
        } else {
            CaseKind::Installation
        };
        let e = self.entropy();
        let id = CaseId::from_random_bytes(self.rng.random());
        self.devices[d]
            .replica
            .create_case(
                id,
                e,
                kind,
                aftercase_sync::case::edit::Customer {
                    name: "Li Na".into(),
                    phone: "13800000002".into(),
                },
                None,
                None,
            )
            .expect("create");
        let to = if kind == CaseKind::Repair {
            "confirmed"
        } else {
            "prepared"
        };
        let e = self.entropy();
        self.devices[d]
            .replica
            .transition(id, e, to, None)
            .expect("first move");
        self.log.push(format!(
            "{} opens bookable {kind} {id}",
            self.devices[d].name
        ));
        self.after_local_edit(d, id);
        Some(id)
    }

    /// A random slot on the booking day for a technician the policy of
    /// `d` lists for its store (`None` when it lists none).
    pub(crate) fn random_slot(&mut self, d: usize) -> Option<Slot> {
        let store = self.devices[d].store.to_string();
        let techs: Vec<String> = self.devices[d]
            .replica
            .policy()
            .technicians
            .iter()
            .filter(|t| t.store == store)
            .map(|t| t.user.clone())
            .collect();
        if techs.is_empty() {
            return None;
        }
        let tech = techs[self.rng.random_range(0..techs.len())].clone();
        let start = BOOKING_DAY + (9 + self.rng.random_range(0..8)) * HOUR;
        let minutes = [60, 90, 120][self.rng.random_range(0..3)];
        Some(Slot {
            tech,
            start: Millis(start),
            minutes,
            window_end: Millis(start + 30 * 60_000),
            address: None,
            hours_override: None,
        })
    }

    /// Books a technician on one of `d`'s repair or installation cases.
    /// Returns the case and booking id when the device accepted it (it
    /// refuses an overlap it can see).
    pub fn book_random(&mut self, d: usize) -> Option<(CaseId, String)> {
        let case = self.bookable_case(d, false)?;
        let slot = self.random_slot(d)?;
        let e = self.entropy();
        match self.devices[d].replica.book(case, e, &slot) {
            Ok(id) => {
                self.log.push(format!(
                    "{} books {} at {} on {case}",
                    self.devices[d].name, slot.tech, slot.start.0
                ));
                self.after_local_edit(d, case);
                Some((case, id))
            }
            Err(_) => None,
        }
    }

    /// Moves, or cancels, the appointment of one of `d`'s cases.
    pub fn rebook_random(&mut self, d: usize) {
        let Some(case) = self.bookable_case(d, true) else {
            return;
        };
        let e = self.entropy();
        let result = if self.rng.random_bool(0.25) {
            self.devices[d]
                .replica
                .cancel_booking(case, e, None, "customer request")
                .map(|_| "cancels the booking".to_string())
        } else {
            let Some(slot) = self.random_slot(d) else {
                return;
            };
            self.devices[d]
                .replica
                .reschedule(case, e, None, &slot, "customer request")
                .map(|_| format!("reschedules to {} at {}", slot.tech, slot.start.0))
        };
        if let Ok(what) = result {
            self.log
                .push(format!("{} {what} on {case}", self.devices[d].name));
            self.after_local_edit(d, case);
        }
    }

    /// A supervisor on `d` settles one scheduling conflict he sees by
    /// moving the second booking to a free slot of the same technician.
    pub fn settle_schedule_conflict(&mut self, d: usize) {
        if self.devices[d].role != Role::Supervisor {
            return;
        }
        let Ok(conflicts) = self.devices[d].replica.schedule_conflicts() else {
            return;
        };
        let Some(c) = conflicts.first().cloned() else {
            return;
        };
        for h in 9..17 {
            let start = BOOKING_DAY + h * HOUR;
            let slot = Slot {
                tech: c.tech.clone(),
                start: Millis(start),
                minutes: 60,
                window_end: Millis(start + 30 * 60_000),
                address: None,
                hours_override: None,
            };
            let e = self.entropy();
            let moved = self.devices[d].replica.reschedule(
                c.second.case,
                e,
                Some(&c.second.booking),
                &slot,
                "double booking",
            );
            if moved.is_ok() {
                self.log.push(format!(
                    "{} settles {} by moving {} to {start}",
                    self.devices[d].name, c.id, c.second.case
                ));
                self.after_local_edit(d, c.second.case);
                return;
            }
        }
    }

    /// One of `d`'s open repairs or installations (with an appointment
    /// when `booked`), among the first few so that devices of one store
    /// touch the same cases.
    fn bookable_case(&mut self, d: usize, booked: bool) -> Option<CaseId> {
        let views = self.devices[d].replica.cases().ok()?;
        let open: Vec<CaseId> = views
            .iter()
            .filter(|v| matches!(v.kind.as_deref(), Some("repair" | "installation")))
            .filter(|v| !v.allowed_transitions.is_empty())
            .filter(|v| v.appointment.is_some() == booked)
            .filter_map(|v| v.id.parse().ok())
            .collect();
        if open.is_empty() {
            return None;
        }
        Some(open[self.rng.random_range(0..open.len().min(4))])
    }
}
