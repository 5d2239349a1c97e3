//! Who may make which move (domain.md §3).

use crate::access::Role;
use crate::case::CaseKind;

/// Moves a technician makes on a case assigned to them: the work itself and
/// the customer's acceptance, never money or closing.
const TECHNICIAN_MOVES: &[(CaseKind, &str, &str)] = &[
    (CaseKind::Repair, "dispatched", "in_repair"),
    (CaseKind::Repair, "in_repair", "waiting_parts"),
    (CaseKind::Repair, "waiting_parts", "in_repair"),
    (CaseKind::Repair, "in_repair", "pending_acceptance"),
    (CaseKind::Repair, "pending_acceptance", "accepted"),
    (CaseKind::Repair, "pending_acceptance", "in_repair"),
    (CaseKind::Repair, "in_repair", "cannot_repair"),
    (CaseKind::Repair, "waiting_parts", "cannot_repair"),
    (CaseKind::Installation, "scheduled", "in_progress"),
    (CaseKind::Installation, "in_progress", "scheduled"),
    (CaseKind::Installation, "in_progress", "pending_acceptance"),
    (CaseKind::Installation, "pending_acceptance", "accepted"),
    (CaseKind::Installation, "pending_acceptance", "in_progress"),
    (CaseKind::Installation, "in_progress", "failed"),
];

/// Moves that need a supervisor (or head office): exceptions and closing
/// decisions.
const SUPERVISOR_MOVES: &[(CaseKind, &str, &str)] = &[
    (CaseKind::Complaint, "replied", "archived"),
    (CaseKind::Complaint, "surveyed", "archived"),
    (CaseKind::Complaint, "not_accepted", "archived"),
    (CaseKind::DamageClaim, "declined", "offered"),
    (CaseKind::DamageClaim, "declined", "closed"),
];

/// Whether `role` may move a case of `kind` from `from` to `to`; the error
/// says who can, in the words of the shop floor.
pub fn may_move(role: Role, kind: CaseKind, from: &str, to: &str) -> Result<(), String> {
    match role {
        Role::Supervisor | Role::HeadOffice => Ok(()),
        Role::Technician => {
            if TECHNICIAN_MOVES.contains(&(kind, from, to)) {
                Ok(())
            } else {
                Err(format!(
                    "a technician may not move a {kind} from {from} to {to}: ask the store"
                ))
            }
        }
        Role::Staff => {
            if to == super::table::CANCELLED {
                Err("only a supervisor can cancel a case".into())
            } else if SUPERVISOR_MOVES.contains(&(kind, from, to)) {
                Err(format!(
                    "moving a {kind} from {from} to {to} needs a supervisor"
                ))
            } else {
                Ok(())
            }
        }
    }
}
