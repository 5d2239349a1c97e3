//! Why the relay refused an upload or a request, as a stable code an app can
//! translate plus words for the person in front of the tablet.

use std::fmt;
use std::str::FromStr;

/// The kind of a refusal. The string form is part of the wire protocol:
/// never rename one; add new codes instead (old devices show the words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalCode {
    /// The case does not exist or is not this connection's to see.
    NotFound,
    /// The connection's role may not do this.
    Forbidden,
    /// A key the case document does not have.
    UnknownKey,
    /// An edit or deletion of something already recorded.
    AppendOnly,
    /// A change of something fixed when the case was opened.
    FixedField,
    /// A value of the wrong type, format or range.
    InvalidValue,
    /// An entry or new case claims someone other than the connection.
    Identity,
    /// A move the case's workflow does not allow.
    Workflow,
    /// Money beyond the role's authority, or a paying step without an
    /// accepted offer.
    Authority,
    /// A return or exchange outside its window, or without the facts to
    /// judge it.
    Window,
    /// A contact outside the allowed hours or over the daily limit. No
    /// longer sent: a call that happened is recorded and flagged instead
    /// (`case/view.rs`); kept so that the code stays reserved.
    ContactRules,
    /// A change or case over the size limits.
    TooLarge,
    /// Too many entries in a case.
    TooMany,
    /// Bytes that are not what the protocol expects.
    Malformed,
    /// The token or device was revoked (the relay answers this in HTTP and
    /// close reasons; reserved here so the name stays the same everywhere).
    Revoked,
    /// The relay's stored copy of the case is damaged: it is quarantined
    /// until restored from a backup. The store's other cases go on.
    Unavailable,
}

impl RefusalCode {
    /// Every code, for tests and documentation.
    pub const ALL: [RefusalCode; 16] = [
        RefusalCode::NotFound,
        RefusalCode::Forbidden,
        RefusalCode::UnknownKey,
        RefusalCode::AppendOnly,
        RefusalCode::FixedField,
        RefusalCode::InvalidValue,
        RefusalCode::Identity,
        RefusalCode::Workflow,
        RefusalCode::Authority,
        RefusalCode::Window,
        RefusalCode::ContactRules,
        RefusalCode::TooLarge,
        RefusalCode::TooMany,
        RefusalCode::Malformed,
        RefusalCode::Revoked,
        RefusalCode::Unavailable,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::NotFound => "not_found",
            RefusalCode::Forbidden => "forbidden",
            RefusalCode::UnknownKey => "unknown_key",
            RefusalCode::AppendOnly => "append_only",
            RefusalCode::FixedField => "fixed_field",
            RefusalCode::InvalidValue => "invalid_value",
            RefusalCode::Identity => "identity",
            RefusalCode::Workflow => "workflow",
            RefusalCode::Authority => "authority",
            RefusalCode::Window => "window",
            RefusalCode::ContactRules => "contact_rules",
            RefusalCode::TooLarge => "too_large",
            RefusalCode::TooMany => "too_many",
            RefusalCode::Malformed => "malformed",
            RefusalCode::Revoked => "revoked",
            RefusalCode::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RefusalCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RefusalCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown refusal code {:?}", clip(s, 40)))
    }
}

/// A refusal: the code and the words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} [{code}]")]
pub struct Refusal {
    /// What kind of refusal.
    pub code: RefusalCode,
    /// In words, naming the field or entry concerned.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// At most `max` characters of `s` with control characters escaped, for
/// echoing something a peer sent without echoing all of it.
pub fn clip(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for c in RefusalCode::ALL {
            assert!(seen.insert(c.as_str()));
            assert_eq!(c.as_str().parse::<RefusalCode>(), Ok(c));
        }
        assert!("nope".parse::<RefusalCode>().is_err());
    }

    #[test]
    fn clip_bounds_and_escapes() {
        let long = "x".repeat(1000);
        assert_eq!(clip(&long, 10).chars().count(), 11);
        assert_eq!(clip("a\nb", 10), "a\\nb");
        assert_eq!(clip("short", 10), "short");
    }
}
