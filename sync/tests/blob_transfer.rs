//! Evidence transfer under cuts, seeded and replayable: a tablet holding
//! photos taken offline uploads them over connections cut at random
//! frames (and a relay that may crash), and a second tablet downloads them
//! the same way. Every photo must arrive whole, nothing half counts as
//! stored, and each cut may cost at most the one chunk that was in
//! flight.

use aftercase_sync::access::{Principal, Role};
use aftercase_sync::blobs::{hash_of, BlobStore, Held, MemoryBlobs};
use aftercase_sync::case::edit::Customer;
use aftercase_sync::case::CaseKind;
use aftercase_sync::protocol::{ClientSession, Frame, MAX_BLOB_CHUNK};
use aftercase_sync::relay::blobs::BlobSession;
use aftercase_sync::relay::Relay;
use aftercase_sync::replica::{DeviceIdentity, Entropy, Replica};
use aftercase_sync::storage::{MemoryStorage, Storage};
use aftercase_sync::{CaseId, DeviceId, Millis, StoreId, UserId};
use proptest::prelude::*;
use std::num::NonZeroUsize;

fn identity(device: &str, role: Role) -> DeviceIdentity {
    DeviceIdentity {
        user: UserId::new(format!("u-{device}")).unwrap(),
        role,
        store: StoreId::new("S1").unwrap(),
        device: DeviceId::new(device).unwrap(),
    }
}

fn principal(i: &DeviceIdentity) -> Principal {
    Principal {
        user: i.user.clone(),
        role: i.role,
        store: i.store.clone(),
        device: i.device.clone(),
    }
}

/// A JPEG-looking photo of `len` bytes, distinct per `seed`.
fn photo(len: usize, seed: u64) -> Vec<u8> {
    let mut b = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1,
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while b.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // No 0xFF after the header: nothing reads as a JPEG marker.
        b.push(((x >> 24) as u8).min(0xFE));
    }
    b
}

struct Net {
    relay: Relay<MemoryStorage>,
    relay_storage: MemoryStorage,
    blobs: MemoryBlobs,
    rng: u64,
    now: i64,
    /// Blob bytes the devices sent in chunks.
    sent: u64,
    cuts: usize,
}

impl Net {
    fn new(seed: u64) -> Net {
        let relay_storage = MemoryStorage::new();
        Net {
            relay: Relay::open(relay_storage.clone(), NonZeroUsize::new(16).unwrap()).unwrap(),
            relay_storage,
            blobs: MemoryBlobs::new(),
            rng: seed.wrapping_mul(6_364_136_223_846_793_005) | 1,
            now: 1_790_000_000_000,
            sent: 0,
            cuts: 0,
        }
    }

    fn rand(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n.max(1)
    }

    /// One connection of `r` until settled or cut after `budget` frames
    /// from the device. Returns whether it settled.
    fn connect(
        &mut self,
        r: &mut Replica<MemoryStorage>,
        who: &DeviceIdentity,
        want_all: bool,
        budget: usize,
    ) -> bool {
        let want = if want_all {
            r.missing_blobs().unwrap()
        } else {
            Vec::new()
        };
        self.connect_with(r, who, want, budget)
    }

    /// A connection that fetches the evidence named `hash`.
    fn connect_wanting(
        &mut self,
        r: &mut Replica<MemoryStorage>,
        who: &DeviceIdentity,
        hash: aftercase_sync::blobs::BlobHash,
    ) -> bool {
        let want = r
            .missing_blobs()
            .unwrap()
            .into_iter()
            .filter(|m| m.hash == hash)
            .collect();
        self.connect_with(r, who, want, usize::MAX)
    }

