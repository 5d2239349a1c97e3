//! Bookings end to end (issue 12), with the real relay and CLI binaries
//! over loopback, real sled and real JWTs: a double booking made on two
//! offline tablets becomes one open scheduling conflict on both cases and
//! at head office and closes everywhere when the supervisor reschedules
//! one; who may book whom and when; deadlines move with the booking and
//! cancelling the case frees the slot.

mod support;

use serde_json::Value;
use support::{Cli, Relay};

/// Head office publishes policy version 2 listing Tom (store S1) and Olga
/// (store S2), Monday to Saturday 09:00-18:00, China time.
fn publish_technicians(tmp: &std::path::Path, hq: &Cli) {
    let mut policy: Value = serde_json::from_str(&hq.ok(&["policy", "show"])).unwrap();
    policy["version"] = 2.into();
    policy["technicians"] = serde_json::json!([
        {"user": "tom", "store": "S1", "start": "09:00", "end": "18:00", "days": [1, 2, 3, 4, 5, 6]},
        {"user": "olga", "store": "S2", "start": "09:00", "end": "18:00"}
    ]);
    let file = tmp.join("policy.json");
    // A bad value is refused with the field named, and nothing changes.
    let mut bad = policy.clone();
    bad["technicians"][0]["end"] = "08:00".into();
    std::fs::write(&file, bad.to_string()).unwrap();
    let err = hq.fails(&["policy", "publish", file.to_str().unwrap()]);
    assert!(err.contains("technicians[0].end"), "{err}");
    std::fs::write(&file, policy.to_string()).unwrap();
    hq.ok(&["policy", "publish", file.to_str().unwrap()]);
}

/// A confirmed repair on `cli`, not yet synced.
fn confirmed_repair(cli: &Cli) -> String {
    let id = cli.new_case("repair");
    cli.ok(&["case", "transition", &id, "confirmed"]);
    id
}

