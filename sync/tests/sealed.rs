//! The relay and sealed personal data (`case::seal`): it checks sealed
//! fields with the key the opening device handed over, keeps the first key
//! of a case, and hands keys only to devices that may read the case.

use aftercase_sync::access::{Principal, Role};
use aftercase_sync::case::edit::{
    create_case_sealed, set_field_sealed, Customer, EditContext, NewCase,
};
use aftercase_sync::case::seal::CaseKey;
use aftercase_sync::case::{CaseField, CaseKind};
use aftercase_sync::protocol::{DocKey, Frame, Unsynced, FEATURE_KEYS, FEATURE_UPLOAD};
use aftercase_sync::relay::{Relay, RelaySession};
use aftercase_sync::storage::MemoryStorage;
use aftercase_sync::{CaseId, Millis};
use automerge::{ActorId, Automerge};
use std::num::NonZeroUsize;

const NOW: i64 = 1_800_000_000_000;

fn who(user: &str, role: Role, store: &str, device: &str) -> Principal {
    Principal {
        user: user.parse().unwrap(),
        role,
        store: store.parse().unwrap(),
        device: device.parse().unwrap(),
    }
}

fn ctx(p: &Principal, n: u8) -> EditContext {
    EditContext {
        author: p.user.clone(),
        role: p.role,
        device: p.device.clone(),
        now: Millis(NOW + i64::from(n) * 1000),
        nonce: [n; 16],
    }
}

fn connect(relay: &mut Relay<MemoryStorage>, p: Principal) -> RelaySession {
    let mut s = relay.session(p);
    relay
        .handle(
            &mut s,
            Frame::Hello {
                cursor: 0,
                policy_version: 0,
                app_version: "tablet".into(),
                unsynced: Unsynced::default(),
                features: vec![FEATURE_UPLOAD.into(), FEATURE_KEYS.into()],
            },
            Millis(NOW),
        )
        .unwrap();
    s
}

fn changes(doc: &mut Automerge, edit: impl FnOnce(&mut Automerge)) -> Vec<Vec<u8>> {
    let before = doc.get_heads();
    edit(doc);
    doc.get_changes(&before)
        .into_iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect()
}

fn new_case(p: &Principal, case: CaseId, key: &CaseKey, phone: &str) -> (Automerge, Vec<Vec<u8>>) {
    let mut doc = Automerge::new().with_actor(ActorId::from(&[1u8; 16][..]));
    let c = changes(&mut doc, |d| {
        create_case_sealed(
            d,
            &ctx(p, 1),
            &NewCase {
                id: case,
                case_no: "S1-tab-a-1".into(),
                kind: CaseKind::Complaint,
                store: p.store.clone(),
                customer: Customer {
                    name: "Zhao Lei".into(),
                    phone: phone.into(),
                },
                sku: None,
                description: None,
            },
            Some(key),
        )
        .unwrap()
    });
    (doc, c)
}

fn upload(
    relay: &mut Relay<MemoryStorage>,
    s: &mut RelaySession,
    doc: CaseId,
    changes: Vec<Vec<u8>>,
) -> Vec<Frame> {
    let out = relay
        .handle(s, Frame::Changes { doc, changes }, Millis(NOW))
        .unwrap();
    relay.flush().unwrap();
    out.frames
}

