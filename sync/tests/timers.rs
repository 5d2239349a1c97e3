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
