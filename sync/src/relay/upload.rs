//! A device's sync message: applied, judged, and if accepted committed with
//! its audit records, owner record, read-model row and feed entry in one
//! batch.

use super::cache::estimated_weight;
use super::queries::summary_bytes;
use super::session::sync_frames;
use super::*;

/// Refuses an oversized upload before any of it is applied: applying is
/// the expensive part, and the relay holds its lock meanwhile. The whole
/// message is held to the case limit; a change chunk to the change limit,
/// read from its header (an Automerge chunk starts with 4 magic bytes and
/// a 4-byte checksum, then its type: 1 a change, 2 a compressed change,
/// whose size is known only once inflated, which costs far less than
/// applying it).
pub(super) fn upload_too_large(msg: &Message, policy: &crate::policy::Policy) -> Option<Refusal> {
    let bytes: usize = msg.changes.iter().map(|c| c.len()).sum();
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
    for chunk in msg.changes.iter() {
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

impl<S: Storage> Relay<S> {
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
        let meta = self.meta(case).map_err(SessionError::Storage)?;
        let known = meta.is_some();
        let p = &s.principal;
        if let Some(m) = &meta {
            if !access::can_read(p, m) {
                // Forget anything kept from when the case was visible (a
                // technician unassigned since).
                s.states.remove(&case);
                return Ok(Self::refuse(case, &not_found(case)));
            }
        }
        if let Some(too_big) = upload_too_large(&msg, &self.policy) {
            return Ok(Self::refuse(case, &too_big));
        }
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
            match s.states.entry(case) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    docs::load_sync_state(&self.storage, case, p.device.as_str())
                        .map_err(SessionError::Storage)?,
                ),
            }
        } else {
            &mut scratch
        };
        let before = doc.get_heads();
        let needed = msg.need.clone();
        // What the device says it holds now supersedes what was pushed to
        // it (see `deliver`).
        s.held.remove(&case);
        if let Err(e) = doc.receive_sync_message(state, msg) {
            // The popped document may hold part of the message: drop it (the
            // next use reloads it from storage) and start the peer afresh.
            *state = State::new();
            return Err(SessionError::Protocol(format!(
                "sync message for case {case} could not be applied: {e}"
            )));
        }
        crate::protocol::forget_needed(state, &needed);
        let changes = doc.get_changes(&before);
        let mut changed = None;
        let mut changed_store = None;
        let mut new_summary = None;
        if !changes.is_empty() {
            let entries_before = if known {
                self.entry_count(case).map_err(SessionError::Storage)?
            } else {
                Some(0)
            };
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
            };
            let verdict = match judge::judge(&upload) {
                Ok(v) => v,
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
            let result = self.commit(case, &doc, &changes, meta, &p, now, state, &verdict);
            match result {
                Ok((store, summary)) => {
                    changed_store = Some(store);
                    new_summary = Some(Box::new(summary));
                    self.recent
                        .record(case, before.clone(), doc.get_heads(), &changes);
                }
                Err(e) => {
                    *state = State::new();
                    return Err(SessionError::Storage(e));
                }
            }
            tracing::debug!(case = %case, changes = changes.len(), kind = kind.as_deref().unwrap_or("new"), "accepted changes");
            let added: usize = changes.iter().map(|c| c.raw_bytes().len()).sum();
            weight += 16 * added;
            changed = Some(case);
            let fresh = (!known).then(|| std::mem::take(state));
            if let Some(st) = fresh {
                s.states.insert(case, st);
            }
            fleet::on_upload(&self.storage, s, now);
            let reply = match s.states.get_mut(&case) {
                Some(st) => doc.generate_sync_message(st),
                None => None,
            };
            self.cache_put(case, doc, weight, stored_bytes + added);
            return Ok(RelayOutput {
                frames: reply
                    .map(|m| sync_frames(case, m.encode(), self.frame_limit))
                    .unwrap_or_default(),
                needs_flush: true,
                changed,
                changed_store,
                policy_published: false,
                summary: new_summary,
            });
        }
        let reply = doc.generate_sync_message(state);
        // A document that was not stored before is a probe (or the first
        // message of a new case): not worth a cache slot.
        if known {
            self.cache_put(case, doc, weight, stored_bytes);
        }
        Ok(RelayOutput {
            frames: reply
                .map(|m| sync_frames(case, m.encode(), self.frame_limit))
                .unwrap_or_default(),
            needs_flush: changed.is_some(),
            changed,
            changed_store,
            policy_published: false,
            summary: new_summary,
        })
    }

    /// Stores accepted changes with their audit records, updates the owner
    /// record and moves the case to the head of the change sequence, all in
    /// one batch. The caller must flush before acknowledging. Returns the
    /// owning store.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn commit(
        &mut self,
        case: CaseId,
        doc: &Automerge,
        changes: &[automerge::Change],
        meta: Option<CaseMeta>,
        p: &Principal,
        now: Millis,
        state: &State,
        verdict: &judge::Verdict,
    ) -> Result<(StoreId, CaseSummary), StorageError> {
        let seq = self.seq + 1;
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
                m.seq = seq;
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
                seq,
                assignee,
            },
        };
        // The read model, in the same batch as the change it follows.
        let view = CaseView::without_timeline(seen, &case.to_string(), &self.policy);
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
        let record = feed::FeedRecord {
            seq,
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
        let bytes = feed::encode(&record)?;
        for k in feed::keys(&record) {
            b.put(k, bytes.clone());
        }
        let index = keys::index_value(case, &doc.get_heads());
        b.put(keys::all(seq), index.clone());
        b.put(keys::store(&meta.store, seq), index);
        b.put(
            keys::meta(case),
            postcard::to_stdvec(&meta).map_err(|e| corrupt("case meta", e))?,
        );
        b.put(keys::SEQ.to_vec(), seq.to_be_bytes().to_vec());
        docs::stage_sync_state(&mut b, case, p.device.as_str(), state);
        self.storage.apply(b)?;
        // Not flushed here: the output says `needs_flush`, and the shell
        // flushes once for every write made meanwhile.
        self.seq = seq;
        Ok((meta.store, summary))
    }
}
