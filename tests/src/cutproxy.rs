//! A TCP proxy that cuts the link: for tests and benchmarks of sync over a
//! connection that breaks (the shop's Wi-Fi).
//!
//! [`CutProxy::start`] listens on 127.0.0.1 and forwards every accepted
//! connection to a target in both directions, counting the bytes it
//! actually wrote each way. A seeded [`CutPlan`] says after how many
//! forwarded bytes to cut: the proxy then stops forwarding mid-stream (so a
//! cut lands at any byte, mid-frame too) and closes both sockets at the TCP
//! level, without any WebSocket close. [`CutProxy::cut_now`] cuts on demand
//! and [`CutProxy::set_down`] / [`CutProxy::pause`] refuse connections for a
//! while.
//!
//! The proxy runs on its own thread with its own tokio runtime, so plain
//! `#[test]` functions and async code can both use it. Dropping it stops it.
//!
//! Cut positions are offsets in the proxy's stream of forwarded bytes (both
//! directions and all connections together, in the order the proxy read
//! them). With one connection at a time they are exact: `stats().cut_at`
//! equals `plan.offsets()`, and `up_bytes + down_bytes` is the position of
//! the stream. A connection cut by [`CutProxy::cut_now`] or failing in the
//! middle of a write leaves the rest of that chunk (at most 64 KiB) counted
//! in the position but not in the byte counts.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Bytes read from a peer at a time, and so the most a cut by
/// [`CutProxy::cut_now`] can leave counted but unsent.
const CHUNK: usize = 64 * 1024;

/// How long a cut connection may take to notice the close before the proxy
/// drops its sockets anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Where to cut: a replayable list of offsets in the forwarded byte stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CutPlan {
    offsets: Vec<u64>,
}

impl CutPlan {
    /// Never cut.
    pub fn none() -> CutPlan {
        CutPlan::default()
    }

    /// `cuts` cuts, the gaps between them drawn from `seed` uniformly in
    /// `1..2 * mean_bytes_between_cuts` (mean `mean_bytes_between_cuts`),
    /// so cuts land at arbitrary bytes. The same seed gives the same plan.
    pub fn random(seed: u64, cuts: usize, mean_bytes_between_cuts: u64) -> CutPlan {
        let mut rng = SmallRng::seed_from_u64(seed);
        let upper = mean_bytes_between_cuts.max(1).saturating_mul(2);
        let mut at = 0u64;
        let offsets = (0..cuts)
            .map(|_| {
                at += rng.random_range(1..upper);
                at
            })
            .collect();
        CutPlan { offsets }
    }

    /// Cuts after exactly these numbers of forwarded bytes (a saved plan
    /// replayed); zero, repeated and unordered offsets are dropped/sorted.
    pub fn at(mut offsets: Vec<u64>) -> CutPlan {
        offsets.retain(|&o| o > 0);
        offsets.sort_unstable();
        offsets.dedup();
        CutPlan { offsets }
    }

    /// The offsets, ascending: print them to replay a failing run.
    pub fn offsets(&self) -> &[u64] {
        &self.offsets
    }
}

/// What the proxy has done so far, from [`CutProxy::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Bytes written to the target, over all connections.
    pub up_bytes: u64,
    /// Bytes written back to clients, over all connections.
    pub down_bytes: u64,
    /// Connections forwarded to the target.
    pub connections: u64,
    /// Connections accepted and closed at once because the link was down.
    pub refused: u64,
    /// Connections cut: by the plan, by `cut_now`, or by going down.
    pub cuts: u64,
    /// Stream positions at which the plan's cuts happened.
    pub cut_at: Vec<u64>,
}

/// A running proxy; dropping it stops it.
pub struct CutProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

/// A connection's state, watched by its two pumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Open,
    /// The plan cut here: the other direction stops reading, but finishes
    /// writing what it already read, so the stream position stays exact.
    Planned,
    /// Stop now, even in the middle of a write.
    Now,
}

enum Link {
    Up,
    DownUntil(Instant),
    Down,
}

struct Plan {
    offsets: Vec<u64>,
    next: usize,
    position: u64,
    cut_at: Vec<u64>,
}

impl Plan {
    /// Lets up to `n` more bytes through; says how many, and whether the
    /// plan's next cut comes right after them.
    fn grant(&mut self, n: usize) -> (usize, bool) {
        let Some(&next) = self.offsets.get(self.next) else {
            self.position += n as u64;
            return (n, false);
        };
        // `position < next` always holds: reaching `next` moves past it.
        let room = next - self.position;
        if n as u64 >= room {
            self.position = next;
            self.next += 1;
            self.cut_at.push(next);
            (room as usize, true)
        } else {
            self.position += n as u64;
            (n, false)
        }
    }
}

struct Shared {
    target: SocketAddr,
    up: AtomicU64,
    down: AtomicU64,
    connections: AtomicU64,
    refused: AtomicU64,
    cuts: AtomicU64,
    plan: Mutex<Plan>,
    link: Mutex<Link>,
    live: Mutex<HashMap<u64, Arc<watch::Sender<Stop>>>>,
}

/// Counters stay meaningful if a task panicked holding a lock, so a
/// poisoned lock is used as is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn is_down(&self) -> bool {
        match *lock(&self.link) {
            Link::Up => false,
            Link::DownUntil(t) => Instant::now() < t,
            Link::Down => true,
        }
    }

    /// Stops every live connection now; returns how many were open.
    fn cut_all(&self) -> usize {
        let live = lock(&self.live);
        let mut n = 0;
        for stop in live.values() {
            // One already cut by the plan is counted already.
            if *stop.borrow() == Stop::Open {
                n += 1;
            }
            stop.send_replace(Stop::Now);
        }
        self.cuts.fetch_add(n as u64, Ordering::Relaxed);
        n
    }
}

