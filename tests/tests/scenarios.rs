//! Hand-written stories over the in-memory world: the must-hold behaviours
//! of the foundation, checked without sockets.

use aftercase_sync::access::Role;
use aftercase_sync::protocol::Frame;
use aftercase_tests::World;

#[test]
fn two_tablets_edit_one_case_offline_and_converge() {
    let mut w = World::new(1, 64);
    let a = w.add_device("tab-a", Role::Staff, "S1");
    let b = w.add_device("tab-b", Role::Staff, "S1");
    let case = w.create_case(a);
    w.connect(a);
    w.run_until_quiet();
    w.connect(b);
    w.run_until_quiet();
    assert!(w.devices[b].replica.case(case).unwrap().is_some());
    w.disconnect(a);
    w.disconnect(b);
    w.add_note(a, case);
    w.add_note(b, case);
    w.heal_and_check().unwrap();
    let v = w.relay_view(case).unwrap();
    assert_eq!(v.timeline.iter().filter(|e| e.kind == "note").count(), 3);
}

#[test]
fn another_store_never_receives_the_case() {
    let mut w = World::new(2, 64);
    let a = w.add_device("tab-a", Role::Staff, "S1");
    let other = w.add_device("tab-x", Role::Supervisor, "S2");
    let hq = w.add_device("hq-1", Role::HeadOffice, "HQ");
    let case = w.create_case(a);
    w.heal_and_check().unwrap();
    assert!(w.devices[other].replica.case(case).unwrap().is_none());
    assert!(w.devices[hq].replica.case(case).unwrap().is_some());
}

#[test]
fn a_foreign_store_cannot_pull_or_push_a_case_by_id() {
    let mut w = World::new(3, 64);
    let a = w.add_device("tab-a", Role::Staff, "S1");
    let x = w.add_device("tab-x", Role::Staff, "S2");
    let case = w.create_case(a);
    w.heal_and_check().unwrap();
    // A modified client asks for the case by id anyway.
    let mut session = w.relay.session(aftercase_sync::access::Principal {
        user: "intruder".parse().unwrap(),
        role: Role::Staff,
        store: "S2".parse().unwrap(),
        device: "tab-x".parse().unwrap(),
    });
    let now = aftercase_sync::Millis(0);
    w.relay
        .handle(
            &mut session,
            Frame::Hello {
                cursor: 0,
                policy_version: 1,
                app_version: String::new(),
                unsynced: Default::default(),
                features: Vec::new(),
            },
            now,
        )
        .unwrap();
    let mut empty = automerge::Automerge::new();
    let mut st = automerge::sync::State::new();
    use automerge::sync::SyncDoc;
    let msg = empty.generate_sync_message(&mut st).unwrap();
    let out = w
        .relay
        .handle(
            &mut session,
            Frame::Sync {
                doc: case,
                message: msg.encode(),
            },
            now,
        )
        .unwrap();
    assert!(
        matches!(&out.frames[..], [Frame::Refused { .. }]),
        "{:?}",
        out.frames
    );
    assert!(out.changed.is_none());
    let _ = &mut empty;
    assert!(w.devices[x].replica.case(case).unwrap().is_none());
}

#[test]
fn reconnect_announces_only_what_changed() {
    let mut w = World::new(4, 1000);
    let a = w.add_device("tab-a", Role::Staff, "S1");
    let b = w.add_device("tab-b", Role::Staff, "S1");
    let cases: Vec<_> = (0..50).map(|_| w.create_case(a)).collect();
    w.heal_and_check().unwrap();
    w.disconnect(a);
    w.disconnect(b);
    w.add_note(a, cases[7]);
    w.add_note(a, cases[9]);
    w.connect(a);
    w.run_until_quiet();
    // b resumes from its cursor: only the two changed cases are announced.
    w.connect(b);
    let hello = w.deliver(b, true);
    assert!(hello);
    let announced = w.pending_announce(b);
    assert_eq!(announced, 2, "a reconnect must announce only changed cases");
    w.heal_and_check().unwrap();
}

#[test]
fn relay_restart_after_ack_loses_nothing() {
    let mut w = World::new(5, 8);
    let a = w.add_device("tab-a", Role::Staff, "S1");
    let case = w.create_case(a);
    w.connect(a);
    w.run_until_quiet();
    assert!(w.devices[a]
        .replica
        .status()
        .unwrap()
        .pending_cases
        .is_empty());
    w.restart_relay_keeping(0);
    assert!(
        w.relay_view(case).is_some(),
        "acknowledged case lost by relay crash"
    );
    w.heal_and_check().unwrap();
}

