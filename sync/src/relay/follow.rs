//! Commits made by other relays on the same database.
//!
//! Several relays may share one database (PostgreSQL). Each commit takes the
//! next number of the one change sequence (`Storage::apply_sequenced`), so
//! numbers become visible in order; the shell learns from the database how
//! far its flushes have gone (a watermark) and hands that number here. The
//! relay then drops its loaded copies of the cases changed meanwhile and
//! lets announcements cover those commits.

use super::*;

/// Rows of the change index read per scan while catching up.
const CATCH_UP_CHUNK: usize = 1024;

impl<S: Storage> Relay<S> {
    /// Takes in every commit up to `durable_up_to`, a sequence number the
    /// database has made durable (whichever relay committed it). Loaded
    /// copies of the cases changed since the last call are dropped when
    /// older than what is stored, announcements may cover them, and the
    /// cases are returned with their stores: the shell refreshes head
    /// office's rows of them and wakes the stores' live connections.
    ///
    /// A relay's own commits come back too (harmless: its copies of them
    /// are current, and a second wake-up announces nothing new).
    pub fn observe_commits(
        &mut self,
        durable_up_to: u64,
    ) -> Result<Vec<(CaseId, StoreId)>, StorageError> {
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
            for (_, value) in rows {
                let Some((case, _)) = keys::parse_index_value(&value) else {
                    return Err(corrupt("change index", "a damaged row"));
                };
                let Some(meta) = self.meta(case)? else {
                    continue;
                };
                self.drop_if_stale(case, meta.seq);
                changed.push((case, meta.store));
            }
            if !full {
                break;
            }
        }
        self.observed = durable_up_to;
        self.seq = self.seq.max(durable_up_to);
        self.durable_seq = self.durable_seq.max(durable_up_to);
        Ok(changed)
    }
}
