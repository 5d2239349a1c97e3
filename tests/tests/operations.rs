//! Operating the real relay: what `/metrics` counts and never shows, the
//! access log, and a clean stop on SIGTERM that devices recover from.

mod support;

use aftercase_sync::protocol::Frame;
use automerge::sync::{State, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use support::{free_port, runtime, try_raw_socket, Cli, RawSocket, Relay, Watched};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn send(ws: &mut RawSocket, f: &Frame) {
    ws.send(WsMessage::Binary(f.encode().into()))
        .await
        .expect("send frame");
}

async fn recv(ws: &mut RawSocket) -> Frame {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("the relay answers")
            .expect("connection open")
            .expect("frame");
        if let WsMessage::Binary(b) = m {
            return Frame::decode(&b).expect("a frame");
        }
    }
}

/// Says hello and reads the catch-up to its end.
async fn hello(ws: &mut RawSocket) {
    send(
        ws,
        &Frame::Hello {
            cursor: 0,
            policy_version: 0,
            app_version: String::new(),
            unsynced: Default::default(),
            features: Vec::new(),
        },
    )
    .await;
    while !matches!(recv(ws).await, Frame::Announce { complete: true, .. }) {}
}

/// Uploads a "case" that is nothing like one; returns the refusal's code.
async fn refused_upload(ws: &mut RawSocket, case: aftercase_sync::CaseId) -> String {
    let mut doc = Automerge::new();
    let mut t = doc.transaction();
    t.put(ROOT, "not_a_case_key", "x").expect("put");
    t.commit();
    let mut state = State::new();
    for _ in 0..20 {
        let msg = doc
            .generate_sync_message(&mut state)
            .expect("something to send");
        send(
            ws,
            &Frame::Sync {
                doc: case,
                message: msg.encode(),
            },
        )
        .await;
        loop {
            match recv(ws).await {
                Frame::Refused { doc: d, code, .. } if d == case => return code,
                Frame::Sync { doc: d, message } if d == case => {
                    let m = automerge::sync::Message::decode(&message).expect("message");
                    doc.receive_sync_message(&mut state, m).expect("apply");
                    break;
                }
                Frame::Error { reason } => panic!("relay closed the connection: {reason}"),
                _ => {}
            }
        }
    }
    panic!("the relay never refused the upload");
}

/// The value of the sample of `name` whose labels include every pair of
/// `labels` (`key="value"`), or `None` if there is none.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| labels.iter().all(|pair| l.contains(pair)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn metrics(relay: &Relay) -> String {
    let (status, body) = relay.get("/metrics", None);
    assert_eq!(status, 200, "/metrics needs no token");
    String::from_utf8(body).expect("utf8")
}

#[test]
fn metrics_count_a_sync_session_and_its_refusal_and_name_no_one() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let alice_token = relay.token("alice-q7", "staff", "store-k9", "tab-z3");
    let alice = Cli::init(&tmp.path().join("a"), &relay.url, &alice_token);
    let id = alice.new_case("repair");
    alice.ok(&["sync"]);
    let hq = relay.token("hq-w5", "head_office", "hq-store-m2", "hq-dev-p4");
    let (status, _) = relay.get(&format!("/v1/cases/{id}"), Some(&hq));
    assert_eq!(status, 200);

    let rt = runtime();
    let mallory_token = relay.token("mallory-j8", "staff", "store-k9", "evil-v6");
    let mut ws = rt
        .block_on(try_raw_socket(&relay.url, &mallory_token))
        .unwrap();
    rt.block_on(hello(&mut ws));
    let bogus = aftercase_sync::CaseId::from_bytes([0x5a; 16]);
    let code = rt.block_on(refused_upload(&mut ws, bogus));

    let m = metrics(&relay);
    let positive = |name: &str, labels: &[&str]| {
        let v = sample(&m, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{m}"));
        assert!(v > 0.0, "{name} {labels:?} is {v}");
    };
    for frame in ["hello", "sync"] {
        let label = format!("frame=\"{frame}\"");
        positive("aftercase_frames_received_total", &[&label]);
        positive("aftercase_frame_bytes_received_total", &[&label]);
    }
    positive("aftercase_frames_sent_total", &["frame=\"announce\""]);
    positive("aftercase_frame_bytes_sent_total", &["frame=\"sync\""]);
    positive("aftercase_frames_sent_total", &["frame=\"refused\""]);
    positive("aftercase_refusals_total", &[&format!("code=\"{code}\"")]);
    // Only the refused code counted: a refusal is not counted twice or
    // under another code.
    let refusals: f64 = m
        .lines()
        .filter(|l| l.starts_with("aftercase_refusals_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(refusals, 1.0, "{m}");
    positive("aftercase_sync_connections", &[]);
    positive("aftercase_relay_core_seconds_count", &["frame=\"sync\""]);
    positive("aftercase_commit_seconds_count", &[]);
    positive("aftercase_announce_lag_seconds_count", &[]);
    positive(
        "aftercase_http_requests_total",
        &[
            "method=\"GET\"",
            "route=\"/v1/cases/{id}\"",
            "status=\"200\"",
        ],
    );
    assert_eq!(
        sample(&m, "aftercase_devices_with_unsynced_work", &[]),
        Some(0.0)
    );

    let bogus = bogus.to_string();
    for secret in [
        "alice-q7",
        "store-k9",
        "tab-z3",
        "hq-w5",
        "hq-store-m2",
        "hq-dev-p4",
        "mallory-j8",
        "evil-v6",
        id.as_str(),
        bogus.as_str(),
        alice_token.as_str(),
        mallory_token.as_str(),
        hq.as_str(),
        "Han Meimei",
        "13912345678",
    ] {
        assert!(!m.contains(secret), "/metrics shows {secret:?}");
    }
    rt.block_on(ws.close(None)).ok();
}

#[test]
fn every_request_is_logged_once_with_its_route_and_caller_and_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("relay.log");
    let relay = Relay::start_with(
        &tmp.path().join("relay"),
        "127.0.0.1:0",
        &[],
        "info",
        Some(&log),
    );
    let token = relay.token("alice-q7", "supervisor", "store-k9", "tab-z3");
    let (status, _) = relay.get("/v1/cases?case_no=SECRETNO", Some(&token));
    assert_eq!(status, 200);
    let (status, _) = relay.get("/v1/cases/not-a-case-id-XYZ", Some(&token));
    assert_eq!(status, 404, "no case has that number");

    // The line is written before the answer leaves; waiting only guards
    // against a slow file system.
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap();
        if text.contains("route=/v1/cases/{id}") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("aftercase_server::access"))
        .collect();
    let list = lines
        .iter()
        .find(|l| l.contains("route=/v1/cases ") && l.contains("status=200"))
        .unwrap_or_else(|| panic!("no access line for GET /v1/cases in\n{text}"));
    for field in [
        "method=GET",
        "user=alice-q7",
        "role=supervisor",
        "store=store-k9",
        "duration_ms=",
    ] {
        assert!(list.contains(field), "{field} missing from {list}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("route=/v1/cases/{id}") && l.contains("status=404")),
        "no access line for the bad case id in\n{text}"
    );
    assert_eq!(lines.len(), 2, "one line per request:\n{text}");
    for secret in [token.as_str(), "SECRETNO", "not-a-case-id-XYZ", "tab-z3"] {
        assert!(!text.contains(secret), "the log shows {secret:?}:\n{text}");
    }
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file:\n{text}"
    );
}

