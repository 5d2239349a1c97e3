//! Relay fan-in/fan-out under many live connections, with full replicas as
//! the simulated devices (`--only fanout-replicas`; not part of a full run).
//! Superseded as the measure of the relay by `fanout.rs`, whose light
//! devices run in a separate process on their own core; kept because it
//! drives the real `ClientSession` and `Replica` end to end.
//!
//! Starts the real `aftercase-relay serve` binary on loopback (sled in a
//! temporary directory, secret passed in `AFTERCASE_JWT_SECRET`) and opens
//! one real WebSocket per simulated device from this process: 1,000 devices
//! in 100 stores (10 per store), or 100 in 10 stores with `--quick`. Every
//! device is a [`Replica`] over [`MemoryStorage`] driven by a
//! [`ClientSession`], the way the client SDK's live sync drives it: every
//! incoming frame goes to `ClientSession::handle` and what it returns is
//! sent back; a local edit is followed by `ClientSession::local_change`. All
//! devices run as tasks of one two-thread tokio runtime, one task per device
//! owning its replica, session and socket.
//!
//! Setup: each device opens one case of its own, connects and syncs; the
//! setup ends when every device holds all its store's cases and its session
//! is settled. Steady state: every device adds a note to a random case of
//! its store (seeded RNG) every 2 s, start times staggered evenly over the
//! 2 s period. The first edits are a warm-up; only edits made during the
//! measurement window are counted in the latencies.
//!
//! Measured, per edit, from the moment the note is saved locally (before
//! the sync message is built and sent):
//! - ack: until the device receives a `Sync` frame for the case whose heads
//!   include the new change, or cover every local head of the case (the
//!   relay sends its heads only after the change is flushed, so a relay that
//!   acknowledged before storing, or never stored, fails this);
//! - fan-out: until each other device of the store holds the change
//!   (`Replica::has_all`, checked after handling each frame), one sample per
//!   edit and receiving device. The editing device tells its peers the change
//!   hash through an in-process channel before it sends the change, so a peer
//!   always knows what to look for before the change can reach it.
//!
//! Errors: a session error, a refused change, a frame that does not decode,
//! the connection closing or failing, a device not ready after setup, and
//! every acknowledgement or delivery still missing when the run ends (the
//! run waits up to 15 s after the last edit for stragglers). Relay memory is
//! `VmRSS` (at the end, connections still open) and `VmHWM` (peak) from
//! `/proc/<pid>/status`; relay CPU over the measurement window from
//! `/proc/<pid>/stat` (assuming the usual 100 clock ticks per second).
//!
//! Caveat: the relay and the simulated devices share the machine, so device
//! work (decoding and applying changes on every receiver) competes with the
//! relay for CPU. How late edits started against their schedule is printed
//! to stderr to show when the device side, not the relay, was the limit.

use crate::relay_process::{connect, RelayProcess, Socket};
use crate::{ms, percentile, Row};
use aftercase_sync::access::Role;
use aftercase_sync::case::edit::Customer;
use aftercase_sync::case::CaseKind;
use aftercase_sync::protocol::{ClientSession, Frame};
use aftercase_sync::replica::{DeviceIdentity, Entropy, Replica};
use aftercase_sync::storage::MemoryStorage;
use aftercase_sync::{CaseId, Millis};
use automerge::ChangeHash;
use futures_util::{SinkExt, StreamExt};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::process::Command;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

/// Time between two edits of one device.
const PERIOD: Duration = Duration::from_secs(2);
/// Longest wait after the last edit for acknowledgements and deliveries.
const DRAIN: Duration = Duration::from_secs(15);
/// Setup ends early when no further device became ready for this long
/// (the devices left are reported as errors).
const SETUP_STALL: Duration = Duration::from_secs(10);
/// Connections being opened at once during setup.
const CONNECTING: usize = 64;
/// Targets from the issue, printed next to the figures.
const ACK_TARGET_MS: f64 = 50.0;
const FANOUT_TARGET_MS: f64 = 100.0;

struct Sizes {
    stores: usize,
    per_store: usize,
    warmup: Duration,
    measure: Duration,
    setup_limit: Duration,
}

impl Sizes {
    fn devices(&self) -> usize {
        self.stores * self.per_store
    }
}

