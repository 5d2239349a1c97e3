//! Property: whatever typed edits several devices make concurrently, merging
//! their documents in any order yields identical case views that contain
//! every note and contact.

use aftercase_sync::case::edit::{self, Customer, EditContext, NewCase};
use aftercase_sync::case::{CaseField, CaseKind, CaseView, ContactChannel};
use aftercase_sync::{CaseId, DeviceId, Millis, StoreId, UserId};
use automerge::{ActorId, Automerge};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Note(u8),
    Contact(u8),
    Priority(u8),
    Description(String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u8>().prop_map(Op::Note),
        1 => any::<u8>().prop_map(Op::Contact),
        1 => (0u8..4).prop_map(Op::Priority),
        1 => "[a-z ]{1,20}".prop_map(Op::Description),
    ]
}

fn ctx(dev: usize, n: usize) -> EditContext {
    EditContext {
        author: UserId::new(format!("u{dev}")).unwrap(),
        role: aftercase_sync::access::Role::Supervisor,
        device: DeviceId::new(format!("d{dev}")).unwrap(),
        now: Millis(1_000 + n as i64),
        nonce: [(dev * 31 + n) as u8; 16].map(|b| b ^ (n >> 8) as u8),
    }
}

proptest! {
    #[test]
    fn merge_order_does_not_matter(
        ops in proptest::collection::vec(proptest::collection::vec(op(), 0..8), 3),
        order in Just([0usize, 1, 2]).prop_shuffle(),
    ) {
        let id = CaseId::from_bytes([3; 16]);
        let mut base = Automerge::new();
        edit::create_case(&mut base, &ctx(9, 0), &NewCase {
            id,
            case_no: "S-d-1".into(),
            kind: CaseKind::DamageClaim,
            store: StoreId::new("S").unwrap(),
            customer: Customer { name: "N".into(), phone: "123456".into() },
            sku: None,
            description: Some("scratch on the door".into()),
        }).unwrap();
        let mut replicas: Vec<Automerge> = (0..3)
            .map(|i| base.fork().with_actor(ActorId::from(&[i as u8 + 1; 16][..])))
            .collect();
        let mut expected_notes = Vec::new();
        for (dev, list) in ops.iter().enumerate() {
            for (n, o) in list.iter().enumerate() {
                let c = ctx(dev, n + 1);
                let d = &mut replicas[dev];
                match o {
                    Op::Note(x) => {
                        let text = format!("note {dev}/{n}/{x}");
                        edit::add_note(d, id, &c, &text).unwrap();
                        expected_notes.push(text);
                    }
                    Op::Contact(x) => edit::log_contact(d, id, &c, ContactChannel::Phone, &format!("call {x}")).unwrap(),
                    Op::Priority(p) => edit::set_field(d, id, &c, CaseField::Priority, ["low", "normal", "high", "urgent"][*p as usize]).unwrap(),
                    Op::Description(t) if !t.trim().is_empty() => edit::set_field(d, id, &c, CaseField::Description, t).unwrap(),
                    Op::Description(_) => {}
                }
            }
        }
        let contacts: usize = ops.iter().flatten().filter(|o| matches!(o, Op::Contact(_))).count();
        // Merge in the given order into one, and in the reverse order into another.
        let mut forward = base.fork();
        for &i in &order { forward.merge(&mut replicas[i].clone()).unwrap(); }
        let mut backward = base.fork();
        for &i in order.iter().rev() { backward.merge(&mut replicas[i].clone()).unwrap(); }
        let (vf, vb) = (CaseView::from_doc(&forward, "x"), CaseView::from_doc(&backward, "x"));
        prop_assert_eq!(&vf, &vb);
        for text in &expected_notes {
            prop_assert!(vf.timeline.iter().any(|e| e.text.as_deref() == Some(text.as_str())));
        }
        prop_assert_eq!(vf.contact_attempts.len(), contacts);
    }
}
