//! A deterministic world of devices and one relay, connected by in-memory
//! links that carry encoded frames. No sockets, no sleeps, no wall clock:
//! a seed decides everything, so a failing run replays exactly.
//!
//! Used by `tests/simulation.rs` (random plans) and `tests/scenarios.rs`
//! (hand-written stories).
//!
//! [`cutproxy`] is the real-socket counterpart for tests of the binaries: a
//! TCP proxy that cuts the link at seeded byte positions.

use aftercase_sync::access::{Principal, Role};
use aftercase_sync::case::edit::Customer;
use aftercase_sync::case::{CaseKind, CaseView};
use aftercase_sync::protocol::{ClientSession, Frame};
use aftercase_sync::relay::readmodel::ReadModel;
use aftercase_sync::relay::summary::CaseSummary;
use aftercase_sync::relay::{Relay, RelaySession};
use aftercase_sync::replica::{DeviceIdentity, Entropy, Replica};
use aftercase_sync::storage::{MemoryStorage, Storage};
use aftercase_sync::{CaseId, DeviceId, Millis, StoreId, UserId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::num::NonZeroUsize;

pub mod bookings;
pub mod cutproxy;
pub mod loadgen;
pub mod postgres;
pub mod quantile;
pub mod ws_client;

fn summary(f: &Frame) -> String {
    match f {
        Frame::Sync { doc, message } => match automerge::sync::Message::decode(message) {
            Ok(m) => format!(
                "sync {doc}: heads {} need {} have {} changes {}",
                m.heads.len(),
                m.need.len(),
                m.have.len(),
                m.changes.len()
            ),
            Err(e) => format!("sync {doc}: bad {e}"),
        },
        other => format!("{other:?}"),
    }
}

/// One live link between a device and the relay.
pub struct Link {
    client: ClientSession,
    session: RelaySession,
    to_relay: VecDeque<Vec<u8>>,
    to_device: VecDeque<Vec<u8>>,
    /// Relay replies waiting for the relay's next flush (group commit):
    /// they acknowledge writes a relay crash could still lose.
    held: Vec<Vec<u8>>,
    /// Pushed changes held back by the fault plan, delivered after the
    /// relay's next wake-up of this link (out of order).
    late: Vec<Vec<u8>>,
    /// The relay node the device is connected to (0: [`World::relay`]).
    node: usize,
}

/// What happened to the changes the relay pushed ([`Frame::Changes`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct PushStats {
    /// Pushes handed to a device.
    pub delivered: usize,
    /// Pushes the fault plan dropped.
    pub lost: usize,
    /// Pushes the fault plan sent twice.
    pub duplicated: usize,
    /// Pushes the fault plan delivered late, after later frames.
    pub reordered: usize,
}

/// Cases devices sent whole ([`Frame::Changes`] towards the relay) and
/// what came of them.
#[derive(Debug, Default, Clone, Copy)]
pub struct UploadStats {
    /// Cases sent whole.
    pub whole: usize,
    /// [`Frame::Stored`] answers handed to a device.
    pub stored: usize,
}

/// A simulated tablet or phone.
pub struct Device {
    /// Display name, also the device id.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its store.
    pub store: StoreId,
    storage: MemoryStorage,
    /// The device's replica.
    pub replica: Replica<MemoryStorage>,
    link: Option<Link>,
    /// Frames the relay has received from this device, by frame name.
    pub sent: std::collections::BTreeMap<&'static str, usize>,
}

impl Device {
    fn principal(&self) -> Principal {
        Principal {
            user: UserId::new(format!("user-{}", self.name)).expect("valid"),
            role: self.role,
            store: self.store.clone(),
            device: DeviceId::new(self.name.clone()).expect("valid"),
        }
    }

    /// Whether it has a live link.
    pub fn is_connected(&self) -> bool {
        self.link.is_some()
    }
}

/// An edit the SDK reported saved, to be found everywhere at the end.
#[derive(Debug, Clone)]
pub struct SavedEdit {
    /// The case.
    pub case: CaseId,
    /// The store owning it.
    pub store: StoreId,
    /// Note text that must appear in the timeline.
    pub marker: String,
}