    fn connect_with(
        &mut self,
        r: &mut Replica<MemoryStorage>,
        who: &DeviceIdentity,
        want: Vec<aftercase_sync::replica::blobs::MissingBlob>,
        budget: usize,
    ) -> bool {
        self.now += 1000;
        let now = Millis(self.now);
        let mut client = ClientSession::new();
        client.want_blobs(want);
        let mut session = self.relay.session(principal(who));
        let mut to_relay: std::collections::VecDeque<Frame> = client.start(r, now).unwrap().into();
        let mut delivered = 0;
        let settled = loop {
            if client.is_settled() && to_relay.is_empty() {
                break true;
            }
            let Some(f) = to_relay.pop_front() else {
                panic!("a device waits with nothing to send and is not settled");
            };
            if delivered == budget {
                // The link drops: this frame and everything after it is lost.
                self.cuts += 1;
                break false;
            }
            delivered += 1;
            if let Frame::BlobChunk { bytes, .. } = &f {
                self.sent += bytes.len() as u64;
            }
            let f = Frame::decode(&f.encode()).unwrap();
            let answers = if BlobSession::is_blob_frame(&f) {
                self.relay
                    .handle_blob(&mut session, &self.blobs, f)
                    .unwrap()
            } else {
                let out = self.relay.handle(&mut session, f, now).unwrap();
                if out.needs_flush {
                    self.relay.flush().unwrap();
                    self.relay.mark_durable(self.relay.seq());
                }
                out.frames
            };
            for a in answers {
                let a = Frame::decode(&a.encode()).unwrap();
                to_relay.extend(client.handle(r, a, now).unwrap());
            }
        };
        self.relay.end_session(session).unwrap();
        settled
    }

    /// The relay process is killed: partial blobs keep what reached the
    /// page cache (all of it), unflushed storage is lost.
    fn crash_relay(&mut self) {
        self.relay_storage.crash(0);
        self.relay =
            Relay::open(self.relay_storage.clone(), NonZeroUsize::new(16).unwrap()).unwrap();
        self.blobs.crash(|len| len);
    }
}

fn customer() -> Customer {
    Customer {
        name: "Wang".into(),
        phone: "13800000000".into(),
    }
}

/// Runs the story for `seed` and checks everything that must hold.
fn story(seed: u64, photos: usize, size: usize, relay_crashes: bool) {
    let mut net = Net::new(seed);
    let a_id = identity("tab-a", Role::Staff);
    let a_store = MemoryStorage::new();
    let mut a = Replica::open(a_store.clone(), a_id.clone(), [1; 16]);
    let case = CaseId::from_bytes([seed as u8 | 1; 16]);
    let mut t = 1_789_000_000_000i64;
    let mut e = || {
        t += 1000;
        Entropy {
            now: Millis(t),
            nonce: [t as u8; 16],
            key: [0x5c; 32],
        }
    };
    a.create_case(case, e(), CaseKind::DamageClaim, customer(), None, None)
        .unwrap();
    let mut all = Vec::new();
    for i in 0..photos {
        let bytes = photo(size + i, seed * 1000 + i as u64);
        a.attach_evidence(case, e(), "photo", &bytes, None).unwrap();
        all.push(bytes);
    }
    let total: u64 = all.iter().map(|b| b.len() as u64).sum();
    // Connections cut after a random number of frames until one settles.
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 500, "seed {seed}: no progress");
        let budget = 1 + net.rand(40) as usize;
        if net.connect(&mut a, &a_id, false, budget) {
            break;
        }
        if relay_crashes && net.rand(4) == 0 {
            net.crash_relay();
        }
    }
    for b in &all {
        let h = hash_of(b);
        assert_eq!(
            net.blobs.held(&h).unwrap(),
            Held::Complete(b.len() as u64),
            "seed {seed}"
        );
        assert_eq!(net.blobs.read(&h, 0, b.len()).unwrap(), *b);
    }
    assert!(a.pending_uploads().unwrap().is_empty());
    // Each cut wastes at most the chunk in flight.
    assert!(
        net.sent <= total + net.cuts as u64 * MAX_BLOB_CHUNK as u64,
        "seed {seed}: sent {} for {total} with {} cuts",
        net.sent,
        net.cuts
    );

    // A second tablet of the store fetches them, also over cut links.
    let b_id = identity("tab-b", Role::Supervisor);
    let mut b = Replica::open(MemoryStorage::new(), b_id.clone(), [2; 16]);
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 500, "seed {seed}: download makes no progress");
        let budget = 1 + net.rand(40) as usize;
        if net.connect(&mut b, &b_id, true, budget) && b.missing_blobs().unwrap().is_empty() {
            break;
        }
    }
    for x in &all {
        assert_eq!(b.blob_bytes(&hash_of(x)).unwrap().as_deref(), Some(&x[..]));
    }
    let _ = a_store.flush();
}

