//! The store relay (`serve --upstream`): its resident memory while it holds
//! a store's cases, and how long its link takes to pass them up.
//!
//! A chain relay and a store relay run as processes on loopback, the store
//! relay with `--memory-mib 32`. A tablet with 5,000 offline cases of 5
//! changes each (1,000 with `--quick`) uploads them to the store relay; its
//! link then relays every case upstream as the tablet's; then a new tablet
//! takes every case from the store relay. The store relay's resident
//! memory is sampled throughout; the figures are its peak and what it
//! holds at the end.
//!
//! `BENCH_EDGE_MEMORY_MIB` sets its `--memory-mib` (default 16),
//! `BENCH_EDGE_ARGS` adds `serve` flags (default `--cache-docs 64`, what
//! README.md suggests for a store relay), `BENCH_EDGE_PLAIN=1` runs it
//! without its upstream link.

use crate::relay_process::RelayProcess;
use crate::{make_case_in, seed_device, Row};
use aftercase_client::Device;
use aftercase_sync::storage::SledStorage;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "bench-edge-secret-of-at-least-32-bytes!!";

/// Cases the chain's relay holds, as head office's service metrics count
/// them.
fn upstream_cases(relay: &RelayProcess, token: &str) -> u64 {
    let url = format!("{}/v1/metrics/service", relay.url);
    reqwest::blocking::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .ok()
        .and_then(|r| r.json::<serde_json::Value>().ok())
        .and_then(|v| v["total"]["cases"].as_u64())
        .unwrap_or(0)
}

/// The scenario's rows.
pub fn rows(dir: &Path, quick: bool) -> Vec<Row> {
    let n: u64 = if quick { 1_000 } else { 5_000 };
    eprintln!("store relay with {n} cases...");
    let upstream = RelayProcess::start(SECRET);
    let edge_token = upstream.token("edge-s1", "staff", "S1", "edge-s1");
    let edge_dir = dir.join("edge");
    let memory = std::env::var("BENCH_EDGE_MEMORY_MIB").unwrap_or_else(|_| "16".into());
    let plain = std::env::var_os("BENCH_EDGE_PLAIN").is_some();
    let more = std::env::var("BENCH_EDGE_ARGS").unwrap_or_else(|_| "--cache-docs 64".into());
    let mut args = vec!["--memory-mib", &memory];
    args.extend(more.split_whitespace());
    if !plain {
        args.extend(["--upstream", &upstream.url, "--upstream-token", &edge_token]);
    }
    let edge = RelayProcess::start_in(&edge_dir, Some(SECRET), &args);
    let idle = edge.memory().0;

    // The tablet's offline work, written straight into its storage.
    let tab = dir.join("edge-tab-a");
    Device::init(
        &tab,
        &edge.url,
        &upstream.token("bench", "staff", "S1", "tab-a"),
    )
    .expect("init tablet");
    {
        let storage = SledStorage::open(&tab.join("db")).expect("tablet db");
        let cases: Vec<_> = (0..n).map(|i| make_case_in(i, 5, "S1")).collect();
        seed_device(&storage, &cases);
    }
    let device = Device::open(&tab).expect("open tablet");

    // Resident memory sampled every 20 ms while the cases move.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        let pid = edge.pid();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let rss = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                peak.fetch_max(rss, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let t0 = Instant::now();
    rt.block_on(device.sync_once(|_| {}))
        .expect("the tablet uploads to the store relay");
    let to_edge = t0.elapsed();
    let refused = device.status().expect("status").refused;
    assert!(refused.is_empty(), "the store relay refused seeded cases");
    let hq = upstream.token("hq", "head_office", "HQ", "hq-desk");
    let deadline = Instant::now() + Duration::from_secs(600);
    while !plain && upstream_cases(&upstream, &hq) < n {
        assert!(
            Instant::now() < deadline,
            "the store relay did not pass every case up within 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let to_upstream = t0.elapsed();
    let peak_up = peak.load(Ordering::SeqCst);
    // A new tablet joins the shop and takes every case from the box.
    let tab_b = dir.join("edge-tab-b");
    Device::init(
        &tab_b,
        &edge.url,
        &upstream.token("bench", "staff", "S1", "tab-b"),
    )
    .expect("init second tablet");
    let second = Device::open(&tab_b).expect("open second tablet");
    let t1 = Instant::now();
    rt.block_on(second.sync_once(|_| {}))
        .expect("the new tablet syncs from the store relay");
    let initial = t1.elapsed();
    assert_eq!(second.cases().expect("cases").len() as u64, n);
    std::thread::sleep(Duration::from_secs(2));
    let settled = edge.memory().0;
    stop.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    let peak = peak.load(Ordering::SeqCst);
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    vec![
        Row {
            scenario: format!("Store relay resident memory, {n} cases (--memory-mib {memory} {more})"),
            ours: format!(
                "peak {} ({} until every case was passed up), {} once a new tablet took them all (idle {})",
                mib(peak),
                mib(peak_up),
                mib(settled),
                mib(idle)
            ),
            baseline: "target: under 50 MiB".into(),
            ratio: format!("{:.2}x the target", peak as f64 / (50.0 * 1024.0)),
        },
        Row {
            scenario: format!("Store relay passes {n} offline cases up"),
            ours: format!(
                "tablet to store relay {:.1} s, all at the chain's relay {:.1} s; a new tablet's initial sync from the store relay {:.1} s",
                to_edge.as_secs_f64(),
                to_upstream.as_secs_f64(),
                initial.as_secs_f64()
            ),
            baseline: "-".into(),
            ratio: "-".into(),
        },
    ]
}
