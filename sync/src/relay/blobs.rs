//! Evidence blobs at the relay: who may upload or read one, and the
//! chunked, resumable transfer over a sync connection.
//!
//! Access comes from the relay's own records, never from the blob or the
//! device: a blob may be uploaded by whoever may change a case whose
//! evidence log names it, and read by whoever may read such a case, so a
//! hash alone grants nothing. The decision ([`Relay::blob_grant`]) needs
//! the relay's documents; the transfer ([`BlobSession::handle`]) needs only
//! the blob store, so the shell can run it without holding the relay.

use super::Relay;
use crate::access::{self, Principal};
use crate::blobs::{hex, BlobError, BlobHash, BlobStore, Held};
use crate::case::{blob, evidence};
use crate::ids::CaseId;
use crate::protocol::{Frame, SessionError, MAX_BLOB_CHUNK};
use crate::storage::{Storage, StorageError};
use std::collections::HashMap;

/// Why a blob offer, chunk or request was refused, as the stable code in
/// [`Frame::BlobRefused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobCode {
    /// No case the relay holds names this blob (yet): the device offers
    /// it again after its next sync.
    NotReferenced,
    /// The case is not the connection's to change or read.
    Forbidden,
    /// Larger than the evidence record says or than the policy allows.
    TooLarge,
    /// The bytes are not the media type the record declares, or not one
    /// evidence may have.
    WrongType,
    /// The bytes do not hash to the blob's name.
    Mismatch,
    /// The relay does not hold the blob yet (the device that took it has
    /// not uploaded it).
    NotAtRelay,
    /// A chunk for a blob not offered in this connection, or a feature the
    /// connection did not agree to.
    Protocol,
    /// The relay's disk failed; retry later.
    Storage,
}

impl BlobCode {
    /// The code's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            BlobCode::NotReferenced => "not_referenced",
            BlobCode::Forbidden => "forbidden",
            BlobCode::TooLarge => "too_large",
            BlobCode::WrongType => "wrong_type",
            BlobCode::Mismatch => "mismatch",
            BlobCode::NotAtRelay => "not_at_relay",
            BlobCode::Protocol => "protocol",
            BlobCode::Storage => "storage",
        }
    }

    /// Whether the device should try again later rather than give up on
    /// the blob: the refusal is about timing, not about the bytes.
    pub fn is_transient(code: &str) -> bool {
        matches!(
            code,
            "not_referenced" | "not_at_relay" | "storage" | "protocol"
        )
    }
}

/// A refusal with its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRefusal {
    /// The code.
    pub code: BlobCode,
    /// Why, for the user.
    pub reason: String,
}

impl BlobRefusal {
    fn new(code: BlobCode, reason: impl Into<String>) -> BlobRefusal {
        BlobRefusal {
            code,
            reason: reason.into(),
        }
    }

    fn frame(&self, hash: BlobHash) -> Frame {
        Frame::BlobRefused {
            hash,
            code: self.code.as_str().to_string(),
            reason: self.reason.clone(),
        }
    }
}

/// What the relay's records say of a blob a connection may transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobGrant {
    /// The case whose evidence names it.
    pub case: CaseId,
    /// Size the evidence record declares.
    pub size: u64,
    /// Media type the evidence record declares.
    pub media_type: String,
}

/// Whether a grant is asked for uploading or for reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Upload: the principal must be allowed to change the case.
    Upload,
    /// Read: the principal must be allowed to read the case.
    Read,
}

impl<S: Storage> Relay<S> {
    /// Whether `p` may transfer blob `hash` as evidence of `case`, and
    /// what the case's record says of it. Decided from relay metadata
    /// (owner, assignee) and the relay's copy of the case.
    pub fn blob_grant(
        &mut self,
        p: &Principal,
        case: CaseId,
        hash: &BlobHash,
        access: Access,
    ) -> Result<Result<BlobGrant, BlobRefusal>, StorageError> {
        let hex = hex(hash);
        let Some(meta) = self.meta(case)? else {
            return Ok(Err(BlobRefusal::new(
                BlobCode::NotReferenced,
                format!("case {case} is not at the relay yet"),
            )));
        };
        let allowed = match access {
            Access::Upload => access::can_write(p, &meta),
            Access::Read => access::can_read(p, &meta),
        };
        if !allowed {
            return Ok(Err(BlobRefusal::new(
                BlobCode::Forbidden,
                access::not_visible(p),
            )));
        }
        let max = self.policy.max_blob_bytes;
        let Some(doc) = self.doc(case)? else {
            return Ok(Err(BlobRefusal::new(
                BlobCode::NotReferenced,
                format!("case {case} is not at the relay yet"),
            )));
        };
        let Some(e) = evidence::list(&*doc).into_iter().find(|e| e.hash == hex) else {
            return Ok(Err(BlobRefusal::new(
                BlobCode::NotReferenced,
                format!("case {case} has no evidence {hex}"),
            )));
        };
        let size = u64::try_from(e.size).unwrap_or(0);
        if access == Access::Upload && size > max {
            return Ok(Err(BlobRefusal::new(
                BlobCode::TooLarge,
                format!("evidence of {size} bytes exceeds the limit of {max} bytes (policy max_blob_bytes)"),
            )));
        }
        if !blob::ALLOWED.contains(&e.media_type.as_str()) {
            return Ok(Err(BlobRefusal::new(
                BlobCode::WrongType,
                format!("{} is not a media type evidence may have", e.media_type),
            )));
        }
        Ok(Ok(BlobGrant {
            case,
            size,
            media_type: e.media_type,
        }))
    }
}

