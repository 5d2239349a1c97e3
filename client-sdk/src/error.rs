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
    /// The relay refused the token and the token's own expiry time has
    /// passed: only a new token helps.
    #[error(
        "token rejected by the relay: the device token has expired ({0}); ask for a new token and run `aftercase init` again"
    )]
    TokenExpired(String),
    /// The operator revoked this device's token (or the device or user);
    /// only a new token helps.
    #[error("access revoked: {0} (then run `aftercase init` with the new token)")]
    Revoked(String),
    /// The relay says this device was reported lost. Every case and key
    /// on it was wiped before this error was returned; only a new token
    /// (and `aftercase init`) brings it back.
    #[error("this device was reported lost and has been wiped: {0}")]
    DeviceLost(String),
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
        /// The relay's refusal code of the first (`too_large`, `forbidden`,
        /// ...: `aftercase_sync::protocol::RefusalCode`).
        code: String,
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

impl ClientError {
    /// A stable snake_case code for programs: an app shows its own words
    /// for it (in the user's language) and keeps [`ToString`] for logs.
    /// Never renamed; new codes are added instead.
    pub fn code(&self) -> &'static str {
        use aftercase_sync::case::edit::EditError;
        match self {
            ClientError::NotInitialised(_) => "not_initialised",
            ClientError::Config(_) => "invalid_config",
            ClientError::Replica(ReplicaError::Edit(e)) => match e {
                EditError::Invalid { .. } => "invalid_value",
                EditError::NotACase(_) => "not_a_case",
                EditError::Document(_) => "document",
                EditError::Transition { .. } => "workflow",
                EditError::OpenConflict { .. } => "open_conflict",
                EditError::NotAllowed(_) => "not_allowed",
            },
            ClientError::Replica(ReplicaError::UnknownCase(_)) => "unknown_case",
            ClientError::Replica(ReplicaError::Apply { .. }) => "apply",
            ClientError::Replica(ReplicaError::Storage(_)) | ClientError::Storage(_) => "storage",
            ClientError::Io { .. } => "io",
        }
    }
}

impl SyncError {
    /// A stable snake_case code for programs (see [`ClientError::code`]).
    /// A refusal's own code, from the relay, is in [`SyncError::Refused`].
    pub fn code(&self) -> &'static str {
        match self {
            SyncError::Unreachable { .. } => "unreachable",
            SyncError::TokenRejected(_) => "token_rejected",
            SyncError::TokenExpired(_) => "token_expired",
            SyncError::Revoked(_) => "revoked",
            SyncError::DeviceLost(_) => "device_lost",
            SyncError::TooManyConnections(_) => "too_many_connections",
            SyncError::Closed(_) => "closed",
            SyncError::Timeout(_) => "timeout",
            SyncError::Refused { .. } => "refused",
            SyncError::Session(_) => "session",
            SyncError::OlderRelay(_) => "older_relay",
        }
    }

    /// Whether only a new token helps (rejected, expired or revoked): a
    /// live sync stops on these instead of retrying.
    pub fn needs_new_token(&self) -> bool {
        matches!(
            self,
            SyncError::TokenRejected(_)
                | SyncError::TokenExpired(_)
                | SyncError::Revoked(_)
                | SyncError::DeviceLost(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_snake_case() {
        let errors = [
            SyncError::Unreachable {
                url: String::new(),
                reason: String::new(),
            },
            SyncError::TokenRejected(String::new()),
            SyncError::TokenExpired(String::new()),
            SyncError::Revoked(String::new()),
            SyncError::DeviceLost(String::new()),
            SyncError::TooManyConnections(String::new()),
            SyncError::Closed(String::new()),
            SyncError::Timeout(1),
            SyncError::Refused {
                count: 1,
                code: "too_large".into(),
                first: String::new(),
            },
            SyncError::Session(String::new()),
            SyncError::OlderRelay(3),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for e in &errors {
            let c = e.code();
            assert!(
                c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'),
                "{c}"
            );
            assert!(seen.insert(c), "{c} used twice");
        }
        assert!(ClientError::NotInitialised("d".into()).code() == "not_initialised");
    }
}
