//! The relay's bounded cache of loaded case documents.

use super::*;

/// A loaded document and the memory it is estimated to take.
pub(super) struct Cached {
    pub(super) doc: Automerge,
    pub(super) weight: usize,
    /// Bytes the case takes in storage (snapshot and change chunks), for
    /// the per-case size limit.
    pub(super) bytes: usize,
}

/// Estimated memory of a loaded document from its stored size. Measured
/// with automerge 0.12 on case documents: about 54 KiB loaded for 0.8 KiB
/// stored (20 changes), 62 KiB for 2.3 KiB (200 changes); a loaded
/// document has a large fixed part. Rounded up so the bound holds.
pub(super) fn estimated_weight(stored_bytes: usize) -> usize {
    64 * 1024 + 16 * stored_bytes
}

impl<S: Storage> Relay<S> {
    /// Bounds the loaded documents' estimated memory as well as their
    /// number; the least recently used are evicted first.
    pub fn set_cache_budget(&mut self, bytes: usize) {
        self.cache_budget = bytes;
        self.trim_cache();
    }

    /// Estimated memory of the loaded documents.
    pub fn cached_bytes(&self) -> usize {
        self.cache_weight
    }

    pub(super) fn cache_put(&mut self, case: CaseId, doc: Automerge, weight: usize, bytes: usize) {
        self.cache_weight += weight;
        if let Some((old_case, old)) = self.cache.push(case, Cached { doc, weight, bytes }) {
            self.cache_weight -= old.weight;
            // `push` also hands back the entry it replaced for the same case,
            // which is not an eviction.
            if old_case != case {
                self.cache_stats.evictions += 1;
            }
        }
        self.trim_cache();
    }

    pub(super) fn cache_pop(&mut self, case: CaseId) -> Option<Cached> {
        let c = self.cache.pop(&case)?;
        self.cache_weight -= c.weight;
        Some(c)
    }

    pub(super) fn trim_cache(&mut self) {
        // The newest entry always stays: callers use what they just loaded.
        while self.cache_weight > self.cache_budget && self.cache.len() > 1 {
            match self.cache.pop_lru() {
                Some((_, old)) => {
                    self.cache_weight -= old.weight;
                    self.cache_stats.evictions += 1;
                }
                None => break,
            }
        }
    }

    /// Number of documents currently loaded.
    pub fn cached_docs(&self) -> usize {
        self.cache.len()
    }

    /// The cache's hits, misses and evictions so far. Cheap: shells read it
    /// after each use of the relay to export it.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache_stats
    }

    pub(super) fn doc(&mut self, case: CaseId) -> Result<Option<&mut Automerge>, StorageError> {
        if self.cache.contains(&case) {
            self.cache_stats.hits += 1;
        } else {
            self.cache_stats.misses += 1;
            let Some(loaded) = docs::load_doc(&self.storage, case)? else {
                return Ok(None);
            };
            if loaded.chunks >= docs::COMPACT_AFTER_CHUNKS {
                docs::compact(&self.storage, case, &loaded.doc)?;
            }
            self.cache_put(
                case,
                loaded.doc,
                estimated_weight(loaded.bytes),
                loaded.bytes,
            );
        }
        Ok(self.cache.get_mut(&case).map(|c| &mut c.doc))
    }
}