/// Bytes the first chunk of an upload must hold (or the whole blob, if
/// smaller) so its media type can be read from them before anything is
/// stored.
pub const SNIFF_BYTES: usize = 512;

/// One connection's blob transfers.
#[derive(Debug, Default)]
pub struct BlobSession {
    /// Blobs this connection may upload, by hash.
    uploads: HashMap<BlobHash, BlobGrant>,
    /// Blobs this connection may read, by hash.
    reads: HashMap<BlobHash, BlobGrant>,
    /// Whether the connection agreed to blobs in its hello.
    enabled: bool,
}

impl BlobSession {
    /// A session; `enabled` once hello and welcome agreed to blobs.
    pub fn new(enabled: bool) -> BlobSession {
        BlobSession {
            enabled,
            ..BlobSession::default()
        }
    }

    /// Whether `frame` is handled by [`BlobSession::handle`].
    pub fn is_blob_frame(frame: &Frame) -> bool {
        matches!(
            frame,
            Frame::BlobOffer { .. } | Frame::BlobChunk { .. } | Frame::BlobGet { .. }
        )
    }

    /// The grant `frame` needs and this session does not hold yet, if any:
    /// the shell asks [`Relay::blob_grant`] for it and passes the answer to
    /// [`BlobSession::handle`].
    pub fn needs_grant(&self, frame: &Frame) -> Option<(CaseId, BlobHash, Access)> {
        if !self.enabled {
            return None;
        }
        match frame {
            Frame::BlobOffer { doc, hash } => Some((*doc, *hash, Access::Upload)),
            Frame::BlobGet { doc, hash, .. } => match self.reads.get(hash) {
                Some(g) if g.case == *doc => None,
                _ => Some((*doc, *hash, Access::Read)),
            },
            _ => None,
        }
    }

    /// Handles a blob frame from the device with the grant
    /// [`BlobSession::needs_grant`] asked for. Refusals are answered with
    /// [`Frame::BlobRefused`] and the connection goes on; only a frame
    /// breaking the size rules ends it.
    pub fn handle(
        &mut self,
        store: &dyn BlobStore,
        frame: Frame,
        grant: Option<Result<BlobGrant, BlobRefusal>>,
    ) -> Result<Vec<Frame>, SessionError> {
        let hash = match &frame {
            Frame::BlobOffer { hash, .. }
            | Frame::BlobChunk { hash, .. }
            | Frame::BlobGet { hash, .. } => *hash,
            other => {
                return Err(SessionError::Protocol(format!(
                    "{} is not a blob frame",
                    other.name()
                )))
            }
        };
        if !self.enabled {
            return Ok(vec![BlobRefusal::new(
                BlobCode::Protocol,
                "this connection did not agree to transfer evidence (feature \"blobs\")",
            )
            .frame(hash)]);
        }
        let out = match frame {
            Frame::BlobOffer { .. } => self.offer(store, hash, grant),
            Frame::BlobChunk { offset, bytes, .. } => {
                if bytes.len() > MAX_BLOB_CHUNK {
                    return Err(SessionError::Protocol(format!(
                        "a blob chunk may hold at most {MAX_BLOB_CHUNK} bytes, got {}",
                        bytes.len()
                    )));
                }
                self.chunk(store, hash, offset, &bytes)
            }
            Frame::BlobGet { offset, .. } => self.get(store, hash, offset, grant),
            _ => unreachable!("matched above"),
        };
        Ok(vec![match out {
            Ok(f) => f,
            Err(r) => r.frame(hash),
        }])
    }

    fn offer(
        &mut self,
        store: &dyn BlobStore,
        hash: BlobHash,
        grant: Option<Result<BlobGrant, BlobRefusal>>,
    ) -> Result<Frame, BlobRefusal> {
        let g = grant
            .unwrap_or_else(|| Err(BlobRefusal::new(BlobCode::Storage, "no access decision")))?;
        let at = match store.held(&hash).map_err(storage)? {
            Held::Complete(_) => return Ok(Frame::BlobStored { hash }),
            // Every byte arrived but the relay stopped before sealing.
            Held::Partial(n) if n == g.size => match store.seal(&hash, n) {
                Ok(()) => return Ok(Frame::BlobStored { hash }),
                Err(BlobError::Mismatch(_)) => 0,
                Err(e) => return Err(storage(e)),
            },
            Held::Partial(n) if n < g.size => n,
            Held::Partial(_) => {
                store.discard_partial(&hash).map_err(storage)?;
                0
            }
            Held::Nothing => 0,
        };
        self.uploads.insert(hash, g);
        Ok(Frame::BlobAt { hash, offset: at })
    }

