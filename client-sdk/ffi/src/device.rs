//! The device object apps hold.

use crate::error::{invalid, AftercaseError};
use crate::types::{CaseSummary, DeviceInfo, SyncObserver, SyncReport, SyncStatus};
use aftercase_client::{Device, LiveSync};
use aftercase_sync::case::CaseKind;
use aftercase_sync::CaseId;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// A set-up device: its cases on disk and its sync with the relay. One per
/// data directory (a second open of the same directory fails while this
/// one lives). Methods block; call them off the UI thread.
#[derive(uniffi::Object)]
pub struct AftercaseDevice {
    device: Device,
    live: Mutex<Option<LiveSync>>,
}

impl AftercaseDevice {
    fn live(&self) -> MutexGuard<'_, Option<LiveSync>> {
        // The guarded value is only a handle: a panic elsewhere cannot
        // leave it half-changed.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A case by id, or by its case number as people read it.
    fn case_id(&self, case: &str) -> Result<CaseId, AftercaseError> {
        if let Ok(id) = case.parse::<CaseId>() {
            return Ok(id);
        }
        let found = self
            .device
            .cases()?
            .into_iter()
            .find(|v| v.case_no.as_deref() == Some(case));
        match found {
            Some(v) => v.id.parse().map_err(|e| invalid("case id", e)),
            None => Err(AftercaseError::Local {
                code: "unknown_case".into(),
                reason: format!("no case {case} on this device (sync first)"),
            }),
        }
    }

    fn runtime() -> Result<tokio::runtime::Runtime, AftercaseError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| AftercaseError::Local {
                code: "io".into(),
                reason: e.to_string(),
            })
    }
}

#[uniffi::export]
impl AftercaseDevice {
    /// Sets the device up (relay address such as `https://relay.example:8080`
    /// and the token from `aftercase-relay token`) and opens it. Refuses a
    /// token of another store or device when the directory holds cases.
    /// `app_version` (e.g. `"shopapp 4.2.1"`) is reported to head office.
    #[uniffi::constructor]
    pub fn init(
        data_dir: String,
        relay_url: String,
        token: String,
        app_version: Option<String>,
    ) -> Result<Arc<Self>, AftercaseError> {
        Device::init(Path::new(&data_dir), &relay_url, &token)?;
        Self::open(data_dir, app_version)
    }

    /// Opens a device set up before with [`AftercaseDevice::init`].
    #[uniffi::constructor]
    pub fn open(
        data_dir: String,
        app_version: Option<String>,
    ) -> Result<Arc<Self>, AftercaseError> {
        let mut device = Device::open(Path::new(&data_dir))?;
        if let Some(app) = app_version {
            device = device.with_app_version(&app)?;
        }
        Ok(Arc::new(AftercaseDevice {
            device,
            live: Mutex::new(None),
        }))
    }

    /// Who this device is and which relay it syncs with.
    pub fn info(&self) -> DeviceInfo {
        let c = self.device.config();
        DeviceInfo {
            user: c.user.to_string(),
            role: c.role.to_string(),
            store: c.store.to_string(),
            device: c.device.to_string(),
            relay: c.relay.clone(),
        }
    }

    /// Opens a case (works offline); returns its id once it is durable on
    /// this device. `kind`: `repair`, `installation`, `return_exchange`,
    /// `damage_claim` or `complaint`.
    pub fn create_case(
        &self,
        kind: String,
        customer_name: String,
        customer_phone: String,
        sku: Option<String>,
        description: Option<String>,
    ) -> Result<String, AftercaseError> {
        let kind: CaseKind = kind.parse().map_err(|e| invalid("kind", e))?;
        let id =
            self.device
                .create_case(kind, &customer_name, &customer_phone, sku, description)?;
        Ok(id.to_string())
    }

    /// Adds a note to a case's timeline (by id or case number).
    pub fn add_note(&self, case: String, text: String) -> Result<(), AftercaseError> {
        let id = self.case_id(&case)?;
        Ok(self.device.add_note(id, &text)?)
    }

    /// Moves a case to `to` (one of its `allowed_transitions`), with an
    /// optional reason. Returns the id of a follow-up case the move opened,
    /// if any.
    pub fn transition(
        &self,
        case: String,
        to: String,
        reason: Option<String>,
    ) -> Result<Option<String>, AftercaseError> {
        let id = self.case_id(&case)?;
        let follow_up = self.device.transition(id, &to, reason.as_deref())?;
        Ok(follow_up.map(|c| c.to_string()))
    }

    /// The whole case as JSON (the same document `aftercase case show
    /// --json` prints), or `None` if this device does not hold it.
    pub fn case_json(&self, case: String) -> Result<Option<String>, AftercaseError> {
        let id = match self.case_id(&case) {
            Ok(id) => id,
            Err(AftercaseError::Local { code, .. }) if code == "unknown_case" => return Ok(None),
            Err(e) => return Err(e),
        };
        match self.device.case(id)? {
            Some(v) => serde_json::to_string(&v)
                .map(Some)
                .map_err(|e| invalid("case", e)),
            None => Ok(None),
        }
    }

    /// Every case on this device, oldest first.
    pub fn list_cases(&self) -> Result<Vec<CaseSummary>, AftercaseError> {
        Ok(self
            .device
            .cases()?
            .into_iter()
            .map(CaseSummary::from)
            .collect())
    }

    /// Pending changes, refusals and the last sync.
    pub fn status(&self) -> Result<SyncStatus, AftercaseError> {
        Ok(self.device.status()?.into())
    }

    /// Sends this device's changes and receives everyone else's; returns
    /// when nothing is pending. Fails with `Refused` (and the relay's code)
    /// if the relay refused a case; the other cases synced.
    pub fn sync_once(&self) -> Result<SyncReport, AftercaseError> {
        let rt = Self::runtime()?;
        Ok(rt.block_on(self.device.sync_once(|_| {}))?.into())
    }

    /// Starts a live sync on a thread of its own: local edits are sent at
    /// once, other devices' changes arrive as they happen, and the
    /// connection is re-established after a drop. Events go to `observer`
    /// until [`AftercaseDevice::stop_live`] or a token the relay will not
    /// take (the last event is `Stopped`).
    pub fn start_live(&self, observer: Arc<dyn SyncObserver>) -> Result<(), AftercaseError> {
        let mut live = self.live();
        if live.as_ref().is_some_and(LiveSync::is_running) {
            return Err(AftercaseError::AlreadyLive);
        }
        let handle = self
            .device
            .start_live(move |e| observer.on_event(e.into()))
            .map_err(|e| AftercaseError::Local {
                code: "io".into(),
                reason: e.to_string(),
            })?;
        *live = Some(handle);
        Ok(())
    }

    /// Stops the live sync (if any) and waits until it has; the observer's
    /// last event is `Stopped`.
    pub fn stop_live(&self) {
        let handle = self.live().take();
        if let Some(mut h) = handle {
            h.stop();
        }
    }

    /// Whether a live sync is running.
    pub fn is_live(&self) -> bool {
        self.live().as_ref().is_some_and(LiveSync::is_running)
    }
}
