//! Many threads edit through one real `Device` (sled in a temporary
//! directory), some on cases of their own, some on cases they all share;
//! after the device is closed and the directory reopened, every edit that
//! was reported saved is there exactly once.

use aftercase_client::{Device, DeviceConfig};
use aftercase_sync::access::Role;
use aftercase_sync::case::CaseKind;
use aftercase_sync::CaseId;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const THREADS: usize = 8;
const OWN_CASES: usize = 2;
const SHARED_CASES: usize = 3;
const EDITS: usize = 30;

fn open(dir: &Path) -> Device {
    Device::open(dir).expect("open device")
}

fn set_up(dir: &Path) {
    DeviceConfig {
        relay: "http://127.0.0.1:9".into(),
        token: "unused: this device never syncs".into(),
        user: "alice".parse().expect("valid user"),
        role: Role::Staff,
        store: "S1".parse().expect("valid store"),
        device: "tab-c".parse().expect("valid device"),
    }
    .save(dir)
    .expect("config");
}

fn create(device: &Device) -> CaseId {
    device
        .create_case(CaseKind::Repair, "Wang Fang", "13800138000", None, None)
        .expect("create")
}

#[test]
fn concurrent_edits_of_own_and_shared_cases_are_all_kept_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    set_up(dir.path());
    let device = open(dir.path());
    let shared: Vec<CaseId> = (0..SHARED_CASES).map(|_| create(&device)).collect();
    // Each thread creates its own cases while the others already edit:
    // case numbers are drawn concurrently too.
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (device, shared) = (device.clone(), shared.clone());
            std::thread::spawn(move || {
                let own: Vec<CaseId> = (0..OWN_CASES).map(|_| create(&device)).collect();
                let mut reported = Vec::new();
                for i in 0..EDITS {
                    let case = if i % 2 == 0 {
                        own[(i / 2) % OWN_CASES]
                    } else {
                        shared[(t + i) % SHARED_CASES]
                    };
                    let text = format!("thread {t} edit {i}");
                    device.add_note(case, &text).expect("note");
                    reported.push((case, text));
                    if i % 10 == 0 {
                        // Reads interleave with the edits.
                        device.case(case).expect("read").expect("held");
                    }
                }
                (own, reported)
            })
        })
        .collect();
    let mut cases: BTreeSet<CaseId> = shared.iter().copied().collect();
    let mut want: BTreeMap<CaseId, Vec<String>> = BTreeMap::new();
    for t in threads {
        let (own, reported) = t.join().expect("writer thread");
        cases.extend(own);
        for (case, text) in reported {
            want.entry(case).or_default().push(text);
        }
    }
    assert_eq!(cases.len(), SHARED_CASES + THREADS * OWN_CASES);
    drop(device);

    let device = open(dir.path());
    let views = device.cases().expect("read all");
    assert_eq!(views.len(), cases.len(), "every case created is kept");
    let numbers: BTreeSet<_> = views.iter().map(|v| v.case_no.clone()).collect();
    assert_eq!(numbers.len(), views.len(), "no case number drawn twice");
    for case in cases {
        let v = device.case(case).expect("read").expect("case kept");
        let mut got: Vec<String> = v
            .timeline
            .iter()
            .filter(|e| e.kind == "note")
            .filter_map(|e| e.text.clone())
            .collect();
        got.sort();
        let mut expected = want.remove(&case).unwrap_or_default();
        expected.sort();
        assert_eq!(got, expected, "case {case}: every reported note, once");
    }
    assert_eq!(
        device.status().expect("status").pending_cases,
        SHARED_CASES + THREADS * OWN_CASES,
        "every edited case is marked for upload"
    );
}
