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
//!
//! By concern: `session` (a connection's hello, announcements with the
//! changes pushed or a sync message ahead of them, fetches), `upload` (a
//! device's sync message judged and committed), `cache` (loaded documents,
//! bounded), `recent` (the latest accepted changes, for pushes),
//! `queries` (reads for head office and tools); this file holds the
//! relay's own state, opening, flushing and policy.

pub mod blobs;
mod cache;
pub mod casekeys;
mod edge;
pub mod feed;
pub mod fleet;
mod follow;
pub use casekeys::{EraseEntropy, EraseError, Erasure};
pub use edge::{EdgeRun, EdgeUpload};
pub use follow::Observed;
pub mod judge;
mod keys;
pub mod metrics;
mod queries;
mod reader;
pub mod readmodel;
mod recent;
mod session;
pub mod soundness;
mod states;
mod stats;
pub mod summary;
mod upload;
pub mod validate;

use crate::access::{self, CaseMeta, Principal, Role};
use crate::case::{schema, CaseKind, CaseView};
use crate::ids::{CaseId, DeviceId, Millis, StoreId, UserId};
use crate::protocol::{DocBytes, DocHeads, Frame, PieceKind, Refusal, RefusalCode, SessionError};
use crate::storage::{docs, Batch, Storage, StorageError};
use automerge::sync::{Message, State, SyncDoc};
use automerge::{Automerge, ChangeHash, ROOT};
use cache::Cached;
pub use queries::{load_read_model, AuditRecord, CaseFilter, ClockFix};
pub use reader::CaseReader;
use serde::{Deserialize, Serialize};
pub use session::RelaySession;
pub use states::{SyncStates, DEFAULT_HOT_STATES};
pub use stats::CacheStats;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use summary::CaseSummary;

/// How far past a sequence number a device may have seen the relay
/// resumes when its storage is behind it (restored from a backup, or
/// lost changes): far more than the changes between two watermarks.
pub const RESUME_MARGIN: u64 = 1_000_000;

/// Cases per [`Frame::Announce`].
const ANNOUNCE_CHUNK: usize = 1000;

