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
    let cache = NonZeroUsize::MIN;
    let mut relay = match Relay::open(MemoryStorage::new(), cache) {
        Ok(r) => r,
        Err(e) => panic!("memory relay: {e}"),
    };
    let id = CaseId::from_bytes(SEED_CASE);
    let mut doc = Automerge::new();
    let ctx = EditContext {
        author: UserId::new("seed").unwrap_or_else(|_| unreachable!("valid literal id")),
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
            if let Frame::Sync { message, .. } = f {
                let msg = automerge::sync::Message::decode(&message)
                    .unwrap_or_else(|e| panic!("relay reply: {e}"));
                doc.receive_sync_message(&mut st, msg)
                    .unwrap_or_else(|e| panic!("relay reply: {e}"));
            }
        }
    }
    relay
}

/// Feeds `data`, split into length-prefixed frames, to a relay connection of
/// a device of store S2 after its hello. Panics only if an invariant breaks:
/// the seeded case of another store must never be changed or revealed, and
/// every stored case must still load.
pub fn relay_accepts_arbitrary_frames(data: &[u8]) {
    let mut relay = seeded_relay();
    let id = CaseId::from_bytes(SEED_CASE);
    let before = relay.case_view(id).ok().flatten();
    let mut s = relay.session(principal("S2", "fuzzer"));
    let _ = relay.handle(
        &mut s,
        Frame::Hello {
            cursor: 0,
            policy_version: 1,
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
    if let Ok(all) = relay.list(&Default::default()) {
        for (case, _) in all {
            assert!(
                relay.doc_bytes(case).is_ok(),
                "stored case {case} no longer loads"
            );
        }
    }
}
