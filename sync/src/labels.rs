//! The names people read: every case kind, every workflow state of every
//! kind, every deadline, role, settable field and refusal code, in Chinese (the shop floor's word, from the
//! handbook and domain.md §1) with plain English beside it.
//!
//! One table for the `aftercase` command line and head office's dashboard
//! (served by the relay at `GET /v1/labels`), so both say 派工 for the
//! same step. States are labelled per kind because one English name means
//! different steps in different flows: `accepted` is 验收 (the customer
//! signs off) for a repair but 受理 (the request is taken on) for a return
//! or a complaint. The tests at the end fail when a state of
//! `workflow::table` or a deadline of `rules::timers` has no label, so a
//! new one cannot ship unlabelled.

use crate::case::CaseKind;
use crate::rules::timers;
use crate::workflow::table;
use serde::Serialize;
use std::collections::BTreeMap;

/// A name as people read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Label {
    /// The Chinese name, as the handbook says it.
    pub zh: &'static str,
    /// The English name, in plain words.
    pub en: &'static str,
}

/// (code, Chinese, English).
type Row = (&'static str, &'static str, &'static str);

const KINDS: &[Row] = &[
    ("repair", "维修", "repair"),
    ("installation", "安装", "installation"),
    ("return_exchange", "退换货", "return or exchange"),
    // The handbook's 破损 (damaged in transit or use) and 理赔 (the claim
    // settled); domain.md shortens it to 损坏.
    ("damage_claim", "破损理赔", "damage claim"),
    ("complaint", "投诉", "complaint"),
];

/// Every kind can be cancelled from any step that is not final.
const CANCELLED: Row = (table::CANCELLED, "取消", "cancelled");

/// 报修 → 确认 → 派工 → 维修 → 验收 → 回访 (handbook 002 §1.2).
const REPAIR: &[Row] = &[
    ("reported", "报修", "reported"),
    ("confirmed", "确认", "confirmed"),
    ("dispatched", "派工", "dispatched"),
    ("in_repair", "维修", "in repair"),
    ("waiting_parts", "待配件", "waiting for parts"),
    ("pending_acceptance", "待验收", "pending acceptance"),
    ("accepted", "验收", "accepted"),
    ("followed_up", "回访", "followed up"),
    ("closed", "结案", "closed"),
    ("cannot_repair", "无法维修", "cannot be repaired"),
];

/// Handbook 002 §5.1: 预约, 安装, 安装后验收, then the satisfaction survey.
const INSTALLATION: &[Row] = &[
    ("requested", "安装申请", "requested"),
    ("prepared", "备料", "prepared"),
    ("scheduled", "预约", "scheduled"),
    ("in_progress", "安装中", "in progress"),
    ("pending_acceptance", "待验收", "pending acceptance"),
    ("accepted", "验收", "accepted"),
    ("surveyed", "满意度调查", "surveyed"),
    ("closed", "结案", "closed"),
    ("failed", "安装失败", "failed"),
];

/// Handbook 002 §6: 审核 within 24 hours; "审核通过仅代表受理申请", so the
/// step after review is 受理, not a granted refund.
const RETURN: &[Row] = &[
    ("requested", "退换申请", "requested"),
    ("under_review", "审核", "under review"),
    ("accepted", "受理", "accepted"),
    ("rejected", "驳回", "rejected"),
    ("awaiting_goods", "待收货", "awaiting the goods"),
    ("inspecting", "检测", "inspecting"),
    ("refunded", "退款", "refunded"),
    ("exchanged", "换货", "exchanged"),
    (
        "partial_refund_keep",
        "部分退款留货",
        "partial refund, goods kept",
    ),
    ("converted_to_repair", "转维修", "converted to repair"),
    ("closed", "结案", "closed"),
];

/// Domain.md §1: 拍照举证, liability, an offer, settlement.
const DAMAGE: &[Row] = &[
    ("reported", "报损", "reported"),
    ("evidence_collected", "拍照举证", "evidence collected"),
    ("assessed", "定责", "liability assessed"),
    ("offered", "赔偿方案", "offered"),
    ("agreed", "同意", "agreed"),
    ("declined", "拒绝", "declined"),
    ("settled", "赔付", "settled"),
    ("closed", "结案", "closed"),
];

/// Handbook 002 §2.3: 投诉登记, 受理, 处理, 部门协调, 回复, 归档.
const COMPLAINT: &[Row] = &[
    ("registered", "登记", "registered"),
    ("accepted", "受理", "accepted"),
    ("not_accepted", "不予受理", "not accepted"),
    ("in_handling", "处理", "in handling"),
    ("coordinating", "部门协调", "coordinating"),
    ("replied", "回复", "replied"),
    ("surveyed", "满意度调查", "surveyed"),
    ("archived", "归档", "archived"),
];

const TIMERS: &[Row] = &[
    (timers::RETURN_REVIEW, "退换货审核", "return review"),
    (timers::REFUND, "退款", "refund"),
    (timers::FIRST_RESPONSE, "首次响应", "first response"),
    (timers::COMPLAINT_REPLY, "投诉回复", "complaint reply"),
    (timers::SUGGEST_ESCALATION, "建议升级", "suggest escalation"),
    (timers::CUSTOMER_UPDATE, "每日跟进", "daily customer update"),
    (timers::FOLLOW_UP_SURVEY, "回访调查", "follow-up survey"),
    (
        timers::REGULATOR_ACCEPTANCE,
        "12315受理",
        "12315 acceptance",
    ),
    (timers::REGULATOR_MEDIATION, "12315调解", "12315 mediation"),
    (timers::VISIT_WINDOW, "上门时段", "visit window"),
    (
        timers::VISIT_REMINDER_DAY_BEFORE,
        "前一天提醒",
        "reminder the day before",
    ),
    (
        timers::VISIT_REMINDER_MORNING,
        "当天上午提醒",
        "reminder on the morning",
    ),
];

/// Who does what (domain.md §2).
const ROLES: &[Row] = &[
    ("staff", "店员", "store staff"),
    ("technician", "技术员", "technician"),
    ("supervisor", "主管", "supervisor"),
    ("head_office", "总部", "head office"),
];

/// The fields `aftercase case set` takes.
const FIELDS: &[Row] = &[
    ("description", "问题描述", "problem description"),
    ("priority", "优先级", "priority"),
    ("category", "类别", "category"),
    ("channel", "受理渠道", "intake channel"),
    ("sale_channel", "销售方式", "sale channel"),
    ("requested_remedy", "客户诉求", "requested remedy"),
    ("safety_risk", "安全隐患", "safety risk"),
    ("customer_name", "客户姓名", "customer name"),
    ("customer_phone", "客户电话", "customer phone"),
    ("customer_address", "客户地址", "customer address"),
    ("customer_member_id", "会员号", "member number"),
    ("order_no", "订单号", "order number"),
    ("purchase_date", "购买日期", "purchase date"),
    ("received_date", "收货日期", "received date"),
    ("invoice_no", "发票号", "invoice number"),
    ("serial", "序列号", "serial number"),
];

/// The entries of a case's log (`case::table::TIMELINE_TYPES`).
const ENTRIES: &[Row] = &[
    ("created", "开单", "opened"),
    ("note", "备注", "note"),
    ("call", "电话", "call"),
    ("sms", "短信", "text message"),
    ("visit", "上门", "visit"),
    ("field_changed", "修改", "changed"),
    ("status_change", "流转", "moved"),
    ("conflict_resolved", "冲突裁定", "conflict settled"),
    ("offer", "赔偿方案", "offer"),
    ("offer_decision", "方案决定", "offer decision"),
    ("survey", "满意度调查", "survey"),
    ("escalation", "升级", "escalation"),
    ("evidence", "举证", "evidence"),
    ("evidence_removed", "撤除证据", "evidence removed"),
    ("freight", "运费", "freight"),
    ("linked_case", "关联案件", "linked case"),
    ("assignment", "派单", "assignment"),
    ("booking", "预约", "booking"),
    // Written only by the relay (`case::seal::ERASED`), never by a device.
    (
        "personal_data_erased",
        "客户个人信息已删除",
        "customer data erased",
    ),
];

/// Why the relay refused an upload (`protocol::RefusalCode`), as the
/// person who made the edit should read it.
const REFUSALS: &[Row] = &[
    (
        "not_found",
        "无此案件或无权查看",
        "no such case, or not yours to see",
    ),
    ("forbidden", "无此权限", "not allowed for your role"),
    ("unknown_key", "案件没有此项", "not part of a case"),
    (
        "append_only",
        "已记录的内容不能修改",
        "recorded entries cannot be changed",
    ),
    (
        "fixed_field",
        "开单后不能修改",
        "fixed once the case is opened",
    ),
    ("invalid_value", "值不合规", "not an allowed value"),
    ("identity", "身份不符", "written under another identity"),
    ("workflow", "不符合流程", "not a step of the flow"),
    ("authority", "超出权限额度", "beyond your authority"),
    ("window", "超出退换期限", "outside the return window"),
    ("contact_rules", "违反联系规则", "against the contact rules"),
    ("too_large", "超出大小限制", "too large"),
    ("too_many", "数量超限", "too many"),
    ("malformed", "数据格式错误", "malformed"),
    ("revoked", "已被吊销", "revoked"),
    (
        "unavailable",
        "中继存储的案件已损坏，待恢复",
        "damaged at the relay, awaiting restore",
    ),
];

fn states_of(kind: CaseKind) -> &'static [Row] {
    match kind {
        CaseKind::Repair => REPAIR,
        CaseKind::Installation => INSTALLATION,
        CaseKind::ReturnExchange => RETURN,
        CaseKind::DamageClaim => DAMAGE,
        CaseKind::Complaint => COMPLAINT,
    }
}