fn open_schedule_conflicts(v: &Value) -> Vec<String> {
    v["schedule_conflicts"]
        .as_array()
        .expect("schedule_conflicts")
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

fn queue_ids(relay: &Relay, token: &str) -> Vec<String> {
    let (s, q) = relay.get_json("/v1/queues/conflicts", token);
    assert_eq!(s, 200, "{q}");
    let mut ids: Vec<String> = q["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn timer_due(v: &Value, name: &str) -> String {
    v["timers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no {name} timer in {}", v["timers"]))["due"]
        .as_str()
        .unwrap()
        .to_string()
}

const DAY: &str = "from=2026-12-08T00:00:00%2B08:00&to=2026-12-09T00:00:00%2B08:00";

#[test]
fn a_double_booking_made_offline_is_one_conflict_everywhere_until_the_supervisor_moves_one() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let hq_token = relay.token("hq", "head_office", "HQ", "hq-1");
    let hq = Cli::init(&tmp.path().join("hq"), &relay.url, &hq_token);
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
    let sup = Cli::init(
        &tmp.path().join("sup"),
        &relay.url,
        &relay.token("sue", "supervisor", "S1", "tab-s"),
    );
    publish_technicians(tmp.path(), &hq);
    a.ok(&["sync"]);
    b.ok(&["sync"]);

    // Both tablets offline: each books Tom on its own case, overlapping.
    let ca = confirmed_repair(&a);
    let cb = confirmed_repair(&b);
    let book = |cli: &Cli, id: &str, at: &str| {
        cli.ok(&[
            "case",
            "book",
            id,
            "--tech",
            "tom",
            "--at",
            at,
            "--duration",
            "90m",
        ])
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string()
    };
    let booking_a = book(&a, &ca, "2026-12-08 10:00");
    let booking_b = book(&b, &cb, "2026-12-08 11:00");
    assert_eq!(a.show(&ca)["status"], "dispatched");
    assert_eq!(a.show(&ca)["assignee"], "tom");
    // Neither tablet knows of the other booking yet.
    assert!(open_schedule_conflicts(&a.show(&ca)).is_empty());
    // Once a tablet holds both, it refuses a third overlapping booking
    // itself; the two made offline both stand.
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    a.ok(&["sync"]);

    // Both cases, on both tablets, show the one open scheduling conflict.
    let conflict = {
        let v = a.show(&ca);
        let ids = open_schedule_conflicts(&v);
        assert_eq!(ids.len(), 1, "{}", v["schedule_conflicts"]);
        ids[0].clone()
    };
    for (cli, id) in [(&a, &ca), (&a, &cb), (&b, &ca), (&b, &cb)] {
        assert_eq!(
            open_schedule_conflicts(&cli.show(id)),
            vec![conflict.clone()]
        );
    }
    let listed = a.ok(&["conflicts"]);
    assert!(
        listed.contains(&conflict) && listed.contains("tom"),
        "{listed}"
    );
    let ca3 = confirmed_repair(&a);
    let err = a.fails(&[
        "case",
        "book",
        &ca3,
        "--tech",
        "tom",
        "--at",
        "2026-12-08 10:30",
        "--duration",
        "30m",
    ]);
    assert!(err.contains("already booked"), "{err}");

    // Head office: both cases in the conflicts queue, each with the conflict.
    let mut both = vec![ca.clone(), cb.clone()];
    both.sort();
    assert_eq!(queue_ids(&relay, &hq_token), both);
    for id in [&ca, &cb] {
        let (s, v) = relay.get_json(&format!("/v1/cases/{id}"), &hq_token);
        assert_eq!(s, 200);
        assert_eq!(open_schedule_conflicts(&v), vec![conflict.clone()]);
    }
    let (s, sched) = relay.get_json(&format!("/v1/schedule?store=S1&tech=tom&{DAY}"), &hq_token);
    assert_eq!(s, 200, "{sched}");
    let rows = sched["bookings"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{sched}");
    assert!(rows.iter().all(|r| r["conflicts"][0] == conflict.as_str()));

    // The supervisor moves Bob's booking to the afternoon.
    sup.ok(&["sync"]);
    sup.ok(&[
        "case",
        "reschedule",
        &cb,
        "--at",
        "2026-12-08 14:00",
        "--reason",
        "Tom was booked twice",
    ]);
    sup.ok(&["sync"]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);

    // Closed everywhere.
    for (cli, id) in [(&a, &ca), (&a, &cb), (&b, &ca), (&b, &cb), (&sup, &cb)] {
        assert!(open_schedule_conflicts(&cli.show(id)).is_empty());
    }
    assert!(a.ok(&["conflicts"]).contains("no open conflicts"));
    assert!(queue_ids(&relay, &hq_token).is_empty());
    for id in [&ca, &cb] {
        let (_, v) = relay.get_json(&format!("/v1/cases/{id}"), &hq_token);
        assert!(open_schedule_conflicts(&v).is_empty());
    }

    // No booking was lost or silently moved: both stand, Bob's moved by
    // the supervisor with the reason, in the log.
    let va = a.show(&ca);
    let vb = a.show(&cb);
    assert_eq!(va["appointment"]["id"], booking_a.as_str());
    assert_eq!(va["appointment"]["start"], "2026-12-08T02:00:00.000Z");
    assert_eq!(vb["appointment"]["id"], booking_b.as_str());
    assert_eq!(vb["appointment"]["start"], "2026-12-08T06:00:00.000Z");
    assert_eq!(vb["appointment"]["reason"], "Tom was booked twice");
    let day: Value = serde_json::from_str(&a.ok(&[
        "schedule",
        "--tech",
        "tom",
        "--date",
        "2026-12-08",
        "--json",
    ]))
    .unwrap();
    let day = day["bookings"].as_array().unwrap();
    assert_eq!(day.len(), 2);
    assert!(day
        .iter()
        .all(|r| r["conflicts"].as_array().unwrap().is_empty()));
    let (_, sched) = relay.get_json(&format!("/v1/schedule?store=S1&tech=tom&{DAY}"), &hq_token);
    assert_eq!(sched["bookings"].as_array().unwrap().len(), 2);
    let (s, csv) = relay.get(
        &format!("/v1/schedule?store=S1&{DAY}&format=csv"),
        Some(&hq_token),
    );
    assert_eq!(s, 200);
    let text = String::from_utf8(csv).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains(&ca) && text.contains(&cb));
}

