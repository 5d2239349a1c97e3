//! The one error type apps see.

use aftercase_client::{ClientError, SyncError};

/// Why a call failed. `code` is stable snake_case for the app to translate;
/// `reason` is English words for logs and support.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum AftercaseError {
    /// A local operation failed (bad input, not allowed for this role,
    /// unknown case, storage); nothing was saved.
    #[error("{code}: {reason}")]
    Local {
        /// `not_initialised`, `invalid_config`, `invalid_value`, `workflow`,
        /// `not_allowed`, `open_conflict`, `unknown_case`, `storage`, ...
        code: String,
        /// Words.
        reason: String,
    },
    /// A sync did not finish; local data is untouched.
    #[error("{code}: {reason}")]
    Sync {
        /// `unreachable`, `token_rejected`, `token_expired`, `revoked`,
        /// `too_many_connections`, `closed`, `timeout`, `session`, ...
        code: String,
        /// Words.
        reason: String,
    },
    /// The relay refused this device's changes to a case; the other cases
    /// synced. Fix and sync again, or give the changes up.
    #[error("{code}: {reason}")]
    Refused {
        /// The relay's refusal code: `too_large`, `forbidden`, `workflow`,
        /// `authority`, `window`, `contact_rules`, ...
        code: String,
        /// How many cases were refused.
        cases: u32,
        /// Words (the first refusal).
        reason: String,
    },
    /// A live sync is already running on this device.
    #[error("already_live: a live sync is already running")]
    AlreadyLive,
}

impl From<ClientError> for AftercaseError {
    fn from(e: ClientError) -> Self {
        AftercaseError::Local {
            code: e.code().into(),
            reason: e.to_string(),
        }
    }
}

impl From<SyncError> for AftercaseError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Refused { count, code, first } => AftercaseError::Refused {
                code,
                cases: u32::try_from(count).unwrap_or(u32::MAX),
                reason: first,
            },
            other => AftercaseError::Sync {
                code: other.code().into(),
                reason: other.to_string(),
            },
        }
    }
}

/// Bad input from the app (an id, a kind): a local `invalid_value`.
pub(crate) fn invalid(what: &str, e: impl std::fmt::Display) -> AftercaseError {
    AftercaseError::Local {
        code: "invalid_value".into(),
        reason: format!("{what}: {e}"),
    }
}
