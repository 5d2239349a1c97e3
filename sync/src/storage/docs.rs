//! Documents on top of [`Storage`]: load from snapshot plus changes, stage new
//! changes, compact.

use super::{keys, Batch, Storage, StorageError};
use crate::ids::CaseId;
use automerge::{Automerge, Change};

/// Once a document has this many incremental chunks, loading it folds them
/// into a fresh snapshot. Small cases stay a handful of keys; long histories
/// do not make every load replay thousands of chunks.
pub const COMPACT_AFTER_CHUNKS: usize = 64;

/// A document loaded from storage, with how many incremental chunks it had.
pub struct LoadedDoc {
    /// The document.
    pub doc: Automerge,
    /// Incremental chunks stored beside the snapshot.
    pub chunks: usize,
    /// Stored bytes (snapshot plus chunks).
    pub bytes: usize,
}

fn corrupt(case: CaseId, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt {
        key: format!("case {case}"),
        message: e.to_string(),
    }
}

/// Loads a document, or `None` if nothing of it is stored.
pub fn load_doc(storage: &dyn Storage, case: CaseId) -> Result<Option<LoadedDoc>, StorageError> {
    let entries = storage.scan_prefix(&keys::doc_prefix(case))?;
    if entries.is_empty() {
        return Ok(None);
    }
    let snapshot_key = keys::snapshot(case);
    let bytes = entries.iter().map(|(_, v)| v.len()).sum();
    let chunks = entries.iter().filter(|(k, _)| *k != snapshot_key).count();
    // Fast path: one load of everything (snapshot first), several times
    // quicker than applying the chunks one by one.
    let mut all = Vec::with_capacity(bytes);
    if let Some((_, snap)) = entries.iter().find(|(k, _)| *k == snapshot_key) {
        all.extend_from_slice(snap);
    }
    for (k, v) in &entries {
        if *k != snapshot_key {
            all.extend_from_slice(v);
        }
    }
    if let Ok(doc) = Automerge::load(&all) {
        return Ok(Some(LoadedDoc { doc, chunks, bytes }));
    }
    // Slow path, tolerant of changes whose dependencies are missing, and
    // strict about the bytes: each change must hash to the key it is
    // stored under (`load_incremental` would skip a damaged one silently).
    let mut doc = match entries.iter().find(|(k, _)| *k == snapshot_key) {
        Some((_, bytes)) => Automerge::load(bytes).map_err(|e| corrupt(case, e))?,
        None => Automerge::new(),
    };
    let prefix = keys::changes_prefix(case);
    let mut changes = Vec::with_capacity(chunks);
    for (k, v) in &entries {
        if *k == snapshot_key {
            continue;
        }
        let change = automerge::Change::from_bytes(v.clone()).map_err(|e| corrupt(case, e))?;
        let named = k.strip_prefix(prefix.as_slice());
        if named != Some(&change.hash().0[..]) {
            return Err(corrupt(
                case,
                "a stored change does not hash to its key (damaged bytes)",
            ));
        }
        changes.push(change);
    }
    // Order does not matter: automerge queues a change until its
    // dependencies have arrived.
    doc.apply_changes(changes).map_err(|e| corrupt(case, e))?;
    Ok(Some(LoadedDoc { doc, chunks, bytes }))
}

/// Everything stored of a document as one byte string that
/// `Automerge::load` accepts: the snapshot (if any) followed by the
/// incremental change chunks, without decoding any of them. This is how the
/// relay serves whole documents cheaply: no load, no re-encoding.
pub fn stored_bytes(storage: &dyn Storage, case: CaseId) -> Result<Option<Vec<u8>>, StorageError> {
    let entries = storage.scan_prefix(&keys::doc_prefix(case))?;
    if entries.is_empty() {
        return Ok(None);
    }
    let snapshot_key = keys::snapshot(case);
    let total = entries.iter().map(|(_, v)| v.len()).sum();
    let mut out = Vec::with_capacity(total);
    // The snapshot must come first: it is the only chunk that is a whole
    // document; change chunks may follow in any order.
    if let Some((_, snap)) = entries.iter().find(|(k, _)| *k == snapshot_key) {
        out.extend_from_slice(snap);
    }
    for (k, v) in &entries {
        if *k != snapshot_key {
            out.extend_from_slice(v);
        }
    }
    Ok(Some(out))
}

/// Adds `changes` of `case` to `batch`, keyed by change hash so that writing
/// the same change twice is harmless.
pub fn stage_changes(batch: &mut Batch, case: CaseId, changes: &[Change]) {
    for change in changes {
        batch.put(keys::change(case, &change.hash().0), change.raw_bytes());
    }
}

