//! Case keys at the relay and the erasure of a customer's personal data
//! (crypto-shredding; see `case::seal`).
//!
//! The relay keeps each case's key beside the case (`rK`), never in the
//! document. It takes a key only from the device that opened the case (or
//! for a case it does not hold yet, whose first upload then must open with
//! it), never replaces one, and hands keys only to devices that may read
//! the case. Erasing a case appends the erasure to the document in a
//! trusted commit (so every device learns of it through the usual sync and
//! destroys its copy of the key), then destroys the relay's key and keeps
//! an erasure record (`rX`), which refuses the key for ever after.

use super::*;
use crate::case::seal::{self, CaseKey};
use crate::case::EditContext;
use crate::protocol::{DocKey, MAX_KEYS_PER_FRAME};

/// The record of an erasure, kept after the key is destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    /// Relay time of the erasure.
    pub at: Millis,
    /// Who erased (a head-office user, or `retention` for the policy's
    /// retention).
    pub by: UserId,
}

/// The randomness an erasure's change needs (the core draws none).
#[derive(Debug, Clone, Copy)]
pub struct EraseEntropy {
    /// A fresh Automerge actor for the relay's change.
    pub actor: [u8; 16],
    /// The edit's nonce (its timeline entry's id).
    pub nonce: [u8; 16],
}

/// Why an erasure did not happen.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    /// The relay holds no such case.
    #[error("no case {0} at this relay")]
    UnknownCase(CaseId),
    /// Only head office erases.
    #[error("only head office may erase a customer's personal data, not a {0}")]
    Forbidden(Role),
    /// Writing the erasure into the case failed.
    #[error("the erasure could not be written into case {case}: {message}")]
    Document {
        /// The case.
        case: CaseId,
        /// What failed.
        message: String,
    },
    /// The commit failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The key of `case` in `storage`, if the relay holds it.
pub(super) fn key_in<S: Storage>(
    storage: &S,
    case: CaseId,
) -> Result<Option<CaseKey>, StorageError> {
    Ok(storage
        .get(&keys::case_key(case))?
        .and_then(|b| CaseKey::from_slice(&b)))
}

impl<S: Storage> Relay<S> {
    /// The key of `case`, if the relay holds it.
    pub fn case_key(&self, case: CaseId) -> Result<Option<CaseKey>, StorageError> {
        key_in(&self.storage, case)
    }

    /// The erasure record of `case`, if its personal data was erased.
    pub fn erasure(&self, case: CaseId) -> Result<Option<Erasure>, StorageError> {
        self.storage
            .get(&keys::erasure(case))?
            .map(|b| serde_json::from_slice(&b).map_err(|e| corrupt("erasure record", e)))
            .transpose()
    }

    /// Keys a device hands over ([`Frame::Keys`]): kept for cases it
    /// opened (or that are not here yet) when the relay has none, and the
    /// case was not erased; the device is told of erased ones.
    pub(super) fn keys_offered(
        &mut self,
        s: &RelaySession,
        offered: Vec<DocKey>,
    ) -> Result<RelayOutput, SessionError> {
        if offered.len() > MAX_KEYS_PER_FRAME {
            return Err(SessionError::Protocol(format!(
                "a keys frame may hold at most {MAX_KEYS_PER_FRAME} keys, got {}",
                offered.len()
            )));
        }
        let st = SessionError::Storage;
        let mut b = Batch::new();
        let mut gone = Vec::new();
        let mut kept = 0usize;
        for DocKey { doc, key } in offered {
            if self.erasure(doc).map_err(st)?.is_some() {
                gone.push(doc);
                continue;
            }
            if self
                .storage
                .get(&keys::case_key(doc))
                .map_err(st)?
                .is_some()
            {
                // Never replaced: a tampered tablet must not make the
                // case's data unreadable to everyone else.
                continue;
            }
            if let Some(meta) = self.meta(doc).map_err(st)? {
                if meta.created_device != s.principal.device {
                    continue;
                }
            }
            b.put(keys::case_key(doc), key.as_bytes().to_vec());
            kept += 1;
        }
        if kept > 0 {
            self.storage.apply(b).map_err(st)?;
        }
        let mut frames = Vec::new();
        if !gone.is_empty() {
            frames.push(Frame::KeysGone { docs: gone });
        }
        Ok(RelayOutput {
            frames,
            // A key is durable before anything it opens is acknowledged.
            needs_flush: kept > 0,
            ..RelayOutput::default()
        })
    }

    /// A device asks for keys ([`Frame::WantKeys`]): answered with one
    /// [`Frame::Keys`] of those it may read and the relay holds, after a
    /// [`Frame::KeysGone`] naming the erased ones.
    pub(super) fn keys_wanted(
        &mut self,
        s: &RelaySession,
        docs: Vec<CaseId>,
    ) -> Result<RelayOutput, SessionError> {
        if docs.len() > MAX_KEYS_PER_FRAME {
            return Err(SessionError::Protocol(format!(
                "a key request may name at most {MAX_KEYS_PER_FRAME} cases, got {}",
                docs.len()
            )));
        }
        let st = SessionError::Storage;
        let mut given = Vec::new();
        let mut gone = Vec::new();
        for doc in docs {
            let Some(meta) = self.meta(doc).map_err(st)? else {
                continue;
            };
            if !access::can_read(&s.principal, &meta) {
                continue;
            }
            if self.erasure(doc).map_err(st)?.is_some() {
                gone.push(doc);
            } else if let Some(key) = self.case_key(doc).map_err(st)? {
                given.push(DocKey { doc, key });
            }
        }
        let mut frames = Vec::new();
        if !gone.is_empty() {
            frames.push(Frame::KeysGone { docs: gone });
        }
        frames.push(Frame::Keys { keys: given });
        Ok(RelayOutput {
            frames,
            ..RelayOutput::default()
        })
    }

