//! The real `aftercase-relay` binary as a child process, for the scenarios
//! that measure it over loopback, and a WebSocket connection to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

pub use aftercase_tests::ws_client::{connect, Socket};

/// The relay as a child process; killed when dropped.
pub struct RelayProcess {
    child: Child,
    /// Kept open so the relay never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// The temporary data directory, when the relay was given one.
    _dir: Option<tempfile::TempDir>,
    /// Its data directory and signing secret, for [`RelayProcess::token`].
    data_dir: PathBuf,
    secret: Option<String>,
    exe: PathBuf,
}

impl RelayProcess {
    /// Starts the relay on a temporary data directory with `secret` as its
    /// token-signing key.
    pub fn start(secret: &str) -> RelayProcess {
        RelayProcess::start_with(secret, &[])
    }

    /// [`RelayProcess::start`] with `extra` arguments to `serve`.
    pub fn start_with(secret: &str, extra: &[&str]) -> RelayProcess {
        let dir = tempfile::tempdir().expect("temporary relay data directory");
        let mut relay = RelayProcess::start_in(dir.path(), Some(secret), extra);
        relay._dir = Some(dir);
        relay
    }

    /// Starts the relay on `data_dir` with `extra` arguments to `serve`;
    /// without a `secret`, the relay uses (or creates) the one in the data
    /// directory, which `aftercase-relay token` then reads.
    pub fn start_in(data_dir: &Path, secret: Option<&str>, extra: &[&str]) -> RelayProcess {
        RelayProcess::start_in_on(data_dir, secret, extra, None)
    }

    /// [`RelayProcess::start_with`] with the relay and all its threads
    /// pinned to CPU `cpu` by `taskset` (see [`taskset_works`]), with
    /// `extra` arguments to `serve`.
    pub fn start_pinned(secret: &str, cpu: Option<usize>, extra: &[&str]) -> RelayProcess {
        let dir = tempfile::tempdir().expect("temporary relay data directory");
        let mut relay = RelayProcess::start_in_on(dir.path(), Some(secret), extra, cpu);
        relay._dir = Some(dir);
        relay
    }

    fn start_in_on(
        data_dir: &Path,
        secret: Option<&str>,
        extra: &[&str],
        cpu: Option<usize>,
    ) -> RelayProcess {
        let exe = relay_binary();
        // taskset execs the relay: the child's pid is the relay's.
        let mut cmd = match cpu {
            Some(c) => {
                let mut t = Command::new("taskset");
                t.args(["-c", &c.to_string()]).arg(&exe);
                t
            }
            None => Command::new(&exe),
        };
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("AFTERCASE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        match secret {
            Some(s) => cmd.env("AFTERCASE_JWT_SECRET", s),
            None => cmd.env_remove("AFTERCASE_JWT_SECRET"),
        };
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", exe.display()));
        let mut stdout = BufReader::new(child.stdout.take().expect("relay stdout is piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the relay banner");
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| panic!("unexpected relay banner {line:?}"))
            .to_string();
        RelayProcess {
            child,
            _stdout: stdout,
            url,
            _dir: None,
            data_dir: data_dir.to_path_buf(),
            secret: secret.map(str::to_string),
            exe,
        }
    }

    /// The sync endpoint, `ws://.../v1/sync`.
    pub fn ws_url(&self) -> String {
        format!("{}/v1/sync", self.url.replacen("http://", "ws://", 1))
    }

    /// A device token signed by the relay's own `token` command.
    pub fn token(&self, user: &str, role: &str, store: &str, device: &str) -> String {
        let mut cmd = Command::new(&self.exe);
        cmd.args(["token", "--data-dir"])
            .arg(&self.data_dir)
            .args([
                "--user", user, "--role", role, "--store", store, "--device", device,
            ])
            .stderr(Stdio::null());
        match &self.secret {
            Some(s) => cmd.env("AFTERCASE_JWT_SECRET", s),
            None => cmd.env_remove("AFTERCASE_JWT_SECRET"),
        };
        let out = cmd.output().expect("run aftercase-relay token");
        assert!(out.status.success(), "aftercase-relay token failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("a token line")
            .trim()
            .to_string()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (VmRSS, VmHWM) in KiB.
    pub fn memory(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// User plus system CPU time so far.
    pub fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // The command name (field 2) may hold spaces; fields after its
        // closing parenthesis are plain. utime and stime are fields 14, 15.
        let ticks: u64 = stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
        Duration::from_millis(ticks * 10)
    }
}

/// Whether `taskset` is installed and the machine has at least `cpus`
/// CPUs to pin processes to.
pub fn taskset_works(cpus: usize) -> bool {
    let enough = std::thread::available_parallelism().map_or(0, |n| n.get()) >= cpus;
    enough
        && Command::new("taskset")
            .args(["-c", "0", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The relay binary next to this one. Under `cargo run` it is built first
/// (a no-op when up to date), as the end-to-end tests do: `cargo run --bin
/// bench` builds only this package's binaries.
fn relay_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the bench binary");
    let dir = exe.parent().expect("bench binary directory").to_path_buf();
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if let (Ok(cargo), Some(target)) = (std::env::var("CARGO"), dir.parent()) {
        if profile == "release" || profile == "debug" {
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "aftercase-server", "--bins"])
                .arg("--target-dir")
                .arg(target);
            if profile == "release" {
                cmd.arg("--release");
            }
            let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
            assert!(ok, "building aftercase-relay failed");
        }
    }
    let relay = dir.join("aftercase-relay");
    assert!(
        relay.exists(),
        "{} not found: build it with `cargo build -p aftercase-server --bins`",
        relay.display()
    );
    relay
}
