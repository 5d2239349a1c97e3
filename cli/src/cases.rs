//! `aftercase case ...`, `schedule` and `conflicts`: the commands that
//! read and edit cases on this device (all work offline).

use crate::args::CaseCommand;
use crate::list::{self, Filter};
use crate::out::{self, local, Out};
use crate::resolve::{self, Target};
use crate::show;
use aftercase_client::{BookingRequest, Device};
use aftercase_sync::case::offer::Decision;
use aftercase_sync::case::service::Survey;
use aftercase_sync::case::{CaseField, CaseKind, ContactChannel};
use aftercase_sync::labels;
use aftercase_sync::rules::freight::{FreightFacts, Payer};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Reports a saved edit: a line for people on stderr, or an object naming
/// the case and what was done under `--json`; `line` goes to stdout (its
/// last line, for scripts) when there is one.
fn done(
    out: Out,
    target: &Target,
    what: &str,
    words: String,
    line: Option<String>,
    extra: Value,
) -> anyhow::Result<()> {
    if out.json {
        let mut v = json!({ "case": target.id.to_string(), "case_no": target.no, "done": what });
        if let (Some(map), Value::Object(more)) = (v.as_object_mut(), extra) {
            map.extend(more);
        }
        return out::json(v);
    }
    eprintln!("{words}");
    if let Some(l) = line {
        println!("{l}");
    }
    Ok(())
}

/// The state a person typed (`确认`, `confirmed`, `Confirmed`) as its code
/// in the flow of the case; unknown words go through as typed, so the
/// refusal lists the steps allowed.
fn state_code(device: &Device, target: &Target, typed: &str) -> anyhow::Result<String> {
    let kind = device
        .case(target.id)?
        .and_then(|v| v.kind)
        .and_then(|k| k.parse::<CaseKind>().ok());
    Ok(kind
        .and_then(|k| labels::state_code(k, typed))
        .map_or_else(|| typed.to_string(), str::to_string))
}

fn state_name(device: &Device, target: &Target, out: Out) -> anyhow::Result<String> {
    Ok(device
        .case(target.id)?
        .map(|v| {
            v.status
                .as_deref()
                .map_or_else(|| "-".into(), |s| out.lang.state(v.kind.as_deref(), s))
        })
        .unwrap_or_default())
}