#[test]
fn concurrent_moves_through_the_relay_become_a_conflict_everywhere() {
    let mut w = World::new(6, 16);
    let a = w.add_device("tab-a", Role::Supervisor, "S1");
    let b = w.add_device("tab-b", Role::Supervisor, "S1");
    let case = w.create_case(a);
    w.heal_and_check().unwrap();
    w.disconnect(a);
    w.disconnect(b);
    let view = w.devices[a].replica.case(case).unwrap().unwrap();
    let options = view.allowed_transitions.clone();
    assert!(options.len() >= 2, "{options:?}");
    let e = aftercase_sync::replica::Entropy {
        now: w.now(),
        nonce: [1; 16],
        key: [0x5c; 32],
    };
    w.devices[a]
        .replica
        .transition(case, e, &options[0], None)
        .unwrap();
    let e = aftercase_sync::replica::Entropy {
        now: aftercase_sync::Millis(w.now().0 + 1),
        nonce: [2; 16],
        key: [0x5c; 32],
    };
    w.devices[b]
        .replica
        .transition(case, e, &options[1], None)
        .unwrap();
    w.heal_and_check().unwrap();
    let v = w.relay_view(case).unwrap();
    assert_eq!(v.conflicts.len(), 1, "{v:?}");
    assert_eq!(v.conflicts[0].status, "open");
}

#[test]
fn a_case_larger_than_a_frame_arrives_in_pieces() {
    let mut w = World::new(21, 16);
    // A tiny frame limit stands in for a case stored before the size
    // limits existed and too large for one 8 MiB frame.
    w.relay.set_frame_limit(2048);
    let a = w.add_device("tab-a", Role::Staff, "S1");
    let case = w.create_case(a);
    w.disconnect(a);
    let text = |seed: u32| -> String {
        (0..3_000u32)
            .map(|i| char::from_u32(0x4e00 + (i * 7919 + seed) % 20_000).unwrap())
            .collect()
    };
    for i in 0..3u8 {
        let e = aftercase_sync::replica::Entropy {
            now: w.now(),
            nonce: [i + 1; 16],
            key: [0x5c; 32],
        };
        w.devices[a]
            .replica
            .add_note(case, e, &text(i.into()))
            .unwrap();
    }
    w.heal_and_check().unwrap();
    // The relay sends it in pieces, each within the limit.
    let mut s = w.relay.session(aftercase_sync::access::Principal {
        user: "probe".parse().unwrap(),
        role: Role::Staff,
        store: "S1".parse().unwrap(),
        device: "probe".parse().unwrap(),
    });
    let hello = Frame::Hello {
        cursor: u64::MAX,
        policy_version: u32::MAX,
        app_version: String::new(),
        unsynced: Default::default(),
        features: Vec::new(),
    };
    w.relay.handle(&mut s, hello, w.now()).unwrap();
    let fetched = w
        .relay
        .handle(&mut s, Frame::Fetch { docs: vec![case] }, w.now())
        .unwrap()
        .frames;
    assert!(fetched.len() > 2, "{} frames", fetched.len());
    for f in &fetched {
        assert!(
            matches!(f, Frame::Piece { bytes, .. } if bytes.len() <= 2048),
            "{}",
            f.name()
        );
    }
    // A fresh tablet fetches the whole case: in pieces.
    let b = w.add_device("tab-b", Role::Staff, "S1");
    w.heal_and_check().unwrap();
    let seen = w.devices[b]
        .replica
        .case(case)
        .unwrap()
        .expect("tab-b has the case");
    assert_eq!(seen.timeline.iter().filter(|t| t.kind == "note").count(), 4);
    // Offline, tab-a adds more than a frame; tab-b then syncs the change
    // as a sync message in pieces. (Edits through the replica directly are
    // not announced to a live session: both reconnect.)
    w.disconnect(a);
    w.disconnect(b);
    for i in 10..12u8 {
        let e = aftercase_sync::replica::Entropy {
            now: w.now(),
            nonce: [i; 16],
            key: [0x5c; 32],
        };
        w.devices[a]
            .replica
            .add_note(case, e, &text(i.into()))
            .unwrap();
    }
    w.heal_and_check().unwrap();
    let seen = w.devices[b].replica.case(case).unwrap().unwrap();
    assert_eq!(seen.timeline.iter().filter(|t| t.kind == "note").count(), 6);
}

#[test]
fn the_relay_counts_cache_hits_misses_and_evictions() {
    // A cache of one document: using two cases in turn evicts.
    let mut w = World::new(4, 1);
    let a = w.add_device("tab-a", Role::Staff, "S1");
    let first = w.create_case(a);
    let second = w.create_case(a);
    w.heal_and_check().unwrap();
    let before = w.relay.cache_stats();
    w.relay_view(second).unwrap();
    w.relay_view(second).unwrap();
    // `second` is loaded now, so `first` is a miss and evicts it.
    w.relay_view(first).unwrap();
    let after = w.relay.cache_stats();
    assert!(after.hits > before.hits, "{before:?} -> {after:?}");
    assert!(after.misses > before.misses, "{before:?} -> {after:?}");
    assert!(
        after.evictions > before.evictions,
        "{before:?} -> {after:?}"
    );
    assert_eq!(w.relay.cached_docs(), 1);
}
