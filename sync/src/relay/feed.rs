//! The audit feed across cases: one record per accepted upload, written in
//! the same batch as the change, keyed by relay time so head office can ask
//! "what happened since 09:00" without loading a single document.
//!
//! A record says who (user, device), when (relay receipt, and the time the
//! device claimed), and what the upload did in one line built from the
//! case's summaries before and after, so it never holds customer data:
//! only states, staff ids, deadline names and counts.

use super::summary::CaseSummary;
use crate::ids::{CaseId, StoreId};
use crate::storage::{Storage, StorageError};
use serde::{Deserialize, Serialize};

/// Key prefix of the chain-wide feed: `rw` time(8) seq(8).
pub const ALL: &[u8] = b"rw";
/// Key prefix of the per-store feed: `rx` len store time(8) seq(8).
pub const STORE: &[u8] = b"rx";

/// One accepted upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedRecord {
    /// Relay sequence of the commit.
    pub seq: u64,
    /// The case.
    pub case: CaseId,
    /// Its case number, when it has one.
    pub case_no: Option<String>,
    /// Owning store.
    pub store: String,
    /// The case's kind.
    pub kind: String,
    /// Authenticated user.
    pub user: String,
    /// Authenticated device.
    pub device: String,
    /// Relay time of receipt, ms.
    pub received_at: i64,
    /// Latest time the upload's entries claimed (device clock), ms.
    pub claimed_at: Option<i64>,
    /// Automerge changes in the upload.
    pub changes: u32,
    /// What it did, in one line without customer data.
    pub effect: String,
}

/// Where a page of the feed starts: after this time and sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Relay time, ms.
    pub at: i64,
    /// Sequence at that time (0: from the first record at `at`).
    pub seq: u64,
}

impl Cursor {
    /// The cursor as the API hands it out: `time-seq`.
    pub fn encode(&self) -> String {
        format!("{}-{}", self.at, self.seq)
    }

    /// Reads a cursor made by [`Cursor::encode`].
    pub fn decode(s: &str) -> Option<Cursor> {
        let (a, b) = s.split_once('-')?;
        Some(Cursor {
            at: a.parse().ok()?,
            seq: b.parse().ok()?,
        })
    }
}

/// Times sort as unsigned big-endian with the sign bit flipped.
fn time_bytes(at: i64) -> [u8; 8] {
    ((at as u64) ^ (1 << 63)).to_be_bytes()
}

fn store_prefix(store: &str) -> Vec<u8> {
    // Store ids are at most 64 bytes (validated), so one store's prefix is
    // never a prefix of another's.
    let mut k = STORE.to_vec();
    k.push(u8::try_from(store.len()).unwrap_or(u8::MAX));
    k.extend_from_slice(store.as_bytes());
    k
}

fn key(prefix: &[u8], at: i64, seq: u64) -> Vec<u8> {
    [prefix, &time_bytes(at), &seq.to_be_bytes()].concat()
}

/// The keys a record is stored under (chain-wide and per store).
pub fn keys(r: &FeedRecord) -> [Vec<u8>; 2] {
    [
        key(ALL, r.received_at, r.seq),
        key(&store_prefix(&r.store), r.received_at, r.seq),
    ]
}

