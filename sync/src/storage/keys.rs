//! The key layout, in one place so that no two concerns can collide.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `d` | `d` case(16) `s` | compacted document snapshot (`Automerge::save`) |
//! | `d` | `d` case(16) `c` hash(32) | one change (`Change::raw_bytes`) |
//! | `y` | `y` case(16) peer | persisted `automerge::sync::State` for that peer |
//! | `l` | `l` case(16) | local index of known cases (device) |
//! | `t` | `t` case(16) | dirty mark: local changes the relay has not confirmed; the device time (i64 BE millis) of the first of them, empty in marks made before that was kept (device) |
//! | `k` | `k` name | device settings and counters (cursor, case number sequence, ...) |
//! | `b` | `b` sha256(32) | a piece of evidence's bytes (device; content-addressed) |
//! | `m` | `m` sha256(32) | what the device knows of a blob it holds: size, time stored, whether the relay has it (device, `replica::blobs`) |
//! | `q` | `q` sha256(32) | a blob waiting for upload: the case to offer it with (device) |
//! | `v` | `v` sha256(32) | a blob the relay refused for good: its reason (device) |
//! | `p` | `p` sha256(32) offset(u64 BE) | a chunk of a download in progress (device) |
//! | `x` | `x` case(16) | the relay's refusal of the case's unconfirmed changes (device, `replica::refusals`) |
//! | `w` | `w` case(16) | a discarded case to fetch whole from the relay (device, `replica::refusals`) |
//! | `j` | `j` case(16) time(8) | changes the device discarded after a refusal, kept for the record (device, `replica::refusals`) |
//! | `K` | `K` case(16) | the case's key, which its personal data is sealed with (device; `case::seal`) |
//! | `W` | `W` case(16) | the device holds the case with sealed personal data but not its key: ask the relay (device) |
//! | `X` | `X` case(16) | the case's personal data was erased: its key is gone and is never asked for again (device) |
//! | `r` | `r` ... | relay metadata: owners, change sequence, audit (see `relay`) |

use crate::ids::CaseId;

/// Key of a document's snapshot.
pub fn snapshot(case: CaseId) -> Vec<u8> {
    let mut k = doc_prefix(case);
    k.push(b's');
    k
}

/// Prefix of every key of one document (snapshot and changes).
pub fn doc_prefix(case: CaseId) -> Vec<u8> {
    let mut k = Vec::with_capacity(18 + 32);
    k.push(b'd');
    k.extend_from_slice(case.as_bytes());
    k
}

/// Prefix of a document's incremental changes.
pub fn changes_prefix(case: CaseId) -> Vec<u8> {
    let mut k = doc_prefix(case);
    k.push(b'c');
    k
}

/// Key of one incremental change.
pub fn change(case: CaseId, hash: &[u8; 32]) -> Vec<u8> {
    let mut k = changes_prefix(case);
    k.extend_from_slice(hash);
    k
}

/// Key of a persisted sync state between this node and `peer`.
pub fn sync_state(case: CaseId, peer: &str) -> Vec<u8> {
    let mut k = vec![b'y'];
    k.extend_from_slice(case.as_bytes());
    k.extend_from_slice(peer.as_bytes());
    k
}

/// Key of the device's entry for a known case.
pub fn local_case(case: CaseId) -> Vec<u8> {
    let mut k = vec![b'l'];
    k.extend_from_slice(case.as_bytes());
    k
}

/// Key of a dirty mark.
pub fn dirty(case: CaseId) -> Vec<u8> {
    let mut k = vec![b't'];
    k.extend_from_slice(case.as_bytes());
    k
}

/// Key of a piece of evidence's bytes by their SHA-256.
pub fn blob(sha256: &[u8; 32]) -> Vec<u8> {
    let mut k = vec![b'b'];
    k.extend_from_slice(sha256);
    k
}

/// Key of a named device setting.
pub fn setting(name: &str) -> Vec<u8> {
    let mut k = vec![b'k'];
    k.extend_from_slice(name.as_bytes());
    k
}

/// Reads the case id that follows a one-byte prefix.
pub fn case_after_prefix(key: &[u8]) -> Option<CaseId> {
    let bytes: [u8; 16] = key.get(1..17)?.try_into().ok()?;
    Some(CaseId::from_bytes(bytes))
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff (or the prefix was empty): no finite upper bound
    // exists, so use a key above anything we ever write (keys start with an
    // ASCII letter).
    vec![0xff; 64]
}

/// `key` for messages: printable ASCII as is, other bytes as `\xNN`.
pub fn printable(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key {
        if b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Key of a case's key on the device (see `case::seal`).
pub fn case_key(case: CaseId) -> Vec<u8> {
    let mut k = vec![b'K'];
    k.extend_from_slice(case.as_bytes());
    k
}

/// Key of the mark of a case whose key the device lacks.
pub fn key_wanted(case: CaseId) -> Vec<u8> {
    let mut k = vec![b'W'];
    k.extend_from_slice(case.as_bytes());
    k
}

/// Key of the mark of a case whose personal data was erased.
pub fn key_erased(case: CaseId) -> Vec<u8> {
    let mut k = vec![b'X'];
    k.extend_from_slice(case.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(b"ab"), b"ac".to_vec());
        assert_eq!(prefix_end(&[1, 0xff]), vec![2]);
        let case = CaseId::from_bytes([0xff; 16]);
        let p = changes_prefix(case);
        let end = prefix_end(&p);
        let k = change(case, &[0xff; 32]);
        assert!(k.as_slice() >= p.as_slice() && k < end);
    }

    #[test]
    fn printable_keys_show_bytes_beyond_ascii() {
        assert_eq!(printable(b"rm\x00\xff a"), "rm\\x00\\xff\\x20a");
    }
}
