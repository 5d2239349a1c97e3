//! The command line as a store worker meets it, through the real binary
//! and a real relay: Chinese labels and local times unless asked for
//! English, case numbers (and id prefixes) wherever a case is named, a
//! list with a header, filters and markers, moves offered by role, JSON
//! with a schema version, who the device belongs to, an expired token
//! stopped at once, and a closed pipe that ends quietly.

mod support;

use serde_json::Value;
use std::process::{Command, Stdio};
use support::{bin_dir, Cli, Relay};

fn stdout(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// RFC 3339 as the store's clock shows it (China time, the default policy).
fn china_time(rfc3339: &str) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap();
    (t.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()))
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

#[test]
fn a_store_worker_reads_chinese_labels_local_times_and_case_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let a = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S001", "tab-a"),
    );
    let b = Cli::init(
        &tmp.path().join("b"),
        &relay.url,
        &relay.token("bob", "staff", "S001", "tab-b"),
    );
    let sup = Cli::init(
        &tmp.path().join("s"),
        &relay.url,
        &relay.token("sam", "supervisor", "S001", "tab-s"),
    );
    // `case new` prints the case number last: what the walkthroughs
    // capture and people read.
    let new = stdout(
        &a.run_default(&[
            "case",
            "new",
            "维修",
            "--customer-name",
            "Li Lei",
            "--customer-phone",
            "13800000000",
        ]),
        "case new",
    );
    let no = new.lines().last().unwrap().trim().to_string();
    assert_eq!(no, "S001-tab-a-1");
    let v = a.show(&no);
    let id = v["id"].as_str().unwrap().to_string();

    // Chinese by default, times in the store's zone without seconds.
    let shown = stdout(&a.run_default(&["case", "show", &no]), "case show");
    assert!(shown.contains("类型      维修"), "{shown}");
    assert!(shown.contains("状态 报修"), "{shown}");
    let opened = china_time(v["created_at"].as_str().unwrap());
    assert!(
        shown.contains(&opened),
        "created {opened} not shown: {shown}"
    );
    assert!(
        !shown.contains("T0") && !shown.contains("Z "),
        "a UTC time in: {shown}"
    );
    // The moves offered are the ones this role may make: a clerk cannot
    // cancel, a supervisor can.
    let next = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("下一步"))
            .unwrap()
            .to_string()
    };
    assert!(next(&shown).contains("确认 confirmed"), "{shown}");
    assert!(!next(&shown).contains("cancelled"), "{shown}");
    // English on request, by flag or environment.
    let en = stdout(
        &a.run_default(&["--lang", "en", "case", "show", &no]),
        "show en",
    );
    assert!(en.contains("status reported"), "{en}");
    let en = stdout(
        &a.run(&["case", "show", &no]),
        "show with AFTERCASE_LANG=en",
    );
    assert!(en.contains("kind      repair"), "{en}");

    // A case number, an id, and any unique start of the id all name it; a
    // move is typed by its code or its name.
    stdout(
        &a.run_default(&["case", "note", &no, "客户带来了遥控器"]),
        "note by number",
    );
    stdout(
        &a.run_default(&["case", "note", &id[..8], "by prefix"]),
        "note by prefix",
    );
    stdout(
        &a.run_default(&["case", "transition", &no, "确认"]),
        "move by name",
    );
    assert_eq!(a.show(&id)["status"], "confirmed");
    let err =
        String::from_utf8(a.run_default(&["case", "note", "S001-tab-a-9", "x"]).stderr).unwrap();
    assert!(err.contains("no case \"S001-tab-a-9\""), "{err}");

    // The supervisor sees the cancel move the clerk was not offered.
    a.ok(&["sync"]);
    sup.ok(&["sync"]);
    let sup_show = stdout(&sup.run_default(&["case", "show", &no]), "supervisor show");
    assert!(next(&sup_show).contains("取消 cancelled"), "{sup_show}");

    // Two clerks move one complaint different ways offline: after both
    // sync, the list marks the conflict and the filter finds it.
    let complaint = stdout(
        &a.run_default(&[
            "case",
            "new",
            "complaint",
            "--customer-name",
            "Han",
            "--customer-phone",
            "13900000000",
        ]),
        "complaint",
    );
    let c_no = complaint.lines().last().unwrap().trim().to_string();
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    a.ok(&["case", "transition", &c_no, "accepted"]);
    b.ok(&[
        "case",
        "transition",
        &c_no,
        "not_accepted",
        "--reason",
        "not ours",
    ]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    a.ok(&["sync"]);
    let list = stdout(&a.run_default(&["case", "list"]), "case list");
    let mut lines = list.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("案件号") && header.contains("状态"),
        "{list}"
    );
    let row = list.lines().find(|l| l.starts_with(&c_no)).unwrap();
    assert!(row.contains("投诉") && row.contains("!冲突"), "{list}");
    let repair_row = list.lines().find(|l| l.starts_with(&no)).unwrap();
    assert!(
        repair_row.contains("确认") && !repair_row.contains('!'),
        "{list}"
    );
    let conflicted = stdout(
        &a.run_default(&["case", "list", "--conflicts"]),
        "--conflicts",
    );
    assert_eq!(
        conflicted.lines().count(),
        2,
        "header and one case: {conflicted}"
    );
    assert!(conflicted.contains(&c_no));
    let confirmed = stdout(
        &a.run_default(&["case", "list", "--status", "确认", "--kind", "repair"]),
        "--status",
    );
    assert!(
        confirmed.contains(&no) && !confirmed.contains(&c_no),
        "{confirmed}"
    );
    let none = stdout(
        &a.run_default(&["case", "list", "--assigned-to", "tom"]),
        "--assigned-to",
    );
    assert_eq!(none.trim(), "没有符合条件的案件");
    let typo = String::from_utf8(
        a.run_default(&["case", "list", "--status", "dispachted"])
            .stderr,
    )
    .unwrap();
    assert!(typo.contains("dispachted"), "{typo}");

    // JSON: stable codes and a schema version, whatever the language.
    let listed: Value = serde_json::from_str(&stdout(
        &a.run_default(&["case", "list", "--json"]),
        "list --json",
    ))
    .unwrap();
    assert_eq!(listed["schema_version"], 1);
    assert_eq!(listed["cases"].as_array().unwrap().len(), 2);
    assert_eq!(listed["cases"][0]["status"], "confirmed");
    for args in [
        &["case", "show", no.as_str()][..],
        &["status"],
        &["conflicts"],
        &["schedule"],
        &["policy", "show"],
        &["sync"],
        &["case", "note", no.as_str(), "json note"],
    ] {
        let mut with = args.to_vec();
        with.push("--json");
        let v: Value = serde_json::from_str(&stdout(&a.run_default(&with), &format!("{with:?}")))
            .unwrap_or_else(|e| panic!("{with:?}: {e}"));
        assert_eq!(v["schema_version"], 1, "{with:?}: {v}");
    }
    let noted: Value =
        serde_json::from_str(&a.ok(&["--json", "case", "note", &no, "again"])).unwrap();
    assert_eq!(noted["case"], id.as_str());
    assert_eq!(noted["case_no"], no.as_str());
    let failed = a.run_default(&["--json", "case", "note", "nope-nope", "x"]);
    assert!(!failed.status.success());
    let err: Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(err["schema_version"], 1);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nope-nope"));

    // Who the device belongs to and when its token expires.
    let status = stdout(&a.run_default(&["status"]), "status");
    assert!(
        status.contains("alice (店员)") && status.contains("S001"),
        "{status}"
    );
    assert!(status.contains("到期"), "{status}");
    let status: Value = serde_json::from_str(&a.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["role"], "staff");
    assert!(status["token_expires_at"]
        .as_str()
        .unwrap()
        .starts_with("20"));
}