#[test]
fn photos_survive_a_link_cut_at_random_frames() {
    for seed in 1..=6 {
        story(seed, 12, 700_000, false);
    }
}

#[test]
fn photos_survive_relay_crashes_mid_upload() {
    for seed in 11..=14 {
        story(seed, 6, 600_000, true);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn any_seed_and_sizes_arrive_whole(seed in 100u64..10_000, photos in 1usize..5, size in 13usize..400_000) {
        story(seed, photos, size, seed % 3 == 0);
    }
}

#[test]
fn the_device_cache_keeps_unsent_evidence_and_evicts_the_oldest_sent() {
    let mut net = Net::new(99);
    let a_id = identity("tab-a", Role::Staff);
    let mut a = Replica::open(MemoryStorage::new(), a_id.clone(), [1; 16]);
    // A 1 MiB cache: room for one 600 KB photo.
    let policy = aftercase_sync::policy::Policy {
        device_cache_bytes: 1 << 20,
        version: 2,
        ..Default::default()
    };
    let json = serde_json::to_string(&policy).unwrap();
    a.adopt_policy(policy, &json).unwrap();
    let case = CaseId::from_bytes([9; 16]);
    let mut t = 1_789_000_000_000i64;
    let mut e = || {
        t += 1000;
        Entropy {
            now: Millis(t),
            nonce: [t as u8; 16],
            key: [0x5c; 32],
        }
    };
    a.create_case(case, e(), CaseKind::DamageClaim, customer(), None, None)
        .unwrap();
    let photos: Vec<Vec<u8>> = (0..3).map(|i| photo(600_000, 500 + i)).collect();
    for p in &photos {
        a.attach_evidence(case, e(), "photo", p, None).unwrap();
    }
    // Nothing has reached the relay: nothing may be evicted, whatever the bound.
    assert_eq!(a.evict_blobs().unwrap(), 0);
    assert_eq!(a.blob_cache().unwrap().1, 3);
    assert!(net.connect(&mut a, &a_id, false, usize::MAX));
    // Uploaded, the cache shrinks to its bound (evicting as each upload
    // is confirmed, oldest sent first): one photo fits.
    let held = photos
        .iter()
        .filter(|p| a.blob_bytes(&hash_of(p)).unwrap().is_some())
        .count();
    assert_eq!(held, 1);
    assert!(a.blob_cache().unwrap().0 <= 1 << 20);
    for p in &photos {
        assert!(matches!(
            net.blobs.held(&hash_of(p)).unwrap(),
            Held::Complete(_)
        ));
    }
    // Evicted evidence is fetched again when asked for.
    let missing = a.missing_blobs().unwrap();
    assert_eq!(missing.len(), 2);
    let gone = missing[0].hash;
    let gone_bytes = photos.iter().find(|p| hash_of(p) == gone).unwrap();
    let mut fetched = false;
    for _ in 0..3 {
        if net.connect_wanting(&mut a, &a_id, gone) {
            fetched = true;
            break;
        }
    }
    assert!(fetched);
    assert_eq!(
        a.blob_bytes(&gone).unwrap().as_deref(),
        Some(&gone_bytes[..])
    );
    assert!(a.blob_cache().unwrap().0 <= 1 << 20);
}
