//! The relay's core: stored cases, their owners, the change sequence that
//! lets devices resume, and one [`RelaySession`] per authenticated connection.
//!
//! The shell (the `server` crate) authenticates the connection, builds a
//! [`Principal`], calls [`Relay::session`], and then feeds every frame to
//! [`Relay::handle`]. When [`RelayOutput::changed`] is set it wakes every
//! other session, which calls [`Relay::announce`] to learn what it may see.
//! A change is acknowledged (the relay sends a sync message whose heads
//! include it) only after it is flushed to storage: accepted changes are
//! written but not flushed, and [`RelayOutput::needs_flush`] tells the shell
//! to flush before sending the frames. That lets the shell flush once for
//! many connections' writes (group commit); [`Relay::mark_durable`] then
//! lets announcements cover them.

pub mod blobs;
pub mod feed;
pub mod fleet;
pub mod judge;
mod keys;
pub mod metrics;
pub mod readmodel;
mod recent;
mod stats;
pub mod summary;
pub mod validate;

use crate::access::{self, CaseMeta, Principal, Role};
use crate::case::{schema, CaseKind, CaseView};
use crate::ids::{CaseId, DeviceId, Millis, StoreId, UserId};
use crate::protocol::{DocBytes, DocHeads, Frame, PieceKind, Refusal, RefusalCode, SessionError};
use crate::storage::{docs, Batch, Storage, StorageError};
use automerge::sync::{Message, State, SyncDoc};
use automerge::{Automerge, ChangeHash, ROOT};
use serde::{Deserialize, Serialize};
pub use stats::CacheStats;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use summary::CaseSummary;

/// Cases per [`Frame::Announce`].
const ANNOUNCE_CHUNK: usize = 1000;

/// A [`Frame::Snapshots`] is closed once it holds this many bytes or
/// [`SNAPSHOTS_PER_FRAME`] cases: well under the frame limit, and small
/// enough that a device reports progress often.
const SNAPSHOT_FRAME_BYTES: usize = 1 << 20;
const SNAPSHOTS_PER_FRAME: usize = 250;

/// Who made a change and when the relay accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The authenticated user.
    pub user: UserId,
    /// The authenticated device.
    pub device: DeviceId,
    /// Relay time of receipt.
    pub received_at: Millis,
    /// The latest time the upload's entries claim (device clock), so the
    /// device's skew against the relay stays on record. `None` for records
    /// written before it was kept, and for uploads without entries.
    pub claimed_at: Option<Millis>,
}

/// The record as first written (without `claimed_at`).
#[derive(Deserialize)]
struct AuditRecordV1 {
    user: UserId,
    device: DeviceId,
    received_at: Millis,
}

impl AuditRecord {
    fn decode(bytes: &[u8]) -> Result<AuditRecord, postcard::Error> {
        postcard::from_bytes(bytes).or_else(|e| {
            postcard::from_bytes::<AuditRecordV1>(bytes)
                .map(|v| AuditRecord {
                    user: v.user,
                    device: v.device,
                    received_at: v.received_at,
                    claimed_at: None,
                })
                .map_err(|_| e)
        })
    }

    /// How far the device clock was ahead of the relay (negative: behind),
    /// in milliseconds, if the upload claimed a time.
    pub fn skew_ms(&self) -> Option<i64> {
        self.claimed_at.map(|c| c.0 - self.received_at.0)
    }
}

/// An entry (or, with an empty `log`, a root time such as `created_at`)
/// whose claimed time the relay did not believe, and the time it judged it
/// at instead (its receipt). Head office's view shows the case
/// with these times, so timers count from the earliest trustworthy time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockFix {
    /// The log (root key).
    pub log: String,
    /// The entry id.
    pub entry: String,
    /// The trusted time.
    pub at: i64,
}

/// What handling a frame produced.
#[derive(Debug, Default)]
pub struct RelayOutput {
    /// Frames for this connection, in order.
    pub frames: Vec<Frame>,
    /// A case whose stored content changed: wake the other sessions.
    pub changed: Option<CaseId>,
    /// The store owning `changed`: only its sessions (and head office's)
    /// can be interested.
    pub changed_store: Option<StoreId>,
    /// A new policy was published: wake the other sessions.
    pub policy_published: bool,
    /// The read model's new row for `changed`, to show once flushed.
    pub summary: Option<Box<CaseSummary>>,
    /// The frames acknowledge writes that are applied but not flushed:
    /// flush storage (with [`Relay::flush`], or a flush of the same storage
    /// that begins after this call returned) before sending them, and only
    /// then wake other sessions for `changed`.
    pub needs_flush: bool,
}

