//! One connection's exchange with the relay: the hello, announcements of
//! what changed (with the changes pushed or a sync message ahead of them),
//! fetches of whole cases.

use super::*;

/// Sync states stored per batch when a connection ends.
const STATES_PER_BATCH: usize = 512;

/// One authenticated connection.
pub struct RelaySession {
    pub(super) principal: Principal,
    pub(super) states: SyncStates,
    pub(super) sent_up_to: Option<u64>,
    /// Whether the catch-up after hello has been fully announced.
    pub(super) caught_up: bool,
    /// Policy version the device holds (as far as the relay knows).
    pub(super) policy_version: u32,
    /// Relay time this connection last wrote `last_sync` to its device's
    /// record (see `fleet::on_upload`).
    pub(super) sync_noted: Option<Millis>,
    /// The protocol version the device's frames carry.
    pub(super) version: u8,
    /// Evidence transfers of this connection.
    pub(super) blobs: blobs::BlobSession,
    /// Whether the device takes [`Frame::Changes`] pushes.
    pub(super) push: bool,
    /// Whether the device may upload a case's stored changes whole
    /// ([`Frame::Changes`] towards the relay).
    pub(super) upload: bool,
    /// Heads each case will have on the device once it has applied what
    /// was pushed to it on this connection (frames arrive in order).
    pub(super) held: HashMap<CaseId, Vec<ChangeHash>>,
    /// Whether this is a store relay's session with its upstream, whose
    /// changes the upstream has already judged (see `edge.rs`).
    pub(super) upstream: bool,
    /// Whether the device exchanges case keys (feature `keys`).
    pub(super) keys: bool,
}

impl RelaySession {
    /// The connection's principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Records the protocol version of the device's frames (the shell
    /// calls it with every decoded frame's version; the default is this
    /// build's). A version 3 device gets no [`Frame::Welcome`].
    pub fn set_peer_version(&mut self, version: u8) {
        self.version = version;
    }

    /// The protocol version to answer in.
    pub fn peer_version(&self) -> u8 {
        self.version
    }

    /// Whether the device's hello was handled.
    pub fn hello_done(&self) -> bool {
        self.sent_up_to.is_some()
    }

    /// The connection's evidence transfers.
    pub fn blobs_mut(&mut self) -> &mut blobs::BlobSession {
        &mut self.blobs
    }
}

/// Whether the device's last sync message (as `state` remembers it) showed
/// it holding every one of `heads`.
pub(super) fn device_holds(state: Option<&State>, heads: &[[u8; 32]]) -> bool {
    let Some(theirs) = state.and_then(|s| s.their_heads.as_ref()) else {
        return false;
    };
    heads.iter().all(|h| theirs.iter().any(|t| t.0 == *h))
}

/// A sync message as frames: one, or pieces when it would not fit in one
/// (a case stored before the size limits existed must not make every sync
/// of its store fail on one oversized frame).
pub(super) fn sync_frames(case: CaseId, message: Vec<u8>, limit: usize) -> Vec<Frame> {
    if message.len() > limit {
        return pieces(case, PieceKind::Sync, &message, limit);
    }
    vec![Frame::Sync { doc: case, message }]
}

/// `bytes` cut into [`Frame::Piece`]s of at most `size` bytes (and 1 MiB).
pub(super) fn pieces(case: CaseId, kind: PieceKind, bytes: &[u8], size: usize) -> Vec<Frame> {
    // Pieces of at most 1 MiB keep each send small against the relay's
    // send budget, whatever the frame limit.
    let chunks: Vec<&[u8]> = bytes.chunks(size.clamp(1, 1 << 20)).collect();
    let total = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| Frame::Piece {
            doc: case,
            kind,
            index: u32::try_from(i).unwrap_or(u32::MAX),
            total,
            bytes: c.to_vec(),
        })
        .collect()
}

impl<S: Storage> Relay<S> {
    /// Starts a session for an authenticated connection.
    pub fn session(&self, principal: Principal) -> RelaySession {
        RelaySession {
            principal,
            states: SyncStates::new(self.hot_states),
            sent_up_to: None,
            caught_up: false,
            policy_version: 0,
            sync_noted: None,
            version: crate::protocol::PROTOCOL_VERSION,
            blobs: blobs::BlobSession::new(false),
            push: false,
            upload: false,
            held: HashMap::new(),
            upstream: false,
            keys: false,
        }
    }