#[test]
fn technicians_see_their_own_bookings_and_only_bookable_slots_are_booked() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let hq = Cli::init(
        &tmp.path().join("hq"),
        &relay.url,
        &relay.token("hq", "head_office", "HQ", "hq-1"),
    );
    let a = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S1", "tab-a"),
    );
    let sup = Cli::init(
        &tmp.path().join("sup"),
        &relay.url,
        &relay.token("sue", "supervisor", "S1", "tab-s"),
    );
    let tom_token = relay.token("tom", "technician", "S1", "phone-t");
    let tom = Cli::init(&tmp.path().join("tom"), &relay.url, &tom_token);
    let jerry = Cli::init(
        &tmp.path().join("jerry"),
        &relay.url,
        &relay.token("jerry", "technician", "S1", "phone-j"),
    );
    publish_technicians(tmp.path(), &hq);
    for c in [&a, &sup, &tom] {
        c.ok(&["sync"]);
    }
    let id = confirmed_repair(&a);
    let at = |t: &'static str| -> Vec<&str> {
        vec![
            "case",
            "book",
            &id,
            "--tech",
            "tom",
            "--at",
            t,
            "--duration",
            "1h",
        ]
    };
    // Another store's technician, someone not in the policy, outside hours.
    let err = a.fails(&[
        "case",
        "book",
        &id,
        "--tech",
        "olga",
        "--at",
        "2026-12-08 10:00",
        "--duration",
        "1h",
    ]);
    assert!(err.contains("store S2"), "{err}");
    let err = a.fails(&[
        "case",
        "book",
        &id,
        "--tech",
        "jerry",
        "--at",
        "2026-12-08 10:00",
        "--duration",
        "1h",
    ]);
    assert!(err.contains("not a bookable technician"), "{err}");
    let err = a.fails(&at("2026-12-08 19:00"));
    assert!(
        err.contains("09:00-18:00"),
        "the hours are in the message: {err}"
    );
    let err = a.fails(&at("2026-12-13 10:00"));
    assert!(err.contains("Sun"), "a Sunday: {err}");
    // A clerk cannot override the hours; a supervisor can, with a reason.
    let mut clerk_override = at("2026-12-08 19:00");
    clerk_override.extend(["--override", "customer works days"]);
    let err = a.fails(&clerk_override);
    assert!(err.contains("only a supervisor"), "{err}");
    a.ok(&at("2026-12-08 10:00"));
    a.ok(&["sync"]);
    sup.ok(&["sync"]);
    let late = confirmed_repair(&sup);
    sup.ok(&[
        "case",
        "book",
        &late,
        "--tech",
        "tom",
        "--at",
        "2026-12-08 19:00",
        "--duration",
        "1h",
        "--override",
        "customer works days",
    ]);
    sup.ok(&["sync"]);

    // Tom sees his two bookings; Jerry none; neither sees the other's.
    tom.ok(&["sync"]);
    jerry.ok(&["sync"]);
    let mine: Value =
        serde_json::from_str(&tom.ok(&["schedule", "--date", "2026-12-08", "--json"])).unwrap();
    let mine = mine["bookings"].as_array().unwrap();
    assert_eq!(mine.len(), 2, "{mine:?}");
    let err = jerry.fails(&["schedule", "--tech", "tom", "--date", "2026-12-08"]);
    assert!(err.contains("only his own"), "{err}");
    let theirs: Value =
        serde_json::from_str(&jerry.ok(&["schedule", "--date", "2026-12-08", "--json"])).unwrap();
    let theirs = theirs["bookings"].as_array().unwrap();
    assert!(theirs.is_empty());
    let (s, _) = relay.get_json(&format!("/v1/schedule?tech=jerry&{DAY}"), &tom_token);
    assert_eq!(s, 403);
    let (s, v) = relay.get_json(&format!("/v1/schedule?{DAY}"), &tom_token);
    assert_eq!(s, 200);
    assert_eq!(v["bookings"].as_array().unwrap().len(), 2);
    // Only Tom records his visits.
    let err = jerry.fails(&["case", "arrive", &id]);
    assert!(
        err.contains("no case"),
        "Jerry does not even hold it: {err}"
    );
    tom.ok(&["case", "arrive", &id]);
    tom.ok(&["sync"]);
    a.ok(&["sync"]);
    assert_eq!(a.show(&id)["appointment"]["status"], "arrived");
    // At the late booking the customer is not there: counted per customer
    // (both repairs are for the same phone).
    tom.ok(&["case", "no-show", &late]);
    tom.ok(&["sync"]);
    a.ok(&["sync"]);
    let shown = a.ok(&["case", "show", &id]);
    assert!(shown.contains("no-shows 1 by this customer"), "{shown}");
    let hq_token = relay.token("hq", "head_office", "HQ", "hq-2");
    let (_, v) = relay.get_json(&format!("/v1/cases/{id}"), &hq_token);
    assert_eq!(v["customer_no_shows"], 1);
}

