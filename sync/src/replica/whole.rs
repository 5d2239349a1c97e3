//! A case the relay has never confirmed, uploaded as the changes this
//! device stores (`protocol::Frame::Changes` towards the relay): read and
//! confirmed without loading the document, which is most of what a sync
//! round costs a device uploading thousands of offline cases.

use super::loaded;
use super::{Replica, ReplicaError, RELAY_PEER};
use crate::ids::CaseId;
use crate::storage::{docs, keys, Batch, Storage};
use automerge::ChangeHash;
use std::collections::HashSet;

/// A stored change's hash and bytes.
pub type StoredChange = (ChangeHash, Vec<u8>);

impl<S: Storage> Replica<S> {
    /// Every stored change of `case` with its hash (read from the key, so
    /// nothing is decoded). `None` if nothing is stored, or a snapshot is
    /// (the case was compacted or came whole from the relay): such a case
    /// syncs instead.
    pub fn stored_changes(&self, case: CaseId) -> Result<Option<Vec<StoredChange>>, ReplicaError> {
        let prefix = keys::changes_prefix(case);
        let mut out = Vec::new();
        for (k, v) in self.storage.scan_prefix(&keys::doc_prefix(case))? {
            let Some(hash) = change_hash(&k, &prefix) else {
                return Ok(None);
            };
            out.push((hash, v));
        }
        Ok((!out.is_empty()).then_some(out))
    }

    /// The relay stored every change in `sent`: clears the dirty mark of
    /// `case` if those are all the changes it stores, and records `shared`
    /// (heads the relay is known to hold, possibly none) as the start of
    /// the case's next sync round. False, with the mark kept, if the case
    /// holds anything else (an edit since they were read). Checked and
    /// cleared under the case's lock, so no edit slips in between.
    pub fn confirm_stored(
        &mut self,
        case: CaseId,
        sent: &[ChangeHash],
        shared: &[ChangeHash],
    ) -> Result<bool, ReplicaError> {
        let sent: HashSet<&ChangeHash> = sent.iter().collect();
        let slot = self.docs.slot(case);
        let mut guard = loaded::lock(&slot);
        let prefix = keys::changes_prefix(case);
        for (k, _) in self.storage.scan_prefix(&keys::doc_prefix(case))? {
            match change_hash(&k, &prefix) {
                Some(h) if sent.contains(&h) => {}
                _ => return Ok(false),
            }
        }
        let mut b = Batch::new();
        b.delete(keys::dirty(case));
        if !shared.is_empty() {
            let state = automerge::sync::State {
                shared_heads: shared.to_vec(),
                ..Default::default()
            };
            docs::stage_sync_state(&mut b, case, RELAY_PEER, &state);
        }
        self.storage.apply(b)?;
        if let Some(held) = guard.as_mut() {
            held.marked = false;
        }
        drop(guard);
        self.clear_refusal(case)?;
        Ok(true)
    }
}

/// The change hash a change key names, `None` for any other key of the
/// case (its snapshot).
fn change_hash(key: &[u8], changes_prefix: &[u8]) -> Option<ChangeHash> {
    let hash = key.strip_prefix(changes_prefix)?;
    <[u8; 32]>::try_from(hash).ok().map(ChangeHash)
}
