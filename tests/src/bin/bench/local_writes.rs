//! Local writes through the SDK: `Device` edits from several threads, each
//! edit reported only once durable (group commit shares the flushes).

use crate::{percentile, Row};
use aftercase_client::{Device, DeviceConfig};
use aftercase_sync::access::Role;
use aftercase_sync::case::CaseKind;
use aftercase_sync::CaseId;
use std::path::Path;
use std::time::{Duration, Instant};

/// Cases each writer rotates through, so documents stay case-sized.
const CASES_PER_WRITER: usize = 20;

fn open_device(dir: &Path) -> Device {
    DeviceConfig {
        relay: "http://127.0.0.1:9".into(),
        token: "unused: this device never syncs".into(),
        user: "bench".parse().expect("valid"),
        role: Role::Staff,
        store: "S1".parse().expect("valid"),
        device: "tab-w".parse().expect("valid"),
    }
    .save(dir)
    .expect("config");
    Device::open(dir).expect("open device")
}

/// Runs `writers` threads adding notes for `secs`; returns edits/s, p50, p99.
fn run(dir: &Path, writers: usize, secs: f64) -> (f64, Duration, Duration, usize) {
    let device = open_device(dir);
    let cases: Vec<Vec<CaseId>> = (0..writers)
        .map(|_| {
            (0..CASES_PER_WRITER)
                .map(|_| {
                    device
                        .create_case(
                            CaseKind::Repair,
                            "Bench Customer",
                            "13800000000",
                            None,
                            None,
                        )
                        .expect("create")
                })
                .collect()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    let handles: Vec<_> = cases
        .into_iter()
        .map(|mine| {
            let device = device.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut i = 0;
                while Instant::now() < deadline {
                    let start = Instant::now();
                    device
                        .add_note(mine[i % mine.len()], "called the customer back")
                        .expect("note");
                    lat.push(start.elapsed());
                    i += 1;
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("writer"))
        .collect();
    let elapsed = t0.elapsed().as_secs_f64();
    lat.sort();
    (
        lat.len() as f64 / elapsed,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.len(),
    )
}

/// The local-writes rows: one writer, then several sharing flushes.
pub fn rows(tmp: &Path, quick: bool) -> Vec<Row> {
    let secs = if quick { 1.0 } else { 10.0 };
    [1usize, 8]
        .into_iter()
        .map(|writers| {
            let (rate, p50, p99, n) = run(&tmp.join(format!("writes-{writers}")), writers, secs);
            Row {
                scenario: format!(
                    "Local writes, {writers} writer thread(s), each edit durable before it returns"
                ),
                ours: format!(
                    "{rate:.0} edits/s, p50 {:.2} ms, p99 {:.2} ms ({n} edits in {secs:.0} s)",
                    p50.as_secs_f64() * 1000.0,
                    p99.as_secs_f64() * 1000.0
                ),
                baseline: "-".into(),
                ratio: "-".into(),
            }
        })
        .collect()
}
