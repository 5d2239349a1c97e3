//! The storage boundary: an ordered key-value store with atomic batches and
//! an explicit durability point.
//!
//! Everything the core persists goes through [`Storage`]. The relay and the
//! SDK use [`SledStorage`]; tests and the simulation use [`MemoryStorage`],
//! which can also simulate a crash that loses whatever was not flushed.
//!
//! Typical use: build a [`Batch`], [`Storage::apply`] it (atomic: all or
//! nothing, also after a crash), then [`Storage::flush`] before telling
//! anyone the data is saved.

mod batch;
pub mod docs;
mod group;
pub mod keys;
mod memory;
pub mod perms;
#[cfg(feature = "sled-storage")]
mod sled_store;

pub use batch::{Batch, BatchOp};
pub use group::GroupCommit;
pub use memory::MemoryStorage;
#[cfg(feature = "sled-storage")]
pub use sled_store::SledStorage;

/// A failure of the underlying store. The message names the operation.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The backend reported an error.
    #[error("storage {op} failed: {message}")]
    Backend {
        /// What we were doing ("apply", "flush", "open", ...).
        op: &'static str,
        /// The backend's own message.
        message: String,
    },
    /// Stored bytes could not be decoded: the store is damaged or was written
    /// by an incompatible version.
    #[error("stored value under {key} is corrupt: {message}")]
    Corrupt {
        /// A printable form of the key.
        key: String,
        /// What was wrong.
        message: String,
    },
}

/// Key-value pairs returned by a scan, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// An ordered key-value store.
///
/// Implementations must make [`Storage::apply`] atomic (a batch is wholly
/// visible or wholly absent, also after a crash) and must make everything
/// applied before a successful [`Storage::flush`] survive a crash.
pub trait Storage: Send + Sync {
    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Returns up to `limit` entries with `start <= key < end`, in key order.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Entries, StorageError>;

    /// Applies every operation of `batch` atomically. Not yet durable.
    fn apply(&self, batch: Batch) -> Result<(), StorageError>;

    /// Makes everything applied so far durable. Call before reporting "saved".
    fn flush(&self) -> Result<(), StorageError>;

    /// All entries whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StorageError> {
        let end = keys::prefix_end(prefix);
        self.scan(prefix, &end, usize::MAX)
    }
}

impl<T: Storage + ?Sized> Storage for std::sync::Arc<T> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        (**self).get(key)
    }
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Entries, StorageError> {
        (**self).scan(start, end, limit)
    }
    fn apply(&self, batch: Batch) -> Result<(), StorageError> {
        (**self).apply(batch)
    }
    fn flush(&self) -> Result<(), StorageError> {
        (**self).flush()
    }
}
