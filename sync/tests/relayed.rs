//! What a store relay may pass up for its tablets (`Relay::relayed`): each
//! run of changes is judged and recorded as its author's, never as the
//! store relay's, and only for authors of the store relay's own store.

use aftercase_sync::access::{Principal, Role};
use aftercase_sync::case::edit::{add_note, create_case, Customer, EditContext, NewCase};
use aftercase_sync::case::CaseKind;
use aftercase_sync::protocol::{Frame, RefusalCode, Unsynced, FEATURE_UPLOAD};
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

/// A store relay's connection, hello done with the upload feature.
fn connect(relay: &mut Relay<MemoryStorage>, p: Principal) -> RelaySession {
    let mut s = relay.session(p);
    relay
        .handle(
            &mut s,
            Frame::Hello {
                cursor: 0,
                policy_version: 0,
                app_version: "store relay".into(),
                unsynced: Unsynced::default(),
                features: vec![FEATURE_UPLOAD.into()],
            },
            Millis(NOW),
        )
        .unwrap();
    s
}

/// The changes `edit` makes to `doc`, as bytes.
fn changes(doc: &mut Automerge, edit: impl FnOnce(&mut Automerge)) -> Vec<Vec<u8>> {
    let before = doc.get_heads();
    edit(doc);
    doc.get_changes(&before)
        .into_iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect()
}

fn refused_code(frames: &[Frame]) -> Option<String> {
    frames.iter().find_map(|f| match f {
        Frame::Refused { code, .. } => Some(code.clone()),
        _ => None,
    })
}

fn stored(frames: &[Frame]) -> bool {
    frames.iter().any(|f| matches!(f, Frame::Stored { .. }))
}

#[test]
fn relayed_changes_are_judged_and_recorded_as_their_authors() {
    let case = CaseId::from_bytes([7; 16]);
    let mut relay = Relay::open(MemoryStorage::new(), NonZeroUsize::new(16).unwrap()).unwrap();
    let edge = who("edge-s1", Role::Supervisor, "S1", "edge-s1");
    let alice = who("alice", Role::Staff, "S1", "tab-a");
    let mut s = connect(&mut relay, edge);

    let mut doc = Automerge::new().with_actor(ActorId::from(&[1u8; 16][..]));
    let opened = changes(&mut doc, |d| {
        create_case(
            d,
            &ctx(&alice, 1),
            &NewCase {
                id: case,
                case_no: "S1-tab-a-1".into(),
                kind: CaseKind::Complaint,
                store: alice.store.clone(),
                customer: Customer {
                    name: "Zhao Lei".into(),
                    phone: "13700000000".into(),
                },
                sku: None,
                description: Some("door hinge broken".into()),
            },
        )
        .unwrap()
    });
    let out = relay
        .relayed(&mut s, alice.clone(), case, opened, Millis(NOW))
        .unwrap();
    assert!(stored(&out.frames), "{:?}", out.frames);
    relay.flush().unwrap();
    let audit = relay.audit(case).unwrap();
    assert!(!audit.is_empty());
    assert!(
        audit
            .iter()
            .all(|(_, r)| r.device.as_str() == "tab-a" && r.user.as_str() == "alice"),
        "the audit names the tablet, not the store relay: {audit:?}"
    );
    let meta = relay.meta(case).unwrap().unwrap();
    assert_eq!(meta.created_device.as_str(), "tab-a");

    // A technician of the store who is not assigned the case may not write
    // to it, whoever relays the change: the store relay (a supervisor)
    // could, but the change is judged as the technician's.
    let tom = who("tom", Role::Technician, "S1", "tab-t");
    let mut tom_doc = doc.fork();
    let note = changes(&mut tom_doc, |d| {
        add_note(d, case, &ctx(&tom, 2), "fixed it myself").unwrap()
    });
    let out = relay.relayed(&mut s, tom, case, note, Millis(NOW)).unwrap();
    assert_eq!(refused_code(&out.frames).as_deref(), Some("not_found"));

    // A note claiming the supervisor's name but sent with alice's token is
    // judged as alice's: the entry's author must be the token's.
    let sup = who("sam", Role::Supervisor, "S1", "tab-s");
    let mut forged = doc.fork();
    let as_sup = changes(&mut forged, |d| {
        add_note(d, case, &ctx(&sup, 3), "approved by the supervisor").unwrap()
    });
    let out = relay
        .relayed(&mut s, alice.clone(), case, as_sup, Millis(NOW))
        .unwrap();
    assert!(
        refused_code(&out.frames).is_some(),
        "an entry in another's name went through: {:?}",
        out.frames
    );

    // Authors of another store, and head office, are not the store relay's
    // to relay.
    for author in [
        who("carol", Role::Staff, "S2", "tab-c"),
        who("hq", Role::HeadOffice, "S1", "hq-desk"),
    ] {
        let mut d = doc.fork();
        let note = changes(&mut d, |d| {
            add_note(d, case, &ctx(&author, 4), "from elsewhere").unwrap()
        });
        let out = relay
            .relayed(&mut s, author, case, note, Millis(NOW))
            .unwrap();
        assert_eq!(
            refused_code(&out.frames).as_deref(),
            Some(RefusalCode::Forbidden.as_str())
        );
    }

    // A technician's connection is not a store relay: it sees only its
    // own cases, so it may relay nothing.
    let mut t = connect(&mut relay, who("tim", Role::Technician, "S1", "tab-tim"));
    let mut d = doc.fork();
    let note = changes(&mut d, |d| {
        add_note(d, case, &ctx(&alice, 5), "via a technician").unwrap()
    });
    let out = relay
        .relayed(&mut t, alice.clone(), case, note, Millis(NOW))
        .unwrap();
    assert_eq!(
        refused_code(&out.frames).as_deref(),
        Some(RefusalCode::Forbidden.as_str())
    );

    // Alice's own note, relayed, is hers.
    let note = changes(&mut doc, |d| {
        add_note(d, case, &ctx(&alice, 6), "customer called back").unwrap()
    });
    let out = relay
        .relayed(&mut s, alice, case, note, Millis(NOW))
        .unwrap();
    assert!(stored(&out.frames), "{:?}", out.frames);
    let audit = relay.audit(case).unwrap();
    assert!(audit.iter().all(|(_, r)| r.device.as_str() == "tab-a"));
}
