//! The documents a replica keeps in memory, each behind its own lock, so
//! edits of different cases proceed in parallel.
//!
//! Loaded documents are only a cache of what storage holds: every change
//! is applied to storage before anything reports it, and a document whose
//! write failed is dropped and reloaded. Two rules keep the cache right
//! under concurrency:
//!
//! - one case, one document: a slot is dropped from the map only when no
//!   thread holds it (see [`LoadedDocs::slot`]), so two threads never edit
//!   two copies of one case (the second copy would reuse the first's
//!   Automerge sequence numbers);
//! - a thread holds at most one slot's lock at a time and never takes a
//!   slot's lock while holding the map's, so no two threads can wait for
//!   each other.

use crate::ids::CaseId;
use automerge::Automerge;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Most documents a replica keeps loaded: a tablet that downloaded 10,000
/// cases must not keep them all in memory (a loaded case takes about
/// 60 KiB).
pub(crate) const MAX_LOADED: usize = 1024;

/// A loaded document and what the replica knows of its marks in storage.
pub(crate) struct Held {
    /// The document, with this process's actor.
    pub(crate) doc: Automerge,
    /// Whether storage already holds this case's index entry and dirty
    /// mark (applied by an earlier local edit of this process), so the
    /// next edit need neither read nor rewrite them.
    pub(crate) marked: bool,
}

impl Held {
    /// A document whose marks are not known yet.
    pub(crate) fn new(doc: Automerge) -> Self {
        Held { doc, marked: false }
    }
}

/// One case's place in the cache: empty until loaded (or after a failed
/// write dropped the document).
pub(crate) type Slot = Arc<Mutex<Option<Held>>>;

/// The loaded documents of a replica.
#[derive(Default)]
pub(crate) struct LoadedDocs {
    slots: Mutex<HashMap<CaseId, Slot>>,
}

impl LoadedDocs {
    fn map(&self) -> MutexGuard<'_, HashMap<CaseId, Slot>> {
        // The map's operations (get, insert, retain) do not panic midway in
        // a way that leaves it inconsistent: a poisoned map is still right.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The slot of `case`, created empty if the case is not loaded. When
    /// the cache is full, every slot no other thread holds is dropped
    /// first (they reload from storage on demand).
    pub(crate) fn slot(&self, case: CaseId) -> Slot {
        let mut map = self.map();
        if let Some(s) = map.get(&case) {
            return s.clone();
        }
        if map.len() >= MAX_LOADED {
            // A slot is cloned only under the map's lock, which we hold: a
            // count of one means no thread is using it or about to.
            map.retain(|_, s| Arc::strong_count(s) > 1);
        }
        let s = Slot::default();
        map.insert(case, s.clone());
        s
    }

    /// Forgets `case` (its document reloads from storage on demand).
    pub(crate) fn forget(&self, case: CaseId) {
        self.map().remove(&case);
    }

    /// Forgets every document no thread is using.
    pub(crate) fn clear(&self) {
        self.map().retain(|_, s| Arc::strong_count(s) > 1);
    }
}

/// Locks a slot. A thread that panicked while holding it may have left
/// its document half-edited, so the document is dropped (and reloaded
/// from storage, which holds only whole batches).
pub(crate) fn lock(slot: &Slot) -> MutexGuard<'_, Option<Held>> {
    match slot.lock() {
        Ok(g) => g,
        Err(poisoned) => {
            slot.clear_poison();
            let mut g = poisoned.into_inner();
            *g = None;
            g
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_keeps_the_slots_in_use() {
        let docs = LoadedDocs::default();
        let used = docs.slot(CaseId::from_bytes([0; 16]));
        *lock(&used) = Some(Held::new(Automerge::new()));
        for i in 1..=MAX_LOADED as u32 + 5 {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&i.to_be_bytes());
            docs.slot(CaseId::from_bytes(b));
        }
        let again = docs.slot(CaseId::from_bytes([0; 16]));
        assert!(Arc::ptr_eq(&used, &again), "a slot in use is never dropped");
        assert!(docs.map().len() < MAX_LOADED);
    }

    #[test]
    fn a_poisoned_slot_is_emptied() {
        let docs = LoadedDocs::default();
        let s = docs.slot(CaseId::from_bytes([1; 16]));
        *lock(&s) = Some(Held::new(Automerge::new()));
        let s2 = s.clone();
        let _ = std::thread::spawn(move || {
            let _g = lock(&s2);
            panic!("while editing");
        })
        .join();
        assert!(lock(&s).is_none());
        assert!(lock(&s).is_none(), "and the lock works again");
    }
}
