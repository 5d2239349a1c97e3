//! Identifier newtypes. Every id that crosses a boundary has its own type so a
//! store id can never be passed where a user id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The id of one after-sales case: a UUID minted on the device that created it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CaseId(pub uuid::Uuid);

impl CaseId {
    /// Builds a case id from 16 random bytes supplied by the caller (the core
    /// never draws randomness itself).
    pub fn from_random_bytes(bytes: [u8; 16]) -> Self {
        CaseId(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }

    /// The 16 raw bytes, used in storage keys.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Rebuilds an id from storage-key bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        CaseId(uuid::Uuid::from_bytes(bytes))
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for CaseId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(CaseId)
    }
}

/// Error for a text id that is empty, too long or contains characters that
/// would make storage keys or logs ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be 1-64 characters of letters, digits, '-', '_' or '.', got {got:?}")]
pub struct InvalidId {
    /// Which id was wrong ("store id", "user id", ...).
    pub what: &'static str,
    /// The rejected value, cut to 80 characters.
    pub got: String,
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps a text id.
            pub fn new(s: impl Into<String>) -> Result<Self, InvalidId> {
                let s = s.into();
                let ok = !s.is_empty()
                    && s.len() <= 64
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if ok {
                    Ok($name(s))
                } else {
                    Err(InvalidId { what: $what, got: s.chars().take(80).collect() })
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                $name::new(s)
            }
        }
    };
}

text_id!(
    /// A store (branch) of the retail chain; head office uses its own store id.
    StoreId,
    "store id"
);
text_id!(
    /// A person: a sales clerk, technician, supervisor or head-office analyst.
    UserId,
    "user id"
);
text_id!(
    /// One tablet or phone. Devices are bound to one store by their token.
    DeviceId,
    "device id"
);

/// Milliseconds since the Unix epoch. The core never reads a clock; callers
/// pass the time in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Millis(pub i64);

impl Millis {
    /// Formats the time as RFC 3339 in UTC, e.g. `2026-11-23T10:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        match chrono::DateTime::from_timestamp_millis(self.0) {
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            None => format!("invalid-time({})", self.0),
        }
    }
}

/// A position in the relay's change sequence. A device stores the highest
/// sequence it has fully received, and resumes from it on reconnect.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Cursor(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_ids_reject_separators_and_empty() {
        assert!(StoreId::new("store-12").is_ok());
        assert!(StoreId::new("").is_err());
        assert!(StoreId::new("a/b").is_err());
        assert!(UserId::new("x".repeat(65)).is_err());
        let err = DeviceId::new("tab 1").unwrap_err();
        assert!(err.to_string().contains("device id"));
    }

    #[test]
    fn case_id_round_trips_through_text() {
        let id = CaseId::from_random_bytes([7; 16]);
        assert_eq!(id.to_string().parse::<CaseId>().unwrap(), id);
    }
}
