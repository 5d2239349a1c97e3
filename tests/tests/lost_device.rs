//! A tablet reported lost (`aftercase-relay device lost`): its live
//! connection is closed within seconds and it wipes itself; one that was
//! offline wipes itself when it next connects, before anything else; and
//! `aftercase wipe` does the same by hand. Afterwards its data directory
//! holds no case data. The real binaries over loopback.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;
use support::{bin_dir, Cli, Relay, Watched};

fn lost(relay: &Relay, device: &str) {
    let out = Command::new(bin_dir().join("aftercase-relay"))
        .args(["device", "lost", device, "--data-dir"])
        .arg(&relay.data_dir)
        .output()
        .expect("run device lost");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file left under `dir`.
fn files(dir: &Path) -> Vec<String> {
    support::files_under(dir)
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn a_lost_tablet_wipes_itself_and_a_new_token_brings_the_cases_back() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let ta = relay.token("alice", "staff", "S1", "tab-a");
    let tb = relay.token("bob", "staff", "S1", "tab-b");
    let a = Cli::init(&tmp.path().join("a"), &relay.url, &ta);
    let b = Cli::init(&tmp.path().join("b"), &relay.url, &tb);
    let id = a.new_case("repair");
    a.ok(&["case", "note", &id, "marker-lost-tablet-0815"]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    // b goes offline with the case; a stays connected live.
    let mut watch = Watched::spawn(&a, &["sync", "--watch"]);
    watch.wait_for("synced");

    let t = Instant::now();
    lost(&relay, "tab-a");
    let line = watch.wait_for("reported lost");
    eprintln!(
        "the live connection of the lost tablet ended in {:?}: {line}",
        t.elapsed()
    );
    assert!(line.contains("wiped"), "{line}");
    drop(watch);
    let left = files(&tmp.path().join("a"));
    assert!(left.is_empty(), "the lost tablet still holds {left:?}");

    // The offline tablet is reported lost too: its next sync wipes it
    // before anything else (its unsynced note never reaches the relay).
    b.ok(&["case", "note", &id, "written on the lost tablet"]);
    lost(&relay, "tab-b");
    // The relay reads revocations about once a second: wait until it
    // answers tab-b's token with 410.
    let t = Instant::now();
    while relay.get("/v1/policy", Some(&tb)).0 != 410 {
        assert!(t.elapsed().as_secs() < 60, "the relay never refused tab-b");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let err = b.fails(&["sync"]);
    assert!(err.contains("reported lost"), "{err}");
    let left = files(&tmp.path().join("b"));
    assert!(left.is_empty(), "the lost tablet still holds {left:?}");
    let status = b.run(&["status"]);
    assert!(!status.status.success());

    // Found again: a token issued now works, and the cases come back,
    // customer included.
    let ta2 = relay.token("alice", "staff", "S1", "tab-a");
    let a2 = Cli::init(&tmp.path().join("a"), &relay.url, &ta2);
    a2.ok(&["sync"]);
    let v = a2.show(&id);
    assert_eq!(v["customer"]["name"], "Han Meimei");
    assert!(v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["text"] == "marker-lost-tablet-0815"));
    assert!(!v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["text"] == "written on the lost tablet"));
}

#[test]
fn aftercase_wipe_needs_yes_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let tc = relay.token("carol", "staff", "S1", "tab-c");
    let c = Cli::init(&tmp.path().join("c"), &relay.url, &tc);
    let id = c.new_case("complaint");
    let err = c.fails(&["wipe"]);
    assert!(
        err.contains("--yes") && err.contains("1 case(s) not synced"),
        "{err}"
    );
    assert_eq!(c.show(&id)["customer"]["name"], "Han Meimei");
    let out = c.ok(&["wipe", "--yes"]);
    assert!(out.contains("wiped"), "{out}");
    let left = files(&tmp.path().join("c"));
    assert!(left.is_empty(), "still holds {left:?}");
}
