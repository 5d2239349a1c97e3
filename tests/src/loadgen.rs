//! Light simulated devices for the relay load generator
//! (`src/bin/loadgen`): devices that speak the real sync protocol to the
//! real relay without holding a replica, so one core drives thousands of
//! connections and what is measured is the relay.
//!
//! Typical use: [`StorePlan::build`] once per store, before any connection
//! is opened: every device's own case and a sequence of notes on it are made
//! with the product's own edit functions ([`edit::create_case`],
//! [`edit::add_note`]) and kept as change bytes, together with every sync
//! frame a device of the store will ever send, already encoded. At run time
//! a [`LightDevice`] per connection turns each frame from the relay into
//! [`Send`]s (mostly references to those prebuilt frames) and [`Event`]s
//! (acknowledgements and deliveries for the harness to time).
//!
//! What a light device knows of a case is one number: how many changes of
//! its chain it holds. Each case is edited only by the device that created
//! it, so its history is a chain (creation, note 1, note 2, ...) and what a
//! device holds is always a prefix of it. A change arriving in a sync
//! message is recognised by the checksum in its chunk header (the first four
//! bytes of its hash) and a whole document (Automerge's "v2" sync message)
//! by the message's heads, so nothing is decompressed or applied. It answers
//! as an Automerge peer would: after a sync message that gave it new
//! changes it tells the relay its new heads (with `have` naming them as the
//! last sync point, which is exactly what it holds), it asks for cases it
//! has never held with `Fetch`, and it nudges the relay with its heads when
//! an announcement names heads it lacks.

use aftercase_sync::access::Role;
use aftercase_sync::case::edit::{self, Customer, EditContext, NewCase};
use aftercase_sync::case::CaseKind;
use aftercase_sync::protocol::{Frame, Unsynced, FEATURE_BLOBS, FEATURE_PUSH};
use aftercase_sync::{CaseId, DeviceId, Millis, StoreId, UserId};
use automerge::sync::{BloomFilter, ChunkList, Have, Message, MessageFlags, MessageVersion};
use automerge::{ActorId, Automerge, ChangeHash};

/// The checksum of an Automerge chunk (bytes 4 to 7 of its header) is the
/// first four bytes of the change's hash.
const CHECKSUM: std::ops::Range<usize> = 4..8;
/// Byte 8 of a chunk header is its type: 0 a whole document.
const CHUNK_TYPE: usize = 8;
const DOCUMENT_CHUNK: u8 = 0;

/// Who a simulated device is (as its token says).
#[derive(Debug, Clone)]
pub struct DeviceName {
    /// The signed-in user.
    pub user: UserId,
    /// The device id.
    pub device: DeviceId,
}

/// One device's case: its changes and the frames about it, prebuilt.
pub struct CasePlan {
    /// The case.
    pub case: CaseId,
    /// Change hashes in chain order (0 is the creation).
    pub hashes: Vec<ChangeHash>,
    /// Raw change chunks in chain order.
    pub changes: Vec<Vec<u8>>,
    /// `upload[k]`: the owner's `Sync` frame carrying change `k`, sent when
    /// the owner makes that edit.
    pub upload: Vec<Vec<u8>>,
    /// `holding[k]`: a `Sync` frame without changes saying "I hold changes
    /// 0 to k", what any device of the store answers after receiving them.
    pub holding: Vec<Vec<u8>>,
}

impl CasePlan {
    /// Position of `hash` in the chain.
    pub fn index_of(&self, hash: &ChangeHash) -> Option<usize> {
        self.hashes.iter().position(|h| h == hash)
    }

    /// Position of the change whose chunk carries `checksum`, looking from
    /// `from` first (the change that normally comes next).
    fn index_of_checksum(&self, checksum: &[u8], from: usize) -> Option<usize> {
        let hit = |i: &usize| self.hashes[*i].0[..4] == *checksum;
        (from..self.hashes.len())
            .find(hit)
            .or_else(|| (0..from.min(self.hashes.len())).find(hit))
    }
}

/// A store's devices and their prebuilt cases; slot `i` is device `i`.
pub struct StorePlan {
    /// The store.
    pub store: StoreId,
    /// The devices, by slot.
    pub devices: Vec<DeviceName>,
    /// Each device's own case, by slot.
    pub cases: Vec<CasePlan>,
}

