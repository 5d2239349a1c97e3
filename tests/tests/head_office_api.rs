//! Head office's queues, metrics, audit feed and CSV exports over the real
//! relay, scoped by role: head office sees the chain, a store's token its
//! store, a technician what is assigned to them, in every list, queue,
//! metric and export. And the read model still matches the documents after
//! the relay is killed with -9 in the middle of uploads.

mod support;

use aftercase_client::DeviceConfig;
use aftercase_sync::case::edit::Customer;
use aftercase_sync::case::CaseKind;
use aftercase_sync::replica::{Entropy, Replica};
use aftercase_sync::storage::{SledStorage, Storage};
use aftercase_sync::{CaseId, Millis};
use serde_json::Value;
use support::{Cli, Relay, Watched};

const HOUR: i64 = 3_600_000;

/// Opens a case on the device in `cli`'s data directory as the tablet
/// would have `hours_ago` hours ago (a device that was offline since: the
/// relay believes device times up to `max_offline_hours` back).
fn open_case_earlier(cli: &Cli, kind: CaseKind, hours_ago: i64, phone: &str) -> String {
    let config = DeviceConfig::load(&cli.dir).expect("device config");
    let storage = SledStorage::open(&cli.dir.join("db")).expect("device storage");
    let replica = Replica::open(storage.clone(), config.identity(), rand::random());
    let id = CaseId::from_random_bytes(rand::random());
    let now = chrono::Utc::now().timestamp_millis() - hours_ago * HOUR;
    replica
        .create_case(
            id,
            Entropy {
                now: Millis(now),
                nonce: rand::random(),
                key: [0x5c; 32],
            },
            kind,
            Customer {
                name: "Li Lei".into(),
                phone: phone.into(),
            },
            Some("TV-55".into()),
            Some("screen flickers".into()),
        )
        .expect("create case");
    storage.flush().expect("flush");
    id.to_string()
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .iter()
        .map(|c| {
            c["id"]
                .as_str()
                .or(c["case_id"].as_str())
                .unwrap()
                .to_string()
        })
        .collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// GET with `Accept: text/csv`.
fn get_csv(relay: &Relay, path: &str, token: &str) -> (u16, Vec<u8>) {
    let resp = reqwest::blocking::Client::new()
        .get(format!("{}{path}", relay.url))
        .bearer_auth(token)
        .header("Accept", "text/csv")
        .send()
        .expect("request");
    (resp.status().as_u16(), resp.bytes().expect("body").to_vec())
}

/// Parses a CSV answer, checking the byte-order mark first.
fn parse_csv(body: &[u8]) -> Vec<Vec<String>> {
    assert!(
        body.starts_with(b"\xEF\xBB\xBF"),
        "CSV starts with a UTF-8 BOM for Excel"
    );
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&body[3..])
        .records()
        .map(|r| {
            r.expect("a CSV record")
                .iter()
                .map(str::to_string)
                .collect()
        })
        .collect()
}

