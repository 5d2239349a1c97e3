//! A store relay's side of its link to the upstream relay (`serve
//! --upstream`): which cases the upstream has that the store lacks, taking
//! them in, and which changes made in the store the upstream still lacks,
//! grouped by the tablet that made them so the upstream judges and records
//! each run as its author's.
//!
//! The store relay is an ordinary relay for its tablets. Its link keeps, in
//! the same storage, under `rE`:
//!
//! | key | value |
//! |---|---|
//! | `rEc` | the upstream's sequence the store has taken in (u64 BE) |
//! | `rEs` | the store's own sequence whose changes the upstream holds (u64 BE) |
//! | `rEh` case | heads the upstream is known to hold (32 bytes each) |
//! | `rEt` device | the token the device last connected with (the upstream checks it) |
//! | `rEw` hash | a case (16 bytes) whose evidence blob the upstream may still lack |
//!
//! Losing any of them costs only work: the upstream takes a change it
//! already holds as a no-op, and an announcement taken twice fetches
//! nothing new.

use super::*;
use automerge::ReadDoc;

const CURSOR: &[u8] = b"rEc";
const SENT: &[u8] = b"rEs";
const HEADS: &[u8] = b"rEh";
const TOKEN: &[u8] = b"rEt";
const EVIDENCE: &[u8] = b"rEw";

fn evidence_key(hash: &[u8; 32]) -> Vec<u8> {
    [EVIDENCE, &hash[..]].concat()
}

fn heads_key(case: CaseId) -> Vec<u8> {
    [HEADS, case.as_bytes()].concat()
}

fn token_key(device: &DeviceId) -> Vec<u8> {
    [TOKEN, device.as_str().as_bytes()].concat()
}

/// Changes of one case made in the store that the upstream lacks.
#[derive(Debug)]
pub struct EdgeUpload {
    /// The store relay's sequence of the case's latest change.
    pub seq: u64,
    /// The case.
    pub case: CaseId,
    /// The changes in causal order, cut into runs of one device each.
    pub runs: Vec<EdgeRun>,
    /// The case's heads once the upstream holds every run.
    pub heads: Vec<[u8; 32]>,
}

/// Consecutive changes of one case made by one device.
#[derive(Debug)]
pub struct EdgeRun {
    /// The device that uploaded them to the store relay.
    pub device: DeviceId,
    /// The token it last connected with, if the store relay has one.
    pub token: Option<String>,
    /// Each change's bytes.
    pub changes: Vec<Vec<u8>>,
}

fn heads_bytes(heads: &[[u8; 32]]) -> Vec<u8> {
    heads.concat()
}

fn parse_heads(bytes: &[u8]) -> Result<Vec<ChangeHash>, StorageError> {
    if !bytes.len().is_multiple_of(32) {
        return Err(corrupt("upstream heads", "not a multiple of 32 bytes"));
    }
    Ok(bytes
        .chunks_exact(32)
        .filter_map(|c| <[u8; 32]>::try_from(c).ok())
        .map(ChangeHash)
        .collect())
}

impl<S: Storage> Relay<S> {
    /// The session a store relay takes its upstream's changes in: they
    /// were judged there, by their authors' tokens, so a refusal by this
    /// relay's own judge does not keep them out.
    pub fn upstream_session(&self, principal: Principal) -> RelaySession {
        let mut s = self.session(principal);
        s.upstream = true;
        s.upload = true;
        s
    }

    /// The upstream's sequence this store relay has taken in.
    pub fn upstream_cursor(&self) -> Result<u64, StorageError> {
        crate::storage::counter_value(CURSOR, self.storage.get(CURSOR)?.as_deref())
    }

    /// Records that everything the upstream announced up to `seq` is taken
    /// in and durable here.
    pub fn set_upstream_cursor(&mut self, seq: u64) -> Result<(), StorageError> {
        let mut b = Batch::new();
        b.put(CURSOR.to_vec(), seq.to_be_bytes().to_vec());
        self.storage.apply(b)
    }

    /// Keeps the token `device` connected with, for relaying its changes.
    pub fn remember_token(&mut self, device: &DeviceId, token: &str) -> Result<(), StorageError> {
        let key = token_key(device);
        if self.storage.get(&key)?.as_deref() == Some(token.as_bytes()) {
            return Ok(());
        }
        let mut b = Batch::new();
        b.put(key, token.as_bytes().to_vec());
        self.storage.apply(b)
    }

    fn upstream_heads(&self, case: CaseId) -> Result<Vec<ChangeHash>, StorageError> {
        match self.storage.get(&heads_key(case))? {
            Some(b) => parse_heads(&b),
            None => Ok(Vec::new()),
        }
    }

