//! A hostile client against the real relay over a real socket: it speaks
//! the wire protocol with valid tokens of the case's own store and tries
//! every attack found when the relay only checked new entries. Each upload
//! must be refused with its code, leave head office's view and the stored
//! document unchanged, and leave the connection (and the relay) working.

mod support;

use aftercase_sync::protocol::Frame;
use automerge::sync::{State, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ReadDoc, ScalarValue, ROOT};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use support::{runtime, try_raw_socket, Cli, RawSocket, Relay};
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
    loop {
        if let Frame::Announce { complete: true, .. } = recv(ws).await {
            return;
        }
    }
}

async fn fetch(ws: &mut RawSocket, id: &str) -> Automerge {
    let case: aftercase_sync::CaseId = id.parse().unwrap();
    send(ws, &Frame::Fetch { docs: vec![case] }).await;
    loop {
        if let Frame::Snapshots { docs } = recv(ws).await {
            let d = docs.into_iter().find(|d| d.doc == case).expect("the case");
            return Automerge::load(&d.bytes).expect("a document");
        }
    }
}

/// Runs Automerge's sync of `doc` with the relay; the relay's refusal, if
/// any, as (code, reason).
async fn upload(ws: &mut RawSocket, id: &str, doc: &mut Automerge) -> Result<(), (String, String)> {
    let case: aftercase_sync::CaseId = id.parse().unwrap();
    let mut state = State::new();
    for _ in 0..20 {
        let Some(msg) = doc.generate_sync_message(&mut state) else {
            return Ok(());
        };
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
                Frame::Sync { doc: d, message } if d == case => {
                    let m = automerge::sync::Message::decode(&message).unwrap();
                    doc.receive_sync_message(&mut state, m).unwrap();
                    break;
                }
                Frame::Refused {
                    doc: d,
                    code,
                    reason,
                } if d == case => return Err((code, reason)),
                Frame::Error { reason } => panic!("relay closed the connection: {reason}"),
                _ => {}
            }
        }
    }
    panic!("sync did not settle");
}

fn entry_where(doc: &Automerge, log: &str, key: &str, value: &str) -> automerge::ObjId {
    aftercase_sync::case::read::entries(doc, &ROOT, log)
        .into_iter()
        .find(|(_, e)| aftercase_sync::case::read::string(doc, e, key).as_deref() == Some(value))
        .map(|(_, e)| e)
        .unwrap_or_else(|| panic!("no {log} entry with {key} = {value}"))
}

fn map(doc: &Automerge, key: &str) -> automerge::ObjId {
    aftercase_sync::case::read::map(doc, &ROOT, key).unwrap()
}

type Attack = (&'static str, &'static str, Box<dyn Fn(&mut Automerge)>);

/// What head office sees of a case: the view and the stored heads.
fn ho_snapshot(
    relay: &Relay,
    hq: &str,
    id: &str,
) -> (serde_json::Value, Vec<automerge::ChangeHash>) {
    let (s, mut view) = relay.get_json(&format!("/v1/cases/{id}"), hq);
    assert_eq!(s, 200);
    // Timers count down with the clock; the rest must not move.
    view.as_object_mut().unwrap().remove("timers");
    let (s, bytes) = relay.get(&format!("/v1/cases/{id}/doc"), Some(hq));
    assert_eq!(s, 200);
    (view, Automerge::load(&bytes).unwrap().get_heads())
}

