//! An in-memory [`Storage`] that models durability, for tests and the simulation.

use super::{Batch, BatchOp, Storage, StorageError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
struct Inner {
    /// What readers see: every applied batch.
    visible: BTreeMap<Vec<u8>, Vec<u8>>,
    /// What survives a crash: every batch applied before the last flush.
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Batches applied since the last flush, oldest first.
    unflushed: Vec<Batch>,
}

/// A deterministic in-memory store. Clones share the same data, like two
/// handles to one database.
///
/// [`MemoryStorage::crash`] simulates `kill -9`: batches applied after the
/// last flush may be lost (a prefix of them may survive, as with a real
/// disk), but a batch never survives half-applied.
#[derive(Clone, Default)]
pub struct MemoryStorage {
    inner: Arc<Mutex<Inner>>,
}

fn write(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, batch: &Batch) {
    for op in batch.ops() {
        match op {
            BatchOp::Put(k, v) => {
                map.insert(k.clone(), v.clone());
            }
            BatchOp::Delete(k) => {
                map.remove(k);
            }
        }
    }
}

/// Applies `batch` if its expectations hold against what readers see.
fn apply_checked(inner: &mut Inner, batch: Batch) -> Result<(), StorageError> {
    if let Some(unmet) = batch.unmet(|k| Ok(inner.visible.get(k).cloned()))? {
        return Err(StorageError::conflict(&unmet.key));
    }
    write(&mut inner.visible, &batch);
    inner.unflushed.push(batch);
    Ok(())
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStorage::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a test thread panicked while holding it; the
        // data is still consistent because every mutation is a single call.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Simulates a crash: keeps the durable state plus the first
    /// `surviving_unflushed` unflushed batches, and drops the rest.
    pub fn crash(&self, surviving_unflushed: usize) {
        let mut inner = self.lock();
        let unflushed = std::mem::take(&mut inner.unflushed);
        let mut state = inner.durable.clone();
        for batch in unflushed.iter().take(surviving_unflushed) {
            write(&mut state, batch);
        }
        inner.durable = state.clone();
        inner.visible = state;
    }

    /// Number of batches applied since the last flush.
    pub fn unflushed_batches(&self) -> usize {
        self.lock().unflushed.len()
    }

    /// Number of keys currently visible.
    pub fn len(&self) -> usize {
        self.lock().visible.len()
    }

    /// Whether no key is visible.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Storage for MemoryStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().visible.get(key).cloned())
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<super::Entries, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self
            .lock()
            .visible
            .range(start.to_vec()..end.to_vec())
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(&self, batch: Batch) -> Result<(), StorageError> {
        let mut inner = self.lock();
        apply_checked(&mut inner, batch)
    }

    fn apply_sequenced(
        &self,
        counter: &[u8],
        build: &mut dyn FnMut(u64) -> Result<Batch, StorageError>,
    ) -> Result<u64, StorageError> {
        // One lock over reading the counter, building and writing: the
        // sequence is serialized and each number visible before the next.
        let mut inner = self.lock();
        let n = super::counter_value(counter, inner.visible.get(counter).map(Vec::as_slice))? + 1;
        let mut batch = build(n)?;
        batch.put(counter, n.to_be_bytes());
        apply_checked(&mut inner, batch)?;
        Ok(n)
    }

    fn flush(&self) -> Result<(), StorageError> {
        let mut inner = self.lock();
        let unflushed = std::mem::take(&mut inner.unflushed);
        for batch in &unflushed {
            write(&mut inner.durable, batch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u8),
        Delete(u8),
        Flush,
        Crash(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..16, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
            2 => (0u8..16).prop_map(Op::Delete),
            1 => Just(Op::Flush),
            1 => (0usize..3).prop_map(Op::Crash),
        ]
    }

    proptest! {
        // The store must behave like a model map whose flushed state is what
        // survives a crash (plus the surviving prefix of unflushed batches).
        #[test]
        fn matches_model_across_crashes(ops in proptest::collection::vec(op(), 1..80)) {
            let store = MemoryStorage::new();
            let mut visible = BTreeMap::new();
            let mut durable = BTreeMap::new();
            let mut pending: Vec<(u8, Option<u8>)> = Vec::new();
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        let mut b = Batch::new();
                        b.put(vec![k], vec![v]);
                        store.apply(b).unwrap();
                        visible.insert(k, v);
                        pending.push((k, Some(v)));
                    }
                    Op::Delete(k) => {
                        let mut b = Batch::new();
                        b.delete(vec![k]);
                        store.apply(b).unwrap();
                        visible.remove(&k);
                        pending.push((k, None));
                    }
                    Op::Flush => {
                        store.flush().unwrap();
                        for (k, v) in pending.drain(..) {
                            match v { Some(v) => { durable.insert(k, v); } None => { durable.remove(&k); } }
                        }
                    }
                    Op::Crash(n) => {
                        store.crash(n);
                        for (k, v) in pending.drain(..).take(n) {
                            match v { Some(v) => { durable.insert(k, v); } None => { durable.remove(&k); } }
                        }
                        visible = durable.clone();
                    }
                }
                let all = store.scan_prefix(&[]).unwrap();
                let model: Vec<_> = visible.iter().map(|(k, v)| (vec![*k], vec![*v])).collect();
                prop_assert_eq!(all, model);
            }
        }
    }
}
