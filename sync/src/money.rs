//! Compensation as offers and approvals (domain.md §3, §7): never a
//! last-writer-wins amount, never a counter. An offer within the proposer's
//! authority takes effect at once; above it, it stays `proposed` until
//! someone whose limit covers it approves.

use crate::access::Role;
use crate::case::read;
use crate::policy::Policy;
use automerge::{ReadDoc, ROOT};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// Document key of the offers.
pub const OFFERS: &str = "offers";
/// Document key of the decisions on offers.
pub const DECISIONS: &str = "offer_decisions";

/// Kind of compensation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Coupons, points, member discount.
    Virtual,
    /// Refund, red packet, gift.
    Cash,
}

impl Tier {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Virtual => "virtual",
            Tier::Cash => "cash",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "virtual" => Ok(Tier::Virtual),
            "cash" => Ok(Tier::Cash),
            other => Err(format!(
                "{other:?} is not a compensation tier: use virtual or cash"
            )),
        }
    }
}

/// Parses a yuan amount such as `100`, `49.9` or `12.50` into fen.
pub fn parse_yuan(s: &str) -> Result<i64, String> {
    let s = s.trim().trim_start_matches('¥');
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let ok = !whole.is_empty()
        && whole.len() <= 7
        && whole.chars().all(|c| c.is_ascii_digit())
        && frac.len() <= 2
        && frac.chars().all(|c| c.is_ascii_digit());
    if !ok {
        return Err(format!("{s:?} is not an amount in yuan like 100 or 49.90"));
    }
    let whole: i64 = whole.parse().map_err(|_| format!("{s:?} is too large"))?;
    let frac: i64 = format!("{frac:0<2}").parse().unwrap_or(0);
    let fen = whole * 100 + frac;
    if fen == 0 {
        return Err("the amount must be more than zero".into());
    }
    Ok(fen)
}

/// Formats fen as `¥12.50`.
pub fn yuan(fen: i64) -> String {
    format!("¥{}.{:02}", fen / 100, fen % 100)
}

/// The most `role` may grant on its own for `tier`, in fen (`None`: no limit).
pub fn limit(policy: &Policy, role: Role, tier: Tier) -> Option<i64> {
    match (role, tier) {
        (Role::HeadOffice, _) => None,
        (Role::Supervisor, _) => Some(policy.supervisor_limit_fen),
        (Role::Staff, Tier::Virtual) => Some(policy.staff_virtual_limit_fen),
        (Role::Staff, Tier::Cash) => Some(policy.staff_cash_limit_fen),
        (Role::Technician, _) => Some(-1),
    }
}

/// Whether `role` may grant `amount_fen` of `tier` on its own authority.
pub fn covers(policy: &Policy, role: Role, tier: Tier, amount_fen: i64) -> bool {
    limit(policy, role, tier).is_none_or(|l| amount_fen <= l)
}

/// Largest amount of one offer, in fen (¥100,000,000): beyond any real
/// after-sales case, and far from integer overflow when amounts add up.
pub const MAX_AMOUNT_FEN: i64 = 10_000_000_000;

/// Compensation of `tier` the case already grants: offers approved (by
/// someone with the authority, or within the proposer's own) or accepted,
/// leaving out `except`. Limits hold for this total, so two small offers
/// cannot add up to what one large offer would need approval for.
pub fn granted(offers: &[Offer], tier: Tier, except: Option<&str>) -> i64 {
    offers
        .iter()
        .filter(|o| o.tier == tier && Some(o.id.as_str()) != except)
        .filter(|o| matches!(o.status.as_str(), "approved" | "accepted"))
        .map(|o| o.amount_fen)
        .sum()
}

