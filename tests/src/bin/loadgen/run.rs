//! The run: one task per device on a single-threaded runtime, a driver
//! that moves them through setup, edits and drain, and the figures.

use crate::proc_stat;
use crate::Args;
use aftercase_tests::loadgen::{Event, LightDevice, Send, StorePlan};
use aftercase_tests::ws_client::{connect, Socket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// Setup ends early when no further device became ready for this long.
const SETUP_STALL: Duration = Duration::from_secs(15);

/// What the device tasks are told to do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Setup,
    /// Edit every period from `start` plus the device's offset until
    /// `edits_until`.
    Run {
        start: Instant,
        edits_until: Instant,
    },
    Stop,
}

/// A store's prebuilt frames, ready to hand to sockets without copying.
struct Wire {
    plan: StorePlan,
    /// Per case slot: upload frames, then holding frames, by change index.
    upload: Vec<Vec<Bytes>>,
    holding: Vec<Vec<Bytes>>,
}

impl Wire {
    fn new(mut plan: StorePlan) -> Wire {
        let upload = plan
            .cases
            .iter_mut()
            .map(|c| {
                std::mem::take(&mut c.upload)
                    .into_iter()
                    .map(Bytes::from)
                    .collect()
            })
            .collect();
        let holding = plan
            .cases
            .iter_mut()
            .map(|c| {
                std::mem::take(&mut c.holding)
                    .into_iter()
                    .map(Bytes::from)
                    .collect()
            })
            .collect();
        Wire {
            plan,
            upload,
            holding,
        }
    }

    fn bytes(&self, s: Send) -> Bytes {
        match s {
            Send::Upload { slot, k } => self.upload[slot][k].clone(),
            Send::Holding { slot, k } => self.holding[slot][k].clone(),
            Send::Other(b) => Bytes::from(b),
        }
    }
}

/// What the tasks share (one thread: cells, no locks).
struct Board {
    /// The relays' sync endpoints: the device in slot `i` of its store
    /// connects to `urls[i % urls.len()]`.
    urls: Vec<String>,
    per_store: usize,
    /// Time between two edits of one device.
    period: Duration,
    connecting: Semaphore,
    /// Devices ask for pushed changes.
    push: bool,
    /// When each device's note `k` was handed to its socket.
    sent_at: Vec<Vec<Cell<Option<Instant>>>>,
    /// Edits made in `[from, until)` are measured.
    window: Cell<Option<(Instant, Instant)>>,
    ready: Cell<usize>,
    /// Acknowledgements plus deliveries still awaited.
    outstanding: Cell<i64>,
    edits: Cell<u64>,
    ack: RefCell<Vec<Duration>>,
    fanout: RefCell<Vec<Duration>>,
    lag: RefCell<Vec<Duration>>,
    errors: RefCell<Vec<String>>,
    frames_in: Cell<u64>,
    frames_out: Cell<u64>,
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
}

impl Board {
    fn measured(&self, at: Instant) -> bool {
        self.window
            .get()
            .is_some_and(|(from, until)| at >= from && at < until)
    }

    fn add(c: &Cell<u64>, n: u64) {
        c.set(c.get() + n);
    }
}

