//! The device side of evidence transfer: uploads the blobs waiting in the
//! replica's queue and downloads the ones asked for, one chunk in flight
//! each way, and only once the connection's cases are in sync, so a case
//! edit never waits behind more than one chunk.

use super::SessionError;
use crate::blobs::BlobHash;
use crate::ids::Millis;
use crate::protocol::{Frame, MAX_BLOB_CHUNK};
use crate::relay::blobs::BlobCode;
use crate::replica::blobs::{DownloadError, MissingBlob, PendingUpload};
use crate::replica::Replica;
use crate::storage::Storage;
use std::collections::{BTreeMap, HashSet, VecDeque};

/// Evidence transfer so far on this connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobProgress {
    /// Blobs the relay confirmed holding.
    pub uploaded: usize,
    /// Blobs waiting for upload when the transfer started, plus any added.
    pub upload_total: usize,
    /// Blob bytes sent in chunks (resent bytes count again).
    pub bytes_sent: u64,
    /// Bytes of the blobs to upload.
    pub upload_bytes: u64,
    /// Blobs downloaded whole and checked.
    pub downloaded: usize,
    /// Blobs asked for.
    pub download_total: usize,
    /// Blob bytes received in chunks.
    pub bytes_received: u64,
    /// Blobs the relay refused, or whose download failed, in this session.
    pub failed: usize,
}

struct Upload {
    hash: BlobHash,
    bytes: Vec<u8>,
}

struct Download {
    want: MissingBlob,
    offset: u64,
}

/// One connection's evidence transfers.
#[derive(Default)]
pub(super) struct BlobSync {
    /// Whether the relay's welcome agreed to blobs.
    pub(super) enabled: bool,
    queue: VecDeque<PendingUpload>,
    /// Whether `queue` reflects the replica (cleared by local edits).
    loaded: bool,
    /// Blobs the relay asked to offer again later (this session skips
    /// them).
    later: HashSet<BlobHash>,
    upload: Option<Upload>,
    downloads: VecDeque<MissingBlob>,
    download: Option<Download>,
    progress: BlobProgress,
    /// Why blobs failed in this session, by hash.
    failures: BTreeMap<BlobHash, String>,
}

impl BlobSync {
    /// Local evidence may have been attached: look at the queue again.
    pub(super) fn reload(&mut self) {
        self.loaded = false;
    }

    /// Asks for blobs the device lacks (downloaded once cases are in sync).
    pub(super) fn want(&mut self, blobs: impl IntoIterator<Item = MissingBlob>) {
        for b in blobs {
            self.progress.download_total += 1;
            self.downloads.push_back(b);
        }
    }

    /// Nothing in flight and nothing waiting (a connection without blobs
    /// is always idle).
    pub(super) fn idle(&self) -> bool {
        !self.enabled
            || (self.loaded
                && self.queue.is_empty()
                && self.upload.is_none()
                && self.download.is_none()
                && self.downloads.is_empty())
    }

    pub(super) fn progress(&self) -> BlobProgress {
        self.progress
    }

    pub(super) fn failures(&self) -> &BTreeMap<BlobHash, String> {
        &self.failures
    }

    /// Starts the next upload and download if none is in flight.
    pub(super) fn pump<S: Storage>(
        &mut self,
        r: &mut Replica<S>,
        now: Millis,
        out: &mut Vec<Frame>,
    ) -> Result<(), SessionError> {
        if !self.enabled {
            return Ok(());
        }
        if !self.loaded {
            let queued: HashSet<BlobHash> = self.queue.iter().map(|p| p.hash).collect();
            let current = self.upload.as_ref().map(|u| u.hash);
            for p in r.pending_uploads()? {
                if !queued.contains(&p.hash)
                    && !self.later.contains(&p.hash)
                    && current != Some(p.hash)
                {
                    self.progress.upload_total += 1;
                    if let Some(m) = r.blob_meta(&p.hash)? {
                        self.progress.upload_bytes += m.size;
                    }
                    self.queue.push_back(p);
                }
            }
            self.loaded = true;
        }
        while self.upload.is_none() {
            let Some(next) = self.queue.pop_front() else {
                break;
            };
            // The bytes of a queued blob are never evicted; a queue entry
            // without them (storage damaged) cannot be uploaded.
            let Some(bytes) = r.blob_bytes(&next.hash)? else {
                self.failures.insert(
                    next.hash,
                    "the evidence's bytes are missing on this device".into(),
                );
                self.progress.failed += 1;
                continue;
            };
            out.push(Frame::BlobOffer {
                doc: next.case,
                hash: next.hash,
            });
            self.upload = Some(Upload {
                hash: next.hash,
                bytes,
            });
        }
        while self.download.is_none() {
            let Some(want) = self.downloads.pop_front() else {
                break;
            };
            if r.blob_meta(&want.hash)?.is_some() {
                self.progress.downloaded += 1;
                continue;
            }
            let offset = r.download_offset(&want.hash)?;
            if offset >= want.size {
                self.finish(r, want, now)?;
                continue;
            }
            out.push(Frame::BlobGet {
                doc: want.case,
                hash: want.hash,
                offset,
            });
            self.download = Some(Download { want, offset });
        }
        Ok(())
    }

