//! Running the sync protocol over a socket: once, or live with reconnects.

use crate::device::{now, Device};
use crate::error::SyncError;
use crate::transport::{self, Socket};
use aftercase_sync::protocol::{
    BlobProgress, ClientSession, DecodeError, Frame, SessionError, PROTOCOL_VERSION,
};
use aftercase_sync::replica::blobs::MissingBlob;
use aftercase_sync::CaseId;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// How long a one-shot sync waits for the relay before giving up.
const ONCE_IDLE: Duration = Duration::from_secs(30);
/// A live connection with no traffic (the relay pings every 20 s) for this
/// long is considered dead and re-established.
const LIVE_IDLE: Duration = Duration::from_secs(65);
/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Progress of a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Cases received so far.
    pub received: usize,
    /// Cases announced as changed.
    pub total: usize,
    /// Cases with local changes the relay confirmed (or refused) so far.
    pub sent: usize,
    /// Cases with local changes when the sync started.
    pub to_send: usize,
    /// Evidence sent and received (after the cases).
    pub evidence: BlobProgress,
}

impl Progress {
    /// Whole percent of the upload, 100 when nothing is to be sent.
    pub fn sent_percent(&self) -> usize {
        (self.sent * 100).checked_div(self.to_send).unwrap_or(100)
    }

    /// Whole percent, 100 when nothing is to be received.
    pub fn percent(&self) -> usize {
        (self.received * 100).checked_div(self.total).unwrap_or(100)
    }
}

/// What a finished sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Cases whose local changes the relay confirmed.
    pub uploaded: usize,
    /// Cases that arrived or changed from the relay.
    pub downloaded: usize,
    /// Evidence transferred.
    pub evidence: BlobProgress,
    /// Evidence that failed (refused by the relay, or not there yet), by
    /// hash, with the reason.
    pub evidence_failures: Vec<(String, String)>,
    /// Whether the relay transfers evidence (an older relay syncs cases
    /// only; evidence waits on the device for an updated one).
    pub evidence_supported: bool,
}

/// What a live sync reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveEvent {
    /// Connected and catching up.
    Connected,
    /// Everything exchanged; staying connected for live changes.
    Synced(SyncReport),
    /// A change from another device arrived.
    Received(CaseId),
    /// Download progress during catch-up.
    Progress(Progress),
    /// The relay refused this device's changes to a case; the connection
    /// goes on for the other cases. The refusal stays in
    /// [`crate::SyncStatus::refused`] until the case is fixed or discarded.
    Refused {
        /// The case.
        case: CaseId,
        /// The relay's stable refusal code (`too_large`, `forbidden`, ...).
        code: String,
        /// The relay's words.
        reason: String,
    },
    /// The connection ended; retrying after the given delay.
    Retrying {
        /// Why it ended.
        reason: String,
        /// Seconds until the next attempt.
        in_secs: u64,
    },
    /// The live sync ended for good: the token was rejected, expired or
    /// revoked (only a new token helps), or the app stopped it. The last
    /// event of a live sync.
    Stopped {
        /// [`SyncError::code`] of why, or `stopped` when the app stopped it.
        code: String,
        /// Words for the person.
        reason: String,
    },
}

