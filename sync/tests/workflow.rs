//! The flows of domain.md §1, checked move by move: every pair of states of
//! every kind is tried, and exactly the moves of the spec table below (plus
//! cancelling from any unfinished state) are accepted. The table is written
//! here from the domain notes, independently of `workflow::table`.

mod support;

use aftercase_sync::access::Role;
use aftercase_sync::case::booking;
use aftercase_sync::case::edit::{create_case, Customer, EditContext, NewCase};
use aftercase_sync::case::transition::resolve;
use aftercase_sync::case::{CaseKind, CaseView, EditError};
use aftercase_sync::{CaseId, Millis};
use automerge::{ActorId, Automerge};
use std::collections::{BTreeSet, VecDeque};
use support::add_photo;

const SPEC: &str = "
repair: reported>confirmed confirmed>dispatched dispatched>in_repair in_repair>waiting_parts
  waiting_parts>in_repair in_repair>pending_acceptance pending_acceptance>accepted
  pending_acceptance>in_repair accepted>followed_up followed_up>closed in_repair>cannot_repair
  waiting_parts>cannot_repair cannot_repair>closed
installation: requested>prepared prepared>scheduled scheduled>in_progress in_progress>scheduled
  in_progress>pending_acceptance pending_acceptance>accepted pending_acceptance>in_progress
  accepted>surveyed surveyed>closed in_progress>failed failed>closed
return_exchange: requested>under_review under_review>accepted under_review>rejected
  accepted>awaiting_goods awaiting_goods>inspecting inspecting>refunded inspecting>exchanged
  inspecting>partial_refund_keep inspecting>converted_to_repair refunded>closed exchanged>closed
  partial_refund_keep>closed converted_to_repair>closed rejected>closed
damage_claim: reported>evidence_collected evidence_collected>assessed assessed>offered
  offered>agreed offered>declined declined>offered declined>closed agreed>settled settled>closed
complaint: registered>accepted registered>not_accepted not_accepted>archived accepted>in_handling
  in_handling>coordinating in_handling>replied coordinating>replied replied>surveyed
  replied>archived surveyed>archived replied>in_handling surveyed>in_handling
";

fn spec(kind: CaseKind) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = None;
    for word in SPEC.split_whitespace() {
        if let Some(k) = word.strip_suffix(':') {
            current = Some(k.parse::<CaseKind>().unwrap());
        } else if current == Some(kind) {
            let (a, b) = word.split_once('>').unwrap();
            out.push((a.to_string(), b.to_string()));
        }
    }
    out
}

/// Moves the case as the product does: a move that needs a booking
/// (dispatched, scheduled) is made by booking a technician, anything else
/// by a plain transition.
fn transition(
    doc: &mut Automerge,
    id: CaseId,
    c: &EditContext,
    to: &str,
    reason: Option<&str>,
) -> Result<(), EditError> {
    let kind: CaseKind = CaseView::from_doc(doc, "x").kind.unwrap().parse().unwrap();
    let status = status(doc);
    if booking::needs_booking(kind, to) && booking::move_with_booking(kind, &status) == Some(to) {
        let policy = aftercase_sync::policy::Policy {
            technicians: vec![aftercase_sync::policy::TechnicianHours {
                user: "technician-user".into(),
                store: "S".into(),
                start: "09:00".into(),
                end: "18:00".into(),
                days: vec![1, 2, 3, 4, 5, 6, 7],
                days_off: vec![],
            }],
            ..aftercase_sync::policy::Policy::default()
        };
        // 1970-01-06 10:00 in China, inside the technician's hours.
        let start = 439_200_000;
        let slot = booking::Slot {
            tech: "technician-user".into(),
            start: Millis(start),
            minutes: 60,
            window_end: Millis(start + 1_800_000),
            address: None,
            hours_override: None,
        };
        return booking::book(doc, id, c, &policy, &slot).map(|_| ());
    }
    aftercase_sync::case::transition::transition(doc, id, c, to, reason)
}

fn ctx(role: Role, n: u64) -> EditContext {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&n.to_be_bytes());
    nonce[8] = role as u8;
    EditContext {
        author: format!("{}-user", role.as_str().replace('_', "-"))
            .parse()
            .unwrap(),
        role,
        device: "dev".parse().unwrap(),
        now: Millis(1_000_000 + n as i64 * 1000),
        nonce,
    }
}

