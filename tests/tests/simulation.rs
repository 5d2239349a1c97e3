//! Seeded random plans over many devices and one relay: offline edits,
//! connects, disconnects, links cut mid-sync, device reboots and relay
//! restarts. After healing, every replica must equal the relay, no device may
//! hold another store's case, and no edit reported saved may be lost.
//! Changes the relay pushes to live devices are lost, duplicated and
//! delivered out of order at random, and some devices never take pushes.
//! Most connections upload cases the relay never confirmed whole, the rest
//! by sync rounds. Head office erases customers now and then: afterwards
//! no store holds an erased customer's name or phone and no device its key.
//!
//! The same plans also run over two relay nodes sharing one store, as two
//! relay processes over one PostgreSQL database: each connection goes to
//! either, and each node takes in the other's commits at every flush.
//!
//! Replay one seed with `AFTERCASE_SIM_SEED=<seed> cargo test -p aftercase-tests --test simulation`.

use aftercase_sync::access::Role;
use aftercase_tests::{PushStats, UploadStats, World};
use rand::Rng;

fn run(
    seed: u64,
    steps: usize,
    nodes: usize,
    pushes: &mut PushStats,
    uploads: &mut UploadStats,
) -> Result<usize, String> {
    let mut w = World::new(seed, 1 + (seed as usize % 6) * 4);
    w.push_faults = true;
    for _ in 1..nodes {
        w.add_relay_node();
    }
    let stores = ["S1", "S2"];
    let n = w.rng.random_range(4..9);
    for i in 0..n {
        let store = stores[i % stores.len()];
        let role = match i % 5 {
            4 => Role::Supervisor,
            3 => Role::Technician,
            _ => Role::Staff,
        };
        w.add_device(&format!("dev{i}"), role, store);
    }
    w.add_device("hq", Role::HeadOffice, "HQ");
    // Technicians are bookable, so repairs get dispatched and
    // installations scheduled (each by a booking).
    w.publish_technicians();
    let devices = w.devices.len();
    for _ in 0..steps {
        let d = w.rng.random_range(0..devices);
        match w.rng.random_range(0..100) {
            0..=11 => {
                if w.devices[d].role != Role::HeadOffice {
                    w.create_case(d);
                }
            }
            12..=35 => {
                let cases = w.devices[d].replica.case_ids().map_err(|e| e.to_string())?;
                if !cases.is_empty() {
                    let c = cases[w.rng.random_range(0..cases.len())];
                    w.add_note(d, c);
                }
            }
            36..=57 => {
                let cases = w.devices[d].replica.case_ids().map_err(|e| e.to_string())?;
                if !cases.is_empty() {
                    // Concentrate moves on a few cases (the same ones on every
                    // device of a store) so that concurrent moves, and forks, happen.
                    let c = cases[w.rng.random_range(0..cases.len().min(3))];
                    w.random_move(d, c);
                }
            }
            58..=63 => w.connect(d),
            64..=68 => w.disconnect(d),
            69..=70 => w.reboot_device(d),
            71 => w.restart_relay(),
            78..=81 => w.assign_random(d),
            72..=77 => {
                // Two devices of one store sync, go offline, and both move
                // the same case.
                let others: Vec<usize> = (0..devices)
                    .filter(|&o| o != d && w.devices[o].store == w.devices[d].store)
                    .collect();
                if !others.is_empty() {
                    let o = others[w.rng.random_range(0..others.len())];
                    w.connect(d);
                    w.connect(o);
                    w.run_until_quiet();
                    let mine = w.devices[d].replica.case_ids().map_err(|e| e.to_string())?;
                    let theirs = w.devices[o].replica.case_ids().map_err(|e| e.to_string())?;
                    let common: Vec<_> = mine.into_iter().filter(|c| theirs.contains(c)).collect();
                    if !common.is_empty() {
                        let c = common[w.rng.random_range(0..common.len())];
                        w.disconnect(d);
                        w.disconnect(o);
                        w.random_move(d, c);
                        w.random_move(o, c);
                    }
                }
            }
            82..=85 => w.flush_relay(),
            86 => {
                // Head office erases a customer.
                let all = w
                    .relay
                    .list(&Default::default())
                    .map_err(|e| e.to_string())?;
                if !all.is_empty() {
                    let (c, _) = all[w.rng.random_range(0..all.len())];
                    w.erase(c);
                }
            }
            _ => {
                let to_relay = w.rng.random_bool(0.5);
                for _ in 0..w.rng.random_range(1..6) {
                    w.deliver(d, to_relay);
                }
            }
        }
    }
    let moves = w.log.iter().filter(|l| l.contains(" moves to ")).count();
    let resolves = w.log.iter().filter(|l| l.contains(" resolves ")).count();
    let bookings = w.log.iter().filter(|l| l.contains(" booking ")).count();
    let erasures = w.log.iter().filter(|l| l.contains(" erases ")).count();
    eprintln!(
        "seed {seed}: {moves} moves ({bookings} by booking), {resolves} resolutions, {erasures} erasures"
    );
    let result = w.heal_and_check().and_then(|()| {
        let all = w
            .relay
            .list(&Default::default())
            .map_err(|e| e.to_string())?;
        // The read model, written at each commit (and through relay
        // crashes that kept only some batches), matches the documents.
        // So does head office's in-memory model, both as the shell kept
        // it (loaded at each restart, fed flushed commits) and as loaded
        // afresh from storage.
        let loaded = w.relay_read_model().map_err(|e| e.to_string())?;
        if w.live.len() != all.len() || loaded.len() != all.len() {
            return Err(format!(
                "read model holds {} cases live and {} loaded, the relay {}",
                w.live.len(),
                loaded.len(),
                all.len()
            ));
        }
        for (c, _) in &all {
            let stored = w.relay.summary(*c).map_err(|e| e.to_string())?;
            let derived = w.relay.derive_summary(*c).map_err(|e| e.to_string())?;
            if stored.is_none() || stored != derived {
                return Err(format!(
                    "read model differs on {c}:\n stored  {stored:?}\n derived {derived:?}"
                ));
            }
            if w.live.get(*c) != derived.as_ref() || loaded.get(*c) != derived.as_ref() {
                return Err(format!(
                    "in-memory read model differs on {c}:\n live    {:?}\n derived {derived:?}",
                    w.live.get(*c)
                ));
            }
        }
        Ok(all
            .iter()
            .filter_map(|(c, _)| w.relay.case_view(*c).ok().flatten())
            .map(|v| v.conflicts.len())
            .sum())
    });
    pushes.delivered += w.pushes.delivered;
    pushes.lost += w.pushes.lost;
    pushes.duplicated += w.pushes.duplicated;
    pushes.reordered += w.pushes.reordered;
    uploads.whole += w.uploads.whole;
    uploads.stored += w.uploads.stored;
    result.map_err(|e| {
        format!(
            "{e}\nlast events:\n{}",
            w.log[w.log.len().saturating_sub(40)..].join("\n")
        )
    })
}

