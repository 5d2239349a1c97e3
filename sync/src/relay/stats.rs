//! Counters of the relay's document cache, kept by the core and read by the
//! shell, which exports them (the core does no IO and knows no metrics
//! library).

/// How the document cache has been used since the relay was opened. The
/// counts only grow; a shell exporting them as counters takes differences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Uses of a case that found it loaded.
    pub hits: u64,
    /// Uses of a case that had to read it from storage (or found nothing).
    pub misses: u64,
    /// Loaded cases dropped to stay within the cache's count or memory bound.
    pub evictions: u64,
}
