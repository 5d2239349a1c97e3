//! The in-memory read model against a brute-force reading of the same
//! summaries: every query, page and queue gives what filtering all rows by
//! hand gives, whatever the order of upserts; and the service metrics on
//! hand-made cases come out as computed on paper.

use aftercase_sync::relay::metrics::{self, GroupBy, Params};
use aftercase_sync::relay::readmodel::{Query, ReadModel, Scope};
use aftercase_sync::relay::summary::{customer_key, CaseSummary, Granted};
use aftercase_sync::CaseId;
use proptest::prelude::*;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const NOW: i64 = 1_764_000_000_000;

fn blank() -> CaseSummary {
    CaseSummary {
        case_no: None,
        kind: "repair".into(),
        store: "S1".into(),
        status: Some("reported".into()),
        assignee: None,
        open_conflicts: 0,
        open_timers: vec![],
        late: vec![],
        awaiting_approval: 0,
        granted_virtual_fen: 0,
        granted_cash_fen: 0,
        escalation: None,
        survey: None,
        created_at: Some(NOW - 10 * DAY),
        updated_at: NOW - DAY,
        last_user: "u".into(),
        last_device: "d".into(),
        policy_version: 1,
        schema: 2,
        created_by: "u".into(),
        category: None,
        skus: vec![],
        customer: None,
        states: vec![],
        resolved_at: None,
        met: vec![],
        granted: vec![],
        contact_overrides: 0,
        reworks: 0,
        bookings: vec![],
        no_shows: 0,
    }
}

fn summary() -> impl Strategy<Value = CaseSummary> {
    (
        (
            prop::sample::select(vec!["S1", "S2", "S3"]),
            prop::sample::select(vec!["repair", "complaint", "installation"]),
            prop::sample::select(vec!["reported", "confirmed", "closed"]),
            prop::option::of(prop::sample::select(vec!["tom", "ann"])),
            prop::option::of(prop::sample::select(vec!["S1-A-1", "S1-A-2"])),
        ),
        (
            0u32..3,
            0u32..3,
            prop::collection::vec(-5i64..5, 0..3),
            any::<bool>(),
            prop::sample::select(vec!["tom", "ann", "u"]),
            -3i64..3,
        ),
    )
        .prop_map(
            |((store, kind, status, assignee, case_no), (conf, appr, due, late, by, upd))| {
                CaseSummary {
                    store: store.into(),
                    kind: kind.into(),
                    status: Some(status.into()),
                    assignee: assignee.map(str::to_string),
                    case_no: case_no.map(str::to_string),
                    open_conflicts: conf,
                    awaiting_approval: appr,
                    open_timers: due
                        .iter()
                        .enumerate()
                        .map(|(i, d)| (format!("t{i}"), NOW + d * HOUR))
                        .collect(),
                    late: if late { vec!["refund".into()] } else { vec![] },
                    created_by: by.into(),
                    updated_at: NOW + upd * HOUR,
                    ..blank()
                }
            },
        )
}

fn query() -> impl Strategy<Value = Query> {
    (
        (
            prop::option::of(prop::sample::select(vec!["S1", "S2", "S9"])),
            prop::option::of(prop::sample::select(vec!["repair", "complaint"])),
            prop::option::of(prop::sample::select(vec!["reported", "closed"])),
            prop::option::of(prop::sample::select(vec!["tom", "ann"])),
            prop::option::of(prop::sample::select(vec!["S1-A-1", "S1-A-2"])),
        ),
        (
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            prop::option::of(-4i64..4),
            prop::option::of(-2i64..2),
        ),
    )
        .prop_map(
            |((store, kind, status, assignee, case_no), (conf, appr, breached, due, upd))| Query {
                store: store.map(str::to_string),
                kind: kind.map(str::to_string),
                status: status.map(str::to_string),
                assignee: assignee.map(str::to_string),
                case_no: case_no.map(str::to_string),
                has_conflict: conf,
                awaiting_approval: appr,
                breached,
                due_before: due.map(|d| NOW + d * HOUR),
                updated_since: upd.map(|u| NOW + u * HOUR),
                created_from: None,
                created_to: None,
            },
        )
}

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        Just(Scope::Chain),
        Just(Scope::Store("S1".into())),
        Just(Scope::Store("S2".into())),
        Just(Scope::Technician {
            store: "S1".into(),
            user: "tom".into()
        }),
    ]
}

