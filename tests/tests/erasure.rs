//! Erasing a customer (crypto-shredding, `case::seal`): after head office
//! erases a case's personal data, no store (the relay's or any device's)
//! holds the customer's name or phone, in its bytes or in any value of the
//! case's history, no device keeps the case's key, and the rest of the case
//! still syncs and shows. A tablet that was offline during the erasure
//! loses the key when it reconnects.

use aftercase_sync::access::Role;
use aftercase_sync::case::edit::{create_case, Customer, EditContext, NewCase};
use aftercase_sync::case::{CaseField, CaseKind};
use aftercase_sync::replica::Entropy;
use aftercase_sync::{CaseId, Millis};
use aftercase_tests::{history_holds, World};
use automerge::Automerge;

#[test]
fn the_leak_check_finds_a_customer_written_in_plain_text() {
    // The check this file relies on must see a name in a history where it
    // was written in plain text (as before sealing), compressed or not.
    let id = CaseId::from_bytes([3; 16]);
    let mut doc = Automerge::new();
    create_case(
        &mut doc,
        &EditContext {
            author: "alice".parse().unwrap(),
            role: Role::Staff,
            device: "tab-a".parse().unwrap(),
            now: Millis(1_780_000_000_000),
            nonce: [1; 16],
        },
        &NewCase {
            id,
            case_no: "S1-tab-a-1".into(),
            kind: CaseKind::Complaint,
            store: "S1".parse().unwrap(),
            customer: Customer {
                name: "Li Lei".into(),
                phone: "13800000000".into(),
            },
            sku: None,
            description: Some("x".repeat(2000)),
        },
    )
    .unwrap();
    let bytes = doc.save();
    assert_eq!(
        history_holds(&bytes, &["13800000000"]).as_deref(),
        Some("13800000000")
    );
}

#[test]
fn an_erased_customer_is_gone_from_every_store_and_the_case_stays() {
    let mut w = World::new(7, 8);
    let a = w.add_device("tab-a", Role::Staff, "S1");
    let b = w.add_device("tab-b", Role::Staff, "S1");
    let hq = w.add_device("hq", Role::HeadOffice, "HQ");
    let case = w.create_case(a);
    let (name, phone) = w.customers[&case].clone();
    for d in [a, b, hq] {
        w.connect(d);
    }
    w.run_until_quiet();
    // Sealed everywhere, readable by those who may read the case.
    let relay_doc = w.relay.doc_bytes(case).unwrap().unwrap();
    assert_eq!(history_holds(&relay_doc, &[&name, &phone]), None);
    for d in [a, b, hq] {
        let v = w.devices[d].replica.case(case).unwrap().unwrap();
        assert_eq!(v.customer.name.as_deref(), Some(name.as_str()), "{d}");
        assert_eq!(v.customer.phone.as_deref(), Some(phone.as_str()));
    }
    assert_eq!(
        w.relay_view(case).unwrap().customer.name.as_deref(),
        Some(name.as_str())
    );

    // tab-b goes offline with the key, and changes the customer's address
    // there after the erasure.
    w.disconnect(b);
    w.erase(case);
    w.run_until_quiet();
    let now = w.now();
    w.devices[b]
        .replica
        .set_field(
            case,
            Entropy {
                now,
                nonce: [9; 16],
                key: [0; 32],
            },
            CaseField::CustomerAddress,
            "1 Erased Road",
        )
        .unwrap();
    w.customers.insert(case, (name.clone(), phone.clone()));
    let online_left = w.erasure_leaks();
    assert!(
        online_left.iter().all(|l| l.contains("tab-b")),
        "only the offline tablet still holds anything: {online_left:?}"
    );
    assert!(
        !online_left.is_empty(),
        "the offline tablet keeps the key until it syncs"
    );

    w.connect(b);
    w.run_until_quiet();
    assert_eq!(w.erasure_leaks(), Vec::<String>::new());
    let view = w.relay_view(case).unwrap();
    assert_eq!(
        view.customer.address, None,
        "the late address is sealed under the erased key"
    );
    // The rest of the case stays, on the relay and every device.
    assert!(view.timeline.iter().any(|t| t.kind == "created"));
    assert!(view
        .timeline
        .iter()
        .any(|t| t.kind == aftercase_sync::case::seal::ERASED));
    assert!(view
        .timeline
        .iter()
        .any(|t| t.text.as_deref() == Some(format!("opened-{case}").as_str())));
    w.heal_and_check().unwrap();
    for d in [a, b, hq] {
        let v = w.devices[d].replica.case(case).unwrap().unwrap();
        assert_eq!(v.kind, view.kind);
        assert_eq!(v.timeline.len(), view.timeline.len());
    }
    // A tablet may not put a plain value into an erased case.
    let e = Entropy {
        now: w.now(),
        nonce: [10; 16],
        key: [0; 32],
    };
    let err = w.devices[a]
        .replica
        .set_field(case, e, CaseField::CustomerPhone, "13900000000")
        .unwrap_err();
    assert!(err.to_string().contains("key"), "{err}");
}

