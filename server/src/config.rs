//! Relay configuration, checked into typed values before anything starts.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

/// Everything `aftercase-relay serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on (port 0 picks a free port, printed at start).
    pub listen: SocketAddr,
    /// Directory holding the sled database and the signing secret.
    pub data_dir: PathBuf,
    /// Most documents kept loaded at once; idle ones are evicted.
    pub cache_docs: NonZeroUsize,
    /// HTTP worker threads.
    pub workers: usize,
}

impl ServeConfig {
    /// Where the sled database lives.
    pub fn db_dir(&self) -> PathBuf {
        self.data_dir.join("db")
    }
}
