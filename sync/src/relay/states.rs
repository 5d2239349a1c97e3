//! One connection's Automerge sync states, bounded in memory.
//!
//! A head-office device that syncs every case of a chain would otherwise
//! keep a full sync state per case for as long as it stays connected:
//! about 1 KiB each (the hashes sent, the peer's heads and bloom filter),
//! 90 MiB of the relay's heap for 100,000 cases in the heap profile of
//! BENCHMARKS.md. The most recently used states stay whole; older ones are
//! kept encoded, which keeps only the heads both sides share: the form
//! Automerge gives a sync state between connections. Resuming from it
//! costs at most a round trip more for that case, never a change skipped:
//! the next message is generated as on a reconnection.

use automerge::sync::State;
use std::collections::HashMap;
use std::num::NonZeroUsize;

use crate::CaseId;

/// Whole sync states kept per connection by default.
pub const DEFAULT_HOT_STATES: usize = 1024;

/// A connection's sync states: the most recent whole, the rest encoded.
pub struct SyncStates {
    hot: lru::LruCache<CaseId, State>,
    cold: HashMap<CaseId, Vec<u8>>,
}

impl SyncStates {
    /// Keeps at most `hot` states whole.
    pub fn new(hot: NonZeroUsize) -> SyncStates {
        SyncStates {
            hot: lru::LruCache::new(hot),
            cold: HashMap::new(),
        }
    }

    /// Whether the connection has synced `case`.
    pub fn contains(&self, case: &CaseId) -> bool {
        self.hot.contains(case) || self.cold.contains_key(case)
    }

    /// The whole state of `case`, if it is kept whole; an encoded one is
    /// not decoded (callers use this for hints only).
    pub fn peek(&self, case: &CaseId) -> Option<&State> {
        self.hot.peek(case)
    }

    /// The state of `case`, decoded again if it was kept encoded.
    pub fn get_mut(&mut self, case: &CaseId) -> Option<&mut State> {
        if !self.hot.contains(case) {
            let bytes = self.cold.remove(case)?;
            // Encoded by `State::encode` below; should it not decode, the
            // case syncs as if never synced on this connection, which is
            // correct, only slower.
            let state = State::decode(&bytes).unwrap_or_default();
            self.put(*case, state);
        }
        self.hot.get_mut(case)
    }

    /// The state of `case`, made by `make` when the connection has none.
    pub fn get_or_try_insert<E>(
        &mut self,
        case: CaseId,
        make: impl FnOnce() -> Result<State, E>,
    ) -> Result<&mut State, E> {
        if !self.contains(&case) {
            self.put(case, make()?);
        }
        match self.get_mut(&case) {
            Some(state) => Ok(state),
            // `put` above or `get_mut` keeps the newest state whole.
            None => unreachable!("a state just put is kept whole"),
        }
    }

    /// Sets the state of `case`.
    pub fn insert(&mut self, case: CaseId, state: State) {
        self.cold.remove(&case);
        self.put(case, state);
    }

    /// Forgets `case`.
    pub fn remove(&mut self, case: &CaseId) {
        self.hot.pop(case);
        self.cold.remove(case);
    }

    /// Number of cases with a state.
    pub fn len(&self) -> usize {
        self.hot.len() + self.cold.len()
    }

    /// Whether no case has a state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every state, encoded, for storing when the connection ends.
    pub fn encoded(&self) -> impl Iterator<Item = (CaseId, Vec<u8>)> + '_ {
        self.hot
            .iter()
            .map(|(c, s)| (*c, s.encode()))
            .chain(self.cold.iter().map(|(c, b)| (*c, b.clone())))
    }

    fn put(&mut self, case: CaseId, state: State) {
        if let Some((old, evicted)) = self.hot.push(case, state) {
            if old != case {
                self.cold.insert(old, evicted.encode());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::sync::SyncDoc;
    use automerge::{transaction::Transactable, AutoCommit, ReadDoc, ROOT};

    fn case(i: u8) -> CaseId {
        CaseId::from_random_bytes([i; 16])
    }

    #[test]
    fn only_the_most_recent_states_stay_whole() {
        let mut s = SyncStates::new(NonZeroUsize::new(2).expect("nonzero"));
        for i in 0..5 {
            s.insert(case(i), State::new());
        }
        assert_eq!(s.len(), 5);
        assert!((0..5).all(|i| s.contains(&case(i))));
        assert!(s.peek(&case(0)).is_none(), "the oldest is kept encoded");
        assert!(s.peek(&case(4)).is_some());
        assert!(s.get_mut(&case(0)).is_some(), "an encoded state comes back");
        assert!(s.peek(&case(0)).is_some());
        assert_eq!(s.len(), 5, "decoding one evicts another, losing none");
        s.remove(&case(0));
        s.remove(&case(1));
        assert_eq!(s.len(), 3);
        assert!(!s.contains(&case(0)) && !s.contains(&case(1)));
        assert_eq!(s.encoded().count(), 3);
    }

    /// Two documents kept in sync through a relay-side state that is
    /// pushed out to its encoded form after every message still converge.
    #[test]
    fn a_state_kept_encoded_between_messages_still_syncs() {
        let mut relay_doc = AutoCommit::new();
        relay_doc.put(ROOT, "a", 1).expect("put");
        let mut device = AutoCommit::new();
        device.put(ROOT, "b", 2).expect("put");
        let mut states = SyncStates::new(NonZeroUsize::new(1).expect("nonzero"));
        let mut device_state = State::new();
        for _ in 0..10 {
            if let Some(m) = device.sync().generate_sync_message(&mut device_state) {
                let st = states.get_or_try_insert(case(1), || Ok::<_, ()>(State::new()));
                let st = st.expect("infallible");
                relay_doc
                    .sync()
                    .receive_sync_message(st, m)
                    .expect("receive");
            }
            let reply = states
                .get_mut(&case(1))
                .and_then(|st| relay_doc.sync().generate_sync_message(st));
            // Another case's state pushes this one out to its encoded form.
            states.insert(case(2), State::new());
            if let Some(m) = reply {
                device
                    .sync()
                    .receive_sync_message(&mut device_state, m)
                    .expect("receive");
            }
        }
        assert_eq!(relay_doc.get_heads(), device.get_heads());
        assert!(device.get(ROOT, "a").expect("read").is_some());
        assert!(relay_doc.get(ROOT, "b").expect("read").is_some());
    }
}
