//! Head office's dashboard in a real headless Chromium against the real
//! relay: sign-in with a pasted token (a bad one shows the relay's words),
//! the overdue queue and its store filter, the fleet, a case's detail with its
//! timeline, deadlines, audit trail and Chinese labels, times in the
//! stores' zone, a CSV download fetched with the token, the metrics
//! charts, and a store's day of bookings with a double booking marked.
//! Screenshots are saved to `artifacts/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver`
//! (`scripts/install-browser.sh`); without them it fails, never skips.

mod support;
#[path = "support/webdriver.rs"]
mod webdriver;

use aftercase_client::DeviceConfig;
use aftercase_sync::case::edit::Customer;
use aftercase_sync::case::CaseKind;
use aftercase_sync::replica::{Entropy, Replica};
use aftercase_sync::storage::SledStorage;
use aftercase_sync::{CaseId, Millis};
use serde_json::Value;
use std::path::{Path, PathBuf};
use support::{Cli, Relay};
use webdriver::Browser;

const HOUR: i64 = 3_600_000;

/// Opens a complaint on the device set up in `cli`'s data directory as
/// the tablet itself would, but with the tablet's clock `hours_back`
/// hours behind: the case was recorded offline that long ago. The relay
/// believes device times up to `max_offline_hours` (72) old, so the
/// complaint's 2-hour first-response deadline is already past when it
/// arrives.
fn complaint_recorded_offline(cli: &Cli, hours_back: i64) -> String {
    let cfg = DeviceConfig::load(&cli.dir).expect("device config");
    let storage = SledStorage::open(&cli.dir.join("db")).expect("device storage");
    let replica = Replica::open(storage, cfg.identity(), rand::random());
    let now = chrono::Utc::now().timestamp_millis() - hours_back * HOUR;
    let id = replica
        .create_case(
            CaseId::from_random_bytes(rand::random()),
            Entropy {
                now: Millis(now),
                nonce: rand::random(),
                key: [0x5c; 32],
            },
            CaseKind::Complaint,
            Customer {
                name: "Zhou Xun".into(),
                phone: "13700000000".into(),
            },
            Some("TV-55".into()),
            Some("no answer to my call".into()),
        )
        .expect("create the complaint");
    id.to_string()
}

/// `2026-11-25 13:00` in the stores' zone (UTC+08:00 by default).
fn local(rfc3339: &str, offset_minutes: i64) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).expect("an RFC 3339 time");
    (t.with_timezone(&chrono::Utc) + chrono::Duration::minutes(offset_minutes))
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .join("artifacts")
}

fn rows_with(texts: &[String], needle: &str) -> usize {
    texts.iter().filter(|t| t.contains(needle)).count()
}

