//! Seeded random offline bookings across many devices and one relay
//! (issue 12): tablets of one store book, rebook and cancel the same
//! technicians while offline, links drop, devices reboot and the relay
//! restarts. After healing, every overlap of two active bookings of one
//! technician is a scheduling conflict at the relay's read model (fed by
//! flushes, and loaded afresh from storage), every replica derives exactly
//! the conflicts among the cases it holds, every store device holds them
//! all, and no booking a device reported saved is missing.
//!
//! Replay one seed with
//! `AFTERCASE_SIM_SEED=<seed> cargo test -p aftercase-tests --test booking_simulation`.

use aftercase_sync::access::{Principal, Role};
use aftercase_sync::relay::readmodel::ReadModel;
use aftercase_sync::rules::calendar::{self, Placed};
use aftercase_sync::CaseId;
use aftercase_tests::World;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};

/// Brute force over every pair: the conflicts the relay's documents hold.
fn overlaps(w: &mut World) -> Result<BTreeSet<String>, String> {
    let all = w
        .relay
        .list(&Default::default())
        .map_err(|e| e.to_string())?;
    let mut by_store: BTreeMap<String, Vec<Placed>> = BTreeMap::new();
    for (c, meta) in &all {
        let v = w.relay_view(*c).ok_or("relay lost a case")?;
        by_store
            .entry(meta.store.to_string())
            .or_default()
            .extend(calendar::placed(*c, &v.bookings));
    }
    let mut out = BTreeSet::new();
    for slots in by_store.values() {
        for (i, a) in slots.iter().enumerate() {
            for b in &slots[i + 1..] {
                if a.tech == b.tech && a.start < b.end && b.start < a.end {
                    let (x, y) = if a <= b { (a, b) } else { (b, a) };
                    out.insert(format!("schedule:{}:{}", x.booking, y.booking));
                }
            }
        }
    }
    Ok(out)
}

fn model_conflicts(m: &ReadModel, cases: &[CaseId]) -> BTreeSet<String> {
    cases
        .iter()
        .flat_map(|c| m.schedule_conflicts(*c).iter().map(|x| x.id.clone()))
        .collect()
}