enum Mode<'a> {
    Once(&'a mut dyn FnMut(Progress)),
    Live(&'a mut dyn FnMut(LiveEvent)),
}

fn session_error(e: SessionError) -> SyncError {
    match e {
        SessionError::Remote(reason) => SyncError::Closed(reason),
        SessionError::Wipe(reason) => SyncError::DeviceLost(reason),
        other => SyncError::Session(other.to_string()),
    }
}

/// Most time a one-shot sync waits for the relay to answer its close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Closes the connection and waits (briefly) for the relay's answer. The
/// last frames of a sync (the device's report) must reach the relay: a
/// process that exits with the relay's frames unread makes the kernel
/// reset the connection, and the relay can then lose what was still in
/// flight.
async fn close_gracefully(socket: &mut Socket) {
    if socket.close(None).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(m)) = socket.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

async fn send(socket: &mut Socket, frames: Vec<Frame>, version: u8) -> Result<(), SyncError> {
    for f in frames {
        socket
            .send(Message::Binary(f.encode_for(version).into()))
            .await
            .map_err(|e| SyncError::Closed(format!("connection lost while sending: {e}")))?;
    }
    Ok(())
}

impl Device {
    /// Connects, exchanges everything, and returns once nothing is pending in
    /// either direction. `progress` is called as announced cases arrive.
    pub async fn sync_once(&self, progress: impl FnMut(Progress)) -> Result<SyncReport, SyncError> {
        self.sync_fetching(Vec::new(), progress).await
    }

    /// Like [`Device::sync_once`], and also downloads the evidence `want`
    /// (after the cases). Evidence the relay does not hold yet is named in
    /// [`SyncReport::evidence_failures`].
    pub async fn sync_fetching(
        &self,
        want: Vec<MissingBlob>,
        mut progress: impl FnMut(Progress),
    ) -> Result<SyncReport, SyncError> {
        loop {
            let mut socket = match transport::connect(&self.config).await {
                Ok(s) => s,
                Err(e) => return Err(self.wipe_if_lost(e)),
            };
            let result = self
                .drive(&mut socket, Mode::Once(&mut progress), &want)
                .await;
            close_gracefully(&mut socket).await;
            match result {
                // An older relay: speak its version on a new connection.
                Err(SyncError::OlderRelay(_)) => continue,
                Err(e) => return Err(self.wipe_if_lost(e)),
                ok => return ok,
            }
        }
    }

    /// A device the relay reports lost wipes every case and key before
    /// anything else happens; other errors pass through.
    fn wipe_if_lost(&self, e: SyncError) -> SyncError {
        if let SyncError::DeviceLost(reason) = &e {
            if let Err(w) = self.wipe() {
                return SyncError::DeviceLost(format!("{reason}; wiping failed: {w}"));
            }
        }
        e
    }

    /// Stays connected: pushes local edits as they are made, receives other
    /// devices' changes as they happen, and reconnects with jittered
    /// exponential backoff. Returns only when the token is rejected, expired
    /// or revoked, after a last [`LiveEvent::Stopped`]. A refused upload does
    /// not end it: it is reported as [`LiveEvent::Refused`] and the other
    /// cases go on syncing. To run it on its own thread and stop it at will,
    /// use [`Device::start_live`].
    pub async fn run_live(&self, mut on_event: impl FnMut(LiveEvent)) -> SyncError {
        let mut backoff = Duration::from_secs(1);
        loop {
            let outcome = match transport::connect(&self.config).await {
                Ok(mut socket) => {
                    backoff = Duration::from_secs(1);
                    on_event(LiveEvent::Connected);
                    let r = self
                        .drive(&mut socket, Mode::Live(&mut on_event), &[])
                        .await;
                    let _ = socket.close(None).await;
                    r.err()
                        .unwrap_or_else(|| SyncError::Closed("connection ended".into()))
                }
                Err(e) => e,
            };
            if matches!(outcome, SyncError::OlderRelay(_)) {
                continue;
            }
            let outcome = self.wipe_if_lost(outcome);
            if outcome.needs_new_token() {
                on_event(LiveEvent::Stopped {
                    code: outcome.code().to_string(),
                    reason: outcome.to_string(),
                });
                return outcome;
            }
            let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
            let wait = backoff + Duration::from_millis(jitter);
            on_event(LiveEvent::Retrying {
                reason: outcome.to_string(),
                in_secs: wait.as_secs(),
            });
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Publishes a new policy (head office): sends it to the relay and waits
    /// for the relay to put it in force. Returns the version in force.
    pub async fn publish_policy(&self, json: &str) -> Result<u32, SyncError> {
        // Check locally first so a typo is named before anything is sent.
        aftercase_sync::policy::Policy::from_json(json)
            .map_err(|e| SyncError::Session(e.to_string()))?;
        let mut socket = transport::connect(&self.config).await?;
        let mut client = self.new_session();
        let version = client.wire_version();
        let mut frames = {
            let mut r = self.replica();
            client.start(&mut r, now()).map_err(session_error)?
        };
        frames.push(Frame::PublishPolicy {
            json: json.to_string(),
        });
        send(&mut socket, frames, version).await?;
        let result = loop {
            let msg = match tokio::time::timeout(ONCE_IDLE, socket.next()).await {
                Err(_) => break Err(SyncError::Timeout(ONCE_IDLE.as_secs())),
                Ok(None) | Ok(Some(Err(_))) => {
                    break Err(SyncError::Closed("connection lost".into()))
                }
                Ok(Some(Ok(m))) => m,
            };
            let Message::Binary(bytes) = msg else {
                continue;
            };
            let frame = Frame::decode(&bytes).map_err(bad_frame)?;
            let out = {
                let mut r = self.replica();
                client.handle(&mut r, frame, now()).map_err(session_error)?
            };
            send(&mut socket, out, version).await?;
            match client.policy_news() {
                Some(Err(reason)) => {
                    break Err(SyncError::Session(format!("policy refused: {reason}")))
                }
                Some(Ok(v)) => {
                    let v = *v;
                    let wanted = serde_json::from_str::<serde_json::Value>(json)
                        .ok()
                        .and_then(|j| j["version"].as_u64());
                    if wanted == Some(u64::from(v)) {
                        break Ok(v);
                    }
                }
                None => {}
            }
        };
        let _ = socket.close(None).await;
        result
    }

    async fn drive(
        &self,
        socket: &mut Socket,
        mut mode: Mode<'_>,
        want: &[MissingBlob],
    ) -> Result<SyncReport, SyncError> {
        let mut client = self.new_session();
        client.want_blobs(want.iter().cloned());
        let version = client.wire_version();
        let mut heard = false;
        let (frames, dirty_before) = {
            let mut r = self.replica();
            let dirty = r
                .dirty_cases()
                .map_err(|e| SyncError::Session(e.to_string()))?;
            (
                client.start(&mut r, now()).map_err(session_error)?,
                dirty.len(),
            )
        };
        send(socket, frames, version).await?;
        let mut report = SyncReport::default();
        let mut shown = client.blob_progress();
        let mut total = 0usize;
        let mut last_sent = 0usize;
        let mut announced_synced = false;
        let mut told_refused = std::collections::BTreeSet::new();
        loop {
            if client.is_settled() {
                let refused = client.refused();
                if let Mode::Live(cb) = &mut mode {
                    // Each refusal once per session (again after a new local
                    // edit, which re-sends the case).
                    for (case, reason) in refused {
                        if told_refused.insert(*case) {
                            cb(LiveEvent::Refused {
                                case: *case,
                                code: self.refusal_code(*case),
                                reason: reason.clone(),
                            });
                        }
                    }
                } else if let Some((case, reason)) = refused.iter().next() {
                    return Err(SyncError::Refused {
                        count: refused.len(),
                        code: self.refusal_code(*case),
                        first: format!("case {case}: {reason}"),
                    });
                }
                report.uploaded = dirty_before;
                report.evidence = client.blob_progress();
                report.evidence_supported = client.blobs_enabled();
                report.evidence_failures = client
                    .blob_failures()
                    .iter()
                    .map(|(h, why)| (aftercase_sync::blobs::hex(h), why.clone()))
                    .collect();
                match &mut mode {
                    Mode::Once(_) => return Ok(report),
                    Mode::Live(cb) if !announced_synced => {
                        cb(LiveEvent::Synced(report.clone()));
                        announced_synced = true;
                    }
                    Mode::Live(_) => {}
                }
            }
            let idle = match mode {
                Mode::Once(_) => ONCE_IDLE,
                Mode::Live(_) => LIVE_IDLE,
            };
            let live = matches!(mode, Mode::Live(_));
            tokio::select! {
                msg = tokio::time::timeout(idle, socket.next()) => {
                    let msg = match msg {
                        Err(_) => return Err(SyncError::Timeout(idle.as_secs())),
                        Ok(None) => return Err(SyncError::Closed("connection lost".into())),
                        Ok(Some(Err(e))) => return Err(SyncError::Closed(format!("connection lost: {e}"))),
                        Ok(Some(Ok(m))) => m,
                    };
                    match msg {
                        Message::Binary(bytes) => {
                            let (their_version, frame) = Frame::decode_versioned(&bytes)
                                .map_err(bad_frame)?;
                            if !heard && their_version < version && matches!(frame, Frame::Error { .. }) {
                                // The relay refused our version in its own:
                                // it is older. Speak that from now on.
                                tracing::info!(relay_version = their_version, "the relay speaks an older protocol; reconnecting in it");
                                self.relay_protocol.store(their_version, std::sync::atomic::Ordering::Relaxed);
                                return Err(SyncError::OlderRelay(their_version));
                            }
                            heard = true;
                            let received: Vec<CaseId> = match &frame {
                                Frame::Sync { doc, .. } | Frame::Changes { doc, .. } => vec![*doc],
                                Frame::Snapshots { docs } => docs.iter().map(|d| d.doc).collect(),
                                _ => Vec::new(),
                            };
                            let (out, pending, unsent) = {
                                let mut r = self.replica();
                                let out = client.handle(&mut r, frame, now()).map_err(session_error)?;
                                (out, client.pending_downloads(), client.pending_uploads())
                            };
                            total = total.max(pending);
                            let evidence = client.blob_progress();
                            let progress = Progress {
                                received: total - pending,
                                total,
                                sent: dirty_before.saturating_sub(unsent),
                                to_send: dirty_before,
                                evidence,
                            };
                            // An upload's confirmations count as progress
                            // too (a device sending 2,000 offline cases).
                            let upload_moved = progress.sent != last_sent;
                            last_sent = progress.sent;
                            if evidence != shown || (upload_moved && !announced_synced) {
                                shown = evidence;
                                match &mut mode {
                                    Mode::Once(cb) => cb(progress),
                                    Mode::Live(cb) => cb(LiveEvent::Progress(progress)),
                                }
                            }
                            if !received.is_empty() {
                                report.downloaded = report.downloaded.max(total - pending);
                                match &mut mode {
                                    Mode::Once(cb) => cb(progress),
                                    Mode::Live(cb) => {
                                        if announced_synced {
                                            for case in received {
                                                cb(LiveEvent::Received(case));
                                            }
                                        } else {
                                            cb(LiveEvent::Progress(progress));
                                        }
                                    }
                                }
                            }
                            send(socket, out, version).await?;
                        }
                        Message::Close(frame) => {
                            let reason = frame
                                .map(|f| f.reason.to_string())
                                .filter(|r| !r.is_empty())
                                .unwrap_or_else(|| "closed by relay".into());
                            return Err(SyncError::Closed(reason));
                        }
                        Message::Text(_) => {
                            return Err(SyncError::Session("relay sent a text frame".into()))
                        }
                        _ => {}
                    }
                }
                _ = self.local_edit.notified(), if live => {
                    let frames = {
                        let mut r = self.replica();
                        let dirty = r.dirty_cases().map_err(|e| SyncError::Session(e.to_string()))?;
                        let mut out = Vec::new();
                        for case in dirty {
                            out.extend(client.local_change(&mut r, case).map_err(session_error)?);
                        }
                        out
                    };
                    announced_synced = false;
                    told_refused.clear();
                    send(socket, frames, version).await?;
                }
            }
        }
    }
}

impl Device {
    /// The relay's code for its refusal of `case`, as the replica recorded
    /// it (`refused` if the record cannot be read).
    fn refusal_code(&self, case: CaseId) -> String {
        self.replica()
            .refusals()
            .ok()
            .and_then(|all| all.into_iter().find(|r| r.case == case))
            .map_or_else(|| "refused".into(), |r| r.code)
    }

    /// A session decoding fetched cases on every core (a fresh tablet's
    /// first sync is bound by decoding them), speaking the newest protocol
    /// the relay was found to speak.
    fn new_session(&self) -> ClientSession {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        ClientSession::new()
            .with_load_threads(threads)
            .with_app_version(&*self.app_version)
            .with_protocol(
                self.relay_protocol
                    .load(std::sync::atomic::Ordering::Relaxed),
            )
    }
}

/// A frame from the relay that does not decode. The core's words for a
/// version mismatch are the relay's (an old device must update the app);
/// here the relay is the other side, so say which side is behind.
fn bad_frame(e: DecodeError) -> SyncError {
    match e {
        DecodeError::Version { got } if got < PROTOCOL_VERSION => SyncError::Session(format!(
            "the relay speaks sync protocol version {got}, older than this app's {PROTOCOL_VERSION}: the relay must be updated"
        )),
        DecodeError::Version { got } => SyncError::Session(format!(
            "the relay speaks sync protocol version {got}, newer than this app's {PROTOCOL_VERSION}: update the app"
        )),
        other => SyncError::Session(format!("relay sent a bad frame: {other}")),
    }
}
