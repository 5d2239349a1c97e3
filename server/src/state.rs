//! State shared by every request and connection.

use crate::auth::{AuthError, Keys, Verified};
use crate::backend::RelayStorage;
use crate::error::ApiError;
use crate::limits::{ConnLimits, SendBudget};
use crate::metrics::Metrics;
use crate::revoke::Revocations;
use aftercase_sync::blobs::DirBlobs;
use aftercase_sync::relay::readmodel::ReadModel;
use aftercase_sync::relay::summary::CaseSummary;
use aftercase_sync::relay::Relay;
use aftercase_sync::storage::{Storage, StorageError};
use aftercase_sync::{CaseId, StoreId};
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The relay core behind one lock, the keys, group commit, the signals
/// that wake connections when a case of theirs changed, revocations and
/// the limits on connections.
///
/// The relay lock is taken only on blocking threads (sync connections' own
/// [`crate::core_pool::CorePool`], `web::block` for the rest): frame
/// handling and views do CPU work under it, and an async worker waiting
/// for it would stall every other connection and request on that worker.
pub struct AppState {
    relay: Mutex<Relay<RelayStorage>>,
    /// Set when this is a store relay (`serve --upstream`).
    pub edge: std::sync::OnceLock<Arc<crate::upstream::Edge>>,
    /// Evidence blobs, outside the case documents' storage: files under
    /// `<data-dir>/blobs`, written without the relay's lock.
    pub blobs: Arc<DirBlobs>,
    /// The relay's sequence as of the last frame handled, readable without
    /// the lock (health checks, group commit, wake-ups).
    seq: AtomicU64,
    /// The relay's storage, flushed outside the relay's lock.
    storage: RelayStorage,
    /// Token keys.
    pub keys: Keys,
    /// Tickets handed out for applied writes, in order.
    issued: AtomicU64,
    /// Highest ticket known durable. Whoever holds the lock is flushing for
    /// everyone waiting behind it.
    flushed: tokio::sync::Mutex<u64>,
    /// One signal per store (carrying the relay sequence), created on first
    /// use; head office listens to `everything`.
    stores: Mutex<HashMap<StoreId, watch::Sender<u64>>>,
    everything: watch::Sender<u64>,
    /// Revocations in force; replaced whenever the directory changes.
    revocations: watch::Sender<Arc<Revocations>>,
    /// Live sync connections per device and user.
    pub limits: Arc<ConnLimits>,
    /// Bytes waiting to be sent, across connections.
    pub budget: SendBudget,
    /// Bytes one connection may have waiting to be sent.
    pub per_connection_budget: usize,
    /// How long a connection may take to accept its frames.
    pub write_timeout: Duration,
    /// Head office's read model, behind its own lock so queries never wait
    /// for the relay's (and sync never waits for a query).
    read: Arc<RwLock<ReadModel>>,
    /// Summaries of committed changes, with the relay sequence of their
    /// commit, waiting for the flush that makes them durable: head office
    /// never sees a change the relay could still lose.
    staged: Mutex<Vec<(u64, CaseId, CaseSummary)>>,
    /// Durable summaries on their way to the publisher thread, which
    /// waits for the write lock so an acknowledgement never does.
    to_publish: Mutex<std::sync::mpsc::Sender<Publication>>,
    /// Highest sequence flushed and handed to the publisher, and highest
    /// published: a query waits (briefly) for the second to reach the
    /// first, so a device's acknowledged change is in every later answer.
    handed: Arc<AtomicU64>,
    published: Arc<AtomicU64>,
    /// What `/metrics` exports.
    pub metrics: Arc<Metrics>,
    /// What `/healthz` says about storage.
    pub health: Arc<crate::health::Health>,
    /// Set once when the relay begins to shut down; every live connection
    /// watches it and closes itself ("going away").
    shutdown: watch::Sender<bool>,
    /// The threads that run sync frames and announcements on the core.
    pub core: crate::core_pool::CorePool,
}

/// The parts of [`AppState`] that come from configuration.
pub struct Settings {
    /// Token keys.
    pub keys: Keys,
    /// Revocations read at startup.
    pub revocations: Revocations,
    /// Connection limits.
    pub limits: ConnLimits,
    /// Send budget, in bytes.
    pub budget_bytes: usize,
    /// Write timeout.
    pub write_timeout: Duration,
    /// The metrics to record into.
    pub metrics: Arc<Metrics>,
    /// The evidence store.
    pub blobs: Arc<DirBlobs>,
}

