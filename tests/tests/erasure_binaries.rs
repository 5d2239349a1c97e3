//! Erasing a customer with the real binaries over loopback: the relay's
//! `erase` command, then a grep over every data directory (the relay's and
//! both tablets') and the case's `/doc` bytes finds neither the name nor
//! the phone, while the rest of the case, and another customer's case,
//! still sync and show.

mod support;

use std::path::Path;
use std::process::Command;
use support::{bin_dir, Cli, Relay};

/// Every file under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    support::files_under(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p).is_ok_and(|bytes| aftercase_tests::contains(&bytes, needle.as_bytes()))
        })
        .map(|p| p.display().to_string())
        .collect()
}

fn erase(relay: &Relay, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin_dir().join("aftercase-relay"))
        .args(["erase", "--data-dir"])
        .arg(&relay.data_dir)
        .args(["--relay", &relay.url])
        .args(args)
        .output()
        .expect("run erase");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn an_erased_customer_is_in_no_file_and_the_case_still_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let ta = relay.token("alice", "staff", "S1", "tab-a");
    let tb = relay.token("bob", "staff", "S1", "tab-b");
    let a = Cli::init(&tmp.path().join("a"), &relay.url, &ta);
    let b = Cli::init(&tmp.path().join("b"), &relay.url, &tb);
    // Han Meimei, 13912345678 (support's `new_case`), and another customer.
    let id = a.new_case("repair");
    let other = a.ok(&[
        "--json",
        "case",
        "new",
        "complaint",
        "--customer-name",
        "Wang Fang",
        "--customer-phone",
        "13700001111",
    ]);
    let other: serde_json::Value = serde_json::from_str(&other).unwrap();
    let other = other["case"].as_str().unwrap().to_string();
    a.ok(&["sync"]);
    a.ok(&["case", "note", &id, "marker-plain-note-4711"]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    assert_eq!(b.show(&id)["customer"]["name"], "Han Meimei");
    assert_eq!(b.show(&id)["customer"]["phone"], "13912345678");
    // The grep below can see what the stores hold in plain bytes: a note
    // (not personal data) is found in the relay's files.
    assert!(!files_holding(&tmp.path().join("relay"), "marker-plain-note-4711").is_empty());

    let (ok, said) = erase(&relay, &["--customer-phone", "139 1234 5678"]);
    assert!(ok, "{said}");
    assert!(said.contains("1 case(s) erased"), "{said}");
    assert!(said.contains("S1-tab-a-1"), "{said}");
    a.ok(&["sync"]);
    b.ok(&["sync"]);

    for needle in ["Han Meimei", "13912345678"] {
        let found = files_holding(tmp.path(), needle);
        assert!(found.is_empty(), "{needle} still in {found:?}");
    }
    let (status, bytes) = relay.get(&format!("/v1/cases/{id}/doc"), Some(&ta));
    assert_eq!(status, 200);
    assert_eq!(
        aftercase_tests::history_holds(&bytes, &["Han Meimei", "13912345678"]),
        None
    );
    // The case stays: everything but the customer, on the relay and both
    // tablets, with the erasure in its timeline and its audit.
    let (status, v) = relay.get_json(&format!("/v1/cases/{id}"), &ta);
    assert_eq!(status, 200);
    assert_eq!(v["customer"]["name"], serde_json::Value::Null);
    assert_eq!(v["customer"]["phone"], serde_json::Value::Null);
    assert_eq!(v["kind"], "repair");
    assert_eq!(v["description"], "drum does not turn");
    let types: Vec<String> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        types.contains(&"personal_data_erased".to_string()),
        "{types:?}"
    );
    assert!(v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["user"] == "privacy-officer"));
    for t in [&a, &b] {
        let s = t.show(&id);
        assert_eq!(s["customer"]["name"], serde_json::Value::Null);
        assert_eq!(s["timeline"], v["timeline"]);
        assert_eq!(t.show(&other)["customer"]["name"], "Wang Fang");
    }
    // Notes still sync on the erased case.
    b.ok(&["case", "note", &id, "customer asked for no calls"]);
    b.ok(&["sync"]);
    a.ok(&["sync"]);
    assert!(a.show(&id)["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["text"] == "customer asked for no calls"));

    // Again: nothing left to erase under that phone; by case it is named.
    let (ok, said) = erase(&relay, &["--customer-phone", "13912345678"]);
    assert!(!ok && said.contains("no case"), "{said}");
    let (ok, said) = erase(&relay, &["--case", &id]);
    assert!(ok && said.contains("already erased"), "{said}");
    // Only head office erases.
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/erasures", relay.url))
        .bearer_auth(&ta)
        .json(&serde_json::json!({ "case": other }))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(b.show(&other)["customer"]["phone"], "13700001111");
}
