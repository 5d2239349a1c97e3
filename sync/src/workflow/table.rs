//! The handbook's flows as data: for each kind, its states in order and the
//! moves allowed between them (domain.md §1). Everything else in the
//! workflow (status, conflicts, who may move what) is derived from this.

use crate::case::CaseKind;

/// State every kind can be moved to from any non-final state.
pub const CANCELLED: &str = "cancelled";

const REPAIR_STATES: &[&str] = &[
    "reported",
    "confirmed",
    "dispatched",
    "in_repair",
    "waiting_parts",
    "pending_acceptance",
    "accepted",
    "followed_up",
    "closed",
    "cannot_repair",
];
const REPAIR_MOVES: &[(&str, &str)] = &[
    ("reported", "confirmed"),
    ("confirmed", "dispatched"),
    ("dispatched", "in_repair"),
    ("in_repair", "waiting_parts"),
    ("waiting_parts", "in_repair"),
    ("in_repair", "pending_acceptance"),
    ("pending_acceptance", "accepted"),
    // Failed acceptance: back to the bench, counted as a rework.
    ("pending_acceptance", "in_repair"),
    ("accepted", "followed_up"),
    ("followed_up", "closed"),
    // Opens a linked return_exchange.
    ("in_repair", "cannot_repair"),
    ("waiting_parts", "cannot_repair"),
    ("cannot_repair", "closed"),
];

const INSTALLATION_STATES: &[&str] = &[
    "requested",
    "prepared",
    "scheduled",
    "in_progress",
    "pending_acceptance",
    "accepted",
    "surveyed",
    "closed",
    "failed",
];
const INSTALLATION_MOVES: &[(&str, &str)] = &[
    ("requested", "prepared"),
    ("prepared", "scheduled"),
    ("scheduled", "in_progress"),
    // Reschedule.
    ("in_progress", "scheduled"),
    ("in_progress", "pending_acceptance"),
    ("pending_acceptance", "accepted"),
    ("pending_acceptance", "in_progress"),
    ("accepted", "surveyed"),
    ("surveyed", "closed"),
    // Site not ready or defect: opens a linked repair or return_exchange.
    ("in_progress", "failed"),
    ("failed", "closed"),
];

const RETURN_STATES: &[&str] = &[
    "requested",
    "under_review",
    "accepted",
    "rejected",
    "awaiting_goods",
    "inspecting",
    "refunded",
    "exchanged",
    "partial_refund_keep",
    "converted_to_repair",
    "closed",
];
const RETURN_MOVES: &[(&str, &str)] = &[
    ("requested", "under_review"),
    // Accepting means processing starts, not that a refund is granted.
    ("under_review", "accepted"),
    ("under_review", "rejected"),
    ("accepted", "awaiting_goods"),
    ("awaiting_goods", "inspecting"),
    ("inspecting", "refunded"),
    ("inspecting", "exchanged"),
    ("inspecting", "partial_refund_keep"),
    ("inspecting", "converted_to_repair"),
    ("refunded", "closed"),
    ("exchanged", "closed"),
    ("partial_refund_keep", "closed"),
    ("converted_to_repair", "closed"),
    ("rejected", "closed"),
];

const DAMAGE_STATES: &[&str] = &[
    "reported",
    "evidence_collected",
    "assessed",
    "offered",
    "agreed",
    "declined",
    "settled",
    "closed",
];
const DAMAGE_MOVES: &[(&str, &str)] = &[
    ("reported", "evidence_collected"),
    ("evidence_collected", "assessed"),
    ("assessed", "offered"),
    ("offered", "agreed"),
    ("offered", "declined"),
    // A declined offer goes to the supervisor, who may offer again or close.
    ("declined", "offered"),
    ("declined", "closed"),
    ("agreed", "settled"),
    ("settled", "closed"),
];