fn find(rows: &[Row], code: &str) -> Option<Label> {
    rows.iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, zh, en)| Label { zh, en })
}

/// The label of a case kind.
pub fn kind(kind: CaseKind) -> Label {
    // Every kind is in KINDS (see the tests); the code is the fallback
    // rather than a panic.
    find(KINDS, kind.as_str()).unwrap_or(Label {
        zh: kind.as_str(),
        en: kind.as_str(),
    })
}

/// The label of `state` in the flow of `kind`, if it is one of its states.
pub fn state(kind: CaseKind, state: &str) -> Option<Label> {
    if state == CANCELLED.0 {
        return find(&[CANCELLED], state);
    }
    find(states_of(kind), state)
}

/// The label of a deadline, if `name` is one.
pub fn timer(name: &str) -> Option<Label> {
    find(TIMERS, name)
}

/// The label of a role.
pub fn role(role: crate::access::Role) -> Label {
    find(ROLES, role.as_str()).unwrap_or(Label {
        zh: role.as_str(),
        en: role.as_str(),
    })
}

/// The label of a settable field.
pub fn field(field: crate::case::CaseField) -> Label {
    find(FIELDS, field.as_str()).unwrap_or(Label {
        zh: field.as_str(),
        en: field.as_str(),
    })
}

