//! The five kinds of after-sales case.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What kind of after-sales case this is (domain.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CaseKind {
    /// 维修: a repair booking.
    Repair,
    /// 安装: an installation visit.
    Installation,
    /// 退换货: a return or exchange.
    ReturnExchange,
    /// 损坏: a damage claim.
    DamageClaim,
    /// 投诉: a customer complaint.
    Complaint,
}

/// A kind name that is not one of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown case kind {0:?}: use repair, installation, return_exchange, damage_claim or complaint"
)]
pub struct UnknownKind(pub String);

impl CaseKind {
    /// All kinds, in the order the handbook lists them.
    pub const ALL: [CaseKind; 5] = [
        CaseKind::Repair,
        CaseKind::Installation,
        CaseKind::ReturnExchange,
        CaseKind::DamageClaim,
        CaseKind::Complaint,
    ];

    /// The wire and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseKind::Repair => "repair",
            CaseKind::Installation => "installation",
            CaseKind::ReturnExchange => "return_exchange",
            CaseKind::DamageClaim => "damage_claim",
            CaseKind::Complaint => "complaint",
        }
    }

    /// The state a new case of this kind starts in (domain.md §1).
    pub fn initial_status(self) -> &'static str {
        match self {
            CaseKind::Repair | CaseKind::DamageClaim => "reported",
            CaseKind::Installation | CaseKind::ReturnExchange => "requested",
            CaseKind::Complaint => "registered",
        }
    }
}

impl fmt::Display for CaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CaseKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, UnknownKind> {
        CaseKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.chars().take(40).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_named() {
        for k in CaseKind::ALL {
            assert_eq!(k.as_str().parse::<CaseKind>().unwrap(), k);
        }
        let e = "refund".parse::<CaseKind>().unwrap_err();
        assert!(e.to_string().contains("refund") && e.to_string().contains("return_exchange"));
    }
}
