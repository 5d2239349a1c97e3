//! Relay memory: a relay process holding many cases, every one of them
//! synced once by a head-office device that holds none of them (a sync
//! message per case, which the relay answers from the loaded document),
//! its resident memory sampled throughout. Run twice on the same data:
//! with the default memory bound, and with the bound lifted so that every
//! document synced stays loaded (what a server that keeps every document it
//! touched does). HTTP reads of a case no longer go through the relay's
//! cache (`relay::CaseReader`), so they would not show the bound.

use crate::relay_process::RelayProcess;
use crate::{make_case_in, run_session_as, seed_device, Row};
use aftercase_sync::relay::Relay;
use aftercase_sync::replica::Replica;
use aftercase_sync::storage::{MemoryStorage, SledStorage};
use aftercase_sync::CaseId;
use std::num::NonZeroUsize;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Cases uploaded per seeding session (one store each).
const CHUNK: u64 = 5_000;

/// Fills a relay data directory with `n` cases of 5 changes, through the
/// relay's own upload path.
fn seed(data_dir: &Path, n: u64) -> Vec<CaseId> {
    let storage = SledStorage::open(&data_dir.join("db")).expect("relay db");
    let mut relay = Relay::open(storage, NonZeroUsize::new(1024).expect("nonzero")).expect("relay");
    let mut ids = Vec::new();
    for (k, start) in (0..n).step_by(CHUNK as usize).enumerate() {
        let store = format!("M{k}");
        let cases: Vec<_> = (start..(start + CHUNK).min(n))
            .map(|i| make_case_in(i, 5, &store))
            .collect();
        ids.extend(cases.iter().map(|(id, _)| *id));
        let device = MemoryStorage::new();
        seed_device(&device, &cases);
        // One store per chunk: a fresh device of a store that already had
        // cases would first download them.
        let mut r = Replica::open(device, crate::identity_in("tab-a", &store), [3; 16]);
        let t = run_session_as(&mut relay, &mut r, "tab-a", &store);
        assert_eq!(t.refused, 0, "the relay refused seeded cases");
        eprintln!("  seeded {} cases", ids.len());
    }
    relay.flush().expect("flush");
    ids
}

/// Cases asked for before waiting for answers.
const WINDOW: usize = 64;

/// Sends one sync message per case from an empty document, as a device
/// that holds none of them, keeping [`WINDOW`] in flight, and waits for
/// the relay's answer to each (a sync message with the case's changes).
async fn sync_each(relay: &RelayProcess, token: &str, ids: &[CaseId]) {
    use aftercase_sync::protocol::{Frame, Unsynced};
    use automerge::sync::SyncDoc;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut ws = aftercase_tests::ws_client::connect(&relay.ws_url(), token)
        .await
        .expect("connect");
    // The announcements of every case that follow are read and ignored.
    let hello = Frame::Hello {
        cursor: 0,
        policy_version: 0,
        app_version: "bench memory".into(),
        unsynced: Unsynced::default(),
        features: Vec::new(),
    };
    ws.send(Message::binary(hello.encode()))
        .await
        .expect("hello");
    let first = automerge::Automerge::new()
        .generate_sync_message(&mut automerge::sync::State::new())
        .expect("a first message")
        .encode();
    let (mut sent, mut answered) = (0, 0);
    while answered < ids.len() {
        while sent < ids.len() && sent - answered < WINDOW {
            let f = Frame::Sync {
                doc: ids[sent],
                message: first.clone(),
            };
            ws.send(Message::binary(f.encode())).await.expect("send");
            sent += 1;
        }
        let Some(msg) = ws.next().await else {
            panic!("the relay closed the connection after {answered} answers");
        };
        let Message::Binary(bytes) = msg.expect("receive") else {
            continue;
        };
        match Frame::decode(&bytes).expect("frame") {
            Frame::Sync { .. } => {
                answered += 1;
                if answered % 20_000 == 0 {
                    eprintln!(
                        "  synced {answered} cases, relay RSS {} MiB",
                        relay.memory().0 / 1024
                    );
                }
            }
            Frame::Refused { doc, reason, .. } => panic!("case {doc} refused: {reason}"),
            Frame::Error { reason } => panic!("relay error: {reason}"),
            _ => {}
        }
    }
}

struct Pass {
    peak_rss_mib: f64,
    end_rss_mib: f64,
    secs: f64,
}

/// Starts the relay on `data_dir` with `memory_args`, reads every case once
/// as head office, and reports its memory.
fn read_all(relay_bin: &Path, data_dir: &Path, ids: &[CaseId], memory_args: &[&str]) -> Pass {
    let relay = Arc::new(RelayProcess::start_in(data_dir, None, memory_args));
    let token = Command::new(relay_bin)
        .args(["token", "--data-dir"])
        .arg(data_dir)
        .args([
            "--user",
            "hq",
            "--role",
            "head_office",
            "--store",
            "HQ",
            "--device",
            "bench",
        ])
        .stderr(Stdio::null())
        .output()
        .expect("token");
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak, relay) = (done.clone(), peak.clone(), relay.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(relay.memory().0, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    eprintln!("  relay RSS before syncing {} MiB", relay.memory().0 / 1024);
    let t0 = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(sync_each(&relay, &token, ids));
    let secs = t0.elapsed().as_secs_f64();
    let (end, hwm) = relay.memory();
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    Pass {
        peak_rss_mib: hwm.max(peak.load(Ordering::Relaxed)) as f64 / 1024.0,
        end_rss_mib: end as f64 / 1024.0,
        secs,
    }
}

/// The relay-memory row.
pub fn rows(tmp: &Path, quick: bool, relay_bin: &Path) -> Vec<Row> {
    let n: u64 = if quick { 1_000 } else { 100_000 };
    // `BENCH_MEMORY_DATA=DIR` keeps the seeded relay data in DIR and reuses
    // it on the next run (seeding takes minutes), e.g. to run the relay
    // under a heap profiler.
    let kept = std::env::var_os("BENCH_MEMORY_DATA").map(std::path::PathBuf::from);
    let data_dir = kept.clone().unwrap_or_else(|| tmp.join("memory-relay"));
    let ids = if kept.is_some() && data_dir.join("db").exists() {
        eprintln!(
            "relay memory: reusing the {n} cases in {}",
            data_dir.display()
        );
        (0..n).map(crate::case_id).collect()
    } else {
        eprintln!("relay memory: seeding {n} cases...");
        seed(&data_dir, n)
    };
    eprintln!("relay memory: syncing every case with the default bound (256 MiB)...");
    let ours = read_all(relay_bin, &data_dir, &ids, &[]);
    eprintln!("relay memory: syncing every case with no bound...");
    let base = read_all(
        relay_bin,
        &data_dir,
        &ids,
        &["--memory-mib", "1048576", "--cache-docs", "100000000"],
    );
    vec![Row {
        scenario: format!(
            "Relay memory, {n} cases stored, each synced once by a device holding none"
        ),
        ours: format!(
            "peak RSS {:.0} MiB, {:.0} MiB at the end (bound 256 MiB); {:.0} cases/s",
            ours.peak_rss_mib,
            ours.end_rss_mib,
            n as f64 / ours.secs
        ),
        baseline: format!(
            "no eviction: peak RSS {:.0} MiB, {:.0} MiB at the end; {:.0} cases/s",
            base.peak_rss_mib,
            base.end_rss_mib,
            n as f64 / base.secs
        ),
        ratio: format!("{:.1}x less memory", base.peak_rss_mib / ours.peak_rss_mib),
    }]
}