/// One authenticated connection.
pub struct RelaySession {
    principal: Principal,
    states: HashMap<CaseId, State>,
    sent_up_to: Option<u64>,
    /// Whether the catch-up after hello has been fully announced.
    caught_up: bool,
    /// Policy version the device holds (as far as the relay knows).
    policy_version: u32,
    /// Relay time this connection last wrote `last_sync` to its device's
    /// record (see `fleet::on_upload`).
    sync_noted: Option<Millis>,
    /// The protocol version the device's frames carry.
    version: u8,
    /// Evidence transfers of this connection.
    blobs: blobs::BlobSession,
    /// Whether the device takes [`Frame::Changes`] pushes.
    push: bool,
    /// Heads each case will have on the device once it has applied what
    /// was pushed to it on this connection (frames arrive in order).
    held: HashMap<CaseId, Vec<ChangeHash>>,
}

impl RelaySession {
    /// The connection's principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Records the protocol version of the device's frames (the shell
    /// calls it with every decoded frame's version; the default is this
    /// build's). A version 3 device gets no [`Frame::Welcome`].
    pub fn set_peer_version(&mut self, version: u8) {
        self.version = version;
    }

    /// The protocol version to answer in.
    pub fn peer_version(&self) -> u8 {
        self.version
    }

    /// Whether the device's hello was handled.
    pub fn hello_done(&self) -> bool {
        self.sent_up_to.is_some()
    }

    /// The connection's evidence transfers.
    pub fn blobs_mut(&mut self) -> &mut blobs::BlobSession {
        &mut self.blobs
    }
}

/// Relay-side filter for listing cases.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    /// Only this owning store.
    pub store: Option<StoreId>,
    /// Only this kind.
    pub kind: Option<CaseKind>,
}

/// A loaded document and the memory it is estimated to take.
struct Cached {
    doc: Automerge,
    weight: usize,
    /// Bytes the case takes in storage (snapshot and change chunks), for
    /// the per-case size limit.
    bytes: usize,
}

/// Estimated memory of a loaded document from its stored size. Measured
/// with automerge 0.12 on case documents: about 54 KiB loaded for 0.8 KiB
/// stored (20 changes), 62 KiB for 2.3 KiB (200 changes); a loaded
/// document has a large fixed part. Rounded up so the bound holds.
fn estimated_weight(stored_bytes: usize) -> usize {
    64 * 1024 + 16 * stored_bytes
}

/// The relay's stored state with a bounded cache of loaded documents.
pub struct Relay<S: Storage> {
    storage: S,
    policy: crate::policy::Policy,
    policy_json: String,
    cache: lru::LruCache<CaseId, Cached>,
    /// Sum of the cached documents' estimated weights.
    cache_weight: usize,
    /// Most estimated bytes the cache may hold.
    cache_budget: usize,
    /// Hits, misses and evictions of the cache, for the shell's metrics.
    cache_stats: CacheStats,
    seq: u64,
    /// Highest sequence known flushed. Announcements stop here: a device
    /// must never move its cursor past a change the relay could still lose,
    /// or a crash would hand that sequence number to a different change the
    /// device would then never be told about.
    durable_seq: u64,
    /// Largest case or sync message sent in one frame; larger ones go in
    /// pieces.
    frame_limit: usize,
    /// Salt of the customer key in the read model (empty: none kept).
    salt: Vec<u8>,
    /// The latest accepted changes of recently changed cases, pushed to
    /// live devices known to hold what came before.
    recent: recent::Recent,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt {
        key: what.to_string(),
        message: e.to_string(),
    }
}

