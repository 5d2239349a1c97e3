//! A modified client writes whatever it likes into a case document; the relay
//! must refuse what the connection's role may not do, with nothing applied.

use aftercase_sync::access::{Principal, Role};
use aftercase_sync::protocol::Frame;
use aftercase_sync::{CaseId, Millis};
use aftercase_tests::World;
use automerge::sync::{Message, State, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ReadDoc, ScalarValue, ROOT};

fn principal(role: Role, user: &str, device: &str) -> Principal {
    Principal {
        user: user.parse().unwrap(),
        role,
        store: "S1".parse().unwrap(),
        device: device.parse().unwrap(),
    }
}

/// Runs automerge sync of `doc` against the relay on a raw session; returns
/// every frame the relay sent.
fn push(w: &mut World, p: Principal, case: CaseId, doc: &mut Automerge) -> Vec<Frame> {
    push_at(w, p, case, doc, Millis(2))
}

/// [`push`] with the relay's clock at `now`.
fn push_at(
    w: &mut World,
    p: Principal,
    case: CaseId,
    doc: &mut Automerge,
    now: Millis,
) -> Vec<Frame> {
    let mut s = w.relay.session(p);
    let mut all = w
        .relay
        .handle(
            &mut s,
            Frame::Hello {
                cursor: 0,
                policy_version: 1,
                app_version: String::new(),
                unsynced: Default::default(),
                features: Vec::new(),
            },
            Millis(1),
        )
        .unwrap()
        .frames;
    let mut st = State::new();
    for _ in 0..10 {
        let Some(m) = doc.generate_sync_message(&mut st) else {
            break;
        };
        let out = w
            .relay
            .handle(
                &mut s,
                Frame::Sync {
                    doc: case,
                    message: m.encode(),
                },
                now,
            )
            .unwrap();
        let mut replied = false;
        for f in &out.frames {
            if let Frame::Sync { message, .. } = f {
                doc.receive_sync_message(&mut st, Message::decode(message).unwrap())
                    .unwrap();
                replied = true;
            }
        }
        all.extend(out.frames);
        if !replied {
            break;
        }
    }
    all
}

/// A case opened by user-tab-a on tab-a of store S1, as its device writes it.
fn opened_on_tab_a(
    id: CaseId,
    kind: aftercase_sync::case::CaseKind,
    ctx: &aftercase_sync::case::EditContext,
) -> Automerge {
    let mut doc = Automerge::new().with_actor(ActorId::random());
    aftercase_sync::case::edit::create_case(
        &mut doc,
        ctx,
        &aftercase_sync::case::NewCase {
            id,
            case_no: "S1-tab-a-1".into(),
            kind,
            store: "S1".parse().unwrap(),
            customer: aftercase_sync::case::edit::Customer {
                name: "R".into(),
                phone: "1234567".into(),
            },
            sku: None,
            description: None,
        },
    )
    .unwrap();
    doc
}

/// A named forgery applied to a copy of the case document.
type Forgery<'a> = (&'a str, Box<dyn Fn(&mut Automerge) + 'a>);

/// Writes an entry as a modified client would, complete with the fields
/// every entry has and its timeline companion, so that the forgery is
/// judged on the rule it targets rather than on its shape.
fn forge_entry(doc: &mut Automerge, map: &str, id: &str, fields: &[(&str, &str)]) {
    let (ty, companion) = match map {
        "transitions" => ("transition", Some("status_change")),
        "offers" => ("offer", Some("offer")),
        "offer_decisions" => ("offer_decision", Some("offer_decision")),
        "resolutions" => ("resolution", Some("conflict_resolved")),
        "assignments" => ("assignment", Some("assignment")),
        "contact_attempts" => ("contact", None),
        _ => ("note", None),
    };
    let has = |k: &str| fields.iter().any(|(f, _)| *f == k);
    let mut tx = doc.transaction();
    let m = match tx.get(ROOT, map).unwrap() {
        Some((_, m)) => m,
        None => tx.put_object(ROOT, map, ObjType::Map).unwrap(),
    };
    let e = tx.put_object(&m, id, ObjType::Map).unwrap();
    for (k, v) in fields {
        tx.put(&e, *k, *v).unwrap();
    }
    if !has("type") {
        tx.put(&e, "type", ty).unwrap();
    }
    if matches!(map, "transitions" | "offers" | "offer_decisions") {
        tx.put(&e, "policy_version", 1i64).unwrap();
    }
    tx.put(&e, "at", ScalarValue::Timestamp(5)).unwrap();
    if let Some(c) = companion {
        let (_, tl) = tx.get(ROOT, "timeline").unwrap().unwrap();
        let t = tx.put_object(&tl, format!("{id}-t"), ObjType::Map).unwrap();
        tx.put(&t, "type", c).unwrap();
        for k in ["author", "role", "device"] {
            if let Some((_, v)) = fields.iter().find(|(f, _)| *f == k) {
                tx.put(&t, k, *v).unwrap();
            }
        }
        tx.put(&t, "at", ScalarValue::Timestamp(5)).unwrap();
    }
    tx.commit();
}

