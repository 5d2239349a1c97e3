//! The fleet records: what a device reports in its hello and reports, filed
//! under its authenticated principal, with the relay's own times.

use aftercase_sync::access::{Principal, Role};
use aftercase_sync::case::edit::Customer;
use aftercase_sync::case::CaseKind;
use aftercase_sync::protocol::{ClientSession, Frame, SessionError, Unsynced};
use aftercase_sync::relay::fleet::{self, DeviceRecord};
use aftercase_sync::relay::{Relay, RelaySession};
use aftercase_sync::replica::{DeviceIdentity, Entropy, Replica};
use aftercase_sync::storage::MemoryStorage;
use aftercase_sync::{CaseId, DeviceId, Millis, StoreId, UserId};
use std::collections::VecDeque;
use std::num::NonZeroUsize;

/// The relay's clock.
const RELAY_NOW: i64 = 1_800_000_000_000;
/// The tablet's clock, set about three years wrong: ages it reports must
/// not depend on it.
const DEVICE_NOW: i64 = 1_700_000_000_000;

fn store(s: &str) -> StoreId {
    StoreId::new(s).unwrap()
}

fn principal(s: &str, device: &str, user: &str) -> Principal {
    Principal {
        user: UserId::new(user).unwrap(),
        role: Role::Staff,
        store: store(s),
        device: DeviceId::new(device).unwrap(),
    }
}

struct World {
    storage: MemoryStorage,
    relay: Relay<MemoryStorage>,
}

impl World {
    fn new() -> World {
        let storage = MemoryStorage::new();
        let relay = Relay::open(storage.clone(), NonZeroUsize::new(64).unwrap()).unwrap();
        World { storage, relay }
    }

    fn record(&self, s: &str, device: &str) -> DeviceRecord {
        fleet::device(&self.storage, &store(s), &DeviceId::new(device).unwrap())
            .unwrap()
            .unwrap_or_else(|| panic!("no record of {s}/{device}"))
    }

    /// A raw hello from `p` at relay time `now`.
    fn hello(
        &mut self,
        p: Principal,
        app_version: &str,
        unsynced: Unsynced,
        now: i64,
    ) -> (RelaySession, Result<Vec<Frame>, SessionError>) {
        let mut s = self.relay.session(p);
        let hello = Frame::Hello {
            cursor: 0,
            policy_version: 1,
            app_version: app_version.into(),
            unsynced,
            features: Vec::new(),
        };
        let out = self.relay.handle(&mut s, hello, Millis(now));
        (s, out.map(|o| o.frames))
    }
}

/// A tablet with its own replica, connected to the world's relay.
struct Tablet {
    replica: Replica<MemoryStorage>,
    client: ClientSession,
    session: RelaySession,
}

impl Tablet {
    /// Delivers frames both ways until nothing is left; the relay's clock
    /// reads `relay_now` and the tablet's `device_now`. Returns every frame
    /// the tablet sent.
    fn pump(
        &mut self,
        w: &mut World,
        to_relay: Vec<Frame>,
        to_device: Vec<Frame>,
        relay_now: i64,
        device_now: i64,
    ) -> Vec<Frame> {
        let mut sent = Vec::new();
        let mut up: VecDeque<Frame> = to_relay.into();
        for f in to_device {
            up.extend(
                self.client
                    .handle(&mut self.replica, f, Millis(device_now))
                    .unwrap(),
            );
        }
        while let Some(f) = up.pop_front() {
            sent.push(f.clone());
            let out = w
                .relay
                .handle(&mut self.session, f, Millis(relay_now))
                .unwrap();
            if out.needs_flush {
                w.relay.flush().unwrap();
            }
            for g in out.frames {
                up.extend(
                    self.client
                        .handle(&mut self.replica, g, Millis(device_now))
                        .unwrap(),
                );
            }
        }
        sent
    }
}

fn customer() -> Customer {
    Customer {
        name: "Wang Fang".into(),
        phone: "13800138000".into(),
    }
}

fn entropy(at: i64, n: u8) -> Entropy {
    Entropy {
        now: Millis(at),
        nonce: [n; 16],
        key: [0x5c; 32],
    }
}

fn reports(sent: &[Frame]) -> Vec<Unsynced> {
    sent.iter()
        .filter_map(|f| match f {
            Frame::Report { unsynced } => Some(*unsynced),
            _ => None,
        })
        .collect()
}

