//! Service records: the follow-up survey, the escalation ladder and the
//! freight decision. Each is an append-only entry; the latest one counts.

use super::edit::{invalid, put_entry, require_case, EditContext, EditError};
use super::read;
use super::schema::{entry, root};
use crate::ids::CaseId;
use crate::policy::Policy;
use crate::rules::freight::{self, FreightFacts, Payer};
use automerge::transaction::Transactable;
use automerge::{Automerge, AutomergeError, ReadDoc, ROOT};
use serde::{Deserialize, Serialize};

/// Document key of survey answers.
pub const SURVEYS: &str = "surveys";
/// Document key of escalation steps.
pub const ESCALATIONS: &str = "escalations";
/// Document key of freight decisions.
pub const FREIGHT: &str = "freight_decisions";

/// The escalation ladder, lowest first (domain.md §5).
pub const LADDER: &[&str] = &[
    "store",
    "supervisor",
    "head_office",
    "written_complaint",
    "mediation",
    "administrative_complaint",
    "arbitration",
    "litigation",
];

/// Whether an escalation level takes the case outside the company
/// (mediation, 12315, arbitration, litigation): head office's decision
/// (domain.md §3).
pub fn is_external(level: &str) -> bool {
    LADDER
        .iter()
        .position(|l| *l == level)
        .is_some_and(|i| i >= 4)
}

/// Answers of the 1-5 survey on four dimensions (H3 §4.5.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Survey {
    /// The product matched its description.
    pub description: u8,
    /// Service attitude.
    pub attitude: u8,
    /// Speed.
    pub speed: u8,
    /// Logistics.
    pub logistics: u8,
    /// Free comment.
    pub comment: Option<String>,
}