    /// Records that the upstream holds `case` up to `heads`.
    pub fn set_upstream_heads(
        &mut self,
        case: CaseId,
        heads: &[[u8; 32]],
    ) -> Result<(), StorageError> {
        let mut b = Batch::new();
        b.put(heads_key(case), heads_bytes(heads));
        self.storage.apply(b)
    }

    /// Of the cases the upstream announced, those this relay lacks some of
    /// the heads of (to fetch). For the others, records that the upstream
    /// holds what this relay holds.
    pub fn upstream_missing(&mut self, docs: &[DocHeads]) -> Result<Vec<CaseId>, StorageError> {
        let mut missing = Vec::new();
        let mut b = Batch::new();
        for d in docs {
            let held = match self.doc(d.doc)? {
                Some(doc) => d
                    .heads
                    .iter()
                    .all(|h| doc.get_change_by_hash(&ChangeHash(*h)).is_some()),
                None => false,
            };
            if held {
                b.put(heads_key(d.doc), heads_bytes(&d.heads));
            } else {
                missing.push(d.doc);
            }
        }
        self.storage.apply(b)?;
        Ok(missing)
    }

    /// The next case changed in the store whose changes the upstream
    /// lacks, made durable here; `None` when the upstream has everything.
    /// Changes that came from the upstream (recorded as `own`, this relay's
    /// identity there) are never sent back.
    pub fn next_upload(&mut self, own: &DeviceId) -> Result<Option<EdgeUpload>, StorageError> {
        let sent = crate::storage::counter_value(SENT, self.storage.get(SENT)?.as_deref())?;
        let start = keys::all(sent.saturating_add(1));
        let end = keys::all(self.durable_seq.saturating_add(1));
        let rows = self.storage.scan(&start, &end, 64)?;
        for (k, v) in rows {
            let (Some(seq), Some((case, _))) = (keys::seq_of(&k), keys::parse_index_value(&v))
            else {
                return Err(corrupt("case index", "bad entry"));
            };
            let known = self.upstream_heads(case)?;
            let (changes, heads) = match self.doc(case)? {
                Some(doc) => {
                    // Heads recorded for the upstream are ones this relay
                    // held; one it no longer finds means nothing is known.
                    let have: Vec<ChangeHash> = known
                        .iter()
                        .copied()
                        .filter(|h| doc.get_change_by_hash(h).is_some())
                        .collect();
                    let since = if have.len() == known.len() {
                        have
                    } else {
                        Vec::new()
                    };
                    let changes: Vec<(ChangeHash, Vec<u8>)> = doc
                        .get_changes(&since)
                        .into_iter()
                        .map(|c| (c.hash(), c.raw_bytes().to_vec()))
                        .collect();
                    let heads: Vec<[u8; 32]> = doc.get_heads().iter().map(|h| h.0).collect();
                    (changes, heads)
                }
                None => (Vec::new(), Vec::new()),
            };
            let mut runs: Vec<EdgeRun> = Vec::new();
            for (hash, bytes) in changes {
                let device = match self.storage.get(&keys::audit(case, &hash.0))? {
                    Some(rec) => {
                        AuditRecord::decode(&rec)
                            .map_err(|e| corrupt("audit", e))?
                            .device
                    }
                    // A change without an audit record was not uploaded
                    // here: it came within a case from the upstream.
                    None => continue,
                };
                if &device == own {
                    continue;
                }
                match runs.last_mut() {
                    Some(run) if run.device == device => run.changes.push(bytes),
                    _ => runs.push(EdgeRun {
                        device,
                        token: None,
                        changes: vec![bytes],
                    }),
                }
            }
            if runs.is_empty() {
                self.upload_done(seq, case, &heads, false)?;
                continue;
            }
            for run in &mut runs {
                run.token = self
                    .storage
                    .get(&token_key(&run.device))?
                    .and_then(|t| String::from_utf8(t).ok());
            }
            return Ok(Some(EdgeUpload {
                seq,
                case,
                runs,
                heads,
            }));
        }
        Ok(None)
    }

    /// Records that the upstream holds every change of `case` up to
    /// `heads`, and that the store's sequence up to `seq` is passed on.
    /// With `evidence`, the case's evidence blobs are noted as ones the
    /// upstream may lack ([`Relay::evidence_to_pass`]).
    pub fn upload_done(
        &mut self,
        seq: u64,
        case: CaseId,
        heads: &[[u8; 32]],
        evidence: bool,
    ) -> Result<(), StorageError> {
        let mut b = Batch::new();
        if evidence {
            if let Some(doc) = self.doc(case)? {
                for e in crate::case::evidence::list(doc) {
                    if e.removed.is_some() {
                        continue;
                    }
                    if let Some(hash) = crate::case::blob::parse_hash(&e.hash) {
                        b.put(evidence_key(&hash), case.as_bytes().to_vec());
                    }
                }
            }
        }
        if !heads.is_empty() {
            b.put(heads_key(case), heads_bytes(heads));
        }
        b.put(SENT.to_vec(), seq.to_be_bytes().to_vec());
        self.storage.apply(b)
    }

