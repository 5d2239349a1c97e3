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
                "aftercase-cli",
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
        Relay::start_with(data_dir, addr, &[], "warn", None)
    }

    /// Starts a relay on `addr` with extra `serve` flags, the log filter
    /// `log`, and its stderr written to `log_file` (inherited when `None`).
    pub fn start_with(
        data_dir: &Path,
        addr: &str,
        extra: &[&str],
        log: &str,
        log_file: Option<&Path>,
    ) -> Relay {
        let stderr = match log_file {
            Some(p) => Stdio::from(std::fs::File::create(p).expect("relay log file")),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(bin_dir().join("aftercase-relay"))
            .args(["serve", "--listen", addr, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("AFTERCASE_LOG", log)
            .env_remove("AFTERCASE_JWT_SECRET")
            .stdout(Stdio::piped())
            .stderr(stderr)
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
        self.kill_now();
    }

    /// SIGKILL, keeping the handle (to replace it by a restarted relay).
    pub fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The relay's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `aftercase-relay revoke --data-dir DIR args...`; asserts success and
    /// returns stdout.
    pub fn revoke(&self, args: &[&str]) -> String {
        let out = Command::new(bin_dir().join("aftercase-relay"))
            .args(["revoke", "--data-dir"])
            .arg(&self.data_dir)
            .args(args)
            .output()
            .expect("run revoke");
        assert!(
            out.status.success(),
            "revoke failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    }

    /// A signed token and its id (`jti`, from the `token` command's stderr).
    pub fn token_with_id(
        &self,
        user: &str,
        role: &str,
        store: &str,
        device: &str,
    ) -> (String, String) {
        let out = Command::new(bin_dir().join("aftercase-relay"))
            .args(["token", "--data-dir"])
            .arg(&self.data_dir)
            .args([
                "--user", user, "--role", role, "--store", store, "--device", device,
            ])
            .output()
            .expect("run token");
        assert!(out.status.success());
        let token = String::from_utf8(out.stdout)
            .expect("utf8")
            .lines()
            .last()
            .expect("token line")
            .to_string();
        let stderr = String::from_utf8(out.stderr).expect("utf8");
        let id = stderr
            .split_whitespace()
            .nth(1)
            .expect("token id on stderr")
            .to_string();
        (token, id)
    }

    /// Waits up to `within` for the process to exit on its own; its exit
    /// status, or `None` if it is still running (a liveness bound, not a
    /// timing assertion).
    pub fn wait_exit(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
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

    /// Runs `aftercase --data-dir DIR args...`, in English: the tests
    /// match English words (`tests/tests/cli_language.rs` checks the
    /// Chinese default).
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(bin_dir().join("aftercase"))
            .env("AFTERCASE_LANG", "en")
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run aftercase")
    }

    /// Runs `aftercase --data-dir DIR args...` as a person would, with no
    /// language chosen.
    #[allow(dead_code)]
    pub fn run_default(&self, args: &[&str]) -> Output {
        Command::new(bin_dir().join("aftercase"))
            .env_remove("AFTERCASE_LANG")
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

    /// `case new` and the new case's id (from its `--json` answer).
    pub fn new_case(&self, kind: &str) -> String {
        let out = self.ok(&[
            "--json",
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
        let v: serde_json::Value = serde_json::from_str(&out).expect("case new --json");
        v["case"].as_str().expect("case id").to_string()
    }

    /// `case show ID --json`: the case as the relay's API gives it (the
    /// command line's `schema_version` checked and taken off).
    pub fn show(&self, id: &str) -> serde_json::Value {
        let mut v: serde_json::Value =
            serde_json::from_str(&self.ok(&["case", "show", id, "--json"])).expect("json");
        let version = v.as_object_mut().and_then(|m| m.remove("schema_version"));
        assert_eq!(version, Some(1.into()), "case show --json: {v}");
        v
    }
}

/// Head office (a device of its own under `dir`) publishes the next
/// policy version listing `techs` (user, store) as bookable Monday to
/// Saturday 09:00-18:00.
pub fn publish_technicians(relay: &Relay, dir: &Path, techs: &[(&str, &str)]) {
    let hq = Cli::init(
        dir,
        &relay.url,
        &relay.token("hq", "head_office", "HQ", "hq-1"),
    );
    hq.ok(&["sync"]);
    let mut policy: serde_json::Value =
        serde_json::from_str(&hq.ok(&["policy", "show"])).expect("policy json");
    let version = policy["version"].as_u64().expect("version") + 1;
    policy["version"] = version.into();
    policy["technicians"] = techs
        .iter()
        .map(|(user, store)| {
            serde_json::json!({"user": user, "store": store, "start": "09:00", "end": "18:00"})
        })
        .collect();
    let file = dir.join("technicians.json");
    std::fs::write(&file, policy.to_string()).expect("write policy");
    hq.ok(&["policy", "publish", file.to_str().expect("utf8 path")]);
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
            .env("AFTERCASE_LANG", "en")
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

    /// Like [`Watched::wait_for`], but `None` when the process ends
    /// without printing it.
    #[allow(dead_code)]
    pub fn try_wait_for(&mut self, needle: &str) -> Option<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
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

impl Cli {
    /// Runs `aftercase --data-dir DIR args...` with extra environment.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(bin_dir().join("aftercase"));
        cmd.env("AFTERCASE_LANG", "en")
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run aftercase")
    }
}

/// A raw WebSocket to a relay.
pub type RawSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a raw sync WebSocket with `token`; the error keeps the relay's
/// HTTP answer when the upgrade is refused.
pub async fn try_raw_socket(
    relay_url: &str,
    token: &str,
) -> Result<RawSocket, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = relay_url.replace("http://", "ws://") + "/v1/sync";
    let mut req = url.into_client_request()?;
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_frame_size(Some(64 << 20))
        .max_message_size(Some(64 << 20));
    tokio_tungstenite::connect_async_with_config(req, Some(cfg), true)
        .await
        .map(|(ws, _)| ws)
}

/// The status and body of a refused upgrade.
pub fn refusal(e: &tokio_tungstenite::tungstenite::Error) -> (u16, String) {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(resp) => (
            resp.status().as_u16(),
            resp.body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default(),
        ),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

/// A current-thread tokio runtime for raw socket work in a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Every file under `dir`, at any depth (none if it is missing).
#[allow(dead_code)]
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