const COMPLAINT_STATES: &[&str] = &[
    "registered",
    "accepted",
    "not_accepted",
    "in_handling",
    "coordinating",
    "replied",
    "surveyed",
    "archived",
];
const COMPLAINT_MOVES: &[(&str, &str)] = &[
    ("registered", "accepted"),
    ("registered", "not_accepted"),
    ("not_accepted", "archived"),
    ("accepted", "in_handling"),
    ("in_handling", "coordinating"),
    // Answered on the spot.
    ("in_handling", "replied"),
    ("coordinating", "replied"),
    ("replied", "surveyed"),
    ("replied", "archived"),
    ("surveyed", "archived"),
    // Reopened: the customer is not satisfied (counts as a repeat complaint).
    ("replied", "in_handling"),
    ("surveyed", "in_handling"),
];

/// The kind of case a move opens as a linked follow-up: a repair that
/// cannot be done becomes a return or exchange, a failed installation a repair.
pub fn follow_up(kind: CaseKind, to: &str) -> Option<CaseKind> {
    match (kind, to) {
        (CaseKind::Repair, "cannot_repair") => Some(CaseKind::ReturnExchange),
        (CaseKind::Installation, "failed") => Some(CaseKind::Repair),
        _ => None,
    }
}

/// The states of `kind`, in handbook order, without `cancelled`.
pub fn states(kind: CaseKind) -> &'static [&'static str] {
    match kind {
        CaseKind::Repair => REPAIR_STATES,
        CaseKind::Installation => INSTALLATION_STATES,
        CaseKind::ReturnExchange => RETURN_STATES,
        CaseKind::DamageClaim => DAMAGE_STATES,
        CaseKind::Complaint => COMPLAINT_STATES,
    }
}

/// The moves of `kind` besides cancelling.
pub fn moves(kind: CaseKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        CaseKind::Repair => REPAIR_MOVES,
        CaseKind::Installation => INSTALLATION_MOVES,
        CaseKind::ReturnExchange => RETURN_MOVES,
        CaseKind::DamageClaim => DAMAGE_MOVES,
        CaseKind::Complaint => COMPLAINT_MOVES,
    }
}

/// Whether `state` ends the case (nothing can follow, not even cancelling).
pub fn is_final(kind: CaseKind, state: &str) -> bool {
    state == CANCELLED
        || (states(kind).contains(&state) && !moves(kind).iter().any(|(from, _)| *from == state))
}

/// Whether moving from `from` to `to` is a step of the flow.
pub fn is_allowed(kind: CaseKind, from: &str, to: &str) -> bool {
    if to == CANCELLED {
        return states(kind).contains(&from) && !is_final(kind, from);
    }
    moves(kind).contains(&(from, to))
}

/// Moves that must say why (domain.md §1: a complaint not accepted is
/// answered with its reason, 不予受理 needs grounds the customer can take
/// to the regulator).
const NEEDS_REASON: &[(CaseKind, &str)] = &[(CaseKind::Complaint, "not_accepted")];

/// Whether moving a `kind` case to `to` must carry a reason.
pub fn needs_reason(kind: CaseKind, to: &str) -> bool {
    NEEDS_REASON.contains(&(kind, to))
}

/// The states reachable in one move from `from`, in handbook order, with
/// `cancelled` last when allowed.
pub fn allowed_from(kind: CaseKind, from: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = states(kind)
        .iter()
        .copied()
        .filter(|to| is_allowed(kind, from, to))
        .collect();
    if is_allowed(kind, from, CANCELLED) {
        out.push(CANCELLED);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_move_names_known_states_and_every_state_is_reachable() {
        for kind in CaseKind::ALL {
            let s = states(kind);
            assert_eq!(s[0], kind.initial_status());
            for (from, to) in moves(kind) {
                assert!(s.contains(from) && s.contains(to), "{kind}: {from}->{to}");
            }
            for st in &s[1..] {
                assert!(
                    moves(kind).iter().any(|(_, to)| to == st),
                    "{kind}: {st} unreachable"
                );
            }
            assert!(is_final(kind, "cancelled"));
        }
    }
}
