//! The device side of one connection.

mod blobs;

pub use blobs::BlobProgress;

use super::frame::{DocBytes, DocHeads, Frame, PieceKind, Unsynced};
use crate::ids::{CaseId, Cursor, Millis};
use crate::replica::{Replica, ReplicaError};
use crate::storage::Storage;
use automerge::sync::{Message, State};
use automerge::ChangeHash;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Why a session must end. The connection is closed; local data is intact.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer reported a fatal error.
    #[error("relay closed the session: {0}")]
    Remote(String),
    /// Local storage failed.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The relay's storage failed; the relay closes the session.
    #[error("relay storage failed: {0}")]
    Storage(crate::storage::StorageError),
    /// The relay says this device was reported lost: the shell wipes
    /// every case and key on the device before anything else.
    #[error("this device was reported lost and must be wiped: {0}")]
    Wipe(String),
}

/// Sync state of one device connection.
///
/// Call [`ClientSession::start`] once the connection is up and send what it
/// returns; feed every frame from the relay to [`ClientSession::handle`] and
/// send what it returns; after a local edit while connected call
/// [`ClientSession::local_change`]. [`ClientSession::is_settled`] tells when a
/// one-shot sync may disconnect.
pub struct ClientSession {
    /// Something was exchanged since the last time "synced" was recorded.
    activity: bool,
    states: HashMap<CaseId, State>,
    /// Announced cases whose announced heads we do not hold yet.
    pending: HashMap<CaseId, Vec<ChangeHash>>,
    /// Cursor to store once `pending` is empty.
    target: Option<Cursor>,
    caught_up: bool,
    refused: BTreeMap<CaseId, String>,
    /// Cases with local changes the relay has not confirmed, kept in memory
    /// so checking for completion does not rescan storage on every frame.
    dirty: HashSet<CaseId>,
    /// The last policy news from the relay: adopted version or refusal.
    policy_news: Option<Result<u32, String>>,
    /// Threads to decode fetched snapshots with (the shell decides).
    load_threads: usize,
    /// Cases with local changes not yet offered to the relay. A device that
    /// worked offline on thousands of cases offers them a window at a time,
    /// so each case is still loaded when the relay's answer comes back and
    /// the relay is not handed everything at once.
    upload_queue: VecDeque<CaseId>,
    /// Pieces of an oversized case or sync message being joined.
    assembling: super::pieces::Pieces,
    /// What the device says it runs, in [`Frame::Hello`].
    app_version: String,
    /// How many cases held unconfirmed changes when the relay was last
    /// told (in the hello or a [`Frame::Report`]).
    reported_dirty: usize,
    /// The protocol version this session speaks.
    version: u8,
    /// Evidence transfers.
    blobs: blobs::BlobSync,
    /// Whether to ask the relay for pushed changes ([`Frame::Changes`]).
    want_push: bool,
    /// Whether to upload never-confirmed cases whole (feature `upload`).
    want_upload: bool,
    /// Whether the relay agreed to whole uploads (in its welcome).
    upload_agreed: bool,
    /// Uploads wait for the relay's welcome, which says how to send them.
    awaiting_welcome: bool,
    /// Cases sent whole and not yet answered, with the hashes sent.
    uploading: HashMap<CaseId, Vec<ChangeHash>>,
    /// Whether the relay exchanges case keys (feature `keys`).
    keys_agreed: bool,
    /// Cases whose keys were handed to the relay on this connection.
    keys_sent: HashSet<CaseId>,
    /// Requests for keys ([`Frame::WantKeys`]) not answered yet: the
    /// relay answers each with one [`Frame::Keys`].
    keys_asked: usize,
}

/// Cases offered to the relay up front; each frame from the relay lets the
/// device offer [`UPLOAD_REFILL`] more.
const UPLOAD_WINDOW: usize = 256;
const UPLOAD_REFILL: usize = 2;

/// Largest case a device uploads whole ([`Frame::Changes`]); a larger one
/// syncs, which splits what it sends into pieces.
const UPLOAD_WHOLE_BYTES: usize = super::MAX_FRAME_BYTES / 4;

