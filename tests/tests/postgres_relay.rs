//! The real relay binary on PostgreSQL (`serve --database postgres://...`)
//! over loopback: devices sync through it, head office reads from it, a
//! kill -9 in the middle of an upload loses nothing acknowledged, the
//! relay's data directory holds no sled database, and three relays on one
//! database serve one chain. The cluster is private
//! to the test (`aftercase_tests::postgres::PgCluster`).

mod support;

use aftercase_tests::postgres::PgCluster;
use serde_json::Value;
use support::{bin_dir, publish_technicians, Cli, Relay, Watched};

fn on_postgres(data: &std::path::Path, url: &str) -> Relay {
    Relay::start_with(data, "127.0.0.1:0", &["--database", url], "warn", None)
}

fn notes(case: &Value) -> Vec<String> {
    case["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|e| e["type"] == "note")
        .map(|e| e["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Every case head office lists, checked against its document; returns how
/// many there are.
fn listed_cases_match_documents(relay: &Relay, hq: &str) -> usize {
    let (s, page) = relay.get_json("/v1/cases?limit=500", hq);
    assert_eq!(s, 200, "{page}");
    let rows = page["cases"].as_array().expect("cases");
    for row in rows {
        let id = row["id"].as_str().expect("id");
        let (s, doc) = relay.get_json(&format!("/v1/cases/{id}"), hq);
        assert_eq!(s, 200, "a listed case exists");
        assert_eq!(row["status"], doc["status"], "status of {id}");
        assert_eq!(row["case_no"], doc["case_no"], "number of {id}");
    }
    rows.len()
}

#[test]
fn a_relay_on_postgres_syncs_devices_and_serves_head_office() {
    let cluster = PgCluster::start().expect("a private PostgreSQL cluster");
    let url = cluster.database("chain").expect("createdb");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("relay");
    let relay = on_postgres(&data, &url);
    let a = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S1", "tab-a"),
    );
    let b = Cli::init(
        &tmp.path().join("b"),
        &relay.url,
        &relay.token("bob", "staff", "S1", "tab-b"),
    );
    let id = a.new_case("repair");
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    a.ok(&["case", "note", &id, "customer will bring the receipt"]);
    b.ok(&["case", "note", &id, "technician booked for Tuesday"]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    a.ok(&["sync"]);
    assert_eq!(a.show(&id), b.show(&id), "both tablets converge");
    let mut n = notes(&a.show(&id));
    n.sort();
    assert_eq!(
        n,
        [
            "customer will bring the receipt",
            "technician booked for Tuesday"
        ]
    );

    let hq = relay.token("hq", "head_office", "HQ", "hq-1");
    assert_eq!(listed_cases_match_documents(&relay, &hq), 1);
    let (s, v) = relay.get_json(&format!("/v1/cases/{id}"), &hq);
    assert_eq!(s, 200);
    let mut at_relay = notes(&v);
    at_relay.sort();
    assert_eq!(at_relay, n, "the relay holds both notes");
    // The cases are in PostgreSQL, not in a sled database beside the secret.
    assert!(
        !data.join("db").exists(),
        "a relay on PostgreSQL created a sled database"
    );
    assert_eq!(relay.get("/healthz", None).0, 200);

    // reindex rewrites every row: refused while a relay serves the database.
    let out = std::process::Command::new(bin_dir().join("aftercase-relay"))
        .args(["reindex", "--data-dir"])
        .arg(&data)
        .args(["--database", &url])
        .output()
        .expect("run reindex");
    assert!(!out.status.success(), "reindex ran beside a relay");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("a relay"), "{said}");
    assert_eq!(relay.get("/healthz", None).0, 200, "the relay still serves");
}

/// The relay's change sequence as `/healthz` reports it.
fn seq(relay: &Relay) -> u64 {
    relay.get_json("/healthz", "").1["seq"]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until every relay has taken in the others' commits (their
/// followers are woken by each flush's notification).
fn settled(relays: &[&Relay]) {
    eventually("the relays to agree on the sequence", || {
        let seqs: Vec<u64> = relays.iter().map(|r| seq(r)).collect();
        seqs.iter().all(|s| *s == seqs[0])
    });
}

/// Waits (20 s at most, else fails naming `what`) until `done` says yes.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited in vain for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn three_relays_on_one_database_serve_one_chain() {
    let cluster = PgCluster::start().expect("a private PostgreSQL cluster");
    let url = cluster.database("chain").expect("createdb");
    let tmp = tempfile::tempdir().unwrap();
    // One data directory (the signing secret, revocations, evidence), as a
    // shared mount would give them.
    let data = tmp.path().join("relay");
    let relays: Vec<Relay> = (0..3).map(|_| on_postgres(&data, &url)).collect();
    let all: Vec<&Relay> = relays.iter().collect();
    let tablet = |i: usize, user: &str, device: &str| {
        Cli::init(
            &tmp.path().join(device),
            &relays[i].url,
            &relays[i].token(user, "staff", "S1", device),
        )
    };
    let a = tablet(0, "alice", "tab-a");
    let b = tablet(1, "bob", "tab-b");
    let c = tablet(2, "carol", "tab-c");

    let id = a.new_case("repair");
    a.ok(&["sync"]);
    settled(&all);
    b.ok(&["sync"]);
    c.ok(&["sync"]);
    assert!(
        b.show(&id)["id"] == id && c.show(&id)["id"] == id,
        "the case reached relays 1 and 2"
    );
    // Each tablet writes through its own relay, on the same case.
    a.ok(&["case", "note", &id, "receipt photographed"]);
    b.ok(&["case", "note", &id, "part ordered"]);
    c.ok(&["case", "note", &id, "customer called back"]);
    for t in [&a, &b, &c] {
        t.ok(&["sync"]);
    }
    settled(&all);
    for t in [&a, &b, &c] {
        t.ok(&["sync"]);
    }
    let mut n = notes(&a.show(&id));
    n.sort();
    assert_eq!(
        n,
        [
            "customer called back",
            "part ordered",
            "receipt photographed"
        ]
    );
    assert_eq!(a.show(&id), b.show(&id), "a and b converge");
    assert_eq!(b.show(&id), c.show(&id), "b and c converge");

    // Head office reads the same case and list from any relay.
    let hq = relays[0].token("hq", "head_office", "HQ", "hq-1");
    for r in &relays {
        assert_eq!(listed_cases_match_documents(r, &hq), 1);
        let (s, v) = r.get_json(&format!("/v1/cases/{id}"), &hq);
        assert_eq!(s, 200);
        let mut at = notes(&v);
        at.sort();
        assert_eq!(at, n, "relay {} holds every note", r.url);
    }
    // A fresh tablet of the store gets everything from whichever relay.
    let d = tablet(2, "dave", "tab-d");
    d.ok(&["sync"]);
    assert_eq!(d.show(&id), a.show(&id));

    // A policy published through relay 0 reaches the tablets of relay 2.
    let version = |t: &Cli| {
        let p: Value = serde_json::from_str(&t.ok(&["policy", "show"])).expect("policy json");
        p["version"].as_u64().expect("version")
    };
    let before = version(&c);
    publish_technicians(&relays[0], &tmp.path().join("hq"), &[("tech-1", "S1")]);
    eventually("relay 2 to send the new policy", || {
        c.ok(&["sync"]);
        version(&c) == before + 1
    });
}

#[test]
fn a_kill_9_of_a_relay_on_postgres_mid_upload_loses_nothing_acknowledged() {
    let cluster = PgCluster::start().expect("a private PostgreSQL cluster");
    let url = cluster.database("chain").expect("createdb");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("relay");
    let relay = on_postgres(&data, &url);
    let tab = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "supervisor", "S1", "tab-a"),
    );
    // Acknowledged first: five cases synced before any kill.
    let mut acked = Vec::new();
    for i in 0..5 {
        let id = tab.new_case("damage_claim");
        tab.ok(&["case", "note", &id, &format!("photo {i} taken")]);
        acked.push(id);
    }
    tab.ok(&["sync"]);
    let mut made = acked.clone();
    for i in 0..30 {
        let id = tab.new_case(if i % 2 == 0 { "repair" } else { "complaint" });
        // Every other repair moves on (a complaint is accepted, not confirmed).
        if i % 4 == 0 {
            tab.ok(&["case", "transition", &id, "confirmed"]);
        }
        made.push(id);
    }
    // Killed while the tablet uploads, once a few cases are committed.
    let mut sync = Watched::spawn(&tab, &["sync", "--watch"]);
    sync.wait_for("connected to");
    let seq0 = seq(&relay);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while seq(&relay) < seq0 + 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let addr = relay.url.trim_start_matches("http://").to_string();
    relay.kill9();
    drop(sync);

    let relay = Relay::start_with(&data, &addr, &["--database", &url], "warn", None);
    let hq = relay.token("hq", "head_office", "HQ", "hq-1");
    for (i, id) in acked.iter().enumerate() {
        let (s, v) = relay.get_json(&format!("/v1/cases/{id}"), &hq);
        assert_eq!(s, 200, "acknowledged case {id} is there after the kill");
        assert_eq!(notes(&v), vec![format!("photo {i} taken")]);
    }
    let before = listed_cases_match_documents(&relay, &hq);
    assert!(before >= acked.len() && before <= made.len(), "{before}");
    // The tablet finishes; every case is listed and matches its document.
    tab.ok(&["sync"]);
    assert_eq!(listed_cases_match_documents(&relay, &hq), made.len());
    // A fresh tablet of the store gets every case from the database.
    let fresh = Cli::init(
        &tmp.path().join("fresh"),
        &relay.url,
        &relay.token("carol", "staff", "S1", "tab-c"),
    );
    fresh.ok(&["sync"]);
    let listed: Value =
        serde_json::from_str(&fresh.ok(&["case", "list", "--json"])).expect("list json");
    assert_eq!(listed["cases"].as_array().expect("cases").len(), made.len());
    relay.kill9();

    // reindex reaches the same database with the relay stopped.
    let out = std::process::Command::new(bin_dir().join("aftercase-relay"))
        .args(["reindex", "--data-dir"])
        .arg(&data)
        .args(["--database", &url])
        .output()
        .expect("run reindex");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("{} case(s)", made.len())),
        "reindex saw every case: {said}"
    );
}

