//! Resource attacks on the real relay, and whether it stays responsive.
//!
//! Starts the real `aftercase-relay serve` binary on loopback (default
//! settings but for `--write-timeout` in `--quick`), opens two cases as an
//! honest clerk of store S1 over the sync protocol (a small one, and a large
//! one of 2,000 notes of ~1,000 characters), then runs attacks from other
//! connections with valid staff tokens of S1, as a modified client would:
//!
//! - (i) one change holding 100,000 timeline entries, sent as one sync
//!   message (refused by the relay), several times on one connection; timed
//!   from sending the frame until its `Refused` arrives;
//! - (ii) 20,000 tiny sync frames for unknown case ids on one connection,
//!   read as they are answered (100 in flight);
//! - (iii) `Fetch` frames asking for the large case 1,000 times each, on a
//!   connection that never reads; timed until the relay shuts the socket
//!   (its end of the connection leaving ESTABLISHED in /proc/net/tcp);
//! - then all three at once.
//!
//! Throughout, another thread asks `GET /healthz` every 50 ms (one kept-alive
//! HTTP connection, 5 s timeout) and reads the relay's `VmRSS`; each sample
//! is counted in the phase it started in. The attack messages are built
//! before their phase starts, so the harness's own CPU work during a phase
//! is sending and reading. Relay and harness share the machine's two cores.

use crate::relay_process::{connect, RelayProcess, Socket};
use crate::{ms, spread, Row};
use aftercase_sync::access::Role;
use aftercase_sync::case::edit::{self, Customer, EditContext, NewCase};
use aftercase_sync::case::{read, CaseKind};
use aftercase_sync::protocol::Frame;
use aftercase_sync::{CaseId, Millis};
use automerge::sync::{Message, State, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT};
use futures_util::{SinkExt, StreamExt};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Time between two health checks.
const PERIOD: Duration = Duration::from_millis(50);
/// The target: every health check answered within this.
const TARGET: Duration = Duration::from_millis(100);
/// Longest wait for one answer of the relay before the attack gives up.
const ANSWER: Duration = Duration::from_secs(120);

struct Sizes {
    /// Timeline entries in the one forged change.
    entries: u32,
    /// How often it is sent.
    repeats: usize,
    /// Sync frames for unknown cases.
    probes: u32,
    /// Notes of the large case.
    notes: usize,
    /// `Fetch` frames sent by the client that never reads.
    fetches: usize,
    /// `--write-timeout` given to the relay (its default is 30 s).
    write_timeout: Option<&'static str>,
    /// Health checks before any attack.
    idle: Duration,
}

/// One health check.
struct Sample {
    phase: usize,
    latency: Option<Duration>,
    rss_kib: u64,
}

/// Seconds since the scenario began, to line up stderr events.
fn clock() -> f64 {
    static BEGAN: OnceLock<Instant> = OnceLock::new();
    BEGAN.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn now_millis() -> Millis {
    Millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    )
}

fn ctx(device: &str, n: u64) -> EditContext {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&n.to_be_bytes());
    nonce[8] = 0xa7;
    EditContext {
        author: "alice".parse().expect("valid"),
        role: Role::Staff,
        device: device.parse().expect("valid"),
        now: Millis(now_millis().0 - 60_000 + n as i64),
        nonce,
    }
}

/// A case opened by alice on `tab-a`, with `notes` notes of about 1,000
/// characters of pseudo-random text (so it does not compress to nothing).
fn honest_case(id: CaseId, notes: usize) -> Automerge {
    let mut doc = Automerge::new();
    edit::create_case(
        &mut doc,
        &ctx("tab-a", 0),
        &NewCase {
            id,
            case_no: format!("S1-tab-a-{}", id.as_bytes()[15]),
            kind: CaseKind::Repair,
            store: "S1".parse().expect("valid"),
            customer: Customer {
                name: "Zhao Lei".into(),
                phone: "13700000000".into(),
            },
            sku: Some("TV-55".into()),
            description: Some("No picture after a power cut".into()),
        },
    )
    .expect("create");
    let mut rng = SmallRng::seed_from_u64(7);
    for n in 0..notes {
        let text: String = (0..1_000)
            .map(|_| match rng.random_range(0..32u8) {
                k @ 0..26 => char::from(b'a' + k),
                _ => ' ',
            })
            .collect();
        edit::add_note(&mut doc, id, &ctx("tab-a", 1 + n as u64), &text).expect("note");
    }
    doc
}

