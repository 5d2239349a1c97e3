//! The link-cutting proxy against a small echo server: byte counts are the
//! bytes forwarded, planned cuts happen where and as often as planned, the
//! same seed cuts at the same points, data forwarded before a cut arrives
//! intact, and the on-demand cut and the down link work.

use aftercase_tests::cutproxy::{CutPlan, CutProxy, ProxyStats};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

/// The byte at position `i` of every stream the tests send.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

fn message(len: usize) -> Vec<u8> {
    (0..len).map(pattern).collect()
}

/// What the echo server saw on one connection once it ended.
struct Echoed {
    bytes: u64,
    /// Every byte was the pattern's byte at its position.
    intact: bool,
}

/// An echo server on loopback; each connection reports what it received.
fn echo_server() -> (SocketAddr, mpsc::Receiver<Echoed>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut seen = Echoed {
                    bytes: 0,
                    intact: true,
                };
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let at = seen.bytes as usize;
                    seen.intact &= buf[..n]
                        .iter()
                        .enumerate()
                        .all(|(i, b)| *b == pattern(at + i));
                    seen.bytes += n as u64;
                    if conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = tx.send(seen);
            });
        }
    });
    (addr, rx)
}

/// Sends `msg` over one connection (then half-closes) and returns what came
/// back before the proxy closed it.
fn send_and_collect(proxy: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut conn = TcpStream::connect(proxy).expect("connect");
    let mut writer = conn.try_clone().expect("clone");
    let msg = msg.to_vec();
    // Writing after a cut may fail; what matters is what came back.
    let sending = std::thread::spawn(move || {
        let _ = writer.write_all(&msg);
        let _ = writer.shutdown(Shutdown::Write);
    });
    let mut back = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        back.extend_from_slice(&buf[..n]);
    }
    sending.join().expect("sender");
    back
}

fn ping(proxy: SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(proxy).expect("connect");
    conn.write_all(b"ping").expect("write");
    let mut back = [0u8; 4];
    conn.read_exact(&mut back).expect("echo");
    assert_eq!(&back, b"ping");
    conn
}

/// Whether the proxy closed `conn` (end of stream or reset) with nothing
/// more coming; false if data came or nothing happened for a minute (a
/// guard against hanging, not a timing assertion).
fn closed_by_proxy(conn: &mut TcpStream) -> bool {
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    match conn.read(&mut [0u8; 64]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
        ),
    }
}

/// Connects and says "ping"; true if the proxy closed the connection
/// instead of forwarding it.
fn refused(proxy: SocketAddr) -> bool {
    let mut conn = TcpStream::connect(proxy).expect("tcp connect");
    // The proxy may have closed it already, so writing may fail.
    let _ = conn.write_all(b"ping");
    closed_by_proxy(&mut conn)
}

/// Waits for the echo server to report `n` ended connections.
fn echoed(rx: &mpsc::Receiver<Echoed>, n: usize) -> Vec<Echoed> {
    (0..n)
        .map(|_| {
            // A guard against hanging, not a timing assertion.
            rx.recv_timeout(Duration::from_secs(60))
                .expect("the echo server's connection ended")
        })
        .collect()
}

const MSG: usize = 256 * 1024;

/// Resends a message through a proxy with `plan` until one connection
/// carries it whole. Returns the stats, what each cut connection brought
/// back, and what the echo server saw.
fn deliver_through_cuts(plan: &CutPlan) -> (ProxyStats, Vec<Vec<u8>>, Vec<Echoed>) {
    let (echo, rx) = echo_server();
    let proxy = CutProxy::start(echo, plan.clone()).expect("proxy");
    let msg = message(MSG);
    let mut partial = Vec::new();
    loop {
        let back = send_and_collect(proxy.addr(), &msg);
        if back == msg {
            break;
        }
        partial.push(back);
        assert!(partial.len() <= 50, "never delivered; plan {plan:?}");
    }
    let echoed = echoed(&rx, partial.len() + 1);
    (proxy.stats(), partial, echoed)
}

#[test]
fn bytes_counted_are_the_bytes_sent_each_way() {
    let (echo, rx) = echo_server();
    let proxy = CutProxy::start(echo, CutPlan::none()).expect("proxy");
    let msg = message(1024 * 1024 + 17);
    assert_eq!(send_and_collect(proxy.addr(), &msg), msg);
    let seen = echoed(&rx, 1);
    assert_eq!(seen[0].bytes, msg.len() as u64);
    assert!(seen[0].intact);
    let stats = proxy.stats();
    assert_eq!(stats.up_bytes, msg.len() as u64);
    assert_eq!(stats.down_bytes, msg.len() as u64);
    assert_eq!((stats.connections, stats.cuts, stats.refused), (1, 0, 0));
}

