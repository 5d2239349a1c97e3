//! Errors of the SDK, worded for the person holding the device.

use aftercase_sync::replica::ReplicaError;

/// A local operation failed; nothing was saved.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The device has not been set up.
    #[error("this device is not set up yet: run `aftercase --data-dir {0} init --relay URL --token TOKEN`")]
    NotInitialised(String),
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// An edit or a read failed.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The local store could not be opened.
    #[error(transparent)]
    Storage(#[from] aftercase_sync::storage::StorageError),
    /// File access failed.
    #[error("{path}: {source}")]
    Io {
        /// What we tried to read or write.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A sync did not finish. Local data is untouched.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No connection could be made.
    #[error("relay unreachable at {url}: {reason}")]
    Unreachable {
        /// The relay address.
        url: String,
        /// Why.
        reason: String,
    },
    /// The relay refused the token.
    #[error(
        "token rejected by the relay: {0} (ask for a new token and run `aftercase init` again)"
    )]
    TokenRejected(String),
    /// The operator revoked this device's token (or the device or user);
    /// only a new token helps.
    #[error("access revoked: {0} (then run `aftercase init` with the new token)")]
    Revoked(String),
    /// The relay refused another connection for this device or user; a
    /// later attempt may work.
    #[error("relay refused the connection: {0}")]
    TooManyConnections(String),
    /// The relay closed the connection with a reason.
    #[error("relay closed the connection: {0}")]
    Closed(String),
    /// The relay stopped answering.
    #[error("relay stopped responding for {0} seconds")]
    Timeout(u64),
    /// The relay refused some changes; the rest was synced.
    #[error("relay refused changes to {count} case(s): {first}")]
    Refused {
        /// How many cases.
        count: usize,
        /// The first reason.
        first: String,
    },
    /// Protocol violation by the relay, or a local failure while syncing.
    #[error("{0}")]
    Session(String),
    /// The relay refused this app's protocol version in its own older one;
    /// the SDK reconnects speaking it (callers of `sync_once` and
    /// `run_live` never see this).
    #[error("the relay speaks the older sync protocol version {0}")]
    OlderRelay(u8),
}
