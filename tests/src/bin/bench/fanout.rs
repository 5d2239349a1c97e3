//! Relay fan-in/fan-out: the relay's own cost under many live connections.
//!
//! Starts the real `aftercase-relay serve` binary on loopback pinned to
//! CPU 0 (`taskset -c 0`), mints one token per simulated device with the
//! relay's own `aftercase-relay token` command, and starts the load
//! generator (`src/bin/loadgen`, a separate process) pinned to CPU 1: 1,000
//! devices in 100 stores (10 per store), or 100 in 10 stores with
//! `--quick`, each on its own WebSocket. The generator's devices hold no
//! replica: every device's case and notes are built before the run and
//! only sent, and a receiving device reads just enough of each frame to
//! know which change arrived and answers what the protocol asks of it
//! (`aftercase_tests::loadgen`); like the device library they take pushed
//! changes (`--fanout-no-push`: they do not, and every delivery is a sync
//! message). So one core drives the load and the other
//! is the relay's alone. Without `taskset` (or with one CPU) both run
//! unpinned and the table says so.
//!
//! Each device uploads its own case, receives its store's others, then
//! adds a note to its own case every 2 s (devices spread evenly over the
//! period); 6 s warm-up, 60 s measured (`--quick`: 2 s and 8 s). Measured
//! per note from the moment its frame is handed to the socket: ack, until
//! the relay's sync message whose heads include it (the relay sends it only
//! once the change is flushed); fan-out, until each other device of the
//! store holds it, one sample per receiver. Relay CPU is read from
//! `/proc/<pid>/stat` at the start and end of the measured window (whole
//! process and per thread name), and divided by the notes made in the
//! window (per edit) and by nine times that (per delivery). Errors: refused
//! changes, failed connections or frames, devices not ready after setup,
//! and acknowledgements or deliveries still missing 15 s after the last
//! note.
//!
//! With `--fanout-postgres --fanout-relays N`, N relays run over the one
//! PostgreSQL database (each with its own data directory, all with the same
//! token secret), all pinned to CPU 0 beside the database server. Each
//! store's devices are spread over them (slot `i` on relay `i % N`), so
//! most deliveries cross relays: a relay takes in the others' commits
//! through its follower. Relay CPU and memory are summed over the relays.

use crate::fanout_replicas::ensure_fd_limit;
use crate::relay_process::{taskset_works, RelayProcess};
use crate::Row;
use aftercase_tests::postgres::PgCluster;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Targets from the issue, printed next to the figures.
const ACK_TARGET_MS: f64 = 50.0;
const FANOUT_TARGET_MS: f64 = 100.0;
const CPU_PER_EDIT_TARGET_MS: f64 = 0.5;
const PER_STORE: usize = 10;

struct Sizes {
    stores: usize,
    warmup_s: u64,
    measure_s: u64,
    /// Devices take pushed changes (else every delivery is a sync message).
    push: bool,
    /// The relay stores its cases in PostgreSQL (a private cluster on the
    /// relay's CPU) instead of sled.
    postgres: bool,
    /// Relays on the one database (more than one only with `postgres`).
    relays: usize,
}

/// Runs the scenario and returns its rows. `stores` overrides the number
/// of stores (`--fanout-stores N`; 10 devices each); `postgres` puts the
/// relay on PostgreSQL (`--fanout-postgres`); `relays` runs that many
/// relays on the one database (`--fanout-relays N`, PostgreSQL only).
pub fn run(
    quick: bool,
    stores: Option<usize>,
    push: bool,
    postgres: bool,
    relays: usize,
) -> Vec<Row> {
    assert!(
        relays >= 1 && (relays == 1 || postgres),
        "several relays need PostgreSQL"
    );
    let sizes = if quick {
        Sizes {
            stores: 10,
            warmup_s: 2,
            measure_s: 8,
            push,
            postgres,
            relays,
        }
    } else {
        Sizes {
            stores: 100,
            warmup_s: 6,
            measure_s: 60,
            push,
            postgres,
            relays,
        }
    };
    run_sized(&Sizes {
        stores: stores.unwrap_or(sizes.stores),
        ..sizes
    })
}