/// The whole simulated system.
pub struct World {
    /// Randomness for the plan and for the devices' nonces.
    pub rng: SmallRng,
    now: i64,
    relay_storage: MemoryStorage,
    /// The relay (node 0).
    pub relay: Relay<MemoryStorage>,
    /// Further relay nodes over the same storage, as relay processes over
    /// one PostgreSQL database ([`World::add_relay_node`]).
    pub others: Vec<Relay<MemoryStorage>>,
    /// All devices.
    pub devices: Vec<Device>,
    /// Every edit reported saved.
    pub saved: Vec<SavedEdit>,
    /// Log of what happened, printed on failure.
    pub log: Vec<String>,
    /// Protocol errors seen (must stay empty for honest peers).
    pub errors: Vec<String>,
    relay_cache: NonZeroUsize,
    /// Accepted changes wait for the relay's next flush.
    flush_due: bool,
    seed: u64,
    /// Head office's read model as the relay's shell keeps it: loaded
    /// from storage at start, fed each commit's summary once flushed.
    pub live: ReadModel,
    /// Summaries of commits not yet flushed, with their sequence.
    staged: Vec<(u64, CaseId, CaseSummary)>,
    /// Whether pushed changes are lost, duplicated and reordered at random.
    pub push_faults: bool,
    /// Whether devices ask for pushes (each connection decides at random
    /// when `None`).
    pub push: Option<bool>,
    /// What happened to pushes.
    pub pushes: PushStats,
    /// What became of cases sent whole.
    pub uploads: UploadStats,
    /// Whether devices upload never-confirmed cases whole (each connection
    /// decides at random when `None`).
    pub upload: Option<bool>,
    /// Each case's customer (name, phone), unique per case, so an erased
    /// customer can be searched for in every store.
    pub customers: std::collections::HashMap<CaseId, (String, String)>,
    /// Cases whose customer data head office erased, durably.
    pub erased: Vec<CaseId>,
    /// Erasures not flushed yet (a relay crash may lose them).
    erasing: Vec<CaseId>,
}

fn identity(name: &str, role: Role, store: &StoreId) -> DeviceIdentity {
    DeviceIdentity {
        user: UserId::new(format!("user-{name}")).expect("valid"),
        role,
        store: store.clone(),
        device: DeviceId::new(name).expect("valid"),
    }
}

/// Opens the relay; on odd seeds its cache is also bounded by memory, to
/// about three documents, so eviction by weight happens constantly. On
/// seeds divisible by three each connection keeps one sync state whole, so
/// the others are kept encoded between nearly every message.
fn open_relay(storage: &MemoryStorage, cache: NonZeroUsize, seed: u64) -> Relay<MemoryStorage> {
    let mut relay = Relay::open(storage.clone(), cache).expect("open relay");
    if seed % 2 == 1 {
        relay.set_cache_budget(200 * 1024);
    }
    if seed.is_multiple_of(3) {
        relay.set_hot_states(NonZeroUsize::MIN);
    }
    relay
}

impl World {
    /// A world with a relay and no devices. `relay_cache` small values force
    /// evictions.
    pub fn new(seed: u64, relay_cache: usize) -> World {
        let relay_storage = MemoryStorage::new();
        let cache = NonZeroUsize::new(relay_cache.max(1)).expect("at least 1");
        World {
            rng: SmallRng::seed_from_u64(seed),
            now: 1_780_000_000_000,
            relay: open_relay(&relay_storage, cache, seed),
            others: Vec::new(),
            relay_storage,
            devices: Vec::new(),
            saved: Vec::new(),
            log: Vec::new(),
            errors: Vec::new(),
            relay_cache: cache,
            flush_due: false,
            seed,
            live: ReadModel::new(),
            staged: Vec::new(),
            push_faults: false,
            push: None,
            pushes: PushStats::default(),
            uploads: UploadStats::default(),
            upload: None,
            customers: Default::default(),
            erased: Vec::new(),
            erasing: Vec::new(),
        }
    }