#[test]
fn sigterm_closes_connections_as_going_away_and_devices_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut relay = Relay::start_on(&relay_dir, &addr);
    let alice = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S1", "tab-a"),
    );
    let bob = Cli::init(
        &tmp.path().join("b"),
        &relay.url,
        &relay.token("bob", "supervisor", "S1", "tab-b"),
    );
    let hq = relay.token("hq", "head_office", "HQ", "hq-1");
    // Acknowledged before the stop: `sync` returns only once the relay
    // confirmed the upload.
    let id = alice.new_case("complaint");
    alice.ok(&["sync"]);

    let mut watch = Watched::spawn(&bob, &["sync", "--watch"]);
    watch.wait_for("synced:");
    let rt = runtime();
    let mut ws = rt
        .block_on(try_raw_socket(
            &relay.url,
            &relay.token("carol", "staff", "S1", "tab-c"),
        ))
        .unwrap();
    rt.block_on(hello(&mut ws));

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &relay.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());

    let close = rt.block_on(async {
        loop {
            match tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
                Ok(Some(Ok(WsMessage::Close(frame)))) => return frame,
                Ok(Some(Ok(_))) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    });
    let close = close.expect("a close frame with a code");
    assert_eq!(close.code, CloseCode::Away, "{close:?}");
    assert!(close.reason.contains("shutting down"), "{close:?}");

    let status = relay
        .wait_exit(Duration::from_secs(15))
        .expect("the relay exits after SIGTERM");
    assert!(status.success(), "the relay exited with {status}");
    let line = watch.wait_for("retrying in");
    assert!(line.contains("shutting down"), "{line}");

    let relay = Relay::start_on(&relay_dir, &addr);
    watch.wait_for("connected to");
    watch.wait_for("synced:");
    let (status, view) = relay.get_json(&format!("/v1/cases/{id}"), &hq);
    assert_eq!(status, 200, "the acknowledged case survived the stop");
    assert_eq!(view["id"], id.as_str());
    // The reconnected device still hears of new changes.
    alice.ok(&["case", "note", &id, "called back after the restart"]);
    alice.ok(&["sync"]);
    let no = alice.show(&id)["case_no"].as_str().unwrap().to_string();
    watch.wait_for(&format!("received a change to case {no}"));
    watch.kill9();
}

#[test]
fn token_refuses_a_data_directory_without_a_secret_unless_asked_to_create_one() {
    let tmp = tempfile::tempdir().unwrap();
    let typo = tmp.path().join("relya");
    let token = |extra: &[&str]| {
        std::process::Command::new(support::bin_dir().join("aftercase-relay"))
            .args(["token", "--data-dir"])
            .arg(&typo)
            .args([
                "--user", "ann", "--role", "staff", "--store", "S1", "--device", "tab-1",
            ])
            .args(extra)
            .env_remove("AFTERCASE_JWT_SECRET")
            .output()
            .unwrap()
    };
    let out = token(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("holds no signing secret") && err.contains("--init-secret"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no token printed");
    assert!(!typo.join("jwt-secret").exists(), "nothing created");
    let out = token(&["--init-secret"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(typo.join("jwt-secret").exists());
    // The secret now exists: the flag is no longer needed.
    assert!(token(&[]).status.success());
}
