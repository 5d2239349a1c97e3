//! The device's settings: relay address, token and the identity it implies.

use crate::error::ClientError;
use aftercase_sync::access::Role;
use aftercase_sync::replica::DeviceIdentity;
use aftercase_sync::{DeviceId, StoreId, UserId};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// File name of the settings inside the data directory.
pub const CONFIG_FILE: &str = "device.json";

/// What `aftercase init` stores.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Relay base URL, e.g. `http://127.0.0.1:8080`.
    pub relay: String,
    /// The device token (a secret: the file is private to the user).
    pub token: String,
    /// User from the token.
    pub user: UserId,
    /// Role from the token.
    pub role: Role,
    /// Store from the token.
    pub store: StoreId,
    /// Device from the token.
    pub device: DeviceId,
}

#[derive(Deserialize)]
struct UnverifiedClaims {
    sub: String,
    role: String,
    store: String,
    device: String,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl DeviceConfig {
    /// Builds a config from a relay URL and a token. The token is only read
    /// here (to learn who and where we are); the relay verifies it.
    pub fn from_token(relay: &str, token: &str) -> Result<DeviceConfig, ClientError> {
        let relay = relay.trim_end_matches('/').to_string();
        if !(relay.starts_with("http://") || relay.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "relay address {relay:?} must start with http:// or https://"
            )));
        }
        let token = token.trim().to_string();
        let c: UnverifiedClaims = jsonwebtoken::dangerous::insecure_decode(&token)
            .map(|d| d.claims)
            .map_err(|_| ClientError::Config("the token is not a valid Aftercase token".into()))?;
        let bad = |e: &dyn std::fmt::Display| ClientError::Config(format!("token: {e}"));
        Ok(DeviceConfig {
            relay,
            token,
            user: UserId::new(c.sub).map_err(|e| bad(&e))?,
            role: c.role.parse().map_err(|e| bad(&e))?,
            store: StoreId::new(c.store).map_err(|e| bad(&e))?,
            device: DeviceId::new(c.device).map_err(|e| bad(&e))?,
        })
    }

    /// The identity edits are made under.
    pub fn identity(&self) -> DeviceIdentity {
        DeviceIdentity {
            user: self.user.clone(),
            role: self.role,
            store: self.store.clone(),
            device: self.device.clone(),
        }
    }

    /// Reads the config from `data_dir`.
    pub fn load(data_dir: &Path) -> Result<DeviceConfig, ClientError> {
        let path = data_dir.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ClientError::NotInitialised(data_dir.display().to_string()))
            }
            Err(e) => return Err(io(&path)(e)),
        };
        serde_json::from_str(&text)
            .map_err(|e| ClientError::Config(format!("{} is damaged: {e}", path.display())))
    }

    /// Writes the config atomically (temp file, fsync, rename), readable
    /// only by the owner because it holds the token.
    pub fn save(&self, data_dir: &Path) -> Result<(), ClientError> {
        std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        aftercase_sync::storage::perms::restrict_dir(data_dir).map_err(io(data_dir))?;
        let path = data_dir.join(CONFIG_FILE);
        let tmp = data_dir.join(format!("{CONFIG_FILE}.tmp"));
        let text =
            serde_json::to_string_pretty(self).map_err(|e| ClientError::Config(e.to_string()))?;
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp).map_err(io(&tmp))?;
            f.write_all(text.as_bytes()).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(())
    }

    /// When the device token expires (seconds since the Unix epoch), as the
    /// token says; `None` if it carries no expiry. Only read here, for the
    /// person to see: the relay verifies the token.
    pub fn token_expires_at(&self) -> Option<i64> {
        #[derive(Deserialize)]
        struct Exp {
            exp: Option<i64>,
        }
        jsonwebtoken::dangerous::insecure_decode::<Exp>(&self.token)
            .ok()
            .and_then(|d| d.claims.exp)
    }

    /// The WebSocket URL of the relay's sync endpoint.
    pub fn sync_url(&self) -> String {
        let base = if let Some(rest) = self.relay.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.relay.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.relay.clone()
        };
        format!("{base}/v1/sync")
    }
}