/// The label of a type of log entry, if `code` is one.
pub fn entry(code: &str) -> Option<Label> {
    find(ENTRIES, code)
}

/// The label of a refusal code, if `code` is one.
pub fn refusal(code: &str) -> Option<Label> {
    find(REFUSALS, code)
}

fn code_of(rows: &[Row], text: &str) -> Option<&'static str> {
    let t = text.trim();
    rows.iter()
        .find(|(c, zh, en)| *c == t || *zh == t || en.eq_ignore_ascii_case(t))
        .map(|(c, _, _)| *c)
}

/// The state of `kind`'s flow that `text` names, by its code, its
/// Chinese name or its English name (`确认`, `confirmed`): people type
/// what they read.
pub fn state_code(kind: CaseKind, text: &str) -> Option<&'static str> {
    code_of(states_of(kind), text).or_else(|| code_of(&[CANCELLED], text))
}

/// The case kind that `text` names, by its code or either name.
pub fn kind_code(text: &str) -> Option<&'static str> {
    code_of(KINDS, text)
}

/// The role that `text` names, by its code or either name.
pub fn role_code(text: &str) -> Option<&'static str> {
    code_of(ROLES, text)
}

/// `code 中文` for a line of text: the code first, so that scripts that
/// match the English word keep working, then the Chinese name. A code
/// without a label is printed alone.
pub fn text(code: &str, label: Option<Label>) -> String {
    match label {
        Some(l) => format!("{code} {}", l.zh),
        None => code.to_string(),
    }
}

