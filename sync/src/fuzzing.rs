//! Entry points shared by the fuzz targets (`fuzz/`) and the regression tests
//! that replay their corpus. Not part of the product API.

use crate::access::{Principal, Role};
use crate::case::edit::{self, Customer, EditContext, NewCase};
use crate::case::CaseKind;
use crate::ids::{CaseId, DeviceId, Millis, StoreId, UserId};
use crate::protocol::Frame;
use crate::relay::Relay;
use crate::storage::MemoryStorage;
use automerge::sync::{State, SyncDoc};
use automerge::Automerge;
use std::num::NonZeroUsize;

pub mod photos;

fn principal(store: &str, device: &str) -> Principal {
    Principal {
        user: UserId::new("fuzz").unwrap_or_else(|_| unreachable!("valid literal id")),
        role: Role::Staff,
        store: StoreId::new(store).unwrap_or_else(|_| unreachable!("valid literal id")),
        device: DeviceId::new(device).unwrap_or_else(|_| unreachable!("valid literal id")),
    }
}

/// The case id the fuzz relay is seeded with.
pub const SEED_CASE: [u8; 16] = [0x11; 16];

/// A relay holding one case of store S1, uploaded through the protocol.
pub fn seeded_relay() -> Relay<MemoryStorage> {
    seeded_relay_over(MemoryStorage::new())
}

/// [`seeded_relay`] over `storage` (a clone shares its contents, so the
/// caller can read what the relay wrote).
pub fn seeded_relay_over(storage: MemoryStorage) -> Relay<MemoryStorage> {
    let cache = NonZeroUsize::MIN;
    let mut relay = match Relay::open(storage, cache) {
        Ok(r) => r,
        Err(e) => panic!("memory relay: {e}"),
    };
    let id = CaseId::from_bytes(SEED_CASE);
    let mut doc = Automerge::new();
    // The connection below is user "fuzz" on device "seed": the relay
    // refuses a case whose creator is not the uploader.
    let ctx = EditContext {
        author: UserId::new("fuzz").unwrap_or_else(|_| unreachable!("valid literal id")),
        role: Role::Staff,
        device: DeviceId::new("seed").unwrap_or_else(|_| unreachable!("valid literal id")),
        now: Millis(1),
        nonce: [1; 16],
    };
    let new = NewCase {
        id,
        case_no: "S1-seed-1".into(),
        kind: CaseKind::Repair,
        store: StoreId::new("S1").unwrap_or_else(|_| unreachable!("valid literal id")),
        customer: Customer {
            name: "Seed".into(),
            phone: "12345678".into(),
        },
        sku: None,
        description: None,
    };
    if let Err(e) = edit::create_case(&mut doc, &ctx, &new) {
        panic!("seed case: {e}");
    }
    let mut s = relay.session(principal("S1", "seed"));
    let mut st = State::new();
    let _ = relay.handle(
        &mut s,
        Frame::Hello {
            cursor: 0,
            policy_version: 1,
            app_version: "fuzz".into(),
            unsynced: crate::protocol::Unsynced::default(),
            features: Vec::new(),
        },
        Millis(1),
    );
    for _ in 0..8 {
        let Some(m) = doc.generate_sync_message(&mut st) else {
            break;
        };
        let out = relay
            .handle(
                &mut s,
                Frame::Sync {
                    doc: id,
                    message: m.encode(),
                },
                Millis(2),
            )
            .unwrap_or_else(|e| panic!("seeding: {e}"));
        for f in out.frames {
            if let Frame::Sync { message, .. } = &f {
                let msg = automerge::sync::Message::decode(message)
                    .unwrap_or_else(|e| panic!("relay reply: {e}"));
                doc.receive_sync_message(&mut st, msg)
                    .unwrap_or_else(|e| panic!("relay reply: {e}"));
            }
            if let Frame::Refused { reason, .. } = f {
                panic!("the relay refused the seed case: {reason}");
            }
        }
    }
    relay
}

/// Any bytes from the network as one frame: decoding returns a frame or
/// an error, never panics, and a decoded frame re-encodes to bytes that
/// decode to the same frame. The `frame_decode` fuzz target.
pub fn frame_decode_roundtrips(data: &[u8]) {
    if let Ok(frame) = crate::protocol::Frame::decode(data) {
        let again =
            crate::protocol::Frame::decode(&frame.encode()).expect("a re-encoded frame decodes");
        assert_eq!(again, frame);
    }
}

