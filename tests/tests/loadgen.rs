//! The load generator's light devices against the real relay core, in
//! process and deterministic: what they send must be what the relay
//! accepts, acknowledges and passes on, and a real replica beside them must
//! end up holding their changes.

use aftercase_sync::access::{Principal, Role};
use aftercase_sync::protocol::{ClientSession, Frame};
use aftercase_sync::relay::{Relay, RelaySession};
use aftercase_sync::replica::{DeviceIdentity, Replica};
use aftercase_sync::storage::MemoryStorage;
use aftercase_sync::{DeviceId, Millis, StoreId, UserId};
use aftercase_tests::loadgen::{DeviceName, Event, LightDevice, Send, StorePlan};
use std::collections::VecDeque;
use std::num::NonZeroUsize;

const NOW: Millis = Millis(1_790_000_000_000);

enum Peer {
    Light(LightDevice),
    Real(Box<(Replica<MemoryStorage>, ClientSession)>),
}

struct Conn {
    session: RelaySession,
    peer: Peer,
    to_relay: VecDeque<Vec<u8>>,
    to_device: VecDeque<Vec<u8>>,
    events: Vec<Event>,
}

struct Store {
    relay: Relay<MemoryStorage>,
    plan: StorePlan,
    conns: Vec<Conn>,
}

fn store_plan(devices: usize, notes: usize) -> StorePlan {
    let names = (0..devices)
        .map(|i| DeviceName {
            user: UserId::new(format!("u-{i}")).expect("valid"),
            device: DeviceId::new(format!("tab-{i}")).expect("valid"),
        })
        .collect();
    StorePlan::build(
        7,
        StoreId::new("S007").expect("valid"),
        names,
        notes,
        NOW,
        2000,
    )
    .expect("plan")
}

fn bytes(plan: &StorePlan, s: Send) -> Vec<u8> {
    match s {
        Send::Upload { slot, k } => plan.cases[slot].upload[k].clone(),
        Send::Holding { slot, k } => plan.cases[slot].holding[k].clone(),
        Send::Other(b) => b,
    }
}

impl Store {
    /// Light devices in every slot of the plan, plus one real replica of
    /// the same store when `with_real`.
    fn new(devices: usize, notes: usize, with_real: bool) -> Store {
        let plan = store_plan(devices, notes);
        let relay = Relay::open(
            MemoryStorage::new(),
            NonZeroUsize::new(64).expect("nonzero"),
        )
        .expect("relay");
        let mut conns = Vec::new();
        for (slot, d) in plan.devices.iter().enumerate() {
            let principal = Principal {
                user: d.user.clone(),
                role: Role::Staff,
                store: plan.store.clone(),
                device: d.device.clone(),
            };
            let mut light = LightDevice::new(slot, devices);
            let start = light.start("loadgen test");
            conns.push(Conn {
                session: relay.session(principal),
                peer: Peer::Light(light),
                to_relay: start.into_iter().map(|s| bytes(&plan, s)).collect(),
                to_device: VecDeque::new(),
                events: Vec::new(),
            });
        }
        if with_real {
            let identity = DeviceIdentity {
                user: UserId::new("u-real").expect("valid"),
                role: Role::Staff,
                store: plan.store.clone(),
                device: DeviceId::new("tab-real").expect("valid"),
            };
            let principal = Principal {
                user: identity.user.clone(),
                role: identity.role,
                store: identity.store.clone(),
                device: identity.device.clone(),
            };
            let mut r = Replica::open(MemoryStorage::new(), identity, [9; 16]);
            let mut client = ClientSession::new();
            let start = client.start(&mut r, NOW).expect("start");
            conns.push(Conn {
                session: relay.session(principal),
                peer: Peer::Real(Box::new((r, client))),
                to_relay: start.iter().map(Frame::encode).collect(),
                to_device: VecDeque::new(),
                events: Vec::new(),
            });
        }
        Store { relay, plan, conns }
    }