async fn send(
    socket: &mut Socket,
    wire: &Wire,
    out: Vec<Send>,
    board: &Board,
) -> Result<(), String> {
    if out.is_empty() {
        return Ok(());
    }
    for s in out {
        let b = wire.bytes(s);
        Board::add(&board.frames_out, 1);
        Board::add(&board.bytes_out, b.len() as u64);
        socket
            .feed(Message::Binary(b))
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    socket.flush().await.map_err(|e| format!("send: {e}"))
}

/// One device: index `g` overall, `slot` in its store.
struct Dev {
    g: usize,
    first_of_store: usize,
    slot: usize,
    wire: Rc<Wire>,
    token: String,
    offset: Duration,
}

async fn device(d: Dev, board: Rc<Board>, mut phase_rx: watch::Receiver<Phase>) {
    let name = format!(
        "{}/{}",
        d.wire.plan.store, d.wire.plan.devices[d.slot].device
    );
    if let Err(e) = run_device(&d, &board, &mut phase_rx).await {
        board.errors.borrow_mut().push(format!("{name}: {e}"));
    }
}

async fn run_device(
    d: &Dev,
    board: &Board,
    phase_rx: &mut watch::Receiver<Phase>,
) -> Result<(), String> {
    let wire = &*d.wire;
    let plan = &wire.plan;
    let mut light = LightDevice::new(d.slot, plan.devices.len()).with_push(board.push);
    let mut socket = {
        let _permit = board
            .connecting
            .acquire()
            .await
            .map_err(|e| e.to_string())?;
        connect(&board.urls[d.slot % board.urls.len()], &d.token).await?
    };
    send(&mut socket, wire, light.start("aftercase-loadgen"), board).await?;
    let mut ready = false;
    let mut phase = *phase_rx.borrow_and_update();
    let mut ticker: Option<tokio::time::Interval> = None;
    let mut next_note = 1usize;
    let mut acked = 1usize;
    let mut out = Vec::new();
    let mut events = Vec::new();
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
                            return Err(format!(
                                "not ready after setup: {} own changes acknowledged, holding {:?}",
                                light.acked(),
                                (0..plan.devices.len()).map(|s| light.held(s)).collect::<Vec<_>>()
                            ));
                        }
                        let mut t = tokio::time::interval_at((start + d.offset).into(), board.period);
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
                let Phase::Run { edits_until, .. } = phase else { continue };
                let now = Instant::now();
                if now >= edits_until || next_note >= plan.cases[d.slot].hashes.len() {
                    ticker = None;
                    continue;
                }
                let Some(s) = light.edit(next_note) else {
                    return Err(format!("note {next_note} out of order"));
                };
                board.sent_at[d.g][next_note].set(Some(now));
                next_note += 1;
                board.edits.set(board.edits.get() + 1);
                if board.measured(now) {
                    board.lag.borrow_mut().push(now.saturating_duration_since(due.into_std()));
                }
                board.outstanding.set(board.outstanding.get() + board.per_store as i64);
                send(&mut socket, wire, vec![s], board).await?;
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
                Board::add(&board.frames_in, 1);
                Board::add(&board.bytes_in, bytes.len() as u64);
                light.handle(plan, &bytes, &mut out, &mut events)?;
                let now = Instant::now();
                for e in events.drain(..) {
                    match e {
                        Event::Acked { k } => {
                            // Notes only: the creation is setup.
                            for j in acked.max(1)..=k {
                                if let Some(at) = board.sent_at[d.g][j].get() {
                                    if board.measured(at) {
                                        board.ack.borrow_mut().push(now - at);
                                    }
                                    board.outstanding.set(board.outstanding.get() - 1);
                                }
                            }
                            acked = acked.max(k + 1);
                        }
                        Event::Delivered { slot, from, to } => {
                            let sender = d.first_of_store + slot;
                            for j in from.max(1)..to {
                                if let Some(at) = board.sent_at[sender][j].get() {
                                    if board.measured(at) {
                                        board.fanout.borrow_mut().push(now - at);
                                    }
                                    board.outstanding.set(board.outstanding.get() - 1);
                                }
                            }
                        }
                        Event::Refused { slot, reason } => {
                            board.errors.borrow_mut().push(format!("relay refused case in slot {slot}: {reason}"));
                        }
                    }
                }
                if !ready && light.ready() {
                    ready = true;
                    board.ready.set(board.ready.get() + 1);
                }
                send(&mut socket, wire, std::mem::take(&mut out), board).await?;
            }
        }
    }
}

fn quantiles(v: &mut [Duration]) -> Value {
    v.sort();
    let q = |p: f64| aftercase_tests::quantile::percentile(v, p).as_secs_f64() * 1000.0;
    json!({
        "n": v.len(),
        "p50_ms": q(0.5),
        "p90_ms": q(0.9),
        "p99_ms": q(0.99),
        "p999_ms": q(0.999),
        "max_ms": v.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    })
}

