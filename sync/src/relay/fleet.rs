//! The fleet: one record per device, so head office sees a tablet that has
//! not synced for two days before a customer complains.
//!
//! A device reports its app version and unsynced work in its
//! [`Frame::Hello`](crate::protocol::Frame::Hello) and again in a
//! [`Frame::Report`](crate::protocol::Frame::Report) when a sync round
//! changed it. The relay files each report under the connection's
//! authenticated principal (the report names no device), adds what only it
//! knows (when it saw and synced the device, on its own clock), and writes
//! the record in a batch of its own, apart from the change commit. Head
//! office reads the records with [`devices`] straight from storage, without
//! the relay's lock.
//!
//! Records are JSON (like the read model), so a field added later is read
//! from older records with its default. They are applied but not flushed
//! themselves: the next group flush covers them, and a record lost to a
//! crash is written again at the device's next hello.

use super::{corrupt, keys, RelaySession};
use crate::access::{Principal, Role};
use crate::ids::{DeviceId, Millis, StoreId, UserId};
use crate::protocol::{Unsynced, MAX_APP_VERSION_CHARS};
use crate::storage::{Batch, Storage, StorageError};
use serde::{Deserialize, Serialize};

/// An accepted upload refreshes `last_sync` at most this often per
/// connection (milliseconds): a device uploading thousands of cases must
/// not pay a record write for each, and head office looks for gaps of
/// days, not seconds.
const SYNC_NOTE_EVERY_MS: i64 = 60_000;

/// What the relay knows about one device. Times marked "relay time" are
/// milliseconds since the Unix epoch on the relay's clock; the device's
/// clock is never trusted for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The device's store, from its token.
    pub store: StoreId,
    /// The device, from its token (names repeat across stores: a device is
    /// its store and name).
    pub device: DeviceId,
    /// The person signed in on its latest hello, from the token.
    pub user: UserId,
    /// Their role, from the token.
    pub role: Role,
    /// What the device said it runs in its latest hello (at most
    /// [`MAX_APP_VERSION_CHARS`] characters, no control characters).
    pub app_version: String,
    /// Relay time of the device's first hello.
    pub first_seen: Millis,
    /// Relay time the relay last heard from the device: a hello, a report
    /// or an accepted upload (uploads refresh it at most once a minute).
    pub last_seen: Millis,
    /// Relay time the device last synced: its catch-up after a hello was
    /// fully announced (every change the relay held durably that the
    /// device may see was offered to it), or an upload of it was accepted
    /// (at most once a minute). `None` until that first happens.
    pub last_sync: Option<Millis>,
    /// Cases on the device holding changes the relay has not accepted, as
    /// of `reported_at` (see [`Unsynced::pending`]).
    pub pending: u32,
    /// Age in seconds, on the device's clock, of the oldest of those
    /// changes when the device reported it; at relay time `t` it is about
    /// `oldest_unsynced_secs + (t - reported_at) / 1000`.
    pub oldest_unsynced_secs: Option<u64>,
    /// Relay time the relay received `pending` and `oldest_unsynced_secs`
    /// (a hello or a report).
    pub reported_at: Millis,
}

impl DeviceRecord {
    /// Whether the device last reported work the relay has not accepted.
    pub fn has_unsynced_work(&self) -> bool {
        self.pending > 0
    }
}

/// The devices the relay has records of, of one store or of all, ordered by
/// store then device. Reads storage only, so a caller need not hold the
/// relay.
pub fn devices<S: Storage>(
    storage: &S,
    store: Option<&StoreId>,
) -> Result<Vec<DeviceRecord>, StorageError> {
    let prefix = match store {
        Some(s) => keys::device_prefix(s),
        None => keys::DEVICE.to_vec(),
    };
    storage
        .scan_prefix(&prefix)?
        .iter()
        .map(|(_, v)| decode(v))
        .collect()
}

/// How many devices (of one store or of all) last reported work the relay
/// has not accepted.
pub fn devices_with_unsynced_work<S: Storage>(
    storage: &S,
    store: Option<&StoreId>,
) -> Result<usize, StorageError> {
    Ok(devices(storage, store)?
        .iter()
        .filter(|d| d.has_unsynced_work())
        .count())
}

/// The record of one device.
pub fn device<S: Storage>(
    storage: &S,
    store: &StoreId,
    device: &DeviceId,
) -> Result<Option<DeviceRecord>, StorageError> {
    storage
        .get(&keys::device(store, device))?
        .map(|v| decode(&v))
        .transpose()
}

