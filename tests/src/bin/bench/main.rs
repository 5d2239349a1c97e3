//! Benchmark harness (not part of the test suite): runs each scenario with
//! our protocol and with the baseline that automerge-repo-style peers use
//! (one Automerge sync round per document, one persisted `sync::State` per
//! document), in the same process over the same in-process transport, and
//! prints one markdown table. `scripts/bench.sh` runs it; `--quick` uses
//! small sizes.
//!
//! Transport: frames are encoded and decoded exactly as on the wire and
//! their bytes counted, but passed in memory (no socket latency), for both
//! sides alike. Storage is real sled in temporary directories.

use aftercase_sync::access::{Principal, Role};
use aftercase_sync::case::edit::{self, Customer, EditContext, NewCase};
use aftercase_sync::case::CaseKind;
use aftercase_sync::protocol::{ClientSession, Frame};
use aftercase_sync::relay::{Relay, RelaySession};
use aftercase_sync::replica::{DeviceIdentity, Entropy, Replica};
use aftercase_sync::storage::{docs, keys, Batch, SledStorage, Storage};
use aftercase_sync::{CaseId, Millis};
use automerge::sync::{Message, SyncDoc};
use automerge::Automerge;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

mod attacks;
mod baseline;
mod edge;
mod evidence;
mod fanout;
mod fanout_replicas;
mod head_office;
mod judge;
mod local_writes;
mod memory;
mod relay_process;

/// One line of the results table.
pub struct Row {
    pub scenario: String,
    pub ours: String,
    pub baseline: String,
    pub ratio: String,
}

fn identity(device: &str) -> DeviceIdentity {
    identity_in(device, "S1")
}

fn identity_in(device: &str, store: &str) -> DeviceIdentity {
    DeviceIdentity {
        user: "bench".parse().expect("valid"),
        role: Role::Staff,
        store: store.parse().expect("valid"),
        device: device.parse().expect("valid"),
    }
}

fn principal(device: &str, store: &str) -> Principal {
    Principal {
        user: "bench".parse().expect("valid"),
        role: Role::Staff,
        store: store.parse().expect("valid"),
        device: device.parse().expect("valid"),
    }
}

fn ctx(n: u64) -> EditContext {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&n.to_be_bytes());
    EditContext {
        author: "bench".parse().expect("valid"),
        role: Role::Staff,
        device: "tab-a".parse().expect("valid"),
        now: Millis(1_790_000_000_000 + n as i64),
        nonce,
    }
}

/// A case of about `changes` changes: the creation plus notes.
fn make_case(i: u64, changes: u64) -> (CaseId, Automerge) {
    make_case_in(i, changes, "S1")
}

/// The id of the `i`th case the scenarios make.
fn case_id(i: u64) -> CaseId {
    // The index goes in the last bytes: the UUID version and variant bits
    // (bytes 6 and 8) would otherwise fold distinct indexes together.
    let mut id_bytes = [0u8; 16];
    id_bytes[8..].copy_from_slice(&i.to_be_bytes());
    CaseId::from_random_bytes(id_bytes)
}

/// [`make_case`] for a case of `store`.
fn make_case_in(i: u64, changes: u64, store: &str) -> (CaseId, Automerge) {
    let id = case_id(i);
    let mut doc = Automerge::new();
    edit::create_case(
        &mut doc,
        &ctx(i * 100),
        &NewCase {
            id,
            case_no: format!("{store}-tab-a-{i}"),
            kind: CaseKind::Repair,
            store: store.parse().expect("valid"),
            customer: Customer {
                name: "Bench Customer".into(),
                phone: "13800000000".into(),
            },
            sku: Some("TV-55".into()),
            description: Some("No picture after power cut".into()),
        },
    )
    .expect("create");
    for n in 1..changes {
        edit::add_note(
            &mut doc,
            id,
            &ctx(i * 100 + n),
            &format!("note {n}: called the customer"),
        )
        .expect("note");
    }
    (id, doc)
}

