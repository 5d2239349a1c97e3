//! Relay-side key layout (all under the `r` prefix, see `storage::keys`).
//!
//! | key | value |
//! |---|---|
//! | `rs` | current change sequence (u64 BE) |
//! | `rm` case | [`crate::access::CaseMeta`] (postcard) |
//! | `ra` seq | case(16) + heads (32 each): every case by latest change |
//! | `ro` len store seq | case(16) + heads: the same, per owning store |
//! | `ru` case hash | [`super::AuditRecord`] (postcard) |
//! | `rv` case | the case's [`super::summary::CaseSummary`] (JSON), the read model |
//! | `rn` case | entries in the case's logs (u64 BE), kept so the entry limit costs no pass over them |
//! | `rw` time seq, `rx` len store time seq | the audit feed: [`super::feed::FeedRecord`] (postcard), chain-wide and per store |
//! | `rk` | salt of the customer keys in the read model |
//! | `rt` case | times the relay did not believe: `Vec<`[`super::ClockFix`]`>` (postcard) |
//! | `rQ` case | the case's stored bytes do not load: quarantined, with why (`soundness.rs`) |
//! | `rK` case | the case's key, which its personal data is sealed with (`case::seal`) |
//! | `rX` case | the case's personal data was erased: [`super::casekeys::Erasure`] (JSON) |
//! | `rd` len store device | the device's [`super::fleet::DeviceRecord`] (JSON): version, last seen and synced, unsynced work |

use crate::ids::{CaseId, DeviceId, StoreId};

pub const SEQ: &[u8] = b"rs";
pub const META: &[u8] = b"rm";
pub const ALL: &[u8] = b"ra";
pub const AUDIT: &[u8] = b"ru";
pub const POLICY: &[u8] = b"rp";
pub const CLOCK: &[u8] = b"rt";
pub const ENTRIES: &[u8] = b"rn";
pub const SUMMARY: &[u8] = b"rv";
pub const SALT: &[u8] = b"rk";
pub const DEVICE: &[u8] = b"rd";
pub const CASE_KEY: &[u8] = b"rK";
pub const QUARANTINE: &[u8] = b"rQ";
pub const ERASURE: &[u8] = b"rX";

pub fn case_key(case: CaseId) -> Vec<u8> {
    [CASE_KEY, case.as_bytes()].concat()
}

pub fn erasure(case: CaseId) -> Vec<u8> {
    [ERASURE, case.as_bytes()].concat()
}

/// Prefix of one store's device records: the store's length byte keeps
/// one store's prefix from being a prefix of another's (ids are at most 64
/// bytes).
pub fn device_prefix(store: &StoreId) -> Vec<u8> {
    let mut k = DEVICE.to_vec();
    k.push(store.as_str().len() as u8);
    k.extend_from_slice(store.as_str().as_bytes());
    k
}

/// Key of a device's record.
pub fn device(store: &StoreId, device: &DeviceId) -> Vec<u8> {
    let mut k = device_prefix(store);
    k.extend_from_slice(device.as_str().as_bytes());
    k
}

pub fn summary(case: CaseId) -> Vec<u8> {
    [SUMMARY, case.as_bytes()].concat()
}

pub fn entries(case: CaseId) -> Vec<u8> {
    [ENTRIES, case.as_bytes()].concat()
}

pub fn clock(case: CaseId) -> Vec<u8> {
    [CLOCK, case.as_bytes()].concat()
}

pub fn meta(case: CaseId) -> Vec<u8> {
    [META, case.as_bytes()].concat()
}

pub fn all(seq: u64) -> Vec<u8> {
    [ALL, &seq.to_be_bytes()[..]].concat()
}

/// Prefix of one store's sequence index.
pub fn store_prefix(store: &StoreId) -> Vec<u8> {
    // Store ids are at most 64 bytes (validated), so the length fits a byte
    // and the prefix of one store can never be a prefix of another's.
    let mut k = b"ro".to_vec();
    k.push(store.as_str().len() as u8);
    k.extend_from_slice(store.as_str().as_bytes());
    k
}

pub fn store(store: &StoreId, seq: u64) -> Vec<u8> {
    let mut k = store_prefix(store);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn audit_prefix(case: CaseId) -> Vec<u8> {
    [AUDIT, case.as_bytes()].concat()
}

pub fn audit(case: CaseId, hash: &[u8; 32]) -> Vec<u8> {
    [AUDIT, case.as_bytes(), hash].concat()
}

/// Index value: the case and its heads.
pub fn index_value(case: CaseId, heads: &[automerge::ChangeHash]) -> Vec<u8> {
    let mut v = case.as_bytes().to_vec();
    for h in heads {
        v.extend_from_slice(&h.0);
    }
    v
}

/// Splits an index value; `None` if damaged.
pub fn parse_index_value(v: &[u8]) -> Option<(CaseId, Vec<[u8; 32]>)> {
    let case: [u8; 16] = v.get(..16)?.try_into().ok()?;
    let rest = &v[16..];
    if !rest.len().is_multiple_of(32) {
        return None;
    }
    let heads = rest
        .chunks_exact(32)
        .filter_map(|c| <[u8; 32]>::try_from(c).ok())
        .collect();
    Some((CaseId::from_bytes(case), heads))
}

/// The sequence number at the end of an index key.
pub fn seq_of(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}
