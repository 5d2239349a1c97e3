//! `aftercase case list`: the cases on this device, filtered, one line
//! each, with markers for what needs attention.

use crate::lang::Lang;
use crate::out::{local, pad, Out};
use crate::show::overdue;
use aftercase_sync::case::{CaseKind, CaseView};
use aftercase_sync::labels;
use aftercase_sync::policy::Policy;
use std::collections::BTreeSet;

/// What `case list` keeps.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// A state, by code or name.
    pub status: Option<String>,
    /// A kind, by code or name.
    pub kind: Option<String>,
    /// Only overdue cases.
    pub overdue: bool,
    /// Only cases with an open conflict.
    pub conflicts: bool,
    /// Only cases assigned to this user.
    pub assigned_to: Option<String>,
}

impl Filter {
    /// Checks the filter's words before listing, so a typo is named
    /// instead of giving an empty list.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(k) = &self.kind {
            if labels::kind_code(k).is_none() {
                anyhow::bail!(
                    "--kind {k:?} is not a kind of case: repair (维修), installation (安装), return_exchange (退换货), damage_claim (破损理赔) or complaint (投诉)"
                );
            }
        }
        if let Some(s) = &self.status {
            let known = CaseKind::ALL
                .iter()
                .any(|k| labels::state_code(*k, s).is_some());
            if !known {
                anyhow::bail!(
                    "--status {s:?} is not a state of any kind of case (e.g. dispatched or 派工; `case show` lists a case's next steps)"
                );
            }
        }
        Ok(())
    }

    /// Whether `v` passes; `in_schedule_conflict` says whether the case
    /// is in a scheduling conflict.
    pub fn keeps(&self, v: &CaseView, in_schedule_conflict: bool) -> bool {
        let kind = v.kind.as_deref().and_then(|k| k.parse::<CaseKind>().ok());
        if let Some(want) = &self.kind {
            if labels::kind_code(want) != v.kind.as_deref() {
                return false;
            }
        }
        if let Some(want) = &self.status {
            let code = kind.and_then(|k| labels::state_code(k, want));
            if code.is_none() || code != v.status.as_deref() {
                return false;
            }
        }
        if self.overdue && !overdue(v) {
            return false;
        }
        if self.conflicts && !(has_open_conflict(v) || in_schedule_conflict) {
            return false;
        }
        if let Some(user) = &self.assigned_to {
            if v.assignee.as_deref() != Some(user.as_str()) {
                return false;
            }
        }
        true
    }
}

fn has_open_conflict(v: &CaseView) -> bool {
    v.conflicts.iter().any(|c| c.status == "open")
}

/// The earliest open deadline's due time, for the list's column.
fn next_due(v: &CaseView) -> Option<i64> {
    v.timers
        .iter()
        .filter(|t| !t.done)
        .map(|t| t.due_millis())
        .min()
}

/// Prints the cases as a table with a header.
pub fn print(
    cases: &[&CaseView],
    in_schedule_conflict: &BTreeSet<String>,
    policy: &Policy,
    out: Out,
) {
    let lang: Lang = out.lang;
    if cases.is_empty() {
        println!("{}", out.t("没有符合条件的案件", "no cases match"));
        return;
    }
    println!(
        "{}{}{}{}{}{}{}{}",
        pad(out.t("案件号", "CASE NO"), 20),
        pad(out.t("编号", "ID"), 10),
        pad(out.t("类型", "KIND"), 14),
        pad(out.t("状态", "STATUS"), 14),
        pad(out.t("客户", "CUSTOMER"), 14),
        pad(out.t("负责人", "ASSIGNED"), 10),
        pad(out.t("下一截止", "NEXT DUE"), 18),
        out.t("标记", "MARKS")
    );
    for v in cases {
        let mut marks = Vec::new();
        if overdue(v) {
            marks.push(out.t("!逾期", "!OVERDUE"));
        }
        if has_open_conflict(v) || in_schedule_conflict.contains(&v.id) {
            marks.push(out.t("!冲突", "!CONFLICT"));
        }
        let kind = v.kind.as_deref();
        let row = format!(
            "{}{}{}{}{}{}{}{}",
            pad(v.case_no.as_deref().unwrap_or("-"), 20),
            pad(v.id.get(..8).unwrap_or(&v.id), 10),
            pad(&lang.kind(kind), 14),
            pad(
                &v.status
                    .as_deref()
                    .map_or_else(|| "-".into(), |s| lang.state(kind, s)),
                14
            ),
            pad(v.customer.name.as_deref().unwrap_or("-"), 14),
            pad(v.assignee.as_deref().unwrap_or("-"), 10),
            pad(
                &next_due(v).map_or_else(|| "-".into(), |ms| local(policy, ms)),
                18
            ),
            marks.join(" ")
        );
        println!("{}", row.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_take_codes_and_names_and_a_typo_is_named() {
        let mut v = CaseView::from_doc(&automerge::Automerge::new(), "x");
        v.kind = Some("repair".into());
        v.status = Some("dispatched".into());
        v.assignee = Some("tom".into());
        let f = |status: Option<&str>, kind: Option<&str>| Filter {
            status: status.map(str::to_string),
            kind: kind.map(str::to_string),
            ..Filter::default()
        };
        assert!(f(Some("派工"), Some("维修")).keeps(&v, false));
        assert!(f(Some("dispatched"), Some("repair")).keeps(&v, false));
        assert!(!f(Some("confirmed"), None).keeps(&v, false));
        assert!(!f(None, Some("complaint")).keeps(&v, false));
        let tom = Filter {
            assigned_to: Some("tom".into()),
            ..Filter::default()
        };
        assert!(tom.keeps(&v, false));
        let conflicts = Filter {
            conflicts: true,
            ..Filter::default()
        };
        assert!(!conflicts.keeps(&v, false));
        assert!(conflicts.keeps(&v, true));
        let overdue = Filter {
            overdue: true,
            ..Filter::default()
        };
        assert!(!overdue.keeps(&v, false));
        assert!(f(Some("dispatchd"), None)
            .check()
            .unwrap_err()
            .to_string()
            .contains("dispatchd"));
        assert!(f(None, Some("维修")).check().is_ok());
    }
}
