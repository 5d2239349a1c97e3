//! What `/healthz` says about storage: errors seen since start, cases
//! quarantined as damaged, whether the last flush failed. Counted without
//! the relay's lock so the health check never waits for it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Storage health since the relay started.
#[derive(Default)]
pub struct Health {
    storage_errors: AtomicU64,
    quarantined: AtomicUsize,
    flush_failing: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Highest sequence flushed (the watermark follows it).
    durable: AtomicU64,
    /// Set at start when the storage opened below the watermark.
    lost: Mutex<Option<String>>,
}

impl Health {
    /// Counts a storage error (logged where it happened).
    pub fn storage_error(&self, e: &dyn std::fmt::Display) {
        self.storage_errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            // The message names keys and cases, never customer data.
            *last = Some(e.to_string().chars().take(300).collect());
        }
    }

    /// Records the highest sequence known durable.
    pub fn note_durable(&self, seq: u64) {
        self.durable.fetch_max(seq, Ordering::Relaxed);
    }

    /// The highest sequence known durable.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Relaxed)
    }

    /// Records that the storage opened below the watermark.
    pub fn data_lost(&self, message: String) {
        self.storage_error(&message);
        if let Ok(mut l) = self.lost.lock() {
            *l = Some(message);
        }
    }

    /// What was lost at start, if anything.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|l| l.clone())
    }

    /// Records whether the last flush succeeded.
    pub fn flushed(&self, ok: bool) {
        self.flush_failing.store(!ok, Ordering::Relaxed);
    }

    /// Records how many cases the relay holds quarantined.
    pub fn note_quarantined(&self, n: usize) {
        self.quarantined.store(n, Ordering::Relaxed);
    }

    /// Storage errors seen since start.
    pub fn storage_errors(&self) -> u64 {
        self.storage_errors.load(Ordering::Relaxed)
    }

    /// Cases quarantined.
    pub fn quarantined(&self) -> usize {
        self.quarantined.load(Ordering::Relaxed)
    }

    /// Whether the last flush failed.
    pub fn flush_failing(&self) -> bool {
        self.flush_failing.load(Ordering::Relaxed)
    }

    /// The last storage error's words.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|l| l.clone())
    }
}
