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

/// A new case of store S2 as a device makes it.
fn new_case() -> (aftercase_sync::CaseId, automerge::Automerge) {
    use aftercase_sync::case::edit::{create_case, Customer, EditContext, NewCase};
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
    (id, doc)
}

/// A valid first upload of a new case, as a device would send it.
fn valid_upload() -> Vec<u8> {
    use automerge::sync::SyncDoc;
    let (id, mut doc) = new_case();
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

/// The same case uploaded whole, as the changes the device stores.
fn valid_whole_upload() -> Vec<u8> {
    let (id, doc) = new_case();
    whole_upload(id, &doc)
}

fn whole_upload(id: aftercase_sync::CaseId, doc: &automerge::Automerge) -> Vec<u8> {
    Frame::Changes {
        doc: id,
        changes: doc
            .get_changes(&[])
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect(),
    }
    .encode()
}

/// `frame` with bytes flipped at `flips` (never its version byte).
fn flipped(mut frame: Vec<u8>, flips: Vec<(prop::sample::Index, u8)>) -> Vec<u8> {
    for (i, x) in flips {
        let i = i.index(frame.len() - 1) + 1;
        frame[i] ^= x | 1;
    }
    frame
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn mutated_whole_uploads(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        relay_accepts_arbitrary_frames(&framed(&[flipped(valid_whole_upload(), flips)]));
    }

    #[test]
    fn mutated_valid_uploads(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        relay_accepts_arbitrary_frames(&framed(&[flipped(valid_upload(), flips)]));
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

/// A case uploaded whole is taken only on a connection that agreed to it,
/// answered by `Stored` with the case's heads once judged, and judged like
/// a sync message: the same changes on a connection of another user are
/// refused and leave nothing behind.
#[test]
fn a_whole_upload_needs_the_feature_and_passes_the_judge() {
    use aftercase_sync::access::{Principal, Role};
    use aftercase_sync::protocol::{Unsynced, FEATURE_UPLOAD};
    use aftercase_sync::Millis;
    let (id, doc) = new_case();
    let Frame::Changes { changes, .. } = Frame::decode(&whole_upload(id, &doc)).unwrap() else {
        unreachable!()
    };
    let hello = |features: Vec<String>| Frame::Hello {
        cursor: 0,
        policy_version: 1,
        app_version: "test".into(),
        unsynced: Unsynced::default(),
        features,
    };
    let who = |user: &str| Principal {
        user: user.parse().unwrap(),
        role: Role::Staff,
        store: "S2".parse().unwrap(),
        device: "fuzzer".parse().unwrap(),
    };
    let upload = || Frame::Changes {
        doc: id,
        changes: changes.clone(),
    };
    let mut relay = aftercase_sync::fuzzing::seeded_relay();

    // Without the feature: a protocol error naming the frame.
    let mut s = relay.session(who("u"));
    relay.handle(&mut s, hello(Vec::new()), Millis(3)).unwrap();
    let e = relay.handle(&mut s, upload(), Millis(4)).unwrap_err();
    assert!(e.to_string().contains("may not send changes"), "{e}");
    assert!(relay.case_view(id).unwrap().is_none());

    // Another user's connection: refused by the judge, nothing stored.
    let mut s = relay.session(who("mallory"));
    relay
        .handle(&mut s, hello(vec![FEATURE_UPLOAD.into()]), Millis(3))
        .unwrap();
    let out = relay.handle(&mut s, upload(), Millis(4)).unwrap();
    assert!(
        matches!(&out.frames[..], [Frame::Refused { code, .. }] if code == "identity"),
        "{:?}",
        out.frames
    );
    assert!(relay.case_view(id).unwrap().is_none());

    // The author's connection: stored, answered with the heads.
    let mut s = relay.session(who("u"));
    relay
        .handle(&mut s, hello(vec![FEATURE_UPLOAD.into()]), Millis(3))
        .unwrap();
    let out = relay.handle(&mut s, upload(), Millis(4)).unwrap();
    assert!(out.needs_flush);
    let heads: Vec<[u8; 32]> = doc.get_heads().iter().map(|h| h.0).collect();
    assert_eq!(
        out.frames,
        vec![Frame::Stored {
            doc: id,
            heads: heads.clone()
        }]
    );
    assert!(relay.case_view(id).unwrap().is_some());
    // Sent again (the answer lost with a connection): nothing new to
    // store, the same answer.
    let out = relay.handle(&mut s, upload(), Millis(5)).unwrap();
    assert!(!out.needs_flush);
    assert_eq!(out.frames, vec![Frame::Stored { doc: id, heads }]);
}
