//! Just enough of the W3C WebDriver protocol to drive a headless Chromium
//! through `chromedriver`, over plain HTTP with the blocking `reqwest`
//! client the tests already use (no WebDriver crate).
//!
//! Pages change under the test (views are redrawn as answers arrive), so
//! the helpers poll: [`Browser::wait_for`] retries a query until a
//! predicate holds or 20 seconds pass. The bound only keeps a broken page
//! from hanging the test; nothing asserts how long anything took.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's packages put the browser and its driver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// See [`CHROMEDRIVER`].
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long a wait polls before it fails.
const WAIT: Duration = Duration::from_secs(20);
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process with one browser session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

/// An element reference, valid until its page part is redrawn.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium
    /// with a fresh profile. Fails, naming the install script, when the
    /// browser is not installed.
    pub fn start() -> Browser {
        for bin in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the dashboard test needs Chromium and its driver; \
                 run scripts/install-browser.sh (Debian: apt-get install chromium chromium-driver)"
            );
        }
        let port = crate::support::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        browser.wait_ready();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--window-size=1400,1100",
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                }
            }
        });
        let v = browser.call("POST", "/session", Some(caps));
        browser.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {v}"))
            .to_string();
        browser
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = self
                .http
                .get(format!("{}/status", self.base))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One WebDriver command; its `value`, or an error with the driver's
    /// message.
    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{}", self.base, path);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let resp = req.send().map_err(|e| e.to_string())?;
        let ok = resp.status().is_success();
        let v: Value = resp.json().map_err(|e| e.to_string())?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(format!(
                "{}: {}",
                v["value"]["error"],
                v["value"]["message"].as_str().unwrap_or_default()
            ))
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"))
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Loads `url`.
    pub fn goto(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({ "url": url })),
        );
    }

    /// The address bar.
    pub fn url(&self) -> String {
        self.call("GET", &self.session_path("/url"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Every element matching `css` now (no waiting).
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        self.try_call(
            "POST",
            &self.session_path("/elements"),
            Some(json!({ "using": "css selector", "value": css })),
        )
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_string())))
        .collect()
    }

    /// The visible text of `e` ("" once it is gone).
    pub fn text(&self, e: &Element) -> String {
        self.try_call(
            "GET",
            &self.session_path(&format!("/element/{}/text", e.0)),
            None,
        )
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
    }

    /// The visible texts of everything matching `css` now.
    pub fn texts(&self, css: &str) -> Vec<String> {
        self.find_all(css).iter().map(|e| self.text(e)).collect()
    }

    /// Polls until the texts of the elements matching `css` satisfy
    /// `ok` (given at least one element), and returns them; fails after
    /// 20 seconds with what was last seen.
    pub fn wait_for(&self, css: &str, what: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut last = Vec::new();
        loop {
            let found = self.texts(css);
            if !found.is_empty() && ok(&found) {
                return found;
            }
            if !found.is_empty() {
                last = found;
            }
            if Instant::now() > deadline {
                let status = self.texts("[data-test=status], [data-test=error]");
                panic!(
                    "waited for {what} ({css}); last seen: {last:#?}; page messages: {status:?}; url {}",
                    self.url()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for one element matching `css` and returns it.
    pub fn wait_one(&self, css: &str) -> Element {
        self.wait_for(css, "an element", |_| true);
        self.find_all(css)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{css} vanished"))
    }

    /// Waits for `css`, then clicks it (again if it was redrawn meanwhile).
    pub fn click(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let e = self.wait_one(css);
            match self.try_call(
                "POST",
                &self.session_path(&format!("/element/{}/click", e.0)),
                None,
            ) {
                Ok(_) => return,
                Err(err) if Instant::now() > deadline => panic!("click {css}: {err}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Waits for the input `css`, clears it and types `text`.
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.wait_one(css);
        self.call(
            "POST",
            &self.session_path(&format!("/element/{}/clear", e.0)),
            None,
        );
        self.call(
            "POST",
            &self.session_path(&format!("/element/{}/value", e.0)),
            Some(json!({ "text": text })),
        );
    }

    /// Runs `script` in the page and returns what it returns.
    pub fn run(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Saves a PNG of the window to `path` (its directory is created).
    pub fn screenshot(&self, path: &Path) -> PathBuf {
        use base64::Engine;
        let v = self.call("GET", &self.session_path("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 screenshot"))
            .expect("decode screenshot");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
        path.to_path_buf()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Closes the browser; best effort, the driver goes next anyway.
            let _ = self.try_call("DELETE", &self.session_path(""), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
