//! The relay's judge against the write-rules table: every edit the product
//! makes passes it, for every role allowed to make it; every path of the
//! table is written by some edit; and forged operations of every kind
//! (edits of recorded entries, deletions, replaced maps, unknown keys,
//! forged identities, split offers) are refused with a typed code.

use aftercase_sync::access::{Principal, Role};
use aftercase_sync::case::edit::{self, create_case, Customer, EditContext, NewCase};
use aftercase_sync::case::table::{self, RootShape};
use aftercase_sync::case::{
    booking, evidence, offer, service, transition, CaseField, CaseKind, ContactChannel,
};
use aftercase_sync::money::Tier;
use aftercase_sync::policy::Policy;
use aftercase_sync::protocol::{Refusal, RefusalCode};
use aftercase_sync::relay::judge::{judge, Upload};
use aftercase_sync::rules::freight::FreightFacts;
use aftercase_sync::{CaseId, Millis};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ReadDoc, ScalarValue, ROOT};
use std::collections::BTreeSet;

/// 2026-11-23 12:00 in China (inside calling hours), in UTC milliseconds.
const NOON: i64 = 1_795_406_400_000;
const CASE: [u8; 16] = [7; 16];

fn principal(role: Role) -> Principal {
    Principal {
        user: format!("{}-1", role.as_str().replace('_', "-"))
            .parse()
            .unwrap(),
        role,
        store: "S1".parse().unwrap(),
        device: format!("dev-{}", role.as_str().replace('_', "-"))
            .parse()
            .unwrap(),
    }
}

fn ctx(p: &Principal, n: u8) -> EditContext {
    EditContext {
        author: p.user.clone(),
        role: p.role,
        device: p.device.clone(),
        now: Millis(NOON + i64::from(n) * 1000),
        nonce: [n; 16],
    }
}

/// The default policy with `technician-1` bookable for store S1, Monday to
/// Saturday 09:00-18:00.
fn booking_policy() -> Policy {
    Policy {
        technicians: vec![aftercase_sync::policy::TechnicianHours {
            user: "technician-1".into(),
            store: "S1".into(),
            start: "09:00".into(),
            end: "18:00".into(),
            days: vec![1, 2, 3, 4, 5, 6],
            days_off: vec![],
        }],
        ..Policy::default()
    }
}

/// A slot for `technician-1` on Tuesday 2026-11-24 at `hour`:00 in China.
fn slot(hour: i64, minutes: i64) -> booking::Slot {
    let start = NOON + (22 + hour - 10) * 3_600_000;
    booking::Slot {
        tech: "technician-1".into(),
        start: Millis(start),
        minutes,
        window_end: Millis(start + 30 * 60_000),
        address: None,
        hours_override: None,
    }
}

fn id() -> CaseId {
    CaseId::from_bytes(CASE)
}

/// A case opened by a clerk, as the relay stored it.
fn stored_case(kind: CaseKind) -> Automerge {
    let staff = principal(Role::Staff);
    let mut doc = Automerge::new().with_actor(ActorId::from(&[1u8; 16][..]));
    create_case(
        &mut doc,
        &ctx(&staff, 1),
        &NewCase {
            id: id(),
            case_no: "S1-dev-1".into(),
            kind,
            store: staff.store.clone(),
            customer: Customer {
                name: "Zhao Lei".into(),
                phone: "13700000000".into(),
            },
            sku: Some("SKU-1".into()),
            description: Some("screen cracked".into()),
        },
    )
    .unwrap();
    doc
}

/// Judges what `edit` adds to `doc` as an upload by `p`.
fn judged(
    doc: &Automerge,
    p: &Principal,
    edit: impl FnOnce(&mut Automerge),
) -> Result<(), Refusal> {
    judged_with(doc, p, &booking_policy(), edit)
}

fn judged_with(
    doc: &Automerge,
    p: &Principal,
    policy: &Policy,
    edit: impl FnOnce(&mut Automerge),
) -> Result<(), Refusal> {
    let before = doc.get_heads();
    let mut device = doc.fork().with_actor(ActorId::from(&[42u8; 16][..]));
    edit(&mut device);
    let mut after = doc.clone();
    after.merge(&mut device).unwrap();
    let changes = after.get_changes(&before);
    judge(&Upload {
        case: id(),
        doc: &after,
        before: &before,
        changes: &changes,
        stored_bytes: doc.save().len(),
        entries_before: None,
        principal: p,
        policy,
        now: Millis(NOON + 60_000),
        key: None,
    })
    .map(|_| ())
}

fn accept(doc: &mut Automerge, p: &Principal, edit: impl FnOnce(&mut Automerge)) {
    let before = doc.get_heads();
    let mut device = doc.fork().with_actor(ActorId::random());
    edit(&mut device);
    doc.merge(&mut device).unwrap();
    let changes = doc.get_changes(&before);
    judge(&Upload {
        case: id(),
        doc,
        before: &before,
        changes: &changes,
        stored_bytes: 0,
        entries_before: None,
        principal: p,
        policy: &booking_policy(),
        now: Millis(NOON + 60_000),
        key: None,
    })
    .unwrap();
}

fn code(r: Result<(), Refusal>) -> RefusalCode {
    r.expect_err("the judge accepted a forged upload").code
}

/// Every (root key, field) the document holds, for the coverage check.
fn paths(doc: &Automerge) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for k in doc.keys(ROOT) {
        out.insert(k.clone());
        let Ok(Some((automerge::Value::Object(ObjType::Map), m))) = doc.get(ROOT, &k) else {
            continue;
        };
        for sub in doc.keys(&m) {
            match doc.get(&m, &sub) {
                Ok(Some((automerge::Value::Object(ObjType::Map), e))) => {
                    for f in doc.keys(&e) {
                        out.insert(format!("{k}/*/{f}"));
                    }
                }
                _ => {
                    out.insert(format!("{k}/{sub}"));
                }
            }
        }
    }
    out
}

