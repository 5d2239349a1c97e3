//! The handbook's rules on what an upload's new entries say: moves follow
//! the workflow and the role, money stays within authority for the whole
//! case, windows and contact hours hold at a time the relay can trust.
//! [`super::judge`] has already checked the shape and the authorship of
//! every entry; this module judges their meaning.

use super::judge::Upload;
use crate::access::Role;
use crate::case::read;
use crate::case::table::Log;
use crate::case::CaseKind;
use crate::money::{self, Tier};
use crate::policy::Policy;
use crate::protocol::{clip, Refusal, RefusalCode};
use crate::workflow::{history, roles, table};
use automerge::{Automerge, ObjId, ReadDoc, ROOT};

fn refuse(code: RefusalCode, message: impl Into<String>) -> Refusal {
    Refusal::new(code, message)
}

/// The time to judge an entry by: the device's claim when it is plausible
/// (not ahead of the relay by more than the allowed skew, not older than
/// the longest a device may stay offline), else the relay's receipt time.
/// A backdated or future-dated entry cannot open a window that is closed.
pub fn trusted_at(claimed: i64, now: i64, p: &Policy) -> i64 {
    let ahead = p.max_clock_skew_minutes.saturating_mul(60_000);
    let behind = p.max_offline_hours.saturating_mul(3_600_000);
    if claimed > now.saturating_add(ahead) || claimed < now.saturating_sub(behind) {
        now
    } else {
        claimed
    }
}