/// Feeds `data`, split into length-prefixed frames, to a relay connection of
/// a device of store S2 after its hello. Panics only if an invariant breaks:
/// the seeded case of another store must never be changed or revealed,
/// every stored case must still load, and the other device's fleet record
/// is never touched (the connection may only write its own).
pub fn relay_accepts_arbitrary_frames(data: &[u8]) {
    let storage = MemoryStorage::new();
    let mut relay = seeded_relay_over(storage.clone());
    let id = CaseId::from_bytes(SEED_CASE);
    let before = relay.case_view(id).ok().flatten();
    let devices_before = crate::relay::fleet::devices(&storage, None).ok();
    let mut s = relay.session(principal("S2", "fuzzer"));
    // With whole uploads agreed, so `Changes` frames reach the judge.
    let _ = relay.handle(
        &mut s,
        Frame::Hello {
            cursor: 0,
            policy_version: 1,
            app_version: "fuzz".into(),
            unsynced: crate::protocol::Unsynced::default(),
            features: vec![crate::protocol::FEATURE_UPLOAD.to_string()],
        },
        Millis(3),
    );
    let mut rest = data;
    while rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let body = &rest[2..];
        let take = len.min(body.len());
        let (chunk, tail) = body.split_at(take);
        rest = tail;
        let Ok(frame) = Frame::decode(chunk) else {
            break;
        };
        match relay.handle(&mut s, frame, Millis(4)) {
            Ok(out) => {
                for f in out.frames {
                    if let Frame::Sync { doc, .. } = f {
                        assert_ne!(doc, id, "another store's case was sent to S2");
                    }
                }
            }
            Err(_) => break,
        }
    }
    let after = relay.case_view(id).ok().flatten();
    assert_eq!(before, after, "another store's case changed");
    let devices_after = crate::relay::fleet::devices(&storage, None).ok();
    let others = |d: &Option<Vec<crate::relay::fleet::DeviceRecord>>| {
        d.iter()
            .flatten()
            .filter(|r| r.store.as_str() != "S2")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        others(&devices_before),
        others(&devices_after),
        "another store's device record changed"
    );
    assert!(
        others(&devices_after).len() == 1,
        "the seed device has its record"
    );
    if let Ok(all) = relay.list(&Default::default()) {
        for (case, _) in all {
            assert!(
                relay.doc_bytes(case).is_ok(),
                "stored case {case} no longer loads"
            );
        }
    }
}

/// Applies `data` as Automerge change bytes to the seeded case and judges
/// the result as an upload by a clerk of the case's own store. Panics only
/// if an invariant breaks: the judge must not panic, and an upload it
/// accepts must leave every fixed root field and every recorded entry of
/// the case as it was.
pub fn judge_accepts_arbitrary_changes(data: &[u8]) {
    let mut relay = seeded_relay();
    let id = CaseId::from_bytes(SEED_CASE);
    let stored = match relay.doc_bytes(id) {
        Ok(Some(b)) => b,
        _ => panic!("the seeded case is stored"),
    };
    let Ok(base) = Automerge::load(&stored) else {
        panic!("the seeded case loads");
    };
    let before = base.get_heads();
    let mut after = base.clone();
    if after.load_incremental(data).is_err() {
        return;
    }
    let changes = after.get_changes(&before);
    if changes.is_empty() {
        return;
    }
    let p = principal("S1", "fuzzer");
    let policy = crate::policy::Policy::default();
    let verdict = crate::relay::judge::judge(&crate::relay::judge::Upload {
        case: id,
        doc: &after,
        before: &before,
        changes: &changes,
        stored_bytes: stored.len(),
        entries_before: None,
        principal: &p,
        policy: &policy,
        now: Millis(5),
        key: None,
    });
    if verdict.is_ok() {
        assert_eq!(
            protected(&after, &base),
            protected(&base, &base),
            "an accepted upload changed a protected path"
        );
    }
}

/// The fixed root fields and every entry `base` holds, as text.
fn protected(doc: &Automerge, base: &Automerge) -> String {
    use crate::case::{read, table};
    use automerge::{ReadDoc, ROOT};
    let mut out = String::new();
    for (k, _) in table::ROOT {
        let v: Vec<String> = doc
            .get_all(ROOT, *k)
            .unwrap_or_default()
            .into_iter()
            .map(|(v, id)| format!("{v:?}@{id}"))
            .collect();
        out.push_str(&format!("{k}={v:?};"));
    }
    for l in table::LOGS {
        for (key, _) in read::entries(base, &ROOT, l.key) {
            let e = read::map(doc, &ROOT, l.key).and_then(|m| read::map(doc, &m, &key));
            let fields: Option<Vec<String>> = e.map(|e| {
                doc.keys(&e)
                    .map(|f| {
                        let v: Vec<String> = doc
                            .get_all(&e, &f)
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(v, id)| format!("{v:?}@{id}"))
                            .collect();
                        format!("{f}={v:?}")
                    })
                    .collect()
            });
            out.push_str(&format!("{}/{key}={fields:?};", l.key));
        }
    }
    out
}

/// Any bytes, read as a JPEG and as a PNG: removing location metadata
/// never panics, keeps a JPEG's length (segments are cleaned in place), and
/// a second pass finds nothing more to remove.
pub fn strip_location_holds(data: &[u8]) {
    use crate::case::exif::strip_location;
    for media in ["image/jpeg", "image/png"] {
        let Ok((once, _)) = strip_location(data, media) else {
            continue;
        };
        if media == "image/jpeg" {
            assert_eq!(once.len(), data.len(), "a JPEG keeps its length");
        }
        match strip_location(&once, media) {
            Ok((twice, again)) => {
                assert!(!again, "a second pass removed more from a {media}");
                assert_eq!(twice, once);
            }
            Err(e) => panic!("a cleaned {media} no longer reads: {e}"),
        }
    }
}
