//! Changes the relay pushes to a live device as it stored them
//! (`protocol::Frame::Changes`), applied without a sync round.

use super::loaded::{self, Held};
use super::{Replica, ReplicaError};
use crate::ids::CaseId;
use crate::storage::{docs, keys, Batch, Storage};
use automerge::{Change, ChangeHash};

impl<S: Storage> Replica<S> {
    /// Applies changes of `case` pushed by the relay and stores those that
    /// became part of the document (one whose dependencies this device
    /// lacks waits in Automerge's queue until a sync brings them, and is
    /// stored then). Changes already held are ignored, so a push that
    /// arrives twice costs nothing. Returns the hashes of every change
    /// pushed. Bytes that are not changes refuse the whole push and leave
    /// the case as stored. Not flushed, like [`Replica::receive`].
    pub fn apply_pushed(
        &mut self,
        case: CaseId,
        pushed: &[Vec<u8>],
    ) -> Result<Vec<ChangeHash>, ReplicaError> {
        let mut changes = Vec::with_capacity(pushed.len());
        for bytes in pushed {
            let change = Change::from_bytes(bytes.clone()).map_err(|e| ReplicaError::Apply {
                case,
                message: format!("a pushed change does not decode: {e}"),
            })?;
            changes.push(change);
        }
        let hashes = changes.iter().map(Change::hash).collect();
        let slot = self.docs.slot(case);
        let mut guard = loaded::lock(&slot);
        // Taken out of the cache while it changes: every failure below
        // leaves the slot empty, so the document reloads from disk.
        let mut held = match guard.take() {
            Some(h) => h,
            None => Held::new(self.load(case)?.ok_or(ReplicaError::UnknownCase(case))?),
        };
        let before = held.doc.get_heads();
        if let Err(e) = held.doc.apply_changes(changes) {
            return Err(ReplicaError::Apply {
                case,
                message: e.to_string(),
            });
        }
        let added = held.doc.get_changes(&before);
        if !added.is_empty() {
            let mut batch = Batch::new();
            docs::stage_changes(&mut batch, case, &added);
            batch.put(keys::local_case(case), Vec::new());
            self.stage_key_marks(&mut batch, case, &held.doc)?;
            self.storage.apply(batch)?;
        }
        *guard = Some(held);
        Ok(hashes)
    }
}