/// Runs a `case` subcommand.
pub fn run(device: &Device, out: Out, c: CaseCommand) -> anyhow::Result<()> {
    let find = |text: &str| resolve::case(device, text);
    let t = |zh: &str, en: &str| out.t(zh, en).to_string();
    match c {
        CaseCommand::New {
            kind,
            customer_name,
            customer_phone,
            sku,
            description,
        } => {
            let code = labels::kind_code(&kind).unwrap_or(kind.as_str());
            let kind: CaseKind = code.parse()?;
            let id = device.create_case(kind, &customer_name, &customer_phone, sku, description)?;
            let no = device.case(id)?.and_then(|v| v.case_no);
            let target = Target { id, no: no.clone() };
            let name = target.name();
            done(
                out,
                &target,
                "created",
                format!(
                    "{} {}{} {name}",
                    t("已保存", "saved"),
                    out.lang.kind(Some(kind.as_str())),
                    t("案件", " case")
                ),
                Some(name),
                json!({ "kind": kind.as_str() }),
            )?;
        }
        CaseCommand::Note { id, text } => {
            let target = find(&id)?;
            device.add_note(target.id, &text)?;
            done(
                out,
                &target,
                "note",
                t("备注已保存", "note saved"),
                None,
                json!({}),
            )?;
        }
        CaseCommand::Set { id, field, value } => {
            let target = find(&id)?;
            let field: CaseField = field.parse()?;
            device.set_field(target.id, field, &value)?;
            done(
                out,
                &target,
                "set",
                format!(
                    "{} {}",
                    out.lang.field(field.as_str()),
                    t("已保存", "saved")
                ),
                None,
                json!({ "field": field.as_str() }),
            )?;
        }
        CaseCommand::Contact {
            id,
            channel,
            outcome,
            direction,
            override_reason,
        } => {
            let target = find(&id)?;
            let channel: ContactChannel = channel.parse()?;
            let direction = direction.parse()?;
            let flags = device.log_contact(
                target.id,
                channel,
                direction,
                &outcome,
                override_reason.as_deref(),
            )?;
            let words = if flags.is_empty() {
                t("联系记录已保存", "contact saved")
            } else {
                format!(
                    "{}: {}",
                    t(
                        "联系记录已保存，已标记供总部查看",
                        "contact saved, flagged for head office"
                    ),
                    flags.join("; ")
                )
            };
            done(
                out,
                &target,
                "contact",
                words,
                None,
                json!({ "flags": flags }),
            )?;
        }
        CaseCommand::Survey {
            id,
            description,
            attitude,
            speed,
            logistics,
            comment,
        } => {
            let target = find(&id)?;
            device.survey(
                target.id,
                &Survey {
                    description,
                    attitude,
                    speed,
                    logistics,
                    comment,
                },
            )?;
            done(
                out,
                &target,
                "survey",
                t("回访调查已保存", "survey saved"),
                None,
                json!({}),
            )?;
        }
        CaseCommand::Escalate {
            id,
            level,
            reference,
        } => {
            let target = find(&id)?;
            device.escalate(target.id, &level, reference.as_deref())?;
            done(
                out,
                &target,
                "escalated",
                format!("{} {level}", t("已升级至", "escalated to")),
                None,
                json!({ "level": level }),
            )?;
        }
        CaseCommand::Freight {
            id,
            agreed_payer,
            agreement_cuts_rights,
            seller_at_fault,
            customer_caused_damage,
            own_reason,
            free_shipping,
            no_reason_eligible,
            agreement_silent,
            disputed,
            pickup_after_delivery_damage,
            override_payers,
            reason,
        } => {
            let target = find(&id)?;
            let f = if let Some(payers) = override_payers {
                let (outbound, ret) = payers.split_once(',').ok_or_else(|| {
                    anyhow::anyhow!("--override takes OUTBOUND,RETURN, e.g. seller,customer")
                })?;
                let reason = reason.ok_or_else(|| anyhow::anyhow!("--override needs --reason"))?;
                device.override_freight(target.id, outbound, ret, &reason)?
            } else {
                let agreed_payer = match agreed_payer.as_deref() {
                    None => None,
                    Some("seller") => Some(Payer::Seller),
                    Some("customer") => Some(Payer::Customer),
                    Some(other) => anyhow::bail!("agreed payer {other:?}: use seller or customer"),
                };
                device.decide_freight(
                    target.id,
                    &FreightFacts {
                        agreed_payer,
                        agreement_cuts_statutory_rights: agreement_cuts_rights,
                        seller_at_fault,
                        customer_caused_damage,
                        customer_own_reason: own_reason,
                        free_shipping,
                        no_reason_eligible,
                        agreement_silent,
                        payer_disputed: disputed,
                        pickup_after_delivery_damage,
                    },
                )?
            };
            if out.json {
                return out::json(json!({
                    "case": target.id.to_string(), "case_no": target.no, "done": "freight",
                    "freight": f,
                }));
            }
            println!(
                "{}: {}  {}: {}  ({} {}: {})",
                t("寄出运费", "outbound"),
                f.outbound,
                t("退回运费", "return"),
                f.return_leg,
                t("规则", "rule"),
                f.rule,
                f.rule_text
            );
        }
        CaseCommand::Transition { id, state, reason } => {
            let target = find(&id)?;
            let state = state_code(device, &target, &state)?;
            let follow_up = device.transition(target.id, &state, reason.as_deref())?;
            let now = state_name(device, &target, out)?;
            let linked = match follow_up {
                Some(new) => device.case(new)?.map(|v| (new, v)),
                None => None,
            };
            let mut words = format!("{} {now}", t("已流转至", "moved to"));
            if let Some((_, v)) = &linked {
                words += &format!(
                    "\n{} {}{} {}",
                    t("已开关联", "opened linked"),
                    out.lang.kind(v.kind.as_deref()),
                    t("案件", " case"),
                    v.case_no.clone().unwrap_or_else(|| v.id.clone())
                );
            }
            done(
                out,
                &target,
                "moved",
                words,
                None,
                json!({
                    "status": state,
                    "linked_case": linked.as_ref().map(|(id, _)| id.to_string()),
                    "linked_case_no": linked.and_then(|(_, v)| v.case_no),
                }),
            )?;
        }
        CaseCommand::Resolve {
            id,
            conflict_id,
            choose,
        } => {
            let target = find(&id)?;
            let choose = state_code(device, &target, &choose)?;
            device.resolve(target.id, &conflict_id, &choose)?;
            done(
                out,
                &target,
                "resolved",
                format!(
                    "{} {conflict_id} {}: {choose}",
                    t("冲突", "conflict"),
                    t("已裁定", "resolved")
                ),
                None,
                json!({ "conflict": conflict_id, "chosen": choose }),
            )?;
        }
        CaseCommand::Attach {
            id,
            file,
            kind,
            caption,
        } => {
            let target = find(&id)?;
            let hash = device.attach(target.id, &file, &kind, caption.as_deref())?;
            done(
                out,
                &target,
                "attached",
                format!("{kind} {}", t("已附加", "attached")),
                Some(hash.clone()),
                json!({ "hash": hash, "type": kind }),
            )?;
        }
        CaseCommand::Evidence { id } => {
            let target = find(&id)?;
            let v = device.case(target.id)?.ok_or_else(|| not_here(&target))?;
            if out.json {
                return out::json(json!({
                    "case": target.id.to_string(), "case_no": target.no, "evidence": v.evidence,
                }));
            }
            if v.evidence.is_empty() {
                println!("{}", t("没有证据", "no evidence"));
            }
            for e in &v.evidence {
                let removed = e
                    .removed
                    .as_ref()
                    .map(|r| format!("  {}: {}", t("已撤除", "REMOVED"), r.reason))
                    .unwrap_or_default();
                println!(
                    "{}  {:<11} {:>10} B  {:<16} {}{}",
                    e.hash,
                    e.kind,
                    e.size,
                    e.media_type,
                    e.caption.clone().unwrap_or_default(),
                    removed
                );
            }
        }
        CaseCommand::EvidenceRemove { id, hash, reason } => {
            let target = find(&id)?;
            device.remove_evidence(target.id, &hash, &reason)?;
            done(
                out,
                &target,
                "evidence_removed",
                t("证据已撤除", "evidence removed"),
                None,
                json!({ "hash": hash }),
            )?;
        }
        CaseCommand::Offer {
            id,
            tier,
            amount,
            note,
        } => {
            let target = find(&id)?;
            let offer = device.offer(target.id, &tier, &amount, note.as_deref())?;
            let status = device
                .case(target.id)?
                .and_then(|v| v.offers.into_iter().find(|o| o.id == offer))
                .map(|o| o.status)
                .unwrap_or_default();
            done(
                out,
                &target,
                "offered",
                format!("{}: {status}", t("赔偿方案已保存", "offer saved")),
                Some(offer.clone()),
                json!({ "offer": offer, "status": status }),
            )?;
        }
        CaseCommand::Book {
            id,
            tech,
            at,
            duration,
            window,
            address,
            hours_override,
        } => {
            let target = find(&id)?;
            let booking = device.book(
                target.id,
                &BookingRequest {
                    tech: tech.clone(),
                    at: at.clone(),
                    duration,
                    window,
                    address,
                    hours_override,
                },
            )?;
            let now = state_name(device, &target, out)?;
            done(
                out,
                &target,
                "booked",
                format!(
                    "{} {tech} {at}; {} {now}",
                    t("已预约", "booked"),
                    t("案件状态", "case is")
                ),
                Some(booking.clone()),
                json!({ "booking": booking, "tech": tech }),
            )?;
        }
        CaseCommand::Reschedule {
            id,
            at,
            reason,
            tech,
            duration,
            window,
            booking,
            hours_override,
        } => {
            let target = find(&id)?;
            device.reschedule(
                target.id,
                booking.as_deref(),
                &BookingRequest {
                    tech: tech.unwrap_or_default(),
                    at: at.clone(),
                    duration: duration.unwrap_or_default(),
                    window,
                    address: None,
                    hours_override,
                },
                &reason,
            )?;
            done(
                out,
                &target,
                "rescheduled",
                format!("{} {at}", t("已改约至", "rescheduled to")),
                None,
                json!({ "at": at }),
            )?;
        }
        CaseCommand::CancelBooking {
            id,
            reason,
            booking,
        } => {
            let target = find(&id)?;
            device.cancel_booking(target.id, booking.as_deref(), &reason)?;
            done(
                out,
                &target,
                "booking_cancelled",
                t("预约已取消", "booking cancelled"),
                None,
                json!({}),
            )?;
        }
        CaseCommand::Arrive { id, booking } => {
            let target = find(&id)?;
            device.record_visit(target.id, booking.as_deref(), "arrive")?;
            done(
                out,
                &target,
                "arrived",
                t("已记录到场", "arrival recorded"),
                None,
                json!({}),
            )?;
        }
        CaseCommand::Complete { id, booking } => {
            let target = find(&id)?;
            device.record_visit(target.id, booking.as_deref(), "complete")?;
            done(
                out,
                &target,
                "completed",
                t("上门已完成", "visit completed"),
                None,
                json!({}),
            )?;
        }
        CaseCommand::NoShow { id, booking } => {
            let target = find(&id)?;
            device.record_visit(target.id, booking.as_deref(), "no_show")?;
            done(
                out,
                &target,
                "no_show",
                t("已记录客户未到", "no-show recorded"),
                None,
                json!({}),
            )?;
        }
        CaseCommand::Assign { id, technician } => {
            let target = find(&id)?;
            device.assign(target.id, &technician)?;
            done(
                out,
                &target,
                "assigned",
                format!("{} {technician}", t("已派给", "assigned to")),
                None,
                json!({ "technician": technician }),
            )?;
        }
        CaseCommand::Discard { id } => {
            let target = find(&id)?;
            let kept = device.discard(target.id)?;
            done(
                out,
                &target,
                "discarded",
                format!(
                    "{} {} ({kept} {})",
                    t("已放弃本机对案件的修改", "local changes dropped for case"),
                    target.name(),
                    t(
                        "字节保存在拒收记录中；下次同步取回中继的版本",
                        "bytes kept in the reject log; the relay's version comes with the next sync"
                    )
                ),
                None,
                json!({ "kept_bytes": kept }),
            )?;
        }
        CaseCommand::Approve { id, offer_id } => decide(
            device,
            out,
            &id,
            &offer_id,
            Decision::Approve,
            ("方案已批准", "offer approved"),
        )?,
        CaseCommand::RejectOffer { id, offer_id } => decide(
            device,
            out,
            &id,
            &offer_id,
            Decision::Reject,
            ("方案已驳回", "offer rejected"),
        )?,
        CaseCommand::DeclineOffer { id, offer_id } => decide(
            device,
            out,
            &id,
            &offer_id,
            Decision::Decline,
            ("客户已拒绝方案", "offer declined by the customer"),
        )?,
        CaseCommand::AcceptOffer { id, offer_id } => decide(
            device,
            out,
            &id,
            &offer_id,
            Decision::Accept,
            ("客户已接受方案", "offer accepted by the customer"),
        )?,
        CaseCommand::WithdrawOffer { id, offer_id } => decide(
            device,
            out,
            &id,
            &offer_id,
            Decision::Withdraw,
            ("方案已撤回", "offer withdrawn"),
        )?,
        CaseCommand::List {
            status,
            kind,
            overdue,
            conflicts,
            assigned_to,
        } => {
            let filter = Filter {
                status,
                kind,
                overdue,
                conflicts,
                assigned_to,
            };
            filter.check()?;
            let cases = device.cases()?;
            let scheduling: BTreeSet<String> = device
                .schedule_conflicts()?
                .iter()
                .flat_map(|c| [c.first.case.to_string(), c.second.case.to_string()])
                .collect();
            let kept: Vec<_> = cases
                .iter()
                .filter(|v| filter.keeps(v, scheduling.contains(&v.id)))
                .collect();
            if out.json {
                return out::json(json!({ "cases": kept }));
            }
            if cases.is_empty() {
                println!("{}", t("本设备上没有案件", "no cases on this device"));
            } else {
                list::print(&kept, &scheduling, &device.policy(), out);
            }
        }
        CaseCommand::Show { id } => {
            let target = find(&id)?;
            let v = device.case(target.id)?.ok_or_else(|| not_here(&target))?;
            if out.json {
                return out::json_of(&v);
            }
            show::print_case(&v, &device.policy(), out.lang, device.config().role);
            if let Some(phone) = &v.customer.phone {
                let n = device.no_shows_of(phone)?;
                if n > 0 {
                    println!(
                        "{} {n} {}",
                        out.t("爽约", "no-shows"),
                        t(
                            "次（本设备上该客户的案件）",
                            "by this customer (cases on this device)"
                        )
                    );
                }
            }
        }
    }
    Ok(())
}

