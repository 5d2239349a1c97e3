//! A private PostgreSQL cluster for a test: `initdb` in a temporary
//! directory, `pg_ctl start` on a free loopback port, stopped and removed
//! when dropped. PostgreSQL refuses to run as root, and CI runs as root: then
//! the cluster runs as the unprivileged user `nobody` (via `runuser`).
//! Debian's packages are installed by `scripts/install-postgres.sh`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running private cluster.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<&'static str>,
    /// The CPU the server's processes are pinned to (`taskset`), if any.
    cpu: Option<usize>,
}

/// The newest `/usr/lib/postgresql/N/bin` holding `initdb`.
fn bin_dir() -> Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): \
             run scripts/install-postgres.sh"
        ),
    }
}

fn is_root() -> bool {
    // `id -u` rather than libc: the tests crate has no libc dependency.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl PgCluster {
    /// Creates and starts a cluster with a superuser `aftercase` trusted on
    /// loopback.
    pub fn start() -> Result<PgCluster> {
        PgCluster::start_pinned(None)
    }

    /// [`PgCluster::start`] with the server and every process it forks
    /// pinned to CPU `cpu` (by `taskset`, whose affinity the processes
    /// inherit): for benchmarks that give the relay and its database one
    /// core and the load another.
    pub fn start_pinned(cpu: Option<usize>) -> Result<PgCluster> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("aftercase-pg").tempdir()?;
        let run_as = is_root().then_some("nobody");
        if let Some(user) = run_as {
            let ok = Command::new("chown")
                .args([user, &dir.path().display().to_string()])
                .status()?
                .success();
            if !ok {
                bail!("chown of {} to {user} failed", dir.path().display());
            }
        }
        let cluster = PgCluster {
            port: free_port()?,
            dir,
            bin,
            run_as,
            cpu,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "aftercase",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        cluster.pg_ctl_start()?;
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = match self.cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string()]);
                c
            }
            // `env` runs what follows unchanged: one prefix either way.
            None => Command::new("env"),
        };
        if let Some(user) = self.run_as {
            cmd.args(["runuser", "-u", user, "--"]);
        }
        cmd.arg(&exe);
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {}", exe.display()))?;
        if !out.status.success() {
            bail!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "start",
            ],
        )
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`: no
    /// checkpoint, recovery from the WAL at the next start) and starts it
    /// again.
    pub fn crash_and_restart(&self) -> Result<()> {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"])?;
        self.pg_ctl_start()
    }

    /// Creates database `name` and returns its URL.
    pub fn database(&self, name: &str) -> Result<String> {
        let out = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "aftercase", name])
            .output()?;
        if !out.status.success() {
            bail!("createdb {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(self.url(name))
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://aftercase@127.0.0.1:{}/{name}", self.port)
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
    }
}
