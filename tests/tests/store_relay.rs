//! The store relay (`aftercase-relay serve --upstream URL --upstream-token
//! TOKEN`): two tablets in a shop keep seeing each other's edits while the
//! shop's link to the chain's relay is cut, and once it returns head office
//! has every edit, recorded as the tablets' own. Real binaries, real
//! sockets; the link runs through a proxy the test takes down.
//!
//! The outage lasts `AFTERCASE_EDGE_CUT_SECS` seconds (default 60).

mod support;

use aftercase_client::Device;
use aftercase_sync::case::CaseKind;
use aftercase_sync::CaseId;
use aftercase_tests::cutproxy::{CutPlan, CutProxy};
use std::path::Path;
use std::time::{Duration, Instant};
use support::Relay;

fn tablet(dir: &Path, relay: &str, token: &str) -> Device {
    Device::init(dir, relay, token).expect("init tablet");
    Device::open(dir).expect("open tablet")
}

/// The case as the device holds it, as JSON text (empty if it has none).
fn seen(d: &Device, case: CaseId) -> String {
    d.case(case)
        .expect("read case")
        .map(|v| serde_json::to_string(&v).expect("json"))
        .unwrap_or_default()
}

/// Waits until `d` holds `text` in `case`; returns how long it took.
fn wait_for(d: &Device, case: CaseId, text: &str, within: Duration) -> Duration {
    let started = Instant::now();
    while !seen(d, case).contains(text) {
        assert!(
            started.elapsed() < within,
            "{text:?} did not reach the other tablet within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    started.elapsed()
}

/// Polls `f` until it returns `Some`, failing after `within`.
fn eventually<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < within, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tablets_keep_syncing_through_an_upstream_outage_and_head_office_gets_every_edit() {
    let cut_secs: u64 = std::env::var("AFTERCASE_EDGE_CUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Relay::start(&tmp.path().join("upstream"));
    let upstream_addr = upstream
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("upstream address");
    let link = CutProxy::start(upstream_addr, CutPlan::none()).expect("proxy");
    // The store relay checks its tablets' tokens with the chain's secret.
    let edge_dir = tmp.path().join("edge");
    std::fs::create_dir_all(&edge_dir).unwrap();
    std::fs::copy(
        upstream.data_dir.join("jwt-secret"),
        edge_dir.join("jwt-secret"),
    )
    .unwrap();
    let edge_token = upstream.token("edge-s1", "staff", "S1", "edge-s1");
    let edge = Relay::start_with(
        &edge_dir,
        "127.0.0.1:0",
        &[
            "--upstream",
            &format!("http://{}", link.addr()),
            "--upstream-token",
            &edge_token,
            "--memory-mib",
            "16",
            "--cache-docs",
            "64",
        ],
        "warn",
        None,
    );

    // A tablet of another store, or head office, is sent to the chain's relay.
    let (status, body) = edge.get(
        "/v1/sync",
        Some(&upstream.token("carol", "staff", "S2", "tab-c")),
    );
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("store relay of store S1"));

    // Head office's lists are at the chain's relay, not in the shop.
    let (status, body) = edge.get(
        "/v1/cases",
        Some(&upstream.token("sam", "supervisor", "S1", "tab-s")),
    );
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("chain's relay"));

    let a = tablet(
        &tmp.path().join("a"),
        &edge.url,
        &upstream.token("alice", "staff", "S1", "tab-a"),
    );
    let b = tablet(
        &tmp.path().join("b"),
        &edge.url,
        &upstream.token("bob", "supervisor", "S1", "tab-b"),
    );
    let hq = upstream.token("hq", "head_office", "HQ", "hq-desk");
    let mut live_a = a.start_live(|_| {}).unwrap();
    let mut live_b = b.start_live(|_| {}).unwrap();

    let case = a
        .create_case(
            CaseKind::Complaint,
            "Han Meimei",
            "13912345678",
            Some("WM-8KG".into()),
            Some("drum does not turn".into()),
        )
        .unwrap();
    wait_for(&b, case, "drum does not turn", Duration::from_secs(15));
    let at_head_office = |text: &str| {
        let (status, body) = upstream.get(&format!("/v1/cases/{case}"), Some(&hq));
        status == 200 && String::from_utf8_lossy(&body).contains(text)
    };
    eventually(
        "the new case reaches head office",
        Duration::from_secs(15),
        || at_head_office("drum does not turn").then_some(()),
    );

    // The shop's internet goes down; its Wi-Fi stays up.
    link.set_down(true);
    let cut_at = Instant::now();
    let mut latencies = Vec::new();
    let mut round = 0;
    let mut second = None;
    let photo_path = tmp.path().join("hinge.jpg");
    let mut photo = None;
    while round == 0 || cut_at.elapsed() < Duration::from_secs(cut_secs) {
        let text = format!("alice, during the outage, {round}");
        a.add_note(case, &text).unwrap();
        latencies.push(wait_for(&b, case, &text, Duration::from_secs(10)));
        let text = format!("bob, during the outage, {round}");
        b.add_note(case, &text).unwrap();
        latencies.push(wait_for(&a, case, &text, Duration::from_secs(10)));
        if round == 0 {
            let c = b
                .create_case(
                    CaseKind::Repair,
                    "Li Lei",
                    "13900000001",
                    Some("TV-55".into()),
                    Some("no picture".into()),
                )
                .unwrap();
            wait_for(&a, c, "no picture", Duration::from_secs(10));
            second = Some(c);
            // A photo taken in the shop during the outage.
            let mut jpeg = vec![
                0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1,
            ];
            jpeg.extend((0..300_000u32).map(|i| (i % 251) as u8));
            std::fs::write(&photo_path, &jpeg).unwrap();
            photo = Some((
                a.attach(case, &photo_path, "photo", Some("hinge")).unwrap(),
                jpeg,
            ));
        }
        round += 1;
        std::thread::sleep(Duration::from_secs(5).min(Duration::from_secs(cut_secs / 4 + 1)));
    }
    assert!(
        !at_head_office("alice, during the outage, 0"),
        "the link was not cut"
    );
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let max = latencies[latencies.len() - 1];
    println!(
        "store relay, upstream cut {:.0} s: {} edits crossed tablets, p50 {:.1} ms, max {:.1} ms",
        cut_at.elapsed().as_secs_f64(),
        latencies.len(),
        p50.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );

    // The link returns: head office gets every edit of the outage.
    link.set_down(false);
    let last = format!("bob, during the outage, {}", round - 1);
    eventually(
        "every edit reaches head office",
        Duration::from_secs(60),
        || at_head_office(&last).then_some(()),
    );
    for r in 0..round {
        assert!(at_head_office(&format!("alice, during the outage, {r}")));
    }
    let second = second.unwrap();
    eventually(
        "the case opened during the outage reaches head office",
        Duration::from_secs(30),
        || {
            let (status, _) = upstream.get(&format!("/v1/cases/{second}"), Some(&hq));
            (status == 200).then_some(())
        },
    );

    // The photo reaches the chain's relay too, byte for byte.
    let (hash, jpeg) = photo.unwrap();
    let got = eventually(
        "the photo reaches head office",
        Duration::from_secs(30),
        || {
            let (status, body) =
                upstream.get(&format!("/v1/cases/{case}/evidence/{hash}"), Some(&hq));
            (status == 200).then_some(body)
        },
    );
    assert_eq!(got, jpeg);

    // Each change is recorded as the tablet's that made it, not the store
    // relay's.
    let (status, feed) = upstream.get_json("/v1/audit?since=2000-01-01T00:00:00Z", &hq);
    assert_eq!(status, 200);
    let entries = feed["entries"].as_array().unwrap();
    let devices: std::collections::BTreeSet<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["user"].as_str().unwrap_or_default().to_string(),
                e["device"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected: std::collections::BTreeSet<(String, String)> =
        [("alice", "tab-a"), ("bob", "tab-b")]
            .iter()
            .map(|(u, d)| (u.to_string(), d.to_string()))
            .collect();
    assert_eq!(devices, expected, "{feed}");
    let by_bob = entries
        .iter()
        .find(|e| e["case_id"] == second.to_string().as_str())
        .expect("the second case in the feed");
    assert_eq!(by_bob["device"], "tab-b");

    live_a.stop();
    live_b.stop();
}
