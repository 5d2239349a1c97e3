//! Compensation: offers above the proposer's limit wait for an approval from
//! someone whose limit covers them; amounts never merge into sums.

mod support;

use aftercase_sync::access::Role;
use aftercase_sync::case::edit::{create_case, Customer, EditContext, NewCase};
use aftercase_sync::case::offer::{decide, offer, Decision};
use aftercase_sync::case::{CaseKind, CaseView, EditError};
use aftercase_sync::money::{parse_yuan, Tier};
use aftercase_sync::policy::Policy;
use aftercase_sync::{CaseId, Millis};
use automerge::{ActorId, Automerge};
use support::add_photo;

fn ctx(role: Role, n: u8) -> EditContext {
    EditContext {
        author: format!("{}-1", role.as_str().replace('_', "-"))
            .parse()
            .unwrap(),
        role,
        device: "d".parse().unwrap(),
        now: Millis(1_000 + n as i64),
        nonce: [n; 16],
    }
}

fn case() -> (Automerge, CaseId) {
    let id = CaseId::from_bytes([8; 16]);
    let mut doc = Automerge::new().with_actor(ActorId::from(&[1u8; 16][..]));
    create_case(
        &mut doc,
        &ctx(Role::Staff, 1),
        &NewCase {
            id,
            case_no: "S-d-1".into(),
            kind: CaseKind::DamageClaim,
            store: "S".parse().unwrap(),
            customer: Customer {
                name: "Q".into(),
                phone: "123456".into(),
            },
            sku: None,
            description: None,
        },
    )
    .unwrap();
    add_photo(&mut doc, id, &ctx(Role::Staff, 2));
    (doc, id)
}

fn status(doc: &Automerge, offer: &str) -> String {
    CaseView::from_doc(doc, "x")
        .offers
        .into_iter()
        .find(|o| o.id == offer)
        .unwrap()
        .status
}

#[test]
fn limits_decide_who_approves() {
    let p = Policy::default();
    // (proposer, tier, yuan, approver, expected status after proposal, approval allowed)
    type Row = (Role, Tier, &'static str, Option<Role>, &'static str, bool);
    let table: &[Row] = &[
        (Role::Staff, Tier::Virtual, "50", None, "approved", false),
        (
            Role::Staff,
            Tier::Virtual,
            "50.01",
            Some(Role::Staff),
            "proposed",
            false,
        ),
        (
            Role::Staff,
            Tier::Cash,
            "100",
            Some(Role::Staff),
            "proposed",
            false,
        ),
        (
            Role::Staff,
            Tier::Cash,
            "100",
            Some(Role::Supervisor),
            "proposed",
            true,
        ),
        (
            Role::Staff,
            Tier::Cash,
            "500",
            Some(Role::Supervisor),
            "proposed",
            true,
        ),
        (
            Role::Staff,
            Tier::Cash,
            "500.01",
            Some(Role::Supervisor),
            "proposed",
            false,
        ),
        (
            Role::Supervisor,
            Tier::Cash,
            "600",
            Some(Role::HeadOffice),
            "proposed",
            true,
        ),
        (Role::Supervisor, Tier::Cash, "499", None, "approved", false),
        (
            Role::HeadOffice,
            Tier::Cash,
            "20000",
            None,
            "approved",
            false,
        ),
    ];
    for (i, &(proposer, tier, amount, approver, first, may)) in table.iter().enumerate() {
        let (mut doc, id) = case();
        let fen = parse_yuan(amount).unwrap();
        let o = offer(&mut doc, id, &ctx(proposer, 2), &p, tier, fen, None).unwrap();
        assert_eq!(status(&doc, &o), first, "row {i}");
        if let Some(a) = approver {
            let r = decide(&mut doc, id, &ctx(a, 3), &p, &o, Decision::Approve);
            match (may, r) {
                (true, Ok(())) => assert_eq!(status(&doc, &o), "approved", "row {i}"),
                (false, Err(EditError::NotAllowed(msg))) => {
                    assert!(msg.contains("above what a"), "{msg}");
                    assert_eq!(status(&doc, &o), "proposed", "row {i}");
                }
                (m, r) => panic!("row {i}: expected approval allowed={m}, got {r:?}"),
            }
        }
    }
}

