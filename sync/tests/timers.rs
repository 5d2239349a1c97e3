//! Deadlines follow the events, including late ones from offline devices.

use aftercase_sync::access::Role;
use aftercase_sync::case::edit::{create_case, log_contact, Customer, EditContext, NewCase};
use aftercase_sync::case::transition::transition;
use aftercase_sync::case::{CaseKind, CaseView, ContactChannel};
use aftercase_sync::{CaseId, Millis};
use automerge::{ActorId, Automerge};

const H: i64 = 3_600_000;
const T0: i64 = 1_790_000_000_000;

fn ctx(at: i64, n: u8) -> EditContext {
    EditContext {
        author: "u".parse().unwrap(),
        role: Role::Supervisor,
        device: "d".parse().unwrap(),
        now: Millis(at),
        nonce: [n; 16],
    }
}

fn case(kind: CaseKind) -> (Automerge, CaseId) {
    let id = CaseId::from_bytes([4; 16]);
    let mut doc = Automerge::new().with_actor(ActorId::from(&[1u8; 16][..]));
    create_case(
        &mut doc,
        &ctx(T0, 1),
        &NewCase {
            id,
            case_no: "S-d-1".into(),
            kind,
            store: "S".parse().unwrap(),
            customer: Customer {
                name: "C".into(),
                phone: "123456".into(),
            },
            sku: None,
            description: None,
        },
    )
    .unwrap();
    (doc, id)
}

fn timer(doc: &Automerge, name: &str, now: i64) -> (bool, bool) {
    let mut v = CaseView::from_doc(doc, "x");
    v.evaluate_timers(Millis(now));
    let t = v
        .timers
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no {name}: {:?}", v.timers));
    (t.done, t.breached)
}

#[test]
fn return_review_is_due_in_24_hours_and_late_offline_events_count() {
    let (mut doc, id) = case(CaseKind::ReturnExchange);
    transition(&mut doc, id, &ctx(T0 + H, 2), "under_review", None).unwrap();
    assert_eq!(timer(&doc, "return_review", T0 + 23 * H), (false, false));
    assert_eq!(timer(&doc, "return_review", T0 + 25 * H), (false, true));
    // A tablet accepted it offline at hour 20; the event arrives at hour 30.
    let mut tablet = doc.fork().with_actor(ActorId::from(&[2u8; 16][..]));
    transition(&mut tablet, id, &ctx(T0 + 20 * H, 3), "accepted", None).unwrap();
    doc.merge(&mut tablet).unwrap();
    assert_eq!(timer(&doc, "return_review", T0 + 30 * H), (true, false));
    // Refund due 7 days after the goods arrive.
    transition(&mut doc, id, &ctx(T0 + 31 * H, 4), "awaiting_goods", None).unwrap();
    transition(&mut doc, id, &ctx(T0 + 40 * H, 5), "inspecting", None).unwrap();
    assert_eq!(
        timer(&doc, "refund", T0 + 40 * H + 7 * 24 * H),
        (false, false)
    );
    assert_eq!(
        timer(&doc, "refund", T0 + 40 * H + 7 * 24 * H + 1),
        (false, true)
    );
    // A refund pays the customer: it needs an accepted offer.
    let policy = aftercase_sync::policy::Policy::default();
    let offer = aftercase_sync::case::offer::offer(
        &mut doc,
        id,
        &ctx(T0 + 41 * H, 7),
        &policy,
        aftercase_sync::money::Tier::Cash,
        29_900,
        None,
    )
    .unwrap();
    aftercase_sync::case::offer::decide(
        &mut doc,
        id,
        &ctx(T0 + 41 * H, 8),
        &policy,
        &offer,
        aftercase_sync::case::offer::Decision::Accept,
    )
    .unwrap();
    transition(
        &mut doc,
        id,
        &ctx(T0 + 41 * H + 8 * 24 * H, 6),
        "refunded",
        None,
    )
    .unwrap();
    assert_eq!(
        timer(&doc, "refund", T0 + 100 * 24 * H),
        (true, true),
        "refunded late stays breached"
    );
}