#[test]
fn every_edit_passes_the_judge_and_covers_the_table() {
    let policy = Policy::default();
    let staff = principal(Role::Staff);
    let sup = principal(Role::Supervisor);
    let tech = principal(Role::Technician);
    let ho = principal(Role::HeadOffice);

    // A new case judged as a whole.
    let empty = Automerge::new();
    judged(&empty, &staff, |d| {
        *d = stored_case(CaseKind::ReturnExchange);
    })
    .unwrap();

    let mut doc = stored_case(CaseKind::ReturnExchange);
    let c = id();
    for (i, field) in CaseField::ALL.into_iter().enumerate() {
        let value = match field {
            CaseField::Priority => "high",
            CaseField::Category => "product_quality",
            CaseField::Channel => "phone",
            CaseField::SaleChannel => "in_store",
            CaseField::RequestedRemedy => "refund",
            CaseField::SafetyRisk => "true",
            CaseField::CustomerPhone => "13800000000",
            CaseField::PurchaseDate | CaseField::ReceivedDate => "2026-11-20",
            CaseField::Serial => "SN-20261120-7",
            _ => "some text",
        };
        accept(&mut doc, &staff, |d| {
            edit::set_field(d, c, &ctx(&staff, 10 + i as u8), field, value).unwrap()
        });
    }
    accept(&mut doc, &tech, |d| {
        edit::add_note(d, c, &ctx(&tech, 40), "checked the screen").unwrap()
    });
    accept(&mut doc, &tech, |d| {
        evidence::attach(d, c, &ctx(&tech, 37), &policy, &photo(1)).unwrap()
    });
    accept(&mut doc, &sup, |d| {
        evidence::remove(d, c, &ctx(&sup, 38), &photo(1).hash, "wrong customer").unwrap()
    });
    accept(&mut doc, &staff, |d| {
        edit::log_contact(d, c, &ctx(&staff, 41), ContactChannel::Phone, "reached").unwrap()
    });
    accept(&mut doc, &staff, |d| {
        edit::log_contact(d, c, &ctx(&staff, 39), ContactChannel::Visit, "visited").unwrap()
    });
    accept(&mut doc, &staff, |d| {
        edit::log_contact(d, c, &ctx(&staff, 36), ContactChannel::Sms, "texted").unwrap()
    });
    accept(&mut doc, &sup, |d| {
        edit::log_contact_with(
            d,
            c,
            &ctx(&sup, 42),
            &edit::Contact {
                channel: ContactChannel::Phone,
                direction: edit::Direction::Outbound,
                outcome: "called late",
                override_reason: Some("customer asked"),
                flags: &["at 20:xx: customers are called only between 10:00 and 18:00".into()],
            },
        )
        .unwrap()
    });
    for (n, to) in [(43, "under_review"), (44, "accepted")] {
        accept(&mut doc, &staff, |d| {
            transition::transition_with(d, c, &ctx(&staff, n), &policy, to, Some("ok")).unwrap()
        });
    }
    let mut offer_id = String::new();
    accept(&mut doc, &staff, |d| {
        offer_id = offer::offer(
            d,
            c,
            &ctx(&staff, 45),
            &policy,
            Tier::Virtual,
            2_000,
            Some("coupon"),
        )
        .unwrap()
    });
    let mut big = String::new();
    accept(&mut doc, &staff, |d| {
        big = offer::offer(d, c, &ctx(&staff, 46), &policy, Tier::Cash, 30_000, None).unwrap()
    });
    accept(&mut doc, &sup, |d| {
        offer::decide(
            d,
            c,
            &ctx(&sup, 47),
            &policy,
            &big,
            offer::Decision::Approve,
        )
        .unwrap()
    });
    accept(&mut doc, &staff, |d| {
        offer::decide(
            d,
            c,
            &ctx(&staff, 48),
            &policy,
            &big,
            offer::Decision::Accept,
        )
        .unwrap()
    });
    accept(&mut doc, &staff, |d| {
        offer::decide(
            d,
            c,
            &ctx(&staff, 49),
            &policy,
            &offer_id,
            offer::Decision::Decline,
        )
        .unwrap()
    });
    accept(&mut doc, &staff, |d| {
        service::survey(
            d,
            c,
            &ctx(&staff, 50),
            &service::Survey {
                description: 5,
                attitude: 4,
                speed: 3,
                logistics: 5,
                comment: Some("fine".into()),
            },
        )
        .unwrap()
    });
    accept(&mut doc, &staff, |d| {
        service::escalate(d, c, &ctx(&staff, 51), "supervisor", None).unwrap()
    });
    accept(&mut doc, &ho, |d| {
        service::escalate(d, c, &ctx(&ho, 52), "mediation", Some("M-1")).unwrap()
    });
    accept(&mut doc, &staff, |d| {
        service::decide_freight(
            d,
            c,
            &ctx(&staff, 53),
            &policy,
            &FreightFacts {
                seller_at_fault: true,
                ..FreightFacts::default()
            },
        )
        .unwrap();
    });
    accept(&mut doc, &sup, |d| {
        service::override_freight(
            d,
            c,
            &ctx(&sup, 54),
            &policy,
            aftercase_sync::rules::freight::Payer::Store,
            aftercase_sync::rules::freight::Payer::Store,
            "goodwill",
        )
        .unwrap();
    });
    accept(&mut doc, &sup, |d| {
        service::assign(d, c, &ctx(&sup, 55), &tech.user).unwrap()
    });
    accept(&mut doc, &staff, |d| {
        service::link(
            d,
            c,
            &ctx(&staff, 56),
            CaseId::from_bytes([9; 16]),
            "follow_up",
        )
        .unwrap()
    });
    for (n, to) in [(57, "awaiting_goods"), (58, "inspecting"), (59, "refunded")] {
        accept(&mut doc, &sup, |d| {
            transition::transition(d, c, &ctx(&sup, n), to, None).unwrap()
        });
    }

    // Two devices move the case apart; a supervisor resolves it.
    let mut a = doc.fork().with_actor(ActorId::from(&[50u8; 16][..]));
    let mut b = doc.fork().with_actor(ActorId::from(&[51u8; 16][..]));
    transition::transition(&mut a, c, &ctx(&sup, 60), "closed", None).unwrap();
    transition::transition(&mut b, c, &ctx(&sup, 61), "cancelled", None).unwrap();
    accept(&mut doc, &sup, |d| d.merge(&mut a).map(|_| ()).unwrap());
    accept(&mut doc, &sup, |d| d.merge(&mut b).map(|_| ()).unwrap());
    let view = aftercase_sync::case::CaseView::from_doc(&doc, "x");
    let conflict = view.conflicts.first().expect("a conflict").id.clone();
    accept(&mut doc, &sup, |d| {
        transition::resolve(d, c, &ctx(&sup, 62), &conflict, "closed").unwrap()
    });

    // A repair is booked, rebooked, cancelled and visited.
    let bp = booking_policy();
    let mut rep = stored_case(CaseKind::Repair);
    accept(&mut rep, &staff, |d| {
        transition::transition(d, c, &ctx(&staff, 63), "confirmed", None).unwrap()
    });
    let mut first = String::new();
    accept(&mut rep, &staff, |d| {
        let s = booking::Slot {
            address: Some("home, see customer".into()),
            ..slot(10, 90)
        };
        first = booking::book(d, c, &ctx(&staff, 64), &bp, &s).unwrap();
    });
    let mut late = String::new();
    accept(&mut rep, &sup, |d| {
        let s = booking::Slot {
            hours_override: Some("customer works days".into()),
            ..slot(19, 60)
        };
        late = booking::book(d, c, &ctx(&sup, 65), &bp, &s).unwrap();
    });
    accept(&mut rep, &staff, |d| {
        booking::reschedule(
            d,
            c,
            &ctx(&staff, 66),
            &bp,
            Some(&late),
            &slot(14, 60),
            "customer asked",
        )
        .unwrap()
    });
    accept(&mut rep, &staff, |d| {
        booking::cancel(d, c, &ctx(&staff, 67), Some(&late), "not needed").unwrap()
    });
    for (n, what) in [(68, "arrive"), (69, "complete")] {
        accept(&mut rep, &tech, |d| {
            booking::record_visit(d, c, &ctx(&tech, n), Some(&first), what).unwrap()
        });
    }
    accept(&mut rep, &staff, |d| {
        booking::book(d, c, &ctx(&staff, 70), &bp, &slot(16, 60)).unwrap();
    });
    accept(&mut rep, &tech, |d| {
        booking::record_visit(d, c, &ctx(&tech, 71), None, "no_show").unwrap()
    });

    // Coverage: every path the table names was written by some edit above,
    // and every path written is in the table.
    let mut written = paths(&doc);
    written.extend(paths(&rep));
    let mut expected = BTreeSet::new();
    for (k, shape) in table::ROOT {
        expected.insert(k.to_string());
        match shape {
            RootShape::Log => {
                for f in table::log(k).unwrap().all_fields() {
                    expected.insert(format!("{k}/*/{}", f.key));
                }
            }
            RootShape::Items => {
                for f in table::ITEM_FIELDS {
                    expected.insert(format!("{k}/*/{}", f.key));
                }
            }
            _ => {}
        }
    }
    for f in CaseField::ALL {
        let (container, key) = f.place();
        if f != CaseField::Description {
            expected.insert(format!("{container}/{key}"));
        }
    }
    let written_tabled: BTreeSet<String> = written
        .iter()
        .filter(|p| !p.starts_with("related_cases/"))
        .cloned()
        .collect();
    assert_eq!(
        written_tabled, expected,
        "paths written by edits (left) and named by the table (right) differ"
    );
    // Every timeline entry type of the table was written by some edit.
    let types: BTreeSet<String> = [&doc, &rep]
        .into_iter()
        .flat_map(|doc| {
            aftercase_sync::case::read::entries(doc, &ROOT, "timeline")
                .into_iter()
                .filter_map(|(_, e)| aftercase_sync::case::read::string(doc, &e, "type"))
        })
        .collect();
    for t in table::TIMELINE_TYPES {
        assert!(types.contains(*t), "no edit writes a {t} timeline entry");
    }
}

/// A photo's evidence record (`n` makes the hash differ).
fn photo(n: u8) -> evidence::Evidence {
    evidence::Evidence {
        kind: "photo".into(),
        hash: format!("{n:02x}").repeat(32),
        size: 3_000_000,
        media_type: "image/jpeg".into(),
        captured_at: 1_790_000_000_000,
        caption: Some("scratch on the door".into()),
    }
}

/// A case with one entry of each common kind by other people.
fn busy_case() -> (Automerge, String, String, String) {
    let policy = Policy::default();
    let staff = principal(Role::Staff);
    let sup = principal(Role::Supervisor);
    let mut doc = stored_case(CaseKind::DamageClaim);
    let c = id();
    accept(&mut doc, &sup, |d| {
        edit::add_note(d, c, &ctx(&sup, 2), "supervisor's note").unwrap()
    });
    let mut o = String::new();
    accept(&mut doc, &staff, |d| {
        o = offer::offer(d, c, &ctx(&staff, 3), &policy, Tier::Virtual, 1_000, None).unwrap()
    });
    accept(&mut doc, &staff, |d| {
        evidence::attach(d, c, &ctx(&staff, 97), &policy, &photo(2)).unwrap()
    });
    accept(&mut doc, &staff, |d| {
        transition::transition(d, c, &ctx(&staff, 4), "evidence_collected", None).unwrap()
    });
    let note = entry_where(&doc, "timeline", "type", "note");
    let mv = aftercase_sync::case::read::entries(&doc, &ROOT, "transitions")[0]
        .0
        .clone();
    (doc, note, o, mv)
}

fn entry_where(doc: &Automerge, log: &str, key: &str, value: &str) -> String {
    aftercase_sync::case::read::entries(doc, &ROOT, log)
        .into_iter()
        .find(|(_, e)| aftercase_sync::case::read::string(doc, e, key).as_deref() == Some(value))
        .map(|(k, _)| k)
        .unwrap()
}

fn obj(doc: &Automerge, log: &str, entry: &str) -> automerge::ObjId {
    let m = aftercase_sync::case::read::map(doc, &ROOT, log).unwrap();
    aftercase_sync::case::read::map(doc, &m, entry).unwrap()
}

