//! A device's upload, as a sync message or as a case's stored changes sent
//! whole: applied, judged, and if accepted committed with its audit
//! records, owner record, read-model row and feed entry in one batch.

use super::cache::estimated_weight;
use super::queries::summary_bytes;
use super::session::sync_frames;
use super::*;
use automerge::ReadDoc;

/// Refuses an oversized upload before any of it is applied: applying is
/// the expensive part, and the relay holds its lock meanwhile. The whole
/// upload is held to the case limit; a change chunk to the change limit,
/// read from its header (an Automerge chunk starts with 4 magic bytes and
/// a 4-byte checksum, then its type: 1 a change, 2 a compressed change,
/// whose size is known only once inflated, which costs far less than
/// applying it).
pub(super) fn upload_too_large(
    chunks: &[&[u8]],
    policy: &crate::policy::Policy,
) -> Option<Refusal> {
    let bytes: usize = chunks.iter().map(|c| c.len()).sum();
    if bytes > policy.max_case_bytes {
        return Some(Refusal::new(
            RefusalCode::TooLarge,
            format!(
                "an upload of {bytes} bytes is over the limit of {} bytes per case",
                policy.max_case_bytes
            ),
        ));
    }
    let too_big = |size: usize| {
        Refusal::new(
            RefusalCode::TooLarge,
            format!(
                "one change of {size} bytes is over the limit of {} bytes per change",
                policy.max_change_bytes
            ),
        )
    };
    for chunk in chunks {
        let chunk = *chunk;
        match chunk.get(8) {
            Some(1) if chunk.len() > policy.max_change_bytes => return Some(too_big(chunk.len())),
            Some(2) => {
                if let Ok(c) = automerge::Change::from_bytes(chunk.to_vec()) {
                    let size = c.raw_bytes().len();
                    if size > policy.max_change_bytes {
                        return Some(too_big(size));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// What a device sent for one case.
enum Incoming {
    /// A sync message.
    Sync(Message),
    /// The case's stored changes, whole ([`Frame::Changes`]).
    Changes(Vec<Vec<u8>>),
}

/// An upload once decoded.
enum Decoded {
    /// A sync message.
    Sync(Message),
    /// A case's stored changes.
    Whole(Whole),
}

/// Uploaded change bytes joined as Automerge loads them, with their
/// hashes and the heads they make (the hashes no other of them depends on).
struct Whole {
    joined: Vec<u8>,
    /// The changes, each after those of them it depends on.
    changes: Vec<automerge::Change>,
    hashes: Vec<ChangeHash>,
    heads: Vec<ChangeHash>,
}

/// Reads the hashes and dependencies of uploaded change bytes. Applying
/// them is left to `load_incremental`, which checks what it applies as it
/// does for a sync message (`apply_changes` trusts its input).
/// The owner record of a case as read before an upload: decoded, and its
/// bytes as stored (`None` for a new case).
pub(super) struct Stored {
    pub(super) meta: Option<CaseMeta>,
    pub(super) bytes: Option<Vec<u8>>,
    /// The case's key as the judge used it (read once per upload).
    pub(super) key: Option<crate::case::seal::CaseKey>,
}

fn decode_changes(case: CaseId, chunks: Vec<Vec<u8>>) -> Result<Whole, SessionError> {
    let mut changes: Vec<automerge::Change> = Vec::with_capacity(chunks.len());
    let mut seen = std::collections::HashSet::new();
    for bytes in chunks {
        let change = automerge::Change::from_bytes(bytes).map_err(|e| {
            SessionError::Protocol(format!(
                "an uploaded change of case {case} does not decode: {e}"
            ))
        })?;
        // A change sent twice is one change.
        if seen.insert(change.hash()) {
            changes.push(change);
        }
    }
    let hashes: Vec<ChangeHash> = changes.iter().map(automerge::Change::hash).collect();
    let deps: std::collections::HashSet<ChangeHash> = changes
        .iter()
        .flat_map(|c| c.deps().iter().copied())
        .collect();
    let mut heads: Vec<ChangeHash> = hashes
        .iter()
        .filter(|h| !deps.contains(h))
        .copied()
        .collect();
    heads.sort();
    // Joined in causal order: Automerge then applies each change as it
    // comes instead of queueing those whose dependencies follow.
    let changes = causal_order(changes);
    let joined = changes
        .iter()
        .flat_map(|c| c.raw_bytes().iter().copied())
        .collect();
    Ok(Whole {
        joined,
        changes,
        hashes,
        heads,
    })
}

/// `changes` ordered so that each comes after those of them it depends on,
/// as `Automerge::get_changes` returns them (the judge reads an object's
/// creation before its use). Dependencies outside the set are ignored.
fn causal_order(changes: Vec<automerge::Change>) -> Vec<automerge::Change> {
    use std::collections::HashMap;
    let index: HashMap<ChangeHash, usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.hash(), i))
        .collect();
    let mut waiting_on = vec![0usize; changes.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); changes.len()];
    for (i, c) in changes.iter().enumerate() {
        for d in c.deps() {
            if let Some(&j) = index.get(d) {
                waiting_on[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    let mut ready: Vec<usize> = (0..changes.len()).filter(|&i| waiting_on[i] == 0).collect();
    let mut order = Vec::with_capacity(changes.len());
    while let Some(i) = ready.pop() {
        order.push(i);
        for &k in &dependents[i] {
            waiting_on[k] -= 1;
            if waiting_on[k] == 0 {
                ready.push(k);
            }
        }
    }
    // Hashes cover the dependencies, so there is no cycle and every change
    // is placed; `order` is a permutation of the indices.
    let mut slots: Vec<Option<automerge::Change>> = changes.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

impl<S: Storage> Relay<S> {
    /// A device's sync message for `case`.
    pub(super) fn sync(
        &mut self,
        s: &mut RelaySession,
        case: CaseId,
        bytes: &[u8],
        now: Millis,
    ) -> Result<RelayOutput, SessionError> {
        let msg = Message::decode(bytes).map_err(|e| {
            SessionError::Protocol(format!("malformed sync message for case {case}: {e}"))
        })?;
        self.upload(s, case, Incoming::Sync(msg), now)
    }

    /// A device's stored changes of `case`, sent whole because the relay
    /// never confirmed any of them to it (feature `upload`). The device
    /// loads nothing to send them, and the case takes one message instead
    /// of a sync round's three.
    pub(super) fn upload_changes(
        &mut self,
        s: &mut RelaySession,
        case: CaseId,
        changes: Vec<Vec<u8>>,
        now: Millis,
    ) -> Result<RelayOutput, SessionError> {
        self.upload(s, case, Incoming::Changes(changes), now)
    }

    /// [`Relay::upload_inner`], with a quarantined case refused alone
    /// rather than ending the device's connection.
    fn upload(
        &mut self,
        s: &mut RelaySession,
        case: CaseId,
        incoming: Incoming,
        now: Millis,
    ) -> Result<RelayOutput, SessionError> {
        match self.upload_inner(s, case, incoming, now) {
            Err(SessionError::Storage(StorageError::Corrupt { .. }))
                if self.is_quarantined(case) =>
            {
                s.states.remove(&case);
                Ok(Self::refuse(case, &soundness::unavailable(case)))
            }
            other => other,
        }
    }

    fn upload_inner(
        &mut self,
        s: &mut RelaySession,
        case: CaseId,
        incoming: Incoming,
        now: Millis,
    ) -> Result<RelayOutput, SessionError> {
        // The owner record as stored: its bytes are what the commit expects
        // to find unchanged (another relay on the same database may commit
        // to the case meanwhile).
        let stored_meta = self
            .storage
            .get(&keys::meta(case))
            .map_err(SessionError::Storage)?;
        let meta = stored_meta
            .as_deref()
            .map(queries::decode_meta)
            .transpose()
            .map_err(SessionError::Storage)?;
        let known = meta.is_some();
        if let Some(m) = &meta {
            self.drop_if_stale(case, m.seq);
        }
        let p = &s.principal;
        if let Some(m) = &meta {
            if !access::can_read(p, m) {
                // Forget anything kept from when the case was visible (a
                // technician unassigned since).
                s.states.remove(&case);
                return Ok(Self::refuse(case, &not_found(case)));
            }
        }
        let too_big = match &incoming {
            Incoming::Sync(msg) => {
                upload_too_large(&msg.changes.iter().collect::<Vec<_>>(), &self.policy)
            }
            Incoming::Changes(chunks) => upload_too_large(
                &chunks.iter().map(Vec::as_slice).collect::<Vec<_>>(),
                &self.policy,
            ),
        };
        if let Some(too_big) = too_big {
            return Ok(Self::refuse(case, &too_big));
        }
        // Decoded before anything is loaded: bytes that are not changes
        // cost no more than their parsing.
        let incoming = match incoming {
            Incoming::Sync(msg) => Decoded::Sync(msg),
            Incoming::Changes(chunks) => Decoded::Whole(decode_changes(case, chunks)?),
        };
        let (mut doc, mut weight, stored_bytes) =
            match self.doc(case).map_err(SessionError::Storage)? {
                // `doc` just cached it and trimming never evicts the newest.
                Some(_) => self
                    .cache_pop(case)
                    .map(|c| (c.doc, c.weight, c.bytes))
                    .ok_or_else(|| {
                        SessionError::Storage(corrupt("relay cache", "a loaded case was evicted"))
                    })?,
                None => (Automerge::new(), estimated_weight(0), 0),
            };
        // A case that does not exist yet gets a throwaway sync state until
        // an upload creates it: probes for random ids must cost nothing
        // that outlives the message.
        let mut scratch = State::new();
        let state = if known {
            s.states
                .get_or_try_insert(case, || {
                    docs::load_sync_state(&self.storage, case, p.device.as_str())
                })
                .map_err(SessionError::Storage)?
        } else {
            &mut scratch
        };
        let before = doc.get_heads();
        // What the device says it holds now supersedes what was pushed to
        // it (see `deliver`).
        s.held.remove(&case);
        // For stored changes sent whole: their hashes and heads.
        let mut sent = None;
        let applied = match incoming {
            Decoded::Sync(msg) => {
                let needed = msg.need.clone();
                let r = doc.receive_sync_message(state, msg);
                crate::protocol::forget_needed(state, &needed);
                r
            }
            Decoded::Whole(whole) => {
                let r = doc.load_incremental(&whole.joined).map(|_| ());
                sent = Some((whole.hashes, whole.heads, whole.changes));
                r
            }
        };
        if let Err(e) = applied {
            // The popped document may hold part of the upload: drop it (the
            // next use reloads it from storage) and start the peer afresh.
            *state = State::new();
            return Err(SessionError::Protocol(format!(
                "an upload for case {case} could not be applied: {e}"
            )));
        }
        // Stored changes all applied: the device holds these heads (what
        // `deliver` pushes after). Some not applied (dependencies the
        // relay lacks): the case moves to the sync protocol, from scratch.
        let whole = match &sent {
            Some((hashes, heads, _)) => {
                let all = doc.get_missing_deps(hashes).is_empty();
                *state = State::new();
                if all {
                    state.their_heads = Some(heads.clone());
                }
                Some(all)
            }
            None => None,
        };
        // A new case that took every change sent: those are its changes,
        // already decoded (asking the document for them re-encodes each).
        let changes = match sent {
            Some((_, _, changes)) if whole == Some(true) && before.is_empty() => changes,
            _ => doc.get_changes(&before),
        };
        let mut changed = None;
        let mut changed_store = None;
        let mut new_summary = None;
        if !changes.is_empty() {
            let entries_before = if known {
                self.entry_count(case).map_err(SessionError::Storage)?
            } else {
                Some(0)
            };
            let key = self.case_key(case).map_err(SessionError::Storage)?;
            let upload = judge::Upload {
                case,
                doc: &doc,
                before: &before,
                changes: &changes,
                stored_bytes,
                entries_before,
                principal: &s.principal,
                policy: &self.policy,
                now,
                key: key.as_ref(),
            };
            let verdict = match judge::judge(&upload) {
                Ok(v) => v,
                // A store relay takes what its upstream accepted even where
                // its own rules (its principal, an older policy) would not:
                // the upstream judged it by its author's token. Its entry
                // count is kept as it was; only the edge's limit reads it.
                Err(_) if s.upstream => judge::Verdict {
                    entries: entries_before.unwrap_or(0),
                    ..judge::Verdict::default()
                },
                Err(refusal) => {
                    // Nothing is stored and the document is not cached, so
                    // the next use reloads what was stored before this
                    // message.
                    tracing::info!(case = %case, device = %s.principal.device, code = %refusal.code, "refused an upload");
                    *state = State::new();
                    return Ok(Self::refuse(case, &refusal));
                }
            };
            let p = s.principal.clone();
            let kind = meta.as_ref().map(|m| m.kind.clone());
            let stored = Stored {
                meta,
                bytes: stored_meta,
                key,
            };
            let result = self.commit(case, &doc, &changes, stored, &p, now, state, &verdict);
            let committed_seq = match result {
                Ok((store, summary, seq)) => {
                    changed_store = Some(store);
                    new_summary = Some(Box::new(summary));
                    self.recent
                        .record(case, before.clone(), doc.get_heads(), &changes);
                    seq
                }
                Err(StorageError::Conflict { .. }) => {
                    // Another relay on the same database committed to the
                    // case since it was read here. Nothing was stored; the
                    // case is loaded again with that commit, and the device
                    // is answered as a new peer: the sync protocol makes it
                    // send again whatever the relay still lacks.
                    tracing::debug!(case = %case, "another relay committed to the case first; asking the device again");
                    *state = State::new();
                    drop(doc);
                    let frames = match self.doc(case).map_err(SessionError::Storage)? {
                        Some(fresh) => fresh
                            .generate_sync_message(state)
                            .map(|m| sync_frames(case, m.encode(), self.frame_limit))
                            .unwrap_or_default(),
                        None => Vec::new(),
                    };
                    return Ok(RelayOutput {
                        frames,
                        ..RelayOutput::default()
                    });
                }
                Err(e) => {
                    // Nothing was stored and the document is not cached
                    // again: the next use loads what is stored.
                    *state = State::new();
                    return Err(SessionError::Storage(e));
                }
            };
            tracing::debug!(case = %case, changes = changes.len(), kind = kind.as_deref().unwrap_or("new"), "accepted changes");
            let added: usize = changes.iter().map(|c| c.raw_bytes().len()).sum();
            weight += 16 * added;
            changed = Some(case);
            let fresh = (!known).then(|| std::mem::take(state));
            if let Some(st) = fresh {
                s.states.insert(case, st);
            }
            fleet::on_upload(&self.storage, s, now);
            let reply = self.upload_reply(s, case, &doc, whole);
            self.cache_put(case, doc, weight, stored_bytes + added, committed_seq);
            return Ok(RelayOutput {
                frames: reply,
                needs_flush: true,
                changed,
                changed_store,
                policy_published: false,
                summary: new_summary,
            });
        }
        let reply = match whole {
            // Nothing new, nothing stored: an unknown case's scratch state.
            None | Some(false) => doc
                .generate_sync_message(state)
                .map(|m| sync_frames(case, m.encode(), self.frame_limit))
                .unwrap_or_default(),
            Some(true) => self.upload_reply(s, case, &doc, whole),
        };
        // A document that was not stored before is a probe (or the first
        // message of a new case): not worth a cache slot.
        if let Some(m) = &meta {
            self.cache_put(case, doc, weight, stored_bytes, m.seq);
        }
        Ok(RelayOutput {
            frames: reply,
            needs_flush: changed.is_some(),
            changed,
            changed_store,
            policy_published: false,
            summary: new_summary,
        })
    }

    /// The answer to an upload that changed the case: `Stored` for stored
    /// changes that all applied (`whole` is `Some(true)`), otherwise the
    /// next sync message.
    fn upload_reply(
        &self,
        s: &mut RelaySession,
        case: CaseId,
        doc: &Automerge,
        whole: Option<bool>,
    ) -> Vec<Frame> {
        if whole == Some(true) {
            return vec![Frame::Stored {
                doc: case,
                heads: doc.get_heads().iter().map(|h| h.0).collect(),
            }];
        }
        s.states
            .get_mut(&case)
            .and_then(|st| doc.generate_sync_message(st))
            .map(|m| sync_frames(case, m.encode(), self.frame_limit))
            .unwrap_or_default()
    }

    /// Stores accepted changes with their audit records, updates the owner
    /// record and moves the case to the head of the change sequence, all in
    /// one batch. The caller must flush before acknowledging. Returns the
    /// owning store.
    ///
    /// The batch takes the next number of the change sequence as it is
    /// applied ([`Storage::apply_sequenced`]), and only if the owner record
    /// is still what `stored` says: if another relay on the same database
    /// committed to the case since, nothing is written and the error is
    /// [`StorageError::Conflict`] (the caller drops its copy of the case).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn commit(
        &mut self,
        case: CaseId,
        doc: &Automerge,
        changes: &[automerge::Change],
        stored: Stored,
        p: &Principal,
        now: Millis,
        state: &State,
        verdict: &judge::Verdict,
    ) -> Result<(StoreId, CaseSummary, u64), StorageError> {
        let Stored {
            meta,
            bytes: meta_bytes,
            mut key,
        } = stored;
        let is_new = meta.is_none();
        let entries_before = if is_new {
            0
        } else {
            self.entry_count(case)?.unwrap_or(0)
        };
        let mut b = Batch::new();
        if meta.is_none() {
            // A new case arrives whole: keep it as one compacted snapshot, so
            // that fresh devices fetch it as one small chunk instead of every
            // change it was made of.
            b.put(crate::storage::keys::snapshot(case), doc.save());
        } else {
            docs::stage_changes(&mut b, case, changes);
        }
        let rec = AuditRecord {
            user: p.user.clone(),
            device: p.device.clone(),
            received_at: now,
            claimed_at: verdict.claimed_at.map(Millis),
        };
        b.put(
            keys::entries(case),
            (verdict.entries as u64).to_be_bytes().to_vec(),
        );
        let mut fixes = self.clock_fixes(case)?;
        fixes.extend(verdict.clock_fixes.iter().cloned());
        if !verdict.clock_fixes.is_empty() {
            b.put(
                keys::clock(case),
                postcard::to_stdvec(&fixes).map_err(|e| corrupt("clock fixes", e))?,
            );
        }
        let rec_bytes = postcard::to_stdvec(&rec).map_err(|e| corrupt("audit", e))?;
        for c in changes {
            b.put(keys::audit(case, &c.hash().0), rec_bytes.clone());
        }
        // The assignee comes from assignment entries the relay has just
        // validated as written by this authenticated principal (or accepted
        // earlier from others), never from an unchecked field.
        // Assignments are ordered by time, so a far-future claim must not
        // keep one "latest" for ever: read them with the trusted times.
        let fixed = (!fixes.is_empty()).then(|| {
            let mut fixed = doc.fork();
            judge::apply_clock_fixes(&mut fixed, &fixes);
            fixed
        });
        let seen = fixed.as_ref().unwrap_or(doc);
        let assignee = crate::case::service::assignee(seen).and_then(|u| UserId::new(u).ok());
        let meta = match meta {
            Some(mut m) => {
                b.delete(keys::all(m.seq));
                b.delete(keys::store(&m.store, m.seq));
                m.last_received = now;
                m.assignee = assignee;
                m
            }
            None => CaseMeta {
                store: p.store.clone(),
                kind: crate::case::read::string(doc, &ROOT, schema::root::KIND).unwrap_or_default(),
                created_by: p.user.clone(),
                created_device: p.device.clone(),
                first_received: now,
                last_received: now,
                // Set when the sequence number is taken.
                seq: 0,
                assignee,
            },
        };
        // The read model, in the same batch as the change it follows.
        let mut view = CaseView::without_timeline(seen, &case.to_string(), &self.policy);
        if crate::case::seal::is_erased(doc) && self.storage.get(&keys::erasure(case))?.is_none() {
            // Erased at another relay (a store relay's upstream): the key
            // goes with the change that says so.
            b.delete(keys::case_key(case));
            b.put(
                keys::erasure(case),
                serde_json::to_vec(&super::Erasure {
                    at: now,
                    by: p.user.clone(),
                })
                .map_err(|e| corrupt("erasure record", e))?,
            );
            key = None;
        }
        crate::case::seal::reveal_customer(&mut view.customer, key.as_ref(), case);
        let summary = CaseSummary::derive(
            &view,
            seen,
            &meta,
            (p.user.as_str(), p.device.as_str()),
            self.policy.version,
            &self.salt,
        );
        b.put(keys::summary(case), summary_bytes(&summary)?);
        // The audit feed, in the same batch: what this upload did.
        let before = if is_new { None } else { self.summary(case)? };
        let mut record = feed::FeedRecord {
            seq: 0,
            case,
            case_no: summary.case_no.clone(),
            store: meta.store.to_string(),
            kind: meta.kind.clone(),
            user: p.user.to_string(),
            device: p.device.to_string(),
            received_at: now.0,
            claimed_at: verdict.claimed_at,
            changes: u32::try_from(changes.len()).unwrap_or(u32::MAX),
            effect: feed::effect(
                before.as_ref(),
                &summary,
                verdict.entries as i64 - entries_before as i64,
            ),
        };
        let index = keys::index_value(case, &doc.get_heads());
        docs::stage_sync_state(&mut b, case, p.device.as_str(), state);
        b.expect(keys::meta(case), meta_bytes);
        let mut meta = meta;
        // Only the sequence-numbered keys are written once the number is
        // known; the rest of the batch was built above.
        let seq = self.storage.apply_sequenced(keys::SEQ, &mut |seq| {
            // Called once: the batch built above moves in.
            let mut b = std::mem::take(&mut b);
            meta.seq = seq;
            record.seq = seq;
            let bytes = feed::encode(&record)?;
            for k in feed::keys(&record) {
                b.put(k, bytes.clone());
            }
            b.put(keys::all(seq), index.clone());
            b.put(keys::store(&meta.store, seq), index.clone());
            b.put(
                keys::meta(case),
                postcard::to_stdvec(&meta).map_err(|e| corrupt("case meta", e))?,
            );
            Ok(b)
        })?;
        // Not flushed here: the output says `needs_flush`, and the shell
        // flushes once for every write made meanwhile.
        self.seq = self.seq.max(seq);
        if self.follows {
            self.own.insert(seq);
        }
        Ok((meta.store, summary, seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;

    /// Changes sent in any order come out each after its dependencies,
    /// duplicates once, and the heads are the changes nothing depends on.
    #[test]
    fn uploaded_changes_are_put_in_causal_order() {
        let mut a = Automerge::new();
        for i in 0..6i64 {
            let mut t = a.transaction();
            t.put(automerge::ROOT, format!("k{i}"), i).unwrap();
            t.commit();
        }
        // A concurrent branch from the third change.
        let mut b = a.fork_at(&[a.get_changes(&[])[2].hash()]).unwrap();
        let mut t = b.transaction();
        t.put(automerge::ROOT, "side", 1).unwrap();
        t.commit();
        a.merge(&mut b).unwrap();
        let mut chunks: Vec<Vec<u8>> = a
            .get_changes(&[])
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect();
        chunks.reverse();
        chunks.push(chunks[0].clone());
        let whole = decode_changes(CaseId::from_bytes([1; 16]), chunks).unwrap();
        assert_eq!(whole.changes.len(), 7, "a duplicate counts once");
        let mut placed = std::collections::HashSet::new();
        for c in &whole.changes {
            for d in c.deps() {
                assert!(placed.contains(d), "a change came before its dependency");
            }
            placed.insert(c.hash());
        }
        assert_eq!(whole.heads, a.get_heads());
    }
}