/// A sync message from a peer that holds changes `0..=k` of a chain.
fn holding_message(plan_hashes: &[ChangeHash], k: usize, change: Option<Vec<u8>>) -> Vec<u8> {
    let heads = vec![plan_hashes[k]];
    // The flags section is what a current Automerge peer sends: it also
    // tells the relay this device reads whole-document ("v2") messages.
    let mut flags = MessageFlags::new();
    flags.set(MessageFlags::SUPPORTS_SYNC_RESET);
    let (last_sync, changes) = match change {
        // An upload: the relay holds everything before it.
        Some(bytes) => (
            if k == 0 {
                Vec::new()
            } else {
                vec![plan_hashes[k - 1]]
            },
            ChunkList::from(vec![bytes]),
        ),
        None => (heads.clone(), ChunkList::empty()),
    };
    Message {
        heads,
        need: Vec::new(),
        have: vec![Have {
            last_sync,
            bloom: BloomFilter::default(),
        }],
        changes,
        flags: Some(flags),
        version: MessageVersion::V1,
    }
    .encode()
}

impl StorePlan {
    /// Builds store `store`'s `devices`, each with its own case of
    /// `notes` notes after the creation, made at device times from `now`
    /// on, one every `period_ms`. `store_index` keeps the case ids and
    /// actors of different stores apart.
    pub fn build(
        store_index: usize,
        store: StoreId,
        devices: Vec<DeviceName>,
        notes: usize,
        now: Millis,
        period_ms: i64,
    ) -> Result<StorePlan, String> {
        let mut cases = Vec::with_capacity(devices.len());
        for (slot, d) in devices.iter().enumerate() {
            cases.push(build_case(
                store_index,
                slot,
                &store,
                d,
                notes,
                now,
                period_ms,
            )?);
        }
        // Changes are recognised by their checksum: two changes of one
        // case sharing one would be confused.
        for c in &cases {
            let mut sums: Vec<&[u8]> = c.hashes.iter().map(|h| &h.0[..4]).collect();
            sums.sort();
            sums.dedup();
            if sums.len() != c.hashes.len() {
                return Err(format!("two changes of case {} share a checksum", c.case));
            }
        }
        Ok(StorePlan {
            store,
            devices,
            cases,
        })
    }

    /// The slot of the device owning `case`.
    pub fn slot_of(&self, case: CaseId) -> Option<usize> {
        self.cases.iter().position(|c| c.case == case)
    }
}

