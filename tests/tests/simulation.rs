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
//! Each plan is a list of steps drawn from its seed; a plan that fails is
//! saved as JSON under `target/sim-plans/` and replays exactly with
//! `AFTERCASE_SIM_PLAN=<file> cargo test -p aftercase-tests --test simulation`
//! (edit the file to cut it down). `AFTERCASE_SIM_SEED=<seed>` replays one
//! seed; `AFTERCASE_SIM_SEEDS=<n>` runs n seeds (200 in CI, 10,000 in
//! `scripts/soak.sh`).

use aftercase_sync::access::Role;
use aftercase_tests::{PushStats, UploadStats, World};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// One step of a plan. Cases are named by their position in the acting
/// device's list at that moment (or the relay's, for an erasure), so a
/// saved plan replays exactly: the world's own randomness (delivery order,
/// nonces, which move a case takes) is drawn from the plan's seed, apart
/// from the plan's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Step {
    Create(usize),
    Note(usize, usize),
    Move(usize, usize),
    Connect(usize),
    Disconnect(usize),
    Reboot(usize),
    RestartRelay,
    Assign(usize),
    /// Two devices of one store sync, go offline, and both move the same
    /// case (by its position among the cases both hold).
    ConcurrentMoves(usize, usize, usize),
    Flush,
    Deliver(usize, bool, usize),
    /// Head office erases a customer.
    Erase(usize),
}

/// A whole plan: what `AFTERCASE_SIM_PLAN` replays.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Plan {
    seed: u64,
    nodes: usize,
    devices: usize,
    steps: Vec<Step>,
}

fn pick(rng: &mut SmallRng, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        rng.random_range(0..n)
    }
}

/// The next step of a random plan, given the world as it is.
fn next_step(rng: &mut SmallRng, w: &World) -> Result<Step, String> {
    let devices = w.devices.len();
    let d = rng.random_range(0..devices);
    let held = w.devices[d]
        .replica
        .case_ids()
        .map_err(|e| e.to_string())?
        .len();
    Ok(match rng.random_range(0..100) {
        0..=11 => Step::Create(d),
        12..=35 => Step::Note(d, pick(rng, held)),
        // Moves concentrate on a few cases (the same ones on every device
        // of a store) so that concurrent moves, and forks, happen.
        36..=57 => Step::Move(d, pick(rng, held.min(3))),
        58..=63 => Step::Connect(d),
        64..=68 => Step::Disconnect(d),
        69..=70 => Step::Reboot(d),
        71 => Step::RestartRelay,
        72..=77 => Step::ConcurrentMoves(d, rng.random_range(0..devices), rng.random_range(0..64)),
        78..=81 => Step::Assign(d),
        82..=85 => Step::Flush,
        86 => Step::Erase(rng.random_range(0..1024)),
        _ => Step::Deliver(d, rng.random_bool(0.5), rng.random_range(1..6)),
    })
}

/// Carries out one step.
fn apply(w: &mut World, step: &Step) -> Result<(), String> {
    let case_at =
        |w: &World, d: usize, i: usize| -> Result<Option<aftercase_sync::CaseId>, String> {
            let cases = w.devices[d].replica.case_ids().map_err(|e| e.to_string())?;
            Ok(cases.get(i).copied())
        };
    match *step {
        Step::Create(d) => {
            if w.devices[d].role != Role::HeadOffice {
                w.create_case(d);
            }
        }
        Step::Note(d, i) => {
            if let Some(c) = case_at(w, d, i)? {
                w.add_note(d, c);
            }
        }
        Step::Move(d, i) => {
            if let Some(c) = case_at(w, d, i)? {
                w.random_move(d, c);
            }
        }
        Step::Connect(d) => w.connect(d),
        Step::Disconnect(d) => w.disconnect(d),
        Step::Reboot(d) => w.reboot_device(d),
        Step::RestartRelay => w.restart_relay(),
        Step::Assign(d) => w.assign_random(d),
        Step::ConcurrentMoves(d, o, i) => {
            if o != d && w.devices[o].store == w.devices[d].store {
                w.connect(d);
                w.connect(o);
                w.run_until_quiet();
                let mine = w.devices[d].replica.case_ids().map_err(|e| e.to_string())?;
                let theirs = w.devices[o].replica.case_ids().map_err(|e| e.to_string())?;
                let common: Vec<_> = mine.into_iter().filter(|c| theirs.contains(c)).collect();
                if !common.is_empty() {
                    let c = common[i % common.len()];
                    w.disconnect(d);
                    w.disconnect(o);
                    w.random_move(d, c);
                    w.random_move(o, c);
                }
            }
        }
        Step::Flush => w.flush_relay(),
        Step::Erase(i) => {
            let all = w
                .relay
                .list(&Default::default())
                .map_err(|e| e.to_string())?;
            if !all.is_empty() {
                let (c, _) = all[i % all.len()];
                w.erase(c);
            }
        }
        Step::Deliver(d, to_relay, n) => {
            for _ in 0..n {
                w.deliver(d, to_relay);
            }
        }
    }
    Ok(())
}

/// Where a failed plan is saved.
fn plan_path(seed: u64, nodes: usize) -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target
        .join("sim-plans")
        .join(format!("seed-{seed}-nodes-{nodes}.json"))
}