fn not_here(target: &Target) -> anyhow::Error {
    anyhow::anyhow!(
        "no case {} on this device (try `aftercase sync`)",
        target.name()
    )
}

fn decide(
    device: &Device,
    out: Out,
    id: &str,
    offer: &str,
    d: Decision,
    words: (&str, &str),
) -> anyhow::Result<()> {
    let target = resolve::case(device, id)?;
    device.decide(target.id, offer, d)?;
    let what = match d {
        Decision::Approve => "approved",
        Decision::Reject => "rejected",
        Decision::Decline => "declined",
        Decision::Accept => "accepted",
        Decision::Withdraw => "withdrawn",
    };
    done(
        out,
        &target,
        what,
        out.t(words.0, words.1).to_string(),
        None,
        json!({ "offer": offer }),
    )
}

/// `aftercase schedule`.
pub fn schedule(
    device: &Device,
    out: Out,
    tech: Option<&str>,
    date: Option<&str>,
) -> anyhow::Result<()> {
    let policy = device.policy();
    let rows = device.schedule(tech, date)?;
    if out.json {
        return out::json(json!({ "bookings": rows }));
    }
    if rows.is_empty() {
        println!("{}", out.t("没有预约", "no bookings"));
        return Ok(());
    }
    for r in rows {
        let b = &r.booking;
        println!(
            "{}-{}  {} {} {}  {}{}",
            local(&policy, b.start_ms),
            &local(&policy, b.end_ms())[11..],
            out::pad(&b.tech, 10),
            out::pad(show::booking_status(out.lang, b.status), 10),
            r.case_no.clone().unwrap_or_else(|| r.case.clone()),
            out.lang.kind(r.kind.as_deref()),
            if r.conflicts.is_empty() {
                String::new()
            } else {
                format!(
                    "  {} {}",
                    out.t("!冲突", "!CONFLICT"),
                    r.conflicts.join(" ")
                )
            }
        );
    }
    Ok(())
}

