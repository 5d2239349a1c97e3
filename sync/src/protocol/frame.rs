//! Versioned binary framing. Every frame is one WebSocket binary message:
//! a protocol version byte followed by a postcard-encoded [`Frame`].
//!
//! Version history: 1 the first; 2 when `Refused` gained its code; 3 when
//! `Hello` gained the device's report (app version and unsynced work) and
//! `Report` was added; 4 when `Hello` gained the device's features and
//! `Welcome` and the evidence (blob) frames were added. `Error` has kept its
//! place and shape since 1, so [`error_for_version`] can still tell an
//! older device why it is refused.
//!
//! Version 4 is version 3 plus frames at the end of the enum and one field
//! at the end of `Hello`, so one build speaks both: [`Frame::decode`]
//! accepts either, reading a version 3 `Hello` in its old shape, and
//! [`Frame::encode_for`] writes a frame in the version the peer speaks.

use crate::ids::{CaseId, Millis};
use serde::{Deserialize, Serialize};

/// The newest protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 4;

/// The oldest protocol version this build still speaks (devices and relays
/// not updated since it keep syncing cases).
pub const OLDEST_VERSION: u8 = 3;

/// The feature a device names in its hello, and the relay in its welcome,
/// when they transfer evidence blobs.
pub const FEATURE_BLOBS: &str = "blobs";

/// The feature a device names in its hello, and the relay in its welcome,
/// when the relay may send a live device new changes as they were stored
/// ([`Frame::Changes`]) instead of a sync message generated for it.
pub const FEATURE_PUSH: &str = "push";

/// The feature a device names in its hello, and the relay in its welcome,
/// when the device may upload a case the relay has never confirmed as the
/// changes it stored ([`Frame::Changes`]), answered by [`Frame::Stored`],
/// instead of a sync round that loads the case on both sides.
pub const FEATURE_UPLOAD: &str = "upload";

/// The feature a device names in its hello, and the relay in its welcome,
/// when the device seals customer personal data per case and they
/// exchange case keys ([`Frame::Keys`], [`Frame::WantKeys`],
/// [`Frame::KeysGone`]).
pub const FEATURE_KEYS: &str = "keys";

/// Most bytes of a blob in one [`Frame::BlobChunk`]: a case frame queued
/// behind a blob waits for at most one chunk.
pub const MAX_BLOB_CHUNK: usize = 256 * 1024;

/// Longest app version the relay keeps, in characters; longer ones are
/// clipped.
pub const MAX_APP_VERSION_CHARS: usize = 64;

/// Largest frame accepted from a peer, in bytes. Larger frames close the
/// connection before any decoding work is done.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// A bearer token carried inside a frame ([`Frame::Relayed`]). Its
/// `Debug` hides it, so a frame printed into a log never shows one.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BearerToken(pub String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BearerToken(<{} bytes>)", self.0.len())
    }
}

/// A case and the heads (latest change hashes) the sender holds of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocHeads {
    /// The case.
    pub doc: CaseId,
    /// Automerge change hashes.
    pub heads: Vec<[u8; 32]>,
}

/// A whole case as bytes `Automerge::load` accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocBytes {
    /// The case.
    pub doc: CaseId,
    /// The relay's stored snapshot followed by its stored change chunks.
    pub bytes: Vec<u8>,
}

/// What a sequence of [`Frame::Piece`]s carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PieceKind {
    /// A whole case, as in [`Frame::Snapshots`].
    Snapshot,
    /// One sync message, as in [`Frame::Sync`].
    Sync,
}

/// The device's own account of the work it has not handed to the relay
/// yet, sent in [`Frame::Hello`] and [`Frame::Report`] so head office sees
/// a tablet that stopped syncing before a customer complains.
///
/// It carries no device id: the relay files it under the connection's
/// authenticated principal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsynced {
    /// Cases holding local changes the relay has not accepted yet (the
    /// device's dirty marks, which `aftercase status` lists; a case the relay
    /// refused stays counted until it is discarded). Cases, not changes:
    /// the device counts them without loading a document.
    pub pending: u32,
    /// Age in whole seconds, measured on the device's own clock when the
    /// frame was made, of the oldest of those cases' first unaccepted edit.
    /// An age rather than a time, so a device clock set wrong does not
    /// matter; the relay adds the time since it received the report.
    /// `None` when nothing is pending, or when the pending cases were
    /// marked by a version that did not record the time.
    pub oldest_unsynced_secs: Option<u64>,
}

