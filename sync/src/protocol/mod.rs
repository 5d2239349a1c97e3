//! The device ↔ relay sync protocol, as data and state machines.
//!
//! One connection carries many cases. The device opens with
//! [`Frame::Hello`] carrying its resume [`crate::Cursor`]; the relay answers
//! with [`Frame::Announce`]s listing only the cases changed since that cursor
//! (with their heads), and both sides run Automerge's sync protocol per case
//! inside [`Frame::Sync`] frames. The device advances its cursor once it holds
//! every announced head, so a reconnect costs what changed, not what exists.
//!
//! The hello also carries the device's report for head office (its app
//! version and [`Unsynced`] work), and the device sends [`Frame::Report`]
//! when a sync round settles with a different count; the relay files both
//! under the connection's principal (`relay::fleet`).
//!
//! Since version 4 the hello names optional features and the relay answers
//! [`Frame::Welcome`] with those it agrees to; with [`FEATURE_BLOBS`] the
//! device uploads evidence blobs in chunks ([`Frame::BlobOffer`],
//! [`Frame::BlobChunk`]) and fetches the ones it lacks ([`Frame::BlobGet`])
//! once its cases are in sync. A version 3 peer on either side keeps
//! syncing cases; blobs wait for a peer that speaks them.

mod client;
mod frame;
mod pieces;
mod refusal;

pub use client::{BlobProgress, ClientSession, SessionError};
pub use frame::{
    error_for_version, BearerToken, DecodeError, DocBytes, DocHeads, DocKey, Frame, PieceKind,
    Unsynced, FEATURE_BLOBS, FEATURE_KEYS, FEATURE_PUSH, FEATURE_UPLOAD, MAX_APP_VERSION_CHARS,
    MAX_BLOB_CHUNK, MAX_FRAME_BYTES, MAX_KEYS_PER_FRAME, OLDEST_VERSION, PROTOCOL_VERSION,
};
pub use pieces::{Pieces, MAX_ASSEMBLED_BYTES};
pub use refusal::{clip, Refusal, RefusalCode};

/// Lets Automerge resend changes the peer asks for even though it believes
/// they were sent already. Automerge never resends a change it counts as
/// sent in this session; if the peer lost it (a relay that dropped a cached
/// document, say), both sides would otherwise ask and answer forever.
pub(crate) fn forget_needed(state: &mut automerge::sync::State, need: &[automerge::ChangeHash]) {
    for h in need {
        state.sent_hashes.remove(h);
    }
}
