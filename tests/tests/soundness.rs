//! Knowing the relay's data is sound, with the real binaries: one flipped
//! byte in the relay's files is found by `aftercase-relay verify` and shown
//! by `/healthz`, the damaged case is quarantined, and every other case
//! and store keeps syncing; a backup taken while the relay serves restores
//! into a relay a fresh tablet syncs from.

mod support;

use std::path::Path;
use std::process::Command;
use support::{bin_dir, Cli, Relay};

fn relay_cmd(args: &[&str], data_dir: &Path, relay: &Relay) -> (bool, String) {
    let out = Command::new(bin_dir().join("aftercase-relay"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--relay", &relay.url])
        .output()
        .expect("run aftercase-relay");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Flips one byte inside the first occurrence of `needle` in the files
/// under `dir`; returns the file.
fn flip_byte_in(dir: &Path, needle: &str) -> String {
    for p in support::files_under(dir) {
        let mut bytes = std::fs::read(&p).unwrap();
        if let Some(at) = bytes
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
        {
            bytes[at + needle.len() / 2] ^= 0x01;
            std::fs::write(&p, &bytes).unwrap();
            return p.display().to_string();
        }
    }
    panic!("{needle} is in no file under {}", dir.display());
}

fn case_ids(cli: &Cli) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&cli.ok(&["--json", "case", "list"])).unwrap();
    let mut ids: Vec<String> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Waits until the relay's durable watermark covers everything it
/// acknowledged (it is written every two seconds).
fn await_watermark(relay: &Relay, data: &Path) {
    let (_, h) = relay.get("/healthz", None);
    let seq = serde_json::from_slice::<serde_json::Value>(&h).unwrap()["seq"]
        .as_u64()
        .unwrap();
    let t = std::time::Instant::now();
    loop {
        let w = std::fs::read_to_string(data.join("durable-seq"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if w >= seq {
            return;
        }
        assert!(
            t.elapsed().as_secs() < 60,
            "the watermark never reached {seq}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn health(relay: &Relay) -> (u16, serde_json::Value) {
    let (status, h) = relay.get("/healthz", None);
    (status, serde_json::from_slice(&h).unwrap())
}

/// Four cases, three of store S1 and one of S2, synced; then the marker
/// note on the second, stored as a change of its own.
struct Setup {
    tmp: tempfile::TempDir,
    data: std::path::PathBuf,
    ta: String,
    a: Cli,
    s2: Cli,
    cases: [String; 4],
}

fn setup(relay: &Relay, tmp: tempfile::TempDir, data: std::path::PathBuf) -> Setup {
    let ta = relay.token("alice", "staff", "S1", "tab-a");
    let t2 = relay.token("dan", "staff", "S2", "tab-s2");
    let a = Cli::init(&tmp.path().join("a"), &relay.url, &ta);
    let s2 = Cli::init(&tmp.path().join("s2"), &relay.url, &t2);
    let c1 = a.new_case("repair");
    let c2 = a.new_case("complaint");
    let c3 = a.new_case("installation");
    let c4 = s2.new_case("repair");
    a.ok(&["sync"]);
    s2.ok(&["sync"]);
    a.ok(&["case", "note", &c2, "marker-damaged-case-c2-000000"]);
    a.ok(&["sync"]);
    let (_, h) = health(relay);
    assert_eq!(h["status"], "ok", "{h}");
    Setup {
        tmp,
        data,
        ta,
        a,
        s2,
        cases: [c1, c2, c3, c4],
    }
}

fn notes(relay: &Relay, token: &str, case: &str) -> Vec<String> {
    let (_, v) = relay.get_json(&format!("/v1/cases/{case}"), token);
    v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_flipped_byte_in_the_relays_file_is_reported_and_every_store_keeps_syncing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("relay");
    let relay = Relay::start(&data);
    let s = setup(&relay, tmp, data);
    let [c1, c2, c3, c4] = s.cases.clone();
    await_watermark(&relay, &s.data);
    let addr = relay.url.trim_start_matches("http://").to_string();
    relay.kill9();

    // sled checks each message of its log: the flipped one ends the log
    // when the relay opens it, and the note on c2 is gone from storage.
    let file = flip_byte_in(&s.data, "marker-damaged-case-c2-000000");
    eprintln!("flipped a byte in {file}");
    let relay = Relay::start_on(&s.data, &addr);
    let (status, h) = health(&relay);
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(
        h["storage_lost"]
            .as_str()
            .is_some_and(|m| m.contains("were lost")),
        "{h}"
    );
    let (ok, said) = relay_cmd(&["verify"], &s.data, &relay);
    assert!(!ok, "verify must fail: {said}");
    assert!(said.contains("STORAGE LOST CHANGES"), "{said}");
    assert!(!notes(&relay, &s.ta, &c2).contains(&"marker-damaged-case-c2-000000".to_string()));

    // Every case of every store still syncs: a fresh tablet gets them all,
    // the other store goes on, and the tablet that still holds the lost
    // note hands it back with its next change of the case.
    let tn = relay.token("erin", "staff", "S1", "tab-new");
    let fresh = Cli::init(&s.tmp.path().join("fresh"), &relay.url, &tn);
    fresh.ok(&["sync"]);
    let mut want = vec![c1.clone(), c2.clone(), c3.clone()];
    want.sort();
    assert_eq!(case_ids(&fresh), want);
    s.s2.ok(&["case", "note", &c4, "other store"]);
    s.s2.ok(&["sync"]);
    s.a.ok(&["case", "note", &c2, "after the damage"]);
    s.a.ok(&["sync"]);
    let n = notes(&relay, &s.ta, &c2);
    assert!(n.contains(&"after the damage".to_string()), "{n:?}");
    assert!(
        n.contains(&"marker-damaged-case-c2-000000".to_string()),
        "{n:?}"
    );
    fresh.ok(&["sync"]);
    assert_eq!(
        fresh.show(&c2)["timeline"].as_array().unwrap().len(),
        n.len()
    );
}

#[test]
fn a_damaged_case_is_quarantined_and_only_it_stops_syncing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("relay");
    let relay = Relay::start(&data);
    let s = setup(&relay, tmp, data);
    let [c1, c2, c3, c4] = s.cases.clone();
    let addr = relay.url.trim_start_matches("http://").to_string();
    relay.kill9();

    // One flipped byte in a stored value that the storage engine itself
    // does not check (as on PostgreSQL without page checksums): the case's
    // bytes no longer load.
    {
        use aftercase_sync::storage::{keys, Batch, SledStorage, Storage};
        let st = SledStorage::open(&s.data.join("db")).unwrap();
        let id: aftercase_sync::CaseId = c2.parse().unwrap();
        let (k, mut v) = st
            .scan_prefix(&keys::doc_prefix(id))
            .unwrap()
            .into_iter()
            .next()
            .unwrap();
        let mid = v.len() / 2;
        v[mid] ^= 0x10;
        let mut b = Batch::new();
        b.put(k, v);
        st.apply(b).unwrap();
        st.flush().unwrap();
    }
    let relay = Relay::start_on(&s.data, &addr);
    let (ok, said) = relay_cmd(&["verify"], &s.data, &relay);
    assert!(!ok, "verify must fail on a damaged case: {said}");
    assert!(said.contains(&format!("DAMAGED case {c2}")), "{said}");
    assert!(said.contains("1 of 4 case(s) are damaged"), "{said}");
    let (status, h) = health(&relay);
    assert_eq!(
        (status, h["status"].as_str()),
        (200, Some("degraded")),
        "{h}"
    );
    assert_eq!(h["quarantined_cases"], 1, "{h}");
    let (status, body) = relay.get(&format!("/v1/cases/{c2}"), Some(&s.ta));
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("damaged")),
        "{body}"
    );

    // A fresh tablet of the store gets every case but the damaged one.
    let tn = relay.token("erin", "staff", "S1", "tab-new");
    let fresh = Cli::init(&s.tmp.path().join("fresh"), &relay.url, &tn);
    let said = fresh.fails(&["sync"]);
    assert!(said.contains("damaged"), "{said}");
    let mut want = vec![c1.clone(), c3.clone()];
    want.sort();
    assert_eq!(case_ids(&fresh), want);
    // The tablet holding it goes on syncing its other cases.
    s.a.ok(&["case", "note", &c1, "after the damage"]);
    s.a.ok(&["case", "note", &c2, "on the damaged case"]);
    let said = s.a.fails(&["sync"]);
    assert!(said.contains("damaged"), "{said}");
    assert!(notes(&relay, &s.ta, &c1).contains(&"after the damage".to_string()));
    // Another store is not affected at all.
    s.s2.ok(&["case", "note", &c4, "other store"]);
    s.s2.ok(&["sync"]);
    // The verdict survives a restart of the relay.
    relay.kill9();
    let relay = Relay::start_on(&s.data, &addr);
    let (status, h) = health(&relay);
    assert_eq!(
        (status, h["quarantined_cases"].as_u64()),
        (200, Some(1)),
        "{h}"
    );
}

#[test]
fn a_backup_taken_while_serving_restores_into_a_relay_a_fresh_tablet_syncs_from() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("relay");
    let relay = Relay::start(&data);
    let ta = relay.token("alice", "staff", "S1", "tab-a");
    let a = Cli::init(&tmp.path().join("a"), &relay.url, &ta);
    let c1 = a.new_case("repair");
    let c2 = a.new_case("complaint");
    a.ok(&["sync"]);
    // A live tablet keeps the relay busy while the backup is taken.
    let tb = relay.token("bob", "staff", "S1", "tab-b");
    let b = Cli::init(&tmp.path().join("b"), &relay.url, &tb);
    let mut watch = support::Watched::spawn(&b, &["sync", "--watch"]);
    watch.wait_for("synced");
    let backup = tmp.path().join("backup");
    let out = Command::new(bin_dir().join("aftercase-relay"))
        .arg("backup")
        .arg(&backup)
        .arg("--data-dir")
        .arg(&data)
        .args(["--relay", &relay.url])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("restore by serving it"), "{said}");
    // Not in the backup; tab-a is told its sequence number.
    let c3 = a.new_case("installation");
    a.ok(&["sync"]);
    a.ok(&["sync"]);
    drop(watch);

    let restored = Relay::start(&backup);
    let (ok, said) = relay_cmd(&["verify"], &backup, &restored);
    assert!(ok, "{said}");
    assert!(said.contains("2 case(s) checked"), "{said}");
    // The signing secret came along: a token of the first relay works.
    let tn = relay.token("erin", "staff", "S1", "tab-new");
    let fresh = Cli::init(&tmp.path().join("fresh"), &restored.url, &tn);
    fresh.ok(&["sync"]);
    let mut want = vec![c1.clone(), c2.clone()];
    want.sort();
    assert_eq!(case_ids(&fresh), want);
    assert!(!case_ids(&fresh).contains(&c3));
    assert_eq!(fresh.show(&c1)["customer"]["name"], "Han Meimei");

    // Tablets that synced after the backup have seen sequence numbers the
    // restored relay never reached: it moves past them, so a new case is
    // not skipped, and what they hold comes back as they change it.
    let c5 = fresh.new_case("complaint");
    fresh.ok(&["sync"]);
    let a2 = Cli::init(&tmp.path().join("a"), &restored.url, &ta);
    a2.ok(&["sync"]);
    assert!(
        case_ids(&a2).contains(&c5),
        "a case made after the restore reaches every tablet"
    );
    a2.ok(&["case", "note", &c3, "back after the restore"]);
    a2.ok(&["sync"]);
    fresh.ok(&["sync"]);
    assert!(case_ids(&fresh).contains(&c3));
}