#[test]
fn retention_erases_cases_closed_longer_ago_than_the_policy_says() {
    use aftercase_sync::access::Principal;
    use aftercase_sync::policy::Policy;
    use aftercase_sync::protocol::Frame;
    let mut w = World::new(11, 8);
    let sup = w.add_device("sup", Role::Supervisor, "S1");
    let open = w.create_case(sup);
    let closed = w.create_case(sup);
    let e = Entropy {
        now: w.now(),
        nonce: [21; 16],
        key: [0; 32],
    };
    w.devices[sup]
        .replica
        .transition(closed, e, "cancelled", Some("customer withdrew"))
        .unwrap();
    w.connect(sup);
    w.run_until_quiet();
    // Nothing is due while the policy keeps personal data.
    let later = Millis(w.now().0 + 31 * 86_400_000);
    assert!(w.relay.due_for_erasure(later).unwrap().is_empty());

    // Head office publishes 30 days of retention.
    let policy = Policy {
        version: 2,
        erase_personal_data_after_days: 30,
        ..Policy::default()
    };
    let mut ho = w.relay.session(Principal {
        user: "hq".parse().unwrap(),
        role: Role::HeadOffice,
        store: "HQ".parse().unwrap(),
        device: "hq-1".parse().unwrap(),
    });
    let now = w.now();
    let hello = Frame::Hello {
        cursor: 0,
        policy_version: 1,
        app_version: String::new(),
        unsynced: Default::default(),
        features: Vec::new(),
    };
    w.relay.handle(&mut ho, hello, now).unwrap();
    let json = serde_json::to_string(&policy).unwrap();
    let out = w
        .relay
        .handle(&mut ho, Frame::PublishPolicy { json }, now)
        .unwrap();
    assert!(out.policy_published);
    // A policy out of range is refused by name.
    let bad = serde_json::to_string(&Policy {
        version: 3,
        erase_personal_data_after_days: 40_000,
        ..Policy::default()
    })
    .unwrap();
    let out = w
        .relay
        .handle(&mut ho, Frame::PublishPolicy { json: bad }, now)
        .unwrap();
    assert!(
        out.frames.iter().any(|f| matches!(f, Frame::PolicyRefused { reason } if reason.contains("erase_personal_data_after_days"))),
        "{:?}",
        out.frames
    );

    // Not yet 30 days closed: nothing due; after: the closed case only.
    assert!(w.relay.due_for_erasure(w.now()).unwrap().is_empty());
    assert_eq!(w.relay.due_for_erasure(later).unwrap(), vec![closed]);
    w.erase(closed);
    w.run_until_quiet();
    w.heal_and_check().unwrap();
    assert!(w.relay.due_for_erasure(later).unwrap().is_empty());
    let (name, _) = w.customers[&open].clone();
    assert_eq!(
        w.relay_view(open).unwrap().customer.name.as_deref(),
        Some(name.as_str())
    );
    assert_eq!(w.relay_view(closed).unwrap().customer.name, None);
}
