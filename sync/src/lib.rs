//! The Aftercase core: the case document, the sync protocol and the storage
//! boundary, with no networking, no clock reads and no randomness of its own.
//!
//! Typical workflow on a device: open a [`replica::Replica`] over a
//! [`storage::Storage`], make edits with [`replica::Replica::create_case`] and
//! friends (each returns once the edit is durable), and when a connection
//! exists drive a [`protocol::ClientSession`] with the frames the relay sends.
//! On the relay, a [`relay::Relay`] owns the stored cases and produces a
//! [`relay::RelaySession`] per authenticated connection. Both sides speak the
//! [`protocol::Frame`]s defined here, so the simulation in `tests/` can run
//! hundreds of devices against a relay without sockets.

pub mod access;
pub mod blobs;
pub mod case;
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod labels;
pub mod logs;
pub mod money;
pub mod policy;
pub mod protocol;
pub mod relay;
pub mod replica;
pub mod rules;
pub mod storage;
pub mod workflow;

pub use ids::{CaseId, Cursor, DeviceId, Millis, StoreId, UserId};
