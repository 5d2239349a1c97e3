//! Head office's reads at chain scale, on the real relay binary over
//! loopback: filtered case lists and queues, a month's service metrics,
//! a full CSV export, and the sync acknowledgement of a device while
//! those queries run.
//!
//! The chain is seeded in process through the relay core's own commit
//! path (judge, summary, audit feed, all in sled), each case received at
//! the time it was opened, spread over 60 days; the real relay then opens
//! that data directory.

use super::relay_process::{connect, RelayProcess, Socket};
use super::{ms, Row};
use aftercase_sync::access::{Principal, Role};
use aftercase_sync::case::edit::{self, Customer, EditContext, NewCase};
use aftercase_sync::case::CaseKind;
use aftercase_sync::protocol::Frame;
use aftercase_sync::relay::{Relay, RelaySession};
use aftercase_sync::storage::{SledStorage, Storage};
use aftercase_sync::workflow::table;
use aftercase_sync::{CaseId, Millis};
use automerge::sync::{Message, State, SyncDoc};
use automerge::Automerge;
use futures_util::{SinkExt, StreamExt};
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const STORES: u64 = 100;
/// Between two measured uploads.
const PAUSE: Duration = Duration::from_millis(10);
const KINDS: [CaseKind; 5] = [
    CaseKind::Repair,
    CaseKind::Complaint,
    CaseKind::Installation,
    CaseKind::ReturnExchange,
    CaseKind::DamageClaim,
];

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn store(i: u64) -> String {
    format!("S{:03}", i % STORES)
}

fn principal(store: &str) -> Principal {
    Principal {
        user: format!("sup-{store}").parse().expect("valid"),
        role: Role::Supervisor,
        store: store.parse().expect("valid"),
        device: format!("tab-{store}").parse().expect("valid"),
    }
}

fn ctx(store: &str, at: i64, n: u64) -> EditContext {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&n.to_be_bytes());
    EditContext {
        author: format!("sup-{store}").parse().expect("valid"),
        role: Role::Supervisor,
        device: format!("tab-{store}").parse().expect("valid"),
        now: Millis(at),
        nonce,
    }
}

/// Case `i`: kind, store and opening time spread evenly; half have made
/// their first move some hours later.
fn case(i: u64, n: u64, start: i64) -> (CaseId, Automerge, String, i64) {
    let store = store(i);
    let kind = KINDS[(i / STORES) as usize % KINDS.len()];
    let opened = start + (i as i64) * (60 * DAY) / (n as i64);
    let mut id_bytes = [0u8; 16];
    id_bytes[8..].copy_from_slice(&i.to_be_bytes());
    id_bytes[0] = 0xce;
    let id = CaseId::from_random_bytes(id_bytes);
    let mut doc = Automerge::new();
    edit::create_case(
        &mut doc,
        &ctx(&store, opened, i * 4),
        &NewCase {
            id,
            case_no: format!("{store}-tab-{i}"),
            kind,
            store: store.parse().expect("valid"),
            customer: Customer {
                name: "Bench Customer".into(),
                // Repeat customers: 20,000 numbers over the chain.
                phone: format!("139{:08}", i % 20_000),
            },
            sku: Some(format!("SKU-{}", i % 500)),
            description: Some("does not start".into()),
        },
    )
    .expect("create");
    let mut last = opened;
    if i.is_multiple_of(2) {
        if let Some(to) = table::allowed_from(kind, kind.initial_status())
            .into_iter()
            .find(|s| *s != table::CANCELLED)
        {
            last = opened + ((i % 10) as i64 + 1) * HOUR;
            if kind == CaseKind::DamageClaim {
                // 拍照举证: the photo's record before evidence_collected.
                let (_, hash) = aftercase_sync::case::blob::sha256(&i.to_be_bytes());
                aftercase_sync::case::evidence::attach(
                    &mut doc,
                    id,
                    &ctx(&store, last, i * 4 + 2),
                    &aftercase_sync::policy::Policy::default(),
                    &aftercase_sync::case::evidence::Evidence {
                        kind: "photo".into(),
                        hash,
                        size: 3_000_000,
                        media_type: "image/jpeg".into(),
                        captured_at: last,
                        caption: None,
                    },
                )
                .expect("photo");
            }
            aftercase_sync::case::transition::transition(
                &mut doc,
                id,
                &ctx(&store, last, i * 4 + 1),
                to,
                None,
            )
            .expect("first move");
        }
    }
    (id, doc, store, last)
}