impl AppState {
    /// Wraps an opened relay and a handle on its storage.
    pub fn new(
        relay: Relay<RelayStorage>,
        storage: RelayStorage,
        read: ReadModel,
        settings: Settings,
    ) -> AppState {
        let (everything, _) = watch::channel(relay.seq());
        let read = Arc::new(RwLock::new(read));
        let published = Arc::new(AtomicU64::new(0));
        let to_publish = spawn_publisher(read.clone(), published.clone());
        let (revocations, _) = watch::channel(Arc::new(settings.revocations));
        AppState {
            seq: AtomicU64::new(relay.seq()),
            relay: Mutex::new(relay),
            edge: std::sync::OnceLock::new(),
            storage,
            keys: settings.keys,
            issued: AtomicU64::new(0),
            flushed: tokio::sync::Mutex::new(0),
            stores: Mutex::new(HashMap::new()),
            everything,
            revocations,
            limits: Arc::new(settings.limits),
            budget: SendBudget::new(settings.budget_bytes),
            // An eighth of the whole (at least 8 MiB, at most all of it):
            // a few stalled devices cannot starve the others.
            per_connection_budget: (settings.budget_bytes / 8)
                .max(8 << 20)
                .min(settings.budget_bytes),
            write_timeout: settings.write_timeout,
            read,
            staged: Mutex::new(Vec::new()),
            to_publish: Mutex::new(to_publish),
            handed: Arc::new(AtomicU64::new(0)),
            published,
            metrics: settings.metrics,
            health: Default::default(),
            blobs: settings.blobs,
            shutdown: watch::channel(false).0,
            core: crate::core_pool::CorePool::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
        }
    }

    /// Tells every live connection the relay is shutting down.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// The signal [`AppState::begin_shutdown`] sets.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Flushes storage and marks everything applied durable; the last step
    /// of a shutdown, after the connections have ended. Blocks: call on a
    /// blocking thread or when nothing else runs.
    pub fn flush_all(&self) -> Result<(), StorageError> {
        let started = Instant::now();
        let seq = self.seq();
        self.storage.flush()?;
        self.metrics.flush_time(started.elapsed());
        self.relay().mark_durable(seq);
        self.publish(seq);
        Ok(())
    }

    /// Waits until every summary durable when it was called is in the read
    /// model (at most a second: the publisher may wait for a long query).
    pub fn await_published(&self) {
        let target = self.handed.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.published.load(Ordering::SeqCst) < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The read model, for a query. Commits never wait for it: their
    /// summaries are put in by a publisher thread.
    pub fn read_model(&self) -> RwLockReadGuard<'_, ReadModel> {
        // Upserts cannot leave the model half-changed in a way a reader
        // could trip on: continue with the inner value after a panic.
        self.read.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The relay's storage, for reads that need no relay lock (the audit
    /// feed, the fleet).
    pub fn storage(&self) -> &RelayStorage {
        &self.storage
    }

    /// Keeps the summary of a change committed at relay sequence `seq`
    /// until that sequence is flushed.
    pub fn stage_summary(&self, seq: u64, case: CaseId, summary: CaseSummary) {
        // A store relay keeps no read model (see `app.rs`).
        if self.edge.get().is_some() {
            return;
        }
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((seq, case, summary));
    }

    /// Shows head office the summaries of every commit up to `seq`, now
    /// durable, in commit order.
    fn publish(&self, seq: u64) {
        let ready: Vec<(u64, CaseId, CaseSummary)> = {
            let mut staged = self.staged.lock().unwrap_or_else(|e| e.into_inner());
            let (ready, rest) = std::mem::take(&mut *staged)
                .into_iter()
                .partition(|(s, _, _)| *s <= seq);
            *staged = rest;
            ready
        };
        self.hand_over(seq, ready);
    }

    /// Sends durable summaries up to `seq` to the publisher thread.
    fn hand_over(&self, seq: u64, rows: Vec<(u64, CaseId, CaseSummary)>) {
        // Handed over under the sender's lock, so `handed` only ever
        // names a sequence already on its way.
        let tx = self.to_publish.lock().unwrap_or_else(|e| e.into_inner());
        if tx.send((seq, rows)).is_ok() {
            self.handed.fetch_max(seq, Ordering::SeqCst);
        }
    }

    /// Takes in commits other relays on the same database made durable up
    /// to `watermark`: the relay catches up (or drops) its stale copies and
    /// may announce them, head office's rows of them are refreshed and the connections
    /// of their stores woken. Blocks (storage reads).
    pub fn observe_commits(&self, watermark: u64) -> Result<Observation, StorageError> {
        let (observed, policy_changed) = {
            let mut relay = self.relay();
            let observed = relay.observe_commits(watermark)?;
            let policy_changed = relay.reload_policy()?;
            self.note_seq(&relay);
            (observed, policy_changed)
        };
        if policy_changed {
            // Every session sends the new policy to its device.
            self.wake(None);
        }
        let reader = self.reader();
        let mut rows = Vec::with_capacity(observed.len());
        for o in &observed {
            if let Some(summary) = reader.summary(o.case)? {
                rows.push((o.seq, o.case, summary));
            }
        }
        self.hand_over(watermark, rows);
        let stores: std::collections::BTreeSet<&StoreId> =
            observed.iter().map(|o| &o.store).collect();
        for store in stores {
            self.wake(Some(store));
        }
        Ok(Observation {
            cases: observed.len(),
            policy_changed,
        })
    }

    /// Puts summaries derived again (under a new policy or schema) into the
    /// read model, unless a commit has published a current one meanwhile.
    pub fn refresh_summaries(
        &self,
        fresh: Vec<(CaseId, CaseSummary)>,
        policy_version: u32,
        schema: u32,
    ) {
        let mut model = self.read.write().unwrap_or_else(|e| e.into_inner());
        for (case, s) in fresh {
            let current = model
                .get(case)
                .is_some_and(|old| old.policy_version == policy_version && old.schema == schema);
            if !current {
                model.upsert(case, s);
            }
        }
    }

    /// Verifies the `Authorization` header and checks the token is not
    /// revoked. Every request and every new connection goes through here.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Verified, ApiError> {
        let v = self.keys.verify_header(header)?;
        self.revocations
            .borrow()
            .check(&v)
            .map_err(|r| ApiError::from(AuthError::Revoked(r)))?;
        Ok(v)
    }