impl Unsynced {
    /// The report for dirty marks made at the given device times (`None`:
    /// time not recorded), as seen at device time `now`.
    pub fn from_marks(marks: impl IntoIterator<Item = Option<Millis>>, now: Millis) -> Unsynced {
        let mut pending = 0u32;
        let mut oldest: Option<Millis> = None;
        for at in marks {
            pending = pending.saturating_add(1);
            if let Some(at) = at {
                oldest = Some(oldest.map_or(at, |o| o.min(at)));
            }
        }
        Unsynced {
            pending,
            // An edit "in the future" (the clock was set back since) counts
            // as new rather than as a negative age.
            oldest_unsynced_secs: oldest
                .map(|o| u64::try_from(now.0.saturating_sub(o.0)).unwrap_or(0) / 1000),
        }
    }
}

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Device → relay, first frame: resume after `cursor`, and report the
    /// device's state for head office's fleet view.
    Hello {
        /// The highest relay sequence the device has fully received.
        cursor: u64,
        /// Version of the policy the device holds.
        policy_version: u32,
        /// The app and library versions the device runs, as free text
        /// (the relay keeps at most [`MAX_APP_VERSION_CHARS`] characters
        /// and refuses control characters).
        app_version: String,
        /// The device's unsynced work when it connected.
        unsynced: Unsynced,
        /// Optional capabilities the device would use (version 4; a
        /// version 3 hello has none), such as [`FEATURE_BLOBS`]. The relay
        /// answers with a [`Frame::Welcome`] naming the ones it agrees to.
        features: Vec<String>,
    },
    /// Relay → device: these cases changed after the device's cursor, up to
    /// and including sequence `up_to`. `complete` is set on the last frame of
    /// a catch-up, when nothing newer than `up_to` exists.
    Announce {
        /// Sequence covered by this frame.
        up_to: u64,
        /// The changed cases with the relay's heads.
        docs: Vec<DocHeads>,
        /// Whether the catch-up is finished.
        complete: bool,
    },
    /// Either direction: one Automerge sync message for one case.
    Sync {
        /// The case.
        doc: CaseId,
        /// `automerge::sync::Message::encode()` bytes.
        message: Vec<u8>,
    },
    /// Relay → device: the last message about `doc` was refused and nothing
    /// of it was applied.
    Refused {
        /// The case.
        doc: CaseId,
        /// A [`super::RefusalCode`] name (a string, so a device shows the
        /// words of a code newer than itself).
        code: String,
        /// Why, in words for the user.
        reason: String,
    },
    /// Either direction: a fatal error; the sender closes the connection.
    Error {
        /// Why.
        reason: String,
    },
    /// Relay → device: the policy in force (JSON of `policy::Policy`), sent
    /// when the device holds an older version.
    Policy {
        /// The policy document.
        json: String,
    },
    /// Head office device → relay: publish a new policy version.
    PublishPolicy {
        /// The policy document.
        json: String,
    },
    /// Relay → device: a published policy was not accepted; nothing changed.
    PolicyRefused {
        /// Why, naming the field.
        reason: String,
    },
    /// Device → relay: send these announced cases whole; the device holds
    /// none of their history (a fresh tablet), so a compacted document is
    /// cheaper than a change-by-change sync round.
    Fetch {
        /// The cases.
        docs: Vec<CaseId>,
    },
    /// Relay → device: whole cases answering a [`Frame::Fetch`], several per
    /// frame so the device stores them in one batch.
    Snapshots {
        /// The cases.
        docs: Vec<DocBytes>,
    },
    /// Relay → device: one piece of a case or sync message too large for
    /// one frame. Pieces of one case come in order, `index` 0 to
    /// `total - 1`, with nothing else for that case in between; the device
    /// joins them and handles the whole as a snapshot or a sync message.
    Piece {
        /// The case.
        doc: CaseId,
        /// What the joined bytes are.
        kind: PieceKind,
        /// This piece's position.
        index: u32,
        /// How many pieces there are.
        total: u32,
        /// The piece.
        bytes: Vec<u8>,
    },
    /// Device → relay: the device's unsynced work changed since it last
    /// said (sent when a sync round settles), so the relay's record of a
    /// device that stays connected for hours does not go stale.
    Report {
        /// The device's unsynced work now.
        unsynced: Unsynced,
    },
    /// Relay → device (version 4), the answer to a hello: the features of
    /// the device's list that this connection will use.
    Welcome {
        /// Agreed features.
        features: Vec<String>,
    },
    /// Device → relay: the device holds blob `hash`, which case `doc`
    /// references as evidence, and would upload it. The relay answers
    /// [`Frame::BlobAt`] (where to resume), [`Frame::BlobStored`] (it
    /// already holds it) or [`Frame::BlobRefused`].
    BlobOffer {
        /// The case whose evidence names the blob.
        doc: CaseId,
        /// SHA-256 of the blob.
        hash: [u8; 32],
    },
    /// Relay → device: the relay holds the first `offset` bytes of the
    /// blob; send from there. Also the answer to each uploaded chunk.
    BlobAt {
        /// The blob.
        hash: [u8; 32],
        /// Bytes held.
        offset: u64,
    },
    /// Either direction: bytes of a blob starting at `offset`, at most
    /// [`MAX_BLOB_CHUNK`].
    BlobChunk {
        /// The blob.
        hash: [u8; 32],
        /// Where the bytes go.
        offset: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Relay → device: the blob is stored whole, checked and durable.
    BlobStored {
        /// The blob.
        hash: [u8; 32],
    },
    /// Relay → device: the blob offer, chunk or request was refused;
    /// nothing of it is kept.
    BlobRefused {
        /// The blob.
        hash: [u8; 32],
        /// A stable code (see `relay::blobs::BlobCode`).
        code: String,
        /// Why, in words for the user.
        reason: String,
    },
    /// Device → relay: send the next chunk of blob `hash`, referenced by
    /// case `doc`, from `offset`; answered with one [`Frame::BlobChunk`].
    BlobGet {
        /// The case whose evidence names the blob.
        doc: CaseId,
        /// The blob.
        hash: [u8; 32],
        /// First byte wanted.
        offset: u64,
    },
    /// Relay → device (feature [`FEATURE_PUSH`]): changes of case `doc`
    /// the relay accepted since the heads it last knew the device to hold,
    /// as stored, in causal order. Only a shortcut: the
    /// [`Frame::Announce`] that follows names the case's heads, and a
    /// device that does not hold them after applying the changes (a push
    /// lost, or one whose dependencies it lacks) syncs the case as usual.
    ///
    /// Device → relay (feature [`FEATURE_UPLOAD`]): every change the device
    /// stores of a case the relay has never confirmed to it, in any order.
    /// Judged and committed like the changes of a sync message; answered by
    /// [`Frame::Stored`] once durable, [`Frame::Refused`], or a
    /// [`Frame::Sync`] when some of them could not be applied (their
    /// dependencies missing), which moves the case to the sync protocol.
    Changes {
        /// The case.
        doc: CaseId,
        /// Each change's bytes (`automerge::Change::raw_bytes`).
        changes: Vec<Vec<u8>>,
    },
    /// Relay → device (feature [`FEATURE_UPLOAD`]): every change of the
    /// device's last [`Frame::Changes`] for case `doc` is stored and
    /// durable; `heads` are the case's heads at the relay, so a device that
    /// lacks some of them (another device's changes) syncs for them.
    Stored {
        /// The case.
        doc: CaseId,
        /// The case's heads at the relay.
        heads: Vec<[u8; 32]>,
    },
    /// Store relay → its upstream (feature [`FEATURE_UPLOAD`]): changes of
    /// case `doc` made on a tablet of the store, sent with the token that
    /// tablet presented. The upstream checks the token as it would on a
    /// connection of the tablet's own, and judges and records the changes
    /// as the tablet's: the store relay cannot lend anyone more authority
    /// than their own token carries. Answered as [`Frame::Changes`] is.
    Relayed {
        /// The author's token.
        token: BearerToken,
        /// The case.
        doc: CaseId,
        /// Each change's bytes, in causal order.
        changes: Vec<Vec<u8>>,
    },
    /// Device → relay (feature [`FEATURE_KEYS`]): the keys of cases the
    /// device opened, sent ahead of their changes so the relay can open
    /// and check their sealed personal data (see `case::seal`).
    ///
    /// Relay → device: the keys of cases the device asked for with
    /// [`Frame::WantKeys`] and may read.
    Keys {
        /// The cases and their keys.
        keys: Vec<DocKey>,
    },
    /// Device → relay (feature [`FEATURE_KEYS`]): the device holds these
    /// cases without their keys; answered with [`Frame::Keys`] for those
    /// it may read and [`Frame::KeysGone`] for those erased.
    WantKeys {
        /// The cases, at most [`MAX_KEYS_PER_FRAME`].
        docs: Vec<CaseId>,
    },
    /// Relay → device (feature [`FEATURE_KEYS`]): these cases' personal
    /// data was erased: the device destroys its copies of their keys.
    KeysGone {
        /// The cases.
        docs: Vec<CaseId>,
    },
    /// Relay → device: this device was reported lost. The device destroys
    /// every case key and every case it holds before anything else; the
    /// relay closes the connection after this frame.
    Wipe {
        /// Why, in words for the person holding the device.
        reason: String,
    },
}

