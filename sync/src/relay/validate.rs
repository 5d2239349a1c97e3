//! What the relay checks in every change a device uploads, before anything
//! is stored. A modified client can write any bytes into a document; these
//! checks make sure that what it writes is something its authenticated role
//! may do, signed with its own identity. A change that fails is refused
//! whole: nothing of it is stored or forwarded.

use crate::access::{Principal, Role};
use crate::case::read;
use crate::case::schema::root;
use crate::case::CaseKind;
use crate::money::{self, Tier};
use crate::policy::Policy;
use crate::workflow::{history, roles, table};
use automerge::{Automerge, ChangeHash, ObjId, ReadDoc, ROOT};
use std::collections::BTreeSet;

/// Maps whose entries are appended by users and carry author/role/device.
const LOGS: &[&str] = &[
    root::TIMELINE,
    root::CONTACTS,
    history::TRANSITIONS,
    history::RESOLUTIONS,
    money::OFFERS,
    money::DECISIONS,
    crate::case::service::SURVEYS,
    crate::case::service::ESCALATIONS,
    crate::case::service::FREIGHT,
    crate::case::service::ASSIGNMENTS,
];

/// Root fields fixed when the case is opened.
const FIXED: &[&str] = &[
    root::ID,
    root::KIND,
    root::STORE_ID,
    root::CREATED_BY,
    root::DEVICE_ID,
    root::CREATED_AT,
    root::CASE_NO,
];

fn new_entries(doc: &Automerge, before: &[ChangeHash], key: &str) -> Vec<(String, ObjId)> {
    let Some(map) = read::map(doc, &ROOT, key) else {
        return Vec::new();
    };
    let old: BTreeSet<String> = if before.is_empty() {
        BTreeSet::new()
    } else {
        doc.keys_at(&map, before).collect()
    };
    read::entries(doc, &ROOT, key)
        .into_iter()
        .filter(|(k, _)| !old.contains(k))
        .collect()
}

fn scalar_at(doc: &Automerge, heads: Option<&[ChangeHash]>, key: &str) -> Option<String> {
    let value = match heads {
        Some(h) => doc.get_at(ROOT, key, h),
        None => doc.get(ROOT, key),
    };
    match value.ok()?? {
        (automerge::Value::Scalar(s), _) => Some(s.to_string()),
        _ => None,
    }
}

/// Checks the changes between `before` and the current state of `doc`,
/// uploaded by `p`. Returns a reason fit to show the person on refusal.
pub fn check_upload(
    doc: &Automerge,
    before: &[ChangeHash],
    p: &Principal,
    policy: &Policy,
) -> Result<(), String> {
    let kind: CaseKind = read::string(doc, &ROOT, root::KIND)
        .and_then(|k| k.parse().ok())
        .ok_or("the case has no valid kind")?;
    if !before.is_empty() {
        for key in FIXED {
            if scalar_at(doc, Some(before), key) != scalar_at(doc, None, key) {
                return Err(format!("{key} of a case cannot be changed"));
            }
        }
    }
    for log in LOGS {
        for (id, e) in new_entries(doc, before, log) {
            let author = read::string(doc, &e, "author").unwrap_or_default();
            let role = read::string(doc, &e, "role").unwrap_or_default();
            let device = read::string(doc, &e, "device").unwrap_or_default();
            if author != p.user.as_str() || role != p.role.as_str() || device != p.device.as_str() {
                return Err(format!(
                    "entry {id} claims to be by {author} ({role}) on {device}, but this connection is {} ({}) on {}",
                    p.user, p.role, p.device
                ));
            }
            if *log == history::TRANSITIONS {
                check_transition(doc, kind, &e, p.role)?;
                let to = read::string(doc, &e, "to").unwrap_or_default();
                if crate::case::transition::rule_applies(p.role, kind, &to) {
                    let at = read::int(doc, &e, "at").unwrap_or(0);
                    crate::rules::warranty::staff_may_accept_return(doc, policy, at)?;
                }
            }
            if *log == history::RESOLUTIONS && !history::may_resolve(p.role) {
                return Err("only a supervisor or head office can resolve a conflict".into());
            }
            if *log == root::CONTACTS
                && read::string(doc, &e, "override").is_some()
                && !crate::rules::contact::may_override(p.role)
            {
                return Err("only a supervisor can override the contact rules".into());
            }
            if *log == crate::case::service::FREIGHT
                && read::int(doc, &e, "rule") == Some(0)
                && !history::may_resolve(p.role)
            {
                return Err(
                    "only a supervisor or head office can override the freight rules".into(),
                );
            }
            if *log == crate::case::service::ASSIGNMENTS
                && !crate::case::service::may_assign(p.role)
            {
                return Err("a technician cannot assign cases".into());
            }
            if *log == money::OFFERS {
                check_offer(doc, &e, p.role, policy)?;
            }
            if *log == money::DECISIONS {
                check_decision(doc, &e, p.role, policy)?;
            }
        }
    }
    Ok(())
}

