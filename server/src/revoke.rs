//! Operator revocations of devices, users and single tokens.
//!
//! The running relay holds its sled database open exclusively, so
//! `aftercase-relay revoke` never touches it: each revocation is one small
//! JSON file under `<data-dir>/revoked/`, written to a temporary name,
//! fsynced and renamed into place, so the relay never reads half a file.
//! The relay reads the directory at startup ([`Revocations::load`]) and
//! polls it about once a second ([`watch`]), re-reading it only when its
//! [`Fingerprint`] changed.
//!
//! A device or user revocation refuses every token of that device or user
//! issued at or before the revocation (`iat <= revoked_at`), so a lost
//! tablet is cut off while a token minted afterwards for the re-enrolled
//! device works. A token revocation refuses exactly the token with that id.

use crate::auth::Verified;
use aftercase_sync::{DeviceId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Name of the directory inside the data directory.
pub const DIR: &str = "revoked";

/// How often the running relay looks for new revocation files.
pub const POLL: Duration = Duration::from_secs(1);

/// What is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Every token of this device issued at or before the revocation.
    Device(DeviceId),
    /// Every token of this user issued at or before the revocation.
    User(UserId),
    /// The one token with this id (`jti`).
    Token(String),
}

impl Target {
    fn kind(&self) -> &'static str {
        match self {
            Target::Device(_) => "device",
            Target::User(_) => "user",
            Target::Token(_) => "token",
        }
    }

    fn id(&self) -> &str {
        match self {
            Target::Device(d) => d.as_str(),
            Target::User(u) => u.as_str(),
            Target::Token(t) => t,
        }
    }
}

/// One revocation file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// What is revoked.
    pub target: Target,
    /// When, in seconds since the epoch (the relay's clock compares it with
    /// token `iat`s).
    pub revoked_at: u64,
    /// The same instant for people reading the file.
    #[serde(default)]
    pub revoked_at_utc: String,
    /// The device was reported lost (`aftercase-relay device lost`): when
    /// it connects with a token issued up to then, it is told to wipe its
    /// cases and keys rather than only refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
}

/// Writing or reading revocation files failed.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// A token id that no token could carry.
    #[error("token id must be 1-64 characters of letters, digits, '-', '_' or '.'")]
    BadTokenId,
    /// File access failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RevokeError + '_ {
    move |source| RevokeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Why a token is refused, in words for the person holding the device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Revoked {
    /// The device was revoked after this token was issued.
    #[error("device {0} was revoked by the operator; ask for a new token")]
    Device(DeviceId),
    /// The user was revoked after this token was issued.
    #[error("user {0} was revoked by the operator; ask for a new token")]
    User(UserId),
    /// This very token was revoked.
    #[error("this token was revoked by the operator; ask for a new token")]
    Token,
    /// The device was reported lost after this token was issued: it must
    /// wipe what it holds.
    #[error("device {0} was reported lost: every case and key on it is wiped; once it is found, ask for a new token")]
    Lost(DeviceId),
}

/// Records a revocation in `data_dir` (durably: the file and the directory
/// are fsynced before this returns). Safe to call while the relay runs.
pub fn write(
    data_dir: &Path,
    target: Target,
    now_secs: u64,
    lost: bool,
) -> Result<PathBuf, RevokeError> {
    if let Target::Token(t) = &target {
        let ok = !t.is_empty()
            && t.len() <= 64
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(RevokeError::BadTokenId);
        }
    }
    let dir = data_dir.join(DIR);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    aftercase_sync::storage::perms::restrict_dir(&dir).map_err(io(&dir))?;
    let utc = chrono::DateTime::from_timestamp(i64::try_from(now_secs).unwrap_or(0), 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    let rec = Revocation {
        target,
        revoked_at: now_secs,
        revoked_at_utc: utc,
        lost,
    };
    let mut raw = [0u8; 4];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
    let nonce: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    // Ids are restricted to [A-Za-z0-9._-] (checked above for token ids,
    // by the newtypes for the others), so they are safe in a file name.
    let name = format!(
        "{}-{}-{}-{nonce}.json",
        rec.target.kind(),
        rec.target.id(),
        rec.revoked_at
    );
    let path = dir.join(&name);
    let tmp = dir.join(format!(".tmp-{name}"));
    let text = serde_json::to_string_pretty(&rec).map_err(|e| RevokeError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
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
    // The rename is durable only once the directory is synced.
    #[cfg(unix)]
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir))?;
    Ok(path)
}

