//! Versioned binary framing. Every frame is one WebSocket binary message:
//! a protocol version byte followed by a postcard-encoded [`Frame`].

use crate::ids::CaseId;
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 2;

/// Largest frame accepted from a peer, in bytes. Larger frames close the
/// connection before any decoding work is done.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

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

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Device → relay, first frame: resume after `cursor`.
    Hello {
        /// The highest relay sequence the device has fully received.
        cursor: u64,
        /// Version of the policy the device holds.
        policy_version: u32,
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
    #[error("unsupported protocol version {got} (this relay speaks {PROTOCOL_VERSION})")]
    Version {
        /// Version byte received.
        got: u8,
    },
    /// The body does not decode.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl Frame {
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

    /// Decodes bytes from a peer. Never panics; rejects trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(DecodeError::TooLarge { size: bytes.len() });
        }
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::Version { got: version });
        }
        let (frame, rest) = postcard::take_from_bytes::<Frame>(body)
            .map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError::Malformed(format!(
                "{} unexpected bytes after the frame",
                rest.len()
            )));
        }
        Ok(frame)
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
            (any::<u64>(), any::<u32>()).prop_map(|(cursor, policy_version)| Frame::Hello {
                cursor,
                policy_version
            }),
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
        ]
    }

    proptest! {
        #[test]
        fn round_trips(f in frame()) {
            prop_assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
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
        }
        .encode();
        t.push(0);
        assert!(matches!(Frame::decode(&t), Err(DecodeError::Malformed(_))));
    }
}