fn id(n: u8) -> CaseId {
    let mut b = [0u8; 16];
    b[15] = n;
    b[0] = n.wrapping_mul(37);
    CaseId::from_bytes(b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Pages of any size, followed to the end, give exactly the rows a
    /// brute-force filter gives, in id order, even after cases were
    /// replaced (indexes of the old row must go).
    #[test]
    fn pages_equal_brute_force(
        rows in prop::collection::vec((0u8..24, summary()), 0..60),
        q in query(),
        scope in scope(),
        limit in 1usize..7,
    ) {
        let mut model = ReadModel::new();
        let mut truth = std::collections::BTreeMap::new();
        for (n, s) in rows {
            model.upsert(id(n), s.clone());
            truth.insert(id(n), s);
        }
        prop_assert_eq!(model.len(), truth.len());
        let want: Vec<CaseId> = truth
            .iter()
            .filter(|(_, s)| scope.admits(s) && q.keeps(s, NOW))
            .map(|(id, _)| *id)
            .collect();
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let page = model.query(&scope, &q, NOW, after, limit);
            prop_assert!(page.rows.len() <= limit);
            got.extend(page.rows.iter().map(|(id, _)| *id));
            match page.next {
                Some(n) => {
                    prop_assert_eq!(Some(n), page.rows.last().map(|(id, _)| *id));
                    after = Some(n);
                }
                None => break,
            }
        }
        prop_assert_eq!(&got, &want);
        let scanned: Vec<CaseId> = {
            let mut v: Vec<CaseId> = model.scan(&scope, &q, NOW).map(|(id, _)| id).collect();
            v.sort();
            v
        };
        prop_assert_eq!(scanned, want);
    }

    /// The deadline queues list each case once, at its earliest open
    /// deadline, earliest first, within the window.
    #[test]
    fn due_queue_equals_brute_force(
        rows in prop::collection::vec((0u8..24, summary()), 0..60),
        scope in scope(),
        from in -6i64..6,
        len in 0i64..8,
        limit in 1usize..5,
    ) {
        let mut model = ReadModel::new();
        let mut truth = std::collections::BTreeMap::new();
        for (n, s) in rows {
            model.upsert(id(n), s.clone());
            truth.insert(id(n), s);
        }
        let (from, to) = (NOW + from * HOUR, NOW + (from + len) * HOUR);
        let mut want: Vec<(i64, CaseId)> = truth
            .iter()
            .filter(|(_, s)| scope.admits(s))
            .filter_map(|(id, s)| s.next_due().map(|d| (d, *id)))
            .filter(|(d, _)| *d >= from && *d < to)
            .collect();
        want.sort();
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let page = model.due_between(&scope, from, to, after, limit);
            got.extend(page.rows.iter().map(|(d, id, _)| (*d, *id)));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        prop_assert_eq!(got, want);
    }
}

#[test]
fn stale_lists_rows_of_an_older_policy_or_schema() {
    let mut m = ReadModel::new();
    m.upsert(id(1), blank());
    m.upsert(
        id(2),
        CaseSummary {
            policy_version: 0,
            ..blank()
        },
    );
    m.upsert(
        id(3),
        CaseSummary {
            schema: 1,
            ..blank()
        },
    );
    assert_eq!(m.stale(1, 2), vec![id(2), id(3)]);
}

#[test]
fn customer_key_is_salted_and_ignores_formatting() {
    let a = customer_key(b"salt-1", Some("138 0013 8000")).unwrap();
    assert_eq!(
        Some(a.clone()),
        customer_key(b"salt-1", Some("13800138000"))
    );
    assert_ne!(
        Some(a.clone()),
        customer_key(b"salt-2", Some("13800138000"))
    );
    assert!(!a.contains("138"), "the number itself is not in the key");
    assert_eq!(customer_key(b"", Some("13800138000")), None);
    assert_eq!(customer_key(b"s", Some("n/a")), None);
}

fn params(group_by: GroupBy) -> Params {
    Params {
        from: NOW - 30 * DAY,
        to: NOW,
        group_by,
        repeat_window_days: 30,
        utc_offset_minutes: 480,
        now: NOW,
    }
}