/// What every device task is told to do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connect, upload the own case, receive the store's others.
    Setup,
    /// Edit every [`PERIOD`] from `start` (plus the device's offset) until
    /// `edits_until`; edits from `measure_from` on are measured.
    Run {
        start: Instant,
        measure_from: Instant,
        edits_until: Instant,
    },
    /// Close the connection and report.
    Stop,
}

/// An edit another device of the store must receive.
struct Expect {
    case: CaseId,
    hash: ChangeHash,
    at: Instant,
    measured: bool,
    /// When the relay announced the change to the receiving device.
    announced: Option<Instant>,
}

/// What the device tasks share with the driver.
struct Shared {
    url: String,
    /// Devices holding all their store's cases with a settled session.
    ready: AtomicUsize,
    /// Acknowledgements plus deliveries still awaited.
    outstanding: AtomicI64,
    edits: AtomicU64,
    connecting: Semaphore,
    /// Frames and bytes each way, for the per-edit traffic.
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Time the devices spent in the replica and session (CPU on the
    /// device side, which shares the machine with the relay).
    device_nanos: AtomicU64,
}

struct DeviceSpec {
    slot: usize,
    identity: DeviceIdentity,
    token: String,
    own_case: CaseId,
    store_cases: Arc<Vec<CaseId>>,
    peers: Vec<mpsc::UnboundedSender<Expect>>,
    inbox: mpsc::UnboundedReceiver<Expect>,
    /// Where in the period this device edits.
    offset: Duration,
    seed: u64,
}

#[derive(Default)]
struct Report {
    ack: Vec<Duration>,
    fanout: Vec<Duration>,
    /// Edit until the relay announced it to a receiving device (the first
    /// part of the fan-out; the rest is the device fetching the change).
    announce: Vec<Duration>,
    /// How late measured edits started against their schedule.
    lag: Vec<Duration>,
    edits: u64,
    measured_edits: u64,
    errors: Vec<String>,
    lost_acks: u64,
    lost_deliveries: u64,
}

/// Each connection takes a descriptor in this process and one in the relay,
/// which inherits our limit when spawned. The limit is raised with the
/// `prlimit` tool rather than a libc call so the harness needs no unsafe
/// code and no new dependency; nothing is done when it is already enough.
pub(crate) fn ensure_fd_limit(devices: usize) {
    let need = devices as u64 + 256;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let (soft, hard) = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            (
                v.first().copied().unwrap_or(0),
                v.get(1).copied().unwrap_or(u64::MAX),
            )
        })
        .unwrap_or((0, 0));
    if soft >= need {
        return;
    }
    let want = hard.min(need.max(4096));
    eprintln!("fanout-replicas: raising the open-file limit from {soft} to {want} (hard {hard})");
    let ok = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={want}:{hard}"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok && want >= need,
        "need {need} open files, limit is {soft} (hard {hard}): raise it with `ulimit -n`"
    );
}

fn now_millis() -> Millis {
    Millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    )
}

