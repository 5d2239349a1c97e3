//! Load generator for the relay: many light simulated devices
//! (`aftercase_tests::loadgen`) on real WebSockets to a real relay, from
//! one thread, so the relay's cost can be measured apart from its load.
//!
//! ```text
//! loadgen --url ws://127.0.0.1:PORT/v1/sync[,ws://...] --tokens FILE --per-store 10
//!         [--relay-pid PID[,PID...]] [--warmup-s 6] [--measure-s 60] [--period-ms 2000]
//! ```
//!
//! `FILE` has one device a line, `STORE USER DEVICE TOKEN`, store by store
//! (`--per-store` lines each), the tokens signed for the relay (the bench
//! mints them with `aftercase-relay token`). Every device's case and notes
//! are built before the first connection; then every device connects,
//! uploads its case and receives its store's others; then each adds a note
//! to its own case every period (devices spread evenly over the period)
//! while the relay's acknowledgements and deliveries are timed. The first
//! `--warmup-s` seconds are not measured. With `--relay-pid`, the relay's
//! CPU time (whole and per thread name) is read from `/proc` at the start
//! and end of the measured window, and its memory at the end.
//!
//! Several relays (on one PostgreSQL database, so each takes in the others'
//! commits) are driven at once by giving `--url` a comma-separated list:
//! the device in slot `i` of its store connects to the `i % N`th URL, so
//! every store has devices on every relay and deliveries cross relays.
//! `--relay-pid` then takes the relays' pids, also comma-separated: CPU
//! time (whole and per thread name), RSS and peak RSS are summed over them
//! (`relay_rss_kib_each` adds each relay's RSS when there are several), as
//! are the relays' own `/metrics` over the URLs.
//!
//! Prints one JSON object on stdout; progress goes to stderr.

mod proc_stat;
mod run;

use aftercase_sync::{DeviceId, Millis, StoreId, UserId};
use aftercase_tests::loadgen::{DeviceName, StorePlan};
use anyhow::{bail, Context};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What to run, from the command line.
pub struct Args {
    /// The relays' sync endpoints; a device connects to the one its slot
    /// in the store picks (`slot % urls.len()`).
    urls: Vec<String>,
    tokens: String,
    per_store: usize,
    /// The relays' process ids (empty: relay CPU and memory not read).
    relay_pids: Vec<u32>,
    warmup: Duration,
    measure: Duration,
    period: Duration,
    drain: Duration,
    setup_limit: Duration,
    connecting: usize,
    /// Devices ask for pushed changes (`--no-push`: every change by sync
    /// message, the relay's fallback path).
    push: bool,
}

impl Args {
    fn parse() -> anyhow::Result<Args> {
        let mut a = Args {
            urls: Vec::new(),
            tokens: String::new(),
            per_store: 10,
            relay_pids: Vec::new(),
            warmup: Duration::from_secs(6),
            measure: Duration::from_secs(60),
            period: Duration::from_secs(2),
            drain: Duration::from_secs(15),
            setup_limit: Duration::from_secs(120),
            connecting: 64,
            push: true,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
            let secs = |v: String| -> anyhow::Result<Duration> {
                Ok(Duration::from_secs_f64(v.parse().context("seconds")?))
            };
            match flag.as_str() {
                "--url" => {
                    a.urls = value()?
                        .split(',')
                        .map(str::trim)
                        .filter(|u| !u.is_empty())
                        .map(str::to_string)
                        .collect()
                }
                "--tokens" => a.tokens = value()?,
                "--per-store" => a.per_store = value()?.parse().context("--per-store")?,
                "--relay-pid" => {
                    a.relay_pids = value()?
                        .split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(|p| p.parse().context("--relay-pid"))
                        .collect::<anyhow::Result<_>>()?
                }
                "--warmup-s" => a.warmup = secs(value()?)?,
                "--measure-s" => a.measure = secs(value()?)?,
                "--drain-s" => a.drain = secs(value()?)?,
                "--setup-s" => a.setup_limit = secs(value()?)?,
                "--period-ms" => {
                    a.period = Duration::from_millis(value()?.parse().context("--period-ms")?)
                }
                "--connecting" => a.connecting = value()?.parse().context("--connecting")?,
                "--no-push" => a.push = false,
                other => bail!("unknown argument {other}"),
            }
        }
        if a.urls.is_empty() || a.tokens.is_empty() {
            bail!("usage: loadgen --url WS_URL[,WS_URL...] --tokens FILE [--per-store N] [--relay-pid PID[,PID...]] [--warmup-s S] [--measure-s S] [--drain-s S] [--setup-s S] [--period-ms MS] [--connecting N] [--no-push]");
        }
        if a.per_store < 2 || a.period.is_zero() || a.connecting == 0 {
            bail!("--per-store must be at least 2, --period-ms and --connecting above 0");
        }
        Ok(a)
    }
}

/// One device of the tokens file.
pub struct Login {
    name: DeviceName,
    token: String,
}

fn read_tokens(path: &str, per_store: usize) -> anyhow::Result<Vec<(StoreId, Vec<Login>)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    let mut stores: Vec<(StoreId, Vec<Login>)> = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [store, user, device, token] = f[..] else {
            bail!("{path}:{}: expected STORE USER DEVICE TOKEN", n + 1);
        };
        let store = StoreId::new(store).with_context(|| format!("{path}:{}", n + 1))?;
        let login = Login {
            name: DeviceName {
                user: UserId::new(user).with_context(|| format!("{path}:{}", n + 1))?,
                device: DeviceId::new(device).with_context(|| format!("{path}:{}", n + 1))?,
            },
            token: token.to_string(),
        };
        match stores.last_mut() {
            Some((s, logins)) if *s == store && logins.len() < per_store => logins.push(login),
            _ => stores.push((store, vec![login])),
        }
    }
    if stores.is_empty() || stores.iter().any(|(_, l)| l.len() != per_store) {
        bail!("{path}: every store needs exactly {per_store} devices, in consecutive lines");
    }
    Ok(stores)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let stores = read_tokens(&args.tokens, args.per_store)?;
    // Enough notes for every tick of the run, plus slack for a late start.
    let notes = ((args.warmup + args.measure).as_secs_f64() / args.period.as_secs_f64()).ceil()
        as usize
        + 2;
    let now = Millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    );
    let t0 = Instant::now();
    let mut plans = Vec::with_capacity(stores.len());
    let mut tokens = Vec::with_capacity(stores.len());
    for (i, (store, logins)) in stores.into_iter().enumerate() {
        let names = logins.iter().map(|l| l.name.clone()).collect();
        let plan = StorePlan::build(i, store, names, notes, now, args.period.as_millis() as i64)
            .map_err(anyhow::Error::msg)?;
        plans.push(plan);
        tokens.push(logins.into_iter().map(|l| l.token).collect::<Vec<_>>());
    }
    let prebuild = t0.elapsed();
    eprintln!(
        "loadgen: built {} stores x {} devices, {} notes each, in {:.1} s",
        plans.len(),
        args.per_store,
        notes,
        prebuild.as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let mut result = local.block_on(&rt, run::run(&args, plans, tokens));
    result["prebuild_s"] = prebuild.as_secs_f64().into();
    println!("{result}");
    Ok(())
}