fn run(seed: u64, steps: usize) -> Result<usize, String> {
    let mut w = World::new(seed, 2 + (seed as usize % 5) * 3);
    for (i, (role, store)) in [
        (Role::Staff, "S1"),
        (Role::Staff, "S1"),
        (Role::Staff, "S1"),
        (Role::Supervisor, "S1"),
        (Role::Technician, "S1"),
        (Role::Technician, "S1"),
        (Role::Staff, "S2"),
        (Role::Technician, "S2"),
    ]
    .into_iter()
    .enumerate()
    {
        w.add_device(&format!("dev{i}"), role, store);
    }
    w.add_device("hq", Role::HeadOffice, "HQ");
    w.publish_technicians();
    let devices = w.devices.len();
    let mut made: Vec<(CaseId, String)> = Vec::new();
    for _ in 0..steps {
        let d = w.rng.random_range(0..devices);
        match w.rng.random_range(0..100) {
            0..=9 => {
                w.open_bookable(d);
            }
            10..=34 => {
                if let Some(b) = w.book_random(d) {
                    made.push(b);
                }
            }
            35..=44 => w.rebook_random(d),
            45..=49 => w.settle_schedule_conflict(d),
            50..=59 => w.connect(d),
            60..=69 => w.disconnect(d),
            70..=71 => w.reboot_device(d),
            72 => w.restart_relay(),
            73..=76 => w.flush_relay(),
            77..=81 => w.run_until_quiet(),
            _ => {
                let to_relay = w.rng.random_bool(0.5);
                for _ in 0..w.rng.random_range(1..6) {
                    w.deliver(d, to_relay);
                }
            }
        }
    }
    let bookings = made.len();
    eprintln!("seed {seed}: {bookings} bookings made");
    let result = (|| -> Result<usize, String> {
        w.heal_and_check()?;
        let expected = overlaps(&mut w)?;
        let metas = w
            .relay
            .list(&Default::default())
            .map_err(|e| e.to_string())?;
        let all: Vec<CaseId> = metas.iter().map(|(c, _)| *c).collect();
        // Every overlap is surfaced at the relay, and nothing else.
        let live = model_conflicts(&w.live, &all);
        if live != expected {
            return Err(format!(
                "the read model's conflicts differ from the overlaps:\n model   {live:?}\n overlap {expected:?}"
            ));
        }
        let loaded = w.relay_read_model().map_err(|e| e.to_string())?;
        if model_conflicts(&loaded, &all) != expected {
            return Err("the read model loaded from storage differs".into());
        }
        // Every replica derives the conflicts among the cases it holds.
        for d in 0..devices {
            // A technician's device keeps its copy of a case reassigned
            // away from him, which the relay no longer updates (see
            // ARCHITECTURE.md, Known gaps): only the cases he may read
            // are compared.
            let me = Principal {
                user: format!("user-{}", w.devices[d].name).parse().unwrap(),
                role: w.devices[d].role,
                store: w.devices[d].store.clone(),
                device: w.devices[d].name.parse().unwrap(),
            };
            let readable: BTreeSet<CaseId> = metas
                .iter()
                .filter(|(_, m)| aftercase_sync::access::can_read(&me, m))
                .map(|(c, _)| *c)
                .collect();
            let held: BTreeSet<CaseId> = w.devices[d]
                .replica
                .case_ids()
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|c| readable.contains(c))
                .collect();
            let mine: BTreeSet<String> = w.devices[d]
                .replica
                .schedule_conflicts()
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|c| held.contains(&c.first.case) && held.contains(&c.second.case))
                .map(|c| c.id)
                .collect();
            let want: BTreeSet<String> = all
                .iter()
                .filter(|c| held.contains(c))
                .flat_map(|c| w.live.schedule_conflicts(*c).to_vec())
                .filter(|c| held.contains(&c.first.case) && held.contains(&c.second.case))
                .map(|c| c.id)
                .collect();
            if mine != want {
                return Err(format!(
                    "{} derives {mine:?}, the relay {want:?}",
                    w.devices[d].name
                ));
            }
            // A store's own devices and head office hold every case of
            // the store, so they see every conflict of it.
            if w.devices[d].role != Role::Technician {
                let store = w.devices[d].store.to_string();
                let theirs: BTreeSet<String> = all
                    .iter()
                    .flat_map(|c| w.live.schedule_conflicts(*c).to_vec())
                    .filter(|c| {
                        store == "HQ" || w.live.get(c.first.case).is_some_and(|s| s.store == store)
                    })
                    .map(|c| c.id)
                    .collect();
                if mine != theirs {
                    return Err(format!(
                        "{} misses conflicts of its store",
                        w.devices[d].name
                    ));
                }
            }
        }
        // No booking a device reported saved is lost.
        for (case, booking) in &made {
            let v = w.relay_view(*case).ok_or("a booked case is missing")?;
            if !v.bookings.iter().any(|b| &b.id == booking) {
                return Err(format!("booking {booking} of {case} was lost"));
            }
        }
        Ok(expected.len())
    })();
    result.map_err(|e| {
        format!(
            "{e}\nlast events:\n{}",
            w.log[w.log.len().saturating_sub(40)..].join("\n")
        )
    })
}

#[test]
fn random_offline_bookings_surface_every_overlap_and_every_replica_agrees() {
    let seeds: Vec<u64> = match std::env::var("AFTERCASE_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("AFTERCASE_SIM_SEED must be a number")],
        // `scripts/soak.sh` runs thousands.
        Err(_) => (0..std::env::var("AFTERCASE_SIM_SEEDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(24))
            .collect(),
    };
    let single = seeds.len() == 1;
    let mut conflicts = 0;
    for seed in seeds {
        match run(seed, 250) {
            Ok(n) => conflicts += n,
            Err(e) => panic!(
                "booking simulation failed for seed {seed} (replay with AFTERCASE_SIM_SEED={seed}):\n{e}"
            ),
        }
    }
    // The plans must actually leave double bookings to surface.
    assert!(
        single || conflicts > 0,
        "no double booking happened in any plan"
    );
    eprintln!("scheduling conflicts open at the end of the plans: {conflicts}");
}