/// A [`Frame::Snapshots`] is closed once it holds this many bytes or
/// [`SNAPSHOTS_PER_FRAME`] cases: well under the frame limit, and small
/// enough that a device reports progress often.
const SNAPSHOT_FRAME_BYTES: usize = 1 << 20;
const SNAPSHOTS_PER_FRAME: usize = 250;

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
    /// Sync states each connection keeps whole (see [`SyncStates`]).
    hot_states: NonZeroUsize,
    /// The sequence number up to which commits of other relays on the same
    /// database were taken in (see `follow.rs`).
    observed: u64,
    /// Sequence numbers of this relay's commits not yet passed by
    /// `observed`: [`Relay::observe_commits`] skips them. Kept only once
    /// [`Relay::follow_others`] was called (nothing would ever remove them
    /// on a relay with its own storage).
    own: std::collections::BTreeSet<u64>,
    /// Whether other relays commit to the same storage.
    follows: bool,
    /// The policy's bytes as last read from or written to storage (`None`
    /// before any publication): a publication expects to replace them.
    stored_policy: Option<Vec<u8>>,
    /// Cases whose stored bytes do not load (see `soundness.rs`).
    quarantined: std::collections::BTreeMap<CaseId, String>,
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
        let stored_policy = storage.get(keys::POLICY)?;
        let (policy, policy_json) = match stored_policy.clone() {
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
        let mut relay = Relay {
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
            hot_states: NonZeroUsize::new(DEFAULT_HOT_STATES).unwrap_or(NonZeroUsize::MIN),
            observed: seq,
            own: Default::default(),
            follows: false,
            stored_policy,
            quarantined: Default::default(),
        };
        relay.load_quarantine()?;
        Ok(relay)
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
        // Relays starting together on one new database: the first salt
        // stored is everyone's.
        b.expect(keys::SALT.to_vec(), None);
        match self.storage.apply(b) {
            Ok(()) => {
                self.storage.flush()?;
                self.salt = candidate.to_vec();
            }
            Err(StorageError::Conflict { .. }) => {
                self.salt = self.storage.get(keys::SALT)?.unwrap_or_default();
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Tells the relay that other relays commit to the same storage, so
    /// it keeps track of its own commits for [`Relay::observe_commits`].
    /// Call it before the first commit.
    pub fn follow_others(&mut self) {
        self.follows = true;
    }

    /// The latest change sequence.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Moves the change sequence on to `seq` (durably) if it is behind:
    /// after storage lost changes, so no number a device may already have
    /// been told is handed out again (a gap in the sequence is harmless).
    pub fn resume_after(&mut self, seq: u64) -> Result<(), StorageError> {
        // Far from overflowing, whatever the caller asks.
        let seq = seq.min(u64::MAX / 2);
        if seq <= self.seq {
            return Ok(());
        }
        let mut b = Batch::new();
        b.put(keys::SEQ.to_vec(), seq.to_be_bytes().to_vec());
        self.storage.apply(b)?;
        self.storage.flush()?;
        self.seq = seq;
        self.durable_seq = seq;
        self.observed = self.observed.max(seq);
        Ok(())
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

    /// Keeps at most `bytes` of recently accepted changes for pushes to
    /// live devices (default 8 MiB); what is not kept reaches devices by
    /// the sync protocol instead.
    pub fn set_recent_budget(&mut self, bytes: usize) {
        self.recent.set_budget(bytes);
    }

    /// Sends cases and sync messages over `bytes` in pieces (default: what
    /// fits in one frame). For tests, and for devices with small buffers.
    pub fn set_frame_limit(&mut self, bytes: usize) {
        self.frame_limit = bytes.clamp(1024, MAX_CASE_FRAME);
    }

    /// The policy in force and its JSON.
    pub fn policy(&self) -> (&crate::policy::Policy, &str) {
        (&self.policy, &self.policy_json)
    }

    /// Reads the stored policy again and takes it if it is newer than the
    /// one in force (another relay on the same database published it).
    /// Returns whether it changed: the shell then wakes every session, which
    /// sends it to its device, and derives the summaries again.
    pub fn reload_policy(&mut self) -> Result<bool, StorageError> {
        let stored = self.storage.get(keys::POLICY)?;
        if stored == self.stored_policy {
            return Ok(false);
        }
        let Some(bytes) = &stored else {
            return Ok(false);
        };
        let json = String::from_utf8(bytes.clone()).map_err(|e| corrupt("policy", e))?;
        let p = crate::policy::Policy::from_json(&json).map_err(|e| corrupt("policy", e))?;
        self.stored_policy = stored;
        if p.version <= self.policy.version {
            return Ok(false);
        }
        tracing::info!(version = p.version, "policy published by another relay");
        self.policy = p;
        self.policy_json = json;
        Ok(true)
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
        // Another relay on the same database may have published since this
        // one read the policy: judge against the stored one.
        self.reload_policy().map_err(SessionError::Storage)?;
        if p.version <= self.policy.version {
            return refuse(format!(
                "policy field version: {} is not newer than the version in force, {}",
                p.version, self.policy.version
            ));
        }
        let mut b = Batch::new();
        b.put(keys::POLICY.to_vec(), json.as_bytes().to_vec());
        b.expect(keys::POLICY.to_vec(), self.stored_policy.clone());
        match self.storage.apply(b) {
            Ok(()) => {}
            Err(StorageError::Conflict { .. }) => {
                return refuse(
                    "another head office published a policy at the same moment; \
                     reload it and publish again"
                        .into(),
                )
            }
            Err(e) => return Err(SessionError::Storage(e)),
        }
        self.stored_policy = Some(json.as_bytes().to_vec());
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
}

/// Largest case (or sync message) sent in one frame, leaving room for the
/// frame's own fields.
const MAX_CASE_FRAME: usize = crate::protocol::MAX_FRAME_BYTES - 64 * 1024;

/// The one answer for a case that does not exist and for one the
/// connection may not see, so nobody learns which ids exist elsewhere.
fn not_found(case: CaseId) -> Refusal {
    Refusal::new(
        RefusalCode::NotFound,
        format!("case {case} does not exist or is not yours to see"),
    )
}
