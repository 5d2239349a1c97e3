//! The sled-backed [`Storage`]: the only code in this crate that touches the disk.

use super::{Batch, BatchOp, Storage, StorageError};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A sled database with a single tree.
///
/// One tree rather than one per concern because sled batches are atomic only
/// within a tree, and our writes (a change, its index entries and the sync
/// cursor) must land together. Concerns are separated by key prefix instead
/// (see [`super::keys`]).
#[derive(Clone)]
pub struct SledStorage {
    db: sled::Db,
    /// Held by [`Storage::apply_sequenced`] from reading its counter to
    /// writing it: a sled database is open in one process only, so a lock
    /// in the process serializes every sequenced write.
    sequence: Arc<Mutex<()>>,
}

fn backend(op: &'static str) -> impl Fn(sled::Error) -> StorageError {
    move |e| StorageError::Backend {
        op,
        message: e.to_string(),
    }
}

impl SledStorage {
    /// Opens (or creates) the database in `dir`. Fails with a clear message
    /// when another process holds it open.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        // sled's own default page cache.
        Self::open_with_cache(dir, 1 << 30)
    }

    /// Like [`SledStorage::open`], with sled's page cache limited to
    /// `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, StorageError> {
        let locked = |e: &sled::Error| {
            matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("lock"))
        };
        let mut attempts = 0;
        loop {
            let opened = sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                .mode(sled::Mode::HighThroughput)
                .open();
            match opened {
                Ok(db) => {
                    return Ok(SledStorage {
                        db,
                        sequence: Arc::default(),
                    })
                }
                // sled's background flusher keeps a just-dropped database
                // (and its file lock) alive for a moment: wait a little
                // before telling the user someone else holds it.
                Err(e) if locked(&e) && attempts < 20 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) if locked(&e) => {
                    let message = format!(
                        "{} is in use by another process (is `sync --watch` or the relay running?)",
                        dir.display()
                    );
                    return Err(StorageError::Backend {
                        op: "open",
                        message,
                    });
                }
                Err(other) => {
                    return Err(StorageError::Backend {
                        op: "open",
                        message: format!("{}: {other}", dir.display()),
                    })
                }
            }
        }
    }

    /// Bytes on disk as sled reports them.
    pub fn size_on_disk(&self) -> Result<u64, StorageError> {
        self.db.size_on_disk().map_err(backend("size"))
    }
}

impl SledStorage {
    /// Applies a batch with expectations in one sled transaction, which
    /// checks them and writes atomically.
    fn apply_checked(&self, batch: &Batch) -> Result<(), StorageError> {
        let done = self.db.transaction(|tx| {
            for e in batch.expectations() {
                let now = tx.get(&e.key)?;
                if now.as_deref() != e.value.as_deref() {
                    return Err(ConflictableTransactionError::Abort(e.key.clone()));
                }
            }
            for op in batch.ops() {
                match op {
                    BatchOp::Put(k, v) => {
                        tx.insert(k.as_slice(), v.as_slice())?;
                    }
                    BatchOp::Delete(k) => {
                        tx.remove(k.as_slice())?;
                    }
                }
            }
            Ok(())
        });
        match done {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(key)) => Err(StorageError::conflict(&key)),
            Err(TransactionError::Storage(e)) => Err(backend("apply")(e)),
        }
    }
}

impl Storage for SledStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .db
            .get(key)
            .map_err(backend("get"))?
            .map(|v| v.to_vec()))
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<super::Entries, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in self.db.range(start..end).take(limit) {
            let (k, v) = item.map_err(backend("scan"))?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn apply(&self, batch: Batch) -> Result<(), StorageError> {
        if !batch.expectations().is_empty() {
            return self.apply_checked(&batch);
        }
        let mut ops = batch.into_ops();
        // One write is atomic by itself, and a sled batch is costly: it
        // takes a process-wide lock that waits for any flush in progress,
        // and it writes out sled's IO buffer (twice) before it returns. A
        // device's typical edit, one change of a case already marked, is
        // one write, so it goes in as a plain insert and is made durable
        // by the next flush like any other.
        if ops.len() <= 1 {
            return match ops.pop() {
                None => Ok(()),
                Some(BatchOp::Put(k, v)) => {
                    self.db.insert(k, v).map(|_| ()).map_err(backend("apply"))
                }
                Some(BatchOp::Delete(k)) => self.db.remove(k).map(|_| ()).map_err(backend("apply")),
            };
        }
        let mut b = sled::Batch::default();
        for op in ops {
            match op {
                BatchOp::Put(k, v) => b.insert(k, v),
                BatchOp::Delete(k) => b.remove(k),
            }
        }
        self.db.apply_batch(b).map_err(backend("apply"))
    }

    fn apply_sequenced(
        &self,
        counter: &[u8],
        build: &mut dyn FnMut(u64) -> Result<Batch, StorageError>,
    ) -> Result<u64, StorageError> {
        // A panic elsewhere while holding the lock left nothing half-done:
        // the lock guards no data, only the order.
        let _order = self.sequence.lock().unwrap_or_else(|p| p.into_inner());
        let stored = self.db.get(counter).map_err(backend("apply"))?;
        let n = super::counter_value(counter, stored.as_deref())? + 1;
        let mut batch = build(n)?;
        batch.put(counter, n.to_be_bytes());
        self.apply(batch)?;
        Ok(n)
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db.flush().map(|_| ()).map_err(backend("flush"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStorage::open(dir.path()).unwrap();
            let mut b = Batch::new();
            b.put(b"a".to_vec(), b"1".to_vec());
            b.put(b"b".to_vec(), b"2".to_vec());
            s.apply(b).unwrap();
            s.flush().unwrap();
        }
        let s = SledStorage::open(dir.path()).unwrap();
        assert_eq!(s.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.scan_prefix(b"").unwrap().len(), 2);
    }

    #[test]
    fn batches_of_one_write_survive_reopen_after_flush() {
        // One-write batches take sled's single-key path (see `apply`).
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStorage::open(dir.path()).unwrap();
            let mut b = Batch::new();
            b.put(b"a".to_vec(), b"1".to_vec());
            b.put(b"b".to_vec(), b"2".to_vec());
            s.apply(b).unwrap();
            let mut one = Batch::new();
            one.put(b"c".to_vec(), b"3".to_vec());
            s.apply(one).unwrap();
            let mut gone = Batch::new();
            gone.delete(b"a".to_vec());
            s.apply(gone).unwrap();
            s.apply(Batch::new()).unwrap();
            s.flush().unwrap();
        }
        let s = SledStorage::open(dir.path()).unwrap();
        assert_eq!(s.get(b"a").unwrap(), None);
        assert_eq!(s.get(b"c").unwrap(), Some(b"3".to_vec()));
        assert_eq!(s.scan_prefix(b"").unwrap().len(), 2);
    }
}
