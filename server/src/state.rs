//! State shared by every request and connection.

use crate::auth::Keys;
use aftercase_sync::relay::Relay;
use aftercase_sync::storage::{SledStorage, Storage, StorageError};
use aftercase_sync::StoreId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::watch;

/// The relay core behind one lock, the keys, group commit, and the signals
/// that wake connections when a case of theirs changed.
pub struct AppState {
    relay: Mutex<Relay<SledStorage>>,
    /// The relay's storage, flushed outside the relay's lock.
    storage: SledStorage,
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
}

impl AppState {
    /// Wraps an opened relay and a handle on its storage.
    pub fn new(relay: Relay<SledStorage>, storage: SledStorage, keys: Keys) -> AppState {
        let (everything, _) = watch::channel(relay.seq());
        AppState {
            relay: Mutex::new(relay),
            storage,
            keys,
            issued: AtomicU64::new(0),
            flushed: tokio::sync::Mutex::new(0),
            stores: Mutex::new(HashMap::new()),
            everything,
        }
    }

    /// Locks the relay core.
    pub fn relay(&self) -> MutexGuard<'_, Relay<SledStorage>> {
        // A panic while holding the lock cannot leave the relay half-written:
        // storage batches are atomic and the cache only holds committed
        // documents, so continuing with the inner value is safe.
        self.relay.lock().unwrap_or_else(|e| e.into_inner())
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
    pub async fn make_durable(&self, ticket: u64) -> Result<(), StorageError> {
        let mut flushed = self.flushed.lock().await;
        if *flushed >= ticket {
            return Ok(());
        }
        // Every ticket up to `upto` was issued after its write was applied,
        // and `seq` is read after that: the flush below covers them all.
        let upto = self.issued.load(Ordering::SeqCst);
        let seq = self.relay().seq();
        let storage = self.storage.clone();
        actix_web::web::block(move || storage.flush())
            .await
            .map_err(|e| StorageError::Backend {
                op: "flush",
                message: e.to_string(),
            })??;
        self.relay().mark_durable(seq);
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
        let seq = self.relay().seq();
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

/// Current time in milliseconds (the shell owns the clock).
pub fn now_millis() -> aftercase_sync::Millis {
    aftercase_sync::Millis(chrono::Utc::now().timestamp_millis())
}