#[test]
fn planned_cuts_land_where_planned_and_what_was_forwarded_arrives_intact() {
    // Gaps under MSG / 2, while a connection carries 2 * MSG (there and
    // back): every connection is cut once until the plan is used up.
    let plan = CutPlan::random(42, 5, MSG as u64 / 4);
    let (stats, partial, echoed) = deliver_through_cuts(&plan);
    assert_eq!(stats.cuts, 5, "{stats:?}");
    assert_eq!(stats.cut_at, plan.offsets());
    assert_eq!(stats.connections, 6);
    assert_eq!(partial.len(), 5);
    let msg = message(MSG);
    for back in &partial {
        assert!(back.len() < MSG);
        assert_eq!(back[..], msg[..back.len()], "echo came back damaged");
    }
    assert!(echoed.iter().all(|e| e.intact), "target got damaged data");
    // Counted bytes are the bytes that arrived, each way.
    let received_by_clients: usize = partial.iter().map(Vec::len).sum::<usize>() + MSG;
    assert_eq!(stats.down_bytes, received_by_clients as u64);
    let received_by_target: u64 = echoed.iter().map(|e| e.bytes).sum();
    assert_eq!(stats.up_bytes, received_by_target);
    // Every byte read up to the last cut was forwarded, then one whole
    // round trip.
    let last_cut = *plan.offsets().last().expect("five cuts");
    assert_eq!(stats.up_bytes + stats.down_bytes, last_cut + 2 * MSG as u64);
}

#[test]
fn the_same_seed_cuts_at_the_same_points() {
    let plan = CutPlan::random(7, 10, 1000);
    assert_eq!(plan, CutPlan::random(7, 10, 1000));
    assert_ne!(plan, CutPlan::random(8, 10, 1000));
    let offsets = plan.offsets();
    assert_eq!(offsets.len(), 10);
    let mut last = 0;
    for &o in offsets {
        assert!(o > last && o - last < 2000, "gap out of range: {offsets:?}");
        last = o;
    }
    // Two runs with one seed cut at the same stream positions.
    let plan = CutPlan::random(99, 3, MSG as u64 / 4);
    let first = deliver_through_cuts(&plan).0.cut_at;
    let second = deliver_through_cuts(&CutPlan::random(99, 3, MSG as u64 / 4))
        .0
        .cut_at;
    assert_eq!(first, second);
    assert_eq!(first, plan.offsets());
    // A saved plan replays as given.
    assert_eq!(CutPlan::at(first.clone()).offsets(), plan.offsets());
}

#[test]
fn cut_now_closes_live_connections_and_new_ones_still_go_through() {
    let (echo, _rx) = echo_server();
    let proxy = CutProxy::start(echo, CutPlan::none()).expect("proxy");
    let mut a = ping(proxy.addr());
    let mut b = ping(proxy.addr());
    assert_eq!(proxy.cut_now(), 2);
    assert!(closed_by_proxy(&mut a));
    assert!(closed_by_proxy(&mut b));
    ping(proxy.addr());
    let stats = proxy.stats();
    assert_eq!((stats.connections, stats.cuts), (3, 2));
    assert!(stats.cut_at.is_empty(), "no planned cut happened");
}

#[test]
fn a_down_link_refuses_connections_until_it_comes_back() {
    let (echo, _rx) = echo_server();
    let proxy = CutProxy::start(echo, CutPlan::none()).expect("proxy");
    let mut live = ping(proxy.addr());
    proxy.set_down(true);
    assert!(closed_by_proxy(&mut live), "going down cuts the link");
    assert!(refused(proxy.addr()));
    proxy.set_down(false);
    let mut again = ping(proxy.addr());
    // A pause cuts and refuses too, and one that is over lets connections
    // through.
    proxy.pause(Duration::from_secs(3600));
    assert!(closed_by_proxy(&mut again));
    assert!(refused(proxy.addr()));
    proxy.pause(Duration::ZERO);
    ping(proxy.addr());
    let stats = proxy.stats();
    assert_eq!((stats.connections, stats.refused, stats.cuts), (3, 2, 2));
}