fn build_case(
    store_index: usize,
    slot: usize,
    store: &StoreId,
    d: &DeviceName,
    notes: usize,
    now: Millis,
    period_ms: i64,
) -> Result<CasePlan, String> {
    let mut id = *b"loadgen\0\0\0\0\0\0\0\0\0";
    // Indexes in the last bytes: bytes 6 and 8 carry UUID version bits.
    id[10..14].copy_from_slice(&(store_index as u32).to_be_bytes());
    id[14..16].copy_from_slice(&(slot as u16).to_be_bytes());
    let case = CaseId::from_random_bytes(id);
    let mut actor = [0u8; 16];
    actor[..4].copy_from_slice(b"lgen");
    actor[8..12].copy_from_slice(&(store_index as u32).to_be_bytes());
    actor[12..14].copy_from_slice(&(slot as u16).to_be_bytes());
    let mut doc = Automerge::new().with_actor(ActorId::from(&actor[..]));
    let ctx = |k: usize| {
        let mut nonce = [0u8; 16];
        nonce[..4].copy_from_slice(&(store_index as u32).to_be_bytes());
        nonce[4..6].copy_from_slice(&(slot as u16).to_be_bytes());
        nonce[8..16].copy_from_slice(&(k as u64).to_be_bytes());
        EditContext {
            author: d.user.clone(),
            role: Role::Staff,
            device: d.device.clone(),
            now: Millis(now.0 + period_ms * k as i64),
            nonce,
        }
    };
    let mut hashes = Vec::with_capacity(notes + 1);
    let mut changes = Vec::with_capacity(notes + 1);
    let mut take = |doc: &Automerge, before: &[ChangeHash]| -> Result<(), String> {
        let new = doc.get_changes(before);
        let [c] = &new[..] else {
            return Err(format!("an edit made {} changes", new.len()));
        };
        hashes.push(c.hash());
        changes.push(c.raw_bytes().to_vec());
        Ok(())
    };
    edit::create_case(
        &mut doc,
        &ctx(0),
        &NewCase {
            id: case,
            case_no: format!("{store}-{}-1", d.device),
            kind: CaseKind::Repair,
            store: store.clone(),
            customer: Customer {
                name: format!("Customer {store_index}-{slot}"),
                phone: "13800000000".into(),
            },
            sku: Some("TV-55".into()),
            description: Some("No picture after power cut".into()),
        },
    )
    .map_err(|e| format!("create case: {e}"))?;
    take(&doc, &[])?;
    for k in 1..=notes {
        let before = doc.get_heads();
        edit::add_note(
            &mut doc,
            case,
            &ctx(k),
            &format!("note {k}: called the customer"),
        )
        .map_err(|e| format!("add note: {e}"))?;
        take(&doc, &before)?;
    }
    let upload = (0..hashes.len())
        .map(|k| {
            Frame::Sync {
                doc: case,
                message: holding_message(&hashes, k, Some(changes[k].clone())),
            }
            .encode()
        })
        .collect();
    let holding = (0..hashes.len())
        .map(|k| {
            Frame::Sync {
                doc: case,
                message: holding_message(&hashes, k, None),
            }
            .encode()
        })
        .collect();
    Ok(CasePlan {
        case,
        hashes,
        changes,
        upload,
        holding,
    })
}

/// A frame for the device to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Send {
    /// The prebuilt upload of change `k` of the case in `slot`
    /// ([`CasePlan::upload`]).
    Upload {
        /// Case slot.
        slot: usize,
        /// Change index.
        k: usize,
    },
    /// The prebuilt "I hold 0 to k" message ([`CasePlan::holding`]).
    Holding {
        /// Case slot.
        slot: usize,
        /// Change index.
        k: usize,
    },
    /// Any other frame, encoded.
    Other(Vec<u8>),
}

/// Something the harness measures or counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The relay acknowledged the device's own changes up to `k`.
    Acked {
        /// Highest change index acknowledged.
        k: usize,
    },
    /// The device now holds changes `from..to` of the case in `slot`.
    Delivered {
        /// Case slot.
        slot: usize,
        /// First new change index.
        from: usize,
        /// One past the last.
        to: usize,
    },
    /// The relay refused a case.
    Refused {
        /// Case slot (or `usize::MAX` for a case of another store).
        slot: usize,
        /// Its code and reason.
        reason: String,
    },
}

/// One simulated device's protocol state.
pub struct LightDevice {
    slot: usize,
    /// Changes held per case slot (a prefix of the case's chain).
    held: Vec<usize>,
    /// What the relay was last told this device holds, per slot.
    told: Vec<usize>,
    /// The relay answered a sync message about the slot's case.
    answered: Vec<bool>,
    /// The heads last announced, as a chain position, per slot.
    announced: Vec<Option<usize>>,
    /// Changes received ahead of one they depend on, per slot.
    early: Vec<Vec<usize>>,
    acked: usize,
    caught_up: bool,
    cursor: u64,
    /// Whether to ask for pushed changes ([`Frame::Changes`]).
    push: bool,
}

impl LightDevice {
    /// The device in `slot` of a store of `devices` devices, holding
    /// nothing yet.
    pub fn new(slot: usize, devices: usize) -> LightDevice {
        LightDevice {
            slot,
            held: vec![0; devices],
            told: vec![0; devices],
            answered: vec![false; devices],
            announced: vec![None; devices],
            early: vec![Vec::new(); devices],
            acked: 0,
            caught_up: false,
            cursor: 0,
            push: true,
        }
    }

    /// Whether to ask the relay for pushed changes (default yes, as the
    /// device library does); without, every change comes by sync message.
    pub fn with_push(mut self, push: bool) -> LightDevice {
        self.push = push;
        self
    }