/// Replaces a document's stored chunks by one snapshot of `doc`, atomically.
///
/// `doc` must contain every stored chunk (it was loaded from them), so the
/// snapshot is written and exactly the chunks that were folded in are deleted
/// in the same batch.
pub fn compact(storage: &dyn Storage, case: CaseId, doc: &Automerge) -> Result<(), StorageError> {
    storage.apply(compaction(storage, case, doc)?)
}

/// The batch [`compact`] applies. A writer that shares the store with
/// others adds an expectation that nothing was committed to the case since
/// `doc` was loaded: a chunk written meanwhile is not in `doc`, and deleting
/// it would lose it.
pub fn compaction(
    storage: &dyn Storage,
    case: CaseId,
    doc: &Automerge,
) -> Result<Batch, StorageError> {
    let existing = storage.scan_prefix(&keys::changes_prefix(case))?;
    let mut batch = Batch::new();
    batch.put(keys::snapshot(case), doc.save());
    for (k, _) in existing {
        batch.delete(k);
    }
    Ok(batch)
}

/// Loads a persisted sync state, or a fresh one if none (or a damaged one) is stored.
pub fn load_sync_state(
    storage: &dyn Storage,
    case: CaseId,
    peer: &str,
) -> Result<automerge::sync::State, StorageError> {
    Ok(storage
        .get(&keys::sync_state(case, peer))?
        .and_then(|b| automerge::sync::State::decode(&b).ok())
        .unwrap_or_default())
}

/// Adds a sync state to `batch`.
pub fn stage_sync_state(
    batch: &mut Batch,
    case: CaseId,
    peer: &str,
    state: &automerge::sync::State,
) {
    stage_encoded_sync_state(batch, case, peer, state.encode());
}

/// [`stage_sync_state`] for a state already encoded.
pub fn stage_encoded_sync_state(batch: &mut Batch, case: CaseId, peer: &str, encoded: Vec<u8>) {
    batch.put(keys::sync_state(case, peer), encoded);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use automerge::transaction::Transactable;
    use automerge::{ReadDoc, ROOT};

    #[test]
    fn compaction_keeps_content_and_drops_chunks() {
        let store = MemoryStorage::new();
        let case = CaseId::from_bytes([1; 16]);
        let mut doc = Automerge::new();
        for i in 0..10i64 {
            let before = doc.get_heads();
            let mut tx = doc.transaction();
            tx.put(ROOT, "n", i).unwrap();
            tx.commit();
            let mut b = Batch::new();
            stage_changes(&mut b, case, &doc.get_changes(&before));
            store.apply(b).unwrap();
        }
        let loaded = load_doc(&store, case).unwrap().unwrap();
        assert_eq!(loaded.chunks, 10);
        compact(&store, case, &loaded.doc).unwrap();
        let again = load_doc(&store, case).unwrap().unwrap();
        assert_eq!(again.chunks, 0);
        assert_eq!(again.doc.get_heads(), doc.get_heads());
        let (v, _) = again.doc.get(ROOT, "n").unwrap().unwrap();
        assert_eq!(v.as_i64(), Some(9));
    }

    #[test]
    fn stored_bytes_load_as_the_whole_document() {
        let store = MemoryStorage::new();
        let case = CaseId::from_bytes([2; 16]);
        let mut doc = Automerge::new();
        let put = |doc: &mut Automerge, i: i64| {
            let before = doc.get_heads();
            let mut tx = doc.transaction();
            tx.put(ROOT, format!("k{i}"), i).unwrap();
            tx.commit();
            let mut b = Batch::new();
            stage_changes(&mut b, case, &doc.get_changes(&before));
            store.apply(b).unwrap();
        };
        assert!(stored_bytes(&store, case).unwrap().is_none());
        for i in 0..5 {
            put(&mut doc, i);
        }
        // Changes only, in hash order rather than causal order.
        let loaded = Automerge::load(&stored_bytes(&store, case).unwrap().unwrap()).unwrap();
        assert_eq!(loaded.get_heads(), doc.get_heads());
        // A snapshot followed by later changes.
        compact(&store, case, &doc).unwrap();
        for i in 5..9 {
            put(&mut doc, i);
        }
        let loaded = Automerge::load(&stored_bytes(&store, case).unwrap().unwrap()).unwrap();
        assert_eq!(loaded.get_heads(), doc.get_heads());
        let (v, _) = loaded.get(ROOT, "k8").unwrap().unwrap();
        assert_eq!(v.as_i64(), Some(8));
    }
}