/// Records the customer's survey answers (each 1 very dissatisfied … 5 very satisfied).
pub fn survey(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    s: &Survey,
) -> Result<(), EditError> {
    require_case(doc, id)?;
    for (field, v) in [
        ("description", s.description),
        ("attitude", s.attitude),
        ("speed", s.speed),
        ("logistics", s.logistics),
    ] {
        if !(1..=5).contains(&v) {
            return Err(invalid(
                field,
                format!("{v} is not a score: use 1 (very dissatisfied) to 5 (very satisfied)"),
            ));
        }
    }
    doc.transact::<_, _, AutomergeError>(|tx| {
        let e = put_entry(tx, SURVEYS, ctx, "survey")?;
        for (k, v) in [
            ("description", s.description),
            ("attitude", s.attitude),
            ("speed", s.speed),
            ("logistics", s.logistics),
        ] {
            tx.put(&e, k, i64::from(v))?;
        }
        if let Some(c) = &s.comment {
            tx.put(&e, "comment", c.as_str())?;
        }
        let t = put_entry(tx, root::TIMELINE, ctx, "survey")?;
        tx.put(
            &t,
            entry::TEXT,
            format!(
                "survey: description {}, attitude {}, speed {}, logistics {}",
                s.description, s.attitude, s.speed, s.logistics
            ),
        )?;
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}

/// The latest escalation level of a case, if any.
pub fn escalation_level<D: ReadDoc>(doc: &D) -> Option<String> {
    latest(doc, ESCALATIONS).and_then(|e| read::string(doc, &e, "level"))
}

fn latest<D: ReadDoc>(doc: &D, key: &str) -> Option<automerge::ObjId> {
    let mut all: Vec<(i64, String, automerge::ObjId)> = read::entries(doc, &ROOT, key)
        .into_iter()
        .map(|(id, e)| (read::int(doc, &e, "at").unwrap_or(0), id, e))
        .collect();
    all.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    all.pop().map(|(_, _, e)| e)
}

/// Moves a case up the escalation ladder, recording the external reference.
pub fn escalate(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    level: &str,
    reference: Option<&str>,
) -> Result<(), EditError> {
    require_case(doc, id)?;
    let Some(to) = LADDER.iter().position(|l| *l == level) else {
        return Err(invalid(
            "level",
            format!(
                "{level:?} is not a step of the ladder: {}",
                LADDER.join(", ")
            ),
        ));
    };
    if is_external(level) && ctx.role != crate::access::Role::HeadOffice {
        return Err(EditError::NotAllowed(format!(
            "{level} takes the case outside the company: only head office escalates there"
        )));
    }
    let current = escalation_level(&*doc).and_then(|l| LADDER.iter().position(|x| *x == l));
    if current.is_some_and(|c| to <= c) {
        return Err(invalid(
            "level",
            format!(
                "the case is already at {}: escalate to a higher step",
                LADDER[current.unwrap_or(0)]
            ),
        ));
    }
    doc.transact::<_, _, AutomergeError>(|tx| {
        let e = put_entry(tx, ESCALATIONS, ctx, "escalation")?;
        tx.put(&e, "level", level)?;
        if let Some(r) = reference {
            tx.put(&e, "reference", r)?;
        }
        let t = put_entry(tx, root::TIMELINE, ctx, "escalation")?;
        tx.put(
            &t,
            entry::TEXT,
            match reference {
                Some(r) => format!("escalated to {level} ({r})"),
                None => format!("escalated to {level}"),
            },
        )?;
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}

/// The freight decision shown on a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FreightView {
    /// Payer of the outbound leg.
    pub outbound: String,
    /// Payer of the return leg.
    #[serde(rename = "return")]
    pub return_leg: String,
    /// Rule number 1-8 (0 for a manual override).
    pub rule: i64,
    /// The rule in words, or the override reason.
    pub rule_text: String,
    /// Who decided.
    pub decided_by: String,
    /// Policy version in force.
    pub policy_version: i64,
}

fn payer_str(p: Payer) -> &'static str {
    match p {
        Payer::Seller => "seller",
        Payer::Customer => "customer",
        Payer::Store => "store",
        Payer::PendingHeadOffice => "pending_head_office",
    }
}

/// Decides who pays freight from `facts` and records the decision with its rule.
pub fn decide_freight(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    policy: &Policy,
    facts: &FreightFacts,
) -> Result<FreightView, EditError> {
    require_case(doc, id)?;
    let d = freight::decide(facts).map_err(|e| invalid("freight", e))?;
    let view = FreightView {
        outbound: payer_str(d.outbound).into(),
        return_leg: payer_str(d.return_leg).into(),
        rule: i64::from(d.rule),
        rule_text: d.rule_text.clone(),
        decided_by: ctx.author.to_string(),
        policy_version: i64::from(policy.version),
    };
    let text = format!(
        "freight: outbound {}, return {} (rule {}: {})",
        view.outbound, view.return_leg, view.rule, view.rule_text
    );
    record_freight(doc, ctx, &view, &text)?;
    Ok(view)
}

/// Records a supervisor's manual freight decision that departs from the
/// rules, with the reason (rule 0).
pub fn override_freight(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    policy: &Policy,
    outbound: Payer,
    return_leg: Payer,
    reason: &str,
) -> Result<FreightView, EditError> {
    require_case(doc, id)?;
    if !crate::workflow::history::may_resolve(ctx.role) {
        return Err(EditError::NotAllowed(
            "only a supervisor or head office can override the freight rules".into(),
        ));
    }
    if reason.trim().is_empty() {
        return Err(invalid(
            "reason",
            "say why the freight rules are overridden",
        ));
    }
    let view = FreightView {
        outbound: payer_str(outbound).into(),
        return_leg: payer_str(return_leg).into(),
        rule: 0,
        rule_text: format!("override: {reason}"),
        decided_by: ctx.author.to_string(),
        policy_version: i64::from(policy.version),
    };
    let text = format!(
        "freight overridden: outbound {}, return {} ({reason})",
        view.outbound, view.return_leg
    );
    record_freight(doc, ctx, &view, &text)?;
    Ok(view)
}

/// Writes a freight decision and its timeline line in one transaction.
fn record_freight(
    doc: &mut Automerge,
    ctx: &EditContext,
    view: &FreightView,
    text: &str,
) -> Result<(), EditError> {
    doc.transact::<_, _, AutomergeError>(|tx| {
        let e = put_entry(tx, FREIGHT, ctx, "freight")?;
        tx.put(&e, "outbound", view.outbound.as_str())?;
        tx.put(&e, "return", view.return_leg.as_str())?;
        tx.put(&e, "rule", view.rule)?;
        tx.put(&e, "rule_text", view.rule_text.as_str())?;
        tx.put(&e, "policy_version", view.policy_version)?;
        let t = put_entry(tx, root::TIMELINE, ctx, "freight")?;
        tx.put(&t, entry::TEXT, text)?;
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}

/// Parses a payer name.
pub fn parse_payer(s: &str) -> Result<Payer, EditError> {
    match s {
        "seller" => Ok(Payer::Seller),
        "customer" => Ok(Payer::Customer),
        "store" => Ok(Payer::Store),
        other => Err(invalid(
            "payer",
            format!("{other:?}: use seller, customer or store"),
        )),
    }
}

/// The latest freight decision of a case.
pub fn freight_view<D: ReadDoc>(doc: &D) -> Option<FreightView> {
    let e = latest(doc, FREIGHT)?;
    Some(FreightView {
        outbound: read::string(doc, &e, "outbound")?,
        return_leg: read::string(doc, &e, "return")?,
        rule: read::int(doc, &e, "rule").unwrap_or(0),
        rule_text: read::string(doc, &e, "rule_text").unwrap_or_default(),
        decided_by: read::string(doc, &e, "author").unwrap_or_default(),
        policy_version: read::int(doc, &e, "policy_version").unwrap_or(0),
    })
}

/// The latest survey of a case.
pub fn survey_view<D: ReadDoc>(doc: &D) -> Option<Survey> {
    let e = latest(doc, SURVEYS)?;
    let score = |k: &str| read::int(doc, &e, k).and_then(|v| u8::try_from(v).ok());
    Some(Survey {
        description: score("description")?,
        attitude: score("attitude")?,
        speed: score("speed")?,
        logistics: score("logistics")?,
        comment: read::string(doc, &e, "comment"),
    })
}

/// Records a link from this case to `other` (`follow_up` or `origin`).
pub fn link(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    other: CaseId,
    relation: &str,
) -> Result<(), EditError> {
    require_case(doc, id)?;
    doc.transact::<_, _, AutomergeError>(|tx| {
        let m = match read::map(tx, &ROOT, RELATED) {
            Some(m) => m,
            None => tx.put_object(ROOT, RELATED, automerge::ObjType::Map)?,
        };
        tx.put(&m, other.to_string(), relation)?;
        let t = put_entry(tx, root::TIMELINE, ctx, "linked_case")?;
        tx.put(&t, entry::TEXT, format!("{relation} case {other}"))?;
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}

/// Document key of assignments.
pub const ASSIGNMENTS: &str = "assignments";

/// Root key of the links to other cases.
pub const RELATED: &str = "related_cases";

/// Who may assign work.
pub fn may_assign(role: crate::access::Role) -> bool {
    !matches!(role, crate::access::Role::Technician)
}

/// Assigns the case to a technician or installer. The latest assignment
/// counts; every reassignment shows in the log for both people.
pub fn assign(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    technician: &crate::ids::UserId,
) -> Result<(), EditError> {
    require_case(doc, id)?;
    if !may_assign(ctx.role) {
        return Err(EditError::NotAllowed(
            "a technician cannot assign cases: ask the store".into(),
        ));
    }
    let before = assignee(&*doc);
    doc.transact::<_, _, AutomergeError>(|tx| {
        let e = put_entry(tx, ASSIGNMENTS, ctx, "assignment")?;
        tx.put(&e, "assignee", technician.as_str())?;
        let t = put_entry(tx, root::TIMELINE, ctx, "assignment")?;
        tx.put(
            &t,
            entry::TEXT,
            match &before {
                Some(b) => format!("reassigned from {b} to {technician}"),
                None => format!("assigned to {technician}"),
            },
        )?;
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}

/// The technician the case is assigned to.
pub fn assignee<D: ReadDoc>(doc: &D) -> Option<String> {
    latest(doc, ASSIGNMENTS).and_then(|e| read::string(doc, &e, "assignee"))
}