/// The relay's own accounting from `/metrics`: per series name and
/// label, the `_sum` and `_count` of its histograms (core time per frame
/// type, flush time). Empty when the relay cannot be asked.
async fn relay_metrics(ws_url: &str) -> BTreeMap<String, (f64, f64)> {
    let mut out = BTreeMap::new();
    let base = ws_url
        .replacen("ws://", "http://", 1)
        .trim_end_matches("/v1/sync")
        .to_string();
    let Ok(resp) = reqwest::get(format!("{base}/metrics")).await else {
        return out;
    };
    let Ok(text) = resp.text().await else {
        return out;
    };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let wanted = ["aftercase_relay_core_seconds", "aftercase_flush_seconds"];
        if !wanted.iter().any(|w| key.starts_with(w)) {
            continue;
        }
        // `name_sum{labels}` or `name_count{labels}`: the series is the
        // name without the suffix, with its labels.
        let (name, labels) = key.split_once('{').map_or((key, ""), |(n, l)| (n, l));
        let (series, slot) = if let Some(n) = name.strip_suffix("_sum") {
            (n, 0)
        } else if let Some(n) = name.strip_suffix("_count") {
            (n, 1)
        } else {
            continue;
        };
        let series = if labels.is_empty() {
            series.to_string()
        } else {
            format!("{series}{{{labels}")
        };
        let e = out.entry(series).or_insert((0.0, 0.0));
        if slot == 0 {
            e.0 = v;
        } else {
            e.1 = v;
        }
    }
    out
}

/// [`relay_metrics`] of every relay, asked at once, summed per series.
async fn relays_metrics(ws_urls: &[String]) -> BTreeMap<String, (f64, f64)> {
    let each = futures_util::future::join_all(ws_urls.iter().map(|u| relay_metrics(u))).await;
    let mut out = BTreeMap::new();
    for m in each {
        for (series, (sum, count)) in m {
            let e = out.entry(series).or_insert((0.0, 0.0));
            e.0 += sum;
            e.1 += count;
        }
    }
    out
}

/// CPU time so far of the relays, summed; `None` without pids.
fn relays_cpu(pids: &[u32]) -> Option<Duration> {
    (!pids.is_empty()).then(|| pids.iter().map(|&p| proc_stat::cpu(p)).sum())
}

/// CPU time so far per thread name, summed over the relays.
fn relays_cpu_by_thread(pids: &[u32]) -> BTreeMap<String, Duration> {
    let mut out = BTreeMap::new();
    for &p in pids {
        for (name, t) in proc_stat::cpu_by_thread(p) {
            *out.entry(name).or_insert(Duration::ZERO) += t;
        }
    }
    out
}

/// (VmRSS, VmHWM) in KiB of each relay.
fn relays_memory(pids: &[u32]) -> Vec<(u64, u64)> {
    pids.iter().map(|&p| proc_stat::memory(p)).collect()
}