fn set_field_of(doc: &mut Automerge, map: &str, id: &str, key: &str, v: impl Into<ScalarValue>) {
    let mut tx = doc.transaction();
    let (_, m) = tx.get(ROOT, map).unwrap().unwrap();
    let (_, e) = tx.get(&m, id).unwrap().unwrap();
    tx.put(&e, key, v).unwrap();
    tx.commit();
}

#[test]
fn forged_moves_and_identities_are_refused_with_nothing_applied() {
    let mut w = World::new(11, 8);
    let a = w.add_device("tab-a", Role::Staff, "S1");
    let case = w.create_case(a);
    w.heal_and_check().unwrap();
    let kind = w.relay_view(case).unwrap().kind.unwrap();
    let initial = w.relay_view(case).unwrap().status.unwrap();
    let staff = || principal(Role::Staff, "user-tab-a", "tab-a");
    let base = Automerge::load(&w.relay.doc_bytes(case).unwrap().unwrap()).unwrap();
    let move_to = aftercase_sync::workflow::table::allowed_from(kind.parse().unwrap(), &initial)[0];

    let attempts: Vec<Forgery> = vec![
        (
            "staff cancels",
            Box::new(|d: &mut Automerge| {
                forge_entry(
                    d,
                    "transitions",
                    "f1",
                    &[
                        ("from", initial.as_str()),
                        ("to", "cancelled"),
                        ("prev", ""),
                        ("author", "user-tab-a"),
                        ("role", "staff"),
                        ("device", "tab-a"),
                    ],
                )
            }),
        ),
        (
            "claims to be a supervisor",
            Box::new(|d: &mut Automerge| {
                forge_entry(
                    d,
                    "transitions",
                    "f2",
                    &[
                        ("from", initial.as_str()),
                        ("to", "cancelled"),
                        ("prev", ""),
                        ("author", "boss"),
                        ("role", "supervisor"),
                        ("device", "tab-a"),
                    ],
                )
            }),
        ),
        (
            "skips the flow",
            Box::new(|d: &mut Automerge| {
                forge_entry(
                    d,
                    "transitions",
                    "f3",
                    &[
                        ("from", "closed"),
                        ("to", "closed"),
                        ("prev", ""),
                        ("author", "user-tab-a"),
                        ("role", "staff"),
                        ("device", "tab-a"),
                    ],
                )
            }),
        ),
        (
            "staff resolves",
            Box::new(|d: &mut Automerge| {
                forge_entry(
                    d,
                    "resolutions",
                    "f4",
                    &[
                        ("conflict", "start"),
                        ("choose", move_to),
                        ("author", "user-tab-a"),
                        ("role", "staff"),
                        ("device", "tab-a"),
                    ],
                )
            }),
        ),
        (
            "moves the case to another store",
            Box::new(|d: &mut Automerge| {
                let mut tx = d.transaction();
                tx.put(ROOT, "store_id", "S2").unwrap();
                tx.commit();
            }),
        ),
        (
            "staff approves a ¥100 cash offer",
            Box::new(|d: &mut Automerge| {
                forge_entry(
                    d,
                    "offers",
                    "o1",
                    &[
                        ("tier", "cash"),
                        ("author", "user-tab-a"),
                        ("role", "staff"),
                        ("device", "tab-a"),
                    ],
                );
                set_field_of(d, "offers", "o1", "amount_fen", 10_000);
                set_field_of(d, "offers", "o1", "needs_approval", true);
                forge_entry(
                    d,
                    "offer_decisions",
                    "dec1",
                    &[
                        ("offer", "o1"),
                        ("decision", "approve"),
                        ("author", "user-tab-a"),
                        ("role", "staff"),
                        ("device", "tab-a"),
                    ],
                );
            }),
        ),
        (
            "staff marks ¥100 cash as needing no approval",
            Box::new(|d: &mut Automerge| {
                forge_entry(
                    d,
                    "offers",
                    "o2",
                    &[
                        ("tier", "cash"),
                        ("author", "user-tab-a"),
                        ("role", "staff"),
                        ("device", "tab-a"),
                    ],
                );
                set_field_of(d, "offers", "o2", "amount_fen", 10_000);
                set_field_of(d, "offers", "o2", "needs_approval", false);
            }),
        ),
        (
            "writes a note as someone else",
            Box::new(|d: &mut Automerge| {
                forge_entry(
                    d,
                    "timeline",
                    "f5",
                    &[
                        ("type", "note"),
                        ("text", "approved by HQ"),
                        ("author", "hq"),
                        ("role", "head_office"),
                        ("device", "hq-1"),
                    ],
                )
            }),
        ),
    ];
    for (what, forge) in attempts {
        let seq = w.relay.seq();
        let before = w.relay_view(case).unwrap();
        let mut doc = base.fork().with_actor(ActorId::random());
        forge(&mut doc);
        let frames = push(&mut w, staff(), case, &mut doc);
        assert!(
            frames.iter().any(|f| matches!(f, Frame::Refused { .. })),
            "{what}: not refused: {frames:?}"
        );
        assert_eq!(w.relay.seq(), seq, "{what}: something was stored");
        assert_eq!(w.relay_view(case).unwrap(), before, "{what}: case changed");
    }

    // The same kind of edit made honestly is accepted.
    let mut doc = base.fork().with_actor(ActorId::random());
    forge_entry(
        &mut doc,
        "timeline",
        "ok1",
        &[
            ("type", "note"),
            ("text", "honest note"),
            ("author", "user-tab-a"),
            ("role", "staff"),
            ("device", "tab-a"),
        ],
    );
    let frames = push(&mut w, staff(), case, &mut doc);
    assert!(
        !frames.iter().any(|f| matches!(f, Frame::Refused { .. })),
        "{frames:?}"
    );
    let v = w.relay_view(case).unwrap();
    assert!(v
        .timeline
        .iter()
        .any(|e| e.text.as_deref() == Some("honest note")));
    let _ = doc.get_heads();
}