#[test]
fn every_attack_on_a_recorded_case_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let alice = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S1", "tab-a"),
    );
    let sam = Cli::init(
        &tmp.path().join("s"),
        &relay.url,
        &relay.token("sam", "supervisor", "S1", "tab-s"),
    );
    let hq = relay.token("hq", "head_office", "HQ", "hq-1");
    // A recorded case: a note, an approved ¥100 offer, a supervisor's
    // approval of another, a move, an assignment.
    let id = alice.new_case("damage_claim");
    alice.ok(&["case", "note", &id, "alice's note"]);
    let small = alice.ok(&["case", "offer", &id, "--tier", "virtual", "--amount", "30"]);
    let small = small.lines().last().unwrap().to_string();
    let cash = alice.ok(&["case", "offer", &id, "--tier", "cash", "--amount", "100"]);
    let cash = cash.lines().last().unwrap().to_string();
    // 拍照举证: a photo (a real JPEG header) before evidence_collected.
    let jpeg = tmp.path().join("door.jpg");
    std::fs::write(
        &jpeg,
        [
            0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1,
        ],
    )
    .unwrap();
    alice.ok(&[
        "case",
        "attach",
        &id,
        jpeg.to_str().unwrap(),
        "--type",
        "photo",
    ]);
    alice.ok(&["case", "transition", &id, "evidence_collected"]);
    alice.ok(&["sync"]);
    sam.ok(&["sync"]);
    sam.ok(&["case", "approve", &id, &cash]);
    sam.ok(&["case", "assign", &id, "tom"]);
    sam.ok(&["sync"]);
    let other = alice.new_case("complaint");
    alice.ok(&["sync"]);
    let before = ho_snapshot(&relay, &hq, &id);

    let rt = runtime();
    let mallory_token = relay.token("mallory", "staff", "S1", "evil-1");
    let tom_token = relay.token("tom", "technician", "S1", "tom-1");
    let mut ws = rt
        .block_on(try_raw_socket(&relay.url, &mallory_token))
        .unwrap();
    rt.block_on(hello(&mut ws));
    let base = rt.block_on(fetch(&mut ws, &id));

    // Mallory's own ¥300 cash offer, honestly proposed: it needs approval.
    let mut own = base.fork();
    let ctx = aftercase_sync::case::EditContext {
        author: "mallory".parse().unwrap(),
        role: aftercase_sync::access::Role::Staff,
        device: "evil-1".parse().unwrap(),
        now: aftercase_sync::Millis(chrono::Utc::now().timestamp_millis()),
        nonce: [77; 16],
    };
    let own_offer = aftercase_sync::case::offer::offer(
        &mut own,
        id.parse().unwrap(),
        &ctx,
        &aftercase_sync::policy::Policy::default(),
        aftercase_sync::money::Tier::Cash,
        30_000,
        None,
    )
    .unwrap();
    rt.block_on(upload(&mut ws, &id, &mut own))
        .expect("an honest offer is accepted");
    let base = own;
    let before = {
        let after_offer = ho_snapshot(&relay, &hq, &id);
        assert_ne!(after_offer.1, before.1, "the honest offer was stored");
        after_offer
    };

    let attacks: Vec<Attack> = vec![
        (
            "raise an approved offer to ¥999,999",
            "append_only",
            Box::new(move |d: &mut Automerge| {
                let o = aftercase_sync::case::read::map(d, &map(d, "offers"), &cash).unwrap();
                let mut t = d.transaction();
                t.put(&o, "amount_fen", 99_999_900i64).unwrap();
                t.put(&o, "tier", "cash").unwrap();
                t.commit();
            }),
        ),
        (
            "flip needs_approval on one's own offer",
            "append_only",
            Box::new(move |d: &mut Automerge| {
                let o = aftercase_sync::case::read::map(d, &map(d, "offers"), &own_offer).unwrap();
                let mut t = d.transaction();
                t.put(&o, "needs_approval", false).unwrap();
                t.commit();
            }),
        ),
        (
            "delete a supervisor's decision",
            "append_only",
            Box::new(|d: &mut Automerge| {
                let m = map(d, "offer_decisions");
                let k = d.keys(&m).next().unwrap();
                let mut t = d.transaction();
                t.delete(&m, k.as_str()).unwrap();
                t.commit();
            }),
        ),
        (
            "delete another person's note",
            "append_only",
            Box::new(|d: &mut Automerge| {
                let m = map(d, "timeline");
                let k = aftercase_sync::case::read::entries(d, &ROOT, "timeline")
                    .into_iter()
                    .find(|(_, e)| {
                        aftercase_sync::case::read::string(d, e, "type").as_deref() == Some("note")
                    })
                    .unwrap()
                    .0;
                let mut t = d.transaction();
                t.delete(&m, k.as_str()).unwrap();
                t.commit();
            }),
        ),
        (
            "rewrite another person's note",
            "append_only",
            Box::new(|d: &mut Automerge| {
                let e = entry_where(d, "timeline", "type", "note");
                let mut t = d.transaction();
                t.put(&e, "text", "alice insulted the customer").unwrap();
                t.commit();
            }),
        ),
        (
            "change the author shown on an entry",
            "append_only",
            Box::new(|d: &mut Automerge| {
                let e = entry_where(d, "timeline", "type", "note");
                let mut t = d.transaction();
                t.put(&e, "author", "mallory").unwrap();
                t.commit();
            }),
        ),
        (
            "delete the transitions map",
            "append_only",
            Box::new(|d: &mut Automerge| {
                let mut t = d.transaction();
                t.delete(ROOT, "transitions").unwrap();
                t.commit();
            }),
        ),
        (
            "delete the offers map",
            "append_only",
            Box::new(|d: &mut Automerge| {
                let mut t = d.transaction();
                t.delete(ROOT, "offers").unwrap();
                t.commit();
            }),
        ),
        (
            "replace the timeline",
            "append_only",
            Box::new(|d: &mut Automerge| {
                let mut t = d.transaction();
                t.put_object(ROOT, "timeline", ObjType::Map).unwrap();
                t.commit();
            }),
        ),
        (
            "add an unknown root key",
            "unknown_key",
            Box::new(|d: &mut Automerge| {
                let mut t = d.transaction();
                t.put(ROOT, "discount_code", "FREE").unwrap();
                t.commit();
            }),
        ),
        (
            "move the case to another store",
            "fixed_field",
            Box::new(|d: &mut Automerge| {
                let mut t = d.transaction();
                t.put(ROOT, "store_id", "S2").unwrap();
                t.commit();
            }),
        ),
        (
            "approve one's own offer by a forged decision",
            "identity",
            Box::new(move |d: &mut Automerge| {
                let mut t = d.transaction();
                let m = aftercase_sync::case::read::map(&t, &ROOT, "offer_decisions").unwrap();
                let e = t.put_object(&m, "forged1", ObjType::Map).unwrap();
                for (k, v) in [
                    ("type", "offer_decision"),
                    ("author", "sam"),
                    ("role", "supervisor"),
                    ("device", "tab-s"),
                    ("offer", small.as_str()),
                    ("decision", "approve"),
                ] {
                    t.put(&e, k, v).unwrap();
                }
                t.put(
                    &e,
                    "at",
                    ScalarValue::Timestamp(chrono::Utc::now().timestamp_millis()),
                )
                .unwrap();
                t.put(&e, "policy_version", 1i64).unwrap();
                t.commit();
            }),
        ),
    ];
    for (name, code, forge) in &attacks {
        let mut d = base.fork();
        forge(&mut d);
        let r = rt.block_on(upload(&mut ws, &id, &mut d));
        let (got, reason) = r.expect_err(name);
        assert_eq!(&got, code, "{name}: {reason}");
        assert_eq!(
            ho_snapshot(&relay, &hq, &id),
            before,
            "{name} changed the case"
        );
    }

    // A technician of the store, assigned to the case.
    let mut tws = rt.block_on(try_raw_socket(&relay.url, &tom_token)).unwrap();
    rt.block_on(hello(&mut tws));
    let tbase = rt.block_on(fetch(&mut tws, &id));
    let tech_attacks: Vec<Attack> = vec![
        (
            "rewrite an earlier move to cancelled",
            "append_only",
            Box::new(|d: &mut Automerge| {
                let e = entry_where(d, "transitions", "to", "evidence_collected");
                let mut t = d.transaction();
                t.put(&e, "to", "cancelled").unwrap();
                t.commit();
            }),
        ),
        (
            "reassign the case to another technician",
            "forbidden",
            Box::new(|d: &mut Automerge| {
                let ctx = aftercase_sync::case::EditContext {
                    author: "tom".parse().unwrap(),
                    role: aftercase_sync::access::Role::Technician,
                    device: "tom-1".parse().unwrap(),
                    now: aftercase_sync::Millis(chrono::Utc::now().timestamp_millis()),
                    nonce: [78; 16],
                };
                // The device refuses; a modified client writes it anyway.
                let _ = aftercase_sync::case::service::assign(
                    d,
                    "00000000-0000-0000-0000-000000000000".parse().unwrap(),
                    &ctx,
                    &"eve".parse().unwrap(),
                );
                let mut t = d.transaction();
                let m = aftercase_sync::case::read::map(&t, &ROOT, "assignments").unwrap();
                let e = t.put_object(&m, "reassign1", ObjType::Map).unwrap();
                for (k, v) in [
                    ("type", "assignment"),
                    ("author", "tom"),
                    ("role", "technician"),
                    ("device", "tom-1"),
                    ("assignee", "eve"),
                ] {
                    t.put(&e, k, v).unwrap();
                }
                t.put(&e, "at", ScalarValue::Timestamp(ctx.now.0)).unwrap();
                t.commit();
            }),
        ),
    ];
    for (name, code, forge) in &tech_attacks {
        let mut d = tbase.fork();
        forge(&mut d);
        let (got, reason) = rt.block_on(upload(&mut tws, &id, &mut d)).expect_err(name);
        assert_eq!(&got, code, "{name}: {reason}");
        assert_eq!(
            ho_snapshot(&relay, &hq, &id),
            before,
            "{name} changed the case"
        );
    }
    // Eve, the other technician, still sees nothing.
    let eve = relay.token("eve", "technician", "S1", "eve-1");
    let (s, _) = relay.get(&format!("/v1/cases/{id}"), Some(&eve));
    assert_eq!(s, 404);

    // A new case that claims head office made it.
    let fake: aftercase_sync::CaseId = "11111111-2222-3333-4444-555555555555".parse().unwrap();
    let mut forged_case = Automerge::new();
    aftercase_sync::case::edit::create_case(
        &mut forged_case,
        &aftercase_sync::case::EditContext {
            author: "hq".parse().unwrap(),
            role: aftercase_sync::access::Role::Staff,
            device: "hq-1".parse().unwrap(),
            now: aftercase_sync::Millis(chrono::Utc::now().timestamp_millis()),
            nonce: [79; 16],
        },
        &aftercase_sync::case::NewCase {
            id: fake,
            case_no: "S1-hq-1".into(),
            kind: aftercase_sync::case::CaseKind::Complaint,
            store: "S1".parse().unwrap(),
            customer: aftercase_sync::case::edit::Customer {
                name: "X".into(),
                phone: "13700000000".into(),
            },
            sku: None,
            description: None,
        },
    )
    .unwrap();
    let (code, _) = rt
        .block_on(upload(&mut ws, &fake.to_string(), &mut forged_case))
        .expect_err("a case forged as head office's");
    assert_eq!(code, "identity");
    let (s, _) = relay.get(&format!("/v1/cases/{fake}"), Some(&hq));
    assert_eq!(s, 404, "nothing of the forged case was stored");

    // After all that, the same connection still syncs its other case.
    let mut o = rt.block_on(fetch(&mut ws, &other));
    aftercase_sync::case::edit::add_note(&mut o, other.parse().unwrap(), &ctx, "a real note")
        .unwrap();
    rt.block_on(upload(&mut ws, &other, &mut o))
        .expect("an honest edit still syncs");
    let v = alice.ok(&["sync"]);
    let _ = v;
    let shown = alice.show(&other);
    assert!(shown.to_string().contains("a real note"), "{shown}");
}

