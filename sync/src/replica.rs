//! A device's local copy of its cases: offline edits that are durable before
//! they are reported saved, and the bookkeeping sync needs (dirty marks,
//! resume cursor, per-case sync states).

use crate::case::edit::{self, Customer, NewCase};
use crate::case::{CaseField, CaseKind, CaseView, ContactChannel, EditContext, EditError};
use crate::ids::{CaseId, Cursor, DeviceId, Millis, StoreId, UserId};
use crate::protocol::DocBytes;
use crate::storage::{docs, keys, Batch, Storage, StorageError};
use automerge::sync::{Message, State, SyncDoc};
use automerge::{ActorId, Automerge, ChangeHash, ReadDoc};
use loaded::{Held, LoadedDocs};
use std::sync::{Mutex, PoisonError};

pub mod blobs;
pub mod bookings;
mod casekeys;
mod loaded;
mod pushed;
mod refusals;
mod whole;
pub use refusals::Refused;

/// The peer name under which a device stores its sync state with the relay.
const RELAY_PEER: &str = "relay";

/// Who uses this replica: fixed when the device is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// The signed-in person.
    pub user: UserId,
    /// Their role.
    pub role: crate::access::Role,
    /// The store the device belongs to.
    pub store: StoreId,
    /// The device.
    pub device: DeviceId,
}

/// Errors of local operations.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The edit was refused; nothing was saved.
    #[error(transparent)]
    Edit(#[from] EditError),
    /// Storage failed; the edit was not saved.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// No case with that id on this device.
    #[error("no case {0} on this device")]
    UnknownCase(CaseId),
    /// A sync message from the relay could not be applied; nothing of it was kept.
    #[error("could not apply the relay's changes to case {case}: {message}")]
    Apply {
        /// The case.
        case: CaseId,
        /// Automerge's message.
        message: String,
    },
}

/// Time and randomness for one local edit, supplied by the shell.
#[derive(Debug, Clone, Copy)]
pub struct Entropy {
    /// Device time.
    pub now: Millis,
    /// 16 random bytes.
    pub nonce: [u8; 16],
    /// 32 random bytes: the key of a case this edit opens (see
    /// `case::seal`); unused by other edits.
    pub key: [u8; 32],
}

/// Local sync bookkeeping as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalStatus {
    /// Cases with changes the relay has not confirmed.
    pub pending_cases: Vec<CaseId>,
    /// Device time of the oldest of their first unconfirmed edits.
    pub oldest_pending: Option<Millis>,
    /// Resume position in the relay's sequence.
    pub cursor: Cursor,
    /// Device time of the last sync that finished with nothing pending.
    pub last_sync: Option<Millis>,
}

/// The device's cases over a [`Storage`].
///
/// Every public edit returns only after its changes, its dirty mark and its
/// index entry are applied in one batch and flushed: "saved" means durable.
///
/// Edits and reads take `&self`: each case's document has its own lock
/// (`replica/loaded.rs`), so threads editing different cases run their
/// Automerge work in parallel, and a caller that defers flushes
/// ([`Replica::defer_flushes`]) can share them among threads. Sync
/// bookkeeping (receiving, confirming, the cursor) takes `&mut self`.
pub struct Replica<S: Storage> {
    storage: S,
    policy: crate::policy::Policy,
    identity: DeviceIdentity,
    actor: ActorId,
    docs: LoadedDocs,
    /// Held while a case number is drawn and stored, so that concurrent
    /// creations never draw the same one nor store the counter backwards.
    case_seq: Mutex<()>,
    /// Local edits are applied but not flushed; the caller flushes (see
    /// [`Replica::defer_flushes`]).
    defer_flush: bool,
    /// Cases marked as wanting their key since the session last asked
    /// (see `replica/casekeys.rs`).
    fresh_wants: Vec<CaseId>,
}