async fn send(ws: &mut Socket, f: &Frame) -> Result<(), String> {
    ws.send(WsMessage::Binary(f.encode().into()))
        .await
        .map_err(|e| format!("send: {e}"))
}

async fn recv(ws: &mut Socket) -> Result<Frame, String> {
    loop {
        let m = tokio::time::timeout(ANSWER, ws.next())
            .await
            .map_err(|_| "the relay did not answer".to_string())?
            .ok_or("connection closed")?
            .map_err(|e| format!("receive: {e}"))?;
        match m {
            WsMessage::Binary(b) => return Frame::decode(&b).map_err(|e| e.to_string()),
            WsMessage::Close(c) => return Err(format!("closed by the relay: {c:?}")),
            _ => {}
        }
    }
}

async fn hello(ws: &mut Socket) -> Result<(), String> {
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
    .await?;
    loop {
        if let Frame::Announce { complete: true, .. } = recv(ws).await? {
            return Ok(());
        }
    }
}

async fn open(relay: &RelayProcess, token: &str) -> Socket {
    let mut ws = connect(&relay.ws_url(), token).await.expect("connect");
    hello(&mut ws).await.expect("hello");
    ws
}

/// Automerge's sync of `doc` with the relay, as an honest device runs it.
async fn upload(ws: &mut Socket, case: CaseId, doc: &mut Automerge) {
    let mut state = State::new();
    for _ in 0..20 {
        let Some(msg) = doc.generate_sync_message(&mut state) else {
            return;
        };
        send(
            ws,
            &Frame::Sync {
                doc: case,
                message: msg.encode(),
            },
        )
        .await
        .expect("send");
        loop {
            match recv(ws).await.expect("the relay answers") {
                Frame::Sync { doc: d, message } if d == case => {
                    let m = Message::decode(&message).expect("sync message");
                    doc.receive_sync_message(&mut state, m).expect("apply");
                    break;
                }
                Frame::Refused { code, reason, .. } => panic!("setup refused: {code} {reason}"),
                _ => {}
            }
        }
    }
    panic!("sync did not settle");
}

/// The sync message a modified client sends to upload one change of
/// `entries` bare timeline entries on top of `base`: built against a local
/// copy of the relay's side, so the attack itself is one frame.
fn forged_upload(base: &Automerge, entries: u32) -> Vec<u8> {
    let mut big = base.fork();
    {
        let mut t = big.transaction();
        let tl = read::map(&t, &ROOT, "timeline").expect("timeline");
        for i in 0..entries {
            let e = t
                .put_object(&tl, format!("e{i}"), ObjType::Map)
                .expect("put");
            t.put(&e, "type", "note").expect("put");
        }
        t.commit();
    }
    let mut relay_side = base.clone();
    let (mut ours, mut theirs) = (State::new(), State::new());
    for _ in 0..10 {
        let msg = big.generate_sync_message(&mut ours).expect("a message");
        if !msg.changes.is_empty() {
            return msg.encode();
        }
        relay_side
            .receive_sync_message(&mut theirs, msg)
            .expect("apply");
        if let Some(reply) = relay_side.generate_sync_message(&mut theirs) {
            big.receive_sync_message(&mut ours, reply).expect("apply");
        }
    }
    panic!("no message carried the change");
}

/// Attack (i): sends the forged upload `repeats` times; for each, the time
/// until the relay refused it and the refusal code.
async fn big_uploads(
    relay: &RelayProcess,
    token: &str,
    case: CaseId,
    message: &[u8],
    repeats: usize,
) -> Vec<Result<(Duration, String), String>> {
    let mut ws = open(relay, token).await;
    let mut out = Vec::new();
    for _ in 0..repeats {
        let t0 = Instant::now();
        let frame = Frame::Sync {
            doc: case,
            message: message.to_vec(),
        };
        let r = async {
            send(&mut ws, &frame).await?;
            loop {
                match recv(&mut ws).await? {
                    Frame::Refused { doc, code, .. } if doc == case => {
                        eprintln!(
                            "attacks: forged upload sent at {:.2} s, refused at {:.2} s",
                            clock() - t0.elapsed().as_secs_f64(),
                            clock()
                        );
                        return Ok((t0.elapsed(), code));
                    }
                    Frame::Sync { doc, .. } if doc == case => {
                        return Err("the relay accepted the forged upload".to_string())
                    }
                    Frame::Error { reason } => return Err(format!("relay error: {reason}")),
                    _ => {}
                }
            }
        }
        .await;
        let failed = r.is_err();
        out.push(r);
        if failed {
            break;
        }
    }
    out
}

