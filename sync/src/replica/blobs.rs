//! Evidence bytes on the device: which wait for upload, which the relay
//! already holds (and may be evicted when the cache is over its bound),
//! and downloads in progress, kept chunk by chunk so a cut resumes.
//!
//! Keys (see `storage::keys`): `b` hash → the bytes; `m` hash → what the
//! device knows of a blob it holds ([`BlobMeta`]); `q` hash → the case to
//! offer it with, while it waits for upload; `v` hash → why the relay
//! refused it for good; `p` hash offset → a downloaded chunk.

use super::{Replica, ReplicaError};
use crate::blobs::{hash_of, BlobHash};
use crate::case::evidence;
use crate::ids::{CaseId, Millis};
use crate::storage::{keys, Batch, Storage, StorageError};
use serde::{Deserialize, Serialize};

/// What the device knows of one blob it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    /// Bytes.
    pub size: u64,
    /// Device time it was stored (attached or downloaded): eviction goes
    /// oldest first.
    pub stored_at: i64,
    /// Whether the relay holds it (confirmed), so it may be evicted.
    pub uploaded: bool,
}

/// A blob waiting for upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingUpload {
    /// The blob.
    pub hash: BlobHash,
    /// A case whose evidence names it.
    pub case: CaseId,
}

/// A piece of evidence of a held case whose bytes the device lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingBlob {
    /// The case.
    pub case: CaseId,
    /// The blob.
    pub hash: BlobHash,
    /// Size its record declares.
    pub size: u64,
}

/// Why a finished download was not kept.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The bytes are not the blob named.
    #[error("downloaded evidence does not match its hash; it will be fetched again")]
    Mismatch,
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub(crate) fn key(prefix: u8, hash: &BlobHash) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(prefix);
    k.extend_from_slice(hash);
    k
}

