//! `aftercase sync --watch`: live changes from other devices of the store,
//! and reconnection after the relay goes away.

mod support;

use support::{free_port, Cli, Relay, Watched};

#[test]
fn watch_receives_live_changes_and_survives_a_relay_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let addr = format!("127.0.0.1:{}", free_port());
    let relay = Relay::start_on(&relay_dir, &addr);
    let a = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S1", "tab-a"),
    );
    let b = Cli::init(
        &tmp.path().join("b"),
        &relay.url,
        &relay.token("bob", "supervisor", "S1", "tab-b"),
    );
    let mut watch = Watched::spawn(&b, &["sync", "--watch"]);
    watch.wait_for("synced:");

    let id = a.new_case("complaint");
    let no = a.show(&id)["case_no"].as_str().unwrap().to_string();
    a.ok(&["sync"]);
    // The case as people know it: its number, its kind, what changed.
    let line = watch.wait_for(&format!("received a change to case {no}"));
    assert!(line.contains("(complaint): new case"), "{line}");

    relay.kill9();
    watch.wait_for("retrying in");
    let relay = Relay::start_on(&relay_dir, &addr);
    watch.wait_for("connected to");
    watch.wait_for("synced:");

    a.ok(&["case", "note", &no, "customer accepts apology voucher"]);
    a.ok(&["sync"]);
    let line = watch.wait_for(&format!("received a change to case {no}"));
    assert!(
        line.contains("note \"customer accepts apology voucher\" (alice)"),
        "{line}"
    );
    // The watcher has synced the case on this connection, so the next
    // changes come pushed as stored: each is still shown.
    for text in ["voucher sent", "customer thanked us"] {
        a.ok(&["case", "note", &no, text]);
        a.ok(&["sync"]);
        let line = watch.wait_for(&format!("received a change to case {no}"));
        assert!(line.contains(&format!("note \"{text}\" (alice)")), "{line}");
    }
    watch.kill9();

    let v = b.show(&id);
    let notes: Vec<_> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "note")
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        notes,
        vec![
            "customer accepts apology voucher".to_string(),
            "voucher sent".to_string(),
            "customer thanked us".to_string()
        ]
    );
    drop(relay);
}