/// `text` for a kind given by its wire name (as a case view holds it).
pub fn kind_text(kind_name: &str) -> String {
    text(
        kind_name,
        kind_name.parse::<CaseKind>().ok().map(self::kind),
    )
}

/// `text` for a status of a case of the kind named `kind_name`.
pub fn state_text(kind_name: &str, status: &str) -> String {
    let label = kind_name
        .parse::<CaseKind>()
        .ok()
        .and_then(|k| state(k, status));
    text(status, label)
}

/// Every label, keyed by code: what `GET /v1/labels` answers.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Labels {
    /// Case kinds.
    pub kinds: BTreeMap<&'static str, Label>,
    /// Per kind, its states (with `cancelled`).
    pub states: BTreeMap<&'static str, BTreeMap<&'static str, Label>>,
    /// Deadlines.
    pub timers: BTreeMap<&'static str, Label>,
    /// Roles.
    pub roles: BTreeMap<&'static str, Label>,
    /// Fields of a case that can be set.
    pub fields: BTreeMap<&'static str, Label>,
    /// Refusal codes.
    pub refusals: BTreeMap<&'static str, Label>,
    /// Types of entries of a case's log.
    pub entries: BTreeMap<&'static str, Label>,
}

fn map(rows: &[Row]) -> BTreeMap<&'static str, Label> {
    rows.iter()
        .map(|(c, zh, en)| (*c, Label { zh, en }))
        .collect()
}

