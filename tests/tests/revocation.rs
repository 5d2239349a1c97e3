//! Revocation end to end: `aftercase-relay revoke` while the relay runs,
//! live connections closed, refusals in plain words, restarts, new tokens.

mod support;

use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use support::{free_port, runtime, try_raw_socket, Cli, RawSocket, Relay, Watched};
use tokio_tungstenite::tungstenite::Message;

/// Polls `check` until it holds; the bound only keeps a broken build from
/// hanging (the relay re-reads revocations about once a second).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hello() -> Message {
    Message::Binary(
        aftercase_sync::protocol::Frame::Hello {
            cursor: 0,
            policy_version: 1,
            app_version: String::new(),
            unsynced: Default::default(),
            features: Vec::new(),
        }
        .encode()
        .into(),
    )
}

/// Sends hello and waits for the relay's first frame.
async fn say_hello(ws: &mut RawSocket) {
    ws.send(hello()).await.unwrap();
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(_) => break,
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Reads until the relay closes; returns the error frames' and the close
/// frame's reasons.
async fn close_reason(ws: &mut RawSocket) -> String {
    let mut reasons = String::new();
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Binary(b) => {
                if let Ok(aftercase_sync::protocol::Frame::Error { reason }) =
                    aftercase_sync::protocol::Frame::decode(&b)
                {
                    reasons.push_str(&reason);
                    reasons.push('|');
                }
            }
            Message::Close(Some(f)) => {
                reasons.push_str(&f.reason);
                break;
            }
            Message::Close(None) => break,
            _ => {}
        }
    }
    reasons
}

#[test]
fn revoking_a_device_closes_its_connection_survives_restart_and_a_new_token_works() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let addr = format!("127.0.0.1:{}", free_port());
    let relay = Relay::start_on(&relay_dir, &addr);
    let lost = relay.token("alice", "staff", "S1", "tab-7");
    let other = relay.token("bob", "staff", "S1", "tab-8");
    let a = Cli::init(&tmp.path().join("a"), &relay.url, &lost);
    let id = a.new_case("repair");
    a.ok(&["sync"]);

    runtime().block_on(async {
        let mut ws = try_raw_socket(&relay.url, &lost).await.unwrap();
        let mut bystander = try_raw_socket(&relay.url, &other).await.unwrap();
        say_hello(&mut ws).await;
        say_hello(&mut bystander).await;
        let out = relay.revoke(&["--device", "tab-7"]);
        assert!(out.contains("revoked device tab-7"), "{out}");
        let reason = tokio::time::timeout(Duration::from_secs(10), close_reason(&mut ws))
            .await
            .expect("the revoked device's live connection is closed within 10 s");
        assert!(
            reason.contains("device tab-7 was revoked by the operator"),
            "{reason}"
        );
        // Another device of the store keeps its connection.
        bystander.send(Message::Ping(vec![1].into())).await.unwrap();
        loop {
            match bystander.next().await.unwrap().unwrap() {
                Message::Pong(_) => break,
                Message::Close(_) => panic!("bystander was disconnected"),
                _ => {}
            }
        }
    });

    // Reconnecting is refused in plain words, on the device and over HTTP.
    let err = a.fails(&["sync"]);
    assert!(err.contains("access revoked"), "{err}");
    assert!(err.contains("device tab-7 was revoked"), "{err}");
    let (s, body) = relay.get("/v1/cases", Some(&lost));
    assert_eq!(s, 401);
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.contains("device tab-7 was revoked by the operator"),
        "{body}"
    );
    assert!(body.contains("\"code\":\"revoked\""), "{body}");
    assert_eq!(relay.get("/v1/cases", Some(&other)).0, 200);

    // The revocation survives a restart (files are read at startup).
    relay.kill9();
    let relay = Relay::start_on(&relay_dir, &addr);
    assert_eq!(relay.get("/v1/cases", Some(&lost)).0, 401);
    let err = a.fails(&["sync"]);
    assert!(err.contains("revoked"), "{err}");

    // A token minted after the revocation works: the revocation covers
    // tokens issued up to its second, so let the clock pass it first.
    std::thread::sleep(Duration::from_millis(1100));
    let fresh = relay.token("alice", "staff", "S1", "tab-7");
    let a = Cli::init(&a.dir, &relay.url, &fresh);
    a.ok(&["sync"]);
    let (s, v) = relay.get_json(&format!("/v1/cases/{id}"), &fresh);
    assert_eq!(s, 200, "{v}");
}

#[test]
fn revoking_one_token_or_a_user() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let (first, first_id) = relay.token_with_id("carol", "technician", "S1", "phone-1");
    let (second, second_id) = relay.token_with_id("carol", "technician", "S1", "phone-1");
    assert_ne!(first_id, second_id);
    relay.revoke(&["--token", &first_id]);
    eventually("the revoked token is refused", || {
        relay.get("/v1/cases", Some(&first)).0 == 401
    });
    let (_, body) = relay.get("/v1/cases", Some(&first));
    assert!(
        String::from_utf8_lossy(&body).contains("this token was revoked"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(relay.get("/v1/cases", Some(&second)).0, 200);

    let d1 = relay.token("dave", "staff", "S1", "tab-d1");
    let d2 = relay.token("dave", "supervisor", "S2", "tab-d2");
    let erin = relay.token("erin", "staff", "S1", "tab-d1-shared");
    relay.revoke(&["--user", "dave"]);
    eventually("both of dave's tokens are refused", || {
        relay.get("/v1/cases", Some(&d1)).0 == 401 && relay.get("/v1/cases", Some(&d2)).0 == 401
    });
    let (_, body) = relay.get("/v1/cases", Some(&d2));
    assert!(String::from_utf8_lossy(&body).contains("user dave was revoked"));
    assert_eq!(relay.get("/v1/cases", Some(&erin)).0, 200);

    // The command refuses to guess.
    let bin = support::bin_dir().join("aftercase-relay");
    let none = std::process::Command::new(&bin)
        .args(["revoke", "--data-dir"])
        .arg(&relay.data_dir)
        .output()
        .unwrap();
    assert!(!none.status.success());
    let bad = std::process::Command::new(&bin)
        .args(["revoke", "--token", "../../etc", "--data-dir"])
        .arg(&relay.data_dir)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("token id must be"));
}

#[test]
fn a_watching_device_is_cut_off_and_says_it_was_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let t = relay.token("bob", "supervisor", "S1", "tab-b");
    let b = Cli::init(&tmp.path().join("b"), &relay.url, &t);
    let mut watch = Watched::spawn(&b, &["sync", "--watch"]);
    watch.wait_for("synced:");
    relay.revoke(&["--device", "tab-b"]);
    // The live connection is closed with the reason, the reconnect is
    // refused, and the command stops instead of retrying forever.
    watch.wait_for("device tab-b was revoked by the operator");
    let last = watch.wait_for("access revoked");
    assert!(last.contains("aftercase init"), "{last}");
}
