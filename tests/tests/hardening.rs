//! The relay's defences end to end, against the real binaries: token
//! expiry, connection limits, what a technician may list, answers that
//! reveal nothing, private data directories, logs without secrets, and
//! staying responsive and bounded in memory under heavy or hostile peers.

mod support;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::{Duration, Instant};
use support::{refusal, runtime, try_raw_socket, Cli, RawSocket, Relay};
use tokio_tungstenite::tungstenite::Message;

fn hello() -> Message {
    Message::Binary(
        aftercase_sync::protocol::Frame::Hello {
            cursor: 0,
            policy_version: 1,
            app_version: String::new(),
            unsynced: Default::default(),
            features: Vec::new(),
        }
        .encode()
        .into(),
    )
}

/// Sends hello and waits for the relay's first frame.
async fn say_hello(ws: &mut RawSocket) {
    ws.send(hello()).await.unwrap();
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(_) => break,
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A token signed with the relay's secret from raw claims.
fn sign(relay: &Relay, claims: &Value) -> String {
    let secret = std::fs::read_to_string(relay.data_dir.join("jwt-secret")).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.trim().as_bytes()),
    )
    .unwrap()
}

fn random_text(len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
        .collect()
}

#[test]
fn a_token_expired_twenty_seconds_ago_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let now = chrono::Utc::now().timestamp() as u64;
    let claims = |exp: u64| {
        serde_json::json!({"sub":"alice","role":"staff","store":"S1","device":"tab-a",
            "iss":"aftercase-relay","aud":"aftercase","iat":now-3600,"nbf":now-3600,
            "exp":exp,"jti":"0123456789abcdef"})
    };
    let expired = sign(&relay, &claims(now - 20));
    let (s, body) = relay.get("/v1/cases", Some(&expired));
    assert_eq!(s, 401, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("Expired"));
    runtime().block_on(async {
        let e = try_raw_socket(&relay.url, &expired).await.unwrap_err();
        assert_eq!(refusal(&e).0, 401);
    });
    let valid = sign(&relay, &claims(now + 600));
    assert_eq!(relay.get("/v1/cases", Some(&valid)).0, 200);
}