    /// Refuses head office's lists, metrics and exports on a store relay,
    /// which keeps no read model: they are at the chain's relay.
    pub fn lists_here(&self) -> Result<(), ApiError> {
        match self.edge.get() {
            Some(edge) => Err(ApiError::NotFound(format!(
                "this is the store relay of store {}: lists, metrics and exports are at the chain's relay, {}",
                edge.store(),
                edge.url
            ))),
            None => Ok(()),
        }
    }

    /// Verifies a token's signature and claims with this relay's keys.
    pub fn keys_verify(&self, token: &str) -> Result<aftercase_sync::access::Principal, AuthError> {
        Ok(self.keys.verify(token)?.principal)
    }

    /// The channel carrying the revocations in force (for [`crate::revoke::watch`]).
    pub fn revocations(&self) -> &watch::Sender<Arc<Revocations>> {
        &self.revocations
    }

    /// Reads of one stored case without the relay's lock (call on a
    /// blocking thread: they load the case from storage).
    pub fn reader(&self) -> aftercase_sync::relay::CaseReader<RelayStorage> {
        aftercase_sync::relay::CaseReader::new(self.storage.clone())
    }

    /// The relay sequence as of the last handled frame, without the lock.
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Records the relay's sequence; call with the relay lock held, after
    /// any call that may have advanced it.
    pub fn note_seq(&self, relay: &Relay<RelayStorage>) {
        self.seq.store(relay.seq(), Ordering::SeqCst);
    }