    fn finish<S: Storage>(
        &mut self,
        r: &mut Replica<S>,
        want: MissingBlob,
        now: Millis,
    ) -> Result<(), SessionError> {
        match r.finish_download(&want.hash, want.size, now) {
            Ok(()) => self.progress.downloaded += 1,
            Err(DownloadError::Mismatch) => {
                self.progress.failed += 1;
                self.failures
                    .insert(want.hash, DownloadError::Mismatch.to_string());
            }
            Err(DownloadError::Storage(e)) => return Err(SessionError::Replica(e.into())),
        }
        Ok(())
    }

    /// Handles a blob frame from the relay.
    pub(super) fn on_frame<S: Storage>(
        &mut self,
        r: &mut Replica<S>,
        frame: Frame,
        now: Millis,
        out: &mut Vec<Frame>,
    ) -> Result<(), SessionError> {
        match frame {
            Frame::BlobAt { hash, offset } => {
                let Some(u) = self.upload.as_ref().filter(|u| u.hash == hash) else {
                    return Ok(());
                };
                let start = usize::try_from(offset)
                    .ok()
                    .filter(|o| *o < u.bytes.len())
                    .ok_or_else(|| {
                        SessionError::Protocol(format!(
                            "the relay asked for byte {offset} of a {} byte blob",
                            u.bytes.len()
                        ))
                    })?;
                let end = (start + MAX_BLOB_CHUNK).min(u.bytes.len());
                self.progress.bytes_sent += (end - start) as u64;
                out.push(Frame::BlobChunk {
                    hash,
                    offset,
                    bytes: u.bytes[start..end].to_vec(),
                });
            }
            Frame::BlobStored { hash } if self.upload.as_ref().is_some_and(|u| u.hash == hash) => {
                self.upload = None;
                r.blob_uploaded(&hash)?;
                self.progress.uploaded += 1;
            }
            Frame::BlobRefused { hash, code, reason } => {
                if self.upload.as_ref().is_some_and(|u| u.hash == hash) {
                    self.upload = None;
                    if BlobCode::is_transient(&code) {
                        self.later.insert(hash);
                    } else {
                        tracing::warn!(code = %crate::protocol::clip(&code, 20), "relay refused evidence");
                        r.blob_refused(&hash, &reason)?;
                        self.progress.failed += 1;
                        self.failures.insert(hash, reason.clone());
                    }
                }
                if self.download.as_ref().is_some_and(|d| d.want.hash == hash) {
                    self.download = None;
                    self.progress.failed += 1;
                    self.failures.insert(hash, reason);
                }
            }
            Frame::BlobChunk {
                hash,
                offset,
                bytes,
            } => {
                let Some(d) = self.download.as_mut().filter(|d| d.want.hash == hash) else {
                    return Ok(());
                };
                if offset != d.offset || bytes.is_empty() {
                    return Err(SessionError::Protocol(format!(
                        "the relay sent bytes from {offset} of a blob wanted from {}",
                        d.offset
                    )));
                }
                if d.offset + bytes.len() as u64 > d.want.size {
                    let want = d.want.clone();
                    self.download = None;
                    self.progress.failed += 1;
                    self.failures.insert(
                        want.hash,
                        "the relay sent more bytes than the evidence record declares".into(),
                    );
                    return Ok(());
                }
                r.store_download_chunk(&hash, offset, &bytes)?;
                d.offset += bytes.len() as u64;
                self.progress.bytes_received += bytes.len() as u64;
                if d.offset >= d.want.size {
                    let want = d.want.clone();
                    self.download = None;
                    self.finish(r, want, now)?;
                } else {
                    out.push(Frame::BlobGet {
                        doc: d.want.case,
                        hash,
                        offset: d.offset,
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }
}