fn tx(d: &mut Automerge, f: impl FnOnce(&mut automerge::transaction::Transaction<'_>)) {
    let mut t = d.transaction();
    f(&mut t);
    t.commit();
}

#[test]
fn edits_of_recorded_entries_are_refused_whoever_wrote_them() {
    let (doc, note, offer_id, mv) = busy_case();
    let staff = principal(Role::Staff);
    let tech = principal(Role::Technician);
    let n = obj(&doc, "timeline", &note);
    let o = obj(&doc, "offers", &offer_id);
    let m = obj(&doc, "transitions", &mv);
    // Rewrite another person's note, and its author.
    assert_eq!(
        code(judged(&doc, &staff, |d| tx(d, |t| t
            .put(&n, "text", "rewritten")
            .unwrap()))),
        RefusalCode::AppendOnly
    );
    assert_eq!(
        code(judged(&doc, &staff, |d| tx(d, |t| t
            .put(&n, "author", "staff-1")
            .unwrap()))),
        RefusalCode::AppendOnly
    );
    // Raise one's own recorded offer, or flip its approval.
    assert_eq!(
        code(judged(&doc, &staff, |d| tx(d, |t| t
            .put(&o, "amount_fen", 99_999_900i64)
            .unwrap()))),
        RefusalCode::AppendOnly
    );
    assert_eq!(
        code(judged(&doc, &staff, |d| tx(d, |t| t
            .put(&o, "needs_approval", true)
            .unwrap()))),
        RefusalCode::AppendOnly
    );
    // Rewrite an earlier move.
    assert_eq!(
        code(judged(&doc, &tech, |d| tx(d, |t| t
            .put(&m, "to", "cancelled")
            .unwrap()))),
        RefusalCode::AppendOnly
    );
    // Delete an entry, a field of an entry, a log, the timeline.
    let tl = aftercase_sync::case::read::map(&doc, &ROOT, "timeline").unwrap();
    assert_eq!(
        code(judged(&doc, &staff, |d| tx(d, |t| t
            .delete(&tl, note.as_str())
            .unwrap()))),
        RefusalCode::AppendOnly
    );
    assert_eq!(
        code(judged(&doc, &staff, |d| tx(d, |t| t
            .delete(&n, "text")
            .unwrap()))),
        RefusalCode::AppendOnly
    );
    assert_eq!(
        code(judged(&doc, &staff, |d| tx(d, |t| t
            .delete(ROOT, "transitions")
            .unwrap()))),
        RefusalCode::AppendOnly
    );
    assert_eq!(
        code(judged(&doc, &staff, |d| tx(d, |t| t
            .delete(ROOT, "offers")
            .unwrap()))),
        RefusalCode::AppendOnly
    );
    // Replace the timeline with a new empty map.
    assert_eq!(
        code(judged(&doc, &staff, |d| tx(d, |t| {
            t.put_object(ROOT, "timeline", ObjType::Map).unwrap();
        }))),
        RefusalCode::AppendOnly
    );
    // Replace an entry by a new one under the same id.
    assert_eq!(
        code(judged(&doc, &staff, |d| tx(d, |t| {
            t.put_object(&tl, note.as_str(), ObjType::Map).unwrap();
        }))),
        RefusalCode::AppendOnly
    );
    // Fixed root fields and unknown keys.
    assert_eq!(
        code(judged(&doc, &staff, |d| tx(d, |t| t
            .put(ROOT, "store_id", "S2")
            .unwrap()))),
        RefusalCode::FixedField
    );
    assert_eq!(
        code(judged(&doc, &staff, |d| tx(d, |t| t
            .put(ROOT, "kind", "complaint")
            .unwrap()))),
        RefusalCode::FixedField
    );
    assert_eq!(
        code(judged(&doc, &staff, |d| tx(d, |t| t
            .put(ROOT, "backdoor", 1i64)
            .unwrap()))),
        RefusalCode::UnknownKey
    );
    let fields = aftercase_sync::case::read::map(&doc, &ROOT, "fields").unwrap();
    assert_eq!(
        code(judged(&doc, &staff, |d| tx(d, |t| t
            .put(&fields, "vip", "yes")
            .unwrap()))),
        RefusalCode::UnknownKey
    );
    // Counters are not part of a case.
    assert_eq!(
        code(judged(&doc, &staff, |d| tx(d, |t| t
            .put(&fields, "priority", ScalarValue::counter(1))
            .unwrap()))),
        RefusalCode::InvalidValue
    );
}

#[test]
fn new_entries_are_checked_for_shape_identity_and_authority() {
    let (doc, _, offer_id, _) = busy_case();
    let policy = Policy::default();
    let staff = principal(Role::Staff);
    let tech = principal(Role::Technician);
    let c = id();
    // An entry signed as someone else.
    let mut forged = ctx(&staff, 70);
    forged.author = "head-office-1".parse().unwrap();
    assert_eq!(
        code(judged(&doc, &staff, |d| edit::add_note(
            d, c, &forged, "hi"
        )
        .unwrap())),
        RefusalCode::Identity
    );
    // A technician offers, approves or assigns.
    assert_eq!(
        code(judged(&doc, &tech, |d| {
            let mut t = d.transaction();
            let offers = aftercase_sync::case::read::map(&t, &ROOT, "offers").unwrap();
            let e = t.put_object(&offers, "abc", ObjType::Map).unwrap();
            t.put(&e, "type", "offer").unwrap();
            t.commit();
        })),
        RefusalCode::Forbidden
    );
    assert_eq!(
        code(judged(&doc, &tech, |d| {
            let mut t = d.transaction();
            let a = aftercase_sync::case::read::map(&t, &ROOT, "assignments").unwrap();
            let e = t.put_object(&a, "abc", ObjType::Map).unwrap();
            t.put(&e, "assignee", "technician-1").unwrap();
            t.commit();
        })),
        RefusalCode::Forbidden
    );
    // A clerk approves its own offer beyond authority by writing the flag.
    let mut flagged = policy.clone();
    flagged.staff_cash_limit_fen = 0;
    assert_eq!(
        code(judged_with(&doc, &staff, &flagged, |d| {
            let id =
                offer::offer(d, c, &ctx(&staff, 71), &policy, Tier::Cash, 30_000, None).unwrap();
            let o = obj(d, "offers", &id);
            tx(d, |t| t.put(&o, "needs_approval", false).unwrap());
        })),
        RefusalCode::Authority
    );
    // Limits hold per case: ¥10 granted already, so ¥45 more within the
    // ¥50 virtual limit is refused when self-approved...
    assert_eq!(
        code(judged(&doc, &staff, |d| {
            let id = offer::offer(
                d,
                c,
                &ctx(&staff, 72),
                &Policy {
                    staff_virtual_limit_fen: 1_000_000,
                    ..Policy::default()
                },
                Tier::Virtual,
                4_500,
                None,
            )
            .unwrap();
            let _ = id;
        })),
        RefusalCode::Authority
    );
    // ...and the honest device asks for approval instead.
    judged(&doc, &staff, |d| {
        offer::offer(d, c, &ctx(&staff, 73), &policy, Tier::Virtual, 4_500, None).unwrap();
    })
    .unwrap();
    // An entry with an unknown field, or a wrong type.
    assert_eq!(
        code(judged(&doc, &staff, |d| {
            let _ = edit::add_note(d, c, &ctx(&staff, 74), "x");
            let n = entry_where(d, "timeline", "author", staff.user.as_str());
            let _ = n;
            let mut t = d.transaction();
            let tl = aftercase_sync::case::read::map(&t, &ROOT, "timeline").unwrap();
            let e = t.put_object(&tl, "zzz", ObjType::Map).unwrap();
            t.put(&e, "secret", "x").unwrap();
            t.commit();
        })),
        RefusalCode::UnknownKey
    );
    // A decision on the clerk's own offer is fine; a second upload cannot
    // replace it.
    judged(&doc, &staff, |d| {
        offer::decide(
            d,
            c,
            &ctx(&staff, 75),
            &policy,
            &offer_id,
            offer::Decision::Accept,
        )
        .unwrap()
    })
    .unwrap();
    // External escalation is head office's.
    assert_eq!(
        code(judged(&doc, &staff, |d| {
            let mut t = d.transaction();
            let m = aftercase_sync::case::read::map(&t, &ROOT, "escalations").unwrap();
            let e = t.put_object(&m, "esc1", ObjType::Map).unwrap();
            for (k, v) in [
                ("type", "escalation"),
                ("author", staff.user.as_str()),
                ("role", "staff"),
                ("device", staff.device.as_str()),
                ("level", "litigation"),
            ] {
                t.put(&e, k, v).unwrap();
            }
            t.put(&e, "at", ScalarValue::Timestamp(NOON)).unwrap();
            let tl = aftercase_sync::case::read::map(&t, &ROOT, "timeline").unwrap();
            let e = t.put_object(&tl, "esc1t", ObjType::Map).unwrap();
            for (k, v) in [
                ("type", "escalation"),
                ("author", staff.user.as_str()),
                ("role", "staff"),
                ("device", staff.device.as_str()),
            ] {
                t.put(&e, k, v).unwrap();
            }
            t.put(&e, "at", ScalarValue::Timestamp(NOON)).unwrap();
            t.commit();
        })),
        RefusalCode::Forbidden
    );
}

#[test]
fn a_new_case_must_name_its_own_creator_store_and_device() {
    let staff = principal(Role::Staff);
    let empty = Automerge::new();
    for (key, value) in [
        ("created_by", "head-office-1"),
        ("device_id", "ho-laptop"),
        ("store_id", "S9"),
    ] {
        let r = judged(&empty, &staff, |d| {
            *d = stored_case(CaseKind::Complaint);
            tx(d, |t| t.put(ROOT, key, value).unwrap());
        });
        // Writing a root field twice in one upload is itself refused; a
        // case created with a forged value in one go is an identity refusal.
        assert!(
            matches!(code(r), RefusalCode::AppendOnly | RefusalCode::FixedField),
            "{key}"
        );
        let forged = judged(&empty, &staff, |d| {
            let mut c = ctx(&staff, 1);
            let mut store = staff.store.clone();
            match key {
                "created_by" => c.author = value.parse().unwrap(),
                "device_id" => c.device = value.parse().unwrap(),
                _ => store = value.parse().unwrap(),
            }
            create_case(
                d,
                &c,
                &NewCase {
                    id: id(),
                    case_no: "n".into(),
                    kind: CaseKind::Complaint,
                    store,
                    customer: Customer {
                        name: "A".into(),
                        phone: "13700000000".into(),
                    },
                    sku: None,
                    description: None,
                },
            )
            .unwrap();
        });
        assert_eq!(code(forged), RefusalCode::Identity, "{key}");
    }
    // A new case with an extra root key.
    assert_eq!(
        code(judged(&empty, &staff, |d| {
            *d = stored_case(CaseKind::Complaint);
            tx(d, |t| t.put(ROOT, "extra", "x").unwrap());
        })),
        RefusalCode::UnknownKey
    );
}

#[test]
fn size_and_count_limits_refuse_with_a_clear_code() {
    let (doc, ..) = busy_case();
    let staff = principal(Role::Staff);
    let c = id();
    let small = Policy {
        max_change_bytes: 4096,
        ..Policy::default()
    };
    let r = judged_with(&doc, &staff, &small, |d| {
        edit::add_note(
            d,
            c,
            &ctx(&staff, 80),
            &(0..9_000u32)
                .map(|i| char::from_u32(0x4e00 + (i * 7919) % 20_000).unwrap())
                .collect::<String>(),
        )
        .unwrap()
    });
    assert_eq!(code(r), RefusalCode::TooLarge);
    let few = Policy {
        max_entries_per_case: 100,
        ..Policy::default()
    };
    let r = judged_with(&doc, &staff, &few, |d| {
        for i in 0..120u8 {
            edit::add_note(d, c, &ctx(&staff, 100 + i), "n").unwrap();
        }
    });
    assert_eq!(code(r), RefusalCode::TooMany);
}

#[test]
fn a_clerk_needs_a_purchase_date_and_cannot_reopen_the_window() {
    let staff = principal(Role::Staff);
    let mut doc = stored_case(CaseKind::ReturnExchange);
    let c = id();
    let policy = Policy::default();
    accept(&mut doc, &staff, |d| {
        transition::transition(d, c, &ctx(&staff, 2), "under_review", None).unwrap()
    });
    // Forged: accepted without a purchase date (the device would refuse).
    let r = judged(&doc, &staff, |d| {
        forge_move(d, &staff, "under_review", "accepted", 60)
    });
    assert_eq!(code(r), RefusalCode::Window);
    // An old purchase, recorded; the clerk cannot change it afterwards.
    accept(&mut doc, &staff, |d| {
        edit::set_field(d, c, &ctx(&staff, 3), CaseField::PurchaseDate, "2026-09-01").unwrap()
    });
    let mut local = doc.fork();
    let err = edit::set_field(
        &mut local,
        c,
        &ctx(&staff, 4),
        CaseField::PurchaseDate,
        "2026-11-22",
    )
    .unwrap_err();
    assert!(err.to_string().contains("already recorded"), "{err}");
    // A modified client writes it anyway: the relay refuses.
    let r = judged(&doc, &sup_like(&staff), |d| {
        // Written as a supervisor would, then uploaded by the clerk.
        edit::set_field(
            d,
            c,
            &ctx(&principal(Role::Supervisor), 4),
            CaseField::PurchaseDate,
            "2026-11-22",
        )
        .unwrap()
    });
    assert_eq!(code(r), RefusalCode::Forbidden);
    // Backdating the acceptance to a time the relay does not believe
    // (a month before receipt) does not open the window either.
    let r = judged(&doc, &staff, |d| {
        let mut old = ctx(&staff, 5);
        old.now = Millis(NOON - 80 * 24 * 3_600_000);
        // The device-side check runs at the claimed time and passes.
        transition::transition_with(d, c, &old, &policy, "accepted", None).unwrap()
    });
    assert_eq!(code(r), RefusalCode::Window);
}

/// The clerk's own connection (an edit made under another role's name is
/// refused for its field before its identity is even looked at).
fn sup_like(p: &Principal) -> Principal {
    p.clone()
}

#[test]
fn paying_moves_need_an_accepted_offer() {
    let sup = principal(Role::Supervisor);
    let mut doc = stored_case(CaseKind::DamageClaim);
    let c = id();
    accept(&mut doc, &sup, |d| {
        evidence::attach(d, c, &ctx(&sup, 98), &Policy::default(), &photo(3)).unwrap()
    });
    for (n, to) in [
        (2, "evidence_collected"),
        (3, "assessed"),
        (4, "offered"),
        (5, "agreed"),
    ] {
        accept(&mut doc, &sup, |d| {
            transition::transition(d, c, &ctx(&sup, n), to, None).unwrap()
        });
    }
    // Forge the settlement the device would refuse.
    let r = judged(&doc, &sup, |d| forge_move(d, &sup, "agreed", "settled", 61));
    assert_eq!(code(r), RefusalCode::Authority);
}

mod hostile_ops {
    //! Random operation sequences from a hostile client: whatever the judge
    //! accepts never changes a protected path (a fixed root field, a root
    //! container, or any field of an entry recorded before).
    use super::*;
    use proptest::prelude::*;

    const LOGS: &[&str] = &[
        "timeline",
        "offers",
        "transitions",
        "offer_decisions",
        "assignments",
    ];
    const ROOT_KEYS: &[&str] = &[
        "id",
        "store_id",
        "created_by",
        "kind",
        "timeline",
        "offers",
        "transitions",
        "customer",
        "extra",
    ];
    const FIELDS: &[&str] = &[
        "type",
        "author",
        "role",
        "device",
        "at",
        "text",
        "amount_fen",
        "needs_approval",
        "to",
        "assignee",
        "zz",
    ];

    #[derive(Debug, Clone)]
    enum HostileOp {
        PutRoot(usize, i64),
        DeleteRoot(usize),
        MakeRoot(usize),
        PutEntry(usize, usize, usize, i64),
        DeleteEntry(usize, usize),
        DeleteEntryField(usize, usize, usize),
        NewEntry(usize, Vec<(usize, i64)>),
        /// What the product itself writes: a note.
        Honest,
    }

    fn op() -> impl Strategy<Value = HostileOp> {
        prop_oneof![
            (0..ROOT_KEYS.len(), any::<i64>()).prop_map(|(k, v)| HostileOp::PutRoot(k, v)),
            (0..ROOT_KEYS.len()).prop_map(HostileOp::DeleteRoot),
            (0..ROOT_KEYS.len()).prop_map(HostileOp::MakeRoot),
            (0..LOGS.len(), 0..4usize, 0..FIELDS.len(), any::<i64>())
                .prop_map(|(l, e, f, v)| HostileOp::PutEntry(l, e, f, v)),
            (0..LOGS.len(), 0..4usize).prop_map(|(l, e)| HostileOp::DeleteEntry(l, e)),
            (0..LOGS.len(), 0..4usize, 0..FIELDS.len())
                .prop_map(|(l, e, f)| HostileOp::DeleteEntryField(l, e, f)),
            (
                0..LOGS.len(),
                proptest::collection::vec((0..FIELDS.len(), any::<i64>()), 0..8)
            )
                .prop_map(|(l, f)| HostileOp::NewEntry(l, f)),
            Just(HostileOp::Honest),
        ]
    }

    /// A value of a type chosen by `v`: strings that could pass as valid.
    fn value(v: i64, field: &str, p: &Principal) -> ScalarValue {
        match v.rem_euclid(6) {
            0 => ScalarValue::Int(v),
            1 => ScalarValue::Timestamp(NOON),
            2 => ScalarValue::Boolean(v % 2 == 0),
            3 => match field {
                "author" => ScalarValue::Str(p.user.as_str().into()),
                "role" => ScalarValue::Str(p.role.as_str().into()),
                "device" => ScalarValue::Str(p.device.as_str().into()),
                "type" => ScalarValue::Str("note".into()),
                _ => ScalarValue::Str("cancelled".into()),
            },
            4 => ScalarValue::Str("head-office-1".into()),
            _ => ScalarValue::Str(format!("v{v}").into()),
        }
    }

    fn entry_ids<D: ReadDoc>(doc: &D, log: &str) -> Vec<String> {
        let mut ids: Vec<String> = aftercase_sync::case::read::entries(doc, &ROOT, log)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        ids.sort();
        ids
    }

    fn apply(d: &mut Automerge, ops: &[HostileOp], p: &Principal) {
        for (n, op) in ops.iter().enumerate() {
            if matches!(op, HostileOp::Honest) {
                edit::add_note(d, id(), &ctx(p, 200 + n as u8), "an honest note").unwrap();
            }
        }
        let mut t = d.transaction();
        for (n, op) in ops.iter().enumerate() {
            let entry = |t: &automerge::transaction::Transaction<'_>, l: usize, e: usize| {
                let ids = entry_ids(t, LOGS[l]);
                let m = aftercase_sync::case::read::map(t, &ROOT, LOGS[l])?;
                let id = ids.get(e % ids.len().max(1))?.clone();
                Some((m.clone(), aftercase_sync::case::read::map(t, &m, &id)?, id))
            };
            // Errors are ignored: a hostile client writes what it can.
            match op {
                HostileOp::PutRoot(k, v) => {
                    let _ = t.put(ROOT, ROOT_KEYS[*k], value(*v, ROOT_KEYS[*k], p));
                }
                HostileOp::DeleteRoot(k) => {
                    let _ = t.delete(ROOT, ROOT_KEYS[*k]);
                }
                HostileOp::MakeRoot(k) => {
                    let _ = t.put_object(ROOT, ROOT_KEYS[*k], ObjType::Map);
                }
                HostileOp::PutEntry(l, e, f, v) => {
                    if let Some((_, o, _)) = entry(&t, *l, *e) {
                        let _ = t.put(&o, FIELDS[*f], value(*v, FIELDS[*f], p));
                    }
                }
                HostileOp::DeleteEntry(l, e) => {
                    if let Some((m, _, id)) = entry(&t, *l, *e) {
                        let _ = t.delete(&m, id.as_str());
                    }
                }
                HostileOp::DeleteEntryField(l, e, f) => {
                    if let Some((_, o, _)) = entry(&t, *l, *e) {
                        let _ = t.delete(&o, FIELDS[*f]);
                    }
                }
                HostileOp::NewEntry(l, fields) => {
                    if let Some(m) = aftercase_sync::case::read::map(&t, &ROOT, LOGS[*l]) {
                        if let Ok(o) = t.put_object(&m, format!("h{n}"), ObjType::Map) {
                            for (f, v) in fields {
                                let _ = t.put(&o, FIELDS[*f], value(*v, FIELDS[*f], p));
                            }
                        }
                    }
                }
                HostileOp::Honest => {}
            }
        }
        t.commit();
    }

    /// Values with their op ids, independent of actor numbering.
    fn values(v: Vec<(automerge::Value<'_>, automerge::ObjId)>) -> Vec<String> {
        v.into_iter().map(|(x, id)| format!("{x:?}@{id}")).collect()
    }

    /// Everything a hostile upload must not change, as text.
    fn protected(doc: &Automerge, base: &Automerge) -> String {
        let mut out = String::new();
        for (k, shape) in table::ROOT {
            let v = doc.get_all(ROOT, *k).unwrap();
            match shape {
                RootShape::Fixed(_) => out.push_str(&format!("{k}={:?};", values(v))),
                _ => out.push_str(&format!(
                    "{k}:{:?};",
                    v.iter().map(|(_, id)| id.to_string()).collect::<Vec<_>>()
                )),
            }
        }
        out.push_str(&format!(
            "root keys {:?};",
            doc.keys(ROOT).collect::<Vec<_>>()
        ));
        for l in LOGS {
            for id in entry_ids(base, l) {
                let e = aftercase_sync::case::read::map(
                    doc,
                    &aftercase_sync::case::read::map(doc, &ROOT, l).unwrap(),
                    &id,
                );
                let fields = e.map(|e| {
                    doc.keys(&e)
                        .map(|f| format!("{f}={:?}", values(doc.get_all(&e, &f).unwrap())))
                        .collect::<Vec<_>>()
                });
                out.push_str(&format!("{l}/{id}={fields:?};"));
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn accepted_hostile_uploads_never_change_a_protected_path(
            ops in proptest::collection::vec(op(), 1..12),
            role in 0..4usize,
        ) {
            let (base, ..) = busy_case();
            let p = principal([Role::Staff, Role::Technician, Role::Supervisor, Role::HeadOffice][role]);
            let before = base.get_heads();
            let mut device = base.fork().with_actor(ActorId::from(&[66u8; 16][..]));
            apply(&mut device, &ops, &p);
            let mut after = base.clone();
            after.merge(&mut device).unwrap();
            let changes = after.get_changes(&before);
            let verdict = judge(&Upload {
                case: id(),
                doc: &after,
                before: &before,
                changes: &changes,
                stored_bytes: 0,
                entries_before: None,
                principal: &p,
                policy: &Policy::default(),
                now: Millis(NOON + 60_000),
                key: None,
            });
            if ops.iter().all(|o| matches!(o, HostileOp::Honest)) {
                prop_assert!(verdict.is_ok(), "honest notes refused: {:?}", verdict.err());
            }
            if verdict.is_ok() {
                prop_assert_eq!(protected(&after, &base), protected(&base, &base));
            }
        }
    }
}

/// A move written by hand, as a modified client would, with its timeline
/// companion: judged on the rule it breaks, not on its shape.
fn forge_move(d: &mut Automerge, p: &Principal, from: &str, to: &str, n: u8) {
    let head = aftercase_sync::workflow::derive(&*d, {
        let k = aftercase_sync::case::read::string(&*d, &ROOT, "kind").unwrap();
        k.parse().unwrap()
    })
    .head;
    forge_move_after(d, p, from, to, n, &head);
}

/// [`forge_move`] continuing from the move `prev`.
fn forge_move_after(d: &mut Automerge, p: &Principal, from: &str, to: &str, n: u8, prev: &str) {
    let mut t = d.transaction();
    let m = aftercase_sync::case::read::map(&t, &ROOT, "transitions").unwrap();
    let e = t
        .put_object(&m, format!("forged{n}"), ObjType::Map)
        .unwrap();
    for (k, v) in [
        ("type", "transition"),
        ("author", p.user.as_str()),
        ("role", p.role.as_str()),
        ("device", p.device.as_str()),
        ("from", from),
        ("to", to),
        ("prev", prev),
    ] {
        t.put(&e, k, v).unwrap();
    }
    t.put(&e, "at", ScalarValue::Timestamp(NOON)).unwrap();
    t.put(&e, "policy_version", 1i64).unwrap();
    let tl = aftercase_sync::case::read::map(&t, &ROOT, "timeline").unwrap();
    let e = t
        .put_object(&tl, format!("forged{n}t"), ObjType::Map)
        .unwrap();
    for (k, v) in [
        ("type", "status_change"),
        ("author", p.user.as_str()),
        ("role", p.role.as_str()),
        ("device", p.device.as_str()),
    ] {
        t.put(&e, k, v).unwrap();
    }
    t.put(&e, "at", ScalarValue::Timestamp(NOON)).unwrap();
    t.commit();
}

#[test]
fn a_complaint_is_not_archived_with_compensation_open() {
    let sup = principal(Role::Supervisor);
    let staff = principal(Role::Staff);
    let policy = Policy::default();
    let mut doc = stored_case(CaseKind::Complaint);
    let c = id();
    for (n, to) in [(2, "accepted"), (3, "in_handling"), (4, "replied")] {
        accept(&mut doc, &sup, |d| {
            transition::transition(d, c, &ctx(&sup, n), to, None).unwrap()
        });
    }
    // A clerk's cash offer waits for approval.
    accept(&mut doc, &staff, |d| {
        offer::offer(d, c, &ctx(&staff, 5), &policy, Tier::Cash, 20_000, None).unwrap();
    });
    // The device refuses to archive, and so does the relay when forged.
    let mut local = doc.fork();
    let err = transition::transition(&mut local, c, &ctx(&sup, 6), "archived", None).unwrap_err();
    assert!(
        err.to_string().contains("before the complaint is archived"),
        "{err}"
    );
    let r = judged(&doc, &sup, |d| {
        forge_move(d, &sup, "replied", "archived", 7)
    });
    assert_eq!(code(r), RefusalCode::Authority);
    // Once the customer declines it, archiving is fine.
    let o = aftercase_sync::money::offers(&doc)[0].id.clone();
    accept(&mut doc, &staff, |d| {
        offer::decide(d, c, &ctx(&staff, 8), &policy, &o, offer::Decision::Decline).unwrap()
    });
    judged(&doc, &sup, |d| {
        transition::transition(d, c, &ctx(&sup, 9), "archived", None).unwrap()
    })
    .unwrap();
}

#[test]
fn offers_accepted_one_after_another_are_no_conflict_but_concurrent_ones_are() {
    let sup = principal(Role::Supervisor);
    let policy = Policy::default();
    let c = id();
    let mut doc = stored_case(CaseKind::DamageClaim);
    let mut ids = Vec::new();
    for n in 0..3u8 {
        accept(&mut doc, &sup, |d| {
            ids.push(
                offer::offer(d, c, &ctx(&sup, 10 + n), &policy, Tier::Cash, 1_000, None).unwrap(),
            )
        });
    }
    // One after the other: the second acceptance knew the first.
    for (n, o) in ids[..2].iter().enumerate() {
        accept(&mut doc, &sup, |d| {
            offer::decide(
                d,
                c,
                &ctx(&sup, 20 + n as u8),
                &policy,
                o,
                offer::Decision::Accept,
            )
            .unwrap()
        });
    }
    let offers = aftercase_sync::money::offers(&doc);
    assert_eq!(
        aftercase_sync::money::accepted_conflict(&doc, &offers),
        None
    );
    // Offline, one tablet has the customer accept the third offer while
    // another makes and has them accept a fourth: neither knew of the
    // other's acceptance, so the two are a conflict.
    let mut a = doc.fork();
    let mut b = doc.fork();
    let o3 = ids[2].clone();
    offer::decide(
        &mut a,
        c,
        &ctx(&sup, 30),
        &policy,
        &o3,
        offer::Decision::Accept,
    )
    .unwrap();
    let o4 = offer::offer(&mut b, c, &ctx(&sup, 31), &policy, Tier::Cash, 1_000, None).unwrap();
    offer::decide(
        &mut b,
        c,
        &ctx(&sup, 32),
        &policy,
        &o4,
        offer::Decision::Accept,
    )
    .unwrap();
    a.merge(&mut b).unwrap();
    let offers = aftercase_sync::money::offers(&a);
    let mut conflict = aftercase_sync::money::accepted_conflict(&a, &offers).expect("a conflict");
    conflict.sort();
    let mut want = vec![o3, o4];
    want.sort();
    assert_eq!(conflict, want);
}

#[test]
fn calls_that_happened_are_recorded_and_only_supervisors_override() {
    let staff = principal(Role::Staff);
    let sup = principal(Role::Supervisor);
    let c = id();
    let doc = stored_case(CaseKind::Complaint);
    let forge_call = |d: &mut Automerge,
                      p: &Principal,
                      at: i64,
                      n: u8,
                      direction: Option<&str>,
                      overridden: bool| {
        let mut t = d.transaction();
        let m = aftercase_sync::case::read::map(&t, &ROOT, "contact_attempts").unwrap();
        let e = t.put_object(&m, format!("call{n}"), ObjType::Map).unwrap();
        for (k, v) in [
            ("type", "contact"),
            ("author", p.user.as_str()),
            ("role", p.role.as_str()),
            ("device", p.device.as_str()),
            ("channel", "phone"),
            ("outcome", "no answer"),
        ] {
            t.put(&e, k, v).unwrap();
        }
        if let Some(dir) = direction {
            t.put(&e, "direction", dir).unwrap();
        }
        if overridden {
            t.put(&e, "override", "customer asked to be called back")
                .unwrap();
        }
        t.put(&e, "at", ScalarValue::Timestamp(at)).unwrap();
        t.commit();
    };
    // 23:30 China time the night before: outside the calling hours. The
    // call happened, so it is accepted, and every replica flags it.
    let late = NOON - 12 * 3_600_000 - 30 * 60_000;
    let mut after = doc.clone();
    accept(&mut after, &staff, |d| {
        forge_call(d, &staff, late, 1, None, false)
    });
    let v = aftercase_sync::case::CaseView::from_doc(&after, "x");
    let call = v.contact_attempts.iter().find(|x| x.id == "call1").unwrap();
    assert_eq!(call.direction, "outbound");
    assert!(
        call.flags.iter().any(|f| f.contains("23:xx")),
        "{:?}",
        call.flags
    );
    // The customer's own call at that hour is no breach.
    let mut inbound = doc.clone();
    accept(&mut inbound, &staff, |d| {
        forge_call(d, &staff, late, 2, Some("inbound"), false)
    });
    let v = aftercase_sync::case::CaseView::from_doc(&inbound, "x");
    assert!(v.contact_attempts[0].flags.is_empty());
    // A direction that is not one is refused.
    let r = judged(&doc, &staff, |d| {
        forge_call(d, &staff, late, 3, Some("sideways"), false)
    });
    assert_eq!(code(r), RefusalCode::InvalidValue);
    // A staff override is forbidden; a supervisor's is accepted.
    let r = judged(&doc, &staff, |d| forge_call(d, &staff, late, 4, None, true));
    assert_eq!(code(r), RefusalCode::Forbidden);
    judged(&doc, &sup, |d| forge_call(d, &sup, late, 5, None, true)).unwrap();
    // A fourth outbound call the same day is accepted and flagged; inbound
    // calls do not count towards the limit.
    let mut busy = doc.clone();
    for n in 0..3u8 {
        accept(&mut busy, &staff, |d| {
            edit::log_contact(d, c, &ctx(&staff, 40 + n), ContactChannel::Phone, "tried").unwrap()
        });
    }
    accept(&mut busy, &staff, |d| {
        forge_call(d, &staff, NOON + 50_000, 6, None, false)
    });
    let v = aftercase_sync::case::CaseView::from_doc(&busy, "x");
    let fourth = v.contact_attempts.iter().find(|x| x.id == "call6").unwrap();
    assert!(
        fourth
            .flags
            .iter()
            .any(|f| f.contains("already called 3 times")),
        "{:?}",
        fourth.flags
    );
}

#[test]
fn a_move_made_knowing_an_open_conflict_is_refused() {
    let sup = principal(Role::Supervisor);
    let staff = principal(Role::Staff);
    let c = id();
    let mut doc = stored_case(CaseKind::Repair);
    // Two tablets move the case apart offline: both uploads stand, and the
    // case has an open conflict.
    let mut a = doc.fork();
    let mut b = doc.fork();
    transition::transition(&mut a, c, &ctx(&staff, 2), "confirmed", None).unwrap();
    transition::transition(&mut b, c, &ctx(&sup, 3), "cancelled", None).unwrap();
    accept(&mut doc, &staff, |d| d.merge(&mut a).map(|_| ()).unwrap());
    accept(&mut doc, &sup, |d| d.merge(&mut b).map(|_| ()).unwrap());
    let view = aftercase_sync::case::CaseView::from_doc(&doc, "x");
    assert_eq!(view.conflicts.len(), 1);
    // A modified client that holds both moves continues one anyway.
    let confirmed = entry_where(&doc, "transitions", "to", "confirmed");
    let r = judged(&doc, &staff, |d| {
        forge_move_after(d, &staff, "confirmed", "dispatched", 62, &confirmed)
    });
    assert_eq!(code(r), RefusalCode::Workflow);
    // The supervisor resolves it; then moves go on.
    let conflict = view.conflicts[0].id.clone();
    accept(&mut doc, &sup, |d| {
        transition::resolve(d, c, &ctx(&sup, 4), &conflict, "confirmed").unwrap()
    });
    accept(&mut doc, &staff, |d| {
        booking::book(d, c, &ctx(&staff, 5), &booking_policy(), &slot(10, 90)).unwrap();
    });
}

#[test]
fn freight_decisions_name_real_payers_and_rules() {
    let staff = principal(Role::Staff);
    let doc = stored_case(CaseKind::ReturnExchange);
    let forge = |outbound: &'static str, rule: i64| {
        move |d: &mut Automerge| {
            let mut t = d.transaction();
            let m = aftercase_sync::case::read::map(&t, &ROOT, "freight_decisions").unwrap();
            let e = t.put_object(&m, "fr1", ObjType::Map).unwrap();
            for (k, v) in [
                ("type", "freight"),
                ("author", "staff-1"),
                ("role", "staff"),
                ("device", "dev-staff"),
                ("outbound", outbound),
                ("return", "seller"),
                ("rule_text", "x"),
            ] {
                t.put(&e, k, v).unwrap();
            }
            t.put(&e, "rule", rule).unwrap();
            t.put(&e, "policy_version", 1i64).unwrap();
            t.put(&e, "at", ScalarValue::Timestamp(NOON)).unwrap();
            let tl = aftercase_sync::case::read::map(&t, &ROOT, "timeline").unwrap();
            let e = t.put_object(&tl, "fr1t", ObjType::Map).unwrap();
            for (k, v) in [
                ("type", "freight"),
                ("author", "staff-1"),
                ("role", "staff"),
                ("device", "dev-staff"),
            ] {
                t.put(&e, k, v).unwrap();
            }
            t.put(&e, "at", ScalarValue::Timestamp(NOON)).unwrap();
            t.commit();
        }
    };
    judged(&doc, &staff, forge("seller", 2)).unwrap();
    assert_eq!(
        code(judged(&doc, &staff, forge("nobody", 2))),
        RefusalCode::InvalidValue
    );
    assert_eq!(
        code(judged(&doc, &staff, forge("seller", 9))),
        RefusalCode::InvalidValue
    );
    assert_eq!(
        code(judged(&doc, &staff, forge("store", 0))),
        RefusalCode::Forbidden
    );
}

/// An entry of `log` written by hand: a note by `p` unless `fields` say
/// otherwise (later values win).
fn forge_entry(
    d: &mut Automerge,
    p: &Principal,
    log: &str,
    id: &str,
    fields: &[(&str, ScalarValue)],
) {
    let mut t = d.transaction();
    let m = aftercase_sync::case::read::map(&t, &ROOT, log).unwrap();
    let e = t.put_object(&m, id, ObjType::Map).unwrap();
    let common: [(&str, ScalarValue); 5] = [
        ("type", "note".into()),
        ("author", p.user.as_str().into()),
        ("role", p.role.as_str().into()),
        ("device", p.device.as_str().into()),
        ("at", ScalarValue::Timestamp(NOON)),
    ];
    for (k, v) in common.iter().chain(fields.iter()) {
        t.put(&e, *k, v.clone()).unwrap();
    }
    t.commit();
}

#[test]
fn every_shape_rule_refuses_with_its_code() {
    let staff = principal(Role::Staff);
    let doc = stored_case(CaseKind::Complaint);
    let c = id();
    let tl = |fields: Vec<(&'static str, ScalarValue)>, id: &'static str| {
        let staff = staff.clone();
        move |d: &mut Automerge| forge_entry(d, &staff, "timeline", id, &fields)
    };
    // The baseline is accepted: a well-formed note by hand.
    judged(&doc, &staff, tl(vec![("text", "fine".into())], "ok1")).unwrap();
    type Forgery = Box<dyn FnOnce(&mut Automerge)>;
    let cases: Vec<(&str, Forgery, RefusalCode)> = vec![
        (
            "unknown entry type",
            Box::new(tl(vec![("type", "bribe".into())], "t1")),
            RefusalCode::InvalidValue,
        ),
        (
            "a second created entry",
            Box::new(tl(vec![("type", "created".into())], "t2")),
            RefusalCode::InvalidValue,
        ),
        (
            "a field of the wrong type",
            Box::new(tl(vec![("text", 5i64.into())], "t3")),
            RefusalCode::InvalidValue,
        ),
        (
            "text over its bound",
            Box::new(tl(vec![("text", "x".repeat(10_001).into())], "t4")),
            RefusalCode::InvalidValue,
        ),
        (
            "an id that is not an id",
            Box::new(tl(vec![], "no spaces allowed")),
            RefusalCode::InvalidValue,
        ),
        (
            "a required field missing",
            Box::new({
                let staff = staff.clone();
                move |d: &mut Automerge| {
                    let mut t = d.transaction();
                    let m = aftercase_sync::case::read::map(&t, &ROOT, "timeline").unwrap();
                    let e = t.put_object(&m, "t6", ObjType::Map).unwrap();
                    t.put(&e, "type", "note").unwrap();
                    t.put(&e, "author", staff.user.as_str()).unwrap();
                    t.commit();
                }
            }),
            RefusalCode::InvalidValue,
        ),
        (
            "a move without its timeline entry",
            Box::new({
                let staff = staff.clone();
                move |d: &mut Automerge| {
                    forge_entry(
                        d,
                        &staff,
                        "transitions",
                        "m1",
                        &[
                            ("type", "transition".into()),
                            ("from", "registered".into()),
                            ("to", "accepted".into()),
                            ("prev", "".into()),
                            ("policy_version", 1i64.into()),
                        ],
                    )
                }
            }),
            RefusalCode::InvalidValue,
        ),
        (
            "a field set without its field_changed entry",
            Box::new(|d: &mut Automerge| {
                let f = aftercase_sync::case::read::map(&*d, &ROOT, "fields").unwrap();
                let mut t = d.transaction();
                t.put(&f, "priority", "high").unwrap();
                t.commit();
            }),
            RefusalCode::InvalidValue,
        ),
        (
            "a field value not allowed",
            Box::new(move |d: &mut Automerge| {
                edit::set_field(
                    d,
                    c,
                    &ctx(&principal(Role::Staff), 90),
                    CaseField::Priority,
                    "high",
                )
                .unwrap();
                let f = aftercase_sync::case::read::map(&*d, &ROOT, "fields").unwrap();
                let mut t = d.transaction();
                t.put(&f, "priority", "whenever").unwrap();
                t.commit();
            }),
            RefusalCode::InvalidValue,
        ),
        (
            "an object inside the description",
            Box::new(|d: &mut Automerge| {
                let text = match d.get(ROOT, "description").unwrap() {
                    Some((_, id)) => id,
                    None => unreachable!(),
                };
                let mut t = d.transaction();
                t.insert_object(&text, 0, ObjType::Map).unwrap();
                t.commit();
            }),
            RefusalCode::InvalidValue,
        ),
        (
            "a link that is no case id",
            Box::new(|d: &mut Automerge| {
                let m = aftercase_sync::case::read::map(&*d, &ROOT, "related_cases").unwrap();
                let mut t = d.transaction();
                t.put(&m, "not-a-case", "follow_up").unwrap();
                t.commit();
            }),
            RefusalCode::InvalidValue,
        ),
        (
            "an item added after creation",
            Box::new(|d: &mut Automerge| {
                let m = aftercase_sync::case::read::map(&*d, &ROOT, "items").unwrap();
                let mut t = d.transaction();
                t.put_object(&m, "2", ObjType::Map).unwrap();
                t.commit();
            }),
            RefusalCode::FixedField,
        ),
        (
            "a tag",
            Box::new(|d: &mut Automerge| {
                let m = aftercase_sync::case::read::map(&*d, &ROOT, "tags").unwrap();
                let mut t = d.transaction();
                t.put(&m, "vip", true).unwrap();
                t.commit();
            }),
            RefusalCode::FixedField,
        ),
        (
            "a survey score out of range",
            Box::new({
                let staff = staff.clone();
                move |d: &mut Automerge| {
                    forge_entry(
                        d,
                        &staff,
                        "surveys",
                        "s1",
                        &[
                            ("type", "survey".into()),
                            ("description", 9i64.into()),
                            ("attitude", 5i64.into()),
                            ("speed", 5i64.into()),
                            ("logistics", 5i64.into()),
                        ],
                    );
                    forge_entry(d, &staff, "timeline", "s1t", &[("type", "survey".into())]);
                }
            }),
            RefusalCode::InvalidValue,
        ),
        (
            "a decision on no offer",
            Box::new({
                let staff = staff.clone();
                move |d: &mut Automerge| {
                    forge_entry(
                        d,
                        &staff,
                        "offer_decisions",
                        "d1",
                        &[
                            ("type", "offer_decision".into()),
                            ("offer", "ghost".into()),
                            ("decision", "accept".into()),
                            ("policy_version", 1i64.into()),
                        ],
                    );
                    forge_entry(
                        d,
                        &staff,
                        "timeline",
                        "d1t",
                        &[("type", "offer_decision".into())],
                    );
                }
            }),
            RefusalCode::InvalidValue,
        ),
        (
            "a move that does not follow the case's state",
            Box::new({
                let staff = staff.clone();
                move |d: &mut Automerge| {
                    forge_move_after(d, &staff, "accepted", "in_handling", 91, "")
                }
            }),
            RefusalCode::Workflow,
        ),
        (
            "a move after an unknown move",
            Box::new({
                let staff = staff.clone();
                move |d: &mut Automerge| {
                    forge_move_after(d, &staff, "registered", "accepted", 92, "ghost")
                }
            }),
            RefusalCode::Workflow,
        ),
    ];
    for (name, forge, want) in cases {
        let r = judged(&doc, &staff, forge);
        assert_eq!(r.map_err(|e| e.code), Err(want), "{name}");
    }
    // Two devices using one id at once: the merged log holds both.
    let mut a = doc.fork();
    let mut b = doc.fork();
    forge_entry(&mut a, &staff, "timeline", "twin", &[("text", "a".into())]);
    forge_entry(&mut b, &staff, "timeline", "twin", &[("text", "b".into())]);
    let r = judged(&doc, &staff, |d| {
        d.merge(&mut a).unwrap();
        d.merge(&mut b).unwrap();
    });
    assert_eq!(code(r), RefusalCode::AppendOnly);
}

/// Evidence at the relay: a damage claim reaches `evidence_collected`
/// only with a live photo, a record must hold a SHA-256, a known type and
/// a size within the relay's own limit, and only a supervisor or head
/// office may remove one (with a reason, naming evidence the case holds).
#[test]
fn evidence_rules_hold_at_the_relay_whatever_the_device_says() {
    let staff = principal(Role::Staff);
    let sup = principal(Role::Supervisor);
    let c = id();
    let doc = stored_case(CaseKind::DamageClaim);

    // The device refuses the move without a photo; a forged one is refused.
    let mut d = doc.clone();
    let e = transition::transition(&mut d, c, &ctx(&staff, 50), "evidence_collected", None)
        .expect_err("no photo yet");
    assert!(e.to_string().contains("photo"), "{e}");
    let r = judged(&doc, &staff, |d| {
        forge_move(d, &staff, "reported", "evidence_collected", 51)
    });
    assert_eq!(code(r), RefusalCode::Workflow);
    // A receipt is not a photo.
    let mut with_receipt = doc.clone();
    accept(&mut with_receipt, &staff, |d| {
        let mut r = photo(4);
        r.kind = "receipt".into();
        r.media_type = "application/pdf".into();
        evidence::attach(d, c, &ctx(&staff, 52), &Policy::default(), &r).unwrap()
    });
    let r = judged(&with_receipt, &staff, |d| {
        forge_move(d, &staff, "reported", "evidence_collected", 53)
    });
    assert_eq!(code(r), RefusalCode::Workflow);
    // The photo and the move in one upload pass.
    judged(&doc, &staff, |d| {
        evidence::attach(d, c, &ctx(&staff, 54), &Policy::default(), &photo(5)).unwrap();
        transition::transition(d, c, &ctx(&staff, 55), "evidence_collected", None).unwrap();
    })
    .unwrap();

    // A device with a looser limit than the relay's: refused by size.
    let loose = Policy {
        max_blob_bytes: 1 << 30,
        ..Policy::default()
    };
    let r = judged(&doc, &staff, |d| {
        let mut big = photo(6);
        big.size = 60 * 1024 * 1024;
        evidence::attach(d, c, &ctx(&staff, 56), &loose, &big).unwrap()
    });
    assert_eq!(code(r), RefusalCode::InvalidValue);
    // Forged records: not a hash, an unknown type.
    for (n, hash, kind) in [
        (57u8, "../../etc/passwd", "photo"),
        (58, &"AB".repeat(32)[..], "photo"),
        (59, &"ab".repeat(32)[..], "selfie"),
    ] {
        let r = judged(&doc, &staff, |d| {
            forge_entry(
                d,
                &staff,
                "evidence",
                &format!("forged{n}"),
                &[
                    ("type", "evidence".into()),
                    ("kind", kind.into()),
                    ("hash", hash.into()),
                    ("size", ScalarValue::Int(10)),
                    ("media_type", "image/jpeg".into()),
                    ("captured_at", ScalarValue::Timestamp(NOON)),
                ],
            );
            let t = aftercase_sync::case::read::map(&*d, &ROOT, "timeline").unwrap();
            let mut tx = d.transaction();
            let e = tx.put_object(&t, format!("tl{n}"), ObjType::Map).unwrap();
            for (k, v) in [
                ("type", ScalarValue::from("evidence")),
                ("author", staff.user.as_str().into()),
                ("role", staff.role.as_str().into()),
                ("device", staff.device.as_str().into()),
                ("at", ScalarValue::Timestamp(NOON)),
                ("text", "photo attached".into()),
            ] {
                tx.put(&e, k, v).unwrap();
            }
            tx.commit();
        });
        assert!(r.is_err(), "{hash} / {kind} accepted");
    }

    // Removal: a clerk cannot hide evidence; a supervisor can, with a
    // reason, naming what the case holds.
    let mut held = doc.clone();
    accept(&mut held, &staff, |d| {
        evidence::attach(d, c, &ctx(&staff, 60), &Policy::default(), &photo(7)).unwrap()
    });
    let mut dev = held.clone();
    assert!(evidence::remove(&mut dev, c, &ctx(&staff, 61), &photo(7).hash, "oops").is_err());
    let r = judged(&held, &staff, |d| {
        forge_entry(
            d,
            &staff,
            "evidence_removals",
            "rm1",
            &[
                ("type", "evidence_removal".into()),
                ("hash", photo(7).hash.into()),
                ("reason", "oops".into()),
            ],
        )
    });
    assert_eq!(code(r), RefusalCode::Forbidden);
    let r = judged(&held, &sup, |d| {
        forge_entry(
            d,
            &sup,
            "evidence_removals",
            "rm2",
            &[
                ("type", "evidence_removal".into()),
                ("hash", photo(8).hash.into()),
                ("reason", "not ours".into()),
            ],
        )
    });
    assert!(r.is_err(), "a removal of evidence the case does not hold");
    judged(&held, &sup, |d| {
        evidence::remove(d, c, &ctx(&sup, 62), &photo(7).hash, "wrong case").unwrap()
    })
    .unwrap();
    // Once removed, the photo no longer counts for the move.
    let mut removed = held.clone();
    accept(&mut removed, &sup, |d| {
        evidence::remove(d, c, &ctx(&sup, 63), &photo(7).hash, "wrong case").unwrap()
    });
    let v = evidence::list(&removed);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].removed.as_ref().unwrap().reason, "wrong case");
    let r = judged(&removed, &staff, |d| {
        forge_move(d, &staff, "reported", "evidence_collected", 64)
    });
    assert_eq!(code(r), RefusalCode::Workflow);
}

/// With `signature_on_acceptance`, accepting a repair needs the
/// customer's signature as evidence, at the device and at the relay.
#[test]
fn acceptance_needs_a_signature_when_the_policy_says_so() {
    let tech = principal(Role::Technician);
    let c = id();
    let strict = Policy {
        signature_on_acceptance: true,
        ..Policy::default()
    };
    let mut doc = stored_case(CaseKind::Repair);
    for (n, to) in [
        (70, "confirmed"),
        (71, "dispatched"),
        (72, "in_repair"),
        (73, "pending_acceptance"),
    ] {
        let p = if n < 72 {
            principal(Role::Supervisor)
        } else {
            tech.clone()
        };
        accept(&mut doc, &p, |d| {
            if to == "dispatched" {
                booking::book(d, c, &ctx(&p, n), &booking_policy(), &slot(10, 90)).unwrap();
            } else {
                transition::transition(d, c, &ctx(&p, n), to, None).unwrap()
            }
        });
    }
    let mut d = doc.clone();
    let e = transition::transition_with(&mut d, c, &ctx(&tech, 74), &strict, "accepted", None)
        .expect_err("no signature");
    assert!(e.to_string().contains("signature"), "{e}");
    let r = judged_with(&doc, &tech, &strict, |d| {
        forge_move(d, &tech, "pending_acceptance", "accepted", 75)
    });
    assert_eq!(code(r), RefusalCode::Workflow);
    // Without the policy the same move stands.
    judged(&doc, &tech, |d| {
        forge_move(d, &tech, "pending_acceptance", "accepted", 76)
    })
    .unwrap();
    judged_with(&doc, &tech, &strict, |d| {
        let mut s = photo(9);
        s.kind = "signature".into();
        s.media_type = "image/png".into();
        evidence::attach(d, c, &ctx(&tech, 77), &strict, &s).unwrap();
        transition::transition_with(d, c, &ctx(&tech, 78), &strict, "accepted", None).unwrap();
    })
    .unwrap();
}

#[test]
fn a_complaint_not_accepted_without_a_reason_is_refused_at_the_relay() {
    let sup = principal(Role::Supervisor);
    let doc = stored_case(CaseKind::Complaint);
    let r = judged(&doc, &sup, |d| {
        forge_move(d, &sup, "registered", "not_accepted", 2)
    });
    assert_eq!(code(r), RefusalCode::InvalidValue);
    judged(&doc, &sup, |d| {
        transition::transition(
            d,
            id(),
            &ctx(&sup, 3),
            "not_accepted",
            Some("the product was not bought from us"),
        )
        .unwrap()
    })
    .unwrap();
}

/// A booking entry forged by hand with its timeline entry.
fn forge_booking(d: &mut Automerge, p: &Principal, id: &str, fields: &[(&str, ScalarValue)]) {
    forge_entry(d, p, "bookings", id, fields);
    forge_entry(
        d,
        p,
        "timeline",
        &format!("{id}t"),
        &[("type", "booking".into())],
    );
}

fn book_fields(tech: &str, hour: i64) -> Vec<(&'static str, ScalarValue)> {
    let s = slot(hour, 90);
    vec![
        ("type", "book".into()),
        ("tech", tech.into()),
        ("start", ScalarValue::Timestamp(s.start.0)),
        ("minutes", 90i64.into()),
        ("window_end", ScalarValue::Timestamp(s.window_end.0)),
    ]
}

/// The relay holds the booking rules whatever a modified device sends:
/// a dispatch needs a booking in the same upload; only the store books,
/// a technician listed for the case's store, inside his hours unless a
/// supervisor overrides with a reason; a technician records only his own
/// visits; recorded bookings are never edited or deleted.
#[test]
fn booking_rules_hold_at_the_relay_whatever_the_device_says() {
    let staff = principal(Role::Staff);
    let sup = principal(Role::Supervisor);
    let tech = principal(Role::Technician);
    let other_tech: Principal = Principal {
        user: "technician-2".parse().unwrap(),
        ..tech.clone()
    };
    let c = id();
    let mut policy = booking_policy();
    policy
        .technicians
        .push(aftercase_sync::policy::TechnicianHours {
            user: "olga".into(),
            store: "S2".into(),
            ..policy.technicians[0].clone()
        });
    let j = |doc: &Automerge, p: &Principal, f: Box<dyn FnOnce(&mut Automerge)>| {
        judged_with(doc, p, &policy, f)
    };
    let mut doc = stored_case(CaseKind::Repair);
    accept(&mut doc, &staff, |d| {
        transition::transition(d, c, &ctx(&staff, 2), "confirmed", None).unwrap()
    });
    // A dispatch without a booking, as a modified client would send it.
    let r = j(
        &doc,
        &staff,
        Box::new(|d| forge_move(d, &principal(Role::Staff), "confirmed", "dispatched", 3)),
    );
    assert_eq!(code(r), RefusalCode::Workflow);
    // The same move with a booking in the upload stands.
    let staff2 = staff.clone();
    j(
        &doc,
        &staff,
        Box::new(move |d| {
            forge_move(d, &staff2, "confirmed", "dispatched", 4);
            forge_booking(d, &staff2, "b4", &book_fields("technician-1", 10));
        }),
    )
    .unwrap();
    type Case<'a> = (
        &'a str,
        &'a Principal,
        Vec<(&'static str, ScalarValue)>,
        RefusalCode,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "outside hours",
            &staff,
            book_fields("technician-1", 19),
            RefusalCode::Window,
        ),
        (
            "a clerk overriding the hours",
            &staff,
            [
                book_fields("technician-1", 19),
                vec![("override", "because".into())],
            ]
            .concat(),
            RefusalCode::Forbidden,
        ),
        (
            "another store's technician",
            &staff,
            book_fields("olga", 10),
            RefusalCode::Forbidden,
        ),
        (
            "someone not in the policy",
            &staff,
            book_fields("nobody", 10),
            RefusalCode::Forbidden,
        ),
        (
            "a technician booking himself",
            &tech,
            book_fields("technician-1", 10),
            RefusalCode::Forbidden,
        ),
        (
            "a book without a window",
            &staff,
            book_fields("technician-1", 10)
                .into_iter()
                .filter(|(k, _)| *k != "window_end")
                .collect(),
            RefusalCode::InvalidValue,
        ),
        (
            "a reschedule of no booking",
            &staff,
            [
                book_fields("technician-1", 11),
                vec![
                    ("type", "reschedule".into()),
                    ("booking", "nope".into()),
                    ("reason", "x".into()),
                ],
            ]
            .concat(),
            RefusalCode::InvalidValue,
        ),
        (
            "a cancel without a reason",
            &staff,
            vec![("type", "cancel".into()), ("booking", "nope".into())],
            RefusalCode::InvalidValue,
        ),
    ];
    for (what, p, fields, expected) in cases {
        let p2 = p.clone();
        let r = j(
            &doc,
            p,
            Box::new(move |d| forge_booking(d, &p2, "bx", &fields)),
        );
        assert_eq!(r.map_err(|e| e.code), Err(expected), "{what}");
    }
    // A supervisor may override the hours with a reason.
    let sup2 = sup.clone();
    j(
        &doc,
        &sup,
        Box::new(move |d| {
            forge_booking(
                d,
                &sup2,
                "b5",
                &[
                    book_fields("technician-1", 19),
                    vec![("override", ("customer works days").into())],
                ]
                .concat(),
            )
        }),
    )
    .unwrap();
    // Booked properly: a technician records only his own visit.
    let mut first = String::new();
    accept(&mut doc, &staff, |d| {
        first = booking::book(d, c, &ctx(&staff, 6), &policy, &slot(10, 90)).unwrap();
    });
    let (f1, f2) = (first.clone(), first.clone());
    let o = other_tech.clone();
    let r = j(
        &doc,
        &other_tech,
        Box::new(move |d| {
            forge_booking(
                d,
                &o,
                "v1",
                &[("type", "arrive".into()), ("booking", f1.as_str().into())],
            )
        }),
    );
    assert_eq!(code(r), RefusalCode::Forbidden);
    let t = tech.clone();
    j(
        &doc,
        &tech,
        Box::new(move |d| {
            forge_booking(
                d,
                &t,
                "v2",
                &[("type", "arrive".into()), ("booking", f2.as_str().into())],
            )
        }),
    )
    .unwrap();
    // Recorded bookings are never edited or deleted, by anyone.
    let b = obj(&doc, "bookings", &first);
    let b2 = b.clone();
    let r = j(
        &doc,
        &sup,
        Box::new(move |d| {
            tx(d, |t| {
                t.put(&b2, "start", ScalarValue::Timestamp(NOON)).unwrap()
            })
        }),
    );
    assert_eq!(code(r), RefusalCode::AppendOnly);
    let first2 = first.clone();
    let r = j(
        &doc,
        &sup,
        Box::new(move |d| {
            let m = aftercase_sync::case::read::map(&*d, &ROOT, "bookings").unwrap();
            tx(d, |t| t.delete(&m, first2.as_str()).unwrap())
        }),
    );
    assert_eq!(code(r), RefusalCode::AppendOnly);
    // Bookings belong on repairs and installations only.
    let complaint = stored_case(CaseKind::Complaint);
    let s2 = staff.clone();
    let r = j(
        &complaint,
        &staff,
        Box::new(move |d| forge_booking(d, &s2, "bc", &book_fields("technician-1", 10))),
    );
    assert_eq!(code(r), RefusalCode::InvalidValue);
}

