//! The device handle an app holds: local cases plus sync.

use crate::config::DeviceConfig;
use crate::error::ClientError;
use aftercase_sync::case::edit::Customer;
use aftercase_sync::case::{CaseField, CaseKind, CaseView, ContactChannel};
use aftercase_sync::replica::{Entropy, Replica};
use aftercase_sync::storage::{GroupCommit, SledStorage};
use aftercase_sync::{CaseId, Millis};
use rand::Rng;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::Notify;

mod bookings;
pub use bookings::BookingRequest;

/// Sync state as a status bar shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyncStatus {
    /// Cases with changes not yet confirmed by the relay.
    pub pending_cases: usize,
    /// When the oldest of those changes was made (RFC 3339, this device's
    /// clock), if any is pending.
    pub oldest_pending: Option<String>,
    /// When the last sync finished with nothing pending (RFC 3339), if ever.
    pub last_sync: Option<String>,
    /// Resume position in the relay's change sequence.
    pub cursor: u64,
    /// The relay this device syncs with.
    pub relay: String,
    /// Cases whose local changes the relay refused, with its reasons.
    pub refused: Vec<aftercase_sync::replica::Refused>,
    /// Pieces of evidence waiting for upload.
    pub evidence_pending: usize,
    /// Bytes of evidence kept on this device, and how many pieces.
    pub evidence_cached_bytes: u64,
    /// See `evidence_cached_bytes`.
    pub evidence_cached: usize,
    /// Evidence the relay refused for good (hash, reason); kept here.
    pub evidence_refused: Vec<(String, String)>,
}

/// A set-up device. Cheap to clone; clones share the same local store, so an
/// app can edit while a [`Device::run_live`] task syncs.
#[derive(Clone)]
pub struct Device {
    /// Edits and reads share the replica (each case has its own lock
    /// inside it, so edits of different cases run in parallel); sync takes
    /// it whole.
    pub(crate) replica: Arc<RwLock<Replica<SledStorage>>>,
    pub(crate) config: Arc<DeviceConfig>,
    pub(crate) data_dir: PathBuf,
    /// Woken after every local edit so a live sync pushes it at once.
    pub(crate) local_edit: Arc<Notify>,
    /// The newest protocol version the relay was found to speak (this
    /// build's until an older relay says otherwise).
    pub(crate) relay_protocol: Arc<std::sync::atomic::AtomicU8>,
    /// Edits from several threads share flushes.
    commit: Arc<GroupCommit<SledStorage>>,
    /// What the device tells the relay it runs (see [`Device::with_app_version`]).
    pub(crate) app_version: Arc<str>,
}

/// This library's name and version, as the relay's fleet view shows it.
pub fn library_version() -> String {
    format!("aftercase-client {}", env!("CARGO_PKG_VERSION"))
}

pub(crate) fn now() -> Millis {
    Millis(chrono::Utc::now().timestamp_millis())
}

fn entropy() -> Entropy {
    Entropy {
        now: now(),
        nonce: rand::rng().random(),
        key: rand::rng().random(),
    }
}

impl Device {
    /// Stores the relay address and token. Refuses a token of another store
    /// or device when this data directory already holds cases, so one
    /// store's data never leaks into another's account.
    pub fn init(data_dir: &Path, relay: &str, token: &str) -> Result<DeviceConfig, ClientError> {
        let cfg = DeviceConfig::from_token(relay, token)?;
        if let Ok(old) = DeviceConfig::load(data_dir) {
            if (old.store != cfg.store || old.device != cfg.device) && has_cases(data_dir)? {
                return Err(ClientError::Config(format!(
                    "this data directory holds cases of store {} on device {}; the new token is for store {} on device {}: use another --data-dir",
                    old.store, old.device, cfg.store, cfg.device
                )));
            }
        }
        cfg.save(data_dir)?;
        Ok(cfg)
    }

    /// Opens a set-up device. Fails if another process holds the data directory.
    pub fn open(data_dir: &Path) -> Result<Device, ClientError> {
        let config = DeviceConfig::load(data_dir)?;
        let storage = SledStorage::open(&data_dir.join("db"))?;
        aftercase_sync::storage::perms::restrict_tree(data_dir).map_err(|source| {
            ClientError::Io {
                path: data_dir.display().to_string(),
                source,
            }
        })?;
        // A fresh actor per process: automerge refuses a reused actor whose
        // history went backwards (e.g. a tablet restored from backup).
        let actor: [u8; 16] = rand::rng().random();
        let commit = Arc::new(GroupCommit::new(storage.clone()));
        let mut replica = Replica::open(storage, config.identity(), actor);
        replica.defer_flushes();
        Ok(Device {
            commit,
            replica: Arc::new(RwLock::new(replica)),
            config: Arc::new(config),
            data_dir: data_dir.to_path_buf(),
            local_edit: Arc::new(Notify::new()),
            relay_protocol: Arc::new(std::sync::atomic::AtomicU8::new(
                aftercase_sync::protocol::PROTOCOL_VERSION,
            )),
            app_version: library_version().into(),
        })
    }