#[test]
fn service_metrics_come_out_as_computed_by_hand() {
    let t0 = NOW - 20 * DAY;
    // Four repairs: responses after 1, 2, 3 and 10 hours; two resolved
    // after 24 and 48 hours.
    let repair = |resp: i64, resolved: Option<i64>| CaseSummary {
        created_at: Some(t0),
        states: {
            let mut s = vec![
                ("reported".to_string(), t0),
                ("confirmed".into(), t0 + resp * HOUR),
            ];
            if let Some(r) = resolved {
                s.push(("closed".into(), t0 + r * HOUR));
            }
            s
        },
        resolved_at: resolved.map(|r| t0 + r * HOUR),
        status: Some(
            if resolved.is_some() {
                "closed"
            } else {
                "confirmed"
            }
            .into(),
        ),
        ..blank()
    };
    let mut cases = vec![
        repair(1, Some(24)),
        repair(2, Some(48)),
        repair(3, None),
        repair(10, None),
    ];
    // One met late, one met on time, one open and overdue.
    cases[0].met = vec![("first_response".into(), false)];
    cases[1].met = vec![("first_response".into(), true)];
    cases[2].open_timers = vec![("first_response".into(), NOW - HOUR)];
    // A rework.
    cases[1].reworks = 1;
    // Surveys: mean 5 and mean 2.5.
    cases[0].survey = Some([5, 5, 5, 5]);
    cases[1].survey = Some([2, 3, 2, 3]);
    // Compensation.
    cases[0].granted = vec![Granted {
        tier: "cash".into(),
        fen: 5000,
        approver: "sup".into(),
    }];
    cases[1].granted = vec![Granted {
        tier: "virtual".into(),
        fen: 2000,
        approver: "ann".into(),
    }];
    cases[3].escalation = Some("head_office".into());
    cases[3].contact_overrides = 2;
    // Complaints of one customer, same category, 10 days apart: the later
    // is a repeat; another category is not; one before the period is
    // counted as the earlier contact but not in the volume.
    let complaint = |at: i64, cat: &str| CaseSummary {
        kind: "complaint".into(),
        created_at: Some(at),
        category: Some(cat.into()),
        customer: Some("c1".into()),
        ..blank()
    };
    cases.push(complaint(NOW - 25 * DAY, "delivery"));
    cases.push(complaint(NOW - 15 * DAY, "delivery"));
    cases.push(complaint(NOW - 14 * DAY, "attitude"));
    cases.push(complaint(NOW - 40 * DAY, "attitude"));
    // Two product-quality cases name SKU-9: flagged for the manufacturer.
    for _ in 0..2 {
        cases.push(CaseSummary {
            kind: "complaint".into(),
            created_at: Some(NOW - 5 * DAY),
            category: Some("product_quality".into()),
            skus: vec!["SKU-9".into()],
            ..blank()
        });
    }
    let r = metrics::compute(cases.iter(), &params(GroupBy::Kind));
    let t = &r.total;
    assert_eq!(t.cases, 9, "the complaint before the period is not counted");
    let repairs = r.groups.iter().find(|g| g.key == "repair").unwrap();
    assert_eq!(repairs.cases, 4);
    assert_eq!(repairs.resolved, 2);
    // Nearest rank: p50 of [1,2,3,10] is 2, p90 is 10.
    assert_eq!(repairs.response.p50_hours, Some(2.0));
    assert_eq!(repairs.response.p90_hours, Some(10.0));
    assert_eq!(repairs.resolution.p50_hours, Some(24.0));
    assert_eq!(repairs.resolution.p90_hours, Some(48.0));
    // Time in `reported` is the response time of each.
    assert_eq!(repairs.time_in_state["reported"].n, 4);
    let fr = &repairs.on_time["first_response"];
    assert_eq!((fr.met_on_time, fr.met_late, fr.open_overdue), (1, 1, 1));
    assert_eq!(fr.on_time_rate, Some(0.333));
    assert_eq!(repairs.satisfaction.responses, 2);
    assert_eq!(repairs.satisfaction.mean, Some(3.75));
    assert_eq!(repairs.satisfaction.share_4_5, Some(0.5));
    assert_eq!(repairs.satisfaction.response_rate, Some(1.0));
    assert_eq!(repairs.re_repairs, 1);
    assert_eq!(repairs.re_repair_rate, Some(0.25));
    assert_eq!(repairs.escalation_rate, Some(0.25));
    assert_eq!(repairs.compensation_by_tier_fen["cash"], 5000);
    assert_eq!(repairs.compensation_by_approver_fen["ann"], 2000);
    assert_eq!(repairs.contact_overrides, 2);
    let complaints = r.groups.iter().find(|g| g.key == "complaint").unwrap();
    assert_eq!(complaints.cases, 5);
    // delivery at -15d repeats -25d, and attitude at -14d repeats -40d
    // (26 days apart, inside the 30-day window); three complaints in the
    // period have a known customer.
    assert_eq!(complaints.repeat_complaints, 2);
    assert_eq!(complaints.repeat_complaint_rate, Some(0.667));
    assert_eq!(r.quality_skus.len(), 1);
    assert_eq!(r.quality_skus[0].sku, "SKU-9");
    assert_eq!(r.quality_skus[0].cases, 2);
}