    /// Evidence blobs of cases passed up that the upstream may still lack,
    /// with the case naming each (at most `limit`).
    pub fn evidence_to_pass(&self, limit: usize) -> Result<Vec<(CaseId, [u8; 32])>, StorageError> {
        // Every key of the prefix sorts before the prefix's successor.
        let rows = self.storage.scan(EVIDENCE, b"rEx", limit)?;
        let mut out = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            let hash: [u8; 32] = k
                .get(EVIDENCE.len()..)
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| corrupt("evidence to pass", "bad key"))?;
            let case: [u8; 16] = v
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("evidence to pass", "bad case id"))?;
            out.push((CaseId::from_bytes(case), hash));
        }
        Ok(out)
    }

    /// The upstream holds the blob `hash` (or will never take it).
    pub fn evidence_passed(&mut self, hash: &[u8; 32]) -> Result<(), StorageError> {
        let mut b = Batch::new();
        b.delete(evidence_key(hash));
        self.storage.apply(b)
    }

    /// Moves past the store's sequence `seq` without the upstream taking
    /// it (it refused the changes): they stay here, and a later change of
    /// the case offers them again.
    pub fn upload_skipped(&mut self, seq: u64) -> Result<(), StorageError> {
        let mut b = Batch::new();
        b.put(SENT.to_vec(), seq.to_be_bytes().to_vec());
        self.storage.apply(b)
    }

    /// Takes in changes of `case` from the upstream, as a case's stored
    /// changes (a push, or a fetched case's changes). Committed like an
    /// upload, so this relay's tablets hear of them.
    pub fn adopt(
        &mut self,
        s: &mut RelaySession,
        case: CaseId,
        changes: Vec<Vec<u8>>,
        now: Millis,
    ) -> Result<RelayOutput, SessionError> {
        if !s.upstream {
            return Err(SessionError::Protocol(
                "only the upstream's session adopts changes".into(),
            ));
        }
        self.upload_changes(s, case, changes, now)
    }

    /// Takes the policy the upstream sent, if newer than the one in force
    /// here: the store's tablets then get it from this relay. Returns
    /// whether it changed.
    pub fn adopt_policy(&mut self, json: &str) -> Result<bool, StorageError> {
        let p =
            crate::policy::Policy::from_json(json).map_err(|e| corrupt("upstream policy", e))?;
        if p.version <= self.policy.version {
            return Ok(false);
        }
        let mut b = Batch::new();
        b.put(keys::POLICY.to_vec(), json.as_bytes().to_vec());
        self.storage.apply(b)?;
        self.storage.flush()?;
        self.reload_policy()
    }

    /// What a store relay's connection to its upstream relays for a device
    /// of the store: `changes` of `case` made by `author`, whose token the
    /// shell has checked. Judged and recorded as the author's; refused
    /// when the connection (`s`) is not a store's staff or supervisor, or
    /// the author is of another store or head office.
    pub fn relayed(
        &mut self,
        s: &mut RelaySession,
        author: Principal,
        case: CaseId,
        changes: Vec<Vec<u8>>,
        now: Millis,
    ) -> Result<RelayOutput, SessionError> {
        let forbidden = |why: String| {
            Ok(Self::refuse(
                case,
                &Refusal::new(RefusalCode::Forbidden, why),
            ))
        };
        if !s.upload {
            return Err(SessionError::Protocol(
                "a relayed upload needs the upload feature agreed in the hello".into(),
            ));
        }
        if !matches!(s.principal.role, Role::Staff | Role::Supervisor) {
            return forbidden(format!(
                "a {} token cannot relay other devices' changes; a store relay connects with a staff or supervisor token of its store",
                s.principal.role
            ));
        }
        if author.store != s.principal.store || author.role == Role::HeadOffice {
            return forbidden(format!(
                "the store relay of store {} may relay changes only of devices of that store, not of a {} of store {}",
                s.principal.store, author.role, author.store
            ));
        }
        let relay_principal = std::mem::replace(&mut s.principal, author);
        let r = self.upload_changes(s, case, changes, now);
        s.principal = relay_principal;
        r
    }
}
