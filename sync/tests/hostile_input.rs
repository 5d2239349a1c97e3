//! Hostile input at the relay: random frames, random and mutated Automerge
//! messages, and every input the fuzzers kept (`fuzz/corpus`, `fuzz/artifacts`),
//! including the photos the location stripper was fuzzed with.

use aftercase_sync::fuzzing::{
    judge_accepts_arbitrary_changes, relay_accepts_arbitrary_frames, strip_location_holds,
};
use aftercase_sync::protocol::Frame;
use proptest::prelude::*;

fn framed(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        out.extend_from_slice(&(f.len() as u16).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        relay_accepts_arbitrary_frames(&data);
    }

    #[test]
    fn sync_frames_with_random_messages(
        docs in proptest::collection::vec(prop_oneof![Just([0x11u8; 16]), any::<[u8; 16]>()], 1..4),
        msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..4),
    ) {
        let frames: Vec<Vec<u8>> = docs
            .iter()
            .zip(msgs.iter())
            .map(|(d, m)| {
                let mut message = vec![0x42];
                message.extend_from_slice(m);
                Frame::Sync { doc: aftercase_sync::CaseId::from_bytes(*d), message }.encode()
            })
            .collect();
        relay_accepts_arbitrary_frames(&framed(&frames));
    }
}

#[test]
fn replay_kept_fuzz_inputs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for sub in [
        "corpus/relay_frames",
        "artifacts/relay_frames",
        "corpus/frame_decode",
        "artifacts/frame_decode",
        "corpus/judge_changes",
        "artifacts/judge_changes",
        "corpus/strip_location",
        "artifacts/strip_location",
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            let data = std::fs::read(e.path()).unwrap();
            if sub.ends_with("strip_location") {
                strip_location_holds(&data);
            } else if sub.ends_with("judge_changes") {
                judge_accepts_arbitrary_changes(&data);
            } else if sub.ends_with("frame_decode") {
                if let Ok(f) = Frame::decode(&data) {
                    assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
                }
            } else {
                relay_accepts_arbitrary_frames(&data);
            }
            n += 1;
        }
    }
    eprintln!("replayed {n} kept fuzz inputs");
}

/// A valid first upload of a new case, as a device would send it.
fn valid_upload() -> Vec<u8> {
    use aftercase_sync::case::edit::{create_case, Customer, EditContext, NewCase};
    use automerge::sync::SyncDoc;
    let id = aftercase_sync::CaseId::from_bytes([0x22; 16]);
    let mut doc = automerge::Automerge::new();
    let ctx = EditContext {
        author: "u".parse().unwrap(),
        role: aftercase_sync::access::Role::Staff,
        device: "fuzzer".parse().unwrap(),
        now: aftercase_sync::Millis(5),
        nonce: [2; 16],
    };
    create_case(
        &mut doc,
        &ctx,
        &NewCase {
            id,
            case_no: "S2-f-1".into(),
            kind: aftercase_sync::case::CaseKind::Complaint,
            store: "S2".parse().unwrap(),
            customer: Customer {
                name: "X".into(),
                phone: "123456".into(),
            },
            sku: None,
            description: Some("y".into()),
        },
    )
    .unwrap();
    // Pretend the relay already told us it has nothing, so the first message carries changes.
    let mut st = automerge::sync::State::new();
    let empty = automerge::Automerge::new();
    let mut st_empty = automerge::sync::State::new();
    let hello = empty.generate_sync_message(&mut st_empty).unwrap();
    doc.receive_sync_message(&mut st, hello).unwrap();
    let msg = doc.generate_sync_message(&mut st).unwrap();
    assert!(!msg.changes.is_empty());
    Frame::Sync {
        doc: id,
        message: msg.encode(),
    }
    .encode()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn mutated_valid_uploads(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut frame = valid_upload();
        for (i, x) in flips {
            let i = i.index(frame.len() - 1) + 1; // keep the version byte
            frame[i] ^= x | 1;
        }
        relay_accepts_arbitrary_frames(&framed(&[frame]));
    }
}

#[test]
fn a_valid_upload_from_another_store_leaves_the_seeded_case_alone() {
    let data = framed(&[valid_upload()]);
    relay_accepts_arbitrary_frames(&data);
}

/// Change bytes a clerk's device could send for the seeded case: an honest
/// note, and edits of recorded entries and fixed fields.
fn seed_changes() -> Vec<Vec<u8>> {
    use automerge::transaction::Transactable;
    use automerge::ReadDoc;
    let mut relay = aftercase_sync::fuzzing::seeded_relay();
    let id = aftercase_sync::CaseId::from_bytes(aftercase_sync::fuzzing::SEED_CASE);
    let base = automerge::Automerge::load(&relay.doc_bytes(id).unwrap().unwrap()).unwrap();
    let heads = base.get_heads();
    let mut out = Vec::new();
    let mut honest = base.fork();
    let ctx = aftercase_sync::case::EditContext {
        author: "fuzz".parse().unwrap(),
        role: aftercase_sync::access::Role::Staff,
        device: "fuzzer".parse().unwrap(),
        now: aftercase_sync::Millis(5),
        nonce: [9; 16],
    };
    aftercase_sync::case::edit::add_note(&mut honest, id, &ctx, "hello").unwrap();
    out.push(honest.save_after(&heads));
    let mut forged = base.fork();
    let tl = aftercase_sync::case::read::map(&forged, &automerge::ROOT, "timeline").unwrap();
    let first = forged.keys(&tl).next().unwrap();
    let e = aftercase_sync::case::read::map(&forged, &tl, &first).unwrap();
    let mut t = forged.transaction();
    t.put(&e, "author", "fuzz").unwrap();
    t.put(automerge::ROOT, "store_id", "S9").unwrap();
    t.delete(automerge::ROOT, "offers").unwrap();
    t.commit();
    out.push(forged.save_after(&heads));
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn mutated_change_bytes_never_get_past_the_judge(
        which in 0..2usize,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut data = seed_changes().swap_remove(which);
        for (i, b) in flips {
            let at = i.index(data.len());
            data[at] = b;
        }
        judge_accepts_arbitrary_changes(&data);
    }
}
