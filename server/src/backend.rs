//! Which store the relay keeps its cases in: sled in its data directory
//! (the default: one binary, nothing else installed) or a PostgreSQL
//! database named by `--database postgres://...`.
//!
//! The relay's core is generic over [`Storage`]; the server picks the
//! backend at start and holds it as [`RelayStorage`], one trait object,
//! so every handler, connection and command is the same code on both.

use crate::pg_storage::PostgresStorage;
use aftercase_sync::storage::{SledStorage, Storage, StorageError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variable that may hold `--database`'s URL.
pub const ENV: &str = "AFTERCASE_DATABASE_URL";

/// The relay's storage, whichever backend it is.
pub type RelayStorage = Arc<dyn Storage>;

/// Where the relay's cases live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A sled database in this directory.
    Sled(PathBuf),
    /// A PostgreSQL database at this connection URL.
    Postgres(String),
}

impl Database {
    /// The database `--database` names (`postgres://` or `postgresql://`
    /// URLs), else sled under `<data_dir>/db`.
    pub fn choose(url: Option<&str>, data_dir: &Path) -> Result<Database, StorageError> {
        match url {
            None => Ok(Database::Sled(data_dir.join("db"))),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(Database::Postgres(u.to_string()))
            }
            Some(_) => Err(StorageError::Backend {
                op: "open",
                message: "--database must be a postgres:// or postgresql:// URL \
                          (leave it out to use sled in the data directory)"
                    .into(),
            }),
        }
    }

    /// Says where the data is without any password the URL holds (for
    /// logs and messages).
    pub fn describe(&self) -> String {
        match self {
            Database::Sled(dir) => format!("sled at {}", dir.display()),
            Database::Postgres(url) => format!("PostgreSQL at {}", without_password(url)),
        }
    }

    /// Opens the store. sled is this process's alone (it locks its
    /// directory). PostgreSQL is claimed with an advisory lock, shared by
    /// relays (several serve one database) or held `exclusive`ly (by
    /// `reindex`, which no relay may run beside). For sled,
    /// `sled_cache_bytes` sizes its page cache.
    /// Blocks (PostgreSQL's client runs its own runtime): call on a
    /// blocking thread, not on an async worker.
    pub fn open(
        &self,
        sled_cache_bytes: u64,
        exclusive: bool,
    ) -> Result<RelayStorage, StorageError> {
        Ok(match self {
            Database::Sled(dir) => Arc::new(SledStorage::open_with_cache(dir, sled_cache_bytes)?),
            Database::Postgres(url) => {
                let pg = PostgresStorage::open(url)?;
                pg.claim(exclusive)?;
                Arc::new(pg)
            }
        })
    }
}

/// `url` with the password between `user:` and `@` replaced by `***`
/// and any query string (which may hold `password=`) left out.
fn without_password(url: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_a_message() {
        let db = Database::choose(
            Some("postgres://relay:s3cret@db.local:5432/chain"),
            Path::new("x"),
        )
        .expect("a postgres url");
        let shown = db.describe();
        let query = Database::Postgres("postgres://relay@h/c?password=s3cret".into()).describe();
        assert!(!query.contains("s3cret"), "{query}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(
            shown,
            "PostgreSQL at postgres://relay:***@db.local:5432/chain"
        );
        assert_eq!(
            without_password("postgresql://relay@localhost/chain"),
            "postgresql://relay@localhost/chain"
        );
    }

    #[test]
    fn the_default_is_sled_in_the_data_directory_and_other_urls_are_refused() {
        assert_eq!(
            Database::choose(None, Path::new("/d")).expect("default"),
            Database::Sled(PathBuf::from("/d/db"))
        );
        let err = Database::choose(Some("mysql://x"), Path::new("/d")).expect_err("refused");
        assert!(err.to_string().contains("postgres://"), "{err}");
    }
}