/// Attack (ii): `n` sync frames for unknown cases, 100 in flight; the time
/// until all were answered.
async fn probes(relay: &RelayProcess, token: &str, n: u32) -> Result<Duration, String> {
    let mut ws = open(relay, token).await;
    let empty = Automerge::new();
    let message = empty
        .generate_sync_message(&mut State::new())
        .expect("a first message")
        .encode();
    let t0 = Instant::now();
    eprintln!("attacks: probes start at {:.2} s", clock());
    let mut in_flight = 0u32;
    for i in 0..n {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&i.to_be_bytes());
        b[4] = 0xee;
        ws.feed(WsMessage::Binary(
            Frame::Sync {
                doc: CaseId::from_random_bytes(b),
                message: message.clone(),
            }
            .encode()
            .into(),
        ))
        .await
        .map_err(|e| format!("send: {e}"))?;
        in_flight += 1;
        if in_flight == 100 || i + 1 == n {
            ws.flush().await.map_err(|e| format!("send: {e}"))?;
            while in_flight > 0 {
                match recv(&mut ws).await? {
                    Frame::Sync { .. } | Frame::Refused { .. } => in_flight -= 1,
                    Frame::Error { reason } => return Err(format!("relay error: {reason}")),
                    _ => {}
                }
            }
        }
    }
    eprintln!("attacks: probes done at {:.2} s", clock());
    Ok(t0.elapsed())
}

/// TCP state (the hex code of /proc/net/tcp) of the loopback connection
/// from local port `local` to `remote`; `None` once it is gone.
fn tcp_state(local: u16, remote: u16) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 3 && port(f[1]) == Some(local) && port(f[2]) == Some(remote))
            .then(|| u8::from_str_radix(f[3], 16).ok())
            .flatten()
    })
}