/// A new case arrives with one `created` entry, never two.
#[test]
fn a_new_case_has_exactly_one_created_entry() {
    let staff = principal(Role::Staff);
    let empty = Automerge::new();
    let r = judged(&empty, &staff, |d| {
        *d = stored_case(CaseKind::Complaint);
        let tl = aftercase_sync::case::read::map(d, &ROOT, "timeline").unwrap();
        let first = d.keys(&tl).next().unwrap();
        let e = aftercase_sync::case::read::map(d, &tl, &first).unwrap();
        let fields: Vec<(String, ScalarValue)> = d
            .keys(&e)
            .filter_map(|k| match d.get(&e, &k).unwrap() {
                Some((automerge::Value::Scalar(s), _)) => Some((k, s.into_owned())),
                _ => None,
            })
            .collect();
        // Another id of the same shape.
        let mut other = first.clone();
        let last = other.pop().unwrap();
        other.push(if last == '0' { '1' } else { '0' });
        tx(d, |t| {
            let copy = t.put_object(&tl, &other, ObjType::Map).unwrap();
            for (k, v) in fields {
                t.put(&copy, k, v).unwrap();
            }
        });
    });
    let refusal = r.expect_err("two created entries were accepted");
    assert_eq!(refusal.code, RefusalCode::InvalidValue, "{refusal:?}");
    assert!(
        refusal.message.contains("exactly one created entry"),
        "{refusal:?}"
    );
}