/// Per series: milliseconds per edit and calls per edit over the window.
fn metrics_per_edit(
    from: &BTreeMap<String, (f64, f64)>,
    to: &BTreeMap<String, (f64, f64)>,
    edits: f64,
) -> BTreeMap<String, Value> {
    to.iter()
        .filter_map(|(k, (sum, count))| {
            let (s0, c0) = from.get(k).copied().unwrap_or_default();
            let calls = count - c0;
            (calls > 0.0).then(|| {
                (
                    k.clone(),
                    json!({
                        "ms_per_edit": (sum - s0) * 1000.0 / edits,
                        "calls_per_edit": calls / edits,
                    }),
                )
            })
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the devices against the relay and returns the figures.
pub async fn run(args: &Args, plans: Vec<StorePlan>, tokens: Vec<Vec<String>>) -> Value {
    let per_store = args.per_store;
    let n = plans.len() * per_store;
    let notes = plans.first().map_or(0, |p| p.cases[0].hashes.len());
    let board = Rc::new(Board {
        urls: args.urls.clone(),
        per_store,
        period: args.period,
        connecting: Semaphore::new(args.connecting),
        push: args.push,
        sent_at: (0..n)
            .map(|_| (0..notes).map(|_| Cell::new(None)).collect())
            .collect(),
        window: Cell::new(None),
        ready: Cell::new(0),
        outstanding: Cell::new(0),
        edits: Cell::new(0),
        ack: RefCell::new(Vec::new()),
        fanout: RefCell::new(Vec::new()),
        lag: RefCell::new(Vec::new()),
        errors: RefCell::new(Vec::new()),
        frames_in: Cell::new(0),
        frames_out: Cell::new(0),
        bytes_in: Cell::new(0),
        bytes_out: Cell::new(0),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let mut tasks = Vec::with_capacity(n);
    for (s, (plan, toks)) in plans.into_iter().zip(tokens).enumerate() {
        let wire = Rc::new(Wire::new(plan));
        for (slot, token) in toks.into_iter().enumerate() {
            let g = s * per_store + slot;
            let dev = Dev {
                g,
                first_of_store: s * per_store,
                slot,
                wire: wire.clone(),
                token,
                // Devices in index order spread evenly over the period, so
                // a store's devices edit far apart and the relay sees an
                // even load.
                offset: args.period.mul_f64(g as f64 / n as f64),
            };
            tasks.push(tokio::task::spawn_local(device(
                dev,
                board.clone(),
                phase_rx.clone(),
            )));
        }
    }
    drop(phase_rx);
    let pids = &args.relay_pids[..];

    // Setup.
    let t0 = Instant::now();
    let mut last_print = Instant::now();
    let mut progress = (0, Instant::now());
    while board.ready.get() < n && t0.elapsed() < args.setup_limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ready = board.ready.get();
        if ready != progress.0 {
            progress = (ready, Instant::now());
        } else if progress.1.elapsed() >= SETUP_STALL {
            eprintln!("loadgen: setup stalled at {ready} of {n} devices ready; going on");
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "loadgen: setup {:.0} s, {ready} of {n} devices ready",
                t0.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
    }
    let setup = t0.elapsed();
    let ready = board.ready.get();
    let rss_setup: u64 = relays_memory(pids).iter().map(|m| m.0).sum();
    eprintln!(
        "loadgen: setup took {:.1} s, {ready} of {n} devices ready",
        setup.as_secs_f64()
    );

    // Edits.
    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + args.warmup;
    let edits_until = measure_from + args.measure;
    board.window.set(Some((measure_from, edits_until)));
    let _ = phase_tx.send(Phase::Run { start, edits_until });
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_from = relays_cpu(pids);
    let threads_from = relays_cpu_by_thread(pids);
    let own_from = proc_stat::cpu(std::process::id());
    let metrics_from = relays_metrics(&args.urls).await;
    let counts = |b: &Board| {
        [
            b.frames_in.get(),
            b.frames_out.get(),
            b.bytes_in.get(),
            b.bytes_out.get(),
            b.edits.get(),
        ]
    };
    let counts_from = counts(&board);
    let mut at = measure_from;
    while at < edits_until {
        at = (at + Duration::from_secs(10)).min(edits_until);
        tokio::time::sleep_until(at.into()).await;
        eprintln!(
            "loadgen: {:.0} s measured, {} edits, {} awaited{}",
            (at - measure_from).as_secs_f64(),
            board.edits.get() - counts_from[4],
            board.outstanding.get(),
            if pids.is_empty() {
                String::new()
            } else {
                format!(
                    ", relay RSS {} MiB",
                    relays_memory(pids).iter().map(|m| m.0).sum::<u64>() / 1024
                )
            }
        );
    }
    let window = Instant::now() - measure_from;
    let relay_cpu = relays_cpu(pids).map(|c| c.saturating_sub(cpu_from.unwrap_or_default()));
    let threads_to = relays_cpu_by_thread(pids);
    let own_cpu = proc_stat::cpu(std::process::id()).saturating_sub(own_from);
    let metrics_to = relays_metrics(&args.urls).await;
    let counts_to = counts(&board);
    let d: Vec<u64> = counts_to
        .iter()
        .zip(counts_from)
        .map(|(a, b)| a.saturating_sub(b))
        .collect();

    // Drain.
    let drain_until = Instant::now() + args.drain;
    while board.outstanding.get() > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let memory_each = relays_memory(pids);
    let rss: u64 = memory_each.iter().map(|m| m.0).sum();
    let hwm: u64 = memory_each.iter().map(|m| m.1).sum();
    let missing = board.outstanding.get().max(0);
    let _ = phase_tx.send(Phase::Stop);
    for t in tasks {
        if let Err(e) = t.await {
            board
                .errors
                .borrow_mut()
                .push(format!("device task failed: {e}"));
        }
    }
    let errors = board.errors.borrow();
    for e in errors.iter().take(10) {
        eprintln!("loadgen: error: {e}");
    }

    let measured_edits = board.ack.borrow().len() as u64 + {
        // Edits made in the window whose acknowledgement never came.
        let mut lost = 0u64;
        for per_dev in &board.sent_at {
            for c in per_dev {
                if let Some(at) = c.get() {
                    lost += u64::from(board.measured(at));
                }
            }
        }
        lost.saturating_sub(board.ack.borrow().len() as u64)
    };
    let edits_window = d[4].max(1) as f64;
    let deliveries_window = edits_window * (per_store - 1) as f64;
    let mut threads: Vec<(String, f64)> = threads_to
        .iter()
        .map(|(name, t)| {
            let before = threads_from.get(name).copied().unwrap_or_default();
            (name.clone(), ms(t.saturating_sub(before)))
        })
        .filter(|(_, v)| *v > 0.0)
        .collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    let threads: BTreeMap<String, f64> = threads
        .into_iter()
        .map(|(name, v)| (name, v / edits_window))
        .collect();
    let secs = window.as_secs_f64();
    let mut result = json!({
        "devices": n,
        "stores": n / per_store,
        "per_store": per_store,
        "period_ms": args.period.as_millis() as u64,
        "push": args.push,
        "setup_s": setup.as_secs_f64(),
        "ready": ready,
        "window_s": secs,
        "edits_in_window": d[4],
        "measured_edits": measured_edits,
        "edits_per_s": d[4] as f64 / secs,
        "ack": quantiles(&mut board.ack.borrow_mut()),
        "fanout": quantiles(&mut board.fanout.borrow_mut()),
        "start_lag": quantiles(&mut board.lag.borrow_mut()),
        "errors": errors.len() as u64 + missing as u64,
        "error_list": errors.iter().take(10).cloned().collect::<Vec<_>>(),
        "missing_acks_and_deliveries": missing,
        "frames_to_relay_per_edit": d[1] as f64 / edits_window,
        "frames_from_relay_per_edit": d[0] as f64 / edits_window,
        "bytes_to_relay_per_edit": d[3] as f64 / edits_window,
        "bytes_from_relay_per_edit": d[2] as f64 / edits_window,
        "relay_cpu_ms": relay_cpu.map(ms),
        "relay_cores": relay_cpu.map(|c| c.as_secs_f64() / secs),
        "relay_cpu_ms_per_edit": relay_cpu.map(|c| ms(c) / edits_window),
        "relay_cpu_ms_per_delivery": relay_cpu.map(|c| ms(c) / deliveries_window),
        "relay_cpu_ms_per_edit_by_thread": threads,
        "relay_metrics_per_edit": metrics_per_edit(&metrics_from, &metrics_to, edits_window),
        "relay_rss_kib_after_setup": rss_setup,
        "relay_rss_kib": rss,
        "relay_hwm_kib": hwm,
        "loadgen_cores": own_cpu.as_secs_f64() / secs,
        "loadgen_rss_kib": proc_stat::memory(std::process::id()).0,
    });
    // Several relays: each one's RSS beside the sum (one relay: the output
    // stays as it was).
    if pids.len() > 1 {
        result["relay_rss_kib_each"] = memory_each.iter().map(|m| m.0).collect::<Vec<_>>().into();
    }
    result
}