/// The whole table.
pub fn all() -> Labels {
    Labels {
        kinds: map(KINDS),
        states: CaseKind::ALL
            .iter()
            .map(|k| {
                let mut m = map(states_of(*k));
                m.extend(map(&[CANCELLED]));
                (k.as_str(), m)
            })
            .collect(),
        timers: map(TIMERS),
        roles: map(ROLES),
        fields: map(FIELDS),
        refusals: map(REFUSALS),
        entries: map(ENTRIES),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_field_and_refusal_code_has_a_label_and_no_label_is_stray() {
        use crate::access::Role;
        use crate::case::CaseField;
        use crate::protocol::RefusalCode;
        let roles = [
            Role::Staff,
            Role::Technician,
            Role::Supervisor,
            Role::HeadOffice,
        ];
        assert_eq!(ROLES.len(), roles.len());
        for r in roles {
            assert!(find(ROLES, r.as_str()).is_some(), "{r:?}");
        }
        assert_eq!(FIELDS.len(), CaseField::ALL.len());
        for f in CaseField::ALL {
            assert!(find(FIELDS, f.as_str()).is_some(), "{f}");
        }
        assert_eq!(ENTRIES.len(), crate::case::table::TIMELINE_TYPES.len() + 1);
        assert!(entry(crate::case::seal::ERASED).is_some());
        for t in crate::case::table::TIMELINE_TYPES {
            assert!(entry(t).is_some(), "log entry {t} unlabelled");
        }
        assert_eq!(REFUSALS.len(), RefusalCode::ALL.len());
        for c in RefusalCode::ALL {
            assert!(refusal(c.as_str()).is_some(), "{c}");
        }
        for (code, zh, en) in ROLES.iter().chain(FIELDS).chain(REFUSALS).chain(ENTRIES) {
            assert!(!zh.is_empty() && !en.is_empty(), "{code}");
            assert!(!zh.is_ascii(), "{code}: the Chinese name is Chinese");
        }
    }

    #[test]
    fn every_kind_state_and_deadline_has_a_label_and_no_label_is_stray() {
        assert_eq!(KINDS.len(), CaseKind::ALL.len());
        for k in CaseKind::ALL {
            assert!(find(KINDS, k.as_str()).is_some(), "kind {k} unlabelled");
            for s in table::states(k) {
                assert!(state(k, s).is_some(), "{k}: state {s} unlabelled");
            }
            assert!(state(k, table::CANCELLED).is_some());
            // A label for a state the flow does not have is a typo.
            for (s, _, _) in states_of(k) {
                assert!(table::states(k).contains(s), "{k}: {s} is not a state");
            }
        }
        for t in timers::NAMES {
            assert!(timer(t).is_some(), "deadline {t} unlabelled");
        }
        assert_eq!(TIMERS.len(), timers::NAMES.len());
        for (code, zh, en) in KINDS
            .iter()
            .chain(TIMERS)
            .chain(CaseKind::ALL.iter().flat_map(|k| states_of(*k)))
        {
            assert!(!zh.is_empty() && !en.is_empty(), "{code}");
            assert!(!zh.is_ascii(), "{code}: the Chinese name is {zh:?}");
        }
    }

    #[test]
    fn the_same_word_is_labelled_by_its_flow() {
        assert_eq!(
            state(CaseKind::Repair, "accepted").map(|l| l.zh),
            Some("验收")
        );
        assert_eq!(
            state(CaseKind::Complaint, "accepted").map(|l| l.zh),
            Some("受理")
        );
        assert_eq!(state(CaseKind::Repair, "archived"), None);
        assert_eq!(state_text("repair", "dispatched"), "dispatched 派工");
        assert_eq!(state_text("repair", "cancelled"), "cancelled 取消");
        assert_eq!(state_text("repair", "nonsense"), "nonsense");
        assert_eq!(kind_text("damage_claim"), "damage_claim 破损理赔");
        assert_eq!(kind_text("??"), "??");
    }

    #[test]
    fn a_state_typed_by_its_name_is_found_and_names_are_unambiguous() {
        assert_eq!(state_code(CaseKind::Repair, "确认"), Some("confirmed"));
        assert_eq!(state_code(CaseKind::Repair, "In Repair"), Some("in_repair"));
        assert_eq!(state_code(CaseKind::Repair, "取消"), Some("cancelled"));
        assert_eq!(state_code(CaseKind::Complaint, "受理"), Some("accepted"));
        assert_eq!(state_code(CaseKind::Repair, "受理"), None);
        assert_eq!(kind_code("退换货"), Some("return_exchange"));
        assert_eq!(role_code("主管"), Some("supervisor"));
        // Within a flow, no two states share a name, or typing it would
        // pick one at random.
        for k in CaseKind::ALL {
            let rows: Vec<Row> = states_of(k).iter().copied().chain([CANCELLED]).collect();
            for (i, a) in rows.iter().enumerate() {
                for b in &rows[i + 1..] {
                    assert!(
                        a.1 != b.1 && !a.2.eq_ignore_ascii_case(b.2),
                        "{k}: {a:?} {b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_whole_table_lists_every_state_with_cancelled() {
        let all = all();
        assert_eq!(all.kinds.len(), 5);
        let repair = &all.states["repair"];
        assert_eq!(repair.len(), table::states(CaseKind::Repair).len() + 1);
        assert_eq!(repair["dispatched"].zh, "派工");
        assert_eq!(repair["cancelled"].zh, "取消");
        assert_eq!(all.timers["first_response"].en, "first response");
    }
}