#[test]
fn queues_metrics_audit_and_exports_are_scoped_by_role() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let s1 = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "supervisor", "S1", "tab-a"),
    );
    let s2 = Cli::init(
        &tmp.path().join("b"),
        &relay.url,
        &relay.token("bob", "staff", "S2", "tab-b"),
    );
    // Complaints opened 30 hours ago offline: the 2-hour first response
    // is long overdue. One fresh complaint falls due within the day.
    let late1 = open_case_earlier(&s1, CaseKind::Complaint, 30, "13900000001");
    let late2 = open_case_earlier(&s2, CaseKind::Complaint, 31, "13900000002");
    let fresh = s1.new_case("complaint");
    let assigned = s1.new_case("repair");
    let offered = s1.new_case("damage_claim");
    s1.ok(&[
        "case", "offer", &offered, "--tier", "cash", "--amount", "5000",
    ]);
    // A SKU with a comma, quotes and a line break, for the CSV quoting.
    let odd_sku = "WM,8\"KG\nblue";
    let odd = s2.ok(&[
        "case",
        "new",
        "repair",
        "--customer-name",
        "Wang Fang",
        "--customer-phone",
        "13700000000",
        "--sku",
        odd_sku,
        "--description",
        "noisy",
        "--json",
    ]);
    let odd: serde_json::Value = serde_json::from_str(&odd).unwrap();
    let odd = odd["case"].as_str().unwrap().to_string();
    s1.ok(&["sync"]);
    s2.ok(&["sync"]);
    // Assigned after the case reached the relay: its own upload.
    s1.ok(&["case", "assign", &assigned, "tom"]);
    s1.ok(&["sync"]);
    let s1_cases = sorted(vec![
        late1.clone(),
        fresh.clone(),
        assigned.clone(),
        offered.clone(),
    ]);
    let s2_cases = sorted(vec![late2.clone(), odd.clone()]);

    let hq = relay.token("hq", "head_office", "HQ", "hq-1");
    let s2_token = relay.token("bob", "staff", "S2", "tab-b");
    let tom = relay.token("tom", "technician", "S1", "tab-t");
    let get = |path: &str, token: &str| {
        let (s, v) = relay.get_json(path, token);
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    };

    // Overdue: both late complaints for head office, longest overdue
    // first; only its own for a store; nothing for a technician whose
    // case is not late.
    let v = get("/v1/queues/overdue", &hq);
    let order: Vec<&str> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, vec![late2.as_str(), late1.as_str()]);
    assert!(v["cases"][0]["due"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d == "first_response"));
    assert_eq!(
        ids(&get("/v1/queues/overdue?store=S1", &hq), "cases"),
        vec![late1.clone()]
    );
    assert_eq!(
        ids(&get("/v1/queues/overdue", &s2_token), "cases"),
        vec![late2.clone()]
    );
    assert!(ids(&get("/v1/queues/overdue", &tom), "cases").is_empty());
    let (s, _) = relay.get("/v1/queues/overdue?store=S1", Some(&s2_token));
    assert_eq!(s, 403, "a store may not ask for another store's queue");

    // Due soon: the fresh complaint's first response is due within hours.
    let soon = ids(&get("/v1/queues/due-soon?within_hours=24", &hq), "cases");
    assert!(soon.contains(&fresh), "{soon:?}");
    assert!(!soon.contains(&late1));

    // Approvals: the cash offer over a supervisor's limit.
    assert_eq!(
        ids(&get("/v1/queues/approvals", &hq), "cases"),
        vec![offered.clone()]
    );
    assert!(ids(&get("/v1/queues/approvals", &s2_token), "cases").is_empty());
    assert!(ids(&get("/v1/queues/conflicts", &hq), "cases").is_empty());

    // Lists: a technician sees only what is assigned to him.
    assert_eq!(
        ids(&get("/v1/cases", &tom), "cases"),
        vec![assigned.clone()]
    );
    assert_eq!(ids(&get("/v1/cases", &s2_token), "cases"), s2_cases);
    assert_eq!(
        ids(&get("/v1/cases?breached=true", &hq), "cases"),
        sorted(vec![late1.clone(), late2.clone()])
    );

    // The fleet: each tablet with its last sync; a store sees its own.
    let devices = |token: &str, q: &str| -> Vec<String> {
        let v = get(&format!("/v1/queues/devices{q}"), token);
        let mut d: Vec<String> = v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                assert_eq!(d["pending"], 0, "{d}");
                assert!(d["last_sync"].is_string(), "{d}");
                format!(
                    "{}/{}",
                    d["store_id"].as_str().unwrap(),
                    d["device"].as_str().unwrap()
                )
            })
            .collect();
        d.sort();
        d
    };
    assert_eq!(devices(&hq, ""), vec!["S1/tab-a", "S2/tab-b"]);
    assert_eq!(devices(&s2_token, ""), vec!["S2/tab-b"]);
    assert!(
        devices(&tom, "").is_empty(),
        "a technician sees only his own tablet"
    );
    assert!(
        devices(&hq, "?stale_hours=1").is_empty(),
        "every tablet synced within the hour"
    );
    let (_, body) = relay.get("/v1/queues/devices?format=csv", Some(&hq));
    assert_eq!(parse_csv(&body)[0][0], "store_id");

    // Metrics: per store for head office; a store sees only itself.
    let m = get("/v1/metrics/service?group_by=store", &hq);
    let groups: Vec<(String, u64)> = m["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap().into(),
                g["cases"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(groups, vec![("S1".into(), 4), ("S2".into(), 2)]);
    assert_eq!(m["total"]["cases"], 6);
    let fr = &m["total"]["on_time"]["first_response"];
    assert_eq!(fr["open_overdue"], 2, "{m}");
    let m = get("/v1/metrics/service?group_by=store", &s2_token);
    assert_eq!(m["groups"].as_array().unwrap().len(), 1);
    assert_eq!(m["total"]["cases"], 2);
    assert_eq!(get("/v1/metrics/service", &tom)["total"]["cases"], 1);
    let (s, _) = relay.get("/v1/metrics/service?store=S1", Some(&s2_token));
    assert_eq!(s, 403);
    let (s, b) = relay.get("/v1/metrics/service?group_by=colour", Some(&hq));
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&b).contains("colour"));

    // The audit feed: every upload, who and from which device, a one-line
    // effect and never the customer's data; paged without gaps.
    let feed = get("/v1/audit?since=2000-01-01T00:00:00Z", &hq);
    let entries = feed["entries"].as_array().unwrap();
    let feed_cases: std::collections::BTreeSet<&str> = entries
        .iter()
        .map(|e| e["case_id"].as_str().unwrap())
        .collect();
    assert_eq!(feed_cases.len(), 6);
    let text = feed.to_string();
    for secret in [
        "Li Lei",
        "13900000001",
        "Wang Fang",
        "13700000000",
        "Han Meimei",
    ] {
        assert!(!text.contains(secret), "the audit feed shows {secret}");
    }
    let opened = entries
        .iter()
        .find(|e| e["case_id"] == late1.as_str())
        .unwrap();
    assert_eq!(opened["user"], "alice");
    assert_eq!(opened["device"], "tab-a");
    assert!(
        opened["effect"]
            .as_str()
            .unwrap()
            .starts_with("opened complaint"),
        "{opened}"
    );
    let assignment = entries
        .iter()
        .filter(|e| e["case_id"] == assigned.as_str())
        .any(|e| e["effect"].as_str().unwrap().contains("assigned to tom"));
    assert!(assignment, "{feed}");
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            Some(a) => format!("/v1/audit?limit=2&after={a}"),
            None => "/v1/audit?limit=2".into(),
        };
        let page = get(&q, &hq);
        paged.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(n) => after = Some(n.into()),
            None => break,
        }
    }
    assert_eq!(&paged, entries, "pages of two give the whole feed once");
    let s2_feed = get("/v1/audit", &s2_token);
    assert!(s2_feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["store_id"] == "S2"));
    assert_eq!(ids(&s2_feed, "entries"), s2_cases);
    let tom_feed = get("/v1/audit", &tom);
    assert!(tom_feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["case_id"] == assigned.as_str()));

    // CSV: a BOM, a header, one row per case, scoped like JSON; `Accept`
    // works as well as `format=csv`.
    let (s, body) = get_csv(&relay, "/v1/cases", &hq);
    assert_eq!(s, 200);
    let rows = parse_csv(&body);
    assert_eq!(rows[0][0], "id");
    let csv_ids = sorted(rows[1..].iter().map(|r| r[0].clone()).collect());
    let mut all = s1_cases.clone();
    all.extend(s2_cases.clone());
    assert_eq!(csv_ids, sorted(all));
    let (_, body) = relay.get("/v1/cases?format=csv", Some(&s2_token));
    let rows = parse_csv(&body);
    assert_eq!(
        sorted(rows[1..].iter().map(|r| r[0].clone()).collect()),
        s2_cases
    );
    // A SKU with a comma, quotes and a line break comes back whole.
    let (_, body) = relay.get("/v1/metrics/service?group_by=sku&format=csv", Some(&hq));
    let rows = parse_csv(&body);
    assert_eq!(rows[0][0], "group");
    assert!(
        rows.iter().any(|r| r[0] == odd_sku),
        "the odd SKU survives CSV quoting: {rows:?}"
    );
    let (_, body) = relay.get("/v1/queues/overdue?format=csv", Some(&s2_token));
    let rows = parse_csv(&body);
    assert_eq!(rows.len(), 2, "header and S2's one overdue case");
    assert_eq!(rows[1][2], late2);
    let (_, body) = relay.get("/v1/audit?format=csv", Some(&hq));
    assert_eq!(parse_csv(&body)[0][0], "received_at");

    // Every endpoint names a parameter it does not know.
    for path in [
        "/v1/cases?x=1",
        "/v1/queues/overdue?stor=S1",
        "/v1/queues/due-soon?within=3",
        "/v1/queues/conflicts?x=1",
        "/v1/queues/approvals?x=1",
        "/v1/queues/devices?stale=1",
        "/v1/metrics/service?groupby=store",
        "/v1/audit?sinse=2026-01-01T00:00:00Z",
    ] {
        let (s, b) = relay.get(path, Some(&hq));
        assert_eq!(s, 400, "{path}");
        let name = path.split('?').nth(1).unwrap().split('=').next().unwrap();
        assert!(String::from_utf8_lossy(&b).contains(name), "{path}");
    }
    let (s, _) = relay.get("/v1/cases?format=xml", Some(&hq));
    assert_eq!(s, 400);
}