/// Writes cases straight into a device's storage as local, unsynced work.
fn seed_device(storage: &dyn Storage, cases: &[(CaseId, Automerge)]) {
    for chunk in cases.chunks(500) {
        let mut b = Batch::new();
        for (id, doc) in chunk {
            docs::stage_changes(&mut b, *id, &doc.get_changes(&[]));
            b.put(keys::local_case(*id), Vec::new());
            b.put(keys::dirty(*id), Vec::new());
        }
        storage.apply(b).expect("seed");
    }
    storage.flush().expect("flush");
}

#[derive(Default)]
struct Traffic {
    bytes: u64,
    frames: u64,
    relay_time: Duration,
    device_time: Duration,
    refused: usize,
    /// Relay turns (each handles what arrived, then flushes if needed).
    turns: u64,
    flushes: u64,
}

/// Runs one device connection against the relay until the device is settled.
fn run_session(
    relay: &mut Relay<SledStorage>,
    r: &mut Replica<SledStorage>,
    device: &str,
) -> Traffic {
    run_session_as(relay, r, device, "S1")
}

/// [`run_session`] for a device of `store`.
fn run_session_as<S: Storage>(
    relay: &mut Relay<SledStorage>,
    r: &mut Replica<S>,
    device: &str,
    store: &str,
) -> Traffic {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let client = ClientSession::new().with_load_threads(threads);
    run_session_with(relay, r, device, store, client)
}

/// [`run_session_as`] with the device's side of the session as given.
fn run_session_with<S: Storage>(
    relay: &mut Relay<SledStorage>,
    r: &mut Replica<S>,
    device: &str,
    store: &str,
    mut client: ClientSession,
) -> Traffic {
    let mut t = Traffic::default();
    let mut rs: RelaySession = relay.session(principal(device, store));
    let mut to_relay: std::collections::VecDeque<Vec<u8>> = client
        .start(r, Millis(1_790_000_000_000))
        .expect("start")
        .iter()
        .map(Frame::encode)
        .collect();
    let mut to_device: std::collections::VecDeque<Vec<u8>> = Default::default();
    let now = Millis(1_790_000_000_000);
    loop {
        if !to_relay.is_empty() {
            // The relay handles what has arrived, flushes once for all of
            // it (group commit), then replies.
            let t0 = Instant::now();
            let mut flush = false;
            let mut replies = Vec::new();
            while let Some(b) = to_relay.pop_front() {
                t.bytes += b.len() as u64;
                t.frames += 1;
                let out = relay
                    .handle(&mut rs, Frame::decode(&b).expect("frame"), now)
                    .expect("relay");
                flush |= out.needs_flush;
                replies.extend(out.frames.iter().map(Frame::encode));
            }
            t.turns += 1;
            if flush {
                t.flushes += 1;
                relay.flush().expect("flush");
            }
            to_device.extend(replies);
            t.relay_time += t0.elapsed();
            continue;
        }
        if !to_device.is_empty() {
            // Likewise the device handles everything that has arrived.
            let t0 = Instant::now();
            while let Some(b) = to_device.pop_front() {
                t.bytes += b.len() as u64;
                t.frames += 1;
                let out = client
                    .handle(r, Frame::decode(&b).expect("frame"), now)
                    .expect("device");
                to_relay.extend(out.iter().map(Frame::encode));
            }
            t.device_time += t0.elapsed();
            continue;
        }
        break;
    }
    assert!(client.is_settled(), "session ended unsettled");
    t.refused = client.refused().len();
    relay.end_session(rs).expect("end");
    eprintln!(
        "  session {device}: relay {}, device {}; {} relay turns, {} flushes",
        ms(t.relay_time),
        ms(t.device_time),
        t.turns,
        t.flushes
    );
    t
}