/// One case's key in a [`Frame::Keys`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocKey {
    /// The case.
    pub doc: CaseId,
    /// Its key (its `Debug` hides it).
    pub key: crate::case::seal::CaseKey,
}

/// Most cases in one [`Frame::Keys`] or [`Frame::WantKeys`].
pub const MAX_KEYS_PER_FRAME: usize = 4096;

/// The last variant index of protocol version 3 (`Report`): a version 3
/// peer neither sends nor receives anything after it.
const LAST_V3_VARIANT: u8 = 11;

/// The hello of protocol version 3, without features; the only frame
/// whose shape changed in version 4.
#[derive(Serialize, Deserialize)]
enum HelloV3 {
    Hello {
        cursor: u64,
        policy_version: u32,
        app_version: String,
        unsynced: Unsynced,
    },
}

/// Why bytes from a peer are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Nothing was sent.
    #[error("empty frame")]
    Empty,
    /// Over [`MAX_FRAME_BYTES`].
    #[error("frame of {size} bytes exceeds the limit of {MAX_FRAME_BYTES} bytes")]
    TooLarge {
        /// Size received.
        size: usize,
    },
    /// A version this build does not speak.
    #[error("{}", version_mismatch(*got))]
    Version {
        /// Version byte received.
        got: u8,
    },
    /// The body does not decode.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Words for frames of protocol version `got` reaching the relay, which