/// Attack (iii): `fetches` frames each asking for `case` 1,000 times, then
/// never a read; the time from the first frame until the relay shut the
/// connection, if it did within `limit`.
async fn fetch_never_read(
    relay: &RelayProcess,
    token: &str,
    case: CaseId,
    fetches: usize,
    limit: Duration,
) -> Result<Option<Duration>, String> {
    let mut ws = open(relay, token).await;
    let ours = match ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s.local_addr().map_err(|e| e.to_string())?,
        _ => return Err("not a plain TCP connection".into()),
    };
    let theirs: u16 = relay
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or("relay port")?;
    if tcp_state(theirs, ours.port()) != Some(1) {
        return Err("the connection is not visible in /proc/net/tcp".into());
    }
    let frame = Frame::Fetch {
        docs: vec![case; 1000],
    };
    let t0 = Instant::now();
    for _ in 0..fetches {
        // Once the relay stops reading (it waits for send budget), our
        // sends block too: stop sending, keep not reading.
        match tokio::time::timeout(Duration::from_secs(2), send(&mut ws, &frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => break,
        }
    }
    // Our end may never see the relay's FIN: it queues behind data we do
    // not read. The relay's end leaves ESTABLISHED as soon as it shuts the
    // socket.
    eprintln!(
        "attacks: fetches sent from {:.2} s to {:.2} s",
        clock() - t0.elapsed().as_secs_f64(),
        clock()
    );
    while t0.elapsed() < limit {
        match tcp_state(theirs, ours.port()) {
            // ESTABLISHED
            Some(1) => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => {
                eprintln!("attacks: fetching connection shut at {:.2} s", clock());
                return Ok(Some(t0.elapsed()));
            }
        }
    }
    Ok(None)
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// Runs the scenario and returns its rows.
pub fn run(quick: bool) -> Vec<Row> {
    let sizes = if quick {
        Sizes {
            entries: 10_000,
            repeats: 1,
            probes: 2_000,
            notes: 200,
            fetches: 4,
            write_timeout: Some("3s"),
            idle: Duration::from_secs(1),
        }
    } else {
        Sizes {
            entries: 100_000,
            repeats: 3,
            probes: 20_000,
            notes: 2_000,
            fetches: 10,
            write_timeout: None,
            idle: Duration::from_secs(3),
        }
    };
    let secret = "aftercase-bench-attacks-secret-0123456789abcdef";
    let extra: Vec<&str> = match sizes.write_timeout {
        Some(t) => vec!["--write-timeout", t],
        None => Vec::new(),
    };
    let relay = Arc::new(RelayProcess::start_with(secret, &extra));
    eprintln!("attacks: relay pid {} at {}", relay.pid(), relay.url);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rows = rt.block_on(drive(&sizes, relay.clone()));
    drop(rt);
    rows
}

/// What one phase measured.
struct PhaseReport {
    name: String,
    detail: String,
    rss_before: u64,
    rss_after: u64,
}

async fn drive(sizes: &Sizes, relay: Arc<RelayProcess>) -> Vec<Row> {
    clock();
    let write_timeout = sizes.write_timeout.map_or(Duration::from_secs(30), |t| {
        Duration::from_secs(t.trim_end_matches('s').parse().expect("seconds"))
    });
    // Setup: alice opens a small case and a large one.
    let small_id = CaseId::from_random_bytes(*b"attack-small-001");
    let large_id = CaseId::from_random_bytes(*b"attack-large-002");
    let mut small = honest_case(small_id, 3);
    let t0 = Instant::now();
    let mut large = honest_case(large_id, sizes.notes);
    let large_bytes = large.save().len();
    eprintln!(
        "attacks: large case of {} notes built in {:.1} s, {} KiB saved",
        sizes.notes,
        t0.elapsed().as_secs_f64(),
        large_bytes / 1024
    );
    {
        let token = relay.token("alice", "staff", "S1", "tab-a");
        let mut ws = open(&relay, &token).await;
        upload(&mut ws, small_id, &mut small).await;
        upload(&mut ws, large_id, &mut large).await;
    }
    let t0 = Instant::now();
    let forged = forged_upload(&small, sizes.entries);
    eprintln!(
        "attacks: forged upload of {} entries built in {:.1} s: {} KiB",
        sizes.entries,
        t0.elapsed().as_secs_f64(),
        forged.len() / 1024
    );
    let token = |d: &str| relay.token("mallory", "staff", "S1", d);
    let tokens: Vec<String> = (0..6).map(|i| token(&format!("evil-{i}"))).collect();

    // The health checker.
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let checker = {
        let (phase, stop, samples, relay) =
            (phase.clone(), stop.clone(), samples.clone(), relay.clone());
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client");
            let url = format!("{}/healthz", relay.url);
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let p = phase.load(Ordering::Relaxed);
                let t0 = Instant::now();
                let ok = http
                    .get(&url)
                    .send()
                    .and_then(|r| r.error_for_status())
                    .and_then(|r| r.bytes())
                    .is_ok();
                let latency = ok.then(|| t0.elapsed());
                if latency.is_none_or(|l| l >= TARGET) {
                    eprintln!(
                        "attacks: slow /healthz at {:.2} s (phase {p}): {}",
                        clock(),
                        latency.map_or("no answer".into(), ms)
                    );
                }
                let rss_kib = relay.memory().0;
                samples.lock().expect("samples").push(Sample {
                    phase: p,
                    latency,
                    rss_kib,
                });
                next += PERIOD;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
        })
    };

    let mut reports: Vec<PhaseReport> = Vec::new();
    let start_phase = |i: usize| {
        phase.store(i, Ordering::Relaxed);
        relay.memory().0
    };

    // 0: no attack.
    let rss_before = start_phase(0);
    tokio::time::sleep(sizes.idle).await;
    reports.push(PhaseReport {
        name: "no attack".into(),
        detail: String::new(),
        rss_before,
        rss_after: relay.memory().0,
    });

    let describe_uploads = |r: &[Result<(Duration, String), String>]| {
        let times: Vec<String> = r
            .iter()
            .map(|x| match x {
                Ok((d, code)) => format!("{} ({code})", ms(*d)),
                Err(e) => format!("failed: {e}"),
            })
            .collect();
        format!("refused after {}", times.join(", "))
    };
    let describe_probes = |r: &Result<Duration, String>, n: u32| match r {
        Ok(d) => format!(
            "{n} answered in {:.1} s ({:.0}/s)",
            d.as_secs_f64(),
            n as f64 / d.as_secs_f64()
        ),
        Err(e) => format!("probes failed: {e}"),
    };
    let cut_limit = write_timeout + Duration::from_secs(30);
    let describe_cut = |r: &Result<Option<Duration>, String>| match r {
        Ok(Some(d)) => format!(
            "relay shut the connection {:.1} s after the first fetch (write timeout {} s)",
            d.as_secs_f64(),
            write_timeout.as_secs()
        ),
        Ok(None) => format!("connection still open after {} s", cut_limit.as_secs()),
        Err(e) => format!("fetch attack failed: {e}"),
    };

    // (i) the oversized upload.
    let rss_before = start_phase(1);
    let r = big_uploads(&relay, &tokens[0], small_id, &forged, sizes.repeats).await;
    reports.push(PhaseReport {
        name: format!(
            "(i) {} x one change of {} timeline entries ({} KiB message)",
            sizes.repeats,
            sizes.entries,
            forged.len() / 1024
        ),
        detail: describe_uploads(&r),
        rss_before,
        rss_after: relay.memory().0,
    });

    // (ii) probes for unknown cases.
    let rss_before = start_phase(2);
    let r = probes(&relay, &tokens[1], sizes.probes).await;
    reports.push(PhaseReport {
        name: format!("(ii) {} sync frames for unknown case ids", sizes.probes),
        detail: describe_probes(&r, sizes.probes),
        rss_before,
        rss_after: relay.memory().0,
    });

    // (iii) fetches never read.
    let rss_before = start_phase(3);
    let r = fetch_never_read(&relay, &tokens[2], large_id, sizes.fetches, cut_limit).await;
    reports.push(PhaseReport {
        name: format!(
            "(iii) {} Fetch frames for a {} KiB case x 1000, never read",
            sizes.fetches,
            large_bytes / 1024
        ),
        detail: describe_cut(&r),
        rss_before,
        rss_after: relay.memory().0,
    });

    // All three at once.
    let rss_before = start_phase(4);
    eprintln!("attacks: all at once from {:.2} s", clock());
    let (a, b, c) = tokio::join!(
        big_uploads(&relay, &tokens[3], small_id, &forged, sizes.repeats),
        probes(&relay, &tokens[4], sizes.probes),
        fetch_never_read(&relay, &tokens[5], large_id, sizes.fetches, cut_limit),
    );
    reports.push(PhaseReport {
        name: "(i), (ii) and (iii) at once".into(),
        detail: format!(
            "{}; {}; {}",
            describe_uploads(&a),
            describe_probes(&b, sizes.probes),
            describe_cut(&c)
        ),
        rss_before,
        rss_after: relay.memory().0,
    });
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || checker.join()).await;
    let (rss_end, hwm) = relay.memory();

    let samples = std::mem::take(&mut *samples.lock().expect("samples"));
    let mut rows = Vec::new();
    for (i, rep) in reports.iter().enumerate() {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.phase == i).collect();
        let mut lat: Vec<Duration> = mine.iter().filter_map(|s| s.latency).collect();
        lat.sort();
        let failed = mine.len() - lat.len();
        let peak = mine.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let worst = if failed > 0 {
            None
        } else {
            lat.last().copied()
        };
        let verdict = match worst {
            Some(w) if w < TARGET => "met",
            _ => "missed",
        };
        let failures = if failed > 0 {
            format!(", {failed} unanswered within 5 s")
        } else {
            String::new()
        };
        let detail = if rep.detail.is_empty() {
            String::new()
        } else {
            format!("; {}", rep.detail)
        };
        let line = format!(
            "/healthz {} over {} checks{failures} (target: all within {} ms: {verdict}){detail}; relay RSS {} before, {} after, {} peak",
            spread(&lat, ms),
            lat.len(),
            TARGET.as_millis(),
            mib(rep.rss_before),
            mib(rep.rss_after),
            mib(peak.max(rep.rss_after))
        );
        eprintln!("attacks: {}: {line}", rep.name);
        rows.push(Row {
            scenario: format!("Relay under attack: {}", rep.name),
            ours: line,
            baseline: "-".into(),
            ratio: "-".into(),
        });
    }
    eprintln!(
        "attacks: relay RSS at the end {}, peak over the run {}",
        mib(rss_end),
        mib(hwm)
    );
    rows
}