#[test]
fn daily_update_while_coordinating_resets_with_each_contact() {
    let (mut doc, id) = case(CaseKind::Complaint);
    for (i, s) in ["accepted", "in_handling", "coordinating"]
        .iter()
        .enumerate()
    {
        transition(&mut doc, id, &ctx(T0 + i as i64 * H, 10 + i as u8), s, None).unwrap();
    }
    let entered = T0 + 2 * H;
    assert_eq!(
        timer(&doc, "customer_update", entered + 24 * H),
        (false, false)
    );
    assert_eq!(
        timer(&doc, "customer_update", entered + 24 * H + 1),
        (false, true)
    );
    log_contact(
        &mut doc,
        id,
        &ctx(entered + 20 * H, 20),
        ContactChannel::Sms,
        "parts ordered, update tomorrow",
    )
    .unwrap();
    assert_eq!(
        timer(&doc, "customer_update", entered + 40 * H),
        (false, false)
    );
    assert_eq!(
        timer(&doc, "customer_update", entered + 45 * H),
        (false, true)
    );
    // First response was within 2 hours; the reply is still open.
    assert_eq!(timer(&doc, "first_response", T0 + 100 * H), (true, false));
    assert_eq!(timer(&doc, "complaint_reply", T0 + 47 * H), (false, false));
    assert_eq!(timer(&doc, "complaint_reply", T0 + 49 * H), (false, true));
}

/// 2026-11-27, a Friday, 15:00 China time.
const FRIDAY_15: i64 = 1_795_762_800_000;
const DAY: i64 = 24 * H;

fn complaint_at(at: i64, regulator: bool) -> (Automerge, CaseId) {
    let id = CaseId::from_bytes([5; 16]);
    let mut doc = Automerge::new().with_actor(ActorId::from(&[1u8; 16][..]));
    create_case(
        &mut doc,
        &ctx(at, 1),
        &NewCase {
            id,
            case_no: "S-d-2".into(),
            kind: CaseKind::Complaint,
            store: "S".parse().unwrap(),
            customer: Customer {
                name: "C".into(),
                phone: "123456".into(),
            },
            sku: None,
            description: None,
        },
    )
    .unwrap();
    if regulator {
        aftercase_sync::case::edit::set_field(
            &mut doc,
            id,
            &ctx(at, 2),
            aftercase_sync::case::edit::CaseField::Channel,
            "regulator_transfer",
        )
        .unwrap();
    }
    (doc, id)
}

#[test]
fn a_complaint_from_12315_must_be_accepted_within_7_working_days_and_mediated_within_45() {
    let (mut doc, id) = complaint_at(FRIDAY_15, true);
    // Friday 15:00 + 7 working days = the Tuesday after next, 15:00 (11
    // calendar days: two weekends skipped).
    let due = FRIDAY_15 + 11 * DAY;
    assert_eq!(timer(&doc, "regulator_acceptance", due), (false, false));
    assert_eq!(timer(&doc, "regulator_acceptance", due + 1), (false, true));
    // No mediation deadline before acceptance.
    let v = CaseView::from_doc(&doc, "x");
    assert!(!v.timers.iter().any(|t| t.name == "regulator_mediation"));
    // Accepted on the last working day: in time; mediation runs 45
    // working days (nine weeks) from then.
    transition(&mut doc, id, &ctx(due, 3), "accepted", None).unwrap();
    assert_eq!(
        timer(&doc, "regulator_acceptance", due + 30 * DAY),
        (true, false)
    );
    let mediation_due = due + 63 * DAY;
    assert_eq!(
        timer(&doc, "regulator_mediation", mediation_due),
        (false, false)
    );
    assert_eq!(
        timer(&doc, "regulator_mediation", mediation_due + 1),
        (false, true)
    );
    transition(&mut doc, id, &ctx(due + DAY, 4), "in_handling", None).unwrap();
    transition(&mut doc, id, &ctx(due + 2 * DAY, 5), "replied", None).unwrap();
    assert_eq!(
        timer(&doc, "regulator_mediation", mediation_due + DAY),
        (true, false)
    );

    // A complaint from the shop floor has neither deadline.
    let (plain, _) = complaint_at(FRIDAY_15, false);
    let v = CaseView::from_doc(&plain, "x");
    assert!(
        !v.timers.iter().any(|t| t.name.starts_with("regulator")),
        "{:?}",
        v.timers
    );
}