/// Runs the plan of `seed` (generated as it goes, or `replay`), and saves
/// it when it fails.
fn run(
    seed: u64,
    steps: usize,
    nodes: usize,
    replay: Option<&Plan>,
    pushes: &mut PushStats,
    uploads: &mut UploadStats,
) -> Result<usize, String> {
    let (seed, nodes) = replay.map_or((seed, nodes), |p| (p.seed, p.nodes));
    let mut plan_rng = SmallRng::seed_from_u64(seed ^ 0x005e_ed0f_9a11);
    let mut plan = Plan {
        seed,
        nodes,
        devices: replay.map_or_else(|| plan_rng.random_range(4..9), |p| p.devices),
        steps: Vec::new(),
    };
    let result = execute(
        &mut plan,
        steps,
        replay,
        &mut plan_rng,
        pushes,
        uploads,
        None,
    );
    if let Err(e) = result {
        let path = plan_path(seed, nodes);
        let saved = std::fs::create_dir_all(path.parent().unwrap_or(&path)).and_then(|()| {
            std::fs::write(&path, serde_json::to_vec_pretty(&plan).unwrap_or_default())
        });
        return Err(match saved {
            Ok(()) => format!(
                "{e}\nthe plan ({} steps) is saved: replay it with AFTERCASE_SIM_PLAN={}",
                plan.steps.len(),
                path.display()
            ),
            Err(io) => format!("{e}\n(the plan could not be saved: {io})"),
        });
    }
    result
}

fn execute(
    plan: &mut Plan,
    steps: usize,
    replay: Option<&Plan>,
    plan_rng: &mut SmallRng,
    pushes: &mut PushStats,
    uploads: &mut UploadStats,
    log: Option<&mut Vec<String>>,
) -> Result<usize, String> {
    let seed = plan.seed;
    let mut w = World::new(seed, 1 + (seed as usize % 6) * 4);
    w.push_faults = true;
    for _ in 1..plan.nodes {
        w.add_relay_node();
    }
    let stores = ["S1", "S2"];
    for i in 0..plan.devices {
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
    let count = replay.map_or(steps, |p| p.steps.len());
    for k in 0..count {
        let step = match replay {
            Some(p) => p.steps[k].clone(),
            None => next_step(plan_rng, &w)?,
        };
        plan.steps.push(step.clone());
        apply(&mut w, &step)?;
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
    if let Some(log) = log {
        *log = w.log.clone();
    }
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

/// The plans a test over `nodes` relay nodes runs: the saved plan named by
/// `AFTERCASE_SIM_PLAN` (if it is for as many nodes), one seed
/// (`AFTERCASE_SIM_SEED`), or `AFTERCASE_SIM_SEEDS` seeds from `first`
/// (`count` by default: `scripts/soak.sh` runs thousands).
fn plans(nodes: usize, first: u64, count: u64) -> (Vec<u64>, Option<Plan>) {
    if let Ok(path) = std::env::var("AFTERCASE_SIM_PLAN") {
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let plan: Plan = serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        if plan.nodes != nodes {
            return (Vec::new(), None);
        }
        return (vec![plan.seed], Some(plan));
    }
    if let Ok(s) = std::env::var("AFTERCASE_SIM_SEED") {
        return (
            vec![s.parse().expect("AFTERCASE_SIM_SEED must be a number")],
            None,
        );
    }
    let count = std::env::var("AFTERCASE_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(count);
    ((first..first + count).collect(), None)
}

/// A plan saved as JSON and read back runs exactly as it ran: the same
/// events, in the same order, to the same end.
#[test]
fn a_saved_plan_replays_exactly() {
    let (mut p, mut u) = (PushStats::default(), UploadStats::default());
    let seed = 3;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut plan = Plan {
        seed,
        nodes: 1,
        devices: 6,
        steps: Vec::new(),
    };
    let mut first_log = Vec::new();
    let first = execute(
        &mut plan,
        150,
        None,
        &mut rng,
        &mut p,
        &mut u,
        Some(&mut first_log),
    );
    let saved: Plan = serde_json::from_slice(&serde_json::to_vec(&plan).unwrap()).unwrap();
    let mut again = Plan {
        steps: Vec::new(),
        ..saved.clone()
    };
    let mut second_log = Vec::new();
    let second = execute(
        &mut again,
        0,
        Some(&saved),
        &mut rng,
        &mut p,
        &mut u,
        Some(&mut second_log),
    );
    assert_eq!(first, second);
    assert_eq!(again.steps, plan.steps);
    assert!(first_log.len() > 50, "{}", first_log.len());
    assert_eq!(first_log, second_log);
}

#[test]
fn random_plans_converge_and_lose_nothing() {
    let (seeds, replay) = plans(1, 0, 150);
    if seeds.is_empty() {
        return;
    }
    let single = seeds.len() == 1;
    let mut forks = 0;
    let mut pushes = PushStats::default();
    let mut uploads = UploadStats::default();
    for seed in seeds {
        match run(seed, 300, 1, replay.as_ref(), &mut pushes, &mut uploads) {
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
    let (seeds, replay) = plans(2, 100, 50);
    if seeds.is_empty() {
        return;
    }
    let single = seeds.len() == 1;
    let mut pushes = PushStats::default();
    let mut uploads = UploadStats::default();
    for seed in seeds {
        if let Err(e) = run(seed, 300, 2, replay.as_ref(), &mut pushes, &mut uploads) {
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