impl<S: Storage> Relay<S> {
    /// Opens the relay over `storage`, keeping at most `cache_docs` documents
    /// loaded (idle ones are evicted least recently used first).
    pub fn open(storage: S, cache_docs: NonZeroUsize) -> Result<Self, StorageError> {
        let seq = storage
            .get(keys::SEQ)?
            .map(|b| {
                <[u8; 8]>::try_from(b.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| corrupt("relay sequence", "not 8 bytes"))
            })
            .transpose()?
            .unwrap_or(0);
        let (policy, policy_json) = match storage.get(keys::POLICY)? {
            Some(b) => {
                let json = String::from_utf8(b).map_err(|e| corrupt("policy", e))?;
                let p =
                    crate::policy::Policy::from_json(&json).map_err(|e| corrupt("policy", e))?;
                (p, json)
            }
            None => {
                let p = crate::policy::Policy::default();
                let json = serde_json::to_string(&p).map_err(|e| corrupt("policy", e))?;
                (p, json)
            }
        };
        let storage_salt = storage.get(keys::SALT)?.unwrap_or_default();
        Ok(Relay {
            storage,
            policy,
            policy_json,
            cache: lru::LruCache::new(cache_docs),
            cache_weight: 0,
            cache_budget: usize::MAX,
            cache_stats: CacheStats::default(),
            seq,
            durable_seq: seq,
            frame_limit: MAX_CASE_FRAME,
            salt: storage_salt,
            recent: recent::Recent::default(),
        })
    }

    /// Makes sure the relay has a salt for customer keys, storing
    /// `candidate` (fresh random bytes from the shell) if it has none yet.
    /// The salt lives with the data so a restored backup keeps counting the
    /// same customer as the same.
    pub fn init_customer_salt(&mut self, candidate: [u8; 32]) -> Result<(), StorageError> {
        if !self.salt.is_empty() {
            return Ok(());
        }
        let mut b = Batch::new();
        b.put(keys::SALT.to_vec(), candidate.to_vec());
        self.storage.apply(b)?;
        self.storage.flush()?;
        self.salt = candidate.to_vec();
        Ok(())
    }

