//! Relay configuration, checked into typed values before anything starts.

use crate::backend::Database;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `aftercase-relay serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on (port 0 picks a free port, printed at start).
    pub listen: SocketAddr,
    /// Directory holding the signing secret, revocations, evidence files
    /// and (unless `database` says otherwise) the sled database.
    pub data_dir: PathBuf,
    /// Where cases are stored.
    pub database: Database,
    /// Most documents kept loaded at once; idle ones are evicted.
    pub cache_docs: NonZeroUsize,
    /// Memory the relay plans for, in MiB: a quarter goes to sled's page
    /// cache, half to loaded documents (by estimated size), the rest is left
    /// for connections.
    pub memory_mib: u64,
    /// HTTP worker threads.
    pub workers: usize,
    /// Most live sync connections one device may hold; more are refused
    /// with 429 before the upgrade.
    pub max_device_connections: usize,
    /// Most live sync connections one user may hold across devices.
    pub max_user_connections: usize,
    /// How long a frame may wait to be handed to a connection's socket (or
    /// for send budget) before the relay gives up on that connection.
    pub write_timeout: Duration,
    /// Bytes of encoded frames that may wait to be sent, across every
    /// connection, in MiB.
    pub send_budget_mib: u64,
    /// The upstream relay this one is the store relay of: its base URL
    /// and this relay's token there.
    pub upstream: Option<(String, String)>,
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

    /// Bytes of recently accepted changes kept for pushes: a thirty-second
    /// of the plan (8 MiB at the default 256).
    pub fn recent_bytes(&self) -> usize {
        usize::try_from(self.memory_mib * (1 << 20) / 32).unwrap_or(usize::MAX)
    }

    /// Sync states each connection keeps whole: four per MiB of the plan,
    /// 64 to 1,024 (the rest are kept encoded, see `SyncStates`).
    pub fn hot_states(&self) -> std::num::NonZeroUsize {
        let n = usize::try_from(self.memory_mib.saturating_mul(4)).unwrap_or(usize::MAX);
        std::num::NonZeroUsize::new(n.clamp(64, 1024)).unwrap_or(std::num::NonZeroUsize::MIN)
    }

    /// Bytes of the relay-wide send budget.
    pub fn send_budget_bytes(&self) -> usize {
        usize::try_from(self.send_budget_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}
