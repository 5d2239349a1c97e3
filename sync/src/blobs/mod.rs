//! Evidence bytes, stored by their SHA-256 outside the case documents.
//!
//! A blob arrives in chunks over a connection that can drop at any byte,
//! so the store keeps two kinds of entry: a *partial* blob, which grows by
//! [`BlobStore::append`] at exactly its current length (the resume point a
//! peer is told), and a *complete* blob, which only [`BlobStore::seal`]
//! creates, after checking that the partial's bytes hash to the name and
//! have the expected length, and after making them durable. A complete
//! blob is therefore never half a blob, whatever crashed when.
//!
//! [`MemoryBlobs`] backs the simulation; [`DirBlobs`] (files, one per
//! blob) backs the relay.

#[cfg(feature = "sled-storage")]
mod dir;
mod memory;

#[cfg(feature = "sled-storage")]
pub use dir::DirBlobs;
pub use memory::MemoryBlobs;

/// A blob's name: the SHA-256 of its bytes.
pub type BlobHash = [u8; 32];

/// Lowercase hex of a blob hash.
pub fn hex(hash: &BlobHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the store holds of one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Nothing.
    Nothing,
    /// This many bytes of an unfinished upload.
    Partial(u64),
    /// The whole blob, checked against its hash, of this many bytes.
    Complete(u64),
}

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// An append not at the partial's end (a resumed upload that lost
    /// track, or two connections sending one blob): the caller resumes at
    /// `held`.
    #[error("append at byte {offset} but {held} bytes are held")]
    Offset {
        /// Where the append was to start.
        offset: u64,
        /// Bytes held.
        held: u64,
    },
    /// The partial's bytes are not the blob named (corrupt or a lying
    /// sender); the partial was discarded.
    #[error("the uploaded bytes do not match: {0}")]
    Mismatch(String),
    /// No such blob (or not that much of it).
    #[error("blob not held")]
    Missing,
    /// The disk failed.
    #[error("blob store {op} failed: {message}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The system's words.
        message: String,
    },
}

/// Content-addressed blob storage with resumable writes.
///
/// Implementations are safe to share between connections: appends and
/// seals of one blob are serialized inside the store.
pub trait BlobStore: Send + Sync {
    /// What is held of `hash`.
    fn held(&self, hash: &BlobHash) -> Result<Held, BlobError>;

    /// Appends `bytes` to the partial blob `hash` at `offset`, which must
    /// be its current length (0 starts it). Returns the new length. Not
    /// durable by itself: after a crash the partial may be shorter, and
    /// the peer is told the new resume point.
    fn append(&self, hash: &BlobHash, offset: u64, bytes: &[u8]) -> Result<u64, BlobError>;

    /// Turns the partial `hash` into a complete blob if its bytes are
    /// `size` long and hash to `hash`, durably, before returning `Ok`.
    /// A partial that does not match is discarded ([`BlobError::Mismatch`]).
    fn seal(&self, hash: &BlobHash, size: u64) -> Result<(), BlobError>;

    /// Drops the partial `hash`, if any.
    fn discard_partial(&self, hash: &BlobHash) -> Result<(), BlobError>;

    /// Up to `len` bytes of the complete blob `hash` from `offset`.
    fn read(&self, hash: &BlobHash, offset: u64, len: usize) -> Result<Vec<u8>, BlobError>;
}

/// The SHA-256 of `bytes`.
pub fn hash_of(bytes: &[u8]) -> BlobHash {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).into()
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every [`BlobStore`] must have, run against each.
    use super::*;

    pub fn check(store: &dyn BlobStore) {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let h = hash_of(&data);
        assert_eq!(store.held(&h).unwrap(), Held::Nothing);
        assert_eq!(store.append(&h, 0, &data[..40_000]).unwrap(), 40_000);
        assert_eq!(store.held(&h).unwrap(), Held::Partial(40_000));
        // A resume at the wrong point is refused and names the right one.
        match store.append(&h, 10, &data[10..20]) {
            Err(BlobError::Offset { held: 40_000, .. }) => {}
            other => panic!("{other:?}"),
        }
        // Sealing early fails and discards, so a half blob never counts.
        assert!(matches!(
            store.seal(&h, data.len() as u64),
            Err(BlobError::Mismatch(_))
        ));
        assert_eq!(store.held(&h).unwrap(), Held::Nothing);
        store.append(&h, 0, &data[..70_000]).unwrap();
        store.append(&h, 70_000, &data[70_000..]).unwrap();
        store.seal(&h, data.len() as u64).unwrap();
        assert_eq!(store.held(&h).unwrap(), Held::Complete(100_000));
        assert_eq!(store.read(&h, 99_990, 100).unwrap(), &data[99_990..]);
        assert_eq!(store.read(&h, 5, 3).unwrap(), &data[5..8]);
        // Appending to a complete blob is not possible: it is held whole.
        assert!(store.append(&h, 0, b"x").is_err());

        // Bytes that are not the named blob are refused when sealed.
        let liar = hash_of(b"something else");
        store.append(&liar, 0, b"not that").unwrap();
        assert!(matches!(store.seal(&liar, 8), Err(BlobError::Mismatch(_))));
        assert_eq!(store.held(&liar).unwrap(), Held::Nothing);
        assert!(matches!(store.read(&liar, 0, 1), Err(BlobError::Missing)));
    }
}