/// Offers the customer accepted concurrently (on devices that did not know
/// of each other's acceptance): a money conflict a supervisor resolves, as
/// two amounts agreed at once must never add up silently. Offers accepted
/// one after the other, each knowing the earlier, are no conflict.
pub fn accepted_conflict(doc: &automerge::Automerge, offers: &[Offer]) -> Option<Vec<String>> {
    let accepted: Vec<&Offer> = offers.iter().filter(|o| o.status == "accepted").collect();
    if accepted.len() < 2 {
        return None;
    }
    let decisions = read::map(doc, &ROOT, DECISIONS)?;
    // The change that recorded each acceptance.
    let hashes: Vec<(String, String, Option<automerge::ChangeHash>)> = accepted
        .iter()
        .filter_map(|o| {
            let entry = o.accept_entry.as_ref()?;
            let obj = read::map(doc, &decisions, entry)?;
            Some((o.id.clone(), entry.clone(), doc.hash_for_opid(&obj)))
        })
        .collect();
    let mut out = Vec::new();
    for (i, (a, a_entry, a_hash)) in hashes.iter().enumerate() {
        for (b, b_entry, b_hash) in hashes.iter().skip(i + 1) {
            let (Some(ah), Some(bh)) = (a_hash, b_hash) else {
                continue;
            };
            let sees = |entry: &str, at: &automerge::ChangeHash| {
                matches!(doc.get_at(&decisions, entry, &[*at]), Ok(Some(_)))
            };
            if !sees(a_entry, bh) && !sees(b_entry, ah) {
                for id in [a, b] {
                    if !out.contains(id) {
                        out.push(id.clone());
                    }
                }
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Moves that pay the customer.
pub const PAYING: &[&str] = &["settled", "refunded", "partial_refund_keep"];

/// A paying move needs an offer the customer accepted: the amount paid is
/// one somebody with the authority granted (domain.md §3). A complaint is
/// not archived while compensation is still open: every offer must be
/// accepted, declined, rejected or withdrawn first.
pub fn paying_move_allowed<D: ReadDoc>(
    doc: &D,
    kind: crate::case::CaseKind,
    to: &str,
) -> Result<(), String> {
    if kind == crate::case::CaseKind::Complaint && to == "archived" {
        if let Some(o) = offers(doc)
            .into_iter()
            .find(|o| matches!(o.status.as_str(), "proposed" | "approved"))
        {
            return Err(format!(
                "offer {} of {} is still {}: the customer must accept or decline it (or it must be withdrawn) before the complaint is archived",
                o.id,
                yuan(o.amount_fen),
                o.status
            ));
        }
        return Ok(());
    }
    if !PAYING.contains(&to) {
        return Ok(());
    }
    if offers(doc).iter().any(|o| o.status == "accepted") {
        Ok(())
    } else {
        Err(format!(
            "moving to {to} pays the customer: it needs an offer approved within authority and accepted by the customer"
        ))
    }
}

/// Who may make an offer at all: technicians do not decide compensation.
pub fn may_offer(role: Role) -> Result<(), String> {
    match role {
        Role::Technician => Err("a technician may not offer compensation: ask the store".into()),
        _ => Ok(()),
    }
}

/// An offer as derived from its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offer {
    /// Offer id.
    pub id: String,
    /// virtual or cash.
    pub tier: Tier,
    /// Amount in fen.
    pub amount_fen: i64,
    /// proposed, approved, rejected, accepted, declined or withdrawn.
    pub status: String,
    /// Who proposed it.
    pub proposed_by: String,
    /// Their role.
    pub proposer_role: String,
    /// Who approved or rejected it, if anyone.
    pub decided_by: Option<String>,
    /// Note.
    pub note: Option<String>,
    /// Policy version the proposal was judged under.
    pub policy_version: i64,
    #[serde(skip)]
    pub(crate) at: i64,
    /// The decision entry that recorded the customer's acceptance.
    #[serde(skip)]
    pub accept_entry: Option<String>,
}

/// Reads every offer of a case with its current status.
///
/// The status depends only on what the document records (whether the
/// proposal needed approval under the policy of its day, and the decisions
/// made since), never on the reader's current policy, so every replica shows
/// the same status. Authority is checked when a decision is made: by the
/// SDK at once and by the relay before it accepts the change.
pub fn offers<D: ReadDoc>(doc: &D) -> Vec<Offer> {
    let mut out: Vec<Offer> = read::entries(doc, &ROOT, OFFERS)
        .into_iter()
        .filter_map(|(id, e)| {
            let tier: Tier = read::string(doc, &e, "tier")?.parse().ok()?;
            let amount_fen = read::int(doc, &e, "amount_fen").filter(|a| *a > 0)?;
            let proposer_role = read::string(doc, &e, "role").unwrap_or_default();
            let status = if read::boolean(doc, &e, "needs_approval").unwrap_or(true) {
                "proposed"
            } else {
                "approved"
            };
            Some(Offer {
                tier,
                amount_fen,
                status: status.into(),
                proposed_by: read::string(doc, &e, "author").unwrap_or_default(),
                proposer_role,
                decided_by: None,
                note: read::string(doc, &e, "note"),
                policy_version: read::int(doc, &e, "policy_version").unwrap_or(0),
                at: read::int(doc, &e, "at").unwrap_or(0),
                accept_entry: None,
                id,
            })
        })
        .collect();
    let mut decisions: Vec<(i64, String, String, String, String)> =
        read::entries(doc, &ROOT, DECISIONS)
            .into_iter()
            .filter_map(|(id, e)| {
                Some((
                    read::int(doc, &e, "at").unwrap_or(0),
                    id,
                    read::string(doc, &e, "offer")?,
                    read::string(doc, &e, "decision")?,
                    read::string(doc, &e, "author").unwrap_or_default(),
                ))
            })
            .collect();
    decisions.sort();
    for (_, entry, offer, decision, author) in decisions {
        let Some(o) = out.iter_mut().find(|o| o.id == offer) else {
            continue;
        };
        let next = match (o.status.as_str(), decision.as_str()) {
            ("proposed", "approve") => "approved",
            ("proposed", "reject") => "rejected",
            ("proposed" | "approved", "decline") => "declined",
            ("approved", "accept") => "accepted",
            ("proposed" | "approved" | "accepted", "withdraw") => "withdrawn",
            _ => continue,
        };
        if matches!(next, "approved" | "rejected") {
            o.decided_by = Some(author);
        }
        if next == "accepted" {
            o.accept_entry = Some(entry);
        }
        o.status = next.into();
    }
    out.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    out
}