#[test]
fn head_office_reads_queues_cases_and_metrics_in_a_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let s1 = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S1", "tab-a"),
    );
    let s2 = Cli::init(
        &tmp.path().join("b"),
        &relay.url,
        &relay.token("bob", "staff", "S2", "tab-b"),
    );
    let late_s1 = complaint_recorded_offline(&s1, 30);
    let late_s2 = complaint_recorded_offline(&s2, 30);
    // A photo on the late complaint, saved from the page below.
    let mut jpeg = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1,
    ];
    jpeg.resize(5000, 0x42);
    let photo = tmp.path().join("receipt.jpg");
    std::fs::write(&photo, &jpeg).unwrap();
    let out = s1.ok(&[
        "case",
        "attach",
        &late_s1,
        photo.to_str().unwrap(),
        "--type",
        "receipt",
        "--caption",
        "till receipt",
    ]);
    let photo_hash = out.lines().last().unwrap().trim().to_string();
    let repair = s1.new_case("repair");
    s1.ok(&["case", "transition", &repair, "confirmed"]);
    s2.new_case("installation");
    s1.ok(&["sync"]);
    s2.ok(&["sync"]);

    // The command line prints the same labels, in Chinese unless asked
    // for English.
    let text = |out: std::process::Output| String::from_utf8(out.stdout).unwrap();
    let shown = text(s1.run_default(&["case", "show", &late_s1]));
    assert!(shown.contains("状态 登记"), "{shown}");
    assert!(shown.contains("类型      投诉"), "{shown}");
    assert!(shown.contains("首次响应"), "{shown}");
    let listed = text(s1.run_default(&["case", "list"]));
    assert!(listed.contains("确认"), "{listed}");

    let hq = relay.token("hq", "head_office", "HQ", "hq-laptop");
    let case_no = |id: &str| -> String {
        let (s, v) = relay.get_json(&format!("/v1/cases/{id}"), &hq);
        assert_eq!(s, 200);
        v["case_no"].as_str().expect("a case number").to_string()
    };
    let (no_s1, no_s2) = (case_no(&late_s1), case_no(&late_s2));
    let (_, late) = relay.get_json(&format!("/v1/cases/{late_s1}"), &hq);
    let (_, policy) = relay.get_json("/v1/policy", &hq);
    let offset = policy["utc_offset_minutes"]
        .as_i64()
        .expect("the stores' zone");

    // The page and its assets come from the relay with a policy that
    // allows nothing from elsewhere; the labels need a token.
    let resp = reqwest::blocking::get(format!("{}/", relay.url)).unwrap();
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(resp.text().unwrap().contains("/dashboard/app.js"));
    assert_eq!(relay.get("/dashboard/app.js", None).0, 200);
    assert_eq!(relay.get("/dashboard/app.css", None).0, 200);
    assert_eq!(relay.get("/v1/labels", None).0, 401);
    let (s, labels) = relay.get_json("/v1/labels", &hq);
    assert_eq!(s, 200);
    assert_eq!(labels["states"]["repair"]["dispatched"]["zh"], "派工");
    assert_eq!(labels["kinds"]["complaint"]["zh"], "投诉");
    let (_, refusal) = relay.get_json("/v1/labels", "not-a-token");
    let refusal = refusal["error"].as_str().expect("a reason").to_string();

    let b = Browser::start();
    b.goto(&format!("{}/", relay.url));

    // A bad token: the relay's words on the sign-in form, nothing else shown.
    b.type_into("[data-test=token-input]", "not-a-token");
    b.click("[data-test=signin-submit]");
    b.wait_for("[data-test=signin-error]", "the relay's refusal", |t| {
        t[0].contains(&refusal)
    });
    assert!(b
        .texts("[data-test=nav-queues]")
        .iter()
        .all(String::is_empty));

    // Head office signs in and lands on the overdue queue: both stores'
    // late complaints are there, the repair (no deadline yet) is not.
    b.type_into("[data-test=token-input]", &hq);
    b.click("[data-test=signin-submit]");
    let rows = b.wait_for(
        "[data-test=queue-overdue] [data-test=case-row]",
        "both late complaints in the overdue queue",
        |t| rows_with(t, &no_s1) == 1 && rows_with(t, &no_s2) == 1,
    );
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert!(rows[0].contains("首次响应"), "deadline labelled: {rows:#?}");
    assert!(
        !b.url().contains(&hq),
        "the token never goes into a URL: {}",
        b.url()
    );

    // Filtering by store leaves the other store's case out.
    b.type_into("[data-test=queue-store]", "S1");
    b.click("[data-test=queue-apply]");
    let rows = b.wait_for(
        "[data-test=queue-overdue] [data-test=case-row]",
        "only store S1's case",
        |t| rows_with(t, &no_s1) == 1 && rows_with(t, &no_s2) == 0,
    );
    assert_eq!(rows.len(), 1, "{rows:#?}");

    // The relay lists devices, so the fleet panel is there, for the store
    // chosen: the tablet that synced, not the other store's.
    b.click("[data-test=queue-tab-devices]");
    b.wait_for(
        "[data-test=devices-table] [data-test=device-row]",
        "store S1's tablet",
        |t| rows_with(t, "tab-a") == 1 && rows_with(t, "tab-b") == 0,
    );
    b.click("[data-test=queue-tab-overdue]");

    // The case: Chinese status with the English beside it, its timeline,
    // the missed deadline, the audit trail, and times in the stores' zone.
    b.click(&format!("[data-test=case-link][data-case-no=\"{no_s1}\"]"));
    b.wait_for("[data-test=timeline-entry]", "the case's timeline", |t| {
        t.iter().any(|e| e.contains("created"))
    });
    let status = b.wait_for("[data-test=case-status]", "the status", |_| true);
    assert!(status[0].contains("登记"), "{status:?}");
    assert!(status[0].contains("registered"), "{status:?}");
    let kind = b.texts("[data-test=case-kind]");
    assert!(kind[0].contains("投诉"), "{kind:?}");
    let timers = b.texts("[data-test=timer-row]");
    assert!(
        timers
            .iter()
            .any(|t| t.contains("首次响应") && t.contains("OVERDUE")),
        "{timers:#?}"
    );
    let audit = b.texts("[data-test=audit-row]");
    assert!(
        audit
            .iter()
            .any(|a| a.contains("tab-a") && a.contains("alice")),
        "{audit:#?}"
    );
    // Its evidence, saved through an authorised fetch (no token in a URL).
    let evidence = b.texts("[data-test=evidence-row]");
    assert!(
        evidence
            .iter()
            .any(|e| e.contains("receipt") && e.contains("till receipt")),
        "{evidence:#?}"
    );
    b.click("[data-test=evidence-save]");
    b.wait_for("[data-test=status]", "the evidence saved", |t| {
        t[0].contains(&format!("saved {photo_hash}.jpg: 5000 bytes"))
    });
    let opened = local(late["created_at"].as_str().unwrap(), offset);
    let detail = b.texts("[data-test=case-detail]").join("\n");
    assert!(
        detail.contains(&opened),
        "opened at {opened} local time: {detail}"
    );
    assert!(
        !detail.contains(late["created_at"].as_str().unwrap()),
        "no raw UTC: {detail}"
    );
    b.screenshot(&artifacts().join("dashboard-case.png"));

    // The case list downloads as CSV through an authorised fetch.
    b.click("[data-test=nav-cases]");
    b.wait_for(
        "[data-test=case-table] [data-test=case-row]",
        "the list",
        |t| t.len() == 4,
    );
    b.click("[data-test=cases-csv]");
    b.wait_for("[data-test=status]", "the CSV saved", |t| {
        t[0].contains("saved cases.csv: 4 row(s)")
    });

    // Metrics by store over the last 30 days (the late cases may fall in
    // the previous month): a volume chart with a bar per store.
    b.click("[data-test=nav-metrics]");
    b.click("[data-test=period-30]");
    let groups = b.wait_for(
        "[data-test=metrics-row]",
        "a row per store and the total",
        |t| rows_with(t, "S1") == 1 && rows_with(t, "S2") == 1,
    );
    assert_eq!(groups.len(), 3, "{groups:#?}");
    let chart = b.texts("[data-test=chart-volume] figcaption");
    assert!(chart[0].contains("案件量"), "{chart:?}");
    let bars = b.find_all("[data-test=chart-volume] svg rect[data-test=bar]");
    assert_eq!(bars.len(), 4, "cases and resolved for two stores");
    assert!(!b
        .find_all("[data-test=chart-on-time] svg rect[data-test=bar]")
        .is_empty());
    let shot = b.screenshot(&artifacts().join("dashboard.png"));
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);

    // Signing out forgets the token.
    b.click("[data-test=signout]");
    b.wait_one("[data-test=token-input]");
    assert_eq!(
        b.run("return sessionStorage.getItem('aftercase.token')"),
        Value::Null
    );
}

