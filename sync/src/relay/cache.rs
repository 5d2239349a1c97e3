//! The relay's bounded cache of loaded case documents.

use super::*;
use crate::storage::keys as docs_keys;

/// A loaded document and the memory it is estimated to take.
pub(super) struct Cached {
    pub(super) doc: Automerge,
    pub(super) weight: usize,
    /// Bytes the case takes in storage (snapshot and change chunks), for
    /// the per-case size limit.
    pub(super) bytes: usize,
    /// The case's place in the change sequence (`CaseMeta::seq`) when it
    /// was loaded or last committed here. Another relay on the same
    /// database that commits to the case moves it: the copy is stale.
    pub(super) seq: u64,
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

    pub(super) fn cache_put(
        &mut self,
        case: CaseId,
        doc: Automerge,
        weight: usize,
        bytes: usize,
        seq: u64,
    ) {
        self.cache_weight += weight;
        let entry = Cached {
            doc,
            weight,
            bytes,
            seq,
        };
        if let Some((old_case, old)) = self.cache.push(case, entry) {
            self.cache_weight -= old.weight;
            // `push` also hands back the entry it replaced for the same case,
            // which is not an eviction.
            if old_case != case {
                self.cache_stats.evictions += 1;
            }
        }
        self.trim_cache();
    }

    /// Drops the loaded copy of `case` if it is older than `seq`, the
    /// case's place in the stored sequence: another relay on the same
    /// database committed to it, and the next use loads it again.
    pub(super) fn drop_if_stale(&mut self, case: CaseId, seq: u64) {
        if self.cache.peek(&case).is_some_and(|c| c.seq != seq) {
            self.cache_pop(case);
            self.recent.forget(case);
        }
    }

    /// Brings the loaded copy of `case` up to `seq` (the stored owner
    /// record's) by applying the change chunks stored since, and records
    /// them as a recent commit so live devices holding the old heads are
    /// pushed the stored changes (as for a commit made here). `heads` are
    /// the case's heads in the change index: if the chunks do not lead
    /// there (another relay compacted the case into a snapshot meanwhile),
    /// the copy is dropped and loaded again on next use.
    pub(super) fn catch_up(
        &mut self,
        case: CaseId,
        seq: u64,
        heads: &[[u8; 32]],
    ) -> Result<(), StorageError> {
        let Some(cached) = self.cache.peek_mut(&case) else {
            return Ok(());
        };
        if cached.seq == seq {
            return Ok(());
        }
        let before = cached.doc.get_heads();
        let chunks = self.storage.scan_prefix(&docs_keys::changes_prefix(case))?;
        // Chunks the copy already holds are skipped by Automerge.
        let applied = chunks
            .iter()
            .all(|(_, chunk)| cached.doc.load_incremental(chunk).is_ok());
        let mut now: Vec<[u8; 32]> = cached.doc.get_heads().iter().map(|h| h.0).collect();
        let mut want = heads.to_vec();
        now.sort_unstable();
        want.sort_unstable();
        if !applied || now != want {
            self.cache_pop(case);
            self.recent.forget(case);
            return Ok(());
        }
        let after = cached.doc.get_heads();
        let changes = cached.doc.get_changes(&before);
        let new_bytes: usize = changes.iter().map(|c| c.raw_bytes().len()).sum();
        cached.seq = seq;
        cached.bytes += new_bytes;
        cached.weight += 16 * new_bytes;
        self.cache_weight += 16 * new_bytes;
        self.recent.record(case, before, after, &changes);
        self.trim_cache();
        Ok(())
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
            // The owner record first: the document loaded after it holds at
            // least what its sequence number says.
            let stored_meta = self.storage.get(&keys::meta(case))?;
            let seq = match &stored_meta {
                Some(bytes) => queries::decode_meta(bytes)?.seq,
                None => 0,
            };
            if let Some(why) = self.quarantined.get(&case) {
                return Err(corrupt(&format!("quarantined case {case}"), why));
            }
            let loaded = match docs::load_doc(&self.storage, case) {
                Ok(Some(l)) => l,
                Ok(None) => return Ok(None),
                Err(e @ StorageError::Corrupt { .. }) => {
                    self.quarantine(case, &e.to_string());
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            if loaded.chunks >= docs::COMPACT_AFTER_CHUNKS {
                let mut batch = docs::compaction(&self.storage, case, &loaded.doc)?;
                batch.expect(keys::meta(case), stored_meta);
                match self.storage.apply(batch) {
                    // Another relay committed to the case since it was
                    // loaded: its chunk is not in this snapshot, so the
                    // chunks stay as they are until a later load.
                    Ok(()) | Err(StorageError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            self.cache_put(
                case,
                loaded.doc,
                estimated_weight(loaded.bytes),
                loaded.bytes,
                seq,
            );
        }
        Ok(self.cache.get_mut(&case).map(|c| &mut c.doc))
    }
}
