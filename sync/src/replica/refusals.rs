//! Refused uploads on the device: remembered across restarts so the person
//! sees them in `aftercase status`, and discarded on request: the local
//! changes go to a reject log and the relay's version is fetched afresh.

use super::{Replica, ReplicaError};
use crate::ids::{CaseId, Millis};
use crate::storage::{keys, Batch, Storage};
use serde::{Deserialize, Serialize};

/// Why the relay refused a case's local changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// The case.
    pub case: CaseId,
    /// The relay's refusal code (see `protocol::RefusalCode`).
    pub code: String,
    /// The relay's words.
    pub reason: String,
    /// Device time the refusal arrived.
    pub at: Millis,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    code: String,
    reason: String,
    at: i64,
}

fn refusal_key(case: CaseId) -> Vec<u8> {
    let mut k = vec![b'x'];
    k.extend_from_slice(case.as_bytes());
    k
}

/// Stages a mark to fetch `case` whole from the relay at the next sync.
pub(super) fn stage_wanted(b: &mut Batch, case: CaseId) {
    b.put(wanted_key(case), Vec::new());
}

fn wanted_key(case: CaseId) -> Vec<u8> {
    let mut k = vec![b'w'];
    k.extend_from_slice(case.as_bytes());
    k
}

fn reject_key(case: CaseId, at: Millis) -> Vec<u8> {
    let mut k = vec![b'j'];
    k.extend_from_slice(case.as_bytes());
    k.extend_from_slice(&at.0.to_be_bytes());
    k
}

impl<S: Storage> Replica<S> {
    /// Remembers that the relay refused `case`'s local changes.
    pub fn record_refusal(
        &mut self,
        case: CaseId,
        code: &str,
        reason: &str,
        at: Millis,
    ) -> Result<(), ReplicaError> {
        let value = serde_json::to_vec(&Stored {
            code: code.to_string(),
            reason: reason.to_string(),
            at: at.0,
        })
        .map_err(|e| {
            ReplicaError::Storage(crate::storage::StorageError::Corrupt {
                key: "refusal".into(),
                message: e.to_string(),
            })
        })?;
        let mut b = Batch::new();
        b.put(refusal_key(case), value);
        self.storage.apply(b)?;
        Ok(())
    }

    /// Forgets a refusal (the relay took the case's changes after all).
    pub fn clear_refusal(&mut self, case: CaseId) -> Result<(), ReplicaError> {
        if self.storage.get(&refusal_key(case))?.is_some() {
            let mut b = Batch::new();
            b.delete(refusal_key(case));
            self.storage.apply(b)?;
        }
        Ok(())
    }

    /// Every case whose local changes the relay refused, oldest first.
    pub fn refusals(&self) -> Result<Vec<Refused>, ReplicaError> {
        let mut out = Vec::new();
        for (k, v) in self.storage.scan_prefix(b"x")? {
            let Some(case) = keys::case_after_prefix(&k) else {
                continue;
            };
            // A record this build cannot read is shown, not dropped.
            let s: Stored = serde_json::from_slice(&v).unwrap_or(Stored {
                code: "unknown".into(),
                reason: "(unreadable record)".into(),
                at: 0,
            });
            out.push(Refused {
                case,
                code: s.code,
                reason: s.reason,
                at: Millis(s.at),
            });
        }
        out.sort_by_key(|r| r.at);
        Ok(out)
    }

    /// Drops the case's local copy: its document is kept in the reject log
    /// (so nothing typed is lost), and the relay's version is fetched at the
    /// next sync. Returns the bytes kept.
    pub fn discard(&mut self, case: CaseId, now: Millis) -> Result<usize, ReplicaError> {
        let Some(bytes) = self.with_doc(case, automerge::Automerge::save)? else {
            return Err(ReplicaError::UnknownCase(case));
        };
        let kept = bytes.len();
        let mut b = Batch::new();
        b.put(reject_key(case, now), bytes);
        for (k, _) in self.storage.scan_prefix(&keys::doc_prefix(case))? {
            b.delete(k);
        }
        for (k, _) in self.storage.scan_prefix(&keys::sync_state(case, ""))? {
            b.delete(k);
        }
        b.delete(keys::local_case(case));
        b.delete(keys::dirty(case));
        b.delete(refusal_key(case));
        b.put(wanted_key(case), Vec::new());
        self.storage.apply(b)?;
        self.storage.flush()?;
        self.docs.forget(case);
        Ok(kept)
    }

    /// Cases to fetch whole from the relay (discarded ones).
    pub fn wanted(&self) -> Result<Vec<CaseId>, ReplicaError> {
        Ok(self
            .storage
            .scan_prefix(b"w")?
            .iter()
            .filter_map(|(k, _)| keys::case_after_prefix(k))
            .collect())
    }

    /// The relay answered for a wanted case (with the case or a refusal).
    pub fn got_wanted(&mut self, case: CaseId) -> Result<(), ReplicaError> {
        if self.storage.get(&wanted_key(case))?.is_some() {
            let mut b = Batch::new();
            b.delete(wanted_key(case));
            self.storage.apply(b)?;
        }
        Ok(())
    }

    /// Discarded documents kept in the reject log: case, time, bytes.
    pub fn rejected(&self) -> Result<Vec<(CaseId, Millis, Vec<u8>)>, ReplicaError> {
        Ok(self
            .storage
            .scan_prefix(b"j")?
            .into_iter()
            .filter_map(|(k, v)| {
                let case = keys::case_after_prefix(&k)?;
                let at = <[u8; 8]>::try_from(k.get(17..25)?).ok()?;
                Some((case, Millis(i64::from_be_bytes(at)), v))
            })
            .collect())
    }
}