#[test]
fn rescheduling_moves_the_visit_deadline_and_cancelling_the_case_frees_the_slot() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let hq_token = relay.token("hq", "head_office", "HQ", "hq-1");
    let hq = Cli::init(&tmp.path().join("hq"), &relay.url, &hq_token);
    let a = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("alice", "staff", "S1", "tab-a"),
    );
    let sup = Cli::init(
        &tmp.path().join("sup"),
        &relay.url,
        &relay.token("sue", "supervisor", "S1", "tab-s"),
    );
    publish_technicians(tmp.path(), &hq);
    a.ok(&["sync"]);
    sup.ok(&["sync"]);
    let id = confirmed_repair(&a);
    a.ok(&[
        "case",
        "book",
        &id,
        "--tech",
        "tom",
        "--at",
        "2026-12-08 10:00",
        "--duration",
        "90m",
        "--window",
        "30m",
    ]);
    let v = a.show(&id);
    assert_eq!(timer_due(&v, "visit_window"), "2026-12-08T02:30:00.000Z");
    assert_eq!(
        timer_due(&v, "visit_reminder_day_before"),
        "2026-12-07T10:00:00.000Z"
    );
    assert_eq!(
        timer_due(&v, "visit_reminder_morning"),
        "2026-12-08T02:00:00.000Z"
    );
    a.ok(&[
        "case",
        "reschedule",
        &id,
        "--at",
        "2026-12-09 15:00",
        "--window",
        "45m",
        "--reason",
        "customer request",
    ]);
    let v = a.show(&id);
    assert_eq!(timer_due(&v, "visit_window"), "2026-12-09T07:45:00.000Z");
    assert_eq!(v["appointment"]["minutes"], 90);
    a.ok(&["sync"]);
    let (_, rv) = relay.get_json(&format!("/v1/cases/{id}"), &hq_token);
    assert_eq!(timer_due(&rv, "visit_window"), "2026-12-09T07:45:00.000Z");

    // The supervisor cancels the case: its booking is cancelled with it
    // and Tom's slot is free for another case.
    sup.ok(&["sync"]);
    sup.ok(&[
        "case",
        "transition",
        &id,
        "cancelled",
        "--reason",
        "customer withdrew",
    ]);
    let v = sup.show(&id);
    assert!(v["appointment"].is_null());
    assert_eq!(v["bookings"][0]["status"], "cancelled");
    assert!(v["timers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["name"] != "visit_window"));
    sup.ok(&["sync"]);
    a.ok(&["sync"]);
    let other = confirmed_repair(&a);
    a.ok(&[
        "case",
        "book",
        &other,
        "--tech",
        "tom",
        "--at",
        "2026-12-09 15:00",
        "--duration",
        "90m",
    ]);
    a.ok(&["sync"]);
    let (_, sched) = relay.get_json(
        "/v1/schedule?store=S1&from=2026-12-09T00:00:00%2B08:00&to=2026-12-10T00:00:00%2B08:00",
        &hq_token,
    );
    let rows = sched["bookings"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{sched}");
    assert_eq!(rows[0]["case_id"], other.as_str());
}