#[test]
fn a_device_may_hold_at_most_four_sync_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let t = relay.token("alice", "staff", "S1", "tab-a");
    let other_device = relay.token("alice", "staff", "S1", "tab-b");
    runtime().block_on(async {
        let mut open = Vec::new();
        for _ in 0..4 {
            let mut ws = try_raw_socket(&relay.url, &t).await.unwrap();
            say_hello(&mut ws).await;
            open.push(ws);
        }
        let e = try_raw_socket(&relay.url, &t).await.unwrap_err();
        let (status, body) = refusal(&e);
        assert_eq!(status, 429, "{body}");
        assert!(
            body.contains("device tab-a already has 4 open sync connections"),
            "{body}"
        );
        // The same user on another device is not affected.
        let mut b = try_raw_socket(&relay.url, &other_device).await.unwrap();
        say_hello(&mut b).await;
        // Closing one frees its place (once the relay has seen the close).
        let mut first = open.remove(0);
        first.close(None).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match try_raw_socket(&relay.url, &t).await {
                Ok(_) => break,
                Err(e) => {
                    assert_eq!(refusal(&e).0, 429);
                    assert!(Instant::now() < deadline, "the place was never freed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
}

#[test]
fn technicians_list_only_their_cases_and_unreadable_cases_look_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let staff_token = relay.token("alice", "staff", "S1", "tab-a");
    let tom = relay.token("tom", "technician", "S1", "phone-t");
    let staff = Cli::init(&tmp.path().join("a"), &relay.url, &staff_token);
    let assigned = staff.new_case("repair");
    let unassigned = staff.new_case("repair");
    staff.ok(&["case", "assign", &assigned, "tom"]);
    staff.ok(&["sync"]);

    let (s, list) = relay.get_json("/v1/cases", &tom);
    assert_eq!(s, 200);
    let ids: Vec<&str> = list["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![assigned.as_str()]);
    let (_, list) = relay.get_json("/v1/cases", &staff_token);
    assert_eq!(list["cases"].as_array().unwrap().len(), 2);

    // Not readable and not existing answer alike, for the JSON and the doc.
    let missing = uuid::Uuid::new_v4().to_string();
    for suffix in ["", "/doc"] {
        let (s1, b1) = relay.get(&format!("/v1/cases/{unassigned}{suffix}"), Some(&tom));
        let (s2, b2) = relay.get(&format!("/v1/cases/{missing}{suffix}"), Some(&tom));
        assert_eq!((s1, s2), (404, 404));
        let b1 = String::from_utf8(b1).unwrap().replace(&unassigned, "ID");
        let b2 = String::from_utf8(b2).unwrap().replace(&missing, "ID");
        assert_eq!(b1, b2);
        assert!(b1.contains("case ID not found"), "{b1}");
    }

    // Hostile input is never echoed long or raw.
    let hostile = format!("{}%1b%5b31m%0aX", "A".repeat(5000));
    for path in [
        format!("/v1/cases/{hostile}"),
        format!("/v1/cases?store={hostile}"),
        format!("/v1/cases?kind={hostile}"),
    ] {
        let (s, body) = relay.get(&path, Some(&staff_token));
        assert_eq!(s, 400, "{path}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        let msg = v["error"].as_str().unwrap();
        assert!(msg.chars().count() < 150, "{msg}");
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
    }
}

#[cfg(unix)]
#[test]
fn relay_and_device_data_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;
    fn check(dir: &std::path::Path, seen: &mut usize) {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                check(&e.path(), seen);
            } else if ty.is_file() {
                let mode = e.metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", e.path().display());
                *seen += 1;
            }
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let t = relay.token("alice", "staff", "S1", "tab-a");
    let a = Cli::init(&tmp.path().join("a"), &relay.url, &t);
    a.new_case("repair");
    a.ok(&["sync"]);
    relay.revoke(&["--device", "lost-tab"]);
    let mut files = 0;
    check(&relay.data_dir, &mut files);
    check(&a.dir, &mut files);
    assert!(files >= 5, "the walk saw the stores' files ({files})");
    assert!(relay.data_dir.join("revoked").is_dir());
}

#[test]
fn trace_logs_hold_no_token_and_no_customer_data() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("relay.log");
    let relay = Relay::start_with(
        &tmp.path().join("relay"),
        "127.0.0.1:0",
        &[],
        "trace",
        Some(&log),
    );
    let ta = relay.token("alice", "staff", "S1", "tab-a");
    let tb = relay.token("bob", "supervisor", "S1", "tab-b");
    let a = Cli::init(&tmp.path().join("a"), &relay.url, &ta);
    let b = Cli::init(&tmp.path().join("b"), &relay.url, &tb);
    let (name, phone) = ("Wang Xiuying", "13700137391");
    let trace = [("AFTERCASE_LOG", "trace"), ("RUST_LOG", "trace")];
    let mut device_logs = String::new();
    let mut run = |cli: &Cli, args: &[&str]| {
        let out = cli.run_env(args, &trace);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        device_logs.push_str(&String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let out = run(
        &a,
        &[
            "case",
            "new",
            "repair",
            "--customer-name",
            name,
            "--customer-phone",
            phone,
            "--sku",
            "WM-8KG",
            "--description",
            "drum does not turn",
        ],
    );
    let id = out.lines().last().unwrap().trim().to_string();
    run(&a, &["sync"]);
    run(&b, &["sync"]);
    run(&b, &["case", "note", &id, "called back"]);
    run(&b, &["sync"]);
    run(&a, &["sync"]);
    let (s, v) = relay.get_json(&format!("/v1/cases/{id}"), &ta);
    assert_eq!(s, 200);
    assert!(
        v.to_string().contains(phone),
        "the case does hold the phone"
    );
    let relay_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        relay_log.contains("sync connection opened")
            && (relay_log.contains("TRACE") || relay_log.contains("DEBUG")),
        "the relay logged at a verbose level: {relay_log}"
    );
    eprintln!(
        "trace logs: relay {} lines, devices {} lines",
        relay_log.lines().count(),
        device_logs.lines().count()
    );
    for (what, logs) in [("relay", &relay_log), ("device", &device_logs)] {
        for secret in [ta.as_str(), tb.as_str(), name, phone, "Bearer "] {
            assert!(
                !logs.contains(secret),
                "the {what} log holds {secret:?}:\n{logs}"
            );
        }
    }
}

#[test]
fn healthz_answers_while_uploads_flood_the_relay() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let mut uploaders = Vec::new();
    for i in 0..2 {
        let dir = tmp.path().join(format!("d{i}"));
        let token = relay.token(&format!("u{i}"), "staff", "S1", &format!("tab-{i}"));
        aftercase_client::Device::init(&dir, &relay.url, &token).unwrap();
        let device = aftercase_client::Device::open(&dir).unwrap();
        for _ in 0..150 {
            device
                .create_case(
                    "repair".parse().unwrap(),
                    "Li Lei",
                    "13600136000",
                    Some("WM-8KG".into()),
                    Some(random_text(9_000)),
                )
                .unwrap();
        }
        uploaders.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(device.sync_once(|_| {})).unwrap()
        }));
    }
    let client = reqwest::blocking::Client::builder()
        // A liveness bound, not a measurement: the answer takes no lock.
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut answered = 0;
    while uploaders.iter().any(|u| !u.is_finished()) || answered == 0 {
        let r = client
            .get(format!("{}/healthz", relay.url))
            .send()
            .expect("healthz answers during the uploads");
        assert_eq!(r.status().as_u16(), 200);
        answered += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    for u in uploaders {
        assert_eq!(u.join().unwrap().uploaded, 150);
    }
    assert!(answered > 0);
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(target_os = "linux")]
#[test]
fn a_device_that_stops_reading_is_dropped_and_relay_memory_stays_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::start_with(
        &tmp.path().join("relay"),
        "127.0.0.1:0",
        &["--write-timeout", "3s", "--send-budget-mib", "32"],
        "warn",
        None,
    );
    let token = relay.token("mallory", "staff", "S1", "tab-m");
    let dir = tmp.path().join("m");
    aftercase_client::Device::init(&dir, &relay.url, &token).unwrap();
    let id = {
        let device = aftercase_client::Device::open(&dir).unwrap();
        let id = device
            .create_case(
                "repair".parse().unwrap(),
                "Li Lei",
                "13600136000",
                None,
                None,
            )
            .unwrap();
        // Texts are at most 10,000 characters each: many notes make a
        // large case (~600 KB).
        for _ in 0..60 {
            device.add_note(id, &random_text(10_000)).unwrap();
        }
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(device.sync_once(|_| {})).unwrap();
        id
    };
    // Each fetch asks for the large case a thousand times (~0.5 GB of
    // answers); the client never reads any of it.
    let fetch = aftercase_sync::protocol::Frame::Fetch {
        docs: vec![id; 1000],
    }
    .encode();
    let pid = relay.pid();
    let mut peak = 0;
    let started = Instant::now();
    let dropped = runtime().block_on(async {
        let mut ws = try_raw_socket(&relay.url, &token).await.unwrap();
        say_hello(&mut ws).await;
        loop {
            peak = peak.max(rss_kib(pid));
            if started.elapsed() > Duration::from_secs(120) {
                return false;
            }
            let sent = tokio::time::timeout(
                Duration::from_secs(60),
                ws.send(Message::Binary(fetch.clone().into())),
            )
            .await
            .expect("a send returns (or fails) once the relay drops us");
            if sent.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    peak = peak.max(rss_kib(pid));
    eprintln!(
        "slow reader: dropped {dropped} after {:?}, relay peak RSS {} MiB",
        started.elapsed(),
        peak / 1024
    );
    assert!(dropped, "the relay never dropped the connection");
    assert!(peak < 300 * 1024, "relay RSS reached {} MiB", peak / 1024);
    // The relay is still up and serving others.
    assert!(relay.is_running());
    assert_eq!(relay.get("/healthz", None).0, 200);
    let other = relay.token("alice", "staff", "S1", "tab-a");
    let a = Cli::init(&tmp.path().join("a"), &relay.url, &other);
    a.ok(&["sync"]);
    let listed: Value = serde_json::from_str(&a.ok(&["case", "list", "--json"])).unwrap();
    assert_eq!(listed["cases"].as_array().unwrap().len(), 1);
}