#[test]
fn working_days_skip_weekends_at_the_same_time_of_day() {
    let p = aftercase_sync::policy::Policy::default();
    let add = |from: i64, n: u32| aftercase_sync::rules::timers::add_working_days(&p, from, n);
    assert_eq!(add(FRIDAY_15, 1), FRIDAY_15 + 3 * DAY); // Monday
    assert_eq!(add(FRIDAY_15, 5), FRIDAY_15 + 7 * DAY); // next Friday
    let saturday = FRIDAY_15 + DAY;
    assert_eq!(add(saturday, 1), FRIDAY_15 + 3 * DAY); // Monday, 15:00
    assert_eq!(add(FRIDAY_15, 0), FRIDAY_15);
}

#[test]
fn a_cancelled_case_has_no_open_deadline() {
    // A complaint replied to, then cancelled before the satisfaction
    // survey: the survey deadline stops at the cancellation and is never
    // overdue.
    let (mut doc, id) = case(CaseKind::Complaint);
    for (i, to) in ["accepted", "in_handling", "replied"].iter().enumerate() {
        transition(
            &mut doc,
            id,
            &ctx(T0 + (i as i64 + 1) * H, 10 + i as u8),
            to,
            None,
        )
        .unwrap();
    }
    let long_after = T0 + 400 * DAY;
    assert_eq!(timer(&doc, "follow_up_survey", long_after), (false, true));
    transition(&mut doc, id, &ctx(T0 + 10 * H, 20), "cancelled", None).unwrap();
    assert_eq!(timer(&doc, "follow_up_survey", long_after), (true, false));
    let v = {
        let mut v = CaseView::from_doc(&doc, "x");
        v.evaluate_timers(Millis(long_after));
        v
    };
    assert!(v.timers.iter().all(|t| t.done), "{:?}", v.timers);

    // A complaint cancelled after its first response fell due stays
    // breached (it was late), but is not open.
    let (mut c, cid) = complaint_at(FRIDAY_15, false);
    transition(
        &mut c,
        cid,
        &ctx(FRIDAY_15 + 5 * DAY, 30),
        "cancelled",
        None,
    )
    .unwrap();
    let mut v = CaseView::from_doc(&c, "x");
    v.evaluate_timers(Millis(FRIDAY_15 + 400 * DAY));
    assert!(v.timers.iter().all(|t| t.done), "{:?}", v.timers);
    let first = v
        .timers
        .iter()
        .find(|t| t.name == "first_response")
        .unwrap();
    assert!(first.breached);
    let escalation = v
        .timers
        .iter()
        .find(|t| t.name == "suggest_escalation")
        .unwrap();
    assert!(!escalation.breached, "cancelled before escalation fell due");
}

#[test]
fn a_complaint_is_not_accepted_only_with_a_reason() {
    let (mut doc, id) = complaint_at(FRIDAY_15, false);
    let e = transition(&mut doc, id, &ctx(FRIDAY_15 + H, 3), "not_accepted", None).unwrap_err();
    assert!(e.to_string().contains("must say why"), "{e}");
    let e = transition(
        &mut doc,
        id,
        &ctx(FRIDAY_15 + H, 3),
        "not_accepted",
        Some("  "),
    )
    .unwrap_err();
    assert!(e.to_string().contains("must say why"), "{e}");
    transition(
        &mut doc,
        id,
        &ctx(FRIDAY_15 + H, 3),
        "not_accepted",
        Some("not a product we sold"),
    )
    .unwrap();
    assert_eq!(
        CaseView::from_doc(&doc, "x").status.as_deref(),
        Some("not_accepted")
    );
}

