//! State shared by every request and connection.

use crate::auth::Keys;
use aftercase_sync::relay::Relay;
use aftercase_sync::storage::SledStorage;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::watch;

/// The relay core behind one lock, the keys, and a signal that wakes every
/// connection when any case changed.
pub struct AppState {
    relay: Mutex<Relay<SledStorage>>,
    /// Token keys.
    pub keys: Keys,
    /// Carries the relay's latest sequence; connections re-announce on change.
    pub changes: watch::Sender<u64>,
}

impl AppState {
    /// Wraps an opened relay.
    pub fn new(relay: Relay<SledStorage>, keys: Keys) -> AppState {
        let (changes, _) = watch::channel(relay.seq());
        AppState {
            relay: Mutex::new(relay),
            keys,
            changes,
        }
    }

    /// Locks the relay core.
    pub fn relay(&self) -> MutexGuard<'_, Relay<SledStorage>> {
        // A panic while holding the lock cannot leave the relay half-written:
        // storage batches are atomic and the cache only holds committed
        // documents, so continuing with the inner value is safe.
        self.relay.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Current time in milliseconds (the shell owns the clock).
pub fn now_millis() -> aftercase_sync::Millis {
    aftercase_sync::Millis(chrono::Utc::now().timestamp_millis())
}