/// speaks [`PROTOCOL_VERSION`]: the person holding an old tablet must learn
/// that the app needs updating, not that a byte was wrong.
fn version_mismatch(got: u8) -> String {
    if got < OLDEST_VERSION {
        format!(
            "unsupported protocol version {got}: the relay speaks {OLDEST_VERSION} to {PROTOCOL_VERSION}; update the app"
        )
    } else {
        format!(
            "unsupported protocol version {got}: newer than the {PROTOCOL_VERSION} this side speaks; update the relay"
        )
    }
}

/// A [`Frame::Error`] with `reason`, encoded so a peer speaking protocol
/// `version` decodes it: an older device refused for its version still
/// reads the words instead of failing on the version byte. `Error` has had
/// the same place and shape in every version so far; for a version this
/// build does not know (0, or newer) the frame is encoded as this build's.
pub fn error_for_version(version: u8, reason: &str) -> Vec<u8> {
    let mut bytes = Frame::Error {
        reason: reason.to_string(),
    }
    .encode();
    if (1..PROTOCOL_VERSION).contains(&version) {
        bytes[0] = version;
    }
    bytes
}

impl Frame {
    /// Whether protocol version 3 has this frame.
    fn in_v3(&self) -> bool {
        !matches!(
            self,
            Frame::Welcome { .. }
                | Frame::BlobOffer { .. }
                | Frame::BlobAt { .. }
                | Frame::BlobChunk { .. }
                | Frame::BlobStored { .. }
                | Frame::BlobRefused { .. }
                | Frame::BlobGet { .. }
                | Frame::Changes { .. }
                | Frame::Stored { .. }
                | Frame::Relayed { .. }
                | Frame::Keys { .. }
                | Frame::WantKeys { .. }
                | Frame::KeysGone { .. }
                | Frame::Wipe { .. }
        )
    }

