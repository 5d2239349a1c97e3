//! Commits made by other relays on the same database.
//!
//! Several relays may share one database (PostgreSQL). Each commit takes the
//! next number of the one change sequence (`Storage::apply_sequenced`), so
//! numbers become visible in order; the shell learns from the database how
//! far its flushes have gone (a watermark) and hands that number here. The
//! relay then brings its loaded copies of the cases changed meanwhile up to
//! date (recording the new changes for pushes to live devices) and lets
//! announcements cover those commits.

use super::*;

/// Rows of the change index read per scan while catching up.
const CATCH_UP_CHUNK: usize = 1024;

/// A case another relay committed to, as [`Relay::observe_commits`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The case.
    pub case: CaseId,
    /// Its store, from the owner record.
    pub store: StoreId,
    /// Its place in the change sequence now.
    pub seq: u64,
}

impl<S: Storage> Relay<S> {
    /// Takes in every commit up to `durable_up_to`, a sequence number the
    /// database has made durable (whichever relay committed it). Loaded
    /// copies of the cases changed since the last call are brought up to
    /// what is stored, announcements may cover them, and the
    /// cases are returned with their stores: the shell refreshes head
    /// office's rows of them and wakes the stores' live connections.
    ///
    /// The relay's own commits are passed over: its copies of them are
    /// current and its connections were told of them.
    pub fn observe_commits(&mut self, durable_up_to: u64) -> Result<Vec<Observed>, StorageError> {
        let mut changed = Vec::new();
        if durable_up_to <= self.observed {
            return Ok(changed);
        }
        let mut start = keys::all(self.observed.saturating_add(1));
        let end = keys::all(durable_up_to.saturating_add(1));
        loop {
            let rows = self.storage.scan(&start, &end, CATCH_UP_CHUNK)?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            start = last.clone();
            start.push(0);
            let full = rows.len() == CATCH_UP_CHUNK;
            for (key, value) in rows {
                let seq = key
                    .get(keys::ALL.len()..)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes);
                if seq.is_some_and(|n| self.own.remove(&n)) {
                    continue;
                }
                let Some((case, heads)) = keys::parse_index_value(&value) else {
                    return Err(corrupt("change index", "a damaged row"));
                };
                let Some(meta) = self.meta(case)? else {
                    continue;
                };
                self.catch_up(case, meta.seq, &heads)?;
                changed.push(Observed {
                    case,
                    store: meta.store,
                    seq: meta.seq,
                });
            }
            if !full {
                break;
            }
        }
        // Own commits whose rows a later commit moved were not met above.
        self.own = self.own.split_off(&durable_up_to.saturating_add(1));
        self.observed = durable_up_to;
        self.seq = self.seq.max(durable_up_to);
        self.durable_seq = self.durable_seq.max(durable_up_to);
        Ok(changed)
    }
}