#[test]
fn a_clerk_cannot_accept_an_out_of_window_return_by_editing_the_document() {
    use aftercase_sync::case::edit::{set_field, EditContext};
    use aftercase_sync::case::transition::transition;
    use aftercase_sync::case::{CaseField, CaseKind};
    let mut w = World::new(12, 8);
    let id = CaseId::from_bytes([0x33; 16]);
    let ctx = |n: u8| EditContext {
        author: "user-tab-a".parse().unwrap(),
        role: Role::Staff,
        device: "tab-a".parse().unwrap(),
        now: Millis(1_790_000_000_000 + n as i64),
        nonce: [n; 16],
    };
    let mut doc = opened_on_tab_a(id, CaseKind::ReturnExchange, &ctx(1));
    set_field(&mut doc, id, &ctx(2), CaseField::PurchaseDate, "2020-01-01").unwrap();
    transition(&mut doc, id, &ctx(3), "under_review", None).unwrap();
    let frames = push(
        &mut w,
        principal(Role::Staff, "user-tab-a", "tab-a"),
        id,
        &mut doc,
    );
    assert!(
        !frames.iter().any(|f| matches!(f, Frame::Refused { .. })),
        "{frames:?}"
    );
    let head = aftercase_sync::workflow::derive(&doc, CaseKind::ReturnExchange).head;
    let seq = w.relay.seq();
    forge_entry(
        &mut doc,
        "transitions",
        "acc",
        &[
            ("from", "under_review"),
            ("to", "accepted"),
            ("prev", head.as_str()),
            ("author", "user-tab-a"),
            ("role", "staff"),
            ("device", "tab-a"),
        ],
    );
    let frames = push(
        &mut w,
        principal(Role::Staff, "user-tab-a", "tab-a"),
        id,
        &mut doc,
    );
    let refused = frames.iter().find_map(|f| match f {
        Frame::Refused { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(
        refused.as_deref().is_some_and(|r| r.contains("goodwill")),
        "{frames:?}"
    );
    assert_eq!(w.relay.seq(), seq);
    assert_eq!(
        w.relay_view(id).unwrap().status.as_deref(),
        Some("under_review")
    );
}

#[test]
fn fetching_another_stores_case_by_id_is_refused() {
    let mut w = World::new(13, 8);
    let a = w.add_device("tab-a", Role::Staff, "S1");
    let case = w.create_case(a);
    w.heal_and_check().unwrap();
    let mut s = w.relay.session(Principal {
        user: "xena".parse().unwrap(),
        role: Role::Staff,
        store: "S2".parse().unwrap(),
        device: "tab-x".parse().unwrap(),
    });
    w.relay
        .handle(
            &mut s,
            Frame::Hello {
                cursor: 0,
                policy_version: 1,
                app_version: String::new(),
                unsynced: Default::default(),
                features: Vec::new(),
            },
            Millis(1),
        )
        .unwrap();
    let out = w
        .relay
        .handle(
            &mut s,
            Frame::Fetch {
                docs: vec![case, CaseId::from_bytes([9; 16])],
            },
            Millis(2),
        )
        .unwrap();
    assert!(
        out.frames
            .iter()
            .all(|f| matches!(f, Frame::Refused { .. })),
        "{:?}",
        out.frames
    );
    assert_eq!(out.frames.len(), 2);
    // One frame cannot make the relay load an unbounded number of cases.
    let many = (0..1001u32)
        .map(|i| {
            let mut b = [0u8; 16];
            b[12..].copy_from_slice(&i.to_be_bytes());
            CaseId::from_bytes(b)
        })
        .collect();
    let err = w
        .relay
        .handle(&mut s, Frame::Fetch { docs: many }, Millis(3))
        .unwrap_err();
    assert!(err.to_string().contains("at most 1000"), "{err}");
}

#[test]
fn a_device_clock_far_ahead_is_judged_and_shown_at_the_relays_time() {
    use aftercase_sync::case::edit::EditContext;
    use aftercase_sync::case::CaseKind;
    let mut w = World::new(13, 8);
    let id = CaseId::from_bytes([0x44; 16]);
    let relay_now = 1_790_000_000_000i64;
    let ahead = relay_now + 30 * 24 * 3_600_000;
    let mut doc = opened_on_tab_a(
        id,
        CaseKind::Complaint,
        &EditContext {
            author: "user-tab-a".parse().unwrap(),
            role: Role::Staff,
            device: "tab-a".parse().unwrap(),
            now: Millis(ahead),
            nonce: [4; 16],
        },
    );
    let frames = push_at(
        &mut w,
        principal(Role::Staff, "user-tab-a", "tab-a"),
        id,
        &mut doc,
        Millis(relay_now),
    );
    assert!(
        !frames.iter().any(|f| matches!(f, Frame::Refused { .. })),
        "{frames:?}"
    );
    // The record keeps what the device claimed, and its skew.
    let audit = w.relay.audit(id).unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].1.claimed_at, Some(Millis(ahead)));
    assert_eq!(audit[0].1.skew_ms(), Some(ahead - relay_now));
    // Head office's view counts from the receipt, not the claimed future.
    let view = w.relay_view(id).unwrap();
    let created = view
        .timeline
        .iter()
        .find(|e| e.kind == "created")
        .expect("created entry");
    assert_eq!(
        created.at.as_deref(),
        Some(Millis(relay_now).to_rfc3339().as_str()),
        "{created:?}"
    );
    // So does the case's creation time, which its timers count from.
    assert_eq!(
        view.created_at.as_deref(),
        Some(Millis(relay_now).to_rfc3339().as_str())
    );
    // The stored document itself is untouched.
    let stored = automerge::Automerge::load(&w.relay.doc_bytes(id).unwrap().unwrap()).unwrap();
    assert_eq!(stored.get_heads(), doc.get_heads());
}

#[test]
fn an_oversized_change_is_refused_before_it_is_applied() {
    use automerge::sync::{ChunkList, Message, MessageVersion};
    let mut w = World::new(15, 8);
    let id = CaseId::from_bytes([0x55; 16]);
    // A change chunk header (magic, checksum, type 1) claiming 600 KiB,
    // followed by bytes that are no change at all: applying it would fail
    // with a protocol error, so a `too_large` refusal shows the size was
    // judged from the header, before anything was applied.
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 1];
    chunk.resize(600 << 10, 0xab);
    let msg = Message {
        heads: Vec::new(),
        need: Vec::new(),
        have: Vec::new(),
        changes: ChunkList::from(vec![chunk]),
        flags: None,
        version: MessageVersion::V1,
    };
    let mut s = w
        .relay
        .session(principal(Role::Staff, "user-tab-a", "tab-a"));
    let hello = Frame::Hello {
        cursor: 0,
        policy_version: 1,
        app_version: String::new(),
        unsynced: Default::default(),
        features: Vec::new(),
    };
    w.relay.handle(&mut s, hello, Millis(1)).unwrap();
    let out = w
        .relay
        .handle(
            &mut s,
            Frame::Sync {
                doc: id,
                message: msg.encode(),
            },
            Millis(2),
        )
        .expect("refused, not a protocol error");
    assert!(
        matches!(&out.frames[..], [Frame::Refused { code, .. }] if code == "too_large"),
        "{:?}",
        out.frames.iter().map(Frame::name).collect::<Vec<_>>()
    );
}