    /// Delivers frames both ways until nothing moves, as the server shell
    /// does: the relay flushes before its answers go out and then wakes
    /// every other session of the store.
    fn run_until_quiet(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.conns.len() {
                while let Some(b) = self.conns[i].to_relay.pop_front() {
                    moved = true;
                    let frame = Frame::decode(&b).expect("device frame decodes");
                    let out = self
                        .relay
                        .handle(&mut self.conns[i].session, frame, NOW)
                        .expect("relay handles the frame");
                    if out.needs_flush {
                        self.relay.flush().expect("flush");
                    }
                    self.conns[i]
                        .to_device
                        .extend(out.frames.iter().map(Frame::encode));
                    if out.changed.is_some() {
                        for j in 0..self.conns.len() {
                            if j != i {
                                let frames = self
                                    .relay
                                    .announce(&mut self.conns[j].session)
                                    .expect("announce");
                                self.conns[j]
                                    .to_device
                                    .extend(frames.iter().map(Frame::encode));
                            }
                        }
                    }
                }
                while let Some(b) = self.conns[i].to_device.pop_front() {
                    moved = true;
                    let c = &mut self.conns[i];
                    match &mut c.peer {
                        Peer::Light(d) => {
                            let mut out = Vec::new();
                            d.handle(&self.plan, &b, &mut out, &mut c.events)
                                .expect("light device handles the frame");
                            c.to_relay
                                .extend(out.into_iter().map(|s| bytes(&self.plan, s)));
                        }
                        Peer::Real(rc) => {
                            let (r, client) = &mut **rc;
                            let frame = Frame::decode(&b).expect("relay frame decodes");
                            let out = client.handle(r, frame, NOW).expect("replica handles");
                            c.to_relay.extend(out.iter().map(Frame::encode));
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the exchange did not settle");
    }

    fn light(&mut self, slot: usize) -> &mut LightDevice {
        match &mut self.conns[slot].peer {
            Peer::Light(d) => d,
            Peer::Real(_) => panic!("slot {slot} is the replica"),
        }
    }

    fn edit(&mut self, slot: usize, k: usize) {
        let s = self.light(slot).edit(k).expect("the plan has the change");
        let b = bytes(&self.plan, s);
        self.conns[slot].to_relay.push_back(b);
    }
}

#[test]
fn light_devices_upload_acknowledge_and_receive_like_replicas() {
    let mut s = Store::new(4, 3, true);
    s.run_until_quiet();
    for slot in 0..4 {
        assert!(s.light(slot).ready(), "device {slot} ready after setup");
        assert_eq!(s.light(slot).acked(), 1);
    }
    // Every device makes its notes; each is acknowledged to its maker and
    // delivered to every other device of the store.
    for k in 1..=3 {
        for slot in 0..4 {
            s.edit(slot, k);
        }
        s.run_until_quiet();
    }
    for slot in 0..4 {
        let d = s.light(slot);
        assert_eq!(d.acked(), 4, "device {slot}'s notes acknowledged");
        for other in 0..4 {
            assert_eq!(d.held(other), 4, "device {slot} holds case {other}");
        }
        let events = &s.conns[slot].events;
        assert!(
            !events.iter().any(|e| matches!(e, Event::Refused { .. })),
            "nothing refused: {events:?}"
        );
        // Deliveries of live notes came one by one, pushed by the relay.
        for other in (0..4).filter(|o| *o != slot) {
            for k in 1..=3 {
                assert!(
                    events.iter().any(|e| matches!(e,
                        Event::Delivered { slot: o, from, to } if *o == other && *from <= k && k < *to)),
                    "device {slot} got note {k} of case {other}"
                );
            }
        }
    }
    // The real replica holds every light device's changes: they are real
    // Automerge changes the relay stored and served.
    let hashes: Vec<_> = s
        .plan
        .cases
        .iter()
        .map(|c| (c.case, c.hashes.clone()))
        .collect();
    let Peer::Real(rc) = &mut s.conns[4].peer else {
        panic!("the replica is last");
    };
    let (r, client) = &mut **rc;
    assert!(client.is_settled());
    for (case, hs) in hashes {
        assert!(r.has_all(case, &hs).expect("read"), "replica holds {case}");
    }
}

#[test]
fn a_light_device_that_connects_late_fetches_what_it_missed() {
    let mut s = Store::new(3, 2, false);
    let late = std::mem::take(&mut s.conns[2].to_relay);
    s.run_until_quiet();
    s.edit(0, 1);
    s.edit(1, 1);
    s.edit(1, 2);
    s.run_until_quiet();
    s.conns[2].to_relay = late;
    s.run_until_quiet();
    assert!(s.light(2).ready());
    assert_eq!(s.light(2).held(0), 2);
    assert_eq!(s.light(2).held(1), 3);
    assert_eq!(
        s.light(0).held(2),
        1,
        "the late device's case reached the others"
    );
    s.edit(2, 1);
    s.run_until_quiet();
    assert_eq!(s.light(0).held(2), 2);
    assert_eq!(s.light(1).held(2), 2);
}

#[test]
fn changes_out_of_causal_order_wait_for_their_predecessor() {
    use automerge::sync::{ChunkList, Message, MessageVersion};
    let plan = store_plan(2, 3);
    let c = &plan.cases[0];
    let case = c.case;
    let sync = |chunks: Vec<Vec<u8>>| {
        Frame::Sync {
            doc: case,
            message: Message {
                heads: vec![*c.hashes.last().expect("a chain")],
                need: Vec::new(),
                have: Vec::new(),
                changes: ChunkList::from(chunks),
                flags: None,
                version: MessageVersion::V1,
            }
            .encode(),
        }
        .encode()
    };
    let mut d = LightDevice::new(1, 2);
    let (mut out, mut events) = (Vec::new(), Vec::new());
    d.handle(
        &plan,
        &sync(vec![c.changes[0].clone()]),
        &mut out,
        &mut events,
    )
    .expect("the creation");
    assert_eq!(d.held(0), 1);
    // Note 3, then notes 2 and 1 in reverse order in one message.
    d.handle(
        &plan,
        &sync(vec![c.changes[3].clone()]),
        &mut out,
        &mut events,
    )
    .expect("an early change waits");
    assert_eq!(d.held(0), 1);
    d.handle(
        &plan,
        &sync(vec![c.changes[2].clone(), c.changes[1].clone()]),
        &mut out,
        &mut events,
    )
    .expect("reordered changes");
    assert_eq!(d.held(0), 4);
    assert_eq!(
        events.last(),
        Some(&Event::Delivered {
            slot: 0,
            from: 1,
            to: 4
        })
    );
    // It tells the relay what it now holds.
    assert_eq!(out.last(), Some(&Send::Holding { slot: 0, k: 3 }));
}
