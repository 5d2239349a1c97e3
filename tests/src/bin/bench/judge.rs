//! The relay's judgement of an upload (`relay::judge::judge`: every
//! operation against the write-rules table, then the handbook's semantic
//! checks), measured in process, without storage or sockets.
//!
//! Each upload is built as the relay sees it: the stored case, a device's
//! fork of it with the device's edits (the product's own edit functions),
//! the stored case with the fork merged in, and the changes since the
//! stored heads. Only the `judge` call is timed, many times over the same
//! upload; every upload must be accepted.
//!
//! Uploads: one typical edit (a note, a field change, a move, an offer) on
//! a case of 50 entries and on one of 2,000 (the judge's cost should not
//! grow with the case); a new case (creation plus four edits); a device's
//! offline batch of 200 edits in one upload.

use crate::{percentile, spread, us, Row};
use aftercase_sync::access::{Principal, Role};
use aftercase_sync::case::edit::{self, Customer, EditContext, NewCase};
use aftercase_sync::case::{booking, offer, transition, CaseField, CaseKind, ContactChannel};
use aftercase_sync::money::Tier;
use aftercase_sync::policy::Policy;
use aftercase_sync::relay::judge::{judge, Upload};
use aftercase_sync::{CaseId, Millis};
use automerge::{ActorId, Automerge, Change, ChangeHash};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// 2026-11-23 12:00 in China (inside calling hours), in UTC milliseconds.
const NOON: i64 = 1_795_406_400_000;
/// The target for a typical edit.
const TARGET: Duration = Duration::from_millis(1);

fn case_id() -> CaseId {
    CaseId::from_random_bytes(*b"judge-bench-case")
}

/// The default policy with `tech-1` bookable for the staff's store.
fn bench_policy() -> Policy {
    Policy {
        technicians: vec![aftercase_sync::policy::TechnicianHours {
            user: "tech-1".into(),
            store: staff().store.to_string(),
            start: "09:00".into(),
            end: "18:00".into(),
            days: vec![1, 2, 3, 4, 5, 6, 7],
            days_off: vec![],
        }],
        ..Policy::default()
    }
}

fn staff() -> Principal {
    Principal {
        user: "li-na".parse().expect("valid"),
        role: Role::Staff,
        store: "S1".parse().expect("valid"),
        device: "tab-1".parse().expect("valid"),
    }
}

/// An edit by `p`, the `n`th of its upload (distinct entry ids and times).
fn ctx(p: &Principal, n: u64) -> EditContext {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&n.to_be_bytes());
    nonce[8] = 0xb1;
    EditContext {
        author: p.user.clone(),
        role: p.role,
        device: p.device.clone(),
        now: Millis(NOON + n as i64 * 1000),
        nonce,
    }
}

fn new_case(doc: &mut Automerge, p: &Principal) {
    edit::create_case(
        doc,
        &ctx(p, 0),
        &NewCase {
            id: case_id(),
            case_no: "S1-tab-1-1".into(),
            kind: CaseKind::Repair,
            store: p.store.clone(),
            customer: Customer {
                name: "Zhao Lei".into(),
                phone: "13700000000".into(),
            },
            sku: Some("TV-55".into()),
            description: Some("No picture after a power cut".into()),
        },
    )
    .expect("create");
}

/// A repair case as the relay stores it: opened by a clerk, then notes
/// from four devices until it has `entries` timeline entries. Still
/// `reported`, so a clerk's move to `confirmed` is allowed.
fn stored_case(entries: u64) -> Automerge {
    let mut doc = Automerge::new().with_actor(ActorId::from(&[1u8; 16][..]));
    new_case(&mut doc, &staff());
    for n in 1..entries {
        let k = (n % 4) as u8;
        doc.set_actor(ActorId::from(&[10 + k; 16][..]));
        let p = Principal {
            user: format!("user-{k}").parse().expect("valid"),
            role: if k == 3 {
                Role::Technician
            } else {
                Role::Staff
            },
            store: "S1".parse().expect("valid"),
            device: format!("tab-{}", 10 + k).parse().expect("valid"),
        };
        edit::add_note(
            &mut doc,
            case_id(),
            &ctx(&p, 1_000_000 + n),
            &format!("note {n}: called the customer, the part is on its way"),
        )
        .expect("note");
    }
    doc
}

/// One upload, owned.
struct Prepared {
    after: Automerge,
    before: Vec<ChangeHash>,
    changes: Vec<Change>,
    stored_bytes: usize,
    /// What the relay keeps for a stored case (it counts once, then adds).
    entries_before: Option<usize>,
}

impl Prepared {
    /// What a device uploads after `edits` on its copy of `stored`.
    fn new(stored: &Automerge, edits: impl FnOnce(&mut Automerge)) -> Prepared {
        let before = stored.get_heads();
        let mut device = stored.fork().with_actor(ActorId::from(&[42u8; 16][..]));
        edits(&mut device);
        let mut after = stored.clone();
        after.merge(&mut device).expect("merge");
        let changes = after.get_changes(&before);
        Prepared {
            after,
            stored_bytes: if before.is_empty() {
                0
            } else {
                stored.save().len()
            },
            entries_before: Some(
                aftercase_sync::case::table::LOGS
                    .iter()
                    .filter_map(|l| {
                        aftercase_sync::case::read::map(stored, &automerge::ROOT, l.key)
                    })
                    .map(|m| automerge::ReadDoc::length(stored, &m))
                    .sum(),
            ),
            before,
            changes,
        }
    }

    fn ops(&self) -> usize {
        self.changes.iter().map(|c| c.len()).sum()
    }