#[test]
fn the_entry_limit_holds_across_uploads() {
    use aftercase_sync::case::edit::{add_note, EditContext};
    let mut w = World::new(16, 8);
    // Head office sets a low entry limit.
    let policy = aftercase_sync::policy::Policy {
        version: 2,
        max_entries_per_case: 100,
        ..Default::default()
    };
    let mut ho = w.relay.session(Principal {
        user: "hq".parse().unwrap(),
        role: Role::HeadOffice,
        store: "HQ".parse().unwrap(),
        device: "hq-1".parse().unwrap(),
    });
    let hello = Frame::Hello {
        cursor: 0,
        policy_version: 1,
        app_version: String::new(),
        unsynced: Default::default(),
        features: Vec::new(),
    };
    w.relay.handle(&mut ho, hello, Millis(1)).unwrap();
    let json = serde_json::to_string(&policy).unwrap();
    let out = w
        .relay
        .handle(&mut ho, Frame::PublishPolicy { json }, Millis(1))
        .unwrap();
    assert!(out.policy_published);
    let id = CaseId::from_bytes([0x66; 16]);
    let now = 1_790_000_000_000i64;
    let ctx = |n: u32| EditContext {
        author: "user-tab-a".parse().unwrap(),
        role: Role::Staff,
        device: "tab-a".parse().unwrap(),
        now: Millis(now),
        nonce: {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&n.to_be_bytes());
            b
        },
    };
    let mut doc = opened_on_tab_a(id, aftercase_sync::case::CaseKind::Complaint, &ctx(0));
    let staff = principal(Role::Staff, "user-tab-a", "tab-a");
    let refused = |frames: &[Frame]| {
        frames.iter().find_map(|f| match f {
            Frame::Refused { code, .. } => Some(code.clone()),
            _ => None,
        })
    };
    let frames = push_at(&mut w, staff.clone(), id, &mut doc, Millis(now));
    assert_eq!(refused(&frames), None);
    // Uploads of 30 notes each: the fourth would pass 100 entries.
    for round in 0..4u32 {
        let mut next = doc.fork();
        for k in 0..30 {
            add_note(&mut next, id, &ctx(round * 100 + k + 1), "n").unwrap();
        }
        let frames = push_at(&mut w, staff.clone(), id, &mut next, Millis(now));
        if round < 3 {
            assert_eq!(refused(&frames), None, "round {round}");
            doc = next;
        } else {
            assert_eq!(refused(&frames).as_deref(), Some("too_many"));
        }
    }
}

