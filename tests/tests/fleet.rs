//! The fleet end to end: real devices report their unsynced work to the
//! real relay, which keeps one record per device under the key its token
//! names; the records are read back from the relay's sled after it stops.

mod support;

use aftercase_sync::access::Role;
use aftercase_sync::protocol::{Frame, Unsynced, PROTOCOL_VERSION};
use aftercase_sync::relay::fleet;
use aftercase_sync::storage::SledStorage;
use aftercase_sync::StoreId;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{Cli, Relay};
use tokio_tungstenite::tungstenite::Message;

/// The relay's log without colour codes.
fn log_text(log: &Path) -> String {
    let raw = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip `ESC [ ... m`.
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Waits until the relay has logged a line matching `want`, and returns it.
/// The relay logs a device's hello and report right after writing them, so
/// this orders the test after the write without guessing a delay.
fn logged(log: &Path, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(line) = log_text(log).lines().find(|l| want(l)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the relay never logged the line; its log:\n{}",
            log_text(log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn each_device_has_one_record_with_its_unsynced_work_and_last_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let log = tmp.path().join("relay.log");
    let relay = Relay::start_with(&relay_dir, "127.0.0.1:0", &[], "info", Some(&log));
    let ta = relay.token("alice", "staff", "S1", "tab-a");
    let tb = relay.token("bob", "staff", "S2", "tab-b");

    // Tablet A works offline: three cases.
    let a = Cli::init(&tmp.path().join("a"), &relay.url, &ta);
    for _ in 0..3 {
        a.new_case("repair");
    }
    let status: Value = serde_json::from_str(&a.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["pending_cases"], 3);
    assert!(status["oldest_pending"].is_string(), "{status}");

    // It connects, naming its app.
    let out = a.run_env(&["sync"], &[("AFTERCASE_APP_VERSION", "shopapp 4.2")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hello = logged(&log, |l| l.contains("device hello") && l.contains("tab-a"));
    assert!(hello.contains("pending=3"), "{hello}");
    let report = logged(&log, |l| l.contains("device report") && l.contains("tab-a"));
    assert!(report.contains("pending=0"), "{report}");

    // Tablet B of another store uploads a case: the relay flushes before
    // acknowledging it, which makes everything written before durable.
    let b = Cli::init(&tmp.path().join("b"), &relay.url, &tb);
    b.new_case("repair");
    b.ok(&["sync"]);
    relay.kill9();

    let storage = SledStorage::open(&relay_dir.join("db")).unwrap();
    let s1 = StoreId::new("S1").unwrap();
    let s2 = StoreId::new("S2").unwrap();
    let in_s1 = fleet::devices(&storage, Some(&s1)).unwrap();
    assert_eq!(in_s1.len(), 1, "{in_s1:?}");
    let ra = &in_s1[0];
    assert_eq!(
        (ra.store.as_str(), ra.device.as_str(), ra.user.as_str()),
        ("S1", "tab-a", "alice")
    );
    assert_eq!(ra.role, Role::Staff);
    assert!(
        ra.app_version.starts_with("shopapp 4.2 (aftercase-client "),
        "{}",
        ra.app_version
    );
    assert_eq!((ra.pending, ra.oldest_unsynced_secs), (0, None));
    let synced = ra.last_sync.expect("tab-a synced");
    assert!(synced >= ra.first_seen && ra.reported_at >= ra.first_seen);

    let in_s2 = fleet::devices(&storage, Some(&s2)).unwrap();
    assert_eq!(in_s2.len(), 1, "{in_s2:?}");
    let rb = &in_s2[0];
    assert_eq!(
        (rb.store.as_str(), rb.device.as_str(), rb.user.as_str()),
        ("S2", "tab-b", "bob")
    );
    assert!(
        rb.app_version.starts_with("aftercase-client "),
        "{}",
        rb.app_version
    );
    assert!(rb.last_sync.is_some());
    assert_eq!(fleet::devices(&storage, None).unwrap().len(), 2);
}

#[test]
fn a_device_speaking_protocol_2_is_told_in_its_own_version_to_update_the_app() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let token = relay.token("alice", "staff", "S1", "old-tab");
    let rt = support::runtime();
    rt.block_on(async {
        let mut ws = support::try_raw_socket(&relay.url, &token).await.unwrap();
        let mut hello = Frame::Hello {
            cursor: 0,
            policy_version: 1,
            app_version: String::new(),
            unsynced: Unsynced::default(),
            features: Vec::new(),
        }
        .encode_for(3);
        hello[0] = 2;
        ws.send(Message::Binary(hello.into())).await.unwrap();
        let mut error = None;
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(b) = m {
                error = Some(b.to_vec());
                break;
            }
        }
        let mut bytes = error.expect("an error frame before the close");
        // In the old device's version, so it can read it.
        assert_eq!(bytes[0], 2);
        bytes[0] = PROTOCOL_VERSION;
        match Frame::decode(&bytes) {
            Ok(Frame::Error { reason }) => {
                assert!(reason.contains("update the app"), "{reason}")
            }
            other => panic!("expected an error frame, got {other:?}"),
        }
    });
}