/// Tablet tab-a of S1 made three cases offline (device times 0 s, 10 s and
/// 20 s), and connects an hour later by its clock. Returns it after its
/// hello was answered at relay time `RELAY_NOW`, with the relay's answer
/// not yet delivered.
fn offline_tablet(w: &mut World) -> (Tablet, Vec<Frame>, Vec<Frame>) {
    let p = principal("S1", "tab-a", "alice");
    let mut replica = Replica::open(
        MemoryStorage::new(),
        DeviceIdentity {
            user: p.user.clone(),
            role: p.role,
            store: p.store.clone(),
            device: p.device.clone(),
        },
        [7; 16],
    );
    for i in 0..3u8 {
        replica
            .create_case(
                CaseId::from_bytes([i + 1; 16]),
                entropy(DEVICE_NOW + i64::from(i) * 10_000, i),
                CaseKind::Repair,
                customer(),
                None,
                None,
            )
            .unwrap();
    }
    let mut client = ClientSession::new().with_app_version("shopapp 4.2 (aftercase-client 0.1.0)");
    let mut start = client
        .start(&mut replica, Millis(DEVICE_NOW + 3_600_000))
        .unwrap();
    let hello = start.remove(0);
    assert_eq!(
        hello,
        Frame::Hello {
            cursor: 0,
            policy_version: replica.policy().version,
            app_version: "shopapp 4.2 (aftercase-client 0.1.0)".into(),
            unsynced: Unsynced {
                pending: 3,
                oldest_unsynced_secs: Some(3_600),
            },
            features: vec![
                "blobs".into(),
                "push".into(),
                "upload".into(),
                "keys".into()
            ],
        }
    );
    let mut session = w.relay.session(p);
    let answer = w
        .relay
        .handle(&mut session, hello, Millis(RELAY_NOW))
        .unwrap();
    let t = Tablet {
        replica,
        client,
        session,
    };
    (t, start, answer.frames)
}

#[test]
fn a_tablet_reports_its_unsynced_work_at_hello_and_again_once_the_round_settles() {
    let mut w = World::new();
    let (mut t, uploads, answer) = offline_tablet(&mut w);

    // At hello: the report as the device made it, the identity from the
    // principal, the relay's times.
    let at_hello = w.record("S1", "tab-a");
    assert_eq!(
        at_hello,
        DeviceRecord {
            store: store("S1"),
            device: DeviceId::new("tab-a").unwrap(),
            user: UserId::new("alice").unwrap(),
            role: Role::Staff,
            app_version: "shopapp 4.2 (aftercase-client 0.1.0)".into(),
            first_seen: Millis(RELAY_NOW),
            last_seen: Millis(RELAY_NOW),
            // The catch-up after the hello was fully announced.
            last_sync: Some(Millis(RELAY_NOW)),
            pending: 3,
            oldest_unsynced_secs: Some(3_600),
            reported_at: Millis(RELAY_NOW),
        }
    );
    assert_eq!(
        fleet::devices_with_unsynced_work(&w.storage, None).unwrap(),
        1
    );

    // The uploads are accepted; once settled the tablet reports, once.
    let sent = t.pump(
        &mut w,
        uploads,
        answer,
        RELAY_NOW + 5_000,
        DEVICE_NOW + 3_605_000,
    );
    assert_eq!(
        reports(&sent),
        vec![Unsynced {
            pending: 0,
            oldest_unsynced_secs: None
        }]
    );
    assert!(t.client.is_settled());
    let after = w.record("S1", "tab-a");
    assert_eq!((after.pending, after.oldest_unsynced_secs), (0, None));
    assert_eq!(after.reported_at, Millis(RELAY_NOW + 5_000));
    assert_eq!(after.last_seen, Millis(RELAY_NOW + 5_000));
    assert_eq!(after.first_seen, Millis(RELAY_NOW));
    assert!(after.last_sync.is_some());
    assert_eq!(
        fleet::devices_with_unsynced_work(&w.storage, None).unwrap(),
        0
    );

    // A later connection keeps the first sighting.
    let (_, again) = w.hello(
        principal("S1", "tab-a", "alice"),
        "shopapp 4.3",
        Unsynced::default(),
        RELAY_NOW + 86_400_000,
    );
    again.unwrap();
    let later = w.record("S1", "tab-a");
    assert_eq!(later.first_seen, Millis(RELAY_NOW));
    assert_eq!(later.last_seen, Millis(RELAY_NOW + 86_400_000));
    assert_eq!(later.app_version, "shopapp 4.3");
}

#[test]
fn an_accepted_upload_counts_as_a_sync_at_most_once_a_minute_and_an_unchanged_count_is_not_reported(
) {
    let mut w = World::new();
    let (mut t, uploads, answer) = offline_tablet(&mut w);
    t.pump(&mut w, uploads, answer, RELAY_NOW, DEVICE_NOW + 3_600_000);
    assert_eq!(w.record("S1", "tab-a").last_sync, Some(Millis(RELAY_NOW)));

    // An edit while connected, uploaded two minutes after the hello.
    let case = CaseId::from_bytes([1; 16]);
    let edit = |t: &mut Tablet, at: i64, n: u8| {
        t.replica
            .add_note(case, entropy(at, n), "called the customer")
            .unwrap();
        t.client.local_change(&mut t.replica, case).unwrap()
    };
    let frames = edit(&mut t, DEVICE_NOW + 3_720_000, 40);
    let sent = t.pump(
        &mut w,
        frames,
        Vec::new(),
        RELAY_NOW + 120_000,
        DEVICE_NOW + 3_720_000,
    );
    let r = w.record("S1", "tab-a");
    assert_eq!(r.last_sync, Some(Millis(RELAY_NOW + 120_000)));
    assert_eq!(r.last_seen, Millis(RELAY_NOW + 120_000));
    // Pending went 0 -> 1 -> 0 within the round: nothing new to report.
    assert_eq!(reports(&sent), Vec::<Unsynced>::new());
    assert_eq!(r.reported_at, Millis(RELAY_NOW));

    // Ten seconds later another upload does not rewrite the record.
    let frames = edit(&mut t, DEVICE_NOW + 3_730_000, 41);
    t.pump(
        &mut w,
        frames,
        Vec::new(),
        RELAY_NOW + 130_000,
        DEVICE_NOW + 3_730_000,
    );
    assert_eq!(
        w.record("S1", "tab-a").last_sync,
        Some(Millis(RELAY_NOW + 120_000))
    );
}

