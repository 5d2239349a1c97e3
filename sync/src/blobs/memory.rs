//! Blobs in memory, for tests and the simulation.

use super::{hash_of, BlobError, BlobHash, BlobStore, Held};
use std::collections::HashMap;
use std::sync::Mutex;

/// A [`BlobStore`] in memory. [`MemoryBlobs::crash`] models a process
/// killed mid-upload: complete blobs survive, partials keep only what
/// [`MemoryBlobs::keep_partial`] says (by default all, like a killed
/// process whose writes reached the page cache).
#[derive(Default)]
pub struct MemoryBlobs {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    partial: HashMap<BlobHash, Vec<u8>>,
    complete: HashMap<BlobHash, Vec<u8>>,
}

impl MemoryBlobs {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind, still
        // consistent; carry on with them.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cuts every partial blob to `keep(len)` bytes, as a crash that lost
    /// the tail of unsynced writes would.
    pub fn crash(&self, keep: impl Fn(u64) -> u64) {
        let mut g = self.lock();
        for bytes in g.partial.values_mut() {
            let k = keep(bytes.len() as u64).min(bytes.len() as u64);
            bytes.truncate(k as usize);
        }
    }

    /// Number of complete blobs.
    pub fn complete_count(&self) -> usize {
        self.lock().complete.len()
    }
}

impl BlobStore for MemoryBlobs {
    fn held(&self, hash: &BlobHash) -> Result<Held, BlobError> {
        let g = self.lock();
        Ok(if let Some(b) = g.complete.get(hash) {
            Held::Complete(b.len() as u64)
        } else if let Some(b) = g.partial.get(hash) {
            Held::Partial(b.len() as u64)
        } else {
            Held::Nothing
        })
    }

    fn append(&self, hash: &BlobHash, offset: u64, bytes: &[u8]) -> Result<u64, BlobError> {
        let mut g = self.lock();
        if let Some(b) = g.complete.get(hash) {
            return Err(BlobError::Offset {
                offset,
                held: b.len() as u64,
            });
        }
        let part = g.partial.entry(*hash).or_default();
        if part.len() as u64 != offset {
            return Err(BlobError::Offset {
                offset,
                held: part.len() as u64,
            });
        }
        part.extend_from_slice(bytes);
        Ok(part.len() as u64)
    }

    fn seal(&self, hash: &BlobHash, size: u64) -> Result<(), BlobError> {
        let mut g = self.lock();
        if g.complete.contains_key(hash) {
            return Ok(());
        }
        let bytes = g.partial.remove(hash).unwrap_or_default();
        if bytes.len() as u64 != size {
            return Err(BlobError::Mismatch(format!(
                "{} bytes received, {size} expected",
                bytes.len()
            )));
        }
        if hash_of(&bytes) != *hash {
            return Err(BlobError::Mismatch("SHA-256 differs from the name".into()));
        }
        g.complete.insert(*hash, bytes);
        Ok(())
    }

    fn discard_partial(&self, hash: &BlobHash) -> Result<(), BlobError> {
        self.lock().partial.remove(hash);
        Ok(())
    }

    fn read(&self, hash: &BlobHash, offset: u64, len: usize) -> Result<Vec<u8>, BlobError> {
        let g = self.lock();
        let b = g.complete.get(hash).ok_or(BlobError::Missing)?;
        let start = usize::try_from(offset).map_err(|_| BlobError::Missing)?;
        if start > b.len() {
            return Err(BlobError::Missing);
        }
        let end = start.saturating_add(len).min(b.len());
        Ok(b[start..end].to_vec())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_the_contract() {
        super::super::contract::check(&super::MemoryBlobs::new());
    }
}