    /// Erases the customer's personal data of `case` for `by` (head
    /// office): writes the erasure into the document (a trusted commit,
    /// audited as `by`'s), then destroys the key and keeps the record.
    /// Erasing an erased case changes nothing. The caller flushes when
    /// [`RelayOutput::needs_flush`] says so, as for an upload.
    pub fn erase(
        &mut self,
        case: CaseId,
        by: &Principal,
        now: Millis,
        entropy: EraseEntropy,
    ) -> Result<RelayOutput, EraseError> {
        if by.role != Role::HeadOffice {
            return Err(EraseError::Forbidden(by.role));
        }
        if self.meta(case)?.is_none() {
            return Err(EraseError::UnknownCase(case));
        }
        if self.erasure(case)?.is_some() {
            return Ok(RelayOutput::default());
        }
        let marked = self.doc(case)?.map(|d| seal::is_erased(d));
        if marked == Some(false) {
            let changes = {
                let Some(doc) = self.doc(case)? else {
                    return Err(EraseError::UnknownCase(case));
                };
                let before = doc.get_heads();
                let mut fork = doc
                    .fork()
                    .with_actor(automerge::ActorId::from(&entropy.actor[..]));
                let ctx = EditContext {
                    author: by.user.clone(),
                    role: by.role,
                    device: by.device.clone(),
                    now,
                    nonce: entropy.nonce,
                };
                seal::mark_erased(&mut fork, &ctx).map_err(|e| EraseError::Document {
                    case,
                    message: e.to_string(),
                })?;
                fork.get_changes(&before)
                    .iter()
                    .map(|c| c.raw_bytes().to_vec())
                    .collect::<Vec<_>>()
            };
            // The commit destroys the key and keeps the record in the
            // batch that stores the erasure (`upload.rs`): all or nothing.
            let mut s = self.upstream_session(by.clone());
            let mut out = self.upload_changes(&mut s, case, changes, now)?;
            if let Some(Frame::Refused { reason, .. }) = out.frames.first() {
                return Err(EraseError::Document {
                    case,
                    message: reason.clone(),
                });
            }
            out.frames.clear();
            return Ok(out);
        }
        // Marked already (by another relay over the same database, or
        // before the key was destroyed): destroy what is left.
        let mut b = Batch::new();
        b.delete(keys::case_key(case));
        let record = Erasure {
            at: now,
            by: by.user.clone(),
        };
        b.put(
            keys::erasure(case),
            serde_json::to_vec(&record).map_err(|e| corrupt("erasure record", e))?,
        );
        let mut out = RelayOutput {
            needs_flush: true,
            ..RelayOutput::default()
        };
        self.storage.apply(b)?;
        if let Some(summary) = self.derive_summary(case)? {
            let mut b = Batch::new();
            b.put(keys::summary(case), queries::summary_bytes(&summary)?);
            self.storage.apply(b)?;
            out.summary = Some(Box::new(summary));
        }
        Ok(out)
    }

    /// The cases the policy's retention says to erase at `now`: closed (in
    /// a final state, cancelled included) more than
    /// `erase_personal_data_after_days` days before, and not erased yet.
    /// Empty when the policy keeps personal data (0 days).
    pub fn due_for_erasure(&self, now: Millis) -> Result<Vec<CaseId>, StorageError> {
        let days = i64::from(self.policy.erase_personal_data_after_days);
        if days == 0 {
            return Ok(Vec::new());
        }
        let before = now.0 - days * 86_400_000;
        let mut out = Vec::new();
        for (case, s) in self.summaries()? {
            let closed = match (s.kind.parse::<CaseKind>(), s.status.as_deref()) {
                (Ok(kind), Some(status)) if crate::workflow::table::is_final(kind, status) => {
                    s.states.last().map(|(_, at)| *at)
                }
                _ => None,
            };
            if closed.is_some_and(|at| at < before) && self.erasure(case)?.is_none() {
                out.push(case);
            }
        }
        Ok(out)
    }

    /// The cases whose customer has this phone number, found through the
    /// read model's customer keys (salted hashes of the phone's digits).
    pub fn cases_of_phone(&self, phone: &str) -> Result<Vec<CaseId>, StorageError> {
        let Some(wanted) = summary::customer_key(&self.salt, Some(phone)) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (case, s) in self.summaries()? {
            if s.customer.as_deref() == Some(wanted.as_str()) {
                out.push(case);
            }
        }
        Ok(out)
    }

    /// Every stored read-model row, with its case (an operator's pass: it
    /// reads them all).
    fn summaries(&self) -> Result<Vec<(CaseId, CaseSummary)>, StorageError> {
        let mut out = Vec::new();
        for (k, v) in self.storage.scan_prefix(keys::SUMMARY)? {
            let Some(case) = k
                .get(keys::SUMMARY.len()..)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map(CaseId::from_bytes)
            else {
                continue;
            };
            let s = serde_json::from_slice(&v).map_err(|e| corrupt("case summary", e))?;
            out.push((case, s));
        }
        Ok(out)
    }
}
