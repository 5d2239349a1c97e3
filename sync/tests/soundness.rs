//! The relay's core when its data is not sound: a case whose stored bytes
//! do not load is quarantined and refused alone, and a device that has
//! seen sequence numbers beyond the relay's storage makes the relay move
//! past them and announce everything to it afresh.

use aftercase_sync::access::{Principal, Role};
use aftercase_sync::case::edit::{add_note, create_case, Customer, EditContext, NewCase};
use aftercase_sync::case::CaseKind;
use aftercase_sync::protocol::{Frame, Unsynced, FEATURE_UPLOAD};
use aftercase_sync::relay::{Relay, RelaySession, RESUME_MARGIN};
use aftercase_sync::storage::{keys, Batch, MemoryStorage, Storage};
use aftercase_sync::{CaseId, Millis};
use automerge::{ActorId, Automerge};
use std::num::NonZeroUsize;

const NOW: i64 = 1_800_000_000_000;

fn alice() -> Principal {
    Principal {
        user: "alice".parse().unwrap(),
        role: Role::Staff,
        store: "S1".parse().unwrap(),
        device: "tab-a".parse().unwrap(),
    }
}

fn ctx(n: u8) -> EditContext {
    let p = alice();
    EditContext {
        author: p.user,
        role: p.role,
        device: p.device,
        now: Millis(NOW + i64::from(n) * 1000),
        nonce: [n; 16],
    }
}

fn hello(relay: &mut Relay<MemoryStorage>, cursor: u64) -> (RelaySession, Vec<Frame>) {
    let mut s = relay.session(alice());
    let out = relay
        .handle(
            &mut s,
            Frame::Hello {
                cursor,
                policy_version: 0,
                app_version: "tablet".into(),
                unsynced: Unsynced::default(),
                features: vec![FEATURE_UPLOAD.into()],
            },
            Millis(NOW),
        )
        .unwrap();
    (s, out.frames)
}

/// Opens case `n` and uploads it (with a note) through `s`.
fn upload_case(
    relay: &mut Relay<MemoryStorage>,
    s: &mut RelaySession,
    n: u8,
) -> (CaseId, Automerge) {
    let case = CaseId::from_bytes([n; 16]);
    let mut doc = Automerge::new().with_actor(ActorId::from(&[n; 16][..]));
    create_case(
        &mut doc,
        &ctx(n),
        &NewCase {
            id: case,
            case_no: format!("S1-tab-a-{n}"),
            kind: CaseKind::Complaint,
            store: "S1".parse().unwrap(),
            customer: Customer {
                name: "Zhao Lei".into(),
                phone: "13700000000".into(),
            },
            sku: None,
            description: None,
        },
    )
    .unwrap();
    add_note(&mut doc, case, &ctx(n + 1), "a note").unwrap();
    let changes = doc
        .get_changes(&[])
        .into_iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    let out = relay
        .handle(s, Frame::Changes { doc: case, changes }, Millis(NOW))
        .unwrap();
    assert!(out.frames.iter().any(|f| matches!(f, Frame::Stored { .. })));
    relay.flush().unwrap();
    (case, doc)
}

/// Stores changes of `case` as the relay stores a later upload: one key
/// per change, named by its hash.
fn store_changes(storage: &MemoryStorage, case: CaseId, changes: &[Vec<u8>]) {
    let mut b = Batch::new();
    for c in changes {
        let hash = automerge::Change::from_bytes(c.clone()).unwrap().hash();
        b.put(keys::change(case, &hash.0), c.clone());
    }
    storage.apply(b).unwrap();
    storage.flush().unwrap();
}

fn announced(frames: &[Frame]) -> Vec<CaseId> {
    frames
        .iter()
        .flat_map(|f| match f {
            Frame::Announce { docs, .. } => docs.iter().map(|d| d.doc).collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn a_damaged_case_is_quarantined_and_refused_alone() {
    let storage = MemoryStorage::new();
    let mut relay = Relay::open(storage.clone(), NonZeroUsize::new(8).unwrap()).unwrap();
    let (mut s, _) = hello(&mut relay, 0);
    let (good, _) = upload_case(&mut relay, &mut s, 1);
    let (bad, mut bad_doc) = upload_case(&mut relay, &mut s, 3);
    // A later change of `bad`, stored apart, then one byte of it flipped.
    let before = bad_doc.get_heads();
    add_note(&mut bad_doc, bad, &ctx(5), "later").unwrap();
    let later: Vec<Vec<u8>> = bad_doc
        .get_changes(&before)
        .into_iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    store_changes(&storage, bad, &later);
    let (k, mut v) = storage
        .scan_prefix(&keys::changes_prefix(bad))
        .unwrap()
        .into_iter()
        .next()
        .expect("a stored change");
    let mid = v.len() / 2;
    v[mid] ^= 0x01;
    let mut b = Batch::new();
    b.put(k, v);
    storage.apply(b).unwrap();
    storage.flush().unwrap();

    let mut relay = Relay::open(storage.clone(), NonZeroUsize::new(8).unwrap()).unwrap();
    let report = relay.verify().unwrap();
    assert_eq!(report.cases, 2);
    assert_eq!(report.damaged.len(), 1, "{report:?}");
    assert_eq!(report.damaged[0].case, bad.to_string());
    assert!(relay.is_quarantined(bad) && !relay.is_quarantined(good));
    // A device asking for both gets the good one and a refusal for the
    // other, on a connection that goes on.
    let (mut s, _) = hello(&mut relay, 0);
    let out = relay
        .handle(
            &mut s,
            Frame::Fetch {
                docs: vec![good, bad],
            },
            Millis(NOW),
        )
        .unwrap();
    assert!(out
        .frames
        .iter()
        .any(|f| matches!(f, Frame::Snapshots { docs } if docs.iter().any(|d| d.doc == good))));
    assert!(out.frames.iter().any(
        |f| matches!(f, Frame::Refused { doc, code, .. } if *doc == bad && code == "unavailable")
    ));
    // The quarantine outlives a restart.
    let relay = Relay::open(storage, NonZeroUsize::new(8).unwrap()).unwrap();
    assert!(relay.is_quarantined(bad));
}

#[test]
fn a_device_ahead_of_the_relays_storage_moves_it_on_and_hears_everything_again() {
    let mut relay = Relay::open(MemoryStorage::new(), NonZeroUsize::new(8).unwrap()).unwrap();
    let (mut s, _) = hello(&mut relay, 0);
    let (c1, _) = upload_case(&mut relay, &mut s, 1);
    let (c2, _) = upload_case(&mut relay, &mut s, 3);
    let seq = relay.seq();
    // A device that was told 40 more numbers (by this relay before its
    // storage was restored from an older copy).
    let (_, frames) = hello(&mut relay, seq + 40);
    assert!(relay.seq() >= seq + 40 + RESUME_MARGIN, "{}", relay.seq());
    let mut all = announced(&frames);
    all.sort();
    assert_eq!(all, vec![c1, c2], "everything announced afresh");
    // A cursor beyond anything plausible is announced everything too, but
    // does not move the sequence: a hostile device cannot exhaust it.
    let now = relay.seq();
    let (_, frames) = hello(&mut relay, u64::MAX);
    assert_eq!(relay.seq(), now);
    assert_eq!(announced(&frames).len(), 2);
    // A device that is not ahead changes nothing.
    let now = relay.seq();
    let (_, frames) = hello(&mut relay, now);
    assert_eq!(relay.seq(), now);
    assert!(announced(&frames).is_empty());
}