    /// Encodes the frame for a peer speaking `version` (this build's
    /// version for any other). A frame version 3 does not have is never
    /// sent to a version 3 peer: the sessions check features first; if one
    /// slips through, the peer gets an `Error` naming it instead of bytes
    /// it cannot read.
    pub fn encode_for(&self, version: u8) -> Vec<u8> {
        if version != OLDEST_VERSION {
            return self.encode();
        }
        let mut out = vec![OLDEST_VERSION];
        let body = match self {
            Frame::Hello {
                cursor,
                policy_version,
                app_version,
                unsynced,
                ..
            } => postcard::to_extend(
                &HelloV3::Hello {
                    cursor: *cursor,
                    policy_version: *policy_version,
                    app_version: app_version.clone(),
                    unsynced: *unsynced,
                },
                Vec::new(),
            ),
            f if f.in_v3() => postcard::to_extend(f, Vec::new()),
            f => postcard::to_extend(
                &Frame::Error {
                    reason: format!("{} is not part of protocol version 3", f.name()),
                },
                Vec::new(),
            ),
        };
        // As in `encode`: serializing into a Vec cannot fail.
        match body {
            Ok(b) => out.extend(b),
            Err(_) => unreachable!("postcard encoding into a Vec cannot fail"),
        }
        out
    }

