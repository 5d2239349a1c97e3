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
    /// Memory the relay plans for, in MiB: a quarter goes to sled's page
    /// cache, half to loaded documents (by estimated size), the rest is left
    /// for connections.
    pub memory_mib: u64,
    /// HTTP worker threads.
    pub workers: usize,
}

impl ServeConfig {
    /// Bytes of sled page cache.
    pub fn sled_cache_bytes(&self) -> u64 {
        self.memory_mib * (1 << 20) / 4
    }

    /// Estimated bytes of loaded documents.
    pub fn doc_cache_bytes(&self) -> usize {
        usize::try_from(self.memory_mib * (1 << 20) / 2).unwrap_or(usize::MAX)
    }

    /// Where the sled database lives.
    pub fn db_dir(&self) -> PathBuf {
        self.data_dir.join("db")
    }
}
