//! The machine's own limits, for judging transfer figures: how fast this
//! disk takes sequential writes made durable, and how fast loopback TCP
//! carries bytes, directly and through [`CutProxy`] (the proxy's own cost).
//! Figures are in MB/s (10^6 bytes per second).

use crate::Row;
use aftercase_tests::cutproxy::{CutPlan, CutProxy};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: usize = 1024 * 1024;

/// Sequential throughput of one file, in MB/s.
pub struct DiskRate {
    /// Writing in 1 MiB writes, then one `fsync`, timed to the fsync's end.
    pub write: f64,
    /// Reading the file back right after: mostly the page cache, so an
    /// upper bound, not the disk.
    pub read_back: f64,
}

fn mb_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

/// Writes `mib` MiB to a file in `dir` in 1 MiB writes with an fsync at
/// the end, reads it back, deletes it.
pub fn disk_write_mb_s(dir: &Path, mib: usize) -> io::Result<DiskRate> {
    let path = dir.join("baseline-disk.bin");
    // Not all zeros, in case the filesystem compresses.
    let block: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    let t0 = Instant::now();
    let mut file = std::fs::File::create(&path)?;
    for _ in 0..mib {
        file.write_all(&block)?;
    }
    file.sync_all()?;
    let write = mb_s(mib * MIB, t0.elapsed().as_secs_f64());
    drop(file);
    let t0 = Instant::now();
    let mut file = std::fs::File::open(&path)?;
    let mut buf = vec![0u8; MIB];
    let mut read = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        read += n;
    }
    let read_back = mb_s(read, t0.elapsed().as_secs_f64());
    std::fs::remove_file(&path)?;
    if read != mib * MIB {
        return Err(io::Error::other(format!("read back {read} bytes")));
    }
    Ok(DiskRate { write, read_back })
}

/// Sends `mib` MiB to `addr` in 64 KiB writes while a task accepts and
/// reads them on `listener`; MB/s from connect to the reader's end.
async fn transfer(listener: TcpListener, addr: SocketAddr, mib: usize) -> io::Result<f64> {
    let reader = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0usize;
        loop {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, io::Error>(got);
            }
            got += n;
        }
    });
    let t0 = Instant::now();
    let mut conn = TcpStream::connect(addr).await?;
    conn.set_nodelay(true)?;
    let chunk = vec![7u8; 64 * 1024];
    for _ in 0..mib * MIB / chunk.len() {
        conn.write_all(&chunk).await?;
    }
    conn.shutdown().await?;
    let got = reader.await.map_err(io::Error::other)??;
    let secs = t0.elapsed().as_secs_f64();
    if got != mib * MIB {
        return Err(io::Error::other(format!("received {got} bytes")));
    }
    Ok(mb_s(got, secs))
}

/// Two tasks, as a device and the relay would be: a two-thread runtime.
fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// A plain TCP transfer of `mib` MiB over 127.0.0.1 between two tokio
/// tasks, in MB/s.
pub fn loopback_mb_s(mib: usize) -> io::Result<f64> {
    runtime()?.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        transfer(listener, addr, mib).await
    })
}

/// [`loopback_mb_s`] through a [`CutProxy`] that never cuts; also checks
/// the proxy counted every byte.
pub fn loopback_via_proxy_mb_s(mib: usize) -> io::Result<f64> {
    runtime()?.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let proxy = CutProxy::start(listener.local_addr()?, CutPlan::none())?;
        let rate = transfer(listener, proxy.addr(), mib).await?;
        let up = proxy.stats().up_bytes;
        if up != (mib * MIB) as u64 {
            return Err(io::Error::other(format!("proxy counted {up} bytes")));
        }
        Ok(rate)
    })
}

/// The `baseline` group's rows.
pub fn rows(tmp: &Path, quick: bool) -> Vec<Row> {
    // 1 GiB on the disk: the photo test writes 600 MB to each replica, and
    // this VM's disk absorbs smaller files in a cache below the fsync.
    let (disk_mib, net_mib) = if quick { (32, 64) } else { (1024, 512) };
    eprintln!("baselines: disk {disk_mib} MiB, loopback {net_mib} MiB...");
    let disk = disk_write_mb_s(tmp, disk_mib).expect("disk baseline");
    let direct = loopback_mb_s(net_mib).expect("loopback baseline");
    let proxied = loopback_via_proxy_mb_s(net_mib).expect("proxy baseline");
    vec![
        Row {
            scenario: format!(
                "Disk: {disk_mib} MiB in 1 MiB writes, one fsync ({})",
                tmp.display()
            ),
            ours: format!(
                "{:.0} MB/s write, {:.0} MB/s read back (page cache)",
                disk.write, disk.read_back
            ),
            baseline: "-".into(),
            ratio: "-".into(),
        },
        Row {
            scenario: format!("Loopback TCP, {net_mib} MiB between two tokio tasks"),
            ours: format!("{direct:.0} MB/s"),
            baseline: "-".into(),
            ratio: "-".into(),
        },
        Row {
            scenario: format!("Loopback TCP, {net_mib} MiB through CutProxy (no cuts)"),
            ours: format!("{proxied:.0} MB/s"),
            baseline: format!("{direct:.0} MB/s direct"),
            ratio: format!("{:.2}x of direct", proxied / direct),
        },
    ]
}