    /// Decodes bytes from a peer, with the protocol version they carry.
    /// Never panics; rejects trailing bytes.
    pub fn decode_versioned(bytes: &[u8]) -> Result<(u8, Frame), DecodeError> {
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(DecodeError::TooLarge { size: bytes.len() });
        }
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if !(OLDEST_VERSION..=PROTOCOL_VERSION).contains(&version) {
            return Err(DecodeError::Version { got: version });
        }
        let malformed = |e: postcard::Error| DecodeError::Malformed(e.to_string());
        let (frame, rest) = if version == OLDEST_VERSION && body.first() == Some(&0) {
            let (
                HelloV3::Hello {
                    cursor,
                    policy_version,
                    app_version,
                    unsynced,
                },
                rest,
            ) = postcard::take_from_bytes::<HelloV3>(body).map_err(malformed)?;
            (
                Frame::Hello {
                    cursor,
                    policy_version,
                    app_version,
                    unsynced,
                    features: Vec::new(),
                },
                rest,
            )
        } else {
            if version == OLDEST_VERSION && body.first().is_some_and(|t| *t > LAST_V3_VARIANT) {
                return Err(DecodeError::Malformed(
                    "a frame protocol version 3 does not have".into(),
                ));
            }
            postcard::take_from_bytes::<Frame>(body).map_err(malformed)?
        };
        if !rest.is_empty() {
            return Err(DecodeError::Malformed(format!(
                "{} unexpected bytes after the frame",
                rest.len()
            )));
        }
        Ok((version, frame))
    }

    /// A [`Frame::Refused`] for `doc`.
    pub fn refused(doc: CaseId, r: &super::Refusal) -> Frame {
        Frame::Refused {
            doc,
            code: r.code.as_str().to_string(),
            reason: r.message.clone(),
        }
    }

    /// Encodes the frame with its version byte.
    pub fn encode(&self) -> Vec<u8> {
        let out = vec![PROTOCOL_VERSION];
        // Serializing our own enum into a Vec cannot fail: postcard only fails
        // on a full fixed buffer or on types it cannot represent, and this
        // type has neither.
        match postcard::to_extend(self, out) {
            Ok(v) => v,
            Err(_) => unreachable!("postcard encoding of Frame into a Vec cannot fail"),
        }
    }

    /// Decodes bytes from a peer of either version. Never panics; rejects
    /// trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
        Self::decode_versioned(bytes).map(|(_, f)| f)
    }

    /// A short name for logs (never the content).
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "hello",
            Frame::Announce { .. } => "announce",
            Frame::Sync { .. } => "sync",
            Frame::Refused { .. } => "refused",
            Frame::Error { .. } => "error",
            Frame::Policy { .. } => "policy",
            Frame::PublishPolicy { .. } => "publish_policy",
            Frame::PolicyRefused { .. } => "policy_refused",
            Frame::Fetch { .. } => "fetch",
            Frame::Snapshots { .. } => "snapshots",
            Frame::Piece { .. } => "piece",
            Frame::Report { .. } => "report",
            Frame::Welcome { .. } => "welcome",
            Frame::BlobOffer { .. } => "blob_offer",
            Frame::BlobAt { .. } => "blob_at",
            Frame::BlobChunk { .. } => "blob_chunk",
            Frame::BlobStored { .. } => "blob_stored",
            Frame::BlobRefused { .. } => "blob_refused",
            Frame::BlobGet { .. } => "blob_get",
            Frame::Changes { .. } => "changes",
            Frame::Stored { .. } => "stored",
            Frame::Relayed { .. } => "relayed",
            Frame::Keys { .. } => "keys",
            Frame::WantKeys { .. } => "want_keys",
            Frame::KeysGone { .. } => "keys_gone",
            Frame::Wipe { .. } => "wipe",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn case_id() -> impl Strategy<Value = CaseId> {
        any::<[u8; 16]>().prop_map(CaseId::from_bytes)
    }

    fn frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (
                any::<u64>(),
                any::<u32>(),
                ".{0,80}",
                unsynced(),
                proptest::collection::vec("[a-z]{0,8}", 0..3)
            )
                .prop_map(
                    |(cursor, policy_version, app_version, unsynced, features)| Frame::Hello {
                        cursor,
                        policy_version,
                        app_version,
                        unsynced,
                        features,
                    }
                ),
            (
                any::<u64>(),
                proptest::collection::vec(
                    (
                        case_id(),
                        proptest::collection::vec(any::<[u8; 32]>(), 0..3)
                    )
                        .prop_map(|(doc, heads)| DocHeads { doc, heads }),
                    0..5
                ),
                any::<bool>()
            )
                .prop_map(|(up_to, docs, complete)| Frame::Announce {
                    up_to,
                    docs,
                    complete
                }),
            (case_id(), proptest::collection::vec(any::<u8>(), 0..300))
                .prop_map(|(doc, message)| Frame::Sync { doc, message }),
            (case_id(), "[a-z_]{0,12}", ".{0,40}").prop_map(|(doc, code, reason)| Frame::Refused {
                doc,
                code,
                reason
            }),
            ".{0,40}".prop_map(|reason| Frame::Error { reason }),
            ".{0,40}".prop_map(|json| Frame::Policy { json }),
            ".{0,40}".prop_map(|json| Frame::PublishPolicy { json }),
            ".{0,40}".prop_map(|reason| Frame::PolicyRefused { reason }),
            proptest::collection::vec(case_id(), 0..4).prop_map(|docs| Frame::Fetch { docs }),
            proptest::collection::vec(
                (case_id(), proptest::collection::vec(any::<u8>(), 0..100))
                    .prop_map(|(doc, bytes)| DocBytes { doc, bytes }),
                0..3
            )
            .prop_map(|docs| Frame::Snapshots { docs }),
            (
                case_id(),
                any::<bool>(),
                any::<u32>(),
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..100)
            )
                .prop_map(|(doc, sync, index, total, bytes)| Frame::Piece {
                    doc,
                    kind: if sync {
                        PieceKind::Sync
                    } else {
                        PieceKind::Snapshot
                    },
                    index,
                    total,
                    bytes
                }),
            unsynced().prop_map(|unsynced| Frame::Report { unsynced }),
            proptest::collection::vec("[a-z]{0,8}", 0..3)
                .prop_map(|features| Frame::Welcome { features }),
            (case_id(), any::<[u8; 32]>()).prop_map(|(doc, hash)| Frame::BlobOffer { doc, hash }),
            (any::<[u8; 32]>(), any::<u64>())
                .prop_map(|(hash, offset)| Frame::BlobAt { hash, offset }),
            (
                any::<[u8; 32]>(),
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..100)
            )
                .prop_map(|(hash, offset, bytes)| Frame::BlobChunk {
                    hash,
                    offset,
                    bytes
                }),
            any::<[u8; 32]>().prop_map(|hash| Frame::BlobStored { hash }),
            (any::<[u8; 32]>(), "[a-z_]{0,12}", ".{0,40}")
                .prop_map(|(hash, code, reason)| { Frame::BlobRefused { hash, code, reason } }),
            (case_id(), any::<[u8; 32]>(), any::<u64>())
                .prop_map(|(doc, hash, offset)| Frame::BlobGet { doc, hash, offset }),
            (
                case_id(),
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..60), 0..3)
            )
                .prop_map(|(doc, changes)| Frame::Changes { doc, changes }),
            (
                case_id(),
                proptest::collection::vec(any::<[u8; 32]>(), 0..3)
            )
                .prop_map(|(doc, heads)| Frame::Stored { doc, heads }),
            (
                ".{0,40}",
                case_id(),
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..60), 0..3)
            )
                .prop_map(|(token, doc, changes)| Frame::Relayed {
                    token: BearerToken(token),
                    doc,
                    changes
                }),
        ]
    }

    fn unsynced() -> impl Strategy<Value = Unsynced> {
        (any::<u32>(), proptest::option::of(any::<u64>())).prop_map(
            |(pending, oldest_unsynced_secs)| Unsynced {
                pending,
                oldest_unsynced_secs,
            },
        )
    }

    proptest! {
        #[test]
        fn round_trips(f in frame()) {
            prop_assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
        }

        #[test]
        fn a_version_3_peer_reads_every_version_3_frame_as_sent(f in frame()) {
            let bytes = f.encode_for(OLDEST_VERSION);
            prop_assert_eq!(bytes[0], OLDEST_VERSION);
            let (version, back) = Frame::decode_versioned(&bytes).unwrap();
            prop_assert_eq!(version, OLDEST_VERSION);
            match (&f, back) {
                // The version 3 hello has no features.
                (Frame::Hello { features, .. }, Frame::Hello { features: none, .. }) => {
                    prop_assert!(none.is_empty());
                    let _ = features;
                }
                (f, back) if f.in_v3() => prop_assert_eq!(f, &back),
                // Newer frames become an error naming them.
                (f, back) => prop_assert_eq!(back, Frame::Error {
                    reason: format!("{} is not part of protocol version 3", f.name())
                }),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Frame::decode(&bytes);
        }

        #[test]
        fn truncation_is_an_error(f in frame(), cut in 1usize..8) {
            let bytes = f.encode();
            if cut < bytes.len() {
                prop_assert!(Frame::decode(&bytes[..bytes.len() - cut]).is_err());
            }
        }
    }

    #[test]
    fn rejects_wrong_version_size_and_trailing_bytes() {
        let mut b = Frame::Hello {
            cursor: 3,
            policy_version: 1,
            app_version: String::new(),
            unsynced: Unsynced::default(),
            features: Vec::new(),
        }
        .encode();
        b[0] = 9;
        assert_eq!(Frame::decode(&b), Err(DecodeError::Version { got: 9 }));
        assert_eq!(Frame::decode(&[]), Err(DecodeError::Empty));
        let big = vec![PROTOCOL_VERSION; MAX_FRAME_BYTES + 1];
        assert!(matches!(
            Frame::decode(&big),
            Err(DecodeError::TooLarge { .. })
        ));
        let mut t = Frame::Hello {
            cursor: 3,
            policy_version: 1,
            app_version: String::new(),
            unsynced: Unsynced::default(),
            features: Vec::new(),
        }
        .encode();
        t.push(0);
        assert!(matches!(Frame::decode(&t), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn hello_and_report_carry_the_device_report() {
        let hello = Frame::Hello {
            cursor: 7,
            policy_version: 2,
            app_version: "shopapp 4.1 (aftercase-client 0.1.0)".into(),
            unsynced: Unsynced {
                pending: 3,
                oldest_unsynced_secs: Some(172_800),
            },
            features: vec![FEATURE_BLOBS.into()],
        };
        assert_eq!(Frame::decode(&hello.encode()), Ok(hello));
        let report = Frame::Report {
            unsynced: Unsynced {
                pending: 0,
                oldest_unsynced_secs: None,
            },
        };
        assert_eq!(report.name(), "report");
        assert_eq!(Frame::decode(&report.encode()), Ok(report));
    }

    #[test]
    fn an_old_device_is_told_to_update_the_app_in_words_it_can_read() {
        let mut old = Frame::Hello {
            cursor: 0,
            policy_version: 1,
            app_version: String::new(),
            unsynced: Unsynced::default(),
            features: Vec::new(),
        }
        .encode();
        old[0] = 2;
        let err = Frame::decode(&old).unwrap_err();
        assert_eq!(err, DecodeError::Version { got: 2 });
        let words = err.to_string();
        assert!(words.contains("update the app"), "{words}");
        assert!(
            words.contains("version 2") && words.contains("speaks 3 to 4"),
            "{words}"
        );
        // A version 3 hello is read, not refused.
        let v3 = Frame::Hello {
            cursor: 0,
            policy_version: 1,
            app_version: String::new(),
            unsynced: Unsynced::default(),
            features: vec![FEATURE_BLOBS.into()],
        }
        .encode_for(3);
        assert_eq!(v3[0], 3);
        assert!(matches!(
            Frame::decode(&v3),
            Ok(Frame::Hello { features, .. }) if features.is_empty()
        ));
        let newer = DecodeError::Version { got: 9 }.to_string();
        assert!(newer.contains("update the relay"), "{newer}");

        // The error frame for that device carries its own version byte and
        // otherwise the bytes every version has used for `Error`.
        let bytes = error_for_version(2, &words);
        assert_eq!(bytes[0], 2);
        let mut as_ours = bytes.clone();
        as_ours[0] = PROTOCOL_VERSION;
        assert_eq!(
            Frame::decode(&as_ours),
            Ok(Frame::Error {
                reason: words.clone()
            })
        );
        // Unknown versions get this build's encoding.
        assert_eq!(error_for_version(0, "x")[0], PROTOCOL_VERSION);
        assert_eq!(error_for_version(200, "x")[0], PROTOCOL_VERSION);
    }

    #[test]
    fn unsynced_work_counts_marks_and_ages_the_oldest_on_the_device_clock() {
        let now = Millis(1_000_000);
        let none = Unsynced::from_marks([], now);
        assert_eq!(none, Unsynced::default());
        let u = Unsynced::from_marks([Some(Millis(940_000)), None, Some(Millis(999_500))], now);
        assert_eq!(u.pending, 3);
        assert_eq!(u.oldest_unsynced_secs, Some(60));
        // Marks without a time are counted but give no age.
        let legacy = Unsynced::from_marks([None, None], now);
        assert_eq!((legacy.pending, legacy.oldest_unsynced_secs), (2, None));
        // A mark from after `now` (the clock went back) is new, not negative.
        let ahead = Unsynced::from_marks([Some(Millis(2_000_000))], now);
        assert_eq!(ahead.oldest_unsynced_secs, Some(0));
    }

    #[test]
    fn a_version_3_peer_cannot_send_newer_frames() {
        let welcome = Frame::Welcome {
            features: vec![FEATURE_BLOBS.into()],
        };
        let mut bytes = welcome.encode();
        assert_eq!(bytes[0], 4);
        assert_eq!(Frame::decode(&bytes), Ok(welcome));
        bytes[0] = 3;
        assert!(matches!(
            Frame::decode(&bytes),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn version_3_hello_and_report_bytes_are_stable() {
        // Kept in the fuzz corpus too: a change here changes the wire.
        let hello = [3, 0, 0, 1, 4, b't', b'e', b's', b't', 3, 1, 0x90, 0x1c];
        assert_eq!(
            Frame::decode(&hello),
            Ok(Frame::Hello {
                cursor: 0,
                policy_version: 1,
                app_version: "test".into(),
                unsynced: Unsynced {
                    pending: 3,
                    oldest_unsynced_secs: Some(3_600),
                },
                features: Vec::new(),
            })
        );
        assert_eq!(
            Frame::decode(&[3, 11, 2, 1, 0x90, 0x1c]),
            Ok(Frame::Report {
                unsynced: Unsynced {
                    pending: 2,
                    oldest_unsynced_secs: Some(3_600),
                },
            })
        );
    }
}