    fn chunk(
        &mut self,
        store: &dyn BlobStore,
        hash: BlobHash,
        offset: u64,
        bytes: &[u8],
    ) -> Result<Frame, BlobRefusal> {
        let Some(g) = self.uploads.get(&hash) else {
            return Err(BlobRefusal::new(
                BlobCode::Protocol,
                "a chunk of a blob not offered on this connection",
            ));
        };
        let end = offset.saturating_add(bytes.len() as u64);
        if end > g.size {
            let size = g.size;
            self.uploads.remove(&hash);
            store.discard_partial(&hash).map_err(storage)?;
            return Err(BlobRefusal::new(
                BlobCode::TooLarge,
                format!("the upload runs past the {size} bytes its evidence record declares"),
            ));
        }
        if offset == 0 {
            let need = usize::try_from(g.size)
                .unwrap_or(usize::MAX)
                .min(SNIFF_BYTES);
            if bytes.len() < need {
                return Err(BlobRefusal::new(
                    BlobCode::Protocol,
                    format!("the first chunk must hold at least {need} bytes"),
                ));
            }
            match blob::sniff(bytes) {
                Ok(m) if m == g.media_type => {}
                Ok(m) => {
                    let declared = g.media_type.clone();
                    self.uploads.remove(&hash);
                    return Err(BlobRefusal::new(
                        BlobCode::WrongType,
                        format!("the bytes are {m}, but the evidence record says {declared}"),
                    ));
                }
                Err(why) => {
                    let declared = g.media_type.clone();
                    self.uploads.remove(&hash);
                    return Err(BlobRefusal::new(
                        BlobCode::WrongType,
                        format!("{why}, but the evidence record says {declared}"),
                    ));
                }
            }
        }
        let size = g.size;
        let held = match store.append(&hash, offset, bytes) {
            Ok(n) => n,
            Err(BlobError::Offset { held, .. }) if held >= size => {
                // Complete already (another connection finished it).
                return Ok(Frame::BlobStored { hash });
            }
            Err(BlobError::Offset { held, .. }) => return Ok(Frame::BlobAt { hash, offset: held }),
            Err(e) => return Err(storage(e)),
        };
        if held < size {
            return Ok(Frame::BlobAt { hash, offset: held });
        }
        self.uploads.remove(&hash);
        match store.seal(&hash, size) {
            Ok(()) => Ok(Frame::BlobStored { hash }),
            Err(BlobError::Mismatch(why)) => Err(BlobRefusal::new(BlobCode::Mismatch, why)),
            Err(e) => Err(storage(e)),
        }
    }

    fn get(
        &mut self,
        store: &dyn BlobStore,
        hash: BlobHash,
        offset: u64,
        grant: Option<Result<BlobGrant, BlobRefusal>>,
    ) -> Result<Frame, BlobRefusal> {
        match grant {
            Some(g) => {
                self.reads.insert(hash, g?);
            }
            // Without a decision, only a grant this session already holds.
            None if self.reads.contains_key(&hash) => {}
            None => {
                return Err(BlobRefusal::new(
                    BlobCode::Forbidden,
                    "no access decision for this evidence",
                ))
            }
        }
        match store.held(&hash).map_err(storage)? {
            Held::Complete(n) if offset <= n => {
                let len = usize::try_from(n - offset).unwrap_or(usize::MAX).min(MAX_BLOB_CHUNK);
                let bytes = store.read(&hash, offset, len).map_err(storage)?;
                Ok(Frame::BlobChunk {
                    hash,
                    offset,
                    bytes,
                })
            }
            Held::Complete(n) => Err(BlobRefusal::new(
                BlobCode::Protocol,
                format!("byte {offset} is past the end of a {n} byte blob"),
            )),
            _ => Err(BlobRefusal::new(
                BlobCode::NotAtRelay,
                "the relay does not hold this evidence yet: the device that recorded it has not uploaded it",
            )),
        }
    }
}

fn storage(e: BlobError) -> BlobRefusal {
    tracing::error!(error = %e, "blob store failed");
    BlobRefusal::new(
        BlobCode::Storage,
        "the relay could not store or read the evidence; retry later",
    )
}

impl<S: Storage> Relay<S> {
    /// Handles a blob frame of session `s` in one call (the simulation's
    /// way; the relay's shell asks [`Relay::blob_grant`] under its lock and
    /// runs [`BlobSession::handle`] outside it).
    pub fn handle_blob(
        &mut self,
        s: &mut super::RelaySession,
        store: &dyn BlobStore,
        frame: Frame,
    ) -> Result<Vec<Frame>, SessionError> {
        if !s.hello_done() {
            return Err(SessionError::Protocol(
                "the first frame must be hello".into(),
            ));
        }
        let grant = match s.blobs_mut().needs_grant(&frame) {
            Some((case, hash, access)) => {
                let p = s.principal().clone();
                Some(
                    self.blob_grant(&p, case, &hash, access)
                        .map_err(SessionError::Storage)?,
                )
            }
            None => None,
        };
        s.blobs_mut().handle(store, frame, grant)
    }
}