#[test]
fn random_plans_converge_and_lose_nothing() {
    let seeds: Vec<u64> = match std::env::var("AFTERCASE_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("AFTERCASE_SIM_SEED must be a number")],
        Err(_) => (0..40).collect(),
    };
    let single = seeds.len() == 1;
    let mut forks = 0;
    let mut pushes = PushStats::default();
    let mut uploads = UploadStats::default();
    for seed in seeds {
        match run(seed, 300, 1, &mut pushes, &mut uploads) {
            Ok(n) => forks += n,
            Err(e) => panic!(
                "simulation failed for seed {seed} (replay with AFTERCASE_SIM_SEED={seed}):\n{e}"
            ),
        }
    }
    // The plans must actually exercise concurrent workflow moves.
    assert!(single || forks > 0, "no workflow fork happened in any plan");
    // And the live-delivery shortcut, with every fault.
    assert!(
        single
            || (pushes.delivered > 0
                && pushes.lost > 0
                && pushes.duplicated > 0
                && pushes.reordered > 0),
        "pushes were not exercised: {pushes:?}"
    );
    // And whole uploads, answered.
    assert!(
        single || (uploads.whole > 0 && uploads.stored > 0),
        "whole uploads were not exercised: {uploads:?}"
    );
    eprintln!("pushes: {pushes:?}");
    eprintln!("uploads: {uploads:?}");
    eprintln!("workflow forks seen at the end of the plans: {forks}");
}