/// The baseline: every document gets its own sync round with its own
/// persisted state, loaded from storage on both sides.
fn baseline_round(ids: &[CaseId], device: &SledStorage, relay_docs: &SledStorage) -> Traffic {
    let mut t = Traffic::default();
    for id in ids {
        let mut a = docs::load_doc(device, *id)
            .expect("load")
            .map(|l| l.doc)
            .unwrap_or_default();
        let mut b = docs::load_doc(relay_docs, *id)
            .expect("load")
            .map(|l| l.doc)
            .unwrap_or_default();
        let before_a = a.get_heads();
        let before_b = b.get_heads();
        let mut sa = docs::load_sync_state(device, *id, "baseline").expect("state");
        let mut sb = docs::load_sync_state(relay_docs, *id, "baseline").expect("state");
        loop {
            let mut progressed = false;
            if let Some(m) = a.generate_sync_message(&mut sa) {
                let bytes = m.encode();
                t.bytes += bytes.len() as u64 + 18;
                t.frames += 1;
                b.receive_sync_message(&mut sb, Message::decode(&bytes).expect("msg"))
                    .expect("recv");
                progressed = true;
            }
            if let Some(m) = b.generate_sync_message(&mut sb) {
                let bytes = m.encode();
                t.bytes += bytes.len() as u64 + 18;
                t.frames += 1;
                a.receive_sync_message(&mut sa, Message::decode(&bytes).expect("msg"))
                    .expect("recv");
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        let mut ba = Batch::new();
        docs::stage_changes(&mut ba, *id, &a.get_changes(&before_a));
        docs::stage_sync_state(&mut ba, *id, "baseline", &sa);
        device.apply(ba).expect("save");
        let mut bb = Batch::new();
        docs::stage_changes(&mut bb, *id, &b.get_changes(&before_b));
        docs::stage_sync_state(&mut bb, *id, "baseline", &sb);
        relay_docs.apply(bb).expect("save");
    }
    device.flush().expect("flush");
    relay_docs.flush().expect("flush");
    t
}

use aftercase_tests::quantile::percentile;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// [`ms`] for figures well under a millisecond.
fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// `p50 .., p99 .., max ..` of sorted samples, each shown by `unit`
/// ([`ms`] or [`us`]).
fn spread(sorted: &[Duration], unit: fn(Duration) -> String) -> String {
    format!(
        "p50 {}, p99 {}, max {}",
        unit(percentile(sorted, 0.5)),
        unit(percentile(sorted, 0.99)),
        unit(sorted.last().copied().unwrap_or_default())
    )
}

fn kib(b: u64) -> String {
    if b > 10 * 1024 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

/// Upload, initial sync and reconnect, ours against the baseline.
fn sync_scenarios(tmp: &std::path::Path, quick: bool) -> Vec<Row> {
    let n: u64 = if quick { 500 } else { 10_000 };
    let changed: u64 = 10;
    let open = |name: &str| SledStorage::open(&tmp.join(name)).expect("sled");
    eprintln!("building {n} cases of 20 changes...");
    let cases: Vec<(CaseId, Automerge)> = (0..n).map(|i| make_case(i, 20)).collect();
    let ids: Vec<CaseId> = cases.iter().map(|(id, _)| *id).collect();
    let mut rows = Vec::new();

    // Upload from the device that made them (sets up the relay).
    let relay_store = open("relay");
    let mut relay =
        Relay::open(relay_store, NonZeroUsize::new(4096).expect("nonzero")).expect("relay");
    let a_store = open("device-a");
    seed_device(&a_store, &cases);
    let mut a = Replica::open(a_store.clone(), identity("tab-a"), [1; 16]);
    let t0 = Instant::now();
    let up = run_session(&mut relay, &mut a, "tab-a");
    let upload = t0.elapsed();
    // Baseline: the same cases uploaded by sync rounds (a device or relay
    // without whole uploads) from a second device into a second relay.
    let mut relay_by_rounds = Relay::open(
        open("relay-by-rounds"),
        NonZeroUsize::new(4096).expect("nonzero"),
    )
    .expect("relay");
    let rounds_store = open("device-by-rounds");
    seed_device(&rounds_store, &cases);
    let mut by_rounds = Replica::open(rounds_store, identity("tab-a"), [3; 16]);
    let t0 = Instant::now();
    let base_up = run_session_with(
        &mut relay_by_rounds,
        &mut by_rounds,
        "tab-a",
        "S1",
        ClientSession::new().with_upload(false),
    );
    let upload_by_rounds = t0.elapsed();
    drop(relay_by_rounds);
    rows.push(Row {
        scenario: format!("Upload {n} cases from one device (sent whole vs by sync rounds)"),
        ours: format!(
            "{} (relay {}, device {}), {}",
            ms(upload),
            ms(up.relay_time),
            ms(up.device_time),
            kib(up.bytes)
        ),
        baseline: format!(
            "{} (relay {}, device {}), {}",
            ms(upload_by_rounds),
            ms(base_up.relay_time),
            ms(base_up.device_time),
            kib(base_up.bytes)
        ),
        ratio: format!(
            "{:.1}x faster",
            upload_by_rounds.as_secs_f64() / upload.as_secs_f64()
        ),
    });

    // Initial sync of a fresh tablet.
    let b_store = open("device-b");
    let mut b = Replica::open(b_store.clone(), identity("tab-b"), [2; 16]);
    let t0 = Instant::now();
    let init = run_session(&mut relay, &mut b, "tab-b");
    let ours_init = t0.elapsed();
    // Baseline: per-document sync into another fresh store, against a copy
    // of the relay's documents.
    let base_dev = open("baseline-device");
    let base_relay = open("baseline-relay");
    seed_device(&base_relay, &cases);
    let t0 = Instant::now();
    let binit = baseline_round(&ids, &base_dev, &base_relay);
    let base_init = t0.elapsed();
    rows.push(Row {
        scenario: format!("Initial sync, {n} cases x 20 changes"),
        ours: format!(
            "{}, {}, {} frames",
            ms(ours_init),
            kib(init.bytes),
            init.frames
        ),
        baseline: format!(
            "{}, {}, {} frames",
            ms(base_init),
            kib(binit.bytes),
            binit.frames
        ),
        ratio: format!(
            "{:.1}x faster",
            base_init.as_secs_f64() / ours_init.as_secs_f64()
        ),
    });

    // Reconnect: 10 cases changed on each side while apart. First A
    // reconnects once so its cursor covers its own uploads (the relay does
    // not yet advance an uploader's cursor during the upload itself).
    run_session(&mut relay, &mut a, "tab-a");
    let mut k = 0u64;
    let mut note = |r: &mut Replica<SledStorage>, id: CaseId| {
        k += 1;
        r.add_note(
            id,
            Entropy {
                now: Millis(1_800_000_000_000 + k as i64),
                nonce: [k as u8; 16],
                key: [0x5c; 32],
            },
            "changed while apart",
        )
        .expect("note");
    };
    for id in ids.iter().take(changed as usize) {
        note(&mut a, *id);
    }
    for id in ids.iter().rev().take(changed as usize) {
        note(&mut b, *id);
    }
    run_session(&mut relay, &mut b, "tab-b");
    let t0 = Instant::now();
    let rec = run_session(&mut relay, &mut a, "tab-a");
    let ours_rec = t0.elapsed();
    // Baseline: same change pattern on its own pair of stores, then a full
    // per-document round.
    for (i, id) in ids.iter().enumerate() {
        if i < changed as usize || i >= (n - changed) as usize {
            let store = if i < changed as usize {
                &base_dev
            } else {
                &base_relay
            };
            let mut doc = docs::load_doc(store, *id).expect("load").expect("doc").doc;
            let before = doc.get_heads();
            edit::add_note(
                &mut doc,
                *id,
                &ctx(9_000_000 + i as u64),
                "changed while apart",
            )
            .expect("note");
            let mut bt = Batch::new();
            docs::stage_changes(&mut bt, *id, &doc.get_changes(&before));
            store.apply(bt).expect("save");
        }
    }
    let t0 = Instant::now();
    let brec = baseline_round(&ids, &base_dev, &base_relay);
    let base_rec = t0.elapsed();
    rows.push(Row {
        scenario: format!("Reconnect, {n} cases, {changed} changed on each side"),
        ours: format!(
            "{}, {}, {} frames",
            ms(ours_rec),
            kib(rec.bytes),
            rec.frames
        ),
        baseline: format!(
            "{}, {}, {} frames",
            ms(base_rec),
            kib(brec.bytes),
            brec.frames
        ),
        ratio: format!(
            "{:.0}x fewer bytes, {:.0}x faster",
            brec.bytes as f64 / rec.bytes.max(1) as f64,
            base_rec.as_secs_f64() / ours_rec.as_secs_f64()
        ),
    });
    // Both devices must hold the same cases afterwards (B syncs once more
    // to receive A's changes).
    run_session(&mut relay, &mut b, "tab-b");
    for id in ids
        .iter()
        .take(changed as usize)
        .chain(ids.iter().rev().take(changed as usize))
    {
        assert_eq!(
            a.case(*id).expect("read"),
            b.case(*id).expect("read"),
            "case {id} differs"
        );
    }
    rows
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only NAME` runs one group: sync, writes, memory, edge, fanout, validate,
    // attacks, headoffice, evidence, baseline; `fanout-replicas` runs only
    // when named.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let tmp = tempfile_dir();
    let mut rows = Vec::new();
    if want("sync") {
        rows.extend(sync_scenarios(&tmp, quick));
    }
    if want("writes") {
        eprintln!("local writes...");
        rows.extend(local_writes::rows(&tmp, quick));
    }
    // The relay binary is built beside this one (scripts/bench.sh).
    let relay_bin = std::env::current_exe()
        .expect("own path")
        .with_file_name("aftercase-relay");
    if want("memory") {
        rows.extend(memory::rows(&tmp, quick, &relay_bin));
    }
    if want("edge") {
        rows.extend(edge::rows(&tmp, quick));
    }
    if want("fanout") {
        // `--fanout-stores N`: another size (10 devices per store).
        let stores = args
            .iter()
            .position(|a| a == "--fanout-stores")
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse().expect("--fanout-stores takes a number"));
        // `--fanout-no-push`: devices that do not take pushed changes, so
        // every delivery is a sync message (the relay's fallback path).
        let push = !args.iter().any(|a| a == "--fanout-no-push");
        // `--fanout-postgres`: the relay stores its cases in PostgreSQL (a
        // private cluster, scripts/install-postgres.sh) instead of sled.
        let postgres = args.iter().any(|a| a == "--fanout-postgres");
        // `--fanout-relays N`: N relays on the one PostgreSQL database, the
        // devices of each store spread over them (needs `--fanout-postgres`).
        let relays = match args.iter().position(|a| a == "--fanout-relays") {
            None => 1,
            Some(i) => match args.get(i + 1).map(|v| v.parse::<usize>()) {
                Some(Ok(n)) if n >= 1 => n,
                _ => {
                    eprintln!("bench: --fanout-relays takes a number of relays, at least 1");
                    std::process::exit(2);
                }
            },
        };
        if relays > 1 && !postgres {
            eprintln!(
                "bench: --fanout-relays {relays} needs --fanout-postgres: several relays share one PostgreSQL database (sled is one relay's own)"
            );
            std::process::exit(2);
        }
        rows.extend(fanout::run(quick, stores, push, postgres, relays));
    }
    // The same load from full replicas in this process: only when named.
    if only.as_deref() == Some("fanout-replicas") {
        rows.extend(fanout_replicas::run(quick));
    }
    if want("validate") {
        eprintln!("judging uploads...");
        rows.extend(judge::rows(quick));
    }
    if want("attacks") {
        rows.extend(attacks::run(quick));
    }
    if want("headoffice") {
        eprintln!("head office reads at chain scale...");
        rows.extend(head_office::run(quick));
    }
    if want("evidence") {
        rows.extend(evidence::run(&tmp, quick));
    }
    if want("baseline") {
        rows.extend(baseline::rows(&tmp, quick));
    }
    println!("| scenario | ours | baseline | ratio |");
    println!("|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} |",
            r.scenario, r.ours, r.baseline, r.ratio
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("aftercase-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