impl CutProxy {
    /// Starts a proxy to `target` on 127.0.0.1 (a free port, see
    /// [`CutProxy::addr`]), cutting as `plan` says.
    pub fn start(target: SocketAddr, plan: CutPlan) -> io::Result<CutProxy> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = {
            let _in_rt = rt.enter();
            TcpListener::from_std(std_listener)?
        };
        let shared = Arc::new(Shared {
            target,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            plan: Mutex::new(Plan {
                offsets: plan.offsets,
                next: 0,
                position: 0,
                cut_at: Vec::new(),
            }),
            link: Mutex::new(Link::Up),
            live: Mutex::new(HashMap::new()),
        });
        let (stop, stopped) = watch::channel(false);
        let accepting = shared.clone();
        std::thread::Builder::new()
            .name("cutproxy".into())
            .spawn(move || rt.block_on(accept_loop(listener, accepting, stopped)))?;
        Ok(CutProxy { addr, shared, stop })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        ProxyStats {
            up_bytes: s.up.load(Ordering::Relaxed),
            down_bytes: s.down.load(Ordering::Relaxed),
            connections: s.connections.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            cuts: s.cuts.load(Ordering::Relaxed),
            cut_at: lock(&s.plan).cut_at.clone(),
        }
    }

    /// Cuts every live connection; returns how many. New connections are
    /// forwarded as usual.
    pub fn cut_now(&self) -> usize {
        self.shared.cut_all()
    }

    /// Takes the link down (cutting live connections; new ones are accepted
    /// and closed at once) or brings it back up.
    pub fn set_down(&self, down: bool) {
        *lock(&self.shared.link) = if down { Link::Down } else { Link::Up };
        if down {
            self.shared.cut_all();
        }
    }

    /// Takes the link down for `outage`, then it comes back by itself.
    pub fn pause(&self, outage: Duration) {
        *lock(&self.shared.link) = Link::DownUntil(Instant::now() + outage);
        self.shared.cut_all();
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        // The accept loop returns, its runtime is dropped on the proxy's
        // thread, and that drops every connection.
        self.stop.send_replace(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ids = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        // A failed accept (out of descriptors, say) only loses that client.
        let Ok((client, _)) = accepted else { continue };
        if shared.is_down() {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        ids += 1;
        tokio::spawn(serve(client, ids, shared.clone()));
    }
}

/// Forwards one connection until both directions end or it is cut.
async fn serve(client: TcpStream, id: u64, shared: Arc<Shared>) {
    // No target: the client sees its connection closed, as if refused.
    let Ok(target) = TcpStream::connect(shared.target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = target.set_nodelay(true);
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let stop = Arc::new(watch::channel(Stop::Open).0);
    lock(&shared.live).insert(id, stop.clone());
    let (mut client_r, mut client_w) = client.into_split();
    let (mut target_r, mut target_w) = target.into_split();
    tokio::join!(
        pump(&mut client_r, &mut target_w, &shared.up, &shared, &stop),
        pump(&mut target_r, &mut client_w, &shared.down, &shared, &stop),
    );
    lock(&shared.live).remove(&id);
    // Close with a FIN after the data, and read until each peer closes too:
    // closing a socket with unread data would send a reset, which can
    // destroy bytes already forwarded but not yet read by the peer.
    let _ = client_w.shutdown().await;
    let _ = target_w.shutdown().await;
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        tokio::join!(drain(&mut client_r), drain(&mut target_r))
    })
    .await;
}

/// Copies `from` to `to`, counting written bytes in `counter`, until end of
/// stream, an error, or a stop.
async fn pump(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    counter: &AtomicU64,
    shared: &Shared,
    stop: &watch::Sender<Stop>,
) {
    let mut state = stop.subscribe();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let read = tokio::select! {
            biased;
            _ = state.wait_for(|s| *s != Stop::Open) => return,
            r = from.read(&mut buf) => r,
        };
        let n = match read {
            Ok(0) => {
                // Pass the half-close on; the other direction goes on.
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
            Err(_) => {
                stop.send_replace(Stop::Now);
                return;
            }
        };
        let (take, cut) = {
            let mut plan = lock(&shared.plan);
            // Checked under the plan's lock, so once the other direction
            // took the cut, this one forwards nothing more.
            if *stop.borrow() != Stop::Open {
                return;
            }
            let granted = plan.grant(n);
            if granted.1 {
                stop.send_replace(Stop::Planned);
                shared.cuts.fetch_add(1, Ordering::Relaxed);
            }
            granted
        };
        let mut done = 0;
        while done < take {
            let written = tokio::select! {
                biased;
                _ = state.wait_for(|s| *s == Stop::Now) => return,
                w = to.write(&buf[done..take]) => w,
            };
            match written {
                Ok(w) if w > 0 => {
                    done += w;
                    counter.fetch_add(w as u64, Ordering::Relaxed);
                }
                _ => {
                    stop.send_replace(Stop::Now);
                    return;
                }
            }
        }
        if cut {
            return;
        }
    }
}

/// Reads and discards until the peer closes.
async fn drain(from: &mut OwnedReadHalf) {
    let mut buf = vec![0u8; CHUNK];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}