/// One line saying what an upload did, from the case's summary before it
/// (`None`: the upload opened the case) and after, and how many log
/// entries it added.
pub fn effect(before: Option<&CaseSummary>, after: &CaseSummary, entries_added: i64) -> String {
    let mut parts: Vec<String> = Vec::new();
    let status = after.status.as_deref().unwrap_or("?");
    match before {
        None => parts.push(format!("opened {} ({status})", after.kind)),
        Some(b) => {
            if b.status != after.status {
                parts.push(format!(
                    "status {} → {status}",
                    b.status.as_deref().unwrap_or("?")
                ));
            }
            if b.assignee != after.assignee {
                parts.push(match &after.assignee {
                    Some(a) => format!("assigned to {a}"),
                    None => "unassigned".into(),
                });
            }
            if after.open_conflicts > b.open_conflicts {
                parts.push("conflict opened".into());
            } else if after.open_conflicts < b.open_conflicts {
                parts.push("conflict resolved".into());
            }
            if after.awaiting_approval > b.awaiting_approval {
                parts.push("offer awaiting approval".into());
            } else if after.awaiting_approval < b.awaiting_approval {
                parts.push("offer decided".into());
            }
            let granted = |s: &CaseSummary| s.granted_cash_fen + s.granted_virtual_fen;
            if granted(after) != granted(b) {
                parts.push(format!(
                    "compensation granted {}",
                    crate::money::yuan(granted(after) - granted(b))
                ));
            }
            if after.escalation != b.escalation {
                if let Some(e) = &after.escalation {
                    parts.push(format!("escalated to {e}"));
                }
            }
            if after.survey.is_some() && b.survey != after.survey {
                parts.push("survey recorded".into());
            }
            for (name, late) in &after.met {
                if !b.met.iter().any(|(n, _)| n == name) {
                    parts.push(format!("{name} met{}", if *late { " late" } else { "" }));
                }
            }
        }
    }
    if entries_added > 0 {
        parts.push(format!(
            "{entries_added} entr{} added",
            if entries_added == 1 { "y" } else { "ies" }
        ));
    }
    if parts.is_empty() {
        parts.push("edited".into());
    }
    parts.join("; ")
}

/// A page of the feed, oldest first, straight from storage (no relay
/// lock): records after `after` (or from the start), of `store` only when
/// given, at most `limit`. Returns the records and the cursor of the last.
pub fn read<S: Storage>(
    storage: &S,
    store: Option<&StoreId>,
    after: Option<Cursor>,
    limit: usize,
) -> Result<Vec<FeedRecord>, StorageError> {
    let prefix = match store {
        Some(s) => store_prefix(s.as_str()),
        None => ALL.to_vec(),
    };
    let start = match after {
        // Just past the cursor's own key.
        Some(c) => {
            let mut k = key(&prefix, c.at, c.seq);
            k.push(0);
            k
        }
        None => prefix.clone(),
    };
    let mut end = prefix.clone();
    end.push(0xff);
    end.extend_from_slice(&[0xff; 16]);
    storage
        .scan(&start, &end, limit)?
        .into_iter()
        .map(|(_, v)| {
            postcard::from_bytes(&v).map_err(|e| StorageError::Corrupt {
                key: "audit feed".into(),
                message: e.to_string(),
            })
        })
        .collect()
}

/// The cursor just before everything received at or after `at`.
pub fn since(at: i64) -> Cursor {
    // seq 0 never exists (sequences start at 1), and the page starts just
    // past the cursor's key, so records at exactly `at` are included.
    Cursor {
        at: at.saturating_sub(1),
        seq: u64::MAX,
    }
}

/// Encodes a record as stored.
pub fn encode(r: &FeedRecord) -> Result<Vec<u8>, StorageError> {
    postcard::to_stdvec(r).map_err(|e| StorageError::Corrupt {
        key: "audit feed".into(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_like_times_even_before_1970() {
        let mut ts = [-5_i64, 0, 3, i64::MIN, i64::MAX, -1, 1_700_000_000_000];
        let mut ks: Vec<[u8; 8]> = ts.iter().map(|t| time_bytes(*t)).collect();
        ts.sort();
        ks.sort();
        assert_eq!(ks, ts.iter().map(|t| time_bytes(*t)).collect::<Vec<_>>());
    }

    #[test]
    fn cursor_round_trips_and_rejects_junk() {
        let c = Cursor {
            at: 1_764_000_000_000,
            seq: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("12"), None);
        assert_eq!(Cursor::decode("a-1"), None);
    }
}
