//! The read model held in memory for head office's queries: every case's
//! summary with the indexes the lists and queues use. The durable copy is
//! the `rv` rows written in each commit's batch; this is rebuilt from them
//! when the relay starts and updated after each commit is flushed, so the
//! queries never touch the relay's lock or its documents.
//!
//! The indexes are what a SQL backend would declare on the summaries
//! table: by store, assignee, case number, open conflicts, offers awaiting
//! approval and the next deadline.

use super::summary::CaseSummary;
use crate::access::{Principal, Role};
use crate::ids::CaseId;
use crate::rules::calendar::{Placed, ScheduleConflict};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

/// Whose cases a query may return, decided from the authenticated
/// principal (never from document content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Head office: every store.
    Chain,
    /// Staff and supervisors: their store.
    Store(String),
    /// A technician: cases of their store assigned to or reported by them.
    Technician {
        /// Their store.
        store: String,
        /// Their user id.
        user: String,
    },
}

impl Scope {
    /// The scope of `p`.
    pub fn of(p: &Principal) -> Scope {
        match p.role {
            Role::HeadOffice => Scope::Chain,
            Role::Staff | Role::Supervisor => Scope::Store(p.store.to_string()),
            Role::Technician => Scope::Technician {
                store: p.store.to_string(),
                user: p.user.to_string(),
            },
        }
    }

    /// Whether a case with summary `s` is in scope.
    pub fn admits(&self, s: &CaseSummary) -> bool {
        match self {
            Scope::Chain => true,
            Scope::Store(store) => &s.store == store,
            Scope::Technician { store, user } => {
                &s.store == store
                    && (s.assignee.as_deref() == Some(user.as_str()) || &s.created_by == user)
            }
        }
    }

    /// The one store the scope is limited to, if any.
    pub fn store(&self) -> Option<&str> {
        match self {
            Scope::Chain => None,
            Scope::Store(s) | Scope::Technician { store: s, .. } => Some(s),
        }
    }
}

/// Filters of a case list; `None` leaves a field unfiltered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Owning store.
    pub store: Option<String>,
    /// Case kind.
    pub kind: Option<String>,
    /// Current state.
    pub status: Option<String>,
    /// Assigned technician.
    pub assignee: Option<String>,
    /// Case number.
    pub case_no: Option<String>,
    /// With (or without) an open conflict.
    pub has_conflict: Option<bool>,
    /// With (or without) offers awaiting approval.
    pub awaiting_approval: Option<bool>,
    /// With (or without) a breached deadline at the query's time.
    pub breached: Option<bool>,
    /// Next open deadline before this time, ms.
    pub due_before: Option<i64>,
    /// Changed at or after this relay time, ms.
    pub updated_since: Option<i64>,
    /// Created at or after this time, ms.
    pub created_from: Option<i64>,
    /// Created before this time, ms.
    pub created_to: Option<i64>,
}

impl Query {
    /// Whether a case with summary `s` passes, at relay time `now`.
    /// Scheduling conflicts live in the model, not the summary: see
    /// [`Query::keeps_with`].
    pub fn keeps(&self, s: &CaseSummary, now: i64) -> bool {
        self.keeps_with(s, now, false)
    }

    /// [`Query::keeps`] for a case that is (or is not) in an open
    /// scheduling conflict, which counts as an open conflict.
    pub fn keeps_with(&self, s: &CaseSummary, now: i64, scheduling_conflict: bool) -> bool {
        fn eq(want: &Option<String>, have: Option<&String>) -> bool {
            want.as_ref().is_none_or(|w| have == Some(w))
        }
        eq(&self.store, Some(&s.store))
            && eq(&self.kind, Some(&s.kind))
            && eq(&self.status, s.status.as_ref())
            && eq(&self.assignee, s.assignee.as_ref())
            && eq(&self.case_no, s.case_no.as_ref())
            && self
                .has_conflict
                .is_none_or(|b| (s.open_conflicts > 0 || scheduling_conflict) == b)
            && self
                .awaiting_approval
                .is_none_or(|b| (s.awaiting_approval > 0) == b)
            && self.breached.is_none_or(|b| s.breached(now) == b)
            && self
                .due_before
                .is_none_or(|t| s.next_due().is_some_and(|d| d < t))
            && self.updated_since.is_none_or(|t| s.updated_at >= t)
            && self
                .created_from
                .is_none_or(|t| s.created_at.is_some_and(|c| c >= t))
            && self
                .created_to
                .is_none_or(|t| s.created_at.is_some_and(|c| c < t))
    }
}