#[test]
fn resource_attacks_are_refused_and_the_relay_stays_responsive() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let alice = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S1", "tab-a"),
    );
    let id = alice.new_case("complaint");
    alice.ok(&["sync"]);
    let rt = runtime();
    let token = relay.token("mallory", "staff", "S1", "evil-1");
    let mut ws = rt.block_on(try_raw_socket(&relay.url, &token)).unwrap();
    rt.block_on(hello(&mut ws));
    let base = rt.block_on(fetch(&mut ws, &id));

    // One change with 100,000 timeline entries, uploaded while another
    // thread keeps asking /healthz.
    let mut big = base.fork();
    {
        let mut t = big.transaction();
        let tl = aftercase_sync::case::read::map(&t, &ROOT, "timeline").unwrap();
        for i in 0..100_000u32 {
            let e = t.put_object(&tl, format!("e{i}"), ObjType::Map).unwrap();
            t.put(&e, "type", "note").unwrap();
        }
        t.commit();
    }
    let url = relay.url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut answered = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client.get(format!("{url}/healthz")).send();
                assert!(
                    r.is_ok_and(|r| r.status().is_success()),
                    "healthz did not answer"
                );
                answered += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            answered
        })
    };
    let (code, reason) = rt
        .block_on(upload(&mut ws, &id, &mut big))
        .expect_err("100,000 entries");
    assert!(
        code == "too_large" || code == "too_many",
        "{code}: {reason}"
    );

    // Many tiny probes for random unknown cases: refused or answered, and
    // they leave nothing behind.
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap()
    };
    let before = rss(relay.pid());
    rt.block_on(async {
        let empty = Automerge::new();
        for i in 0..20_000u32 {
            let mut st = State::new();
            let msg = empty.generate_sync_message(&mut st).unwrap();
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&i.to_be_bytes());
            b[4] = 0xee;
            send(
                &mut ws,
                &Frame::Sync {
                    doc: aftercase_sync::CaseId::from_bytes(b),
                    message: msg.encode(),
                },
            )
            .await;
            // Read as we go, like a real client.
            if i % 100 == 99 {
                for _ in 0..100 {
                    let _ = recv(&mut ws).await;
                }
            }
        }
    });
    let after = rss(relay.pid());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = watcher.join().expect("healthz kept answering");
    assert!(answered > 0);
    assert!(
        after < before + 100 * 1024,
        "20,000 probes grew the relay from {before} kB to {after} kB"
    );
    // Nothing of a probe is on disk: the probe ids are unknown to head office.
    let hq = relay.token("hq", "head_office", "HQ", "hq-1");
    let (_, list) = relay.get_json("/v1/cases", &hq);
    assert_eq!(list["cases"].as_array().map(|a| a.len()), Some(1), "{list}");

    // The store still syncs, and the case is as it was.
    alice.ok(&["case", "note", &id, "still here"]);
    alice.ok(&["sync"]);
    let bob = Cli::init(
        &tmp.path().join("b"),
        &relay.url,
        &relay.token("bob", "staff", "S1", "tab-b"),
    );
    bob.ok(&["sync"]);
    assert!(bob.show(&id).to_string().contains("still here"));
}