fn chunk_key(hash: &BlobHash, offset: u64) -> Vec<u8> {
    let mut k = key(b'p', hash);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

fn hash_after_prefix(k: &[u8]) -> Option<BlobHash> {
    k.get(1..33)?.try_into().ok()
}

fn meta_value(m: &BlobMeta) -> Vec<u8> {
    // Serializing a plain struct into a Vec cannot fail.
    postcard::to_allocvec(m).unwrap_or_default()
}

impl<S: Storage> Replica<S> {
    /// Stages what attaching blob `hash` of `size` bytes to `case` writes
    /// besides the bytes: its record and its place in the upload queue.
    pub(crate) fn stage_attached(
        &self,
        batch: &mut Batch,
        case: CaseId,
        hash: &BlobHash,
        size: u64,
        now: Millis,
    ) -> Result<(), ReplicaError> {
        let known = self.blob_meta(hash)?;
        if known.is_some_and(|m| m.uploaded) {
            // The relay holds it already (the same photo on another case).
            return Ok(());
        }
        batch.put(
            key(b'm', hash),
            meta_value(&BlobMeta {
                size,
                stored_at: now.0,
                uploaded: false,
            }),
        );
        batch.put(key(b'q', hash), case.as_bytes().to_vec());
        Ok(())
    }

    /// What the device knows of blob `hash`, if it holds it.
    pub fn blob_meta(&self, hash: &BlobHash) -> Result<Option<BlobMeta>, ReplicaError> {
        Ok(self
            .storage
            .get(&key(b'm', hash))?
            .and_then(|b| postcard::from_bytes(&b).ok()))
    }

    /// The bytes of blob `hash`, if held.
    pub fn blob_bytes(&self, hash: &BlobHash) -> Result<Option<Vec<u8>>, ReplicaError> {
        Ok(self.storage.get(&keys::blob(hash))?)
    }

    /// Blobs waiting for upload, in hash order.
    pub fn pending_uploads(&self) -> Result<Vec<PendingUpload>, ReplicaError> {
        Ok(self
            .storage
            .scan_prefix(b"q")?
            .into_iter()
            .filter_map(|(k, v)| {
                Some(PendingUpload {
                    hash: hash_after_prefix(&k)?,
                    case: CaseId::from_bytes(v.as_slice().try_into().ok()?),
                })
            })
            .collect())
    }

    /// The relay holds blob `hash` whole: it leaves the upload queue and
    /// may be evicted. Returns the blobs evicted to keep the cache bound.
    pub fn blob_uploaded(&mut self, hash: &BlobHash) -> Result<usize, ReplicaError> {
        let mut b = Batch::new();
        b.delete(key(b'q', hash));
        if let Some(mut m) = self.blob_meta(hash)? {
            m.uploaded = true;
            b.put(key(b'm', hash), meta_value(&m));
        }
        self.storage.apply(b)?;
        self.evict_blobs()
    }

    /// The relay refused blob `hash` for good (wrong type, too large, not
    /// the bytes named): it leaves the upload queue, is kept on the device
    /// (never evicted) and the reason is shown in the device's status.
    pub fn blob_refused(&mut self, hash: &BlobHash, reason: &str) -> Result<(), ReplicaError> {
        let mut b = Batch::new();
        b.delete(key(b'q', hash));
        b.put(key(b'v', hash), reason.as_bytes().to_vec());
        self.storage.apply(b)?;
        self.storage.flush()?;
        Ok(())
    }

    /// Blobs the relay refused, with its reasons.
    pub fn refused_blobs(&self) -> Result<Vec<(BlobHash, String)>, ReplicaError> {
        Ok(self
            .storage
            .scan_prefix(b"v")?
            .into_iter()
            .filter_map(|(k, v)| {
                Some((
                    hash_after_prefix(&k)?,
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect())
    }

    /// Bytes of evidence held, and how many blobs.
    pub fn blob_cache(&self) -> Result<(u64, usize), ReplicaError> {
        let metas = self.storage.scan_prefix(b"m")?;
        let total = metas
            .iter()
            .filter_map(|(_, v)| postcard::from_bytes::<BlobMeta>(v).ok())
            .map(|m| m.size)
            .sum();
        Ok((total, metas.len()))
    }

    /// Evicts uploaded blobs, oldest first, until the evidence held fits
    /// the policy's `device_cache_bytes`. Returns how many were evicted.
    pub fn evict_blobs(&mut self) -> Result<usize, ReplicaError> {
        let bound = self.policy.device_cache_bytes;
        let mut metas: Vec<(BlobHash, BlobMeta)> = self
            .storage
            .scan_prefix(b"m")?
            .into_iter()
            .filter_map(|(k, v)| Some((hash_after_prefix(&k)?, postcard::from_bytes(&v).ok()?)))
            .collect();
        let mut total: u64 = metas.iter().map(|(_, m)| m.size).sum();
        if total <= bound {
            return Ok(0);
        }
        metas.retain(|(_, m)| m.uploaded);
        metas.sort_by_key(|(h, m)| (m.stored_at, *h));
        let mut b = Batch::new();
        let mut evicted = 0;
        for (h, m) in metas {
            if total <= bound {
                break;
            }
            b.delete(keys::blob(&h));
            b.delete(key(b'm', &h));
            total -= m.size;
            evicted += 1;
        }
        self.storage.apply(b)?;
        Ok(evicted)
    }

    /// Evidence of the cases this device holds whose bytes it lacks
    /// (never held, or evicted), oldest case first.
    pub fn missing_blobs(&self) -> Result<Vec<MissingBlob>, ReplicaError> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for case in self.case_ids()? {
            let Some(listed) = self.with_doc(case, evidence::list)? else {
                continue;
            };
            for e in listed {
                let Some(hash) = crate::case::blob::parse_hash(&e.hash) else {
                    continue;
                };
                if e.removed.is_some() || !seen.insert(hash) {
                    continue;
                }
                if self.storage.get(&key(b'm', &hash))?.is_none() {
                    out.push(MissingBlob {
                        case,
                        hash,
                        size: u64::try_from(e.size).unwrap_or(0),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The case whose evidence names `hash`, if a held case does.
    pub fn case_of_blob(&self, hash: &BlobHash) -> Result<Option<(CaseId, u64)>, ReplicaError> {
        let hex = crate::blobs::hex(hash);
        for case in self.case_ids()? {
            let Some(listed) = self.with_doc(case, evidence::list)? else {
                continue;
            };
            if let Some(e) = listed.into_iter().find(|e| e.hash == hex) {
                return Ok(Some((case, u64::try_from(e.size).unwrap_or(0))));
            }
        }
        Ok(None)
    }

    /// Bytes of blob `hash` downloaded so far (the contiguous chunks from
    /// the start): where a resumed download continues.
    pub fn download_offset(&self, hash: &BlobHash) -> Result<u64, ReplicaError> {
        let mut at = 0u64;
        for (k, v) in self.storage.scan_prefix(&key(b'p', hash))? {
            let off = k
                .get(33..41)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            if off != Some(at) {
                break;
            }
            at += v.len() as u64;
        }
        Ok(at)
    }

    /// Stores a downloaded chunk. Not flushed on its own: a chunk lost in
    /// a crash is fetched again.
    pub fn store_download_chunk(
        &mut self,
        hash: &BlobHash,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), ReplicaError> {
        let mut b = Batch::new();
        b.put(chunk_key(hash, offset), bytes.to_vec());
        self.storage.apply(b)?;
        Ok(())
    }

    /// Joins the downloaded chunks of `hash` (`size` bytes): kept as the
    /// blob, durably, if they hash to its name; dropped otherwise.
    pub fn finish_download(
        &mut self,
        hash: &BlobHash,
        size: u64,
        now: Millis,
    ) -> Result<(), DownloadError> {
        let chunks = self.storage.scan_prefix(&key(b'p', hash))?;
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        let mut b = Batch::new();
        for (k, v) in chunks {
            b.delete(k);
            bytes.extend_from_slice(&v);
        }
        let ok = bytes.len() as u64 == size && hash_of(&bytes) == *hash;
        if ok {
            b.put(keys::blob(hash), bytes);
            b.put(
                key(b'm', hash),
                meta_value(&BlobMeta {
                    size,
                    stored_at: now.0,
                    uploaded: true,
                }),
            );
        }
        self.storage.apply(b)?;
        self.storage.flush()?;
        if !ok {
            return Err(DownloadError::Mismatch);
        }
        let _ = self.evict_blobs().map_err(|e| {
            tracing::warn!(error = %e, "could not evict evidence");
        });
        Ok(())
    }
}
