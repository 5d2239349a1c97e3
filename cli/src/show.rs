//! One case as people read it: `aftercase case show`.

use crate::lang::Lang;
use crate::out::{local, local_text, pad};
use aftercase_sync::access::Role;
use aftercase_sync::case::booking::BookingStatus;
use aftercase_sync::case::{CaseKind, CaseView};
use aftercase_sync::policy::Policy;
use aftercase_sync::rules::warranty::Remedy;
use aftercase_sync::workflow::roles::may_move;

/// The moves `role` may make from where the case is: only these are
/// offered (a clerk is not shown a supervisor's move).
pub fn next_moves(v: &CaseView, role: Role) -> Vec<String> {
    let (Some(kind), Some(from)) = (
        v.kind.as_deref().and_then(|k| k.parse::<CaseKind>().ok()),
        v.status.as_deref(),
    ) else {
        return Vec::new();
    };
    v.allowed_transitions
        .iter()
        .filter(|to| may_move(role, kind, from, to).is_ok())
        .cloned()
        .collect()
}

/// Whether a deadline of the case is missed and still open.
pub fn overdue(v: &CaseView) -> bool {
    v.timers.iter().any(|t| !t.done && t.breached)
}

/// A booking's status in words.
pub fn booking_status(lang: Lang, s: BookingStatus) -> &'static str {
    match s {
        BookingStatus::Booked => lang.t("已预约", "booked"),
        BookingStatus::Arrived => lang.t("已到场", "arrived"),
        BookingStatus::Completed => lang.t("已完成", "completed"),
        BookingStatus::NoShow => lang.t("客户未到", "no-show"),
        BookingStatus::Cancelled => lang.t("已取消", "cancelled"),
    }
}

/// An offer's status in words.
fn offer_status(lang: Lang, s: &str) -> String {
    let (zh, en) = match s {
        "proposed" => ("待审批", "proposed"),
        "approved" => ("已批准", "approved"),
        "rejected" => ("已驳回", "rejected"),
        "declined" => ("客户拒绝", "declined by the customer"),
        "accepted" => ("客户接受", "accepted by the customer"),
        "withdrawn" => ("已撤回", "withdrawn"),
        other => return other.to_string(),
    };
    lang.t(zh, en).to_string()
}

