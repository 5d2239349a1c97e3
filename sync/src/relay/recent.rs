//! The latest accepted changes of recently changed cases, as stored, so a
//! live device known to hold a case up to some heads is sent exactly the
//! changes after them ([`crate::protocol::Frame::Changes`]) instead of an
//! Automerge sync message generated for it alone. Generating that message
//! (and receiving the device's answer to it) was most of the relay's cost
//! of a delivery; copying stored bytes costs next to nothing.
//!
//! Only a shortcut: when the chain of recorded commits does not start at
//! the heads the device is known to hold, or does not end at the heads
//! being announced, nothing is pushed and the sync protocol does the work.

use automerge::ChangeHash;
use std::collections::VecDeque;
use std::sync::Arc;

use crate::ids::CaseId;

/// Commits remembered per case: a device further behind than this syncs.
const COMMITS_PER_CASE: usize = 8;

/// A commit larger than this (a big offline upload, a case arriving whole)
/// is not remembered: devices sync it the usual way.
const MAX_COMMIT_BYTES: usize = 64 * 1024;

/// Cases remembered at most.
const CASES: usize = 4096;

/// Bytes of change remembered at most, over every case, unless the shell
/// sets another budget ([`Recent::set_budget`]).
const BUDGET_BYTES: usize = 8 << 20;

/// One accepted upload: the case's heads before and after it and the
/// changes it added.
struct Commit {
    before: Vec<ChangeHash>,
    after: Vec<ChangeHash>,
    changes: Arc<Vec<Vec<u8>>>,
    bytes: usize,
}

/// Recent commits per case, least recently changed evicted first.
pub(crate) struct Recent {
    cases: lru::LruCache<CaseId, VecDeque<Commit>>,
    bytes: usize,
    budget: usize,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            // Unbounded: `record` evicts itself, so every eviction is
            // subtracted from `bytes` (an evicting insert would not say
            // what it dropped).
            cases: lru::LruCache::unbounded(),
            bytes: 0,
            budget: BUDGET_BYTES,
        }
    }
}

impl Recent {
    /// Remembers at most `bytes` of change from now on (what a small
    /// relay, such as a store relay, can spare).
    pub(crate) fn set_budget(&mut self, bytes: usize) {
        self.budget = bytes;
    }
}

fn same_set(a: &[ChangeHash], b: &[ChangeHash]) -> bool {
    a.len() == b.len() && a.iter().all(|h| b.contains(h))
}

impl Recent {
    /// Records a commit of `case` from heads `before` to heads `after`.
    /// Every commit of every case must pass through here (in commit order),
    /// or the chains could skip one: a commit not kept forgets the case.
    pub(crate) fn record(
        &mut self,
        case: CaseId,
        before: Vec<ChangeHash>,
        after: Vec<ChangeHash>,
        changes: &[automerge::Change],
    ) {
        let bytes: usize = changes.iter().map(|c| c.raw_bytes().len()).sum();
        if bytes > MAX_COMMIT_BYTES {
            self.forget(case);
            return;
        }
        let commit = Commit {
            before,
            after,
            changes: Arc::new(changes.iter().map(|c| c.raw_bytes().to_vec()).collect()),
            bytes,
        };
        self.bytes += bytes;
        let chain = self.cases.get_or_insert_mut(case, VecDeque::new);
        // A chain must be contiguous: a commit that does not continue it
        // (one was dropped) starts a new one.
        if chain
            .back()
            .is_some_and(|last| !same_set(&last.after, &commit.before))
        {
            let dropped: usize = chain.iter().map(|c| c.bytes).sum();
            chain.clear();
            self.bytes -= dropped;
        }
        chain.push_back(commit);
        if chain.len() > COMMITS_PER_CASE {
            if let Some(old) = chain.pop_front() {
                self.bytes -= old.bytes;
            }
        }
        while self.bytes > self.budget {
            match self.cases.pop_lru() {
                Some((_, chain)) => self.bytes -= chain.iter().map(|c| c.bytes).sum::<usize>(),
                None => break,
            }
        }
        if self.cases.len() > CASES {
            if let Some((_, chain)) = self.cases.pop_lru() {
                self.bytes -= chain.iter().map(|c| c.bytes).sum::<usize>();
            }
        }
    }

    /// Forgets what is remembered of `case`.
    pub(crate) fn forget(&mut self, case: CaseId) {
        if let Some(chain) = self.cases.pop(&case) {
            self.bytes -= chain.iter().map(|c| c.bytes).sum::<usize>();
        }
    }