/// Every row of head office's list against the case's own document view.
fn check_rows_match_documents(relay: &Relay, hq: &str) -> usize {
    let mut n = 0;
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            Some(a) => format!("/v1/cases?limit=50&after={a}"),
            None => "/v1/cases?limit=50".into(),
        };
        let (s, page) = relay.get_json(&q, hq);
        assert_eq!(s, 200);
        for row in page["cases"].as_array().unwrap() {
            let id = row["id"].as_str().unwrap();
            let (s, doc) = relay.get_json(&format!("/v1/cases/{id}"), hq);
            assert_eq!(s, 200, "a listed case exists");
            assert_eq!(row["status"], doc["status"], "status of {id}");
            assert_eq!(row["case_no"], doc["case_no"], "number of {id}");
            assert_eq!(row["assignee"], doc["assignee"], "assignee of {id}");
            let open = doc["conflicts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["status"] == "open")
                .count();
            assert_eq!(row["open_conflicts"], open, "conflicts of {id}");
            n += 1;
        }
        match page["next"].as_str() {
            Some(a) => after = Some(a.into()),
            None => return n,
        }
    }
}

#[test]
fn the_read_model_matches_the_documents_after_a_kill_9_mid_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("relay");
    let relay = Relay::start(&data);
    let tab = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "supervisor", "S1", "tab-a"),
    );
    let mut made = Vec::new();
    for i in 0..40 {
        let id = tab.new_case(if i % 2 == 0 { "repair" } else { "complaint" });
        if i % 6 == 0 {
            tab.ok(&["case", "transition", &id, "confirmed"]);
        }
        made.push(id);
    }
    // Kill the relay while the tablet uploads: as soon as it has committed
    // a few cases (its health check shows the sequence without a lock).
    let mut sync = Watched::spawn(&tab, &["sync", "--watch"]);
    sync.wait_for("connected to");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, health) = relay.get_json("/healthz", "");
        if health["seq"].as_u64().unwrap_or(0) >= 3 || std::time::Instant::now() > deadline {
            break;
        }
    }
    let addr = relay.url.trim_start_matches("http://").to_string();
    relay.kill9();
    drop(sync);

    let relay = Relay::start_on(&data, &addr);
    let hq = relay.token("hq", "head_office", "HQ", "hq-1");
    let before = check_rows_match_documents(&relay, &hq);
    eprintln!(
        "{before} of {} cases at the relay after the kill",
        made.len()
    );
    assert!(before <= made.len());
    // The tablet finishes; every case is listed and still matches.
    tab.ok(&["sync"]);
    assert_eq!(check_rows_match_documents(&relay, &hq), made.len());
}