    /// The latest change sequence.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Flushes storage and marks every applied change durable.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        let seq = self.seq;
        self.storage.flush()?;
        self.mark_durable(seq);
        Ok(())
    }

    /// Records that a flush which began after sequence `seq` was applied has
    /// completed, so announcements may cover it. For shells that flush the
    /// storage themselves, outside the relay's lock.
    pub fn mark_durable(&mut self, seq: u64) {
        self.durable_seq = self.durable_seq.max(seq.min(self.seq));
    }

    /// Bounds the loaded documents' estimated memory as well as their
    /// number; the least recently used are evicted first.
    pub fn set_cache_budget(&mut self, bytes: usize) {
        self.cache_budget = bytes;
        self.trim_cache();
    }

    /// Sends cases and sync messages over `bytes` in pieces (default: what
    /// fits in one frame). For tests, and for devices with small buffers.
    pub fn set_frame_limit(&mut self, bytes: usize) {
        self.frame_limit = bytes.clamp(1024, MAX_CASE_FRAME);
    }

    /// Estimated memory of the loaded documents.
    pub fn cached_bytes(&self) -> usize {
        self.cache_weight
    }

    fn cache_put(&mut self, case: CaseId, doc: Automerge, weight: usize, bytes: usize) {
        self.cache_weight += weight;
        if let Some((old_case, old)) = self.cache.push(case, Cached { doc, weight, bytes }) {
            self.cache_weight -= old.weight;
            // `push` also hands back the entry it replaced for the same case,
            // which is not an eviction.
            if old_case != case {
                self.cache_stats.evictions += 1;
            }
        }
        self.trim_cache();
    }

    fn cache_pop(&mut self, case: CaseId) -> Option<Cached> {
        let c = self.cache.pop(&case)?;
        self.cache_weight -= c.weight;
        Some(c)
    }

    fn trim_cache(&mut self) {
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

    /// Starts a session for an authenticated connection.
    pub fn session(&self, principal: Principal) -> RelaySession {
        RelaySession {
            principal,
            states: HashMap::new(),
            sent_up_to: None,
            caught_up: false,
            policy_version: 0,
            sync_noted: None,
            version: crate::protocol::PROTOCOL_VERSION,
            blobs: blobs::BlobSession::new(false),
            push: false,
            held: HashMap::new(),
        }
    }

    /// Persists the session's sync states so the device's next connection
    /// resumes cheaply. Call when the connection ends.
    pub fn end_session(&mut self, s: RelaySession) -> Result<(), StorageError> {
        let mut b = Batch::new();
        for (case, state) in &s.states {
            docs::stage_sync_state(&mut b, *case, s.principal.device.as_str(), state);
        }
        self.storage.apply(b)
    }

    /// The owner record of a case.
    pub fn meta(&self, case: CaseId) -> Result<Option<CaseMeta>, StorageError> {
        self.storage
            .get(&keys::meta(case))?
            .map(|b| postcard::from_bytes(&b).map_err(|e| corrupt("case meta", e)))
            .transpose()
    }

    fn doc(&mut self, case: CaseId) -> Result<Option<&mut Automerge>, StorageError> {
        if self.cache.contains(&case) {
            self.cache_stats.hits += 1;
        } else {
            self.cache_stats.misses += 1;
            let Some(loaded) = docs::load_doc(&self.storage, case)? else {
                return Ok(None);
            };
            if loaded.chunks >= docs::COMPACT_AFTER_CHUNKS {
                docs::compact(&self.storage, case, &loaded.doc)?;
            }
            self.cache_put(
                case,
                loaded.doc,
                estimated_weight(loaded.bytes),
                loaded.bytes,
            );
        }
        Ok(self.cache.get_mut(&case).map(|c| &mut c.doc))
    }

    /// The case as plain data, with the owning store from relay metadata.
    pub fn case_view(&mut self, case: CaseId) -> Result<Option<CaseView>, StorageError> {
        let Some(meta) = self.meta(case)? else {
            return Ok(None);
        };
        let policy = self.policy.clone();
        let fixes = self.clock_fixes(case)?;
        Ok(self.doc(case)?.map(|d| {
            let mut v = if fixes.is_empty() {
                CaseView::from_doc_with(&*d, &case.to_string(), &policy)
            } else {
                // A local copy with the trusted times; never stored.
                let mut fixed = d.fork();
                judge::apply_clock_fixes(&mut fixed, &fixes);
                CaseView::from_doc_with(&fixed, &case.to_string(), &policy)
            };
            v.store_id = Some(meta.store.to_string());
            v
        }))
    }

    /// The case's summary in the read model.
    pub fn summary(&self, case: CaseId) -> Result<Option<CaseSummary>, StorageError> {
        self.storage
            .get(&keys::summary(case))?
            .map(|b| serde_json::from_slice(&b).map_err(|e| corrupt("case summary", e)))
            .transpose()
    }

    /// Derives the summary of `case` from its stored document, as a commit
    /// would (`None` for an unknown case).
    pub fn derive_summary(&mut self, case: CaseId) -> Result<Option<CaseSummary>, StorageError> {
        let Some(meta) = self.meta(case)? else {
            return Ok(None);
        };
        // Who sent the latest change is a fact of the commit, not of the
        // document: kept from the stored summary, else the latest audit
        // record.
        let last = match self.summary(case)? {
            Some(s) => (s.last_user, s.last_device),
            None => self
                .audit(case)?
                .pop()
                .map(|(_, r)| (r.user.to_string(), r.device.to_string()))
                .unwrap_or_default(),
        };
        let fixes = self.clock_fixes(case)?;
        let policy = self.policy.clone();
        let salt = self.salt.clone();
        let Some(doc) = self.doc(case)? else {
            return Ok(None);
        };
        let fixed = (!fixes.is_empty()).then(|| {
            let mut f = doc.fork();
            judge::apply_clock_fixes(&mut f, &fixes);
            f
        });
        let seen = fixed.as_ref().unwrap_or(doc);
        let view = CaseView::from_doc_with(seen, &case.to_string(), &policy);
        Ok(Some(CaseSummary::derive(
            &view,
            seen,
            &meta,
            (&last.0, &last.1),
            policy.version,
            &salt,
        )))
    }

    /// The case's summary, derived afresh (and stored) when it is missing or
    /// was computed under an older policy, whose deadlines may differ.
    pub fn current_summary(&mut self, case: CaseId) -> Result<Option<CaseSummary>, StorageError> {
        match self.summary(case)? {
            Some(s)
                if s.policy_version == self.policy.version
                    && s.schema == summary::SUMMARY_SCHEMA =>
            {
                Ok(Some(s))
            }
            _ => {
                let fresh = self.derive_summary(case)?;
                if let Some(s) = &fresh {
                    let mut b = Batch::new();
                    b.put(keys::summary(case), summary_bytes(s)?);
                    self.storage.apply(b)?;
                }
                Ok(fresh)
            }
        }
    }

    /// Rebuilds the read model from the documents; returns how many cases
    /// it holds. For an upgrade, or a read model suspected wrong.
    pub fn reindex(&mut self) -> Result<usize, StorageError> {
        let cases = self.list(&CaseFilter::default())?;
        let mut n = 0;
        for (case, _) in cases {
            if let Some(summary) = self.derive_summary(case)? {
                let mut b = Batch::new();
                b.put(keys::summary(case), summary_bytes(&summary)?);
                self.storage.apply(b)?;
                n += 1;
            }
        }
        self.storage.flush()?;
        Ok(n)
    }

    /// The entries the case's logs hold, as last counted (`None` for a case
    /// stored before the count was kept).
    fn entry_count(&self, case: CaseId) -> Result<Option<usize>, StorageError> {
        self.storage
            .get(&keys::entries(case))?
            .map(|b| {
                <[u8; 8]>::try_from(b.as_slice())
                    .map(|a| u64::from_be_bytes(a) as usize)
                    .map_err(|_| corrupt("entry count", "not 8 bytes"))
            })
            .transpose()
    }

    /// Entries of `case` whose claimed times the relay did not believe.
    pub fn clock_fixes(&self, case: CaseId) -> Result<Vec<ClockFix>, StorageError> {
        self.storage
            .get(&keys::clock(case))?
            .map(|b| postcard::from_bytes(&b).map_err(|e| corrupt("clock fixes", e)))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// The standard Automerge binary of a case.
    pub fn doc_bytes(&mut self, case: CaseId) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.doc(case)?.map(|d| d.save()))
    }

    /// Every accepted change of a case with who sent it and when.
    pub fn audit(&self, case: CaseId) -> Result<Vec<(String, AuditRecord)>, StorageError> {
        let mut out = Vec::new();
        for (k, v) in self.storage.scan_prefix(&keys::audit_prefix(case))? {
            let hash = k.get(18..).map(hex).unwrap_or_default();
            let rec = AuditRecord::decode(&v).map_err(|e| corrupt("audit", e))?;
            out.push((hash, rec));
        }
        out.sort_by(|a, b| (a.1.received_at, &a.0).cmp(&(b.1.received_at, &b.0)));
        Ok(out)
    }

    /// Cases matching `filter`, most recently changed last.
    pub fn list(&self, filter: &CaseFilter) -> Result<Vec<(CaseId, CaseMeta)>, StorageError> {
        let prefix = match &filter.store {
            Some(s) => keys::store_prefix(s),
            None => keys::ALL.to_vec(),
        };
        let mut out = Vec::new();
        for (_, v) in self.storage.scan_prefix(&prefix)? {
            let Some((case, _)) = keys::parse_index_value(&v) else {
                return Err(corrupt("case index", "bad entry"));
            };
            if let Some(meta) = self.meta(case)? {
                if filter.kind.is_none_or(|k| k.as_str() == meta.kind) {
                    out.push((case, meta));
                }
            }
        }
        Ok(out)
    }

    /// Handles one frame from the session's device.
    pub fn handle(
        &mut self,
        s: &mut RelaySession,
        frame: Frame,
        now: Millis,
    ) -> Result<RelayOutput, SessionError> {
        match (frame, s.sent_up_to) {
            (
                Frame::Hello {
                    cursor,
                    policy_version,
                    app_version,
                    unsynced,
                    features,
                },
                None,
            ) => {
                let app_version = fleet::check_app_version(&app_version)
                    .map_err(|e| SessionError::Protocol(e.to_string()))?;
                s.sent_up_to = Some(cursor);
                s.policy_version = policy_version;
                let mut frames = Vec::new();
                if s.version > crate::protocol::OLDEST_VERSION {
                    let mut agreed: Vec<String> = Vec::new();
                    for known in [
                        crate::protocol::FEATURE_BLOBS,
                        crate::protocol::FEATURE_PUSH,
                    ] {
                        if features.iter().any(|f| f == known) {
                            agreed.push(known.to_string());
                        }
                    }
                    let has = |f: &str| agreed.iter().any(|a| a == f);
                    s.blobs = blobs::BlobSession::new(has(crate::protocol::FEATURE_BLOBS));
                    s.push = has(crate::protocol::FEATURE_PUSH);
                    frames.push(Frame::Welcome { features: agreed });
                }
                frames.extend(self.announce(s).map_err(SessionError::Storage)?);
                fleet::on_hello(&self.storage, s, app_version, unsynced, now)
                    .map_err(SessionError::Storage)?;
                Ok(RelayOutput {
                    frames,
                    ..RelayOutput::default()
                })
            }
            (Frame::Report { unsynced }, Some(_)) => {
                fleet::on_report(&self.storage, s, unsynced, now).map_err(SessionError::Storage)?;
                Ok(RelayOutput::default())
            }
            (Frame::PublishPolicy { json }, Some(_)) => self.publish_policy(s, &json),
            (Frame::Fetch { docs }, Some(_)) if docs.len() > ANNOUNCE_CHUNK => {
                Err(SessionError::Protocol(format!(
                    "a fetch may ask for at most {ANNOUNCE_CHUNK} cases, got {}",
                    docs.len()
                )))
            }
            (Frame::Fetch { docs }, Some(_)) => self.fetch(s, &docs).map_err(SessionError::Storage),
            (Frame::Hello { .. }, Some(_)) => {
                Err(SessionError::Protocol("hello sent twice".into()))
            }
            (_, None) => Err(SessionError::Protocol(
                "the first frame must be hello".into(),
            )),
            (Frame::Sync { doc, message }, Some(_)) => self.sync(s, doc, &message, now),
            (Frame::Error { reason }, Some(_)) => Err(SessionError::Remote(reason)),
            (other, Some(_)) => Err(SessionError::Protocol(format!(
                "a device may not send {}",
                other.name()
            ))),
        }
    }

    /// Whole documents for a device that has none of their history; cases it
    /// may not see are refused one by one, as in a sync.
    fn fetch(&mut self, s: &RelaySession, cases: &[CaseId]) -> Result<RelayOutput, StorageError> {
        let mut frames = Vec::new();
        let mut docs = Vec::new();
        let mut size = 0;
        // A case asked for twice is sent once: a short fetch naming one
        // large case a thousand times must not cost a thousand copies.
        let mut seen = std::collections::HashSet::new();
        for case in cases {
            if !seen.insert(*case) {
                continue;
            }
            let visible = self
                .meta(*case)?
                .is_some_and(|m| access::can_read(&s.principal, &m));
            if !visible {
                frames.push(Frame::refused(*case, &not_found(*case)));
                continue;
            }
            // Stored bytes as they are: decoding and re-saving every
            // document dominated a fresh device's first sync.
            if let Some(bytes) = docs::stored_bytes(&self.storage, *case)? {
                if bytes.len() > self.frame_limit {
                    frames.extend(pieces(*case, PieceKind::Snapshot, &bytes, self.frame_limit));
                    continue;
                }
                if !docs.is_empty()
                    && (size + bytes.len() > SNAPSHOT_FRAME_BYTES
                        || docs.len() == SNAPSHOTS_PER_FRAME)
                {
                    frames.push(Frame::Snapshots {
                        docs: std::mem::take(&mut docs),
                    });
                    size = 0;
                }
                size += bytes.len();
                docs.push(DocBytes { doc: *case, bytes });
            }
        }
        if !docs.is_empty() {
            frames.push(Frame::Snapshots { docs });
        }
        Ok(RelayOutput {
            frames,
            ..RelayOutput::default()
        })
    }

    /// The policy in force and its JSON.
    pub fn policy(&self) -> (&crate::policy::Policy, &str) {
        (&self.policy, &self.policy_json)
    }

    /// Publishes a new policy version from a head-office connection; on
    /// success `policy_published` tells the shell to wake every session,
    /// which then sends the new policy to its device.
    fn publish_policy(
        &mut self,
        s: &mut RelaySession,
        json: &str,
    ) -> Result<RelayOutput, SessionError> {
        let refuse = |reason: String| {
            Ok(RelayOutput {
                frames: vec![Frame::PolicyRefused { reason }],
                ..RelayOutput::default()
            })
        };
        if s.principal.role != Role::HeadOffice {
            return refuse("only head office can publish policy".into());
        }
        let p = match crate::policy::Policy::from_json(json) {
            Ok(p) => p,
            Err(e) => return refuse(e.to_string()),
        };
        if p.version <= self.policy.version {
            return refuse(format!(
                "policy field version: {} is not newer than the version in force, {}",
                p.version, self.policy.version
            ));
        }
        let mut b = Batch::new();
        b.put(keys::POLICY.to_vec(), json.as_bytes().to_vec());
        self.storage.apply(b).map_err(SessionError::Storage)?;
        self.flush().map_err(SessionError::Storage)?;
        tracing::info!(version = p.version, by = %s.principal.user, "policy published");
        self.policy = p;
        self.policy_json = json.to_string();
        Ok(RelayOutput {
            frames: self.announce(s).map_err(SessionError::Storage)?,
            changed: None,
            changed_store: None,
            policy_published: true,
            needs_flush: false,
            summary: None,
        })
    }

    /// Frames announcing the cases this session may see that changed since
    /// what it was last told. Cheap when nothing changed.
    pub fn announce(&mut self, s: &mut RelaySession) -> Result<Vec<Frame>, StorageError> {
        let Some(from) = s.sent_up_to else {
            return Ok(Vec::new());
        };
        let mut frames = Vec::new();
        if s.policy_version < self.policy.version {
            frames.push(Frame::Policy {
                json: self.policy_json.clone(),
            });
            s.policy_version = self.policy.version;
        }
        let prefix = match s.principal.role {
            Role::HeadOffice => keys::ALL.to_vec(),
            _ => keys::store_prefix(&s.principal.store),
        };
        let mut start = prefix.clone();
        start.extend_from_slice(&(from.saturating_add(1)).to_be_bytes());
        let mut end = prefix.clone();
        end.extend_from_slice(&(self.durable_seq.saturating_add(1)).to_be_bytes());
        loop {
            let rows = self.storage.scan(&start, &end, ANNOUNCE_CHUNK)?;
            let complete = rows.len() < ANNOUNCE_CHUNK;
            let mut docs = Vec::with_capacity(rows.len());
            let mut last = s.sent_up_to.unwrap_or(0);
            for (k, v) in &rows {
                let (Some(seq), Some((doc, heads))) = (keys::seq_of(k), keys::parse_index_value(v))
                else {
                    return Err(corrupt("case index", "bad entry"));
                };
                last = seq;
                // Once caught up, a change the device already holds (its
                // own upload, typically) is not worth announcing.
                if s.caught_up && device_holds(s.states.get(&doc), &heads) {
                    continue;
                }
                // The store index holds the store's cases; technicians get
                // only those assigned to them.
                if s.principal.role == Role::Technician {
                    match self.meta(doc)? {
                        Some(m) if access::can_read(&s.principal, &m) => {}
                        _ => continue,
                    }
                }
                // A live connection already syncing this case gets the
                // change itself ahead of the announcement, saving the
                // device a request and the relay a round trip. If
                // Automerge has nothing to send, the announcement alone
                // makes the device ask, as on a reconnect.
                if s.caught_up {
                    frames.extend(self.deliver(s, doc, &heads)?);
                }
                docs.push(DocHeads { doc, heads });
            }
            // When the scan reached the end, everything up to the durable
            // sequence has been covered, including changes of other stores.
            let up_to = if complete {
                last.max(self.durable_seq).max(from)
            } else {
                last
            };
            // After the catch-up, a wake-up with nothing for this device
            // (another store's change) sends nothing: the cursor simply
            // advances with the next real announcement.
            if !docs.is_empty() || !s.caught_up {
                frames.push(Frame::Announce {
                    up_to,
                    docs,
                    complete,
                });
            }
            s.sent_up_to = Some(up_to);
            if complete {
                s.caught_up = true;
                break;
            }
            start = prefix.clone();
            start.extend_from_slice(&(up_to + 1).to_be_bytes());
        }
        Ok(frames)
    }

    /// What a live session that has synced `case` before is sent ahead of
    /// the announcement of its new `heads`: the stored changes since the
    /// heads the device is known to hold when they are remembered, else a
    /// sync message.
    fn deliver(
        &mut self,
        s: &mut RelaySession,
        case: CaseId,
        heads: &[[u8; 32]],
    ) -> Result<Vec<Frame>, StorageError> {
        if s.push {
            let known = s
                .held
                .get(&case)
                .cloned()
                .or_else(|| s.states.get(&case).and_then(|st| st.their_heads.clone()));
            let to: Vec<ChangeHash> = heads.iter().map(|h| ChangeHash(*h)).collect();
            if let Some(changes) = known.and_then(|k| self.recent.between(case, &k, &to)) {
                s.held.insert(case, to);
                return Ok(vec![Frame::Changes { doc: case, changes }]);
            }
        }
        self.push(s, case)
    }

    /// A sync message for `case` on a session that has synced it before.
    fn push(&mut self, s: &mut RelaySession, case: CaseId) -> Result<Vec<Frame>, StorageError> {
        if !s.states.contains_key(&case) {
            return Ok(Vec::new());
        }
        let limit = self.frame_limit;
        let Some(doc) = self.doc(case)? else {
            return Ok(Vec::new());
        };
        let Some(state) = s.states.get_mut(&case) else {
            return Ok(Vec::new());
        };
        Ok(doc
            .generate_sync_message(state)
            .map(|m| sync_frames(case, m.encode(), limit))
            .unwrap_or_default())
    }

    fn refuse(doc: CaseId, refusal: &Refusal) -> RelayOutput {
        RelayOutput {
            frames: vec![Frame::refused(doc, refusal)],
            ..RelayOutput::default()
        }
    }

    fn sync(
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
    fn commit(
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
        let view = CaseView::from_doc_with(seen, &case.to_string(), &self.policy);
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

/// Whether the device's last sync message (as `state` remembers it) showed
/// it holding every one of `heads`.
fn device_holds(state: Option<&State>, heads: &[[u8; 32]]) -> bool {
    let Some(theirs) = state.and_then(|s| s.their_heads.as_ref()) else {
        return false;
    };
    heads.iter().all(|h| theirs.iter().any(|t| t.0 == *h))
}

/// Largest case (or sync message) sent in one frame, leaving room for the
/// frame's own fields.
const MAX_CASE_FRAME: usize = crate::protocol::MAX_FRAME_BYTES - 64 * 1024;

/// A sync message as frames: one, or pieces when it would not fit in one
/// (a case stored before the size limits existed must not make every sync
/// of its store fail on one oversized frame).
fn sync_frames(case: CaseId, message: Vec<u8>, limit: usize) -> Vec<Frame> {
    if message.len() > limit {
        return pieces(case, PieceKind::Sync, &message, limit);
    }
    vec![Frame::Sync { doc: case, message }]
}

/// `bytes` cut into [`Frame::Piece`]s of at most `size` bytes (and 1 MiB).
fn pieces(case: CaseId, kind: PieceKind, bytes: &[u8], size: usize) -> Vec<Frame> {
    // Pieces of at most 1 MiB keep each send small against the relay's
    // send budget, whatever the frame limit.
    let chunks: Vec<&[u8]> = bytes.chunks(size.clamp(1, 1 << 20)).collect();
    let total = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| Frame::Piece {
            doc: case,
            kind,
            index: u32::try_from(i).unwrap_or(u32::MAX),
            total,
            bytes: c.to_vec(),
        })
        .collect()
}

/// The read model as stored: every case's summary, read straight from
/// storage (the relay's lock is not needed). Summaries that are missing or
/// derived under an older policy or schema are listed by
/// [`readmodel::ReadModel::stale`] for the shell to derive again.
pub fn load_read_model<S: Storage>(storage: &S) -> Result<readmodel::ReadModel, StorageError> {
    let mut model = readmodel::ReadModel::new();
    let mut start = keys::SUMMARY.to_vec();
    let end = [keys::SUMMARY, &[0xff; 17][..]].concat();
    loop {
        let page = storage.scan(&start, &end, 4096)?;
        let Some((last, _)) = page.last() else { break };
        start = [last.as_slice(), &[0][..]].concat();
        for (k, v) in &page {
            let id: [u8; 16] = k
                .get(2..18)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| corrupt("case summary", "bad key"))?;
            let s: CaseSummary =
                serde_json::from_slice(v).map_err(|e| corrupt("case summary", e))?;
            model.upsert(CaseId::from_bytes(id), s);
        }
    }
    Ok(model)
}

fn summary_bytes(s: &CaseSummary) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(s).map_err(|e| corrupt("case summary", e))
}

/// The one answer for a case that does not exist and for one the
/// connection may not see, so nobody learns which ids exist elsewhere.
fn not_found(case: CaseId) -> Refusal {
    Refusal::new(
        RefusalCode::NotFound,
        format!("case {case} does not exist or is not yours to see"),
    )
}

/// Refuses an oversized upload before any of it is applied: applying is
/// the expensive part, and the relay holds its lock meanwhile. The whole
/// message is held to the case limit; a change chunk to the change limit,
/// read from its header (an Automerge chunk starts with 4 magic bytes and
/// a 4-byte checksum, then its type: 1 a change, 2 a compressed change,
/// whose size is known only once inflated, which costs far less than
/// applying it).
fn upload_too_large(msg: &Message, policy: &crate::policy::Policy) -> Option<Refusal> {
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