    /// The changes taking `case` from exactly `held` to exactly `to`, in
    /// commit order (so causal order), or `None` when the remembered
    /// commits do not cover that span.
    pub(crate) fn between(
        &self,
        case: CaseId,
        held: &[ChangeHash],
        to: &[ChangeHash],
    ) -> Option<Vec<Vec<u8>>> {
        let chain = self.cases.peek(&case)?;
        let last = chain.back()?;
        if !same_set(&last.after, to) {
            return None;
        }
        let start = chain.iter().position(|c| same_set(&c.before, held))?;
        Some(
            chain
                .iter()
                .skip(start)
                .flat_map(|c| c.changes.iter().cloned())
                .collect(),
        )
    }

    /// Bytes of change remembered.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    fn case() -> CaseId {
        CaseId::from_bytes([7; 16])
    }

    /// A document and the heads after each of `n` edits, with each edit's
    /// changes.
    fn history(n: usize) -> (Vec<Vec<ChangeHash>>, Vec<Vec<automerge::Change>>) {
        let mut doc = AutoCommit::new();
        let mut heads = vec![doc.get_heads()];
        let mut changes = Vec::new();
        for i in 0..n {
            let before = doc.get_heads();
            doc.put(ROOT, "n", i as i64).unwrap();
            doc.commit();
            changes.push(doc.get_changes(&before));
            heads.push(doc.get_heads());
        }
        (heads, changes)
    }

    #[test]
    fn the_span_from_held_heads_to_the_announced_ones_is_every_change_between() {
        let (heads, changes) = history(3);
        let mut r = Recent::default();
        for i in 0..3 {
            r.record(case(), heads[i].clone(), heads[i + 1].clone(), &changes[i]);
        }
        let all = r.between(case(), &heads[0], &heads[3]).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], changes[0][0].raw_bytes());
        assert_eq!(all[2], changes[2][0].raw_bytes());
        assert_eq!(r.between(case(), &heads[2], &heads[3]).unwrap().len(), 1);
        // Not ending at the announced heads, or not starting at what the
        // device holds: nothing to push.
        assert!(r.between(case(), &heads[0], &heads[2]).is_none());
        assert!(r.between(case(), &heads[3], &heads[3]).is_none());
    }

    #[test]
    fn a_gap_in_the_chain_is_never_bridged() {
        let (heads, changes) = history(3);
        let mut r = Recent::default();
        r.record(case(), heads[0].clone(), heads[1].clone(), &changes[0]);
        // The second commit is missing: the third starts a new chain.
        r.record(case(), heads[2].clone(), heads[3].clone(), &changes[2]);
        assert!(r.between(case(), &heads[0], &heads[3]).is_none());
        assert_eq!(r.between(case(), &heads[2], &heads[3]).unwrap().len(), 1);
        r.forget(case());
        assert!(r.between(case(), &heads[2], &heads[3]).is_none());
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn cases_past_the_limit_evict_the_oldest_and_their_bytes() {
        let (heads, changes) = history(1);
        let size = changes[0][0].raw_bytes().len();
        let mut r = Recent::default();
        for i in 0..CASES + 10 {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            r.record(
                CaseId::from_bytes(id),
                heads[0].clone(),
                heads[1].clone(),
                &changes[0],
            );
        }
        assert_eq!(r.bytes(), CASES * size);
        let mut last = [0u8; 16];
        last[..8].copy_from_slice(&((CASES + 9) as u64).to_be_bytes());
        assert!(r
            .between(CaseId::from_bytes(last), &heads[0], &heads[1])
            .is_some());
        assert!(r
            .between(CaseId::from_bytes([0; 16]), &heads[0], &heads[1])
            .is_none());
    }

    #[test]
    fn old_commits_fall_off_and_the_bytes_are_counted() {
        let (heads, changes) = history(COMMITS_PER_CASE + 2);
        let mut r = Recent::default();
        for i in 0..COMMITS_PER_CASE + 2 {
            r.record(case(), heads[i].clone(), heads[i + 1].clone(), &changes[i]);
        }
        let last = &heads[COMMITS_PER_CASE + 2];
        assert!(r.between(case(), &heads[0], last).is_none());
        assert_eq!(
            r.between(case(), &heads[2], last).unwrap().len(),
            COMMITS_PER_CASE
        );
        let kept: usize = changes[2..]
            .iter()
            .flatten()
            .map(|c| c.raw_bytes().len())
            .sum();
        assert_eq!(r.bytes(), kept);
    }
}