    /// The first frames: the hello, then the upload of the device's new
    /// case (its creation change).
    pub fn start(&mut self, app_version: &str) -> Vec<Send> {
        let hello = Frame::Hello {
            cursor: self.cursor,
            policy_version: 0,
            app_version: app_version.to_string(),
            unsynced: Unsynced {
                pending: 1,
                oldest_unsynced_secs: Some(0),
            },
            features: if self.push {
                vec![FEATURE_BLOBS.to_string(), FEATURE_PUSH.to_string()]
            } else {
                vec![FEATURE_BLOBS.to_string()]
            },
        };
        let mut out = vec![Send::Other(hello.encode())];
        out.extend(self.edit(0));
        out
    }

    /// The upload of the device's own change `k` (0 the creation), or
    /// nothing when the plan has no such change.
    pub fn edit(&mut self, k: usize) -> Option<Send> {
        let own = self.slot;
        if k != self.held[own] {
            return None;
        }
        self.held[own] = k + 1;
        self.told[own] = k + 1;
        Some(Send::Upload { slot: own, k })
    }

    /// Own changes acknowledged by the relay.
    pub fn acked(&self) -> usize {
        self.acked
    }

    /// Changes held of the case in `slot`.
    pub fn held(&self, slot: usize) -> usize {
        self.held[slot]
    }

    /// Whether the device's case is stored at the relay, it holds every
    /// case of its store, and the relay has a sync state for each of them
    /// (so a new change is pushed to it without a request).
    pub fn ready(&self) -> bool {
        self.caught_up
            && self.acked >= 1
            && self.held.iter().all(|h| *h >= 1)
            && self
                .answered
                .iter()
                .enumerate()
                .all(|(i, a)| *a || i == self.slot)
    }