fn token(secret: &str, id: &DeviceIdentity) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = serde_json::json!({
        "sub": id.user.as_str(),
        "role": "staff",
        "store": id.store.as_str(),
        "device": id.device.as_str(),
        "iss": "aftercase-relay",
        "aud": "aftercase",
        "iat": now,
        "nbf": now.saturating_sub(60),
        "exp": now + 3 * 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign a device token")
}

fn case_id(store: usize, slot: usize) -> CaseId {
    let mut b = *b"fanout\0\0\0\0\0\0\0\0\0\0";
    // Indexes in the last bytes: bytes 6 and 8 carry UUID version bits.
    b[12..14].copy_from_slice(&(store as u16).to_be_bytes());
    b[14..16].copy_from_slice(&(slot as u16).to_be_bytes());
    CaseId::from_random_bytes(b)
}

fn entropy(rng: &mut SmallRng) -> Entropy {
    let mut nonce = [0u8; 16];
    rng.fill(&mut nonce[..]);
    Entropy {
        now: now_millis(),
        nonce,
        key: rng.random(),
    }
}

async fn send(socket: &mut Socket, frames: Vec<Frame>, shared: &Shared) -> Result<(), String> {
    if frames.is_empty() {
        return Ok(());
    }
    for f in frames {
        let bytes = f.encode();
        shared.frames_out.fetch_add(1, Ordering::Relaxed);
        shared
            .bytes_out
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        socket
            .feed(Message::Binary(bytes.into()))
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    socket.flush().await.map_err(|e| format!("send: {e}"))
}

/// One device: connects, syncs, edits on schedule, records what it sees.
async fn device(
    spec: DeviceSpec,
    shared: Arc<Shared>,
    mut phase_rx: watch::Receiver<Phase>,
) -> Report {
    let DeviceSpec {
        slot,
        identity,
        token,
        own_case,
        store_cases,
        peers,
        mut inbox,
        offset,
        seed,
    } = spec;
    let name = format!("{}/{}", identity.store, identity.device);
    let tag = name.clone();
    let mut rep = Report::default();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut actor = [0u8; 16];
    rng.fill(&mut actor[..]);
    let mut r = Replica::open(MemoryStorage::new(), identity, actor);
    let mut pending_acks: Vec<Expect> = Vec::new();
    let mut awaited: Vec<Expect> = Vec::new();
    let outcome = run_device(
        slot,
        own_case,
        &store_cases,
        &peers,
        &mut inbox,
        offset,
        &token,
        &shared,
        &mut phase_rx,
        &mut r,
        &mut rng,
        &mut rep,
        &mut pending_acks,
        &mut awaited,
    )
    .await;
    if let Err(e) = outcome {
        rep.errors.push(format!("{name}: {e}"));
        // Stay until the end so edits of the store meant for this device are
        // counted as lost rather than silently dropped.
        while *phase_rx.borrow_and_update() != Phase::Stop {
            if phase_rx.changed().await.is_err() {
                break;
            }
        }
    }
    while let Ok(e) = inbox.try_recv() {
        awaited.push(e);
    }
    for e in rep.errors.iter_mut() {
        if !e.starts_with(&tag) {
            *e = format!("{tag}: {e}");
        }
    }
    rep.lost_acks = pending_acks.len() as u64;
    rep.lost_deliveries = awaited.len() as u64;
    rep
}

#[allow(clippy::too_many_arguments)]
async fn run_device(
    slot: usize,
    own_case: CaseId,
    store_cases: &[CaseId],
    peers: &[mpsc::UnboundedSender<Expect>],
    inbox: &mut mpsc::UnboundedReceiver<Expect>,
    offset: Duration,
    token: &str,
    shared: &Shared,
    phase_rx: &mut watch::Receiver<Phase>,
    r: &mut Replica<MemoryStorage>,
    rng: &mut SmallRng,
    rep: &mut Report,
    pending_acks: &mut Vec<Expect>,
    awaited: &mut Vec<Expect>,
) -> Result<(), String> {
    r.create_case(
        own_case,
        entropy(rng),
        CaseKind::Repair,
        Customer {
            name: format!("Customer {slot}"),
            phone: "13800000000".into(),
        },
        Some("TV-55".into()),
        Some("No picture after power cut".into()),
    )
    .map_err(|e| format!("create case: {e}"))?;
    let mut socket = {
        let _permit = shared
            .connecting
            .acquire()
            .await
            .map_err(|e| e.to_string())?;
        connect(&shared.url, token).await?
    };
    let mut client = ClientSession::new();
    let start = client
        .start(r, now_millis())
        .map_err(|e| format!("start: {e}"))?;
    send(&mut socket, start, shared).await?;

    let mut ready = false;
    let mut phase = *phase_rx.borrow_and_update();
    let mut ticker: Option<tokio::time::Interval> = None;
    let mut note = 0u64;
    loop {
        tokio::select! {
            changed = phase_rx.changed() => {
                if changed.is_err() {
                    return Err("driver gone".into());
                }
                phase = *phase_rx.borrow_and_update();
                match phase {
                    Phase::Run { start, .. } => {
                        if !ready {
                            let mut missing = 0;
                            for c in store_cases {
                                missing += usize::from(r.heads(*c).map_err(|e| e.to_string())?.is_none());
                            }
                            rep.errors.push(format!(
                                "not ready after setup: settled {}, {} downloads pending, {} of {} store cases missing, {} cases unconfirmed, cursor {}",
                                client.is_settled(),
                                client.pending_downloads(),
                                missing,
                                store_cases.len(),
                                r.dirty_cases().map_err(|e| e.to_string())?.len(),
                                r.cursor().map_err(|e| e.to_string())?.0,
                            ));
                        }
                        let mut t = tokio::time::interval_at((start + offset).into(), PERIOD);
                        // A device that falls behind edits late rather than
                        // in a burst; the lag is reported.
                        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        ticker = Some(t);
                    }
                    Phase::Stop => {
                        let _ = socket.close(None).await;
                        return Ok(());
                    }
                    Phase::Setup => {}
                }
            }
            due = async { ticker.as_mut().expect("guarded by is_some").tick().await }, if ticker.is_some() => {
                let Phase::Run { measure_from, edits_until, .. } = phase else {
                    continue;
                };
                let late = Instant::now().saturating_duration_since(due.into_std());
                if Instant::now() >= edits_until {
                    ticker = None;
                    continue;
                }
                let busy = Instant::now();
                let case = store_cases[rng.random_range(0..store_cases.len())];
                note += 1;
                r.add_note(case, entropy(rng), &format!("note {note}: called the customer"))
                    .map_err(|e| format!("add note: {e}"))?;
                let at = Instant::now();
                let heads = r.heads(case).map_err(|e| e.to_string())?.unwrap_or_default();
                // A local edit depends on every previous head, so it is the
                // only head afterwards.
                let [hash] = heads[..] else {
                    return Err(format!("{} heads after a local edit", heads.len()));
                };
                let measured = at >= measure_from;
                rep.edits += 1;
                shared.edits.fetch_add(1, Ordering::Relaxed);
                if measured {
                    rep.measured_edits += 1;
                    rep.lag.push(late);
                }
                shared.outstanding.fetch_add(1 + peers.len() as i64, Ordering::Relaxed);
                for p in peers {
                    // A peer that died has dropped its inbox; its loss is
                    // already counted as its own error.
                    let _ = p.send(Expect { case, hash, at, measured, announced: None });
                }
                pending_acks.push(Expect { case, hash, at, measured, announced: None });
                let frames = client
                    .local_change(r, case)
                    .map_err(|e| format!("local change: {e}"))?;
                shared.device_nanos.fetch_add(busy.elapsed().as_nanos() as u64, Ordering::Relaxed);
                send(&mut socket, frames, shared).await?;
            }
            msg = socket.next() => {
                let bytes = match msg {
                    None => return Err("connection closed".into()),
                    Some(Err(e)) => return Err(format!("connection failed: {e}")),
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(f))) => {
                        return Err(format!("relay closed the connection: {f:?}"))
                    }
                    Some(Ok(Message::Text(_))) => return Err("relay sent a text frame".into()),
                    Some(Ok(_)) => continue,
                };
                shared.frames_in.fetch_add(1, Ordering::Relaxed);
                shared.bytes_in.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let busy = Instant::now();
                let frame = Frame::decode(&bytes).map_err(|e| format!("bad frame: {e}"))?;
                // Only a sync message acknowledges. Changes may also arrive
                // in whole-case frames, so deliveries are checked after every
                // frame, whatever its kind.
                let announced: Vec<(CaseId, Vec<ChangeHash>)> = match &frame {
                    Frame::Announce { docs, .. } => docs
                        .iter()
                        .map(|d| (d.doc, d.heads.iter().map(|h| ChangeHash(*h)).collect()))
                        .collect(),
                    _ => Vec::new(),
                };
                let acks = match &frame {
                    Frame::Sync { doc, message } => automerge::sync::Message::decode(message)
                        .ok()
                        .map(|m| (*doc, m.heads)),
                    Frame::Refused { doc, reason, .. } => {
                        rep.errors.push(format!("relay refused case {doc}: {reason}"));
                        None
                    }
                    _ => None,
                };
                let out = client
                    .handle(r, frame, now_millis())
                    .map_err(|e| format!("session: {e}"))?;
                let now = Instant::now();
                while let Ok(e) = inbox.try_recv() {
                    awaited.push(e);
                }
                for (case, heads) in &announced {
                    for e in awaited.iter_mut() {
                        if e.announced.is_none() && e.case == *case && heads.contains(&e.hash) {
                            e.announced = Some(now);
                        }
                    }
                }
                let mut i = 0;
                while i < awaited.len() {
                    let e = &awaited[i];
                    if r.has_all(e.case, &[e.hash]).map_err(|e| e.to_string())? {
                        if e.measured {
                            rep.fanout.push(now - e.at);
                            if let Some(a) = e.announced {
                                rep.announce.push(a - e.at);
                            }
                        }
                        awaited.swap_remove(i);
                        shared.outstanding.fetch_sub(1, Ordering::Relaxed);
                    } else {
                        i += 1;
                    }
                }
                if let Some((case, heads)) = acks {
                    let mut i = 0;
                    while i < pending_acks.len() {
                        let e = &pending_acks[i];
                        let acked = e.case == case
                            && (heads.contains(&e.hash)
                                || r.confirm_if_uploaded(case, &heads).map_err(|e| e.to_string())?);
                        if acked {
                            if e.measured {
                                rep.ack.push(now - e.at);
                            }
                            pending_acks.swap_remove(i);
                            shared.outstanding.fetch_sub(1, Ordering::Relaxed);
                        } else {
                            i += 1;
                        }
                    }
                }
                if !ready && phase == Phase::Setup && client.is_settled() {
                    let mut all = true;
                    for c in store_cases {
                        all &= r.heads(*c).map_err(|e| e.to_string())?.is_some();
                    }
                    if all {
                        ready = true;
                        shared.ready.fetch_add(1, Ordering::Relaxed);
                    }
                }
                shared.device_nanos.fetch_add(busy.elapsed().as_nanos() as u64, Ordering::Relaxed);
                send(&mut socket, out, shared).await?;
            }
        }
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// Runs the scenario and returns its rows.
pub fn run(quick: bool) -> Vec<Row> {
    let sized = |stores| Sizes {
        stores,
        per_store: 10,
        warmup: Duration::from_secs(6),
        measure: Duration::from_secs(60),
        setup_limit: Duration::from_secs(60),
    };
    if quick {
        return run_sized(&Sizes {
            warmup: Duration::from_secs(2),
            measure: Duration::from_secs(8),
            ..sized(10)
        });
    }
    // The target's size, then one whose simulated devices this 2-core
    // machine can drive beside the relay (each is a full Automerge replica).
    [100, 30]
        .into_iter()
        .flat_map(|s| run_sized(&sized(s)))
        .collect()
}

fn run_sized(sizes: &Sizes) -> Vec<Row> {
    let n = sizes.devices();
    let began = Instant::now();
    ensure_fd_limit(n);
    // Any 32+ byte secret: the relay and this process only meet on loopback.
    let secret = "aftercase-bench-fanout-secret-0123456789abcdef";
    let relay = RelayProcess::start(secret);
    eprintln!(
        "fanout: relay pid {} at {}; {n} devices in {} stores",
        relay.pid(),
        relay.url,
        sizes.stores
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rows = rt.block_on(drive(sizes, &relay, secret));
    drop(rt);
    drop(relay);
    eprintln!("fanout: finished in {:.1} s", began.elapsed().as_secs_f64());
    rows
}

async fn drive(sizes: &Sizes, relay: &RelayProcess, secret: &str) -> Vec<Row> {
    let n = sizes.devices();
    let shared = Arc::new(Shared {
        url: relay.ws_url(),
        ready: AtomicUsize::new(0),
        outstanding: AtomicI64::new(0),
        edits: AtomicU64::new(0),
        connecting: Semaphore::new(CONNECTING),
        frames_in: AtomicU64::new(0),
        frames_out: AtomicU64::new(0),
        bytes_in: AtomicU64::new(0),
        bytes_out: AtomicU64::new(0),
        device_nanos: AtomicU64::new(0),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let mut tasks = Vec::with_capacity(n);
    for store in 0..sizes.stores {
        let cases: Arc<Vec<CaseId>> =
            Arc::new((0..sizes.per_store).map(|s| case_id(store, s)).collect());
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..sizes.per_store)
            .map(|_| mpsc::unbounded_channel::<Expect>())
            .unzip();
        for (slot, inbox) in rxs.into_iter().enumerate() {
            let index = store * sizes.per_store + slot;
            let identity = DeviceIdentity {
                user: format!("u-{store:03}-{slot:02}").parse().expect("user id"),
                role: Role::Staff,
                store: format!("S{store:03}").parse().expect("store id"),
                // Device ids are unique across stores: the relay limits
                // live connections per device id.
                device: format!("tab-{store:03}-{slot:02}")
                    .parse()
                    .expect("device id"),
            };
            let spec = DeviceSpec {
                slot,
                token: token(secret, &identity),
                identity,
                own_case: cases[slot],
                store_cases: cases.clone(),
                peers: txs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != slot)
                    .map(|(_, t)| t.clone())
                    .collect(),
                inbox,
                // Devices in index order spread evenly over the period, so a
                // store's devices edit far apart and the relay sees an even
                // load.
                offset: PERIOD.mul_f64(index as f64 / n as f64),
                seed: 0xFA00_0000 + index as u64,
            };
            tasks.push(tokio::spawn(device(spec, shared.clone(), phase_rx.clone())));
        }
    }
    drop(phase_rx);

    // Setup.
    let t0 = Instant::now();
    let mut last_print = Instant::now();
    let mut last_progress = (0, Instant::now());
    while shared.ready.load(Ordering::Relaxed) < n && t0.elapsed() < sizes.setup_limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ready = shared.ready.load(Ordering::Relaxed);
        if ready != last_progress.0 {
            last_progress = (ready, Instant::now());
        } else if ready > 0 && last_progress.1.elapsed() >= SETUP_STALL {
            eprintln!(
                "fanout: setup stalled for {} s at {ready} of {n} devices ready; going on",
                SETUP_STALL.as_secs()
            );
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "fanout: setup {:.0} s, {} of {n} devices ready",
                t0.elapsed().as_secs_f64(),
                shared.ready.load(Ordering::Relaxed)
            );
            last_print = Instant::now();
        }
    }
    let setup = t0.elapsed();
    let ready = shared.ready.load(Ordering::Relaxed);
    let (rss_setup, _) = relay.memory();
    eprintln!(
        "fanout: setup took {:.1} s, {ready} of {n} devices ready, relay RSS {}",
        setup.as_secs_f64(),
        mib(rss_setup)
    );

    // Steady state.
    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + sizes.warmup;
    let edits_until = measure_from + sizes.measure;
    let _ = phase_tx.send(Phase::Run {
        start,
        measure_from,
        edits_until,
    });
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_from = relay.cpu();
    let edits_from = shared.edits.load(Ordering::Relaxed);
    let traffic = |s: &Shared| {
        [
            s.frames_in.load(Ordering::Relaxed),
            s.frames_out.load(Ordering::Relaxed),
            s.bytes_in.load(Ordering::Relaxed),
            s.bytes_out.load(Ordering::Relaxed),
            s.device_nanos.load(Ordering::Relaxed),
        ]
    };
    let traffic_from = traffic(&shared);
    let mut at = measure_from;
    while at < edits_until {
        at = (at + Duration::from_secs(10)).min(edits_until);
        tokio::time::sleep_until(at.into()).await;
        let (rss, _) = relay.memory();
        eprintln!(
            "fanout: {:.0} s measured, {} edits, {} awaited, relay RSS {}",
            (at - measure_from).as_secs_f64(),
            shared.edits.load(Ordering::Relaxed) - edits_from,
            shared.outstanding.load(Ordering::Relaxed),
            mib(rss)
        );
    }
    let relay_cpu = relay.cpu().saturating_sub(cpu_from);
    let window_edits = (shared.edits.load(Ordering::Relaxed) - edits_from).max(1) as f64;
    let t = traffic(&shared);
    let d: Vec<f64> = t
        .iter()
        .zip(traffic_from)
        .map(|(a, b)| a.saturating_sub(b) as f64)
        .collect();
    eprintln!(
        "fanout: per edit in the measurement window: {:.1} frames to the relay ({:.0} B), {:.1} frames from it ({:.0} B); relay CPU {:.2} ms, device-side processing {:.2} ms ({:.2} cores)",
        d[1] / window_edits,
        d[3] / window_edits,
        d[0] / window_edits,
        d[2] / window_edits,
        relay_cpu.as_secs_f64() * 1000.0 / window_edits,
        d[4] / 1e6 / window_edits,
        d[4] / 1e9 / sizes.measure.as_secs_f64(),
    );

    // Drain: wait for the last acknowledgements and deliveries.
    let drain_until = Instant::now() + DRAIN;
    while shared.outstanding.load(Ordering::Relaxed) > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (rss, hwm) = relay.memory();
    let _ = phase_tx.send(Phase::Stop);
    let mut total = Report::default();
    for t in tasks {
        match t.await {
            Ok(r) => {
                total.ack.extend(r.ack);
                total.fanout.extend(r.fanout);
                total.announce.extend(r.announce);
                total.lag.extend(r.lag);
                total.edits += r.edits;
                total.measured_edits += r.measured_edits;
                total.errors.extend(r.errors);
                total.lost_acks += r.lost_acks;
                total.lost_deliveries += r.lost_deliveries;
            }
            Err(e) => total.errors.push(format!("device task failed: {e}")),
        }
    }
    for e in total.errors.iter().take(10) {
        eprintln!("fanout: error: {e}");
    }
    let errors = total.errors.len() as u64 + total.lost_acks + total.lost_deliveries;
    total.ack.sort();
    total.fanout.sort();
    total.announce.sort();
    total.lag.sort();
    let secs = sizes.measure.as_secs_f64();
    let spread = |v: &[Duration]| {
        [0.5, 0.9, 0.95, 0.99, 0.999]
            .iter()
            .map(|p| format!("p{} {}", p * 100.0, ms(percentile(v, *p))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!("fanout: ack {}", spread(&total.ack));
    eprintln!("fanout: fan-out {}", spread(&total.fanout));
    eprintln!(
        "fanout: of which edit until announced to the receiver ({} of the deliveries; the others were fetched before their announcement came): {}",
        total.announce.len(),
        spread(&total.announce)
    );
    eprintln!(
        "fanout: {} edits in all, {} measured ({:.0}/s, target {:.0}/s); start lag p50 {} p99 {} max {}",
        total.edits,
        total.measured_edits,
        total.measured_edits as f64 / secs,
        n as f64 / PERIOD.as_secs_f64(),
        ms(percentile(&total.lag, 0.5)),
        ms(percentile(&total.lag, 0.99)),
        ms(total.lag.last().copied().unwrap_or_default()),
    );
    eprintln!(
        "fanout: {} errors ({} listed, {} acks and {} deliveries missing); relay CPU {:.2} cores; RSS after setup {}, end {}, peak {}",
        errors,
        total.errors.len(),
        total.lost_acks,
        total.lost_deliveries,
        relay_cpu.as_secs_f64() / secs,
        mib(rss_setup),
        mib(rss),
        mib(hwm)
    );

    let scenario = format!(
        "Relay fan-in/fan-out, {n} connections in {} stores, an edit per device every {} s",
        sizes.stores,
        PERIOD.as_secs()
    );
    let dist = |v: &[Duration]| crate::spread(v, ms);
    let verdict = |v: &[Duration], target: f64| {
        if percentile(v, 0.99).as_secs_f64() * 1000.0 < target {
            "met"
        } else {
            "missed"
        }
    };
    vec![
        Row {
            scenario: format!("{scenario}: edit to relay ack"),
            ours: format!(
                "{} over {} edits (p99 target {ACK_TARGET_MS:.0} ms: {})",
                dist(&total.ack),
                total.ack.len(),
                verdict(&total.ack, ACK_TARGET_MS)
            ),
            baseline: "-".into(),
            ratio: "-".into(),
        },
        Row {
            scenario: format!("{scenario}: edit to every other device of the store"),
            ours: format!(
                "{} over {} deliveries (p99 target {FANOUT_TARGET_MS:.0} ms: {})",
                dist(&total.fanout),
                total.fanout.len(),
                verdict(&total.fanout, FANOUT_TARGET_MS)
            ),
            baseline: "-".into(),
            ratio: "-".into(),
        },
        Row {
            scenario: format!("{scenario}: load, errors, relay"),
            ours: format!(
                "{} edits in {:.0} s ({:.0}/s), {errors} errors; relay RSS {} at end, {} peak; relay CPU {:.2} cores",
                total.measured_edits,
                secs,
                total.measured_edits as f64 / secs,
                mib(rss),
                mib(hwm),
                relay_cpu.as_secs_f64() / secs
            ),
            baseline: "-".into(),
            ratio: "-".into(),
        },
    ]
}