/// A page of cases in case-id order, and the id to continue after. Each
/// row's `open_conflicts` includes the case's open scheduling conflicts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The cases.
    pub rows: Vec<(CaseId, CaseSummary)>,
    /// Pass as `after` for the next page; `None` on the last.
    pub next: Option<CaseId>,
}

/// A page of a deadline queue, earliest deadline first.
#[derive(Debug, Clone, PartialEq)]
pub struct DuePage {
    /// The cases with the deadline that put them in the queue.
    pub rows: Vec<(i64, CaseId, CaseSummary)>,
    /// Pass as `after` for the next page.
    pub next: Option<(i64, CaseId)>,
}

/// Every case's summary with its indexes.
#[derive(Debug, Default)]
pub struct ReadModel {
    rows: BTreeMap<CaseId, CaseSummary>,
    by_store: HashMap<String, BTreeSet<CaseId>>,
    by_assignee: HashMap<String, BTreeSet<CaseId>>,
    by_case_no: HashMap<String, BTreeSet<CaseId>>,
    conflicts: BTreeSet<CaseId>,
    approvals: BTreeSet<CaseId>,
    /// Each case's earliest open deadline.
    due: BTreeSet<(i64, CaseId)>,
    /// Active bookings per (store, technician): the calendars.
    calendar: HashMap<(String, String), BTreeSet<Placed>>,
    /// Open scheduling conflicts per (store, technician).
    tech_conflicts: HashMap<(String, String), Vec<ScheduleConflict>>,
    /// Open scheduling conflicts per case (both cases of each).
    schedule: HashMap<CaseId, Vec<ScheduleConflict>>,
    /// Missed visits per customer key.
    no_shows: HashMap<String, u32>,
}

type TechKey = (String, String);