#[test]
fn a_refused_case_is_listed_and_can_be_discarded_without_blocking_others() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let alice = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S1", "tab-a"),
    );
    let hq = Cli::init(
        &tmp.path().join("h"),
        &relay.url,
        &relay.token("hq", "head_office", "HQ", "hq-1"),
    );
    let id = alice.new_case("complaint");
    let other = alice.new_case("complaint");
    alice.ok(&["sync"]);
    // Head office tightens the change size limit; alice, offline, has not
    // heard of it and writes a long note on one case and a short one on
    // the other.
    let mut policy: serde_json::Value = serde_json::from_str(&hq.ok(&["policy", "show"])).unwrap();
    policy["version"] = serde_json::json!(2);
    policy["max_change_bytes"] = serde_json::json!(4096);
    let file = tmp.path().join("policy.json");
    std::fs::write(&file, policy.to_string()).unwrap();
    hq.ok(&["policy", "publish", file.to_str().unwrap()]);
    let long: String = (0..9_000u32)
        .map(|i| char::from_u32(0x4e00 + (i * 7919) % 20_000).unwrap())
        .collect();
    alice.ok(&["case", "note", &id, &long]);
    alice.ok(&["case", "note", &other, "short and fine"]);
    let err = alice.fails(&["sync"]);
    assert!(err.contains("limit"), "{err}");
    // The other case went through.
    hq.ok(&["sync"]);
    assert!(hq.show(&other).to_string().contains("short and fine"));
    // The refusal is remembered and shown with its reason.
    let status = alice.ok(&["status"]);
    let no = alice.show(&id)["case_no"].as_str().unwrap().to_string();
    assert!(
        status.contains(&no) && status.contains("too_large"),
        "{status}"
    );
    let status: serde_json::Value = serde_json::from_str(&alice.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["refused"][0]["code"], "too_large");
    // Discard: the local note goes to the reject log, the relay's version
    // comes back, and sync is clean again.
    alice.ok(&["case", "discard", &id]);
    alice.ok(&["sync"]);
    let shown = alice.show(&id);
    assert!(
        !shown.to_string().contains(&long[..30]),
        "the refused note is gone"
    );
    assert_eq!(shown["id"], serde_json::json!(id));
    let status: serde_json::Value = serde_json::from_str(&alice.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["refused"], serde_json::json!([]));
    assert_eq!(status["pending_cases"], 0);
}