    /// Sets how many sync states each new connection keeps whole; the rest
    /// are kept encoded (see [`SyncStates`]).
    pub fn set_hot_states(&mut self, n: NonZeroUsize) {
        self.hot_states = n;
    }

    /// Persists the session's sync states so the device's next connection
    /// resumes cheaply. Call when the connection ends.
    pub fn end_session(&mut self, s: RelaySession) -> Result<(), StorageError> {
        let device = s.principal.device.as_str();
        let states: Vec<_> = s.states.encoded().collect();
        // In batches: sled keeps every version of the tree nodes a batch
        // touches until the batch ends, and one batch of 100,000 states
        // took 600 MiB of the relay's heap (BENCHMARKS.md). Sync states are
        // hints, so a batch need not hold them all.
        for chunk in states.chunks(STATES_PER_BATCH) {
            let mut b = Batch::new();
            for (case, encoded) in chunk {
                docs::stage_encoded_sync_state(&mut b, *case, device, encoded.clone());
            }
            self.storage.apply(b)?;
        }
        Ok(())
    }

    /// Handles one frame from the session's device.
    pub fn handle(
        &mut self,
        s: &mut RelaySession,
        frame: Frame,
        now: Millis,
    ) -> Result<RelayOutput, SessionError> {
        match (frame, s.sent_up_to) {
            (
                Frame::Hello {
                    cursor,
                    policy_version,
                    app_version,
                    unsynced,
                    features,
                },
                None,
            ) => {
                let app_version = fleet::check_app_version(&app_version)
                    .map_err(|e| SessionError::Protocol(e.to_string()))?;
                s.sent_up_to = Some(cursor);
                s.policy_version = policy_version;
                // The stored counter, which every relay over the same
                // database advances.
                let stored = crate::storage::counter_value(
                    keys::SEQ,
                    self.storage
                        .get(keys::SEQ)
                        .map_err(SessionError::Storage)?
                        .as_deref(),
                )
                .map_err(SessionError::Storage)?;
                let known = stored.max(self.seq);
                if cursor > known {
                    // The device was told numbers this relay's storage
                    // never reached: restored from a backup, or changes
                    // were lost. Announce everything to it afresh, and
                    // never hand those numbers out again, unless the
                    // cursor is beyond anything plausible (a hostile or
                    // broken device must not move the sequence far).
                    tracing::warn!(device = %s.principal.device, cursor, seq = known, "a device has seen change sequence numbers beyond this relay's storage (restored from a backup, or lost changes): announcing everything to it afresh");
                    if cursor - known <= RESUME_MARGIN {
                        self.resume_after(cursor + RESUME_MARGIN)
                            .map_err(SessionError::Storage)?;
                    }
                    s.sent_up_to = Some(0);
                }
                let mut frames = Vec::new();
                if s.version > crate::protocol::OLDEST_VERSION {
                    let mut agreed: Vec<String> = Vec::new();
                    for known in [
                        crate::protocol::FEATURE_BLOBS,
                        crate::protocol::FEATURE_PUSH,
                        crate::protocol::FEATURE_UPLOAD,
                        crate::protocol::FEATURE_KEYS,
                    ] {
                        if features.iter().any(|f| f == known) {
                            agreed.push(known.to_string());
                        }
                    }
                    let has = |f: &str| agreed.iter().any(|a| a == f);
                    s.blobs = blobs::BlobSession::new(has(crate::protocol::FEATURE_BLOBS));
                    s.push = has(crate::protocol::FEATURE_PUSH);
                    s.upload = has(crate::protocol::FEATURE_UPLOAD);
                    s.keys = has(crate::protocol::FEATURE_KEYS);
                    frames.push(Frame::Welcome { features: agreed });
                }
                frames.extend(self.announce(s).map_err(SessionError::Storage)?);
                fleet::on_hello(&self.storage, s, app_version, unsynced, now)
                    .map_err(SessionError::Storage)?;
                Ok(RelayOutput {
                    frames,
                    ..RelayOutput::default()
                })
            }
            (Frame::Report { unsynced }, Some(_)) => {
                fleet::on_report(&self.storage, s, unsynced, now).map_err(SessionError::Storage)?;
                Ok(RelayOutput::default())
            }
            (Frame::PublishPolicy { json }, Some(_)) => self.publish_policy(s, &json),
            (Frame::Fetch { docs }, Some(_)) if docs.len() > ANNOUNCE_CHUNK => {
                Err(SessionError::Protocol(format!(
                    "a fetch may ask for at most {ANNOUNCE_CHUNK} cases, got {}",
                    docs.len()
                )))
            }
            (Frame::Fetch { docs }, Some(_)) => self.fetch(s, &docs).map_err(SessionError::Storage),
            (Frame::Hello { .. }, Some(_)) => {
                Err(SessionError::Protocol("hello sent twice".into()))
            }
            (_, None) => Err(SessionError::Protocol(
                "the first frame must be hello".into(),
            )),
            (Frame::Sync { doc, message }, Some(_)) => self.sync(s, doc, &message, now),
            (Frame::Changes { doc, changes }, Some(_)) if s.upload => {
                self.upload_changes(s, doc, changes, now)
            }
            (Frame::Keys { keys }, Some(_)) if s.keys => self.keys_offered(s, keys),
            (Frame::WantKeys { docs }, Some(_)) if s.keys => self.keys_wanted(s, docs),
            (Frame::Error { reason }, Some(_)) => Err(SessionError::Remote(reason)),
            (other, Some(_)) => Err(SessionError::Protocol(format!(
                "a device may not send {}",
                other.name()
            ))),
        }
    }