#[test]
fn random_plans_over_two_relay_nodes_converge_and_lose_nothing() {
    let seeds: Vec<u64> = match std::env::var("AFTERCASE_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("AFTERCASE_SIM_SEED must be a number")],
        Err(_) => (100..125).collect(),
    };
    let single = seeds.len() == 1;
    let mut pushes = PushStats::default();
    let mut uploads = UploadStats::default();
    for seed in seeds {
        if let Err(e) = run(seed, 300, 2, &mut pushes, &mut uploads) {
            panic!(
                "two-node simulation failed for seed {seed} (replay with AFTERCASE_SIM_SEED={seed}):\n{e}"
            );
        }
    }
    assert!(
        single || (pushes.delivered > 0 && uploads.stored > 0),
        "two nodes: pushes {pushes:?}, uploads {uploads:?}"
    );
    eprintln!("two nodes: pushes {pushes:?}, uploads {uploads:?}");
}

/// A device that has synced a case and stays connected is pushed each new
/// change of it as stored, applies it and answers nothing; a device that
/// does not take pushes gets the same change by a sync round.
#[test]
fn a_live_device_is_pushed_new_changes_and_answers_nothing() {
    for push in [true, false] {
        let mut w = World::new(2, 8);
        w.push = Some(push);
        let a = w.add_device("a", Role::Staff, "S1");
        let b = w.add_device("b", Role::Staff, "S1");
        w.connect(a);
        w.connect(b);
        let case = w.create_case(a);
        w.run_until_quiet();
        // The first note makes `b` sync the case (it fetched it whole).
        w.add_note(a, case);
        w.run_until_quiet();
        let (pushed, sent) = (w.pushes.delivered, w.devices[b].sent.clone());
        for _ in 0..3 {
            w.add_note(a, case);
            w.run_until_quiet();
        }
        let view = w
            .device_views(b)
            .into_iter()
            .find(|v| v.id == case.to_string());
        let notes = view.map_or(0, |v| {
            v.timeline
                .iter()
                .filter(|e| e.text.as_deref().is_some_and(|t| t.starts_with("note-a-")))
                .count()
        });
        assert_eq!(notes, 4, "b holds every note (push {push})");
        if push {
            assert_eq!(w.pushes.delivered - pushed, 3, "one push per note");
            assert_eq!(w.devices[b].sent, sent, "b answered a push");
        } else {
            assert_eq!(w.pushes.delivered, 0);
            assert!(
                w.devices[b].sent.get("sync") > sent.get("sync"),
                "without pushes b syncs each change"
            );
        }
        w.heal_and_check().unwrap();
    }
}

/// A case made offline is uploaded whole in one frame, answered by
/// `Stored`. The relay's answer confirms only what was sent: a note
/// written after the upload was read (by a path that does not tell the
/// session, as an edit racing the upload does) keeps the case's mark, and
/// the note still reaches the relay. A device that does not upload whole
/// gets there by sync rounds.
#[test]
fn a_case_sent_whole_is_confirmed_only_for_what_was_sent() {
    for whole in [true, false] {
        let mut w = World::new(5, 8);
        w.upload = Some(whole);
        let a = w.add_device("a", Role::Staff, "S1");
        let case = w.create_case(a);
        w.connect(a);
        // Hello, then the welcome, then the upload reaches the relay.
        while w.devices[a].sent.get("changes").copied().unwrap_or(0) == 0
            && w.devices[a].sent.get("sync").copied().unwrap_or(0) == 0
        {
            let progressed = w.deliver(a, true) | w.deliver(a, false);
            assert!(progressed, "the upload never left the device");
        }
        let now = w.now();
        w.devices[a]
            .replica
            .add_note(
                case,
                aftercase_sync::replica::Entropy {
                    now,
                    nonce: [9; 16],
                    key: [0x5c; 32],
                },
                "written while the upload was in flight",
            )
            .unwrap();
        w.run_until_quiet();
        assert_eq!(w.uploads.whole, usize::from(whole), "sent whole ({whole})");
        assert_eq!(w.uploads.stored, usize::from(whole), "answered ({whole})");
        let at_relay = w.relay_view(case).expect("the relay holds the case");
        assert!(
            at_relay
                .timeline
                .iter()
                .any(|e| e.text.as_deref() == Some("written while the upload was in flight")),
            "the note written meanwhile reached the relay (whole {whole})"
        );
        assert!(
            w.devices[a].replica.dirty_cases().unwrap().is_empty(),
            "nothing left unconfirmed (whole {whole})"
        );
        w.heal_and_check().unwrap();
    }
}
