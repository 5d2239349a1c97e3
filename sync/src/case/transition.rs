//! Workflow edits: moving a case along its flow and resolving forks.

use super::edit::{invalid, put_entry, require_case, EditContext, EditError};
use super::schema::entry;
use crate::ids::CaseId;
use crate::workflow::{derive, history, roles, table};
use automerge::{Automerge, AutomergeError};

/// Moves that pay money out: they wait while two offers are accepted at once.
const IRREVERSIBLE: &[&str] = &["refunded", "partial_refund_keep", "settled"];

/// Moves the case to `to` under the default policy; see [`transition_with`].
pub fn transition(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    to: &str,
    reason: Option<&str>,
) -> Result<(), EditError> {
    transition_with(doc, id, ctx, &crate::policy::Policy::default(), to, reason)
}

/// Moves the case to `to`, after checking the flow, open conflicts, the
/// person's role and the rules that depend on `policy` (a clerk accepts a
/// return only inside the return windows). Records the move as an event
/// naming the state it left and the move it followed, so concurrent moves
/// are recognised as a fork.
pub fn transition_with(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    policy: &crate::policy::Policy,
    to: &str,
    reason: Option<&str>,
) -> Result<(), EditError> {
    let kind = require_case(doc, id)?;
    let wf = check_move(doc, kind, ctx, policy, to, reason)?;
    if super::booking::needs_booking(kind, to) {
        return Err(EditError::NotAllowed(format!(
            "a {kind} moves to {to} only with a booking: use `case book ID --tech T --at \"YYYY-MM-DD HH:MM\" --duration 90m`"
        )));
    }
    doc.transact::<_, _, AutomergeError>(|tx| {
        write_move(tx, ctx, policy, &wf.status, &wf.head, to, reason)
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}

/// Checks that the case may move to `to` now (flow, open conflicts, role,
/// windows, money, evidence) and returns its workflow position. Used by
/// every edit that records a move, so a move written together with a
/// booking is held to the same rules.
pub(crate) fn check_move(
    doc: &Automerge,
    kind: crate::case::CaseKind,
    ctx: &EditContext,
    policy: &crate::policy::Policy,
    to: &str,
    reason: Option<&str>,
) -> Result<crate::workflow::Workflow, EditError> {
    let wf = derive(doc, kind);
    if let Some(c) = wf.open_conflict() {
        return Err(EditError::OpenConflict {
            id: c.id.clone(),
            from: c.from.clone(),
            options: c.options.clone(),
        });
    }
    if IRREVERSIBLE.contains(&to) {
        if let Some(ids) = crate::money::accepted_conflict(doc, &crate::money::offers(doc)) {
            return Err(EditError::OpenConflict {
                id: "offers".into(),
                from: "offers".into(),
                options: ids,
            });
        }
    }
    if !table::is_allowed(kind, &wf.status, to) {
        return Err(EditError::Transition {
            kind,
            from: wf.status.clone(),
            to: to.to_string(),
            allowed: table::allowed_from(kind, &wf.status)
                .into_iter()
                .map(str::to_string)
                .collect(),
        });
    }
    roles::may_move(ctx.role, kind, &wf.status, to).map_err(EditError::NotAllowed)?;
    if rule_applies(ctx.role, kind, to) {
        crate::rules::warranty::staff_may_accept_return(doc, policy, ctx.now.0)
            .map_err(EditError::NotAllowed)?;
    }
    crate::money::paying_move_allowed(doc, kind, to).map_err(EditError::NotAllowed)?;
    super::evidence::move_allowed(doc, kind, to, policy).map_err(EditError::NotAllowed)?;
    if table::needs_reason(kind, to) && reason.is_none_or(|r| r.trim().is_empty()) {
        return Err(invalid(
            "reason",
            format!("a {kind} moved to {to} must say why (--reason TEXT)"),
        ));
    }
    if let Some(r) = reason {
        if r.chars().count() > 2_000 {
            return Err(invalid("reason", "is longer than 2000 characters"));
        }
    }
    Ok(wf)
}

/// Writes a move checked by [`check_move`]: the transition event and its
/// timeline entry.
pub(crate) fn write_move(
    tx: &mut automerge::transaction::Transaction<'_>,
    ctx: &EditContext,
    policy: &crate::policy::Policy,
    from: &str,
    head: &str,
    to: &str,
    reason: Option<&str>,
) -> Result<(), AutomergeError> {
    use automerge::transaction::Transactable;
    let e = put_entry(tx, history::TRANSITIONS, ctx, "transition")?;
    tx.put(&e, "from", from)?;
    tx.put(&e, "to", to)?;
    tx.put(&e, "prev", head)?;
    tx.put(&e, "policy_version", i64::from(policy.version))?;
    if let Some(r) = reason {
        tx.put(&e, "reason", r)?;
    }
    let t = put_entry(tx, super::schema::root::TIMELINE, ctx, "status_change")?;
    let text = match reason {
        Some(r) => format!("{from} → {to}: {r}"),
        None => format!("{from} → {to}"),
    };
    tx.put(&t, entry::TEXT, text)?;
    Ok(())
}

/// Settles an open conflict by choosing one of its branches.
pub fn resolve(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    conflict: &str,
    choose: &str,
) -> Result<(), EditError> {
    let kind = require_case(doc, id)?;
    if !history::may_resolve(ctx.role) {
        return Err(EditError::NotAllowed(
            "only a supervisor or head office can resolve a conflict".into(),
        ));
    }
    if conflict == "offers" {
        return Err(invalid(
            "conflict",
            "two accepted offers are settled by withdrawing one: `case withdraw-offer ID OFFER_ID`",
        ));
    }
    let wf = derive(&*doc, kind);
    let Some(c) = wf.conflicts.iter().find(|c| c.id == conflict) else {
        return Err(invalid(
            "conflict",
            format!("case {id} has no conflict {conflict:?}"),
        ));
    };
    if let Some(r) = &c.resolution {
        return Err(invalid(
            "conflict",
            format!(
                "{conflict} was already resolved: {} chose {}",
                r.by, r.choose
            ),
        ));
    }
    if !c.options.iter().any(|o| o == choose) {
        return Err(invalid(
            "choose",
            format!(
                "{choose:?} is not one of the options: {}",
                c.options.join(", ")
            ),
        ));
    }
    let from = c.from.clone();
    doc.transact::<_, _, AutomergeError>(|tx| {
        use automerge::transaction::Transactable;
        let e = put_entry(tx, history::RESOLUTIONS, ctx, "resolution")?;
        tx.put(&e, "conflict", conflict)?;
        tx.put(&e, "choose", choose)?;
        let t = put_entry(tx, super::schema::root::TIMELINE, ctx, "conflict_resolved")?;
        tx.put(
            &t,
            entry::TEXT,
            format!("conflict at {from} resolved: {choose}"),
        )?;
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}

/// Whether `to` is a move that cannot be undone (money has left).
pub fn is_irreversible(to: &str) -> bool {
    IRREVERSIBLE.contains(&to)
}

/// Whether the return-window rule applies to this move.
pub fn rule_applies(role: crate::access::Role, kind: crate::case::CaseKind, to: &str) -> bool {
    role == crate::access::Role::Staff
        && kind == crate::case::CaseKind::ReturnExchange
        && to == "accepted"
}