#[test]
fn records_are_filed_under_the_principal_whatever_the_report_says() {
    let mut w = World::new();
    let busy = Unsynced {
        pending: 5,
        oldest_unsynced_secs: Some(200_000),
    };
    let (_, ok) = w.hello(principal("S1", "tab-a", "alice"), "app 1", busy, RELAY_NOW);
    ok.unwrap();
    let tab_a = w.record("S1", "tab-a");

    // Bob's tablet names tab-a wherever it can: in its version text, and
    // by reporting nothing pending. The report has no field for an id, so
    // it lands on tab-b's own record and tab-a's is untouched.
    let (mut s, ok) = w.hello(
        principal("S1", "tab-b", "bob"),
        "tab-a",
        Unsynced::default(),
        RELAY_NOW + 1_000,
    );
    ok.unwrap();
    let report = Frame::Report {
        unsynced: Unsynced::default(),
    };
    w.relay
        .handle(&mut s, report, Millis(RELAY_NOW + 2_000))
        .unwrap();
    assert_eq!(w.record("S1", "tab-a"), tab_a);
    let tab_b = w.record("S1", "tab-b");
    assert_eq!(tab_b.user.as_str(), "bob");
    assert_eq!(tab_b.reported_at, Millis(RELAY_NOW + 2_000));

    // Device names repeat across stores, and one store's id may begin
    // another's: each store sees only its own devices.
    for s in ["S2", "S10"] {
        let (_, ok) = w.hello(principal(s, "tab-a", "carol"), "app 1", busy, RELAY_NOW);
        ok.unwrap();
    }
    let names = |s: Option<&str>| -> Vec<String> {
        fleet::devices(&w.storage, s.map(store).as_ref())
            .unwrap()
            .iter()
            .map(|r| format!("{}/{}", r.store, r.device))
            .collect()
    };
    assert_eq!(names(Some("S1")), vec!["S1/tab-a", "S1/tab-b"]);
    assert_eq!(names(Some("S2")), vec!["S2/tab-a"]);
    assert_eq!(names(Some("S10")), vec!["S10/tab-a"]);
    assert_eq!(names(None).len(), 4);
    assert_eq!(w.record("S2", "tab-a").user.as_str(), "carol");
    let unsynced = |s: Option<&str>| {
        fleet::devices_with_unsynced_work(&w.storage, s.map(store).as_ref()).unwrap()
    };
    assert_eq!(unsynced(Some("S1")), 1);
    assert_eq!(unsynced(None), 3);
}

#[test]
fn an_app_version_is_clipped_to_64_characters_and_control_characters_are_refused() {
    let mut w = World::new();
    let long = "é".repeat(200);
    let (_, ok) = w.hello(
        principal("S1", "tab-a", "alice"),
        &long,
        Unsynced::default(),
        RELAY_NOW,
    );
    ok.unwrap();
    assert_eq!(w.record("S1", "tab-a").app_version, "é".repeat(64));

    for bad in ["shopapp 4.2\nadmin logged in", "\u{1b}[31mred", "x\u{0}"] {
        let (_, refused) = w.hello(
            principal("S1", "tab-b", "bob"),
            bad,
            Unsynced::default(),
            RELAY_NOW,
        );
        match refused {
            Err(SessionError::Protocol(m)) => {
                assert!(m.contains("control character"), "{m}");
                assert!(m.contains("app version"), "{m}");
            }
            other => panic!("a version with control characters was accepted: {other:?}"),
        }
    }
    // Nothing was recorded for the refused hellos.
    assert!(
        fleet::device(&w.storage, &store("S1"), &DeviceId::new("tab-b").unwrap())
            .unwrap()
            .is_none()
    );

    // A report is no way around the hello.
    let mut s = w.relay.session(principal("S1", "tab-c", "dan"));
    let early = w.relay.handle(
        &mut s,
        Frame::Report {
            unsynced: Unsynced::default(),
        },
        Millis(RELAY_NOW),
    );
    assert!(matches!(early, Err(SessionError::Protocol(m)) if m.contains("hello")));
    assert_eq!(fleet::devices(&w.storage, None).unwrap().len(), 1);
}