    /// Names the app embedding this library, e.g. `"shopapp 4.2.1"`: the
    /// device reports `"shopapp 4.2.1 (aftercase-client X.Y.Z)"` to the
    /// relay when it connects, so head office sees which tablets run what.
    /// Without it the library's own version is reported. The relay keeps
    /// at most 64 characters and refuses control characters, so such a
    /// name is refused here.
    pub fn with_app_version(mut self, app: &str) -> Result<Device, ClientError> {
        let app = app.trim();
        if app.chars().any(char::is_control) {
            return Err(ClientError::Config(
                "the app version must not hold control characters".into(),
            ));
        }
        self.app_version = if app.is_empty() {
            library_version().into()
        } else {
            format!("{app} ({})", library_version()).into()
        };
        Ok(self)
    }

    /// What the device reports to the relay that it runs.
    pub fn app_version(&self) -> &str {
        &self.app_version
    }

    /// The settings in use.
    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The replica for sync, alone: no edit runs meanwhile.
    /// Wipes this device: every case key first, then every case, blob and
    /// setting, then the files of its data directory (the database and
    /// the relay address and token). What a device reported lost does
    /// before anything else when the relay tells it, and `aftercase wipe`
    /// does by hand. The device cannot be used afterwards: set it up again
    /// with [`Device::init`].
    pub fn wipe(&self) -> Result<(), ClientError> {
        self.replica().wipe()?;
        let entries = std::fs::read_dir(&self.data_dir).map_err(|source| ClientError::Io {
            path: self.data_dir.display().to_string(),
            source,
        })?;
        for e in entries.flatten() {
            let p = e.path();
            let removed = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            removed.map_err(|source| ClientError::Io {
                path: p.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }

    pub(crate) fn replica(&self) -> RwLockWriteGuard<'_, Replica<SledStorage>> {
        // Replica operations either complete or leave storage untouched
        // (and a document a panicking thread held is reloaded from
        // storage), so a panic in another thread does not leave it
        // inconsistent.
        self.replica.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The replica for local edits and reads, shared with other threads
    /// doing the same.
    pub(crate) fn shared(&self) -> RwLockReadGuard<'_, Replica<SledStorage>> {
        // As in `replica`: a panic elsewhere leaves nothing half-done.
        self.replica.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn edited<T>(
        &self,
        r: Result<T, aftercase_sync::replica::ReplicaError>,
    ) -> Result<T, ClientError> {
        let v = r?;
        // The edit is applied (and its case unlocked, so other threads
        // can apply theirs meanwhile): report it only once a flush covers
        // it. The ticket is taken after the apply, so the flush that
        // covers it started after the edit was in storage.
        self.commit.wait(self.commit.ticket())?;
        self.local_edit.notify_one();
        Ok(v)
    }

    /// Opens a case; returns its id once it is durable on this device.
    pub fn create_case(
        &self,
        kind: CaseKind,
        customer_name: &str,
        customer_phone: &str,
        sku: Option<String>,
        description: Option<String>,
    ) -> Result<CaseId, ClientError> {
        let id = CaseId::from_random_bytes(rand::rng().random());
        let customer = Customer {
            name: customer_name.to_string(),
            phone: customer_phone.to_string(),
        };
        let r = self
            .shared()
            .create_case(id, entropy(), kind, customer, sku, description);
        self.edited(r)
    }

    /// Adds a note to a case's timeline.
    pub fn add_note(&self, case: CaseId, text: &str) -> Result<(), ClientError> {
        let r = self.shared().add_note(case, entropy(), text);
        self.edited(r)
    }

    /// Sets a field of a case.
    pub fn set_field(
        &self,
        case: CaseId,
        field: CaseField,
        value: &str,
    ) -> Result<(), ClientError> {
        let r = self.shared().set_field(case, entropy(), field, value);
        self.edited(r)
    }

    /// Records a contact with the customer. It is always recorded; the
    /// contact rules an outbound call broke are returned (and flagged on
    /// the case). `override_reason` is a supervisor's own reason.
    pub fn log_contact(
        &self,
        case: CaseId,
        channel: ContactChannel,
        direction: aftercase_sync::case::edit::Direction,
        outcome: &str,
        override_reason: Option<&str>,
    ) -> Result<Vec<String>, ClientError> {
        let r = self.shared().log_contact(
            case,
            entropy(),
            channel,
            direction,
            outcome,
            override_reason,
        );
        self.edited(r)
    }

    /// Moves a case along its workflow (the error names the states allowed
    /// from here when the move is not one of them).
    pub fn transition(
        &self,
        case: CaseId,
        to: &str,
        reason: Option<&str>,
    ) -> Result<Option<CaseId>, ClientError> {
        let r = self.shared();
        r.transition(case, entropy(), to, reason)?;
        let new_id = CaseId::from_random_bytes(rand::rng().random());
        let follow_up = r.open_follow_up(case, new_id, entropy());
        drop(r);
        // The move is applied even if opening the follow-up failed: make it
        // durable either way before answering.
        self.commit.wait(self.commit.ticket())?;
        self.local_edit.notify_one();
        Ok(follow_up?)
    }

    /// Assigns the case to a technician or installer (by user id).
    pub fn assign(&self, case: CaseId, technician: &str) -> Result<(), ClientError> {
        let user = aftercase_sync::UserId::new(technician)
            .map_err(|e| ClientError::Config(format!("technician: {e}")))?;
        let r = self.shared().assign(case, entropy(), &user);
        self.edited(r)
    }

    /// Records the customer's survey answers (1-5 on four dimensions).
    pub fn survey(
        &self,
        case: CaseId,
        s: &aftercase_sync::case::service::Survey,
    ) -> Result<(), ClientError> {
        let r = self.shared().survey(case, entropy(), s);
        self.edited(r)
    }

    /// Moves the case up the escalation ladder.
    pub fn escalate(
        &self,
        case: CaseId,
        level: &str,
        reference: Option<&str>,
    ) -> Result<(), ClientError> {
        let r = self.shared().escalate(case, entropy(), level, reference);
        self.edited(r)
    }

    /// Records a supervisor's freight decision that departs from the rules.
    pub fn override_freight(
        &self,
        case: CaseId,
        outbound: &str,
        return_leg: &str,
        reason: &str,
    ) -> Result<aftercase_sync::case::service::FreightView, ClientError> {
        use aftercase_sync::case::service::parse_payer;
        let out = parse_payer(outbound).map_err(|e| ClientError::Config(e.to_string()))?;
        let ret = parse_payer(return_leg).map_err(|e| ClientError::Config(e.to_string()))?;
        let r = self
            .shared()
            .override_freight(case, entropy(), out, ret, reason);
        self.edited(r)
    }

    /// Decides who pays freight from the facts and records it with its rule.
    pub fn decide_freight(
        &self,
        case: CaseId,
        facts: &aftercase_sync::rules::freight::FreightFacts,
    ) -> Result<aftercase_sync::case::service::FreightView, ClientError> {
        let r = self.shared().decide_freight(case, entropy(), facts);
        self.edited(r)
    }

    /// Resolves a workflow conflict (supervisor or head office).
    pub fn resolve(&self, case: CaseId, conflict: &str, choose: &str) -> Result<(), ClientError> {
        let r = self.shared().resolve(case, entropy(), conflict, choose);
        self.edited(r)
    }

    /// Offers compensation (`amount` in yuan, e.g. "100" or "49.90"); returns
    /// the offer id. Above the person's limit the offer waits for approval.
    pub fn offer(
        &self,
        case: CaseId,
        tier: &str,
        amount: &str,
        note: Option<&str>,
    ) -> Result<String, ClientError> {
        let tier: aftercase_sync::money::Tier = tier.parse().map_err(ClientError::Config)?;
        let fen = aftercase_sync::money::parse_yuan(amount)
            .map_err(|e| ClientError::Config(format!("amount: {e}")))?;
        let r = self.shared().offer(case, entropy(), tier, fen, note);
        self.edited(r)
    }

    /// Attaches the file at `path` to a case as evidence of `kind` (photo,
    /// receipt, signature, ...); returns its SHA-256 once it is durable
    /// on this device. The media type is read from the bytes.
    pub fn attach(
        &self,
        case: CaseId,
        path: &Path,
        kind: &str,
        caption: Option<&str>,
    ) -> Result<String, ClientError> {
        let max = self.policy().max_blob_bytes;
        let size = std::fs::metadata(path)
            .map_err(|source| ClientError::Io {
                path: path.display().to_string(),
                source,
            })?
            .len();
        if size > max {
            return Err(ClientError::Config(format!(
                "{} is {size} bytes; evidence may be at most {max} bytes (policy max_blob_bytes)",
                path.display()
            )));
        }
        let bytes = std::fs::read(path).map_err(|source| ClientError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let r = self
            .shared()
            .attach_evidence(case, entropy(), kind, &bytes, caption);
        self.edited(r)
    }

    /// Removes a piece of evidence from a case, with a reason.
    pub fn remove_evidence(
        &self,
        case: CaseId,
        hash: &str,
        reason: &str,
    ) -> Result<(), ClientError> {
        let r = self.shared().remove_evidence(case, entropy(), hash, reason);
        self.edited(r)
    }

    /// The bytes of a piece of evidence this device holds.
    pub fn evidence_bytes(&self, hash: &str) -> Result<Option<Vec<u8>>, ClientError> {
        Ok(self.shared().blob(hash)?)
    }

    /// Approves, rejects, or records the customer's answer to an offer.
    pub fn decide(
        &self,
        case: CaseId,
        offer_id: &str,
        decision: aftercase_sync::case::offer::Decision,
    ) -> Result<(), ClientError> {
        let r = self.shared().decide(case, entropy(), offer_id, decision);
        self.edited(r)
    }

    /// One case, with its timers evaluated against the device clock.
    pub fn case(&self, case: CaseId) -> Result<Option<CaseView>, ClientError> {
        let mut v = self.shared().case_in_context(case)?;
        if let Some(v) = v.as_mut() {
            v.evaluate_timers(now());
        }
        Ok(v)
    }

    /// Every case on the device, oldest first, timers evaluated now.
    pub fn cases(&self) -> Result<Vec<CaseView>, ClientError> {
        let mut all = self.shared().cases()?;
        let t = now();
        for v in &mut all {
            v.evaluate_timers(t);
        }
        Ok(all)
    }

    /// The policy this device decides under, as JSON.
    pub fn policy(&self) -> aftercase_sync::policy::Policy {
        self.shared().policy().clone()
    }

    /// Pending changes and last successful sync.
    pub fn status(&self) -> Result<SyncStatus, ClientError> {
        // One guard for the whole read: the replica's lock is not reentrant.
        let r = self.shared();
        let s = r.status()?;
        let (cached_bytes, cached) = r.blob_cache()?;
        Ok(SyncStatus {
            pending_cases: s.pending_cases.len(),
            oldest_pending: s.oldest_pending.map(|m| m.to_rfc3339()),
            last_sync: s.last_sync.map(|m| m.to_rfc3339()),
            cursor: s.cursor.0,
            relay: self.config.relay.clone(),
            refused: r.refusals()?,
            evidence_pending: r.pending_uploads()?.len(),
            evidence_cached_bytes: cached_bytes,
            evidence_cached: cached,
            evidence_refused: r
                .refused_blobs()?
                .into_iter()
                .map(|(h, why)| (aftercase_sync::blobs::hex(&h), why))
                .collect(),
        })
    }

    /// Evidence of the cases on this device whose bytes it does not hold
    /// (never fetched, or evicted from the cache).
    pub fn missing_evidence(
        &self,
    ) -> Result<Vec<aftercase_sync::replica::blobs::MissingBlob>, ClientError> {
        Ok(self.shared().missing_blobs()?)
    }

    /// The case on this device whose evidence names `hash`, with the size
    /// its record declares.
    pub fn case_of_evidence(
        &self,
        hash: &aftercase_sync::blobs::BlobHash,
    ) -> Result<Option<(CaseId, u64)>, ClientError> {
        Ok(self.shared().case_of_blob(hash)?)
    }

    /// Drops the local changes of a refused case: the local document goes
    /// to the reject log in the device's store (nothing typed is lost) and
    /// the relay's version is fetched at the next sync. Returns the bytes
    /// kept in the reject log.
    pub fn discard(&self, case: CaseId) -> Result<usize, ClientError> {
        Ok(self.replica().discard(case, now())?)
    }
}

fn has_cases(data_dir: &Path) -> Result<bool, ClientError> {
    let db = data_dir.join("db");
    if !db.exists() {
        return Ok(false);
    }
    let storage = SledStorage::open(&db)?;
    let ids = aftercase_sync::storage::Storage::scan(&storage, b"l", b"m", 1)?;
    Ok(!ids.is_empty())
}
