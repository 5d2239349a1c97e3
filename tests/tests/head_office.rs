//! Head office's case list over the real relay: filters read the relay's
//! read model, an unknown parameter is refused by name, and a store's token
//! sees only its store.

mod support;

use support::{Cli, Relay};

fn ids(v: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = v["cases"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn the_case_list_filters_on_the_read_model() {
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
    let confirmed = s1.new_case("repair");
    s1.ok(&["case", "transition", &confirmed, "confirmed"]);
    let reported = s1.new_case("repair");
    let offered = s1.new_case("damage_claim");
    s1.ok(&[
        "case", "offer", &offered, "--tier", "cash", "--amount", "5000",
    ]);
    let other_store = s2.new_case("repair");
    s1.ok(&["sync"]);
    s2.ok(&["sync"]);
    let hq = relay.token("hq", "head_office", "HQ", "hq-1");
    let list = |q: &str, token: &str| relay.get_json(&format!("/v1/cases{q}"), token);

    let (s, all) = list("", &hq);
    assert_eq!(s, 200);
    assert_eq!(ids(&all).len(), 4);
    let row = all["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == confirmed.as_str())
        .unwrap();
    assert_eq!(row["status"], "confirmed");
    assert!(row["case_no"].as_str().unwrap().starts_with("S1-"));

    let (_, v) = list("?status=confirmed", &hq);
    assert_eq!(ids(&v), vec![confirmed.clone()]);
    let (_, v) = list("?status=reported&kind=repair", &hq);
    let mut want = vec![reported.clone(), other_store.clone()];
    want.sort();
    assert_eq!(ids(&v), want);
    // A cash offer over a supervisor's limit waits for head office.
    let (_, v) = list("?awaiting_approval=true", &hq);
    assert_eq!(ids(&v), vec![offered.clone()]);
    let (_, v) = list("?store=S2", &hq);
    assert_eq!(ids(&v), vec![other_store.clone()]);
    let (_, v) = list("?has_conflict=true", &hq);
    assert_eq!(ids(&v), Vec::<String>::new());
    let (_, v) = list("?updated_since=2000-01-01T00:00:00Z&breached=false", &hq);
    assert_eq!(ids(&v).len(), 4);

    // Pages of two, in case-id order, follow `next` to the end; a case
    // changed between pages is neither skipped nor repeated.
    let (_, p1) = list("?limit=2", &hq);
    assert_eq!(ids(&p1).len(), 2);
    let next = p1["next"].as_str().expect("a next page").to_string();
    s1.ok(&["case", "note", &reported, "changed between pages"]);
    s1.ok(&["sync"]);
    let (_, p2) = list(&format!("?limit=2&after={next}"), &hq);
    assert_eq!(ids(&p2).len(), 2);
    assert_eq!(p2["next"], serde_json::Value::Null);
    let mut paged = ids(&p1);
    paged.extend(ids(&p2));
    assert_eq!(paged, ids(&all), "pages cover every case once, in order");
    let (s, _) = relay.get("/v1/cases?limit=0", Some(&hq));
    assert_eq!(s, 400);

    // A typo is refused by name, not ignored.
    let (s, body) = relay.get("/v1/cases?stauts=closed", Some(&hq));
    assert_eq!(s, 400);
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("stauts"), "{body}");
    let (s, _) = relay.get("/v1/cases?breached=maybe", Some(&hq));
    assert_eq!(s, 400);

    // A store's token lists only its store, whatever it filters on.
    let s2_token = relay.token("bob", "staff", "S2", "tab-b");
    let (_, v) = list("?status=reported", &s2_token);
    assert_eq!(ids(&v), vec![other_store.clone()]);
    let (s, _) = list("?store=S1", &s2_token);
    assert_eq!(s, 403);
}