/// Why a device's app version is not kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppVersionError {
    /// A control character (a newline, an escape...) would forge lines or
    /// colours wherever the version is shown or logged.
    #[error("the app version in the hello holds a control character (U+{0:04X}); fix the app's version string or update the app")]
    Control(u32),
}

/// The app version as the relay keeps it: clipped to
/// [`MAX_APP_VERSION_CHARS`] characters, refused if it holds a control
/// character (checked over the whole text, clipped part included).
pub fn check_app_version(v: &str) -> Result<String, AppVersionError> {
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(AppVersionError::Control(u32::from(c)));
    }
    Ok(v.chars().take(MAX_APP_VERSION_CHARS).collect())
}

fn decode(v: &[u8]) -> Result<DeviceRecord, StorageError> {
    serde_json::from_slice(v).map_err(|e| corrupt("device record", e))
}

fn put<S: Storage>(storage: &S, r: &DeviceRecord) -> Result<(), StorageError> {
    let mut b = Batch::new();
    b.put(
        keys::device(&r.store, &r.device),
        serde_json::to_vec(r).map_err(|e| corrupt("device record", e))?,
    );
    storage.apply(b)
}

fn stored<S: Storage>(storage: &S, p: &Principal) -> Result<Option<DeviceRecord>, StorageError> {
    device(storage, &p.store, &p.device)
}

/// Records a hello the relay has answered: the device's identity from the
/// connection's principal, its report, and (if the catch-up was fully
/// announced) that it synced now. `app_version` has passed
/// [`check_app_version`].
pub(super) fn on_hello<S: Storage>(
    storage: &S,
    s: &mut RelaySession,
    app_version: String,
    unsynced: Unsynced,
    now: Millis,
) -> Result<(), StorageError> {
    let p = &s.principal;
    let before = stored(storage, p)?;
    let synced = s.caught_up.then_some(now);
    let record = DeviceRecord {
        store: p.store.clone(),
        device: p.device.clone(),
        user: p.user.clone(),
        role: p.role,
        app_version,
        first_seen: before.as_ref().map_or(now, |b| b.first_seen),
        last_seen: now,
        last_sync: synced.or_else(|| before.and_then(|b| b.last_sync)),
        pending: unsynced.pending,
        oldest_unsynced_secs: unsynced.oldest_unsynced_secs,
        reported_at: now,
    };
    put(storage, &record)?;
    s.sync_noted = synced;
    tracing::info!(device = %p.device, store = %p.store, pending = unsynced.pending, "device hello");
    Ok(())
}

/// Records a report of the device's unsynced work.
pub(super) fn on_report<S: Storage>(
    storage: &S,
    s: &RelaySession,
    unsynced: Unsynced,
    now: Millis,
) -> Result<(), StorageError> {
    let p = &s.principal;
    // The hello wrote the record; one missing (storage lost it in a crash)
    // waits for the next hello, which carries the version too.
    let Some(mut record) = stored(storage, p)? else {
        return Ok(());
    };
    record.pending = unsynced.pending;
    record.oldest_unsynced_secs = unsynced.oldest_unsynced_secs;
    record.reported_at = now;
    record.last_seen = record.last_seen.max(now);
    put(storage, &record)?;
    tracing::info!(device = %p.device, store = %p.store, pending = unsynced.pending, "device report");
    Ok(())
}

/// Notes an accepted upload as a sync, at most once a minute per
/// connection. A failure is logged, not returned: the upload itself is
/// already stored and must still be acknowledged.
pub(super) fn on_upload<S: Storage>(storage: &S, s: &mut RelaySession, now: Millis) {
    if s.sync_noted
        .is_some_and(|t| now.0.saturating_sub(t.0) < SYNC_NOTE_EVERY_MS)
    {
        return;
    }
    let noted = stored(storage, &s.principal).and_then(|r| match r {
        Some(mut record) => {
            record.last_sync = Some(record.last_sync.map_or(now, |t| t.max(now)));
            record.last_seen = record.last_seen.max(now);
            put(storage, &record)
        }
        None => Ok(()),
    });
    match noted {
        Ok(()) => s.sync_noted = Some(now),
        Err(e) => {
            tracing::warn!(device = %s.principal.device, error = %e, "could not note the sync in the device record")
        }
    }
}