    /// Sorted durations of `iterations` judgements of this upload by `p`.
    fn time(&self, p: &Principal, iterations: usize) -> Vec<Duration> {
        let policy = bench_policy();
        let upload = Upload {
            case: case_id(),
            doc: &self.after,
            before: &self.before,
            changes: &self.changes,
            stored_bytes: self.stored_bytes,
            entries_before: self.entries_before,
            principal: p,
            policy: &policy,
            now: Millis(NOON + 3_600_000),
            key: None,
        };
        if let Err(r) = judge(&upload) {
            panic!("the judge refused a real edit: {} {}", r.code, r.message);
        }
        let mut t = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t0 = Instant::now();
            let r = judge(black_box(&upload));
            t.push(t0.elapsed());
            let _ = black_box(r);
        }
        t.sort();
        t
    }
}

/// The `i`th edit of an offline batch: mostly notes, with field changes,
/// visits, offers and moves along the repair flow as a clerk makes them.
fn batch_edit(doc: &mut Automerge, p: &Principal, i: u64, policy: &Policy) {
    let c = ctx(p, 10 + i);
    let id = case_id();
    match i % 10 {
        3 => edit::set_field(
            doc,
            id,
            &c,
            CaseField::Priority,
            ["high", "normal"][(i % 2) as usize],
        )
        .expect("field"),
        5 => edit::log_contact(doc, id, &c, ContactChannel::Visit, "visited, left a card")
            .expect("contact"),
        7 => {
            offer::offer(doc, id, &c, policy, Tier::Virtual, 500, Some("coupon")).expect("offer");
        }
        9 => {
            // reported -> confirmed -> dispatched -> in_repair, then waiting
            // for parts and back.
            let to = match i / 10 {
                0 => "confirmed",
                1 => "dispatched",
                2 => "in_repair",
                k if k % 2 == 1 => "waiting_parts",
                _ => "in_repair",
            };
            if to == "dispatched" {
                // Dispatching is booking the technician (issue 12).
                let start = 1_796_695_200_000; // 2026-12-08 10:00 in China
                let slot = booking::Slot {
                    tech: "tech-1".into(),
                    start: Millis(start),
                    minutes: 60,
                    window_end: Millis(start + 1_800_000),
                    address: None,
                    hours_override: None,
                };
                booking::book(doc, id, &c, policy, &slot).expect("book");
            } else {
                transition::transition_with(doc, id, &c, policy, to, None).expect("move");
            }
        }
        _ => {
            edit::add_note(doc, id, &c, &format!("batch note {i}: checked the unit")).expect("note")
        }
    }
}

/// The rows of the `validate` group.
pub fn rows(quick: bool) -> Vec<Row> {
    let (typical, new_iters, batch_iters, large, batch) = if quick {
        (200, 200, 10, 500, 50)
    } else {
        (2_000, 2_000, 200, 2_000, 200)
    };
    let p = staff();
    let policy = bench_policy();
    let mut rows = Vec::new();
    let row = |what: String, up: &Prepared, t: &[Duration], target: bool| {
        let verdict = if !target {
            String::new()
        } else if percentile(t, 0.99) < TARGET {
            " (p99 target 1 ms: met)".into()
        } else {
            " (p99 target 1 ms: missed)".into()
        };
        eprintln!("  judge {what}: {}", spread(t, us));
        Row {
            scenario: format!(
                "Relay judge, {what} ({} change(s), {} operations)",
                up.changes.len(),
                up.ops()
            ),
            ours: format!("{} over {} uploads{verdict}", spread(t, us), t.len()),
            baseline: "-".into(),
            ratio: "-".into(),
        }
    };

    for entries in [50, large] {
        let t0 = Instant::now();
        let stored = stored_case(entries);
        eprintln!(
            "  case of {entries} entries built in {:.1} s ({} KiB saved)",
            t0.elapsed().as_secs_f64(),
            stored.save().len() / 1024
        );
        let id = case_id();
        let c = ctx(&p, 1);
        type Edit<'a> = Box<dyn Fn(&mut Automerge) + 'a>;
        let edits: [(&str, Edit); 4] = [
            (
                "a note",
                Box::new(|d| edit::add_note(d, id, &c, "called, no answer").expect("note")),
            ),
            (
                "a field change",
                Box::new(|d| {
                    edit::set_field(d, id, &c, CaseField::Priority, "high").expect("field")
                }),
            ),
            (
                "a move",
                Box::new(|d| {
                    transition::transition_with(d, id, &c, &policy, "confirmed", Some("ok"))
                        .expect("move")
                }),
            ),
            (
                "an offer",
                Box::new(|d| {
                    offer::offer(d, id, &c, &policy, Tier::Virtual, 2_000, Some("coupon"))
                        .expect("offer");
                }),
            ),
        ];
        for (name, e) in &edits {
            let up = Prepared::new(&stored, |d| e(d));
            let t = up.time(&p, typical);
            rows.push(row(
                format!("{name} on a case of {entries} entries"),
                &up,
                &t,
                true,
            ));
        }
    }

    let up = Prepared::new(&Automerge::new(), |d| {
        new_case(d, &p);
        for i in 0..4 {
            batch_edit(d, &p, [0, 3, 5, 9][i], &policy);
        }
    });
    let t = up.time(&p, new_iters);
    rows.push(row(
        "a new case (creation, a note, a field, a visit, a move)".into(),
        &up,
        &t,
        false,
    ));

    let stored = stored_case(50);
    let up = Prepared::new(&stored, |d| {
        for i in 0..batch {
            batch_edit(d, &p, i, &policy);
        }
    });
    let t = up.time(&p, batch_iters);
    rows.push(row(
        format!("an offline batch of {batch} edits on a case of 50 entries"),
        &up,
        &t,
        false,
    ));
    rows
}