fn hashes(heads: &[[u8; 32]]) -> Vec<ChangeHash> {
    heads.iter().map(|h| ChangeHash(*h)).collect()
}

impl Default for ClientSession {
    fn default() -> Self {
        ClientSession::new()
    }
}

impl ClientSession {
    /// A session before any frame was exchanged.
    pub fn new() -> Self {
        ClientSession {
            activity: true,
            states: HashMap::new(),
            pending: HashMap::new(),
            target: None,
            caught_up: false,
            refused: BTreeMap::new(),
            dirty: HashSet::new(),
            policy_news: None,
            load_threads: 1,
            upload_queue: VecDeque::new(),
            assembling: Default::default(),
            app_version: format!("aftercase-sync {}", env!("CARGO_PKG_VERSION")),
            reported_dirty: 0,
            version: super::PROTOCOL_VERSION,
            blobs: blobs::BlobSync::default(),
            want_push: true,
            want_upload: true,
            upload_agreed: false,
            awaiting_welcome: false,
            uploading: HashMap::new(),
            keys_agreed: false,
            keys_sent: HashSet::new(),
            keys_asked: 0,
        }
    }

    /// Whether to ask the relay to push new changes of cases this device
    /// syncs (default yes). Without, every change arrives by a sync round,
    /// as with a relay that does not push.
    pub fn with_push(mut self, push: bool) -> Self {
        self.want_push = push;
        self
    }

    /// Whether to upload cases the relay never confirmed as the changes
    /// stored (default yes), without loading them; without, every upload is
    /// a sync round, as with a relay that does not take them.
    pub fn with_upload(mut self, upload: bool) -> Self {
        self.want_upload = upload;
        self
    }

    /// Speaks protocol `version` (default this build's): 3 for a relay not
    /// updated since, which syncs cases but not evidence.
    pub fn with_protocol(mut self, version: u8) -> Self {
        self.version = version.clamp(super::OLDEST_VERSION, super::PROTOCOL_VERSION);
        self
    }

    /// The protocol version to encode frames in ([`Frame::encode_for`]).
    pub fn wire_version(&self) -> u8 {
        self.version
    }

    /// Asks for evidence the device lacks; it is downloaded once the
    /// cases are in sync, and the session is settled only after.
    pub fn want_blobs(
        &mut self,
        blobs: impl IntoIterator<Item = crate::replica::blobs::MissingBlob>,
    ) {
        self.blobs.want(blobs);
    }

    /// Evidence transferred so far.
    pub fn blob_progress(&self) -> BlobProgress {
        self.blobs.progress()
    }

    /// Evidence that failed in this session (refused by the relay, or a
    /// download that did not match), with the reasons, by hash.
    pub fn blob_failures(&self) -> &BTreeMap<crate::blobs::BlobHash, String> {
        self.blobs.failures()
    }

    /// Whether the relay agreed to transfer evidence on this connection.
    pub fn blobs_enabled(&self) -> bool {
        self.blobs.enabled
    }

    /// Names the app and versions the device runs, for head office's fleet
    /// view (default: this library's version). The relay keeps at most
    /// [`super::MAX_APP_VERSION_CHARS`] characters and refuses a hello whose
    /// version holds control characters.
    pub fn with_app_version(mut self, app_version: impl Into<String>) -> Self {
        self.app_version = app_version.into();
        self
    }

    /// Decodes fetched cases on up to `threads` threads (default 1). The
    /// outcome is the same for any count; only the speed of a fresh
    /// device's first sync changes.
    pub fn with_load_threads(mut self, threads: usize) -> Self {
        self.load_threads = threads.max(1);
        self
    }

