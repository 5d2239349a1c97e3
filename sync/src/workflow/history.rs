//! Status derived from transition events, with forks surfaced as conflicts.
//!
//! Every transition event names the state it moved `from` and the event it
//! followed (`prev`, empty for the first move). Two events that follow the
//! same event but go to different states were made concurrently (offline on
//! two devices): that is a fork. The status stops at the fork point and the
//! fork is an open conflict until a supervisor or head office records a
//! resolution choosing one branch. Every replica holding the same events
//! derives the same status and the same conflicts.

use super::table;
use crate::access::Role;
use crate::case::read;
use crate::case::CaseKind;
use automerge::{ReadDoc, ROOT};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Document key of the transition events.
pub const TRANSITIONS: &str = "transitions";
/// Document key of the conflict resolutions.
pub const RESOLUTIONS: &str = "resolutions";
/// Conflict id of a fork at the very first move.
pub const START: &str = "start";

/// One recorded move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Event id.
    pub id: String,
    /// State before.
    pub from: String,
    /// State after.
    pub to: String,
    /// Who moved it.
    pub author: String,
    /// Their role.
    pub role: String,
    /// Device time, milliseconds.
    #[serde(skip)]
    pub at: i64,
    /// Why, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip)]
    prev: String,
}

/// How a conflict was settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// The state chosen.
    pub choose: String,
    /// Who chose.
    pub by: String,
    /// Device time, milliseconds.
    #[serde(skip)]
    pub at: i64,
}

/// Two or more different moves made from the same point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// Stable id (the event the branches followed, or `start`).
    pub id: String,
    /// The state the branches left.
    pub from: String,
    /// The states the branches went to, sorted.
    pub options: Vec<String>,
    /// Who proposed each option.
    pub proposed_by: Vec<String>,
    /// Set once resolved.
    pub resolution: Option<Resolution>,
}

/// The workflow position of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    /// Current state.
    pub status: String,
    /// Event id the status comes from (`""` before the first move).
    pub head: String,
    /// Moves on the path to the current state, in order.
    pub steps: Vec<Step>,
    /// Every fork met on the path (resolved ones and at most one open one, last).
    pub conflicts: Vec<Conflict>,
}

impl Workflow {
    /// The unresolved conflict, if the path stops at one.
    pub fn open_conflict(&self) -> Option<&Conflict> {
        self.conflicts.iter().find(|c| c.resolution.is_none())
    }

    /// How many times the case went from `from` to `to` on its path.
    pub fn count(&self, from: &str, to: &str) -> usize {
        self.steps
            .iter()
            .filter(|s| s.from == from && s.to == to)
            .count()
    }

    /// Device time of the first arrival in `state`, if ever.
    pub fn first_entered(&self, state: &str) -> Option<i64> {
        self.steps.iter().find(|s| s.to == state).map(|s| s.at)
    }

    /// Device time of the latest arrival in `state`, if ever.
    pub fn last_entered(&self, state: &str) -> Option<i64> {
        self.steps
            .iter()
            .rev()
            .find(|s| s.to == state)
            .map(|s| s.at)
    }

    /// Whether the path ever passed through `state`.
    pub fn visited(&self, state: &str) -> bool {
        self.steps.iter().any(|s| s.to == state)
    }
}

fn steps<D: ReadDoc>(doc: &D) -> Vec<Step> {
    let mut out: Vec<Step> = read::entries(doc, &ROOT, TRANSITIONS)
        .into_iter()
        .filter_map(|(id, e)| {
            Some(Step {
                from: read::string(doc, &e, "from")?,
                to: read::string(doc, &e, "to")?,
                prev: read::string(doc, &e, "prev").unwrap_or_default(),
                author: read::string(doc, &e, "author").unwrap_or_default(),
                role: read::string(doc, &e, "role").unwrap_or_default(),
                at: read::int(doc, &e, "at").unwrap_or(0),
                reason: read::string(doc, &e, "reason"),
                id,
            })
        })
        .collect();
    out.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    out
}

fn resolutions<D: ReadDoc>(doc: &D) -> BTreeMap<String, Vec<(i64, String, Resolution, String)>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (id, e) in read::entries(doc, &ROOT, RESOLUTIONS) {
        let (Some(conflict), Some(choose)) = (
            read::string(doc, &e, "conflict"),
            read::string(doc, &e, "choose"),
        ) else {
            continue;
        };
        let at = read::int(doc, &e, "at").unwrap_or(0);
        let role = read::string(doc, &e, "role").unwrap_or_default();
        let by = read::string(doc, &e, "author").unwrap_or_default();
        out.entry(conflict)
            .or_default()
            .push((at, id, Resolution { choose, by, at }, role));
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    }
    out
}

/// Whether `role` may settle a conflict.
pub fn may_resolve(role: Role) -> bool {
    matches!(role, Role::Supervisor | Role::HeadOffice)
}

/// Derives the workflow position of a case of `kind` from its events.
pub fn derive<D: ReadDoc>(doc: &D, kind: CaseKind) -> Workflow {
    let all = steps(doc);
    let resolutions = resolutions(doc);
    let mut status = kind.initial_status().to_string();
    // The events that stand for the current position: several when devices
    // made the same move concurrently (they agree, so they are one move).
    let mut cur: BTreeSet<String> = BTreeSet::from([String::new()]);
    let mut head = String::new();
    let mut path = Vec::new();
    let mut conflicts = Vec::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    loop {
        let children: Vec<&Step> = all
            .iter()
            .filter(|s| cur.contains(&s.prev) && !used.contains(&s.id))
            .filter(|s| s.from == status && table::is_allowed(kind, &s.from, &s.to))
            .collect();
        if children.is_empty() {
            break;
        }
        let mut by_target: BTreeMap<&str, Vec<&Step>> = BTreeMap::new();
        for c in &children {
            by_target.entry(c.to.as_str()).or_default().push(c);
        }
        let chosen: &str = if by_target.len() == 1 {
            by_target.keys().next().copied().unwrap_or_default()
        } else {
            let id = if head.is_empty() {
                START.to_string()
            } else {
                head.clone()
            };
            let options: Vec<String> = by_target.keys().map(|s| s.to_string()).collect();
            let proposed_by = by_target
                .values()
                .map(|v| {
                    v.iter()
                        .map(|s| s.author.as_str())
                        .collect::<Vec<_>>()
                        .join("+")
                })
                .collect();
            let resolution = resolutions.get(&id).and_then(|rs| {
                rs.iter()
                    .find(|(_, _, r, role)| {
                        options.contains(&r.choose) && role.parse::<Role>().is_ok_and(may_resolve)
                    })
                    .map(|(_, _, r, _)| r.clone())
            });
            let choice = resolution.as_ref().map(|r| r.choose.clone());
            conflicts.push(Conflict {
                id,
                from: status.clone(),
                options,
                proposed_by,
                resolution,
            });
            match choice {
                Some(c) => by_target
                    .keys()
                    .copied()
                    .find(|k| *k == c)
                    .unwrap_or_default(),
                None => break,
            }
        };
        let group = by_target.remove(chosen).unwrap_or_default();
        // The earliest of the agreeing events represents the move.
        let Some(first) = group.first() else { break };
        path.push((*first).clone());
        status = first.to.clone();
        head = first.id.clone();
        cur = group.iter().map(|s| s.id.clone()).collect();
        used.extend(children.iter().map(|s| s.id.clone()));
    }
    Workflow {
        status,
        head,
        steps: path,
        conflicts,
    }
}