/// Seeds `n` cases in 100 stores into `dir` through the relay core.
fn seed(dir: &Path, n: u64) -> Duration {
    let t0 = Instant::now();
    let storage = SledStorage::open(&dir.join("db")).expect("relay storage");
    let mut relay = Relay::open(storage.clone(), NonZeroUsize::new(256).expect("non-zero"))
        .expect("open relay");
    relay.init_customer_salt([7; 32]).expect("salt");
    let mut sessions: Vec<RelaySession> = (0..STORES)
        .map(|s| {
            let mut rs = relay.session(principal(&store(s)));
            relay
                .handle(
                    &mut rs,
                    Frame::Hello {
                        cursor: u64::MAX,
                        policy_version: 0,
                        app_version: String::new(),
                        unsynced: Default::default(),
                        features: Vec::new(),
                    },
                    Millis(now_ms()),
                )
                .expect("hello");
            rs
        })
        .collect();
    let start = now_ms() - 60 * DAY;
    for i in 0..n {
        let (id, mut doc, _, last) = case(i, n, start);
        let rs = &mut sessions[(i % STORES) as usize];
        let mut state = State::new();
        // Received a minute after its last edit (the relay's clock).
        let at = Millis(last + 60_000);
        while let Some(msg) = doc.generate_sync_message(&mut state) {
            let out = relay
                .handle(
                    rs,
                    Frame::Sync {
                        doc: id,
                        message: msg.encode(),
                    },
                    at,
                )
                .expect("relay");
            let mut answered = false;
            for f in out.frames {
                match f {
                    Frame::Sync { message, .. } => {
                        let m = Message::decode(&message).expect("message");
                        doc.receive_sync_message(&mut state, m).expect("apply");
                        answered = true;
                    }
                    Frame::Refused { reason, .. } => panic!("seed refused: {reason}"),
                    _ => {}
                }
            }
            if !answered {
                break;
            }
        }
        if i % 2000 == 1999 {
            relay.flush().expect("flush");
            eprintln!(
                "head office: seeded {} cases in {:.0} s",
                i + 1,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    relay.flush().expect("flush");
    for rs in sessions {
        relay.end_session(rs).expect("end");
    }
    storage.flush().expect("flush");
    t0.elapsed()
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    aftercase_tests::quantile::percentile(v, p)
}

fn time_get(client: &reqwest::blocking::Client, url: &str, token: &str) -> Duration {
    let t0 = Instant::now();
    let resp = client.get(url).bearer_auth(token).send().expect("request");
    let status = resp.status();
    let body = resp.bytes().expect("body");
    assert!(
        status.is_success(),
        "{url}: {status} {:?}",
        String::from_utf8_lossy(&body)
    );
    t0.elapsed()
}

/// Upload round trips of new cases from one device: time from sending
/// the first sync message to the relay's answer (sent once durable).
/// `pause` between uploads spreads them over time, so a query load
/// running meanwhile overlaps them.
async fn acks(
    ws: &mut Socket,
    store: &str,
    count: u64,
    base: u64,
    pause: Duration,
) -> Vec<Duration> {
    let mut out = Vec::new();
    for k in 0..count {
        tokio::time::sleep(pause).await;
        let i = base + k;
        let (id, doc, _, _) = {
            let mut id_bytes = [0u8; 16];
            id_bytes[8..].copy_from_slice(&i.to_be_bytes());
            id_bytes[0] = 0xac;
            let id = CaseId::from_random_bytes(id_bytes);
            let mut doc = Automerge::new();
            edit::create_case(
                &mut doc,
                &ctx(store, now_ms(), i),
                &NewCase {
                    id,
                    case_no: format!("{store}-ack-{i}"),
                    kind: CaseKind::Repair,
                    store: store.parse().expect("valid"),
                    customer: Customer {
                        name: "Ack".into(),
                        phone: "13800000000".into(),
                    },
                    sku: None,
                    description: None,
                },
            )
            .expect("create");
            (id, doc, (), ())
        };
        let mut state = State::new();
        let msg = doc.generate_sync_message(&mut state).expect("a message");
        let t0 = Instant::now();
        let frame = Frame::Sync {
            doc: id,
            message: msg.encode(),
        };
        ws.send(WsMessage::Binary(frame.encode().into()))
            .await
            .expect("send");
        loop {
            let m = ws.next().await.expect("open").expect("frame");
            if let WsMessage::Binary(b) = m {
                if let Ok(Frame::Sync { doc, .. }) = Frame::decode(&b) {
                    if doc == id {
                        break;
                    }
                }
            }
        }
        out.push(t0.elapsed());
    }
    out
}

async fn device(relay: &RelayProcess, store: &str) -> Socket {
    let token = relay.token(&format!("sup-{store}"), "supervisor", store, "tab-ack");
    let mut ws = connect(&relay.ws_url(), &token).await.expect("connect");
    let hello = Frame::Hello {
        cursor: u64::MAX,
        policy_version: u32::MAX,
        app_version: String::new(),
        unsynced: Default::default(),
        features: Vec::new(),
    };
    ws.send(WsMessage::Binary(hello.encode().into()))
        .await
        .expect("hello");
    // Catch-up is skipped by the cursor; wait for its end.
    loop {
        let m = ws.next().await.expect("open").expect("frame");
        if let WsMessage::Binary(b) = m {
            if let Ok(Frame::Announce { complete: true, .. }) = Frame::decode(&b) {
                return ws;
            }
        }
    }
}

/// Runs the scenario with `n` cases (100,000 full, 2,000 quick).
pub fn run(quick: bool) -> Vec<Row> {
    let n: u64 = if quick { 2_000 } else { 100_000 };
    let dir = tempfile::tempdir().expect("temporary directory");
    let seeded = seed(dir.path(), n);
    let db_bytes = SledStorage::open(&dir.path().join("db"))
        .and_then(|s| s.size_on_disk())
        .unwrap_or(0);
    eprintln!(
        "head office: {n} cases seeded in {:.0} s, {} MiB on disk",
        seeded.as_secs_f64(),
        db_bytes >> 20
    );
    let t0 = Instant::now();
    let relay = RelayProcess::start_in(dir.path(), None, &[]);
    let startup = t0.elapsed();
    let (rss0, _) = relay.memory();
    let hq = relay.token("hq", "head_office", "HQ", "hq-1");
    let s42 = relay.token("sup-S042", "supervisor", "S042", "tab-S042");
    let client = reqwest::blocking::Client::new();
    let now = now_ms();
    let t = |ms: i64| aftercase_sync::Millis(ms).to_rfc3339();
    let lists: Vec<(String, &str)> = vec![
        ("/v1/cases?status=confirmed&limit=100".into(), &hq),
        ("/v1/cases?store=S042&kind=repair".into(), &hq),
        ("/v1/cases?breached=true&limit=100".into(), &hq),
        ("/v1/cases?kind=complaint&breached=false".into(), &hq),
        ("/v1/cases?has_conflict=true".into(), &hq),
        ("/v1/cases?awaiting_approval=true".into(), &hq),
        (
            format!(
                "/v1/cases?updated_since={}&kind=installation",
                t(now - 7 * DAY)
            ),
            &hq,
        ),
        (format!("/v1/cases?due_before={}", t(now + DAY)), &hq),
        ("/v1/cases?assignee=nobody".into(), &hq),
        ("/v1/cases?status=registered&store=S007".into(), &hq),
        ("/v1/queues/overdue".into(), &hq),
        ("/v1/queues/due-soon?within_hours=48".into(), &hq),
        ("/v1/cases?status=reported".into(), &s42),
        ("/v1/queues/overdue".into(), &s42),
    ];
    let list_url = |i: usize| format!("{}{}", relay.url, lists[i % lists.len()].0);
    // Warm up connections and caches.
    for (i, (_, token)) in lists.iter().enumerate() {
        time_get(&client, &list_url(i), token);
    }
    let rounds = if quick { 100 } else { 500 };
    let mut list_times: Vec<Duration> = (0..rounds)
        .map(|i| time_get(&client, &list_url(i), lists[i % lists.len()].1))
        .collect();
    let month = format!(
        "{}/v1/metrics/service?from={}&to={}&group_by=store",
        relay.url,
        t(now - 30 * DAY),
        t(now)
    );
    let month_chain = format!(
        "{}/v1/metrics/service?from={}&to={}&group_by=month",
        relay.url,
        t(now - 30 * DAY),
        t(now)
    );
    let mut metric_times: Vec<Duration> = (0..if quick { 10 } else { 40 })
        .map(|i| time_get(&client, if i % 2 == 0 { &month } else { &month_chain }, &hq))
        .collect();
    // The full export, streamed: rows, bytes and the relay's memory.
    let (_, hwm_before) = relay.memory();
    let t0 = Instant::now();
    let resp = client
        .get(format!("{}/v1/cases?format=csv", relay.url))
        .bearer_auth(&hq)
        .send()
        .expect("export");
    let body = resp.bytes().expect("body");
    let export = t0.elapsed();
    let rows = body
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        .saturating_sub(1);
    let (_, hwm_after) = relay.memory();
    assert_eq!(rows as u64, n, "the export holds every case");

    // Sync acknowledgements of one device, idle and under query load.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let ack_n = if quick { 50 } else { 300 };
    let mut idle = rt.block_on(async {
        let mut ws = device(&relay, "S001").await;
        acks(&mut ws, "S001", ack_n, 1_000_000, PAUSE).await
    });
    let stop = Arc::new(AtomicBool::new(false));
    let running = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let loaders: Vec<_> = (0..2)
        .map(|k| {
            let stop = stop.clone();
            let running = running.clone();
            let urls: Vec<String> = (0..lists.len())
                .map(list_url)
                .chain([month.clone()])
                .collect();
            let token = hq.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut i = k;
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    time_get(&client, &urls[i % urls.len()], &token);
                    i += 1;
                    done += 1;
                    running.fetch_add(1, Ordering::Relaxed);
                }
                done
            })
        })
        .collect();
    // The load is under way before the first upload.
    while running.load(Ordering::Relaxed) < 4 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let before_acks = running.load(Ordering::Relaxed);
    let mut loaded = rt.block_on(async {
        let mut ws = device(&relay, "S002").await;
        acks(&mut ws, "S002", ack_n, 2_000_000, PAUSE).await
    });
    let queries = running.load(Ordering::Relaxed) - before_acks;
    stop.store(true, Ordering::Relaxed);
    for h in loaders {
        let _ = h.join();
    }

    let spread = |v: &mut Vec<Duration>| {
        format!(
            "p50 {}, p99 {}",
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.99))
        )
    };
    vec![
        Row {
            scenario: format!("Head office: {n} cases in {STORES} stores, relay start (read model load)"),
            ours: format!("{}, RSS {} MiB", ms(startup), rss0 >> 10),
            baseline: "-".into(),
            ratio: format!("seeded in {:.0} s, {} MiB", seeded.as_secs_f64(), db_bytes >> 20),
        },
        Row {
            scenario: format!("Head office: filtered list or queue, {rounds} requests over HTTP"),
            ours: spread(&mut list_times),
            baseline: "target p99 < 50 ms".into(),
            ratio: "-".into(),
        },
        Row {
            scenario: "Head office: a month's service metrics, whole chain (by store, by month)".into(),
            ours: spread(&mut metric_times),
            baseline: "target < 500 ms".into(),
            ratio: "-".into(),
        },
        Row {
            scenario: format!("Head office: full CSV export, {rows} rows"),
            ours: format!("{}, {} MiB streamed", ms(export), body.len() >> 20),
            baseline: format!("relay peak RSS {} -> {} MiB", hwm_before >> 10, hwm_after >> 10),
            ratio: "-".into(),
        },
        Row {
            scenario: format!("Sync ack of a new case, {ack_n} uploads {} ms apart: idle / under 2 query loops ({queries} queries meanwhile)", PAUSE.as_millis()),
            ours: spread(&mut loaded),
            baseline: spread(&mut idle),
            ratio: "ours = under load, baseline = idle".into(),
        },
    ]
}