fn refusal(frames: &[Frame]) -> Option<String> {
    frames.iter().find_map(|f| match f {
        Frame::Refused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
}

fn give(relay: &mut Relay<MemoryStorage>, s: &mut RelaySession, doc: CaseId, key: &CaseKey) {
    relay
        .handle(
            s,
            Frame::Keys {
                keys: vec![DocKey {
                    doc,
                    key: key.clone(),
                }],
            },
            Millis(NOW),
        )
        .unwrap();
}

#[test]
fn the_relay_opens_and_checks_sealed_fields_with_the_openers_key() {
    let mut relay = Relay::open(MemoryStorage::new(), NonZeroUsize::new(8).unwrap()).unwrap();
    let alice = who("alice", Role::Staff, "S1", "tab-a");
    let mut s = connect(&mut relay, alice.clone());
    let key = CaseKey::from_bytes([7; 32]);

    // Sealed under another key than the one handed over: refused.
    let case = CaseId::from_bytes([1; 16]);
    give(&mut relay, &mut s, case, &key);
    let (_, c) = new_case(&alice, case, &CaseKey::from_bytes([8; 32]), "13700000000");
    let why = refusal(&upload(&mut relay, &mut s, case, c)).expect("refused");
    assert!(why.contains("does not open"), "{why}");

    // A phone that is not one, sealed: refused with the field's words.
    let case = CaseId::from_bytes([2; 16]);
    give(&mut relay, &mut s, case, &key);
    let (mut doc, mut c) = new_case(&alice, case, &key, "13700000000");
    c.extend(changes(&mut doc, |d| {
        // A tampered app seals what the edit would refuse.
        use automerge::transaction::Transactable;
        let cust = aftercase_sync::case::read::map(d, &automerge::ROOT, "customer").unwrap();
        let sealed = aftercase_sync::case::seal::seal(
            &key,
            case,
            "customer_phone",
            [4; 24],
            "call me maybe",
        );
        let mut tx = d.transaction();
        tx.put(&cust, "phone", sealed).unwrap();
        tx.commit();
    }));
    let why = refusal(&upload(&mut relay, &mut s, case, c)).expect("refused");
    assert!(why.contains("customer phone"), "{why}");

    // The honest case: stored, and head office reads the customer.
    let case = CaseId::from_bytes([3; 16]);
    give(&mut relay, &mut s, case, &key);
    let (mut doc, c) = new_case(&alice, case, &key, "13700000000");
    assert_eq!(refusal(&upload(&mut relay, &mut s, case, c)), None);
    let v = relay.case_view(case).unwrap().unwrap();
    assert_eq!(v.customer.phone.as_deref(), Some("13700000000"));
    assert_eq!(v.customer.name.as_deref(), Some("Zhao Lei"));

    // Sealing a field that is not personal data: refused.
    let c = changes(&mut doc, |d| {
        set_field_sealed(d, case, &ctx(&alice, 2), CaseField::Priority, "high", None).unwrap();
        // Overwrite the plain value with a sealed one, as a tampered app would.
        use automerge::transaction::Transactable;
        let fields = aftercase_sync::case::read::map(d, &automerge::ROOT, "fields").unwrap();
        let sealed = aftercase_sync::case::seal::seal(&key, case, "priority", [3; 24], "high");
        let mut tx = d.transaction();
        tx.put(&fields, "priority", sealed).unwrap();
        tx.commit();
    });
    let why = refusal(&upload(&mut relay, &mut s, case, c)).expect("refused");
    assert!(why.contains("not personal data"), "{why}");

    // Another device of the store cannot replace the key; it is handed
    // the first one. A tablet of another store gets none.
    let bob = who("bob", Role::Staff, "S1", "tab-b");
    let mut sb = connect(&mut relay, bob);
    give(&mut relay, &mut sb, case, &CaseKey::from_bytes([9; 32]));
    let out = relay
        .handle(&mut sb, Frame::WantKeys { docs: vec![case] }, Millis(NOW))
        .unwrap();
    assert_eq!(
        out.frames,
        vec![Frame::Keys {
            keys: vec![DocKey {
                doc: case,
                key: key.clone()
            }]
        }]
    );
    let carol = who("carol", Role::Staff, "S2", "tab-c");
    let mut sc = connect(&mut relay, carol);
    let out = relay
        .handle(&mut sc, Frame::WantKeys { docs: vec![case] }, Millis(NOW))
        .unwrap();
    assert_eq!(out.frames, vec![Frame::Keys { keys: vec![] }]);
}
