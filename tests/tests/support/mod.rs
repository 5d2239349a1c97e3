//! Helpers for end-to-end tests: the real `aftercase-relay` and `aftercase`
//! binaries, started as processes on loopback.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

/// Directory holding the built binaries, building them once per test run.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // The binaries belong to other packages of the workspace, so cargo
        // does not build them for this test target: build them here (a
        // no-op when they are up to date).
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "aftercase-server",
                "-p",
                "aftercase-client",
                "--bins",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the binaries failed");
        let exe = std::env::current_exe().expect("test exe path");
        // target/<profile>/deps/<test> -> target/<profile>
        exe.parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_path_buf()
    })
}

/// A running relay process.
pub struct Relay {
    child: Child,
    /// Base URL, e.g. http://127.0.0.1:40123
    pub url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
}

impl Relay {
    /// Starts a relay on a free loopback port.
    pub fn start(data_dir: &Path) -> Relay {
        Relay::start_on(data_dir, "127.0.0.1:0")
    }

    /// Starts a relay listening on `addr`.
    pub fn start_on(data_dir: &Path, addr: &str) -> Relay {
        let mut child = Command::new(bin_dir().join("aftercase-relay"))
            .args(["serve", "--listen", addr, "--data-dir"])
            .arg(data_dir)
            .env("AFTERCASE_LOG", "warn")
            .env_remove("AFTERCASE_JWT_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start relay");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read relay banner");
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| panic!("unexpected relay banner {line:?}"))
            .to_string();
        Relay {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A signed token for a device.
    pub fn token(&self, user: &str, role: &str, store: &str, device: &str) -> String {
        let out = Command::new(bin_dir().join("aftercase-relay"))
            .args(["token", "--data-dir"])
            .arg(&self.data_dir)
            .args([
                "--user", user, "--role", role, "--store", store, "--device", device,
            ])
            .output()
            .expect("run token");
        assert!(
            out.status.success(),
            "token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf8")
            .lines()
            .last()
            .expect("token line")
            .to_string()
    }

    /// GET with a bearer token; returns status and body.
    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
        let client = reqwest::blocking::Client::new();
        let mut req = client.get(format!("{}{}", self.url, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().expect("http request");
        let status = resp.status().as_u16();
        (status, resp.bytes().expect("body").to_vec())
    }

    /// GET returning JSON.
    pub fn get_json(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        let (s, b) = self.get(path, Some(token));
        (
            s,
            serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One device's command line, bound to a data directory.
pub struct Cli {
    /// The device's data directory.
    pub dir: PathBuf,
}

impl Cli {
    /// A device set up against `relay` with `token`.
    pub fn init(dir: &Path, relay_url: &str, token: &str) -> Cli {
        let cli = Cli {
            dir: dir.to_path_buf(),
        };
        cli.ok(&["init", "--relay", relay_url, "--token", token]);
        cli
    }

    /// Runs `aftercase --data-dir DIR args...`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(bin_dir().join("aftercase"))
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run aftercase")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "aftercase {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    }

    /// Runs, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "aftercase {args:?} unexpectedly succeeded"
        );
        String::from_utf8(out.stderr).expect("utf8")
    }

    /// `case new` and the printed id.
    pub fn new_case(&self, kind: &str) -> String {
        let out = self.ok(&[
            "case",
            "new",
            kind,
            "--customer-name",
            "Han Meimei",
            "--customer-phone",
            "13912345678",
            "--sku",
            "WM-8KG",
            "--description",
            "drum does not turn",
        ]);
        out.lines().last().expect("id line").trim().to_string()
    }

    /// `case show ID --json`.
    pub fn show(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["case", "show", id, "--json"])).expect("json")
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A background process whose stderr lines are collected as they come.
pub struct Watched {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line seen so far.
    pub seen: Vec<String>,
}

impl Watched {
    /// Starts `aftercase --data-dir DIR args...` in the background.
    pub fn spawn(cli: &Cli, args: &[&str]) -> Watched {
        let mut child = Command::new(bin_dir().join("aftercase"))
            .arg("--data-dir")
            .arg(&cli.dir)
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn aftercase");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watched {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle` (a liveness bound, not a
    /// performance assertion: it only keeps a broken build from hanging).
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("never saw {needle:?}; output so far: {:#?}", self.seen),
            }
        }
    }

    /// SIGKILL.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