#[test]
fn a_relay_refuses_a_database_it_cannot_reach_without_showing_the_password() {
    let tmp = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let url = format!("postgres://relay:hunter2hunter2@127.0.0.1:{port}/chain");
    let out = std::process::Command::new(bin_dir().join("aftercase-relay"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("relay"))
        .env("AFTERCASE_DATABASE_URL", &url)
        .output()
        .expect("run serve");
    assert!(
        !out.status.success(),
        "a relay with no database must not start"
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("open"), "the error names what failed: {all}");
    assert!(
        !all.contains("hunter2"),
        "the password reached the output: {all}"
    );
}

/// Three relays on one database; tablets on each write and sync in rounds
/// while a relay chosen at random is killed (`kill -9`) at a random moment
/// and restarted on its address. Everything a tablet's `sync` reported
/// sent is on every tablet and every relay in the end, and they all agree.
/// The seed is printed; `AFTERCASE_KILL_SEED` replays one.
#[test]
fn relays_killed_at_random_lose_nothing_acknowledged() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("AFTERCASE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("relays_killed_at_random: seed {seed} (AFTERCASE_KILL_SEED={seed} replays it)");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let cluster = PgCluster::start().expect("a private PostgreSQL cluster");
    let url = cluster.database("chain").expect("createdb");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("relay");
    let start = |addr: &str| Relay::start_with(&data, addr, &["--database", &url], "error", None);
    let mut relays: Vec<Relay> = (0..3).map(|_| start("127.0.0.1:0")).collect();
    let addrs: Vec<String> = relays
        .iter()
        .map(|r| r.url.trim_start_matches("http://").to_string())
        .collect();
    let tablets: Vec<Cli> = ["tab-a", "tab-b", "tab-c"]
        .iter()
        .enumerate()
        .map(|(i, device)| {
            Cli::init(
                &tmp.path().join(device),
                &relays[i].url,
                &relays[i].token(&format!("user-{device}"), "staff", "S1", device),
            )
        })
        .collect();
    // One case every tablet writes to, plus each tablet's own.
    let shared = tablets[0].new_case("repair");
    assert!(tablets[0].run(&["sync"]).status.success());
    settled(&relays.iter().collect::<Vec<_>>());
    for t in &tablets[1..] {
        assert!(t.run(&["sync"]).status.success());
    }
    // Notes written (case, text) and those a successful sync reported sent.
    let mut written: Vec<Vec<(String, String)>> = vec![Vec::new(); tablets.len()];
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let mut kills = 0;
    let mut failed = 0;
    for round in 0..6 {
        for (i, t) in tablets.iter().enumerate() {
            let own = t.new_case("complaint");
            for (case, text) in [
                (own.clone(), format!("r{round} own of {i}")),
                (shared.clone(), format!("r{round} shared by {i}")),
            ] {
                t.ok(&["case", "note", &case, &text]);
                written[i].push((case, text));
            }
        }
        let victim = rng.random_range(0..relays.len());
        // A sync takes tens of milliseconds here: kills land before,
        // during and after them.
        let delay = std::time::Duration::from_millis(rng.random_range(0..120));
        let synced: Vec<bool> = std::thread::scope(|scope| {
            let syncs: Vec<_> = tablets
                .iter()
                .map(|t| scope.spawn(move || t.run(&["sync"]).status.success()))
                .collect();
            std::thread::sleep(delay);
            relays[victim].kill_now();
            syncs
                .into_iter()
                .map(|s| s.join().expect("sync thread"))
                .collect()
        });
        kills += 1;
        relays[victim] = start(&addrs[victim]);
        for (i, ok) in synced.iter().enumerate() {
            if *ok {
                acknowledged.append(&mut written[i]);
            } else {
                failed += 1;
            }
        }
    }
    // Everyone syncs until all agree.
    let all: Vec<&Relay> = relays.iter().collect();
    for _ in 0..3 {
        settled(&all);
        for t in &tablets {
            assert!(t.run(&["sync"]).status.success(), "a sync after the kills");
        }
    }
    settled(&all);
    for t in &tablets {
        assert!(t.run(&["sync"]).status.success());
    }
    eprintln!(
        "relays_killed_at_random: {kills} kills, {failed} syncs cut, {} notes acknowledged",
        acknowledged.len()
    );
    assert!(!acknowledged.is_empty(), "some syncs succeeded");
    let hq = relays[0].token("hq", "head_office", "HQ", "hq-1");
    let listed: Value =
        serde_json::from_str(&tablets[0].ok(&["case", "list", "--json"])).expect("list json");
    let ids: Vec<String> = listed["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect();
    for id in &ids {
        let first = tablets[0].show(id);
        for t in &tablets[1..] {
            assert_eq!(t.show(id), first, "tablets agree on {id} (seed {seed})");
        }
        for r in &relays {
            let (s, v) = r.get_json(&format!("/v1/cases/{id}"), &hq);
            assert_eq!(s, 200, "{id} at {} (seed {seed})", r.url);
            assert_eq!(notes(&v), notes(&first), "{id} at {} (seed {seed})", r.url);
        }
    }
    for (case, text) in &acknowledged {
        assert!(
            notes(&tablets[0].show(case)).contains(text),
            "acknowledged note {text:?} of {case} is everywhere (seed {seed})"
        );
    }
    for r in &relays {
        assert_eq!(listed_cases_match_documents(r, &hq), ids.len());
    }
}
