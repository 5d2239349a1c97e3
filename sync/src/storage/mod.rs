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

pub use batch::{Batch, BatchOp, Expect};
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
    /// An expectation of a batch ([`Batch::expect`]) did not hold: another
    /// writer changed the key since it was read. Nothing was applied.
    #[error(
        "stored value under {key} changed since it was read (another writer); nothing was applied"
    )]
    Conflict {
        /// A printable form of the key.
        key: String,
    },
}

impl StorageError {
    /// The conflict on `key`.
    pub fn conflict(key: &[u8]) -> StorageError {
        StorageError::Conflict {
            key: keys::printable(key),
        }
    }
}

/// The value of a counter kept by [`Storage::apply_sequenced`]: 8 bytes
/// big-endian, 0 when absent.
pub fn counter_value(key: &[u8], stored: Option<&[u8]>) -> Result<u64, StorageError> {
    match stored {
        None => Ok(0),
        Some(bytes) => <[u8; 8]>::try_from(bytes)
            .map(u64::from_be_bytes)
            .map_err(|_| StorageError::Corrupt {
                key: keys::printable(key),
                message: format!("a counter is 8 bytes, found {}", bytes.len()),
            }),
    }
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
    ///
    /// If the batch has expectations ([`Batch::expect`]), they are checked
    /// atomically with the writes: if one does not hold, nothing is written
    /// and the answer is [`StorageError::Conflict`]. Two conditional batches
    /// on one key never both succeed against the same value, also from
    /// two processes on one database.
    fn apply(&self, batch: Batch) -> Result<(), StorageError>;

    /// Takes the next number of the counter under `counter` (its value, see
    /// [`counter_value`], plus one), and applies `build(n)` with the counter
    /// set to `n`, atomically (expectations included). Returns `n`.
    ///
    /// Sequenced applies on one counter are serialized across threads and,
    /// on a shared database, across processes, and each becomes visible
    /// before the next takes its number: a reader that sees the writes of
    /// `n` sees those of every lower number. So a feed keyed by the counter
    /// never shows a gap that a late commit fills afterwards (which a
    /// database sequence alone allows).
    ///
    /// `build` runs while the counter is held: it must not use the store.
    /// An error from it applies nothing.
    fn apply_sequenced(
        &self,
        counter: &[u8],
        build: &mut dyn FnMut(u64) -> Result<Batch, StorageError>,
    ) -> Result<u64, StorageError>;

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
    fn apply_sequenced(
        &self,
        counter: &[u8],
        build: &mut dyn FnMut(u64) -> Result<Batch, StorageError>,
    ) -> Result<u64, StorageError> {
        (**self).apply_sequenced(counter, build)
    }
    fn flush(&self) -> Result<(), StorageError> {
        (**self).flush()
    }
}