#[test]
fn a_case_cannot_be_grown_past_the_limit_and_the_store_still_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let alice = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S1", "tab-a"),
    );
    let id = alice.new_case("complaint");
    alice.ok(&["sync"]);
    let rt = runtime();
    let token = relay.token("mallory", "staff", "S1", "evil-1");
    let mut ws = rt.block_on(try_raw_socket(&relay.url, &token)).unwrap();
    rt.block_on(hello(&mut ws));
    let mut doc = rt.block_on(fetch(&mut ws, &id));
    let ctx = |n: u32| aftercase_sync::case::EditContext {
        author: "mallory".parse().unwrap(),
        role: aftercase_sync::access::Role::Staff,
        device: "evil-1".parse().unwrap(),
        now: aftercase_sync::Millis(chrono::Utc::now().timestamp_millis()),
        nonce: {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&n.to_be_bytes());
            b
        },
    };
    // Notes of 10,000 characters that do not compress, 12 per upload
    // (under the 512 KiB change limit), until the relay says no.
    let mut uploaded = 0usize;
    let mut refused = None;
    for round in 0..40u32 {
        let mut next = doc.fork();
        for k in 0..12u32 {
            let n = round * 100 + k;
            let text: String = (0..10_000u32)
                .map(|i| {
                    char::from_u32(
                        0x4e00 + (i.wrapping_mul(7919) ^ n.wrapping_mul(104_729)) % 20_000,
                    )
                    .unwrap()
                })
                .collect();
            aftercase_sync::case::edit::add_note(&mut next, id.parse().unwrap(), &ctx(n), &text)
                .unwrap();
        }
        let bytes = next.save_after(&doc.get_heads()).len();
        match rt.block_on(upload(&mut ws, &id, &mut next)) {
            Ok(()) => {
                uploaded += bytes;
                doc = next;
            }
            Err((code, reason)) => {
                refused = Some((code, reason));
                break;
            }
        }
    }
    let (code, reason) = refused.expect("the relay refuses to grow the case without end");
    assert_eq!(code, "too_large", "{reason}");
    assert!(
        uploaded <= 4 << 20,
        "{uploaded} bytes were accepted into one case"
    );
    // The store's devices, old and new, still sync the case.
    alice.ok(&["sync"]);
    let bob = Cli::init(
        &tmp.path().join("b"),
        &relay.url,
        &relay.token("bob", "staff", "S1", "tab-b"),
    );
    bob.ok(&["sync"]);
    assert_eq!(bob.show(&id)["id"], serde_json::json!(id));
}
