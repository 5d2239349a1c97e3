//! Bounds on what connections may hold: live sync connections per device
//! and per user, and a relay-wide budget of bytes waiting to be sent.

use aftercase_sync::access::Principal;
use aftercase_sync::{DeviceId, StoreId, UserId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// Counts live sync connections per device and per user.
#[derive(Debug)]
pub struct ConnLimits {
    max_device: usize,
    max_user: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    /// Device names are chosen per store ("tab-1" in every store), so a
    /// device is its store and its name.
    devices: HashMap<(StoreId, DeviceId), usize>,
    users: HashMap<UserId, usize>,
}

/// A connection refused because its device or user holds too many.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooMany {
    /// The device is at its limit.
    #[error("device {device} already has {max} open sync connections, the most allowed; close one or try again later")]
    Device {
        /// The device.
        device: DeviceId,
        /// The limit.
        max: usize,
    },
    /// The user is at their limit.
    #[error("user {user} already has {max} open sync connections, the most allowed; close one or try again later")]
    User {
        /// The user.
        user: UserId,
        /// The limit.
        max: usize,
    },
}

/// One counted connection; dropping it frees the place.
#[derive(Debug)]
pub struct ConnSlot {
    limits: Arc<ConnLimits>,
    device: (StoreId, DeviceId),
    user: UserId,
}

impl ConnLimits {
    /// Limits of `max_device` connections per device and `max_user` per user.
    pub fn new(max_device: usize, max_user: usize) -> ConnLimits {
        ConnLimits {
            max_device,
            max_user,
            counts: Mutex::new(Counts::default()),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Counts are updated in one step each, so a panic elsewhere cannot
        // leave them half-changed.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a new connection of `p`, or says which limit is
    /// reached. Call before upgrading; keep the slot as long as the
    /// connection lives.
    pub fn open(self: &Arc<Self>, p: &Principal) -> Result<ConnSlot, TooMany> {
        let mut c = self.counts();
        let device = (p.store.clone(), p.device.clone());
        let d = c.devices.get(&device).copied().unwrap_or(0);
        if d >= self.max_device {
            return Err(TooMany::Device {
                device: p.device.clone(),
                max: self.max_device,
            });
        }
        let u = c.users.get(&p.user).copied().unwrap_or(0);
        if u >= self.max_user {
            return Err(TooMany::User {
                user: p.user.clone(),
                max: self.max_user,
            });
        }
        c.devices.insert(device.clone(), d + 1);
        c.users.insert(p.user.clone(), u + 1);
        Ok(ConnSlot {
            limits: self.clone(),
            device,
            user: p.user.clone(),
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut c = self.limits.counts();
        // Entries are removed at zero so the maps only hold live principals.
        if let Some(n) = c.devices.get_mut(&self.device) {
            *n -= 1;
            if *n == 0 {
                c.devices.remove(&self.device);
            }
        }
        if let Some(n) = c.users.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                c.users.remove(&self.user);
            }
        }
    }
}

/// Bytes of encoded frames allowed to wait for their sockets across all
/// connections. A connection reserves the size of what it is about to
/// queue and releases it once its frames are handed to the socket, so a
/// device that stops reading holds at most its share, not unbounded memory.
#[derive(Debug, Clone)]
pub struct SendBudget {
    permits: Arc<Semaphore>,
    total: usize,
}

impl SendBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> SendBudget {
        let total = bytes.clamp(1, Semaphore::MAX_PERMITS);
        SendBudget {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Waits until `bytes` may be queued. An output larger than the whole
    /// budget reserves all of it, so it still goes out, alone. Fails only if
    /// the budget was closed, which the relay never does.
    pub async fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, AcquireError> {
        let n = bytes.min(self.total).min(u32::MAX as usize) as u32;
        self.permits.clone().acquire_many_owned(n).await
    }

    /// Bytes currently free.
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aftercase_sync::access::Role;
    use aftercase_sync::StoreId;

    fn p(user: &str, device: &str) -> Principal {
        Principal {
            user: UserId::new(user).unwrap(),
            role: Role::Staff,
            store: StoreId::new("S1").unwrap(),
            device: DeviceId::new(device).unwrap(),
        }
    }

    #[test]
    fn limits_count_per_device_and_user_and_free_on_drop() {
        let l = Arc::new(ConnLimits::new(2, 3));
        let a1 = l.open(&p("alice", "tab-a")).unwrap();
        let _a2 = l.open(&p("alice", "tab-a")).unwrap();
        assert!(matches!(
            l.open(&p("alice", "tab-a")),
            Err(TooMany::Device { .. })
        ));
        let _b = l.open(&p("alice", "tab-b")).unwrap();
        let e = l.open(&p("alice", "tab-c")).unwrap_err();
        assert!(e.to_string().contains("user alice already has 3"), "{e}");
        drop(a1);
        let _a3 = l.open(&p("alice", "tab-a")).unwrap();
        assert!(l.open(&p("bob", "tab-z")).is_ok());
        // The same device name in another store is another device.
        let mut other = p("carol", "tab-a");
        other.store = StoreId::new("S2").unwrap();
        let _c1 = l.open(&other).unwrap();
        let _c2 = l.open(&other).unwrap();
        assert!(matches!(l.open(&other), Err(TooMany::Device { .. })));
    }

    #[tokio::test]
    async fn budget_is_shared_and_returned() {
        let b = SendBudget::new(100);
        let p1 = b.reserve(60).await.unwrap();
        assert_eq!(b.available(), 40);
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), b.reserve(60));
        assert!(waiting.await.is_err(), "over budget waits");
        drop(p1);
        let big = b.reserve(1000).await.unwrap();
        assert_eq!(b.available(), 0, "larger than the budget takes all of it");
        drop(big);
        assert_eq!(b.available(), 100);
    }
}
