//! The JWT signing secret: from `AFTERCASE_JWT_SECRET`, or a random one kept
//! in the data directory so `aftercase-relay token` can sign while the relay
//! runs.

use rand::RngCore;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Environment variable that sets the secret.
pub const ENV: &str = "AFTERCASE_JWT_SECRET";
/// File name of the generated secret inside the data directory.
pub const FILE: &str = "jwt-secret";
/// Shortest secret accepted, in bytes (HS256 wants at least its hash size).
pub const MIN_LEN: usize = 32;

/// Where the secret came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The environment variable.
    Env,
    /// An existing file.
    File(PathBuf),
    /// A file created just now.
    Created(PathBuf),
}

/// Problems finding or making the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Too short to be safe.
    #[error("{ENV} must be at least {MIN_LEN} bytes long")]
    TooShort,
    /// The file could not be read or written.
    #[error("signing secret file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Returns the configured secret (the environment's, else the one in
/// `data_dir`), or `None` when there is none yet.
pub fn load(data_dir: &Path) -> Result<Option<(Vec<u8>, Source)>, SecretError> {
    if let Ok(s) = std::env::var(ENV) {
        if s.len() < MIN_LEN {
            return Err(SecretError::TooShort);
        }
        return Ok(Some((s.into_bytes(), Source::Env)));
    }
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= MIN_LEN => {
            Ok(Some((s.trim().as_bytes().to_vec(), Source::File(path))))
        }
        Ok(_) => Err(SecretError::TooShort),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SecretError::Io { path, source }),
    }
}

/// Returns the secret, creating a random one in `data_dir` if none is configured.
pub fn load_or_create(data_dir: &Path) -> Result<(Vec<u8>, Source), SecretError> {
    if let Some(found) = load(data_dir)? {
        return Ok(found);
    }
    let path = data_dir.join(FILE);
    let io = |source| SecretError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(&path) {
        Ok(mut f) => {
            f.write_all(hex.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok((hex.into_bytes(), Source::Created(path)))
        }
        // Another process (the relay or a `token` call) created it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(data_dir),
        Err(e) => Err(io(e)),
    }
}