#[test]
fn months_follow_the_store_time_zone() {
    // 2025-11-30T20:00Z is already December 1st at +08:00.
    let at = chrono::DateTime::parse_from_rfc3339("2025-11-30T20:00:00Z")
        .unwrap()
        .timestamp_millis();
    let c = CaseSummary {
        created_at: Some(at),
        ..blank()
    };
    let p = Params {
        from: at - DAY,
        to: at + DAY,
        ..params(GroupBy::Month)
    };
    let r = metrics::compute([c.clone()].iter(), &p);
    assert_eq!(r.groups[0].key, "2025-12");
    let r = metrics::compute(
        [c].iter(),
        &Params {
            utc_offset_minutes: 0,
            ..p
        },
    );
    assert_eq!(r.groups[0].key, "2025-11");
}

#[test]
fn a_repair_of_the_same_customer_and_sku_within_the_window_is_a_re_repair() {
    let rep = |at: i64| CaseSummary {
        created_at: Some(at),
        customer: Some("c9".into()),
        skus: vec!["FRIDGE-1".into()],
        ..blank()
    };
    let r = metrics::compute(
        [rep(NOW - 20 * DAY), rep(NOW - 5 * DAY)].iter(),
        &params(GroupBy::Chain),
    );
    assert_eq!(r.total.re_repairs, 1);
    assert_eq!(r.total.re_repair_rate, Some(0.5));
}

fn placed(
    tech: &str,
    case: u8,
    start_h: i64,
    hours: i64,
) -> aftercase_sync::rules::calendar::Placed {
    aftercase_sync::rules::calendar::Placed {
        tech: tech.into(),
        start: NOW + start_h * HOUR,
        end: NOW + (start_h + hours) * HOUR,
        case: id(case),
        booking: format!("b{case}"),
    }
}

/// Two cases booking one technician at overlapping times are one open
/// scheduling conflict on both, in the conflicts queue; rebooking one
/// closes it on both; the same technician name in another store is
/// another calendar; the model loaded in any order agrees.
#[test]
fn overlapping_bookings_across_cases_are_one_conflict_until_one_moves() {
    let booked = |store: &str, b: Vec<aftercase_sync::rules::calendar::Placed>| CaseSummary {
        store: store.into(),
        bookings: b,
        ..blank()
    };
    let conflicts_q = Query {
        has_conflict: Some(true),
        ..Query::default()
    };
    let mut m = ReadModel::new();
    m.upsert(id(1), booked("S1", vec![placed("tom", 1, 10, 2)]));
    m.upsert(id(3), booked("S2", vec![placed("tom", 3, 10, 2)]));
    assert!(m.schedule_conflicts(id(1)).is_empty());
    m.upsert(id(2), booked("S1", vec![placed("tom", 2, 11, 2)]));
    let c1 = m.schedule_conflicts(id(1)).to_vec();
    assert_eq!(c1.len(), 1);
    assert_eq!(m.schedule_conflicts(id(2)), &c1[..]);
    assert!(
        m.schedule_conflicts(id(3)).is_empty(),
        "another store's tom"
    );
    let page = m.query(&Scope::Chain, &conflicts_q, NOW, None, 100);
    let ids: Vec<CaseId> = page.rows.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&id(1)) && ids.contains(&id(2)));
    assert!(page.rows.iter().all(|(_, s)| s.open_conflicts == 1));
    let rows = m.bookings_between(
        &Scope::Store("S1".into()),
        None,
        Some("tom"),
        NOW,
        NOW + DAY,
    );
    assert_eq!(rows.len(), 2);
    // Loaded in another order, the model holds the same conflicts.
    let mut other = ReadModel::new();
    other.upsert(id(2), booked("S1", vec![placed("tom", 2, 11, 2)]));
    other.upsert(id(3), booked("S2", vec![placed("tom", 3, 10, 2)]));
    other.upsert(id(1), booked("S1", vec![placed("tom", 1, 10, 2)]));
    assert_eq!(other.schedule_conflicts(id(1)), &c1[..]);
    // The supervisor moves case 2 to the afternoon: closed on both.
    m.upsert(id(2), booked("S1", vec![placed("tom", 2, 14, 2)]));
    assert!(m.schedule_conflicts(id(1)).is_empty());
    assert!(m.schedule_conflicts(id(2)).is_empty());
    assert!(m
        .query(&Scope::Chain, &conflicts_q, NOW, None, 100)
        .rows
        .is_empty());
}