/// Summary of the directory: the names in it and its modification time.
/// The names matter: a revocation is written as a hidden temporary file
/// and then renamed, and a poll that falls between the two sees the same
/// count, and on a busy machine often the same coarse modification time,
/// before and after the rename; the name of the new `.json` file always
/// differs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint {
    modified: Option<SystemTime>,
    names: Vec<std::ffi::OsString>,
}

/// The fingerprint of `<data_dir>/revoked` now (empty when it is missing).
pub fn fingerprint(data_dir: &Path) -> Fingerprint {
    let dir = data_dir.join(DIR);
    let modified = std::fs::metadata(&dir).and_then(|m| m.modified()).ok();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
        .unwrap_or_default();
    names.sort();
    Fingerprint { modified, names }
}

/// Every revocation in force, indexed for checking a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    /// Latest revocation time per device.
    devices: HashMap<DeviceId, u64>,
    /// Latest revocation time per user.
    users: HashMap<UserId, u64>,
    /// Revoked token ids.
    tokens: HashSet<String>,
    /// Latest time each device was reported lost.
    lost: HashMap<DeviceId, u64>,
}

impl Revocations {
    /// Reads every revocation file under `data_dir`. Files that cannot be
    /// read or parsed are skipped with a warning naming the file (they are
    /// written atomically, so this means someone edited one by hand).
    pub fn load(data_dir: &Path) -> Result<Revocations, RevokeError> {
        let dir = data_dir.join(DIR);
        let mut out = Revocations::default();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let path = entry.path();
            let rec = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<Revocation>(&t).map_err(|e| e.to_string()));
            match rec {
                Ok(r) => out.add(r),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "skipping unreadable revocation file")
                }
            }
        }
        Ok(out)
    }

    fn add(&mut self, r: Revocation) {
        match r.target {
            Target::Device(d) => {
                if r.lost {
                    let at = self.lost.entry(d.clone()).or_insert(r.revoked_at);
                    *at = (*at).max(r.revoked_at);
                }
                let at = self.devices.entry(d).or_insert(r.revoked_at);
                *at = (*at).max(r.revoked_at);
            }
            Target::User(u) => {
                let at = self.users.entry(u).or_insert(r.revoked_at);
                *at = (*at).max(r.revoked_at);
            }
            Target::Token(t) => {
                self.tokens.insert(t);
            }
        }
    }

    /// Whether the verified token may still be used; `Err` says why not.
    pub fn check(&self, v: &Verified) -> Result<(), Revoked> {
        if !v.jti.is_empty() && self.tokens.contains(&v.jti) {
            return Err(Revoked::Token);
        }
        if let Some(at) = self.lost.get(&v.principal.device) {
            if *at >= v.iat {
                return Err(Revoked::Lost(v.principal.device.clone()));
            }
        }
        if let Some(at) = self.devices.get(&v.principal.device) {
            if *at >= v.iat {
                return Err(Revoked::Device(v.principal.device.clone()));
            }
        }
        if let Some(at) = self.users.get(&v.principal.user) {
            if *at >= v.iat {
                return Err(Revoked::User(v.principal.user.clone()));
            }
        }
        Ok(())
    }

    /// How many revocations are in force.
    pub fn len(&self) -> usize {
        self.devices.len() + self.users.len() + self.tokens.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Polls `<data_dir>/revoked` every [`POLL`] for the life of the relay and
/// publishes a new [`Revocations`] on `tx` whenever the directory changed.
/// Call once, from inside the relay's runtime.
pub fn watch(data_dir: PathBuf, tx: watch::Sender<Arc<Revocations>>) {
    actix_web::rt::spawn(async move {
        let mut seen = {
            let dir = data_dir.clone();
            actix_web::web::block(move || fingerprint(&dir))
                .await
                .unwrap_or_default()
        };
        let mut tick = tokio::time::interval(POLL);
        loop {
            tick.tick().await;
            let dir = data_dir.clone();
            let last = seen.clone();
            // Directory reads are blocking IO: off the async threads.
            let polled = actix_web::web::block(move || {
                let now = fingerprint(&dir);
                if now == last {
                    return (now, None);
                }
                let loaded = Revocations::load(&dir);
                (now, Some(loaded))
            })
            .await;
            match polled {
                Ok((_, None)) => {}
                Ok((now, Some(Ok(list)))) => {
                    seen = now;
                    tracing::info!(in_force = list.len(), "revocations reloaded");
                    tx.send_replace(Arc::new(list));
                }
                Ok((_, Some(Err(e)))) => {
                    // Keep the old fingerprint so the next tick retries.
                    tracing::error!(error = %e, "could not read revocations");
                }
                Err(e) => tracing::error!(error = %e, "revocation poll failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use aftercase_sync::access::{Principal, Role};
    use aftercase_sync::StoreId;

    fn verified(device: &str, user: &str, iat: u64, jti: &str) -> Verified {
        Verified {
            principal: Principal {
                user: UserId::new(user).unwrap(),
                role: Role::Staff,
                store: StoreId::new("S1").unwrap(),
                device: DeviceId::new(device).unwrap(),
            },
            exp: iat + 3600,
            iat,
            jti: jti.into(),
        }
    }

    #[test]
    fn a_rename_in_the_same_instant_as_the_temporary_file_is_seen() {
        // A poll between writing the hidden temporary file and renaming it
        // must not hide the rename, even when the directory's time does
        // not move (coarse clocks on a busy machine).
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".tmp-1"), b"{}").unwrap();
        let between = fingerprint(tmp.path());
        let at = std::fs::metadata(&dir).unwrap().modified().unwrap();
        std::fs::rename(dir.join(".tmp-1"), dir.join("token-1.json")).unwrap();
        std::fs::File::open(&dir).unwrap().set_modified(at).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().modified().unwrap(), at);
        assert_ne!(fingerprint(tmp.path()), between);
    }

    #[test]
    fn revocations_cut_off_older_tokens_only_and_survive_a_reload() {
        let tmp = tempfile::tempdir().unwrap();
        let before = fingerprint(tmp.path());
        write(
            tmp.path(),
            Target::Device(DeviceId::new("tab-7").unwrap()),
            1000,
            false,
        )
        .unwrap();
        write(
            tmp.path(),
            Target::User(UserId::new("bob").unwrap()),
            2000,
            false,
        )
        .unwrap();
        write(tmp.path(), Target::Token("abc123".into()), 3000, false).unwrap();
        assert!(write(tmp.path(), Target::Token(String::new()), 1, false).is_err());
        assert!(write(tmp.path(), Target::Token("../x".into()), 1, false).is_err());
        assert_ne!(fingerprint(tmp.path()), before);
        let r = Revocations::load(tmp.path()).unwrap();
        assert_eq!(r.len(), 3);
        let e = r.check(&verified("tab-7", "alice", 999, "")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "device tab-7 was revoked by the operator; ask for a new token"
        );
        assert!(r.check(&verified("tab-7", "alice", 1000, "")).is_err());
        assert!(r.check(&verified("tab-7", "alice", 1001, "")).is_ok());
        assert!(r.check(&verified("tab-8", "bob", 1500, "")).is_err());
        assert!(r.check(&verified("tab-8", "bob", 2001, "")).is_ok());
        assert_eq!(
            r.check(&verified("tab-8", "carol", 5000, "abc123")),
            Err(Revoked::Token)
        );
        assert!(r.check(&verified("tab-8", "carol", 5000, "other")).is_ok());
        // A stray temporary file or a damaged file does not hide the others.
        std::fs::write(tmp.path().join(DIR).join(".tmp-x.json"), "{").unwrap();
        std::fs::write(tmp.path().join(DIR).join("bad.json"), "{").unwrap();
        assert_eq!(Revocations::load(tmp.path()).unwrap(), r);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for e in std::fs::read_dir(tmp.path().join(DIR)).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with("device-") {
                    assert_eq!(e.metadata().unwrap().permissions().mode() & 0o777, 0o600);
                }
            }
            let m = std::fs::metadata(tmp.path().join(DIR)).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o700);
        }
    }

    #[test]
    fn a_device_reported_lost_is_told_so_for_its_older_tokens_only() {
        let tmp = tempfile::tempdir().unwrap();
        let tab = || Target::Device(DeviceId::new("tab-9").unwrap());
        write(tmp.path(), tab(), 1000, false).unwrap();
        write(tmp.path(), tab(), 2000, true).unwrap();
        let r = Revocations::load(tmp.path()).unwrap();
        // Lost counts over revoked, for tokens issued up to the report.
        assert!(matches!(
            r.check(&verified("tab-9", "alice", 500, "")),
            Err(Revoked::Lost(_))
        ));
        assert!(matches!(
            r.check(&verified("tab-9", "alice", 2000, "")),
            Err(Revoked::Lost(_))
        ));
        assert!(r.check(&verified("tab-9", "alice", 2001, "")).is_ok());
        // A plain revocation after the report does not make it lost for
        // tokens issued after the report.
        write(tmp.path(), tab(), 3000, false).unwrap();
        let r = Revocations::load(tmp.path()).unwrap();
        assert_eq!(
            r.check(&verified("tab-9", "alice", 2500, "")),
            Err(Revoked::Device(DeviceId::new("tab-9").unwrap()))
        );
    }
}