    /// Frames to send first: the resume cursor with the device's report
    /// (its unsynced work as of device time `now`), then one sync message
    /// per case with unconfirmed local changes.
    pub fn start<S: Storage>(
        &mut self,
        r: &mut Replica<S>,
        now: Millis,
    ) -> Result<Vec<Frame>, SessionError> {
        let marks = r.dirty_marks()?;
        let unsynced = Unsynced::from_marks(marks.iter().map(|(_, at)| *at), now);
        let mut out = vec![Frame::Hello {
            cursor: r.cursor()?.0,
            policy_version: r.policy().version,
            app_version: self.app_version.clone(),
            unsynced,
            features: if self.version > super::OLDEST_VERSION {
                let mut f = vec![super::FEATURE_BLOBS.to_string()];
                if self.want_push {
                    f.push(super::FEATURE_PUSH.to_string());
                }
                if self.want_upload {
                    f.push(super::FEATURE_UPLOAD.to_string());
                }
                f.push(super::FEATURE_KEYS.to_string());
                f
            } else {
                Vec::new()
            },
        }];
        self.dirty = marks.into_iter().map(|(c, _)| c).collect();
        self.reported_dirty = self.dirty.len();
        let mut dirty: Vec<CaseId> = self.dirty.iter().copied().collect();
        dirty.sort();
        self.upload_queue = dirty.into();
        // Discarded cases: take the relay's version whole.
        let wanted = r.wanted()?;
        for case in &wanted {
            // Settled only once the relay answered for it.
            self.pending.insert(*case, Vec::new());
        }
        if !wanted.is_empty() {
            out.push(Frame::Fetch { docs: wanted });
        }
        // A relay that speaks welcomes says in it whether it takes cases
        // whole; until then nothing is offered.
        // Keys go first too (the relay checks sealed data with them).
        self.awaiting_welcome = self.version > super::OLDEST_VERSION;
        self.offer_uploads(r, UPLOAD_WINDOW, &mut out)?;
        Ok(out)
    }

    /// Frames to send after a local edit of `case` while connected.
    pub fn local_change<S: Storage>(
        &mut self,
        r: &mut Replica<S>,
        case: CaseId,
    ) -> Result<Vec<Frame>, SessionError> {
        let mut out = Vec::new();
        self.dirty.insert(case);
        self.blobs.reload();
        self.send_keys(r, &[case], &mut out)?;
        self.push_sync(r, case, false, &mut out)?;
        Ok(out)
    }

    /// Hands the relay the keys of `cases` not yet handed over on this
    /// connection, ahead of their changes.
    fn send_keys<S: Storage>(
        &mut self,
        r: &Replica<S>,
        cases: &[CaseId],
        out: &mut Vec<Frame>,
    ) -> Result<(), SessionError> {
        if !self.keys_agreed {
            return Ok(());
        }
        let new: Vec<CaseId> = cases
            .iter()
            .copied()
            .filter(|c| !self.keys_sent.contains(c))
            .collect();
        let keys = r.keys_of(&new)?;
        self.keys_sent.extend(new);
        for chunk in keys.chunks(super::MAX_KEYS_PER_FRAME) {
            out.push(Frame::Keys {
                keys: chunk.to_vec(),
            });
        }
        Ok(())
    }

    /// Asks the relay for the keys of `cases`.
    fn ask_keys(&mut self, cases: &[CaseId], out: &mut Vec<Frame>) {
        if !self.keys_agreed {
            return;
        }
        for chunk in cases.chunks(super::MAX_KEYS_PER_FRAME) {
            self.keys_asked += 1;
            out.push(Frame::WantKeys {
                docs: chunk.to_vec(),
            });
        }
    }

    /// Offers up to `n` queued cases with local changes to the relay.
    fn offer_uploads<S: Storage>(
        &mut self,
        r: &mut Replica<S>,
        n: usize,
        out: &mut Vec<Frame>,
    ) -> Result<(), SessionError> {
        if self.awaiting_welcome {
            return Ok(());
        }
        for _ in 0..n {
            let Some(case) = self.upload_queue.pop_front() else {
                break;
            };
            if !self.upload_whole(r, case, out)? {
                self.push_sync(r, case, true, out)?;
            }
        }
        Ok(())
    }