/// Mints a token per device with the relay's `token` command, a few at a
/// time: `STORE USER DEVICE TOKEN` lines, store by store.
fn mint_tokens(relay: &RelayProcess, stores: usize) -> String {
    let devices: Vec<(String, String, String)> = (0..stores)
        .flat_map(|s| {
            (0..PER_STORE).map(move |d| {
                (
                    format!("S{s:03}"),
                    format!("u-{s:03}-{d:02}"),
                    format!("tab-{s:03}-{d:02}"),
                )
            })
        })
        .collect();
    let threads = 4;
    let chunk = devices.len().div_ceil(threads);
    let lines: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = devices
            .chunks(chunk.max(1))
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(store, user, device)| {
                            let token = relay.token(user, "staff", store, device);
                            format!("{store} {user} {device} {token}")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("token thread"))
            .collect()
    });
    lines.join("\n")
}

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_f64().unwrap_or(f64::NAN)
}

fn run_sized(sizes: &Sizes) -> Vec<Row> {
    let n = sizes.stores * PER_STORE;
    let began = Instant::now();
    ensure_fd_limit(n);
    let pinned = taskset_works(2);
    // Any 32+ byte secret: the relay and this process only meet on loopback.
    let secret = "aftercase-bench-fanout-secret-0123456789abcdef";
    // On PostgreSQL, the database server shares the relay's core: the
    // load generator's core stays its own.
    let cluster = sizes.postgres.then(|| {
        PgCluster::start_pinned(pinned.then_some(0)).expect("a private PostgreSQL cluster")
    });
    let url = cluster
        .as_ref()
        .map(|c| c.database("fanout").expect("createdb"));
    let extra: Vec<&str> = url
        .as_deref()
        .map(|u| vec!["--database", u])
        .unwrap_or_default();
    // One after the other, so each has its schema in place before the
    // next connects; all sign with the same secret.
    let relays: Vec<RelayProcess> = (0..sizes.relays)
        .map(|_| RelayProcess::start_pinned(secret, pinned.then_some(0), &extra))
        .collect();
    for relay in &relays {
        eprintln!(
            "fanout: relay pid {} at {}{}; {n} devices in {} stores",
            relay.pid(),
            relay.url,
            if pinned {
                " pinned to CPU 0"
            } else {
                " (not pinned: taskset missing or one CPU)"
            },
            sizes.stores
        );
    }
    let t0 = Instant::now();
    // Any relay's `token` command will do: they share the secret.
    let tokens = mint_tokens(&relays[0], sizes.stores);
    eprintln!(
        "fanout: minted {n} tokens with aftercase-relay token in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let mut file = tempfile::NamedTempFile::new().expect("tokens file");
    file.write_all(tokens.as_bytes()).expect("write tokens");
    let loadgen = std::env::current_exe()
        .expect("own path")
        .with_file_name("loadgen");
    assert!(
        loadgen.exists(),
        "{} not found: build it with `cargo build -p aftercase-tests --bins`",
        loadgen.display()
    );
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "1"]).arg(&loadgen);
        c
    } else {
        Command::new(&loadgen)
    };
    let join =
        |f: &dyn Fn(&RelayProcess) -> String| relays.iter().map(f).collect::<Vec<_>>().join(",");
    cmd.arg("--url")
        .arg(join(&|r| r.ws_url()))
        .arg("--tokens")
        .arg(file.path())
        .args(["--per-store", &PER_STORE.to_string()])
        .args(["--relay-pid", &join(&|r| r.pid().to_string())])
        .args(["--warmup-s", &sizes.warmup_s.to_string()])
        .args(["--measure-s", &sizes.measure_s.to_string()])
        .args((!sizes.push).then_some("--no-push"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let out = cmd.output().expect("run the load generator");
    assert!(out.status.success(), "the load generator failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let r: Value = serde_json::from_str(text.trim()).expect("the load generator's JSON");
    eprintln!("fanout: {r}");
    drop(relays);
    drop(cluster);
    eprintln!("fanout: finished in {:.1} s", began.elapsed().as_secs_f64());
    rows(&r, sizes, pinned)
}

fn rows(r: &Value, sizes: &Sizes, pinned: bool) -> Vec<Row> {
    let n = sizes.stores * PER_STORE;
    let scenario = format!(
        "Relay fan-in/fan-out, {n} light devices in {} stores, an edit per device every 2 s, {}, {}, {}",
        sizes.stores,
        match (sizes.postgres, sizes.relays) {
            (true, 1) => "cases in PostgreSQL".to_string(),
            (true, r) => format!(
                "{r} relays on one PostgreSQL, each store's devices spread over them"
            ),
            (false, _) => "cases in sled".to_string(),
        },
        if sizes.push {
            "changes pushed"
        } else {
            "changes by sync message (no push)"
        },
        match (pinned, sizes.postgres, sizes.relays > 1) {
            (true, true, true) => "relays and PostgreSQL on CPU 0, load generator on CPU 1",
            (true, true, false) => "relay and PostgreSQL on CPU 0, load generator on CPU 1",
            (true, false, _) => "relay on CPU 0, load generator on CPU 1",
            (false, _, _) => "not pinned",
        }
    );
    // Several relays: their CPU and memory are sums.
    let summed = if sizes.relays > 1 {
        format!(", summed over {} relays", sizes.relays)
    } else {
        String::new()
    };
    let rss_each = r["relay_rss_kib_each"]
        .as_array()
        .map(|v| {
            let each: Vec<String> = v
                .iter()
                .map(|k| format!("{:.0}", k.as_f64().unwrap_or(f64::NAN) / 1024.0))
                .collect();
            format!(" ({} MiB each at end)", each.join(" + "))
        })
        .unwrap_or_default();
    let verdict = |v: f64, target: f64| if v < target { "met" } else { "missed" };
    let dist = |k: &str| {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            f(r, &[k, "p50_ms"]),
            f(r, &[k, "p99_ms"]),
            f(r, &[k, "max_ms"])
        )
    };
    let per_edit = f(r, &["relay_cpu_ms_per_edit"]);
    let threads = r["relay_cpu_ms_per_edit_by_thread"]
        .as_object()
        .map(|m| {
            let mut v: Vec<(&String, f64)> = m
                .iter()
                .map(|(k, v)| (k, v.as_f64().unwrap_or(0.0)))
                .collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1));
            v.iter()
                .take(4)
                .map(|(k, v)| format!("{k} {v:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    // The relay's own accounting (its /metrics): time in the core per
    // frame type, lock wait and answer encoding included.
    let phases = r["relay_metrics_per_edit"]
        .as_object()
        .map(|m| {
            let mut v: Vec<(String, f64, f64)> = m
                .iter()
                .map(|(k, v)| {
                    let name = k
                        .replace("aftercase_relay_core_seconds{frame=\"", "core ")
                        .replace("aftercase_flush_seconds", "flush")
                        .replace("\"}", "");
                    (
                        name,
                        v["ms_per_edit"].as_f64().unwrap_or(0.0),
                        v["calls_per_edit"].as_f64().unwrap_or(0.0),
                    )
                })
                .collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1));
            v.iter()
                .take(4)
                .map(|(k, ms, n)| format!("{k} {ms:.3} ({n:.1} calls)"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mib = |k: &str| f(r, &[k]) / 1024.0;
    vec![
        Row {
            scenario: format!("{scenario}: edit to relay ack"),
            ours: format!(
                "{} over {} edits (p99 target {ACK_TARGET_MS:.0} ms: {})",
                dist("ack"),
                r["ack"]["n"],
                verdict(f(r, &["ack", "p99_ms"]), ACK_TARGET_MS)
            ),
            baseline: "-".into(),
            ratio: "-".into(),
        },
        Row {
            scenario: format!("{scenario}: edit to every other device of the store"),
            ours: format!(
                "{} over {} deliveries (p99 target {FANOUT_TARGET_MS:.0} ms: {})",
                dist("fanout"),
                r["fanout"]["n"],
                verdict(f(r, &["fanout", "p99_ms"]), FANOUT_TARGET_MS)
            ),
            baseline: "-".into(),
            ratio: "-".into(),
        },
        Row {
            scenario: format!("{scenario}: relay CPU{summed}"),
            ours: format!(
                "{per_edit:.3} ms per edit with {} deliveries (target {CPU_PER_EDIT_TARGET_MS} ms: {}), {:.3} ms per delivery; {:.2} cores; by thread, ms per edit: {threads}; relay's own timing, ms per edit: {phases}",
                PER_STORE - 1,
                verdict(per_edit, CPU_PER_EDIT_TARGET_MS),
                f(r, &["relay_cpu_ms_per_delivery"]),
                f(r, &["relay_cores"]),
            ),
            baseline: "-".into(),
            ratio: "-".into(),
        },
        Row {
            scenario: format!("{scenario}: load, errors, memory{summed}"),
            ours: format!(
                "{} edits in {:.0} s ({:.0}/s), {} errors; relay RSS {:.0} MiB at end{rss_each}, {:.0} MiB peak; load generator {:.2} cores, {:.0} MiB",
                r["edits_in_window"],
                f(r, &["window_s"]),
                f(r, &["edits_per_s"]),
                r["errors"],
                mib("relay_rss_kib"),
                mib("relay_hwm_kib"),
                f(r, &["loadgen_cores"]),
                mib("loadgen_rss_kib"),
            ),
            baseline: "-".into(),
            ratio: "-".into(),
        },
    ]
}