    /// Locks the relay core. Call only on a blocking thread (see the type's
    /// documentation).
    pub fn relay(&self) -> RelayGuard<'_> {
        // A panic while holding the lock cannot leave the relay half-written:
        // storage batches are atomic and the cache only holds committed
        // documents, so continuing with the inner value is safe.
        RelayGuard {
            relay: self.relay.lock().unwrap_or_else(|e| e.into_inner()),
            metrics: &self.metrics,
            health: &self.health,
        }
    }

    /// A ticket for a write the relay has just applied; pass it to
    /// [`AppState::make_durable`].
    pub fn ticket(&self) -> u64 {
        self.issued.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Waits until the write behind `ticket` is flushed: one flush covers
    /// every write applied before it started, from any connection (group
    /// commit), so waiters behind a running flush usually find their write
    /// already covered.
    pub async fn make_durable(self: &Arc<Self>, ticket: u64) -> Result<(), StorageError> {
        let started = Instant::now();
        let result = self.flush_covering(ticket).await;
        self.metrics.commit_time(started.elapsed());
        result
    }

    async fn flush_covering(self: &Arc<Self>, ticket: u64) -> Result<(), StorageError> {
        let mut flushed = self.flushed.lock().await;
        if *flushed >= ticket {
            return Ok(());
        }
        // Every ticket up to `upto` was issued after its write was applied
        // and the sequence noted (under the relay lock), and `seq` is read
        // after that: the flush below covers them all.
        let upto = self.issued.load(Ordering::SeqCst);
        let seq = self.seq();
        let state = self.clone();
        let flushed_ok = actix_web::web::block(move || {
            let started = Instant::now();
            state.storage.flush()?;
            state.metrics.flush_time(started.elapsed());
            state.relay().mark_durable(seq);
            Ok::<_, StorageError>(())
        })
        .await
        .map_err(|e| StorageError::Backend {
            op: "flush",
            message: e.to_string(),
        })
        .and_then(|r| r);
        self.health.flushed(flushed_ok.is_ok());
        if flushed_ok.is_ok() {
            self.health.note_durable(seq);
        }
        if let Err(e) = &flushed_ok {
            self.health.storage_error(e);
        }
        flushed_ok?;
        self.publish(seq);
        *flushed = upto;
        Ok(())
    }

    /// The signal a connection of `store` listens to (`None`: head office,
    /// which sees every store).
    pub fn subscribe(&self, store: Option<&StoreId>) -> watch::Receiver<u64> {
        match store {
            None => self.everything.subscribe(),
            Some(s) => self
                .stores
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(s.clone())
                .or_insert_with(|| watch::channel(0).0)
                .subscribe(),
        }
    }

    /// Wakes the connections that may see a durable change of `store`'s
    /// case (`None`: every connection, for a new policy).
    pub fn wake(&self, store: Option<&StoreId>) {
        let seq = self.seq();
        let stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        match store {
            Some(s) => {
                if let Some(tx) = stores.get(s) {
                    tx.send_replace(seq);
                }
            }
            None => {
                for tx in stores.values() {
                    tx.send_modify(|_| {});
                }
            }
        }
        self.everything.send_modify(|v| *v = seq);
    }
}

/// What [`AppState::observe_commits`] took in.
pub struct Observation {
    /// Cases other relays committed to.
    pub cases: usize,
    /// Whether another relay published a new policy (the shell derives
    /// head office's summaries again).
    pub policy_changed: bool,
}

/// The relay core, locked. Dropping it releases the lock after copying the
/// core's cache counters into the metrics, so every use of the relay, by a
/// connection or a request, is counted without `/metrics` taking the lock.
pub struct RelayGuard<'a> {
    relay: MutexGuard<'a, Relay<RelayStorage>>,
    metrics: &'a Metrics,
    health: &'a crate::health::Health,
}

impl Deref for RelayGuard<'_> {
    type Target = Relay<RelayStorage>;
    fn deref(&self) -> &Self::Target {
        &self.relay
    }
}

impl DerefMut for RelayGuard<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.relay
    }
}

impl Drop for RelayGuard<'_> {
    fn drop(&mut self) {
        self.metrics
            .note_cache(self.relay.cache_stats(), self.relay.cached_docs());
        self.health.note_quarantined(self.relay.quarantined().len());
    }
}

/// Summaries made durable by the flush up to a sequence, each with the
/// sequence number of the commit it follows.
type Publication = (u64, Vec<(u64, CaseId, CaseSummary)>);

/// The thread that puts durable summaries into the read model, in commit
/// order, batching whatever arrived while it waited for the write lock.
fn spawn_publisher(
    read: Arc<RwLock<ReadModel>>,
    published: Arc<AtomicU64>,
) -> std::sync::mpsc::Sender<Publication> {
    let (tx, rx) = std::sync::mpsc::channel::<Publication>();
    let spawned = std::thread::Builder::new()
        .name("read-model".into())
        .spawn(move || {
            // The sequence of the commit each case's row follows. With
            // several relays on one database a summary read from another
            // relay's commit may arrive before an older one of this relay's:
            // the older is passed over.
            let mut shown: HashMap<CaseId, u64> = HashMap::new();
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                let upto = batch.iter().map(|(s, _)| *s).max().unwrap_or(0);
                {
                    let mut model = read.write().unwrap_or_else(|e| e.into_inner());
                    for (_, rows) in batch {
                        for (seq, case, summary) in rows {
                            let last = shown.entry(case).or_insert(0);
                            if seq >= *last {
                                *last = seq;
                                model.upsert(case, summary);
                            }
                        }
                    }
                }
                published.fetch_max(upto, Ordering::SeqCst);
            }
        });
    if let Err(e) = spawned {
        // Without the thread the channel's receiver is gone: sends fail and
        // queries stop waiting for them after a second; say why.
        tracing::error!(error = %e, "could not start the read model publisher");
    }
    tx
}

/// Current time in milliseconds (the shell owns the clock).
pub fn now_millis() -> aftercase_sync::Millis {
    aftercase_sync::Millis(chrono::Utc::now().timestamp_millis())
}