fn new_case(kind: CaseKind) -> (Automerge, CaseId) {
    let id = CaseId::from_bytes([kind as u8 + 1; 16]);
    let mut doc = Automerge::new().with_actor(ActorId::from(&[9u8; 16][..]));
    create_case(
        &mut doc,
        &ctx(Role::Staff, 0),
        &NewCase {
            id,
            case_no: "S-d-1".into(),
            kind,
            store: "S".parse().unwrap(),
            customer: Customer {
                name: "Zhao".into(),
                phone: "13700000000".into(),
            },
            sku: None,
            description: None,
        },
    )
    .unwrap();
    // The facts the money, window and evidence rules need, so every move
    // of the flow can be tried: a purchase date inside the return window,
    // an accepted offer for the paying moves, a photo for a damage claim.
    let staff = ctx(Role::Staff, 1_000);
    if kind == CaseKind::DamageClaim {
        add_photo(&mut doc, id, &ctx(Role::Staff, 999));
    }
    aftercase_sync::case::edit::set_field(
        &mut doc,
        id,
        &staff,
        aftercase_sync::case::CaseField::PurchaseDate,
        "1970-01-01",
    )
    .unwrap();
    let policy = aftercase_sync::policy::Policy::default();
    let sup = ctx(Role::Supervisor, 1_001);
    let offer = aftercase_sync::case::offer::offer(
        &mut doc,
        id,
        &sup,
        &policy,
        aftercase_sync::money::Tier::Cash,
        100,
        None,
    )
    .unwrap();
    aftercase_sync::case::offer::decide(
        &mut doc,
        id,
        &ctx(Role::Staff, 1_002),
        &policy,
        &offer,
        aftercase_sync::case::offer::Decision::Accept,
    )
    .unwrap();
    (doc, id)
}

/// A shortest path of spec moves from the initial state to `target`.
fn path_to(kind: CaseKind, target: &str) -> Vec<String> {
    let moves = spec(kind);
    let start = kind.initial_status().to_string();
    let mut q = VecDeque::from([(start.clone(), vec![])]);
    let mut seen = BTreeSet::from([start]);
    while let Some((s, path)) = q.pop_front() {
        if s == target {
            return path;
        }
        for (a, b) in &moves {
            if *a == s && seen.insert(b.clone()) {
                let mut p = path.clone();
                p.push(b.clone());
                q.push_back((b.clone(), p));
            }
        }
    }
    panic!("{target} unreachable in {kind}");
}

fn status(doc: &Automerge) -> String {
    CaseView::from_doc(doc, "x").status.unwrap()
}