#[test]
fn technicians_do_not_offer_and_amounts_are_exact() {
    let p = Policy::default();
    let (mut doc, id) = case();
    assert!(matches!(
        offer(
            &mut doc,
            id,
            &ctx(Role::Technician, 2),
            &p,
            Tier::Virtual,
            100,
            None
        ),
        Err(EditError::NotAllowed(_))
    ));
    assert_eq!(parse_yuan("49.9").unwrap(), 4990);
    assert_eq!(parse_yuan("¥100").unwrap(), 10000);
    for bad in ["", "0", "-5", "1.234", "abc", "1e3"] {
        assert!(parse_yuan(bad).is_err(), "{bad}");
    }
}

#[test]
fn concurrent_offers_stay_separate_and_decisions_follow_status() {
    let p = Policy::default();
    let (base, id) = case();
    let mut a = base.fork().with_actor(ActorId::from(&[2u8; 16][..]));
    let mut b = base.fork().with_actor(ActorId::from(&[3u8; 16][..]));
    let oa = offer(
        &mut a,
        id,
        &ctx(Role::Staff, 4),
        &p,
        Tier::Cash,
        10_000,
        None,
    )
    .unwrap();
    let ob = offer(
        &mut b,
        id,
        &ctx(Role::Staff, 5),
        &p,
        Tier::Cash,
        10_000,
        None,
    )
    .unwrap();
    a.merge(&mut b).unwrap();
    let v = CaseView::from_doc(&a, "x");
    assert_eq!(
        v.offers.len(),
        2,
        "two +¥100 offers are two offers, never ¥200"
    );
    assert!(v.offers.iter().all(|o| o.amount == "100.00"));
    decide(
        &mut a,
        id,
        &ctx(Role::Supervisor, 6),
        &p,
        &oa,
        Decision::Approve,
    )
    .unwrap();
    decide(&mut a, id, &ctx(Role::Staff, 7), &p, &ob, Decision::Decline).unwrap();
    assert!(decide(&mut a, id, &ctx(Role::Staff, 8), &p, &ob, Decision::Accept).is_err());
    decide(&mut a, id, &ctx(Role::Staff, 9), &p, &oa, Decision::Accept).unwrap();
    assert_eq!(status(&a, &oa), "accepted");
    assert_eq!(status(&a, &ob), "declined");
    assert_eq!(CaseView::from_doc(&a, "x").policy_version, Some(1));
}

#[test]
fn two_offers_accepted_at_once_are_a_conflict_that_blocks_paying_out() {
    use aftercase_sync::case::transition::transition;
    let p = Policy::default();
    let (mut base, id) = case();
    for (n, s) in ["evidence_collected", "assessed", "offered"]
        .iter()
        .enumerate()
    {
        transition(&mut base, id, &ctx(Role::Supervisor, 20 + n as u8), s, None).unwrap();
    }
    let o1 = offer(
        &mut base,
        id,
        &ctx(Role::Supervisor, 30),
        &p,
        Tier::Cash,
        20_000,
        None,
    )
    .unwrap();
    let o2 = offer(
        &mut base,
        id,
        &ctx(Role::Supervisor, 31),
        &p,
        Tier::Cash,
        30_000,
        None,
    )
    .unwrap();
    let mut a = base.fork().with_actor(ActorId::from(&[5u8; 16][..]));
    let mut b = base.fork().with_actor(ActorId::from(&[6u8; 16][..]));
    decide(&mut a, id, &ctx(Role::Staff, 32), &p, &o1, Decision::Accept).unwrap();
    decide(&mut b, id, &ctx(Role::Staff, 33), &p, &o2, Decision::Accept).unwrap();
    a.merge(&mut b).unwrap();
    let v = CaseView::from_doc(&a, "x");
    let c = v
        .conflicts
        .iter()
        .find(|c| c.id == "offers")
        .expect("money conflict");
    assert_eq!(c.status, "open");
    transition(&mut a, id, &ctx(Role::Supervisor, 34), "agreed", None).unwrap();
    let e = transition(&mut a, id, &ctx(Role::Supervisor, 35), "settled", None).unwrap_err();
    assert!(matches!(e, EditError::OpenConflict { .. }), "{e}");
    assert!(matches!(
        decide(
            &mut a,
            id,
            &ctx(Role::Staff, 36),
            &p,
            &o2,
            Decision::Withdraw
        ),
        Err(EditError::NotAllowed(_))
    ));
    decide(
        &mut a,
        id,
        &ctx(Role::Supervisor, 37),
        &p,
        &o2,
        Decision::Withdraw,
    )
    .unwrap();
    assert!(CaseView::from_doc(&a, "x")
        .conflicts
        .iter()
        .all(|c| c.id != "offers"));
    transition(&mut a, id, &ctx(Role::Supervisor, 38), "settled", None).unwrap();
}
