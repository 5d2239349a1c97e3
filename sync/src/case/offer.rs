//! Compensation edits: offer, approve, reject, and the customer's answer.

use super::edit::{invalid, put_entry, require_case, EditContext, EditError};
use super::schema::{entry, root};
use crate::ids::CaseId;
use crate::money::{self, Tier};
use crate::policy::Policy;
use automerge::transaction::Transactable;
use automerge::{Automerge, AutomergeError};

/// Records an offer; returns its id. Within the proposer's limit it is
/// approved at once, above it it waits for an approval.
pub fn offer(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    policy: &Policy,
    tier: Tier,
    amount_fen: i64,
    note: Option<&str>,
) -> Result<String, EditError> {
    require_case(doc, id)?;
    money::may_offer(ctx.role).map_err(EditError::NotAllowed)?;
    if amount_fen <= 0 {
        return Err(invalid("amount", "must be more than zero"));
    }
    if amount_fen > money::MAX_AMOUNT_FEN {
        return Err(invalid("amount", "must be at most ¥100,000,000"));
    }
    let offer_id = ctx_entry_id(ctx);
    // Authority holds for what the case grants in all, not offer by offer.
    let granted = money::granted(&money::offers(&*doc), tier, None);
    doc.transact::<_, _, AutomergeError>(|tx| {
        let e = put_entry(tx, money::OFFERS, ctx, "offer")?;
        tx.put(&e, "tier", tier.as_str())?;
        tx.put(&e, "amount_fen", amount_fen)?;
        tx.put(&e, "policy_version", i64::from(policy.version))?;
        tx.put(
            &e,
            "needs_approval",
            !money::covers(policy, ctx.role, tier, granted + amount_fen),
        )?;
        if let Some(n) = note {
            tx.put(&e, "note", n)?;
        }
        let t = put_entry(tx, root::TIMELINE, ctx, "offer")?;
        tx.put(
            &t,
            entry::TEXT,
            format!("{} {tier} compensation offered", money::yuan(amount_fen)),
        )?;
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(offer_id)
}

fn ctx_entry_id(ctx: &EditContext) -> String {
    uuid::Builder::from_random_bytes(ctx.nonce)
        .into_uuid()
        .simple()
        .to_string()
}

/// What can be decided about an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Approve a proposed offer (needs a role whose limit covers it).
    Approve,
    /// Reject a proposed offer (same authority as approving).
    Reject,
    /// The customer turned the offer down.
    Decline,
    /// The customer took the offer.
    Accept,
    /// Take the offer back; once accepted, only a supervisor or head office
    /// may (to settle two offers accepted at once).
    Withdraw,
}

impl Decision {
    /// The recorded name.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
            Decision::Decline => "decline",
            Decision::Accept => "accept",
            Decision::Withdraw => "withdraw",
        }
    }

    fn past(self) -> &'static str {
        match self {
            Decision::Approve => "approved",
            Decision::Reject => "rejected",
            Decision::Decline => "declined",
            Decision::Accept => "accepted",
            Decision::Withdraw => "withdrawn",
        }
    }
}

/// Records a decision on an offer after checking its status and the
/// person's authority.
pub fn decide(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    policy: &Policy,
    offer_id: &str,
    decision: Decision,
) -> Result<(), EditError> {
    require_case(doc, id)?;
    let offers = money::offers(&*doc);
    let Some(o) = offers.iter().find(|o| o.id == offer_id) else {
        return Err(invalid(
            "offer",
            format!("case {id} has no offer {offer_id}"),
        ));
    };
    let ok_status = match decision {
        Decision::Approve | Decision::Reject => o.status == "proposed",
        Decision::Decline => matches!(o.status.as_str(), "proposed" | "approved"),
        Decision::Accept => o.status == "approved",
        Decision::Withdraw => matches!(o.status.as_str(), "proposed" | "approved" | "accepted"),
    };
    if !ok_status {
        return Err(invalid(
            "offer",
            format!(
                "offer {offer_id} is {}, it cannot be {} now",
                o.status,
                decision.past()
            ),
        ));
    }
    if decision == Decision::Withdraw
        && o.status == "accepted"
        && !crate::workflow::history::may_resolve(ctx.role)
    {
        return Err(EditError::NotAllowed(
            "only a supervisor or head office can withdraw an offer the customer accepted".into(),
        ));
    }
    let granted = money::granted(&offers, o.tier, Some(offer_id));
    if matches!(decision, Decision::Approve | Decision::Reject)
        && !money::covers(policy, ctx.role, o.tier, granted + o.amount_fen)
    {
        return Err(EditError::NotAllowed(format!(
            "{} of {} compensation is above what a {} may approve: ask {}",
            money::yuan(o.amount_fen),
            o.tier,
            ctx.role,
            if o.amount_fen <= policy.supervisor_limit_fen {
                "a supervisor"
            } else {
                "head office"
            }
        )));
    }
    doc.transact::<_, _, AutomergeError>(|tx| {
        let e = put_entry(tx, money::DECISIONS, ctx, "offer_decision")?;
        tx.put(&e, "offer", offer_id)?;
        tx.put(&e, "decision", decision.as_str())?;
        tx.put(&e, "policy_version", i64::from(policy.version))?;
        let t = put_entry(tx, root::TIMELINE, ctx, "offer_decision")?;
        tx.put(
            &t,
            entry::TEXT,
            format!("offer of {} {}", money::yuan(o.amount_fen), decision.past()),
        )?;
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}