#[test]
fn every_move_of_every_kind_is_allowed_or_refused_as_specified() {
    let mut checked = 0;
    for kind in CaseKind::ALL {
        let moves = spec(kind);
        let mut states: BTreeSet<String> = moves
            .iter()
            .flat_map(|(a, b)| [a.clone(), b.clone()])
            .collect();
        states.insert("cancelled".into());
        for from in &states {
            if from == "cancelled" {
                continue;
            }
            let finished = !moves.iter().any(|(a, _)| a == from);
            for to in &states {
                let (mut doc, id) = new_case(kind);
                for (i, step) in path_to(kind, from).iter().enumerate() {
                    transition(
                        &mut doc,
                        id,
                        &ctx(Role::Supervisor, i as u64 + 1),
                        step,
                        Some("on the way"),
                    )
                    .unwrap();
                }
                assert_eq!(&status(&doc), from);
                let expected = if to == "cancelled" {
                    !finished
                } else {
                    moves.contains(&(from.clone(), to.clone()))
                };
                let result = transition(&mut doc, id, &ctx(Role::Supervisor, 99), to, Some("test"));
                match (expected, result) {
                    (true, Ok(())) => assert_eq!(&status(&doc), to),
                    (false, Err(EditError::Transition { allowed, .. })) => {
                        let mut want: Vec<String> = moves
                            .iter()
                            .filter(|(a, _)| a == from)
                            .map(|(_, b)| b.clone())
                            .collect();
                        if !finished {
                            want.push("cancelled".into());
                        }
                        want.sort();
                        let mut got = allowed.clone();
                        got.sort();
                        assert_eq!(
                            got, want,
                            "{kind} {from}: allowed states named in the error"
                        );
                        assert_eq!(&status(&doc), from);
                    }
                    (e, r) => panic!("{kind}: {from} -> {to}: expected allowed={e}, got {r:?}"),
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "only {checked} pairs checked");
}

#[test]
fn roles_limit_who_moves_what() {
    // (role, kind, from, to, allowed)
    let table: &[(Role, CaseKind, &str, &str, bool)] = &[
        (
            Role::Staff,
            CaseKind::ReturnExchange,
            "under_review",
            "accepted",
            true,
        ),
        (
            Role::Staff,
            CaseKind::Repair,
            "reported",
            "cancelled",
            false,
        ),
        (
            Role::Supervisor,
            CaseKind::Repair,
            "reported",
            "cancelled",
            true,
        ),
        (
            Role::Staff,
            CaseKind::Complaint,
            "replied",
            "archived",
            false,
        ),
        (
            Role::Supervisor,
            CaseKind::Complaint,
            "replied",
            "archived",
            true,
        ),
        (
            Role::Technician,
            CaseKind::Repair,
            "dispatched",
            "in_repair",
            true,
        ),
        (
            Role::Technician,
            CaseKind::Repair,
            "in_repair",
            "cannot_repair",
            true,
        ),
        (
            Role::Technician,
            CaseKind::Repair,
            "reported",
            "confirmed",
            false,
        ),
        (
            Role::Technician,
            CaseKind::ReturnExchange,
            "inspecting",
            "refunded",
            false,
        ),
        (
            Role::Technician,
            CaseKind::Installation,
            "in_progress",
            "failed",
            true,
        ),
        (
            Role::Staff,
            CaseKind::DamageClaim,
            "declined",
            "offered",
            false,
        ),
        (
            Role::HeadOffice,
            CaseKind::DamageClaim,
            "declined",
            "offered",
            true,
        ),
    ];
    for &(role, kind, from, to, allowed) in table {
        let (mut doc, id) = new_case(kind);
        for (i, step) in path_to(kind, from).iter().enumerate() {
            transition(
                &mut doc,
                id,
                &ctx(Role::Supervisor, i as u64 + 1),
                step,
                None,
            )
            .unwrap();
        }
        let r = transition(&mut doc, id, &ctx(role, 50), to, None);
        match (allowed, r) {
            (true, Ok(())) => {}
            (false, Err(EditError::NotAllowed(msg))) => assert!(!msg.is_empty()),
            (a, r) => panic!("{role} {kind} {from}->{to}: expected {a}, got {r:?}"),
        }
    }
}

fn fork(doc: &Automerge, actor: u8) -> Automerge {
    doc.fork().with_actor(ActorId::from(&[actor; 16][..]))
}

#[test]
fn concurrent_different_moves_become_one_conflict_a_supervisor_resolves() {
    let (mut base, id) = new_case(CaseKind::ReturnExchange);
    transition(&mut base, id, &ctx(Role::Staff, 1), "under_review", None).unwrap();
    let mut a = fork(&base, 1);
    let mut b = fork(&base, 2);
    transition(&mut a, id, &ctx(Role::Staff, 2), "accepted", None).unwrap();
    transition(
        &mut b,
        id,
        &ctx(Role::Supervisor, 3),
        "rejected",
        Some("used item"),
    )
    .unwrap();
    a.merge(&mut b.clone()).unwrap();
    b.merge(&mut a.clone()).unwrap();
    let (va, vb) = (CaseView::from_doc(&a, "x"), CaseView::from_doc(&b, "x"));
    assert_eq!(va, vb);
    assert_eq!(va.status.as_deref(), Some("under_review"));
    assert!(va.allowed_transitions.is_empty());
    assert_eq!(va.conflicts.len(), 1);
    let c = &va.conflicts[0];
    assert_eq!(
        (c.status.as_str(), c.options.clone()),
        ("open", vec!["accepted".to_string(), "rejected".to_string()])
    );
    // Nobody moves on while it is open.
    let e = transition(&mut a, id, &ctx(Role::Supervisor, 4), "accepted", None).unwrap_err();
    assert!(matches!(e, EditError::OpenConflict { .. }), "{e}");
    // Staff cannot resolve; a supervisor can, once.
    assert!(matches!(
        resolve(&mut a, id, &ctx(Role::Staff, 5), &c.id, "accepted"),
        Err(EditError::NotAllowed(_))
    ));
    assert!(resolve(&mut a, id, &ctx(Role::Supervisor, 6), &c.id, "closed").is_err());
    resolve(&mut a, id, &ctx(Role::Supervisor, 7), &c.id, "rejected").unwrap();
    assert!(resolve(&mut a, id, &ctx(Role::Supervisor, 8), &c.id, "accepted").is_err());
    b.merge(&mut a.clone()).unwrap();
    let vb = CaseView::from_doc(&b, "x");
    assert_eq!(vb.status.as_deref(), Some("rejected"));
    assert_eq!(vb.conflicts[0].chosen.as_deref(), Some("rejected"));
    assert_eq!(
        vb.allowed_transitions,
        vec!["closed".to_string(), "cancelled".to_string()]
    );
    transition(&mut b, id, &ctx(Role::Staff, 9), "closed", None).unwrap();
}

#[test]
fn identical_concurrent_moves_agree_and_later_moves_follow_either() {
    let (mut base, id) = new_case(CaseKind::ReturnExchange);
    transition(&mut base, id, &ctx(Role::Staff, 1), "under_review", None).unwrap();
    let mut a = fork(&base, 1);
    let mut b = fork(&base, 2);
    transition(&mut a, id, &ctx(Role::Staff, 2), "accepted", None).unwrap();
    transition(&mut b, id, &ctx(Role::Staff, 3), "accepted", None).unwrap();
    // b moves on before hearing from a.
    transition(&mut b, id, &ctx(Role::Staff, 4), "awaiting_goods", None).unwrap();
    a.merge(&mut b.clone()).unwrap();
    let v = CaseView::from_doc(&a, "x");
    assert!(v.conflicts.is_empty(), "{:?}", v.conflicts);
    assert_eq!(v.status.as_deref(), Some("awaiting_goods"));
}

#[test]
fn a_clerk_accepts_returns_only_inside_the_windows() {
    use aftercase_sync::case::edit::set_field;
    use aftercase_sync::case::transition::transition_with;
    use aftercase_sync::case::CaseField;
    let p = aftercase_sync::policy::Policy::default();
    // Noon China time on 2026-03-10 is 04:00 UTC.
    let day = |d: u32| {
        chrono::NaiveDate::from_ymd_opt(2026, 3, d)
            .unwrap()
            .and_hms_opt(4, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    };
    let at = |role: Role, n: u64, when: i64| EditContext {
        now: Millis(when),
        ..ctx(role, n)
    };
    // (purchase date, sale channel, category, request day, clerk may accept)
    let table: &[(&str, &str, &str, u32, bool)] = &[
        ("2026-03-01", "in_store", "other", 8, true), // day 7: "7天内(含)", the purchase day is day 0
        ("2026-03-01", "in_store", "other", 9, false), // day 8
        ("2026-03-01", "distance", "other", 8, true), // distance: window runs to receipt + 7
        ("2026-03-01", "in_store", "product_quality", 16, true), // 三包 exchange, day 15
        ("2026-03-01", "in_store", "product_quality", 17, false), // day 16
    ];
    // The facts are recorded by a supervisor (new_case already set a
    // purchase date, which a clerk may not change).
    for &(bought, channel, category, request, ok) in table {
        let (mut doc, id) = new_case(CaseKind::ReturnExchange);
        let t = day(request);
        set_field(
            &mut doc,
            id,
            &at(Role::Supervisor, 1, t),
            CaseField::PurchaseDate,
            bought,
        )
        .unwrap();
        set_field(
            &mut doc,
            id,
            &at(Role::Supervisor, 2, t),
            CaseField::SaleChannel,
            channel,
        )
        .unwrap();
        set_field(
            &mut doc,
            id,
            &at(Role::Staff, 3, t),
            CaseField::Category,
            category,
        )
        .unwrap();
        transition_with(
            &mut doc,
            id,
            &at(Role::Staff, 4, t),
            &p,
            "under_review",
            None,
        )
        .unwrap();
        let r = transition_with(&mut doc, id, &at(Role::Staff, 5, t), &p, "accepted", None);
        match (ok, r) {
            (true, Ok(())) => {}
            (false, Err(EditError::NotAllowed(msg))) => {
                assert!(msg.contains("goodwill"), "{msg}");
                // The supervisor may grant the exception.
                transition_with(
                    &mut doc,
                    id,
                    &at(Role::Supervisor, 6, t),
                    &p,
                    "accepted",
                    Some("goodwill"),
                )
                .unwrap();
            }
            (ok, r) => {
                panic!("{bought} {channel} {category} day {request}: expected {ok}, got {r:?}")
            }
        }
    }
}
