//! Two relays over one store, as two relay processes over one PostgreSQL
//! database would be: each keeps its own loaded copies of cases, and
//! neither may commit from a copy the other has since changed, nor leave a
//! device of the other uninformed once it has taken in the other's
//! commits (`Relay::observe_commits`).

use aftercase_sync::access::{Principal, Role};
use aftercase_sync::case::edit::Customer;
use aftercase_sync::case::{CaseKind, CaseView};
use aftercase_sync::protocol::{ClientSession, Frame};
use aftercase_sync::relay::Relay;
use aftercase_sync::replica::{DeviceIdentity, Entropy, Replica};
use aftercase_sync::storage::{MemoryStorage, Storage};
use aftercase_sync::{CaseId, DeviceId, Millis, StoreId, UserId};
use std::collections::VecDeque;
use std::num::NonZeroUsize;

const NOW: i64 = 1_800_000_000_000;

struct Tablet {
    principal: Principal,
    replica: Replica<MemoryStorage>,
}

fn tablet(device: &str, n: u8) -> Tablet {
    let principal = Principal {
        user: UserId::new(format!("user-{device}")).unwrap(),
        role: Role::Staff,
        store: StoreId::new("S1").unwrap(),
        device: DeviceId::new(device).unwrap(),
    };
    let replica = Replica::open(
        MemoryStorage::new(),
        DeviceIdentity {
            user: principal.user.clone(),
            role: principal.role,
            store: principal.store.clone(),
            device: principal.device.clone(),
        },
        [n; 16],
    );
    Tablet { principal, replica }
}

fn entropy(step: i64) -> Entropy {
    Entropy {
        now: Millis(NOW + step * 1_000),
        nonce: [step as u8; 16],
        key: [0x5c; 32],
    }
}

/// One connection of `t` to `relay`, until neither side has more to say;
/// the relay flushes whenever it asks to.
fn sync(t: &mut Tablet, relay: &mut Relay<MemoryStorage>, step: i64) {
    let now = Millis(NOW + step * 1_000);
    let mut client = ClientSession::new();
    let mut session = relay.session(t.principal.clone());
    let mut up: VecDeque<Frame> = client.start(&mut t.replica, now).unwrap().into();
    let mut rounds = 0;
    while let Some(f) = up.pop_front() {
        rounds += 1;
        assert!(rounds < 10_000, "the exchange never settles");
        let out = relay.handle(&mut session, f, now).unwrap();
        if out.needs_flush {
            relay.flush().unwrap();
        }
        for g in out.frames {
            up.extend(client.handle(&mut t.replica, g, now).unwrap());
        }
    }
}

fn note_texts(v: &CaseView) -> Vec<String> {
    let mut texts: Vec<String> = v
        .timeline
        .iter()
        .filter(|e| e.kind == "note")
        .filter_map(|e| e.text.clone())
        .collect();
    texts.sort();
    texts
}

fn notes(t: &Tablet, case: CaseId) -> Vec<String> {
    note_texts(
        &t.replica
            .case(case)
            .unwrap()
            .expect("the case is on the tablet"),
    )
}

fn counter(storage: &MemoryStorage) -> u64 {
    u64::from_be_bytes(
        storage
            .get(b"rs")
            .unwrap()
            .expect("a sequence")
            .try_into()
            .unwrap(),
    )
}

#[test]
fn a_relay_commits_over_another_relays_change_and_both_announce_everything() {
    let storage = MemoryStorage::new();
    let cache = NonZeroUsize::new(64).unwrap();
    let mut a = Relay::open(storage.clone(), cache).unwrap();
    let mut b = Relay::open(storage.clone(), cache).unwrap();
    a.follow_others();
    b.follow_others();
    // Both started on a new database: the salt of customer keys is the one
    // stored first, whatever each drew.
    a.init_customer_salt([1; 32]).unwrap();
    b.init_customer_salt([2; 32]).unwrap();
    let (mut x, mut y) = (tablet("tab-x", 1), tablet("tab-y", 2));

    let case = CaseId::from_bytes([9; 16]);
    x.replica
        .create_case(
            case,
            entropy(1),
            CaseKind::Repair,
            Customer {
                name: "Wang Fang".into(),
                phone: "13800138000".into(),
            },
            None,
            None,
        )
        .unwrap();
    sync(&mut x, &mut a, 2);
    let key_at_a = a.summary(case).unwrap().expect("a summary").customer;
    assert!(key_at_a.is_some(), "the case has a customer key");
    // Relay B learns of A's commit and loads the case for tablet y.
    b.observe_commits(counter(&storage)).unwrap();
    sync(&mut y, &mut b, 3);
    assert!(
        y.replica.case(case).unwrap().is_some(),
        "y got the case through B"
    );

    // Both edit; x commits through A first, while B still has its copy.
    x.replica.add_note(case, entropy(4), "from x").unwrap();
    y.replica.add_note(case, entropy(5), "from y").unwrap();
    sync(&mut x, &mut a, 6);
    sync(&mut y, &mut b, 7);

    // B committed on top of A's change, not beside it: y holds both notes,
    // and the one index row of the case names heads that include both.
    assert_eq!(notes(&y, case), vec!["from x", "from y"]);
    let rows = storage.scan_prefix(b"ra").unwrap();
    assert_eq!(rows.len(), 1, "one index row per case: {rows:?}");
    assert_eq!(counter(&storage), 3, "three commits, three numbers");
    let summary = b.summary(case).unwrap().expect("a summary");
    assert_eq!(
        summary.customer, key_at_a,
        "one customer key on both relays"
    );
    let view = b.case_view(case).unwrap().expect("the case");
    assert_eq!(
        note_texts(&view),
        vec!["from x", "from y"],
        "B's copy holds both"
    );

    // A takes in B's commit: x and a fresh tablet hear of y's note through A.
    // A's loaded copy is brought up to date, not loaded again.
    let misses = a.cache_stats().misses;
    let changed = a.observe_commits(counter(&storage)).unwrap();
    let at_a = a.case_view(case).unwrap().expect("the case");
    assert_eq!(note_texts(&at_a), vec!["from x", "from y"]);
    assert_eq!(a.cache_stats().misses, misses, "A's copy was caught up");
    assert_eq!(changed.len(), 1, "B's one commit: {changed:?}");
    assert_eq!((changed[0].case, changed[0].store.as_str()), (case, "S1"));
    assert_eq!(changed[0].seq, 3);
    assert!(
        b.observe_commits(counter(&storage)).unwrap().is_empty(),
        "B passes over its own commit"
    );
    sync(&mut x, &mut a, 8);
    assert_eq!(notes(&x, case), vec!["from x", "from y"]);
    let mut z = tablet("tab-z", 3);
    sync(&mut z, &mut a, 9);
    assert_eq!(notes(&z, case), vec!["from x", "from y"]);
    assert_eq!(
        a.summary(case).unwrap(),
        Some(summary),
        "one summary for both"
    );
}