    /// Handles one frame from the relay; appends what to send and what
    /// happened. An error ends the connection.
    pub fn handle(
        &mut self,
        plan: &StorePlan,
        bytes: &[u8],
        out: &mut Vec<Send>,
        events: &mut Vec<Event>,
    ) -> Result<(), String> {
        let frame = Frame::decode(bytes).map_err(|e| format!("bad frame: {e}"))?;
        match frame {
            Frame::Welcome { .. } | Frame::Policy { .. } => {}
            Frame::Announce {
                up_to,
                docs,
                complete,
            } => {
                self.cursor = self.cursor.max(up_to);
                let mut fetch = Vec::new();
                for d in docs {
                    let slot = plan
                        .slot_of(d.doc)
                        .ok_or_else(|| format!("announced case {} of no store device", d.doc))?;
                    let c = &plan.cases[slot];
                    let mut top = None;
                    for h in &d.heads {
                        let i = c
                            .index_of(&ChangeHash(*h))
                            .ok_or_else(|| format!("announced an unknown head of {}", d.doc))?;
                        top = top.max(Some(i));
                    }
                    let Some(top) = top else { continue };
                    self.announced[slot] = self.announced[slot].max(Some(top));
                    if top < self.held[slot] {
                        continue;
                    }
                    if self.held[slot] == 0 {
                        fetch.push(d.doc);
                    } else {
                        // As a replica does: restart the exchange with what
                        // it holds, so the relay sends what it lacks.
                        out.push(Send::Holding {
                            slot,
                            k: self.held[slot] - 1,
                        });
                        self.told[slot] = self.held[slot];
                    }
                }
                if !fetch.is_empty() {
                    out.push(Send::Other(Frame::Fetch { docs: fetch }.encode()));
                }
                self.caught_up |= complete;
            }
            Frame::Snapshots { docs } => {
                for d in docs {
                    let slot = plan
                        .slot_of(d.doc)
                        .ok_or_else(|| format!("sent case {} of no store device", d.doc))?;
                    // The stored case holds at least what was announced.
                    let top = self.announced[slot].unwrap_or(0);
                    self.gained(slot, top + 1, events);
                    // A replica that fetched a case syncs it at its next
                    // announcement; saying so now lets the relay push the
                    // first live change instead of announcing it.
                    out.push(Send::Holding {
                        slot,
                        k: self.held[slot] - 1,
                    });
                    self.told[slot] = self.held[slot];
                }
            }
            Frame::Sync { doc, message } => {
                let slot = plan
                    .slot_of(doc)
                    .ok_or_else(|| format!("sync for case {doc} of no store device"))?;
                let c = &plan.cases[slot];
                let msg = Message::decode(&message)
                    .map_err(|e| format!("malformed sync message for {doc}: {e}"))?;
                self.answered[slot] = true;
                let whole = msg
                    .changes
                    .iter()
                    .any(|chunk| chunk.get(CHUNK_TYPE) == Some(&DOCUMENT_CHUNK));
                let mut held = self.held[slot];
                if whole {
                    // The whole document: everything up to its heads.
                    for h in &msg.heads {
                        if let Some(i) = c.index_of(h) {
                            held = held.max(i + 1);
                        }
                    }
                }
                let chunks = msg
                    .changes
                    .iter()
                    .filter(|chunk: &&[u8]| chunk.get(CHUNK_TYPE) != Some(&DOCUMENT_CHUNK));
                self.absorb(c, slot, held, chunks, events)?;
                if slot == self.slot {
                    let top = msg.heads.iter().filter_map(|h| c.index_of(h)).max();
                    if let Some(top) = top {
                        if top + 1 > self.acked {
                            self.acked = top + 1;
                            events.push(Event::Acked { k: top });
                        }
                    }
                }
                // The relay asks for changes it lacks (it lost an upload):
                // send them, as Automerge would.
                let needed: Vec<usize> = msg.need.iter().filter_map(|h| c.index_of(h)).collect();
                for k in needed {
                    if k < self.held[slot] {
                        out.push(Send::Upload { slot, k });
                    }
                }
                if self.told[slot] != self.held[slot] {
                    out.push(Send::Holding {
                        slot,
                        k: self.held[slot] - 1,
                    });
                    self.told[slot] = self.held[slot];
                }
            }
            Frame::Changes { doc, changes } => {
                let slot = plan
                    .slot_of(doc)
                    .ok_or_else(|| format!("changes for case {doc} of no store device"))?;
                let held = self.held[slot];
                self.absorb(
                    &plan.cases[slot],
                    slot,
                    held,
                    changes.iter().map(Vec::as_slice),
                    events,
                )?;
                // The relay pushed them knowing what this device held, so
                // it knows what it holds now: nothing to answer, as the
                // device library answers nothing.
                self.told[slot] = self.held[slot];
            }
            Frame::Refused { doc, code, reason } => events.push(Event::Refused {
                slot: plan.slot_of(doc).unwrap_or(usize::MAX),
                reason: format!("{code}: {reason}"),
            }),
            Frame::Error { reason } => return Err(format!("relay error: {reason}")),
            other => return Err(format!("unexpected {} from the relay", other.name())),
        }
        Ok(())
    }

    /// Takes change chunks of the case in `slot` (held up to `held`, or
    /// more), in any order: one whose predecessor has not arrived waits,
    /// as in Automerge's queue.
    fn absorb<'a>(
        &mut self,
        c: &CasePlan,
        slot: usize,
        mut held: usize,
        chunks: impl Iterator<Item = &'a [u8]>,
        events: &mut Vec<Event>,
    ) -> Result<(), String> {
        for chunk in chunks {
            if chunk.len() <= CHUNK_TYPE {
                return Err(format!("a change chunk of {} bytes", chunk.len()));
            }
            let i = c
                .index_of_checksum(&chunk[CHECKSUM], held)
                .ok_or_else(|| format!("an unknown change of {}", c.case))?;
            if i >= held && !self.early[slot].contains(&i) {
                self.early[slot].push(i);
            }
        }
        self.early[slot].sort_unstable();
        let mut rest = Vec::new();
        for i in std::mem::take(&mut self.early[slot]) {
            if i == held {
                held += 1;
            } else if i > held {
                rest.push(i);
            }
        }
        self.early[slot] = rest;
        self.gained(slot, held, events);
        Ok(())
    }

    fn gained(&mut self, slot: usize, held: usize, events: &mut Vec<Event>) {
        let from = self.held[slot];
        if held > from {
            self.held[slot] = held;
            events.push(Event::Delivered {
                slot,
                from,
                to: held,
            });
        }
    }
}
