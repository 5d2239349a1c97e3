//! Group commit: many writers, one flush.
//!
//! A flush costs about the same whether it covers one write or a hundred.
//! Writers apply their batches, take a ticket, and wait: whoever finds no
//! flush covering its ticket flushes for everyone who wrote before it
//! started, so concurrent writers share flushes and each still returns only
//! once its own write is durable.

use super::{Storage, StorageError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Shares flushes of one storage among threads.
pub struct GroupCommit<S: Storage> {
    storage: S,
    /// Tickets handed out; each after its write was applied.
    issued: AtomicU64,
    /// Highest ticket known durable. Holding the lock means flushing.
    flushed: Mutex<u64>,
}

impl<S: Storage> GroupCommit<S> {
    /// Group commit over `storage`.
    pub fn new(storage: S) -> Self {
        GroupCommit {
            storage,
            issued: AtomicU64::new(0),
            flushed: Mutex::new(0),
        }
    }

    /// A ticket for a write that has already been applied.
    pub fn ticket(&self) -> u64 {
        self.issued.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Returns once the write behind `ticket` is durable, flushing if no
    /// finished flush covers it.
    pub fn wait(&self, ticket: u64) -> Result<(), StorageError> {
        // A writer that panicked while flushing leaves the counter as it
        // was: at worst the next waiter flushes once more.
        let mut flushed = self.flushed.lock().unwrap_or_else(|e| e.into_inner());
        if *flushed >= ticket {
            return Ok(());
        }
        // Every ticket up to `upto` was taken after its write was applied,
        // so the flush below covers them all.
        let upto = self.issued.load(Ordering::SeqCst);
        self.storage.flush()?;
        *flushed = upto;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Batch, MemoryStorage};
    use std::sync::Arc;

    #[test]
    fn every_waiter_returns_durable() {
        let store = MemoryStorage::new();
        let group = Arc::new(GroupCommit::new(store.clone()));
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let (store, group) = (store.clone(), group.clone());
                std::thread::spawn(move || {
                    for i in 0..50u8 {
                        let mut b = Batch::new();
                        b.put(vec![t, i], vec![1]);
                        store.apply(b).unwrap();
                        group.wait(group.ticket()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // A crash now keeps only what was flushed: everything, since every
        // writer returned.
        store.crash(0);
        assert_eq!(store.scan_prefix(&[]).unwrap().len(), 8 * 50);
    }
}