/// `aftercase conflicts`.
pub fn conflicts(device: &Device, out: Out) -> anyhow::Result<()> {
    let policy = device.policy();
    let cases = device.cases()?;
    let number = |id: &str| {
        cases
            .iter()
            .find(|v| v.id == id)
            .and_then(|v| v.case_no.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for c in device.schedule_conflicts()? {
        let (a, b) = (c.first.case.to_string(), c.second.case.to_string());
        lines.push(format!(
            "{}  {}  {} {}: {} {} {} - {}",
            number(&a),
            number(&b),
            out.t("排班冲突", "scheduling conflict"),
            c.id,
            c.tech,
            out.t("被重复预约", "booked twice"),
            local(&policy, c.first.start.max(c.second.start)),
            &local(&policy, c.first.end.min(c.second.end))[11..]
        ));
        rows.push(json!({
            "case": a, "case_no": number(&a), "other_case": b, "other_case_no": number(&b),
            "conflict": c,
        }));
    }
    for v in &cases {
        let kind = v.kind.as_deref();
        for c in v.conflicts.iter().filter(|c| c.status == "open") {
            let options: Vec<String> = c
                .options
                .iter()
                .map(|o| out.lang.state_and_code(kind, o))
                .collect();
            lines.push(format!(
                "{}  {} {}: {} → {} ({})",
                v.case_no.clone().unwrap_or_else(|| v.id.clone()),
                out.t("流程冲突", "conflict"),
                c.id,
                out.lang.state(kind, &c.from),
                options.join(out.t(" 或 ", " or ")),
                c.proposed_by.join(" / ")
            ));
            rows.push(json!({
                "case": v.id, "case_no": v.case_no, "kind": v.kind, "conflict": c,
            }));
        }
    }
    if out.json {
        return out::json(json!({ "conflicts": rows }));
    }
    if lines.is_empty() {
        println!("{}", out.t("没有未解决的冲突", "no open conflicts"));
    }
    for l in lines {
        println!("{l}");
    }
    Ok(())
}
