//! The `evidence` group: a tablet's photos taken offline, uploaded over a
//! link cut at random bytes, then fetched by a second tablet, with the
//! real relay binary, the real SDK and the cutting proxy between them.
//! Meanwhile the photo tablet keeps editing a case, and a third tablet on
//! a direct link times how long each edit takes to reach it.

use super::baseline;
use super::relay_process::RelayProcess;
use super::{ms, percentile, Row};
use aftercase_client::{Device, LiveEvent};
use aftercase_sync::case::CaseKind;
use aftercase_tests::cutproxy::{CutPlan, CutProxy};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A JPEG-looking photo of `len` bytes, distinct per `seed` (random
/// bytes: nothing compresses).
fn photo(len: usize, seed: u64) -> Vec<u8> {
    let mut b = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1,
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while b.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // No 0xFF after the header: nothing reads as a JPEG marker.
        b.extend_from_slice(&x.to_le_bytes().map(|v| v.min(0xFE)));
    }
    b.truncate(len);
    b
}

/// A device's live sync on its own thread (the SDK's future is not
/// `Send`), stopped on drop.
struct Live {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn live(device: &Device, mut on_event: impl FnMut(LiveEvent) + Send + 'static) -> Live {
    let device = device.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            tokio::select! {
                _ = device.run_live(&mut on_event) => {}
                _ = stopped => {}
            }
        });
    });
    Live {
        stop: Some(stop),
        thread: Some(thread),
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Edits on `editor`'s case `case` every `every`, each timed until the
/// watcher's live sync reports it, while `busy` says the transfer runs.
fn edit_latencies(
    rt: &tokio::runtime::Runtime,
    editor: &Device,
    case: aftercase_sync::CaseId,
    received: &Arc<Mutex<Vec<Instant>>>,
    busy: &dyn Fn() -> bool,
    every: Duration,
    max: usize,
) -> Vec<Duration> {
    let mut out = Vec::new();
    let _guard = rt.enter();
    for i in 0..max {
        if !busy() {
            break;
        }
        let before = received.lock().map(|r| r.len()).unwrap_or(0);
        let at = Instant::now();
        editor
            .add_note(case, &format!("edit {i} during the upload"))
            .expect("edit");
        // Wait for the watcher to hear of it (a liveness bound only).
        let deadline = at + Duration::from_secs(120);
        let got = loop {
            let r = received
                .lock()
                .map(|r| r.get(before).copied())
                .unwrap_or(None);
            if let Some(t) = r {
                break Some(t);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if let Some(t) = got {
            out.push(t.saturating_duration_since(at));
        }
        std::thread::sleep(every);
    }
    out
}

/// The group's rows.
pub fn run(tmp: &Path, quick: bool) -> Vec<Row> {
    let (n, size, cuts) = if quick {
        (20usize, 3_000_000usize, 10usize)
    } else {
        (200, 3_000_000, 30)
    };
    let data = (n * size) as u64;
    eprintln!("evidence: {n} photos of {size} bytes over a link cut {cuts} times...");
    let dir = tmp.join("evidence");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let relay = RelayProcess::start_in(&dir.join("relay"), None, &[]);
    let relay_addr = relay
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("relay addr");
    // Cuts spread over the upload and the download (2x the data).
    let plan = CutPlan::random(2026, cuts, 2 * data / (cuts as u64 + 1));
    let proxy = CutProxy::start(relay_addr, plan).expect("proxy");
    let via = format!("http://{}", proxy.addr());

    let a_dir = dir.join("tab-a");
    Device::init(&a_dir, &via, &relay.token("lin", "staff", "S1", "tab-a")).expect("init a");
    let a = Device::open(&a_dir).expect("open a");
    let claim = a
        .create_case(CaseKind::DamageClaim, "Wang", "13800000000", None, None)
        .expect("case");
    let edited = a
        .create_case(CaseKind::Repair, "Li", "13900000000", None, None)
        .expect("case");
    let w_dir = dir.join("tab-w");
    Device::init(
        &w_dir,
        &relay.url,
        &relay.token("sam", "supervisor", "S1", "tab-w"),
    )
    .expect("init w");
    let w = Device::open(&w_dir).expect("open w");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let received: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let _watcher = {
        let received = received.clone();
        live(&w, move |ev| {
            if matches!(ev, LiveEvent::Received(c) if c == edited) {
                if let Ok(mut r) = received.lock() {
                    r.push(Instant::now());
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    // The usual time: edits before any photo is taken (no cut happens on
    // these few bytes), then the upload with edits during it.
    let idle = {
        let syncing = live(&a, |_| {});
        std::thread::sleep(Duration::from_millis(500));
        let l = edit_latencies(
            &rt,
            &a,
            edited,
            &received,
            &|| true,
            Duration::from_millis(200),
            10,
        );
        drop(syncing);
        std::thread::sleep(Duration::from_millis(200));
        l
    };
    // Attach offline (the local write path: strip, hash, store).
    let file = dir.join("photo.jpg");
    let started = Instant::now();
    for i in 0..n {
        std::fs::write(&file, photo(size, i as u64 + 1)).expect("photo file");
        a.attach(claim, &file, "photo", None).expect("attach");
    }
    let attach_time = started.elapsed();

    let before = proxy.stats();
    let started = Instant::now();
    let syncing = live(&a, |_| {});
    let a3 = a.clone();
    let busy = move || a3.status().map(|s| s.evidence_pending > 0).unwrap_or(false);
    let during = edit_latencies(
        &rt,
        &a,
        edited,
        &received,
        &busy,
        Duration::from_millis(500),
        10_000,
    );
    while busy() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let upload_time = started.elapsed();
    drop(syncing);
    let after_up = proxy.stats();
    let relay_peak_kib = relay.memory().1;
    let up_bytes = after_up.up_bytes - before.up_bytes;
    let up_cuts = after_up.cuts - before.cuts;

    // A second tablet fetches every photo over the same link.
    let b_dir = dir.join("tab-b");
    Device::init(
        &b_dir,
        &via,
        &relay.token("mei", "supervisor", "S1", "tab-b"),
    )
    .expect("init b");
    let b = Device::open(&b_dir).expect("open b");
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        assert!(attempts < 500, "download never completed");
        let want = b.missing_evidence().expect("missing");
        if want.is_empty() && attempts > 1 {
            break;
        }
        let _ = rt.block_on(b.sync_fetching(want, |_| {}));
    }
    let download_time = started.elapsed();
    let after_down = proxy.stats();
    let down_bytes = after_down.down_bytes - after_up.down_bytes;
    let down_cuts = after_down.cuts - after_up.cuts;
    let held = b.status().expect("status").evidence_cached;
    assert_eq!(held, n, "every photo must arrive at the second tablet");

    // The same on a clean link (a tablet on the relay's own network), so
    // the edits' time shows the photos' cost and not the reconnects'.
    let clean_n = n / 5;
    let c_dir = dir.join("tab-c");
    Device::init(
        &c_dir,
        &relay.url,
        &relay.token("lin", "staff", "S1", "tab-c"),
    )
    .expect("init c");
    let c = Device::open(&c_dir).expect("open c");
    let c_claim = c
        .create_case(CaseKind::DamageClaim, "Zhao", "13700000000", None, None)
        .expect("case");
    let c_edited = c
        .create_case(CaseKind::Repair, "Qian", "13600000000", None, None)
        .expect("case");
    {
        // The watcher learns of the new case first.
        let syncing = live(&c, |_| {});
        std::thread::sleep(Duration::from_millis(1000));
        drop(syncing);
    }
    let received_c: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let _watcher_c = {
        let received = received_c.clone();
        live(&w, move |ev| {
            if matches!(ev, LiveEvent::Received(x) if x == c_edited) {
                if let Ok(mut r) = received.lock() {
                    r.push(Instant::now());
                }
            }
        })
    };
    for i in 0..clean_n {
        std::fs::write(&file, photo(size, 10_000 + i as u64)).expect("photo file");
        c.attach(c_claim, &file, "photo", None).expect("attach");
    }
    let started = Instant::now();
    let syncing = live(&c, |_| {});
    let c2 = c.clone();
    let busy_c = move || c2.status().map(|s| s.evidence_pending > 0).unwrap_or(false);
    let mut clean = edit_latencies(
        &rt,
        &c,
        c_edited,
        &received_c,
        &busy_c,
        Duration::from_millis(100),
        10_000,
    );
    while busy_c() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let clean_time = started.elapsed();
    drop(syncing);
    clean.sort();

    let disk = baseline::disk_write_mb_s(&dir, if quick { 64 } else { 1024 }).expect("disk");
    let lo = baseline::loopback_mb_s(if quick { 64 } else { 512 }).expect("loopback");
    let mut idle = idle;
    let mut during = during;
    idle.sort();
    during.sort();
    let spread = |v: &[Duration]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            format!(
                "p50 {} / p95 {} / max {} ({} edits)",
                ms(percentile(v, 0.5)),
                ms(percentile(v, 0.95)),
                ms(*v.last().unwrap_or(&Duration::ZERO)),
                v.len()
            )
        }
    };
    rt.shutdown_timeout(Duration::from_secs(2));
    vec![
        Row {
            scenario: format!("Evidence: attach {n} photos of {} MB offline (strip, hash, store)", size / 1_000_000),
            ours: format!("{:.1} s ({:.0} MB/s)", attach_time.as_secs_f64(), mb_s(data, attach_time)),
            baseline: format!("disk {:.0} MB/s write+fsync", disk.write),
            ratio: format!("{:.2}x of disk", mb_s(data, attach_time) / disk.write),
        },
        Row {
            scenario: format!("Evidence: upload {} MB through {up_cuts} link cuts (live sync, reconnecting)", data / 1_000_000),
            ours: format!("{:.1} s ({:.0} MB/s)", upload_time.as_secs_f64(), mb_s(data, upload_time)),
            baseline: format!("loopback {lo:.0} MB/s, disk {:.0} MB/s", disk.write),
            ratio: format!("{:.2}x of disk", mb_s(data, upload_time) / disk.write),
        },
        Row {
            scenario: "Evidence: bytes the tablet sent for the upload (all frames, through the proxy)".into(),
            ours: format!("{:.1} MB", up_bytes as f64 / 1e6),
            baseline: format!("{:.1} MB of photos", data as f64 / 1e6),
            ratio: format!("{:.3}x", up_bytes as f64 / data as f64),
        },
        Row {
            scenario: format!("Evidence: second tablet fetches all {n} through {down_cuts} cuts ({attempts} syncs)"),
            ours: format!("{:.1} s ({:.0} MB/s), {:.1} MB received", download_time.as_secs_f64(), mb_s(data, download_time), down_bytes as f64 / 1e6),
            baseline: format!("{:.1} MB of photos", data as f64 / 1e6),
            ratio: format!("{:.3}x bytes", down_bytes as f64 / data as f64),
        },
        Row {
            scenario: format!("Evidence: upload {} MB on a clean link (no cuts)", (clean_n * size) / 1_000_000),
            ours: format!("{:.1} s ({:.0} MB/s)", clean_time.as_secs_f64(), mb_s((clean_n * size) as u64, clean_time)),
            baseline: format!("loopback {lo:.0} MB/s, disk {:.0} MB/s", disk.write),
            ratio: format!("{:.2}x of disk", mb_s((clean_n * size) as u64, clean_time) / disk.write),
        },
        Row {
            scenario: "Evidence: a case edit on the photo tablet until another tablet has it, clean link".into(),
            ours: format!("during upload: {}", spread(&clean)),
            baseline: format!("idle: {}", spread(&idle)),
            ratio: "-".into(),
        },
        Row {
            scenario: "Evidence: the same through the cut link (includes reconnect backoff)".into(),
            ours: format!("during upload: {}", spread(&during)),
            baseline: format!("idle: {}", spread(&idle)),
            ratio: "-".into(),
        },
        Row {
            scenario: "Evidence: relay peak memory (VmHWM) after the upload".into(),
            ours: format!("{} MiB", relay_peak_kib / 1024),
            baseline: format!("{:.0} MB uploaded", data as f64 / 1e6),
            ratio: "-".into(),
        },
    ]
}