    /// Adds a relay node over the same storage: from now on each connection
    /// goes to a node chosen at random, and every flush has each node take
    /// in the others' commits (`Relay::observe_commits`), as relay
    /// processes over one database do.
    pub fn add_relay_node(&mut self) {
        let mut node = open_relay(&self.relay_storage, self.relay_cache, self.seed);
        node.follow_others();
        self.relay.follow_others();
        self.others.push(node);
    }

    /// The relay nodes' sequence as stored (the change counter).
    fn stored_seq(&self) -> u64 {
        self.relay_storage
            .get(b"rs")
            .expect("read the counter")
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_be_bytes)
    }

    /// The simulated time now (relay clock; devices are never ahead of it).
    pub fn now(&self) -> Millis {
        Millis(self.now)
    }

    fn tick(&mut self) -> Millis {
        self.now += self.rng.random_range(1..5_000);
        Millis(self.now)
    }

    fn entropy(&mut self) -> Entropy {
        let now = self.tick();
        let nonce: [u8; 16] = self.rng.random();
        // A simulated case key from the nonce (no draw of its own), so
        // seeds replay as before keys: unique per case, secret enough here.
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(&nonce);
        key[16..].copy_from_slice(&nonce.map(|b| b ^ 0xa5));
        Entropy { now, nonce, key }
    }

    /// Adds a device; returns its index.
    pub fn add_device(&mut self, name: &str, role: Role, store: &str) -> usize {
        let store = StoreId::new(store).expect("valid store");
        let storage = MemoryStorage::new();
        let actor: [u8; 16] = self.rng.random();
        let replica = Replica::open(storage.clone(), identity(name, role, &store), actor);
        self.devices.push(Device {
            name: name.to_string(),
            role,
            store,
            storage,
            replica,
            link: None,
            sent: Default::default(),
        });
        self.devices.len() - 1
    }

    /// Opens a case on device `d`; records it as saved.
    pub fn create_case(&mut self, d: usize) -> CaseId {
        let e = self.entropy();
        let id = CaseId::from_random_bytes(self.rng.random());
        let kind = CaseKind::ALL[self.rng.random_range(0..CaseKind::ALL.len())];
        let marker = format!("opened-{id}");
        // From the id, not the plan's randomness, so seeds replay as
        // before customers were told apart.
        let b = id.as_bytes();
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let name = format!("Zhang Wei {n}");
        let phone = format!("138{:08}", n % 100_000_000);
        self.customers.insert(id, (name.clone(), phone.clone()));
        self.devices[d]
            .replica
            .create_case(id, e, kind, Customer { name, phone }, None, None)
            .expect("create");
        let e = self.entropy();
        self.devices[d]
            .replica
            .add_note(id, e, &marker)
            .expect("note");
        let store = self.devices[d].store.clone();
        self.saved.push(SavedEdit {
            case: id,
            store,
            marker,
        });
        self.log
            .push(format!("{} creates {id}", self.devices[d].name));
        self.after_local_edit(d, id);
        id
    }

    /// Adds a uniquely marked note to `case` on device `d`.
    pub fn add_note(&mut self, d: usize, case: CaseId) {
        let e = self.entropy();
        let marker = format!("note-{}-{}", self.devices[d].name, self.rng.random::<u32>());
        self.devices[d]
            .replica
            .add_note(case, e, &marker)
            .expect("note on a case the device holds");
        let store = self.devices[d].store.clone();
        self.log
            .push(format!("{} notes {case}: {marker}", self.devices[d].name));
        if let Some(owner) = self
            .saved
            .iter()
            .find(|s| s.case == case)
            .map(|s| s.store.clone())
        {
            self.saved.push(SavedEdit {
                case,
                store: owner,
                marker,
            });
        } else {
            self.saved.push(SavedEdit {
                case,
                store,
                marker,
            });
        }
        self.after_local_edit(d, case);
    }

    /// Moves `case` on device `d` one random allowed step, or resolves its
    /// open conflict when the device's role may; refusals are skipped.
    pub fn random_move(&mut self, d: usize, case: CaseId) {
        let Ok(Some(view)) = self.devices[d].replica.case(case) else {
            return;
        };
        let e = self.entropy();
        let open = view.conflicts.iter().find(|c| c.status == "open").cloned();
        let result = match open {
            Some(c) => {
                let choose = c.options[self.rng.random_range(0..c.options.len())].clone();
                self.devices[d]
                    .replica
                    .resolve(case, e, &c.id, &choose)
                    .map(|_| format!("resolves {} -> {choose}", c.id))
            }
            None => {
                let role = self.devices[d].role;
                let kind = view.kind.as_deref().and_then(|k| k.parse().ok());
                let status = view.status.clone().unwrap_or_default();
                let options: Vec<String> = view
                    .allowed_transitions
                    .iter()
                    .filter(|to| {
                        kind.is_some_and(|k| {
                            aftercase_sync::workflow::roles::may_move(role, k, &status, to).is_ok()
                        })
                    })
                    .cloned()
                    .collect();
                if options.is_empty() {
                    return;
                }
                let to = options[self.rng.random_range(0..options.len())].clone();
                match kind.filter(|k| aftercase_sync::case::booking::needs_booking(*k, &to)) {
                    // Dispatching and scheduling are bookings (issue 12).
                    Some(_) => match self.random_slot(d) {
                        Some(slot) => self.devices[d]
                            .replica
                            .book(case, e, &slot)
                            .map(|_| format!("moves to {to} booking {}", slot.tech)),
                        None => return,
                    },
                    None => self.devices[d]
                        .replica
                        .transition(case, e, &to, None)
                        .map(|_| format!("moves to {to}")),
                }
            }
        };
        if let Ok(what) = result {
            self.log
                .push(format!("{} {what} on {case}", self.devices[d].name));
            self.after_local_edit(d, case);
        }
    }

    /// Device `d` assigns one of its cases to a technician of its store.
    pub fn assign_random(&mut self, d: usize) {
        if self.devices[d].role == Role::Technician {
            return;
        }
        let techs: Vec<String> = self
            .devices
            .iter()
            .filter(|t| t.role == Role::Technician && t.store == self.devices[d].store)
            .map(|t| format!("user-{}", t.name))
            .collect();
        let Ok(cases) = self.devices[d].replica.case_ids() else {
            return;
        };
        if techs.is_empty() || cases.is_empty() {
            return;
        }
        let case = cases[self.rng.random_range(0..cases.len().min(3))];
        let tech: UserId = techs[self.rng.random_range(0..techs.len())]
            .parse()
            .expect("valid");
        let e = self.entropy();
        if self.devices[d].replica.assign(case, e, &tech).is_ok() {
            self.log
                .push(format!("{} assigns {case} to {tech}", self.devices[d].name));
            self.after_local_edit(d, case);
        }
    }

    fn after_local_edit(&mut self, d: usize, case: CaseId) {
        let dev = &mut self.devices[d];
        if let Some(link) = dev.link.as_mut() {
            match link.client.local_change(&mut dev.replica, case) {
                Ok(frames) => link.to_relay.extend(frames.iter().map(Frame::encode)),
                Err(e) => self.errors.push(format!("{}: {e}", dev.name)),
            }
        }
    }

    /// Connects device `d` (no-op if connected).
    pub fn connect(&mut self, d: usize) {
        if self.devices[d].link.is_some() {
            return;
        }
        // Drawn only with several nodes, so one-node plans replay as before.
        let node = if self.others.is_empty() {
            0
        } else {
            self.rng.random_range(0..=self.others.len())
        };
        let principal = self.devices[d].principal();
        let session = match node {
            0 => self.relay.session(principal),
            n => self.others[n - 1].session(principal),
        };
        // Most devices take pushes; some sync every change, as an app
        // built before pushes does.
        let push = self.push.unwrap_or_else(|| self.rng.random_ratio(3, 4));
        // A quarter of connections upload every case by sync rounds.
        let upload = self.upload.unwrap_or_else(|| self.rng.random_ratio(3, 4));
        let mut client = ClientSession::new().with_push(push).with_upload(upload);
        let now = self.now();
        let dev = &mut self.devices[d];
        let frames = client.start(&mut dev.replica, now).expect("start");
        dev.link = Some(Link {
            client,
            session,
            to_relay: frames.iter().map(Frame::encode).collect(),
            to_device: VecDeque::new(),
            held: Vec::new(),
            late: Vec::new(),
            node,
        });
        self.log
            .push(format!("{} connects to node {node}", dev.name));
    }

    /// Cuts device `d`'s link; frames in flight are lost.
    pub fn disconnect(&mut self, d: usize) {
        if let Some(link) = self.devices[d].link.take() {
            let relay = match link.node {
                0 => &mut self.relay,
                n => &mut self.others[n - 1],
            };
            relay.end_session(link.session).expect("end session");
            self.log
                .push(format!("{} disconnects", self.devices[d].name));
        }
    }

    /// Crashes device `d`: unflushed writes may be lost; a fresh process
    /// (new actor) reopens the same storage.
    pub fn reboot_device(&mut self, d: usize) {
        self.disconnect(d);
        let keep = self.rng.random_range(0..3);
        let actor: [u8; 16] = self.rng.random();
        let dev = &mut self.devices[d];
        dev.storage.crash(keep);
        dev.replica = Replica::open(
            dev.storage.clone(),
            identity(&dev.name, dev.role, &dev.store),
            actor,
        );
        self.log.push(format!("{} reboots", dev.name));
    }

    /// The read model as stored, loaded afresh.
    pub fn relay_read_model(&self) -> Result<ReadModel, aftercase_sync::storage::StorageError> {
        aftercase_sync::relay::load_read_model(&self.relay_storage)
    }

    /// Crashes and restarts the relay: every link drops, unflushed relay
    /// writes may be lost.
    pub fn restart_relay(&mut self) {
        let keep = self.rng.random_range(0..3);
        self.restart_relay_keeping(keep);
    }

    /// Like [`World::restart_relay`], keeping exactly `keep` unflushed batches.
    pub fn restart_relay_keeping(&mut self, keep: usize) {
        for dev in &mut self.devices {
            dev.link = None;
        }
        self.relay_storage.crash(keep);
        self.flush_due = false;
        // Never reported done: a client would try again.
        self.erasing.clear();
        self.relay = open_relay(&self.relay_storage, self.relay_cache, self.seed);
        for node in &mut self.others {
            *node = open_relay(&self.relay_storage, self.relay_cache, self.seed);
            node.follow_others();
        }
        if !self.others.is_empty() {
            self.relay.follow_others();
        }
        self.staged.clear();
        self.live =
            aftercase_sync::relay::load_read_model(&self.relay_storage).expect("load read model");
        self.log.push("relay restarts".into());
    }

    /// Delivers one queued frame on device `d`'s link, relay-bound if
    /// `to_relay` else device-bound. Returns false if none was queued.
    pub fn deliver(&mut self, d: usize, to_relay: bool) -> bool {
        let now = self.tick();
        let dev = &mut self.devices[d];
        let Some(link) = dev.link.as_mut() else {
            return false;
        };
        let queue = if to_relay {
            &mut link.to_relay
        } else {
            &mut link.to_device
        };
        let Some(bytes) = queue.pop_front() else {
            return false;
        };
        let frame = match Frame::decode(&bytes) {
            Ok(f) => f,
            Err(e) => {
                self.errors.push(format!("decode: {e}"));
                self.disconnect(d);
                return true;
            }
        };
        if to_relay {
            *dev.sent.entry(frame.name()).or_default() += 1;
            if matches!(frame, Frame::Changes { .. }) {
                self.uploads.whole += 1;
            }
            let relay = match link.node {
                0 => &mut self.relay,
                n => &mut self.others[n - 1],
            };
            match relay.handle(&mut link.session, frame, now) {
                Ok(mut out) => {
                    if let (Some(c), Some(sm)) = (out.changed, out.summary.take()) {
                        self.staged.push((relay.seq(), c, *sm));
                    }
                    for f in &out.frames {
                        if let Frame::Refused { doc, reason, .. } = f {
                            self.log
                                .push(format!("relay refuses {doc} from {}: {reason}", dev.name));
                        }
                    }
                    let frames = out.frames.iter().map(Frame::encode);
                    // Order on a link is kept: once something is held,
                    // everything after it waits too.
                    if out.needs_flush || !link.held.is_empty() {
                        link.held.extend(frames);
                        if out.needs_flush {
                            self.flush_due = true;
                        }
                    } else {
                        link.to_device.extend(frames);
                    }
                    if out.policy_published {
                        self.wake_others();
                    }
                }
                Err(e) => {
                    self.errors.push(format!("relay/{}: {e}", dev.name));
                    self.disconnect(d);
                }
            }
        } else {
            match frame {
                Frame::Changes { .. } => self.pushes.delivered += 1,
                Frame::Stored { .. } => self.uploads.stored += 1,
                _ => {}
            }
            match link.client.handle(&mut dev.replica, frame, now) {
                Ok(frames) => link.to_relay.extend(frames.iter().map(Frame::encode)),
                Err(e) => {
                    self.errors.push(format!("device/{}: {e}", dev.name));
                    self.disconnect(d);
                }
            }
        }
        true
    }

    /// The relay's group flush: makes every accepted change durable, then
    /// releases the replies that acknowledge them and wakes the sessions.
    pub fn flush_relay(&mut self) {
        if !self.flush_due {
            return;
        }
        self.relay.flush().expect("relay flush");
        for node in &mut self.others {
            node.flush().expect("relay flush");
        }
        self.erased.append(&mut self.erasing);
        self.flush_due = false;
        let seq = self.relay.seq();
        // Each node takes in the others' commits, as each relay's follower
        // does once their flush is seen.
        if !self.others.is_empty() {
            let stored = self.stored_seq();
            for node in std::iter::once(&mut self.relay).chain(self.others.iter_mut()) {
                node.observe_commits(stored).expect("observe commits");
                node.reload_policy().expect("reload policy");
            }
        }
        let seq = seq.max(self.stored_seq());
        for (_, c, sm) in self.staged.extract_if(.., |(s, _, _)| *s <= seq) {
            self.live.upsert(c, sm);
        }
        for dev in &mut self.devices {
            if let Some(link) = dev.link.as_mut() {
                link.to_device.extend(link.held.drain(..));
            }
        }
        self.wake_others();
    }

    fn wake_others(&mut self) {
        for dev in &mut self.devices {
            if let Some(link) = dev.link.as_mut() {
                let relay = match link.node {
                    0 => &mut self.relay,
                    n => &mut self.others[n - 1],
                };
                match relay.announce(&mut link.session) {
                    Ok(frames) => {
                        let mut late = Vec::new();
                        for f in &frames {
                            let bytes = f.encode();
                            if !(self.push_faults && matches!(f, Frame::Changes { .. })) {
                                link.to_device.push_back(bytes);
                                continue;
                            }
                            match self.rng.random_range(0..10) {
                                0 => self.pushes.lost += 1,
                                1 => {
                                    self.pushes.duplicated += 1;
                                    link.to_device.push_back(bytes.clone());
                                    late.push(bytes);
                                }
                                2 => {
                                    self.pushes.reordered += 1;
                                    late.push(bytes);
                                }
                                _ => link.to_device.push_back(bytes),
                            }
                        }
                        // Held back from the last wake-up: after this one's.
                        link.to_device
                            .extend(std::mem::replace(&mut link.late, late));
                    }
                    Err(e) => self.errors.push(format!("announce: {e}")),
                }
            }
        }
    }

    /// Delivers frames in random order until no link has anything queued.
    /// Panics (with the log) if the links never go quiet: a livelock.
    pub fn run_until_quiet(&mut self) {
        for _ in 0..200_000 {
            let busy: Vec<(usize, bool)> = self
                .devices
                .iter()
                .enumerate()
                .filter_map(|(i, d)| d.link.as_ref().map(|l| (i, l)))
                .flat_map(|(i, l)| {
                    let mut v = Vec::new();
                    if !l.to_relay.is_empty() {
                        v.push((i, true));
                    }
                    if !l.to_device.is_empty() {
                        v.push((i, false));
                    }
                    v
                })
                .collect();
            if busy.is_empty() {
                if !self.flush_due {
                    return;
                }
                self.flush_relay();
                continue;
            }
            // The group flush happens at random points between deliveries.
            if self.flush_due && self.rng.random_bool(0.2) {
                self.flush_relay();
                continue;
            }
            let (d, dir) = busy[self.rng.random_range(0..busy.len())];
            self.deliver(d, dir);
        }
        let mut tail = String::new();
        for dev in &self.devices {
            if let Some(l) = &dev.link {
                for (dir, q) in [("->relay", &l.to_relay), ("->device", &l.to_device)] {
                    for b in q.iter().take(2) {
                        if let Ok(f) = Frame::decode(b) {
                            tail.push_str(&format!("{} {dir}: {:?}\n", dev.name, summary(&f)));
                            if let Frame::Sync { message, .. } = &f {
                                if let Ok(m) = automerge::sync::Message::decode(message) {
                                    tail.push_str(&format!(
                                        "   need {:?} heads {:?}\n",
                                        m.need, m.heads
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
        panic!(
            "links never went quiet; queued:\n{tail}\nlog tail:\n{}",
            self.log[self.log.len().saturating_sub(30)..].join("\n")
        );
    }

    /// Number of cases in the announces queued for device `d`.
    pub fn pending_announce(&self, d: usize) -> usize {
        self.devices[d].link.as_ref().map_or(0, |l| {
            l.to_device
                .iter()
                .filter_map(|b| Frame::decode(b).ok())
                .map(|f| match f {
                    Frame::Announce { docs, .. } => docs.len(),
                    _ => 0,
                })
                .sum()
        })
    }

    /// Head office erases the customer data of `case` (at relay node 0).
    pub fn erase(&mut self, case: CaseId) {
        let now = self.tick();
        let by = Principal {
            user: UserId::new("privacy-officer").expect("valid"),
            role: Role::HeadOffice,
            store: StoreId::new("HQ").expect("valid"),
            device: DeviceId::new("console").expect("valid"),
        };
        let entropy = aftercase_sync::relay::EraseEntropy {
            actor: self.rng.random(),
            nonce: self.rng.random(),
        };
        match self.relay.erase(case, &by, now, entropy) {
            Ok(mut out) => {
                if let Some(sm) = out.summary.take() {
                    self.staged.push((self.relay.seq(), case, *sm));
                }
                self.flush_due |= out.needs_flush;
                // Reported done (and checked) once flushed.
                self.erasing.push(case);
                self.log.push(format!("head office erases {case}"));
            }
            Err(e) => self.errors.push(format!("erase {case}: {e}")),
        }
    }

    /// Where the customer of an erased case can still be read: every
    /// store (relay and devices) holding the name or phone in plain bytes,
    /// every holder of the case's key, and every view showing them.
    pub fn erasure_leaks(&mut self) -> Vec<String> {
        let mut leaks = Vec::new();
        for case in self.erased.clone() {
            let Some((name, phone)) = self.customers.get(&case).cloned() else {
                continue;
            };
            let mut stores: Vec<(String, &MemoryStorage)> =
                vec![("relay".to_string(), &self.relay_storage)];
            for dev in &self.devices {
                stores.push((dev.name.clone(), &dev.storage));
            }
            for (who, st) in stores {
                for (k, v) in st.scan_prefix(b"").expect("scan") {
                    for needle in [&name, &phone] {
                        if contains(&k, needle.as_bytes()) || contains(&v, needle.as_bytes()) {
                            leaks.push(format!("{who} stores {needle:?} of erased {case}"));
                        }
                    }
                }
            }
            // Stored bytes may be compressed: every value the case's
            // history ever held, decoded, must not hold them either.
            if let Some(bytes) = self.relay.doc_bytes(case).expect("read doc") {
                if let Some(needle) = history_holds(&bytes, &[&name, &phone]) {
                    leaks.push(format!("the history of erased {case} holds {needle:?}"));
                }
            }
            if self.relay.case_key(case).expect("read key").is_some() {
                leaks.push(format!("relay keeps the key of erased {case}"));
            }
            if let Some(v) = self.relay_view(case) {
                if v.customer.name.is_some() || v.customer.phone.is_some() {
                    leaks.push(format!("relay shows the customer of erased {case}"));
                }
            }
            for dev in &self.devices {
                if dev.replica.case_key(case).expect("read key").is_some() {
                    leaks.push(format!("{} keeps the key of erased {case}", dev.name));
                }
                if let Some(v) = dev.replica.case(case).expect("read") {
                    if v.customer.name.is_some() || v.customer.phone.is_some() {
                        leaks.push(format!("{} shows the customer of erased {case}", dev.name));
                    }
                }
            }
        }
        leaks
    }

    /// Whether device `d`'s session reports everything exchanged.
    pub fn is_settled(&self, d: usize) -> bool {
        let dev = &self.devices[d];
        dev.link.as_ref().is_some_and(|l| l.client.is_settled())
    }

    /// The relay's view of a case.
    pub fn relay_view(&mut self, case: CaseId) -> Option<CaseView> {
        self.relay.case_view(case).expect("relay read")
    }

    /// Every case device `d` holds, as plain data.
    pub fn device_views(&mut self, d: usize) -> Vec<CaseView> {
        self.devices[d].replica.cases().expect("device read")
    }

    /// Connects everyone, runs to quiescence and checks convergence, store
    /// isolation and that no saved edit was lost. Returns a description of
    /// the first violation.
    pub fn heal_and_check(&mut self) -> Result<(), String> {
        for d in 0..self.devices.len() {
            self.connect(d);
        }
        self.run_until_quiet();
        if !self.errors.is_empty() {
            return Err(format!("protocol errors: {:?}", self.errors));
        }
        for d in 0..self.devices.len() {
            if !self.is_settled(d) {
                return Err(format!(
                    "{} is not settled after quiescence",
                    self.devices[d].name
                ));
            }
        }
        let all = self
            .relay
            .list(&Default::default())
            .map_err(|e| e.to_string())?;
        for (case, meta) in &all {
            let relay_view = self.relay_view(*case).ok_or("relay lost a listed case")?;
            for d in 0..self.devices.len() {
                let sees = aftercase_sync::access::can_read(&self.devices[d].principal(), meta);
                // A technician keeps what was assigned to them before a reassignment.
                let may_hold = sees || self.devices[d].role == Role::Technician;
                let local = self.devices[d]
                    .replica
                    .case(*case)
                    .map_err(|e| e.to_string())?;
                match (sees, local) {
                    (true, Some(v)) if v != relay_view => {
                        return Err(format!(
                        "{} differs from relay on {case}:\n device {v:?}\n relay {relay_view:?}",
                        self.devices[d].name
                    ))
                    }
                    (true, None) => {
                        return Err(format!("{} never received {case}", self.devices[d].name))
                    }
                    (false, Some(_)) if !may_hold => {
                        return Err(format!(
                            "{} of store {} holds {case} of store {}",
                            self.devices[d].name, self.devices[d].store, meta.store
                        ))
                    }
                    _ => {}
                }
            }
        }
        // Every node serves the same cases.
        for n in 0..self.others.len() {
            for (case, _) in &all {
                let here = self.relay_view(*case);
                let there = self.others[n].case_view(*case).map_err(|e| e.to_string())?;
                if here != there {
                    return Err(format!(
                        "relay node {} differs from node 0 on {case}",
                        n + 1
                    ));
                }
            }
        }
        for s in self.saved.clone() {
            let v = self
                .relay_view(s.case)
                .ok_or_else(|| format!("saved case {} missing at relay", s.case))?;
            if !v
                .timeline
                .iter()
                .any(|t| t.text.as_deref() == Some(s.marker.as_str()))
            {
                return Err(format!("saved edit {:?} lost on case {}", s.marker, s.case));
            }
        }
        let leaks = self.erasure_leaks();
        if !leaks.is_empty() {
            return Err(format!("erased customers still readable: {leaks:?}"));
        }
        Ok(())
    }
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The first of `needles` that any value in the history of the document
/// `bytes` holds (every change decoded, so compression hides nothing).
pub fn history_holds(bytes: &[u8], needles: &[&str]) -> Option<String> {
    let doc = automerge::Automerge::load(bytes).ok()?;
    for change in doc.get_changes(&[]) {
        let text = format!("{:?}", change.decode());
        for n in needles {
            if text.contains(n) {
                return Some(n.to_string());
            }
        }
    }
    None
}
