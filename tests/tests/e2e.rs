//! End-to-end: the real relay and CLI binaries over loopback sockets.

mod support;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::{bin_dir, Cli, Relay};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn notes(case: &Value) -> Vec<String> {
    case["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|e| e["type"] == "note")
        .map(|e| e["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The relay's JSON without what only the relay adds (the audit trail and
/// the customer's no-shows across every case), for comparing with a device.
fn without_audit(mut v: Value) -> Value {
    let o = v.as_object_mut().expect("object");
    o.remove("audit");
    o.remove("customer_no_shows");
    v
}

#[test]
fn two_devices_offline_edits_converge_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let ta = relay.token("alice", "staff", "S1", "tab-a");
    let tb = relay.token("bob", "staff", "S1", "tab-b");
    let a = Cli::init(&tmp.path().join("a"), &relay.url, &ta);
    let b = Cli::init(&tmp.path().join("b"), &relay.url, &tb);
    let id = a.new_case("repair");
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    // Both offline (no sync) edit the same case.
    a.ok(&["case", "note", &id, "customer will bring the receipt"]);
    b.ok(&["case", "note", &id, "technician booked for Tuesday"]);
    b.ok(&["case", "set", &id, "priority", "high"]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    a.ok(&["sync"]);
    let (va, vb) = (a.show(&id), b.show(&id));
    assert_eq!(va, vb);
    let (status, vr) = relay.get_json(&format!("/v1/cases/{id}"), &ta);
    assert_eq!(status, 200);
    assert_eq!(without_audit(vr.clone()), va);
    let n = notes(&va);
    assert!(
        n.contains(&"customer will bring the receipt".to_string()),
        "{n:?}"
    );
    assert!(
        n.contains(&"technician booked for Tuesday".to_string()),
        "{n:?}"
    );
    assert_eq!(va["priority"], "high");
    assert_eq!(va["store_id"], "S1");
    // Every accepted change is attributed to the device that sent it.
    let devices: Vec<_> = vr["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["device"].clone())
        .collect();
    assert!(devices.contains(&"tab-a".into()) && devices.contains(&"tab-b".into()));
    for s in [a.ok(&["status", "--json"]), b.ok(&["status", "--json"])] {
        let s: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(s["pending_cases"], 0);
        assert!(s["last_sync"].is_string());
    }
    // The standard Automerge binary loads and holds the same notes; the
    // customer's data in it is sealed (`case::seal`): the document alone
    // does not tell who the customer is.
    let (status, bytes) = relay.get(&format!("/v1/cases/{id}/doc"), Some(&ta));
    assert_eq!(status, 200);
    let doc = automerge::Automerge::load(&bytes).expect("standard automerge document");
    let v = aftercase_sync::case::CaseView::from_doc(&doc, &id);
    let mut plain = serde_json::to_value(&v).unwrap();
    for f in ["name", "phone"] {
        let sealed = plain["customer"][f]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(sealed.starts_with("sealed1:"), "{f}: {sealed}");
    }
    assert_eq!(
        aftercase_tests::history_holds(&bytes, &["13912345678", "Han Meimei"]),
        None
    );
    plain["customer"] = va["customer"].clone();
    assert_eq!(plain, va);
}

#[test]
fn offline_first_then_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay = Relay::start(&relay_dir);
    let url = relay.url.clone();
    let t = relay.token("carol", "technician", "S1", "phone-1");
    let hq_token = relay.token("hq", "head_office", "HQ", "hq-1");
    relay.kill9();
    let dev = Cli::init(&tmp.path().join("d"), &url, &t);
    let id = dev.new_case("installation");
    dev.ok(&["case", "note", &id, "site measured"]);
    dev.ok(&[
        "case",
        "contact",
        &id,
        // A visit, not a call: calls are limited to 10:00-18:00 China time
        // and this test must pass at any hour.
        "--channel",
        "visit",
        "--outcome",
        "agreed Friday 10:00",
    ]);
    dev.ok(&["case", "list"]);
    let err = dev.fails(&["sync"]);
    assert!(err.contains("relay unreachable"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line reason: {err}");
    let status: Value = serde_json::from_str(&dev.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["pending_cases"], 1);
    assert!(
        dev.show(&id)["timeline"].as_array().unwrap().len() >= 3,
        "local data untouched"
    );
    // Relay back (on a new port): a later sync uploads everything.
    let relay = Relay::start(&relay_dir);
    let dev = Cli::init(&dev.dir, &relay.url, &t);
    dev.ok(&["sync"]);
    let (s, v) = relay.get_json(&format!("/v1/cases/{id}"), &hq_token);
    assert_eq!(s, 200);
    assert_eq!(notes(&v), vec!["site measured".to_string()]);
    assert_eq!(v["contact_attempts"][0]["outcome"], "agreed Friday 10:00");
}

#[test]
fn other_stores_and_bad_tokens_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let ta = relay.token("alice", "staff", "S1", "tab-a");
    let tx = relay.token("xena", "supervisor", "S2", "tab-x");
    let thq = relay.token("hq", "head_office", "HQ", "hq-1");
    let a = Cli::init(&tmp.path().join("a"), &relay.url, &ta);
    let x = Cli::init(&tmp.path().join("x"), &relay.url, &tx);
    let id = a.new_case("complaint");
    a.ok(&["sync"]);
    x.ok(&["sync"]);
    let listed: Value = serde_json::from_str(&x.ok(&["case", "list", "--json"])).unwrap();
    assert_eq!(
        listed["cases"],
        Value::Array(vec![]),
        "another store's device received a case"
    );
    assert_eq!(listed["schema_version"], 1);
    // Another store's case answers like a missing one (no id probing).
    let (status, body) = relay.get(&format!("/v1/cases/{id}"), Some(&tx));
    assert_eq!(status, 404);
    let body = String::from_utf8(body).unwrap();
    assert!(
        !body.contains("Han Meimei") && !body.contains("WM-8KG"),
        "{body}"
    );
    assert_eq!(relay.get(&format!("/v1/cases/{id}/doc"), Some(&tx)).0, 404);
    let (s, list) = relay.get_json("/v1/cases?store=S1", &tx);
    assert_eq!(s, 403, "{list}");
    let (s, list) = relay.get_json("/v1/cases?store=S1&kind=complaint", &thq);
    assert_eq!(s, 200);
    assert_eq!(list["cases"][0]["id"], id.as_str());
    let (s, list) = relay.get_json("/v1/cases?kind=repair", &thq);
    assert_eq!((s, list["cases"].as_array().unwrap().len()), (200, 0));

    // Malformed, wrongly signed and expired tokens: 401, and the relay stays up.
    assert_eq!(relay.get("/v1/cases", None).0, 401);
    assert_eq!(relay.get("/v1/cases", Some("not-a-token")).0, 401);
    let mut forged = ta.clone();
    forged.pop();
    forged.push(if ta.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(relay.get(&format!("/v1/cases/{id}"), Some(&forged)).0, 401);
    let secret = std::fs::read_to_string(relay.data_dir.join("jwt-secret")).unwrap();
    let now = chrono::Utc::now().timestamp() as u64;
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub":"alice","role":"staff","store":"S1","device":"tab-a",
            "iss":"aftercase-relay","aud":"aftercase","iat":now-7200,"nbf":now-7200,"exp":now-3600}),
        &jsonwebtoken::EncodingKey::from_secret(secret.trim().as_bytes()),
    )
    .unwrap();
    let (s, body) = relay.get("/v1/cases", Some(&expired));
    assert_eq!(s, 401);
    assert!(String::from_utf8_lossy(&body).contains("Expired"));
    // The device knows its token's expiry: it stops before connecting,
    // with the remedy.
    let e = Cli::init(&tmp.path().join("e"), &relay.url, &expired);
    let err = e.fails(&["sync"]);
    assert!(
        err.contains("token expired") && err.contains("aftercase init"),
        "{err}"
    );
    assert_eq!(relay.get("/healthz", None).0, 200);
}

#[test]
fn relay_kill9_after_ack_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay = Relay::start(&relay_dir);
    let t = relay.token("alice", "staff", "S1", "tab-a");
    let tb = relay.token("bob", "staff", "S1", "tab-b");
    let a = Cli::init(&tmp.path().join("a"), &relay.url, &t);
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = a.new_case("damage_claim");
        a.ok(&["case", "note", &id, &format!("photo {i} taken")]);
        ids.push(id);
    }
    a.ok(&["sync"]);
    relay.kill9();
    let relay = Relay::start(&relay_dir);
    for (i, id) in ids.iter().enumerate() {
        let (s, v) = relay.get_json(&format!("/v1/cases/{id}"), &t);
        assert_eq!(s, 200);
        assert_eq!(notes(&v), vec![format!("photo {i} taken")]);
    }
    let b = Cli::init(&tmp.path().join("b"), &relay.url, &tb);
    b.ok(&["sync"]);
    let listed: Value = serde_json::from_str(&b.ok(&["case", "list", "--json"])).unwrap();
    assert_eq!(listed["cases"].as_array().unwrap().len(), 5);
}

#[test]
fn sdk_kill9_after_reported_save_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let t = relay.token("alice", "staff", "S1", "tab-a");
    let a = Cli::init(&tmp.path().join("a"), &relay.url, &t);
    let id = a.new_case("repair");
    let writer = std::path::PathBuf::from(env!("CARGO_BIN_EXE_writer"));
    let mut child = std::process::Command::new(writer)
        .arg(&a.dir)
        .arg(&id)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut last = None;
    use std::io::BufRead;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let n: u64 = line.trim_start_matches("saved ").parse().unwrap();
        last = Some(n);
        if n == 40 {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    child.wait().unwrap();
    let last = last.expect("writer reported saves");
    let v = a.show(&id);
    let n = notes(&v);
    for i in 0..=last {
        assert!(
            n.contains(&format!("crash-note-{i}")),
            "note {i} was reported saved but is lost"
        );
    }
    a.ok(&["sync"]);
    let (_, vr) = relay.get_json(&format!("/v1/cases/{id}"), &t);
    assert!(notes(&vr).len() as u64 > last);
}

async fn raw_socket(
    relay: &Relay,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = relay.url.replace("http://", "ws://") + "/v1/sync";
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_frame_size(Some(64 << 20))
        .max_message_size(Some(64 << 20));
    tokio_tungstenite::connect_async_with_config(req, Some(cfg), true)
        .await
        .unwrap()
        .0
}

/// Reads until the relay closes; returns the close reason and any error frame.
async fn close_reason(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> String {
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
fn malformed_and_oversized_frames_close_only_that_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let t = relay.token("mallory", "staff", "S1", "tab-m");
    let ta = relay.token("alice", "staff", "S1", "tab-a");
    let a = Cli::init(&tmp.path().join("a"), &relay.url, &ta);
    let id = a.new_case("return_exchange");
    a.ok(&["sync"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // A bystander connection that must survive.
        let mut bystander = raw_socket(&relay, &ta).await;
        bystander
            .send(Message::Binary(
                aftercase_sync::protocol::Frame::Hello {
                    cursor: 0,
                    policy_version: 1,
                    app_version: String::new(),
                    unsynced: Default::default(),
                    features: Vec::new(),
                }
                .encode()
                .into(),
            ))
            .await
            .unwrap();
        loop {
            match bystander.next().await.unwrap().unwrap() {
                Message::Binary(_) => break,
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }

        let mut ws = raw_socket(&relay, &t).await;
        ws.send(Message::Binary(vec![0x7f, 1, 2, 3].into()))
            .await
            .unwrap();
        let reason = close_reason(&mut ws).await;
        assert!(
            reason.contains("unsupported protocol version 127"),
            "{reason}"
        );

        let mut ws = raw_socket(&relay, &t).await;
        let mut garbage = vec![aftercase_sync::protocol::PROTOCOL_VERSION];
        garbage.extend_from_slice(&[0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        ws.send(Message::Binary(garbage.into())).await.unwrap();
        let reason = close_reason(&mut ws).await;
        assert!(reason.contains("malformed frame"), "{reason}");

        // A well-formed frame carrying a broken automerge message.
        let mut ws = raw_socket(&relay, &t).await;
        ws.send(Message::Binary(
            aftercase_sync::protocol::Frame::Hello {
                cursor: 0,
                policy_version: 1,
                app_version: String::new(),
                unsynced: Default::default(),
                features: Vec::new(),
            }
            .encode()
            .into(),
        ))
        .await
        .unwrap();
        let bogus = aftercase_sync::protocol::Frame::Sync {
            doc: id.parse().unwrap(),
            message: vec![0x42, 0x00, 0x13],
        };
        ws.send(Message::Binary(bogus.encode().into()))
            .await
            .unwrap();
        let reason = close_reason(&mut ws).await;
        assert!(reason.contains("malformed sync message"), "{reason}");

        let mut ws = raw_socket(&relay, &t).await;
        let huge = vec![
            aftercase_sync::protocol::PROTOCOL_VERSION;
            aftercase_sync::protocol::MAX_FRAME_BYTES + 10
        ];
        let _ = ws.send(Message::Binary(huge.into())).await;
        let reason = close_reason(&mut ws).await;
        assert!(reason.contains("exceeds the size limit"), "{reason}");

        // The bystander is still connected and served.
        bystander.send(Message::Ping(vec![1].into())).await.unwrap();
        loop {
            match bystander.next().await.unwrap().unwrap() {
                Message::Pong(_) => break,
                Message::Close(_) => panic!("bystander was disconnected"),
                _ => {}
            }
        }
    });
    // Nothing was applied, the case is intact and the relay still syncs.
    let v = a.show(&id);
    a.ok(&["sync"]);
    assert_eq!(a.show(&id), v);
    assert_eq!(relay.get("/healthz", None).0, 200);
    let _ = bin_dir();
}

#[test]
fn offline_fork_becomes_one_conflict_everywhere_until_a_supervisor_resolves_it() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let a = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S1", "tab-a"),
    );
    let b = Cli::init(
        &tmp.path().join("b"),
        &relay.url,
        &relay.token("bob", "staff", "S1", "tab-b"),
    );
    let sup = Cli::init(
        &tmp.path().join("s"),
        &relay.url,
        &relay.token("sam", "supervisor", "S1", "tab-s"),
    );
    let hq = relay.token("hq", "head_office", "HQ", "hq-1");
    let id = a.new_case("return_exchange");
    // Bought today: inside the return window, so a clerk may accept.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    a.ok(&["case", "set", &id, "purchase_date", &today]);
    a.ok(&["case", "transition", &id, "under_review"]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    // Offline, two tablets decide differently.
    a.ok(&["case", "transition", &id, "accepted"]);
    b.ok(&[
        "case",
        "transition",
        &id,
        "rejected",
        "--reason",
        "tags removed",
    ]);
    for d in [&a, &b, &a, &sup] {
        d.ok(&["sync"]);
    }
    let (va, vb, vs) = (a.show(&id), b.show(&id), sup.show(&id));
    assert_eq!(va, vb);
    assert_eq!(va, vs);
    let (_, vr) = relay.get_json(&format!("/v1/cases/{id}"), &hq);
    assert_eq!(without_audit(vr), va, "head office sees the same case");
    assert_eq!(va["status"], "under_review");
    assert_eq!(va["allowed_transitions"], serde_json::json!([]));
    let conflict = &va["conflicts"][0];
    assert_eq!(conflict["status"], "open");
    assert_eq!(
        conflict["options"],
        serde_json::json!(["accepted", "rejected"])
    );
    let cid = conflict["id"].as_str().unwrap().to_string();
    // The conflict list shows it; staff cannot resolve, the supervisor can.
    assert!(a.ok(&["conflicts"]).contains(&cid));
    let err = a.fails(&["case", "resolve", &id, &cid, "--choose", "accepted"]);
    assert!(err.contains("only a supervisor"), "{err}");
    let err = b.fails(&["case", "transition", &id, "closed"]);
    assert!(err.contains("open conflict"), "{err}");
    sup.ok(&["case", "resolve", &id, &cid, "--choose", "rejected"]);
    sup.ok(&["sync"]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    let va = a.show(&id);
    assert_eq!(va["status"], "rejected");
    assert_eq!(va["conflicts"][0]["chosen"], "rejected");
    assert_eq!(va, b.show(&id));
    let (_, vr) = relay.get_json(&format!("/v1/cases/{id}"), &hq);
    assert_eq!(vr["status"], "rejected");
    assert_eq!(a.ok(&["conflicts"]).trim(), "no open conflicts");
    // A move that is not a step names the steps allowed from here.
    let err = a.fails(&["case", "transition", &id, "refunded"]);
    assert!(
        err.contains("allowed from rejected: closed, cancelled"),
        "{err}"
    );
}

#[test]
fn cash_above_the_staff_limit_waits_for_a_supervisor() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let a = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S1", "tab-a"),
    );
    let sup = Cli::init(
        &tmp.path().join("s"),
        &relay.url,
        &relay.token("sam", "supervisor", "S1", "tab-s"),
    );
    let hq = relay.token("hq", "head_office", "HQ", "hq-1");
    let id = a.new_case("damage_claim");
    let out = a.run(&[
        "case",
        "offer",
        &id,
        "--tier",
        "cash",
        "--amount",
        "100",
        "--note",
        "scratched door",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("proposed"));
    let offer = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    let err = a.fails(&["case", "approve", &id, &offer]);
    assert!(
        err.contains("above what a staff may approve: ask a supervisor"),
        "{err}"
    );
    let err = a.fails(&["case", "offer", &id, "--tier", "cash", "--amount", "12.345"]);
    assert!(err.contains("amount"), "{err}");
    a.ok(&["sync"]);
    sup.ok(&["sync"]);
    let o = &sup.show(&id)["offers"][0];
    assert_eq!(
        (
            o["status"].as_str(),
            o["amount"].as_str(),
            o["tier"].as_str()
        ),
        (Some("proposed"), Some("100.00"), Some("cash"))
    );
    sup.ok(&["case", "approve", &id, &offer]);
    sup.ok(&["sync"]);
    a.ok(&["sync"]);
    let v = a.show(&id);
    assert_eq!(v["offers"][0]["status"], "approved");
    assert_eq!(v["offers"][0]["decided_by"], "sam");
    assert_eq!(v["policy_version"], 1);
    let (_, vr) = relay.get_json(&format!("/v1/cases/{id}"), &hq);
    assert_eq!(vr["offers"][0]["status"], "approved");
    a.ok(&["case", "accept-offer", &id, &offer]);
    a.ok(&["sync"]);
    assert_eq!(a.show(&id)["offers"][0]["status"], "accepted");
}

#[test]
fn a_repair_from_report_to_follow_up_call() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let staff = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S1", "tab-a"),
    );
    let tech = Cli::init(
        &tmp.path().join("t"),
        &relay.url,
        &relay.token("tom", "technician", "S1", "phone-t"),
    );
    let sup = Cli::init(
        &tmp.path().join("s"),
        &relay.url,
        &relay.token("sam", "supervisor", "S1", "tab-s"),
    );
    support::publish_technicians(&relay, &tmp.path().join("hq"), &[("tom", "S1")]);
    staff.ok(&["sync"]);
    let id = staff.new_case("repair");
    staff.ok(&["case", "transition", &id, "confirmed"]);
    staff.ok(&["case", "assign", &id, "tom"]);
    // Another technician of the store never receives it.
    let olga = relay.token("olga", "technician", "S1", "phone-o");
    let other = Cli::init(&tmp.path().join("o"), &relay.url, &olga);
    // Dispatching is booking Tom (派工: technician + appointment).
    staff.ok(&[
        "case",
        "book",
        &id,
        "--tech",
        "tom",
        "--at",
        "2026-12-08 10:00",
        "--duration",
        "2h",
    ]);
    assert_eq!(staff.show(&id)["status"], "dispatched");
    let err = tech.fails(&["case", "transition", &id, "in_repair"]);
    assert!(
        err.contains("no case"),
        "the technician has not synced yet: {err}"
    );
    staff.ok(&["sync"]);
    tech.ok(&["sync"]);
    other.ok(&["sync"]);
    assert_eq!(
        other.ok(&["case", "list"]).trim(),
        "no cases on this device"
    );
    // Not assigned to her: answered like a missing case.
    assert_eq!(relay.get(&format!("/v1/cases/{id}"), Some(&olga)).0, 404);
    assert_eq!(tech.show(&id)["assignee"], "tom");
    let err = tech.fails(&["case", "offer", &id, "--tier", "virtual", "--amount", "10"]);
    assert!(err.contains("technician may not offer"), "{err}");
    for s in ["in_repair", "pending_acceptance", "accepted"] {
        tech.ok(&["case", "transition", &id, s]);
    }
    tech.ok(&["sync"]);
    sup.ok(&["sync"]);
    sup.ok(&[
        "case",
        "contact",
        &id,
        "--channel",
        "phone",
        "--outcome",
        "TV works, customer happy",
        "--override",
        "customer asked to be called after work",
    ]);
    sup.ok(&["case", "transition", &id, "followed_up"]);
    sup.ok(&[
        "case",
        "survey",
        &id,
        "--description",
        "5",
        "--attitude",
        "4",
        "--speed",
        "4",
        "--logistics",
        "5",
    ]);
    let err = sup.fails(&[
        "case",
        "survey",
        &id,
        "--description",
        "6",
        "--attitude",
        "4",
        "--speed",
        "4",
        "--logistics",
        "5",
    ]);
    assert!(err.contains("description: 6 is not a score"), "{err}");
    sup.ok(&["case", "transition", &id, "closed"]);
    sup.ok(&["sync"]);
    staff.ok(&["sync"]);
    let v = staff.show(&id);
    assert_eq!(v["status"], "closed");
    assert_eq!(v["allowed_transitions"], serde_json::json!([]));
    assert_eq!(v["survey"]["attitude"], 4);
    let survey_timer = v["timers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "follow_up_survey")
        .unwrap();
    assert_eq!(
        (
            survey_timer["done"].as_bool(),
            survey_timer["breached"].as_bool()
        ),
        (Some(true), Some(false))
    );
    let kinds: Vec<_> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert!(
        kinds.contains(&"call".to_string()) && kinds.contains(&"survey".to_string()),
        "{kinds:?}"
    );

    // A repair that cannot be done opens a linked return.
    let id2 = staff.new_case("repair");
    staff.ok(&["case", "transition", &id2, "confirmed"]);
    staff.ok(&[
        "case",
        "book",
        &id2,
        "--tech",
        "tom",
        "--at",
        "2026-12-09 10:00",
        "--duration",
        "1h",
    ]);
    staff.ok(&["case", "transition", &id2, "in_repair"]);
    let out = staff.run(&[
        "case",
        "transition",
        &id2,
        "cannot_repair",
        "--reason",
        "panel discontinued",
    ]);
    assert!(out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        msg.contains("opened linked return or exchange case"),
        "{msg}"
    );
    let v2 = staff.show(&id2);
    let follow = v2["related_cases"][0].as_str().unwrap().to_string();
    let r = staff.show(&follow);
    assert_eq!(r["kind"], "return_exchange");
    assert_eq!(r["related_cases"][0], id2.as_str());
    assert_eq!(r["customer"], v2["customer"]);
    // Freight for the return: the seller is at fault (quality), rule 2.
    let out = staff.ok(&["case", "freight", &follow, "--seller-at-fault"]);
    assert!(
        out.contains("outbound: seller  return: seller  (rule 2"),
        "{out}"
    );
    assert_eq!(staff.show(&follow)["freight"]["rule"], 2);
    staff.ok(&[
        "case",
        "escalate",
        &follow,
        "supervisor",
        "--ref",
        "desk note 17",
    ]);
    let err = staff.fails(&["case", "escalate", &follow, "store"]);
    assert!(err.contains("already at supervisor"), "{err}");
    let err = staff.fails(&[
        "case",
        "freight",
        &follow,
        "--override",
        "customer,customer",
        "--reason",
        "agreed at the counter",
    ]);
    assert!(err.contains("only a supervisor"), "{err}");
    staff.ok(&["sync"]);
    sup.ok(&["sync"]);
    let out = sup.ok(&[
        "case",
        "freight",
        &follow,
        "--override",
        "store,seller",
        "--reason",
        "store van was passing",
    ]);
    assert!(out.contains("outbound: store  return: seller"), "{out}");
    let f = sup.show(&follow)["freight"].clone();
    assert_eq!(
        (f["rule"].as_i64(), f["decided_by"].as_str()),
        (Some(0), Some("sam"))
    );
    sup.ok(&["sync"]);
    staff.ok(&["sync"]);
}

#[test]
fn head_office_publishes_policy_and_devices_decide_under_it() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let hq_token = relay.token("hq", "head_office", "HQ", "hq-1");
    let hq = Cli::init(&tmp.path().join("hq"), &relay.url, &hq_token);
    let a = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S1", "tab-a"),
    );
    let mut policy: Value = serde_json::from_str(&a.ok(&["policy", "show"])).unwrap();
    assert_eq!(policy["version"], 1);
    assert_eq!(policy["staff_virtual_limit_fen"], 5000);
    let file = tmp.path().join("policy.json");
    // A wrong value is refused with the field's name, and nothing changes.
    policy["version"] = 2.into();
    policy["max_calls_per_day"] = 0.into();
    std::fs::write(&file, policy.to_string()).unwrap();
    let err = hq.fails(&["policy", "publish", file.to_str().unwrap()]);
    assert!(err.contains("max_calls_per_day"), "{err}");
    policy["max_calls_per_day"] = 3.into();
    policy["staff_virtual_limit_fen"] = 2000.into();
    std::fs::write(&file, policy.to_string()).unwrap();
    // Only head office may publish.
    let err = a.fails(&["policy", "publish", file.to_str().unwrap()]);
    assert!(err.contains("only head office"), "{err}");
    let out = hq.ok(&["policy", "publish", file.to_str().unwrap()]);
    assert!(out.contains("version 2 is in force"), "{out}");
    let err = hq.fails(&["policy", "publish", file.to_str().unwrap()]);
    assert!(err.contains("not newer"), "{err}");
    let (s, body) = relay.get("/v1/policy", Some(&hq_token));
    assert_eq!(s, 200);
    let live: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(live["staff_virtual_limit_fen"], 2000);
    // The store's tablet receives it through sync and decides under it.
    a.ok(&["sync"]);
    let now: Value = serde_json::from_str(&a.ok(&["policy", "show"])).unwrap();
    assert_eq!(now["version"], 2);
    let id = a.new_case("complaint");
    let offer = a.ok(&["case", "offer", &id, "--tier", "virtual", "--amount", "30"]);
    let offer = offer.lines().last().unwrap();
    let v = a.show(&id);
    let o = v["offers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == offer)
        .unwrap();
    assert_eq!(
        o["status"], "proposed",
        "¥30 is above the new ¥20 staff limit"
    );
    assert_eq!(o["policy_version"], 2);
    assert_eq!(v["policy_version"], 2);
    a.ok(&["sync"]);
}