/// The visit's deadlines: the window is met by the arrival and a late
/// arrival breaches it; the reminder the day before is met by a call that
/// day; the morning reminder, with no call that morning, is overdue once
/// its time has passed.
#[test]
fn a_late_arrival_breaches_the_visit_window_and_reminders_are_met_by_calls() {
    use aftercase_sync::case::booking::{self, Slot};
    use aftercase_sync::policy::{Policy, TechnicianHours};
    let policy = Policy {
        technicians: vec![TechnicianHours {
            user: "tom".into(),
            store: "S".into(),
            start: "09:00".into(),
            end: "18:00".into(),
            days: vec![1, 2, 3, 4, 5, 6, 7],
            days_off: vec![],
        }],
        ..Policy::default()
    };
    // 2026-12-08 00:00 in China.
    let day = 1_796_659_200_000;
    let (mut doc, id) = case(CaseKind::Repair);
    transition(&mut doc, id, &ctx(T0 + H, 2), "confirmed", None).unwrap();
    let slot = Slot {
        tech: "tom".into(),
        start: Millis(day + 10 * H),
        minutes: 90,
        window_end: Millis(day + 10 * H + 30 * 60_000),
        address: None,
        hours_override: None,
    };
    booking::book(&mut doc, id, &ctx(T0 + 2 * H, 3), &policy, &slot).unwrap();
    // Before anything: all three open, none breached.
    for name in [
        "visit_window",
        "visit_reminder_day_before",
        "visit_reminder_morning",
    ] {
        assert_eq!(timer(&doc, name, T0 + 3 * H), (false, false), "{name}");
    }
    // A call at noon the day before meets the first reminder.
    log_contact(
        &mut doc,
        id,
        &ctx(day - 12 * H, 4),
        ContactChannel::Phone,
        "reminded of tomorrow's visit",
    )
    .unwrap();
    assert_eq!(timer(&doc, "visit_reminder_day_before", day), (true, false));
    // Nobody called on the morning: overdue after 10:00.
    assert_eq!(
        timer(&doc, "visit_reminder_morning", day + 11 * H),
        (false, true)
    );
    // Tom arrives at 10:45, after the window (10:30).
    booking::record_visit(
        &mut doc,
        id,
        &ctx(day + 10 * H + 45 * 60_000, 5),
        None,
        "arrive",
    )
    .unwrap();
    assert_eq!(timer(&doc, "visit_window", day + 12 * H), (true, true));
}

#[test]
fn a_finished_case_has_no_open_deadline() {
    // A repair booked for Saturday and closed on Wednesday evening, before
    // the reminder calls for the visit fell due (the work was done some
    // other way): the closed case keeps no open reminder that would later
    // show overdue.
    use aftercase_sync::case::booking::{self, Slot};
    let policy = aftercase_sync::policy::Policy {
        technicians: vec![aftercase_sync::policy::TechnicianHours {
            user: "t".into(),
            store: "S".into(),
            start: "09:00".into(),
            end: "18:00".into(),
            days: vec![1, 2, 3, 4, 5, 6, 7],
            days_off: vec![],
        }],
        ..Default::default()
    };
    let visit = chrono::DateTime::parse_from_rfc3339("2026-09-26T10:00:00+08:00")
        .unwrap()
        .timestamp_millis();
    let closed_at = |at: i64| {
        let (mut doc, id) = case(CaseKind::Repair);
        transition(&mut doc, id, &ctx(T0 + H, 10), "confirmed", None).unwrap();
        booking::book(
            &mut doc,
            id,
            &ctx(T0 + 2 * H, 11),
            &policy,
            &Slot {
                tech: "t".into(),
                start: Millis(visit),
                minutes: 60,
                window_end: Millis(visit + H),
                address: None,
                hours_override: None,
            },
        )
        .unwrap();
        let before: Vec<String> = {
            let v = CaseView::from_doc(&doc, "x");
            v.timers
                .iter()
                .filter(|t| !t.done)
                .map(|t| t.name.clone())
                .collect()
        };
        assert!(
            before.iter().any(|n| n == "visit_reminder_day_before"),
            "{before:?}"
        );
        for (i, to) in [
            "in_repair",
            "pending_acceptance",
            "accepted",
            "followed_up",
            "closed",
        ]
        .iter()
        .enumerate()
        {
            let t = if *to == "closed" {
                at
            } else {
                T0 + (3 + i as i64) * H
            };
            transition(&mut doc, id, &ctx(t, 20 + i as u8), to, None).unwrap();
        }
        let mut v = CaseView::from_doc(&doc, "x");
        v.evaluate_timers(Millis(visit + 400 * DAY));
        assert!(v.timers.iter().all(|t| t.done), "{:?}", v.timers);
        v.timers
            .into_iter()
            .find(|t| t.name == "visit_reminder_day_before")
            .unwrap()
    };
    let reminder = closed_at(T0 + 12 * H);
    assert!(!reminder.breached, "closed before the reminder fell due");
    // Closed after it fell due with no call made: done (nothing is open
    // on a finished case) but late, which head office's metrics count.
    let late = closed_at(reminder.due_millis() + H);
    assert!(late.breached);
}
