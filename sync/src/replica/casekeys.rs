//! The device's case keys (see `case::seal`): kept beside the cases in the
//! same store, asked for when a case arrives sealed without one, destroyed
//! when the relay erases the case's personal data.

use super::{Replica, ReplicaError};
use crate::case::seal::{self, CaseKey};
use crate::ids::CaseId;
use crate::protocol::DocKey;
use crate::storage::{keys, Batch, Storage};
use automerge::Automerge;

impl<S: Storage> Replica<S> {
    /// The key of `case`, if the device holds it.
    pub fn case_key(&self, case: CaseId) -> Result<Option<CaseKey>, ReplicaError> {
        Ok(self
            .storage
            .get(&keys::case_key(case))?
            .and_then(|b| CaseKey::from_slice(&b)))
    }

    /// The keys the device holds of `cases`, to hand to the relay ahead of
    /// their changes.
    pub fn keys_of(&self, cases: &[CaseId]) -> Result<Vec<DocKey>, ReplicaError> {
        let mut out = Vec::new();
        for &doc in cases {
            if let Some(key) = self.case_key(doc)? {
                out.push(DocKey { doc, key });
            }
        }
        Ok(out)
    }

    /// Cases the device holds sealed without their key.
    pub fn keys_wanted(&self) -> Result<Vec<CaseId>, ReplicaError> {
        Ok(self
            .storage
            .scan_prefix(b"W")?
            .iter()
            .filter_map(|(k, _)| keys::case_after_prefix(k))
            .collect())
    }

    /// Cases marked as wanting their key since the last call.
    pub fn take_fresh_wants(&mut self) -> Vec<CaseId> {
        std::mem::take(&mut self.fresh_wants)
    }

    /// Keeps keys the relay handed over (never for an erased case).
    pub fn store_keys(&mut self, given: &[DocKey]) -> Result<(), ReplicaError> {
        let mut b = Batch::new();
        for k in given {
            if self.storage.get(&keys::key_erased(k.doc))?.is_some() {
                continue;
            }
            b.put(keys::case_key(k.doc), k.key.as_bytes().to_vec());
            b.delete(keys::key_wanted(k.doc));
        }
        self.storage.apply(b)?;
        Ok(())
    }

    /// Destroys the keys of cases whose personal data the relay erased,
    /// durably, before returning.
    pub fn forget_keys(&mut self, cases: &[CaseId]) -> Result<(), ReplicaError> {
        let mut b = Batch::new();
        for &case in cases {
            stage_erased(&mut b, case);
        }
        self.storage.apply(b)?;
        self.storage.flush()?;
        Ok(())
    }

    /// After changes from the relay were applied to `doc` (the case
    /// `case`): an erased case loses its key; a sealed case without a key
    /// is marked to ask for it.
    pub(super) fn stage_key_marks(
        &mut self,
        batch: &mut Batch,
        case: CaseId,
        doc: &Automerge,
    ) -> Result<(), ReplicaError> {
        if seal::is_erased(doc) {
            stage_erased(batch, case);
        } else if seal::has_sealed(doc)
            && self.storage.get(&keys::case_key(case))?.is_none()
            && self.storage.get(&keys::key_wanted(case))?.is_none()
            && self.storage.get(&keys::key_erased(case))?.is_none()
        {
            batch.put(keys::key_wanted(case), Vec::new());
            self.fresh_wants.push(case);
        }
        Ok(())
    }
}

impl<S: Storage> Replica<S> {
    /// Wipes everything the device holds: first every case key (flushed,
    /// so from here on no sealed value on this device opens, even in a copy
    /// of its files), then every case, mark, blob and setting. For a
    /// device reported lost, or `aftercase wipe`.
    pub fn wipe(&mut self) -> Result<(), ReplicaError> {
        for prefix in [&b"K"[..], &b""[..]] {
            loop {
                let keys = self.storage.scan_prefix(prefix)?;
                if keys.is_empty() {
                    break;
                }
                // In batches, so a device with many cases never builds one
                // huge batch.
                for chunk in keys.chunks(512) {
                    let mut b = Batch::new();
                    for (k, _) in chunk {
                        b.delete(k.clone());
                    }
                    self.storage.apply(b)?;
                }
                self.storage.flush()?;
            }
        }
        self.docs.clear();
        self.fresh_wants.clear();
        Ok(())
    }
}

fn stage_erased(b: &mut Batch, case: CaseId) {
    b.delete(keys::case_key(case));
    b.delete(keys::key_wanted(case));
    b.put(keys::key_erased(case), Vec::new());
}
