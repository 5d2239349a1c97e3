//! Who may see and change which case, decided from relay-side metadata only.
//!
//! The relay never reads ownership from document content: a case belongs to
//! the store of the device that first uploaded it, as recorded in
//! [`CaseMeta`] at that moment.

use crate::ids::{DeviceId, Millis, StoreId, UserId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A person's role (domain.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// In-store sales staff (导购/客服).
    Staff,
    /// Repair or installation technician.
    Technician,
    /// Store supervisor (主管).
    Supervisor,
    /// Head office (总部).
    HeadOffice,
}

/// A role name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: use staff, technician, supervisor or head_office")]
pub struct UnknownRole(pub String);

impl Role {
    /// The token and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Staff => "staff",
            Role::Technician => "technician",
            Role::Supervisor => "supervisor",
            Role::HeadOffice => "head_office",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        match s {
            "staff" => Ok(Role::Staff),
            "technician" => Ok(Role::Technician),
            "supervisor" => Ok(Role::Supervisor),
            "head_office" => Ok(Role::HeadOffice),
            other => Err(UnknownRole(other.chars().take(40).collect())),
        }
    }
}

/// The authenticated party of one connection, from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The person.
    pub user: UserId,
    /// Their role.
    pub role: Role,
    /// The store their device belongs to.
    pub store: StoreId,
    /// The device.
    pub device: DeviceId,
}

/// What the relay knows about a case independently of its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseMeta {
    /// Owning store: the store of the device that first uploaded the case.
    pub store: StoreId,
    /// Case kind as first uploaded (for filtering only, never for access).
    pub kind: String,
    /// Who first uploaded it.
    pub created_by: UserId,
    /// From which device.
    pub created_device: DeviceId,
    /// Relay time of the first upload.
    pub first_received: Millis,
    /// Relay time of the latest accepted change.
    pub last_received: Millis,
    /// Relay sequence of the latest accepted change.
    pub seq: u64,
    /// The technician the case is assigned to, from the latest assignment
    /// the relay accepted from an authenticated staff member or supervisor.
    #[serde(default)]
    pub assignee: Option<UserId>,
}

/// Whether `p` may receive the case.
pub fn can_read(p: &Principal, meta: &CaseMeta) -> bool {
    match p.role {
        Role::HeadOffice => true,
        Role::Staff | Role::Supervisor => p.store == meta.store,
        // Technicians work only on what they are assigned (or reported).
        Role::Technician => {
            p.store == meta.store
                && (meta.assignee.as_ref() == Some(&p.user) || meta.created_by == p.user)
        }
    }
}

/// Why `p` may not see a case, in words for the person.
pub fn not_visible(p: &Principal) -> &'static str {
    match p.role {
        Role::Technician => "this case is not assigned to you",
        _ => "this case belongs to another store",
    }
}

/// Whether `p` may change the case.
pub fn can_write(p: &Principal, meta: &CaseMeta) -> bool {
    can_read(p, meta)
}

/// Whether `p` may list the cases of `store` through the read API.
pub fn can_list_store(p: &Principal, store: &StoreId) -> bool {
    p.role == Role::HeadOffice || &p.store == store
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, store: &str) -> Principal {
        Principal {
            user: UserId::new("u").unwrap(),
            role,
            store: StoreId::new(store).unwrap(),
            device: DeviceId::new("d").unwrap(),
        }
    }

    #[test]
    fn store_scoping_follows_relay_metadata() {
        let meta = CaseMeta {
            store: StoreId::new("S1").unwrap(),
            kind: "repair".into(),
            created_by: UserId::new("clerk").unwrap(),
            created_device: DeviceId::new("d").unwrap(),
            first_received: Millis(0),
            last_received: Millis(0),
            seq: 1,
            assignee: None,
        };
        let table = [
            (Role::Staff, "S1", true),
            (Role::Staff, "S2", false),
            (Role::Supervisor, "S2", false),
            (Role::Technician, "S1", false),
            (Role::HeadOffice, "HQ", true),
        ];
        for (role, store, expect) in table {
            let p = principal(role, store);
            assert_eq!(can_read(&p, &meta), expect, "{role} of {store}");
            assert_eq!(can_write(&p, &meta), expect, "{role} of {store}");
        }
        // Technicians: the case assigned to them, or one they reported.
        let assigned = CaseMeta {
            assignee: Some(UserId::new("u").unwrap()),
            ..meta.clone()
        };
        assert!(can_read(&principal(Role::Technician, "S1"), &assigned));
        assert!(!can_read(&principal(Role::Technician, "S2"), &assigned));
        let reported = CaseMeta {
            created_by: UserId::new("u").unwrap(),
            ..meta.clone()
        };
        assert!(can_read(&principal(Role::Technician, "S1"), &reported));
        assert!(!can_list_store(&principal(Role::Staff, "S2"), &meta.store));
        assert!(can_list_store(
            &principal(Role::HeadOffice, "HQ"),
            &meta.store
        ));
    }
}