/// A store's day: two tablets booked Tom offline for overlapping times on
/// two repairs; the schedule view lists his day with both bookings marked
/// as a double booking, and the case shows its booking and the conflict.
/// Saves `artifacts/dashboard-schedule.png`.
#[test]
fn a_stores_day_shows_each_technicians_bookings_and_double_bookings() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    support::publish_technicians(&relay, &tmp.path().join("hq"), &[("tom", "S1")]);
    let a = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S1", "tab-a"),
    );
    let b2 = Cli::init(
        &tmp.path().join("b"),
        &relay.url,
        &relay.token("bob", "staff", "S1", "tab-b"),
    );
    a.ok(&["sync"]);
    b2.ok(&["sync"]);
    let mut ids = Vec::new();
    for (cli, at) in [(&a, "2026-12-08 10:00"), (&b2, "2026-12-08 11:00")] {
        let id = cli.new_case("repair");
        cli.ok(&["case", "transition", &id, "confirmed"]);
        cli.ok(&[
            "case",
            "book",
            &id,
            "--tech",
            "tom",
            "--at",
            at,
            "--duration",
            "90m",
        ]);
        ids.push(id);
    }
    a.ok(&["sync"]);
    b2.ok(&["sync"]);
    let hq = relay.token("hq", "head_office", "HQ", "hq-laptop");
    let (_, v) = relay.get_json(&format!("/v1/cases/{}", ids[0]), &hq);
    let case_no = v["case_no"].as_str().unwrap().to_string();

    let b = Browser::start();
    b.goto(&format!(
        "{}/#/schedule?store=S1&date=2026-12-08",
        relay.url
    ));
    b.type_into("[data-test=token-input]", &hq);
    b.click("[data-test=signin-submit]");
    let rows = b.wait_for(
        "[data-test=schedule-row]",
        "Tom's two bookings, both marked",
        |t| t.len() == 2 && t.iter().all(|r| r.contains("排期冲突")),
    );
    assert!(
        rows[0].contains("10:00") && rows[1].contains("11:00"),
        "{rows:#?}"
    );
    let techs = b.texts("[data-test=schedule-tech] h3");
    assert_eq!(techs, vec!["技师 tom".to_string()]);
    b.screenshot(&artifacts().join("dashboard-schedule.png"));
    b.click(&format!(
        "[data-test=case-link][data-case-no=\"{case_no}\"]"
    ));
    b.wait_for("[data-test=booking-row]", "the case's booking", |t| {
        t.len() == 1 && t[0].contains("tom")
    });
    let conflict = b.wait_for(
        "[data-test=case-schedule-conflicts]",
        "the double booking on the case",
        |_| true,
    );
    assert!(conflict[0].contains(&ids[1]), "{conflict:?}");
}