#[test]
fn a_new_policy_refreshes_the_read_models_deadlines() {
    let mut w = World::new(17, 8);
    let a = w.add_device("tab-a", Role::Staff, "S1");
    let case = w.create_case(a);
    w.heal_and_check().unwrap();
    let before = w.relay.summary(case).unwrap().expect("a summary at commit");
    assert_eq!(before.policy_version, 1);
    assert!(before.next_due().is_some(), "{before:?}");
    let due = |s: &aftercase_sync::relay::summary::CaseSummary| s.next_due();
    // Head office gives first responses three more hours.
    let mut ho = w.relay.session(Principal {
        user: "hq".parse().unwrap(),
        role: Role::HeadOffice,
        store: "HQ".parse().unwrap(),
        device: "hq-1".parse().unwrap(),
    });
    let hello = Frame::Hello {
        cursor: 0,
        policy_version: 1,
        app_version: String::new(),
        unsynced: Default::default(),
        features: Vec::new(),
    };
    w.relay.handle(&mut ho, hello, Millis(1)).unwrap();
    let old = aftercase_sync::policy::Policy::default();
    let policy = aftercase_sync::policy::Policy {
        version: 2,
        first_response_hours: old.first_response_hours + 3,
        return_review_hours: old.return_review_hours + 3,
        complaint_reply_hours: old.complaint_reply_hours + 3,
        ..old
    };
    let json = serde_json::to_string(&policy).unwrap();
    w.relay
        .handle(&mut ho, Frame::PublishPolicy { json }, Millis(1))
        .unwrap();
    let after = w.relay.current_summary(case).unwrap().unwrap();
    assert_eq!(after.policy_version, 2);
    assert_eq!(due(&after).map(|d| d - 3 * 3_600_000), due(&before));
    // And it was stored, so the next read is the same.
    assert_eq!(w.relay.summary(case).unwrap(), Some(after));
}