#[test]
fn an_expired_token_stops_sync_at_once_with_the_remedy() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay = Relay::start(&relay_dir);
    let out = Command::new(bin_dir().join("aftercase-relay"))
        .args(["token", "--data-dir"])
        .arg(&relay_dir)
        .args([
            "--user", "eve", "--role", "staff", "--store", "S001", "--device", "tab-e", "--ttl",
            "1s",
        ])
        .output()
        .unwrap();
    let token = stdout(&out, "token").lines().last().unwrap().to_string();
    let e = Cli::init(&tmp.path().join("e"), &relay.url, &token);
    // The token carries whole seconds: two of them have certainly passed.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let watch = e.run_default(&["sync", "--watch"]);
    assert!(
        !watch.status.success(),
        "a watch with an expired token ended"
    );
    let err = String::from_utf8(watch.stderr).unwrap();
    assert!(
        err.contains("过期") && err.contains("aftercase init"),
        "{err}"
    );
    let status = stdout(&e.run_default(&["status"]), "status");
    assert!(status.contains("已过期"), "{status}");
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let a = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S001", "tab-a"),
    );
    a.new_case("repair");
    // The reader is gone before the command writes a byte (`| head` that
    // already has its lines).
    let mut child = Command::new(bin_dir().join("aftercase"))
        .arg("--data-dir")
        .arg(&a.dir)
        .args(["case", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "a panic's exit code: {err}");
}