fn u64_value(bytes: Option<Vec<u8>>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

impl<S: Storage> Replica<S> {
    /// Opens the replica. `actor` must be fresh random bytes for every process
    /// start (automerge rejects a reused actor whose sequence went backwards,
    /// e.g. after a restore from backup).
    pub fn open(storage: S, identity: DeviceIdentity, actor: [u8; 16]) -> Self {
        // A stored policy was checked before it was stored; a damaged one
        // falls back to the defaults until the relay sends it again.
        let policy = storage
            .get(&keys::setting("policy"))
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| crate::policy::Policy::from_json(&s).ok())
            .unwrap_or_default();
        Replica {
            storage,
            policy,
            identity,
            actor: ActorId::from(&actor[..]),
            docs: LoadedDocs::default(),
            case_seq: Mutex::new(()),
            defer_flush: false,
            fresh_wants: Vec::new(),
        }
    }

    /// From now on, local edits are applied to storage but not flushed: the
    /// caller must flush (typically through a [`crate::storage::GroupCommit`]
    /// shared by several threads) before reporting an edit saved.
    pub fn defer_flushes(&mut self) {
        self.defer_flush = true;
    }

    /// The identity the replica writes as.
    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    /// The underlying storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    fn ctx(&self, e: Entropy) -> EditContext {
        EditContext {
            author: self.identity.user.clone(),
            role: self.identity.role,
            device: self.identity.device.clone(),
            now: e.now,
            nonce: e.nonce,
        }
    }

    /// Loads the document of `case` from storage with this process's
    /// actor, folding many incremental chunks into a snapshot first.
    fn load(&self, case: CaseId) -> Result<Option<Automerge>, ReplicaError> {
        let Some(loaded) = docs::load_doc(&self.storage, case)? else {
            return Ok(None);
        };
        let mut doc = loaded.doc.with_actor(self.actor.clone());
        if loaded.chunks >= docs::COMPACT_AFTER_CHUNKS {
            docs::compact(&self.storage, case, &doc)?;
        }
        doc.set_actor(self.actor.clone());
        Ok(Some(doc))
    }

    /// Runs `f` on the loaded document of `case` under that case's lock,
    /// loading it first if needed. `None` if the device does not hold the
    /// case. `f` must not touch another case (one case lock at a time).
    fn with_held<R>(
        &self,
        case: CaseId,
        f: impl FnOnce(&mut Held) -> Result<R, ReplicaError>,
    ) -> Result<Option<R>, ReplicaError> {
        let slot = self.docs.slot(case);
        let mut guard = loaded::lock(&slot);
        if guard.is_none() {
            *guard = self.load(case)?.map(Held::new);
        }
        match guard.as_mut() {
            Some(held) => f(held).map(Some),
            None => Ok(None),
        }
    }

    /// Reads the document of `case` (see [`Replica::with_held`]).
    fn with_doc<R>(
        &self,
        case: CaseId,
        f: impl FnOnce(&Automerge) -> R,
    ) -> Result<Option<R>, ReplicaError> {
        self.with_held(case, |h| Ok(f(&h.doc)))
    }

    /// Persists the changes made to `held` (the document of `case`) since
    /// `before` (at device time `now`), with `extra`, marks the case dirty
    /// and flushes unless flushes are deferred. On failure the document is
    /// dropped so memory never runs ahead of the disk. Called under the
    /// case's lock, so the dirty mark is read and written by one thread.
    fn persist_local(
        &self,
        case: CaseId,
        held: &mut Option<Held>,
        before: &[ChangeHash],
        extra: Batch,
        now: Millis,
    ) -> Result<(), ReplicaError> {
        let Some(h) = held.as_mut() else {
            return Err(ReplicaError::UnknownCase(case));
        };
        let mut batch = extra;
        docs::stage_changes(&mut batch, case, &new_changes(&h.doc, before));
        if !h.marked {
            // A dirty mark holds the device time of the first edit the
            // relay has not confirmed: a case already marked keeps its
            // older time, which is what the device reports as the age of
            // its unsynced work. Once this process has applied the marks,
            // later edits skip both the read and the rewrite.
            if self.storage.get(&keys::dirty(case))?.is_none() {
                batch.put(keys::dirty(case), now.0.to_be_bytes().to_vec());
            }
            batch.put(keys::local_case(case), Vec::new());
        }
        let result = self.storage.apply(batch).and_then(|_| {
            if self.defer_flush {
                Ok(())
            } else {
                self.storage.flush()
            }
        });
        match result {
            Ok(()) => {
                h.marked = true;
                Ok(())
            }
            Err(e) => {
                *held = None;
                Err(e.into())
            }
        }
    }

    /// Runs the edit `f` on `case` and persists what it changed, with
    /// `extra` in the same batch, all under the case's lock.
    fn edit_with<F>(&self, case: CaseId, e: Entropy, extra: Batch, f: F) -> Result<(), ReplicaError>
    where
        F: FnOnce(&mut Automerge, &EditContext) -> Result<(), EditError>,
    {
        let ctx = self.ctx(e);
        let slot = self.docs.slot(case);
        let mut guard = loaded::lock(&slot);
        if guard.is_none() {
            *guard = self.load(case)?.map(Held::new);
        }
        let Some(h) = guard.as_mut() else {
            return Err(ReplicaError::UnknownCase(case));
        };
        let before = h.doc.get_heads();
        // An edit validates before it writes its one transaction, and a
        // failed transaction is rolled back: a refused edit leaves the
        // document as it was.
        f(&mut h.doc, &ctx)?;
        self.persist_local(case, &mut guard, &before, extra, e.now)
    }

    fn edit<F>(&self, case: CaseId, e: Entropy, f: F) -> Result<(), ReplicaError>
    where
        F: FnOnce(&mut Automerge, &EditContext) -> Result<(), EditError>,
    {
        self.edit_with(case, e, Batch::new(), f)
    }

    /// Opens a new case. Returns once it is durable on this device.
    pub fn create_case(
        &self,
        id: CaseId,
        e: Entropy,
        kind: CaseKind,
        customer: Customer,
        sku: Option<String>,
        description: Option<String>,
    ) -> Result<CaseId, ReplicaError> {
        // Held until the counter is applied: two creations must not draw
        // the same number, nor the later store a smaller counter.
        let _seq = self.case_seq.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = u64_value(self.storage.get(&keys::setting("case_seq"))?) + 1;
        let new = NewCase {
            id,
            case_no: format!("{}-{}-{seq}", self.identity.store, self.identity.device),
            kind,
            store: self.identity.store.clone(),
            customer,
            sku,
            description,
        };
        let mut doc = Automerge::new().with_actor(self.actor.clone());
        // The customer's data is sealed under a key of the case's own,
        // stored in the same batch as the case: nothing saved is ever
        // unreadable to the device that saved it.
        let key = crate::case::seal::CaseKey::from_bytes(e.key);
        edit::create_case_sealed(&mut doc, &self.ctx(e), &new, Some(&key))?;
        let slot = self.docs.slot(id);
        let mut guard = loaded::lock(&slot);
        *guard = Some(Held::new(doc));
        let mut extra = Batch::new();
        extra.put(keys::setting("case_seq"), seq.to_be_bytes().to_vec());
        extra.put(keys::case_key(id), key.as_bytes().to_vec());
        self.persist_local(id, &mut guard, &[], extra, e.now)?;
        Ok(id)
    }

    /// Adds a note to the timeline.
    pub fn add_note(&self, case: CaseId, e: Entropy, text: &str) -> Result<(), ReplicaError> {
        self.edit(case, e, |d, c| edit::add_note(d, case, c, text))
    }

    /// Sets one field.
    pub fn set_field(
        &self,
        case: CaseId,
        e: Entropy,
        field: CaseField,
        value: &str,
    ) -> Result<(), ReplicaError> {
        let key = self.case_key(case)?;
        if field.is_personal() && key.is_none() {
            // Without the key a new value could only be written in plain
            // text, into a history that cannot be erased.
            let sealed = self
                .with_doc(case, |d| {
                    crate::case::seal::has_sealed(d) || crate::case::seal::is_erased(d)
                })?
                .ok_or(ReplicaError::UnknownCase(case))?;
            if sealed {
                return Err(EditError::NotAllowed(format!(
                    "{field} cannot be set on this device: it does not hold this case's key (its customer data was erased, or the device has not synced since it received the case)"
                ))
                .into());
            }
        }
        self.edit(case, e, |d, c| {
            edit::set_field_sealed(d, case, c, field, value, key.as_ref())
        })
    }

    /// Records a contact with the customer. A call that happened is always
    /// recorded: an outbound call outside the calling hours or beyond the
    /// daily limit for this customer (counted over every case on the
    /// device, outbound calls only) is recorded and flagged, and the
    /// returned warnings say which rules it broke. `override_reason` is a
    /// supervisor's own reason for breaking them (refused from anyone else).
    pub fn log_contact(
        &self,
        case: CaseId,
        e: Entropy,
        channel: ContactChannel,
        direction: edit::Direction,
        outcome: &str,
        override_reason: Option<&str>,
    ) -> Result<Vec<String>, ReplicaError> {
        let mut warnings = Vec::new();
        if channel == ContactChannel::Phone && direction == edit::Direction::Outbound {
            let phone = self
                .case(case)?
                .ok_or(ReplicaError::UnknownCase(case))?
                .customer
                .phone;
            let today = crate::rules::contact::local_day(&self.policy, e.now.0);
            let mut calls = 0u32;
            for v in self.cases()? {
                if v.customer.phone != phone {
                    continue;
                }
                for c in &v.contact_attempts {
                    let same_day = c
                        .at_millis()
                        .and_then(|t| crate::rules::contact::local_day(&self.policy, t))
                        == today;
                    if c.channel.as_deref() == Some("phone")
                        && c.direction == "outbound"
                        && same_day
                    {
                        calls += 1;
                    }
                }
            }
            warnings = crate::rules::contact::check_call(&self.policy, e.now.0, calls)
                .iter()
                .map(|w| w.to_string())
                .collect();
        }
        let contact = edit::Contact {
            channel,
            direction,
            outcome,
            override_reason,
            flags: &warnings,
        };
        self.edit(case, e, |d, c| edit::log_contact_with(d, case, c, &contact))?;
        Ok(warnings)
    }

    /// The case as a person reads it: [`Replica::case`] plus what needs the
    /// other cases on the device (三包's count of repairs per serial, and
    /// the scheduling conflicts of its bookings with other cases'). Reads
    /// every held case when the case needs it: for screens that show one
    /// case, not for lists.
    pub fn case_in_context(&self, case: CaseId) -> Result<Option<CaseView>, ReplicaError> {
        let Some(mut v) = self.case(case)? else {
            return Ok(None);
        };
        if v.serial.is_some() && v.kind.as_deref() == Some("repair") {
            let all = self.cases()?;
            v.sanbao = crate::rules::warranty::repeat_repair(&self.policy, &v, &all);
        }
        if !v.bookings.is_empty() {
            v.schedule_conflicts = self
                .schedule_conflicts()?
                .into_iter()
                .filter(|c| c.involves(case))
                .collect();
        }
        Ok(Some(v))
    }

    /// Moves a case along its workflow.
    pub fn transition(
        &self,
        case: CaseId,
        e: Entropy,
        to: &str,
        reason: Option<&str>,
    ) -> Result<(), ReplicaError> {
        let policy = self.policy.clone();
        self.edit(case, e, |d, c| {
            crate::case::transition::transition_with(d, case, c, &policy, to, reason)
        })
    }

    /// Resolves a workflow conflict by choosing one branch.
    pub fn resolve(
        &self,
        case: CaseId,
        e: Entropy,
        conflict: &str,
        choose: &str,
    ) -> Result<(), ReplicaError> {
        self.edit(case, e, |d, c| {
            crate::case::transition::resolve(d, case, c, conflict, choose)
        })
    }

    /// Adopts a policy from the relay if it is newer than the one in force,
    /// storing it durably first.
    pub fn adopt_policy(
        &mut self,
        policy: crate::policy::Policy,
        json: &str,
    ) -> Result<(), ReplicaError> {
        if policy.version <= self.policy.version {
            return Ok(());
        }
        let mut b = Batch::new();
        b.put(keys::setting("policy"), json.as_bytes().to_vec());
        self.storage.apply(b)?;
        self.storage.flush()?;
        self.policy = policy;
        Ok(())
    }

    /// The policy this device decides under.
    pub fn policy(&self) -> &crate::policy::Policy {
        &self.policy
    }

    /// Opens the linked follow-up case a move calls for (a return after
    /// `cannot_repair`, a repair after a failed installation), copying the
    /// customer and product, and links both cases. `None` if the case's
    /// current state calls for no follow-up.
    pub fn open_follow_up(
        &self,
        origin: CaseId,
        new_id: CaseId,
        e: Entropy,
    ) -> Result<Option<CaseId>, ReplicaError> {
        let Some(v) = self.case(origin)? else {
            return Err(ReplicaError::UnknownCase(origin));
        };
        let kind = v.kind.as_deref().and_then(|k| k.parse::<CaseKind>().ok());
        let Some(next) = kind
            .and_then(|k| crate::workflow::table::follow_up(k, v.status.as_deref().unwrap_or("")))
        else {
            return Ok(None);
        };
        let customer = Customer {
            name: v.customer.name.clone().unwrap_or_default(),
            phone: v.customer.phone.clone().unwrap_or_default(),
        };
        let sku = v.items.first().and_then(|i| i.sku.clone());
        let description = Some(format!(
            "follow-up of {} case {}",
            v.kind.unwrap_or_default(),
            v.case_no.unwrap_or_else(|| origin.to_string())
        ));
        // Each edit needs its own nonce: entry ids come from it.
        let vary = |k: u8| {
            let mut n = e.nonce;
            n[15] ^= k;
            Entropy {
                now: e.now,
                nonce: n,
                key: [0x5c; 32],
            }
        };
        self.create_case(new_id, vary(0), next, customer, sku, description)?;
        self.edit(new_id, vary(1), |d, c| {
            crate::case::service::link(d, new_id, c, origin, "origin")
        })?;
        self.edit(origin, vary(2), |d, c| {
            crate::case::service::link(d, origin, c, new_id, "follow_up")
        })?;
        Ok(Some(new_id))
    }

    /// Assigns the case to a technician.
    pub fn assign(
        &self,
        case: CaseId,
        e: Entropy,
        technician: &UserId,
    ) -> Result<(), ReplicaError> {
        self.edit(case, e, |d, c| {
            crate::case::service::assign(d, case, c, technician)
        })
    }

    /// Records the customer's survey answers.
    pub fn survey(
        &self,
        case: CaseId,
        e: Entropy,
        s: &crate::case::service::Survey,
    ) -> Result<(), ReplicaError> {
        self.edit(case, e, |d, c| crate::case::service::survey(d, case, c, s))
    }

    /// Moves the case up the escalation ladder.
    pub fn escalate(
        &self,
        case: CaseId,
        e: Entropy,
        level: &str,
        reference: Option<&str>,
    ) -> Result<(), ReplicaError> {
        self.edit(case, e, |d, c| {
            crate::case::service::escalate(d, case, c, level, reference)
        })
    }

    /// Decides and records who pays freight.
    pub fn decide_freight(
        &self,
        case: CaseId,
        e: Entropy,
        facts: &crate::rules::freight::FreightFacts,
    ) -> Result<crate::case::service::FreightView, ReplicaError> {
        let policy = self.policy.clone();
        let mut out = None;
        self.edit(case, e, |d, c| {
            out = Some(crate::case::service::decide_freight(
                d, case, c, &policy, facts,
            )?);
            Ok(())
        })?;
        out.ok_or(ReplicaError::UnknownCase(case))
    }

    /// Records a supervisor's freight decision that departs from the rules.
    pub fn override_freight(
        &self,
        case: CaseId,
        e: Entropy,
        outbound: crate::rules::freight::Payer,
        return_leg: crate::rules::freight::Payer,
        reason: &str,
    ) -> Result<crate::case::service::FreightView, ReplicaError> {
        let policy = self.policy.clone();
        let mut out = None;
        self.edit(case, e, |d, c| {
            out = Some(crate::case::service::override_freight(
                d, case, c, &policy, outbound, return_leg, reason,
            )?);
            Ok(())
        })?;
        out.ok_or(ReplicaError::UnknownCase(case))
    }

    /// Attaches a piece of evidence: checks and names the bytes (SHA-256,
    /// media type from the bytes), keeps them in this device's storage and
    /// records them on the case, in one batch. A photo's location
    /// metadata is removed first (`case::exif`), so the hash, the size and
    /// the stored bytes are those without it. Returns the hash.
    pub fn attach_evidence(
        &self,
        case: CaseId,
        e: Entropy,
        kind: &str,
        bytes: &[u8],
        caption: Option<&str>,
    ) -> Result<String, ReplicaError> {
        let media_type = crate::case::blob::sniff(bytes)
            .map_err(|m| ReplicaError::Edit(crate::case::edit::invalid("evidence", m)))?;
        // The location goes before the hash is taken: the hash names the
        // bytes that are kept and shared, never the ones with the GPS.
        let (stripped, _) = crate::case::exif::strip_location(bytes, media_type).map_err(|m| {
            ReplicaError::Edit(crate::case::edit::invalid("evidence", m.to_string()))
        })?;
        let bytes: &[u8] = &stripped;
        let (raw, hash) = crate::case::blob::sha256(bytes);
        let evidence = crate::case::evidence::Evidence {
            kind: kind.to_string(),
            hash: hash.clone(),
            size: bytes.len() as u64,
            media_type: media_type.to_string(),
            captured_at: e.now.0,
            caption: caption.map(str::to_string),
        };
        let mut blob = Batch::new();
        // Content-addressed: the same photo attached twice is kept once.
        if self.storage.get(&keys::blob(&raw))?.is_none() {
            blob.put(keys::blob(&raw), bytes.to_vec());
            self.stage_attached(&mut blob, case, &raw, bytes.len() as u64, e.now)?;
        }
        // Staged before the edit is checked: a refused edit drops the
        // batch, so nothing of the blob is kept.
        self.edit_with(case, e, blob, |d, c| {
            crate::case::evidence::attach(d, case, c, &self.policy, &evidence)
        })?;
        Ok(hash)
    }

    /// Removes a piece of evidence (a tombstone with a reason).
    pub fn remove_evidence(
        &self,
        case: CaseId,
        e: Entropy,
        hash: &str,
        reason: &str,
    ) -> Result<(), ReplicaError> {
        self.edit(case, e, |d, c| {
            crate::case::evidence::remove(d, case, c, hash, reason)
        })
    }

    /// The bytes of a piece of evidence this device holds.
    pub fn blob(&self, hash: &str) -> Result<Option<Vec<u8>>, ReplicaError> {
        match crate::case::blob::parse_hash(hash) {
            Some(raw) => Ok(self.storage.get(&keys::blob(&raw))?),
            None => Ok(None),
        }
    }

    /// Offers compensation; returns the offer id.
    pub fn offer(
        &self,
        case: CaseId,
        e: Entropy,
        tier: crate::money::Tier,
        amount_fen: i64,
        note: Option<&str>,
    ) -> Result<String, ReplicaError> {
        let policy = self.policy.clone();
        let mut out = String::new();
        self.edit(case, e, |d, c| {
            out = crate::case::offer::offer(d, case, c, &policy, tier, amount_fen, note)?;
            Ok(())
        })?;
        Ok(out)
    }

    /// Approves, rejects or records the customer's answer to an offer.
    pub fn decide(
        &self,
        case: CaseId,
        e: Entropy,
        offer_id: &str,
        decision: crate::case::offer::Decision,
    ) -> Result<(), ReplicaError> {
        let policy = self.policy.clone();
        self.edit(case, e, |d, c| {
            crate::case::offer::decide(d, case, c, &policy, offer_id, decision)
        })
    }

    /// One case as plain data.
    pub fn case(&self, case: CaseId) -> Result<Option<CaseView>, ReplicaError> {
        let key = self.case_key(case)?;
        self.with_doc(case, |d| {
            let mut v = CaseView::from_doc_with(d, &case.to_string(), &self.policy);
            crate::case::seal::reveal_customer(&mut v.customer, key.as_ref(), case);
            v
        })
    }

    /// The ids of every case on this device.
    pub fn case_ids(&self) -> Result<Vec<CaseId>, ReplicaError> {
        Ok(self
            .storage
            .scan_prefix(b"l")?
            .iter()
            .filter_map(|(k, _)| keys::case_after_prefix(k))
            .collect())
    }

    /// Every case on this device, as plain data.
    pub fn cases(&self) -> Result<Vec<CaseView>, ReplicaError> {
        let mut out = Vec::new();
        for id in self.case_ids()? {
            if let Some(v) = self.case(id)? {
                out.push(v);
            }
        }
        out.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        Ok(out)
    }

    /// The heads of a case, if the device has it.
    pub fn heads(&self, case: CaseId) -> Result<Option<Vec<ChangeHash>>, ReplicaError> {
        self.with_doc(case, |d| d.get_heads())
    }

    /// Whether the device holds every change named in `heads`.
    pub fn has_all(&self, case: CaseId, heads: &[ChangeHash]) -> Result<bool, ReplicaError> {
        // Each stored change has its own key, and only changes that became
        // part of the document are stored: finding every head's key answers
        // without loading the case (a reconnect after a large upload is
        // announced every uploaded case).
        if !heads.is_empty() && self.holds_change_keys(case, heads)? {
            return Ok(true);
        }
        let held = self.with_doc(case, |d| {
            heads.iter().all(|h| d.get_change_by_hash(h).is_some())
        })?;
        Ok(held.unwrap_or(heads.is_empty()))
    }

    /// Whether every one of `hashes` is stored as a change of `case` under
    /// its own key (not folded into a snapshot).
    fn holds_change_keys(&self, case: CaseId, hashes: &[ChangeHash]) -> Result<bool, ReplicaError> {
        for h in hashes {
            if self.storage.get(&keys::change(case, &h.0))?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Cases with local changes the relay has not confirmed.
    pub fn dirty_cases(&self) -> Result<Vec<CaseId>, ReplicaError> {
        Ok(self.dirty_marks()?.into_iter().map(|(c, _)| c).collect())
    }

    /// Cases with local changes the relay has not confirmed, each with the
    /// device time of its first unconfirmed edit (`None` for a mark made by
    /// a version that did not record it). One scan of the marks: the cost
    /// grows with the pending cases, not with the cases on the device.
    pub fn dirty_marks(&self) -> Result<Vec<(CaseId, Option<Millis>)>, ReplicaError> {
        Ok(self
            .storage
            .scan_prefix(b"t")?
            .iter()
            .filter_map(|(k, v)| {
                let at = <[u8; 8]>::try_from(v.as_slice())
                    .ok()
                    .map(|b| Millis(i64::from_be_bytes(b)));
                keys::case_after_prefix(k).map(|c| (c, at))
            })
            .collect())
    }

    /// The device's unsynced work as reported to the relay, at device time
    /// `now` (see [`crate::protocol::Unsynced`]).
    pub fn unsynced(&self, now: Millis) -> Result<crate::protocol::Unsynced, ReplicaError> {
        let marks = self.dirty_marks()?;
        Ok(crate::protocol::Unsynced::from_marks(
            marks.into_iter().map(|(_, at)| at),
            now,
        ))
    }

    /// The resume cursor.
    pub fn cursor(&self) -> Result<Cursor, ReplicaError> {
        Ok(Cursor(u64_value(
            self.storage.get(&keys::setting("cursor"))?,
        )))
    }

    /// Advances the cursor. Everything received before is flushed first, so
    /// a durable cursor never points past changes that were lost.
    pub fn set_cursor(&mut self, cursor: Cursor) -> Result<(), ReplicaError> {
        self.storage.flush()?;
        let mut b = Batch::new();
        b.put(keys::setting("cursor"), cursor.0.to_be_bytes().to_vec());
        self.storage.apply(b)?;
        self.storage.flush()?;
        Ok(())
    }

    /// Records that a sync finished with nothing pending.
    pub fn mark_synced(&mut self, now: Millis) -> Result<(), ReplicaError> {
        let mut b = Batch::new();
        b.put(keys::setting("last_sync"), now.0.to_be_bytes().to_vec());
        self.storage.apply(b)?;
        self.storage.flush()?;
        Ok(())
    }

    /// Pending changes, cursor and last sync.
    pub fn status(&self) -> Result<LocalStatus, ReplicaError> {
        let last = self.storage.get(&keys::setting("last_sync"))?;
        let marks = self.dirty_marks()?;
        Ok(LocalStatus {
            oldest_pending: marks.iter().filter_map(|(_, at)| *at).min(),
            pending_cases: marks.into_iter().map(|(c, _)| c).collect(),
            cursor: self.cursor()?,
            last_sync: last.map(|b| Millis(u64_value(Some(b)) as i64)),
        })
    }

    /// The persisted sync state with the relay for `case`.
    pub fn sync_state(&self, case: CaseId) -> Result<State, ReplicaError> {
        Ok(docs::load_sync_state(&self.storage, case, RELAY_PEER)?)
    }

    /// Produces the next sync message for `case`, if any. Unknown cases sync
    /// from an empty document (the relay then sends everything).
    pub fn generate(
        &self,
        case: CaseId,
        state: &mut State,
    ) -> Result<Option<Message>, ReplicaError> {
        Ok(
            match self.with_doc(case, |d| d.generate_sync_message(state))? {
                Some(message) => message,
                None => Automerge::new().generate_sync_message(state),
            },
        )
    }

    /// Applies a sync message from the relay and persists what it brought
    /// (not flushed: the relay still has it; [`Replica::set_cursor`] flushes
    /// before it moves the cursor past it).
    pub fn receive(
        &mut self,
        case: CaseId,
        state: &mut State,
        message: Message,
    ) -> Result<(), ReplicaError> {
        let slot = self.docs.slot(case);
        let mut guard = loaded::lock(&slot);
        // Taken out of the cache while it changes: every failure below
        // leaves the slot empty, so the document reloads from disk.
        let mut held = match guard.take() {
            Some(h) => h,
            None => Held::new(
                self.load(case)?
                    .unwrap_or_else(|| Automerge::new().with_actor(self.actor.clone())),
            ),
        };
        let before = held.doc.get_heads();
        if let Err(e) = held.doc.receive_sync_message(state, message) {
            return Err(ReplicaError::Apply {
                case,
                message: e.to_string(),
            });
        }
        let changes = held.doc.get_changes(&before);
        let mut batch = Batch::new();
        if !changes.is_empty() {
            docs::stage_changes(&mut batch, case, &changes);
            batch.put(keys::local_case(case), Vec::new());
            self.stage_key_marks(&mut batch, case, &held.doc)?;
        }
        docs::stage_sync_state(&mut batch, case, RELAY_PEER, state);
        self.storage.apply(batch)?;
        *guard = Some(held);
        Ok(())
    }

    /// Takes whole cases sent by the relay: loads them on up to `threads`
    /// threads, merges each into any local copy and stores them all in one
    /// batch. Not flushed, like [`Replica::receive`]. A case whose bytes do
    /// not load (damaged at the relay) is set aside, to be fetched whole
    /// again at the next sync, and returned with why: one damaged case
    /// must not keep a fresh tablet from the rest of its store.
    pub fn adopt_snapshots(
        &mut self,
        snapshots: &[DocBytes],
        threads: usize,
    ) -> Result<Vec<(CaseId, String)>, ReplicaError> {
        let loaded = load_snapshots(snapshots, threads)?;
        let mut batch = Batch::new();
        let mut touched = Vec::with_capacity(snapshots.len());
        let mut merged = Ok(());
        let mut damaged = Vec::new();
        for (s, incoming) in snapshots.iter().zip(loaded) {
            let mut incoming = match incoming {
                Ok(d) => d,
                Err(why) => {
                    tracing::warn!(case = %s.doc, error = %why, "a case from the relay does not load; fetching it again at the next sync");
                    refusals::stage_wanted(&mut batch, s.doc);
                    damaged.push((s.doc, why));
                    continue;
                }
            };
            touched.push(s.doc);
            batch.put(keys::local_case(s.doc), Vec::new());
            let slot = self.docs.slot(s.doc);
            let mut guard = loaded::lock(&slot);
            let held = match guard.take() {
                Some(h) => Some(h),
                None => match self.load(s.doc) {
                    Ok(doc) => doc.map(Held::new),
                    Err(e) => {
                        merged = Err(e);
                        break;
                    }
                },
            };
            match held {
                Some(mut h) => {
                    let before = h.doc.get_heads();
                    if let Err(e) = h.doc.merge(&mut incoming) {
                        merged = Err(ReplicaError::Apply {
                            case: s.doc,
                            message: e.to_string(),
                        });
                        break;
                    }
                    docs::stage_changes(&mut batch, s.doc, &h.doc.get_changes(&before));
                    if let Err(e) = self.stage_key_marks(&mut batch, s.doc, &h.doc) {
                        merged = Err(e);
                        break;
                    }
                    *guard = Some(h);
                }
                None => {
                    // Nothing of it is stored yet: keep the relay's bytes.
                    batch.put(keys::snapshot(s.doc), s.bytes.clone());
                    if let Err(e) = self.stage_key_marks(&mut batch, s.doc, &incoming) {
                        merged = Err(e);
                        break;
                    }
                    *guard = Some(Held::new(incoming.with_actor(self.actor.clone())));
                }
            }
        }
        if let Err(e) = merged.and_then(|()| Ok(self.storage.apply(batch)?)) {
            // Memory must not run ahead of the disk: forget every document
            // this call touched; they reload from storage on demand.
            for case in touched {
                self.docs.forget(case);
            }
            return Err(e);
        }
        Ok(damaged)
    }

    /// Clears the dirty mark of `case` if the relay's heads (from the last
    /// message it sent, which it only sends after its copy is durable) cover
    /// everything this device has.
    pub fn confirm_if_uploaded(
        &mut self,
        case: CaseId,
        relay_heads: &[ChangeHash],
    ) -> Result<bool, ReplicaError> {
        let confirmed = self.with_held(case, |h| {
            let doc = &h.doc;
            let ours = doc.get_heads();
            let covered = ours.iter().all(|hash| relay_heads.contains(hash))
                || (relay_heads
                    .iter()
                    .all(|hash| doc.get_change_by_hash(hash).is_some())
                    && doc.get_changes(relay_heads).is_empty());
            // Under the case's lock, so no edit of it slips in between
            // the check and the removal of its mark.
            let marked = covered && (h.marked || self.storage.get(&keys::dirty(case))?.is_some());
            if marked {
                let mut b = Batch::new();
                b.delete(keys::dirty(case));
                self.storage.apply(b)?;
                h.marked = false;
            }
            Ok((covered, marked))
        })?;
        let Some((covered, cleared)) = confirmed else {
            return Ok(false);
        };
        if cleared {
            self.clear_refusal(case)?;
        }
        Ok(covered)
    }

    /// Drops cached documents (they are reloaded from storage on demand).
    pub fn evict_all(&mut self) {
        self.docs.clear();
    }
}

/// The changes of `doc` that are not in `before`. An edit commits one
/// change on top of the heads it started from; that change is read by its
/// hash, which is cheaper than Automerge's search of the history for
/// everything not reachable from `before`.
fn new_changes(doc: &Automerge, before: &[ChangeHash]) -> Vec<automerge::Change> {
    let heads = doc.get_heads();
    if heads.as_slice() == before {
        return Vec::new();
    }
    if let [head] = heads.as_slice() {
        if let Some(change) = doc.get_change_by_hash(head) {
            let mut deps = change.deps().to_vec();
            deps.sort_unstable();
            // `before` is sorted (it came from `get_heads`). If the new head
            // depends on exactly the old heads, nothing else is new.
            if deps == before {
                return vec![change];
            }
        }
    }
    doc.get_changes(before)
}

/// Loads snapshots in order, splitting the work over up to `threads`
/// threads: decoding dominates a fresh device's first sync, and the loads
/// are independent pure computations, so the result does not depend on the
/// thread count.
/// Each snapshot loaded, or why it does not load.
type Loaded = Result<Automerge, String>;

fn load_snapshots(snaps: &[DocBytes], threads: usize) -> Result<Vec<Loaded>, ReplicaError> {
    let load = |s: &DocBytes| -> Result<Loaded, ReplicaError> {
        Ok(Automerge::load(&s.bytes).map_err(|e| format!("the relay's copy does not load: {e}")))
    };
    let threads = threads.clamp(1, snaps.len().max(1));
    if threads == 1 {
        return snaps.iter().map(load).collect();
    }
    let per = snaps.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = snaps
            .chunks(per)
            .map(|chunk| scope.spawn(move || chunk.iter().map(load).collect::<Result<Vec<_>, _>>()))
            .collect();
        let mut out = Vec::with_capacity(snaps.len());
        for (w, chunk) in workers.into_iter().zip(snaps.chunks(per)) {
            // `chunks` never yields an empty slice, so `chunk[0]` exists.
            let part = w.join().map_err(|_| ReplicaError::Apply {
                case: chunk[0].doc,
                message: "loading a snapshot panicked".into(),
            })??;
            out.extend(part);
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::ContactChannel;
    use crate::storage::MemoryStorage;

    fn identity() -> DeviceIdentity {
        DeviceIdentity {
            user: UserId::new("alice").unwrap(),
            role: crate::access::Role::Staff,
            store: StoreId::new("S1").unwrap(),
            device: DeviceId::new("tab1").unwrap(),
        }
    }

    fn e(n: u8) -> Entropy {
        Entropy {
            now: Millis(1_700_000_000_000 + n as i64),
            nonce: [n; 16],
            key: [0x5c; 32],
        }
    }

    fn customer() -> Customer {
        Customer {
            name: "Wang Fang".into(),
            phone: "13800138000".into(),
        }
    }

    /// Documents of `n` cases written on another device, as a relay would
    /// serve them.
    fn served(n: u8) -> Vec<DocBytes> {
        let other = Replica::open(MemoryStorage::new(), identity(), [9; 16]);
        (0..n)
            .map(|i| {
                let id = CaseId::from_bytes([i + 1; 16]);
                other
                    .create_case(id, e(i), CaseKind::Repair, customer(), None, None)
                    .unwrap();
                other
                    .add_note(id, e(i + 100), &format!("note {i}"))
                    .unwrap();
                let bytes = docs::stored_bytes(&other.storage, id).unwrap().unwrap();
                DocBytes { doc: id, bytes }
            })
            .collect()
    }

    #[test]
    fn a_dirty_mark_keeps_the_time_of_the_first_unconfirmed_edit() {
        let r = Replica::open(MemoryStorage::new(), identity(), [1; 16]);
        let a = CaseId::from_bytes([1; 16]);
        let b = CaseId::from_bytes([2; 16]);
        r.create_case(a, e(10), CaseKind::Repair, customer(), None, None)
            .unwrap();
        r.create_case(b, e(20), CaseKind::Repair, customer(), None, None)
            .unwrap();
        // A later edit of a marked case does not make its work look newer.
        r.add_note(a, e(90), "again").unwrap();
        let marks: std::collections::HashMap<_, _> = r.dirty_marks().unwrap().into_iter().collect();
        assert_eq!(marks[&a], Some(e(10).now));
        assert_eq!(marks[&b], Some(e(20).now));
        assert_eq!(r.status().unwrap().oldest_pending, Some(e(10).now));
        let u = r.unsynced(Millis(e(10).now.0 + 61_000)).unwrap();
        assert_eq!((u.pending, u.oldest_unsynced_secs), (2, Some(61)));
        // A mark written before the time was kept still counts, with no age.
        let mut legacy = Batch::new();
        legacy.put(keys::dirty(CaseId::from_bytes([3; 16])), Vec::new());
        r.storage.apply(legacy).unwrap();
        assert_eq!(r.unsynced(e(10).now).unwrap().pending, 3);
    }

    #[test]
    fn a_damaged_snapshot_is_set_aside_and_the_others_adopted() {
        let mut snaps = served(7);
        let good = snaps.clone();
        snaps[4].bytes.truncate(10);
        let store = MemoryStorage::new();
        let mut r = Replica::open(store, identity(), [1; 16]);
        let damaged = r.adopt_snapshots(&snaps, 3).unwrap();
        assert_eq!(damaged.len(), 1);
        assert_eq!(damaged[0].0, snaps[4].doc);
        for (i, s) in snaps.iter().enumerate() {
            assert_eq!(r.case(s.doc).unwrap().is_some(), i != 4, "{i}");
        }
        // Asked for again at the next sync.
        assert_eq!(r.wanted().unwrap(), vec![snaps[4].doc]);
        // The same cases, intact, on any number of threads.
        for threads in [1, 2, 5] {
            let mut r = Replica::open(MemoryStorage::new(), identity(), [1; 16]);
            r.adopt_snapshots(&good, threads).unwrap();
            for (i, s) in good.iter().enumerate() {
                let v = r.case(s.doc).unwrap().unwrap();
                let text = format!("note {i}");
                assert!(v
                    .timeline
                    .iter()
                    .any(|n| n.text.as_deref() == Some(text.as_str())));
            }
        }
    }

    #[test]
    fn a_reported_save_survives_a_crash() {
        let store = MemoryStorage::new();
        let r = Replica::open(store.clone(), identity(), [1; 16]);
        let id = CaseId::from_bytes([5; 16]);
        r.create_case(id, e(1), CaseKind::Complaint, customer(), None, None)
            .unwrap();
        r.add_note(id, e(2), "called, no answer").unwrap();
        store.crash(0);
        let r = Replica::open(store, identity(), [2; 16]);
        let v = r.case(id).unwrap().unwrap();
        assert_eq!(v.case_no.as_deref(), Some("S1-tab1-1"));
        assert!(v
            .timeline
            .iter()
            .any(|t| t.text.as_deref() == Some("called, no answer")));
        assert_eq!(r.status().unwrap().pending_cases, vec![id]);
    }

    #[test]
    fn a_refused_edit_saves_nothing() {
        let store = MemoryStorage::new();
        let r = Replica::open(store.clone(), identity(), [1; 16]);
        let id = CaseId::from_bytes([5; 16]);
        r.create_case(id, e(1), CaseKind::Repair, customer(), None, None)
            .unwrap();
        let keys_before = store.len();
        assert!(r
            .set_field(id, e(2), CaseField::SaleChannel, "online")
            .is_err());
        assert_eq!(store.len(), keys_before);
        assert!(matches!(
            r.add_note(CaseId::from_bytes([6; 16]), e(3), "x"),
            Err(ReplicaError::UnknownCase(_))
        ));
    }

    /// 2026-11-23 at `h:00` China time, in UTC milliseconds.
    fn china(h: i64, n: u8) -> Entropy {
        Entropy {
            now: Millis(1_795_392_000_000 + (h - 8) * 3_600_000),
            nonce: [n; 16],
            key: [0x5c; 32],
        }
    }

    #[test]
    fn contact_guard_counts_calls_per_customer_across_cases() {
        let store = MemoryStorage::new();
        let mut r = Replica::open(store.clone(), identity(), [1; 16]);
        let a = CaseId::from_bytes([5; 16]);
        let b = CaseId::from_bytes([6; 16]);
        r.create_case(a, e(1), CaseKind::Repair, customer(), None, None)
            .unwrap();
        r.create_case(b, e(2), CaseKind::Complaint, customer(), None, None)
            .unwrap();
        let out = edit::Direction::Outbound;
        let call = |r: &mut Replica<MemoryStorage>, c, at, text: &str| {
            r.log_contact(c, at, ContactChannel::Phone, out, text, None)
                .unwrap()
        };
        assert!(call(&mut r, a, china(11, 10), "no answer").is_empty());
        assert!(call(&mut r, b, china(12, 11), "no answer").is_empty());
        // The customer calls back in the evening: recorded, not flagged,
        // and not counted against the daily limit.
        let inbound = r
            .log_contact(
                a,
                china(20, 12),
                ContactChannel::Phone,
                edit::Direction::Inbound,
                "customer called back",
                None,
            )
            .unwrap();
        assert!(inbound.is_empty(), "{inbound:?}");
        assert!(call(&mut r, a, china(13, 13), "call back later").is_empty());
        // The fourth outbound call of the day happened: it is recorded,
        // flagged on the case, and the clerk is told.
        let warned = call(&mut r, b, china(14, 14), "again");
        assert!(
            warned
                .iter()
                .any(|w| w.contains("already called 3 times today")),
            "{warned:?}"
        );
        let v = r.case(b).unwrap().unwrap();
        let fourth = v.contact_attempts.last().unwrap();
        assert_eq!(fourth.outcome.as_deref(), Some("again"));
        // The device counted the customer's other case: the flag is kept.
        assert!(
            fourth
                .flags
                .iter()
                .any(|f| f.contains("already called 3 times today")),
            "{:?}",
            fourth.flags
        );
        // A clerk cannot give an override reason.
        let err = r
            .log_contact(
                b,
                china(20, 15),
                ContactChannel::Phone,
                out,
                "late",
                Some("asked"),
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("only a supervisor can override"),
            "{err}"
        );
        // Texts are not calls.
        r.log_contact(
            b,
            china(20, 16),
            ContactChannel::Sms,
            out,
            "update sent",
            None,
        )
        .unwrap();
        let sup = DeviceIdentity {
            role: crate::access::Role::Supervisor,
            ..identity()
        };
        let r = Replica::open(store, sup, [2; 16]);
        let warned = r
            .log_contact(
                b,
                china(19, 17),
                ContactChannel::Phone,
                out,
                "evening call",
                Some("customer asked for an evening call"),
            )
            .unwrap();
        assert!(warned.iter().any(|w| w.contains("19:xx")), "{warned:?}");
        let v = r.case(b).unwrap().unwrap();
        let overridden = v
            .contact_attempts
            .iter()
            .find(|c| c.override_reasons.is_some())
            .unwrap();
        assert_eq!(
            overridden.override_reasons.as_deref(),
            Some("customer asked for an evening call")
        );
        assert!(
            overridden.flags.iter().any(|f| f.contains("19:xx")),
            "{:?}",
            overridden.flags
        );
    }

    #[test]
    fn a_serial_still_faulty_after_its_second_repair_gives_exchange_or_return() {
        let sup = DeviceIdentity {
            role: crate::access::Role::Supervisor,
            ..identity()
        };
        let mut r = Replica::open(MemoryStorage::new(), sup, [1; 16]);
        let policy = crate::policy::Policy {
            version: 2,
            technicians: vec![crate::policy::TechnicianHours {
                user: "tom".into(),
                store: "S1".into(),
                start: "09:00".into(),
                end: "18:00".into(),
                days: vec![1, 2, 3, 4, 5, 6, 7],
                days_off: vec![],
            }],
            ..crate::policy::Policy::default()
        };
        let json = serde_json::to_string(&policy).unwrap();
        r.adopt_policy(policy, &json).unwrap();
        let mut n = 10u8;
        // 10:00 China time on 17 and 18 November 2023: one visit a day.
        let mut days = [1_700_186_400_000i64, 1_700_272_800_000].into_iter();
        let mut step = |r: &mut Replica<MemoryStorage>, c: CaseId, to: &str| {
            n += 1;
            if to == "dispatched" {
                let start = days.next().unwrap();
                let slot = crate::case::booking::Slot {
                    tech: "tom".into(),
                    start: Millis(start),
                    minutes: 90,
                    window_end: Millis(start + 1_800_000),
                    address: None,
                    hours_override: None,
                };
                r.book(c, e(n), &slot).unwrap();
            } else {
                r.transition(c, e(n), to, None).unwrap();
            }
        };
        let open = |r: &mut Replica<MemoryStorage>, byte: u8, serial: &str| {
            let c = CaseId::from_bytes([byte; 16]);
            r.create_case(
                c,
                e(byte),
                CaseKind::Repair,
                customer(),
                Some("WM-8KG".into()),
                None,
            )
            .unwrap();
            r.set_field(c, e(byte + 100), CaseField::Serial, serial)
                .unwrap();
            c
        };
        let sanbao =
            |r: &mut Replica<MemoryStorage>, c| r.case_in_context(c).unwrap().unwrap().sanbao;
        use crate::rules::warranty::Remedy::{Exchange, Repair, Return};

        // The first repair of serial SN-1.
        let a = open(&mut r, 1, "SN-1");
        assert_eq!(sanbao(&mut r, a).unwrap().repairs, 0);
        for to in [
            "confirmed",
            "dispatched",
            "in_repair",
            "pending_acceptance",
            "accepted",
        ] {
            step(&mut r, a, to);
        }
        let first = sanbao(&mut r, a).unwrap();
        assert_eq!((first.repairs, first.remedies.clone()), (1, vec![Repair]));

        // It comes back: the second repair, still a repair.
        let b = open(&mut r, 2, "SN-1");
        let second = sanbao(&mut r, b).unwrap();
        assert_eq!((second.repairs, second.remedies), (1, vec![Repair]));
        for to in ["confirmed", "dispatched", "in_repair", "pending_acceptance"] {
            step(&mut r, b, to);
        }
        // The second repair fails acceptance: still faulty after two
        // repairs in warranty, the customer may choose exchange or return.
        step(&mut r, b, "in_repair");
        let after = sanbao(&mut r, b).unwrap();
        assert_eq!(after.repairs, 2);
        assert_eq!(after.remedies, vec![Return, Exchange]);
        assert_eq!(after.cases.len(), 2);

        // Another serial's repairs do not count; nor does an unknown one.
        let c = open(&mut r, 3, "SN-2");
        assert_eq!(sanbao(&mut r, c).unwrap().remedies, vec![Repair]);
        assert!(r
            .set_field(c, e(60), CaseField::Serial, "SN 2; drop")
            .is_err());
    }

    #[test]
    fn case_numbers_count_up_per_device() {
        let r = Replica::open(MemoryStorage::new(), identity(), [1; 16]);
        for n in 1..=3u8 {
            let id = CaseId::from_bytes([n; 16]);
            r.create_case(id, e(n), CaseKind::Repair, customer(), None, None)
                .unwrap();
            assert_eq!(
                r.case(id).unwrap().unwrap().case_no,
                Some(format!("S1-tab1-{n}"))
            );
        }
        assert_eq!(r.cases().unwrap().len(), 3);
    }

    #[test]
    fn threads_editing_more_cases_than_stay_loaded_lose_nothing() {
        // More cases than the cache keeps, edited by several threads at
        // once, so documents are dropped and reloaded while others edit.
        const THREADS: usize = 4;
        let per_thread = loaded::MAX_LOADED / THREADS + 60;
        let store = MemoryStorage::new();
        let r = Replica::open(store.clone(), identity(), [1; 16]);
        let start = std::sync::Barrier::new(THREADS);
        let ids: Vec<Vec<CaseId>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (r, start) = (&r, &start);
                    scope.spawn(move || {
                        let mine: Vec<CaseId> = (0..per_thread)
                            .map(|i| {
                                let mut b = [0u8; 16];
                                b[0] = t as u8;
                                b[1..9].copy_from_slice(&(i as u64).to_be_bytes());
                                let id = CaseId::from_bytes(b);
                                r.create_case(
                                    id,
                                    e(t as u8),
                                    CaseKind::Repair,
                                    customer(),
                                    None,
                                    None,
                                )
                                .unwrap();
                                id
                            })
                            .collect();
                        start.wait();
                        mine
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let all: Vec<CaseId> = ids.concat();
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let (r, all) = (&r, &all);
                scope.spawn(move || {
                    // Every thread edits every case, each from its own
                    // starting point, so threads meet on the same cases.
                    let n = all.len();
                    for k in 0..n {
                        let case = all[(k + t * n / THREADS) % n];
                        let mut en = e(t as u8);
                        en.nonce[..8].copy_from_slice(&(k as u64).to_be_bytes());
                        r.add_note(case, en, &format!("t{t}")).unwrap();
                    }
                });
            }
        });
        let again = Replica::open(store, identity(), [2; 16]);
        let numbers: std::collections::HashSet<_> = all
            .iter()
            .map(|c| again.case(*c).unwrap().unwrap().case_no)
            .collect();
        assert_eq!(numbers.len(), all.len(), "no case number drawn twice");
        for case in &all {
            let v = again.case(*case).unwrap().unwrap();
            let mut notes: Vec<_> = v
                .timeline
                .iter()
                .filter(|e| e.kind == "note")
                .filter_map(|e| e.text.clone())
                .collect();
            notes.sort();
            let want: Vec<String> = (0..THREADS).map(|t| format!("t{t}")).collect();
            assert_eq!(notes, want, "case {case}");
        }
    }
}