    /// Whole documents for a device that has none of their history; cases it
    /// may not see are refused one by one, as in a sync.
    pub(super) fn fetch(
        &mut self,
        s: &RelaySession,
        cases: &[CaseId],
    ) -> Result<RelayOutput, StorageError> {
        let mut frames = Vec::new();
        let mut docs = Vec::new();
        let mut size = 0;
        // A case asked for twice is sent once: a short fetch naming one
        // large case a thousand times must not cost a thousand copies.
        let mut seen = std::collections::HashSet::new();
        for case in cases {
            if !seen.insert(*case) {
                continue;
            }
            let visible = self
                .meta(*case)?
                .is_some_and(|m| access::can_read(&s.principal, &m));
            if !visible {
                frames.push(Frame::refused(*case, &not_found(*case)));
                continue;
            }
            if self.is_quarantined(*case) {
                frames.push(Frame::refused(*case, &soundness::unavailable(*case)));
                continue;
            }
            // Stored bytes as they are: decoding and re-saving every
            // document dominated a fresh device's first sync.
            if let Some(bytes) = docs::stored_bytes(&self.storage, *case)? {
                if bytes.len() > self.frame_limit {
                    frames.extend(pieces(*case, PieceKind::Snapshot, &bytes, self.frame_limit));
                    continue;
                }
                if !docs.is_empty()
                    && (size + bytes.len() > SNAPSHOT_FRAME_BYTES
                        || docs.len() == SNAPSHOTS_PER_FRAME)
                {
                    frames.push(Frame::Snapshots {
                        docs: std::mem::take(&mut docs),
                    });
                    size = 0;
                }
                size += bytes.len();
                docs.push(DocBytes { doc: *case, bytes });
            }
        }
        if !docs.is_empty() {
            frames.push(Frame::Snapshots { docs });
        }
        Ok(RelayOutput {
            frames,
            ..RelayOutput::default()
        })
    }