/// Judges the meaning of the upload's new entries (`log`, entry id).
pub(super) fn check_semantics(
    u: &Upload<'_>,
    entries: &[(&'static Log, String)],
    placed: &[super::judge::Placed],
) -> Result<(), Refusal> {
    let doc = u.doc;
    let role = u.principal.role;
    let kind: CaseKind = read::string(doc, &ROOT, crate::case::schema::root::KIND)
        .and_then(|k| k.parse().ok())
        .ok_or_else(|| refuse(RefusalCode::InvalidValue, "the case has no valid kind"))?;
    for ((log, key), p) in entries.iter().zip(placed) {
        let e = &p.obj;
        let at = trusted_at(p.at.unwrap_or(0), u.now.0, u.policy);
        match log.key {
            history::TRANSITIONS => check_transition(u, kind, e, at)?,
            crate::case::schema::root::CONTACTS => check_contact(u, e)?,
            crate::case::service::FREIGHT => check_freight(doc, e, role)?,
            crate::case::service::ESCALATIONS => check_escalation(doc, e, role)?,
            crate::case::service::SURVEYS => check_survey(doc, e)?,
            money::OFFERS => check_offer(doc, e, key, role, u.policy)?,
            money::DECISIONS => check_decision(u, e)?,
            crate::case::evidence::EVIDENCE => check_evidence(doc, e, u.policy)?,
            crate::case::evidence::REMOVALS => check_removal(doc, e)?,
            crate::case::booking::BOOKINGS => check_booking(u, kind, e)?,
            _ => {}
        }
    }
    check_moves_have_bookings(kind, entries, placed)
}

/// A move that needs a booking (a repair `dispatched`, an installation
/// `scheduled`) comes with a `book` or `reschedule` entry in the same
/// upload: the appointment is made with the move, never promised in a
/// reason.
fn check_moves_have_bookings(
    kind: CaseKind,
    entries: &[(&'static Log, String)],
    placed: &[super::judge::Placed],
) -> Result<(), Refusal> {
    use crate::case::booking;
    let mut needs = None;
    let mut booked = false;
    for ((log, _), p) in entries.iter().zip(placed) {
        if log.key == history::TRANSITIONS {
            let to = p.to.clone().unwrap_or_default();
            if booking::needs_booking(kind, &to) {
                needs = Some(to);
            }
        } else if log.key == booking::BOOKINGS {
            booked |= matches!(p.ty.as_str(), "book" | "reschedule");
        }
    }
    match needs {
        Some(to) if !booked => Err(refuse(
            RefusalCode::Workflow,
            format!("a {kind} moves to {to} only with a booking made in the same edit"),
        )),
        _ => Ok(()),
    }
}

/// A booking entry: the fields its type needs; only the store books,
/// reschedules and cancels, each naming a booking of the case; the
/// technician is bookable for the case's store and the slot is inside his
/// working hours unless a supervisor or head office overrides with a
/// reason; a technician records only visits booked for him.
fn check_booking(u: &Upload<'_>, kind: CaseKind, e: &ObjId) -> Result<(), Refusal> {
    use crate::case::booking::{self, Slot, SlotError};
    let doc = u.doc;
    let role = u.principal.role;
    if !matches!(kind, CaseKind::Repair | CaseKind::Installation) {
        return Err(refuse(
            RefusalCode::InvalidValue,
            format!("only repairs and installations are booked, not a {kind}"),
        ));
    }
    let ty = read::string(doc, e, "type").unwrap_or_default();
    let has = |k: &str| matches!(doc.get(e, k), Ok(Some(_)));
    let needed: &[&str] = match ty.as_str() {
        "book" => &["tech", "start", "minutes", "window_end"],
        "reschedule" => &[
            "booking",
            "tech",
            "start",
            "minutes",
            "window_end",
            "reason",
        ],
        "cancel" => &["booking", "reason"],
        _ => &["booking"],
    };
    let forbidden: &[&str] = match ty.as_str() {
        "book" => &["booking", "reason"],
        "reschedule" => &[],
        _ => &[
            "tech",
            "start",
            "minutes",
            "window_end",
            "address",
            "override",
        ],
    };
    if let Some(k) = needed.iter().find(|k| !has(k)) {
        return Err(refuse(
            RefusalCode::InvalidValue,
            format!("a {ty} entry of bookings needs {k}"),
        ));
    }
    if let Some(k) = forbidden.iter().find(|k| has(k)) {
        return Err(refuse(
            RefusalCode::InvalidValue,
            format!("a {ty} entry of bookings has no {k}"),
        ));
    }
    if let Some(r) = read::string(doc, e, "reason") {
        if r.trim().is_empty() {
            return Err(refuse(
                RefusalCode::InvalidValue,
                format!("a {ty} needs a reason"),
            ));
        }
    }
    if ty != "book" {
        let target = read::string(doc, e, "booking").unwrap_or_default();
        let named = read::map(doc, &ROOT, booking::BOOKINGS)
            .and_then(|m| read::map(doc, &m, &target))
            .and_then(|b| read::string(doc, &b, "type"));
        if named.as_deref() != Some("book") {
            return Err(refuse(
                RefusalCode::InvalidValue,
                format!("{} is not a booking of this case", clip(&target, 40)),
            ));
        }
        if booking::TECHNICIAN_TYPES.contains(&ty.as_str()) {
            // The technician the booking names now, as every replica
            // derives it from the log.
            let tech = booking::bookings(doc)
                .into_iter()
                .find(|b| b.id == target)
                .map(|b| b.tech)
                .unwrap_or_default();
            return booking::may_record_visit(role, u.principal.user.as_str(), &tech)
                .map_err(|m| refuse(RefusalCode::Forbidden, m));
        }
    }
    if role == Role::Technician {
        return Err(refuse(
            RefusalCode::Forbidden,
            "technicians do not book, reschedule or cancel: the store does",
        ));
    }
    if ty == "cancel" {
        return Ok(());
    }
    let slot = Slot {
        tech: read::string(doc, e, "tech").unwrap_or_default(),
        start: crate::ids::Millis(read::int(doc, e, "start").unwrap_or(0)),
        minutes: read::int(doc, e, "minutes").unwrap_or(0),
        window_end: crate::ids::Millis(read::int(doc, e, "window_end").unwrap_or(0)),
        address: read::string(doc, e, "address"),
        hours_override: read::string(doc, e, "override"),
    };
    // The case's store: fixed at creation and judged then to be the
    // creating connection's, so it is the owner the relay recorded.
    let store = read::string(doc, &ROOT, crate::case::schema::root::STORE_ID).unwrap_or_default();
    booking::check_slot(u.policy, role, &store, &slot).map_err(|e| match e {
        SlotError::Invalid(m) => refuse(RefusalCode::InvalidValue, m),
        SlotError::Forbidden(m) => refuse(RefusalCode::Forbidden, m),
        SlotError::Hours(m) => refuse(RefusalCode::Window, m),
    })
}

/// A piece of evidence names a known kind, a SHA-256, a size within the
/// policy's blob limit and a media type.
fn check_evidence(doc: &Automerge, e: &ObjId, p: &Policy) -> Result<(), Refusal> {
    use crate::case::evidence;
    let ev = evidence::Evidence {
        kind: read::string(doc, e, "kind").unwrap_or_default(),
        hash: read::string(doc, e, "hash").unwrap_or_default(),
        size: read::int(doc, e, "size")
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0),
        media_type: read::string(doc, e, "media_type").unwrap_or_default(),
        captured_at: 0,
        caption: None,
    };
    evidence::check(&ev, p.max_blob_bytes).map_err(|m| refuse(RefusalCode::InvalidValue, m))
}

/// A removal names evidence the case holds.
fn check_removal(doc: &Automerge, e: &ObjId) -> Result<(), Refusal> {
    let hash = read::string(doc, e, "hash").unwrap_or_default();
    if !crate::case::evidence::list(doc)
        .iter()
        .any(|v| v.hash == hash)
    {
        return Err(refuse(
            RefusalCode::InvalidValue,
            "a removal must name evidence this case holds",
        ));
    }
    if read::string(doc, e, "reason").is_none_or(|r| r.trim().is_empty()) {
        return Err(refuse(
            RefusalCode::InvalidValue,
            "a removal needs a reason",
        ));
    }
    Ok(())
}

fn check_transition(u: &Upload<'_>, kind: CaseKind, e: &ObjId, at: i64) -> Result<(), Refusal> {
    let doc = u.doc;
    let role = u.principal.role;
    let from = read::string(doc, e, "from").unwrap_or_default();
    let to = read::string(doc, e, "to").unwrap_or_default();
    let prev = read::string(doc, e, "prev").unwrap_or_default();
    if !table::is_allowed(kind, &from, &to) {
        return Err(refuse(
            RefusalCode::Workflow,
            format!(
                "a {kind} cannot move from {} to {}",
                clip(&from, 32),
                clip(&to, 32)
            ),
        ));
    }
    roles::may_move(role, kind, &from, &to).map_err(|m| refuse(RefusalCode::Forbidden, m))?;
    if table::needs_reason(kind, &to)
        && read::string(doc, e, "reason").is_none_or(|r| r.trim().is_empty())
    {
        return Err(refuse(
            RefusalCode::InvalidValue,
            format!("a {kind} moved to {} must say why", clip(&to, 32)),
        ));
    }
    // The move must continue from where its predecessor left the case.
    let expected_from = if prev.is_empty() || prev == history::START {
        kind.initial_status().to_string()
    } else {
        let prev_obj = read::map(doc, &ROOT, history::TRANSITIONS)
            .and_then(|m| read::map(doc, &m, &prev))
            .ok_or_else(|| {
                refuse(
                    RefusalCode::Workflow,
                    format!("move follows an unknown move {}", clip(&prev, 40)),
                )
            })?;
        read::string(doc, &prev_obj, "to").unwrap_or_default()
    };
    if expected_from != from {
        return Err(refuse(
            RefusalCode::Workflow,
            format!("move from {from} does not follow the case's state {expected_from}"),
        ));
    }
    if crate::case::transition::rule_applies(role, kind, &to) {
        crate::rules::warranty::staff_may_accept_return(doc, u.policy, at)
            .map_err(|m| refuse(RefusalCode::Window, m))?;
    }
    money::paying_move_allowed(doc, kind, &to).map_err(|m| refuse(RefusalCode::Authority, m))?;
    crate::case::evidence::move_allowed(doc, kind, &to, u.policy)
        .map_err(|m| refuse(RefusalCode::Workflow, m))?;
    check_knew_no_conflict(u, kind, e, &to)
}

/// A move made by a device that knew of an open conflict is refused, as the
/// device itself refuses it: the conflict is a supervisor's to resolve. A
/// move made offline without knowing is how conflicts arise, and stands.
fn check_knew_no_conflict(
    u: &Upload<'_>,
    kind: CaseKind,
    e: &ObjId,
    to: &str,
) -> Result<(), Refusal> {
    let doc = u.doc;
    let Some(moves) = read::map(doc, &ROOT, history::TRANSITIONS) else {
        return Ok(());
    };
    let Some(me) = doc.hash_for_opid(e) else {
        return Ok(());
    };
    let knows = |entry: &str| matches!(doc.get_at(&moves, entry, &[me]), Ok(Some(_)));
    let wf = history::derive(doc, kind);
    if let Some(c) = wf.open_conflict() {
        let point = if c.id == history::START {
            ""
        } else {
            c.id.as_str()
        };
        let branches: Vec<String> = read::entries(doc, &ROOT, history::TRANSITIONS)
            .into_iter()
            .filter(|(_, m)| {
                read::string(doc, m, "prev").as_deref().unwrap_or_default() == point
                    && read::string(doc, m, "from").as_deref() == Some(c.from.as_str())
            })
            .map(|(id, _)| id)
            .collect();
        let prev = read::string(doc, e, "prev").unwrap_or_default();
        let continues = prev == point || branches.contains(&prev);
        // The branches other than this move itself.
        let others: Vec<&String> = branches
            .iter()
            .filter(|b| read::map(doc, &moves, b).as_ref() != Some(e))
            .collect();
        if continues && others.len() > 1 && others.iter().all(|b| knows(b)) {
            return Err(refuse(
                RefusalCode::Workflow,
                format!(
                    "this case has an open conflict ({} → {}): a supervisor or head office must resolve it first",
                    c.from,
                    c.options.join(" or ")
                ),
            ));
        }
    }
    if crate::case::transition::is_irreversible(to) {
        if let Some(ids) = money::accepted_conflict(doc, &money::offers(doc)) {
            let decisions = read::map(doc, &ROOT, money::DECISIONS);
            let knew_all = decisions.is_some_and(|d| {
                money::offers(doc)
                    .iter()
                    .filter(|o| ids.contains(&o.id))
                    .filter_map(|o| o.accept_entry.clone())
                    .all(|entry| matches!(doc.get_at(&d, &entry, &[me]), Ok(Some(_))))
            });
            if knew_all {
                return Err(refuse(
                    RefusalCode::Authority,
                    "two offers were accepted at once on this case: a supervisor must settle that before it is closed for good",
                ));
            }
        }
    }
    Ok(())
}

/// A contact that happened is recorded whatever the hours or the count:
/// the rules it broke are shown as flags derived from the merged log
/// (`case/view.rs::flag_calls`), never refused here. The relay holds what a
/// device could lie about: the channel and direction are known values, and
/// only a supervisor may write an override reason.
fn check_contact(u: &Upload<'_>, e: &ObjId) -> Result<(), Refusal> {
    let doc = u.doc;
    let channel = read::string(doc, e, "channel").unwrap_or_default();
    if !matches!(channel.as_str(), "phone" | "sms" | "visit") {
        return Err(refuse(
            RefusalCode::InvalidValue,
            format!("{} is not a contact channel", clip(&channel, 20)),
        ));
    }
    if let Some(d) = read::string(doc, e, "direction") {
        if !matches!(d.as_str(), "outbound" | "inbound") {
            return Err(refuse(
                RefusalCode::InvalidValue,
                format!(
                    "{} is not a direction: use outbound or inbound",
                    clip(&d, 20)
                ),
            ));
        }
    }
    let overridden = read::string(doc, e, "override").is_some();
    if overridden && !crate::rules::contact::may_override(u.principal.role) {
        return Err(refuse(
            RefusalCode::Forbidden,
            "only a supervisor can override the contact rules",
        ));
    }
    Ok(())
}

fn check_freight(doc: &Automerge, e: &ObjId, role: Role) -> Result<(), Refusal> {
    const PAYERS: &[&str] = &["seller", "customer", "store", "pending_head_office"];
    for k in ["outbound", "return"] {
        let v = read::string(doc, e, k).unwrap_or_default();
        if !PAYERS.contains(&v.as_str()) {
            return Err(refuse(
                RefusalCode::InvalidValue,
                format!(
                    "{} is not a freight payer: use {}",
                    clip(&v, 32),
                    PAYERS.join(", ")
                ),
            ));
        }
    }
    let rule = read::int(doc, e, "rule").unwrap_or(-1);
    if !(0..=8).contains(&rule) {
        return Err(refuse(
            RefusalCode::InvalidValue,
            "a freight rule is 1 to 8, or 0 for an override",
        ));
    }
    if rule == 0 && !history::may_resolve(role) {
        return Err(refuse(
            RefusalCode::Forbidden,
            "only a supervisor or head office can override the freight rules",
        ));
    }
    Ok(())
}

fn check_escalation(doc: &Automerge, e: &ObjId, role: Role) -> Result<(), Refusal> {
    let level = read::string(doc, e, "level").unwrap_or_default();
    if !crate::case::service::LADDER.contains(&level.as_str()) {
        return Err(refuse(
            RefusalCode::InvalidValue,
            format!("{} is not an escalation level", clip(&level, 32)),
        ));
    }
    if crate::case::service::is_external(&level) && role != Role::HeadOffice {
        return Err(refuse(
            RefusalCode::Forbidden,
            format!("{level} is taken outside the company: only head office escalates there"),
        ));
    }
    Ok(())
}

fn check_survey(doc: &Automerge, e: &ObjId) -> Result<(), Refusal> {
    for k in ["description", "attitude", "speed", "logistics"] {
        let v = read::int(doc, e, k).unwrap_or(0);
        if !(1..=5).contains(&v) {
            return Err(refuse(
                RefusalCode::InvalidValue,
                format!("survey score {k} must be 1 to 5"),
            ));
        }
    }
    Ok(())
}

fn offer_terms(doc: &Automerge, e: &ObjId) -> Result<(Tier, i64), Refusal> {
    let tier: Tier = read::string(doc, e, "tier")
        .ok_or_else(|| refuse(RefusalCode::InvalidValue, "offer without a tier"))?
        .parse()
        .map_err(|m: String| refuse(RefusalCode::InvalidValue, m))?;
    let amount = read::int(doc, e, "amount_fen")
        .filter(|a| *a > 0 && *a <= money::MAX_AMOUNT_FEN)
        .ok_or_else(|| {
            refuse(
                RefusalCode::InvalidValue,
                "an offer needs a positive amount within ¥100,000,000",
            )
        })?;
    Ok((tier, amount))
}

fn check_offer(
    doc: &Automerge,
    e: &ObjId,
    id: &str,
    role: Role,
    policy: &Policy,
) -> Result<(), Refusal> {
    money::may_offer(role).map_err(|m| refuse(RefusalCode::Forbidden, m))?;
    let (tier, amount) = offer_terms(doc, e)?;
    let needs = read::boolean(doc, e, "needs_approval").unwrap_or(true);
    let offers = money::offers(doc);
    let granted = money::granted(&offers, tier, Some(id));
    if !needs && !money::covers(policy, role, tier, granted + amount) {
        return Err(refuse(
            RefusalCode::Authority,
            format!(
                "{} of {tier} compensation would bring the case to {}, above what a {role} may grant without approval",
                money::yuan(amount),
                money::yuan(granted + amount)
            ),
        ));
    }
    Ok(())
}

fn check_decision(u: &Upload<'_>, e: &ObjId) -> Result<(), Refusal> {
    let (doc, role, policy) = (u.doc, u.principal.role, u.policy);
    let decision = read::string(doc, e, "decision").unwrap_or_default();
    let offer_id = read::string(doc, e, "offer").unwrap_or_default();
    let offer = read::map(doc, &ROOT, money::OFFERS)
        .and_then(|m| read::map(doc, &m, &offer_id))
        .ok_or_else(|| {
            refuse(
                RefusalCode::InvalidValue,
                format!("decision on an unknown offer {}", clip(&offer_id, 40)),
            )
        })?;
    let (tier, amount) = offer_terms(doc, &offer)?;
    match decision.as_str() {
        "approve" | "reject" => {
            let granted = money::granted(&money::offers(doc), tier, Some(&offer_id));
            if money::covers(policy, role, tier, granted + amount) {
                Ok(())
            } else {
                Err(refuse(
                    RefusalCode::Authority,
                    format!(
                        "{} of {tier} compensation would bring the case to {}, above what a {role} may approve",
                        money::yuan(amount),
                        money::yuan(granted + amount)
                    ),
                ))
            }
        }
        "withdraw" if !history::may_resolve(role) && accepted_before(u, &offer_id) => Err(refuse(
            RefusalCode::Forbidden,
            "only a supervisor or head office can withdraw an offer the customer accepted",
        )),
        "decline" | "accept" | "withdraw" => Ok(()),
        other => Err(refuse(
            RefusalCode::InvalidValue,
            format!("unknown decision {:?}", clip(other, 20)),
        )),
    }
}

/// Whether the customer had accepted the offer before this upload (its own
/// decisions aside: a clerk may withdraw an offer still open).
fn accepted_before(u: &Upload<'_>, offer_id: &str) -> bool {
    if u.before.is_empty() {
        return false;
    }
    // Rare (a withdrawal by a clerk), so reading the case as it was is
    // affordable here.
    let old = u.doc.fork_at(u.before);
    old.is_ok_and(|d| {
        money::offers(&d)
            .iter()
            .any(|o| o.id == offer_id && o.status == "accepted")
    })
}