fn unindex<K: std::hash::Hash + Eq>(map: &mut HashMap<K, BTreeSet<CaseId>>, key: &K, id: CaseId) {
    if let Some(set) = map.get_mut(key) {
        set.remove(&id);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

impl ReadModel {
    /// An empty model.
    pub fn new() -> ReadModel {
        ReadModel::default()
    }

    /// Cases held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// The cases numbered `case_no` (one, unless a device reused a number).
    pub fn ids_of_case_no(&self, case_no: &str) -> Vec<CaseId> {
        self.by_case_no
            .get(case_no)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether no case is held.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The summary of a case.
    pub fn get(&self, id: CaseId) -> Option<&CaseSummary> {
        self.rows.get(&id)
    }

    /// Puts (or replaces) a case's summary and its index entries, and
    /// derives again the scheduling conflicts of every technician whose
    /// calendar changed.
    pub fn upsert(&mut self, id: CaseId, s: CaseSummary) {
        let mut touched = self.remove(id);
        for b in &s.bookings {
            let key = (s.store.clone(), b.tech.clone());
            self.calendar
                .entry(key.clone())
                .or_default()
                .insert(b.clone());
            touched.push(key);
        }
        if let (Some(c), n) = (&s.customer, s.no_shows) {
            if n > 0 {
                *self.no_shows.entry(c.clone()).or_default() += n;
            }
        }
        self.upsert_row(id, s);
        touched.sort();
        touched.dedup();
        for key in touched {
            self.recompute(key);
        }
        self.refresh_flag(id);
    }

    /// The open scheduling conflicts a case is in.
    pub fn schedule_conflicts(&self, id: CaseId) -> &[ScheduleConflict] {
        self.schedule.get(&id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// How many visits the customer (by key) missed, across all cases.
    pub fn no_shows_of(&self, customer: &str) -> u32 {
        self.no_shows.get(customer).copied().unwrap_or(0)
    }

    /// Active bookings in `scope` (of `store` and `tech` when given) that
    /// overlap `[from, to)`, in start order, with their case's summary.
    pub fn bookings_between(
        &self,
        scope: &Scope,
        store: Option<&str>,
        tech: Option<&str>,
        from: i64,
        to: i64,
    ) -> Vec<(Placed, &CaseSummary)> {
        let store = store.or(scope.store());
        let mut out: Vec<(Placed, &CaseSummary)> = self
            .calendar
            .iter()
            .filter(|((s, t), _)| store.is_none_or(|w| w == s) && tech.is_none_or(|w| w == t))
            .flat_map(|(_, set)| set.iter())
            .filter(|p| p.start < to && from < p.end)
            .filter_map(|p| {
                let s = self.rows.get(&p.case)?;
                scope.admits(s).then(|| (p.clone(), s))
            })
            .collect();
        out.sort_by(|a, b| (a.0.start, &a.0.tech, a.0.case).cmp(&(b.0.start, &b.0.tech, b.0.case)));
        out
    }

    fn recompute(&mut self, key: TechKey) {
        let mut cases: BTreeSet<CaseId> = BTreeSet::new();
        for old in self.tech_conflicts.remove(&key).unwrap_or_default() {
            for case in [old.first.case, old.second.case] {
                if let Some(list) = self.schedule.get_mut(&case) {
                    list.retain(|c| c.id != old.id);
                    if list.is_empty() {
                        self.schedule.remove(&case);
                    }
                }
                cases.insert(case);
            }
        }
        let slots: Vec<Placed> = self
            .calendar
            .get(&key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let found = crate::rules::calendar::conflicts(&slots);
        for c in &found {
            for case in [c.first.case, c.second.case] {
                let list = self.schedule.entry(case).or_default();
                list.push(c.clone());
                list.sort();
                cases.insert(case);
            }
        }
        if !found.is_empty() {
            self.tech_conflicts.insert(key, found);
        }
        for case in cases {
            self.refresh_flag(case);
        }
    }

    /// Puts a case in the conflicts index iff it has an open workflow,
    /// money or scheduling conflict.
    fn refresh_flag(&mut self, id: CaseId) {
        let open = self.rows.get(&id).is_some_and(|s| s.open_conflicts > 0)
            || self.schedule.contains_key(&id);
        if open {
            self.conflicts.insert(id);
        } else {
            self.conflicts.remove(&id);
        }
    }

    fn upsert_row(&mut self, id: CaseId, s: CaseSummary) {
        self.by_store.entry(s.store.clone()).or_default().insert(id);
        if let Some(a) = &s.assignee {
            self.by_assignee.entry(a.clone()).or_default().insert(id);
        }
        if let Some(n) = &s.case_no {
            self.by_case_no.entry(n.clone()).or_default().insert(id);
        }
        if s.open_conflicts > 0 {
            self.conflicts.insert(id);
        }
        if s.awaiting_approval > 0 {
            self.approvals.insert(id);
        }
        if let Some(d) = s.next_due() {
            self.due.insert((d, id));
        }
        self.rows.insert(id, s);
    }

    /// Removes a case's row and index entries; returns the calendars its
    /// bookings left, whose conflicts must be derived again.
    fn remove(&mut self, id: CaseId) -> Vec<TechKey> {
        let Some(old) = self.rows.remove(&id) else {
            return Vec::new();
        };
        let mut touched = Vec::new();
        for b in &old.bookings {
            let key = (old.store.clone(), b.tech.clone());
            if let Some(set) = self.calendar.get_mut(&key) {
                set.remove(b);
                if set.is_empty() {
                    self.calendar.remove(&key);
                }
            }
            touched.push(key);
        }
        if let (Some(c), n) = (&old.customer, old.no_shows) {
            if let Some(count) = self.no_shows.get_mut(c) {
                *count = count.saturating_sub(n);
                if *count == 0 {
                    self.no_shows.remove(c);
                }
            }
        }
        unindex(&mut self.by_store, &old.store, id);
        if let Some(a) = &old.assignee {
            unindex(&mut self.by_assignee, a, id);
        }
        if let Some(n) = &old.case_no {
            unindex(&mut self.by_case_no, n, id);
        }
        self.conflicts.remove(&id);
        self.approvals.remove(&id);
        if let Some(d) = old.next_due() {
            self.due.remove(&(d, id));
        }
        touched
    }

    /// The smallest index set that holds every case `q` can return in
    /// `scope` (`None`: no index narrows it, scan every case).
    fn candidates(&self, scope: &Scope, q: &Query) -> Option<&BTreeSet<CaseId>> {
        static EMPTY: BTreeSet<CaseId> = BTreeSet::new();
        let mut sets: Vec<&BTreeSet<CaseId>> = Vec::new();
        let store = q.store.as_deref().or(scope.store());
        if let Some(s) = store {
            sets.push(self.by_store.get(s).unwrap_or(&EMPTY));
        }
        if let Some(a) = q.assignee.as_ref() {
            sets.push(self.by_assignee.get(a).unwrap_or(&EMPTY));
        }
        if let Some(n) = q.case_no.as_ref() {
            sets.push(self.by_case_no.get(n).unwrap_or(&EMPTY));
        }
        if q.has_conflict == Some(true) {
            sets.push(&self.conflicts);
        }
        if q.awaiting_approval == Some(true) {
            sets.push(&self.approvals);
        }
        sets.into_iter().min_by_key(|s| s.len())
    }

    /// Cases in `scope` passing `q` at `now`, in case-id order after
    /// `after`, at most `limit`. Pages follow case ids, which never change,
    /// so a case that changes between two pages is neither skipped nor
    /// repeated.
    pub fn query(
        &self,
        scope: &Scope,
        q: &Query,
        now: i64,
        after: Option<CaseId>,
        limit: usize,
    ) -> Page {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let ids: Box<dyn Iterator<Item = &CaseId>> = match self.candidates(scope, q) {
            Some(set) => Box::new(set.range((from, Bound::Unbounded))),
            None => Box::new(self.rows.range((from, Bound::Unbounded)).map(|(id, _)| id)),
        };
        let mut rows = Vec::new();
        let mut next = None;
        for id in ids {
            let Some(s) = self.rows.get(id) else { continue };
            if !scope.admits(s) || !q.keeps_with(s, now, self.schedule.contains_key(id)) {
                continue;
            }
            if rows.len() == limit {
                next = rows.last().map(|(id, _): &(CaseId, CaseSummary)| *id);
                break;
            }
            let mut row = s.clone();
            // A page's rows count scheduling conflicts with the others:
            // what head office reads is one number of open conflicts.
            let sched = self.schedule_conflicts(*id).len();
            row.open_conflicts = row
                .open_conflicts
                .saturating_add(u32::try_from(sched).unwrap_or(u32::MAX));
            rows.push((*id, row));
        }
        Page { rows, next }
    }

    /// Cases in `scope` whose earliest open deadline falls in
    /// `[from, to)`, earliest first, after the cursor `after`.
    pub fn due_between(
        &self,
        scope: &Scope,
        from: i64,
        to: i64,
        after: Option<(i64, CaseId)>,
        limit: usize,
    ) -> DuePage {
        let start = match after {
            Some(c) => Bound::Excluded(c),
            None => Bound::Included((from, CaseId::from_bytes([0; 16]))),
        };
        let mut rows = Vec::new();
        let mut next = None;
        for (due, id) in self.due.range((start, Bound::Unbounded)) {
            if *due >= to {
                break;
            }
            let Some(s) = self.rows.get(id) else { continue };
            if !scope.admits(s) {
                continue;
            }
            if rows.len() == limit {
                next = rows
                    .last()
                    .map(|(d, i, _): &(i64, CaseId, CaseSummary)| (*d, *i));
                break;
            }
            rows.push((*due, *id, s.clone()));
        }
        DuePage { rows, next }
    }

    /// Every case in `scope` passing `q`, for metrics (no copies).
    pub fn scan<'a>(
        &'a self,
        scope: &'a Scope,
        q: &'a Query,
        now: i64,
    ) -> impl Iterator<Item = (CaseId, &'a CaseSummary)> + 'a {
        let ids: Box<dyn Iterator<Item = &CaseId>> = match self.candidates(scope, q) {
            Some(set) => Box::new(set.iter()),
            None => Box::new(self.rows.keys()),
        };
        ids.filter_map(move |id| {
            let s = self.rows.get(id)?;
            (scope.admits(s) && q.keeps_with(s, now, self.schedule.contains_key(id)))
                .then_some((*id, s))
        })
    }

    /// Summaries derived under an older policy or schema than given: the
    /// cases to derive again.
    pub fn stale(&self, policy_version: u32, schema: u32) -> Vec<CaseId> {
        self.rows
            .iter()
            .filter(|(_, s)| s.policy_version != policy_version || s.schema != schema)
            .map(|(id, _)| *id)
            .collect()
    }
}