    /// Frames announcing the cases this session may see that changed since
    /// what it was last told. Cheap when nothing changed.
    pub fn announce(&mut self, s: &mut RelaySession) -> Result<Vec<Frame>, StorageError> {
        let Some(from) = s.sent_up_to else {
            return Ok(Vec::new());
        };
        let mut frames = Vec::new();
        if s.policy_version < self.policy.version {
            frames.push(Frame::Policy {
                json: self.policy_json.clone(),
            });
            s.policy_version = self.policy.version;
        }
        let prefix = match s.principal.role {
            Role::HeadOffice => keys::ALL.to_vec(),
            _ => keys::store_prefix(&s.principal.store),
        };
        let mut start = prefix.clone();
        start.extend_from_slice(&(from.saturating_add(1)).to_be_bytes());
        let mut end = prefix.clone();
        end.extend_from_slice(&(self.durable_seq.saturating_add(1)).to_be_bytes());
        loop {
            let rows = self.storage.scan(&start, &end, ANNOUNCE_CHUNK)?;
            let complete = rows.len() < ANNOUNCE_CHUNK;
            let mut docs = Vec::with_capacity(rows.len());
            let mut last = s.sent_up_to.unwrap_or(0);
            for (k, v) in &rows {
                let (Some(seq), Some((doc, heads))) = (keys::seq_of(k), keys::parse_index_value(v))
                else {
                    return Err(corrupt("case index", "bad entry"));
                };
                last = seq;
                // Once caught up, a change the device already holds (its
                // own upload, typically) is not worth announcing.
                if s.caught_up && device_holds(s.states.peek(&doc), &heads) {
                    continue;
                }
                // The store index holds the store's cases; technicians get
                // only those assigned to them.
                if s.principal.role == Role::Technician {
                    match self.meta(doc)? {
                        Some(m) if access::can_read(&s.principal, &m) => {}
                        _ => continue,
                    }
                }
                // A live connection already syncing this case gets the
                // change itself ahead of the announcement, saving the
                // device a request and the relay a round trip. If
                // Automerge has nothing to send, the announcement alone
                // makes the device ask, as on a reconnect.
                if s.caught_up {
                    match self.deliver(s, doc, &heads) {
                        Ok(f) => frames.extend(f),
                        // Damaged: the device is refused it when it asks.
                        Err(StorageError::Corrupt { .. }) if self.is_quarantined(doc) => {}
                        Err(e) => return Err(e),
                    }
                }
                docs.push(DocHeads { doc, heads });
            }
            // When the scan reached the end, everything up to the durable
            // sequence has been covered, including changes of other stores.
            let up_to = if complete {
                last.max(self.durable_seq).max(from)
            } else {
                last
            };
            // After the catch-up, a wake-up with nothing for this device
            // (another store's change) sends nothing: the cursor simply
            // advances with the next real announcement.
            if !docs.is_empty() || !s.caught_up {
                frames.push(Frame::Announce {
                    up_to,
                    docs,
                    complete,
                });
            }
            s.sent_up_to = Some(up_to);
            if complete {
                s.caught_up = true;
                break;
            }
            start = prefix.clone();
            start.extend_from_slice(&(up_to + 1).to_be_bytes());
        }
        Ok(frames)
    }

    /// What a live session that has synced `case` before is sent ahead of
    /// the announcement of its new `heads`: the stored changes since the
    /// heads the device is known to hold when they are remembered, else a
    /// sync message.
    pub(super) fn deliver(
        &mut self,
        s: &mut RelaySession,
        case: CaseId,
        heads: &[[u8; 32]],
    ) -> Result<Vec<Frame>, StorageError> {
        if s.push {
            let known = s
                .held
                .get(&case)
                .cloned()
                .or_else(|| s.states.peek(&case).and_then(|st| st.their_heads.clone()));
            let to: Vec<ChangeHash> = heads.iter().map(|h| ChangeHash(*h)).collect();
            if let Some(changes) = known.and_then(|k| self.recent.between(case, &k, &to)) {
                s.held.insert(case, to);
                return Ok(vec![Frame::Changes { doc: case, changes }]);
            }
        }
        self.push(s, case)
    }

    /// A sync message for `case` on a session that has synced it before.
    pub(super) fn push(
        &mut self,
        s: &mut RelaySession,
        case: CaseId,
    ) -> Result<Vec<Frame>, StorageError> {
        if !s.states.contains(&case) {
            return Ok(Vec::new());
        }
        let limit = self.frame_limit;
        let Some(doc) = self.doc(case)? else {
            return Ok(Vec::new());
        };
        let Some(state) = s.states.get_mut(&case) else {
            return Ok(Vec::new());
        };
        Ok(doc
            .generate_sync_message(state)
            .map(|m| sync_frames(case, m.encode(), limit))
            .unwrap_or_default())
    }

    pub(super) fn refuse(doc: CaseId, refusal: &Refusal) -> RelayOutput {
        RelayOutput {
            frames: vec![Frame::refused(doc, refusal)],
            ..RelayOutput::default()
        }
    }
}