fn check_transition(doc: &Automerge, kind: CaseKind, e: &ObjId, role: Role) -> Result<(), String> {
    let from = read::string(doc, e, "from").unwrap_or_default();
    let to = read::string(doc, e, "to").unwrap_or_default();
    let prev = read::string(doc, e, "prev").unwrap_or_default();
    if !table::is_allowed(kind, &from, &to) {
        return Err(format!("a {kind} cannot move from {from} to {to}"));
    }
    roles::may_move(role, kind, &from, &to)?;
    // The move must continue from where its predecessor left the case.
    let expected_from = if prev.is_empty() {
        kind.initial_status().to_string()
    } else {
        let prev_obj = read::map(
            doc,
            &read::map(doc, &ROOT, history::TRANSITIONS).ok_or("no moves")?,
            &prev,
        )
        .ok_or_else(|| format!("move follows an unknown move {prev}"))?;
        read::string(doc, &prev_obj, "to").unwrap_or_default()
    };
    if expected_from != from {
        return Err(format!(
            "move from {from} does not follow the case's state {expected_from}"
        ));
    }
    Ok(())
}

fn offer_terms(doc: &Automerge, e: &ObjId) -> Result<(Tier, i64), String> {
    let tier: Tier = read::string(doc, e, "tier")
        .ok_or("offer without a tier")?
        .parse()?;
    let amount = read::int(doc, e, "amount_fen")
        .filter(|a| *a > 0)
        .ok_or("offer without a positive amount")?;
    Ok((tier, amount))
}

fn check_offer(doc: &Automerge, e: &ObjId, role: Role, policy: &Policy) -> Result<(), String> {
    money::may_offer(role)?;
    let (tier, amount) = offer_terms(doc, e)?;
    let needs = read::boolean(doc, e, "needs_approval").unwrap_or(true);
    if !needs && !money::covers(policy, role, tier, amount) {
        return Err(format!(
            "{} of {tier} compensation is above what a {role} may grant without approval",
            money::yuan(amount)
        ));
    }
    Ok(())
}

fn check_decision(doc: &Automerge, e: &ObjId, role: Role, policy: &Policy) -> Result<(), String> {
    let decision = read::string(doc, e, "decision").unwrap_or_default();
    let offer_id = read::string(doc, e, "offer").unwrap_or_default();
    let offer = read::entries(doc, &ROOT, money::OFFERS)
        .into_iter()
        .find(|(id, _)| *id == offer_id)
        .map(|(_, o)| o)
        .ok_or_else(|| format!("decision on an unknown offer {offer_id}"))?;
    let (tier, amount) = offer_terms(doc, &offer)?;
    match decision.as_str() {
        "approve" | "reject" if money::covers(policy, role, tier, amount) => Ok(()),
        "approve" | "reject" => Err(format!(
            "{} of {tier} compensation is above what a {role} may approve",
            money::yuan(amount)
        )),
        "withdraw" if !history::may_resolve(role) && offer_accepted(doc, &offer_id) => Err(
            "only a supervisor or head office can withdraw an offer the customer accepted".into(),
        ),
        "decline" | "accept" | "withdraw" => Ok(()),
        other => Err(format!("unknown decision {other:?}")),
    }
}

fn offer_accepted(doc: &Automerge, offer_id: &str) -> bool {
    // Status before this upload's own decisions would be ideal; the current
    // status including them errs on the side of refusing.
    money::offers(doc)
        .iter()
        .any(|o| o.id == offer_id && matches!(o.status.as_str(), "accepted" | "withdrawn"))
}