/// Prints the case for a person whose role is `role`.
pub fn print_case(v: &CaseView, policy: &Policy, lang: Lang, role: Role) {
    let t = |zh: &'static str, en: &'static str| pad(lang.t(zh, en), 10);
    let or = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    let when = |s: &Option<String>| {
        s.as_deref()
            .map_or_else(|| "-".into(), |s| local_text(policy, s))
    };
    let kind = v.kind.as_deref();
    println!("{}{}  ({})", t("案件", "case"), or(&v.case_no), v.id);
    println!(
        "{}{}   {}{}",
        t("类型", "kind"),
        lang.kind(kind),
        lang.t("状态 ", "status "),
        v.status
            .as_deref()
            .map_or_else(|| "-".into(), |s| lang.state(kind, s))
    );
    let next = next_moves(v, role);
    if next.is_empty() {
        println!("{}{}", t("下一步", "next"), lang.t("(无)", "(none)"));
    } else {
        let moves: Vec<String> = next.iter().map(|s| lang.state_and_code(kind, s)).collect();
        println!("{}{}", t("下一步", "next"), moves.join(", "));
    }
    for c in v.conflicts.iter().filter(|c| c.status == "open") {
        let options: Vec<String> = c
            .options
            .iter()
            .map(|o| lang.state_and_code(kind, o))
            .collect();
        println!(
            "{}{} {}: {} → {} ({}): {}",
            t("冲突", "CONFLICT"),
            c.id,
            lang.t("流程分歧", "workflow"),
            lang.state(kind, &c.from),
            options.join(lang.t(" 或 ", " or ")),
            c.proposed_by.join(" / "),
            lang.t(
                "主管用 `case resolve` 选定一个",
                "a supervisor must choose with `case resolve`"
            )
        );
    }
    println!(
        "{}{}   {} {} {}",
        t("门店", "store"),
        or(&v.store_id),
        when(&v.created_at),
        lang.t("开单人", "opened by"),
        or(&v.created_by)
    );
    println!(
        "{}{}   {}",
        t("客户", "customer"),
        or(&v.customer.name),
        or(&v.customer.phone)
    );
    if !v.description.is_empty() {
        println!("{}{}", t("问题", "problem"), v.description);
    }
    if let Some(a) = &v.assignee {
        println!("{}{a}", t("负责人", "assigned"));
    }
    if let Some(s) = &v.sanbao {
        let remedies: Vec<&str> = s
            .remedies
            .iter()
            .map(|r| match r {
                Remedy::Return => lang.t("退货", "return"),
                Remedy::Exchange => lang.t("换货", "exchange"),
                Remedy::Repair => lang.t("维修", "repair"),
            })
            .collect();
        println!(
            "{}{} {}: {} {} ({}); {} {}",
            t("三包", "warranty"),
            lang.t("序列号", "serial"),
            s.serial,
            lang.t("保修期内已修", "repaired in warranty"),
            s.repairs,
            s.cases.join(", "),
            lang.t("客户可选", "the customer may choose"),
            remedies.join(lang.t(" 或 ", " or "))
        );
    }
    for b in &v.bookings {
        println!(
            "{}{}  {} {}-{} ({} {})  {}{}",
            t("预约", "booking"),
            b.id,
            b.tech,
            local(policy, b.start_ms),
            &local(policy, b.end_ms())[11..],
            lang.t("到场不晚于", "arrive by"),
            &local(policy, b.window_end_ms)[11..],
            booking_status(lang, b.status),
            b.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
    }
    for c in &v.schedule_conflicts {
        println!(
            "{}{}: {} {} {}-{} ({}): {}",
            t("冲突", "CONFLICT"),
            c.id,
            c.tech,
            lang.t("被重复预约", "is booked twice"),
            local(policy, c.first.start.max(c.second.start)),
            &local(policy, c.first.end.min(c.second.end))[11..],
            lang.t("本案件与另一案件", "this case and another"),
            lang.t(
                "主管用 `case reschedule` 改约其中一个",
                "a supervisor reschedules one with `case reschedule`"
            )
        );
    }
    for timer in &v.timers {
        let state = match (timer.done, timer.breached) {
            (true, false) => lang.t("已完成", "met"),
            (true, true) => lang.t("逾期完成", "met late"),
            (false, true) => lang.t("已逾期", "OVERDUE"),
            (false, false) => lang.t("进行中", "open"),
        };
        println!(
            "{}{}{} {}  {state}",
            t("时限", "deadline"),
            pad(&lang.timer(&timer.name), 22),
            lang.t("截止", "due"),
            local(policy, timer.due_millis()),
        );
    }
    if let Some(f) = &v.freight {
        println!(
            "{}{} {}, {} {} ({} {}: {})",
            t("运费", "freight"),
            lang.t("寄出", "outbound"),
            f.outbound,
            lang.t("退回", "return"),
            f.return_leg,
            lang.t("规则", "rule"),
            f.rule,
            f.rule_text
        );
    }
    if let Some(e) = &v.escalation {
        println!("{}{e}", t("已升级至", "escalated"));
    }
    if let Some(s) = &v.survey {
        println!(
            "{}{} {}, {} {}, {} {}, {} {}",
            t("回访", "survey"),
            lang.t("描述相符", "description"),
            s.description,
            lang.t("服务态度", "attitude"),
            s.attitude,
            lang.t("速度", "speed"),
            s.speed,
            lang.t("物流", "logistics"),
            s.logistics
        );
    }
    for o in &v.offers {
        println!(
            "{}{}  {} ¥{}  {}  ({})",
            t("赔偿", "offer"),
            o.id,
            o.tier,
            o.amount,
            offer_status(lang, &o.status),
            o.proposed_by
        );
    }
    for c in &v.contact_attempts {
        if c.flags.is_empty() {
            continue;
        }
        println!(
            "{}{} {}: {}",
            t("联系标记", "flagged"),
            when(&c.at),
            or(&c.author),
            c.flags.join("; ")
        );
    }
    println!("{}", lang.t("记录:", "log:"));
    for e in &v.timeline {
        let what = e
            .text
            .clone()
            .or_else(|| {
                e.field
                    .as_ref()
                    .map(|f| format!("{} {}", lang.field(f), lang.t("已修改", "changed")))
            })
            .unwrap_or_default();
        println!(
            "  {}  {}{}  ({} {} {})",
            when(&e.at),
            pad(&lang.entry(&e.kind), 14),
            what,
            or(&e.author),
            lang.t("于", "on"),
            or(&e.device)
        );
    }
}