    /// Sends the stored changes of `case` whole if the relay takes them and
    /// has never confirmed any of the case to this device (no shared heads
    /// with it); returns whether it did.
    fn upload_whole<S: Storage>(
        &mut self,
        r: &mut Replica<S>,
        case: CaseId,
        out: &mut Vec<Frame>,
    ) -> Result<bool, SessionError> {
        if !self.upload_agreed
            || self.uploading.contains_key(&case)
            || !self.state(r, case)?.shared_heads.is_empty()
        {
            return Ok(false);
        }
        let Some(stored) = r.stored_changes(case)? else {
            return Ok(false);
        };
        if stored.iter().map(|(_, b)| b.len()).sum::<usize>() > UPLOAD_WHOLE_BYTES {
            return Ok(false);
        }
        let (hashes, changes): (Vec<ChangeHash>, Vec<Vec<u8>>) = stored.into_iter().unzip();
        self.uploading.insert(case, hashes);
        out.push(Frame::Changes { doc: case, changes });
        Ok(true)
    }

    fn state<S: Storage>(
        &mut self,
        r: &Replica<S>,
        case: CaseId,
    ) -> Result<&mut State, SessionError> {
        Ok(match self.states.entry(case) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(r.sync_state(case)?),
        })
    }

    /// Appends a sync message for `case` if Automerge has one. `nudge` forces
    /// a message even while one is in flight: used when the relay tells us
    /// the case changed, because a stale in-flight flag would otherwise wait
    /// for a reply that is not coming.
    fn push_sync<S: Storage>(
        &mut self,
        r: &mut Replica<S>,
        case: CaseId,
        nudge: bool,
        out: &mut Vec<Frame>,
    ) -> Result<(), SessionError> {
        let mut state = std::mem::take(self.state(r, case)?);
        if nudge {
            // Start this case's exchange afresh, as on a reconnect: keep what
            // both sides are known to share, forget what is believed in
            // flight (it may have been lost with a relay cache eviction).
            state = State::decode(&state.encode()).unwrap_or_default();
        }
        let msg = r.generate(case, &mut state);
        self.states.insert(case, state);
        if let Some(m) = msg? {
            out.push(Frame::Sync {
                doc: case,
                message: m.encode(),
            });
        }
        Ok(())
    }

    /// Handles one frame from the relay; returns the frames to send back.
    pub fn handle<S: Storage>(
        &mut self,
        r: &mut Replica<S>,
        frame: Frame,
        now: Millis,
    ) -> Result<Vec<Frame>, SessionError> {
        let mut out = Vec::new();
        self.activity |= matches!(
            &frame,
            Frame::Sync { .. }
                | Frame::Snapshots { .. }
                | Frame::Changes { .. }
                | Frame::Stored { .. }
        ) || matches!(&frame, Frame::Announce { docs, .. } if !docs.is_empty());
        match frame {
            Frame::Announce {
                up_to,
                docs,
                complete,
            } => {
                let mut fetch = Vec::new();
                for DocHeads { doc, heads } in docs {
                    let heads = hashes(&heads);
                    if !r.has_all(doc, &heads)? {
                        self.pending.insert(doc, heads);
                        if r.heads(doc)?.is_none() {
                            fetch.push(doc);
                        } else {
                            self.push_sync(r, doc, true, &mut out)?;
                        }
                    } else if self.dirty.contains(&doc) {
                        // The relay may already hold our changes (an ack lost
                        // with a cut connection): this clears the mark.
                        if r.confirm_if_uploaded(doc, &heads)? {
                            self.dirty.remove(&doc);
                        }
                    }
                }
                if !fetch.is_empty() {
                    out.push(Frame::Fetch { docs: fetch });
                }
                self.target = Some(Cursor(up_to).max(self.target.unwrap_or_default()));
                if complete {
                    self.caught_up = true;
                }
            }
            Frame::Sync { doc, message } => {
                // A case sent whole that the relay could not apply whole
                // continues as a sync round.
                self.uploading.remove(&doc);
                let msg = Message::decode(&message).map_err(|e| {
                    SessionError::Protocol(format!("malformed sync message for case {doc}: {e}"))
                })?;
                let relay_heads = msg.heads.clone();
                let needed = msg.need.clone();
                let mut state = std::mem::take(self.state(r, doc)?);
                let received = r.receive(doc, &mut state, msg);
                crate::protocol::forget_needed(&mut state, &needed);
                self.states.insert(doc, state);
                received?;
                if let Some(wanted) = self.pending.get(&doc) {
                    if r.has_all(doc, wanted)? {
                        self.pending.remove(&doc);
                    }
                }
                if self.dirty.contains(&doc) && r.confirm_if_uploaded(doc, &relay_heads)? {
                    self.dirty.remove(&doc);
                }
                self.push_sync(r, doc, false, &mut out)?;
            }
            Frame::Changes { doc, changes } => {
                // Pushed only for cases this device synced on this
                // connection; anything else waits for its announcement.
                if r.heads(doc)?.is_some() {
                    let pushed = r.apply_pushed(doc, &changes).map_err(|e| match e {
                        ReplicaError::Apply { .. } => SessionError::Protocol(e.to_string()),
                        other => SessionError::Replica(other),
                    })?;
                    // The relay holds them: never offer them back.
                    self.state(r, doc)?.sent_hashes.extend(pushed);
                    if let Some(wanted) = self.pending.get(&doc) {
                        if r.has_all(doc, wanted)? {
                            self.pending.remove(&doc);
                        }
                    }
                }
            }
            Frame::Stored { doc, heads } => self.stored(r, doc, &hashes(&heads), &mut out)?,
            Frame::Refused { doc, code, reason } => {
                self.uploading.remove(&doc);
                tracing::warn!(case = %doc, code = %crate::protocol::clip(&code, 20), "relay refused a change");
                self.pending.remove(&doc);
                r.got_wanted(doc)?;
                if self.dirty.contains(&doc) {
                    r.record_refusal(doc, &code, &reason, now)?;
                }
                self.refused.insert(doc, reason);
            }
            Frame::Error { reason } => return Err(SessionError::Remote(reason)),
            Frame::Policy { json } => match crate::policy::Policy::from_json(&json) {
                Ok(p) => {
                    r.adopt_policy(p, &json)?;
                    self.policy_news = Some(Ok(r.policy().version));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "relay sent a policy this device cannot use");
                }
            },
            Frame::Snapshots { docs } => {
                let damaged = r
                    .adopt_snapshots(&docs, self.load_threads)
                    .map_err(|e| match e {
                        ReplicaError::Apply { .. } => SessionError::Protocol(e.to_string()),
                        other => SessionError::Replica(other),
                    })?;
                let set_aside: HashSet<CaseId> = damaged.iter().map(|(d, _)| *d).collect();
                for (doc, why) in damaged {
                    // Fetched again next time: the rest goes on.
                    self.pending.remove(&doc);
                    self.refused.insert(doc, why);
                }
                for DocBytes { doc, .. } in &docs {
                    if set_aside.contains(doc) {
                        continue;
                    }
                    r.got_wanted(*doc)?;
                    if let Some(wanted) = self.pending.get(doc) {
                        if r.has_all(*doc, wanted)? {
                            self.pending.remove(doc);
                        }
                    }
                }
            }
            Frame::Piece {
                doc,
                kind,
                index,
                total,
                bytes,
            } => {
                if let Some(whole) = self.join_piece(doc, kind, index, total, bytes)? {
                    let frame = match kind {
                        PieceKind::Sync => Frame::Sync {
                            doc,
                            message: whole,
                        },
                        PieceKind::Snapshot => Frame::Snapshots {
                            docs: vec![DocBytes { doc, bytes: whole }],
                        },
                    };
                    return self.handle(r, frame, now);
                }
            }
            Frame::Fetch { .. } => {
                return Err(SessionError::Protocol(
                    "unexpected fetch from the relay".into(),
                ))
            }
            Frame::PolicyRefused { reason } => {
                self.policy_news = Some(Err(reason));
            }
            Frame::PublishPolicy { .. } => {
                return Err(SessionError::Protocol(
                    "unexpected policy publication from the relay".into(),
                ))
            }
            Frame::Hello { .. } => {
                return Err(SessionError::Protocol(
                    "unexpected hello from the relay".into(),
                ))
            }
            Frame::Report { .. } => {
                return Err(SessionError::Protocol(
                    "unexpected report from the relay".into(),
                ))
            }
            Frame::Welcome { features } => {
                self.blobs.enabled = features.iter().any(|f| f == super::FEATURE_BLOBS);
                self.upload_agreed =
                    self.want_upload && features.iter().any(|f| f == super::FEATURE_UPLOAD);
                self.keys_agreed = features.iter().any(|f| f == super::FEATURE_KEYS);
                // Keys first: the relay opens and checks the sealed data of
                // the uploads that follow with them.
                let mut dirty: Vec<CaseId> = self.dirty.iter().copied().collect();
                dirty.sort();
                self.send_keys(r, &dirty, &mut out)?;
                let wanted = r.keys_wanted()?;
                r.take_fresh_wants();
                self.ask_keys(&wanted, &mut out);
                if std::mem::take(&mut self.awaiting_welcome) {
                    self.offer_uploads(r, UPLOAD_WINDOW, &mut out)?;
                }
            }
            f @ (Frame::BlobAt { .. }
            | Frame::BlobChunk { .. }
            | Frame::BlobStored { .. }
            | Frame::BlobRefused { .. }) => self.blobs.on_frame(r, f, now, &mut out)?,
            Frame::Keys { keys } => {
                self.keys_asked = self.keys_asked.saturating_sub(1);
                r.store_keys(&keys)?;
            }
            Frame::KeysGone { docs } => r.forget_keys(&docs)?,
            Frame::Wipe { reason } => return Err(SessionError::Wipe(reason)),
            f @ (Frame::BlobOffer { .. }
            | Frame::BlobGet { .. }
            | Frame::Relayed { .. }
            | Frame::WantKeys { .. }) => {
                return Err(SessionError::Protocol(format!(
                    "unexpected {} from the relay",
                    f.name()
                )))
            }
        }
        // Cases that arrived sealed without their key: ask for it.
        let fresh = r.take_fresh_wants();
        self.ask_keys(&fresh, &mut out);
        // Every frame from the relay answers something: keep the upload
        // window full.
        self.offer_uploads(r, UPLOAD_REFILL, &mut out)?;
        self.advance_cursor(r, now)?;
        // Evidence only once the cases are in sync: cases first.
        if self.cases_settled() {
            self.blobs.pump(r, now, &mut out)?;
        }
        self.report_if_changed(r, now, &mut out)?;
        Ok(out)
    }

    /// The relay stored a case sent whole, and holds `heads` of it.
    fn stored<S: Storage>(
        &mut self,
        r: &mut Replica<S>,
        doc: CaseId,
        heads: &[ChangeHash],
        out: &mut Vec<Frame>,
    ) -> Result<(), SessionError> {
        let Some(sent) = self.uploading.remove(&doc) else {
            // Nothing of this case is being sent whole: an answer to an
            // earlier connection's upload, or a confused relay. The case's
            // mark stays until a sync confirms it.
            return Ok(());
        };
        // Heads all among what was sent: the relay holds exactly this
        // device's history of the case, and both sides share those heads.
        let only_ours = heads.iter().all(|h| sent.contains(h));
        let shared: &[ChangeHash] = if only_ours { heads } else { &[] };
        let confirmed = r.confirm_stored(doc, &sent, shared)?;
        if confirmed {
            self.dirty.remove(&doc);
        }
        if only_ours {
            if let Some(st) = self.states.get_mut(&doc) {
                st.shared_heads = heads.to_vec();
            }
        } else {
            // Others' changes too: fetch them.
            self.pending.insert(doc, heads.to_vec());
        }
        if !confirmed || !only_ours {
            // Edited since it was read, or others' changes to fetch: the
            // sync protocol takes it from here.
            self.push_sync(r, doc, true, out)?;
        }
        Ok(())
    }

    /// Tells the relay the device's unsynced work once a sync round has
    /// settled with a different number of pending cases than it last
    /// reported. Only then: while uploads are acknowledged one by one the
    /// count changes on every frame, and the marks are scanned only once
    /// settled, when they are just the refused cases.
    fn report_if_changed<S: Storage>(
        &mut self,
        r: &Replica<S>,
        now: Millis,
        out: &mut Vec<Frame>,
    ) -> Result<(), SessionError> {
        if self.cases_settled() && self.dirty.len() != self.reported_dirty {
            out.push(Frame::Report {
                unsynced: r.unsynced(now)?,
            });
            self.reported_dirty = self.dirty.len();
        }
        Ok(())
    }

    fn advance_cursor<S: Storage>(
        &mut self,
        r: &mut Replica<S>,
        now: Millis,
    ) -> Result<(), SessionError> {
        if !self.pending.is_empty() {
            return Ok(());
        }
        if let Some(target) = self.target {
            if target > r.cursor()? {
                r.set_cursor(target)?;
            }
        }
        if self.activity && self.caught_up && self.all_confirmed() {
            r.mark_synced(now)?;
            self.activity = false;
        }
        Ok(())
    }

    /// Adds a piece; returns the joined bytes once the last piece arrived.
    fn join_piece(
        &mut self,
        doc: CaseId,
        kind: PieceKind,
        index: u32,
        total: u32,
        bytes: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, SessionError> {
        self.assembling.join(doc, kind, index, total, bytes)
    }

    /// Whether every local change was confirmed or refused. Stops at the
    /// first unconfirmed case: this runs after every frame.
    fn all_confirmed(&self) -> bool {
        self.dirty.iter().all(|c| self.refused.contains_key(c))
    }

    /// True once the catch-up is complete, every announced change is held
    /// locally and the relay confirmed every local change it did not refuse.
    pub fn is_settled(&self) -> bool {
        self.cases_settled() && self.blobs.idle()
    }

    /// The cases part of [`ClientSession::is_settled`].
    fn cases_settled(&self) -> bool {
        self.caught_up && self.pending.is_empty() && self.all_confirmed() && self.keys_asked == 0
    }

    /// Cases whose changes the relay refused in this session, with its reasons.
    pub fn refused(&self) -> &BTreeMap<CaseId, String> {
        &self.refused
    }

    /// The latest policy news: `Ok(version)` adopted, `Err(reason)` refused.
    pub fn policy_news(&self) -> Option<&Result<u32, String>> {
        self.policy_news.as_ref()
    }

    /// Number of announced cases still being downloaded.
    pub fn pending_downloads(&self) -> usize {
        self.pending.len()
    }

    /// Number of cases with local changes neither confirmed nor refused by
    /// the relay yet (what an upload's progress counts down).
    pub fn pending_uploads(&self) -> usize {
        self.dirty
            .iter()
            .filter(|c| !self.refused.contains_key(c))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_join_in_order_and_anything_else_is_refused() {
        let mut s = ClientSession::new();
        let doc = CaseId::from_bytes([3; 16]);
        let k = PieceKind::Snapshot;
        assert_eq!(s.join_piece(doc, k, 0, 3, vec![1]).unwrap(), None);
        assert_eq!(s.join_piece(doc, k, 1, 3, vec![2]).unwrap(), None);
        assert_eq!(
            s.join_piece(doc, k, 2, 3, vec![3]).unwrap(),
            Some(vec![1, 2, 3])
        );
        // Out of order, a wrong total, a kind switch, no first piece.
        assert!(s.join_piece(doc, k, 1, 3, vec![2]).is_err());
        s.join_piece(doc, k, 0, 3, vec![1]).unwrap();
        assert!(s.join_piece(doc, k, 2, 3, vec![3]).is_err());
        s.join_piece(doc, k, 0, 3, vec![1]).unwrap();
        assert!(s.join_piece(doc, k, 1, 4, vec![2]).is_err());
        s.join_piece(doc, k, 0, 2, vec![1]).unwrap();
        assert!(s.join_piece(doc, PieceKind::Sync, 1, 2, vec![2]).is_err());
        assert!(s.join_piece(doc, k, 0, 0, vec![1]).is_err());
        // A relay cannot make a device hold more than the bound.
        s.join_piece(
            doc,
            k,
            0,
            1000,
            vec![0; crate::protocol::MAX_ASSEMBLED_BYTES / 2],
        )
        .unwrap();
        assert!(s
            .join_piece(
                doc,
                k,
                1,
                1000,
                vec![0; crate::protocol::MAX_ASSEMBLED_BYTES / 2 + 1]
            )
            .is_err());
        assert!(s.assembling.is_empty());
    }
}
